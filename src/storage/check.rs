//! Guest-written volumes: the taint that keeps the host kernel from mounting them, and the
//! confined filesystem check that lifts it.
//!
//! A volume attached read-write to an instance holds whatever bytes the guest wrote. The host
//! mounts a container's volumes with its own ext4 driver, in its own mount namespace, as root;
//! a crafted filesystem image is a known way to attack a kernel. So the moment a volume is
//! handed to a VM read-write it is marked (`<file>.guest`, made durable before the VM gets the
//! disk), the mark follows it into snapshots and clones, and no container may mount it until
//! [`check_confined`] has passed: `e2fsck -f -y` running as `nobody` with no capabilities,
//! `no_new_privs`, new network, mount, IPC and UTS namespaces and resource limits, on the file
//! handed to it as a descriptor. What remains is the risk of a filesystem that e2fsck finds
//! consistent and the kernel still mishandles; the design doc's threat model says so.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use super::{StorageError, io};

/// The uid and gid the check runs as (`nobody` / `nogroup` on Debian).
pub const CHECK_UID: u32 = 65534;

/// CPU seconds the check may use.
const CHECK_CPU_SECONDS: u64 = 600;
/// Address space the check may map, in bytes.
const CHECK_MEMORY_BYTES: u64 = 2 << 30;

/// The marker of a guest-written volume or snapshot file.
pub fn taint_path(file: &Path) -> PathBuf {
    let mut p = file.as_os_str().to_owned();
    p.push(".guest");
    PathBuf::from(p)
}

/// Whether `file` was written by a guest and not checked since.
pub fn tainted(file: &Path) -> bool {
    taint_path(file).exists()
}

/// Mark `file` guest-written, durably (the marker and its directory are synced).
pub fn taint(file: &Path) -> Result<(), StorageError> {
    let marker = taint_path(file);
    if marker.exists() {
        return Ok(());
    }
    File::create(&marker).and_then(|f| f.sync_all()).map_err(io(format!("marking {}", file.display())))?;
    if let Some(dir) = marker.parent() {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io(format!("syncing {}", dir.display())))?;
    }
    Ok(())
}

/// Remove the mark (after a passed check, or with the file).
pub fn clear_taint(file: &Path) -> Result<(), StorageError> {
    match std::fs::remove_file(taint_path(file)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::Io { what: format!("unmarking {}", file.display()), source: e }),
    }
}

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    /// e2fsck's exit code (0 clean, 1 errors corrected; see e2fsck(8)).
    pub code: i32,
    /// Its last lines of output, for the volume's condition.
    pub summary: String,
}

/// Build the confined command: the program runs as [`CHECK_UID`] without capabilities, with
/// `no_new_privs`, in new network, mount, IPC and UTS namespaces, with limits on CPU time,
/// address space, file size (`fsize`, bytes) and descriptors, and sees only its stdio and the
/// descriptor `fd` as 3. The caller must be root (it makes the namespaces).
pub fn confined(program: &str, args: &[&str], fd: Option<&File>, fsize: u64) -> std::process::Command {
    let mut cmd = std::process::Command::new(program);
    cmd.args(args).stdin(std::process::Stdio::null()).env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    let raw = fd.map(|f| f.as_raw_fd());
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe syscalls
    // (unshare, setrlimit, dup2, fcntl, setgroups, setresgid, setresuid, prctl); it allocates
    // nothing.
    unsafe {
        cmd.pre_exec(move || {
            let check = |r: libc::c_int| if r == -1 { Err(std::io::Error::last_os_error()) } else { Ok(()) };
            check(libc::unshare(libc::CLONE_NEWNET | libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS))?;
            for (res, v) in [
                (libc::RLIMIT_CPU, CHECK_CPU_SECONDS),
                (libc::RLIMIT_AS, CHECK_MEMORY_BYTES),
                (libc::RLIMIT_FSIZE, fsize),
                (libc::RLIMIT_NOFILE, 64),
                (libc::RLIMIT_CORE, 0),
                (libc::RLIMIT_NPROC, 64),
            ] {
                let lim = libc::rlimit { rlim_cur: v, rlim_max: v };
                check(libc::setrlimit(res, &lim))?;
            }
            if let Some(fd) = raw {
                if fd == 3 {
                    check(libc::fcntl(3, libc::F_SETFD, 0))?;
                } else {
                    check(libc::dup2(fd, 3))?;
                }
            }
            check(libc::setgroups(0, std::ptr::null()))?;
            check(libc::setresgid(CHECK_UID, CHECK_UID, CHECK_UID))?;
            // Leaving uid 0 for another uid clears every capability (no SECBIT_KEEP_CAPS).
            check(libc::setresuid(CHECK_UID, CHECK_UID, CHECK_UID))?;
            check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
            Ok(())
        });
    }
    cmd
}

/// Check and repair the ext4 filesystem in `file` in a confined `e2fsck -f -y` (see
/// [`confined`]). The file is handed over as descriptor 3 and owned by [`CHECK_UID`] for the
/// duration; after, whatever the outcome, it belongs to the daemon's own uid and gid again with
/// its mode (so a check cut short by a crash is undone by the next one). The file must not be
/// in use. Errors: [`StorageError::Tool`] when the filesystem has errors left (exit code 4 or
/// more) or the tool cannot run; [`StorageError::Io`] for the host's file steps.
pub fn check_confined(file: &Path) -> Result<CheckOutcome, StorageError> {
    let meta = std::fs::metadata(file).map_err(io(format!("stat {}", file.display())))?;
    let f = File::options().read(true).write(true).open(file).map_err(io(format!("opening {}", file.display())))?;
    // e2fsck reopens `/proc/self/fd/3`; that open checks the file's own permissions.
    std::os::unix::fs::fchown(&f, Some(CHECK_UID), Some(CHECK_UID)).map_err(io("handing the volume to the check"))?;
    let out = confined("e2fsck", &["-f", "-y", "/proc/self/fd/3"], Some(&f), meta.len()).output();
    let (uid, gid) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
    let restored = std::os::unix::fs::fchown(&f, Some(uid), Some(gid))
        .and_then(|_| std::fs::set_permissions(file, std::os::unix::fs::PermissionsExt::from_mode(meta.mode() & 0o7777)))
        .map_err(io("taking the volume back from the check"));
    let out = out.map_err(|e| StorageError::Tool { tool: "e2fsck".into(), message: e.to_string() })?;
    restored?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let summary: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let summary = summary[summary.len().saturating_sub(3)..].join("\n");
    let code = out.status.code().unwrap_or(128);
    if !(0..=2).contains(&code) {
        return Err(StorageError::Tool { tool: "e2fsck".into(), message: format!("exit code {code}: {summary}") });
    }
    Ok(CheckOutcome { code, summary })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn the_taint_is_a_durable_marker_beside_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("v.img");
        std::fs::write(&f, b"x").unwrap();
        assert!(!tainted(&f));
        taint(&f).unwrap();
        taint(&f).unwrap();
        assert!(tainted(&f) && taint_path(&f).ends_with("v.img.guest"));
        clear_taint(&f).unwrap();
        clear_taint(&f).unwrap();
        assert!(!tainted(&f));
    }

    #[test]
    fn the_confined_helper_has_no_privilege_and_no_network() {
        if !root() {
            panic!("needs root: the confined helper makes namespaces and changes uid (run the suite as root)");
        }
        let out =
            confined("/bin/sh", &["-c", "id -u; grep -E '^(CapEff|CapPrm|NoNewPrivs):' /proc/self/status; ip -o link | wc -l; ulimit -f"], None, 1024 * 512)
                .output()
                .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], CHECK_UID.to_string(), "{text}");
        assert!(text.contains("CapEff:\t0000000000000000") && text.contains("CapPrm:\t0000000000000000"), "{text}");
        assert!(text.contains("NoNewPrivs:\t1"), "{text}");
        assert_eq!(lines[4].trim(), "1", "only the new namespace's loopback: {text}");
        assert_eq!(lines[5].trim(), "1024", "fsize in 512-byte blocks: {text}");
    }

    #[test]
    fn a_clean_filesystem_passes_and_garbage_fails_with_the_owner_restored() {
        if !root() {
            panic!("needs root: the confined helper makes namespaces and changes uid (run the suite as root)");
        }
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.img");
        File::create(&good).unwrap().set_len(16 << 20).unwrap();
        super::super::run("mkfs.ext4", &[std::ffi::OsStr::new("-q"), good.as_os_str()]).unwrap();
        std::fs::set_permissions(&good, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        // As a crash in an earlier check would have left it.
        std::os::unix::fs::chown(&good, Some(CHECK_UID), Some(CHECK_UID)).unwrap();
        let ok = check_confined(&good).unwrap();
        assert_eq!(ok.code, 0, "{ok:?}");
        let m = std::fs::metadata(&good).unwrap();
        assert_eq!((m.uid(), m.mode() & 0o777), (0, 0o600), "owner and mode restored");
        let bad = dir.path().join("bad.img");
        let noise: Vec<u8> = (0..(4u32 << 20)).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        std::fs::write(&bad, noise).unwrap();
        let err = check_confined(&bad).unwrap_err();
        assert!(matches!(err, StorageError::Tool { .. }), "{err}");
        assert_eq!(std::fs::metadata(&bad).unwrap().uid(), 0);
    }
}
