//! The seam between the VPC network model and the kernel: every host side effect the VPC and
//! network interface reconcilers make (namespaces, veth and tap links, addresses, routes, nft
//! rulesets, tc caps, the routers' DHCP servers) goes through [`NetHost`].
//!
//! [`KernelNetHost`] is the real one (netlink through `rtnetlink`, nftables, tc, the in-process
//! DHCP servers). [`RecordingNetHost`] records each call and keeps just enough state (which
//! namespaces and router ports exist) to answer the queries, so reconcile decisions can be
//! tested without root. Modelled on youki's `Syscall` trait and its test double.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Mutex;

use super::dhcp::{self, Lease};
use super::host::{self, Attachment, HostError, TapPort, Transit};
use super::services::{self, Cap, Direction};

/// Host network operations, each idempotent: calling one twice leaves the host as calling it
/// once. Errors are [`HostError`]s naming the step that failed.
pub trait NetHost: Send + Sync {
    /// Make the named network namespace (`/run/netns/NAME`) if missing, owned by the user
    /// namespace pinned on `owner` when one is given (a container's project's).
    fn ensure_netns(&self, name: &str, owner: Option<&Path>) -> Result<(), HostError>;
    /// Remove the named namespace (and so every link in it); absent is fine.
    fn delete_netns(&self, name: &str) -> Result<(), HostError>;
    /// Make a VPC router namespace: forwarding on, proxy ARP, loopback up.
    fn ensure_router(&self, netns: &str) -> Result<(), HostError>;
    /// Make (or fix) an instance's tap port in a router namespace.
    fn ensure_tap(&self, t: &TapPort) -> Result<(), HostError>;
    /// Make (or fix) a veth attachment from a router to a workload namespace.
    fn attach(&self, a: &Attachment) -> Result<(), HostError>;
    /// Remove a router port (`router_if`) and its peer.
    fn detach(&self, router_netns: &str, router_if: &str) -> Result<(), HostError>;
    /// Names of the links in `netns` that start with `prefix`.
    fn links_with_prefix(&self, netns: &str, prefix: &str) -> Result<Vec<String>, HostError>;
    /// Replace the `cloudlet` nft tables of `netns` with `ruleset` (libnftables JSON) atomically.
    fn apply_ruleset(&self, netns: &str, ruleset: &serde_json::Value) -> Result<(), HostError>;
    /// The nftables generation of `netns` now (it changes with every commit there).
    fn ruleset_generation(&self, netns: &str) -> Result<u32, HostError>;
    /// Make (or fix) the transit link from the uplink namespace to a VPC router.
    fn ensure_transit(&self, t: &Transit, uplink_if: &str) -> Result<(), HostError>;
    /// Make the uplink namespace's `/32` routes exactly `routes` (`(public ip, via)`).
    fn sync_uplink_routes(&self, uplink_netns: &str, routes: Vec<(Ipv4Addr, Ipv4Addr)>) -> Result<(), HostError>;
    /// Make the addresses on `netns`'s loopback exactly `want` (gateways and VIPs).
    fn sync_local_addresses(&self, netns: &str, want: Vec<Ipv4Addr>) -> Result<(), HostError>;
    /// Make the HTB caps on `dev` in `netns` exactly `caps`, matched on `dir`.
    fn sync_caps(&self, netns: &str, dev: &str, dir: Direction, caps: &[Cap]) -> Result<(), HostError>;
    /// Make the DHCP server of router `netns` answer exactly `leases` (`(port, lease)`).
    fn dhcp_sync(&self, netns: &str, leases: Vec<(String, Lease)>) -> Result<(), HostError>;
    /// Stop the DHCP server of router `netns`.
    fn dhcp_stop(&self, netns: &str);
}

/// The real host: the functions of [`host`], [`services`] and [`dhcp`].
#[derive(Debug, Default)]
pub struct KernelNetHost;

impl NetHost for KernelNetHost {
    fn ensure_netns(&self, name: &str, owner: Option<&Path>) -> Result<(), HostError> {
        host::ensure_netns(name, owner)
    }
    fn delete_netns(&self, name: &str) -> Result<(), HostError> {
        host::delete_netns(name)
    }
    fn ensure_router(&self, netns: &str) -> Result<(), HostError> {
        host::ensure_router(netns)
    }
    fn ensure_tap(&self, t: &TapPort) -> Result<(), HostError> {
        host::ensure_tap(t)
    }
    fn attach(&self, a: &Attachment) -> Result<(), HostError> {
        host::attach(a)
    }
    fn detach(&self, router_netns: &str, router_if: &str) -> Result<(), HostError> {
        host::detach(router_netns, router_if)
    }
    fn links_with_prefix(&self, netns: &str, prefix: &str) -> Result<Vec<String>, HostError> {
        host::links_with_prefix(netns, prefix)
    }
    fn apply_ruleset(&self, netns: &str, ruleset: &serde_json::Value) -> Result<(), HostError> {
        host::apply_ruleset(netns, ruleset)
    }
    fn ruleset_generation(&self, netns: &str) -> Result<u32, HostError> {
        super::watch::ruleset_generation(netns)
    }
    fn ensure_transit(&self, t: &Transit, uplink_if: &str) -> Result<(), HostError> {
        host::ensure_transit(t, uplink_if)
    }
    fn sync_uplink_routes(&self, uplink_netns: &str, routes: Vec<(Ipv4Addr, Ipv4Addr)>) -> Result<(), HostError> {
        host::sync_uplink_routes(uplink_netns, routes)
    }
    fn sync_local_addresses(&self, netns: &str, want: Vec<Ipv4Addr>) -> Result<(), HostError> {
        services::sync_local_addresses(netns, want)
    }
    fn sync_caps(&self, netns: &str, dev: &str, dir: Direction, caps: &[Cap]) -> Result<(), HostError> {
        services::sync_caps(netns, dev, dir, caps)
    }
    fn dhcp_sync(&self, netns: &str, leases: Vec<(String, Lease)>) -> Result<(), HostError> {
        dhcp::servers().sync(netns, leases)
    }
    fn dhcp_stop(&self, netns: &str) {
        dhcp::servers().stop(netns)
    }
}

/// One recorded call of a [`RecordingNetHost`].
#[derive(Debug, Clone, PartialEq)]
pub enum NetCall {
    EnsureNetns(String),
    DeleteNetns(String),
    EnsureRouter(String),
    EnsureTap { router_netns: String, ifname: String, ip: Ipv4Addr, gateway: Ipv4Addr },
    Attach { router_netns: String, router_if: String, workload_netns: String, ip: Ipv4Addr, prefix: u8, gateway: Ipv4Addr },
    Detach { router_netns: String, router_if: String },
    ApplyRuleset { netns: String, ruleset: serde_json::Value },
    EnsureTransit { router_netns: String, host_if: String, vpc_if: String, host_ip: Ipv4Addr, vpc_ip: Ipv4Addr, uplink_if: String },
    SyncUplinkRoutes { netns: String, routes: Vec<(Ipv4Addr, Ipv4Addr)> },
    SyncLocalAddresses { netns: String, addrs: Vec<Ipv4Addr> },
    SyncCaps { netns: String, dev: String, dir: Direction, caps: Vec<Cap> },
    DhcpSync { netns: String, leases: Vec<(String, Lease)> },
    DhcpStop(String),
}

/// A [`NetHost`] that changes nothing on the host: it records each call, and tracks the
/// namespaces and router ports the calls made, so [`NetHost::links_with_prefix`] answers as the
/// kernel would. Failures can be injected per operation name (see [`RecordingNetHost::fail`]).
#[derive(Debug, Default)]
pub struct RecordingNetHost {
    calls: Mutex<Vec<NetCall>>,
    /// Namespace -> the links in it the calls made.
    links: Mutex<BTreeMap<String, BTreeSet<String>>>,
    failing: Mutex<BTreeSet<&'static str>>,
}

impl RecordingNetHost {
    /// Every call so far, in order; the log is emptied.
    pub fn take(&self) -> Vec<NetCall> {
        std::mem::take(&mut *lock(&self.calls))
    }

    /// The namespaces that exist now (made and not deleted).
    pub fn namespaces(&self) -> BTreeSet<String> {
        lock(&self.links).keys().cloned().collect()
    }

    /// Make operation `op` (a method name such as `"attach"`) fail from now on.
    pub fn fail(&self, op: &'static str) {
        lock(&self.failing).insert(op);
    }

    fn call(&self, op: &'static str, c: NetCall) -> Result<(), HostError> {
        lock(&self.calls).push(c);
        if lock(&self.failing).contains(op) {
            return Err(HostError::Tool { what: op.to_string(), stderr: "injected failure".into() });
        }
        Ok(())
    }

    fn add_link(&self, netns: &str, link: &str) {
        lock(&self.links).entry(netns.to_string()).or_default().insert(link.to_string());
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl NetHost for RecordingNetHost {
    fn ensure_netns(&self, name: &str, _owner: Option<&Path>) -> Result<(), HostError> {
        self.call("ensure_netns", NetCall::EnsureNetns(name.into()))?;
        lock(&self.links).entry(name.to_string()).or_default();
        Ok(())
    }
    fn delete_netns(&self, name: &str) -> Result<(), HostError> {
        self.call("delete_netns", NetCall::DeleteNetns(name.into()))?;
        lock(&self.links).remove(name);
        Ok(())
    }
    fn ensure_router(&self, netns: &str) -> Result<(), HostError> {
        self.call("ensure_router", NetCall::EnsureRouter(netns.into()))?;
        lock(&self.links).entry(netns.to_string()).or_default();
        Ok(())
    }
    fn ensure_tap(&self, t: &TapPort) -> Result<(), HostError> {
        self.call("ensure_tap", NetCall::EnsureTap { router_netns: t.router_netns.clone(), ifname: t.ifname.clone(), ip: t.ip, gateway: t.gateway })?;
        self.add_link(&t.router_netns, &t.ifname);
        Ok(())
    }
    fn attach(&self, a: &Attachment) -> Result<(), HostError> {
        self.call(
            "attach",
            NetCall::Attach {
                router_netns: a.router_netns.clone(),
                router_if: a.router_if.clone(),
                workload_netns: a.workload_netns.clone(),
                ip: a.ip,
                prefix: a.prefix,
                gateway: a.gateway,
            },
        )?;
        self.add_link(&a.router_netns, &a.router_if);
        self.add_link(&a.workload_netns, &a.workload_if);
        Ok(())
    }
    fn detach(&self, router_netns: &str, router_if: &str) -> Result<(), HostError> {
        self.call("detach", NetCall::Detach { router_netns: router_netns.into(), router_if: router_if.into() })?;
        if let Some(l) = lock(&self.links).get_mut(router_netns) {
            l.remove(router_if);
        }
        Ok(())
    }
    fn links_with_prefix(&self, netns: &str, prefix: &str) -> Result<Vec<String>, HostError> {
        Ok(lock(&self.links).get(netns).map(|l| l.iter().filter(|n| n.starts_with(prefix)).cloned().collect()).unwrap_or_default())
    }
    fn apply_ruleset(&self, netns: &str, ruleset: &serde_json::Value) -> Result<(), HostError> {
        self.call("apply_ruleset", NetCall::ApplyRuleset { netns: netns.into(), ruleset: ruleset.clone() })
    }
    fn ruleset_generation(&self, netns: &str) -> Result<u32, HostError> {
        // One generation per recorded ruleset commit in that namespace.
        Ok(lock(&self.calls).iter().filter(|c| matches!(c, NetCall::ApplyRuleset { netns: n, .. } if n == netns)).count() as u32)
    }
    fn ensure_transit(&self, t: &Transit, uplink_if: &str) -> Result<(), HostError> {
        self.call(
            "ensure_transit",
            NetCall::EnsureTransit {
                router_netns: t.router_netns.clone(),
                host_if: t.host_if.clone(),
                vpc_if: t.vpc_if.clone(),
                host_ip: t.host_ip,
                vpc_ip: t.vpc_ip,
                uplink_if: uplink_if.into(),
            },
        )?;
        self.add_link(&t.uplink_netns, &t.host_if);
        self.add_link(&t.router_netns, &t.vpc_if);
        Ok(())
    }
    fn sync_uplink_routes(&self, uplink_netns: &str, routes: Vec<(Ipv4Addr, Ipv4Addr)>) -> Result<(), HostError> {
        self.call("sync_uplink_routes", NetCall::SyncUplinkRoutes { netns: uplink_netns.into(), routes })
    }
    fn sync_local_addresses(&self, netns: &str, want: Vec<Ipv4Addr>) -> Result<(), HostError> {
        self.call("sync_local_addresses", NetCall::SyncLocalAddresses { netns: netns.into(), addrs: want })
    }
    fn sync_caps(&self, netns: &str, dev: &str, dir: Direction, caps: &[Cap]) -> Result<(), HostError> {
        self.call("sync_caps", NetCall::SyncCaps { netns: netns.into(), dev: dev.into(), dir, caps: caps.to_vec() })
    }
    fn dhcp_sync(&self, netns: &str, leases: Vec<(String, Lease)>) -> Result<(), HostError> {
        self.call("dhcp_sync", NetCall::DhcpSync { netns: netns.into(), leases })
    }
    fn dhcp_stop(&self, netns: &str) {
        let _ = self.call("dhcp_stop", NetCall::DhcpStop(netns.into()));
    }
}
