//! Generic lookups inside a state transaction: resolve a reference a request names, and parse a
//! stored spec. Below every resource module of `site`.

use rusqlite::Connection;
use serde::Deserialize;

use super::{Kind, ProjectCtx, Site, SiteError, model};
use crate::state::ResourceRow;

/// Resolve a reference to a resource of `kind` in the project, inside a transaction; errors
/// are 422 naming `field`.
pub(super) fn resolve(c: &Connection, kind: Kind, p: &ProjectCtx, field: &str, r: &str) -> Result<ResourceRow, SiteError> {
    let rf = model::parse_ref(kind, r).map_err(|_| SiteError::invalid(field, format!("{r:?} is not a {} id or name", kind.as_str())))?;
    Site::find(c, kind, Some(p), &rf).map_err(|_| SiteError::invalid(field, format!("no {} {r:?} in this project", kind.as_str())))
}

/// Parse a stored spec.
pub(super) fn spec_of<T: for<'de> Deserialize<'de>>(row: &ResourceRow) -> Result<T, SiteError> {
    Ok(serde_json::from_str(&row.spec)?)
}
