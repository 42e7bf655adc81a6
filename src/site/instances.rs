//! Instances: microVMs of a project, each run by its own `cloudlet vmm-worker` process
//! ([`super::instance_supervisor`]) from a VM image ([`super::instance_images`]), on a network
//! interface of a VPC subnet (a tap on the router) and with the project's volumes as disks.
//!
//! - The spec is the desired state (`state: running|stopped`; `restart_token` grows on each
//!   start or reboot request); the instance reconciler converges the host to it and reports
//!   `status.phase`: `Pending`, `Running`, `Stopping`, `Stopped`, `Failed` (and `Restarting`
//!   while a restart waits for its back-off).
//! - The instance owns a network interface, `<name>-eth0` (`attachment: tap`), made in the same
//!   transaction from `subnet`, `security_groups` and `private_ip`, and deleted with it (as an
//!   AWS primary ENI). Its security groups, EIPs and NAT work as for any interface.
//! - Restart policy: `on-failure` (the default) restarts after a crash of the worker or of the
//!   guest (`crashed`, `killed` by anyone but the daemon, or no exit record at all, as after a
//!   host reboot); `always` also after the guest powers off; `never` leaves it `Failed` or
//!   `Stopped`. A guest reboot always starts the VM again and is not counted. A guest poweroff
//!   leaves `spec.state` as it is: the phase is `Stopped` with `exit_reason: poweroff`, and
//!   `start` runs it again. Restarts back off from 0.5 s doubling to 30 s; a run of 60 s or more
//!   starts a new series.
//! - Stop: `shutdown` on the control socket (Ctrl-Alt-Del to the guest), then `kill` after
//!   `stop_timeout_seconds`, then SIGKILL; polled, never blocking the reconciler for that long.
//!   Delete stops the same way, then removes the worker's cgroup and run directory (root disk
//!   included).
//! - A daemon restart adopts live workers (never kills them); a crashed worker is only observed.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::instance_host::InstanceHost;
use super::instance_supervisor::{self as sup, Layout, Observed, WorkerRecord};
use super::lookup::{resolve, spec_of};
use super::model::{self, Status};
use super::net_model::NetworkInterfaceSpec;
use super::reconcile::{Controller, Outcome};
use super::resource_kind::{Creatable, Labels, Patchable, ResourceKind};
use super::workload::{self, Decision, DesiredState, End, Left, RestartPolicy, RunStatus, WorkloadSpec, decide, series};
use super::{Kind, ProjectCtx, Resource, Site, SiteError, event_for};
use crate::state::{ResourceRow, StateError, repo};
use crate::vmm::spec::{Confinement, DiskSpec, ExitReason, ExitRecord, NetSpec, Request, WorkerSpec};

/// Most vCPUs of an instance.
pub const MAX_VCPUS: u32 = 8;
/// Guest memory bounds, MiB.
pub const MIN_MEMORY_MIB: u64 = 128;
pub const MAX_MEMORY_MIB: u64 = 16384;
/// Most data volumes (`vdb` … `vdq`).
pub const MAX_VOLUMES: usize = 16;
/// Longest `cmdline_extra`.
pub const MAX_CMDLINE_EXTRA: usize = 1024;
/// Longest instance name: the interface is `<name>-eth0`, itself a 63-character name.
pub const MAX_NAME: usize = model::MAX_NAME_LEN - 5;

/// A data volume attached to an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceVolume {
    /// A volume of the project (id or name on write; stored as the id), formatted ext4 when blank.
    pub volume: String,
    /// Attach it read-only (`VIRTIO_BLK_F_RO`).
    #[serde(default)]
    pub read_only: bool,
}

fn one() -> u32 {
    1
}
fn default_memory() -> u64 {
    256
}
fn on_failure() -> RestartPolicy {
    RestartPolicy::OnFailure
}
fn default_stop_timeout() -> u32 {
    30
}

/// Spec of an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceSpec {
    /// A VM image of the project (id or name on create; stored as the id; fixed).
    pub image: String,
    /// vCPUs, 1 to 8 (default 1).
    #[serde(default = "one")]
    pub vcpus: u32,
    /// Guest memory, 128 to 16384 MiB (default 256).
    #[serde(default = "default_memory")]
    pub memory_mib: u64,
    /// The subnet of the instance's interface (id or name on create; stored as the id; fixed).
    pub subnet: String,
    /// Security groups of the interface (ids or names on create; stored as ids; fixed).
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// The interface's address; assigned from the subnet when absent (fixed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub private_ip: Option<Ipv4Addr>,
    /// Data volumes, in order `vdb`, `vdc`, ... (`vda` is the root disk). A volume used by a
    /// container or another instance is refused (409).
    #[serde(default)]
    pub volumes: Vec<InstanceVolume>,
    /// `running` (default) or `stopped`.
    #[serde(default)]
    pub state: DesiredState,
    /// `never`, `on-failure` (default) or `always`.
    #[serde(default = "on_failure")]
    pub restart_policy: RestartPolicy,
    /// Seconds between the graceful shutdown request and a forced stop, 1 to 600 (default 30).
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout_seconds: u32,
    /// Appended to the image's kernel command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline_extra: Option<String>,
    /// Grows by one with every start or reboot request (set by the API).
    #[serde(default)]
    pub restart_token: u64,
    /// The instance's network interface (set by the daemon at create; read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_interface: Option<String>,
}

/// Parse a spec, naming the offending field (`spec.vcpus`, `spec.foo` for an unknown field).
fn parse_spec(v: Value) -> Result<InstanceSpec, SiteError> {
    serde_path_to_error::deserialize::<_, InstanceSpec>(v).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.inner().to_string();
        let named = ["unknown field `", "missing field `"].iter().find_map(|p| msg.strip_prefix(p)).and_then(|r| r.split('`').next()).map(str::to_string);
        let field = match (path.as_str(), named) {
            (".", Some(f)) => format!("spec.{f}"),
            (".", None) => "spec".into(),
            (p, Some(f)) if p == f || p.ends_with(&format!(".{f}")) => format!("spec.{p}"),
            (p, Some(f)) => format!("spec.{p}.{f}"),
            (p, None) => format!("spec.{p}"),
        };
        SiteError::invalid(field, msg)
    })
}

/// Validate and normalize an instance spec inside a transaction. On create (`current` is
/// `None`) the interface's spec is built too; on update the image and the network fields must
/// stay as they are.
fn build_spec(
    c: &Connection,
    site: &Site,
    p: &ProjectCtx,
    v: Value,
    current: Option<(&str, &InstanceSpec)>,
) -> Result<(InstanceSpec, Option<NetworkInterfaceSpec>), SiteError> {
    let mut s = parse_spec(v)?;
    let image = resolve(c, Kind::Image, p, "spec.image", &s.image)?;
    site.vm_image_files(&image, "spec.image")?;
    s.image = image.id;
    if !(1..=MAX_VCPUS).contains(&s.vcpus) {
        return Err(SiteError::invalid("spec.vcpus", format!("between 1 and {MAX_VCPUS}")));
    }
    if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&s.memory_mib) {
        return Err(SiteError::invalid("spec.memory_mib", format!("between {MIN_MEMORY_MIB} and {MAX_MEMORY_MIB} MiB")));
    }
    let cfg = &site.config().container;
    let held = super::quotas::Compute::held(Kind::Instance, &serde_json::to_value(&s)?, cfg);
    super::quotas::check_compute(c, p, cfg, current.map(|(id, _)| id), held, ("spec.vcpus", "spec.memory_mib"))?;
    if !(1..=600).contains(&s.stop_timeout_seconds) {
        return Err(SiteError::invalid("spec.stop_timeout_seconds", "between 1 and 600"));
    }
    if let Some(x) = &s.cmdline_extra
        && (x.len() > MAX_CMDLINE_EXTRA || !x.chars().all(|c| c.is_ascii_graphic() || c == ' '))
    {
        return Err(SiteError::invalid("spec.cmdline_extra", format!("at most {MAX_CMDLINE_EXTRA} printable ASCII characters")));
    }
    if s.volumes.len() > MAX_VOLUMES {
        return Err(SiteError::invalid("spec.volumes", format!("at most {MAX_VOLUMES} volumes")));
    }
    let self_id = current.map(|(id, _)| id);
    for i in 0..s.volumes.len() {
        let field = format!("spec.volumes[{i}].volume");
        let row = resolve(c, Kind::Volume, p, &field, &s.volumes[i].volume)?;
        if s.volumes[..i].iter().any(|v| v.volume == row.id) {
            return Err(SiteError::invalid(field, format!("volume {} is attached twice", row.name)));
        }
        for u in super::workload::mounted_by(c, &row.id)? {
            if Some(u.id.as_str()) != self_id {
                return Err(SiteError::ConflictOn { field, message: format!("volume {} is used by {} {}", row.name, u.kind, u.name) });
            }
        }
        s.volumes[i].volume = row.id;
    }
    match current {
        None => {
            if s.network_interface.is_some() {
                return Err(SiteError::invalid("spec.network_interface", "set by the daemon: give subnet, security_groups and private_ip"));
            }
            let eni = super::network::build_interface(
                c,
                p,
                NetworkInterfaceSpec {
                    subnet: s.subnet.clone(),
                    private_ip: s.private_ip,
                    security_groups: s.security_groups.clone(),
                    attachment: super::net_model::Attachment::Tap,
                },
            )?;
            s.subnet = eni.subnet.clone();
            s.security_groups = eni.security_groups.clone();
            s.private_ip = eni.private_ip;
            Ok((s, Some(eni)))
        }
        Some((_, cur)) => {
            let fixed: [(&str, bool); 5] = [
                ("spec.image", s.image == cur.image),
                ("spec.subnet", s.subnet == cur.subnet),
                ("spec.security_groups", s.security_groups == cur.security_groups),
                ("spec.private_ip", s.private_ip == cur.private_ip),
                ("spec.network_interface", s.network_interface == cur.network_interface),
            ];
            if let Some((f, _)) = fixed.iter().find(|(_, same)| !same) {
                return Err(SiteError::invalid(*f, "fixed at create"));
            }
            Ok((s, None))
        }
    }
}

impl ResourceKind for InstanceSpec {
    const KIND: Kind = Kind::Instance;

    /// Delete an instance and its network interface (409 while an EIP or a port forward points at
    /// the interface); the reconciler stops the worker and removes its files.
    fn delete(site: &Site, p: &ProjectCtx, r: &str) -> Result<Resource, SiteError> {
        let rf = model::parse_ref(Kind::Instance, r)?;
        let row = site.write(|tx, evs| {
            let row = Site::find(tx, Kind::Instance, Some(p), &rf)?;
            let spec: InstanceSpec = spec_of(&row)?;
            if let Some(eni_id) = &spec.network_interface
                && let Some(eni) = repo::get(tx, eni_id)?
            {
                for k in [Kind::Eip, Kind::PortForward] {
                    if let Some(u) = repo::referencing(tx, k.as_str(), "$.network_interface", &eni.id)?.first() {
                        return Err(SiteError::Conflict(format!("instance {}'s interface {} is used by {} {}", row.name, eni.name, k.as_str(), u.name)));
                    }
                }
                repo::delete(tx, &eni.id)?;
                evs.push(event_for(&eni, Some(p), "deleted", format!("network_interface {} deleted with instance {}", eni.name, row.name)));
            }
            repo::delete(tx, &row.id)?;
            evs.push(event_for(&row, Some(p), "deleted", format!("instance {} deleted", row.name)));
            Ok(row)
        })?;
        Resource::from_row(row)
    }
}

impl Creatable for InstanceSpec {
    /// Create an instance and its network interface `<name>-eth0` in one transaction; it runs
    /// unless `state` is `stopped`.
    fn create(site: &Site, p: &ProjectCtx, name: &str, labels: &Labels, spec: Value) -> Result<Resource, SiteError> {
        model::validate_name("name", name)?;
        if name.len() > MAX_NAME {
            return Err(SiteError::invalid("name", format!("at most {MAX_NAME} characters (its interface is named NAME-eth0)")));
        }
        let eni_id = Kind::NetworkInterface.new_id();
        let eni_spec: RefCell<Option<NetworkInterfaceSpec>> = RefCell::new(None);
        let pc = p.clone();
        site.create_then(
            Kind::Instance,
            Some(p),
            name,
            labels,
            None,
            |c| {
                let (mut s, eni) = build_spec(c, site, &pc, spec, None)?;
                s.network_interface = Some(eni_id.clone());
                *eni_spec.borrow_mut() = eni;
                let mut st = Status::phase("Pending");
                st.extra.insert("network_interface".into(), eni_id.clone().into());
                st.extra.insert("private_ip".into(), s.private_ip.map(|ip| ip.to_string()).unwrap_or_default().into());
                Ok((serde_json::to_value(s)?, st))
            },
            |tx, row, evs| {
                super::projects::check_live_and_quota(tx, p, Kind::NetworkInterface)?;
                let spec = eni_spec.borrow_mut().take().ok_or_else(|| SiteError::Internal("the interface spec was not built".into()))?;
                let now = model::now_rfc3339();
                let eni_name = format!("{name}-eth0");
                let eni = ResourceRow {
                    id: eni_id.clone(),
                    kind: Kind::NetworkInterface.as_str().into(),
                    project_id: Some(p.id.clone()),
                    project_name: None,
                    name: eni_name.clone(),
                    labels: serde_json::to_string(&BTreeMap::from([("instance".to_string(), row.id.clone())]))?,
                    spec: serde_json::to_string(&spec)?,
                    status: serde_json::to_string(&Status::phase("Pending"))?,
                    generation: 1,
                    created_at: now.clone(),
                    updated_at: now,
                    deleting: false,
                };
                repo::insert(tx, &eni).map_err(|e| match e {
                    StateError::Duplicate(_) => SiteError::AlreadyExists { kind: Kind::NetworkInterface.as_str().into(), name: eni_name.clone() },
                    other => other.into(),
                })?;
                evs.push(event_for(&eni, Some(p), "created", format!("network_interface {eni_name} created for instance {name}")));
                // The MAC derives from the id, known only now.
                let mut st: Status = serde_json::from_str(&row.status)?;
                st.extra.insert("mac".into(), sup::mac_of(&row.id).into());
                repo::update_status(tx, &row.id, &serde_json::to_string(&st)?, &model::now_rfc3339())?;
                Ok(repo::get(tx, &row.id)?)
            },
        )
    }
}

impl Patchable for InstanceSpec {
    /// Change an instance's spec (RFC 7386 merge patch); a running instance is restarted to apply
    /// it. The image and the network fields are fixed.
    fn update(site: &Site, p: &ProjectCtx, r: &str, if_match: Option<i64>, labels: Option<&Labels>, patch: Option<&Value>) -> Result<Resource, SiteError> {
        let cur = site.get(Kind::Instance, Some(p), r)?;
        let cur_spec: InstanceSpec = cur.spec_as()?;
        let pc = p.clone();
        site.update(Kind::Instance, Some(p), r, if_match, labels, patch, &|c, v| {
            Ok(serde_json::to_value(build_spec(c, site, &pc, v, Some((&cur.id, &cur_spec)))?.0)?)
        })
    }
}

impl Site {
    /// `start`, `stop` or `reboot` an instance: sets the desired state (start and reboot grow
    /// `restart_token`, so a stopped or powered-off instance runs again, and a running one is
    /// shut down and started).
    pub fn instance_action(&self, p: &ProjectCtx, r: &str, action: &str) -> Result<Resource, SiteError> {
        let cur: InstanceSpec = self.get(Kind::Instance, Some(p), r)?.spec_as()?;
        let patch = match action {
            "stop" => serde_json::json!({"state": "stopped"}),
            "start" | "reboot" => serde_json::json!({"state": "running", "restart_token": cur.restart_token.wrapping_add(1)}),
            other => return Err(SiteError::invalid("action", format!("{other:?} is not start, stop or reboot"))),
        };
        self.update(Kind::Instance, Some(p), r, None, None, Some(&patch), &|_, v| Ok(v))
    }

    /// The run directory of an instance id.
    pub fn instance_layout(&self, id: &str) -> Layout {
        Layout::new(&self.config().data_dir, id)
    }

    /// The id and run directory of an instance of the project.
    fn instance_dir(&self, p: &ProjectCtx, r: &str) -> Result<(String, Layout), SiteError> {
        let i = self.get(Kind::Instance, Some(p), r)?;
        Ok((i.id.clone(), self.instance_layout(&i.id)))
    }

    /// The id and serial console log (`console.log` of its run directory) of an instance of the
    /// project.
    pub fn instance_console_log(&self, p: &ProjectCtx, r: &str) -> Result<(String, PathBuf), SiteError> {
        let (id, l) = self.instance_dir(p, r)?;
        Ok((id, l.console_log()))
    }

    /// Connect to the serial console of the project's instance `r`. Errors: 404; 409 when no
    /// worker answers on its console socket.
    pub fn instance_console(&self, p: &ProjectCtx, r: &str) -> Result<std::os::unix::net::UnixStream, SiteError> {
        let (_, l) = self.instance_dir(p, r)?;
        self.instance_host().open_console(&l).map_err(|e| SiteError::Conflict(format!("the instance's console is not available (is it running?): {e}")))
    }

    /// Whether the instance's worker lives.
    pub fn instance_running(&self, id: &str) -> bool {
        matches!(self.instance_host().observe(&self.instance_layout(id)), Observed::Running(_))
    }
}

/// How often a running instance is polled.
const POLL: Duration = Duration::from_secs(1);
/// How often a stopping instance is looked at.
const STOP_POLL: Duration = Duration::from_millis(200);
/// A run at least this long starts a new series of restarts.
const RAN_LONG: Duration = Duration::from_secs(60);

impl WorkloadSpec for InstanceSpec {
    fn restart_token(&self) -> u64 {
        self.restart_token
    }
    fn neutral(&self) -> Self {
        InstanceSpec { state: DesiredState::Running, restart_token: 0, ..self.clone() }
    }
}

/// How a worker's run ended, for the restart policy (`None`: no exit record, as after a host
/// reboot or a SIGKILL): a power-off is clean, a guest reset a reboot, a crash or a kill a
/// failure.
pub fn end_of(exit: Option<ExitReason>) -> End {
    match exit {
        Some(ExitReason::Poweroff) => End::Clean,
        Some(ExitReason::Reboot) => End::Reboot,
        Some(ExitReason::Stopped) => End::Stopped,
        Some(ExitReason::Killed | ExitReason::Crashed) => End::Failed,
        None => End::Lost,
    }
}

/// The phase of an instance the policy leaves after a run that ended as `end`: `Stopped` after
/// a power-off or a stop, `Failed` otherwise.
fn left_phase(left: Left, end: End) -> &'static str {
    match (left, end) {
        (Left::Stopped, _) | (Left::Ended, End::Clean) => "Stopped",
        _ => "Failed",
    }
}

fn reason_name(e: Option<&ExitRecord>) -> String {
    e.and_then(|e| serde_json::to_value(e.reason).ok()).and_then(|v| v.as_str().map(str::to_string)).unwrap_or_else(|| "lost".into())
}

/// Stops of deleted instances in progress (the row is gone, so their state lives here).
fn terminating() -> std::sync::MutexGuard<'static, BTreeMap<String, std::time::Instant>> {
    static T: std::sync::LazyLock<std::sync::Mutex<BTreeMap<String, std::time::Instant>>> = std::sync::LazyLock::new(Default::default);
    T.lock().unwrap_or_else(|p| p.into_inner())
}

/// The instance reconciler: starts, polls, stops, restarts and removes workers.
pub struct InstanceController;

impl Controller for InstanceController {
    fn kind(&self) -> Kind {
        Kind::Instance
    }

    fn watches(&self) -> &'static [Kind] {
        &[Kind::NetworkInterface, Kind::Volume]
    }

    async fn reconcile(&self, site: &Site, id: &str) -> Result<Outcome, SiteError> {
        let id = id.to_string();
        site.run(move |s| reconcile_instance(s, &id)).await
    }
}

fn reconcile_instance(site: &Site, id: &str) -> Result<Outcome, SiteError> {
    let l = site.instance_layout(id);
    let Some(row) = site.read(|c| Ok(repo::get(c, id)?))? else { return teardown(site.instance_host(), &l) };
    let spec: InstanceSpec = spec_of(&row)?;
    let st: Status = serde_json::from_str(&row.status).unwrap_or_default();
    let run = RunStatus::of(&st);
    let restart_wanted = run.restart_wanted(&spec);
    match (spec.state, site.instance_host().observe(&l)) {
        (_, Observed::Exited(rec, exit)) => ended(site, &row, &spec, &l, &rec, exit),
        (DesiredState::Stopped, Observed::Running(rec)) => stop_step(site, &row, &spec, &l, &rec, &st),
        (DesiredState::Stopped, Observed::Absent) => {
            if st.phase != "Stopped" || st.extra.contains_key("restart_at_ms") {
                site.set_status(&row.id, |s, row| {
                    s.phase = "Stopped".into();
                    s.observed_generation = row.generation;
                    s.extra.remove("restart_at_ms");
                })?;
            }
            Ok(Outcome::Done)
        }
        (DesiredState::Running, Observed::Running(rec)) => {
            if restart_wanted || st.extra.contains_key("stop_requested_ms") {
                return stop_step(site, &row, &spec, &l, &rec, &st);
            }
            poll(site, &row, &l, &rec, &st)
        }
        (DesiredState::Running, Observed::Absent) => {
            let restarts = run.restart_count;
            if run.started_token.is_none() || restart_wanted {
                return start(site, &row, &spec, &l, 0);
            }
            if let Some(at) = st.extra.get("restart_at_ms").and_then(Value::as_i64) {
                let wait = at - model::now_ms();
                return if wait <= 0 { start(site, &row, &spec, &l, restarts) } else { Ok(Outcome::RequeueAfter(Duration::from_millis(wait as u64))) };
            }
            // Left by the policy (Stopped, Failed) until a start or a spec change.
            Ok(Outcome::Done)
        }
    }
}

/// The row is gone: stop the worker (gracefully, within its recorded timeout), then remove its
/// cgroup and run directory.
fn teardown(host: &dyn InstanceHost, l: &Layout) -> Result<Outcome, SiteError> {
    if let Observed::Running(rec) = host.observe(l) {
        let since = *terminating().entry(l.id.clone()).or_insert_with(|| {
            let _ = host.control(l, &Request::Shutdown, Duration::from_secs(1));
            std::time::Instant::now()
        });
        if since.elapsed() < Duration::from_secs(rec.stop_timeout_seconds.into()) {
            return Ok(Outcome::RequeueAfter(STOP_POLL));
        }
        host.kill_now(l, &rec)?;
    }
    terminating().remove(&l.id);
    host.remove(l)?;
    Ok(Outcome::Done)
}

/// One step of a stop: `shutdown` until the worker takes it, `kill` after the timeout, SIGKILL
/// 3 s later. The worker's end is handled by [`ended`] on a later pass.
///
/// The worker refuses `shutdown` while the guest's keyboard is not listening yet (early in its
/// boot), so the request is repeated on each pass until it is taken — and only until then, as a
/// guest may act on a burst of Ctrl-Alt-Del (systemd reboots at once after 7 in 2 s).
fn stop_step(site: &Site, row: &ResourceRow, spec: &InstanceSpec, l: &Layout, rec: &WorkerRecord, st: &Status) -> Result<Outcome, SiteError> {
    let now = model::now_ms();
    let host = site.instance_host();
    let request = || match host.control(l, &Request::Shutdown, Duration::from_secs(1)) {
        Ok(r) if r.ok => true,
        Ok(r) => {
            tracing::info!(instance = %row.id, reason = r.error.as_deref().unwrap_or(""), "the guest did not take Ctrl-Alt-Del yet; asking again");
            false
        }
        Err(e) => {
            tracing::info!(instance = %row.id, error = %e, "the worker did not take the shutdown request; it is forced after the timeout");
            false
        }
    };
    let Some(since) = st.extra.get("stop_requested_ms").and_then(Value::as_i64) else {
        let taken = request();
        site.set_status(&row.id, |s, _| {
            s.phase = "Stopping".into();
            s.extra.insert("stop_requested_ms".into(), now.into());
            if taken {
                s.extra.insert("shutdown_taken".into(), true.into());
            }
        })?;
        return Ok(Outcome::RequeueAfter(STOP_POLL));
    };
    let timeout = i64::from(spec.stop_timeout_seconds) * 1000;
    if now - since < timeout && !st.extra.contains_key("shutdown_taken") && request() {
        site.set_status(&row.id, |s, _| {
            s.extra.insert("shutdown_taken".into(), true.into());
        })?;
    }
    if now - since >= timeout + 3000 {
        host.signal(rec, nix::sys::signal::Signal::SIGKILL);
    } else if now - since >= timeout && !st.extra.contains_key("kill_sent") {
        tracing::info!(instance = %row.id, "the guest did not shut down in time: killing it");
        let _ = host.control(l, &Request::Kill, Duration::from_secs(1));
        site.set_status(&row.id, |s, _| {
            s.extra.insert("kill_sent".into(), true.into());
        })?;
    }
    Ok(Outcome::RequeueAfter(STOP_POLL))
}

/// Ask a running worker for its status and report it. A worker whose tap was deleted under
/// it (detached for good) is killed, and started again on the tap the VPC reconciler makes
/// anew, not counted as a restart.
fn poll(site: &Site, row: &ResourceRow, l: &Layout, rec: &WorkerRecord, st: &Status) -> Result<Outcome, SiteError> {
    let host = site.instance_host();
    if let Some(tap) = st.extra.get("tap").and_then(Value::as_str)
        && host.tap_attached(rec, tap) == Some(false)
    {
        tracing::warn!(instance = %row.id, tap, "the instance's tap was removed under its worker: starting it again on the new tap");
        site.set_status(&row.id, |s, _| {
            s.extra.insert("tap_lost".into(), true.into());
        })?;
        host.kill_now(l, rec)?;
        return Ok(Outcome::RequeueAfter(Duration::ZERO));
    }
    let answer = host.control(l, &Request::Status, Duration::from_secs(1));
    let boot = answer.as_ref().ok().and_then(|r| r.status.as_ref()).and_then(|s| s.boot_timer_ms);
    let answered = answer.as_ref().is_ok_and(|r| r.ok);
    let phase = if answered { "Running" } else { st.phase.as_str() };
    let changed = st.phase != phase
        || st.extra.get("pid").and_then(Value::as_i64) != Some(rec.pid.into())
        || (boot.is_some() && st.extra.get("boot_timer_ms").and_then(Value::as_f64) != boot)
        || st.condition("WorkerResponding").is_none_or(|c| (c.status == "True") != answered);
    if changed {
        let phase = phase.to_string();
        site.set_status(&row.id, |s, _| {
            s.phase = phase;
            s.extra.insert("pid".into(), rec.pid.into());
            s.extra.insert("pid_start".into(), rec.start.into());
            if let Some(b) = boot {
                s.extra.insert("boot_timer_ms".into(), b.into());
            }
            match &answer {
                Ok(r) if r.ok => s.set_condition("WorkerResponding", true, "Status", ""),
                Ok(r) => s.set_condition("WorkerResponding", false, "Error", r.error.as_deref().unwrap_or_default()),
                Err(e) => s.set_condition("WorkerResponding", false, "NoAnswer", &e.to_string()),
            }
        })?;
    }
    Ok(Outcome::RequeueAfter(if answered { POLL } else { Duration::from_millis(100) }))
}

/// The recorded worker is gone: release its cgroup, record how it ended, and decide.
fn ended(site: &Site, row: &ResourceRow, spec: &InstanceSpec, l: &Layout, rec: &WorkerRecord, exit: Option<ExitRecord>) -> Result<Outcome, SiteError> {
    site.instance_host().release(l);
    let st: Status = serde_json::from_str(&row.status).unwrap_or_default();
    let stopping = st.extra.contains_key("stop_requested_ms");
    let run = RunStatus::of(&st);
    let ran = chrono::DateTime::parse_from_rfc3339(&rec.started_at)
        .ok()
        .map(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).to_std().unwrap_or_default())
        .unwrap_or_default();
    let restarts = series(run.restart_count, ran, RAN_LONG);
    let end = end_of(exit.as_ref().map(|e| e.reason));
    let decision = if spec.state == DesiredState::Stopped {
        Decision::Leave(Left::Stopped)
    } else if run.restart_wanted(spec) || st.extra.contains_key("tap_lost") {
        Decision::Reboot
    } else if stopping {
        Decision::Leave(Left::Stopped)
    } else {
        decide(spec.restart_policy, None, end, restarts, Duration::ZERO)
    };
    let reason = reason_name(exit.as_ref());
    tracing::info!(instance = %row.id, pid = rec.pid, reason = %reason, decision = ?decision, "instance worker ended");
    site.set_status(&row.id, |s, row| {
        for k in ["pid", "pid_start", "stop_requested_ms", "shutdown_taken", "kill_sent", "restart_at_ms", "tap_lost"] {
            s.extra.remove(k);
        }
        s.extra.insert("exit_reason".into(), reason.clone().into());
        s.extra.insert("finished_at".into(), model::now_rfc3339().into());
        if let Some(e) = &exit {
            if let Some(b) = e.boot_timer_ms {
                s.extra.insert("boot_timer_ms".into(), b.into());
            }
            match &e.error {
                Some(m) => s.extra.insert("message".into(), m.clone().into()),
                None => s.extra.remove("message"),
            };
        }
        s.set_condition("WorkerResponding", false, "Ended", &reason);
        match decision {
            Decision::Reboot => {
                s.phase = "Pending".into();
                s.extra.insert("restart_at_ms".into(), model::now_ms().into());
            }
            Decision::Restart(delay) => {
                s.phase = "Restarting".into();
                s.extra.insert("restart_count".into(), (restarts + 1).into());
                s.extra.insert("restart_at_ms".into(), (model::now_ms() + delay.as_millis() as i64).into());
            }
            Decision::Leave(left) => {
                s.phase = left_phase(left, end).into();
                s.observed_generation = row.generation;
            }
        }
    })?;
    Ok(match decision {
        Decision::Leave(_) => Outcome::Done,
        Decision::Reboot => Outcome::RequeueAfter(Duration::ZERO),
        Decision::Restart(delay) => Outcome::RequeueAfter(delay),
    })
}

fn pending(site: &Site, row: &ResourceRow, condition: &str, message: &str) -> Result<Outcome, SiteError> {
    site.set_status(&row.id, |s, _| {
        s.phase = "Pending".into();
        s.set_condition(condition, false, "Waiting", message);
    })?;
    Ok(Outcome::RequeueAfter(Duration::from_millis(300)))
}

fn fail(site: &Site, row: &ResourceRow, spec: &InstanceSpec, message: &str) -> Result<Outcome, SiteError> {
    tracing::warn!(instance = %row.id, error = %message, "instance start failed");
    site.set_status(&row.id, |s, row| {
        s.phase = "Failed".into();
        s.observed_generation = row.generation;
        s.set_condition("Ready", false, "StartFailed", message);
        s.extra.insert("message".into(), message.into());
        RunStatus::stamp_tried(s, spec);
        s.extra.remove("restart_at_ms");
    })?;
    Ok(Outcome::Done)
}

/// The kernel command line: the image's (or a serial-console default), then `cmdline_extra`.
fn cmdline(image: &str, extra: Option<&str>) -> String {
    let base = if image.trim().is_empty() { "console=ttyS0 reboot=k panic=1" } else { image.trim() };
    match extra.map(str::trim).filter(|e| !e.is_empty()) {
        Some(e) => format!("{base} {e}"),
        None => base.to_string(),
    }
}

/// Prepare everything and spawn the worker; `restarts` is the series count to record.
fn start(site: &Site, row: &ResourceRow, spec: &InstanceSpec, l: &Layout, restarts: u32) -> Result<Outcome, SiteError> {
    let Some(eni_id) = &spec.network_interface else { return fail(site, row, spec, "the instance has no network interface") };
    let Some(eni) = site.read(|c| Ok(repo::get(c, eni_id)?))? else { return fail(site, row, spec, "the instance's network interface is gone") };
    let est: Status = serde_json::from_str(&eni.status).unwrap_or_default();
    let (Some(tap), Some(router)) = (est.extra.get("tap").and_then(Value::as_str), est.extra.get("router_netns").and_then(Value::as_str)) else {
        return pending(site, row, "NetworkReady", "waiting for the interface's tap");
    };
    if est.phase != "Ready" {
        return pending(site, row, "NetworkReady", "waiting for the interface's tap");
    }
    let router = PathBuf::from(router).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let Some(image) = site.read(|c| Ok(repo::get(c, &spec.image)?))? else { return fail(site, row, spec, "the instance's image is gone") };
    let files = match site.vm_image_files(&image, "spec.image") {
        Ok(f) => f,
        Err(e) => return fail(site, row, spec, &e.to_string()),
    };
    let mut disks = vec![DiskSpec { path: l.root_disk(), read_only: false }];
    for v in &spec.volumes {
        match site.volume_for_instance(&v.volume, !v.read_only)? {
            Some(path) => disks.push(DiskSpec { path, read_only: v.read_only }),
            None => return pending(site, row, "VolumesReady", "waiting for a volume to be made (or unmounted from the host)"),
        }
    }
    std::fs::create_dir_all(&l.dir).map_err(SiteError::io_doing(format!("creating {}", l.dir.display())))?;
    if !l.root_disk().exists() {
        let t0 = std::time::Instant::now();
        crate::storage::pool::Pool::copy(&files.rootfs, &l.root_disk()).map_err(SiteError::Storage)?;
        tracing::info!(instance = %row.id, ms = t0.elapsed().as_millis() as u64, "root disk made from the image");
    }
    let mac = sup::mac_of(&row.id);
    let ws = WorkerSpec {
        id: row.id.clone(),
        kernel: files.kernel.clone(),
        initrd: files.initrd.clone(),
        cmdline: cmdline(&files.cmdline, spec.cmdline_extra.as_deref()),
        vcpus: spec.vcpus as u8,
        memory_mib: spec.memory_mib,
        disks,
        nets: vec![NetSpec { tap_fd: 3, mac: mac.clone() }],
        console_log: Some(l.console_log()),
        control_socket: Some(l.control_socket()),
        exit_record: Some(l.exit_record()),
        echo: false,
        confinement: Confinement { seccomp: true },
    };
    let (rec, cgroup) = site.instance_host().start(l, &ws, &router, tap, spec.stop_timeout_seconds)?;
    tracing::info!(instance = %row.id, pid = rec.pid, tap = %tap, "instance worker started");
    site.set_status(&row.id, |s, row| {
        s.phase = "Pending".into();
        s.observed_generation = row.generation;
        s.set_condition("NetworkReady", true, "Attached", "");
        s.set_condition("VolumesReady", true, "Attached", "");
        s.set_condition("Ready", true, "Started", "");
        s.extra.insert("pid".into(), rec.pid.into());
        s.extra.insert("pid_start".into(), rec.start.into());
        RunStatus::stamp_start(s, spec, &rec.started_at, restarts);
        s.extra.insert("mac".into(), mac.clone().into());
        s.extra.insert("tap".into(), tap.into());
        s.extra.insert("private_ip".into(), spec.private_ip.map(|i| i.to_string()).unwrap_or_default().into());
        s.extra.insert("console_log".into(), l.console_log().display().to_string().into());
        s.extra.insert("cgroup".into(), l.cgroup().into());
        s.extra.insert("cgroup_version".into(), cgroup.version.into());
        s.extra.insert("cgroup_dirs".into(), serde_json::json!(cgroup.dirs));
        for k in ["restart_at_ms", "stop_requested_ms", "shutdown_taken", "kill_sent", "message", "boot_timer_ms"] {
            s.extra.remove(k);
        }
    })?;
    Ok(Outcome::RequeueAfter(Duration::from_millis(100)))
}

/// Remove the run directories (and stop the workers) of instances that state no longer has
/// (deleted while the daemon was down), then the cgroups `/cloudlet/<instance id>` no live worker
/// of an instance in state is in (left by a crash between a worker's end and its cleanup; a
/// stopped instance's cgroup is made again at its start), and interrupted root disk copies
/// (`root.img.tmp`). Runs before the instance reconciler's first pass. Returns how many run
/// directories were removed.
pub fn sweep_orphans(site: &Site) -> Result<usize, SiteError> {
    let host = site.instance_host();
    let dirs: Vec<std::path::PathBuf> = std::fs::read_dir(site.config().data_dir.join("instances")).into_iter().flatten().flatten().map(|e| e.path()).collect();
    let present = dirs.iter().filter_map(|d| d.file_name().map(|n| n.to_string_lossy().into_owned())).collect();
    let ids = workload::ids_in_state(site, Kind::Instance)?;
    let n = workload::sweep_orphans(Kind::Instance, &ids, present, |id| host.remove(&site.instance_layout(id)));
    for dir in dirs.iter().filter(|d| d.exists()) {
        // A root disk copy cut short by a crash (`root.img.tmp`; the copy starts over).
        let partial = dir.join("root.img.tmp");
        if partial.exists() && std::fs::remove_file(&partial).is_ok() {
            tracing::info!(instance = %dir.display(), "removed an interrupted root disk copy");
        }
    }
    let cgroups = host.sweep_cgroups(&|id| ids.contains(id) && matches!(host.observe(&site.instance_layout(id)), Observed::Running(_)));
    if !cgroups.is_empty() {
        tracing::info!(instances = ?cgroups, "removed orphaned instance cgroups");
    }
    Ok(n)
}

#[cfg(test)]
#[path = "instances_tests.rs"]
mod tests;
