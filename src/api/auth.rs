//! Authentication extractor, project scoping, and the audit and metrics middleware.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use super::error::{ApiError, is_json};
use crate::site::ProjectCtx;
use crate::site::auth::Principal;

/// How a request reached the daemon (inserted by the listener).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The root-only Unix socket, peer uid already checked.
    LocalSocket,
    /// Plain HTTP (loopback, tests).
    Http,
    /// HTTPS.
    Https,
    /// The portal, over the site's outbound link (`crate::link::session`): its requests act as a
    /// site admin named after the portal user (`X-Cloudlet-Portal-User`).
    PortalLink,
}

/// The header the portal names its authenticated user in, on requests it sends over the link.
pub const PORTAL_USER_HEADER: &str = "x-cloudlet-portal-user";

/// The header the portal's own outbox puller sets on its pulls over the link (value `1`); the
/// portal strips it from every request it forwards for a user, so only the puller acknowledges.
pub const OUTBOX_PULLER_HEADER: &str = "x-cloudlet-outbox-puller";

/// The name of the console session cookie.
pub const SESSION_COOKIE: &str = "cloudlet_session";

/// Read a cookie from the `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(name)?.strip_prefix('='))
}

/// What the audit middleware records for a mutating request; the extractor fills the actor.
#[derive(Debug, Clone, Default)]
pub struct AuditSlot(Arc<Mutex<Option<Principal>>>);

impl AuditSlot {
    /// Record the principal (for handlers that authenticate by themselves, such as login).
    pub fn set(&self, p: &Principal) {
        if let Ok(mut g) = self.0.lock() {
            *g = Some(p.clone());
        }
    }
}

/// The authenticated caller. Rejects with 401 when there are no valid credentials.
pub struct Auth(pub Principal);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let transport = parts.extensions.get::<Transport>().copied();
        let local = transport == Some(Transport::LocalSocket);
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(|s| s.trim().to_string());
        let session = cookie(&parts.headers, SESSION_COOKIE).map(str::to_string);
        let principal = if local {
            app.site.run(|s| s.local_admin()).await?
        } else if transport == Some(Transport::PortalLink) {
            let user = parts.headers.get(PORTAL_USER_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("admin").to_string();
            app.site.run(move |s| s.portal_admin(&user)).await?
        } else if let Some(token) = bearer {
            app.site.run(move |s| s.authenticate_token(&token)).await?
        } else if let Some(cookie) = session {
            // Cookie-authenticated writes must be JSON (or carry X-Requested-With): a cross-site
            // form cannot set either without a CORS preflight, which this API never grants.
            let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
            if !safe && !is_json(parts.headers.get(header::CONTENT_TYPE)) && !parts.headers.contains_key("x-requested-with") {
                return Err(ApiError::new(StatusCode::FORBIDDEN, "permission_denied", "cookie-authenticated writes need Content-Type: application/json"));
            }
            app.site.run(move |s| s.authenticate_session(&cookie)).await?
        } else {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "send Authorization: Bearer <token>, or log in to the console"));
        };
        if let Some(slot) = parts.extensions.get::<AuditSlot>() {
            slot.set(&principal);
        }
        Ok(Auth(principal))
    }
}

/// Resolve the project a request acts in: the caller's own, or `?project=NAME` for site admins.
pub async fn scope(app: &AppState, p: &Principal, requested: Option<&str>) -> Result<ProjectCtx, ApiError> {
    match requested {
        None => Ok(p.project_ctx()),
        Some(name) if name == p.project => Ok(p.project_ctx()),
        Some(name) if p.site_admin => {
            let name = name.to_string();
            Ok(app.site.run(move |s| s.project_by_name(&name)).await?)
        }
        Some(_) => Err(ApiError::new(StatusCode::FORBIDDEN, "permission_denied", "only site admins may act in another project").with_field("project")),
    }
}

/// Middleware: write an audit record for every mutating `/v1` request (after it ran, with its
/// status); unauthenticated ones only up to `events.anonymous_audit_per_minute`. The target is the `Location` of a created resource, or the path's last segment.
/// Bodies are never recorded, so secrets never reach the audit log.
pub async fn audit(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    if matches!(method, Method::GET | Method::HEAD | Method::OPTIONS) || !path.starts_with("/v1/") {
        return next.run(req).await;
    }
    let slot = AuditSlot::default();
    req.extensions_mut().insert(slot.clone());
    let resp = next.run(req).await;
    let principal = slot.0.lock().ok().and_then(|g| g.clone());
    // Unauthenticated requests are audited only up to a site-wide allowance per minute: a flood
    // of anonymous POSTs must not grow the database without bound.
    if principal.is_none() && !app.site.metrics().admit_anonymous_audit(app.site.config().events.anonymous_audit_per_minute) {
        return resp;
    }
    let target = resp.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).and_then(|l| l.rsplit('/').next()).map(str::to_string).or_else(|| {
        let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        (segs.len() >= 4).then(|| segs[3].to_string())
    });
    let (method, status) = (method.to_string(), resp.status().as_u16());
    if let Err(e) = app.site.run(move |s| s.record_audit(principal.as_ref(), &method, &path, status, target.as_deref())).await {
        tracing::error!(error = %e, "writing the audit record failed");
    }
    resp
}

/// Middleware: per-route request counts and latency.
pub async fn metrics(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| if req.uri().path().starts_with("/v1") { "unmatched".into() } else { "console".into() });
    let method = req.method().to_string();
    let started = Instant::now();
    let resp = next.run(req).await;
    app.site.metrics().observe_http(&route, &method, resp.status().as_u16(), started.elapsed());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "a=1; cloudlet_session=abc; b=2".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
