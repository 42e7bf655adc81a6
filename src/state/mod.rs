//! Durable state in SQLite (rusqlite).
//!
//! One writer connection behind a mutex serializes every change; each change runs in one
//! `IMMEDIATE` transaction. Readers use their own connections so that WAL readers never wait for
//! the writer. `synchronous = FULL` makes an acknowledged commit survive power loss, and WAL makes
//! a `kill -9` at any instant leave a database that opens and passes `PRAGMA integrity_check`
//! (SQLite's atomic commit, <https://www.sqlite.org/atomiccommit.html>).

pub mod files;
pub(crate) mod migrations;
pub mod objects;
pub mod outbox;
pub mod repo;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

pub use repo::{AuditRow, EventRow, NewEvent, ResourceRow};

/// Errors of the state layer.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A uniqueness constraint failed (for example a duplicate name within a project).
    #[error("duplicate: {0}")]
    Duplicate(String),
    /// A foreign key constraint failed (for example a resource still referencing its project).
    #[error("still referenced: {0}")]
    Referenced(String),
    /// Any other SQLite failure (I/O, corruption, full disk).
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database was written by a newer cloudlet whose migrations this binary lacks.
    #[error("database schema version {found} is newer than this binary's {supported}")]
    TooNew { found: i64, supported: i64 },
    /// A poisoned lock: a thread panicked while holding a connection.
    #[error("database connection lock poisoned")]
    Poisoned,
}

impl StateError {
    /// Classify a raw SQLite error into duplicate / referenced / other.
    pub fn classify(e: rusqlite::Error) -> Self {
        if let rusqlite::Error::SqliteFailure(f, msg) = &e {
            let msg = msg.clone().unwrap_or_default();
            match f.extended_code {
                rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                    return StateError::Duplicate(msg);
                }
                rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY => return StateError::Referenced(msg),
                _ => {}
            }
        }
        StateError::Sqlite(e)
    }
}

/// The database handle: one writer and a small pool of readers.
pub struct Db {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

const MAX_IDLE_READERS: usize = 8;

fn open_conn(path: &Path, write: bool) -> Result<Connection, StateError> {
    let flags = if write {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let c = Connection::open_with_flags(path, flags)?;
    c.busy_timeout(std::time::Duration::from_secs(5))?;
    c.pragma_update(None, "foreign_keys", "ON")?;
    if write {
        c.pragma_update(None, "journal_mode", "WAL")?;
        c.pragma_update(None, "synchronous", "FULL")?;
    }
    c.set_prepared_statement_cache_capacity(64);
    Ok(c)
}

impl Db {
    /// Open (creating if needed) the database at `path`, and apply pending migrations.
    ///
    /// Errors: I/O or corruption ([`StateError::Sqlite`]); a schema newer than this binary
    /// ([`StateError::TooNew`]).
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let mut w = open_conn(path, true)?;
        migrations::apply(&mut w)?;
        Ok(Db { path: path.to_path_buf(), writer: Mutex::new(w), readers: Mutex::new(Vec::new()) })
    }

    /// Run `f` in one immediate write transaction; commit when it returns `Ok`.
    ///
    /// `after_commit` runs after the commit while the writer lock is still held, so work it does
    /// (such as publishing events) happens in commit order.
    pub fn write<T, E>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T, E>, after_commit: impl FnOnce(&T)) -> Result<T, E>
    where
        E: From<StateError>,
    {
        let mut guard = self.writer.lock().map_err(|_| StateError::Poisoned)?;
        let tx = guard.transaction_with_behavior(TransactionBehavior::Immediate).map_err(StateError::from)?;
        let out = f(&tx)?;
        tx.commit().map_err(StateError::from)?;
        after_commit(&out);
        Ok(out)
    }

    /// Run `f` on a read connection (a consistent WAL snapshot for the duration of `f` when it
    /// opens a transaction; single statements are always consistent).
    pub fn read<T, E>(&self, f: impl FnOnce(&Connection) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StateError>,
    {
        let conn = {
            let mut pool = self.readers.lock().map_err(|_| StateError::Poisoned)?;
            pool.pop()
        };
        let conn = match conn {
            Some(c) => c,
            None => open_conn(&self.path, false)?,
        };
        let out = f(&conn);
        if let Ok(mut pool) = self.readers.lock()
            && pool.len() < MAX_IDLE_READERS
        {
            pool.push(conn);
        }
        out
    }

    /// `PRAGMA integrity_check`: `Ok(())` when SQLite reports `ok`, else the problems it lists.
    pub fn integrity_check(&self) -> Result<Result<(), Vec<String>>, StateError> {
        self.read(|c| {
            let mut st = c.prepare("PRAGMA integrity_check")?;
            let rows: Vec<String> = st.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<_, _>>()?;
            Ok(if rows == ["ok"] { Ok(()) } else { Err(rows) })
        })
    }

    /// Free what the connections cache (prepared statements, page cache;
    /// `sqlite3_db_release_memory`) and close all idle readers but one: start-up's parallel
    /// reconcile pass opens up to [`MAX_IDLE_READERS`] readers, each with its own parsed schema
    /// and caches, which an idle daemon does not need. Busy connections are left alone.
    pub fn release_idle_memory(&self) {
        if let Ok(mut pool) = self.readers.lock() {
            pool.truncate(1);
            for c in pool.iter() {
                c.flush_prepared_statement_cache();
                let _ = c.release_memory();
            }
        }
        if let Ok(w) = self.writer.try_lock() {
            w.flush_prepared_statement_cache();
            let _ = w.release_memory();
        }
    }

    /// Fold the WAL back into the main file (called at graceful shutdown).
    pub fn checkpoint(&self) -> Result<(), StateError> {
        let guard = self.writer.lock().map_err(|_| StateError::Poisoned)?;
        guard.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }
}
