//! Namespaces and idmapped mounts of the node, for the engines that confine tenants
//! (user_namespaces(7), network_namespaces(7), mount_setattr(2)):
//! - a user namespace with a fixed id mapping (container ids `0..count` are host ids
//!   `host_base..host_base + count`), pinned by a bind mount of its nsfs file, as `ip netns` pins
//!   network namespaces, so workloads made at different times join the same one;
//! - a network namespace owned by such a user namespace, so the capabilities a container keeps
//!   (`CAP_NET_BIND_SERVICE`, `CAP_NET_RAW`) act in it while the host's stay out of reach;
//! - idmapped bind mounts (`MOUNT_ATTR_IDMAP`, Linux 5.12), through which files owned by container
//!   id `n` on disk show as host id `host_base + n`;
//! - shifting the owners of a directory tree from one range to another (a container's writable
//!   layer made before user namespaces, or under another mapping);
//! - a probe that the kernel and a file system allow an overlay over an idmapped layer
//!   (Linux 5.19).
//!
//! The daemon is multi-threaded, and a multi-threaded process can neither make nor join a user
//! namespace. Each step that has to happen inside one runs in a forked helper that makes only raw
//! system calls (async-signal-safe) and exits when the parent is done with it.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use nix::mount::{MntFlags, MsFlags};

/// `statfs` type of nsfs (`NSFS_MAGIC`, `<linux/magic.h>`).
pub const NSFS_MAGIC: i64 = 0x6e73_6673;
/// `NS_GET_USERNS` (`_IO(0xb7, 0x1)`, `<linux/nsfs.h>`): the user namespace owning a namespace.
const NS_GET_USERNS: libc::c_ulong = 0xb701;
/// `mount_setattr(2)` attribute: idmap the mount with the user namespace `userns_fd` names.
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
/// `open_tree(2)` flags: a detached copy of the tree (`OPEN_TREE_CLONE`), close-on-exec.
const OPEN_TREE_CLONE: libc::c_uint = 1;
/// `move_mount(2)`: the source is the descriptor itself.
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

/// `struct mount_attr` of `mount_setattr(2)` (`<linux/mount.h>`, version 0, 32 bytes).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Held while a user namespace pin is checked and made or removed.
static PINS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Whether `path` is a pinned namespace (an nsfs bind mount).
#[allow(clippy::unnecessary_cast)] // statfs field types differ between architectures
pub fn is_nsfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 as i64 == NSFS_MAGIC)
}

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)
}

/// What the helper does in its child before it reports and waits.
#[derive(Clone, Copy)]
enum Step {
    /// `unshare(CLONE_NEWUSER)`: a new, unmapped user namespace.
    NewUser,
    /// Join the user namespace open on the descriptor, then `unshare(CLONE_NEWNET)`.
    NetIn(RawFd),
}

/// Fork a helper that performs `step`, run `then` with its pid while it waits, then let it exit
/// and reap it. Errors: the fork, the step (as the child's errno), or `then`'s.
fn with_helper<T>(step: Step, then: impl FnOnce(nix::unistd::Pid) -> io::Result<T>) -> io::Result<T> {
    // One helper at a time: a helper forked while another's pipes are open would hold copies of
    // them.
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
    let (ready_r, ready_w) = pipe()?;
    let (go_r, go_w) = pipe()?;
    // SAFETY: the child makes only raw system calls (unshare, setns, write, read, _exit): no
    // allocation and no locks, so the other threads' state copied by fork cannot deadlock it.
    match unsafe { nix::unistd::fork() }.map_err(io::Error::from)? {
        nix::unistd::ForkResult::Child => {
            // SAFETY: plain system calls on descriptors this process owns.
            unsafe {
                libc::close(ready_r.as_raw_fd());
                libc::close(go_w.as_raw_fd());
                let ok = match step {
                    Step::NewUser => libc::unshare(libc::CLONE_NEWUSER) == 0,
                    Step::NetIn(fd) => libc::setns(fd, libc::CLONE_NEWUSER) == 0 && libc::unshare(libc::CLONE_NEWNET) == 0,
                };
                let errno = if ok { 0 } else { *libc::__errno_location() };
                let msg = errno.to_ne_bytes();
                libc::write(ready_w.as_raw_fd(), msg.as_ptr().cast(), msg.len());
                let mut b = 0u8;
                libc::read(go_r.as_raw_fd(), (&mut b as *mut u8).cast(), 1);
                libc::_exit(0);
            }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(ready_w);
            drop(go_r);
            let mut msg = [0u8; 4];
            let got = nix::unistd::read(&ready_r, &mut msg).map_err(io::Error::from);
            let out = match got {
                Ok(4) => match i32::from_ne_bytes(msg) {
                    0 => then(child),
                    e => Err(io::Error::from_raw_os_error(e)),
                },
                Ok(_) => Err(io::Error::other("the namespace helper died")),
                Err(e) => Err(e),
            };
            // A byte rather than end-of-file releases it: another process forked meanwhile may
            // hold a copy of the write end.
            let _ = nix::unistd::write(&go_w, &[1]);
            drop(go_w);
            let _ = nix::sys::wait::waitpid(child, None);
            out
        }
    }
}

/// Bind-mount `/proc/<pid>/ns/<kind>` onto the file `path` (made if absent).
fn pin(pid: nix::unistd::Pid, kind: &str, path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
    let src = format!("/proc/{pid}/ns/{kind}");
    nix::mount::mount(Some(src.as_str()), path, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(io::Error::from)
}

/// Make a user namespace mapping ids `0..count` to host ids `host_base..` (uids and gids alike)
/// and pin it on `path`, unless `path` already holds one. Errors: the kernel's (no user
/// namespaces, a mapping outside the id space).
pub fn pin_userns(path: &Path, host_base: u32, count: u32) -> io::Result<()> {
    // Checked and made under one lock, so two callers never pin one path twice over.
    let _one = PINS.lock().unwrap_or_else(|p| p.into_inner());
    if is_nsfs(path) {
        return Ok(());
    }
    if host_base.checked_add(count).is_none() || count == 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("ids {host_base}+{count} are outside the id space")));
    }
    with_helper(Step::NewUser, |pid| {
        let map = format!("0 {host_base} {count}\n");
        std::fs::write(format!("/proc/{pid}/uid_map"), &map)?;
        std::fs::write(format!("/proc/{pid}/gid_map"), &map)?;
        pin(pid, "user", path)
    })
}

/// Remove a pin made by [`pin_userns`] or [`pin_netns_in`]; absent is fine.
pub fn unpin(path: &Path) -> io::Result<()> {
    let _one = PINS.lock().unwrap_or_else(|p| p.into_inner());
    if is_nsfs(path) {
        nix::mount::umount2(path, MntFlags::MNT_DETACH).map_err(io::Error::from)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Make a network namespace owned by the user namespace pinned on `owner` and pin it on `path`.
pub fn pin_netns_in(path: &Path, owner: &Path) -> io::Result<()> {
    let user = std::fs::File::open(owner)?;
    with_helper(Step::NetIn(user.as_raw_fd()), |pid| pin(pid, "net", path))
}

/// The (device, inode) of a pinned namespace: equal for two pins of the same namespace.
pub fn ns_id(path: &Path) -> io::Result<(u64, u64)> {
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}

/// The (device, inode) of the user namespace owning the namespace pinned on `path`.
pub fn owner_id(path: &Path) -> io::Result<(u64, u64)> {
    let ns = std::fs::File::open(path)?;
    // SAFETY: NS_GET_USERNS takes no argument and returns a new descriptor or -1.
    let fd = unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_USERNS) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    let owner = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let m = owner.metadata()?;
    Ok((m.dev(), m.ino()))
}

/// Bind-mount `src` on the directory `dst` with the id mapping of the user namespace pinned on
/// `userns`: a file owned by id `n` on disk shows as the host id `n` maps to. Not recursive
/// (mounts under `src` are not carried). Errors: the kernel's (`EINVAL` where the file system
/// cannot be idmapped).
pub fn idmapped_bind(src: &Path, dst: &Path, userns: &Path) -> io::Result<()> {
    let user = std::fs::File::open(userns)?;
    let (csrc, cdst, empty) = (cpath(src)?, cpath(dst)?, CString::default());
    // SAFETY: open_tree reads a NUL-terminated path and returns a new descriptor or -1.
    let tree = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, csrc.as_ptr(), OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint) };
    if tree < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor the kernel just returned to us.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as RawFd) };
    let attr = MountAttr { attr_set: MOUNT_ATTR_IDMAP, attr_clr: 0, propagation: 0, userns_fd: user.as_raw_fd() as u64 };
    // SAFETY: mount_setattr reads `size_of::<MountAttr>()` bytes of `attr`, which lives across the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: move_mount reads the two NUL-terminated paths; the descriptors are ours.
    let r = unsafe { libc::syscall(libc::SYS_move_mount, tree.as_raw_fd(), empty.as_ptr(), libc::AT_FDCWD, cdst.as_ptr(), MOVE_MOUNT_F_EMPTY_PATH) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Change the owner of every entry under `dir` (itself included, symlinks not followed) whose
/// uid or gid lies in `from..from + count` to the same offset in `to..`. Set-user-ID and
/// set-group-ID bits, which `chown(2)` clears, are put back. Returns the number of entries
/// changed. Other ids (already shifted, or outside the range) are left. Extended attributes that
/// name ids (ACLs, file capabilities) are not rewritten.
pub fn shift_ids(dir: &Path, from: u32, to: u32, count: u32) -> io::Result<u64> {
    let shift = |id: u32| if id >= from && id - from < count { Some(to + (id - from)) } else { None };
    let mut changed = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p)?;
        if m.is_dir() {
            for e in std::fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        }
        let (uid, gid) = (shift(m.uid()), shift(m.gid()));
        if uid.is_none() && gid.is_none() {
            continue;
        }
        std::os::unix::fs::lchown(&p, Some(uid.unwrap_or(m.uid())), Some(gid.unwrap_or(m.gid())))?;
        let mode = m.permissions().mode();
        if !m.file_type().is_symlink() && mode & 0o6000 != 0 {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode & 0o7777))?;
        }
        changed += 1;
    }
    Ok(changed)
}

/// Check, in a scratch directory under `dir`, that this kernel and `dir`'s file system give an
/// overlay over an idmapped layer: a pinned user namespace, an idmapped bind, the overlay, and a
/// file of id 0 on disk showing as `host_base`. Everything made is removed. Errors: the first
/// step the host refused.
pub fn probe_idmapped_overlay(dir: &Path, host_base: u32) -> io::Result<()> {
    let scratch = dir.join(format!(".userns-probe-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let made = (|| -> io::Result<()> {
        for d in ["lower", "idmapped", "upper", "work", "merged"] {
            std::fs::create_dir_all(scratch.join(d))?;
        }
        std::fs::write(scratch.join("lower/probe"), b"")?;
        std::os::unix::fs::lchown(scratch.join("lower/probe"), Some(0), Some(0))?;
        let step = |what: &'static str| move |e: io::Error| io::Error::new(e.kind(), format!("{what}: {e}"));
        pin_userns(&scratch.join("userns"), host_base, 1).map_err(step("making a user namespace"))?;
        idmapped_bind(&scratch.join("lower"), &scratch.join("idmapped"), &scratch.join("userns")).map_err(step("an idmapped bind"))?;
        let opts =
            format!("lowerdir={},upperdir={},workdir={}", scratch.join("idmapped").display(), scratch.join("upper").display(), scratch.join("work").display());
        nix::mount::mount(Some("overlay"), &scratch.join("merged"), Some("overlay"), MsFlags::MS_NODEV, Some(opts.as_str()))
            .map_err(io::Error::from)
            .map_err(step("an overlay over the idmapped bind"))?;
        let uid = std::fs::symlink_metadata(scratch.join("merged/probe"))?.uid();
        if uid != host_base {
            return Err(io::Error::other(format!("a file of id 0 shows as {uid} through the idmapped overlay, not {host_base}")));
        }
        Ok(())
    })();
    for m in ["merged", "idmapped"] {
        let _ = nix::mount::umount2(&scratch.join(m), MntFlags::MNT_DETACH);
    }
    let _ = unpin(&scratch.join("userns"));
    let _ = std::fs::remove_dir_all(&scratch);
    made
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the test runs as root; the CI lane, which is root, must never skip.
    fn root(needs: &str) -> bool {
        if nix::unistd::Uid::effective().is_root() {
            return true;
        }
        assert!(std::env::var_os("CI").is_none(), "the CI lane must run as root: {needs}");
        eprintln!("SKIPPED: needs root ({needs})");
        false
    }

    #[test]
    fn shifting_moves_ids_in_range_keeps_setuid_and_leaves_others() {
        if !root("chown to other ids") {
            return;
        }
        let d = tempfile::tempdir().expect("tmp");
        let f = d.path().join("f");
        std::fs::write(&f, b"x").expect("write");
        std::os::unix::fs::lchown(&f, Some(1000), Some(1000)).expect("chown");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o4755)).expect("chmod");
        std::os::unix::fs::symlink("f", d.path().join("l")).expect("symlink");
        let outside = d.path().join("o");
        std::fs::write(&outside, b"").expect("write");
        std::os::unix::fs::lchown(&outside, Some(70_000), Some(70_000)).expect("chown");
        let n = shift_ids(d.path(), 0, 500_000, 65_536).expect("shift");
        assert_eq!(n, 3, "the directory, the file and the symlink");
        let m = std::fs::symlink_metadata(&f).expect("meta");
        assert_eq!((m.uid(), m.gid(), m.permissions().mode() & 0o7777), (501_000, 501_000, 0o4755));
        assert_eq!(std::fs::symlink_metadata(d.path().join("l")).expect("meta").uid(), 500_000);
        assert_eq!(std::fs::symlink_metadata(&outside).expect("meta").uid(), 70_000);
        assert_eq!(shift_ids(d.path(), 0, 500_000, 65_536).expect("again"), 0, "idempotent");
        assert_eq!(shift_ids(d.path(), 500_000, 0, 65_536).expect("back"), 3);
        assert_eq!(std::fs::symlink_metadata(&f).expect("meta").uid(), 1000);
    }

    #[test]
    fn a_pinned_user_namespace_owns_the_network_namespace_made_in_it() {
        if !root("user and network namespaces") {
            return;
        }
        let d = tempfile::tempdir().expect("tmp");
        let (user, net) = (d.path().join("user"), d.path().join("net"));
        pin_userns(&user, 3_000_000_000, 65_536).expect("userns");
        pin_userns(&user, 3_000_000_000, 65_536).expect("kept");
        pin_netns_in(&net, &user).expect("netns");
        assert!(is_nsfs(&user) && is_nsfs(&net));
        assert_eq!(owner_id(&net).expect("owner"), ns_id(&user).expect("id"));
        assert_ne!(owner_id(&user).expect("owner of the userns"), ns_id(&user).expect("id"));
        probe_idmapped_overlay(d.path(), 3_000_000_000).expect("this kernel idmaps an overlay's layer");
        unpin(&net).expect("unpin");
        unpin(&user).expect("unpin");
        assert!(!user.exists() && !net.exists());
        assert!(pin_userns(&user, u32::MAX - 10, 65_536).is_err(), "a range past the id space");
    }
}
