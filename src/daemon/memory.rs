//! What the daemon gives back once its start-up pass is done: the heap start-up freed, and the
//! mappings of the code only start-up ran.
//!
//! Start-up (migrations, the first pass of every reconciler, the router's construction) runs
//! code that an idle daemon never runs again. Each page of our text it touched stays mapped, and
//! the kernel's fault-around maps the 64 KiB around every touched page too
//! (`/sys/kernel/debug/fault_around_bytes`), so about 17 MiB of text stayed resident for the life
//! of the daemon (docs/benchmarks.md, "idle memory"). Dropping the mappings of the text segment
//! (`madvise(2)` `MADV_DONTNEED`) is what the kernel itself does with its `__init` code: the pages
//! stay in the page cache as clean file pages, which the kernel may reclaim under pressure, and
//! the code that runs again maps them back with a minor fault (no read from disk while they are
//! cached). Only our own binary's read-only mappings that hold no written page are touched:
//! dropping a written private page (data, relocations) would lose its contents.

use std::io::{BufRead, BufReader};

/// Hand the heap that start-up used and freed back to the kernel (glibc keeps freed memory in
/// its arenas otherwise, and start-up's peak would stay resident for the daemon's life).
pub fn release_freed_heap() {
    // SAFETY: malloc_trim(3) only releases free memory; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Drop this process's mappings of its own binary's code and read-only data: every mapping of
/// the file that holds this function which is not writable and holds no private (written)
/// page, per /proc/self/smaps (`Anonymous: 0 kB`; the relocated read-only data, RELRO, has
/// such pages and is kept). Returns the bytes of address range advised; 0 (logged at debug)
/// when /proc/self/smaps could not be read. Safe at any time: such pages come back unchanged
/// from the file on their next use.
///
/// A uprobe placed on the binary before the call (bpftrace, perf) is dropped with its page and
/// must be placed again.
pub fn release_startup_code() -> usize {
    let here = release_startup_code as *const () as usize;
    let smaps = match std::fs::File::open("/proc/self/smaps") {
        Ok(f) => BufReader::new(f),
        Err(e) => {
            tracing::debug!(error = %e, "reading /proc/self/smaps failed");
            return 0;
        }
    };
    let mappings = parse_smaps(smaps.lines().map_while(Result::ok));
    let Some(file) = mappings.iter().find(|m| m.start <= here && here < m.end).map(|m| m.path.clone()) else {
        tracing::debug!("no mapping of this binary found in /proc/self/smaps");
        return 0;
    };
    let mut advised = 0;
    for m in mappings.iter().filter(|m| m.path == file && droppable(m)) {
        // SAFETY: [start, end) is one whole, page-aligned mapping of this process (from
        // /proc/self/smaps), not writable and with no private page, so MADV_DONTNEED only drops
        // page table entries of clean file pages: the next access maps the file's page again.
        let rc = unsafe { libc::madvise(m.start as *mut libc::c_void, m.end - m.start, libc::MADV_DONTNEED) };
        if rc == 0 {
            advised += m.end - m.start;
        } else {
            tracing::debug!(error = %std::io::Error::last_os_error(), perms = %m.perms, "madvise(MADV_DONTNEED) failed");
        }
    }
    advised
}

/// One mapping of /proc/PID/smaps (proc(5)): its range, permissions, path and the kB of
/// private pages written through it (`Anonymous:`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mapping {
    start: usize,
    end: usize,
    perms: String,
    path: String,
    anonymous_kb: Option<u64>,
}

/// A mapping whose pages can be dropped and read back from its file unchanged: private, not
/// writable, file-backed, and never written (`Anonymous: 0 kB` known).
fn droppable(m: &Mapping) -> bool {
    let p = m.perms.as_bytes();
    p.len() == 4 && p[0] == b'r' && p[1] == b'-' && p[3] == b'p' && m.path.starts_with('/') && m.anonymous_kb == Some(0)
}

/// Parse /proc/PID/smaps: a header line per mapping (`start-end perms offset dev inode path`),
/// then `Key: value` lines.
fn parse_smaps(lines: impl Iterator<Item = String>) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    for line in lines {
        let mut f = line.split_ascii_whitespace();
        let Some(first) = f.next() else { continue };
        if let Some(kb) = first.strip_prefix("Anonymous:").and_then(|_| f.next()).and_then(|v| v.parse().ok()) {
            if let Some(m) = out.last_mut() {
                m.anonymous_kb = Some(kb);
            }
            continue;
        }
        let Some((s, e)) = first.split_once('-') else { continue };
        let (Ok(start), Ok(end)) = (usize::from_str_radix(s, 16), usize::from_str_radix(e, 16)) else { continue };
        let perms = f.next().unwrap_or("").to_string();
        let path = f.nth(3).unwrap_or("").to_string();
        out.push(Mapping { start, end, perms, path, anonymous_kb: None });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unwritten_read_only_file_mappings_are_dropped() {
        let smaps = "\
55d0c0000000-55d0c0a00000 r--p 00000000 fe:01 1234   /usr/local/bin/cloudlet
Rss:                1536 kB
Anonymous:             0 kB
55d0c0a00000-55d0c2400000 r-xp 00a00000 fe:01 1234   /usr/local/bin/cloudlet
Anonymous:             0 kB
55d0c2400000-55d0c2600000 r--p 02400000 fe:01 1234   /usr/local/bin/cloudlet
Anonymous:          1604 kB
55d0c2600000-55d0c2700000 rw-p 02600000 fe:01 1234   /usr/local/bin/cloudlet
Anonymous:            12 kB
7f0000000000-7f0000100000 rw-p 00000000 00:00 0
Anonymous:          1024 kB
7ffd0000-7ffd2000 r-xp 00000000 00:00 0                  [vdso]
Anonymous:             0 kB
7ffe0000-7ffe2000 r-xs 00000000 fe:01 99   /dev/shm/x
Anonymous:             0 kB
";
        let maps = parse_smaps(smaps.lines().map(String::from));
        assert_eq!(maps.len(), 7);
        assert_eq!((maps[1].start, maps[1].end, maps[1].path.as_str()), (0x55d0c0a00000, 0x55d0c2400000, "/usr/local/bin/cloudlet"));
        let dropped: Vec<&str> = maps.iter().filter(|m| droppable(m)).map(|m| m.perms.as_str()).collect();
        // Rodata and text; never the relocated read-only data, data, anonymous memory, the vdso
        // or a shared mapping.
        assert_eq!(dropped, ["r--p", "r-xp"]);
        assert!(!droppable(&Mapping { anonymous_kb: None, ..maps[1].clone() }), "unknown means kept");
    }

    #[test]
    fn releasing_the_text_keeps_the_code_running_and_lowers_the_resident_size() {
        let resident = || -> u64 {
            let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
            s.lines().find_map(|l| l.strip_prefix("RssFile:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0)
        };
        let before = resident();
        let advised = release_startup_code();
        assert!(advised > 0, "the test binary's code was found and advised");
        let after = resident();
        assert!(after < before, "RssFile fell: {before} kB -> {after} kB");
        // The code still runs (its pages map back in): call into it again.
        assert!(release_startup_code() > 0);
    }
}
