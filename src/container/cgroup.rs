//! The few cgroup facts the engine reads itself, for both layouts: cgroup v2 (one unified tree at
//! `/sys/fs/cgroup`) and v1 (one tree per controller under `/sys/fs/cgroup/<controller>`, also
//! in "hybrid" hosts that mount v2 at `/sys/fs/cgroup/unified` for systemd only). libcontainer
//! creates, limits and removes the container's cgroup; this module reads OOM kills and removes
//! what a lost shim left behind.

use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";

/// Whether `/sys/fs/cgroup` is the unified (v2) hierarchy.
pub fn is_v2() -> bool {
    nix::sys::statfs::statfs(ROOT).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

/// Every directory of the cgroup `path` (`/cloudlet/<id>`) that exists on this host.
pub fn dirs(path: &str) -> Vec<PathBuf> {
    let rel = path.trim_start_matches('/');
    if is_v2() {
        return vec![Path::new(ROOT).join(rel)].into_iter().filter(|p| p.is_dir()).collect();
    }
    let Ok(rd) = std::fs::read_dir(ROOT) else { return vec![] };
    rd.filter_map(|e| e.ok()).map(|e| e.path().join(rel)).filter(|p| p.is_dir()).collect()
}

/// How many processes of the cgroup the kernel's OOM killer killed (`oom_kill` of v2's
/// `memory.events`, or of v1's `memory.oom_control`, Linux ≥ 4.13). 0 when unknown.
pub fn oom_kills(path: &str) -> u64 {
    let rel = path.trim_start_matches('/');
    let file = if is_v2() { Path::new(ROOT).join(rel).join("memory.events") } else { Path::new(ROOT).join("memory").join(rel).join("memory.oom_control") };
    parse_counter(&std::fs::read_to_string(file).unwrap_or_default(), "oom_kill")
}

/// The value of `key` in a `key value` per line file.
pub fn parse_counter(text: &str, key: &str) -> u64 {
    text.lines().filter_map(|l| l.split_once(' ')).find(|(k, _)| *k == key).and_then(|(_, v)| v.trim().parse().ok()).unwrap_or(0)
}

/// Remove the cgroup's directories (children first). Only empty cgroups can be removed; the
/// caller has made sure no process is left. Returns how many directories were removed.
pub fn remove(path: &str) -> usize {
    let mut n = 0;
    for d in dirs(path) {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) && std::fs::remove_dir(e.path()).is_ok() {
                    n += 1;
                }
            }
        }
        if std::fs::remove_dir(&d).is_ok() {
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    #[test]
    fn counters_parse_from_both_layouts() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        let v2 = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\n";
        assert_eq!(super::parse_counter(v1, "oom_kill"), 3);
        assert_eq!(super::parse_counter(v2, "oom_kill"), 1);
        assert_eq!(super::parse_counter("", "oom_kill"), 0);
    }
}
