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
    /// The joined site whose current certificate has the digest `cert_sha256`, if any.
    async fn site_by_cert(&self, cert_sha256: &str) -> Result<Option<SiteRecord>, StoreError>;
    /// Every joined site, by name.
    async fn sites(&self) -> Result<Vec<SiteRecord>, StoreError>;
    /// Site names with an unused, unexpired token at `now` and no joined site: the pending ones.
    async fn pending(&self, now: i64) -> Result<Vec<(String, i64)>, StoreError>;
    /// Remove site `name` and every token for it (its certificate stops being accepted).
    /// Returns whether there was anything to remove.
    async fn remove_site(&self, name: &str) -> Result<bool, StoreError>;
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
    cert_serial TEXT NOT NULL, cert_not_after INTEGER NOT NULL, key_sha256 TEXT NOT NULL);
";

impl SqliteStore {
    /// Open (or make) the store at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
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

const SITE_COLS: &str = "name, joined_at, cert_pem, cert_sha256, cert_serial, cert_not_after, key_sha256";

fn site_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<SiteRecord> {
    Ok(SiteRecord {
        name: r.get(0)?,
        joined_at: r.get(1)?,
        cert_pem: r.get(2)?,
        cert_sha256: r.get(3)?,
        cert_serial: r.get(4)?,
        cert_not_after: r.get(5)?,
        key_sha256: r.get(6)?,
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
                &format!("INSERT INTO sites ({SITE_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
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
        self.with(move |c| Ok(c.query_row(&format!("SELECT {SITE_COLS} FROM sites WHERE cert_sha256 = ?1"), [fp], site_of).optional()?)).await
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
            tx.commit()?;
            Ok(n > 0)
        })
        .await
    }
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

        assert!(s.remove_site("plant").await.unwrap());
        assert!(s.site_by_cert("a").await.unwrap().is_none());
        assert!(s.token("t2").await.unwrap().is_none(), "removing a site removes its tokens");
        assert!(!s.remove_site("plant").await.unwrap());
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
