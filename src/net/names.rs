//! Deterministic names of host network objects, derived from resource ids, so that a restarted
//! daemon finds (adopts) what it created and can remove exactly what it owns.
//!
//! Linux interface names are at most 15 bytes (`IFNAMSIZ` - 1), too short for an id, so they carry
//! a 12-hex-digit digest of the id behind a 3-letter role prefix.

use sha2::{Digest, Sha256};

/// The prefix of every VPC router namespace cloudlet owns.
pub const NETNS_PREFIX: &str = "clv-";
/// The prefix of every network interface (workload) namespace cloudlet owns.
pub const ENI_NETNS_PREFIX: &str = "cle-";
/// The nftables table cloudlet owns in each namespace (family `inet`).
pub const NFT_TABLE: &str = "cloudlet";

/// The role of an interface, which is its name's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// VPC-router end of a workload's veth pair (`clw…`).
    Workload,
    /// VPC-router end of a VM's tap device (`clt…`).
    Tap,
    /// Host end of a VPC's uplink veth pair (`clu…`).
    UplinkHost,
    /// VPC end of a VPC's uplink veth pair (`clr…`).
    UplinkVpc,
}

impl Role {
    fn prefix(self) -> &'static str {
        match self {
            Role::Workload => "clw",
            Role::Tap => "clt",
            Role::UplinkHost => "clu",
            Role::UplinkVpc => "clr",
        }
    }
}

/// The network namespace of a VPC: `clv-<vpc id, lowercase>`.
pub fn vpc_netns(vpc_id: &str) -> String {
    format!("{NETNS_PREFIX}{}", vpc_id.to_ascii_lowercase())
}

/// The namespace of a network interface (the workload side): `cle-<eni id, lowercase>`.
/// Containers and VMs attached to the interface run in (or connect through) it.
pub fn eni_netns(eni_id: &str) -> String {
    format!("{ENI_NETNS_PREFIX}{}", eni_id.to_ascii_lowercase())
}

/// An interface name for `role` and a resource id: 15 bytes, `[a-z0-9]`.
pub fn ifname(role: Role, id: &str) -> String {
    let digest = hex::encode(Sha256::digest(id.as_bytes()));
    format!("{}{}", role.prefix(), &digest[..12])
}

/// Whether an interface or namespace name is one of ours.
pub fn is_ours(name: &str) -> bool {
    name.starts_with(NETNS_PREFIX) || name.starts_with(ENI_NETNS_PREFIX) || ["clw", "clt", "clu", "clr"].iter().any(|p| name.starts_with(p) && name.len() == 15)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_stable_and_distinct() {
        let a = ifname(Role::Workload, "ctr-01JD5T3M9C7T4ZB3H2W6Y1Q8NA");
        assert_eq!(a.len(), 15);
        assert_eq!(a, ifname(Role::Workload, "ctr-01JD5T3M9C7T4ZB3H2W6Y1Q8NA"));
        assert_ne!(a, ifname(Role::Workload, "ctr-01JD5T3M9C7T4ZB3H2W6Y1Q8NB"));
        assert_ne!(a, ifname(Role::Tap, "ctr-01JD5T3M9C7T4ZB3H2W6Y1Q8NA"));
        assert!(a.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
        assert!(is_ours(&a) && is_ours(&vpc_netns("vpc-01X")) && !is_ours("eth0"));
        assert_eq!(vpc_netns("vpc-01JD"), "clv-vpc-01jd");
    }
}
