//! Serving one request with a function: the body and concurrency limits, a fresh instance on the
//! engine ([`crate::function`]), and one JSON error per failure (404/413/503/504/502); every
//! outcome is counted in the function's metrics, and failures get a line in its log.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::function_metrics::Outcome;
use super::functions::{Endpoint, FunctionState, Route};
use crate::function::{FunctionError, LogSink, Stream};

/// A gateway's own answer: `{"error": {"code", "message"}}` with `status`.
pub fn gateway_error(status: StatusCode, code: &str, message: String) -> Response<HyperOutgoingBody> {
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    let mut r = Response::new(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed_unsync());
    *r.status_mut() = status;
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    r
}

impl Endpoint {
    /// The inode of the endpoint's namespace now (None: it is gone); a listener bound in a
    /// namespace that was since made anew has a different one.
    pub fn namespace_inode(&self) -> Option<u64> {
        crate::net::services::netns_inode(&self.netns)
    }
}

impl FunctionState {
    /// Serve `req` with the function of `route`: its body limit (413), its concurrency limit and
    /// its project's share of the pool (503), then a fresh instance; timeouts answer 504 and failures 502. Every outcome is counted in the
    /// function's metrics, and failures get a line in its log.
    pub async fn serve<B>(&self, route: &Route, req: Request<B>) -> Response<HyperOutgoingBody>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let declared = req.headers().get(hyper::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > route.max_body) {
            route.stats.refused(Outcome::TooLarge);
            return gateway_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("function {} takes bodies of at most {} bytes", route.name, route.max_body),
            );
        }
        let Ok(_permit) = route.slots.clone().try_acquire_owned() else {
            route.stats.refused(Outcome::Busy);
            return gateway_error(StatusCode::SERVICE_UNAVAILABLE, "busy", format!("function {} is serving its maximum of concurrent requests", route.name));
        };
        // The project's share of the site's instance pool, so that no project's requests can
        // hold every instance (see `function_shares`).
        let Some(_share) = self.shares.try_acquire(&route.project) else {
            route.stats.refused(Outcome::Busy);
            let share = self.shares.share();
            return gateway_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                format!("the project's functions are serving their share of the site's function pool ({share} requests at once)"),
            );
        };
        // A body without a length is cut at the limit (the guest sees a failed read).
        let req = req.map(|b| {
            http_body_util::Limited::new(b, route.max_body as usize).map_err(|_| wasmtime_wasi_http::Error::from(ErrorCode::HttpRequestBodySize(None)))
        });
        let cold = route.loaded.take_cold();
        let t0 = std::time::Instant::now();
        let out = self.engine.invoke(&route.loaded, req, &route.inv).await;
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
                gateway_error(StatusCode::GATEWAY_TIMEOUT, "timeout", format!("function {} ran longer than {} ms", route.name, d.as_millis()))
            }
            Err(e) => {
                route.stats.observe(Outcome::Failed, cold, elapsed);
                tracing::warn!(function = %route.name, error = %e, "function failed");
                route.log.line(Stream::Host, &format!("request failed (502): {e}"));
                gateway_error(StatusCode::BAD_GATEWAY, "function_failed", format!("function {} failed: {e}", route.name))
            }
        }
    }
}
