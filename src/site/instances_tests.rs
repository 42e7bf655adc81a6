//! Unit tests of the instance reconciler's decisions and spec checks.

use super::*;
use crate::site::workload::restart_delay;

#[test]
fn each_exit_ends_as_the_policy_sees_it() {
    use ExitReason::*;
    assert_eq!(end_of(Some(Reboot)), End::Reboot, "a guest reboot always boots again");
    assert_eq!(end_of(Some(Poweroff)), End::Clean);
    assert_eq!(end_of(Some(Stopped)), End::Stopped);
    assert_eq!(end_of(Some(Crashed)), End::Failed);
    assert_eq!(end_of(Some(Killed)), End::Failed);
    assert_eq!(end_of(None), End::Lost, "no record: the host or the worker died");
    assert_eq!(left_phase(Left::Ended, End::Clean), "Stopped", "a power-off the policy leaves is Stopped");
    assert_eq!(left_phase(Left::Ended, End::Failed), "Failed");
    assert_eq!(left_phase(Left::Lost, End::Lost), "Failed");
    let leave = |p, e| decide(p, None, end_of(e), 0, Duration::ZERO);
    assert_eq!(leave(RestartPolicy::OnFailure, Some(Poweroff)), Decision::Leave(Left::Ended));
    assert_eq!(leave(RestartPolicy::Always, Some(Poweroff)), Decision::Restart(restart_delay(1)));
    assert_eq!(leave(RestartPolicy::OnFailure, Some(Killed)), Decision::Restart(restart_delay(1)));
}

#[test]
fn spec_errors_name_the_field() {
    let err = |v: Value| match parse_spec(v) {
        Err(SiteError::Invalid { field, .. }) => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(err(serde_json::json!({"image": "x", "subnet": "s", "vcpus": "two"})), "spec.vcpus");
    assert_eq!(err(serde_json::json!({"image": "x", "subnet": "s", "bogus": 1})), "spec.bogus");
    assert_eq!(err(serde_json::json!({"subnet": "s"})), "spec.image");
    assert_eq!(err(serde_json::json!({"image": "x", "subnet": "s", "volumes": [{"volume": "v", "mode": 1}]})), "spec.volumes[0].mode");
    let s = parse_spec(serde_json::json!({"image": "x", "subnet": "s"})).expect("defaults");
    assert_eq!((s.vcpus, s.memory_mib, s.stop_timeout_seconds, s.restart_policy), (1, 256, 30, RestartPolicy::OnFailure));
}

#[test]
fn the_command_line_appends_the_extra() {
    assert_eq!(cmdline("console=ttyS0 root=/dev/vda", Some(" quiet ")), "console=ttyS0 root=/dev/vda quiet");
    assert_eq!(cmdline("", None), "console=ttyS0 reboot=k panic=1");
}

/// The reconciler's decisions over the recording [`InstanceHost`]: no root, KVM or cgroups.
/// What the real worker does with each call is tested by the integration tests and the nested
/// KVM lane.
mod lifecycle {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::site::instance_host::InstanceCall;
    use crate::site::net_model::{SubnetSpec, VpcSpec};
    use crate::site::test_fixture::{Fixture, fixture};
    use crate::vmm::spec::{ExitReason, ExitRecord};

    /// A VPC, a subnet, a ready VM image (its files are empty stand-ins) and instance `vm` on
    /// them whose interface's tap is in place. Returns the instance id.
    fn instance(f: &Fixture, restart_policy: &str) -> String {
        let none = BTreeMap::new();
        f.site.create_resource::<VpcSpec>(&f.p, "v", &none, json!({"cidr": "10.0.0.0/16"})).expect("vpc");
        f.site.create_resource::<SubnetSpec>(&f.p, "s", &none, json!({"vpc": "v", "cidr": "10.0.1.0/24"})).expect("subnet");
        let mut st = Status::phase("Ready");
        st.extra.insert("format".into(), "vm".into());
        let img = f.site.create(Kind::Image, Some(&f.p), "img", &none, &json!({}), &st, None).expect("image");
        let dir = f.site.vm_images_dir().join(&img.id);
        std::fs::create_dir_all(&dir).expect("image dir");
        for file in ["kernel", "rootfs.img"] {
            std::fs::write(dir.join(file), b"stand-in").expect("image file");
        }
        let i = f
            .site
            .create_resource::<InstanceSpec>(
                &f.p,
                "vm",
                &none,
                json!({"image": "img", "subnet": "s", "restart_policy": restart_policy, "stop_timeout_seconds": 1}),
            )
            .expect("instance");
        let eni = f.status(Kind::Instance, &i.id).extra["network_interface"].as_str().expect("eni").to_string();
        f.site
            .set_status(&eni, |s, _| {
                s.phase = "Ready".into();
                s.extra.insert("tap".into(), "tap0".into());
                s.extra.insert("router_netns".into(), "/run/netns/router".into());
            })
            .expect("eni status");
        i.id
    }

    fn pass(f: &Fixture, id: &str) -> Outcome {
        reconcile_instance(&f.site, id).expect("reconcile")
    }

    fn starts(f: &Fixture) -> usize {
        f.rec.instances.calls().iter().filter(|c| matches!(c, InstanceCall::Start { .. })).count()
    }

    fn crashed() -> Option<ExitRecord> {
        Some(ExitRecord { reason: ExitReason::Crashed, boot_timer_ms: None, total_ms: 5.0, error: Some("triple fault".into()) })
    }

    #[test]
    fn a_crashed_worker_is_released_and_restarted_after_the_back_off() {
        let f = fixture();
        let id = instance(&f, "on-failure");
        pass(&f, &id);
        assert_eq!(f.rec.instances.calls()[0], InstanceCall::Start { id: id.clone(), tap: "tap0".into(), vcpus: 1, memory_mib: 256 });
        assert!(f.site.instance_layout(&id).root_disk().is_file(), "the root disk is copied from the image");
        pass(&f, &id);
        assert_eq!(f.status(Kind::Instance, &id).phase, "Running", "a worker that answers status is Running");
        f.rec.instances.end(&id, crashed());
        let out = pass(&f, &id);
        let st = f.status(Kind::Instance, &id);
        assert_eq!((st.phase.as_str(), st.extra["restart_count"].as_u64(), st.extra["exit_reason"].as_str()), ("Restarting", Some(1), Some("crashed")));
        assert_eq!(out, Outcome::RequeueAfter(restart_delay(1)));
        assert!(f.rec.instances.calls().contains(&InstanceCall::Release { id: id.clone() }));
        assert!(matches!(pass(&f, &id), Outcome::RequeueAfter(d) if d > Duration::ZERO), "waits out the back-off");
        assert_eq!(starts(&f), 1, "not before the back-off");
        std::thread::sleep(restart_delay(1) + Duration::from_millis(50));
        pass(&f, &id);
        assert_eq!(starts(&f), 2, "started again once the back-off passed");
    }

    #[test]
    fn a_policy_of_never_leaves_a_crashed_instance_failed() {
        let f = fixture();
        let id = instance(&f, "never");
        pass(&f, &id);
        f.rec.instances.end(&id, crashed());
        assert_eq!(pass(&f, &id), Outcome::Done);
        assert_eq!(f.status(Kind::Instance, &id).phase, "Failed");
        assert_eq!(pass(&f, &id), Outcome::Done);
        assert_eq!(starts(&f), 1, "left until a start or a spec change");
    }

    #[test]
    fn a_stop_asks_the_guest_and_a_delete_removes_the_run_directory() {
        let f = fixture();
        let id = instance(&f, "always");
        pass(&f, &id);
        f.site.instance_action(&f.p, "vm", "stop").expect("stop");
        pass(&f, &id);
        assert!(f.rec.instances.calls().contains(&InstanceCall::Control { id: id.clone(), request: "shutdown".into() }));
        assert_eq!(f.status(Kind::Instance, &id).phase, "Stopping");
        assert_eq!(pass(&f, &id), Outcome::Done, "the worker took the shutdown and ended");
        assert_eq!(f.status(Kind::Instance, &id).phase, "Stopped", "a stopped instance stays stopped under `always`");
        assert_eq!(starts(&f), 1);
        f.site.instance_action(&f.p, "vm", "start").expect("start");
        pass(&f, &id);
        assert_eq!(starts(&f), 2);
        f.site.delete_resource::<InstanceSpec>(&f.p, "vm").expect("delete");
        f.rec.instances.clear();
        pass(&f, &id);
        pass(&f, &id);
        let calls = f.rec.instances.calls();
        assert_eq!(calls.first(), Some(&InstanceCall::Control { id: id.clone(), request: "shutdown".into() }), "{calls:?}");
        assert_eq!(calls.last(), Some(&InstanceCall::Remove { id: id.clone() }), "{calls:?}");
        assert!(!f.site.instance_layout(&id).dir.exists());
    }

    #[test]
    fn a_spec_change_restarts_a_running_instance_and_a_reboot_is_not_counted() {
        let f = fixture();
        let id = instance(&f, "on-failure");
        pass(&f, &id);
        pass(&f, &id);
        f.site.update_resource::<InstanceSpec>(&f.p, "vm", None, None, Some(&json!({"memory_mib": 512}))).expect("update");
        pass(&f, &id);
        assert_eq!(f.status(Kind::Instance, &id).phase, "Stopping", "a changed spec stops the worker first");
        pass(&f, &id);
        pass(&f, &id);
        let calls = f.rec.instances.calls();
        assert_eq!(
            calls.iter().rev().find(|c| matches!(c, InstanceCall::Start { .. })),
            Some(&InstanceCall::Start { id: id.clone(), tap: "tap0".into(), vcpus: 1, memory_mib: 512 })
        );
        assert_eq!(f.status(Kind::Instance, &id).extra["restart_count"].as_u64(), Some(0));
    }

    #[test]
    fn a_worker_cut_off_from_its_tap_is_started_again_without_counting_a_restart() {
        let f = fixture();
        let id = instance(&f, "never");
        pass(&f, &id);
        pass(&f, &id);
        f.rec.instances.detach_tap(&id);
        f.rec.instances.clear();
        pass(&f, &id);
        assert_eq!(f.rec.instances.calls(), vec![InstanceCall::KillNow { id: id.clone() }]);
        pass(&f, &id);
        assert_eq!(f.status(Kind::Instance, &id).phase, "Pending", "a lost tap boots again even under `never`");
        pass(&f, &id);
        assert_eq!(starts(&f), 1);
        let st = f.status(Kind::Instance, &id);
        assert_eq!((st.extra["restart_count"].as_u64(), st.extra.get("tap_lost")), (Some(0), None));
    }
}
