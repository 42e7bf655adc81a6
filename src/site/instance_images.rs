//! VM images: a kernel, an optional initramfs and a raw root disk, imported from a directory
//! described by its `image.json` (as `images/vm/` builds it) and kept in
//! `DATA/images/vm/<image id>/` (`kernel`, `initrd`, `rootfs.img`, `image.json`). They are
//! image resources like OCI images, told apart by `status.format = "vm"`; instances boot them.
//!
//! The directory arrives as a tar (`POST /v1/images/import-vm`, or `cloudlet image import --vm
//! DIR`, which tars it): the archive is unpacked with the OCI layer unpacker's defences
//! ([`crate::image::unpack`]), then every path of the manifest is checked as hostile input:
//! relative, without `..`, reaching (through symlinks inside the directory only) a regular,
//! non-empty file within its size limit. Each failure is 422 naming `manifest.<field>`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::images::ImageSpec;
use super::model::{self, Status};
use super::{Kind, ProjectCtx, Resource, Site, SiteError};
use crate::state::ResourceRow;

/// Largest kernel accepted, bytes.
pub const MAX_KERNEL_BYTES: u64 = 128 << 20;
/// Largest initramfs accepted, bytes.
pub const MAX_INITRD_BYTES: u64 = 1 << 30;
/// Largest `image.json`, bytes.
const MAX_MANIFEST_BYTES: u64 = 64 << 10;
/// Longest kernel command line (Linux x86's `COMMAND_LINE_SIZE` is 2048 with the NUL).
pub const MAX_CMDLINE: usize = 2047;

/// The manifest of a VM image directory (`image.json`). Paths are relative to the directory.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VmManifest {
    /// The image's default name (`debian-12`).
    pub name: String,
    /// `linux` (informational).
    #[serde(default)]
    pub os: String,
    /// `x86_64` (or `amd64`); others are refused.
    #[serde(default)]
    pub arch: String,
    /// The kernel (a bzImage).
    pub kernel: String,
    /// The initramfs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd: Option<String>,
    /// The root disk, a raw image (the instance's `vda`).
    pub rootfs: String,
    /// The kernel command line the image needs (the daemon adds the console and the instance's
    /// `cmdline_extra`).
    #[serde(default)]
    pub cmdline: String,
}

/// The files of a ready VM image, for the instance supervisor.
#[derive(Debug, Clone, PartialEq)]
pub struct VmImageFiles {
    /// The kernel (a bzImage).
    pub kernel: PathBuf,
    /// The initramfs, when the image has one.
    pub initrd: Option<PathBuf>,
    /// The root disk the instance's `root.img` is copied from.
    pub rootfs: PathBuf,
    /// The image's kernel command line.
    pub cmdline: String,
}

fn internal(what: &str) -> impl FnOnce(std::io::Error) -> SiteError + '_ {
    SiteError::io_doing(what)
}

/// Check a manifest path under `root` (the unpacked directory) and return the file it reaches.
/// Errors (422 naming `field`): absolute, `..`, missing, out of the directory through a symlink,
/// not a regular file, empty, or over `limit` bytes.
pub fn resolve_member(root: &Path, rel: &str, field: &str, limit: u64) -> Result<PathBuf, SiteError> {
    let bad = |m: String| SiteError::invalid(field, m);
    if rel.is_empty() || rel.contains('\0') {
        return Err(bad("give a path relative to the image directory".into()));
    }
    let p = Path::new(rel);
    if p.is_absolute() {
        return Err(bad(format!("{rel:?} is absolute; paths are relative to the image directory")));
    }
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(bad(format!("{rel:?} may not contain ..")));
    }
    let root = root.canonicalize().map_err(internal("resolving the image directory"))?;
    let full = root.join(p).canonicalize().map_err(|_| bad(format!("{rel:?} is not in the image directory")))?;
    if !full.starts_with(&root) {
        return Err(bad(format!("{rel:?} leads out of the image directory (a symlink)")));
    }
    let m = std::fs::metadata(&full).map_err(|_| bad(format!("{rel:?} is not in the image directory")))?;
    if !m.is_file() {
        return Err(bad(format!("{rel:?} is not a regular file")));
    }
    if m.len() == 0 {
        return Err(bad(format!("{rel:?} is empty")));
    }
    if m.len() > limit {
        return Err(bad(format!("{rel:?} is {} bytes, over the limit of {limit}", m.len())));
    }
    Ok(full)
}

/// SHA-256 of a file, hex.
fn sha256_file(path: &Path) -> Result<String, SiteError> {
    use sha2::Digest;
    let mut f = std::fs::File::open(path).map_err(internal("opening an image file"))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(internal("reading an image file"))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Parse and check `image.json` of the unpacked directory `root`.
fn read_manifest(root: &Path) -> Result<VmManifest, SiteError> {
    let path = root.join("image.json");
    let m = std::fs::symlink_metadata(&path).map_err(|_| SiteError::invalid("manifest", "the directory has no image.json"))?;
    if !m.is_file() || m.len() > MAX_MANIFEST_BYTES {
        return Err(SiteError::invalid("manifest", "image.json must be a regular file of at most 64 KiB"));
    }
    let text = std::fs::read(&path).map_err(internal("reading image.json"))?;
    let mut de = serde_json::Deserializer::from_slice(&text);
    let man: VmManifest = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let p = e.path().to_string();
        let field = if p == "." || p.is_empty() { "manifest".to_string() } else { format!("manifest.{p}") };
        SiteError::invalid(field, e.inner().to_string())
    })?;
    if !man.arch.is_empty() && man.arch != "x86_64" && man.arch != "amd64" {
        return Err(SiteError::invalid("manifest.arch", format!("{:?}: this site runs x86_64 guests only", man.arch)));
    }
    if man.cmdline.len() > MAX_CMDLINE || man.cmdline.chars().any(|c| c.is_control()) {
        return Err(SiteError::invalid("manifest.cmdline", format!("at most {MAX_CMDLINE} printable characters")));
    }
    Ok(man)
}

impl Site {
    /// The directory of VM images, `DATA/images/vm`.
    pub fn vm_images_dir(&self) -> PathBuf {
        self.images_dir().join("vm")
    }

    /// Import a VM image from `archive` (a tar of a directory holding `image.json`), named `name`
    /// or the manifest's name. Errors: 422 naming `body` (a hostile or malformed archive),
    /// `manifest` or `manifest.<field>` (see the module docs), `name`; 409 for a taken name.
    pub fn import_vm_image(&self, p: &ProjectCtx, name: Option<&str>, labels: &BTreeMap<String, String>, archive: &Path) -> Result<Resource, SiteError> {
        if let Some(n) = name {
            model::validate_name("name", n)?;
        }
        let scratch = self.images_dir().join(format!("scratch-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&scratch).map_err(internal("creating the scratch directory"))?;
        let staged = self.vm_images_dir().join(format!(".tmp-{}", ulid::Ulid::new()));
        let result = self.stage_vm_image(archive, &scratch, &staged);
        let _ = std::fs::remove_dir_all(&scratch);
        let (man, files) = match result {
            Ok(x) => x,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staged);
                return Err(e);
            }
        };
        let name = match name {
            Some(n) => n.to_string(),
            None => {
                model::validate_name("manifest.name", &man.name)?;
                man.name.clone()
            }
        };
        let mut st = Status::phase("Ready");
        st.set_condition("Ready", true, "Imported", "every file checked and hashed");
        st.extra.insert("format".into(), "vm".into());
        st.extra.insert("os".into(), man.os.clone().into());
        st.extra.insert("architecture".into(), "amd64".into());
        st.extra.insert("cmdline".into(), man.cmdline.clone().into());
        st.extra.insert("files".into(), json!(files));
        st.extra.insert("size_bytes".into(), files.values().map(|f| f["size_bytes"].as_u64().unwrap_or(0)).sum::<u64>().into());
        let spec = serde_json::to_value(ImageSpec { source: None, insecure: false, authenticated: false })?;
        let dir = self.vm_images_dir();
        // Held only while the row and its directory appear together (local, bounded work): the
        // staging above ran without it, its `.tmp-` directory kept by its age.
        let gc = self.images().gc.blocking_read();
        let out = self.create_then(
            Kind::Image,
            Some(p),
            &name,
            labels,
            None,
            |_| Ok((spec, st)),
            |_, row, _| {
                // Placed inside the transaction: a failed commit leaves a directory without a row,
                // which garbage collection removes.
                std::fs::rename(&staged, dir.join(&row.id)).map_err(internal("placing the VM image"))?;
                Ok(None)
            },
        );
        drop(gc);
        if out.is_err() {
            let _ = std::fs::remove_dir_all(&staged);
        }
        let r = out?;
        self.set_status(&r.id, |s, _| {
            s.extra.insert("dir".into(), dir.join(&r.id).display().to_string().into());
        })?;
        self.get(Kind::Image, Some(p), &r.id)
    }

    /// Unpack, check and hash the image into `staged` (`kernel`, `initrd`, `rootfs.img`,
    /// `image.json`). Returns the manifest and `{field: {sha256, size_bytes}}`.
    fn stage_vm_image(&self, archive: &Path, scratch: &Path, staged: &Path) -> Result<(VmManifest, BTreeMap<String, Value>), SiteError> {
        let max = self.config().container.max_import_bytes;
        let f = std::fs::File::open(archive).map_err(internal("opening the upload"))?;
        crate::image::unpack::unpack(f, false, scratch, crate::image::unpack::Limits { max_bytes: max, max_entries: 100_000, special_files: false }).map_err(
            |e| match e {
                crate::image::ImageError::Io { .. } => SiteError::Image(e),
                other => SiteError::invalid("body", other.to_string()),
            },
        )?;
        let man = read_manifest(scratch)?;
        let mut members = vec![("kernel", man.kernel.clone(), MAX_KERNEL_BYTES, "kernel")];
        if let Some(i) = &man.initrd {
            members.push(("initrd", i.clone(), MAX_INITRD_BYTES, "initrd"));
        }
        members.push(("rootfs", man.rootfs.clone(), max, "rootfs.img"));
        let resolved: Vec<(&str, PathBuf, &str)> = members
            .iter()
            .map(|(field, rel, limit, dest)| Ok((*field, resolve_member(scratch, rel, &format!("manifest.{field}"), *limit)?, *dest)))
            .collect::<Result<_, SiteError>>()?;
        std::fs::create_dir_all(staged).map_err(internal("creating the image directory"))?;
        let mut files = BTreeMap::new();
        for (field, src, dest) in resolved {
            let to = staged.join(dest);
            if std::fs::rename(&src, &to).is_err() {
                // The same file named twice (or a cross-device upload dir): copy instead.
                std::fs::copy(&src, &to).map_err(|_| SiteError::invalid(format!("manifest.{field}"), "names a file another field already took"))?;
            }
            let size = std::fs::metadata(&to).map_err(internal("stat an image file"))?.len();
            let sha = sha256_file(&to)?;
            std::fs::File::open(&to).and_then(|f| f.sync_all()).map_err(internal("syncing an image file"))?;
            files.insert(field.to_string(), json!({"path": dest, "sha256": sha, "size_bytes": size}));
        }
        let stored = VmManifest { kernel: "kernel".into(), initrd: man.initrd.as_ref().map(|_| "initrd".into()), rootfs: "rootfs.img".into(), ..man.clone() };
        std::fs::write(staged.join("image.json"), serde_json::to_vec_pretty(&stored)?).map_err(internal("writing image.json"))?;
        std::fs::File::open(staged).and_then(|d| d.sync_all()).map_err(internal("syncing the image directory"))?;
        Ok((man, files))
    }

    /// The files of a VM image row. Errors: 422 naming `field` when the image is not a ready VM
    /// image (an OCI image, say).
    pub fn vm_image_files(&self, image: &ResourceRow, field: &str) -> Result<VmImageFiles, SiteError> {
        let st: Status = serde_json::from_str(&image.status).unwrap_or_default();
        if !is_vm_image(image) {
            return Err(SiteError::invalid(field, format!("image {} is not a VM image (import one with cloudlet image import --vm)", image.name)));
        }
        if st.phase != "Ready" {
            return Err(SiteError::invalid(field, format!("image {} is {}", image.name, st.phase)));
        }
        let dir = self.vm_images_dir().join(&image.id);
        let has_initrd = st.extra.get("files").and_then(|f| f.get("initrd")).is_some();
        Ok(VmImageFiles {
            kernel: dir.join("kernel"),
            initrd: has_initrd.then(|| dir.join("initrd")),
            rootfs: dir.join("rootfs.img"),
            cmdline: st.extra.get("cmdline").and_then(Value::as_str).unwrap_or_default().to_string(),
        })
    }

    /// Remove VM image directories no image row has (deleted images, failed commits), and
    /// staging leftovers (all when `all`, else those over an hour old).
    pub(crate) fn collect_vm_image_garbage(&self, ids: &std::collections::BTreeSet<String>, all: bool) {
        for e in std::fs::read_dir(self.vm_images_dir()).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let old = all || e.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).is_some_and(|a| a.as_secs() > 3600);
            let gone = if name.starts_with(".tmp-") { old } else { !ids.contains(&name) };
            if gone {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Whether an image row is a VM image (`status.format = "vm"`).
pub fn is_vm_image(image: &ResourceRow) -> bool {
    serde_json::from_str::<Status>(&image.status).is_ok_and(|s| s.extra.get("format").and_then(Value::as_str) == Some("vm"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_manifest_paths_are_refused_naming_the_field() {
        let t = tempfile::tempdir().expect("tmp");
        let root = t.path().join("img");
        std::fs::create_dir_all(root.join("boot")).expect("dir");
        std::fs::write(root.join("boot/vmlinuz-6.1"), b"kernel").expect("write");
        std::os::unix::fs::symlink("vmlinuz-6.1", root.join("boot/vmlinuz")).expect("symlink");
        std::fs::write(t.path().join("outside"), b"secret").expect("write");
        std::os::unix::fs::symlink(t.path().join("outside"), root.join("escape")).expect("symlink");
        std::fs::write(root.join("empty"), b"").expect("write");
        let ok = resolve_member(&root, "boot/vmlinuz", "manifest.kernel", 100).expect("a symlink inside is fine");
        assert!(ok.ends_with("boot/vmlinuz-6.1"));
        for (rel, why) in [("/etc/passwd", "absolute"), ("../outside", ".."), ("escape", "out of"), ("nope", "not in"), ("boot", "regular"), ("empty", "empty")]
        {
            match resolve_member(&root, rel, "manifest.kernel", 100) {
                Err(SiteError::Invalid { field, message }) => {
                    assert_eq!(field, "manifest.kernel");
                    assert!(message.contains(why), "{rel}: {message}");
                }
                other => panic!("{rel}: {other:?}"),
            }
        }
        assert!(matches!(resolve_member(&root, "boot/vmlinuz", "manifest.kernel", 3), Err(SiteError::Invalid { .. })), "over the limit");
    }
}
