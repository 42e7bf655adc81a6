//! The object store's consistency check and repair, run at start-up (before the S3 listener
//! accepts writes) and on demand (`GET /v1/object-store/check`, report only).

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use super::{Site, SiteError};
use crate::state::objects as orepo;

/// What a consistency check found (and repaired).
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct CheckReport {
    /// Blob files on disk.
    pub blobs: usize,
    /// Unreferenced blob files removed (left by interrupted writes).
    pub orphans_removed: usize,
    /// Blobs a row refers to that are missing or of the wrong size (data loss; not repaired).
    pub damaged: Vec<String>,
    /// Objects whose blob sizes do not add up to their size.
    pub size_mismatches: Vec<String>,
    /// Buckets whose usage counters were wrong (recomputed).
    pub usage_fixed: Vec<String>,
}

impl CheckReport {
    /// Nothing is damaged.
    pub fn clean(&self) -> bool {
        self.damaged.is_empty() && self.size_mismatches.is_empty()
    }
}

impl Site {
    /// Check the object store against its metadata and repair what is safe: remove unreferenced
    /// blobs (interrupted writes) and recompute drifted usage counters. Run at start-up, before
    /// the S3 listener accepts writes; `sweep` false only reports.
    pub fn check_objects(&self, sweep: bool) -> Result<CheckReport, SiteError> {
        let blobs = &self.objects().blobs;
        let on_disk: BTreeMap<String, u64> = blobs.list()?.into_iter().collect();
        let refs = self.read(|c| Ok(orepo::all_blob_refs(c)?))?;
        let mut report = CheckReport { blobs: on_disk.len(), ..Default::default() };
        let referenced: std::collections::HashSet<&str> = refs.iter().map(|r| r.blob.as_str()).collect();
        for r in &refs {
            // A blob committed after the directory listing is not damage: look at it directly.
            if on_disk.get(&r.blob) != Some(&(r.size as u64)) && std::fs::metadata(blobs.path(&r.blob)).map(|m| m.len()).ok() != Some(r.size as u64) {
                report.damaged.push(r.blob.clone());
            }
        }
        if sweep {
            report.orphans_removed = blobs.sweep(|id| referenced.contains(id))?;
        } else {
            report.orphans_removed = on_disk.keys().filter(|k| !referenced.contains(k.as_str())).count();
        }
        report.size_mismatches = self.read(|c| Ok(orepo::size_mismatches(c)?))?.into_iter().map(|(b, k)| format!("{b}/{k}")).collect();
        let drift = self.read(|c| Ok(orepo::usage_drift(c)?))?;
        if sweep && !drift.is_empty() {
            self.write(|tx, _| {
                for (b, _, _, bytes, n) in &drift {
                    tx.execute("UPDATE bucket_usage SET bytes = ?2, objects = ?3 WHERE bucket = ?1", rusqlite::params![b, bytes, n])
                        .map_err(crate::state::StateError::from)?;
                }
                Ok(())
            })?;
        }
        report.usage_fixed = drift.into_iter().map(|d| d.0).collect();
        Ok(report)
    }
}
