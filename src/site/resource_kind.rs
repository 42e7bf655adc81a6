//! One mechanism for the project-scoped kinds the generic handlers serve (`/v1/<plural>`):
//! each kind's spec type implements [`ResourceKind`], which names the kind, lists the rows of
//! other kinds that keep one from being deleted, and deletes. Kinds made from a JSON create body
//! also implement [`Creatable`] (functions are made by a deploy instead), and kinds that change
//! after create [`Patchable`]. The generic parts (name, labels, project liveness and quota, the
//! id, events, generations) stay in [`Site::create_then`], [`Site::update`] and
//! [`Site::delete_with`].
//!
//! The quota key of a kind is its singular name (`Kind::as_str`), as in `spec.quotas`.

use std::collections::BTreeMap;

use rusqlite::Connection;
use serde_json::Value;

use super::{Kind, ProjectCtx, Resource, Site, SiteError};
use crate::state::{ResourceRow, repo};

/// Labels of a resource: name to value (checked by `model::validate_labels`).
pub type Labels = BTreeMap<String, String>;

/// A project-scoped resource kind, implemented by its spec type.
pub trait ResourceKind: 'static {
    /// The kind (its name, plural, id prefix and quota key).
    const KIND: Kind;

    /// Rows of other kinds whose spec names one of this kind, as `(kind, JSON path in their
    /// spec)`: deleting is refused (409 `conflict`, naming the user) while one exists.
    const DEPENDENTS: &'static [(Kind, &'static str)] = &[];

    /// Checks of a delete beyond [`ResourceKind::DEPENDENTS`], inside the delete's transaction
    /// (used by the provided [`ResourceKind::delete`]).
    fn check_delete(_site: &Site, _c: &Connection, _row: &ResourceRow) -> Result<(), SiteError> {
        Ok(())
    }

    /// Delete the resource `r` (id or name) of project `p`: refused (409) while a dependent
    /// names it or [`ResourceKind::check_delete`] refuses. A kind that deletes rows of other
    /// kinds with it, or frees memory or files after the commit, provides its own.
    fn delete(site: &Site, p: &ProjectCtx, r: &str) -> Result<Resource, SiteError> {
        site.delete_with(Self::KIND, Some(p), r, |c, row| {
            dependents_free(c, Self::KIND, Self::DEPENDENTS, row)?;
            Self::check_delete(site, c, row)
        })
    }
}

/// A kind made from the one create body (`{"name", "labels", "spec"}`).
pub trait Creatable: ResourceKind {
    /// Validate `spec` (a JSON object of this type) and create the resource in project `p`.
    /// Errors: 422 naming the `spec.<field>`, 409 on a collision, quota and liveness errors.
    fn create(site: &Site, p: &ProjectCtx, name: &str, labels: &Labels, spec: Value) -> Result<Resource, SiteError>;
}

/// A kind whose labels and spec may change after create: a merge patch of the spec (RFC 7386),
/// when `if_match` (if given) is the current generation.
pub trait Patchable: ResourceKind {
    /// Apply the patch. Errors: 409 on a stale generation, 422 naming a field that is fixed at
    /// create or whose new value is not allowed.
    fn update(site: &Site, p: &ProjectCtx, r: &str, if_match: Option<i64>, labels: Option<&Labels>, patch: Option<&Value>) -> Result<Resource, SiteError>;
}

/// Refuse (409) when a row of a dependent kind names `row`.
pub fn dependents_free(c: &Connection, kind: Kind, dependents: &[(Kind, &str)], row: &ResourceRow) -> Result<(), SiteError> {
    for (k, path) in dependents {
        if let Some(u) = repo::referencing(c, k.as_str(), path, &row.id)?.first() {
            return Err(SiteError::Conflict(format!("{} {} is in use by {} {}", kind.as_str(), row.name, k.as_str(), u.name)));
        }
    }
    Ok(())
}

impl Site {
    /// Create a resource of kind `K` in project `p` from its create body.
    pub fn create_resource<K: Creatable>(&self, p: &ProjectCtx, name: &str, labels: &Labels, spec: Value) -> Result<Resource, SiteError> {
        K::create(self, p, name, labels, spec)
    }

    /// Patch a resource of kind `K`.
    pub fn update_resource<K: Patchable>(
        &self,
        p: &ProjectCtx,
        r: &str,
        if_match: Option<i64>,
        labels: Option<&Labels>,
        patch: Option<&Value>,
    ) -> Result<Resource, SiteError> {
        K::update(self, p, r, if_match, labels, patch)
    }

    /// Delete a resource of kind `K` (by id or name), as [`ResourceKind::delete`] says. Its
    /// reconciler, if any, cleans the host up afterwards.
    pub fn delete_resource<K: ResourceKind>(&self, p: &ProjectCtx, r: &str) -> Result<Resource, SiteError> {
        K::delete(self, p, r)
    }
}
