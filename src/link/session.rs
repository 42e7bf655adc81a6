//! The site's side of the link: one outbound TLS connection to the portal, authenticated with
//! the site's certificate, on which the site *serves* HTTP/2 and the portal is the client (the
//! connection is reversed, as cloudflared's tunnels are), so the portal reaches the site's API
//! without ever connecting to the site.
//!
//! The link is told apart from a join by its ALPN protocol, [`LINK_ALPN`]. HTTP/2 pings every
//! 10 s (an answer within 10 s) and `TCP_USER_TIMEOUT` of 20 s find a dead link within 25 s.
//! A lost link is dialled again after a jittered, doubling back-off (1 s to 60 s; back to 1 s
//! once a link lasted a minute).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::JoinError;
use super::join::{identity, pinned_client_config};

/// The ALPN protocol of a link connection.
pub const LINK_ALPN: &[u8] = b"cloudlet-link/1";
/// Interval of the HTTP/2 pings, and how long an answer may take.
pub const PING: Duration = Duration::from_secs(10);
/// `TCP_USER_TIMEOUT` of the link socket: unacknowledged data for this long ends the connection.
pub const TCP_USER_TIMEOUT: Duration = Duration::from_secs(20);

/// Keep the link of the identity in `dir` up until `stop` changes, serving `app` to the portal on
/// it. Waits (polling every 2 s) while the site has joined no portal.
pub async fn run(dir: PathBuf, app: axum::Router, mut stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let wait = match identity(&dir) {
            Ok(Some(id)) => {
                let began = Instant::now();
                match connect(&dir, &id.portal).await {
                    Ok(tls) => {
                        tracing::info!(portal = %id.portal, site = %id.site, "portal link up");
                        serve(tls, app.clone(), stop.clone()).await;
                        tracing::warn!(portal = %id.portal, lasted_s = began.elapsed().as_secs(), "portal link down");
                    }
                    Err(e) => tracing::warn!(portal = %id.portal, error = %e, "portal link failed"),
                }
                if began.elapsed() > Duration::from_secs(60) {
                    backoff = Duration::from_secs(1);
                }
                let w = jitter(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(60));
                w
            }
            Ok(None) => Duration::from_secs(2),
            Err(e) => {
                tracing::warn!(error = %e, "reading the portal identity failed");
                Duration::from_secs(10)
            }
        };
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// `d` ± 25 %.
fn jitter(d: Duration) -> Duration {
    let f: f64 = 0.75 + rand::random::<f64>() * 0.5;
    d.mul_f64(f)
}

/// Dial the portal at `url` (`https://HOST:PORT`) and complete the TLS handshake with the
/// site's certificate, trusting only the portal CA in `dir`.
async fn connect(dir: &Path, url: &str) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, JoinError> {
    let authority = url.strip_prefix("https://").unwrap_or(url);
    let (host, addr) = match authority.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => (h.trim_matches(['[', ']']), authority.to_string()),
        _ => (authority, format!("{authority}:443")),
    };
    let tcp = tokio::time::timeout(Duration::from_secs(10), tokio::net::TcpStream::connect(&addr))
        .await
        .map_err(|_| JoinError::Unreachable(format!("connecting to {addr} timed out")))?
        .map_err(|e| JoinError::Unreachable(format!("connecting to {addr}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let sock = socket2::SockRef::from(&tcp);
    let _ = sock.set_tcp_user_timeout(Some(TCP_USER_TIMEOUT));
    let _ = sock.set_keepalive(true);
    let mut cfg = pinned_client_config(dir)?;
    cfg.alpn_protocols = vec![LINK_ALPN.to_vec()];
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| JoinError::BadUrl(format!("{url}: {e}")))?;
    let tls = tokio::time::timeout(Duration::from_secs(10), tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp))
        .await
        .map_err(|_| JoinError::Unreachable("the TLS handshake timed out".into()))?
        .map_err(|e| JoinError::Unreachable(format!("TLS: {e}")))?;
    if tls.get_ref().1.alpn_protocol() != Some(LINK_ALPN) {
        return Err(JoinError::BadAnswer("the portal did not take the link protocol".into()));
    }
    Ok(tls)
}

/// Serve `app` over HTTP/2 on the link until it ends or `stop` changes.
async fn serve(tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>, app: axum::Router, mut stop: watch::Receiver<bool>) {
    let svc = hyper_util::service::TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder.timer(hyper_util::rt::TokioTimer::new()).keep_alive_interval(PING).keep_alive_timeout(PING);
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(tls), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => if let Err(e) = r { tracing::debug!(error = %e, "link connection ended") },
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}
