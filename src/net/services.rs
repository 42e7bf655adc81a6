//! Router services besides links and rules: the router's own addresses (gateways and VIPs),
//! TCP health probes and listeners inside a namespace, and per-address bandwidth caps (tc).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;

use super::host::{HostError, in_netns, link_index, netns_path};

/// Make the /32 addresses on the router's `lo` exactly `want` (loopback's own `127.0.0.1/8`
/// stays): adds what is missing, removes stale gateways and VIPs.
pub fn sync_local_addresses(netns: &str, want: Vec<Ipv4Addr>) -> Result<(), HostError> {
    in_netns(netns, move |h| async move {
        let Some(lo) = link_index(&h, "lo").await? else { return Ok(()) };
        let mut have = Vec::new();
        let mut stream = h.address().get().set_link_index_filter(lo).execute();
        while let Some(m) = stream.try_next().await.map_err(|e| HostError::Netlink { what: "listing addresses".into(), source: e })? {
            let addr = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            });
            if let Some(ip) = addr
                && m.header.prefix_len == 32
            {
                have.push((ip, m));
            }
        }
        for ip in &want {
            if !have.iter().any(|(a, _)| a == ip) {
                match h.address().add(lo, IpAddr::V4(*ip), 32).execute().await {
                    Ok(()) => {}
                    Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => {}
                    Err(e) => return Err(HostError::Netlink { what: format!("adding {ip}/32"), source: e }),
                }
            }
        }
        for (ip, m) in have {
            if !want.contains(&ip) {
                h.address().del(m).execute().await.map_err(|e| HostError::Netlink { what: format!("removing {ip}/32"), source: e })?;
            }
        }
        Ok(())
    })
}

/// A non-blocking TCP listener on `addr` made inside namespace `netns` (it keeps serving in that
/// namespace), and the namespace's inode (a namespace made anew after a reboot has another, so
/// the caller knows to bind again). Errors: the namespace is missing, or the bind fails.
pub fn tcp_listen_in(netns: &str, addr: SocketAddr) -> Result<(std::net::TcpListener, u64), HostError> {
    use std::os::unix::fs::MetadataExt;
    let path = netns_path(netns);
    let inode = std::fs::metadata(&path).map_err(|e| HostError::Io { what: format!("stat {}", path.display()), source: e })?.ino();
    let l = std::thread::spawn(move || -> Result<std::net::TcpListener, HostError> {
        let ns = std::fs::File::open(&path).map_err(|e| HostError::Io { what: format!("opening {}", path.display()), source: e })?;
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| HostError::Sys { what: "setns".into(), source: e })?;
        let l = std::net::TcpListener::bind(addr).map_err(|e| HostError::Io { what: format!("binding {addr}"), source: e })?;
        l.set_nonblocking(true).map_err(|e| HostError::Io { what: "O_NONBLOCK".into(), source: e })?;
        Ok(l)
    })
    .join()
    .map_err(|_| HostError::Io { what: "the bind thread panicked".into(), source: std::io::Error::other("panic") })??;
    Ok((l, inode))
}

/// The inode of namespace `netns`, if it exists.
pub fn netns_inode(netns: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(netns_path(netns)).ok().map(|m| m.ino())
}

/// A TCP socket, not yet connected, made inside namespace `netns` on a thread of its own. A
/// socket stays in the namespace it was made in, so connecting it later from any thread (a tokio
/// worker) uses that namespace's addresses, routes and firewall.
pub fn tcp_socket_in(netns: &str, v6: bool) -> Result<socket2::Socket, HostError> {
    let path = netns_path(netns);
    std::thread::spawn(move || -> Result<socket2::Socket, HostError> {
        let ns = std::fs::File::open(&path).map_err(|e| HostError::Io { what: format!("opening {}", path.display()), source: e })?;
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| HostError::Sys { what: "setns".into(), source: e })?;
        let domain = if v6 { socket2::Domain::IPV6 } else { socket2::Domain::IPV4 };
        socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))
            .map_err(|e| HostError::Io { what: "creating a socket".into(), source: e })
    })
    .join()
    .map_err(|_| HostError::Io { what: "the socket thread panicked".into(), source: std::io::Error::other("panic") })?
}

/// Whether a TCP connection to `to` opens within `timeout`, made from inside namespace `netns`
/// (a socket keeps the namespace it was created in).
pub fn tcp_probe(netns: &str, to: SocketAddr, timeout: Duration) -> bool {
    let path = netns_path(netns);
    std::thread::spawn(move || {
        let Ok(ns) = std::fs::File::open(&path) else { return false };
        if nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
            return false;
        }
        TcpStream::connect_timeout(&to, timeout).is_ok()
    })
    .join()
    .unwrap_or(false)
}

/// One bandwidth cap: traffic matching `ip` (as source or destination, per the device) limited
/// to `mbit` Mbit/s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cap {
    pub ip: Ipv4Addr,
    pub mbit: u32,
}

/// Which address of a packet a cap matches on a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Packets leaving from the address (upload).
    Source,
    /// Packets going to the address (download).
    Destination,
}

fn tc(netns: &str, args: &[&str]) -> Result<String, HostError> {
    let mut cmd = Command::new("tc");
    if !netns.is_empty() {
        cmd.args(["-n", netns]);
    }
    let out = cmd.args(args).output().map_err(|e| HostError::Io { what: "running tc (iproute2)".into(), source: e })?;
    if !out.status.success() {
        return Err(HostError::Tool { what: format!("tc {}", args.join(" ")), stderr: String::from_utf8_lossy(&out.stderr).trim().to_string() });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// How `tc class show` prints a rate of `mbit` Mbit/s: whole gigabits as `NGbit`, else `NMbit`.
fn tc_rate(mbit: u32) -> String {
    if mbit.is_multiple_of(1000) { format!("{}Gbit", mbit / 1000) } else { format!("{mbit}Mbit") }
}

/// Make the egress shaping of `dev` in `netns` exactly `caps`: an HTB root (`1:`) with one class
/// per cap (`1:N`, rate = ceil = the cap) and a u32 filter on the address; unmatched traffic
/// bypasses HTB's classes unshaped. No caps: no qdisc of ours. Rebuilt only when what the kernel
/// reports differs from `caps` (after a change, or drift such as `tc qdisc del`).
///
/// The kernel of the test machines has HTB and u32 but no policing action, so shaping is on
/// egress: the router's transit port for uploads, the uplink side of it for downloads. iproute2's
/// `tc` is used because the `rtnetlink` crate cannot build HTB or u32 messages.
pub fn sync_caps(netns: &str, dev: &str, dir: Direction, caps: &[Cap]) -> Result<(), HostError> {
    let qdiscs = tc(netns, &["qdisc", "show", "dev", dev])?;
    let ours = qdiscs.lines().any(|l| l.starts_with("qdisc htb 1: root"));
    if caps.is_empty() {
        if ours {
            tc(netns, &["qdisc", "del", "dev", dev, "root"])?;
        }
        return Ok(());
    }
    let classes = tc(netns, &["class", "show", "dev", dev])?;
    let filters = tc(netns, &["filter", "show", "dev", dev])?;
    let (field, hex_of) = match dir {
        Direction::Source => ("src", "at 12"),
        Direction::Destination => ("dst", "at 16"),
    };
    let in_sync = ours
        && classes.lines().filter(|l| l.starts_with("class htb")).count() == caps.len()
        && caps.iter().enumerate().all(|(i, c)| {
            let class = format!("class htb 1:{:x} ", i + 1);
            let rate = format!("rate {} ", tc_rate(c.mbit));
            let key = format!("{:08x}/ffffffff {hex_of}", u32::from(c.ip));
            classes.lines().any(|l| l.starts_with(&class) && l.contains(&rate)) && filters.contains(&key)
        });
    if in_sync {
        return Ok(());
    }
    if ours {
        tc(netns, &["qdisc", "del", "dev", dev, "root"])?;
    }
    tc(netns, &["qdisc", "add", "dev", dev, "root", "handle", "1:", "htb"])?;
    for (i, c) in caps.iter().enumerate() {
        let id = format!("1:{:x}", i + 1);
        let rate = format!("{}mbit", c.mbit);
        // Burst: at least 10 ms at the rate, so TCP is not starved by a tiny bucket.
        let burst = format!("{}k", (c.mbit as u64 * 10 / 8).max(16));
        tc(netns, &["class", "add", "dev", dev, "parent", "1:", "classid", &id, "htb", "rate", &rate, "ceil", &rate, "burst", &burst, "cburst", &burst])?;
        let m = format!("{}/32", c.ip);
        tc(netns, &["filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "1", "u32", "match", "ip", field, &m, "flowid", &id])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_compared_as_tc_prints_them() {
        assert_eq!(tc_rate(20), "20Mbit");
        assert_eq!(tc_rate(999), "999Mbit");
        assert_eq!(tc_rate(1000), "1Gbit");
        assert_eq!(tc_rate(1500), "1500Mbit");
        assert_eq!(tc_rate(100_000), "100Gbit");
    }
}
