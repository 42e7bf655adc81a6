//! The daemon's side of the container engine: a container's directory, its overlay root
//! filesystem, starting its shim, observing it, signalling and stopping it, and removing all of
//! it. Every step is idempotent, so a reconciler can repeat it after any crash.
//!
//! `DATA/containers/<id>/`:
//! - `bundle/config.json`, `bundle/rootfs/` (the overlay mount: the image's unpacked layers as
//!   the lower directory, `upper/` and `work/` for the container's writes, kept across restarts);
//! - `etc/hosts`, `etc/hostname` (bound read-only into the container);
//! - under a user namespace, `mounts/lower` (the image's root, bound idmapped), `mounts/m<N>`
//!   (each mount's source: volumes idmapped, host paths as they are) and `upper-base` (the host
//!   range the writable layer's owners are in);
//! - `state/` (libcontainer's root), `logs/`, `shim.json`, `exit.json`, `shim.log`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, MsFlags};
use nix::sys::signal::Signal;

use super::shim::{self, EXIT_FILE, ExitRecord, SHIM_FILE, ShimRecord};
use super::spec::{self, RunConfig};
use super::{ContainerError, write_atomic};

/// The directory layout of one container.
#[derive(Debug, Clone)]
pub struct Layout {
    /// `DATA/containers/<id>`.
    pub dir: PathBuf,
    /// The container id (`ctr-<ULID>`), also libcontainer's id.
    pub id: String,
}

impl Layout {
    /// `data_dir/containers/<id>`.
    pub fn new(data_dir: &Path, id: &str) -> Layout {
        Layout { dir: data_dir.join("containers").join(id), id: id.to_string() }
    }
    /// The overlay mount point, `bundle/rootfs`.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("bundle").join("rootfs")
    }
    /// The log directory (`container.log` and its rotations).
    pub fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }
    /// The stop grace period recorded at the last start (10 s when none was recorded), so a
    /// container deleted from state is still stopped with its own timeout.
    pub fn stop_grace(&self) -> Duration {
        std::fs::read_to_string(self.dir.join("stop-timeout"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Duration::from_secs)
            .unwrap_or(Duration::from_secs(10))
    }
    /// The cgroup path (`/cloudlet/<id>`) under each hierarchy.
    pub fn cgroup(&self) -> String {
        format!("/cloudlet/{}", self.id)
    }
    /// Where a container in a user namespace sees its directory from: `RUN_DIR/<id>`, a bind of
    /// `dir` (see [`prepare`]).
    pub fn run_dir(&self) -> PathBuf {
        Path::new(RUN_DIR).join(&self.id)
    }
}

/// The directory of the binds through which containers in user namespaces reach their own
/// directories (mode 0711: searchable, not listable), so the data directory's own modes stay
/// as the site set them.
pub const RUN_DIR: &str = "/run/cloudlet-containers";

/// Unbind [`Layout::run_dir`] (with every mount under it) and remove the directory.
fn unbind_run_dir(l: &Layout) -> Result<(), ContainerError> {
    let run = l.run_dir();
    for _ in 0..8 {
        if !is_mounted(&run) {
            break;
        }
        let _ = nix::mount::umount2(&run, MntFlags::MNT_DETACH);
    }
    if is_mounted(&run) {
        return Err(ContainerError::Runtime(format!("{} stays mounted", run.display())));
    }
    match std::fs::remove_dir(&run) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ContainerError::Io { what: format!("removing {}", run.display()), source: e }),
        _ => Ok(()),
    }
}

/// What the host shows of a container.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// Its shim lives.
    Running(ShimRecord),
    /// It ended, and its shim recorded how.
    Exited(ExitRecord),
    /// The shim is gone but the init lives (the shim was killed): it must be killed.
    Orphaned(ShimRecord),
    /// Nothing runs and nothing was recorded: never started, or lost in a reboot.
    Absent,
}

fn read_json<T: for<'de> serde::Deserialize<'de>>(p: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(p).ok()?).ok()
}

/// Observe a container from its records and `/proc`.
pub fn observe(l: &Layout) -> Observed {
    let rec: Option<ShimRecord> = read_json::<ShimRecord>(&l.dir.join(SHIM_FILE)).filter(ShimRecord::this_boot);
    if let Some(r) = &rec
        && shim::alive(r.shim_pid, r.shim_start)
    {
        return Observed::Running(r.clone());
    }
    if let Some(e) = read_json(&l.dir.join(EXIT_FILE)) {
        return Observed::Exited(e);
    }
    match rec {
        Some(r) if shim::alive(r.init_pid, r.init_start) => Observed::Orphaned(r),
        _ => Observed::Absent,
    }
}

/// Whether `path` is a mount point (per `/proc/self/mountinfo`).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
    let want = path.to_string_lossy();
    info.lines().any(|l| l.split(' ').nth(4).is_some_and(|m| unescape(m) == want))
}

/// The mount points under `dir` (not `dir` itself), deepest first, per `/proc/self/mountinfo`.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return vec![] };
    let mut found: Vec<PathBuf> =
        info.lines().filter_map(|l| l.split(' ').nth(4)).map(|m| PathBuf::from(unescape(m))).filter(|m| m.starts_with(dir) && m != dir).collect();
    found.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    found.dedup();
    found
}

/// Unmount (lazily) every mount under `dir`, deepest first, until none is left. Errors: one
/// that stays (so the caller does not go on to remove or reuse the tree under it).
pub fn unmount_under(dir: &Path) -> Result<(), ContainerError> {
    for _ in 0..8 {
        let found = mounts_under(dir);
        if found.is_empty() {
            return Ok(());
        }
        for m in found {
            let _ = nix::mount::umount2(&m, MntFlags::MNT_DETACH);
        }
    }
    match mounts_under(dir).first() {
        None => Ok(()),
        Some(m) => Err(ContainerError::Runtime(format!("{} stays mounted", m.display()))),
    }
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

fn mkdirs(dirs: &[PathBuf]) -> Result<(), ContainerError> {
    for d in dirs {
        std::fs::create_dir_all(d).map_err(ContainerError::io(format!("creating {}", d.display())))?;
    }
    Ok(())
}

/// Make the container ready to start: its directories, the overlay over `image_root`, the
/// `/etc` files, `config.json`, the stop grace period; old records and any stale libcontainer
/// state are cleared.
///
/// Under a user namespace (`cfg.userns`) the image's root and the volumes are bound idmapped
/// under `mounts/` (the image's files, owned by host ids on disk, show as the container's ids;
/// one unpacked image serves every project), host paths are bound there as they are, and the
/// writable layer's owners are shifted into the namespace's host range once (`upper-base`
/// records the range they are in). libcontainer sets the container up from inside the user
/// namespace, where only what its root may search is reachable: so every source is under the
/// container's directory, which is group-searchable by the container's root alone (mode 0710,
/// group its host id), and the spec names them through the bind of that directory on
/// [`Layout::run_dir`]. Every mount is made again at each start, so a changed image, volume or
/// mapping never leaves a stale one.
pub fn prepare(l: &Layout, image_root: &Path, cfg: &RunConfig, grace: Duration) -> Result<(), ContainerError> {
    let (upper, work, etc, binds) = (l.dir.join("upper"), l.dir.join("work"), l.dir.join("etc"), l.dir.join("mounts"));
    mkdirs(&[upper.clone(), work.clone(), etc.clone(), l.rootfs(), l.logs(), l.dir.join("state")])?;
    unbind_run_dir(l)?;
    unmount_under(&l.dir)?;
    // A container whose image changed gets a fresh writable layer on the new image (as Docker
    // makes a new container): the old upper layer belongs to the old image's files.
    let lower_file = l.dir.join("lower");
    let base_file = l.dir.join("upper-base");
    let lower_was = std::fs::read_to_string(&lower_file).unwrap_or_default();
    if !lower_was.is_empty() && lower_was != image_root.to_string_lossy() {
        for d in [&upper, &work] {
            std::fs::remove_dir_all(d).map_err(ContainerError::io(format!("clearing {}", d.display())))?;
            std::fs::create_dir_all(d).map_err(ContainerError::io(format!("creating {}", d.display())))?;
        }
        let _ = std::fs::remove_file(&base_file);
    }
    write_atomic(&lower_file, image_root.to_string_lossy().as_bytes())?;
    let mut cfg = cfg.clone();
    let lower = match &cfg.userns {
        None => image_root.to_path_buf(),
        Some(u) => {
            let gid = nix::unistd::Gid::from_raw(u.host_base);
            nix::unistd::chown(&l.dir, Some(nix::unistd::Uid::from_raw(0)), Some(gid))
                .map_err(|e| ContainerError::Runtime(format!("chown {}: {e}", l.dir.display())))?;
            std::fs::set_permissions(&l.dir, std::os::unix::fs::PermissionsExt::from_mode(0o710))
                .map_err(ContainerError::io(format!("chmod {}", l.dir.display())))?;
            let bind = |src: &Path, dst: &Path, idmap: bool| {
                let made = if src.is_dir() { std::fs::create_dir_all(dst) } else { std::fs::write(dst, b"") };
                made.map_err(ContainerError::io(format!("creating {}", dst.display())))?;
                let bound = if idmap {
                    crate::node::ns::idmapped_bind(src, dst, &u.path)
                } else {
                    nix::mount::mount(Some(src), dst, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>).map_err(std::io::Error::from)
                };
                bound.map_err(|e| ContainerError::Runtime(format!("binding {} on {}: {e}", src.display(), dst.display())))
            };
            bind(image_root, &binds.join("lower"), true)?;
            for (i, m) in cfg.mounts.iter_mut().enumerate() {
                let dst = binds.join(format!("m{i}"));
                bind(&m.source, &dst, m.idmap)?;
                m.source = dst;
            }
            binds.join("lower")
        }
    };
    let base_was: u32 = std::fs::read_to_string(&base_file).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
    let base = cfg.userns.as_ref().map_or(0, |u| u.host_base);
    if base != base_was {
        let n = crate::node::ns::shift_ids(&upper, base_was, base, spec::USERNS_IDS)
            .map_err(ContainerError::io(format!("shifting the owners in {}", upper.display())))?;
        tracing::debug!(container = %l.id, from = base_was, to = base, entries = n, "shifted the writable layer's owners");
        write_atomic(&base_file, base.to_string().as_bytes())?;
    }
    let opts = format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());
    nix::mount::mount(Some("overlay"), &l.rootfs(), Some("overlay"), MsFlags::MS_NODEV, Some(opts.as_str()))
        .map_err(|e| ContainerError::Runtime(format!("mounting the overlay root: {e}")))?;
    if cfg.userns.is_some() {
        // libcontainer resolves the root and the mount sources from inside the user namespace:
        // through the bind under RUN_DIR, not through the data directory.
        let run = l.run_dir();
        {
            use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
            std::fs::DirBuilder::new().recursive(true).mode(0o711).create(RUN_DIR).map_err(ContainerError::io(format!("creating {RUN_DIR}")))?;
            std::fs::set_permissions(RUN_DIR, std::fs::Permissions::from_mode(0o711)).map_err(ContainerError::io(format!("chmod {RUN_DIR}")))?;
            std::fs::DirBuilder::new().mode(0o700).create(&run).map_err(ContainerError::io(format!("creating {}", run.display())))?;
        }
        nix::mount::mount(Some(&l.dir), &run, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
            .map_err(|e| ContainerError::Runtime(format!("binding {} on {}: {e}", l.dir.display(), run.display())))?;
        cfg.rootfs = run.join("bundle").join("rootfs");
        cfg.etc_dir = cfg.etc_dir.as_ref().and_then(|e| e.strip_prefix(&l.dir).ok()).map(|rel| run.join(rel));
        for (i, m) in cfg.mounts.iter_mut().enumerate() {
            m.source = run.join("mounts").join(format!("m{i}"));
        }
    }
    let cfg = &cfg;
    let mut hosts = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    if let Some(ip) = cfg.address {
        hosts.push_str(&format!("{ip}\t{}\n", cfg.hostname));
    }
    write_atomic(&etc.join("hostname"), format!("{}\n", cfg.hostname).as_bytes())?;
    write_atomic(&etc.join("hosts"), hosts.as_bytes())?;
    let spec = spec::build(cfg, spec::swap_limit_supported())?;
    let json = serde_json::to_vec_pretty(&spec).map_err(|e| ContainerError::Runtime(e.to_string()))?;
    write_atomic(&l.dir.join("bundle").join("config.json"), &json)?;
    write_atomic(&l.dir.join("stop-timeout"), grace.as_secs().to_string().as_bytes())?;
    for f in [SHIM_FILE, EXIT_FILE] {
        let _ = std::fs::remove_file(l.dir.join(f));
    }
    clear_state(l);
    Ok(())
}

/// Remove libcontainer's record and the cgroup a lost shim left behind (nothing runs).
fn clear_state(l: &Layout) {
    let _ = std::fs::remove_dir_all(l.dir.join("state").join(&l.id));
    super::cgroup::remove(&l.cgroup());
}

/// Record which volumes (ids) the container binds, so they stay attached until the container
/// is gone from the host, not just from state.
pub fn record_volumes(l: &Layout, ids: &[String]) -> Result<(), ContainerError> {
    write_atomic(&l.dir.join("volumes"), ids.join("\n").as_bytes())
}

/// The ids of the containers under `data_dir` whose directory records volume `volume` (they
/// may be running or still stopping).
pub fn containers_binding(data_dir: &Path, volume: &str) -> Vec<String> {
    std::fs::read_dir(data_dir.join("containers"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| std::fs::read_to_string(e.path().join("volumes")).is_ok_and(|s| s.lines().any(|l| l == volume)))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Options of the shim's logs.
#[derive(Debug, Clone, Copy)]
pub struct LogOptions {
    /// Rotate past this many bytes.
    pub max_bytes: u64,
    /// Rotated files kept.
    pub keep: usize,
}

/// Start the prepared container through a shim of `bin` (this binary). Returns once the
/// container's process runs, or with the runtime's error.
pub fn start(bin: &Path, l: &Layout, logs: LogOptions) -> Result<ShimRecord, ContainerError> {
    let out = Command::new(bin)
        .arg("container-shim")
        .arg("--dir")
        .arg(&l.dir)
        .args(["--id", &l.id, "--cgroup", &l.cgroup()])
        .args(["--log-max-bytes", &logs.max_bytes.to_string(), "--log-keep", &logs.keep.to_string()])
        // libcontainer keeps LISTEN_FDS descriptors open into the container: never pass them on.
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(ContainerError::io(format!("running {} container-shim", bin.display())))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(ContainerError::Runtime(if msg.is_empty() { format!("the shim failed: {}", out.status) } else { msg }));
    }
    read_json(&l.dir.join(SHIM_FILE)).ok_or_else(|| ContainerError::Runtime("the shim recorded no shim.json".into()))
}

/// Send `sig` to the container's init, if it is still the recorded process. Returns whether it
/// was sent.
pub fn signal(rec: &ShimRecord, sig: Signal) -> bool {
    shim::alive(rec.init_pid, rec.init_start) && nix::sys::signal::kill(nix::unistd::Pid::from_raw(rec.init_pid), sig).is_ok()
}

/// Wait until `cond` holds, polling every 20 ms, at most `timeout`.
fn wait_until(timeout: Duration, cond: impl Fn() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// Stop the container: SIGTERM, then SIGKILL after `grace`; returns once the shim is gone (it
/// records the exit). Safe to call when nothing runs.
pub fn stop(l: &Layout, grace: Duration) -> Result<(), ContainerError> {
    let rec = match observe(l) {
        Observed::Running(r) | Observed::Orphaned(r) => r,
        Observed::Exited(_) | Observed::Absent => return Ok(()),
    };
    let init_gone = || !shim::alive(rec.init_pid, rec.init_start);
    if signal(&rec, Signal::SIGTERM) && !wait_until(grace, init_gone) {
        signal(&rec, Signal::SIGKILL);
    }
    if !wait_until(Duration::from_secs(10), init_gone) {
        return Err(ContainerError::Runtime(format!("init {} did not die after SIGKILL", rec.init_pid)));
    }
    if !wait_until(Duration::from_secs(10), || !shim::alive(rec.shim_pid, rec.shim_start)) {
        return Err(ContainerError::Runtime(format!("shim {} did not exit", rec.shim_pid)));
    }
    if !l.dir.join(EXIT_FILE).exists() {
        // The shim was gone already (an orphan): record a kill so the container shows as stopped.
        let e = ExitRecord { exit_code: None, signal: Some(Signal::SIGKILL as i32), oom_killed: false, finished_at: chrono::Utc::now().to_rfc3339() };
        write_atomic(&l.dir.join(EXIT_FILE), &serde_json::to_vec(&e).map_err(|e| ContainerError::Runtime(e.to_string()))?)?;
        clear_state(l);
    }
    Ok(())
}

/// Stop the container and remove everything of it on the host: the overlay mount, the cgroup,
/// the directory with its writable layer and logs.
pub fn remove(l: &Layout, grace: Duration) -> Result<(), ContainerError> {
    stop(l, grace)?;
    clear_state(l);
    // Never remove a tree with a mount in it: the binds under `mounts/` are the image's files,
    // the volumes' data and the host's paths.
    unbind_run_dir(l)?;
    unmount_under(&l.dir)?;
    match std::fs::remove_dir_all(&l.dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ContainerError::Io { what: format!("removing {}", l.dir.display()), source: e }),
    }
}

/// The result of an exec.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct ExecOutput {
    /// The command's exit code (128 + signal when killed; 124 on timeout; 126 when it could
    /// not run).
    pub exit_code: i32,
    /// Its standard output (UTF-8, invalid bytes replaced; at most 1 MiB).
    pub stdout: String,
    /// Its standard error (likewise).
    pub stderr: String,
    /// Whether the timeout killed it.
    pub timed_out: bool,
}
