//! The portal's store in PostgreSQL (`tokio-postgres`), for fleets: the same tables and the
//! same transactions as [`super::store::SqliteStore`], behind [`PortalStore`].
//!
//! One connection, used by one operation at a time (a transaction needs the connection to
//! itself), made again on the next operation after it broke: a restart of PostgreSQL costs the
//! operations that were in flight (answered 503 `store_unavailable`, or retried by the outbox
//! puller), never the portal. Records of a site's streams go in with one multi-row statement
//! per pull (`unnest`), so ingest costs a round trip per page, not per record. A server that
//! stops answering fails the operation in flight within 20 s (`TCP_USER_TIMEOUT`, keepalives)
//! and connecting gives up after 10 s. The connection is not encrypted (`NoTls`): run the
//! database on the portal's host or a trusted network until TLS to it is added.

use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::{Client, NoTls, Row};

use super::store::{CertUpdate, PortalEvent, PortalStore, SiteRecord, StoreError, StreamBatch, StreamRecord, StreamState, TokenRecord, plan_ingest};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS join_tokens (
    id TEXT PRIMARY KEY, site TEXT NOT NULL, secret_sha256 TEXT NOT NULL, created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL, used_at BIGINT, used_by_key TEXT);
CREATE TABLE IF NOT EXISTS sites (
    name TEXT PRIMARY KEY, joined_at BIGINT NOT NULL, cert_pem TEXT NOT NULL, cert_sha256 TEXT NOT NULL UNIQUE,
    cert_serial TEXT NOT NULL, cert_not_after BIGINT NOT NULL, key_sha256 TEXT NOT NULL, prev_cert_sha256 TEXT);
CREATE TABLE IF NOT EXISTS site_streams (
    site TEXT NOT NULL, stream TEXT NOT NULL, cursor BIGINT NOT NULL, latest BIGINT NOT NULL, lost BIGINT NOT NULL,
    PRIMARY KEY (site, stream));
CREATE TABLE IF NOT EXISTS site_records (
    site TEXT NOT NULL, stream TEXT NOT NULL, seq BIGINT NOT NULL, time TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (site, stream, seq));
CREATE TABLE IF NOT EXISTS site_gaps (
    site TEXT NOT NULL, stream TEXT NOT NULL, after_seq BIGINT NOT NULL, through_seq BIGINT NOT NULL,
    PRIMARY KEY (site, stream, after_seq));
CREATE TABLE IF NOT EXISTS site_inventory (site TEXT PRIMARY KEY, seen_at BIGINT NOT NULL, body TEXT);
CREATE TABLE IF NOT EXISTS portal_events (
    cursor BIGSERIAL PRIMARY KEY, time TEXT NOT NULL, site TEXT NOT NULL, type TEXT NOT NULL, message TEXT NOT NULL);
";

const SITE_COLS: &str = "name, joined_at, cert_pem, cert_sha256, cert_serial, cert_not_after, key_sha256, prev_cert_sha256";

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        // The server's own message, when there is one, says more than the error kind.
        let detail = e.as_db_error().map(|d| format!(": {}", d.message())).unwrap_or_default();
        StoreError::Db(format!("{e}{detail}"))
    }
}

/// The PostgreSQL store.
pub struct PgStore {
    url: String,
    client: Mutex<Option<Client>>,
}

fn site_of(r: &Row) -> Result<SiteRecord, StoreError> {
    Ok(SiteRecord {
        name: r.try_get(0)?,
        joined_at: r.try_get(1)?,
        cert_pem: r.try_get(2)?,
        cert_sha256: r.try_get(3)?,
        cert_serial: r.try_get(4)?,
        cert_not_after: r.try_get(5)?,
        key_sha256: r.try_get(6)?,
        prev_cert_sha256: r.try_get(7)?,
    })
}

fn token_of(r: &Row) -> Result<TokenRecord, StoreError> {
    Ok(TokenRecord {
        id: r.try_get(0)?,
        site: r.try_get(1)?,
        secret_sha256: r.try_get(2)?,
        created_at: r.try_get(3)?,
        expires_at: r.try_get(4)?,
        used_at: r.try_get(5)?,
        used_by_key: r.try_get(6)?,
    })
}

fn state_of(r: &Row) -> Result<StreamState, StoreError> {
    Ok(StreamState { site: r.try_get(0)?, stream: r.try_get(1)?, cursor: r.try_get(2)?, latest: r.try_get(3)?, lost: r.try_get(4)?, missing: r.try_get(5)? })
}

const STATES: &str = "SELECT s.site, s.stream, s.cursor, s.latest, s.lost,
    (SELECT coalesce(sum(g.through_seq - g.after_seq), 0)::BIGINT FROM site_gaps g WHERE g.site = s.site AND g.stream = s.stream)
    FROM site_streams s WHERE $1::TEXT IS NULL OR s.site = $1 ORDER BY s.site, s.stream";

impl PgStore {
    /// Connect to `url` (`postgres://USER[:PASSWORD]@HOST:PORT/DB`, or key=value pairs) and make
    /// the tables. Errors: [`StoreError::Db`] when the server cannot be reached.
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        let s = PgStore { url: url.to_string(), client: Mutex::new(None) };
        let mut g = s.conn().await?;
        if let Some(c) = g.as_mut() {
            c.batch_execute(SCHEMA).await?;
        }
        drop(g);
        Ok(s)
    }

    /// The connection, made when there is none or the last one closed.
    async fn conn(&self) -> Result<MutexGuard<'_, Option<Client>>, StoreError> {
        let mut g = self.client.lock().await;
        if g.as_ref().is_none_or(|c| c.is_closed()) {
            *g = None;
            let mut cfg: tokio_postgres::Config = self.url.parse()?;
            // A server that stops answering fails its operations within half a minute (the
            // next one connects again) instead of holding the store's lock.
            cfg.connect_timeout(std::time::Duration::from_secs(10))
                .keepalives(true)
                .keepalives_idle(std::time::Duration::from_secs(10))
                .tcp_user_timeout(std::time::Duration::from_secs(20));
            let (client, connection) = cfg.connect(NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "the portal's PostgreSQL connection ended");
                }
            });
            *g = Some(client);
        }
        Ok(g)
    }
}

/// The client in a guard [`PgStore::conn`] filled.
fn client<'a>(g: &'a mut MutexGuard<'_, Option<Client>>) -> Result<&'a mut Client, StoreError> {
    g.as_mut().ok_or_else(|| StoreError::Db("no PostgreSQL connection".into()))
}

#[async_trait::async_trait]
impl PortalStore for PgStore {
    async fn add_token(&self, t: TokenRecord) -> Result<(), StoreError> {
        let mut g = self.conn().await?;
        client(&mut g)?
            .execute(
                "INSERT INTO join_tokens (id, site, secret_sha256, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
                &[&t.id, &t.site, &t.secret_sha256, &t.created_at, &t.expires_at],
            )
            .await?;
        Ok(())
    }

    async fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        let mut g = self.conn().await?;
        let q = "SELECT id, site, secret_sha256, created_at, expires_at, used_at, used_by_key FROM join_tokens WHERE id = $1";
        client(&mut g)?.query_opt(q, &[&id]).await?.as_ref().map(token_of).transpose()
    }

    async fn register(&self, token_id: &str, used_at: i64, s: SiteRecord) -> Result<(), StoreError> {
        let mut g = self.conn().await?;
        let tx = client(&mut g)?.transaction().await?;
        let taken = tx
            .execute("UPDATE join_tokens SET used_at = $2, used_by_key = $3 WHERE id = $1 AND used_at IS NULL", &[&token_id, &used_at, &s.key_sha256])
            .await?;
        if taken != 1 {
            return Err(StoreError::TokenUsed);
        }
        let q = format!("INSERT INTO sites ({SITE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL) ON CONFLICT (name) DO NOTHING");
        let n = tx.execute(&q, &[&s.name, &s.joined_at, &s.cert_pem, &s.cert_sha256, &s.cert_serial, &s.cert_not_after, &s.key_sha256]).await?;
        if n != 1 {
            return Err(StoreError::SiteExists(s.name));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn site(&self, name: &str) -> Result<Option<SiteRecord>, StoreError> {
        let mut g = self.conn().await?;
        client(&mut g)?.query_opt(&format!("SELECT {SITE_COLS} FROM sites WHERE name = $1"), &[&name]).await?.as_ref().map(site_of).transpose()
    }

    async fn site_by_cert(&self, fp: &str) -> Result<Option<SiteRecord>, StoreError> {
        let mut g = self.conn().await?;
        let q = format!("SELECT {SITE_COLS} FROM sites WHERE cert_sha256 = $1 OR prev_cert_sha256 = $1 LIMIT 1");
        client(&mut g)?.query_opt(&q, &[&fp]).await?.as_ref().map(site_of).transpose()
    }

    async fn renew_cert(&self, name: &str, current: &str, u: CertUpdate) -> Result<bool, StoreError> {
        let mut g = self.conn().await?;
        let n = client(&mut g)?
            .execute(
                "UPDATE sites SET prev_cert_sha256 = cert_sha256, cert_pem = $3, cert_sha256 = $4, cert_serial = $5, cert_not_after = $6
                 WHERE name = $1 AND cert_sha256 = $2",
                &[&name, &current, &u.cert_pem, &u.cert_sha256, &u.cert_serial, &u.cert_not_after],
            )
            .await?;
        Ok(n == 1)
    }

    async fn sites(&self) -> Result<Vec<SiteRecord>, StoreError> {
        let mut g = self.conn().await?;
        client(&mut g)?.query(&format!("SELECT {SITE_COLS} FROM sites ORDER BY name"), &[]).await?.iter().map(site_of).collect()
    }

    async fn pending(&self, now: i64) -> Result<Vec<(String, i64)>, StoreError> {
        let mut g = self.conn().await?;
        let q = "SELECT site, MAX(expires_at) FROM join_tokens WHERE used_at IS NULL AND expires_at > $1
                 AND site NOT IN (SELECT name FROM sites) GROUP BY site ORDER BY site";
        client(&mut g)?.query(q, &[&now]).await?.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    async fn remove_site(&self, name: &str) -> Result<bool, StoreError> {
        let mut g = self.conn().await?;
        let tx = client(&mut g)?.transaction().await?;
        let n = tx.execute("DELETE FROM sites WHERE name = $1", &[&name]).await? + tx.execute("DELETE FROM join_tokens WHERE site = $1", &[&name]).await?;
        for table in ["site_streams", "site_records", "site_gaps", "site_inventory"] {
            tx.execute(&format!("DELETE FROM {table} WHERE site = $1"), &[&name]).await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn stream_states(&self, site: Option<&str>) -> Result<Vec<StreamState>, StoreError> {
        let mut g = self.conn().await?;
        client(&mut g)?.query(STATES, &[&site]).await?.iter().map(state_of).collect()
    }

    async fn ingest(&self, site: &str, batches: Vec<StreamBatch>) -> Result<Vec<StreamState>, StoreError> {
        let mut g = self.conn().await?;
        let tx = client(&mut g)?.transaction().await?;
        let joined = tx.query_opt("SELECT 1 FROM sites WHERE name = $1 FOR SHARE", &[&site]).await?.is_some();
        for b in batches.iter().filter(|_| joined) {
            let held: Option<i64> =
                match tx.query_opt("SELECT cursor FROM site_streams WHERE site = $1 AND stream = $2 FOR UPDATE", &[&site, &b.stream]).await? {
                    Some(r) => Some(r.try_get(0)?),
                    None => None,
                };
            let plan = plan_ingest(held, b);
            if let Some((after, through)) = plan.gap {
                tx.execute(
                    "INSERT INTO site_gaps (site, stream, after_seq, through_seq) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    &[&site, &b.stream, &after, &through],
                )
                .await?;
            }
            let new: Vec<&StreamRecord> = b.records.iter().filter(|r| r.seq > plan.start).collect();
            let seqs: Vec<i64> = new.iter().map(|r| r.seq).collect();
            let times: Vec<&str> = new.iter().map(|r| r.time.as_str()).collect();
            let bodies: Vec<&str> = new.iter().map(|r| r.body.as_str()).collect();
            tx.execute(
                "INSERT INTO site_records (site, stream, seq, time, body)
                 SELECT $1, $2, u.seq, u.time, u.body FROM unnest($3::BIGINT[], $4::TEXT[], $5::TEXT[]) AS u(seq, time, body)
                 ON CONFLICT DO NOTHING",
                &[&site, &b.stream, &seqs, &times, &bodies],
            )
            .await?;
            tx.execute(
                "INSERT INTO site_streams (site, stream, cursor, latest, lost) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (site, stream) DO UPDATE SET cursor = GREATEST(site_streams.cursor, excluded.cursor), latest = excluded.latest, lost = excluded.lost",
                &[&site, &b.stream, &plan.cursor, &b.latest, &b.lost],
            )
            .await?;
        }
        let site_arg: Option<&str> = Some(site);
        let out = tx.query(STATES, &[&site_arg]).await?.iter().map(state_of).collect::<Result<Vec<_>, _>>()?;
        tx.commit().await?;
        Ok(out)
    }

    async fn records(&self, site: &str, stream: &str, after: i64, limit: usize) -> Result<Vec<StreamRecord>, StoreError> {
        let mut g = self.conn().await?;
        let q = "SELECT seq, time, body FROM site_records WHERE site = $1 AND stream = $2 AND seq > $3 ORDER BY seq LIMIT $4";
        let rows = client(&mut g)?.query(q, &[&site, &stream, &after, &(limit as i64)]).await?;
        rows.iter().map(|r| Ok(StreamRecord { seq: r.try_get(0)?, time: r.try_get(1)?, body: r.try_get(2)? })).collect()
    }

    async fn put_inventory(&self, site: &str, seen_at: i64, inventory: Option<String>) -> Result<(), StoreError> {
        let mut g = self.conn().await?;
        client(&mut g)?
            .execute(
                "INSERT INTO site_inventory (site, seen_at, body) SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM sites WHERE name = $1)
                 ON CONFLICT (site) DO UPDATE SET seen_at = excluded.seen_at, body = coalesce(excluded.body, site_inventory.body)",
                &[&site, &seen_at, &inventory],
            )
            .await?;
        Ok(())
    }

    async fn inventories(&self) -> Result<Vec<(String, i64, Option<String>)>, StoreError> {
        let mut g = self.conn().await?;
        let rows = client(&mut g)?.query("SELECT site, seen_at, body FROM site_inventory ORDER BY site", &[]).await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))).collect()
    }

    async fn add_event(&self, site: &str, event_type: &str, message: &str) -> Result<(), StoreError> {
        let mut g = self.conn().await?;
        let time = chrono::Utc::now().to_rfc3339();
        client(&mut g)?
            .execute("INSERT INTO portal_events (time, site, type, message) VALUES ($1, $2, $3, $4)", &[&time, &site, &event_type, &message])
            .await?;
        Ok(())
    }

    async fn events(&self, after: i64, limit: usize) -> Result<Vec<PortalEvent>, StoreError> {
        let mut g = self.conn().await?;
        let q = "SELECT cursor, time, site, type, message FROM portal_events WHERE cursor > $1 ORDER BY cursor LIMIT $2";
        let rows = client(&mut g)?.query(q, &[&after, &(limit as i64)]).await?;
        rows.iter()
            .map(|r| Ok(PortalEvent { cursor: r.try_get(0)?, time: r.try_get(1)?, site: r.try_get(2)?, event_type: r.try_get(3)?, message: r.try_get(4)? }))
            .collect()
    }

    async fn gaps(&self, site: &str, stream: &str) -> Result<Vec<(i64, i64)>, StoreError> {
        let mut g = self.conn().await?;
        let rows =
            client(&mut g)?.query("SELECT after_seq, through_seq FROM site_gaps WHERE site = $1 AND stream = $2 ORDER BY after_seq", &[&site, &stream]).await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }
}
