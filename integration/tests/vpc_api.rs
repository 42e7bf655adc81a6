//! Privileged lane, through the real daemon's API: VPCs, subnets, security groups and network
//! interfaces become namespaces, links and rulesets; real TCP traffic checks the groups (same
//! subnet, accept and reject), overlapping VPCs, rule updates, drift repair after a flush, and
//! recovery after kill -9 plus a simulated reboot (every namespace deleted), with no duplicates.

use crate::common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{Daemon, NetnsGuard, create, fetch_identity, owned_netns, ready_netns, serve_identity};
use serde_json::{Value, json};

fn rules(netns: &str) -> usize {
    let out = Command::new("ip").args(["netns", "exec", netns, "nft", "-j", "list", "table", "inet", "cloudlet"]).output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v["nftables"].as_array().map(|a| a.iter().filter(|o| o.get("rule").is_some()).count()).unwrap_or(0)
}

fn links(netns: &str) -> usize {
    let out = Command::new("ip").args(["netns", "exec", netns, "ip", "-o", "link"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains(": clw")).count()
}

#[test]
fn vpcs_through_the_api_with_traffic_drift_repair_and_recovery() {
    if !common::privileged(common::is_root(), "root (CAP_NET_ADMIN, CAP_SYS_ADMIN) for namespaces, veth and nftables") {
        return;
    }
    let cfg = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(cfg.path(), "[reconcile]\nresync_seconds = 2\n").unwrap();
    let mut d = Daemon::start_with(&["--config", cfg.path().to_str().unwrap()]);
    let stop = Arc::new(AtomicBool::new(false));
    let _cleanup = NetnsGuard { data: Some(d.dir.clone()), extra: vec![], stop: stop.clone() };

    let prod = create(&d, "/v1/vpcs", json!({"name": "prod", "spec": {"cidr": "10.0.0.0/16"}}));
    create(&d, "/v1/subnets", json!({"name": "web", "spec": {"vpc": "prod", "cidr": "10.0.1.0/24"}}));
    // Bad input: overlap, out of range, public CIDR, unknown VPC — each names its field.
    for (body, status, field) in [
        (json!({"name": "x", "spec": {"vpc": "prod", "cidr": "10.0.1.128/25"}}), 409, Some("spec.cidr")),
        (json!({"name": "x", "spec": {"vpc": "prod", "cidr": "10.1.0.0/24"}}), 422, Some("spec.cidr")),
        (json!({"name": "x", "spec": {"vpc": "prod", "cidr": "10.0.2.1/24"}}), 422, Some("spec.cidr")),
        (json!({"name": "x", "spec": {"vpc": "nope", "cidr": "10.0.2.0/24"}}), 422, Some("spec.vpc")),
    ] {
        let r = d.call("POST", "/v1/subnets", Some(body));
        assert_eq!(r.status, status, "{}", r.body);
        if let Some(f) = field {
            assert_eq!(r.json()["error"]["field"], f, "{}", r.body);
        }
    }
    let r = d.call("POST", "/v1/vpcs", Some(json!({"name": "pub", "spec": {"cidr": "8.8.0.0/16"}})));
    assert_eq!((r.status, r.json()["error"]["field"].as_str()), (422, Some("spec.cidr")));

    create(&d, "/v1/security-groups", json!({"name": "app", "spec": {"vpc": "prod"}}));
    create(
        &d,
        "/v1/security-groups",
        json!({"name": "web", "spec": {"vpc": "prod", "ingress": [
        {"protocol": "tcp", "ports": "8080", "source_group": "app"}]}}),
    );
    let r = d.call(
        "POST",
        "/v1/security-groups",
        Some(json!({"name": "bad", "spec": {"vpc": "prod", "ingress": [
        {"protocol": "tcp", "ports": "9-1", "source_cidr": "0.0.0.0/0"}]}})),
    );
    assert_eq!((r.status, r.json()["error"]["field"].as_str()), (422, Some("spec.ingress[0].ports")));
    create(&d, "/v1/network-interfaces", json!({"name": "a", "spec": {"subnet": "web", "security_groups": ["web"]}}));
    create(&d, "/v1/network-interfaces", json!({"name": "b", "spec": {"subnet": "web", "security_groups": ["app"]}}));
    let r = d.call("POST", "/v1/network-interfaces", Some(json!({"name": "c", "spec": {"subnet": "web", "private_ip": "10.0.1.1"}})));
    assert_eq!((r.status, r.json()["error"]["field"].as_str()), (422, Some("spec.private_ip")));
    let (a_ns, a_ip) = ready_netns(&d, "a");
    let (b_ns, b_ip) = ready_netns(&d, "b");
    assert_eq!((a_ip.as_str(), b_ip.as_str()), ("10.0.1.4", "10.0.1.5"));
    serve_identity(&a_ns, 8080, "A", stop.clone());
    serve_identity(&b_ns, 8080, "B", stop.clone());
    assert_eq!(fetch_identity(&b_ns, &a_ip, 8080).as_deref(), Some("A"), "app -> web:8080 is allowed");
    assert_eq!(fetch_identity(&a_ns, &b_ip, 8080), None, "web -> app is denied by default");

    // Changing a group's rules takes effect on the router.
    let r = d.call(
        "PATCH",
        "/v1/security-groups/app",
        Some(json!({"spec": {"ingress": [
        {"protocol": "tcp", "ports": "8000-8100", "source_group": "web"}]}})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    d.wait_for(30, "web -> app allowed after the update", || fetch_identity(&a_ns, &b_ip, 8080).filter(|s| s == "B"));

    // A second VPC with the same CIDR and addresses: no crossing.
    create(&d, "/v1/vpcs", json!({"name": "dev", "spec": {"cidr": "10.0.0.0/16"}}));
    create(&d, "/v1/subnets", json!({"name": "dev-web", "spec": {"vpc": "dev", "cidr": "10.0.1.0/24"}}));
    create(
        &d,
        "/v1/security-groups",
        json!({"name": "open", "spec": {"vpc": "dev", "ingress": [
        {"protocol": "tcp", "source_cidr": "0.0.0.0/0"}]}}),
    );
    create(&d, "/v1/network-interfaces", json!({"name": "c", "spec": {"subnet": "dev-web", "security_groups": ["open"]}}));
    create(&d, "/v1/network-interfaces", json!({"name": "e", "spec": {"subnet": "dev-web", "security_groups": ["open"]}}));
    let (c_ns, c_ip) = ready_netns(&d, "c");
    let (e_ns, e_ip) = ready_netns(&d, "e");
    assert_eq!((c_ip.as_str(), e_ip.as_str()), ("10.0.1.4", "10.0.1.5"));
    serve_identity(&e_ns, 8080, "E", stop.clone());
    assert_eq!(fetch_identity(&c_ns, "10.0.1.5", 8080).as_deref(), Some("E"), "dev's 10.0.1.5 is E");
    assert_eq!(fetch_identity(&a_ns, "10.0.1.5", 8080).as_deref(), Some("B"), "prod's 10.0.1.5 is B");

    // In use: refused with 409, nothing removed.
    assert_eq!(d.call("DELETE", "/v1/vpcs/prod", None).status, 409);
    assert_eq!(d.call("DELETE", "/v1/security-groups/web", None).status, 409);
    assert_eq!(d.call("DELETE", "/v1/subnets/web", None).status, 409);

    // Drift: a manual flush is repaired by the periodic resync.
    let router = cloudlet::net::names::vpc_netns(prod["id"].as_str().unwrap());
    let want_rules = rules(&router);
    assert!(want_rules > 0);
    assert!(Command::new("ip").args(["netns", "exec", &router, "nft", "flush", "ruleset"]).status().unwrap().success());
    d.wait_for(30, "ruleset restored after flush", || (rules(&router) == want_rules).then_some(()));

    // Simulated reboot: kill -9, every namespace we own deleted, start again.
    d.kill9();
    stop.store(true, Ordering::SeqCst);
    for ns in owned_netns(&d.dir) {
        cloudlet::net::host::delete_netns(&ns).unwrap();
    }
    d.launch();
    let stop2 = Arc::new(AtomicBool::new(false));
    let (a_ns, _) = ready_netns(&d, "a");
    let (b_ns, _) = ready_netns(&d, "b");
    d.wait_for(30, "router ruleset back", || (rules(&router) == want_rules).then_some(()));
    serve_identity(&a_ns, 8080, "A", stop2.clone());
    serve_identity(&b_ns, 8080, "B", stop2.clone());
    assert_eq!(fetch_identity(&b_ns, "10.0.1.4", 8080).as_deref(), Some("A"));
    assert_eq!(fetch_identity(&a_ns, "10.0.1.5", 8080).as_deref(), Some("B"));
    // A plain restart adopts: no duplicate links or rules.
    assert!(d.terminate());
    d.launch();
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(links(&router), 2);
    assert_eq!(rules(&router), want_rules);
    stop2.store(true, Ordering::SeqCst);

    // Deleting in order removes the host objects.
    for eni in ["a", "b", "c", "e"] {
        assert_eq!(d.call("DELETE", &format!("/v1/network-interfaces/{eni}"), None).status, 204);
    }
    d.wait_for(30, "interface namespaces removed", || {
        (!std::path::Path::new("/run/netns").join(a_ns.file_name().unwrap()).exists() && links(&router) == 0).then_some(())
    });
    // web and app name each other as rule sources: either is in use until a rule goes.
    assert_eq!(d.call("DELETE", "/v1/security-groups/app", None).status, 409);
    assert_eq!(d.call("PATCH", "/v1/security-groups/web", Some(json!({"spec": {"ingress": []}}))).status, 200);
    for (path, name) in [
        ("subnets", "web"),
        ("subnets", "dev-web"),
        ("security-groups", "app"),
        ("security-groups", "web"),
        ("security-groups", "open"),
        ("vpcs", "prod"),
        ("vpcs", "dev"),
    ] {
        let r = d.call("DELETE", &format!("/v1/{path}/{name}"), None);
        assert_eq!(r.status, 204, "{path}/{name}: {}", r.body);
    }
    d.wait_for(30, "router namespaces removed", || {
        let left = owned_netns(&d.dir).into_iter().filter(|n| cloudlet::net::host::netns_path(n).exists()).count();
        (left == 0).then_some(())
    });
}

#[test]
fn networking_cli_round_trip() {
    if !common::privileged(common::is_root(), "root (CAP_NET_ADMIN, CAP_SYS_ADMIN) for namespaces, veth and nftables") {
        return;
    }
    let d = Daemon::start();
    let _cleanup = NetnsGuard { data: Some(d.dir.clone()), extra: vec![], stop: Arc::new(AtomicBool::new(false)) };
    let remote = format!("http://{}", d.addr);
    let cli = |args: &[&str]| {
        let mut a = vec!["--remote", remote.as_str(), "--token", d.token.as_str()];
        a.extend_from_slice(args);
        common::cli(&a, None)
    };
    for args in [
        &["vpc", "create", "net", "--cidr", "10.9.0.0/16"][..],
        &["subnet", "create", "app", "--vpc", "net", "--cidr", "10.9.1.0/24"],
        &["sg", "create", "web", "--vpc", "net", "--rule", "tcp:80:0.0.0.0/0", "--rule", "icmp::10.0.0.0/8"],
        &["sg", "set-rules", "web", "--rule", "tcp:8000-8099:sg=web"],
        &["eni", "create", "nic", "--subnet", "app", "--sg", "web", "--ip", "10.9.1.10"],
    ] {
        let (code, out, err) = cli(args);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
    }
    let (_, out, _) = cli(&["sg", "ls"]);
    assert!(out.contains("RULES") && out.lines().any(|l| l.trim_start().starts_with("web") && l.contains(" 1 ")), "{out}");
    let (_, out, _) = cli(&["eni", "show", "nic", "-o", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["spec"]["private_ip"], "10.9.1.10");
    let (code, _, err) = cli(&["subnet", "create", "dup", "--vpc", "net", "--cidr", "10.9.1.0/25"]);
    assert_eq!(code, 1);
    assert!(err.contains("conflict") && err.contains("overlaps"), "{err}");
    let (code, _, err) = cli(&["sg", "create", "bad", "--vpc", "net", "--rule", "tcp:80"]);
    assert_ne!(code, 0);
    assert!(err.contains("PROTO:PORTS:SOURCE"), "{err}");
    // Load balancers: an internal VIP with weighted backends; backends replaced; bad input named.
    let (code, out, err) = cli(&[
        "lb",
        "create",
        "front",
        "--vpc",
        "net",
        "--subnet",
        "app",
        "--port",
        "80",
        "--backend",
        "10.9.1.10:8080",
        "--backend",
        "10.9.1.11:8080*3",
        "-o",
        "json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let lb: Value = serde_json::from_str(&out).unwrap();
    let vip = lb["status"]["address"].as_str().unwrap().to_string();
    assert_eq!(lb["spec"]["backends"][1]["weight"], 3);
    let (_, out, _) = cli(&["lb", "ls"]);
    assert!(out.contains(&vip) && out.contains("10.9.1.11:8080 ok"), "{out}");
    let (code, out, err) = cli(&["lb", "set-backends", "front", "--backend", "10.9.1.12:9000"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = cli(&["lb", "set-backends", "front", "--backend", "10.8.0.1:80"]);
    assert_eq!(code, 1);
    assert!(err.contains("spec.backends[0].ip"), "{err}");
    let (code, _, err) = cli(&["lb", "create", "x", "--vpc", "net", "--subnet", "app", "--port", "80", "--backend", "nope"]);
    assert_ne!(code, 0);
    assert!(err.contains("IP:PORT"), "{err}");
    // Without a site uplink there is nothing to forward from: a clear 422.
    let (code, _, err) = cli(&["portforward", "create", "ssh", "--port", "2222", "--eni", "nic", "--to-port", "22"]);
    assert_eq!(code, 1);
    assert!(err.contains("uplink"), "{err}");
    let eni_id = v["id"].as_str().unwrap().to_string();
    let (code, out, err) = cli(&["eni", "rm", "nic"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = cli(&["subnet", "rm", "app"]);
    assert_eq!(code, 1, "a subnet holding a VIP is in use");
    assert!(err.contains("load_balancer front"), "{err}");
    let (code, out, err) = cli(&["lb", "rm", "front"]);
    assert_eq!(code, 0, "{out}{err}");

    let vpc_id = d.call("GET", "/v1/vpcs/net", None).json()["id"].as_str().unwrap().to_string();
    for args in [&["subnet", "rm", "app"][..], &["sg", "rm", "web"], &["vpc", "rm", "net"]] {
        let (code, out, err) = cli(args);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
    }
    // Quick deletes in a row still remove every host object.
    let gone = |ns: String| move || (!cloudlet::net::host::netns_path(&ns).exists()).then_some(());
    d.wait_for(30, "the router namespace removed", gone(cloudlet::net::names::vpc_netns(&vpc_id)));
    d.wait_for(30, "the interface namespace removed", gone(cloudlet::net::names::eni_netns(&eni_id)));
}
