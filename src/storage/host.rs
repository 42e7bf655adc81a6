//! The seam between the volume and snapshot reconcilers and the host: every file, loop-mount,
//! freeze and filesystem step on the storage pool goes through [`VolumeHost`], keyed by volume
//! and snapshot id (the pool's layout stays behind it).
//!
//! [`PoolHost`] is the real one ([`Pool`] files, [`attach`] mounts, [`check`] marks and the
//! confined e2fsck). [`RecordingVolumeHost`] records each call and keeps just enough state
//! (which files exist, their sizes, which volumes are mounted or guest-written) to answer the
//! queries, so reconcile decisions can be tested without root or a filesystem.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::pool::{CopyKind, MIB, Pool, Usage};
use super::{StorageError, attach, check};

/// Storage pool operations. Each is idempotent (a repeat leaves the host as one call does), and
/// errors are [`StorageError`]s naming the step that failed.
pub trait VolumeHost: Send + Sync {
    /// The file of volume `id` (also the raw disk an instance is given).
    fn volume_file(&self, id: &str) -> PathBuf;
    /// Whether volume `id`'s file exists.
    fn volume_exists(&self, id: &str) -> bool;
    /// Whether snapshot `id`'s file exists.
    fn snapshot_exists(&self, id: &str) -> bool;
    /// The pool filesystem's bytes: (total, available).
    fn filesystem(&self) -> Result<(u64, u64), StorageError>;
    /// Make volume `id` thin, of `bytes`; an existing one is kept.
    fn create_volume(&self, id: &str, bytes: u64) -> Result<(), StorageError>;
    /// Make volume `id` a copy of snapshot `snapshot`.
    fn clone_snapshot(&self, snapshot: &str, id: &str) -> Result<CopyKind, StorageError>;
    /// Grow volume `id`'s file to `bytes`; whether it grew. Smaller than now is `Invalid`.
    fn grow_volume(&self, id: &str, bytes: u64) -> Result<bool, StorageError>;
    /// Grow volume `id`'s mounted filesystem to its file; whether that happened online.
    fn fill(&self, id: &str) -> Result<bool, StorageError>;
    /// Whether volume `id` is mounted on the host (for containers).
    fn mounted(&self, id: &str) -> bool;
    /// Mount volume `id` (formatting it first when blank); the mount directory.
    fn mount(&self, id: &str) -> Result<PathBuf, StorageError>;
    /// Unmount volume `id` (lazily); not mounted is fine.
    fn unmount(&self, id: &str) -> Result<(), StorageError>;
    /// Unmount and remove volume `id`'s file and mount directory; absent is fine.
    fn remove_volume(&self, id: &str) -> Result<(), StorageError>;
    /// Copy volume `volume` to snapshot `id` at one point in time (frozen while mounted).
    fn snapshot(&self, volume: &str, id: &str) -> Result<CopyKind, StorageError>;
    /// Remove snapshot `id`'s file; absent is fine.
    fn remove_snapshot(&self, id: &str) -> Result<(), StorageError>;
    /// Provisioned and allocated bytes of volume `id`.
    fn volume_usage(&self, id: &str) -> Result<Usage, StorageError>;
    /// Provisioned and allocated bytes of snapshot `id`.
    fn snapshot_usage(&self, id: &str) -> Result<Usage, StorageError>;
    /// Format volume `id` as ext4 when it holds no filesystem; whether it did.
    fn format_if_blank(&self, id: &str) -> Result<bool, StorageError>;
    /// Whether volume `id` is marked guest-written (see [`check`]).
    fn guest_written(&self, id: &str) -> bool;
    /// Mark volume `id` guest-written, durably.
    fn mark_guest_written(&self, id: &str) -> Result<(), StorageError>;
    /// Check and repair volume `id`'s filesystem in the confined checker; the mark is lifted
    /// when it ends clean.
    fn check(&self, id: &str) -> Result<check::CheckOutcome, StorageError>;
}

/// The real pool: [`Pool`] files, [`attach`] mounts, [`check`] marks.
#[derive(Debug, Clone)]
pub struct PoolHost {
    pool: Pool,
}

impl PoolHost {
    /// Open the pool at `root` (see [`Pool::open`]: leftovers removed, frozen volumes thawed).
    pub fn open(root: &Path) -> Result<PoolHost, StorageError> {
        Ok(PoolHost { pool: Pool::open(root)? })
    }
}

impl VolumeHost for PoolHost {
    fn volume_file(&self, id: &str) -> PathBuf {
        self.pool.volume_path(id)
    }
    fn volume_exists(&self, id: &str) -> bool {
        self.pool.volume_path(id).exists()
    }
    fn snapshot_exists(&self, id: &str) -> bool {
        self.pool.snapshot_path(id).exists()
    }
    fn filesystem(&self) -> Result<(u64, u64), StorageError> {
        self.pool.filesystem()
    }
    fn create_volume(&self, id: &str, bytes: u64) -> Result<(), StorageError> {
        self.pool.create(id, bytes)
    }
    fn clone_snapshot(&self, snapshot: &str, id: &str) -> Result<CopyKind, StorageError> {
        Pool::copy(&self.pool.snapshot_path(snapshot), &self.pool.volume_path(id))
    }
    fn grow_volume(&self, id: &str, bytes: u64) -> Result<bool, StorageError> {
        self.pool.grow(id, bytes)
    }
    fn fill(&self, id: &str) -> Result<bool, StorageError> {
        attach::fill(&self.pool.mount_path(id))
    }
    fn mounted(&self, id: &str) -> bool {
        attach::mounted_device(&self.pool.mount_path(id)).is_some()
    }
    fn mount(&self, id: &str) -> Result<PathBuf, StorageError> {
        attach::ensure_mounted(&self.pool.volume_path(id), &self.pool.mount_path(id), id)
    }
    fn unmount(&self, id: &str) -> Result<(), StorageError> {
        attach::unmount(&self.pool.mount_path(id))
    }
    fn remove_volume(&self, id: &str) -> Result<(), StorageError> {
        let dir = self.pool.mount_path(id);
        attach::unmount(&dir)?;
        let _ = std::fs::remove_dir(&dir);
        Pool::remove(&self.pool.volume_path(id))
    }
    fn snapshot(&self, volume: &str, id: &str) -> Result<CopyKind, StorageError> {
        let (src, dst) = (self.pool.volume_path(volume), self.pool.snapshot_path(id));
        attach::frozen(&self.pool.mount_path(volume), || Pool::copy(&src, &dst))
    }
    fn remove_snapshot(&self, id: &str) -> Result<(), StorageError> {
        Pool::remove(&self.pool.snapshot_path(id))
    }
    fn volume_usage(&self, id: &str) -> Result<Usage, StorageError> {
        Pool::usage(&self.pool.volume_path(id))
    }
    fn snapshot_usage(&self, id: &str) -> Result<Usage, StorageError> {
        Pool::usage(&self.pool.snapshot_path(id))
    }
    fn format_if_blank(&self, id: &str) -> Result<bool, StorageError> {
        attach::format_if_blank(&self.pool.volume_path(id), id)
    }
    fn guest_written(&self, id: &str) -> bool {
        check::tainted(&self.pool.volume_path(id))
    }
    fn mark_guest_written(&self, id: &str) -> Result<(), StorageError> {
        check::taint(&self.pool.volume_path(id))
    }
    fn check(&self, id: &str) -> Result<check::CheckOutcome, StorageError> {
        let file = self.pool.volume_path(id);
        let outcome = check::check_confined(&file)?;
        check::clear_taint(&file)?;
        Ok(outcome)
    }
}

/// One call to a [`RecordingVolumeHost`] that changes the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeCall {
    /// `create_volume(id, bytes)`.
    Create(String, u64),
    /// `clone_snapshot(snapshot, id)`.
    Clone { snapshot: String, volume: String },
    /// `grow_volume(id, bytes)` that grew it.
    Grow(String, u64),
    /// `fill(id)` of a mounted volume.
    Fill(String),
    /// `mount(id)` of a volume not mounted yet.
    Mount(String),
    /// `unmount(id)` of a mounted volume.
    Unmount(String),
    /// `remove_volume(id)` of an existing volume.
    RemoveVolume(String),
    /// `snapshot(volume, id)`, with whether the volume was mounted (so frozen) then.
    Snapshot { volume: String, snapshot: String, frozen: bool },
    /// `remove_snapshot(id)` of an existing snapshot.
    RemoveSnapshot(String),
    /// `format_if_blank(id)` that formatted.
    Format(String),
    /// `mark_guest_written(id)`.
    Mark(String),
    /// `check(id)`.
    Check(String),
}

#[derive(Debug, Default)]
struct FakePool {
    calls: Vec<VolumeCall>,
    /// Volume id → its file's bytes.
    volumes: BTreeMap<String, u64>,
    snapshots: BTreeMap<String, u64>,
    mounted: BTreeSet<String>,
    formatted: BTreeSet<String>,
    marked: BTreeSet<String>,
}

/// A recording [`VolumeHost`]: a pool of `capacity` bytes that exists only in memory. Changes
/// are recorded in call order ([`RecordingVolumeHost::take`]); a call that finds the host
/// already as asked changes nothing and records nothing, like the real one.
#[derive(Debug)]
pub struct RecordingVolumeHost {
    capacity: u64,
    state: Mutex<FakePool>,
}

impl Default for RecordingVolumeHost {
    fn default() -> Self {
        RecordingVolumeHost { capacity: 1 << 40, state: Mutex::default() }
    }
}

impl RecordingVolumeHost {
    fn with<T>(&self, f: impl FnOnce(&mut FakePool) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The calls so far, in order; clears the record.
    pub fn take(&self) -> Vec<VolumeCall> {
        self.with(|s| std::mem::take(&mut s.calls))
    }

    /// Mark a volume mounted, as a container's attach would have left it.
    pub fn set_mounted(&self, id: &str) {
        self.with(|s| s.mounted.insert(id.to_string()));
    }
}

fn missing(what: &str, id: &str) -> StorageError {
    StorageError::Io { what: format!("opening {what} {id}"), source: std::io::ErrorKind::NotFound.into() }
}

fn usage_of(bytes: Option<&u64>, what: &str, id: &str) -> Result<Usage, StorageError> {
    bytes.map(|b| Usage { provisioned: *b, allocated: 0 }).ok_or_else(|| missing(what, id))
}

impl VolumeHost for RecordingVolumeHost {
    fn volume_file(&self, id: &str) -> PathBuf {
        PathBuf::from(format!("/fake-pool/volumes/{id}.img"))
    }
    fn volume_exists(&self, id: &str) -> bool {
        self.with(|s| s.volumes.contains_key(id))
    }
    fn snapshot_exists(&self, id: &str) -> bool {
        self.with(|s| s.snapshots.contains_key(id))
    }
    fn filesystem(&self) -> Result<(u64, u64), StorageError> {
        let used: u64 = self.with(|s| s.volumes.values().chain(s.snapshots.values()).sum());
        Ok((self.capacity, self.capacity.saturating_sub(used)))
    }
    fn create_volume(&self, id: &str, bytes: u64) -> Result<(), StorageError> {
        self.with(|s| {
            if !s.volumes.contains_key(id) {
                s.volumes.insert(id.into(), bytes);
                s.calls.push(VolumeCall::Create(id.into(), bytes));
            }
        });
        Ok(())
    }
    fn clone_snapshot(&self, snapshot: &str, id: &str) -> Result<CopyKind, StorageError> {
        self.with(|s| {
            let bytes = *s.snapshots.get(snapshot).ok_or_else(|| missing("snapshot", snapshot))?;
            s.volumes.insert(id.into(), bytes);
            if s.formatted.contains(snapshot) {
                s.formatted.insert(id.into());
            }
            s.calls.push(VolumeCall::Clone { snapshot: snapshot.into(), volume: id.into() });
            Ok(CopyKind::Sparse)
        })
    }
    fn grow_volume(&self, id: &str, bytes: u64) -> Result<bool, StorageError> {
        self.with(|s| {
            let len = s.volumes.get_mut(id).ok_or_else(|| missing("volume", id))?;
            if bytes < *len {
                return Err(StorageError::Invalid(format!("a volume only grows: it has {} MiB", *len / MIB)));
            }
            let grew = bytes > *len;
            if grew {
                *len = bytes;
                s.calls.push(VolumeCall::Grow(id.into(), bytes));
            }
            Ok(grew)
        })
    }
    fn fill(&self, id: &str) -> Result<bool, StorageError> {
        self.with(|s| {
            let mounted = s.mounted.contains(id);
            if mounted {
                s.calls.push(VolumeCall::Fill(id.into()));
            }
            Ok(mounted)
        })
    }
    fn mounted(&self, id: &str) -> bool {
        self.with(|s| s.mounted.contains(id))
    }
    fn mount(&self, id: &str) -> Result<PathBuf, StorageError> {
        self.with(|s| {
            if !s.volumes.contains_key(id) {
                return Err(missing("volume", id));
            }
            if s.formatted.insert(id.into()) {
                s.calls.push(VolumeCall::Format(id.into()));
            }
            if s.mounted.insert(id.into()) {
                s.calls.push(VolumeCall::Mount(id.into()));
            }
            Ok(PathBuf::from(format!("/fake-pool/mnt/{id}")))
        })
    }
    fn unmount(&self, id: &str) -> Result<(), StorageError> {
        self.with(|s| {
            if s.mounted.remove(id) {
                s.calls.push(VolumeCall::Unmount(id.into()));
            }
        });
        Ok(())
    }
    fn remove_volume(&self, id: &str) -> Result<(), StorageError> {
        self.unmount(id)?;
        self.with(|s| {
            s.marked.remove(id);
            s.formatted.remove(id);
            if s.volumes.remove(id).is_some() {
                s.calls.push(VolumeCall::RemoveVolume(id.into()));
            }
        });
        Ok(())
    }
    fn snapshot(&self, volume: &str, id: &str) -> Result<CopyKind, StorageError> {
        self.with(|s| {
            let bytes = *s.volumes.get(volume).ok_or_else(|| missing("volume", volume))?;
            s.snapshots.insert(id.into(), bytes);
            if s.formatted.contains(volume) {
                s.formatted.insert(id.into());
            }
            let frozen = s.mounted.contains(volume);
            s.calls.push(VolumeCall::Snapshot { volume: volume.into(), snapshot: id.into(), frozen });
            Ok(CopyKind::Sparse)
        })
    }
    fn remove_snapshot(&self, id: &str) -> Result<(), StorageError> {
        self.with(|s| {
            if s.snapshots.remove(id).is_some() {
                s.calls.push(VolumeCall::RemoveSnapshot(id.into()));
            }
        });
        Ok(())
    }
    fn volume_usage(&self, id: &str) -> Result<Usage, StorageError> {
        self.with(|s| usage_of(s.volumes.get(id), "volume", id))
    }
    fn snapshot_usage(&self, id: &str) -> Result<Usage, StorageError> {
        self.with(|s| usage_of(s.snapshots.get(id), "snapshot", id))
    }
    fn format_if_blank(&self, id: &str) -> Result<bool, StorageError> {
        self.with(|s| {
            if !s.volumes.contains_key(id) {
                return Err(missing("volume", id));
            }
            let fresh = s.formatted.insert(id.into());
            if fresh {
                s.calls.push(VolumeCall::Format(id.into()));
            }
            Ok(fresh)
        })
    }
    fn guest_written(&self, id: &str) -> bool {
        self.with(|s| s.marked.contains(id))
    }
    fn mark_guest_written(&self, id: &str) -> Result<(), StorageError> {
        self.with(|s| {
            s.marked.insert(id.into());
            s.calls.push(VolumeCall::Mark(id.into()));
        });
        Ok(())
    }
    fn check(&self, id: &str) -> Result<check::CheckOutcome, StorageError> {
        self.with(|s| {
            s.marked.remove(id);
            s.calls.push(VolumeCall::Check(id.into()));
        });
        Ok(check::CheckOutcome { code: 0, summary: "clean".into() })
    }
}
