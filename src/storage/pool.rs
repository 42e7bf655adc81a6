//! The storage pool: one sparse file per volume (`<pool>/volumes/<id>.img`) and per snapshot
//! (`<pool>/snapshots/<id>.img`).
//!
//! - A volume is created thin: `ftruncate` to its size, so only written blocks take space.
//! - Snapshots and clones copy a file with a reflink (`FICLONE`) where the filesystem supports
//!   it (btrfs, XFS): instant and sharing every block. Elsewhere (ext4) they copy only the data
//!   extents, found with `SEEK_DATA`/`SEEK_HOLE`, so holes stay holes.
//! - Every new file is written under a temporary name, fsync'd and renamed, then the directory is
//!   fsync'd: a crash leaves the old state or the whole new file, never a partial one visible.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use super::{StorageError, io};

/// `FICLONE` (`_IOW(0x94, 9, int)`, `<linux/fs.h>`).
const FICLONE: libc::c_ulong = 0x4004_9409;

/// Bytes in a MiB.
pub const MIB: u64 = 1 << 20;

/// How a copy was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyKind {
    /// A reflink: shares every block with the source.
    Reflink,
    /// The data extents were copied; holes were kept.
    Sparse,
}

/// The pool at a directory.
#[derive(Debug, Clone)]
pub struct Pool {
    /// The pool directory (`volumes/`, `snapshots/`, `mnt/`).
    pub root: PathBuf,
}

/// Provisioned and allocated size of a file, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// The file's length: what the volume offers.
    pub provisioned: u64,
    /// The blocks it occupies on disk (`st_blocks × 512`).
    pub allocated: u64,
}

fn sync_dir(d: &Path) -> Result<(), StorageError> {
    File::open(d).and_then(|f| f.sync_all()).map_err(io(format!("syncing {}", d.display())))
}

impl Pool {
    /// Open (creating its directories) the pool at `root`; leftovers of interrupted writes are
    /// removed and mounted volumes thawed.
    pub fn open(root: &Path) -> Result<Pool, StorageError> {
        for d in ["volumes", "snapshots", "mnt"] {
            std::fs::create_dir_all(root.join(d)).map_err(io(format!("creating {}", root.join(d).display())))?;
        }
        for d in ["volumes", "snapshots"] {
            for e in std::fs::read_dir(root.join(d)).into_iter().flatten().flatten() {
                if e.file_name().to_string_lossy().ends_with(".tmp") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        // A crash during a snapshot may have left a mounted volume frozen.
        for e in std::fs::read_dir(root.join("mnt")).into_iter().flatten().flatten() {
            if super::attach::mounted_device(&e.path()).is_some() && super::attach::thaw(&e.path()) {
                tracing::warn!(volume = %e.file_name().to_string_lossy(), "thawed a volume left frozen by an interrupted snapshot");
            }
        }
        Ok(Pool { root: root.to_path_buf() })
    }

    /// The file of volume `id`.
    pub fn volume_path(&self, id: &str) -> PathBuf {
        self.root.join("volumes").join(format!("{id}.img"))
    }

    /// The file of snapshot `id`.
    pub fn snapshot_path(&self, id: &str) -> PathBuf {
        self.root.join("snapshots").join(format!("{id}.img"))
    }

    /// Where volume `id` is mounted while containers use it.
    pub fn mount_path(&self, id: &str) -> PathBuf {
        self.root.join("mnt").join(id)
    }

    /// The bytes of the pool's filesystem: (total, available).
    pub fn filesystem(&self) -> Result<(u64, u64), StorageError> {
        let s = nix::sys::statvfs::statvfs(&self.root).map_err(|e| StorageError::Io { what: "statvfs".into(), source: e.into() })?;
        Ok((s.blocks() as u64 * s.fragment_size() as u64, s.blocks_available() as u64 * s.fragment_size() as u64))
    }

    /// Create volume `id` of `bytes`, thin. Idempotent: an existing volume is kept.
    pub fn create(&self, id: &str, bytes: u64) -> Result<(), StorageError> {
        let path = self.volume_path(id);
        if path.exists() {
            return Ok(());
        }
        let tmp = path.with_extension("img.tmp");
        let f = File::create(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
        f.set_len(bytes).and_then(|_| f.sync_all()).map_err(io("sizing the volume"))?;
        std::fs::rename(&tmp, &path).map_err(io("placing the volume"))?;
        sync_dir(path.parent().unwrap_or(&self.root))
    }

    /// Grow volume `id` to `bytes` (never shrinks: that would cut a filesystem).
    pub fn grow(&self, id: &str, bytes: u64) -> Result<bool, StorageError> {
        let path = self.volume_path(id);
        let f = File::options().write(true).open(&path).map_err(io(format!("opening {}", path.display())))?;
        let len = f.metadata().map_err(io("stat"))?.len();
        if bytes < len {
            return Err(StorageError::Invalid(format!("a volume only grows: it has {} MiB", len / MIB)));
        }
        if bytes == len {
            return Ok(false);
        }
        f.set_len(bytes).and_then(|_| f.sync_all()).map_err(io("growing the volume"))?;
        Ok(true)
    }

    /// Usage of a volume or snapshot file.
    pub fn usage(path: &Path) -> Result<Usage, StorageError> {
        let m = std::fs::metadata(path).map_err(io(format!("stat {}", path.display())))?;
        Ok(Usage { provisioned: m.len(), allocated: m.blocks() * 512 })
    }

    /// Copy `src` to `dst` (a reflink when possible, else the data extents), atomically.
    pub fn copy(src: &Path, dst: &Path) -> Result<CopyKind, StorageError> {
        // A copy of guest-written bytes is guest-written: marked before it becomes visible.
        if super::check::tainted(src) {
            super::check::taint(dst)?;
        }
        let tmp = dst.with_extension("img.tmp");
        let mut from = File::open(src).map_err(io(format!("opening {}", src.display())))?;
        let mut to = File::create(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
        // SAFETY: FICLONE takes the source descriptor as its argument; both descriptors are open.
        let kind = if unsafe { libc::ioctl(to.as_raw_fd(), FICLONE, from.as_raw_fd()) } == 0 {
            CopyKind::Reflink
        } else {
            copy_extents(&mut from, &mut to)?;
            CopyKind::Sparse
        };
        to.sync_all().map_err(io("syncing the copy"))?;
        std::fs::rename(&tmp, dst).map_err(io("placing the copy"))?;
        if let Some(d) = dst.parent() {
            sync_dir(d)?;
        }
        Ok(kind)
    }

    /// Remove a volume or snapshot file (absent is fine).
    pub fn remove(path: &Path) -> Result<(), StorageError> {
        super::check::clear_taint(path)?;
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StorageError::Io { what: format!("removing {}", path.display()), source: e }),
            _ => Ok(()),
        }
    }
}

/// Copy the data extents of `from` into `to` (same length), leaving holes as holes.
fn copy_extents(from: &mut File, to: &mut File) -> Result<(), StorageError> {
    let len = from.metadata().map_err(io("stat"))?.len();
    to.set_len(len).map_err(io("sizing the copy"))?;
    let fd = from.as_raw_fd();
    let mut pos: i64 = 0;
    let mut buf = vec![0u8; 1 << 20];
    while (pos as u64) < len {
        // SAFETY: lseek on an open descriptor; errors (ENXIO past the last extent) are checked.
        let data = unsafe { libc::lseek(fd, pos, libc::SEEK_DATA) };
        if data < 0 {
            break;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        let end = if hole < 0 { len as i64 } else { hole };
        from.seek(SeekFrom::Start(data as u64)).map_err(io("seek"))?;
        to.seek(SeekFrom::Start(data as u64)).map_err(io("seek"))?;
        let mut left = (end - data) as u64;
        while left > 0 {
            let n = (left as usize).min(buf.len());
            from.read_exact(&mut buf[..n]).map_err(io("reading the source"))?;
            to.write_all(&buf[..n]).map_err(io("writing the copy"))?;
            left -= n as u64;
        }
        pos = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_are_thin_grow_only_and_copies_keep_holes() {
        let d = tempfile::tempdir().expect("tmp");
        let p = Pool::open(d.path()).expect("pool");
        p.create("vol-a", 64 * MIB).expect("create");
        let u = Pool::usage(&p.volume_path("vol-a")).expect("usage");
        assert_eq!(u.provisioned, 64 * MIB);
        assert!(u.allocated < MIB, "thin: {u:?}");
        // Data at 1 MiB and 40 MiB, holes elsewhere.
        let mut f = File::options().write(true).open(p.volume_path("vol-a")).expect("open");
        for off in [MIB, 40 * MIB] {
            f.seek(SeekFrom::Start(off)).expect("seek");
            f.write_all(&[7u8; 8192]).expect("write");
        }
        f.sync_all().expect("sync");
        assert!(matches!(p.grow("vol-a", 32 * MIB), Err(StorageError::Invalid(_))));
        assert!(p.grow("vol-a", 96 * MIB).expect("grow"));
        assert!(!p.grow("vol-a", 96 * MIB).expect("same size"));
        let snap = p.snapshot_path("snap-a");
        let kind = Pool::copy(&p.volume_path("vol-a"), &snap).expect("copy");
        let (a, b) = (std::fs::read(p.volume_path("vol-a")).expect("a"), std::fs::read(&snap).expect("b"));
        assert_eq!(a, b, "{kind:?} copy is identical");
        let su = Pool::usage(&snap).expect("usage");
        assert_eq!(su.provisioned, 96 * MIB);
        assert!(su.allocated < 4 * MIB, "holes kept: {su:?}");
        // Leftovers of an interrupted copy disappear when the pool opens.
        std::fs::write(p.root.join("snapshots/snap-b.img.tmp"), b"partial").expect("tmp");
        Pool::open(d.path()).expect("reopen");
        assert!(!p.root.join("snapshots/snap-b.img.tmp").exists());
    }
}
