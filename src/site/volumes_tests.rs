//! The volume and snapshot reconcilers' decisions, through the recording
//! [`crate::storage::host::VolumeHost`]: no root, no loop devices, no ext4. What the host then
//! does with each call is tested by the integration tests (`volumes::`).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;

use super::*;
use crate::container::host::ContainerHost;
use crate::container::runtime::Layout;
use crate::site::test_fixture::{Fixture, fixture, fixture_with};
use crate::storage::host::{VolumeCall, VolumeHost};

fn volume(f: &Fixture, name: &str, mib: u64) -> String {
    f.site.create_resource::<VolumeSpec>(&f.p, name, &BTreeMap::new(), json!({"size_mib": mib})).expect("volume").id
}

#[test]
fn a_volume_is_made_thin_once_and_grows_online_only_while_mounted() {
    let f = fixture();
    let id = volume(&f, "data", 64);
    assert_eq!(reconcile_volume(&f.site, &id).expect("pass"), Outcome::Done);
    assert_eq!(f.rec.volumes.take(), vec![VolumeCall::Create(id.clone(), 64 * MIB)]);
    let st = f.status(Kind::Volume, &id);
    assert_eq!(st.phase, "Available");
    assert_eq!(st.extra["provisioned_bytes"], json!(64 * MIB));
    // A second pass finds the host as asked and changes nothing.
    reconcile_volume(&f.site, &id).expect("pass");
    assert_eq!(f.rec.volumes.take(), vec![]);

    // Grown while detached: the file grows, the filesystem waits for the next attach.
    f.site.update_resource::<VolumeSpec>(&f.p, "data", None, None, Some(&json!({"size_mib": 96}))).expect("grow");
    reconcile_volume(&f.site, &id).expect("pass");
    assert_eq!(f.rec.volumes.take(), vec![VolumeCall::Grow(id.clone(), 96 * MIB)]);
    // Grown while mounted for a container: the filesystem grows online too.
    f.rec.volumes.set_mounted(&id);
    f.rec.containers.record_volumes(&Layout::new(f.dir.path(), "ctr-01stopping"), std::slice::from_ref(&id)).expect("bind");
    f.site.update_resource::<VolumeSpec>(&f.p, "data", None, None, Some(&json!({"size_mib": 128}))).expect("grow");
    reconcile_volume(&f.site, &id).expect("pass");
    assert_eq!(f.rec.volumes.take(), vec![VolumeCall::Grow(id.clone(), 128 * MIB), VolumeCall::Fill(id.clone())]);
    let st = f.status(Kind::Volume, &id);
    assert_eq!(st.phase, "InUse");
    assert!(st.conditions.iter().any(|c| c.type_ == "FilesystemResized" && c.status == "True"), "{st:?}");
    // Shrinking is refused before anything reaches the host.
    let e = f.site.update_resource::<VolumeSpec>(&f.p, "data", None, None, Some(&json!({"size_mib": 64}))).unwrap_err();
    assert!(matches!(&e, SiteError::Invalid { field, .. } if field == "spec.size_mib"), "{e:?}");
}

#[test]
fn a_volume_a_deleted_container_still_binds_stays_mounted_and_cannot_be_deleted() {
    let f = fixture();
    let id = volume(&f, "data", 32);
    reconcile_volume(&f.site, &id).expect("pass");
    f.rec.volumes.set_mounted(&id);
    // A container deleted from state, still stopping: its directory records the volume.
    let stopping = Layout::new(f.dir.path(), "ctr-01stopping");
    f.rec.containers.record_volumes(&stopping, std::slice::from_ref(&id)).expect("bind");
    f.rec.volumes.take();
    assert_eq!(reconcile_volume(&f.site, &id).expect("pass"), Outcome::RequeueAfter(std::time::Duration::from_secs(1)));
    assert_eq!(f.rec.volumes.take(), vec![], "kept mounted while the container stops");
    assert_eq!(f.status(Kind::Volume, &id).extra["attached_to"], json!(["ctr-01stopping"]));
    let e = f.site.delete_resource::<VolumeSpec>(&f.p, "data").unwrap_err();
    assert!(matches!(&e, SiteError::Conflict(m) if m.contains("ctr-01stopping")), "{e:?}");
    // Once the container is gone the volume is unmounted, and then it can be deleted.
    f.rec.containers.remove(&stopping, std::time::Duration::ZERO).expect("remove");
    assert_eq!(reconcile_volume(&f.site, &id).expect("pass"), Outcome::Done);
    assert_eq!(f.rec.volumes.take(), vec![VolumeCall::Unmount(id.clone())]);
    f.site.delete_resource::<VolumeSpec>(&f.p, "data").expect("delete");
    reconcile_volume(&f.site, &id).expect("pass");
    assert_eq!(f.rec.volumes.take(), vec![VolumeCall::RemoveVolume(id.clone())]);
    assert!(!f.rec.volumes.volume_exists(&id));
}

#[test]
fn a_snapshot_of_a_mounted_volume_is_frozen_and_clones_restore_it() {
    let f = fixture();
    let vol = volume(&f, "data", 48);
    let snap = f.site.create_resource::<SnapshotSpec>(&f.p, "s1", &BTreeMap::new(), json!({"volume": "data"})).expect("snapshot").id;
    // Not made yet: the snapshot waits for the volume.
    assert!(matches!(reconcile_snapshot(&f.site, &snap).expect("pass"), Outcome::RequeueAfter(_)));
    reconcile_volume(&f.site, &vol).expect("pass");
    f.rec.volumes.set_mounted(&vol);
    f.rec.volumes.take();
    reconcile_snapshot(&f.site, &snap).expect("pass");
    assert_eq!(f.rec.volumes.take(), vec![VolumeCall::Snapshot { volume: vol.clone(), snapshot: snap.clone(), frozen: true }]);
    let st = f.status(Kind::Snapshot, &snap);
    assert_eq!((st.phase.as_str(), &st.extra["size_mib"]), ("Ready", &json!(48)));
    // Taken once: a later pass copies nothing.
    reconcile_snapshot(&f.site, &snap).expect("pass");
    assert_eq!(f.rec.volumes.take(), vec![]);
    // A clone is a copy of the snapshot, at least its size.
    let e = f.site.create_resource::<VolumeSpec>(&f.p, "small", &BTreeMap::new(), json!({"source_snapshot": "s1", "size_mib": 16})).unwrap_err();
    assert!(matches!(&e, SiteError::Invalid { field, .. } if field == "spec.size_mib"), "{e:?}");
    let clone = f.site.create_resource::<VolumeSpec>(&f.p, "restored", &BTreeMap::new(), json!({"source_snapshot": "s1"})).expect("clone").id;
    reconcile_volume(&f.site, &clone).expect("pass");
    assert_eq!(f.rec.volumes.take(), vec![VolumeCall::Clone { snapshot: snap.clone(), volume: clone.clone() }]);
    f.site.delete_resource::<SnapshotSpec>(&f.p, "s1").expect("delete");
    reconcile_snapshot(&f.site, &snap).expect("pass");
    assert_eq!(f.rec.volumes.take(), vec![VolumeCall::RemoveSnapshot(snap)]);
}

#[test]
fn a_guest_written_volume_is_not_mounted_until_checked() {
    let f = fixture();
    let id = volume(&f, "disk", 32);
    assert_eq!(f.site.volume_for_instance(&id, true).expect("disk"), None, "not made yet");
    reconcile_volume(&f.site, &id).expect("pass");
    f.rec.volumes.take();
    let file = f.site.volume_for_instance(&id, true).expect("disk").expect("made");
    assert_eq!(file, Path::new(&format!("/fake-pool/volumes/{id}.img")));
    assert_eq!(f.rec.volumes.take(), vec![VolumeCall::Format(id.clone()), VolumeCall::Mark(id.clone())]);
    let e = f.site.mount_volume(&id).unwrap_err();
    assert!(matches!(&e, SiteError::Conflict(m) if m.contains("written by a guest")), "{e:?}");
    assert_eq!(f.rec.volumes.take(), vec![], "nothing mounted");
    f.site.check_volume(&f.p, "disk").expect("check");
    assert_eq!(f.rec.volumes.take(), vec![VolumeCall::Check(id.clone())]);
    assert_eq!(f.status(Kind::Volume, &id).extra["guest_written"], json!(false));
    f.site.mount_volume(&id).expect("mount").expect("made");
    assert_eq!(f.rec.volumes.take(), vec![VolumeCall::Mount(id.clone())], "formatted already: mounted only");
    // Mounted for a container: neither an instance nor a check may take it.
    assert_eq!(f.site.volume_for_instance(&id, true).expect("disk"), None);
    let e = f.site.check_volume(&f.p, "disk").unwrap_err();
    assert!(matches!(&e, SiteError::ConflictOn { field, .. } if field == "id"), "{e:?}");
}

#[test]
fn the_pool_capacity_bounds_volumes_and_snapshots() {
    let f = fixture_with(|c| c.storage.capacity_mib = 100);
    volume(&f, "a", 64);
    let e = f.site.create_resource::<VolumeSpec>(&f.p, "b", &BTreeMap::new(), json!({"size_mib": 64})).unwrap_err();
    assert!(matches!(&e, SiteError::ConflictOn { field, message } if field == "spec.size_mib" && message.contains("36 of 100")), "{e:?}");
    let e = f.site.create_resource::<SnapshotSpec>(&f.p, "s", &BTreeMap::new(), json!({"volume": "a"})).unwrap_err();
    assert!(matches!(&e, SiteError::ConflictOn { field, .. } if field == "spec.volume"), "{e:?}");
    assert_eq!(f.rec.volumes.take(), vec![], "refused before the host");
}
