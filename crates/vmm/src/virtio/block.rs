//! virtio-blk over a raw image file (virtio 1.2 §5.2): one request queue, requests served
//! synchronously on the vCPU thread that notified, with `pread`/`pwrite` straight between the
//! file and guest memory.
//!
//! Request layout (§5.2.6): a 16-byte device-readable header `{type: le32, reserved: le32,
//! sector: le64}`, the data buffers (device-readable for OUT, device-writable for IN and
//! GET_ID), and a final device-writable status byte (OK 0, IOERR 1, UNSUPP 2). Sectors are 512
//! bytes whatever the `blk_size`.
//!
//! Features offered: `VIRTIO_BLK_F_FLUSH` (writes are cached by the host until a FLUSH, served
//! with `fdatasync`), `VIRTIO_BLK_F_SEG_MAX`, `VIRTIO_BLK_F_BLK_SIZE` (512),
//! `VIRTIO_BLK_F_RO` for read-only disks (whose writes then fail with IOERR), indirect
//! descriptors and event idx.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;

use virtio_bindings::virtio_blk::*;
use virtio_queue::Queue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use super::{ActivateError, Buffers, F_EVENT_IDX, F_INDIRECT_DESC, Interrupt, Memory, VirtioDevice, drain, read_parts, sub_ranges, total};
use crate::spec::DiskSpec;

/// Bytes per sector (§5.2.6: `sector` counts 512-byte units).
pub const SECTOR: u64 = 512;
/// The request queue's size.
pub const QUEUE_SIZE: u16 = 256;
/// `seg_max`: data segments per request (the header and status take two more descriptors).
pub const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
/// Length of the GET_ID answer (`VIRTIO_BLK_ID_BYTES`).
pub const ID_BYTES: usize = VIRTIO_BLK_ID_BYTES as usize;

/// Errors opening a disk.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The image could not be opened or measured.
    #[error("disk image {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
}

/// A virtio-blk device on one image file.
pub struct Block {
    file: File,
    read_only: bool,
    capacity: u64,
    serial: [u8; ID_BYTES],
    config: Vec<u8>,
    active: Option<Active>,
}

struct Active {
    mem: Memory,
    queue: Queue,
    interrupt: Arc<Interrupt>,
    broken: bool,
}

impl Block {
    /// Open `spec.path` (read-write unless `spec.read_only`) as a disk of `len / 512` sectors
    /// (a partial last sector is not visible). `serial` is what GET_ID answers (Linux shows it
    /// as `/sys/block/vdX/serial` and in `/dev/disk/by-id/virtio-<serial>`); it is cut to its
    /// first 20 bytes, the field's size. Errors: the file cannot be opened or stat'ed.
    pub fn open(spec: &DiskSpec, serial: &str) -> Result<Block, BlockError> {
        let err = |source| BlockError::Open { path: spec.path.clone(), source };
        let file = File::options().read(true).write(!spec.read_only).open(&spec.path).map_err(err)?;
        let len = file.metadata().map_err(err)?.len();
        if len % SECTOR != 0 {
            tracing::warn!(path = %spec.path.display(), len, "disk image is not a whole number of sectors; the tail is hidden");
        }
        let mut id = [0u8; ID_BYTES];
        let s = serial.as_bytes();
        let n = s.len().min(ID_BYTES);
        id[..n].copy_from_slice(&s[..n]);
        Ok(Block::new(file, spec.read_only, len / SECTOR, id))
    }

    fn new(file: File, read_only: bool, capacity: u64, serial: [u8; ID_BYTES]) -> Block {
        // struct virtio_blk_config (§5.2.4): capacity @0, size_max @8, seg_max @12,
        // geometry @16, blk_size @20, topology @24..32, writeback @32, num_queues @34.
        let mut config = vec![0u8; 36];
        config[0..8].copy_from_slice(&capacity.to_le_bytes());
        config[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        config[20..24].copy_from_slice(&(SECTOR as u32).to_le_bytes());
        config[34..36].copy_from_slice(&1u16.to_le_bytes());
        Block { file, read_only, capacity, serial, config, active: None }
    }

    /// The disk's size in 512-byte sectors.
    pub fn capacity_sectors(&self) -> u64 {
        self.capacity
    }

    /// Whether the disk refuses writes.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Serve one request; returns the bytes written into the chain (data and status).
    fn handle(&self, mem: &Memory, b: &Buffers) -> u32 {
        let wlen = total(&b.writable);
        if wlen == 0 {
            tracing::warn!("virtio-blk: request without a status byte; dropped");
            return 0;
        }
        let Some(status_at) = sub_ranges(&b.writable, wlen - 1, 1).and_then(|r| r.first().map(|p| p.0)) else { return 0 };
        let (status, written) = self.execute(mem, b, wlen - 1);
        if mem.write_obj(status, status_at).is_err() {
            tracing::warn!(addr = status_at.0, "virtio-blk: status byte outside guest memory; dropped");
            return 0;
        }
        written.saturating_add(1).try_into().unwrap_or(u32::MAX)
    }

    /// Run a request whose device-writable data area is `data_len` bytes; returns the status
    /// and the data bytes written to the guest.
    fn execute(&self, mem: &Memory, b: &Buffers, data_len: usize) -> (u8, usize) {
        const OK: u8 = VIRTIO_BLK_S_OK as u8;
        const IOERR: u8 = VIRTIO_BLK_S_IOERR as u8;
        let mut hdr = [0u8; 16];
        if !read_parts(mem, &b.readable, 0, &mut hdr) {
            tracing::warn!("virtio-blk: request header unreadable; IOERR");
            return (IOERR, 0);
        }
        let kind = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let sector = u64::from_le_bytes([hdr[8], hdr[9], hdr[10], hdr[11], hdr[12], hdr[13], hdr[14], hdr[15]]);
        let in_range = |len: usize| {
            let end = sector.checked_mul(SECTOR).and_then(|s| s.checked_add(len as u64));
            matches!(end, Some(e) if e <= self.capacity * SECTOR)
        };
        match kind {
            VIRTIO_BLK_T_IN => {
                if !in_range(data_len) {
                    tracing::warn!(sector, len = data_len, capacity = self.capacity, "virtio-blk: read beyond the end; IOERR");
                    return (IOERR, 0);
                }
                let Some(parts) = sub_ranges(&b.writable, 0, data_len) else { return (IOERR, 0) };
                match transfer(&self.file, mem, &parts, sector * SECTOR, Dir::ToGuest) {
                    Ok(()) => (OK, data_len),
                    Err(e) => {
                        tracing::warn!(sector, error = %e, "virtio-blk: read failed; IOERR");
                        (IOERR, 0)
                    }
                }
            }
            VIRTIO_BLK_T_OUT => {
                let len = total(&b.readable) - 16;
                if self.read_only {
                    tracing::debug!(sector, "virtio-blk: write to a read-only disk; IOERR");
                    return (IOERR, 0);
                }
                if !in_range(len) {
                    tracing::warn!(sector, len, capacity = self.capacity, "virtio-blk: write beyond the end; IOERR");
                    return (IOERR, 0);
                }
                let Some(parts) = sub_ranges(&b.readable, 16, len) else { return (IOERR, 0) };
                match transfer(&self.file, mem, &parts, sector * SECTOR, Dir::FromGuest) {
                    Ok(()) => (OK, 0),
                    Err(e) => {
                        tracing::warn!(sector, error = %e, "virtio-blk: write failed; IOERR");
                        (IOERR, 0)
                    }
                }
            }
            VIRTIO_BLK_T_FLUSH => {
                if self.read_only {
                    return (OK, 0);
                }
                match self.file.sync_data() {
                    Ok(()) => (OK, 0),
                    Err(e) => {
                        tracing::warn!(error = %e, "virtio-blk: fdatasync failed; IOERR");
                        (IOERR, 0)
                    }
                }
            }
            VIRTIO_BLK_T_GET_ID => {
                let n = data_len.min(ID_BYTES);
                if super::write_parts(mem, &b.writable, 0, &self.serial[..n]) { (OK, n) } else { (IOERR, 0) }
            }
            other => {
                tracing::debug!(kind = other, "virtio-blk: unsupported request type");
                (VIRTIO_BLK_S_UNSUPP as u8, 0)
            }
        }
    }

    fn process(&mut self) {
        let Some(mut a) = self.active.take() else { return };
        if !a.broken {
            let Active { mem, queue, interrupt, .. } = &mut a;
            if let Err(e) = drain(queue, mem, interrupt, |chain| self.handle(mem, &Buffers::of(chain))) {
                tracing::warn!(error = %e, "virtio-blk: request queue broken; device needs reset");
                a.broken = true;
                a.interrupt.signal_needs_reset();
            }
        }
        self.active = Some(a);
    }
}

#[derive(Clone, Copy)]
enum Dir {
    ToGuest,
    FromGuest,
}

/// Move the bytes of guest ranges `parts` from/to the file at `offset`, with `pread`/`pwrite`
/// on the guest pages themselves.
fn transfer(file: &File, mem: &Memory, parts: &[(GuestAddress, usize)], mut offset: u64, dir: Dir) -> std::io::Result<()> {
    let fd = file.as_raw_fd();
    for &(addr, len) in parts {
        for slice in GuestMemoryBackend::get_slices(mem, addr, len) {
            let slice = slice.map_err(std::io::Error::other)?;
            let guard = slice.ptr_guard_mut();
            let mut done = 0usize;
            while done < guard.len() {
                let off = libc::off_t::try_from(offset).map_err(std::io::Error::other)?;
                // SAFETY: `guard` pins a live mapping of `guard.len()` bytes of guest memory
                // (vm-memory checked the range); the kernel reads or writes inside it only. No
                // Rust reference to those bytes exists (the guest may change them at any time).
                let n = unsafe {
                    let p = guard.as_ptr().add(done).cast::<libc::c_void>();
                    match dir {
                        Dir::ToGuest => libc::pread(fd, p, guard.len() - done, off),
                        Dir::FromGuest => libc::pwrite(fd, p, guard.len() - done, off),
                    }
                };
                if n < 0 {
                    let e = std::io::Error::last_os_error();
                    if e.kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(e);
                }
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                done += n as usize;
                offset += n as u64;
            }
        }
    }
    Ok(())
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        let f = (1u64 << VIRTIO_BLK_F_FLUSH) | (1 << VIRTIO_BLK_F_SEG_MAX) | (1 << VIRTIO_BLK_F_BLK_SIZE) | F_INDIRECT_DESC | F_EVENT_IDX;
        if self.read_only { f | (1 << VIRTIO_BLK_F_RO) } else { f }
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        super::read_config_bytes(&self.config, offset, data);
    }

    fn activate(&mut self, mem: Memory, queues: Vec<Queue>, interrupt: Arc<Interrupt>, _features: u64) -> Result<(), ActivateError> {
        let got = queues.len();
        let queue = queues.into_iter().next().filter(|_| got == 1).ok_or(ActivateError::Queues { expected: 1, got })?;
        self.active = Some(Active { mem, queue, interrupt, broken: false });
        Ok(())
    }

    fn notify(&mut self, queue: u16) {
        if queue == 0 {
            self.process();
        }
    }

    fn reset(&mut self) {
        self.active = None;
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, Write};

    use super::super::testing::{DriverQueue, fired, interrupt, memory};
    use super::*;
    use virtio_queue::QueueT;

    const HDR: u64 = 0x4_0000;
    const DATA: u64 = 0x5_0000;
    const STATUS: u64 = 0x6_0000;

    struct Rig {
        mem: Memory,
        dq: DriverQueue,
        dev: Block,
        irq: Arc<Interrupt>,
        file: tempfile::NamedTempFile,
        used: u16,
        /// Whether each request should interrupt the driver.
        expect_irq: bool,
    }

    fn rig(sectors: u64, read_only: bool) -> Rig {
        rig_with(sectors, read_only, false)
    }

    fn rig_with(sectors: u64, read_only: bool, event_idx: bool) -> Rig {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let pattern: Vec<u8> = (0..sectors * SECTOR).map(|i| (i % 251) as u8).collect();
        file.write_all(&pattern).unwrap();
        let spec = DiskSpec { path: file.path().into(), read_only };
        let mut dev = Block::open(&spec, "vol-0123456789abcdef-and-more").unwrap();
        let mem = memory();
        let dq = DriverQueue::new(&mem, 0x1_0000, 16);
        let irq = interrupt();
        let mut q = dq.queue();
        q.set_event_idx(event_idx);
        dev.activate(mem.clone(), vec![q], irq.clone(), 0).unwrap();
        Rig { mem, dq, dev, irq, file, used: 0, expect_irq: true }
    }

    impl Rig {
        /// Submit `kind` at `sector` with the data buffers `data` (addr, len, device-writable)
        /// and return `(status, used len)`.
        fn request(&mut self, kind: u32, sector: u64, data: &[(u64, u32, bool)]) -> (u8, u32) {
            let mut hdr = [0u8; 16];
            hdr[0..4].copy_from_slice(&kind.to_le_bytes());
            hdr[8..16].copy_from_slice(&sector.to_le_bytes());
            self.mem.write_slice(&hdr, GuestAddress(HDR)).unwrap();
            self.mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
            let mut descs = vec![(HDR, 16, false)];
            descs.extend_from_slice(data);
            descs.push((STATUS, 1, true));
            let head = self.dq.add(&descs);
            self.dev.notify(0);
            self.used += 1;
            assert_eq!(self.dq.used_idx(), self.used, "the request was completed");
            let (id, len) = self.dq.used(self.used - 1);
            assert_eq!(id, head as u32);
            assert_eq!(fired(&self.irq), self.expect_irq, "the driver was interrupted or not");
            (self.mem.read_obj(GuestAddress(STATUS)).unwrap(), len)
        }

        fn file_bytes(&mut self) -> Vec<u8> {
            let mut v = Vec::new();
            let mut f = self.file.reopen().unwrap();
            f.rewind().unwrap();
            f.read_to_end(&mut v).unwrap();
            v
        }
    }

    #[test]
    fn config_space_and_features() {
        let r = rig(8, false);
        let mut cap = [0u8; 8];
        r.dev.read_config(0, &mut cap);
        assert_eq!(u64::from_le_bytes(cap), 8);
        let mut w = [0u8; 4];
        r.dev.read_config(20, &mut w);
        assert_eq!(u32::from_le_bytes(w), 512);
        r.dev.read_config(12, &mut w);
        assert_eq!(u32::from_le_bytes(w), SEG_MAX);
        let f = r.dev.features();
        assert_ne!(f & (1 << VIRTIO_BLK_F_FLUSH), 0);
        assert_eq!(f & (1 << VIRTIO_BLK_F_RO), 0);
        assert_ne!(rig(8, true).dev.features() & (1 << VIRTIO_BLK_F_RO), 0);
    }

    #[test]
    fn reads_and_writes_round_trip_through_the_file() {
        let mut r = rig(16, false);
        let original = r.file_bytes();
        // Read sectors 2..4 into two buffers (1 sector each, different pages).
        let (s, len) = r.request(VIRTIO_BLK_T_IN, 2, &[(DATA, 512, true), (DATA + 0x2000, 512, true)]);
        assert_eq!((s, len), (VIRTIO_BLK_S_OK as u8, 1025));
        let mut got = vec![0u8; 1024];
        r.mem.read_slice(&mut got[..512], GuestAddress(DATA)).unwrap();
        r.mem.read_slice(&mut got[512..], GuestAddress(DATA + 0x2000)).unwrap();
        assert_eq!(got, original[1024..2048]);
        // Write 3 sectors at sector 5 from one buffer, then read them back.
        let new: Vec<u8> = (0..1536u32).map(|i| (i * 7 + 3) as u8).collect();
        r.mem.write_slice(&new, GuestAddress(DATA)).unwrap();
        assert_eq!(r.request(VIRTIO_BLK_T_OUT, 5, &[(DATA, 1536, false)]), (VIRTIO_BLK_S_OK as u8, 1));
        assert_eq!(r.request(VIRTIO_BLK_T_FLUSH, 0, &[]), (VIRTIO_BLK_S_OK as u8, 1));
        let after = r.file_bytes();
        assert_eq!(&after[5 * 512..8 * 512], &new[..]);
        assert_eq!(&after[..5 * 512], &original[..5 * 512], "nothing else changed");
        assert_eq!(&after[8 * 512..], &original[8 * 512..]);
        r.mem.write_slice(&[0u8; 1536], GuestAddress(DATA + 0x8000)).unwrap();
        assert_eq!(r.request(VIRTIO_BLK_T_IN, 5, &[(DATA + 0x8000, 1536, true)]).0, VIRTIO_BLK_S_OK as u8);
        let mut back = vec![0u8; 1536];
        r.mem.read_slice(&mut back, GuestAddress(DATA + 0x8000)).unwrap();
        assert_eq!(back, new);
    }

    #[test]
    fn event_idx_publishes_avail_event_and_interrupts_only_past_used_event() {
        let mut r = rig_with(4, false, true);
        // used_event (after the avail ring's 16 entries) = 1: interrupt once used idx passes 1.
        r.mem.write_obj(1u16, GuestAddress(r.dq.avail_addr() + 4 + 2 * 16)).unwrap();
        r.expect_irq = false;
        assert_eq!(r.request(VIRTIO_BLK_T_IN, 0, &[(DATA, 512, true)]).0, VIRTIO_BLK_S_OK as u8);
        let avail_event: u16 = r.mem.read_obj(GuestAddress(r.dq.used_addr() + 4 + 8 * 16)).unwrap();
        assert_eq!(avail_event, 1, "the device asks to be notified for the next chain");
        r.expect_irq = true;
        assert_eq!(r.request(VIRTIO_BLK_T_IN, 1, &[(DATA, 512, true)]).0, VIRTIO_BLK_S_OK as u8);
    }

    #[test]
    fn get_id_answers_the_serial_cut_to_20_bytes() {
        let mut r = rig(1, false);
        let (s, len) = r.request(VIRTIO_BLK_T_GET_ID, 0, &[(DATA, 20, true)]);
        assert_eq!((s, len), (VIRTIO_BLK_S_OK as u8, 21));
        let mut id = [0u8; 20];
        r.mem.read_slice(&mut id, GuestAddress(DATA)).unwrap();
        assert_eq!(&id, b"vol-0123456789abcdef");
    }

    #[test]
    fn refusals_unsupported_read_only_and_out_of_range() {
        let mut r = rig(4, false);
        assert_eq!(r.request(12345, 0, &[(DATA, 512, true)]).0, VIRTIO_BLK_S_UNSUPP as u8);
        assert_eq!(r.request(VIRTIO_BLK_T_IN, 3, &[(DATA, 1024, true)]).0, VIRTIO_BLK_S_IOERR as u8, "sector 4 is past the end");
        assert_eq!(r.request(VIRTIO_BLK_T_OUT, 4, &[(DATA, 512, false)]).0, VIRTIO_BLK_S_IOERR as u8);
        assert_eq!(r.request(VIRTIO_BLK_T_IN, u64::MAX / 2, &[(DATA, 512, true)]).0, VIRTIO_BLK_S_IOERR as u8, "overflowing offset");
        assert_eq!(r.request(VIRTIO_BLK_T_IN, 3, &[(DATA, 512, true)]).0, VIRTIO_BLK_S_OK as u8, "the last sector is fine");

        let mut ro = rig(4, true);
        let before = ro.file_bytes();
        ro.mem.write_slice(&[0x55u8; 512], GuestAddress(DATA)).unwrap();
        assert_eq!(ro.request(VIRTIO_BLK_T_OUT, 0, &[(DATA, 512, false)]).0, VIRTIO_BLK_S_IOERR as u8);
        assert_eq!(ro.file_bytes(), before, "a read-only disk is untouched");
        assert_eq!(ro.request(VIRTIO_BLK_T_IN, 0, &[(DATA, 512, true)]).0, VIRTIO_BLK_S_OK as u8);
    }

    #[test]
    fn buffers_outside_guest_memory_get_ioerr_or_are_dropped() {
        let mut r = rig(4, false);
        // Data buffer beyond the 1 MiB of guest memory.
        assert_eq!(r.request(VIRTIO_BLK_T_IN, 0, &[(0x10_0000 - 256, 512, true)]).0, VIRTIO_BLK_S_IOERR as u8);
        assert_eq!(r.request(VIRTIO_BLK_T_OUT, 0, &[(0xffff_ffff_ffff_f000, 512, false)]).0, VIRTIO_BLK_S_IOERR as u8);
        // Header outside memory: IOERR in the status byte.
        let head = r.dq.add(&[(0x4000_0000, 16, false), (DATA, 512, true), (STATUS, 1, true)]);
        r.mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
        r.dev.notify(0);
        assert_eq!(r.dq.used(r.used), (head as u32, 1));
        assert_eq!(r.mem.read_obj::<u8>(GuestAddress(STATUS)).unwrap(), VIRTIO_BLK_S_IOERR as u8);
        // Status byte outside memory: the chain is returned with nothing written.
        let head = r.dq.add(&[(HDR, 16, false), (0x4000_0000, 1, true)]);
        r.dev.notify(0);
        assert_eq!(r.dq.used(r.used + 1), (head as u32, 0));
        // A head index beyond the ring: the queue is broken, the device asks for a reset.
        let idx: u16 = r.mem.read_obj(GuestAddress(r.dq.avail_addr() + 2)).unwrap();
        r.mem.write_obj(999u16, GuestAddress(r.dq.avail_addr() + 4 + (idx % 16) as u64 * 2)).unwrap();
        r.mem.write_obj(idx + 1, GuestAddress(r.dq.avail_addr() + 2)).unwrap();
        r.dev.notify(0);
        assert!(r.irq.needs_reset());
        // The device is still usable after a reset and re-activation.
        r.dev.reset();
        let dq = DriverQueue::new(&r.mem, 0x2_0000, 16);
        r.dev.activate(r.mem.clone(), vec![dq.queue()], r.irq.clone(), 0).unwrap();
        r.dq = dq;
        r.used = 0;
        assert_eq!(r.request(VIRTIO_BLK_T_IN, 1, &[(DATA, 512, true)]).0, VIRTIO_BLK_S_OK as u8);
    }
}
