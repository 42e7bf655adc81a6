//! Operations: the record of a long action (`202 Accepted`), with state, progress and error.
//!
//! An operation is created in the same transaction as the request it tracks, so a crash can
//! never leave an accepted request without its operation; the target's reconciler advances it.

use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::model::{self, Status};
use super::{Kind, ProjectCtx, Site, SiteError, event_for};
use crate::state::{NewEvent, ResourceRow, repo};

/// Spec of an operation.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OperationSpec {
    /// What is being done: `delete`, `create`, `start`, ...
    pub action: String,
    /// Singular kind of the target.
    pub target_kind: String,
    /// Id of the target.
    pub target_id: String,
    /// Name of the target.
    pub target_name: String,
}

/// Phases of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpPhase {
    /// Accepted, not started.
    Pending,
    /// In progress.
    Running,
    /// Finished well.
    Succeeded,
    /// Finished with an error.
    Failed,
}

impl OpPhase {
    /// The phase as shown in `status.phase`.
    pub fn as_str(self) -> &'static str {
        match self {
            OpPhase::Pending => "Pending",
            OpPhase::Running => "Running",
            OpPhase::Succeeded => "Succeeded",
            OpPhase::Failed => "Failed",
        }
    }
}

/// Inside a write transaction: create an operation for `action` on a target. Site-scoped
/// operations (`project` None) are visible to site admins only.
pub fn create_in_tx(
    c: &Connection,
    evs: &mut Vec<NewEvent>,
    project: Option<&ProjectCtx>,
    action: &str,
    target_kind: Kind,
    target_id: &str,
    target_name: &str,
) -> Result<ResourceRow, SiteError> {
    let id = Kind::Operation.new_id();
    let now = model::now_rfc3339();
    let spec = OperationSpec { action: action.into(), target_kind: target_kind.as_str().into(), target_id: target_id.into(), target_name: target_name.into() };
    let mut st = Status::phase(OpPhase::Pending.as_str());
    st.extra.insert("progress".into(), 0.into());
    let row = ResourceRow {
        id: id.clone(),
        kind: Kind::Operation.as_str().into(),
        project_id: project.map(|p| p.id.clone()),
        project_name: None,
        name: id.to_ascii_lowercase(),
        labels: "{}".into(),
        spec: serde_json::to_string(&spec)?,
        status: serde_json::to_string(&st)?,
        generation: 1,
        created_at: now.clone(),
        updated_at: now,
        deleting: false,
    };
    repo::insert(c, &row)?;
    evs.push(event_for(&row, project, "created", format!("{action} {} {target_name} accepted", target_kind.as_str())));
    repo::get(c, &id)?.ok_or_else(|| SiteError::Internal("operation vanished".into()))
}

/// The unfinished operation whose target is `target_id`, if any.
pub fn pending_for(c: &Connection, target_id: &str) -> Result<Option<ResourceRow>, SiteError> {
    let id: Option<String> = c
        .prepare_cached(
            "SELECT id FROM resources WHERE kind = 'operation' AND json_extract(spec, '$.target_id') = ?1 \
             AND json_extract(status, '$.phase') IN ('Pending', 'Running') ORDER BY id DESC LIMIT 1",
        )
        .map_err(crate::state::StateError::from)?
        .query_row([target_id], |r| r.get(0))
        .ok();
    match id {
        Some(id) => Ok(repo::get(c, &id)?),
        None => Ok(None),
    }
}

/// Move an operation to `phase` with `progress` (0–100) and a message.
pub fn set_progress(site: &Site, op_id: &str, phase: OpPhase, progress: u8, message: &str) -> Result<(), SiteError> {
    site.set_status(op_id, |st, _| {
        st.phase = phase.as_str().into();
        st.extra.insert("progress".into(), progress.min(100).into());
        st.extra.insert("message".into(), message.into());
    })?;
    Ok(())
}

/// Fail an operation with an error code and message.
pub fn fail(site: &Site, op_id: &str, code: &str, message: &str) -> Result<(), SiteError> {
    site.set_status(op_id, |st, _| {
        st.phase = OpPhase::Failed.as_str().into();
        st.extra.insert("error".into(), serde_json::json!({"code": code, "message": message}));
    })?;
    Ok(())
}

/// Delete finished operations last updated before `min_unix_ms`.
pub fn prune_finished(site: &Site, min_unix_ms: i64) -> Result<(), SiteError> {
    let cutoff = chrono::DateTime::from_timestamp_millis(min_unix_ms).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    site.write(|tx, _| {
        tx.execute(
            "DELETE FROM resources WHERE kind = 'operation' AND updated_at < ?1 \
             AND json_extract(status, '$.phase') IN ('Succeeded', 'Failed')",
            [cutoff],
        )
        .map_err(crate::state::StateError::from)?;
        Ok(())
    })
}

impl Site {
    /// Get an operation by id (or lowercase name). `visible_in` limits it to one project
    /// (`None`: site admins, who see every operation, site-level ones included).
    pub fn get_operation(&self, r: &str, visible_in: Option<&ProjectCtx>) -> Result<super::Resource, SiteError> {
        let rf = model::parse_ref(Kind::Operation, r)?;
        let row = self.read(|c| {
            let row = match &rf {
                super::Ref::Id(i) => repo::get(c, i)?,
                super::Ref::Name(n) => repo::get_by_name(c, Kind::Operation.as_str(), visible_in.map(|p| p.id.as_str()), n)?,
            };
            Ok(row.filter(|row| row.kind == Kind::Operation.as_str()))
        })?;
        match row {
            Some(row) if visible_in.is_none_or(|p| row.project_id.as_deref() == Some(p.id.as_str())) => super::Resource::from_row(row),
            _ => Err(SiteError::not_found("operation", r)),
        }
    }
}
