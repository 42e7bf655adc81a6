//! CLI for instances (`cloudlet instance ...`) and VM image import (`cloudlet image import --vm
//! DIR`).

use bytes::Bytes;
use clap::Subcommand;
use hyper::Method;
use serde_json::{Value, json};

use super::commands::client;
use super::network::{delete, list, send, show};
use super::output::{AGE, Col, ID, NAME, PHASE, ptr};
use super::{CliError, Global};

/// `cloudlet instance ...`.
#[derive(Debug, Subcommand)]
pub enum InstanceCmd {
    /// Create (and boot) an instance.
    Create {
        name: String,
        /// The VM image (name or id).
        #[arg(long)]
        image: String,
        /// vCPUs (1 to 8).
        #[arg(long)]
        vcpus: Option<u32>,
        /// Guest memory in MiB (128 to 16384).
        #[arg(long)]
        memory: Option<u64>,
        /// The subnet of its network interface.
        #[arg(long)]
        subnet: String,
        /// A security group (repeatable).
        #[arg(long = "sg")]
        security_groups: Vec<String>,
        /// The interface's address (default: the next free one).
        #[arg(long)]
        private_ip: Option<String>,
        /// `VOLUME[:ro]` (repeatable): data disks vdb, vdc, ...
        #[arg(long = "volume", short = 'v')]
        volumes: Vec<String>,
        /// `never`, `on-failure` (default) or `always`.
        #[arg(long)]
        restart: Option<String>,
        /// Seconds from the graceful shutdown to a forced stop (default 30).
        #[arg(long)]
        stop_timeout: Option<u32>,
        /// Appended to the image's kernel command line.
        #[arg(long)]
        cmdline_extra: Option<String>,
        /// Create it stopped.
        #[arg(long)]
        stopped: bool,
    },
    /// List instances.
    #[command(alias = "ls")]
    List,
    /// Show an instance.
    #[command(alias = "show")]
    Get { name: String },
    /// Start a stopped instance.
    Start { name: String },
    /// Stop an instance (graceful, forced after its stop timeout).
    Stop { name: String },
    /// Reboot an instance (stop, then start).
    Reboot { name: String },
    /// Delete an instance and its network interface.
    #[command(alias = "rm")]
    Delete { name: String },
    /// Attach to the serial console (raw terminal; Ctrl-] detaches), or print its log.
    Console {
        name: String,
        /// Print the console log instead of attaching.
        #[arg(long)]
        log: bool,
        /// With --log: follow new output until the instance stops.
        #[arg(short, long)]
        follow: bool,
        /// With --log: only the last N lines.
        #[arg(long)]
        tail: Option<usize>,
    },
}

/// `VOLUME[:ro]` as an instance volume.
fn volume(s: &str) -> Result<Value, CliError> {
    match s.split(':').collect::<Vec<_>>().as_slice() {
        [v] => Ok(json!({"volume": v})),
        [v, "ro"] => Ok(json!({"volume": v, "read_only": true})),
        [v, "rw"] => Ok(json!({"volume": v})),
        _ => Err(CliError::Usage(format!("{s:?}: use VOLUME or VOLUME:ro"))),
    }
}

/// `cloudlet instance ...`.
pub async fn instance(g: &Global, cmd: InstanceCmd) -> Result<(), CliError> {
    const P: &str = "/v1/instances";
    match cmd {
        InstanceCmd::Create { name, image, vcpus, memory, subnet, security_groups, private_ip, volumes, restart, stop_timeout, cmdline_extra, stopped } => {
            let mut spec = json!({"image": image, "subnet": subnet, "security_groups": security_groups,
                "volumes": volumes.iter().map(|v| volume(v)).collect::<Result<Vec<_>, _>>()?});
            let opt = [
                ("vcpus", vcpus.map(Value::from)),
                ("memory_mib", memory.map(Value::from)),
                ("private_ip", private_ip.map(Value::from)),
                ("restart_policy", restart.map(Value::from)),
                ("stop_timeout_seconds", stop_timeout.map(Value::from)),
                ("cmdline_extra", cmdline_extra.map(Value::from)),
            ];
            for (k, v) in opt {
                if let Some(v) = v {
                    spec[k] = v;
                }
            }
            if stopped {
                spec["state"] = "stopped".into();
            }
            send(g, Method::POST, P, json!({"name": name, "spec": spec})).await
        }
        InstanceCmd::List => {
            list(
                g,
                P,
                &[
                    NAME,
                    ID,
                    PHASE,
                    Col { header: "VCPUS", get: |v| ptr(v, "/spec/vcpus") },
                    Col { header: "MEMORY", get: |v| format!("{} MiB", ptr(v, "/spec/memory_mib")) },
                    Col { header: "IP", get: |v| ptr(v, "/spec/private_ip") },
                    Col { header: "PID", get: |v| ptr(v, "/status/pid") },
                    Col { header: "EXIT", get: |v| ptr(v, "/status/exit_reason") },
                    AGE,
                ],
            )
            .await
        }
        InstanceCmd::Get { name } => show(g, P, &name).await,
        InstanceCmd::Start { name } => send(g, Method::POST, &format!("{P}/{name}/start"), json!({})).await,
        InstanceCmd::Stop { name } => send(g, Method::POST, &format!("{P}/{name}/stop"), json!({})).await,
        InstanceCmd::Reboot { name } => send(g, Method::POST, &format!("{P}/{name}/reboot"), json!({})).await,
        InstanceCmd::Delete { name } => delete(g, P, &name).await,
        InstanceCmd::Console { name, log, follow, tail } => {
            if log {
                let mut path = format!("{P}/{name}/console?follow={follow}");
                if let Some(t) = tail {
                    path.push_str(&format!("&tail={t}"));
                }
                return client(g)?.print_stream(&path).await;
            }
            super::console_attach::attach(g, &format!("{P}/{name}/console/ws")).await
        }
    }
}

/// `cloudlet image import --vm DIR`: tar the directory (symlinks kept as links, for the daemon
/// to check) and upload it.
pub async fn import_vm(g: &Global, dir: &std::path::Path, name: Option<&str>) -> Result<(), CliError> {
    if !dir.is_dir() {
        return Err(CliError::Usage(format!("{}: --vm takes the image directory (with image.json)", dir.display())));
    }
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", dir)?;
    let bytes = b.into_inner()?;
    let mut path = "/v1/images/import-vm".to_string();
    if let Some(n) = name {
        path.push_str(&format!("?name={n}"));
    }
    let v = client(g)?.upload(Method::POST, &path, Bytes::from(bytes), "application/x-tar").await?;
    super::output::one(&v, g.output);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_parse() {
        assert_eq!(volume("data").expect("rw"), json!({"volume": "data"}));
        assert_eq!(volume("data:ro").expect("ro"), json!({"volume": "data", "read_only": true}));
        assert!(volume("a:b:c").is_err());
    }
}
