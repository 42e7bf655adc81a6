//! The container engine: OCI runtime specs with default hardening, the per-container
//! shim that runs youki's `libcontainer`, rotating logs, exec into a running container, and the
//! cgroup facts (OOM kills) a shim reports.
//!
//! The daemon never calls `libcontainer` itself. `libcontainer` forks with raw `clone3`, which is
//! only safe in a single-threaded process, and a container's init must outlive a `kill -9` of the
//! daemon. So the daemon runs its own binary as `cloudlet container-shim` (one per running
//! container, detached in its own session) and `cloudlet container-exec` (one per exec). The shim
//! is the parent and subreaper of the container's init: it pumps the container's stdout and stderr
//! into rotating log files and records the exit status, so a restarted daemon adopts running
//! containers and learns how stopped ones ended.

pub mod cgroup;
pub mod exec;
pub mod host;
pub mod logs;
pub mod runtime;
pub mod seccomp;
pub mod shim;
pub mod spec;

/// Errors of the container engine. `Invalid` is the caller's input (a 4xx); the others are the
/// host's or the runtime's.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// A file system or process step failed.
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    /// The input cannot run (unknown user, bad mount target, ...).
    #[error("{0}")]
    Invalid(String),
    /// The runtime (libcontainer, the shim) failed.
    #[error("runtime: {0}")]
    Runtime(String),
}

impl ContainerError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ContainerError {
        let what = what.into();
        move |source| ContainerError::Io { what, source }
    }
}

/// Write `bytes` to `path` atomically: a temporary file in the same directory, then a rename, so
/// a reader or a crashed writer never sees a mix of old and new.
///
/// There is no fsync: these are runtime files (the bundle's `config.json`, `/etc/hosts`, the
/// shim's records), rewritten at every start and meaningful only while the host stays up. A power
/// loss ends every container anyway, and recovery then starts from the database, not from them.
pub(crate) fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<(), ContainerError> {
    let dir = path.parent().ok_or_else(|| ContainerError::Runtime(format!("{} has no parent", path.display())))?;
    let tmp = dir.join(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("file")));
    std::fs::write(&tmp, bytes).map_err(ContainerError::io(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(ContainerError::io(format!("renaming to {}", path.display())))
}
