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
    assert_eq!(
        tree(root.path()),
        ["bin", "bin/ash", "bin/busybox", "bin/sh", "etc", "etc/hostname", "var", "var/cache", "var/cache/c"]
    );
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
    let err = unpack(&gz(&big)[..], true, root.path(), Limits { max_bytes: 1000, max_entries: 10 }).unwrap_err();
    assert!(matches!(err, ImageError::TooLarge { limit: 1000 }), "{err}");
    assert!(!root.path().join("big").exists(), "the partial file is removed");
    let many = layer(|b| (0..20).for_each(|i| entry(b, &format!("f{i}"), Regular, b"", None)));
    let err = unpack(&many[..], false, root.path(), Limits { max_bytes: 1000, max_entries: 10 }).unwrap_err();
    assert!(matches!(err, ImageError::TooLarge { limit: 10 }), "{err}");
}
