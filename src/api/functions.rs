//! Handlers for serverless functions: `/v1/functions` (list, get, update, delete),
//! `POST /v1/functions/deploy` (a component uploaded or taken from a bucket becomes the newest
//! version), and per function `logs`, `metrics` and `invoke` (a test request from the console).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::{Auth, scope};
use super::error::{ApiError, ApiJson, ApiQuery, ErrorBody};
use super::kinds::{kind_patch, kind_read_delete};
use super::resources::{ProjectQuery, created};
use crate::site::auth::{Principal, Role};
use crate::site::function_metrics::StatsView;
use crate::site::functions::{FunctionSpec, Route};
use crate::site::{Kind, SiteError};

/// Largest component accepted, bytes.
pub const MAX_COMPONENT_BYTES: usize = 64 << 20;

/// Query of a deploy: the function's name and, on its first deploy, its settings.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeployQuery {
    /// The function's name (created on its first deploy).
    pub name: String,
    /// Path prefix the gateway routes to it (first deploy; default `/`).
    pub route: Option<String>,
    /// Only requests for this host (first deploy).
    pub host: Option<String>,
    /// Memory limit per instance, MiB (first deploy; default 64).
    pub memory_mib: Option<u32>,
    /// CPU time per request, ms (first deploy; default 1000).
    pub timeout_ms: Option<u32>,
    /// Most concurrent requests (first deploy; default 16).
    pub max_concurrency: Option<u32>,
    /// Largest request body, bytes (first deploy; default 1 MiB).
    pub max_body_bytes: Option<u64>,
    /// Take the component from this bucket of the project instead of the body.
    pub bucket: Option<String>,
    /// The object's key in `bucket`.
    pub key: Option<String>,
    /// Act in this project (site admins only).
    pub project: Option<String>,
}

async fn component_from_bucket(app: &AppState, p: &Principal, bucket: String, key: Option<String>, project: Option<&str>) -> Result<Vec<u8>, ApiError> {
    let key =
        key.ok_or_else(|| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_argument", "key names the object holding the component").with_field("key"))?;
    let b = super::buckets::bucket_of(app, p, bucket, project, Role::Member).await?;
    let (row, files) = app.site.open_object(&b, &key).await?;
    if row.size as usize > MAX_COMPONENT_BYTES {
        return Err(
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", format!("a component is at most {MAX_COMPONENT_BYTES} bytes")).with_field("key")
        );
    }
    let mut wasm = Vec::with_capacity(row.size as usize);
    let mut stream = std::pin::pin!(files.stream(0, row.size as u64));
    while let Some(chunk) = stream.next().await {
        wasm.extend_from_slice(&chunk.map_err(SiteError::io_doing(format!("reading {key}")))?);
    }
    Ok(wasm)
}

/// Deploy a `wasi:http/proxy` component (the body, `application/wasm`, or the object `key` of
/// `bucket`) as the function's newest version; its settings come from the query on the first
/// deploy and stay as they are on later ones. A component that is not valid, or does not export
/// `wasi:http/incoming-handler`, is refused with 422 naming `body` and the reason.
#[utoipa::path(post, path = "/v1/functions/deploy", tag = "functions", params(DeployQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the component (`application/wasm` is accepted too)"),
    responses((status = 201, body = crate::site::Resource), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn deploy_function(State(app): State<AppState>, Auth(p): Auth, ApiQuery(q): ApiQuery<DeployQuery>, body: Body) -> Result<Response, ApiError> {
    p.require(Role::Member)?;
    let pc = scope(&app, &p, q.project.as_deref()).await?;
    let mut wasm = Vec::new();
    let mut stream = body.into_data_stream();
    if let Some(b) = q.bucket {
        if stream.next().await.is_some() {
            return Err(
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_argument", "send either a body or a bucket and key, not both").with_field("bucket")
            );
        }
        wasm = component_from_bucket(&app, &p, b, q.key, q.project.as_deref()).await?;
    }
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")).with_field("body"))?;
        if wasm.len() + chunk.len() > MAX_COMPONENT_BYTES {
            return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", format!("a component is at most {MAX_COMPONENT_BYTES} bytes"))
                .with_field("body"));
        }
        wasm.extend_from_slice(&chunk);
    }
    let mut spec = serde_json::json!({});
    if let Some(r) = q.route {
        spec["route"] = r.into();
    }
    if let Some(h) = q.host {
        spec["host"] = h.into();
    }
    if let Some(m) = q.memory_mib {
        spec["memory_mib"] = m.into();
    }
    if let Some(t) = q.timeout_ms {
        spec["timeout_ms"] = t.into();
    }
    if let Some(c) = q.max_concurrency {
        spec["max_concurrency"] = c.into();
    }
    if let Some(b) = q.max_body_bytes {
        spec["max_body_bytes"] = b.into();
    }
    let name = q.name;
    let r = app.site.run(move |s| s.deploy_function(&pc, &name, Some(spec), &wasm)).await?;
    Ok(created(Kind::Function, &r))
}

kind_read_delete!(
    FunctionSpec,
    "/v1/functions",
    "/v1/functions/{id}",
    "functions",
    list_functions,
    get_function,
    delete_function,
    "Delete a function and every version; the gateway stops routing to it at once."
);
kind_patch!(
    FunctionSpec,
    "/v1/functions/{id}",
    "functions",
    update_function,
    "Change a function (`spec` is a JSON merge patch): route, host, env, memory_mib, timeout_ms, max_concurrency, max_body_bytes, allowed_hosts, or `version` to roll back to a kept version. Takes effect from the next request. `If-Match: <generation>` guards against lost updates."
);

async fn route_of(app: &AppState, p: &Principal, id: String, project: Option<&str>, role: Role) -> Result<std::sync::Arc<Route>, ApiError> {
    p.require(role)?;
    let pc = scope(app, p, project).await?;
    let r = app.site.run(move |s| s.get(Kind::Function, Some(&pc), &id)).await?;
    let fs = app.site.functions()?;
    fs.route_of(&r.id).ok_or_else(|| SiteError::Conflict(format!("function {} is not loaded: see the daemon's log", r.name)).into())
}

/// Query of `GET /v1/functions/{id}/logs`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FunctionLogsQuery {
    /// Only the last this many lines (default 200, at most 10,000).
    pub tail: Option<usize>,
    /// Keep the response open and send new lines as they come.
    #[serde(default)]
    pub follow: bool,
    /// Act in this project (site admins only).
    pub project: Option<String>,
}

/// The function's log as text lines `TIME STREAM TEXT` (stream `stdout`, `stderr` or `host`,
/// the gateway's own lines about failed requests); with `follow`, new lines as they come.
#[utoipa::path(get, path = "/v1/functions/{id}/logs", tag = "functions", params(("id" = String, Path, description = "id or name"), FunctionLogsQuery),
    responses((status = 200, content_type = "text/plain", body = String), (status = 404, body = ErrorBody)))]
pub async fn function_logs(
    State(app): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<FunctionLogsQuery>,
) -> Result<Response, ApiError> {
    let route = route_of(&app, &p, id, q.project.as_deref(), Role::Viewer).await?;
    let tail = q.tail.unwrap_or(200);
    if tail > 10_000 {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_argument", "tail is at most 10000").with_field("tail"));
    }
    let mut rx = route.log.subscribe();
    let log = route.log.clone();
    let old = tokio::task::spawn_blocking(move || log.tail(tail)).await.map_err(|e| SiteError::Internal(e.to_string()))?;
    let first: String = old.iter().map(|l| format!("{l}\n")).collect();
    let headers = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if !q.follow {
        return Ok((headers, first).into_response());
    }
    let (site, id, mut shutdown) = (app.site.clone(), route.id.clone(), app.shutdown.clone());
    let stream = async_stream::stream! {
        yield Ok::<_, std::io::Error>(first);
        loop {
            tokio::select! {
                l = rx.recv() => match l {
                    Ok(l) => yield Ok(l.to_string()),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => yield Ok(format!("[{n} lines skipped: the reader fell behind]\n")),
                    Err(_) => break,
                },
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    if site.functions().map(|f| f.route_of(&id).is_none()).unwrap_or(true) {
                        break;
                    }
                },
                _ = shutdown.changed() => break,
            }
        }
    };
    Ok((headers, Body::from_stream(stream)).into_response())
}

/// A function's metrics and the version it serves.
#[derive(Debug, Serialize, ToSchema)]
pub struct FunctionMetrics {
    /// The version served.
    pub version: u32,
    /// Counts and latency since the daemon started.
    #[serde(flatten)]
    pub stats: StatsView,
}

/// Invocation counts by outcome, cold and warm starts, and the latency histogram (since the
/// daemon started), for the console's chart.
#[utoipa::path(get, path = "/v1/functions/{id}/metrics", tag = "functions", params(("id" = String, Path, description = "id or name"), ProjectQuery),
    responses((status = 200, body = FunctionMetrics), (status = 404, body = ErrorBody)))]
pub async fn function_metrics(
    State(app): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ProjectQuery>,
) -> Result<Response, ApiError> {
    let route = route_of(&app, &p, id, q.project.as_deref(), Role::Viewer).await?;
    Ok(axum::Json(FunctionMetrics { version: route.version, stats: route.stats.view() }).into_response())
}

/// Body of `POST /v1/functions/{id}/invoke`: the test request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvokeRequest {
    /// HTTP method (default `GET`).
    #[serde(default = "get")]
    pub method: String,
    /// Path and query (default `/`).
    #[serde(default = "slash")]
    pub path: String,
    /// Request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Request body, as text.
    #[serde(default)]
    pub body: String,
}

fn get() -> String {
    "GET".into()
}
fn slash() -> String {
    "/".into()
}

/// What the function answered to a test request.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvokeResponse {
    /// The status (the gateway's own 502, 503, 504 or 413 when the function failed).
    pub status: u16,
    /// Response headers (a repeated header's values joined with `, `).
    pub headers: BTreeMap<String, String>,
    /// The body as text (lossy UTF-8), at most 1 MiB.
    pub body: String,
    /// The body was longer than 1 MiB and was cut.
    pub truncated: bool,
    /// Milliseconds until the whole body was read.
    pub ms: f64,
}

/// Send a test request to the function, as the gateway would (same limits, metrics and log),
/// and return its answer.
#[utoipa::path(post, path = "/v1/functions/{id}/invoke", tag = "functions", params(("id" = String, Path, description = "id or name"), ProjectQuery),
    request_body = InvokeRequest, responses((status = 200, body = InvokeResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn invoke_function(
    State(app): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ProjectQuery>,
    ApiJson(b): ApiJson<InvokeRequest>,
) -> Result<Response, ApiError> {
    let route = route_of(&app, &p, id, q.project.as_deref(), Role::Member).await?;
    let invalid = |field: &str, m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_argument", m).with_field(field);
    let method = hyper::Method::from_bytes(b.method.as_bytes()).map_err(|e| invalid("method", e.to_string()))?;
    if !b.path.starts_with('/') {
        return Err(invalid("path", "a path starting with '/'".into()));
    }
    let uri: hyper::Uri = format!("http://function.invoke{}", b.path).parse().map_err(|e: hyper::http::uri::InvalidUri| invalid("path", e.to_string()))?;
    let mut req = hyper::Request::builder().method(method).uri(uri);
    for (k, v) in &b.headers {
        let name = hyper::header::HeaderName::from_bytes(k.as_bytes()).map_err(|e| invalid("headers", format!("{k}: {e}")))?;
        let value = hyper::header::HeaderValue::from_str(v).map_err(|e| invalid("headers", format!("{k}: {e}")))?;
        req = req.header(name, value);
    }
    let len = b.body.len();
    let req = req.header(hyper::header::CONTENT_LENGTH, len).body(Full::new(Bytes::from(b.body))).map_err(|e| invalid("headers", e.to_string()))?;
    let fs = app.site.functions()?;
    let t0 = std::time::Instant::now();
    let resp = fs.serve(&route, req).await;
    let (parts, mut body) = resp.into_parts();
    let mut out = Vec::new();
    let mut truncated = false;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Ok(data) = frame.into_data() {
            let room = (1usize << 20).saturating_sub(out.len());
            truncated |= data.len() > room;
            out.extend_from_slice(&data[..data.len().min(room)]);
            if truncated {
                break;
            }
        }
    }
    let mut headers = BTreeMap::new();
    for (k, v) in &parts.headers {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        headers.entry(k.to_string()).and_modify(|e: &mut String| *e = format!("{e}, {v}")).or_insert(v);
    }
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    Ok(axum::Json(InvokeResponse { status: parts.status.as_u16(), headers, body: String::from_utf8_lossy(&out).into_owned(), truncated, ms }).into_response())
}
