//! The OCI image engine (issue 4, in progress): a content-addressed blob store, safe layer
//! unpacking, and import of OCI image layouts. Registry pulls (`oci-client`) and the container
//! runtime build on these.

pub mod layout;
pub mod store;
pub mod unpack;

#[cfg(test)]
mod tests;

/// Errors of the image engine. Archive and digest errors are the caller's input (4xx); `Io` is
/// the host's.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A file system step failed.
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    /// Not a `sha256:<64 hex>` digest.
    #[error("{0:?} is not a sha256 digest")]
    BadDigest(String),
    /// Content does not hash to the digest it was announced with.
    #[error("digest mismatch: expected {expected}, got {got}")]
    DigestMismatch { expected: String, got: String },
    /// A limit (bytes or entries) was passed.
    #[error("over the limit of {limit}")]
    TooLarge { limit: u64 },
    /// The blob is not in the store.
    #[error("blob {0} is not in the store")]
    MissingBlob(String),
    /// An archive path leaves the root (`..`).
    #[error("archive path {0:?} escapes the root")]
    Escape(String),
    /// An archive entry would be written through a symlink.
    #[error("archive path {0:?} goes through a symlink")]
    SymlinkInPath(String),
    /// A device node in an archive.
    #[error("archive entry {0:?} is a device node; devices are refused")]
    Device(String),
    /// A malformed archive or entry.
    #[error("bad archive: {0}")]
    BadArchive(String),
    /// Well-formed but not supported here (a zstd layer, say).
    #[error("unsupported: {0}")]
    Unsupported(String),
}
