//! The default seccomp filter of containers.
//!
//! It blocks the same system calls as Docker's default profile (the list of "significant syscalls
//! blocked by the default profile" in Docker's seccomp documentation): kernel modules, kexec,
//! reboot, swap, clock setting, mount and pivot_root, namespace creation and entry, keyrings,
//! BPF, perf, ptrace and cross-process memory access, userfaultfd, and obsolete calls. Docker
//! expresses this as an allow-list with a default of `EPERM`; we express the same set as a
//! deny-list with a default of allow, which blocks the same calls and keeps working when an image
//! needs a system call newer than the profile. `clone` is refused only when it asks for a new
//! namespace (one rule per `CLONE_NEW*` flag, as libseccomp compares with a mask), and `clone3`
//! answers `ENOSYS`, as in Docker, so the C library falls back to `clone`, whose flags can be
//! inspected.

use oci_spec::runtime::LinuxSeccomp;
use serde_json::json;

/// `EPERM`: what a blocked call returns.
const EPERM: u32 = 1;
/// `ENOSYS`: what `clone3` returns.
const ENOSYS: u32 = 38;

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

/// The `CLONE_NEW*` flags (`<linux/sched.h>`): namespace, cgroup, UTS, IPC, user, PID, network.
pub const CLONE_NEW_FLAGS: &[u64] = &[0x0002_0000, 0x0200_0000, 0x0400_0000, 0x0800_0000, 0x1000_0000, 0x2000_0000, 0x4000_0000];

/// The default filter as an OCI `linux.seccomp` object (x86-64, with the x86 and x32 ABIs).
pub fn default_profile() -> LinuxSeccomp {
    let mut syscalls = vec![
        json!({"names": BLOCKED, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM}),
        json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS}),
    ];
    for flag in CLONE_NEW_FLAGS {
        syscalls.push(json!({
            "names": ["clone"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": EPERM,
            "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}],
        }));
    }
    let v = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
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
    fn the_default_profile_parses_and_blocks_the_dangerous_calls() {
        let p = default_profile();
        let calls = p.syscalls().clone().unwrap_or_default();
        assert_eq!(calls.len(), 2 + CLONE_NEW_FLAGS.len());
        let names: Vec<&String> = calls.iter().flat_map(|c| c.names()).collect();
        for must in ["mount", "unshare", "setns", "kexec_load", "init_module", "bpf", "ptrace", "reboot"] {
            assert!(names.iter().any(|n| *n == must), "{must} is not blocked");
        }
        assert!(p.architectures().as_ref().is_some_and(|a| a.len() == 3));
    }
}
