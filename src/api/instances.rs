//! Handlers for instances (`/v1/instances`: create, list, get, change, delete, start, stop,
//! reboot, the console log and the live console over a websocket) and VM image import
//! (`/v1/images/import-vm`). Reads need the viewer role; changes and the console the member
//! role.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use utoipa::IntoParams;

use super::AppState;
use super::auth::{Auth, scope};
use super::error::{ApiError, ApiQuery, ErrorBody};
use super::kinds::{kind_patch, kind_routes};
use super::resources::{ProjectQuery, created};
use crate::site::auth::{Principal, Role};
use crate::site::instances::InstanceSpec;
use crate::site::{Kind, SiteError};

/// Query of `POST /v1/images/import-vm`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct VmImportQuery {
    /// The image's name (default: the manifest's `name`).
    pub name: Option<String>,
    /// Act in this project (site admins only).
    pub project: Option<String>,
}

/// Query of `GET /v1/instances/{id}/console`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ConsoleQuery {
    /// Only the last this many lines.
    pub tail: Option<usize>,
    /// Keep the response open and send new output until the worker ends.
    #[serde(default)]
    pub follow: bool,
    /// Act in this project (site admins only).
    pub project: Option<String>,
}

async fn project(app: &AppState, p: &Principal, role: Role, q: Option<&str>) -> Result<crate::site::ProjectCtx, ApiError> {
    p.require(role)?;
    scope(app, p, q).await
}

/// Import a VM image: the body (any content type: `application/x-tar` or
/// `application/octet-stream`) is a tar of a directory holding `image.json`
/// (`{"name","os","arch","kernel","initrd","rootfs","cmdline"}`, paths relative to it) and the
/// files it names. A hostile manifest (an absolute path, `..`, a symlink out of the directory, a
/// missing, empty or oversized file) is refused with 422 naming `manifest.<field>`.
#[utoipa::path(post, path = "/v1/images/import-vm", tag = "images", params(VmImportQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = crate::site::Resource), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn import_vm_image(State(app): State<AppState>, Auth(p): Auth, ApiQuery(q): ApiQuery<VmImportQuery>, body: Body) -> Result<Response, ApiError> {
    let pc = project(&app, &p, Role::Member, q.project.as_deref()).await?;
    let limit = app.site.config().container.max_import_bytes;
    let dir = app.site.images_dir();
    tokio::fs::create_dir_all(&dir).await.map_err(|e| ApiError::from(SiteError::io(format!("creating {}", dir.display()), e)))?;
    let path = dir.join(format!("upload-{}.tar", ulid::Ulid::new()));
    let written = super::containers::save_body(body, &path, limit).await;
    let result = match written {
        Ok(()) => {
            let path2 = path.clone();
            app.site.run(move |s| s.import_vm_image(&pc, q.name.as_deref(), &BTreeMap::new(), &path2)).await.map_err(ApiError::from)
        }
        Err(e) => Err(e),
    };
    let _ = tokio::fs::remove_file(&path).await;
    Ok(created(Kind::Image, &result?))
}

kind_routes!(
    InstanceSpec,
    "/v1/instances",
    "/v1/instances/{id}",
    "instances",
    list_instances,
    create_instance,
    get_instance,
    delete_instance,
    "Create an instance (an `InstanceSpec`) and its network interface `<name>-eth0`; it boots unless `state` is `stopped`.",
    "Delete an instance and its interface (409 while an EIP or a port forward uses the interface): the guest is shut down (forced after its stop timeout) and its worker, cgroup, root disk and files are removed."
);
kind_patch!(
    InstanceSpec,
    "/v1/instances/{id}",
    "instances",
    update_instance,
    "Change an instance (RFC 7386 merge patch of the spec, or labels); a running instance is restarted to apply a spec change. The image and the network fields are fixed (422)."
);

macro_rules! instance_action {
    ($name:ident, $path:literal, $action:literal, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "instances", params(("id" = String, Path, description = "id or name"), ProjectQuery), responses((status = 202, body = crate::site::Resource), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
        pub async fn $name(
            State(app): State<AppState>,
            Auth(p): Auth,
            Path(id): Path<String>,
            ApiQuery(q): ApiQuery<ProjectQuery>,
        ) -> Result<Response, ApiError> {
            let pc = project(&app, &p, Role::Member, q.project.as_deref()).await?;
            let r = app.site.run(move |s| s.instance_action(&pc, &id, $action)).await?;
            Ok((StatusCode::ACCEPTED, axum::Json(r)).into_response())
        }
    };
}

instance_action!(start_instance, "/v1/instances/{id}/start", "start", "Start a stopped, powered-off or failed instance.");
instance_action!(stop_instance, "/v1/instances/{id}/stop", "stop", "Stop an instance: a graceful shutdown (Ctrl-Alt-Del), forced after its stop timeout.");
instance_action!(reboot_instance, "/v1/instances/{id}/reboot", "reboot", "Reboot an instance: a graceful shutdown, then a fresh start.");

/// The last `tail` lines of `bytes` (all when `None`).
fn last_lines(bytes: &[u8], tail: Option<usize>) -> &[u8] {
    let Some(n) = tail else { return bytes };
    if n == 0 {
        return &bytes[bytes.len()..];
    }
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let mut seen = 0;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == n {
                return &bytes[i + 1..];
            }
        }
    }
    bytes
}

/// The most of a console log one request reads from the end of the file, in bytes.
const CONSOLE_READ_BYTES: u64 = 2 << 20;

/// The last `max` bytes of the file at `path` (empty when it cannot be read), and the offset
/// after them.
async fn read_tail_bytes(path: &std::path::Path, max: u64) -> (Vec<u8>, u64) {
    let Ok(mut f) = tokio::fs::File::open(path).await else { return (Vec::new(), 0) };
    let len = f.metadata().await.map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(max);
    let mut out = Vec::new();
    if tokio::io::AsyncSeekExt::seek(&mut f, std::io::SeekFrom::Start(start)).await.is_ok() {
        let _ = (&mut f).take(max).read_to_end(&mut out).await;
    }
    let end = start + out.len() as u64;
    (out, end)
}

/// An instance's serial console log (`text/plain`, the bytes the guest wrote), optionally only
/// the last `tail` lines, or followed live until the worker ends.
#[utoipa::path(get, path = "/v1/instances/{id}/console", tag = "instances", params(("id" = String, Path, description = "id or name"), ConsoleQuery), responses((status = 200, content_type = "text/plain", body = String), (status = 404, body = ErrorBody)))]
pub async fn instance_console(
    State(app): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ConsoleQuery>,
) -> Result<Response, ApiError> {
    let pc = project(&app, &p, Role::Member, q.project.as_deref()).await?;
    let (iid, path) = app.site.run(move |s| s.instance_console_log(&pc, &id)).await?;
    // Only the log's last bytes are read (it is up to 16 MiB per run, plus the rotated one).
    let (all, end) = read_tail_bytes(&path, CONSOLE_READ_BYTES).await;
    let first = last_lines(&all, q.tail).to_vec();
    let headers = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if !q.follow {
        return Ok((headers, first).into_response());
    }
    let site = app.site.clone();
    let mut shutdown = app.shutdown.clone();
    let mut offset = end;
    let stream = async_stream::stream! {
        yield Ok::<_, std::io::Error>(first);
        loop {
            let mut chunk = Vec::new();
            if let Ok(mut f) = tokio::fs::File::open(&path).await {
                let len = f.metadata().await.map(|m| m.len()).unwrap_or(0);
                if len < offset {
                    offset = 0; // rotated at a restart
                }
                if len > offset && tokio::io::AsyncSeekExt::seek(&mut f, std::io::SeekFrom::Start(offset)).await.is_ok() {
                    let _ = (&mut f).take(len - offset).read_to_end(&mut chunk).await;
                    offset += chunk.len() as u64;
                }
            }
            if !chunk.is_empty() {
                yield Ok(chunk);
            } else {
                let (s, i) = (site.clone(), iid.clone());
                let running = tokio::task::spawn_blocking(move || s.instance_running(&i)).await.unwrap_or(false);
                if !running || *shutdown.borrow() {
                    break;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = shutdown.changed() => {}
            }
        }
    };
    Ok((headers, Body::from_stream(stream)).into_response())
}

/// The authority (`host[:port]`, lowercased) of an `Origin` header value
/// (`scheme://host[:port]`, RFC 6454 §7), with its scheme; `None` for `null` or a malformed one.
fn origin_authority(origin: &str) -> Option<(String, String)> {
    let (scheme, rest) = origin.trim().split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    (!authority.is_empty() && !authority.contains('@')).then(|| (scheme.to_ascii_lowercase(), authority.to_ascii_lowercase()))
}

/// Whether a websocket upgrade may proceed as far as its `Origin` goes: no `Origin` (a CLI or
/// another non-browser client), or one whose `host[:port]` is the request's `Host`
/// (scheme-insensitive; a missing port matches the origin scheme's default, 80 or 443). A
/// browser always sends `Origin` on a websocket handshake (RFC 6455 §4.1, item 8), so a page of
/// another site cannot ride the console's session cookie (cross-site websocket hijacking).
pub fn same_origin(origin: Option<&str>, host: Option<&str>) -> bool {
    let Some(origin) = origin else { return true };
    let (Some((scheme, from)), Some(host)) = (origin_authority(origin), host.map(|h| h.trim().to_ascii_lowercase())) else { return false };
    if from == host {
        return true;
    }
    let default = match scheme.as_str() {
        "https" | "wss" => "443",
        _ => "80",
    };
    let with_port = |a: &str| if a.ends_with(']') || !a.contains(':') { format!("{a}:{default}") } else { a.to_string() };
    with_port(&from) == with_port(&host)
}

/// The live serial console over a websocket: binary (or text) messages from the client are the
/// guest's input, binary messages to it the guest's output. 403 `permission_denied` (field
/// `Origin`) when the request carries an `Origin` that is not the daemon's own (see
/// [`same_origin`]); 400 when it is not a websocket upgrade; 409 when the instance's worker does
/// not run.
#[utoipa::path(get, path = "/v1/instances/{id}/console/ws", tag = "instances", params(("id" = String, Path, description = "id or name"), ProjectQuery), responses((status = 101, description = "switching to the websocket"), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn instance_console_ws(
    State(app): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ProjectQuery>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let origin = headers.get(header::ORIGIN).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    // HTTP/1.1 names the authority in Host; HTTP/2 in the request target.
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).or_else(|| uri.authority().map(|a| a.as_str()));
    if !same_origin(origin, host) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "permission_denied", "the websocket's Origin is not this site's").with_field("Origin"));
    }
    let ws = ws.map_err(|e| ApiError::bad_request(format!("not a websocket upgrade: {e}")))?;
    let pc = project(&app, &p, Role::Member, q.project.as_deref()).await?;
    let s = app.site.run(move |s| s.instance_console(&pc, &id)).await?;
    let stream = async_stream_of(s)?;
    Ok(ws.on_upgrade(move |socket| bridge(socket, stream)))
}

/// The console socket as an async stream.
fn async_stream_of(s: std::os::unix::net::UnixStream) -> Result<tokio::net::UnixStream, ApiError> {
    s.set_nonblocking(true).map_err(|e| ApiError::from(SiteError::io("setting the console socket non-blocking", e)))?;
    tokio::net::UnixStream::from_std(s).map_err(|e| ApiError::from(SiteError::io("registering the console socket", e)))
}

async fn bridge(mut ws: WebSocket, stream: tokio::net::UnixStream) {
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = vec![0u8; 16 << 10];
    loop {
        tokio::select! {
            n = rd.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => if ws.send(Message::Binary(bytes::Bytes::copy_from_slice(&buf[..n]))).await.is_err() { break },
            },
            m = ws.recv() => match m {
                Some(Ok(Message::Binary(b))) => if wr.write_all(&b).await.is_err() { break },
                Some(Ok(Message::Text(t))) => if wr.write_all(t.as_bytes()).await.is_err() { break },
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                _ => break,
            },
        }
    }
    let _ = ws.send(Message::Close(None)).await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn tails_take_the_last_lines() {
        assert_eq!(super::last_lines(b"a\nb\nc\n", Some(2)), b"b\nc\n");
        assert_eq!(super::last_lines(b"a\nb\nc", Some(1)), b"c");
        assert_eq!(super::last_lines(b"a\nb\n", Some(5)), b"a\nb\n");
        assert_eq!(super::last_lines(b"a\nb\n", None), b"a\nb\n");
        assert_eq!(super::last_lines(b"a\n", Some(0)), b"");
    }

    #[test]
    fn websocket_origins_must_be_this_site() {
        use super::same_origin;
        assert!(same_origin(None, Some("127.0.0.1:8443")), "no Origin: a CLI");
        assert!(same_origin(Some("http://127.0.0.1:8443"), Some("127.0.0.1:8443")));
        assert!(same_origin(Some("https://Cloudlet.example:8443"), Some("cloudlet.example:8443")), "scheme and case do not matter");
        assert!(same_origin(Some("https://cloudlet.example"), Some("cloudlet.example:443")), "the default port");
        assert!(same_origin(Some("http://[::1]:80"), Some("[::1]")));
        assert!(!same_origin(Some("http://evil.example"), Some("127.0.0.1:8443")));
        assert!(!same_origin(Some("http://127.0.0.1:9999"), Some("127.0.0.1:8443")), "another port is another origin");
        assert!(!same_origin(Some("http://127.0.0.1.evil.example:8443"), Some("127.0.0.1:8443")));
        assert!(!same_origin(Some("null"), Some("127.0.0.1:8443")), "an opaque origin");
        assert!(!same_origin(Some("http://127.0.0.1:8443"), None), "no Host to compare with");
    }
}
