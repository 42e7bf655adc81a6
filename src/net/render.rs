//! Rendering a VPC router's nftables ruleset from the network model.
//!
//! One table, `inet cloudlet`, per VPC namespace. The whole table is replaced in one nftables
//! transaction (`add table; delete table; add table; ...` in one `nft -j -f` batch), so a change is
//! atomic and re-applying after a manual flush restores it exactly (drift repair).
//!
//! Security groups are filtered at the VPC router: every workload interface is routed (a /32 per
//! workload, in Calico's manner, with proxy ARP on the router side), so traffic between two
//! workloads of the same subnet also crosses the router's `forward` hook, where conntrack makes
//! the groups stateful. Group membership is an nft set per group, and the per-interface chains are
//! reached through a verdict map keyed by interface name (anonymous, rebuilt with the table), so
//! lookups stay constant-time with thousands of members and interfaces.
//!
//! JSON schema: `libnftables-json(5)`; validated by deserializing into the `nftables` crate's
//! schema.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde_json::{Value, json};

use super::names::NFT_TABLE;

/// A transport protocol of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    /// Any protocol.
    All,
}

/// Where an ingress rule's traffic may come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Addresses in a CIDR (`0.0.0.0/0`: anywhere).
    Cidr(Ipv4Net),
    /// Members of a security group (by id).
    Group(String),
}

/// One ingress rule of a security group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressRule {
    pub protocol: Protocol,
    /// Inclusive port range for TCP/UDP; `None` = every port.
    pub ports: Option<(u16, u16)>,
    pub source: Source,
}

/// A security group: stateful, default deny inbound, allow outbound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityGroup {
    pub id: String,
    pub ingress: Vec<IngressRule>,
}

/// A workload interface on the VPC router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Router-side interface name (`names::ifname`).
    pub ifname: String,
    pub ip: Ipv4Addr,
    /// Ids of its security groups.
    pub security_groups: Vec<String>,
}

/// An elastic IP associated with a private address (1:1 NAT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EipMapping {
    pub public: Ipv4Addr,
    pub private: Ipv4Addr,
}

/// Egress SNAT for a subnet (NAT gateway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatGateway {
    pub subnet: Ipv4Net,
    pub snat_to: Ipv4Addr,
}

/// A port forward from a public address and port to a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortForward {
    pub protocol: Protocol,
    pub public: Ipv4Addr,
    pub public_port: u16,
    pub private: Ipv4Addr,
    pub private_port: u16,
}

/// A load balancer backend: where a share of the listener's connections goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub ip: Ipv4Addr,
    pub port: u16,
    /// Relative share (1-100).
    pub weight: u32,
}

/// An L4 load balancer listener in the router: new flows to `address:port` are DNATed to one
/// backend, picked by `numgen random` (or by `jhash` of the source address with affinity) over
/// the sum of the weights, through an anonymous map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBalancer {
    pub protocol: Protocol,
    pub address: Ipv4Addr,
    pub port: u16,
    /// An EIP listener takes traffic from the uplink only; an internal VIP from anywhere.
    pub public: bool,
    /// The backends in service (an empty list renders no rule).
    pub backends: Vec<Backend>,
    /// Source affinity: the same client address always lands on the same backend.
    pub affinity: bool,
    /// Seed of the affinity hash.
    pub seed: u32,
}

/// Everything the VPC router's ruleset is rendered from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VpcRouter {
    /// The VPC end of the uplink veth.
    pub uplink: String,
    pub security_groups: Vec<SecurityGroup>,
    pub interfaces: Vec<Interface>,
    pub eips: Vec<EipMapping>,
    pub nat_gateways: Vec<NatGateway>,
    pub port_forwards: Vec<PortForward>,
    pub load_balancers: Vec<LoadBalancer>,
    /// Whether traffic may leave through the uplink at all (a site uplink is configured).
    pub has_uplink: bool,
}

/// Rendering failures (a model that references what does not exist).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// An interface or rule names a security group the model lacks.
    #[error("security group {0} is not in the model")]
    UnknownGroup(String),
    /// The rendered JSON does not fit the nftables schema (a bug).
    #[error("rendered ruleset does not match the nftables schema: {0}")]
    Schema(String),
}

/// The membership set of a security group: its id, lowercase, `-` as `_` (`sg_01jd…`).
fn set_name(sg: &str) -> String {
    sg.to_ascii_lowercase().replace('-', "_")
}

fn obj(kind: &str, mut body: Value) -> Value {
    body["family"] = json!("inet");
    body["table"] = json!(NFT_TABLE);
    json!({"add": {kind: body}})
}

fn rule(chain: &str, expr: Vec<Value>) -> Value {
    obj("rule", json!({"chain": chain, "expr": expr}))
}

fn eq(left: Value, right: Value) -> Value {
    json!({"match": {"op": "==", "left": left, "right": right}})
}

fn meta(key: &str) -> Value {
    json!({"meta": {"key": key}})
}

fn payload(protocol: &str, field: &str) -> Value {
    json!({"payload": {"protocol": protocol, "field": field}})
}

fn proto_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Icmp => "icmp",
        Protocol::All => "",
    }
}

fn ingress_exprs(r: &IngressRule) -> Vec<Value> {
    let mut e = Vec::new();
    match &r.source {
        Source::Cidr(c) if c.prefix_len() == 0 => {}
        Source::Cidr(c) => e.push(eq(payload("ip", "saddr"), json!({"prefix": {"addr": c.network().to_string(), "len": c.prefix_len()}}))),
        Source::Group(g) => e.push(eq(payload("ip", "saddr"), json!(format!("@{}", set_name(g))))),
    }
    match r.protocol {
        Protocol::All => {}
        p => e.push(eq(meta("l4proto"), json!(proto_name(p)))),
    }
    if let (Protocol::Tcp | Protocol::Udp, Some((lo, hi))) = (r.protocol, r.ports) {
        let right = if lo == hi { json!(lo) } else { json!({"range": [lo, hi]}) };
        e.push(eq(payload(proto_name(r.protocol), "dport"), right));
    }
    e.push(json!({"accept": null}));
    e
}

/// Render the router ruleset as libnftables JSON (`{"nftables": [...]}`), replacing the table.
pub fn render(m: &VpcRouter) -> Result<Value, RenderError> {
    let known = |g: &str| m.security_groups.iter().any(|s| s.id == g);
    for i in &m.interfaces {
        if let Some(g) = i.security_groups.iter().find(|g| !known(g)) {
            return Err(RenderError::UnknownGroup(g.clone()));
        }
    }
    for sg in &m.security_groups {
        for r in &sg.ingress {
            if let Source::Group(g) = &r.source
                && !known(g)
            {
                return Err(RenderError::UnknownGroup(g.clone()));
            }
        }
    }
    let table = json!({"family": "inet", "name": NFT_TABLE});
    let mut out = vec![json!({"add": {"table": table}}), json!({"delete": {"table": table}}), json!({"add": {"table": table}})];

    // Membership sets, one per security group.
    for sg in &m.security_groups {
        let members: Vec<String> = m.interfaces.iter().filter(|i| i.security_groups.contains(&sg.id)).map(|i| i.ip.to_string()).collect();
        let mut set = json!({"name": set_name(&sg.id), "type": "ipv4_addr"});
        if !members.is_empty() {
            set["elem"] = json!(members);
        }
        out.push(obj("set", set));
    }

    // Filter: stateful, then each workload's inbound chain through a verdict map.
    out.push(obj("chain", json!({"name": "forward", "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"})));
    // Chains must exist before a rule jumps to them.
    for i in &m.interfaces {
        out.push(obj("chain", json!({"name": format!("in_{}", i.ifname)})));
    }
    out.push(rule(
        "forward",
        vec![json!({"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}}), json!({"accept": null})],
    ));
    out.push(rule("forward", vec![json!({"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "invalid"}}), json!({"drop": null})]));
    if m.has_uplink {
        // Only subnets behind a NAT gateway and addresses with an EIP leave through the uplink;
        // anything else would leak private source addresses.
        let mut egress: Vec<Ipv4Net> = m.nat_gateways.iter().map(|n| n.subnet).collect();
        for e in &m.eips {
            if !egress.iter().any(|n| n.contains(&e.private)) {
                egress.push(Ipv4Net::from(e.private));
            }
        }
        let mut set = json!({"name": "egress", "type": "ipv4_addr", "flags": ["interval"]});
        if !egress.is_empty() {
            set["elem"] = json!(egress.iter().map(|n| json!({"prefix": {"addr": n.network().to_string(), "len": n.prefix_len()}})).collect::<Vec<_>>());
        }
        out.push(obj("set", set));
        out.push(rule("forward", vec![eq(meta("oifname"), json!(m.uplink)), eq(payload("ip", "saddr"), json!("@egress")), json!({"accept": null})]));
        out.push(rule("forward", vec![eq(meta("oifname"), json!(m.uplink)), json!({"drop": null})]));
    }
    if !m.interfaces.is_empty() {
        // An anonymous verdict map: a hash lookup, rebuilt with the table on every change.
        let entries: Vec<Value> = m.interfaces.iter().map(|i| json!([i.ifname, {"jump": {"target": format!("in_{}", i.ifname)}}])).collect();
        out.push(rule("forward", vec![json!({"vmap": {"key": meta("oifname"), "data": {"set": entries}}})]));
    }
    // A workload port the map does not know yet (attached before its ruleset, or not ours to
    // allow) gets nothing: default deny holds even between attach and apply.
    out.push(rule("forward", vec![eq(meta("oifname"), json!("clw*")), json!({"drop": null})]));
    for i in &m.interfaces {
        let chain = format!("in_{}", i.ifname);
        for sg in m.security_groups.iter().filter(|s| i.security_groups.contains(&s.id)) {
            for r in &sg.ingress {
                out.push(rule(&chain, ingress_exprs(r)));
            }
        }
        out.push(rule(&chain, vec![json!({"drop": null})]));
    }

    // NAT: elastic IPs 1:1, port forwards, NAT gateways.
    out.push(obj("chain", json!({"name": "prerouting", "type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"})));
    out.push(obj("chain", json!({"name": "postrouting", "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"})));
    for pf in &m.port_forwards {
        let p = proto_name(pf.protocol);
        out.push(rule(
            "prerouting",
            vec![
                eq(meta("iifname"), json!(m.uplink)),
                eq(payload("ip", "daddr"), json!(pf.public.to_string())),
                eq(meta("l4proto"), json!(p)),
                eq(payload(p, "dport"), json!(pf.public_port)),
                json!({"dnat": {"family": "ip", "addr": pf.private.to_string(), "port": pf.private_port}}),
            ],
        ));
    }
    for lb in &m.load_balancers {
        if let Some(r) = lb_rule(&m.uplink, lb) {
            out.push(r);
        }
    }
    let mut dnat = json!({"name": "eip_dnat", "type": "ipv4_addr", "map": "ipv4_addr"});
    let mut snat = json!({"name": "eip_snat", "type": "ipv4_addr", "map": "ipv4_addr"});
    if !m.eips.is_empty() {
        dnat["elem"] = json!(m.eips.iter().map(|e| json!([e.public.to_string(), e.private.to_string()])).collect::<Vec<_>>());
        snat["elem"] = json!(m.eips.iter().map(|e| json!([e.private.to_string(), e.public.to_string()])).collect::<Vec<_>>());
    }
    out.push(obj("map", dnat));
    out.push(obj("map", snat));
    out.push(rule(
        "prerouting",
        vec![eq(meta("iifname"), json!(m.uplink)), json!({"dnat": {"family": "ip", "addr": {"map": {"key": payload("ip", "daddr"), "data": "@eip_dnat"}}}})],
    ));
    out.push(rule(
        "postrouting",
        vec![eq(meta("oifname"), json!(m.uplink)), json!({"snat": {"family": "ip", "addr": {"map": {"key": payload("ip", "saddr"), "data": "@eip_snat"}}}})],
    ));
    for n in &m.nat_gateways {
        out.push(rule(
            "postrouting",
            vec![
                eq(meta("oifname"), json!(m.uplink)),
                eq(payload("ip", "saddr"), json!({"prefix": {"addr": n.subnet.network().to_string(), "len": n.subnet.prefix_len()}})),
                json!({"snat": {"family": "ip", "addr": n.snat_to.to_string()}}),
            ],
        ));
    }
    for o in &out {
        serde_json::from_value::<nftables::schema::NfObject>(o.clone()).map_err(|e| RenderError::Schema(format!("{e}: {o}")))?;
    }
    Ok(json!({"nftables": out}))
}

/// The DNAT rule of one load balancer listener, or `None` without backends in service.
fn lb_rule(uplink: &str, lb: &LoadBalancer) -> Option<Value> {
    let total: u32 = lb.backends.iter().map(|b| b.weight.max(1)).sum();
    if total == 0 {
        return None;
    }
    let mut start = 0u32;
    let entries: Vec<Value> = lb
        .backends
        .iter()
        .map(|b| {
            let end = start + b.weight.max(1) - 1;
            let key = if start == end { json!(start) } else { json!({"range": [start, end]}) };
            start = end + 1;
            json!([key, {"concat": [b.ip.to_string(), b.port]}])
        })
        .collect();
    let pick = if lb.affinity {
        json!({"jhash": {"mod": total, "seed": lb.seed, "expr": payload("ip", "saddr")}})
    } else {
        json!({"numgen": {"mode": "random", "mod": total, "offset": 0}})
    };
    let p = proto_name(lb.protocol);
    let mut e = Vec::new();
    if lb.public {
        e.push(eq(meta("iifname"), json!(uplink)));
    }
    e.push(eq(payload("ip", "daddr"), json!(lb.address.to_string())));
    e.push(eq(meta("l4proto"), json!(p)));
    e.push(eq(payload(p, "dport"), json!(lb.port)));
    e.push(json!({"dnat": {"family": "ip", "addr": {"map": {"key": pick, "data": {"set": entries}}}}}));
    Some(rule("prerouting", e))
}

/// A port forward on the uplink address: new flows to a local address of the uplink namespace
/// on `port` go to a VPC router's transit address (the router forwards them on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UplinkForward {
    pub protocol: Protocol,
    pub port: u16,
    pub to: Ipv4Addr,
}

/// Render the uplink namespace's table: masquerade the transit networks (NAT gateways that use
/// the uplink address) on the uplink, and DNAT port forwards of the uplink address.
pub fn render_uplink(uplink: &str, transit: Ipv4Net, forwards: &[UplinkForward]) -> Result<Value, RenderError> {
    let table = json!({"family": "inet", "name": NFT_TABLE});
    let mut out = vec![
        json!({"add": {"table": table}}),
        json!({"delete": {"table": table}}),
        json!({"add": {"table": table}}),
        obj("chain", json!({"name": "prerouting", "type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"})),
        obj("chain", json!({"name": "postrouting", "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"})),
        rule(
            "postrouting",
            vec![
                eq(meta("oifname"), json!(uplink)),
                eq(payload("ip", "saddr"), json!({"prefix": {"addr": transit.network().to_string(), "len": transit.prefix_len()}})),
                json!({"masquerade": null}),
            ],
        ),
    ];
    for f in forwards {
        let p = proto_name(f.protocol);
        out.push(rule(
            "prerouting",
            vec![
                eq(meta("iifname"), json!(uplink)),
                eq(json!({"fib": {"result": "type", "flags": ["daddr"]}}), json!("local")),
                eq(meta("l4proto"), json!(p)),
                eq(payload(p, "dport"), json!(f.port)),
                json!({"dnat": {"family": "ip", "addr": f.to.to_string()}}),
            ],
        ));
    }
    for o in &out {
        serde_json::from_value::<nftables::schema::NfObject>(o.clone()).map_err(|e| RenderError::Schema(format!("{e}: {o}")))?;
    }
    Ok(json!({"nftables": out}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> VpcRouter {
        VpcRouter {
            uplink: "clr0123456789ab".into(),
            security_groups: vec![
                SecurityGroup {
                    id: "sg-web".into(),
                    ingress: vec![
                        IngressRule { protocol: Protocol::Tcp, ports: Some((80, 80)), source: Source::Cidr("0.0.0.0/0".parse().unwrap()) },
                        IngressRule { protocol: Protocol::Tcp, ports: Some((8000, 8099)), source: Source::Group("sg-app".into()) },
                    ],
                },
                SecurityGroup {
                    id: "sg-app".into(),
                    ingress: vec![IngressRule { protocol: Protocol::Icmp, ports: None, source: Source::Cidr("10.0.0.0/16".parse().unwrap()) }],
                },
            ],
            interfaces: vec![
                Interface { ifname: "clw000000000001".into(), ip: "10.0.1.4".parse().unwrap(), security_groups: vec!["sg-web".into()] },
                Interface { ifname: "clw000000000002".into(), ip: "10.0.1.5".parse().unwrap(), security_groups: vec!["sg-app".into()] },
            ],
            eips: vec![EipMapping { public: "203.0.113.10".parse().unwrap(), private: "10.0.1.4".parse().unwrap() }],
            nat_gateways: vec![NatGateway { subnet: "10.0.1.0/24".parse().unwrap(), snat_to: "169.254.100.2".parse().unwrap() }],
            port_forwards: vec![PortForward {
                protocol: Protocol::Tcp,
                public: "203.0.113.11".parse().unwrap(),
                public_port: 2222,
                private: "10.0.1.5".parse().unwrap(),
                private_port: 22,
            }],
            load_balancers: vec![
                LoadBalancer {
                    protocol: Protocol::Tcp,
                    address: "10.0.1.200".parse().unwrap(),
                    port: 80,
                    public: false,
                    backends: vec![
                        Backend { ip: "10.0.1.4".parse().unwrap(), port: 8080, weight: 1 },
                        Backend { ip: "10.0.1.5".parse().unwrap(), port: 8080, weight: 3 },
                    ],
                    affinity: false,
                    seed: 0,
                },
                LoadBalancer {
                    protocol: Protocol::Udp,
                    address: "203.0.113.12".parse().unwrap(),
                    port: 53,
                    public: true,
                    backends: vec![Backend { ip: "10.0.1.5".parse().unwrap(), port: 5353, weight: 1 }],
                    affinity: true,
                    seed: 7,
                },
                LoadBalancer {
                    protocol: Protocol::Tcp,
                    address: "10.0.1.201".parse().unwrap(),
                    port: 80,
                    public: false,
                    backends: vec![],
                    affinity: false,
                    seed: 0,
                },
            ],
            has_uplink: true,
        }
    }

    /// The rendered ruleset equals the reviewed golden file (`UPDATE_GOLDEN=1` rewrites it).
    #[test]
    fn router_ruleset_matches_the_golden_file() {
        let got = serde_json::to_string_pretty(&render(&model()).unwrap()).unwrap() + "\n";
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/net/testdata/vpc_router.json");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &got).unwrap();
        }
        let want = std::fs::read_to_string(&path).unwrap();
        assert_eq!(got, want, "rendered ruleset changed; review and run with UPDATE_GOLDEN=1");
    }

    #[test]
    fn the_uplink_table_forwards_local_ports_to_routers() {
        let f = [UplinkForward { protocol: Protocol::Udp, port: 5000, to: "169.254.100.2".parse().unwrap() }];
        let doc = render_uplink("eth0", "169.254.100.0/22".parse().unwrap(), &f).unwrap();
        let text = doc.to_string();
        assert!(text.contains(r#"{"dnat":{"addr":"169.254.100.2","family":"ip"}}"#), "{text}");
        assert!(text.contains(r#""right":"local""#) && text.contains(r#""right":5000"#), "{text}");
    }

    #[test]
    fn weights_become_contiguous_ranges() {
        let m = model();
        let r = lb_rule("up", &m.load_balancers[0]).unwrap().to_string();
        assert!(r.contains(r#""mod":4"#) && r.contains(r#"[0,{"concat":["10.0.1.4",8080]}]"#), "{r}");
        assert!(r.contains(r#"[{"range":[1,3]},{"concat":["10.0.1.5",8080]}]"#), "{r}");
        assert_eq!(lb_rule("up", &m.load_balancers[2]), None);
    }

    #[test]
    fn an_empty_vpc_renders_a_valid_table() {
        let doc = render(&VpcRouter { uplink: "clr0".into(), ..Default::default() }).unwrap();
        let objs = doc["nftables"].as_array().unwrap();
        assert_eq!(objs[1], json!({"delete": {"table": {"family": "inet", "name": "cloudlet"}}}));
        assert!(objs.iter().all(|o| o.get("add").and_then(|a| a.get("set")).is_none()));
    }

    #[test]
    fn unknown_groups_are_refused() {
        let mut m = model();
        m.interfaces[0].security_groups.push("sg-missing".into());
        assert_eq!(render(&m), Err(RenderError::UnknownGroup("sg-missing".into())));
        let mut m = model();
        m.security_groups[1].ingress.push(IngressRule { protocol: Protocol::All, ports: None, source: Source::Group("sg-x".into()) });
        assert_eq!(render(&m), Err(RenderError::UnknownGroup("sg-x".into())));
    }
}
