//! The object store's data engine: blob files.
//!
//! An object's bytes live in one blob file (a single PUT) or several (the parts of a multipart
//! upload, kept as they were uploaded, so completing an upload copies nothing). Blobs are
//! immutable and named by a fresh ULID. Layout under the store's root:
//!
//! - `tmp/<ulid>`: a blob being written; removed at start-up.
//! - `blobs/<xx>/<ulid>`: finished blobs, fanned out by the ULID's last two characters.
//!
//! A write goes to `tmp/`, is `fdatasync`'d, renamed into `blobs/` and the directory is
//! synced. Only then does the caller commit the metadata row that refers to the blob (in
//! SQLite), so a crash at any point leaves either no visible object or a complete one; a blob
//! that no row refers to is garbage, swept at start-up ([`BlobStore::sweep`]).

use std::io::{self, SeekFrom};
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use s3s::crypto::{Checksum as _, Crc32, Crc32c, Crc64Nvme, Md5, Sha1, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// Errors of the blob engine.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The body stream failed (client went away, bad chunk signature, ...).
    #[error("reading the request body: {0}")]
    Body(String),
    /// The body is longer than allowed.
    #[error("the body exceeds {limit} bytes")]
    TooLarge { limit: u64 },
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: String, source: io::Error },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ObjectError + 'a {
    move |source| ObjectError::Io { op, path: path.display().to_string(), source }
}

/// Checksum algorithms S3 defines (`x-amz-checksum-*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Algorithms {
    /// CRC-32 (ISO-HDLC).
    pub crc32: bool,
    /// CRC-32C (Castagnoli).
    pub crc32c: bool,
    /// CRC-64/NVME.
    pub crc64nvme: bool,
    /// SHA-1.
    pub sha1: bool,
    /// SHA-256.
    pub sha256: bool,
}

/// Checksums of a blob, base64 as S3 sends them; `None` where not computed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checksums {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32c: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc64nvme: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// A finished blob.
#[derive(Debug, Clone)]
pub struct Written {
    /// The blob id.
    pub id: String,
    /// Bytes written.
    pub size: u64,
    /// MD5 of the bytes (the ETag of a single-part object).
    pub md5: [u8; 16],
    /// The checksums asked for.
    pub checksums: Checksums,
}

struct Hashers {
    md5: Md5,
    crc32: Option<Crc32>,
    crc32c: Option<Crc32c>,
    crc64nvme: Option<Crc64Nvme>,
    sha1: Option<Sha1>,
    sha256: Option<Sha256>,
}

fn b64(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

impl Hashers {
    fn new(a: Algorithms) -> Self {
        Hashers {
            md5: Md5::new(),
            crc32: a.crc32.then(Crc32::new),
            crc32c: a.crc32c.then(Crc32c::new),
            crc64nvme: a.crc64nvme.then(Crc64Nvme::new),
            sha1: a.sha1.then(Sha1::new),
            sha256: a.sha256.then(Sha256::new),
        }
    }

    fn update(&mut self, d: &[u8]) {
        self.md5.update(d);
        if let Some(h) = &mut self.crc32 {
            h.update(d);
        }
        if let Some(h) = &mut self.crc32c {
            h.update(d);
        }
        if let Some(h) = &mut self.crc64nvme {
            h.update(d);
        }
        if let Some(h) = &mut self.sha1 {
            h.update(d);
        }
        if let Some(h) = &mut self.sha256 {
            h.update(d);
        }
    }

    fn finish(self) -> ([u8; 16], Checksums) {
        let md5: [u8; 16] = self.md5.finalize();
        let c = Checksums {
            crc32: self.crc32.map(|h| b64(h.finalize().as_ref())),
            crc32c: self.crc32c.map(|h| b64(h.finalize().as_ref())),
            crc64nvme: self.crc64nvme.map(|h| b64(h.finalize().as_ref())),
            sha1: self.sha1.map(|h| b64(h.finalize().as_ref())),
            sha256: self.sha256.map(|h| b64(h.finalize().as_ref())),
        };
        (md5, c)
    }
}

/// Bytes buffered before a write reaches the file.
const WRITE_BUF: usize = 1 << 20;
/// Bytes per chunk of a read stream.
const READ_CHUNK: usize = 256 << 10;

/// The blob files of one object store.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
    fsync: bool,
}

impl BlobStore {
    /// Open (creating) the store at `root` and remove unfinished writes left in `tmp/`.
    /// `fsync` makes every blob durable before its metadata commits (turn off only for
    /// throw-away data).
    pub fn open(root: &Path, fsync: bool) -> Result<Self, ObjectError> {
        let tmp = root.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(io_err("create", &tmp))?;
        // Every fan-out directory exists before the first write (the last two characters of a
        // ULID, Crockford base32), so a new blob never needs its parent directory synced.
        let blobs = root.join("blobs");
        std::fs::create_dir_all(&blobs).map_err(io_err("create", root))?;
        const CROCKFORD: &[u8] = b"0123456789abcdefghjkmnpqrstvwxyz";
        let mut made = false;
        for a in CROCKFORD {
            for b in CROCKFORD {
                let d = blobs.join(format!("{}{}", *a as char, *b as char));
                if !d.exists() {
                    std::fs::create_dir(&d).map_err(io_err("create", &d))?;
                    made = true;
                }
            }
        }
        if made && fsync {
            std::fs::File::open(&blobs).and_then(|f| f.sync_all()).map_err(io_err("fsync", &blobs))?;
        }
        let mut removed = 0;
        for e in std::fs::read_dir(&tmp).map_err(io_err("read", &tmp))?.flatten() {
            if std::fs::remove_file(e.path()).is_ok() {
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(removed, "removed unfinished object writes");
        }
        Ok(BlobStore { root: root.to_path_buf(), fsync })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of blob `id` (`blobs/<last two chars>/<id>`).
    pub fn path(&self, id: &str) -> PathBuf {
        let fan = id.get(id.len().saturating_sub(2)..).unwrap_or("00").to_ascii_lowercase();
        self.root.join("blobs").join(fan).join(id)
    }

    /// Write `body` into a new blob, hashing it as it streams, refusing more than `limit` bytes.
    /// The blob is durable (when the store fsyncs) and complete when this returns; nothing refers
    /// to it yet. On error the partial file is removed.
    pub async fn write<S, E>(&self, body: S, algorithms: Algorithms, limit: u64) -> Result<Written, ObjectError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let id = ulid::Ulid::new().to_string();
        let tmp = self.root.join("tmp").join(&id);
        // Removes the temp file if this future is dropped mid-write (the client went away).
        let guard = TmpGuard(Some(tmp.clone()));
        let out = self.write_tmp(&tmp, body, algorithms, limit).await;
        let (size, md5, checksums) = match out {
            Ok(v) => v,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        let dst = self.path(&id);
        let Some(dir) = dst.parent() else { return Err(ObjectError::Body("blob path has no parent".into())) };
        let place = async {
            tokio::fs::create_dir_all(dir).await.map_err(io_err("create", dir))?;
            tokio::fs::rename(&tmp, &dst).await.map_err(io_err("rename", &dst))?;
            if self.fsync {
                sync_dir(dir).await?;
            }
            Ok::<_, ObjectError>(())
        };
        if let Err(e) = place.await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        guard.disarm();
        Ok(Written { id, size, md5, checksums })
    }

    async fn write_tmp<S, E>(&self, tmp: &Path, mut body: S, algorithms: Algorithms, limit: u64) -> Result<(u64, [u8; 16], Checksums), ObjectError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let file = tokio::fs::File::create(tmp).await.map_err(io_err("create", tmp))?;
        let mut w = tokio::io::BufWriter::with_capacity(WRITE_BUF, file);
        let mut h = Hashers::new(algorithms);
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| ObjectError::Body(e.to_string()))?;
            size += chunk.len() as u64;
            if size > limit {
                return Err(ObjectError::TooLarge { limit });
            }
            h.update(&chunk);
            w.write_all(&chunk).await.map_err(io_err("write", tmp))?;
        }
        w.flush().await.map_err(io_err("write", tmp))?;
        let file = w.into_inner();
        if self.fsync {
            file.sync_data().await.map_err(io_err("fsync", tmp))?;
        }
        let (md5, checksums) = h.finish();
        Ok((size, md5, checksums))
    }

    /// Copy `len` bytes from the blobs `src` (each `(id, size)`), starting at `offset`, into a
    /// new blob (server-side copy).
    pub async fn copy(&self, src: &[(String, u64)], offset: u64, len: u64, algorithms: Algorithms) -> Result<Written, ObjectError> {
        let files = self.open_all(src).await?;
        let stream = read_stream(files, offset, len);
        self.write(Box::pin(stream), algorithms, u64::MAX).await
    }

    /// Open every blob of an object (`(id, size)` in order), so a later replacement or delete
    /// cannot pull the data away mid-read.
    pub async fn open_all(&self, blobs: &[(String, u64)]) -> Result<Vec<(tokio::fs::File, u64)>, ObjectError> {
        let mut out = Vec::with_capacity(blobs.len());
        for (id, size) in blobs {
            let p = self.path(id);
            let f = tokio::fs::File::open(&p).await.map_err(io_err("open", &p))?;
            out.push((f, *size));
        }
        Ok(out)
    }

    /// Remove blobs (after the metadata that referred to them is gone). Missing files are fine.
    /// The removal runs as its own task, so a request dropped after its commit still frees them.
    pub async fn remove(&self, ids: &[String]) {
        if ids.is_empty() {
            return;
        }
        let paths: Vec<(String, PathBuf)> = ids.iter().map(|id| (id.clone(), self.path(id))).collect();
        let _ = tokio::task::spawn_blocking(move || remove_paths(&paths)).await;
    }

    /// [`Blobs::remove`] on the calling thread, for callers already off the async runtime.
    pub fn remove_now(&self, ids: &[String]) {
        let paths: Vec<(String, PathBuf)> = ids.iter().map(|id| (id.clone(), self.path(id))).collect();
        remove_paths(&paths);
    }

    /// Every finished blob: `(id, size on disk)`.
    pub fn list(&self) -> Result<Vec<(String, u64)>, ObjectError> {
        let blobs = self.root.join("blobs");
        let mut out = Vec::new();
        for d in std::fs::read_dir(&blobs).map_err(io_err("read", &blobs))?.flatten() {
            let Ok(rd) = std::fs::read_dir(d.path()) else { continue };
            for f in rd.flatten() {
                let size = f.metadata().map(|m| m.len()).unwrap_or(0);
                out.push((f.file_name().to_string_lossy().into_owned(), size));
            }
        }
        Ok(out)
    }

    /// Remove every blob for which `referenced` is false; returns how many went. Run only while
    /// no write is in flight (at start-up), since a fresh blob is unreferenced until its commit.
    pub fn sweep(&self, referenced: impl Fn(&str) -> bool) -> Result<usize, ObjectError> {
        let mut removed = 0;
        for (id, _) in self.list()? {
            if !referenced(&id) && std::fs::remove_file(self.path(&id)).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

struct TmpGuard(Option<PathBuf>);

impl TmpGuard {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for TmpGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

async fn sync_dir(dir: &Path) -> Result<(), ObjectError> {
    let d = tokio::fs::File::open(dir).await.map_err(io_err("open", dir))?;
    d.sync_all().await.map_err(io_err("fsync", dir))
}

/// Stream `len` bytes starting at `offset` across opened blobs (each `(file, size)`, in order).
pub fn read_stream(files: Vec<(tokio::fs::File, u64)>, offset: u64, len: u64) -> impl Stream<Item = Result<Bytes, io::Error>> + Send + Sync + 'static {
    async_stream::try_stream! {
        let mut skip = offset;
        let mut left = len;
        for (mut f, size) in files {
            if left == 0 {
                break;
            }
            if skip >= size {
                skip -= size;
                continue;
            }
            f.seek(SeekFrom::Start(skip)).await?;
            let mut in_file = size - skip;
            skip = 0;
            while left > 0 && in_file > 0 {
                let want = READ_CHUNK.min(left.min(in_file) as usize);
                let mut buf = BytesMut::zeroed(want);
                let mut got = 0;
                while got < want {
                    let n = f.read(&mut buf[got..]).await?;
                    if n == 0 {
                        Err(io::Error::new(io::ErrorKind::UnexpectedEof, "blob is shorter than its record"))?;
                    }
                    got += n;
                }
                left -= want as u64;
                in_file -= want as u64;
                yield buf.freeze();
            }
        }
        if left > 0 {
            Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the object's blobs end before its size"))?;
        }
    }
}

/// Remove blob files `(id, path)`, logging what could not be removed (missing ones are fine).
fn remove_paths(paths: &[(String, PathBuf)]) {
    for (id, p) in paths {
        if let Err(e) = std::fs::remove_file(p)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(blob = %id, error = %e, "removing blob");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, io::Error>> + Unpin {
        futures_util::stream::iter(parts.iter().map(|p| Ok(Bytes::from_static(p))).collect::<Vec<_>>())
    }

    async fn collect(s: impl Stream<Item = Result<Bytes, io::Error>>) -> Vec<u8> {
        let v: Vec<_> = Box::pin(s).collect().await;
        v.into_iter().flat_map(|b| b.unwrap().to_vec()).collect()
    }

    #[tokio::test]
    async fn write_hashes_and_reads_ranges_across_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(dir.path(), true).unwrap();
        let a = s.write(body(&[b"hello ", b"world"]), Algorithms { crc32: true, sha256: true, ..Default::default() }, 100).await.unwrap();
        assert_eq!(a.size, 11);
        assert_eq!(hex::encode(a.md5), "5eb63bbbe01eeed093cb22bb8f5acdc3");
        assert_eq!(a.checksums.crc32.as_deref(), Some("DUoRhQ=="));
        assert!(a.checksums.crc32c.is_none());
        let b = s.write(body(&[b"!!"]), Algorithms::default(), 100).await.unwrap();
        let blobs = vec![(a.id.clone(), 11), (b.id.clone(), 2)];
        assert_eq!(collect(read_stream(s.open_all(&blobs).await.unwrap(), 0, 13)).await, b"hello world!!");
        assert_eq!(collect(read_stream(s.open_all(&blobs).await.unwrap(), 6, 6)).await, b"world!");
        assert_eq!(collect(read_stream(s.open_all(&blobs).await.unwrap(), 11, 1)).await, b"!");
        let c = s.copy(&blobs, 4, 5, Algorithms::default()).await.unwrap();
        assert_eq!(std::fs::read(s.path(&c.id)).unwrap(), b"o wor");
        assert_eq!(s.sweep(|id| id == a.id).unwrap(), 2);
        assert_eq!(s.list().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn too_large_or_failed_bodies_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(dir.path(), false).unwrap();
        assert!(matches!(s.write(body(&[b"12345"]), Algorithms::default(), 4).await, Err(ObjectError::TooLarge { limit: 4 })));
        let failing = futures_util::stream::iter(vec![Ok(Bytes::from_static(b"ab")), Err(io::Error::other("cut"))]);
        assert!(matches!(s.write(failing, Algorithms::default(), 100).await, Err(ObjectError::Body(_))));
        assert!(s.list().unwrap().is_empty());
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        std::fs::write(dir.path().join("tmp/leftover"), b"x").unwrap();
        BlobStore::open(dir.path(), false).unwrap();
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }
}
