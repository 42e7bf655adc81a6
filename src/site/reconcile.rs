//! The reconciler framework.
//!
//! Each kind registers a [`Controller`]. Its runner keeps a work queue of resource ids (deduped,
//! each with a due time) and calls `reconcile` for up to [`Controller::workers`] ids at once,
//! never twice at once for one id, choosing fairly across projects ([`Fair`]). Ids enter the queue:
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
    /// How many of its resources may reconcile at once (each id one at a time, chosen fairly
    /// across projects); more than 1 only for a kind whose passes are independent of each other
    /// and may wait long on the outside (an image pull from a slow registry).
    fn workers(&self) -> usize {
        1
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
}

/// Back-off after `failures` consecutive failures: 500 ms doubling, capped at `max`.
pub fn backoff(failures: u32, max: Duration) -> Duration {
    let ms = 500u64.saturating_mul(1u64 << failures.saturating_sub(1).min(20));
    Duration::from_millis(ms).min(max)
}

/// Entries of the queue's due end [`Fair::pick`] looks at for one choice (a bound on the cost of
/// a pick during a full pass over thousands of ids).
const SCAN: usize = 256;

/// The choice of which due id a free worker reconciles next, fair across projects: among the due
/// ids (not already running), the one whose project started a reconcile least recently, then the
/// earliest due; a project holds at most its equal share of the workers while others have work,
/// and never all of them when there is more than one, so another project's work always finds a
/// worker free (one tenant's slow pulls cannot hold another's).
#[derive(Default)]
struct Fair {
    workers: usize,
    /// Each known id's project (empty: a site resource, or not yet known).
    project_of: HashMap<String, String>,
    /// Ids running now.
    busy: HashSet<String>,
    /// Reconciles running per project.
    running: HashMap<String, usize>,
    /// When (in picks) each project last started one.
    served: HashMap<String, u64>,
    picks: u64,
}

impl Fair {
    fn new(workers: usize) -> Self {
        Fair { workers: workers.max(1), ..Default::default() }
    }

    fn project(&self, id: &str) -> String {
        self.project_of.get(id).cloned().unwrap_or_default()
    }

    /// The most workers one project may hold while `active` projects have work.
    fn cap(&self, active: usize) -> usize {
        if self.workers == 1 {
            return 1;
        }
        (self.workers / active.max(1)).clamp(1, self.workers - 1)
    }

    /// Take the next id to reconcile from `q` (due at `now`), or `None` when every worker is
    /// busy or nothing due may start.
    fn pick(&mut self, q: &mut Queue, now: Instant) -> Option<String> {
        if self.busy.len() >= self.workers {
            return None;
        }
        let due: Vec<(Instant, String)> = q.due.iter().take_while(|(t, _)| *t <= now).filter(|(_, id)| !self.busy.contains(id)).take(SCAN).cloned().collect();
        if due.is_empty() {
            return None;
        }
        let mut active: HashSet<String> = self.running.keys().cloned().collect();
        active.extend(due.iter().map(|(_, id)| self.project(id)));
        let cap = self.cap(active.len());
        let (at, id) = due
            .into_iter()
            .filter(|(_, id)| self.running.get(&self.project(id)).copied().unwrap_or(0) < cap)
            .min_by_key(|(t, id)| (self.served.get(&self.project(id)).copied().unwrap_or(0), *t))?;
        q.due.remove(&(at, id.clone()));
        q.by_id.remove(&id);
        let p = self.project(&id);
        self.picks += 1;
        self.served.insert(p.clone(), self.picks);
        *self.running.entry(p).or_insert(0) += 1;
        self.busy.insert(id.clone());
        Some(id)
    }

    /// Reconciling `id` ended.
    fn done(&mut self, id: &str) {
        self.busy.remove(id);
        let p = self.project(id);
        if let Some(n) = self.running.get_mut(&p) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.running.remove(&p);
            }
        }
    }
}

/// Queue every resource of `kind` now, learning their projects.
async fn push_all(site: &Site, kind: Kind, queue: &mut Queue, fair: &mut Fair) -> Vec<String> {
    let rows = match site.run(move |s| s.read(|c| Ok(repo::ids_and_projects_of_kind(c, kind.as_str())?))).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::error!(kind = kind.as_str(), error = %e, "listing ids for a full pass failed");
            Vec::new()
        }
    };
    let now = Instant::now();
    // What a full pass lists is every id there is: forget the projects of deleted ones.
    let live: HashSet<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
    let busy = &fair.busy;
    fair.project_of.retain(|id, _| live.contains(id.as_str()) || busy.contains(id));
    rows.into_iter()
        .map(|(id, project)| {
            fair.project_of.insert(id.clone(), project);
            queue.push(id.clone(), now);
            id
        })
        .collect()
}

/// Run a controller until `shutdown` turns true. Sends its kind on `initial_done` once every id
/// that existed at start-up has been reconciled once (successfully or not). Up to
/// [`Controller::workers`] ids reconcile at once (each id one at a time), chosen by [`Fair`].
pub async fn run<C: Controller>(site: Site, controller: C, initial_done: mpsc::UnboundedSender<Kind>, mut shutdown: watch::Receiver<bool>) {
    let kind = controller.kind();
    let cfg = site.config().reconcile.clone();
    let max_backoff = Duration::from_secs(cfg.backoff_max_seconds.max(1));
    let mut bus = site.subscribe();
    let mut wakes = site.subscribe_wakes();
    let mut queue = Queue::default();
    let mut fair = Fair::new(controller.workers());
    let mut failures: HashMap<String, u32> = HashMap::new();
    let mut initial: HashSet<String> = push_all(&site, kind, &mut queue, &mut fair).await.into_iter().collect();
    if initial.is_empty() {
        let _ = initial_done.send(kind);
    }
    let resync_every = Duration::from_secs(cfg.resync_seconds.max(1));
    let mut resync = tokio::time::interval_at(Instant::now() + resync_every, resync_every);
    tracing::debug!(kind = kind.as_str(), items = initial.len(), workers = fair.workers, "reconciler started");
    let (site_ref, controller_ref) = (&site, &controller);
    let mut running = futures_util::stream::FuturesUnordered::new();
    loop {
        while let Some(id) = fair.pick(&mut queue, Instant::now()) {
            running.push(async move {
                let started = std::time::Instant::now();
                let result = controller_ref.reconcile(site_ref, &id).await;
                (id, result, started.elapsed())
            });
        }
        // Due ids not picked wait for a running one to end (which wakes this loop).
        let now = Instant::now();
        let wake_at = queue.due.iter().map(|(t, _)| *t).find(|t| *t > now).unwrap_or_else(|| now + Duration::from_secs(3600));
        tokio::select! {
            _ = shutdown.changed() => return,
            Some((id, result, took)) = futures_util::StreamExt::next(&mut running), if !running.is_empty() => {
                fair.done(&id);
                site.metrics().observe_reconcile(kind, result.is_ok(), took);
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
            _ = tokio::time::sleep_until(wake_at) => {}
            _ = resync.tick() => {
                push_all(&site, kind, &mut queue, &mut fair).await;
            }
            w = wakes.recv() => {
                if matches!(w, Ok(k) if k == kind) || matches!(w, Err(broadcast::error::RecvError::Lagged(_))) {
                    push_all(&site, kind, &mut queue, &mut fair).await;
                }
            }
            ev = bus.recv() => match ev {
                Ok(e) if e.kind == kind.as_str() && e.event_type != "status" => {
                    fair.project_of.insert(e.resource_id.clone(), e.project_id.clone().unwrap_or_default());
                    queue.push(e.resource_id.clone(), Instant::now());
                }
                Ok(e) if e.event_type != "status" && controller.watches().iter().any(|k| k.as_str() == e.kind) => {
                    push_all(&site, kind, &mut queue, &mut fair).await;
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    push_all(&site, kind, &mut queue, &mut fair).await;
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
    fn a_project_with_many_due_ids_cannot_hold_every_worker() {
        let (mut q, mut f, t0) = (Queue::default(), Fair::new(4), Instant::now());
        let add = |q: &mut Queue, f: &mut Fair, id: &str, p: &str| {
            f.project_of.insert(id.into(), p.into());
            q.push(id.into(), t0);
        };
        for i in 0..10 {
            add(&mut q, &mut f, &format!("a{i}"), "A");
        }
        // A alone: three of the four workers; one stays free for another project.
        let picked: Vec<String> = std::iter::from_fn(|| f.pick(&mut q, t0)).collect();
        assert_eq!(picked, ["a0", "a1", "a2"]);
        add(&mut q, &mut f, "b0", "B");
        assert_eq!(f.pick(&mut q, t0).as_deref(), Some("b0"), "B's work starts at once");
        assert_eq!(f.pick(&mut q, t0), None, "every worker is busy");
        // With two projects active A's share is two: when one of A's ends, B's next one starts.
        add(&mut q, &mut f, "b1", "B");
        f.done("a0");
        assert_eq!(f.pick(&mut q, t0).as_deref(), Some("b1"));
        // A running id due again waits for its run to end.
        add(&mut q, &mut f, "a1", "A");
        f.done("b0");
        f.done("b1");
        let next = f.pick(&mut q, t0).expect("a due id of A");
        assert_ne!(next, "a1");
    }

    #[test]
    fn one_worker_alternates_between_projects() {
        let (mut q, mut f, t0) = (Queue::default(), Fair::new(1), Instant::now());
        for (id, p, ms) in [("a0", "A", 0), ("a1", "A", 1), ("a2", "A", 2), ("b0", "B", 3)] {
            f.project_of.insert(id.into(), p.into());
            q.push(id.into(), t0 + Duration::from_millis(ms));
        }
        let now = t0 + Duration::from_millis(10);
        let mut order = Vec::new();
        while let Some(id) = f.pick(&mut q, now) {
            assert_eq!(f.pick(&mut q, now), None, "one at a time");
            f.done(&id);
            order.push(id);
        }
        assert_eq!(order, ["a0", "b0", "a1", "a2"]);
    }

    #[test]
    fn queue_dedupes_and_keeps_the_earliest_time() {
        let mut q = Queue::default();
        let t0 = Instant::now();
        q.push("a".into(), t0 + Duration::from_secs(10));
        q.push("a".into(), t0);
        q.push("a".into(), t0 + Duration::from_secs(5));
        q.push("b".into(), t0 + Duration::from_secs(1));
        let due: Vec<(Instant, String)> = q.due.iter().cloned().collect();
        assert_eq!(due, [(t0, "a".to_string()), (t0 + Duration::from_secs(1), "b".to_string())]);
        assert_eq!(q.by_id.len(), 2);
        let mut f = Fair::new(1);
        assert_eq!(f.pick(&mut q, t0).as_deref(), Some("a"));
        f.done("a");
        assert_eq!(f.pick(&mut q, t0), None, "b is not due yet");
        assert_eq!(f.pick(&mut q, t0 + Duration::from_secs(2)).as_deref(), Some("b"));
        assert!(q.due.is_empty() && q.by_id.is_empty());
    }
}
