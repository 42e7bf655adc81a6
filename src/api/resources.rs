//! Handlers for the resource collections of the site daemon: projects, tokens, users, nodes and
//! operations. Each parses, authorizes, calls the site service, and maps the result.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::{Auth, scope};
use super::error::{ApiError, ApiJson, ApiQuery, ErrorBody};
use crate::site::auth::{Principal, Role, TokenSpec, UserCreateSpec};
use crate::site::projects::ProjectSpec;
use crate::site::{Kind, ProjectCtx, Resource, nodes, projects};

/// Most items in one list page.
pub const MAX_PAGE: usize = 10_000;

/// Query of list calls.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Act in this project (site admins only; others may name only their own).
    pub project: Option<String>,
    /// At most this many items (1–10000, default 10000).
    pub limit: Option<usize>,
    /// Continue after the page that returned this token.
    pub page_token: Option<String>,
    /// Only items with this label, as `key=value`.
    pub label: Option<String>,
}

/// Query naming a project.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ProjectQuery {
    /// Act in this project (site admins only; others may name only their own).
    pub project: Option<String>,
}

/// A page of resources.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListResponse {
    pub items: Vec<Resource>,
    /// Pass as `page_token` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// Body of `PATCH`: new labels (replacing all) and/or an RFC 7386 merge patch of the spec.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    pub labels: Option<BTreeMap<String, String>>,
    #[schema(value_type = Object)]
    pub spec: Option<serde_json::Value>,
}

/// Body of every create of a project-scoped kind: name, labels, and the kind's spec (its
/// `<Kind>Spec` schema: `VpcSpec`, `VolumeSpec`, `ContainerSpec`, ...).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub spec: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

/// Body of `POST /v1/projects`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectCreate {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub spec: ProjectSpec,
}

/// Body of `POST /v1/tokens`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenCreate {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub spec: TokenSpec,
}

/// Answer of `POST /v1/tokens`: the token plus its secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenCreated {
    #[serde(flatten)]
    pub token: Resource,
    /// The bearer secret (`clt_...`). It is not stored and cannot be shown again.
    pub secret: String,
}

/// Body of `POST /v1/users`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserCreate {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub spec: UserCreateSpec,
}

/// A JSON response with `status` and a `Location` header.
pub fn with_location(status: StatusCode, location: String, body: impl Serialize) -> Response {
    let mut resp = (status, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// 201 with `Location` and the resource.
pub fn created(kind: Kind, r: &Resource) -> Response {
    with_location(StatusCode::CREATED, format!("/v1/{}/{}", kind.plural(), r.id), r)
}

/// 202 with `Location` of the operation and the operation.
pub fn accepted(op: &Resource) -> Response {
    with_location(StatusCode::ACCEPTED, format!("/v1/operations/{}", op.id), op)
}

/// 200 with `ETag: "<generation>"` and the resource.
pub fn item(r: Resource) -> Response {
    let etag = format!("\"{}\"", r.generation);
    let mut resp = Json(r).into_response();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

/// Parse `If-Match: "<generation>"` (also bare or weak `W/"n"`). Errors: 400 naming `If-Match`.
pub fn if_match(h: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(v) = h.get(header::IF_MATCH) else { return Ok(None) };
    let s = v.to_str().unwrap_or("").trim();
    let s = s.strip_prefix("W/").unwrap_or(s).trim_matches('"');
    s.parse::<i64>().map(Some).map_err(|_| ApiError::bad_request("If-Match must be a generation, e.g. \"3\"").with_field("If-Match"))
}

/// List `kind` in `project` (None = all projects), applying limit, page token and label filter.
pub async fn list_kind(app: &AppState, kind: Kind, project: Option<ProjectCtx>, q: &ListQuery) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(MAX_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_argument", format!("limit must be 1 to {MAX_PAGE}")).with_field("limit"));
    }
    let after = match &q.page_token {
        None => None,
        Some(t) => Some(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| ApiError::bad_request("page_token is not one this API issued").with_field("page_token"))?,
        ),
    };
    let label = match &q.label {
        None => None,
        Some(l) => Some(
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| ApiError::bad_request("label must be key=value").with_field("label"))?,
        ),
    };
    let mut items = app.site.run(move |s| s.list(kind, project.as_ref(), after.as_deref(), limit + 1)).await?;
    let next_page_token = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|r| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r.name.as_bytes()))
    } else {
        None
    };
    if let Some((k, v)) = label {
        items.retain(|r| serde_json::from_str::<BTreeMap<String, String>>(r.labels.get()).is_ok_and(|m| m.get(&k) == Some(&v)));
    }
    Ok(Json(ListResponse { items, next_page_token }).into_response())
}

/// List a project-scoped kind that only project admins manage (tokens, users).
async fn admin_list(app: &AppState, p: &Principal, kind: Kind, q: &ListQuery) -> Result<Response, ApiError> {
    p.require(Role::Admin)?;
    let pc = scope(app, p, q.project.as_deref()).await?;
    list_kind(app, kind, Some(pc), q).await
}

/// Get one item of a project-scoped kind that only project admins manage.
async fn admin_get(app: &AppState, p: &Principal, kind: Kind, id: String, q: &ProjectQuery) -> Result<Response, ApiError> {
    p.require(Role::Admin)?;
    let pc = scope(app, p, q.project.as_deref()).await?;
    Ok(item(app.site.run(move |s| s.get(kind, Some(&pc), &id)).await?))
}

/// Delete one item of a project-scoped kind that only project admins manage.
async fn admin_delete(app: &AppState, p: &Principal, kind: Kind, id: String, q: &ProjectQuery) -> Result<Response, ApiError> {
    p.require(Role::Admin)?;
    let pc = scope(app, p, q.project.as_deref()).await?;
    app.site.run(move |s| s.delete(kind, Some(&pc), &id)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------------------------------------------------------------- projects

/// List projects: every project for site admins, the caller's own otherwise.
#[utoipa::path(get, path = "/v1/projects", tag = "projects", params(ListQuery),
    responses((status = 200, body = ListResponse), (status = 401, body = ErrorBody)))]
pub async fn list_projects(State(app): State<AppState>, Auth(p): Auth, ApiQuery(q): ApiQuery<ListQuery>) -> Result<Response, ApiError> {
    if p.site_admin {
        return list_kind(&app, Kind::Project, None, &q).await;
    }
    let own = p.project_ctx();
    let r = app.site.run(move |s| s.get(Kind::Project, None, &own.id)).await?;
    Ok(Json(ListResponse { items: vec![r], next_page_token: None }).into_response())
}

/// Create a project (site admins).
#[utoipa::path(post, path = "/v1/projects", tag = "projects", request_body = ProjectCreate,
    responses((status = 201, body = Resource), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_project(State(app): State<AppState>, Auth(p): Auth, ApiJson(b): ApiJson<ProjectCreate>) -> Result<Response, ApiError> {
    p.require_site_admin()?;
    let spec = serde_json::to_value(&b.spec).map_err(|e| ApiError::internal(e.to_string()))?;
    let r = app.site.run(move |s| s.create_project(&b.name, &b.labels, spec)).await?;
    Ok(created(Kind::Project, &r))
}

/// Get a project (site admins: any; others: their own).
#[utoipa::path(get, path = "/v1/projects/{id}", tag = "projects", params(("id" = String, Path, description = "id or name")),
    responses((status = 200, body = Resource), (status = 404, body = ErrorBody)))]
pub async fn get_project(State(app): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> Result<Response, ApiError> {
    let asked = id.clone();
    let r = app.site.run(move |s| s.get(Kind::Project, None, &id)).await?;
    // Another project is not found under the name or id it was asked by: its name stays hidden.
    if !p.site_admin && r.id != p.project_id {
        return Err(ApiError::not_found(format!("project {asked:?} not found")));
    }
    Ok(item(r))
}

/// Update a project's labels or spec (site admins).
#[utoipa::path(patch, path = "/v1/projects/{id}", tag = "projects", request_body = UpdateRequest,
    params(("id" = String, Path, description = "id or name"), ("If-Match" = Option<String>, Header, description = "expected generation")),
    responses((status = 200, body = Resource), (status = 409, body = ErrorBody)))]
pub async fn update_project(
    State(app): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(b): ApiJson<UpdateRequest>,
) -> Result<Response, ApiError> {
    p.require_site_admin()?;
    let gen_ = if_match(&headers)?;
    let r = app
        .site
        .run(move |s| {
            s.update(Kind::Project, None, &id, gen_, b.labels.as_ref(), b.spec.as_ref(), &|_, v| projects::validate_spec(v, &s.config().container.host_paths))
        })
        .await?;
    Ok(item(r))
}

/// Delete a project (site admins): answers the operation that removes its tokens, users and
/// files. Projects that still own workloads are refused with 409.
#[utoipa::path(delete, path = "/v1/projects/{id}", tag = "projects", params(("id" = String, Path, description = "id or name")),
    responses((status = 202, body = Resource), (status = 409, body = ErrorBody)))]
pub async fn delete_project(State(app): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> Result<Response, ApiError> {
    p.require_site_admin()?;
    let op = app.site.run(move |s| s.delete_project(&id)).await?;
    Ok(accepted(&op))
}

// ---------------------------------------------------------------- tokens

/// List the project's API tokens (project admins).
#[utoipa::path(get, path = "/v1/tokens", tag = "tokens", params(ListQuery), responses((status = 200, body = ListResponse)))]
pub async fn list_tokens(State(app): State<AppState>, Auth(p): Auth, ApiQuery(q): ApiQuery<ListQuery>) -> Result<Response, ApiError> {
    admin_list(&app, &p, Kind::Token, &q).await
}

/// Create an API token (project admins). The answer carries the secret once.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", params(ProjectQuery), request_body = TokenCreate,
    responses((status = 201, body = TokenCreated), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_token(
    State(app): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<ProjectQuery>,
    ApiJson(b): ApiJson<TokenCreate>,
) -> Result<Response, ApiError> {
    p.require(Role::Admin)?;
    let pc = scope(&app, &p, q.project.as_deref()).await?;
    let (token, secret) = app.site.run(move |s| s.create_token(&pc, &b.name, &b.labels, &b.spec)).await?;
    let loc = format!("/v1/tokens/{}", token.id);
    Ok(with_location(StatusCode::CREATED, loc, TokenCreated { token, secret }))
}

/// Get an API token (project admins). The secret is never shown again.
#[utoipa::path(get, path = "/v1/tokens/{id}", tag = "tokens", params(("id" = String, Path, description = "id or name"), ProjectQuery),
    responses((status = 200, body = Resource), (status = 404, body = ErrorBody)))]
pub async fn get_token(State(app): State<AppState>, Auth(p): Auth, Path(id): Path<String>, ApiQuery(q): ApiQuery<ProjectQuery>) -> Result<Response, ApiError> {
    admin_get(&app, &p, Kind::Token, id, &q).await
}

/// Revoke an API token (project admins).
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tokens", params(("id" = String, Path, description = "id or name"), ProjectQuery),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_token(
    State(app): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ProjectQuery>,
) -> Result<Response, ApiError> {
    admin_delete(&app, &p, Kind::Token, id, &q).await
}

// ---------------------------------------------------------------- users

/// List the project's console users (project admins).
#[utoipa::path(get, path = "/v1/users", tag = "users", params(ListQuery), responses((status = 200, body = ListResponse)))]
pub async fn list_users(State(app): State<AppState>, Auth(p): Auth, ApiQuery(q): ApiQuery<ListQuery>) -> Result<Response, ApiError> {
    admin_list(&app, &p, Kind::User, &q).await
}

/// Create a console user (project admins). The password is stored only as an Argon2id hash.
#[utoipa::path(post, path = "/v1/users", tag = "users", params(ProjectQuery), request_body = UserCreate,
    responses((status = 201, body = Resource), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_user(
    State(app): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<ProjectQuery>,
    ApiJson(b): ApiJson<UserCreate>,
) -> Result<Response, ApiError> {
    p.require(Role::Admin)?;
    let pc = scope(&app, &p, q.project.as_deref()).await?;
    let r = app.site.run(move |s| s.create_user(&pc, &b.name, &b.labels, &b.spec)).await?;
    Ok(created(Kind::User, &r))
}

/// Get a console user (project admins).
#[utoipa::path(get, path = "/v1/users/{id}", tag = "users", params(("id" = String, Path, description = "id or name"), ProjectQuery),
    responses((status = 200, body = Resource), (status = 404, body = ErrorBody)))]
pub async fn get_user(State(app): State<AppState>, Auth(p): Auth, Path(id): Path<String>, ApiQuery(q): ApiQuery<ProjectQuery>) -> Result<Response, ApiError> {
    admin_get(&app, &p, Kind::User, id, &q).await
}

/// Delete a console user (project admins); their sessions end.
#[utoipa::path(delete, path = "/v1/users/{id}", tag = "users", params(("id" = String, Path, description = "id or name"), ProjectQuery),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_user(
    State(app): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ProjectQuery>,
) -> Result<Response, ApiError> {
    admin_delete(&app, &p, Kind::User, id, &q).await
}

// ---------------------------------------------------------------- nodes

/// List the site's nodes (site admins).
#[utoipa::path(get, path = "/v1/nodes", tag = "nodes", params(ListQuery), responses((status = 200, body = ListResponse)))]
pub async fn list_nodes(State(app): State<AppState>, Auth(p): Auth, ApiQuery(q): ApiQuery<ListQuery>) -> Result<Response, ApiError> {
    p.require_site_admin()?;
    list_kind(&app, Kind::Node, None, &q).await
}

/// Get a node with its capacity, probe and heartbeat (site admins).
#[utoipa::path(get, path = "/v1/nodes/{id}", tag = "nodes", params(("id" = String, Path, description = "id or name")),
    responses((status = 200, body = Resource), (status = 404, body = ErrorBody)))]
pub async fn get_node(State(app): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> Result<Response, ApiError> {
    p.require_site_admin()?;
    Ok(item(app.site.run(move |s| s.get(Kind::Node, None, &id)).await?))
}

/// Update a node's labels or `schedulable` (site admins).
#[utoipa::path(patch, path = "/v1/nodes/{id}", tag = "nodes", request_body = UpdateRequest,
    params(("id" = String, Path, description = "id or name"), ("If-Match" = Option<String>, Header, description = "expected generation")),
    responses((status = 200, body = Resource), (status = 409, body = ErrorBody)))]
pub async fn update_node(
    State(app): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(b): ApiJson<UpdateRequest>,
) -> Result<Response, ApiError> {
    p.require_site_admin()?;
    let gen_ = if_match(&headers)?;
    let r = app.site.run(move |s| s.update(Kind::Node, None, &id, gen_, b.labels.as_ref(), b.spec.as_ref(), &|_, v| nodes::validate_spec(v))).await?;
    Ok(item(r))
}

// ---------------------------------------------------------------- operations

/// List operations: the project's, or every one (site-level included) for site admins.
#[utoipa::path(get, path = "/v1/operations", tag = "operations", params(ListQuery), responses((status = 200, body = ListResponse)))]
pub async fn list_operations(State(app): State<AppState>, Auth(p): Auth, ApiQuery(q): ApiQuery<ListQuery>) -> Result<Response, ApiError> {
    if p.site_admin && q.project.is_none() {
        return list_kind(&app, Kind::Operation, None, &q).await;
    }
    let pc = scope(&app, &p, q.project.as_deref()).await?;
    list_kind(&app, Kind::Operation, Some(pc), &q).await
}

/// Get an operation: `status.phase` (`Pending`, `Running`, `Succeeded`, `Failed`),
/// `status.progress` (0–100) and `status.error`.
#[utoipa::path(get, path = "/v1/operations/{id}", tag = "operations", params(("id" = String, Path, description = "operation id")),
    responses((status = 200, body = Resource), (status = 404, body = ErrorBody)))]
pub async fn get_operation(State(app): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> Result<Response, ApiError> {
    let visible = (!p.site_admin).then(|| p.project_ctx());
    let r = app.site.run(move |s| s.get_operation(&id, visible.as_ref())).await?;
    Ok(item(r))
}
