//! `cloudlet serve`: the site daemon's start-up, listeners and graceful shutdown.
//!
//! Start-up is a recovery: open state, bootstrap on first start, register the node, start every
//! reconciler (each makes a full pass), then serve. `/readyz` turns 200 once every reconciler
//! finished that pass. SIGTERM or SIGINT stops accepting, ends event streams, lets in-flight
//! requests finish (10 s at most), stops the reconcilers and checkpoints the database.

use std::io::IsTerminal;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::api::auth::Transport;
use crate::config::Config;
use crate::site::network::{NetworkInterfaceController, VpcController};
use crate::site::nodes::NodeController;
use crate::site::projects::ProjectController;
use crate::site::{Kind, Site, SiteError, reconcile};
use crate::state::{Db, StateError};

pub mod listeners;
mod memory;
mod recovery;
mod tasks;

pub use listeners::ensure_certificate;

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

fn lock_data_dir(data: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, DaemonError> {
    let path = data.join("cloudlet.lock");
    let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io(format!("opening {}", path.display())))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|_| DaemonError::AlreadyRunning(data.to_path_buf()))
}

/// Wait for SIGTERM or SIGINT (the site daemon's and the portal's shutdown signal).
pub(crate) async fn wait_for_signal() {
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
    crate::site::quotas::check_defaults(&cfg.projects.default_quotas).map_err(|e| DaemonError::Config(e.to_string()))?;
    // Every engine and host seam, made once here (the function engine on its first use).
    let engines = crate::site::engines::Engines::open(&cfg)?;
    let site = Site::new(db, cfg.clone(), node_name, engines);
    if let Some(first) = site.bootstrap()? {
        print_first_start(&cfg, &first);
    }
    site.register_local_node()?;
    recovery::recover(&site).await;

    let mut tasks = tasks::Tasks::new();
    let stop = tasks.stop_signal();
    let (done_tx, done_rx) = mpsc::unbounded_channel::<Kind>();
    let controllers = [
        tasks.spawn("reconcile project", reconcile::run(site.clone(), ProjectController, done_tx.clone(), stop.clone())),
        tasks.spawn("reconcile node", reconcile::run(site.clone(), NodeController, done_tx.clone(), stop.clone())),
        tasks.spawn("reconcile vpc", reconcile::run(site.clone(), VpcController, done_tx.clone(), stop.clone())),
        tasks.spawn("reconcile network interface", reconcile::run(site.clone(), NetworkInterfaceController, done_tx.clone(), stop.clone())),
        tasks.spawn("reconcile image", reconcile::run(site.clone(), crate::site::images::ImageController, done_tx.clone(), stop.clone())),
        tasks.spawn("reconcile container", reconcile::run(site.clone(), crate::site::containers::ContainerController, done_tx.clone(), stop.clone())),
        tasks.spawn("reconcile volume", reconcile::run(site.clone(), crate::site::volumes::VolumeController, done_tx.clone(), stop.clone())),
        tasks.spawn("reconcile instance", reconcile::run(site.clone(), crate::site::instances::InstanceController, done_tx.clone(), stop.clone())),
        tasks.spawn("reconcile snapshot", reconcile::run(site.clone(), crate::site::volumes::SnapshotController, done_tx.clone(), stop.clone())),
    ]
    .len();
    drop(done_tx);
    // Load balancer health checks: not a reconciler, so not part of the start-up pass.
    tasks.spawn("health checks", crate::site::health::run(site.clone(), stop.clone()));
    // Kernel events that mean drift (namespaces, links, rulesets changed behind our back).
    tasks.spawn("drift watcher", crate::site::drift::run(site.clone(), stop.clone()));
    tasks.detach(tasks::ready_after_first_pass(site.clone(), done_rx, controllers));
    tasks.spawn(
        "event retention",
        tasks::every(Duration::from_secs(60), stop.clone(), {
            let site = site.clone();
            move || {
                let site = site.clone();
                async move {
                    if let Err(e) = site.run(|s| s.prune()).await {
                        tracing::warn!(error = %e, "event retention failed");
                    }
                }
            }
        }),
    );

    let app = crate::api::app(site.clone(), stop.clone());
    if !cfg.api.http.is_empty() {
        let l = listeners::bind_tcp(&cfg.api.http, &data, "http", "API and console").await?;
        tasks.spawn("http", crate::api::listener::serve_router(l, app.clone(), Transport::Http, stop.clone(), false));
    }
    if !cfg.api.https.is_empty() {
        tasks.add("https", listeners::serve_https(&cfg.api.https, &data, &hostname, app.clone(), stop.clone()).await?);
    }
    match site.run(move |s| s.load_all_functions(started)).await {
        Ok((n, cached)) => tracing::info!(functions = n, from_cache = cached, "functions loaded"),
        Err(e) => tracing::warn!(error = %e, "loading functions failed"),
    }
    tasks.spawn("interface gateways", crate::api::gateway::serve_endpoints(site.clone(), stop.clone()));
    if !cfg.functions.gateway.is_empty() {
        let l = listeners::bind_tcp(&cfg.functions.gateway, &data, "gateway", "function gateway").await?;
        tasks.spawn("gateway", crate::api::gateway::serve(site.clone(), l, stop.clone()));
    }
    if !cfg.s3.listen.is_empty() {
        let l = listeners::bind_tcp(&cfg.s3.listen, &data, "s3", "S3 endpoint").await?;
        let svc = crate::api::s3::service(site.clone());
        let router = axum::Router::new().fallback(move |req: axum::extract::Request| crate::api::s3::handle(svc.clone(), req));
        // No Nagle: a small answer written as head then body would otherwise wait for the
        // client's delayed ACK (40 ms), which capped small GETs near 500/s with 16 clients.
        tasks.spawn("s3", crate::api::listener::serve_router(l, router, (), stop.clone(), true));
    }
    if !cfg.api.socket.is_empty() {
        tasks.add("socket", listeners::serve_socket(Path::new(&cfg.api.socket), app.clone(), stop.clone())?);
    }
    // The outbound link to the portal, once the site joined one (it waits until then).
    let portal_app = app.clone().layer(axum::Extension(Transport::PortalLink));
    tasks.spawn("portal link", crate::link::session::run(site.portal_dir(), portal_app, stop.clone()));
    tasks.spawn("portal certificate renewal", crate::link::renew::run(site.portal_dir(), stop.clone()));
    tasks.detach({
        let site = site.clone();
        async move { site.join_configured_portal().await }
    });
    tracing::info!(data_dir = %data.display(), "cloudlet serving");
    // Once every listener is up and the start-up pass is done, give back what only start-up used.
    tasks.detach({
        let site = site.clone();
        async move {
            while !site.is_ready() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            site.db().release_idle_memory();
            memory::release_freed_heap();
            let bytes = memory::release_startup_code();
            tracing::debug!(bytes, "released start-up's heap and the mappings of its code");
        }
    });

    wait_for_signal().await;
    tasks.shutdown(Duration::from_secs(10)).await;
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
    let mut s: String = first.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).take(63).collect();
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
