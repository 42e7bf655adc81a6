//! CLI for object storage: `cloudlet bucket ...` and `cloudlet access-key ...`. Objects
//! themselves are moved with any S3 client (`aws s3`, `rclone`) against the S3 endpoint.

use clap::Subcommand;
use hyper::Method;
use serde_json::json;

use super::commands::client;
use super::network::{delete, list, send, show};
use super::output::{self, AGE, Col, Format, ID, NAME, PHASE, ptr};
use super::{CliError, Global};

/// `cloudlet bucket ...`.
#[derive(Debug, Subcommand)]
pub enum BucketCmd {
    /// Create a bucket (its name is unique across the site).
    Create {
        name: String,
        /// Let anyone read its objects (policy public-read).
        #[arg(long)]
        public: bool,
        /// Most MiB it may store.
        #[arg(long)]
        quota: Option<u64>,
    },
    /// Change a bucket's policy (private or public-read) or quota.
    Set {
        name: String,
        #[arg(long)]
        policy: Option<String>,
        #[arg(long)]
        quota: Option<u64>,
    },
    /// List buckets.
    #[command(alias = "ls")]
    List,
    /// Show a bucket.
    Show { name: String },
    /// List a bucket's objects, grouped by "/".
    Objects {
        name: String,
        /// Only keys under this prefix.
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Delete an empty bucket.
    #[command(alias = "rm")]
    Delete { name: String },
}

/// `cloudlet access-key ...`.
#[derive(Debug, Subcommand)]
pub enum AccessKeyCmd {
    /// Create an S3 access key; prints its secret once.
    Create {
        name: String,
        /// viewer, member (default) or admin.
        #[arg(long, default_value = "member")]
        role: String,
    },
    /// List access keys (never their secrets).
    #[command(alias = "ls")]
    List,
    /// Revoke an access key.
    #[command(alias = "rm")]
    Delete { name: String },
}

/// `cloudlet bucket ...`.
pub async fn bucket(g: &Global, cmd: BucketCmd) -> Result<(), CliError> {
    const P: &str = "/v1/buckets";
    match cmd {
        BucketCmd::Create { name, public, quota } => {
            let mut spec = json!({"policy": if public { "public-read" } else { "private" }});
            if let Some(q) = quota {
                spec["quota_mib"] = q.into();
            }
            send(g, Method::POST, P, json!({"name": name, "spec": spec})).await
        }
        BucketCmd::Set { name, policy, quota } => {
            let cur = client(g)?.json(Method::GET, &format!("{P}/{name}"), None).await?;
            let mut spec = cur["spec"].clone();
            if let Some(p) = policy {
                spec["policy"] = p.into();
            }
            if let Some(q) = quota {
                spec["quota_mib"] = q.into();
            }
            send(g, Method::PATCH, &format!("{P}/{name}"), json!({"spec": spec})).await
        }
        BucketCmd::List => {
            list(
                g,
                P,
                &[NAME, ID, Col { header: "POLICY", get: |v| ptr(v, "/spec/policy") }, Col { header: "QUOTA MiB", get: |v| ptr(v, "/spec/quota_mib") }, AGE],
            )
            .await
        }
        BucketCmd::Show { name } => show(g, P, &name).await,
        BucketCmd::Objects { name, prefix } => {
            let c = client(g)?;
            let mut after: Option<String> = None;
            loop {
                let mut path = format!("{P}/{name}/objects?delimiter=/&prefix={}", enc(&prefix));
                if let Some(a) = &after {
                    path.push_str(&format!("&after={}", enc(a)));
                }
                let v = c.json(Method::GET, &path, None).await?;
                if g.output != Format::Table {
                    output::value(&v, g.output);
                } else {
                    for p in v["prefixes"].as_array().into_iter().flatten() {
                        println!("{:>12}  {:<24}  {}", "PRE", "", p.as_str().unwrap_or_default());
                    }
                    for o in v["objects"].as_array().into_iter().flatten() {
                        println!("{:>12}  {:<24}  {}", ptr(o, "/size"), ptr(o, "/last_modified"), ptr(o, "/key"));
                    }
                }
                match v["next"].as_str() {
                    Some(n) => after = Some(n.to_string()),
                    None => break,
                }
            }
            Ok(())
        }
        BucketCmd::Delete { name } => delete(g, P, &name).await,
    }
}

fn enc(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

/// `cloudlet access-key ...`.
pub async fn access_key(g: &Global, cmd: AccessKeyCmd) -> Result<(), CliError> {
    const P: &str = "/v1/access-keys";
    match cmd {
        AccessKeyCmd::Create { name, role } => {
            let v = client(g)?.json(Method::POST, P, Some(&json!({"name": name, "spec": {"role": role}}))).await?;
            if g.output == Format::Table {
                println!("access key {} created. Use it with any S3 client; the secret is shown only this once:", ptr(&v, "/name"));
                println!("AWS_ACCESS_KEY_ID={}", ptr(&v, "/access_key_id"));
                println!("AWS_SECRET_ACCESS_KEY={}", ptr(&v, "/secret_access_key"));
            } else {
                output::value(&v, g.output);
            }
            Ok(())
        }
        AccessKeyCmd::List => list(g, P, &[NAME, ID, Col { header: "ROLE", get: |v| ptr(v, "/spec/role") }, PHASE, AGE]).await,
        AccessKeyCmd::Delete { name } => delete(g, P, &name).await,
    }
}
