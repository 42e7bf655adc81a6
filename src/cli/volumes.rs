//! CLI for block storage: `cloudlet volume ...` and `cloudlet snapshot ...`.

use clap::Subcommand;
use hyper::Method;
use serde_json::json;

use super::network::{delete, list, send, show};
use super::output::{AGE, Col, ID, NAME, PHASE, ptr};
use super::{CliError, Global};

/// `cloudlet volume ...`.
#[derive(Debug, Subcommand)]
pub enum VolumeCmd {
    /// Create a volume (thin), or a clone of a snapshot.
    Create {
        name: String,
        /// Size in MiB (default with --from-snapshot: the snapshot's).
        #[arg(long)]
        size: Option<u64>,
        /// Clone this snapshot.
        #[arg(long)]
        from_snapshot: Option<String>,
    },
    /// Grow a volume (a mounted filesystem grows online).
    Resize {
        name: String,
        /// The new size in MiB.
        #[arg(long)]
        size: u64,
    },
    /// List volumes with provisioned and allocated sizes.
    #[command(alias = "ls")]
    List,
    /// Show a volume.
    Show { name: String },
    /// Delete a volume (refused while a container mounts it).
    #[command(alias = "rm")]
    Delete { name: String },
    /// Check and repair a volume's filesystem in a confined e2fsck; a volume an instance wrote
    /// must pass before a container may mount it.
    Check { name: String },
}

/// `cloudlet snapshot ...`.
#[derive(Debug, Subcommand)]
pub enum SnapshotCmd {
    /// Take a snapshot of a volume.
    Create {
        name: String,
        #[arg(long)]
        volume: String,
    },
    /// List snapshots.
    #[command(alias = "ls")]
    List,
    /// Show a snapshot.
    Show { name: String },
    /// Delete a snapshot.
    #[command(alias = "rm")]
    Delete { name: String },
}

fn mib(v: &serde_json::Value, p: &str) -> String {
    v.pointer(p).and_then(|x| x.as_u64()).map(|b| format!("{:.1}", b as f64 / 1048576.0)).unwrap_or_default()
}

/// `cloudlet volume ...`.
pub async fn volume(g: &Global, cmd: VolumeCmd) -> Result<(), CliError> {
    const P: &str = "/v1/volumes";
    match cmd {
        VolumeCmd::Create { name, size, from_snapshot } => {
            let mut spec = json!({});
            if let Some(s) = size {
                spec["size_mib"] = s.into();
            }
            if let Some(s) = from_snapshot {
                spec["source_snapshot"] = s.into();
            }
            send(g, Method::POST, P, json!({"name": name, "spec": spec})).await
        }
        VolumeCmd::Resize { name, size } => send(g, Method::PATCH, &format!("{P}/{name}"), json!({"spec": {"size_mib": size}})).await,
        VolumeCmd::Check { name } => send(g, Method::POST, &format!("{P}/{name}/check"), json!({})).await,
        VolumeCmd::List => {
            list(
                g,
                P,
                &[
                    NAME,
                    ID,
                    PHASE,
                    Col { header: "SIZE MiB", get: |v| ptr(v, "/spec/size_mib") },
                    Col { header: "USED MiB", get: |v| mib(v, "/status/allocated_bytes") },
                    Col {
                        header: "ATTACHED TO",
                        get: |v| {
                            v["status"]["attached_to"].as_array().map(|a| a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(",")).unwrap_or_default()
                        },
                    },
                    AGE,
                ],
            )
            .await
        }
        VolumeCmd::Show { name } => show(g, P, &name).await,
        VolumeCmd::Delete { name } => delete(g, P, &name).await,
    }
}

/// `cloudlet snapshot ...`.
pub async fn snapshot(g: &Global, cmd: SnapshotCmd) -> Result<(), CliError> {
    const P: &str = "/v1/snapshots";
    match cmd {
        SnapshotCmd::Create { name, volume } => send(g, Method::POST, P, json!({"name": name, "spec": {"volume": volume}})).await,
        SnapshotCmd::List => {
            list(
                g,
                P,
                &[
                    NAME,
                    ID,
                    PHASE,
                    Col { header: "VOLUME", get: |v| ptr(v, "/spec/volume") },
                    Col { header: "SIZE MiB", get: |v| ptr(v, "/status/size_mib") },
                    Col { header: "COPY", get: |v| ptr(v, "/status/copy") },
                    AGE,
                ],
            )
            .await
        }
        SnapshotCmd::Show { name } => show(g, P, &name).await,
        SnapshotCmd::Delete { name } => delete(g, P, &name).await,
    }
}
