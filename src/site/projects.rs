//! Projects (tenants): quotas, life cycle, and their reconciler.
//!
//! A project owns a directory `DATA/projects/<id>/` where later engines keep per-tenant files;
//! the reconciler creates it (again, after a wipe) and removes it when the project is deleted.
//! Deleting a project is a long action: it answers an operation, and the reconciler removes the
//! project's tokens, users and operations, then the directory, then the project.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::SYSTEM_PROJECT;
use super::model::{self, Status};
use super::operations::{self, OpPhase};
use super::reconcile::{Controller, Outcome};
use super::{Kind, ProjectCtx, Resource, Site, SiteError};
use crate::state::repo;

/// Spec of a project.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectSpec {
    /// Free text, at most 256 characters.
    #[serde(default)]
    pub description: String,
    /// Most resources of each kind, keyed by the plural collection name (`"instances": 10`), and
    /// `volume_mib`, the MiB all of the project's volumes may provision together. A key without an
    /// entry is unlimited.
    #[serde(default)]
    pub quotas: BTreeMap<String, u64>,
    /// Domains whose names (the domain itself and its subdomains) the project's functions may
    /// claim as `spec.host`; set by site admins only. Lower-case DNS names, at most 64.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub function_domains: Vec<String>,
    /// Host paths (names from `[container.host_paths]`) the project's containers may mount, each
    /// `ro` (read-only) or `rw`; set by site admins only. An absent name may not be mounted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub host_paths: BTreeMap<String, HostPathAccess>,
}

/// How a project may mount a host path granted to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HostPathAccess {
    /// Read-only mounts only (`read_only: true`).
    Ro,
    /// Read-only or read-write mounts.
    Rw,
}

/// Most approved function domains per project.
pub const MAX_FUNCTION_DOMAINS: usize = 64;

/// The spec of project `p` (inside a transaction, or a read).
pub fn spec_of(c: &Connection, p: &ProjectCtx) -> Result<ProjectSpec, SiteError> {
    let row = repo::get(c, &p.id)?.ok_or_else(|| SiteError::not_found("project", &p.name))?;
    Ok(serde_json::from_str(&row.spec)?)
}

/// Kinds that a project deletion removes by itself; anything else blocks the deletion.
const OWNED_AUTOMATICALLY: &[Kind] = &[Kind::Token, Kind::User, Kind::Operation, Kind::AccessKey];

pub use super::quotas::VOLUME_MIB_QUOTA;

/// The project's quota for `key`, if it sets one (inside a transaction).
pub fn quota(c: &Connection, p: &ProjectCtx, key: &str) -> Result<Option<u64>, SiteError> {
    let row = repo::get(c, &p.id)?.ok_or_else(|| SiteError::not_found("project", &p.name))?;
    let spec: ProjectSpec = serde_json::from_str(&row.spec)?;
    Ok(spec.quotas.get(key).copied())
}

/// Validate and normalize a project spec given as JSON; `host_paths` are the site config's
/// (`[container.host_paths]`), the only names a grant may give.
pub fn validate_spec(v: serde_json::Value, host_paths: &BTreeMap<String, PathBuf>) -> Result<serde_json::Value, SiteError> {
    let mut spec: ProjectSpec = serde_json::from_value(v).map_err(|e| SiteError::invalid("spec", e.to_string()))?;
    for d in spec.function_domains.iter_mut() {
        *d = d.trim_end_matches('.').to_ascii_lowercase();
        if !super::model::valid_dns_name(d) {
            return Err(SiteError::invalid("spec.function_domains", format!("{d:?} is not a DNS name")));
        }
    }
    spec.function_domains.sort();
    spec.function_domains.dedup();
    if spec.function_domains.len() > MAX_FUNCTION_DOMAINS {
        return Err(SiteError::invalid("spec.function_domains", format!("at most {MAX_FUNCTION_DOMAINS} domains")));
    }
    for name in spec.host_paths.keys() {
        if !host_paths.contains_key(name) {
            return Err(SiteError::invalid(
                format!("spec.host_paths.{name}"),
                format!("no host path named {name:?} in the site config ([container.host_paths])"),
            ));
        }
    }
    if spec.description.chars().count() > 256 {
        return Err(SiteError::invalid("spec.description", "at most 256 characters"));
    }
    if let Some(k) = spec.quotas.keys().find(|k| !super::quotas::valid_key(k)) {
        return Err(SiteError::invalid(
            format!("spec.quotas.{k}"),
            "not a project-scoped kind's plural nor vcpus, memory_mib, volume_mib, object_mib or image_mib",
        ));
    }
    Ok(serde_json::to_value(spec)?)
}

/// Inside a write transaction: the project exists, is not being deleted, and has quota left
/// for one more `kind`.
pub fn check_live_and_quota(c: &Connection, p: &ProjectCtx, kind: Kind) -> Result<(), SiteError> {
    let row = repo::get(c, &p.id)?.ok_or_else(|| SiteError::not_found("project", &p.name))?;
    if row.deleting {
        return Err(SiteError::Conflict(format!("project {} is being deleted", p.name)));
    }
    let spec: ProjectSpec = serde_json::from_str(&row.spec)?;
    if let Some(&limit) = spec.quotas.get(kind.plural()) {
        let used = repo::count_kind_in_project(c, kind.as_str(), &p.id)?;
        if used as u64 >= limit {
            return Err(SiteError::QuotaExceeded { kind: kind.plural().to_string(), limit });
        }
    }
    Ok(())
}

impl Site {
    /// Look up a project by name. Errors: not found.
    pub fn project_by_name(&self, name: &str) -> Result<ProjectCtx, SiteError> {
        let row = self.read(|c| Ok(repo::get_by_name(c, Kind::Project.as_str(), None, name)?))?;
        match row {
            Some(r) => Ok(ProjectCtx { id: r.id, name: r.name }),
            None => Err(SiteError::not_found("project", name)),
        }
    }

    /// Create a project. Every quota key its spec leaves out gets the site's default
    /// (`[projects] default_quotas`), except in the `system` project.
    pub fn create_project(&self, name: &str, labels: &BTreeMap<String, String>, spec: serde_json::Value) -> Result<Resource, SiteError> {
        let mut spec: ProjectSpec = serde_json::from_value(validate_spec(spec, &self.config().container.host_paths)?)?;
        if name != SYSTEM_PROJECT {
            spec.quotas = super::quotas::with_defaults(spec.quotas, &self.config().projects.default_quotas);
        }
        let spec = serde_json::to_value(spec)?;
        self.create(Kind::Project, None, name, labels, &spec, &Status::phase("Pending"), None)
    }

    /// Request deletion of a project: marks it deleting and answers the operation that tracks the
    /// clean-up. Errors: `system` cannot be deleted; projects that still own workloads are in use.
    pub fn delete_project(&self, r: &str) -> Result<Resource, SiteError> {
        let r = model::parse_ref(Kind::Project, r)?;
        let op = self.write(|tx, evs| {
            let row = Site::find(tx, Kind::Project, None, &r)?;
            if row.name == SYSTEM_PROJECT {
                return Err(SiteError::Conflict("the system project cannot be deleted".into()));
            }
            if let Some(op) = operations::pending_for(tx, &row.id)? {
                return Ok(op);
            }
            let blocking: Vec<String> = repo::children_of_project(tx, &row.id)?
                .into_iter()
                .filter(|(_, k)| !OWNED_AUTOMATICALLY.iter().any(|o| o.as_str() == k))
                .map(|(id, _)| id)
                .collect();
            if !blocking.is_empty() {
                return Err(SiteError::Conflict(format!(
                    "project {} still has {} resources (first: {}); delete them first",
                    row.name,
                    blocking.len(),
                    blocking[0]
                )));
            }
            repo::mark_deleting(tx, &row.id, &model::now_rfc3339())?;
            evs.push(super::event_for(&row, None, "deleting", format!("project {} is being deleted", row.name)));
            operations::create_in_tx(tx, evs, None, "delete", Kind::Project, &row.id, &row.name)
        })?;
        Resource::from_row(op)
    }

    fn project_dir(&self, id: &str) -> PathBuf {
        self.config().data_dir.join("projects").join(id)
    }
}

/// The project reconciler.
pub struct ProjectController;

impl Controller for ProjectController {
    fn kind(&self) -> Kind {
        Kind::Project
    }

    async fn reconcile(&self, site: &Site, id: &str) -> Result<Outcome, SiteError> {
        let id = id.to_string();
        site.run(move |site| reconcile_project(site, &id)).await
    }
}

fn reconcile_project(site: &Site, id: &str) -> Result<Outcome, SiteError> {
    let Some(row) = site.read(|c| Ok(repo::get(c, id)?))? else { return Ok(Outcome::Done) };
    let dir = site.project_dir(id);
    if row.deleting {
        return finalize_deletion(site, id, &row.name, &dir);
    }
    std::fs::create_dir_all(&dir).map_err(SiteError::io_doing(format!("creating {}", dir.display())))?;
    let pc = ProjectCtx { id: id.to_string(), name: row.name.clone() };
    let mut usage: BTreeMap<String, u64> = site.counts(Some(&pc))?.into_iter().map(|(k, n)| (k, n.max(0) as u64)).collect();
    usage.extend(site.read(|c| super::quotas::amounts(c, &pc, &site.config().container))?);
    site.set_status(id, |st, row| {
        st.phase = "Ready".into();
        st.observed_generation = row.generation;
        st.set_condition("Ready", true, "Reconciled", "project directory present");
        st.extra.insert("usage".into(), serde_json::json!(usage));
    })?;
    // The usage beside the quotas stays fresh without a change to the project itself.
    Ok(Outcome::RequeueAfter(USAGE_REFRESH))
}

/// How often a project's `status.usage` is recounted.
const USAGE_REFRESH: std::time::Duration = std::time::Duration::from_secs(30);

fn finalize_deletion(site: &Site, id: &str, name: &str, dir: &std::path::Path) -> Result<Outcome, SiteError> {
    let op = site.read(|c| operations::pending_for(c, id))?;
    let children = site.read(|c| Ok(repo::children_of_project(c, id)?))?;
    let total = children.len().max(1);
    if let Some(op) = &op {
        operations::set_progress(site, &op.id, OpPhase::Running, 5, "removing the project's tokens, users and operations")?;
    }
    for (n, (child, kind)) in children.iter().enumerate() {
        let k = Kind::from_name(kind).unwrap_or(Kind::Operation);
        if !OWNED_AUTOMATICALLY.contains(&k) {
            let msg = format!("project {name} gained a {kind} ({child}) while being deleted");
            if let Some(op) = &op {
                operations::fail(site, &op.id, "conflict", &msg)?;
            }
            site.write(|tx, _| Ok(repo::clear_deleting(tx, id, &model::now_rfc3339())?))?;
            return Ok(Outcome::Done);
        }
        let pc = ProjectCtx { id: id.to_string(), name: name.to_string() };
        site.delete(k, Some(&pc), child)?;
        if let Some(op) = &op {
            let pct = 5 + (85 * (n + 1) / total) as u8;
            operations::set_progress(site, &op.id, OpPhase::Running, pct, &format!("removed {kind} {child}"))?;
        }
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(SiteError::io(format!("removing {}", dir.display()), e)),
    }
    site.unpin_project_userns(id)?;
    site.delete(Kind::Project, None, id)?;
    if let Some(op) = &op {
        operations::set_progress(site, &op.id, OpPhase::Succeeded, 100, &format!("project {name} deleted"))?;
    }
    Ok(Outcome::Done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn spec_validation_names_the_field() {
        let paths = BTreeMap::from([("share".to_string(), PathBuf::from("/srv/share"))]);
        assert!(validate_spec(json!({"description": "x", "quotas": {"instances": 3}}), &paths).is_ok());
        let v = validate_spec(json!({"function_domains": ["Example.COM.", "example.com"], "host_paths": {"share": "ro"}}), &paths).unwrap();
        assert_eq!(v["function_domains"], json!(["example.com"]));
        for (bad, field) in [
            (json!({"function_domains": ["not a domain"]}), "spec.function_domains"),
            (json!({"host_paths": {"etc": "rw"}}), "spec.host_paths.etc"),
            (json!({"host_paths": {"share": "rwx"}}), "spec"),
        ] {
            match validate_spec(bad, &paths) {
                Err(SiteError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{other:?}"),
            }
        }
        match validate_spec(json!({"quotas": {"nodes": 3}}), &paths) {
            Err(SiteError::Invalid { field, .. }) => assert_eq!(field, "spec.quotas.nodes"),
            other => panic!("{other:?}"),
        }
        match validate_spec(json!({"description": "a".repeat(300)}), &paths) {
            Err(SiteError::Invalid { field, .. }) => assert_eq!(field, "spec.description"),
            other => panic!("{other:?}"),
        }
        assert!(validate_spec(json!({"bogus": 1}), &paths).is_err());
    }
}
