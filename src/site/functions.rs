//! Serverless functions of a project: each is a resource whose versions are
//! `wasi:http/proxy` components (by SHA-256 in `spec.digests`), served by the HTTP
//! gateway by host and path prefix ([`crate::function`]).
//!
//! A deploy validates the component (it must be a component exporting
//! `wasi:http/incoming-handler`; 422 naming `body` otherwise), compiles it into the engine's
//! artifact cache, stores it as `DATA/functions/components/<sha256>.wasm` (temp name, fsync,
//! rename) and only then commits the spec that names its digest, so a crash never leaves a
//! function pointing at a missing component; unnamed components are swept at start-up.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::failpoint::failpoint;
use super::function_logs::{FunctionLog, FunctionLogs};
use super::function_metrics::FunctionStats;
use super::model::Status;
use super::resource_kind::{Labels, Patchable, ResourceKind};
use super::{Kind, ProjectCtx, Resource, Site, SiteError};
use crate::function::{FunctionEngine, FunctionError, Invocation, Limits, Loaded};
use crate::state::repo;

/// Spec of a function.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FunctionSpec {
    /// Path prefix the gateway routes to it (`/` by default); the longest match wins. A project
    /// owns its prefix and every path under it: another project's route may not overlap it on
    /// the same host (or among hostless routes); see [`super::function_routes`].
    #[serde(default = "root")]
    pub route: String,
    /// Only requests for this `Host` (any host when absent): a lower-case DNS name equal to or
    /// under one of the project's `function_domains`, not used by another project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Environment variables the function sees (its configuration).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Linear memory limit per instance, MiB (1 to 1024; default 64).
    #[serde(default = "mem")]
    pub memory_mib: u32,
    /// CPU time per request, ms (1 to 60,000; default 1,000); past it the gateway answers 504.
    #[serde(default = "timeout")]
    pub timeout_ms: u32,
    /// Most requests served at once (1 to 256; default 16); beyond it the gateway answers 503.
    #[serde(default = "concurrency")]
    pub max_concurrency: u32,
    /// Largest request body, bytes (default 1 MiB, at most 64 MiB); beyond it 413.
    #[serde(default = "body_limit")]
    pub max_body_bytes: u64,
    /// Hosts its outbound HTTP requests may reach: `name` (any port) or `name:port`, lower
    /// case, at most 32. Empty (the default) denies every outbound request.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// A network interface (id or name, of the same project) on which the function is also
    /// served, at `<its private IP>:80` inside its VPC: reachable from the VPC (its security
    /// groups apply), and through an EIP or port forward to that interface. Stored as the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_interface: Option<String>,
    /// The version served (the newest deployed unless rolled back).
    #[serde(default)]
    pub version: u32,
    /// Versions kept, oldest first (the newest [`MAX_VERSIONS`]).
    #[serde(default)]
    pub versions: Vec<u32>,
    /// SHA-256 (hex) of each kept version's component, by version.
    #[serde(default)]
    pub digests: BTreeMap<u32, String>,
}

/// The highest `max_concurrency` of a function (and the default of `[functions]
/// pool_instances`, the instances the engine's pool holds for all functions together; each
/// project may use its share of them, see `function_shares`).
pub const POOL_INSTANCES: u32 = 256;

/// Versions kept per function.
pub const MAX_VERSIONS: usize = 10;

fn root() -> String {
    "/".into()
}
fn mem() -> u32 {
    64
}
fn timeout() -> u32 {
    1000
}
fn concurrency() -> u32 {
    16
}
fn body_limit() -> u64 {
    1 << 20
}

/// A routable function version, as the gateway holds it.
#[derive(Clone)]
pub struct Route {
    /// The function's id.
    pub id: String,
    /// Its name (for logs and metrics).
    pub name: String,
    /// Host filter.
    pub host: Option<String>,
    /// Path prefix.
    pub prefix: String,
    /// The project's id (route ownership).
    pub project: String,
    /// When the function was created (RFC 3339): the earliest claim owns a host or prefix.
    pub claimed_at: String,
    /// The version served.
    pub version: u32,
    /// The network interface (id) it is also served on.
    pub interface: Option<String>,
    /// Limits, environment, allow-list and log of each request.
    pub inv: Invocation,
    /// The loaded component.
    pub loaded: Loaded,
    /// Its invocation metrics.
    pub stats: Arc<FunctionStats>,
    /// Its log (the gateway adds its own lines about failed requests).
    pub log: Arc<FunctionLog>,
    /// Permits for concurrent requests (`max_concurrency`).
    pub slots: Arc<tokio::sync::Semaphore>,
    /// Largest request body, bytes.
    pub max_body: u64,
}

/// The engine and the routing table.
pub struct FunctionState {
    /// The shared engine.
    pub engine: FunctionEngine,
    routes: RwLock<HashMap<String, Arc<Route>>>,
    /// Every function's log.
    pub logs: FunctionLogs,
    /// Each project's share of the engine's instance pool.
    pub shares: Arc<super::function_shares::PoolShares>,
}

/// Where a network interface's function endpoint listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The network interface's id.
    pub interface: String,
    /// Its namespace.
    pub netns: String,
    /// Its private address (the endpoint listens on port [`ENDPOINT_PORT`]).
    pub ip: std::net::Ipv4Addr,
}

/// The port of a function endpoint on a network interface.
pub const ENDPOINT_PORT: u16 = 80;

impl FunctionState {
    /// The route on network interface `eni` for a request: as [`FunctionState::route`], among
    /// the functions served on that interface only.
    pub fn route_on(&self, eni: &str, host: Option<&str>, path: &str) -> Option<Arc<Route>> {
        self.pick(host, path, Some(eni))
    }

    /// The route of function `id`, if it is loaded.
    pub fn route_of(&self, id: &str) -> Option<Arc<Route>> {
        self.routes.read().ok()?.get(id).cloned()
    }

    /// The route for a request: host match (or none set), then the longest path prefix.
    pub fn route(&self, host: Option<&str>, path: &str) -> Option<Arc<Route>> {
        self.pick(host, path, None)
    }

    /// Put (or with `None` remove) the route of function `id`, and count the projects that
    /// share the pool again.
    fn set_route(&self, id: &str, route: Option<Route>) {
        if let Ok(mut r) = self.routes.write() {
            match route {
                Some(route) => r.insert(id.to_string(), Arc::new(route)),
                None => r.remove(id),
            };
            let projects: std::collections::HashSet<&str> = r.values().map(|x| x.project.as_str()).collect();
            self.shares.set_projects(projects.len());
        }
    }

    fn pick(&self, host: Option<&str>, path: &str, eni: Option<&str>) -> Option<Arc<Route>> {
        let routes = self.routes.read().ok()?;
        super::function_routes::pick(routes.values(), host, path, eni)
    }
}

fn fn_err(e: FunctionError) -> SiteError {
    match e {
        FunctionError::Invalid(m) => SiteError::invalid("body", m),
        other => SiteError::Function(other),
    }
}

/// What a function spec claims of the gateway's routes.
fn claim_of(s: &FunctionSpec) -> super::function_routes::Claim {
    super::function_routes::Claim { route: s.route.clone(), host: s.host.clone() }
}

impl super::function_routes::Routable for Route {
    fn id(&self) -> &str {
        &self.id
    }
    fn project(&self) -> &str {
        &self.project
    }
    fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }
    fn prefix(&self) -> &str {
        &self.prefix
    }
    fn claimed_at(&self) -> &str {
        &self.claimed_at
    }
    fn interface(&self) -> Option<&str> {
        self.interface.as_deref()
    }
}

/// Check a spec's values, normalizing its host (lower case, no trailing dot).
fn validate(s: &mut FunctionSpec) -> Result<(), SiteError> {
    super::function_routes::validate_route(&s.route)?;
    if let Some(h) = &mut s.host {
        *h = h.trim_end_matches('.').to_ascii_lowercase();
        if !super::model::valid_dns_name(h) {
            return Err(SiteError::invalid("spec.host", "a DNS name (letters, digits, '-' and '.'), without a port"));
        }
    }
    if !(1..=1024).contains(&s.memory_mib) {
        return Err(SiteError::invalid("spec.memory_mib", "between 1 and 1024"));
    }
    if !(1..=POOL_INSTANCES).contains(&s.max_concurrency) {
        return Err(SiteError::invalid("spec.max_concurrency", format!("between 1 and {POOL_INSTANCES}")));
    }
    if !(1..=64 << 20).contains(&s.max_body_bytes) {
        return Err(SiteError::invalid("spec.max_body_bytes", "between 1 byte and 64 MiB"));
    }
    if !(1..=60_000).contains(&s.timeout_ms) {
        return Err(SiteError::invalid("spec.timeout_ms", "between 1 and 60000"));
    }
    if s.allowed_hosts.len() > 32 || s.allowed_hosts.iter().any(|h| !valid_host(h)) {
        return Err(SiteError::invalid("spec.allowed_hosts", "at most 32 lower-case host names or addresses, each optionally with :port"));
    }
    if s.env.len() > 64 || s.env.iter().any(|(k, v)| k.is_empty() || k.contains('=') || k.len() > 128 || v.len() > 4096) {
        return Err(SiteError::invalid("spec.env", "at most 64 variables; names without '=', at most 128 bytes; values at most 4 KiB"));
    }
    Ok(())
}

/// `name` or `name:port`: lower-case letters, digits, `-` and `.` (or an IPv4 address).
fn valid_host(h: &str) -> bool {
    let (name, port) = match h.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (h, None),
    };
    !name.is_empty()
        && name.len() <= 253
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0))
}

/// Replace `s.network_interface` (an id or name) by the id of that interface of project `p`.
/// Errors: 422 `spec.network_interface` when the project has no such interface.
fn resolve_interface(c: &rusqlite::Connection, p: &ProjectCtx, s: &mut FunctionSpec) -> Result<(), SiteError> {
    let Some(r) = s.network_interface.clone() else { return Ok(()) };
    let kind = Kind::NetworkInterface.as_str();
    let row = match repo::get(c, &r)? {
        Some(row) if row.kind == kind && row.project_id.as_deref() == Some(p.id.as_str()) => Some(row),
        _ => repo::get_by_name(c, kind, Some(&p.id), &r)?,
    };
    let row = row.ok_or_else(|| SiteError::invalid("spec.network_interface", format!("project {} has no network interface {r}", p.name)))?;
    s.network_interface = Some(row.id);
    Ok(())
}

impl Site {
    /// Where function endpoints should listen now: each network interface some loaded function
    /// is served on, whose namespace is ready (interfaces not ready yet are left out and come
    /// on a later call). None before the function engine is made.
    pub fn function_endpoints(&self) -> Result<Vec<Endpoint>, SiteError> {
        // No engine yet means no function is loaded: asking must not make one (wasmtime's
        // engine and linker are several MiB the idle daemon does not need).
        let Some(fs) = self.functions_cell().get() else { return Ok(Vec::new()) };
        let mut enis: Vec<String> = fs.routes.read().map(|r| r.values().filter_map(|x| x.interface.clone()).collect()).unwrap_or_default();
        enis.sort();
        enis.dedup();
        let mut out = Vec::new();
        for eni in enis {
            let Some(row) = self.read(|c| Ok(repo::get(c, &eni)?))? else { continue };
            let spec: serde_json::Value = serde_json::from_str(&row.spec)?;
            let status: serde_json::Value = serde_json::from_str(&row.status)?;
            let (Some(netns), Some(ip)) = (status["netns"].as_str(), spec["private_ip"].as_str().and_then(|i| i.parse().ok())) else { continue };
            if status["phase"] == "Ready" {
                out.push(Endpoint { interface: eni, netns: netns.to_string(), ip });
            }
        }
        Ok(out)
    }

    /// Bind the listener of endpoint `e` inside its namespace; with the namespace's inode.
    pub fn bind_function_endpoint(&self, e: &Endpoint) -> Result<(std::net::TcpListener, u64), SiteError> {
        crate::net::services::tcp_listen_in(&e.netns, std::net::SocketAddr::from((e.ip, ENDPOINT_PORT))).map_err(SiteError::Network)
    }

    /// The function engine and routing table (made once).
    pub fn functions(&self) -> Result<&FunctionState, SiteError> {
        if let Some(f) = self.functions_cell().get() {
            return Ok(f);
        }
        let pool = self.config().functions.pool_instances;
        let engine = FunctionEngine::new(&self.config().data_dir.join("functions/cache"), pool, 1 << 30).map_err(fn_err)?;
        let shares = super::function_shares::PoolShares::new(pool as usize);
        Ok(self.functions_cell().get_or_init(|| FunctionState { engine, routes: RwLock::new(HashMap::new()), logs: FunctionLogs::default(), shares }))
    }

    fn function_dir(&self, id: &str) -> PathBuf {
        self.config().data_dir.join("functions").join(id)
    }

    /// Deploy `wasm` as a new version of function `name` (created on first deploy with `spec`;
    /// later deploys keep the spec and add a version). Returns the resource.
    pub fn deploy_function(&self, p: &ProjectCtx, name: &str, spec: Option<serde_json::Value>, wasm: &[u8]) -> Result<Resource, SiteError> {
        let fs = self.functions()?;
        fs.engine.load(wasm).map_err(fn_err)?;
        let existing = self.read(|c| Ok(repo::get_by_name(c, Kind::Function.as_str(), Some(&p.id), name)?))?;
        let (row, mut s) = match existing {
            Some(row) => {
                let s: FunctionSpec = serde_json::from_str(&row.spec)?;
                (Some(row), s)
            }
            None => {
                let mut s: FunctionSpec =
                    serde_json::from_value(spec.unwrap_or_else(|| serde_json::json!({}))).map_err(|e| SiteError::invalid("spec", e.to_string()))?;
                validate(&mut s)?;
                self.read(|c| resolve_interface(c, p, &mut s))?;
                (None, s)
            }
        };
        let version = s.versions.last().copied().unwrap_or(0) + 1;
        // The component is on disk (content-addressed) before any commit names it: a crash
        // in between leaves only a file nobody names, swept at the next start.
        let digest = self.write_component(wasm)?;
        failpoint("deploy_commit");
        s.version = version;
        s.versions.push(version);
        s.digests.insert(version, digest);
        while s.versions.len() > MAX_VERSIONS {
            let old = s.versions.remove(0);
            s.digests.remove(&old);
        }
        let full = serde_json::to_value(&s)?;
        let res = match row {
            // Claims are checked in the transaction that inserts: two deploys cannot both win.
            None => self.create_with(Kind::Function, Some(p), name, &BTreeMap::new(), &Status::phase("Ready"), None, |c| {
                super::function_routes::check_claims(c, p, &claim_of(&s), None)?;
                Ok(full)
            })?,
            // Against the generation read: a concurrent deploy of the same function is a 409.
            Some(row) => self.update(Kind::Function, Some(p), &row.id, Some(row.generation), None, None, &|_, _| Ok(full.clone()))?,
        };
        self.load_route(&res.id)?;
        Ok(res)
    }

    fn components_dir(&self) -> PathBuf {
        self.config().data_dir.join("functions/components")
    }

    /// Store a component as `functions/components/<sha256>.wasm` (temp name, fsync, rename,
    /// directory fsync; kept as is when already there). Returns the hex digest.
    fn write_component(&self, wasm: &[u8]) -> Result<String, SiteError> {
        use sha2::Digest;
        let digest = hex::encode(sha2::Sha256::digest(wasm));
        let dir = self.components_dir();
        let path = dir.join(format!("{digest}.wasm"));
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == wasm.len() as u64) {
            // Reused: refresh its time, so a sweep running before this deploy commits (a
            // delete of another function that named it) sees it as in flight and keeps it.
            let touched = std::fs::File::options().write(true).open(&path).and_then(|f| f.set_modified(std::time::SystemTime::now()));
            if touched.is_ok() {
                return Ok(digest);
            }
        }
        let io = |e: std::io::Error| SiteError::io(format!("writing component {digest}"), e);
        std::fs::create_dir_all(&dir).map_err(io)?;
        let tmp = dir.join(format!("{digest}.tmp-{}", ulid::Ulid::new()));
        std::fs::write(&tmp, wasm).map_err(io)?;
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        std::fs::File::open(&dir).and_then(|d| d.sync_all()).map_err(io)?;
        Ok(digest)
    }

    /// Remove stored components (and temp files) that no function's kept version names and
    /// that were last modified before `cutoff` (a deploy in flight writes its file just before
    /// it commits, so the cutoff is the daemon's start at start-up, a minute ago otherwise).
    /// Returns how many were removed.
    pub fn sweep_components(&self, cutoff: std::time::SystemTime) -> Result<usize, SiteError> {
        let ids = self.read(|c| Ok(repo::ids_of_kind(c, Kind::Function.as_str())?))?;
        let mut named = std::collections::HashSet::new();
        for id in ids {
            if let Some(row) = self.read(|c| Ok(repo::get(c, &id)?))? {
                let s: FunctionSpec = serde_json::from_str(&row.spec)?;
                named.extend(s.digests.into_values());
            }
        }
        let Ok(entries) = std::fs::read_dir(self.components_dir()) else { return Ok(0) };
        let mut removed = 0;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let digest = name.split('.').next().unwrap_or_default();
            let old = e.metadata().and_then(|m| m.modified()).is_ok_and(|t| t < cutoff);
            if old && (!name.ends_with(".wasm") || !named.contains(digest)) && std::fs::remove_file(e.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// (Re)load the route of function `id` from state (at start-up, after a deploy or rollback).
    pub fn load_route(&self, id: &str) -> Result<(), SiteError> {
        let fs = self.functions()?;
        let Some(row) = self.read(|c| Ok(repo::get(c, id)?))? else {
            fs.set_route(id, None);
            return Ok(());
        };
        let s: FunctionSpec = serde_json::from_str(&row.spec)?;
        let digest =
            s.digests.get(&s.version).ok_or_else(|| SiteError::Corrupt(format!("function {} names no component for version {}", row.name, s.version)))?;
        let wasm = std::fs::read(self.components_dir().join(format!("{digest}.wasm")))
            .map_err(SiteError::io_doing(format!("reading function {} version {}", row.name, s.version)))?;
        let loaded = fs.engine.load(&wasm).map_err(fn_err)?;
        let log = fs.logs.of(&row.id, &self.function_dir(&row.id));
        let route = Route {
            id: row.id.clone(),
            name: row.name.clone(),
            host: s.host.as_deref().map(super::function_routes::normalize_host),
            prefix: s.route.clone(),
            project: row.project_id.clone().unwrap_or_default(),
            claimed_at: row.created_at.clone(),
            version: s.version,
            interface: s.network_interface.clone(),
            inv: Invocation {
                limits: Limits { memory_bytes: (s.memory_mib as usize) << 20, timeout: Duration::from_millis(s.timeout_ms as u64) },
                env: s.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                allowed_hosts: s.allowed_hosts.iter().cloned().collect(),
                log: log.clone(),
                // Outbound requests leave through the function's VPC when it has one.
                netns: s.network_interface.as_deref().map(crate::net::names::eni_netns),
            },
            loaded,
            stats: self.metrics().functions.stats(&row.id, &row.name, row.project_name.as_deref().or(row.project_id.as_deref()).unwrap_or("")),
            log,
            slots: Arc::new(tokio::sync::Semaphore::new(s.max_concurrency as usize)),
            max_body: s.max_body_bytes,
        };
        fs.set_route(&row.id, Some(route));
        Ok(())
    }

    /// Load every function's route (start-up), after sweeping components left by a deploy that
    /// crashed before its commit (`started`: when this daemon started). Returns how many
    /// functions there are and how many came from the artifact cache.
    pub fn load_all_functions(&self, started: std::time::SystemTime) -> Result<(usize, usize), SiteError> {
        match self.sweep_components(started) {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "swept components no function names"),
            Err(e) => tracing::warn!(error = %e, "sweeping function components"),
        }
        let ids = self.read(|c| Ok(repo::ids_of_kind(c, Kind::Function.as_str())?))?;
        let mut cached = 0;
        for id in &ids {
            if let Err(e) = self.load_route(id) {
                tracing::error!(function = %id, error = %e, "loading a function failed");
            } else if self.functions()?.routes.read().ok().and_then(|r| r.get(id).map(|x| x.loaded.from_cache)).unwrap_or(false) {
                cached += 1;
            }
        }
        Ok((ids.len(), cached))
    }
}

impl ResourceKind for FunctionSpec {
    const KIND: Kind = Kind::Function;

    /// Delete a function, its versions, its route, log and metrics.
    fn delete(site: &Site, p: &ProjectCtx, r: &str) -> Result<Resource, SiteError> {
        let res = site.delete(Kind::Function, Some(p), r)?;
        let fs = site.functions()?;
        fs.set_route(&res.id, None);
        fs.logs.remove(&res.id);
        site.metrics().functions.remove(&res.id);
        if let Err(e) = site.sweep_components(std::time::SystemTime::now() - Duration::from_secs(60)) {
            tracing::warn!(error = %e, "sweeping function components");
        }
        let _ = std::fs::remove_dir_all(site.function_dir(&res.id));
        Ok(res)
    }
}

impl Patchable for FunctionSpec {
    /// Change a function's settings (a JSON merge patch of its spec): route, host, env, limits,
    /// allow-list, or `version` to roll back (or forward) to a kept version. The change takes
    /// effect for the next request. Errors: 422 naming the field; `versions` can't be changed.
    fn update(
        site: &Site,
        p: &ProjectCtx,
        r: &str,
        if_match: Option<i64>,
        labels: Option<&Labels>,
        patch: Option<&serde_json::Value>,
    ) -> Result<Resource, SiteError> {
        for f in ["versions", "digests"] {
            if patch.and_then(|v| v.get(f)).is_some() {
                return Err(SiteError::invalid(format!("spec.{f}"), "versions are kept by deploys; set spec.version to roll back"));
            }
        }
        let id = site.get(Kind::Function, Some(p), r)?.id;
        let res = site.update(Kind::Function, Some(p), r, if_match, labels, patch, &|c, v| {
            let mut s: FunctionSpec = serde_json::from_value(v).map_err(|e| SiteError::invalid("spec", e.to_string()))?;
            validate(&mut s)?;
            resolve_interface(c, p, &mut s)?;
            // A changed route or host is a new claim, checked in this transaction.
            let old: Option<FunctionSpec> = repo::get(c, &id)?.and_then(|row| serde_json::from_str(&row.spec).ok());
            if old.is_none_or(|o| o.route != s.route || o.host.as_deref().map(super::function_routes::normalize_host) != s.host) {
                super::function_routes::check_claims(c, p, &claim_of(&s), Some(&id))?;
            }
            if !s.versions.contains(&s.version) {
                return Err(SiteError::invalid("spec.version", format!("version {} is not kept; kept versions: {:?}", s.version, s.versions)));
            }
            Ok(serde_json::to_value(&s)?)
        })?;
        site.load_route(&res.id)?;
        Ok(res)
    }
}
