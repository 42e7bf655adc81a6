//! Project quotas beyond counts: the vCPUs and memory a project's instances and containers hold,
//! the MiB its volumes, snapshots and images take, the quota keys a spec or the site config may
//! name, and the site's default quotas.
//!
//! A quota key is a project-scoped kind's plural (`"instances"`: how many), or an amount:
//! `volume_mib` (volumes and snapshots provisioned), `object_mib` (bytes in buckets), `image_mib`
//! (container images unpacked, see [`ImageRoom`]), `vcpus` and `memory_mib` (see [`Compute`]).
//! A new project gets `[projects] default_quotas` for every key its spec does not set (the
//! `system` project excepted), so no tenant is unlimited by omission; a site admin raises or
//! removes them with a PATCH of the project. Amounts count what is defined, stopped workloads
//! too, as Incus's `limits.cpu` and `limits.memory` do.
//!
//! This module sits below the kinds it counts: it reads their rows as stored (the JSON of their
//! specs and statuses), so that containers, instances, volumes, images and projects can all
//! check their quotas here without importing each other.

use std::collections::BTreeMap;

use rusqlite::Connection;
use serde_json::Value;

use super::model::Status;
use super::{Kind, ProjectCtx, Scope, SiteError};
use crate::config::ContainerConfig;
use crate::state::{ResourceRow, repo};

/// The quota key of the vCPUs a project's instances and containers may hold together.
pub const VCPUS_QUOTA: &str = "vcpus";
/// The quota key of the memory (MiB) a project's instances and containers may hold together.
pub const MEMORY_MIB_QUOTA: &str = "memory_mib";
/// The quota key of the MiB a project's volumes and snapshots may provision together.
pub const VOLUME_MIB_QUOTA: &str = "volume_mib";
/// The quota key of the MiB all of a project's buckets may store together.
pub const OBJECT_MIB_QUOTA: &str = "object_mib";
/// The quota key of the MiB a project's container images take unpacked (each image counts its
/// whole root, even when another image of the same digest shares it on disk).
pub const IMAGE_MIB_QUOTA: &str = "image_mib";
/// The status field where an image records the bytes its unpacked root holds.
pub const UNPACKED_BYTES: &str = "unpacked_bytes";

/// Whether `key` may appear in `spec.quotas` (and `[projects] default_quotas`).
pub fn valid_key(key: &str) -> bool {
    [VOLUME_MIB_QUOTA, OBJECT_MIB_QUOTA, VCPUS_QUOTA, MEMORY_MIB_QUOTA, IMAGE_MIB_QUOTA].contains(&key)
        || Kind::from_plural(key).is_some_and(|k| k.scope() == Scope::Project && k != Kind::Operation)
}

/// Check the site's default quotas at start-up. Errors: 500 `misconfigured` naming
/// `projects.default_quotas.<key>` for a key [`valid_key`] refuses.
pub fn check_defaults(defaults: &BTreeMap<String, u64>) -> Result<(), SiteError> {
    match defaults.keys().find(|k| !valid_key(k)) {
        Some(k) => Err(SiteError::misconfigured(format!("projects.default_quotas.{k}"), "not a project-scoped kind's plural nor an amount key")),
        None => Ok(()),
    }
}

/// `quotas` with `defaults` added for every key it does not set.
pub fn with_defaults(mut quotas: BTreeMap<String, u64>, defaults: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    for (k, v) in defaults {
        quotas.entry(k.clone()).or_insert(*v);
    }
    quotas
}

/// The quotas project `project` sets (inside a transaction or a read).
fn quotas_of(c: &Connection, project: &str) -> Result<BTreeMap<String, u64>, SiteError> {
    let Some(row) = repo::get(c, project)? else { return Ok(BTreeMap::new()) };
    let spec: Value = serde_json::from_str(&row.spec)?;
    Ok(spec["quotas"].as_object().map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_u64()?))).collect()).unwrap_or_default())
}

fn status_u64(row: &ResourceRow, key: &str) -> Option<u64> {
    serde_json::from_str::<Status>(&row.status).ok().and_then(|s| s.extra.get(key).and_then(Value::as_u64))
}

/// What a workload holds against its project's `vcpus` and `memory_mib` quotas: CPU in
/// thousandths of a vCPU (a container's fractional `cpus` rounds up) and memory in MiB; `None`
/// is an unlimited container value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compute {
    /// Thousandths of a vCPU.
    pub millicpus: Option<u64>,
    /// MiB of memory.
    pub memory_mib: Option<u64>,
}

impl Compute {
    /// What a workload of `kind` with `spec` (as stored) holds: an instance its `vcpus` and
    /// guest `memory_mib`; a container its `resources.cpus` and `resources.memory_mib`, else the
    /// site's `[container]` defaults (0: unlimited), as `containers::effective_limits` runs it.
    /// Other kinds hold nothing.
    pub fn held(kind: Kind, spec: &Value, cfg: &ContainerConfig) -> Compute {
        match kind {
            Kind::Instance => Compute { millicpus: spec["vcpus"].as_u64().map(|v| v * 1000), memory_mib: spec["memory_mib"].as_u64() },
            Kind::Container => {
                let r = &spec["resources"];
                let cpus = r["cpus"].as_f64().or((cfg.default_cpus > 0.0).then_some(cfg.default_cpus));
                let memory = r["memory_mib"].as_u64().or((cfg.default_memory_mib > 0).then_some(cfg.default_memory_mib));
                Compute { millicpus: cpus.map(|c| (c * 1000.0).ceil() as u64), memory_mib: memory }
            }
            _ => Compute::default(),
        }
    }
}

/// Sum of what the project's instances and containers hold (thousandths of a vCPU, MiB),
/// leaving out resource `except` (the one being changed). Unlimited container values count as 0
/// here: [`check_compute`] refuses them in a project with the matching quota.
fn used(c: &Connection, p: &ProjectCtx, cfg: &ContainerConfig, except: Option<&str>) -> Result<(u64, u64), SiteError> {
    let (mut cpu, mut mem) = (0, 0);
    for kind in [Kind::Instance, Kind::Container] {
        for row in repo::list(c, kind.as_str(), Some(&p.id), None, usize::MAX >> 1)? {
            if Some(row.id.as_str()) == except {
                continue;
            }
            let held = serde_json::from_str::<Value>(&row.spec).map(|s| Compute::held(kind, &s, cfg)).unwrap_or_default();
            cpu += held.millicpus.unwrap_or(0);
            mem += held.memory_mib.unwrap_or(0);
        }
    }
    Ok((cpu, mem))
}

/// Inside a write transaction: the project's `vcpus` and `memory_mib` quotas have room for a
/// workload holding `held`, replacing resource `except` when it is an update. An unlimited
/// value is refused (422 naming `fields.0` for CPU or `fields.1` for memory) in a project with
/// that quota, as a limit the quota could not bound. Errors: 422 `quota_exceeded` naming
/// `quotas.vcpus` or `quotas.memory_mib`.
pub fn check_compute(
    c: &Connection,
    p: &ProjectCtx,
    cfg: &ContainerConfig,
    except: Option<&str>,
    held: Compute,
    fields: (&str, &str),
) -> Result<(), SiteError> {
    let quotas = quotas_of(c, &p.id)?;
    let (vq, mq) = (quotas.get(VCPUS_QUOTA).copied(), quotas.get(MEMORY_MIB_QUOTA).copied());
    if vq.is_none() && mq.is_none() {
        return Ok(());
    }
    let (cpu_used, mem_used) = used(c, p, cfg, except)?;
    if let Some(limit) = vq {
        let cpu = held.millicpus.ok_or_else(|| {
            SiteError::invalid(fields.0, format!("project {} has a vcpus quota: give a CPU limit (or the site a [container] default_cpus)", p.name))
        })?;
        if cpu_used + cpu > limit * 1000 {
            return Err(SiteError::QuotaExceeded { kind: VCPUS_QUOTA.into(), limit });
        }
    }
    if let Some(limit) = mq {
        let memory = held.memory_mib.ok_or_else(|| {
            SiteError::invalid(
                fields.1,
                format!("project {} has a memory_mib quota: give a memory limit (or the site a [container] default_memory_mib)", p.name),
            )
        })?;
        if mem_used + memory > limit {
            return Err(SiteError::QuotaExceeded { kind: MEMORY_MIB_QUOTA.into(), limit });
        }
    }
    Ok(())
}

/// MiB a volume or a snapshot row provisions: a volume's `size_mib`; a snapshot's recorded
/// `spec.size_mib` (its status's for snapshots taken before sizes were recorded in the spec).
pub fn provisioned_by(row: &ResourceRow) -> u64 {
    let spec: Value = serde_json::from_str(&row.spec).unwrap_or_default();
    let own = spec["size_mib"].as_u64();
    if row.kind == Kind::Snapshot.as_str() {
        return own.or_else(|| status_u64(row, "size_mib")).unwrap_or(0);
    }
    own.unwrap_or(0)
}

/// MiB the volumes and snapshots of project `project` (of the whole site when `None`) provision.
pub fn provisioned_mib(c: &Connection, project: Option<&str>) -> Result<u64, SiteError> {
    let mut sum = 0;
    for kind in [Kind::Volume, Kind::Snapshot] {
        sum += repo::list(c, kind.as_str(), project, None, usize::MAX >> 1)?.iter().map(provisioned_by).sum::<u64>();
    }
    Ok(sum)
}

/// The project's amounts in use, for its status (`status.usage`): `vcpus` (rounded up),
/// `memory_mib`, `volume_mib` (volumes and snapshots), `object_mib` and `image_mib` (rounded up).
pub fn amounts(c: &Connection, p: &ProjectCtx, cfg: &ContainerConfig) -> Result<BTreeMap<String, u64>, SiteError> {
    let (cpu, mem) = used(c, p, cfg, None)?;
    Ok(BTreeMap::from([
        (VCPUS_QUOTA.to_string(), cpu.div_ceil(1000)),
        (MEMORY_MIB_QUOTA.to_string(), mem),
        (VOLUME_MIB_QUOTA.to_string(), provisioned_mib(c, Some(&p.id))?),
        (OBJECT_MIB_QUOTA.to_string(), (crate::state::objects::project_bytes(c, &p.id)?.max(0) as u64).div_ceil(1 << 20)),
        (IMAGE_MIB_QUOTA.to_string(), image_bytes(c, &p.id)?.div_ceil(1 << 20)),
    ]))
}

/// Bytes the unpacked roots of project `project`'s images hold, as they recorded them.
fn image_bytes(c: &Connection, project: &str) -> Result<u64, SiteError> {
    Ok(repo::list(c, Kind::Image.as_str(), Some(project), None, usize::MAX >> 1)?.iter().filter_map(|r| status_u64(r, UNPACKED_BYTES)).sum())
}

/// What an image's unpack may spend under its project's `image_mib` quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageRoom {
    /// Bytes left beside the project's other images; `None` without a quota.
    pub left: Option<u64>,
    /// The quota, MiB (0 without one).
    pub limit_mib: u64,
    /// Bytes this image has recorded already (it is counted then).
    pub recorded: Option<u64>,
    /// Bytes another image of the same digest recorded (for a root that is on disk already).
    pub shared: Option<u64>,
}

/// The [`ImageRoom`] of image row `image` (inside a read).
pub fn image_room(c: &Connection, image: &ResourceRow) -> Result<ImageRoom, SiteError> {
    let digest =
        |r: &ResourceRow| serde_json::from_str::<Status>(&r.status).ok().and_then(|s| s.extra.get("digest").and_then(|d| d.as_str().map(str::to_string)));
    let mine = digest(image);
    let all = repo::list(c, Kind::Image.as_str(), None, None, usize::MAX >> 1)?;
    let shared = all.iter().filter(|r| r.id != image.id && mine.is_some() && digest(r) == mine).find_map(|r| status_u64(r, UNPACKED_BYTES));
    let quota = match &image.project_id {
        Some(pid) => quotas_of(c, pid)?.get(IMAGE_MIB_QUOTA).copied(),
        None => None,
    };
    let used: u64 = all.iter().filter(|r| r.id != image.id && r.project_id == image.project_id).filter_map(|r| status_u64(r, UNPACKED_BYTES)).sum();
    Ok(ImageRoom { left: quota.map(|q| (q << 20).saturating_sub(used)), limit_mib: quota.unwrap_or(0), recorded: status_u64(image, UNPACKED_BYTES), shared })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_kinds_plurals_or_amounts() {
        for k in ["instances", "port-forwards", "vcpus", "memory_mib", "volume_mib", "object_mib", "image_mib", "access-keys"] {
            assert!(valid_key(k), "{k}");
        }
        for k in ["nodes", "projects", "operations", "instance", "cpus", ""] {
            assert!(!valid_key(k), "{k}");
        }
        assert!(check_defaults(&crate::config::Config::default().projects.default_quotas).is_ok());
        match check_defaults(&BTreeMap::from([("cores".to_string(), 4)])) {
            Err(SiteError::Misconfigured { key, .. }) => assert_eq!(key, "projects.default_quotas.cores"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_fill_only_what_a_spec_leaves_out() {
        let d = BTreeMap::from([("vcpus".to_string(), 64), ("instances".to_string(), 20)]);
        let q = with_defaults(BTreeMap::from([("vcpus".to_string(), 2)]), &d);
        assert_eq!(q, BTreeMap::from([("vcpus".to_string(), 2), ("instances".to_string(), 20)]));
    }

    #[test]
    fn workloads_hold_their_effective_limits_rounded_up() {
        use serde_json::json;
        let cfg = ContainerConfig::default();
        let bare = json!({"image": "img-x"});
        let c = Compute::held(Kind::Container, &bare, &cfg);
        assert_eq!((c.millicpus, c.memory_mib), (Some((cfg.default_cpus * 1000.0) as u64), Some(cfg.default_memory_mib)));
        let small = json!({"image": "img-x", "resources": {"cpus": 0.0015, "memory_mib": 5}});
        assert_eq!(Compute::held(Kind::Container, &small, &cfg), Compute { millicpus: Some(2), memory_mib: Some(5) });
        let unlimited = ContainerConfig { default_cpus: 0.0, default_memory_mib: 0, ..cfg.clone() };
        assert_eq!(Compute::held(Kind::Container, &bare, &unlimited), Compute::default());
        let vm = json!({"image": "img-x", "vcpus": 2, "memory_mib": 256, "subnet": "subnet-x"});
        assert_eq!(Compute::held(Kind::Instance, &vm, &cfg), Compute { millicpus: Some(2000), memory_mib: Some(256) });
        assert_eq!(Compute::held(Kind::Volume, &vm, &cfg), Compute::default());
    }
}
