//! The host probe: CPU, memory, disk, kernel features and KVM.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One kernel or host feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Feature {
    /// Whether cloudlet can use it on this host.
    pub available: bool,
    /// How it was determined, or why it is missing.
    pub detail: String,
}

/// What a host can do. Sizes are bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProbeReport {
    pub hostname: String,
    /// `uname -r`.
    pub kernel: String,
    /// `uname -m`.
    pub arch: String,
    pub cpu_model: String,
    /// Online logical CPUs.
    pub cpus: u32,
    pub memory_total_bytes: u64,
    pub memory_available_bytes: u64,
    /// The directory whose filesystem was measured (the data dir).
    pub disk_path: String,
    pub disk_total_bytes: u64,
    pub disk_free_bytes: u64,
    /// `v2`, `v1-hybrid` (v1 controllers plus a v2 `unified` mount), `v1`, or `none`.
    pub cgroup_version: String,
    /// Keyed by `kvm`, `kvm_full_guests`, `nftables`, `overlayfs`, `tun`, `bridge`, `vxlan`, `veth`.
    pub features: BTreeMap<String, Feature>,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn meminfo_kb(text: &str, key: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0)
}

/// Which of `wanted` `/proc/kallsyms` lists (its third column), read line by line: the file is
/// some 5 MiB, which read whole at every probe left that much freed heap resident in the
/// allocator between probes (docs/benchmarks.md, idle memory).
fn kernel_symbols(wanted: &[&str]) -> BTreeSet<String> {
    use std::io::BufRead;
    let Ok(f) = std::fs::File::open("/proc/kallsyms") else { return BTreeSet::new() };
    let mut found = BTreeSet::new();
    for line in std::io::BufReader::new(f).lines().map_while(Result::ok) {
        if let Some(name) = line.split_whitespace().nth(2)
            && wanted.contains(&name)
        {
            found.insert(name.to_string());
        }
    }
    found
}

/// Whether the running kernel has `module` loaded, built in, or available to load. `symbol` is a
/// function of the module looked up in `/proc/kallsyms` (which lists built-in code too).
fn kernel_has(module: &str, symbol: &str, release: &str, kallsyms: &BTreeSet<String>) -> bool {
    if Path::new("/sys/module").join(module).exists() {
        return true;
    }
    if kallsyms.contains(symbol) {
        return true;
    }
    let needle = format!("/{module}.ko");
    ["modules.builtin", "modules.dep"].iter().any(|f| {
        read(&format!("/lib/modules/{release}/{f}")).lines().any(|l| {
            let path = l.split(':').next().unwrap_or("");
            path.ends_with(&needle) || path.contains(&format!("{needle}."))
        })
    })
}

fn module_feature(module: &str, symbol: &str, release: &str, kallsyms: &BTreeSet<String>, what: &str) -> Feature {
    if kernel_has(module, symbol, release, kallsyms) {
        Feature { available: true, detail: format!("{what}: kernel module {module} present") }
    } else {
        Feature { available: false, detail: format!("{what}: kernel module {module} not found for {release}") }
    }
}

/// Detect the cgroup layout mounted at `/sys/fs/cgroup`.
#[allow(clippy::unnecessary_cast)] // statfs field types differ between architectures
pub fn cgroup_version() -> String {
    const CGROUP2: i64 = 0x6367_7270;
    let magic = |p: &str| nix::sys::statfs::statfs(p).map(|s| s.filesystem_type().0 as i64).ok();
    match magic("/sys/fs/cgroup") {
        Some(CGROUP2) => "v2".into(),
        Some(_) if magic("/sys/fs/cgroup/unified") == Some(CGROUP2) => "v1-hybrid".into(),
        Some(_) if Path::new("/sys/fs/cgroup/memory").exists() => "v1".into(),
        _ => "none".into(),
    }
}

fn nftables(release: &str, kallsyms: &BTreeSet<String>) -> Feature {
    let kernel = kernel_has("nf_tables", "nft_do_chain", release, kallsyms);
    let version = std::process::Command::new("nft").arg("--version").output();
    match (kernel, version) {
        (false, _) => Feature { available: false, detail: "kernel has no nf_tables".into() },
        (true, Ok(o)) if o.status.success() => Feature { available: true, detail: String::from_utf8_lossy(&o.stdout).trim().to_string() },
        _ => Feature { available: false, detail: "the nft binary is missing (Debian package nftables)".into() },
    }
}

#[allow(clippy::unnecessary_cast)] // statvfs field types differ between architectures
fn disk(path: &Path) -> (String, u64, u64) {
    let mut p = path.to_path_buf();
    while !p.exists() {
        if !p.pop() {
            break;
        }
    }
    match nix::sys::statvfs::statvfs(&p) {
        Ok(s) => {
            let f = s.fragment_size() as u64;
            (p.display().to_string(), s.blocks() as u64 * f, s.blocks_available() as u64 * f)
        }
        Err(_) => (p.display().to_string(), 0, 0),
    }
}

/// Probe this host; `data_dir` is where disk space is measured. Takes a few milliseconds.
pub fn probe(data_dir: &Path) -> ProbeReport {
    let uts = nix::sys::utsname::uname().ok();
    let release = uts.as_ref().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    let arch = uts.as_ref().map(|u| u.machine().to_string_lossy().into_owned()).unwrap_or_default();
    let hostname = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu_model = cpuinfo.lines().find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())).unwrap_or_default();
    let cpus = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
    let mem = read("/proc/meminfo");
    let (disk_path, disk_total_bytes, disk_free_bytes) = disk(data_dir);
    let ksyms = kernel_symbols(&["nft_do_chain", "ovl_fill_super", "br_dev_xmit", "vxlan_xmit", "veth_xmit"]);

    let mut features = BTreeMap::new();
    let kvm = super::kvm::probe();
    let kvm_detail = if kvm.present { format!("/dev/kvm, API version {}", kvm.api_version) } else { kvm.detail.clone() };
    features.insert("kvm".into(), Feature { available: kvm.present, detail: kvm_detail });
    features.insert("kvm_full_guests".into(), Feature { available: kvm.full_guests, detail: kvm.detail });
    features.insert("nftables".into(), nftables(&release, &ksyms));
    let overlay = read("/proc/filesystems").lines().any(|l| l.trim_end().ends_with("overlay")) || kernel_has("overlay", "ovl_fill_super", &release, &ksyms);
    features.insert(
        "overlayfs".into(),
        Feature { available: overlay, detail: if overlay { "overlay filesystem available".into() } else { "no overlay filesystem".into() } },
    );
    let tun_dev = Path::new("/dev/net/tun").exists();
    features.insert("tun".into(), Feature { available: tun_dev, detail: if tun_dev { "/dev/net/tun present".into() } else { "/dev/net/tun missing".into() } });
    features.insert("bridge".into(), module_feature("bridge", "br_dev_xmit", &release, &ksyms, "Linux bridge"));
    features.insert("vxlan".into(), module_feature("vxlan", "vxlan_xmit", &release, &ksyms, "VXLAN"));
    features.insert("veth".into(), module_feature("veth", "veth_xmit", &release, &ksyms, "veth pairs"));

    ProbeReport {
        hostname,
        kernel: release,
        arch,
        cpu_model,
        cpus,
        memory_total_bytes: meminfo_kb(&mem, "MemTotal") * 1024,
        memory_available_bytes: meminfo_kb(&mem, "MemAvailable") * 1024,
        disk_path,
        disk_total_bytes,
        disk_free_bytes,
        cgroup_version: cgroup_version(),
        features,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_parses_kib_lines() {
        let t = "MemTotal:       24553888 kB\nMemFree:        1000 kB\nMemAvailable:   2000 kB\n";
        assert_eq!(meminfo_kb(t, "MemTotal"), 24553888);
        assert_eq!(meminfo_kb(t, "MemAvailable"), 2000);
        assert_eq!(meminfo_kb(t, "Nope"), 0);
    }

    #[test]
    fn probe_reports_this_host_consistently() {
        let r = probe(Path::new("/tmp"));
        assert!(r.cpus >= 1);
        assert!(r.memory_total_bytes >= r.memory_available_bytes);
        assert!(r.disk_total_bytes >= r.disk_free_bytes);
        // full guests imply KVM is present
        if r.features["kvm_full_guests"].available {
            assert!(r.features["kvm"].available);
        }
        assert!(["v1", "v1-hybrid", "v2", "none"].contains(&r.cgroup_version.as_str()));
    }
}
