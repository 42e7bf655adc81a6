//! Errors of the site service; the API maps each variant to one HTTP status and error code.

use crate::state::StateError;

/// A failed site operation.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    /// Syntactically wrong input (400 `bad_request`).
    #[error("{message}")]
    BadRequest { field: Option<String>, message: String },
    /// An id or name in a path that is neither (400 `invalid_id`).
    #[error("{message}")]
    InvalidId { message: String },
    /// A well-formed but disallowed value (422 `invalid_argument`).
    #[error("{message}")]
    Invalid { field: String, message: String },
    /// No credentials, or bad ones (401).
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller's role or project does not allow this (403).
    #[error("{0}")]
    Forbidden(String),
    /// The project lacks a grant a site admin gives for this value (403 `permission_denied`,
    /// naming the field), such as an unapproved host or an ungranted host path.
    #[error("{message}")]
    ForbiddenOn { field: String, message: String },
    /// No such resource (404).
    #[error("{kind} {name:?} not found")]
    NotFound { kind: String, name: String },
    /// The name is taken in this project (409 `already_exists`).
    #[error("{kind} named {name:?} already exists")]
    AlreadyExists { kind: String, name: String },
    /// Stale generation, resource in use, or being deleted (409 `conflict`).
    #[error("{0}")]
    Conflict(String),
    /// A value that collides with another resource's (409 `conflict`, naming the field), such as
    /// an overlapping CIDR.
    #[error("{message}")]
    ConflictOn { field: String, message: String },
    /// Too many attempts (logins); try again later (429 `too_many_requests`).
    #[error("{0}")]
    TooManyRequests(String),
    /// The project's quota for a kind is used up (422 `quota_exceeded`).
    #[error("quota exceeded: project allows at most {limit} {kind}")]
    QuotaExceeded { kind: String, limit: u64 },
    /// A state-layer failure (500 `internal`).
    #[error(transparent)]
    State(#[from] StateError),
    /// A file or process operation on the host failed (500 `host_failed`; 507
    /// `insufficient_storage` when the disk is full, `ENOSPC`/`EDQUOT`).
    #[error("{what}: {source}")]
    Io {
        /// What was being done (`"creating /var/lib/cloudlet/..."`).
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The network engine could not program the kernel: a namespace, link, address, route or
    /// ruleset (500 `network_failed`).
    #[error("network: {0}")]
    Network(#[from] crate::net::host::HostError),
    /// The network model did not render to a ruleset (500 `network_failed`).
    #[error("network model: {0}")]
    Render(#[from] crate::net::render::RenderError),
    /// The container runtime failed (500 `runtime_failed`).
    #[error("container runtime: {0}")]
    Container(#[from] crate::container::ContainerError),
    /// The volume pool failed (500 `storage_failed`; 507 `insufficient_storage` when full).
    #[error("volume pool: {0}")]
    Storage(#[source] crate::storage::StorageError),
    /// The object blob store failed (500 `storage_failed`; 507 `insufficient_storage` when full).
    #[error("blob store: {0}")]
    Object(#[from] crate::object::ObjectError),
    /// The function engine failed outside a request (500 `function_engine_failed`).
    #[error("function engine: {0}")]
    Function(#[source] crate::function::FunctionError),
    /// The image store failed on the host side (500 `host_failed`; 507 when full).
    #[error("image store: {0}")]
    Image(#[source] crate::image::ImageError),
    /// Joining a portal failed (400 for a malformed token or URL, 409 when already joined, 422
    /// when the portal refused or could not be reached or shows another CA).
    #[error("joining the portal: {0}")]
    Join(#[source] crate::link::JoinError),
    /// The host lacks a facility the operation needs, such as a cgroup hierarchy
    /// (503 `host_unsupported`).
    #[error("{0}")]
    HostUnsupported(String),
    /// The site configuration key `key` makes this impossible (500 `misconfigured`).
    #[error("site configuration {key}: {message}")]
    Misconfigured { key: String, message: String },
    /// A stored value that does not parse back (500 `corrupt_state`).
    #[error("stored state: {0}")]
    Corrupt(String),
    /// A bug or a failed daemon task (500 `internal`).
    #[error("{0}")]
    Internal(String),
}

impl SiteError {
    /// Shorthand for [`SiteError::Io`]: `what` failed with `source`.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        SiteError::Io { what: what.into(), source }
    }

    /// A closure for `map_err`: [`SiteError::Io`] doing `what`.
    pub fn io_doing(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> SiteError {
        move |e| SiteError::Io { what: what.to_string(), source: e }
    }

    /// Shorthand for [`SiteError::Misconfigured`].
    pub fn misconfigured(key: impl Into<String>, message: impl Into<String>) -> Self {
        SiteError::Misconfigured { key: key.into(), message: message.into() }
    }

    /// Whether the error is a full disk or an exhausted disk quota (`ENOSPC`, `EDQUOT`), found in
    /// the chain of sources.
    pub fn disk_full(&self) -> bool {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(e) = cur {
            if let Some(io) = e.downcast_ref::<std::io::Error>()
                && matches!(io.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
            {
                return true;
            }
            cur = e.source();
        }
        false
    }
}

impl SiteError {
    /// Shorthand for [`SiteError::Invalid`].
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        SiteError::Invalid { field: field.into(), message: message.into() }
    }

    /// Shorthand for [`SiteError::NotFound`].
    pub fn not_found(kind: impl Into<String>, name: impl Into<String>) -> Self {
        SiteError::NotFound { kind: kind.into(), name: name.into() }
    }
}

impl From<serde_json::Error> for SiteError {
    fn from(e: serde_json::Error) -> Self {
        SiteError::Internal(format!("json: {e}"))
    }
}
