//! A content-addressed blob store (OCI image-spec "content descriptors": `sha256:<64 hex>`).
//!
//! Layout under the store root: `blobs/sha256/<hex>` for blobs, `tmp/` for writes in flight.
//! A write streams into `tmp/` while hashing, is fsync'd, checked against the expected digest,
//! then renamed into place and the directory fsync'd. A crash at any moment leaves either no blob
//! or the whole verified blob; leftovers in `tmp/` are removed when the store opens.
//!
//! Garbage collection never holds a lock across a tenant's I/O. Instead, a pull or an import
//! works through an [`Ingest`], which pins every blob it checks or writes until it is dropped
//! (after the image row that names them has committed). [`BlobStore::retain`] removes a blob only
//! when it is unreferenced, unpinned, and was not pinned at any moment since the collection
//! began, checking and unlinking under the pin table's mutex; so a blob an import relies on is
//! either named by a row the collector read, or pinned in its sight.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use sha2::{Digest as _, Sha256};

use super::ImageError;

/// A sha256 content digest (`sha256:` and 64 lowercase hex digits).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(String);

impl Digest {
    /// Parse `sha256:<64 lowercase hex>`; anything else (other algorithms, path tricks) is refused.
    pub fn parse(s: &str) -> Result<Digest, ImageError> {
        let hex = s.strip_prefix("sha256:").ok_or_else(|| ImageError::BadDigest(s.to_string()))?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(ImageError::BadDigest(s.to_string()));
        }
        Ok(Digest(s.to_string()))
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The store.
pub struct BlobStore {
    root: PathBuf,
    pins: Arc<Mutex<PinTable>>,
}

/// Which blobs ingests in flight rely on.
#[derive(Default)]
struct PinTable {
    /// Digest (hex) to the number of live [`Ingest`]s pinning it.
    live: HashMap<String, usize>,
    /// While a collection runs: every digest pinned since it began.
    seen: Option<HashSet<String>>,
}

fn lock(t: &Mutex<PinTable>) -> MutexGuard<'_, PinTable> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

impl PinTable {
    fn pin(&mut self, hex: &str) {
        *self.live.entry(hex.to_string()).or_default() += 1;
        if let Some(seen) = &mut self.seen {
            seen.insert(hex.to_string());
        }
    }
}

/// A pull's or an import's view of the store: every blob it checks with [`Ingest::has`] or
/// writes with [`Ingest::put`] / [`Ingest::writer`] stays pinned (safe from garbage collection)
/// until the `Ingest` is dropped. Keep it until the image row naming the blobs has committed.
pub struct Ingest {
    root: PathBuf,
    table: Arc<Mutex<PinTable>>,
    /// The digests this ingest pinned (shared with its writers, which pin at commit).
    held: Arc<Mutex<Vec<String>>>,
}

/// Pin `hex` for the ingest whose list is `held`; the caller holds the table's lock.
fn pin_for(t: &mut PinTable, held: &Mutex<Vec<String>>, hex: &str) {
    t.pin(hex);
    held.lock().unwrap_or_else(|p| p.into_inner()).push(hex.to_string());
}

impl Ingest {
    fn store(&self) -> BlobStore {
        BlobStore { root: self.root.clone(), pins: self.table.clone() }
    }

    /// Whether the blob is stored; pins it first, so a `true` stays true while this lives.
    pub fn has(&self, d: &Digest) -> bool {
        pin_for(&mut lock(&self.table), &self.held, d.hex());
        self.store().has(d)
    }

    /// As [`BlobStore::put`], pinning the blob as it becomes visible.
    pub fn put(&self, r: &mut impl Read, expected: Option<&Digest>, max_bytes: u64) -> Result<(Digest, u64), ImageError> {
        fill(self.writer(max_bytes)?, r, expected)
    }

    /// As [`BlobStore::writer`]; the blob is pinned by this ingest when it commits.
    pub fn writer(&self, max_bytes: u64) -> Result<BlobWriter, ImageError> {
        let mut w = self.store().writer(max_bytes)?;
        w.pin = Some(self.held.clone());
        Ok(w)
    }

    /// Open a stored blob for reading.
    pub fn open_blob(&self, d: &Digest) -> Result<File, ImageError> {
        self.store().open_blob(d)
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        let mut t = lock(&self.table);
        let held = std::mem::take(&mut *self.held.lock().unwrap_or_else(|p| p.into_inner()));
        for hex in held {
            if let Some(n) = t.live.get_mut(&hex) {
                *n -= 1;
                if *n == 0 {
                    t.live.remove(&hex);
                }
            }
        }
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ImageError {
    let what = what.into();
    move |source| ImageError::Io { what, source }
}

fn sync_dir(dir: &Path) -> Result<(), ImageError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(format!("syncing {}", dir.display())))
}

impl BlobStore {
    /// Open (creating) a store at `root`, removing writes a crash left in `tmp/`.
    pub fn open(root: &Path) -> Result<BlobStore, ImageError> {
        let s = BlobStore { root: root.to_path_buf(), pins: Arc::default() };
        std::fs::create_dir_all(s.blob_dir()).map_err(io("creating the blob directory"))?;
        let tmp = s.root.join("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io("clearing tmp/"))?;
        }
        std::fs::create_dir_all(&tmp).map_err(io("creating tmp/"))?;
        Ok(s)
    }

    /// Begin a pull or an import: see [`Ingest`].
    pub fn ingest(&self) -> Ingest {
        Ingest { root: self.root.clone(), table: self.pins.clone(), held: Arc::default() }
    }

    /// Begin a garbage collection: from now until [`Collection`] is dropped, every pinned
    /// digest is remembered. Read the referencing rows after this, then call
    /// [`Collection::retain`].
    pub fn collect(&self) -> Collection<'_> {
        let mut t = lock(&self.pins);
        let live = t.live.keys().cloned().collect();
        t.seen = Some(live);
        Collection { store: self }
    }

    fn blob_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    /// Where a blob lives (whether or not it is there).
    pub fn path(&self, d: &Digest) -> PathBuf {
        self.blob_dir().join(d.hex())
    }

    /// Whether the blob is stored.
    pub fn has(&self, d: &Digest) -> bool {
        self.path(d).is_file()
    }

    /// Stream `r` into the store. With `expected`, a different digest is refused
    /// ([`ImageError::DigestMismatch`]) and nothing becomes visible. At most `max_bytes` are
    /// read ([`ImageError::TooLarge`] beyond). Returns the digest and size.
    pub fn put(&self, r: &mut impl Read, expected: Option<&Digest>, max_bytes: u64) -> Result<(Digest, u64), ImageError> {
        fill(self.writer(max_bytes)?, r, expected)
    }

    /// Start writing a blob chunk by chunk (for sources that are not a [`Read`], such as a
    /// download); at most `max_bytes` bytes. The same guarantees as [`BlobStore::put`]: nothing
    /// is visible before [`BlobWriter::commit`] verifies it, and a writer dropped uncommitted
    /// leaves nothing behind. The writer owns its paths, so it can move to a blocking thread.
    pub fn writer(&self, max_bytes: u64) -> Result<BlobWriter, ImageError> {
        let tmp = self.root.join("tmp").join(format!("{:016x}", rand::random::<u64>()));
        let file = File::options().write(true).create_new(true).open(&tmp).map_err(io("creating a temporary blob"))?;
        Ok(BlobWriter { file, tmp, blob_dir: self.blob_dir(), hash: Sha256::new(), n: 0, max_bytes, done: false, pin: None, table: self.pins.clone() })
    }

    /// Open a stored blob for reading.
    pub fn open_blob(&self, d: &Digest) -> Result<File, ImageError> {
        File::open(self.path(d)).map_err(|_| ImageError::MissingBlob(d.to_string()))
    }

    /// Every stored digest.
    pub fn list(&self) -> Result<Vec<Digest>, ImageError> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.blob_dir()).map_err(io("listing blobs"))? {
            let name = e.map_err(io("listing blobs"))?.file_name();
            if let Some(d) = name.to_str().and_then(|n| Digest::parse(&format!("sha256:{n}")).ok()) {
                out.push(d);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Remove blobs not in `keep` (garbage collection) and not pinned by an [`Ingest`]; returns
    /// how many were removed.
    pub fn retain(&self, keep: &BTreeSet<Digest>) -> Result<usize, ImageError> {
        self.collect().retain(keep)
    }
}

/// A garbage collection in progress ([`BlobStore::collect`]).
pub struct Collection<'a> {
    store: &'a BlobStore,
}

impl Collection<'_> {
    /// Remove every blob that is not in `keep`, not pinned now, and not pinned at any time since
    /// the collection began; returns how many were removed.
    pub fn retain(&self, keep: &BTreeSet<Digest>) -> Result<usize, ImageError> {
        let mut n = 0;
        for d in self.store.list()? {
            if keep.contains(&d) {
                continue;
            }
            let t = lock(&self.store.pins);
            if t.live.contains_key(d.hex()) || t.seen.as_ref().is_some_and(|s| s.contains(d.hex())) {
                continue;
            }
            match std::fs::remove_file(self.store.path(&d)) {
                Ok(()) => n += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(ImageError::Io { what: format!("removing {d}"), source: e }),
            }
        }
        Ok(n)
    }
}

impl Drop for Collection<'_> {
    fn drop(&mut self) {
        lock(&self.store.pins).seen = None;
    }
}

/// Stream `r` into `w` and commit it against `expected`.
fn fill(mut w: BlobWriter, r: &mut impl Read, expected: Option<&Digest>) -> Result<(Digest, u64), ImageError> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let k = r.read(&mut buf).map_err(io("reading a blob"))?;
        if k == 0 {
            break;
        }
        w.write(&buf[..k])?;
    }
    w.commit(expected)
}

/// A blob being written in chunks ([`BlobStore::writer`]): hashed as it is written, visible only
/// once [`BlobWriter::commit`] has checked it; dropped uncommitted, its temporary file is removed.
pub struct BlobWriter {
    file: File,
    tmp: PathBuf,
    blob_dir: PathBuf,
    hash: Sha256,
    n: u64,
    max_bytes: u64,
    done: bool,
    /// The held list of the [`Ingest`] that made this writer, which pins the blob at commit.
    pin: Option<Arc<Mutex<Vec<String>>>>,
    table: Arc<Mutex<PinTable>>,
}

impl BlobWriter {
    /// Append a chunk; [`ImageError::TooLarge`] once more than the writer's `max_bytes` came.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), ImageError> {
        self.n += chunk.len() as u64;
        if self.n > self.max_bytes {
            return Err(ImageError::TooLarge { limit: self.max_bytes });
        }
        self.hash.update(chunk);
        self.file.write_all(chunk).map_err(io("writing a blob"))
    }

    /// Sync the blob, check it against `expected` ([`ImageError::DigestMismatch`], leaving
    /// nothing), and move it into place. Returns the digest and size.
    pub fn commit(mut self, expected: Option<&Digest>) -> Result<(Digest, u64), ImageError> {
        self.file.sync_all().map_err(io("syncing a blob"))?;
        let got = Digest(format!("sha256:{}", hex::encode(std::mem::take(&mut self.hash).finalize())));
        if let Some(want) = expected
            && *want != got
        {
            return Err(ImageError::DigestMismatch { expected: want.to_string(), got: got.to_string() });
        }
        {
            // Pinned and placed under the table's lock: a collection sees either the pin or
            // no blob.
            let mut t = lock(&self.table);
            if let Some(held) = &self.pin {
                pin_for(&mut t, held, got.hex());
            }
            std::fs::rename(&self.tmp, self.blob_dir.join(got.hex())).map_err(io("moving a blob into place"))?;
        }
        self.done = true;
        sync_dir(&self.blob_dir)?;
        Ok((got, self.n))
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn blobs_are_verified_and_only_whole_ones_are_visible() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(dir.path()).unwrap();
        let want = Digest::parse(HELLO).unwrap();
        let (d, n) = s.put(&mut &b"hello"[..], Some(&want), 1 << 20).unwrap();
        assert_eq!((d.as_str(), n), (HELLO, 5));
        assert_eq!(std::fs::read(s.path(&d)).unwrap(), b"hello");
        let err = s.put(&mut &b"hellO"[..], Some(&want), 1 << 20).unwrap_err();
        assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
        assert!(matches!(s.put(&mut &[0u8; 100][..], None, 10), Err(ImageError::TooLarge { limit: 10 })));
        assert_eq!(s.list().unwrap(), vec![want.clone()], "failed writes leave nothing");
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        assert_eq!(s.retain(&Default::default()).unwrap(), 1);
        assert!(!s.has(&want));
    }

    #[test]
    fn chunked_writes_verify_and_abandoned_ones_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(dir.path()).unwrap();
        let want = Digest::parse(HELLO).unwrap();
        let mut w = s.writer(5).unwrap();
        w.write(b"hel").unwrap();
        w.write(b"lo").unwrap();
        assert_eq!(w.commit(Some(&want)).unwrap(), (want.clone(), 5));
        assert_eq!(std::fs::read(s.path(&want)).unwrap(), b"hello");
        let mut w = s.writer(5).unwrap();
        w.write(b"hello").unwrap();
        assert!(matches!(w.write(b"!"), Err(ImageError::TooLarge { limit: 5 })));
        drop(w);
        let mut w = s.writer(1 << 20).unwrap();
        w.write(b"half").unwrap();
        drop(w);
        let mut w = s.writer(1 << 20).unwrap();
        w.write(b"hellO").unwrap();
        assert!(matches!(w.commit(Some(&want)), Err(ImageError::DigestMismatch { .. })));
        assert_eq!(s.list().unwrap(), vec![want]);
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0, "no leftovers in tmp/");
    }

    #[test]
    fn pinned_blobs_survive_a_collection_that_began_before_their_row() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(dir.path()).unwrap();
        let (old, _) = s.put(&mut &b"old"[..], None, 1 << 20).unwrap();
        // An ingest pins a blob it finds and one it writes.
        let ing = s.ingest();
        assert!(ing.has(&old));
        let (new, _) = ing.put(&mut &b"new"[..], None, 1 << 20).unwrap();
        let gc = s.collect();
        assert_eq!(gc.retain(&BTreeSet::new()).unwrap(), 0, "pinned blobs stay");
        // Pinned during the collection and released before its retain: still kept.
        drop(ing);
        let late = s.ingest();
        let mut w = late.writer(1 << 20).unwrap();
        w.write(b"late").unwrap();
        let (late_d, _) = w.commit(None).unwrap();
        drop(late);
        assert_eq!(gc.retain(&BTreeSet::new()).unwrap(), 0, "seen during the collection");
        drop(gc);
        // A later collection removes what nobody references or pins.
        assert_eq!(s.retain(&[old.clone()].into_iter().collect()).unwrap(), 2);
        assert!(s.has(&old) && !s.has(&new) && !s.has(&late_d));
    }

    #[test]
    fn digests_cannot_name_paths() {
        for bad in ["sha256:../../etc/passwd", "sha512:00", "sha256:ABC", &format!("sha256:{}", "g".repeat(64)), ""] {
            assert!(Digest::parse(bad).is_err(), "{bad}");
        }
        let hex = "a".repeat(64);
        assert_eq!(Digest::parse(&format!("sha256:{hex}")).unwrap().hex(), hex);
    }
}
