//! Per-project shares of the function engine's instance pool.
//!
//! The engine's pooling allocator holds `[functions] pool_instances` instances for every function
//! of the site. Without shares one project's slow requests could hold all of them, and every
//! other project's functions would fail to instantiate (502). Each project that has a function
//! deployed gets an equal share, `pool / projects` (at least 1), of requests in flight; a request
//! past its project's share is answered 503 `busy` before it takes an instance. The shares add up
//! to at most the pool, so a project's requests always find an instance free within its share.
//! When a project deploys its first function the shares shrink for new requests; requests
//! already running finish under the share they started with (bounded by their timeouts).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The shares of one pool. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct PoolShares {
    total: usize,
    projects: AtomicUsize,
    in_flight: Mutex<HashMap<String, usize>>,
}

/// A request's hold on its project's share; released on drop.
#[derive(Debug)]
pub struct ShareGuard {
    shares: Arc<PoolShares>,
    project: String,
}

impl PoolShares {
    /// Shares of a pool of `total` instances, with no project yet.
    pub fn new(total: usize) -> Arc<Self> {
        Arc::new(PoolShares { total: total.max(1), projects: AtomicUsize::new(0), in_flight: Mutex::new(HashMap::new()) })
    }

    /// Set how many projects have a function deployed (the share's divisor).
    pub fn set_projects(&self, n: usize) {
        self.projects.store(n, Ordering::Relaxed);
    }

    /// Requests a project may have in flight now: `total / projects`, at least 1.
    pub fn share(&self) -> usize {
        (self.total / self.projects.load(Ordering::Relaxed).max(1)).max(1)
    }

    /// Requests project `project` has in flight.
    pub fn in_flight(&self, project: &str) -> usize {
        self.in_flight.lock().map(|m| m.get(project).copied().unwrap_or(0)).unwrap_or(0)
    }

    /// Take one slot of `project`'s share; `None` when its share is in use.
    pub fn try_acquire(self: &Arc<Self>, project: &str) -> Option<ShareGuard> {
        let share = self.share();
        let mut m = self.in_flight.lock().ok()?;
        let n = m.entry(project.to_string()).or_insert(0);
        if *n >= share {
            return None;
        }
        *n += 1;
        Some(ShareGuard { shares: self.clone(), project: project.to_string() })
    }
}

impl Drop for ShareGuard {
    fn drop(&mut self) {
        if let Ok(mut m) = self.shares.in_flight.lock()
            && let Some(n) = m.get_mut(&self.project)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.project);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_project_gets_an_equal_share_that_others_cannot_take() {
        let s = PoolShares::new(8);
        s.set_projects(2);
        assert_eq!(s.share(), 4);
        let b: Vec<ShareGuard> = (0..10).filter_map(|_| s.try_acquire("b")).collect();
        assert_eq!(b.len(), 4, "b holds its share and no more");
        let a: Vec<ShareGuard> = (0..4).filter_map(|_| s.try_acquire("a")).collect();
        assert_eq!(a.len(), 4, "a's share is untouched by b's flood");
        assert!(s.try_acquire("a").is_none());
        drop(a);
        assert_eq!(s.in_flight("a"), 0);
        // With one project it may use the whole pool; with more than the pool, each gets one.
        s.set_projects(1);
        let whole: Vec<ShareGuard> = (0..10).filter_map(|_| s.try_acquire("a")).collect();
        assert_eq!(whole.len(), 8);
        s.set_projects(100);
        assert_eq!(s.share(), 1);
        drop(b);
        assert_eq!(s.in_flight("b"), 0);
    }
}
