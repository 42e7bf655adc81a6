//! Per-function logs: the guest's stdout and stderr lines and the gateway's own lines about a
//! request (a timeout, a trap, a denied outbound request), appended to
//! `DATA/functions/<id>/log` as `RFC 3339 time, space, stream, space, text` and broadcast to
//! followers (`cloudlet function logs -f`).
//!
//! The file is rotated to `log.1` past [`ROTATE_BYTES`], so a function keeps at most twice that.
//! Writes are plain appends (no fsync): a crash may lose the last lines, never earlier ones.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::function::{LogSink, Stream};

/// Size at which a function's log is rotated, bytes.
pub const ROTATE_BYTES: u64 = 1 << 20;

struct Open {
    file: Option<std::fs::File>,
    size: u64,
}

/// The log of one function.
pub struct FunctionLog {
    path: PathBuf,
    open: Mutex<Open>,
    tx: broadcast::Sender<Arc<str>>,
}

impl FunctionLog {
    fn new(dir: &Path) -> Self {
        let path = dir.join("log");
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        FunctionLog { path, open: Mutex::new(Open { file: None, size }), tx: broadcast::channel(1024).0 }
    }

    fn append(&self, line: &str) {
        let Ok(mut o) = self.open.lock() else { return };
        if o.size + line.len() as u64 > ROTATE_BYTES {
            o.file = None;
            let _ = std::fs::rename(&self.path, self.path.with_extension("1"));
            o.size = 0;
        }
        if o.file.is_none() {
            if let Some(dir) = self.path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            o.file = std::fs::OpenOptions::new().create(true).append(true).open(&self.path).ok();
        }
        if let Some(f) = o.file.as_mut()
            && f.write_all(line.as_bytes()).is_ok()
        {
            o.size += line.len() as u64;
        }
    }

    /// New lines from now on (each ends with a newline). A follower that lags by more than
    /// 1,024 lines misses some and is told so by the channel.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.tx.subscribe()
    }

    /// The last `n` lines (oldest first), from `log.1` and `log`.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let mut lines = std::collections::VecDeque::with_capacity(n.min(10_000));
        for p in [self.path.with_extension("1"), self.path.clone()] {
            let Ok(f) = std::fs::File::open(&p) else { continue };
            for l in std::io::BufReader::new(f).split(b'\n').map_while(Result::ok) {
                if lines.len() == n {
                    lines.pop_front();
                }
                if n > 0 {
                    lines.push_back(String::from_utf8_lossy(&l).into_owned());
                }
            }
        }
        lines.into()
    }
}

impl LogSink for FunctionLog {
    fn line(&self, stream: Stream, text: &str) {
        let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let line = format!("{ts} {} {text}\n", stream.as_str());
        self.append(&line);
        let _ = self.tx.send(Arc::from(line));
    }
}

/// Every function's log, by id.
#[derive(Default)]
pub struct FunctionLogs(Mutex<HashMap<String, Arc<FunctionLog>>>);

impl FunctionLogs {
    /// The log of the function whose directory is `dir` (made on first use).
    pub fn of(&self, id: &str, dir: &Path) -> Arc<FunctionLog> {
        let mut m = match self.0.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.entry(id.to_string()).or_insert_with(|| Arc::new(FunctionLog::new(dir))).clone()
    }

    /// Forget a deleted function's log (its directory is removed by the caller).
    pub fn remove(&self, id: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_append_rotate_tail_and_broadcast() {
        let dir = tempfile::tempdir().expect("tmp");
        let log = FunctionLog::new(dir.path());
        let mut rx = log.subscribe();
        log.line(Stream::Stdout, "hello");
        log.line(Stream::Stderr, "oops");
        let t = log.tail(10);
        assert_eq!(t.len(), 2);
        assert!(t[0].ends_with(" stdout hello") && t[1].ends_with(" stderr oops"), "{t:?}");
        assert!(rx.recv().await.expect("line").ends_with(" stdout hello\n"));
        // Past the rotation size the old lines move to log.1 and are still in the tail.
        let big = "x".repeat(1000);
        for _ in 0..(ROTATE_BYTES / 1000 + 5) {
            log.line(Stream::Stdout, &big);
        }
        assert!(dir.path().join("log.1").exists());
        assert!(std::fs::metadata(dir.path().join("log")).expect("log").len() < ROTATE_BYTES);
        assert_eq!(log.tail(3).len(), 3);
        assert_eq!(log.tail(0).len(), 0);
    }
}
