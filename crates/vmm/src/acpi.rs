//! The ACPI tables of a VM (ACPI 6.5, hardware-reduced model, §4.1), built with the
//! `acpi_tables` crate and written into guest memory between [`layout::ACPI_START`] and
//! [`layout::ACPI_END`]:
//!
//! - RSDP (§5.2.5, revision 2) at `ACPI_START`, pointing at the XSDT;
//! - XSDT (§5.2.8) listing the FADT and the MADT (the DSDT is reached through the FADT);
//! - FADT (§5.2.9, revision 6.5): `HW_REDUCED_ACPI`, the reset register (`RESET_REG_SUP`), the
//!   sleep control/status registers ([`crate::pm`]), `IAPC_BOOT_ARCH` = 8042 present + VGA not
//!   present, `X_DSDT`;
//! - MADT (§5.2.12): the local APIC address, one enabled processor local APIC per vCPU (APIC
//!   id = vCPU index), one I/O APIC (id 0, GSI base 0);
//! - DSDT (§5.2.11.1): under `\_SB_` one `LNRO0005` device per virtio-mmio window (how Linux's
//!   virtio_mmio driver finds them, its `acpi_match_table`), COM1 (`PNP0501`), the PS/2
//!   keyboard controller (`PNP0303`), and `\_S5_` for [`crate::pm`]'s power-off.
//!
//! Interrupts: a hardware-reduced Linux guest replaces the 8259 with `null_legacy_pic`
//! (arch/x86/kernel/acpi/boot.c, `acpi_generic_reduced_hw_init`), so it has no legacy ISA
//! IRQs: every interrupt comes from an ACPI resource (`_CRS`) and gets a dynamically allocated
//! Linux IRQ number. A driver that hard-codes a legacy IRQ instead of reading the resource
//! finds nothing there; the i8042 driver does so under `i8042.nopnp`, so the guest must *not*
//! be given `i8042.nopnp` (then it binds the `PNP0303` device and its IRQ through PnP-ACPI).

use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::madt::{EnabledStatus, IoApic, LocalInterruptController, MADT, ProcessorLocalApic};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::{Aml, aml};
use vm_memory::{Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

use crate::i8042::I8042_KBD_GSI;
use crate::layout;

/// One virtio-mmio device as the DSDT declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioDeviceInfo {
    /// Guest-physical base of its register window (below 4 GiB).
    pub base: u64,
    /// Length of the window, bytes.
    pub len: u64,
    /// Its interrupt: an I/O APIC pin (GSI), edge-triggered, active high.
    pub gsi: u32,
}

/// Errors building the ACPI tables.
#[derive(Debug, thiserror::Error)]
pub enum AcpiError {
    /// The MADT must list at least one processor.
    #[error("a VM needs at least one vCPU")]
    NoVcpus,
    /// `Memory32Fixed` describes 32-bit windows only.
    #[error("virtio-mmio device {index} at {base:#x}+{len:#x} is not a non-empty window below 4 GiB")]
    BadWindow { index: usize, base: u64, len: u64 },
    /// Device names are `VR00`..`VRFF`.
    #[error("{0} virtio-mmio devices, more than the {MAX_DEVICES} the DSDT can name")]
    TooManyDevices(usize),
    /// The I/O APIC has [`IOAPIC_PINS`] pins.
    #[error("virtio-mmio device {index} uses GSI {gsi}, beyond the I/O APIC's {IOAPIC_PINS} pins")]
    BadGsi { index: usize, gsi: u32 },
    /// The tables outgrow `ACPI_START..ACPI_END`.
    #[error("the ACPI tables need {bytes} bytes, more than their {avail}-byte area")]
    TooLarge { bytes: u64, avail: u64 },
    /// Writing guest memory.
    #[error("writing the ACPI tables to guest memory: {0}")]
    Memory(#[from] GuestMemoryError),
}

/// Pins of the (KVM in-kernel) I/O APIC, GSIs 0..24.
pub const IOAPIC_PINS: u32 = 24;

/// The most virtio-mmio devices the DSDT names (`VR00`..`VRFF`).
pub const MAX_DEVICES: usize = 256;

const OEM_ID: [u8; 6] = *b"CLDLET";
const OEM_REVISION: u32 = 1;
/// The FADT's hypervisor vendor identity (§5.2.9, ACPI 6.0+).
const HYPERVISOR_ID: [u8; 8] = *b"CLOUDLET";

/// `IAPC_BOOT_ARCH` flags (ACPI 6.5 table 5.11). Linux's `acpi_parse_fadt` marks the i8042
/// as absent when `ACPI_FADT_8042` (bit 1) is clear in a revision >= 2 FADT.
const IAPC_8042: u16 = 1 << 1;
const IAPC_VGA_NOT_PRESENT: u16 = 1 << 2;

/// DSDT revision 2 and up: AML integers are 64 bits (§5.2.11.1).
const DSDT_REVISION: u8 = 6;

const COM1_PORT: u16 = 0x3f8;
const COM1_LEN: u8 = 8;
const COM1_GSI: u32 = 4;
const KBD_DATA_PORT: u16 = 0x60;
const KBD_COMMAND_PORT: u16 = 0x64;

/// Tables are placed on 16-byte boundaries.
const ALIGN: u64 = 16;

fn oem_table_id(table: &[u8; 4]) -> [u8; 8] {
    let mut id = *b"CLDL    ";
    id[4..].copy_from_slice(table);
    id
}

fn bytes_of(t: &dyn Aml) -> Vec<u8> {
    let mut v = Vec::new();
    t.to_aml_bytes(&mut v);
    v
}

/// An edge-triggered, active-high, exclusive interrupt consumed by the device.
fn edge_irq(gsi: u32) -> aml::Interrupt {
    aml::Interrupt::new(true, true, false, false, gsi)
}

/// The DSDT's AML (its definition block, without the table header). Errors: a virtio window
/// above 4 GiB or empty, or a GSI beyond the I/O APIC.
pub fn dsdt_aml(virtio: &[MmioDeviceInfo]) -> Result<Vec<u8>, AcpiError> {
    if virtio.len() > MAX_DEVICES {
        return Err(AcpiError::TooManyDevices(virtio.len()));
    }
    let mut sb = Vec::new();
    for (index, d) in virtio.iter().enumerate() {
        let end = d.base.checked_add(d.len);
        let (base, len) = match (u32::try_from(d.base), u32::try_from(d.len), end) {
            (Ok(b), Ok(l), Some(e)) if l > 0 && e <= 1 << 32 => (b, l),
            _ => return Err(AcpiError::BadWindow { index, base: d.base, len: d.len }),
        };
        if d.gsi >= IOAPIC_PINS {
            return Err(AcpiError::BadGsi { index, gsi: d.gsi });
        }
        let name = format!("VR{index:02X}");
        let uid = index as u32;
        let mem = aml::Memory32Fixed::new(true, base, len);
        let irq = edge_irq(d.gsi);
        let crs = aml::ResourceTemplate::new(vec![&mem, &irq]);
        aml::Device::new(
            name.as_str().into(),
            vec![
                &aml::Name::new("_HID".into(), &"LNRO0005"),
                &aml::Name::new("_UID".into(), &uid),
                // Cache-coherent DMA (the default on x86; explicit for any reader).
                &aml::Name::new("_CCA".into(), &aml::ONE),
                &aml::Name::new("_CRS".into(), &crs),
            ],
        )
        .to_aml_bytes(&mut sb);
    }

    let com1_io = aml::IO::new(COM1_PORT, COM1_PORT, 1, COM1_LEN);
    let com1_irq = edge_irq(COM1_GSI);
    let com1_crs = aml::ResourceTemplate::new(vec![&com1_io, &com1_irq]);
    aml::Device::new(
        "COM1".into(),
        vec![
            &aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0501")),
            &aml::Name::new("_UID".into(), &aml::ZERO),
            &aml::Name::new("_CRS".into(), &com1_crs),
        ],
    )
    .to_aml_bytes(&mut sb);

    // i8042_pnp_kbd_probe takes the data port from the first I/O resource, the command port
    // from the second (each of length 1), and the IRQ from the interrupt resource.
    let kbd_data = aml::IO::new(KBD_DATA_PORT, KBD_DATA_PORT, 1, 1);
    let kbd_cmd = aml::IO::new(KBD_COMMAND_PORT, KBD_COMMAND_PORT, 1, 1);
    let kbd_irq = edge_irq(I8042_KBD_GSI);
    let kbd_crs = aml::ResourceTemplate::new(vec![&kbd_data, &kbd_cmd, &kbd_irq]);
    aml::Device::new("PS2K".into(), vec![&aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0303")), &aml::Name::new("_CRS".into(), &kbd_crs)])
        .to_aml_bytes(&mut sb);

    let mut out = aml::Scope::raw("\\_SB_".into(), sb);
    // \_S5_: SLP_TYP for PM1a and PM1b, two reserved (§7.4.2.5). A hardware-reduced OSPM
    // writes only the first to the sleep control register.
    let s5 = aml::Package::new(vec![&layout::ACPI_S5_TYPE, &aml::ZERO, &aml::ZERO, &aml::ZERO]);
    aml::Name::new("\\_S5_".into(), &s5).to_aml_bytes(&mut out);
    Ok(out)
}

fn fadt(dsdt: u64) -> Vec<u8> {
    let io8 = |port: u16| GAS::new(AddressSpace::SystemIo, 8, 0, AccessSize::ByteAccess, port.into());
    let mut b = FADTBuilder::new(OEM_ID, oem_table_id(b"FACP"), OEM_REVISION)
        .dsdt_64(dsdt)
        .flag(Flags::HwReducedAcpi)
        .flag(Flags::ResetRegSup)
        // The power and sleep buttons are not fixed-feature hardware (there are none).
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton);
    b.iapc_boot_arch = (IAPC_8042 | IAPC_VGA_NOT_PRESENT).into();
    b.reset_reg = io8(layout::ACPI_RESET);
    b.reset_value = layout::ACPI_RESET_VALUE;
    b.sleep_control_reg = io8(layout::ACPI_SLEEP_CONTROL);
    b.sleep_status_reg = io8(layout::ACPI_SLEEP_STATUS);
    b.hypervisor_vendor_identity = u64::from_le_bytes(HYPERVISOR_ID).into();
    bytes_of(&b.finalize())
}

/// The MADT. No interrupt source overrides: QEMU's IRQ0 → GSI 2 override exists for the
/// PIT/HPET timer, which a hardware-reduced Linux never sets up (`timer_init` is a no-op and
/// the LAPIC timer is used); ISA IRQ overrides are moot without legacy IRQs (see the module
/// docs), and our devices' interrupts are identity-mapped GSIs declared in the DSDT. Firecracker
/// and Cloud Hypervisor likewise list only the APICs. No `PCAT_COMPAT` flag: the guest is to
/// ignore the (KVM-emulated) 8259s.
fn madt(vcpus: u8) -> Vec<u8> {
    let mut m = MADT::new(OEM_ID, oem_table_id(b"APIC"), OEM_REVISION, LocalInterruptController::Address(layout::LAPIC_ADDR as u32));
    for id in 0..vcpus {
        m.add_structure(ProcessorLocalApic::new(id, id, EnabledStatus::Enabled));
    }
    m.add_structure(IoApic::new(0, layout::IOAPIC_ADDR as u32, 0));
    bytes_of(&m)
}

fn align(a: u64) -> u64 {
    a.div_ceil(ALIGN) * ALIGN
}

/// The tables as `(guest address, bytes)`, RSDP first. Errors: see [`write_tables`].
pub fn build_tables(vcpus: u8, virtio: &[MmioDeviceInfo]) -> Result<Vec<(u64, Vec<u8>)>, AcpiError> {
    if vcpus == 0 {
        return Err(AcpiError::NoVcpus);
    }
    let rsdp_at = layout::ACPI_START;
    let dsdt_at = align(rsdp_at + Rsdp::len() as u64);
    let mut dsdt = Sdt::new(*b"DSDT", 36, DSDT_REVISION, OEM_ID, oem_table_id(b"DSDT"), OEM_REVISION);
    dsdt.append_slice(&dsdt_aml(virtio)?);
    let dsdt = dsdt.as_slice().to_vec();
    let fadt_at = align(dsdt_at + dsdt.len() as u64);
    let fadt = fadt(dsdt_at);
    let madt_at = align(fadt_at + fadt.len() as u64);
    let madt = madt(vcpus);
    let xsdt_at = align(madt_at + madt.len() as u64);
    let mut x = XSDT::new(OEM_ID, oem_table_id(b"XSDT"), OEM_REVISION);
    x.add_entry(fadt_at);
    x.add_entry(madt_at);
    let xsdt = bytes_of(&x);
    let end = xsdt_at + xsdt.len() as u64;
    if end > layout::ACPI_END {
        return Err(AcpiError::TooLarge { bytes: end - layout::ACPI_START, avail: layout::ACPI_END - layout::ACPI_START });
    }
    let rsdp = bytes_of(&Rsdp::new(OEM_ID, xsdt_at));
    Ok(vec![(rsdp_at, rsdp), (dsdt_at, dsdt), (fadt_at, fadt), (madt_at, madt), (xsdt_at, xsdt)])
}

/// Build the tables for `vcpus` vCPUs and the `virtio` devices (in `_UID` order) and write
/// them into `mem`; returns the RSDP's address (for `boot_params.acpi_rsdp_addr`).
///
/// Errors: no vCPU; a virtio window not below 4 GiB or a GSI beyond the I/O APIC; tables
/// larger than `ACPI_START..ACPI_END`; guest memory not covering that area.
pub fn write_tables(mem: &GuestMemoryMmap, vcpus: u8, virtio: &[MmioDeviceInfo]) -> Result<u64, AcpiError> {
    let tables = build_tables(vcpus, virtio)?;
    for (at, bytes) in &tables {
        mem.write_slice(bytes, GuestAddress(*at))?;
    }
    tracing::debug!(rsdp = layout::ACPI_START, tables = tables.len(), vcpus, virtio = virtio.len(), "ACPI tables written");
    Ok(layout::ACPI_START)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
    }

    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
    }

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 2 << 20)]).expect("guest memory")
    }

    /// A whole table read back from guest memory by its header's length.
    fn table(mem: &GuestMemoryMmap, at: u64) -> Vec<u8> {
        let mut hdr = [0u8; 36];
        mem.read_slice(&mut hdr, GuestAddress(at)).expect("header");
        let mut t = vec![0u8; u32_at(&hdr, 4) as usize];
        mem.read_slice(&mut t, GuestAddress(at)).expect("table");
        assert_eq!(sum(&t), 0, "checksum of {}", String::from_utf8_lossy(&t[..4]));
        t
    }

    fn devices(n: u32) -> Vec<MmioDeviceInfo> {
        (0..n)
            .map(|i| MmioDeviceInfo {
                base: layout::VIRTIO_MMIO_BASE + u64::from(i) * layout::VIRTIO_MMIO_SIZE,
                len: layout::VIRTIO_MMIO_SIZE,
                gsi: layout::VIRTIO_IRQ_BASE + i,
            })
            .collect()
    }

    /// An I/O-space, 8-bit, byte-access generic address (§5.2.3.2) at `at` in `t`.
    fn assert_io8(t: &[u8], at: usize, port: u16) {
        assert_eq!(&t[at..at + 4], &[1, 8, 0, 1], "GAS header at {at}");
        assert_eq!(u64_at(t, at + 4), u64::from(port), "GAS address at {at}");
    }

    /// (RSDP, XSDT, FADT, MADT, DSDT) as written to guest memory.
    fn written(vcpus: u8, virtio: &[MmioDeviceInfo]) -> [Vec<u8>; 5] {
        let m = mem();
        let rsdp_at = write_tables(&m, vcpus, virtio).expect("tables");
        assert_eq!(rsdp_at, layout::ACPI_START);
        let mut rsdp = vec![0u8; 36];
        m.read_slice(&mut rsdp, GuestAddress(rsdp_at)).expect("rsdp");
        let xsdt = table(&m, u64_at(&rsdp, 24));
        assert_eq!(&xsdt[..4], b"XSDT");
        assert_eq!(xsdt.len(), 36 + 2 * 8, "two entries");
        let fadt = table(&m, u64_at(&xsdt, 36));
        let madt = table(&m, u64_at(&xsdt, 44));
        let dsdt = table(&m, u64_at(&fadt, 140));
        for (addr, t) in [(u64_at(&xsdt, 36), &fadt), (u64_at(&xsdt, 44), &madt), (u64_at(&fadt, 140), &dsdt)] {
            assert!(addr >= layout::ACPI_START && addr + t.len() as u64 <= layout::ACPI_END);
        }
        [rsdp, xsdt, fadt, madt, dsdt]
    }

    #[test]
    fn rsdp_and_xsdt_lead_to_fadt_madt_and_dsdt_with_valid_checksums() {
        let [rsdp, _, fadt, madt, dsdt] = written(2, &devices(2));
        assert_eq!(&rsdp[..8], b"RSD PTR ");
        assert_eq!(sum(&rsdp[..20]), 0, "ACPI 1.0 checksum");
        assert_eq!(sum(&rsdp), 0, "extended checksum");
        assert_eq!(rsdp[15], 2, "revision");
        assert_eq!(u32_at(&rsdp, 20), 36, "length");
        assert_eq!(u32_at(&rsdp, 16), 0, "no RSDT");
        assert_eq!((&fadt[..4], fadt.len()), (&b"FACP"[..], 276));
        assert_eq!((&madt[..4], madt.len()), (&b"APIC"[..], 44 + 2 * 8 + 12));
        assert_eq!(&dsdt[..4], b"DSDT");
        assert_eq!(dsdt[8], DSDT_REVISION);
    }

    #[test]
    fn fadt_is_hardware_reduced_with_reset_and_sleep_registers() {
        let [_, _, fadt, _, _] = written(1, &[]);
        assert_eq!((fadt[8], fadt[131]), (6, 5), "FADT 6.5");
        let flags = u32_at(&fadt, 112);
        assert_ne!(flags & (1 << 20), 0, "HW_REDUCED_ACPI");
        assert_ne!(flags & (1 << 10), 0, "RESET_REG_SUP");
        assert_eq!(u16::from_le_bytes([fadt[109], fadt[110]]), 0b110, "IAPC_BOOT_ARCH: 8042, no VGA");
        assert_io8(&fadt, 116, layout::ACPI_RESET);
        assert_eq!(fadt[128], layout::ACPI_RESET_VALUE);
        assert_io8(&fadt, 244, layout::ACPI_SLEEP_CONTROL);
        assert_io8(&fadt, 256, layout::ACPI_SLEEP_STATUS);
        assert_eq!(u32_at(&fadt, 40), 0, "only the 64-bit X_DSDT is used");
        assert_eq!(&fadt[268..276], b"CLOUDLET");
    }

    #[test]
    fn madt_lists_one_enabled_lapic_per_vcpu_and_the_ioapic() {
        let [_, _, _, madt, _] = written(4, &[]);
        assert_eq!(u32_at(&madt, 36), layout::LAPIC_ADDR as u32);
        assert_eq!(u32_at(&madt, 40), 0, "no PCAT_COMPAT");
        let (mut lapics, mut ioapics, mut at) = (vec![], vec![], 44);
        while at < madt.len() {
            let (kind, len) = (madt[at], madt[at + 1] as usize);
            match kind {
                0 => {
                    assert_eq!(len, 8);
                    lapics.push((madt[at + 2], madt[at + 3], u32_at(&madt, at + 4)));
                }
                1 => {
                    assert_eq!(len, 12);
                    ioapics.push((madt[at + 2], u32_at(&madt, at + 4), u32_at(&madt, at + 8)));
                }
                other => panic!("unexpected MADT entry type {other}"),
            }
            at += len;
        }
        assert_eq!(at, madt.len());
        assert_eq!(lapics, (0..4).map(|i| (i, i, 1)).collect::<Vec<_>>(), "(uid, apic id, enabled)");
        assert_eq!(ioapics, vec![(0, layout::IOAPIC_ADDR as u32, 0)]);
    }

    fn find(hay: &[u8], needle: &[u8]) -> usize {
        hay.windows(needle.len()).filter(|w| *w == needle).count()
    }

    #[test]
    fn dsdt_declares_the_virtio_devices_com1_the_keyboard_and_s5() {
        let devs = devices(3);
        let [_, _, _, _, dsdt] = written(1, &devs);
        assert_eq!(find(&dsdt, b"LNRO0005"), 3);
        for d in &devs {
            // Memory32Fixed (ReadWrite, base, len): descriptor 0x86, length 9, RW.
            let mut m = vec![0x86, 9, 0, 1];
            m.extend_from_slice(&(d.base as u32).to_le_bytes());
            m.extend_from_slice(&(d.len as u32).to_le_bytes());
            assert_eq!(find(&dsdt, &m), 1, "window of {d:?}");
            // Extended interrupt: consumer | edge, active high, exclusive, one GSI.
            let mut i = vec![0x89, 6, 0, 0x03, 1];
            i.extend_from_slice(&d.gsi.to_le_bytes());
            assert_eq!(find(&dsdt, &i), 1, "interrupt of {d:?}");
        }
        assert_eq!(find(&dsdt, b"_S5_"), 1);
        // The package: 4 elements, BytePrefix SLP_TYP, then zeros.
        assert_eq!(find(&dsdt, &[0x04, 0x0a, layout::ACPI_S5_TYPE, 0, 0, 0]), 1);
        // COM1: I/O 0x3f8, 8 ports.
        assert_eq!(find(&dsdt, &[0x47, 1, 0xf8, 0x03, 0xf8, 0x03, 1, 8]), 1);
        assert_eq!(find(&dsdt, b"COM1") + find(&dsdt, b"PS2K"), 2);
    }

    #[test]
    fn bad_inputs_are_refused() {
        assert!(matches!(build_tables(0, &[]), Err(AcpiError::NoVcpus)));
        let high = MmioDeviceInfo { base: 1 << 32, len: 0x1000, gsi: 5 };
        assert!(matches!(build_tables(1, &[high]), Err(AcpiError::BadWindow { index: 0, .. })));
        let straddle = MmioDeviceInfo { base: 0xffff_f000, len: 0x2000, gsi: 5 };
        assert!(matches!(build_tables(1, &[straddle]), Err(AcpiError::BadWindow { .. })));
        let many = vec![MmioDeviceInfo { base: 0xd000_0000, len: 1, gsi: 5 }; MAX_DEVICES + 1];
        assert!(matches!(build_tables(1, &many), Err(AcpiError::TooManyDevices(257))));
        let mut d = devices(2);
        d[1].gsi = IOAPIC_PINS;
        assert!(matches!(build_tables(1, &d), Err(AcpiError::BadGsi { index: 1, gsi: 24 })));
        let small = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x1_0000)]).expect("mem");
        assert!(matches!(write_tables(&small, 1, &[]), Err(AcpiError::Memory(_))));
    }

    #[test]
    fn the_largest_vm_fits_the_area() {
        let t = build_tables(255, &devices(layout::VIRTIO_MAX_DEVICES)).expect("fits");
        let (at, last) = t.last().expect("tables");
        assert!(at + last.len() as u64 <= layout::ACPI_END);
        assert!(t.windows(2).all(|w| w[0].0 + w[0].1.len() as u64 <= w[1].0), "no overlap");
    }

    /// Disassemble every table with ACPICA's iasl, when installed (Debian: acpica-tools).
    #[test]
    fn iasl_disassembles_the_tables() {
        if std::process::Command::new("iasl").arg("-v").output().is_err() {
            eprintln!("SKIPPED iasl_disassembles_the_tables: iasl is not installed (apt-get install acpica-tools)");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let [_, xsdt, fadt, madt, dsdt] = written(2, &devices(2));
        let mut dsl = std::collections::HashMap::new();
        for (name, t) in [("xsdt", xsdt), ("facp", fadt), ("apic", madt), ("dsdt", dsdt)] {
            let f = dir.path().join(format!("{name}.dat"));
            std::fs::write(&f, &t).expect("write table");
            let out = std::process::Command::new("iasl").arg("-d").arg(&f).current_dir(dir.path()).output().expect("iasl");
            let log = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "iasl -d {name}: {log}");
            let text = std::fs::read_to_string(dir.path().join(format!("{name}.dsl"))).expect("dsl");
            assert!(!text.contains("Incorrect checksum") && !log.contains("Incorrect checksum"), "{name}: {log}");
            dsl.insert(name, text);
        }
        let d = &dsl["dsdt"];
        for want in ["\"LNRO0005\"", "Name (\\_S5, Package (0x04)", "EisaId (\"PNP0501\")", "EisaId (\"PNP0303\")", "0xD0001000", "0xD0002000"] {
            assert!(d.contains(want), "DSDT lacks {want}:\n{d}");
        }
        assert!(d.contains("Memory32Fixed (ReadWrite,") && d.contains("Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, )"), "{d}");
        // The disassembly compiles back without a warning.
        let out = std::process::Command::new("iasl").args(["-p", "recompiled", "dsdt.dsl"]).current_dir(dir.path()).output().expect("iasl");
        let log = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && log.contains("0 Errors, 0 Warnings"), "{log}");
        let f = &dsl["facp"];
        assert!(f.contains("Hardware Reduced (V5) : 1") && f.contains("Reset Register Supported (V2) : 1"), "{f}");
    }
}
