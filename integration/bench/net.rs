//! VPC networking benchmark (issue 3), run as root: `cargo bench --bench net`.
//!
//! In one run, with iperf3 (Debian) between network namespaces:
//! 1. TCP throughput from an "internet" namespace to a workload through its EIP (uplink routing,
//!    transit link, VPC router DNAT, security group) vs a plain veth pair with no rules;
//! 2. the same EIP path with 10,000 security group rules and 10,000 group members vs with none;
//! 3. time to render and apply a change to a VPC router that holds 1,000 EIPs.
//!
//! Prints a Markdown table; no figure is asserted.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Instant;

use cloudlet::net::host::{self, Attachment, Transit};
use cloudlet::net::render::{EipMapping, IngressRule, Interface, Protocol, SecurityGroup, Source, VpcRouter, render, render_uplink};

const SECS: &str = "5";

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("spawn");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn ns(name: &str) -> String {
    let n = format!("clbench-{name}-{}", std::process::id());
    host::ensure_netns(&n, None).expect("netns");
    n
}

/// iperf3 from `client` to `server_ip` (server running in `server`); Gbit/s received.
fn iperf(server: &str, client: &str, server_ip: &str) -> f64 {
    let mut srv = Command::new("ip").args(["netns", "exec", server, "iperf3", "-s", "-1"]).spawn().expect("iperf3 -s");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let out = Command::new("ip").args(["netns", "exec", client, "iperf3", "-c", server_ip, "-t", SECS, "-J"]).output().expect("iperf3 -c");
    let _ = srv.wait();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("iperf3 JSON");
    v["end"]["sum_received"]["bits_per_second"].as_f64().expect("bits_per_second") / 1e9
}

/// Rounds of each throughput measurement.
const ROUNDS: usize = 3;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = host::delete_netns(n);
        }
    }
}

fn router(eips: usize, rules: usize, members: usize, ifname: &str) -> VpcRouter {
    let any: ipnet::Ipv4Net = "0.0.0.0/0".parse().unwrap();
    let mut big: Vec<IngressRule> = (0..rules)
        .map(|i| IngressRule {
            protocol: Protocol::Tcp,
            ports: Some((10_000 + (i % 50_000) as u16, 10_000 + (i % 50_000) as u16)),
            source: if i % 2 == 0 { Source::Cidr(any) } else { Source::Group("sg-crowd".into()) },
        })
        .collect();
    big.push(IngressRule { protocol: Protocol::Tcp, ports: Some((5201, 5201)), source: Source::Cidr(any) });
    let mut interfaces = vec![Interface { ifname: ifname.into(), ip: Ipv4Addr::new(10, 0, 1, 4), security_groups: vec!["sg-big".into()] }];
    interfaces.extend((0..members).map(|i| Interface {
        ifname: format!("clwfake{i:08}"),
        ip: Ipv4Addr::from(0x0a01_0000u32 + i as u32),
        security_groups: vec!["sg-crowd".into()],
    }));
    let mut eip_list = vec![EipMapping { public: Ipv4Addr::new(203, 0, 113, 1), private: Ipv4Addr::new(10, 0, 1, 4) }];
    eip_list.extend((1..eips).map(|i| EipMapping { public: Ipv4Addr::from(0xc633_0000u32 + i as u32), private: Ipv4Addr::from(0x0a02_0000u32 + i as u32) }));
    VpcRouter {
        uplink: "clrbench0000000".into(),
        security_groups: vec![
            SecurityGroup { id: "sg-big".into(), ingress: big },
            SecurityGroup { id: "sg-crowd".into(), ingress: vec![IngressRule { protocol: Protocol::Udp, ports: Some((53, 53)), source: Source::Cidr(any) }] },
        ],
        interfaces,
        eips: eip_list,
        has_uplink: true,
        ..Default::default()
    }
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("the network benchmark needs root (namespaces, veth, nftables)");
        std::process::exit(2);
    }
    let (a, b, inet, up, vpc, wl) = (ns("a"), ns("b"), ns("inet"), ns("up"), ns("vpc"), ns("wl"));
    let _c = Cleanup(vec![a.clone(), b.clone(), inet.clone(), up.clone(), vpc.clone(), wl.clone()]);

    // Peer: a plain veth pair, no rules.
    sh(&["ip", "netns", "exec", &a, "ip", "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &b]);
    sh(&["ip", "netns", "exec", &a, "ip", "addr", "add", "10.99.0.1/24", "dev", "va"]);
    sh(&["ip", "netns", "exec", &a, "ip", "link", "set", "va", "up"]);
    sh(&["ip", "netns", "exec", &b, "ip", "addr", "add", "10.99.0.2/24", "dev", "vb"]);
    sh(&["ip", "netns", "exec", &b, "ip", "link", "set", "vb", "up"]);

    // The EIP path: internet -> uplink -> transit -> VPC router (DNAT, SG) -> workload.
    sh(&["ip", "netns", "exec", &up, "ip", "link", "add", "up0", "type", "veth", "peer", "name", "inet0", "netns", &inet]);
    sh(&["ip", "netns", "exec", &up, "ip", "addr", "add", "198.51.100.1/24", "dev", "up0"]);
    sh(&["ip", "netns", "exec", &up, "ip", "link", "set", "up0", "up"]);
    sh(&["ip", "netns", "exec", &inet, "ip", "addr", "add", "198.51.100.2/24", "dev", "inet0"]);
    sh(&["ip", "netns", "exec", &inet, "ip", "link", "set", "inet0", "up"]);
    sh(&["ip", "netns", "exec", &inet, "ip", "route", "add", "203.0.113.0/24", "via", "198.51.100.1"]);
    host::ensure_router(&vpc).unwrap();
    let wl_if = "clwbench0000001".to_string();
    host::attach(&Attachment {
        router_netns: vpc.clone(),
        router_if: wl_if.clone(),
        workload_netns: wl.clone(),
        workload_if: "eth0".into(),
        ip: Ipv4Addr::new(10, 0, 1, 4),
        prefix: 24,
        gateway: Ipv4Addr::new(10, 0, 1, 1),
    })
    .unwrap();
    let t = Transit {
        uplink_netns: up.clone(),
        router_netns: vpc.clone(),
        host_if: "clubench0000000".into(),
        vpc_if: "clrbench0000000".into(),
        host_ip: Ipv4Addr::new(169, 254, 128, 1),
        vpc_ip: Ipv4Addr::new(169, 254, 128, 2),
        prefix: 30,
    };
    host::ensure_transit(&t, "up0").unwrap();
    host::sync_uplink_routes(&up, vec![(Ipv4Addr::new(203, 0, 113, 1), t.vpc_ip)]).unwrap();
    host::apply_ruleset(&up, &render_uplink("up0", "169.254.128.0/17".parse().unwrap(), &[]).unwrap()).unwrap();

    // Rounds interleave the three paths, so drift in the host's load hits them alike; each
    // figure is the median of its rounds.
    let (small, big) = (router(1, 0, 0, &wl_if), router(1, 10_000, 10_000, &wl_if));
    let (mut plain, mut eip, mut eip_big, mut big_apply) = (vec![], vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        plain.push(iperf(&b, &a, "10.99.0.2"));
        host::apply_ruleset(&vpc, &render(&small).unwrap()).unwrap();
        eip.push(iperf(&wl, &inet, "203.0.113.1"));
        let started = Instant::now();
        host::apply_ruleset(&vpc, &render(&big).unwrap()).unwrap();
        big_apply.push(started.elapsed().as_secs_f64());
        eip_big.push(iperf(&wl, &inet, "203.0.113.1"));
    }
    eprintln!("rounds (Gbit/s): plain {plain:.2?}, EIP {eip:.2?}, EIP with 10,000 rules {eip_big:.2?}");
    let (plain, eip, eip_big, big_apply) = (median(plain), median(eip), median(eip_big), median(big_apply));

    // Applying a change with 1,000 EIPs present (the whole table is replaced atomically).
    let mut m = router(1_000, 0, 0, &wl_if);
    host::apply_ruleset(&vpc, &render(&m).unwrap()).unwrap();
    m.eips.push(EipMapping { public: Ipv4Addr::new(203, 0, 113, 9), private: Ipv4Addr::new(10, 0, 1, 9) });
    let started = Instant::now();
    host::apply_ruleset(&vpc, &render(&m).unwrap()).unwrap();
    let change = started.elapsed();

    println!("| measure | value | peer | ratio |");
    println!("|---|---|---|---|");
    println!("| TCP through the EIP path vs plain veth (Gbit/s) | {eip:.2} | {plain:.2} | {:.2} |", eip / plain);
    println!("| EIP path with 10,000 rules + 10,000 members vs none (Gbit/s) | {eip_big:.2} | {eip:.2} | {:.2} |", eip_big / eip);
    println!("| apply a change with 1,000 EIPs (s) | {:.3} | goal 1.0 | {:.2} |", change.as_secs_f64(), change.as_secs_f64());
    println!("| apply of 10,000 rules + 10,000 members over a small table (s) | {big_apply:.3} | | |");
}
