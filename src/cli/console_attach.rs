//! `cloudlet instance console NAME`: the instance's serial console on this terminal, over the
//! API's websocket (RFC 6455). The terminal is put in raw mode (restored on exit); Ctrl-]
//! detaches, as with telnet and `virsh console`.

use std::io::Write;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::commands::client;
use super::{CliError, Global};

/// The detach key, Ctrl-] (0x1d).
pub const DETACH: u8 = 0x1d;

/// The terminal's settings, restored on drop (raw mode per `cfmakeraw(3)` while it lives).
struct RawTerminal(Option<libc::termios>);

impl RawTerminal {
    fn enter() -> RawTerminal {
        // SAFETY: tcgetattr and tcsetattr read and write one termios struct for fd 0.
        unsafe {
            if libc::isatty(0) != 1 {
                return RawTerminal(None);
            }
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return RawTerminal(None);
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(0, libc::TCSANOW, &t);
            RawTerminal(Some(saved))
        }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            // SAFETY: restores the settings read in `enter` on the same descriptor.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, t);
            }
        }
    }
}

/// Where the input up to the detach key ends, if it holds one.
pub fn detach_at(input: &[u8]) -> Option<usize> {
    input.iter().position(|b| *b == DETACH)
}

/// Attach this terminal to the websocket console at `path` until Ctrl-] or the console closes.
pub async fn attach(g: &Global, path: &str) -> Result<(), CliError> {
    let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
    let headers =
        [("connection", "Upgrade".to_string()), ("upgrade", "websocket".to_string()), ("sec-websocket-version", "13".to_string()), ("sec-websocket-key", key)];
    let io = client(g)?.upgrade(path, &headers).await?;
    let ws = WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Client, None).await;
    let (mut tx, mut rx) = ws.split();
    eprint!("connected to the console; Ctrl-] detaches\r\n");
    let _raw = RawTerminal::enter();
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 4096];
    let mut out = std::io::stdout();
    loop {
        tokio::select! {
            n = stdin.read(&mut buf) => {
                let n = n?;
                if n == 0 {
                    break;
                }
                let (chunk, done) = match detach_at(&buf[..n]) {
                    Some(i) => (&buf[..i], true),
                    None => (&buf[..n], false),
                };
                if !chunk.is_empty() && tx.send(Message::Binary(bytes::Bytes::copy_from_slice(chunk))).await.is_err() {
                    break;
                }
                if done {
                    break;
                }
            }
            m = rx.next() => match m {
                Some(Ok(Message::Binary(b))) => {
                    out.write_all(&b)?;
                    out.flush()?;
                }
                Some(Ok(Message::Text(t))) => {
                    out.write_all(t.as_bytes())?;
                    out.flush()?;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                _ => break,
            },
        }
    }
    let _ = tx.send(Message::Close(None)).await;
    drop(_raw);
    eprintln!("\r\ndetached");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ctrl_right_bracket_detaches() {
        assert_eq!(super::detach_at(b"ls\r\x1drest"), Some(3));
        assert_eq!(super::detach_at(b"plain"), None);
    }
}
