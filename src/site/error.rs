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
    /// A state-layer failure (500 unless classified above).
    #[error(transparent)]
    State(#[from] StateError),
    /// Anything else that is the daemon's fault (500).
    #[error("{0}")]
    Internal(String),
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
