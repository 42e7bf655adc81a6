//! The default seccomp filter of containers: an allow-list, as Docker's default profile is.
//!
//! - [`ALLOWED`]: the system calls of Docker's default allow-list (x86-64, and the i386 names a
//!   32-bit program uses) without `io_uring_*`, which Docker dropped too.
//! - [`BLOCKED`] answer `EPERM`: the calls Docker's documentation lists as "significant syscalls
//!   blocked by the default profile" (kernel modules, kexec, reboot, swap, clock setting, mount
//!   and pivot_root, namespace creation and entry, keyrings, BPF, perf, ptrace and cross-process
//!   memory access, userfaultfd, obsolete calls), so a program sees a permission error.
//! - Everything else answers `ENOSYS`, as an unknown call would: a C library that tries a call
//!   newer than this list (`clone3`, say) falls back to the older one it can use.
//! - `clone` is allowed only without a `CLONE_NEW*` flag (libseccomp's masked compare), and
//!   `personality` only for the personas Docker allows.
//!
//! The names are resolved by libseccomp when the filter is built; a name this host's libseccomp
//! does not know is skipped by libcontainer (it cannot be called on such a host either).

use oci_spec::runtime::LinuxSeccomp;
use serde_json::json;

/// `EPERM`: what a blocked call returns.
const EPERM: u32 = 1;
/// `ENOSYS`: what any call outside both lists returns.
const ENOSYS: u32 = 38;

/// System calls a container may make.
pub const ALLOWED: &[&str] = &[
    "_llseek",
    "_newselect",
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "arch_prctl",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "chroot",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_time64",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "get_robust_list",
    "get_thread_area",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "io_setup",
    "io_submit",
    "ioctl",
    "ioprio_get",
    "ioprio_set",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "modify_ldt",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "nanosleep",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_getfd",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "set_robust_list",
    "set_thread_area",
    "set_tid_address",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "setsid",
    "setsockopt",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaction",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigpending",
    "sigprocmask",
    "sigreturn",
    "sigsuspend",
    "socket",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// System calls refused with `EPERM`.
pub const BLOCKED: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "mount",
    "mount_setattr",
    "move_mount",
    "move_pages",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setns",
    "settimeofday",
    "swapoff",
    "swapon",
    "sysfs",
    "_sysctl",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
];

/// All `CLONE_NEW*` flags together: the mask `clone` must not match.
const CLONE_NEW_MASK: u64 = 0x7E02_0000;

/// The `personality(2)` arguments allowed, as Docker allows them: `PER_LINUX`, `PER_LINUX32`,
/// `UNAME26`, `PER_LINUX32 | UNAME26`, and `0xffffffff` (the query).
const PERSONAS: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// The default filter as an OCI `linux.seccomp` object (x86-64, with the x86 and x32 ABIs).
pub fn default_profile() -> LinuxSeccomp {
    let mut syscalls = vec![
        json!({"names": ALLOWED, "action": "SCMP_ACT_ALLOW"}),
        json!({"names": BLOCKED, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM}),
        // libcontainer's masked compare: (arg & valueTwo) == value.
        json!({"names": ["clone"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 0, "valueTwo": CLONE_NEW_MASK, "op": "SCMP_CMP_MASKED_EQ"}]}),
    ];
    for persona in PERSONAS {
        syscalls.push(json!({"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": persona, "op": "SCMP_CMP_EQ"}]}));
    }
    let v = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": ENOSYS,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": syscalls,
    });
    // The document above is fixed; a failure here is a bug caught by the unit test.
    serde_json::from_value(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_profile_parses_allows_a_list_and_blocks_the_dangerous_calls() {
        let p = default_profile();
        assert_eq!(p.default_errno_ret(), Some(ENOSYS));
        let calls = p.syscalls().clone().unwrap_or_default();
        assert_eq!(calls.len(), 3 + PERSONAS.len());
        let blocked: Vec<&String> = calls.iter().filter(|c| c.errno_ret() == Some(EPERM)).flat_map(|c| c.names()).collect();
        for must in ["mount", "unshare", "setns", "kexec_load", "init_module", "bpf", "ptrace", "reboot", "keyctl"] {
            assert!(blocked.iter().any(|n| *n == must), "{must} is not blocked");
        }
        for never in ["io_uring_setup", "io_uring_enter", "io_uring_register", "clone3", "clone", "personality"] {
            assert!(!ALLOWED.contains(&never), "{never} is not allowed unconditionally");
        }
        for needed in ["read", "execve", "openat", "faccessat2", "statx", "socket", "wait4", "rt_sigreturn", "exit_group"] {
            assert!(ALLOWED.contains(&needed), "{needed}");
        }
        let mut all: Vec<&str> = ALLOWED.iter().chain(BLOCKED).copied().collect();
        all.sort();
        let n = all.len();
        all.dedup();
        assert_eq!(all.len(), n, "no call is both allowed and blocked, or listed twice");
        assert!(p.architectures().as_ref().is_some_and(|a| a.len() == 3));
    }

    /// The profile as libcontainer loads it, in a forked child: ordinary calls and `fork` work; a
    /// blocked call gets `EPERM`; `io_uring_setup` and `clone` with a namespace flag get `ENOSYS`.
    /// The child's exit code names the first check that failed.
    #[test]
    fn the_loaded_filter_answers_as_documented() {
        fn errno() -> i32 {
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
        }
        fn checks() -> i32 {
            // SAFETY (every block here): raw system calls with integer or null arguments.
            if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
                return 10;
            }
            if libcontainer::seccomp::initialize_seccomp(&default_profile()).is_err() {
                return 11;
            }
            if unsafe { libc::getpid() } <= 0 {
                return 12;
            }
            if unsafe { libc::syscall(libc::SYS_io_uring_setup, 1, std::ptr::null_mut::<u8>()) } != -1 || errno() != libc::ENOSYS {
                return 13;
            }
            if unsafe { libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER) } != -1 || errno() != libc::EPERM {
                return 14;
            }
            let r = unsafe { libc::syscall(libc::SYS_clone, (libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_ulong, 0, 0, 0, 0) };
            if r == 0 {
                unsafe { libc::_exit(0) };
            }
            if r != -1 || errno() != libc::ENOSYS {
                return 15;
            }
            let c = unsafe { libc::fork() };
            if c == 0 {
                unsafe { libc::_exit(0) };
            }
            let mut st = 0;
            if c < 0 || unsafe { libc::waitpid(c, &mut st, 0) } != c || st != 0 {
                return 16;
            }
            0
        }
        // SAFETY: the child runs the checks and leaves with _exit, never returning to the harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let code = checks();
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status), "the child was killed: status {status:#x}");
        assert_eq!(libc::WEXITSTATUS(status), 0, "failed check (see the codes in the test)");
    }
}
