//! Start-up recovery, before any reconciler runs: what a crash or `kill -9` left behind is
//! removed or repaired (containers and instances state no longer has, interrupted imports and
//! disk copies, object blobs of interrupted writes, usage counters, unreferenced image blobs).
//! Each step logs what it did; a failed step is logged and the daemon goes on (its reconcilers
//! converge the rest).

use crate::site::Site;

/// Run every recovery step in order (on the blocking pool).
pub async fn recover(site: &Site) {
    // Containers deleted while the daemon was down, and leftovers of interrupted imports.
    match site.run(crate::site::containers::sweep_orphans).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(containers = n, "removed containers that state no longer has"),
        Err(e) => tracing::warn!(error = %e, "sweeping orphaned containers failed"),
    }
    match site.run(crate::site::instances::sweep_orphans).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(instances = n, "removed instances that state no longer has"),
        Err(e) => tracing::warn!(error = %e, "sweeping orphaned instances failed"),
    }
    // Blobs of writes a crash interrupted, and usage counters, before the S3 endpoint opens.
    match site.run(|s| s.check_objects(true)).await {
        Ok(r) if r.clean() => {
            if r.orphans_removed > 0 || !r.usage_fixed.is_empty() {
                tracing::info!(orphans = r.orphans_removed, usage_fixed = r.usage_fixed.len(), "object store repaired");
            }
        }
        Ok(r) => tracing::error!(damaged = ?r.damaged, size_mismatches = ?r.size_mismatches, "object store check found damage"),
        Err(e) => tracing::warn!(error = %e, "object store check failed"),
    }
    if let Err(e) = site.run(|s| s.collect_image_garbage(true)).await {
        tracing::warn!(error = %e, "image garbage collection failed");
    }
}
