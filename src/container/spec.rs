//! The OCI runtime spec (`config.json`, opencontainers/runtime-spec 1.x) of a container, with
//! cloudlet's default hardening:
//! - Docker's default capability set (14 capabilities; no `SYS_ADMIN`, `NET_ADMIN`, `SYS_MODULE`);
//! - `noNewPrivileges`;
//! - the default seccomp filter of [`super::seccomp`];
//! - runc's masked paths (`/proc/kcore`, `/sys/firmware`, ...) and read-only paths
//!   (`/proc/sys`, `/proc/sysrq-trigger`, ...);
//! - new PID, IPC, UTS, mount and cgroup namespaces, and the network namespace of the container's
//!   network interface (or a new, empty one);
//! - where the host allows, its project's user namespace ([`UserNs`]): root in the container is
//!   an unprivileged host id, and the capabilities above act only on the container's own
//!   namespaces;
//! - cgroup limits on CPU (CFS quota), memory (no swap beyond it) and PIDs.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{Spec, get_default_maskedpaths, get_default_mounts, get_default_readonly_paths};
use serde_json::{Value, json};

use super::ContainerError;

/// Docker's default capabilities.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// CFS period used for CPU limits, in microseconds.
pub const CPU_PERIOD_US: u64 = 100_000;

/// Resource limits of a container; `None` is unlimited.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    /// CPUs (fractions allowed): the CFS quota is `cpus × 100 ms` per 100 ms.
    pub cpus: Option<f64>,
    /// Memory in bytes; the container gets no swap beyond it.
    pub memory_bytes: Option<u64>,
    /// Maximum number of processes and threads.
    pub pids: Option<i64>,
}

/// A bind mount of a host directory into the container.
#[derive(Debug, Clone, PartialEq)]
pub struct BindMount {
    /// Absolute host path.
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub target: String,
    /// Mounted read-only.
    pub read_only: bool,
    /// Under a user namespace, mount it idmapped, so the ids on disk are the container's own (a
    /// volume); otherwise files show with their host ids (a host path: what the container
    /// writes there belongs to its project's host range, never to host root).
    pub idmap: bool,
}

/// Host ids given to each user namespace: container ids `0..65536`.
pub const USERNS_IDS: u32 = 65_536;

/// A project's user namespace (user_namespaces(7)), pinned on `path`: container ids
/// `0..USERNS_IDS` are host ids `host_base..host_base + USERNS_IDS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserNs {
    /// The pinned namespace (`DATA/userns/<slot>`).
    pub path: PathBuf,
    /// The host id of the container's root.
    pub host_base: u32,
}

/// Everything the runtime spec is built from.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The container's root filesystem (an overlay mount).
    pub rootfs: PathBuf,
    /// Program and arguments.
    pub args: Vec<String>,
    /// `KEY=value` pairs.
    pub env: Vec<String>,
    /// Absolute working directory.
    pub cwd: String,
    /// The process's uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
    /// Its supplementary gids.
    pub additional_gids: Vec<u32>,
    /// Host name (UTS namespace).
    pub hostname: String,
    /// The network namespace to join (`/run/netns/cle-…`); a new empty one when `None`.
    pub netns: Option<PathBuf>,
    /// Mount the root filesystem read-only.
    pub read_only_rootfs: bool,
    /// cgroup limits.
    pub limits: Limits,
    /// Bind mounts (volumes, named host paths).
    pub mounts: Vec<BindMount>,
    /// A directory holding the `hosts` and `hostname` files bound read-only into the container.
    pub etc_dir: Option<PathBuf>,
    /// The container's own address, for its `/etc/hosts`.
    pub address: Option<std::net::Ipv4Addr>,
    /// cgroup path relative to each hierarchy's root (`/cloudlet/<id>`).
    pub cgroups_path: String,
    /// The user namespace to join; `None` runs in the host's (no id mapping).
    pub userns: Option<UserNs>,
}

/// Whether the host's cgroup v1 memory controller accounts swap (`memory.memsw.*`); on v2 the
/// swap limit is always available.
pub fn swap_limit_supported() -> bool {
    let v1 = Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes");
    v1.exists() || super::cgroup::is_v2()
}

/// Build the runtime spec. Errors: an invalid mount target (relative or with `..`).
pub fn build(c: &RunConfig, swap_limit: bool) -> Result<Spec, ContainerError> {
    let mut mounts: Vec<Value> = get_default_mounts().into_iter().filter_map(|m| serde_json::to_value(m).ok()).collect();
    for (file, dst) in c.etc_dir.iter().flat_map(|d| [(d.join("hosts"), "/etc/hosts"), (d.join("hostname"), "/etc/hostname")]) {
        let src = file;
        mounts.push(json!({"destination": dst, "type": "bind", "source": src, "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]}));
    }
    for m in &c.mounts {
        check_target(&m.target)?;
        let mut opts = vec!["rbind", "nosuid", "nodev"];
        opts.push(if m.read_only { "ro" } else { "rw" });
        mounts.push(json!({"destination": m.target, "type": "bind", "source": m.source, "options": opts}));
    }
    let mut namespaces = vec![json!({"type": "pid"}), json!({"type": "ipc"}), json!({"type": "uts"}), json!({"type": "mount"}), json!({"type": "cgroup"})];
    if let Some(u) = &c.userns {
        // Joined, not made: the namespace (and the network namespace of the container's
        // interface, made inside it) outlives each start. cgroup v1 cannot be mounted from inside
        // a user namespace, so there the container sees no cgroup tree (v2 mounts its own).
        namespaces.insert(0, json!({"type": "user", "path": u.path}));
        if !super::cgroup::is_v2() {
            mounts.retain(|m| m["type"] != "cgroup");
        }
    }
    namespaces.push(match &c.netns {
        Some(p) => json!({"type": "network", "path": p}),
        None => json!({"type": "network"}),
    });
    let mut resources = json!({"devices": [{"allow": false, "access": "rwm"}]});
    if let Some(cpus) = c.limits.cpus {
        let quota = (cpus * CPU_PERIOD_US as f64).round().max(1000.0) as i64;
        resources["cpu"] = json!({"quota": quota, "period": CPU_PERIOD_US});
    }
    if let Some(m) = c.limits.memory_bytes {
        resources["memory"] = if swap_limit { json!({"limit": m, "swap": m}) } else { json!({"limit": m}) };
    }
    if let Some(p) = c.limits.pids {
        resources["pids"] = json!({"limit": p});
    }
    let caps = DEFAULT_CAPS;
    let v = json!({
        "ociVersion": "1.0.2",
        "root": {"path": c.rootfs, "readonly": c.read_only_rootfs},
        "hostname": c.hostname,
        "mounts": mounts,
        "process": {
            "terminal": false,
            "user": {"uid": c.uid, "gid": c.gid, "additionalGids": c.additional_gids},
            "args": c.args,
            "env": c.env,
            "cwd": c.cwd,
            "noNewPrivileges": true,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps, "inheritable": [], "ambient": []},
            // No rlimits: the container inherits the daemon's, as with Docker. Raising one past
            // the daemon's hard limit would need CAP_SYS_RESOURCE, which a confined daemon lacks.
            "rlimits": [],
        },
        "linux": {
            "namespaces": namespaces,
            "resources": resources,
            "cgroupsPath": c.cgroups_path,
            "maskedPaths": get_default_maskedpaths(),
            "readonlyPaths": get_default_readonly_paths(),
            "seccomp": super::seccomp::default_profile(),
        },
    });
    serde_json::from_value(v).map_err(|e| ContainerError::Runtime(format!("building the runtime spec: {e}")))
}

/// A mount target must be absolute, without `..`, and not over the proc or sys trees.
pub fn check_target(t: &str) -> Result<(), ContainerError> {
    let p = Path::new(t);
    if !p.is_absolute() || p.components().any(|c| matches!(c, std::path::Component::ParentDir)) || t.len() > 4096 {
        return Err(ContainerError::Invalid(format!("mount target {t:?} must be an absolute path without ..")));
    }
    if t == "/" || ["/proc", "/sys", "/dev"].iter().any(|x| p.starts_with(x)) {
        return Err(ContainerError::Invalid(format!("mount target {t:?} may not cover /, /proc, /sys or /dev")));
    }
    Ok(())
}

/// Resolve an image or spec `User` (`uid`, `name`, `uid:gid`, `name:group`; empty is root) with
/// the container's `/etc/passwd` and `/etc/group`, read without following symlinks out of the
/// root. Returns (uid, gid, additional gids). Errors: a name the image does not know.
pub fn resolve_user(rootfs: &Path, user: &str) -> Result<(u32, u32, Vec<u32>), ContainerError> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = read_etc(rootfs, "passwd");
    let group = read_etc(rootfs, "group");
    let (uid, mut gid, name) = if u.is_empty() {
        (0, 0, Some("root".to_string()))
    } else if let Ok(n) = u.parse::<u32>() {
        let entry = passwd.iter().find(|f| f.get(2).and_then(|x| x.parse::<u32>().ok()) == Some(n));
        (n, entry.and_then(|f| f.get(3)?.parse().ok()).unwrap_or(n), entry.and_then(|f| f.first().cloned()))
    } else {
        let f = passwd
            .iter()
            .find(|f| f.first().is_some_and(|x| x == u))
            .ok_or_else(|| ContainerError::Invalid(format!("user {u:?} is not in the image's /etc/passwd")))?;
        let uid = f.get(2).and_then(|x| x.parse().ok()).ok_or_else(|| ContainerError::Invalid(format!("user {u:?} has a bad /etc/passwd entry")))?;
        (uid, f.get(3).and_then(|x| x.parse().ok()).unwrap_or(uid), Some(u.to_string()))
    };
    if let Some(g) = g {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group
                .iter()
                .find(|f| f.first().is_some_and(|x| x == g))
                .and_then(|f| f.get(2)?.parse().ok())
                .ok_or_else(|| ContainerError::Invalid(format!("group {g:?} is not in the image's /etc/group")))?,
        };
    }
    let extra = match &name {
        Some(n) => group
            .iter()
            .filter(|f| f.get(3).is_some_and(|m| m.split(',').any(|x| x == n)))
            .filter_map(|f| f.get(2)?.parse().ok())
            .filter(|x| *x != gid)
            .collect(),
        None => vec![],
    };
    Ok((uid, gid, extra))
}

/// The colon-separated fields of `<rootfs>/etc/<name>`; empty when missing, not a regular file,
/// or larger than 1 MiB.
fn read_etc(rootfs: &Path, name: &str) -> Vec<Vec<String>> {
    let etc = rootfs.join("etc");
    let file = etc.join(name);
    // A directory, then a regular file (not a symlink, FIFO or device: an image could make
    // /etc/passwd a FIFO and block the reader forever), opened without following or blocking.
    let dir_ok = std::fs::symlink_metadata(&etc).is_ok_and(|m| m.file_type().is_dir());
    let file_ok = std::fs::symlink_metadata(&file).is_ok_and(|m| m.file_type().is_file() && m.len() <= 1 << 20);
    if !dir_ok || !file_ok {
        return vec![];
    }
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut text = String::new();
    let opened = std::fs::File::options().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(&file);
    if opened.and_then(|f| f.take(1 << 20).read_to_string(&mut text)).is_err() {
        return vec![];
    }
    text.lines().filter(|l| !l.starts_with('#')).map(|l| l.split(':').map(str::to_string).collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RunConfig {
        RunConfig {
            rootfs: "/r".into(),
            args: vec!["/bin/sh".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            hostname: "web".into(),
            netns: Some("/run/netns/cle-x".into()),
            read_only_rootfs: true,
            limits: Limits { cpus: Some(0.5), memory_bytes: Some(64 << 20), pids: Some(100) },
            mounts: vec![BindMount { source: "/srv/a".into(), target: "/data".into(), read_only: true, idmap: false }],
            etc_dir: Some("/c/etc".into()),
            address: None,
            cgroups_path: "/cloudlet/ctr-x".into(),
            userns: None,
        }
    }

    #[test]
    fn the_spec_carries_hardening_and_limits() {
        let s = build(&cfg(), true).expect("spec");
        let v = serde_json::to_value(&s).expect("json");
        assert_eq!(v["process"]["noNewPrivileges"], true);
        let caps = v["process"]["capabilities"]["bounding"].as_array().expect("caps");
        assert_eq!(caps.len(), DEFAULT_CAPS.len());
        assert!(!caps.iter().any(|c| c == "CAP_SYS_ADMIN"));
        assert_eq!(v["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(v["linux"]["resources"]["memory"]["swap"], 64 << 20);
        assert_eq!(v["linux"]["resources"]["pids"]["limit"], 100);
        assert!(v["linux"]["maskedPaths"].as_array().expect("masked").iter().any(|p| p == "/proc/kcore"));
        assert!(v["linux"]["namespaces"].as_array().expect("ns").iter().any(|n| n["path"] == "/run/netns/cle-x"));
        assert_eq!(v["root"]["readonly"], true);
        assert!(v["mounts"].as_array().expect("mounts").iter().any(|m| m["destination"] == "/etc/hosts" && m["source"] == "/c/etc/hosts"));
        assert!(v["linux"]["seccomp"]["syscalls"].as_array().is_some_and(|a| !a.is_empty()));
        assert!(!v["linux"]["namespaces"].as_array().expect("ns").iter().any(|n| n["type"] == "user"));
        let joined = RunConfig { userns: Some(UserNs { path: "/d/userns/3".into(), host_base: 1 << 30 }), ..cfg() };
        let v = serde_json::to_value(build(&joined, true).expect("spec")).expect("json");
        assert_eq!(v["linux"]["namespaces"][0], json!({"type": "user", "path": "/d/userns/3"}), "joined first, by path");
        assert!(v["linux"].get("uidMappings").is_none(), "a joined namespace brings its own mapping");
        let cgroup_mount = v["mounts"].as_array().expect("mounts").iter().any(|m| m["type"] == "cgroup");
        assert_eq!(cgroup_mount, super::super::cgroup::is_v2(), "cgroup v1 is not mounted in a user namespace");
    }

    #[test]
    fn bad_mount_targets_are_refused() {
        for t in ["data", "/a/../etc", "/", "/proc/sys", "/sys"] {
            assert!(check_target(t).is_err(), "{t}");
        }
        assert!(check_target("/data").is_ok());
    }

    #[test]
    fn users_resolve_from_the_image_files() {
        let d = tempfile::tempdir().expect("tmp");
        std::fs::create_dir(d.path().join("etc")).expect("etc");
        std::fs::write(d.path().join("etc/passwd"), "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n").expect("passwd");
        std::fs::write(d.path().join("etc/group"), "root:x:0:\napp:x:1000:\nwheel:x:10:app\n").expect("group");
        assert_eq!(resolve_user(d.path(), "").expect("root"), (0, 0, vec![]));
        assert_eq!(resolve_user(d.path(), "app").expect("app"), (1000, 1000, vec![10]));
        assert_eq!(resolve_user(d.path(), "1000:wheel").expect("uid:group"), (1000, 10, vec![]));
        assert_eq!(resolve_user(d.path(), "4242").expect("numeric"), (4242, 4242, vec![]));
        assert!(resolve_user(d.path(), "nobody-here").is_err());
        assert!(resolve_user(d.path(), "app:nogroup").is_err());
        // A FIFO in place of /etc/passwd is ignored (reading it would block forever).
        std::fs::remove_file(d.path().join("etc/passwd")).expect("rm");
        nix::unistd::mkfifo(&d.path().join("etc/passwd"), nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("fifo");
        assert!(resolve_user(d.path(), "app").is_err(), "names cannot resolve without a readable passwd");
        assert_eq!(resolve_user(d.path(), "1000").expect("numeric").0, 1000);
    }
}
