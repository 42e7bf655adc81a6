//! Container logs: the shim writes each line of the container's stdout and stderr as one JSON
//! object per line (`{"time": RFC 3339, "stream": "stdout"|"stderr", "log": text}`, like Docker's
//! `json-file` driver) to `container.log`, rotating it to `container.log.1` … `.N` when it grows
//! past a size. Readers take the last lines across the rotated files, or follow the live file
//! across rotations.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// The live log file's name.
pub const FILE: &str = "container.log";
/// A line longer than this is cut into pieces of this many bytes.
pub const MAX_LINE: usize = 16 * 1024;

/// One log line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// When the shim read it (RFC 3339, UTC, microseconds).
    pub time: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The text, without its newline (invalid UTF-8 replaced).
    pub log: String,
}

/// The rotating writer (one per container, owned by its shim).
pub struct Writer {
    dir: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    keep: usize,
}

impl Writer {
    /// Open (append) `dir/container.log`; rotate past `max_bytes`, keeping `keep` old files.
    pub fn open(dir: &Path, max_bytes: u64, keep: usize) -> std::io::Result<Writer> {
        std::fs::create_dir_all(dir)?;
        let file = File::options().create(true).append(true).open(dir.join(FILE))?;
        let size = file.metadata()?.len();
        Ok(Writer { dir: dir.to_path_buf(), file, size, max_bytes: max_bytes.max(4096), keep: keep.max(1) })
    }

    /// Append one line of `stream`.
    pub fn line(&mut self, stream: &str, text: &[u8]) -> std::io::Result<()> {
        let e = Entry {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            stream: stream.to_string(),
            log: String::from_utf8_lossy(text).into_owned(),
        };
        let mut buf = serde_json::to_vec(&e).map_err(std::io::Error::other)?;
        buf.push(b'\n');
        if self.size + buf.len() as u64 > self.max_bytes && self.size > 0 {
            self.rotate()?;
        }
        self.file.write_all(&buf)?;
        self.size += buf.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let name = |i: usize| self.dir.join(if i == 0 { FILE.to_string() } else { format!("{FILE}.{i}") });
        let _ = std::fs::remove_file(name(self.keep));
        for i in (0..self.keep).rev() {
            let _ = std::fs::rename(name(i), name(i + 1));
        }
        self.file = File::options().create(true).append(true).open(name(0))?;
        self.size = 0;
        Ok(())
    }
}

/// Copy `r` (a container's stdout or stderr pipe) into `w` line by line until end of file.
pub fn pump(r: impl Read, stream: &str, w: &Arc<Mutex<Writer>>) {
    let mut r = BufReader::with_capacity(64 * 1024, r);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        // Read at most MAX_LINE bytes of one line.
        let n = match (&mut r).take(MAX_LINE as u64).read_until(b'\n', &mut line) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => 0,
        };
        if n == 0 {
            return;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if let Ok(mut w) = w.lock() {
            let _ = w.line(stream, &line);
        }
    }
}

/// The log files of `dir`, oldest first.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<(usize, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().into_string().ok()?;
            let i: usize = n.strip_prefix(&format!("{FILE}."))?.parse().ok()?;
            Some((i, e.path()))
        })
        .collect();
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut out: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    out.push(dir.join(FILE));
    out
}

fn parse(line: &str) -> Option<Entry> {
    serde_json::from_str(line).ok()
}

/// The last `tail` lines (all when `None`) across the rotated files, oldest first.
pub fn read_tail(dir: &Path, tail: Option<usize>) -> Vec<Entry> {
    let mut out = std::collections::VecDeque::new();
    for f in files(dir) {
        let Ok(file) = File::open(&f) else { continue };
        for l in BufReader::new(file).lines().map_while(Result::ok) {
            if let Some(e) = parse(&l) {
                out.push_back(e);
                if tail.is_some_and(|t| out.len() > t) {
                    out.pop_front();
                }
            }
        }
    }
    out.into_iter().collect()
}

/// Every line so far (oldest first) and a [`Follower`] that continues exactly after the last of
/// them: the live file is read through the handle the follower keeps, so no line is sent twice
/// or missed between the two.
pub fn tail_and_follow(dir: &Path) -> (Vec<Entry>, Follower) {
    let path = dir.join(FILE);
    let live = File::open(&path).ok();
    let mut out = Vec::new();
    for f in files(dir).into_iter().filter(|f| *f != path) {
        if let Ok(file) = File::open(&f) {
            out.extend(BufReader::new(file).lines().map_while(Result::ok).filter_map(|l| parse(&l)));
        }
    }
    let mut follower = Follower { path, file: None, inode: 0, partial: String::new() };
    if let Some(file) = live {
        follower.inode = file.metadata().map(|m| m.ino()).unwrap_or(0);
        follower.file = Some(BufReader::new(file));
        follower.drain(&mut out);
    }
    (out, follower)
}

/// Follows the live file from where [`tail_and_follow`] left it, across rotations.
pub struct Follower {
    path: PathBuf,
    file: Option<BufReader<File>>,
    inode: u64,
    partial: String,
}

impl Follower {
    /// Entries written since the last call (possibly none).
    pub fn poll(&mut self) -> Vec<Entry> {
        let mut out = Vec::new();
        self.drain(&mut out);
        // Rotated (or created): finish the old file, then switch to the new one from its start.
        let now = std::fs::metadata(&self.path).map(|m| m.ino()).unwrap_or(0);
        if now != 0 && now != self.inode {
            self.drain(&mut out);
            if let Ok(file) = File::open(&self.path) {
                self.inode = now;
                self.partial.clear();
                self.file = Some(BufReader::new(file));
                self.drain(&mut out);
            }
        }
        out
    }

    fn drain(&mut self, out: &mut Vec<Entry>) {
        let Some(r) = self.file.as_mut() else { return };
        loop {
            let mut s = String::new();
            match r.read_line(&mut s) {
                Ok(0) | Err(_) => return,
                Ok(_) if !s.ends_with('\n') => {
                    self.partial.push_str(&s);
                    return;
                }
                Ok(_) => {
                    let full = std::mem::take(&mut self.partial) + &s;
                    if let Some(e) = parse(full.trim_end()) {
                        out.push(e);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_rotate_and_read_back_in_order() {
        let d = tempfile::tempdir().expect("tmp");
        let mut w = Writer::open(d.path(), 4096, 2).expect("open");
        for i in 0..200 {
            w.line(if i % 2 == 0 { "stdout" } else { "stderr" }, format!("line {i}").as_bytes()).expect("line");
        }
        assert!(d.path().join("container.log.1").exists());
        assert!(!d.path().join("container.log.3").exists(), "only 2 rotated files are kept");
        let tail = read_tail(d.path(), Some(5));
        let texts: Vec<&str> = tail.iter().map(|e| e.log.as_str()).collect();
        assert_eq!(texts, ["line 195", "line 196", "line 197", "line 198", "line 199"]);
        assert_eq!(tail[0].stream, "stderr");
        let all = read_tail(d.path(), None);
        let nums: Vec<usize> = all.iter().filter_map(|e| e.log.strip_prefix("line ")?.parse().ok()).collect();
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "lines are in order across files");
    }

    #[test]
    fn pump_splits_lines_and_long_lines() {
        let d = tempfile::tempdir().expect("tmp");
        let w = Arc::new(Mutex::new(Writer::open(d.path(), 1 << 20, 2).expect("open")));
        let mut input = b"one\ntwo\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
        input.extend(b"\n\xffbad\n");
        pump(&input[..], "stdout", &w);
        let e = read_tail(d.path(), None);
        assert_eq!(e.len(), 5);
        assert_eq!(e[0].log, "one");
        assert_eq!(e[2].log.len(), MAX_LINE);
        assert_eq!(e[3].log.len(), 10);
        assert_eq!(e[4].log, "\u{fffd}bad");
    }

    #[test]
    fn the_follower_sees_new_lines_across_a_rotation() {
        let d = tempfile::tempdir().expect("tmp");
        let mut w = Writer::open(d.path(), 4096, 2).expect("open");
        w.line("stdout", b"before").expect("line");
        let (old, mut f) = tail_and_follow(d.path());
        assert_eq!(old.len(), 1);
        assert!(f.poll().is_empty());
        let mut seen = Vec::new();
        for i in 0..100 {
            w.line("stdout", format!("n{i}").as_bytes()).expect("line");
            seen.extend(f.poll());
        }
        let nums: Vec<String> = seen.into_iter().map(|e| e.log).collect();
        assert_eq!(nums.len(), 100, "every line once, across rotations");
        assert_eq!(nums[99], "n99");
    }

    #[test]
    fn tail_and_follow_meet_without_gap_or_repeat() {
        let d = tempfile::tempdir().expect("tmp");
        let mut w = Writer::open(d.path(), 4096, 3).expect("open");
        for i in 0..80 {
            w.line("stdout", format!("a{i}").as_bytes()).expect("line");
        }
        let (old, mut f) = tail_and_follow(d.path());
        for i in 0..80 {
            w.line("stdout", format!("b{i}").as_bytes()).expect("line");
        }
        let new = f.poll();
        let all: Vec<String> = old.iter().chain(&new).map(|e| e.log.clone()).collect();
        let want: Vec<String> = (0..80).map(|i| format!("a{i}")).chain((0..80).map(|i| format!("b{i}"))).collect();
        // The oldest lines may have rotated away (3 files of 4 KiB are kept); none repeat.
        assert!(want.ends_with(&all), "{all:?}");
        assert!(all.len() > 80);
    }
}
