//! The seam between the instance reconciler and the host's worker processes and cgroups:
//! observing a worker, its control socket, starting it (cgroup, tap, spawn), signalling and
//! killing it, and removing what it leaves all go through [`InstanceHost`].
//!
//! [`WorkerHost`] is the real one (the functions of [`super::instance_supervisor`], with this
//! binary's `vmm-worker` as the worker). [`RecordingInstanceHost`] records each call and keeps
//! each worker's observed state in memory, so start, restart, stop and clean-up decisions are
//! tested without root, KVM or cgroups.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::SiteError;
use super::instance_supervisor::{self as sup, Cgroup, Layout, Observed, WorkerRecord};
use crate::vmm::spec::{ExitReason, ExitRecord, Request, Response, WorkerSpec};

/// Host operations on one instance's worker, cgroup and run directory.
pub trait InstanceHost: Send + Sync {
    /// What runs (or ran) of the instance's worker, from its record and `/proc`.
    fn observe(&self, l: &Layout) -> Observed;
    /// One request on the worker's control socket, answered within `timeout`.
    fn control(&self, l: &Layout, req: &Request, timeout: Duration) -> io::Result<Response>;
    /// Send `sig` to the recorded worker if that process still runs; whether it was sent.
    fn signal(&self, rec: &WorkerRecord, sig: Signal) -> bool;
    /// End the worker now (`kill` on its socket, then SIGKILL); returns once it is gone.
    fn kill_now(&self, l: &Layout, rec: &WorkerRecord) -> Result<(), SiteError>;
    /// Make the worker's cgroup (its vCPUs and memory from `spec`), open the tap `tap` in the
    /// network namespace `router`, and spawn the worker with it as fd 3. On an error nothing
    /// of this start is left. Returns the worker's record and its cgroup.
    fn start(&self, l: &Layout, spec: &WorkerSpec, router: &str, tap: &str, stop_timeout_seconds: u32) -> Result<(WorkerRecord, Cgroup), SiteError>;
    /// A worker ended: remove its cgroup and forget its record (the exit record stays).
    fn release(&self, l: &Layout);
    /// Remove everything of the instance on the host: its worker (killed), cgroup and run
    /// directory.
    fn remove(&self, l: &Layout) -> Result<(), SiteError>;
    /// Remove the instance cgroups whose id `owned` does not claim; returns their ids.
    fn sweep_cgroups(&self, owned: &dyn Fn(&str) -> bool) -> Vec<String>;
    /// Connect to the worker's serial console socket.
    fn open_console(&self, l: &Layout) -> io::Result<UnixStream>;
    /// Whether the running worker `rec` is still attached to the tap `tap` (`None`: this host
    /// cannot tell). A tap deleted under a worker detaches it for good: the tap made again is
    /// another device, and the worker must be started on it.
    fn tap_attached(&self, rec: &WorkerRecord, tap: &str) -> Option<bool>;
}

/// The real host: `cloudlet vmm-worker` processes, the kernel's cgroups and taps.
#[derive(Debug, Default)]
pub struct WorkerHost;

impl InstanceHost for WorkerHost {
    fn observe(&self, l: &Layout) -> Observed {
        sup::observe(l)
    }
    fn control(&self, l: &Layout, req: &Request, timeout: Duration) -> io::Result<Response> {
        sup::control(l, req, timeout)
    }
    fn signal(&self, rec: &WorkerRecord, sig: Signal) -> bool {
        sup::signal(rec, sig)
    }
    fn kill_now(&self, l: &Layout, rec: &WorkerRecord) -> Result<(), SiteError> {
        sup::kill_now(l, rec)
    }
    fn start(&self, l: &Layout, spec: &WorkerSpec, router: &str, tap: &str, stop_timeout_seconds: u32) -> Result<(WorkerRecord, Cgroup), SiteError> {
        let cgroup = sup::make_cgroup(&l.cgroup(), spec.vcpus.into(), spec.memory_mib)?;
        let tap_fd = match crate::net::host::open_tap(router, tap) {
            Ok(fd) => fd,
            Err(e) => {
                sup::remove_cgroup(l);
                return Err(SiteError::Network(e));
            }
        };
        match sup::spawn(l, spec, vec![tap_fd], &cgroup, stop_timeout_seconds) {
            Ok(rec) => Ok((rec, cgroup)),
            Err(e) => {
                sup::remove_cgroup(l);
                Err(e)
            }
        }
    }
    fn release(&self, l: &Layout) {
        sup::remove_cgroup(l);
        sup::clear_record(l);
    }
    fn remove(&self, l: &Layout) -> Result<(), SiteError> {
        sup::remove(l)
    }
    fn sweep_cgroups(&self, owned: &dyn Fn(&str) -> bool) -> Vec<String> {
        sup::sweep_cgroups(owned)
    }
    fn open_console(&self, l: &Layout) -> io::Result<UnixStream> {
        sup::open_console(l)
    }
    fn tap_attached(&self, rec: &WorkerRecord, tap: &str) -> Option<bool> {
        sup::attached_taps(rec).map(|taps| taps.iter().any(|t| t == tap))
    }
}

/// One call the reconciler made of a [`RecordingInstanceHost`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceCall {
    /// `start` of the instance, with its tap.
    Start { id: String, tap: String, vcpus: u8, memory_mib: u64 },
    /// A control request (`"shutdown"`, `"kill"`, `"status"`, ...).
    Control { id: String, request: String },
    /// A signal to the worker (`"SIGKILL"`).
    Signal { id: String, signal: String },
    /// `kill_now`.
    KillNow { id: String },
    /// `release` after the worker ended.
    Release { id: String },
    /// `remove`.
    Remove { id: String },
}

/// A fake host: workers are entries in memory. A started worker runs until the test ends it
/// ([`RecordingInstanceHost::end`]) or the reconciler kills it; a `shutdown` it takes ends it as
/// `stopped` at once.
#[derive(Debug, Default)]
pub struct RecordingInstanceHost {
    calls: Mutex<Vec<InstanceCall>>,
    workers: Mutex<BTreeMap<String, Observed>>,
    next_pid: Mutex<i32>,
    detached: Mutex<Vec<i32>>,
}

impl RecordingInstanceHost {
    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<InstanceCall> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Forget the calls so far.
    pub fn clear(&self) {
        if let Ok(mut c) = self.calls.lock() {
            c.clear();
        }
    }

    /// End instance `id`'s running worker with `exit` (`None`: no exit record, as after a
    /// SIGKILL or a host failure).
    pub fn end(&self, id: &str, exit: Option<ExitRecord>) {
        if let Ok(mut w) = self.workers.lock()
            && let Some(Observed::Running(rec)) = w.get(id).cloned()
        {
            w.insert(id.to_string(), Observed::Exited(rec, exit));
        }
    }

    /// Detach instance `id`'s running worker from its tap (as deleting the tap does).
    pub fn detach_tap(&self, id: &str) {
        if let Some(Observed::Running(rec)) = self.workers.lock().ok().and_then(|w| w.get(id).cloned())
            && let Ok(mut d) = self.detached.lock()
        {
            d.push(rec.pid);
        }
    }

    fn record(&self, c: InstanceCall) {
        if let Ok(mut v) = self.calls.lock() {
            v.push(c);
        }
    }

    fn set(&self, id: &str, o: Observed) {
        if let Ok(mut w) = self.workers.lock() {
            w.insert(id.to_string(), o);
        }
    }
}

fn exit(reason: ExitReason) -> ExitRecord {
    ExitRecord { reason, error: None, boot_timer_ms: None, total_ms: 0.0 }
}

impl InstanceHost for RecordingInstanceHost {
    fn observe(&self, l: &Layout) -> Observed {
        self.workers.lock().ok().and_then(|w| w.get(&l.id).cloned()).unwrap_or(Observed::Absent)
    }
    fn control(&self, l: &Layout, req: &Request, _timeout: Duration) -> io::Result<Response> {
        let name = serde_json::to_value(req).ok().and_then(|v| v.get("op").and_then(|o| o.as_str()).map(str::to_string)).unwrap_or_default();
        self.record(InstanceCall::Control { id: l.id.clone(), request: name });
        let Observed::Running(rec) = self.observe(l) else { return Err(io::Error::new(io::ErrorKind::NotFound, "no worker")) };
        match req {
            Request::Shutdown => self.set(&l.id, Observed::Exited(rec, Some(exit(ExitReason::Stopped)))),
            Request::Kill => self.set(&l.id, Observed::Exited(rec, Some(exit(ExitReason::Killed)))),
            _ => {}
        }
        Ok(Response { ok: true, status: None, error: None })
    }
    fn signal(&self, rec: &WorkerRecord, sig: Signal) -> bool {
        let id = self.workers.lock().ok().and_then(|w| w.iter().find(|(_, o)| matches!(o, Observed::Running(r) if r == rec)).map(|(k, _)| k.clone()));
        let Some(id) = id else { return false };
        self.record(InstanceCall::Signal { id: id.clone(), signal: sig.as_str().into() });
        if sig == Signal::SIGKILL {
            self.set(&id, Observed::Exited(rec.clone(), None));
        }
        true
    }
    fn kill_now(&self, l: &Layout, rec: &WorkerRecord) -> Result<(), SiteError> {
        self.record(InstanceCall::KillNow { id: l.id.clone() });
        self.set(&l.id, Observed::Exited(rec.clone(), None));
        Ok(())
    }
    fn start(&self, l: &Layout, spec: &WorkerSpec, _router: &str, tap: &str, stop_timeout_seconds: u32) -> Result<(WorkerRecord, Cgroup), SiteError> {
        self.record(InstanceCall::Start { id: l.id.clone(), tap: tap.into(), vcpus: spec.vcpus, memory_mib: spec.memory_mib });
        let pid = self.next_pid.lock().map(|mut n| {
            *n += 1;
            1000 + *n
        });
        let rec = WorkerRecord { pid: pid.unwrap_or(1000), start: 1, boot_id: "fake".into(), started_at: super::model::now_rfc3339(), stop_timeout_seconds };
        self.set(&l.id, Observed::Running(rec.clone()));
        Ok((rec, Cgroup { version: "v2", dirs: vec![] }))
    }
    fn release(&self, l: &Layout) {
        self.record(InstanceCall::Release { id: l.id.clone() });
        if let Ok(mut w) = self.workers.lock() {
            w.remove(&l.id);
        }
    }
    fn remove(&self, l: &Layout) -> Result<(), SiteError> {
        self.record(InstanceCall::Remove { id: l.id.clone() });
        if let Ok(mut w) = self.workers.lock() {
            w.remove(&l.id);
        }
        let _ = std::fs::remove_dir_all(&l.dir);
        Ok(())
    }
    fn sweep_cgroups(&self, _owned: &dyn Fn(&str) -> bool) -> Vec<String> {
        Vec::new()
    }
    fn open_console(&self, _l: &Layout) -> io::Result<UnixStream> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "the recording host has no consoles"))
    }
    fn tap_attached(&self, rec: &WorkerRecord, _tap: &str) -> Option<bool> {
        Some(!self.detached.lock().is_ok_and(|d| d.contains(&rec.pid)))
    }
}
