//! The functions' HTTP gateway: a listener of its own that routes each request by `Host` and
//! path prefix to a function and serves it with a fresh instance ([`crate::function`]).
//!
//! Answers of its own: 404 `not_found` when no function matches, 504 `timeout` when the function
//! ran past its CPU budget, 502 `function_failed` when it trapped, ran out of memory or never
//! answered; each is a JSON error and a log line, and other requests are unaffected.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::function::{FunctionEngine, FunctionError, LogSink, Stream};
use crate::site::Site;
use crate::site::function_metrics::Outcome;
use crate::site::functions::Route;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;

fn error(status: StatusCode, code: &str, message: String) -> Response<HyperOutgoingBody> {
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    let mut r = Response::new(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed_unsync());
    *r.status_mut() = status;
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    r
}

/// Serve one gateway request.
pub async fn handle(site: Site, req: Request<Incoming>) -> Result<Response<HyperOutgoingBody>, std::convert::Infallible> {
    let fs = match site.functions() {
        Ok(f) => f,
        Err(e) => return Ok(error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string())),
    };
    let host = req.headers().get(hyper::header::HOST).and_then(|h| h.to_str().ok()).map(str::to_string);
    let path = req.uri().path().to_string();
    let Some(route) = fs.route(host.as_deref(), &path) else {
        return Ok(error(StatusCode::NOT_FOUND, "not_found", format!("no function serves {path}")));
    };
    Ok(dispatch(&fs.engine, &route, req).await)
}

/// Serve `req` with the function of `route`: its body limit (413), its concurrency limit (503),
/// then a fresh instance; timeouts answer 504 and failures 502. Every outcome is counted in the
/// function's metrics, and failures get a line in its log.
pub async fn dispatch<B>(engine: &FunctionEngine, route: &Route, req: Request<B>) -> Response<HyperOutgoingBody>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let declared = req.headers().get(hyper::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > route.max_body) {
        route.stats.refused(Outcome::TooLarge);
        return error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", format!("function {} takes bodies of at most {} bytes", route.name, route.max_body));
    }
    let Ok(_permit) = route.slots.clone().try_acquire_owned() else {
        route.stats.refused(Outcome::Busy);
        return error(StatusCode::SERVICE_UNAVAILABLE, "busy", format!("function {} is serving its maximum of concurrent requests", route.name));
    };
    // A body without a length is cut at the limit (the guest sees a failed read).
    let req = req.map(|b| http_body_util::Limited::new(b, route.max_body as usize).map_err(|_| wasmtime_wasi_http::Error::from(ErrorCode::HttpRequestBodySize(None))));
    let cold = route.loaded.take_cold();
    let t0 = std::time::Instant::now();
    let out = engine.invoke(&route.loaded, req, &route.inv).await;
    let elapsed = t0.elapsed();
    let ms = elapsed.as_secs_f64() * 1000.0;
    match out {
        Ok(resp) => {
            route.stats.observe(Outcome::Ok, cold, elapsed);
            tracing::debug!(function = %route.name, status = resp.status().as_u16(), ms, cold, "function answered");
            resp
        }
        Err(FunctionError::Timeout(d)) => {
            route.stats.observe(Outcome::Timeout, cold, elapsed);
            tracing::warn!(function = %route.name, ms, "function timed out");
            route.log.line(Stream::Host, &format!("request timed out after {} ms of CPU time (504)", d.as_millis()));
            error(StatusCode::GATEWAY_TIMEOUT, "timeout", format!("function {} ran longer than {} ms", route.name, d.as_millis()))
        }
        Err(e) => {
            route.stats.observe(Outcome::Failed, cold, elapsed);
            tracing::warn!(function = %route.name, error = %e, "function failed");
            route.log.line(Stream::Host, &format!("request failed (502): {e}"));
            error(StatusCode::BAD_GATEWAY, "function_failed", format!("function {} failed: {e}", route.name))
        }
    }
}

/// Accept connections on `l` until `stop` changes.
pub async fn serve(site: Site, l: tokio::net::TcpListener, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        let conn = tokio::select! {
            c = l.accept() => c,
            _ = stop.changed() => return,
        };
        let Ok((tcp, _)) = conn else { continue };
        let _ = tcp.set_nodelay(true);
        let site = site.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(site.clone(), req));
            let io = hyper_util::rt::TokioIo::new(tcp);
            if let Err(e) = hyper::server::conn::http1::Builder::new().keep_alive(true).serve_connection(io, svc).await {
                tracing::debug!(error = %e, "gateway connection ended");
            }
        });
    }
}
