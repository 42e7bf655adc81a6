//! The command line: `cloudlet serve`, `cloudlet <noun> <verb>` client commands, and local tools
//! (`config default`, `node check`, `completion`).

pub mod balancing;
pub mod buckets;
pub mod client;
pub mod commands;
pub mod console_attach;
pub mod containers;
pub mod functions;
pub mod instances;
pub mod network;
pub mod output;
pub mod volumes;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use client::{CliError, Client};
use output::Format;

/// cloudlet: an edge cloud in one binary.
#[derive(Debug, Parser)]
#[command(name = "cloudlet", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options of every client command.
#[derive(Debug, Args)]
pub struct Global {
    /// Talk to a daemon at this URL (http:// or https://) instead of the local socket.
    #[arg(long, global = true, env = "CLOUDLET_REMOTE")]
    pub remote: Option<String>,
    /// Talk to a site through the portal at this URL (its admin API, http:// or https://), over
    /// the site's link; --token is then the portal's admin token. Needs --site.
    /// Given before the command: `cloudlet --portal URL --site NAME project ls`; it wins over
    /// --remote.
    #[arg(long, requires = "site")]
    pub portal: Option<String>,
    /// The site to reach through --portal.
    #[arg(long, requires = "portal")]
    pub site: Option<String>,
    /// API token for --remote (or the portal admin token for --portal).
    #[arg(long, global = true, env = "CLOUDLET_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The daemon's Unix socket [default: /run/cloudlet/cloudlet.sock]; for `serve`, where to listen.
    #[arg(long, global = true, env = "CLOUDLET_SOCKET")]
    pub socket: Option<String>,
    /// Trust this PEM certificate for https:// (the daemon's DATA/tls/cert.pem).
    #[arg(long, global = true, env = "CLOUDLET_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Act in this project (site admins).
    #[arg(long, global = true, env = "CLOUDLET_PROJECT")]
    pub project: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value = "table")]
    pub output: Format,
}

/// Arguments of `cloudlet vmm-worker`: a spec file (what the daemon runs), or a manual boot
/// from flags (no disks, nets or control socket).
#[derive(Debug, Args)]
pub struct VmmWorkerArgs {
    /// The worker spec (`cloudlet::vmm::spec::WorkerSpec` as JSON); the other flags are then
    /// ignored.
    #[arg(long, required_unless_present = "kernel")]
    pub spec: Option<PathBuf>,
    /// The kernel (a bzImage).
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// The initramfs.
    #[arg(long)]
    pub initrd: Option<PathBuf>,
    /// Guest memory, MiB.
    #[arg(long, default_value_t = 256)]
    pub memory: u64,
    /// vCPUs.
    #[arg(long, default_value_t = 1)]
    pub vcpus: u8,
    /// The kernel command line.
    #[arg(long, default_value = "console=ttyS0 reboot=k panic=-1")]
    pub cmdline: String,
    /// Append the serial console to this file.
    #[arg(long)]
    pub console_log: Option<PathBuf>,
    /// Copy the serial console to stdout.
    #[arg(long)]
    pub echo: bool,
    /// Confine the worker (drop capabilities, seccomp) as the daemon does.
    #[arg(long)]
    pub confine: bool,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the site daemon.
    Serve(ServeArgs),
    /// Run one microVM in this process (started by the daemon, one per instance).
    #[command(hide = true)]
    VmmWorker(VmmWorkerArgs),
    /// Configuration helpers.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Nodes: list, show, update, and the local acceptance check.
    #[command(subcommand)]
    Node(NodeCmd),
    /// Projects (tenants).
    #[command(subcommand)]
    Project(ProjectCmd),
    /// API tokens of a project.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Console users of a project.
    #[command(subcommand)]
    User(UserCmd),
    /// VPCs.
    #[command(subcommand)]
    Vpc(network::VpcCmd),
    /// Subnets of VPCs.
    #[command(subcommand)]
    Subnet(network::SubnetCmd),
    /// Security groups.
    #[command(subcommand)]
    Sg(network::SgCmd),
    /// Network interfaces (a workload's address, groups and namespace).
    #[command(subcommand)]
    Eni(network::EniCmd),
    /// Elastic IPs.
    #[command(subcommand)]
    Eip(network::EipCmd),
    /// NAT gateways.
    #[command(subcommand)]
    Natgw(network::NatGwCmd),
    /// Port forwards (a public port to a network interface).
    #[command(subcommand, alias = "pf")]
    Portforward(balancing::PortForwardCmd),
    /// L4 load balancers.
    #[command(subcommand)]
    Lb(balancing::LbCmd),
    /// Images (pull, import).
    #[command(subcommand)]
    Image(containers::ImageCmd),
    /// Containers.
    #[command(subcommand, alias = "ctr")]
    Container(containers::ContainerCmd),
    /// MicroVM instances.
    #[command(subcommand, alias = "vm")]
    Instance(instances::InstanceCmd),
    /// Block volumes.
    #[command(subcommand, alias = "vol")]
    Volume(volumes::VolumeCmd),
    /// Snapshots of volumes.
    #[command(subcommand, alias = "snap")]
    Snapshot(volumes::SnapshotCmd),
    /// S3 buckets.
    #[command(subcommand)]
    Bucket(buckets::BucketCmd),
    /// S3 access keys.
    #[command(subcommand)]
    AccessKey(buckets::AccessKeyCmd),
    /// Serverless functions (wasi:http components) behind the gateway.
    #[command(subcommand, alias = "fn")]
    Function(functions::FunctionCmd),
    /// Long-running operations.
    #[command(subcommand, alias = "op")]
    Operation(OperationCmd),
    /// The event stream.
    #[command(subcommand)]
    Event(EventCmd),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Site summary (no subcommand), and the site's portal membership.
    Site {
        #[command(subcommand)]
        cmd: Option<SiteCmd>,
    },
    /// Run the portal: the central API that sites join (a role of this binary).
    Portal(PortalArgs),
    /// Print the OpenAPI document of the REST API.
    Openapi,
    /// Print shell completions.
    Completion {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Internal: the per-container shim the daemon starts (runs libcontainer).
    #[command(hide = true)]
    ContainerShim(ShimArgs),
    /// Internal: run a command in a running container (the daemon's exec helper).
    #[command(hide = true)]
    ContainerExec(ExecArgs),
}

/// Arguments of the internal `container-shim` command.
#[derive(Debug, clap::Args)]
pub struct ShimArgs {
    /// The container's directory.
    #[arg(long)]
    pub dir: std::path::PathBuf,
    /// The container id.
    #[arg(long)]
    pub id: String,
    /// The container's cgroup path.
    #[arg(long)]
    pub cgroup: String,
    /// Rotate the log past this many bytes.
    #[arg(long, default_value_t = 10 << 20)]
    pub log_max_bytes: u64,
    /// Rotated log files kept.
    #[arg(long, default_value_t = 3)]
    pub log_keep: usize,
}

/// Arguments of the internal `container-exec` command.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// The container's directory.
    #[arg(long)]
    pub dir: std::path::PathBuf,
    /// The container id.
    #[arg(long)]
    pub id: String,
    /// Extra environment, `KEY=value`.
    #[arg(long)]
    pub env: Vec<String>,
    /// Kill the command after this many milliseconds.
    #[arg(long, default_value_t = 30_000)]
    pub timeout_ms: u64,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// `cloudlet serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Config file [default: /etc/cloudlet/config.toml when present].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Data directory [default: /var/lib/cloudlet].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Serve plain HTTP on ADDR (loopback, tests). Turns HTTPS and the socket off unless
    /// --https or --socket are also given.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,
    /// Serve HTTPS on ADDR [default: 0.0.0.0:8443]; "off" disables.
    #[arg(long, value_name = "ADDR")]
    pub https: Option<String>,
    /// Serve the functions' HTTP gateway on ADDR [default: 0.0.0.0:8080]; "off" disables.
    #[arg(long, value_name = "ADDR")]
    pub gateway: Option<String>,
    /// Serve the S3 endpoint on ADDR [default: 0.0.0.0:9000]; "off" disables.
    #[arg(long, value_name = "ADDR")]
    pub s3: Option<String>,
    /// Log format: text or json.
    #[arg(long)]
    pub log_format: Option<String>,
    /// Log filter, e.g. info or cloudlet=debug.
    #[arg(long)]
    pub log_level: Option<String>,
    /// Serve /metrics without authentication.
    #[arg(long)]
    pub metrics_public: bool,
    /// Host probe and heartbeat interval in seconds.
    #[arg(long)]
    pub probe_interval: Option<u64>,
    /// Join the portal at URL (`https://HOST:PORT`) at start, while this site has joined none
    /// (`[portal] url`).
    #[arg(long, value_name = "URL")]
    pub portal: Option<String>,
    /// The join token for --portal (`[portal] join_token`).
    /// Env: CLOUDLET_PORTAL_JOIN_TOKEN (read with the configuration).
    #[arg(long, value_name = "TOKEN")]
    pub join_token: Option<String>,
    /// Permit outbound connections for tenants to RULE despite the egress policy (added to
    /// `[egress] allow_cidrs`): CIDR, ADDR, ADDR:PORT or [IPV6]:PORT. Repeatable.
    #[arg(long, value_name = "RULE")]
    pub egress_allow: Vec<String>,
}

/// `cloudlet site ...`.
#[derive(Debug, Subcommand)]
pub enum SiteCmd {
    /// Join a portal: `cloudlet site join https://PORTAL:PORT --join-token CLJ1.…` (site
    /// admins; `--token` stays the API token of the site).
    Join {
        /// The portal's link URL (`https://HOST[:PORT]`, the address in the portal's link.addr).
        url: String,
        /// The join token the portal made for this site.
        #[arg(long, env = "CLOUDLET_JOIN_TOKEN", hide_env_values = true)]
        join_token: String,
    },
    /// The portal this site joined.
    Portal,
}

/// Arguments of `cloudlet portal`.
#[derive(Debug, clap::Args)]
pub struct PortalArgs {
    /// Data directory [default: /var/lib/cloudlet-portal].
    #[arg(long, default_value = "/var/lib/cloudlet-portal")]
    pub data_dir: PathBuf,
    /// Serve the admin API as plain HTTP on ADDR (loopback, tests); "off" disables.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8440")]
    pub http: String,
    /// Serve the admin API over HTTPS on ADDR too (for example 0.0.0.0:8441), with a
    /// certificate of the portal CA: clients trust DATA/ca/ca.pem (`--ca-cert`).
    #[arg(long, value_name = "ADDR")]
    pub https: Option<String>,
    /// Listen for site links (TLS) on ADDR.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8444")]
    pub link: String,
    /// Another name (DNS name or IP address) sites use to reach the link listener. Repeatable.
    #[arg(long = "name", value_name = "NAME")]
    pub names: Vec<String>,
    /// Lifetime of the client certificates signed for sites, in seconds [default: 30 days]; sites
    /// renew at 2/3 of it. Lifetimes under an hour are for tests.
    #[arg(long, default_value_t = 30 * 86_400, value_parser = clap::value_parser!(u64).range(10..=366 * 86_400))]
    pub site_cert_lifetime: u64,
    /// Keep the portal's state in PostgreSQL: a connection string such as
    /// postgres://USER:PASSWORD@HOST:PORT/DB (a secret). Without it: SQLite in DATA/portal.db.
    #[arg(long, value_name = "URL", env = "CLOUDLET_PORTAL_DATABASE", hide_env_values = true)]
    pub database: Option<String>,
    /// Log filter, e.g. info or cloudlet=debug.
    #[arg(long, default_value = "info")]
    pub log_level: String,
}

/// `cloudlet config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Print the full default configuration with comments.
    Default,
}

/// Labels given as `key=value`.
fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("{s:?} is not key=value"))
}

/// `cloudlet node ...`.
#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    /// Probe this host and, with a profile, check it (non-zero exit on failure). Needs no daemon.
    Check {
        /// A hardware profile (firmware-profiles/*.toml).
        #[arg(long)]
        profile: Option<PathBuf>,
        /// Where disk space is measured [default: /var/lib/cloudlet].
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// List nodes.
    #[command(alias = "ls")]
    List,
    /// Show a node.
    Show { name: String },
    /// Change a node's labels or schedulability.
    Update {
        name: String,
        #[arg(long)]
        schedulable: Option<bool>,
        #[arg(long = "label", value_parser = parse_kv)]
        labels: Vec<(String, String)>,
    },
}

/// `cloudlet project ...`.
#[derive(Debug, Subcommand)]
pub enum ProjectCmd {
    /// List projects.
    #[command(alias = "ls")]
    List,
    /// Show a project.
    Show { name: String },
    /// Create a project.
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        /// Quota as kind=count, e.g. instances=10.
        #[arg(long = "quota", value_parser = parse_kv)]
        quotas: Vec<(String, String)>,
        #[arg(long = "label", value_parser = parse_kv)]
        labels: Vec<(String, String)>,
        /// A domain whose names (it and its subdomains) the project's functions may use as
        /// their host (repeatable; site admins).
        #[arg(long = "function-domain", value_name = "DOMAIN")]
        function_domains: Vec<String>,
        /// Grant a host path of the site config as NAME=ro or NAME=rw (repeatable; site admins).
        #[arg(long = "host-path", value_name = "NAME=ro|rw", value_parser = parse_kv)]
        host_paths: Vec<(String, String)>,
    },
    /// Update a project's description, quotas, function domains or host-path grants.
    Update {
        name: String,
        #[arg(long)]
        description: Option<String>,
        #[arg(long = "quota", value_parser = parse_kv)]
        quotas: Vec<(String, String)>,
        /// Replace the approved function domains (repeatable; "none" clears them; site admins).
        #[arg(long = "function-domain", value_name = "DOMAIN")]
        function_domains: Vec<String>,
        /// Grant a host path as NAME=ro or NAME=rw, or withdraw it with NAME=none (repeatable;
        /// site admins).
        #[arg(long = "host-path", value_name = "NAME=ro|rw|none", value_parser = parse_kv)]
        host_paths: Vec<(String, String)>,
        /// Fail with 409 unless the project is at this generation.
        #[arg(long)]
        if_match: Option<i64>,
    },
    /// Delete a project (a long action).
    #[command(alias = "rm")]
    Delete {
        name: String,
        /// Follow the operation to its end with a progress bar.
        #[arg(long)]
        wait: bool,
    },
}

/// `cloudlet token ...`.
#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// List tokens.
    #[command(alias = "ls")]
    List,
    /// Create a token; prints its secret once.
    Create {
        name: String,
        #[arg(long, default_value = "member")]
        role: String,
        /// RFC 3339 expiry time.
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// Revoke a token.
    #[command(alias = "rm")]
    Delete { name: String },
}

/// `cloudlet user ...`.
#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// List console users.
    #[command(alias = "ls")]
    List,
    /// Create a console user; the password is read from standard input.
    Create {
        name: String,
        #[arg(long, default_value = "member")]
        role: String,
    },
    /// Delete a console user.
    #[command(alias = "rm")]
    Delete { name: String },
}

/// `cloudlet operation ...`.
#[derive(Debug, Subcommand)]
pub enum OperationCmd {
    /// List operations.
    #[command(alias = "ls")]
    List,
    /// Show an operation.
    Show { id: String },
    /// Wait for an operation to finish, with a progress bar.
    Wait { id: String },
}

/// `cloudlet event ...`.
#[derive(Debug, Subcommand)]
pub enum EventCmd {
    /// List events after a cursor.
    #[command(alias = "ls")]
    List {
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// Keep following new events (Server-Sent Events).
        #[arg(short, long)]
        follow: bool,
    },
}

/// `cloudlet audit ...`.
#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// List audit records, newest first.
    #[command(alias = "ls")]
    List {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

#[cfg(test)]
mod tests {
    /// clap's own consistency checks (unique argument names, valid defaults) over every command.
    #[test]
    fn the_command_line_is_consistent() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
