//! `cloudlet container-shim` and `cloudlet container-exec`: the processes that call
//! `libcontainer`, each single-threaded when it forks.
//!
//! The shim, started by the daemon for one container:
//! 1. forks; the first process waits on a status pipe and exits 0 once the container runs, or
//!    prints the error and exits 1, so the daemon learns the outcome of the start synchronously;
//! 2. the second process calls `setsid`, becomes a child subreaper, creates and starts the
//!    container with libcontainer (its init becomes the shim's child), and records
//!    `shim.json` (its own and the init's pid and start time, to tell a reused pid);
//! 3. pumps the container's stdout and stderr into the rotating log;
//! 4. reaps the init, reads the cgroup's OOM kills, writes `exit.json` atomically, deletes the
//!    libcontainer state (which removes the cgroup) and exits.
//!
//! A `kill -9` of the daemon leaves shims and containers running; the next daemon adopts them by
//! `shim.json`.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::get_executor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::sys::signal::{SigHandler, Signal, signal};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, pipe2, setsid};
use serde::{Deserialize, Serialize};

use super::{ContainerError, logs, write_atomic};

/// The shim's record of a running container.
pub const SHIM_FILE: &str = "shim.json";
/// The shim's record of how the container ended.
pub const EXIT_FILE: &str = "exit.json";

/// What `shim.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShimRecord {
    pub shim_pid: i32,
    /// Start time of the shim process (clock ticks since boot, `/proc/PID/stat` field 22).
    pub shim_start: u64,
    /// The container's init, as seen from the host.
    pub init_pid: i32,
    pub init_start: u64,
    /// RFC 3339.
    pub started_at: String,
    /// The boot the record was made in; a record of an earlier boot names no live process.
    #[serde(default)]
    pub boot_id: String,
}

impl ShimRecord {
    /// Whether the record was made in this boot (so its pids may still be the recorded ones).
    pub fn this_boot(&self) -> bool {
        self.boot_id == boot_id()
    }
}

/// What `exit.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The exit code, when the init exited.
    pub exit_code: Option<i32>,
    /// The signal number, when the init was killed by one.
    pub signal: Option<i32>,
    /// The kernel's OOM killer killed a process of the container.
    pub oom_killed: bool,
    /// RFC 3339.
    pub finished_at: String,
}

impl ExitRecord {
    /// A shell-style code: the exit code, or 128 + the signal.
    pub fn code(&self) -> i32 {
        self.exit_code.unwrap_or_else(|| 128 + self.signal.unwrap_or(0))
    }
}

/// Options of one shim.
#[derive(Debug, Clone)]
pub struct ShimOptions {
    /// The container's directory (`bundle/`, `state/`, `logs/`, the records).
    pub dir: PathBuf,
    /// The container id (libcontainer's id too).
    pub id: String,
    /// The cgroup path of the spec, to read OOM kills.
    pub cgroup: String,
    pub log_max_bytes: u64,
    pub log_keep: usize,
}

/// The start time of `pid` (`/proc/PID/stat` field 22), if it lives.
pub fn proc_start(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces; count after it.
    let rest = &s[s.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// Whether `pid` is alive and still the process that started at `start` (not a zombie).
pub fn alive(pid: i32, start: u64) -> bool {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let state = s.rfind(')').and_then(|i| s.get(i + 2..i + 3));
    state != Some("Z") && proc_start(pid) == Some(start)
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn runtime(e: impl std::fmt::Display) -> ContainerError {
    ContainerError::Runtime(e.to_string())
}

/// Entry point of `cloudlet container-shim`. Must run before any other thread exists. Returns the
/// first process's exit code (0: the container runs).
pub fn main(opts: ShimOptions) -> i32 {
    let (status_r, status_w) = match pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("container-shim: pipe: {e}");
            return 1;
        }
    };
    // SAFETY: the process is single-threaded here (the shim runs before any runtime starts).
    match unsafe { fork() } {
        Err(e) => {
            eprintln!("container-shim: fork: {e}");
            1
        }
        Ok(ForkResult::Parent { .. }) => {
            drop(status_w);
            let mut msg = String::new();
            let _ = std::fs::File::from(status_r).read_to_string(&mut msg);
            if msg == "ok" {
                0
            } else {
                eprintln!("{}", if msg.is_empty() { "the shim died while starting the container" } else { msg.as_str() });
                1
            }
        }
        Ok(ForkResult::Child) => {
            drop(status_r);
            let code = supervise(&opts, status_w);
            std::process::exit(code)
        }
    }
}

/// Point stdin and stdout at /dev/null and stderr at `shim.log`, so the shim holds no pipe of
/// the daemon's.
fn detach_stdio(dir: &Path) {
    let null = std::fs::File::options().read(true).write(true).open("/dev/null");
    let log = std::fs::File::options().create(true).append(true).open(dir.join("shim.log"));
    if let (Ok(null), Ok(log)) = (null, log) {
        // SAFETY: dup2 on descriptors this function owns onto the standard ones.
        unsafe {
            libc::dup2(null.as_raw_fd(), 0);
            libc::dup2(null.as_raw_fd(), 1);
            libc::dup2(log.as_raw_fd(), 2);
        }
    }
}

fn supervise(o: &ShimOptions, status: OwnedFd) -> i32 {
    let _ = setsid();
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer argument and has no memory effects.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    detach_stdio(&o.dir);
    let mut status = std::fs::File::from(status);
    let started = start(o);
    let (init, out_r, err_r) = match started {
        Ok(x) => x,
        Err(e) => {
            let _ = status.write_all(e.to_string().as_bytes());
            return 1;
        }
    };
    let _ = status.write_all(b"ok");
    drop(status);
    // The init was cloned with the default dispositions; the shim itself ignores these.
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGPIPE] {
        // SAFETY: SIG_IGN installs no handler code.
        unsafe {
            let _ = signal(s, SigHandler::SigIgn);
        }
    }
    let writer = match logs::Writer::open(&o.dir.join("logs"), o.log_max_bytes, o.log_keep) {
        Ok(w) => Arc::new(Mutex::new(w)),
        Err(e) => {
            eprintln!("container-shim: opening the log: {e}");
            return 1;
        }
    };
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    for (fd, stream) in [(out_r, "stdout"), (err_r, "stderr")] {
        let (w, tx) = (writer.clone(), done_tx.clone());
        std::thread::spawn(move || {
            logs::pump(std::fs::File::from(fd), stream, &w);
            let _ = tx.send(());
        });
    }
    let mut exit = ExitRecord { exit_code: None, signal: None, oom_killed: false, finished_at: String::new() };
    loop {
        match waitpid(None::<Pid>, None) {
            Ok(WaitStatus::Exited(p, code)) if p == init => {
                exit.exit_code = Some(code);
                break;
            }
            Ok(WaitStatus::Signaled(p, sig, _)) if p == init => {
                exit.signal = Some(sig as i32);
                break;
            }
            Err(nix::errno::Errno::ECHILD) => break,
            _ => {}
        }
    }
    // The pipes close when the last process of the container is gone.
    for _ in 0..2 {
        let _ = done_rx.recv_timeout(Duration::from_secs(3));
    }
    exit.oom_killed = super::cgroup::oom_kills(&o.cgroup) > 0;
    exit.finished_at = now();
    if let Ok(bytes) = serde_json::to_vec(&exit)
        && let Err(e) = write_atomic(&o.dir.join(EXIT_FILE), &bytes)
    {
        eprintln!("container-shim: recording the exit: {e}");
    }
    match Container::load(o.dir.join("state").join(&o.id)) {
        Ok(mut c) => {
            if let Err(e) = c.delete(true) {
                eprintln!("container-shim: deleting the container state: {e}");
            }
        }
        Err(e) => eprintln!("container-shim: loading the container state: {e}"),
    }
    0
}

/// Create and start the container; returns its init pid and the read ends of its stdout and
/// stderr pipes.
fn start(o: &ShimOptions) -> Result<(Pid, OwnedFd, OwnedFd), ContainerError> {
    let (out_r, out_w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(runtime)?;
    let (err_r, err_w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(runtime)?;
    let null = std::fs::File::open("/dev/null").map_err(ContainerError::io("opening /dev/null"))?;
    // The Rust runtime ignores SIGPIPE, and whatever started the daemon may have ignored more; an
    // ignored signal stays ignored across the clone and the exec. The container's init starts
    // with every disposition at its default, as on a fresh boot.
    default_signals();
    let t0 = std::time::Instant::now();
    let mut c = ContainerBuilder::new(o.id.clone(), SyscallType::default())
        .with_root_path(o.dir.join("state"))
        .map_err(runtime)?
        .with_stdin(null)
        .with_stdout(out_w)
        .with_stderr(err_w)
        .as_init(o.dir.join("bundle"))
        .with_systemd(false)
        .with_detach(true)
        .build()
        .map_err(|e| ContainerError::Runtime(format!("creating the container: {e}")))?;
    let built = t0.elapsed();
    if let Err(e) = c.start() {
        // Do not leave a created init waiting, or its cgroup, behind the failure.
        let _ = c.delete(true);
        return Err(ContainerError::Runtime(format!("starting the container: {e}")));
    }
    tracing::debug!(build_us = built.as_micros() as u64, start_us = (t0.elapsed() - built).as_micros() as u64, "container created and started");
    // libcontainer uses another major version of nix: carry the pid over as a number.
    let init = Pid::from_raw(c.pid().ok_or_else(|| runtime("the container has no init pid"))?.as_raw());
    let rec = ShimRecord {
        shim_pid: std::process::id() as i32,
        shim_start: proc_start(std::process::id() as i32).unwrap_or(0),
        init_pid: init.as_raw(),
        init_start: proc_start(init.as_raw()).unwrap_or(0),
        started_at: now(),
        boot_id: boot_id(),
    };
    if let Err(e) = serde_json::to_vec(&rec).map_err(runtime).and_then(|b| write_atomic(&o.dir.join(SHIM_FILE), &b)) {
        let _ = c.delete(true);
        return Err(e);
    }
    Ok((init, out_r, err_r))
}

/// Set every signal's disposition to its default (see [`start`]); SIGKILL and SIGSTOP cannot be
/// changed and are skipped by the kernel's refusal.
fn default_signals() {
    for sig in 1..=libc::SIGRTMAX() {
        // SAFETY: SIG_DFL installs no handler code; invalid numbers are refused with EINVAL.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`): pids and start times repeat across
/// reboots, the boot id does not.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// Entry point of `cloudlet container-exec`: run `args` in the running container `id` (its
/// namespaces, cgroup, capabilities and seccomp filter) with this process's stdio, and return its
/// exit code (128 + signal when killed, 124 when `timeout` passed and it was killed, 126 when it
/// could not run). Must run before any other thread exists.
pub fn exec_main(dir: &Path, id: &str, args: Vec<String>, env: Vec<(String, String)>, timeout: Duration) -> i32 {
    default_signals();
    // libcontainer's tenant builder rebuilds `linux` from the namespaces and cgroup path only, so
    // the container's seccomp filter would be lost; the executor installs it again, last, right
    // before the exec (capabilities are dropped and no_new_privs is set by then).
    let (seccomp, join) = match container_confinement(dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("exec: {e}");
            return 126;
        }
    };
    // libcontainer's tenant builder joins every namespace of the container but its user
    // namespace. So under one, libcontainer sets the process up as host root (joining the
    // cgroup and namespaces as it would anyway) and the executor then enters the user namespace
    // and becomes the container's user with its capabilities, as the main process is.
    let as_root = join.is_some().then_some(0);
    let executor = ExecExecutor { seccomp, join: join.as_ref().map(|(f, u, c)| (f.as_raw_fd(), u.clone(), c.clone())) };
    let built = ContainerBuilder::new(id.to_string(), SyscallType::default())
        .with_executor(executor)
        .with_root_path(dir.join("state"))
        .map(|b| b.as_tenant().with_container_args(args).with_env(env.into_iter().collect()).with_user(as_root).with_group(as_root).with_detach(false).build());
    let pid = match built {
        Ok(Ok(pid)) => Pid::from_raw(pid.as_raw()),
        Ok(Err(e)) | Err(e) => {
            eprintln!("exec: {e}");
            return 126;
        }
    };
    let end = std::time::Instant::now() + timeout;
    loop {
        match waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                eprintln!("exec: waiting: {e}");
                return 126;
            }
        }
        if std::time::Instant::now() >= end {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            eprintln!("exec: killed after {} ms", timeout.as_millis());
            return 124;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The user namespace an exec enters: the open namespace, the container's user and its
/// capabilities.
type Join = (std::fs::File, oci_spec::runtime::User, oci_spec::runtime::LinuxCapabilities);

/// The seccomp filter of the container's main process, and (when it runs in a user namespace)
/// what an exec needs to enter it, from the bundle's `config.json`. The namespace is opened now,
/// while its host path is reachable. Errors: the bundle cannot be read, or it has no filter
/// (every cloudlet container has one, so an exec never runs unfiltered).
fn container_confinement(dir: &Path) -> Result<(oci_spec::runtime::LinuxSeccomp, Option<Join>), ContainerError> {
    let spec = oci_spec::runtime::Spec::load(dir.join("bundle").join("config.json")).map_err(|e| runtime(format!("reading the container's spec: {e}")))?;
    let linux = spec.linux().as_ref().ok_or_else(|| runtime("the container's spec has no linux section"))?;
    let seccomp = linux.seccomp().clone().ok_or_else(|| runtime("the container's spec has no seccomp filter"))?;
    let userns = linux.namespaces().iter().flatten().find(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::User).and_then(|n| n.path().clone());
    let Some(path) = userns else { return Ok((seccomp, None)) };
    let process = spec.process().as_ref().ok_or_else(|| runtime("the container's spec has no process"))?;
    let caps = process.capabilities().clone().unwrap_or_default();
    let ns = std::fs::File::open(&path).map_err(|e| runtime(format!("opening the user namespace {}: {e}", path.display())))?;
    Ok((seccomp, Some((ns, process.user().clone(), caps))))
}

/// The executor of `container-exec`. Under a user namespace it enters it (`setns` is allowed:
/// the process is still host root, the namespace's owner), takes the container's groups, ids
/// and capabilities; then installs the container's seccomp filter (after libcontainer has joined
/// its namespaces and cgroup, dropped capabilities and set no_new_privs, which a user namespace
/// keeps), and runs the program as libcontainer's default executor does.
#[derive(Clone)]
struct ExecExecutor {
    seccomp: oci_spec::runtime::LinuxSeccomp,
    join: Option<(std::os::fd::RawFd, oci_spec::runtime::User, oci_spec::runtime::LinuxCapabilities)>,
}

impl ExecExecutor {
    fn enter(fd: std::os::fd::RawFd, user: &oci_spec::runtime::User, caps: &oci_spec::runtime::LinuxCapabilities) -> Result<(), ExecutorError> {
        let err = |what: &str, e: &dyn std::fmt::Display| ExecutorError::Other(format!("{what}: {e}"));
        // SAFETY: setns on a descriptor exec_main opened and keeps open; this process is the
        // single-threaded init of the exec.
        if unsafe { libc::setns(fd, libc::CLONE_NEWUSER) } != 0 {
            return Err(err("entering the container's user namespace", &std::io::Error::last_os_error()));
        }
        let groups: Vec<libc::gid_t> = user.additional_gids().iter().flatten().copied().collect();
        let (uid, gid) = (user.uid(), user.gid());
        // SAFETY: plain system calls on values; the capabilities are kept across the change of
        // ids and then set exactly below.
        let ok = unsafe {
            libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) == 0
                && libc::setgroups(groups.len(), groups.as_ptr()) == 0
                && libc::syscall(libc::SYS_setresgid, gid, gid, gid) == 0
                && libc::syscall(libc::SYS_setresuid, uid, uid, uid) == 0
                && libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) == 0
        };
        if !ok {
            return Err(err("taking the container's ids", &std::io::Error::last_os_error()));
        }
        let sys = libcontainer::syscall::syscall::create_syscall();
        libcontainer::capabilities::drop_privileges(caps, sys.as_ref()).map_err(|e| err("setting the capabilities", &e))
    }
}

impl Executor for ExecExecutor {
    fn exec(&self, spec: &oci_spec::runtime::Spec) -> Result<(), ExecutorError> {
        if let Some((fd, user, caps)) = &self.join {
            Self::enter(*fd, user, caps)?;
        }
        libcontainer::seccomp::initialize_seccomp(&self.seccomp).map_err(|e| ExecutorError::Other(format!("installing the seccomp filter: {e}")))?;
        get_executor().exec(spec)
    }

    fn validate(&self, spec: &oci_spec::runtime::Spec) -> Result<(), ExecutorValidationError> {
        get_executor().validate(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = std::process::id() as i32;
        let start = proc_start(me).expect("own start time");
        assert!(alive(me, start));
        assert!(!alive(me, start + 1), "a reused pid has another start time");
        assert!(!alive(i32::MAX, 0));
    }

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        let e = ExitRecord { exit_code: None, signal: Some(9), oom_killed: true, finished_at: String::new() };
        assert_eq!(e.code(), 137);
    }
}
