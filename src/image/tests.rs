//! Layer unpacking against crafted, hostile archives.

use std::path::Path;

use super::ImageError;
use super::unpack::{Limits, unpack};

/// A tar entry whose raw name may hold anything (the `tar` crate's own setters refuse `..`).
fn entry(b: &mut tar::Builder<Vec<u8>>, name: &str, kind: tar::EntryType, data: &[u8], link: Option<&str>) {
    let mut h = tar::Header::new_gnu();
    let raw = name.as_bytes();
    h.as_old_mut().name[..raw.len()].copy_from_slice(raw);
    h.set_entry_type(kind);
    h.set_mode(if kind == tar::EntryType::Directory { 0o755 } else { 0o644 });
    h.set_size(data.len() as u64);
    if let Some(l) = link {
        let raw = l.as_bytes();
        h.as_old_mut().linkname[..raw.len()].copy_from_slice(raw);
    }
    h.set_cksum();
    b.append(&h, data).unwrap();
}

fn layer(f: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    f(&mut b);
    b.into_inner().unwrap()
}

fn gz(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Every file under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(base).unwrap().display().to_string());
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn layers_stack_with_whiteouts_and_opaque_directories() {
    use tar::EntryType::*;
    let root = tempfile::tempdir().unwrap();
    let lower = layer(|b| {
        entry(b, "./etc/", Directory, b"", None);
        entry(b, "./etc/hostname", Regular, b"lower\n", None);
        entry(b, "./etc/gone", Regular, b"x", None);
        entry(b, "./var/cache/a", Regular, b"a", None);
        entry(b, "./var/cache/b", Regular, b"b", None);
        entry(b, "./bin/sh", Regular, b"#!", None);
        entry(b, "./bin/ash", Link, b"", Some("bin/sh"));
        entry(b, "./bin/busybox", Symlink, b"", Some("/bin/sh"));
    });
    let s = unpack(&gz(&lower)[..], true, root.path(), Limits::default()).unwrap();
    assert_eq!((s.entries, s.bytes), (8, 11));
    let upper = layer(|b| {
        entry(b, "etc/.wh.gone", Regular, b"", None);
        entry(b, "etc/hostname", Regular, b"upper\n", None);
        entry(b, "var/cache/c", Regular, b"c", None);
        entry(b, "var/cache/.wh..wh..opq", Regular, b"", None);
    });
    let s = unpack(&upper[..], false, root.path(), Limits::default()).unwrap();
    assert_eq!(s.whiteouts, 2);
    assert_eq!(tree(root.path()), ["bin", "bin/ash", "bin/busybox", "bin/sh", "etc", "etc/hostname", "var", "var/cache", "var/cache/c"]);
    assert_eq!(std::fs::read_to_string(root.path().join("etc/hostname")).unwrap(), "upper\n");
    assert_eq!(std::fs::read_link(root.path().join("bin/busybox")).unwrap(), Path::new("/bin/sh"));
}

#[test]
fn hostile_archives_write_nothing_outside_the_root() {
    use tar::EntryType::*;
    let sandbox = tempfile::tempdir().unwrap();
    let root = sandbox.path().join("root");
    let outside = sandbox.path().join("outside");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let out = outside.display().to_string();
    type Case = (&'static str, Vec<u8>, fn(&ImageError) -> bool);
    let cases: Vec<Case> = vec![
        ("dot-dot", layer(|b| entry(b, "../outside/x", Regular, b"pwned", None)), |e| matches!(e, ImageError::Escape(_))),
        ("nested dot-dot", layer(|b| entry(b, "a/../../outside/x", Regular, b"pwned", None)), |e| matches!(e, ImageError::Escape(_))),
        (
            "write through a symlink",
            layer(|b| {
                entry(b, "evil", Symlink, b"", Some(&out));
                entry(b, "evil/x", Regular, b"pwned", None);
            }),
            |e| matches!(e, ImageError::SymlinkInPath(_)),
        ),
        (
            "symlink dir then whiteout through it",
            layer(|b| {
                entry(b, "evil2", Symlink, b"", Some(&out));
                entry(b, "evil2/.wh.keep", Regular, b"", None);
            }),
            |e| matches!(e, ImageError::SymlinkInPath(_)),
        ),
        ("hard link out", layer(|b| entry(b, "h", Link, b"", Some("../outside/keep"))), |e| matches!(e, ImageError::Escape(_))),
        (
            "hard link through a symlink",
            layer(|b| {
                entry(b, "s", Symlink, b"", Some(&out));
                entry(b, "h2", Link, b"", Some("s/keep"));
            }),
            |e| matches!(e, ImageError::SymlinkInPath(_)),
        ),
        ("device node", layer(|b| entry(b, "dev/sda", Block, b"", None)), |e| matches!(e, ImageError::Device(_))),
        ("char device", layer(|b| entry(b, "dev/mem", Char, b"", None)), |e| matches!(e, ImageError::Device(_))),
        ("not a tar", b"garbage that is not a tar archive at all, not even close...".repeat(20), |e| matches!(e, ImageError::BadArchive(_))),
    ];
    std::fs::write(outside.join("keep"), b"safe").unwrap();
    for (what, data, expected) in cases {
        let err = unpack(&data[..], false, &root, Limits::default()).expect_err(what);
        assert!(expected(&err), "{what}: {err}");
    }
    assert_eq!(tree(&outside), ["keep"], "nothing was written outside");
    assert_eq!(std::fs::read(outside.join("keep")).unwrap(), b"safe");
    // An absolute path lands inside the root, as Docker does it.
    unpack(&layer(|b| entry(b, "/abs/file", Regular, b"in", None))[..], false, &root, Limits::default()).unwrap();
    assert_eq!(std::fs::read(root.join("abs/file")).unwrap(), b"in");
}

#[test]
fn decompression_bombs_stop_at_the_limits() {
    use tar::EntryType::*;
    let root = tempfile::tempdir().unwrap();
    let big = layer(|b| entry(b, "big", Regular, &vec![0u8; 1 << 20], None));
    let err = unpack(&gz(&big)[..], true, root.path(), Limits { max_bytes: 1000, max_entries: 10, special_files: true }).unwrap_err();
    assert!(matches!(err, ImageError::TooLarge { limit: 1000 }), "{err}");
    assert!(!root.path().join("big").exists(), "the partial file is removed");
    let many = layer(|b| (0..20).for_each(|i| entry(b, &format!("f{i}"), Regular, b"", None)));
    let err = unpack(&many[..], false, root.path(), Limits { max_bytes: 1000, max_entries: 10, special_files: true }).unwrap_err();
    assert!(matches!(err, ImageError::TooLarge { limit: 10 }), "{err}");
    // The budget is the image's, not each layer's: three layers of 600 bytes under 1000 stop.
    let store_dir = tempfile::tempdir().unwrap();
    let store = super::store::BlobStore::open(store_dir.path()).unwrap();
    let layers: Vec<(super::store::Digest, bool)> = (0..3)
        .map(|i| {
            let l = gz(&layer(|b| entry(b, &format!("part{i}"), Regular, &[7u8; 600], None)));
            (store.put(&mut &l[..], None, 1 << 20).unwrap().0, true)
        })
        .collect();
    let err = super::layout::unpack_layers(
        layers.clone(),
        &store,
        tempfile::tempdir().unwrap().path(),
        Limits { max_bytes: 1000, max_entries: 10, special_files: true },
    )
    .unwrap_err();
    assert!(matches!(err, ImageError::TooLarge { limit: 1000 }), "{err}");
    let ok =
        super::layout::unpack_layers(layers, &store, tempfile::tempdir().unwrap().path(), Limits { max_bytes: 1800, max_entries: 10, special_files: true })
            .unwrap();
    assert_eq!(ok.bytes, 1800);
}

/// Write `data` as a blob of the layout at `dir`; its descriptor JSON.
fn blob(dir: &Path, media_type: &str, data: &[u8]) -> serde_json::Value {
    use sha2::Digest as _;
    let hex = hex::encode(sha2::Sha256::digest(data));
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(blobs.join(&hex), data).unwrap();
    serde_json::json!({"mediaType": media_type, "digest": format!("sha256:{hex}"), "size": data.len()})
}

/// An OCI layout holding one image tagged `v1`: two layers (the upper gzip'd, with a whiteout).
fn oci_layout(dir: &Path) -> serde_json::Value {
    use tar::EntryType::*;
    let lower = layer(|b| {
        entry(b, "bin/sh", Regular, b"#!", None);
        entry(b, "etc/motd", Regular, b"hi", None);
    });
    let upper = layer(|b| {
        entry(b, "etc/.wh.motd", Regular, b"", None);
        entry(b, "srv/index.html", Regular, b"<h1>cloudlet</h1>", None);
    });
    let l1 = blob(dir, "application/vnd.oci.image.layer.v1.tar", &lower);
    let l2 = blob(dir, "application/vnd.oci.image.layer.v1.tar+gzip", &gz(&upper));
    let config = serde_json::json!({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": []}});
    let c = blob(dir, "application/vnd.oci.image.config.v1+json", config.to_string().as_bytes());
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": c, "layers": [l1, l2]});
    let mut m = blob(dir, "application/vnd.oci.image.manifest.v1+json", manifest.to_string().as_bytes());
    m["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "v1"});
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [m]});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion": "1.0.0"}"#).unwrap();
    l2
}

#[test]
fn an_oci_layout_imports_verified_and_unpacks_to_a_rootfs() {
    let (src, store_dir, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let upper = oci_layout(src.path());
    let store = super::store::BlobStore::open(store_dir.path()).unwrap();
    let err = super::layout::import(&store.ingest(), src.path(), Some("v2")).unwrap_err();
    assert!(matches!(err, ImageError::BadArchive(_)), "{err}");
    let image = super::layout::import(&store.ingest(), src.path(), Some("v1")).unwrap();
    assert_eq!(image.layers.len(), 2);
    assert_eq!(store.list().unwrap().len(), 4, "manifest, config and two layers");
    assert_eq!(image.config.config().as_ref().and_then(|c| c.cmd().clone()), Some(vec!["/bin/sh".to_string()]));
    super::layout::unpack_image(&store, &image, root.path(), Limits::default()).unwrap();
    assert_eq!(tree(root.path()), ["bin", "bin/sh", "etc", "srv", "srv/index.html"]);

    // A tampered layer is refused on import, and nothing of it enters a fresh store.
    let hex = upper["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    let path = src.path().join("blobs/sha256").join(&hex);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = super::store::BlobStore::open(fresh_dir.path()).unwrap();
    let err = super::layout::import(&fresh.ingest(), src.path(), None).unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert!(!fresh.list().unwrap().iter().any(|d| d.hex() == hex));
    // The store holding the good layer already does not excuse the archive: the tampered copy
    // is still refused (a layout cannot borrow another project's blob by naming its digest).
    let err = super::layout::import(&store.ingest(), src.path(), None).unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    // Nor can it leave the blob out: a missing blob is missing whatever the store holds.
    std::fs::remove_file(&path).unwrap();
    let err = super::layout::import(&store.ingest(), src.path(), None).unwrap_err();
    assert!(matches!(err, ImageError::MissingBlob(_)), "{err}");
}

/// A `docker save` archive of one image tagged `demo:1` whose manifest lists `layers`; `files`
/// are the archive's other entries (name, kind, bytes, link target).
fn docker_save(layers: &[&str], files: &[(&str, tar::EntryType, Vec<u8>, Option<&str>)]) -> Vec<u8> {
    use tar::EntryType::*;
    let config = serde_json::json!({"architecture": "amd64", "os": "linux", "config": {"Env": ["A=1"]},
        "rootfs": {"type": "layers", "diff_ids": []}});
    let manifest = serde_json::json!([{"Config": "cfg.json", "RepoTags": ["demo:1"], "Layers": layers}]);
    layer(|b| {
        entry(b, "manifest.json", Regular, manifest.to_string().as_bytes(), None);
        entry(b, "cfg.json", Regular, config.to_string().as_bytes(), None);
        for (n, kind, data, link) in files {
            entry(b, n, *kind, data, *link);
        }
    })
}

#[test]
fn docker_save_archives_import_and_hostile_ones_are_refused() {
    use sha2::Digest as _;
    use tar::EntryType::*;
    let lower = layer(|b| entry(b, "bin/sh", Regular, b"#!", None));
    let upper = gz(&layer(|b| entry(b, "srv/app", Regular, b"app", None)));
    let files = [("l1/layer.tar", Regular, lower.clone(), None), ("l2/layer.tar", Regular, upper, None)];
    let archive = docker_save(&["l1/layer.tar", "l2/layer.tar"], &files);
    let (store_dir, scratch, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let store = super::store::BlobStore::open(store_dir.path()).unwrap();
    let image = super::layout::import_archive(&store.ingest(), &archive[..], scratch.path(), Some("demo:1")).unwrap();
    assert_eq!(image.layers.iter().map(|(_, gz)| *gz).collect::<Vec<_>>(), [false, true], "gzip detected by magic");
    assert!(store.has(&image.manifest), "an OCI manifest was written for it");
    super::layout::unpack_image(&store, &image, root.path(), Limits::default()).unwrap();
    assert_eq!(tree(root.path()), ["bin", "bin/sh", "srv", "srv/app"]);

    // A layer path out of the archive is refused.
    let escape = docker_save(&["../../etc/passwd"], &[]);
    let err = super::layout::import_archive(&store.ingest(), &escape[..], tempfile::tempdir().unwrap().path(), None).unwrap_err();
    assert!(matches!(err, ImageError::Escape(_)), "{err}");
    // A layer that is a symlink to a host file is refused, and the file never enters the store.
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), b"host secret").unwrap();
    let target = secret.path().display().to_string();
    let linked = docker_save(&["evil.tar"], &[("evil.tar", Symlink, vec![], Some(target.as_str()))]);
    let err = super::layout::import_archive(&store.ingest(), &linked[..], tempfile::tempdir().unwrap().path(), None).unwrap_err();
    assert!(matches!(err, ImageError::BadArchive(_)), "{err}");
    // A FIFO in the archive is refused before anything opens it (it would block the import).
    let fifo = docker_save(&["pipe"], &[("pipe", Fifo, vec![], None)]);
    let err = super::layout::import_archive(&store.ingest(), &fifo[..], tempfile::tempdir().unwrap().path(), None).unwrap_err();
    assert!(matches!(err, ImageError::BadArchive(ref m) if m.contains("FIFO")), "{err}");
    let leaked = super::store::Digest::parse(&format!("sha256:{}", hex::encode(sha2::Sha256::digest(b"host secret")))).unwrap();
    assert!(!store.has(&leaked), "no host file entered the store");
}
