//! The S3 endpoint with real clients no one here wrote: boto3 (every operation and its error
//! codes), Debian's `aws` CLI (a 200 MiB multipart round trip, prefixes, a presigned URL fetched
//! with curl), `rclone sync` of 1,000 files both ways; `kill -9` during a PUT and during a
//! multipart completion; the REST side (buckets, access keys, the object browser) and its errors.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::Daemon;
use serde_json::{Value, json};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn endpoint(d: &Daemon) -> String {
    let a = std::fs::read_to_string(d.dir.join("s3.addr")).expect("s3.addr");
    format!("http://{}", a.trim())
}

struct Key {
    id: String,
    secret: String,
}

fn access_key(d: &Daemon, project: &str, name: &str, role: &str) -> Key {
    let r = d.call("POST", &format!("/v1/access-keys?project={project}"), Some(json!({"name": name, "spec": {"role": role}})));
    assert_eq!(r.status, 201, "{}", r.body);
    let v = r.json();
    Key { id: v["access_key_id"].as_str().expect("id").into(), secret: v["secret_access_key"].as_str().expect("secret").into() }
}

fn project(d: &Daemon, name: &str) {
    let r = d.call("POST", "/v1/projects", Some(json!({"name": name})));
    assert_eq!(r.status, 201, "{}", r.body);
}

fn daemon() -> Daemon {
    Daemon::start_with(&["--s3", "127.0.0.1:0"])
}

fn tool(name: &str) -> bool {
    Command::new("sh").arg("-c").arg(format!("command -v {name}")).stdout(Stdio::null()).status().map(|s| s.success()).unwrap_or(false)
}

/// Run a command with the endpoint and key in the environment; panic with its output on failure.
fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let (so, se) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success(), "{what} failed ({}):\n{so}\n{se}", out.status);
    so
}

fn aws(ep: &str, k: &Key, args: &[&str]) -> Command {
    // Debian's awscli (a pip-installed `aws` earlier on PATH would be a different client).
    let bin = if Path::new("/usr/bin/aws").exists() { "/usr/bin/aws" } else { "aws" };
    let mut c = Command::new(bin);
    c.args(["--endpoint-url", ep]).args(args);
    c.env("AWS_ACCESS_KEY_ID", &k.id)
        .env("AWS_SECRET_ACCESS_KEY", &k.secret)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    c
}

fn check(d: &Daemon) -> Value {
    let r = d.call("GET", "/v1/object-store/check", None);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

#[test]
fn boto3_every_operation_and_error_code() {
    let d = daemon();
    project(&d, "tenant-b");
    let a = access_key(&d, "default", "app", "member");
    let b = access_key(&d, "tenant-b", "other", "member");
    let v = access_key(&d, "default", "reader", "viewer");
    let r = d.call("POST", "/v1/buckets?project=default", Some(json!({"name": "quota-1m", "spec": {"quota_mib": 1}})));
    assert_eq!(r.status, 201, "{}", r.body);
    let out = run(
        Command::new("python3")
            .arg(repo().join("integration/s3/boto3_suite.py"))
            .env("S3_ENDPOINT", endpoint(&d))
            .env("KEY_A", &a.id)
            .env("SECRET_A", &a.secret)
            .env("KEY_B", &b.id)
            .env("SECRET_B", &b.secret)
            .env("VIEWER_KEY", &v.id)
            .env("VIEWER_SECRET", &v.secret)
            .env("QUOTA_BUCKET", "quota-1m"),
        "boto3 suite",
    );
    assert!(out.contains("boto3 suite passed"), "{out}");
    // No secret reached the log or the database file in the clear.
    let log = d.log();
    let db = std::fs::read(d.dir.join("cloudlet.db")).expect("db");
    let wal = std::fs::read(d.dir.join("cloudlet.db-wal")).unwrap_or_default();
    for k in [&a, &b, &v] {
        assert!(!log.contains(&k.secret), "a secret is in the daemon log");
        let needle = k.secret.as_bytes();
        assert!(!db.windows(needle.len()).any(|w| w == needle) && !wal.windows(needle.len()).any(|w| w == needle), "a secret is in the database in the clear");
    }
    assert_eq!(check(&d)["damaged"], json!([]));
}

#[test]
fn aws_cli_multipart_prefixes_presign_and_rm() {
    if !tool("aws") || !tool("curl") {
        panic!("needs Debian's awscli and curl (packaging/install-deps.sh installs them)");
    }
    let d = daemon();
    let k = access_key(&d, "default", "cli", "member");
    let ep = endpoint(&d);
    let tmp = tempfile::tempdir().expect("tmp");
    let big = tmp.path().join("big.bin");
    // 200 MiB of incompressible data, written once.
    run(Command::new("dd").args(["if=/dev/urandom", &format!("of={}", big.display()), "bs=1M", "count=200", "status=none"]), "dd");
    run(&mut aws(&ep, &k, &["s3", "mb", "s3://cli-data"]), "aws s3 mb");
    run(&mut aws(&ep, &k, &["s3", "cp", "--only-show-errors", big.to_str().expect("path"), "s3://cli-data/videos/cam1/big.bin"]), "aws s3 cp up");
    let head = run(&mut aws(&ep, &k, &["s3api", "head-object", "--bucket", "cli-data", "--key", "videos/cam1/big.bin"]), "head-object");
    let h: Value = serde_json::from_str(&head).expect("json");
    assert_eq!(h["ContentLength"], 200 << 20);
    let etag = h["ETag"].as_str().expect("etag");
    assert!(etag.trim_matches('"').contains('-'), "a 200 MiB upload is multipart: {etag}");
    let back = tmp.path().join("back.bin");
    run(&mut aws(&ep, &k, &["s3", "cp", "--only-show-errors", "s3://cli-data/videos/cam1/big.bin", back.to_str().expect("path")]), "aws s3 cp down");
    run(Command::new("cmp").arg(&big).arg(&back), "cmp: the round trip is byte-identical");

    let small = tmp.path().join("note.txt");
    std::fs::write(&small, b"edge note\n").expect("write");
    for key in ["videos/cam2/a.txt", "videos/cam2/b.txt", "docs/note.txt"] {
        run(&mut aws(&ep, &k, &["s3", "cp", "--only-show-errors", small.to_str().expect("path"), &format!("s3://cli-data/{key}")]), "aws s3 cp small");
    }
    let top = run(&mut aws(&ep, &k, &["s3", "ls", "s3://cli-data/"]), "ls top");
    assert!(top.contains("PRE docs/") && top.contains("PRE videos/"), "{top}");
    let cams = run(&mut aws(&ep, &k, &["s3", "ls", "s3://cli-data/videos/"]), "ls videos");
    assert!(cams.contains("PRE cam1/") && cams.contains("PRE cam2/") && !cams.contains("note.txt"), "{cams}");
    let all = run(&mut aws(&ep, &k, &["s3", "ls", "--recursive", "s3://cli-data/"]), "ls recursive");
    assert_eq!(all.lines().count(), 4, "{all}");

    let url = run(&mut aws(&ep, &k, &["s3", "presign", "s3://cli-data/docs/note.txt", "--expires-in", "300"]), "presign");
    let got = run(Command::new("curl").args(["-sf", url.trim()]), "curl presigned");
    assert_eq!(got, "edge note\n");
    let tampered = url.trim().replace("X-Amz-Expires=300", "X-Amz-Expires=301");
    let bad = Command::new("curl").args(["-s", &tampered]).output().expect("curl");
    assert!(String::from_utf8_lossy(&bad.stdout).contains("SignatureDoesNotMatch"), "a changed presigned URL must fail");

    run(&mut aws(&ep, &k, &["s3", "rm", "--only-show-errors", "--recursive", "s3://cli-data/videos/"]), "rm");
    let left = run(&mut aws(&ep, &k, &["s3", "ls", "--recursive", "s3://cli-data/"]), "ls after rm");
    assert_eq!(left.trim().lines().collect::<Vec<_>>().len(), 1, "{left}");
    run(&mut aws(&ep, &k, &["s3", "rm", "--only-show-errors", "s3://cli-data/docs/note.txt"]), "rm one");
    run(&mut aws(&ep, &k, &["s3", "rb", "s3://cli-data"]), "rb");
    assert_eq!(check(&d)["blobs"], 0, "every blob was removed with its object");
}

#[test]
fn rclone_syncs_a_tree_of_1000_files_both_ways() {
    if !tool("rclone") {
        panic!("needs rclone (packaging/install-deps.sh installs it)");
    }
    let d = daemon();
    let k = access_key(&d, "default", "rclone", "member");
    let r = d.call("POST", "/v1/buckets?project=default", Some(json!({"name": "tree", "spec": {}})));
    assert_eq!(r.status, 201, "{}", r.body);
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("src");
    for i in 0..1000 {
        let dir = src.join(format!("line{}/station{}", i % 10, i % 7));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(format!("reading-{i:04}.csv")), format!("{i},{}\n", i * 31 % 977).repeat(1 + i % 13)).expect("write");
    }
    let remote = |c: &mut Command| {
        c.env("RCLONE_CONFIG_EDGE_TYPE", "s3")
            .env("RCLONE_CONFIG_EDGE_PROVIDER", "Other")
            .env("RCLONE_CONFIG_EDGE_ACCESS_KEY_ID", &k.id)
            .env("RCLONE_CONFIG_EDGE_SECRET_ACCESS_KEY", &k.secret)
            .env("RCLONE_CONFIG_EDGE_ENDPOINT", endpoint(&d))
            .env("RCLONE_CONFIG_EDGE_FORCE_PATH_STYLE", "true")
            .env("RCLONE_CONFIG", "/dev/null")
            // rclone's AWS SDK refuses a custom CA bundle on its HTTP transport; none is needed.
            .env_remove("AWS_CA_BUNDLE");
    };
    let mut up = Command::new("rclone");
    up.args(["sync", "--checksum", "--transfers", "8", src.to_str().expect("p"), "edge:tree/plant"]);
    remote(&mut up);
    run(&mut up, "rclone sync up");
    let back = tmp.path().join("back");
    let mut down = Command::new("rclone");
    down.args(["sync", "--checksum", "--transfers", "8", "edge:tree/plant", back.to_str().expect("p")]);
    remote(&mut down);
    run(&mut down, "rclone sync down");
    run(Command::new("diff").args(["-r", src.to_str().expect("p"), back.to_str().expect("p")]), "diff -r: the tree came back identical");
    // rclone's own check agrees, and the bucket holds exactly 1,000 objects.
    let mut chk = Command::new("rclone");
    chk.args(["check", src.to_str().expect("p"), "edge:tree/plant"]);
    remote(&mut chk);
    run(&mut chk, "rclone check");
    let l = d.call("GET", "/v1/buckets/tree/objects?limit=1&project=default", None).json();
    assert_eq!(l["count"], 1000, "{l}");
    // A second sync after deleting files locally deletes them remotely.
    std::fs::remove_dir_all(src.join("line0")).expect("rm");
    let mut again = Command::new("rclone");
    again.args(["sync", src.to_str().expect("p"), "edge:tree/plant"]);
    remote(&mut again);
    run(&mut again, "rclone sync after a delete");
    let l = d.call("GET", "/v1/buckets/tree/objects?limit=1&project=default", None).json();
    assert_eq!(l["count"], 900, "{l}");
}

#[test]
fn kill9_during_put_and_multipart_complete_leaves_no_partial_object() {
    let mut d = daemon();
    let k = access_key(&d, "default", "crash", "member");
    let r = d.call("POST", "/v1/buckets?project=default", Some(json!({"name": "crash", "spec": {}})));
    assert_eq!(r.status, 201, "{}", r.body);
    let client = |d: &Daemon, args: &[&str]| {
        let mut c = Command::new("python3");
        c.arg(repo().join("integration/s3/crash_client.py")).args(args).env("S3_ENDPOINT", endpoint(d)).env("KEY_A", &k.id).env("SECRET_A", &k.secret);
        c
    };
    let tmp_dir = d.dir.join("objects/tmp");

    // A PUT cut off mid-body: the blob was being written under tmp/ when the daemon died.
    let mut put =
        client(&d, &["slow-put", "crash", "video.mp4", &(64u64 << 20).to_string()]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn");
    common::wait_secs(30, "a partial upload in tmp/", || {
        std::fs::read_dir(&tmp_dir).ok()?.flatten().find(|e| e.metadata().is_ok_and(|m| m.len() > 256 << 10)).map(|_| ())
    });
    d.kill9();
    let _ = put.kill();
    let _ = put.wait();
    d.launch();
    assert_eq!(std::fs::read_dir(&tmp_dir).expect("tmp").count(), 0, "the partial write was removed at start-up");
    let l = d.call("GET", "/v1/buckets/crash/objects?project=default", None).json();
    assert_eq!((l["objects"].clone(), l["count"].clone()), (json!([]), json!(0)), "no partial object is visible: {l}");
    let c = check(&d);
    assert_eq!((c["damaged"].clone(), c["size_mismatches"].clone(), c["orphans_removed"].clone()), (json!([]), json!([]), json!(0)), "{c}");

    let paused = |d: &Daemon, n: usize| common::wait_secs(30, "the failpoint", || (d.log().matches("failpoint: pausing").count() >= n).then_some(()));
    let restart_with = |d: &mut Daemon, failpoint: Option<&str>| {
        d.kill9();
        d.env = failpoint.map(|f| vec![("CLOUDLET_FAILPOINT".to_string(), f.to_string())]).unwrap_or_default();
        d.launch();
    };

    // A PUT whose blob is complete and renamed into place, killed inside the transaction that
    // would make it visible: the object stays absent and the blob is swept at start-up.
    restart_with(&mut d, Some("put_commit=5000"));
    let mut put = client(&d, &["put", "crash", "photo.jpg", "300000"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn");
    paused(&d, 1);
    restart_with(&mut d, None);
    let _ = put.wait();
    let l = d.call("GET", "/v1/buckets/crash/objects?project=default", None).json();
    assert_eq!(l["count"], 0, "the uncommitted PUT is not visible: {l}");
    assert!(d.log().contains("object store repaired"), "the orphaned blob was swept at start-up");
    assert_eq!(check(&d)["blobs"], 0);

    // CompleteMultipartUpload killed inside its transaction: the upload is intact afterwards and
    // completes; killed just after it: the object is whole. Never partial.
    let complete_and_kill = |d: &mut Daemon, key: &str, delay_ms: u64| {
        let ready = d.dir.join(format!("ready-{key}"));
        let comp = client(d, &["complete", "crash", key, ready.to_str().expect("p")]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn");
        common::wait_secs(60, "parts uploaded", || ready.exists().then_some(()));
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        comp
    };
    restart_with(&mut d, Some("complete_commit=5000"));
    let mut comp = complete_and_kill(&mut d, "inside.bin", 0);
    paused(&d, 2);
    restart_with(&mut d, None);
    let _ = comp.wait();
    let out = run(&mut client(&d, &["verify", "crash", "inside.bin"]), "verify after a crash inside the completion");
    assert!(out.contains("had not committed"), "{out}");
    for (i, delay_ms) in [0u64, 50].into_iter().enumerate() {
        let key = format!("after-{i}.bin");
        let mut comp = complete_and_kill(&mut d, &key, delay_ms);
        let _ = comp.wait();
        restart_with(&mut d, None);
        let out = run(&mut client(&d, &["verify", "crash", &key]), "verify after a crash after the completion");
        assert!(out.contains("had committed"), "{out}");
    }
    let c = check(&d);
    assert_eq!((c["damaged"].clone(), c["size_mismatches"].clone(), c["usage_fixed"].clone()), (json!([]), json!([]), json!([])), "{c}");
    // Every blob on disk belongs to an object: 3 objects of 3 parts each.
    assert_eq!(c["blobs"], 9, "{c}");
    assert_eq!(d.call("GET", "/v1/buckets/crash/objects?project=default", None).json()["count"], 3);
}

#[test]
fn rest_buckets_access_keys_and_object_browser() {
    let d = daemon();
    let field = |r: &common::Answer| r.json()["error"]["field"].as_str().unwrap_or_default().to_string();
    for (body, want) in [
        (json!({"name": "ab", "spec": {}}), "name"),
        (json!({"name": "Has_Caps", "spec": {}}), "name"),
        (json!({"name": "okname", "spec": {"policy": "world-writable"}}), "spec"),
        (json!({"name": "okname", "spec": {"quota_mib": 0}}), "spec.quota_mib"),
        (json!({"name": "okname", "spec": {"bogus": 1}}), "spec"),
    ] {
        let r = d.call("POST", "/v1/buckets", Some(body.clone()));
        assert_eq!((r.status, field(&r)), (422, want.to_string()), "{body}: {}", r.body);
    }
    assert_eq!(d.call("POST", "/v1/buckets", Some(json!({"name": "media", "spec": {}}))).status, 201);
    project(&d, "tenant-b");
    let r = d.call("POST", "/v1/buckets?project=tenant-b", Some(json!({"name": "media", "spec": {}})));
    assert_eq!(r.status, 409, "bucket names are unique across the site: {}", r.body);
    let r = d.call("GET", "/v1/buckets/media?project=tenant-b", None);
    assert_eq!(r.status, 404, "another project does not see the bucket");

    // Upload, list with prefixes, download, delete through the object browser.
    let auth = format!("Bearer {}", d.token);
    let put = |key: &str, body: &[u8]| {
        d.raw("PUT", &format!("/v1/buckets/media/object?key={key}"), Some(body), &[("authorization", &auth), ("content-type", "text/plain")])
            .expect("connection")
    };
    assert_eq!(put("clips/a.txt", b"first").status, 201);
    assert_eq!(put("clips/b.txt", b"second!").status, 201);
    assert_eq!(put("top.txt", b"t").status, 201);
    let l = d.call("GET", "/v1/buckets/media/objects?delimiter=/", None).json();
    assert_eq!(
        (l["prefixes"].clone(), l["objects"][0]["key"].clone(), l["count"].clone(), l["bytes"].clone()),
        (json!(["clips/"]), json!("top.txt"), json!(3), json!(13)),
        "{l}"
    );
    let p1 = d.call("GET", "/v1/buckets/media/objects?prefix=clips/&limit=1", None).json();
    assert_eq!((p1["objects"][0]["key"].clone(), p1["next"].clone()), (json!("clips/a.txt"), json!("clips/a.txt")));
    let p2 = d.call("GET", "/v1/buckets/media/objects?prefix=clips/&limit=1&after=clips/a.txt", None).json();
    assert_eq!((p2["objects"][0]["key"].clone(), p2["next"].clone()), (json!("clips/b.txt"), Value::Null));
    let g = d.raw("GET", "/v1/buckets/media/object?key=clips/b.txt", None, &[("authorization", &auth)]).expect("connection");
    assert_eq!((g.status, g.body.as_str(), g.header("content-type")), (200, "second!", Some("text/plain")));
    assert_eq!(d.raw("GET", "/v1/buckets/media/object?key=nope", None, &[("authorization", &auth)]).expect("c").status, 404);
    let r = d.call("GET", "/v1/buckets/media/objects?limit=0", None);
    assert_eq!((r.status, field(&r)), (422, "limit".to_string()));
    let long = "k".repeat(1025);
    let r = put(&long, b"x");
    assert_eq!((r.status, field(&r)), (422, "key".to_string()), "{}", r.body);
    let r = d.call("DELETE", "/v1/buckets/media", None);
    assert_eq!(r.status, 409, "a bucket with objects is not deleted: {}", r.body);
    for key in ["clips/a.txt", "clips/b.txt", "top.txt"] {
        assert_eq!(d.raw("DELETE", &format!("/v1/buckets/media/object?key={key}"), None, &[("authorization", &auth)]).expect("c").status, 204);
    }
    assert_eq!(d.call("DELETE", "/v1/buckets/media", None).status, 204);

    // Access keys: the secret is shown once; a revoked key stops working; a key's role may not
    // exceed its creator's.
    let k = access_key(&d, "default", "ci", "member");
    let shown = d.call("GET", &format!("/v1/access-keys/{}?project=default", k.id), None);
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert!(!shown.body.contains(&k.secret), "the secret is shown only once");
    let r = d.call("POST", "/v1/access-keys", Some(json!({"name": "x", "spec": {"role": "root"}})));
    assert_eq!((r.status, field(&r)), (422, "spec".to_string()), "{}", r.body);
    let ep = endpoint(&d);
    let ok = Command::new("python3").arg("-c").arg(LIST_BUCKETS).env("S3_ENDPOINT", &ep).env("KEY", &k.id).env("SECRET", &k.secret).output().expect("python3");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert_eq!(d.call("DELETE", &format!("/v1/access-keys/{}?project=default", k.id), None).status, 204);
    let denied =
        Command::new("python3").arg("-c").arg(LIST_BUCKETS).env("S3_ENDPOINT", &ep).env("KEY", &k.id).env("SECRET", &k.secret).output().expect("python3");
    assert!(String::from_utf8_lossy(&denied.stderr).contains("InvalidAccessKeyId"), "a revoked key is refused: {}", String::from_utf8_lossy(&denied.stderr));
    // A viewer may not mint a member key.
    let t = d.call("POST", "/v1/tokens", Some(json!({"name": "viewer", "spec": {"role": "viewer"}}))).json()["secret"].as_str().expect("secret").to_string();
    let r = d.call_as(&t, "POST", "/v1/access-keys", Some(json!({"name": "y"})));
    assert_eq!(r.status, 403, "{}", r.body);
}

#[test]
fn cli_buckets_and_access_keys() {
    let d = daemon();
    let remote = format!("http://{}", d.addr);
    let cli = |args: &[&str]| {
        let mut all = vec!["--remote", remote.as_str(), "--token", d.token.as_str(), "--project", "default"];
        all.extend_from_slice(args);
        let (code, out, err) = common::cli(&all, None);
        assert_eq!(code, 0, "cloudlet {args:?}: {out}{err}");
        out
    };
    cli(&["bucket", "create", "cams", "--quota", "64"]);
    assert!(cli(&["bucket", "ls"]).contains("cams"));
    cli(&["bucket", "set", "cams", "--policy", "public-read"]);
    let shown: Value = serde_json::from_str(&cli(&["-o", "json", "bucket", "show", "cams"])).expect("json");
    assert_eq!((shown["spec"]["policy"].as_str(), shown["spec"]["quota_mib"].as_u64()), (Some("public-read"), Some(64)));
    let created = cli(&["access-key", "create", "uploader"]);
    let secret = created.lines().find_map(|l| l.strip_prefix("AWS_SECRET_ACCESS_KEY=")).expect("the secret is printed once");
    assert_eq!(secret.len(), 40);
    let id = created.lines().find_map(|l| l.strip_prefix("AWS_ACCESS_KEY_ID=")).expect("id").to_string();
    let k = Key { id: id.clone(), secret: secret.to_string() };
    run(&mut aws(&endpoint(&d), &k, &["s3", "cp", "--only-show-errors", "/etc/hostname", "s3://cams/cam1/host.txt"]), "aws cp");
    let objs = cli(&["bucket", "objects", "cams"]);
    assert!(objs.contains("PRE") && objs.contains("cam1/"), "{objs}");
    assert!(cli(&["bucket", "objects", "cams", "--prefix", "cam1/"]).contains("cam1/host.txt"));
    assert!(!cli(&["access-key", "ls"]).contains(secret), "the list never shows a secret");
    let (code, _, err) = common::cli(&["--remote", &remote, "--token", &d.token, "--project", "default", "bucket", "rm", "cams"], None);
    assert_ne!(code, 0, "a non-empty bucket is not deleted: {err}");
    cli(&["access-key", "rm", "uploader"]);
}

const LIST_BUCKETS: &str = r#"
import os, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], aws_access_key_id=os.environ["KEY"], aws_secret_access_key=os.environ["SECRET"], region_name="us-east-1", config=Config(retries={"max_attempts": 1}))
s3.list_buckets()
"#;
