//! cloudlet's VMM (issue 7, first part): a KVM virtual machine built from rust-vmm crates
//! (`kvm-ioctls`, `kvm-bindings`, `vm-memory`, `linux-loader`, `vm-superio`, `vmm-sys-util`),
//! run by `cloudlet vmm-worker`, one process per VM.
//!
//! What it does today: a Linux direct boot of a bzImage (the Linux x86 boot protocol, 64-bit
//! entry; [`layout`], [`cpu`]) with a kernel command line and an initramfs, one vCPU, an in-kernel
//! irqchip and PIT, a 16550 serial console (`vm-superio`, IRQ 4 through an irqfd) copied to a
//! console log, the i8042 reset line (the guest's `reboot=k`) as the way a guest ends, and a boot
//! timer at MMIO [`layout::BOOT_TIMER`]. Still to come (see `docs/design.md` §17): ACPI tables,
//! virtio-mmio block and net, several vCPUs, the control socket and confinement.

pub mod cpu;
pub mod layout;

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kvm_bindings::{KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY, kvm_pit_config, kvm_userspace_memory_region};
use kvm_ioctls::{Kvm, VcpuExit};
use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::KernelLoader;
use linux_loader::loader::bzimage::BzImage;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

/// Errors of the VMM.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    /// The VM's configuration can't work (memory too small, bad command line).
    #[error("{0}")]
    Config(String),
    /// Reading the kernel or initramfs.
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    /// A KVM ioctl failed.
    #[error("{what}: {source}")]
    Kvm { what: &'static str, source: kvm_ioctls::Error },
    /// Guest memory set-up.
    #[error("guest memory: {0}")]
    Memory(String),
    /// The kernel image could not be loaded.
    #[error("loading the kernel: {0}")]
    Kernel(String),
}

/// What one VM runs.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// A bzImage.
    pub kernel: PathBuf,
    /// An initramfs (any format the kernel unpacks), if any.
    pub initrd: Option<PathBuf>,
    /// Guest memory, MiB (at least 64).
    pub memory_mib: u64,
    /// The kernel command line (at most [`layout::CMDLINE_MAX`] - 1 bytes).
    pub cmdline: String,
    /// Where the serial console's output is appended (also to stdout when `echo`).
    pub console_log: Option<PathBuf>,
    /// Copy the console to stdout as well.
    pub echo: bool,
}

/// How a VM ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Exit {
    /// The guest reset itself through the i8042 (a reboot or, with `reboot=k`, its way out).
    Reset,
    /// The vCPU shut down (a triple fault).
    Shutdown,
    /// The vCPU halted with nothing to wake it.
    Halted,
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct Report {
    /// How it ended.
    pub exit: Exit,
    /// From the start of set-up to the guest's boot timer write, if it wrote one.
    pub boot_timer: Option<Duration>,
    /// From the start of set-up to the first instruction.
    pub setup: Duration,
    /// From the start of set-up to the end.
    pub total: Duration,
}

struct Irq(EventFd);

impl vm_superio::Trigger for Irq {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// The console's sink: the log file and, optionally, stdout.
struct Console {
    log: Option<File>,
    echo: bool,
}

impl Write for Console {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(f) = self.log.as_mut() {
            f.write_all(buf)?;
        }
        if self.echo {
            let mut o = std::io::stdout();
            o.write_all(buf)?;
            o.flush()?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn kvm(what: &'static str) -> impl Fn(kvm_ioctls::Error) -> VmmError {
    move |e| VmmError::Kvm { what, source: e }
}

fn mem_err(e: impl std::fmt::Display) -> VmmError {
    VmmError::Memory(e.to_string())
}

const COM1: u16 = 0x3f8;
const I8042_COMMAND: u16 = 0x64;
const I8042_RESET: u8 = 0xfe;

/// Boot the VM and run it until it ends. Errors: set-up failures; a guest's own failure (a
/// panic, a triple fault) is an [`Exit`], not an error.
pub fn run(cfg: &VmConfig) -> Result<Report, VmmError> {
    let t0 = Instant::now();
    if cfg.memory_mib < 64 {
        return Err(VmmError::Config("a VM needs at least 64 MiB of memory".into()));
    }
    if cfg.memory_mib > 1 << 20 {
        return Err(VmmError::Config("a VM has at most 1 TiB of memory".into()));
    }
    let mem_bytes = cfg.memory_mib << 20;
    let io = |what: String| move |e| VmmError::Io { what, source: e };
    // Inputs first: a missing file is the caller's error, before any KVM resource exists.
    let mut kf = File::open(&cfg.kernel).map_err(io(format!("opening {}", cfg.kernel.display())))?;
    let initrd_bytes = match &cfg.initrd {
        Some(p) => Some(std::fs::read(p).map_err(io(format!("reading {}", p.display())))?),
        None => None,
    };
    let kvm_fd = Kvm::new().map_err(kvm("opening /dev/kvm"))?;
    let vm = kvm_fd.create_vm().map_err(kvm("KVM_CREATE_VM"))?;
    vm.set_tss_address(0xfffb_d000).map_err(kvm("KVM_SET_TSS_ADDR"))?;
    vm.create_irq_chip().map_err(kvm("KVM_CREATE_IRQCHIP"))?;
    vm.create_pit2(kvm_pit_config { flags: KVM_PIT_SPEAKER_DUMMY, ..Default::default() }).map_err(kvm("KVM_CREATE_PIT2"))?;
    let mem = GuestMemoryMmap::from_ranges(&layout::ram_ranges(mem_bytes)).map_err(mem_err)?;
    for (slot, r) in mem.iter().enumerate() {
        let host = mem.get_host_address(r.start_addr()).map_err(mem_err)? as u64;
        let region = kvm_userspace_memory_region { slot: slot as u32, guest_phys_addr: r.start_addr().raw_value(), memory_size: r.len(), userspace_addr: host, flags: 0 };
        // SAFETY: `host` is the start of a mapping of `r.len()` bytes owned by `mem`, which
        // lives until this function returns, after the last `vcpu.run()`.
        unsafe { vm.set_user_memory_region(region) }.map_err(kvm("KVM_SET_USER_MEMORY_REGION"))?;
    }
    let loaded = BzImage::load(&mem, None, &mut kf, Some(GuestAddress(layout::HIMEM))).map_err(|e| VmmError::Kernel(e.to_string()))?;
    let hdr = loaded.setup_header.ok_or_else(|| VmmError::Kernel("not a bzImage (no setup header)".into()))?;
    let mut cl = linux_loader::cmdline::Cmdline::new(layout::CMDLINE_MAX).map_err(|e| VmmError::Config(e.to_string()))?;
    cl.insert_str(&cfg.cmdline).map_err(|e| VmmError::Config(format!("kernel command line: {e}")))?;
    linux_loader::loader::load_cmdline(&mem, GuestAddress(layout::CMDLINE), &cl).map_err(|e| VmmError::Config(e.to_string()))?;
    let cmdline_len = cl.as_cstring().map_err(|e| VmmError::Config(e.to_string()))?.as_bytes().len();
    let initrd = match initrd_bytes {
        Some(bytes) => {
            let kernel_end = loaded.kernel_load.raw_value() + loaded.kernel_end;
            let addr = layout::initrd_address(mem_bytes, hdr.initrd_addr_max, kernel_end, bytes.len() as u64)?;
            mem.write_slice(&bytes, GuestAddress(addr)).map_err(mem_err)?;
            Some((addr, bytes.len() as u64))
        }
        None => None,
    };
    let params = layout::zero_page(hdr, cmdline_len, initrd, mem_bytes)?;
    LinuxBootConfigurator::write_bootparams::<GuestMemoryMmap>(&BootParams::new(&params, GuestAddress(layout::ZERO_PAGE)), &mem).map_err(mem_err)?;
    layout::write_tables(&mem)?;

    let supported = kvm_fd.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).map_err(kvm("KVM_GET_SUPPORTED_CPUID"))?;
    let mut vcpu = vm.create_vcpu(0).map_err(kvm("KVM_CREATE_VCPU"))?;
    // The 64-bit entry point of a bzImage is 0x200 past the protected-mode kernel's start.
    cpu::setup(&vcpu, &supported, 0, loaded.kernel_load.raw_value() + 0x200)?;

    let evt = EventFd::new(0).map_err(io("eventfd".into()))?;
    vm.register_irqfd(&evt, 4).map_err(kvm("KVM_IRQFD"))?;
    let log = match &cfg.console_log {
        Some(p) => Some(File::options().create(true).append(true).open(p).map_err(io(format!("opening {}", p.display())))?),
        None => None,
    };
    let mut serial = vm_superio::Serial::new(Irq(evt), Console { log, echo: cfg.echo });
    let setup = t0.elapsed();
    let mut boot_timer = None;
    let exit = loop {
        match vcpu.run().map_err(kvm("KVM_RUN"))? {
            VcpuExit::IoOut(port, data) => match port {
                COM1..=0x3ff => {
                    let _ = serial.write((port - COM1) as u8, data.first().copied().unwrap_or(0));
                }
                I8042_COMMAND if data.first() == Some(&I8042_RESET) => break Exit::Reset,
                _ => {}
            },
            VcpuExit::IoIn(port, data) => {
                let v = match port {
                    COM1..=0x3ff => serial.read((port - COM1) as u8),
                    // Nothing else is on the bus yet: the i8042 status reads 0 (no data, input
                    // buffer empty), which keeps the kernel's probe short.
                    _ => 0,
                };
                data.fill(v);
            }
            VcpuExit::MmioWrite(addr, data) => {
                if addr == layout::BOOT_TIMER && data.first() == Some(&layout::BOOT_TIMER_MAGIC) && boot_timer.is_none() {
                    boot_timer = Some(t0.elapsed());
                    tracing::info!(ms = t0.elapsed().as_secs_f64() * 1000.0, "boot timer");
                }
            }
            VcpuExit::MmioRead(_, data) => data.fill(0),
            VcpuExit::Hlt => break Exit::Halted,
            VcpuExit::Shutdown => break Exit::Shutdown,
            other => {
                tracing::warn!(exit = ?other, "unhandled vCPU exit");
            }
        }
    };
    Ok(Report { exit, boot_timer, setup, total: t0.elapsed() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(kernel: &str, mib: u64) -> VmConfig {
        VmConfig { kernel: kernel.into(), initrd: None, memory_mib: mib, cmdline: "console=ttyS0".into(), console_log: None, echo: false }
    }

    #[test]
    fn impossible_configurations_are_refused_before_kvm() {
        assert!(matches!(run(&cfg("/nonexistent/bzImage", 256)), Err(VmmError::Io { .. })));
        assert!(matches!(run(&cfg("/nonexistent/bzImage", 16)), Err(VmmError::Config(_))));
        assert!(matches!(run(&cfg("/nonexistent/bzImage", 2 << 20)), Err(VmmError::Config(_))));
        let mut c = cfg("/proc/self/exe", 256);
        c.initrd = Some("/nonexistent/initrd".into());
        assert!(matches!(run(&c), Err(VmmError::Io { .. })));
    }
}
