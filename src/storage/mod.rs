//! The storage engine: a storage pool of sparse volume files,
//! point-in-time snapshots and clones, and attaching a volume to containers as a mounted ext4
//! filesystem. A volume file is also the raw block device a microVM serves as virtio-blk.

pub mod attach;
pub mod check;
pub mod host;
pub mod pool;

/// Errors of the storage engine. `Invalid` is the caller's input; the others are the host's.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A file system step failed.
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    /// A host tool (mkfs.ext4, mount, resize2fs) failed.
    #[error("{tool} failed: {message}")]
    Tool { tool: String, message: String },
    /// Not allowed (shrinking a volume, say).
    #[error("{0}")]
    Invalid(String),
}

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StorageError {
    let what = what.into();
    move |source| StorageError::Io { what, source }
}

/// Run a host tool; its stderr becomes the error.
pub(crate) fn run(tool: &str, args: &[&std::ffi::OsStr]) -> Result<String, StorageError> {
    let out = std::process::Command::new(tool)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| StorageError::Tool { tool: tool.into(), message: e.to_string() })?;
    if !out.status.success() {
        return Err(StorageError::Tool { tool: tool.into(), message: String::from_utf8_lossy(&out.stderr).trim().to_string() });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
