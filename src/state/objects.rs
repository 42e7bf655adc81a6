//! Object storage metadata: objects, their blob files, multipart uploads and their parts, and
//! per-bucket usage counters (schema migration 2).
//!
//! Keys are stored as BLOBs, so `ORDER BY key` and range scans are bytewise over UTF-8, the
//! order S3 lists in. Every change to `objects` also moves `bucket_usage` in the same
//! transaction, so usage never drifts from the rows.

use rusqlite::{Connection, OptionalExtension, params};

use super::StateError;

/// One object's metadata row.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectRow {
    /// The bucket's resource id.
    pub bucket: String,
    /// The object key (UTF-8, at most 1,024 bytes).
    pub key: String,
    /// Bytes.
    pub size: i64,
    /// The ETag without quotes: MD5 hex, or `<md5 of part md5s>-<parts>` after a multipart upload.
    pub etag: String,
    /// `Content-Type` given at upload.
    pub content_type: Option<String>,
    /// JSON text: user metadata, standard headers and checksums (`site::objects::ObjectMeta`).
    pub meta: String,
    /// Parts of a multipart upload; 0 for a single PUT.
    pub parts: i64,
    /// Last-Modified, Unix milliseconds.
    pub modified_ms: i64,
}

/// One blob file holding a consecutive run of an object's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    /// The blob file's id (a ULID).
    pub blob: String,
    /// Bytes in that file.
    pub size: i64,
}

/// A multipart upload in progress.
#[derive(Debug, Clone)]
pub struct UploadRow {
    /// The upload id (a ULID), handed to clients as `UploadId`.
    pub id: String,
    /// The bucket's resource id.
    pub bucket: String,
    /// The key the upload will complete into.
    pub key: String,
    /// `Content-Type` given at creation.
    pub content_type: Option<String>,
    /// JSON text, as [`ObjectRow::meta`].
    pub meta: String,
    /// Unix milliseconds.
    pub initiated_ms: i64,
}

/// One uploaded part.
#[derive(Debug, Clone)]
pub struct PartRow {
    /// 1 to 10,000.
    pub number: i64,
    /// The blob file holding the part.
    pub blob: String,
    /// Bytes.
    pub size: i64,
    /// MD5 hex of the part, no quotes.
    pub etag: String,
    /// JSON text: the part's checksums by algorithm (base64).
    pub checksums: String,
    /// Unix milliseconds.
    pub modified_ms: i64,
}

const OBJECT_COLS: &str = "bucket, CAST(key AS TEXT), size, etag, content_type, meta, parts, modified_ms";

fn map_object(r: &rusqlite::Row<'_>) -> rusqlite::Result<ObjectRow> {
    Ok(ObjectRow {
        bucket: r.get(0)?,
        key: r.get(1)?,
        size: r.get(2)?,
        etag: r.get(3)?,
        content_type: r.get(4)?,
        meta: r.get(5)?,
        parts: r.get(6)?,
        modified_ms: r.get(7)?,
    })
}

/// The object at `key`, if any.
pub fn get_object(c: &Connection, bucket: &str, key: &str) -> Result<Option<ObjectRow>, StateError> {
    let sql = format!("SELECT {OBJECT_COLS} FROM objects WHERE bucket = ?1 AND key = ?2");
    Ok(c.prepare_cached(&sql)?.query_row(params![bucket, key.as_bytes()], map_object).optional()?)
}

/// The blob files of the object at `key`, in order.
pub fn object_blobs(c: &Connection, bucket: &str, key: &str) -> Result<Vec<BlobRef>, StateError> {
    let mut st = c.prepare_cached("SELECT blob, size FROM object_blobs WHERE bucket = ?1 AND key = ?2 ORDER BY seq")?;
    let rows = st.query_map(params![bucket, key.as_bytes()], |r| Ok(BlobRef { blob: r.get(0)?, size: r.get(1)? }))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Objects with `key > after` (or `>= from` when `inclusive`), in key order, at most `limit`,
/// and below `below` when given (the end of a prefix range).
pub fn scan_objects(c: &Connection, bucket: &str, from: &[u8], inclusive: bool, below: Option<&[u8]>, limit: usize) -> Result<Vec<ObjectRow>, StateError> {
    let op = if inclusive { ">=" } else { ">" };
    let rows = match below {
        Some(end) => {
            let sql = format!("SELECT {OBJECT_COLS} FROM objects WHERE bucket = ?1 AND key {op} ?2 AND key < ?3 ORDER BY key LIMIT ?4");
            let mut st = c.prepare_cached(&sql)?;
            st.query_map(params![bucket, from, end, limit as i64], map_object)?.collect::<Result<Vec<_>, _>>()
        }
        None => {
            let sql = format!("SELECT {OBJECT_COLS} FROM objects WHERE bucket = ?1 AND key {op} ?2 ORDER BY key LIMIT ?3");
            let mut st = c.prepare_cached(&sql)?;
            st.query_map(params![bucket, from, limit as i64], map_object)?.collect::<Result<Vec<_>, _>>()
        }
    };
    Ok(rows?)
}

/// Insert or replace the object at `row.key` with `blobs`; returns the blob files of the object it
/// replaced (to remove after commit). Moves the bucket's usage by the difference.
pub fn put_object(c: &Connection, row: &ObjectRow, blobs: &[BlobRef]) -> Result<Vec<BlobRef>, StateError> {
    let old = get_object(c, &row.bucket, &row.key)?;
    let old_blobs = match &old {
        Some(_) => object_blobs(c, &row.bucket, &row.key)?,
        None => Vec::new(),
    };
    c.prepare_cached("DELETE FROM objects WHERE bucket = ?1 AND key = ?2")?.execute(params![row.bucket, row.key.as_bytes()])?;
    c.prepare_cached("INSERT INTO objects (bucket, key, size, etag, content_type, meta, parts, modified_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")?
        .execute(params![row.bucket, row.key.as_bytes(), row.size, row.etag, row.content_type, row.meta, row.parts, row.modified_ms])
        .map_err(StateError::classify)?;
    let mut ins = c.prepare_cached("INSERT INTO object_blobs (bucket, key, seq, blob, size) VALUES (?1, ?2, ?3, ?4, ?5)")?;
    for (i, b) in blobs.iter().enumerate() {
        ins.execute(params![row.bucket, row.key.as_bytes(), i as i64, b.blob, b.size])?;
    }
    let (db, dn) = match &old {
        Some(o) => (row.size - o.size, 0),
        None => (row.size, 1),
    };
    add_usage(c, &row.bucket, db, dn)?;
    Ok(old_blobs)
}

/// Delete the object at `key`; returns its blob files (to remove after commit), or `None` when
/// there was no such object.
pub fn delete_object(c: &Connection, bucket: &str, key: &str) -> Result<Option<Vec<BlobRef>>, StateError> {
    let Some(old) = get_object(c, bucket, key)? else { return Ok(None) };
    let blobs = object_blobs(c, bucket, key)?;
    c.prepare_cached("DELETE FROM objects WHERE bucket = ?1 AND key = ?2")?.execute(params![bucket, key.as_bytes()])?;
    add_usage(c, bucket, -old.size, -1)?;
    Ok(Some(blobs))
}

fn add_usage(c: &Connection, bucket: &str, bytes: i64, objects: i64) -> Result<(), StateError> {
    c.prepare_cached(
        "INSERT INTO bucket_usage (bucket, bytes, objects) VALUES (?1, ?2, ?3) \
         ON CONFLICT(bucket) DO UPDATE SET bytes = bytes + ?2, objects = objects + ?3",
    )?
    .execute(params![bucket, bytes, objects])?;
    Ok(())
}

/// `(bytes, objects)` stored in one bucket.
pub fn bucket_usage(c: &Connection, bucket: &str) -> Result<(i64, i64), StateError> {
    Ok(c.prepare_cached("SELECT bytes, objects FROM bucket_usage WHERE bucket = ?1")?
        .query_row([bucket], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .unwrap_or((0, 0)))
}

/// Bytes held by the parts of a bucket's unfinished uploads.
pub fn bucket_part_bytes(c: &Connection, bucket: &str) -> Result<i64, StateError> {
    Ok(c.prepare_cached("SELECT ifnull(sum(p.size), 0) FROM upload_parts p JOIN uploads u ON u.id = p.upload WHERE u.bucket = ?1")?
        .query_row([bucket], |r| r.get(0))?)
}

/// Bytes stored in all buckets of a project, counting parts of unfinished uploads too.
pub fn project_bytes(c: &Connection, project: &str) -> Result<i64, StateError> {
    let objects: i64 = c
        .prepare_cached("SELECT ifnull(sum(u.bytes), 0) FROM bucket_usage u JOIN resources r ON r.id = u.bucket WHERE r.project = ?1")?
        .query_row([project], |r| r.get(0))?;
    let parts: i64 = c
        .prepare_cached(
            "SELECT ifnull(sum(p.size), 0) FROM upload_parts p JOIN uploads u ON u.id = p.upload \
             JOIN resources r ON r.id = u.bucket WHERE r.project = ?1",
        )?
        .query_row([project], |r| r.get(0))?;
    Ok(objects + parts)
}

/// Whether any object or part refers to blob file `blob`.
pub fn blob_referenced(c: &Connection, blob: &str) -> Result<bool, StateError> {
    let o: Option<i64> = c.prepare_cached("SELECT 1 FROM object_blobs WHERE blob = ?1 LIMIT 1")?.query_row([blob], |r| r.get(0)).optional()?;
    if o.is_some() {
        return Ok(true);
    }
    let p: Option<i64> = c.prepare_cached("SELECT 1 FROM upload_parts WHERE blob = ?1 LIMIT 1")?.query_row([blob], |r| r.get(0)).optional()?;
    Ok(p.is_some())
}

/// Every blob reference with its recorded size: `(blob, size)` of objects and of parts.
pub fn all_blob_refs(c: &Connection) -> Result<Vec<BlobRef>, StateError> {
    let mut st = c.prepare("SELECT blob, size FROM object_blobs UNION ALL SELECT blob, size FROM upload_parts")?;
    let rows = st.query_map([], |r| Ok(BlobRef { blob: r.get(0)?, size: r.get(1)? }))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// `(bucket, recorded bytes, recorded objects, actual bytes, actual objects)`.
pub type UsageDrift = (String, i64, i64, i64, i64);

/// The [`UsageDrift`] of every bucket whose usage counter disagrees with its rows.
pub fn usage_drift(c: &Connection) -> Result<Vec<UsageDrift>, StateError> {
    let mut st = c.prepare(
        "SELECT u.bucket, u.bytes, u.objects, ifnull(sum(o.size), 0), count(o.key) FROM bucket_usage u \
         LEFT JOIN objects o ON o.bucket = u.bucket GROUP BY u.bucket \
         HAVING u.bytes != ifnull(sum(o.size), 0) OR u.objects != count(o.key)",
    )?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Objects whose blob sizes do not add up to their size: `(bucket, key)`.
pub fn size_mismatches(c: &Connection) -> Result<Vec<(String, String)>, StateError> {
    let mut st = c.prepare(
        "SELECT o.bucket, CAST(o.key AS TEXT) FROM objects o LEFT JOIN object_blobs b ON b.bucket = o.bucket AND b.key = o.key \
         GROUP BY o.bucket, o.key HAVING o.size != ifnull(sum(b.size), 0)",
    )?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

// ---- multipart uploads ----

/// Record a new multipart upload.
pub fn insert_upload(c: &Connection, u: &UploadRow) -> Result<(), StateError> {
    c.prepare_cached("INSERT INTO uploads (id, bucket, key, content_type, meta, initiated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?.execute(params![
        u.id,
        u.bucket,
        u.key.as_bytes(),
        u.content_type,
        u.meta,
        u.initiated_ms
    ])?;
    Ok(())
}

/// The upload `id` of `bucket`, if it exists.
pub fn get_upload(c: &Connection, bucket: &str, id: &str) -> Result<Option<UploadRow>, StateError> {
    c.prepare_cached("SELECT id, bucket, CAST(key AS TEXT), content_type, meta, initiated_ms FROM uploads WHERE id = ?1 AND bucket = ?2")?
        .query_row(params![id, bucket], map_upload)
        .optional()
        .map_err(Into::into)
}

fn map_upload(r: &rusqlite::Row<'_>) -> rusqlite::Result<UploadRow> {
    Ok(UploadRow { id: r.get(0)?, bucket: r.get(1)?, key: r.get(2)?, content_type: r.get(3)?, meta: r.get(4)?, initiated_ms: r.get(5)? })
}

/// Uploads of `bucket` whose key starts with `prefix`, ordered by key then id, after
/// `(key, id)` when given, at most `limit`.
pub fn list_uploads(c: &Connection, bucket: &str, prefix: &str, after: Option<(&str, &str)>, limit: usize) -> Result<Vec<UploadRow>, StateError> {
    let (ak, ai) = after.unwrap_or(("", ""));
    let mut st = c.prepare_cached(
        "SELECT id, bucket, CAST(key AS TEXT), content_type, meta, initiated_ms FROM uploads \
         WHERE bucket = ?1 AND substr(key, 1, ?2) = ?3 AND (key > ?4 OR (key = ?4 AND id > ?5)) ORDER BY key, id LIMIT ?6",
    )?;
    let rows = st.query_map(params![bucket, prefix.len() as i64, prefix.as_bytes(), ak.as_bytes(), ai, limit as i64], map_upload)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Insert or replace part `p.number` of `upload`; returns the blob it replaced.
pub fn put_part(c: &Connection, upload: &str, p: &PartRow) -> Result<Option<String>, StateError> {
    let old: Option<String> =
        c.prepare_cached("SELECT blob FROM upload_parts WHERE upload = ?1 AND number = ?2")?.query_row(params![upload, p.number], |r| r.get(0)).optional()?;
    c.prepare_cached("INSERT OR REPLACE INTO upload_parts (upload, number, blob, size, etag, checksums, modified_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?
        .execute(params![upload, p.number, p.blob, p.size, p.etag, p.checksums, p.modified_ms])?;
    Ok(old)
}

/// Parts of `upload` numbered above `after`, in order, at most `limit`.
pub fn list_parts(c: &Connection, upload: &str, after: i64, limit: usize) -> Result<Vec<PartRow>, StateError> {
    let mut st = c.prepare_cached(
        "SELECT number, blob, size, etag, checksums, modified_ms FROM upload_parts WHERE upload = ?1 AND number > ?2 ORDER BY number LIMIT ?3",
    )?;
    let rows = st.query_map(params![upload, after, limit as i64], |r| {
        Ok(PartRow { number: r.get(0)?, blob: r.get(1)?, size: r.get(2)?, etag: r.get(3)?, checksums: r.get(4)?, modified_ms: r.get(5)? })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Delete an upload and its part rows; returns the part blobs (to remove after commit).
pub fn delete_upload(c: &Connection, upload: &str) -> Result<Vec<String>, StateError> {
    let blobs: Vec<String> = {
        let mut st = c.prepare_cached("SELECT blob FROM upload_parts WHERE upload = ?1")?;
        st.query_map([upload], |r| r.get(0))?.collect::<Result<_, _>>()?
    };
    c.prepare_cached("DELETE FROM uploads WHERE id = ?1")?.execute([upload])?;
    Ok(blobs)
}

/// The part blobs of every upload of `bucket` (to remove when the bucket is deleted).
pub fn bucket_part_blobs(c: &Connection, bucket: &str) -> Result<Vec<String>, StateError> {
    let mut st = c.prepare_cached("SELECT p.blob FROM upload_parts p JOIN uploads u ON u.id = p.upload WHERE u.bucket = ?1")?;
    Ok(st.query_map([bucket], |r| r.get(0))?.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        c.pragma_update(None, "foreign_keys", "ON").unwrap();
        super::super::migrations::apply(&mut c).unwrap();
        c.execute("INSERT INTO resources (id, kind, name, created_at, updated_at) VALUES ('bkt-1', 'bucket', 'b', 'now', 'now')", []).unwrap();
        c
    }

    fn obj(key: &str, size: i64) -> ObjectRow {
        ObjectRow { bucket: "bkt-1".into(), key: key.into(), size, etag: "e".into(), content_type: None, meta: "{}".into(), parts: 0, modified_ms: 1 }
    }

    #[test]
    fn put_replace_delete_keep_usage_exact() {
        let c = db();
        assert!(put_object(&c, &obj("a", 10), &[BlobRef { blob: "x".into(), size: 10 }]).unwrap().is_empty());
        let old = put_object(&c, &obj("a", 4), &[BlobRef { blob: "y".into(), size: 4 }]).unwrap();
        assert_eq!(old, vec![BlobRef { blob: "x".into(), size: 10 }]);
        assert_eq!(bucket_usage(&c, "bkt-1").unwrap(), (4, 1));
        assert!(blob_referenced(&c, "y").unwrap() && !blob_referenced(&c, "x").unwrap());
        assert_eq!(delete_object(&c, "bkt-1", "a").unwrap().unwrap().len(), 1);
        assert_eq!(bucket_usage(&c, "bkt-1").unwrap(), (0, 0));
        assert!(usage_drift(&c).unwrap().is_empty());
        assert!(delete_object(&c, "bkt-1", "a").unwrap().is_none());
    }

    #[test]
    fn scans_are_bytewise_and_bounded() {
        let c = db();
        for k in ["b/2", "a", "b/1", "\u{e9}", "c"] {
            put_object(&c, &obj(k, 1), &[]).unwrap();
        }
        let keys = |v: Vec<ObjectRow>| v.into_iter().map(|o| o.key).collect::<Vec<_>>();
        assert_eq!(keys(scan_objects(&c, "bkt-1", b"", true, None, 10).unwrap()), ["a", "b/1", "b/2", "c", "\u{e9}"]);
        assert_eq!(keys(scan_objects(&c, "bkt-1", b"b/", true, Some(b"b0"), 10).unwrap()), ["b/1", "b/2"]);
        assert_eq!(keys(scan_objects(&c, "bkt-1", b"b/1", false, None, 2).unwrap()), ["b/2", "c"]);
    }

    #[test]
    fn a_non_empty_bucket_cannot_be_deleted_and_uploads_go_with_it() {
        let c = db();
        insert_upload(&c, &UploadRow { id: "u1".into(), bucket: "bkt-1".into(), key: "k".into(), content_type: None, meta: "{}".into(), initiated_ms: 1 })
            .unwrap();
        put_part(&c, "u1", &PartRow { number: 1, blob: "p1".into(), size: 5, etag: "e".into(), checksums: "{}".into(), modified_ms: 1 }).unwrap();
        put_object(&c, &obj("k", 1), &[]).unwrap();
        assert!(c.execute("DELETE FROM resources WHERE id = 'bkt-1'", []).is_err());
        delete_object(&c, "bkt-1", "k").unwrap();
        assert_eq!(bucket_part_blobs(&c, "bkt-1").unwrap(), ["p1"]);
        c.execute("DELETE FROM resources WHERE id = 'bkt-1'", []).unwrap();
        assert!(list_parts(&c, "u1", 0, 10).unwrap().is_empty());
    }
}
