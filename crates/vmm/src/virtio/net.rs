//! virtio-net over a tap device (virtio 1.2 §5.1): queue 0 receives, queue 1 transmits; no
//! control queue, no offloads, no mergeable buffers.
//!
//! Every packet on both queues starts with the 12-byte `struct virtio_net_hdr_v1` (§5.1.6:
//! with VERSION_1 the header always has `num_buffers`). The tap is opened by the daemon with
//! `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`, and [`Net::new`] sets its header size to 12
//! (`TUNSETVNETHDRSZ`), so a tap read yields exactly "header + frame" as the guest's RX buffer
//! wants it and a TX chain is written to the tap as it is, with no copy to add or strip the
//! header. (The alternative, a tap without `IFF_VNET_HDR` and the header added/stripped here,
//! would work as well without offloads; keeping the kernel's header leaves checksum and
//! segmentation offloads a matter of negotiating features and `TUNSETOFFLOAD` later.) Since no
//! offload is negotiated the device sanitises the header both ways: TX headers are zeroed before
//! the tap sees them (a guest cannot ask the host to checksum or segment), RX headers are
//! rewritten to flags 0, `GSO_NONE`, `num_buffers` 1 (§5.1.6.4.1: without
//! `VIRTIO_NET_F_GUEST_CSUM` flags must be 0; without `VIRTIO_NET_F_MRG_RXBUF` `num_buffers`
//! must be 1).
//!
//! TX runs on the vCPU thread on notify. RX runs on a thread started at activation: it waits
//! (`poll(2)`) on the tap only while the guest has RX buffers, otherwise only on the RX queue's
//! notification eventfd, so it never spins; it ends on device reset or when the device drops.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::thread::JoinHandle;

use virtio_bindings::virtio_net::{VIRTIO_NET_F_MAC, VIRTIO_NET_F_STATUS, VIRTIO_NET_S_LINK_UP};
use virtio_queue::{Queue, QueueT};
use vmm_sys_util::eventfd::EventFd;

use super::{
    ActivateError, Buffers, F_EVENT_IDX, F_INDIRECT_DESC, Interrupt, Memory, VirtioDevice, drain, has_available, notify_used, pop, read_parts, total,
    write_parts,
};

/// `sizeof(struct virtio_net_hdr_v1)`.
pub const VNET_HDR_LEN: usize = 12;
/// Each queue's size.
pub const QUEUE_SIZE: u16 = 256;
/// The largest packet handled: header, a 65535-byte IP packet, an Ethernet header and a VLAN tag.
pub const MAX_PACKET: usize = VNET_HDR_LEN + 65_535 + 14 + 4;

const RX: u16 = 0;
const TX: u16 = 1;
/// `_IOR('T', 210, unsigned int)`: read the tap's `ifreq` (name and flags).
const TUNGETIFF: libc::c_ulong = 0x8004_54d2;
/// `_IOW('T', 216, int)`: the vnet header size.
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
const IFF_TAP: u16 = 0x0002;
const IFF_NO_PI: u16 = 0x1000;
const IFF_VNET_HDR: u16 = 0x4000;

/// Errors making a network device.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A MAC address that is not six `:`-separated hex octets, or is multicast.
    #[error("invalid MAC address {0:?}: expected a unicast aa:bb:cc:dd:ee:ff")]
    Mac(String),
    /// A tap ioctl or fcntl failed.
    #[error("tap {what}: {source}")]
    Tap { what: &'static str, source: std::io::Error },
    /// The fd is a tap but not opened `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`.
    #[error("the tap was opened with flags {0:#x}; IFF_TAP | IFF_NO_PI | IFF_VNET_HDR are needed")]
    TapFlags(u16),
}

/// Parse `aa:bb:cc:dd:ee:ff` (hex, either case). Errors: [`NetError::Mac`] for anything else,
/// and for multicast addresses (bit 0 of the first octet), which a NIC cannot have.
pub fn parse_mac(s: &str) -> Result<[u8; 6], NetError> {
    let bad = || NetError::Mac(s.to_string());
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        let p = parts.next().filter(|p| p.len() == 2).ok_or_else(bad)?;
        *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() || mac[0] & 1 != 0 {
        return Err(bad());
    }
    Ok(mac)
}

/// A virtio-net device on one tap.
pub struct Net {
    tap: Arc<OwnedFd>,
    config: [u8; 8],
    tx: Option<Tx>,
    rx: Option<RxWorker>,
}

struct Tx {
    mem: Memory,
    queue: Queue,
    interrupt: Arc<Interrupt>,
    broken: bool,
    buf: Vec<u8>,
}

struct RxWorker {
    kick: EventFd,
    stop: EventFd,
    thread: Option<JoinHandle<()>>,
}

impl Net {
    /// A device on `tap`, a tap fd opened `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`, with guest MAC
    /// `mac`: checks the flags (`TUNGETIFF`), sets the vnet header size to 12
    /// (`TUNSETVNETHDRSZ`) and makes the fd non-blocking. Errors: [`NetError::Tap`] (e.g. not a
    /// tap) and [`NetError::TapFlags`].
    pub fn new(tap: OwnedFd, mac: [u8; 6]) -> Result<Net, NetError> {
        let mut ifreq = [0u8; 40];
        // SAFETY: TUNGETIFF writes a `struct ifreq` (40 bytes on 64-bit Linux) into `ifreq`.
        if unsafe { libc::ioctl(tap.as_raw_fd(), TUNGETIFF as _, ifreq.as_mut_ptr()) } < 0 {
            return Err(NetError::Tap { what: "TUNGETIFF", source: std::io::Error::last_os_error() });
        }
        let flags = u16::from_ne_bytes([ifreq[16], ifreq[17]]);
        let need = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
        if flags & need != need {
            return Err(NetError::TapFlags(flags));
        }
        let size: libc::c_int = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one `int` from the pointer.
        if unsafe { libc::ioctl(tap.as_raw_fd(), TUNSETVNETHDRSZ as _, &size as *const libc::c_int) } < 0 {
            return Err(NetError::Tap { what: "TUNSETVNETHDRSZ", source: std::io::Error::last_os_error() });
        }
        Net::with_vnet_fd(tap, mac)
    }

    /// A device on any packet fd that already carries one 12-byte `virtio_net_hdr_v1` before
    /// each frame (a tap set up by the caller, or a `SOCK_SEQPACKET` socket in tests): skips
    /// the tap ioctls, only makes the fd non-blocking. Errors: [`NetError::Tap`] (fcntl).
    pub fn with_vnet_fd(fd: OwnedFd, mac: [u8; 6]) -> Result<Net, NetError> {
        set_nonblocking(fd.as_raw_fd()).map_err(|source| NetError::Tap { what: "O_NONBLOCK", source })?;
        // struct virtio_net_config (§5.1.4): mac @0, status @6.
        let mut config = [0u8; 8];
        config[..6].copy_from_slice(&mac);
        config[6..8].copy_from_slice(&(VIRTIO_NET_S_LINK_UP as u16).to_le_bytes());
        Ok(Net { tap: Arc::new(fd), config, tx: None, rx: None })
    }

    /// The guest MAC.
    pub fn mac(&self) -> [u8; 6] {
        let mut m = [0u8; 6];
        m.copy_from_slice(&self.config[..6]);
        m
    }

    fn transmit(&mut self) {
        let Some(tx) = self.tx.as_mut() else { return };
        if tx.broken {
            return;
        }
        let fd = self.tap.as_raw_fd();
        let Tx { mem, queue, interrupt, buf, .. } = tx;
        let r = drain(queue, mem, interrupt, |chain| {
            let b = Buffers::of(chain);
            let len = total(&b.readable);
            if !(VNET_HDR_LEN..=MAX_PACKET).contains(&len) {
                tracing::warn!(len, "virtio-net: TX packet of impossible length; dropped");
                return 0;
            }
            buf.resize(len, 0);
            if !read_parts(mem, &b.readable, 0, buf) {
                tracing::warn!("virtio-net: TX buffer outside guest memory; dropped");
                return 0;
            }
            // No offloads were negotiated: the tap gets a plain header whatever the guest says.
            buf[..VNET_HDR_LEN].fill(0);
            // SAFETY: `buf` is a live buffer of `buf.len()` bytes.
            let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                tracing::debug!(error = %e, "virtio-net: tap write failed; frame dropped");
            }
            0
        });
        if let Err(e) = r {
            tracing::warn!(error = %e, "virtio-net: TX queue broken; device needs reset");
            tx.broken = true;
            tx.interrupt.signal_needs_reset();
        }
    }

    fn stop_rx(&mut self) {
        if let Some(mut w) = self.rx.take() {
            if let Err(e) = w.stop.write(1) {
                tracing::warn!(error = %e, "virtio-net: stopping the RX thread");
            }
            if let Some(t) = w.thread.take()
                && t.join().is_err()
            {
                tracing::warn!("virtio-net: the RX thread panicked");
            }
        }
    }
}

fn set_nonblocking(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: fcntl on an fd we own, no pointers.
    let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if fl < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl Drop for Net {
    fn drop(&mut self) {
        self.stop_rx();
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        virtio_bindings::virtio_ids::VIRTIO_ID_NET
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        (1u64 << VIRTIO_NET_F_MAC) | (1 << VIRTIO_NET_F_STATUS) | F_INDIRECT_DESC | F_EVENT_IDX
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        super::read_config_bytes(&self.config, offset, data);
    }

    fn activate(&mut self, mem: Memory, queues: Vec<Queue>, interrupt: Arc<Interrupt>, _features: u64) -> Result<(), ActivateError> {
        let got = queues.len();
        let mut it = queues.into_iter();
        let (Some(rxq), Some(txq), None) = (it.next(), it.next(), it.next()) else {
            return Err(ActivateError::Queues { expected: 2, got });
        };
        self.stop_rx();
        let io = |what| move |source| ActivateError::Io { what, source };
        let kick = EventFd::new(libc::EFD_NONBLOCK).map_err(io("eventfd"))?;
        let stop = EventFd::new(libc::EFD_NONBLOCK).map_err(io("eventfd"))?;
        let mut rx = Rx {
            mem: mem.clone(),
            queue: rxq,
            tap: self.tap.clone(),
            interrupt: interrupt.clone(),
            kick: kick.try_clone().map_err(io("eventfd"))?,
            stop: stop.try_clone().map_err(io("eventfd"))?,
            frame: vec![0u8; MAX_PACKET],
            broken: false,
            tap_dead: false,
        };
        let thread = std::thread::Builder::new().name("virtio-net-rx".into()).spawn(move || rx.run()).map_err(io("spawning the RX thread"))?;
        self.rx = Some(RxWorker { kick, stop, thread: Some(thread) });
        self.tx = Some(Tx { mem, queue: txq, interrupt, broken: false, buf: Vec::with_capacity(MAX_PACKET) });
        Ok(())
    }

    fn notify(&mut self, queue: u16) {
        match queue {
            RX => {
                if let Some(w) = &self.rx
                    && let Err(e) = w.kick.write(1)
                {
                    tracing::warn!(error = %e, "virtio-net: kicking the RX thread");
                }
            }
            TX => self.transmit(),
            _ => {}
        }
    }

    fn reset(&mut self) {
        self.stop_rx();
        self.tx = None;
    }
}

/// The RX thread's state.
struct Rx {
    mem: Memory,
    queue: Queue,
    tap: Arc<OwnedFd>,
    interrupt: Arc<Interrupt>,
    kick: EventFd,
    stop: EventFd,
    frame: Vec<u8>,
    broken: bool,
    tap_dead: bool,
}

/// What the RX thread waits for next.
#[derive(Debug, PartialEq)]
enum Wait {
    /// Frames on the tap (the guest has buffers).
    Frames,
    /// A notification (the guest has no buffers, or the queue or tap is unusable).
    Kick,
}

impl Rx {
    fn run(&mut self) {
        loop {
            let wait = self.pump();
            let mut fds = [
                libc::pollfd { fd: self.stop.as_raw_fd(), events: libc::POLLIN, revents: 0 },
                libc::pollfd { fd: self.kick.as_raw_fd(), events: libc::POLLIN, revents: 0 },
                libc::pollfd { fd: self.tap.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            ];
            let n = if wait == Wait::Frames { 3 } else { 2 };
            // SAFETY: `fds` holds `n` initialised pollfds and outlives the call.
            let r = unsafe { libc::poll(fds.as_mut_ptr(), n, -1) };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::warn!(error = %e, "virtio-net: RX poll failed; RX stops");
                return;
            }
            if fds[0].revents != 0 {
                return;
            }
            if fds[1].revents != 0 {
                let _ = self.kick.read();
            }
        }
    }

    /// Move frames from the tap into RX buffers while both exist; interrupt the driver once
    /// for the lot.
    fn pump(&mut self) -> Wait {
        if self.broken || self.tap_dead {
            return Wait::Kick;
        }
        let mut added = false;
        let wait = loop {
            match has_available(&self.queue, &self.mem) {
                Ok(true) => {}
                Ok(false) => match self.queue.enable_notification(&self.mem) {
                    // Buffers arrived while notifications were being enabled.
                    Ok(true) => continue,
                    Ok(false) => break Wait::Kick,
                    Err(e) => {
                        self.broke(&e.to_string());
                        break Wait::Kick;
                    }
                },
                Err(e) => {
                    self.broke(&e.to_string());
                    break Wait::Kick;
                }
            }
            // SAFETY: `frame` is a live buffer of `frame.len()` bytes.
            let n = unsafe { libc::read(self.tap.as_raw_fd(), self.frame.as_mut_ptr().cast(), self.frame.len()) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                match e.kind() {
                    std::io::ErrorKind::WouldBlock => break Wait::Frames,
                    std::io::ErrorKind::Interrupted => continue,
                    _ => {
                        tracing::warn!(error = %e, "virtio-net: tap read failed; RX stops until reset");
                        self.tap_dead = true;
                        break Wait::Kick;
                    }
                }
            }
            if n == 0 {
                // The other end of a socket went away (a tap never reads 0).
                self.tap_dead = true;
                break Wait::Kick;
            }
            match self.deliver(n as usize) {
                Ok(used) => added |= used,
                Err(e) => {
                    self.broke(&e);
                    break Wait::Kick;
                }
            }
        };
        if added {
            notify_used(&mut self.queue, &self.mem, &self.interrupt);
        }
        wait
    }

    /// Put the `n`-byte packet in `frame` into the next RX buffer; `Ok(false)` when it was
    /// dropped without using a buffer, `Err` when the queue is broken.
    fn deliver(&mut self, n: usize) -> Result<bool, String> {
        let pkt = &mut self.frame[..n];
        if n < VNET_HDR_LEN || pkt[1] != 0 {
            tracing::warn!(len = n, "virtio-net: tap packet too short or segmented (GSO); dropped");
            return Ok(false);
        }
        pkt[..VNET_HDR_LEN].fill(0);
        pkt[10..12].copy_from_slice(&1u16.to_le_bytes());
        let chain = pop(&mut self.queue, &self.mem).map_err(|e| e.to_string())?.ok_or("no RX buffer after all")?;
        let head = chain.head_index();
        let b = Buffers::of(chain);
        let used = if total(&b.writable) < n {
            tracing::warn!(len = n, buffer = total(&b.writable), "virtio-net: RX buffer too small; frame dropped");
            0
        } else if !write_parts(&self.mem, &b.writable, 0, pkt) {
            tracing::warn!("virtio-net: RX buffer outside guest memory; frame dropped");
            0
        } else {
            n as u32
        };
        self.queue.add_used(&self.mem, head, used).map_err(|e| e.to_string())?;
        Ok(true)
    }

    fn broke(&mut self, why: &str) {
        tracing::warn!(error = why, "virtio-net: RX queue broken; device needs reset");
        self.broken = true;
        self.interrupt.signal_needs_reset();
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::FromRawFd;
    use std::time::{Duration, Instant};

    use super::super::testing::{DriverQueue, fired, interrupt, memory};
    use super::*;
    use vm_memory::{Bytes, GuestAddress};

    fn seqpacket_pair() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: socketpair writes two fds into `fds`.
        assert_eq!(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0, fds.as_mut_ptr()) }, 0);
        // SAFETY: both fds are fresh and ours.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    fn send(fd: &OwnedFd, pkt: &[u8]) {
        // SAFETY: `pkt` is live for the call.
        assert_eq!(unsafe { libc::write(fd.as_raw_fd(), pkt.as_ptr().cast(), pkt.len()) }, pkt.len() as isize);
    }

    fn recv(fd: &OwnedFd) -> Vec<u8> {
        let mut buf = vec![0u8; 70_000];
        // SAFETY: `buf` is live for the call.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        assert!(n >= 0, "a packet arrived: {}", std::io::Error::last_os_error());
        buf.truncate(n as usize);
        buf
    }

    fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
        let t0 = Instant::now();
        while !f() {
            assert!(t0.elapsed() < Duration::from_secs(5), "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    struct Rig {
        mem: Memory,
        rxq: DriverQueue,
        txq: DriverQueue,
        dev: Net,
        irq: Arc<Interrupt>,
        peer: OwnedFd,
    }

    fn rig() -> Rig {
        let (ours, peer) = seqpacket_pair();
        let mut dev = Net::with_vnet_fd(ours, [0x52, 0x54, 0, 0x12, 0x34, 0x56]).unwrap();
        let mem = memory();
        let (rxq, txq) = (DriverQueue::new(&mem, 0x1_0000, 16), DriverQueue::new(&mem, 0x2_0000, 16));
        let irq = interrupt();
        dev.activate(mem.clone(), vec![rxq.queue(), txq.queue()], irq.clone(), 0).unwrap();
        Rig { mem, rxq, txq, dev, irq, peer }
    }

    fn frame(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    #[test]
    fn macs_parse_strictly() {
        assert_eq!(parse_mac("52:54:00:AB:cd:ef").unwrap(), [0x52, 0x54, 0, 0xab, 0xcd, 0xef]);
        for bad in ["52:54:00:ab:cd", "52:54:00:ab:cd:ef:01", "52-54-00-ab-cd-ef", "52:54:00:ab:cd:e", "zz:54:00:ab:cd:ef", "01:00:5e:00:00:01", ""] {
            assert!(matches!(parse_mac(bad), Err(NetError::Mac(_))), "{bad}");
        }
    }

    #[test]
    fn config_space_has_the_mac_and_link_up() {
        let r = rig();
        let mut c = [0u8; 8];
        r.dev.read_config(0, &mut c);
        assert_eq!(c, [0x52, 0x54, 0, 0x12, 0x34, 0x56, 1, 0]);
        assert_eq!(r.dev.features() & ((1 << VIRTIO_NET_F_MAC) | (1 << VIRTIO_NET_F_STATUS)), (1 << VIRTIO_NET_F_MAC) | (1 << VIRTIO_NET_F_STATUS));
    }

    #[test]
    fn a_non_tap_fd_is_refused_by_new() {
        let (a, _b) = seqpacket_pair();
        assert!(matches!(Net::new(a, [2, 0, 0, 0, 0, 1]), Err(NetError::Tap { what: "TUNGETIFF", .. })));
    }

    #[test]
    fn tx_writes_each_chain_as_one_packet_with_a_clean_header() {
        let mut r = rig();
        // Header in its own descriptor (with offload flags the device must not pass on),
        // the frame split over two more.
        let f = frame(1514, 7);
        let mut hdr = [0u8; VNET_HDR_LEN];
        hdr[0] = 1; // NEEDS_CSUM
        hdr[1] = 1; // GSO_TCPV4
        r.mem.write_slice(&hdr, GuestAddress(0x4_0000)).unwrap();
        r.mem.write_slice(&f[..100], GuestAddress(0x5_0000)).unwrap();
        r.mem.write_slice(&f[100..], GuestAddress(0x6_0000)).unwrap();
        let head = r.txq.add(&[(0x4_0000, 12, false), (0x5_0000, 100, false), (0x6_0000, 1414, false)]);
        // A second, single-descriptor packet.
        let g = frame(60, 1);
        let mut p2 = vec![0u8; VNET_HDR_LEN];
        p2.extend_from_slice(&g);
        r.mem.write_slice(&p2, GuestAddress(0x7_0000)).unwrap();
        r.txq.add(&[(0x7_0000, p2.len() as u32, false)]);
        r.dev.notify(TX);
        let got = recv(&r.peer);
        assert_eq!(&got[..VNET_HDR_LEN], &[0u8; 12]);
        assert_eq!(&got[VNET_HDR_LEN..], &f[..]);
        assert_eq!(recv(&r.peer), p2);
        assert_eq!(r.txq.used_idx(), 2);
        assert_eq!(r.txq.used(0), (head as u32, 0));
        assert!(fired(&r.irq));
        // A chain outside memory is consumed without a packet.
        r.txq.add(&[(0x4000_0000, 100, false)]);
        r.dev.notify(TX);
        assert_eq!(r.txq.used_idx(), 3);
        // SAFETY: a non-blocking probe of the peer's queue.
        let n = unsafe { libc::recv(r.peer.as_raw_fd(), [0u8; 16].as_mut_ptr().cast(), 16, libc::MSG_DONTWAIT) };
        assert_eq!(n, -1, "nothing was sent");
    }

    #[test]
    fn rx_waits_for_buffers_then_fills_them_with_header_and_frame() {
        let mut r = rig();
        // A packet arrives before the guest posted any buffer: it waits in the socket.
        let f = frame(590, 3);
        let mut pkt = vec![0u8; VNET_HDR_LEN];
        pkt[0] = 2; // DATA_VALID from the host: not for a guest without GUEST_CSUM
        pkt.extend_from_slice(&f);
        send(&r.peer, &pkt);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(r.rxq.used_idx(), 0);
        assert!(!fired(&r.irq));
        // The guest posts two buffers and notifies.
        r.mem.write_slice(&[0xeeu8; 2048], GuestAddress(0x8_0000)).unwrap();
        let head = r.rxq.add(&[(0x8_0000, 2048, true)]);
        r.rxq.add(&[(0x9_0000, 2048, true)]);
        r.dev.notify(RX);
        wait_for("the frame in the used ring", || r.rxq.used_idx() == 1);
        assert_eq!(r.rxq.used(0), (head as u32, (VNET_HDR_LEN + f.len()) as u32));
        let mut got = vec![0u8; VNET_HDR_LEN + f.len() + 1];
        r.mem.read_slice(&mut got, GuestAddress(0x8_0000)).unwrap();
        assert_eq!(&got[..VNET_HDR_LEN], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0], "flags 0, GSO_NONE, num_buffers 1");
        assert_eq!(&got[VNET_HDR_LEN..VNET_HDR_LEN + f.len()], &f[..]);
        assert_eq!(got[VNET_HDR_LEN + f.len()], 0xee, "nothing written past the frame");
        wait_for("the interrupt", || fired(&r.irq));
        // With a buffer already posted, the next packet goes straight in without a kick.
        let mut p2 = vec![0u8; VNET_HDR_LEN];
        p2.extend_from_slice(&frame(60, 9));
        send(&r.peer, &p2);
        wait_for("the second frame", || r.rxq.used_idx() == 2);
        assert_eq!(r.rxq.used(1).1, 72);
        // After a reset the RX thread is gone: a posted buffer stays unused.
        r.dev.reset();
        r.rxq.add(&[(0xa_0000, 2048, true)]);
        send(&r.peer, &p2);
        r.dev.notify(RX);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(r.rxq.used_idx(), 2);
    }

    /// End to end with the kernel on a real tap: an ARP request the host sends reaches an RX
    /// buffer, and the guest's ARP reply (TX) lands in the host's neighbour table. Needs
    /// CAP_NET_ADMIN (CI runs as root); the test thread moves into a network namespace of its
    /// own first (`unshare(CLONE_NEWNET)` affects only the calling thread and the `ip` commands
    /// it starts), so no interface of the host is touched.
    #[test]
    fn a_real_tap_carries_frames_both_ways() {
        std::thread::spawn(|| {
            // SAFETY: unshare with a flag only; it changes this thread's namespace.
            let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "unshare(CLONE_NEWNET) needs CAP_SYS_ADMIN: {}", std::io::Error::last_os_error());
            real_tap_body();
        })
        .join()
        .unwrap();
    }

    fn real_tap_body() {
        use std::process::Command;
        const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
        // SAFETY: a plain open of a NUL-terminated path.
        let raw = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        assert!(raw >= 0, "open /dev/net/tun: {}", std::io::Error::last_os_error());
        // SAFETY: a fresh fd of ours.
        let tap = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut ifreq = [0u8; 40];
        ifreq[..6].copy_from_slice(b"cltap0");
        ifreq[16..18].copy_from_slice(&(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR).to_ne_bytes());
        // SAFETY: TUNSETIFF reads a `struct ifreq`.
        assert_eq!(unsafe { libc::ioctl(tap.as_raw_fd(), TUNSETIFF as _, ifreq.as_mut_ptr()) }, 0, "{}", std::io::Error::last_os_error());
        for args in [&["link", "set", "lo", "up"][..], &["link", "set", "cltap0", "up"], &["addr", "add", "10.9.0.1/24", "dev", "cltap0"]] {
            assert!(Command::new("ip").args(args).status().unwrap().success(), "ip {args:?}");
        }
        let guest_mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
        let mut dev = Net::new(tap, guest_mac).expect("a tap with IFF_VNET_HDR");
        let mem = memory();
        let (mut rxq, mut txq) = (DriverQueue::new(&mem, 0x1_0000, 16), DriverQueue::new(&mem, 0x2_0000, 16));
        dev.activate(mem.clone(), vec![rxq.queue(), txq.queue()], interrupt(), 0).unwrap();
        for i in 0..4 {
            rxq.add(&[(0x8_0000 + i * 0x1000, 2048, true)]);
        }
        dev.notify(RX);
        // The host resolves 10.9.0.2: an ARP request goes out of the tap.
        let sock = std::net::UdpSocket::bind("10.9.0.1:0").unwrap();
        let _ = sock.send_to(b"x", "10.9.0.2:9");
        let mut arp = None;
        wait_for("an ARP request in an RX buffer", || {
            for i in 0..rxq.used_idx() {
                let (id, len) = rxq.used(i);
                let mut pkt = vec![0u8; len as usize];
                mem.read_slice(&mut pkt, GuestAddress(0x8_0000 + id as u64 * 0x1000)).unwrap();
                if pkt.len() >= 12 + 42 && pkt[12 + 12..12 + 14] == [0x08, 0x06] {
                    arp = Some(pkt);
                    return true;
                }
            }
            false
        });
        let arp = arp.unwrap();
        assert_eq!(&arp[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        let host_mac: [u8; 6] = arp[12 + 6..12 + 12].try_into().unwrap();
        // The guest answers.
        let mut reply = vec![0u8; 12];
        reply.extend_from_slice(&host_mac);
        reply.extend_from_slice(&guest_mac);
        reply.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2]);
        reply.extend_from_slice(&guest_mac);
        reply.extend_from_slice(&[10, 9, 0, 2]);
        reply.extend_from_slice(&host_mac);
        reply.extend_from_slice(&[10, 9, 0, 1]);
        mem.write_slice(&reply, GuestAddress(0x7_0000)).unwrap();
        txq.add(&[(0x7_0000, reply.len() as u32, false)]);
        dev.notify(TX);
        assert_eq!(txq.used_idx(), 1);
        wait_for("the guest's MAC in the neighbour table", || {
            let out = Command::new("ip").args(["neigh", "show", "10.9.0.2", "dev", "cltap0"]).output().unwrap();
            String::from_utf8_lossy(&out.stdout).contains("52:54:00:12:34:56")
        });
    }

    #[test]
    fn rx_drops_frames_that_do_not_fit_and_keeps_going() {
        let mut r = rig();
        r.rxq.add(&[(0x8_0000, 64, true)]);
        r.rxq.add(&[(0x9_0000, 2048, true)]);
        let mut big = vec![0u8; VNET_HDR_LEN];
        big.extend_from_slice(&frame(1000, 5));
        send(&r.peer, &big);
        let mut small = vec![0u8; VNET_HDR_LEN];
        small.extend_from_slice(&frame(40, 6));
        send(&r.peer, &small);
        r.dev.notify(RX);
        wait_for("both packets handled", || r.rxq.used_idx() == 2);
        assert_eq!(r.rxq.used(0).1, 0, "the 64-byte buffer is returned empty");
        assert_eq!(r.rxq.used(1).1, 52);
        let mut got = [0u8; 40];
        r.mem.read_slice(&mut got, GuestAddress(0x9_0000 + 12)).unwrap();
        assert_eq!(&got[..], &small[12..]);
    }
}
