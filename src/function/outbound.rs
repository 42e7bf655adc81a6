//! Functions' outbound HTTP under the site's egress policy (`net::egress`): the authority's host
//! is resolved once, every address checked, and the connection made to the very address that
//! passed (no second resolution, so no DNS rebinding); then plain HTTP/1.1, or TLS verified
//! against the web PKI roots with the host's name, as `wasmtime-wasi-http`'s default client does.
//! A refused address is `destination-IP-prohibited` to the guest and a `host` line in the
//! function's log. A function in a VPC connects from its network interface's namespace, so its
//! requests leave through the VPC (its routes, NAT gateway and security groups), not the host.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

use super::{LogSink, OutgoingFuture, Stream};
use crate::net::egress::{EgressError, EgressPolicy};

/// Longest wait for the connection (TCP, then TLS, then the HTTP handshake), whatever the guest asks.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the response head.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest pause between two parts of the response body.
pub const BETWEEN_BYTES_TIMEOUT: Duration = Duration::from_secs(30);

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// The TLS client configuration: ring, the web PKI roots, no client certificate.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, Error> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    if let Some(c) = CONFIG.get() {
        return Ok(c.clone());
    }
    let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|_| Error::TlsProtocolError)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(CONFIG.get_or_init(|| Arc::new(config)).clone())
}

/// The name the server's certificate must carry: an IP address or a DNS name.
fn server_name(host: &str) -> Result<rustls::pki_types::ServerName<'static>, Error> {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => Ok(rustls::pki_types::ServerName::from(ip)),
        Err(_) => rustls::pki_types::ServerName::try_from(bare.to_string()).map_err(|_| Error::HttpRequestUriInvalid),
    }
}

/// A response body that fails with `connection-read-timeout` when no part of it comes for `limit`.
struct TimedBody {
    inner: Incoming,
    limit: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let next = tokio::time::Instant::now() + this.limit;
                this.sleep.as_mut().reset(next);
                Poll::Ready(frame.map(|f| f.map_err(Error::from)))
            }
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A timeout the guest asked for, capped by `max` (the default too).
fn bounded(asked: Option<Duration>, max: Duration) -> Duration {
    asked.unwrap_or(max).min(max).max(Duration::from_millis(1))
}

/// A TCP connection to `addr`, from namespace `netns` (the function's VPC) or the host's.
async fn connect(netns: Option<String>, addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let Some(ns) = netns else { return tokio::net::TcpStream::connect(addr).await };
    let socket = tokio::task::spawn_blocking(move || crate::net::services::tcp_socket_in(&ns, addr.is_ipv6()))
        .await
        .map_err(std::io::Error::other)?
        .map_err(std::io::Error::other)?;
    socket.set_nonblocking(true)?;
    tokio::net::TcpSocket::from_std_stream(std::net::TcpStream::from(socket)).connect(addr).await
}

/// Send `req` (already on the function's allow-list) under `policy`, connecting from `netns`
/// when the function is in a VPC; `log` gets a `host` line when the destination is refused or
/// cannot be resolved.
pub(super) async fn send(
    policy: Arc<EgressPolicy>,
    log: Arc<dyn LogSink>,
    netns: Option<String>,
    mut req: hyper::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<(hyper::Response<WasiBody>, OutgoingFuture), Error> {
    let uri = req.uri().clone();
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") | None => false,
        Some(_) => return Err(Error::HttpRequestUriInvalid),
    };
    let authority = uri.authority().ok_or(Error::HttpRequestUriInvalid)?;
    let host = authority.host();
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let addr = match policy.resolve(host, port).await {
        Ok(a) => a,
        Err(e @ EgressError::Denied { .. }) => {
            log.line(Stream::Host, &format!("outbound request to {authority} refused: {e}"));
            return Err(Error::DestinationIpProhibited);
        }
        Err(e) => {
            log.line(Stream::Host, &format!("outbound request to {authority} failed: {e}"));
            return Err(Error::DnsError { rcode: None, info_code: None });
        }
    };
    let connect = bounded(options.and_then(|o| o.connect_timeout), CONNECT_TIMEOUT);
    let first_byte = bounded(options.and_then(|o| o.first_byte_timeout), FIRST_BYTE_TIMEOUT);
    let between = bounded(options.and_then(|o| o.between_bytes_timeout), BETWEEN_BYTES_TIMEOUT);

    let tcp = match tokio::time::timeout(connect, self::connect(netns, addr)).await {
        Err(_) => return Err(Error::ConnectionTimeout),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Err(Error::ConnectionRefused),
        Ok(Err(e)) => return Err(Error::Connect(e)),
        Ok(Ok(s)) => s,
    };
    let io: Box<dyn Io> = if tls {
        let connector = tokio_rustls::TlsConnector::from(tls_config()?);
        let stream =
            tokio::time::timeout(connect, connector.connect(server_name(host)?, tcp)).await.map_err(|_| Error::ConnectionTimeout)?.map_err(Error::Tls)?;
        Box::new(stream)
    } else {
        Box::new(tcp)
    };
    let (mut sender, conn) =
        tokio::time::timeout(connect, hyper::client::conn::http1::handshake(TokioIo::new(io))).await.map_err(|_| Error::ConnectionTimeout)??;
    let conn = tokio::spawn(conn);
    // The request line carries the path only (the authority is in the Host header).
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    *req.uri_mut() = hyper::Uri::try_from(path).map_err(|_| Error::HttpRequestUriInvalid)?;
    let res = tokio::time::timeout(first_byte, sender.send_request(req)).await.map_err(|_| Error::ConnectionReadTimeout)??;
    let res = res.map(|inner| TimedBody { inner, limit: between, sleep: Box::pin(tokio::time::sleep(between)) }.boxed_unsync());
    let io: OutgoingFuture = Box::new(async move {
        match conn.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::from(e)),
            Err(_) => Err(Error::ConnectionTerminated),
        }
    });
    Ok((res, io))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_and_timeouts() {
        assert!(matches!(server_name("[::1]"), Ok(rustls::pki_types::ServerName::IpAddress(_))));
        assert!(matches!(server_name("127.0.0.1"), Ok(rustls::pki_types::ServerName::IpAddress(_))));
        assert!(matches!(server_name("api.example.com"), Ok(rustls::pki_types::ServerName::DnsName(_))));
        assert!(server_name("bad name").is_err());
        assert_eq!(bounded(None, CONNECT_TIMEOUT), CONNECT_TIMEOUT);
        assert_eq!(bounded(Some(Duration::from_secs(3600)), CONNECT_TIMEOUT), CONNECT_TIMEOUT);
        assert_eq!(bounded(Some(Duration::from_secs(1)), CONNECT_TIMEOUT), Duration::from_secs(1));
        assert_eq!(bounded(Some(Duration::ZERO), CONNECT_TIMEOUT), Duration::from_millis(1));
        assert!(tls_config().is_ok());
    }
}
