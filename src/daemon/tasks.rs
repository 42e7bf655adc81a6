//! The daemon's task registry: every long-running task (reconcilers, health checks, listeners,
//! periodic jobs) is spawned through it under a name, sees one stop signal, and is awaited at
//! shutdown within one deadline; a task still running then is named in the log.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::site::{Kind, Site};

/// Named tasks and their shared stop signal (`true` once shutdown began).
pub struct Tasks {
    stop: watch::Sender<bool>,
    running: Vec<(&'static str, JoinHandle<()>)>,
}

impl Tasks {
    /// An empty registry.
    pub fn new() -> Tasks {
        Tasks { stop: watch::channel(false).0, running: Vec::new() }
    }

    /// The stop signal: changes to `true` when [`Tasks::shutdown`] begins.
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Spawn `task` as `name`, to be awaited at shutdown. Returns the name (for counting).
    pub fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) -> &'static str {
        self.add(name, tokio::spawn(task));
        name
    }

    /// Register an already spawned task.
    pub fn add(&mut self, name: &'static str, handle: JoinHandle<()>) {
        self.running.push((name, handle));
    }

    /// Spawn a task that ends by itself and is not awaited at shutdown.
    pub fn detach(&self, task: impl Future<Output = ()> + Send + 'static) {
        tokio::spawn(task);
    }

    /// Send the stop signal and await every task, `deadline` in all; tasks still running after
    /// it are logged by name and left to the runtime's end.
    pub async fn shutdown(self, deadline: Duration) {
        let _ = self.stop.send(true);
        let mut left: BTreeSet<&'static str> = self.running.iter().map(|(n, _)| *n).collect();
        let drain = async {
            for (name, h) in self.running {
                let _ = h.await;
                left.remove(name);
            }
        };
        if tokio::time::timeout(deadline, drain).await.is_err() {
            tracing::warn!(tasks = ?left, "shutdown took longer than {} s; exiting anyway", deadline.as_secs());
        }
    }
}

/// Mark the site ready once each of `controllers` reconcilers reported its first full pass on
/// `done`.
pub async fn ready_after_first_pass(site: Site, mut done: mpsc::UnboundedReceiver<Kind>, controllers: usize) {
    let mut seen = BTreeSet::new();
    while let Some(k) = done.recv().await {
        seen.insert(k);
        if seen.len() == controllers {
            site.set_ready();
            tracing::info!("start-up reconcile pass complete; ready");
            break;
        }
    }
}

/// Run `job` at once and then every `period` until `stop` changes.
pub async fn every<F, Fut>(period: Duration, mut stop: watch::Receiver<bool>, job: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => job().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn shutdown_stops_periodic_jobs_and_waits_for_every_task() {
        let mut tasks = Tasks::new();
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        tasks.spawn(
            "tick",
            every(Duration::from_millis(10), tasks.stop_signal(), move || {
                let r = r.clone();
                async move {
                    r.fetch_add(1, Ordering::SeqCst);
                }
            }),
        );
        let ended = Arc::new(AtomicU32::new(0));
        let (e, mut stop) = (ended.clone(), tasks.stop_signal());
        tasks.spawn("waiter", async move {
            let _ = stop.changed().await;
            e.fetch_add(1, Ordering::SeqCst);
        });
        while runs.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tasks.shutdown(Duration::from_secs(30)).await;
        assert_eq!(ended.load(Ordering::SeqCst), 1, "the stop signal reached the task and it was awaited");
        let after = runs.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(runs.load(Ordering::SeqCst), after, "the periodic job stopped with the shutdown");
    }
}
