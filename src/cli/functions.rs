//! CLI for serverless functions: `cloudlet function deploy|ls|show|set|rollback|invoke|logs|
//! metrics|rm`. A function is called by URL through the site's gateway (`--gateway`, `:8080`).

use std::path::PathBuf;

use bytes::Bytes;
use clap::Subcommand;
use hyper::Method;
use serde_json::{Value, json};

use super::commands::client;
use super::network::{delete, list, send, show};
use super::output::{self, AGE, Col, Format, ID, NAME, ptr};
use super::{CliError, Global};

/// `cloudlet function ...`.
#[derive(Debug, Subcommand)]
pub enum FunctionCmd {
    /// Deploy a wasi:http component as the function's newest version (created on first deploy).
    Deploy {
        name: String,
        /// The component file (.wasm, built for wasm32-wasip2).
        #[arg(long, conflicts_with = "bucket")]
        component: Option<PathBuf>,
        /// Take the component from this bucket (with --key) instead of a file.
        #[arg(long, requires = "key")]
        bucket: Option<String>,
        /// The object key in --bucket.
        #[arg(long)]
        key: Option<String>,
        /// Path prefix the gateway routes to it (first deploy; default /).
        #[arg(long)]
        route: Option<String>,
        /// Only requests for this Host (first deploy).
        #[arg(long)]
        host: Option<String>,
        /// Memory per instance, MiB (first deploy).
        #[arg(long)]
        memory: Option<u32>,
        /// CPU time per request, ms (first deploy).
        #[arg(long)]
        timeout: Option<u32>,
        /// Most concurrent requests (first deploy).
        #[arg(long)]
        concurrency: Option<u32>,
    },
    /// List functions.
    #[command(alias = "ls")]
    List,
    /// Show a function.
    Show { name: String },
    /// Change settings: environment (KEY=VALUE, or KEY= to remove), outbound hosts, limits, route.
    Set {
        name: String,
        /// Set (KEY=VALUE) or remove (KEY=) an environment variable; repeatable.
        #[arg(long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// Replace the outbound allow-list (host or host:port; repeatable; "none" clears it).
        #[arg(long = "allow-host")]
        allow_host: Vec<String>,
        #[arg(long)]
        route: Option<String>,
        #[arg(long)]
        memory: Option<u32>,
        #[arg(long)]
        timeout: Option<u32>,
        #[arg(long)]
        concurrency: Option<u32>,
        /// Also serve it on this network interface (port 80 inside its VPC); "none" detaches.
        #[arg(long = "network-interface", alias = "eni")]
        network_interface: Option<String>,
    },
    /// Serve a kept version again (default: the one before the version served now).
    Rollback {
        name: String,
        /// The version to serve.
        #[arg(long = "to", value_name = "VERSION")]
        to: Option<u32>,
    },
    /// Send a test request and print the answer (status line, headers, body).
    Invoke {
        name: String,
        #[arg(long, default_value = "/")]
        path: String,
        #[arg(long, short = 'X', default_value = "GET")]
        method: String,
        /// Request body.
        #[arg(long, short = 'd', default_value = "")]
        data: String,
    },
    /// Print the function's log (guest stdout and stderr, and failed requests).
    Logs {
        name: String,
        /// Keep printing new lines.
        #[arg(long, short = 'f')]
        follow: bool,
        /// Only the last this many lines.
        #[arg(long)]
        tail: Option<usize>,
    },
    /// Invocations, errors, cold and warm starts and latency since the daemon started.
    Metrics { name: String },
    /// Delete a function and all its versions.
    #[command(alias = "rm")]
    Delete { name: String },
}

fn enc(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

const P: &str = "/v1/functions";

/// `cloudlet function ...`.
pub async fn function(g: &Global, cmd: FunctionCmd) -> Result<(), CliError> {
    match cmd {
        FunctionCmd::Deploy { name, component, bucket, key, route, host, memory, timeout, concurrency } => {
            let mut path = format!("{P}/deploy?name={}", enc(&name));
            for (k, v) in [
                ("route", route),
                ("host", host),
                ("memory_mib", memory.map(|m| m.to_string())),
                ("timeout_ms", timeout.map(|t| t.to_string())),
                ("max_concurrency", concurrency.map(|c| c.to_string())),
                ("bucket", bucket.clone()),
                ("key", key),
            ] {
                if let Some(v) = v {
                    path.push_str(&format!("&{k}={}", enc(&v)));
                }
            }
            let bytes = match (&component, &bucket) {
                (Some(f), _) => tokio::fs::read(f).await?,
                (None, Some(_)) => Vec::new(),
                (None, None) => return Err(CliError::Usage("give --component FILE or --bucket B --key K".into())),
            };
            let v = client(g)?.upload(Method::POST, &path, Bytes::from(bytes), "application/wasm").await?;
            if g.output == Format::Table {
                println!("function {} version {} deployed at route {}", ptr(&v, "/name"), ptr(&v, "/spec/version"), ptr(&v, "/spec/route"));
            } else {
                output::value(&v, g.output);
            }
            Ok(())
        }
        FunctionCmd::List => {
            let cols = [
                NAME,
                ID,
                Col { header: "ROUTE", get: |v| ptr(v, "/spec/route") },
                Col { header: "HOST", get: |v| ptr(v, "/spec/host") },
                Col { header: "VERSION", get: |v| ptr(v, "/spec/version") },
                AGE,
            ];
            list(g, P, &cols).await
        }
        FunctionCmd::Show { name } => show(g, P, &name).await,
        FunctionCmd::Set { name, env, allow_host, route, memory, timeout, concurrency, network_interface } => {
            let mut spec = json!({});
            if !env.is_empty() {
                let mut m = serde_json::Map::new();
                for e in &env {
                    let (k, v) = e.split_once('=').ok_or_else(|| CliError::Usage(format!("--env {e}: use KEY=VALUE, or KEY= to remove")))?;
                    m.insert(k.to_string(), if v.is_empty() { Value::Null } else { v.into() });
                }
                spec["env"] = Value::Object(m);
            }
            if !allow_host.is_empty() {
                let hosts: Vec<&String> = allow_host.iter().filter(|h| h.as_str() != "none").collect();
                spec["allowed_hosts"] = json!(hosts);
            }
            for (k, v) in [("memory_mib", memory), ("timeout_ms", timeout), ("max_concurrency", concurrency)] {
                if let Some(v) = v {
                    spec[k] = v.into();
                }
            }
            if let Some(r) = route {
                spec["route"] = r.into();
            }
            if let Some(n) = network_interface {
                spec["network_interface"] = if n == "none" { Value::Null } else { n.into() };
            }
            send(g, Method::PATCH, &format!("{P}/{}", enc(&name)), json!({"spec": spec})).await
        }
        FunctionCmd::Rollback { name, to } => {
            let version = match to {
                Some(v) => v,
                None => {
                    let cur = client(g)?.json(Method::GET, &format!("{P}/{}", enc(&name)), None).await?;
                    let served = cur["spec"]["version"].as_u64().unwrap_or(0);
                    let kept: Vec<u64> = cur["spec"]["versions"].as_array().into_iter().flatten().filter_map(Value::as_u64).collect();
                    let prev = kept.iter().copied().filter(|v| *v < served).max();
                    prev.ok_or_else(|| CliError::Failed(format!("function {name} has no version before {served} to roll back to")))? as u32
                }
            };
            send(g, Method::PATCH, &format!("{P}/{}", enc(&name)), json!({"spec": {"version": version}})).await
        }
        FunctionCmd::Invoke { name, path, method, data } => {
            let v = client(g)?.json(Method::POST, &format!("{P}/{}/invoke", enc(&name)), Some(&json!({"method": method, "path": path, "body": data}))).await?;
            if g.output != Format::Table {
                output::value(&v, g.output);
                return Ok(());
            }
            println!("HTTP {} ({} ms)", ptr(&v, "/status"), v["ms"].as_f64().map(|m| format!("{m:.2}")).unwrap_or_default());
            for (k, val) in v["headers"].as_object().into_iter().flatten() {
                println!("{k}: {}", val.as_str().unwrap_or_default());
            }
            println!();
            print!("{}", v["body"].as_str().unwrap_or_default());
            Ok(())
        }
        FunctionCmd::Logs { name, follow, tail } => {
            let mut path = format!("{P}/{}/logs?follow={follow}", enc(&name));
            if let Some(t) = tail {
                path.push_str(&format!("&tail={t}"));
            }
            client(g)?.print_stream(&path).await
        }
        FunctionCmd::Metrics { name } => {
            let v = client(g)?.json(Method::GET, &format!("{P}/{}/metrics", enc(&name)), None).await?;
            if g.output != Format::Table {
                output::value(&v, g.output);
                return Ok(());
            }
            let inv = &v["invocations"];
            println!(
                "version {}: {} ok, {} errors (timeout {}, failed {}, busy {}, too large {})",
                ptr(&v, "/version"),
                ptr(inv, "/ok"),
                ptr(&v, "/errors"),
                ptr(inv, "/timeout"),
                ptr(inv, "/failed"),
                ptr(inv, "/busy"),
                ptr(inv, "/too_large")
            );
            println!(
                "starts: {} cold, {} warm; latency mean {} ms, p50 <= {} ms, p99 <= {} ms",
                ptr(&v, "/cold_starts"),
                ptr(&v, "/warm_starts"),
                v["mean_ms"].as_f64().map(|m| format!("{m:.2}")).unwrap_or_default(),
                ptr(&v, "/p50_ms"),
                ptr(&v, "/p99_ms")
            );
            Ok(())
        }
        FunctionCmd::Delete { name } => delete(g, P, &name).await,
    }
}
