//! Privileged lane: containers through the API and CLI of the real daemon. The busybox-httpd
//! image is pulled from a local registry, run in a VPC, fetched through an elastic IP from the
//! "internet" namespace, logged, exec'd into, stopped, started and deleted with nothing left
//! behind; then the daemon is killed (containers are adopted, not duplicated), a shim is killed
//! (its orphaned init is stopped and the container restarted), and a host reboot
//! is simulated (every process, namespace, cgroup and mount gone: the containers whose policy
//! says so come back with the same address).

use crate::common;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use common::{ContainerGuard, Daemon, NetnsGuard, Registry, create, http_get_in, ready_netns, shims_of};
use serde_json::{Value, json};

const PAGE: &str = "hello from cloudlet busybox-httpd\n";

fn status(d: &Daemon, name: &str) -> Value {
    d.call("GET", &format!("/v1/containers/{name}"), None).json()["status"].clone()
}

fn wait_phase(d: &Daemon, name: &str, phase: &str) -> Value {
    d.wait_for(60, &format!("container {name} {phase}"), || {
        let s = status(d, name);
        (s["phase"] == phase).then_some(s)
    })
}

/// Mounts under the data dir, but for the projects' pinned user namespaces (kept while their
/// project exists).
fn mounts_under(dir: &std::path::Path) -> usize {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let (d, pins) = (dir.to_string_lossy(), dir.join("userns").to_string_lossy().into_owned());
    info.lines().filter(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with(d.as_ref()) && !m.starts_with(&pins))).count()
}

#[test]
fn pull_run_in_a_vpc_fetch_through_an_eip_logs_exec_stop_delete_and_recover() {
    if !common::privileged(common::is_root(), "root (namespaces, cgroups, overlayfs, nftables)") {
        return;
    }
    let reg = Registry::with_busybox(None);
    let net = common::internet("ctr");
    let (stop, tmp) = (Arc::new(AtomicBool::new(false)), tempfile::tempdir().expect("tmp"));
    let _topology = NetnsGuard { data: None, extra: vec![net.up.clone(), net.inet.clone()], stop: stop.clone() };
    let cfg = common::uplink_config(tmp.path(), &net);
    // The registry is on loopback: the site permits exactly its address and port.
    let mut d = Daemon::start_with(&["--config", cfg.to_str().expect("utf-8"), "--egress-allow", &reg.addr]);
    let _owned = NetnsGuard { data: Some(d.dir.clone()), extra: vec![], stop: stop.clone() };
    let _containers = ContainerGuard(d.dir.clone());

    // Pull from the registry (plain HTTP): an operation that ends with the image Ready.
    let r = d.call("POST", "/v1/images", Some(json!({"name": "httpd", "spec": {"source": format!("{}/busybox-httpd:latest", reg.addr), "insecure": true}})));
    assert_eq!(r.status, 202, "{}", r.body);
    let op = d.wait_operation(r.json()["id"].as_str().expect("op id"));
    assert_eq!(op["status"]["phase"], "Succeeded", "{op}");
    let img = d.call("GET", "/v1/images/httpd", None).json();
    assert_eq!(img["status"]["phase"], "Ready");
    assert_eq!(img["status"]["config"]["entrypoint"], json!(["/bin/httpd"]));

    // A VPC with a web subnet, a group open on 8080, an interface with an EIP.
    create(&d, "/v1/vpcs", json!({"name": "prod", "spec": {"cidr": "10.0.0.0/16"}}));
    create(&d, "/v1/subnets", json!({"name": "web", "spec": {"vpc": "prod", "cidr": "10.0.1.0/24"}}));
    create(
        &d,
        "/v1/security-groups",
        json!({"name": "web", "spec": {"vpc": "prod", "ingress": [{"protocol": "tcp", "ports": "8080", "source_cidr": "0.0.0.0/0"}]}}),
    );
    for n in ["web-1", "job-1"] {
        create(&d, "/v1/network-interfaces", json!({"name": n, "spec": {"subnet": "web", "security_groups": ["web"]}}));
    }
    let (_, ip) = ready_netns(&d, "web-1");
    let eip = create(&d, "/v1/eips", json!({"name": "web-ip", "spec": {"network_interface": "web-1"}}))["spec"]["public_ip"].as_str().expect("eip").to_string();

    // Run through the CLI (over HTTP with the admin token), restart policy always.
    let remote = format!("http://{}", d.addr);
    let cli = |args: &[&str]| {
        let mut all = vec!["--remote", remote.as_str(), "--token", d.token.as_str()];
        all.extend_from_slice(args);
        common::cli(&all, None)
    };
    let (code, out, err) =
        cli(&["container", "run", "web", "--image", "httpd", "--eni", "web-1", "--restart", "always", "--memory", "64", "--cpus", "0.5", "-e", "MODE=test"]);
    assert_eq!(code, 0, "{out}{err}");
    let st = wait_phase(&d, "web", "Running");
    assert_eq!(st["private_ip"], ip.as_str());
    let id = d.call("GET", "/v1/containers/web", None).json()["id"].as_str().expect("id").to_string();

    // The page through the EIP from the internet namespace.
    let url = format!("http://{eip}:8080/");
    let got = d.wait_for(30, "the page through the EIP", || http_get_in(&net.inet, &url));
    assert_eq!(got, PAGE);
    // httpd -v logs each request with the client's address on stderr.
    let logs = d.wait_for(10, "a request in the log", || {
        let r = d.call("GET", "/v1/containers/web/logs?tail=50", None);
        r.body.contains("198.51.100.2").then_some(r.body)
    });
    assert!(!logs.is_empty());
    let (code, out, _) = cli(&["container", "logs", "web", "--tail", "5"]);
    assert_eq!(code, 0);
    assert!(out.contains("198.51.100.2"), "{out}");

    // Exec: inside the container's namespaces, with its address and environment.
    let (code, out, err) = cli(&[
        "container",
        "exec",
        "web",
        "--",
        "/bin/sh",
        "-c",
        "hostname; echo $MODE; ip -4 addr show eth0 | grep -c inet; cat /proc/1/cmdline | tr '\\0' ' '",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..3], ["web", "test", "1"], "{out}");
    assert!(lines[3].starts_with("/bin/httpd -f"), "{out}");
    let r = d.call("POST", "/v1/containers/web/exec", Some(json!({"command": ["/bin/sh", "-c", "cat /etc/hosts; exit 3"]})));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["exit_code"], 3);
    assert!(r.json()["stdout"].as_str().expect("stdout").contains(&format!("{ip}\tweb")));

    // The interface's security groups apply: a second server on 8081 answers inside the
    // container, but the group admits only 8080 from outside.
    let r = d.call("POST", "/v1/containers/web/exec", Some(json!({"command": ["/bin/httpd", "-p", "8081", "-h", "/www"]})));
    assert_eq!(r.json()["exit_code"], 0, "{}", r.body);
    let r = d.call("POST", "/v1/containers/web/exec", Some(json!({"command": ["/bin/wget", "-q", "-O", "-", "http://127.0.0.1:8081/"]})));
    assert_eq!(r.json()["stdout"], PAGE, "{}", r.body);
    assert_eq!(http_get_in(&net.inet, &format!("http://{eip}:8081/")), None, "8081 is not in the security group");

    // A job without restart: runs to its end and reports exit code 0, on another interface.
    create(&d, "/v1/containers", json!({"name": "job", "spec": {"image": "httpd", "network_interface": "job-1", "command": ["/bin/sh", "-c", "echo done"]}}));
    let st = wait_phase(&d, "job", "Exited");
    assert_eq!(st["exit_code"], 0);
    assert_eq!(d.call("GET", "/v1/containers/job/logs", None).body, "done\n");

    // Stop (httpd ignores SIGTERM as pid 1, so SIGKILL after the grace period) and start again.
    let r = d.call("PATCH", "/v1/containers/web", Some(json!({"spec": {"stop_timeout_seconds": 1}})));
    assert_eq!(r.status, 200, "{}", r.body);
    d.wait_for(30, "restart with the new spec", || (status(&d, "web")["phase"] == "Running" && http_get_in(&net.inet, &url).is_some()).then_some(()));
    let (code, _, err) = cli(&["container", "stop", "web"]);
    assert_eq!(code, 0, "{err}");
    wait_phase(&d, "web", "Stopped");
    assert_eq!(http_get_in(&net.inet, &url), None, "a stopped container serves nothing");
    assert_eq!(shims_of(&id), 0);
    let r = d.call("POST", "/v1/containers/web/exec", Some(json!({"command": ["true"]})));
    assert_eq!(r.status, 409, "exec into a stopped container: {}", r.body);
    let (code, _, err) = cli(&["container", "start", "web"]);
    assert_eq!(code, 0, "{err}");
    wait_phase(&d, "web", "Running");
    assert_eq!(d.wait_for(30, "the page after start", || http_get_in(&net.inet, &url)), PAGE);

    // kill -9 of the daemon: the container keeps serving, and is adopted (same pid, one shim).
    let pid_before = status(&d, "web")["pid"].clone();
    d.kill9();
    assert_eq!(http_get_in(&net.inet, &url).as_deref(), Some(PAGE), "serving while the daemon is down");
    d.launch();
    d.wait_for(30, "adoption", || (status(&d, "web")["phase"] == "Running").then_some(()));
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(status(&d, "web")["pid"], pid_before, "adopted, not restarted");
    assert_eq!(shims_of(&id), 1, "exactly one shim");

    // kill -9 of the shim alone: the init lives on unsupervised (no logs, no exit record). The
    // reconciler's next look finds the orphan, stops it and, as the policy is `always`, runs the
    // container again under one new shim. docs/benchmarks.md records the time printed here.
    let rec: Value = serde_json::from_slice(&std::fs::read(d.dir.join("containers").join(&id).join("shim.json")).expect("shim.json")).expect("json");
    let shim = rec["shim_pid"].as_i64().expect("shim pid") as i32;
    let killed = std::time::Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(shim), nix::sys::signal::Signal::SIGKILL).expect("kill the shim");
    d.wait_for(30, "the container to run again after its shim was killed", || {
        let s = status(&d, "web");
        (s["phase"] == "Running" && s["pid"] != pid_before && http_get_in(&net.inet, &url).as_deref() == Some(PAGE)).then_some(())
    });
    eprintln!("killed shim: serving again after {} ms", killed.elapsed().as_millis());
    assert_eq!(shims_of(&id), 1, "one new shim");
    let (init, start) = (rec["init_pid"].as_i64().expect("init pid") as i32, rec["init_start"].as_u64().expect("init start"));
    assert!(!cloudlet::container::shim::alive(init, start), "the orphaned init was stopped");
    let pid_before = status(&d, "web")["pid"].clone();

    // A simulated reboot: every process, namespace, cgroup and overlay mount is gone.
    common::simulate_reboot(&mut d);
    assert_eq!(mounts_under(&d.dir), 0);
    d.launch();
    let st = wait_phase(&d, "web", "Running");
    assert_eq!(st["private_ip"], ip.as_str(), "same address after the reboot");
    assert_ne!(st["pid"], pid_before);
    assert_eq!(d.wait_for(60, "the page after the reboot", || http_get_in(&net.inet, &url)), PAGE);
    assert_eq!(shims_of(&id), 1, "one shim, no duplicate");
    assert_eq!(status(&d, "job")["phase"], "Exited", "a finished job stays finished");

    // Deletion leaves no process, mount or cgroup behind; the image is then free to go.
    assert_eq!(d.call("DELETE", "/v1/images/httpd", None).status, 409, "in use by containers");
    for n in ["web", "job"] {
        assert_eq!(d.call("DELETE", &format!("/v1/containers/{n}"), None).status, 204);
    }
    d.wait_for(30, "the container's files to go", || (!d.dir.join("containers").join(&id).exists()).then_some(()));
    assert_eq!(shims_of(&id), 0);
    assert_eq!(mounts_under(&d.dir), 0, "no mounts left");
    assert!(cloudlet::container::cgroup::dirs(&format!("/cloudlet/{id}")).is_empty(), "no cgroup left");
    assert_eq!(d.call("DELETE", "/v1/images/httpd", None).status, 204);
    d.wait_for(30, "garbage collection", || {
        let blobs = std::fs::read_dir(d.dir.join("images/blobs/sha256")).map(|r| r.count()).unwrap_or(0);
        (blobs == 0).then_some(())
    });
}

fn field(a: &common::Answer) -> String {
    a.json()["error"]["field"].as_str().unwrap_or_default().to_string()
}

/// A tenant (a member of project `b`) mounts only host paths a site admin granted to `b`, and a
/// read-only grant only read-only: each attempt beyond is refused naming the field, and nothing
/// of the host path is read or written.
#[test]
fn host_paths_are_granted_per_project_and_read_only_unless_granted_otherwise() {
    if !common::privileged(common::is_root(), "root (namespaces, cgroups, overlayfs)") {
        return;
    }
    let host = tempfile::tempdir().expect("tmp");
    let (share, secret) = (host.path().join("share"), host.path().join("secret"));
    for p in [&share, &secret] {
        std::fs::create_dir(p).expect("dir");
    }
    std::fs::write(share.join("readme"), "shared\n").expect("write");
    std::fs::write(secret.join("key"), "a's key\n").expect("write");
    let cfg = host.path().join("config.toml");
    std::fs::write(&cfg, format!("[container.host_paths]\nshare = \"{}\"\nsecret = \"{}\"\n", share.display(), secret.display())).expect("config");
    let d = Daemon::start_with(&["--config", cfg.to_str().expect("utf-8")]);
    let _containers = ContainerGuard(d.dir.clone());
    assert_eq!(d.call("POST", "/v1/projects", Some(json!({"name": "a", "spec": {"host_paths": {"secret": "rw"}}}))).status, 201);
    assert_eq!(d.call("POST", "/v1/projects", Some(json!({"name": "b"}))).status, 201);
    let r = d.call("POST", "/v1/tokens?project=b", Some(json!({"name": "m", "spec": {"role": "member"}})));
    assert_eq!(r.status, 201, "{}", r.body);
    let b = r.json()["secret"].as_str().expect("secret").to_string();
    let auth = format!("Bearer {b}");
    let archive = std::fs::read(common::busybox_image().join("busybox-httpd.oci.tar")).expect("archive");
    let r = d.raw("POST", "/v1/images/import?name=bb", Some(&archive), &[("authorization", &auth), ("content-type", "application/x-tar")]).expect("connection");
    assert_eq!(r.status, 201, "{}", r.body);
    let run = |name: &str, host_path: &str, read_only: bool, cmd: &str| {
        d.call_as(
            &b,
            "POST",
            "/v1/containers",
            Some(json!({"name": name, "spec": {"image": "bb", "command": ["/bin/sh", "-c", cmd],
            "mounts": [{"host_path": host_path, "target": "/mnt", "read_only": read_only}]}})),
        )
    };
    let check = |r: &common::Answer, status: u16, f: &str| {
        assert_eq!((r.status, field(r).as_str()), (status, f), "{}", r.body);
        let e = &r.json()["error"];
        assert!(e["code"] == "permission_denied" && e["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", r.body);
    };

    // Nothing granted to b: neither a's path, nor one nobody was granted, nor a name that does
    // not exist (answered alike, so b learns nothing of the site's paths).
    for (hp, ro) in [("secret", false), ("secret", true), ("share", true), ("nothere", true)] {
        check(&run("steal", hp, ro, "cat /mnt/key; echo x > /mnt/pwned"), 403, "spec.mounts[0].host_path");
    }
    assert_eq!(d.call_as(&b, "GET", "/v1/containers/steal", None).status, 404, "nothing was made");
    // b cannot grant itself anything, as a member of its project or in a new one.
    for spec in [json!({"host_paths": {"secret": "rw"}}), json!({"host_paths": {"share": "rw"}}), json!({"function_domains": ["b.example"]})] {
        let r = d.call_as(&b, "PATCH", "/v1/projects/b", Some(json!({"spec": spec})));
        assert_eq!((r.status, r.json()["error"]["code"].as_str()), (403, Some("permission_denied")), "{}", r.body);
    }
    let r = d.call_as(&b, "POST", "/v1/projects", Some(json!({"name": "c", "spec": {"host_paths": {"secret": "rw"}}})));
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(d.call("GET", "/v1/projects/b", None).json()["spec"].get("host_paths"), None);

    // Granted read-only: a read-write mount is refused naming read_only; a read-only one runs
    // and really is read-only.
    let r = d.call("PATCH", "/v1/projects/b", Some(json!({"spec": {"host_paths": {"share": "ro"}}})));
    assert_eq!(r.status, 200, "{}", r.body);
    check(&run("rw", "share", false, "echo x > /mnt/pwned"), 403, "spec.mounts[0].read_only");
    check(&run("rw", "secret", true, "cat /mnt/key"), 403, "spec.mounts[0].host_path");
    let r = run("ro", "share", true, "cat /mnt/readme; echo x > /mnt/pwned || echo refused; sleep 1000");
    assert_eq!(r.status, 201, "{}", r.body);
    let logs = d.wait_for(60, "the read-only container's output", || {
        let l = d.call_as(&b, "GET", "/v1/containers/ro/logs", None).body;
        l.contains("refused").then_some(l)
    });
    assert!(logs.contains("shared"), "the granted path is readable: {logs}");
    assert!(!share.join("pwned").exists(), "nothing written through a read-only grant");
    // Nor can b turn its mount read-write with PATCH.
    let r = d.call_as(&b, "PATCH", "/v1/containers/ro", Some(json!({"spec": {"mounts": [{"host_path": "share", "target": "/mnt", "read_only": false}]}})));
    check(&r, 403, "spec.mounts[0].read_only");
    assert_eq!(d.call_as(&b, "GET", "/v1/containers/ro", None).json()["spec"]["mounts"][0]["read_only"], true);
    // A withdrawn grant: the container does not start again.
    let r = d.call("PATCH", "/v1/projects/b", Some(json!({"spec": {"host_paths": {"share": null}}})));
    assert_eq!((r.status, r.json()["spec"].get("host_paths")), (200, None), "{}", r.body);
    assert_eq!(d.call_as(&b, "POST", "/v1/containers/ro/restart", None).status, 202);
    let st = d.wait_for(60, "the restart to be refused", || {
        let s = d.call_as(&b, "GET", "/v1/containers/ro", None).json()["status"].clone();
        (s["phase"] == "Failed").then_some(s)
    });
    assert!(st["message"].as_str().is_some_and(|m| m.contains("not granted")), "{st}");
    assert_eq!(std::fs::read_to_string(secret.join("key")).expect("key"), "a's key\n", "a's path untouched");
    assert!(!secret.join("pwned").exists() && !share.join("pwned").exists());
    assert!(!d.log().contains("panicked"));
}
