//! Guest physical memory layout of a direct Linux boot and the structures written into it
//! before the first instruction: the zero page (`boot_params`, with the e820 map), the kernel
//! command line, the initramfs, identity page tables for the 64-bit entry, and a GDT.
//!
//! Sources: the Linux x86 boot protocol (`Documentation/arch/x86/boot.rst`: the 64-bit entry is
//! `startup_64` at the protected-mode kernel's load address + 0x200, with `%rsi` pointing at the
//! zero page, paging on, and the first GiBs identity-mapped); the Intel SDM vol. 3 §3.4.5
//! (segment descriptors) and §4.5 (4-level paging).

use linux_loader::loader::bootparam::{boot_params, setup_header};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::VmmError;

/// The GDT (null, 64-bit code, data, TSS), at 0x500.
pub const GDT: u64 = 0x500;
/// An empty IDT (the kernel installs its own before enabling interrupts).
pub const IDT: u64 = 0x520;
/// The zero page (`struct boot_params`).
pub const ZERO_PAGE: u64 = 0x7000;
/// Initial stack pointer (grows down, below the page tables).
pub const BOOT_STACK: u64 = 0x8ff0;
/// Page map level 4, one page.
pub const PML4: u64 = 0x9000;
/// Page directory pointer table, one page.
pub const PDPTE: u64 = 0xa000;
/// Page directories: [`IDENTITY_GIB`] pages of 2 MiB entries, from 0xb000.
pub const PDE: u64 = 0xb000;
/// GiBs identity-mapped for the 64-bit entry.
pub const IDENTITY_GIB: u64 = 4;
/// The kernel command line.
pub const CMDLINE: u64 = 0x2_0000;
/// Largest command line, bytes (with its NUL).
pub const CMDLINE_MAX: usize = 4096;
/// Start of the extended-BIOS data area; RAM below it is usable.
pub const EBDA: u64 = 0x9_fc00;
/// Where the protected-mode kernel is loaded (1 MiB).
pub const HIMEM: u64 = 0x10_0000;
/// Start of the 32-bit MMIO hole: guest RAM stops below it (and resumes at 4 GiB).
pub const MMIO_HOLE: u64 = 0xc000_0000;
/// End of the 32-bit MMIO hole.
pub const MMIO_HOLE_END: u64 = 1 << 32;
/// The boot timer: a guest write of [`BOOT_TIMER_MAGIC`] at this MMIO address is timestamped.
pub const BOOT_TIMER: u64 = 0xd000_0000;
/// The value the guest writes to [`BOOT_TIMER`] once it reaches init.
pub const BOOT_TIMER_MAGIC: u8 = 123;

/// The ACPI tables' area: the RSDP at its start (where the kernel's scan of the BIOS area finds
/// it; the zero page's `acpi_rsdp_addr` names it too), the other tables after it. Not RAM in e820.
pub const ACPI_START: u64 = 0xe_0000;
/// End of the ACPI tables' area (exclusive).
pub const ACPI_END: u64 = HIMEM;
/// The first virtio-mmio window; device `i` is at `VIRTIO_MMIO_BASE + i * VIRTIO_MMIO_SIZE`.
pub const VIRTIO_MMIO_BASE: u64 = 0xd000_1000;
/// Size of one virtio-mmio window (virtio 1.2 §4.2.2: registers up to 0x100, config after).
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;
/// The most virtio-mmio devices a VM has.
pub const VIRTIO_MAX_DEVICES: u32 = 16;
/// The GSI (IOAPIC pin) of virtio-mmio device 0; device `i` uses `VIRTIO_IRQ_BASE + i`. Edge
/// triggered, active high, as the DSDT declares.
pub const VIRTIO_IRQ_BASE: u32 = 5;
/// The IOAPIC's MMIO base (KVM's in-kernel IOAPIC), GSI base 0, 24 pins.
pub const IOAPIC_ADDR: u64 = 0xfec0_0000;
/// The local APICs' MMIO base.
pub const LAPIC_ADDR: u64 = 0xfee0_0000;
/// The hardware-reduced ACPI sleep control register (FADT `SLEEP_CONTROL_REG`), an I/O port:
/// a write with SLP_EN (bit 5) and SLP_TYP (bits 2..5) = the DSDT's `_S5` value is a power-off.
pub const ACPI_SLEEP_CONTROL: u16 = 0x600;
/// The sleep status register (FADT `SLEEP_STATUS_REG`), an I/O port that reads 0.
pub const ACPI_SLEEP_STATUS: u16 = 0x601;
/// The ACPI reset register (FADT `RESET_REG`), an I/O port; writing [`ACPI_RESET_VALUE`] resets.
pub const ACPI_RESET: u16 = 0x602;
/// The FADT's `RESET_VALUE`.
pub const ACPI_RESET_VALUE: u8 = 0x1;
/// The `_S5` sleep type the DSDT declares (SLP_TYP of a power-off).
pub const ACPI_S5_TYPE: u8 = 5;

/// The e820 type of usable RAM.
pub const E820_RAM: u32 = 1;

/// The guest RAM ranges for `mem_bytes` of memory: below the MMIO hole, and the rest above
/// 4 GiB. Each is `(start, length)`.
pub fn ram_ranges(mem_bytes: u64) -> Vec<(GuestAddress, usize)> {
    if mem_bytes <= MMIO_HOLE {
        vec![(GuestAddress(0), mem_bytes as usize)]
    } else {
        vec![(GuestAddress(0), MMIO_HOLE as usize), (GuestAddress(MMIO_HOLE_END), (mem_bytes - MMIO_HOLE) as usize)]
    }
}

/// The e820 map for `mem_bytes` of RAM: `(addr, size, type)`.
pub fn e820(mem_bytes: u64) -> Vec<(u64, u64, u32)> {
    let mut v = vec![(0, EBDA, E820_RAM)];
    let low_end = mem_bytes.min(MMIO_HOLE);
    v.push((HIMEM, low_end - HIMEM, E820_RAM));
    if mem_bytes > MMIO_HOLE {
        v.push((MMIO_HOLE_END, mem_bytes - MMIO_HOLE, E820_RAM));
    }
    v
}

/// Where an initramfs of `len` bytes goes: page-aligned, as high as the kernel allows
/// (`initrd_addr_max`) and below the MMIO hole and the end of RAM. Errors: it does not fit
/// above the kernel (`kernel_end`).
pub fn initrd_address(mem_bytes: u64, initrd_addr_max: u32, kernel_end: u64, len: u64) -> Result<u64, VmmError> {
    let top = mem_bytes.min(MMIO_HOLE).min(initrd_addr_max as u64 + 1);
    let addr = top.checked_sub(len).map(|a| a & !0xfff).filter(|a| *a >= kernel_end);
    addr.ok_or_else(|| VmmError::Config(format!("an initramfs of {len} bytes does not fit in {} MiB of memory above the kernel", mem_bytes >> 20)))
}

/// The zero page: the kernel's own setup header (as the loader read it) completed by the boot
/// loader's fields, the command line, the initramfs and the e820 map.
pub fn zero_page(mut hdr: setup_header, cmdline_len: usize, initrd: Option<(u64, u64)>, mem_bytes: u64) -> Result<boot_params, VmmError> {
    hdr.type_of_loader = 0xff; // "undefined" boot loader
    hdr.boot_flag = 0xaa55;
    hdr.header = 0x5372_6448; // "HdrS"
    hdr.cmd_line_ptr = CMDLINE as u32;
    hdr.cmdline_size = cmdline_len as u32;
    if let Some((addr, len)) = initrd {
        hdr.ramdisk_image = addr as u32;
        hdr.ramdisk_size = len as u32;
    }
    let mut p = boot_params { hdr, ..Default::default() };
    let map = e820(mem_bytes);
    if map.len() > p.e820_table.len() {
        return Err(VmmError::Config("too many e820 entries".into()));
    }
    for (i, (addr, size, kind)) in map.iter().enumerate() {
        p.e820_table[i].addr = *addr;
        p.e820_table[i].size = *size;
        p.e820_table[i].r#type = *kind;
    }
    p.e820_entries = map.len() as u8;
    Ok(p)
}

/// A flat segment descriptor with `flags` = access byte (bits 0..8) and the flags nibble
/// (bits 12..16: AVL, L, D/B, G), base 0 and limit 0xfffff (Intel SDM vol. 3, figure 3-8).
pub fn gdt_entry(flags: u16) -> u64 {
    let (base, limit) = (0u64, 0xf_ffffu64);
    ((base & 0xff00_0000) << 32) | ((base & 0x00ff_ffff) << 16) | (limit & 0xffff) | ((limit & 0xf_0000) << 32) | (((flags as u64) & 0xf0ff) << 40)
}

/// The GDT entries: null, code (selector 0x8: 64-bit, present, ring 0), data (0x10), TSS (0x18).
pub const GDT_FLAGS: [u16; 4] = [0, 0xa09b, 0xc093, 0x808b];

/// Write the page tables (identity map of [`IDENTITY_GIB`] GiB with 2 MiB pages) and the GDT.
pub fn write_tables(mem: &GuestMemoryMmap) -> Result<(), VmmError> {
    let w = |v: u64, at: u64| mem.write_obj(v, GuestAddress(at)).map_err(|e| VmmError::Memory(e.to_string()));
    w(PDPTE | 0x03, PML4)?;
    for g in 0..IDENTITY_GIB {
        w((PDE + g * 0x1000) | 0x03, PDPTE + g * 8)?;
        for i in 0..512u64 {
            // present | writable | page size (2 MiB)
            w(((g << 30) | (i << 21)) | 0x83, PDE + g * 0x1000 + i * 8)?;
        }
    }
    for (i, f) in GDT_FLAGS.iter().enumerate() {
        // Entry 0 is the null descriptor: all zeros.
        w(if i == 0 { 0 } else { gdt_entry(*f) }, GDT + i as u64 * 8)?;
    }
    w(0, IDT)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_match_the_sdm() {
        // The classic values every x86 boot loader uses for flat 64-bit code and data.
        assert_eq!(gdt_entry(0xa09b), 0x00af_9b00_0000_ffff);
        assert_eq!(gdt_entry(0xc093), 0x00cf_9300_0000_ffff);
        assert_eq!(gdt_entry(0x808b), 0x008f_8b00_0000_ffff);
    }

    #[test]
    fn memory_map_skips_the_hole_and_the_bios_area() {
        assert_eq!(e820(256 << 20), vec![(0, EBDA, 1), (HIMEM, (256 << 20) - HIMEM, 1)]);
        let big = 4u64 << 30;
        assert_eq!(e820(big), vec![(0, EBDA, 1), (HIMEM, MMIO_HOLE - HIMEM, 1), (1 << 32, big - MMIO_HOLE, 1)]);
        assert_eq!(ram_ranges(big).iter().map(|(_, l)| *l as u64).sum::<u64>(), big);
    }

    #[test]
    fn the_initrd_goes_high_aligned_and_must_fit() {
        let a = initrd_address(256 << 20, 0x7fff_ffff, 0x200_0000, 1_000_000).expect("fits");
        assert_eq!(a % 4096, 0);
        assert!(a + 1_000_000 <= 256 << 20);
        assert!(initrd_address(64 << 20, 0x7fff_ffff, 0x300_0000, 60 << 20).is_err());
    }

    #[test]
    fn the_zero_page_carries_the_loader_fields_and_e820() {
        let p = zero_page(setup_header::default(), 42, Some((0x800_0000, 1234)), 512 << 20).expect("zero page");
        let h = p.hdr;
        assert_eq!((h.boot_flag, h.header, h.type_of_loader), (0xaa55, 0x5372_6448, 0xff));
        assert_eq!((h.cmd_line_ptr, h.cmdline_size, h.ramdisk_image, h.ramdisk_size), (CMDLINE as u32, 42, 0x800_0000, 1234));
        assert_eq!(p.e820_entries, 2);
        assert_eq!({ p.e820_table[1].addr }, HIMEM);
    }

    #[test]
    fn page_tables_identity_map_with_2_mib_pages() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).expect("mem");
        write_tables(&mem).expect("tables");
        let r = |at: u64| mem.read_obj::<u64>(GuestAddress(at)).expect("read");
        assert_eq!(r(PML4), PDPTE | 3);
        assert_eq!(r(PDPTE + 8), (PDE + 0x1000) | 3, "the second GiB's directory");
        assert_eq!(r(PDE + 8), (1 << 21) | 0x83, "2 MiB at 2 MiB");
        assert_eq!(r(PDE + 0x1000), (1 << 30) | 0x83, "1 GiB maps to 1 GiB");
        assert_eq!((r(GDT), r(GDT + 8)), (0, 0x00af_9b00_0000_ffff));
    }
}
