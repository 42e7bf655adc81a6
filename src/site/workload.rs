//! What containers and instances share as workloads: the desired run state, the restart policy
//! and its back-off, and which workloads use a volume. Below `containers`, `instances` and
//! `volumes`: it imports none of them.

use std::time::Duration;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Kind, SiteError};
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
