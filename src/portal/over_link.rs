//! One call of the portal's own over a site's link (the outbox puller's and the inventory
//! reader's): a bounded GET, as the portal user `portal`.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use hyper::client::conn::http2::SendRequest;

/// GET `path` on `site` over the link as the portal itself (user `portal`, with `headers`
/// besides), within `within`, reading at most `max` bytes of the answer: (status, body).
/// Errors: the link's failure, a timeout, or an answer over `max`, as text.
pub async fn get_over_link(
    site: &str,
    sender: &mut SendRequest<Body>,
    path: &str,
    headers: &[(&'static str, &'static str)],
    within: Duration,
    max: usize,
) -> Result<(StatusCode, bytes::Bytes), String> {
    let mut b = Request::get(format!("http://{site}{path}")).header(crate::api::auth::PORTAL_USER_HEADER, "portal");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(Body::empty()).map_err(|e| format!("building the request: {e}"))?;
    tokio::time::timeout(within, async {
        sender.ready().await.map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = http_body_util::BodyExt::collect(http_body_util::Limited::new(resp.into_body(), max)).await.map_err(|e| e.to_string())?.to_bytes();
        Ok((status, body))
    })
    .await
    .map_err(|_| format!("no answer in {} s", within.as_secs()))?
}
