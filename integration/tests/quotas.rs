//! Project quotas as a hostile tenant meets them (issue 14): a new project is limited by the
//! site's default quotas without anyone setting them; vCPUs and memory held by its containers
//! and instances are bounded; snapshots count against `volume_mib`; another project's name is
//! not revealed by its id; a site config with an unknown default quota key does not start.

use crate::common;

use common::{ContainerGuard, Daemon};
use serde_json::{Value, json};

fn as_b(d: &Daemon, token: &str, method: &str, path: &str, body: Option<Value>) -> common::Answer {
    let auth = format!("Bearer {token}");
    let bytes = body.map(|b| serde_json::to_vec(&b).expect("json"));
    d.raw(method, path, bytes.as_deref(), &[("authorization", &auth), ("content-type", "application/json")]).expect("connection")
}

fn assert_quota(r: &common::Answer, key: &str) {
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "quota_exceeded", "{}", r.body);
    assert_eq!(r.json()["error"]["field"], format!("quotas.{key}"), "{}", r.body);
}

#[test]
fn a_tenant_is_bounded_by_default_and_set_quotas_on_compute_and_snapshots() {
    if !common::is_root() {
        panic!("needs root: image roots are chowned; run the suite as root");
    }
    let d = Daemon::start();
    let _guard = ContainerGuard(d.dir.clone());
    // A new project gets the site's defaults for every key it leaves out; the system project none.
    let r = d.call("POST", "/v1/projects", Some(json!({"name": "b", "spec": {"quotas": {"instances": 3}}})));
    assert_eq!(r.status, 201, "{}", r.body);
    let q = &r.json()["spec"]["quotas"];
    assert_eq!((q["instances"].as_u64(), q["vcpus"].as_u64(), q["memory_mib"].as_u64()), (Some(3), Some(64), Some(131072)), "{q}");
    assert_eq!((q["port-forwards"].as_u64(), q["volume_mib"].as_u64(), q["tokens"].as_u64()), (Some(100), Some(1048576), Some(100)), "{q}");
    let system = d.call("GET", "/v1/projects/system", None).json();
    assert_eq!(system["spec"]["quotas"], json!({}), "{system}");
    // The site admin narrows b's quotas to something a test can reach.
    let patch = json!({"spec": {"quotas": {"vcpus": 2, "memory_mib": 1536, "volume_mib": 100, "image_mib": 1}}});
    assert_eq!(d.call("PATCH", "/v1/projects/b", Some(patch)).status, 200);
    let r = d.call("POST", "/v1/tokens?project=b", Some(json!({"name": "m", "spec": {"role": "member"}})));
    assert_eq!(r.status, 201, "{}", r.body);
    let b = r.json()["secret"].as_str().expect("secret").to_string();

    // b cannot learn another project's name from its id.
    let system_id = system["id"].as_str().expect("id");
    let r = as_b(&d, &b, "GET", &format!("/v1/projects/{system_id}"), None);
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(!r.body.contains("\"system\""), "{}", r.body);
    // b cannot raise its own quotas.
    assert_eq!(as_b(&d, &b, "PATCH", "/v1/projects/b", Some(json!({"spec": {"quotas": {"vcpus": 1000}}}))).status, 403);

    // Containers: one with no limits of its own holds the site's defaults (1 CPU, 1 GiB).
    let bb = std::fs::read(common::busybox_image().join("busybox-httpd.oci.tar")).expect("archive");
    let auth = format!("Bearer {b}");
    let r = d.raw("POST", "/v1/images/import?name=bb", Some(&bb), &[("authorization", &auth), ("content-type", "application/x-tar")]).expect("connection");
    assert_eq!(r.status, 201, "{}", r.body);
    let ctr = |name: &str, resources: Value| json!({"name": name, "spec": {"image": "bb", "state": "stopped", "resources": resources}});
    let r = as_b(&d, &b, "POST", "/v1/containers", Some(ctr("c1", json!({}))));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_quota(&as_b(&d, &b, "POST", "/v1/containers", Some(ctr("c2", json!({"cpus": 1.5})))), "vcpus");
    assert_quota(&as_b(&d, &b, "POST", "/v1/containers", Some(ctr("c2", json!({"cpus": 0.5, "memory_mib": 1024})))), "memory_mib");
    let r = as_b(&d, &b, "POST", "/v1/containers", Some(ctr("c2", json!({"cpus": 0.5, "memory_mib": 512}))));
    assert_eq!(r.status, 201, "{}", r.body);
    // The quota is full: growing c1 is refused, keeping its size is not (it replaces itself).
    assert_quota(&as_b(&d, &b, "PATCH", "/v1/containers/c1", Some(json!({"spec": {"resources": {"memory_mib": 1025}}}))), "memory_mib");
    let r = as_b(&d, &b, "PATCH", "/v1/containers/c1", Some(json!({"spec": {"resources": {"memory_mib": 1024, "cpus": 1}}})));
    assert_eq!(r.status, 200, "{}", r.body);
    // Nothing refused was stored.
    let names: Vec<String> = as_b(&d, &b, "GET", "/v1/containers", None).json()["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["name"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(names, ["c1", "c2"]);

    // Unpacking the image for c2 would take more than b's 1 MiB image quota (busybox alone is
    // larger): c2 does not start, and its status names the quota.
    let ctr_status = |name: &str| as_b(&d, &b, "GET", &format!("/v1/containers/{name}"), None).json()["status"].clone();
    assert_eq!(as_b(&d, &b, "PATCH", "/v1/containers/c2", Some(json!({"spec": {"state": "running"}}))).status, 200);
    let st = d.wait_for(60, "c2 refused by the image quota", || {
        let st = ctr_status("c2");
        st.to_string().contains("image_mib").then_some(st)
    });
    assert_ne!(st["phase"], "Running", "{st}");
    let image = as_b(&d, &b, "GET", "/v1/images/bb", None).json();
    assert!(image["status"]["unpacked_bytes"].is_null(), "{image}");
    // With room, it starts, and the image records what its root took.
    assert_eq!(d.call("PATCH", "/v1/projects/b", Some(json!({"spec": {"quotas": {"image_mib": 64}}}))).status, 200);
    assert_eq!(as_b(&d, &b, "PATCH", "/v1/containers/c2", Some(json!({"labels": {"poke": "1"}}))).status, 200);
    d.wait_for(120, "c2 running", || (ctr_status("c2")["phase"] == "Running").then_some(()));
    let image = as_b(&d, &b, "GET", "/v1/images/bb", None).json();
    let took = image["status"]["unpacked_bytes"].as_u64().expect("unpacked_bytes");
    assert!(took > 1 << 20 && took < 64 << 20, "{image}");
    assert_eq!(as_b(&d, &b, "PATCH", "/v1/containers/c2", Some(json!({"spec": {"state": "stopped"}}))).status, 200);

    // Volumes: snapshots count against volume_mib as the volumes do.
    assert_eq!(as_b(&d, &b, "POST", "/v1/volumes", Some(json!({"name": "v1", "spec": {"size_mib": 60}}))).status, 201);
    assert_quota(&as_b(&d, &b, "POST", "/v1/snapshots", Some(json!({"name": "s1", "spec": {"volume": "v1"}}))), "volume_mib");
    assert_eq!(as_b(&d, &b, "POST", "/v1/volumes", Some(json!({"name": "v2", "spec": {"size_mib": 40}}))).status, 201);
    assert_quota(&as_b(&d, &b, "POST", "/v1/volumes", Some(json!({"name": "v3", "spec": {"size_mib": 16}}))), "volume_mib");
    // With room again, a snapshot records the size it holds; a size a tenant gives is replaced.
    assert_eq!(as_b(&d, &b, "DELETE", "/v1/volumes/v1", None).status, 204);
    let r = as_b(&d, &b, "POST", "/v1/snapshots", Some(json!({"name": "s2", "spec": {"volume": "v2", "size_mib": 0}})));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["spec"]["size_mib"], 40, "{}", r.body);
    assert_quota(&as_b(&d, &b, "POST", "/v1/volumes", Some(json!({"name": "v3", "spec": {"size_mib": 30}}))), "volume_mib");
    assert_eq!(as_b(&d, &b, "POST", "/v1/volumes", Some(json!({"name": "v3", "spec": {"size_mib": 20}}))).status, 201);
    // The state survives a restart and still bounds b.
    let mut d = d;
    d.kill9();
    d.launch();
    assert_quota(&as_b(&d, &b, "POST", "/v1/snapshots", Some(json!({"name": "s3", "spec": {"volume": "v2"}}))), "volume_mib");
}

#[test]
fn an_unknown_default_quota_key_stops_the_daemon_with_its_name() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg = tmp.path().join("config.toml");
    std::fs::write(&cfg, "[projects.default_quotas]\ninstances = 5\ncores = 4\n").expect("write");
    // (`timeout`: a daemon that wrongly started would otherwise serve until the test is killed.)
    let out = std::process::Command::new("timeout")
        .arg("60")
        .arg(common::bin())
        .args(["serve", "--config", cfg.to_str().expect("utf-8"), "--data-dir", tmp.path().join("data").to_str().expect("utf-8"), "--http", "127.0.0.1:0"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("projects.default_quotas.cores"), "{err}");
}
