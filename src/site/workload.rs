//! One lifecycle for the workloads, containers and instances: the desired run state, the
//! restart policy and its back-off ([`decide`]), the fingerprint of what runs
//! ([`WorkloadSpec::fingerprint`]), the typed view of the run fields of their status
//! ([`RunStatus`]), the orphan sweep ([`sweep_orphans`]) and which workloads use a volume. The
//! engine-specific parts (how a run is observed, started and stopped) stay behind the engines'
//! host seams (`ContainerHost`, `InstanceHost`). Below `containers`, `instances` and `volumes`:
//! it imports none of them.

use std::collections::BTreeSet;
use std::time::Duration;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::model::Status;
use super::{Kind, Site, SiteError};
use crate::state::{ResourceRow, repo};

/// When a workload (a container or an instance) is started again after it ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never (the default, as in Docker).
    #[default]
    Never,
    /// After a non-zero exit or a host failure, at most `max_retries` times in a row.
    OnFailure,
    /// Whenever it ends, and after a host reboot.
    Always,
}

/// Desired run state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DesiredState {
    /// Keep it running (restarting per the policy).
    #[default]
    Running,
    /// Keep it stopped.
    Stopped,
}

/// The spec of a workload kind.
pub trait WorkloadSpec: Serialize + Clone {
    /// The restart request counter (grown by each start, restart or reboot action).
    fn restart_token(&self) -> u64;
    /// This spec with `state` and `restart_token` set to their defaults: what
    /// [`WorkloadSpec::fingerprint`] digests.
    fn neutral(&self) -> Self;

    /// A digest of what runs (the spec without `state` and `restart_token`; 16 hex digits of
    /// its SHA-256): when it changes, a running workload is restarted to apply it. Label changes
    /// do not restart.
    fn fingerprint(&self) -> String {
        use sha2::Digest;
        let bytes = serde_json::to_vec(&self.neutral()).unwrap_or_default();
        hex::encode(&sha2::Sha256::digest(&bytes)[..8])
    }
}

/// The run fields a workload's reconciler keeps in its `status` (beside the engine's own).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunStatus {
    /// `started_token`: the spec's `restart_token` at the last start (absent: never started).
    pub started_token: Option<u64>,
    /// `started_spec`: the spec's fingerprint at the last start.
    pub started_spec: Option<String>,
    /// `started_at`: RFC 3339 time of the last start.
    pub started_at: Option<String>,
    /// `finished_at`: RFC 3339 time the last run ended.
    pub finished_at: Option<String>,
    /// `restart_count`: restarts in the current series.
    pub restart_count: u32,
}

impl RunStatus {
    /// The run fields of `st` (missing or mistyped ones as absent).
    pub fn of(st: &Status) -> RunStatus {
        let s = |k: &str| st.extra.get(k).and_then(Value::as_str).map(str::to_string);
        RunStatus {
            started_token: st.extra.get("started_token").and_then(Value::as_u64),
            started_spec: s("started_spec"),
            started_at: s("started_at"),
            finished_at: s("finished_at"),
            restart_count: st.extra.get("restart_count").and_then(Value::as_u64).map_or(0, |n| n.min(u32::MAX.into()) as u32),
        }
    }

    /// Whether `spec` asks for a new run: a start, restart or reboot request since the last
    /// start, or a changed spec.
    pub fn restart_wanted(&self, spec: &impl WorkloadSpec) -> bool {
        self.started_token.unwrap_or(0) != spec.restart_token() || self.started_spec.as_deref() != Some(spec.fingerprint().as_str())
    }

    /// Record a start of `spec` in `st`: the token, the fingerprint, the time and the series
    /// count.
    pub fn stamp_start(st: &mut Status, spec: &impl WorkloadSpec, started_at: &str, restarts: u32) {
        st.extra.insert("started_at".into(), started_at.into());
        st.extra.insert("restart_count".into(), restarts.into());
        Self::stamp_tried(st, spec);
    }

    /// Record that `spec` was tried (also when its start failed), so the same spec is not
    /// tried again until it changes or a start is asked for.
    pub fn stamp_tried(st: &mut Status, spec: &impl WorkloadSpec) {
        st.extra.insert("started_token".into(), spec.restart_token().into());
        st.extra.insert("started_spec".into(), spec.fingerprint().into());
    }
}

/// How a workload's run ended, as the restart policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// It ended on its own, successfully (exit 0; a guest's power-off).
    Clean,
    /// It failed (a non-zero exit, an OOM kill; a guest crash or a killed worker).
    Failed,
    /// No end was recorded: the host or its supervisor went down under it.
    Lost,
    /// The guest rebooted itself: it boots again, not counted as a restart.
    Reboot,
    /// It ended because a stop was asked for.
    Stopped,
}

/// Why a workload is left as it is, for the engine to name as a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Left {
    /// Ended by itself (or failed) and the policy does not restart it.
    Ended,
    /// Lost, and the policy does not restart it.
    Lost,
    /// Stopped on request.
    Stopped,
}

/// The restart policy's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start again, not counted as a restart (a guest reboot).
    Reboot,
    /// Start again as restart number `restarts + 1` of the series, after this much more
    /// waiting (zero: now).
    Restart(Duration),
    /// Leave it.
    Leave(Left),
}

/// The restart policy's answer for a run that ended as `end` after `restarts` restarts in a
/// row, `since_end` ago. `max_retries` bounds `on-failure` (`None`: no bound, with the back-off
/// capped at 30 s). The back-off is [`restart_delay`] of the restart's number.
pub fn decide(policy: RestartPolicy, max_retries: Option<u32>, end: End, restarts: u32, since_end: Duration) -> Decision {
    let restart = match (end, policy) {
        (End::Reboot, _) => return Decision::Reboot,
        (End::Stopped, _) => return Decision::Leave(Left::Stopped),
        (_, RestartPolicy::Always) => true,
        (End::Failed | End::Lost, RestartPolicy::OnFailure) => max_retries.is_none_or(|m| restarts < m),
        (End::Clean, RestartPolicy::OnFailure) | (_, RestartPolicy::Never) => false,
    };
    if !restart {
        return Decision::Leave(if end == End::Lost { Left::Lost } else { Left::Ended });
    }
    Decision::Restart(restart_delay(restarts + 1).saturating_sub(since_end))
}

/// The restart series count for a run that lasted `ran`: one of at least `long` starts a new
/// series (0), so a workload that failed once after a long run restarts at once.
pub fn series(restarts: u32, ran: Duration, long: Duration) -> u32 {
    if ran >= long { 0 } else { restarts }
}

/// The ids of the workloads of `kind` in state.
pub fn ids_in_state(site: &Site, kind: Kind) -> Result<BTreeSet<String>, SiteError> {
    Ok(site.read(|c| Ok(repo::ids_of_kind(c, kind.as_str())?))?.into_iter().collect())
}

/// Remove what the host holds of workloads of `kind` that state (`ids`, from [`ids_in_state`])
/// no longer has, deleted while the daemon was down: `present` lists the ids the host holds,
/// `remove` removes one. Returns how many were removed; a failed removal is logged and left for
/// the next start-up.
pub fn sweep_orphans<E: std::fmt::Display>(kind: Kind, ids: &BTreeSet<String>, present: Vec<String>, remove: impl Fn(&str) -> Result<(), E>) -> usize {
    let mut n = 0;
    for id in present {
        if Kind::of_id(&id) == Some(kind) && !ids.contains(&id) {
            match remove(&id) {
                Ok(()) => n += 1,
                Err(e) => tracing::warn!(kind = kind.as_str(), id = %id, error = %e, "removing an orphaned workload failed"),
            }
        }
    }
    n
}

/// Delay before restart number `n` (1-based): 500 ms doubling, capped at 30 s.
pub fn restart_delay(n: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << n.saturating_sub(1).min(6))).min(Duration::from_secs(30))
}

/// The containers (rows) whose spec mounts volume `id`, then the instances whose spec attaches
/// it.
pub fn mounted_by(c: &Connection, id: &str) -> Result<Vec<ResourceRow>, SiteError> {
    let mut out = repo::referencing_in(c, Kind::Container.as_str(), "$.mounts", "$.volume", id)?;
    out.extend(instances_using(c, id)?);
    Ok(out)
}

/// The instances (rows) whose spec attaches volume `id` as a disk.
pub fn instances_using(c: &Connection, id: &str) -> Result<Vec<ResourceRow>, SiteError> {
    Ok(repo::referencing_in(c, Kind::Instance.as_str(), "$.volumes", "$.volume", id)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(3600);

    #[test]
    fn each_policy_answers_each_end() {
        use {End::*, RestartPolicy::*};
        let now = Decision::Restart(Duration::ZERO);
        assert_eq!(decide(Never, Some(5), Clean, 0, LONG), Decision::Leave(Left::Ended));
        assert_eq!(decide(Never, Some(5), Failed, 0, LONG), Decision::Leave(Left::Ended));
        assert_eq!(decide(Never, Some(5), Lost, 0, LONG), Decision::Leave(Left::Lost));
        assert_eq!(decide(Always, Some(5), Clean, 0, LONG), now);
        assert_eq!(decide(Always, Some(0), Failed, 9, LONG), now, "always ignores max_retries");
        assert_eq!(decide(OnFailure, Some(5), Clean, 0, LONG), Decision::Leave(Left::Ended));
        assert_eq!(decide(OnFailure, Some(5), Failed, 4, LONG), now);
        assert_eq!(decide(OnFailure, Some(5), Failed, 5, LONG), Decision::Leave(Left::Ended));
        assert_eq!(decide(OnFailure, Some(5), Lost, 0, LONG), now, "a lost run failed");
        assert_eq!(decide(OnFailure, None, Failed, 1000, LONG), now, "no bound without max_retries");
        assert_eq!(decide(Never, None, Reboot, 0, LONG), Decision::Reboot, "a guest reboot always boots again");
        assert_eq!(decide(Always, None, Stopped, 0, LONG), Decision::Leave(Left::Stopped));
    }

    #[test]
    fn the_back_off_counts_from_the_end() {
        assert_eq!(decide(RestartPolicy::Always, None, End::Clean, 0, Duration::ZERO), Decision::Restart(Duration::from_millis(500)));
        assert_eq!(decide(RestartPolicy::Always, None, End::Clean, 2, Duration::from_secs(1)), Decision::Restart(Duration::from_secs(1)));
        assert_eq!(series(3, Duration::from_secs(11), Duration::from_secs(10)), 0);
        assert_eq!(series(3, Duration::from_secs(9), Duration::from_secs(10)), 3);
    }

    #[test]
    fn restart_delays_double_and_cap() {
        assert_eq!(restart_delay(1), Duration::from_millis(500));
        assert_eq!(restart_delay(3), Duration::from_secs(2));
        assert_eq!(restart_delay(40), Duration::from_secs(30));
    }

    #[test]
    fn the_run_fields_read_back_typed() {
        let mut st = Status::phase("Running");
        assert_eq!(RunStatus::of(&st), RunStatus::default());
        st.extra.insert("restart_count".into(), 3.into());
        st.extra.insert("started_token".into(), 2.into());
        st.extra.insert("finished_at".into(), "2026-12-04T00:00:00Z".into());
        let r = RunStatus::of(&st);
        assert_eq!((r.restart_count, r.started_token, r.finished_at.as_deref()), (3, Some(2), Some("2026-12-04T00:00:00Z")));
    }
}
