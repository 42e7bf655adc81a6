//! The hardware-reduced ACPI power-management registers (ACPI 6.5 §4.8.3.7 "Sleep Control and
//! Status Registers", §4.8.3.6 "Reset Register") and [`GuestEvents`], how a device tells the
//! vCPU loop that the guest asked to power off or reset.
//!
//! The FADT (see [`crate::acpi`]) names three 8-bit I/O ports: `SLEEP_CONTROL_REG` at
//! [`layout::ACPI_SLEEP_CONTROL`], `SLEEP_STATUS_REG` at [`layout::ACPI_SLEEP_STATUS`] and
//! `RESET_REG` at [`layout::ACPI_RESET`]. Linux powers off through them in
//! `acpi_hw_extended_sleep` (drivers/acpi/acpica/hwesleep.c): it writes the `WAK_STS` bit to the
//! status register, then `SLP_TYP << 2 | SLP_EN` (bit 5) to the control register with `SLP_TYP`
//! the first integer of the DSDT's `\_S5_` package, then spins reading the status register. It
//! resets through `acpi_reset` (drivers/acpi/acpica/hwxface.c), one write of the FADT's
//! `RESET_VALUE` to the reset register.

use std::sync::atomic::{AtomicU8, Ordering};

use crate::bus::BusDevice;
use crate::layout;

/// What the guest asked its platform for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestEvent {
    /// Power off (ACPI S5; Linux's `poweroff`).
    PowerOff,
    /// Reset (the ACPI reset register, the i8042's pulse of its reset line; Linux's `reboot`).
    Reset,
}

const NONE: u8 = 0;
const POWER_OFF: u8 = 1;
const RESET: u8 = 2;

/// The guest's platform requests, shared by the devices that receive them and the vCPU loop
/// that acts on them (one per VM, behind an `Arc`): a latch, no thread or file descriptor.
///
/// The first request wins and stays: a later one does not replace it (a guest that writes
/// the reset register while powering off is powering off). Each vCPU thread checks it
/// ([`GuestEvents::pending`], or the two predicates) after every exit it handles; the write
/// that made the request is itself such an exit.
#[derive(Debug, Default)]
pub struct GuestEvents {
    state: AtomicU8,
}

impl GuestEvents {
    /// Record a request (ignored if one is already recorded).
    pub fn signal(&self, event: GuestEvent) {
        let v = match event {
            GuestEvent::PowerOff => POWER_OFF,
            GuestEvent::Reset => RESET,
        };
        if self.state.compare_exchange(NONE, v, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            tracing::info!(?event, "guest platform request");
        }
    }

    /// The recorded request, if any (it stays recorded).
    pub fn pending(&self) -> Option<GuestEvent> {
        match self.state.load(Ordering::SeqCst) {
            POWER_OFF => Some(GuestEvent::PowerOff),
            RESET => Some(GuestEvent::Reset),
            _ => None,
        }
    }

    /// The guest asked to power off.
    pub fn poweroff_requested(&self) -> bool {
        self.pending() == Some(GuestEvent::PowerOff)
    }

    /// The guest asked to reset.
    pub fn reset_requested(&self) -> bool {
        self.pending() == Some(GuestEvent::Reset)
    }
}

/// Length of the PM I/O window starting at [`layout::ACPI_SLEEP_CONTROL`]: sleep control,
/// sleep status, reset.
pub const PM_IO_LEN: u64 = (layout::ACPI_RESET - layout::ACPI_SLEEP_CONTROL) as u64 + 1;

/// `SLP_EN`, bit 5 of the sleep control register (ACPI 6.5 table 4.21).
const SLP_EN: u8 = 1 << 5;
/// `SLP_TYP`, bits 2..5 of the sleep control register.
const SLP_TYP_SHIFT: u8 = 2;
const SLP_TYP_MASK: u8 = 0x7;

/// The PM registers as a [`BusDevice`] for the I/O window
/// `layout::ACPI_SLEEP_CONTROL..layout::ACPI_SLEEP_CONTROL + PM_IO_LEN`. Reads return 0 (the
/// status register's `WAK_STS` never rises: the guest never wakes from S5).
pub struct PmRegisters {
    events: std::sync::Arc<GuestEvents>,
}

impl PmRegisters {
    /// The registers, signalling through `events`.
    pub fn new(events: std::sync::Arc<GuestEvents>) -> Self {
        Self { events }
    }
}

const SLEEP_CONTROL_OFFSET: u64 = 0;
const RESET_OFFSET: u64 = (layout::ACPI_RESET - layout::ACPI_SLEEP_CONTROL) as u64;

impl BusDevice for PmRegisters {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&v) = data.first() else { return };
        match offset {
            SLEEP_CONTROL_OFFSET if v & SLP_EN != 0 => {
                let typ = (v >> SLP_TYP_SHIFT) & SLP_TYP_MASK;
                if typ == layout::ACPI_S5_TYPE {
                    self.events.signal(GuestEvent::PowerOff);
                } else {
                    // Only \_S5_ is declared, so a well-behaved guest never asks for another.
                    tracing::warn!(slp_typ = typ, "guest asked for an undeclared sleep state; ignored");
                }
            }
            RESET_OFFSET if v == layout::ACPI_RESET_VALUE => self.events.signal(GuestEvent::Reset),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn dev() -> (PmRegisters, Arc<GuestEvents>) {
        let ev = Arc::new(GuestEvents::default());
        (PmRegisters::new(ev.clone()), ev)
    }

    #[test]
    fn linux_s5_write_powers_off() {
        let (mut pm, ev) = dev();
        // hwesleep.c: first WAK_STS to the status register, which changes nothing.
        pm.write(1, &[0x80]);
        assert_eq!(ev.pending(), None);
        // Then SLP_TYP << 2 | SLP_EN.
        pm.write(0, &[(layout::ACPI_S5_TYPE << 2) | 0x20]);
        assert!(ev.poweroff_requested() && !ev.reset_requested());
        // The first request stays.
        pm.write(2, &[layout::ACPI_RESET_VALUE]);
        assert_eq!(ev.pending(), Some(GuestEvent::PowerOff));
        let mut d = [0xffu8];
        pm.read(1, &mut d);
        assert_eq!(d, [0]);
    }

    #[test]
    fn other_sleep_writes_do_nothing_and_reset_value_resets() {
        let (mut pm, ev) = dev();
        pm.write(0, &[layout::ACPI_S5_TYPE << 2]); // no SLP_EN
        pm.write(0, &[(3 << 2) | 0x20]); // S3
        pm.write(2, &[layout::ACPI_RESET_VALUE.wrapping_add(1)]);
        assert_eq!(ev.pending(), None);
        pm.write(2, &[layout::ACPI_RESET_VALUE]);
        assert!(ev.reset_requested() && !ev.poweroff_requested());
        assert_eq!(PM_IO_LEN, 3);
    }
}
