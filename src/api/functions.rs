//! Handlers for serverless functions: `/v1/functions` (list, get, delete) and
//! `POST /v1/functions/deploy` (upload a component as a new version).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::auth::{Auth, scope};
use super::error::{ApiError, ApiQuery, ErrorBody};
use super::resources::{ListQuery, ListResponse, ProjectQuery, created, item, list_kind};
use crate::site::auth::Role;
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
    /// Act in this project (site admins only).
    pub project: Option<String>,
}

/// Deploy a `wasi:http/proxy` component (the body, `application/wasm`) as the function's newest
/// version. A body that is not such a component is refused with 422 naming `body`.
#[utoipa::path(post, path = "/v1/functions/deploy", tag = "functions", params(DeployQuery),
    request_body(content = Vec<u8>, content_type = "application/wasm"),
    responses((status = 201, body = crate::site::Resource), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn deploy_function(State(app): State<AppState>, Auth(p): Auth, ApiQuery(q): ApiQuery<DeployQuery>, body: Body) -> Result<Response, ApiError> {
    p.require(Role::Member)?;
    let pc = scope(&app, &p, q.project.as_deref()).await?;
    let mut wasm = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")).with_field("body"))?;
        if wasm.len() + chunk.len() > MAX_COMPONENT_BYTES {
            return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", format!("a component is at most {MAX_COMPONENT_BYTES} bytes")).with_field("body"));
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

/// List the project's functions.
#[utoipa::path(get, path = "/v1/functions", tag = "functions", params(ListQuery), responses((status = 200, body = ListResponse)))]
pub async fn list_functions(State(app): State<AppState>, Auth(p): Auth, ApiQuery(q): ApiQuery<ListQuery>) -> Result<Response, ApiError> {
    p.require(Role::Viewer)?;
    let pc = scope(&app, &p, q.project.as_deref()).await?;
    list_kind(&app, Kind::Function, Some(pc), &q).await
}

/// Get a function by id or name.
#[utoipa::path(get, path = "/v1/functions/{id}", tag = "functions", params(("id" = String, Path, description = "id or name"), ProjectQuery),
    responses((status = 200, body = crate::site::Resource), (status = 404, body = ErrorBody)))]
pub async fn get_function(State(app): State<AppState>, Auth(p): Auth, Path(id): Path<String>, ApiQuery(q): ApiQuery<ProjectQuery>) -> Result<Response, ApiError> {
    p.require(Role::Viewer)?;
    let pc = scope(&app, &p, q.project.as_deref()).await?;
    Ok(item(app.site.run(move |s| s.get(Kind::Function, Some(&pc), &id)).await?))
}

/// Delete a function and every version; the gateway stops routing to it at once.
#[utoipa::path(delete, path = "/v1/functions/{id}", tag = "functions", params(("id" = String, Path, description = "id or name"), ProjectQuery),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_function(State(app): State<AppState>, Auth(p): Auth, Path(id): Path<String>, ApiQuery(q): ApiQuery<ProjectQuery>) -> Result<Response, ApiError> {
    p.require(Role::Member)?;
    let pc = scope(&app, &p, q.project.as_deref()).await?;
    app.site.run(move |s| s.delete_function(&pc, &id).map(|_| ())).await.map_err(|e: SiteError| ApiError::from(e))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
