//! The VM's buses: I/O ports and MMIO, each a set of non-overlapping windows that route a vCPU's
//! access to the device behind it, with the offset into its window.

use std::sync::{Arc, Mutex};

/// A device behind a window of the I/O or MMIO bus. `offset` is relative to the window's start;
/// `data` is the access (1, 2, 4 or 8 bytes, little endian). Reads the device does not decode
/// fill `data` with zeros; writes it does not decode are ignored.
pub trait BusDevice: Send {
    fn read(&mut self, offset: u64, data: &mut [u8]);
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// A device shared between the bus and its owner.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

/// One bus: windows `(base, len, device)` sorted by base.
#[derive(Default, Clone)]
pub struct Bus {
    windows: Vec<(u64, u64, SharedDevice)>,
}

/// Errors building a bus.
#[derive(Debug, thiserror::Error)]
#[error("bus window {base:#x}+{len:#x} overlaps another or is empty")]
pub struct Overlap {
    pub base: u64,
    pub len: u64,
}

impl Bus {
    /// Add a window. Errors: it is empty or overlaps one already there.
    pub fn insert(&mut self, base: u64, len: u64, dev: SharedDevice) -> Result<(), Overlap> {
        let end = base.checked_add(len).filter(|_| len > 0).ok_or(Overlap { base, len })?;
        if self.windows.iter().any(|(b, l, _)| base < b + l && *b < end) {
            return Err(Overlap { base, len });
        }
        self.windows.push((base, len, dev));
        self.windows.sort_by_key(|w| w.0);
        Ok(())
    }

    fn find(&self, addr: u64) -> Option<(u64, &SharedDevice)> {
        let i = self.windows.partition_point(|(b, _, _)| *b <= addr).checked_sub(1)?;
        let (b, l, d) = &self.windows[i];
        (addr < b + l).then_some((addr - b, d))
    }

    /// Route a read; `false` when no window holds `addr` (then `data` is zeroed).
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        data.fill(0);
        match self.find(addr) {
            Some((off, d)) => {
                d.lock().unwrap_or_else(|p| p.into_inner()).read(off, data);
                true
            }
            None => false,
        }
    }

    /// Route a write; `false` when no window holds `addr`.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr) {
            Some((off, d)) => {
                d.lock().unwrap_or_else(|p| p.into_inner()).write(off, data);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo(Vec<(u64, Vec<u8>)>);
    impl BusDevice for Echo {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.0.push((offset, data.to_vec()));
        }
    }

    #[test]
    fn routes_by_window_with_offsets_and_refuses_overlaps() {
        let a = Arc::new(Mutex::new(Echo(vec![])));
        let mut bus = Bus::default();
        bus.insert(0x1000, 0x100, a.clone()).unwrap();
        bus.insert(0x2000, 0x10, Arc::new(Mutex::new(Echo(vec![])))).unwrap();
        assert!(bus.insert(0x10f0, 0x20, a.clone()).is_err());
        assert!(bus.insert(0x3000, 0, a.clone()).is_err());
        let mut d = [0xffu8; 4];
        assert!(bus.read(0x1004, &mut d));
        assert_eq!(d, [4; 4]);
        assert!(!bus.read(0x1100, &mut d));
        assert_eq!(d, [0; 4]);
        assert!(bus.write(0x10ff, &[7]));
        assert!(!bus.write(0x0fff, &[7]));
        assert_eq!(a.lock().unwrap().0, vec![(0xff, vec![7])]);
    }
}
