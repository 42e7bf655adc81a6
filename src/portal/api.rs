//! The portal's HTTP API (`/v1`, admin bearer token) and the link listener's join routes.
//!
//! Admin API: `POST /v1/join-tokens`, `GET /v1/sites`, `GET /v1/sites/{name}`,
//! `DELETE /v1/sites/{name}`, the site's streams as received (`GET /v1/sites/{name}/events`,
//! `/audit`), its API through the link (`/v1/sites/{name}/api/...`) and the fleet's events
//! (`GET /v1/events`). Link listener (TLS, `DATA/link.addr`): `POST /v1/link/join`
//! (no client certificate), `GET /v1/link/whoami` (mutual TLS). Errors are the site API's JSON
//! shape (`{"error": {"code", "message", "field"?}}`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};

use super::ca::{CaError, PortalCa};
use super::store::{CertUpdate, PortalStore, SiteRecord, StoreError, StreamState, TokenRecord};
use crate::api::error::{ApiError, ApiJson};
use crate::link::token::{JoinToken, same_secret, sha256_hex};
use crate::link::{JoinRequest, JoinResponse, RenewRequest, WhoAmI};

/// Lifetime of a site's client certificate (renewed at 2/3 of it).
pub const SITE_CERT_LIFETIME: Duration = Duration::from_secs(30 * 86_400);
/// Bounds of a join token's lifetime, seconds (default one hour).
const TOKEN_SECONDS: (u64, u64, u64) = (1, 3_600, 30 * 86_400);

/// What the portal's handlers share.
#[derive(Clone)]
pub struct Portal {
    /// The store.
    pub store: Arc<dyn PortalStore>,
    /// The CA.
    pub ca: Arc<PortalCa>,
    /// SHA-256 of the admin token, lowercase hex.
    pub admin_sha256: String,
    /// Lifetime of the client certificates it signs.
    pub cert_lifetime: Duration,
    /// The sites connected now.
    pub links: super::links::Links,
}

/// The SHA-256 (lowercase hex) of the verified client certificate of a link connection, when
/// the client offered one (set by the link listener on every request of the connection).
#[derive(Debug, Clone, Default)]
pub struct PeerCert(pub Option<String>);

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0).map(|t| t.to_rfc3339()).unwrap_or_default()
}

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::SiteExists(name) => ApiError::new(StatusCode::CONFLICT, "site_exists", format!("site {name} is already joined")).with_field("token"),
        StoreError::TokenUsed => ApiError::new(StatusCode::CONFLICT, "token_used", "the join token was already used").with_field("token"),
        StoreError::Db(m) => {
            tracing::error!(error = %m, "portal store failed");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", "the portal's database failed; try again")
        }
    }
}

fn require_admin(p: &Portal, headers: &HeaderMap) -> Result<(), ApiError> {
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
    if given.is_empty() || !same_secret(&sha256_hex(given.trim().as_bytes()), &p.admin_sha256) {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "a portal admin token is required (Authorization: Bearer …)"));
    }
    Ok(())
}

/// The admin API's routes.
pub fn admin_router(p: Portal) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/v1/join-tokens", post(create_token))
        .route("/v1/sites", get(list_sites))
        .route("/v1/events", get(fleet_events))
        .route("/v1/sites/{name}", get(get_site).delete(delete_site))
        .route("/v1/sites/{name}/events", get(site_events))
        .route("/v1/sites/{name}/audit", get(site_audit))
        .route("/v1/sites/{name}/api/{*rest}", axum::routing::any(proxy))
        .fallback(|| async { ApiError::not_found("no such route") })
        .with_state(p)
}

/// The link listener's routes.
pub fn link_router(p: Portal) -> Router {
    Router::new()
        .route("/v1/link/join", post(join))
        .route("/v1/link/whoami", get(whoami))
        .route("/v1/link/renew", post(renew))
        .fallback(|| async { ApiError::not_found("no such route") })
        .with_state(p)
}

/// Body of `POST /v1/join-tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The site's name (an RFC 1123 label).
    pub name: String,
    /// Options.
    #[serde(default)]
    pub spec: TokenSpec,
}

/// Options of a join token.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    /// Seconds until the token expires (1 to 2,592,000; default 3,600).
    pub expires_in_seconds: Option<u64>,
}

/// A new join token: its secret text is shown this once.
#[derive(Debug, Serialize)]
pub struct TokenCreated {
    /// The site it is for.
    pub name: String,
    /// The token (`CLJ1.…`).
    pub token: String,
    /// When it expires (RFC 3339).
    pub expires_at: String,
    /// The CA fingerprint it pins (`sha256:…`).
    pub ca_fingerprint: String,
}

async fn create_token(State(p): State<Portal>, headers: HeaderMap, ApiJson(b): ApiJson<TokenRequest>) -> Result<Response, ApiError> {
    require_admin(&p, &headers)?;
    crate::site::model::validate_name("name", &b.name).map_err(ApiError::from)?;
    let (lo, default, hi) = TOKEN_SECONDS;
    let secs = b.spec.expires_in_seconds.unwrap_or(default);
    if !(lo..=hi).contains(&secs) {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_argument", format!("must be from {lo} to {hi} seconds"))
            .with_field("spec.expires_in_seconds"));
    }
    if p.store.site(&b.name).await.map_err(store_error)?.is_some() {
        return Err(ApiError::new(StatusCode::CONFLICT, "site_exists", format!("site {} is already joined; remove it first", b.name)).with_field("name"));
    }
    let t = JoinToken::generate(&p.ca.fingerprint());
    let at = now();
    let record = TokenRecord {
        id: t.id.clone(),
        site: b.name.clone(),
        secret_sha256: t.secret_sha256(),
        created_at: at,
        expires_at: at + secs as i64,
        used_at: None,
        used_by_key: None,
    };
    p.store.add_token(record).await.map_err(store_error)?;
    tracing::info!(site = %b.name, token = %t.id, expires_in_seconds = secs, "join token made");
    let body =
        TokenCreated { name: b.name, token: t.to_text(), expires_at: rfc3339(at + secs as i64), ca_fingerprint: format!("sha256:{}", p.ca.fingerprint()) };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// A site as the portal lists it.
#[derive(Debug, Serialize)]
pub struct SiteView {
    /// Its name.
    pub name: String,
    /// Where it stands.
    pub status: SiteStatus,
}

/// The status of a site.
#[derive(Debug, Serialize)]
pub struct SiteStatus {
    /// `Pending` (a token waits to be used), `Connected` (its link is up) or `Disconnected`
    /// (joined, no link now).
    pub phase: &'static str,
    /// Since when its link is up (RFC 3339), when `Connected`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connected_since: Option<String>,
    /// When it joined (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub joined_at: Option<String>,
    /// End of its client certificate's validity (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_not_after: Option<String>,
    /// When its newest pending token expires (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_expires_at: Option<String>,
    /// When the portal last heard from the site (RFC 3339): now while `Connected`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
    /// What the site last reported: `version`, `node_name`, `started_at`, `counts` (resources
    /// by kind), `nodes` (name, phase, capacity), `capacity` (totals: `cpus`, `memory_bytes`,
    /// `memory_available_bytes`, `disk_bytes`, `disk_free_bytes`), `link_latency_ms` (the
    /// round-trip time of a call through the link) and `refreshed_at`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inventory: Option<serde_json::Value>,
    /// Where the portal stands in each of the site's outbox streams (`events`, `audit`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub streams: BTreeMap<String, StreamView>,
}

/// The portal's position in one of a site's streams.
#[derive(Debug, Serialize)]
pub struct StreamView {
    /// The highest sequence number the portal holds.
    pub cursor: i64,
    /// The site's newest, as of the last pull: `latest - cursor` records are still on their way.
    pub latest: i64,
    /// Records the site dropped before sending them (its on-disk bound), by its count.
    pub lost: i64,
    /// Records the portal knows it never got (the stream's gaps).
    pub missing: i64,
}

fn stream_views(states: &[StreamState], site: &str) -> BTreeMap<String, StreamView> {
    states
        .iter()
        .filter(|s| s.site == site)
        .map(|s| (s.stream.clone(), StreamView { cursor: s.cursor, latest: s.latest, lost: s.lost, missing: s.missing }))
        .collect()
}

/// What a joined site's view is made of besides its record.
struct Known {
    streams: Vec<StreamState>,
    inventories: Vec<(String, i64, Option<String>)>,
}

impl Known {
    async fn load(p: &Portal) -> Result<Known, ApiError> {
        Ok(Known { streams: p.store.stream_states(None).await.map_err(store_error)?, inventories: p.store.inventories().await.map_err(store_error)? })
    }
}

fn joined_view(p: &Portal, s: &SiteRecord, known: &Known) -> SiteView {
    let since = p.links.connected_since(&s.name).map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339());
    let inv = known.inventories.iter().find(|(n, _, _)| *n == s.name);
    let last_seen = if since.is_some() { Some(rfc3339(now())) } else { inv.map(|(_, t, _)| rfc3339(*t)) };
    let inventory = inv.and_then(|(_, _, b)| b.as_deref()).and_then(|b| serde_json::from_str(b).ok());
    SiteView {
        name: s.name.clone(),
        status: SiteStatus {
            phase: if since.is_some() { "Connected" } else { "Disconnected" },
            connected_since: since,
            joined_at: Some(rfc3339(s.joined_at)),
            certificate_not_after: Some(rfc3339(s.cert_not_after)),
            token_expires_at: None,
            last_seen,
            inventory,
            streams: stream_views(&known.streams, &s.name),
        },
    }
}

fn pending_view(name: String, expires: i64) -> SiteView {
    SiteView {
        name,
        status: SiteStatus {
            phase: "Pending",
            connected_since: None,
            joined_at: None,
            certificate_not_after: None,
            token_expires_at: Some(rfc3339(expires)),
            last_seen: None,
            inventory: None,
            streams: BTreeMap::new(),
        },
    }
}

async fn list_sites(State(p): State<Portal>, headers: HeaderMap) -> Result<Json<serde_json::Value>, ApiError> {
    require_admin(&p, &headers)?;
    let known = Known::load(&p).await?;
    let mut items: Vec<SiteView> = p.store.sites().await.map_err(store_error)?.iter().map(|s| joined_view(&p, s, &known)).collect();
    items.extend(p.store.pending(now()).await.map_err(store_error)?.into_iter().map(|(n, e)| pending_view(n, e)));
    items.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(serde_json::json!({ "items": items })))
}

async fn get_site(State(p): State<Portal>, headers: HeaderMap, Path(name): Path<String>) -> Result<Json<SiteView>, ApiError> {
    require_admin(&p, &headers)?;
    if let Some(s) = p.store.site(&name).await.map_err(store_error)? {
        return Ok(Json(joined_view(&p, &s, &Known::load(&p).await?)));
    }
    let pending = p.store.pending(now()).await.map_err(store_error)?;
    pending.into_iter().find(|(n, _)| *n == name).map(|(n, e)| Json(pending_view(n, e))).ok_or_else(|| ApiError::not_found(format!("site {name:?} not found")))
}

async fn delete_site(State(p): State<Portal>, headers: HeaderMap, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    require_admin(&p, &headers)?;
    if !p.store.remove_site(&name).await.map_err(store_error)? {
        return Err(ApiError::not_found(format!("site {name:?} not found")));
    }
    tracing::info!(site = %name, "site removed; its certificate is no longer accepted");
    super::links::event(p.store.as_ref(), &name, "removed", "the site was removed; its certificate is no longer accepted").await;
    // Its live link ends too: the certificate it was opened with no longer names a site.
    p.links.drop_site(&name);
    Ok(StatusCode::NO_CONTENT)
}

/// Any call to a site's API, `/v1/sites/{name}/api/REST` → the site's `/v1/REST` (query kept),
/// over its link, as a site admin named `portal:admin` there. Bodies and answers are streamed,
/// so event streams (SSE) follow. Errors: 404 for an unknown site, 503 `site_disconnected`, 502
/// `link_failed`; the site's own answers pass through unchanged.
async fn proxy(State(p): State<Portal>, Path((name, rest)): Path<(String, String)>, req: axum::extract::Request) -> Result<Response, ApiError> {
    require_admin(&p, req.headers())?;
    if p.store.site(&name).await.map_err(store_error)?.is_none() {
        return Err(ApiError::not_found(format!("site {name:?} not found")));
    }
    let (mut parts, body) = req.into_parts();
    let query = parts.uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    parts.uri = format!("/v1/{rest}{query}").parse().map_err(|_| ApiError::bad_request("the path cannot be forwarded").with_field("path"))?;
    if !matches!(parts.method, axum::http::Method::GET | axum::http::Method::HEAD) {
        tracing::info!(site = %name, method = %parts.method, path = %parts.uri.path(), "proxied a change to a site");
    }
    p.links.forward(&name, "admin", axum::http::Request::from_parts(parts, body)).await
}

/// Query of `GET /v1/sites/{name}/events` and `/audit`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Records with a sequence number above this (default 0).
    pub after: Option<i64>,
    /// Most records (1–1000, default 1000).
    pub limit: Option<usize>,
}

/// One record of a site's stream as the portal holds it.
#[derive(Debug, Serialize)]
pub struct StreamItem {
    /// Its sequence number in the site's stream (unique per site and stream).
    pub seq: i64,
    /// When the site wrote it (RFC 3339).
    pub time: String,
    /// The record as the site's API shows it.
    pub record: serde_json::Value,
}

/// The portal's own events (sites joined, connected, disconnected, renewed, removed), oldest
/// first after `after`.
async fn fleet_events(
    State(p): State<Portal>,
    headers: HeaderMap,
    crate::api::error::ApiQuery(q): crate::api::error::ApiQuery<StreamQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_admin(&p, &headers)?;
    let limit = q.limit.unwrap_or(1000);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::bad_request("limit must be 1 to 1000").with_field("limit"));
    }
    let after = q.after.unwrap_or(0);
    let items: Vec<serde_json::Value> = p
        .store
        .events(after, limit)
        .await
        .map_err(store_error)?
        .into_iter()
        .map(|e| serde_json::json!({ "cursor": e.cursor, "time": e.time, "site": e.site, "type": e.event_type, "message": e.message }))
        .collect();
    let next = items.last().and_then(|e| e["cursor"].as_i64()).unwrap_or(after);
    Ok(Json(serde_json::json!({ "items": items, "next_cursor": next })))
}

type StreamArgs = (State<Portal>, HeaderMap, Path<String>, crate::api::error::ApiQuery<StreamQuery>);

async fn site_events(
    State(p): State<Portal>,
    h: HeaderMap,
    n: Path<String>,
    q: crate::api::error::ApiQuery<StreamQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    site_stream((State(p), h, n, q), "events").await
}

async fn site_audit(
    State(p): State<Portal>,
    h: HeaderMap,
    n: Path<String>,
    q: crate::api::error::ApiQuery<StreamQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    site_stream((State(p), h, n, q), "audit").await
}

/// The records the portal received of one of a site's streams, oldest first, with the gaps
/// the site dropped before sending them (`after`, `through`].
async fn site_stream(args: StreamArgs, stream: &'static str) -> Result<Json<serde_json::Value>, ApiError> {
    let (State(p), headers, Path(name), crate::api::error::ApiQuery(q)) = args;
    require_admin(&p, &headers)?;
    let limit = q.limit.unwrap_or(1000);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::bad_request("limit must be 1 to 1000").with_field("limit"));
    }
    let after = q.after.unwrap_or(0);
    if p.store.site(&name).await.map_err(store_error)?.is_none() {
        return Err(ApiError::not_found(format!("site {name:?} not found")));
    }
    let rows = p.store.records(&name, stream, after, limit).await.map_err(store_error)?;
    let gaps = p.store.gaps(&name, stream).await.map_err(store_error)?;
    let next = rows.last().map(|r| r.seq).unwrap_or(after);
    let items: Vec<StreamItem> =
        rows.into_iter().map(|r| StreamItem { seq: r.seq, time: r.time, record: serde_json::from_str(&r.body).unwrap_or(serde_json::Value::Null) }).collect();
    let gaps: Vec<serde_json::Value> = gaps.into_iter().map(|(a, t)| serde_json::json!({ "after": a, "through": t })).collect();
    Ok(Json(serde_json::json!({ "items": items, "next_cursor": next, "gaps": gaps })))
}

/// Sign a client certificate for `site` from `csr`: 400 naming `csr` for a bad request.
fn sign(p: &Portal, csr: &str, site: &str) -> Result<super::ca::Issued, ApiError> {
    p.ca.issue_site_cert(csr, site, p.cert_lifetime).map_err(|e| match e {
        CaError::BadCsr(m) => ApiError::bad_request(format!("the certificate signing request is not valid: {m}")).with_field("csr"),
        other => {
            tracing::error!(error = %other, "signing a site certificate failed");
            ApiError::internal("signing the certificate failed")
        }
    })
}

fn refused(code: &'static str, message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, message).with_field("token")
}

async fn join(State(p): State<Portal>, ApiJson(b): ApiJson<JoinRequest>) -> Result<Json<JoinResponse>, ApiError> {
    let t = JoinToken::parse(&b.token).map_err(|e| ApiError::bad_request(e.to_string()).with_field("token"))?;
    if !same_secret(&t.ca_sha256, &p.ca.fingerprint()) {
        return Err(refused("token_wrong_portal", "the join token names another portal's CA"));
    }
    // Unknown id and wrong secret answer alike, so a guess learns nothing about which ids exist.
    let record = p.store.token(&t.id).await.map_err(store_error)?;
    let Some(record) = record.filter(|r| same_secret(&r.secret_sha256, &t.secret_sha256())) else {
        tracing::warn!(token = %t.id, "join refused: unknown token or wrong secret");
        return Err(refused("token_invalid", "the join token is not valid for this portal"));
    };
    let issued = sign(&p, &b.csr, &record.site)?;
    if let Some(used_by) = &record.used_by_key {
        // The same key again (the site's earlier answer was lost): answer what it was given.
        if let Some(site) = p.store.site(&record.site).await.map_err(store_error)?
            && same_secret(used_by, &issued.key_sha256)
            && site.key_sha256 == issued.key_sha256
        {
            return Ok(Json(JoinResponse { site: site.name, certificate: site.cert_pem, ca: p.ca.pem().to_string(), not_after: rfc3339(site.cert_not_after) }));
        }
        return Err(ApiError::new(StatusCode::CONFLICT, "token_used", "the join token was already used").with_field("token"));
    }
    if record.expires_at <= now() {
        return Err(refused("token_expired", "the join token has expired; make a new one"));
    }
    let site = SiteRecord {
        name: record.site.clone(),
        joined_at: now(),
        cert_pem: issued.pem.clone(),
        cert_sha256: issued.sha256.clone(),
        cert_serial: issued.serial.clone(),
        cert_not_after: issued.not_after,
        key_sha256: issued.key_sha256.clone(),
        prev_cert_sha256: None,
    };
    p.store.register(&record.id, now(), site).await.map_err(store_error)?;
    tracing::info!(site = %record.site, serial = %issued.serial, "site joined");
    super::links::event(p.store.as_ref(), &record.site, "joined", "the site joined with a join token").await;
    Ok(Json(JoinResponse { site: record.site, certificate: issued.pem, ca: p.ca.pem().to_string(), not_after: rfc3339(issued.not_after) }))
}

/// The next certificate of the site whose certificate the connection presented, for the same
/// key. Made with the previous certificate (the site lost the last answer), it sends the
/// current one again. 401 without a certificate; 403 `certificate_revoked` for one of no joined
/// site; 400 for a bad CSR; 422 `key_changed` for a CSR of another key.
async fn renew(State(p): State<Portal>, Extension(peer): Extension<PeerCert>, ApiJson(b): ApiJson<RenewRequest>) -> Result<Json<JoinResponse>, ApiError> {
    let Some(fp) = peer.0 else {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "a site client certificate is required"));
    };
    let Some(site) = p.store.site_by_cert(&fp).await.map_err(store_error)? else {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "certificate_revoked", "this certificate belongs to no joined site (removed, or replaced)"));
    };
    let answer = |s: &SiteRecord| JoinResponse {
        site: s.name.clone(),
        certificate: s.cert_pem.clone(),
        ca: p.ca.pem().to_string(),
        not_after: rfc3339(s.cert_not_after),
    };
    let issued = sign(&p, &b.csr, &site.name)?;
    if !same_secret(&issued.key_sha256, &site.key_sha256) {
        return Err(
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "key_changed", "a renewal keeps the site's key; join again for a new one").with_field("csr")
        );
    }
    if site.cert_sha256 != fp {
        // The previous certificate: the site never stored the answer of its last renewal.
        return Ok(Json(answer(&site)));
    }
    let update = CertUpdate { cert_pem: issued.pem, cert_sha256: issued.sha256, cert_serial: issued.serial.clone(), cert_not_after: issued.not_after };
    if !p.store.renew_cert(&site.name, &fp, update).await.map_err(store_error)? {
        return Err(ApiError::new(StatusCode::CONFLICT, "renewal_raced", "another renewal of this site just happened; try again"));
    }
    let site = p.store.site(&site.name).await.map_err(store_error)?.ok_or_else(|| ApiError::not_found("the site was removed"))?;
    tracing::info!(site = %site.name, serial = %issued.serial, "site certificate renewed");
    super::links::event(
        p.store.as_ref(),
        &site.name,
        "certificate_renewed",
        &format!("certificate {} valid until {}", issued.serial, rfc3339(site.cert_not_after)),
    )
    .await;
    Ok(Json(answer(&site)))
}

async fn whoami(State(p): State<Portal>, Extension(peer): Extension<PeerCert>) -> Result<Json<WhoAmI>, ApiError> {
    let Some(fp) = peer.0 else {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "a site client certificate is required"));
    };
    match p.store.site_by_cert(&fp).await.map_err(store_error)? {
        Some(s) => Ok(Json(WhoAmI { site: s.name })),
        None => Err(ApiError::new(StatusCode::FORBIDDEN, "certificate_revoked", "this certificate belongs to no joined site (removed, or replaced)")),
    }
}
