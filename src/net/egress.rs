//! The site's egress policy: which addresses the daemon may connect to on a tenant's behalf
//! (functions' outbound HTTP, registry pulls with their redirects and token realms).
//!
//! A tenant names a host; the daemon resolves it **once**, checks every address it got, and
//! connects to an address that passed — never resolving again, so a name that changes its answer
//! (DNS rebinding) cannot slip past the check. Refused by default:
//!
//! - loopback (`127.0.0.0/8`, `::1`), unspecified (`0.0.0.0/8`, `::`), link-local
//!   (`169.254.0.0/16` with the metadata address `169.254.169.254` and the VPC transit links,
//!   `fe80::/10`), multicast, broadcast and reserved ranges;
//! - every address on the host's own interfaces (read at check time, cached for
//!   [`HOST_ADDRS_TTL`]), so the daemon's API, S3 endpoint and any service bound to a host
//!   address stay out of reach;
//! - the site's management networks (`[egress] deny_cidrs`).
//!
//! IPv4 addresses written as IPv6 (`::ffff:127.0.0.1`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`)
//! are judged by the IPv4 address they carry. A site admin may permit exceptions
//! (`[egress] allow_cidrs`: a network or address, optionally with one port, e.g. a registry on
//! `127.0.0.1:5000`); an exception beats every refusal above.
//!
//! The daemon installs its policy at start-up ([`install_site_policy`]); engines take it with
//! [`site_policy`] (the strict default when none was installed).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net};

/// How long the host's own addresses are cached between reads of its interfaces.
pub const HOST_ADDRS_TTL: Duration = Duration::from_secs(2);

/// Longest wait for a name to resolve.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of the egress policy.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// A rule of the site config does not parse.
    #[error("egress.{key}: {rule:?}: {message}")]
    BadRule {
        /// `allow_cidrs` or `deny_cidrs`.
        key: &'static str,
        /// The rule as written.
        rule: String,
        /// What is wrong with it.
        message: String,
    },
    /// Every address the target resolved to is refused.
    #[error("{target} is refused by the site's egress policy ({addr}: {reason})")]
    Denied {
        /// `host:port` as asked for.
        target: String,
        /// The (last) address that was refused.
        addr: SocketAddr,
        /// Why.
        reason: Reason,
    },
    /// The name could not be resolved (or resolution timed out).
    #[error("resolving {host}: {message}")]
    Resolve {
        /// The host name.
        host: String,
        /// The resolver's error.
        message: String,
    },
    /// The name resolved to no address at all, or the host is empty.
    #[error("{0:?} resolves to no address")]
    NoAddress(String),
}

/// Why an address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `169.254.0.0/16` (cloud metadata, VPC transit links), `fe80::/10`.
    LinkLocal,
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255` and the broadcast addresses of the host's networks.
    Broadcast,
    /// `240.0.0.0/4`, deprecated IPv6 forms (site-local, IPv4-compatible).
    Reserved,
    /// An address of one of the host's own interfaces.
    HostAddress,
    /// In one of the site's management networks (`egress.deny_cidrs`).
    ManagementNetwork,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reason::Loopback => "loopback",
            Reason::LinkLocal => "link-local",
            Reason::Unspecified => "unspecified",
            Reason::Multicast => "multicast",
            Reason::Broadcast => "broadcast",
            Reason::Reserved => "reserved",
            Reason::HostAddress => "an address of this host",
            Reason::ManagementNetwork => "a management network",
        })
    }
}

/// An exception of `egress.allow_cidrs`: a network, and optionally the one port it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowRule {
    /// The permitted network (an address is a /32 or /128).
    pub net: IpNet,
    /// The permitted port; any port when `None`.
    pub port: Option<u16>,
}

/// Parse `ADDR`, `CIDR`, `ADDR:PORT` or `CIDR:PORT` (IPv4), `[ADDR]:PORT` or `[CIDR]:PORT`
/// (IPv6; a bare IPv6 address or CIDR without brackets has no port).
fn parse_rule(s: &str) -> Result<(IpNet, Option<u16>), String> {
    let s = s.trim();
    let (addr, port) = if let Some(rest) = s.strip_prefix('[') {
        let (inner, after) = rest.split_once(']').ok_or("a '[' without its ']'")?;
        match after {
            "" => (inner, None),
            p => (inner, Some(p.strip_prefix(':').ok_or("expected :PORT after ']'")?)),
        }
    } else if s.matches(':').count() == 1 {
        let (a, p) = s.split_once(':').ok_or("expected ADDR:PORT")?;
        (a, Some(p))
    } else {
        (s, None)
    };
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(format!("{p:?} is not a port (1-65535)")),
            Ok(n) => Some(n),
        },
    };
    let net = if addr.contains('/') {
        addr.parse::<IpNet>().map_err(|e| e.to_string())?.trunc()
    } else {
        IpNet::from(addr.parse::<IpAddr>().map_err(|e| e.to_string())?)
    };
    // A rule written as IPv4-mapped IPv6 means the IPv4 network.
    let net = match net {
        IpNet::V6(n) if n.prefix_len() >= 96 => match n.network().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, n.prefix_len() - 96).map(IpNet::V4).map_err(|e| e.to_string())?,
            None => net,
        },
        n => n,
    };
    Ok((net, port))
}

/// The address policy of outbound connections made for tenants. [`Default`] is the strict
/// policy: the built-in refusals and the host's addresses, no exceptions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    allow: Vec<AllowRule>,
    deny: Vec<IpNet>,
}

/// The IPv4 address an IPv6 address carries, for the forms that route to IPv4: mapped
/// (`::ffff:a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) and 6to4 (`2002:aabb:ccdd::/48`).
fn embedded_v4(v6: &Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = v6.segments();
    let low = |a: u16, b: u16| Ipv4Addr::new((a >> 8) as u8, a as u8, (b >> 8) as u8, b as u8);
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(low(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return Some(low(s[1], s[2]));
    }
    None
}

/// The built-in refusal of an address (without the host's addresses or the site's networks):
/// `None` when the address is an ordinary unicast one. IPv4 carried in IPv6 is judged as IPv4.
pub fn classify(ip: IpAddr) -> Option<Reason> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(&v6) {
                return classify_v4(v4);
            }
            let s = v6.segments();
            if v6.is_unspecified() {
                Some(Reason::Unspecified)
            } else if v6.is_loopback() {
                Some(Reason::Loopback)
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some(Reason::LinkLocal)
            } else if s[0] & 0xff00 == 0xff00 {
                Some(Reason::Multicast)
            } else if s[0] & 0xffc0 == 0xfec0 || s[..6] == [0; 6] {
                // Site-local (deprecated) and IPv4-compatible (`::a.b.c.d`, deprecated).
                Some(Reason::Reserved)
            } else {
                None
            }
        }
    }
}

fn classify_v4(v4: Ipv4Addr) -> Option<Reason> {
    let o = v4.octets();
    if o[0] == 0 {
        Some(Reason::Unspecified)
    } else if v4.is_loopback() {
        Some(Reason::Loopback)
    } else if v4.is_link_local() {
        Some(Reason::LinkLocal)
    } else if v4.is_broadcast() {
        Some(Reason::Broadcast)
    } else if v4.is_multicast() {
        Some(Reason::Multicast)
    } else if o[0] >= 240 {
        Some(Reason::Reserved)
    } else {
        None
    }
}

/// The forms an address is judged in: itself (IPv4-mapped IPv6 as IPv4) and the IPv4 address
/// it carries, if any.
fn views(ip: IpAddr) -> [Option<IpAddr>; 2] {
    let canonical = ip.to_canonical();
    let carried = match canonical {
        IpAddr::V6(v6) => embedded_v4(&v6).map(IpAddr::V4),
        IpAddr::V4(_) => None,
    };
    [Some(canonical), carried]
}

impl EgressPolicy {
    /// A policy with the site's exceptions (`allow`) and extra refused networks (`deny`), as
    /// written in `egress.allow_cidrs` and `egress.deny_cidrs`. Errors: a rule that does not
    /// parse, or a port on a `deny_cidrs` entry.
    pub fn new(allow: &[String], deny: &[String]) -> Result<Self, EgressError> {
        let bad = |key, rule: &str, message: String| EgressError::BadRule { key, rule: rule.to_string(), message };
        let mut p = EgressPolicy::default();
        for r in allow {
            let (net, port) = parse_rule(r).map_err(|m| bad("allow_cidrs", r, m))?;
            p.allow.push(AllowRule { net, port });
        }
        for r in deny {
            match parse_rule(r).map_err(|m| bad("deny_cidrs", r, m))? {
                (net, None) => p.deny.push(net),
                (_, Some(_)) => return Err(bad("deny_cidrs", r, "a refused network takes no port".into())),
            }
        }
        Ok(p)
    }

    /// The site's exceptions.
    pub fn exceptions(&self) -> &[AllowRule] {
        &self.allow
    }

    /// Whether connecting to `addr` is permitted, given the host's own addresses `host_addrs`
    /// (pure: [`EgressPolicy::check`] reads them from the host).
    pub fn check_with(&self, addr: SocketAddr, host_addrs: &[IpAddr]) -> Result<(), Reason> {
        let ip = addr.ip().to_canonical();
        if self.allow.iter().any(|r| r.net.contains(&ip) && r.port.is_none_or(|p| p == addr.port())) {
            return Ok(());
        }
        for v in views(addr.ip()).into_iter().flatten() {
            if let Some(r) = classify(v) {
                return Err(r);
            }
            if host_addrs.iter().any(|h| h.to_canonical() == v) {
                return Err(Reason::HostAddress);
            }
            if self.deny.iter().any(|n| n.contains(&v)) {
                return Err(Reason::ManagementNetwork);
            }
        }
        Ok(())
    }

    /// Whether connecting to `addr` is permitted now (the host's addresses as of at most
    /// [`HOST_ADDRS_TTL`] ago).
    pub fn check(&self, addr: SocketAddr) -> Result<(), Reason> {
        self.check_with(addr, &host_addresses())
    }

    /// Resolve `host` (a name, an IP address, or a bracketed IPv6 address) once and return the
    /// first of its addresses that the policy permits, with `port`: the caller connects to
    /// exactly that address. Errors: [`EgressError::Denied`] when every address is refused
    /// (the reason of the last), [`EgressError::Resolve`] or [`EgressError::NoAddress`].
    pub async fn resolve(&self, host: &str, port: u16) -> Result<SocketAddr, EgressError> {
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        if bare.is_empty() {
            return Err(EgressError::NoAddress(host.to_string()));
        }
        let candidates: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((bare, port))).await {
                Ok(Ok(addrs)) => addrs.collect(),
                Ok(Err(e)) => return Err(EgressError::Resolve { host: bare.to_string(), message: e.to_string() }),
                Err(_) => return Err(EgressError::Resolve { host: bare.to_string(), message: "timed out".into() }),
            },
        };
        let mine = host_addresses();
        let mut refused = None;
        for a in candidates {
            match self.check_with(a, &mine) {
                Ok(()) => return Ok(a),
                Err(reason) => refused = Some((a, reason)),
            }
        }
        match refused {
            Some((addr, reason)) => Err(EgressError::Denied { target: format!("{host}:{port}"), addr, reason }),
            None => Err(EgressError::NoAddress(host.to_string())),
        }
    }
}

/// Every address (and broadcast address) on the host's interfaces, in the daemon's network
/// namespace; cached for [`HOST_ADDRS_TTL`]. An unreadable interface list gives the last known
/// one (empty at first: the built-in refusals still cover loopback).
pub fn host_addresses() -> Arc<[IpAddr]> {
    static CACHE: Mutex<Option<(Instant, Arc<[IpAddr]>)>> = Mutex::new(None);
    let Ok(mut cache) = CACHE.lock() else { return read_host_addresses().unwrap_or_else(|| Arc::from(Vec::new())) };
    if let Some((at, addrs)) = cache.as_ref()
        && at.elapsed() < HOST_ADDRS_TTL
    {
        return addrs.clone();
    }
    match read_host_addresses() {
        Some(addrs) => {
            *cache = Some((Instant::now(), addrs.clone()));
            addrs
        }
        None => cache.as_ref().map(|(_, a)| a.clone()).unwrap_or_else(|| Arc::from(Vec::new())),
    }
}

fn read_host_addresses() -> Option<Arc<[IpAddr]>> {
    let ifs = match nix::ifaddrs::getifaddrs() {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(error = %e, "egress policy: reading the host's interface addresses failed");
            return None;
        }
    };
    let ip_of =
        |s: &nix::sys::socket::SockaddrStorage| s.as_sockaddr_in().map(|a| IpAddr::V4(a.ip())).or_else(|| s.as_sockaddr_in6().map(|a| IpAddr::V6(a.ip())));
    let mut out: Vec<IpAddr> = Vec::new();
    for i in ifs {
        for ip in [i.address.as_ref(), i.broadcast.as_ref()].into_iter().flatten().filter_map(ip_of) {
            if !out.contains(&ip) {
                out.push(ip);
            }
        }
    }
    Some(Arc::from(out))
}

static SITE_POLICY: RwLock<Option<Arc<EgressPolicy>>> = RwLock::new(None);

/// Make `policy` the one [`site_policy`] returns (the daemon does this at start-up, from
/// `[egress]` of its config).
pub fn install_site_policy(policy: EgressPolicy) {
    if let Ok(mut p) = SITE_POLICY.write() {
        *p = Some(Arc::new(policy));
    }
}

/// The site's egress policy: the installed one, or the strict default.
pub fn site_policy() -> Arc<EgressPolicy> {
    SITE_POLICY.read().ok().and_then(|p| p.clone()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipnet::Ipv6Net;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    fn strict(s: &str) -> Result<(), Reason> {
        EgressPolicy::default().check_with(sa(s), &[])
    }

    #[test]
    fn special_addresses_are_refused_in_every_spelling() {
        for (a, why) in [
            ("127.0.0.1:80", Reason::Loopback),
            ("127.8.9.10:80", Reason::Loopback),
            ("[::1]:80", Reason::Loopback),
            ("[::ffff:127.0.0.1]:80", Reason::Loopback),
            ("[64:ff9b::7f00:1]:80", Reason::Loopback),
            ("[2002:7f00:1::1]:80", Reason::Loopback),
            ("0.0.0.0:80", Reason::Unspecified),
            ("0.1.2.3:80", Reason::Unspecified),
            ("[::]:80", Reason::Unspecified),
            ("[::ffff:0.0.0.0]:80", Reason::Unspecified),
            ("169.254.169.254:80", Reason::LinkLocal),
            ("[::ffff:169.254.169.254]:80", Reason::LinkLocal),
            ("169.254.128.1:80", Reason::LinkLocal),
            ("[fe80::1]:80", Reason::LinkLocal),
            ("[febf:ffff::1]:80", Reason::LinkLocal),
            ("224.0.0.1:80", Reason::Multicast),
            ("[ff02::1]:80", Reason::Multicast),
            ("255.255.255.255:80", Reason::Broadcast),
            ("240.0.0.1:80", Reason::Reserved),
            ("[fec0::1]:80", Reason::Reserved),
            ("[::7f00:1]:80", Reason::Reserved),
        ] {
            assert_eq!(strict(a), Err(why), "{a}");
        }
        for a in ["93.184.216.34:443", "10.1.2.3:5000", "192.168.1.10:80", "[2001:db8::1]:443", "[fc00::1]:80"] {
            assert_eq!(strict(a), Ok(()), "{a}");
        }
    }

    #[test]
    fn the_hosts_own_addresses_and_management_networks_are_refused() {
        let mine: Vec<IpAddr> = vec!["192.168.1.10".parse().unwrap(), "2001:db8::10".parse().unwrap()];
        let p = EgressPolicy::new(&[], &["10.20.0.0/16".into(), "fd00:1::/32".into()]).unwrap();
        assert_eq!(p.check_with(sa("192.168.1.10:8443"), &mine), Err(Reason::HostAddress));
        assert_eq!(p.check_with(sa("[::ffff:192.168.1.10]:9000"), &mine), Err(Reason::HostAddress));
        assert_eq!(p.check_with(sa("[2001:db8::10]:22"), &mine), Err(Reason::HostAddress));
        assert_eq!(p.check_with(sa("192.168.1.11:80"), &mine), Ok(()));
        assert_eq!(p.check_with(sa("10.20.3.4:80"), &mine), Err(Reason::ManagementNetwork));
        assert_eq!(p.check_with(sa("[::ffff:10.20.3.4]:80"), &mine), Err(Reason::ManagementNetwork));
        assert_eq!(p.check_with(sa("[fd00:1:2::3]:80"), &mine), Err(Reason::ManagementNetwork));
        assert_eq!(p.check_with(sa("10.21.0.1:80"), &mine), Ok(()));
    }

    #[test]
    fn exceptions_widen_narrowly_by_network_and_port() {
        let mine: Vec<IpAddr> = vec!["192.168.1.10".parse().unwrap()];
        let allow = ["127.0.0.1:5000", "[::1]:5001", "192.168.1.10/32", "[::ffff:127.0.0.2]", "169.254.169.0/24:80"].map(String::from);
        let p = EgressPolicy::new(&allow, &["192.168.0.0/16".into()]).unwrap();
        assert_eq!(p.check_with(sa("127.0.0.1:5000"), &mine), Ok(()));
        assert_eq!(p.check_with(sa("[::ffff:127.0.0.1]:5000"), &mine), Ok(()), "the same destination");
        assert_eq!(p.check_with(sa("127.0.0.1:5001"), &mine), Err(Reason::Loopback), "another port of the allowed address");
        assert_eq!(p.check_with(sa("[::1]:5001"), &mine), Ok(()));
        assert_eq!(p.check_with(sa("[::1]:5000"), &mine), Err(Reason::Loopback));
        assert_eq!(p.check_with(sa("192.168.1.10:8443"), &mine), Ok(()), "an exception beats the host's address and deny_cidrs");
        assert_eq!(p.check_with(sa("127.0.0.2:1"), &mine), Ok(()), "a mapped rule is the IPv4 address, any port");
        assert_eq!(p.check_with(sa("169.254.169.254:80"), &mine), Ok(()));
        assert_eq!(p.check_with(sa("169.254.169.254:81"), &mine), Err(Reason::LinkLocal));
        assert_eq!(p.exceptions().len(), 5);
    }

    #[test]
    fn bad_rules_are_refused_with_their_key() {
        for (allow, deny) in [
            (vec!["nonsense"], vec![]),
            (vec!["127.0.0.1:0"], vec![]),
            (vec!["127.0.0.1:99999"], vec![]),
            (vec!["[::1"], vec![]),
            (vec!["[::1]5000"], vec![]),
            (vec!["10.0.0.0/33"], vec![]),
            (vec![], vec!["10.0.0.0/8:22"]),
            (vec![], vec![""]),
        ] {
            let a: Vec<String> = allow.iter().map(|s| s.to_string()).collect();
            let d: Vec<String> = deny.iter().map(|s| s.to_string()).collect();
            let err = EgressPolicy::new(&a, &d).expect_err("refused");
            let key = if allow.is_empty() { "deny_cidrs" } else { "allow_cidrs" };
            assert!(matches!(&err, EgressError::BadRule { key: k, .. } if *k == key), "{allow:?} {deny:?}: {err}");
        }
        let p = EgressPolicy::new(&["10.0.0.7/8".into()], &["fd00::/8".into()]).unwrap();
        assert_eq!(p.exceptions()[0].net, IpNet::V4(Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), 8).unwrap()), "networks are truncated");
        assert!(matches!(p.deny[0], IpNet::V6(n) if n == "fd00::/8".parse::<Ipv6Net>().unwrap()));
    }

    #[test]
    fn the_host_has_addresses_and_its_loopback_is_among_them() {
        let mine = host_addresses();
        assert!(mine.iter().any(|a| a.is_loopback()), "{mine:?}");
        for a in mine.iter().filter(|a| classify(**a).is_none()) {
            assert_eq!(EgressPolicy::default().check(SocketAddr::new(*a, 80)), Err(Reason::HostAddress), "{a}");
        }
    }

    #[tokio::test]
    async fn names_are_resolved_once_and_judged_by_their_addresses() {
        let p = EgressPolicy::default();
        let e = p.resolve("localhost", 8443).await.expect_err("localhost is loopback");
        assert!(matches!(e, EgressError::Denied { reason: Reason::Loopback, .. }), "{e}");
        assert!(matches!(p.resolve("[::1]", 80).await, Err(EgressError::Denied { reason: Reason::Loopback, .. })));
        assert!(matches!(p.resolve("169.254.169.254", 80).await, Err(EgressError::Denied { reason: Reason::LinkLocal, .. })));
        assert!(matches!(p.resolve("", 80).await, Err(EgressError::NoAddress(_))));
        let allowed = EgressPolicy::new(&["127.0.0.1:8443".into()], &[]).unwrap();
        assert_eq!(allowed.resolve("127.0.0.1", 8443).await.expect("the exception"), sa("127.0.0.1:8443"));
        assert!(allowed.resolve("127.0.0.1", 8444).await.is_err());
    }
}
