//! The worker's control socket (protocol in [`crate::spec`]): one thread accepts connections,
//! and a thread per connection reads line-delimited JSON requests. `console` turns the
//! connection into the raw serial console: guest output is copied to it by the console hub, and
//! what the client sends is fed to the UART's receive FIFO.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::console::{Hub, SerialPort};
use super::spec::{ExitReason, Request, Response, Status};

/// Why the VM ends, as sent to the main thread by whoever decides it.
#[derive(Debug, Clone)]
pub struct End {
    pub reason: ExitReason,
    pub error: Option<String>,
}

/// Press Ctrl-Alt-Del on the guest's keyboard.
pub type CtrlAltDel = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

/// What the control threads share with the VM. The socket answers from the worker's first
/// milliseconds, before the VM exists: `serial` and `ctrl_alt_del` are set once the devices are
/// made, and `running` once the vCPUs start.
pub struct Shared {
    pub started: Instant,
    /// A shutdown was requested: the guest's next reset or power-off is a stop.
    pub stopping: AtomicBool,
    /// The vCPUs have started.
    pub running: AtomicBool,
    /// Nanoseconds from `started` to the boot timer write (0: not yet).
    pub boot_timer_ns: Arc<std::sync::atomic::AtomicU64>,
    pub vcpus: u8,
    pub memory_mib: u64,
    pub end: Mutex<Sender<End>>,
    pub hub: Arc<Mutex<Hub>>,
    pub serial: OnceLock<Arc<Mutex<SerialPort>>>,
    pub ctrl_alt_del: OnceLock<CtrlAltDel>,
}

impl Shared {
    /// End the VM (the first call wins; later ones are ignored by the receiver).
    pub fn finish(&self, reason: ExitReason, error: Option<String>) {
        let _ = self.end.lock().unwrap_or_else(|p| p.into_inner()).send(End { reason, error });
    }

    fn status(&self) -> Status {
        let bt = self.boot_timer_ns.load(Ordering::Relaxed);
        Status {
            pid: std::process::id(),
            state: if self.stopping.load(Ordering::Relaxed) {
                "stopping"
            } else if self.running.load(Ordering::Relaxed) {
                "running"
            } else {
                "starting"
            }
            .into(),
            boot_timer_ms: (bt > 0).then(|| bt as f64 / 1e6),
            uptime_ms: self.started.elapsed().as_secs_f64() * 1000.0,
            vcpus: self.vcpus,
            memory_mib: self.memory_mib,
        }
    }
}

fn answer(stream: &mut UnixStream, r: &Response) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(r).map_err(std::io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)
}

fn ok(status: Option<Status>) -> Response {
    Response { ok: true, status, error: None }
}

fn refuse(msg: impl Into<String>) -> Response {
    Response { ok: false, status: None, error: Some(msg.into()) }
}

/// Accept control connections until the process exits.
pub fn serve(listener: UnixListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let s = shared.clone();
                if let Err(e) = std::thread::Builder::new().name("control".into()).spawn(move || connection(stream, s)) {
                    tracing::warn!(error = %e, "starting a control thread");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "accepting a control connection");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn connection(stream: UnixStream, shared: Arc<Shared>) {
    let Ok(read_half) = stream.try_clone() else { return };
    let mut out = stream;
    let mut lines = BufReader::new(read_half);
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let req: Request = match serde_json::from_str(line.trim()) {
            Ok(r) => r,
            Err(e) => {
                if answer(&mut out, &refuse(format!("bad request: {e}"))).is_err() {
                    return;
                }
                continue;
            }
        };
        let resp = match req {
            Request::Status => ok(Some(shared.status())),
            Request::Shutdown => {
                shared.stopping.store(true, Ordering::Relaxed);
                match shared.ctrl_alt_del.get() {
                    Some(press) => match press() {
                        Ok(()) => ok(Some(shared.status())),
                        Err(e) => refuse(e),
                    },
                    // The guest has not started: stopping it is just not starting it.
                    None => {
                        shared.finish(ExitReason::Stopped, None);
                        ok(Some(shared.status()))
                    }
                }
            }
            Request::Kill => {
                let _ = answer(&mut out, &ok(None));
                shared.finish(ExitReason::Killed, None);
                return;
            }
            Request::Console => {
                if answer(&mut out, &ok(None)).is_err() {
                    return;
                }
                shared.hub.lock().unwrap_or_else(|p| p.into_inner()).attach(out);
                // Whatever the reader had buffered past the request line is console input too.
                let pending = lines.buffer().to_vec();
                feed(&shared, &pending);
                let mut raw = lines.into_inner();
                let mut buf = [0u8; 256];
                loop {
                    match raw.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => feed(&shared, &buf[..n]),
                    }
                }
            }
        };
        if answer(&mut out, &resp).is_err() {
            return;
        }
    }
}

/// Feed console input to the UART, waiting while its FIFO is full (the guest drains it).
fn feed(shared: &Shared, mut bytes: &[u8]) {
    let mut idle = 0;
    while !bytes.is_empty() && idle < 200 {
        let Some(serial) = shared.serial.get() else {
            idle += 1;
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        let n = serial.lock().unwrap_or_else(|p| p.into_inner()).input(bytes);
        bytes = &bytes[n..];
        if n == 0 {
            idle += 1;
            std::thread::sleep(Duration::from_millis(5));
        } else {
            idle = 0;
        }
    }
}

/// Bind the control socket at `path`, replacing a stale one, readable by its owner only.
pub fn bind(path: &std::path::Path) -> std::io::Result<UnixListener> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let l = UnixListener::bind(path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use vm_superio::Serial;
    use vmm_sys_util::eventfd::EventFd;

    use crate::bus::BusDevice;
    use crate::console::{IrqLine, Sink};

    fn request(path: &std::path::Path, req: &str) -> (UnixStream, Response) {
        let mut s = UnixStream::connect(path).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        (s, serde_json::from_str(&line).unwrap())
    }

    #[test]
    fn status_shutdown_console_and_kill_over_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("control.sock");
        let (tx, rx) = std::sync::mpsc::channel();
        let hub = Hub::new(Some(File::create(dir.path().join("log")).unwrap()), false);
        let serial = Arc::new(Mutex::new(SerialPort(Serial::new(IrqLine(EventFd::new(0).unwrap()), Sink(hub.clone())))));
        let pressed = Arc::new(AtomicBool::new(false));
        let p2 = pressed.clone();
        let shared = Arc::new(Shared {
            started: Instant::now(),
            stopping: AtomicBool::new(false),
            running: AtomicBool::new(false),
            boot_timer_ns: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            vcpus: 2,
            memory_mib: 256,
            end: Mutex::new(tx),
            hub: hub.clone(),
            serial: OnceLock::new(),
            ctrl_alt_del: OnceLock::new(),
        });
        let s2 = shared.clone();
        // A stale socket file is replaced.
        std::fs::write(&sock, b"stale").unwrap();
        let l = bind(&sock).unwrap();
        std::thread::spawn(move || serve(l, shared));

        // Before the VM exists the socket answers already.
        let (_, r) = request(&sock, "{\"op\":\"status\"}\n");
        assert!(r.ok && r.status.unwrap().state == "starting");
        let _ = s2.serial.set(serial.clone());
        let _ = s2.ctrl_alt_del.set(Box::new(move || {
            p2.store(true, Ordering::Relaxed);
            Ok(())
        }));
        s2.running.store(true, Ordering::Relaxed);
        let (_, r) = request(&sock, "{\"op\":\"status\"}\n");
        let st = r.status.unwrap();
        assert!(r.ok && st.state == "running" && st.vcpus == 2 && st.boot_timer_ms.is_none());
        let (_, r) = request(&sock, "{\"op\":\"reboot-now\"}\n");
        assert!(!r.ok && r.error.unwrap().contains("bad request"));
        let (_, r) = request(&sock, "{\"op\":\"shutdown\"}\n");
        assert!(r.ok && r.status.unwrap().state == "stopping" && pressed.load(Ordering::Relaxed));

        // Console: guest output reaches the client; client bytes reach the UART.
        let (mut c, r) = request(&sock, "{\"op\":\"console\"}\n");
        assert!(r.ok);
        std::thread::sleep(Duration::from_millis(100));
        serial.lock().unwrap().write(0, b"G");
        let mut b = [0u8; 1];
        c.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"G");
        c.write_all(b"k").unwrap();
        let mut got = [0u8];
        for _ in 0..100 {
            serial.lock().unwrap().read(0, &mut got);
            if got[0] == b'k' {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(got[0], b'k');

        let (_, r) = request(&sock, "{\"op\":\"kill\"}\n");
        assert!(r.ok);
        let end = rx.recv_timeout(Duration::from_secs(2)).unwrap();
        assert_eq!(end.reason, ExitReason::Killed);
    }
}
