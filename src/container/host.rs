//! The seam between the container reconciler and the host's processes and cgroups: preparing a
//! container's directory and overlay, starting its shim, observing, stopping and removing it,
//! and exec all go through [`ContainerHost`].
//!
//! [`ShimHost`] is the real one (the functions of [`runtime`] and [`exec`], with this binary as
//! the shim). [`RecordingContainerHost`] records each call and keeps each container's observed
//! state in memory, so restart, adoption and clean-up decisions can be tested without root,
//! libcontainer or cgroups.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use super::runtime::{self, ExecOutput, Layout, LogOptions, Observed};
use super::shim::{ExitRecord, ShimRecord};
use super::spec::{RunConfig, UserNs};
use super::{ContainerError, exec};

/// Host operations on one container's processes, cgroup and directory. Each is idempotent.
pub trait ContainerHost: Send + Sync {
    /// What runs (or ran) of the container, from its records and `/proc`.
    fn observe(&self, l: &Layout) -> Observed;
    /// Make it ready to start from `image_root` with `cfg` (directories, overlay, config).
    fn prepare(&self, l: &Layout, image_root: &Path, cfg: &RunConfig, grace: Duration) -> Result<(), ContainerError>;
    /// Record the volumes it binds (read by [`ContainerHost::binding`] after it is deleted).
    fn record_volumes(&self, l: &Layout, ids: &[String]) -> Result<(), ContainerError>;
    /// Start its shim; returns once its init runs.
    fn start(&self, l: &Layout, logs: LogOptions) -> Result<ShimRecord, ContainerError>;
    /// SIGTERM, then SIGKILL after `grace`; returns once the shim is gone.
    fn stop(&self, l: &Layout, grace: Duration) -> Result<(), ContainerError>;
    /// Stop it and remove its overlay, cgroup and directory.
    fn remove(&self, l: &Layout, grace: Duration) -> Result<(), ContainerError>;
    /// Run `args` inside the running container.
    fn exec(&self, l: &Layout, args: &[String], env: &[(String, String)], timeout: Duration) -> Result<ExecOutput, ContainerError>;
    /// The ids of the containers under `data_dir` whose directory records volume `volume`.
    fn binding(&self, data_dir: &Path, volume: &str) -> Vec<String>;
    /// The ids of every container directory under `data_dir`.
    fn present(&self, data_dir: &Path) -> Vec<String>;
    /// Whether containers run in user namespaces: enabled in the site config and allowed by
    /// the kernel and the data directory's file system (probed at start-up).
    fn user_namespaces(&self) -> bool;
    /// Make and pin the user namespace `ns` unless it is pinned already.
    fn pin_userns(&self, ns: &UserNs) -> Result<(), ContainerError>;
    /// Remove the pin on `path` (a deleted project's); absent is fine.
    fn unpin_userns(&self, path: &Path) -> Result<(), ContainerError>;
}

/// The real host: shims of this binary, libcontainer, the kernel's cgroups.
#[derive(Debug, Default)]
pub struct ShimHost {
    userns: bool,
}

impl ShimHost {
    /// The real host. With `user_namespaces`, probes under `data_dir` that an overlay over an
    /// idmapped layer works (with a one-id namespace at `probe_base`); where it does not,
    /// containers run without user namespaces and a warning says why.
    pub fn open(data_dir: &Path, user_namespaces: bool, probe_base: u32) -> ShimHost {
        if !user_namespaces {
            return ShimHost { userns: false };
        }
        if let Err(e) = crate::node::ns::probe_idmapped_overlay(data_dir, probe_base) {
            tracing::warn!(error = %e, "containers run without user namespaces: this host refused the probe (a user namespace, an idmapped bind, an overlay on it)");
            return ShimHost { userns: false };
        }
        ShimHost { userns: true }
    }
}

fn self_exe() -> Result<PathBuf, ContainerError> {
    crate::self_exe().map_err(ContainerError::io("locating this binary"))
}

impl ContainerHost for ShimHost {
    fn observe(&self, l: &Layout) -> Observed {
        runtime::observe(l)
    }
    fn prepare(&self, l: &Layout, image_root: &Path, cfg: &RunConfig, grace: Duration) -> Result<(), ContainerError> {
        runtime::prepare(l, image_root, cfg, grace)
    }
    fn record_volumes(&self, l: &Layout, ids: &[String]) -> Result<(), ContainerError> {
        runtime::record_volumes(l, ids)
    }
    fn start(&self, l: &Layout, logs: LogOptions) -> Result<ShimRecord, ContainerError> {
        runtime::start(&self_exe()?, l, logs)
    }
    fn stop(&self, l: &Layout, grace: Duration) -> Result<(), ContainerError> {
        runtime::stop(l, grace)
    }
    fn remove(&self, l: &Layout, grace: Duration) -> Result<(), ContainerError> {
        runtime::remove(l, grace)
    }
    fn exec(&self, l: &Layout, args: &[String], env: &[(String, String)], timeout: Duration) -> Result<ExecOutput, ContainerError> {
        exec::run(&self_exe()?, l, args, env, timeout)
    }
    fn binding(&self, data_dir: &Path, volume: &str) -> Vec<String> {
        runtime::containers_binding(data_dir, volume)
    }
    fn present(&self, data_dir: &Path) -> Vec<String> {
        let dirs = std::fs::read_dir(data_dir.join("containers")).into_iter().flatten().flatten();
        dirs.map(|e| e.file_name().to_string_lossy().into_owned()).collect()
    }
    fn user_namespaces(&self) -> bool {
        self.userns
    }
    fn pin_userns(&self, ns: &UserNs) -> Result<(), ContainerError> {
        if let Some(dir) = ns.path.parent().filter(|d| !d.exists()) {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(ContainerError::io(format!("creating {}", dir.display())))?;
        }
        crate::node::ns::pin_userns(&ns.path, ns.host_base, super::spec::USERNS_IDS)
            .map_err(ContainerError::io(format!("pinning the user namespace {}", ns.path.display())))
    }
    fn unpin_userns(&self, path: &Path) -> Result<(), ContainerError> {
        crate::node::ns::unpin(path).map_err(ContainerError::io(format!("unpinning the user namespace {}", path.display())))
    }
}

/// One call to a [`RecordingContainerHost`] that changes the host.
#[derive(Debug, Clone, PartialEq)]
pub enum ContainerCall {
    /// `prepare`: the container, its command, its bind mounts' sources and the host id of its
    /// root when it runs in a user namespace.
    Prepare { id: String, args: Vec<String>, mounts: Vec<PathBuf>, host_base: Option<u32> },
    /// `pin_userns` of a namespace not pinned yet.
    PinUserns(PathBuf),
    /// `unpin_userns` of a pinned namespace.
    UnpinUserns(PathBuf),
    /// `start`.
    Start(String),
    /// `stop` of a running (or orphaned) container.
    Stop(String),
    /// `remove` of a container that had anything on the host.
    Remove(String),
    /// `exec` with its command.
    Exec(String, Vec<String>),
}

#[derive(Debug, Default)]
struct Fake {
    calls: Vec<ContainerCall>,
    /// Container id → what `observe` answers (absent: `Observed::Absent`).
    observed: BTreeMap<String, Observed>,
    volumes: BTreeMap<String, Vec<String>>,
    next_pid: i32,
    pinned: std::collections::BTreeSet<PathBuf>,
}

/// A recording [`ContainerHost`]: containers exist only in memory. A started container is
/// `Running` until the test ends it ([`RecordingContainerHost::exit`]) or the reconciler stops it.
#[derive(Debug, Default)]
pub struct RecordingContainerHost {
    state: Mutex<Fake>,
}

impl RecordingContainerHost {
    fn with<T>(&self, f: impl FnOnce(&mut Fake) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The calls so far, in order; clears the record.
    pub fn take(&self) -> Vec<ContainerCall> {
        self.with(|s| std::mem::take(&mut s.calls))
    }

    /// Set what `observe` answers for container `id` (a killed shim, a reboot, an exit).
    pub fn set_observed(&self, id: &str, o: Observed) {
        self.with(|s| s.observed.insert(id.to_string(), o));
    }

    /// End container `id`'s init with `code`, `finished_at` (RFC 3339), as its shim records it.
    pub fn exit(&self, id: &str, code: i32, finished_at: &str) {
        let e = ExitRecord { exit_code: Some(code), signal: None, oom_killed: false, finished_at: finished_at.into() };
        self.set_observed(id, Observed::Exited(e));
    }
}

fn killed() -> Observed {
    Observed::Exited(ExitRecord { exit_code: None, signal: Some(libc::SIGTERM), oom_killed: false, finished_at: chrono::Utc::now().to_rfc3339() })
}

impl ContainerHost for RecordingContainerHost {
    fn observe(&self, l: &Layout) -> Observed {
        self.with(|s| s.observed.get(&l.id).cloned().unwrap_or(Observed::Absent))
    }
    fn prepare(&self, l: &Layout, _image_root: &Path, cfg: &RunConfig, _grace: Duration) -> Result<(), ContainerError> {
        let mounts = cfg.mounts.iter().map(|m| m.source.clone()).collect();
        let host_base = cfg.userns.as_ref().map(|u| u.host_base);
        self.with(|s| s.calls.push(ContainerCall::Prepare { id: l.id.clone(), args: cfg.args.clone(), mounts, host_base }));
        Ok(())
    }
    fn record_volumes(&self, l: &Layout, ids: &[String]) -> Result<(), ContainerError> {
        self.with(|s| s.volumes.insert(l.id.clone(), ids.to_vec()));
        Ok(())
    }
    fn start(&self, l: &Layout, _logs: LogOptions) -> Result<ShimRecord, ContainerError> {
        self.with(|s| {
            s.next_pid += 2;
            let rec = ShimRecord {
                shim_pid: 1000 + s.next_pid,
                shim_start: 1,
                init_pid: 1001 + s.next_pid,
                init_start: 1,
                started_at: chrono::Utc::now().to_rfc3339(),
                boot_id: String::new(),
            };
            s.observed.insert(l.id.clone(), Observed::Running(rec.clone()));
            s.calls.push(ContainerCall::Start(l.id.clone()));
            Ok(rec)
        })
    }
    fn stop(&self, l: &Layout, _grace: Duration) -> Result<(), ContainerError> {
        self.with(|s| {
            if let Some(Observed::Running(_) | Observed::Orphaned(_)) = s.observed.get(&l.id) {
                s.observed.insert(l.id.clone(), killed());
                s.calls.push(ContainerCall::Stop(l.id.clone()));
            }
        });
        Ok(())
    }
    fn remove(&self, l: &Layout, grace: Duration) -> Result<(), ContainerError> {
        self.stop(l, grace)?;
        self.with(|s| {
            let had = s.observed.remove(&l.id).is_some() | s.volumes.remove(&l.id).is_some();
            if had {
                s.calls.push(ContainerCall::Remove(l.id.clone()));
            }
        });
        Ok(())
    }
    fn exec(&self, l: &Layout, args: &[String], _env: &[(String, String)], _timeout: Duration) -> Result<ExecOutput, ContainerError> {
        self.with(|s| s.calls.push(ContainerCall::Exec(l.id.clone(), args.to_vec())));
        Ok(ExecOutput { exit_code: 0, stdout: String::new(), stderr: String::new(), timed_out: false })
    }
    fn binding(&self, _data_dir: &Path, volume: &str) -> Vec<String> {
        self.with(|s| s.volumes.iter().filter(|(_, v)| v.iter().any(|x| x == volume)).map(|(id, _)| id.clone()).collect())
    }
    fn present(&self, _data_dir: &Path) -> Vec<String> {
        self.with(|s| s.observed.keys().chain(s.volumes.keys()).cloned().collect::<std::collections::BTreeSet<_>>().into_iter().collect())
    }
    fn user_namespaces(&self) -> bool {
        true
    }
    fn pin_userns(&self, ns: &UserNs) -> Result<(), ContainerError> {
        self.with(|s| {
            if s.pinned.insert(ns.path.clone()) {
                s.calls.push(ContainerCall::PinUserns(ns.path.clone()));
            }
        });
        Ok(())
    }
    fn unpin_userns(&self, path: &Path) -> Result<(), ContainerError> {
        self.with(|s| {
            if s.pinned.remove(path) {
                s.calls.push(ContainerCall::UnpinUserns(path.to_path_buf()));
            }
        });
        Ok(())
    }
}
