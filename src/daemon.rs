//! `cloudlet serve`: the site daemon's start-up, listeners and graceful shutdown.
//!
//! Start-up is a recovery: open state, bootstrap on first start, register the node, start every
//! reconciler (each makes a full pass), then serve. `/readyz` turns 200 once every reconciler
//! finished that pass. SIGTERM or SIGINT stops accepting, ends event streams, lets in-flight
//! requests finish (10 s at most), stops the reconcilers and checkpoints the database.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Extension;
use tokio::sync::{mpsc, watch};

use crate::api::auth::Transport;
use crate::config::Config;
use crate::site::bootstrap::write_secret_file;
use crate::site::network::{NetworkInterfaceController, VpcController};
use crate::site::nodes::NodeController;
use crate::site::projects::ProjectController;
use crate::site::{Kind, Site, SiteError, reconcile};
use crate::state::{Db, StateError};

/// Errors that stop the daemon from starting.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A file system step failed.
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    /// Another daemon holds the data dir.
    #[error("another cloudlet daemon is using {0} (lock held)")]
    AlreadyRunning(PathBuf),
    /// A listener could not bind.
    #[error("binding {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    /// The state database could not be opened.
    #[error(transparent)]
    State(#[from] StateError),
    /// A site step (bootstrap, node registration) failed.
    #[error(transparent)]
    Site(#[from] SiteError),
    /// The TLS certificate could not be made or loaded.
    #[error("tls: {0}")]
    Tls(String),
    /// A configuration value is unusable (checked again at start).
    #[error("{0}")]
    Config(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DaemonError {
    let what = what.into();
    move |source| DaemonError::Io { what, source }
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

fn lock_data_dir(data: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, DaemonError> {
    let path = data.join("cloudlet.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(format!("opening {}", path.display())))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|_| DaemonError::AlreadyRunning(data.to_path_buf()))
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

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
}

fn print_first_start(cfg: &Config, first: &crate::site::bootstrap::FirstStart) {
    let data = cfg.data_dir.display();
    if std::io::stdout().is_terminal() {
        println!("cloudlet: first start. The admin credentials are shown only this once:");
        println!("  admin API token : {}", first.admin_token);
        println!("  console login   : admin / {}", first.admin_password);
    } else {
        println!("cloudlet: first start. Admin credentials were created (not shown: stdout is not a terminal).");
    }
    println!("  saved (mode 0600) in {data}/admin.token and {data}/admin.password");
}

/// Run the site daemon until SIGTERM/SIGINT.
pub async fn serve(cfg: Config) -> Result<(), DaemonError> {
    let started = std::time::SystemTime::now();
    // Resolved now, while the file is surely the one running (see `crate::self_exe`).
    if let Err(e) = crate::self_exe() {
        tracing::warn!(error = %e, "locating this binary failed; containers and instances cannot start");
    }
    let data = cfg.data_dir.clone();
    std::fs::create_dir_all(&data).map_err(io(format!("creating {}", data.display())))?;
    let _ = std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700));
    let _lock = lock_data_dir(&data)?;
    let hostname = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
    let node_name = if cfg.node.name.is_empty() { sanitize_node_name(&hostname) } else { cfg.node.name.clone() };

    let db = Db::open(&data.join("cloudlet.db"))?;
    match db.integrity_check()? {
        Ok(()) => {}
        Err(problems) => tracing::error!(?problems, "database integrity check reported problems"),
    }
    // Outbound connections for tenants (functions, pulls) follow the site's egress policy.
    crate::net::egress::install_site_policy(cfg.egress_policy().map_err(|e| DaemonError::Config(e.to_string()))?);
    let site = Site::new(db, cfg.clone(), node_name);
    if let Some(first) = site.bootstrap()? {
        print_first_start(&cfg, &first);
    }
    site.register_local_node()?;
    // Containers deleted while the daemon was down, and leftovers of interrupted imports.
    match site.run(crate::site::containers::sweep_orphans).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(containers = n, "removed containers that state no longer has"),
        Err(e) => tracing::warn!(error = %e, "sweeping orphaned containers failed"),
    }
    match site.run(crate::site::instances::sweep_orphans).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(instances = n, "removed instances that state no longer has"),
        Err(e) => tracing::warn!(error = %e, "sweeping orphaned instances failed"),
    }
    if let Err(e) = site.run(|s| s.pool().map(|_| ())).await {
        tracing::warn!(error = %e, "opening the storage pool failed");
    }
    // Blobs of writes a crash interrupted, and usage counters, before the S3 endpoint opens.
    match site.run(|s| s.check_objects(true)).await {
        Ok(r) if r.clean() => {
            if r.orphans_removed > 0 || !r.usage_fixed.is_empty() {
                tracing::info!(orphans = r.orphans_removed, usage_fixed = r.usage_fixed.len(), "object store repaired");
            }
        }
        Ok(r) => tracing::error!(damaged = ?r.damaged, size_mismatches = ?r.size_mismatches, "object store check found damage"),
        Err(e) => tracing::warn!(error = %e, "object store check failed"),
    }
    if let Err(e) = site.run(|s| s.collect_image_garbage(true)).await {
        tracing::warn!(error = %e, "image garbage collection failed");
    }

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Kind>();
    let mut tasks = vec![
        tokio::spawn(reconcile::run(site.clone(), ProjectController, done_tx.clone(), shutdown_rx.clone())),
        tokio::spawn(reconcile::run(site.clone(), NodeController, done_tx.clone(), shutdown_rx.clone())),
        tokio::spawn(reconcile::run(site.clone(), VpcController, done_tx.clone(), shutdown_rx.clone())),
        tokio::spawn(reconcile::run(site.clone(), NetworkInterfaceController, done_tx.clone(), shutdown_rx.clone())),
        tokio::spawn(reconcile::run(site.clone(), crate::site::images::ImageController, done_tx.clone(), shutdown_rx.clone())),
        tokio::spawn(reconcile::run(site.clone(), crate::site::containers::ContainerController, done_tx.clone(), shutdown_rx.clone())),
        tokio::spawn(reconcile::run(site.clone(), crate::site::volumes::VolumeController, done_tx.clone(), shutdown_rx.clone())),
        tokio::spawn(reconcile::run(site.clone(), crate::site::instances::InstanceController, done_tx.clone(), shutdown_rx.clone())),
        tokio::spawn(reconcile::run(site.clone(), crate::site::volumes::SnapshotController, done_tx.clone(), shutdown_rx.clone())),
    ];
    let controllers = tasks.len();
    // Load balancer health checks: not a reconciler, so not part of the start-up pass.
    tasks.push(tokio::spawn(crate::site::health::run(site.clone(), shutdown_rx.clone())));
    drop(done_tx);
    {
        let site = site.clone();
        tokio::spawn(async move {
            let mut done = std::collections::BTreeSet::new();
            while let Some(k) = done_rx.recv().await {
                done.insert(k);
                if done.len() == controllers {
                    site.set_ready();
                    tracing::info!("start-up reconcile pass complete; ready");
                    break;
                }
            }
        });
    }
    {
        let site = site.clone();
        let mut stop = shutdown_rx.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tick.tick() => {
                        if let Err(e) = site.run(|s| s.prune()).await {
                            tracing::warn!(error = %e, "event retention failed");
                        }
                    }
                }
            }
        }));
    }

    let app = crate::api::app(site.clone(), shutdown_rx.clone());
    let mut servers = Vec::new();
    if !cfg.api.http.is_empty() {
        let l = tokio::net::TcpListener::bind(&cfg.api.http)
            .await
            .map_err(|source| DaemonError::Bind { addr: cfg.api.http.clone(), source })?;
        let addr = l.local_addr().map_err(io("reading the HTTP address"))?;
        std::fs::write(data.join("http.addr"), addr.to_string()).map_err(io("writing http.addr"))?;
        println!("cloudlet: API and console on http://{addr}/");
        servers.push(tokio::spawn(crate::api::listener::serve_router(l, app.clone(), Transport::Http, shutdown_rx.clone(), false)));
    }
    if !cfg.api.https.is_empty() {
        let addr: SocketAddr = cfg.api.https.parse().map_err(|_| DaemonError::Bind {
            addr: cfg.api.https.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not host:port"),
        })?;
        let (cert, key) = ensure_certificate(&data, &hostname)?;
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key)
            .await
            .map_err(|e| DaemonError::Tls(e.to_string()))?;
        let listener = std::net::TcpListener::bind(addr).map_err(|source| DaemonError::Bind { addr: addr.to_string(), source })?;
        listener.set_nonblocking(true).map_err(io("setting the HTTPS listener non-blocking"))?;
        let addr = listener.local_addr().map_err(io("reading the HTTPS address"))?;
        std::fs::write(data.join("https.addr"), addr.to_string()).map_err(io("writing https.addr"))?;
        let shown = if addr.ip().is_unspecified() { format!("https://{hostname}:{}", addr.port()) } else { format!("https://{addr}") };
        println!("cloudlet: API and console on {shown}/ (certificate {})", cert.display());
        let handle = axum_server::Handle::new();
        let mut stop = shutdown_rx.clone();
        let h2 = handle.clone();
        tokio::spawn(async move {
            let _ = stop.changed().await;
            h2.graceful_shutdown(Some(Duration::from_secs(10)));
        });
        let svc = app.clone().layer(Extension(Transport::Https));
        let mut server = axum_server::from_tcp_rustls(listener, tls).map_err(io("starting the HTTPS server"))?;
        // The same head and body limits as the plain listeners (crate::api::listener).
        server.http_builder().http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(crate::api::listener::HEADER_READ_TIMEOUT);
        let svc = crate::api::listener::with_body_timeout(svc);
        servers.push(tokio::spawn(async move {
            if let Err(e) = server.handle(handle).serve(svc.into_make_service_with_connect_info::<SocketAddr>()).await {
                tracing::error!(error = %e, "HTTPS server failed");
            }
        }));
    }
    match site.run(move |s| s.load_all_functions(started)).await {
        Ok((n, cached)) => tracing::info!(functions = n, from_cache = cached, "functions loaded"),
        Err(e) => tracing::warn!(error = %e, "loading functions failed"),
    }
    servers.push(tokio::spawn(crate::api::gateway::serve_endpoints(site.clone(), shutdown_rx.clone())));
    if !cfg.functions.gateway.is_empty() {
        let l = tokio::net::TcpListener::bind(&cfg.functions.gateway)
            .await
            .map_err(|source| DaemonError::Bind { addr: cfg.functions.gateway.clone(), source })?;
        let addr = l.local_addr().map_err(io("reading the gateway address"))?;
        std::fs::write(data.join("gateway.addr"), addr.to_string()).map_err(io("writing gateway.addr"))?;
        println!("cloudlet: function gateway on http://{addr}/");
        servers.push(tokio::spawn(crate::api::gateway::serve(site.clone(), l, shutdown_rx.clone())));
    }
    if !cfg.s3.listen.is_empty() {
        let l = tokio::net::TcpListener::bind(&cfg.s3.listen)
            .await
            .map_err(|source| DaemonError::Bind { addr: cfg.s3.listen.clone(), source })?;
        let addr = l.local_addr().map_err(io("reading the S3 address"))?;
        std::fs::write(data.join("s3.addr"), addr.to_string()).map_err(io("writing s3.addr"))?;
        println!("cloudlet: S3 endpoint on http://{addr}/");
        let svc = crate::api::s3::service(site.clone());
        let router = axum::Router::new().fallback(move |req: axum::extract::Request| crate::api::s3::handle(svc.clone(), req));
        // No Nagle: a small answer written as head then body would otherwise wait for the
        // client's delayed ACK (40 ms), which capped small GETs near 500/s with 16 clients.
        servers.push(tokio::spawn(crate::api::listener::serve_router(l, router, (), shutdown_rx.clone(), true)));
    }
    if !cfg.api.socket.is_empty() {
        let path = PathBuf::from(&cfg.api.socket);
        let l = bind_socket(&path)?;
        let uid = nix::unistd::geteuid().as_raw();
        let mut stop = shutdown_rx.clone();
        let svc = app.clone().layer(Extension(Transport::LocalSocket));
        servers.push(tokio::spawn(async move {
            let r = axum::serve(PeerChecked { inner: l, uid }, svc).with_graceful_shutdown(async move {
                let _ = stop.changed().await;
            });
            if let Err(e) = r.await {
                tracing::error!(error = %e, "socket server failed");
            }
        }));
        tracing::info!(socket = %path.display(), "local socket ready");
    }
    tracing::info!(data_dir = %data.display(), "cloudlet serving");

    wait_for_signal().await;
    let _ = shutdown_tx.send(true);
    let drain = async {
        for s in servers {
            let _ = s.await;
        }
        for t in tasks {
            let _ = t.await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(10), drain).await.is_err() {
        tracing::warn!("shutdown took longer than 10 s; exiting anyway");
    }
    if !cfg.api.socket.is_empty() {
        let _ = std::fs::remove_file(&cfg.api.socket);
    }
    if let Err(e) = site.db().checkpoint() {
        tracing::warn!(error = %e, "final WAL checkpoint failed");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Turn a host name into a valid node name (RFC 1123 label): lowercase, invalid characters to
/// `-`, trimmed to 63 characters; `node` when nothing is left.
pub fn sanitize_node_name(host: &str) -> String {
    let first = host.split('.').next().unwrap_or("");
    let mut s: String = first
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .take(63)
        .collect();
    s = s.trim_matches('-').to_string();
    if s.is_empty() { "node".into() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_sanitized() {
        assert_eq!(sanitize_node_name("Edge_Box-01.example.com"), "edge-box-01");
        assert_eq!(sanitize_node_name("---"), "node");
        assert_eq!(sanitize_node_name(&"a".repeat(80)).len(), 63);
    }
}
