//! Port forwards and L4 load balancers.
//!
//! - A **port forward** sends new flows to a public address and port (the site's uplink address,
//!   or an elastic IP) to a network interface's address and port.
//! - A **load balancer** listens on an elastic IP or on an internal VIP of one of its VPC's
//!   subnets, and spreads new flows over weighted backends (`ip:port` in the VPC) through an nft
//!   map. The daemon health-checks the backends over TCP from the VPC router (see `health`) and
//!   keeps the unhealthy ones out of the map.
//!
//! Elastic IPs: one used by port forwards or load balancers serves that role only (it is not
//! associated with an interface nor a NAT gateway's), and all its users are in one VPC, which
//! its /32 route points to. A listener (address, protocol, port) is taken once.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use rusqlite::Connection;
use serde_json::Value;

use super::lookup::{resolve, spec_of};
use super::model::Status;
use super::net_model::{
    self as nm, Affinity, BackendSpec, EipSpec, LoadBalancerSpec, MAX_BACKENDS, NetworkInterfaceSpec, PortForwardSpec, SubnetSpec, VpcSpec, all, eip_listeners,
    used_addresses, vpc_of_interface,
};
use super::resource_kind::{Creatable, Labels, Patchable, ResourceKind};
use super::{Kind, ProjectCtx, Resource, Site, SiteError};
use crate::net::ipam;
use crate::net::render::{self, Protocol};
use crate::state::{ResourceRow, repo};

fn l4(field: &str, p: Protocol) -> Result<Protocol, SiteError> {
    match p {
        Protocol::Tcp | Protocol::Udp => Ok(p),
        _ => Err(SiteError::invalid(field, "must be tcp or udp")),
    }
}

fn port(field: &str, p: u16) -> Result<u16, SiteError> {
    if p == 0 { Err(SiteError::invalid(field, "must be 1-65535")) } else { Ok(p) }
}

/// not a NAT gateway's, and used only by listeners of `vpc`. Returns the EIP's id.
/// Refuse an elastic IP as a listener address unless it is free for that role: not associated,
fn check_listener_eip(c: &Connection, p: &ProjectCtx, field: &str, r: &str, vpc: &str) -> Result<String, SiteError> {
    let eip = resolve(c, Kind::Eip, p, field, r)?;
    if spec_of::<EipSpec>(&eip)?.network_interface.is_some() {
        return Err(SiteError::ConflictOn { field: field.into(), message: format!("elastic IP {} is associated with a network interface", eip.name) });
    }
    if let Some(n) = repo::referencing(c, Kind::NatGateway.as_str(), "$.eip", &eip.id)?.first() {
        return Err(SiteError::ConflictOn { field: field.into(), message: format!("elastic IP {} is used by NAT gateway {}", eip.name, n.name) });
    }
    if let Some((k, name, _)) = eip_listeners(c, &eip.id)?.into_iter().find(|(_, _, v)| v != vpc) {
        return Err(SiteError::ConflictOn { field: field.into(), message: format!("elastic IP {} serves {} {name} of another VPC", eip.name, k.as_str()) });
    }
    Ok(eip.id)
}

/// Refuse a listener (address key, protocol, port) another port forward or load balancer has.
/// `eip` None is the uplink address (port forwards only).
fn check_listener_free(c: &Connection, self_id: Option<&str>, eip: Option<&str>, proto: Protocol, p: u16, field: &str) -> Result<(), SiteError> {
    let forwards = match eip {
        Some(e) => repo::referencing(c, Kind::PortForward.as_str(), "$.eip", e)?,
        None => all(c, Kind::PortForward)?,
    };
    for row in forwards.iter().filter(|r| Some(r.id.as_str()) != self_id) {
        let s: PortForwardSpec = spec_of(row)?;
        if s.eip.as_deref() == eip && s.protocol == proto && s.public_port == p {
            return Err(SiteError::ConflictOn { field: field.into(), message: format!("port forward {} already listens there", row.name) });
        }
    }
    if let Some(e) = eip {
        for row in repo::referencing(c, Kind::LoadBalancer.as_str(), "$.listener.eip", e)?.iter().filter(|r| Some(r.id.as_str()) != self_id) {
            let s: LoadBalancerSpec = spec_of(row)?;
            if s.listener.protocol == proto && s.listener.port == p {
                return Err(SiteError::ConflictOn { field: field.into(), message: format!("load balancer {} already listens there", row.name) });
            }
        }
    }
    Ok(())
}

fn vpc_net(row: &ResourceRow) -> Result<Ipv4Net, SiteError> {
    spec_of::<VpcSpec>(row)?.cidr.parse().map_err(|_| SiteError::Corrupt("a VPC CIDR".into()))
}

/// Validate the mutable part of a load balancer spec against its VPC.
fn check_backends(s: &LoadBalancerSpec, net: Ipv4Net) -> Result<(), SiteError> {
    if s.backends.len() > MAX_BACKENDS {
        return Err(SiteError::invalid("spec.backends", format!("at most {MAX_BACKENDS} backends")));
    }
    let mut seen = BTreeSet::new();
    for (i, b) in s.backends.iter().enumerate() {
        if !net.contains(&b.ip) {
            return Err(SiteError::invalid(format!("spec.backends[{i}].ip"), format!("{} is outside the VPC's {net}", b.ip)));
        }
        port(&format!("spec.backends[{i}].port"), b.port)?;
        if !(1..=100).contains(&b.weight) {
            return Err(SiteError::invalid(format!("spec.backends[{i}].weight"), "must be 1-100"));
        }
        if !seen.insert((b.ip, b.port)) {
            return Err(SiteError::invalid(format!("spec.backends[{i}]"), format!("{}:{} is listed twice", b.ip, b.port)));
        }
    }
    if let Some(h) = &s.health_check {
        let bad = |f: &str, m: &str| Err(SiteError::invalid(format!("spec.health_check.{f}"), m.to_string()));
        if h.port == Some(0) {
            return bad("port", "must be 1-65535");
        }
        if !(1..=300).contains(&h.interval_seconds) {
            return bad("interval_seconds", "must be 1-300");
        }
        if !(1..=60).contains(&h.timeout_seconds) || h.timeout_seconds > h.interval_seconds {
            return bad("timeout_seconds", "must be 1-60 and at most interval_seconds");
        }
        if !(1..=10).contains(&h.healthy_threshold) {
            return bad("healthy_threshold", "must be 1-10");
        }
        if !(1..=10).contains(&h.unhealthy_threshold) {
            return bad("unhealthy_threshold", "must be 1-10");
        }
    }
    Ok(())
}

fn lb_status(s: &LoadBalancerSpec, address: Ipv4Addr) -> Status {
    let mut st = Status::phase("Ready");
    st.extra.insert("address".into(), address.to_string().into());
    st.extra.insert("backends".into(), backends_status(&s.backends, &[]));
    st
}

/// `status.backends`: each backend with its health (`true` until checks say otherwise).
pub(super) fn backends_status(backends: &[BackendSpec], unhealthy: &[(Ipv4Addr, u16)]) -> Value {
    Value::Array(
        backends
            .iter()
            .map(|b| serde_json::json!({"ip": b.ip.to_string(), "port": b.port, "weight": b.weight, "healthy": !unhealthy.contains(&(b.ip, b.port))}))
            .collect(),
    )
}

impl Site {
    fn require_uplink(&self) -> Result<(), SiteError> {
        if self.config().network.uplink.is_empty() {
            return Err(SiteError::invalid("spec", "this site has no uplink configured ([network] uplink in the config)"));
        }
        Ok(())
    }

    /// The uplink ports tenants may forward (`network.forward_ports`).
    fn forward_ports(&self) -> Result<(u16, u16), SiteError> {
        let n = &self.config().network;
        n.forward_range().ok_or_else(|| SiteError::misconfigured("network.forward_ports", format!("{:?} is not LOW-HIGH", n.forward_ports)))
    }
}

/// What one VPC's router renders for port forwards and load balancers, and what the uplink
/// needs site-wide.
#[derive(Default)]
pub struct BalancingPlan {
    /// Router DNAT of port forwards (`public` is the EIP or, for the uplink address, the
    /// router's transit address, passed in).
    pub port_forwards: Vec<render::PortForward>,
    pub load_balancers: Vec<render::LoadBalancer>,
    /// Internal VIPs, to hold as local addresses in the router.
    pub vips: Vec<Ipv4Addr>,
    /// Every EIP serving listeners site-wide, with the VPC (id) it routes to.
    pub routes: Vec<(Ipv4Addr, String)>,
    /// Every port forward on the uplink address site-wide: protocol, port, VPC id.
    pub uplink_forwards: Vec<(Protocol, u16, String)>,
}

/// Stable affinity seed of a load balancer (from its id).
fn seed_of(id: &str) -> u32 {
    id.bytes().fold(2_166_136_261u32, |h, b| (h ^ u32::from(b)).wrapping_mul(16_777_619))
}

/// Backends out of service per `status.backends` (health checks).
pub(super) fn unhealthy(row: &ResourceRow) -> Vec<(Ipv4Addr, u16)> {
    let st: Status = serde_json::from_str(&row.status).unwrap_or_default();
    let Some(Value::Array(list)) = st.extra.get("backends") else { return vec![] };
    list.iter()
        .filter(|b| b["healthy"] == Value::Bool(false))
        .filter_map(|b| Some((b["ip"].as_str()?.parse().ok()?, u16::try_from(b["port"].as_u64()?).ok()?)))
        .collect()
}

/// Compute the plan for `vpc_id` (inside one read). `transit_ip` is the router's transit
/// address, the inner target of uplink port forwards.
pub fn plan(c: &Connection, vpc_id: &str, transit_ip: Option<Ipv4Addr>) -> Result<BalancingPlan, SiteError> {
    let mut out = BalancingPlan::default();
    let eip_ip = |id: &str| -> Result<Option<Ipv4Addr>, SiteError> { Ok(repo::get(c, id)?.and_then(|r| spec_of::<EipSpec>(&r).ok()?.public_ip)) };
    for row in all(c, Kind::PortForward)? {
        let s: PortForwardSpec = spec_of(&row)?;
        let Some(vpc) = vpc_of_interface(c, &s.network_interface)? else { continue };
        let public = match &s.eip {
            Some(e) => {
                let Some(ip) = eip_ip(e)? else { continue };
                out.routes.push((ip, vpc.clone()));
                Some(ip)
            }
            None => {
                out.uplink_forwards.push((s.protocol, s.public_port, vpc.clone()));
                transit_ip
            }
        };
        if vpc != vpc_id {
            continue;
        }
        let Some(eni) = repo::get(c, &s.network_interface)? else { continue };
        let (Some(public), Some(private)) = (public, spec_of::<NetworkInterfaceSpec>(&eni)?.private_ip) else { continue };
        out.port_forwards.push(render::PortForward { protocol: s.protocol, public, public_port: s.public_port, private, private_port: s.private_port });
    }
    for row in all(c, Kind::LoadBalancer)? {
        let s: LoadBalancerSpec = spec_of(&row)?;
        let (address, public) = match (&s.listener.eip, s.listener.vip) {
            (Some(e), _) => {
                let Some(ip) = eip_ip(e)? else { continue };
                out.routes.push((ip, s.vpc.clone()));
                (ip, true)
            }
            (None, Some(vip)) => (vip, false),
            _ => continue,
        };
        if s.vpc != vpc_id {
            continue;
        }
        if !public {
            out.vips.push(address);
        }
        let down = unhealthy(&row);
        let mut backends: Vec<render::Backend> =
            s.backends.iter().filter(|b| !down.contains(&(b.ip, b.port))).map(|b| render::Backend { ip: b.ip, port: b.port, weight: b.weight }).collect();
        if backends.is_empty() {
            // Fail open, as cloud load balancers do: with no backend healthy, try them all.
            backends = s.backends.iter().map(|b| render::Backend { ip: b.ip, port: b.port, weight: b.weight }).collect();
        }
        out.load_balancers.push(render::LoadBalancer {
            protocol: s.listener.protocol,
            address,
            port: s.listener.port,
            public,
            backends,
            affinity: s.affinity == Affinity::SourceIp,
            seed: seed_of(&row.id),
        });
    }
    Ok(out)
}

impl ResourceKind for PortForwardSpec {
    const KIND: Kind = Kind::PortForward;
}

impl Creatable for PortForwardSpec {
    /// Create a port forward. Errors: 422 for a bad protocol, port or reference; 409 when the
    /// listener is taken or the EIP serves another role or VPC.
    fn create(site: &Site, p: &ProjectCtx, name: &str, labels: &Labels, spec: Value) -> Result<Resource, SiteError> {
        site.require_uplink()?;
        let mut s: PortForwardSpec = serde_json::from_value(spec).map_err(|e| SiteError::invalid("spec", e.to_string()))?;
        l4("spec.protocol", s.protocol)?;
        port("spec.public_port", s.public_port)?;
        port("spec.private_port", s.private_port)?;
        let (lo, hi) = site.forward_ports()?;
        let pc = p.clone();
        site.create_with(Kind::PortForward, Some(p), name, labels, &Status::phase("Ready"), None, move |c| {
            let eni = resolve(c, Kind::NetworkInterface, &pc, "spec.network_interface", &s.network_interface)?;
            let vpc = vpc_of_interface(c, &eni.id)?.ok_or_else(|| SiteError::invalid("spec.network_interface", "the interface has no subnet"))?;
            s.network_interface = eni.id;
            match &s.eip {
                Some(e) => s.eip = Some(check_listener_eip(c, &pc, "spec.eip", e, &vpc)?),
                None if !(lo..=hi).contains(&s.public_port) => {
                    return Err(SiteError::invalid("spec.public_port", format!("the uplink address forwards ports {lo}-{hi} only (network.forward_ports)")));
                }
                None => {}
            }
            check_listener_free(c, None, s.eip.as_deref(), s.protocol, s.public_port, "spec.public_port")?;
            Ok(serde_json::to_value(&s)?)
        })
    }
}

impl ResourceKind for LoadBalancerSpec {
    const KIND: Kind = Kind::LoadBalancer;
}

impl Creatable for LoadBalancerSpec {
    /// Create a load balancer: resolve the VPC and listener, assign an internal VIP, check the
    /// backends, in one transaction. Errors: 422 naming the field; 409 for a taken listener.
    fn create(site: &Site, p: &ProjectCtx, name: &str, labels: &Labels, spec: Value) -> Result<Resource, SiteError> {
        let mut s: LoadBalancerSpec = serde_json::from_value(spec).map_err(|e| SiteError::invalid("spec", e.to_string()))?;
        l4("spec.listener.protocol", s.listener.protocol)?;
        port("spec.listener.port", s.listener.port)?;
        let pc = p.clone();
        site.create_with_status(Kind::LoadBalancer, Some(p), name, labels, None, |c| {
            let mut address = Ipv4Addr::UNSPECIFIED;
            let vpc = resolve(c, Kind::Vpc, &pc, "spec.vpc", &s.vpc)?;
            s.vpc = vpc.id.clone();
            check_backends(&s, vpc_net(&vpc)?)?;
            match (&s.listener.eip, &s.listener.subnet) {
                (Some(e), None) => {
                    site.require_uplink()?;
                    if s.listener.vip.is_some() {
                        return Err(SiteError::invalid("spec.listener.vip", "a VIP belongs to an internal listener (with subnet)"));
                    }
                    let id = check_listener_eip(c, &pc, "spec.listener.eip", e, &vpc.id)?;
                    check_listener_free(c, None, Some(&id), s.listener.protocol, s.listener.port, "spec.listener.port")?;
                    address = repo::get(c, &id)?.and_then(|r| spec_of::<EipSpec>(&r).ok()?.public_ip).unwrap_or(address);
                    s.listener.eip = Some(id);
                }
                (None, Some(sn)) => {
                    let subnet = resolve(c, Kind::Subnet, &pc, "spec.listener.subnet", sn)?;
                    let ss: SubnetSpec = spec_of(&subnet)?;
                    if ss.vpc != vpc.id {
                        return Err(SiteError::invalid("spec.listener.subnet", "the subnet belongs to another VPC"));
                    }
                    let net: Ipv4Net = ss.cidr.parse().map_err(|_| SiteError::Corrupt("a subnet CIDR".into()))?;
                    let used = used_addresses(c, &subnet.id)?;
                    let vip = ipam::assign(net, &used, s.listener.vip).map_err(nm::bad("spec.listener.vip"))?;
                    s.listener.vip = Some(vip);
                    s.listener.subnet = Some(subnet.id);
                    address = vip;
                }
                _ => return Err(SiteError::invalid("spec.listener", "give exactly one of eip (public) and subnet (internal)")),
            }
            Ok((serde_json::to_value(&s)?, lb_status(&s, address)))
        })
    }
}

impl Patchable for LoadBalancerSpec {
    /// Change a load balancer's backends, affinity or health check (merge patch of the spec; the
    /// VPC and listener are fixed).
    fn update(site: &Site, p: &ProjectCtx, r: &str, if_match: Option<i64>, labels: Option<&Labels>, patch: Option<&Value>) -> Result<Resource, SiteError> {
        let current = site.get(Kind::LoadBalancer, Some(p), r)?;
        let old: LoadBalancerSpec = current.spec_as()?;
        site.update(Kind::LoadBalancer, Some(p), r, if_match, labels, patch, &move |c, v| {
            let s: LoadBalancerSpec = serde_json::from_value(v).map_err(|e| SiteError::invalid("spec", e.to_string()))?;
            if s.vpc != old.vpc {
                return Err(SiteError::invalid("spec.vpc", "a load balancer cannot move to another VPC"));
            }
            if s.listener != old.listener {
                return Err(SiteError::invalid("spec.listener", "the listener cannot change; create another load balancer"));
            }
            let vpc = repo::get(c, &s.vpc)?.ok_or_else(|| SiteError::invalid("spec.vpc", "the VPC is gone"))?;
            check_backends(&s, vpc_net(&vpc)?)?;
            Ok(serde_json::to_value(&s)?)
        })
    }
}
