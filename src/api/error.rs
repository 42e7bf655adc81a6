//! The API's error type, its JSON body, and extractors whose rejections use it.
//!
//! Every error answers `{"error": {"code", "message", "field"?}}`; see `docs/api.md` for the table
//! of statuses and codes.

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

use crate::site::SiteError;

/// An API error: status, stable code, message and the offending field.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

/// The error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// The error detail.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_argument`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// The offending field (`name`, `spec.quotas.vpcs`, `If-Match`, ...), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    /// Build an error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), field: None }
    }

    /// Attach the offending field.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 400 `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 500 `internal`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl From<SiteError> for ApiError {
    fn from(e: SiteError) -> Self {
        let msg = e.to_string();
        match e {
            SiteError::BadRequest { field, .. } => {
                let mut a = ApiError::bad_request(msg);
                a.field = field;
                a
            }
            SiteError::InvalidId { .. } => ApiError::new(StatusCode::BAD_REQUEST, "invalid_id", msg).with_field("id"),
            SiteError::Invalid { field, .. } => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_argument", msg).with_field(field),
            SiteError::Unauthenticated(_) => ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", msg),
            SiteError::Forbidden(_) => ApiError::new(StatusCode::FORBIDDEN, "permission_denied", msg),
            SiteError::ForbiddenOn { field, .. } => ApiError::new(StatusCode::FORBIDDEN, "permission_denied", msg).with_field(field),
            SiteError::NotFound { .. } => ApiError::not_found(msg),
            SiteError::AlreadyExists { .. } => ApiError::new(StatusCode::CONFLICT, "already_exists", msg).with_field("name"),
            SiteError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", msg),
            SiteError::TooManyRequests(_) => ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", msg),
            SiteError::ConflictOn { field, .. } => ApiError::new(StatusCode::CONFLICT, "conflict", msg).with_field(field),
            SiteError::QuotaExceeded { kind, .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "quota_exceeded", msg).with_field(format!("quotas.{kind}"))
            }
            SiteError::Join(j) => join_error(j, msg),
            // The detail (paths, tool output, SQL) stays in the log; the client gets the kind
            // of failure and a reference.
            e => {
                let (status, code, what) = server_side(&e);
                let reference = ulid::Ulid::new().to_string();
                tracing::error!(reference = %reference, code, error = %msg, "request failed on the server side");
                ApiError::new(status, code, format!("{what} (reference {reference} in the daemon's log)"))
            }
        }
    }
}

/// A failed portal join: what the caller can fix is 4xx naming the field; the site's own files
/// failing is a server-side error.
fn join_error(e: crate::site::portal::JoinError, msg: String) -> ApiError {
    use crate::site::portal::JoinError as J;
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    match e {
        J::BadToken(_) => ApiError::bad_request(msg).with_field("token"),
        J::BadUrl(_) => ApiError::bad_request(msg).with_field("portal"),
        J::AlreadyJoined(_) => ApiError::new(StatusCode::CONFLICT, "already_joined", msg),
        J::WrongPortal => ApiError::new(unprocessable, "portal_ca_mismatch", msg).with_field("token"),
        J::Unreachable(_) => ApiError::new(unprocessable, "portal_unreachable", msg).with_field("portal"),
        J::Refused { .. } => ApiError::new(unprocessable, "join_refused", msg).with_field("token"),
        J::BadAnswer(_) => ApiError::new(StatusCode::BAD_GATEWAY, "portal_bad_answer", msg),
        other @ (J::Cert(_) | J::Io { .. }) => {
            let reference = ulid::Ulid::new().to_string();
            tracing::error!(reference = %reference, error = %other, "joining the portal failed on the site");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "host_failed",
                format!("writing the site's identity failed (reference {reference} in the daemon's log)"),
            )
        }
    }
}

/// The status, code and client-facing summary of a failure that is the site's, not the
/// caller's: each engine's failure has a code of its own, a full disk is 507 (RFC 4918 §11.5)
/// and a missing host facility 503.
fn server_side(e: &SiteError) -> (StatusCode, &'static str, &'static str) {
    if e.disk_full() {
        return (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage", "the site's disk is full");
    }
    let internal = StatusCode::INTERNAL_SERVER_ERROR;
    match e {
        SiteError::Io { .. } | SiteError::Image(_) => (internal, "host_failed", "a host operation failed"),
        SiteError::Network(_) | SiteError::Render(_) => (internal, "network_failed", "programming the network failed"),
        SiteError::Container(_) => (internal, "runtime_failed", "the container runtime failed"),
        SiteError::Storage(_) | SiteError::Object(_) => (internal, "storage_failed", "the storage engine failed"),
        SiteError::Function(_) => (internal, "function_engine_failed", "the function engine failed"),
        SiteError::HostUnsupported(_) => (StatusCode::SERVICE_UNAVAILABLE, "host_unsupported", "this host lacks a facility the operation needs"),
        SiteError::Misconfigured { .. } => (internal, "misconfigured", "the site's configuration does not allow this"),
        SiteError::Corrupt(_) => (internal, "corrupt_state", "stored state did not read back"),
        _ => (internal, "internal", "internal error"),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "request failed");
        }
        let body = ErrorBody { error: ErrorDetail { code: self.code.into(), message: self.message, field: self.field } };
        let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{\"error\":{\"code\":\"internal\",\"message\":\"\"}}".to_vec());
        let mut resp = Response::new(Body::from(json));
        *resp.status_mut() = self.status;
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        resp
    }
}

/// Decode a JSON body, naming the offending field in errors (via `serde_path_to_error`).
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = match serde_path_to_error::deserialize(&mut de) {
        Ok(v) => v,
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let msg = inner.to_string();
            let join = |name: &str| {
                if path == "." || path.is_empty() {
                    name.to_string()
                } else if path.ends_with(name) {
                    path.clone()
                } else {
                    format!("{path}.{name}")
                }
            };
            let quoted = || msg.split('`').nth(1).unwrap_or("").to_string();
            return Err(match inner.classify() {
                serde_json::error::Category::Data if msg.starts_with("unknown field") => {
                    let f = join(&quoted());
                    ApiError::new(StatusCode::BAD_REQUEST, "unknown_field", format!("unknown field {f:?}")).with_field(f)
                }
                serde_json::error::Category::Data if msg.starts_with("missing field") => {
                    let f = join(&quoted());
                    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_argument", format!("missing field {f:?}")).with_field(f)
                }
                serde_json::error::Category::Data
                    if msg.starts_with("unknown variant") || msg.starts_with("invalid value") || msg.starts_with("premature end") =>
                {
                    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_argument", msg).with_field(path)
                }
                serde_json::error::Category::Data => {
                    let mut a = ApiError::bad_request(msg);
                    if path != "." {
                        a.field = Some(path);
                    }
                    a
                }
                _ => ApiError::bad_request(format!("malformed JSON: {msg}")),
            });
        }
    };
    de.end().map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// A JSON request body. Rejections: 415 for a non-JSON content type, 413 over the body limit,
/// 400/422 for malformed or invalid JSON with the field named.
pub struct ApiJson<T>(pub T);

/// Whether a `Content-Type` value is JSON (`application/json`, `application/*+json`).
pub fn is_json(ct: Option<&HeaderValue>) -> bool {
    let ct = ct.and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "the body must be JSON (Content-Type: application/json)"));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is too large")
            } else {
                ApiError::bad_request(format!("reading the body: {}", e.body_text()))
            }
        })?;
        decode_json(&bytes).map(ApiJson)
    }
}

/// A query string; unknown parameters and bad values are 400 `bad_request`.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state).await.map(|q| ApiQuery(q.0)).map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

/// Middleware: turn any error response that is not already JSON (axum's 405, a layer's 413, a
/// timeout) into the JSON error shape, so clients see one format everywhere.
pub async fn jsonify_errors(resp: Response) -> Response {
    let status = resp.status();
    if status.as_u16() < 400 || is_json(resp.headers().get(header::CONTENT_TYPE)) {
        return resp;
    }
    let (code, msg) = match status {
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "this method is not allowed on this path"),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the request body is too large"),
        StatusCode::NOT_FOUND => ("not_found", "no such route"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", "unsupported content type"),
        StatusCode::UNAUTHORIZED => ("unauthenticated", "authentication required"),
        StatusCode::REQUEST_TIMEOUT => ("timeout", "the request timed out"),
        s if s.is_client_error() => ("bad_request", "bad request"),
        _ => ("internal", "internal error"),
    };
    let mut out = ApiError::new(status, code, msg).into_response();
    if let Some(allow) = resp.headers().get(header::ALLOW) {
        out.headers_mut().insert(header::ALLOW, allow.clone());
    }
    out
}

/// The response for a handler panic: a 500 JSON error (the panic is logged, never shown).
pub fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = err.downcast_ref::<String>().cloned().or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
    tracing::error!(panic = %detail, "handler panicked");
    ApiError::internal("internal error").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        role: crate::site::auth::Role,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        #[serde(default)]
        spec: Option<Inner>,
    }

    fn err(s: &str) -> ApiError {
        decode_json::<Outer>(s.as_bytes()).unwrap_err()
    }

    #[test]
    fn decode_errors_name_codes_and_fields() {
        let e = err(r#"{"name":"a","bogus":1}"#);
        assert_eq!((e.status.as_u16(), e.code, e.field.as_deref()), (400, "unknown_field", Some("bogus")));
        let e = err(r#"{"name":"a","spec":{"role":"admin","x":1}}"#);
        assert_eq!((e.code, e.field.as_deref()), ("unknown_field", Some("spec.x")));
        let e = err(r#"{"name":"a","spec":{"role":"root"}}"#);
        assert_eq!((e.status.as_u16(), e.code, e.field.as_deref()), (422, "invalid_argument", Some("spec.role")));
        let e = err(r#"{"spec":{"role":"admin"}}"#);
        assert_eq!((e.code, e.field.as_deref()), ("invalid_argument", Some("name")));
        let e = err(r#"{"name":5}"#);
        assert_eq!((e.status.as_u16(), e.code, e.field.as_deref()), (400, "bad_request", Some("name")));
        assert_eq!(err(r#"{"name":"a""#).code, "bad_request");
        assert_eq!(err(r#"{"name":"a"} trailing"#).code, "bad_request");
        assert_eq!(err("").code, "bad_request");
    }

    #[test]
    fn each_engine_failure_has_its_status_and_code_and_keeps_the_detail_in_the_log() {
        let io = |errno| std::io::Error::from_raw_os_error(errno);
        let cases: Vec<(SiteError, u16, &str)> = vec![
            (SiteError::io("writing /var/lib/cloudlet/secret-path", io(libc::EIO)), 500, "host_failed"),
            (SiteError::io("writing a blob", io(libc::ENOSPC)), 507, "insufficient_storage"),
            (SiteError::Storage(crate::storage::StorageError::Io { what: "growing".into(), source: io(libc::EDQUOT) }), 507, "insufficient_storage"),
            (SiteError::Storage(crate::storage::StorageError::Tool { tool: "losetup".into(), message: "busy".into() }), 500, "storage_failed"),
            (SiteError::Network(crate::net::host::HostError::Nft("syntax".into())), 500, "network_failed"),
            (SiteError::Container(crate::container::ContainerError::Runtime("no such program".into())), 500, "runtime_failed"),
            (SiteError::Function(crate::function::FunctionError::Engine("cranelift".into())), 500, "function_engine_failed"),
            (SiteError::HostUnsupported("no cgroup v1 memory hierarchy".into()), 503, "host_unsupported"),
            (SiteError::misconfigured("network.transit_cidr", "not a CIDR"), 500, "misconfigured"),
            (SiteError::Corrupt("a VPC CIDR".into()), 500, "corrupt_state"),
            (SiteError::Internal("row vanished".into()), 500, "internal"),
        ];
        for (e, status, code) in cases {
            let a = ApiError::from(e);
            assert_eq!((a.status.as_u16(), a.code), (status, code), "{}", a.message);
            assert!(a.message.contains("reference") && !a.message.contains("secret-path"), "{}", a.message);
        }
    }
}
