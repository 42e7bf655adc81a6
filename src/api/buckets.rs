//! Handlers for object storage on the REST API: `/v1/buckets`, `/v1/access-keys`, and a small
//! object browser (`/v1/buckets/{id}/objects`, `/v1/buckets/{id}/object?key=`) for the console.
//! Tools speak S3 on the S3 endpoint instead ([`super::s3`]).

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::{Auth, scope};
use super::error::{ApiError, ApiJson, ApiQuery, ErrorBody};
use super::kinds::{kind_patch, kind_routes};
use super::resources::{ListQuery, ListResponse, ProjectQuery, item, list_kind, with_location};
use crate::site::auth::{Principal, Role};
use crate::site::buckets::{AccessKeySpec, BucketRef, BucketSpec};
use crate::site::objects::{ObjectMeta, StoreError, WriteCond, validate_key};
use crate::site::{Kind, ProjectCtx, Resource, SiteError};

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let m = e.to_string();
        match e {
            StoreError::Site(s) => s.into(),
            StoreError::NoSuchKey => ApiError::new(StatusCode::NOT_FOUND, "not_found", m).with_field("key"),
            StoreError::NoSuchBucket(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", m).with_field("id"),
            StoreError::AccessDenied(_) => ApiError::new(StatusCode::FORBIDDEN, "permission_denied", m),
            StoreError::QuotaExceeded(_) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "quota_exceeded", m).with_field("body"),
            StoreError::EntityTooLarge(_) => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", m).with_field("body"),
            StoreError::InvalidArgument(_) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_argument", m).with_field("key"),
            StoreError::IncompleteBody(_) | StoreError::BadDigest(_) => ApiError::bad_request(m).with_field("body"),
            StoreError::PreconditionFailed => ApiError::new(StatusCode::PRECONDITION_FAILED, "precondition_failed", m),
            StoreError::Object(e) => SiteError::Object(e).into(),
            other => SiteError::Internal(other.to_string()).into(),
        }
    }
}

kind_routes!(
    BucketSpec,
    "/v1/buckets",
    "/v1/buckets/{id}",
    "buckets",
    list_buckets,
    create_bucket,
    get_bucket,
    delete_bucket,
    "Create a bucket (`BucketSpec`: `policy` private or public-read, optional `quota_mib`). The name is unique across the site, as S3 addresses buckets by name.",
    "Delete an empty bucket; 409 while it holds objects. Unfinished multipart uploads go with it."
);
kind_patch!(BucketSpec, "/v1/buckets/{id}", "buckets", update_bucket, "Change a bucket's policy or quota (`{\"spec\": {...}}`).");

/// Body of `POST /v1/access-keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessKeyCreate {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `{"role": "viewer" | "member" | "admin"}`; default member. At most the caller's own role.
    #[serde(default = "member_spec")]
    #[schema(value_type = Object)]
    pub spec: serde_json::Value,
}

fn member_spec() -> serde_json::Value {
    serde_json::json!({})
}

/// Answer of `POST /v1/access-keys`: the key plus its secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccessKeyCreated {
    #[serde(flatten)]
    pub access_key: Resource,
    /// The S3 access key id (the resource id).
    pub access_key_id: String,
    /// The S3 secret access key. It cannot be shown again.
    pub secret_access_key: String,
}

/// List the project's access keys (never their secrets).
#[utoipa::path(get, path = "/v1/access-keys", tag = "access-keys", params(ListQuery), responses((status = 200, body = ListResponse)))]
pub async fn list_access_keys(State(app): State<AppState>, Auth(p): Auth, ApiQuery(q): ApiQuery<ListQuery>) -> Result<Response, ApiError> {
    p.require(Role::Viewer)?;
    let pc = scope(&app, &p, q.project.as_deref()).await?;
    list_kind(&app, Kind::AccessKey, Some(pc), &q).await
}

/// Create an S3 access key for the project. The answer carries the secret once.
#[utoipa::path(post, path = "/v1/access-keys", tag = "access-keys", params(ProjectQuery), request_body = AccessKeyCreate,
    responses((status = 201, body = AccessKeyCreated), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_access_key(
    State(app): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<ProjectQuery>,
    ApiJson(b): ApiJson<AccessKeyCreate>,
) -> Result<Response, ApiError> {
    p.require(Role::Member)?;
    let spec: AccessKeySpec = serde_json::from_value(b.spec.clone()).map_err(|e| SiteError::invalid("spec", e.to_string()))?;
    if !p.site_admin && spec.role > p.role {
        return Err(SiteError::Forbidden(format!("a key may not carry more than the caller's {:?} role", p.role)).into());
    }
    let pc = scope(&app, &p, q.project.as_deref()).await?;
    let (r, secret) = app.site.run(move |s| s.create_access_key(&pc, &b.name, &b.labels, b.spec)).await?;
    let loc = format!("/v1/access-keys/{}", r.id);
    Ok(with_location(StatusCode::CREATED, loc, AccessKeyCreated { access_key_id: r.id.clone(), access_key: r, secret_access_key: secret }))
}

/// Get an access key (never its secret).
#[utoipa::path(get, path = "/v1/access-keys/{id}", tag = "access-keys", params(("id" = String, Path, description = "id or name"), ProjectQuery),
    responses((status = 200, body = Resource), (status = 404, body = ErrorBody)))]
pub async fn get_access_key(
    State(app): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ProjectQuery>,
) -> Result<Response, ApiError> {
    p.require(Role::Viewer)?;
    let pc = scope(&app, &p, q.project.as_deref()).await?;
    Ok(item(app.site.run(move |s| s.get(Kind::AccessKey, Some(&pc), &id)).await?))
}

/// Revoke an access key: requests signed with it fail from now on. A key whose role is above
/// the caller's is not revoked (403).
#[utoipa::path(delete, path = "/v1/access-keys/{id}", tag = "access-keys", params(("id" = String, Path, description = "id or name"), ProjectQuery),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_access_key(
    State(app): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ProjectQuery>,
) -> Result<Response, ApiError> {
    p.require(Role::Member)?;
    let pc = scope(&app, &p, q.project.as_deref()).await?;
    let (pc2, id2) = (pc.clone(), id.clone());
    let key: AccessKeySpec = app.site.run(move |s| s.get(Kind::AccessKey, Some(&pc2), &id2)).await?.spec_as()?;
    if !p.site_admin && key.role > p.role {
        return Err(SiteError::Forbidden(format!("the key carries the {:?} role, above the caller's {:?}", key.role, p.role)).into());
    }
    app.site.run(move |s| s.delete(Kind::AccessKey, Some(&pc), &id)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Query of the object browser's listing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ObjectListQuery {
    /// Only keys starting with this.
    #[serde(default)]
    pub prefix: String,
    /// Group keys by this (usually `/`) into `prefixes`.
    pub delimiter: Option<String>,
    /// Continue after this key or prefix (`next` of the previous page).
    pub after: Option<String>,
    /// Entries per page, 1 to 1000 (default 1000).
    pub limit: Option<usize>,
    /// Act on this project (site admins).
    pub project: Option<String>,
}

/// One object in a listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct ObjectEntry {
    pub key: String,
    /// Bytes.
    pub size: i64,
    /// ETag without quotes.
    pub etag: String,
    /// RFC 3339.
    pub last_modified: String,
    pub content_type: Option<String>,
}

/// A page of the object browser.
#[derive(Debug, Serialize, ToSchema)]
pub struct ObjectListing {
    pub objects: Vec<ObjectEntry>,
    /// Common prefixes, each ending with the delimiter.
    pub prefixes: Vec<String>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<String>,
    /// Bytes stored in the bucket.
    pub bytes: i64,
    /// Objects in the bucket.
    pub count: i64,
}

/// Query naming one object.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ObjectKeyQuery {
    /// The object key (1 to 1,024 bytes).
    pub key: String,
    /// Act on this project (site admins).
    pub project: Option<String>,
}

pub(crate) async fn bucket_of(app: &AppState, p: &Principal, id: String, project: Option<&str>, role: Role) -> Result<BucketRef, ApiError> {
    p.require(role)?;
    let pc: ProjectCtx = scope(app, p, project).await?;
    let r = app.site.run(move |s| s.get(Kind::Bucket, Some(&pc), &id)).await?;
    let name = r.name.clone();
    let b = app.site.run(move |s| s.read(|c| crate::site::buckets::bucket_by_name(c, &name))).await?;
    b.ok_or_else(|| SiteError::not_found("bucket", r.name.clone()).into())
}

/// List a bucket's objects, grouped by `delimiter`, with the bucket's usage.
#[utoipa::path(get, path = "/v1/buckets/{id}/objects", tag = "buckets", params(("id" = String, Path, description = "id or name"), ObjectListQuery),
    responses((status = 200, body = ObjectListing), (status = 404, body = ErrorBody)))]
pub async fn list_objects(
    State(app): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ObjectListQuery>,
) -> Result<Response, ApiError> {
    let b = bucket_of(&app, &p, id, q.project.as_deref(), Role::Viewer).await?;
    let limit = q.limit.unwrap_or(1000);
    if !(1..=1000).contains(&limit) {
        return Err(SiteError::invalid("limit", "between 1 and 1000").into());
    }
    let l = app.site.list_objects(&b, &q.prefix, q.delimiter.as_deref(), q.after.as_deref(), limit).await?;
    let bid = b.id.clone();
    let (bytes, count) = app.site.run(move |s| s.bucket_usage(&bid)).await?;
    let objects = l
        .objects
        .into_iter()
        .map(|o| ObjectEntry {
            last_modified: chrono::DateTime::from_timestamp_millis(o.modified_ms).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            key: o.key,
            size: o.size,
            etag: o.etag,
            content_type: o.content_type,
        })
        .collect();
    Ok(axum::Json(ObjectListing { objects, prefixes: l.prefixes, next: l.next, bytes, count }).into_response())
}

/// Download an object (the console's download button).
#[utoipa::path(get, path = "/v1/buckets/{id}/object", tag = "buckets", params(("id" = String, Path, description = "id or name"), ObjectKeyQuery),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>), (status = 404, body = ErrorBody)))]
pub async fn get_object(
    State(app): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ObjectKeyQuery>,
) -> Result<Response, ApiError> {
    let b = bucket_of(&app, &p, id, q.project.as_deref(), Role::Viewer).await?;
    validate_key(&q.key)?;
    let (row, files) = app.site.open_object(&b, &q.key).await?;
    let stream = files.stream(0, row.size as u64).map_err(std::io::Error::other);
    let name = q.key.rsplit('/').next().filter(|n| !n.is_empty()).unwrap_or("object");
    // RFC 6266: an ASCII fallback, and the exact name as RFC 8187 UTF-8 in `filename*`.
    let ascii: String = name.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' }).collect();
    let exact: String =
        name.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect();
    let ct = row.content_type.clone().unwrap_or_else(|| "application/octet-stream".into());
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    for (k, v) in [
        (header::CONTENT_TYPE, ct),
        (header::CONTENT_LENGTH, row.size.to_string()),
        (header::ETAG, format!("\"{}\"", row.etag)),
        (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{exact}")),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".into()),
    ] {
        if let Ok(v) = v.parse() {
            h.insert(k, v);
        }
    }
    Ok(resp)
}

/// Upload an object as the raw body (any content type; the `Content-Type` is stored). Replaces
/// an object at the same key atomically.
#[utoipa::path(put, path = "/v1/buckets/{id}/object", tag = "buckets", params(("id" = String, Path, description = "id or name"), ObjectKeyQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = ObjectEntry), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn put_object(
    State(app): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ObjectKeyQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let b = bucket_of(&app, &p, id, q.project.as_deref(), Role::Member).await?;
    validate_key(&q.key)?;
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let room = app.site.quota_room(&b, Some(&q.key)).await?;
    let w = app.site.write_blob(body.into_data_stream(), Default::default(), room).await?;
    let row = app.site.commit_object(&b, &q.key, w, ct, ObjectMeta::default(), WriteCond::default()).await?;
    let e = ObjectEntry {
        last_modified: chrono::DateTime::from_timestamp_millis(row.modified_ms).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        key: row.key,
        size: row.size,
        etag: row.etag,
        content_type: row.content_type,
    };
    Ok((StatusCode::CREATED, axum::Json(e)).into_response())
}

/// Delete an object (absent is not an error, as in S3).
#[utoipa::path(delete, path = "/v1/buckets/{id}/object", tag = "buckets", params(("id" = String, Path, description = "id or name"), ObjectKeyQuery),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_object(
    State(app): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ObjectKeyQuery>,
) -> Result<Response, ApiError> {
    let b = bucket_of(&app, &p, id, q.project.as_deref(), Role::Member).await?;
    validate_key(&q.key)?;
    app.site.delete_object(&b, &q.key, None).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Check the object store against its metadata (site admins): blobs missing or of the wrong
/// size are reported; unreferenced blobs are counted (they are removed at start-up).
#[utoipa::path(get, path = "/v1/object-store/check", tag = "buckets", responses((status = 200, body = crate::site::object_check::CheckReport), (status = 403, body = ErrorBody)))]
pub async fn check_object_store(State(app): State<AppState>, Auth(p): Auth) -> Result<Response, ApiError> {
    p.require_site_admin()?;
    let r = app.site.run(|s| s.check_objects(false)).await?;
    Ok(axum::Json(r).into_response())
}
