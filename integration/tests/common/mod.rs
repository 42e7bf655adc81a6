//! Test harness: start the real `cloudlet` binary on an ephemeral loopback port with a temporary
//! data dir, and talk to it over HTTP.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cloudlet"))
}

/// A running daemon.
pub struct Daemon {
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub child: Option<Child>,
    pub addr: String,
    pub token: String,
    pub extra_args: Vec<String>,
    /// Extra environment of the daemon process (for example `CLOUDLET_FAILPOINT`).
    pub env: Vec<(String, String)>,
    agent: ureq::Agent,
}

/// A raw HTTP answer.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(30))).build().into()
}

impl Daemon {
    /// Start on a fresh data dir.
    pub fn start() -> Daemon {
        Self::start_with(&[])
    }

    /// Start on a fresh data dir with extra `serve` arguments.
    pub fn start_with(args: &[&str]) -> Daemon {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut d = Daemon {
            dir,
            _tmp: Some(tmp),
            child: None,
            addr: String::new(),
            token: String::new(),
            extra_args: args.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            agent: agent(),
        };
        d.launch();
        d
    }

    /// (Re)start the daemon on its data dir and wait until it is ready.
    pub fn launch(&mut self) {
        let _ = std::fs::remove_file(self.dir.join("http.addr"));
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("daemon.log")).expect("log");
        let child = Command::new(bin())
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("--http")
            .arg("127.0.0.1:0")
            .arg("--probe-interval")
            .arg("1")
            .args(&self.extra_args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("CLOUDLET_LOG_LEVEL", "info")
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn cloudlet serve");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(a) = std::fs::read_to_string(self.dir.join("http.addr")) {
                self.addr = a.trim().to_string();
                if self.raw("GET", "/readyz", None, &[]).map(|a| a.status == 200).unwrap_or(false) {
                    break;
                }
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                panic!("daemon exited early ({st}); log:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "daemon not ready in 60 s; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        self.token = std::fs::read_to_string(self.dir.join("admin.token")).expect("admin.token").trim().to_string();
    }

    /// The daemon's combined stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    pub fn admin_password(&self) -> String {
        std::fs::read_to_string(self.dir.join("admin.password")).expect("admin.password").trim().to_string()
    }

    /// SIGKILL the daemon and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM the daemon and wait for a graceful exit; returns its exit status success.
    pub fn terminate(&mut self) -> bool {
        let Some(mut c) = self.child.take() else { return true };
        let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return st.success();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Send a request; `None` when the connection failed.
    pub fn raw(&self, method: &str, path: &str, body: Option<&[u8]>, headers: &[(&str, &str)]) -> Option<Answer> {
        let url = self.url(path);
        let mut b = ureq::http::Request::builder().method(method).uri(&url);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(body.map(|b| b.to_vec()).unwrap_or_default()).ok()?;
        let resp = self.agent.run(req).ok()?;
        let status = resp.status().as_u16();
        let headers = resp.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect();
        let mut body = String::new();
        let _ = resp.into_body().into_reader().read_to_string(&mut body);
        Some(Answer { status, headers, body })
    }

    /// A request with the admin token; JSON body when given.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        self.call_as(&self.token.clone(), method, path, body)
    }

    /// A request with `token`.
    pub fn call_as(&self, token: &str, method: &str, path: &str, body: Option<Value>) -> Answer {
        let auth = format!("Bearer {token}");
        let bytes = body.map(|b| serde_json::to_vec(&b).expect("json"));
        let mut h = vec![("authorization", auth.as_str())];
        if bytes.is_some() {
            h.push(("content-type", "application/json"));
        }
        self.raw(method, path, bytes.as_deref(), &h).unwrap_or_else(|| panic!("{method} {path}: connection failed"))
    }

    /// Poll until `f` returns Some, or panic after `secs`.
    pub fn wait_for<T>(&self, secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Follow an operation until it ends; returns it.
    pub fn wait_operation(&self, id: &str) -> Value {
        self.wait_for(30, "operation", || {
            let op = self.call("GET", &format!("/v1/operations/{id}"), None).json();
            matches!(op["status"]["phase"].as_str(), Some("Succeeded" | "Failed")).then_some(op)
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Run the CLI with arguments; returns (exit code, stdout, stderr).
pub fn cli(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut c = Command::new(bin());
    c.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn cli");
    if let Some(input) = stdin {
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().expect("cli output");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// Enter a named network namespace on the calling thread.
pub fn enter_netns(path: &Path) {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

/// A TCP server on `port` in the namespace at `netns` that writes `answer(client address)` to
/// every connection, until `stop` turns true.
pub fn serve_with(
    netns: &Path,
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    answer: impl Fn(std::net::SocketAddr) -> String + Send + 'static,
) {
    let ns = netns.to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        enter_netns(&ns);
        let l = std::net::TcpListener::bind(("0.0.0.0", port)).expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        tx.send(()).expect("ready");
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            match l.accept() {
                Ok((mut s, peer)) => {
                    use std::io::Write;
                    let _ = s.write_all(answer(peer).as_bytes());
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    rx.recv().expect("server ready");
}

/// A server that answers `identity` to every connection.
pub fn serve_identity(netns: &Path, port: u16, identity: &str, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let id = identity.to_string();
    serve_with(netns, port, stop, move |_| id.clone());
}

/// Connect from the namespace at `netns` to `ip:port`; the identity answered, or None.
pub fn fetch_identity(netns: &Path, ip: &str, port: u16) -> Option<String> {
    let (ns, addr) = (netns.to_path_buf(), format!("{ip}:{port}"));
    std::thread::spawn(move || {
        enter_netns(&ns);
        let addr: std::net::SocketAddr = addr.parse().ok()?;
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    })
    .join()
    .ok()
    .flatten()
}

/// A server that answers each client with the client's address as it sees it (an "internet"
/// echo of the source address).
pub fn serve_peer(netns: &Path, port: u16, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    serve_with(netns, port, stop, |peer| peer.ip().to_string());
}

/// A site uplink namespace (`up`, holding `up0` = 198.51.100.1/24) and an "internet" namespace
/// beyond it (`inet`, `inet0` = 198.51.100.2/24) that routes the public block 203.0.113.0/28 to
/// the uplink address. `tag` keeps the names of concurrent tests apart.
pub struct Internet {
    pub up: String,
    pub inet: String,
    pub inet_path: PathBuf,
}

/// Build an [`Internet`]; the caller removes both namespaces (a [`NetnsGuard`]'s `extra`).
pub fn internet(tag: &str) -> Internet {
    let pid = std::process::id();
    let (up, inet) = (format!("cltest-{tag}up-{pid}"), format!("cltest-{tag}inet-{pid}"));
    for ns in [&up, &inet] {
        cloudlet::net::host::ensure_netns(ns, None).expect("namespace");
    }
    run_ok(&["ip", "netns", "exec", &up, "ip", "link", "add", "up0", "type", "veth", "peer", "name", "inet0", "netns", &inet]);
    run_ok(&["ip", "netns", "exec", &up, "ip", "addr", "add", "198.51.100.1/24", "dev", "up0"]);
    run_ok(&["ip", "netns", "exec", &up, "ip", "link", "set", "up0", "up"]);
    run_ok(&["ip", "netns", "exec", &inet, "ip", "addr", "add", "198.51.100.2/24", "dev", "inet0"]);
    run_ok(&["ip", "netns", "exec", &inet, "ip", "link", "set", "inet0", "up"]);
    run_ok(&["ip", "netns", "exec", &inet, "ip", "route", "add", "203.0.113.0/28", "via", "198.51.100.1"]);
    let inet_path = cloudlet::net::host::netns_path(&inet);
    Internet { up, inet, inet_path }
}

/// The config of a daemon whose uplink is `up0` in `net.up`, with EIPs from 203.0.113.0/28 and
/// a 2 s resync; written under `dir`, returned as its path.
pub fn uplink_config(dir: &Path, net: &Internet) -> PathBuf {
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        format!("[reconcile]\nresync_seconds = 2\n[network]\nuplink_netns = \"{}\"\nuplink = \"up0\"\npublic_cidr = \"203.0.113.0/28\"\n", net.up),
    )
    .expect("config");
    cfg
}

/// Run a command; panic with its output when it fails.
pub fn run_ok(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("spawn");
    assert!(out.status.success(), "{args:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// POST a create and return the created resource (asserting 201).
pub fn create(d: &Daemon, path: &str, body: Value) -> Value {
    let r = d.call("POST", path, Some(body));
    assert_eq!(r.status, 201, "POST {path}: {}", r.body);
    r.json()
}

/// Wait until a network interface is Ready; its namespace path and private address.
pub fn ready_netns(d: &Daemon, eni: &str) -> (PathBuf, String) {
    d.wait_for(30, "network interface Ready", || {
        let v = d.call("GET", &format!("/v1/network-interfaces/{eni}"), None).json();
        (v["status"]["phase"] == "Ready")
            .then(|| (v["status"]["netns"].as_str().unwrap_or_default().into(), v["spec"]["private_ip"].as_str().unwrap_or_default().to_string()))
    })
}

/// Every namespace of a VPC or network interface that ever existed in a daemon's state
/// (deleted ones included, from the events table); empty when there is no database.
pub fn owned_netns(data: &Path) -> Vec<String> {
    let path = data.join("cloudlet.db");
    if !path.is_file() {
        return vec![];
    }
    let Ok(db) = cloudlet::state::Db::open(&path) else { return vec![] };
    let events = db.read(|c| cloudlet::state::repo::events_after(c, 0, None, usize::MAX >> 1)).unwrap_or_default();
    let mut out: Vec<String> = events
        .iter()
        .filter_map(|e| match e.kind.as_str() {
            "vpc" => Some(cloudlet::net::names::vpc_netns(&e.resource_id)),
            "network_interface" => Some(cloudlet::net::names::eni_netns(&e.resource_id)),
            _ => None,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// On drop (even when a test fails): stops test servers, and deletes the namespaces a daemon
/// owns (`data`) plus `extra` ones the test made itself. Declare it after the `Daemon`, so it
/// runs before the daemon's data dir is removed.
pub struct NetnsGuard {
    pub data: Option<PathBuf>,
    pub extra: Vec<String>,
    pub stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let owned = self.data.as_deref().map(owned_netns).unwrap_or_default();
        for ns in owned.iter().chain(&self.extra) {
            let _ = cloudlet::net::host::delete_netns(ns);
        }
    }
}

/// Whether the tests run as root (the privileged lane).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Whether a test may run its privileged part, which `needs` names (root, and for some `/dev/kvm`).
/// When `have` is false: on the CI lane (`CI` set; it runs as root with KVM) the test fails, since a
/// missing privilege there is a broken lane and must not pass as a skip; elsewhere it prints why it
/// is skipped and the caller returns.
pub fn privileged(have: bool, needs: &str) -> bool {
    if have {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "the CI lane must provide what this test needs: {needs}");
    eprintln!("SKIPPED: needs {needs}");
    false
}

/// Poll `f` every 100 ms until it gives a value, for at most `secs`; panics naming `what`.
pub fn wait_secs<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out after {secs} s waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The busybox-httpd image archives (`busybox-httpd.oci.tar`, `busybox-httpd.docker.tar`), built
/// once per target dir by `images/busybox-httpd/build.sh`.
pub fn busybox_image() -> PathBuf {
    static BUILT: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);
    let mut g = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(p) = g.as_ref() {
        return p.clone();
    }
    let out = bin().parent().expect("bin dir").join("test-images");
    if !out.join("busybox-httpd.oci.tar").exists() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let st = Command::new("bash").arg(root.join("images/busybox-httpd/build.sh")).arg(&out).status().expect("build.sh");
        assert!(st.success(), "images/busybox-httpd/build.sh failed");
    }
    *g = Some(out.clone());
    out
}

/// On drop (even when a test fails): stops every container a daemon's data dir holds (their
/// shims outlive the daemon by design) and removes their mounts and cgroups. Declare it after the
/// `Daemon`, so it runs before the data dir is removed.
/// Processes whose command line is a shim of container `id`.
pub fn shims_of(id: &str) -> usize {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            cmd.contains("container-shim") && cmd.contains(id)
        })
        .count()
}

/// A simulated host reboot of daemon `d`: it is killed with SIGKILL, and so is every shim and
/// container init it ran; its namespaces, the containers' cgroups and every mount under its
/// data dir go, as they do when a host restarts. `d` is left stopped.
pub fn simulate_reboot(d: &mut Daemon) {
    d.kill9();
    let mut ids = Vec::new();
    for e in std::fs::read_dir(d.dir.join("containers")).into_iter().flatten().flatten() {
        ids.push(e.file_name().to_string_lossy().into_owned());
        let rec: Value = serde_json::from_slice(&std::fs::read(e.path().join("shim.json")).unwrap_or_default()).unwrap_or(Value::Null);
        for k in ["init_pid", "shim_pid"] {
            if let Some(p) = rec[k].as_i64() {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p as i32), nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
    for id in &ids {
        d.wait_for(10, "the shims to die", || (shims_of(id) == 0).then_some(()));
    }
    for ns in owned_netns(&d.dir) {
        let _ = cloudlet::net::host::delete_netns(&ns);
    }
    for id in &ids {
        let _ = cloudlet::container::cgroup::remove(&format!("/cloudlet/{id}"));
    }
    cloudlet::container::runtime::unmount_under(&d.dir).expect("unmount");
}

pub struct ContainerGuard(pub PathBuf);

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        // The daemon first, so it cannot start a container again (restart policies) meanwhile.
        let me = self.0.to_string_lossy().into_owned();
        for p in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let cmd = String::from_utf8_lossy(&std::fs::read(p.path().join("cmdline")).unwrap_or_default()).into_owned();
            let args: Vec<&str> = cmd.split('\0').collect();
            if args.get(1) == Some(&"serve")
                && args.windows(2).any(|w| w[0] == "--data-dir" && w[1] == me)
                && let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>()
            {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
        for e in std::fs::read_dir(self.0.join("containers")).into_iter().flatten().flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            let l = cloudlet::container::runtime::Layout::new(&self.0, &id);
            let _ = cloudlet::container::runtime::remove(&l, Duration::from_secs(1));
        }
        // The projects' pinned user namespaces.
        for e in std::fs::read_dir(self.0.join("userns")).into_iter().flatten().flatten() {
            let _ = cloudlet::node::ns::unpin(&e.path());
        }
        // Volumes mounted for containers: thawed (a snapshot may have been cut short) and
        // unmounted; their loop devices free themselves.
        for e in std::fs::read_dir(self.0.join("storage/mnt")).into_iter().flatten().flatten() {
            cloudlet::storage::attach::thaw(&e.path());
            let _ = cloudlet::storage::attach::unmount(&e.path());
        }
    }
}

/// GET `url` with curl from inside the named network namespace `netns`; the body, or `None`.
pub fn http_get_in(netns: &str, url: &str) -> Option<String> {
    let out = Command::new("ip").args(["netns", "exec", netns, "curl", "-s", "--max-time", "3", url]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A local Docker registry (`integration/registry.sh`) holding the busybox-httpd image as
/// `busybox-httpd:latest`; stopped on drop.
pub struct Registry {
    pub dir: tempfile::TempDir,
    pub addr: String,
}

impl Registry {
    /// Start the registry (with basic auth when `htpasswd` is `Some("user:pass")`) and push the
    /// image.
    pub fn with_busybox(htpasswd: Option<&str>) -> Registry {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = tempfile::tempdir().expect("tmp");
        let mut start = Command::new("bash");
        start.arg(root.join("integration/registry.sh")).arg("start").arg(dir.path());
        if let Some(h) = htpasswd {
            start.args(["--htpasswd", h]);
        }
        assert!(start.status().expect("registry.sh").success(), "registry.sh start failed");
        let addr = std::fs::read_to_string(dir.path().join("addr")).expect("addr").trim().to_string();
        let reg = Registry { dir, addr };
        let mut push = Command::new("python3");
        push.arg(root.join("integration/registry-push.py")).arg(busybox_image().join("busybox-httpd.oci.tar")).arg(&reg.addr).arg("busybox-httpd:latest");
        if let Some((u, p)) = htpasswd.and_then(|h| h.split_once(':')) {
            push.args(["--user", u, "--password", p]);
        }
        assert!(push.status().expect("registry-push.py").success(), "push failed");
        reg
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let _ = Command::new("bash").arg(root.join("integration/registry.sh")).arg("stop").arg(self.dir.path()).status();
    }
}
