//! vCPU set-up for the 64-bit Linux entry: CPUID from KVM's supported set (with each vCPU's
//! APIC id), long mode with paging on ([`super::layout`]'s tables and GDT), the boot registers,
//! an initialised FPU, and the local APIC's LINT0 as ExtINT (the 8259 PIC) and LINT1 as NMI, as
//! a BIOS leaves them (Intel SDM vol. 3 §11.5.1).

use kvm_bindings::{CpuId, kvm_fpu, kvm_lapic_state, kvm_regs, kvm_segment};
use kvm_ioctls::VcpuFd;

use super::VmmError;
use super::layout::{BOOT_STACK, GDT, GDT_FLAGS, IDT, PML4, ZERO_PAGE};

/// The segment register for GDT entry `index` with `flags` (see [`super::layout::gdt_entry`]).
pub fn segment(index: u16, flags: u16) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xf_ffff,
        selector: index * 8,
        type_: (flags & 0xf) as u8,
        present: ((flags >> 7) & 1) as u8,
        dpl: ((flags >> 5) & 3) as u8,
        db: ((flags >> 14) & 1) as u8,
        s: ((flags >> 4) & 1) as u8,
        l: ((flags >> 13) & 1) as u8,
        g: ((flags >> 15) & 1) as u8,
        avl: ((flags >> 12) & 1) as u8,
        unusable: 0,
        padding: 0,
    }
}

fn kvm(what: &'static str) -> impl Fn(kvm_ioctls::Error) -> VmmError {
    move |e| VmmError::Kvm { what, source: e }
}

/// CPUID for vCPU `index`: KVM's supported set, with the initial APIC id (leaf 1, EBX 31..24)
/// and the hypervisor bit (leaf 1, ECX 31) set.
pub fn cpuid_for(base: &CpuId, index: u8) -> CpuId {
    let mut c = base.clone();
    for e in c.as_mut_slice() {
        if e.function == 1 {
            e.ebx = (e.ebx & 0x00ff_ffff) | ((index as u32) << 24);
            e.ecx |= 1 << 31;
        }
    }
    c
}

fn lapic_reg(l: &kvm_lapic_state, off: usize) -> u32 {
    u32::from_le_bytes([l.regs[off] as u8, l.regs[off + 1] as u8, l.regs[off + 2] as u8, l.regs[off + 3] as u8])
}

fn set_lapic_reg(l: &mut kvm_lapic_state, off: usize, v: u32) {
    for (i, b) in v.to_le_bytes().iter().enumerate() {
        l.regs[off + i] = *b as _;
    }
}

/// Local vector table LINT0 (offset 0x350) and LINT1 (0x360); delivery mode bits 8..11.
const LVT_LINT0: usize = 0x350;
const LVT_LINT1: usize = 0x360;
const DM_EXTINT: u32 = 0x7 << 8;
const DM_NMI: u32 = 0x4 << 8;

/// Set up vCPU `index` to enter a 64-bit kernel at `entry`.
pub fn setup(vcpu: &VcpuFd, cpuid: &CpuId, index: u8, entry: u64) -> Result<(), VmmError> {
    vcpu.set_cpuid2(&cpuid_for(cpuid, index)).map_err(kvm("KVM_SET_CPUID2"))?;
    let mut s = vcpu.get_sregs().map_err(kvm("KVM_GET_SREGS"))?;
    s.gdt.base = GDT;
    s.gdt.limit = (GDT_FLAGS.len() * 8 - 1) as u16;
    s.idt.base = IDT;
    s.idt.limit = 7;
    let (code, data) = (segment(1, GDT_FLAGS[1]), segment(2, GDT_FLAGS[2]));
    s.cs = code;
    s.ds = data;
    s.es = data;
    s.fs = data;
    s.gs = data;
    s.ss = data;
    let mut tss = segment(3, GDT_FLAGS[3]);
    tss.s = 0;
    s.tr = tss;
    s.cr3 = PML4;
    s.cr4 |= 1 << 5; // PAE
    s.cr0 |= 1 | (1 << 31); // PE, PG
    s.efer |= (1 << 8) | (1 << 10); // LME, LMA
    vcpu.set_sregs(&s).map_err(kvm("KVM_SET_SREGS"))?;
    vcpu.set_fpu(&kvm_fpu { fcw: 0x37f, mxcsr: 0x1f80, ..Default::default() }).map_err(kvm("KVM_SET_FPU"))?;
    let regs = kvm_regs { rflags: 0x2, rip: entry, rsp: BOOT_STACK, rbp: BOOT_STACK, rsi: ZERO_PAGE, ..Default::default() };
    vcpu.set_regs(&regs).map_err(kvm("KVM_SET_REGS"))?;
    let mut l = vcpu.get_lapic().map_err(kvm("KVM_GET_LAPIC"))?;
    let lint0 = lapic_reg(&l, LVT_LINT0);
    set_lapic_reg(&mut l, LVT_LINT0, (lint0 & !0x700) | DM_EXTINT);
    let lint1 = lapic_reg(&l, LVT_LINT1);
    set_lapic_reg(&mut l, LVT_LINT1, (lint1 & !0x700) | DM_NMI);
    vcpu.set_lapic(&l).map_err(kvm("KVM_SET_LAPIC"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_decode_the_gdt_flags() {
        let c = segment(1, GDT_FLAGS[1]);
        assert_eq!((c.selector, c.type_, c.present, c.l, c.db, c.g, c.s), (8, 0xb, 1, 1, 0, 1, 1));
        let d = segment(2, GDT_FLAGS[2]);
        assert_eq!((d.selector, d.type_, d.l, d.db), (16, 0x3, 0, 1));
    }

    #[test]
    fn lapic_registers_round_trip() {
        let mut l = kvm_lapic_state::default();
        set_lapic_reg(&mut l, LVT_LINT0, 0x0001_0700);
        assert_eq!(lapic_reg(&l, LVT_LINT0), 0x0001_0700);
    }
}
