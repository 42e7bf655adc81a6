//! Handlers for block storage: `/v1/volumes` and `/v1/snapshots`. Reads need the viewer role,
//! changes the member role.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::auth::{Auth, scope};
use super::error::{ApiError, ApiJson, ApiQuery, ErrorBody};
use super::network::NetworkCreate;
use super::resources::{ListQuery, ListResponse, ProjectQuery, UpdateRequest, created, if_match, item, list_kind};
use crate::site::Kind;
use crate::site::auth::Role;

macro_rules! storage_kind {
    ($kind:expr, $path:literal, $item:literal, $tag:literal, $list:ident, $create:ident, $get:ident, $delete:ident, $create_fn:ident, $delete_fn:ident, $create_doc:literal, $delete_doc:literal) => {
        #[doc = concat!("List the project's ", $tag, ".")]
        #[utoipa::path(get, path = $path, tag = $tag, params(ListQuery), responses((status = 200, body = ListResponse)))]
        pub async fn $list(State(app): State<AppState>, Auth(p): Auth, ApiQuery(q): ApiQuery<ListQuery>) -> Result<Response, ApiError> {
            p.require(Role::Viewer)?;
            let pc = scope(&app, &p, q.project.as_deref()).await?;
            list_kind(&app, $kind, Some(pc), &q).await
        }

        #[doc = $create_doc]
        #[utoipa::path(post, path = $path, tag = $tag, params(ProjectQuery), request_body = NetworkCreate, responses((status = 201, body = crate::site::Resource), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
        pub async fn $create(
            State(app): State<AppState>,
            Auth(p): Auth,
            ApiQuery(q): ApiQuery<ProjectQuery>,
            ApiJson(b): ApiJson<NetworkCreate>,
        ) -> Result<Response, ApiError> {
            p.require(Role::Member)?;
            let pc = scope(&app, &p, q.project.as_deref()).await?;
            let r = app.site.run(move |s| s.$create_fn(&pc, &b.name, &b.labels, b.spec)).await?;
            Ok(created($kind, &r))
        }

        #[doc = concat!("Get one of the project's ", $tag, " by id or name.")]
        #[utoipa::path(get, path = $item, tag = $tag, params(("id" = String, Path, description = "id or name"), ProjectQuery), responses((status = 200, body = crate::site::Resource), (status = 404, body = ErrorBody)))]
        pub async fn $get(
            State(app): State<AppState>,
            Auth(p): Auth,
            Path(id): Path<String>,
            ApiQuery(q): ApiQuery<ProjectQuery>,
        ) -> Result<Response, ApiError> {
            p.require(Role::Viewer)?;
            let pc = scope(&app, &p, q.project.as_deref()).await?;
            Ok(item(app.site.run(move |s| s.get($kind, Some(&pc), &id)).await?))
        }

        #[doc = $delete_doc]
        #[utoipa::path(delete, path = $item, tag = $tag, params(("id" = String, Path, description = "id or name"), ProjectQuery), responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
        pub async fn $delete(
            State(app): State<AppState>,
            Auth(p): Auth,
            Path(id): Path<String>,
            ApiQuery(q): ApiQuery<ProjectQuery>,
        ) -> Result<Response, ApiError> {
            p.require(Role::Member)?;
            let pc = scope(&app, &p, q.project.as_deref()).await?;
            app.site.run(move |s| s.$delete_fn(&pc, &id)).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
    };
}

storage_kind!(
    Kind::Volume,
    "/v1/volumes",
    "/v1/volumes/{id}",
    "volumes",
    list_volumes,
    create_volume,
    get_volume,
    delete_volume,
    create_volume,
    delete_volume,
    "Create a volume (`VolumeSpec`: `size_mib`, or `source_snapshot` to clone one). It is thin: only written blocks take space.",
    "Delete a volume; 409 while a container mounts it."
);
storage_kind!(
    Kind::Snapshot,
    "/v1/snapshots",
    "/v1/snapshots/{id}",
    "snapshots",
    list_snapshots,
    create_snapshot,
    get_snapshot,
    delete_snapshot,
    create_snapshot,
    delete_snapshot,
    "Take a snapshot of a volume (`SnapshotSpec`): a copy at one point in time, `Pending` until `Ready`.",
    "Delete a snapshot; 409 while a volume is being cloned from it."
);

/// Grow a volume (`{"spec": {"size_mib": N}}`): the file grows, and a mounted filesystem is
/// resized online. Shrinking answers 422.
#[utoipa::path(patch, path = "/v1/volumes/{id}", tag = "volumes", request_body = UpdateRequest,
    params(("id" = String, Path, description = "id or name"), ProjectQuery, ("If-Match" = Option<String>, Header, description = "expected generation")),
    responses((status = 200, body = crate::site::Resource), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_volume(
    State(app): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ProjectQuery>,
    headers: HeaderMap,
    ApiJson(b): ApiJson<UpdateRequest>,
) -> Result<Response, ApiError> {
    p.require(Role::Member)?;
    let pc = scope(&app, &p, q.project.as_deref()).await?;
    let g = if_match(&headers)?;
    Ok(item(app.site.run(move |s| s.update_volume(&pc, &id, g, b.labels.as_ref(), b.spec.as_ref())).await?))
}

/// Check and repair a volume's ext4 filesystem in a confined `e2fsck` (no capabilities, user
/// `nobody`, no network). A volume a guest has written (attached read-write to an instance) is
/// `status.guest_written` and refused to containers until this passes. 409 while it is attached
/// or mounted; 422 when errors remain.
#[utoipa::path(post, path = "/v1/volumes/{id}/check", tag = "volumes", params(("id" = String, Path, description = "id or name"), ProjectQuery), responses((status = 200, body = crate::site::Resource), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn check_volume(
    State(app): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ProjectQuery>,
) -> Result<Response, ApiError> {
    p.require(Role::Member)?;
    let pc = scope(&app, &p, q.project.as_deref()).await?;
    Ok(item(app.site.run(move |s| s.check_volume(&pc, &id)).await?))
}
