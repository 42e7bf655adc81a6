//! Kernel events that mean the host network drifted from what cloudlet made: a namespace
//! removed from `/run/netns` (inotify, inotify(7)), a link deleted inside a namespace
//! (`RTM_DELLINK` on the `RTNLGRP_LINK` netlink group, rtnetlink(7)), and an nftables commit
//! (`NFT_MSG_NEWGEN` on `NFNLGRP_NFTABLES`, carrying the ruleset's new generation id).
//!
//! The sockets are plain non-blocking netlink sockets, each opened inside its namespace (a
//! netlink socket stays bound to the namespace it was made in), read through tokio's `AsyncFd`.
//! [`ruleset_generation`] asks a namespace for its current nftables generation, so a caller can
//! tell its own commits from others'.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use tokio::io::unix::AsyncFd;

use super::host::{HostError, netns_path};

/// rtnetlink's link group (`RTNLGRP_LINK`, as a bind mask).
const RTMGRP_LINK: u32 = 1;
/// `RTM_DELLINK`.
const RTM_DELLINK: u16 = 17;
/// `NETLINK_NETFILTER`.
const NETLINK_NETFILTER: i32 = 12;
/// `NFNLGRP_NFTABLES`.
const NFNLGRP_NFTABLES: u32 = 7;
/// `NFNL_SUBSYS_NFTABLES`.
const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// `NFT_MSG_NEWGEN` and `NFT_MSG_GETGEN`.
const NFT_MSG_NEWGEN: u16 = 15;
const NFT_MSG_GETGEN: u16 = 16;
/// `NFTA_GEN_ID`.
const NFTA_GEN_ID: u16 = 1;

fn os(what: &str) -> impl FnOnce(std::io::Error) -> HostError + '_ {
    move |source| HostError::Io { what: what.to_string(), source }
}

/// What a namespace's netlink sockets reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetEvent {
    /// A link was deleted.
    LinkDeleted,
    /// An nftables transaction committed; the ruleset is now at this generation.
    Ruleset(u32),
}

/// A netlink socket of one namespace, subscribed to link and nftables events.
pub struct NamespaceEvents {
    link: AsyncFd<OwnedFd>,
    nft: AsyncFd<OwnedFd>,
}

/// Open a netlink socket of `protocol` bound to `groups`, inside the namespace `netns` (empty:
/// the caller's), on a short-lived thread so the caller's namespace never changes.
fn socket_in(netns: &str, protocol: i32, groups: u32) -> Result<OwnedFd, HostError> {
    let path = (!netns.is_empty()).then(|| netns_path(netns));
    std::thread::spawn(move || -> Result<OwnedFd, HostError> {
        if let Some(p) = path {
            let ns = std::fs::File::open(&p).map_err(os("opening the namespace"))?;
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| HostError::Sys { what: format!("setns {}", p.display()), source: e })?;
        }
        // SAFETY: plain socket(2); the descriptor is owned at once.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, protocol) };
        if fd < 0 {
            return Err(os("opening a netlink socket")(std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just returned by socket(2) and is not owned elsewhere.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: an all-zero sockaddr_nl is valid; the fields are set below.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        sa.nl_groups = groups;
        // SAFETY: `sa` is a valid sockaddr_nl of the size given.
        let r = unsafe { libc::bind(fd.as_raw_fd(), &sa as *const _ as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_nl>() as u32) };
        if r < 0 {
            return Err(os("binding a netlink socket")(std::io::Error::last_os_error()));
        }
        Ok(fd)
    })
    .join()
    .map_err(|_| HostError::Thread)?
}

/// Register an owned, non-blocking descriptor with the tokio reactor.
fn register(fd: OwnedFd) -> Result<AsyncFd<OwnedFd>, HostError> {
    // SAFETY: `OwnedFd` owns an open descriptor, keeps it open until it is dropped (with the
    // `AsyncFd`) and always returns that same descriptor.
    unsafe { AsyncFd::register(fd) }.map_err(|e| os("watching a descriptor")(e.into_parts().1))
}

impl NamespaceEvents {
    /// Subscribe to the link and nftables events of namespace `netns` (empty: the daemon's own).
    /// Must be called inside a tokio runtime.
    pub fn open(netns: &str) -> Result<NamespaceEvents, HostError> {
        let link = socket_in(netns, libc::NETLINK_ROUTE, RTMGRP_LINK)?;
        let nft = socket_in(netns, NETLINK_NETFILTER, 1 << (NFNLGRP_NFTABLES - 1))?;
        Ok(NamespaceEvents { link: register(link)?, nft: register(nft)? })
    }

    /// The next events (at least one): every message waiting on either socket, decoded. Errors
    /// when a socket fails (its namespace is gone, say).
    pub async fn next(&self) -> Result<Vec<NetEvent>, HostError> {
        loop {
            tokio::select! {
                g = self.link.readable() => {
                    let mut g = g.map_err(os("waiting for link events"))?;
                    let got = drain(g.get_inner(), decode_link);
                    g.clear_ready();
                    let got = got?;
                    if !got.is_empty() { return Ok(got); }
                }
                g = self.nft.readable() => {
                    let mut g = g.map_err(os("waiting for nftables events"))?;
                    let got = drain(g.get_inner(), decode_nft);
                    g.clear_ready();
                    let got = got?;
                    if !got.is_empty() { return Ok(got); }
                }
            }
        }
    }
}

/// Read every datagram waiting on `fd` and decode its messages with `decode`. An overrun
/// (`ENOBUFS`: events were lost) reads as a deleted link, so the caller checks everything.
fn drain(fd: &OwnedFd, decode: fn(u16, &[u8]) -> Option<NetEvent>) -> Result<Vec<NetEvent>, HostError> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: reads into `buf`, of the length given.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) => return Ok(out),
                Some(libc::ENOBUFS) => {
                    out.push(NetEvent::LinkDeleted);
                    continue;
                }
                Some(libc::EINTR) => continue,
                _ => return Err(os("reading netlink events")(e)),
            }
        }
        if n == 0 {
            return Ok(out);
        }
        out.extend(messages(&buf[..n as usize]).filter_map(|(ty, payload)| decode(ty, payload)));
    }
}

/// The `(type, payload)` of each netlink message in a datagram (netlink(7)).
fn messages(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 16 {
            return None;
        }
        let len = u32::from_ne_bytes(b[0..4].try_into().ok()?) as usize;
        let ty = u16::from_ne_bytes(b[4..6].try_into().ok()?);
        if len < 16 || len > b.len() {
            return None;
        }
        let payload = &b[16..len];
        b = b.get((len + 3) & !3..).unwrap_or_default();
        Some((ty, payload))
    })
}

fn decode_link(ty: u16, _: &[u8]) -> Option<NetEvent> {
    (ty == RTM_DELLINK).then_some(NetEvent::LinkDeleted)
}

fn decode_nft(ty: u16, payload: &[u8]) -> Option<NetEvent> {
    if ty != (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN {
        return None;
    }
    gen_id(payload).map(NetEvent::Ruleset)
}

/// The `NFTA_GEN_ID` of an `NFT_MSG_NEWGEN` payload (after its 4-byte `nfgenmsg`).
fn gen_id(payload: &[u8]) -> Option<u32> {
    let mut a = payload.get(4..)?;
    while a.len() >= 4 {
        let len = u16::from_ne_bytes([a[0], a[1]]) as usize;
        let ty = u16::from_ne_bytes([a[2], a[3]]) & 0x3fff;
        if len < 4 || len > a.len() {
            return None;
        }
        if ty == NFTA_GEN_ID && len >= 8 {
            return Some(u32::from_be_bytes(a[4..8].try_into().ok()?));
        }
        a = a.get((len + 3) & !3..).unwrap_or_default();
    }
    None
}

/// The current nftables generation of namespace `netns` (`NFT_MSG_GETGEN`): it changes with
/// every committed transaction there, whoever made it.
pub fn ruleset_generation(netns: &str) -> Result<u32, HostError> {
    let fd = socket_in(netns, NETLINK_NETFILTER, 0)?;
    // nlmsghdr (16) + nfgenmsg (4): family AF_UNSPEC, version NFNETLINK_V0, res_id 0.
    let mut req = [0u8; 20];
    req[0..4].copy_from_slice(&20u32.to_ne_bytes());
    req[4..6].copy_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN).to_ne_bytes());
    req[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    // SAFETY: sends `req`, of the length given, to the kernel (default address).
    if unsafe { libc::send(fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) } < 0 {
        return Err(os("asking for the nftables generation")(std::io::Error::last_os_error()));
    }
    let mut buf = vec![0u8; 8192];
    for _ in 0..200 {
        // SAFETY: reads into `buf`, of the length given.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EAGAIN) {
                std::thread::sleep(std::time::Duration::from_millis(5));
                continue;
            }
            return Err(os("reading the nftables generation")(e));
        }
        if let Some(g) = messages(&buf[..n as usize]).find_map(|(ty, p)| decode_nft(ty, p)) {
            let NetEvent::Ruleset(g) = g else { continue };
            return Ok(g);
        }
    }
    Err(HostError::Missing("no answer to NFT_MSG_GETGEN".into()))
}

/// An inotify watch on the namespace directory (`/run/netns`), made if missing: yields the
/// names removed from it.
pub struct NetnsDir {
    fd: AsyncFd<OwnedFd>,
}

impl NetnsDir {
    /// Watch `dir` for entries deleted or moved away. Must be called inside a tokio runtime.
    pub fn watch(dir: &Path) -> Result<NetnsDir, HostError> {
        std::fs::create_dir_all(dir).map_err(os("creating the namespace directory"))?;
        // SAFETY: plain inotify_init1(2); the descriptor is owned at once.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(os("inotify_init1")(std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just returned and is not owned elsewhere.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).map_err(|_| HostError::Missing("a namespace directory path with NUL".into()))?;
        // SAFETY: `c` is a NUL-terminated path.
        if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), libc::IN_DELETE | libc::IN_MOVED_FROM | libc::IN_CREATE) } < 0 {
            return Err(os("inotify_add_watch")(std::io::Error::last_os_error()));
        }
        Ok(NetnsDir { fd: register(fd)? })
    }

    /// The next changes: `(name, created)` for each entry made (`true`) or removed (`false`).
    pub async fn next(&self) -> Result<Vec<(String, bool)>, HostError> {
        loop {
            let mut g = self.fd.readable().await.map_err(os("waiting for inotify"))?;
            let mut out = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                // SAFETY: reads into `buf`, of the length given.
                let n = unsafe { libc::read(g.get_inner().as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n <= 0 {
                    break;
                }
                let mut b = &buf[..n as usize];
                // struct inotify_event: wd, mask, cookie, len, name[len].
                while b.len() >= 16 {
                    let mask = u32::from_ne_bytes([b[4], b[5], b[6], b[7]]);
                    let len = u32::from_ne_bytes([b[12], b[13], b[14], b[15]]) as usize;
                    let name = b.get(16..16 + len).unwrap_or_default();
                    let name = String::from_utf8_lossy(name.split(|c| *c == 0).next().unwrap_or_default()).into_owned();
                    if !name.is_empty() {
                        out.push((name, mask & libc::IN_CREATE != 0));
                    }
                    b = b.get(16 + len..).unwrap_or_default();
                }
            }
            g.clear_ready();
            if !out.is_empty() {
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ty: u16, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&[0u8; 10]);
        m.extend_from_slice(payload);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m
    }

    #[test]
    fn datagrams_decode_into_deleted_links_and_ruleset_generations() {
        // NEWGEN: nfgenmsg, then NFTA_GEN_ID (len 8, type 1, big-endian 42).
        let mut gen_payload = vec![0u8; 4];
        gen_payload.extend_from_slice(&8u16.to_ne_bytes());
        gen_payload.extend_from_slice(&NFTA_GEN_ID.to_ne_bytes());
        gen_payload.extend_from_slice(&42u32.to_be_bytes());
        let mut d = msg((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN, &gen_payload);
        d.extend(msg((NFNL_SUBSYS_NFTABLES << 8) | 2, &[0u8; 7]));
        let nft: Vec<_> = messages(&d).filter_map(|(t, p)| decode_nft(t, p)).collect();
        assert_eq!(nft, vec![NetEvent::Ruleset(42)]);
        let mut l = msg(16, &[0u8; 16]);
        l.extend(msg(RTM_DELLINK, &[0u8; 16]));
        let links: Vec<_> = messages(&l).filter_map(|(t, p)| decode_link(t, p)).collect();
        assert_eq!(links, vec![NetEvent::LinkDeleted]);
        assert_eq!(messages(&[1, 2, 3]).count(), 0, "a short datagram is no message");
    }
}
