//! Guest stdout and stderr as log lines: a [`LogPipe`] is the `wasi:cli` stdout (or stderr) of
//! one request; it splits what the guest writes into lines and hands each to a [`LogSink`].
//!
//! A request may write at most [`MAX_BYTES_PER_REQUEST`] bytes per stream; the rest is dropped
//! (the guest is not told, so a chatty function never fails for its logging) and one
//! `[output truncated]` line says so. A line longer than [`MAX_LINE`] is split. What is left
//! without a newline is flushed when the request's store is dropped.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Most bytes one request may log per stream.
pub const MAX_BYTES_PER_REQUEST: usize = 64 << 10;
/// Longest line handed to a sink, bytes.
pub const MAX_LINE: usize = 4096;

/// Which stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The guest's stdout.
    Stdout,
    /// The guest's stderr.
    Stderr,
    /// The host's own line about the request (a timeout, a trap, a denied outbound request).
    Host,
}

impl Stream {
    /// `stdout`, `stderr` or `host`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::Host => "host",
        }
    }
}

/// Receives a function's log lines (without the newline; lossy UTF-8).
pub trait LogSink: Send + Sync {
    /// One line from `stream`.
    fn line(&self, stream: Stream, text: &str);
}

struct Lines {
    sink: Arc<dyn LogSink>,
    stream: Stream,
    buf: Vec<u8>,
    taken: usize,
    truncated: bool,
}

impl Lines {
    fn push(&mut self, mut bytes: &[u8]) {
        let room = MAX_BYTES_PER_REQUEST.saturating_sub(self.taken);
        if bytes.len() > room {
            bytes = &bytes[..room];
            self.truncated = true;
        }
        self.taken += bytes.len();
        for &b in bytes {
            if b == b'\n' {
                self.emit();
            } else {
                self.buf.push(b);
                if self.buf.len() >= MAX_LINE {
                    self.emit();
                }
            }
        }
    }

    fn emit(&mut self) {
        let text = String::from_utf8_lossy(&self.buf);
        self.sink.line(self.stream, text.trim_end_matches('\r'));
        self.buf.clear();
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.emit();
        }
        if self.truncated {
            self.sink.line(Stream::Host, &format!("[{} output truncated at {MAX_BYTES_PER_REQUEST} bytes]", self.stream.as_str()));
        }
    }
}

/// The stdout or stderr of one request.
#[derive(Clone)]
pub struct LogPipe(Arc<Mutex<Lines>>);

impl LogPipe {
    /// A pipe whose lines go to `sink`, tagged `stream`.
    pub fn new(sink: Arc<dyn LogSink>, stream: Stream) -> Self {
        LogPipe(Arc::new(Mutex::new(Lines { sink, stream, buf: Vec::new(), taken: 0, truncated: false })))
    }
}

impl IsTerminal for LogPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogPipe {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for LogPipe {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        if let Ok(mut l) = self.0.lock() {
            l.push(buf);
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect(Mutex<Vec<(Stream, String)>>);
    impl LogSink for Collect {
        fn line(&self, s: Stream, t: &str) {
            self.0.lock().expect("lock").push((s, t.to_string()));
        }
    }

    #[test]
    fn lines_are_split_capped_and_flushed_on_drop() {
        let sink = Arc::new(Collect::default());
        {
            let p = LogPipe::new(sink.clone(), Stream::Stdout);
            p.0.lock().expect("lock").push(b"one\r\ntw");
            p.0.lock().expect("lock").push(b"o\nthree");
        }
        let got: Vec<String> = sink.0.lock().expect("lock").iter().map(|(_, t)| t.clone()).collect();
        assert_eq!(got, ["one", "two", "three"]);

        let sink = Arc::new(Collect::default());
        {
            let p = LogPipe::new(sink.clone(), Stream::Stderr);
            p.0.lock().expect("lock").push(&vec![b'x'; MAX_BYTES_PER_REQUEST + 10]);
        }
        let got = sink.0.lock().expect("lock");
        let bytes: usize = got.iter().filter(|(s, _)| *s == Stream::Stderr).map(|(_, t)| t.len()).sum();
        assert_eq!(bytes, MAX_BYTES_PER_REQUEST);
        assert!(got.iter().all(|(_, t)| t.len() <= MAX_LINE));
        assert_eq!(got.last().map(|(s, _)| *s), Some(Stream::Host), "the truncation is said");
    }
}
