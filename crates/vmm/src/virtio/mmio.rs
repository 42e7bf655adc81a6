//! The virtio-mmio transport, version 2 ("modern", virtio 1.2 §4.2.2): one device's register
//! window (0x000..0x100 registers, 32-bit accesses; 0x100.. the device configuration space),
//! mapped by the VMM at `layout::VIRTIO_MMIO_BASE + i * layout::VIRTIO_MMIO_SIZE` with GSI
//! `layout::VIRTIO_IRQ_BASE + i`.
//!
//! Driver protocol it follows (§3.1.1, §4.2.3): reset (Status 0), ACKNOWLEDGE, DRIVER, read
//! DeviceFeatures through DeviceFeaturesSel, write DriverFeatures, FEATURES_OK (kept only if
//! the driver's features are a subset of the offered ones and include VERSION_1), per queue
//! QueueSel / QueueNumMax / QueueNum / Queue{Desc,Driver,Device}{Low,High} / QueueReady, then
//! DRIVER_OK, which activates the device.

use std::sync::Arc;

pub use super::Interrupt;
use super::{F_EVENT_IDX, F_VERSION_1, Memory, VirtioDevice};
use crate::bus::BusDevice;
use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_CONFIG_S_FAILED, VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET,
};
use virtio_bindings::virtio_mmio::*;
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestAddress;

/// `MagicValue`: "virt" little endian.
pub const MAGIC: u32 = 0x7472_6976;
/// `Version`: 2, the modern (non-legacy) interface.
pub const VERSION: u32 = 2;
/// `VendorID` this VMM reports ("CLDL").
pub const VENDOR_ID: u32 = u32::from_le_bytes(*b"CLDL");
/// Offset of the device configuration space in the window.
pub const CONFIG_OFFSET: u64 = VIRTIO_MMIO_CONFIG as u64;

/// One virtio-mmio device: registers, negotiated state, the queues' configuration and the
/// device behind them. Implements [`BusDevice`] for its window (offsets from the window's
/// start, as `Bus` routes them).
pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    mem: Memory,
    interrupt: Arc<Interrupt>,
    queues: Vec<Queue>,
    queue_sel: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    driver_features_beyond_64: bool,
    status: u32,
    activated: bool,
}

impl MmioTransport {
    /// Wrap `device`, working on `mem`, interrupting through `interrupt` (made with
    /// [`Interrupt::new`] from the eventfd the caller registered as an irqfd on the device's
    /// GSI). A queue the device declares with an invalid maximum size (zero, above 32768, not
    /// a power of two: a device bug) is logged and shows the driver `QueueNumMax` 0, i.e. absent.
    pub fn new(device: Box<dyn VirtioDevice>, mem: Memory, interrupt: Interrupt) -> Self {
        let device_type = device.device_type();
        let queues = device
            .queue_max_sizes()
            .iter()
            .map(|&size| {
                Queue::new(size).unwrap_or_else(|_| {
                    tracing::error!(device_type, size, "virtio-mmio: the device declares an invalid queue size");
                    Queue::default()
                })
            })
            .collect();
        MmioTransport {
            device,
            mem,
            interrupt: Arc::new(interrupt),
            queues,
            queue_sel: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            driver_features_beyond_64: false,
            status: 0,
            activated: false,
        }
    }

    /// The device's interrupt (its eventfd and status bits).
    pub fn interrupt(&self) -> &Arc<Interrupt> {
        &self.interrupt
    }

    /// The virtio device ID behind this transport.
    pub fn device_type(&self) -> u32 {
        self.device.device_type()
    }

    /// Whether the driver set DRIVER_OK and the device is running.
    pub fn is_activated(&self) -> bool {
        self.activated
    }

    /// The `Status` register (driver bits plus DEVICE_NEEDS_RESET when the device asks).
    pub fn status(&self) -> u32 {
        self.status | if self.interrupt.needs_reset() { VIRTIO_CONFIG_S_NEEDS_RESET } else { 0 }
    }

    /// What the device offers: its own bits and VERSION_1.
    fn offered(&self) -> u64 {
        self.device.features() | F_VERSION_1
    }

    /// The driver's error: log it and report DEVICE_NEEDS_RESET (§2.1.2).
    fn needs_reset(&self, what: &str) {
        tracing::warn!(device_type = self.device_type(), "virtio-mmio: {what}; device needs reset");
        self.interrupt.signal_needs_reset();
    }

    /// Device reset (Status written 0, §2.4; §4.2.3.1): the device stops and every register
    /// returns to its initial value.
    fn reset(&mut self) {
        self.device.reset();
        for q in &mut self.queues {
            q.reset();
        }
        self.interrupt.clear();
        self.queue_sel = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.driver_features_beyond_64 = false;
        self.status = 0;
        self.activated = false;
    }

    fn set_status(&mut self, v: u32) {
        if v == 0 {
            self.reset();
            return;
        }
        let old = self.status;
        let mut new = v & !VIRTIO_CONFIG_S_NEEDS_RESET;
        if old & !new != 0 && new & VIRTIO_CONFIG_S_FAILED == 0 {
            tracing::warn!(old, new, "virtio-mmio: driver cleared status bits without a reset");
        }
        if new & VIRTIO_CONFIG_S_FEATURES_OK != 0 && old & VIRTIO_CONFIG_S_FEATURES_OK == 0 {
            let extra = self.driver_features & !self.offered();
            if extra != 0 || self.driver_features_beyond_64 || self.driver_features & F_VERSION_1 == 0 {
                tracing::warn!(driver = self.driver_features, offered = self.offered(), "virtio-mmio: refusing FEATURES_OK");
                new &= !VIRTIO_CONFIG_S_FEATURES_OK;
            }
        }
        self.status = new;
        if new & VIRTIO_CONFIG_S_DRIVER_OK != 0 && old & VIRTIO_CONFIG_S_DRIVER_OK == 0 {
            if new & VIRTIO_CONFIG_S_FEATURES_OK == 0 {
                self.needs_reset("DRIVER_OK without FEATURES_OK");
            } else if self.interrupt.needs_reset() {
                tracing::warn!(device_type = self.device_type(), "virtio-mmio: DRIVER_OK while the device needs a reset; not started");
            } else {
                self.activate();
            }
        }
    }

    fn activate(&mut self) {
        let event_idx = self.driver_features & F_EVENT_IDX != 0;
        let mut queues = Vec::with_capacity(self.queues.len());
        for (i, q) in self.queues.iter().enumerate() {
            if q.ready() && !q.is_valid(&self.mem) {
                self.needs_reset(&format!("queue {i} lies outside guest memory"));
                return;
            }
            match Queue::try_from(q.state()) {
                Ok(mut q) => {
                    q.set_event_idx(event_idx);
                    queues.push(q);
                }
                Err(e) => {
                    self.needs_reset(&format!("queue {i}: {e}"));
                    return;
                }
            }
        }
        match self.device.activate(self.mem.clone(), queues, self.interrupt.clone(), self.driver_features) {
            Ok(()) => {
                self.activated = true;
                tracing::debug!(device_type = self.device_type(), features = self.driver_features, "virtio-mmio: device activated");
            }
            Err(e) => self.needs_reset(&format!("activation failed: {e}")),
        }
    }

    /// The selected queue, if the device has it and the driver may still configure it.
    fn queue_for_setup(&mut self) -> Option<&mut Queue> {
        let (i, activated) = (self.queue_sel as usize, self.activated);
        match self.queues.get_mut(i) {
            Some(q) if !q.ready() && !activated => Some(q),
            Some(_) => {
                tracing::warn!(queue = i, "virtio-mmio: queue configured while ready; ignored");
                None
            }
            None => {
                tracing::warn!(queue = i, "virtio-mmio: no such queue; ignored");
                None
            }
        }
    }

    /// Write one 32-bit half of a ring address (`high` selects bits 32..64).
    fn set_ring_address(&mut self, which: u32, high: bool, v: u32) {
        let Some(q) = self.queue_for_setup() else { return };
        let old = match which {
            VIRTIO_MMIO_QUEUE_DESC_LOW => q.desc_table(),
            VIRTIO_MMIO_QUEUE_AVAIL_LOW => q.avail_ring(),
            _ => q.used_ring(),
        };
        let addr = GuestAddress(if high { (old & 0xffff_ffff) | ((v as u64) << 32) } else { (old & !0xffff_ffff) | v as u64 });
        let r = match which {
            VIRTIO_MMIO_QUEUE_DESC_LOW => q.try_set_desc_table_address(addr),
            VIRTIO_MMIO_QUEUE_AVAIL_LOW => q.try_set_avail_ring_address(addr),
            _ => q.try_set_used_ring_address(addr),
        };
        if let Err(e) = r {
            self.needs_reset(&format!("queue {} address {:#x}: {e}", self.queue_sel, addr.0));
        }
    }

    fn read_reg(&self, off: u32) -> u32 {
        let q = self.queues.get(self.queue_sel as usize);
        match off {
            VIRTIO_MMIO_MAGIC_VALUE => MAGIC,
            VIRTIO_MMIO_VERSION => VERSION,
            VIRTIO_MMIO_DEVICE_ID => self.device.device_type(),
            VIRTIO_MMIO_VENDOR_ID => VENDOR_ID,
            VIRTIO_MMIO_DEVICE_FEATURES => match self.device_features_sel {
                0 => self.offered() as u32,
                1 => (self.offered() >> 32) as u32,
                _ => 0,
            },
            VIRTIO_MMIO_QUEUE_NUM_MAX => q.map_or(0, |q| q.max_size() as u32),
            VIRTIO_MMIO_QUEUE_READY => q.map_or(0, |q| q.ready() as u32),
            VIRTIO_MMIO_INTERRUPT_STATUS => self.interrupt.status(),
            VIRTIO_MMIO_STATUS => self.status(),
            // No shared memory regions: their length reads as -1 (§4.2.2).
            VIRTIO_MMIO_SHM_LEN_LOW | VIRTIO_MMIO_SHM_LEN_HIGH => u32::MAX,
            VIRTIO_MMIO_SHM_BASE_LOW | VIRTIO_MMIO_SHM_BASE_HIGH => u32::MAX,
            // The configuration never changes under the driver.
            VIRTIO_MMIO_CONFIG_GENERATION => 0,
            _ => {
                tracing::debug!(offset = off, "virtio-mmio: read of an unknown or write-only register");
                0
            }
        }
    }

    fn write_reg(&mut self, off: u32, v: u32) {
        match off {
            VIRTIO_MMIO_DEVICE_FEATURES_SEL => self.device_features_sel = v,
            VIRTIO_MMIO_DRIVER_FEATURES_SEL => self.driver_features_sel = v,
            VIRTIO_MMIO_DRIVER_FEATURES => {
                if self.status & VIRTIO_CONFIG_S_DRIVER == 0 || self.status & VIRTIO_CONFIG_S_FEATURES_OK != 0 {
                    tracing::warn!(status = self.status, "virtio-mmio: DriverFeatures written outside negotiation; ignored");
                    return;
                }
                match self.driver_features_sel {
                    0 => self.driver_features = (self.driver_features & !0xffff_ffff) | v as u64,
                    1 => self.driver_features = (self.driver_features & 0xffff_ffff) | ((v as u64) << 32),
                    // Nothing is offered past bit 63: any bit set there makes the set refused.
                    _ => self.driver_features_beyond_64 |= v != 0,
                }
            }
            VIRTIO_MMIO_QUEUE_SEL => self.queue_sel = v,
            VIRTIO_MMIO_QUEUE_NUM => {
                let sel = self.queue_sel;
                let Some(q) = self.queue_for_setup() else { return };
                let max = q.max_size();
                let size = u16::try_from(v).unwrap_or(0);
                if q.try_set_size(size).is_err() {
                    self.needs_reset(&format!("queue {sel}: size {v} is not a power of two in 1..={max}"));
                }
            }
            VIRTIO_MMIO_QUEUE_READY => {
                // The register reads back what was written (§4.2.2); a running device keeps
                // using its queues until a reset (there is no VIRTIO_F_RING_RESET).
                let (i, activated) = (self.queue_sel as usize, self.activated);
                match self.queues.get_mut(i) {
                    Some(q) => {
                        if activated {
                            tracing::debug!(queue = i, value = v, "virtio-mmio: QueueReady written while running");
                        }
                        q.set_ready(v == 1);
                    }
                    None => tracing::warn!(queue = i, "virtio-mmio: QueueReady of a queue the device lacks; ignored"),
                }
            }
            VIRTIO_MMIO_QUEUE_DESC_LOW | VIRTIO_MMIO_QUEUE_AVAIL_LOW | VIRTIO_MMIO_QUEUE_USED_LOW => self.set_ring_address(off, false, v),
            VIRTIO_MMIO_QUEUE_DESC_HIGH | VIRTIO_MMIO_QUEUE_AVAIL_HIGH | VIRTIO_MMIO_QUEUE_USED_HIGH => self.set_ring_address(off - 4, true, v),
            VIRTIO_MMIO_QUEUE_NOTIFY => {
                // Without VIRTIO_F_NOTIFICATION_DATA the value is the queue index.
                if self.activated && (v as usize) < self.queues.len() {
                    self.device.notify(v as u16);
                } else if !self.activated {
                    tracing::debug!(queue = v, "virtio-mmio: notify before DRIVER_OK; ignored");
                } else {
                    tracing::warn!(queue = v, "virtio-mmio: notify of a queue the device lacks");
                }
            }
            VIRTIO_MMIO_INTERRUPT_ACK => self.interrupt.ack(v),
            VIRTIO_MMIO_STATUS => self.set_status(v),
            VIRTIO_MMIO_SHM_SEL => {}
            _ => tracing::debug!(offset = off, value = v, "virtio-mmio: write to an unknown or read-only register; ignored"),
        }
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if offset >= CONFIG_OFFSET {
            self.device.read_config(offset - CONFIG_OFFSET, data);
        } else if data.len() == 4 && offset.is_multiple_of(4) {
            data.copy_from_slice(&self.read_reg(offset as u32).to_le_bytes());
        } else {
            tracing::warn!(offset, len = data.len(), "virtio-mmio: register read not 32-bit aligned; reads 0");
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= CONFIG_OFFSET {
            self.device.write_config(offset - CONFIG_OFFSET, data);
        } else if let (Ok(b), true) = (<[u8; 4]>::try_from(data), offset.is_multiple_of(4)) {
            self.write_reg(offset as u32, u32::from_le_bytes(b));
        } else {
            tracing::warn!(offset, len = data.len(), "virtio-mmio: register write not 32-bit aligned; ignored");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::super::{ActivateError, testing};
    use super::*;
    use virtio_bindings::virtio_config::{VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER};

    /// A queue as the device got it: size, desc, avail, used, event idx.
    type QueueSeen = (u16, u64, u64, u64, bool);

    /// What the test device saw.
    #[derive(Default, Debug)]
    struct Seen {
        activated: Option<(usize, u64, Vec<QueueSeen>)>,
        notified: Vec<u16>,
        resets: usize,
    }

    struct TestDevice(Arc<Mutex<Seen>>);

    impl VirtioDevice for TestDevice {
        fn device_type(&self) -> u32 {
            42
        }
        fn queue_max_sizes(&self) -> &[u16] {
            &[256, 64]
        }
        fn features(&self) -> u64 {
            (1 << 3) | F_EVENT_IDX
        }
        fn read_config(&self, offset: u64, data: &mut [u8]) {
            super::super::read_config_bytes(&[0xa, 0xb, 0xc, 0xd, 0xe], offset, data);
        }
        fn activate(&mut self, _mem: Memory, queues: Vec<Queue>, _i: Arc<Interrupt>, features: u64) -> Result<(), ActivateError> {
            let qs = queues.iter().map(|q| (q.size(), q.desc_table(), q.avail_ring(), q.used_ring(), q.event_idx_enabled())).collect();
            self.0.lock().unwrap().activated = Some((queues.len(), features, qs));
            Ok(())
        }
        fn notify(&mut self, queue: u16) {
            self.0.lock().unwrap().notified.push(queue);
        }
        fn reset(&mut self) {
            self.0.lock().unwrap().resets += 1;
        }
    }

    fn transport() -> (MmioTransport, Arc<Mutex<Seen>>) {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let irq = Interrupt::new(vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK).unwrap());
        let t = MmioTransport::new(Box::new(TestDevice(seen.clone())), testing::memory(), irq);
        (t, seen)
    }

    fn r(t: &mut MmioTransport, off: u32) -> u32 {
        let mut d = [0u8; 4];
        t.read(off as u64, &mut d);
        u32::from_le_bytes(d)
    }

    fn w(t: &mut MmioTransport, off: u32, v: u32) {
        t.write(off as u64, &v.to_le_bytes());
    }

    /// The Linux driver's sequence up to FEATURES_OK; returns the status read back.
    fn negotiate(t: &mut MmioTransport, features: u64) -> u32 {
        w(t, VIRTIO_MMIO_STATUS, 0);
        w(t, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
        w(t, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
        for (sel, word) in [(0, features as u32), (1, (features >> 32) as u32)] {
            w(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, sel);
            w(t, VIRTIO_MMIO_DRIVER_FEATURES, word);
        }
        w(t, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK);
        r(t, VIRTIO_MMIO_STATUS)
    }

    fn setup_queue(t: &mut MmioTransport, i: u32, size: u32, desc: u64, avail: u64, used: u64) {
        w(t, VIRTIO_MMIO_QUEUE_SEL, i);
        assert_eq!(r(t, VIRTIO_MMIO_QUEUE_READY), 0);
        w(t, VIRTIO_MMIO_QUEUE_NUM, size);
        for (low, a) in [(VIRTIO_MMIO_QUEUE_DESC_LOW, desc), (VIRTIO_MMIO_QUEUE_AVAIL_LOW, avail), (VIRTIO_MMIO_QUEUE_USED_LOW, used)] {
            w(t, low, a as u32);
            w(t, low + 4, (a >> 32) as u32);
        }
        w(t, VIRTIO_MMIO_QUEUE_READY, 1);
    }

    const OK: u32 = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK;

    #[test]
    fn identification_features_and_config_space() {
        let (mut t, _) = transport();
        assert_eq!(r(&mut t, VIRTIO_MMIO_MAGIC_VALUE), 0x7472_6976);
        assert_eq!(r(&mut t, VIRTIO_MMIO_VERSION), 2);
        assert_eq!(r(&mut t, VIRTIO_MMIO_DEVICE_ID), 42);
        w(&mut t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
        assert_eq!(r(&mut t, VIRTIO_MMIO_DEVICE_FEATURES), (1 << 3) | (1 << 29));
        w(&mut t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
        assert_eq!(r(&mut t, VIRTIO_MMIO_DEVICE_FEATURES), 1, "VERSION_1 is bit 32");
        w(&mut t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 2);
        assert_eq!(r(&mut t, VIRTIO_MMIO_DEVICE_FEATURES), 0);
        w(&mut t, VIRTIO_MMIO_QUEUE_SEL, 1);
        assert_eq!(r(&mut t, VIRTIO_MMIO_QUEUE_NUM_MAX), 64);
        w(&mut t, VIRTIO_MMIO_QUEUE_SEL, 2);
        assert_eq!(r(&mut t, VIRTIO_MMIO_QUEUE_NUM_MAX), 0, "no third queue");
        let mut b = [0u8; 2];
        t.read(CONFIG_OFFSET + 3, &mut b);
        assert_eq!(b, [0xd, 0xe]);
        let mut one = [0u8; 1];
        t.read(CONFIG_OFFSET + 100, &mut one);
        assert_eq!(one, [0]);
        // A misaligned register read reads 0 and does not panic.
        let mut d = [0xffu8; 2];
        t.read(2, &mut d);
        assert_eq!(d, [0, 0]);
    }

    #[test]
    fn features_ok_is_refused_for_unoffered_bits_or_without_version_1() {
        let (mut t, _) = transport();
        assert_eq!(negotiate(&mut t, F_VERSION_1 | (1 << 4)) & VIRTIO_CONFIG_S_FEATURES_OK, 0, "bit 4 was not offered");
        assert_eq!(negotiate(&mut t, 1 << 3) & VIRTIO_CONFIG_S_FEATURES_OK, 0, "legacy driver refused");
        assert_eq!(negotiate(&mut t, F_VERSION_1 | (1 << 3)), OK);
        // Refused features leave the device unstartable: DRIVER_OK does not activate it.
        let (mut t2, seen2) = transport();
        negotiate(&mut t2, F_VERSION_1 | (1 << 7));
        w(&mut t2, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_DRIVER_OK);
        assert!(seen2.lock().unwrap().activated.is_none());
        assert_ne!(r(&mut t2, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
    }

    #[test]
    fn driver_ok_activates_with_the_configured_queues_then_notify_and_reset() {
        let (mut t, seen) = transport();
        assert_eq!(negotiate(&mut t, F_VERSION_1 | F_EVENT_IDX), OK);
        setup_queue(&mut t, 0, 128, 0x1_0000, 0x1_1000, 0x1_2000);
        setup_queue(&mut t, 1, 64, 0x2_0000, 0x2_1000, 0x2_2000);
        w(&mut t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
        assert!(seen.lock().unwrap().notified.is_empty(), "no notify before DRIVER_OK");
        w(&mut t, VIRTIO_MMIO_STATUS, OK | VIRTIO_CONFIG_S_DRIVER_OK);
        assert!(t.is_activated());
        {
            let s = seen.lock().unwrap();
            let (n, features, qs) = s.activated.clone().expect("activated");
            assert_eq!((n, features), (2, F_VERSION_1 | F_EVENT_IDX));
            assert_eq!(qs[0], (128, 0x1_0000, 0x1_1000, 0x1_2000, true));
            assert_eq!(qs[1], (64, 0x2_0000, 0x2_1000, 0x2_2000, true));
        }
        w(&mut t, VIRTIO_MMIO_QUEUE_NOTIFY, 1);
        w(&mut t, VIRTIO_MMIO_QUEUE_NOTIFY, 7);
        assert_eq!(seen.lock().unwrap().notified, vec![1]);
        // Interrupt status and acknowledgement.
        t.interrupt().signal_used();
        t.interrupt().signal_config();
        assert_eq!(r(&mut t, VIRTIO_MMIO_INTERRUPT_STATUS), 3);
        w(&mut t, VIRTIO_MMIO_INTERRUPT_ACK, 1);
        assert_eq!(r(&mut t, VIRTIO_MMIO_INTERRUPT_STATUS), 2);
        // Reset: everything back to the start, the device told.
        let resets = seen.lock().unwrap().resets;
        w(&mut t, VIRTIO_MMIO_STATUS, 0);
        assert_eq!(r(&mut t, VIRTIO_MMIO_STATUS), 0);
        assert_eq!(r(&mut t, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
        assert!(!t.is_activated());
        assert_eq!(seen.lock().unwrap().resets, resets + 1);
        w(&mut t, VIRTIO_MMIO_QUEUE_SEL, 0);
        assert_eq!(r(&mut t, VIRTIO_MMIO_QUEUE_READY), 0);
        // And it can be brought up again.
        assert_eq!(negotiate(&mut t, F_VERSION_1), OK);
        setup_queue(&mut t, 0, 256, 0x3_0000, 0x3_1000, 0x3_2000);
        setup_queue(&mut t, 1, 64, 0x4_0000, 0x4_1000, 0x4_2000);
        w(&mut t, VIRTIO_MMIO_STATUS, OK | VIRTIO_CONFIG_S_DRIVER_OK);
        let s = seen.lock().unwrap();
        let (_, features, qs) = s.activated.clone().expect("activated again");
        assert_eq!(features, F_VERSION_1);
        assert_eq!(qs[0], (256, 0x3_0000, 0x3_1000, 0x3_2000, false));
    }

    #[test]
    fn bad_queue_sizes_and_addresses_set_needs_reset_not_panic() {
        for (size, desc) in [(100, 0x1_0000u64), (512, 0x1_0000), (0, 0x1_0000), (128, 0x1_0008), (128, 0x7fff_0000_0000)] {
            let (mut t, seen) = transport();
            negotiate(&mut t, F_VERSION_1);
            setup_queue(&mut t, 0, size, desc, 0x1_1000, 0x1_2000);
            setup_queue(&mut t, 1, 64, 0x2_0000, 0x2_1000, 0x2_2000);
            w(&mut t, VIRTIO_MMIO_STATUS, OK | VIRTIO_CONFIG_S_DRIVER_OK);
            let status = r(&mut t, VIRTIO_MMIO_STATUS);
            assert_ne!(status & VIRTIO_CONFIG_S_NEEDS_RESET, 0, "size {size} desc {desc:#x}");
            if desc == 0x7fff_0000_0000 {
                assert!(seen.lock().unwrap().activated.is_none(), "a ring outside memory is not activated");
            }
            // A reset clears it.
            w(&mut t, VIRTIO_MMIO_STATUS, 0);
            assert_eq!(r(&mut t, VIRTIO_MMIO_STATUS), 0);
        }
    }

    #[test]
    fn a_block_read_end_to_end_through_the_registers_with_event_idx() {
        use std::io::Write;
        use vm_memory::Bytes;

        let mut file = tempfile::NamedTempFile::new().unwrap();
        let image: Vec<u8> = (0..4096u32).map(|i| (i % 253) as u8).collect();
        file.write_all(&image).unwrap();
        let spec = crate::spec::DiskSpec { path: file.path().into(), read_only: false };
        let dev = super::super::block::Block::open(&spec, "disk0").unwrap();
        let mem = testing::memory();
        let irq = Interrupt::new(vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK).unwrap());
        let mut t = MmioTransport::new(Box::new(dev), mem.clone(), irq);
        assert_eq!(r(&mut t, VIRTIO_MMIO_DEVICE_ID), 2);
        let mut cap = [0u8; 8];
        t.read(CONFIG_OFFSET, &mut cap);
        assert_eq!(u64::from_le_bytes(cap), 8);
        // The driver takes everything offered (as Linux does for these features).
        w(&mut t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
        let low = r(&mut t, VIRTIO_MMIO_DEVICE_FEATURES) as u64;
        w(&mut t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
        let offered = low | (r(&mut t, VIRTIO_MMIO_DEVICE_FEATURES) as u64) << 32;
        assert_ne!(offered & F_EVENT_IDX, 0);
        assert_eq!(negotiate(&mut t, offered), OK);
        let mut dq = testing::DriverQueue::new(&mem, 0x1_0000, 16);
        setup_queue(&mut t, 0, 16, dq.desc_addr(), dq.avail_addr(), dq.used_addr());
        w(&mut t, VIRTIO_MMIO_STATUS, OK | VIRTIO_CONFIG_S_DRIVER_OK);
        assert!(t.is_activated());
        // Read sector 1.
        let mut hdr = [0u8; 16];
        hdr[8] = 1;
        mem.write_slice(&hdr, GuestAddress(0x4_0000)).unwrap();
        let head = dq.add(&[(0x4_0000, 16, false), (0x5_0000, 512, true), (0x6_0000, 1, true)]);
        w(&mut t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
        assert_eq!(dq.used_idx(), 1);
        assert_eq!(dq.used(0), (head as u32, 513));
        let mut data = vec![0u8; 512];
        mem.read_slice(&mut data, GuestAddress(0x5_0000)).unwrap();
        assert_eq!(data, image[512..1024]);
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x6_0000)).unwrap(), 0);
        assert!(testing::fired(t.interrupt()));
        assert_eq!(r(&mut t, VIRTIO_MMIO_INTERRUPT_STATUS), 1);
        w(&mut t, VIRTIO_MMIO_INTERRUPT_ACK, 1);
        assert_eq!(r(&mut t, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
        let avail_event: u16 = mem.read_obj(GuestAddress(dq.used_addr() + 4 + 8 * 16)).unwrap();
        assert_eq!(avail_event, 1, "event idx: notify me at the next chain");
    }

    #[test]
    fn queue_registers_are_frozen_once_ready() {
        let (mut t, seen) = transport();
        negotiate(&mut t, F_VERSION_1);
        setup_queue(&mut t, 0, 128, 0x1_0000, 0x1_1000, 0x1_2000);
        w(&mut t, VIRTIO_MMIO_QUEUE_NUM, 16);
        w(&mut t, VIRTIO_MMIO_QUEUE_DESC_LOW, 0x5_0000);
        setup_queue(&mut t, 1, 64, 0x2_0000, 0x2_1000, 0x2_2000);
        w(&mut t, VIRTIO_MMIO_STATUS, OK | VIRTIO_CONFIG_S_DRIVER_OK);
        let s = seen.lock().unwrap();
        assert_eq!(s.activated.as_ref().expect("activated").2[0], (128, 0x1_0000, 0x1_1000, 0x1_2000, false));
    }
}
