//! Importing an OCI image layout directory (image-spec "image-layout": `oci-layout`,
//! `index.json`, `blobs/sha256/…`) into the blob store, and unpacking an imported image's layers
//! into a root filesystem. Manifests, indexes and configs are parsed with the `oci-spec` crate.

use std::path::Path;

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType};

use super::ImageError;
use super::store::{Digest, Ingest};
use super::unpack::{self, Limits, Stats};

/// The annotation that names a manifest of an index (a tag).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Largest manifest, index or config accepted (they are small JSON documents).
const MAX_JSON: u64 = 4 << 20;
/// Largest layer blob accepted.
const MAX_LAYER: u64 = 16 << 30;

/// An image in the store: its manifest's digest, its config, and its layers in order.
#[derive(Debug, Clone)]
pub struct Image {
    pub manifest: Digest,
    pub config: ImageConfiguration,
    /// (digest, gzip-compressed) of each layer, bottom first.
    pub layers: Vec<(Digest, bool)>,
}

fn bad(m: impl Into<String>) -> ImageError {
    ImageError::BadArchive(m.into())
}

/// Copy one blob of the layout into the store, verifying its digest. The blob is always read
/// from the layout, even when the store holds it already: an archive must carry every blob it
/// names, so a tenant can neither use nor detect blobs of other projects' images.
fn copy_blob(store: &Ingest, dir: &Path, d: &Descriptor, max: u64) -> Result<Digest, ImageError> {
    let digest = Digest::parse(d.digest().as_ref())?;
    let mut f = open_inside(dir, &format!("blobs/sha256/{}", digest.hex())).map_err(|_| ImageError::MissingBlob(digest.to_string()))?;
    store.put(&mut f, Some(&digest), max)?;
    Ok(digest)
}

fn is_layer(m: &MediaType) -> Result<bool, ImageError> {
    match m {
        MediaType::ImageLayer => Ok(false),
        MediaType::ImageLayerGzip => Ok(true),
        MediaType::Other(s) if s == "application/vnd.docker.image.rootfs.diff.tar.gzip" => Ok(true),
        other => Err(ImageError::Unsupported(format!("layer media type {other}"))),
    }
}

/// Import the image named `reference` (the `org.opencontainers.image.ref.name` annotation; the
/// only manifest when `None`) from the layout at `dir`. Nested indexes (multi-platform images)
/// resolve to linux/amd64. Every blob is verified on the way in.
pub fn import(store: &Ingest, dir: &Path, reference: Option<&str>) -> Result<Image, ImageError> {
    let index_path = dir.join("index.json");
    let len = std::fs::metadata(&index_path).map_err(|_| bad("index.json is missing"))?.len();
    if len > MAX_JSON {
        return Err(ImageError::TooLarge { limit: MAX_JSON });
    }
    let index = ImageIndex::from_file(&index_path).map_err(|e| bad(format!("index.json: {e}")))?;
    let named = |d: &&Descriptor| match reference {
        Some(r) => d.annotations().as_ref().and_then(|a| a.get(REF_NAME)).is_some_and(|n| n == r),
        None => true,
    };
    let candidates: Vec<&Descriptor> = index.manifests().iter().filter(named).collect();
    let mut desc = match candidates.as_slice() {
        [one] => (*one).clone(),
        [] => return Err(bad(format!("no image {} in the layout", reference.unwrap_or("at all")))),
        _ => return Err(bad("the layout holds several images: name one")),
    };
    if *desc.media_type() == MediaType::ImageIndex {
        let d = copy_blob(store, dir, &desc, MAX_JSON)?;
        let nested = ImageIndex::from_reader(store.open_blob(&d)?).map_err(|e| bad(format!("nested index: {e}")))?;
        desc = nested
            .manifests()
            .iter()
            .find(|m| m.platform().as_ref().is_some_and(|p| p.os().to_string() == "linux" && p.architecture().to_string() == "amd64"))
            .cloned()
            .ok_or_else(|| bad("the index has no linux/amd64 image"))?;
    }
    let manifest_digest = copy_blob(store, dir, &desc, MAX_JSON)?;
    let manifest = ImageManifest::from_reader(store.open_blob(&manifest_digest)?).map_err(|e| bad(format!("manifest: {e}")))?;
    let config_digest = copy_blob(store, dir, manifest.config(), MAX_JSON)?;
    let config = ImageConfiguration::from_reader(store.open_blob(&config_digest)?).map_err(|e| bad(format!("config: {e}")))?;
    let mut layers = Vec::new();
    for l in manifest.layers() {
        let gzip = is_layer(l.media_type())?;
        layers.push((copy_blob(store, dir, l, MAX_LAYER)?, gzip));
    }
    Ok(Image { manifest: manifest_digest, config, layers })
}

/// Unpack every layer of `image`, bottom first, onto `root`. `limits` bound the whole image,
/// not each layer: a decompression bomb split over many layers stops at the same total.
pub fn unpack_image(store: &super::store::BlobStore, image: &Image, root: &Path, limits: Limits) -> Result<Stats, ImageError> {
    unpack_layers(image.layers.iter().map(|(d, gzip)| (d.clone(), *gzip)), store, root, limits)
}

/// Unpack `layers` (digest, gzip), bottom first, onto `root`, within one budget `limits` for
/// them all. Errors: [`ImageError::TooLarge`] naming the whole budget.
pub fn unpack_layers(
    layers: impl IntoIterator<Item = (Digest, bool)>,
    store: &super::store::BlobStore,
    root: &Path,
    limits: Limits,
) -> Result<Stats, ImageError> {
    let mut total = Stats::default();
    for (d, gzip) in layers {
        let left = Limits { max_bytes: limits.max_bytes - total.bytes, max_entries: limits.max_entries - total.entries, ..limits };
        let s = unpack::unpack(store.open_blob(&d)?, gzip, root, left).map_err(|e| match e {
            ImageError::TooLarge { limit } if limit == left.max_bytes => ImageError::TooLarge { limit: limits.max_bytes },
            ImageError::TooLarge { limit } if limit == left.max_entries => ImageError::TooLarge { limit: limits.max_entries },
            other => other,
        })?;
        total.entries += s.entries;
        total.bytes += s.bytes;
        total.whiteouts += s.whiteouts;
    }
    Ok(total)
}

/// One image of a `docker save` archive's `manifest.json`.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SavedImage {
    config: String,
    #[serde(default)]
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

/// Open a file of an unpacked archive by its archive-relative name: inside `root`, reached
/// without symlinks, not itself a symlink, and a regular file. It is opened without blocking, so
/// a FIFO or a device never hangs the import; it is refused after `fstat`.
fn open_inside(root: &Path, name: &str) -> Result<std::fs::File, ImageError> {
    use std::os::unix::fs::OpenOptionsExt;
    let rel = unpack::clean(Path::new(name))?;
    let full = unpack::parents(root, &rel, false)?;
    let f = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(&full)
        .map_err(|_| bad(format!("{name}: missing, or a symlink")))?;
    if !f.metadata().is_ok_and(|m| m.is_file()) {
        return Err(bad(format!("{name}: not a regular file")));
    }
    Ok(f)
}

/// Whether a stored blob starts with the gzip magic bytes.
fn gzipped(store: &Ingest, d: &Digest) -> Result<bool, ImageError> {
    use std::io::Read;
    let mut magic = [0u8; 2];
    let n = store.open_blob(d)?.read(&mut magic).map_err(|e| ImageError::Io { what: "reading a layer".into(), source: e })?;
    Ok(n == 2 && magic == [0x1f, 0x8b])
}

/// Import an image archive: a `docker save` tar (its `manifest.json`; `reference` picks a repo
/// tag, else the only image) or a tar of an OCI layout. The archive is unpacked into `scratch`
/// with the same hostile-archive rules as layers, then its blobs enter the store verified. A
/// `docker save` image gets an OCI manifest written for it. Only regular files, directories and
/// links may be in the archive (a FIFO or a device is refused with [`ImageError::BadArchive`]).
pub fn import_archive(store: &Ingest, archive: impl std::io::Read, scratch: &Path, reference: Option<&str>) -> Result<Image, ImageError> {
    unpack::unpack(archive, false, scratch, Limits { special_files: false, ..Limits::default() })?;
    let Ok(mut f) = open_inside(scratch, "manifest.json") else {
        return import(store, scratch, reference);
    };
    let saved: Vec<SavedImage> = serde_json::from_reader(&mut f).map_err(|e| bad(format!("manifest.json: {e}")))?;
    let picked: Vec<&SavedImage> = saved.iter().filter(|s| reference.is_none_or(|r| s.repo_tags.iter().any(|t| t == r))).collect();
    let [img] = picked.as_slice() else {
        return Err(bad(format!("{} images match {}", picked.len(), reference.unwrap_or("(no tag given)"))));
    };
    let (config_digest, config_size) = store.put(&mut open_inside(scratch, &img.config)?, None, MAX_JSON)?;
    let config = ImageConfiguration::from_reader(store.open_blob(&config_digest)?).map_err(|e| bad(format!("config: {e}")))?;
    let mut layers = Vec::new();
    let mut descriptors = Vec::new();
    for name in &img.layers {
        let (d, size) = store.put(&mut open_inside(scratch, name)?, None, MAX_LAYER)?;
        let gzip = gzipped(store, &d)?;
        let media = if gzip { "application/vnd.oci.image.layer.v1.tar+gzip" } else { "application/vnd.oci.image.layer.v1.tar" };
        descriptors.push(serde_json::json!({"mediaType": media, "digest": d.as_str(), "size": size}));
        layers.push((d, gzip));
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.as_str(), "size": config_size},
        "layers": descriptors,
    });
    let bytes = serde_json::to_vec(&manifest).map_err(|e| bad(e.to_string()))?;
    let (manifest_digest, _) = store.put(&mut &bytes[..], None, MAX_JSON)?;
    Ok(Image { manifest: manifest_digest, config, layers })
}
