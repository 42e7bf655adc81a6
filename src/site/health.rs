//! Load balancer health checks.
//!
//! Once a second the checker looks for load balancers whose check is due (each has its own
//! `interval_seconds`) and starts a task that opens a TCP connection to every backend at once
//! from inside the VPC's router namespace, where the backends are reachable. Each load balancer
//! has at most one pass in flight, and passes of different load balancers run side by side, so a
//! tenant whose backends time out slows no other tenant's checks. A backend leaves service after
//! `unhealthy_threshold` consecutive failures and returns after `healthy_threshold` consecutive
//! successes; backends start in service. A change is written to the load balancer's
//! `status.backends` with a `health` event, which makes the VPC reconciler re-render the map.
//! Counters live in memory; health itself is in state, so a restarted daemon keeps a dead backend
//! out until it recovers.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::balancing::{backends_status, unhealthy};
use super::lookup::spec_of;
use super::model::Status;
use super::net_model::LoadBalancerSpec;
use super::{Kind, ProjectCtx, Site, SiteError};
use crate::net::{names, services};
use crate::state::repo;

/// Consecutive results of one backend.
#[derive(Default, Clone, Copy)]
struct Streak {
    ok: u32,
    failed: u32,
}

/// One load balancer's probe results: (backend ip, backend port, answered).
type Probed = Vec<(Ipv4Addr, u16, bool)>;

/// Run the checker until `shutdown` turns true. Each load balancer's pass runs as its own task
/// (one at a time per load balancer), so one project's backends that time out delay only that
/// project's load balancer, never another's checks.
pub async fn run(site: Site, mut shutdown: watch::Receiver<bool>) {
    let mut due: HashMap<String, Instant> = HashMap::new();
    let mut streaks: HashMap<(String, Ipv4Addr, u16), Streak> = HashMap::new();
    let mut running: JoinSet<(String, Probed)> = JoinSet::new();
    let mut in_flight: HashMap<tokio::task::Id, String> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            Some(done) = running.join_next_with_id(), if !running.is_empty() => {
                match done {
                    Ok((task, (id, probed))) => {
                        in_flight.remove(&task);
                        if let Err(e) = apply(&site, &id, probed, &mut streaks).await {
                            tracing::warn!(load_balancer = %id, error = %e, "recording backend health failed");
                        }
                    }
                    Err(e) => {
                        in_flight.remove(&e.id());
                        tracing::warn!(error = %e, "a health check task failed");
                    }
                }
            }
            _ = tick.tick() => {
                let rows = match site.run(|s| s.read(|c| Ok(repo::list(c, Kind::LoadBalancer.as_str(), None, None, usize::MAX >> 1)?))).await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, "listing load balancers for health checks failed");
                        continue;
                    }
                };
                due.retain(|id, _| rows.iter().any(|r| &r.id == id));
                streaks.retain(|(id, _, _), _| rows.iter().any(|r| &r.id == id));
                for row in rows {
                    let Ok(spec) = spec_of::<LoadBalancerSpec>(&row) else { continue };
                    let busy = in_flight.values().any(|id| *id == row.id);
                    match &spec.health_check {
                        Some(hc) if !busy && due.get(&row.id).is_none_or(|t| *t <= Instant::now()) => {
                            due.insert(row.id.clone(), Instant::now() + Duration::from_secs(u64::from(hc.interval_seconds)));
                            let handle = running.spawn(probe_all(row.id.clone(), spec.clone()));
                            in_flight.insert(handle.id(), row.id.clone());
                        }
                        // Between checks the status still follows the spec (a backend removed).
                        _ => {
                            let id = row.id.clone();
                            if let Err(e) = apply(&site, &id, Vec::new(), &mut streaks).await {
                                tracing::warn!(load_balancer = %row.name, error = %e, "recording backend health failed");
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Probe every backend of `spec` at once from inside its VPC's router namespace.
async fn probe_all(id: String, spec: LoadBalancerSpec) -> (String, Probed) {
    let Some(hc) = spec.health_check.clone() else { return (id, Vec::new()) };
    let netns = names::vpc_netns(&spec.vpc);
    let timeout = Duration::from_secs(u64::from(hc.timeout_seconds));
    let probes: Vec<_> = spec
        .backends
        .iter()
        .map(|b| {
            let to = SocketAddr::from((b.ip, hc.port.unwrap_or(b.port)));
            let ns = netns.clone();
            (b.ip, b.port, tokio::task::spawn_blocking(move || services::tcp_probe(&ns, to, timeout)))
        })
        .collect();
    let mut out = Vec::with_capacity(probes.len());
    for (ip, port, probe) in probes {
        out.push((ip, port, probe.await.unwrap_or(false)));
    }
    (id, out)
}

/// Fold `probed` into the streaks of load balancer `id` (as its spec is now) and record the
/// backends' health; with no results, only what the spec changed (a backend removed, the check
/// turned off).
async fn apply(site: &Site, id: &str, probed: Probed, streaks: &mut HashMap<(String, Ipv4Addr, u16), Streak>) -> Result<(), SiteError> {
    let key = id.to_string();
    let Some(row) = site.run(move |s| s.read(|c| Ok(repo::get(c, &key)?))).await? else { return Ok(()) };
    let spec: LoadBalancerSpec = spec_of(&row)?;
    let mut down = unhealthy(&row);
    down.retain(|d| spec.backends.iter().any(|b| (b.ip, b.port) == *d));
    match &spec.health_check {
        None => down.clear(),
        Some(hc) => {
            for (ip, port, ok) in probed.into_iter().filter(|(ip, port, _)| spec.backends.iter().any(|b| (b.ip, b.port) == (*ip, *port))) {
                let s = streaks.entry((id.to_string(), ip, port)).or_default();
                if ok {
                    s.ok += 1;
                    s.failed = 0;
                } else {
                    s.failed += 1;
                    s.ok = 0;
                }
                let is_down = down.contains(&(ip, port));
                if is_down && s.ok >= hc.healthy_threshold {
                    down.retain(|d| *d != (ip, port));
                } else if !is_down && s.failed >= hc.unhealthy_threshold {
                    down.push((ip, port));
                }
            }
        }
    }
    let want = backends_status(&spec.backends, &down);
    let id = id.to_string();
    site.run(move |s| record(s, &id, want)).await
}

/// Write `status.backends` when it differs; a change of health also gets a `health` event (not
/// a `status` one), which re-renders the VPC's map.
fn record(site: &Site, id: &str, want: serde_json::Value) -> Result<(), SiteError> {
    // Most passes change nothing: look first, so they take no write transaction.
    let current = site.read(|c| Ok(repo::get(c, id)?))?;
    let same =
        current.is_none_or(|row| serde_json::from_str::<Status>(&row.status).ok().and_then(|st| st.extra.get("backends").cloned()).as_ref() == Some(&want));
    if same {
        return Ok(());
    }
    site.write(|tx, evs| {
        let Some(row) = repo::get(tx, id)? else { return Ok(()) };
        let mut st: Status = serde_json::from_str(&row.status).unwrap_or_default();
        let before = st.extra.get("backends").cloned().unwrap_or_default();
        if before == want {
            return Ok(());
        }
        let health = |v: &serde_json::Value| -> Vec<(String, bool)> {
            v.as_array()
                .map(|a| a.iter().map(|b| (format!("{}:{}", b["ip"].as_str().unwrap_or(""), b["port"]), b["healthy"] != false)).collect())
                .unwrap_or_default()
        };
        let (old, new) = (health(&before), health(&want));
        st.extra.insert("backends".into(), want);
        repo::update_status(tx, id, &serde_json::to_string(&st)?, &super::model::now_rfc3339())?;
        let flips: Vec<String> = new
            .iter()
            .filter(|(addr, ok)| old.iter().any(|(a, o)| a == addr && o != ok))
            .map(|(addr, ok)| format!("{addr} {}", if *ok { "healthy" } else { "unhealthy" }))
            .collect();
        if !flips.is_empty() {
            let p = row.project_id.clone().zip(row.project_name.clone()).map(|(id, name)| ProjectCtx { id, name });
            evs.push(super::event_for(&row, p.as_ref(), "health", format!("load balancer {}: {}", row.name, flips.join(", "))));
        }
        Ok(())
    })
}
