//! The site's answer to the portal's outbox pull (`GET /v1/site/outbox`, over the link): a page
//! of each stream after the portal's cursors. The cursors are also the portal's
//! acknowledgement: it names a sequence number only once it committed everything through it,
//! so retention may then drop those records (`crate::state::outbox`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::events::AuditRecord;
use super::{Event, Site, SiteError};
use crate::state::outbox;
pub use crate::state::outbox::Stream;
use crate::state::repo;

/// Most records of one stream in one pull.
pub const MAX_OUTBOX_PAGE: usize = 5_000;
/// Longest a pull may wait for a first record.
pub const MAX_OUTBOX_WAIT: Duration = Duration::from_secs(30);

/// One record of a stream.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OutboxRecord {
    /// Its sequence number in the stream (an event's cursor, an audit record's id).
    pub seq: i64,
    /// When it was written (RFC 3339, UTC).
    pub time: String,
    /// The record as the site's own API shows it (an event, or an audit record).
    #[schema(value_type = Object)]
    pub record: serde_json::Value,
}

/// A page of one stream.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StreamPage {
    /// Records after the portal's cursor, oldest first.
    pub records: Vec<OutboxRecord>,
    /// The highest sequence number retention ever removed: a cursor below it missed records.
    pub pruned_through: i64,
    /// How many records the on-disk bound dropped before the portal acknowledged them, ever.
    pub lost: i64,
    /// The newest sequence number of the stream.
    pub latest: i64,
}

/// The answer of an outbox pull: one page per stream, keyed by stream name.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OutboxPage {
    /// `events` and `audit`.
    pub streams: BTreeMap<String, StreamPage>,
}

impl OutboxPage {
    fn is_empty(&self) -> bool {
        self.streams.values().all(|p| p.records.is_empty())
    }
}

fn page(c: &rusqlite::Connection, s: Stream, after: i64, limit: usize) -> Result<StreamPage, SiteError> {
    let records = match s {
        Stream::Events => repo::events_after(c, after, None, limit)?
            .into_iter()
            .map(|r| {
                let e = Event::from(r);
                OutboxRecord { seq: e.cursor, time: e.time.clone(), record: serde_json::to_value(&e).unwrap_or_default() }
            })
            .collect(),
        Stream::Audit => repo::audit_after(c, after, limit)?
            .into_iter()
            .map(|r| {
                let a = AuditRecord::from(r);
                OutboxRecord { seq: a.id, time: a.time.clone(), record: serde_json::to_value(&a).unwrap_or_default() }
            })
            .collect(),
    };
    Ok(StreamPage { records, pruned_through: outbox::pruned_through(c, s)?, lost: outbox::lost(c, s)?, latest: outbox::latest(c, s)? })
}

impl Site {
    /// Take `after` (the portal's cursor per stream) as its acknowledgement, then answer up to
    /// `limit` records of every stream after it.
    pub fn outbox_page(&self, after: &[(Stream, i64)], limit: usize) -> Result<OutboxPage, SiteError> {
        // A cursor past the newest record acknowledges no more than exists.
        let acks = self.read(|c| {
            let mut v = Vec::new();
            for &(s, seq) in after {
                let seq = seq.min(outbox::latest(c, s)?);
                if seq > outbox::acked(c, s)? {
                    v.push((s, seq));
                }
            }
            Ok(v)
        })?;
        if !acks.is_empty() {
            self.write(|tx, _| {
                for &(s, seq) in &acks {
                    outbox::set_acked(tx, s, seq)?;
                }
                Ok(())
            })?;
        }
        self.read(|c| {
            // One snapshot, so a prune between the statements cannot count this page's records
            // as lost.
            let tx = c.unchecked_transaction().map_err(crate::state::StateError::from)?;
            let mut streams = BTreeMap::new();
            for &(s, seq) in after {
                streams.insert(s.name().to_string(), page(&tx, s, seq, limit)?);
            }
            Ok(OutboxPage { streams })
        })
    }

    /// [`Site::outbox_page`], waiting up to `wait` for a first record when there is none yet
    /// (a long poll: the portal learns of new records at once without polling).
    pub async fn outbox_pull(&self, after: Vec<(Stream, i64)>, limit: usize, wait: Duration) -> Result<OutboxPage, SiteError> {
        let mut changed = self.subscribe_outbox();
        let first = {
            let after = after.clone();
            self.run(move |s| s.outbox_page(&after, limit)).await?
        };
        if wait.is_zero() || !first.is_empty() {
            return Ok(first);
        }
        if tokio::time::timeout(wait.min(MAX_OUTBOX_WAIT), changed.changed()).await.is_err() {
            return Ok(first);
        }
        self.run(move |s| s.outbox_page(&after, limit)).await
    }
}
