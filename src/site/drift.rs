//! Drift repair on kernel events: a VPC pass runs within a second or two of someone deleting a
//! VPC or interface namespace (inotify on `/run/netns`), deleting a link inside a router or the
//! uplink namespace (`RTM_DELLINK`), or committing an nftables change there that cloudlet did not
//! make (`NFT_MSG_NEWGEN` with a generation no VPC pass recorded). The periodic resync
//! (`reconcile.resync_seconds`) stays as the backstop for what no event reports. Containers and
//! instances need no watcher: their reconcilers poll running workloads every second.
//!
//! A pass's own changes also raise events: links it removes and namespaces of deleted
//! resources cause one more pass, which changes nothing; its ruleset commits are recognised by
//! their generation ([`Site::record_ruleset_generation`]), checked after a grace period so the
//! pass has recorded it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Kind, Site};
use crate::net::watch::{NamespaceEvents, NetEvent, NetnsDir};
use crate::net::{host, names};

/// Namespaces whose watcher could not start (a file in `/run/netns` that is no namespace).
type GivenUp = Arc<Mutex<BTreeSet<String>>>;

fn lock(g: &GivenUp) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
    g.lock().unwrap_or_else(|p| p.into_inner())
}

/// How long a ruleset commit may go unrecorded before it counts as someone else's.
const OWN_COMMIT_GRACE: Duration = Duration::from_millis(1500);

/// The namespaces this daemon's state owns: its VPC routers, and its interfaces'. Only these
/// are watched (another daemon on the host, as in tests, has its own), and only their removal
/// wakes a pass.
async fn owned(site: &Site) -> (BTreeSet<String>, BTreeSet<String>) {
    let read = |s: &Site, k: Kind| s.read(|c| Ok(crate::state::repo::ids_of_kind(c, k.as_str())?));
    site.run(move |s| {
        Ok((
            read(s, Kind::Vpc)?.iter().map(|id| names::vpc_netns(id)).collect(),
            read(s, Kind::NetworkInterface)?.iter().map(|id| names::eni_netns(id)).collect(),
        ))
    })
    .await
    .unwrap_or_default()
}

/// Watch until `stop` changes. Failing to watch is logged once; the periodic resync remains.
pub async fn run(site: Site, mut stop: watch::Receiver<bool>) {
    let dir = match NetnsDir::watch(Path::new(host::NETNS_DIR)) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "watching /run/netns failed; drift is repaired by the periodic resync only");
            return;
        }
    };
    let mut tasks: BTreeMap<String, JoinHandle<()>> = BTreeMap::new();
    let given_up: GivenUp = Arc::default();
    let uplink = site.config().network.uplink_netns.clone();
    let start = |tasks: &mut BTreeMap<String, JoinHandle<()>>, ns: String| {
        tasks.retain(|_, t| !t.is_finished());
        if !tasks.contains_key(&ns) && !lock(&given_up).contains(&ns) {
            let t = tokio::spawn(watch_namespace(site.clone(), ns.clone(), given_up.clone()));
            tasks.insert(ns, t);
        }
    };
    if !uplink.is_empty() && host::netns_path(&uplink).exists() {
        start(&mut tasks, uplink.clone());
    }
    let (vpcs, _) = owned(&site).await;
    for ns in host::list_netns(names::NETNS_PREFIX).into_iter().filter(|n| vpcs.contains(n)) {
        start(&mut tasks, ns);
    }
    // A namespace made while its watcher could not start is picked up by this rescan.
    let mut rescan = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = rescan.tick() => {
                let (vpcs, _) = owned(&site).await;
                for ns in host::list_netns(names::NETNS_PREFIX).into_iter().filter(|n| vpcs.contains(n)) {
                    start(&mut tasks, ns);
                }
            }
            got = dir.next() => match got {
                Ok(changes) => {
                    let mut removed = false;
                    let (vpcs, enis) = owned(&site).await;
                    for (name, created) in changes {
                        lock(&given_up).remove(&name);
                        if created && (vpcs.contains(&name) || name == uplink) {
                            start(&mut tasks, name);
                        } else if !created {
                            // Our sockets would keep a removed namespace alive: close them.
                            if let Some(t) = tasks.remove(&name) {
                                t.abort();
                            }
                            removed |= vpcs.contains(&name) || enis.contains(&name);
                        }
                    }
                    if removed {
                        tracing::info!("a VPC or interface namespace was removed; repairing");
                        site.wake(Kind::Vpc);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading /run/netns events failed; drift is repaired by the periodic resync only");
                    break;
                }
            },
        }
    }
    for t in tasks.into_values() {
        t.abort();
    }
}

/// Watch one namespace's links and ruleset until it goes away. A namespace that cannot be
/// watched is added to `given_up`.
async fn watch_namespace(site: Site, ns: String, given_up: GivenUp) {
    // A new namespace's file appears before its bind mount: wait for the mount (5 s at most;
    // a file that never becomes one is left alone until it changes again).
    let path = host::netns_path(&ns);
    for _ in 0..50 {
        if host::is_netns(&path) || !path.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events = match NamespaceEvents::open(&ns) {
        Ok(e) => e,
        Err(e) => {
            tracing::debug!(netns = %ns, error = %e, "watching a namespace failed");
            lock(&given_up).insert(ns);
            return;
        }
    };
    loop {
        let got = match events.next().await {
            Ok(g) => g,
            Err(e) => {
                tracing::debug!(netns = %ns, error = %e, "a namespace's events ended");
                return;
            }
        };
        let link_gone = got.contains(&NetEvent::LinkDeleted);
        let commits: Vec<u32> = got.iter().filter_map(|e| if let NetEvent::Ruleset(g) = e { Some(*g) } else { None }).collect();
        if link_gone {
            tracing::info!(netns = %ns, "a link was deleted; repairing");
            site.wake(Kind::Vpc);
            continue;
        }
        if !commits.is_empty() {
            let (site, ns) = (site.clone(), ns.clone());
            tokio::spawn(async move {
                tokio::time::sleep(OWN_COMMIT_GRACE).await;
                if commits.iter().any(|g| !site.is_own_ruleset_generation(&ns, *g)) {
                    tracing::info!(netns = %ns, "the ruleset was changed outside cloudlet; repairing");
                    site.wake(Kind::Vpc);
                }
            });
        }
    }
}
