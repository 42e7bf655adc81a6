//! Unpacking OCI image layers (tar, optionally gzip) onto a directory, safe against hostile
//! archives (OCI image-spec "Image Layer Filesystem Changeset").
//!
//! - Paths are made relative (a leading `/` or `./` is dropped, as Docker does); a `..`
//!   component is refused ([`ImageError::Escape`]).
//! - Nothing is written through a symlink: every parent directory of an entry is checked with
//!   `lstat`, and a symlink there is refused ([`ImageError::SymlinkInPath`]). Files are created
//!   with `O_NOFOLLOW | O_EXCL` after removing what was there.
//! - Hard links must name a path inside the root, reached without symlinks, that is not a
//!   directory.
//! - Character and block devices are refused ([`ImageError::Device`]); FIFOs are made, unless
//!   [`Limits::special_files`] is off.
//! - Whiteouts: `.wh.NAME` removes `NAME` of the lower layers; `.wh..wh..opq` empties its
//!   directory of what lower layers put there (entries of the same layer stay).
//! - Limits on total file bytes and entry count stop decompression bombs
//!   ([`ImageError::TooLarge`]).

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

use super::ImageError;

/// Bounds on one layer.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Total bytes of regular file content.
    pub max_bytes: u64,
    /// Number of entries.
    pub max_entries: u64,
    /// Whether FIFOs may be made (layers: yes; an upload's own archive: no, it is refused with
    /// [`ImageError::BadArchive`]).
    pub special_files: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_bytes: 16 << 30, max_entries: 1_000_000, special_files: true }
    }
}

/// What an unpack wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub entries: u64,
    pub bytes: u64,
    pub whiteouts: u64,
}

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ImageError {
    let what = what.into();
    move |source| ImageError::Io { what, source }
}

/// The entry's path relative to the root; `..` is refused. Empty for the root itself.
pub fn clean(path: &Path) -> Result<PathBuf, ImageError> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            Component::ParentDir => return Err(ImageError::Escape(path.display().to_string())),
        }
    }
    Ok(out)
}

/// Walk the parents of `rel` under `root` without following symlinks; with `create`, make the
/// missing ones (replacing a non-directory). Returns the full path.
pub(super) fn parents(root: &Path, rel: &Path, create: bool) -> Result<PathBuf, ImageError> {
    let mut cur = root.to_path_buf();
    let n = rel.components().count();
    for c in rel.components().take(n.saturating_sub(1)) {
        cur.push(c);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => return Err(ImageError::SymlinkInPath(rel.display().to_string())),
            Ok(m) if m.is_dir() => {}
            Ok(_) if create => {
                std::fs::remove_file(&cur).map_err(io(format!("replacing {}", cur.display())))?;
                std::fs::create_dir(&cur).map_err(io(format!("creating {}", cur.display())))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                std::fs::create_dir(&cur).map_err(io(format!("creating {}", cur.display())))?;
            }
            _ => return Err(ImageError::BadArchive(format!("{}: a parent is missing or not a directory", rel.display()))),
        }
    }
    Ok(root.join(rel))
}

/// Remove whatever is at `path` (not following a symlink there).
fn remove(path: &Path) -> Result<(), ImageError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path).map_err(io(format!("removing {}", path.display()))),
        Ok(_) => std::fs::remove_file(path).map_err(io(format!("removing {}", path.display()))),
        Err(_) => Ok(()),
    }
}

fn own(path: &Path, uid: u64, gid: u64) -> Result<(), ImageError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let (u, g) = (u32::try_from(uid).ok(), u32::try_from(gid).ok());
    std::os::unix::fs::lchown(path, u, g).map_err(io(format!("chown {}", path.display())))
}

/// Unpack one layer from `r` (gzip-compressed when `gzip`) onto `root`, over what lower layers
/// put there.
pub fn unpack(r: impl Read, gzip: bool, root: &Path, limits: Limits) -> Result<Stats, ImageError> {
    let reader: Box<dyn Read> = if gzip { Box::new(flate2::read::GzDecoder::new(r)) } else { Box::new(r) };
    let mut archive = tar::Archive::new(reader);
    let mut stats = Stats::default();
    // Paths this layer wrote: an opaque whiteout must leave them.
    let mut ours: HashSet<PathBuf> = HashSet::new();
    let entries = archive.entries().map_err(|e| ImageError::BadArchive(e.to_string()))?;
    for entry in entries {
        let mut e = entry.map_err(|e| ImageError::BadArchive(e.to_string()))?;
        stats.entries += 1;
        if stats.entries > limits.max_entries {
            return Err(ImageError::TooLarge { limit: limits.max_entries });
        }
        let raw = e.path().map_err(|e| ImageError::BadArchive(e.to_string()))?.into_owned();
        let rel = clean(&raw)?;
        let Some(name) = rel.file_name().and_then(|n| n.to_str()).map(str::to_string) else { continue };
        let full = parents(root, &rel, true)?;
        let parent = full.parent().unwrap_or(root).to_path_buf();
        if name == OPAQUE {
            stats.whiteouts += 1;
            let dir_rel = rel.parent().map(Path::to_path_buf).unwrap_or_default();
            for child in std::fs::read_dir(&parent).map_err(io(format!("reading {}", parent.display())))? {
                let child = child.map_err(io("reading a directory"))?;
                if !ours.contains(&dir_rel.join(child.file_name())) {
                    remove(&child.path())?;
                }
            }
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            stats.whiteouts += 1;
            if !hidden.is_empty() && hidden != "." && hidden != ".." {
                remove(&parent.join(hidden))?;
            }
            continue;
        }
        let h = e.header().clone();
        let mode = h.mode().map_err(|e| ImageError::BadArchive(e.to_string()))? & 0o7777;
        let (uid, gid) = (h.uid().unwrap_or(0), h.gid().unwrap_or(0));
        match h.entry_type() {
            EntryType::Directory => {
                match std::fs::symlink_metadata(&full) {
                    Ok(m) if m.is_dir() => {}
                    _ => {
                        remove(&full)?;
                        std::fs::create_dir(&full).map_err(io(format!("creating {}", full.display())))?;
                    }
                }
                std::fs::set_permissions(&full, std::fs::Permissions::from_mode(mode)).map_err(io("chmod"))?;
            }
            // A GNU sparse file reads back whole, its holes as zeros.
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                remove(&full)?;
                let mut f = File::options()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&full)
                    .map_err(io(format!("creating {}", full.display())))?;
                let room = limits.max_bytes - stats.bytes;
                let n = std::io::copy(&mut (&mut e).take(room + 1), &mut f).map_err(io(format!("writing {}", full.display())))?;
                if n > room {
                    drop(f);
                    let _ = std::fs::remove_file(&full);
                    return Err(ImageError::TooLarge { limit: limits.max_bytes });
                }
                stats.bytes += n;
                f.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(io("chmod"))?;
            }
            EntryType::Symlink => {
                let target = e
                    .link_name()
                    .map_err(|e| ImageError::BadArchive(e.to_string()))?
                    .ok_or_else(|| ImageError::BadArchive(format!("{}: symlink without a target", rel.display())))?;
                remove(&full)?;
                // The target is stored as-is: it is only ever resolved inside the container.
                std::os::unix::fs::symlink(&target, &full).map_err(io(format!("symlinking {}", full.display())))?;
            }
            EntryType::Link => {
                let target = e
                    .link_name()
                    .map_err(|e| ImageError::BadArchive(e.to_string()))?
                    .ok_or_else(|| ImageError::BadArchive(format!("{}: hard link without a target", rel.display())))?;
                let target_rel = clean(&target)?;
                let target_full = parents(root, &target_rel, false)?;
                match std::fs::symlink_metadata(&target_full) {
                    Ok(m) if !m.is_dir() => {}
                    _ => return Err(ImageError::BadArchive(format!("{}: hard link to a missing file or a directory", rel.display()))),
                }
                remove(&full)?;
                std::fs::hard_link(&target_full, &full).map_err(io(format!("linking {}", full.display())))?;
                ours.insert(rel);
                continue;
            }
            EntryType::Fifo if !limits.special_files => return Err(ImageError::BadArchive(format!("{}: a FIFO is not allowed here", rel.display()))),
            EntryType::Fifo => {
                remove(&full)?;
                nix::unistd::mkfifo(&full, nix::sys::stat::Mode::from_bits_truncate(mode))
                    .map_err(|e| ImageError::Io { what: format!("mkfifo {}", full.display()), source: e.into() })?;
            }
            EntryType::Char | EntryType::Block => return Err(ImageError::Device(rel.display().to_string())),
            // Pax and GNU extension headers are applied by the reader; nothing else is a file.
            _ => continue,
        }
        own(&full, uid, gid)?;
        ours.insert(rel);
    }
    Ok(stats)
}
