//! Registry pulls as root, against a real Docker Registry v2 (`integration/registry.sh`) that the
//! busybox-httpd image was pushed to (`integration/registry-push.py`): the manifest digest
//! matches the pushed OCI layout, every blob lands verified, a second pull downloads nothing,
//! digests pin, and unknown tags and wrong credentials give clear errors.

use crate::common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use cloudlet::image::pull::{PullOptions, REGISTRY_UNREACHABLE, pull};
use cloudlet::image::store::{BlobStore, Digest};
use cloudlet::image::{ImageError, layout, unpack::Limits};
use cloudlet::net::egress::EgressPolicy;
use sha2::Digest as _;

const REPO: &str = "cloudlet/busybox-httpd";

/// A running registry; stopped on drop, even when the test fails.
struct Registry {
    dir: PathBuf,
    addr: String,
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("integration").join(name)
}

impl Registry {
    fn start(dir: &Path, htpasswd: Option<&str>) -> Registry {
        let mut c = Command::new(script("registry.sh"));
        c.arg("start").arg(dir);
        if let Some(creds) = htpasswd {
            c.args(["--htpasswd", creds]);
        }
        let out = c.output().expect("run registry.sh");
        let mut reg = Registry { dir: dir.to_path_buf(), addr: String::new() };
        assert!(out.status.success(), "registry.sh start: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        reg.addr = std::fs::read_to_string(dir.join("addr")).expect("registry addr").trim().to_string();
        reg
    }

    /// Push the busybox OCI layout as `REPO:tag`.
    fn push(&self, tag: &str, creds: Option<(&str, &str)>) {
        let tar = common::busybox_image().join("busybox-httpd.oci.tar");
        let mut c = Command::new("python3");
        c.arg(script("registry-push.py")).arg(&tar).arg(&self.addr).arg(format!("{REPO}:{tag}"));
        if let Some((u, p)) = creds {
            c.args(["--user", u, "--password", p]);
        }
        let out = c.output().expect("run registry-push.py");
        assert!(out.status.success(), "registry-push.py: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }

    fn reference(&self, suffix: &str) -> String {
        format!("{}/{REPO}{suffix}", self.addr)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = Command::new(script("registry.sh")).arg("stop").arg(&self.dir).output();
    }
}

/// The manifest digest in the built OCI layout's `index.json`.
fn layout_manifest_digest() -> String {
    let f = std::fs::File::open(common::busybox_image().join("busybox-httpd.oci.tar")).expect("oci tar");
    let mut archive = tar::Archive::new(f);
    for e in archive.entries().expect("tar entries") {
        let mut e = e.expect("tar entry");
        if e.path().expect("path").to_str().is_some_and(|p| p.trim_start_matches("./") == "index.json") {
            let mut s = String::new();
            e.read_to_string(&mut s).expect("index.json");
            let v: serde_json::Value = serde_json::from_str(&s).expect("index.json is JSON");
            return v["manifests"][0]["digest"].as_str().expect("manifest digest").to_string();
        }
    }
    panic!("no index.json in the OCI layout");
}

fn sha256_of(path: &Path) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(std::fs::read(path).expect("blob"))))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

/// Every (done, total) the progress callback saw.
type Seen = Arc<Mutex<Vec<(u64, u64)>>>;

fn recorder() -> (Seen, impl Fn(u64, u64) + Send + Sync + 'static) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    (seen, move |done, total| s.lock().unwrap().push((done, total)))
}

/// Plain HTTP to the test registry at `addr`, which the egress policy permits as a site
/// exception (it is on loopback, refused by default).
fn insecure(addr: &str) -> PullOptions {
    PullOptions { insecure: true, egress: Arc::new(EgressPolicy::new(&[addr.to_string()], &[]).expect("egress rule")), ..Default::default() }
}

#[test]
fn pulls_verify_skip_what_is_stored_pin_digests_and_report_unknown_tags() {
    if !common::privileged(common::is_root(), "root") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let reg = Registry::start(&tmp.path().join("registry"), None);
    reg.push("1.0", None);
    let want = layout_manifest_digest();
    let rt = runtime();

    // The first pull, spawned on the multi-thread runtime as the daemon would.
    let store = Arc::new(BlobStore::open(&tmp.path().join("store")).expect("store"));
    let (seen, report) = recorder();
    let (s, r, opts) = (store.clone(), reg.reference(":1.0"), insecure(&reg.addr));
    let (img, resolved) = rt.block_on(async move { tokio::spawn(async move { pull(&s, &r, &opts, &report).await }).await }).expect("join").expect("pull");
    assert_eq!(img.manifest.as_str(), want, "the manifest of the pushed layout");
    assert_eq!(resolved, reg.reference(&format!("@{want}")));
    assert_eq!(sha256_of(&store.path(&img.manifest)), want, "the manifest bytes are stored");
    assert_eq!(img.config.os().to_string(), "linux");
    assert!(!img.layers.is_empty());
    for (d, gzip) in &img.layers {
        assert!(*gzip, "the busybox layer is tar+gzip");
        assert_eq!(sha256_of(&store.path(d)), d.as_str(), "layer {d}");
    }
    let seen1 = seen.lock().unwrap().clone();
    let &(done, total) = seen1.last().expect("progress was reported");
    assert!(total > 0 && done == total, "{seen1:?}");
    assert!(seen1.windows(2).all(|w| w[0].0 <= w[1].0), "progress only grows: {seen1:?}");
    let stored = store.list().expect("list");

    // Unpacks into a root filesystem like an imported image.
    let root = tmp.path().join("rootfs");
    std::fs::create_dir_all(&root).expect("rootfs");
    layout::unpack_image(&store, &img, &root, Limits::default()).expect("unpack");
    assert!(root.join("bin/busybox").is_file());

    // A second pull downloads nothing and stores nothing new.
    let (seen, report) = recorder();
    let (again, _) = rt.block_on(pull(&store, &reg.reference(":1.0"), &insecure(&reg.addr), &report)).expect("second pull");
    assert_eq!(again.manifest, img.manifest);
    assert_eq!(*seen.lock().unwrap(), vec![(0, 0)], "nothing to download");
    assert_eq!(store.list().expect("list"), stored);

    // A puller that does not own the stored blobs (another project's) downloads them again.
    let (seen, report) = recorder();
    let stranger = PullOptions { known: Some(Default::default()), ..insecure(&reg.addr) };
    rt.block_on(pull(&store, &reg.reference(":1.0"), &stranger, &report)).expect("pull as a stranger");
    let last = *seen.lock().unwrap().last().expect("progress");
    assert!(last.1 > 0 && last.0 == last.1, "every blob fetched again: {last:?}");
    assert_eq!(store.list().expect("list"), stored);

    // By digest, into a fresh store.
    let fresh = BlobStore::open(&tmp.path().join("fresh")).expect("store");
    let (pinned, resolved) = rt.block_on(pull(&fresh, &reg.reference(&format!("@{want}")), &insecure(&reg.addr), &|_, _| {})).expect("pull by digest");
    assert_eq!((pinned.manifest.as_str(), resolved.as_str()), (want.as_str(), reg.reference(&format!("@{want}")).as_str()));
    assert_eq!(fresh.list().expect("list"), stored);

    // Unknown tags and digests are clear errors that leave nothing half-written.
    let err = rt.block_on(pull(&fresh, &reg.reference(":no-such-tag"), &insecure(&reg.addr), &|_, _| {})).expect_err("unknown tag");
    eprintln!("unknown tag: {err}");
    assert!(matches!(err, ImageError::NotFound(_)), "{err}");
    assert!(err.to_string().contains("no-such-tag"), "{err}");
    let unknown = format!("@sha256:{}", "0".repeat(64));
    let err = rt.block_on(pull(&fresh, &reg.reference(&unknown), &insecure(&reg.addr), &|_, _| {})).expect_err("unknown digest");
    assert!(matches!(err, ImageError::NotFound(_)), "{err}");
    let err = rt.block_on(pull(&fresh, &format!("{}/no/such/repo", reg.addr), &insecure(&reg.addr), &|_, _| {})).expect_err("unknown repo");
    assert!(matches!(err, ImageError::NotFound(_)), "{err}");
    assert_eq!(fresh.list().expect("list"), stored);
    assert_eq!(std::fs::read_dir(tmp.path().join("fresh/tmp")).expect("tmp").count(), 0);

    // Without the site's exception the registry on loopback is refused, with the fixed text.
    let strict = PullOptions { insecure: true, ..Default::default() };
    let err = rt.block_on(pull(&fresh, &reg.reference(":1.0"), &strict, &|_, _| {})).expect_err("loopback is refused");
    assert_eq!(err.to_string(), format!("registry error: {REGISTRY_UNREACHABLE}"));

    // HTTPS against the plain-HTTP registry fails as a registry error, not a panic.
    let err =
        rt.block_on(pull(&fresh, &reg.reference(":1.0"), &PullOptions { insecure: false, ..insecure(&reg.addr) }, &|_, _| {})).expect_err("https to http");
    eprintln!("https to a plain-HTTP registry: {err}");
    assert!(matches!(err, ImageError::Registry(_)), "{err}");
}

#[test]
fn basic_auth_pulls_and_wrong_or_missing_credentials_are_auth_errors() {
    if !common::privileged(common::is_root(), "root") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let reg = Registry::start(&tmp.path().join("registry"), Some("user:pass"));
    reg.push("auth", Some(("user", "pass")));
    let rt = runtime();
    let store = BlobStore::open(&tmp.path().join("store")).expect("store");
    let with = |u: &str, p: &str| PullOptions { username: Some(u.into()), password: Some(p.into()), ..insecure(&reg.addr) };
    let reference = reg.reference(":auth");

    let err = rt.block_on(pull(&store, &reference, &with("user", "not-the-pw-x9"), &|_, _| {})).expect_err("wrong password");
    eprintln!("wrong password: {err}");
    assert!(matches!(err, ImageError::Auth(_)), "{err}");
    assert!(!err.to_string().contains("not-the-pw-x9"), "no credentials in errors: {err}");
    let err = rt.block_on(pull(&store, &reference, &insecure(&reg.addr), &|_, _| {})).expect_err("anonymous");
    assert!(matches!(err, ImageError::Auth(_)), "{err}");
    assert_eq!(store.list().expect("list"), Vec::<Digest>::new(), "nothing stored without access");

    let (img, _) = rt.block_on(pull(&store, &reference, &with("user", "pass"), &|_, _| {})).expect("pull with credentials");
    assert_eq!(img.manifest.as_str(), layout_manifest_digest());
    for (d, _) in &img.layers {
        assert_eq!(sha256_of(&store.path(d)), d.as_str());
    }
}

/// A tiny HTTP/1.1 server on loopback that answers every request with `answer(path)` and counts
/// the connections it gets.
struct Fake {
    port: u16,
    hits: Arc<std::sync::atomic::AtomicUsize>,
}

impl Fake {
    fn start(answer: impl Fn(&str) -> String + Send + 'static) -> Fake {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let hits: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let h = hits.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(5)));
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_string();
                let path = line.split(' ').nth(1).unwrap_or("/").to_string();
                let _ = s.write_all(answer(&path).as_bytes());
            }
        });
        Fake { port, hits }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Issue 14 (6), as a member of project `b`: pulls from internal addresses (a closed port, the
/// daemon's own API, `localhost`, the metadata address) all fail with one fixed text that tells
/// nothing of what answered; a registry the site permits (an exception for exactly its address
/// and port) cannot redirect the pull, nor send its token request, to an internal service.
#[test]
fn a_tenants_pulls_cannot_reach_internal_addresses_directly_by_redirect_or_by_realm() {
    use serde_json::json;
    // The internal service the attacker aims at: it would answer with a secret.
    let internal = Fake::start(|_| {
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 26\r\nConnection: close\r\n\r\n{\"secret\":\"internal-only\"}".into()
    });
    let target = internal.port;
    let redirector = Fake::start(move |path| {
        format!("HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:{target}{path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    });
    let realm = Fake::start(move |_| {
        format!(
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://127.0.0.1:{target}/token\",service=\"internal\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
    });
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let d = common::Daemon::start_with(&["--egress-allow", &redirector.addr(), "--egress-allow", &realm.addr()]);
    let api = d.addr.rsplit(':').next().expect("api port").to_string();

    assert_eq!(d.call("POST", "/v1/projects", Some(json!({"name": "b"}))).status, 201);
    let t = d.call("POST", "/v1/tokens?project=b", Some(json!({"name": "m", "spec": {"role": "member"}})));
    assert_eq!(t.status, 201, "{}", t.body);
    let b = t.json()["secret"].as_str().expect("secret").to_string();
    let pull_as_b = |name: &str, source: &str| -> serde_json::Value {
        let r = d.call_as(&b, "POST", "/v1/images", Some(json!({"name": name, "spec": {"source": source, "insecure": true}})));
        assert_eq!(r.status, 202, "{name}: {}", r.body);
        let op = d.wait_operation(r.json()["id"].as_str().expect("op id"));
        assert_eq!(op["status"]["phase"], "Failed", "{name}: {op}");
        let img = d.call_as(&b, "GET", &format!("/v1/images/{name}"), None).json();
        assert_eq!(img["status"]["phase"], "Failed", "{name}: {img}");
        json!({"op": op, "image": img})
    };
    let fixed = format!("registry error: {REGISTRY_UNREACHABLE}");
    for (name, source) in [
        ("closed", format!("127.0.0.1:{closed}/x/y:1")),
        ("api", format!("127.0.0.1:{api}/x/y:1")),
        ("api-by-name", format!("localhost:{api}/x/y:1")),
        ("internal", format!("{}/x/y:1", internal.addr())),
        ("metadata", "169.254.169.254/x/y:1".to_string()),
        ("redirected", format!("{}/x/y:1", redirector.addr())),
    ] {
        let got = pull_as_b(name, &source);
        let text = got.to_string();
        assert_eq!(got["image"]["status"]["message"].as_str(), Some(fixed.as_str()), "{name}: the same fixed text for every internal target: {got}");
        assert_eq!(got["op"]["status"]["error"]["message"].as_str(), Some(fixed.as_str()), "{name}: {got}");
        for leak in ["internal-only", "unauthenticated", "authentication required", "Connection refused", "connection refused"] {
            assert!(!text.contains(leak), "{name}: nothing of the internal service's answer: {text}");
        }
    }
    let got = pull_as_b("realm", &format!("{}/x/y:1", realm.addr()));
    assert!(!got.to_string().contains("internal-only"), "{got}");
    assert_eq!(internal.hits(), 0, "the internal service was never contacted (nor by redirect, nor as the token realm)");
    assert!(redirector.hits() > 0 && realm.hits() > 0, "the permitted registries were reached");
    assert!(!d.log().contains("internal-only"));
}

#[test]
fn a_stalled_pull_of_one_project_does_not_hold_another_projects_pull() {
    use serde_json::json;
    if !common::privileged(common::is_root(), "root") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let reg = Registry::start(&tmp.path().join("registry"), None);
    reg.push("1.0", None);
    // Project a's registry accepts the connection and then says nothing for 40 s.
    let stalled = Fake::start(|_| {
        std::thread::sleep(std::time::Duration::from_secs(40));
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into()
    });
    let d = common::Daemon::start_with(&["--egress-allow", &stalled.addr(), "--egress-allow", &reg.addr]);
    let mut tokens = Vec::new();
    for p in ["a", "b"] {
        assert_eq!(d.call("POST", "/v1/projects", Some(json!({"name": p}))).status, 201);
        let t = d.call("POST", &format!("/v1/tokens?project={p}"), Some(json!({"name": "m", "spec": {"role": "member"}})));
        assert_eq!(t.status, 201, "{}", t.body);
        tokens.push(t.json()["secret"].as_str().expect("secret").to_string());
    }
    let pull = |token: &str, name: &str, source: String| {
        let r = d.call_as(token, "POST", "/v1/images", Some(json!({"name": name, "spec": {"source": source, "insecure": true}})));
        assert_eq!(r.status, 202, "{name}: {}", r.body);
        r.json()["id"].as_str().expect("op id").to_string()
    };
    // a starts several pulls from its stalled registry first, then b pulls from a working one.
    for i in 0..4 {
        pull(&tokens[0], &format!("stuck{i}"), format!("{}/x/y:{i}", stalled.addr()));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let op = pull(&tokens[1], "httpd", reg.reference(":1.0"));
    let op = d.wait_operation(&op);
    assert_eq!(op["status"]["phase"], "Succeeded", "{op}");
    // b's pull finished while a's were still waiting on their registry.
    let stuck = d.call_as(&tokens[0], "GET", "/v1/images/stuck0", None).json();
    assert_eq!(stuck["status"]["phase"], "Pulling", "{stuck}");
    assert!(stalled.hits() >= 1, "a's pulls did reach their registry");
}
