//! The site's outbox to its portal.
//!
//! The outbox is not a copy: it is the `events` and `audit` tables themselves. A record's
//! sequence number is its `AUTOINCREMENT` key (an event's cursor, an audit record's id), so it is
//! written in the same transaction as the change it records, strictly increases and is never
//! reused. The keys are also gap-free: SQLite keeps the counter in `sqlite_sequence`, inside the
//! inserting transaction, so a rolled-back insert gives its number back. Only retention deletes.
//!
//! The portal pulls each stream by sequence number, commits what it got, and acknowledges by
//! naming its cursor on the next pull ([`set_acked`]). While the site has joined a portal,
//! retention keeps every record the portal has not acknowledged, up to a bound on disk per
//! stream; past the bound the oldest are dropped anyway, and how many of them the portal never
//! had is counted ([`lost`]), so a loss is never silent.

use rusqlite::{Connection, params};

use super::StateError;

/// One stream of the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Lifecycle events (`events.cursor`).
    Events,
    /// Audit records of change requests (`audit.id`).
    Audit,
}

impl Stream {
    /// Every stream, in the order a pull answers them.
    pub const ALL: [Stream; 2] = [Stream::Events, Stream::Audit];

    /// The stream's name on the wire: `events` or `audit`.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Events => "events",
            Stream::Audit => "audit",
        }
    }

    /// The stream called `name`, if any.
    pub fn parse(name: &str) -> Option<Stream> {
        Stream::ALL.into_iter().find(|s| s.name() == name)
    }

    fn table_and_key(self) -> (&'static str, &'static str) {
        match self {
            Stream::Events => ("events", "cursor"),
            Stream::Audit => ("audit", "id"),
        }
    }

    fn meta(self, what: &str) -> String {
        match (self, what) {
            // The events' pruned mark predates the outbox; its key stays.
            (Stream::Events, "pruned_through") => "events_pruned_through".into(),
            _ => format!("outbox.{}.{what}", self.name()),
        }
    }
}

fn meta_i64(c: &Connection, key: &str) -> Result<i64, StateError> {
    use rusqlite::OptionalExtension;
    let v: Option<String> = c.prepare_cached("SELECT value FROM meta WHERE key = ?1")?.query_row([key], |r| r.get(0)).optional()?;
    Ok(v.and_then(|v| v.parse().ok()).unwrap_or(0))
}

fn meta_set_i64(c: &Connection, key: &str, v: i64) -> Result<(), StateError> {
    c.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?.execute(params![key, v.to_string()])?;
    Ok(())
}

/// The highest sequence number the portal acknowledged in `s` (0: none).
pub fn acked(c: &Connection, s: Stream) -> Result<i64, StateError> {
    meta_i64(c, &s.meta("acked"))
}

/// Record that the portal committed everything of `s` through `seq`. The mark only moves
/// forward; returns whether it moved.
pub fn set_acked(c: &Connection, s: Stream, seq: i64) -> Result<bool, StateError> {
    if seq <= acked(c, s)? {
        return Ok(false);
    }
    meta_set_i64(c, &s.meta("acked"), seq)?;
    Ok(true)
}

/// How many records of `s` retention dropped before the portal acknowledged them, ever.
pub fn lost(c: &Connection, s: Stream) -> Result<i64, StateError> {
    meta_i64(c, &s.meta("lost"))
}

/// The highest sequence number of `s` retention ever removed (0: none).
pub fn pruned_through(c: &Connection, s: Stream) -> Result<i64, StateError> {
    meta_i64(c, &s.meta("pruned_through"))
}

/// The newest sequence number of `s` (0: none yet), also when retention emptied the table.
pub fn latest(c: &Connection, s: Stream) -> Result<i64, StateError> {
    let (table, key) = s.table_and_key();
    let max: i64 = c.query_row(&format!("SELECT ifnull(max({key}), 0) FROM {table}"), [], |r| r.get(0))?;
    Ok(max.max(pruned_through(c, s)?))
}

/// Forget the acknowledgements and the lost counts: a newly joined portal has received nothing.
pub fn reset(c: &Connection) -> Result<(), StateError> {
    for s in Stream::ALL {
        c.execute("DELETE FROM meta WHERE key IN (?1, ?2)", params![s.meta("acked"), s.meta("lost")])?;
    }
    Ok(())
}

/// Delete the records of `s` through `retention_cut` (the highest sequence number retention
/// would drop). With `hold = Some(bound)` (the site has joined a portal), records the portal has
/// not acknowledged stay, unless more than `bound` records would remain: then the oldest go
/// anyway and the unacknowledged ones among them are added to [`lost`]. Returns the highest
/// sequence number ever pruned.
pub fn prune(c: &Connection, s: Stream, retention_cut: i64, hold: Option<i64>) -> Result<i64, StateError> {
    let (table, key) = s.table_and_key();
    let mut cut = retention_cut;
    if let Some(bound) = hold {
        let acked = acked(c, s)?;
        // What the portal has is retention's; the bound only ever cuts into what it has not.
        let forced = latest(c, s)? - bound.max(0);
        cut = cut.min(acked);
        if forced > acked {
            cut = cut.max(forced);
        }
        if cut > acked {
            let dropped: i64 = c.query_row(&format!("SELECT count(*) FROM {table} WHERE {key} > ?1 AND {key} <= ?2"), params![acked, cut], |r| r.get(0))?;
            if dropped > 0 {
                meta_set_i64(c, &s.meta("lost"), lost(c, s)? + dropped)?;
                tracing::warn!(stream = s.name(), dropped, "the outbox is full: dropped records the portal has not received");
            }
        }
    }
    let prev = pruned_through(c, s)?;
    if cut > prev {
        c.execute(&format!("DELETE FROM {table} WHERE {key} <= ?1"), [cut])?;
        meta_set_i64(c, &s.meta("pruned_through"), cut)?;
        return Ok(cut);
    }
    Ok(prev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::repo::{NewEvent, append_event, events_after, events_retention_cut};

    fn db() -> (tempfile::TempDir, crate::state::Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::state::Db::open(&dir.path().join("s.db")).unwrap();
        (dir, db)
    }

    fn add(db: &crate::state::Db, n: usize) {
        add_at(db, n, 1);
    }

    fn add_at(db: &crate::state::Db, n: usize, unix_ms: i64) {
        db.write(
            |tx| {
                for i in 0..n {
                    let e = NewEvent {
                        project_id: None,
                        project: None,
                        kind: "node".into(),
                        resource_id: format!("node-{i}"),
                        name: format!("n{i}"),
                        event_type: "created".into(),
                        message: String::new(),
                    };
                    append_event(tx, &e, "t", unix_ms)?;
                }
                Ok::<_, StateError>(())
            },
            |_| {},
        )
        .unwrap();
    }

    fn seqs(db: &crate::state::Db) -> Vec<i64> {
        db.read(|c| events_after(c, 0, None, 1000)).unwrap().iter().map(|e| e.cursor).collect()
    }

    #[test]
    fn retention_prunes_by_count_and_age_and_remembers_the_gap() {
        let (_d, db) = db();
        add_at(&db, 2, 1_000);
        add_at(&db, 8, 5_000);
        // Keep the newest 7, and drop everything older than 2,000 ms.
        let cut = db.read(|c| events_retention_cut(c, 2_000, 7)).unwrap();
        assert_eq!(db.write(|tx| prune(tx, Stream::Events, cut, None), |_| {}).unwrap(), 3);
        assert_eq!(seqs(&db), (4..=10).collect::<Vec<_>>());
        // Pruning again changes nothing; cursors are never reused.
        let cut = db.read(|c| events_retention_cut(c, 2_000, 7)).unwrap();
        assert_eq!(db.write(|tx| prune(tx, Stream::Events, cut, None), |_| {}).unwrap(), 3);
        add(&db, 1);
        assert_eq!(db.read(|c| latest(c, Stream::Events)).unwrap(), 11);
    }

    #[test]
    fn a_joined_site_keeps_what_the_portal_has_not_acknowledged_up_to_the_bound_and_counts_the_rest() {
        let (_d, db) = db();
        add(&db, 10);
        // Retention would drop 1..=8; the portal acknowledged 3: only 1..=3 go.
        db.write(|tx| set_acked(tx, Stream::Events, 3), |_| {}).unwrap();
        assert!(!db.write(|tx| set_acked(tx, Stream::Events, 2), |_| {}).unwrap(), "the mark never moves back");
        assert_eq!(db.write(|tx| prune(tx, Stream::Events, 8, Some(100)), |_| {}).unwrap(), 3);
        assert_eq!(seqs(&db), (4..=10).collect::<Vec<_>>());
        assert_eq!(db.read(|c| lost(c, Stream::Events)).unwrap(), 0);
        // A bound of 4: 4..=6 go although unacknowledged, and are counted.
        assert_eq!(db.write(|tx| prune(tx, Stream::Events, 8, Some(4)), |_| {}).unwrap(), 6);
        assert_eq!(seqs(&db), (7..=10).collect::<Vec<_>>());
        assert_eq!(db.read(|c| lost(c, Stream::Events)).unwrap(), 3);
        // Without a portal, retention alone decides.
        assert_eq!(db.write(|tx| prune(tx, Stream::Events, 8, None), |_| {}).unwrap(), 8);
        assert_eq!(seqs(&db), vec![9, 10]);
        assert_eq!(db.read(|c| Ok::<_, StateError>((pruned_through(c, Stream::Events)?, latest(c, Stream::Events)?))).unwrap(), (8, 10));
        // Sequence numbers are never reused after a prune.
        add(&db, 1);
        assert_eq!(db.read(|c| latest(c, Stream::Events)).unwrap(), 11);
    }

    #[test]
    fn the_bound_never_cuts_into_acknowledged_history_and_a_new_join_forgets_old_marks() {
        let (_d, db) = db();
        add(&db, 10);
        db.write(|tx| set_acked(tx, Stream::Events, 10), |_| {}).unwrap();
        // Everything is acknowledged; retention keeps 3..: a bound of 2 takes nothing more.
        assert_eq!(db.write(|tx| prune(tx, Stream::Events, 2, Some(2)), |_| {}).unwrap(), 2);
        assert_eq!(seqs(&db), (3..=10).collect::<Vec<_>>());
        db.write(|tx| prune(tx, Stream::Events, 10, None), |_| {}).unwrap();
        assert_eq!(db.read(|c| latest(c, Stream::Events)).unwrap(), 10, "the newest number outlives an emptied table");
        db.write(|tx| reset(tx), |_| {}).unwrap();
        assert_eq!(db.read(|c| acked(c, Stream::Events)).unwrap(), 0);
    }
}
