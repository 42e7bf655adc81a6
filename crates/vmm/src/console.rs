//! The serial console: COM1 (a 16550 from `vm-superio`, IRQ 4) whose output goes to the
//! console log and to every attached client, and whose input comes from attached clients.

use std::fs::File;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

use vm_superio::Serial;
use vm_superio::serial::NoEvents;
use vmm_sys_util::eventfd::EventFd;

use super::bus::BusDevice;

/// COM1's first I/O port; the UART's 8 registers follow it.
pub const COM1: u64 = 0x3f8;
/// COM1's IRQ (ISA IRQ 4, the same GSI on the IOAPIC).
pub const COM1_GSI: u32 = 4;

/// The most one run of a worker appends to its console log, in bytes. Past it the log gets a
/// marker line and nothing more (live clients still get every byte): a guest that floods its
/// serial port cannot fill the host's disk. The daemon rotates the log at the next start.
pub const LOG_LIMIT_BYTES: u64 = 16 << 20;

/// Where console output goes: the log (appended, at most [`LOG_LIMIT_BYTES`] per run), stdout
/// when echoing, and attached clients (a client whose write fails is dropped).
pub struct Hub {
    log: Option<File>,
    logged: u64,
    echo: bool,
    clients: Vec<UnixStream>,
}

impl Hub {
    pub fn new(log: Option<File>, echo: bool) -> Arc<Mutex<Hub>> {
        Arc::new(Mutex::new(Hub { log, logged: 0, echo, clients: Vec::new() }))
    }

    /// Attach a client: it gets every byte the guest writes from now on.
    pub fn attach(&mut self, client: UnixStream) {
        self.clients.push(client);
    }

    fn put(&mut self, buf: &[u8]) {
        if let Some(f) = self.log.as_mut() {
            let room = LOG_LIMIT_BYTES.saturating_sub(self.logged);
            let take = buf.len().min(room as usize);
            let mut r = f.write_all(&buf[..take]);
            self.logged += take as u64;
            if take < buf.len() {
                r = r.and_then(|_| f.write_all(b"\n[cloudlet: console log limit reached; attach to the console for live output]\n"));
                self.log = None;
            }
            if let Err(e) = r {
                tracing::warn!(error = %e, "writing the console log");
            }
        }
        if self.echo {
            let mut o = std::io::stdout();
            let _ = o.write_all(buf).and_then(|_| o.flush());
        }
        self.clients.retain_mut(|c| c.write_all(buf).is_ok());
    }
}

/// The UART's output sink (shared with the control socket, which attaches clients).
pub struct Sink(pub Arc<Mutex<Hub>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).put(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An interrupt line raised through an eventfd registered as a KVM irqfd.
pub struct IrqLine(pub EventFd);

impl vm_superio::Trigger for IrqLine {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// COM1 on the I/O bus.
pub struct SerialPort(pub Serial<IrqLine, NoEvents, Sink>);

impl SerialPort {
    /// Feed bytes to the guest's receive FIFO; returns how many fit (the rest must be retried).
    pub fn input(&mut self, bytes: &[u8]) -> usize {
        let room = self.0.fifo_capacity();
        let n = bytes.len().min(room);
        if n == 0 {
            return 0;
        }
        self.0.enqueue_raw_bytes(&bytes[..n]).unwrap_or(0)
    }
}

impl BusDevice for SerialPort {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if let Some(b) = data.first_mut() {
            *b = self.0.read(offset as u8);
        }
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        if let Some(b) = data.first()
            && let Err(e) = self.0.write(offset as u8, *b)
        {
            tracing::debug!(error = ?e, "serial write");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn the_log_stops_at_its_limit_and_clients_still_get_everything() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("console.log");
        let hub = Hub::new(Some(File::create(&log).unwrap()), false);
        let (mine, theirs) = UnixStream::pair().unwrap();
        hub.lock().unwrap().attach(mine);
        let reader = std::thread::spawn(move || {
            let mut n = 0u64;
            let mut buf = vec![0u8; 1 << 16];
            let mut theirs = theirs;
            while let Ok(k) = theirs.read(&mut buf) {
                if k == 0 {
                    break;
                }
                n += k as u64;
            }
            n
        });
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..(LOG_LIMIT_BYTES >> 20) + 2 {
            hub.lock().unwrap().put(&chunk);
        }
        let total = ((LOG_LIMIT_BYTES >> 20) + 2) << 20;
        drop(hub);
        assert_eq!(reader.join().unwrap(), total, "the client got every byte");
        let len = std::fs::metadata(&log).unwrap().len();
        assert!(len > LOG_LIMIT_BYTES && len < LOG_LIMIT_BYTES + 200, "{len}");
        assert!(String::from_utf8_lossy(&std::fs::read(&log).unwrap()[LOG_LIMIT_BYTES as usize..]).contains("limit reached"));
    }

    #[test]
    fn output_reaches_the_log_and_attached_clients_and_input_reaches_the_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("console.log");
        let hub = Hub::new(Some(File::create(&log).unwrap()), false);
        let (mine, mut theirs) = UnixStream::pair().unwrap();
        hub.lock().unwrap().attach(mine);
        let irq = EventFd::new(0).unwrap();
        let mut port = SerialPort(Serial::new(IrqLine(irq.try_clone().unwrap()), Sink(hub.clone())));
        for b in b"hi\n" {
            port.write(0, &[*b]);
        }
        assert_eq!(std::fs::read(&log).unwrap(), b"hi\n");
        let mut got = [0u8; 3];
        theirs.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hi\n");
        // Enable the receive interrupt (IER bit 0), then feed input: the guest reads it from RBR.
        port.write(1, &[1]);
        assert_eq!(port.input(b"ok"), 2);
        assert!(irq.read().unwrap() >= 1);
        let mut d = [0u8];
        port.read(0, &mut d);
        assert_eq!(d[0], b'o');
        // A client that went away is dropped, and output still reaches the log.
        drop(theirs);
        port.write(0, b"x");
        port.write(0, b"y");
        assert_eq!(std::fs::read(&log).unwrap(), b"hi\nxy");
        assert!(hub.lock().unwrap().clients.is_empty());
    }
}
