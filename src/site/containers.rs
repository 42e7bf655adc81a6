//! Containers: OCI containers of a project, run by the container engine ([`crate::container`])
//! from the project's images, attached to a VPC through a network interface, with limits,
//! restart policy, logs and exec.
//!
//! The spec is the desired state (`state: running|stopped`; `restart_token` grows on each start
//! or restart request); the container reconciler converges the host to it and reports
//! `status` (`Pending`, `Running`, `Restarting`, `Stopped`, `Exited`, `Failed`). A daemon restart
//! adopts running containers through their shims; a host reboot (no shim, no exit record) is a
//! failure that the restart policy answers.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::lookup::{resolve, spec_of};
use super::model::Status;
use super::net_model::NetworkInterfaceSpec;
use super::quotas::Compute;
use super::reconcile::{Controller, Outcome};
use super::resource_kind::{Creatable, Labels, Patchable, ResourceKind};
use super::workload::{self, Decision, DesiredState, End, Left, RestartPolicy, RunStatus, WorkloadSpec, decide, series};
use super::{Kind, ProjectCtx, Resource, Site, SiteError};
use crate::container::ContainerError;
use crate::container::runtime::{Layout, LogOptions, Observed};
use crate::container::shim::ExitRecord;
use crate::container::spec::{self as cspec, BindMount, Limits, RunConfig};
/// Exec results and log reading, for the API (which imports the site layer only).
pub use crate::container::{logs, runtime::ExecOutput};
use crate::state::{ResourceRow, repo};

/// Resource limits; absent fields are unlimited.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainerResources {
    /// CPUs, 0.01 to 256 (fractions allowed; CFS quota).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Memory in MiB, 4 to 1,048,576; a process past it is killed by the OOM killer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    /// Processes and threads, 1 to 4,194,304.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<i64>,
}

/// The limits a container runs with: its own, else the site's defaults (`[container]
/// default_pids`, `default_memory_mib`, `default_cpus`; 0 leaves that one unlimited), so that no
/// tenant's container runs with `pids.max = max` by omission.
pub fn effective_limits(r: &ContainerResources, c: &crate::config::ContainerConfig) -> Limits {
    Limits {
        cpus: r.cpus.or((c.default_cpus > 0.0).then_some(c.default_cpus)),
        memory_bytes: r.memory_mib.or((c.default_memory_mib > 0).then_some(c.default_memory_mib)).map(|m| m << 20),
        pids: r.pids.or((c.default_pids > 0).then_some(c.default_pids)),
    }
}

/// A mount of a volume of the project, or of a named host path (`[container.host_paths]` in the
/// site config) that a site admin granted to the project (`spec.host_paths` of the project,
/// `ro` or `rw`): exactly one of `volume` and `host_path`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainerMount {
    /// A volume (id or name on write; stored as the id), formatted as ext4 on first use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    /// The host path's name in the site config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    /// Absolute path inside the container (not `/`, `/proc`, `/sys`, `/dev`).
    pub target: String,
    #[serde(default)]
    pub read_only: bool,
}

fn default_stop_timeout() -> u32 {
    10
}

/// Spec of a container.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainerSpec {
    /// The image (id or name on create; stored as the id).
    pub image: String,
    /// Replaces the image's entrypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Replaces the image's cmd (the entrypoint's arguments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// Added to (and overriding) the image's environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Replaces the image's working directory (absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Replaces the image's user (`uid`, `name`, `uid:gid`, `name:group`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The network interface whose address and security groups the container takes (id or name on
    /// create; stored as the id). Without one the container has only loopback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_interface: Option<String>,
    #[serde(default)]
    pub resources: ContainerResources,
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    /// Restarts in a row allowed by `on-failure` (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// Mount the root filesystem read-only.
    #[serde(default)]
    pub read_only_rootfs: bool,
    #[serde(default)]
    pub mounts: Vec<ContainerMount>,
    /// `running` (default) or `stopped`.
    #[serde(default)]
    pub state: DesiredState,
    /// Seconds between SIGTERM and SIGKILL on stop (default 10, at most 300).
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout_seconds: u32,
    /// Grows by one with every start or restart request (set by the API).
    #[serde(default)]
    pub restart_token: u64,
}

fn bad_spec(e: impl std::fmt::Display) -> SiteError {
    SiteError::invalid("spec", e.to_string())
}

fn env_key_ok(k: &str) -> bool {
    !k.is_empty() && k.len() <= 256 && !k.contains('=') && !k.contains('\0') && !k.as_bytes()[0].is_ascii_digit()
}

/// Validate and normalize a container spec inside a transaction: resolve the image and the
/// network interface (not used by another container), check limits, env and mounts.
fn build_spec(site: &Site, c: &Connection, p: &ProjectCtx, v: Value, self_id: Option<&str>) -> Result<Value, SiteError> {
    let mut s: ContainerSpec = serde_json::from_value(v).map_err(bad_spec)?;
    s.image = resolve(c, Kind::Image, p, "spec.image", &s.image)?.id;
    if let Some(eni) = &s.network_interface {
        let row = resolve(c, Kind::NetworkInterface, p, "spec.network_interface", eni)?;
        if let Some(u) = repo::referencing(c, Kind::Container.as_str(), "$.network_interface", &row.id)?.iter().find(|u| Some(u.id.as_str()) != self_id) {
            return Err(SiteError::ConflictOn {
                field: "spec.network_interface".into(),
                message: format!("network interface {} is used by container {}", row.name, u.name),
            });
        }
        if let Some(u) = repo::referencing(c, Kind::Instance.as_str(), "$.network_interface", &row.id)?.first() {
            return Err(SiteError::ConflictOn {
                field: "spec.network_interface".into(),
                message: format!("network interface {} belongs to instance {}", row.name, u.name),
            });
        }
        s.network_interface = Some(row.id);
    }
    let r = &s.resources;
    if r.cpus.is_some_and(|x| !(0.01..=256.0).contains(&x) || x.is_nan()) {
        return Err(SiteError::invalid("spec.resources.cpus", "between 0.01 and 256"));
    }
    if r.memory_mib.is_some_and(|m| !(4..=1 << 20).contains(&m)) {
        return Err(SiteError::invalid("spec.resources.memory_mib", "between 4 and 1048576 MiB"));
    }
    if r.pids.is_some_and(|n| !(1..=4_194_304).contains(&n)) {
        return Err(SiteError::invalid("spec.resources.pids", "between 1 and 4194304"));
    }
    for k in s.env.keys() {
        if !env_key_ok(k) {
            return Err(SiteError::invalid(format!("spec.env.{k}"), "an environment name is 1 to 256 characters, without = or NUL, not starting with a digit"));
        }
    }
    if s.env.values().any(|v| v.contains('\0')) {
        return Err(SiteError::invalid("spec.env", "values may not contain NUL"));
    }
    for (name, list) in [("command", &s.command), ("args", &s.args)] {
        if list.as_ref().is_some_and(|l| l.iter().any(|a| a.contains('\0')) || l.len() > 4096) {
            return Err(SiteError::invalid(format!("spec.{name}"), "at most 4096 arguments, without NUL"));
        }
    }
    if s.command.as_ref().is_some_and(|c| c.is_empty()) {
        return Err(SiteError::invalid("spec.command", "give at least the program"));
    }
    if let Some(w) = &s.working_dir
        && !w.starts_with('/')
    {
        return Err(SiteError::invalid("spec.working_dir", "must be an absolute path"));
    }
    if s.user.as_ref().is_some_and(|u| u.len() > 256 || u.contains('\0')) {
        return Err(SiteError::invalid("spec.user", "a user name or uid, optionally :group"));
    }
    if s.stop_timeout_seconds > 300 {
        return Err(SiteError::invalid("spec.stop_timeout_seconds", "at most 300"));
    }
    if s.max_retries.is_some() && s.restart_policy != RestartPolicy::OnFailure {
        return Err(SiteError::invalid("spec.max_retries", "applies to the on-failure policy only"));
    }
    let paths = &site.config().container.host_paths;
    let grants = if s.mounts.iter().any(|m| m.host_path.is_some()) { super::projects::spec_of(c, p)?.host_paths } else { BTreeMap::new() };
    for (i, m) in s.mounts.iter_mut().enumerate() {
        match (&m.volume, &m.host_path) {
            (Some(v), None) => {
                let field = format!("spec.mounts[{i}].volume");
                let vol = resolve(c, Kind::Volume, p, &field, v)?;
                if let Some(u) = super::workload::instances_using(c, &vol.id)?.first() {
                    return Err(SiteError::ConflictOn { field, message: format!("volume {} is a disk of instance {}", vol.name, u.name) });
                }
                // The host kernel would mount bytes a guest wrote: refused until checked.
                if site.volume_guest_written(&vol.id)? {
                    return Err(SiteError::ConflictOn {
                        field,
                        message: format!(
                            "volume {} was attached read-write to an instance, so a guest wrote its filesystem; check it first (cloudlet volume check {})",
                            vol.name, vol.name
                        ),
                    });
                }
                m.volume = Some(vol.id);
            }
            (None, Some(h)) => {
                check_grant(&grants, &p.name, h, m.read_only, i)?;
                if !paths.contains_key(h) {
                    return Err(SiteError::invalid(format!("spec.mounts[{i}].host_path"), format!("no host path named {h:?} in the site config")));
                }
            }
            _ => return Err(SiteError::invalid(format!("spec.mounts[{i}]"), "give exactly one of volume and host_path")),
        }
        cspec::check_target(&m.target).map_err(|e| SiteError::invalid(format!("spec.mounts[{i}].target"), e.to_string()))?;
    }
    let (v, cfg) = (serde_json::to_value(s)?, &site.config().container);
    super::quotas::check_compute(c, p, cfg, self_id, Compute::held(Kind::Container, &v, cfg), ("spec.resources.cpus", "spec.resources.memory_mib"))?;
    Ok(v)
}

/// Whether project `project` may mount host path `name` (`read_only` or not) as mount `i`:
/// 403 naming `spec.mounts[i].host_path` when it is not granted (whether or not the site has
/// such a path), 403 naming `spec.mounts[i].read_only` for a read-write mount of a read-only grant.
fn check_grant(grants: &BTreeMap<String, super::projects::HostPathAccess>, project: &str, name: &str, read_only: bool, i: usize) -> Result<(), SiteError> {
    use super::projects::HostPathAccess;
    match grants.get(name) {
        None => Err(SiteError::ForbiddenOn {
            field: format!("spec.mounts[{i}].host_path"),
            message: format!("host path {name:?} is not granted to project {project} (a site admin grants it with the project's spec.host_paths)"),
        }),
        Some(HostPathAccess::Ro) if !read_only => Err(SiteError::ForbiddenOn {
            field: format!("spec.mounts[{i}].read_only"),
            message: format!("host path {name:?} is granted read-only to project {project}: set read_only to true"),
        }),
        Some(_) => Ok(()),
    }
}

impl ResourceKind for ContainerSpec {
    const KIND: Kind = Kind::Container;
}

impl Creatable for ContainerSpec {
    /// Create (and, unless `state` is `stopped`, run) a container.
    fn create(site: &Site, p: &ProjectCtx, name: &str, labels: &Labels, spec: Value) -> Result<Resource, SiteError> {
        let pc = p.clone();
        site.create_with(Kind::Container, Some(p), name, labels, &Status::phase("Pending"), None, |c| build_spec(site, c, &pc, spec, None))
    }
}

impl Patchable for ContainerSpec {
    /// Change a container's spec (RFC 7386 merge patch); a running container is restarted to
    /// apply it.
    fn update(site: &Site, p: &ProjectCtx, r: &str, if_match: Option<i64>, labels: Option<&Labels>, patch: Option<&Value>) -> Result<Resource, SiteError> {
        let id = site.get(Kind::Container, Some(p), r)?.id;
        let pc = p.clone();
        site.update(Kind::Container, Some(p), r, if_match, labels, patch, &|c, v| build_spec(site, c, &pc, v, Some(&id)))
    }
}

impl Site {
    /// `start`, `stop` or `restart` a container: sets the desired state (and for start and restart
    /// grows `restart_token`, so an exited container runs again).
    pub fn container_action(&self, p: &ProjectCtx, r: &str, action: &str) -> Result<Resource, SiteError> {
        let cur: ContainerSpec = self.get(Kind::Container, Some(p), r)?.spec_as()?;
        let patch = match action {
            "stop" => serde_json::json!({"state": "stopped"}),
            "start" | "restart" => serde_json::json!({"state": "running", "restart_token": cur.restart_token.wrapping_add(1)}),
            other => return Err(SiteError::invalid("action", format!("{other:?} is not start, stop or restart"))),
        };
        self.update(Kind::Container, Some(p), r, None, None, Some(&patch), &|_, v| Ok(v))
    }

    fn container_layout(&self, id: &str) -> Layout {
        Layout::new(&self.config().data_dir, id)
    }

    /// The log directory of a container of the project.
    pub fn container_logs_dir(&self, p: &ProjectCtx, r: &str) -> Result<(String, PathBuf), SiteError> {
        let c = self.get(Kind::Container, Some(p), r)?;
        Ok((c.id.clone(), self.container_layout(&c.id).logs()))
    }

    /// Whether the container's shim lives.
    pub fn container_running(&self, id: &str) -> bool {
        matches!(self.container_host().observe(&self.container_layout(id)), Observed::Running(_))
    }

    /// Run a command in a running container (409 when it is not running).
    pub fn container_exec(
        &self,
        p: &ProjectCtx,
        r: &str,
        command: &[String],
        env: &BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<ExecOutput, SiteError> {
        let c = self.get(Kind::Container, Some(p), r)?;
        let l = self.container_layout(&c.id);
        if !matches!(self.container_host().observe(&l), Observed::Running(_)) {
            return Err(SiteError::Conflict(format!("container {} is not running", c.name)));
        }
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        self.container_host().exec(&l, command, &env, timeout).map_err(engine_err)
    }
}

fn engine_err(e: ContainerError) -> SiteError {
    SiteError::Container(e)
}

/// How a container's run ended, for the restart policy: exit 0 is clean, a non-zero exit or an
/// OOM kill a failure, no exit record (`None`) a loss.
pub fn end_of(exit: Option<&ExitRecord>) -> End {
    match exit {
        None => End::Lost,
        Some(e) if e.code() != 0 || e.oom_killed => End::Failed,
        Some(_) => End::Clean,
    }
}

/// A run of 10 s or more starts a new series of restarts.
const RAN_LONG: Duration = Duration::from_secs(10);

/// How often a running container is checked for an exit.
const POLL: Duration = Duration::from_secs(1);

/// The container reconciler.
pub struct ContainerController;

impl Controller for ContainerController {
    fn kind(&self) -> Kind {
        Kind::Container
    }

    async fn reconcile(&self, site: &Site, id: &str) -> Result<Outcome, SiteError> {
        let id = id.to_string();
        site.run(move |s| reconcile_container(s, &id)).await
    }
}

fn reconcile_container(site: &Site, id: &str) -> Result<Outcome, SiteError> {
    let (l, host) = (site.container_layout(id), site.container_host());
    let Some(row) = site.read(|c| Ok(repo::get(c, id)?))? else {
        host.remove(&l, l.stop_grace()).map_err(engine_err)?;
        return Ok(Outcome::Done);
    };
    let spec: ContainerSpec = spec_of(&row)?;
    let st: Status = serde_json::from_str(&row.status).unwrap_or_default();
    let grace = Duration::from_secs(spec.stop_timeout_seconds.into());
    let observed = host.observe(&l);
    if let Observed::Orphaned(_) = observed {
        // The shim was killed but the container lives on without logs or a supervisor.
        host.stop(&l, grace).map_err(engine_err)?;
        return Ok(Outcome::RequeueAfter(Duration::ZERO));
    }
    let run = RunStatus::of(&st);
    let stale = run.restart_wanted(&spec);
    match (spec.state, observed) {
        (DesiredState::Stopped, Observed::Running(_)) => {
            host.stop(&l, grace).map_err(engine_err)?;
            record_stopped(site, &row, &l, "Stopped")?;
            Ok(Outcome::Done)
        }
        (DesiredState::Stopped, _) => {
            record_stopped(site, &row, &l, "Stopped")?;
            Ok(Outcome::Done)
        }
        (DesiredState::Running, Observed::Running(rec)) => {
            if stale {
                // A restart request, or a changed spec: stop, then start anew.
                host.stop(&l, grace).map_err(engine_err)?;
                return start(site, &row, &spec, &l, 0);
            }
            // Polled every second: write only when something changed (an adoption).
            if st.phase != "Running" || st.extra.get("pid").and_then(Value::as_i64) != Some(rec.init_pid.into()) {
                site.set_status(&row.id, |s, _| {
                    s.phase = "Running".into();
                    s.extra.insert("pid".into(), rec.init_pid.into());
                })?;
            }
            Ok(Outcome::RequeueAfter(POLL))
        }
        (DesiredState::Running, Observed::Exited(exit)) => {
            if stale {
                return start(site, &row, &spec, &l, 0);
            }
            record_exit(site, &row, &exit)?;
            let ended = chrono::DateTime::parse_from_rfc3339(&exit.finished_at).map(|t| t.with_timezone(&chrono::Utc)).unwrap_or_else(|_| chrono::Utc::now());
            let since = (chrono::Utc::now() - ended).to_std().unwrap_or_default();
            let ran = run
                .started_at
                .as_deref()
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                .and_then(|s| (ended - s.with_timezone(&chrono::Utc)).to_std().ok())
                .unwrap_or_default();
            let restarts = series(run.restart_count, ran, RAN_LONG);
            act(site, &row, &spec, &l, decide(spec.restart_policy, Some(spec.max_retries.unwrap_or(5)), end_of(Some(&exit)), restarts, since), restarts)
        }
        (DesiredState::Running, Observed::Absent | Observed::Orphaned(_)) => {
            if run.started_at.is_none() || stale {
                return start(site, &row, &spec, &l, 0);
            }
            if run.finished_at.is_some() {
                // Its end was recorded in state (the record on disk is gone, as after a power
                // loss): it was waiting for a restart, or the policy had already left it.
                return if st.phase == "Restarting" { start(site, &row, &spec, &l, run.restart_count + 1) } else { Ok(Outcome::Done) };
            }
            // Started before, and nothing ran or recorded an end: the host went down under it.
            let restarts = run.restart_count;
            act(
                site,
                &row,
                &spec,
                &l,
                decide(spec.restart_policy, Some(spec.max_retries.unwrap_or(5)), End::Lost, restarts, Duration::from_secs(3600)),
                restarts,
            )
        }
    }
}

fn act(site: &Site, row: &ResourceRow, spec: &ContainerSpec, l: &Layout, d: Decision, restarts: u32) -> Result<Outcome, SiteError> {
    match d {
        Decision::Reboot => start(site, row, spec, l, restarts),
        Decision::Restart(Duration::ZERO) => start(site, row, spec, l, restarts + 1),
        Decision::Restart(delay) => {
            site.set_status(&row.id, |s, _| s.phase = "Restarting".into())?;
            Ok(Outcome::RequeueAfter(delay))
        }
        Decision::Leave(left) => {
            let phase = match left {
                Left::Ended => "Exited",
                Left::Lost => "Failed",
                Left::Stopped => "Stopped",
            };
            site.set_status(&row.id, |s, _| {
                s.phase = phase.into();
                if left == Left::Lost && !s.extra.contains_key("message") {
                    s.extra.insert("message".into(), "the host stopped while the container ran (no exit was recorded)".into());
                }
            })?;
            Ok(Outcome::Done)
        }
    }
}

fn record_exit(site: &Site, row: &ResourceRow, exit: &ExitRecord) -> Result<(), SiteError> {
    site.set_status(&row.id, |s, _| {
        s.extra.insert("exit_code".into(), exit.code().into());
        s.extra.insert("oom_killed".into(), exit.oom_killed.into());
        s.extra.insert("finished_at".into(), exit.finished_at.clone().into());
        s.extra.remove("pid");
    })?;
    Ok(())
}

fn record_stopped(site: &Site, row: &ResourceRow, l: &Layout, phase: &str) -> Result<(), SiteError> {
    if let Observed::Exited(e) = site.container_host().observe(l) {
        record_exit(site, row, &e)?;
    }
    site.set_status(&row.id, |s, row| {
        s.phase = phase.into();
        s.observed_generation = row.generation;
        s.extra.remove("pid");
    })?;
    Ok(())
}

/// Whether the network interface's namespace is in place (the VPC reconciler made it).
fn eni_ready(site: &Site, eni_id: &str) -> Result<Option<(PathBuf, NetworkInterfaceSpec)>, SiteError> {
    let Some(eni) = site.read(|c| Ok(repo::get(c, eni_id)?))? else { return Ok(None) };
    let st: Status = serde_json::from_str(&eni.status).unwrap_or_default();
    let ns = crate::net::host::netns_path(&crate::net::names::eni_netns(eni_id));
    if st.phase != "Ready" || !ns.exists() {
        return Ok(None);
    }
    Ok(Some((ns, spec_of(&eni)?)))
}

fn start(site: &Site, row: &ResourceRow, spec: &ContainerSpec, l: &Layout, restarts: u32) -> Result<Outcome, SiteError> {
    let Some(image) = site.read(|c| Ok(repo::get(c, &spec.image)?))? else {
        return Err(SiteError::Conflict("the container's image is gone".into()));
    };
    let (netns, address) = match &spec.network_interface {
        Some(eni) => match eni_ready(site, eni)? {
            Some((ns, s)) => (Some(ns), s.private_ip),
            None => {
                site.set_status(&row.id, |s, _| {
                    s.phase = "Pending".into();
                    s.set_condition("NetworkReady", false, "Waiting", "waiting for the network interface");
                })?;
                return Ok(Outcome::RequeueAfter(Duration::from_millis(300)));
            }
        },
        None => (None, None),
    };
    let (image_root, ic) = site.image_root(&image)?;
    let mut args = spec.command.clone().unwrap_or(ic.entrypoint.clone());
    args.extend(spec.args.clone().unwrap_or(if spec.command.is_some() { vec![] } else { ic.cmd.clone() }));
    if args.is_empty() {
        return fail(site, row, "the image has no entrypoint or cmd and the spec gives no command");
    }
    let mut env: BTreeMap<String, String> = ic.env.iter().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    env.entry("PATH".into()).or_insert_with(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    env.insert("HOSTNAME".into(), row.name.clone());
    env.extend(spec.env.clone());
    let user = spec.user.clone().unwrap_or(ic.user.clone());
    let (uid, gid, additional_gids) = match cspec::resolve_user(&image_root, &user) {
        Ok(u) => u,
        Err(e) => return fail(site, row, &e.to_string()),
    };
    let paths = &site.config().container.host_paths;
    // Grants are checked again at each start: a grant withdrawn or narrowed by a site admin since
    // the container was made (or a container made before grants existed) does not mount.
    let grants = match (&row.project_id, spec.mounts.iter().any(|m| m.host_path.is_some())) {
        (Some(pid), true) => {
            site.read(|c| super::projects::spec_of(c, &ProjectCtx { id: pid.clone(), name: row.project_name.clone().unwrap_or_default() }))?.host_paths
        }
        _ => BTreeMap::new(),
    };
    let mut mounts = Vec::new();
    for (i, m) in spec.mounts.iter().enumerate() {
        let source = match (&m.volume, &m.host_path) {
            (Some(v), _) => match site.mount_volume(v)? {
                Some(dir) => dir,
                None => {
                    site.set_status(&row.id, |s, _| {
                        s.phase = "Pending".into();
                        s.set_condition("VolumesReady", false, "Waiting", "waiting for a volume to be made");
                    })?;
                    return Ok(Outcome::RequeueAfter(Duration::from_millis(300)));
                }
            },
            (None, Some(h)) => match paths.get(h) {
                Some(p) => {
                    if let Err(e) = check_grant(&grants, row.project_name.as_deref().unwrap_or_default(), h, m.read_only, i) {
                        return fail(site, row, &e.to_string());
                    }
                    p.clone()
                }
                None => return fail(site, row, &format!("host path {h:?} is no longer in the site config")),
            },
            (None, None) => continue,
        };
        // Volumes hold the container's own ids on disk (idmapped under a user namespace); host
        // paths keep the host's.
        mounts.push(BindMount { source, target: m.target.clone(), read_only: m.read_only, idmap: m.volume.is_some() });
    }
    let cwd = spec.working_dir.clone().unwrap_or(if ic.working_dir.is_empty() { "/".into() } else { ic.working_dir.clone() });
    let cfg = RunConfig {
        rootfs: l.rootfs(),
        args,
        env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        cwd,
        uid,
        gid,
        additional_gids,
        hostname: row.name.clone(),
        netns,
        read_only_rootfs: spec.read_only_rootfs,
        limits: effective_limits(&spec.resources, &site.config().container),
        mounts,
        etc_dir: Some(l.dir.join("etc")),
        address,
        cgroups_path: l.cgroup(),
        userns: site.project_userns(row.project_id.as_deref())?,
    };
    let t0 = std::time::Instant::now();
    let host = site.container_host();
    host.prepare(l, &image_root, &cfg, Duration::from_secs(spec.stop_timeout_seconds.into())).map_err(engine_err)?;
    let volumes: Vec<String> = spec.mounts.iter().filter_map(|m| m.volume.clone()).collect();
    host.record_volumes(l, &volumes).map_err(engine_err)?;
    let prepared = t0.elapsed();
    let logs = LogOptions { max_bytes: site.config().container.log_max_bytes, keep: site.config().container.log_keep };
    match host.start(l, logs) {
        Ok(rec) => {
            tracing::debug!(container = %row.id, prepare_us = prepared.as_micros() as u64, start_us = (t0.elapsed() - prepared).as_micros() as u64, "container started");
            site.set_status(&row.id, |s, row| {
                s.phase = "Running".into();
                s.observed_generation = row.generation;
                s.set_condition("Ready", true, "Started", "");
                if spec.network_interface.is_some() {
                    s.set_condition("NetworkReady", true, "Attached", "");
                }
                s.extra.insert("pid".into(), rec.init_pid.into());
                RunStatus::stamp_start(s, spec, &rec.started_at, restarts);
                s.extra.insert("image_digest".into(), image_digest(&image).into());
                match &cfg.userns {
                    Some(u) => s.extra.insert("user_namespace".into(), serde_json::json!({"host_id_base": u.host_base, "ids": cspec::USERNS_IDS})),
                    None => s.extra.remove("user_namespace"),
                };
                if let Some(ip) = address {
                    s.extra.insert("private_ip".into(), ip.to_string().into());
                }
                for k in ["exit_code", "oom_killed", "finished_at", "message"] {
                    s.extra.remove(k);
                }
            })?;
            Ok(Outcome::RequeueAfter(POLL))
        }
        Err(ContainerError::Runtime(m)) => {
            // The runtime refused (no such program, say): report it; the back-off retries.
            fail(site, row, &m)?;
            Err(SiteError::Container(ContainerError::Runtime(m)))
        }
        Err(e) => Err(engine_err(e)),
    }
}

fn image_digest(image: &ResourceRow) -> String {
    serde_json::from_str::<Status>(&image.status).ok().and_then(|s| s.extra.get("digest").and_then(Value::as_str).map(str::to_string)).unwrap_or_default()
}

fn fail(site: &Site, row: &ResourceRow, message: &str) -> Result<Outcome, SiteError> {
    site.set_status(&row.id, |s, row| {
        s.phase = "Failed".into();
        s.observed_generation = row.generation;
        s.set_condition("Ready", false, "StartFailed", message);
        s.extra.insert("message".into(), message.into());
        if let Ok(spec) = spec_of::<ContainerSpec>(row) {
            RunStatus::stamp_tried(s, &spec);
        }
    })?;
    Ok(Outcome::Done)
}

impl WorkloadSpec for ContainerSpec {
    fn restart_token(&self) -> u64 {
        self.restart_token
    }
    fn neutral(&self) -> Self {
        ContainerSpec { state: DesiredState::Running, restart_token: 0, ..self.clone() }
    }
}

/// Remove the directories of containers that state no longer has (deleted while the daemon was
/// down). Runs before the container reconciler's first pass.
pub fn sweep_orphans(site: &Site) -> Result<usize, SiteError> {
    let host = site.container_host();
    let ids = workload::ids_in_state(site, Kind::Container)?;
    Ok(workload::sweep_orphans(Kind::Container, &ids, host.present(&site.config().data_dir), |id| {
        let l = site.container_layout(id);
        host.remove(&l, l.stop_grace())
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(code: i32, oom: bool) -> ExitRecord {
        ExitRecord { exit_code: Some(code), signal: None, oom_killed: oom, finished_at: String::new() }
    }

    #[test]
    fn exits_end_as_docker_counts_them() {
        assert_eq!(end_of(Some(&exit(0, false))), End::Clean);
        assert_eq!(end_of(Some(&exit(2, false))), End::Failed);
        assert_eq!(end_of(Some(&exit(0, true))), End::Failed, "an OOM kill is a failure");
        assert_eq!(end_of(None), End::Lost, "a lost container failed");
    }

    #[test]
    fn env_names_are_checked() {
        assert!(env_key_ok("PATH"));
        assert!(!env_key_ok(""));
        assert!(!env_key_ok("A=B"));
        assert!(!env_key_ok("1X"));
    }
}

#[cfg(test)]
#[path = "containers_tests.rs"]
mod host_tests;
