//! CLI for port forwards and load balancers: `cloudlet portforward|lb ...`.

use clap::Subcommand;
use hyper::Method;
use serde_json::{Value, json};

use super::network::{delete, list, send, show};
use super::output::{AGE, Col, ID, NAME, ptr};
use super::{CliError, Global};

/// `cloudlet portforward ...`: a public port (the uplink address's, or an elastic IP's) to a
/// network interface's port.
#[derive(Debug, Subcommand)]
pub enum PortForwardCmd {
    /// Create a port forward.
    Create {
        name: String,
        /// The public port.
        #[arg(long)]
        port: u16,
        /// The target network interface.
        #[arg(long)]
        eni: String,
        /// The target port (default: the public port).
        #[arg(long)]
        to_port: Option<u16>,
        /// `tcp` or `udp`.
        #[arg(long, default_value = "tcp")]
        protocol: String,
        /// Listen on this elastic IP instead of the uplink address.
        #[arg(long)]
        eip: Option<String>,
    },
    /// List port forwards.
    #[command(alias = "ls")]
    List,
    /// Show a port forward.
    Show { name: String },
    /// Delete a port forward.
    #[command(alias = "rm")]
    Delete { name: String },
}

/// `cloudlet lb ...` (L4 load balancers). Backends are `IP:PORT` or `IP:PORT*WEIGHT`.
#[derive(Debug, Subcommand)]
pub enum LbCmd {
    /// Create a load balancer on an elastic IP (`--eip`) or an internal VIP (`--subnet`).
    Create {
        name: String,
        #[arg(long)]
        vpc: String,
        /// The listener port.
        #[arg(long)]
        port: u16,
        /// `tcp` or `udp`.
        #[arg(long, default_value = "tcp")]
        protocol: String,
        /// A public listener on this elastic IP.
        #[arg(long, conflicts_with = "subnet")]
        eip: Option<String>,
        /// An internal listener on a VIP of this subnet.
        #[arg(long)]
        subnet: Option<String>,
        /// The internal VIP (default: assigned).
        #[arg(long, requires = "subnet")]
        vip: Option<String>,
        /// A backend, repeatable.
        #[arg(long = "backend")]
        backends: Vec<String>,
        /// Keep each client address on one backend.
        #[arg(long)]
        source_affinity: bool,
        /// Seconds between TCP health checks.
        #[arg(long, default_value_t = 5)]
        check_interval: u32,
        /// Turn health checks off.
        #[arg(long, conflicts_with = "check_interval")]
        no_health_check: bool,
    },
    /// Replace the backends.
    SetBackends {
        name: String,
        #[arg(long = "backend")]
        backends: Vec<String>,
    },
    /// List load balancers.
    #[command(alias = "ls")]
    List,
    /// Show a load balancer, with each backend's health.
    Show { name: String },
    /// Delete a load balancer.
    #[command(alias = "rm")]
    Delete { name: String },
}

/// Parse `IP:PORT[*WEIGHT]` into a backend object.
pub fn parse_backend(s: &str) -> Result<Value, CliError> {
    let bad = || CliError::Usage(format!("backend {s:?}: use IP:PORT or IP:PORT*WEIGHT, e.g. 10.0.1.5:8080*2"));
    let (addr, weight) = match s.split_once('*') {
        Some((a, w)) => (a, w.parse::<u32>().map_err(|_| bad())?),
        None => (s, 1),
    };
    let (ip, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    Ok(json!({"ip": ip, "port": port, "weight": weight}))
}

fn backends(v: &[String]) -> Result<Value, CliError> {
    Ok(Value::Array(v.iter().map(|b| parse_backend(b)).collect::<Result<_, _>>()?))
}

/// `cloudlet portforward ...`.
pub async fn portforward(g: &Global, cmd: PortForwardCmd) -> Result<(), CliError> {
    const P: &str = "/v1/port-forwards";
    match cmd {
        PortForwardCmd::Create { name, port, eni, to_port, protocol, eip } => {
            let mut spec = json!({"protocol": protocol, "public_port": port, "network_interface": eni, "private_port": to_port.unwrap_or(port)});
            if let Some(e) = eip {
                spec["eip"] = e.into();
            }
            send(g, Method::POST, P, json!({"name": name, "spec": spec})).await
        }
        PortForwardCmd::List => {
            list(
                g,
                P,
                &[
                    NAME,
                    ID,
                    Col { header: "PROTO", get: |v| ptr(v, "/spec/protocol") },
                    Col { header: "PORT", get: |v| ptr(v, "/spec/public_port") },
                    Col { header: "EIP", get: |v| ptr(v, "/spec/eip") },
                    Col { header: "INTERFACE", get: |v| ptr(v, "/spec/network_interface") },
                    Col { header: "TO PORT", get: |v| ptr(v, "/spec/private_port") },
                    AGE,
                ],
            )
            .await
        }
        PortForwardCmd::Show { name } => show(g, P, &name).await,
        PortForwardCmd::Delete { name } => delete(g, P, &name).await,
    }
}

/// Backends with health, as `10.0.1.5:80 ok, 10.0.1.6:80 DOWN`.
fn health(v: &Value) -> String {
    v.pointer("/status/backends")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|b| format!("{}:{} {}", b["ip"].as_str().unwrap_or("?"), b["port"], if b["healthy"] == false { "DOWN" } else { "ok" }))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// `cloudlet lb ...`.
pub async fn lb(g: &Global, cmd: LbCmd) -> Result<(), CliError> {
    const P: &str = "/v1/load-balancers";
    match cmd {
        LbCmd::Create { name, vpc, port, protocol, eip, subnet, vip, backends: b, source_affinity, check_interval, no_health_check } => {
            let mut listener = json!({"protocol": protocol, "port": port});
            if let Some(e) = eip {
                listener["eip"] = e.into();
            }
            if let Some(s) = subnet {
                listener["subnet"] = s.into();
            }
            if let Some(v) = vip {
                listener["vip"] = v.into();
            }
            let check = if no_health_check { Value::Null } else { json!({"interval_seconds": check_interval, "timeout_seconds": check_interval.min(2)}) };
            let spec = json!({
                "vpc": vpc,
                "listener": listener,
                "backends": backends(&b)?,
                "affinity": if source_affinity { "source_ip" } else { "none" },
                "health_check": check,
            });
            send(g, Method::POST, P, json!({"name": name, "spec": spec})).await
        }
        LbCmd::SetBackends { name, backends: b } => send(g, Method::PATCH, &format!("{P}/{name}"), json!({"spec": {"backends": backends(&b)?}})).await,
        LbCmd::List => {
            list(
                g,
                P,
                &[
                    NAME,
                    ID,
                    Col { header: "ADDRESS", get: |v| ptr(v, "/status/address") },
                    Col { header: "PORT", get: |v| ptr(v, "/spec/listener/port") },
                    Col { header: "PROTO", get: |v| ptr(v, "/spec/listener/protocol") },
                    Col { header: "BACKENDS", get: health },
                    AGE,
                ],
            )
            .await
        }
        LbCmd::Show { name } => show(g, P, &name).await,
        LbCmd::Delete { name } => delete(g, P, &name).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_parse_with_optional_weights() {
        assert_eq!(parse_backend("10.0.1.5:8080").unwrap(), json!({"ip": "10.0.1.5", "port": 8080, "weight": 1}));
        assert_eq!(parse_backend("10.0.1.5:80*3").unwrap(), json!({"ip": "10.0.1.5", "port": 80, "weight": 3}));
        assert!(parse_backend("10.0.1.5").is_err());
        assert!(parse_backend("10.0.1.5:http").is_err());
    }
}
