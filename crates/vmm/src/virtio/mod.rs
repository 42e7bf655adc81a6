//! Virtio devices (virtio 1.2, <https://docs.oasis-open.org/virtio/virtio/v1.2/virtio-v1.2.html>):
//! the virtio-mmio transport ([`mmio`], §4.2), a block device over a raw image file ([`block`],
//! §5.2) and a network device over a tap ([`net`], §5.1).
//!
//! How the pieces fit: a device implements [`VirtioDevice`]; an [`mmio::MmioTransport`] wraps it
//! and is the [`crate::bus::BusDevice`] of one 0x1000-byte MMIO window. The guest's driver
//! negotiates features and sets up the split virtqueues through the transport's registers; on
//! DRIVER_OK the transport hands the device its queues, the guest memory and the [`Interrupt`].
//! Queue notifications (the guest's writes to `QueueNotify`) reach [`VirtioDevice::notify`] on
//! the vCPU thread. Devices signal used buffers through [`Interrupt::signal_used`], which writes
//! the `EventFd` the VMM registered as an irqfd on the device's GSI (edge-triggered).
//!
//! Guest misbehaviour (bad queue addresses, descriptors outside memory, inconsistent rings)
//! never panics: it is logged with `tracing::warn!` and either the request is answered with an
//! error, dropped, or the device is marked DEVICE_NEEDS_RESET (§2.1.2).

pub mod block;
pub mod mmio;
pub mod net;

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use virtio_bindings::virtio_mmio::{VIRTIO_MMIO_INT_CONFIG, VIRTIO_MMIO_INT_VRING};
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

pub use mmio::MmioTransport;

/// The guest memory devices work on (cheap to clone: its regions are shared `Arc`s).
pub type Memory = GuestMemoryMmap;

/// A split-ring descriptor chain over the guest memory.
pub type Chain<'a> = DescriptorChain<&'a Memory>;

/// `VIRTIO_F_VERSION_1` as a feature mask (§6): always offered by the transport.
pub const F_VERSION_1: u64 = 1 << virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
/// `VIRTIO_RING_F_INDIRECT_DESC` (§2.7.5.3): the queue code follows indirect tables.
pub const F_INDIRECT_DESC: u64 = 1 << virtio_bindings::virtio_ring::VIRTIO_RING_F_INDIRECT_DESC;
/// `VIRTIO_RING_F_EVENT_IDX` (§2.7.7, §2.7.10): used/avail event suppression.
pub const F_EVENT_IDX: u64 = 1 << virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;

/// Why a device could not start on DRIVER_OK.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    /// The driver set up a different number of queues than the device has.
    #[error("expected {expected} queues, got {got}")]
    Queues { expected: usize, got: usize },
    /// A host resource (a thread, an eventfd) could not be made.
    #[error("{what}: {source}")]
    Io { what: &'static str, source: std::io::Error },
}

/// One virtio device type behind a transport. Called with the transport's lock held, on the
/// vCPU thread that made the access.
pub trait VirtioDevice: Send {
    /// The virtio device ID (§5: 1 = network, 2 = block).
    fn device_type(&self) -> u32;
    /// The maximum size of each virtqueue, in queue order; each a power of two ≤ 32768.
    fn queue_max_sizes(&self) -> &[u16];
    /// The feature bits the device offers (device-specific bits and ring features such as
    /// [`F_EVENT_IDX`]); the transport adds [`F_VERSION_1`].
    fn features(&self) -> u64;
    /// Read the device configuration space (§4.2.2: from register offset 0x100) at `offset`;
    /// bytes past the structure's end read as zero.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Write the device configuration space; the default ignores writes.
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        let _ = (offset, data);
    }
    /// Start the device on DRIVER_OK: `queues` are the driver's queues in order (ready and
    /// validated against `mem`, event idx already set from the negotiated features),
    /// `features` the negotiated feature bits.
    fn activate(&mut self, mem: Memory, queues: Vec<Queue>, interrupt: Arc<Interrupt>, features: u64) -> Result<(), ActivateError>;
    /// The driver notified queue `queue` (an index into the activated queues).
    fn notify(&mut self, queue: u16);
    /// Device reset (§2.4): stop all work, drop the queues; the device may be activated again.
    fn reset(&mut self);
}

/// A device's interrupt line: the `EventFd` the VMM registers as an irqfd on the device's GSI,
/// and the virtio-mmio `InterruptStatus` bits (§4.2.2: bit 0 used buffer, bit 1 configuration
/// change). Shared by the transport, the device and its worker threads.
#[derive(Debug)]
pub struct Interrupt {
    evt: EventFd,
    status: AtomicU32,
    needs_reset: AtomicBool,
}

impl Interrupt {
    /// Wrap the irqfd `evt` (best created `EFD_NONBLOCK`).
    pub fn new(evt: EventFd) -> Self {
        Interrupt { evt, status: AtomicU32::new(0), needs_reset: AtomicBool::new(false) }
    }

    /// The eventfd (for registering it as an irqfd, or for tests to read).
    pub fn eventfd(&self) -> &EventFd {
        &self.evt
    }

    /// The current `InterruptStatus` bits.
    pub fn status(&self) -> u32 {
        self.status.load(Ordering::SeqCst)
    }

    /// `InterruptACK`: clear `bits`.
    pub fn ack(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::SeqCst);
    }

    /// Tell the driver the device used buffers (status bit 0) and raise the interrupt.
    pub fn signal_used(&self) {
        self.signal(VIRTIO_MMIO_INT_VRING);
    }

    /// Tell the driver the configuration changed (status bit 1) and raise the interrupt.
    pub fn signal_config(&self) {
        self.signal(VIRTIO_MMIO_INT_CONFIG);
    }

    /// The device hit an unrecoverable driver error: the transport reports DEVICE_NEEDS_RESET
    /// in `Status` until the next reset, and a configuration change is signalled (§2.1.2).
    pub fn signal_needs_reset(&self) {
        self.needs_reset.store(true, Ordering::SeqCst);
        self.signal_config();
    }

    /// Whether [`Interrupt::signal_needs_reset`] was called since the last reset.
    pub fn needs_reset(&self) -> bool {
        self.needs_reset.load(Ordering::SeqCst)
    }

    /// Forget the status bits and DEVICE_NEEDS_RESET (a device reset).
    pub(crate) fn clear(&self) {
        self.status.store(0, Ordering::SeqCst);
        self.needs_reset.store(false, Ordering::SeqCst);
    }

    fn signal(&self, bit: u32) {
        self.status.fetch_or(bit, Ordering::SeqCst);
        if let Err(e) = self.evt.write(1) {
            tracing::warn!(error = %e, "virtio: raising the interrupt");
        }
    }
}

/// A queue the driver broke (an avail index too far ahead, ring memory gone, a head index out
/// of range): the device stops using it until a reset.
#[derive(Debug, thiserror::Error)]
#[error("virtqueue: {0}")]
pub struct QueueBroken(pub virtio_queue::Error);

/// The next available chain, `None` when the driver has offered nothing new. Unlike
/// `pop_descriptor_chain`, an inconsistent ring is an error rather than `None`, so callers
/// cannot loop on it.
pub(crate) fn pop<'a>(q: &mut Queue, mem: &'a Memory) -> Result<Option<Chain<'a>>, QueueBroken> {
    let avail = q.avail_idx(mem, Ordering::Acquire).map_err(QueueBroken)?;
    if avail.0 == q.next_avail() {
        return Ok(None);
    }
    let mut it = q.iter(mem).map_err(QueueBroken)?;
    it.next().map(Some).ok_or(QueueBroken(virtio_queue::Error::InvalidAvailRingIndex))
}

/// Whether the driver has offered chains not yet popped.
pub(crate) fn has_available(q: &Queue, mem: &Memory) -> Result<bool, QueueBroken> {
    Ok(q.avail_idx(mem, Ordering::Acquire).map_err(QueueBroken)?.0 != q.next_avail())
}

/// Process every chain the driver offers on `q`, with driver notifications suppressed while
/// doing so (§2.7.10), then re-enable them and interrupt the driver if it wants to hear
/// (§2.7.7). `handle` returns the number of bytes it wrote into the chain (the used length).
pub(crate) fn drain(q: &mut Queue, mem: &Memory, interrupt: &Interrupt, mut handle: impl FnMut(Chain<'_>) -> u32) -> Result<(), QueueBroken> {
    let mut added = false;
    let result = (|| loop {
        q.disable_notification(mem).map_err(QueueBroken)?;
        while let Some(chain) = pop(q, mem)? {
            let head = chain.head_index();
            let len = handle(chain);
            q.add_used(mem, head, len).map_err(QueueBroken)?;
            added = true;
        }
        if !q.enable_notification(mem).map_err(QueueBroken)? {
            return Ok(());
        }
    })();
    if added {
        notify_used(q, mem, interrupt);
    }
    result
}

/// Interrupt the driver for the buffers just used, unless it suppressed that (event idx).
pub(crate) fn notify_used(q: &mut Queue, mem: &Memory, interrupt: &Interrupt) {
    match q.needs_notification(mem) {
        Ok(false) => {}
        Ok(true) => interrupt.signal_used(),
        Err(e) => {
            tracing::warn!(error = %e, "virtio: reading used_event; interrupting anyway");
            interrupt.signal_used();
        }
    }
}

/// The buffers of one descriptor chain by direction, each `(address, length)` in chain order:
/// what the driver wrote (device-readable) and what the device fills (device-writable).
#[derive(Debug, Default)]
pub(crate) struct Buffers {
    pub readable: Vec<(GuestAddress, usize)>,
    pub writable: Vec<(GuestAddress, usize)>,
}

impl Buffers {
    /// Walk a chain (direct or indirect). A descriptor that cannot be read ends the chain.
    pub fn of<M: Deref<Target = Memory>>(chain: DescriptorChain<M>) -> Self {
        let mut b = Buffers::default();
        for d in chain {
            let part = (d.addr(), d.len() as usize);
            if d.is_write_only() { b.writable.push(part) } else { b.readable.push(part) }
        }
        b
    }
}

/// Total length of `parts`.
pub(crate) fn total(parts: &[(GuestAddress, usize)]) -> usize {
    parts.iter().map(|p| p.1).sum()
}

/// The pieces of `parts` covering bytes `off..off + len` of their concatenation; `None` if they
/// are shorter or an address overflows.
pub(crate) fn sub_ranges(parts: &[(GuestAddress, usize)], mut off: usize, mut len: usize) -> Option<Vec<(GuestAddress, usize)>> {
    let mut out = Vec::new();
    for &(addr, plen) in parts {
        if len == 0 {
            break;
        }
        if off >= plen {
            off -= plen;
            continue;
        }
        let n = (plen - off).min(len);
        out.push((addr.checked_add(off as u64)?, n));
        off = 0;
        len -= n;
    }
    (len == 0).then_some(out)
}

/// Copy bytes `off..off + buf.len()` of `parts` into `buf`; `false` if they are not all there
/// or not all in guest memory.
pub(crate) fn read_parts(mem: &Memory, parts: &[(GuestAddress, usize)], off: usize, buf: &mut [u8]) -> bool {
    let Some(ranges) = sub_ranges(parts, off, buf.len()) else { return false };
    let mut at = 0;
    for (addr, n) in ranges {
        if mem.read_slice(&mut buf[at..at + n], addr).is_err() {
            return false;
        }
        at += n;
    }
    true
}

/// Copy `buf` into bytes `off..off + buf.len()` of `parts`; `false` if they are not all there
/// or not all in guest memory.
pub(crate) fn write_parts(mem: &Memory, parts: &[(GuestAddress, usize)], off: usize, buf: &[u8]) -> bool {
    let Some(ranges) = sub_ranges(parts, off, buf.len()) else { return false };
    let mut at = 0;
    for (addr, n) in ranges {
        if mem.write_slice(&buf[at..at + n], addr).is_err() {
            return false;
        }
        at += n;
    }
    true
}

/// Copy `data` into a configuration space image's bytes at `offset` (zeros past its end).
pub(crate) fn read_config_bytes(image: &[u8], offset: u64, data: &mut [u8]) {
    for (i, b) in data.iter_mut().enumerate() {
        *b = usize::try_from(offset).ok().and_then(|o| o.checked_add(i)).and_then(|o| image.get(o)).copied().unwrap_or(0);
    }
}

/// The driver side of split virtqueues in test memory (virtio 1.2 §2.7), with each ring at an
/// address of its own. (`virtio_queue::mock::MockSplitQueue` in 0.18 lays its used ring over
/// the tail of its available ring, which breaks event-idx tests, so the tests use this.)
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};

    /// One queue: descriptor table at `base`, available ring at `base + 0x1000`, used ring at
    /// `base + 0x2000`.
    pub struct DriverQueue {
        pub mem: Memory,
        pub base: u64,
        pub size: u16,
        next_desc: u16,
    }

    impl DriverQueue {
        pub fn new(mem: &Memory, base: u64, size: u16) -> Self {
            let q = DriverQueue { mem: mem.clone(), base, size, next_desc: 0 };
            mem.write_slice(&vec![0u8; 0x3000], GuestAddress(base)).unwrap();
            q
        }
        pub fn desc_addr(&self) -> u64 {
            self.base
        }
        pub fn avail_addr(&self) -> u64 {
            self.base + 0x1000
        }
        pub fn used_addr(&self) -> u64 {
            self.base + 0x2000
        }
        /// A device-side queue set up as the driver would through the transport.
        pub fn queue(&self) -> Queue {
            let mut q = Queue::new(self.size).unwrap();
            q.try_set_size(self.size).unwrap();
            q.try_set_desc_table_address(GuestAddress(self.desc_addr())).unwrap();
            q.try_set_avail_ring_address(GuestAddress(self.avail_addr())).unwrap();
            q.try_set_used_ring_address(GuestAddress(self.used_addr())).unwrap();
            q.set_ready(true);
            q
        }
        /// Write a chain of `(addr, len, device_writable)` descriptors and offer it; returns
        /// its head index.
        pub fn add(&mut self, descs: &[(u64, u32, bool)]) -> u16 {
            let head = self.next_desc;
            for (i, &(addr, len, w)) in descs.iter().enumerate() {
                let idx = (self.next_desc + i as u16) % self.size;
                let last = i + 1 == descs.len();
                let flags = if w { VRING_DESC_F_WRITE as u16 } else { 0 } | if last { 0 } else { VRING_DESC_F_NEXT as u16 };
                let next = (idx + 1) % self.size;
                let at = GuestAddress(self.base + idx as u64 * 16);
                self.mem.write_obj(addr, at).unwrap();
                self.mem.write_obj(len, GuestAddress(at.0 + 8)).unwrap();
                self.mem.write_obj(flags, GuestAddress(at.0 + 12)).unwrap();
                self.mem.write_obj(next, GuestAddress(at.0 + 14)).unwrap();
            }
            self.next_desc = (self.next_desc + descs.len() as u16) % self.size;
            let idx: u16 = self.mem.read_obj(GuestAddress(self.avail_addr() + 2)).unwrap();
            self.mem.write_obj(head, GuestAddress(self.avail_addr() + 4 + (idx % self.size) as u64 * 2)).unwrap();
            self.mem.write_obj(idx.wrapping_add(1), GuestAddress(self.avail_addr() + 2)).unwrap();
            head
        }
        /// The used ring's `idx`.
        pub fn used_idx(&self) -> u16 {
            self.mem.read_obj(GuestAddress(self.used_addr() + 2)).unwrap()
        }
        /// Used ring element `i`: `(id, len)`.
        pub fn used(&self, i: u16) -> (u32, u32) {
            let at = self.used_addr() + 4 + (i % self.size) as u64 * 8;
            (self.mem.read_obj(GuestAddress(at)).unwrap(), self.mem.read_obj(GuestAddress(at + 4)).unwrap())
        }
    }

    /// Test guest memory: 1 MiB at 0.
    pub fn memory() -> Memory {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    /// An interrupt on a fresh non-blocking eventfd.
    pub fn interrupt() -> Arc<Interrupt> {
        Arc::new(Interrupt::new(EventFd::new(libc::EFD_NONBLOCK).unwrap()))
    }

    /// Whether the interrupt's eventfd was written since the last call.
    pub fn fired(i: &Interrupt) -> bool {
        i.eventfd().read().is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_ranges_split_across_parts_and_refuse_short_ones() {
        let parts = [(GuestAddress(0x1000), 4), (GuestAddress(0x2000), 8)];
        assert_eq!(sub_ranges(&parts, 2, 6), Some(vec![(GuestAddress(0x1002), 2), (GuestAddress(0x2000), 4)]));
        assert_eq!(sub_ranges(&parts, 4, 8), Some(vec![(GuestAddress(0x2000), 8)]));
        assert_eq!(sub_ranges(&parts, 5, 8), None);
        assert_eq!(total(&parts), 12);
        let mut c = [0xffu8; 4];
        read_config_bytes(&[1, 2, 3], 1, &mut c);
        assert_eq!(c, [2, 3, 0, 0]);
    }

    #[test]
    fn an_avail_index_too_far_ahead_breaks_the_queue_instead_of_looping() {
        let mem = testing::memory();
        let dq = testing::DriverQueue::new(&mem, 0x1_0000, 16);
        let mut q = dq.queue();
        // The driver claims 100 new chains in a ring of 16.
        mem.write_obj(100u16, GuestAddress(dq.avail_addr() + 2)).unwrap();
        let irq = testing::interrupt();
        assert!(drain(&mut q, &mem, &irq, |_| 0).is_err());
        assert!(!testing::fired(&irq));
    }
}
