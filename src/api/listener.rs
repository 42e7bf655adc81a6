//! The one way cloudlet serves HTTP/1.1 on a TCP listener (the API, the S3 endpoint and the
//! function gateways): hyper's connection builder with a timer, so a client that trickles its
//! request head is cut off after [`HEADER_READ_TIMEOUT`], and request bodies wrapped in an idle
//! timeout ([`BODY_IDLE_TIMEOUT`] between frames), so a half-sent body cannot hold a connection
//! and its task open for ever (the "slowloris" attack). Each request carries the peer address as
//! `ConnectInfo<SocketAddr>` and, when given, a [`super::auth::Transport`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{Notify, watch};

/// The longest a client may take to send a request's head (line and headers).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(20);
/// The longest pause allowed between two frames of a request body.
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopping listener waits for its open requests to finish.
const DRAIN: Duration = Duration::from_secs(10);

/// A request as handlers see it: its body under the idle timeout.
pub type Request = hyper::Request<IdleTimeoutBody<Incoming>>;

/// The error of a body that paused longer than its idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("the request body paused for more than {0:?}")]
pub struct BodyTimeout(pub Duration);

/// A request body that fails with [`BodyTimeout`] when no frame comes for `idle`. Unlike
/// tower-http's `TimeoutBody` it keeps the inner body's size hint and end-of-stream answer, which
/// S3 (`Content-Length` checks) and hyper's own framing rely on.
pub struct IdleTimeoutBody<B> {
    body: B,
    idle: Duration,
    sleep: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<B> IdleTimeoutBody<B> {
    /// Wrap `body`.
    pub fn new(idle: Duration, body: B) -> Self {
        IdleTimeoutBody { body, idle, sleep: None }
    }
}

impl<B> hyper::body::Body for IdleTimeoutBody<B>
where
    B: hyper::body::Body + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = B::Data;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<B::Data>, Self::Error>>> {
        use std::future::Future;
        use std::task::Poll;
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.sleep = None;
                Poll::Ready(frame.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => {
                let idle = this.idle;
                let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(idle))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// The HTTP/1.1 connection builder of every listener (keep-alive, header read timeout).
pub fn http1() -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).keep_alive(true);
    b
}

/// Counts open connections, so a stopping listener can wait for them.
#[derive(Default)]
struct Open {
    n: AtomicUsize,
    idle: Notify,
}

struct OpenGuard(Arc<Open>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        if self.0.n.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Serve `handler` on `listener` until `stop` changes; then stop accepting, ask every open
/// connection to finish its request and close, and wait for them (at most 10 s). `nodelay`
/// turns off Nagle's algorithm on each connection. WebSocket upgrades work.
pub async fn serve<H, F, R>(listener: tokio::net::TcpListener, handler: H, mut stop: watch::Receiver<bool>, nodelay: bool)
where
    H: Fn(Request, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = R> + Send + 'static,
    R: axum::response::IntoResponse,
{
    let open = Arc::new(Open::default());
    loop {
        let accepted = tokio::select! {
            c = listener.accept() => c,
            _ = stop.changed() => break,
        };
        let (tcp, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if nodelay {
            let _ = tcp.set_nodelay(true);
        }
        let handler = handler.clone();
        let mut stop = stop.clone();
        open.n.fetch_add(1, Ordering::AcqRel);
        let guard = OpenGuard(open.clone());
        tokio::spawn(async move {
            let _guard = guard;
            let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let mut req = req.map(|b| IdleTimeoutBody::new(BODY_IDLE_TIMEOUT, b));
                req.extensions_mut().insert(ConnectInfo(peer));
                let fut = handler(req, peer);
                async move { Ok::<_, Infallible>(axum::response::IntoResponse::into_response(fut.await)) }
            });
            let conn = http1().serve_connection(TokioIo::new(tcp), svc).with_upgrades();
            tokio::pin!(conn);
            let r = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = r {
                tracing::debug!(error = %e, peer = %peer, "connection ended");
            }
        });
    }
    let wait = async {
        while open.n.load(Ordering::Acquire) > 0 {
            let idle = open.idle.notified();
            if open.n.load(Ordering::Acquire) == 0 {
                break;
            }
            idle.await;
        }
    };
    let _ = tokio::time::timeout(DRAIN, wait).await;
}

/// Serve an axum router with [`serve`], adding `ext` (such as the transport) to every request.
pub async fn serve_router<E: Clone + Send + Sync + 'static>(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    ext: E,
    stop: watch::Receiver<bool>,
    nodelay: bool,
) {
    serve(
        listener,
        move |mut req: Request, _peer| {
            req.extensions_mut().insert(ext.clone());
            let router = router.clone();
            async move {
                use tower::ServiceExt;
                match router.oneshot(req.map(axum::body::Body::new)).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                }
            }
        },
        stop,
        nodelay,
    )
    .await
}

/// `router` with every request body under [`BODY_IDLE_TIMEOUT`] (for servers not started by
/// [`serve`], such as the HTTPS one).
pub fn with_body_timeout(router: axum::Router) -> axum::Router {
    router.layer(axum::middleware::map_request(|req: axum::extract::Request| async move {
        req.map(|b| axum::body::Body::new(IdleTimeoutBody::new(BODY_IDLE_TIMEOUT, b)))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_wrapped_body_keeps_its_size_and_a_stalled_one_times_out() {
        use http_body_util::BodyExt;
        let full = IdleTimeoutBody::new(Duration::from_millis(50), http_body_util::Full::new(bytes::Bytes::from_static(b"abc")));
        assert_eq!(hyper::body::Body::size_hint(&full).exact(), Some(3));
        assert_eq!(full.collect().await.unwrap().to_bytes(), "abc");
        let (_tx, rx) = tokio::sync::mpsc::channel::<Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>>(1);
        let stalled = IdleTimeoutBody::new(Duration::from_millis(50), http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)));
        let err = stalled.collect().await.expect_err("timed out");
        assert!(err.to_string().contains("paused"), "{err}");
    }

    #[tokio::test]
    async fn a_trickled_head_is_cut_off_and_a_whole_request_is_answered() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = watch::channel(false);
        let router = axum::Router::new().route("/", axum::routing::get(|ConnectInfo(p): ConnectInfo<SocketAddr>| async move { format!("hi {}", p.ip()) }));
        let server = tokio::spawn(serve_router(l, router, (), rx, true));
        let mut ok = tokio::net::TcpStream::connect(addr).await.unwrap();
        ok.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
        let mut got = String::new();
        ok.read_to_string(&mut got).await.unwrap();
        assert!(got.starts_with("HTTP/1.1 200") && got.ends_with("hi 127.0.0.1"), "{got}");
        // Half a head, then silence: the server closes (after the header timeout).
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nhost:").await.unwrap();
        let t0 = std::time::Instant::now();
        let mut buf = Vec::new();
        let n = tokio::time::timeout(HEADER_READ_TIMEOUT + Duration::from_secs(10), slow.read_to_end(&mut buf)).await;
        assert!(n.is_ok(), "the connection was closed by the server");
        assert!(t0.elapsed() >= HEADER_READ_TIMEOUT - Duration::from_secs(1), "{:?}", t0.elapsed());
        tx.send(true).unwrap();
        server.await.unwrap();
    }
}
