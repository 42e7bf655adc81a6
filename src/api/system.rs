//! Health, readiness, metrics, site summary, console login, and the OpenAPI document.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::{AuditSlot, Auth, SESSION_COOKIE, Transport, cookie};
use super::error::{ApiError, ApiJson, ApiQuery, ErrorBody};
use crate::site::auth::{Principal, SESSION_TTL_MS};

/// Liveness: the process serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "system", responses((status = 200, description = "ok", body = String)))]
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: every reconciler finished its start-up (recovery) pass.
#[utoipa::path(get, path = "/readyz", tag = "system",
    responses((status = 200, description = "ready", body = String), (status = 503, body = ErrorBody)))]
pub async fn readyz(State(app): State<AppState>) -> Response {
    if app.site.is_ready() {
        "ready\n".into_response()
    } else {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "the start-up reconcile pass is still running").into_response()
    }
}

/// Prometheus metrics (OpenMetrics text). Needs a site admin unless `api.metrics_public`.
#[utoipa::path(get, path = "/metrics", tag = "system", responses((status = 200, description = "OpenMetrics text", body = String)))]
pub async fn metrics(State(app): State<AppState>, auth: Result<Auth, ApiError>) -> Result<Response, ApiError> {
    if !app.site.config().api.metrics_public {
        auth?.0.require_site_admin()?;
    }
    let counts = app.site.run(|s| s.counts(None)).await?;
    let counts: Vec<(String, i64)> =
        counts.into_iter().map(|(plural, n)| (crate::site::Kind::from_plural(&plural).map(|k| k.as_str().to_string()).unwrap_or(plural), n)).collect();
    let body = app.site.metrics().encode(&counts);
    let mut resp = body.into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"));
    Ok(resp)
}

/// Summary of the site for the console's overview.
#[derive(Debug, Serialize, ToSchema)]
pub struct SiteInfo {
    /// The daemon's version.
    pub version: String,
    /// The node serving this request.
    pub node_name: String,
    /// When the daemon started (RFC 3339).
    pub started_at: String,
    /// Resources per kind (plural name): site-wide for site admins, else the caller's project.
    pub counts: BTreeMap<String, i64>,
    /// The TCP port of this node's S3 endpoint (path-style, plain HTTP); absent when it is off.
    pub s3_port: Option<u16>,
    /// The TCP port of this node's functions gateway (plain HTTP); absent when it is off.
    pub gateway_port: Option<u16>,
}

/// The port a listener bound, from `DATA/<file>` (written when it binds); none when `listen`
/// is empty (the listener is off).
fn bound_port(app: &AppState, listen: &str, file: &str) -> Option<u16> {
    if listen.is_empty() {
        return None;
    }
    let addr = std::fs::read_to_string(app.site.config().data_dir.join(file)).ok()?;
    addr.trim().rsplit_once(':')?.1.parse().ok()
}

/// Site summary: version, node and resource counts.
#[utoipa::path(get, path = "/v1/site", tag = "system", responses((status = 200, body = SiteInfo), (status = 401, body = ErrorBody)))]
pub async fn site_info(State(app): State<AppState>, Auth(p): Auth) -> Result<Json<SiteInfo>, ApiError> {
    let scope = (!p.site_admin).then(|| p.project_ctx());
    let counts = app.site.run(move |s| s.counts(scope.as_ref())).await?;
    Ok(Json(SiteInfo {
        version: env!("CARGO_PKG_VERSION").into(),
        node_name: app.site.node_name().into(),
        started_at: app.site.started_at().into(),
        counts,
        s3_port: bound_port(&app, &app.site.config().s3.listen, "s3.addr"),
        gateway_port: bound_port(&app, &app.site.config().functions.gateway, "gateway.addr"),
    }))
}

/// Body of `POST /v1/site/join`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinPortalRequest {
    /// The portal's link URL, `https://HOST[:PORT]`.
    pub portal: String,
    /// The join token the portal made for this site (`CLJ1.…`; a secret, never logged).
    pub token: String,
}

/// Join a portal (site admins): the site makes its key, checks the portal's CA against the
/// token, and gets a client certificate. 409 when already joined; 422 when the portal refuses
/// (`join_refused`), shows another CA (`portal_ca_mismatch`) or cannot be reached.
#[utoipa::path(post, path = "/v1/site/join", tag = "system", request_body = JoinPortalRequest,
    responses((status = 200, body = crate::site::portal::Identity), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn join_portal(
    State(app): State<AppState>,
    Auth(p): Auth,
    ApiJson(b): ApiJson<JoinPortalRequest>,
) -> Result<Json<crate::site::portal::Identity>, ApiError> {
    p.require_site_admin()?;
    Ok(Json(app.site.join_portal(&b.portal, &b.token).await?))
}

/// Query of `GET /v1/site/portal`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PortalQuery {
    /// Also call the portal over mutual TLS with the site's certificate and report the answer.
    #[serde(default)]
    pub check: bool,
}

/// The portal this site joined, with the answer of a live check when asked.
#[derive(Debug, Serialize, ToSchema)]
pub struct PortalMembership {
    #[serde(flatten)]
    pub identity: crate::site::portal::Identity,
    /// The live check (`?check=true`): `{"ok": true, "site": NAME}` or `{"ok": false, "error": …}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<serde_json::Value>,
}

/// The portal this site joined (site admins); 404 when it joined none.
#[utoipa::path(get, path = "/v1/site/portal", tag = "system", params(PortalQuery),
    responses((status = 200, body = PortalMembership), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn portal_identity(State(app): State<AppState>, Auth(p): Auth, ApiQuery(q): ApiQuery<PortalQuery>) -> Result<Json<PortalMembership>, ApiError> {
    p.require_site_admin()?;
    let identity = app.site.portal_identity()?.ok_or_else(|| ApiError::not_found("this site has joined no portal"))?;
    let check = if q.check {
        Some(match app.site.check_portal().await {
            Ok(site) => serde_json::json!({ "ok": true, "site": site }),
            Err(e) => serde_json::json!({ "ok": false, "error": e.to_string() }),
        })
    } else {
        None
    };
    Ok(Json(PortalMembership { identity, check }))
}

/// Body of the console login.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// `name` (a user of the `system` project) or `name@project`.
    pub username: String,
    pub password: String,
}

/// Log in to the console: sets the `cloudlet_session` cookie (HttpOnly, SameSite=Strict).
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = Principal), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn login(
    State(app): State<AppState>,
    slot: Option<Extension<AuditSlot>>,
    transport: Option<Extension<Transport>>,
    peer: Option<Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    ApiJson(b): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    if b.username.is_empty() || b.username.len() > 128 {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_argument", "username must be 1 to 128 bytes").with_field("username"));
    }
    if b.password.len() > 256 {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_argument", "password is at most 256 bytes").with_field("password"));
    }
    let source = peer.map(|Extension(axum::extract::ConnectInfo(a))| a.ip());
    let (value, p) = app.site.run(move |s| s.login(&b.username, &b.password, source)).await?;
    if let Some(Extension(slot)) = slot {
        slot.set(&p);
    }
    let secure = if transport.map(|t| t.0) == Some(Transport::Https) { "; Secure" } else { "" };
    let c = format!("{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}", SESSION_TTL_MS / 1000);
    let mut resp = Json(p).into_response();
    if let Ok(v) = HeaderValue::from_str(&c) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

/// Log out of the console: ends the session and clears the cookie.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", responses((status = 204)))]
pub async fn logout(State(app): State<AppState>, Auth(_): Auth, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(c) = cookie(&headers, SESSION_COOKIE).map(str::to_string) {
        app.site.run(move |s| s.logout(&c)).await?;
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_static("cloudlet_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"));
    Ok(resp)
}

/// Who the caller is: actor, project, role and whether it is a site admin.
#[utoipa::path(get, path = "/v1/auth/whoami", tag = "auth", responses((status = 200, body = Principal), (status = 401, body = ErrorBody)))]
pub async fn whoami(Auth(p): Auth) -> Json<Principal> {
    Json(p)
}

/// The OpenAPI 3.1 document of this API (any authenticated caller; offline: `cloudlet openapi`).
#[utoipa::path(get, path = "/v1/openapi.json", tag = "system", responses((status = 200, description = "OpenAPI document", body = Object)))]
pub async fn openapi(State(app): State<AppState>, Auth(_): Auth) -> Response {
    let mut resp = std::sync::LazyLock::force(&app.openapi).clone().into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
