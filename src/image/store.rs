//! A content-addressed blob store (OCI image-spec "content descriptors": `sha256:<64 hex>`).
//!
//! Layout under the store root: `blobs/sha256/<hex>` for blobs, `tmp/` for writes in flight.
//! A write streams into `tmp/` while hashing, is fsync'd, checked against the expected digest,
//! then renamed into place and the directory fsync'd. A crash at any moment leaves either no blob
//! or the whole verified blob; leftovers in `tmp/` are removed when the store opens.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

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
        let s = BlobStore { root: root.to_path_buf() };
        std::fs::create_dir_all(s.blob_dir()).map_err(io("creating the blob directory"))?;
        let tmp = s.root.join("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io("clearing tmp/"))?;
        }
        std::fs::create_dir_all(&tmp).map_err(io("creating tmp/"))?;
        Ok(s)
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
        let mut w = self.writer(max_bytes)?;
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

    /// Start writing a blob chunk by chunk (for sources that are not a [`Read`], such as a
    /// download); at most `max_bytes` bytes. The same guarantees as [`BlobStore::put`]: nothing
    /// is visible before [`BlobWriter::commit`] verifies it, and a writer dropped uncommitted
    /// leaves nothing behind. The writer owns its paths, so it can move to a blocking thread.
    pub fn writer(&self, max_bytes: u64) -> Result<BlobWriter, ImageError> {
        let tmp = self.root.join("tmp").join(format!("{:016x}", rand::random::<u64>()));
        let file = File::options().write(true).create_new(true).open(&tmp).map_err(io("creating a temporary blob"))?;
        Ok(BlobWriter { file, tmp, blob_dir: self.blob_dir(), hash: Sha256::new(), n: 0, max_bytes, done: false })
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

    /// Remove blobs not in `keep` (garbage collection); returns how many were removed.
    pub fn retain(&self, keep: &std::collections::BTreeSet<Digest>) -> Result<usize, ImageError> {
        let mut n = 0;
        for d in self.list()? {
            if !keep.contains(&d) {
                std::fs::remove_file(self.path(&d)).map_err(io(format!("removing {d}")))?;
                n += 1;
            }
        }
        Ok(n)
    }
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
        std::fs::rename(&self.tmp, self.blob_dir.join(got.hex())).map_err(io("moving a blob into place"))?;
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
    fn digests_cannot_name_paths() {
        for bad in ["sha256:../../etc/passwd", "sha512:00", "sha256:ABC", &format!("sha256:{}", "g".repeat(64)), ""] {
            assert!(Digest::parse(bad).is_err(), "{bad}");
        }
        let hex = "a".repeat(64);
        assert_eq!(Digest::parse(&format!("sha256:{hex}")).unwrap().hex(), hex);
    }
}
