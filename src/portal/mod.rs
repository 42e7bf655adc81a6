//! `cloudlet portal`: the central portal that sites join and dial out to.
//!
//! One role of the same binary. State is behind [`store::PortalStore`]: embedded SQLite in
//! `DATA/portal.db` by default, PostgreSQL with `--database URL` ([`pg::PgStore`]); the CA is
//! [`ca::PortalCa`]. The listeners: the admin API (`--http`, plain HTTP for loopback and tests,
//! address in `DATA/http.addr`; `--https`, TLS with a certificate of the portal CA, address in
//! `DATA/https.addr`) and the link
//! listener (`--link`, TLS with this CA's server certificate; address in `DATA/link.addr`),
//! where sites join and, with their client certificates, connect. The admin token is in
//! `DATA/admin.token` (mode 0600), made at first start.

pub mod api;
pub mod ca;
pub mod csr;
pub mod ingest;
pub mod inventory;
pub mod links;
pub mod over_link;
pub mod pg;
pub mod store;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::link::token::sha256_hex;

/// Errors that stop the portal.
#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    /// A file of the data directory.
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    /// A listener could not bind.
    #[error("binding {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    /// The store could not open.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The CA could not load or sign.
    #[error(transparent)]
    Ca(#[from] ca::CaError),
    /// Another portal runs on this data directory.
    #[error("another portal is running on {0}")]
    AlreadyRunning(PathBuf),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> PortalError {
    let what = what.into();
    move |source| PortalError::Io { what, source }
}

/// How to run the portal.
#[derive(Clone)]
pub struct PortalOptions {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The admin API's `host:port` (plain HTTP; empty: off).
    pub http: String,
    /// The admin API's `host:port` over HTTPS, with a certificate of the portal CA (empty: off).
    pub https: String,
    /// The link listener's `host:port`.
    pub link: String,
    /// Extra names (DNS names or IP addresses) for the link certificate, besides the link
    /// address's host, `localhost`, `127.0.0.1`, `::1` and the hostname.
    pub names: Vec<String>,
    /// Lifetime of the client certificates it signs.
    pub cert_lifetime: Duration,
    /// A PostgreSQL connection string for the store (`postgres://USER:PASSWORD@HOST:PORT/DB`;
    /// a secret: never logged); `None`: the embedded SQLite store in `DATA/portal.db`.
    pub database: Option<String>,
}

impl std::fmt::Debug for PortalOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortalOptions")
            .field("data_dir", &self.data_dir)
            .field("http", &self.http)
            .field("https", &self.https)
            .field("link", &self.link)
            .field("names", &self.names)
            .field("cert_lifetime", &self.cert_lifetime)
            .field("database", &self.database.as_ref().map(|_| "(set)"))
            .finish()
    }
}

/// Run the portal until SIGTERM/SIGINT.
pub async fn serve(opts: PortalOptions) -> Result<(), PortalError> {
    let data = &opts.data_dir;
    std::fs::create_dir_all(data).map_err(io(format!("creating {}", data.display())))?;
    let _ = std::fs::set_permissions(data, std::os::unix::fs::PermissionsExt::from_mode(0o700));
    let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(data.join("portal.lock")).map_err(io("opening portal.lock"))?;
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|_| PortalError::AlreadyRunning(data.clone()))?;
    let hostname = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
    let admin = admin_token(data)?;
    let store: Arc<dyn store::PortalStore> = match &opts.database {
        Some(url) => {
            let s = pg::PgStore::connect(url).await?;
            tracing::info!("portal store: PostgreSQL");
            Arc::new(s)
        }
        None => Arc::new(store::SqliteStore::open(&data.join("portal.db"))?),
    };
    let ca = ca::PortalCa::load_or_create(&data.join("ca"))?;
    let portal =
        api::Portal { store, ca: Arc::new(ca), admin_sha256: sha256_hex(admin.as_bytes()), cert_lifetime: opts.cert_lifetime, links: links::Links::default() };
    tracing::info!(ca_fingerprint = %portal.ca.fingerprint(), "portal CA loaded");

    let (stop_tx, stop) = watch::channel(false);
    let mut tasks = Vec::new();
    if !opts.http.is_empty() {
        let l = bind(&opts.http, data, "http.addr").await?;
        println!("cloudlet portal: admin API on http://{}/", l.local_addr().map_err(io("reading the address"))?);
        let app = api::admin_router(portal.clone()).layer(axum::middleware::map_response(crate::api::error::jsonify_errors));
        let mut stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let r = axum::serve(l, app).with_graceful_shutdown(async move {
                let _ = stop.changed().await;
            });
            if let Err(e) = r.await {
                tracing::error!(error = %e, "admin API failed");
            }
        }));
    }
    let l = bind(&opts.link, data, "link.addr").await?;
    let bound = l.local_addr().map_err(io("reading the link address"))?;
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    names.extend(hostname_names(&hostname, bound, &opts.link));
    names.extend(opts.names.iter().cloned());
    names.sort();
    names.dedup();
    let tls = Arc::new(portal.ca.link_server_config(&names)?);
    println!("cloudlet portal: site link on https://{bound}/ (CA sha256:{})", portal.ca.fingerprint());
    tasks.push(tokio::spawn(serve_link(l, tls, portal.clone(), stop.clone())));
    if !opts.https.is_empty() {
        let l = bind(&opts.https, data, "https.addr").await?;
        let at = l.local_addr().map_err(io("reading the address"))?;
        let mut names = names.clone();
        names.extend(hostname_names(&hostname, at, &opts.https));
        names.sort();
        names.dedup();
        let tls = Arc::new(portal.ca.admin_server_config(&names)?);
        println!("cloudlet portal: admin API on https://{at}/ (trust {})", data.join("ca/ca.pem").display());
        let app = api::admin_router(portal.clone()).layer(axum::middleware::map_response(crate::api::error::jsonify_errors));
        tasks.push(tokio::spawn(accept_tls(l, tls, stop.clone(), move |tls, peer| serve_http(tls, peer, app.clone()))));
    }

    crate::daemon::wait_for_signal().await;
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    Ok(())
}

/// The names of the link certificate that come from this host: its hostname and the host part
/// of the configured link address, when it is a name or a specific address.
fn hostname_names(hostname: &str, bound: SocketAddr, configured: &str) -> Vec<String> {
    let mut v = Vec::new();
    if !hostname.is_empty() {
        v.push(hostname.to_string());
    }
    if !bound.ip().is_unspecified() {
        v.push(bound.ip().to_string());
    }
    if let Some((host, _)) = configured.rsplit_once(':') {
        let host = host.trim_matches(['[', ']']);
        if !host.is_empty() && host.parse::<std::net::IpAddr>().map(|ip| !ip.is_unspecified()).unwrap_or(true) {
            v.push(host.to_string());
        }
    }
    v
}

async fn bind(addr: &str, data: &Path, file: &str) -> Result<tokio::net::TcpListener, PortalError> {
    let l = tokio::net::TcpListener::bind(addr).await.map_err(|source| PortalError::Bind { addr: addr.to_string(), source })?;
    let bound = l.local_addr().map_err(io("reading a bound address"))?;
    std::fs::write(data.join(file), bound.to_string()).map_err(io(format!("writing {file}")))?;
    Ok(l)
}

/// The admin token in `DATA/admin.token`, made (32 random bytes, hex, with a `clp_` prefix) at
/// first start.
fn admin_token(data: &Path) -> Result<String, PortalError> {
    let path = data.join("admin.token");
    if let Ok(t) = std::fs::read_to_string(&path)
        && !t.trim().is_empty()
    {
        return Ok(t.trim().to_string());
    }
    let bytes: [u8; 32] = rand::random();
    let token = format!("clp_{}", hex::encode(bytes));
    crate::state::files::write_secret_file(&path, &token).map_err(io("writing admin.token"))?;
    println!("cloudlet portal: first start; the admin token is in {} (mode 0600)", path.display());
    Ok(token)
}

/// Accept TLS connections on `l` until `stop` changes, and hand each whose handshake finished
/// within 10 s to `conn` on its own task.
async fn accept_tls<F, Fut>(l: tokio::net::TcpListener, tls: Arc<rustls::ServerConfig>, mut stop: watch::Receiver<bool>, conn: F)
where
    F: Fn(tokio_rustls::server::TlsStream<tokio::net::TcpStream>, SocketAddr) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.changed() => return,
            r = l.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (acceptor, conn) = (acceptor.clone(), conn.clone());
        let _ = tcp.set_nodelay(true);
        let _ = socket2::SockRef::from(&tcp).set_tcp_user_timeout(Some(crate::link::session::TCP_USER_TIMEOUT));
        tokio::spawn(async move {
            match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(s)) => conn(s, peer).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// Serve `svc` (HTTP/1.1 or HTTP/2 by ALPN) on one TLS connection.
async fn serve_http<S>(tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>, peer: SocketAddr, svc: S)
where
    S: tower::Service<axum::http::Request<hyper::body::Incoming>, Response = axum::response::Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let svc = hyper_util::service::TowerToHyperService::new(svc);
    let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    if let Err(e) = builder.serve_connection(hyper_util::rt::TokioIo::new(tls), svc).await {
        tracing::debug!(%peer, error = %e, "connection ended");
    }
}

/// The link listener: TLS with this CA's server certificate. A connection with the link's ALPN
/// protocol and the current certificate of a joined site becomes that site's link
/// ([`links::Links::hold`]); any other is served the link routes (join, whoami, renew) with the
/// SHA-256 of the client's verified certificate, if it sent one, on every request
/// ([`api::PeerCert`]).
async fn serve_link(l: tokio::net::TcpListener, tls: Arc<rustls::ServerConfig>, portal: api::Portal, stop: watch::Receiver<bool>) {
    let app = api::link_router(portal.clone());
    accept_tls(l, tls, stop, move |tls, peer| {
        let (app, portal) = (app.clone(), portal.clone());
        async move {
            let cert = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| sha256_hex(c));
            if tls.get_ref().1.alpn_protocol() == Some(crate::link::session::LINK_ALPN) {
                // A site's link: only with the current certificate of a joined site.
                let site = match &cert {
                    Some(fp) => portal.store.site_by_cert(fp).await.ok().flatten(),
                    None => None,
                };
                match site {
                    Some(s) => portal.links.hold(s.name, tls, portal.store.clone()).await,
                    None => tracing::warn!(%peer, "refused a link without the certificate of a joined site"),
                }
                return;
            }
            serve_http(tls, peer, app.layer(axum::Extension(api::PeerCert(cert)))).await;
        }
    })
    .await
}
