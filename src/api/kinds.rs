//! The generic handlers of the project-scoped kinds that implement
//! [`crate::site::resource_kind::ResourceKind`]: list, get, create, patch and delete under
//! `/v1/<plural>` and `/v1/<plural>/{id}`, one body type for every create ([`CreateRequest`]).
//! Reads need the viewer role, changes the member role. [`kind_routes!`] (list, create, get,
//! delete), [`kind_read_delete!`] (list, get, delete: kinds made otherwise, as functions are by a
//! deploy) and [`kind_patch!`] give each kind its documented handlers; the kind is a type, so no
//! request can reach another kind's code.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::auth::scope;
use super::error::ApiError;
use super::resources::{CreateRequest, ListQuery, ProjectQuery, UpdateRequest, created, if_match, item, list_kind};
use crate::site::auth::{Principal, Role};
use crate::site::resource_kind::{Creatable, Patchable, ResourceKind};

/// List the caller's project's resources of kind `K`.
pub async fn list<K: ResourceKind>(app: &AppState, p: &Principal, q: &ListQuery) -> Result<Response, ApiError> {
    p.require(Role::Viewer)?;
    let pc = scope(app, p, q.project.as_deref()).await?;
    list_kind(app, K::KIND, Some(pc), q).await
}

/// Get one resource of kind `K` by id or name (404 in another project).
pub async fn get<K: ResourceKind>(app: &AppState, p: &Principal, id: String, q: &ProjectQuery) -> Result<Response, ApiError> {
    p.require(Role::Viewer)?;
    let pc = scope(app, p, q.project.as_deref()).await?;
    Ok(item(app.site.run(move |s| s.get(K::KIND, Some(&pc), &id)).await?))
}

/// Create a resource of kind `K`: 201 with its `Location`.
pub async fn create<K: Creatable>(app: &AppState, p: &Principal, q: &ProjectQuery, b: CreateRequest) -> Result<Response, ApiError> {
    p.require(Role::Member)?;
    let pc = scope(app, p, q.project.as_deref()).await?;
    let r = app.site.run(move |s| s.create_resource::<K>(&pc, &b.name, &b.labels, b.spec)).await?;
    Ok(created(K::KIND, &r))
}

/// Patch a resource of kind `K` (`If-Match`: the expected generation).
pub async fn update<K: Patchable>(
    app: &AppState,
    p: &Principal,
    id: String,
    q: &ProjectQuery,
    headers: &HeaderMap,
    b: UpdateRequest,
) -> Result<Response, ApiError> {
    p.require(Role::Member)?;
    let pc = scope(app, p, q.project.as_deref()).await?;
    let g = if_match(headers)?;
    Ok(item(app.site.run(move |s| s.update_resource::<K>(&pc, &id, g, b.labels.as_ref(), b.spec.as_ref())).await?))
}

/// Delete a resource of kind `K`: 204, or 409 while in use.
pub async fn delete<K: ResourceKind>(app: &AppState, p: &Principal, id: String, q: &ProjectQuery) -> Result<Response, ApiError> {
    p.require(Role::Member)?;
    let pc = scope(app, p, q.project.as_deref()).await?;
    app.site.run(move |s| s.delete_resource::<K>(&pc, &id)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The list, create, get and delete handlers of one kind, documented for OpenAPI:
/// `kind_routes!(Spec, "/v1/<plural>", "/v1/<plural>/{id}", "<tag>", list, create, get, delete, "create doc", "delete doc")`.
macro_rules! kind_routes {
    ($spec:ty, $path:literal, $item:literal, $tag:literal, $list:ident, $create:ident, $get:ident, $delete:ident, $create_doc:literal, $delete_doc:literal) => {
        $crate::api::kinds::kind_read_delete!($spec, $path, $item, $tag, $list, $get, $delete, $delete_doc);

        #[doc = $create_doc]
        #[utoipa::path(post, path = $path, tag = $tag, params($crate::api::resources::ProjectQuery), request_body = $crate::api::resources::CreateRequest,
            responses((status = 201, body = $crate::site::Resource), (status = 409, body = $crate::api::error::ErrorBody), (status = 422, body = $crate::api::error::ErrorBody)))]
        pub async fn $create(
            axum::extract::State(app): axum::extract::State<$crate::api::AppState>,
            $crate::api::auth::Auth(p): $crate::api::auth::Auth,
            $crate::api::error::ApiQuery(q): $crate::api::error::ApiQuery<$crate::api::resources::ProjectQuery>,
            $crate::api::error::ApiJson(b): $crate::api::error::ApiJson<$crate::api::resources::CreateRequest>,
        ) -> Result<axum::response::Response, $crate::api::error::ApiError> {
            $crate::api::kinds::create::<$spec>(&app, &p, &q, b).await
        }
    };
}
pub(crate) use kind_routes;

/// The list, get and delete handlers of one kind, documented for OpenAPI:
/// `kind_read_delete!(Spec, "/v1/<plural>", "/v1/<plural>/{id}", "<tag>", list, get, delete, "delete doc")`.
macro_rules! kind_read_delete {
    ($spec:ty, $path:literal, $item:literal, $tag:literal, $list:ident, $get:ident, $delete:ident, $delete_doc:literal) => {
        #[doc = concat!("List the project's ", $tag, ".")]
        #[utoipa::path(get, path = $path, tag = $tag, params($crate::api::resources::ListQuery), responses((status = 200, body = $crate::api::resources::ListResponse)))]
        pub async fn $list(
            axum::extract::State(app): axum::extract::State<$crate::api::AppState>,
            $crate::api::auth::Auth(p): $crate::api::auth::Auth,
            $crate::api::error::ApiQuery(q): $crate::api::error::ApiQuery<$crate::api::resources::ListQuery>,
        ) -> Result<axum::response::Response, $crate::api::error::ApiError> {
            $crate::api::kinds::list::<$spec>(&app, &p, &q).await
        }

        #[doc = concat!("Get one of the project's ", $tag, " by id or name.")]
        #[utoipa::path(get, path = $item, tag = $tag, params(("id" = String, Path, description = "id or name"), $crate::api::resources::ProjectQuery),
            responses((status = 200, body = $crate::site::Resource), (status = 404, body = $crate::api::error::ErrorBody)))]
        pub async fn $get(
            axum::extract::State(app): axum::extract::State<$crate::api::AppState>,
            $crate::api::auth::Auth(p): $crate::api::auth::Auth,
            axum::extract::Path(id): axum::extract::Path<String>,
            $crate::api::error::ApiQuery(q): $crate::api::error::ApiQuery<$crate::api::resources::ProjectQuery>,
        ) -> Result<axum::response::Response, $crate::api::error::ApiError> {
            $crate::api::kinds::get::<$spec>(&app, &p, id, &q).await
        }

        #[doc = $delete_doc]
        #[utoipa::path(delete, path = $item, tag = $tag, params(("id" = String, Path, description = "id or name"), $crate::api::resources::ProjectQuery),
            responses((status = 204), (status = 404, body = $crate::api::error::ErrorBody), (status = 409, body = $crate::api::error::ErrorBody)))]
        pub async fn $delete(
            axum::extract::State(app): axum::extract::State<$crate::api::AppState>,
            $crate::api::auth::Auth(p): $crate::api::auth::Auth,
            axum::extract::Path(id): axum::extract::Path<String>,
            $crate::api::error::ApiQuery(q): $crate::api::error::ApiQuery<$crate::api::resources::ProjectQuery>,
        ) -> Result<axum::response::Response, $crate::api::error::ApiError> {
            $crate::api::kinds::delete::<$spec>(&app, &p, id, &q).await
        }
    };
}
pub(crate) use kind_read_delete;

/// The patch handler of a kind that implements `Patchable`, documented for OpenAPI.
macro_rules! kind_patch {
    ($spec:ty, $item:literal, $tag:literal, $name:ident, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(patch, path = $item, tag = $tag, request_body = $crate::api::resources::UpdateRequest,
            params(("id" = String, Path, description = "id or name"), $crate::api::resources::ProjectQuery, ("If-Match" = Option<String>, Header, description = "expected generation")),
            responses((status = 200, body = $crate::site::Resource), (status = 409, body = $crate::api::error::ErrorBody), (status = 422, body = $crate::api::error::ErrorBody)))]
        pub async fn $name(
            axum::extract::State(app): axum::extract::State<$crate::api::AppState>,
            $crate::api::auth::Auth(p): $crate::api::auth::Auth,
            axum::extract::Path(id): axum::extract::Path<String>,
            $crate::api::error::ApiQuery(q): $crate::api::error::ApiQuery<$crate::api::resources::ProjectQuery>,
            headers: axum::http::HeaderMap,
            $crate::api::error::ApiJson(b): $crate::api::error::ApiJson<$crate::api::resources::UpdateRequest>,
        ) -> Result<axum::response::Response, $crate::api::error::ApiError> {
            $crate::api::kinds::update::<$spec>(&app, &p, id, &q, &headers, b).await
        }
    };
}
pub(crate) use kind_patch;
