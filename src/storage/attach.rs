//! Attaching a volume to containers: formatted as ext4 on first use (`mkfs.ext4` works on the
//! file itself), mounted through a loop device at `<pool>/mnt/<id>` (`mount -o loop`, whose loop
//! device frees itself when the last reference goes), grown with `resize2fs` (online when the
//! daemon holds `CAP_SYS_RESOURCE`, else offline before the next mount), and frozen
//! (`FIFREEZE`) while a snapshot copies it so the copy is one point in time.

use std::ffi::OsStr;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use super::{StorageError, io, run};

/// `FIFREEZE` and `FITHAW` (`_IOWR('X', 119/120, int)`, `<linux/fs.h>`).
const FIFREEZE: libc::c_ulong = 0xC004_5877;
const FITHAW: libc::c_ulong = 0xC004_5878;

/// The device mounted at `dir` (from `/proc/self/mountinfo`), if `dir` is a mount point.
pub fn mounted_device(dir: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = dir.to_string_lossy();
    info.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        if f.get(4) != Some(&want.as_ref()) {
            return None;
        }
        // After the optional fields comes "-", then the type and the source.
        let dash = f.iter().position(|x| *x == "-")?;
        f.get(dash + 2).map(|s| s.to_string())
    })
}

/// Whether the file holds a filesystem (`blkid -p`: exit 0 with a type, or 2 for none). Any other
/// outcome (an ambivalent probe, a missing tool) is an error, never "unformatted": formatting
/// on a wrong answer would wipe a tenant's data.
pub fn formatted(file: &Path) -> Result<bool, StorageError> {
    let out = std::process::Command::new("blkid")
        .args([OsStr::new("-p"), OsStr::new("-o"), OsStr::new("value"), OsStr::new("-s"), OsStr::new("TYPE"), file.as_os_str()])
        .output()
        .map_err(|e| StorageError::Tool { tool: "blkid".into(), message: e.to_string() })?;
    match out.status.code() {
        Some(0) => Ok(!String::from_utf8_lossy(&out.stdout).trim().is_empty()),
        Some(2) => Ok(false),
        _ => Err(StorageError::Tool { tool: "blkid".into(), message: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()) }),
    }
}

/// Format volume `file` as ext4 (label: the first 16 bytes of `label`) when it holds no
/// filesystem; returns whether it did. Also used for an instance's disks, which are not mounted.
pub fn format_if_blank(file: &Path, label: &str) -> Result<bool, StorageError> {
    if formatted(file)? {
        return Ok(false);
    }
    let label = &label[..label.len().min(16)];
    run("mkfs.ext4", &[OsStr::new("-q"), OsStr::new("-F"), OsStr::new("-L"), OsStr::new(label), file.as_os_str()])?;
    Ok(true)
}

/// Make sure volume `file` is mounted at `dir` (formatting it first if it holds no filesystem),
/// and that its filesystem fills the file (after a grow). Returns `dir`.
pub fn ensure_mounted(file: &Path, dir: &Path, label: &str) -> Result<PathBuf, StorageError> {
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    if mounted_device(dir).is_none() {
        let fresh = format_if_blank(file, label)?;
        if !fresh && fs_bytes(file).is_some_and(|b| b < std::fs::metadata(file).map(|m| m.len()).unwrap_or(0)) {
            // Grown while detached (or while the online grow was not allowed): grow it offline.
            run("e2fsck", &[OsStr::new("-f"), OsStr::new("-p"), file.as_os_str()])?;
            run("resize2fs", &[file.as_os_str()])?;
        }
        run("mount", &[OsStr::new("-t"), OsStr::new("ext4"), OsStr::new("-o"), OsStr::new("loop,nodev,nosuid"), file.as_os_str(), dir.as_os_str()])?;
    }
    Ok(dir.to_path_buf())
}

/// The size of the ext4 filesystem in `file` (block count × block size, from `dumpe2fs -h`).
pub fn fs_bytes(file: &Path) -> Option<u64> {
    let out = run("dumpe2fs", &[OsStr::new("-h"), file.as_os_str()]).ok()?;
    let field = |k: &str| out.lines().find_map(|l| l.strip_prefix(k)).and_then(|v| v.trim().parse::<u64>().ok());
    Some(field("Block count:")? * field("Block size:")?)
}

/// Grow the mounted filesystem at `dir` to its grown file: refresh the loop device's size, then
/// `resize2fs` online. Online growth needs `CAP_SYS_RESOURCE`; without it (a confined daemon)
/// this answers `Ok(false)` and the filesystem grows offline at the next attach.
pub fn fill(dir: &Path) -> Result<bool, StorageError> {
    let Some(dev) = mounted_device(dir) else { return Ok(false) };
    if dev.starts_with("/dev/loop") {
        run("losetup", &[OsStr::new("-c"), OsStr::new(&dev)])?;
    }
    match run("resize2fs", &[OsStr::new(&dev)]) {
        Ok(_) => Ok(true),
        Err(StorageError::Tool { message, .. }) if message.contains("Permission denied") => Ok(false),
        Err(e) => Err(e),
    }
}

/// Unmount `dir` (lazily: containers that still hold it keep it until they end).
pub fn unmount(dir: &Path) -> Result<(), StorageError> {
    if mounted_device(dir).is_some() {
        nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH)
            .map_err(|e| StorageError::Io { what: format!("unmounting {}", dir.display()), source: e.into() })?;
    }
    Ok(())
}

/// Run `f` with the filesystem mounted at `dir` frozen (writes block until it thaws), or plainly
/// when `dir` is not mounted.
pub fn frozen<T>(dir: &Path, f: impl FnOnce() -> Result<T, StorageError>) -> Result<T, StorageError> {
    if mounted_device(dir).is_none() {
        return f();
    }
    let d = std::fs::File::open(dir).map_err(io(format!("opening {}", dir.display())))?;
    // SAFETY: FIFREEZE/FITHAW take no argument beyond the descriptor of the mount point.
    let freeze = || unsafe { libc::ioctl(d.as_raw_fd(), FIFREEZE, 0) } == 0;
    if !freeze() {
        let err = std::io::Error::last_os_error();
        // EBUSY: frozen already, by a daemon that died before it thawed. Thaw, then freeze anew.
        if err.raw_os_error() != Some(libc::EBUSY) || !thaw(dir) || !freeze() {
            return Err(StorageError::Io { what: "freezing the filesystem".into(), source: err });
        }
    }
    let out = f();
    thaw(dir);
    out
}

/// Thaw the filesystem mounted at `dir`; whether it was frozen. A daemon that crashed while a
/// snapshot held the freeze leaves the volume frozen, so start-up thaws every mounted volume.
pub fn thaw(dir: &Path) -> bool {
    let Ok(d) = std::fs::File::open(dir) else { return false };
    // SAFETY: as for FIFREEZE; EINVAL when the filesystem is not frozen.
    unsafe { libc::ioctl(d.as_raw_fd(), FITHAW, 0) == 0 }
}
