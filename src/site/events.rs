//! Events: every lifecycle change, with a monotonic cursor, kept for a bounded time.
//!
//! Cursors come from SQLite's `AUTOINCREMENT`, so they strictly increase and are never reused,
//! even after retention deletes old rows. A reader that resumes after cursor `c` gets exactly the
//! events with cursor > `c` that it may see, in order; if retention already removed some of them,
//! [`Site::events_gap`] says so.

use serde::Serialize;
use utoipa::ToSchema;

use super::{ProjectCtx, Site, SiteError};
use crate::state::outbox::{self, Stream};
use crate::state::{EventRow, repo};

/// One event as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Event {
    /// Monotonic cursor; pass it back as `Last-Event-ID` or `?after=`.
    pub cursor: i64,
    /// RFC 3339 UTC.
    pub time: String,
    /// The project's name, or null for site events.
    pub project: Option<String>,
    #[serde(skip)]
    #[schema(ignore)]
    pub project_id: Option<String>,
    /// Singular kind name.
    pub kind: String,
    /// The resource's id.
    pub resource_id: String,
    /// The resource's name.
    pub name: String,
    /// `created`, `updated`, `deleted`, `status`, ...
    #[serde(rename = "type")]
    pub event_type: String,
    /// Human-readable summary.
    pub message: String,
}

impl From<EventRow> for Event {
    fn from(r: EventRow) -> Self {
        Event {
            cursor: r.cursor,
            time: r.time,
            project: r.project,
            project_id: r.project_id,
            kind: r.kind,
            resource_id: r.resource_id,
            name: r.name,
            event_type: r.event_type,
            message: r.message,
        }
    }
}

impl Event {
    /// Whether a reader limited to `project` (None = everything) may see this event.
    pub fn visible_to(&self, project: Option<&ProjectCtx>) -> bool {
        match project {
            None => true,
            Some(p) => self.project_id.as_deref() == Some(p.id.as_str()),
        }
    }
}

/// Most events returned by one list call.
pub const MAX_EVENT_PAGE: usize = 1000;

impl Site {
    /// Events after `after`, oldest first, limited to one project when given.
    pub fn events_after(&self, after: i64, project: Option<&ProjectCtx>, limit: usize) -> Result<Vec<Event>, SiteError> {
        let rows = self.read(|c| Ok(repo::events_after(c, after, project.map(|p| p.id.as_str()), limit)?))?;
        Ok(rows.into_iter().map(Event::from).collect())
    }

    /// Whether events after `after` were already removed by retention: `Some(pruned_through)`.
    pub fn events_gap(&self, after: i64) -> Result<Option<i64>, SiteError> {
        let through = self.read(|c| Ok(outbox::pruned_through(c, Stream::Events)?))?;
        Ok((after < through).then_some(through))
    }

    /// Apply retention: drop events older than `events.retention_hours` and beyond
    /// `events.max_events`, and finished operations older than the same age.
    pub fn prune(&self) -> Result<(), SiteError> {
        let cfg = &self.config().events;
        let min_ms = super::model::now_ms() - (cfg.retention_hours as i64) * 3_600_000;
        let audit_min = chrono::Utc::now() - chrono::Duration::days(cfg.audit_retention_days.min(36_500) as i64);
        let audit_min = audit_min.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        // While the site belongs to a portal, what the portal has not acknowledged stays, up to
        // the outbox's bound.
        // An identity that cannot be read counts as joined: hold rather than drop.
        let hold = (!matches!(self.portal_identity(), Ok(None))).then_some(self.config().portal.outbox_max_records.min(i64::MAX as u64) as i64);
        self.write(|tx, _| {
            outbox::prune(tx, Stream::Events, repo::events_retention_cut(tx, min_ms, cfg.max_events as i64)?, hold)?;
            outbox::prune(tx, Stream::Audit, repo::audit_retention_cut(tx, &audit_min, cfg.max_audit_records as i64)?, hold)?;
            Ok(())
        })?;
        super::operations::prune_finished(self, min_ms)?;
        Ok(())
    }
}

/// One audit record as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditRecord {
    /// Increasing id; pass as `before` to page back.
    pub id: i64,
    /// RFC 3339 UTC.
    pub time: String,
    /// `token:<id>`, `user:<name>@<project>`, `local-socket` or `anonymous`.
    pub actor: String,
    /// The caller's project.
    pub project: Option<String>,
    pub method: String,
    pub path: String,
    /// The HTTP status answered.
    pub status: u16,
    /// The resource acted on, when known.
    pub target: Option<String>,
}

impl From<crate::state::AuditRow> for AuditRecord {
    fn from(a: crate::state::AuditRow) -> Self {
        AuditRecord { id: a.id, time: a.time, actor: a.actor, project: a.project, method: a.method, path: a.path, status: a.status, target: a.target }
    }
}

impl Site {
    /// Append an audit record of a change request: who (`None`: anonymous), the method and path
    /// (cut to 512 chars), the status answered and the resource acted on (cut to 128 chars); the
    /// time is now.
    pub fn record_audit(&self, by: Option<&super::auth::Principal>, method: &str, path: &str, status: u16, target: Option<&str>) -> Result<(), SiteError> {
        let row = crate::state::AuditRow {
            id: 0,
            time: super::model::now_rfc3339(),
            actor: by.map(|p| p.actor.clone()).unwrap_or_else(|| "anonymous".into()),
            project_id: by.map(|p| p.project_id.clone()),
            project: by.map(|p| p.project.clone()),
            method: method.to_string(),
            path: path.chars().take(512).collect(),
            status,
            target: target.map(|t| t.chars().take(128).collect()),
        };
        self.write(|tx, _| Ok(repo::append_audit(tx, &row).map(|_| ())?))?;
        self.outbox_changed();
        Ok(())
    }

    /// Audit records newest first (`project` None: all), with id < `before`.
    pub fn audit(&self, project: Option<&ProjectCtx>, before: Option<i64>, limit: usize) -> Result<Vec<AuditRecord>, SiteError> {
        let rows = self.read(|c| Ok(repo::list_audit(c, project.map(|p| p.id.as_str()), before, limit)?))?;
        Ok(rows.into_iter().map(AuditRecord::from).collect())
    }

    /// The newest event cursor (0 when there are none).
    pub fn latest_cursor(&self) -> Result<i64, SiteError> {
        self.read(|c| Ok(repo::max_event_cursor(c)?))
    }
}
