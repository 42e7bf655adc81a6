//! Ownership of the functions gateway's routes and hosts across projects.
//!
//! The gateway routes by `Host` (when a function names one) and the longest path prefix. A
//! *scope* is one host name, or "no host" (hostless routes, matching any host, are one scope of
//! their own). Within a scope a project *claims* path prefixes by segments: `/app` claims `/app`
//! and everything under `/app/`, but not `/apple`; `/` claims the whole scope. A project may nest
//! its own routes, but two projects may not claim overlapping prefixes (one a segment prefix of
//! the other) in the same scope (409 naming `spec.route`), and a host name used by one project's
//! function cannot be used by another project's (409 naming `spec.host`). A host must also be one
//! of the project's site-admin-approved `function_domains` or a subdomain of one (403 naming
//! `spec.host`).
//!
//! Claims are checked inside the write transaction that creates or changes the function, so two
//! concurrent deploys cannot both win. Overlaps made before these rules existed keep serving, but
//! the gateway's pick respects ownership ([`pick`]): the earliest claim owns a host, and among the
//! routes matching a request the earliest claim owns the request, which then goes to that
//! project's longest matching prefix, never to another project's function nested under it.

use std::sync::Arc;

use rusqlite::Connection;

use serde::Deserialize;

use super::{Kind, ProjectCtx, SiteError, projects};
use crate::state::repo;

/// The form a host name is compared in: lower case, without a trailing dot or a `:port`.
pub fn normalize_host(h: &str) -> String {
    let h = match h.rsplit_once(':') {
        Some((n, p)) if !n.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => h,
    };
    h.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether `host` is `domain` or a subdomain of it (`api.example.com` under `example.com`).
pub fn host_under(host: &str, domain: &str) -> bool {
    host == domain || host.strip_suffix(domain).is_some_and(|rest| rest.ends_with('.'))
}

/// Check a route: starts with `/`, at most 256 bytes, visible ASCII without `%`, `?`, `#` or
/// `\`, no empty (`//`), `.` or `..` segment (a trailing `/` is allowed).
pub fn validate_route(r: &str) -> Result<(), SiteError> {
    let bad = |m: &str| Err(SiteError::invalid("spec.route", m.to_string()));
    if !r.starts_with('/') || r.len() > 256 {
        return bad("a path starting with '/', at most 256 characters");
    }
    if r.bytes().any(|b| !(0x21..0x7f).contains(&b) || matches!(b, b'%' | b'?' | b'#' | b'\\')) {
        return bad("visible ASCII only, without '%', '?', '#' or '\\'");
    }
    let inner = r.trim_start_matches('/');
    let inner = inner.strip_suffix('/').unwrap_or(inner);
    if r.len() > 1 && (r.starts_with("//") || inner.split('/').any(|s| s.is_empty() || s == "." || s == "..")) {
        return bad("no empty, '.' or '..' path segments");
    }
    Ok(())
}

/// The path segments a route claims (`/` claims none: everything).
fn segments(route: &str) -> Vec<&str> {
    route.split('/').filter(|s| !s.is_empty()).collect()
}

/// Whether two routes overlap: one's segments are a prefix of the other's.
pub fn overlaps(a: &str, b: &str) -> bool {
    let (a, b) = (segments(a), segments(b));
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

/// What a function claims: a route prefix, within a host's scope or among the hostless routes.
#[derive(Debug, Clone, Deserialize)]
pub struct Claim {
    /// The path prefix (`spec.route`).
    pub route: String,
    /// The host (`spec.host`); none for a hostless route.
    #[serde(default)]
    pub host: Option<String>,
}

/// A routable function as [`pick`] sees it (the gateway's routes implement it).
pub trait Routable {
    /// The function's id.
    fn id(&self) -> &str;
    /// The owning project's id.
    fn project(&self) -> &str;
    /// The host filter (normalized), if any.
    fn host(&self) -> Option<&str>;
    /// The path prefix.
    fn prefix(&self) -> &str;
    /// When the function was created (RFC 3339): the earliest claim owns a host or prefix.
    fn claimed_at(&self) -> &str;
    /// The network interface (id) it is also served on.
    fn interface(&self) -> Option<&str>;
}

/// Inside the write transaction that creates or changes function `self_id` (None: a new one) of
/// project `p` with claim `s` (host normalized): the host is approved for the project (403
/// `spec.host`), not used by another project (409 `spec.host`), and the route overlaps no other
/// project's in the same scope (409 `spec.route`).
pub fn check_claims(c: &Connection, p: &ProjectCtx, s: &Claim, self_id: Option<&str>) -> Result<(), SiteError> {
    if let Some(h) = &s.host {
        let domains = projects::spec_of(c, p)?.function_domains;
        if !domains.iter().any(|d| host_under(h, d)) {
            return Err(SiteError::ForbiddenOn {
                field: "spec.host".into(),
                message: format!(
                    "host {h} is not under a domain approved for project {} (a site admin approves domains with the project's spec.function_domains)",
                    p.name
                ),
            });
        }
    }
    for row in repo::list(c, Kind::Function.as_str(), None, None, i64::MAX as usize)? {
        if Some(row.id.as_str()) == self_id || row.project_id.as_deref() == Some(p.id.as_str()) {
            continue;
        }
        let Ok(other) = serde_json::from_str::<Claim>(&row.spec) else { continue };
        let other_host = other.host.as_deref().map(normalize_host);
        if s.host.is_some() && other_host == s.host {
            return Err(SiteError::ConflictOn {
                field: "spec.host".into(),
                message: format!("host {} is claimed by another project", s.host.as_deref().unwrap_or_default()),
            });
        }
        if other_host == s.host && overlaps(&other.route, &s.route) {
            let scope = s.host.as_deref().map(|h| format!(" on host {h}")).unwrap_or_default();
            return Err(SiteError::ConflictOn {
                field: "spec.route".into(),
                message: format!(
                    "route {} overlaps route {} of another project{scope}: a project owns its prefix and every path under it",
                    s.route, other.route
                ),
            });
        }
    }
    Ok(())
}

/// Whether `prefix` routes `path` (string prefix at a segment boundary).
fn matches(prefix: &str, path: &str) -> bool {
    path.starts_with(prefix) && (prefix.ends_with('/') || path.len() == prefix.len() || path[prefix.len()..].starts_with('/'))
}

/// The route for a request among `routes` (on one network interface when `eni` is given):
/// routes naming the request's host first, else hostless ones; within the scope the earliest
/// claim owns the host and the request, and the owner's longest matching prefix serves it.
pub fn pick<'a, R: Routable + 'a>(routes: impl Iterator<Item = &'a Arc<R>> + Clone, host: Option<&str>, path: &str, eni: Option<&str>) -> Option<Arc<R>> {
    let host = host.map(normalize_host);
    let on = routes.filter(|r| eni.is_none_or(|e| r.interface() == Some(e)));
    let claim = |r: &&Arc<R>| (r.claimed_at().to_string(), r.id().to_string());
    if let Some(h) = host.as_deref() {
        let named = on.clone().filter(|r| r.host() == Some(h));
        // The host's owner: the project of its earliest claim; other projects' routes of the
        // same host (made before ownership was enforced) are never used.
        if let Some(owner) = named.clone().min_by_key(claim).map(|r| r.project().to_string())
            && let Some(r) = named.filter(|r| r.project() == owner && matches(r.prefix(), path)).max_by_key(|r| r.prefix().len())
        {
            return Some(r.clone());
        }
    }
    let hostless = on.filter(|r| r.host().is_none() && matches(r.prefix(), path));
    let owner = hostless.clone().min_by_key(claim)?.project().to_string();
    hostless.filter(|r| r.project() == owner).max_by_key(|r| r.prefix().len()).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_overlap_by_segments() {
        assert!(overlaps("/app", "/app/login"));
        assert!(overlaps("/app/login", "/app"));
        assert!(overlaps("/app/", "/app"));
        assert!(overlaps("/", "/anything"));
        assert!(!overlaps("/app", "/apple"));
        assert!(!overlaps("/app/a", "/app/b"));
        for bad in ["app", "/a//b", "/a/../b", "/./a", "/a%2fb", "/a?b", "//a"] {
            assert!(validate_route(bad).is_err(), "{bad}");
        }
        for ok in ["/", "/app", "/app/", "/app/login", "/a-b_c.d/e~f"] {
            assert!(validate_route(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn hosts_are_under_their_domains() {
        assert!(host_under("example.com", "example.com"));
        assert!(host_under("api.example.com", "example.com"));
        assert!(!host_under("badexample.com", "example.com"));
        assert!(!host_under("example.com.evil", "example.com"));
        assert_eq!(normalize_host("API.Example.com.:8080"), "api.example.com");
    }
}
