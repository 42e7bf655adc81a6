//! The container engine on its own, as root: the busybox image built from Debian's package,
//! imported and unpacked, run through the real shim and libcontainer: logs, exec, hardening,
//! stop with a grace period, and removal that leaves no process, mount or cgroup.

use crate::common;

use std::path::PathBuf;
use std::time::Duration;

use cloudlet::container::runtime::{self, Layout, LogOptions, Observed};
use cloudlet::container::spec::{Limits, RunConfig};
use cloudlet::container::{exec, logs};
use cloudlet::image::{layout, store::BlobStore, unpack::Limits as UnpackLimits};

fn rootfs(tmp: &std::path::Path) -> PathBuf {
    let archive = common::busybox_image();
    let store = BlobStore::open(&tmp.join("blobs")).expect("store");
    let scratch = tmp.join("scratch");
    std::fs::create_dir_all(&scratch).expect("scratch");
    let img =
        layout::import_archive(&store.ingest(), std::fs::File::open(archive.join("busybox-httpd.oci.tar")).expect("archive"), &scratch, None).expect("import");
    let root = tmp.join("image-root");
    std::fs::create_dir_all(&root).expect("root");
    layout::unpack_image(&store, &img, &root, UnpackLimits::default()).expect("unpack");
    root
}

fn config(l: &Layout, args: &[&str], limits: Limits) -> RunConfig {
    RunConfig {
        rootfs: l.rootfs(),
        args: args.iter().map(|s| s.to_string()).collect(),
        env: vec!["PATH=/bin".into(), "GREETING=hi".into()],
        cwd: "/".into(),
        uid: 0,
        gid: 0,
        additional_gids: vec![],
        hostname: "engine-test".into(),
        netns: None,
        read_only_rootfs: false,
        limits,
        mounts: vec![],
        etc_dir: Some(l.dir.join("etc")),
        address: None,
        cgroups_path: l.cgroup(),
        userns: None,
    }
}

/// Removes the container (processes, mount, cgroup) even when the test fails.
struct Guard(Layout);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = runtime::remove(&self.0, Duration::from_secs(1));
    }
}

const LOGS: LogOptions = LogOptions { max_bytes: 1 << 20, keep: 2 };

#[test]
fn a_container_runs_logs_execs_and_is_removed_without_leftovers() {
    if !common::privileged(common::is_root(), "root (namespaces, cgroups, overlayfs)") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let image = rootfs(tmp.path());
    let l = Layout::new(tmp.path(), &format!("ctr-engine{}", std::process::id()));
    let _guard = Guard(l.clone());
    let script = "echo started $GREETING; echo to-stderr >&2; cat /proc/self/status | grep -E '^(CapEff|NoNewPrivs|Seccomp|SigIgn):'; hostname; trap 'echo got-term; exit 3' TERM; while true; do sleep 0.1; done";
    runtime::prepare(
        &l,
        &image,
        &config(&l, &["/bin/sh", "-c", script], Limits { cpus: Some(0.5), memory_bytes: Some(64 << 20), pids: Some(64) }),
        Duration::from_secs(10),
    )
    .expect("prepare");
    let rec = runtime::start(&common::bin(), &l, LOGS).expect("start");
    assert!(matches!(runtime::observe(&l), Observed::Running(_)));
    let lines = common::wait_secs(10, "log lines", || {
        let e = logs::read_tail(&l.logs(), None);
        // Seven lines: stdout and stderr are pumped apart, so wait for all of them.
        (e.len() >= 7).then_some(e)
    });
    let text: Vec<String> = lines.iter().map(|e| format!("{} {}", e.stream, e.log)).collect();
    assert!(text.contains(&"stdout started hi".to_string()), "{text:?}");
    assert!(text.contains(&"stderr to-stderr".to_string()), "{text:?}");
    assert!(text.contains(&"stdout engine-test".to_string()), "{text:?}");
    // Docker's default capabilities are 0x00000000a80425fb; seccomp mode 2 is a filter.
    assert!(text.contains(&"stdout CapEff:\t00000000a80425fb".to_string()), "{text:?}");
    assert!(text.contains(&"stdout NoNewPrivs:\t1".to_string()), "{text:?}");
    assert!(text.contains(&"stdout Seccomp:\t2".to_string()), "{text:?}");
    // SIGHUP, SIGINT, SIGPIPE and SIGTERM are not ignored (the Rust runtime's ignored SIGPIPE
    // would otherwise reach the container's processes).
    let ign = text.iter().find_map(|l| l.strip_prefix("stdout SigIgn:\t")).and_then(|h| u64::from_str_radix(h, 16).ok()).expect("SigIgn");
    assert_eq!(ign & (1 | 1 << 1 | 1 << 12 | 1 << 14), 0, "ignored signals {ign:#x}");
    // Limits reached the cgroup.
    let mem = std::fs::read_to_string(format!("/sys/fs/cgroup/memory{}/memory.limit_in_bytes", l.cgroup()))
        .or_else(|_| std::fs::read_to_string(format!("/sys/fs/cgroup{}/memory.max", l.cgroup())))
        .expect("memory limit file");
    assert_eq!(mem.trim(), (64u64 << 20).to_string());
    let quota = std::fs::read_to_string(format!("/sys/fs/cgroup/cpu{}/cpu.cfs_quota_us", l.cgroup()))
        .or_else(|_| std::fs::read_to_string(format!("/sys/fs/cgroup{}/cpu.max", l.cgroup())))
        .expect("cpu quota file");
    assert!(quota.trim() == "50000" || quota.starts_with("50000 100000"), "{quota}");
    // The PID limit holds: a shell that starts 80 background sleeps under a limit of 64 fails to
    // fork, and the cgroup never counts more than 64.
    let forks = exec::run(
        &common::bin(),
        &l,
        &["/bin/sh".into(), "-c".into(), "for i in $(seq 80); do sleep 3 & done; echo all-forked".into()],
        &[],
        Duration::from_secs(20),
    )
    .expect("exec");
    assert!(!forks.stdout.contains("all-forked"), "{forks:?}");
    let pids = |f: &str| {
        std::fs::read_to_string(format!("/sys/fs/cgroup/pids{}/{f}", l.cgroup()))
            .or_else(|_| std::fs::read_to_string(format!("/sys/fs/cgroup{}/{f}", l.cgroup())))
            .expect("pids file")
    };
    assert_eq!(pids("pids.max").trim(), "64");
    let current: u32 = pids("pids.current").trim().parse().expect("pids.current");
    assert!(current <= 64, "{current}");
    std::thread::sleep(Duration::from_secs(4));
    // Exec runs inside (same hostname, same pid namespace), and the filter blocks mount(2).
    let out = exec::run(
        &common::bin(),
        &l,
        &["/bin/sh".into(), "-c".into(), "hostname; echo $GREETING $EXTRA; ps | wc -l; mount -t tmpfs none /mnt; echo rc=$?".into()],
        &[("EXTRA".into(), "x".into())],
        Duration::from_secs(20),
    )
    .expect("exec");
    assert_eq!(out.exit_code, 0, "{out:?}");
    let so: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(so[0], "engine-test", "{out:?}");
    assert_eq!(so[1], "hi x", "{out:?}");
    assert!(so.last().is_some_and(|l| *l == "rc=1" || *l == "rc=255"), "mount must fail: {out:?}");
    // An exec'd process is confined exactly as the main process: the same seccomp filter,
    // capabilities, no_new_privs and cgroup, so a new user namespace (where it would hold every
    // capability and could mount) is refused.
    let conf = "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; cat /proc/self/cgroup | grep -c cloudlet; \
                unshare -r -n -m /bin/sh -c 'mount -t tmpfs none /mnt && echo MOUNTED'; echo unshare=$?";
    let out = exec::run(&common::bin(), &l, &["/bin/sh".into(), "-c".into(), conf.into()], &[], Duration::from_secs(20)).expect("exec");
    assert!(out.stdout.contains("Seccomp:\t2"), "exec without the filter: {out:?}");
    assert!(out.stdout.contains("CapEff:\t00000000a80425fb") && out.stdout.contains("CapBnd:\t00000000a80425fb"), "{out:?}");
    assert!(out.stdout.contains("NoNewPrivs:\t1"), "{out:?}");
    assert!(!out.stdout.contains("MOUNTED") && !out.stdout.contains("unshare=0"), "a user namespace from exec: {out:?}");
    // And it runs in the container's cgroup: the host sees the exec'd `sleep 7` in its procs.
    let (bin, l2) = (common::bin(), l.clone());
    let sleeper = std::thread::spawn(move || exec::run(&bin, &l2, &["/bin/sleep".into(), "7".into()], &[], Duration::from_secs(20)));
    common::wait_secs(10, "the exec'd sleep in the container's cgroup", || {
        let procs = std::fs::read_to_string(format!("/sys/fs/cgroup/pids{}/cgroup.procs", l.cgroup()))
            .or_else(|_| std::fs::read_to_string(format!("/sys/fs/cgroup{}/cgroup.procs", l.cgroup())))
            .unwrap_or_default();
        procs.lines().any(|p| std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c == b"/bin/sleep\x007\x00")).then_some(())
    });
    assert_eq!(sleeper.join().expect("join").expect("exec").exit_code, 0);
    let fail = exec::run(&common::bin(), &l, &["/bin/sh".into(), "-c".into(), "exit 7".into()], &[], Duration::from_secs(20)).expect("exec");
    assert_eq!(fail.exit_code, 7);
    let own = exec::run(&common::bin(), &l, &["/bin/sh".into(), "-c".into(), "exit 124".into()], &[], Duration::from_secs(20)).expect("exec");
    assert!(own.exit_code == 124 && !own.timed_out, "a command's own 124 is no timeout: {own:?}");
    let slow = exec::run(&common::bin(), &l, &["/bin/sleep".into(), "30".into()], &[], Duration::from_millis(500)).expect("exec");
    assert!(slow.timed_out && slow.exit_code == 124, "{slow:?}");
    // Graceful stop: the trap answers SIGTERM with exit code 3.
    runtime::stop(&l, Duration::from_secs(10)).expect("stop");
    match runtime::observe(&l) {
        Observed::Exited(e) => assert_eq!(e.exit_code, Some(3), "{e:?}"),
        other => panic!("not exited: {other:?}"),
    }
    assert!(logs::read_tail(&l.logs(), None).iter().any(|e| e.log == "got-term"));
    assert!(!std::path::Path::new(&format!("/proc/{}", rec.init_pid)).exists());
    runtime::remove(&l, Duration::from_secs(5)).expect("remove");
    assert!(!l.dir.exists());
    assert!(!runtime::is_mounted(&l.rootfs()));
    assert!(cloudlet::container::cgroup::dirs(&l.cgroup()).is_empty(), "cgroups are gone");
}

#[test]
fn a_process_past_its_memory_limit_is_oom_killed() {
    if !common::privileged(common::is_root(), "root (namespaces, cgroups, overlayfs)") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let image = rootfs(tmp.path());
    let l = Layout::new(tmp.path(), &format!("ctr-oom{}", std::process::id()));
    let _guard = Guard(l.clone());
    // Holding 200 MiB in a shell variable needs far more than the 32 MiB allowed.
    let hog = "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived ${#x}";
    runtime::prepare(&l, &image, &config(&l, &["/bin/sh", "-c", hog], Limits { memory_bytes: Some(32 << 20), ..Default::default() }), Duration::from_secs(1))
        .expect("prepare");
    runtime::start(&common::bin(), &l, LOGS).expect("start");
    let exit = common::wait_secs(60, "the OOM kill", || match runtime::observe(&l) {
        Observed::Exited(e) => Some(e),
        _ => None,
    });
    assert!(exit.oom_killed, "{exit:?}");
    assert!(!logs::read_tail(&l.logs(), None).iter().any(|e| e.log.starts_with("survived")));
    runtime::remove(&l, Duration::from_secs(5)).expect("remove");
}
