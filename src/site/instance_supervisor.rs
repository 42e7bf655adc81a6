//! The host side of an instance: its run directory, its `cloudlet vmm-worker` process (spawned
//! detached, with its tap descriptors and its own cgroup), the control socket client, and
//! observing a worker across daemon restarts. The contract with the worker is
//! [`crate::vmm::spec`].
//!
//! `DATA/instances/<id>/`: `spec.json` (the [`WorkerSpec`]), `worker.json` (this module's
//! [`WorkerRecord`]: pid, its start time, the boot id), `worker.log` (the worker's stdout and
//! stderr), `console.log` (the serial console, appended by the worker), `control.sock`,
//! `exit.json` (the worker's [`ExitRecord`]) and `root.img` (the root disk, a sparse copy of the
//! image's root filesystem, made once).
//!
//! The worker is `crate::self_exe() vmm-worker --spec <dir>/spec.json`, or, for tests,
//! the program named by the environment variable `CLOUDLET_VMM_WORKER` (given the same
//! arguments). It runs in its own session with stdin on `/dev/null`, its taps as fds 3, 4, ...
//! and every other descriptor closed.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::SiteError;
use crate::container::shim::{alive, boot_id, proc_start};
use crate::vmm::spec::{ExitRecord, Request, Response, WorkerSpec};

/// The environment variable naming a stand-in worker program (tests only).
pub const WORKER_ENV: &str = "CLOUDLET_VMM_WORKER";
/// Memory the worker may use beyond the guest's, MiB (the cgroup limit is guest + this).
pub const OVERHEAD_MIB: u64 = 64;
/// The CFS period of the CPU quota, microseconds.
const CFS_PERIOD_US: u64 = 100_000;
/// The console log is moved to `console.log.1` at a start once it is larger than this.
const CONSOLE_ROTATE_BYTES: u64 = 16 << 20;

fn internal(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> SiteError {
    SiteError::io_doing(what)
}

/// The run directory of one instance.
#[derive(Debug, Clone)]
pub struct Layout {
    /// `DATA/instances/<id>`.
    pub dir: PathBuf,
    /// The instance id.
    pub id: String,
}

impl Layout {
    /// `data_dir/instances/<id>`.
    pub fn new(data_dir: &Path, id: &str) -> Layout {
        Layout { dir: data_dir.join("instances").join(id), id: id.to_string() }
    }
    /// `spec.json`: the [`WorkerSpec`] the worker reads.
    pub fn spec_file(&self) -> PathBuf {
        self.dir.join("spec.json")
    }
    /// `worker.json`: the [`WorkerRecord`].
    pub fn record_file(&self) -> PathBuf {
        self.dir.join("worker.json")
    }
    /// `worker.log`: the worker's stdout and stderr.
    pub fn worker_log(&self) -> PathBuf {
        self.dir.join("worker.log")
    }
    /// `console.log`: the serial console's output.
    pub fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }
    /// `control.sock`: the worker's control socket (one JSON request and answer per line).
    pub fn control_socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }
    /// `exit.json`: the worker's [`ExitRecord`].
    pub fn exit_record(&self) -> PathBuf {
        self.dir.join("exit.json")
    }
    /// `root.img`: the root disk (`vda`).
    pub fn root_disk(&self) -> PathBuf {
        self.dir.join("root.img")
    }
    /// The cgroup path (`/cloudlet/<id>`) under each hierarchy.
    pub fn cgroup(&self) -> String {
        format!("/cloudlet/{}", self.id)
    }
}

/// What the daemon records of a worker it started (`worker.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WorkerRecord {
    /// The worker's process id.
    pub pid: i32,
    /// `/proc/<pid>/stat` field 22 at spawn: a reused pid has another.
    pub start: u64,
    /// The boot it ran in: after a reboot the pid means nothing.
    pub boot_id: String,
    /// RFC 3339.
    pub started_at: String,
    /// Seconds from `shutdown` to `kill` when stopping it (also after its instance is deleted).
    pub stop_timeout_seconds: u32,
}

/// What the host shows of an instance's worker.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// The recorded worker lives.
    Running(WorkerRecord),
    /// A worker was recorded and is gone; its exit record, if it wrote one.
    Exited(WorkerRecord, Option<ExitRecord>),
    /// No worker recorded.
    Absent,
}

/// Workers this daemon spawned: reaped here so they do not linger as zombies.
fn children() -> std::sync::MutexGuard<'static, HashMap<String, Child>> {
    static CHILDREN: std::sync::LazyLock<Mutex<HashMap<String, Child>>> = std::sync::LazyLock::new(|| Mutex::new(HashMap::new()));
    CHILDREN.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reap the finished workers this daemon spawned.
fn reap() {
    children().retain(|_, c| matches!(c.try_wait(), Ok(None)));
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Write a file atomically (temporary file, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SiteError> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(internal(format!("creating {}", tmp.display())))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(internal(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(internal(format!("placing {}", path.display())))
}

/// Observe the worker of `l`. A live worker without a record (the daemon died between spawn and
/// record) is found through its control socket and recorded.
pub fn observe(l: &Layout) -> Observed {
    reap();
    match read_json::<WorkerRecord>(&l.record_file()) {
        Some(rec) if rec.boot_id == boot_id() && alive(rec.pid, rec.start) => Observed::Running(rec),
        Some(rec) => {
            // A worker that died after the reap above is a zombie now, which `alive` counts as
            // gone: reap it here, since no later pass of a deleted instance would.
            reap();
            Observed::Exited(rec, read_json(&l.exit_record()))
        }
        None => {
            // The pid is the kernel's word for who listens on the socket (SO_PEERCRED), never the
            // pid the worker reports: a worker a guest took over must not name another process
            // for the daemon to signal later.
            let Ok((Response { status: Some(_), .. }, pid)) = control_peer(l, &Request::Status, Duration::from_millis(500)) else { return Observed::Absent };
            let Some(start) = proc_start(pid) else { return Observed::Absent };
            let rec = WorkerRecord { pid, start, boot_id: boot_id(), started_at: super::model::now_rfc3339(), stop_timeout_seconds: 30 };
            let _ = serde_json::to_vec(&rec).map_err(SiteError::from).and_then(|b| write_atomic(&l.record_file(), &b));
            Observed::Running(rec)
        }
    }
}

/// One request on the worker's control socket, answered within `timeout`.
pub fn control(l: &Layout, req: &Request, timeout: Duration) -> std::io::Result<Response> {
    control_peer(l, req, timeout).map(|(r, _)| r)
}

/// As [`control`], with the pid of the process that listens on the socket, as the kernel
/// reports it (`SO_PEERCRED`).
pub fn control_peer(l: &Layout, req: &Request, timeout: Duration) -> std::io::Result<(Response, i32)> {
    let s = UnixStream::connect(l.control_socket())?;
    let peer = nix::sys::socket::getsockopt(&s, nix::sys::socket::sockopt::PeerCredentials).map_err(std::io::Error::from)?.pid();
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let mut line = serde_json::to_vec(req).map_err(std::io::Error::other)?;
    line.push(b'\n');
    (&s).write_all(&line)?;
    let mut answer = String::new();
    BufReader::new(&s).read_line(&mut answer)?;
    Ok((serde_json::from_str(&answer).map_err(std::io::Error::other)?, peer))
}

/// Open a console connection: the worker answered the `console` request; the stream now carries
/// the raw serial console both ways.
pub fn open_console(l: &Layout) -> std::io::Result<UnixStream> {
    let s = UnixStream::connect(l.control_socket())?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    (&s).write_all(b"{\"op\":\"console\"}\n")?;
    // Read the answer line byte by byte, so no console byte after it is consumed.
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.len() < 4096 {
        std::io::Read::read_exact(&mut &s, &mut b)?;
        if b[0] == b'\n' {
            break;
        }
        line.push(b[0]);
    }
    let r: Response = serde_json::from_slice(&line).map_err(std::io::Error::other)?;
    if !r.ok {
        return Err(std::io::Error::other(r.error.unwrap_or_else(|| "the worker refused the console".into())));
    }
    s.set_read_timeout(None)?;
    Ok(s)
}

/// Send `sig` to the recorded worker if it is still that process. The process is held by a
/// pidfd (`pidfd_open(2)`) before its start time is checked, and signalled through it
/// (`pidfd_send_signal(2)`): the signal reaches the checked process or none, even if the pid is
/// reused in between. Kernels before 5.3 (no pidfds) fall back to `kill` after the check.
pub fn signal(rec: &WorkerRecord, sig: nix::sys::signal::Signal) -> bool {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, rec.pid, 0) };
    if raw < 0 {
        let unsupported = std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS);
        return unsupported && alive(rec.pid, rec.start) && nix::sys::signal::kill(nix::unistd::Pid::from_raw(rec.pid), sig).is_ok();
    }
    // SAFETY: `raw` is a pidfd just returned to us, owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
    if !alive(rec.pid, rec.start) {
        return false;
    }
    // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
    unsafe { libc::syscall(libc::SYS_pidfd_send_signal, fd.as_raw_fd(), sig as libc::c_int, std::ptr::null::<libc::siginfo_t>(), 0) == 0 }
}

/// The worker program: `CLOUDLET_VMM_WORKER` when set (tests), else this binary.
fn worker_program() -> Result<PathBuf, SiteError> {
    if let Some(p) = std::env::var_os(WORKER_ENV).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    crate::self_exe().map_err(internal("locating this binary"))
}

/// The cgroup of one worker: the directories whose `cgroup.procs` it joins.
#[derive(Debug, Clone, PartialEq)]
pub struct Cgroup {
    /// `v2` or `v1`.
    pub version: &'static str,
    /// One directory per hierarchy (v1: memory and cpu; v2: the one).
    pub dirs: Vec<PathBuf>,
}

/// The mount points of the cgroup v1 hierarchies holding `controller` (from mountinfo; the
/// super options list the controllers, as libcontainer reads them).
fn v1_mount(controller: &str) -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let dash = f.iter().position(|x| *x == "-")?;
        if f.get(dash + 1) != Some(&"cgroup") || !f.get(dash + 3)?.split(',').any(|o| o == controller) {
            return None;
        }
        f.get(4).map(PathBuf::from)
    })
}

fn write_knob(dir: &Path, knob: &str, value: &str) -> Result<(), SiteError> {
    std::fs::write(dir.join(knob), value).map_err(internal(format!("writing {value} to {}", dir.join(knob).display())))
}

/// Make the worker's cgroup `path` (`/cloudlet/<id>`) with a memory limit of `memory_mib` +
/// [`OVERHEAD_MIB`] and a CPU quota of `vcpus` CPUs: cgroup v2 (`memory.max`, `cpu.max`, the
/// controllers enabled down the tree) or v1 (`memory.limit_in_bytes`; `cpu.cfs_quota_us` over
/// `cpu.cfs_period_us`), as the host has it.
pub fn make_cgroup(path: &str, vcpus: u32, memory_mib: u64) -> Result<Cgroup, SiteError> {
    let rel = path.trim_start_matches('/');
    let bytes = (memory_mib + OVERHEAD_MIB) << 20;
    let quota = u64::from(vcpus) * CFS_PERIOD_US;
    if crate::container::cgroup::is_v2() {
        let root = Path::new("/sys/fs/cgroup");
        let dir = root.join(rel);
        std::fs::create_dir_all(&dir).map_err(internal(format!("creating {}", dir.display())))?;
        // Enable the controllers from the root down to the parent (already enabled is fine).
        let mut cur = root.to_path_buf();
        for c in Path::new(rel).parent().into_iter().flat_map(|p| p.components()) {
            let _ = std::fs::write(cur.join("cgroup.subtree_control"), "+cpu +memory");
            cur.push(c);
        }
        let _ = std::fs::write(cur.join("cgroup.subtree_control"), "+cpu +memory");
        write_knob(&dir, "memory.max", &bytes.to_string())?;
        write_knob(&dir, "cpu.max", &format!("{quota} {CFS_PERIOD_US}"))?;
        return Ok(Cgroup { version: "v2", dirs: vec![dir] });
    }
    let mem = v1_mount("memory").ok_or_else(|| SiteError::HostUnsupported("no cgroup v1 memory hierarchy is mounted".into()))?.join(rel);
    let cpu = v1_mount("cpu").ok_or_else(|| SiteError::HostUnsupported("no cgroup v1 cpu hierarchy is mounted".into()))?.join(rel);
    for d in [&mem, &cpu] {
        std::fs::create_dir_all(d).map_err(internal(format!("creating {}", d.display())))?;
    }
    write_knob(&mem, "memory.limit_in_bytes", &bytes.to_string())?;
    write_knob(&cpu, "cpu.cfs_period_us", &CFS_PERIOD_US.to_string())?;
    write_knob(&cpu, "cpu.cfs_quota_us", &quota.to_string())?;
    Ok(Cgroup { version: "v1", dirs: vec![mem, cpu] })
}

/// How long [`remove_cgroup`] waits for a dead worker's last threads to leave its cgroup.
const CGROUP_DRAIN: Duration = Duration::from_secs(5);

/// Remove the worker's cgroup directories once the worker is gone. A SIGKILLed worker's leader
/// shows as a zombie (so [`observe`] reports it gone) while its vCPU and device threads are still
/// exiting, and `rmdir(2)` of a cgroup answers `EBUSY` while any task is in it: so this retries
/// every 20 ms for up to 5 s. Returns whether no directory is left (a warning is logged if not).
pub fn remove_cgroup(l: &Layout) -> bool {
    let path = l.cgroup();
    let gone = wait_until(CGROUP_DRAIN, || {
        crate::container::cgroup::remove(&path);
        crate::container::cgroup::dirs(&path).is_empty()
    });
    if !gone {
        tracing::warn!(instance = %l.id, dirs = ?crate::container::cgroup::dirs(&path), "the worker's cgroup still holds tasks; it is removed later");
    }
    gone
}

/// Remove the cgroups `/cloudlet/<instance id>` (in every hierarchy) that `owned` says no
/// instance owns, e.g. those a crash of the daemon or an older version left. Only names of
/// instance ids are touched (containers share `/cloudlet/`), and only empty cgroups can be
/// removed (`rmdir(2)` refuses the others). Returns the ids whose cgroups were removed.
pub fn sweep_cgroups(owned: impl Fn(&str) -> bool) -> Vec<String> {
    let mut ids = std::collections::BTreeSet::new();
    for parent in crate::container::cgroup::dirs("/cloudlet") {
        for e in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type().is_ok_and(|t| t.is_dir()) && super::Kind::of_id(&name) == Some(super::Kind::Instance) && !owned(&name) {
                ids.insert(name);
            }
        }
    }
    ids.into_iter()
        .filter(|id| {
            let path = format!("/cloudlet/{id}");
            crate::container::cgroup::remove(&path);
            let left = crate::container::cgroup::dirs(&path);
            if !left.is_empty() {
                tracing::warn!(instance = %id, dirs = ?left, "an orphaned instance cgroup still holds tasks; left in place");
            }
            left.is_empty()
        })
        .collect()
}

/// Format a non-negative number into `buf` without allocating (for use after fork).
fn itoa(mut n: u32, buf: &mut [u8; 12]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Spawn the worker for `spec` (written to `spec.json` first), detached, with `taps` as fds
/// 3, 4, ... (in `spec.nets` order) and in `cgroup`; record it in `worker.json`.
pub fn spawn(l: &Layout, spec: &WorkerSpec, taps: Vec<OwnedFd>, cgroup: &Cgroup, stop_timeout_seconds: u32) -> Result<WorkerRecord, SiteError> {
    std::fs::create_dir_all(&l.dir).map_err(internal(format!("creating {}", l.dir.display())))?;
    for f in [l.exit_record(), l.record_file()] {
        let _ = std::fs::remove_file(f);
    }
    if std::fs::metadata(l.console_log()).is_ok_and(|m| m.len() > CONSOLE_ROTATE_BYTES) {
        let _ = std::fs::rename(l.console_log(), l.dir.join("console.log.1"));
    }
    write_atomic(&l.spec_file(), &serde_json::to_vec_pretty(spec)?)?;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(l.worker_log()).map_err(internal("opening worker.log"))?;
    let log2 = log.try_clone().map_err(internal("duplicating worker.log"))?;
    let n = taps.len() as i32;
    // Move the taps above the target range first, so placing one cannot overwrite another.
    let high: Vec<OwnedFd> = taps
        .iter()
        .map(|t| {
            // SAFETY: F_DUPFD_CLOEXEC duplicates an open descriptor to the lowest free one >= 3+n.
            let fd = unsafe { libc::fcntl(t.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3 + n) };
            if fd < 0 {
                return Err(internal("duplicating a tap descriptor")(std::io::Error::last_os_error()));
            }
            // SAFETY: fd was just returned by fcntl and is owned by nothing else.
            Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
        })
        .collect::<Result<_, SiteError>>()?;
    drop(taps);
    let sources: Vec<i32> = high.iter().map(|f| f.as_raw_fd()).collect();
    let procs: Vec<std::fs::File> = cgroup
        .dirs
        .iter()
        .map(|d| std::fs::OpenOptions::new().write(true).open(d.join("cgroup.procs")).map_err(internal(format!("opening {}/cgroup.procs", d.display()))))
        .collect::<Result<_, _>>()?;
    let proc_fds: Vec<i32> = procs.iter().map(|f| f.as_raw_fd()).collect();
    let mut cmd = Command::new(worker_program()?);
    cmd.arg("vmm-worker").arg("--spec").arg(l.spec_file());
    cmd.env_remove("LISTEN_FDS").env_remove("LISTEN_PID");
    cmd.stdin(Stdio::null()).stdout(Stdio::from(log)).stderr(Stdio::from(log2));
    // SAFETY: the closure runs in the child between fork and exec and calls only
    // async-signal-safe functions (setsid, getpid, write, dup2, close_range) on memory prepared
    // before the fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut buf = [0u8; 12];
            let pid = itoa(libc::getpid() as u32, &mut buf);
            for fd in &proc_fds {
                if libc::write(*fd, pid.as_ptr().cast(), pid.len()) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, src) in sources.iter().enumerate() {
                if libc::dup2(*src, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // Everything above the taps goes (close_range(2), Linux 5.9; older kernels rely on
            // close-on-exec, which every descriptor of the daemon has).
            libc::syscall(libc::SYS_close_range, (3 + sources.len()) as libc::c_uint, libc::c_uint::MAX, 0 as libc::c_uint);
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(internal("starting the vmm worker"))?;
    drop(high);
    drop(procs);
    let pid = child.id() as i32;
    let start = proc_start(pid).ok_or_else(|| SiteError::Internal("the worker died at once (see worker.log)".into()))?;
    let rec = WorkerRecord { pid, start, boot_id: boot_id(), started_at: super::model::now_rfc3339(), stop_timeout_seconds };
    write_atomic(&l.record_file(), &serde_json::to_vec(&rec)?)?;
    children().insert(l.id.clone(), child);
    Ok(rec)
}

/// The taps the worker `rec` has open on `/dev/net/tun` and attached, from the `iff:` line the
/// tun driver writes in each descriptor's fdinfo (`drivers/net/tun.c`, empty once the tap is
/// gone). `None` when the worker's descriptors cannot be read (it ended, or `/proc` is hidden).
pub fn attached_taps(rec: &WorkerRecord) -> Option<Vec<String>> {
    if !alive(rec.pid, rec.start) {
        return None;
    }
    let mut taps = Vec::new();
    for fd in std::fs::read_dir(format!("/proc/{}/fd", rec.pid)).ok()?.flatten() {
        if std::fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == "/dev/net/tun")
            && let Ok(info) = std::fs::read_to_string(format!("/proc/{}/fdinfo/{}", rec.pid, fd.file_name().to_string_lossy()))
            && let Some(name) = info.lines().find_map(|l| l.strip_prefix("iff:")).map(str::trim).filter(|n| !n.is_empty())
        {
            taps.push(name.to_string());
        }
    }
    Some(taps)
}

/// Forget a finished run: its record (the exit record stays until the next start).
pub fn clear_record(l: &Layout) {
    let _ = std::fs::remove_file(l.record_file());
    let _ = std::fs::remove_file(l.control_socket());
}

/// Wait until `cond` holds, polling every 20 ms, at most `timeout`.
pub fn wait_until(timeout: Duration, cond: impl Fn() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        reap();
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// End a worker now: `kill` on its socket, then SIGKILL; returns once it is gone (at most ~5 s).
pub fn kill_now(l: &Layout, rec: &WorkerRecord) -> Result<(), SiteError> {
    let gone = || !alive(rec.pid, rec.start);
    let _ = control(l, &Request::Kill, Duration::from_millis(500));
    if !wait_until(Duration::from_millis(1000), gone) {
        signal(rec, nix::sys::signal::Signal::SIGKILL);
    }
    if !wait_until(Duration::from_secs(5), gone) {
        return Err(SiteError::Internal(format!("worker {} did not die after SIGKILL", rec.pid)));
    }
    Ok(())
}

/// Remove everything of an instance on the host: its worker (killed), cgroup and run directory.
pub fn remove(l: &Layout) -> Result<(), SiteError> {
    if let Observed::Running(rec) = observe(l) {
        kill_now(l, &rec)?;
    }
    // The run directory (with the record) stays until the cgroup is gone, so a failure here is
    // retried by the caller and swept at start-up.
    if !remove_cgroup(l) {
        return Err(SiteError::Internal(format!("the cgroup {} of instance {} still holds tasks", l.cgroup(), l.id)));
    }
    match std::fs::remove_dir_all(&l.dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(internal(format!("removing {}", l.dir.display()))(e)),
        _ => Ok(()),
    }
}

/// A locally administered unicast MAC derived from the instance id (stable across restarts).
pub fn mac_of(id: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(id.as_bytes());
    let b0 = (d[0] & 0xfc) | 0x02;
    format!("{b0:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", d[1], d[2], d[3], d[4], d[5])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_local_unicast_and_stable() {
        let m = mac_of("i-01JD5T3M9C7T4ZB3H2W6Y1Q8NA");
        assert_eq!(m, mac_of("i-01JD5T3M9C7T4ZB3H2W6Y1Q8NA"));
        assert_ne!(m, mac_of("i-01JD5T3M9C7T4ZB3H2W6Y1Q8NB"));
        let b0 = u8::from_str_radix(&m[..2], 16).expect("hex");
        assert_eq!(b0 & 0x03, 0x02, "locally administered, unicast: {m}");
        assert_eq!(m.len(), 17);
    }

    /// A "worker" that claims to be pid 1 on its control socket is recorded by the pid the
    /// kernel reports for the socket's listener (this test process), so the daemon would never
    /// signal the process the worker named.
    #[test]
    fn a_worker_is_recorded_by_its_sockets_peer_pid_not_the_pid_it_reports() {
        let tmp = tempfile::tempdir().expect("tmp");
        let l = Layout::new(tmp.path(), "i-test");
        std::fs::create_dir_all(&l.dir).expect("dir");
        let listener = std::os::unix::net::UnixListener::bind(l.control_socket()).expect("bind");
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().expect("accept");
            let mut line = String::new();
            BufReader::new(&s).read_line(&mut line).expect("request");
            let lie = Response {
                ok: true,
                status: Some(crate::vmm::spec::Status { pid: 1, state: "running".into(), boot_timer_ms: None, uptime_ms: 1.0, vcpus: 1, memory_mib: 128 }),
                error: None,
            };
            let mut out = serde_json::to_vec(&lie).expect("json");
            out.push(b'\n');
            (&s).write_all(&out).expect("answer");
        });
        match observe(&l) {
            Observed::Running(rec) => {
                assert_eq!(rec.pid, std::process::id() as i32, "the listener's pid, not the claimed 1");
                assert_eq!(read_json::<WorkerRecord>(&l.record_file()).map(|r| r.pid), Some(rec.pid));
            }
            other => panic!("{other:?}"),
        }
        server.join().expect("server");
    }

    #[test]
    fn itoa_formats_without_allocating() {
        let mut b = [0u8; 12];
        assert_eq!(itoa(0, &mut b), b"0");
        assert_eq!(itoa(4_194_304, &mut b), b"4194304");
    }

    #[test]
    fn cgroup_v1_mounts_are_read_from_mountinfo() {
        // Only checks the parser against this host when it has v1 hierarchies.
        if !crate::container::cgroup::is_v2() && Path::new("/sys/fs/cgroup/memory").is_dir() {
            assert!(v1_mount("memory").is_some_and(|p| p.join("memory.limit_in_bytes").exists()));
        }
    }
}
