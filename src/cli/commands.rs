//! Client commands: each builds a request, sends it, and prints the answer.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::time::Duration;

use futures_util::StreamExt;
use http_body_util::BodyStream;
use hyper::Method;
use serde_json::{Value, json};

use super::output::{self, AGE, Col, Format, ID, NAME, PHASE, PROJECT, ptr};
use super::{AuditCmd, CliError, Client, EventCmd, Global, NodeCmd, OperationCmd, ProjectCmd, TokenCmd, UserCmd};

/// Build the client from global options.
pub fn client(g: &Global) -> Result<Client, CliError> {
    let remote = g.portal.as_deref().or(g.remote.as_deref());
    let c = Client::new(remote, g.socket.as_deref().map(std::path::Path::new), g.token.clone(), g.project.clone(), g.ca_cert.as_deref())?;
    match &g.site {
        Some(site) => c.through_portal(site),
        None => Ok(c),
    }
}

fn items(v: &Value) -> Vec<Value> {
    v["items"].as_array().cloned().unwrap_or_default()
}

fn labels_json(l: &[(String, String)]) -> Value {
    json!(l.iter().cloned().collect::<BTreeMap<_, _>>())
}

fn quotas_json(q: &[(String, String)]) -> Result<Value, CliError> {
    let mut m = serde_json::Map::new();
    for (k, v) in q {
        let n: u64 = v.parse().map_err(|_| CliError::Usage(format!("quota {k}={v}: the count must be a number")))?;
        m.insert(k.clone(), n.into());
    }
    Ok(Value::Object(m))
}

/// `NAME=ro|rw` grants as a JSON object; with `none_removes`, `NAME=none` becomes `null` (a
/// merge patch withdrawing the grant).
fn host_paths_json(h: &[(String, String)], none_removes: bool) -> Result<Value, CliError> {
    let mut m = serde_json::Map::new();
    for (k, v) in h {
        let v = match v.as_str() {
            "ro" | "rw" => Value::from(v.as_str()),
            "none" if none_removes => Value::Null,
            _ => return Err(CliError::Usage(format!("host path {k}={v}: give ro or rw{}", if none_removes { " (or none)" } else { "" }))),
        };
        m.insert(k.clone(), v);
    }
    Ok(Value::Object(m))
}

/// Follow an operation until it ends, with a progress bar; fails when the operation failed.
pub async fn wait_operation(c: &Client, id: &str, quiet: bool) -> Result<Value, CliError> {
    let bar = if quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(100) };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {pos:>3}% {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    loop {
        let op = c.json(Method::GET, &format!("/v1/operations/{id}"), None).await?;
        bar.set_position(op["status"]["progress"].as_u64().unwrap_or(0));
        bar.set_message(ptr(&op, "/status/message"));
        match op["status"]["phase"].as_str() {
            Some("Succeeded") => {
                bar.finish_with_message("done");
                return Ok(op);
            }
            Some("Failed") => {
                bar.abandon_with_message("failed");
                return Err(CliError::Failed(format!("operation {id} failed: {}", op["status"]["error"]["message"].as_str().unwrap_or("unknown error"))));
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// `cloudlet node ...` (except `check`, which runs locally).
pub async fn node(g: &Global, cmd: NodeCmd) -> Result<(), CliError> {
    let c = client(g)?;
    let cols = [
        NAME,
        ID,
        PHASE,
        Col { header: "CPUS", get: |v| ptr(v, "/status/capacity/cpus") },
        Col { header: "MEMORY", get: |v| gib(v, "/status/capacity/memory_bytes") },
        Col { header: "DISK FREE", get: |v| gib(v, "/status/capacity/disk_free_bytes") },
        Col { header: "HEARTBEAT", get: |v| output::age(&ptr(v, "/status/heartbeat_at")) },
    ];
    match cmd {
        NodeCmd::List => {
            let v = c.json(Method::GET, "/v1/nodes", None).await?;
            output::rows(&v, &items(&v), &cols, g.output);
        }
        NodeCmd::Show { name } => output::one(&c.json(Method::GET, &format!("/v1/nodes/{name}"), None).await?, g.output),
        NodeCmd::Update { name, schedulable, labels } => {
            let mut body = json!({});
            if let Some(s) = schedulable {
                body["spec"] = json!({"schedulable": s});
            }
            if !labels.is_empty() {
                body["labels"] = labels_json(&labels);
            }
            output::one(&c.json(Method::PATCH, &format!("/v1/nodes/{name}"), Some(&body)).await?, g.output);
        }
        NodeCmd::Check { .. } => unreachable!("node check runs locally"),
    }
    Ok(())
}

fn gib(v: &Value, p: &str) -> String {
    v.pointer(p).and_then(Value::as_u64).map(|b| format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)).unwrap_or_default()
}

/// `cloudlet project ...`.
pub async fn project(g: &Global, cmd: ProjectCmd) -> Result<(), CliError> {
    let c = client(g)?;
    let cols = [NAME, ID, PHASE, Col { header: "DESCRIPTION", get: |v| ptr(v, "/spec/description") }, AGE];
    match cmd {
        ProjectCmd::List => {
            let v = c.json(Method::GET, "/v1/projects", None).await?;
            output::rows(&v, &items(&v), &cols, g.output);
        }
        ProjectCmd::Show { name } => output::one(&c.json(Method::GET, &format!("/v1/projects/{name}"), None).await?, g.output),
        ProjectCmd::Create { name, description, quotas, labels, function_domains, host_paths } => {
            let body = json!({"name": name, "labels": labels_json(&labels),
                "spec": {"description": description, "quotas": quotas_json(&quotas)?,
                    "function_domains": function_domains, "host_paths": host_paths_json(&host_paths, false)?}});
            output::one(&c.json(Method::POST, "/v1/projects", Some(&body)).await?, g.output);
        }
        ProjectCmd::Update { name, description, quotas, function_domains, host_paths, if_match } => {
            let mut spec = json!({});
            if let Some(d) = description {
                spec["description"] = d.into();
            }
            if !quotas.is_empty() {
                spec["quotas"] = quotas_json(&quotas)?;
            }
            if !function_domains.is_empty() {
                let domains: Vec<String> = function_domains.into_iter().filter(|d| d != "none").collect();
                spec["function_domains"] = domains.into();
            }
            if !host_paths.is_empty() {
                spec["host_paths"] = host_paths_json(&host_paths, true)?;
            }
            let extra: Vec<(&str, String)> = if_match.map(|g| vec![("if-match", format!("\"{g}\""))]).unwrap_or_default();
            let v = c.json_with(Method::PATCH, &format!("/v1/projects/{name}"), Some(&json!({"spec": spec})), &extra).await?;
            output::one(&v, g.output);
        }
        ProjectCmd::Delete { name, wait } => {
            let op = c.json(Method::DELETE, &format!("/v1/projects/{name}"), None).await?;
            let id = ptr(&op, "/id");
            if wait {
                let done = wait_operation(&c, &id, g.output != Format::Table).await?;
                if g.output != Format::Table {
                    output::value(&done, g.output);
                }
            } else if g.output == Format::Table {
                println!("deleting project {name}: operation {id}");
            } else {
                output::value(&op, g.output);
            }
        }
    }
    Ok(())
}

/// `cloudlet token ...`.
pub async fn token(g: &Global, cmd: TokenCmd) -> Result<(), CliError> {
    let c = client(g)?;
    let cols = [NAME, ID, PROJECT, Col { header: "ROLE", get: |v| ptr(v, "/spec/role") }, PHASE, AGE];
    match cmd {
        TokenCmd::List => {
            let v = c.json(Method::GET, "/v1/tokens", None).await?;
            output::rows(&v, &items(&v), &cols, g.output);
        }
        TokenCmd::Create { name, role, expires_at } => {
            let mut spec = json!({"role": role});
            if let Some(e) = expires_at {
                spec["expires_at"] = e.into();
            }
            let v = c.json(Method::POST, "/v1/tokens", Some(&json!({"name": name, "spec": spec}))).await?;
            if g.output == Format::Table {
                println!("token {} ({}) created. Its secret, shown only this once:", ptr(&v, "/name"), ptr(&v, "/id"));
                println!("{}", ptr(&v, "/secret"));
            } else {
                output::value(&v, g.output);
            }
        }
        TokenCmd::Delete { name } => {
            c.json(Method::DELETE, &format!("/v1/tokens/{name}"), None).await?;
            println!("token {name} revoked");
        }
    }
    Ok(())
}

/// `cloudlet user ...`.
pub async fn user(g: &Global, cmd: UserCmd) -> Result<(), CliError> {
    let c = client(g)?;
    let cols = [NAME, ID, PROJECT, Col { header: "ROLE", get: |v| ptr(v, "/spec/role") }, AGE];
    match cmd {
        UserCmd::List => {
            let v = c.json(Method::GET, "/v1/users", None).await?;
            output::rows(&v, &items(&v), &cols, g.output);
        }
        UserCmd::Create { name, role } => {
            if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                eprint!("password for {name}: ");
                let _ = std::io::stderr().flush();
            }
            let mut password = String::new();
            std::io::stdin().lock().read_line(&mut password)?;
            let password = password.trim_end_matches(['\r', '\n']).to_string();
            let body = json!({"name": name, "spec": {"role": role, "password": password}});
            output::one(&c.json(Method::POST, "/v1/users", Some(&body)).await?, g.output);
        }
        UserCmd::Delete { name } => {
            c.json(Method::DELETE, &format!("/v1/users/{name}"), None).await?;
            println!("user {name} deleted");
        }
    }
    Ok(())
}

/// `cloudlet operation ...`.
pub async fn operation(g: &Global, cmd: OperationCmd) -> Result<(), CliError> {
    let c = client(g)?;
    let cols = [
        ID,
        Col { header: "ACTION", get: |v| ptr(v, "/spec/action") },
        Col { header: "TARGET", get: |v| format!("{} {}", ptr(v, "/spec/target_kind"), ptr(v, "/spec/target_name")) },
        PHASE,
        Col { header: "PROGRESS", get: |v| format!("{}%", ptr(v, "/status/progress")) },
        AGE,
    ];
    match cmd {
        OperationCmd::List => {
            let v = c.json(Method::GET, "/v1/operations", None).await?;
            output::rows(&v, &items(&v), &cols, g.output);
        }
        OperationCmd::Show { id } => output::one(&c.json(Method::GET, &format!("/v1/operations/{id}"), None).await?, g.output),
        OperationCmd::Wait { id } => {
            let v = wait_operation(&c, &id, g.output != Format::Table).await?;
            if g.output != Format::Table {
                output::value(&v, g.output);
            }
        }
    }
    Ok(())
}

fn event_line(e: &Value) -> String {
    format!("{:>6}  {}  {:<8} {:<10} {:<20} {}", ptr(e, "/cursor"), ptr(e, "/time"), ptr(e, "/type"), ptr(e, "/kind"), ptr(e, "/name"), ptr(e, "/message"))
}

/// `cloudlet event ...`.
pub async fn event(g: &Global, cmd: EventCmd) -> Result<(), CliError> {
    let c = client(g)?;
    let EventCmd::List { after, follow } = cmd;
    if !follow {
        let v = c.json(Method::GET, &format!("/v1/events?after={after}"), None).await?;
        if g.output == Format::Table {
            for e in items(&v) {
                println!("{}", event_line(&e));
            }
        } else {
            output::value(&v, g.output);
        }
        return Ok(());
    }
    let body = c.stream(&format!("/v1/events?stream=true&after={after}"), &[("accept", "text/event-stream".into())]).await?;
    let mut frames = BodyStream::new(body);
    let mut buf = String::new();
    while let Some(frame) = frames.next().await {
        let frame = frame.map_err(|e| CliError::Http(e.to_string()))?;
        let Ok(data) = frame.into_data() else { continue };
        buf.push_str(&String::from_utf8_lossy(&data));
        while let Some(end) = buf.find("\n\n") {
            let msg: String = buf.drain(..end + 2).collect();
            let data: String = msg.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim_start).collect();
            if data.is_empty() {
                continue;
            }
            match (g.output, serde_json::from_str::<Value>(&data)) {
                (Format::Table, Ok(e)) => println!("{}", event_line(&e)),
                (_, Ok(e)) => println!("{}", serde_json::to_string(&e).unwrap_or_default()),
                (_, Err(_)) => println!("{data}"),
            }
        }
    }
    Ok(())
}

/// `cloudlet audit ...`.
pub async fn audit(g: &Global, cmd: AuditCmd) -> Result<(), CliError> {
    let c = client(g)?;
    let AuditCmd::List { limit } = cmd;
    let v = c.json(Method::GET, &format!("/v1/audit?limit={limit}"), None).await?;
    let cols = [
        Col { header: "TIME", get: |v| ptr(v, "/time") },
        Col { header: "ACTOR", get: |v| ptr(v, "/actor") },
        PROJECT,
        Col { header: "METHOD", get: |v| ptr(v, "/method") },
        Col { header: "PATH", get: |v| ptr(v, "/path") },
        Col { header: "STATUS", get: |v| ptr(v, "/status") },
        Col { header: "TARGET", get: |v| ptr(v, "/target") },
    ];
    output::rows(&v, &items(&v), &cols, g.output);
    Ok(())
}

/// `cloudlet site`.
pub async fn site(g: &Global, cmd: Option<super::SiteCmd>) -> Result<(), CliError> {
    let c = client(g)?;
    let answer = match cmd {
        None => c.json(Method::GET, "/v1/site", None).await?,
        Some(super::SiteCmd::Join { url, join_token }) => {
            c.json(Method::POST, "/v1/site/join", Some(&serde_json::json!({ "portal": url, "token": join_token }))).await?
        }
        Some(super::SiteCmd::Portal) => c.json(Method::GET, "/v1/site/portal", None).await?,
    };
    output::one(&answer, g.output);
    Ok(())
}

/// `cloudlet node check`: probe locally, check a profile; returns whether every line passed.
pub fn node_check(g: &Global, profile: Option<&std::path::Path>, data_dir: Option<&std::path::Path>) -> Result<bool, CliError> {
    let data = data_dir.map(std::path::Path::to_path_buf).unwrap_or_else(|| "/var/lib/cloudlet".into());
    let report = crate::node::probe(&data);
    let Some(path) = profile else {
        match g.output {
            Format::Table => {
                println!("host      {} ({} {}, kernel {})", report.hostname, report.arch, report.cpu_model, report.kernel);
                println!("cpus      {}", report.cpus);
                println!("memory    {:.1} GiB total, {:.1} GiB available", gibf(report.memory_total_bytes), gibf(report.memory_available_bytes));
                println!("disk      {:.1} GiB free of {:.1} GiB at {}", gibf(report.disk_free_bytes), gibf(report.disk_total_bytes), report.disk_path);
                println!("cgroup    {}", report.cgroup_version);
                for (k, f) in &report.features {
                    println!("{:<16} {:<4} {}", k, if f.available { "yes" } else { "no" }, f.detail);
                }
            }
            f => output::value(&serde_json::to_value(&report).unwrap_or_default(), f),
        }
        return Ok(true);
    };
    let prof = crate::node::Profile::load(path).map_err(|e| CliError::Usage(e.to_string()))?;
    let lines = prof.check(&report);
    let pass = lines.iter().all(|l| l.pass);
    match g.output {
        Format::Table => {
            println!("profile {}: {}", prof.name, prof.description);
            for l in &lines {
                println!("{:<4} {:<24} expected {:<28} observed {}", if l.pass { "PASS" } else { "FAIL" }, l.requirement, l.expected, l.observed);
            }
            let failed = lines.iter().filter(|l| !l.pass).count();
            println!("{} ({} of {} checks passed)", if pass { "ACCEPTED" } else { "REJECTED" }, lines.len() - failed, lines.len());
        }
        f => output::value(&json!({"profile": prof.name, "pass": pass, "checks": lines, "probe": report}), f),
    }
    Ok(pass)
}

fn gibf(b: u64) -> f64 {
    b as f64 / (1u64 << 30) as f64
}
