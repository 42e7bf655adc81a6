//! Privileged lane: block volumes and snapshots with real containers. A volume is written by a
//! container, snapshotted while mounted, written more, and the snapshot restored into a clone that
//! holds exactly the first state; the volume grows online; an attached volume is not deleted;
//! bad input and quotas answer with the field; a `kill -9` during a snapshot leaves no partial file.

use crate::common;

use common::{ContainerGuard, Daemon};
use serde_json::{Value, json};

fn import(d: &Daemon) {
    let auth = format!("Bearer {}", d.token);
    let bytes = std::fs::read(common::busybox_image().join("busybox-httpd.oci.tar")).expect("archive");
    let r = d.raw("POST", "/v1/images/import?name=bb", Some(&bytes), &[("authorization", &auth)]).expect("connection");
    assert_eq!(r.status, 201, "{}", r.body);
}

fn status(d: &Daemon, path: &str) -> Value {
    d.call("GET", path, None).json()["status"].clone()
}

fn wait_phase(d: &Daemon, path: &str, phase: &str) -> Value {
    d.wait_for(60, &format!("{path} {phase}"), || {
        let s = status(d, path);
        (s["phase"] == phase).then_some(s)
    })
}

fn exec(d: &Daemon, ctr: &str, script: &str) -> Value {
    let r = d.call("POST", &format!("/v1/containers/{ctr}/exec"), Some(json!({"command": ["/bin/sh", "-c", script]})));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

fn field(r: &common::Answer) -> String {
    r.json()["error"]["field"].as_str().unwrap_or_default().to_string()
}

fn run(d: &Daemon, name: &str, mounts: Value) {
    let r = d.call(
        "POST",
        "/v1/containers",
        Some(json!({"name": name, "spec": {"image": "bb", "command": ["/bin/sleep", "100000"], "stop_timeout_seconds": 0, "mounts": mounts}})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    wait_phase(d, &format!("/v1/containers/{name}"), "Running");
}

#[test]
fn volumes_snapshot_clone_grow_and_refuse_bad_input() {
    if !common::privileged(common::is_root(), "root (loop devices, mounts, containers)") {
        return;
    }
    let mut d = Daemon::start();
    let _containers = ContainerGuard(d.dir.clone());
    import(&d);

    // A thin volume, written by a container.
    common::create(&d, "/v1/volumes", json!({"name": "data", "spec": {"size_mib": 64}}));
    let st = wait_phase(&d, "/v1/volumes/data", "Available");
    assert_eq!(st["provisioned_bytes"], 64 << 20);
    assert!(st["allocated_bytes"].as_u64().expect("allocated") < 1 << 20, "thin: {st}");
    let file = std::path::PathBuf::from(st["path"].as_str().expect("path"));
    assert!(file.exists());
    run(&d, "writer", json!([{"volume": "data", "target": "/data"}]));
    assert_eq!(exec(&d, "writer", "echo one > /data/a && sync && cat /data/a")["stdout"], "one\n");
    assert_eq!(wait_phase(&d, "/v1/volumes/data", "InUse")["attached_to"], json!(["writer"]));

    // Snapshot while mounted (frozen for the copy), then write more.
    common::create(&d, "/v1/snapshots", json!({"name": "s1", "spec": {"volume": "data"}}));
    let s1 = wait_phase(&d, "/v1/snapshots/s1", "Ready");
    assert_eq!(s1["size_mib"], 64);
    assert_eq!(exec(&d, "writer", "echo two > /data/b && sync && ls /data | grep -v lost")["stdout"], "a\nb\n");

    // Restore the snapshot into a clone: the first state exactly.
    common::create(&d, "/v1/volumes", json!({"name": "restored", "spec": {"source_snapshot": "s1"}}));
    assert_eq!(wait_phase(&d, "/v1/volumes/restored", "Available")["provisioned_bytes"], 64 << 20);
    run(&d, "reader", json!([{"volume": "restored", "target": "/r", "read_only": true}]));
    let out = exec(&d, "reader", "ls /r | grep -v lost; cat /r/a; touch /r/c 2>/dev/null || echo read-only");
    assert_eq!(out["stdout"], "a\none\nread-only\n", "{out}");

    // Grow: the file at once; the filesystem online where the daemon may (CAP_SYS_RESOURCE),
    // else when the volume is next attached. Both end with a larger filesystem and the data kept.
    let r = d.call("PATCH", "/v1/volumes/data", Some(json!({"spec": {"size_mib": 128}})));
    assert_eq!(r.status, 200, "{}", r.body);
    d.wait_for(30, "the grown volume", || (status(&d, "/v1/volumes/data")["provisioned_bytes"] == 128 << 20).then_some(()));
    let df_mb = |c: &str, dir: &str| -> u64 {
        exec(&d, c, &format!("df -m {dir} | tail -1 | awk '{{print $2}}'"))["stdout"].as_str().unwrap_or("").trim().parse().unwrap_or(0)
    };
    let online = d.wait_for(30, "the resize condition", || {
        let c = status(&d, "/v1/volumes/data")["conditions"].as_array()?.iter().find(|c| c["type"] == "FilesystemResized")?.clone();
        Some(c["status"] == "True")
    });
    if online {
        assert!(df_mb("writer", "/data") > 100);
    } else {
        assert!(df_mb("writer", "/data") < 100, "not grown while attached");
        assert_eq!(d.call("DELETE", "/v1/containers/writer", None).status, 204);
        d.wait_for(30, "the volume to be detached", || (status(&d, "/v1/volumes/data")["mounted"] == false).then_some(()));
        run(&d, "writer", json!([{"volume": "data", "target": "/data"}]));
        assert!(df_mb("writer", "/data") > 100, "grown offline at the next attach: {}", d.log());
    }
    assert_eq!(exec(&d, "writer", "cat /data/b")["stdout"], "two\n", "data kept across the grow");

    // Bad input, each naming its field.
    let bad = [
        ("/v1/volumes", json!({"name": "x", "spec": {}}), 422, "spec.size_mib"),
        ("/v1/volumes", json!({"name": "x", "spec": {"size_mib": 1}}), 422, "spec.size_mib"),
        ("/v1/volumes", json!({"name": "x", "spec": {"size_mib": 64, "thin": false}}), 422, "spec"),
        ("/v1/volumes", json!({"name": "x", "spec": {"source_snapshot": "nope"}}), 422, "spec.source_snapshot"),
        ("/v1/volumes", json!({"name": "x", "spec": {"source_snapshot": "s1", "size_mib": 32}}), 422, "spec.size_mib"),
        ("/v1/volumes", json!({"name": "x", "spec": {"size_mib": 1u64 << 40}}), 422, "spec.size_mib"),
        ("/v1/snapshots", json!({"name": "x", "spec": {"volume": "nope"}}), 422, "spec.volume"),
        (
            "/v1/containers",
            json!({"name": "x", "spec": {"image": "bb", "mounts": [{"volume": "data", "host_path": "h", "target": "/x"}]}}),
            422,
            "spec.mounts[0]",
        ),
        ("/v1/containers", json!({"name": "x", "spec": {"image": "bb", "mounts": [{"volume": "nope", "target": "/x"}]}}), 422, "spec.mounts[0].volume"),
    ];
    for (path, body, code, f) in bad {
        let r = d.call("POST", path, Some(body.clone()));
        assert_eq!((r.status, field(&r)), (code, f.to_string()), "{body}: {}", r.body);
    }
    let r = d.call("PATCH", "/v1/volumes/data", Some(json!({"spec": {"size_mib": 64}})));
    assert_eq!((r.status, field(&r)), (422, "spec.size_mib".to_string()), "shrink: {}", r.body);
    let r = d.call("DELETE", "/v1/volumes/data", None);
    assert_eq!(r.status, 409, "attached: {}", r.body);

    // A project quota on volume MiB.
    assert_eq!(d.call("POST", "/v1/projects", Some(json!({"name": "small", "spec": {"quotas": {"volume_mib": 100}}}))).status, 201);
    assert_eq!(d.call("POST", "/v1/volumes?project=small", Some(json!({"name": "a", "spec": {"size_mib": 64}}))).status, 201);
    let r = d.call("POST", "/v1/volumes?project=small", Some(json!({"name": "b", "spec": {"size_mib": 64}})));
    assert_eq!((r.status, r.json()["error"]["code"].as_str().unwrap_or_default()), (422, "quota_exceeded"), "{}", r.body);

    // kill -9 right after a snapshot is asked for: after the restart it completes, and no
    // partial file is left; the running containers were adopted and still see their volumes.
    common::create(&d, "/v1/snapshots", json!({"name": "s2", "spec": {"volume": "data"}}));
    d.kill9();
    d.launch();
    let s2 = wait_phase(&d, "/v1/snapshots/s2", "Ready");
    assert_eq!(s2["size_mib"], 128);
    let pool = file.parent().and_then(|p| p.parent()).expect("pool").to_path_buf();
    let tmp: Vec<_> = ["volumes", "snapshots"]
        .iter()
        .flat_map(|d| std::fs::read_dir(pool.join(d)).expect("dir").flatten())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(tmp.is_empty(), "{tmp:?}");
    assert_eq!(exec(&d, "writer", "cat /data/a /data/b")["stdout"], "one\ntwo\n");

    // Deleting: containers first, then the volumes and snapshots; their files go.
    for c in ["writer", "reader"] {
        assert_eq!(d.call("DELETE", &format!("/v1/containers/{c}"), None).status, 204);
    }
    d.wait_for(30, "the volume to be free", || (status(&d, "/v1/volumes/data")["phase"] == "Available").then_some(()));
    for p in ["/v1/volumes/data", "/v1/volumes/restored", "/v1/snapshots/s1", "/v1/snapshots/s2"] {
        assert_eq!(d.call("DELETE", p, None).status, 204, "{p}");
    }
    d.wait_for(30, "the files to go", || (!file.exists() && std::fs::read_dir(pool.join("snapshots")).expect("dir").count() == 0).then_some(()));
    let dir = d.dir.to_string_lossy().into_owned();
    // Nothing but the project's pinned user namespace, kept while the project exists.
    let pins = d.dir.join("userns").to_string_lossy().into_owned();
    let left = || std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo").lines().filter(|l| l.contains(&dir) && !l.contains(&pins)).count();
    d.wait_for(30, "no mount left under the data dir", || (left() == 0).then_some(()));
}
