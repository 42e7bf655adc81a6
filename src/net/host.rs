//! Host plumbing for VPCs: network namespaces, veth links, addresses, routes (rtnetlink) and
//! rulesets (nft). Every function is idempotent: it adopts what already exists.
//!
//! Work inside a namespace runs on a short-lived thread that `setns()`s into it and drives an
//! rtnetlink connection on its own current-thread runtime; a netlink socket, and any process the
//! thread spawns (such as `nft`), belong to the namespace of the thread that created them.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use futures_util::TryStreamExt;
use rtnetlink::{Handle, LinkUnspec, LinkVeth, RouteMessageBuilder};

/// Where named network namespaces live (as with `ip netns`).
pub const NETNS_DIR: &str = "/run/netns";

/// Errors of host plumbing.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A file system or process step failed.
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    /// A namespace system call failed.
    #[error("{what}: {source}")]
    Sys { what: String, source: nix::Error },
    /// A netlink request failed.
    #[error("{what}: {source}")]
    Netlink { what: String, source: rtnetlink::Error },
    /// `nft` refused a ruleset.
    #[error("nft: {0}")]
    Nft(String),
    /// A command-line tool (iproute2's `tc`) refused a request.
    #[error("{what}: {stderr}")]
    Tool { what: String, stderr: String },
    /// A link that was just created is not there.
    #[error("{0}")]
    Missing(String),
    /// A worker thread panicked.
    #[error("namespace worker thread panicked")]
    Thread,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HostError {
    let what = what.into();
    move |source| HostError::Io { what, source }
}

fn sys(what: impl Into<String>) -> impl FnOnce(nix::Error) -> HostError {
    let what = what.into();
    move |source| HostError::Sys { what, source }
}

fn nl(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> HostError {
    let what = what.into();
    move |source| HostError::Netlink { what, source }
}

/// The path of a named namespace.
pub fn netns_path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Whether `path` holds a pinned namespace.
pub fn is_netns(path: &Path) -> bool {
    crate::node::ns::is_nsfs(path)
}

/// Create the named namespace unless it exists (a bind mount of a new namespace on
/// `/run/netns/NAME`, compatible with `ip netns`). With `owner` (a pinned user namespace, see
/// [`crate::node::ns`]) the namespace is made inside it, so a container of that user namespace
/// may join it; one that exists with another owner (made before, or under another mapping) is
/// made again, taking its interfaces with it, for the interface reconciler to re-attach.
pub fn ensure_netns(name: &str, owner: Option<&Path>) -> Result<(), HostError> {
    let path = netns_path(name);
    if is_netns(&path) {
        let want = match owner {
            Some(o) => crate::node::ns::ns_id(o).map_err(io(format!("reading the user namespace {}", o.display())))?,
            None => crate::node::ns::ns_id(Path::new("/proc/self/ns/user")).map_err(io("reading the daemon's user namespace"))?,
        };
        if crate::node::ns::owner_id(&path).ok() == Some(want) {
            return Ok(());
        }
        if netns_in_use(&path) {
            // A workload started before still runs in it: leave it be until it ends (a container
            // that starts meanwhile cannot join it, fails, and is retried after this pass).
            tracing::info!(netns = name, "kept under its old user namespace while a process runs in it");
            return Ok(());
        }
        tracing::info!(netns = name, "making the namespace again under its user namespace");
        delete_netns(name)?;
    }
    std::fs::create_dir_all(NETNS_DIR).map_err(io(format!("creating {NETNS_DIR}")))?;
    if let Some(o) = owner {
        return crate::node::ns::pin_netns_in(&path, o).map_err(io(format!("making {} in the user namespace {}", path.display(), o.display())));
    }
    std::fs::File::create(&path).map_err(io(format!("creating {}", path.display())))?;
    let p = path.clone();
    let made = std::thread::spawn(move || -> Result<(), HostError> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(sys("unshare(CLONE_NEWNET)"))?;
        nix::mount::mount(Some("/proc/thread-self/ns/net"), &p, None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>)
            .map_err(sys(format!("bind-mounting the namespace on {}", p.display())))
    })
    .join()
    .map_err(|_| HostError::Thread)?;
    if made.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    made
}

/// Whether any process runs in the namespace pinned on `path` (a scan of `/proc/*/ns/net`).
fn netns_in_use(path: &Path) -> bool {
    let Ok(want) = crate::node::ns::ns_id(path) else { return false };
    let procs = std::fs::read_dir("/proc").into_iter().flatten().flatten();
    procs
        .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .any(|e| crate::node::ns::ns_id(&e.path().join("ns/net")).ok() == Some(want))
}

/// Remove the named namespace (its interfaces go with it). Absent is fine.
pub fn delete_netns(name: &str) -> Result<(), HostError> {
    let path = netns_path(name);
    crate::node::ns::unpin(&path).map_err(io(format!("removing {}", path.display())))
}

/// Names of the namespaces in `/run/netns` that start with `prefix`.
pub fn list_netns(prefix: &str) -> Vec<String> {
    std::fs::read_dir(NETNS_DIR)
        .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|n| n.starts_with(prefix)).collect())
        .unwrap_or_default()
}

/// Run `f` with an rtnetlink handle inside the namespace `name` (empty: the daemon's own), on a
/// dedicated thread.
pub fn in_netns<T, F, Fut>(name: &str, f: F) -> Result<T, HostError>
where
    T: Send + 'static,
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, HostError>>,
{
    let path = (!name.is_empty()).then(|| netns_path(name));
    std::thread::spawn(move || -> Result<T, HostError> {
        if let Some(path) = path {
            let ns = std::fs::File::open(&path).map_err(io(format!("opening {}", path.display())))?;
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(sys(format!("setns {}", path.display())))?;
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(io("starting a namespace runtime"))?;
        rt.block_on(async move {
            let (conn, handle, _) = rtnetlink::new_connection().map_err(io("opening rtnetlink"))?;
            let task = tokio::spawn(conn);
            let out = f(handle).await;
            task.abort();
            out
        })
    })
    .join()
    .map_err(|_| HostError::Thread)?
}

/// Write a sysctl of the calling thread's namespace (`net/ipv4/ip_forward`).
fn sysctl(key: &str, value: &str) -> Result<(), HostError> {
    std::fs::write(Path::new("/proc/sys").join(key), value).map_err(io(format!("sysctl {key}={value}")))
}

/// Index of a link by name, if present.
pub async fn link_index(h: &Handle, name: &str) -> Result<Option<u32>, HostError> {
    match h.link().get().match_name(name.to_string()).execute().try_next().await {
        Ok(Some(m)) => Ok(Some(m.header.index)),
        Ok(None) => Ok(None),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(nl(format!("looking up link {name}"))(e)),
    }
}

async fn set_up(h: &Handle, index: u32) -> Result<(), HostError> {
    h.link().set(LinkUnspec::new_with_index(index).up().build()).execute().await.map_err(nl("setting a link up"))
}

async fn add_addr(h: &Handle, index: u32, ip: Ipv4Addr, prefix: u8) -> Result<(), HostError> {
    match h.address().add(index, IpAddr::V4(ip), prefix).execute().await {
        Ok(()) => Ok(()),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => Ok(()),
        Err(e) => Err(nl(format!("adding address {ip}/{prefix}"))(e)),
    }
}

async fn replace_route(h: &Handle, msg: rtnetlink::packet_route::route::RouteMessage, what: &str) -> Result<(), HostError> {
    h.route().add(msg).replace().execute().await.map_err(nl(what.to_string()))
}

/// Prepare a VPC router namespace: loopback up, forwarding on, strict reverse-path filtering.
pub fn ensure_router(netns: &str) -> Result<(), HostError> {
    ensure_netns(netns, None)?;
    in_netns(netns, |h| async move {
        sysctl("net/ipv4/ip_forward", "1")?;
        // Strict reverse-path filtering: with a /32 route per workload port, a workload that
        // forges another's source address is dropped (anti-spoofing).
        sysctl("net/ipv4/conf/all/rp_filter", "1")?;
        sysctl("net/ipv4/conf/default/rp_filter", "1")?;
        if let Some(lo) = link_index(&h, "lo").await? {
            set_up(&h, lo).await?;
        }
        Ok(())
    })
}

/// A workload interface to attach to a subnet of a VPC router.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// The VPC router's namespace.
    pub router_netns: String,
    /// The router end of the veth (`names::ifname(Role::Workload, id)`).
    pub router_if: String,
    /// The workload's namespace (a named namespace under `/run/netns`).
    pub workload_netns: String,
    /// The name inside the workload (`eth0`).
    pub workload_if: String,
    pub ip: Ipv4Addr,
    /// The subnet's prefix length, as the workload sees it.
    pub prefix: u8,
    /// The subnet's gateway (the router's address in it).
    pub gateway: Ipv4Addr,
}

/// Attach a workload: a veth pair from the router to the workload, the workload's address and
/// default route, and on the router a /32 route to it, proxy ARP, and the gateway address.
/// Adopts an existing attachment.
pub fn attach(a: &Attachment) -> Result<(), HostError> {
    let peer_tmp = format!("clp{}", &a.router_if[3..]);
    let wl_path = netns_path(&a.workload_netns);
    let r = a.clone();
    let created = in_netns(&a.router_netns, move |h| async move {
        let created = match link_index(&h, &r.router_if).await? {
            Some(_) => false,
            None => {
                let wl = std::fs::File::open(&wl_path).map_err(io(format!("opening {}", wl_path.display())))?;
                h.link().add(LinkVeth::new(&r.router_if, &peer_tmp).build()).execute().await.map_err(nl(format!("creating veth {}", r.router_if)))?;
                let peer = link_index(&h, &peer_tmp).await?.ok_or_else(|| HostError::Missing("the new veth peer is not there".into()))?;
                h.link()
                    .set(LinkUnspec::new_with_index(peer).setns_by_fd(wl.as_raw_fd()).build())
                    .execute()
                    .await
                    .map_err(nl("moving the veth peer into the workload namespace"))?;
                true
            }
        };
        let idx = link_index(&h, &r.router_if).await?.ok_or_else(|| HostError::Missing("the router end of the veth is not there".into()))?;
        sysctl(&format!("net/ipv4/conf/{}/proxy_arp", r.router_if), "1")?;
        // Answer proxy ARP at once (the kernel's default delays replies by up to 0.8 s).
        sysctl(&format!("net/ipv4/neigh/{}/proxy_delay", r.router_if), "0")?;
        set_up(&h, idx).await?;
        if let Some(lo) = link_index(&h, "lo").await? {
            add_addr(&h, lo, r.gateway, 32).await?;
        }
        let route = RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(r.ip, 32).output_interface(idx).build();
        replace_route(&h, route, "routing the workload /32").await?;
        Ok(created)
    })?;
    let w = a.clone();
    let peer_tmp = format!("clp{}", &a.router_if[3..]);
    in_netns(&a.workload_netns, move |h| async move {
        if let Some(lo) = link_index(&h, "lo").await? {
            set_up(&h, lo).await?;
        }
        let idx = match link_index(&h, &w.workload_if).await? {
            Some(i) => i,
            None => {
                let i = link_index(&h, &peer_tmp)
                    .await?
                    .ok_or_else(|| HostError::Missing(format!("the workload end of {} is not there (created now: {created})", w.router_if)))?;
                h.link().set(LinkUnspec::new_with_index(i).name(w.workload_if.clone()).build()).execute().await.map_err(nl("naming the workload interface"))?;
                i
            }
        };
        add_addr(&h, idx, w.ip, w.prefix).await?;
        set_up(&h, idx).await?;
        let default = RouteMessageBuilder::<Ipv4Addr>::new().gateway(w.gateway).output_interface(idx).build();
        replace_route(&h, default, "the workload's default route").await
    })
}

/// `TUNSETIFF` and `TUNSETPERSIST` (`_IOW('T', 202/203, int)`, `<linux/if_tun.h>`).
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
/// `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR` (`<linux/if_tun.h>`): an Ethernet tap without the packet
/// information prefix, with a `virtio_net_hdr` before each frame (virtio 1.2 §5.1.6).
const TAP_FLAGS: libc::c_short = 0x0002 | 0x1000 | 0x4000;

/// Open `/dev/net/tun` and attach it to the tap `name` (made when absent) in the calling
/// thread's namespace (`Documentation/networking/tuntap.rst`).
fn tun_attach(name: &str) -> Result<std::os::fd::OwnedFd, HostError> {
    use std::os::fd::{FromRawFd, OwnedFd};
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(HostError::Missing(format!("{name:?} is not an interface name")));
    }
    let f = std::fs::OpenOptions::new().read(true).write(true).open("/dev/net/tun").map_err(io("opening /dev/net/tun"))?;
    // struct ifreq: the name (IFNAMSIZ bytes), then the flags (a short) in the union.
    let mut ifr = [0u8; 40];
    ifr[..name.len()].copy_from_slice(name.as_bytes());
    ifr[libc::IFNAMSIZ..libc::IFNAMSIZ + 2].copy_from_slice(&TAP_FLAGS.to_ne_bytes());
    // SAFETY: TUNSETIFF reads and writes one struct ifreq, which the 40-byte buffer holds.
    if unsafe { libc::ioctl(f.as_raw_fd(), TUNSETIFF, ifr.as_mut_ptr()) } < 0 {
        return Err(io(format!("TUNSETIFF {name}"))(std::io::Error::last_os_error()));
    }
    // SAFETY: into_raw_fd hands over ownership of an open descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(f)) })
}

/// An instance's port on a VPC router: a persistent tap device in the router namespace.
#[derive(Debug, Clone)]
pub struct TapPort {
    /// The VPC router's namespace.
    pub router_netns: String,
    /// The tap's name (`names::ifname(Role::Workload, eni id)`, as a veth's router end).
    pub ifname: String,
    /// The guest's address.
    pub ip: Ipv4Addr,
    /// The subnet's gateway (the router's address in it).
    pub gateway: Ipv4Addr,
}

/// Make the tap (persistent, `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`) unless it exists, set it up,
/// and on the router a /32 route to the guest through it, proxy ARP and the gateway address, as
/// [`attach`] does for a veth. Adopts an existing tap (one a worker holds open included).
pub fn ensure_tap(t: &TapPort) -> Result<(), HostError> {
    let t = t.clone();
    in_netns(&t.router_netns.clone(), move |h| async move {
        if link_index(&h, &t.ifname).await?.is_none() {
            let fd = tun_attach(&t.ifname)?;
            // SAFETY: TUNSETPERSIST takes an int by value on an attached tun descriptor.
            if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETPERSIST, 1 as libc::c_ulong) } < 0 {
                return Err(io(format!("TUNSETPERSIST {}", t.ifname))(std::io::Error::last_os_error()));
            }
        }
        let idx = link_index(&h, &t.ifname).await?.ok_or_else(|| HostError::Missing(format!("the tap {} is not there", t.ifname)))?;
        sysctl(&format!("net/ipv4/conf/{}/proxy_arp", t.ifname), "1")?;
        sysctl(&format!("net/ipv4/neigh/{}/proxy_delay", t.ifname), "0")?;
        set_up(&h, idx).await?;
        if let Some(lo) = link_index(&h, "lo").await? {
            add_addr(&h, lo, t.gateway, 32).await?;
        }
        let route = RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(t.ip, 32).output_interface(idx).build();
        replace_route(&h, route, "routing the instance /32").await
    })
}

/// Open the existing tap `ifname` of the router namespace `router_netns` for a worker
/// (`IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`). The descriptor is close-on-exec; the caller passes it
/// on explicitly. Errors when the tap is missing (the VPC reconciler has not made it) or busy
/// (another worker holds it).
pub fn open_tap(router_netns: &str, ifname: &str) -> Result<std::os::fd::OwnedFd, HostError> {
    let path = netns_path(router_netns);
    let name = ifname.to_string();
    std::thread::spawn(move || -> Result<std::os::fd::OwnedFd, HostError> {
        let ns = std::fs::File::open(&path).map_err(io(format!("opening {}", path.display())))?;
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(sys(format!("setns {}", path.display())))?;
        let exists = std::path::Path::new("/proc/thread-self/net/dev").exists()
            && std::fs::read_to_string("/proc/thread-self/net/dev").is_ok_and(|d| d.lines().any(|l| l.trim_start().starts_with(&format!("{name}:"))));
        if !exists {
            return Err(HostError::Missing(format!("the tap {name} is not in {}", path.display())));
        }
        tun_attach(&name)
    })
    .join()
    .map_err(|_| HostError::Thread)?
}

/// Names of the links in a namespace that start with `prefix`.
pub fn links_with_prefix(netns: &str, prefix: &str) -> Result<Vec<String>, HostError> {
    let prefix = prefix.to_string();
    in_netns(netns, move |h| async move {
        let mut out = Vec::new();
        let mut links = h.link().get().execute();
        while let Some(m) = links.try_next().await.map_err(nl("listing links"))? {
            for a in m.attributes {
                if let rtnetlink::packet_route::link::LinkAttribute::IfName(n) = a
                    && n.starts_with(&prefix)
                {
                    out.push(n);
                }
            }
        }
        Ok(out)
    })
}

/// Remove a workload's attachment (the veth pair; both ends go together). Absent is fine.
pub fn detach(router_netns: &str, router_if: &str) -> Result<(), HostError> {
    let name = router_if.to_string();
    in_netns(router_netns, move |h| async move {
        if let Some(idx) = link_index(&h, &name).await? {
            h.link().del(idx).execute().await.map_err(nl(format!("deleting {name}")))?;
        }
        Ok(())
    })
}

/// Apply a rendered ruleset (libnftables JSON) inside a namespace, atomically.
pub fn apply_ruleset(netns: &str, ruleset: &serde_json::Value) -> Result<(), HostError> {
    let doc: nftables::schema::Nftables<'static> = serde_json::from_value(ruleset.clone()).map_err(|e| HostError::Nft(format!("ruleset schema: {e}")))?;
    in_netns(netns, move |_| async move { nftables::helper::apply_ruleset(&doc).map_err(|e| HostError::Nft(e.to_string())) })
}

/// The route protocol number that marks routes cloudlet owns (so they can be listed and removed).
pub const ROUTE_PROTO: u8 = 193;

/// Open a namespace file: `name`, or the calling thread's own namespace when empty.
fn open_ns(name: &str) -> Result<std::fs::File, HostError> {
    let path = if name.is_empty() { PathBuf::from("/proc/thread-self/ns/net") } else { netns_path(name) };
    std::fs::File::open(&path).map_err(io(format!("opening {}", path.display())))
}

/// The link between the uplink namespace and a VPC router.
#[derive(Debug, Clone)]
pub struct Transit {
    pub uplink_netns: String,
    pub router_netns: String,
    /// The uplink-side interface (`names::Role::UplinkHost`).
    pub host_if: String,
    /// The router-side interface (`names::Role::UplinkVpc`).
    pub vpc_if: String,
    pub host_ip: Ipv4Addr,
    pub vpc_ip: Ipv4Addr,
    pub prefix: u8,
}

/// Ensure the transit veth, its addresses, the router's default route via the uplink side, and
/// forwarding in the uplink namespace. Adopts what exists.
pub fn ensure_transit(t: &Transit, uplink_if: &str) -> Result<(), HostError> {
    let up_fd = open_ns(&t.uplink_netns)?;
    let r = t.clone();
    in_netns(&t.router_netns, move |h| async move {
        if link_index(&h, &r.vpc_if).await?.is_none() {
            h.link().add(LinkVeth::new(&r.vpc_if, &r.host_if).build()).execute().await.map_err(nl(format!("creating veth {}", r.vpc_if)))?;
            let peer = link_index(&h, &r.host_if).await?.ok_or_else(|| HostError::Missing("the new transit peer is not there".into()))?;
            h.link()
                .set(LinkUnspec::new_with_index(peer).setns_by_fd(up_fd.as_raw_fd()).build())
                .execute()
                .await
                .map_err(nl("moving the transit peer to the uplink namespace"))?;
        }
        let idx = link_index(&h, &r.vpc_if).await?.ok_or_else(|| HostError::Missing("the transit link is not there".into()))?;
        add_addr(&h, idx, r.vpc_ip, r.prefix).await?;
        set_up(&h, idx).await?;
        let default = RouteMessageBuilder::<Ipv4Addr>::new().gateway(r.host_ip).output_interface(idx).build();
        replace_route(&h, default, "the router's default route").await
    })?;
    let r = t.clone();
    let uplink_if = uplink_if.to_string();
    in_netns(&t.uplink_netns, move |h| async move {
        sysctl("net/ipv4/ip_forward", "1")?;
        if link_index(&h, &uplink_if).await?.is_some() {
            sysctl(&format!("net/ipv4/conf/{uplink_if}/proxy_arp"), "1")?;
        }
        let idx = link_index(&h, &r.host_if).await?.ok_or_else(|| HostError::Missing(format!("{} is not in the uplink namespace", r.host_if)))?;
        add_addr(&h, idx, r.host_ip, r.prefix).await?;
        set_up(&h, idx).await
    })
}

/// Make the uplink namespace's cloudlet routes exactly `routes` (destination /32 → gateway),
/// replacing changed ones and deleting the rest of ours.
pub fn sync_uplink_routes(uplink_netns: &str, routes: Vec<(Ipv4Addr, Ipv4Addr)>) -> Result<(), HostError> {
    use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteProtocol};
    in_netns(uplink_netns, move |h| async move {
        let mut existing = Vec::new();
        let mut stream = h.route().get(RouteMessageBuilder::<Ipv4Addr>::new().build()).execute();
        while let Some(m) = stream.try_next().await.map_err(nl("listing routes"))? {
            if m.header.protocol == RouteProtocol::from(ROUTE_PROTO) {
                existing.push(m);
            }
        }
        for (dst, via) in &routes {
            let msg = RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(*dst, 32).gateway(*via).protocol(RouteProtocol::from(ROUTE_PROTO)).build();
            replace_route(&h, msg, "routing an elastic IP").await?;
        }
        for m in existing {
            let dst = m.attributes.iter().find_map(|a| match a {
                RouteAttribute::Destination(RouteAddress::Inet(d)) => Some(*d),
                _ => None,
            });
            if dst.is_some_and(|d| !routes.iter().any(|(r, _)| *r == d)) {
                h.route().del(m).execute().await.map_err(nl("removing a stale elastic IP route"))?;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::ns;

    #[test]
    fn a_namespace_under_another_owner_is_made_again_inside_the_one_asked_for() {
        if !nix::unistd::Uid::effective().is_root() {
            assert!(std::env::var_os("CI").is_none(), "the CI lane must run as root: network and user namespaces");
            eprintln!("SKIPPED: needs root (network and user namespaces)");
            return;
        }
        let d = tempfile::tempdir().expect("tmp");
        let user = d.path().join("user");
        ns::pin_userns(&user, 3_100_000_000, 65_536).expect("userns");
        let name = format!("clt-owner-{}", std::process::id());
        let path = netns_path(&name);
        ensure_netns(&name, None).expect("netns");
        assert_eq!(ns::owner_id(&path).expect("owner"), ns::ns_id(Path::new("/proc/self/ns/user")).expect("own"));
        // While a process runs in it, it is kept as it is.
        let mut held = std::process::Command::new("ip").args(["netns", "exec", &name, "sleep", "30"]).spawn().expect("ip netns exec");
        let mut waited = 0;
        while !netns_in_use(&path) && waited < 100 {
            std::thread::sleep(std::time::Duration::from_millis(20));
            waited += 1;
        }
        let old = ns::ns_id(&path).expect("id");
        ensure_netns(&name, Some(&user)).expect("kept");
        assert_eq!(ns::ns_id(&path).expect("id"), old, "a namespace in use is not made again");
        let _ = held.kill();
        let _ = held.wait();
        ensure_netns(&name, Some(&user)).expect("made again");
        assert_eq!(ns::owner_id(&path).expect("owner"), ns::ns_id(&user).expect("user"));
        let made = ns::ns_id(&path).expect("id");
        ensure_netns(&name, Some(&user)).expect("kept");
        assert_eq!(ns::ns_id(&path).expect("id"), made, "one with the right owner is kept");
        delete_netns(&name).expect("delete");
        ns::unpin(&user).expect("unpin");
    }
}
