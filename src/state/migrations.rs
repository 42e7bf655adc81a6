//! Numbered schema migrations, tracked in `PRAGMA user_version`.
//!
//! Each migration runs in its own transaction together with the version bump, so a crash mid-way
//! leaves the previous version intact. Never edit a released migration: append a new one.

use rusqlite::Connection;

use super::StateError;

/// The migrations, in order; index `i` moves the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: the generic resource table, secrets, sessions, events, audit, meta.
    r#"
    CREATE TABLE resources (
        id          TEXT PRIMARY KEY,
        kind        TEXT NOT NULL,
        project     TEXT REFERENCES resources(id),
        name        TEXT NOT NULL,
        labels      TEXT NOT NULL DEFAULT '{}',
        spec        TEXT NOT NULL DEFAULT '{}',
        status      TEXT NOT NULL DEFAULT '{}',
        generation  INTEGER NOT NULL DEFAULT 1,
        created_at  TEXT NOT NULL,
        updated_at  TEXT NOT NULL,
        deleting    INTEGER NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX resources_name ON resources(kind, ifnull(project, ''), name);
    CREATE INDEX resources_project ON resources(project, kind);
    CREATE TABLE secrets (
        resource_id TEXT PRIMARY KEY REFERENCES resources(id) ON DELETE CASCADE,
        hash        TEXT NOT NULL
    );
    CREATE INDEX secrets_hash ON secrets(hash);
    CREATE TABLE sessions (
        hash        TEXT PRIMARY KEY,
        user_id     TEXT NOT NULL REFERENCES resources(id) ON DELETE CASCADE,
        expires_ms  INTEGER NOT NULL
    );
    CREATE TABLE events (
        cursor       INTEGER PRIMARY KEY AUTOINCREMENT,
        time         TEXT NOT NULL,
        unix_ms      INTEGER NOT NULL,
        project_id   TEXT,
        project      TEXT,
        kind         TEXT NOT NULL,
        resource_id  TEXT NOT NULL,
        name         TEXT NOT NULL,
        type         TEXT NOT NULL,
        message      TEXT NOT NULL
    );
    CREATE INDEX events_project ON events(project_id, cursor);
    CREATE TABLE audit (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        time     TEXT NOT NULL,
        actor    TEXT NOT NULL,
        project_id TEXT,
        project  TEXT,
        method   TEXT NOT NULL,
        path     TEXT NOT NULL,
        status   INTEGER NOT NULL,
        target   TEXT
    );
    CREATE INDEX audit_project ON audit(project_id, id);
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    "#,
    // 2: object storage. Keys are BLOBs so that ordering and prefix ranges are bytewise, as S3
    // lists (UTF-8 binary order). An object's data is one or more blob files, in order.
    r#"
    CREATE TABLE objects (
        bucket       TEXT NOT NULL REFERENCES resources(id),
        key          BLOB NOT NULL,
        size         INTEGER NOT NULL,
        etag         TEXT NOT NULL,
        content_type TEXT,
        meta         TEXT NOT NULL DEFAULT '{}',
        parts        INTEGER NOT NULL DEFAULT 0,
        modified_ms  INTEGER NOT NULL,
        PRIMARY KEY (bucket, key)
    ) WITHOUT ROWID;
    CREATE TABLE object_blobs (
        bucket  TEXT NOT NULL,
        key     BLOB NOT NULL,
        seq     INTEGER NOT NULL,
        blob    TEXT NOT NULL,
        size    INTEGER NOT NULL,
        PRIMARY KEY (bucket, key, seq),
        FOREIGN KEY (bucket, key) REFERENCES objects(bucket, key) ON DELETE CASCADE
    ) WITHOUT ROWID;
    CREATE INDEX object_blobs_blob ON object_blobs(blob);
    CREATE TABLE bucket_usage (
        bucket   TEXT PRIMARY KEY REFERENCES resources(id) ON DELETE CASCADE,
        bytes    INTEGER NOT NULL DEFAULT 0,
        objects  INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE uploads (
        id           TEXT PRIMARY KEY,
        bucket       TEXT NOT NULL REFERENCES resources(id) ON DELETE CASCADE,
        key          BLOB NOT NULL,
        content_type TEXT,
        meta         TEXT NOT NULL DEFAULT '{}',
        initiated_ms INTEGER NOT NULL
    );
    CREATE INDEX uploads_bucket ON uploads(bucket, key);
    CREATE TABLE upload_parts (
        upload       TEXT NOT NULL REFERENCES uploads(id) ON DELETE CASCADE,
        number       INTEGER NOT NULL,
        blob         TEXT NOT NULL,
        size         INTEGER NOT NULL,
        etag         TEXT NOT NULL,
        checksums    TEXT NOT NULL DEFAULT '{}',
        modified_ms  INTEGER NOT NULL,
        PRIMARY KEY (upload, number)
    ) WITHOUT ROWID;
    CREATE INDEX upload_parts_blob ON upload_parts(blob);
    CREATE UNIQUE INDEX resources_bucket_name ON resources(name) WHERE kind = 'bucket';
    "#,
    // 3: each project's user namespace slot (its range of host ids), never reused.
    r#"
    CREATE TABLE userns_slots (
        project      TEXT PRIMARY KEY,
        slot         INTEGER NOT NULL UNIQUE
    ) WITHOUT ROWID;
    "#,
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Bring the database up to [`SCHEMA_VERSION`].
pub fn apply(conn: &mut Connection) -> Result<(), StateError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(StateError::TooNew { found: current, supported: SCHEMA_VERSION });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "applied state migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_are_idempotent() {
        let mut c = Connection::open_in_memory().unwrap();
        apply(&mut c).unwrap();
        apply(&mut c).unwrap();
        let v: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, SCHEMA_VERSION);
    }

    #[test]
    fn newer_schema_is_refused() {
        let mut c = Connection::open_in_memory().unwrap();
        c.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        assert!(matches!(apply(&mut c), Err(StateError::TooNew { .. })));
    }
}
