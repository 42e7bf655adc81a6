//! What the portal knows of each site besides its streams: its inventory (version, nodes,
//! capacity and what is free, resource counts) and the link's round-trip time, read over the
//! link when it comes up and every [`REFRESH`] after, and kept in the store so a disconnected
//! site still shows what it last reported and when it was last seen.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::StatusCode;
use hyper::client::conn::http2::SendRequest;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::store::PortalStore;

/// How often a connected site's inventory is read again.
pub const REFRESH: Duration = Duration::from_secs(60);
/// The largest answer taken, bytes.
const MAX_ANSWER: usize = 8 << 20;

/// GET `path` on the site over the link: (status, JSON body, round-trip time).
async fn get(site: &str, sender: &mut SendRequest<Body>, path: &str) -> Result<(StatusCode, Value, Duration), String> {
    let t0 = Instant::now();
    let (status, body) = super::over_link::get_over_link(site, sender, path, &[], Duration::from_secs(20), MAX_ANSWER).await?;
    let rtt = t0.elapsed();
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null), rtt))
}

/// Read the inventory of `site` once: its summary (`/v1/site`), its nodes (`/v1/nodes`) reduced
/// to name, phase and capacity, the totals, and the round-trip time of a bare `/healthz`.
pub async fn read(site: &str, sender: &mut SendRequest<Body>) -> Result<Value, String> {
    let (_, _, rtt) = get(site, sender, "/healthz").await?;
    let (st, info, _) = get(site, sender, "/v1/site").await?;
    if st != StatusCode::OK {
        return Err(format!("/v1/site answered {st}"));
    }
    let (st, nodes, _) = get(site, sender, "/v1/nodes").await?;
    if st != StatusCode::OK {
        return Err(format!("/v1/nodes answered {st}"));
    }
    let mut total = serde_json::Map::new();
    let mut list = Vec::new();
    for n in nodes["items"].as_array().into_iter().flatten() {
        let cap = &n["status"]["capacity"];
        for key in ["cpus", "memory_bytes", "memory_available_bytes", "disk_bytes", "disk_free_bytes"] {
            let add = cap[key].as_u64().unwrap_or(0);
            let e = total.entry(key.to_string()).or_insert(json!(0));
            *e = json!(e.as_u64().unwrap_or(0) + add);
        }
        list.push(json!({ "name": n["name"], "phase": n["status"]["phase"], "capacity": cap }));
    }
    Ok(json!({
        "version": info["version"],
        "node_name": info["node_name"],
        "started_at": info["started_at"],
        "counts": info["counts"],
        "nodes": list,
        "capacity": total,
        "link_latency_ms": (rtt.as_secs_f64() * 1000.0 * 100.0).round() / 100.0,
        "refreshed_at": chrono::Utc::now().to_rfc3339(),
    }))
}

/// Keep `site`'s inventory in `store` fresh until `link` closes; then record when it was last
/// seen.
pub async fn run(site: String, mut sender: SendRequest<Body>, store: Arc<dyn PortalStore>, mut link: watch::Receiver<()>) {
    loop {
        let r = tokio::select! {
            _ = link.changed() => break,
            r = read(&site, &mut sender) => r,
        };
        let now = chrono::Utc::now().timestamp();
        let put = match r {
            Ok(inv) => store.put_inventory(&site, now, Some(inv.to_string())).await,
            Err(e) => {
                tracing::warn!(%site, error = %e, "reading the site's inventory failed");
                Ok(())
            }
        };
        if let Err(e) = put {
            tracing::warn!(%site, error = %e, "storing the site's inventory failed");
        }
        tokio::select! {
            _ = link.changed() => break,
            _ = tokio::time::sleep(REFRESH) => {}
        }
    }
    drop(sender);
    if let Err(e) = store.put_inventory(&site, chrono::Utc::now().timestamp(), None).await {
        tracing::warn!(%site, error = %e, "recording when the site was last seen failed");
    }
}
