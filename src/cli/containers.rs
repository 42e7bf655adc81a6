//! CLI for images and containers: `cloudlet image ...` and `cloudlet container ...`, shaped like
//! Docker's (`run`, `ls`, `logs -f`, `exec NAME -- CMD`).

use std::collections::BTreeMap;

use bytes::Bytes;
use clap::Subcommand;
use hyper::Method;
use serde_json::{Value, json};

use super::commands::{client, wait_operation};
use super::network::{delete, list, send, show};
use super::output::{self, AGE, Col, ID, NAME, PHASE, ptr};
use super::{CliError, Global};

/// `cloudlet image ...`.
#[derive(Debug, Subcommand)]
pub enum ImageCmd {
    /// Pull an image from a registry (`registry:5000/repo:tag` or `…@sha256:…`).
    Pull {
        /// The registry reference.
        source: String,
        /// The image's name in the project (default: the repository's last part).
        #[arg(long)]
        name: Option<String>,
        /// Plain HTTP (a registry without TLS).
        #[arg(long)]
        insecure: bool,
        /// Registry user (the password is read from CLOUDLET_REGISTRY_PASSWORD).
        #[arg(long)]
        username: Option<String>,
        /// Return at once instead of following the pull.
        #[arg(long)]
        no_wait: bool,
    },
    /// Import an image: a `docker save` archive, a tar of an OCI image layout, or an OCI image
    /// layout directory; with --vm, a VM image directory (its image.json names the kernel,
    /// initramfs and root disk).
    Import {
        /// The archive file or layout directory.
        file: std::path::PathBuf,
        /// The image's name in the project (required for OCI images; a VM image defaults to its
        /// manifest's name).
        #[arg(long)]
        name: Option<String>,
        /// A VM image directory.
        #[arg(long)]
        vm: bool,
        /// The tag to take from an archive that holds several.
        #[arg(long)]
        reference: Option<String>,
    },
    /// List images.
    #[command(alias = "ls")]
    List,
    /// Show an image.
    Show { name: String },
    /// Delete an image (refused while a container uses it).
    #[command(alias = "rm")]
    Delete { name: String },
}

/// `cloudlet container ...`.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum ContainerCmd {
    /// Create and start a container.
    Run {
        name: String,
        /// The image (name or id).
        #[arg(long)]
        image: String,
        /// The network interface to attach (its address and security groups).
        #[arg(long)]
        eni: Option<String>,
        /// `KEY=value` (repeatable).
        #[arg(long = "env", short = 'e')]
        env: Vec<String>,
        /// CPUs (0.5 = half a CPU).
        #[arg(long)]
        cpus: Option<f64>,
        /// Memory limit in MiB.
        #[arg(long)]
        memory: Option<u64>,
        /// Process limit.
        #[arg(long)]
        pids: Option<i64>,
        /// `never` (default), `on-failure` or `always`.
        #[arg(long)]
        restart: Option<String>,
        /// User (`uid`, `name`, `uid:gid`).
        #[arg(long)]
        user: Option<String>,
        /// Working directory.
        #[arg(long)]
        workdir: Option<String>,
        /// Replace the image's entrypoint.
        #[arg(long)]
        entrypoint: Option<String>,
        /// Read-only root filesystem.
        #[arg(long)]
        read_only: bool,
        /// `HOSTPATH_NAME:/target[:ro]` (repeatable; names from the site's [container.host_paths]).
        #[arg(long = "mount")]
        mounts: Vec<String>,
        /// `VOLUME:/target[:ro]` (repeatable): a volume of the project.
        #[arg(long = "volume", short = 'v')]
        volumes: Vec<String>,
        /// Arguments (replace the image's cmd).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// List containers.
    #[command(alias = "ls")]
    List,
    /// Show a container.
    Show { name: String },
    /// Start a stopped container.
    Start { name: String },
    /// Stop a container (SIGTERM, then SIGKILL after its stop timeout).
    Stop { name: String },
    /// Restart a container.
    Restart { name: String },
    /// Delete a container (stopping it first).
    #[command(alias = "rm")]
    Delete { name: String },
    /// Print a container's log.
    Logs {
        name: String,
        /// Follow new lines until the container stops.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long)]
        tail: Option<usize>,
        /// Prefix lines with their time.
        #[arg(short = 't', long)]
        timestamps: bool,
    },
    /// Run a command in a running container: `cloudlet container exec NAME -- CMD ARGS`.
    Exec {
        name: String,
        /// Kill the command after this many seconds.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        /// The command.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

fn default_name(source: &str) -> String {
    let repo = source.split('@').next().unwrap_or(source);
    let last = repo.rsplit('/').next().unwrap_or(repo);
    let last = last.split(':').next().unwrap_or(last);
    last.to_ascii_lowercase().replace(['_', '.'], "-")
}

/// `cloudlet image ...`.
pub async fn image(g: &Global, cmd: ImageCmd) -> Result<(), CliError> {
    const P: &str = "/v1/images";
    match cmd {
        ImageCmd::Pull { source, name, insecure, username, no_wait } => {
            let mut body = json!({"name": name.unwrap_or_else(|| default_name(&source)), "spec": {"source": source, "insecure": insecure}});
            if let Some(u) = username {
                let password = std::env::var("CLOUDLET_REGISTRY_PASSWORD")
                    .map_err(|_| CliError::Usage("--username needs CLOUDLET_REGISTRY_PASSWORD in the environment".into()))?;
                body["credentials"] = json!({"username": u, "password": password});
            }
            let c = client(g)?;
            let op = c.json(Method::POST, P, Some(&body)).await?;
            if no_wait {
                output::one(&op, g.output);
                return Ok(());
            }
            let op = wait_operation(&c, op["id"].as_str().unwrap_or_default(), false).await?;
            output::one(&c.json(Method::GET, &format!("{P}/{}", ptr(&op, "/spec/target_id")), None).await?, g.output);
            Ok(())
        }
        ImageCmd::Import { file, name, vm: true, .. } => super::instances::import_vm(g, &file, name.as_deref()).await,
        ImageCmd::Import { file, name, reference, vm: false } => {
            let name = name.ok_or_else(|| CliError::Usage("--name is required for an OCI image".into()))?;
            let bytes = if file.is_dir() { tar_dir(&file)? } else { tokio::fs::read(&file).await? };
            let mut path = format!("{P}/import?name={name}");
            if let Some(r) = reference {
                path.push_str(&format!("&reference={r}"));
            }
            let v = client(g)?.upload(Method::POST, &path, Bytes::from(bytes), "application/x-tar").await?;
            output::one(&v, g.output);
            Ok(())
        }
        ImageCmd::List => {
            list(
                g,
                P,
                &[
                    NAME,
                    ID,
                    PHASE,
                    Col { header: "DIGEST", get: |v| ptr(v, "/status/digest").chars().take(19).collect() },
                    Col { header: "SIZE", get: |v| v["status"]["size_bytes"].as_u64().map(|b| format!("{:.1} MiB", b as f64 / 1048576.0)).unwrap_or_default() },
                    Col { header: "SOURCE", get: |v| ptr(v, "/spec/source") },
                    AGE,
                ],
            )
            .await
        }
        ImageCmd::Show { name } => show(g, P, &name).await,
        ImageCmd::Delete { name } => delete(g, P, &name).await,
    }
}

/// A directory (an OCI image layout) as a tar, in memory, for the import endpoint.
fn tar_dir(dir: &std::path::Path) -> Result<Vec<u8>, CliError> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", dir)?;
    Ok(b.into_inner()?)
}

fn kv(s: &str) -> Result<(String, String), CliError> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| CliError::Usage(format!("{s:?}: use KEY=value")))
}

/// `NAME:/target[:ro]` as a mount of `key` (`host_path` or `volume`).
fn mount(s: &str, key: &str) -> Result<Value, CliError> {
    let parts: Vec<&str> = s.split(':').collect();
    match parts.as_slice() {
        [name, target] => Ok(json!({key: name, "target": target})),
        [name, target, "ro"] => Ok(json!({key: name, "target": target, "read_only": true})),
        _ => Err(CliError::Usage(format!("{s:?}: use NAME:/target or NAME:/target:ro"))),
    }
}

/// `cloudlet container ...`.
pub async fn container(g: &Global, cmd: ContainerCmd) -> Result<(), CliError> {
    const P: &str = "/v1/containers";
    match cmd {
        ContainerCmd::Run { name, image, eni, env, cpus, memory, pids, restart, user, workdir, entrypoint, read_only, mounts, volumes, args } => {
            let env: BTreeMap<String, String> = env.iter().map(|e| kv(e)).collect::<Result<_, _>>()?;
            let mut spec = json!({"image": image, "env": env, "read_only_rootfs": read_only,
                "resources": {"cpus": cpus, "memory_mib": memory, "pids": pids},
                "mounts": mounts.iter().map(|m| mount(m, "host_path")).chain(volumes.iter().map(|v| mount(v, "volume"))).collect::<Result<Vec<_>, _>>()?});
            for (k, v) in [("network_interface", eni), ("restart_policy", restart), ("user", user), ("working_dir", workdir)] {
                if let Some(v) = v {
                    spec[k] = v.into();
                }
            }
            if let Some(e) = entrypoint {
                spec["command"] = json!([e]);
            }
            if !args.is_empty() {
                spec["args"] = json!(args);
            }
            for k in ["cpus", "memory_mib", "pids"] {
                if spec["resources"][k].is_null()
                    && let Some(o) = spec["resources"].as_object_mut()
                {
                    o.remove(k);
                }
            }
            send(g, Method::POST, P, json!({"name": name, "spec": spec})).await
        }
        ContainerCmd::List => {
            list(
                g,
                P,
                &[
                    NAME,
                    ID,
                    PHASE,
                    Col { header: "IMAGE", get: |v| ptr(v, "/spec/image") },
                    Col { header: "IP", get: |v| ptr(v, "/status/private_ip") },
                    Col { header: "EXIT", get: |v| ptr(v, "/status/exit_code") },
                    AGE,
                ],
            )
            .await
        }
        ContainerCmd::Show { name } => show(g, P, &name).await,
        ContainerCmd::Start { name } => send(g, Method::POST, &format!("{P}/{name}/start"), json!({})).await,
        ContainerCmd::Stop { name } => send(g, Method::POST, &format!("{P}/{name}/stop"), json!({})).await,
        ContainerCmd::Restart { name } => send(g, Method::POST, &format!("{P}/{name}/restart"), json!({})).await,
        ContainerCmd::Delete { name } => delete(g, P, &name).await,
        ContainerCmd::Logs { name, follow, tail, timestamps } => {
            let mut path = format!("{P}/{name}/logs?follow={follow}&timestamps={timestamps}");
            if let Some(t) = tail {
                path.push_str(&format!("&tail={t}"));
            }
            client(g)?.print_stream(&path).await
        }
        ContainerCmd::Exec { name, timeout, command } => {
            let v = client(g)?.json(Method::POST, &format!("{P}/{name}/exec"), Some(&json!({"command": command, "timeout_seconds": timeout}))).await?;
            if g.output != output::Format::Table {
                output::value(&v, g.output);
                return Ok(());
            }
            print!("{}", v["stdout"].as_str().unwrap_or_default());
            eprint!("{}", v["stderr"].as_str().unwrap_or_default());
            let code = v["exit_code"].as_i64().unwrap_or(1);
            if code != 0 {
                return Err(CliError::Failed(format!("the command exited with {code}")));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_default_from_the_repository() {
        assert_eq!(default_name("127.0.0.1:5000/tools/busybox_httpd:1.0"), "busybox-httpd");
        assert_eq!(default_name("reg/x@sha256:abc"), "x");
    }

    #[test]
    fn mounts_parse() {
        assert_eq!(mount("data:/data:ro", "host_path").expect("ro"), json!({"host_path": "data", "target": "/data", "read_only": true}));
        assert_eq!(mount("db:/var/lib/db", "volume").expect("volume"), json!({"volume": "db", "target": "/var/lib/db"}));
        assert!(mount("data", "volume").is_err());
    }
}
