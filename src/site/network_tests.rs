//! The VPC reconciler's decisions, through the recording [`NetHost`] fake: no root, no kernel
//! state. What the kernel then does with each call is tested by the integration tests (real
//! namespaces, nftables and traffic).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::net::names::{self, Role};
use crate::net::nethost::{NetCall, RecordingNetHost};
use crate::site::net_model::{EipSpec, NetworkInterfaceSpec, SecurityGroupSpec, SubnetSpec, VpcSpec};

struct Fixture {
    _dir: tempfile::TempDir,
    site: Site,
    host: Arc<RecordingNetHost>,
    p: ProjectCtx,
}

fn fixture(uplink: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = crate::config::Config { data_dir: dir.path().to_path_buf(), ..Default::default() };
    if uplink {
        cfg.network.uplink_netns = "up".into();
        cfg.network.uplink = "up0".into();
        cfg.network.public_cidr = "203.0.113.0/28".into();
    }
    let db = crate::state::Db::open(&dir.path().join("cloudlet.db")).unwrap();
    let (engines, rec) = crate::site::engines::Engines::recording(&cfg).unwrap();
    let host = rec.net;
    let site = Site::new(db, cfg, "n1".into(), engines);
    site.create_project("p", &BTreeMap::new(), json!({})).unwrap();
    let p = site.project_by_name("p").unwrap();
    Fixture { _dir: dir, site, host, p }
}

/// A VPC 10.0.0.0/16 with subnet 10.0.1.0/24, a group opening TCP 80 and one interface in it.
/// Returns (vpc id, interface id).
fn one_interface(f: &Fixture) -> (String, String) {
    let none = BTreeMap::new();
    let vpc = f.site.create_resource::<VpcSpec>(&f.p, "v", &none, json!({"cidr": "10.0.0.0/16"})).unwrap();
    f.site.create_resource::<SubnetSpec>(&f.p, "s", &none, json!({"vpc": "v", "cidr": "10.0.1.0/24"})).unwrap();
    f.site
        .create_resource::<SecurityGroupSpec>(
            &f.p,
            "web",
            &none,
            json!({"vpc": "v", "ingress": [{"protocol": "tcp", "ports": "80", "source_cidr": "0.0.0.0/0"}]}),
        )
        .unwrap();
    let eni = f.site.create_resource::<NetworkInterfaceSpec>(&f.p, "e", &none, json!({"subnet": "s", "security_groups": ["web"]})).unwrap();
    (vpc.id, eni.id)
}

fn status(f: &Fixture, kind: Kind, id: &str) -> Status {
    serde_json::from_str(f.site.get(kind, Some(&f.p), id).unwrap().status.get()).unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

#[test]
fn a_pass_makes_the_router_the_port_the_lease_and_the_ruleset() {
    let f = fixture(false);
    let (vpc, eni) = one_interface(&f);
    let router = names::vpc_netns(&vpc);
    let port = names::ifname(Role::Workload, &eni);
    reconcile_vpc(&f.site, &vpc).unwrap();
    let calls = f.host.take();
    assert_eq!(calls[0], NetCall::EnsureRouter(router.clone()));
    assert!(calls.contains(&NetCall::EnsureNetns(names::eni_netns(&eni))), "{calls:#?}");
    assert!(calls.contains(&NetCall::Attach {
        router_netns: router.clone(),
        router_if: port.clone(),
        workload_netns: names::eni_netns(&eni),
        ip: ip("10.0.1.4"),
        prefix: 24,
        gateway: ip("10.0.1.1"),
    }));
    let lease = calls.iter().find_map(|c| match c {
        NetCall::DhcpSync { netns, leases } if *netns == router => Some(leases.clone()),
        _ => None,
    });
    let lease = lease.expect("the router's DHCP server was synced");
    assert_eq!(lease.len(), 1);
    assert_eq!((lease[0].0.as_str(), lease[0].1.ip, lease[0].1.gateway), (port.as_str(), ip("10.0.1.4"), ip("10.0.1.1")));
    assert!(calls.contains(&NetCall::SyncLocalAddresses { netns: router.clone(), addrs: vec![ip("10.0.1.1")] }));
    let ruleset = calls.iter().rev().find_map(|c| match c {
        NetCall::ApplyRuleset { netns, ruleset } if *netns == router => Some(ruleset.to_string()),
        _ => None,
    });
    let ruleset = ruleset.expect("the router's ruleset was applied");
    assert!(ruleset.contains("10.0.1.4") && ruleset.contains(&port), "the ruleset names the port and its address: {ruleset}");
    assert!(!calls.iter().any(|c| matches!(c, NetCall::EnsureTransit { .. })), "no uplink configured, no transit link");
    assert_eq!(status(&f, Kind::NetworkInterface, &eni).phase, "Ready");
    let vpc_st = status(&f, Kind::Vpc, &vpc);
    assert_eq!(vpc_st.extra["attached"], json!([eni]));
}

#[test]
fn a_second_pass_removes_nothing_and_a_deleted_interface_is_detached_and_its_namespace_removed() {
    let f = fixture(false);
    let (vpc, eni) = one_interface(&f);
    let router = names::vpc_netns(&vpc);
    reconcile_vpc(&f.site, &vpc).unwrap();
    f.host.take();
    reconcile_vpc(&f.site, &vpc).unwrap();
    let again = f.host.take();
    assert!(!again.iter().any(|c| matches!(c, NetCall::Detach { .. } | NetCall::DeleteNetns(_))), "{again:#?}");

    f.site.delete_resource::<NetworkInterfaceSpec>(&f.p, &eni).unwrap();
    reconcile_vpc(&f.site, &vpc).unwrap();
    let calls = f.host.take();
    assert!(calls.contains(&NetCall::Detach { router_netns: router.clone(), router_if: names::ifname(Role::Workload, &eni) }), "{calls:#?}");
    assert!(calls.contains(&NetCall::DeleteNetns(names::eni_netns(&eni))));
    assert!(calls.contains(&NetCall::DhcpSync { netns: router.clone(), leases: vec![] }));
    assert_eq!(f.host.namespaces(), [router].into_iter().collect(), "only the router namespace is left");
}

#[test]
fn a_deleted_vpc_stops_its_dhcp_server_and_removes_its_router() {
    let f = fixture(false);
    let vpc = f.site.create_resource::<VpcSpec>(&f.p, "v", &BTreeMap::new(), json!({"cidr": "10.0.0.0/16"})).unwrap().id;
    reconcile_vpc(&f.site, &vpc).unwrap();
    f.site.delete_resource::<VpcSpec>(&f.p, &vpc).unwrap();
    f.host.take();
    reconcile_vpc(&f.site, &vpc).unwrap();
    let router = names::vpc_netns(&vpc);
    assert_eq!(f.host.take(), vec![NetCall::DhcpStop(router.clone()), NetCall::DeleteNetns(router)]);
    assert!(f.host.namespaces().is_empty());
}

#[test]
fn with_an_uplink_an_eip_gets_its_route_through_the_transit_link_and_its_cap() {
    let f = fixture(true);
    let (vpc, _) = one_interface(&f);
    let eip = f.site.create_resource::<EipSpec>(&f.p, "ip1", &BTreeMap::new(), json!({"network_interface": "e", "bandwidth_mbps": 50})).unwrap();
    let public: Ipv4Addr = serde_json::from_str::<serde_json::Value>(eip.spec.get()).unwrap()["public_ip"].as_str().unwrap().parse().unwrap();
    reconcile_vpc(&f.site, &vpc).unwrap();
    let calls = f.host.take();
    let (vpc_if, vpc_ip) = calls
        .iter()
        .find_map(|c| match c {
            NetCall::EnsureTransit { vpc_if, vpc_ip, uplink_if, .. } if uplink_if == "up0" => Some((vpc_if.clone(), *vpc_ip)),
            _ => None,
        })
        .expect("a transit link to the uplink");
    assert_eq!(vpc_if, names::ifname(Role::UplinkVpc, &vpc));
    assert!(calls.contains(&NetCall::SyncUplinkRoutes { netns: "up".into(), routes: vec![(public, vpc_ip)] }), "{calls:#?}");
    let cap = crate::net::services::Cap { ip: public, mbit: 50 };
    assert!(calls.contains(&NetCall::SyncCaps { netns: names::vpc_netns(&vpc), dev: vpc_if, dir: crate::net::services::Direction::Source, caps: vec![cap] }));
    assert!(calls.iter().any(|c| matches!(c, NetCall::ApplyRuleset { netns, ruleset } if netns == "up" && ruleset.to_string().contains("masquerade"))));
}

#[test]
fn a_failed_host_step_fails_the_pass_and_the_vpc_is_not_marked_reconciled() {
    let f = fixture(false);
    let (vpc, _) = one_interface(&f);
    f.host.fail("attach");
    assert!(reconcile_vpc(&f.site, &vpc).is_err());
    let calls = f.host.take();
    assert!(!calls.iter().any(|c| matches!(c, NetCall::ApplyRuleset { .. })), "no ruleset after a failed attach: {calls:#?}");
    assert_ne!(status(&f, Kind::Vpc, &vpc).phase, "Ready");
}

#[test]
fn a_kind_in_use_is_not_deleted_and_names_its_user() {
    let f = fixture(false);
    let (vpc, eni) = one_interface(&f);
    let none = BTreeMap::new();
    f.site
        .create_resource::<SecurityGroupSpec>(&f.p, "db", &none, json!({"vpc": "v", "ingress": [{"protocol": "tcp", "ports": "5432", "source_group": "web"}]}))
        .unwrap();
    let refused = |r: Result<Resource, SiteError>| match r {
        Err(SiteError::Conflict(m)) => m,
        other => panic!("expected 409, got {other:?}"),
    };
    assert!(refused(f.site.delete_resource::<VpcSpec>(&f.p, &vpc)).contains("subnet s"));
    assert!(refused(f.site.delete_resource::<SubnetSpec>(&f.p, "s")).contains("network_interface e"));
    assert!(refused(f.site.delete_resource::<SecurityGroupSpec>(&f.p, "web")).contains("network_interface e"));
    f.site.delete_resource::<NetworkInterfaceSpec>(&f.p, &eni).unwrap();
    assert!(refused(f.site.delete_resource::<SecurityGroupSpec>(&f.p, "web")).contains("rule source of db"));
    // A kind is a type: a subnet's name does not resolve as a VPC.
    assert!(matches!(f.site.delete_resource::<VpcSpec>(&f.p, "s"), Err(SiteError::NotFound { .. })));
    f.site.delete_resource::<SecurityGroupSpec>(&f.p, "db").unwrap();
    f.site.delete_resource::<SecurityGroupSpec>(&f.p, "web").unwrap();
    f.site.delete_resource::<SubnetSpec>(&f.p, "s").unwrap();
    f.site.delete_resource::<VpcSpec>(&f.p, &vpc).unwrap();
}
