//! VPC networking resources: VPCs, subnets, security groups and network interfaces, and the VPC
//! reconciler that converges each VPC's router namespace, workload attachments and ruleset.
//!
//! A network interface (as AWS's ENI) is a workload's network identity: an address in a subnet,
//! its security groups, and a namespace (`status.netns`) that a container joins or a VM's tap
//! connects through.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use rusqlite::Connection;
use serde_json::Value;

use super::lookup::{resolve, spec_of};
use super::model::Status;
use super::net_model::{Attachment, NetworkInterfaceSpec, SecurityGroupSpec, SubnetSpec, VpcSpec};
use super::net_model::{bad, used_addresses};
use super::reconcile::{Controller, Outcome};
use super::resource_kind::{Creatable, Labels, Patchable, ResourceKind};
use super::{Kind, ProjectCtx, Resource, Site, SiteError};
use crate::net::render::{self, IngressRule, Protocol, Source};
use crate::net::{dhcp, host, ipam, names, services};
use crate::state::{ResourceRow, repo};

fn parse_ports(field: &str, s: &str) -> Result<(u16, u16), SiteError> {
    let err = || SiteError::invalid(field, format!("{s:?} is not a port or a range such as 8000-8099"));
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (a, b): (u16, u16) = (a.trim().parse().map_err(|_| err())?, b.trim().parse().map_err(|_| err())?);
    if a == 0 || a > b {
        return Err(err());
    }
    Ok((a, b))
}

/// Normalize a security group spec inside a transaction: resolve the VPC and source groups,
/// check every rule.
fn build_sg(c: &Connection, p: &ProjectCtx, v: Value, self_id: Option<&str>) -> Result<Value, SiteError> {
    let mut spec: SecurityGroupSpec = serde_json::from_value(v).map_err(|e| SiteError::invalid("spec", e.to_string()))?;
    let vpc = resolve(c, Kind::Vpc, p, "spec.vpc", &spec.vpc)?;
    spec.vpc = vpc.id.clone();
    if spec.ingress.len() > 1000 {
        return Err(SiteError::invalid("spec.ingress", "at most 1,000 rules"));
    }
    for (i, r) in spec.ingress.iter_mut().enumerate() {
        let f = |x: &str| format!("spec.ingress[{i}].{x}");
        match (&r.source_cidr, &r.source_group) {
            (Some(cidr), None) => {
                let net: Ipv4Net = cidr.parse().map_err(|_| SiteError::invalid(f("source_cidr"), format!("{cidr:?} is not an IPv4 CIDR")))?;
                r.source_cidr = Some(net.trunc().to_string());
            }
            (None, Some(g)) if self_id.is_some_and(|s| s == g) => {}
            (None, Some(g)) => {
                let row = resolve(c, Kind::SecurityGroup, p, &f("source_group"), g)?;
                if spec_of::<SecurityGroupSpec>(&row)?.vpc != vpc.id {
                    return Err(SiteError::invalid(f("source_group"), "the source group belongs to another VPC"));
                }
                r.source_group = Some(row.id);
            }
            _ => return Err(SiteError::invalid(f("source_cidr"), "give exactly one of source_cidr and source_group")),
        }
        match (&r.protocol, &r.ports) {
            (Protocol::Tcp | Protocol::Udp, Some(ports)) => {
                parse_ports(&f("ports"), ports)?;
            }
            (Protocol::Icmp | Protocol::All, Some(_)) => {
                return Err(SiteError::invalid(f("ports"), "ports apply to tcp and udp only"));
            }
            _ => {}
        }
    }
    Ok(serde_json::to_value(spec)?)
}

/// Normalize a network interface spec inside a transaction: resolve the subnet and the groups
/// (of the subnet's VPC) and assign the address. Errors are 422 naming `spec.subnet`,
/// `spec.security_groups[i]` or `spec.private_ip` (409 when the address is taken or the subnet
/// is full).
pub(super) fn build_interface(c: &Connection, p: &ProjectCtx, mut s: NetworkInterfaceSpec) -> Result<NetworkInterfaceSpec, SiteError> {
    let subnet = resolve(c, Kind::Subnet, p, "spec.subnet", &s.subnet)?;
    let sn: SubnetSpec = spec_of(&subnet)?;
    let net: Ipv4Net = sn.cidr.parse().map_err(|_| SiteError::Corrupt("a subnet CIDR".into()))?;
    let mut groups = Vec::new();
    for (i, g) in s.security_groups.iter().enumerate() {
        let row = resolve(c, Kind::SecurityGroup, p, &format!("spec.security_groups[{i}]"), g)?;
        if spec_of::<SecurityGroupSpec>(&row)?.vpc != sn.vpc {
            return Err(SiteError::invalid(format!("spec.security_groups[{i}]"), "the group belongs to another VPC"));
        }
        groups.push(row.id);
    }
    let used = used_addresses(c, &subnet.id)?;
    s.private_ip = Some(ipam::assign(net, &used, s.private_ip).map_err(bad("spec.private_ip"))?);
    s.subnet = subnet.id;
    s.security_groups = groups;
    Ok(s)
}

/// Everything desired for one VPC, read from state.
struct Desired {
    subnets: Vec<(ResourceRow, Ipv4Net)>,
    groups: Vec<(ResourceRow, SecurityGroupSpec)>,
    interfaces: Vec<(ResourceRow, NetworkInterfaceSpec, Ipv4Net)>,
}

fn desired(c: &Connection, vpc_id: &str) -> Result<Desired, SiteError> {
    let subnets: Vec<(ResourceRow, Ipv4Net)> = repo::referencing(c, Kind::Subnet.as_str(), "$.vpc", vpc_id)?
        .into_iter()
        .filter_map(|r| {
            let n = spec_of::<SubnetSpec>(&r).ok()?.cidr.parse().ok()?;
            Some((r, n))
        })
        .collect();
    let groups = repo::referencing(c, Kind::SecurityGroup.as_str(), "$.vpc", vpc_id)?
        .into_iter()
        .filter_map(|r| Some((r.clone(), spec_of::<SecurityGroupSpec>(&r).ok()?)))
        .collect();
    let mut interfaces = Vec::new();
    for (sn, net) in &subnets {
        for r in repo::referencing(c, Kind::NetworkInterface.as_str(), "$.subnet", &sn.id)? {
            let s: NetworkInterfaceSpec = spec_of(&r)?;
            interfaces.push((r, s, *net));
        }
    }
    Ok(Desired { subnets, groups, interfaces })
}

/// The transit link of VPC `index`: (host side, VPC side) of the `index`-th /30 of `transit`.
fn transit_addrs(transit: Ipv4Net, index: u32) -> Result<(Ipv4Addr, Ipv4Addr), SiteError> {
    let slots = 1u64 << (32 - transit.prefix_len()).saturating_sub(2);
    if u64::from(index) >= slots {
        return Err(SiteError::misconfigured("network.transit_cidr", format!("{transit} has room for {slots} VPCs only")));
    }
    let base = u32::from(transit.network()) + 4 * index;
    Ok((Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2)))
}

fn index_of(row: &ResourceRow) -> Option<u32> {
    serde_json::from_str::<Status>(&row.status).ok()?.extra.get("transit_index")?.as_u64().map(|i| i as u32)
}

/// The VPC's transit index, allocated once (the lowest free) and kept in its status.
fn transit_index(site: &Site, row: &ResourceRow) -> Result<u32, SiteError> {
    if let Some(i) = index_of(row) {
        return Ok(i);
    }
    let used: BTreeSet<u32> = site.read(|c| Ok(repo::list(c, Kind::Vpc.as_str(), None, None, usize::MAX >> 1)?))?.iter().filter_map(index_of).collect();
    let i = (0u32..).find(|i| !used.contains(i)).unwrap_or(0);
    site.set_status(&row.id, |st, _| {
        st.extra.insert("transit_index".into(), i.into());
    })?;
    Ok(i)
}

/// What the router of a VPC with an uplink renders besides its own groups and interfaces.
struct Uplinked {
    uplink: String,
    transit_ip: Ipv4Addr,
    public: super::public::PublicPlan,
}

/// Wire the VPC to the site uplink: transit link, the uplink table (masquerade, uplink port
/// forwards), EIP routes and bandwidth caps. Returns the uplink part of the router's model (none
/// without a site uplink) and the VPC's port forwards and load balancers.
fn wire_uplink(site: &Site, row: &ResourceRow, router: &str) -> Result<(Option<Uplinked>, super::balancing::BalancingPlan), SiteError> {
    let cfg = site.config().network.clone();
    if cfg.uplink.is_empty() {
        return Ok((None, site.read(|c| super::balancing::plan(c, &row.id, None))?));
    }
    let transit: Ipv4Net = cfg.transit_cidr.parse().map_err(|_| SiteError::misconfigured("network.transit_cidr", "not a CIDR"))?;
    let (host_ip, vpc_ip) = transit_addrs(transit, transit_index(site, row)?)?;
    let t = host::Transit {
        uplink_netns: cfg.uplink_netns.clone(),
        router_netns: router.to_string(),
        host_if: names::ifname(names::Role::UplinkHost, &row.id),
        vpc_if: names::ifname(names::Role::UplinkVpc, &row.id),
        host_ip,
        vpc_ip,
        prefix: 30,
    };
    site.net_host().ensure_transit(&t, &cfg.uplink).map_err(host_err)?;
    let (public, bal) = site.read(|c| Ok((super::public::plan(c, &row.id)?, super::balancing::plan(c, &row.id, Some(vpc_ip))?)))?;
    let vpcs = site.read(|c| Ok(repo::list(c, Kind::Vpc.as_str(), None, None, usize::MAX >> 1)?))?;
    let router_ip = |vpc: &str| Some(transit_addrs(transit, index_of(vpcs.iter().find(|v| v.id == vpc)?)?).ok()?.1);
    let forwards: Vec<render::UplinkForward> = bal
        .uplink_forwards
        .iter()
        .filter_map(|(protocol, port, vpc)| Some(render::UplinkForward { protocol: *protocol, port: *port, to: router_ip(vpc)? }))
        .collect();
    let up = render::render_uplink(&cfg.uplink, transit, &forwards)?;
    site.net_host().apply_ruleset(&cfg.uplink_netns, &up).map_err(host_err)?;
    if let Ok(g) = site.net_host().ruleset_generation(&cfg.uplink_netns) {
        site.record_ruleset_generation(&cfg.uplink_netns, g);
    }
    let routes = public.routes.iter().chain(&bal.routes).filter_map(|(eip, vpc)| Some((*eip, router_ip(vpc)?))).collect();
    site.net_host().sync_uplink_routes(&cfg.uplink_netns, routes).map_err(host_err)?;
    // Bandwidth caps of the EIPs routed here: uploads leave the router by its transit port
    // (after SNAT), downloads leave the uplink side toward it (before DNAT).
    let caps: Vec<services::Cap> = public
        .routes
        .iter()
        .chain(&bal.routes)
        .filter(|(_, vpc)| *vpc == row.id)
        .filter_map(|(ip, _)| Some(services::Cap { ip: *ip, mbit: *public.caps.get(ip)? }))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    site.net_host().sync_caps(router, &t.vpc_if, services::Direction::Source, &caps).map_err(host_err)?;
    site.net_host().sync_caps(&cfg.uplink_netns, &t.host_if, services::Direction::Destination, &caps).map_err(host_err)?;
    Ok((Some(Uplinked { uplink: t.vpc_if, transit_ip: vpc_ip, public }), bal))
}

fn router_model(d: &Desired) -> render::VpcRouter {
    let security_groups = d
        .groups
        .iter()
        .map(|(row, s)| render::SecurityGroup {
            id: row.id.clone(),
            ingress: s
                .ingress
                .iter()
                .filter_map(|r| {
                    let source = match (&r.source_cidr, &r.source_group) {
                        (Some(c), _) => Source::Cidr(c.parse().ok()?),
                        (_, Some(g)) => Source::Group(g.clone()),
                        _ => return None,
                    };
                    let ports = r.ports.as_deref().and_then(|p| parse_ports("ports", p).ok());
                    Some(IngressRule { protocol: r.protocol, ports, source })
                })
                .collect(),
        })
        .collect();
    let interfaces = d
        .interfaces
        .iter()
        .filter_map(|(row, s, _)| {
            Some(render::Interface { ifname: names::ifname(names::Role::Workload, &row.id), ip: s.private_ip?, security_groups: s.security_groups.clone() })
        })
        .collect();
    render::VpcRouter { uplink: "clr-none".into(), security_groups, interfaces, ..Default::default() }
}

fn host_err(e: host::HostError) -> SiteError {
    SiteError::Network(e)
}

/// The VPC reconciler: router namespace, workload namespaces and veth links, ruleset; removes
/// what it owns that state no longer has.
pub struct VpcController;

impl Controller for VpcController {
    fn kind(&self) -> Kind {
        Kind::Vpc
    }

    fn watches(&self) -> &'static [Kind] {
        &[Kind::Subnet, Kind::SecurityGroup, Kind::NetworkInterface, Kind::Eip, Kind::NatGateway, Kind::PortForward, Kind::LoadBalancer]
    }

    async fn reconcile(&self, site: &Site, id: &str) -> Result<Outcome, SiteError> {
        let id = id.to_string();
        site.run(move |site| reconcile_vpc(site, &id)).await
    }
}

/// The network interface reconciler: attachment is the VPC reconciler's work; this one removes
/// the namespace of an interface as soon as it is deleted.
pub struct NetworkInterfaceController;

impl Controller for NetworkInterfaceController {
    fn kind(&self) -> Kind {
        Kind::NetworkInterface
    }

    async fn reconcile(&self, site: &Site, id: &str) -> Result<Outcome, SiteError> {
        let id = id.to_string();
        site.run(move |site| {
            let _host = host_lock();
            if site.read(|c| Ok(repo::get(c, &id)?))?.is_none() {
                site.net_host().delete_netns(&names::eni_netns(&id)).map_err(host_err)?;
            }
            Ok(Outcome::Done)
        })
        .await
    }
}

/// Lease time the DHCP server gives (the address never changes while the interface exists).
const DHCP_LEASE_SECONDS: u32 = 86_400;

/// Serializes host network changes of the VPC and interface reconcilers. Without it, a VPC pass
/// that read an interface just before its deletion could recreate the interface's namespace after
/// the interface reconciler removed it, leaking the namespace.
fn host_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn reconcile_vpc(site: &Site, id: &str) -> Result<Outcome, SiteError> {
    let _host = host_lock();
    let router = names::vpc_netns(id);
    let Some(row) = site.read(|c| Ok(repo::get(c, id)?))? else {
        site.net_host().dhcp_stop(&router);
        site.net_host().delete_netns(&router).map_err(host_err)?;
        return Ok(Outcome::Done);
    };
    // Interfaces this VPC attached before (kept in its status): the ones gone from state have
    // their namespaces removed. Only what this daemon recorded is ever removed.
    let before: BTreeSet<String> = serde_json::from_str::<Status>(&row.status)
        .ok()
        .and_then(|s| s.extra.get("attached").cloned())
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    let d = site.read(|c| desired(c, id))?;
    site.net_host().ensure_router(&router).map_err(host_err)?;
    let mut wanted = BTreeSet::new();
    for (eni, s, net) in &d.interfaces {
        let Some(ip) = s.private_ip else { continue };
        if s.attachment == Attachment::Tap {
            // An instance's interface: a persistent tap in the router namespace, routed and
            // filtered exactly like a veth port.
            let t = host::TapPort { router_netns: router.clone(), ifname: names::ifname(names::Role::Workload, &eni.id), ip, gateway: ipam::gateway(*net) };
            site.net_host().ensure_tap(&t).map_err(host_err)?;
            wanted.insert(t.ifname.clone());
            site.set_status(&eni.id, |st, row| {
                st.phase = "Ready".into();
                st.observed_generation = row.generation;
                st.set_condition("Ready", true, "Attached", "");
                st.extra.insert("tap".into(), t.ifname.clone().into());
                st.extra.insert("router_netns".into(), host::netns_path(&router).display().to_string().into());
                st.extra.insert("private_ip".into(), ip.to_string().into());
                st.extra.insert("gateway".into(), ipam::gateway(*net).to_string().into());
                st.extra.insert("prefix".into(), net.prefix_len().into());
            })?;
            continue;
        }
        let ns = names::eni_netns(&eni.id);
        // Made inside the project's user namespace, so its containers can join it.
        let owner = site.project_userns(eni.project_id.as_deref())?;
        site.net_host().ensure_netns(&ns, owner.as_ref().map(|u| u.path.as_path())).map_err(host_err)?;
        let a = host::Attachment {
            router_netns: router.clone(),
            router_if: names::ifname(names::Role::Workload, &eni.id),
            workload_netns: ns.clone(),
            workload_if: "eth0".into(),
            ip,
            prefix: net.prefix_len(),
            gateway: ipam::gateway(*net),
        };
        site.net_host().attach(&a).map_err(host_err)?;
        wanted.insert(a.router_if.clone());
        site.set_status(&eni.id, |st, row| {
            st.phase = "Ready".into();
            st.observed_generation = row.generation;
            st.set_condition("Ready", true, "Attached", "");
            st.extra.insert("netns".into(), host::netns_path(&ns).display().to_string().into());
            st.extra.insert("private_ip".into(), ip.to_string().into());
            st.extra.insert("gateway".into(), ipam::gateway(*net).to_string().into());
        })?;
    }
    let leases = d
        .interfaces
        .iter()
        .filter_map(|(eni, s, net)| {
            let lease = dhcp::Lease {
                ip: s.private_ip?,
                prefix: net.prefix_len(),
                gateway: ipam::gateway(*net),
                hostname: eni.name.clone(),
                lease_seconds: DHCP_LEASE_SECONDS,
            };
            Some((names::ifname(names::Role::Workload, &eni.id), lease))
        })
        .collect();
    site.net_host().dhcp_sync(&router, leases).map_err(host_err)?;
    for stale in site.net_host().links_with_prefix(&router, "clw").map_err(host_err)? {
        if !wanted.contains(&stale) {
            site.net_host().detach(&router, &stale).map_err(host_err)?;
        }
    }
    let mut model = router_model(&d);
    let (uplinked, bal) = wire_uplink(site, &row, &router)?;
    if let Some(u) = uplinked {
        model.uplink = u.uplink;
        model.has_uplink = true;
        model.eips = u.public.eips.iter().map(|(public, private)| render::EipMapping { public: *public, private: *private }).collect();
        model.nat_gateways =
            u.public.nat_gateways.iter().map(|(subnet, eip)| render::NatGateway { subnet: *subnet, snat_to: eip.unwrap_or(u.transit_ip) }).collect();
    }
    // Gateways and internal VIPs are the router's own addresses (on lo): proxy ARP answers for
    // them on every port, and local DNAT serves the VIPs.
    let local: Vec<Ipv4Addr> = d.subnets.iter().map(|(_, n)| ipam::gateway(*n)).chain(bal.vips.iter().copied()).collect();
    site.net_host().sync_local_addresses(&router, local).map_err(host_err)?;
    model.port_forwards = bal.port_forwards;
    model.load_balancers = bal.load_balancers;
    let doc = render::render(&model)?;
    site.net_host().apply_ruleset(&router, &doc).map_err(host_err)?;
    // Recorded, so the drift watcher knows this commit as the pass's own.
    if let Ok(g) = site.net_host().ruleset_generation(&router) {
        site.record_ruleset_generation(&router, g);
    }
    let attached: BTreeSet<String> = d.interfaces.iter().map(|(r, _, _)| r.id.clone()).collect();
    for gone in before.difference(&attached) {
        site.net_host().delete_netns(&names::eni_netns(gone)).map_err(host_err)?;
    }
    site.set_status(&row.id, |st, row| {
        st.phase = "Ready".into();
        st.observed_generation = row.generation;
        st.set_condition("Ready", true, "Reconciled", "router namespace, links and ruleset applied");
        st.extra.insert("netns".into(), host::netns_path(&router).display().to_string().into());
        st.extra.insert("subnets".into(), d.subnets.len().into());
        st.extra.insert("network_interfaces".into(), d.interfaces.len().into());
        st.extra.insert("attached".into(), serde_json::json!(attached));
    })?;
    Ok(Outcome::Done)
}

#[cfg(test)]
#[path = "network_tests.rs"]
mod tests;

impl ResourceKind for VpcSpec {
    const KIND: Kind = Kind::Vpc;
    const DEPENDENTS: &'static [(Kind, &'static str)] = &[(Kind::Subnet, "$.vpc"), (Kind::SecurityGroup, "$.vpc"), (Kind::LoadBalancer, "$.vpc")];
}

impl Creatable for VpcSpec {
    /// Create a VPC.
    fn create(site: &Site, p: &ProjectCtx, name: &str, labels: &Labels, spec: Value) -> Result<Resource, SiteError> {
        let mut s: VpcSpec = serde_json::from_value(spec).map_err(|e| SiteError::invalid("spec", e.to_string()))?;
        s.cidr = ipam::validate_vpc_cidr("spec.cidr", &s.cidr).map_err(bad("spec.cidr"))?.to_string();
        site.create(Kind::Vpc, Some(p), name, labels, &serde_json::to_value(s)?, &Status::phase("Pending"), None)
    }
}

impl ResourceKind for SubnetSpec {
    const KIND: Kind = Kind::Subnet;
    const DEPENDENTS: &'static [(Kind, &'static str)] =
        &[(Kind::NetworkInterface, "$.subnet"), (Kind::NatGateway, "$.subnet"), (Kind::LoadBalancer, "$.listener.subnet")];
}

impl Creatable for SubnetSpec {
    /// Create a subnet (checked against its VPC and siblings in the same transaction).
    fn create(site: &Site, p: &ProjectCtx, name: &str, labels: &Labels, spec: Value) -> Result<Resource, SiteError> {
        let mut s: SubnetSpec = serde_json::from_value(spec).map_err(|e| SiteError::invalid("spec", e.to_string()))?;
        let pc = p.clone();
        site.create_with(Kind::Subnet, Some(p), name, labels, &Status::phase("Ready"), None, move |c| {
            let vpc = resolve(c, Kind::Vpc, &pc, "spec.vpc", &s.vpc)?;
            let vpc_net: Ipv4Net = spec_of::<VpcSpec>(&vpc)?.cidr.parse().map_err(|_| SiteError::Corrupt("a VPC CIDR".into()))?;
            let others: Vec<Ipv4Net> = repo::referencing(c, Kind::Subnet.as_str(), "$.vpc", &vpc.id)?
                .iter()
                .filter_map(|r| spec_of::<SubnetSpec>(r).ok()?.cidr.parse().ok())
                .collect();
            s.cidr = ipam::validate_subnet_cidr("spec.cidr", &s.cidr, vpc_net, &others).map_err(bad("spec.cidr"))?.to_string();
            s.vpc = vpc.id;
            Ok(serde_json::to_value(&s)?)
        })
    }
}

impl ResourceKind for SecurityGroupSpec {
    const KIND: Kind = Kind::SecurityGroup;
    const DEPENDENTS: &'static [(Kind, &'static str)] = &[(Kind::NetworkInterface, "$.security_groups")];

    /// A group that another group's rule names as its source stays.
    fn check_delete(_site: &Site, c: &Connection, row: &ResourceRow) -> Result<(), SiteError> {
        let refs = repo::referencing(c, Kind::SecurityGroup.as_str(), "$.vpc", &spec_of::<SecurityGroupSpec>(row)?.vpc)?;
        if let Some(u) = refs
            .iter()
            .find(|g| g.id != row.id && spec_of::<SecurityGroupSpec>(g).is_ok_and(|s| s.ingress.iter().any(|r| r.source_group.as_deref() == Some(&row.id))))
        {
            return Err(SiteError::Conflict(format!("security group {} is a rule source of {}", row.name, u.name)));
        }
        Ok(())
    }
}

impl Creatable for SecurityGroupSpec {
    /// Create a security group.
    fn create(site: &Site, p: &ProjectCtx, name: &str, labels: &Labels, spec: Value) -> Result<Resource, SiteError> {
        let pc = p.clone();
        site.create_with(Kind::SecurityGroup, Some(p), name, labels, &Status::phase("Ready"), None, move |c| build_sg(c, &pc, spec, None))
    }
}

impl Patchable for SecurityGroupSpec {
    /// Replace a security group's rules (merge patch of the spec; the VPC cannot change).
    fn update(site: &Site, p: &ProjectCtx, r: &str, if_match: Option<i64>, labels: Option<&Labels>, patch: Option<&Value>) -> Result<Resource, SiteError> {
        let current = site.get(Kind::SecurityGroup, Some(p), r)?;
        let old: SecurityGroupSpec = current.spec_as()?;
        let pc = p.clone();
        let id = current.id.clone();
        site.update(Kind::SecurityGroup, Some(p), r, if_match, labels, patch, &move |c, v| {
            let out = build_sg(c, &pc, v, Some(&id))?;
            if out["vpc"] != Value::String(old.vpc.clone()) {
                return Err(SiteError::invalid("spec.vpc", "a security group cannot move to another VPC"));
            }
            Ok(out)
        })
    }
}

impl ResourceKind for NetworkInterfaceSpec {
    const KIND: Kind = Kind::NetworkInterface;
    const DEPENDENTS: &'static [(Kind, &'static str)] = &[
        (Kind::Eip, "$.network_interface"),
        (Kind::PortForward, "$.network_interface"),
        (Kind::Container, "$.network_interface"),
        (Kind::Instance, "$.network_interface"),
    ];
}

impl Creatable for NetworkInterfaceSpec {
    /// Create a network interface: resolve the subnet and groups and assign the address, in one
    /// transaction. `tap` interfaces are made only with their instance.
    fn create(site: &Site, p: &ProjectCtx, name: &str, labels: &Labels, spec: Value) -> Result<Resource, SiteError> {
        let s: NetworkInterfaceSpec = serde_json::from_value(spec).map_err(|e| SiteError::invalid("spec", e.to_string()))?;
        if s.attachment == Attachment::Tap {
            return Err(SiteError::invalid("spec.attachment", "tap interfaces are made with their instance"));
        }
        let pc = p.clone();
        site.create_with(Kind::NetworkInterface, Some(p), name, labels, &Status::phase("Pending"), None, move |c| {
            Ok(serde_json::to_value(build_interface(c, &pc, s)?)?)
        })
    }
}
