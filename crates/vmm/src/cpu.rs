//! vCPU set-up for the 64-bit Linux entry: CPUID from KVM's supported set (with each vCPU's
//! APIC id), long mode with paging on ([`super::layout`]'s tables and GDT), the boot registers,
//! an initialised FPU, and the local APIC's LINT0 as ExtINT (the 8259 PIC) and LINT1 as NMI, as
//! a BIOS leaves them (Intel SDM vol. 3 §11.5.1).

use kvm_bindings::{CpuId, Msrs, kvm_fpu, kvm_lapic_state, kvm_msr_entry, kvm_regs, kvm_segment};
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

/// CPUID for vCPU `index` of `count`: KVM's supported set, with the initial APIC id (leaf 1,
/// EBX 31..24; leaf 0xB, EDX), the logical processor count (leaf 1, EBX 23..16, with HTT in
/// EDX 28 when there are several) and the hypervisor bit (leaf 1, ECX 31) set (Intel SDM vol. 2A,
/// CPUID; the MADT lists the same APIC ids).
pub fn cpuid_for(base: &CpuId, index: u8, count: u8) -> CpuId {
    let mut c = base.clone();
    for e in c.as_mut_slice() {
        match e.function {
            1 => {
                e.ebx = (e.ebx & 0x0000_ffff) | ((index as u32) << 24) | ((count as u32) << 16);
                e.ecx |= 1 << 31;
                if count > 1 {
                    e.edx |= 1 << 28;
                }
            }
            0xb => e.edx = index as u32,
            _ => {}
        }
    }
    c
}

/// The MSRs every vCPU starts with: fast strings on (`IA32_MISC_ENABLE` bit 0) and MTRRs on
/// with write-back as the default type (`IA32_MTRR_DEF_TYPE`: E, type 6), as firmware leaves
/// them (Intel SDM vol. 4; vol. 3 §11.11.2.1).
pub const BOOT_MSRS: [(u32, u64); 2] = [(0x1a0, 1), (0x2ff, (1 << 11) | 6)];

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

/// Set up what every vCPU needs: CPUID, the boot MSRs, and LINT0/LINT1 of its local APIC.
/// Application processors then wait (KVM's in-kernel LAPIC) for the boot processor's INIT-SIPI.
pub fn setup_common(vcpu: &VcpuFd, cpuid: &CpuId, index: u8, count: u8) -> Result<(), VmmError> {
    vcpu.set_cpuid2(&cpuid_for(cpuid, index, count)).map_err(kvm("KVM_SET_CPUID2"))?;
    let entries: Vec<kvm_msr_entry> = BOOT_MSRS.iter().map(|(index, data)| kvm_msr_entry { index: *index, data: *data, ..Default::default() }).collect();
    let msrs = Msrs::from_entries(&entries).map_err(|e| VmmError::Config(format!("MSR list: {e:?}")))?;
    let n = vcpu.set_msrs(&msrs).map_err(kvm("KVM_SET_MSRS"))?;
    if n != entries.len() {
        return Err(VmmError::Config(format!("KVM took {n} of {} boot MSRs", entries.len())));
    }
    let mut l = vcpu.get_lapic().map_err(kvm("KVM_GET_LAPIC"))?;
    let lint0 = lapic_reg(&l, LVT_LINT0);
    set_lapic_reg(&mut l, LVT_LINT0, (lint0 & !0x700) | DM_EXTINT);
    let lint1 = lapic_reg(&l, LVT_LINT1);
    set_lapic_reg(&mut l, LVT_LINT1, (lint1 & !0x700) | DM_NMI);
    vcpu.set_lapic(&l).map_err(kvm("KVM_SET_LAPIC"))?;
    Ok(())
}

/// Set up the boot processor to enter a 64-bit kernel at `entry` (after [`setup_common`]).
pub fn setup_boot(vcpu: &VcpuFd, entry: u64) -> Result<(), VmmError> {
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
