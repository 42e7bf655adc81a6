//! The reconciler framework.
//!
//! Each kind registers a [`Controller`]. Its runner keeps a work queue of resource ids (deduped,
//! each with a due time) and calls `reconcile` for one id at a time. Ids enter the queue:
//! - all of them at start-up: the full pass that is the recovery after a crash or a reboot;
//! - when an event of the kind commits (created, updated, deleting, ...; not `status`, which the
//!   controllers write themselves);
//! - all of them when the drift watcher reports a kernel change cloudlet did not make
//!   ([`Site::wake`], see `site::drift`), and every `reconcile.resync_seconds` as the backstop;
//! - again after a failure, with exponential back-off capped at `reconcile.backoff_max_seconds`,
//!   or when the controller asks to be called again (`Outcome::RequeueAfter`).
//!
//! `reconcile` must be idempotent: it compares desired with observed state and converges.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

use super::{Kind, Site, SiteError};
use crate::state::repo;

/// What a reconcile pass asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Converged; wake again only on a change or a resync.
    Done,
    /// Call again after this long (polling observed state, such as a node's heartbeat).
    RequeueAfter(Duration),
}

/// A controller for one kind.
pub trait Controller: Send + Sync + 'static {
    /// The kind it reconciles.
    fn kind(&self) -> Kind;
    /// Other kinds whose changes may change this kind's desired state: an event of one of them
    /// enqueues every resource of this kind (for a VPC: its subnets, groups and interfaces).
    fn watches(&self) -> &'static [Kind] {
        &[]
    }
    /// Converge one resource (which may no longer exist) to its desired state.
    fn reconcile(&self, site: &Site, id: &str) -> impl Future<Output = Result<Outcome, SiteError>> + Send;
}

/// A deduplicating delay queue of ids.
#[derive(Default)]
struct Queue {
    due: BTreeSet<(Instant, String)>,
    by_id: HashMap<String, Instant>,
}

impl Queue {
    /// Schedule `id` at `at`, unless it is already scheduled earlier.
    fn push(&mut self, id: String, at: Instant) {
        if let Some(&old) = self.by_id.get(&id) {
            if old <= at {
                return;
            }
            self.due.remove(&(old, id.clone()));
        }
        self.due.insert((at, id.clone()));
        self.by_id.insert(id, at);
    }

    fn pop_due(&mut self, now: Instant) -> Option<String> {
        let first = self.due.first()?.clone();
        if first.0 > now {
            return None;
        }
        self.due.remove(&first);
        self.by_id.remove(&first.1);
        Some(first.1)
    }

    fn next_at(&self) -> Option<Instant> {
        self.due.first().map(|(t, _)| *t)
    }
}

/// Back-off after `failures` consecutive failures: 500 ms doubling, capped at `max`.
pub fn backoff(failures: u32, max: Duration) -> Duration {
    let ms = 500u64.saturating_mul(1u64 << failures.saturating_sub(1).min(20));
    Duration::from_millis(ms).min(max)
}

async fn all_ids(site: &Site, kind: Kind) -> Vec<String> {
    match site.run(move |s| s.read(|c| Ok(repo::ids_of_kind(c, kind.as_str())?))).await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::error!(kind = kind.as_str(), error = %e, "listing ids for a full pass failed");
            Vec::new()
        }
    }
}

/// Run a controller until `shutdown` turns true. Sends its kind on `initial_done` once every id
/// that existed at start-up has been reconciled once (successfully or not).
pub async fn run<C: Controller>(site: Site, controller: C, initial_done: mpsc::UnboundedSender<Kind>, mut shutdown: watch::Receiver<bool>) {
    let kind = controller.kind();
    let cfg = site.config().reconcile.clone();
    let max_backoff = Duration::from_secs(cfg.backoff_max_seconds.max(1));
    let mut bus = site.subscribe();
    let mut wakes = site.subscribe_wakes();
    let mut queue = Queue::default();
    let mut failures: HashMap<String, u32> = HashMap::new();
    let mut initial: HashSet<String> = all_ids(&site, kind).await.into_iter().collect();
    let now = Instant::now();
    for id in &initial {
        queue.push(id.clone(), now);
    }
    if initial.is_empty() {
        let _ = initial_done.send(kind);
    }
    let resync_every = Duration::from_secs(cfg.resync_seconds.max(1));
    let mut resync = tokio::time::interval_at(now + resync_every, resync_every);
    tracing::debug!(kind = kind.as_str(), items = initial.len(), "reconciler started");
    loop {
        while let Some(id) = queue.pop_due(Instant::now()) {
            let started = std::time::Instant::now();
            let result = controller.reconcile(&site, &id).await;
            site.metrics().observe_reconcile(kind, result.is_ok(), started.elapsed());
            match result {
                Ok(outcome) => {
                    if failures.remove(&id).is_some() {
                        let _ = site
                            .run({
                                let id = id.clone();
                                move |s| s.set_status(&id, |st, _| st.set_condition("Reconciled", true, "Recovered", ""))
                            })
                            .await;
                    }
                    if let Outcome::RequeueAfter(d) = outcome {
                        queue.push(id.clone(), Instant::now() + d);
                    }
                }
                Err(e) => {
                    let n = failures.entry(id.clone()).or_insert(0);
                    *n += 1;
                    let delay = backoff(*n, max_backoff);
                    tracing::warn!(kind = kind.as_str(), id = %id, error = %e, retry_in_ms = delay.as_millis() as u64, "reconcile failed");
                    let msg = e.to_string();
                    let _ = site
                        .run({
                            let id = id.clone();
                            move |s| s.set_status(&id, |st, _| st.set_condition("Reconciled", false, "Error", &msg))
                        })
                        .await;
                    queue.push(id.clone(), Instant::now() + delay);
                }
            }
            if initial.remove(&id) && initial.is_empty() {
                let _ = initial_done.send(kind);
            }
            if *shutdown.borrow() {
                return;
            }
        }
        let wake_at = queue.next_at().unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep_until(wake_at) => {}
            _ = resync.tick() => {
                for id in all_ids(&site, kind).await {
                    queue.push(id, Instant::now());
                }
            }
            w = wakes.recv() => {
                if matches!(w, Ok(k) if k == kind) || matches!(w, Err(broadcast::error::RecvError::Lagged(_))) {
                    for id in all_ids(&site, kind).await {
                        queue.push(id, Instant::now());
                    }
                }
            }
            ev = bus.recv() => match ev {
                Ok(e) if e.kind == kind.as_str() && e.event_type != "status" => {
                    queue.push(e.resource_id.clone(), Instant::now());
                }
                Ok(e) if e.event_type != "status" && controller.watches().iter().any(|k| k.as_str() == e.kind) => {
                    for id in all_ids(&site, kind).await {
                        queue.push(id, Instant::now());
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    for id in all_ids(&site, kind).await {
                        queue.push(id, Instant::now());
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let max = Duration::from_secs(30);
        assert_eq!(backoff(1, max), Duration::from_millis(500));
        assert_eq!(backoff(2, max), Duration::from_millis(1000));
        assert_eq!(backoff(4, max), Duration::from_millis(4000));
        assert_eq!(backoff(40, max), max);
    }

    #[test]
    fn queue_dedupes_and_keeps_the_earliest_time() {
        let mut q = Queue::default();
        let t0 = Instant::now();
        q.push("a".into(), t0 + Duration::from_secs(10));
        q.push("a".into(), t0);
        q.push("a".into(), t0 + Duration::from_secs(5));
        q.push("b".into(), t0 + Duration::from_secs(1));
        assert_eq!(q.pop_due(t0).as_deref(), Some("a"));
        assert_eq!(q.pop_due(t0), None);
        assert_eq!(q.next_at(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(q.pop_due(t0 + Duration::from_secs(2)).as_deref(), Some("b"));
        assert_eq!(q.next_at(), None);
    }
}
