//! Repositories: typed reads and writes of the tables, on a connection or transaction.
//!
//! JSON columns (`labels`, `spec`, `status`) are stored and returned as text, so that listing
//! thousands of resources does not parse and re-serialize them.

use rusqlite::{Connection, OptionalExtension, params};

use super::StateError;

/// One row of the generic `resources` table.
#[derive(Debug, Clone)]
pub struct ResourceRow {
    /// `<prefix>-<ULID>`.
    pub id: String,
    /// The kind's singular name (`project`, `token`, ...).
    pub kind: String,
    /// Owning project id; `None` for site-scoped kinds.
    pub project_id: Option<String>,
    /// Owning project name (joined on read; ignored on write).
    pub project_name: Option<String>,
    /// RFC 1123 label, unique per kind and project.
    pub name: String,
    /// JSON object text.
    pub labels: String,
    /// JSON object text.
    pub spec: String,
    /// JSON object text.
    pub status: String,
    /// Bumped on every spec or label change.
    pub generation: i64,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub updated_at: String,
    /// Deletion requested; a reconciler is finalizing it.
    pub deleting: bool,
}

const SELECT: &str = "SELECT r.id, r.kind, r.project, p.name, r.name, r.labels, r.spec, r.status, \
     r.generation, r.created_at, r.updated_at, r.deleting \
     FROM resources r LEFT JOIN resources p ON p.id = r.project";

fn map_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ResourceRow> {
    Ok(ResourceRow {
        id: r.get(0)?,
        kind: r.get(1)?,
        project_id: r.get(2)?,
        project_name: r.get(3)?,
        name: r.get(4)?,
        labels: r.get(5)?,
        spec: r.get(6)?,
        status: r.get(7)?,
        generation: r.get(8)?,
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
        deleting: r.get(11)?,
    })
}

/// Insert a new resource. Errors: [`StateError::Duplicate`] when the id or the
/// (kind, project, name) triple is taken; [`StateError::Referenced`] when the project is missing.
pub fn insert(c: &Connection, row: &ResourceRow) -> Result<(), StateError> {
    c.prepare_cached(
        "INSERT INTO resources (id, kind, project, name, labels, spec, status, generation, \
         created_at, updated_at, deleting) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        row.id,
        row.kind,
        row.project_id,
        row.name,
        row.labels,
        row.spec,
        row.status,
        row.generation,
        row.created_at,
        row.updated_at,
        row.deleting
    ])
    .map_err(StateError::classify)?;
    Ok(())
}

/// Fetch one resource by id.
pub fn get(c: &Connection, id: &str) -> Result<Option<ResourceRow>, StateError> {
    let sql = format!("{SELECT} WHERE r.id = ?1");
    Ok(c.prepare_cached(&sql)?.query_row([id], map_row).optional()?)
}

/// Fetch one resource by kind, project and name (`project_id` `None` for site-scoped kinds).
pub fn get_by_name(c: &Connection, kind: &str, project_id: Option<&str>, name: &str) -> Result<Option<ResourceRow>, StateError> {
    let sql = format!("{SELECT} WHERE r.kind = ?1 AND ifnull(r.project, '') = ?2 AND r.name = ?3");
    Ok(c.prepare_cached(&sql)?.query_row(params![kind, project_id.unwrap_or(""), name], map_row).optional()?)
}

/// List resources of a kind ordered by name, optionally within one project, starting after the
/// name `after` (keyset pagination), at most `limit` rows.
pub fn list(c: &Connection, kind: &str, project_id: Option<&str>, after: Option<&str>, limit: usize) -> Result<Vec<ResourceRow>, StateError> {
    let sql = format!(
        "{SELECT} WHERE r.kind = ?1 AND (?2 IS NULL OR r.project = ?2) AND (?3 IS NULL OR r.name > ?3) \
         ORDER BY r.name, r.id LIMIT ?4"
    );
    let mut st = c.prepare_cached(&sql)?;
    let rows = st.query_map(params![kind, project_id, after, limit as i64], map_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Ids of every resource of a kind (for a reconciler's full pass).
pub fn ids_of_kind(c: &Connection, kind: &str) -> Result<Vec<String>, StateError> {
    let mut st = c.prepare_cached("SELECT id FROM resources WHERE kind = ?1 ORDER BY id")?;
    let ids = st.query_map([kind], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
    Ok(ids)
}

/// Ids of every resource of `kind` with its project's id (empty for site resources).
pub fn ids_and_projects_of_kind(c: &Connection, kind: &str) -> Result<Vec<(String, String)>, StateError> {
    let mut st = c.prepare_cached("SELECT id, COALESCE(project, '') FROM resources WHERE kind = ?1 ORDER BY id")?;
    let ids = st.query_map([kind], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<Vec<(String, String)>, _>>()?;
    Ok(ids)
}

/// Resources of `kind` whose spec field `path` (a JSON path such as `$.vpc`) equals `value`, or,
/// when `path` names an array, contains it.
pub fn referencing(c: &Connection, kind: &str, path: &str, value: &str) -> Result<Vec<ResourceRow>, StateError> {
    let sql = format!(
        "{SELECT} WHERE r.kind = ?1 AND (json_extract(r.spec, ?2) = ?3 OR EXISTS \
         (SELECT 1 FROM json_each(r.spec, ?2) j WHERE json_type(r.spec, ?2) = 'array' AND j.value = ?3)) ORDER BY r.id"
    );
    let mut st = c.prepare_cached(&sql)?;
    let rows = st.query_map(params![kind, path, value], map_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Resources of `kind` whose spec array `array` (a JSON path such as `$.mounts`) has an element
/// whose field `field` (a JSON path inside the element, such as `$.volume`) equals `value`.
pub fn referencing_in(c: &Connection, kind: &str, array: &str, field: &str, value: &str) -> Result<Vec<ResourceRow>, StateError> {
    let sql = format!(
        "{SELECT} WHERE r.kind = ?1 AND json_type(r.spec, ?2) = 'array' AND EXISTS \
         (SELECT 1 FROM json_each(r.spec, ?2) j WHERE json_extract(j.value, ?3) = ?4) ORDER BY r.id"
    );
    let mut st = c.prepare_cached(&sql)?;
    let rows = st.query_map(params![kind, array, field, value], map_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Ids of the resources that belong to a project, with their kinds.
pub fn children_of_project(c: &Connection, project_id: &str) -> Result<Vec<(String, String)>, StateError> {
    let mut st = c.prepare_cached("SELECT id, kind FROM resources WHERE project = ?1 ORDER BY id")?;
    let v = st.query_map([project_id], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}

/// Replace labels and spec of a resource, bumping its generation, when its generation still equals
/// `expected`. Returns the new generation, or `None` when it was stale or the row is gone.
pub fn update_spec(c: &Connection, id: &str, expected: i64, labels: &str, spec: &str, now: &str) -> Result<Option<i64>, StateError> {
    let n = c
        .prepare_cached(
            "UPDATE resources SET labels = ?1, spec = ?2, generation = generation + 1, updated_at = ?3 \
             WHERE id = ?4 AND generation = ?5",
        )?
        .execute(params![labels, spec, now, id, expected])?;
    Ok((n == 1).then_some(expected + 1))
}

/// Replace the status of a resource. Returns false when the row is gone.
pub fn update_status(c: &Connection, id: &str, status: &str, now: &str) -> Result<bool, StateError> {
    let n = c.prepare_cached("UPDATE resources SET status = ?1, updated_at = ?2 WHERE id = ?3")?.execute(params![status, now, id])?;
    Ok(n == 1)
}

/// Mark a resource as being deleted (finalized by its reconciler). Returns false when gone.
pub fn mark_deleting(c: &Connection, id: &str, now: &str) -> Result<bool, StateError> {
    let n = c.prepare_cached("UPDATE resources SET deleting = 1, updated_at = ?1 WHERE id = ?2")?.execute(params![now, id])?;
    Ok(n == 1)
}

/// Undo [`mark_deleting`] (a deletion that could not finish). Returns false when gone.
pub fn clear_deleting(c: &Connection, id: &str, now: &str) -> Result<bool, StateError> {
    let n = c.prepare_cached("UPDATE resources SET deleting = 0, updated_at = ?1 WHERE id = ?2")?.execute(params![now, id])?;
    Ok(n == 1)
}

/// Delete a resource row. Errors: [`StateError::Referenced`] while other rows point at it.
pub fn delete(c: &Connection, id: &str) -> Result<bool, StateError> {
    let n = c.prepare_cached("DELETE FROM resources WHERE id = ?1")?.execute([id]).map_err(StateError::classify)?;
    Ok(n == 1)
}

/// Count resources per kind, in one project or site-wide.
pub fn count_by_kind(c: &Connection, project_id: Option<&str>) -> Result<Vec<(String, i64)>, StateError> {
    let mut st = c.prepare_cached("SELECT kind, count(*) FROM resources WHERE (?1 IS NULL OR project = ?1) GROUP BY kind ORDER BY kind")?;
    let v = st.query_map([project_id], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}

/// Count resources of one kind in one project.
pub fn count_kind_in_project(c: &Connection, kind: &str, project_id: &str) -> Result<i64, StateError> {
    Ok(c.prepare_cached("SELECT count(*) FROM resources WHERE kind = ?1 AND project = ?2")?.query_row(params![kind, project_id], |r| r.get(0))?)
}

// ---- secrets (token hashes, password hashes) ----

/// Store the secret hash of a resource (token: SHA-256 hex; user: argon2 PHC string).
pub fn put_secret(c: &Connection, resource_id: &str, hash: &str) -> Result<(), StateError> {
    c.prepare_cached("INSERT OR REPLACE INTO secrets (resource_id, hash) VALUES (?1, ?2)")?.execute(params![resource_id, hash])?;
    Ok(())
}

/// The resource whose secret hash is `hash`, if any.
pub fn resource_by_secret(c: &Connection, hash: &str) -> Result<Option<ResourceRow>, StateError> {
    let sql = format!("{SELECT} JOIN secrets s ON s.resource_id = r.id WHERE s.hash = ?1");
    Ok(c.prepare_cached(&sql)?.query_row([hash], map_row).optional()?)
}

/// The secret hash stored for a resource.
pub fn secret_of(c: &Connection, resource_id: &str) -> Result<Option<String>, StateError> {
    Ok(c.prepare_cached("SELECT hash FROM secrets WHERE resource_id = ?1")?.query_row([resource_id], |r| r.get(0)).optional()?)
}

// ---- sessions ----

/// Store a console session (`hash` = SHA-256 of the cookie value).
pub fn put_session(c: &Connection, hash: &str, user_id: &str, expires_ms: i64) -> Result<(), StateError> {
    c.prepare_cached("INSERT INTO sessions (hash, user_id, expires_ms) VALUES (?1, ?2, ?3)")?.execute(params![hash, user_id, expires_ms])?;
    Ok(())
}

/// The user id of a live session.
pub fn session_user(c: &Connection, hash: &str, now_ms: i64) -> Result<Option<String>, StateError> {
    Ok(c.prepare_cached("SELECT user_id FROM sessions WHERE hash = ?1 AND expires_ms > ?2")?.query_row(params![hash, now_ms], |r| r.get(0)).optional()?)
}

/// Remove one session (logout) and every expired one.
pub fn delete_session(c: &Connection, hash: &str, now_ms: i64) -> Result<(), StateError> {
    c.prepare_cached("DELETE FROM sessions WHERE hash = ?1 OR expires_ms <= ?2")?.execute(params![hash, now_ms])?;
    Ok(())
}

// ---- events ----

/// An event to append.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub project_id: Option<String>,
    pub project: Option<String>,
    pub kind: String,
    pub resource_id: String,
    pub name: String,
    pub event_type: String,
    pub message: String,
}

/// A stored event.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub cursor: i64,
    pub time: String,
    pub project_id: Option<String>,
    pub project: Option<String>,
    pub kind: String,
    pub resource_id: String,
    pub name: String,
    pub event_type: String,
    pub message: String,
}

/// Append an event; returns it with its cursor (strictly increasing, never reused).
pub fn append_event(c: &Connection, e: &NewEvent, time: &str, unix_ms: i64) -> Result<EventRow, StateError> {
    c.prepare_cached(
        "INSERT INTO events (time, unix_ms, project_id, project, kind, resource_id, name, type, message) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![time, unix_ms, e.project_id, e.project, e.kind, e.resource_id, e.name, e.event_type, e.message])?;
    Ok(EventRow {
        cursor: c.last_insert_rowid(),
        time: time.to_string(),
        project_id: e.project_id.clone(),
        project: e.project.clone(),
        kind: e.kind.clone(),
        resource_id: e.resource_id.clone(),
        name: e.name.clone(),
        event_type: e.event_type.clone(),
        message: e.message.clone(),
    })
}

/// Events with cursor > `after`, oldest first, optionally of one project only.
pub fn events_after(c: &Connection, after: i64, project_id: Option<&str>, limit: usize) -> Result<Vec<EventRow>, StateError> {
    let mut st = c.prepare_cached(
        "SELECT cursor, time, project_id, project, kind, resource_id, name, type, message FROM events \
         WHERE cursor > ?1 AND (?2 IS NULL OR project_id = ?2) ORDER BY cursor LIMIT ?3",
    )?;
    let v = st
        .query_map(params![after, project_id, limit as i64], |r| {
            Ok(EventRow {
                cursor: r.get(0)?,
                time: r.get(1)?,
                project_id: r.get(2)?,
                project: r.get(3)?,
                kind: r.get(4)?,
                resource_id: r.get(5)?,
                name: r.get(6)?,
                event_type: r.get(7)?,
                message: r.get(8)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}

/// The highest cursor retention drops: events older than `min_unix_ms` and all but the newest
/// `keep` (0 when none); `super::outbox::prune` deletes through it.
pub fn events_retention_cut(c: &Connection, min_unix_ms: i64, keep: i64) -> Result<i64, StateError> {
    let max: i64 = c.query_row("SELECT ifnull(max(cursor), 0) FROM events", [], |r| r.get(0))?;
    Ok(c.query_row("SELECT ifnull(max(cursor), 0) FROM events WHERE unix_ms < ?1 OR cursor <= ?2", params![min_unix_ms, max - keep], |r| r.get(0))?)
}

/// The newest event cursor (0 when there are none).
pub fn max_event_cursor(c: &Connection) -> Result<i64, StateError> {
    Ok(c.query_row("SELECT ifnull(max(cursor), 0) FROM events", [], |r| r.get(0))?)
}

// ---- audit ----

/// One audit record.
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub id: i64,
    pub time: String,
    pub actor: String,
    pub project_id: Option<String>,
    pub project: Option<String>,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub target: Option<String>,
}

/// Append an audit record (its `id` is assigned).
pub fn append_audit(c: &Connection, a: &AuditRow) -> Result<i64, StateError> {
    c.prepare_cached(
        "INSERT INTO audit (time, actor, project_id, project, method, path, status, target) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![a.time, a.actor, a.project_id, a.project, a.method, a.path, a.status, a.target])?;
    Ok(c.last_insert_rowid())
}

/// The highest audit id retention drops: records older than `min_time` (RFC 3339, UTC; the
/// records' own format sorts by time) and all but the newest `keep` (0 when none).
pub fn audit_retention_cut(c: &Connection, min_time: &str, keep: i64) -> Result<i64, StateError> {
    let max: i64 = c.query_row("SELECT ifnull(max(id), 0) FROM audit", [], |r| r.get(0))?;
    Ok(c.query_row("SELECT ifnull(max(id), 0) FROM audit WHERE time < ?1 OR id <= ?2", params![min_time, max - keep], |r| r.get(0))?)
}

fn audit_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRow> {
    Ok(AuditRow {
        id: r.get(0)?,
        time: r.get(1)?,
        actor: r.get(2)?,
        project_id: r.get(3)?,
        project: r.get(4)?,
        method: r.get(5)?,
        path: r.get(6)?,
        status: r.get(7)?,
        target: r.get(8)?,
    })
}

/// Audit records with id > `after`, oldest first (the outbox's order).
pub fn audit_after(c: &Connection, after: i64, limit: usize) -> Result<Vec<AuditRow>, StateError> {
    let mut st = c.prepare_cached("SELECT id, time, actor, project_id, project, method, path, status, target FROM audit WHERE id > ?1 ORDER BY id LIMIT ?2")?;
    let v = st.query_map(params![after, limit as i64], audit_of)?.collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}

/// Audit records newest first, optionally of one project, with id < `before`.
pub fn list_audit(c: &Connection, project_id: Option<&str>, before: Option<i64>, limit: usize) -> Result<Vec<AuditRow>, StateError> {
    let mut st = c.prepare_cached(
        "SELECT id, time, actor, project_id, project, method, path, status, target FROM audit \
         WHERE (?1 IS NULL OR project_id = ?1) AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3",
    )?;
    let v = st.query_map(params![project_id, before, limit as i64], audit_of)?.collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}

// ---- meta ----

/// Read a meta value.
pub fn meta_get(c: &Connection, key: &str) -> Result<Option<String>, StateError> {
    Ok(c.prepare_cached("SELECT value FROM meta WHERE key = ?1")?.query_row([key], |r| r.get(0)).optional()?)
}

/// Write a meta value.
pub fn meta_set(c: &Connection, key: &str, value: &str) -> Result<(), StateError> {
    c.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?.execute(params![key, value])?;
    Ok(())
}

/// The user namespace slot of `project` (`""` for workloads outside projects), given on first
/// use: one past the highest given so far, so a slot (a range of host ids) is never reused, even
/// after its project is deleted and files it wrote remain on a host path.
pub fn userns_slot(c: &Connection, project: &str) -> Result<u32, StateError> {
    c.prepare_cached("INSERT OR IGNORE INTO userns_slots (project, slot) SELECT ?1, COALESCE(MAX(slot) + 1, 0) FROM userns_slots")?
        .execute(params![project])?;
    Ok(c.prepare_cached("SELECT slot FROM userns_slots WHERE project = ?1")?.query_row(params![project], |r| r.get(0))?)
}

/// The slot of `project` if it has one (see [`userns_slot`]).
pub fn find_userns_slot(c: &Connection, project: &str) -> Result<Option<u32>, StateError> {
    Ok(c.prepare_cached("SELECT slot FROM userns_slots WHERE project = ?1")?.query_row(params![project], |r| r.get(0)).optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, crate::state::Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::state::Db::open(&dir.path().join("t.db")).unwrap();
        (dir, db)
    }

    #[test]
    fn names_are_unique_per_kind_and_project_and_projects_cannot_vanish_under_children() {
        let (_d, db) = db();
        let row = |id: &str, kind: &str, project: Option<&str>, name: &str| ResourceRow {
            id: id.into(),
            kind: kind.into(),
            project_id: project.map(Into::into),
            project_name: None,
            name: name.into(),
            labels: "{}".into(),
            spec: "{}".into(),
            status: "{}".into(),
            generation: 1,
            created_at: "t".into(),
            updated_at: "t".into(),
            deleting: false,
        };
        db.write(|tx| insert(tx, &row("p1", "project", None, "a")), |_| {}).unwrap();
        assert!(matches!(db.write(|tx| insert(tx, &row("p2", "project", None, "a")), |_| {}), Err(StateError::Duplicate(_))));
        db.write(|tx| insert(tx, &row("t1", "token", Some("p1"), "a")), |_| {}).unwrap();
        assert!(matches!(db.write(|tx| insert(tx, &row("t2", "token", Some("p1"), "a")), |_| {}), Err(StateError::Duplicate(_))));
        assert!(matches!(db.write(|tx| insert(tx, &row("t3", "token", Some("nope"), "b")), |_| {}), Err(StateError::Referenced(_))));
        assert!(matches!(db.write(|tx| delete(tx, "p1"), |_| {}), Err(StateError::Referenced(_))));
        assert_eq!(db.read(|c| get(c, "t1")).unwrap().unwrap().project_name.as_deref(), Some("a"));
    }
}
