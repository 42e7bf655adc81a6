//! The contract between the site daemon and a `cloudlet vmm-worker` process: the VM spec the
//! daemon writes (`<run dir>/spec.json`), the control protocol on the worker's Unix socket, and
//! the exit record the worker leaves behind (`<run dir>/exit.json`).
//!
//! The daemon may restart while a worker runs and adopt it later, so nothing here depends on the
//! worker being the daemon's child: state is read from the socket and from files.
//!
//! Control protocol: one JSON [`Request`] per line on a stream connection; the worker answers one
//! JSON [`Response`] per line. After a `console` request is answered, the connection carries the
//! raw serial console both ways (guest output to the client, client bytes to the guest's UART).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One block device (virtio-blk), in the order the guest sees them (`vda`, `vdb`, ...).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DiskSpec {
    /// A raw image file (a volume's `status.path`).
    pub path: PathBuf,
    /// Offer `VIRTIO_BLK_F_RO` and refuse writes.
    #[serde(default)]
    pub read_only: bool,
}

/// One network device (virtio-net) on a tap device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetSpec {
    /// A tap file descriptor the worker inherited (opened `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`
    /// by the daemon in the VPC router's namespace).
    pub tap_fd: i32,
    /// The guest MAC, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
}

/// The confinement the worker applies to itself once its files are open (see
/// `crate::confine`): with `seccomp`, every capability is dropped, `no_new_privs` set and the
/// seccomp allow-list installed before the first vCPU runs. The worker keeps its uid (0 without
/// capabilities); it writes its exit record through a file it opened before, never by path.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Confinement {
    #[serde(default)]
    pub seccomp: bool,
}

/// What one worker runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WorkerSpec {
    /// The instance id (for logs only).
    pub id: String,
    /// A bzImage.
    pub kernel: PathBuf,
    /// An initramfs.
    #[serde(default)]
    pub initrd: Option<PathBuf>,
    /// The kernel command line.
    pub cmdline: String,
    /// vCPUs, 1..=32.
    pub vcpus: u8,
    /// Guest memory, MiB.
    pub memory_mib: u64,
    #[serde(default)]
    pub disks: Vec<DiskSpec>,
    #[serde(default)]
    pub nets: Vec<NetSpec>,
    /// The serial console's log (appended).
    #[serde(default)]
    pub console_log: Option<PathBuf>,
    /// The control socket's path (made by the worker; a stale one is replaced).
    #[serde(default)]
    pub control_socket: Option<PathBuf>,
    /// Where the worker writes its [`ExitRecord`] before it exits (a file it opens and empties
    /// at start; one JSON line written and fsync'd at exit).
    #[serde(default)]
    pub exit_record: Option<PathBuf>,
    /// Copy the console to stdout as well (for manual runs).
    #[serde(default)]
    pub echo: bool,
    #[serde(default)]
    pub confinement: Confinement,
}

/// A control request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Report [`Status`].
    Status,
    /// Ask the guest to shut down (Ctrl-Alt-Del on the i8042). The worker exits when the guest
    /// resets or powers off; the exit is then [`ExitReason::Stopped`].
    Shutdown,
    /// End the VM now.
    Kill,
    /// Attach to the serial console.
    Console,
}

/// The worker's view of its VM.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub pid: u32,
    /// `running` or `stopping` (a shutdown was requested).
    pub state: String,
    /// Milliseconds from worker start to the guest's boot timer write, once it wrote it.
    pub boot_timer_ms: Option<f64>,
    /// Milliseconds since the worker started.
    pub uptime_ms: f64,
    pub vcpus: u8,
    pub memory_mib: u64,
}

/// A control response: `ok` with an optional status, or an error message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Why a worker ended.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    /// The guest powered off (ACPI S5) on its own.
    Poweroff,
    /// The guest reset (a reboot) on its own.
    Reboot,
    /// The guest ended after a [`Request::Shutdown`].
    Stopped,
    /// [`Request::Kill`] or SIGTERM.
    Killed,
    /// The guest crashed (triple fault) or the VMM failed.
    Crashed,
}

/// What the worker leaves in `exit_record`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExitRecord {
    pub reason: ExitReason,
    pub boot_timer_ms: Option<f64>,
    pub total_ms: f64,
    /// The failure, for `crashed`.
    #[serde(default)]
    pub error: Option<String>,
}
