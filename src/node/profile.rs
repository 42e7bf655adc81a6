//! Hardware profiles: the requirements a node must meet to be accepted into a site.
//!
//! A profile is a TOML file (see `firmware-profiles/`):
//!
//! ```toml
//! name = "small-site"
//! description = "..."
//! [requires]
//! cpus = 2               # logical CPUs, at least
//! memory_gib = 8         # total memory, at least
//! disk_free_gib = 20     # free space on the data dir's filesystem, at least
//! cgroup = ["v2", "v1-hybrid"]   # accepted cgroup layouts
//! features = ["kvm", "nftables"] # features that must be available
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::probe::ProbeReport;

/// Errors reading a profile.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The file could not be read.
    #[error("reading profile {path}: {source}")]
    Read { path: String, source: std::io::Error },
    /// The TOML is malformed or has unknown keys.
    #[error("profile {path}: {message}")]
    Parse { path: String, message: String },
    /// A feature name the probe does not know.
    #[error("profile {path}: unknown feature {feature:?} in requires.features")]
    UnknownFeature { path: String, feature: String },
}

/// A hardware profile.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Short name.
    pub name: String,
    /// What kind of site the profile is for.
    #[serde(default)]
    pub description: String,
    /// The requirements.
    pub requires: Requirements,
}

/// Requirements of a profile; an absent field is not checked.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Requirements {
    pub cpus: Option<u32>,
    pub memory_gib: Option<f64>,
    pub disk_free_gib: Option<f64>,
    #[serde(default)]
    pub cgroup: Vec<String>,
    #[serde(default)]
    pub features: Vec<String>,
}

/// One line of an acceptance check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckLine {
    pub requirement: String,
    pub expected: String,
    pub observed: String,
    pub pass: bool,
}

const KNOWN_FEATURES: &[&str] = &["kvm", "kvm_full_guests", "nftables", "overlayfs", "tun", "bridge", "vxlan", "veth"];
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

impl Profile {
    /// Load and validate a profile file.
    pub fn load(path: &Path) -> Result<Profile, ProfileError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read { path: p.clone(), source })?;
        Self::parse(&p, &text)
    }

    /// Parse a profile from TOML text (`origin` names it in errors).
    pub fn parse(origin: &str, text: &str) -> Result<Profile, ProfileError> {
        let prof: Profile = toml::from_str(text).map_err(|e| ProfileError::Parse { path: origin.into(), message: e.to_string() })?;
        if let Some(f) = prof.requires.features.iter().find(|f| !KNOWN_FEATURES.contains(&f.as_str())) {
            return Err(ProfileError::UnknownFeature { path: origin.into(), feature: f.clone() });
        }
        Ok(prof)
    }

    /// Check a probe report against this profile, one line per requirement.
    pub fn check(&self, r: &ProbeReport) -> Vec<CheckLine> {
        let q = &self.requires;
        let mut out = Vec::new();
        if let Some(n) = q.cpus {
            out.push(CheckLine { requirement: "cpus".into(), expected: format!(">= {n}"), observed: r.cpus.to_string(), pass: r.cpus >= n });
        }
        if let Some(g) = q.memory_gib {
            let have = r.memory_total_bytes as f64 / GIB;
            out.push(CheckLine { requirement: "memory_gib".into(), expected: format!(">= {g}"), observed: format!("{have:.1}"), pass: have + 0.05 >= g });
        }
        if let Some(g) = q.disk_free_gib {
            let have = r.disk_free_bytes as f64 / GIB;
            out.push(CheckLine {
                requirement: "disk_free_gib".into(),
                expected: format!(">= {g}"),
                observed: format!("{have:.1} ({})", r.disk_path),
                pass: have >= g,
            });
        }
        if !q.cgroup.is_empty() {
            out.push(CheckLine {
                requirement: "cgroup".into(),
                expected: q.cgroup.join(" | "),
                observed: r.cgroup_version.clone(),
                pass: q.cgroup.contains(&r.cgroup_version),
            });
        }
        for f in &q.features {
            let got = r.features.get(f);
            out.push(CheckLine {
                requirement: format!("feature {f}"),
                expected: "available".into(),
                observed: got.map(|g| g.detail.clone()).unwrap_or_else(|| "not probed".into()),
                pass: got.is_some_and(|g| g.available),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::probe::Feature;
    use std::collections::BTreeMap;

    fn report() -> ProbeReport {
        let mut features = BTreeMap::new();
        features.insert("kvm".into(), Feature { available: true, detail: "ok".into() });
        features.insert("kvm_full_guests".into(), Feature { available: false, detail: "emulation only".into() });
        ProbeReport {
            hostname: "h".into(),
            kernel: "6.1".into(),
            arch: "x86_64".into(),
            cpu_model: "cpu".into(),
            cpus: 2,
            memory_total_bytes: 24 * GIB as u64,
            memory_available_bytes: 20 * GIB as u64,
            disk_path: "/".into(),
            disk_total_bytes: 100 * GIB as u64,
            disk_free_bytes: 50 * GIB as u64,
            cgroup_version: "v1-hybrid".into(),
            features,
        }
    }

    #[test]
    fn checks_pass_and_fail_per_requirement() {
        let p = Profile::parse(
            "t",
            r#"name = "t"
[requires]
cpus = 4
memory_gib = 8
disk_free_gib = 10
cgroup = ["v2", "v1-hybrid"]
features = ["kvm", "kvm_full_guests"]
"#,
        )
        .unwrap();
        let lines = p.check(&report());
        let pass: Vec<_> = lines.iter().map(|l| (l.requirement.as_str(), l.pass)).collect();
        assert_eq!(
            pass,
            vec![("cpus", false), ("memory_gib", true), ("disk_free_gib", true), ("cgroup", true), ("feature kvm", true), ("feature kvm_full_guests", false)]
        );
    }

    #[test]
    fn bad_profiles_are_refused() {
        assert!(matches!(Profile::parse("t", "name = 1"), Err(ProfileError::Parse { .. })));
        assert!(matches!(Profile::parse("t", "name='x'\n[requires]\nbogus=1"), Err(ProfileError::Parse { .. })));
        assert!(matches!(Profile::parse("t", "name='x'\n[requires]\nfeatures=['warp']"), Err(ProfileError::UnknownFeature { .. })));
    }

    #[test]
    fn shipped_profiles_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("firmware-profiles");
        let mut n = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                Profile::load(&p).unwrap();
                n += 1;
            }
        }
        assert!(n >= 1);
    }
}
