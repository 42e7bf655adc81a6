//! `/v1/events` (list and Server-Sent Events stream) and `/v1/audit`.
//!
//! The stream subscribes to the bus *before* reading the backlog from SQLite and drops
//! duplicates by cursor, so no event committed around the moment of (re)connection is missed.
//! SSE resumption follows the WHATWG HTML spec: the client sends `Last-Event-ID`.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::{Auth, scope};
use super::error::{ApiError, ApiQuery, ErrorBody};
use crate::site::auth::Role;
use crate::site::events::{AuditRecord, MAX_EVENT_PAGE};
use crate::site::{Event, ProjectCtx, Site};

/// Query of `/v1/events`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only this project's events (site admins: any project; default all).
    pub project: Option<String>,
    /// Events after this cursor (the SSE `Last-Event-ID` header wins).
    pub after: Option<i64>,
    /// Most events in a list answer (1–1000, default 1000).
    pub limit: Option<usize>,
    /// Answer a Server-Sent Events stream (same as `Accept: text/event-stream`).
    pub stream: Option<bool>,
}

/// A page of events.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    pub items: Vec<Event>,
    /// Pass as `after` to continue.
    pub next_cursor: i64,
}

/// Events replayed to a new stream that names no cursor.
const FRESH_BACKLOG: i64 = 100;

fn sse_of(e: &Event) -> SseEvent {
    SseEvent::default().id(e.cursor.to_string()).event(e.event_type.clone()).data(serde_json::to_string(e).unwrap_or_default())
}

/// List events after a cursor, or stream them as Server-Sent Events.
#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "resume the stream after this cursor")),
    responses((status = 200, body = EventList, description = "JSON list, or text/event-stream when asked"),
        (status = 400, body = ErrorBody)))]
pub async fn events(State(app): State<AppState>, Auth(p): Auth, headers: HeaderMap, ApiQuery(q): ApiQuery<EventsQuery>) -> Result<Response, ApiError> {
    p.require(Role::Viewer)?;
    let filter = if p.site_admin && q.project.is_none() { None } else { Some(scope(&app, &p, q.project.as_deref()).await?) };
    let want_stream = q.stream == Some(true) || headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/event-stream"));
    let last_id = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .ok_or_else(|| ApiError::bad_request("Last-Event-ID must be an event cursor").with_field("Last-Event-ID"))?,
        ),
    };
    let after = last_id.or(q.after);
    if !want_stream {
        let limit = q.limit.unwrap_or(MAX_EVENT_PAGE);
        if limit == 0 || limit > MAX_EVENT_PAGE {
            return Err(ApiError::bad_request(format!("limit must be 1 to {MAX_EVENT_PAGE}")).with_field("limit"));
        }
        let after = after.unwrap_or(0);
        let items = app.site.run(move |s| s.events_after(after, filter.as_ref(), limit)).await?;
        let next_cursor = items.last().map(|e| e.cursor).unwrap_or(after);
        return Ok(Json(EventList { items, next_cursor }).into_response());
    }
    let after = match after {
        Some(a) => a,
        None => (app.site.run(|s| s.latest_cursor()).await? - FRESH_BACKLOG).max(0),
    };
    let stream = event_stream(app.site.clone(), filter, after, app.shutdown.clone());
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response())
}

/// Read every visible event after `last` from SQLite, in pages.
async fn backlog(site: &Site, filter: &Option<ProjectCtx>, last: i64) -> Result<Vec<Event>, ApiError> {
    let mut out = Vec::new();
    let mut cur = last;
    loop {
        let f = filter.clone();
        let page = site.run(move |s| s.events_after(cur, f.as_ref(), MAX_EVENT_PAGE)).await?;
        let full = page.len() == MAX_EVENT_PAGE;
        if let Some(e) = page.last() {
            cur = e.cursor;
        }
        out.extend(page);
        if !full {
            return Ok(out);
        }
    }
}

fn event_stream(
    site: Site,
    filter: Option<ProjectCtx>,
    after: i64,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> impl futures_util::Stream<Item = Result<SseEvent, Infallible>> {
    async_stream::stream! {
        let mut rx = site.subscribe();
        let mut last = after;
        let gap = {
            let s = site.clone();
            s.run(move |s| s.events_gap(after)).await.ok().flatten()
        };
        if let Some(through) = gap {
            yield Ok(SseEvent::default().event("gap").data(format!(
                "{{\"pruned_through\":{through},\"message\":\"events up to cursor {through} were removed by retention\"}}"
            )));
        }
        match backlog(&site, &filter, last).await {
            Ok(evs) => for e in evs {
                last = e.cursor;
                yield Ok(sse_of(&e));
            },
            Err(_) => return,
        }
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                r = rx.recv() => match r {
                    Ok(e) => {
                        if e.cursor <= last || !e.visible_to(filter.as_ref()) {
                            continue;
                        }
                        last = e.cursor;
                        yield Ok(sse_of(&e));
                    }
                    Err(RecvError::Lagged(_)) => match backlog(&site, &filter, last).await {
                        Ok(evs) => for e in evs {
                            last = e.cursor;
                            yield Ok(sse_of(&e));
                        },
                        Err(_) => return,
                    },
                    Err(RecvError::Closed) => return,
                }
            }
        }
    }
}

/// Query of `/v1/audit`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only this project (site admins: any; default all). Others see their own project.
    pub project: Option<String>,
    /// Most records (1–1000, default 100).
    pub limit: Option<usize>,
    /// Records with id below this (paging back).
    pub before: Option<i64>,
}

/// A page of audit records, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    pub items: Vec<AuditRecord>,
}

/// The audit log of mutating requests (project admins; site admins see every project).
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditList), (status = 403, body = ErrorBody)))]
pub async fn audit(State(app): State<AppState>, Auth(p): Auth, ApiQuery(q): ApiQuery<AuditQuery>) -> Result<Response, ApiError> {
    p.require(Role::Admin)?;
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::bad_request("limit must be 1 to 1000").with_field("limit"));
    }
    let filter = if p.site_admin && q.project.is_none() { None } else { Some(scope(&app, &p, q.project.as_deref()).await?) };
    let before = q.before;
    let items = app.site.run(move |s| s.audit(filter.as_ref(), before, limit)).await?;
    Ok(Json(AuditList { items }).into_response())
}

/// Query of `/v1/site/outbox`: the portal's cursor in each stream (what it committed, and so
/// acknowledges), how many records of each to answer, and how long to wait for a first one.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OutboxQuery {
    /// Events after this cursor (default 0).
    pub events: Option<i64>,
    /// Audit records after this id (default 0).
    pub audit: Option<i64>,
    /// Most records per stream (1–5000, default 500).
    pub limit: Option<usize>,
    /// Seconds to wait for a first record when there is none (0–30, default 0).
    pub wait_seconds: Option<u64>,
}

/// The outbox pull of the portal, over the site's link only and from the portal's own puller
/// (not a user's call the portal forwards): records of every stream after the portal's
/// cursors, which acknowledge what it committed (retention may then drop them). 403 otherwise;
/// 400 naming a bad parameter.
#[utoipa::path(get, path = "/v1/site/outbox", tag = "events", params(OutboxQuery),
    responses((status = 200, body = crate::site::outbox::OutboxPage), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn outbox(
    State(app): State<AppState>,
    transport: Option<axum::Extension<super::auth::Transport>>,
    headers: HeaderMap,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<OutboxQuery>,
) -> Result<Response, ApiError> {
    let puller = headers.get(super::auth::OUTBOX_PULLER_HEADER).is_some_and(|v| v == "1");
    if transport.map(|t| t.0) != Some(super::auth::Transport::PortalLink) || !puller {
        return Err(ApiError::new(axum::http::StatusCode::FORBIDDEN, "permission_denied", "only the portal pulls the outbox, over the site's link"));
    }
    p.require_site_admin()?;
    use crate::site::outbox::Stream;
    use crate::site::outbox::{MAX_OUTBOX_PAGE, MAX_OUTBOX_WAIT};
    let limit = q.limit.unwrap_or(500);
    if limit == 0 || limit > MAX_OUTBOX_PAGE {
        return Err(ApiError::bad_request(format!("limit must be 1 to {MAX_OUTBOX_PAGE}")).with_field("limit"));
    }
    let wait = q.wait_seconds.unwrap_or(0);
    if wait > MAX_OUTBOX_WAIT.as_secs() {
        return Err(ApiError::bad_request(format!("wait_seconds must be 0 to {}", MAX_OUTBOX_WAIT.as_secs())).with_field("wait_seconds"));
    }
    let mut after = Vec::new();
    for (s, v) in [(Stream::Events, q.events), (Stream::Audit, q.audit)] {
        let v = v.unwrap_or(0);
        if v < 0 {
            return Err(ApiError::bad_request("a cursor is 0 or more").with_field(s.name()));
        }
        after.push((s, v));
    }
    let page = app.site.outbox_pull(after, limit, Duration::from_secs(wait)).await?;
    Ok(Json(page).into_response())
}
