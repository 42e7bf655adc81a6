//! CLI for VPC networking: `cloudlet vpc|subnet|sg|eni|eip|natgw ...`.

use clap::Subcommand;
use hyper::Method;
use serde_json::{Value, json};

use super::commands::client;
use super::output::{self, AGE, Col, ID, NAME, PHASE, ptr};
use super::{CliError, Global};

/// `cloudlet vpc ...`.
#[derive(Debug, Subcommand)]
pub enum VpcCmd {
    /// Create a VPC.
    Create {
        name: String,
        /// A private IPv4 CIDR, /16 to /28.
        #[arg(long)]
        cidr: String,
    },
    /// List VPCs.
    #[command(alias = "ls")]
    List,
    /// Show a VPC.
    Show { name: String },
    /// Delete a VPC (refused while it has subnets or groups).
    #[command(alias = "rm")]
    Delete { name: String },
}

/// `cloudlet subnet ...`.
#[derive(Debug, Subcommand)]
pub enum SubnetCmd {
    /// Create a subnet.
    Create {
        name: String,
        #[arg(long)]
        vpc: String,
        #[arg(long)]
        cidr: String,
    },
    #[command(alias = "ls")]
    /// List subnets.
    List,
    /// Show a subnet.
    Show { name: String },
    /// Delete a subnet (refused while interfaces use it).
    #[command(alias = "rm")]
    Delete { name: String },
}

/// `cloudlet sg ...`. Rules are `PROTO:PORTS:SOURCE`: `tcp:80:0.0.0.0/0`,
/// `tcp:8000-8099:sg=app`, `icmp::10.0.0.0/8`, `all::sg=web`.
#[derive(Debug, Subcommand)]
pub enum SgCmd {
    /// Create a security group.
    Create {
        name: String,
        #[arg(long)]
        vpc: String,
        /// An inbound rule (repeatable).
        #[arg(long = "rule")]
        rules: Vec<String>,
    },
    /// Replace a group's inbound rules.
    SetRules {
        name: String,
        #[arg(long = "rule")]
        rules: Vec<String>,
    },
    /// List security groups.
    #[command(alias = "ls")]
    List,
    /// Show a security group.
    Show { name: String },
    /// Delete a security group (refused while in use).
    #[command(alias = "rm")]
    Delete { name: String },
}

/// `cloudlet eni ...` (network interfaces).
#[derive(Debug, Subcommand)]
pub enum EniCmd {
    /// Create a network interface in a subnet.
    Create {
        name: String,
        #[arg(long)]
        subnet: String,
        /// A free address of the subnet (default: the lowest free one).
        #[arg(long)]
        ip: Option<String>,
        /// A security group (repeatable).
        #[arg(long = "sg")]
        groups: Vec<String>,
    },
    /// List network interfaces.
    #[command(alias = "ls")]
    List,
    /// Show a network interface.
    Show { name: String },
    /// Delete a network interface.
    #[command(alias = "rm")]
    Delete { name: String },
}

/// `cloudlet eip ...` (elastic IPs).
#[derive(Debug, Subcommand)]
pub enum EipCmd {
    /// Allocate an elastic IP from the site's public pool.
    Allocate {
        name: String,
        /// Associate it with this network interface at once.
        #[arg(long)]
        eni: Option<String>,
    },
    /// Associate with a network interface.
    Associate {
        name: String,
        #[arg(long)]
        eni: String,
    },
    /// Disassociate from its network interface.
    Disassociate { name: String },
    /// List elastic IPs.
    #[command(alias = "ls")]
    List,
    /// Show an elastic IP.
    Show { name: String },
    /// Release an elastic IP (refused while associated).
    #[command(alias = "rm")]
    Release { name: String },
}

/// `cloudlet natgw ...` (NAT gateways).
#[derive(Debug, Subcommand)]
pub enum NatGwCmd {
    /// Create a NAT gateway for a subnet.
    Create {
        name: String,
        #[arg(long)]
        subnet: String,
        /// Translate to this elastic IP (default: the uplink address).
        #[arg(long)]
        eip: Option<String>,
    },
    /// List NAT gateways.
    #[command(alias = "ls")]
    List,
    /// Show a NAT gateway.
    Show { name: String },
    /// Delete a NAT gateway.
    #[command(alias = "rm")]
    Delete { name: String },
}

/// Parse `PROTO:PORTS:SOURCE` into a rule object.
pub fn parse_rule(s: &str) -> Result<Value, CliError> {
    let bad = || CliError::Usage(format!("rule {s:?}: use PROTO:PORTS:SOURCE, e.g. tcp:80:0.0.0.0/0 or all::sg=web"));
    let mut parts = s.splitn(3, ':');
    let (proto, ports, source) = (parts.next().ok_or_else(bad)?, parts.next().ok_or_else(bad)?, parts.next().ok_or_else(bad)?);
    let mut r = json!({"protocol": proto});
    if !ports.is_empty() {
        r["ports"] = ports.into();
    }
    match source.strip_prefix("sg=") {
        Some(g) => r["source_group"] = g.into(),
        None => r["source_cidr"] = source.into(),
    }
    Ok(r)
}

fn rules(v: &[String]) -> Result<Value, CliError> {
    Ok(Value::Array(v.iter().map(|r| parse_rule(r)).collect::<Result<_, _>>()?))
}

pub(super) async fn list(g: &Global, path: &str, cols: &[Col]) -> Result<(), CliError> {
    let v = client(g)?.json(Method::GET, path, None).await?;
    let items = v["items"].as_array().cloned().unwrap_or_default();
    output::rows(&v, &items, cols, g.output);
    Ok(())
}

pub(super) async fn show(g: &Global, path: &str, name: &str) -> Result<(), CliError> {
    output::one(&client(g)?.json(Method::GET, &format!("{path}/{name}"), None).await?, g.output);
    Ok(())
}

pub(super) async fn send(g: &Global, method: Method, path: &str, body: Value) -> Result<(), CliError> {
    output::one(&client(g)?.json(method, path, Some(&body)).await?, g.output);
    Ok(())
}

pub(super) async fn delete(g: &Global, path: &str, name: &str) -> Result<(), CliError> {
    client(g)?.json(Method::DELETE, &format!("{path}/{name}"), None).await?;
    println!("deleted {name}");
    Ok(())
}

/// `cloudlet vpc ...`.
pub async fn vpc(g: &Global, cmd: VpcCmd) -> Result<(), CliError> {
    const P: &str = "/v1/vpcs";
    match cmd {
        VpcCmd::Create { name, cidr } => send(g, Method::POST, P, json!({"name": name, "spec": {"cidr": cidr}})).await,
        VpcCmd::List => list(g, P, &[NAME, ID, Col { header: "CIDR", get: |v| ptr(v, "/spec/cidr") }, PHASE, AGE]).await,
        VpcCmd::Show { name } => show(g, P, &name).await,
        VpcCmd::Delete { name } => delete(g, P, &name).await,
    }
}

/// `cloudlet subnet ...`.
pub async fn subnet(g: &Global, cmd: SubnetCmd) -> Result<(), CliError> {
    const P: &str = "/v1/subnets";
    match cmd {
        SubnetCmd::Create { name, vpc, cidr } => send(g, Method::POST, P, json!({"name": name, "spec": {"vpc": vpc, "cidr": cidr}})).await,
        SubnetCmd::List => {
            list(g, P, &[NAME, ID, Col { header: "VPC", get: |v| ptr(v, "/spec/vpc") }, Col { header: "CIDR", get: |v| ptr(v, "/spec/cidr") }, AGE]).await
        }
        SubnetCmd::Show { name } => show(g, P, &name).await,
        SubnetCmd::Delete { name } => delete(g, P, &name).await,
    }
}

/// `cloudlet sg ...`.
pub async fn sg(g: &Global, cmd: SgCmd) -> Result<(), CliError> {
    const P: &str = "/v1/security-groups";
    match cmd {
        SgCmd::Create { name, vpc, rules: r } => send(g, Method::POST, P, json!({"name": name, "spec": {"vpc": vpc, "ingress": rules(&r)?}})).await,
        SgCmd::SetRules { name, rules: r } => send(g, Method::PATCH, &format!("{P}/{name}"), json!({"spec": {"ingress": rules(&r)?}})).await,
        SgCmd::List => {
            list(
                g,
                P,
                &[
                    NAME,
                    ID,
                    Col { header: "VPC", get: |v| ptr(v, "/spec/vpc") },
                    Col { header: "RULES", get: |v| v["spec"]["ingress"].as_array().map(|a| a.len()).unwrap_or(0).to_string() },
                    AGE,
                ],
            )
            .await
        }
        SgCmd::Show { name } => show(g, P, &name).await,
        SgCmd::Delete { name } => delete(g, P, &name).await,
    }
}

/// `cloudlet eni ...`.
pub async fn eni(g: &Global, cmd: EniCmd) -> Result<(), CliError> {
    const P: &str = "/v1/network-interfaces";
    match cmd {
        EniCmd::Create { name, subnet, ip, groups } => {
            let mut spec = json!({"subnet": subnet, "security_groups": groups});
            if let Some(ip) = ip {
                spec["private_ip"] = ip.into();
            }
            send(g, Method::POST, P, json!({"name": name, "spec": spec})).await
        }
        EniCmd::List => {
            list(g, P, &[NAME, ID, Col { header: "IP", get: |v| ptr(v, "/spec/private_ip") }, PHASE, Col { header: "NETNS", get: |v| ptr(v, "/status/netns") }])
                .await
        }
        EniCmd::Show { name } => show(g, P, &name).await,
        EniCmd::Delete { name } => delete(g, P, &name).await,
    }
}

/// `cloudlet eip ...`.
pub async fn eip(g: &Global, cmd: EipCmd) -> Result<(), CliError> {
    const P: &str = "/v1/eips";
    match cmd {
        EipCmd::Allocate { name, eni } => {
            let spec = eni.map(|e| json!({"network_interface": e})).unwrap_or_else(|| json!({}));
            send(g, Method::POST, P, json!({"name": name, "spec": spec})).await
        }
        EipCmd::Associate { name, eni } => send(g, Method::PATCH, &format!("{P}/{name}"), json!({"spec": {"network_interface": eni}})).await,
        EipCmd::Disassociate { name } => send(g, Method::PATCH, &format!("{P}/{name}"), json!({"spec": {"network_interface": null}})).await,
        EipCmd::List => {
            list(
                g,
                P,
                &[
                    NAME,
                    ID,
                    Col { header: "PUBLIC IP", get: |v| ptr(v, "/spec/public_ip") },
                    Col { header: "INTERFACE", get: |v| ptr(v, "/spec/network_interface") },
                ],
            )
            .await
        }
        EipCmd::Show { name } => show(g, P, &name).await,
        EipCmd::Release { name } => delete(g, P, &name).await,
    }
}

/// `cloudlet natgw ...`.
pub async fn natgw(g: &Global, cmd: NatGwCmd) -> Result<(), CliError> {
    const P: &str = "/v1/nat-gateways";
    match cmd {
        NatGwCmd::Create { name, subnet, eip } => {
            let mut spec = json!({"subnet": subnet});
            if let Some(e) = eip {
                spec["eip"] = e.into();
            }
            send(g, Method::POST, P, json!({"name": name, "spec": spec})).await
        }
        NatGwCmd::List => {
            list(g, P, &[NAME, ID, Col { header: "SUBNET", get: |v| ptr(v, "/spec/subnet") }, Col { header: "EIP", get: |v| ptr(v, "/spec/eip") }]).await
        }
        NatGwCmd::Show { name } => show(g, P, &name).await,
        NatGwCmd::Delete { name } => delete(g, P, &name).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_from_the_short_syntax() {
        assert_eq!(parse_rule("tcp:80:0.0.0.0/0").unwrap(), json!({"protocol": "tcp", "ports": "80", "source_cidr": "0.0.0.0/0"}));
        assert_eq!(parse_rule("all::sg=web").unwrap(), json!({"protocol": "all", "source_group": "web"}));
        assert!(parse_rule("tcp:80").is_err());
    }
}
