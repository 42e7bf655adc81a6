//! Objects in buckets: the S3 data model over the blob engine ([`crate::object`]) and the
//! metadata tables ([`crate::state::objects`]).
//!
//! Every write follows one rule: data first, then one SQLite transaction that makes it visible.
//! A PUT streams into a new blob (temp file, fsync, rename); its row is committed only after the
//! blob is complete and its checksums verified, replacing the old row atomically; the old blobs
//! are removed after the commit. Completing a multipart upload is a single transaction that
//! turns the chosen parts' blobs into the object's, so it copies no data and is all-or-nothing.
//! A crash leaves at worst unreferenced blobs, which [`Site::check_objects`] (`object_check`) sweeps at start-up.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::buckets::{BucketRef, OBJECT_MIB_QUOTA, Sealer};
use super::failpoint::failpoint;
use super::{Site, SiteError, model, projects};
use crate::object::{BlobStore, ObjectError};
use crate::state::objects::{self as orepo, BlobRef, PartRow, UploadRow};

/// The value types of the object store that the API reads and builds: the stored row of an object
/// (`state`), and the checksums a write verifies and reports (`object`). The API names them from here.
pub use crate::object::{Algorithms, Checksums, Written};
pub use crate::state::objects::ObjectRow;

/// An object's blob files, opened in order, each `(file, bytes)`: held open, so a concurrent
/// overwrite cannot take the bytes away mid-read.
pub struct ObjectBody(Vec<(tokio::fs::File, u64)>);

impl ObjectBody {
    /// The size of each blob, bytes, in order (multipart objects have one per part).
    pub fn part_sizes(&self) -> Vec<u64> {
        self.0.iter().map(|f| f.1).collect()
    }

    /// Stream `len` bytes from byte `offset` of the object.
    pub fn stream(self, offset: u64, len: u64) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + Sync + 'static {
        crate::object::read_stream(self.0, offset, len)
    }
}

/// Longest key, bytes (S3's limit).
pub const MAX_KEY_BYTES: usize = 1024;
/// Smallest part other than the last, bytes (S3's limit: 5 MiB).
pub const MIN_PART_BYTES: i64 = 5 << 20;
/// Highest part number.
pub const MAX_PARTS: i64 = 10_000;
/// Most user metadata, bytes of names and values together (S3's limit: 2 KiB).
pub const MAX_USER_META_BYTES: usize = 2048;

/// The object store's open parts.
pub struct ObjectState {
    /// Blob files.
    pub blobs: BlobStore,
    /// Access key sealing.
    pub sealer: Sealer,
}

/// Stored headers and metadata of an object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ObjectMeta {
    /// `x-amz-meta-*` pairs, names lowercased.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    /// Checksums of the whole object (single-part objects only).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub checksums: Checksums,
}

/// Errors of object operations, each one S3 error code.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the bucket {0} does not exist")]
    NoSuchBucket(String),
    #[error("the key does not exist")]
    NoSuchKey,
    #[error("the upload does not exist, or was completed or aborted")]
    NoSuchUpload,
    #[error("{0}")]
    AccessDenied(String),
    #[error("{0}")]
    InvalidPart(String),
    #[error("the parts must be listed in ascending order of part number")]
    InvalidPartOrder,
    #[error("part {0} is smaller than the 5 MiB minimum for a part other than the last")]
    EntityTooSmall(i64),
    #[error("the object is larger than {0} bytes")]
    EntityTooLarge(u64),
    #[error("{0}")]
    BadDigest(String),
    #[error("a precondition failed")]
    PreconditionFailed,
    #[error("not modified")]
    NotModified,
    #[error("the range is not satisfiable for an object of {0} bytes")]
    InvalidRange(u64),
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("the body ended early or could not be read: {0}")]
    IncompleteBody(String),
    #[error(transparent)]
    Site(SiteError),
    #[error(transparent)]
    Object(ObjectError),
}

impl From<SiteError> for StoreError {
    fn from(e: SiteError) -> Self {
        match e {
            SiteError::State(e) => e.into(),
            e => StoreError::Site(e),
        }
    }
}

impl From<ObjectError> for StoreError {
    fn from(e: ObjectError) -> Self {
        match e {
            ObjectError::Body(m) => StoreError::IncompleteBody(m),
            ObjectError::TooLarge { limit } => StoreError::EntityTooLarge(limit),
            other => StoreError::Object(other),
        }
    }
}

impl From<crate::state::StateError> for StoreError {
    fn from(e: crate::state::StateError) -> Self {
        match e {
            // A write whose bucket row was deleted while it was in flight.
            crate::state::StateError::Referenced(_) => StoreError::NoSuchBucket("(deleted while the request was in flight)".into()),
            e => StoreError::Site(e.into()),
        }
    }
}

impl From<super::buckets::BucketError> for StoreError {
    fn from(e: super::buckets::BucketError) -> Self {
        use super::buckets::BucketError as B;
        match e {
            B::NoSuchBucket(n) => StoreError::NoSuchBucket(n),
            B::AccessDenied(m) => StoreError::AccessDenied(m),
            B::Site(s) => StoreError::Site(s),
        }
    }
}

/// Conditions on a write (`If-Match`, `If-None-Match: *`).
#[derive(Debug, Clone, Default)]
pub struct WriteCond {
    /// Only if the current ETag is this one (no quotes).
    pub if_match: Option<String>,
    /// Only if no object exists at the key.
    pub if_none_match_any: bool,
}

/// One page of a listing.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Objects, in key order.
    pub objects: Vec<ObjectRow>,
    /// Common prefixes (each ending with the delimiter), in order.
    pub prefixes: Vec<String>,
    /// More follow; continue after [`Listing::next`].
    pub truncated: bool,
    /// The last key or prefix of this page, when truncated.
    pub next: Option<String>,
}

fn meta_json(m: &ObjectMeta) -> Result<String, SiteError> {
    Ok(serde_json::to_string(m)?)
}

/// Parse a row's meta text (an empty meta on a malformed value, which only a bug could write).
pub fn meta_of(row: &ObjectRow) -> ObjectMeta {
    serde_json::from_str(&row.meta).unwrap_or_default()
}

/// The smallest byte string greater than every string that starts with `p` (`None` for "").
fn prefix_end(p: &[u8]) -> Option<Vec<u8>> {
    let mut v = p.to_vec();
    while let Some(last) = v.pop() {
        if last < 0xff {
            v.push(last + 1);
            return Some(v);
        }
    }
    None
}

/// Validate an object key.
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(StoreError::InvalidArgument(format!("a key has 1 to {MAX_KEY_BYTES} bytes")));
    }
    Ok(())
}

fn check_quota(c: &rusqlite::Connection, b: &BucketRef, add: i64) -> Result<(), StoreError> {
    if add <= 0 {
        return Ok(());
    }
    if let Some(q) = b.spec.quota_mib {
        let (bytes, _) = orepo::bucket_usage(c, &b.id)?;
        let parts = orepo::bucket_part_bytes(c, &b.id)?;
        if bytes + parts + add > (q as i64).saturating_mul(1 << 20) {
            return Err(StoreError::QuotaExceeded(format!("bucket {} is limited to {q} MiB", b.name)));
        }
    }
    if let Some(q) = projects::quota(c, &b.project, OBJECT_MIB_QUOTA)? {
        let used = orepo::project_bytes(c, &b.project.id)?;
        if used + add > (q as i64).saturating_mul(1 << 20) {
            return Err(StoreError::QuotaExceeded(format!("project {} is limited to {q} MiB of objects ({OBJECT_MIB_QUOTA})", b.project.name)));
        }
    }
    Ok(())
}

fn check_cond(cur: Option<&ObjectRow>, cond: &WriteCond) -> Result<(), StoreError> {
    if cond.if_none_match_any && cur.is_some() {
        return Err(StoreError::PreconditionFailed);
    }
    if let Some(want) = &cond.if_match
        && cur.is_none_or(|o| &o.etag != want && want != "*")
    {
        return Err(StoreError::PreconditionFailed);
    }
    Ok(())
}

/// The multipart ETag: MD5 of the parts' binary MD5s, `-<count>` (the convention S3 clients check).
pub fn multipart_etag(part_etags: &[String]) -> String {
    use s3s::crypto::Checksum as _;
    let mut h = s3s::crypto::Md5::new();
    for e in part_etags {
        if let Ok(b) = hex::decode(e) {
            h.update(&b);
        }
    }
    format!("{}-{}", hex::encode(h.finalize()), part_etags.len())
}

impl Site {
    fn blobs(&self) -> &BlobStore {
        &self.objects().blobs
    }

    /// Bytes the bucket may still take under its own and its project's quotas (`None`:
    /// unlimited), counting the object at `replacing` as freed. Checked before a body is
    /// received, so a write past a quota is refused before it reaches the disk; the commit
    /// checks again exactly.
    pub async fn quota_room(&self, b: &BucketRef, replacing: Option<&str>) -> Result<Option<u64>, StoreError> {
        let (bc, rk) = (b.clone(), replacing.map(str::to_string));
        Ok(self
            .run(move |s| {
                s.read(|c| {
                    let mut room: Option<i64> = None;
                    if let Some(q) = bc.spec.quota_mib {
                        let (bytes, _) = orepo::bucket_usage(c, &bc.id)?;
                        let parts = orepo::bucket_part_bytes(c, &bc.id)?;
                        room = Some((q as i64).saturating_mul(1 << 20) - bytes - parts);
                    }
                    if let Some(q) = projects::quota(c, &bc.project, OBJECT_MIB_QUOTA)? {
                        let left = (q as i64).saturating_mul(1 << 20) - orepo::project_bytes(c, &bc.project.id)?;
                        room = Some(room.map_or(left, |r| r.min(left)));
                    }
                    let freed = match &rk {
                        Some(k) => orepo::get_object(c, &bc.id, k)?.map_or(0, |o| o.size),
                        None => 0,
                    };
                    Ok(room.map(|r| (r + freed).max(0) as u64))
                })
            })
            .await?)
    }

    /// Stream a body into a new, unreferenced blob (see [`Site::commit_object`]), refusing more
    /// than `[s3] max_object_bytes`, or than `room` (quota) with `QuotaExceeded`.
    pub async fn write_blob<S, E>(&self, body: S, algorithms: Algorithms, room: Option<u64>) -> Result<Written, StoreError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let max = self.config().s3.max_object_bytes;
        let limit = room.map_or(max, |r| r.min(max));
        match self.blobs().write(body, algorithms, limit).await {
            Err(ObjectError::TooLarge { .. }) if limit < max => {
                Err(StoreError::QuotaExceeded("the object would exceed the bucket's or the project's quota".into()))
            }
            other => Ok(other?),
        }
    }

    /// Remove a blob that will not be committed (a failed checksum, say).
    pub async fn discard_blob(&self, w: &Written) {
        self.blobs().remove(std::slice::from_ref(&w.id)).await;
    }

    /// Make blob `w` the object at `key`, atomically replacing any old one. On error the blob is
    /// removed. Errors: quota, precondition.
    pub async fn commit_object(
        &self,
        b: &BucketRef,
        key: &str,
        w: Written,
        content_type: Option<String>,
        meta: ObjectMeta,
        cond: WriteCond,
    ) -> Result<ObjectRow, StoreError> {
        let row = ObjectRow {
            bucket: b.id.clone(),
            key: key.to_string(),
            size: w.size as i64,
            etag: hex::encode(w.md5),
            content_type,
            meta: meta_json(&ObjectMeta { checksums: w.checksums.clone(), ..meta })?,
            parts: 0,
            modified_ms: model::now_ms(),
        };
        let blobs = vec![BlobRef { blob: w.id.clone(), size: w.size as i64 }];
        self.commit_row(b, row, blobs, cond, std::slice::from_ref(&w.id)).await
    }

    async fn commit_row(&self, b: &BucketRef, row: ObjectRow, blobs: Vec<BlobRef>, cond: WriteCond, fresh: &[String]) -> Result<ObjectRow, StoreError> {
        let (bc, r2) = (b.clone(), row.clone());
        let out = self
            .run(move |s| {
                s.write(|tx, _| {
                    let cur = orepo::get_object(tx, &r2.bucket, &r2.key)?;
                    if let Err(e) = check_cond(cur.as_ref(), &cond) {
                        return Ok(Err(e));
                    }
                    if let Err(e) = check_quota(tx, &bc, r2.size - cur.as_ref().map_or(0, |o| o.size)) {
                        return Ok(Err(e));
                    }
                    let old = orepo::put_object(tx, &r2, &blobs)?;
                    failpoint("put_commit");
                    Ok(Ok(old))
                })
            })
            .await;
        let store = self.blobs();
        match out {
            Ok(Ok(old)) => {
                store.remove(&old.into_iter().map(|b| b.blob).collect::<Vec<_>>()).await;
                Ok(row)
            }
            Ok(Err(e)) => {
                store.remove(fresh).await;
                Err(e)
            }
            Err(e) => {
                store.remove(fresh).await;
                Err(e.into())
            }
        }
    }

    /// The object's row, or `NoSuchKey`.
    pub async fn head_object(&self, b: &BucketRef, key: &str) -> Result<ObjectRow, StoreError> {
        let (id, k) = (b.id.clone(), key.to_string());
        self.run(move |s| s.read(|c| Ok(orepo::get_object(c, &id, &k)?))).await?.ok_or(StoreError::NoSuchKey)
    }

    /// The object's row and its opened blob files.
    pub async fn open_object(&self, b: &BucketRef, key: &str) -> Result<(ObjectRow, ObjectBody), StoreError> {
        for _ in 0..3 {
            let (id, k) = (b.id.clone(), key.to_string());
            let (row, blobs) = self
                .run(move |s| {
                    s.read(|c| {
                        // One read transaction: the row and its blob list from the same snapshot.
                        let tx = c.unchecked_transaction().map_err(crate::state::StateError::from)?;
                        let Some(row) = orepo::get_object(&tx, &id, &k)? else { return Ok(None) };
                        let blobs = orepo::object_blobs(&tx, &id, &k)?;
                        Ok(Some((row, blobs)))
                    })
                })
                .await?
                .ok_or(StoreError::NoSuchKey)?;
            if blobs.iter().map(|b| b.size).sum::<i64>() != row.size {
                return Err(StoreError::Object(ObjectError::Body(format!("object {} does not add up to its size; run the object store check", row.key))));
            }
            let list: Vec<(String, u64)> = blobs.into_iter().map(|b| (b.blob, b.size as u64)).collect();
            match self.blobs().open_all(&list).await {
                Ok(files) => return Ok((row, ObjectBody(files))),
                // Replaced between the read and the open: read the new row.
                Err(ObjectError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Object(ObjectError::Body("the object kept changing while it was opened".into())))
    }

    /// Delete the object at `key` (absent is not an error, as in S3). Returns whether it existed.
    pub async fn delete_object(&self, b: &BucketRef, key: &str, if_match: Option<String>) -> Result<bool, StoreError> {
        let (id, k) = (b.id.clone(), key.to_string());
        let out = self
            .run(move |s| {
                s.write(|tx, _| {
                    if let Some(want) = &if_match {
                        let cur = orepo::get_object(tx, &id, &k)?;
                        if cur.is_none_or(|o| &o.etag != want && want != "*") {
                            return Ok(Err(StoreError::PreconditionFailed));
                        }
                    }
                    Ok(Ok(orepo::delete_object(tx, &id, &k)?))
                })
            })
            .await??;
        match out {
            Some(blobs) => {
                self.blobs().remove(&blobs.into_iter().map(|b| b.blob).collect::<Vec<_>>()).await;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// List objects with `prefix`, grouping keys by `delimiter`, after `after` (a key or a
    /// common prefix from an earlier page), at most `max` entries (objects plus prefixes).
    pub async fn list_objects(&self, b: &BucketRef, prefix: &str, delimiter: Option<&str>, after: Option<&str>, max: usize) -> Result<Listing, StoreError> {
        let (id, prefix, delim, after) = (b.id.clone(), prefix.to_string(), delimiter.filter(|d| !d.is_empty()).map(str::to_string), after.map(str::to_string));
        Ok(self.run(move |s| s.read(|c| list_in(c, &id, &prefix, delim.as_deref(), after.as_deref(), max))).await?)
    }

    /// Server-side copy: a new blob with the source's bytes (so either may change later), and the
    /// source's metadata unless `replace` gives new metadata.
    pub async fn copy_object(
        &self,
        src: &BucketRef,
        src_key: &str,
        dst: &BucketRef,
        dst_key: &str,
        replace: Option<(Option<String>, ObjectMeta)>,
        src_if_match: Option<String>,
    ) -> Result<ObjectRow, StoreError> {
        let (row, files) = self.open_object(src, src_key).await?;
        if let Some(want) = &src_if_match
            && &row.etag != want
        {
            return Err(StoreError::PreconditionFailed);
        }
        let old_meta = meta_of(&row);
        let limit = self.config().s3.max_object_bytes;
        if row.size as u64 > limit {
            return Err(StoreError::EntityTooLarge(limit));
        }
        let stream = Box::pin(files.stream(0, row.size as u64));
        let w = self.blobs().write(stream, Algorithms::default(), limit).await?;
        if w.size != row.size as u64 {
            self.discard_blob(&w).await;
            return Err(StoreError::Object(ObjectError::Body("the source changed while it was copied".into())));
        }
        // The bytes are the source's, so are its whole-object checksums (single-part only).
        let sums = if row.parts == 0 { old_meta.checksums.clone() } else { Checksums::default() };
        let (ct, meta) = match replace {
            Some((ct, m)) => (ct, ObjectMeta { checksums: sums, ..m }),
            None => (row.content_type.clone(), ObjectMeta { checksums: sums, ..old_meta }),
        };
        let etag = hex::encode(w.md5);
        let new = ObjectRow {
            bucket: dst.id.clone(),
            key: dst_key.to_string(),
            size: w.size as i64,
            etag,
            content_type: ct,
            meta: meta_json(&meta)?,
            parts: 0,
            modified_ms: model::now_ms(),
        };
        let blobs = vec![BlobRef { blob: w.id.clone(), size: w.size as i64 }];
        self.commit_row(dst, new, blobs, WriteCond::default(), std::slice::from_ref(&w.id)).await
    }

    /// Start a multipart upload; returns its id.
    pub async fn create_upload(&self, b: &BucketRef, key: &str, content_type: Option<String>, meta: ObjectMeta) -> Result<String, StoreError> {
        let u = UploadRow {
            id: ulid::Ulid::new().to_string(),
            bucket: b.id.clone(),
            key: key.to_string(),
            content_type,
            meta: meta_json(&meta)?,
            initiated_ms: model::now_ms(),
        };
        let id = u.id.clone();
        self.run(move |s| s.write(|tx, _| Ok(orepo::insert_upload(tx, &u)?))).await?;
        Ok(id)
    }

    /// The upload `id` of `key`, or `NoSuchUpload`.
    pub async fn get_upload(&self, b: &BucketRef, key: &str, id: &str) -> Result<UploadRow, StoreError> {
        let (bid, uid) = (b.id.clone(), id.to_string());
        let u = self.run(move |s| s.read(|c| Ok(orepo::get_upload(c, &bid, &uid)?))).await?;
        u.filter(|u| u.key == key).ok_or(StoreError::NoSuchUpload)
    }

    /// Record blob `w` as part `number` of an upload (replacing an earlier upload of that part).
    pub async fn commit_part(&self, b: &BucketRef, key: &str, upload: &str, number: i64, w: &Written) -> Result<String, StoreError> {
        if !(1..=MAX_PARTS).contains(&number) {
            self.discard_blob(w).await;
            return Err(StoreError::InvalidArgument(format!("part numbers run from 1 to {MAX_PARTS}")));
        }
        let etag = hex::encode(w.md5);
        let part = PartRow {
            number,
            blob: w.id.clone(),
            size: w.size as i64,
            etag: etag.clone(),
            checksums: serde_json::to_string(&w.checksums).map_err(SiteError::from)?,
            modified_ms: model::now_ms(),
        };
        let (bc, k, uid) = (b.clone(), key.to_string(), upload.to_string());
        let out = self
            .run(move |s| {
                s.write(|tx, _| {
                    if orepo::get_upload(tx, &bc.id, &uid)?.is_none_or(|u| u.key != k) {
                        return Ok(Err(StoreError::NoSuchUpload));
                    }
                    let old: i64 = orepo::list_parts(tx, &uid, part.number - 1, 1)?.into_iter().filter(|p| p.number == part.number).map(|p| p.size).sum();
                    if let Err(e) = check_quota(tx, &bc, part.size - old) {
                        return Ok(Err(e));
                    }
                    Ok(Ok(orepo::put_part(tx, &uid, &part)?))
                })
            })
            .await;
        match out {
            Ok(Ok(old)) => {
                self.blobs().remove(&old.into_iter().collect::<Vec<_>>()).await;
                Ok(etag)
            }
            Ok(Err(e)) => {
                self.discard_blob(w).await;
                Err(e)
            }
            Err(e) => {
                self.discard_blob(w).await;
                Err(e.into())
            }
        }
    }

    /// Complete an upload from `parts` (`(number, etag)`, ascending): one transaction makes the
    /// object; parts not named are dropped. Errors: `InvalidPartOrder`, `InvalidPart`,
    /// `EntityTooSmall`, `NoSuchUpload`, precondition, quota.
    pub async fn complete_upload(&self, b: &BucketRef, key: &str, upload: &str, parts: Vec<(i64, String)>, cond: WriteCond) -> Result<ObjectRow, StoreError> {
        if parts.is_empty() {
            return Err(StoreError::InvalidArgument("name at least one part".into()));
        }
        if parts.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(StoreError::InvalidPartOrder);
        }
        let (bc, k, uid) = (b.clone(), key.to_string(), upload.to_string());
        let out = self
            .run(move |s| {
                s.write(|tx, _| {
                    let Some(u) = orepo::get_upload(tx, &bc.id, &uid)?.filter(|u| u.key == k) else {
                        // A retry after a lost answer: the object this completion made is there.
                        let want = multipart_etag(&parts.iter().map(|p| p.1.clone()).collect::<Vec<_>>());
                        return Ok(match orepo::get_object(tx, &bc.id, &k)? {
                            Some(o) if o.etag == want => Ok((o, Vec::new())),
                            _ => Err(StoreError::NoSuchUpload),
                        });
                    };
                    let stored: BTreeMap<i64, PartRow> = orepo::list_parts(tx, &uid, 0, MAX_PARTS as usize)?.into_iter().map(|p| (p.number, p)).collect();
                    let mut chosen = Vec::with_capacity(parts.len());
                    for (i, (n, etag)) in parts.iter().enumerate() {
                        let Some(p) = stored.get(n).filter(|p| &p.etag == etag) else {
                            return Ok(Err(StoreError::InvalidPart(format!("part {n} was not uploaded with ETag {etag}"))));
                        };
                        if i + 1 < parts.len() && p.size < MIN_PART_BYTES {
                            return Ok(Err(StoreError::EntityTooSmall(*n)));
                        }
                        chosen.push(p.clone());
                    }
                    let cur = orepo::get_object(tx, &bc.id, &k)?;
                    if let Err(e) = check_cond(cur.as_ref(), &cond) {
                        return Ok(Err(e));
                    }
                    let size: i64 = chosen.iter().map(|p| p.size).sum();
                    let etags: Vec<String> = chosen.iter().map(|p| p.etag.clone()).collect();
                    let row = ObjectRow {
                        bucket: bc.id.clone(),
                        key: k.clone(),
                        size,
                        etag: multipart_etag(&etags),
                        content_type: u.content_type.clone(),
                        meta: u.meta.clone(),
                        parts: chosen.len() as i64,
                        modified_ms: model::now_ms(),
                    };
                    let blobs: Vec<BlobRef> = chosen.iter().map(|p| BlobRef { blob: p.blob.clone(), size: p.size }).collect();
                    let keep: std::collections::HashSet<&str> = chosen.iter().map(|p| p.blob.as_str()).collect();
                    let mut drop: Vec<String> = orepo::delete_upload(tx, &uid)?.into_iter().filter(|b| !keep.contains(b.as_str())).collect();
                    drop.extend(orepo::put_object(tx, &row, &blobs)?.into_iter().map(|b| b.blob));
                    failpoint("complete_commit");
                    Ok(Ok((row, drop)))
                })
            })
            .await??;
        let (row, drop) = out;
        self.blobs().remove(&drop).await;
        Ok(row)
    }

    /// Abort an upload and remove its parts.
    pub async fn abort_upload(&self, b: &BucketRef, key: &str, upload: &str) -> Result<(), StoreError> {
        let (bid, k, uid) = (b.id.clone(), key.to_string(), upload.to_string());
        let blobs = self
            .run(move |s| {
                s.write(|tx, _| match orepo::get_upload(tx, &bid, &uid)? {
                    Some(u) if u.key == k => Ok(Some(orepo::delete_upload(tx, &uid)?)),
                    _ => Ok(None),
                })
            })
            .await?
            .ok_or(StoreError::NoSuchUpload)?;
        self.blobs().remove(&blobs).await;
        Ok(())
    }

    /// Uploads in progress with `prefix`, after `(key, upload id)`, at most `max`.
    pub async fn list_uploads(&self, b: &BucketRef, prefix: &str, after: Option<(String, String)>, max: usize) -> Result<Vec<UploadRow>, StoreError> {
        let (bid, p) = (b.id.clone(), prefix.to_string());
        Ok(self.run(move |s| s.read(|c| Ok(orepo::list_uploads(c, &bid, &p, after.as_ref().map(|(k, i)| (k.as_str(), i.as_str())), max)?))).await?)
    }

    /// Parts of an upload numbered above `after`, at most `max`.
    pub async fn list_parts(&self, b: &BucketRef, key: &str, upload: &str, after: i64, max: usize) -> Result<Vec<PartRow>, StoreError> {
        self.get_upload(b, key, upload).await?;
        let uid = upload.to_string();
        Ok(self.run(move |s| s.read(|c| Ok(orepo::list_parts(c, &uid, after, max)?))).await?)
    }
}

fn list_in(c: &rusqlite::Connection, bucket: &str, prefix: &str, delim: Option<&str>, after: Option<&str>, max: usize) -> Result<Listing, SiteError> {
    let mut out = Listing::default();
    if max == 0 {
        return Ok(out);
    }
    let end = prefix_end(prefix.as_bytes());
    // The scan position: strictly after `from` unless `inclusive`.
    let (mut from, mut inclusive): (Vec<u8>, bool) = match after {
        Some(a) if a.as_bytes() >= prefix.as_bytes() => {
            // After a common prefix (the first delimiter past the prefix ends it), skip
            // everything under it.
            let rest = a.strip_prefix(prefix).unwrap_or_default();
            match delim.and_then(|d| rest.find(d).map(|i| i + d.len())) {
                Some(end) if a.starts_with(prefix) && end == rest.len() => (prefix_end(a.as_bytes()).unwrap_or_default(), true),
                _ => (a.as_bytes().to_vec(), false),
            }
        }
        _ => (prefix.as_bytes().to_vec(), true),
    };
    let full = (max + 1).min(1000);
    let mut batch = full;
    'scan: loop {
        let rows = orepo::scan_objects(c, bucket, &from, inclusive, end.as_deref(), batch)?;
        if rows.is_empty() {
            break;
        }
        let n = rows.len();
        for row in rows {
            let total = out.objects.len() + out.prefixes.len();
            let rest = &row.key[prefix.len()..];
            let cp = delim.and_then(|d| rest.find(d).map(|i| format!("{prefix}{}", &rest[..i + d.len()])));
            if total == max {
                out.truncated = true;
                break 'scan;
            }
            match cp {
                Some(cp) => {
                    from = prefix_end(cp.as_bytes()).unwrap_or_default();
                    inclusive = true;
                    out.next = Some(cp.clone());
                    out.prefixes.push(cp);
                    // Keys under the next prefix would be read only to be skipped: fetch few.
                    batch = 16;
                    continue 'scan;
                }
                None => {
                    from = row.key.as_bytes().to_vec();
                    inclusive = false;
                    out.next = Some(row.key.clone());
                    out.objects.push(row);
                }
            }
        }
        if n < batch {
            break;
        }
        batch = full;
    }
    if !out.truncated {
        out.next = None;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_bounds_every_extension() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn multipart_etag_follows_the_convention() {
        // Two parts whose MD5s are those of "a" and "b".
        let e = multipart_etag(&["0cc175b9c0f1b6a831c399e269772661".into(), "92eb5ffee6ae2fec3ad71c777531578f".into()]);
        assert!(e.ends_with("-2") && e.len() == 34);
    }

    #[test]
    fn listing_groups_pages_and_resumes() {
        let mut c = rusqlite::Connection::open_in_memory().unwrap();
        c.pragma_update(None, "foreign_keys", "ON").unwrap();
        crate::state::migrations::apply(&mut c).unwrap();
        c.execute("INSERT INTO resources (id, kind, name, created_at, updated_at) VALUES ('b', 'bucket', 'b', 'n', 'n')", []).unwrap();
        for k in ["a.txt", "docs/1", "docs/2", "docs/x/3", "img/1", "z"] {
            let r = ObjectRow { bucket: "b".into(), key: k.into(), size: 1, etag: "e".into(), content_type: None, meta: "{}".into(), parts: 0, modified_ms: 0 };
            orepo::put_object(&c, &r, &[]).unwrap();
        }
        let keys = |l: &Listing| l.objects.iter().map(|o| o.key.clone()).collect::<Vec<_>>();
        let l = list_in(&c, "b", "", Some("/"), None, 1000).unwrap();
        assert_eq!((keys(&l), l.prefixes.clone(), l.truncated), (vec!["a.txt".to_string(), "z".into()], vec!["docs/".to_string(), "img/".into()], false));
        let l = list_in(&c, "b", "docs/", Some("/"), None, 1000).unwrap();
        assert_eq!((keys(&l), l.prefixes.clone()), (vec!["docs/1".to_string(), "docs/2".into()], vec!["docs/x/".to_string()]));
        // Pages of two, resuming after a common prefix.
        let p1 = list_in(&c, "b", "", Some("/"), None, 2).unwrap();
        assert_eq!(
            (keys(&p1), p1.prefixes.clone(), p1.truncated, p1.next.clone()),
            (vec!["a.txt".to_string()], vec!["docs/".to_string()], true, Some("docs/".to_string()))
        );
        let p2 = list_in(&c, "b", "", Some("/"), p1.next.as_deref(), 2).unwrap();
        assert_eq!((keys(&p2), p2.prefixes.clone(), p2.truncated), (vec!["z".to_string()], vec!["img/".to_string()], false));
        // A delimiter that overlaps the prefix: "abc" is an object under prefix "ab" (its rest "c"
        // holds no "bc"), so resuming after it must not skip "abcd".
        for k in ["abc", "abcd"] {
            let r = ObjectRow { bucket: "b".into(), key: k.into(), size: 1, etag: "e".into(), content_type: None, meta: "{}".into(), parts: 0, modified_ms: 0 };
            orepo::put_object(&c, &r, &[]).unwrap();
        }
        let l = list_in(&c, "b", "ab", Some("bc"), Some("abc"), 10).unwrap();
        assert_eq!(keys(&l), ["abcd"]);
        // Many keys under each prefix: every prefix once, in order, across small batches.
        for i in 0..40 {
            let r = ObjectRow {
                bucket: "b".into(),
                key: format!("many/{:02}/{i}", i % 5),
                size: 1,
                etag: "e".into(),
                content_type: None,
                meta: "{}".into(),
                parts: 0,
                modified_ms: 0,
            };
            orepo::put_object(&c, &r, &[]).unwrap();
        }
        let l = list_in(&c, "b", "many/", Some("/"), None, 1000).unwrap();
        assert_eq!(l.prefixes, ["many/00/", "many/01/", "many/02/", "many/03/", "many/04/"]);
        // No delimiter: every key under the prefix.
        let l = list_in(&c, "b", "docs/", None, Some("docs/1"), 1000).unwrap();
        assert_eq!(keys(&l), ["docs/2", "docs/x/3"]);
    }
}
