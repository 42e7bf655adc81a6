//! The DHCPv4 server of VPC routers (RFC 2131; options from RFC 2132).
//!
//! One UDP socket per router port (`clw…`), bound to the port with `SO_BINDTODEVICE` inside the
//! router's namespace. A port leads to exactly one network interface, so the server answers each
//! port with the one lease IPAM assigned to that interface and nothing else: a request for
//! another address gets a NAK, relayed requests (`giaddr` set) are dropped.
//!
//! Replies are broadcast (255.255.255.255:68 out of the port), except renewals from a configured
//! client (`ciaddr` set), which are unicast as RFC 2131 §4.1 says.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex, OnceLock};

use dhcproto::v4::{DhcpOption, DhcpOptions, Message, MessageType, Opcode};
use dhcproto::{Decodable, Decoder, Encodable};

use super::host::{HostError, netns_path};

/// What the server hands out on one port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub ip: Ipv4Addr,
    /// The subnet's prefix length.
    pub prefix: u8,
    /// The subnet gateway: the router, and the server identifier.
    pub gateway: Ipv4Addr,
    /// Sent as option 12 (the network interface's name).
    pub hostname: String,
    /// Lease time in seconds.
    pub lease_seconds: u32,
}

/// DHCP server port (RFC 2131 §4.1).
pub const SERVER_PORT: u16 = 67;
/// DHCP client port.
pub const CLIENT_PORT: u16 = 68;

fn mask(prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0))
}

/// Answer one datagram from a client: the reply and where to send it, or `None` to stay silent
/// (malformed, not a request, relayed, for another server, a release or decline).
pub fn answer(datagram: &[u8], lease: &Lease) -> Option<(Vec<u8>, SocketAddrV4)> {
    // `hlen` over 16 would make the decoder's chaddr() slice out of bounds.
    if datagram.len() < 240 || datagram[2] > 16 {
        return None;
    }
    let req = Message::decode(&mut Decoder::new(datagram)).ok()?;
    if req.opcode() != Opcode::BootRequest || req.giaddr() != Ipv4Addr::UNSPECIFIED {
        return None;
    }
    let kind = req.opts().msg_type()?;
    if let Some(DhcpOption::ServerIdentifier(s)) = req.opts().get(dhcproto::v4::OptionCode::ServerIdentifier)
        && *s != lease.gateway
    {
        return None;
    }
    let requested = match req.opts().get(dhcproto::v4::OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
        _ => (req.ciaddr() != Ipv4Addr::UNSPECIFIED).then_some(req.ciaddr()),
    };
    let reply_type = match kind {
        MessageType::Discover => MessageType::Offer,
        MessageType::Request if requested == Some(lease.ip) => MessageType::Ack,
        MessageType::Request => MessageType::Nak,
        MessageType::Inform => MessageType::Ack,
        _ => return None,
    };
    let mut reply = req.clone();
    reply.set_opcode(Opcode::BootReply).set_hops(0).set_secs(0).set_siaddr(Ipv4Addr::UNSPECIFIED).set_sname(&[]).set_fname(&[]);
    let mut opts = DhcpOptions::default();
    opts.insert(DhcpOption::MessageType(reply_type));
    opts.insert(DhcpOption::ServerIdentifier(lease.gateway));
    if reply_type != MessageType::Nak {
        if kind != MessageType::Inform {
            reply.set_yiaddr(lease.ip);
            opts.insert(DhcpOption::AddressLeaseTime(lease.lease_seconds));
            opts.insert(DhcpOption::Renewal(lease.lease_seconds / 2));
            opts.insert(DhcpOption::Rebinding(lease.lease_seconds / 8 * 7));
        }
        let m = mask(lease.prefix);
        opts.insert(DhcpOption::SubnetMask(m));
        opts.insert(DhcpOption::Router(vec![lease.gateway]));
        opts.insert(DhcpOption::BroadcastAddr(Ipv4Addr::from(u32::from(lease.ip) | !u32::from(m))));
        if !lease.hostname.is_empty() {
            opts.insert(DhcpOption::Hostname(lease.hostname.clone()));
        }
    } else {
        reply.set_yiaddr(Ipv4Addr::UNSPECIFIED);
    }
    if reply_type == MessageType::Nak || kind != MessageType::Inform {
        reply.set_ciaddr(Ipv4Addr::UNSPECIFIED);
    }
    reply.set_opts(opts);
    let to = if reply_type != MessageType::Nak && req.ciaddr() != Ipv4Addr::UNSPECIFIED {
        SocketAddrV4::new(req.ciaddr(), CLIENT_PORT)
    } else {
        SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT)
    };
    Some((reply.to_vec().ok()?, to))
}

/// A running per-port server.
struct Port {
    lease: Arc<Mutex<Lease>>,
    /// Identity of what the socket is bound to: (namespace inode, interface index).
    bound: (u64, u32),
    task: tokio::task::AbortHandle,
}

/// Every DHCP server of this daemon, keyed by (router namespace, port name).
#[derive(Default)]
pub struct Servers {
    ports: Mutex<HashMap<(String, String), Port>>,
}

/// The daemon's servers.
pub fn servers() -> &'static Servers {
    static S: OnceLock<Servers> = OnceLock::new();
    S.get_or_init(Servers::default)
}

fn lock(m: &Mutex<HashMap<(String, String), Port>>) -> std::sync::MutexGuard<'_, HashMap<(String, String), Port>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A port seen inside a namespace: its name, interface index, and a socket when one was asked.
type Bound = (String, u32, Option<std::net::UdpSocket>);

/// Sockets for the ports that need one, made inside the namespace: for each of `ports`, its
/// interface index, and a socket when `make` says so. Also the namespace's inode.
fn bind_in(netns: &str, ports: Vec<(String, bool)>) -> Result<(u64, Vec<Bound>), HostError> {
    let path = netns_path(netns);
    let inode = std::fs::metadata(&path).map_err(|e| HostError::Io { what: format!("stat {}", path.display()), source: e })?.ino();
    let out = std::thread::spawn(move || -> Result<Vec<Bound>, HostError> {
        let ns = std::fs::File::open(&path).map_err(|e| HostError::Io { what: format!("opening {}", path.display()), source: e })?;
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| HostError::Sys { what: "setns".into(), source: e })?;
        let mut out = Vec::new();
        for (name, make) in ports {
            let Ok(index) = nix::net::if_::if_nametoindex(name.as_str()) else { continue };
            let sock = if make {
                let io = |what: &str| {
                    let what = format!("{what} for DHCP on {name}");
                    move |e| HostError::Io { what, source: e }
                };
                let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, Some(socket2::Protocol::UDP)).map_err(io("socket"))?;
                s.set_reuse_address(true).map_err(io("SO_REUSEADDR"))?;
                s.bind_device(Some(name.as_bytes())).map_err(io("SO_BINDTODEVICE"))?;
                s.set_broadcast(true).map_err(io("SO_BROADCAST"))?;
                s.set_nonblocking(true).map_err(io("O_NONBLOCK"))?;
                s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, SERVER_PORT)).into()).map_err(io("bind :67"))?;
                Some(s.into())
            } else {
                None
            };
            out.push((name, index, sock));
        }
        Ok(out)
    })
    .join()
    .map_err(|_| HostError::Thread)??;
    Ok((inode, out))
}

async fn serve(sock: tokio::net::UdpSocket, lease: Arc<Mutex<Lease>>) {
    let mut buf = vec![0u8; 1500];
    loop {
        let n = match sock.recv_from(&mut buf).await {
            Ok((n, _)) => n,
            Err(e) => {
                // A persistent error (the interface went away, say) must not spin a core: wait a
                // little before the next read.
                tracing::debug!(error = %e, "DHCP receive failed");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
        };
        let l = lease.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some((reply, to)) = answer(&buf[..n], &l)
            && let Err(e) = sock.send_to(&reply, to).await
        {
            tracing::warn!(ip = %l.ip, error = %e, "sending a DHCP reply failed");
        }
    }
}

impl Servers {
    /// Serve exactly `want` (port name, lease) in router namespace `netns`: start what is
    /// missing, restart what lost its namespace or link (a reboot, a re-created veth), update
    /// changed leases in place, stop ports no longer wanted. Needs a tokio runtime.
    pub fn sync(&self, netns: &str, want: Vec<(String, Lease)>) -> Result<(), HostError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| HostError::Missing("the DHCP server needs the daemon's runtime".into()))?;
        let mut ports = lock(&self.ports);
        // Which ports need a new socket is known only after reading the current identities, so
        // read them first without making sockets.
        let (inode, ids) = bind_in(netns, want.iter().map(|(n, _)| (n.clone(), false)).collect())?;
        let mut stale = Vec::new();
        for (name, index, _) in &ids {
            let key = (netns.to_string(), name.clone());
            match ports.get(&key) {
                Some(p) if p.bound == (inode, *index) && !p.task.is_finished() => {}
                _ => stale.push((name.clone(), true)),
            }
        }
        let (_, fresh) = if stale.is_empty() { (inode, Vec::new()) } else { bind_in(netns, stale)? };
        for (name, index, sock) in fresh {
            let Some(sock) = sock else { continue };
            let Some((_, lease)) = want.iter().find(|(n, _)| *n == name) else { continue };
            if let Some(old) = ports.remove(&(netns.to_string(), name.clone())) {
                old.task.abort();
            }
            let lease = Arc::new(Mutex::new(lease.clone()));
            let _guard = rt.enter();
            let sock = tokio::net::UdpSocket::from_std(sock).map_err(|e| HostError::Io { what: "registering a DHCP socket".into(), source: e })?;
            let task = rt.spawn(serve(sock, lease.clone())).abort_handle();
            tracing::debug!(netns, port = %name, "DHCP server started");
            ports.insert((netns.to_string(), name), Port { lease, bound: (inode, index), task });
        }
        for (name, lease) in &want {
            if let Some(p) = ports.get(&(netns.to_string(), name.clone())) {
                *p.lease.lock().unwrap_or_else(|e| e.into_inner()) = lease.clone();
            }
        }
        ports.retain(|(ns, name), p| {
            let keep = ns != netns || want.iter().any(|(n, _)| n == name);
            if !keep {
                p.task.abort();
            }
            keep
        });
        Ok(())
    }

    /// Stop every server of router namespace `netns` (the VPC is gone).
    pub fn stop(&self, netns: &str) {
        lock(&self.ports).retain(|(ns, _), p| {
            if ns == netns {
                p.task.abort();
            }
            ns != netns
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease() -> Lease {
        Lease { ip: "10.0.1.10".parse().unwrap(), prefix: 24, gateway: "10.0.1.1".parse().unwrap(), hostname: "web".into(), lease_seconds: 3600 }
    }

    fn request(kind: MessageType, requested: Option<Ipv4Addr>) -> Vec<u8> {
        let mut m = Message::new_with_id(7, Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED, &[2, 0, 0, 0, 0, 1]);
        m.opts_mut().insert(DhcpOption::MessageType(kind));
        if let Some(ip) = requested {
            m.opts_mut().insert(DhcpOption::RequestedIpAddress(ip));
        }
        m.to_vec().unwrap()
    }

    fn decode(b: &[u8]) -> Message {
        Message::decode(&mut Decoder::new(b)).unwrap()
    }

    #[test]
    fn a_discover_is_offered_the_ipam_lease() {
        let (bytes, to) = answer(&request(MessageType::Discover, None), &lease()).unwrap();
        let m = decode(&bytes);
        assert_eq!(m.opts().msg_type(), Some(MessageType::Offer));
        assert_eq!((m.yiaddr(), m.xid(), m.chaddr()), ("10.0.1.10".parse().unwrap(), 7, &[2u8, 0, 0, 0, 0, 1][..]));
        assert_eq!(m.opts().get(dhcproto::v4::OptionCode::SubnetMask), Some(&DhcpOption::SubnetMask("255.255.255.0".parse().unwrap())));
        assert_eq!(m.opts().get(dhcproto::v4::OptionCode::Router), Some(&DhcpOption::Router(vec!["10.0.1.1".parse().unwrap()])));
        assert_eq!(to, "255.255.255.255:68".parse().unwrap());
    }

    #[test]
    fn only_the_assigned_address_is_acknowledged() {
        let (ack, _) = answer(&request(MessageType::Request, Some("10.0.1.10".parse().unwrap())), &lease()).unwrap();
        assert_eq!(decode(&ack).opts().msg_type(), Some(MessageType::Ack));
        let (nak, _) = answer(&request(MessageType::Request, Some("10.0.1.99".parse().unwrap())), &lease()).unwrap();
        let m = decode(&nak);
        assert_eq!((m.opts().msg_type(), m.yiaddr()), (Some(MessageType::Nak), Ipv4Addr::UNSPECIFIED));
    }

    #[test]
    fn hostile_or_foreign_datagrams_get_no_answer() {
        assert!(answer(b"not dhcp", &lease()).is_none());
        let mut long_hw = request(MessageType::Discover, None);
        long_hw[2] = 200;
        assert!(answer(&long_hw, &lease()).is_none());
        assert!(answer(&request(MessageType::Release, None), &lease()).is_none());
        let mut relayed = decode(&request(MessageType::Discover, None));
        relayed.set_giaddr(Ipv4Addr::new(10, 9, 9, 9));
        assert!(answer(&relayed.to_vec().unwrap(), &lease()).is_none());
        let mut other = decode(&request(MessageType::Request, Some("10.0.1.10".parse().unwrap())));
        other.opts_mut().insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 1, 2)));
        assert!(answer(&other.to_vec().unwrap(), &lease()).is_none());
    }
}
