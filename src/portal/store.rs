//! The portal's state behind one trait, [`PortalStore`], so a fleet can keep it in PostgreSQL
//! while a small or test portal keeps it in an embedded SQLite file (`DATA/portal.db`,
//! [`SqliteStore`]).
//!
//! The store holds join tokens (only the SHA-256 of their secrets) and joined sites (the
//! fingerprint of each site's current client certificate). Joining is one transaction
//! ([`PortalStore::register`]): the token is consumed and the site recorded together, or neither.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

/// Errors of a portal store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A site of that name is already joined.
    #[error("site {0} is already joined")]
    SiteExists(String),
    /// The token was consumed (by another join) before this one committed.
    #[error("the join token was already used")]
    TokenUsed,
    /// The database failed (I/O, corruption, full disk, a lost connection).
    #[error("portal database: {0}")]
    Db(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Db(e.to_string())
    }
}

/// A join token as stored (its secret only as a digest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// The token id (16 hex digits).
    pub id: String,
    /// The site the token is for.
    pub site: String,
    /// SHA-256 of the secret, lowercase hex.
    pub secret_sha256: String,
    /// Made at, Unix seconds.
    pub created_at: i64,
    /// Expires at, Unix seconds.
    pub expires_at: i64,
    /// Consumed at, Unix seconds, by the key whose SPKI digest is `used_by_key`.
    pub used_at: Option<i64>,
    /// SHA-256 of the SubjectPublicKeyInfo that consumed it.
    pub used_by_key: Option<String>,
}

/// A joined site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteRecord {
    /// The site's name (unique in the portal).
    pub name: String,
    /// Joined at, Unix seconds.
    pub joined_at: i64,
    /// Its current client certificate, PEM.
    pub cert_pem: String,
    /// SHA-256 of that certificate's DER, lowercase hex.
    pub cert_sha256: String,
    /// The certificate's serial, lowercase hex.
    pub cert_serial: String,
    /// The certificate's end of validity, Unix seconds.
    pub cert_not_after: i64,
    /// SHA-256 of the site key's SubjectPublicKeyInfo.
    pub key_sha256: String,
    /// SHA-256 of the certificate the current one replaced, still accepted until it expires, so
    /// a site that lost the renewal's answer is not locked out.
    pub prev_cert_sha256: Option<String>,
}

/// A renewed certificate of a site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertUpdate {
    /// PEM.
    pub cert_pem: String,
    /// SHA-256 of its DER.
    pub cert_sha256: String,
    /// Its serial, hex.
    pub cert_serial: String,
    /// Its end of validity, Unix seconds.
    pub cert_not_after: i64,
}

/// One record of a site's stream, as the portal keeps it: keyed `(site, stream, seq)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    /// Its sequence number in the site's stream.
    pub seq: i64,
    /// When the site wrote it (RFC 3339).
    pub time: String,
    /// The record, JSON text as the site sent it.
    pub body: String,
}

/// What one pull brought of one stream of a site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamBatch {
    /// The stream (`events`, `audit`).
    pub stream: String,
    /// Records after the portal's cursor, oldest first.
    pub records: Vec<StreamRecord>,
    /// The highest sequence number the site's retention ever removed.
    pub pruned_through: i64,
    /// How many records the site dropped unsent, ever (its count).
    pub lost: i64,
    /// The site's newest sequence number.
    pub latest: i64,
}

/// Where the portal stands in one stream of a site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamState {
    /// The site.
    pub site: String,
    /// The stream.
    pub stream: String,
    /// The highest sequence number committed here (the next pull's cursor).
    pub cursor: i64,
    /// The site's newest sequence number, as of the last pull.
    pub latest: i64,
    /// Records the site dropped unsent, by its count.
    pub lost: i64,
    /// Records this portal knows it never got (the sum of the stream's gaps).
    pub missing: i64,
}

/// A change the portal saw in its fleet (`GET /v1/events` on the portal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalEvent {
    /// Strictly increasing, never reused.
    pub cursor: i64,
    /// RFC 3339.
    pub time: String,
    /// The site it is about.
    pub site: String,
    /// `joined`, `connected`, `disconnected`, `certificate_renewed`, `removed`.
    pub event_type: String,
    /// A summary.
    pub message: String,
}

/// The portal's state. Every method is one transaction.
#[async_trait::async_trait]
pub trait PortalStore: Send + Sync {
    /// Record a new, unused token.
    async fn add_token(&self, token: TokenRecord) -> Result<(), StoreError>;
    /// The token `id`, if any.
    async fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError>;
    /// Consume token `token_id` (unused until now) with the key of `site` and record `site`,
    /// both or neither. Errors: [`StoreError::TokenUsed`], [`StoreError::SiteExists`].
    async fn register(&self, token_id: &str, used_at: i64, site: SiteRecord) -> Result<(), StoreError>;
    /// The joined site `name`, if any.
    async fn site(&self, name: &str) -> Result<Option<SiteRecord>, StoreError>;
    /// The joined site whose current or previous certificate has the digest `cert_sha256`.
    async fn site_by_cert(&self, cert_sha256: &str) -> Result<Option<SiteRecord>, StoreError>;
    /// Make `cert` site `name`'s current certificate and the current one its previous, if the
    /// current one is still `current_sha256` (else another renewal won: false).
    async fn renew_cert(&self, name: &str, current_sha256: &str, cert: CertUpdate) -> Result<bool, StoreError>;
    /// Every joined site, by name.
    async fn sites(&self) -> Result<Vec<SiteRecord>, StoreError>;
    /// Site names with an unused, unexpired token at `now` and no joined site: the pending ones.
    async fn pending(&self, now: i64) -> Result<Vec<(String, i64)>, StoreError>;
    /// Remove site `name`, every token for it (its certificate stops being accepted) and its
    /// streams. Returns whether there was anything to remove.
    async fn remove_site(&self, name: &str) -> Result<bool, StoreError>;
    /// The stream states of `site` (every site's when `None`), by site and stream.
    async fn stream_states(&self, site: Option<&str>) -> Result<Vec<StreamState>, StoreError>;
    /// Commit one pull of `site`'s streams: the records after each cursor (a record already
    /// held is skipped, so a repeated pull never duplicates), a gap where the site no longer
    /// had what followed the cursor, and the new cursors; all or nothing. A stream's first
    /// pull starts at what the site still holds, with no gap. Returns the new states.
    async fn ingest(&self, site: &str, batches: Vec<StreamBatch>) -> Result<Vec<StreamState>, StoreError>;
    /// Records of `site`'s `stream` with seq > `after`, oldest first.
    async fn records(&self, site: &str, stream: &str, after: i64, limit: usize) -> Result<Vec<StreamRecord>, StoreError>;
    /// Record that `site` was seen at `seen_at` (Unix seconds), with its inventory (JSON text)
    /// when given; without one the last inventory stays.
    async fn put_inventory(&self, site: &str, seen_at: i64, inventory: Option<String>) -> Result<(), StoreError>;
    /// Append an event about `site` (its cursor and time are assigned).
    async fn add_event(&self, site: &str, event_type: &str, message: &str) -> Result<(), StoreError>;
    /// Events with cursor > `after`, oldest first.
    async fn events(&self, after: i64, limit: usize) -> Result<Vec<PortalEvent>, StoreError>;
    /// Every site's last sighting and inventory: (site, seen_at, inventory JSON text).
    async fn inventories(&self) -> Result<Vec<(String, i64, Option<String>)>, StoreError>;
    /// The gaps of `site`'s `stream`: `(after, through)`, the records after `after` through
    /// `through` that the site dropped before this portal had them.
    async fn gaps(&self, site: &str, stream: &str) -> Result<Vec<(i64, i64)>, StoreError>;
}

/// The embedded store: one SQLite file in WAL mode with `synchronous = FULL` (an acknowledged
/// join survives power loss), one connection behind a mutex, used from blocking tasks.
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS join_tokens (
    id TEXT PRIMARY KEY, site TEXT NOT NULL, secret_sha256 TEXT NOT NULL, created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL, used_at INTEGER, used_by_key TEXT);
CREATE TABLE IF NOT EXISTS sites (
    name TEXT PRIMARY KEY, joined_at INTEGER NOT NULL, cert_pem TEXT NOT NULL, cert_sha256 TEXT NOT NULL UNIQUE,
    cert_serial TEXT NOT NULL, cert_not_after INTEGER NOT NULL, key_sha256 TEXT NOT NULL, prev_cert_sha256 TEXT);
CREATE TABLE IF NOT EXISTS site_streams (
    site TEXT NOT NULL, stream TEXT NOT NULL, cursor INTEGER NOT NULL, latest INTEGER NOT NULL, lost INTEGER NOT NULL,
    PRIMARY KEY (site, stream)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS site_records (
    site TEXT NOT NULL, stream TEXT NOT NULL, seq INTEGER NOT NULL, time TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (site, stream, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS portal_events (
    cursor INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL, site TEXT NOT NULL, type TEXT NOT NULL, message TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS site_inventory (
    site TEXT PRIMARY KEY, seen_at INTEGER NOT NULL, body TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS site_gaps (
    site TEXT NOT NULL, stream TEXT NOT NULL, after_seq INTEGER NOT NULL, through_seq INTEGER NOT NULL,
    PRIMARY KEY (site, stream, after_seq)) WITHOUT ROWID;
";

impl SqliteStore {
    /// Open (or make) the store at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        // Portals made before certificate renewal lack the column.
        let has_prev: bool = conn.query_row("SELECT count(*) FROM pragma_table_info('sites') WHERE name = 'prev_cert_sha256'", [], |r| r.get(0))?;
        if !has_prev {
            conn.execute_batch("ALTER TABLE sites ADD COLUMN prev_cert_sha256 TEXT")?;
        }
        Ok(SqliteStore { conn: Arc::new(Mutex::new(conn)) })
    }

    async fn with<T: Send + 'static>(&self, f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = conn.lock().map_err(|_| StoreError::Db("connection lock poisoned".into()))?;
            f(&mut c)
        })
        .await
        .map_err(|e| StoreError::Db(format!("store task: {e}")))?
    }
}

fn token_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRecord> {
    Ok(TokenRecord {
        id: r.get(0)?,
        site: r.get(1)?,
        secret_sha256: r.get(2)?,
        created_at: r.get(3)?,
        expires_at: r.get(4)?,
        used_at: r.get(5)?,
        used_by_key: r.get(6)?,
    })
}

const SITE_COLS: &str = "name, joined_at, cert_pem, cert_sha256, cert_serial, cert_not_after, key_sha256, prev_cert_sha256";

fn site_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<SiteRecord> {
    Ok(SiteRecord {
        name: r.get(0)?,
        joined_at: r.get(1)?,
        cert_pem: r.get(2)?,
        cert_sha256: r.get(3)?,
        cert_serial: r.get(4)?,
        cert_not_after: r.get(5)?,
        key_sha256: r.get(6)?,
        prev_cert_sha256: r.get(7)?,
    })
}

#[async_trait::async_trait]
impl PortalStore for SqliteStore {
    async fn add_token(&self, t: TokenRecord) -> Result<(), StoreError> {
        self.with(move |c| {
            c.execute(
                "INSERT INTO join_tokens (id, site, secret_sha256, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![t.id, t.site, t.secret_sha256, t.created_at, t.expires_at],
            )?;
            Ok(())
        })
        .await
    }

    async fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        let id = id.to_string();
        self.with(move |c| {
            Ok(c.query_row("SELECT id, site, secret_sha256, created_at, expires_at, used_at, used_by_key FROM join_tokens WHERE id = ?1", [id], token_of)
                .optional()?)
        })
        .await
    }

    async fn register(&self, token_id: &str, used_at: i64, s: SiteRecord) -> Result<(), StoreError> {
        let token_id = token_id.to_string();
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let taken = tx
                .execute("UPDATE join_tokens SET used_at = ?2, used_by_key = ?3 WHERE id = ?1 AND used_at IS NULL", params![token_id, used_at, s.key_sha256])?;
            if taken != 1 {
                return Err(StoreError::TokenUsed);
            }
            let exists: bool = tx.query_row("SELECT EXISTS (SELECT 1 FROM sites WHERE name = ?1)", [&s.name], |r| r.get(0))?;
            if exists {
                return Err(StoreError::SiteExists(s.name));
            }
            tx.execute(
                &format!("INSERT INTO sites ({SITE_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL)"),
                params![s.name, s.joined_at, s.cert_pem, s.cert_sha256, s.cert_serial, s.cert_not_after, s.key_sha256],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn site(&self, name: &str) -> Result<Option<SiteRecord>, StoreError> {
        let name = name.to_string();
        self.with(move |c| Ok(c.query_row(&format!("SELECT {SITE_COLS} FROM sites WHERE name = ?1"), [name], site_of).optional()?)).await
    }

    async fn site_by_cert(&self, cert_sha256: &str) -> Result<Option<SiteRecord>, StoreError> {
        let fp = cert_sha256.to_string();
        self.with(move |c| {
            let q = format!("SELECT {SITE_COLS} FROM sites WHERE cert_sha256 = ?1 UNION ALL SELECT {SITE_COLS} FROM sites WHERE prev_cert_sha256 = ?1 LIMIT 1");
            Ok(c.query_row(&q, [fp], site_of).optional()?)
        })
        .await
    }

    async fn renew_cert(&self, name: &str, current_sha256: &str, u: CertUpdate) -> Result<bool, StoreError> {
        let (name, current) = (name.to_string(), current_sha256.to_string());
        self.with(move |c| {
            let n = c.execute(
                "UPDATE sites SET prev_cert_sha256 = cert_sha256, cert_pem = ?3, cert_sha256 = ?4, cert_serial = ?5, cert_not_after = ?6
                 WHERE name = ?1 AND cert_sha256 = ?2",
                params![name, current, u.cert_pem, u.cert_sha256, u.cert_serial, u.cert_not_after],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn sites(&self) -> Result<Vec<SiteRecord>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare(&format!("SELECT {SITE_COLS} FROM sites ORDER BY name"))?;
            let rows = st.query_map([], site_of)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn pending(&self, now: i64) -> Result<Vec<(String, i64)>, StoreError> {
        self.with(move |c| {
            let mut st = c.prepare(
                "SELECT site, MAX(expires_at) FROM join_tokens WHERE used_at IS NULL AND expires_at > ?1
                 AND site NOT IN (SELECT name FROM sites) GROUP BY site ORDER BY site",
            )?;
            let rows = st.query_map([now], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn remove_site(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let n = tx.execute("DELETE FROM sites WHERE name = ?1", [&name])? + tx.execute("DELETE FROM join_tokens WHERE site = ?1", [&name])?;
            for table in ["site_streams", "site_records", "site_gaps", "site_inventory"] {
                tx.execute(&format!("DELETE FROM {table} WHERE site = ?1"), [&name])?;
            }
            tx.commit()?;
            Ok(n > 0)
        })
        .await
    }

    async fn stream_states(&self, site: Option<&str>) -> Result<Vec<StreamState>, StoreError> {
        let site = site.map(str::to_string);
        self.with(move |c| states(c, site.as_deref())).await
    }

    async fn ingest(&self, site: &str, batches: Vec<StreamBatch>) -> Result<Vec<StreamState>, StoreError> {
        let site = site.to_string();
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // A pull that finishes after its site was removed keeps nothing.
            let joined: bool = tx.query_row("SELECT EXISTS (SELECT 1 FROM sites WHERE name = ?1)", [&site], |r| r.get(0))?;
            for b in batches.iter().filter(|_| joined) {
                let held: Option<i64> =
                    tx.query_row("SELECT cursor FROM site_streams WHERE site = ?1 AND stream = ?2", params![site, b.stream], |r| r.get(0)).optional()?;
                let plan = plan_ingest(held, b);
                if let Some((after, through)) = plan.gap {
                    tx.execute(
                        "INSERT OR IGNORE INTO site_gaps (site, stream, after_seq, through_seq) VALUES (?1, ?2, ?3, ?4)",
                        params![site, b.stream, after, through],
                    )?;
                }
                let mut insert = tx.prepare_cached("INSERT OR IGNORE INTO site_records (site, stream, seq, time, body) VALUES (?1, ?2, ?3, ?4, ?5)")?;
                for r in b.records.iter().filter(|r| r.seq > plan.start) {
                    insert.execute(params![site, b.stream, r.seq, r.time, r.body])?;
                }
                tx.execute(
                    "INSERT INTO site_streams (site, stream, cursor, latest, lost) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (site, stream) DO UPDATE SET cursor = max(cursor, excluded.cursor), latest = excluded.latest, lost = excluded.lost",
                    params![site, b.stream, plan.cursor, b.latest, b.lost],
                )?;
            }
            let out = states(&tx, Some(&site))?;
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    async fn records(&self, site: &str, stream: &str, after: i64, limit: usize) -> Result<Vec<StreamRecord>, StoreError> {
        let (site, stream) = (site.to_string(), stream.to_string());
        self.with(move |c| {
            let mut st = c.prepare_cached("SELECT seq, time, body FROM site_records WHERE site = ?1 AND stream = ?2 AND seq > ?3 ORDER BY seq LIMIT ?4")?;
            let rows = st
                .query_map(params![site, stream, after, limit as i64], |r| Ok(StreamRecord { seq: r.get(0)?, time: r.get(1)?, body: r.get(2)? }))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn put_inventory(&self, site: &str, seen_at: i64, inventory: Option<String>) -> Result<(), StoreError> {
        let site = site.to_string();
        self.with(move |c| {
            // Only for a joined site: a link that outlives its site's removal records nothing.
            c.execute(
                "INSERT INTO site_inventory (site, seen_at, body) SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM sites WHERE name = ?1)
                 ON CONFLICT (site) DO UPDATE SET seen_at = excluded.seen_at, body = coalesce(excluded.body, site_inventory.body)",
                params![site, seen_at, inventory],
            )?;
            Ok(())
        })
        .await
    }

    async fn add_event(&self, site: &str, event_type: &str, message: &str) -> Result<(), StoreError> {
        let (site, t, m) = (site.to_string(), event_type.to_string(), message.to_string());
        self.with(move |c| {
            c.execute("INSERT INTO portal_events (time, site, type, message) VALUES (?1, ?2, ?3, ?4)", params![chrono::Utc::now().to_rfc3339(), site, t, m])?;
            Ok(())
        })
        .await
    }

    async fn events(&self, after: i64, limit: usize) -> Result<Vec<PortalEvent>, StoreError> {
        self.with(move |c| {
            let mut st = c.prepare_cached("SELECT cursor, time, site, type, message FROM portal_events WHERE cursor > ?1 ORDER BY cursor LIMIT ?2")?;
            let rows = st
                .query_map(params![after, limit as i64], |r| {
                    Ok(PortalEvent { cursor: r.get(0)?, time: r.get(1)?, site: r.get(2)?, event_type: r.get(3)?, message: r.get(4)? })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn inventories(&self) -> Result<Vec<(String, i64, Option<String>)>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare_cached("SELECT site, seen_at, body FROM site_inventory ORDER BY site")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn gaps(&self, site: &str, stream: &str) -> Result<Vec<(i64, i64)>, StoreError> {
        let (site, stream) = (site.to_string(), stream.to_string());
        self.with(move |c| {
            let mut st = c.prepare_cached("SELECT after_seq, through_seq FROM site_gaps WHERE site = ?1 AND stream = ?2 ORDER BY after_seq")?;
            let rows = st.query_map(params![site, stream], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }
}

/// How one batch moves a stream: records after `start` are new, `gap` is what the site no
/// longer had, `cursor` is where the stream stands after it.
#[derive(Debug, PartialEq, Eq)]
pub struct IngestPlan {
    /// Records with a higher seq are taken.
    pub start: i64,
    /// `(after, through)` missed, if any.
    pub gap: Option<(i64, i64)>,
    /// The new cursor.
    pub cursor: i64,
}

/// Plan the ingest of `b` into a stream whose cursor is `held` (`None`: never pulled). The same
/// for every store, so SQLite and PostgreSQL agree on gaps.
pub fn plan_ingest(held: Option<i64>, b: &StreamBatch) -> IngestPlan {
    let first = b.records.first().map(|r| r.seq);
    let start = match held {
        Some(c) => c,
        // A first pull begins at what the site still holds: older history is not a loss.
        None => first.map(|f| f - 1).unwrap_or(b.pruned_through).max(0),
    };
    let next = first.unwrap_or(b.pruned_through + 1);
    let gap = (held.is_some() && b.pruned_through > start && next > start + 1).then(|| (start, (next - 1).min(b.pruned_through)));
    let last = b.records.last().map(|r| r.seq).unwrap_or(start);
    let cursor = start.max(last).max(gap.map(|g| g.1).unwrap_or(0));
    IngestPlan { start, gap, cursor }
}

fn states(c: &Connection, site: Option<&str>) -> Result<Vec<StreamState>, StoreError> {
    let mut st = c.prepare_cached(
        "SELECT s.site, s.stream, s.cursor, s.latest, s.lost,
           (SELECT ifnull(sum(g.through_seq - g.after_seq), 0) FROM site_gaps g WHERE g.site = s.site AND g.stream = s.stream)
         FROM site_streams s WHERE ?1 IS NULL OR s.site = ?1 ORDER BY s.site, s.stream",
    )?;
    let rows = st
        .query_map(params![site], |r| {
            Ok(StreamState { site: r.get(0)?, stream: r.get(1)?, cursor: r.get(2)?, latest: r.get(3)?, lost: r.get(4)?, missing: r.get(5)? })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(id: &str, site: &str) -> TokenRecord {
        TokenRecord { id: id.into(), site: site.into(), secret_sha256: "s".into(), created_at: 1, expires_at: 100, used_at: None, used_by_key: None }
    }

    fn site(name: &str, fp: &str) -> SiteRecord {
        SiteRecord {
            name: name.into(),
            joined_at: 5,
            cert_pem: "pem".into(),
            cert_sha256: fp.into(),
            cert_serial: "01".into(),
            cert_not_after: 1000,
            key_sha256: format!("key-{fp}"),
            prev_cert_sha256: None,
        }
    }

    #[tokio::test]
    async fn a_join_consumes_its_token_and_records_the_site_or_does_neither() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("portal.db")).unwrap();
        s.add_token(token("t1", "plant")).await.unwrap();
        s.add_token(token("t2", "plant")).await.unwrap();
        assert_eq!(s.pending(50).await.unwrap(), vec![("plant".to_string(), 100)]);
        assert!(s.pending(100).await.unwrap().is_empty(), "expired tokens make nothing pending");

        s.register("t1", 7, site("plant", "a")).await.unwrap();
        let t1 = s.token("t1").await.unwrap().unwrap();
        assert_eq!((t1.used_at, t1.used_by_key.as_deref()), (Some(7), Some("key-a")));
        assert_eq!(s.site_by_cert("a").await.unwrap().map(|x| x.name), Some("plant".into()));
        assert!(s.pending(50).await.unwrap().is_empty(), "a joined site is not pending");

        // The same token again, and another token for a joined name: refused, nothing changes.
        assert!(matches!(s.register("t1", 8, site("plant", "b")).await, Err(StoreError::TokenUsed)));
        assert!(matches!(s.register("t2", 8, site("plant", "b")).await, Err(StoreError::SiteExists(_))));
        assert_eq!(s.token("t2").await.unwrap().unwrap().used_at, None, "the refused join left its token unused");
        assert_eq!(s.sites().await.unwrap().len(), 1);
        assert!(s.site_by_cert("b").await.unwrap().is_none());

        // A renewal: the new certificate and the one it replaced both authenticate; a renewal
        // that lost the race to another changes nothing.
        let next = CertUpdate { cert_pem: "pem2".into(), cert_sha256: "a2".into(), cert_serial: "02".into(), cert_not_after: 2000 };
        assert!(s.renew_cert("plant", "a", next.clone()).await.unwrap());
        assert!(!s.renew_cert("plant", "a", next).await.unwrap());
        assert_eq!(s.site_by_cert("a2").await.unwrap().map(|x| (x.cert_serial, x.prev_cert_sha256)), Some(("02".into(), Some("a".into()))));
        assert_eq!(s.site_by_cert("a").await.unwrap().map(|x| x.name), Some("plant".into()));

        assert!(s.remove_site("plant").await.unwrap());
        assert!(s.site_by_cert("a").await.unwrap().is_none());
        assert!(s.token("t2").await.unwrap().is_none(), "removing a site removes its tokens");
        assert!(!s.remove_site("plant").await.unwrap());
    }

    fn batch(stream: &str, seqs: impl Iterator<Item = i64>, pruned_through: i64) -> StreamBatch {
        let records = seqs.map(|seq| StreamRecord { seq, time: "t".into(), body: format!("{{\"n\":{seq}}}") }).collect::<Vec<_>>();
        let latest = records.last().map(|r| r.seq).unwrap_or(pruned_through);
        StreamBatch { stream: stream.into(), records, pruned_through, lost: 0, latest }
    }

    #[tokio::test]
    async fn a_repeated_pull_never_duplicates_and_a_gap_is_recorded_never_silent() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("portal.db")).unwrap();
        assert!(s.ingest("plant", vec![batch("events", 1..=2, 0)]).await.unwrap().is_empty(), "nothing is kept for a site not joined");
        s.add_token(token("t1", "plant")).await.unwrap();
        s.register("t1", 7, site("plant", "a")).await.unwrap();
        // The first pull starts at what the site holds (4..): older history is no gap.
        let st = s.ingest("plant", vec![batch("events", 4..=6, 3), batch("audit", 1..=2, 0)]).await.unwrap();
        assert_eq!(st.iter().map(|x| (x.stream.as_str(), x.cursor, x.missing)).collect::<Vec<_>>(), vec![("audit", 2, 0), ("events", 6, 0)]);
        // The same pull again (its answer was lost before the cursor moved): nothing doubles.
        s.ingest("plant", vec![batch("events", 4..=7, 3)]).await.unwrap();
        let got = s.records("plant", "events", 0, 100).await.unwrap();
        assert_eq!(got.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![4, 5, 6, 7]);
        // The site dropped 8..=10 before the portal had them: a counted gap, and the cursor moves on.
        let st = s.ingest("plant", vec![batch("events", 11..=12, 10)]).await.unwrap();
        let ev = st.iter().find(|x| x.stream == "events").unwrap();
        assert_eq!((ev.cursor, ev.missing), (12, 3));
        assert_eq!(s.gaps("plant", "events").await.unwrap(), vec![(7, 10)]);
        // An empty pull with everything pruned past the cursor is a gap too.
        let st = s.ingest("plant", vec![batch("events", std::iter::empty(), 15)]).await.unwrap();
        assert_eq!(st.iter().find(|x| x.stream == "events").map(|x| (x.cursor, x.missing)), Some((15, 6)));
        assert!(s.remove_site("plant").await.is_ok());
        assert!(s.stream_states(Some("plant")).await.unwrap().is_empty(), "removing a site removes its streams");
        assert!(s.records("plant", "events", 0, 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn state_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("portal.db");
        {
            let s = SqliteStore::open(&path).unwrap();
            s.add_token(token("t1", "plant")).await.unwrap();
            s.register("t1", 7, site("plant", "a")).await.unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.site("plant").await.unwrap().map(|x| x.cert_sha256), Some("a".into()));
    }
}
