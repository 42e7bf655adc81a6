//! The network resources' specs (VPC, subnet, security group, network interface, elastic IP,
//! NAT gateway, port forward, load balancer) and the read-only queries over them that more than
//! one of `network`, `public` and `balancing` needs. It sits below those three: it imports none
//! of them.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::lookup::spec_of;
use super::{Kind, SiteError};
use crate::net::ipam;
/// The transport protocol of rules, forwards and listeners (the network model's type).
pub use crate::net::render::Protocol;
use crate::state::{ResourceRow, repo};

/// Spec of a VPC.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VpcSpec {
    /// A private IPv4 CIDR, /16 to /28 (RFC 1918 or RFC 6598). Two VPCs may use the same one.
    pub cidr: String,
}

/// Spec of a subnet.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubnetSpec {
    /// The VPC (id or name on create; stored as the id).
    pub vpc: String,
    /// Inside the VPC's CIDR, overlapping no other subnet of it.
    pub cidr: String,
}

/// One inbound rule of a security group.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SgRule {
    /// `tcp`, `udp`, `icmp` or `all`.
    pub protocol: Protocol,
    /// `"80"` or `"8000-8099"`; absent means every port (TCP/UDP only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<String>,
    /// Source addresses; exactly one of `source_cidr` and `source_group`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_cidr: Option<String>,
    /// Source security group of the same VPC (id or name on write; stored as the id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_group: Option<String>,
}

/// Spec of a security group: stateful, default deny inbound, allow outbound.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecurityGroupSpec {
    /// The VPC (id or name on create; stored as the id).
    pub vpc: String,
    /// Inbound rules (at most 1,000).
    #[serde(default)]
    pub ingress: Vec<SgRule>,
}

/// How a network interface reaches its workload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Attachment {
    /// A veth pair into the interface's own namespace (`cle-<id>`), which a container joins.
    #[default]
    Namespace,
    /// A persistent tap device in the VPC router's namespace, which an instance's virtio-net
    /// serves (set by the instance create; no namespace of its own).
    Tap,
}

impl Attachment {
    fn is_namespace(&self) -> bool {
        *self == Attachment::Namespace
    }
}

/// Spec of a network interface.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkInterfaceSpec {
    /// The subnet (id or name on create; stored as the id).
    pub subnet: String,
    /// A free address of the subnet; assigned automatically when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub private_ip: Option<Ipv4Addr>,
    /// Security groups of the subnet's VPC (ids or names on write; stored as ids).
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// `namespace` (the default) or `tap` (an instance's interface, made with the instance).
    #[serde(default, skip_serializing_if = "Attachment::is_namespace")]
    pub attachment: Attachment,
}
/// Spec of an elastic IP.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EipSpec {
    /// Allocated by the site from `network.public_cidr`; read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub public_ip: Option<Ipv4Addr>,
    /// The associated network interface (id or name on write; stored as the id), or null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_interface: Option<String>,
    /// Bandwidth cap in Mbit/s (1-100000) for each direction through the uplink; none when
    /// absent. Shaped with tc HTB on the VPC's transit link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_mbps: Option<u32>,
}

/// Spec of a NAT gateway.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NatGatewaySpec {
    /// The subnet whose egress it translates (one NAT gateway per subnet).
    pub subnet: String,
    /// An unassociated EIP to translate to; absent means the uplink address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eip: Option<String>,
}

/// Spec of a port forward.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortForwardSpec {
    /// `tcp` or `udp`.
    pub protocol: Protocol,
    /// The public port (1-65535).
    pub public_port: u16,
    /// An elastic IP to listen on (id or name on write; stored as the id); absent means the
    /// site's uplink address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eip: Option<String>,
    /// The target network interface (id or name on write; stored as the id).
    pub network_interface: String,
    /// The target port (1-65535).
    pub private_port: u16,
}

/// Where a load balancer listens.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// `tcp` or `udp`.
    pub protocol: Protocol,
    /// 1-65535.
    pub port: u16,
    /// A public listener on this elastic IP (id or name on write; stored as the id), or
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eip: Option<String>,
    /// an internal listener on a VIP of this subnet of the VPC (id or name; stored as the id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    /// The internal VIP: a free address of `subnet`, assigned by IPAM when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub vip: Option<Ipv4Addr>,
}

/// A load balancer backend.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BackendSpec {
    /// An address inside the VPC.
    #[schema(value_type = String)]
    pub ip: Ipv4Addr,
    /// 1-65535.
    pub port: u16,
    /// Relative share of new flows, 1-100 (default 1).
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

/// How flows pick a backend.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Affinity {
    /// Each new flow picks at random, in proportion to the weights (`numgen random`).
    #[default]
    None,
    /// A client address always lands on the same backend while the set is unchanged (`jhash`).
    SourceIp,
}

/// TCP connect health checks, run by the daemon from the VPC router.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// The port to connect to; the backend's own port when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Seconds between checks, 1-300 (default 5).
    #[serde(default = "five")]
    pub interval_seconds: u32,
    /// Seconds a connect may take, 1-60 and at most the interval (default 2).
    #[serde(default = "two")]
    pub timeout_seconds: u32,
    /// Consecutive successes that put a backend back in service, 1-10 (default 2).
    #[serde(default = "two")]
    pub healthy_threshold: u32,
    /// Consecutive failures that take a backend out of service, 1-10 (default 2).
    #[serde(default = "two")]
    pub unhealthy_threshold: u32,
}

fn five() -> u32 {
    5
}

fn two() -> u32 {
    2
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck { port: None, interval_seconds: 5, timeout_seconds: 2, healthy_threshold: 2, unhealthy_threshold: 2 }
    }
}

fn default_health_check() -> Option<HealthCheck> {
    Some(HealthCheck::default())
}

/// Spec of a load balancer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancerSpec {
    /// The VPC (id or name on create; stored as the id).
    pub vpc: String,
    pub listener: Listener,
    /// At most 64, each `ip:port` once.
    #[serde(default)]
    pub backends: Vec<BackendSpec>,
    #[serde(default)]
    pub affinity: Affinity,
    /// `null` turns health checks off (every backend stays in service).
    #[serde(default = "default_health_check")]
    pub health_check: Option<HealthCheck>,
}

/// Most backends of one load balancer.
pub const MAX_BACKENDS: usize = 64;

pub(super) fn bad(field: &str) -> impl Fn(ipam::IpamError) -> SiteError + '_ {
    move |e| match e {
        ipam::IpamError::Overlap { .. } | ipam::IpamError::Exhausted(_) => SiteError::ConflictOn { field: field.to_string(), message: e.to_string() },
        other => SiteError::invalid(field, other.to_string()),
    }
}

/// Addresses of a subnet already taken: its interfaces' and its internal load balancer VIPs.
pub(super) fn used_addresses(c: &Connection, subnet_id: &str) -> Result<BTreeSet<Ipv4Addr>, SiteError> {
    let mut used: BTreeSet<Ipv4Addr> = repo::referencing(c, Kind::NetworkInterface.as_str(), "$.subnet", subnet_id)?
        .iter()
        .filter_map(|r| spec_of::<NetworkInterfaceSpec>(r).ok()?.private_ip)
        .collect();
    for r in repo::referencing(c, Kind::LoadBalancer.as_str(), "$.listener.subnet", subnet_id)? {
        if let Some(vip) = spec_of::<LoadBalancerSpec>(&r)?.listener.vip {
            used.insert(vip);
        }
    }
    Ok(used)
}
pub(super) fn all(c: &Connection, kind: Kind) -> Result<Vec<ResourceRow>, SiteError> {
    Ok(repo::list(c, kind.as_str(), None, None, usize::MAX >> 1)?)
}

/// The VPC (id) a network interface belongs to.
pub(super) fn vpc_of_interface(c: &Connection, eni_id: &str) -> Result<Option<String>, SiteError> {
    let Some(eni) = repo::get(c, eni_id)? else { return Ok(None) };
    let s: NetworkInterfaceSpec = spec_of(&eni)?;
    let Some(sn) = repo::get(c, &s.subnet)? else { return Ok(None) };
    Ok(Some(spec_of::<SubnetSpec>(&sn)?.vpc))
}

/// What uses an elastic IP as a listener address: `(kind, name, vpc id)` of each port forward
/// and load balancer on it.
pub(super) fn eip_listeners(c: &Connection, eip_id: &str) -> Result<Vec<(Kind, String, String)>, SiteError> {
    let mut out = Vec::new();
    for row in repo::referencing(c, Kind::PortForward.as_str(), "$.eip", eip_id)? {
        let s: PortForwardSpec = spec_of(&row)?;
        out.push((Kind::PortForward, row.name.clone(), vpc_of_interface(c, &s.network_interface)?.unwrap_or_default()));
    }
    for row in repo::referencing(c, Kind::LoadBalancer.as_str(), "$.listener.eip", eip_id)? {
        out.push((Kind::LoadBalancer, row.name.clone(), spec_of::<LoadBalancerSpec>(&row)?.vpc));
    }
    Ok(out)
}
