//! Registry pulls as root, against a real Docker Registry v2 (`integration/registry.sh`) that the
//! busybox-httpd image was pushed to (`integration/registry-push.py`): the manifest digest
//! matches the pushed OCI layout, every blob lands verified, a second pull downloads nothing,
//! digests pin, and unknown tags and wrong credentials give clear errors.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use cloudlet::image::pull::{PullOptions, pull};
use cloudlet::image::store::{BlobStore, Digest};
use cloudlet::image::{ImageError, layout, unpack::Limits};
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

fn insecure() -> PullOptions {
    PullOptions { insecure: true, ..Default::default() }
}

#[test]
fn pulls_verify_skip_what_is_stored_pin_digests_and_report_unknown_tags() {
    if !common::is_root() {
        eprintln!("skipped: needs root");
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
    let (s, r) = (store.clone(), reg.reference(":1.0"));
    let (img, resolved) = rt
        .block_on(async move { tokio::spawn(async move { pull(&s, &r, &insecure(), &report).await }).await })
        .expect("join")
        .expect("pull");
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
    let (again, _) = rt.block_on(pull(&store, &reg.reference(":1.0"), &insecure(), &report)).expect("second pull");
    assert_eq!(again.manifest, img.manifest);
    assert_eq!(*seen.lock().unwrap(), vec![(0, 0)], "nothing to download");
    assert_eq!(store.list().expect("list"), stored);

    // A puller that does not own the stored blobs (another project's) downloads them again.
    let (seen, report) = recorder();
    let stranger = PullOptions { known: Some(Default::default()), ..insecure() };
    rt.block_on(pull(&store, &reg.reference(":1.0"), &stranger, &report)).expect("pull as a stranger");
    let last = *seen.lock().unwrap().last().expect("progress");
    assert!(last.1 > 0 && last.0 == last.1, "every blob fetched again: {last:?}");
    assert_eq!(store.list().expect("list"), stored);

    // By digest, into a fresh store.
    let fresh = BlobStore::open(&tmp.path().join("fresh")).expect("store");
    let (pinned, resolved) = rt.block_on(pull(&fresh, &reg.reference(&format!("@{want}")), &insecure(), &|_, _| {})).expect("pull by digest");
    assert_eq!((pinned.manifest.as_str(), resolved.as_str()), (want.as_str(), reg.reference(&format!("@{want}")).as_str()));
    assert_eq!(fresh.list().expect("list"), stored);

    // Unknown tags and digests are clear errors that leave nothing half-written.
    let err = rt.block_on(pull(&fresh, &reg.reference(":no-such-tag"), &insecure(), &|_, _| {})).expect_err("unknown tag");
    eprintln!("unknown tag: {err}");
    assert!(matches!(err, ImageError::NotFound(_)), "{err}");
    assert!(err.to_string().contains("no-such-tag"), "{err}");
    let unknown = format!("@sha256:{}", "0".repeat(64));
    let err = rt.block_on(pull(&fresh, &reg.reference(&unknown), &insecure(), &|_, _| {})).expect_err("unknown digest");
    assert!(matches!(err, ImageError::NotFound(_)), "{err}");
    let err = rt.block_on(pull(&fresh, &format!("{}/no/such/repo", reg.addr), &insecure(), &|_, _| {})).expect_err("unknown repo");
    assert!(matches!(err, ImageError::NotFound(_)), "{err}");
    assert_eq!(fresh.list().expect("list"), stored);
    assert_eq!(std::fs::read_dir(tmp.path().join("fresh/tmp")).expect("tmp").count(), 0);

    // HTTPS against the plain-HTTP registry fails as a registry error, not a panic.
    let err = rt.block_on(pull(&fresh, &reg.reference(":1.0"), &PullOptions::default(), &|_, _| {})).expect_err("https to http");
    eprintln!("https to a plain-HTTP registry: {err}");
    assert!(matches!(err, ImageError::Registry(_)), "{err}");
}

#[test]
fn basic_auth_pulls_and_wrong_or_missing_credentials_are_auth_errors() {
    if !common::is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let reg = Registry::start(&tmp.path().join("registry"), Some("user:pass"));
    reg.push("auth", Some(("user", "pass")));
    let rt = runtime();
    let store = BlobStore::open(&tmp.path().join("store")).expect("store");
    let with = |u: &str, p: &str| PullOptions { username: Some(u.into()), password: Some(p.into()), ..insecure() };
    let reference = reg.reference(":auth");

    let err = rt.block_on(pull(&store, &reference, &with("user", "not-the-pw-x9"), &|_, _| {})).expect_err("wrong password");
    eprintln!("wrong password: {err}");
    assert!(matches!(err, ImageError::Auth(_)), "{err}");
    assert!(!err.to_string().contains("not-the-pw-x9"), "no credentials in errors: {err}");
    let err = rt.block_on(pull(&store, &reference, &insecure(), &|_, _| {})).expect_err("anonymous");
    assert!(matches!(err, ImageError::Auth(_)), "{err}");
    assert_eq!(store.list().expect("list"), Vec::<Digest>::new(), "nothing stored without access");

    let (img, _) = rt.block_on(pull(&store, &reference, &with("user", "pass"), &|_, _| {})).expect("pull with credentials");
    assert_eq!(img.manifest.as_str(), layout_manifest_digest());
    for (d, _) in &img.layers {
        assert_eq!(sha256_of(&store.path(d)), d.as_str());
    }
}
