//! The web console: `web-ui/dist` embedded with `rust-embed` and served at `/` with an SPA
//! fallback (unknown non-API paths answer `index.html`). `build.rs` copies the built console
//! into `OUT_DIR/console`, or a placeholder page when it was not built.

use axum::body::Body;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::api::error::ApiError;

#[derive(rust_embed::RustEmbed)]
#[folder = "$OUT_DIR/console"]
struct Assets;

/// Content-Security-Policy for the console: everything from this origin, nothing else.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'";

fn asset(path: &str) -> Option<Response> {
    let file = Assets::get(path)?;
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let mut resp = Response::new(Body::from(file.data.into_owned()));
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(mime.as_ref()) {
        h.insert(header::CONTENT_TYPE, v);
    }
    let cache = if path.starts_with("assets/") { "public, max-age=31536000, immutable" } else { "no-cache" };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    Some(resp)
}

/// The fallback handler: console assets, the SPA fallback, or a JSON 404 under `/v1`.
pub async fn serve(method: Method, uri: Uri) -> Response {
    let path = uri.path();
    if path == "/v1" || path.starts_with("/v1/") {
        return ApiError::not_found(format!("no route {path}")).into_response();
    }
    if method != Method::GET && method != Method::HEAD {
        return ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "the console only answers GET").into_response();
    }
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "index.html" } else { rel };
    if let Some(r) = asset(rel) {
        return r;
    }
    if rel.starts_with("assets/") || rel.contains('.') {
        return ApiError::not_found(format!("no file {path}")).into_response();
    }
    asset("index.html").unwrap_or_else(|| ApiError::not_found("the console is not built").into_response())
}
