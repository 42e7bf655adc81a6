//! cloudlet's VMM: a KVM virtual machine built from rust-vmm's published crates (`kvm-ioctls`,
//! `kvm-bindings`, `vm-memory`, `linux-loader`, `vm-superio`, `virtio-queue`, `acpi_tables`,
//! `seccompiler`, `vmm-sys-util`), run by `cloudlet vmm-worker`, one process per VM.
//!
//! - Boot: a Linux direct boot of a bzImage (the Linux x86 boot protocol's 64-bit entry;
//!   [`layout`], [`cpu`]) with a command line and an initramfs, on several vCPUs (the boot
//!   processor enters the kernel; the others wait for its INIT-SIPI in KVM's local APICs).
//! - Devices ([`machine`]): an in-kernel irqchip and PIT; COM1 ([`console`]); an i8042
//!   ([`i8042`]) for Ctrl-Alt-Del and the reset line; the hardware-reduced ACPI registers
//!   ([`pm`]) for power-off and reset; ACPI tables ([`acpi`]) that describe the vCPUs and the
//!   virtio-mmio devices ([`virtio`]: block on raw files, net on taps); a boot timer.
//! - Control ([`control`], protocol in [`spec`]): status, graceful shutdown, kill and the live
//!   console over a Unix socket.
//! - Confinement ([`confine`]): capabilities dropped and a seccomp allow-list.
//!
//! See `docs/design.md` §17.

pub mod acpi;
pub mod bus;
pub mod confine;
pub mod console;
pub mod control;
pub mod cpu;
pub mod i8042;
pub mod layout;
pub mod machine;
pub mod pm;
pub mod spec;
pub mod vcpu;
pub mod virtio;

use std::path::PathBuf;

/// Errors of the VMM.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    /// The VM's configuration can't work (memory too small, bad command line, too many devices).
    #[error("{0}")]
    Config(String),
    /// Reading or writing one of the VM's files.
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
    /// A device could not be set up.
    #[error("{0}")]
    Device(String),
    /// Confinement failed (the worker refuses to run unconfined when asked to confine).
    #[error(transparent)]
    Confine(#[from] confine::ConfineError),
}

/// The most vCPUs a VM has.
pub const MAX_VCPUS: u8 = 32;

/// Check a spec before anything is opened. Errors: [`VmmError::Config`] naming the field.
pub fn validate(spec: &spec::WorkerSpec) -> Result<(), VmmError> {
    if spec.vcpus == 0 || spec.vcpus > MAX_VCPUS {
        return Err(VmmError::Config(format!("vcpus: {} is not in 1..={MAX_VCPUS}", spec.vcpus)));
    }
    if spec.memory_mib < 64 {
        return Err(VmmError::Config("memory_mib: a VM needs at least 64 MiB of memory".into()));
    }
    if spec.memory_mib > 1 << 20 {
        return Err(VmmError::Config("memory_mib: a VM has at most 1 TiB of memory".into()));
    }
    if spec.disks.len() + spec.nets.len() > layout::VIRTIO_MAX_DEVICES as usize {
        return Err(VmmError::Config(format!("disks, nets: at most {} devices", layout::VIRTIO_MAX_DEVICES)));
    }
    Ok(())
}

/// The spec of a manual run (`cloudlet vmm-worker --kernel ...`): no disks, nets or socket.
pub fn simple_spec(kernel: PathBuf, initrd: Option<PathBuf>, memory_mib: u64, cmdline: String, console_log: Option<PathBuf>, echo: bool) -> spec::WorkerSpec {
    spec::WorkerSpec {
        id: "manual".into(),
        kernel,
        initrd,
        cmdline,
        vcpus: 1,
        memory_mib,
        disks: Vec::new(),
        nets: Vec::new(),
        console_log,
        control_socket: None,
        exit_record: None,
        echo,
        confinement: spec::Confinement::default(),
    }
}

pub use machine::{run, write_exit_record};

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kernel: &str, mib: u64) -> spec::WorkerSpec {
        simple_spec(kernel.into(), None, mib, "console=ttyS0".into(), None, false)
    }

    #[test]
    fn impossible_configurations_are_refused_before_kvm() {
        assert!(matches!(run(&spec("/nonexistent/bzImage", 256)), Err(VmmError::Io { .. })));
        assert!(matches!(run(&spec("/nonexistent/bzImage", 16)), Err(VmmError::Config(_))));
        assert!(matches!(run(&spec("/nonexistent/bzImage", 2 << 20)), Err(VmmError::Config(_))));
        let mut s = spec("/proc/self/exe", 256);
        s.vcpus = 0;
        assert!(matches!(run(&s), Err(VmmError::Config(m)) if m.starts_with("vcpus")));
        let mut s = spec("/proc/self/exe", 256);
        s.initrd = Some("/nonexistent/initrd".into());
        assert!(matches!(run(&s), Err(VmmError::Io { .. })));
        let mut s = spec("/proc/self/exe", 256);
        s.disks = vec![spec::DiskSpec { path: "/nonexistent/disk.img".into(), read_only: false }];
        assert!(run(&s).is_err());
    }
}
