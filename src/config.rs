//! Daemon configuration: a TOML file, then `CLOUDLET_*` environment variables, then flags.
//!
//! `cloudlet config default` prints [`DEFAULT_TOML`], the full default with comments; a unit test
//! keeps it equal to [`Config::default`].

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Errors loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading config {path}: {source}")]
    Read { path: String, source: std::io::Error },
    /// The TOML is malformed or has unknown keys.
    #[error("config {path}: {message}")]
    Parse { path: String, message: String },
    /// An environment variable has a value of the wrong type.
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    /// A value is well-typed but unusable.
    #[error("config key {key}: {message}")]
    Invalid { key: String, message: String },
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where state, certificates and workload files live.
    pub data_dir: PathBuf,
    pub api: ApiConfig,
    pub log: LogConfig,
    pub events: EventsConfig,
    pub reconcile: ReconcileConfig,
    pub node: NodeConfig,
    pub network: NetworkConfig,
    pub container: ContainerConfig,
    pub storage: StorageConfig,
    pub s3: S3Config,
    pub functions: FunctionsConfig,
    pub egress: EgressConfig,
    pub portal: PortalConfig,
    pub projects: ProjectsConfig,
}

/// The portal this site joins by itself at start (`cloudlet serve --portal URL --join-token T`
/// does the same): while the site has joined none, the daemon joins with `join_token`, retrying
/// while the portal is unreachable. Both empty: the site joins only when told
/// (`cloudlet site join`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PortalConfig {
    /// The portal's link URL, `https://HOST[:PORT]`.
    pub url: String,
    /// A join token the portal made for this site (single-use; a secret, never logged).
    pub join_token: String,
    /// The outbox's bound on disk, per stream (events, audit): records the portal has not yet
    /// received are kept up to this many; past it the oldest are dropped and counted as lost.
    pub outbox_max_records: u64,
}

impl Default for PortalConfig {
    fn default() -> Self {
        PortalConfig { url: String::new(), join_token: String::new(), outbox_max_records: 1_000_000 }
    }
}

impl std::fmt::Debug for PortalConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let token = if self.join_token.is_empty() { "" } else { "(set)" };
        f.debug_struct("PortalConfig").field("url", &self.url).field("join_token", &token).field("outbox_max_records", &self.outbox_max_records).finish()
    }
}

/// Projects (tenants).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectsConfig {
    /// Quotas a new project gets for every key its spec does not set (`site::quotas`): kinds'
    /// plurals (`instances`) and the amounts `vcpus`, `memory_mib`, `volume_mib`, `object_mib`,
    /// `image_mib`.
    /// A table in the file replaces this whole map. The `system` project gets none.
    pub default_quotas: std::collections::BTreeMap<String, u64>,
}

impl Default for ProjectsConfig {
    fn default() -> Self {
        let q = [
            ("instances", 20),
            ("containers", 100),
            ("functions", 100),
            ("images", 100),
            ("volumes", 100),
            ("snapshots", 500),
            ("buckets", 100),
            ("vpcs", 10),
            ("subnets", 100),
            ("security-groups", 100),
            ("eips", 10),
            ("nat-gateways", 10),
            ("port-forwards", 100),
            ("load-balancers", 20),
            ("network-interfaces", 200),
            ("tokens", 100),
            ("users", 100),
            ("access-keys", 100),
            ("vcpus", 64),
            ("memory_mib", 131072),
            ("volume_mib", 1048576),
            ("object_mib", 1048576),
            ("image_mib", 102400),
        ];
        ProjectsConfig { default_quotas: q.into_iter().map(|(k, v)| (k.to_string(), v)).collect() }
    }
}

/// Outbound connections the daemon makes for tenants (functions' HTTP requests, registry pulls
/// with their redirects and token realms); see `net::egress`. Loopback, link-local, unspecified,
/// multicast, broadcast and the host's own addresses are always refused unless an exception
/// names them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct EgressConfig {
    /// Extra networks to refuse (the site's management networks): `CIDR` or `ADDR`.
    pub deny_cidrs: Vec<String>,
    /// Exceptions a site admin permits, beating every refusal: `CIDR`, `ADDR`, `ADDR:PORT`,
    /// `CIDR:PORT`, `[IPV6]:PORT` (a registry on `127.0.0.1:5000`, say).
    pub allow_cidrs: Vec<String>,
}

/// The storage pool of block volumes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Where volume and snapshot files live; empty means `DATA/storage`. A filesystem with
    /// reflinks (btrfs, XFS) makes snapshots and clones instant.
    pub pool_dir: PathBuf,
    /// MiB that all volumes may provision together (thin, so it may exceed the disk); 0 means the
    /// size of the pool's filesystem.
    pub capacity_mib: u64,
}

/// Serverless functions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FunctionsConfig {
    /// Listen address of the HTTP gateway that routes requests to functions; empty disables it.
    pub gateway: String,
    /// Instances the function engine's pool holds for all functions together, 1 to 1,024; each
    /// project with a function deployed may have `pool_instances / projects` requests in flight.
    pub pool_instances: u32,
}

impl Default for FunctionsConfig {
    fn default() -> Self {
        FunctionsConfig { gateway: "0.0.0.0:8080".into(), pool_instances: 256 }
    }
}

/// The S3-compatible object storage endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// Listen address (`host:port`) of the S3 endpoint; empty disables it.
    pub listen: String,
    /// Where object data lives; empty means `DATA/objects`.
    pub dir: PathBuf,
    /// The region reported to clients (`GetBucketLocation`); signatures for any region verify.
    pub region: String,
    /// Make each object durable (fdatasync) before it becomes visible. Off only for scratch data.
    pub fsync: bool,
    /// Largest single PUT or part, in bytes (S3's own limit is 5 GiB).
    pub max_object_bytes: u64,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config { listen: "0.0.0.0:9000".into(), dir: PathBuf::new(), region: "us-east-1".into(), fsync: true, max_object_bytes: 5 << 30 }
    }
}

/// The container engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContainerConfig {
    /// Rotate a container's log past this many bytes.
    pub log_max_bytes: u64,
    /// Rotated log files kept per container.
    pub log_keep: usize,
    /// Largest image archive `POST /v1/images/import` accepts, in bytes.
    pub max_import_bytes: u64,
    /// Registries (`host` or `host:port`) images may be pulled from; empty allows any. A site
    /// that may only use its own registry names it here.
    pub allowed_registries: Vec<String>,
    /// Host directories that containers may mount, by name (`data = "/srv/data"`). Tenants name
    /// them; they cannot choose host paths themselves.
    pub host_paths: std::collections::BTreeMap<String, PathBuf>,
    /// Processes and threads of a container that sets no `resources.pids` (0: unlimited).
    pub default_pids: i64,
    /// Memory in MiB of a container that sets no `resources.memory_mib` (0: unlimited).
    pub default_memory_mib: u64,
    /// CPUs of a container that sets no `resources.cpus` (0: unlimited).
    pub default_cpus: f64,
    /// Run containers in user namespaces where the kernel allows (an overlay over an idmapped
    /// layer, Linux 5.19): one per project, so root in a container is an unprivileged host id
    /// of its project's range.
    pub user_namespaces: bool,
    /// The first host id of the projects' ranges: the project given slot `n` (in the order
    /// projects first run a container or make an interface) has host ids
    /// `userns_first_id + 65536 n` to `+ 65535`.
    pub userns_first_id: u32,
}

impl Default for ContainerConfig {
    fn default() -> Self {
        ContainerConfig {
            log_max_bytes: 10 << 20,
            log_keep: 3,
            max_import_bytes: 8 << 30,
            allowed_registries: vec![],
            host_paths: Default::default(),
            default_pids: 1024,
            default_memory_mib: 1024,
            default_cpus: 1.0,
            user_namespaces: true,
            userns_first_id: 1_000_000_000,
        }
    }
}

/// The site uplink and public addresses (VPC networking).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// The named network namespace that holds the uplink; empty means the daemon's own (the host).
    pub uplink_netns: String,
    /// The uplink interface toward the outside; empty disables EIPs and NAT gateways.
    pub uplink: String,
    /// The public range EIPs are allocated from (routed to the uplink address, or answered by
    /// proxy ARP on the uplink).
    pub public_cidr: String,
    /// Link networks between the uplink namespace and VPC routers: one /30 per VPC.
    pub transit_cidr: String,
    /// Ports of the uplink address that tenants may forward (`"LOW-HIGH"`), kept clear of the
    /// host's own services (SSH, the API).
    pub forward_ports: String,
}

impl NetworkConfig {
    /// `forward_ports` as an inclusive range, or `None` when it is not `LOW-HIGH` within 1-65535.
    pub fn forward_range(&self) -> Option<(u16, u16)> {
        let (a, b) = self.forward_ports.split_once('-')?;
        let (lo, hi): (u16, u16) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
        (lo >= 1 && lo <= hi).then_some((lo, hi))
    }
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            uplink_netns: String::new(),
            uplink: String::new(),
            public_cidr: String::new(),
            transit_cidr: "169.254.128.0/17".into(),
            forward_ports: "10000-60999".into(),
        }
    }
}

/// Listeners and request limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// HTTPS listen address (`host:port`); empty disables it.
    pub https: String,
    /// Plain HTTP listen address; empty disables it. Meant for loopback (tests, local use).
    pub http: String,
    /// Root-only Unix socket for the CLI; empty disables it.
    pub socket: String,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Serve `/metrics` without authentication.
    pub metrics_public: bool,
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: String,
    /// A `tracing` filter, e.g. `info` or `cloudlet=debug`.
    pub level: String,
}

/// Event retention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Keep events (and finished operations) this many hours.
    pub retention_hours: u64,
    /// Keep at most this many events.
    pub max_events: u64,
    /// Keep audit records this many days.
    pub audit_retention_days: u64,
    /// Keep at most this many audit records.
    pub max_audit_records: u64,
    /// Audit records of unauthenticated requests kept per minute, site-wide; the rest are only
    /// counted (`cloudlet_audit_anonymous_dropped_total`), so anonymous floods cannot fill the
    /// database.
    pub anonymous_audit_per_minute: u32,
}

/// Reconciler timing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcileConfig {
    /// Full pass over every resource this often (drift detection), in seconds.
    pub resync_seconds: u64,
    /// Longest back-off after repeated failures, in seconds.
    pub backoff_max_seconds: u64,
}

/// This node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// The node's name; empty means the host name.
    pub name: String,
    /// Probe the host and heartbeat this often, in seconds.
    pub probe_interval_seconds: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("/var/lib/cloudlet"),
            api: ApiConfig::default(),
            log: LogConfig::default(),
            events: EventsConfig::default(),
            reconcile: ReconcileConfig::default(),
            node: NodeConfig::default(),
            network: NetworkConfig::default(),
            container: ContainerConfig::default(),
            storage: StorageConfig::default(),
            s3: S3Config::default(),
            functions: FunctionsConfig::default(),
            egress: EgressConfig::default(),
            portal: PortalConfig::default(),
            projects: ProjectsConfig::default(),
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            https: "0.0.0.0:8443".into(),
            http: String::new(),
            socket: "/run/cloudlet/cloudlet.sock".into(),
            max_body_bytes: 1024 * 1024,
            metrics_public: false,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: "text".into(), level: "info".into() }
    }
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig { retention_hours: 168, max_events: 100_000, audit_retention_days: 90, max_audit_records: 1_000_000, anonymous_audit_per_minute: 60 }
    }
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        ReconcileConfig { resync_seconds: 300, backoff_max_seconds: 300 }
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig { name: String::new(), probe_interval_seconds: 30 }
    }
}

/// The default configuration, with comments (`cloudlet config default`).
pub const DEFAULT_TOML: &str = r#"# cloudlet site daemon configuration.
# Precedence: this file (--config, default /etc/cloudlet/config.toml if present), then
# CLOUDLET_* environment variables, then command-line flags.

# Where state (SQLite), certificates and workload files live. Env: CLOUDLET_DATA_DIR.
data_dir = "/var/lib/cloudlet"

[api]
# HTTPS listener with a self-signed certificate made at first start (DATA/tls/).
# Empty disables it. Env: CLOUDLET_HTTPS.
https = "0.0.0.0:8443"
# Plain HTTP listener, for loopback use and tests. Empty disables it. Env: CLOUDLET_HTTP.
http = ""
# Root-only Unix socket for the local CLI (mode 0600). Empty disables it. Env: CLOUDLET_SOCKET.
socket = "/run/cloudlet/cloudlet.sock"
# Largest request body, in bytes. Env: CLOUDLET_MAX_BODY_BYTES.
max_body_bytes = 1048576
# Serve /metrics without authentication. Env: CLOUDLET_METRICS_PUBLIC.
metrics_public = false

[log]
# "text" or "json". Env: CLOUDLET_LOG_FORMAT.
format = "text"
# A tracing filter such as "info" or "cloudlet=debug". Env: CLOUDLET_LOG_LEVEL.
level = "info"

[events]
# Keep events and finished operations this many hours.
retention_hours = 168
# Keep at most this many events.
max_events = 100000
# Keep audit records this many days, and at most this many.
audit_retention_days = 90
max_audit_records = 1000000
# Audit records of unauthenticated requests kept per minute (the rest are only counted).
anonymous_audit_per_minute = 60

[reconcile]
# Full reconcile pass over every resource this often (drift detection), seconds.
resync_seconds = 300
# Longest retry back-off after repeated failures, seconds.
backoff_max_seconds = 300

[node]
# This node's name; empty means the host name. Env: CLOUDLET_NODE_NAME.
name = ""
# Probe the host and heartbeat this often, seconds.
probe_interval_seconds = 30

[network]
# The named network namespace that holds the site uplink; empty means the host's own.
uplink_netns = ""
# The uplink interface toward the outside, e.g. "eth0"; empty disables EIPs and NAT gateways.
uplink = ""
# The public range elastic IPs come from, e.g. "203.0.113.0/28". Route it to the uplink
# address upstream (or rely on proxy ARP, which the uplink answers for associated EIPs).
public_cidr = ""
# Link networks between the uplink and the VPC routers: one /30 per VPC.
transit_cidr = "169.254.128.0/17"
# Ports of the uplink address that port forwards may use, "LOW-HIGH". Keep the host's own
# services (SSH, the API on 8443) outside it.
forward_ports = "10000-60999"

[container]
# Rotate a container's log past this many bytes; keep this many rotated files.
log_max_bytes = 10485760
log_keep = 3
# Largest image archive that `cloudlet image import` may upload, bytes.
max_import_bytes = 8589934592
# Registries ("host" or "host:port") images may be pulled from; empty allows any.
allowed_registries = []
# Limits of a container that sets none of its own (0: unlimited). A project with a vcpus or
# memory_mib quota refuses a container whose limit would be unlimited.
default_pids = 1024
default_memory_mib = 1024
default_cpus = 1.0
# Containers run in user namespaces where the kernel allows: each project gets 65536 host ids
# from userns_first_id on (slot n: userns_first_id + 65536 n), and root in a container is the
# first of them. Files a container writes to a host path belong to those ids.
user_namespaces = true
userns_first_id = 1000000000

# Host directories containers may mount, by name: tenants name one ("data"), never a path.
[container.host_paths]

[storage]
# Where volume and snapshot files live; empty means DATA/storage. On btrfs or XFS snapshots and
# clones are reflinks (instant); elsewhere only written extents are copied.
pool_dir = ""
# MiB all volumes may provision together (thin); 0 means the size of the pool's filesystem.
capacity_mib = 0

[s3]
# The S3-compatible endpoint (path-style: http://HOST:9000/BUCKET/KEY). Empty disables it.
# Env: CLOUDLET_S3.
listen = "0.0.0.0:9000"
# Where object data lives; empty means DATA/objects.
dir = ""
# The region reported to clients. Signatures made for any region verify.
region = "us-east-1"
# fdatasync each object before it becomes visible (off only for scratch data).
fsync = true
# Largest single PUT or multipart part, in bytes.
max_object_bytes = 5368709120

[functions]
# The HTTP gateway routing requests to functions by host and path prefix. Empty disables it.
gateway = "0.0.0.0:8080"
# Instances of the function engine's pool, for all functions (1 to 1024). Each project with a
# function deployed gets an equal share of them (requests past it answer 503).
pool_instances = 256

[egress]
# Outbound connections made for tenants (functions' HTTP requests; image pulls, their redirects
# and token realms) are checked after DNS resolution and go to the address that was checked.
# Always refused: loopback, link-local (169.254.169.254 too), unspecified, multicast, broadcast,
# reserved, and every address of this host's interfaces (IPv4 written as IPv6 is judged as IPv4).
# Extra networks to refuse, the site's management networks: "CIDR" or "ADDR".
deny_cidrs = []
# Exceptions the site permits, beating every refusal: "CIDR", "ADDR", "ADDR:PORT", "CIDR:PORT",
# "[IPV6]:PORT" or "[IPV6/LEN]", e.g. a registry on "127.0.0.1:5000". Flag: --egress-allow.
allow_cidrs = []

[portal]
# The portal this site joins by itself at start while it has joined none: its link URL
# ("https://HOST:PORT") and a join token it made for this site (single-use). Empty: join with
# `cloudlet site join`. Flags: --portal, --join-token. Env: CLOUDLET_PORTAL_URL,
# CLOUDLET_PORTAL_JOIN_TOKEN.
url = ""
join_token = ""
# Events and audit records wait on disk until the portal has them (the outbox): at most this
# many per stream; past it the oldest go, counted as lost in what the portal sees.
outbox_max_records = 1000000

# Quotas a new project gets for every key its spec leaves out (the system project gets none);
# a site admin changes a project's own with `cloudlet project update`. Keys: kinds' plurals
# (how many), vcpus and memory_mib (what instances and containers hold, stopped ones too),
# volume_mib (volumes and snapshots provisioned), object_mib (bytes stored in buckets),
# image_mib (container images unpacked).
# A table here replaces the whole default table.
[projects.default_quotas]
instances = 20
containers = 100
functions = 100
images = 100
volumes = 100
snapshots = 500
buckets = 100
vpcs = 10
subnets = 100
security-groups = 100
eips = 10
nat-gateways = 10
port-forwards = 100
load-balancers = 20
network-interfaces = 200
tokens = 100
users = 100
access-keys = 100
vcpus = 64
memory_mib = 131072
volume_mib = 1048576
object_mib = 1048576
image_mib = 102400
"#;

/// The default config file path, read when it exists and no `--config` is given.
pub const DEFAULT_PATH: &str = "/etc/cloudlet/config.toml";

impl Config {
    /// Parse TOML text (`origin` names it in errors).
    pub fn parse(origin: &str, text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse { path: origin.into(), message: e.to_string() })
    }

    /// Load `path`, or [`DEFAULT_PATH`] if it exists, or the defaults; then apply the environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let path = path.map(Path::to_path_buf).or_else(|| Some(PathBuf::from(DEFAULT_PATH)).filter(|p| p.exists()));
        let mut cfg = match path {
            Some(p) => {
                let text = std::fs::read_to_string(&p).map_err(|source| ConfigError::Read { path: p.display().to_string(), source })?;
                Config::parse(&p.display().to_string(), &text)?
            }
            None => Config::default(),
        };
        cfg.apply_env(|k| std::env::var(k).ok())?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Check values that parse but could not work: the network's CIDRs and port range, the
    /// egress rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| ConfigError::Invalid { key: key.into(), message };
        self.egress_policy()?;
        let n = &self.network;
        if !n.public_cidr.is_empty() {
            n.public_cidr.parse::<ipnet::Ipv4Net>().map_err(|e| bad("network.public_cidr", e.to_string()))?;
        }
        let t: ipnet::Ipv4Net = n.transit_cidr.parse().map_err(|e| bad("network.transit_cidr", format!("{e}")))?;
        if t.prefix_len() > 30 {
            return Err(bad("network.transit_cidr", "needs room for at least one /30".into()));
        }
        if self.container.userns_first_id < 1 << 16 {
            return Err(bad(
                "container.userns_first_id",
                format!("{} would give containers the host's own ids (it must be at least 65536)", self.container.userns_first_id),
            ));
        }
        if u64::from(self.container.userns_first_id) + (1 << 16) * 1024 > u64::from(u32::MAX) {
            return Err(bad("container.userns_first_id", format!("{} leaves no room for 1024 projects of 65536 ids", self.container.userns_first_id)));
        }
        if !(1..=1024).contains(&self.functions.pool_instances) {
            return Err(bad("functions.pool_instances", format!("{} is not between 1 and 1024", self.functions.pool_instances)));
        }
        match n.forward_range() {
            Some(_) => Ok(()),
            None => Err(bad("network.forward_ports", format!("{:?} is not LOW-HIGH within 1-65535", n.forward_ports))),
        }
    }

    /// The egress policy of `[egress]`. Errors: a rule that does not parse (naming its key).
    pub fn egress_policy(&self) -> Result<crate::net::egress::EgressPolicy, ConfigError> {
        crate::net::egress::EgressPolicy::new(&self.egress.allow_cidrs, &self.egress.deny_cidrs).map_err(|e| match e {
            crate::net::egress::EgressError::BadRule { key, rule, message } => {
                ConfigError::Invalid { key: format!("egress.{key}"), message: format!("{rule:?}: {message}") }
            }
            e => ConfigError::Invalid { key: "egress".into(), message: e.to_string() },
        })
    }

    /// Apply `CLOUDLET_*` variables read through `get`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let bool_of = |var: &str, v: String| match v.as_str() {
            "1" | "true" | "yes" => Ok(true),
            "0" | "false" | "no" => Ok(false),
            _ => Err(ConfigError::Env { var: var.into(), message: format!("{v:?} is not a boolean") }),
        };
        if let Some(v) = get("CLOUDLET_DATA_DIR") {
            self.data_dir = v.into();
        }
        if let Some(v) = get("CLOUDLET_HTTPS") {
            self.api.https = v;
        }
        if let Some(v) = get("CLOUDLET_HTTP") {
            self.api.http = v;
        }
        if let Some(v) = get("CLOUDLET_S3") {
            self.s3.listen = v;
        }
        if let Some(v) = get("CLOUDLET_SOCKET") {
            self.api.socket = v;
        }
        if let Some(v) = get("CLOUDLET_MAX_BODY_BYTES") {
            self.api.max_body_bytes =
                v.parse().map_err(|_| ConfigError::Env { var: "CLOUDLET_MAX_BODY_BYTES".into(), message: format!("{v:?} is not a byte count") })?;
        }
        if let Some(v) = get("CLOUDLET_METRICS_PUBLIC") {
            self.api.metrics_public = bool_of("CLOUDLET_METRICS_PUBLIC", v)?;
        }
        if let Some(v) = get("CLOUDLET_LOG_FORMAT") {
            self.log.format = v;
        }
        if let Some(v) = get("CLOUDLET_LOG_LEVEL") {
            self.log.level = v;
        }
        if let Some(v) = get("CLOUDLET_NODE_NAME") {
            self.node.name = v;
        }
        if let Some(v) = get("CLOUDLET_PORTAL_URL") {
            self.portal.url = v;
        }
        if let Some(v) = get("CLOUDLET_PORTAL_JOIN_TOKEN") {
            self.portal.join_token = v;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commented_default_equals_the_built_in_default() {
        assert_eq!(Config::parse("default", DEFAULT_TOML).unwrap(), Config::default());
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(Config::parse("t", "bogus = 1").is_err());
        assert!(Config::parse("t", "[api]\nhttps = 5").is_err());
    }

    #[test]
    fn env_overrides_file() {
        let mut c = Config::parse("t", "data_dir = '/a'\n[api]\nhttp = '127.0.0.1:1'").unwrap();
        c.apply_env(|k| match k {
            "CLOUDLET_DATA_DIR" => Some("/b".into()),
            "CLOUDLET_METRICS_PUBLIC" => Some("true".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/b"));
        assert_eq!(c.api.http, "127.0.0.1:1");
        assert!(c.api.metrics_public);
        let err = c.apply_env(|k| (k == "CLOUDLET_METRICS_PUBLIC").then(|| "maybe".into()));
        let mut n = Config::default();
        n.network.forward_ports = "9000-80".into();
        assert!(matches!(n.validate(), Err(ConfigError::Invalid { key, .. }) if key == "network.forward_ports"));
        n.network.forward_ports = "1-65535".into();
        n.network.public_cidr = "203.0.113.0/33".into();
        assert!(matches!(n.validate(), Err(ConfigError::Invalid { key, .. }) if key == "network.public_cidr"));
        assert!(Config::default().validate().is_ok());
        assert!(err.is_err());
        let e = Config::parse("t", "[egress]\nallow_cidrs = ['127.0.0.1:5000', '[::1]:5000']\ndeny_cidrs = ['10.9.0.0/16']").unwrap();
        assert_eq!(e.egress_policy().unwrap().exceptions().len(), 2);
        let e = Config::parse("t", "[egress]\ndeny_cidrs = ['10.9.0.0/16:22']").unwrap();
        assert!(matches!(e.validate(), Err(ConfigError::Invalid { key, .. }) if key == "egress.deny_cidrs"));
    }
}
