//! Privileged lane: the site uplink, NAT gateways and elastic IPs, with an "internet" namespace
//! on the uplink side whose echo server reports the source address it sees.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use common::{Daemon, NetnsGuard, create, fetch_identity, ready_netns, serve_identity, serve_peer};
use serde_json::json;

#[test]
fn nat_gateways_and_elastic_ips_through_the_uplink() {
    if !common::privileged(common::is_root(), "root (CAP_NET_ADMIN, CAP_SYS_ADMIN) for namespaces, veth and nftables") {
        return;
    }
    let net = common::internet("");
    let (inet_path, stop, tmp) = (net.inet_path.clone(), Arc::new(AtomicBool::new(false)), tempfile::tempdir().unwrap());
    let _topology = NetnsGuard { data: None, extra: vec![net.up.clone(), net.inet.clone()], stop: stop.clone() };
    serve_peer(&inet_path, 9000, stop.clone());
    let cfg = common::uplink_config(tmp.path(), &net);
    let d = Daemon::start_with(&["--config", cfg.to_str().unwrap()]);
    // Declared after the daemon, so it runs before the daemon's data dir is removed.
    let _owned = NetnsGuard { data: Some(d.dir.clone()), extra: vec![], stop: stop.clone() };

    create(&d, "/v1/vpcs", json!({"name": "prod", "spec": {"cidr": "10.0.0.0/16"}}));
    create(&d, "/v1/subnets", json!({"name": "web", "spec": {"vpc": "prod", "cidr": "10.0.1.0/24"}}));
    create(
        &d,
        "/v1/security-groups",
        json!({"name": "open", "spec": {"vpc": "prod", "ingress": [
        {"protocol": "tcp", "source_cidr": "0.0.0.0/0"}]}}),
    );
    for n in ["a", "b"] {
        create(&d, "/v1/network-interfaces", json!({"name": n, "spec": {"subnet": "web", "security_groups": ["open"]}}));
    }
    let (a, b) = (ready_netns(&d, "a").0, ready_netns(&d, "b").0);
    serve_identity(&b, 8080, "B", stop.clone());

    // No NAT gateway and no EIP: private sources never leave.
    assert_eq!(fetch_identity(&a, "198.51.100.2", 9000), None, "egress without a NAT gateway must be dropped");
    // A NAT gateway through the uplink address.
    create(&d, "/v1/nat-gateways", json!({"name": "natgw", "spec": {"subnet": "web"}}));
    let seen = d.wait_for(30, "egress through the NAT gateway", || fetch_identity(&a, "198.51.100.2", 9000));
    assert_eq!(seen, "198.51.100.1", "the NAT gateway translates to the uplink address");
    let r = d.call("POST", "/v1/nat-gateways", Some(json!({"name": "second", "spec": {"subnet": "web"}})));
    assert_eq!(r.status, 409, "one NAT gateway per subnet: {}", r.body);

    // An elastic IP: reachable from the internet, reaching exactly its workload; its egress
    // leaves from the EIP.
    let e1 = create(&d, "/v1/eips", json!({"name": "e1", "spec": {"network_interface": "b"}}));
    let e1_ip = e1["spec"]["public_ip"].as_str().unwrap().to_string();
    assert_eq!(e1_ip, "203.0.113.1");
    let got = d.wait_for(30, "inbound through the EIP", || fetch_identity(&inet_path, &e1_ip, 8080));
    assert_eq!(got, "B");
    assert_eq!(fetch_identity(&b, "198.51.100.2", 9000).as_deref(), Some(e1_ip.as_str()), "b leaves from its EIP");
    assert_eq!(fetch_identity(&a, "198.51.100.2", 9000).as_deref(), Some("198.51.100.1"), "a still leaves via the NAT gateway");
    // Associating a second EIP with the same interface is refused.
    create(&d, "/v1/eips", json!({"name": "e2"}));
    let r = d.call("PATCH", "/v1/eips/e2", Some(json!({"spec": {"network_interface": "b"}})));
    assert_eq!(r.status, 409, "{}", r.body);
    let r = d.call("DELETE", "/v1/eips/e1", None);
    assert_eq!(r.status, 409, "an associated EIP is not released: {}", r.body);
    let r = d.call("DELETE", "/v1/network-interfaces/b", None);
    assert_eq!(r.status, 409, "an interface with an EIP is not deleted: {}", r.body);
    let r = d.call("DELETE", "/v1/subnets/web", None);
    assert_eq!(r.status, 409, "a subnet with a NAT gateway or interfaces is not deleted: {}", r.body);
    // Disassociate: the EIP no longer reaches b.
    let r = d.call("PATCH", "/v1/eips/e1", Some(json!({"spec": {"network_interface": null}})));
    assert_eq!(r.status, 200, "{}", r.body);
    d.wait_for(30, "EIP unreachable after disassociation", || fetch_identity(&inet_path, &e1_ip, 8080).is_none().then_some(()));
    assert_eq!(fetch_identity(&b, "198.51.100.2", 9000).as_deref(), Some("198.51.100.1"));

    // A NAT gateway through a chosen EIP.
    assert_eq!(d.call("DELETE", "/v1/nat-gateways/natgw", None).status, 204);
    create(&d, "/v1/nat-gateways", json!({"name": "natgw2", "spec": {"subnet": "web", "eip": "e2"}}));
    let seen = d.wait_for(30, "egress through the EIP NAT gateway", || fetch_identity(&a, "198.51.100.2", 9000).filter(|s| s == "203.0.113.2"));
    assert_eq!(seen, "203.0.113.2");
    assert_eq!(d.call("DELETE", "/v1/eips/e2", None).status, 409, "used by a NAT gateway");
    let r = d.call("PATCH", "/v1/eips/e2", Some(json!({"spec": {"network_interface": "a"}})));
    assert_eq!(r.status, 409, "{}", r.body);

    // The pool (/28: 14 addresses) runs out with a clear 409.
    let mut made = 2;
    loop {
        let r = d.call("POST", "/v1/eips", Some(json!({"name": format!("x{made}")})));
        if r.status == 409 {
            assert!(r.body.contains("exhausted"), "{}", r.body);
            break;
        }
        assert_eq!(r.status, 201, "{}", r.body);
        made += 1;
        assert!(made <= 14, "the pool should be exhausted by now");
    }
    assert_eq!(made, 14);
}
