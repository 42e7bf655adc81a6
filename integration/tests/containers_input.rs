//! Privileged lane: bad input to images and containers gets a 4xx JSON error naming the field,
//! and hostile image archives write nothing outside the store; plus the limits and mounts a
//! container really gets (an OOM kill reported in its status, a named host path).

use crate::common;

use std::path::Path;
use std::process::Command;

use common::{ContainerGuard, Daemon};
use serde_json::{Value, json};

fn import(d: &Daemon, name: &str, bytes: &[u8]) -> common::Answer {
    let auth = format!("Bearer {}", d.token);
    d.raw("POST", &format!("/v1/images/import?name={name}"), Some(bytes), &[("authorization", &auth), ("content-type", "application/x-tar")])
        .expect("connection")
}

/// A tar made by Python's tarfile with one hostile member (`kind`) next to a harmless one.
fn hostile_tar(dir: &Path, kind: &str, outside: &Path) -> Vec<u8> {
    let out = dir.join(format!("{kind}.tar"));
    let script = r#"
import io, sys, tarfile
kind, outside, out = sys.argv[1], sys.argv[2], sys.argv[3]
t = tarfile.open(out, "w")
def add(name, data=b"x", **kw):
    i = tarfile.TarInfo(name)
    for k, v in kw.items(): setattr(i, k, v)
    i.size = len(data) if i.type == tarfile.REGTYPE else 0
    t.addfile(i, io.BytesIO(data) if i.type == tarfile.REGTYPE else None)
add("manifest.json", b"[]")
if kind == "dotdot":
    add("../../../../../.." + outside, b"pwned")
elif kind == "symlink":
    add("link", type=tarfile.SYMTYPE, linkname="/".join(outside.split("/")[:-1]) or "/")
    add("link/" + outside.split("/")[-1], b"pwned")
elif kind == "hardlink":
    add("hl", type=tarfile.LNKTYPE, linkname=outside)
elif kind == "device":
    add("dev", type=tarfile.CHRTYPE, devmajor=1, devminor=1)
t.close()
"#;
    let st = Command::new("python3").args(["-c", script, kind, &outside.display().to_string(), &out.display().to_string()]).status().expect("python3");
    assert!(st.success());
    std::fs::read(out).expect("tar")
}

fn status_of(d: &Daemon, name: &str) -> String {
    d.call("GET", &format!("/v1/containers/{name}"), None).json()["status"]["phase"].as_str().unwrap_or_default().to_string()
}

fn field(a: &common::Answer) -> String {
    a.json()["error"]["field"].as_str().unwrap_or_default().to_string()
}

#[test]
fn bad_input_is_refused_with_the_field_and_hostile_archives_write_nothing() {
    if !common::privileged(common::is_root(), "root (namespaces, cgroups, overlayfs)") {
        return;
    }
    let host = tempfile::tempdir().expect("tmp");
    let share = host.path().join("share");
    std::fs::create_dir(&share).expect("share");
    // Host paths are not id-shifted: a container's root is its project's host id there, so the
    // admin makes the directory writable for it.
    std::fs::set_permissions(&share, std::os::unix::fs::PermissionsExt::from_mode(0o777)).expect("chmod");
    let cfg = host.path().join("config.toml");
    std::fs::write(&cfg, format!("[container.host_paths]\nshare = \"{}\"\n", share.display())).expect("config");
    // The registry of the pull below is on loopback: the site permits exactly its address and port.
    let reg = common::Registry::with_busybox(Some("puller:s3cret-pw"));
    let d = Daemon::start_with(&["--config", cfg.to_str().expect("utf-8"), "--egress-allow", &reg.addr]);
    let _containers = ContainerGuard(d.dir.clone());
    // Host paths are granted per project by a site admin (here the admin's own project).
    let r = d.call("PATCH", "/v1/projects/system", Some(json!({"spec": {"host_paths": {"share": "rw"}}})));
    assert_eq!(r.status, 200, "{}", r.body);

    // Hostile archives: refused, nothing outside the store, no image, no leftover upload.
    let victim = host.path().join("victim");
    for kind in ["dotdot", "symlink", "hardlink", "device"] {
        let r = import(&d, &format!("bad-{kind}"), &hostile_tar(host.path(), kind, &victim));
        assert_eq!(r.status, 422, "{kind}: {}", r.body);
        assert_eq!(field(&r), "body", "{kind}");
        assert!(!victim.exists(), "{kind} wrote outside the store");
    }
    for (what, bytes) in [("empty", &b""[..]), ("garbage", &[0x42u8; 3000][..])] {
        let r = import(&d, "bad", bytes);
        assert_eq!(r.status, 422, "{what}: {}", r.body);
    }
    assert_eq!(d.call("GET", "/v1/images", None).json()["items"], json!([]));
    let leftovers: Vec<_> = std::fs::read_dir(d.dir.join("images"))
        .expect("images")
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| {
            let n = n.to_string_lossy();
            n.starts_with("upload-") || n.starts_with("scratch-")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A docker save archive through the CLI.
    let archive = common::busybox_image().join("busybox-httpd.docker.tar");
    let remote = format!("http://{}", d.addr);
    let (code, out, err) =
        common::cli(&["--remote", &remote, "--token", &d.token, "-o", "json", "image", "import", archive.to_str().expect("utf-8"), "--name", "bb"], None);
    assert_eq!(code, 0, "{out}{err}");
    let img: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(img["status"]["phase"], "Ready");
    assert_eq!(img["status"]["config"]["cmd"], json!(["-f", "-v", "-p", "8080", "-h", "/www"]));
    // An OCI layout directory, tarred by the CLI.
    let layout = host.path().join("layout");
    std::fs::create_dir(&layout).expect("layout");
    common::run_ok(&["tar", "-xf", common::busybox_image().join("busybox-httpd.oci.tar").to_str().expect("utf-8"), "-C", layout.to_str().expect("utf-8")]);
    let (code, out, err) =
        common::cli(&["--remote", &remote, "--token", &d.token, "-o", "json", "image", "import", layout.to_str().expect("utf-8"), "--name", "from-dir"], None);
    assert_eq!(code, 0, "{out}{err}");
    let dir_img: Value = serde_json::from_str(&out).expect("json");
    let index: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index.json")).expect("index");
    assert_eq!(dir_img["status"]["digest"], index["manifests"][0]["digest"], "the layout's own manifest");
    assert_eq!(d.call("DELETE", "/v1/images/from-dir", None).status, 204);
    let r = import(&d, "bb", &std::fs::read(&archive).expect("archive"));
    assert_eq!(r.status, 409, "the name is taken: {}", r.body);

    // A pull through the CLI (it follows the operation with a progress bar), with credentials
    // from the environment; a wrong password fails the operation with the registry's answer.
    let source = format!("{}/busybox-httpd:latest", reg.addr);
    let pull = |pw: &str| {
        let out = std::process::Command::new(common::bin())
            .args([
                "--remote",
                &remote,
                "--token",
                &d.token,
                "-o",
                "json",
                "image",
                "pull",
                &source,
                "--insecure",
                "--username",
                "puller",
                "--name",
                if pw == "s3cret-pw" { "pulled" } else { "denied" },
            ])
            .env("CLOUDLET_REGISTRY_PASSWORD", pw)
            .output()
            .expect("cli");
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, out, err) = pull("s3cret-pw");
    assert_eq!(code, 0, "{out}{err}");
    let pulled: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(pulled["status"]["phase"], "Ready");
    assert!(pulled["status"]["resolved"].as_str().is_some_and(|r| r.contains("@sha256:")), "{pulled}");
    let (code, _, err) = pull("wrong");
    assert_ne!(code, 0);
    assert!(err.contains("failed"), "{err}");
    assert_eq!(d.call("GET", "/v1/images/denied", None).json()["status"]["phase"], "Failed");
    assert!(!d.log().contains("s3cret-pw"), "the password is never logged");
    for f in ["cloudlet.db", "cloudlet.db-wal"] {
        let bytes = std::fs::read(d.dir.join(f)).unwrap_or_default();
        assert!(!bytes.windows(9).any(|w| w == b"s3cret-pw"), "the password is not stored in {f}");
    }
    for i in ["pulled", "denied"] {
        assert_eq!(d.call("DELETE", &format!("/v1/images/{i}"), None).status, 204);
    }

    // Container specs.
    let bad: Vec<(Value, u16, &str)> = vec![
        (json!({"image": "nope"}), 422, "spec.image"),
        (json!({"image": "bb", "resources": {"memory_mib": 1}}), 422, "spec.resources.memory_mib"),
        (json!({"image": "bb", "resources": {"cpus": 0}}), 422, "spec.resources.cpus"),
        (json!({"image": "bb", "resources": {"pids": -1}}), 422, "spec.resources.pids"),
        (json!({"image": "bb", "env": {"A=B": "x"}}), 422, "spec.env.A=B"),
        (json!({"image": "bb", "mounts": [{"host_path": "etc", "target": "/x"}]}), 403, "spec.mounts[0].host_path"),
        (json!({"image": "bb", "mounts": [{"host_path": "share", "target": "/proc/x"}]}), 422, "spec.mounts[0].target"),
        (json!({"image": "bb", "working_dir": "relative"}), 422, "spec.working_dir"),
        (json!({"image": "bb", "command": []}), 422, "spec.command"),
        (json!({"image": "bb", "max_retries": 3}), 422, "spec.max_retries"),
        (json!({"image": "bb", "restart_policy": "sometimes"}), 422, "spec"),
        (json!({"image": "bb", "privileged": true}), 422, "spec"),
        (json!({"image": "bb", "network_interface": "none"}), 422, "spec.network_interface"),
        (json!({"image": "bb", "stop_timeout_seconds": 100000}), 422, "spec.stop_timeout_seconds"),
    ];
    for (spec, status, f) in bad {
        let r = d.call("POST", "/v1/containers", Some(json!({"name": "c", "spec": spec})));
        assert_eq!(r.status, status, "{spec}: {}", r.body);
        assert_eq!(field(&r), f, "{spec}: {}", r.body);
    }
    let r = d.call("POST", "/v1/images", Some(json!({"name": "p", "spec": {"source": "UPPER CASE/ bad"}})));
    assert_eq!((r.status, field(&r)), (422, "spec.source".to_string()), "{}", r.body);
    let r = d.call("POST", "/v1/containers/nope/exec", Some(json!({"command": ["true"]})));
    assert_eq!(r.status, 404);

    // An OOM kill shows in the status; a named host path is mounted (read-write and read-only).
    let hog = "echo ok > /share/written; x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived";
    let r = d.call(
        "POST",
        "/v1/containers",
        Some(json!({"name": "hog", "spec": {"image": "bb", "command": ["/bin/sh", "-c", hog],
        "resources": {"memory_mib": 32}, "mounts": [{"host_path": "share", "target": "/share"}]}})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let st = d.wait_for(60, "the OOM kill", || {
        let s = d.call("GET", "/v1/containers/hog", None).json()["status"].clone();
        (s["phase"] == "Exited").then_some(s)
    });
    assert_eq!(st["oom_killed"], true, "{st}");
    assert_eq!(st["exit_code"], 137, "{st}");
    assert_eq!(std::fs::read_to_string(share.join("written")).expect("written through the mount"), "ok\n");
    let base = st["user_namespace"]["host_id_base"].as_u64().expect("a user namespace");
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(share.join("written")).expect("meta")) as u64, base, "owned by the project's root");
    let r = d.call(
        "POST",
        "/v1/containers",
        Some(json!({"name": "ro", "spec": {"image": "bb", "command": ["/bin/sh", "-c", "echo x > /share/ro || echo refused; sleep 100"],
        "mounts": [{"host_path": "share", "target": "/share", "read_only": true}], "read_only_rootfs": true}})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let out = d.wait_for(30, "the read-only write to fail", || {
        let b = d.call("GET", "/v1/containers/ro/logs", None).body;
        b.contains("refused").then_some(b)
    });
    assert!(!share.join("ro").exists(), "{out}");
    let r = d.call("POST", "/v1/containers/ro/exec", Some(json!({"command": ["/bin/sh", "-c", "touch /newfile"]})));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_ne!(r.json()["exit_code"], 0, "the root is read-only");
    for (body, f) in [(json!({"command": []}), "command"), (json!({"command": ["true"], "timeout_seconds": 0}), "timeout_seconds")] {
        let r = d.call("POST", "/v1/containers/ro/exec", Some(body));
        assert_eq!((r.status, field(&r)), (422, f.to_string()), "{}", r.body);
    }
    let r = d.call("GET", "/v1/containers/ro/logs?stream=both", None);
    assert_eq!((r.status, field(&r)), (422, "stream".to_string()));
    assert_eq!(d.call("DELETE", "/v1/images/bb", None).status, 409, "in use");

    // The image's user by name, and on-failure restarts that stop at max_retries.
    let r = d.call(
        "POST",
        "/v1/containers",
        Some(json!({"name": "flaky", "spec": {"image": "bb", "user": "app",
        "command": ["/bin/sh", "-c", "id -u; exit 3"], "restart_policy": "on-failure", "max_retries": 2}})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let st = d.wait_for(60, "the retries to run out", || {
        let s = d.call("GET", "/v1/containers/flaky", None).json()["status"].clone();
        (s["phase"] == "Exited" && s["restart_count"] == 2).then_some(s)
    });
    assert_eq!(st["exit_code"], 3);
    assert_eq!(d.call("GET", "/v1/containers/flaky/logs", None).body, "1000\n1000\n1000\n", "one first run and two restarts, as uid 1000");

    // Changing the image gives the container a fresh writable layer on the new image's files.
    let r = import(&d, "bb2", &std::fs::read(common::busybox_image().join("busybox-httpd.oci.tar")).expect("archive"));
    assert_eq!(r.status, 201, "{}", r.body);
    let r = d.call(
        "POST",
        "/v1/containers",
        Some(json!({"name": "swap", "spec": {"image": "bb", "command": ["/bin/sleep", "100000"], "stop_timeout_seconds": 0}})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    d.wait_for(30, "swap running", || (status_of(&d, "swap") == "Running").then_some(()));
    let r = d.call("POST", "/v1/containers/swap/exec", Some(json!({"command": ["/bin/sh", "-c", "echo old > /marker"]})));
    assert_eq!(r.json()["exit_code"], 0, "{}", r.body);
    let pid = d.call("GET", "/v1/containers/swap", None).json()["status"]["pid"].clone();
    assert_eq!(d.call("PATCH", "/v1/containers/swap", Some(json!({"spec": {"image": "bb2"}}))).status, 200);
    d.wait_for(30, "swap restarted on bb2", || {
        let s = d.call("GET", "/v1/containers/swap", None).json()["status"].clone();
        (s["phase"] == "Running" && s["pid"] != pid).then_some(())
    });
    let r = d.call("POST", "/v1/containers/swap/exec", Some(json!({"command": ["/bin/sh", "-c", "cat /marker 2>/dev/null || echo fresh"]})));
    assert_eq!(r.json()["stdout"], "fresh\n", "{}", r.body);

    // Tenants: a member of another project sees none of this project's images or containers,
    // cannot run its image, read its logs or exec into it.
    assert_eq!(d.call("POST", "/v1/projects", Some(json!({"name": "other"}))).status, 201);
    let r = d.call("POST", "/v1/tokens?project=other", Some(json!({"name": "m", "spec": {"role": "member"}})));
    assert_eq!(r.status, 201, "{}", r.body);
    let other = r.json()["secret"].as_str().expect("secret").to_string();
    assert_eq!(d.call_as(&other, "GET", "/v1/containers", None).json()["items"], json!([]));
    assert_eq!(d.call_as(&other, "GET", "/v1/images", None).json()["items"], json!([]));
    for (m, p) in [
        ("GET", "/v1/containers/ro"),
        ("GET", "/v1/containers/ro/logs"),
        ("GET", "/v1/images/bb"),
        ("POST", "/v1/containers/ro/stop"),
        ("DELETE", "/v1/containers/ro"),
    ] {
        assert_eq!(d.call_as(&other, m, p, None).status, 404, "{m} {p}");
    }
    assert_eq!(d.call_as(&other, "POST", "/v1/containers/ro/exec", Some(json!({"command": ["true"]}))).status, 404);
    let r = d.call_as(&other, "POST", "/v1/containers", Some(json!({"name": "steal", "spec": {"image": "bb"}})));
    assert_eq!((r.status, field(&r)), (422, "spec.image".to_string()), "{}", r.body);
    assert_eq!(status_of(&d, "ro"), "Running", "untouched by the other tenant");
    assert!(!d.log().contains("panicked"));
}
