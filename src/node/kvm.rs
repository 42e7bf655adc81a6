//! KVM probe: is `/dev/kvm` usable, and can it run full guests?
//!
//! Some hosts expose a KVM that only emulates (nested KVM without hardware assistance): it runs a
//! trivial real-mode guest but fails with `KVM_EXIT_INTERNAL_ERROR` (emulation failure) on
//! instructions outside KVM's instruction emulator, which a Linux kernel uses early (`int3`,
//! `cmpxchg16b`, `xrstor`, SSE). The probe boots a 16-bit guest that executes `int3`, whose
//! handler runs an SSE instruction (`pxor`) and then writes a magic byte to an I/O port: if the
//! byte arrives, the host runs guests natively.

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VcpuExit};

/// The result of probing KVM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvmProbe {
    /// `/dev/kvm` opened and answered `KVM_GET_API_VERSION`.
    pub present: bool,
    /// The KVM API version (12 on every modern kernel).
    pub api_version: i32,
    /// A guest executing `int3` reached its handler.
    pub full_guests: bool,
    /// What happened, for humans.
    pub detail: String,
}

const MEM_SIZE: usize = 0x10000;
const CODE_AT: usize = 0x1000;
const HANDLER_AT: usize = 0x2000;
const PORT: u16 = 0x10;
const MAGIC: u8 = 0x42;

/// Probe `/dev/kvm`. Never panics; failures are reported in the result.
pub fn probe() -> KvmProbe {
    let kvm = match Kvm::new() {
        Ok(k) => k,
        Err(e) => return KvmProbe { present: false, api_version: 0, full_guests: false, detail: format!("/dev/kvm: {e}") },
    };
    let api_version = kvm.get_api_version();
    match run_int3_guest(&kvm) {
        Ok(()) => KvmProbe { present: true, api_version, full_guests: true, detail: format!("API version {api_version}; a guest ran int3 and SSE natively") },
        Err(why) => KvmProbe { present: true, api_version, full_guests: false, detail: format!("API version {api_version}; {why}") },
    }
}

struct Mapping(*mut libc::c_void);

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the pointer came from a successful mmap of MEM_SIZE bytes and is unmapped once.
        unsafe {
            libc::munmap(self.0, MEM_SIZE);
        }
    }
}

fn run_int3_guest(kvm: &Kvm) -> Result<(), String> {
    let vm = kvm.create_vm().map_err(|e| format!("KVM_CREATE_VM: {e}"))?;
    // SAFETY: an anonymous private mapping; we check for MAP_FAILED.
    let ptr = unsafe {
        libc::mmap(std::ptr::null_mut(), MEM_SIZE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE, -1, 0)
    };
    if ptr == libc::MAP_FAILED {
        return Err("mmap of guest memory failed".into());
    }
    let map = Mapping(ptr);
    // SAFETY: the mapping is MEM_SIZE bytes, writable, and lives until `map` drops.
    let mem = unsafe { std::slice::from_raw_parts_mut(map.0 as *mut u8, MEM_SIZE) };
    // Real-mode IVT entry 3 (int3) -> 0000:HANDLER_AT.
    mem[12..16].copy_from_slice(&[(HANDLER_AT & 0xff) as u8, (HANDLER_AT >> 8) as u8, 0, 0]);
    // int3; hlt
    mem[CODE_AT..CODE_AT + 2].copy_from_slice(&[0xcc, 0xf4]);
    // pxor xmm0, xmm0; mov al, MAGIC; out PORT, al; hlt
    mem[HANDLER_AT..HANDLER_AT + 9].copy_from_slice(&[0x66, 0x0f, 0xef, 0xc0, 0xb0, MAGIC, 0xe6, PORT as u8, 0xf4]);
    let region = kvm_userspace_memory_region { slot: 0, flags: 0, guest_phys_addr: 0, memory_size: MEM_SIZE as u64, userspace_addr: map.0 as u64 };
    // SAFETY: the region points at our live mapping; the VM and vCPU are dropped explicitly
    // before the mapping at the end of this function.
    unsafe { vm.set_user_memory_region(region) }.map_err(|e| format!("KVM_SET_USER_MEMORY_REGION: {e}"))?;
    let mut vcpu = vm.create_vcpu(0).map_err(|e| format!("KVM_CREATE_VCPU: {e}"))?;
    let mut sregs = vcpu.get_sregs().map_err(|e| format!("KVM_GET_SREGS: {e}"))?;
    for seg in [&mut sregs.cs, &mut sregs.ds, &mut sregs.es, &mut sregs.ss] {
        seg.base = 0;
        seg.selector = 0;
    }
    sregs.cr0 &= !((1 << 2) | (1 << 3)); // EM and TS clear: SSE allowed
    sregs.cr4 |= (1 << 9) | (1 << 10); // OSFXSR, OSXMMEXCPT
    vcpu.set_sregs(&sregs).map_err(|e| format!("KVM_SET_SREGS: {e}"))?;
    let mut regs = vcpu.get_regs().map_err(|e| format!("KVM_GET_REGS: {e}"))?;
    regs.rip = CODE_AT as u64;
    regs.rsp = 0x8000;
    regs.rflags = 2;
    vcpu.set_regs(&regs).map_err(|e| format!("KVM_SET_REGS: {e}"))?;
    let mut outcome = Err("the guest never reached the int3 handler".to_string());
    for _ in 0..16 {
        match vcpu.run() {
            Ok(VcpuExit::IoOut(port, data)) if port == PORT && data.first() == Some(&MAGIC) => {
                outcome = Ok(());
                break;
            }
            Ok(VcpuExit::Hlt) => break,
            Ok(VcpuExit::InternalError) => {
                outcome = Err("the guest failed with KVM_EXIT_INTERNAL_ERROR (emulation-only KVM: cannot boot a stock Linux guest)".into());
                break;
            }
            Ok(VcpuExit::FailEntry(reason, _)) => {
                outcome = Err(format!("KVM_EXIT_FAIL_ENTRY (hardware reason {reason:#x})"));
                break;
            }
            Ok(VcpuExit::Shutdown) => {
                outcome = Err("the guest triple-faulted on int3".into());
                break;
            }
            Ok(_) => continue,
            Err(e) => {
                outcome = Err(format!("KVM_RUN: {e}"));
                break;
            }
        }
    }
    drop(vcpu);
    drop(vm);
    drop(map);
    outcome
}
