//! An i8042 keyboard controller with a PS/2 keyboard behind it and no auxiliary (mouse)
//! device: enough for Linux's `i8042` and `atkbd` drivers (drivers/input/serio/i8042.c,
//! drivers/input/keyboard/atkbd.c, 6.1) to probe and bind a keyboard, so that the VMM can
//! press Ctrl-Alt-Del ([`I8042::trigger_ctrl_alt_del`]) and the guest can reset the machine
//! through the controller's reset line (command 0xFE).
//!
//! Registers (the IBM PC/AT 8042 interface): the data port 0x60 (offset 0 of the window) and
//! the status (read) / command (write) port 0x64 (offset 4). Output bytes — command results,
//! keyboard replies and scancodes — are queued; the status register's OBF bit says the queue
//! is not empty and each read of the data port takes one byte. IRQ 1 is raised, through the
//! eventfd given at construction (an irqfd on GSI 1), whenever a byte reaches the head of the
//! queue while the controller configuration byte's keyboard-interrupt bit is set. The
//! controller executes commands instantly, so IBF never reads as set.

use std::collections::VecDeque;
use std::sync::Arc;

use vmm_sys_util::eventfd::EventFd;

use crate::bus::BusDevice;
use crate::pm::{GuestEvent, GuestEvents};

/// The I/O port of the data register; the window starts here.
pub const I8042_DATA_PORT: u16 = 0x60;
/// Length of the I/O window (0x60..=0x64). Port 0x61 (the speaker/NMI-status port) inside it
/// is claimed by KVM's in-kernel PIT (`KVM_PIT_SPEAKER_DUMMY`) and never reaches this device.
pub const I8042_IO_LEN: u64 = 5;
/// The GSI of the keyboard interrupt.
pub const I8042_KBD_GSI: u32 = 1;

const DATA_OFFSET: u64 = 0;
const COMMAND_OFFSET: u64 = 4;

// Status register bits (Linux i8042.h I8042_STR_*).
const STR_OBF: u8 = 0x01;
const STR_SYSFLAG: u8 = 0x04;
const STR_CMDDAT: u8 = 0x08;
/// Set when the keyboard is *not* locked.
const STR_KEYLOCK: u8 = 0x10;

// Controller configuration byte bits (I8042_CTR_*).
const CTR_KBDINT: u8 = 0x01;
const CTR_SYSFLAG: u8 = 0x04;
const CTR_KBDDIS: u8 = 0x10;
const CTR_AUXDIS: u8 = 0x20;
const CTR_XLATE: u8 = 0x40;

/// The configuration byte a PC BIOS leaves: keyboard interrupt on, POST passed, the absent AUX
/// port disabled, set 2 → set 1 translation on.
const CTR_INITIAL: u8 = CTR_KBDINT | CTR_SYSFLAG | CTR_AUXDIS | CTR_XLATE;

/// Output port bit 0: the CPU reset line (active low).
const OUTPORT_RESET: u8 = 0x01;
/// Output port bit 1: the A20 gate.
const OUTPORT_A20: u8 = 0x02;

// PS/2 keyboard replies.
const KBD_ACK: u8 = 0xfa;
const KBD_RESEND: u8 = 0xfe;
const KBD_BAT_OK: u8 = 0xaa;

/// The output queue holds at most this many bytes; more are dropped (a guest that stops
/// reading must not grow it).
const QUEUE_MAX: usize = 32;

/// Ctrl, Alt, Del pressed then released, in scancode set 2 (what the keyboard sends).
const CTRL_ALT_DEL_SET2: [u8; 11] = [0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14];
/// The same after the controller's set 2 → set 1 translation (make code | 0x80 on release).
const CTRL_ALT_DEL_SET1: [u8; 8] = [0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d];

/// Errors pressing keys.
#[derive(Debug, thiserror::Error)]
pub enum I8042Error {
    /// The guest has its keyboard (scanning, interface or interrupt) turned off.
    #[error("the guest's keyboard is not listening (scanning, interface or interrupt off)")]
    NotListening,
    /// Raising IRQ 1 failed.
    #[error("raising the keyboard interrupt: {0}")]
    Irq(#[from] std::io::Error),
}

/// A controller command that waits for its parameter on the data port.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Pending {
    None,
    /// 0x60: write the configuration byte.
    WriteCtr,
    /// 0x61..0x7f: write another byte of controller RAM (ignored).
    WriteRam,
    /// 0xD1: write the output port.
    WriteOutport,
    /// 0xD2: put a byte in the output buffer as if the keyboard had sent it.
    WriteKbdOut,
    /// 0xD3 / 0xD4: a byte for the (absent) AUX device or its output buffer; dropped.
    Aux,
}

/// The i8042 controller and its keyboard, a [`BusDevice`] for the I/O window
/// [`I8042_DATA_PORT`]..+[`I8042_IO_LEN`].
pub struct I8042 {
    ctr: u8,
    outport: u8,
    /// The last write went to the command port (status bit 3).
    last_was_command: bool,
    pending: Pending,
    out: VecDeque<u8>,
    /// The last byte read from the data port (what an empty buffer reads as).
    last_read: u8,
    /// The keyboard command waiting for its parameter byte (0xED, 0xF0, 0xF3).
    kbd_expect: Option<u8>,
    /// The keyboard is scanning (sending keys); 0xF5 stops it, 0xF4/0xF6/0xFF restart it.
    kbd_scanning: bool,
    irq: EventFd,
    events: Arc<GuestEvents>,
}

impl I8042 {
    /// A controller in the state a BIOS leaves it in, raising IRQ 1 by writing `irq` and
    /// signalling resets through `events`.
    pub fn new(irq: EventFd, events: Arc<GuestEvents>) -> Self {
        Self {
            ctr: CTR_INITIAL,
            outport: OUTPORT_RESET | OUTPORT_A20,
            last_was_command: false,
            pending: Pending::None,
            out: VecDeque::new(),
            last_read: 0,
            kbd_expect: None,
            kbd_scanning: true,
            irq,
            events,
        }
    }

    /// Press and release Ctrl-Alt-Del: queue the make and break codes of left Ctrl, left Alt
    /// and Delete — scancode set 1 when the configuration byte's translation bit is set (as
    /// Linux leaves it), set 2 otherwise — and raise IRQ 1.
    ///
    /// Errors: [`I8042Error::NotListening`] when the guest's keyboard does not scan (nothing
    /// is queued) or the controller's keyboard interrupt or interface is off (the keys are
    /// queued, for the guest to read when it turns them back on); [`I8042Error::Irq`] when the
    /// interrupt eventfd cannot be written.
    pub fn trigger_ctrl_alt_del(&mut self) -> Result<(), I8042Error> {
        if !self.kbd_scanning {
            return Err(I8042Error::NotListening);
        }
        let seq: &[u8] = if self.ctr & CTR_XLATE != 0 { &CTRL_ALT_DEL_SET1 } else { &CTRL_ALT_DEL_SET2 };
        for &b in seq {
            if self.out.len() < QUEUE_MAX {
                self.out.push_back(b);
            }
        }
        if self.ctr & CTR_KBDINT == 0 {
            return Err(I8042Error::NotListening);
        }
        self.irq.write(1)?;
        if self.ctr & CTR_KBDDIS != 0 {
            return Err(I8042Error::NotListening);
        }
        Ok(())
    }

    fn raise(&self) {
        if self.ctr & CTR_KBDINT != 0
            && let Err(e) = self.irq.write(1)
        {
            tracing::warn!(error = %e, "raising the i8042 keyboard interrupt");
        }
    }

    /// Put one byte in the output buffer; interrupt if it is now at the head.
    fn push(&mut self, b: u8) {
        if self.out.len() >= QUEUE_MAX {
            tracing::debug!(byte = b, "i8042 output queue full; byte dropped");
            return;
        }
        self.out.push_back(b);
        if self.out.len() == 1 {
            self.raise();
        }
    }

    fn status(&self) -> u8 {
        let mut s = STR_KEYLOCK;
        if self.ctr & CTR_SYSFLAG != 0 {
            s |= STR_SYSFLAG;
        }
        if !self.out.is_empty() {
            s |= STR_OBF;
        }
        if self.last_was_command {
            s |= STR_CMDDAT;
        }
        s
    }

    fn read_data(&mut self) -> u8 {
        if let Some(b) = self.out.pop_front() {
            self.last_read = b;
            if !self.out.is_empty() {
                self.raise();
            }
        }
        self.last_read
    }

    fn reset_line(&self, why: &'static str) {
        tracing::info!(why, "i8042 reset line pulsed");
        self.events.signal(GuestEvent::Reset);
    }

    fn command(&mut self, cmd: u8) {
        self.pending = Pending::None;
        match cmd {
            0x20 => self.push(self.ctr),
            0x21..=0x3f => self.push(0),
            0x60 => self.pending = Pending::WriteCtr,
            0x61..=0x7f => self.pending = Pending::WriteRam,
            // Password installed? No.
            0xa4 => self.push(0xf1),
            // AUX disable; AUX enable leaves it disabled: there is no AUX device, which is
            // how Linux's i8042_toggle_aux() sees one is absent.
            0xa7 => self.ctr |= CTR_AUXDIS,
            0xa8 => {}
            // AUX interface test: clock line stuck low (no device).
            0xa9 => self.push(0x01),
            // Controller self test passed; the POST flag is set.
            0xaa => {
                self.ctr |= CTR_SYSFLAG;
                self.push(0x55);
            }
            // Keyboard interface test passed.
            0xab => self.push(0x00),
            0xad => self.ctr |= CTR_KBDDIS,
            0xae => self.ctr &= !CTR_KBDDIS,
            // Input port: keyboard not inhibited.
            0xc0 => self.push(0x80),
            0xd0 => self.push(self.outport),
            0xd1 => self.pending = Pending::WriteOutport,
            0xd2 => self.pending = Pending::WriteKbdOut,
            0xd3 | 0xd4 => self.pending = Pending::Aux,
            // Pulse output port bits 0..3 low for those clear in the command; bit 0 is reset.
            0xf0..=0xff if cmd & 1 == 0 => self.reset_line("command pulse"),
            _ => {}
        }
    }

    fn write_data(&mut self, v: u8) {
        match std::mem::replace(&mut self.pending, Pending::None) {
            Pending::WriteCtr => {
                self.ctr = v;
                if self.ctr & CTR_KBDINT != 0 && !self.out.is_empty() {
                    self.raise();
                }
            }
            Pending::WriteOutport => {
                self.outport = v;
                if v & OUTPORT_RESET == 0 {
                    self.reset_line("output port write");
                }
            }
            Pending::WriteKbdOut => self.push(v),
            Pending::WriteRam | Pending::Aux => {}
            Pending::None => self.keyboard(v),
        }
    }

    /// A byte sent to the keyboard (a PS/2 keyboard command or a command's parameter).
    fn keyboard(&mut self, v: u8) {
        if let Some(cmd) = self.kbd_expect.take() {
            self.push(KBD_ACK);
            // 0xF0 0x00 asks for the current scancode set.
            if cmd == 0xf0 && v == 0 {
                self.push(2);
            }
            return;
        }
        match v {
            // Set LEDs, select scancode set, set typematic rate: a parameter follows.
            0xed | 0xf0 | 0xf3 => {
                self.kbd_expect = Some(v);
                self.push(KBD_ACK);
            }
            0xee => self.push(0xee),
            // Identify: an MF2 keyboard, 0xAB 0x83 (0x83 reads 0x41 through translation).
            0xf2 => {
                self.push(KBD_ACK);
                self.push(0xab);
                self.push(if self.ctr & CTR_XLATE != 0 { 0x41 } else { 0x83 });
            }
            0xf4 | 0xf6 => {
                self.kbd_scanning = true;
                self.push(KBD_ACK);
            }
            0xf5 => {
                self.kbd_scanning = false;
                self.push(KBD_ACK);
            }
            0xf7..=0xfe => self.push(KBD_ACK),
            // Reset and self test (BAT) passed.
            0xff => {
                self.kbd_scanning = true;
                self.push(KBD_ACK);
                self.push(KBD_BAT_OK);
            }
            _ => self.push(KBD_RESEND),
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let v = match offset {
            DATA_OFFSET => self.read_data(),
            COMMAND_OFFSET => self.status(),
            _ => 0,
        };
        data.fill(0);
        if let Some(d) = data.first_mut() {
            *d = v;
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&v) = data.first() else { return };
        match offset {
            DATA_OFFSET => {
                self.last_was_command = false;
                self.write_data(v);
            }
            COMMAND_OFFSET => {
                self.last_was_command = true;
                self.command(v);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    struct Rig {
        dev: I8042,
        irq: EventFd,
        events: Arc<GuestEvents>,
    }

    fn rig() -> Rig {
        let irq = EventFd::new(EFD_NONBLOCK).expect("eventfd");
        let events = Arc::new(GuestEvents::default());
        Rig { dev: I8042::new(irq.try_clone().expect("clone"), events.clone()), irq, events }
    }

    impl Rig {
        fn cmd(&mut self, c: u8) {
            self.dev.write(4, &[c]);
        }
        fn data(&mut self, v: u8) {
            self.dev.write(0, &[v]);
        }
        fn status(&mut self) -> u8 {
            let mut d = [0];
            self.dev.read(4, &mut d);
            d[0]
        }
        /// Read the output buffer the way i8042.c does: only while OBF is set.
        fn drain(&mut self) -> Vec<u8> {
            let mut v = vec![];
            while self.status() & STR_OBF != 0 {
                let mut d = [0];
                self.dev.read(0, &mut d);
                v.push(d[0]);
            }
            v
        }
        /// Interrupts raised since the last call.
        fn irqs(&self) -> u64 {
            self.irq.read().unwrap_or(0)
        }
    }

    #[test]
    fn linux_probe_sequence_gets_the_answers_it_expects() {
        let mut r = rig();
        // i8042_platform_init: A20 through the output port, then the null command.
        r.cmd(0xd1);
        r.data(0xdf);
        r.cmd(0xff);
        // i8042_controller_check: nothing to flush.
        assert_eq!(r.status() & STR_OBF, 0);
        assert_eq!(r.events.pending(), None);
        // i8042_controller_selftest.
        r.cmd(0xaa);
        assert_eq!(r.drain(), vec![0x55]);
        // i8042_controller_init: two equal CTR reads; keylock not active; translation on.
        r.cmd(0x20);
        let ctr = r.drain();
        r.cmd(0x20);
        assert_eq!(r.drain(), ctr);
        let ctr = ctr[0];
        assert_ne!(ctr & CTR_XLATE, 0);
        assert_ne!(r.status() & STR_KEYLOCK, 0);
        assert_ne!(r.status() & STR_SYSFLAG, 0);
        r.irqs();
        // Disable the keyboard port and its interrupt, write the CTR back.
        r.cmd(0x60);
        assert_ne!(r.status() & STR_CMDDAT, 0);
        r.data((ctr | CTR_KBDDIS) & !CTR_KBDINT);
        assert_eq!(r.status() & STR_CMDDAT, 0);
        r.cmd(0x20);
        assert_eq!(r.drain(), vec![(ctr | CTR_KBDDIS) & !CTR_KBDINT]);
        assert_eq!(r.irqs(), 0, "no interrupt while KBDINT is off");
        // The AUX port reads as absent (i8042_check_aux without i8042.noaux).
        r.cmd(0xa9);
        assert_eq!(r.drain(), vec![0x01]);
        r.cmd(0xa8);
        r.cmd(0x20);
        assert_ne!(r.drain()[0] & CTR_AUXDIS, 0, "enabling AUX does not take");
        // i8042_enable_kbd_port.
        let on = (ctr & !CTR_KBDDIS) | CTR_KBDINT;
        r.cmd(0x60);
        r.data(on);
        // atkbd_probe (without i8042.dumbkbd): GETID answers ACK, 0xAB, 0x41 (translated),
        // byte by byte, each with an interrupt.
        r.data(0xf2);
        assert_eq!(r.irqs(), 1);
        let mut got = vec![];
        for _ in 0..3 {
            let mut d = [0];
            r.dev.read(0, &mut d);
            got.push(d[0]);
        }
        assert_eq!(got, vec![KBD_ACK, 0xab, 0x41]);
        assert_eq!(r.irqs(), 2, "one more interrupt per byte left at the head");
        // Deactivate, LEDs off, fastest repeat, activate: each byte acknowledged.
        for b in [0xf5, 0xed, 0x00, 0xf3, 0x00, 0xf4] {
            r.data(b);
            assert_eq!(r.drain(), vec![KBD_ACK], "byte {b:#x}");
        }
        assert_eq!(r.irqs(), 6);
        // Keyboard reset: ACK then BAT passed; echo.
        r.data(0xff);
        assert_eq!(r.drain(), vec![KBD_ACK, KBD_BAT_OK]);
        r.data(0xee);
        assert_eq!(r.drain(), vec![0xee]);
        assert_eq!(r.events.pending(), None);
    }

    #[test]
    fn ctrl_alt_del_follows_translation_and_interrupts() {
        let mut r = rig();
        r.dev.trigger_ctrl_alt_del().expect("delivered");
        assert_eq!(r.irqs(), 1);
        assert_eq!(r.drain(), CTRL_ALT_DEL_SET1.to_vec());
        assert!(r.irqs() >= 1, "the bytes after the first interrupt again");
        // Untranslated (i8042.direct): set 2 codes.
        r.cmd(0x60);
        r.data(CTR_KBDINT | CTR_SYSFLAG);
        r.dev.trigger_ctrl_alt_del().expect("delivered");
        assert_eq!(r.drain(), vec![0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14]);
        // With the interrupt off the keys wait for the guest, which is told it did not listen.
        r.irqs();
        r.cmd(0x60);
        r.data(CTR_XLATE);
        assert!(matches!(r.dev.trigger_ctrl_alt_del(), Err(I8042Error::NotListening)));
        assert_eq!(r.irqs(), 0);
        r.cmd(0x60);
        r.data(CTR_XLATE | CTR_KBDINT);
        assert_eq!(r.irqs(), 1, "enabling the interrupt with data waiting raises it");
        assert_eq!(r.drain(), CTRL_ALT_DEL_SET1.to_vec());
        // A keyboard that does not scan sends nothing.
        r.data(0xf5);
        r.drain();
        assert!(matches!(r.dev.trigger_ctrl_alt_del(), Err(I8042Error::NotListening)));
        assert_eq!(r.status() & STR_OBF, 0);
    }

    #[test]
    fn reset_command_and_output_port_signal_reset() {
        let mut r = rig();
        r.cmd(0xfe);
        assert_eq!(r.events.pending(), Some(GuestEvent::Reset));
        let mut r = rig();
        r.cmd(0xd1);
        r.data(0xfe); // reset line (bit 0) low
        assert_eq!(r.events.pending(), Some(GuestEvent::Reset));
        let mut r = rig();
        r.cmd(0xd0);
        assert_eq!(r.drain(), vec![OUTPORT_RESET | OUTPORT_A20]);
        assert_eq!(r.events.pending(), None);
    }

    #[test]
    fn the_queue_is_bounded() {
        let mut r = rig();
        for _ in 0..100 {
            r.data(0xee);
        }
        assert_eq!(r.drain().len(), QUEUE_MAX);
    }
}
