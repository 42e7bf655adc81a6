//! Public addressing: elastic IPs (allocated from the site's `network.public_cidr`, associated 1:1
//! with a network interface) and NAT gateways (egress SNAT for a subnet through an EIP or the
//! uplink address).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use rusqlite::Connection;
use serde_json::Value;

use super::lookup::{resolve, spec_of};
use super::model::Status;
use super::net_model::{EipSpec, NatGatewaySpec, NetworkInterfaceSpec, SubnetSpec, all, eip_listeners};
use super::resource_kind::{Creatable, Labels, Patchable, ResourceKind};
use super::{Kind, ProjectCtx, Resource, Site, SiteError};
use crate::state::{ResourceRow, repo};

fn check_cap(s: &EipSpec) -> Result<(), SiteError> {
    match s.bandwidth_mbps {
        Some(m) if !(1..=100_000).contains(&m) => Err(SiteError::invalid("spec.bandwidth_mbps", "must be 1-100000 (Mbit/s)")),
        _ => Ok(()),
    }
}

/// Check that `eni` can take `eip` (inside a transaction). Errors: 409 when either is taken.
fn check_association(c: &Connection, eip_id: Option<&str>, eni_id: &str) -> Result<(), SiteError> {
    for other in repo::referencing(c, Kind::Eip.as_str(), "$.network_interface", eni_id)? {
        if Some(other.id.as_str()) != eip_id {
            return Err(SiteError::Conflict(format!("the network interface already has elastic IP {}", other.name)));
        }
    }
    if let Some(id) = eip_id {
        if let Some(n) = repo::referencing(c, Kind::NatGateway.as_str(), "$.eip", id)?.first() {
            return Err(SiteError::Conflict(format!("the elastic IP is used by NAT gateway {}", n.name)));
        }
        listeners_free(c, id)?;
    }
    Ok(())
}

/// Refuse (409) while port forwards or load balancers listen on the EIP.
fn listeners_free(c: &Connection, eip_id: &str) -> Result<(), SiteError> {
    if let Some((k, name, _)) = eip_listeners(c, eip_id)?.first() {
        return Err(SiteError::Conflict(format!("the elastic IP is the listener of {} {name}", k.as_str())));
    }
    Ok(())
}

impl Site {
    fn public_cidr(&self) -> Result<Ipv4Net, SiteError> {
        let c = &self.config().network;
        if c.uplink.is_empty() || c.public_cidr.is_empty() {
            return Err(SiteError::invalid("spec", "this site has no uplink and public_cidr configured ([network] in the config)"));
        }
        c.public_cidr.parse().map_err(|_| SiteError::misconfigured("network.public_cidr", "not a CIDR"))
    }
}

/// What the VPC reconciler needs of public addressing for one VPC, and site-wide.
pub struct PublicPlan {
    /// (public, private) for EIPs associated with this VPC's interfaces.
    pub eips: Vec<(Ipv4Addr, Ipv4Addr)>,
    /// (subnet CIDR, EIP or None for the uplink address) for this VPC's NAT gateways.
    pub nat_gateways: Vec<(Ipv4Net, Option<Ipv4Addr>)>,
    /// Every EIP in use site-wide, with the VPC (id) it routes to.
    pub routes: Vec<(Ipv4Addr, String)>,
    /// Bandwidth caps (Mbit/s) of every EIP that has one, site-wide.
    pub caps: BTreeMap<Ipv4Addr, u32>,
}

/// Compute the public addressing plan (inside one read).
pub fn plan(c: &Connection, vpc_id: &str) -> Result<PublicPlan, SiteError> {
    let mut p = PublicPlan { eips: vec![], nat_gateways: vec![], routes: vec![], caps: BTreeMap::new() };
    let subnet_of = |id: &str| -> Result<Option<(SubnetSpec, Ipv4Net)>, SiteError> {
        let Some(row) = repo::get(c, id)? else { return Ok(None) };
        let s: SubnetSpec = spec_of(&row)?;
        let net = s.cidr.parse().map_err(|_| SiteError::Corrupt("a subnet CIDR".into()))?;
        Ok(Some((s, net)))
    };
    let eip_rows = all(c, Kind::Eip)?;
    let eip_ip = |id: &str| eip_rows.iter().find(|r| r.id == id).and_then(|r| spec_of::<EipSpec>(r).ok()?.public_ip);
    for row in &eip_rows {
        let s: EipSpec = spec_of(row)?;
        if let (Some(ip), Some(m)) = (s.public_ip, s.bandwidth_mbps) {
            p.caps.insert(ip, m);
        }
        let (Some(public), Some(eni)) = (s.public_ip, s.network_interface) else { continue };
        let Some(eni_row) = repo::get(c, &eni)? else { continue };
        let e: NetworkInterfaceSpec = spec_of(&eni_row)?;
        let (Some(private), Some((sn, _))) = (e.private_ip, subnet_of(&e.subnet)?) else { continue };
        p.routes.push((public, sn.vpc.clone()));
        if sn.vpc == vpc_id {
            p.eips.push((public, private));
        }
    }
    for row in all(c, Kind::NatGateway)? {
        let s: NatGatewaySpec = spec_of(&row)?;
        let Some((sn, net)) = subnet_of(&s.subnet)? else { continue };
        let eip = s.eip.as_deref().and_then(eip_ip);
        if let Some(ip) = eip {
            p.routes.push((ip, sn.vpc.clone()));
        }
        if sn.vpc == vpc_id {
            p.nat_gateways.push((net, eip));
        }
    }
    Ok(p)
}

impl ResourceKind for EipSpec {
    const KIND: Kind = Kind::Eip;

    /// An associated address, or one a NAT gateway or a listener uses, stays.
    fn check_delete(_site: &Site, c: &Connection, row: &ResourceRow) -> Result<(), SiteError> {
        if spec_of::<EipSpec>(row)?.network_interface.is_some() {
            return Err(SiteError::Conflict(format!("elastic IP {} is associated; disassociate it first", row.name)));
        }
        if let Some(n) = repo::referencing(c, Kind::NatGateway.as_str(), "$.eip", &row.id)?.first() {
            return Err(SiteError::Conflict(format!("elastic IP {} is used by NAT gateway {}", row.name, n.name)));
        }
        listeners_free(c, &row.id)
    }
}

impl Creatable for EipSpec {
    /// Allocate an elastic IP (the lowest free address of the pool), optionally associated.
    /// Errors: 409 when the pool is exhausted or the interface already has one.
    fn create(site: &Site, p: &ProjectCtx, name: &str, labels: &Labels, spec: Value) -> Result<Resource, SiteError> {
        let pool = site.public_cidr()?;
        let mut s: EipSpec = serde_json::from_value(spec).map_err(|e| SiteError::invalid("spec", e.to_string()))?;
        if s.public_ip.is_some() {
            return Err(SiteError::invalid("spec.public_ip", "the site allocates the address"));
        }
        check_cap(&s)?;
        let pc = p.clone();
        site.create_with(Kind::Eip, Some(p), name, labels, &Status::phase("Allocated"), None, move |c| {
            let used: BTreeSet<Ipv4Addr> = all(c, Kind::Eip)?.iter().filter_map(|r| spec_of::<EipSpec>(r).ok()?.public_ip).collect();
            let ip = pool.hosts().find(|a| !used.contains(a)).ok_or_else(|| SiteError::Conflict(format!("the public pool {pool} is exhausted")))?;
            s.public_ip = Some(ip);
            if let Some(eni) = &s.network_interface {
                let row = resolve(c, Kind::NetworkInterface, &pc, "spec.network_interface", eni)?;
                check_association(c, None, &row.id)?;
                s.network_interface = Some(row.id);
            }
            Ok(serde_json::to_value(&s)?)
        })
    }
}

impl Patchable for EipSpec {
    /// Associate (`{"spec": {"network_interface": "a"}}`) or disassociate (`null`) an EIP.
    fn update(site: &Site, p: &ProjectCtx, r: &str, if_match: Option<i64>, labels: Option<&Labels>, patch: Option<&Value>) -> Result<Resource, SiteError> {
        let current = site.get(Kind::Eip, Some(p), r)?;
        let old: EipSpec = current.spec_as()?;
        let (pc, id) = (p.clone(), current.id.clone());
        site.update(Kind::Eip, Some(p), r, if_match, labels, patch, &move |c, v| {
            let mut s: EipSpec = serde_json::from_value(v).map_err(|e| SiteError::invalid("spec", e.to_string()))?;
            if s.public_ip != old.public_ip {
                return Err(SiteError::invalid("spec.public_ip", "the address of an elastic IP cannot change"));
            }
            check_cap(&s)?;
            if let Some(eni) = &s.network_interface {
                let row = resolve(c, Kind::NetworkInterface, &pc, "spec.network_interface", eni)?;
                check_association(c, Some(&id), &row.id)?;
                s.network_interface = Some(row.id);
            }
            Ok(serde_json::to_value(&s)?)
        })
    }
}

impl ResourceKind for NatGatewaySpec {
    const KIND: Kind = Kind::NatGateway;
}

impl Creatable for NatGatewaySpec {
    /// Create a NAT gateway for a subnet. Errors: 409 when the subnet has one or the EIP is taken.
    fn create(site: &Site, p: &ProjectCtx, name: &str, labels: &Labels, spec: Value) -> Result<Resource, SiteError> {
        site.public_cidr()?;
        let mut s: NatGatewaySpec = serde_json::from_value(spec).map_err(|e| SiteError::invalid("spec", e.to_string()))?;
        let pc = p.clone();
        site.create_with(Kind::NatGateway, Some(p), name, labels, &Status::phase("Ready"), None, move |c| {
            let subnet = resolve(c, Kind::Subnet, &pc, "spec.subnet", &s.subnet)?;
            if let Some(n) = repo::referencing(c, Kind::NatGateway.as_str(), "$.subnet", &subnet.id)?.first() {
                return Err(SiteError::Conflict(format!("subnet {} already has NAT gateway {}", subnet.name, n.name)));
            }
            s.subnet = subnet.id;
            if let Some(e) = &s.eip {
                let eip = resolve(c, Kind::Eip, &pc, "spec.eip", e)?;
                if spec_of::<EipSpec>(&eip)?.network_interface.is_some() {
                    return Err(SiteError::Conflict(format!("elastic IP {} is associated with a network interface", eip.name)));
                }
                if let Some(n) = repo::referencing(c, Kind::NatGateway.as_str(), "$.eip", &eip.id)?.first() {
                    return Err(SiteError::Conflict(format!("elastic IP {} is used by NAT gateway {}", eip.name, n.name)));
                }
                listeners_free(c, &eip.id)?;
                s.eip = Some(eip.id);
            }
            Ok(serde_json::to_value(&s)?)
        })
    }
}
