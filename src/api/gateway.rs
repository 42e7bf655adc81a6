//! The functions' HTTP gateway: a listener of its own that routes each request by `Host` and
//! path prefix to a function and serves it with a fresh instance (`FunctionState::serve`).
//!
//! Functions attached to a network interface are also served on a listener inside that
//! interface's namespace ([`serve_endpoints`]).
//!
//! Answers of its own: 404 `not_found` when no function matches, 504 `timeout` when the function
//! ran past its CPU budget, 502 `function_failed` when it trapped, ran out of memory or never
//! answered; each is a JSON error and a log line, and other requests are unaffected.

use bytes::Bytes;
use hyper::{Request, Response, StatusCode};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::site::Site;
use crate::site::function_serve::gateway_error as error;
use crate::site::functions::{ENDPOINT_PORT, Endpoint};
use std::collections::HashMap;
use std::sync::Arc;

/// Serve one gateway request; on a network interface's endpoint (`eni`), only among the
/// functions served there.
pub async fn handle<B>(site: Site, eni: Option<Arc<str>>, req: Request<B>) -> Result<Response<HyperOutgoingBody>, std::convert::Infallible>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let fs = match site.functions() {
        Ok(f) => f,
        Err(e) => return Ok(error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string())),
    };
    let host = req.headers().get(hyper::header::HOST).and_then(|h| h.to_str().ok()).map(str::to_string);
    let path = req.uri().path().to_string();
    let found = match &eni {
        None => fs.route(host.as_deref(), &path),
        Some(e) => fs.route_on(e, host.as_deref(), &path),
    };
    let Some(route) = found else {
        return Ok(error(StatusCode::NOT_FOUND, "not_found", format!("no function serves {path}")));
    };
    Ok(fs.serve(&route, req).await)
}

/// Accept connections on `l` until `stop` changes.
pub async fn serve(site: Site, l: tokio::net::TcpListener, stop: tokio::sync::watch::Receiver<bool>) {
    serve_on(site, l, stop, None).await
}

async fn serve_on(site: Site, l: tokio::net::TcpListener, stop: tokio::sync::watch::Receiver<bool>, eni: Option<Arc<str>>) {
    super::listener::serve(l, move |req, _peer| handle(site.clone(), eni.clone(), req), stop, true).await
}

struct Running {
    at: Endpoint,
    inode: u64,
    task: tokio::task::JoinHandle<()>,
}

/// Keep a listener on each network interface that functions are served on (`Endpoint`), inside
/// the interface's namespace, until `stop` changes: checked every second, so a function attached
/// to an interface, an interface that becomes ready, or a namespace made anew (after a reboot)
/// gets its listener within a second or so; a listener nobody needs is closed.
pub async fn serve_endpoints(site: Site, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut failing: HashMap<String, String> = HashMap::new();
    loop {
        let want = site.run(|s| s.function_endpoints()).await.unwrap_or_default();
        running.retain(|eni, r| {
            let keep = want.contains(&r.at) && r.at.namespace_inode() == Some(r.inode);
            if !keep {
                r.task.abort();
                tracing::info!(network_interface = %eni, "function endpoint closed");
            }
            keep
        });
        for e in want {
            if running.contains_key(&e.interface) {
                continue;
            }
            let (s, at) = (site.clone(), e.clone());
            let bound = tokio::task::spawn_blocking(move || s.bind_function_endpoint(&at)).await;
            match bound.map_err(|e| e.to_string()).and_then(|r| r.map_err(|e| e.to_string())) {
                Ok((l, inode)) => match tokio::net::TcpListener::from_std(l) {
                    Ok(l) => {
                        failing.remove(&e.interface);
                        tracing::info!(network_interface = %e.interface, addr = %format!("{}:{ENDPOINT_PORT}", e.ip), netns = %e.netns, "function endpoint listening");
                        let task = tokio::spawn(serve_on(site.clone(), l, stop.clone(), Some(Arc::from(e.interface.as_str()))));
                        running.insert(e.interface.clone(), Running { at: e, inode, task });
                    }
                    Err(err) => tracing::warn!(network_interface = %e.interface, error = %err, "function endpoint"),
                },
                Err(err) => {
                    if failing.get(&e.interface) != Some(&err) {
                        tracing::warn!(network_interface = %e.interface, error = %err, "function endpoint cannot listen");
                        failing.insert(e.interface.clone(), err);
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            _ = stop.changed() => break,
        }
    }
    for r in running.values() {
        r.task.abort();
    }
}
