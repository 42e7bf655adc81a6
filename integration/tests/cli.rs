//! The CLI against the real daemon: the root-only Unix socket, HTTPS with the self-signed
//! certificate, `--wait` on long actions, output formats, errors and exit codes, completions,
//! `config default`, and `node check` with profiles.

use crate::common;

use common::{Daemon, cli};

#[test]
fn cli_over_the_socket_and_https() {
    let sock_dir = tempfile::tempdir().unwrap();
    let sock = sock_dir.path().join("cloudlet.sock");
    let sock_s = sock.to_str().unwrap().to_string();
    let d = Daemon::start_with(&["--socket", &sock_s, "--https", "127.0.0.1:0"]);
    // The socket is root-only.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777, 0o600);

    let s = ["--socket", sock_s.as_str()];
    let run = |args: &[&str]| {
        let mut a: Vec<&str> = s.to_vec();
        a.extend_from_slice(args);
        cli(&a, None)
    };
    let (code, out, err) = run(&["project", "create", "acme", "--description", "Acme", "--quota", "tokens=5"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = run(&["project", "ls"]);
    assert_eq!(code, 0);
    assert!(out.contains("acme") && out.contains("NAME"), "{out}");
    let (_, out, _) = run(&["project", "show", "acme", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["spec"]["quotas"]["tokens"], 5);
    let (_, out, _) = run(&["project", "show", "acme", "-o", "yaml"]);
    assert!(out.contains("name: acme"), "{out}");
    // Site admins approve function domains and grant host paths (only names the config has).
    let (code, out, err) = run(&["project", "update", "acme", "--function-domain", "Acme.Example", "-o", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["spec"]["function_domains"], serde_json::json!(["acme.example"]));
    let (code, _, err) = run(&["project", "update", "acme", "--host-path", "data=ro"]);
    assert_eq!(code, 1);
    assert!(err.contains("field: spec.host_paths.data"), "{err}");
    let (code, out, err) = run(&["--project", "acme", "token", "create", "deploy", "--role", "member"]);
    assert_eq!(code, 0, "{out}{err}");
    let secret = out.lines().last().unwrap().trim().to_string();
    assert!(secret.starts_with("clt_"), "{out}");
    // Errors: clear message, non-zero exit.
    let (code, _, err) = run(&["project", "create", "Bad_Name"]);
    assert_eq!(code, 1);
    assert!(err.contains("invalid_argument") && err.contains("field: name"), "{err}");
    // A long action followed to its end.
    let (code, out, err) = run(&["project", "delete", "acme", "--wait", "-o", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let op: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(op["status"]["phase"], "Succeeded");
    let (_, out, _) = run(&["audit", "ls"]);
    assert!(out.contains("local-socket") && out.contains("/v1/projects"), "{out}");

    // HTTPS with the self-signed certificate made at first start.
    let https = std::fs::read_to_string(d.dir.join("https.addr")).unwrap();
    let port = https.trim().rsplit(':').next().unwrap();
    let remote = format!("https://localhost:{port}");
    let ca = d.dir.join("tls/cert.pem");
    let (code, out, err) = cli(&["--remote", &remote, "--ca-cert", ca.to_str().unwrap(), "--token", &d.token, "site", "-o", "json"], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("\"counts\""), "{out}");
    let (code, _, err) = cli(&["--remote", &remote, "--ca-cert", ca.to_str().unwrap(), "--token", "clt_wrong", "site"], None);
    assert_eq!(code, 1);
    assert!(err.contains("unauthenticated"), "{err}");
    // Without trusting the certificate, TLS refuses.
    let other = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(other.path(), foreign_cert_pem()).unwrap();
    let (code, _, err) = cli(&["--remote", &remote, "--ca-cert", other.path().to_str().unwrap(), "--token", &d.token, "site"], None);
    assert_ne!(code, 0, "{err}");
}

/// A syntactically valid certificate that did not sign the daemon's.
fn foreign_cert_pem() -> String {
    let ck = rcgen::generate_simple_self_signed(vec!["example.invalid".into()]).unwrap();
    ck.cert.pem()
}

#[test]
fn local_commands_config_completion_and_node_check() {
    let (code, out, _) = cli(&["config", "default"], None);
    assert_eq!(code, 0);
    assert_eq!(cloudlet::config::Config::parse("stdout", &out).unwrap(), cloudlet::config::Config::default());
    let (code, out, _) = cli(&["completion", "bash"], None);
    assert_eq!(code, 0);
    assert!(out.contains("cloudlet") && out.contains("complete"), "{}", &out[..200.min(out.len())]);

    let (code, out, _) = cli(&["node", "check", "-o", "json", "--data-dir", "/tmp"], None);
    assert_eq!(code, 0);
    let probe: serde_json::Value = serde_json::from_str(&out).unwrap();
    let cpus = probe["cpus"].as_u64().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pass = dir.path().join("pass.toml");
    std::fs::write(&pass, format!("name = \"pass\"\n[requires]\ncpus = {cpus}\ncgroup = [\"{}\"]\n", probe["cgroup_version"].as_str().unwrap())).unwrap();
    let (code, out, _) = cli(&["node", "check", "--profile", pass.to_str().unwrap(), "--data-dir", "/tmp"], None);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("PASS cpus") && out.contains("ACCEPTED"), "{out}");
    let fail = dir.path().join("fail.toml");
    std::fs::write(&fail, format!("name = \"fail\"\n[requires]\ncpus = {}\nmemory_gib = 1\n", cpus + 1)).unwrap();
    let (code, out, _) = cli(&["node", "check", "--profile", fail.to_str().unwrap(), "--data-dir", "/tmp"], None);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL cpus") && out.contains("PASS memory_gib") && out.contains("REJECTED"), "{out}");
    // The shipped profile gives one line per requirement, and its verdict matches the probe.
    let (code, out, _) = cli(&["node", "check", "--profile", "firmware-profiles/small-site.toml", "-o", "json", "--data-dir", "/tmp"], None);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let all_pass = v["checks"].as_array().unwrap().iter().all(|c| c["pass"] == true);
    assert_eq!(code == 0, all_pass);
    let full = v["probe"]["features"]["kvm_full_guests"]["available"].as_bool().unwrap();
    let line = v["checks"].as_array().unwrap().iter().find(|c| c["requirement"] == "feature kvm_full_guests").unwrap();
    assert_eq!(line["pass"].as_bool().unwrap(), full);
    // A malformed profile is a usage error.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "name = \"bad\"\n[requires]\nfeatures = [\"warp-drive\"]\n").unwrap();
    let (code, _, err) = cli(&["node", "check", "--profile", bad.to_str().unwrap()], None);
    assert_eq!(code, 1);
    assert!(err.contains("warp-drive"), "{err}");
}
