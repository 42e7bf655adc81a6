//! Drift repair on kernel events (privileged lane): with the periodic resync set to an hour, a
//! flushed ruleset, a deleted router port, a deleted interface namespace and a deleted router
//! namespace each come back on their own, because the daemon watches the kernel. After each
//! repair the daemon goes quiet: its own changes do not wake it again and again. Prints the
//! repair times (docs/benchmarks.md).

use crate::common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Daemon, NetnsGuard, create, ready_netns};
use serde_json::{Value, json};

fn rules(netns: &str) -> usize {
    let out = Command::new("ip").args(["netns", "exec", netns, "nft", "-j", "list", "table", "inet", "cloudlet"]).output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v["nftables"].as_array().map(|a| a.iter().filter(|o| o.get("rule").is_some()).count()).unwrap_or(0)
}

fn router_ports(netns: &str) -> usize {
    let out = Command::new("ip").args(["netns", "exec", netns, "ip", "-o", "link"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains(": clw")).count()
}

fn exists(netns: &str) -> bool {
    std::path::Path::new("/run/netns").join(netns).exists()
}

/// VPC passes so far (`cloudlet_reconcile_total{kind="vpc"}`).
fn vpc_passes(d: &Daemon) -> u64 {
    let m = d.call("GET", "/metrics", None);
    m.body.lines().find_map(|l| l.strip_prefix("cloudlet_reconcile_total{kind=\"vpc\"} ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// Wait until `repaired` holds (60 s at most: the resync is an hour away, so only an event can
/// have done it); return how long it took.
fn repaired_within(what: &str, repaired: impl Fn() -> bool) -> Duration {
    let t0 = Instant::now();
    while !repaired() {
        assert!(t0.elapsed() < Duration::from_secs(60), "{what}: not repaired after 60 s (the resync is an hour away)");
        std::thread::sleep(Duration::from_millis(50));
    }
    t0.elapsed()
}

/// After a repair the daemon settles: within a few seconds its VPC passes stop.
fn settles(d: &Daemon) {
    let mut last = vpc_passes(d);
    for _ in 0..20 {
        std::thread::sleep(Duration::from_secs(3));
        let now = vpc_passes(d);
        if now == last {
            return;
        }
        last = now;
    }
    panic!("the VPC reconciler kept running for a minute after a repair: its own changes wake it");
}

#[test]
fn drift_is_repaired_on_kernel_events_without_waiting_for_the_resync() {
    if !common::privileged(common::is_root(), "root (CAP_NET_ADMIN, CAP_SYS_ADMIN) for namespaces, veth and nftables") {
        return;
    }
    let cfg = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(cfg.path(), "[reconcile]\nresync_seconds = 3600\n").unwrap();
    let d = Daemon::start_with(&["--config", cfg.path().to_str().unwrap()]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let _cleanup = NetnsGuard { data: Some(d.dir.clone()), extra: vec![], stop };

    create(&d, "/v1/vpcs", json!({"name": "v", "spec": {"cidr": "10.0.0.0/16"}}));
    create(&d, "/v1/subnets", json!({"name": "s", "spec": {"vpc": "v", "cidr": "10.0.1.0/24"}}));
    let eni = create(&d, "/v1/network-interfaces", json!({"name": "e", "spec": {"subnet": "s"}}));
    let (eni_ns, _) = ready_netns(&d, "e");
    let eni_ns = eni_ns.file_name().unwrap().to_string_lossy().into_owned();
    let router = d.wait_for(30, "the VPC's router namespace", || {
        let v = d.call("GET", "/v1/vpcs/v", None).json();
        v["status"]["netns"].as_str().map(|p| p.rsplit('/').next().unwrap_or_default().to_string())
    });
    let port = cloudlet::net::names::ifname(cloudlet::net::names::Role::Workload, eni["id"].as_str().unwrap());
    let whole = || exists(&router) && exists(&eni_ns) && rules(&router) > 0 && router_ports(&router) == 1;
    repaired_within("the first pass", whole);
    settles(&d);

    let mut times = Vec::new();
    let ok = |args: &[&str]| assert!(Command::new(args[0]).args(&args[1..]).status().unwrap().success(), "{args:?}");
    ok(&["ip", "netns", "exec", &router, "nft", "flush", "table", "inet", "cloudlet"]);
    assert_eq!(rules(&router), 0, "the flush took");
    times.push(("flushed ruleset", repaired_within("a flushed ruleset", whole)));
    settles(&d);

    ok(&["ip", "-n", &router, "link", "del", &port]);
    times.push(("deleted router port", repaired_within("a deleted router port", whole)));
    settles(&d);

    ok(&["ip", "netns", "del", &eni_ns]);
    times.push(("deleted interface namespace", repaired_within("a deleted interface namespace", whole)));
    settles(&d);

    ok(&["ip", "netns", "del", &router]);
    times.push(("deleted router namespace", repaired_within("a deleted router namespace", whole)));
    settles(&d);

    for (what, t) in &times {
        eprintln!("drift repair: {what}: {} ms", t.as_millis());
    }
    assert!(!d.log().contains("panicked"), "{}", d.log());
}
