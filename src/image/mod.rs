//! The OCI image engine: a content-addressed blob store, safe layer
//! unpacking, import of OCI image layouts, and registry pulls (`oci-client`). The container
//! runtime builds on these.

pub mod layout;
mod proxy;
pub mod pull;
pub mod store;
pub mod unpack;

#[cfg(test)]
mod tests;

/// Errors of the image engine. Archive, digest, reference, auth and not-found errors are the
/// caller's input (4xx); `Io` is the host's and `Registry` the remote registry's or network's.
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
    /// Not a valid image reference (`[registry/]repository[:tag][@sha256:<hex>]`).
    #[error("bad image reference {0:?}")]
    BadReference(String),
    /// The registry refused the credentials, or demands some (HTTP 401/403).
    #[error("registry authentication failed: {0}")]
    Auth(String),
    /// The registry has no such repository, tag or digest (HTTP 404).
    #[error("not found in the registry: {0}")]
    NotFound(String),
    /// The registry could not be reached, failed, or broke the distribution protocol.
    #[error("registry error: {0}")]
    Registry(String),
}
