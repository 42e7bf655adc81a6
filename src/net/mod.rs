//! VPC networking engine (in progress, issue 3): address management, host object names, the VPC
//! router's nftables ruleset, and the host plumbing (namespaces, veth links, routes) that applies
//! them. The VPC resources and their reconcilers come next; see `docs/design.md` §12.

pub mod host;
pub mod ipam;
pub mod names;
pub mod render;
