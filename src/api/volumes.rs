//! Handlers for block storage: `/v1/volumes` and `/v1/snapshots`. Reads need the viewer role,
//! changes the member role.

use axum::extract::{Path, State};
use axum::response::Response;

use super::AppState;
use super::auth::{Auth, scope};
use super::error::{ApiError, ApiQuery, ErrorBody};
use super::kinds::{kind_patch, kind_routes};
use super::resources::{ProjectQuery, item};
use crate::site::auth::Role;
use crate::site::volumes::{SnapshotSpec, VolumeSpec};

kind_routes!(
    VolumeSpec,
    "/v1/volumes",
    "/v1/volumes/{id}",
    "volumes",
    list_volumes,
    create_volume,
    get_volume,
    delete_volume,
    "Create a volume (`VolumeSpec`: `size_mib`, or `source_snapshot` to clone one). It is thin: only written blocks take space.",
    "Delete a volume; 409 while a container mounts it."
);
kind_routes!(
    SnapshotSpec,
    "/v1/snapshots",
    "/v1/snapshots/{id}",
    "snapshots",
    list_snapshots,
    create_snapshot,
    get_snapshot,
    delete_snapshot,
    "Take a snapshot of a volume (`SnapshotSpec`): a copy at one point in time, `Pending` until `Ready`.",
    "Delete a snapshot; 409 while a volume is being cloned from it."
);
kind_patch!(
    VolumeSpec,
    "/v1/volumes/{id}",
    "volumes",
    update_volume,
    "Grow a volume (`{\"spec\": {\"size_mib\": N}}`): the file grows, and a mounted filesystem is resized online. Shrinking answers 422."
);

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
