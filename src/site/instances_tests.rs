//! Unit tests of the instance reconciler's decisions and spec checks.

use super::*;

#[test]
fn policies_answer_each_exit() {
    use ExitReason::*;
    assert_eq!(after_exit(RestartPolicy::Never, Some(Reboot)), AfterExit::Reboot, "a guest reboot always boots again");
    assert_eq!(after_exit(RestartPolicy::OnFailure, Some(Poweroff)), AfterExit::Leave("Stopped"));
    assert_eq!(after_exit(RestartPolicy::Always, Some(Poweroff)), AfterExit::Restart);
    assert_eq!(after_exit(RestartPolicy::Always, Some(Stopped)), AfterExit::Leave("Stopped"));
    assert_eq!(after_exit(RestartPolicy::OnFailure, Some(Crashed)), AfterExit::Restart);
    assert_eq!(after_exit(RestartPolicy::OnFailure, Some(Killed)), AfterExit::Restart);
    assert_eq!(after_exit(RestartPolicy::OnFailure, None), AfterExit::Restart, "no record: the host or the worker died");
    assert_eq!(after_exit(RestartPolicy::Never, None), AfterExit::Leave("Failed"));
    assert_eq!(after_exit(RestartPolicy::Never, Some(Poweroff)), AfterExit::Leave("Stopped"));
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
