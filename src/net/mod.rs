//! VPC networking engine: address management, host object names, the VPC router's
//! nftables ruleset, the host plumbing (namespaces, veth links, routes) that applies them, the
//! router's services (local addresses, health probes, bandwidth caps) and its DHCPv4 server. The
//! resources and reconcilers that drive it are in `site::network`; see `docs/design.md` §12.

pub mod dhcp;
pub mod egress;
pub mod host;
pub mod ipam;
pub mod names;
pub mod nethost;
pub mod render;
pub mod services;
pub mod watch;
