//! Handlers for images and containers: `/v1/images` (pull, import, list, get, delete) and
//! `/v1/containers` (run, list, get, change, delete, start/stop/restart, logs, exec). Reads need
//! the viewer role; changes, logs and exec the member role.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::{Auth, scope};
use super::error::{ApiError, ApiJson, ApiQuery, ErrorBody};
use super::kinds::{kind_patch, kind_read_delete, kind_routes};
use super::resources::{ProjectQuery, accepted, created};
use crate::site::Kind;
use crate::site::auth::{Principal, Role};
use crate::site::containers::{ContainerSpec, ExecOutput, logs};
use crate::site::images::{Credentials, ImageSpec};

/// Body of `POST /v1/images`: a pull.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImagePull {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// An `ImageSpec` with `source` set.
    #[schema(value_type = Object)]
    pub spec: Value,
    /// Registry credentials, used for this pull only and never stored.
    #[serde(default)]
    pub credentials: Option<Credentials>,
}

/// Query of `POST /v1/images/import`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// The image's name.
    pub name: String,
    /// The tag to take from an archive that holds several (`repo:tag` of `docker save`, or an OCI
    /// layout's `org.opencontainers.image.ref.name`).
    pub reference: Option<String>,
    /// Act in this project (site admins only).
    pub project: Option<String>,
}

/// Query of `GET /v1/containers/{id}/logs`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    /// Only the last this many lines.
    pub tail: Option<usize>,
    /// Keep the response open and send new lines until the container stops.
    #[serde(default)]
    pub follow: bool,
    /// Prefix each line with its RFC 3339 time.
    #[serde(default)]
    pub timestamps: bool,
    /// `stdout` or `stderr` only.
    pub stream: Option<String>,
    /// Act in this project (site admins only).
    pub project: Option<String>,
}

/// Body of `POST /v1/containers/{id}/exec`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// The program and its arguments.
    pub command: Vec<String>,
    /// Extra environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Kill the command after this many seconds (1 to 3600, default 30).
    pub timeout_seconds: Option<u64>,
}

async fn project(app: &AppState, p: &Principal, role: Role, q: Option<&str>) -> Result<crate::site::ProjectCtx, ApiError> {
    p.require(role)?;
    scope(app, p, q).await
}

kind_read_delete!(
    ImageSpec,
    "/v1/images",
    "/v1/images/{id}",
    "images",
    list_images,
    get_image,
    delete_image,
    "Delete an image (409 while a container or an instance uses it); unreferenced blobs are collected."
);

/// Pull an image from a registry: `202` with the operation; the image is `Pulling`, then `Ready`
/// or `Failed`.
#[utoipa::path(post, path = "/v1/images", tag = "images", params(ProjectQuery), request_body = ImagePull, responses((status = 202, body = crate::site::Resource), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn pull_image(
    State(app): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<ProjectQuery>,
    ApiJson(b): ApiJson<ImagePull>,
) -> Result<Response, ApiError> {
    let pc = project(&app, &p, Role::Member, q.project.as_deref()).await?;
    let op = app.site.run(move |s| s.create_image_pull(&pc, &b.name, &b.labels, b.spec, b.credentials)).await?;
    Ok(accepted(&op))
}

/// Import an image archive (`docker save` output, or a tar of an OCI image layout) sent as the
/// body, with any content type (`application/x-tar` or `application/octet-stream`). The archive
/// is checked like a hostile one: a path out of its root, a link trick or a device node is
/// refused with 422.
#[utoipa::path(post, path = "/v1/images/import", tag = "images", params(ImportQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = crate::site::Resource), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn import_image(State(app): State<AppState>, Auth(p): Auth, ApiQuery(q): ApiQuery<ImportQuery>, body: Body) -> Result<Response, ApiError> {
    let pc = project(&app, &p, Role::Member, q.project.as_deref()).await?;
    let limit = app.site.config().container.max_import_bytes;
    let dir = app.site.images_dir();
    tokio::fs::create_dir_all(&dir).await.map_err(|e| ApiError::from(crate::site::SiteError::io(format!("creating {}", dir.display()), e)))?;
    let path = dir.join(format!("upload-{}.tar", ulid::Ulid::new()));
    let written = save_body(body, &path, limit).await;
    let result = match written {
        Ok(()) => {
            let path2 = path.clone();
            app.site.run(move |s| s.import_image(&pc, &q.name, &BTreeMap::new(), &path2, q.reference.as_deref())).await.map_err(ApiError::from)
        }
        Err(e) => Err(e),
    };
    let _ = tokio::fs::remove_file(&path).await;
    Ok(created(Kind::Image, &result?))
}

/// Save an upload body to `path`, at most `limit` bytes (413 past it, 422 when empty).
pub(super) async fn save_body(body: Body, path: &std::path::Path, limit: u64) -> Result<(), ApiError> {
    let internal = |e: std::io::Error| ApiError::from(crate::site::SiteError::io("saving the upload", e));
    let mut f = tokio::fs::File::create(path).await.map_err(internal)?;
    let mut stream = body.into_data_stream();
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")).with_field("body"))?;
        n += chunk.len() as u64;
        if n > limit {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the archive is larger than container.max_import_bytes ({limit})"),
            )
            .with_field("body"));
        }
        f.write_all(&chunk).await.map_err(internal)?;
    }
    if n == 0 {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_argument", "the body is empty: send the image archive").with_field("body"));
    }
    f.sync_all().await.map_err(internal)
}

kind_routes!(
    ContainerSpec,
    "/v1/containers",
    "/v1/containers/{id}",
    "containers",
    list_containers,
    create_container,
    get_container,
    delete_container,
    "Create a container (a `ContainerSpec`); it runs unless `state` is `stopped`.",
    "Delete a container: it is stopped (SIGTERM, then SIGKILL after its stop timeout) and its files, mounts and cgroups are removed."
);
kind_patch!(
    ContainerSpec,
    "/v1/containers/{id}",
    "containers",
    update_container,
    "Change a container (RFC 7386 merge patch of the spec, or labels); a running container is restarted to apply a spec change."
);

macro_rules! container_action {
    ($name:ident, $path:literal, $action:literal, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "containers", params(("id" = String, Path, description = "id or name"), ProjectQuery), responses((status = 202, body = crate::site::Resource), (status = 404, body = ErrorBody)))]
        pub async fn $name(
            State(app): State<AppState>,
            Auth(p): Auth,
            Path(id): Path<String>,
            ApiQuery(q): ApiQuery<ProjectQuery>,
        ) -> Result<Response, ApiError> {
            let pc = project(&app, &p, Role::Member, q.project.as_deref()).await?;
            let r = app.site.run(move |s| s.container_action(&pc, &id, $action)).await?;
            Ok((StatusCode::ACCEPTED, axum::Json(r)).into_response())
        }
    };
}

container_action!(start_container, "/v1/containers/{id}/start", "start", "Start a stopped or exited container (the reconciler starts it).");
container_action!(stop_container, "/v1/containers/{id}/stop", "stop", "Stop a container: SIGTERM, then SIGKILL after its stop timeout.");
container_action!(restart_container, "/v1/containers/{id}/restart", "restart", "Restart a container (stop, then start).");

fn render(e: &logs::Entry, timestamps: bool) -> String {
    if timestamps { format!("{} {}\n", e.time, e.log) } else { format!("{}\n", e.log) }
}

/// A container's log (`text/plain`, one line per line the container wrote), optionally only the
/// last `tail` lines, one stream, or followed live until the container stops.
#[utoipa::path(get, path = "/v1/containers/{id}/logs", tag = "containers", params(("id" = String, Path, description = "id or name"), LogsQuery), responses((status = 200, content_type = "text/plain", body = String), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn container_logs(
    State(app): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> Result<Response, ApiError> {
    let pc = project(&app, &p, Role::Member, q.project.as_deref()).await?;
    if let Some(s) = &q.stream
        && s != "stdout"
        && s != "stderr"
    {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_argument", "stream is stdout or stderr").with_field("stream"));
    }
    let (cid, dir) = app.site.run(move |s| s.container_logs_dir(&pc, &id)).await?;
    let (tail, stream, ts) = (q.tail, q.stream.clone(), q.timestamps);
    let keep = move |e: &logs::Entry| stream.as_ref().is_none_or(|s| *s == e.stream);
    let (old, follower) = {
        let (dir, keep) = (dir.clone(), keep.clone());
        tokio::task::spawn_blocking(move || {
            let (mut all, f) = logs::tail_and_follow(&dir);
            all.retain(|e| keep(e));
            let skip = tail.map(|t| all.len().saturating_sub(t)).unwrap_or(0);
            (all.split_off(skip), f)
        })
        .await
        .map_err(|e| ApiError::from(crate::site::SiteError::Internal(e.to_string())))?
    };
    let first: String = old.iter().map(|e| render(e, ts)).collect();
    let headers = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if !q.follow {
        return Ok((headers, first).into_response());
    }
    let site = app.site.clone();
    let mut shutdown = app.shutdown.clone();
    let stream = async_stream::stream! {
        yield Ok::<_, std::io::Error>(first);
        let mut f = follower;
        loop {
            let new: Vec<logs::Entry> = f.poll();
            let text: String = new.iter().filter(|e| keep(e)).map(|e| render(e, ts)).collect();
            if !text.is_empty() {
                yield Ok(text);
            } else if !site.container_running(&cid) || *shutdown.borrow() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = shutdown.changed() => {}
            }
        }
    };
    Ok((headers, Body::from_stream(stream)).into_response())
}

/// Run a command in a running container (its namespaces, cgroup, capabilities and seccomp
/// filter) and answer its exit code and output. 409 when the container is not running.
#[utoipa::path(post, path = "/v1/containers/{id}/exec", tag = "containers", params(("id" = String, Path, description = "id or name"), ProjectQuery),
    request_body = ExecRequest,
    responses((status = 200, body = ExecOutput), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn exec_container(
    State(app): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ProjectQuery>,
    ApiJson(b): ApiJson<ExecRequest>,
) -> Result<Response, ApiError> {
    let pc = project(&app, &p, Role::Member, q.project.as_deref()).await?;
    let invalid = |f: &str, m: &str| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_argument", m.to_string()).with_field(f.to_string());
    if b.command.is_empty() || b.command.len() > 4096 || b.command.iter().any(|a| a.contains('\0')) {
        return Err(invalid("command", "give the program and its arguments (at most 4096, without NUL)"));
    }
    let timeout = b.timeout_seconds.unwrap_or(30);
    if !(1..=3600).contains(&timeout) {
        return Err(invalid("timeout_seconds", "between 1 and 3600"));
    }
    if b.env.iter().any(|(k, v)| k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0')) {
        return Err(invalid("env", "names are non-empty without = or NUL; values without NUL"));
    }
    let out = app.site.run(move |s| s.container_exec(&pc, &id, &b.command, &b.env, Duration::from_secs(timeout))).await?;
    Ok(axum::Json(out).into_response())
}
