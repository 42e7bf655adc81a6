//! The vCPU threads: each runs `KVM_RUN` and routes port and MMIO exits to the buses. The VM
//! ends (through [`Shared::finish`]) when a device reports a power-off or reset, when the vCPU
//! shuts down (a triple fault), or when `KVM_RUN` fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use kvm_ioctls::{VcpuExit, VcpuFd};

use super::bus::{Bus, BusDevice};
use super::control::Shared;
use super::layout;
use super::spec::ExitReason;

/// What the guest asked for through a device: nothing yet, a power-off, or a reset.
pub type GuestRequest = Arc<dyn Fn() -> Option<GuestEnd> + Send + Sync>;

/// A guest-initiated end of the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestEnd {
    /// ACPI S5 through the sleep control register.
    Poweroff,
    /// The i8042's reset line or the ACPI reset register.
    Reset,
}

/// The I/O port and MMIO buses every vCPU uses.
pub struct Buses {
    pub io: Bus,
    pub mmio: Bus,
}

/// The boot timer (`layout::BOOT_TIMER`): the first write of `layout::BOOT_TIMER_MAGIC`
/// records the time since the worker started, in nanoseconds.
pub struct BootTimer {
    pub started: std::time::Instant,
    pub at_ns: Arc<AtomicU64>,
}

impl BusDevice for BootTimer {
    fn read(&mut self, _offset: u64, _data: &mut [u8]) {}
    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == 0 && data.first() == Some(&layout::BOOT_TIMER_MAGIC) && self.at_ns.load(Ordering::Relaxed) == 0 {
            let ns = self.started.elapsed().as_nanos().max(1) as u64;
            self.at_ns.store(ns, Ordering::Relaxed);
            tracing::info!(ms = ns as f64 / 1e6, "boot timer");
        }
    }
}

/// PCI configuration mechanism #1's ports: with no PCI bus, reads float high (all ones), so a
/// probing guest finds no host bridge.
const PCI_CONFIG: std::ops::RangeInclusive<u16> = 0xcf8..=0xcff;

/// Map a guest-initiated end to the exit reason, given whether a shutdown was requested.
pub fn reason(end: GuestEnd, stopping: bool) -> ExitReason {
    match (end, stopping) {
        (_, true) => ExitReason::Stopped,
        (GuestEnd::Poweroff, false) => ExitReason::Poweroff,
        (GuestEnd::Reset, false) => ExitReason::Reboot,
    }
}

/// Run one vCPU until the VM ends. Never returns normally on success: the main thread exits
/// the process once any thread reports the end.
pub fn run(index: u8, mut vcpu: VcpuFd, buses: Arc<Buses>, shared: Arc<Shared>, guest: GuestRequest) {
    let mut unhandled = 0u32;
    loop {
        let exit = vcpu.run();
        match exit {
            Ok(VcpuExit::IoOut(port, data)) => {
                buses.io.write(port as u64, data);
            }
            Ok(VcpuExit::IoIn(port, data)) => {
                if !buses.io.read(port as u64, data) && PCI_CONFIG.contains(&port) {
                    data.fill(0xff);
                }
            }
            Ok(VcpuExit::MmioRead(addr, data)) => {
                buses.mmio.read(addr, data);
            }
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                buses.mmio.write(addr, data);
            }
            Ok(VcpuExit::Shutdown) => {
                let stopping = shared.stopping.load(Ordering::Relaxed);
                let r = if stopping { ExitReason::Stopped } else { ExitReason::Crashed };
                shared.finish(r, (!stopping).then(|| format!("vCPU {index} shut down (triple fault)")));
                return;
            }
            Ok(VcpuExit::Hlt) => {
                // Only without an in-kernel LAPIC; ours has one, so a halt exit means the guest
                // stopped for good.
                shared.finish(ExitReason::Crashed, Some(format!("vCPU {index} halted")));
                return;
            }
            Ok(VcpuExit::FailEntry(reason, cpu)) => {
                shared.finish(ExitReason::Crashed, Some(format!("vCPU {index}: KVM entry failed (reason {reason:#x}, cpu {cpu})")));
                return;
            }
            Ok(VcpuExit::InternalError) => {
                shared.finish(ExitReason::Crashed, Some(format!("vCPU {index}: KVM internal error")));
                return;
            }
            Ok(other) => {
                unhandled += 1;
                if unhandled <= 10 {
                    tracing::warn!(vcpu = index, exit = ?other, "unhandled vCPU exit");
                }
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {}
            Err(e) => {
                shared.finish(ExitReason::Crashed, Some(format!("vCPU {index}: KVM_RUN: {e}")));
                return;
            }
        }
        if let Some(end) = guest() {
            shared.finish(reason(end, shared.stopping.load(Ordering::Relaxed)), None);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_requested_stop_wins_over_what_the_guest_did() {
        assert_eq!(reason(GuestEnd::Poweroff, false), ExitReason::Poweroff);
        assert_eq!(reason(GuestEnd::Reset, false), ExitReason::Reboot);
        assert_eq!(reason(GuestEnd::Reset, true), ExitReason::Stopped);
        assert_eq!(reason(GuestEnd::Poweroff, true), ExitReason::Stopped);
    }

    #[test]
    fn the_boot_timer_keeps_the_first_magic_write_only() {
        let at = Arc::new(AtomicU64::new(0));
        let mut t = BootTimer { started: std::time::Instant::now(), at_ns: at.clone() };
        t.write(0, &[7]);
        assert_eq!(at.load(Ordering::Relaxed), 0);
        t.write(0, &[layout::BOOT_TIMER_MAGIC]);
        let first = at.load(Ordering::Relaxed);
        assert!(first > 0);
        std::thread::sleep(std::time::Duration::from_millis(2));
        t.write(0, &[layout::BOOT_TIMER_MAGIC]);
        assert_eq!(at.load(Ordering::Relaxed), first);
    }
}
