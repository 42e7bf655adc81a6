//! Privileged lane: the VPC router ruleset rendered by `net::render` is accepted by the real
//! kernel, applied atomically, and re-applying it (drift repair after a flush, or a restart)
//! leaves exactly one copy of every rule. Runs in a throwaway network namespace.

use std::process::Command;

use cloudlet::net::render::{Backend, EipMapping, IngressRule, Interface, LoadBalancer, NatGateway, Protocol, SecurityGroup, Source, VpcRouter, render};

/// A network namespace removed on drop, even when the test fails.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("cltest-{tag}-{}", std::process::id());
        let st = Command::new("ip").args(["netns", "add", &name]).status().expect("ip netns add");
        assert!(st.success(), "ip netns add {name}");
        Netns(name)
    }

    fn nft(&self, args: &[&str], stdin: Option<&str>) -> (bool, String) {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, "nft"]).args(args);
        c.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let mut child = c.spawn().expect("nft");
        if let Some(s) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        } else {
            drop(child.stdin.take());
        }
        let out = child.wait_with_output().unwrap();
        (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn privileged() -> bool {
    crate::common::privileged(crate::common::is_root(), "root (CAP_NET_ADMIN) to create network namespaces and load nftables rules")
}

fn model(members: usize) -> VpcRouter {
    let sg = |id: &str, ingress| SecurityGroup { id: id.into(), ingress };
    let any: ipnet::Ipv4Net = "0.0.0.0/0".parse().unwrap();
    VpcRouter {
        uplink: "clr0123456789ab".into(),
        security_groups: vec![
            sg(
                "sg-web",
                vec![
                    IngressRule { protocol: Protocol::Tcp, ports: Some((80, 80)), source: Source::Cidr(any) },
                    IngressRule { protocol: Protocol::Udp, ports: Some((5000, 5100)), source: Source::Group("sg-app".into()) },
                ],
            ),
            sg("sg-app", vec![IngressRule { protocol: Protocol::All, ports: None, source: Source::Group("sg-web".into()) }]),
        ],
        interfaces: (0..members)
            .map(|n| Interface {
                ifname: format!("clw{n:012}"),
                ip: std::net::Ipv4Addr::from(0x0a00_0004u32 + n as u32),
                security_groups: vec![if n % 2 == 0 { "sg-web" } else { "sg-app" }.into()],
            })
            .collect(),
        eips: (0..members.min(200))
            .map(|n| EipMapping { public: std::net::Ipv4Addr::from(0xcb00_7100u32 + n as u32), private: std::net::Ipv4Addr::from(0x0a00_0004u32 + n as u32) })
            .collect(),
        nat_gateways: vec![NatGateway { subnet: "10.0.0.0/16".parse().unwrap(), snat_to: "169.254.100.2".parse().unwrap() }],
        port_forwards: vec![],
        load_balancers: vec![
            LoadBalancer {
                protocol: Protocol::Tcp,
                address: "10.0.1.200".parse().unwrap(),
                port: 80,
                public: false,
                backends: (0..3).map(|n| Backend { ip: std::net::Ipv4Addr::from(0x0a00_0004u32 + n), port: 8080, weight: n + 1 }).collect(),
                affinity: false,
                seed: 0,
            },
            LoadBalancer {
                protocol: Protocol::Udp,
                address: "203.0.113.9".parse().unwrap(),
                port: 53,
                public: true,
                backends: vec![Backend { ip: "10.0.0.4".parse().unwrap(), port: 5353, weight: 1 }],
                affinity: true,
                seed: 99,
            },
        ],
        has_uplink: true,
    }
}

fn rule_count(ns: &Netns) -> usize {
    let (ok, out) = ns.nft(&["-j", "list", "table", "inet", "cloudlet"], None);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["nftables"].as_array().unwrap().iter().filter(|o| o.get("rule").is_some()).count()
}

#[test]
fn rendered_rulesets_apply_atomically_and_idempotently() {
    if !privileged() {
        return;
    }
    let ns = Netns::new("render");
    let m = model(500);
    let doc = render(&m).unwrap().to_string();
    let (ok, out) = ns.nft(&["-j", "-f", "-"], Some(&doc));
    assert!(ok, "the kernel refused the rendered ruleset: {out}");
    // forward: 4 rules + 2 egress rules; each interface chain: its groups' rules + drop; nat: 2 +
    // 1 NAT gateway + 2 load balancer listeners.
    let per_if: usize = m.interfaces.iter().map(|i| if i.security_groups[0] == "sg-web" { 3 } else { 2 }).sum();
    let expected = 6 + per_if + 5;
    assert_eq!(rule_count(&ns), expected);
    // Re-applying replaces, never duplicates.
    let (ok, out) = ns.nft(&["-j", "-f", "-"], Some(&doc));
    assert!(ok, "{out}");
    assert_eq!(rule_count(&ns), expected);
    // After someone flushes everything, applying again restores exactly the same table.
    let (ok, out) = ns.nft(&["flush", "ruleset"], None);
    assert!(ok, "{out}");
    let (ok, out) = ns.nft(&["-j", "-f", "-"], Some(&doc));
    assert!(ok, "{out}");
    assert_eq!(rule_count(&ns), expected);
    // The load balancer maps are in the kernel as rendered: weights as ranges, affinity by jhash.
    let (ok, out) = ns.nft(&["list", "chain", "inet", "cloudlet", "prerouting"], None);
    assert!(ok && out.contains("numgen random mod 6 map { 0 : 10.0.0.4 . 8080, 1-2 : 10.0.0.5 . 8080, 3-5 : 10.0.0.6 . 8080 }"), "{out}");
    assert!(out.contains("jhash ip saddr mod 1 seed 0x63"), "{out}");
    // Set membership is in the kernel.
    let (ok, out) = ns.nft(&["list", "set", "inet", "cloudlet", "sg_web"], None);
    assert!(ok && out.contains("10.0.0.4"), "{out}");
}
