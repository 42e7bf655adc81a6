//! The `cloudlet` binary: argument parsing and dispatch only.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use cloudlet::cli::{Cli, Command, ConfigCmd, NodeCmd, ServeArgs, commands};
use cloudlet::config::{self, Config};

fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log.level).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if cfg.log.format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

fn serve_config(a: &ServeArgs, socket: Option<&str>) -> anyhow::Result<Config> {
    let mut cfg = Config::load(a.config.as_deref())?;
    if let Some(d) = &a.data_dir {
        cfg.data_dir = d.clone();
    }
    if let Some(h) = &a.http {
        cfg.api.http = h.clone();
        // --http is the test and local-use mode: no HTTPS or socket unless asked for.
        if a.https.is_none() {
            cfg.api.https.clear();
        }
        if socket.is_none() {
            cfg.api.socket.clear();
        }
        if a.s3.is_none() {
            cfg.s3.listen.clear();
        }
        if a.gateway.is_none() {
            cfg.functions.gateway.clear();
        }
    }
    if let Some(g) = &a.gateway {
        cfg.functions.gateway = if g == "off" { String::new() } else { g.clone() };
    }
    if let Some(s) = &a.s3 {
        cfg.s3.listen = if s == "off" { String::new() } else { s.clone() };
    }
    if let Some(h) = &a.https {
        cfg.api.https = if h == "off" { String::new() } else { h.clone() };
    }
    if let Some(s) = socket {
        cfg.api.socket = if s == "off" { String::new() } else { s.to_string() };
    }
    if let Some(f) = &a.log_format {
        cfg.log.format = f.clone();
    }
    if let Some(l) = &a.log_level {
        cfg.log.level = l.clone();
    }
    if a.metrics_public {
        cfg.api.metrics_public = true;
    }
    if let Some(p) = a.probe_interval {
        cfg.node.probe_interval_seconds = p;
    }
    if let Some(u) = &a.portal {
        cfg.portal.url = u.clone();
    }
    if let Some(t) = &a.join_token {
        cfg.portal.join_token = t.clone();
    }
    cfg.egress.allow_cidrs.extend(a.egress_allow.iter().cloned());
    cfg.egress_policy()?;
    Ok(cfg)
}

/// glibc gives each thread that allocates its own arena; with tokio's and SQLite's threads a
/// daemon that once built large responses keeps hundreds of MiB of free arena pages. Two arenas
/// keep the RSS with 10,000 resources near 50 MiB instead of 200 (docs/benchmarks.md).
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; it is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let g = &cli.global;
    match cli.command {
        Command::Serve(a) => {
            let cfg = serve_config(&a, g.socket.as_deref())?;
            init_logging(&cfg);
            cloudlet::daemon::serve(cfg).await?;
        }
        Command::Config(ConfigCmd::Default) => print!("{}", config::DEFAULT_TOML),
        Command::Node(NodeCmd::Check { profile, data_dir }) => {
            let pass = commands::node_check(g, profile.as_deref(), data_dir.as_deref())?;
            return Ok(if pass { ExitCode::SUCCESS } else { ExitCode::from(1) });
        }
        Command::Node(c) => commands::node(g, c).await?,
        Command::Project(c) => commands::project(g, c).await?,
        Command::Token(c) => commands::token(g, c).await?,
        Command::User(c) => commands::user(g, c).await?,
        Command::Operation(c) => commands::operation(g, c).await?,
        Command::Vpc(c) => cloudlet::cli::network::vpc(g, c).await?,
        Command::Subnet(c) => cloudlet::cli::network::subnet(g, c).await?,
        Command::Sg(c) => cloudlet::cli::network::sg(g, c).await?,
        Command::Eni(c) => cloudlet::cli::network::eni(g, c).await?,
        Command::Eip(c) => cloudlet::cli::network::eip(g, c).await?,
        Command::Natgw(c) => cloudlet::cli::network::natgw(g, c).await?,
        Command::Portforward(c) => cloudlet::cli::balancing::portforward(g, c).await?,
        Command::Lb(c) => cloudlet::cli::balancing::lb(g, c).await?,
        Command::Image(c) => cloudlet::cli::containers::image(g, c).await?,
        Command::Container(c) => cloudlet::cli::containers::container(g, c).await?,
        Command::Instance(c) => cloudlet::cli::instances::instance(g, c).await?,
        Command::Volume(c) => cloudlet::cli::volumes::volume(g, c).await?,
        Command::Snapshot(c) => cloudlet::cli::volumes::snapshot(g, c).await?,
        Command::Bucket(c) => cloudlet::cli::buckets::bucket(g, c).await?,
        Command::AccessKey(c) => cloudlet::cli::buckets::access_key(g, c).await?,
        Command::Function(c) => cloudlet::cli::functions::function(g, c).await?,
        Command::Event(c) => commands::event(g, c).await?,
        Command::Audit(c) => commands::audit(g, c).await?,
        Command::Site { cmd } => commands::site(g, cmd).await?,
        Command::Portal(a) => {
            let filter = tracing_subscriber::EnvFilter::try_new(&a.log_level).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
            cloudlet::portal::serve(cloudlet::portal::PortalOptions {
                data_dir: a.data_dir,
                http: if a.http == "off" { String::new() } else { a.http },
                https: a.https.unwrap_or_default(),
                link: a.link,
                names: a.names,
                cert_lifetime: std::time::Duration::from_secs(a.site_cert_lifetime),
                database: a.database,
            })
            .await?;
        }
        Command::ContainerShim(_) | Command::ContainerExec(_) | Command::VmmWorker(_) => anyhow::bail!("internal commands run before the runtime starts"),
        Command::Openapi => println!("{}", cloudlet::api::openapi_json()),
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "cloudlet", &mut std::io::stdout());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The internal container commands fork with libcontainer, so they run before any thread exists.
/// `cloudlet vmm-worker`: boot one VM and run it to its end. The exit record (`reason`,
/// `boot_timer_ms`, `total_ms`, `error`) is also printed as the last line on stderr. Exit
/// status: 0 after a power-off, reboot or requested stop; 1 after a crash or kill; 2 when the
/// VM could not be set up.
fn vmm_worker(a: &cloudlet::cli::VmmWorkerArgs) -> ExitCode {
    use cloudlet::vmm::spec::{ExitReason, WorkerSpec};
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(false).with_env_filter(tracing_subscriber::EnvFilter::new("info")).init();
    let spec = match (&a.spec, &a.kernel) {
        (Some(p), _) => match std::fs::read(p).map_err(|e| e.to_string()).and_then(|b| serde_json::from_slice::<WorkerSpec>(&b).map_err(|e| e.to_string())) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("vmm-worker: {}: {e}", p.display());
                return ExitCode::from(2);
            }
        },
        (None, Some(k)) => {
            let mut s = cloudlet::vmm::simple_spec(k.clone(), a.initrd.clone(), a.memory, a.cmdline.clone(), a.console_log.clone(), a.echo);
            s.vcpus = a.vcpus;
            s.confinement.seccomp = a.confine;
            s
        }
        (None, None) => {
            eprintln!("vmm-worker: --spec or --kernel is required");
            return ExitCode::from(2);
        }
    };
    match cloudlet::vmm::run(&spec) {
        Ok(r) => {
            eprintln!("{}", serde_json::to_string(&r).unwrap_or_default());
            // The vCPU threads are still in KVM_RUN: end the process rather than join them.
            let code = match r.reason {
                ExitReason::Poweroff | ExitReason::Reboot | ExitReason::Stopped => 0,
                ExitReason::Killed | ExitReason::Crashed => 1,
            };
            std::process::exit(code)
        }
        Err(e) => {
            eprintln!("vmm-worker: {e}");
            if let Some(p) = &spec.exit_record {
                let rec = cloudlet::vmm::spec::ExitRecord { reason: ExitReason::Crashed, boot_timer_ms: None, total_ms: 0.0, error: Some(e.to_string()) };
                if let Err(e) = cloudlet::vmm::write_exit_record(p, &rec) {
                    eprintln!("vmm-worker: {e}");
                }
            }
            ExitCode::from(2)
        }
    }
}

fn container_helper(cmd: &Command) -> Option<ExitCode> {
    use cloudlet::container::shim;
    // libcontainer reports through tracing. The shim's stderr is its shim.log; an exec's stderr is
    // the command's, so the helper's own lines go to exec.log in the container's directory.
    let filter = || tracing_subscriber::EnvFilter::try_from_env("CLOUDLET_SHIM_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    match cmd {
        Command::ContainerShim(_) => tracing_subscriber::fmt().with_env_filter(filter()).with_writer(std::io::stderr).with_ansi(false).init(),
        Command::ContainerExec(a) => {
            if let Ok(f) = std::fs::File::options().create(true).append(true).open(a.dir.join("exec.log")) {
                tracing_subscriber::fmt().with_env_filter(filter()).with_writer(std::sync::Mutex::new(f)).with_ansi(false).init();
            }
        }
        _ => {}
    }
    let code = match cmd {
        Command::ContainerShim(a) => shim::main(shim::ShimOptions {
            dir: a.dir.clone(),
            id: a.id.clone(),
            cgroup: a.cgroup.clone(),
            log_max_bytes: a.log_max_bytes,
            log_keep: a.log_keep,
        }),
        Command::ContainerExec(a) => {
            let env = a.env.iter().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
            shim::exec_main(&a.dir, &a.id, a.command.clone(), env, std::time::Duration::from_millis(a.timeout_ms))
        }
        _ => return None,
    };
    Some(ExitCode::from(code.clamp(0, 255) as u8))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(code) = container_helper(&cli.command) {
        return code;
    }
    if let Command::VmmWorker(a) = &cli.command {
        return vmm_worker(a);
    }
    if matches!(cli.command, Command::Serve(_)) {
        limit_malloc_arenas();
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
