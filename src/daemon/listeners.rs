//! The daemon's listeners: one helper binds each TCP endpoint (and records its address in
//! `DATA/<name>.addr` for scripts and tests), plus the HTTPS server (self-signed certificate made
//! at first start, rustls) and the root-only local socket (peer uid checked with `SO_PEERCRED`).

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Extension;
use tokio::sync::watch;

use super::{DaemonError, io};
use crate::api::auth::Transport;
use crate::site::bootstrap::write_secret_file;

/// Bind the TCP endpoint `addr` (`host:port`; port 0 picks one), write the bound address to
/// `data/<name>.addr` and print `cloudlet: <what> on http://ADDR/`. Errors: [`DaemonError::Bind`]
/// naming `addr`, or an I/O error writing the address file.
pub async fn bind_tcp(addr: &str, data: &Path, name: &str, what: &str) -> Result<tokio::net::TcpListener, DaemonError> {
    let l = tokio::net::TcpListener::bind(addr).await.map_err(|source| DaemonError::Bind { addr: addr.to_string(), source })?;
    let bound = l.local_addr().map_err(io(format!("reading the {name} address")))?;
    std::fs::write(data.join(format!("{name}.addr")), bound.to_string()).map_err(io(format!("writing {name}.addr")))?;
    println!("cloudlet: {what} on http://{bound}/");
    Ok(l)
}

/// Serve `app` over HTTPS on `addr` (`host:port`) until `stop` changes, with the plain
/// listeners' header and body read limits (see `crate::api::listener`). The certificate is
/// `data/tls/cert.pem`, made at first start for `hostname`. Returns the server's task.
pub async fn serve_https(
    addr: &str,
    data: &Path,
    hostname: &str,
    app: axum::Router,
    mut stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, DaemonError> {
    let parsed: SocketAddr = addr
        .parse()
        .map_err(|_| DaemonError::Bind { addr: addr.to_string(), source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not host:port") })?;
    let (cert, key) = ensure_certificate(data, hostname)?;
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key).await.map_err(|e| DaemonError::Tls(e.to_string()))?;
    let listener = std::net::TcpListener::bind(parsed).map_err(|source| DaemonError::Bind { addr: parsed.to_string(), source })?;
    listener.set_nonblocking(true).map_err(io("setting the HTTPS listener non-blocking"))?;
    let bound = listener.local_addr().map_err(io("reading the HTTPS address"))?;
    std::fs::write(data.join("https.addr"), bound.to_string()).map_err(io("writing https.addr"))?;
    let shown = if bound.ip().is_unspecified() { format!("https://{hostname}:{}", bound.port()) } else { format!("https://{bound}") };
    println!("cloudlet: API and console on {shown}/ (certificate {})", cert.display());
    let handle = axum_server::Handle::new();
    let h2 = handle.clone();
    tokio::spawn(async move {
        let _ = stop.changed().await;
        h2.graceful_shutdown(Some(Duration::from_secs(10)));
    });
    let svc = app.layer(Extension(Transport::Https));
    let mut server = axum_server::from_tcp_rustls(listener, tls).map_err(io("starting the HTTPS server"))?;
    server.http_builder().http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(crate::api::listener::HEADER_READ_TIMEOUT);
    let svc = crate::api::listener::with_body_timeout(svc);
    Ok(tokio::spawn(async move {
        if let Err(e) = server.handle(handle).serve(svc.into_make_service_with_connect_info::<SocketAddr>()).await {
            tracing::error!(error = %e, "HTTPS server failed");
        }
    }))
}

/// Serve `app` on the local socket `path` (mode 0600; only peers with the daemon's uid) until
/// `stop` changes. A stale socket file is replaced; a live one is [`DaemonError::Bind`].
pub fn serve_socket(path: &Path, app: axum::Router, mut stop: watch::Receiver<bool>) -> Result<tokio::task::JoinHandle<()>, DaemonError> {
    let l = bind_socket(path)?;
    let uid = nix::unistd::geteuid().as_raw();
    let svc = app.layer(Extension(Transport::LocalSocket));
    tracing::info!(socket = %path.display(), "local socket ready");
    Ok(tokio::spawn(async move {
        let r = axum::serve(PeerChecked { inner: l, uid }, svc).with_graceful_shutdown(async move {
            let _ = stop.changed().await;
        });
        if let Err(e) = r.await {
            tracing::error!(error = %e, "socket server failed");
        }
    }))
}

/// Make (first start) or reuse the self-signed certificate in `DATA/tls/`.
pub fn ensure_certificate(data: &Path, hostname: &str) -> Result<(PathBuf, PathBuf), DaemonError> {
    let dir = data.join("tls");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    if !hostname.is_empty() {
        names.push(hostname.to_string());
    }
    let ck = rcgen::generate_simple_self_signed(names).map_err(|e| DaemonError::Tls(e.to_string()))?;
    write_secret_file(&key, &ck.signing_key.serialize_pem()).map_err(io("writing the TLS key"))?;
    std::fs::write(&cert, ck.cert.pem()).map_err(io("writing the TLS certificate"))?;
    Ok((cert, key))
}

/// A Unix listener that accepts only peers with the daemon's own uid (`SO_PEERCRED`).
struct PeerChecked {
    inner: tokio::net::UnixListener,
    uid: u32,
}

impl axum::serve::Listener for PeerChecked {
    type Io = tokio::net::UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((s, a)) => match s.peer_cred() {
                    Ok(c) if c.uid() == self.uid => return (s, a),
                    Ok(c) => tracing::warn!(uid = c.uid(), "refused a socket client with another uid"),
                    Err(e) => tracing::warn!(error = %e, "reading socket peer credentials failed"),
                },
                Err(e) => {
                    tracing::warn!(error = %e, "socket accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

fn bind_socket(path: &Path) -> Result<tokio::net::UnixListener, DaemonError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(DaemonError::Bind {
                addr: path.display().to_string(),
                source: std::io::Error::new(std::io::ErrorKind::AddrInUse, "another daemon answers on this socket"),
            });
        }
        std::fs::remove_file(path).map_err(io(format!("removing the stale socket {}", path.display())))?;
    }
    let l = tokio::net::UnixListener::bind(path).map_err(|source| DaemonError::Bind { addr: path.display().to_string(), source })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io("chmod 0600 on the socket"))?;
    Ok(l)
}
