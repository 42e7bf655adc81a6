//! Images: OCI images of a project, pulled from a registry or imported from an archive, kept in
//! the site's content-addressed blob store (`DATA/images/blobs`, shared by every project, since
//! a blob is named by its verified digest), and unpacked once per image into
//! `DATA/images/rootfs/<manifest hex>` as the lower layer of its containers' overlays.
//!
//! - `POST /v1/images` pulls (a long action: `202` with an operation; the image reconciler does
//!   the pull, so a pull interrupted by a crash is retried at start-up when it needs no
//!   credentials, which are never stored).
//! - `POST /v1/images/import` takes a `docker save` or OCI layout tar as the body.
//! - Deleting an image (refused while a container uses it) runs garbage collection of every blob
//!   and root no image still references.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::model::Status;
use super::operations::{self, OpPhase};
use super::quotas;
use super::reconcile::{Controller, Outcome};
use super::resource_kind::ResourceKind;
use super::{Kind, ProjectCtx, Resource, Site, SiteError};
use crate::image::layout::Image;
use crate::image::store::{BlobStore, Digest};
use crate::image::{ImageError, unpack};
use crate::state::repo;

/// Spec of an image.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// The registry reference it is pulled from (`registry.example:5000/team/app:1.2` or
    /// `…@sha256:<hex>`; Docker Hub names such as `busybox` are not resolved, as sites have no
    /// internet); absent for an imported image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Talk plain HTTP to the registry (a local registry without TLS).
    #[serde(default)]
    pub insecure: bool,
    /// The pull used credentials (they are not stored; a pull interrupted by a restart is then
    /// not retried on its own).
    #[serde(default)]
    pub authenticated: bool,
}

/// Registry credentials for one pull (HTTP basic, or exchanged for a bearer token).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// The registry user.
    pub username: String,
    /// Its password or token; never logged or stored.
    pub password: String,
}

/// The parts of an image's OCI config that containers use, as kept in `status.config`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct ImageRunConfig {
    /// The program and its fixed arguments.
    #[serde(default)]
    pub entrypoint: Vec<String>,
    /// Default arguments (after the entrypoint).
    #[serde(default)]
    pub cmd: Vec<String>,
    /// `KEY=value`.
    #[serde(default)]
    pub env: Vec<String>,
    /// Absolute working directory; empty means `/`.
    #[serde(default)]
    pub working_dir: String,
    /// `uid`, `name`, `uid:gid` or `name:group`; empty means root.
    #[serde(default)]
    pub user: String,
    /// `8080/tcp`, ...
    #[serde(default)]
    pub exposed_ports: Vec<String>,
}

/// One layer, as kept in `status.layers`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LayerRef {
    /// `sha256:<hex>` of the blob as stored.
    pub digest: String,
    /// Whether the blob is gzip-compressed.
    pub gzip: bool,
}

/// What the engine keeps per daemon: the blob store, the credentials of pulls in flight, and the
/// lock that keeps garbage collection from racing the placement of a VM image (blobs are
/// protected by the store's pins instead, see [`crate::image::store::Ingest`]).
#[derive(Default)]
pub struct ImageState {
    store: OnceLock<BlobStore>,
    credentials: Mutex<HashMap<String, Credentials>>,
    /// VM image placement holds it shared (briefly, never across a tenant's I/O); garbage
    /// collection holds it exclusively.
    pub(crate) gc: tokio::sync::RwLock<()>,
}

fn img_err(field: &str) -> impl Fn(ImageError) -> SiteError + '_ {
    move |e| match e {
        ImageError::Io { .. } => SiteError::Image(e),
        other => SiteError::invalid(field, other.to_string()),
    }
}

impl ResourceKind for ImageSpec {
    const KIND: Kind = Kind::Image;
    /// An image stays (409) while a container or an instance runs from it; the image reconciler
    /// collects its unpacked root and unreferenced blobs after the delete.
    const DEPENDENTS: &'static [(Kind, &'static str)] = &[(Kind::Container, "$.image"), (Kind::Instance, "$.image")];
}

impl Site {
    /// The image directory, `DATA/images`.
    pub fn images_dir(&self) -> PathBuf {
        self.config().data_dir.join("images")
    }

    /// The site's blob store (opened once: opening clears its temporary files).
    pub fn blob_store(&self) -> Result<&BlobStore, SiteError> {
        if let Some(s) = self.images().store.get() {
            return Ok(s);
        }
        let s = BlobStore::open(&self.images_dir()).map_err(SiteError::Image)?;
        Ok(self.images().store.get_or_init(|| s))
    }

    /// Start a pull: the image (phase `Pulling`) and its operation in one transaction.
    pub fn create_image_pull(
        &self,
        p: &ProjectCtx,
        name: &str,
        labels: &BTreeMap<String, String>,
        spec: Value,
        creds: Option<Credentials>,
    ) -> Result<Resource, SiteError> {
        let mut s: ImageSpec = serde_json::from_value(spec).map_err(|e| SiteError::invalid("spec", e.to_string()))?;
        let source = s.source.clone().ok_or_else(|| SiteError::invalid("spec.source", "give the registry reference to pull"))?;
        let reference = crate::image::pull::parse_reference(&source).map_err(img_err("spec.source"))?;
        let allowed = &self.config().container.allowed_registries;
        if !allowed.is_empty() && !allowed.iter().any(|r| r == reference.registry()) {
            return Err(SiteError::invalid("spec.source", format!("registry {} is not in container.allowed_registries", reference.registry())));
        }
        s.authenticated = creds.is_some();
        let spec = serde_json::to_value(&s)?;
        // The image and its operation commit together, so the reconciler always finds the
        // operation to advance. Credentials are kept in memory, keyed by the new id, before the
        // commit wakes the reconciler.
        self.create_then(
            Kind::Image,
            Some(p),
            name,
            labels,
            None,
            |_| Ok((spec, Status::phase("Pulling"))),
            |tx, row, evs| {
                if let Some(c) = creds
                    && let Ok(mut m) = self.images().credentials.lock()
                {
                    m.insert(row.id.clone(), c);
                }
                Ok(Some(operations::create_in_tx(tx, evs, Some(p), "pull", Kind::Image, &row.id, name)?))
            },
        )
    }

    /// Import an image archive (a `docker save` tar or a tar of an OCI layout) from `archive`, a
    /// file the caller wrote. `reference` picks a tag when the archive holds several. Errors: a
    /// hostile or malformed archive (422 naming `body`), a taken name (409).
    pub fn import_image(
        &self,
        p: &ProjectCtx,
        name: &str,
        labels: &BTreeMap<String, String>,
        archive: &Path,
        reference: Option<&str>,
    ) -> Result<Resource, SiteError> {
        super::model::validate_name("name", name)?;
        // No lock is held across the archive (a tenant's bytes): the ingest pins the blobs it
        // stores until the row naming them has committed.
        let ingest = self.blob_store()?.ingest();
        let scratch = self.images_dir().join(format!("scratch-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&scratch).map_err(SiteError::io_doing(format!("creating {}", scratch.display())))?;
        let result = std::fs::File::open(archive)
            .map_err(SiteError::io_doing("opening the upload"))
            .and_then(|f| crate::image::layout::import_archive(&ingest, f, &scratch, reference).map_err(img_err("body")));
        let _ = std::fs::remove_dir_all(&scratch);
        let img = result?;
        let spec = serde_json::to_value(ImageSpec { source: None, insecure: false, authenticated: false })?;
        let created = self.create(Kind::Image, Some(p), name, labels, &spec, &ready_status(self, &img, None)?, None);
        drop(ingest);
        created
    }

    /// The unpacked root of a ready image (made once, atomically: unpacked into a temporary
    /// directory, then renamed). The unpack's budget is the smaller of 16 GiB and what the
    /// project's `image_mib` quota leaves beside its other images; the bytes it took are recorded
    /// in the image's `status.unpacked_bytes`, and a root another image of the digest made is
    /// charged to this one too. Errors: 422 `quota_exceeded` (`quotas.image_mib`), image errors.
    pub fn image_root(&self, image: &crate::state::ResourceRow) -> Result<(PathBuf, ImageRunConfig), SiteError> {
        let st: Status = serde_json::from_str(&image.status)?;
        if st.phase != "Ready" {
            return Err(SiteError::Conflict(format!("image {} is {}", image.name, st.phase)));
        }
        let digest = Digest::parse(st.extra.get("digest").and_then(Value::as_str).unwrap_or_default())
            .map_err(|e| SiteError::Corrupt(format!("the digest of image {}: {e}", image.name)))?;
        let layers: Vec<LayerRef> = serde_json::from_value(st.extra.get("layers").cloned().unwrap_or_default()).unwrap_or_default();
        let config: ImageRunConfig = serde_json::from_value(st.extra.get("config").cloned().unwrap_or_default()).unwrap_or_default();
        let root = self.images_dir().join("rootfs").join(digest.hex());
        let room = self.read(|c| quotas::image_room(c, image))?;
        let over = || SiteError::QuotaExceeded { kind: quotas::IMAGE_MIB_QUOTA.into(), limit: room.limit_mib };
        if root.is_dir() {
            // Shared with another image of the same digest: this one counts it too.
            if room.recorded.is_none()
                && let Some(bytes) = room.shared
            {
                if room.left.is_some_and(|left| bytes > left) {
                    return Err(over());
                }
                self.record_unpacked(&image.id, bytes)?;
            }
            return Ok((root, config));
        }
        let tmp = self.images_dir().join("rootfs").join(format!(".tmp-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&tmp).map_err(SiteError::io_doing(format!("creating {}", tmp.display())))?;
        let store = self.blob_store()?;
        // One budget for the whole image (every layer together), within the project's quota.
        let mut limits = unpack::Limits::default();
        let by_quota = room.left.filter(|left| *left < limits.max_bytes);
        limits.max_bytes = by_quota.unwrap_or(limits.max_bytes);
        let parsed: Result<Vec<(Digest, bool)>, ImageError> = layers.iter().map(|l| Ok((Digest::parse(&l.digest)?, l.gzip))).collect();
        let bytes = match parsed.and_then(|ls| crate::image::layout::unpack_layers(ls, store, &tmp, limits)) {
            Ok(stats) => stats.bytes,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(match e {
                    ImageError::TooLarge { limit } if Some(limit) == by_quota => over(),
                    e => SiteError::Image(e),
                });
            }
        };
        match std::fs::rename(&tmp, &root) {
            Ok(()) => {}
            Err(_) if root.is_dir() => {
                let _ = std::fs::remove_dir_all(&tmp);
            }
            Err(e) => return Err(SiteError::io("placing the image root", e)),
        }
        self.record_unpacked(&image.id, bytes)?;
        Ok((root, config))
    }

    /// Record in image `id`'s status the bytes its unpacked root holds (its `image_mib` charge).
    fn record_unpacked(&self, id: &str, bytes: u64) -> Result<(), SiteError> {
        self.set_status(id, |s, _| {
            s.extra.insert(quotas::UNPACKED_BYTES.into(), bytes.into());
        })?;
        Ok(())
    }

    /// Remove every blob and unpacked root no image references, and leftovers of interrupted
    /// imports and unpacks (all of them when `all`, at start-up; else those over an hour old).
    /// Returns the number of blobs removed.
    pub fn collect_image_garbage(&self, all: bool) -> Result<usize, SiteError> {
        let _gc = self.images().gc.blocking_write();
        // Begun before the rows are read: a blob an ingest pins from here on is kept.
        let collection = self.blob_store()?.collect();
        let rows = self.read(|c| Ok(repo::list(c, Kind::Image.as_str(), None, None, usize::MAX >> 1)?))?;
        let mut keep = BTreeSet::new();
        let mut roots = BTreeSet::new();
        for r in &rows {
            let st: Status = serde_json::from_str(&r.status).unwrap_or_default();
            for b in st.extra.get("blobs").and_then(Value::as_array).into_iter().flatten() {
                if let Some(d) = b.as_str().and_then(|s| Digest::parse(s).ok()) {
                    keep.insert(d);
                }
            }
            if let Some(d) = st.extra.get("digest").and_then(Value::as_str).and_then(|s| Digest::parse(s).ok()) {
                roots.insert(d.hex().to_string());
            }
        }
        // A pull in flight has no blobs recorded yet: keep everything while one runs.
        if rows.iter().any(|r| serde_json::from_str::<Status>(&r.status).is_ok_and(|s| s.phase == "Pulling")) {
            return Ok(0);
        }
        self.collect_vm_image_garbage(&rows.iter().map(|r| r.id.clone()).collect(), all);
        let removed = collection.retain(&keep).map_err(SiteError::Image)?;
        // Temporary entries of an unpack, import or upload in progress are left alone while young;
        // at start-up (`all`) nothing is in progress.
        let stale = |e: &std::fs::DirEntry| {
            all || e.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).is_some_and(|age| age > std::time::Duration::from_secs(3600))
        };
        for e in std::fs::read_dir(self.images_dir().join("rootfs")).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let temporary = name.starts_with(".tmp-");
            if (temporary && stale(&e)) || (!temporary && !roots.contains(&name)) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        for e in std::fs::read_dir(self.images_dir()).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if (name.starts_with("scratch-") || name.starts_with("upload-")) && stale(&e) {
                let _ = std::fs::remove_dir_all(e.path()).or_else(|_| std::fs::remove_file(e.path()));
            }
        }
        Ok(removed)
    }
}

/// The `Ready` status of an image in the store.
fn ready_status(site: &Site, img: &Image, resolved: Option<&str>) -> Result<Status, SiteError> {
    let store = site.blob_store()?;
    let cfg = img.config.config().clone().unwrap_or_default();
    let run = ImageRunConfig {
        entrypoint: cfg.entrypoint().clone().unwrap_or_default(),
        cmd: cfg.cmd().clone().unwrap_or_default(),
        env: cfg.env().clone().unwrap_or_default(),
        working_dir: cfg.working_dir().clone().unwrap_or_default(),
        user: cfg.user().clone().unwrap_or_default(),
        exposed_ports: cfg.exposed_ports().clone().unwrap_or_default(),
    };
    // The config's own digest is in the manifest; read it back from there.
    let manifest = oci_spec::image::ImageManifest::from_reader(store.open_blob(&img.manifest).map_err(SiteError::Image)?)
        .map_err(|e| SiteError::Corrupt(format!("a manifest: {e}")))?;
    let mut blobs = vec![img.manifest.to_string(), manifest.config().digest().to_string()];
    let mut size = 0u64;
    for (d, _) in &img.layers {
        blobs.push(d.to_string());
        size += std::fs::metadata(store.path(d)).map(|m| m.len()).unwrap_or(0);
    }
    let mut st = Status::phase("Ready");
    st.set_condition("Ready", true, "Stored", "every blob verified");
    st.extra.insert("digest".into(), img.manifest.to_string().into());
    if let Some(r) = resolved {
        st.extra.insert("resolved".into(), r.into());
    }
    st.extra.insert("size_bytes".into(), size.into());
    st.extra.insert("layers".into(), json!(img.layers.iter().map(|(d, g)| LayerRef { digest: d.to_string(), gzip: *g }).collect::<Vec<_>>()));
    st.extra.insert("blobs".into(), json!(blobs));
    st.extra.insert("config".into(), serde_json::to_value(run)?);
    st.extra.insert("os".into(), img.config.os().to_string().into());
    st.extra.insert("architecture".into(), img.config.architecture().to_string().into());
    Ok(st)
}

/// The image reconciler: performs pulls, and collects garbage after deletions.
pub struct ImageController;

impl Controller for ImageController {
    fn kind(&self) -> Kind {
        Kind::Image
    }

    /// Pulls wait on registries a tenant chose: four run at once, fairly across projects, so a
    /// stalled registry holds only its own pulls. (Garbage collection takes the store's lock.)
    fn workers(&self) -> usize {
        4
    }

    async fn reconcile(&self, site: &Site, id: &str) -> Result<Outcome, SiteError> {
        let id = id.to_string();
        let row = site
            .run({
                let id = id.clone();
                move |s| s.read(|c| Ok(repo::get(c, &id)?))
            })
            .await?;
        let Some(row) = row else {
            site.run(|s| s.collect_image_garbage(false)).await?;
            return Ok(Outcome::Done);
        };
        let st: Status = serde_json::from_str(&row.status)?;
        if st.phase != "Pulling" {
            return Ok(Outcome::Done);
        }
        let spec: ImageSpec = serde_json::from_str(&row.spec)?;
        // Kept until the pull ends for good: a retry after a host error still has them.
        let creds = site.images().credentials.lock().ok().and_then(|m| m.get(&id).cloned());
        let op = site
            .run({
                let id = id.clone();
                move |s| s.read(|c| operations::pending_for(c, &id))
            })
            .await?
            .map(|r| r.id);
        let Some(source) = spec.source.clone() else { return Ok(Outcome::Done) };
        if spec.authenticated && creds.is_none() {
            fail_pull(site, &id, op.as_deref(), "the pull was interrupted and its credentials are not kept; delete the image and pull it again").await?;
            return Ok(Outcome::Done);
        }
        // Blobs of this project's own images; the shared store's others must come from the registry.
        let project = row.project_id.clone();
        let known = site.read(move |c| {
            let rows = repo::list(c, Kind::Image.as_str(), project.as_deref(), None, usize::MAX >> 1)?;
            Ok(rows
                .iter()
                .filter_map(|r| serde_json::from_str::<Status>(&r.status).ok())
                .flat_map(|s| s.extra.get("blobs").and_then(Value::as_array).cloned().unwrap_or_default())
                .filter_map(|b| b.as_str().and_then(|s| Digest::parse(s).ok()))
                .collect::<BTreeSet<Digest>>())
        })?;
        let opts = crate::image::pull::PullOptions {
            insecure: spec.insecure,
            username: creds.as_ref().map(|c| c.username.clone()),
            password: creds.map(|c| c.password),
            max_layer_bytes: 16 << 30,
            known: Some(known),
            egress: crate::net::egress::site_policy(),
        };
        if let Some(op) = &op {
            let (s, op) = (site.clone(), op.clone());
            site.run(move |_| operations::set_progress(&s, &op, OpPhase::Running, 0, "pulling")).await?;
        }
        let progress_site = site.clone();
        let progress_op = op.clone();
        let last = std::sync::atomic::AtomicU8::new(0);
        let progress = move |done: u64, total: u64| {
            let pct = done.saturating_mul(100).checked_div(total).unwrap_or(0).min(99) as u8;
            if let Some(op) = &progress_op
                && pct >= last.load(std::sync::atomic::Ordering::Relaxed) + 10
            {
                last.store(pct, std::sync::atomic::Ordering::Relaxed);
                // A SQLite write from inside the async pull: tell the runtime this thread blocks.
                tokio::task::block_in_place(|| {
                    let _ = operations::set_progress(&progress_site, op, OpPhase::Running, pct, &format!("{done} of {total} bytes"));
                });
            }
        };
        // No lock across the registry's I/O: the pull pins its blobs, and while the image is
        // `Pulling` garbage collection removes nothing.
        let pulled = crate::image::pull::pull(site.blob_store()?, &source, &opts, &progress).await;
        if !matches!(pulled, Err(ImageError::Io { .. }))
            && let Ok(mut m) = site.images().credentials.lock()
        {
            m.remove(&id);
        }
        match pulled {
            Ok((img, resolved)) => {
                let id2 = id.clone();
                site.run(move |s| {
                    let ready = ready_status(s, &img, Some(&resolved))?;
                    s.set_status(&id2, |st, row| {
                        *st = Status { observed_generation: row.generation, ..ready };
                    })?;
                    if let Some(op) = &op {
                        operations::set_progress(s, op, OpPhase::Succeeded, 100, "pulled")?;
                    }
                    Ok(())
                })
                .await?;
            }
            Err(ImageError::Io { what, source }) => return Err(SiteError::Io { what, source }),
            // Fixed texts: nothing the registry (or an internal service) sent reaches the status.
            Err(e) => fail_pull(site, &id, op.as_deref(), &crate::image::pull::status_text(&e)).await?,
        }
        Ok(Outcome::Done)
    }
}

async fn fail_pull(site: &Site, id: &str, op: Option<&str>, message: &str) -> Result<(), SiteError> {
    let (id, op, message) = (id.to_string(), op.map(str::to_string), message.to_string());
    site.run(move |s| {
        s.set_status(&id, |st, _| {
            st.phase = "Failed".into();
            st.set_condition("Ready", false, "PullFailed", &message);
            st.extra.insert("message".into(), message.clone().into());
        })?;
        if let Some(op) = op {
            operations::fail(s, &op, "pull_failed", &message)?;
        }
        Ok(())
    })
    .await
}
