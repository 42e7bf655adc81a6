//! Privileged lane: instances through the API and CLI of the real daemon, without a booting
//! guest (this host's `/dev/kvm` cannot boot a stock kernel; real boots are the nested KVM
//! lane's). The daemon runs a stand-in worker (`CLOUDLET_VMM_WORKER`, a small Python program
//! written here) that keeps the worker contract of `cloudlet::vmm::spec`: it reads the spec,
//! serves the control socket (`status`, `shutdown`, `kill`, `console`), appends to the console
//! log, writes `exit.json`, and sends a DHCP discover through the tap it inherited as fd 3.
//! When killed it leaves a short-lived task in its cgroup, as a real worker's exiting threads do.
//!
//! Covered: VM image import (good and hostile manifests), every bad spec field (422 naming it),
//! the tap in the router namespace with its route, proxy ARP and DHCP lease, the worker's cgroup
//! and descriptors, a killed worker restarted, a killed daemon adopting its worker, a forced
//! stop of a guest that ignores the shutdown, a guest poweroff, the console log and websocket,
//! volumes in use (409), another project (404), a cross-site websocket refused (403), orphaned
//! cgroups swept at start-up, and stop then delete leaving nothing behind (no cgroup either).

use crate::common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use common::{Daemon, NetnsGuard, create};
use serde_json::{Value, json};

const STAND_IN: &str = r#"#!/usr/bin/env python3
# A stand-in vmm worker for tests: the daemon's side of the contract, without a VM.
import fcntl, json, os, select, signal, socket, struct, subprocess, sys, threading, time

spec = json.load(open(sys.argv[sys.argv.index("--spec") + 1]))
t0 = time.time()
fds = sorted(int(f) for f in os.listdir("/proc/self/fd"))
links = {f: os.readlink("/proc/self/fd/%d" % f) if os.path.exists("/proc/self/fd/%d" % f) else "" for f in fds}
log = open(spec["console_log"], "ab", buffering=0)
def say(s):
    log.write((s + "\n").encode())
ifr = fcntl.ioctl(3, 0x800454d2, b"\0" * 40)  # TUNGETIFF
say("stand-in worker: booting %s" % spec["id"])
say("tap=%s" % ifr[:16].rstrip(b"\0").decode())
say("fds=%s" % json.dumps(links))
say("disks=%s" % json.dumps([[d["path"], d.get("read_only", False)] for d in spec["disks"]]))
say("cmdline=%s" % spec["cmdline"])
ignore_shutdown = "ignore_shutdown" in spec["cmdline"]

def finish(reason):
    if reason == "killed":
        # As a real worker's vCPU threads do while KVM tears the VM down, a task stays in the
        # worker's cgroup for a moment after the worker itself is gone.
        subprocess.Popen(["sleep", "1"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rec = {"reason": reason, "boot_timer_ms": 12.5, "total_ms": (time.time() - t0) * 1000}
    tmp = spec["exit_record"] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(rec, f)
    os.rename(tmp, spec["exit_record"])
    os._exit(0)

signal.signal(signal.SIGTERM, lambda *_: finish("killed"))

def dhcp():
    mac = bytes(int(x, 16) for x in spec["nets"][0]["mac"].split(":"))
    d = struct.pack("!BBBBIHH4s4s4s4s16s64s128sI", 1, 1, 6, 0, 0x12345678, 0, 0x8000, b"\0"*4, b"\0"*4, b"\0"*4, b"\0"*4, mac + b"\0"*10, b"", b"", 0x63825363)
    d += bytes([53, 1, 1, 255])
    d += b"\0" * (300 - len(d))
    udp = struct.pack("!HHHH", 68, 67, 8 + len(d), 0) + d
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, b"\0"*4, b"\xff"*4)
    s = sum(struct.unpack("!10H", ip))
    s = (s & 0xffff) + (s >> 16); s = (s & 0xffff) + (s >> 16)
    ip = ip[:10] + struct.pack("!H", ~s & 0xffff) + ip[12:]
    frame = b"\0" * 10 + b"\xff" * 6 + mac + b"\x08\x00" + ip + udp  # virtio_net_hdr first
    end = time.time() + 20
    while time.time() < end:
        os.write(3, frame)
        stop = time.time() + 1
        while time.time() < stop:
            r, _, _ = select.select([3], [], [], 0.2)
            if not r:
                continue
            p = os.read(3, 65536)[10:]
            if len(p) > 42 + 240 and p[12:14] == b"\x08\x00" and p[23] == 17 and p[36:38] == b"\x00\x44":
                say("dhcp offer %s" % socket.inet_ntoa(p[42 + 16:42 + 20]))
                return
threading.Thread(target=dhcp, daemon=True).start()

def console(conn):
    buf = b""
    while True:
        b = conn.recv(4096)
        if not b:
            return
        buf += b
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            say("console got: %s" % line.decode(errors="replace"))
            conn.sendall(b"echo:" + line + b"\n")
            if line.strip() == b"poweroff":
                finish("poweroff")

def serve(conn):
    f = conn.makefile("rb")
    for line in f:
        req = json.loads(line)
        op = req["op"]
        if op == "status":
            st = {"pid": os.getpid(), "state": "running", "boot_timer_ms": 12.5, "uptime_ms": (time.time() - t0) * 1000, "vcpus": spec["vcpus"], "memory_mib": spec["memory_mib"]}
            conn.sendall((json.dumps({"ok": True, "status": st}) + "\n").encode())
        elif op == "shutdown":
            conn.sendall(b'{"ok": true}\n')
            say("shutdown requested")
            if not ignore_shutdown:
                finish("stopped")
        elif op == "kill":
            conn.sendall(b'{"ok": true}\n')
            finish("killed")
        elif op == "console":
            conn.sendall(b'{"ok": true}\n')
            console(conn)
            return

if os.path.exists(spec["control_socket"]):
    os.unlink(spec["control_socket"])
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(spec["control_socket"])
srv.listen(8)
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

fn write_stand_in(dir: &Path) -> PathBuf {
    let p = dir.join("stand-in-worker.py");
    std::fs::write(&p, STAND_IN).expect("write the stand-in");
    let mut perm = std::fs::metadata(&p).expect("stat").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&p, perm).expect("chmod");
    p
}

/// A VM image directory: a fake kernel and initramfs, a sparse 8 MiB root disk.
fn image_dir(root: &Path, manifest: Value) -> PathBuf {
    let d = root.join(format!("img-{}", rand_suffix()));
    std::fs::create_dir_all(d.join("boot")).expect("dir");
    std::fs::write(d.join("boot/vmlinuz-6.1"), b"not really a bzImage").expect("kernel");
    std::os::unix::fs::symlink("vmlinuz-6.1", d.join("boot/vmlinuz")).expect("symlink");
    std::fs::write(d.join("initrd.img"), b"not really an initramfs").expect("initrd");
    let f = std::fs::File::create(d.join("rootfs.img")).expect("rootfs");
    f.set_len(8 << 20).expect("size");
    (&f).write_all(b"root").expect("write");
    std::fs::write(d.join("image.json"), serde_json::to_vec(&manifest).expect("json")).expect("manifest");
    d
}

fn rand_suffix() -> String {
    format!(
        "{:x}",
        Instant::now().elapsed().as_nanos()
            ^ u128::from(std::process::id())
            ^ std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
    )
}

fn manifest() -> Value {
    json!({"name": "debian-12", "os": "linux", "arch": "x86_64", "kernel": "boot/vmlinuz", "initrd": "initrd.img", "rootfs": "rootfs.img", "cmdline": "console=ttyS0 root=/dev/vda rw"})
}

fn tar_of(dir: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", dir).expect("tar");
    b.into_inner().expect("tar")
}

fn import(d: &Daemon, dir: &Path, name: &str) -> common::Answer {
    let auth = format!("Bearer {}", d.token);
    d.raw("POST", &format!("/v1/images/import-vm?name={name}"), Some(&tar_of(dir)), &[("authorization", &auth), ("content-type", "application/x-tar")])
        .expect("import")
}

fn field_of(a: &common::Answer) -> String {
    a.json()["error"]["field"].as_str().unwrap_or_default().to_string()
}

fn status(d: &Daemon, name: &str) -> Value {
    d.call("GET", &format!("/v1/instances/{name}"), None).json()["status"].clone()
}

fn wait_status(d: &Daemon, name: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    d.wait_for(60, &format!("instance {name}: {what}"), || {
        let s = status(d, name);
        f(&s).then_some(s)
    })
}

/// Processes whose command line is a worker of instance `id`.
fn workers_of(id: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let cmd = String::from_utf8_lossy(&std::fs::read(e.path().join("cmdline")).unwrap_or_default()).into_owned();
            (cmd.contains("vmm-worker") && cmd.contains(id)).then(|| e.file_name().to_string_lossy().parse().ok()).flatten()
        })
        .collect()
}

fn in_router(vpc: &str, args: &[&str]) -> String {
    let ns = cloudlet::net::names::vpc_netns(vpc);
    let out = Command::new("ip").args(["netns", "exec", &ns]).args(args).output().expect("ip netns exec");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// On drop: SIGKILL the daemon and every stand-in worker of its data dir, and remove their
/// cgroups (declared after the daemon, so it runs first).
struct WorkerGuard(PathBuf);

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        let dir = self.0.to_string_lossy().into_owned();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let cmd = String::from_utf8_lossy(&std::fs::read(e.path().join("cmdline")).unwrap_or_default()).into_owned();
            if cmd.contains(&dir)
                && (cmd.contains("vmm-worker") || cmd.contains("serve"))
                && let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>()
            {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
        for e in std::fs::read_dir(self.0.join("instances")).into_iter().flatten().flatten() {
            cloudlet::container::cgroup::remove(&format!("/cloudlet/{}", e.file_name().to_string_lossy()));
        }
    }
}

/// Send the console's websocket handshake (with `Origin` when given); the stream, a reader
/// positioned after the status line, and the status line.
fn ws_handshake(d: &Daemon, name: &str, origin: Option<&str>) -> (std::net::TcpStream, std::io::BufReader<std::net::TcpStream>, String) {
    use std::io::BufRead;
    let mut s = std::net::TcpStream::connect(&d.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let origin = origin.map(|o| format!("Origin: {o}\r\n")).unwrap_or_default();
    write!(
        s,
        "GET /v1/instances/{name}/console/ws HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n{origin}Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        d.addr, d.token
    )
    .expect("request");
    let mut r = std::io::BufReader::new(s.try_clone().expect("clone"));
    let mut line = String::new();
    r.read_line(&mut line).expect("status line");
    (s, r, line)
}

fn ws_console(d: &Daemon, name: &str, origin: Option<&str>) -> tokio_tungstenite::tungstenite::WebSocket<std::net::TcpStream> {
    use std::io::BufRead;
    let (s, mut r, mut line) = ws_handshake(d, name, origin);
    assert!(line.starts_with("HTTP/1.1 101"), "websocket upgrade refused: {line}");
    loop {
        line.clear();
        r.read_line(&mut line).expect("header");
        if line == "\r\n" {
            break;
        }
    }
    assert!(r.buffer().is_empty(), "no websocket frame before the first message");
    tokio_tungstenite::tungstenite::WebSocket::from_raw_socket(s, tokio_tungstenite::tungstenite::protocol::Role::Client, None)
}

/// A handshake with a foreign `Origin`: its status line and JSON error body.
fn ws_refused(d: &Daemon, name: &str, origin: &str) -> (String, Value) {
    use std::io::{BufRead, Read};
    let (_s, mut r, status) = ws_handshake(d, name, Some(origin));
    let mut len = 0;
    let mut line = String::new();
    loop {
        line.clear();
        r.read_line(&mut line).expect("header");
        if line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().expect("length");
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).expect("body");
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// The directories of the cgroup `/cloudlet/<id>` that exist, in any hierarchy.
fn cgroups_of(id: &str) -> Vec<PathBuf> {
    cloudlet::container::cgroup::dirs(&format!("/cloudlet/{id}"))
}

#[test]
fn instances_import_validate_attach_supervise_adopt_stop_and_delete() {
    if !common::privileged(common::is_root(), "root (namespaces, taps, cgroups)") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let worker = write_stand_in(tmp.path());
    let stop = Arc::new(AtomicBool::new(false));
    // The daemon reads CLOUDLET_VMM_WORKER: relaunch the fresh daemon with it.
    let mut d = Daemon::start_with(&[]);
    d.kill9();
    d.env.push(("CLOUDLET_VMM_WORKER".into(), worker.display().to_string()));
    d.launch();
    let _owned = NetnsGuard { data: Some(d.dir.clone()), extra: vec![], stop: stop.clone() };
    let _workers = WorkerGuard(d.dir.clone());
    let cli = |d: &Daemon, args: &[&str]| {
        let addr = format!("http://{}", d.addr);
        let mut all = vec!["--remote", addr.as_str(), "--token", d.token.as_str()];
        all.extend_from_slice(args);
        common::cli(&all, None)
    };

    // VM image import through the CLI: named from the manifest, files checked and hashed.
    let good = image_dir(tmp.path(), manifest());
    let (code, out, err) = cli(&d, &["image", "import", "--vm", good.to_str().expect("utf-8"), "-o", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let img: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(img["name"], "debian-12");
    assert_eq!(img["status"]["format"], "vm");
    assert_eq!(img["status"]["phase"], "Ready");
    use sha2::Digest;
    assert_eq!(img["status"]["files"]["kernel"]["sha256"], hex::encode(sha2::Sha256::digest(b"not really a bzImage")));
    let img_dir = d.dir.join("images/vm").join(img["id"].as_str().expect("id"));
    assert!(img_dir.join("kernel").is_file() && img_dir.join("rootfs.img").is_file(), "stored under DATA/images/vm/<id>");

    // Hostile manifests: each refused with 422 naming the field, nothing stored.
    std::fs::write(tmp.path().join("secret"), b"host secret").expect("secret");
    let cases: Vec<(Value, &str)> = vec![
        (json!({"kernel": "/etc/hostname"}), "manifest.kernel"),
        (json!({"kernel": "../../etc/hostname"}), "manifest.kernel"),
        (json!({"rootfs": "escape"}), "manifest.rootfs"),
        (json!({"initrd": "missing.img"}), "manifest.initrd"),
        (json!({"kernel": "boot"}), "manifest.kernel"),
        (json!({"arch": "riscv64"}), "manifest.arch"),
        (json!({"kernel": 7}), "manifest.kernel"),
    ];
    for (i, (patch, field)) in cases.iter().enumerate() {
        let mut m = manifest();
        for (k, v) in patch.as_object().expect("object") {
            m[k] = v.clone();
        }
        let dir = image_dir(tmp.path(), m);
        std::os::unix::fs::symlink(tmp.path().join("secret"), dir.join("escape")).expect("symlink out");
        let a = import(&d, &dir, &format!("bad-{i}"));
        assert_eq!(a.status, 422, "{patch}: {}", a.body);
        assert_eq!(field_of(&a), *field, "{patch}: {}", a.body);
    }
    let no_manifest = image_dir(tmp.path(), manifest());
    std::fs::remove_file(no_manifest.join("image.json")).expect("rm");
    let a = import(&d, &no_manifest, "bad-none");
    assert_eq!((a.status, field_of(&a)), (422, "manifest".to_string()), "{}", a.body);
    // A kernel over the 128 MiB limit (sparse on disk, sent whole).
    let huge = image_dir(tmp.path(), manifest());
    std::fs::File::options().write(true).open(huge.join("boot/vmlinuz-6.1")).expect("open").set_len(129 << 20).expect("grow");
    let (code, _, err) = cli(&d, &["image", "import", "--vm", huge.to_str().expect("utf-8"), "--name", "bad-huge"]);
    assert_ne!(code, 0);
    assert!(err.contains("manifest.kernel") && err.contains("over the limit"), "{err}");
    let names: Vec<String> = d.call("GET", "/v1/images", None).json()["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["name"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(names, ["debian-12"], "only the good image is registered");
    let vm_dirs = std::fs::read_dir(d.dir.join("images/vm")).expect("vm dir").count();
    assert_eq!(vm_dirs, 1, "no leftovers of refused imports");

    // A VPC for the instances.
    let vpc = create(&d, "/v1/vpcs", json!({"name": "prod", "spec": {"cidr": "10.1.0.0/16"}}));
    let vpc_id = vpc["id"].as_str().expect("vpc id").to_string();
    create(&d, "/v1/subnets", json!({"name": "web", "spec": {"vpc": "prod", "cidr": "10.1.1.0/24"}}));
    create(
        &d,
        "/v1/security-groups",
        json!({"name": "web", "spec": {"vpc": "prod", "ingress": [{"protocol": "tcp", "ports": "80", "source_cidr": "0.0.0.0/0"}]}}),
    );
    create(&d, "/v1/volumes", json!({"name": "data", "spec": {"size_mib": 64}}));
    create(&d, "/v1/volumes", json!({"name": "spare", "spec": {"size_mib": 32}}));

    // Every bad field: 422 naming it, and nothing created.
    let base = json!({"image": "debian-12", "subnet": "web", "security_groups": ["web"]});
    let bad: Vec<(Value, &str)> = vec![
        (json!({"vcpus": 0}), "spec.vcpus"),
        (json!({"vcpus": 9}), "spec.vcpus"),
        (json!({"vcpus": "two"}), "spec.vcpus"),
        (json!({"memory_mib": 64}), "spec.memory_mib"),
        (json!({"memory_mib": 32768}), "spec.memory_mib"),
        (json!({"stop_timeout_seconds": 0}), "spec.stop_timeout_seconds"),
        (json!({"stop_timeout_seconds": 601}), "spec.stop_timeout_seconds"),
        (json!({"image": "nope"}), "spec.image"),
        (json!({"subnet": "nope"}), "spec.subnet"),
        (json!({"security_groups": ["nope"]}), "spec.security_groups[0]"),
        (json!({"private_ip": "10.9.9.9"}), "spec.private_ip"),
        (json!({"private_ip": "not-an-ip"}), "spec.private_ip"),
        (json!({"volumes": [{"volume": "nope"}]}), "spec.volumes[0].volume"),
        (json!({"volumes": [{"volume": "data"}, {"volume": "data"}]}), "spec.volumes[1].volume"),
        (json!({"volumes": [{"volume": "data", "mode": "rw"}]}), "spec.volumes[0].mode"),
        (json!({"state": "paused"}), "spec.state"),
        (json!({"restart_policy": "sometimes"}), "spec.restart_policy"),
        (json!({"cmdline_extra": "a\nb"}), "spec.cmdline_extra"),
        (json!({"network_interface": "eni-x"}), "spec.network_interface"),
        (json!({"bogus": 1}), "spec.bogus"),
    ];
    for (patch, field) in &bad {
        let mut spec = base.clone();
        for (k, v) in patch.as_object().expect("object") {
            spec[k] = v.clone();
        }
        let a = d.call("POST", "/v1/instances", Some(json!({"name": "bad", "spec": spec})));
        assert_eq!(a.status, 422, "{patch}: {}", a.body);
        assert_eq!(field_of(&a), *field, "{patch}: {}", a.body);
    }
    let a = d.call("POST", "/v1/instances", Some(json!({"name": "x".repeat(60), "spec": base})));
    assert_eq!((a.status, field_of(&a)), (422, "name".to_string()), "{}", a.body);
    assert_eq!(d.call("GET", "/v1/instances", None).json()["items"], json!([]));
    assert_eq!(d.call("GET", "/v1/network-interfaces", None).json()["items"], json!([]), "no interface left by a refused create");

    // The instance: created through the CLI; its interface is made with it.
    let (code, out, err) = cli(
        &d,
        &[
            "instance",
            "create",
            "vm1",
            "--image",
            "debian-12",
            "--subnet",
            "web",
            "--sg",
            "web",
            "--memory",
            "256",
            "--vcpus",
            "2",
            "--volume",
            "data",
            "--volume",
            "spare:ro",
            "--stop-timeout",
            "2",
            "--cmdline-extra",
            "ignore_shutdown",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let inst = d.call("GET", "/v1/instances/vm1", None).json();
    let id = inst["id"].as_str().expect("id").to_string();
    let ip = inst["spec"]["private_ip"].as_str().expect("an address was assigned").to_string();
    let eni = d.call("GET", "/v1/network-interfaces/vm1-eth0", None).json();
    assert_eq!(eni["spec"]["attachment"], "tap");
    assert_eq!(inst["spec"]["network_interface"], eni["id"]);
    let st = wait_status(&d, "vm1", "Running", |s| s["phase"] == "Running");
    let pid = st["pid"].as_i64().expect("pid");
    assert_eq!(st["boot_timer_ms"], 12.5);
    assert_eq!(st["private_ip"], ip.as_str());
    let mac = st["mac"].as_str().expect("mac").to_string();
    assert_eq!(u8::from_str_radix(&mac[..2], 16).expect("hex") & 3, 2, "locally administered unicast: {mac}");
    assert_eq!(workers_of(&id), vec![pid as i32], "one worker");

    // The tap: persistent, in the router namespace, with the /32 route, proxy ARP, and a DHCP
    // lease the guest side (the stand-in, through fd 3) got.
    let tap = cloudlet::net::names::ifname(cloudlet::net::names::Role::Workload, eni["id"].as_str().expect("eni id"));
    assert_eq!(st["tap"], tap.as_str());
    let link = in_router(&vpc_id, &["ip", "-d", "link", "show", &tap]);
    assert!(link.contains("tun") && link.contains("tap"), "{link}");
    assert!(in_router(&vpc_id, &["ip", "route", "show", &format!("{ip}/32")]).contains(&format!("dev {tap}")));
    assert_eq!(in_router(&vpc_id, &["cat", &format!("/proc/sys/net/ipv4/conf/{tap}/proxy_arp")]).trim(), "1");
    assert!(
        !Path::new(&cloudlet::net::host::netns_path(&cloudlet::net::names::eni_netns(eni["id"].as_str().expect("id")))).exists(),
        "no cle- namespace for a tap"
    );
    let console = |d: &Daemon| d.call("GET", "/v1/instances/vm1/console", None).body;
    let log = d.wait_for(30, "a DHCP offer through the tap", || {
        let c = console(&d);
        c.contains("dhcp offer").then_some(c)
    });
    assert!(log.contains(&format!("dhcp offer {ip}\n")), "{log}");
    assert!(log.contains(&format!("tap={tap}\n")), "{log}");
    assert!(log.contains("cmdline=console=ttyS0 root=/dev/vda rw ignore_shutdown"), "{log}");
    // Its descriptors: stdio, the tap as fd 3, nothing of the daemon's.
    let fds: Value = serde_json::from_str(log.lines().find_map(|l| l.strip_prefix("fds=")).expect("fds line")).expect("fds json");
    assert_eq!(fds["3"], "/dev/net/tun", "{fds}");
    assert_eq!(fds["0"], "/dev/null");
    assert!(fds.as_object().expect("map").len() <= 5, "only stdio, the tap and the listing's own: {fds}");
    let disks: Value = serde_json::from_str(log.lines().find_map(|l| l.strip_prefix("disks=")).expect("disks line")).expect("disks json");
    assert_eq!(disks.as_array().expect("disks").len(), 3);
    assert!(disks[0][0].as_str().expect("root").ends_with(&format!("instances/{id}/root.img")));
    assert_eq!(disks[2][1], true, "spare is read-only");
    let root = d.dir.join("instances").join(&id).join("root.img");
    assert_eq!(std::fs::metadata(&root).expect("root disk").len(), 8 << 20);
    // The data volume was formatted ext4 on first attach, and is not mounted on the host.
    let vol_file = d.call("GET", "/v1/volumes/data", None).json()["status"]["path"].as_str().expect("path").to_string();
    let blkid = Command::new("blkid").args(["-p", "-o", "value", "-s", "TYPE", &vol_file]).output().expect("blkid");
    assert_eq!(String::from_utf8_lossy(&blkid.stdout).trim(), "ext4");
    // Its cgroup: the worker is in it, with memory = guest + 64 MiB and a quota of 2 CPUs.
    for dir in st["cgroup_dirs"].as_array().expect("cgroup dirs") {
        let dir = Path::new(dir.as_str().expect("dir"));
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).expect("procs");
        assert!(procs.lines().any(|l| l == pid.to_string()), "{} holds {procs}", dir.display());
        for (knob, want) in [("memory.limit_in_bytes", "335544320"), ("memory.max", "335544320"), ("cpu.cfs_quota_us", "200000"), ("cpu.max", "200000 100000")]
        {
            if let Ok(v) = std::fs::read_to_string(dir.join(knob)) {
                assert_eq!(v.trim(), want, "{knob}");
            }
        }
    }

    // Volumes in use: by this instance (for another instance, a delete); 409.
    let a = d.call("POST", "/v1/instances", Some(json!({"name": "vm2", "spec": {"image": "debian-12", "subnet": "web", "volumes": [{"volume": "data"}]}})));
    assert_eq!((a.status, field_of(&a)), (409, "spec.volumes[0].volume".to_string()), "{}", a.body);
    assert_eq!(d.call("DELETE", "/v1/volumes/data", None).status, 409);
    assert_eq!(d.call("DELETE", "/v1/network-interfaces/vm1-eth0", None).status, 409, "the interface belongs to the instance");
    // The image and network fields are fixed.
    let a = d.call("PATCH", "/v1/instances/vm1", Some(json!({"spec": {"subnet": "other"}})));
    assert_eq!(a.status, 422, "{}", a.body);

    // Another project sees nothing.
    create(&d, "/v1/projects", json!({"name": "other"}));
    let t = d.call("POST", "/v1/tokens?project=other", Some(json!({"name": "t", "spec": {"role": "admin"}})));
    assert_eq!(t.status, 201, "{}", t.body);
    let other = t.json()["secret"].as_str().expect("secret").to_string();
    for path in ["/v1/instances/vm1", &format!("/v1/instances/{id}"), "/v1/instances/vm1/console"] {
        assert_eq!(d.call_as(&other, "GET", path, None).status, 404, "{path}");
    }
    assert_eq!(d.call_as(&other, "POST", "/v1/instances/vm1/stop", None).status, 404);
    assert_eq!(d.call_as(&other, "DELETE", "/v1/instances/vm1", None).status, 404);

    // kill -9 of the worker: no exit record, so on-failure starts a new one (another pid).
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL).expect("kill worker");
    let st = wait_status(&d, "vm1", "restarted", |s| s["phase"] == "Running" && s["pid"].as_i64().is_some_and(|p| p != pid));
    assert_eq!(st["restart_count"], 1);
    assert_eq!(st["exit_reason"], "lost");
    let pid = st["pid"].as_i64().expect("pid");
    assert_eq!(workers_of(&id), vec![pid as i32]);

    // kill -9 of the daemon: the restarted daemon adopts the same worker. An empty cgroup of an
    // instance no state has (a crash's leftover) is removed at start-up; the adopted worker's
    // stays.
    d.kill9();
    assert_eq!(workers_of(&id), vec![pid as i32], "the worker outlives the daemon");
    let orphan = cloudlet::site::Kind::Instance.new_id();
    let live_cgroups = cgroups_of(&id);
    assert!(!live_cgroups.is_empty());
    for dir in &live_cgroups {
        std::fs::create_dir(dir.with_file_name(&orphan)).expect("an orphaned cgroup");
    }
    assert_eq!(cgroups_of(&orphan).len(), live_cgroups.len());
    d.launch();
    let st = wait_status(&d, "vm1", "Running after the daemon restart", |s| s["phase"] == "Running");
    assert_eq!(st["pid"].as_i64(), Some(pid), "adopted, not restarted");
    assert_eq!(cgroups_of(&orphan), Vec::<PathBuf>::new(), "the orphaned cgroup is swept at start-up");
    assert_eq!(cgroups_of(&id), live_cgroups, "the adopted worker's cgroup stays");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(workers_of(&id), vec![pid as i32], "no duplicate worker");

    // The live console over the websocket; a page of another site may not open it (a foreign
    // Origin, whatever the scheme or port), the daemon's own origin may.
    for origin in ["http://evil.example", &format!("https://evil.example:{}", d.addr.rsplit(':').next().unwrap_or_default()), "null"] {
        let (status, body) = ws_refused(&d, "vm1", origin);
        assert!(status.starts_with("HTTP/1.1 403"), "{origin}: {status}");
        assert_eq!((body["error"]["code"].as_str(), body["error"]["field"].as_str()), (Some("permission_denied"), Some("Origin")), "{origin}: {body}");
    }
    assert!(!console(&d).contains("console got"), "nothing reached the guest");
    let mut ws = ws_console(&d, "vm1", Some(&format!("http://{}", d.addr)));
    ws.send(tokio_tungstenite::tungstenite::Message::Binary(b"hello console\n".to_vec().into())).expect("send");
    let got = loop {
        match ws.read().expect("read") {
            tokio_tungstenite::tungstenite::Message::Binary(b) => break String::from_utf8_lossy(&b).into_owned(),
            _ => continue,
        }
    };
    assert_eq!(got, "echo:hello console\n");
    drop(ws);

    // Stop: the guest ignores the shutdown, so it is killed after the 2 s timeout.
    let t0 = Instant::now();
    let (code, _, err) = cli(&d, &["instance", "stop", "vm1"]);
    assert_eq!(code, 0, "{err}");
    let st = wait_status(&d, "vm1", "Stopped", |s| s["phase"] == "Stopped");
    assert!(t0.elapsed() >= Duration::from_secs(2), "forced only after the timeout ({:?})", t0.elapsed());
    assert_eq!(st["exit_reason"], "killed");
    assert!(workers_of(&id).is_empty());
    assert!(console(&d).contains("shutdown requested"));
    assert!(st.get("pid").is_none());
    assert_eq!(cgroups_of(&id), Vec::<PathBuf>::new(), "the killed worker's cgroup is removed");

    // Start again; a guest poweroff (through the console) leaves it Stopped with the reason and
    // spec.state unchanged (on-failure does not restart it).
    let (code, _, err) = cli(&d, &["instance", "start", "vm1"]);
    assert_eq!(code, 0, "{err}");
    let st = wait_status(&d, "vm1", "Running again", |s| s["phase"] == "Running" && s["pid"].is_i64());
    let mut ws = ws_console(&d, "vm1", None);
    ws.send(tokio_tungstenite::tungstenite::Message::Binary(b"poweroff\n".to_vec().into())).expect("send");
    let st2 = wait_status(&d, "vm1", "powered off", |s| s["phase"] == "Stopped");
    assert_eq!(st2["exit_reason"], "poweroff");
    assert_eq!(d.call("GET", "/v1/instances/vm1", None).json()["spec"]["state"], "running");
    std::thread::sleep(Duration::from_secs(2));
    assert!(workers_of(&id).is_empty(), "not restarted after a poweroff");
    let _ = st;
    let (code, out, _) = cli(&d, &["instance", "console", "vm1", "--log", "--tail", "2"]);
    assert_eq!(code, 0);
    assert!(out.contains("console got: poweroff"), "{out}");

    // Stop, then delete while it stops (the guest ignores the shutdown, so it is killed after
    // the timeout): no process, no tap, no run dir, no cgroup, no interface.
    let (code, _, err) = cli(&d, &["instance", "start", "vm1"]);
    assert_eq!(code, 0, "{err}");
    let st = wait_status(&d, "vm1", "Running before delete", |s| s["phase"] == "Running" && s["pid"].is_i64());
    let cg: Vec<String> = st["cgroup_dirs"].as_array().expect("dirs").iter().map(|v| v.as_str().unwrap_or_default().to_string()).collect();
    assert!(!cg.is_empty());
    let (code, _, err) = cli(&d, &["instance", "stop", "vm1"]);
    assert_eq!(code, 0, "{err}");
    let a = d.call("DELETE", "/v1/instances/vm1", None);
    assert_eq!(a.status, 204, "{}", a.body);
    d.wait_for(30, "the worker gone", || workers_of(&id).is_empty().then_some(()));
    d.wait_for(30, "the run directory gone", || (!d.dir.join("instances").join(&id).exists()).then_some(()));
    d.wait_for(30, "the tap gone", || (!in_router(&vpc_id, &["ip", "-o", "link"]).contains(&tap)).then_some(()));
    assert!(cg.iter().all(|c| !Path::new(c).exists()), "cgroups removed: {cg:?}");
    assert_eq!(cgroups_of(&id), Vec::<PathBuf>::new(), "no cgroup of the instance in any hierarchy");
    assert_eq!(d.call("GET", "/v1/network-interfaces/vm1-eth0", None).status, 404);
    assert_eq!(d.call("DELETE", "/v1/volumes/spare", None).status, 204, "free again");

    // The host kernel never mounts what a guest wrote: `data` was vm1's read-write disk, so a
    // container may not mount it (409 naming the mount) until the confined check has passed.
    let auth = format!("Bearer {}", d.token);
    let bb = std::fs::read(common::busybox_image().join("busybox-httpd.oci.tar")).expect("busybox archive");
    let a = d.raw("POST", "/v1/images/import?name=bb", Some(&bb), &[("authorization", &auth), ("content-type", "application/x-tar")]).expect("import");
    assert_eq!(a.status, 201, "{}", a.body);
    let vol = d.call("GET", "/v1/volumes/data", None).json();
    assert_eq!(vol["status"]["guest_written"], true, "{vol}");
    let run = json!({"name": "reader", "spec": {"image": "bb", "state": "stopped", "mounts": [{"volume": "data", "target": "/data"}]}});
    let a = d.call("POST", "/v1/containers", Some(run.clone()));
    assert_eq!((a.status, field_of(&a)), (409, "spec.mounts[0].volume".to_string()), "{}", a.body);
    assert!(a.json()["error"]["message"].as_str().unwrap_or_default().contains("check it first"), "{}", a.body);
    let (code, out, err) = cli(&d, &["volume", "check", "data", "-o", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let checked = d.call("GET", "/v1/volumes/data", None).json();
    assert_eq!(checked["status"]["guest_written"], false, "{checked}");
    let a = d.call("POST", "/v1/containers", Some(run));
    assert_eq!(a.status, 201, "checked: a container may mount it: {}", a.body);
    let a = d.call("DELETE", "/v1/containers/reader", None);
    assert!(a.status / 100 == 2, "{}", a.body);
    // A filesystem the guest destroyed fails the check, and stays refused.
    d.wait_for(30, "the container gone", || (d.call("GET", "/v1/containers/reader", None).status == 404).then_some(()));
    d.wait_for(30, "data unmounted", || (d.call("GET", "/v1/volumes/data", None).json()["status"]["mounted"] == false).then_some(()));
    let noise: Vec<u8> = (0..(2u32 << 20)).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    std::fs::write(&vol_file, &noise).expect("the guest's scribbles");
    cloudlet::storage::check::taint(Path::new(&vol_file)).expect("as a guest's write marks it");
    let a = d.call("POST", "/v1/volumes/data/check", None);
    assert_eq!((a.status, field_of(&a)), (422, "id".to_string()), "{}", a.body);
    let a = d.call(
        "POST",
        "/v1/containers",
        Some(json!({"name": "reader2", "spec": {"image": "bb", "state": "stopped", "mounts": [{"volume": "data", "target": "/data"}]}})),
    );
    assert_eq!(a.status, 409, "{}", a.body);
}

/// With the real `cloudlet vmm-worker` and Debian's cloud kernel (from the nested KVM lane's
/// `prepare.sh`, which `integration/run-tests.sh` runs before the cargo tests): the worker runs (the guest need not boot on this host),
/// answers `status`, is restarted after a SIGKILL, and is gone with its run directory on delete.
#[test]
fn the_real_worker_is_supervised() {
    let lane = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/nested-kvm");
    if !common::privileged(common::is_root() && Path::new("/dev/kvm").exists(), "root and /dev/kvm") {
        return;
    }
    assert!(lane.join("l2-vmlinuz").is_file(), "target/nested-kvm/l2-vmlinuz is missing: run integration/nested-kvm/prepare.sh first");
    let tmp = tempfile::tempdir().expect("tmp");
    let d = Daemon::start();
    let _owned = NetnsGuard { data: Some(d.dir.clone()), extra: vec![], stop: Arc::new(AtomicBool::new(false)) };
    let _workers = WorkerGuard(d.dir.clone());
    let dir = tmp.path().join("img");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::copy(lane.join("l2-vmlinuz"), dir.join("vmlinuz")).expect("kernel");
    std::fs::copy(lane.join("l2-initrd.cpio.gz"), dir.join("initrd.img")).expect("initrd");
    std::fs::File::create(dir.join("rootfs.img")).expect("rootfs").set_len(16 << 20).expect("size");
    std::fs::write(
        dir.join("image.json"),
        serde_json::to_vec(
            &json!({"name": "cloud", "kernel": "vmlinuz", "initrd": "initrd.img", "rootfs": "rootfs.img", "cmdline": "console=ttyS0 reboot=k panic=-1"}),
        )
        .expect("json"),
    )
    .expect("manifest");
    assert_eq!(import(&d, &dir, "cloud").status, 201);
    create(&d, "/v1/vpcs", json!({"name": "v", "spec": {"cidr": "10.2.0.0/16"}}));
    create(&d, "/v1/subnets", json!({"name": "s", "spec": {"vpc": "v", "cidr": "10.2.1.0/24"}}));
    let id = create(&d, "/v1/instances", json!({"name": "real", "spec": {"image": "cloud", "subnet": "s", "stop_timeout_seconds": 1}}))["id"]
        .as_str()
        .expect("id")
        .to_string();
    let st = wait_status(&d, "real", "Running with the real worker", |s| s["phase"] == "Running" && s["pid"].is_i64());
    let pid = st["pid"].as_i64().expect("pid") as i32;
    let cmd = String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline")).replace('\0', " ");
    assert!(cmd.contains("vmm-worker --spec") && cmd.contains(&id), "{cmd}");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).expect("kill");
    let st = wait_status(&d, "real", "restarted", |s| s["phase"] == "Running" && s["pid"].as_i64().is_some_and(|p| p != i64::from(pid)));
    assert_eq!(st["exit_reason"], "lost");
    // Drift: the instance's tap deleted under its running worker. The VPC reconciler makes the
    // tap again (a link event wakes it) and the instance reconciler starts the worker on it.
    let eni = d.call("GET", &format!("/v1/network-interfaces/{}", st["network_interface"].as_str().expect("eni")), None).json();
    let router = Path::new(eni["status"]["router_netns"].as_str().expect("router")).file_name().expect("name").to_string_lossy().into_owned();
    let tap = st["tap"].as_str().expect("tap").to_string();
    let pid = st["pid"].as_i64().expect("pid") as i32;
    assert_eq!(attached_tap(pid).as_deref(), Some(tap.as_str()), "the worker holds its tap");
    let t0 = std::time::Instant::now();
    let out = std::process::Command::new("ip").args(["-n", &router, "link", "del", &tap]).output().expect("ip");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    d.wait_for(30, "the tap made again and a worker attached to it", || {
        let st = d.call("GET", "/v1/instances/real", None).json()["status"].clone();
        let pid = st["pid"].as_i64()? as i32;
        (attached_tap(pid).as_deref() == Some(tap.as_str())).then_some(())
    });
    println!("deleted tap: a worker attached to it again after {} ms", t0.elapsed().as_millis());
    assert_eq!(d.call("DELETE", "/v1/instances/real", None).status, 204);
    d.wait_for(30, "the worker and run directory gone", || (workers_of(&id).is_empty() && !d.dir.join("instances").join(&id).exists()).then_some(()));
    assert_eq!(cgroups_of(&id), Vec::<PathBuf>::new(), "the worker's cgroup is removed with it");
}

/// The tap a process has open on `/dev/net/tun` and attached (`iff:` of the descriptor's
/// fdinfo, written by the tun driver), if any.
fn attached_tap(pid: i32) -> Option<String> {
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        if std::fs::read_link(fd.path()).ok()?.as_os_str() != "/dev/net/tun" {
            continue;
        }
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy())).ok()?;
        if let Some(name) = info.lines().find_map(|l| l.strip_prefix("iff:")).map(str::trim).filter(|n| !n.is_empty()) {
            return Some(name.to_string());
        }
    }
    None
}
