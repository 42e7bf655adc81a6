//! The functions' HTTP gateway: a listener of its own that routes each request by `Host` and
//! path prefix to a function and serves it with a fresh instance ([`crate::function`]).
//!
//! Functions attached to a network interface are also served on a listener inside that
//! interface's namespace ([`serve_endpoints`]).
//!
//! Answers of its own: 404 `not_found` when no function matches, 504 `timeout` when the function
//! ran past its CPU budget, 502 `function_failed` when it trapped, ran out of memory or never
//! answered; each is a JSON error and a log line, and other requests are unaffected.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::function::{FunctionEngine, FunctionError, LogSink, Stream};
use crate::net::services::netns_inode;
use crate::site::Site;
use crate::site::function_metrics::Outcome;
use crate::site::functions::{ENDPOINT_PORT, Endpoint, Route};
use std::collections::HashMap;
use std::sync::Arc;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;

fn error(status: StatusCode, code: &str, message: String) -> Response<HyperOutgoingBody> {
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    let mut r = Response::new(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed_unsync());
    *r.status_mut() = status;
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    r
}

/// Serve one gateway request; on a network interface's endpoint (`eni`), only among the
/// functions served there.
pub async fn handle<B>(site: Site, eni: Option<Arc<str>>, req: Request<B>) -> Result<Response<HyperOutgoingBody>, std::convert::Infallible>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let fs = match site.functions() {
        Ok(f) => f,
        Err(e) => return Ok(error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string())),
    };
    let host = req.headers().get(hyper::header::HOST).and_then(|h| h.to_str().ok()).map(str::to_string);
    let path = req.uri().path().to_string();
    let found = match &eni {
        None => fs.route(host.as_deref(), &path),
        Some(e) => fs.route_on(e, host.as_deref(), &path),
    };
    let Some(route) = found else {
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
    let req = req
        .map(|b| http_body_util::Limited::new(b, route.max_body as usize).map_err(|_| wasmtime_wasi_http::Error::from(ErrorCode::HttpRequestBodySize(None))));
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
pub async fn serve(site: Site, l: tokio::net::TcpListener, stop: tokio::sync::watch::Receiver<bool>) {
    serve_on(site, l, stop, None).await
}

async fn serve_on(site: Site, l: tokio::net::TcpListener, stop: tokio::sync::watch::Receiver<bool>, eni: Option<Arc<str>>) {
    super::listener::serve(l, move |req, _peer| handle(site.clone(), eni.clone(), req), stop, true).await
}

struct Running {
    at: Endpoint,
    inode: u64,
    task: tokio::task::JoinHandle<()>,
}

/// Keep a listener on each network interface that functions are served on (`Endpoint`), inside
/// the interface's namespace, until `stop` changes: checked every second, so a function attached
/// to an interface, an interface that becomes ready, or a namespace made anew (after a reboot)
/// gets its listener within a second or so; a listener nobody needs is closed.
pub async fn serve_endpoints(site: Site, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut failing: HashMap<String, String> = HashMap::new();
    loop {
        let want = site.run(|s| s.function_endpoints()).await.unwrap_or_default();
        running.retain(|eni, r| {
            let keep = want.contains(&r.at) && netns_inode(&r.at.netns) == Some(r.inode);
            if !keep {
                r.task.abort();
                tracing::info!(network_interface = %eni, "function endpoint closed");
            }
            keep
        });
        for e in want {
            if running.contains_key(&e.interface) {
                continue;
            }
            let (s, at) = (site.clone(), e.clone());
            let bound = tokio::task::spawn_blocking(move || s.bind_function_endpoint(&at)).await;
            match bound.map_err(|e| e.to_string()).and_then(|r| r.map_err(|e| e.to_string())) {
                Ok((l, inode)) => match tokio::net::TcpListener::from_std(l) {
                    Ok(l) => {
                        failing.remove(&e.interface);
                        tracing::info!(network_interface = %e.interface, addr = %format!("{}:{ENDPOINT_PORT}", e.ip), netns = %e.netns, "function endpoint listening");
                        let task = tokio::spawn(serve_on(site.clone(), l, stop.clone(), Some(Arc::from(e.interface.as_str()))));
                        running.insert(e.interface.clone(), Running { at: e, inode, task });
                    }
                    Err(err) => tracing::warn!(network_interface = %e.interface, error = %err, "function endpoint"),
                },
                Err(err) => {
                    if failing.get(&e.interface) != Some(&err) {
                        tracing::warn!(network_interface = %e.interface, error = %err, "function endpoint cannot listen");
                        failing.insert(e.interface.clone(), err);
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            _ = stop.changed() => break,
        }
    }
    for r in running.values() {
        r.task.abort();
    }
}
