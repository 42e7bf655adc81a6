//! Confinement of a worker once its files are open: every capability dropped (effective,
//! permitted, inheritable, ambient and the bounding set), `no_new_privs`, and a seccomp-bpf
//! allow-list of the system calls a running VM needs (`seccompiler`). The cgroup (CPU and
//! memory limits) is the daemon's part: it places the worker before it starts.
//!
//! The worker keeps uid 0 without capabilities, and writes only through files it opened before
//! (its exit record in the run directory), while seccomp refuses `open` of anything new and
//! every call that names a path. A call outside the list raises SIGSYS; the handler names the call on stderr and exits
//! with [`SECCOMP_EXIT`], so a missing entry is found at once rather than as a hang.

use std::collections::BTreeMap;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

/// The exit status of a worker killed by its seccomp filter.
pub const SECCOMP_EXIT: i32 = 159;

/// Errors while confining.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error("dropping capabilities: {0}")]
    Caps(String),
    #[error("building the seccomp filter: {0}")]
    Filter(String),
    #[error("installing the seccomp filter: {0}")]
    Install(String),
}

/// The system calls a running worker makes: vCPU ioctls, device I/O (pread/pwrite on disks,
/// read/write on taps and sockets), polling, threads (virtio-net's RX thread starts when the
/// guest's driver does), memory management by the allocator, time, signals, and the exit
/// record's write and fsync. Nothing that names a path: a worker without capabilities is still
/// uid 0, so `rename`, `unlink` or `link` would reach every root-owned directory of the host.
pub const ALLOWED: &[i64] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_lseek,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_close,
    libc::SYS_ioctl,
    libc::SYS_fcntl,
    libc::SYS_fstat,
    libc::SYS_statx,
    libc::SYS_newfstatat,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_eventfd2,
    libc::SYS_accept4,
    libc::SYS_recvfrom,
    libc::SYS_sendto,
    libc::SYS_recvmsg,
    libc::SYS_sendmsg,
    libc::SYS_shutdown,
    libc::SYS_futex,
    libc::SYS_clone,
    libc::SYS_clone3,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_tgkill,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_mremap,
    libc::SYS_brk,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_getrandom,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigtimedwait,
    libc::SYS_sigaltstack,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

/// The filter: [`ALLOWED`] pass, anything else traps.
pub fn filter() -> Result<BpfProgram, ConfineError> {
    use seccompiler::{SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule};
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = ALLOWED.iter().map(|n| (*n, Vec::new())).collect();
    // prctl only to name a thread (std's thread builder does, for each vCPU thread).
    let bad = |e: seccompiler::BackendError| ConfineError::Filter(e.to_string());
    let name_only =
        SeccompRule::new(vec![SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, libc::PR_SET_NAME as u64).map_err(bad)?]).map_err(bad)?;
    rules.insert(libc::SYS_prctl, vec![name_only]);
    let f = SeccompFilter::new(rules, SeccompAction::Trap, SeccompAction::Allow, TargetArch::x86_64).map_err(|e| ConfineError::Filter(e.to_string()))?;
    f.try_into().map_err(|e: seccompiler::BackendError| ConfineError::Filter(e.to_string()))
}

/// Drop every capability of the process and set `no_new_privs`.
pub fn drop_capabilities() -> Result<(), ConfineError> {
    use caps::CapSet;
    for cap in caps::all() {
        // The bounding set first (needs CAP_SETPCAP, which goes last with the others).
        caps::drop(None, CapSet::Bounding, cap).map_err(|e| ConfineError::Caps(e.to_string()))?;
    }
    caps::clear(None, CapSet::Ambient).map_err(|e| ConfineError::Caps(e.to_string()))?;
    caps::clear(None, CapSet::Inheritable).map_err(|e| ConfineError::Caps(e.to_string()))?;
    caps::clear(None, CapSet::Effective).map_err(|e| ConfineError::Caps(e.to_string()))?;
    caps::clear(None, CapSet::Permitted).map_err(|e| ConfineError::Caps(e.to_string()))?;
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(ConfineError::Caps(std::io::Error::last_os_error().to_string()));
    }
    Ok(())
}

extern "C" fn on_sigsys(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // siginfo_t for SIGSYS (x86_64): si_call_addr at byte 16, si_syscall (int) at byte 24.
    // SAFETY: the kernel passes a valid siginfo_t for SA_SIGINFO handlers.
    let nr = unsafe { *((info as *const u8).add(24) as *const i32) };
    let prefix = b"vmm-worker: seccomp refused system call ";
    let mut digits = [b'\n'; 12];
    let (mut n, mut i) = (nr.max(0) as u32, 10);
    loop {
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
        i -= 1;
    }
    // SAFETY: write(2) and _exit(2) are async-signal-safe.
    unsafe {
        libc::write(2, prefix.as_ptr() as *const libc::c_void, prefix.len());
        libc::write(2, digits[i..].as_ptr() as *const libc::c_void, 12 - i);
        libc::_exit(SECCOMP_EXIT);
    }
}

/// Install the SIGSYS reporter and the filter on every thread of the process (TSYNC).
pub fn install_seccomp() -> Result<(), ConfineError> {
    let prog = filter()?;
    // SAFETY: a plain sigaction with an extern "C" handler that only calls async-signal-safe
    // functions.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigsys as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        if libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut()) != 0 {
            return Err(ConfineError::Install(std::io::Error::last_os_error().to_string()));
        }
    }
    seccompiler::apply_filter_all_threads(&prog).map_err(|e| ConfineError::Install(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_compiles_and_lists_no_call_twice() {
        let prog = filter().unwrap();
        assert!(prog.len() > ALLOWED.len());
        let mut v = ALLOWED.to_vec();
        v.sort();
        v.dedup();
        assert_eq!(v.len(), ALLOWED.len());
        for forbidden in [
            libc::SYS_openat,
            libc::SYS_execve,
            libc::SYS_socket,
            libc::SYS_connect,
            libc::SYS_ptrace,
            libc::SYS_mount,
            libc::SYS_rename,
            libc::SYS_renameat,
            libc::SYS_renameat2,
            libc::SYS_unlink,
            libc::SYS_unlinkat,
            libc::SYS_link,
            libc::SYS_linkat,
            libc::SYS_symlinkat,
            libc::SYS_chmod,
            libc::SYS_fchmodat,
            libc::SYS_chown,
            libc::SYS_fchownat,
            libc::SYS_truncate,
        ] {
            assert!(!ALLOWED.contains(&forbidden), "{forbidden} must not be allowed");
        }
    }

    /// In a forked child: confined, an allowed call works and `openat` ends the process with
    /// [`SECCOMP_EXIT`].
    #[test]
    fn a_confined_process_can_not_open_files() {
        // SAFETY: the child only makes raw system calls and exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let ok = install_seccomp().is_ok() && unsafe { libc::getpid() } > 0;
            if !ok {
                unsafe { libc::_exit(1) };
            }
            let path = c"/etc/hostname";
            unsafe {
                libc::open(path.as_ptr(), libc::O_RDONLY);
                libc::_exit(0);
            }
        }
        let mut status = 0;
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status));
        assert_eq!(libc::WEXITSTATUS(status), SECCOMP_EXIT);
    }
}
