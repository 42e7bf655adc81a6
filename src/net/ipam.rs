//! IP address management for VPCs and subnets (IPv4).
//!
//! Rules, as AWS VPC users expect them:
//! - a VPC CIDR is a private range (RFC 1918, or RFC 6598 shared space) of prefix /16 to /28;
//! - a subnet CIDR lies inside its VPC's CIDR and overlaps no other subnet of the VPC;
//! - in a subnet, the network address, the gateway (the first host address), the next two
//!   addresses (reserved for the site's DHCP/DNS and future use) and the broadcast address are
//!   reserved; workloads get the others, statically (checked) or automatically (lowest free).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// Errors of address management; `field` names the offending request field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    /// Not a CIDR, or a forbidden range or prefix.
    #[error("{message}")]
    Invalid { field: &'static str, message: String },
    /// Overlaps another subnet of the VPC.
    #[error("{cidr} overlaps subnet {other}")]
    Overlap { field: &'static str, cidr: Ipv4Net, other: Ipv4Net },
    /// No free address is left.
    #[error("subnet {0} has no free address left")]
    Exhausted(Ipv4Net),
    /// The requested address is taken or reserved.
    #[error("{addr} is {why}")]
    Unavailable { field: &'static str, addr: Ipv4Addr, why: &'static str },
}

/// Shortest and longest VPC and subnet prefixes.
pub const MIN_PREFIX: u8 = 16;
/// Longest prefix: a /28 leaves 11 usable addresses after the 5 reserved ones.
pub const MAX_PREFIX: u8 = 28;

/// The private ranges a VPC may use: RFC 1918 and RFC 6598.
pub fn private_ranges() -> [Ipv4Net; 4] {
    [
        Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), 8).unwrap_or_default(),
        Ipv4Net::new(Ipv4Addr::new(172, 16, 0, 0), 12).unwrap_or_default(),
        Ipv4Net::new(Ipv4Addr::new(192, 168, 0, 0), 16).unwrap_or_default(),
        Ipv4Net::new(Ipv4Addr::new(100, 64, 0, 0), 10).unwrap_or_default(),
    ]
}

/// Parse a CIDR that must be in canonical form (`10.0.0.0/16`, not `10.0.0.1/16`).
pub fn parse_cidr(field: &'static str, s: &str) -> Result<Ipv4Net, IpamError> {
    let net: Ipv4Net = s.parse().map_err(|_| IpamError::Invalid { field, message: format!("{s:?} is not an IPv4 CIDR such as 10.0.0.0/16") })?;
    if net.network() != net.addr() {
        return Err(IpamError::Invalid { field, message: format!("{s} has host bits set; did you mean {}?", net.trunc()) });
    }
    if !(MIN_PREFIX..=MAX_PREFIX).contains(&net.prefix_len()) {
        return Err(IpamError::Invalid { field, message: format!("the prefix must be /{MIN_PREFIX} to /{MAX_PREFIX}") });
    }
    Ok(net)
}

/// Validate a VPC CIDR: canonical, /16–/28, inside a private range.
pub fn validate_vpc_cidr(field: &'static str, s: &str) -> Result<Ipv4Net, IpamError> {
    let net = parse_cidr(field, s)?;
    if !private_ranges().iter().any(|r| r.contains(&net)) {
        return Err(IpamError::Invalid { field, message: format!("{net} is not private (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 or 100.64.0.0/10)") });
    }
    Ok(net)
}

/// Validate a subnet CIDR against its VPC and the VPC's other subnets.
pub fn validate_subnet_cidr(field: &'static str, s: &str, vpc: Ipv4Net, others: &[Ipv4Net]) -> Result<Ipv4Net, IpamError> {
    let net = parse_cidr(field, s)?;
    if !vpc.contains(&net) {
        return Err(IpamError::Invalid { field, message: format!("{net} is not inside the VPC's {vpc}") });
    }
    if let Some(other) = others.iter().find(|o| o.contains(&net.network()) || net.contains(&o.network())) {
        return Err(IpamError::Overlap { field, cidr: net, other: *other });
    }
    Ok(net)
}

/// The gateway of a subnet: its first host address (the VPC router's address in it).
pub fn gateway(subnet: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()) + 1)
}

/// Why an address of `subnet` is reserved, or `None` when workloads may use it.
pub fn reserved(subnet: Ipv4Net, a: Ipv4Addr) -> Option<&'static str> {
    let n = u32::from(subnet.network());
    match u32::from(a).wrapping_sub(n) {
        0 => Some("the network address"),
        1 => Some("the gateway"),
        2 | 3 => Some("reserved for site services"),
        _ if a == subnet.broadcast() => Some("the broadcast address"),
        _ => None,
    }
}

/// Assign an address in `subnet`: `requested` when it is free and usable, else the lowest free
/// one. `used` holds the addresses already assigned.
pub fn assign(subnet: Ipv4Net, used: &BTreeSet<Ipv4Addr>, requested: Option<Ipv4Addr>) -> Result<Ipv4Addr, IpamError> {
    const FIELD: &str = "spec.private_ip";
    if let Some(a) = requested {
        if !subnet.contains(&a) {
            return Err(IpamError::Unavailable { field: FIELD, addr: a, why: "outside the subnet" });
        }
        if let Some(why) = reserved(subnet, a) {
            return Err(IpamError::Unavailable { field: FIELD, addr: a, why });
        }
        if used.contains(&a) {
            return Err(IpamError::Unavailable { field: FIELD, addr: a, why: "already assigned" });
        }
        return Ok(a);
    }
    subnet.hosts().find(|a| reserved(subnet, *a).is_none() && !used.contains(a)).ok_or(IpamError::Exhausted(subnet))
}

/// Number of addresses workloads can use in `subnet`.
pub fn capacity(subnet: Ipv4Net) -> u32 {
    let total = 1u32 << (32 - subnet.prefix_len());
    total.saturating_sub(5)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn vpc_cidrs_must_be_private_canonical_and_sized() {
        assert_eq!(validate_vpc_cidr("cidr", "10.0.0.0/16").unwrap(), net("10.0.0.0/16"));
        assert!(validate_vpc_cidr("cidr", "100.64.0.0/20").is_ok());
        for bad in ["8.8.8.0/24", "10.0.0.1/16", "10.0.0.0/8", "10.0.0.0/29", "nope", "10.0.0.0/33", ""] {
            assert!(matches!(validate_vpc_cidr("cidr", bad), Err(IpamError::Invalid { field: "cidr", .. })), "{bad}");
        }
    }

    #[test]
    fn subnets_stay_inside_and_never_overlap() {
        let vpc = net("10.0.0.0/16");
        let others = [net("10.0.1.0/24"), net("10.0.8.0/21")];
        assert!(validate_subnet_cidr("cidr", "10.0.2.0/24", vpc, &others).is_ok());
        assert!(matches!(validate_subnet_cidr("cidr", "10.1.0.0/24", vpc, &others), Err(IpamError::Invalid { .. })));
        assert!(matches!(validate_subnet_cidr("cidr", "10.0.1.0/25", vpc, &others), Err(IpamError::Overlap { .. })));
        assert!(matches!(validate_subnet_cidr("cidr", "10.0.0.0/20", vpc, &others), Err(IpamError::Overlap { .. })));
        assert!(matches!(validate_subnet_cidr("cidr", "10.0.9.0/24", vpc, &others), Err(IpamError::Overlap { .. })));
    }

    #[test]
    fn assignment_skips_reserved_and_used_and_reports_exhaustion() {
        let s = net("10.0.1.0/28");
        assert_eq!(gateway(s), Ipv4Addr::new(10, 0, 1, 1));
        assert_eq!(capacity(s), 11);
        let mut used = BTreeSet::new();
        assert_eq!(assign(s, &used, None).unwrap(), Ipv4Addr::new(10, 0, 1, 4));
        used.insert(Ipv4Addr::new(10, 0, 1, 4));
        assert_eq!(assign(s, &used, None).unwrap(), Ipv4Addr::new(10, 0, 1, 5));
        assert_eq!(assign(s, &used, Some(Ipv4Addr::new(10, 0, 1, 9))).unwrap(), Ipv4Addr::new(10, 0, 1, 9));
        for (a, why) in [(1, "the gateway"), (4, "already assigned"), (15, "the broadcast address"), (2, "reserved for site services")] {
            match assign(s, &used, Some(Ipv4Addr::new(10, 0, 1, a))) {
                Err(IpamError::Unavailable { why: w, .. }) => assert_eq!(w, why),
                other => panic!("{a}: {other:?}"),
            }
        }
        assert!(assign(s, &used, Some(Ipv4Addr::new(10, 0, 2, 9))).is_err());
        for a in 4..15 {
            used.insert(Ipv4Addr::new(10, 0, 1, a));
        }
        assert_eq!(assign(s, &used, None), Err(IpamError::Exhausted(s)));
    }
}
