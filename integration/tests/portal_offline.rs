//! Offline autonomy, with real processes: a site whose link to the portal is cut, and which is
//! then rebooted (simulated: every process, namespace, cgroup and mount gone), brings its
//! workloads back by itself, before the link is back; when the link returns nothing is
//! recreated or restarted: the same container, the same process.

use serde_json::{Value, json};

use crate::common::{self, ContainerGuard, Daemon, shims_of};
use crate::portal::{Blackhole, Portal, join};

/// The `type`s of the portal's events about `site`, in order.
fn fleet_events(portal: &Portal, site: &str) -> Vec<String> {
    let (_, b) = portal.call("GET", "/v1/events", None);
    b["items"].as_array().into_iter().flatten().filter(|e| e["site"] == site).filter_map(|e| e["type"].as_str().map(str::to_string)).collect()
}

fn connects(portal: &Portal, site: &str) -> usize {
    fleet_events(portal, site).iter().filter(|t| *t == "connected").count()
}

fn status(d: &Daemon, name: &str) -> Value {
    d.call("GET", &format!("/v1/containers/{name}"), None).json()["status"].clone()
}

#[test]
fn a_site_rebooted_while_cut_off_runs_its_workloads_again_and_the_returning_link_recreates_nothing() {
    if !common::privileged(common::is_root(), "root (namespaces, cgroups, overlayfs, nftables rules that cut the link)") {
        return;
    }
    let portal = Portal::start();
    let mut site = Daemon::start();
    let _containers = ContainerGuard(site.dir.clone());
    assert_eq!(join(&site, &portal.link_url(), &portal.token_for("plant-x", 3600)).0, 200);
    site.wait_for(30, "the link to come up", || (portal.phase("plant-x").as_deref() == Some("Connected")).then_some(()));

    let archive = std::fs::read(common::busybox_image().join("busybox-httpd.oci.tar")).expect("archive");
    let auth = format!("Bearer {}", site.token);
    let r =
        site.raw("POST", "/v1/images/import?name=bb", Some(&archive), &[("authorization", &auth), ("content-type", "application/x-tar")]).expect("connection");
    assert_eq!(r.status, 201, "{}", r.body);
    let spec = json!({"name": "svc", "spec": {"image": "bb", "command": ["/bin/sh", "-c", "exec sleep 100000"], "restart_policy": "always"}});
    let r = site.call("POST", "/v1/containers", Some(spec));
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["id"].as_str().expect("id").to_string();
    site.wait_for(60, "the container to run", || (status(&site, "svc")["phase"] == "Running").then_some(()));

    // The link is cut, and the site reboots while cut off.
    let port: u16 = portal.link.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).expect("link port");
    let cut = Blackhole::port(port);
    let linked = connects(&portal, "plant-x");
    common::simulate_reboot(&mut site);
    site.launch();

    // With no portal, the site serves its API and brings its workload back by itself.
    let st = site.wait_for(60, "the container to run again after the reboot", || {
        let s = status(&site, "svc");
        (s["phase"] == "Running").then_some(s)
    });
    let pid = st["pid"].clone();
    assert!(pid.as_i64().is_some_and(|p| p > 0), "{st}");
    assert_eq!(shims_of(&id), 1, "one shim");
    assert_eq!(site.call("GET", "/v1/site", None).status, 200);
    assert_eq!(connects(&portal, "plant-x"), linked, "the workload came back before the link did");

    // The path heals: the link comes back by itself, and finds the workload as it is.
    drop(cut);
    site.wait_for(120, "the link to come back", || (connects(&portal, "plant-x") > linked).then_some(()));
    std::thread::sleep(std::time::Duration::from_secs(3));
    let (st, through) = portal.call("GET", "/v1/sites/plant-x/api/containers/svc", None);
    assert_eq!(st, 200, "{through}");
    assert_eq!(
        (through["id"].as_str(), &through["status"]["pid"]),
        (Some(id.as_str()), &pid),
        "the same container and process: nothing recreated or restarted"
    );
    assert_eq!(through["status"]["phase"], "Running");
    assert_eq!(shims_of(&id), 1, "still one shim");
    let created = site.call("GET", "/v1/events?limit=1000", None).json()["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["kind"] == "container" && e["type"] == "created")
        .count();
    assert_eq!(created, 1, "the container was created once");
}
