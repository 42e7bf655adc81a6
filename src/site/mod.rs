//! The site service: the domain model and its operations, generic over kinds.
//!
//! Every change is one SQLite transaction that also appends its events; the events are published
//! on an in-process bus in commit order, which wakes the reconcilers and feeds the SSE stream.

pub mod auth;
pub mod balancing;
pub mod bootstrap;
pub mod buckets;
pub mod containers;
pub mod drift;
pub mod engines;
pub mod error;
pub mod events;
pub mod failpoint;
pub mod function_logs;
pub mod function_metrics;
pub mod function_routes;
pub mod function_serve;
pub mod function_shares;
pub mod functions;
pub mod health;
pub mod images;
pub mod instance_host;
pub mod instance_images;
pub mod instance_supervisor;
pub mod instances;
pub mod kind;
pub mod login_limit;
pub mod lookup;
pub mod metrics;
pub mod model;
pub mod net_model;
pub mod network;
pub mod nodes;
pub mod object_check;
pub mod objects;
pub mod operations;
pub mod outbox;
pub mod portal;
pub mod projects;
pub mod public;
pub mod quotas;
pub mod reconcile;
pub mod resource_kind;
#[cfg(test)]
pub(crate) mod test_fixture;
pub mod userns;
pub mod volumes;
pub mod workload;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::{Connection, Transaction};
use serde_json::Value;
use tokio::sync::broadcast;

use crate::config::Config;
use crate::state::{Db, EventRow, NewEvent, ResourceRow, StateError, repo};
pub use error::SiteError;
pub use events::Event;
pub use kind::{Kind, Scope};
pub use model::{Ref, Resource, Status};

/// The project a request acts in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectCtx {
    /// `proj-<ULID>`.
    pub id: String,
    /// The project's name.
    pub name: String,
}

/// The site service handle (cheap to clone).
#[derive(Clone)]
pub struct Site {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    config: Config,
    bus: broadcast::Sender<Arc<Event>>,
    metrics: metrics::Metrics,
    node_name: String,
    started_at: String,
    ready: AtomicBool,
    images: images::ImageState,
    engines: engines::Engines,
    functions: std::sync::OnceLock<functions::FunctionState>,
    login_limit: login_limit::LoginLimiter,
    /// Wakes for reconcilers (see [`Site::wake`]).
    wakes: broadcast::Sender<Kind>,
    /// Bumped after every commit that added outbox records (events, audit).
    outbox: tokio::sync::watch::Sender<u64>,
    /// The nftables generations the VPC passes committed, per namespace (the last few).
    own_rulesets: std::sync::Mutex<BTreeMap<String, std::collections::VecDeque<u32>>>,
}

/// Capacity of the in-process event bus; a subscriber that lags further re-reads from SQLite.
const BUS_CAPACITY: usize = 4096;

impl Site {
    /// Open the site over an opened database, working through `engines` (the real host's, from
    /// [`engines::Engines::open`]; recording fakes in tests that run without root).
    pub fn new(db: Db, config: Config, node_name: String, engines: engines::Engines) -> Self {
        let (bus, _) = broadcast::channel(BUS_CAPACITY);
        Site {
            inner: Arc::new(Inner {
                db,
                config,
                bus,
                metrics: metrics::Metrics::new(),
                node_name,
                started_at: model::now_rfc3339(),
                ready: AtomicBool::new(false),
                images: images::ImageState::default(),
                engines,
                functions: std::sync::OnceLock::new(),
                login_limit: login_limit::LoginLimiter::default(),
                wakes: broadcast::channel(64).0,
                outbox: tokio::sync::watch::Sender::new(0),
                own_rulesets: std::sync::Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// The host network operations of the VPC reconcilers.
    pub fn net_host(&self) -> &dyn crate::net::nethost::NetHost {
        self.inner.engines.net.as_ref()
    }

    /// The storage pool's operations (volumes and snapshots).
    pub fn volume_host(&self) -> &dyn crate::storage::host::VolumeHost {
        self.inner.engines.volumes.as_ref()
    }

    /// The container engine's host operations.
    pub fn container_host(&self) -> &dyn crate::container::host::ContainerHost {
        self.inner.engines.containers.as_ref()
    }

    /// The instance workers' host operations.
    pub fn instance_host(&self) -> &dyn instance_host::InstanceHost {
        self.inner.engines.instances.as_ref()
    }

    /// The effective configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// Metrics registry and families.
    pub fn metrics(&self) -> &metrics::Metrics {
        &self.inner.metrics
    }

    /// The image engine's per-daemon state.
    pub(crate) fn login_limit(&self) -> &login_limit::LoginLimiter {
        &self.inner.login_limit
    }

    pub(crate) fn images(&self) -> &images::ImageState {
        &self.inner.images
    }

    /// The object store (opened with the engines, before the site).
    pub(crate) fn objects(&self) -> &objects::ObjectState {
        &self.inner.engines.objects
    }

    /// The function engine's slot (see [`Site::functions`]).
    pub(crate) fn functions_cell(&self) -> &std::sync::OnceLock<functions::FunctionState> {
        &self.inner.functions
    }

    /// This node's name.
    pub fn node_name(&self) -> &str {
        &self.inner.node_name
    }

    /// When this daemon started (RFC 3339).
    pub fn started_at(&self) -> &str {
        &self.inner.started_at
    }

    /// Whether every reconciler finished its start-up pass.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    pub(crate) fn set_ready(&self) {
        self.inner.ready.store(true, Ordering::Release);
    }

    /// Make every reconciler of `kind` pass over all its resources now (the drift watcher's
    /// call when the kernel reports a change cloudlet did not make).
    pub fn wake(&self, kind: Kind) {
        let _ = self.inner.wakes.send(kind);
    }

    /// Subscribe to [`Site::wake`] calls.
    pub fn subscribe_wakes(&self) -> broadcast::Receiver<Kind> {
        self.inner.wakes.subscribe()
    }

    /// Note that a VPC pass committed nftables generation `generation` in namespace `netns`.
    pub fn record_ruleset_generation(&self, netns: &str, generation: u32) {
        let mut m = self.inner.own_rulesets.lock().unwrap_or_else(|p| p.into_inner());
        let q = m.entry(netns.to_string()).or_default();
        q.push_back(generation);
        while q.len() > 16 {
            q.pop_front();
        }
    }

    /// Whether generation `generation` of namespace `netns` was committed by a VPC pass.
    pub fn is_own_ruleset_generation(&self, netns: &str, generation: u32) -> bool {
        let m = self.inner.own_rulesets.lock().unwrap_or_else(|p| p.into_inner());
        m.get(netns).is_some_and(|q| q.contains(&generation))
    }

    /// Subscribe to events as they commit.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.inner.bus.subscribe()
    }

    /// A receiver that changes after every commit that added records to the outbox.
    pub fn subscribe_outbox(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.outbox.subscribe()
    }

    /// Tell outbox pulls that waited that records were committed.
    pub(crate) fn outbox_changed(&self) {
        self.inner.outbox.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Run blocking site code (SQLite, hashing) off the async runtime.
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce(&Site) -> Result<T, SiteError> + Send + 'static) -> Result<T, SiteError> {
        let s = self.clone();
        tokio::task::spawn_blocking(move || f(&s)).await.map_err(|e| SiteError::Internal(format!("blocking task failed: {e}")))?
    }

    /// One write transaction; events pushed into the vector are appended in the same transaction
    /// and published after commit, in commit order.
    pub fn write<T>(&self, f: impl FnOnce(&Transaction<'_>, &mut Vec<NewEvent>) -> Result<T, SiteError>) -> Result<T, SiteError> {
        let (bus, outbox) = (&self.inner.bus, &self.inner.outbox);
        let (out, _) = self.inner.db.write(
            |tx| {
                let mut evs = Vec::new();
                let out = f(tx, &mut evs)?;
                let (time, ms) = (model::now_rfc3339(), model::now_ms());
                let rows = evs.iter().map(|e| repo::append_event(tx, e, &time, ms)).collect::<Result<Vec<EventRow>, StateError>>()?;
                Ok::<_, SiteError>((out, rows))
            },
            |(_, rows)| {
                for r in rows {
                    let _ = bus.send(Arc::new(Event::from(r.clone())));
                }
                if !rows.is_empty() {
                    outbox.send_modify(|n| *n = n.wrapping_add(1));
                }
            },
        )?;
        Ok(out)
    }

    /// Read with a pooled connection.
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T, SiteError>) -> Result<T, SiteError> {
        self.inner.db.read(f)
    }

    /// Resolve a reference to a row of `kind`, in `project` for project-scoped kinds.
    /// Errors: not found (also when it exists in another project).
    pub fn find(c: &Connection, kind: Kind, project: Option<&ProjectCtx>, r: &Ref) -> Result<ResourceRow, SiteError> {
        let pid = project.map(|p| p.id.as_str());
        let row = match r {
            Ref::Id(id) => repo::get(c, id)?,
            Ref::Name(n) => repo::get_by_name(c, kind.as_str(), pid, n)?,
        };
        let label = match r {
            Ref::Id(s) | Ref::Name(s) => s.clone(),
        };
        match row {
            Some(row) if row.kind == kind.as_str() && (kind.scope() == Scope::Site || row.project_id.as_deref() == pid) => Ok(row),
            _ => Err(SiteError::not_found(kind.as_str(), label)),
        }
    }

    /// Create a resource of `kind` with a validated `spec` and an initial `status`, optionally with
    /// a secret hash. Checks name, labels, the project's quota and that the project is live.
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        &self,
        kind: Kind,
        project: Option<&ProjectCtx>,
        name: &str,
        labels: &BTreeMap<String, String>,
        spec: &Value,
        status: &Status,
        secret_hash: Option<&str>,
    ) -> Result<Resource, SiteError> {
        self.create_with(kind, project, name, labels, status, secret_hash, |_| Ok(spec.clone()))
    }

    /// Like [`Site::create`], with the spec built (resolved, checked against other resources) by
    /// `build` inside the same write transaction, so checks such as CIDR overlap cannot race.
    #[allow(clippy::too_many_arguments)]
    pub fn create_with(
        &self,
        kind: Kind,
        project: Option<&ProjectCtx>,
        name: &str,
        labels: &BTreeMap<String, String>,
        status: &Status,
        secret_hash: Option<&str>,
        build: impl FnOnce(&Connection) -> Result<Value, SiteError>,
    ) -> Result<Resource, SiteError> {
        self.create_with_status(kind, project, name, labels, secret_hash, |c| Ok((build(c)?, status.clone())))
    }

    /// Like [`Site::create_with`], with the initial status also built inside the transaction
    /// (for status that depends on what the build assigned, such as a load balancer's VIP).
    pub fn create_with_status(
        &self,
        kind: Kind,
        project: Option<&ProjectCtx>,
        name: &str,
        labels: &BTreeMap<String, String>,
        secret_hash: Option<&str>,
        build: impl FnOnce(&Connection) -> Result<(Value, Status), SiteError>,
    ) -> Result<Resource, SiteError> {
        self.create_then(kind, project, name, labels, secret_hash, build, |_, _, _| Ok(None))
    }

    /// Like [`Site::create_with_status`], with `then` run in the same transaction after the
    /// insert (to record an operation on the new resource, say); returns what `then` returns
    /// when it gives a row, else the created resource.
    #[allow(clippy::too_many_arguments)]
    pub fn create_then(
        &self,
        kind: Kind,
        project: Option<&ProjectCtx>,
        name: &str,
        labels: &BTreeMap<String, String>,
        secret_hash: Option<&str>,
        build: impl FnOnce(&Connection) -> Result<(Value, Status), SiteError>,
        then: impl FnOnce(&Connection, &ResourceRow, &mut Vec<NewEvent>) -> Result<Option<ResourceRow>, SiteError>,
    ) -> Result<Resource, SiteError> {
        model::validate_name("name", name)?;
        model::validate_labels(labels)?;
        if kind.scope() == Scope::Project && project.is_none() {
            return Err(SiteError::Internal(format!("{} needs a project", kind.as_str())));
        }
        let project = if kind.scope() == Scope::Project { project } else { None };
        let row = self.write(|tx, evs| {
            if let Some(p) = project {
                projects::check_live_and_quota(tx, p, kind)?;
            }
            let (spec, status) = build(tx)?;
            let now = model::now_rfc3339();
            let row = ResourceRow {
                id: kind.new_id(),
                kind: kind.as_str().to_string(),
                project_id: project.map(|p| p.id.clone()),
                project_name: None,
                name: name.to_string(),
                labels: serde_json::to_string(labels)?,
                spec: serde_json::to_string(&spec)?,
                status: serde_json::to_string(&status)?,
                generation: 1,
                created_at: now.clone(),
                updated_at: now,
                deleting: false,
            };
            repo::insert(tx, &row).map_err(|e| match e {
                StateError::Duplicate(_) => SiteError::AlreadyExists { kind: kind.as_str().to_string(), name: name.to_string() },
                other => other.into(),
            })?;
            if let Some(h) = secret_hash {
                repo::put_secret(tx, &row.id, h)?;
            }
            evs.push(event_for(&row, project, "created", format!("{} {} created", kind.as_str(), name)));
            let created = repo::get(tx, &row.id)?.ok_or_else(|| SiteError::Internal("row vanished".into()))?;
            Ok(then(tx, &created, evs)?.unwrap_or(created))
        })?;
        Resource::from_row(row)
    }

    /// Get one resource by id or name.
    pub fn get(&self, kind: Kind, project: Option<&ProjectCtx>, r: &str) -> Result<Resource, SiteError> {
        let r = model::parse_ref(kind, r)?;
        let row = self.read(|c| Self::find(c, kind, project, &r))?;
        Resource::from_row(row)
    }

    /// List resources of `kind` (of one project, or all when `project` is `None`), ordered by
    /// name, after the name `after`, at most `limit`.
    pub fn list(&self, kind: Kind, project: Option<&ProjectCtx>, after: Option<&str>, limit: usize) -> Result<Vec<Resource>, SiteError> {
        let rows = self.read(|c| Ok(repo::list(c, kind.as_str(), project.map(|p| p.id.as_str()), after, limit)?))?;
        rows.into_iter().map(Resource::from_row).collect()
    }

    /// Update labels and/or merge-patch the spec (RFC 7386), when `if_match` (if given) equals
    /// the current generation. `validate` normalizes the patched spec or rejects it.
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &self,
        kind: Kind,
        project: Option<&ProjectCtx>,
        r: &str,
        if_match: Option<i64>,
        labels: Option<&BTreeMap<String, String>>,
        spec_patch: Option<&Value>,
        validate: &dyn Fn(&Connection, Value) -> Result<Value, SiteError>,
    ) -> Result<Resource, SiteError> {
        let r = model::parse_ref(kind, r)?;
        if let Some(l) = labels {
            model::validate_labels(l)?;
        }
        let row = self.write(|tx, evs| {
            let row = Self::find(tx, kind, project, &r)?;
            if row.deleting {
                return Err(SiteError::Conflict(format!("{} {} is being deleted", kind.as_str(), row.name)));
            }
            if let Some(g) = if_match
                && g != row.generation
            {
                return Err(SiteError::Conflict(format!("generation {g} is stale: {} {} is at generation {}", kind.as_str(), row.name, row.generation)));
            }
            let mut spec: Value = serde_json::from_str(&row.spec)?;
            if let Some(p) = spec_patch {
                model::merge_patch(&mut spec, p);
            }
            let spec = validate(tx, spec)?;
            let labels = match labels {
                Some(l) => serde_json::to_string(l)?,
                None => row.labels.clone(),
            };
            let now = model::now_rfc3339();
            let spec_s = serde_json::to_string(&spec)?;
            if repo::update_spec(tx, &row.id, row.generation, &labels, &spec_s, &now)?.is_none() {
                return Err(SiteError::Conflict("concurrent update".into()));
            }
            evs.push(event_for(&row, project, "updated", format!("{} {} updated", kind.as_str(), row.name)));
            repo::get(tx, &row.id)?.ok_or_else(|| SiteError::Internal("row vanished".into()))
        })?;
        Resource::from_row(row)
    }

    /// Delete a resource at once (its reconciler, if any, cleans host state up afterwards).
    pub fn delete(&self, kind: Kind, project: Option<&ProjectCtx>, r: &str) -> Result<Resource, SiteError> {
        self.delete_with(kind, project, r, |_, _| Ok(()))
    }

    /// Like [`Site::delete`], refusing with `check` (inside the transaction), e.g. while in use.
    pub fn delete_with(
        &self,
        kind: Kind,
        project: Option<&ProjectCtx>,
        r: &str,
        check: impl FnOnce(&Connection, &ResourceRow) -> Result<(), SiteError>,
    ) -> Result<Resource, SiteError> {
        let r = model::parse_ref(kind, r)?;
        let row = self.write(|tx, evs| {
            let row = Self::find(tx, kind, project, &r)?;
            check(tx, &row)?;
            repo::delete(tx, &row.id).map_err(|e| match e {
                StateError::Referenced(_) => SiteError::Conflict(format!("{} {} is still in use", kind.as_str(), row.name)),
                other => other.into(),
            })?;
            evs.push(event_for(&row, project, "deleted", format!("{} {} deleted", kind.as_str(), row.name)));
            Ok(row)
        })?;
        Resource::from_row(row)
    }

    /// Read-modify-write the status of a resource (for reconcilers). Publishes a `status` event
    /// when the phase changes. Returns `None` when the resource is gone.
    pub fn set_status(&self, id: &str, f: impl FnOnce(&mut Status, &ResourceRow)) -> Result<Option<Status>, SiteError> {
        self.write(|tx, evs| {
            let Some(row) = repo::get(tx, id)? else { return Ok(None) };
            let old: Status = serde_json::from_str(&row.status).unwrap_or_default();
            let mut st = old.clone();
            f(&mut st, &row);
            if st == old {
                return Ok(Some(st));
            }
            repo::update_status(tx, id, &serde_json::to_string(&st)?, &model::now_rfc3339())?;
            if st.phase != old.phase {
                let p = row.project_id.clone().zip(row.project_name.clone()).map(|(id, name)| ProjectCtx { id, name });
                evs.push(event_for(&row, p.as_ref(), "status", format!("{} {} is {}", row.kind, row.name, st.phase)));
            }
            Ok(Some(st))
        })
    }

    /// Count resources per kind (in one project, or site-wide).
    pub fn counts(&self, project: Option<&ProjectCtx>) -> Result<BTreeMap<String, i64>, SiteError> {
        let v = self.read(|c| Ok(repo::count_by_kind(c, project.map(|p| p.id.as_str()))?))?;
        Ok(v.into_iter().map(|(k, n)| (Kind::from_name(&k).map(|k| k.plural().to_string()).unwrap_or(k), n)).collect())
    }
}

/// Build the event describing a change to `row`.
pub(crate) fn event_for(row: &ResourceRow, project: Option<&ProjectCtx>, ty: &str, message: String) -> NewEvent {
    // A project's own events belong to that project, so its members see them.
    let own = (row.kind == Kind::Project.as_str()).then(|| ProjectCtx { id: row.id.clone(), name: row.name.clone() });
    let project = project.or(own.as_ref());
    NewEvent {
        project_id: project.map(|p| p.id.clone()).or_else(|| row.project_id.clone()),
        project: project.map(|p| p.name.clone()).or_else(|| row.project_name.clone()),
        kind: row.kind.clone(),
        resource_id: row.id.clone(),
        name: row.name.clone(),
        event_type: ty.to_string(),
        message,
    }
}
