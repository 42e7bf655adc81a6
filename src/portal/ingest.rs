//! The portal's side of the outbox: for each connected site, a loop that pulls the site's
//! streams over its link (`GET /v1/site/outbox`, a long poll the site answers as soon as it has
//! a record), commits each page to the store, and names the new cursors on the next pull: that
//! is the site's acknowledgement. A page is committed before it is acknowledged, and the store
//! skips records it holds, so a pull repeated after any crash neither loses nor doubles a record.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use hyper::client::conn::http2::SendRequest;
use tokio::sync::watch;

use super::store::{PortalStore, StoreError, StreamBatch, StreamRecord};
use crate::site::outbox::OutboxPage;

/// Records per stream in one pull.
pub const PULL_PAGE: usize = 500;
/// How long the site holds a pull open while it has nothing new, seconds.
const PULL_WAIT_SECONDS: u64 = 20;
/// The largest answer taken, bytes.
const MAX_ANSWER: usize = 64 << 20;

/// Why one pull failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The link failed or timed out.
    #[error("link: {0}")]
    Link(String),
    /// The site answered something else than a page.
    #[error("the site answered {0}")]
    Answer(String),
    /// The store could not commit.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Pull `site`'s outbox over `sender` into `store` until `link` closes (the portal forgot the
/// link: it ended, was replaced, or the site was removed); then the puller's client end drops
/// at once, so it never keeps a forgotten link open.
pub async fn run(site: String, mut sender: SendRequest<Body>, store: Arc<dyn PortalStore>, mut link: watch::Receiver<()>) {
    loop {
        let r = tokio::select! {
            _ = link.changed() => return,
            r = pull_once(&site, &mut sender, store.as_ref()) => r,
        };
        if let Err(e) = r {
            tracing::warn!(%site, error = %e, "pulling the site's outbox failed");
            tokio::select! {
                _ = link.changed() => return,
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    }
}

/// One pull and its commit; returns how many records it brought.
pub async fn pull_once(site: &str, sender: &mut SendRequest<Body>, store: &dyn PortalStore) -> Result<usize, PullError> {
    let states = store.stream_states(Some(site)).await?;
    let cursor = |name: &str| states.iter().find(|s| s.stream == name).map(|s| s.cursor).unwrap_or(0);
    let path = format!("/v1/site/outbox?events={}&audit={}&limit={PULL_PAGE}&wait_seconds={PULL_WAIT_SECONDS}", cursor("events"), cursor("audit"));
    let puller = [(crate::api::auth::OUTBOX_PULLER_HEADER, "1")];
    let within = Duration::from_secs(PULL_WAIT_SECONDS + 20);
    let (status, body) = super::over_link::get_over_link(site, sender, &path, &puller, within, MAX_ANSWER).await.map_err(PullError::Link)?;
    if status != StatusCode::OK {
        return Err(PullError::Answer(format!("{status}: {}", String::from_utf8_lossy(&body).chars().take(300).collect::<String>())));
    }
    let page: OutboxPage = serde_json::from_slice(&body).map_err(|e| PullError::Answer(format!("a page that does not parse: {e}")))?;
    let mut n = 0;
    let batches = page
        .streams
        .into_iter()
        .map(|(stream, p)| {
            n += p.records.len();
            let records = p.records.into_iter().map(|r| StreamRecord { seq: r.seq, time: r.time, body: r.record.to_string() }).collect();
            StreamBatch { stream, records, pruned_through: p.pruned_through, lost: p.lost, latest: p.latest }
        })
        .collect();
    store.ingest(site, batches).await?;
    if n > 0 {
        tracing::debug!(%site, records = n, "committed a page of the site's outbox");
    }
    Ok(n)
}
