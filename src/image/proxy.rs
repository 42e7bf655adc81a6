//! The egress proxy of one pull: `oci-client` gives no say over how its HTTP client resolves
//! names or follows redirects, but it takes an HTTP(S) proxy. Each pull starts this proxy on a
//! loopback port with a one-time credential, and points the client's `http_proxy` and
//! `https_proxy` at it, so every connection of the pull — the registry, every redirect (blob
//! downloads often redirect to object storage), the token realm of a `WWW-Authenticate`
//! challenge — comes here. The proxy resolves the target once, checks the addresses against the
//! site's egress policy (`net::egress`), and connects to the address that passed: `CONNECT`
//! tunnels for HTTPS (TLS stays end to end, verified by the client), absolute-form requests
//! forwarded for plain HTTP. A refused or unreachable target is an empty `502`, the same for a
//! closed port as for a refused one; the reason goes to the daemon's log at debug level.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

use crate::net::egress::EgressPolicy;

/// Longest wait for a connection to a registry.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// What every connection of the proxy shares.
struct Shared {
    policy: Arc<EgressPolicy>,
    /// The `Proxy-Authorization` value the client must send.
    auth: HeaderValue,
    /// Ends every task of the proxy when its sender (in [`EgressProxy`]) is dropped.
    stop: tokio::sync::watch::Receiver<()>,
}

/// A running proxy; stopped, with every connection and tunnel it holds, on drop.
pub(super) struct EgressProxy {
    url: String,
    _stop: tokio::sync::watch::Sender<()>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for EgressProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Resolves when the proxy is stopped.
async fn stopped(mut stop: tokio::sync::watch::Receiver<()>) {
    while stop.changed().await.is_ok() {}
}

impl EgressProxy {
    /// Start a proxy on `127.0.0.1` that lets connections through to what `policy` permits.
    pub(super) async fn start(policy: Arc<EgressPolicy>) -> std::io::Result<EgressProxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let secret = hex::encode(rand::random::<[u8; 16]>());
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("pull:{secret}"));
        let auth = HeaderValue::from_str(&format!("Basic {basic}")).map_err(std::io::Error::other)?;
        let (tx, rx) = tokio::sync::watch::channel(());
        let shared = Arc::new(Shared { policy, auth, stop: rx });
        let accept = tokio::spawn(accept_loop(listener, shared));
        Ok(EgressProxy { url: format!("http://pull:{secret}@127.0.0.1:{port}"), _stop: tx, accept })
    }

    /// The proxy URL for the HTTP client (with its credential).
    pub(super) fn url(&self) -> &str {
        &self.url
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let stream = tokio::select! {
            a = listener.accept() => match a {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::debug!(error = %e, "pull proxy: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(shared.stop.clone()) => return,
        };
        let s = shared.clone();
        tokio::spawn(async move {
            let stop = s.stop.clone();
            let svc = hyper::service::service_fn(move |req| handle(req, s.clone()));
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).with_upgrades();
            tokio::select! {
                r = conn => if let Err(e) = r { tracing::debug!(error = %e, "pull proxy: client connection ended") },
                _ = stopped(stop) => {}
            }
        });
    }
}

fn answer(status: StatusCode) -> Response<ProxyBody> {
    let mut r = Response::new(Empty::<Bytes>::new().map_err(|never| match never {}).boxed());
    *r.status_mut() = status;
    r
}

/// Resolve `host` once, check it, and connect to the address that passed. `None` (logged at
/// debug) when refused, unresolvable or unreachable: the client learns no more than that.
async fn connect(policy: &EgressPolicy, host: &str, port: u16) -> Option<TcpStream> {
    let addr = match policy.resolve(host, port).await {
        Ok(a) => a,
        Err(e) => {
            tracing::debug!(host, port, error = %e, "pull: destination refused or not resolved");
            return None;
        }
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::debug!(host, %addr, error = %e, "pull: connecting failed");
            None
        }
        Err(_) => {
            tracing::debug!(host, %addr, "pull: connecting timed out");
            None
        }
    }
}

/// Headers of one hop only, never forwarded (the proxy credential among them).
fn strip_hop_headers(h: &mut HeaderMap) {
    for name in [header::PROXY_AUTHORIZATION, header::PROXY_AUTHENTICATE, header::CONNECTION, header::TE, header::TRAILER, header::UPGRADE] {
        h.remove(name);
    }
    h.remove("proxy-connection");
    h.remove("keep-alive");
}

async fn handle(req: Request<Incoming>, shared: Arc<Shared>) -> Result<Response<ProxyBody>, hyper::Error> {
    if req.headers().get(header::PROXY_AUTHORIZATION) != Some(&shared.auth) {
        return Ok(answer(StatusCode::PROXY_AUTHENTICATION_REQUIRED));
    }
    if req.method() == Method::CONNECT {
        let Some(authority) = req.uri().authority().cloned() else { return Ok(answer(StatusCode::BAD_REQUEST)) };
        let Some(mut upstream) = connect(&shared.policy, authority.host(), authority.port_u16().unwrap_or(443)).await else {
            return Ok(answer(StatusCode::BAD_GATEWAY));
        };
        let stop = shared.stop.clone();
        tokio::spawn(async move {
            let upgraded = match hyper::upgrade::on(req).await {
                Ok(u) => u,
                Err(e) => {
                    tracing::debug!(error = %e, "pull proxy: the tunnel was not taken up");
                    return;
                }
            };
            let mut client = TokioIo::new(upgraded);
            tokio::select! {
                r = tokio::io::copy_bidirectional(&mut client, &mut upstream) => if let Err(e) = r { tracing::debug!(error = %e, "pull proxy: tunnel ended") },
                _ = stopped(stop) => {}
            }
        });
        return Ok(answer(StatusCode::OK));
    }
    let uri = req.uri().clone();
    let (Some("http"), Some(authority)) = (uri.scheme_str(), uri.authority().cloned()) else {
        return Ok(answer(StatusCode::BAD_REQUEST));
    };
    let Some(upstream) = connect(&shared.policy, authority.host(), authority.port_u16().unwrap_or(80)).await else {
        return Ok(answer(StatusCode::BAD_GATEWAY));
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await {
        Ok(x) => x,
        Err(e) => {
            tracing::debug!(%authority, error = %e, "pull proxy: HTTP handshake failed");
            return Ok(answer(StatusCode::BAD_GATEWAY));
        }
    };
    let stop = shared.stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            r = conn => if let Err(e) = r { tracing::debug!(error = %e, "pull proxy: upstream connection ended") },
            _ = stopped(stop) => {}
        }
    });
    let (mut parts, body) = req.into_parts();
    let Ok(origin) = hyper::Uri::try_from(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")) else {
        return Ok(answer(StatusCode::BAD_REQUEST));
    };
    parts.uri = origin;
    strip_hop_headers(&mut parts.headers);
    if !parts.headers.contains_key(header::HOST)
        && let Ok(h) = HeaderValue::from_str(authority.as_str())
    {
        parts.headers.insert(header::HOST, h);
    }
    match sender.send_request(Request::from_parts(parts, body)).await {
        Ok(res) => {
            let (mut parts, body) = res.into_parts();
            strip_hop_headers(&mut parts.headers);
            Ok(Response::from_parts(parts, body.boxed()))
        }
        Err(e) => {
            tracing::debug!(%authority, error = %e, "pull proxy: the upstream request failed");
            Ok(answer(StatusCode::BAD_GATEWAY))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A loopback server that answers each connection with what it read, prefixed by `seen:`.
    async fn echo_server() -> u16 {
        let l = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let port = l.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let reply = if text.starts_with("GET ") {
                        let body = format!("seen:{text}");
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                    } else {
                        format!("seen:{text}")
                    };
                    let _ = s.write_all(reply.as_bytes()).await;
                });
            }
        });
        port
    }

    /// Send `req` to the proxy and read what comes back until the peer closes or `until` shows.
    async fn exchange(proxy: u16, req: &str, until: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", proxy)).await.expect("connect");
        s.write_all(req.as_bytes()).await.expect("write");
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains(until) {
            match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    }

    #[tokio::test]
    async fn tunnels_and_forwards_only_what_the_policy_permits_and_only_with_the_credential() {
        let allowed = echo_server().await;
        let other = echo_server().await;
        let policy = EgressPolicy::new(&[format!("127.0.0.1:{allowed}")], &[]).expect("rule");
        let p = EgressProxy::start(Arc::new(policy)).await.expect("proxy");
        let url = p.url().to_string();
        let rest = url.strip_prefix("http://pull:").expect("url");
        let (secret, hostport) = rest.split_once('@').expect("credential");
        let port: u16 = hostport.rsplit(':').next().and_then(|x| x.parse().ok()).expect("port");
        let auth = format!("Proxy-Authorization: Basic {}\r\n", base64::engine::general_purpose::STANDARD.encode(format!("pull:{secret}")));

        // A tunnel to the permitted address and port carries bytes both ways.
        let got = exchange(port, &format!("CONNECT 127.0.0.1:{allowed} HTTP/1.1\r\nHost: 127.0.0.1:{allowed}\r\n{auth}\r\nping"), "seen:ping").await;
        assert!(got.starts_with("HTTP/1.1 200") && got.contains("seen:ping"), "{got}");
        // Another port of the same address, the metadata address, a name for loopback: 502, nothing more.
        for target in [format!("127.0.0.1:{other}"), "169.254.169.254:443".into(), format!("localhost:{other}")] {
            let got = exchange(port, &format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{auth}\r\n"), "\r\n\r\n").await;
            assert!(got.starts_with("HTTP/1.1 502"), "{target}: {got}");
        }
        // Without the credential: 407, and nothing is forwarded.
        let got = exchange(port, &format!("CONNECT 127.0.0.1:{allowed} HTTP/1.1\r\nHost: 127.0.0.1:{allowed}\r\n\r\n"), "\r\n\r\n").await;
        assert!(got.starts_with("HTTP/1.1 407"), "{got}");
        // Plain HTTP: forwarded in origin form, without the proxy credential.
        let got = exchange(port, &format!("GET http://127.0.0.1:{allowed}/v2/ HTTP/1.1\r\nHost: 127.0.0.1:{allowed}\r\n{auth}\r\n"), "seen:").await;
        assert!(got.starts_with("HTTP/1.1 200") && got.contains("seen:GET /v2/ HTTP/1.1"), "{got}");
        assert!(!got.to_ascii_lowercase().contains("proxy-authorization"), "the credential stays with the proxy: {got}");
        let got = exchange(port, &format!("GET http://127.0.0.1:{other}/v2/ HTTP/1.1\r\nHost: 127.0.0.1:{other}\r\n{auth}\r\n"), "\r\n\r\n").await;
        assert!(got.starts_with("HTTP/1.1 502"), "{got}");
        // Dropping the proxy closes its port.
        drop(p);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(TcpStream::connect(("127.0.0.1", port)).await.is_err(), "the proxy is gone");
    }
}
