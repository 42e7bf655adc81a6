//! The links the portal holds: for each connected site, the HTTP/2 client end of the
//! connection the site dialled (the site serves its API on it), and the proxy that forwards
//! `/v1/sites/{site}/api/...` to the site's `/v1/...` over it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{HeaderName, Request, Response, StatusCode, header};
use hyper::client::conn::http2::SendRequest;

use crate::api::error::ApiError;
use crate::link::session::PING;

/// One connected site.
#[derive(Clone)]
struct Link {
    id: u64,
    sender: SendRequest<Body>,
    since: SystemTime,
    /// Dropped with the last copy of the entry, which ends the link's outbox puller.
    _held: Arc<tokio::sync::watch::Sender<()>>,
}

/// The connected sites, by name.
#[derive(Clone, Default)]
pub struct Links(Arc<Mutex<HashMap<String, Link>>>);

impl Links {
    /// When `site`'s link came up, if it is connected.
    pub fn connected_since(&self, site: &str) -> Option<SystemTime> {
        self.0.lock().ok()?.get(site).map(|l| l.since)
    }

    /// Forget `site`'s link: dropping the portal's client end closes the connection (HTTP/2
    /// GOAWAY), so the link of a removed site ends at once.
    pub fn drop_site(&self, site: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(site);
        }
    }

    /// Take over the TLS connection `io` that `site` dialled: be its HTTP/2 client (pings every
    /// [`PING`]) until it ends, pulling the site's outbox into `store` meanwhile
    /// ([`super::ingest`]) and keeping its inventory ([`super::inventory`]). A newer link of the same site replaces an older one.
    pub async fn hold<IO>(&self, site: String, io: IO, store: std::sync::Arc<dyn super::store::PortalStore>)
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let mut builder = hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
        builder.timer(hyper_util::rt::TokioTimer::new()).keep_alive_interval(PING).keep_alive_timeout(PING).keep_alive_while_idle(true);
        let (sender, conn) = match builder.handshake(hyper_util::rt::TokioIo::new(io)).await {
            Ok(x) => x,
            Err(e) => return tracing::warn!(%site, error = %e, "link handshake failed"),
        };
        let id: u64 = rand::random();
        let (held, watched) = tokio::sync::watch::channel(());
        if let Ok(mut m) = self.0.lock() {
            m.insert(site.clone(), Link { id, sender: sender.clone(), since: SystemTime::now(), _held: Arc::new(held) });
        }
        // A removal that committed between the certificate check and the insert above: its
        // drop_site ran before the insert, so the link goes now.
        match store.site(&site).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                self.drop_site(&site);
                return tracing::warn!(%site, "refused the link of a site removed meanwhile");
            }
            Err(e) => {
                self.drop_site(&site);
                return tracing::warn!(%site, error = %e, "refused a link: the store cannot confirm its site");
            }
        }
        tracing::info!(%site, "site connected");
        event(store.as_ref(), &site, "connected", "the site's link is up").await;
        tokio::spawn(super::inventory::run(site.clone(), sender.clone(), store.clone(), watched.clone()));
        tokio::spawn(super::ingest::run(site.clone(), sender, store.clone(), watched));
        if let Err(e) = conn.await {
            tracing::debug!(%site, error = %e, "link connection ended");
        }
        if let Ok(mut m) = self.0.lock()
            && m.get(&site).is_some_and(|l| l.id == id)
        {
            m.remove(&site);
        }
        tracing::warn!(%site, "site disconnected");
        event(store.as_ref(), &site, "disconnected", "the site's link ended").await;
    }

    /// Send `req` (its path already the site's, `/v1/...`) to `site` as portal user `user`, and
    /// stream back the answer. Errors: 503 `site_disconnected`; 502 `link_failed`.
    pub async fn forward(&self, site: &str, user: &str, mut req: Request<Body>) -> Result<Response<Body>, ApiError> {
        let link = self.0.lock().ok().and_then(|m| m.get(site).cloned());
        let Some(mut link) = link else {
            return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "site_disconnected", format!("site {site} has no link to the portal now")));
        };
        // Hop-by-hop headers and the portal's own credentials stay here (RFC 9110 §7.6.1).
        let h = req.headers_mut();
        for name in [header::AUTHORIZATION, header::COOKIE, header::HOST, header::CONNECTION, header::TRANSFER_ENCODING, header::UPGRADE, header::TE] {
            h.remove(name);
        }
        h.remove(HeaderName::from_static("keep-alive"));
        h.remove(HeaderName::from_static("proxy-connection"));
        // Only the portal's own puller acknowledges the site's outbox.
        h.remove(HeaderName::from_static(crate::api::auth::OUTBOX_PULLER_HEADER));
        if let Ok(v) = user.parse() {
            h.insert(HeaderName::from_static(crate::api::auth::PORTAL_USER_HEADER), v);
        }
        *req.version_mut() = axum::http::Version::HTTP_2;
        // HTTP/2 requests carry :scheme and :authority (RFC 9113 §8.3.1): the site's name.
        let path = req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
        *req.uri_mut() = format!("http://{site}{path}").parse().map_err(|_| ApiError::bad_request("the path cannot be forwarded").with_field("path"))?;
        let ready = tokio::time::timeout(Duration::from_secs(10), link.sender.ready()).await;
        if !matches!(ready, Ok(Ok(()))) {
            return Err(ApiError::new(StatusCode::BAD_GATEWAY, "link_failed", format!("the link to site {site} is not ready")));
        }
        let resp = link.sender.send_request(req).await.map_err(|e| {
            let cause = std::error::Error::source(&e).map(|c| format!(": {c}")).unwrap_or_default();
            ApiError::new(StatusCode::BAD_GATEWAY, "link_failed", format!("the link to site {site} failed: {e}{cause}"))
        })?;
        Ok(resp.map(Body::new))
    }
}

/// Record a fleet event; a store failure is logged, never fatal.
pub async fn event(store: &dyn super::store::PortalStore, site: &str, event_type: &str, message: &str) {
    if let Err(e) = store.add_event(site, event_type, message).await {
        tracing::warn!(%site, event_type, error = %e, "recording a portal event failed");
    }
}
