//! One VM, assembled and run: inputs opened, KVM VM and guest memory made, the kernel, command
//! line, initramfs, zero page, page tables and ACPI tables written, the devices placed on the
//! buses with their irqfds, the vCPUs set up, the worker confined, and then the vCPU, control and
//! signal threads started. The main thread waits for the first [`End`] and writes the exit
//! record.

use std::fs::File;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use kvm_bindings::{KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY, kvm_pit_config, kvm_userspace_memory_region};
use kvm_ioctls::{Kvm, VmFd};
use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::KernelLoader;
use linux_loader::loader::bzimage::BzImage;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

use super::bus::{Bus, BusDevice};
use super::console::{COM1, COM1_GSI, Hub, IrqLine, SerialPort, Sink};
use super::control::{self, End, Shared};
use super::spec::{ExitReason, ExitRecord, WorkerSpec};
use super::vcpu::{self, BootTimer, Buses, GuestEnd};
use super::{VmmError, acpi, confine, cpu, i8042, layout, pm, validate, virtio};

fn kvm(what: &'static str) -> impl Fn(kvm_ioctls::Error) -> VmmError {
    move |e| VmmError::Kvm { what, source: e }
}

fn mem_err(e: impl std::fmt::Display) -> VmmError {
    VmmError::Memory(e.to_string())
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> VmmError {
    move |e| VmmError::Io { what, source: e }
}

/// The i8042's window: data port 0x60 to command/status port 0x64.
const I8042_BASE: u64 = 0x60;
const I8042_GSI: u32 = 1;

/// The machine's own command-line additions: it has no PCI bus.
fn machine_cmdline(user: &str) -> String {
    if user.split_whitespace().any(|w| w.starts_with("pci=")) { user.to_string() } else { format!("{user} pci=off") }
}

/// A virtio device opened from the spec, before it is placed on the MMIO bus.
enum Virtio {
    Block(virtio::block::Block),
    Net(virtio::net::Net),
}

/// The kernel file, the initramfs bytes and the virtio devices a spec names.
type Opened = (File, Option<Vec<u8>>, Vec<Virtio>);

fn open_inputs(spec: &WorkerSpec) -> Result<Opened, VmmError> {
    let kf = File::open(&spec.kernel).map_err(io(format!("opening {}", spec.kernel.display())))?;
    let initrd = match &spec.initrd {
        Some(p) => Some(std::fs::read(p).map_err(io(format!("reading {}", p.display())))?),
        None => None,
    };
    let mut devs = Vec::new();
    for (i, d) in spec.disks.iter().enumerate() {
        let serial = format!("{}-{i}", spec.id.chars().take(16).collect::<String>());
        // HELPER(virtio): the block device's constructor.
        let b = virtio::block::Block::open(d, &serial).map_err(|e| VmmError::Device(format!("disks[{i}] ({}): {e}", d.path.display())))?;
        devs.push(Virtio::Block(b));
    }
    for (i, n) in spec.nets.iter().enumerate() {
        // SAFETY: F_GETFD only inspects the descriptor; it fails cleanly if it is not open.
        if n.tap_fd < 3 || unsafe { libc::fcntl(n.tap_fd, libc::F_GETFD) } < 0 {
            return Err(VmmError::Config(format!("nets[{i}].tap_fd: {} is not an open descriptor", n.tap_fd)));
        }
        // SAFETY: the descriptor is open (checked above) and was handed to this process to own.
        let fd = unsafe { OwnedFd::from_raw_fd(n.tap_fd) };
        let mac = virtio::net::parse_mac(&n.mac).map_err(|e| VmmError::Config(format!("nets[{i}].mac: {e}")))?;
        let dev = virtio::net::Net::new(fd, mac).map_err(|e| VmmError::Device(format!("nets[{i}]: {e}")))?;
        devs.push(Virtio::Net(dev));
    }
    Ok((kf, initrd, devs))
}

fn irqfd(vm: &VmFd, gsi: u32) -> Result<EventFd, VmmError> {
    let e = EventFd::new(libc::EFD_NONBLOCK).map_err(io("eventfd".into()))?;
    vm.register_irqfd(&e, gsi).map_err(kvm("KVM_IRQFD"))?;
    Ok(e)
}

fn make_memory(vm: &VmFd, mem_bytes: u64) -> Result<GuestMemoryMmap, VmmError> {
    let mem = GuestMemoryMmap::from_ranges(&layout::ram_ranges(mem_bytes)).map_err(mem_err)?;
    for (slot, r) in mem.iter().enumerate() {
        let host = mem.get_host_address(r.start_addr()).map_err(mem_err)? as u64;
        let region = kvm_userspace_memory_region {
            slot: slot as u32,
            guest_phys_addr: r.start_addr().raw_value(),
            memory_size: r.len(),
            userspace_addr: host,
            flags: 0,
        };
        // SAFETY: `host` is the start of a mapping of `r.len()` bytes owned by `mem`; every
        // clone of `mem` keeps it mapped, and the process exits before the last one drops.
        unsafe { vm.set_user_memory_region(region) }.map_err(kvm("KVM_SET_USER_MEMORY_REGION"))?;
    }
    Ok(mem)
}

/// Load the kernel, command line and initramfs, and write the zero page (with the RSDP's
/// address) and the page tables. Returns the 64-bit entry point.
fn load_kernel(mem: &GuestMemoryMmap, mut kf: File, initrd: Option<Vec<u8>>, cmdline: &str, mem_bytes: u64, rsdp: u64) -> Result<u64, VmmError> {
    let loaded = BzImage::load(mem, None, &mut kf, Some(GuestAddress(layout::HIMEM))).map_err(|e| VmmError::Kernel(e.to_string()))?;
    let hdr = loaded.setup_header.ok_or_else(|| VmmError::Kernel("not a bzImage (no setup header)".into()))?;
    let mut cl = linux_loader::cmdline::Cmdline::new(layout::CMDLINE_MAX).map_err(|e| VmmError::Config(e.to_string()))?;
    cl.insert_str(cmdline).map_err(|e| VmmError::Config(format!("cmdline: {e}")))?;
    linux_loader::loader::load_cmdline(mem, GuestAddress(layout::CMDLINE), &cl).map_err(|e| VmmError::Config(e.to_string()))?;
    let cmdline_len = cl.as_cstring().map_err(|e| VmmError::Config(e.to_string()))?.as_bytes().len();
    let initrd = match initrd {
        Some(bytes) => {
            let kernel_end = loaded.kernel_load.raw_value() + loaded.kernel_end;
            let addr = layout::initrd_address(mem_bytes, hdr.initrd_addr_max, kernel_end, bytes.len() as u64)?;
            mem.write_slice(&bytes, GuestAddress(addr)).map_err(mem_err)?;
            Some((addr, bytes.len() as u64))
        }
        None => None,
    };
    let mut params = layout::zero_page(hdr, cmdline_len, initrd, mem_bytes)?;
    params.acpi_rsdp_addr = rsdp;
    LinuxBootConfigurator::write_bootparams::<GuestMemoryMmap>(&BootParams::new(&params, GuestAddress(layout::ZERO_PAGE)), mem).map_err(mem_err)?;
    layout::write_tables(mem)?;
    // The 64-bit entry point of a bzImage is 0x200 past the protected-mode kernel's start.
    Ok(loaded.kernel_load.raw_value() + 0x200)
}

/// The exit record's file, opened (and emptied) before confinement, which forbids `open` and
/// every call that names a path. The record is one JSON line written at exit and fsync'd in
/// place: a reader that finds the file empty or cut short (a worker killed mid-write) parses no
/// record, as if none was written.
struct ExitFile {
    file: File,
}

impl ExitFile {
    fn open(dest: &Path) -> Result<ExitFile, VmmError> {
        let file = File::create(dest).map_err(io(format!("creating {}", dest.display())))?;
        Ok(ExitFile { file })
    }

    fn commit(mut self, rec: &ExitRecord) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(rec).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.sync_all()
    }
}

/// Write an exit record at `dest` (in place, fsync'd): for a worker whose set-up
/// failed after the daemon could have seen it start, so the daemon learns why.
pub fn write_exit_record(dest: &Path, rec: &ExitRecord) -> Result<(), VmmError> {
    ExitFile::open(dest)?.commit(rec).map_err(io(format!("writing {}", dest.display())))
}

/// Block the termination signals in the calling thread (threads started later inherit the
/// mask), so that only the signal thread receives them.
fn block_signals() -> libc::sigset_t {
    // SAFETY: plain sigset manipulation on a zeroed local.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn spawn<F: FnOnce() + Send + 'static>(name: String, f: F) -> Result<(), VmmError> {
    std::thread::Builder::new().name(name).spawn(f).map(|_| ()).map_err(io("starting a thread".into()))
}

/// Boot the VM described by `spec` and run it until it ends; the exit record is written (when
/// the spec names one) before this returns. Errors: set-up failures, before the guest runs. A
/// guest's own end — power-off, reboot, crash — is an [`ExitRecord`], not an error.
///
/// The steps, in order: [`Inputs::open`] (files first: a missing one is the caller's error,
/// before any KVM resource exists), [`start_control`] (the control socket answers "starting"
/// from then on), [`create_vm`], [`Devices::attach`], [`create_vcpus`], confinement, then
/// [`launch`] waits for the first [`End`].
pub fn run(spec: &WorkerSpec) -> Result<ExitRecord, VmmError> {
    let t0 = Instant::now();
    validate(spec)?;
    let inputs = Inputs::open(spec)?;
    let (shared, ends) = start_control(spec, t0, inputs.log_hub.clone(), inputs.listener)?;
    let (kvm_fd, vm, mem) = create_vm(spec.memory_mib << 20)?;
    let devices = Devices::attach(&vm, &mem, &inputs.log_hub, inputs.devices, &shared, t0)?;
    let rsdp = acpi::write_tables(&mem, spec.vcpus, &devices.infos).map_err(|e| VmmError::Device(format!("ACPI tables: {e}")))?;
    let entry = load_kernel(&mem, inputs.kernel, inputs.initrd, &machine_cmdline(&spec.cmdline), spec.memory_mib << 20, rsdp)?;
    let vcpus = create_vcpus(&kvm_fd, &vm, spec.vcpus, entry)?;
    if spec.confinement.seccomp {
        confine::drop_capabilities()?;
        confine::install_seccomp()?;
    }
    let end = launch(spec, t0, &shared, devices, vcpus, &ends)?;
    let bt = shared.boot_timer_ns.load(std::sync::atomic::Ordering::Relaxed);
    let rec =
        ExitRecord { reason: end.reason, boot_timer_ms: (bt > 0).then(|| bt as f64 / 1e6), total_ms: t0.elapsed().as_secs_f64() * 1000.0, error: end.error };
    if let Some(f) = inputs.exit_file
        && let Err(e) = f.commit(&rec)
    {
        tracing::error!(error = %e, "writing the exit record");
    }
    Ok(rec)
}

/// What the spec names, opened: kernel, initramfs, virtio devices, the console log's hub, the
/// exit record's file and the bound control socket.
struct Inputs {
    kernel: File,
    initrd: Option<Vec<u8>>,
    devices: Vec<Virtio>,
    log_hub: Arc<Mutex<Hub>>,
    exit_file: Option<ExitFile>,
    listener: Option<std::os::unix::net::UnixListener>,
}

impl Inputs {
    fn open(spec: &WorkerSpec) -> Result<Inputs, VmmError> {
        let (kernel, initrd, devices) = open_inputs(spec)?;
        let log = match &spec.console_log {
            Some(p) => Some(File::options().create(true).append(true).open(p).map_err(io(format!("opening {}", p.display())))?),
            None => None,
        };
        let exit_file = spec.exit_record.as_deref().map(ExitFile::open).transpose()?;
        let listener = match &spec.control_socket {
            Some(p) => Some(control::bind(p).map_err(io(format!("binding {}", p.display())))?),
            None => None,
        };
        Ok(Inputs { kernel, initrd, devices, log_hub: Hub::new(log, spec.echo), exit_file, listener })
    }
}

/// Block the stop signals, and start the signal thread and (when a socket is bound) the control
/// thread. Returns the state they share with the vCPUs and the channel the first [`End`] comes on.
fn start_control(
    spec: &WorkerSpec,
    t0: Instant,
    hub: Arc<Mutex<Hub>>,
    listener: Option<std::os::unix::net::UnixListener>,
) -> Result<(Arc<Shared>, std::sync::mpsc::Receiver<End>), VmmError> {
    let sigs = block_signals();
    let (tx, rx) = std::sync::mpsc::channel::<End>();
    let shared = Arc::new(Shared {
        started: t0,
        stopping: AtomicBool::new(false),
        running: AtomicBool::new(false),
        boot_timer_ns: Arc::new(AtomicU64::new(0)),
        vcpus: spec.vcpus,
        memory_mib: spec.memory_mib,
        end: Mutex::new(tx),
        hub,
        serial: OnceLock::new(),
        ctrl_alt_del: OnceLock::new(),
    });
    let s2 = shared.clone();
    spawn("signals".into(), move || {
        let mut sig = 0;
        // SAFETY: waits on the set blocked above.
        unsafe { libc::sigwait(&sigs, &mut sig) };
        s2.finish(ExitReason::Killed, Some(format!("signal {sig}")));
    })?;
    if let Some(l) = listener {
        let s2 = shared.clone();
        spawn("control".into(), move || control::serve(l, s2))?;
    }
    Ok((shared, rx))
}

/// The KVM VM: TSS, in-kernel IRQ chip and PIT, and `mem_bytes` of guest memory.
fn create_vm(mem_bytes: u64) -> Result<(Kvm, VmFd, GuestMemoryMmap), VmmError> {
    let kvm_fd = Kvm::new().map_err(kvm("opening /dev/kvm"))?;
    let vm = kvm_fd.create_vm().map_err(kvm("KVM_CREATE_VM"))?;
    vm.set_tss_address(0xfffb_d000).map_err(kvm("KVM_SET_TSS_ADDR"))?;
    vm.create_irq_chip().map_err(kvm("KVM_CREATE_IRQCHIP"))?;
    vm.create_pit2(kvm_pit_config { flags: KVM_PIT_SPEAKER_DUMMY, ..Default::default() }).map_err(kvm("KVM_CREATE_PIT2"))?;
    let mem = make_memory(&vm, mem_bytes)?;
    Ok((kvm_fd, vm, mem))
}

/// The devices on their buses: COM1, the i8042, the PM registers, the boot timer and one virtio
/// MMIO transport per device (described to ACPI by `infos`).
struct Devices {
    io: Bus,
    mmio: Bus,
    serial: Arc<Mutex<SerialPort>>,
    kbd: Arc<Mutex<i8042::I8042>>,
    events: Arc<pm::GuestEvents>,
    infos: Vec<acpi::MmioDeviceInfo>,
}

impl Devices {
    fn attach(vm: &VmFd, mem: &GuestMemoryMmap, hub: &Arc<Mutex<Hub>>, devices: Vec<Virtio>, shared: &Shared, t0: Instant) -> Result<Devices, VmmError> {
        let mut io_bus = Bus::default();
        let mut mmio_bus = Bus::default();
        let overlap = |e: super::bus::Overlap| VmmError::Device(e.to_string());
        let serial = Arc::new(Mutex::new(SerialPort(vm_superio::Serial::new(IrqLine(irqfd(vm, COM1_GSI)?), Sink(hub.clone())))));
        io_bus.insert(COM1, 8, serial.clone()).map_err(overlap)?;
        // HELPER(i8042, pm): the guest-event latch, the keyboard controller and the PM registers.
        let events = Arc::new(pm::GuestEvents::default());
        let kbd = Arc::new(Mutex::new(i8042::I8042::new(irqfd(vm, I8042_GSI)?, events.clone())));
        io_bus.insert(I8042_BASE, 5, kbd.clone()).map_err(overlap)?;
        let pm_regs = Arc::new(Mutex::new(pm::PmRegisters::new(events.clone())));
        io_bus.insert(layout::ACPI_SLEEP_CONTROL as u64, 3, pm_regs).map_err(overlap)?;
        mmio_bus.insert(layout::BOOT_TIMER, 0x1000, Arc::new(Mutex::new(BootTimer { started: t0, at_ns: shared.boot_timer_ns.clone() }))).map_err(overlap)?;
        let mut infos = Vec::new();
        for (i, dev) in devices.into_iter().enumerate() {
            let base = layout::VIRTIO_MMIO_BASE + i as u64 * layout::VIRTIO_MMIO_SIZE;
            let gsi = layout::VIRTIO_IRQ_BASE + i as u32;
            // HELPER(virtio): the transport over a device, with its interrupt.
            let irq = virtio::mmio::Interrupt::new(irqfd(vm, gsi)?);
            let transport: Arc<Mutex<dyn BusDevice>> = match dev {
                Virtio::Block(b) => Arc::new(Mutex::new(virtio::mmio::MmioTransport::new(Box::new(b), mem.clone(), irq))),
                Virtio::Net(n) => Arc::new(Mutex::new(virtio::mmio::MmioTransport::new(Box::new(n), mem.clone(), irq))),
            };
            mmio_bus.insert(base, layout::VIRTIO_MMIO_SIZE, transport).map_err(overlap)?;
            infos.push(acpi::MmioDeviceInfo { base, len: layout::VIRTIO_MMIO_SIZE, gsi });
        }
        Ok(Devices { io: io_bus, mmio: mmio_bus, serial, kbd, events, infos })
    }
}

/// `n` vCPUs with the supported CPUID, the boot CPU pointed at `entry`.
fn create_vcpus(kvm_fd: &Kvm, vm: &VmFd, n: u8, entry: u64) -> Result<Vec<kvm_ioctls::VcpuFd>, VmmError> {
    let supported = kvm_fd.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).map_err(kvm("KVM_GET_SUPPORTED_CPUID"))?;
    let mut vcpus = Vec::new();
    for i in 0..n {
        let v = vm.create_vcpu(i as u64).map_err(kvm("KVM_CREATE_VCPU"))?;
        cpu::setup_common(&v, &supported, i, n)?;
        if i == 0 {
            cpu::setup_boot(&v, entry)?;
        }
        vcpus.push(v);
    }
    Ok(vcpus)
}

/// Hand the serial port and Ctrl-Alt-Del to the control thread, start the vCPU threads (unless
/// a kill or a stop came during set-up) and wait for the first [`End`].
fn launch(
    spec: &WorkerSpec,
    t0: Instant,
    shared: &Arc<Shared>,
    d: Devices,
    vcpus: Vec<kvm_ioctls::VcpuFd>,
    ends: &std::sync::mpsc::Receiver<End>,
) -> Result<End, VmmError> {
    let _ = shared.serial.set(d.serial);
    let k2 = d.kbd.clone();
    let _ = shared.ctrl_alt_del.set(Box::new(move || k2.lock().unwrap_or_else(|p| p.into_inner()).trigger_ctrl_alt_del().map_err(|e| e.to_string())));
    let buses = Arc::new(Buses { io: d.io, mmio: d.mmio });
    let ev = d.events.clone();
    let guest: vcpu::GuestRequest = Arc::new(move || {
        // HELPER(pm): what the guest asked for.
        if ev.poweroff_requested() {
            Some(GuestEnd::Poweroff)
        } else if ev.reset_requested() {
            Some(GuestEnd::Reset)
        } else {
            None
        }
    });
    let early_end = ends.try_recv().ok();
    tracing::info!(id = %spec.id, vcpus = spec.vcpus, memory_mib = spec.memory_mib, setup_ms = t0.elapsed().as_secs_f64() * 1000.0, "starting the guest");
    if early_end.is_none() {
        shared.running.store(true, std::sync::atomic::Ordering::Relaxed);
        for (i, v) in vcpus.into_iter().enumerate() {
            let (b, s, g) = (buses.clone(), shared.clone(), guest.clone());
            spawn(format!("vcpu{i}"), move || vcpu::run(i as u8, v, b, s, g))?;
        }
    }
    let end = early_end.or_else(|| ends.recv().ok());
    Ok(end.unwrap_or(End { reason: ExitReason::Crashed, error: Some("every thread ended".into()) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_adds_pci_off_unless_the_user_chose() {
        assert_eq!(machine_cmdline("console=ttyS0"), "console=ttyS0 pci=off");
        assert_eq!(machine_cmdline("console=ttyS0 pci=nommconf"), "console=ttyS0 pci=nommconf");
    }
}
