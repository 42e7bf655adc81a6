//! The container reconciler's decisions, through the recording
//! [`crate::container::host::ContainerHost`] and [`crate::storage::host::VolumeHost`]: no root,
//! no libcontainer, no cgroups. What the host then does with each call is tested by the
//! integration tests (`containers::`, `container_engine::`).

use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::container::host::{ContainerCall, ContainerHost};
use crate::container::shim::ShimRecord;
use crate::site::test_fixture::{Fixture, fixture};
use crate::storage::host::{VolumeCall, VolumeHost};

/// A Ready image whose unpacked root exists, running `/bin/httpd -f` by default.
fn image(f: &Fixture) {
    let hex = "ab".repeat(32);
    let img = f.site.create_with(Kind::Image, Some(&f.p), "img", &BTreeMap::new(), &Status::phase("Ready"), None, |_| Ok(json!({}))).expect("image");
    f.site
        .set_status(&img.id, |s, _| {
            s.extra.insert("digest".into(), format!("sha256:{hex}").into());
            s.extra.insert("config".into(), json!({"entrypoint": ["/bin/httpd"], "cmd": ["-f"]}));
        })
        .expect("status");
    std::fs::create_dir_all(f.site.images_dir().join("rootfs").join(hex)).expect("root");
}

fn container(f: &Fixture, spec: Value) -> String {
    named(f, "web", spec)
}

fn named(f: &Fixture, name: &str, spec: Value) -> String {
    f.site.create_resource::<ContainerSpec>(&f.p, name, &BTreeMap::new(), spec).expect("container").id
}

fn pass(f: &Fixture, id: &str) -> Outcome {
    reconcile_container(&f.site, id).expect("pass")
}

fn layout(f: &Fixture, id: &str) -> Layout {
    f.site.container_layout(id)
}

fn an_hour_ago() -> String {
    (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339()
}

#[test]
fn a_container_starts_once_and_a_running_one_is_left_alone() {
    let f = fixture();
    image(&f);
    let id = container(&f, json!({"image": "img", "env": {"MODE": "a"}}));
    assert_eq!(pass(&f, &id), Outcome::RequeueAfter(POLL));
    let calls = f.rec.containers.take();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(matches!(&calls[0], ContainerCall::PinUserns(_)), "the project's user namespace first: {calls:?}");
    let first = f.site.config().container.userns_first_id;
    assert!(
        matches!(&calls[1], ContainerCall::Prepare { id: i, args, host_base, .. } if i == &id && args == &["/bin/httpd", "-f"] && *host_base == Some(first)),
        "{calls:?}"
    );
    assert_eq!(calls[2], ContainerCall::Start(id.clone()));
    let st = f.status(Kind::Container, &id);
    assert_eq!(st.phase, "Running");
    assert_eq!(st.extra["user_namespace"]["host_id_base"], first);
    let Observed::Running(rec) = f.rec.containers.observe(&layout(&f, &id)) else { panic!("not running") };
    assert_eq!(st.extra["pid"], json!(rec.init_pid));
    // Polled while it runs: nothing is done to it.
    assert_eq!(pass(&f, &id), Outcome::RequeueAfter(POLL));
    assert_eq!(f.rec.containers.take(), vec![]);
    // A changed spec restarts it; a label change would not (it is not in the fingerprint).
    f.site.update_resource::<ContainerSpec>(&f.p, "web", None, None, Some(&json!({"env": {"MODE": "b"}}))).expect("update");
    pass(&f, &id);
    let calls = f.rec.containers.take();
    assert_eq!(calls.first(), Some(&ContainerCall::Stop(id.clone())), "{calls:?}");
    assert_eq!(calls.last(), Some(&ContainerCall::Start(id.clone())), "{calls:?}");
}

#[test]
fn a_killed_shim_leaves_an_orphan_that_is_stopped_and_restarted_by_policy() {
    let f = fixture();
    image(&f);
    let id = container(&f, json!({"image": "img", "restart_policy": "always"}));
    pass(&f, &id);
    f.rec.containers.take();
    let Observed::Running(rec) = f.rec.containers.observe(&layout(&f, &id)) else { panic!("not running") };
    // kill -9 of the shim: the init lives on, unsupervised.
    f.rec.containers.set_observed(&id, Observed::Orphaned(ShimRecord { shim_pid: 0, ..rec }));
    assert_eq!(pass(&f, &id), Outcome::RequeueAfter(Duration::ZERO), "looked at again at once");
    assert_eq!(f.rec.containers.take(), vec![ContainerCall::Stop(id.clone())]);
    // It just ended: the first restart waits out the back-off.
    assert!(matches!(pass(&f, &id), Outcome::RequeueAfter(d) if d <= Duration::from_millis(500)));
    assert_eq!(f.rec.containers.take(), vec![]);
    assert_eq!(f.status(Kind::Container, &id).phase, "Restarting");
    // Once the back-off has passed it starts again, counted as a restart.
    f.rec.containers.exit(&id, 137, &an_hour_ago());
    pass(&f, &id);
    assert_eq!(f.rec.containers.take().last(), Some(&ContainerCall::Start(id.clone())));
    let st = f.status(Kind::Container, &id);
    assert_eq!((st.phase.as_str(), &st.extra["restart_count"]), ("Running", &json!(1)));
}

#[test]
fn an_exit_under_never_is_recorded_and_left() {
    let f = fixture();
    image(&f);
    let id = container(&f, json!({"image": "img"}));
    pass(&f, &id);
    f.rec.containers.take();
    f.rec.containers.exit(&id, 3, &an_hour_ago());
    assert_eq!(pass(&f, &id), Outcome::Done);
    assert_eq!(f.rec.containers.take(), vec![]);
    let st = f.status(Kind::Container, &id);
    assert_eq!((st.phase.as_str(), &st.extra["exit_code"]), ("Exited", &json!(3)));
    // A start request runs it again.
    f.site.container_action(&f.p, "web", "start").expect("start");
    pass(&f, &id);
    assert_eq!(f.rec.containers.take().last(), Some(&ContainerCall::Start(id.clone())));
}

#[test]
fn after_a_reboot_a_started_container_is_failed_or_restarted_by_policy() {
    let f = fixture();
    image(&f);
    let never = container(&f, json!({"image": "img"}));
    let on_failure = named(&f, "job", json!({"image": "img", "restart_policy": "on-failure"}));
    pass(&f, &never);
    pass(&f, &on_failure);
    f.rec.containers.take();
    // A host reboot: no shim, no exit record.
    for id in [&never, &on_failure] {
        f.rec.containers.set_observed(id, Observed::Absent);
    }
    assert_eq!(pass(&f, &never), Outcome::Done);
    assert_eq!(f.rec.containers.take(), vec![]);
    let st = f.status(Kind::Container, &never);
    assert_eq!(st.phase, "Failed");
    assert!(st.extra["message"].as_str().is_some_and(|m| m.contains("no exit was recorded")), "{st:?}");
    pass(&f, &on_failure);
    assert_eq!(f.rec.containers.take().last(), Some(&ContainerCall::Start(on_failure.clone())));
    assert_eq!(f.status(Kind::Container, &on_failure).extra["restart_count"], json!(1));
}

#[test]
fn stop_and_delete_reach_the_host_and_orphans_are_swept() {
    let f = fixture();
    image(&f);
    let id = container(&f, json!({"image": "img"}));
    pass(&f, &id);
    f.rec.containers.take();
    f.site.container_action(&f.p, "web", "stop").expect("stop");
    assert_eq!(pass(&f, &id), Outcome::Done);
    assert_eq!(f.rec.containers.take(), vec![ContainerCall::Stop(id.clone())]);
    assert_eq!(f.status(Kind::Container, &id).phase, "Stopped");
    f.site.delete_resource::<ContainerSpec>(&f.p, "web").expect("delete");
    assert_eq!(pass(&f, &id), Outcome::Done);
    assert_eq!(f.rec.containers.take(), vec![ContainerCall::Remove(id.clone())]);
    // A directory state does not know (deleted while the daemon was down) is removed.
    let orphan = Kind::Container.new_id();
    f.rec.containers.set_observed(&orphan, Observed::Absent);
    assert_eq!(sweep_orphans(&f.site).expect("sweep"), 1);
    assert_eq!(f.rec.containers.take(), vec![ContainerCall::Remove(orphan)]);
}

#[test]
fn a_container_waits_for_its_volume_then_mounts_it() {
    let f = fixture();
    image(&f);
    let vol = f.site.create_resource::<super::super::volumes::VolumeSpec>(&f.p, "data", &BTreeMap::new(), json!({"size_mib": 32})).expect("volume").id;
    let id = container(&f, json!({"image": "img", "mounts": [{"volume": "data", "target": "/data"}]}));
    assert!(matches!(pass(&f, &id), Outcome::RequeueAfter(_)));
    assert_eq!(f.rec.containers.take(), vec![], "not started before its volume exists");
    let st = f.status(Kind::Container, &id);
    assert!(st.conditions.iter().any(|c| c.type_ == "VolumesReady" && c.status == "False"), "{st:?}");
    f.rec.volumes.create_volume(&vol, 32 << 20).expect("made");
    f.rec.volumes.take();
    pass(&f, &id);
    assert_eq!(f.rec.volumes.take(), vec![VolumeCall::Format(vol.clone()), VolumeCall::Mount(vol.clone())]);
    let calls = f.rec.containers.take();
    let mnt = std::path::PathBuf::from(format!("/fake-pool/mnt/{vol}"));
    assert!(matches!(&calls[1], ContainerCall::Prepare { mounts, .. } if mounts.as_slice() == std::slice::from_ref(&mnt)), "{calls:?}");
    assert_eq!(f.rec.containers.binding(f.dir.path(), &vol), vec![id]);
}
