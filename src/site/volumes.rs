//! Block volumes and snapshots of a project, on the storage pool ([`crate::storage`]).
//!
//! A volume is a thin file of `size_mib`, optionally cloned from a snapshot; it grows (never
//! shrinks) through `PATCH`. Containers mount it (`mounts: [{volume, target}]`): it is formatted
//! as ext4 on first use and mounted once on the host, then bound into each container. A snapshot
//! copies a volume at one point in time (the filesystem is frozen while a mounted volume is
//! copied). The volume and snapshot reconcilers make the files; deleting a volume is refused
//! while a container mounts it.

use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::lookup::{resolve, spec_of};
use super::model::Status;
use super::quotas;
use super::reconcile::{Controller, Outcome};
use super::resource_kind::{Creatable, Labels, Patchable, ResourceKind};
use super::{Kind, ProjectCtx, Resource, Site, SiteError};
use crate::state::{ResourceRow, repo};
use crate::storage::StorageError;
use crate::storage::pool::MIB;

/// Smallest volume, MiB.
pub const MIN_MIB: u64 = 16;
/// Largest volume, MiB (16 TiB).
pub const MAX_MIB: u64 = 16 << 20;

/// Spec of a volume.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeSpec {
    /// Size in MiB (16 to 16 MiB × 2^20, i.e. 16 TiB); only grows. With `source_snapshot` it
    /// defaults to the snapshot's size and may not be smaller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_mib: Option<u64>,
    /// Make the volume a copy of this snapshot (id or name on create; stored as the id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_snapshot: Option<String>,
}

/// Spec of a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotSpec {
    /// The volume (id or name on create; stored as the id).
    pub volume: String,
    /// Set by the site: the volume's size when the snapshot was requested, MiB. It counts
    /// against the project's `volume_mib` quota and the pool's capacity, as a full copy would
    /// (a reflink copy is smaller until the volume is rewritten). A value given on create is
    /// replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_mib: Option<u64>,
}

fn storage_err(e: StorageError) -> SiteError {
    match e {
        StorageError::Invalid(m) => SiteError::invalid("spec.size_mib", m),
        other => SiteError::Storage(other),
    }
}

/// Inside a transaction: the project's `volume_mib` quota and the site's pool have room for `add`
/// more MiB (of a volume, or of a snapshot: both count). A full pool is a 409 naming `field`.
fn check_capacity(site: &Site, c: &Connection, p: &ProjectCtx, add: u64, field: &str) -> Result<(), SiteError> {
    let project = quotas::provisioned_mib(c, Some(&p.id))?;
    if let Some(limit) = super::projects::quota(c, p, super::projects::VOLUME_MIB_QUOTA)?
        && project + add > limit
    {
        return Err(SiteError::QuotaExceeded { kind: "volume_mib".into(), limit });
    }
    let capacity = match site.config().storage.capacity_mib {
        0 => site.volume_host().filesystem().map_err(storage_err)?.0 / MIB,
        n => n,
    };
    let site_total = quotas::provisioned_mib(c, None)?;
    if site_total + add > capacity {
        return Err(SiteError::ConflictOn {
            field: field.into(),
            message: format!("the storage pool has {} of {capacity} MiB left", capacity.saturating_sub(site_total)),
        });
    }
    Ok(())
}

impl Site {
    /// Prepare volume `id` as an instance's disk: formatted as ext4 when blank (the same code as
    /// container mounts), and not mounted on the host. A `writable` disk is marked guest-written
    /// (durably, before the VM gets it; see [`crate::storage::check`]). Its file, or `None` while
    /// the volume is not made yet or still mounted for a container that is going away.
    pub fn volume_for_instance(&self, id: &str, writable: bool) -> Result<Option<std::path::PathBuf>, SiteError> {
        let h = self.volume_host();
        if !h.volume_exists(id) {
            return Ok(None);
        }
        let _g = lock();
        if h.mounted(id) || checking().contains(id) {
            return Ok(None);
        }
        h.format_if_blank(id).map_err(storage_err)?;
        if writable {
            h.mark_guest_written(id).map_err(storage_err)?;
        }
        Ok(Some(h.volume_file(id)))
    }

    /// Whether volume `id` was written by a guest and not checked since (no container may
    /// mount it then).
    pub fn volume_guest_written(&self, id: &str) -> Result<bool, SiteError> {
        Ok(self.volume_host().guest_written(id))
    }

    /// Check (and repair) a volume's filesystem in the confined checker, which lifts the
    /// guest-written mark on success. Errors: 409 naming `id` while an instance or a container
    /// uses it; 422 naming `id` when the filesystem has errors left (the mark stays).
    pub fn check_volume(&self, p: &ProjectCtx, r: &str) -> Result<Resource, SiteError> {
        let vol = self.get(Kind::Volume, Some(p), r)?;
        let h = self.volume_host();
        {
            let _g = lock();
            if let Some(u) = self.read(|c| super::workload::mounted_by(c, &vol.id))?.first() {
                return Err(SiteError::ConflictOn {
                    field: "id".into(),
                    message: format!("volume {} is attached to {} {}; detach it first", vol.name, u.kind, u.name),
                });
            }
            if h.mounted(&vol.id) || !h.volume_exists(&vol.id) || !checking().insert(vol.id.clone()) {
                return Err(SiteError::ConflictOn {
                    field: "id".into(),
                    message: format!("volume {} is busy (mounted, being checked or not made yet); try again", vol.name),
                });
            }
        }
        // The check runs without the volumes' lock (its time is the tenant's); while it runs an
        // instance waits for the disk, and a container cannot mount it (it is still marked).
        let outcome = h.check(&vol.id);
        checking().remove(&vol.id);
        let (ok, message) = match &outcome {
            Ok(o) => (true, format!("e2fsck exit code {}: {}", o.code, o.summary)),
            Err(e) => (false, e.to_string()),
        };
        self.set_status(&vol.id, |st, _| {
            st.set_condition("FilesystemChecked", ok, if ok { "Clean" } else { "Errors" }, &message);
            st.extra.insert("guest_written".into(), (!ok).into());
        })?;
        tracing::info!(volume = %vol.id, ok, "volume filesystem checked");
        if !ok {
            return Err(SiteError::invalid("id", format!("volume {}'s filesystem has errors the check could not repair: {message}", vol.name)));
        }
        self.get(Kind::Volume, Some(p), &vol.id)
    }

    /// Mount volume `id` for a container (formatting it on first use); its mount directory, or
    /// `None` while the volume is not made yet.
    pub fn mount_volume(&self, id: &str) -> Result<Option<std::path::PathBuf>, SiteError> {
        let h = self.volume_host();
        if !h.volume_exists(id) {
            return Ok(None);
        }
        if h.guest_written(id) {
            return Err(SiteError::Conflict(format!(
                "volume {id} was written by a guest; check it (POST /v1/volumes/{id}/check) before a container mounts it"
            )));
        }
        let _g = lock();
        h.mount(id).map(Some).map_err(storage_err)
    }
}

/// The volumes whose filesystem check is running.
fn checking() -> std::sync::MutexGuard<'static, std::collections::BTreeSet<String>> {
    static CHECKING: std::sync::Mutex<std::collections::BTreeSet<String>> = std::sync::Mutex::new(std::collections::BTreeSet::new());
    CHECKING.lock().unwrap_or_else(|p| p.into_inner())
}

/// Serializes mounting, growing and freezing of volumes across the reconcilers.
fn lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// The volume reconciler: makes, grows and removes volume files, unmounts volumes no container
/// mounts, and reports usage.
pub struct VolumeController;

impl Controller for VolumeController {
    fn kind(&self) -> Kind {
        Kind::Volume
    }

    fn watches(&self) -> &'static [Kind] {
        &[Kind::Container, Kind::Instance]
    }

    async fn reconcile(&self, site: &Site, id: &str) -> Result<Outcome, SiteError> {
        let id = id.to_string();
        site.run(move |s| reconcile_volume(s, &id)).await
    }
}

fn reconcile_volume(site: &Site, id: &str) -> Result<Outcome, SiteError> {
    let h = site.volume_host();
    let Some(row) = site.read(|c| Ok(repo::get(c, id)?))? else {
        let _g = lock();
        h.remove_volume(id).map_err(storage_err)?;
        return Ok(Outcome::Done);
    };
    let spec: VolumeSpec = spec_of(&row)?;
    let bytes = spec.size_mib.unwrap_or(MIN_MIB) * MIB;
    let _g = lock();
    if !h.volume_exists(id) {
        match &spec.source_snapshot {
            Some(snap) => {
                h.clone_snapshot(snap, id).map_err(storage_err)?;
            }
            None => h.create_volume(id, bytes).map_err(storage_err)?,
        }
    }
    let grown = h.grow_volume(id, bytes).map_err(storage_err)?;
    let online = if grown { Some(h.fill(id).map_err(storage_err)?) } else { None };
    let users = site.read(|c| super::workload::mounted_by(c, id))?;
    // Containers deleted from state may still be stopping and writing: keep the volume mounted
    // until their directories are gone, and look again until then.
    let binding = site.container_host().binding(&site.config().data_dir, id);
    let stopping = binding.iter().any(|c| !users.iter().any(|u| &u.id == c));
    // Only containers mount a volume on the host; an instance's disk must not be mounted.
    if !users.iter().any(|u| u.kind == Kind::Container.as_str()) && binding.is_empty() {
        h.unmount(id).map_err(storage_err)?;
    }
    let usage = h.volume_usage(id).map_err(storage_err)?;
    let mounted = h.mounted(id);
    site.set_status(id, |st, row| {
        st.phase = if users.is_empty() && binding.is_empty() { "Available" } else { "InUse" }.into();
        st.observed_generation = row.generation;
        st.extra.insert("path".into(), h.volume_file(id).display().to_string().into());
        st.extra.insert("provisioned_bytes".into(), usage.provisioned.into());
        st.extra.insert("allocated_bytes".into(), usage.allocated.into());
        // Containers by name; ones already deleted but still stopping by id.
        let mut attached: Vec<String> = users.iter().map(|u| u.name.clone()).collect();
        attached.extend(binding.iter().filter(|c| !users.iter().any(|u| &u.id == *c)).cloned());
        st.extra.insert("attached_to".into(), serde_json::json!(attached));
        st.extra.insert("mounted".into(), mounted.into());
        st.extra.insert("guest_written".into(), h.guest_written(id).into());
        match online {
            Some(true) => st.set_condition("FilesystemResized", true, "Online", ""),
            Some(false) if mounted => st.set_condition(
                "FilesystemResized",
                false,
                "OnNextAttach",
                "the filesystem grows when the volume is next attached (online growth needs CAP_SYS_RESOURCE)",
            ),
            _ => {}
        }
    })?;
    Ok(if stopping { Outcome::RequeueAfter(std::time::Duration::from_secs(1)) } else { Outcome::Done })
}

/// The snapshot reconciler: copies the volume once (frozen while mounted), removes deleted ones.
pub struct SnapshotController;

impl Controller for SnapshotController {
    fn kind(&self) -> Kind {
        Kind::Snapshot
    }

    async fn reconcile(&self, site: &Site, id: &str) -> Result<Outcome, SiteError> {
        let id = id.to_string();
        site.run(move |s| reconcile_snapshot(s, &id)).await
    }
}

fn reconcile_snapshot(site: &Site, id: &str) -> Result<Outcome, SiteError> {
    let h = site.volume_host();
    let Some(row) = site.read(|c| Ok(repo::get(c, id)?))? else {
        h.remove_snapshot(id).map_err(storage_err)?;
        return Ok(Outcome::Done);
    };
    let st: Status = serde_json::from_str(&row.status).unwrap_or_default();
    if st.phase == "Ready" && h.snapshot_exists(id) {
        return Ok(Outcome::Done);
    }
    let spec: SnapshotSpec = spec_of(&row)?;
    if !h.volume_exists(&spec.volume) {
        // The volume is not made yet (or is gone: then the snapshot can never be taken).
        let gone = site.read(|c| Ok(repo::get(c, &spec.volume)?))?.is_none();
        if gone {
            site.set_status(id, |s, _| {
                s.phase = "Failed".into();
                s.extra.insert("message".into(), "the volume was deleted before the snapshot was taken".into());
            })?;
            return Ok(Outcome::Done);
        }
        return Ok(Outcome::RequeueAfter(std::time::Duration::from_millis(300)));
    }
    let kind = {
        let _g = lock();
        h.snapshot(&spec.volume, id).map_err(storage_err)?
    };
    let usage = h.snapshot_usage(id).map_err(storage_err)?;
    site.set_status(id, |s, row| {
        s.phase = "Ready".into();
        s.observed_generation = row.generation;
        s.extra.insert("size_mib".into(), (usage.provisioned / MIB).into());
        s.extra.insert("allocated_bytes".into(), usage.allocated.into());
        s.extra.insert("copy".into(), format!("{kind:?}").to_lowercase().into());
        s.extra.insert("taken_at".into(), super::model::now_rfc3339().into());
    })?;
    Ok(Outcome::Done)
}

impl ResourceKind for VolumeSpec {
    const KIND: Kind = Kind::Volume;

    /// A volume a workload mounts or attaches, or a stopping container still binds, stays.
    fn check_delete(site: &Site, c: &Connection, row: &ResourceRow) -> Result<(), SiteError> {
        if let Some(u) = super::workload::mounted_by(c, &row.id)?.first() {
            return Err(SiteError::Conflict(format!("volume {} is attached to {} {}", row.name, u.kind, u.name)));
        }
        if let Some(c) = site.container_host().binding(&site.config().data_dir, &row.id).first() {
            return Err(SiteError::Conflict(format!("volume {} is still attached to container {c}, which is stopping", row.name)));
        }
        Ok(())
    }
}

impl Creatable for VolumeSpec {
    /// Create a volume (thin), or a clone of a snapshot.
    fn create(site: &Site, p: &ProjectCtx, name: &str, labels: &Labels, spec: Value) -> Result<Resource, SiteError> {
        let mut s: VolumeSpec = serde_json::from_value(spec).map_err(|e| SiteError::invalid("spec", e.to_string()))?;
        let pc = p.clone();
        site.create_with(Kind::Volume, Some(p), name, labels, &Status::phase("Creating"), None, |c| {
            let mut min = MIN_MIB;
            if let Some(snap) = &s.source_snapshot {
                let row = resolve(c, Kind::Snapshot, &pc, "spec.source_snapshot", snap)?;
                let st: Status = serde_json::from_str(&row.status)?;
                if st.phase != "Ready" {
                    return Err(SiteError::ConflictOn { field: "spec.source_snapshot".into(), message: format!("snapshot {} is {}", row.name, st.phase) });
                }
                min = st.extra.get("size_mib").and_then(Value::as_u64).unwrap_or(MIN_MIB);
                s.size_mib = Some(s.size_mib.unwrap_or(min));
                s.source_snapshot = Some(row.id);
            }
            let size = s.size_mib.ok_or_else(|| SiteError::invalid("spec.size_mib", "give the size in MiB"))?;
            if !(min..=MAX_MIB).contains(&size) {
                return Err(SiteError::invalid("spec.size_mib", format!("between {min} and {MAX_MIB} MiB")));
            }
            check_capacity(site, c, &pc, size, "spec.size_mib")?;
            Ok(serde_json::to_value(&s)?)
        })
    }
}

impl Patchable for VolumeSpec {
    /// Grow a volume (`{"spec": {"size_mib": N}}`); shrinking and changing the source are refused.
    fn update(site: &Site, p: &ProjectCtx, r: &str, if_match: Option<i64>, labels: Option<&Labels>, patch: Option<&Value>) -> Result<Resource, SiteError> {
        let cur: VolumeSpec = site.get(Kind::Volume, Some(p), r)?.spec_as()?;
        let pc = p.clone();
        site.update(Kind::Volume, Some(p), r, if_match, labels, patch, &|c, v| {
            let s: VolumeSpec = serde_json::from_value(v).map_err(|e| SiteError::invalid("spec", e.to_string()))?;
            if s.source_snapshot != cur.source_snapshot {
                return Err(SiteError::invalid("spec.source_snapshot", "fixed at create"));
            }
            let (old, new) = (cur.size_mib.unwrap_or(0), s.size_mib.unwrap_or(0));
            if new < old {
                return Err(SiteError::invalid("spec.size_mib", format!("a volume only grows: it has {old} MiB")));
            }
            if new > MAX_MIB {
                return Err(SiteError::invalid("spec.size_mib", format!("at most {MAX_MIB} MiB")));
            }
            check_capacity(site, c, &pc, new - old, "spec.size_mib")?;
            Ok(serde_json::to_value(&s)?)
        })
    }
}

impl ResourceKind for SnapshotSpec {
    const KIND: Kind = Kind::Snapshot;

    /// A snapshot a volume is still being cloned from stays.
    fn check_delete(_site: &Site, c: &Connection, row: &ResourceRow) -> Result<(), SiteError> {
        for v in repo::referencing(c, Kind::Volume.as_str(), "$.source_snapshot", &row.id)? {
            if serde_json::from_str::<Status>(&v.status).is_ok_and(|s| s.phase == "Creating") {
                return Err(SiteError::Conflict(format!("volume {} is being cloned from snapshot {}", v.name, row.name)));
            }
        }
        Ok(())
    }
}

impl Creatable for SnapshotSpec {
    /// Take a snapshot of a volume (the snapshot reconciler copies it).
    fn create(site: &Site, p: &ProjectCtx, name: &str, labels: &Labels, spec: Value) -> Result<Resource, SiteError> {
        let mut s: SnapshotSpec = serde_json::from_value(spec).map_err(|e| SiteError::invalid("spec", e.to_string()))?;
        let pc = p.clone();
        site.create_with(Kind::Snapshot, Some(p), name, labels, &Status::phase("Pending"), None, |c| {
            let vol = resolve(c, Kind::Volume, &pc, "spec.volume", &s.volume)?;
            let size = quotas::provisioned_by(&vol);
            check_capacity(site, c, &pc, size, "spec.volume")?;
            s.size_mib = Some(size);
            s.volume = vol.id;
            Ok(serde_json::to_value(&s)?)
        })
    }
}

#[cfg(test)]
#[path = "volumes_tests.rs"]
mod tests;
