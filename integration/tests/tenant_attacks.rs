//! Attacks of a hostile tenant (a member of project `b`) against another project (the admin's
//! project `a`, where the site's own images live) and against the host, each asserted to fail
//! with nothing of `a` read or changed (issue 14): borrowing or probing another project's image
//! layers by digest, hanging the site's image handling with a FIFO, escaping a container's
//! confinement through exec, and using a container's root on files of another project or of the
//! host.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{ContainerGuard, Daemon};
use serde_json::{Value, json};

fn import_as(d: &Daemon, token: &str, name: &str, bytes: &[u8]) -> common::Answer {
    let auth = format!("Bearer {token}");
    d.raw("POST", &format!("/v1/images/import?name={name}"), Some(bytes), &[("authorization", &auth), ("content-type", "application/x-tar")])
        .expect("connection")
}

/// A project `b` with a member token; returns the token.
fn tenant_b(d: &Daemon) -> String {
    assert_eq!(d.call("POST", "/v1/projects", Some(json!({"name": "b"}))).status, 201);
    let r = d.call("POST", "/v1/tokens?project=b", Some(json!({"name": "m", "spec": {"role": "member"}})));
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()["secret"].as_str().expect("secret").to_string()
}

fn tar_dir(dir: &Path) -> Vec<u8> {
    let out = std::process::Command::new("tar").args(["-C", dir.to_str().expect("utf-8"), "-cf", "-", "."]).output().expect("tar");
    assert!(out.status.success());
    out.stdout
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(b))
}

/// The busybox OCI layout unpacked into `dir`; returns (manifest JSON, its digest hex).
fn layout_of(dir: &Path) -> (Value, String) {
    std::fs::create_dir_all(dir).expect("dir");
    common::run_ok(&["tar", "-xf", common::busybox_image().join("busybox-httpd.oci.tar").to_str().expect("utf-8"), "-C", dir.to_str().expect("utf-8")]);
    let index: Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).expect("index")).expect("index json");
    let m = index["manifests"][0]["digest"].as_str().expect("manifest digest").trim_start_matches("sha256:").to_string();
    (serde_json::from_slice(&std::fs::read(dir.join("blobs/sha256").join(&m)).expect("manifest")).expect("manifest json"), m)
}

/// Point the layout's index at a new manifest (written as a blob).
fn replace_manifest(dir: &Path, manifest: &Value) {
    let bytes = serde_json::to_vec(manifest).expect("json");
    let hex = sha256_hex(&bytes);
    std::fs::write(dir.join("blobs/sha256").join(&hex), &bytes).expect("write");
    let mut index: Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).expect("index")).expect("index json");
    index["manifests"][0]["digest"] = format!("sha256:{hex}").into();
    index["manifests"][0]["size"] = bytes.len().into();
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).expect("json")).expect("write");
}

#[test]
fn another_projects_layers_can_be_neither_borrowed_nor_probed_and_a_fifo_hangs_nothing() {
    if !common::is_root() {
        panic!("needs root: image roots are chowned; run the suite as root");
    }
    let d = Daemon::start();
    let tmp = tempfile::tempdir().expect("tmp");
    let b = tenant_b(&d);
    // Project a imports its private image.
    let bb = std::fs::read(common::busybox_image().join("busybox-httpd.oci.tar")).expect("archive");
    assert_eq!(import_as(&d, &d.token, "private", &bb).status, 201);
    let (manifest, _) = layout_of(&tmp.path().join("probe"));
    let layer = manifest["layers"][0]["digest"].as_str().expect("layer").to_string();

    // b names a's layer by digest without carrying it: refused, and b gets no image.
    let borrow = tmp.path().join("borrow");
    layout_of(&borrow);
    std::fs::remove_file(borrow.join("blobs/sha256").join(layer.trim_start_matches("sha256:"))).expect("drop the layer");
    let r = import_as(&d, &b, "stolen", &tar_dir(&borrow));
    assert_eq!(r.status, 422, "{}", r.body);
    let known = r.json();
    assert_eq!(known["error"]["field"], "body", "{known}");
    // A digest nobody has gets the very same answer: nothing tells b what the store holds.
    let probe = tmp.path().join("unknown");
    let (mut m, _) = layout_of(&probe);
    let fake = format!("sha256:{}", sha256_hex(b"no such layer"));
    m["layers"][0]["digest"] = fake.clone().into();
    replace_manifest(&probe, &m);
    std::fs::remove_file(probe.join("blobs/sha256").join(layer.trim_start_matches("sha256:"))).expect("drop the layer");
    let r = import_as(&d, &b, "stolen", &tar_dir(&probe));
    assert_eq!(r.status, 422, "{}", r.body);
    let unknown = r.json();
    assert_eq!(unknown["error"]["code"], known["error"]["code"]);
    assert_eq!(unknown["error"]["message"].as_str().map(|s| s.replace(&fake, "D")), known["error"]["message"].as_str().map(|s| s.replace(&layer, "D")));
    assert_eq!(d.call_as(&b, "GET", "/v1/images", None).json()["items"], json!([]), "b has no image");

    // A FIFO as the docker-save layer or as an OCI blob: refused at once.
    let fifo = tmp.path().join("fifo");
    std::fs::create_dir_all(&fifo).expect("dir");
    std::fs::write(fifo.join("manifest.json"), json!([{"Config": "cfg.json", "RepoTags": ["x:1"], "Layers": ["layer.tar"]}]).to_string()).expect("write");
    std::fs::write(fifo.join("cfg.json"), json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).to_string())
        .expect("write");
    nix::unistd::mkfifo(&fifo.join("layer.tar"), nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("mkfifo");
    let t0 = Instant::now();
    let r = import_as(&d, &b, "hang", &tar_dir(&fifo));
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("FIFO"), "{}", r.body);
    let oci_fifo = tmp.path().join("oci-fifo");
    layout_of(&oci_fifo);
    let blob = oci_fifo.join("blobs/sha256").join(layer.trim_start_matches("sha256:"));
    std::fs::remove_file(&blob).expect("rm");
    nix::unistd::mkfifo(&blob, nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("mkfifo");
    let r = import_as(&d, &b, "hang", &tar_dir(&oci_fifo));
    assert_eq!(r.status, 422, "{}", r.body);
    eprintln!("hostile imports answered in {:?}", t0.elapsed());
    // Image handling goes on for everyone: b imports and deletes (garbage collection runs),
    // and a imports again.
    assert_eq!(import_as(&d, &b, "own", &bb).status, 201);
    assert_eq!(d.call_as(&b, "DELETE", "/v1/images/own", None).status, 204);
    let r = import_as(&d, &d.token, "again", &bb);
    assert_eq!(r.status, 201, "{}", r.body);
    // a's image is whole: every blob it names is still stored.
    let img = d.call("GET", "/v1/images/private", None).json();
    assert_eq!(img["status"]["phase"], "Ready");
    for blob in img["status"]["blobs"].as_array().expect("blobs") {
        let hex = blob.as_str().expect("digest").trim_start_matches("sha256:");
        assert!(d.dir.join("images/blobs/sha256").join(hex).is_file(), "{blob} kept");
    }
    assert!(!d.log().contains("panicked"));
}

#[test]
fn exec_is_confined_like_the_containers_main_process() {
    if !common::is_root() {
        panic!("needs root: containers need namespaces and cgroups; run the suite as root");
    }
    let d = Daemon::start();
    let _guard = ContainerGuard(d.dir.clone());
    let b = tenant_b(&d);
    let bb = std::fs::read(common::busybox_image().join("busybox-httpd.oci.tar")).expect("archive");
    assert_eq!(import_as(&d, &b, "bb", &bb).status, 201);
    let r = d.call_as(&b, "POST", "/v1/containers", Some(json!({"name": "mine", "spec": {"image": "bb", "command": ["/bin/sleep", "600"]}})));
    assert!(r.status / 100 == 2, "{}", r.body);
    d.wait_for(60, "the container running", || (d.call_as(&b, "GET", "/v1/containers/mine", None).json()["status"]["phase"] == "Running").then_some(()));
    // It set no limits, so it got the site's defaults: never `pids.max = max` by omission.
    let id = r.json()["id"].as_str().expect("id").to_string();
    let knob = |f: &str, v1: &str| {
        std::fs::read_to_string(format!("/sys/fs/cgroup/{v1}/cloudlet/{id}/{f}"))
            .or_else(|_| std::fs::read_to_string(format!("/sys/fs/cgroup/cloudlet/{id}/{f}")))
            .unwrap_or_default()
    };
    assert_eq!(knob("pids.max", "pids").trim(), "1024");
    let mem = knob("memory.limit_in_bytes", "memory");
    let mem = if mem.is_empty() { knob("memory.max", "memory") } else { mem };
    assert_eq!(mem.trim(), (1024u64 << 20).to_string());
    let exec = |cmd: &str| {
        let r = d.call_as(&b, "POST", "/v1/containers/mine/exec", Some(json!({"command": ["/bin/sh", "-c", cmd]})));
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    };
    let main = exec("grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/1/status");
    let mine = exec("grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status");
    assert_eq!(mine["stdout"], main["stdout"], "exec gets what the main process has");
    assert!(mine["stdout"].as_str().unwrap_or_default().contains("Seccomp:\t2"), "{mine}");
    // The escape that worked before: a new user namespace, full capabilities in it, a mount.
    let esc = exec("unshare -r -n -m /bin/sh -c 'mount -t tmpfs none /mnt && echo MOUNTED'; echo rc=$?");
    let out = esc["stdout"].as_str().unwrap_or_default();
    assert!(!out.contains("MOUNTED") && !out.contains("rc=0"), "{esc}");
    // Refused by the kernel, not missing: busybox's unshare ran and reported the refusal.
    assert!(esc["stderr"].as_str().unwrap_or_default().contains("unshare"), "{esc}");
    assert!(!d.log().contains("panicked"));
}

#[test]
fn a_containers_root_is_an_unprivileged_host_id_of_its_own_projects_range() {
    if !common::is_root() {
        panic!("needs root: containers need namespaces and cgroups; run the suite as root");
    }
    // One host path granted read-write to both projects, writable by anyone on the host.
    let host = tempfile::tempdir().expect("tmp");
    let share = host.path().join("share");
    std::fs::create_dir(&share).expect("dir");
    std::fs::set_permissions(&share, std::os::unix::fs::PermissionsExt::from_mode(0o777)).expect("chmod");
    std::fs::write(share.join("host-only"), "root's\n").expect("write");
    std::fs::set_permissions(share.join("host-only"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    let cfg = host.path().join("config.toml");
    std::fs::write(&cfg, format!("[container.host_paths]\nshare = \"{}\"\n", share.display())).expect("config");
    let d = Daemon::start_with(&["--config", cfg.to_str().expect("utf-8")]);
    let _guard = ContainerGuard(d.dir.clone());
    let b = tenant_b(&d);
    for p in ["system", "b"] {
        let r = d.call("PATCH", &format!("/v1/projects/{p}"), Some(json!({"spec": {"host_paths": {"share": "rw"}}})));
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let bb = std::fs::read(common::busybox_image().join("busybox-httpd.oci.tar")).expect("archive");
    assert_eq!(import_as(&d, &d.token, "bb", &bb).status, 201);
    assert_eq!(import_as(&d, &b, "bb", &bb).status, 201);
    let run = |token: &str, name: &str, cmd: &str| {
        let body = json!({"name": name, "spec": {"image": "bb", "command": ["/bin/sh", "-c", cmd], "mounts": [{"host_path": "share", "target": "/mnt"}]}});
        let r = d.call_as(token, "POST", "/v1/containers", Some(body));
        assert_eq!(r.status, 201, "{}", r.body);
    };
    let logs_with = |token: &str, name: &str, marker: &str| {
        d.wait_for(60, &format!("{name} to print {marker}"), || {
            let l = d.call_as(token, "GET", &format!("/v1/containers/{name}/logs"), None).body;
            l.contains(marker).then_some(l)
        })
    };
    let status = |token: &str, name: &str| d.call_as(token, "GET", &format!("/v1/containers/{name}"), None).json()["status"].clone();
    // A (the admin's project) keeps a private file on the shared path.
    run(
        &d.token,
        "a",
        "echo a-private > /mnt/a-secret && chmod 600 /mnt/a-secret && echo wrote; cat /proc/self/uid_map; stat -c passwd=%u /etc/passwd; sleep 600",
    );
    let a_logs = logs_with(&d.token, "a", "passwd=");
    // B's root tries A's file and the host's: without a user namespace CAP_DAC_OVERRIDE reads both.
    run(
        &b,
        "b",
        "cat /mnt/a-secret || echo refused-a; cat /mnt/host-only || echo refused-host; echo b > /mnt/b-file; cat /proc/self/uid_map; echo done; sleep 600",
    );
    let b_logs = logs_with(&b, "b", "done");
    assert!(a_logs.contains("wrote") && b_logs.contains("refused-a") && b_logs.contains("refused-host"), "{a_logs}\n{b_logs}");
    assert!(!b_logs.contains("a-private") && !b_logs.contains("root's"), "nothing of A or the host was read: {b_logs}");
    // Each project has its own range, which the host sees on processes and files.
    let base = |token: &str, name: &str| status(token, name)["user_namespace"]["host_id_base"].as_u64().expect("in a user namespace") as u32;
    let (base_a, base_b) = (base(&d.token, "a"), base(&b, "b"));
    assert!(base_a >= 65_536 && base_b >= 65_536 && base_a.abs_diff(base_b) >= 65_536, "{base_a} {base_b}");
    let map_line =
        |logs: &str| logs.lines().map(|l| l.split_whitespace().collect::<Vec<_>>()).find(|w| w.len() == 3 && w[0] == "0").unwrap_or_default().join(" ");
    assert_eq!(map_line(&a_logs), format!("0 {base_a} 65536"), "{a_logs}");
    assert_eq!(map_line(&b_logs), format!("0 {base_b} 65536"), "{b_logs}");
    assert!(a_logs.contains("passwd=0"), "the image's files show as the container's root: {a_logs}");
    use std::os::unix::fs::MetadataExt;
    let owner = |f: &str| std::fs::metadata(share.join(f)).expect(f).uid();
    assert_eq!((owner("a-secret"), owner("b-file"), owner("host-only")), (base_a, base_b, 0));
    assert_eq!(std::fs::read_to_string(share.join("a-secret")).expect("a's file"), "a-private\n", "unchanged");
    // The containers ran though the data dir stays closed to other users (a temporary
    // directory: 0700): they reach their own directories through binds under RUN_DIR alone.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&d.dir).expect("meta").permissions().mode() & 0o077, 0, "the data dir's mode is left as it was");
    // An exec enters the same user namespace as the main process.
    let r = d.call_as(&b, "POST", "/v1/containers/b/exec", Some(json!({"command": ["/bin/sh", "-c", "cat /proc/self/uid_map; id -u"]})));
    assert_eq!(r.status, 200, "{}", r.body);
    let out = r.json()["stdout"].as_str().unwrap_or_default().to_string();
    assert_eq!((map_line(&out), out.lines().last()), (format!("0 {base_b} 65536"), Some("0")), "{out}");
    let pid = status(&b, "b")["pid"].as_i64().expect("pid");
    let uid_line =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status").lines().find(|l| l.starts_with("Uid:")).unwrap_or_default().to_string();
    assert_eq!(uid_line.split_whitespace().nth(1), Some(base_b.to_string().as_str()), "B's init is host id {base_b}: {uid_line}");
    assert!(!d.log().contains("panicked"));
}

/// Open a connection to `addr` and send `bytes`; the time until the server closes it (None when
/// it is still open after `limit`).
fn closed_after(addr: &str, bytes: &[u8], limit: Duration) -> Option<Duration> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.write_all(bytes).expect("write");
    s.set_read_timeout(Some(limit)).expect("timeout");
    let t0 = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(t0.elapsed()),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(t0.elapsed()),
            Err(_) => return None,
        }
    }
}

#[test]
fn half_sent_requests_are_cut_off_on_every_listener() {
    let d = Daemon::start_with(&["--s3", "127.0.0.1:0", "--gateway", "127.0.0.1:0"]);
    let addr = |f: &str| std::fs::read_to_string(d.dir.join(f)).expect("addr file").trim().to_string();
    let (api, s3, gw) = (addr("http.addr"), addr("s3.addr"), addr("gateway.addr"));
    let limit = Duration::from_secs(90);
    let mut waits = Vec::new();
    for (what, a) in [("api", api.clone()), ("s3", s3), ("gateway", gw)] {
        waits.push(std::thread::spawn(move || (what, "head", closed_after(&a, b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow:", limit))));
    }
    // A body that stops half way: a login (read before any credential check). No S3 case: s3s
    // refuses an unsigned PUT before it reads the body, so it could not show the timeout.
    let login = "POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"username\":".to_string();
    waits.push(std::thread::spawn(move || ("api", "body", closed_after(&api, login.as_bytes(), limit))));
    for w in waits {
        let (what, part, closed) = w.join().expect("join");
        assert!(closed.is_some(), "{what}: a half-sent {part} kept the connection open past {limit:?}");
        eprintln!("{what}: half-sent {part} closed after {:?}", closed.unwrap_or_default());
    }
    // The daemon still answers everyone.
    assert_eq!(d.call("GET", "/v1/site", None).status, 200);
}

#[test]
fn s3_bounds_signature_freshness_and_refuses_anonymous_upload_listing() {
    let d = Daemon::start_with(&["--s3", "127.0.0.1:0"]);
    let s3 = std::fs::read_to_string(d.dir.join("s3.addr")).expect("s3.addr").trim().to_string();
    let r = d.call("POST", "/v1/buckets", Some(json!({"name": "cams", "spec": {"policy": "public-read"}})));
    assert_eq!(r.status, 201, "{}", r.body);
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let get = |path: &str, headers: &[(&str, &str)]| {
        let mut rq = agent.get(&format!("http://{s3}{path}"));
        for (k, v) in headers {
            rq = rq.header(*k, *v);
        }
        let mut resp = rq.call().expect("s3 answers");
        (resp.status().as_u16(), resp.body_mut().read_to_string().unwrap_or_default())
    };
    // Public-read: anyone lists the finished objects, nobody anonymous sees uploads in progress.
    assert_eq!(get("/cams?list-type=2", &[]).0, 200);
    let (status, body) = get("/cams?uploads", &[]);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("AccessDenied"), "{body}");
    // Signature Version 2 only within AWS's bounds: a 2001 date, or a presigned URL to 2100.
    let (status, body) = get("/cams/k", &[("authorization", "AWS AKIAEXAMPLE:c2lnbmF0dXJl"), ("date", "Mon, 01 Jan 2001 00:00:00 GMT")]);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("RequestTimeTooSkewed"), "{body}");
    let (status, body) = get("/cams/k?AWSAccessKeyId=AKIAEXAMPLE&Expires=4102444800&Signature=x", &[]);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("AuthorizationQueryParametersError"), "{body}");
    // A presigned Version 4 URL may live 7 days at most, as on AWS.
    let (status, body) = get(
        "/cams/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20260101T000000Z&X-Amz-Expires=2592000&X-Amz-SignedHeaders=host&X-Amz-Signature=00",
        &[],
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("AuthorizationQueryParametersError"), "{body}");
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0)
}

#[test]
fn login_floods_are_bounded_and_anonymous_requests_cannot_fill_the_audit_log() {
    let d = Daemon::start();
    let pid = d.child.as_ref().expect("child").id();
    let before = rss_kib(pid);
    // 64 concurrent wrong logins for the admin: answered 401 or 429, never more than two
    // Argon2 verifications at once, and the guessing is locked out.
    let addr = d.addr.clone();
    let guesses: Vec<_> = (0..64)
        .map(|i| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
                agent
                    .post(&format!("http://{addr}/v1/auth/login"))
                    .send_json(json!({"username": "admin", "password": format!("guess-{i}")}))
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            })
        })
        .collect();
    let codes: Vec<u16> = guesses.into_iter().map(|g| g.join().expect("join")).collect();
    let peak = rss_kib(pid);
    assert!(codes.iter().all(|c| *c == 401 || *c == 429), "{codes:?}");
    // Five free failures, the sixth that locks, and the two verifications in flight then.
    assert!(codes.iter().filter(|c| **c == 401).count() <= 8, "at most the free attempts were verified: {codes:?}");
    let r = d
        .raw(
            "POST",
            "/v1/auth/login",
            Some(json!({"username": "admin", "password": "another"}).to_string().as_bytes()),
            &[("content-type", "application/json")],
        )
        .expect("answer");
    assert_eq!(r.status, 429, "locked out: {}", r.body);
    assert_eq!(r.json()["error"]["code"], "too_many_requests");
    eprintln!("RSS {before} KiB before, {peak} KiB after 64 concurrent bad logins");
    assert!(peak < before + 200 * 1024, "memory grew from {before} to {peak} KiB");

    // 400 anonymous POSTs write at most the per-minute allowance of audit rows (60).
    for _ in 0..400 {
        let _ = d.raw("POST", "/v1/vpcs", Some(b"{}"), &[("content-type", "application/json")]);
    }
    let audit = d.call("GET", "/v1/audit?limit=1000", None).json();
    let anonymous = audit["items"].as_array().expect("items").iter().filter(|a| a["actor"] == "anonymous").count();
    assert!(anonymous <= 120, "{anonymous} anonymous audit rows (60 a minute; the run may span two minutes)");
    assert!(anonymous >= 1, "anonymous requests are still audited, up to the allowance");
    assert!(!d.log().contains("panicked"));
}
