//! Serverless functions through the real daemon: deploy the example components, call them
//! through the gateway with an HTTP client, check bodies and headers; an endless loop answers 504
//! within its budget and a memory hog 502 while the others keep serving; an invalid component is
//! 422 at deploy and an unknown route 404; after a restart the functions answer again from the
//! artifact cache.

use crate::common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::Daemon;

fn component(name: &str) -> Vec<u8> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = root.join("target/functions").join(format!("{name}.wasm"));
    if !path.exists() {
        let ok = std::process::Command::new("bash").arg(root.join("images/functions/build.sh")).status().map(|s| s.success()).unwrap_or(false);
        assert!(ok, "building the example functions failed");
    }
    std::fs::read(&path).expect("component")
}

fn deploy(d: &Daemon, query: &str, wasm: &[u8]) -> common::Answer {
    let auth = format!("Bearer {}", d.token);
    d.raw("POST", &format!("/v1/functions/deploy?{query}"), Some(wasm), &[("authorization", &auth), ("content-type", "application/wasm")]).expect("connection")
}

fn gateway(d: &Daemon) -> String {
    format!("http://{}", std::fs::read_to_string(d.dir.join("gateway.addr")).expect("gateway.addr").trim())
}

fn call(url: &str, host: Option<&str>, body: Option<&str>) -> (u16, String, ureq::http::HeaderMap) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(20))).build().into();
    let r = match (body, host) {
        (Some(b), _) => agent.post(url).header("content-type", "text/plain").send(b),
        (None, Some(h)) => agent.get(url).header("host", h).call(),
        (None, None) => agent.get(url).call(),
    };
    let mut r = r.expect("gateway answers");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, r.body_mut().read_to_string().unwrap_or_default(), headers)
}

#[test]
fn functions_deploy_serve_fail_in_isolation_and_survive_a_restart() {
    let mut d = Daemon::start_with(&["--gateway", "127.0.0.1:0"]);
    for (name, q) in [
        ("hello", "name=hello&route=/hello"),
        ("echo", "name=echo&route=/echo"),
        ("config", "name=config&route=/config"),
        ("spin", "name=spin&route=/spin&timeout_ms=400&memory_mib=16&max_concurrency=1"),
    ] {
        let r = deploy(&d, q, &component(name));
        assert_eq!(r.status, 201, "{name}: {}", r.body);
    }
    let g = gateway(&d);
    assert_eq!(call(&format!("{g}/hello"), None, None).1, "hello from cloudlet\n");
    let (status, body, headers) = call(&format!("{g}/echo/x?y=1"), None, Some("ping"));
    assert_eq!((status, body.as_str()), (200, "ping"));
    assert_eq!(headers.get("x-echo-path").and_then(|v| v.to_str().ok()), Some("/echo/x?y=1"));
    assert_eq!(headers.get("x-echo-method").and_then(|v| v.to_str().ok()), Some("POST"));
    let (_, body, _) = call(&format!("{g}/config"), None, None);
    assert!(body.starts_with("hello, world\n"), "{body}");

    // Failures stay in their request.
    let t = Instant::now();
    let (status, body, _) = call(&format!("{g}/spin"), None, None);
    assert_eq!(status, 504, "{body}");
    assert!(t.elapsed() < Duration::from_secs(5), "answered in {:?}", t.elapsed());
    let (status, body, _) = call(&format!("{g}/spin?alloc=1"), None, None);
    assert_eq!(status, 502, "{body}");
    assert_eq!(call(&format!("{g}/hello"), None, None).0, 200, "others still serve");
    assert_eq!(call(&format!("{g}/nothing-here"), None, None).0, 404);
    // Beyond its concurrency the function answers 503; beyond its body limit 413.
    let busy = {
        let url = format!("{g}/spin");
        std::thread::spawn(move || call(&url, None, None).0)
    };
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(call(&format!("{g}/spin"), None, None).0, 503);
    assert_eq!(busy.join().expect("thread"), 504);
    // Announce a 2 MiB body and read the answer before sending it (the gateway answers at once).
    let answer = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(g.trim_start_matches("http://")).expect("connect");
        s.write_all(format!("POST /echo HTTP/1.1\r\nHost: fn\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", 2 << 20).as_bytes()).expect("write");
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).expect("read");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // Bad input at deploy: not a component, a core module, bad limits.
    for (q, wasm) in [("name=bad", &b"not wasm"[..]), ("name=core", &b"\0asm\x01\0\0\0"[..])] {
        let r = deploy(&d, q, wasm);
        assert_eq!((r.status, r.json()["error"]["field"].as_str()), (422, Some("body")), "{}", r.body);
    }
    let r = deploy(&d, "name=big&memory_mib=0", &component("hello"));
    assert_eq!((r.status, r.json()["error"]["field"].as_str()), (422, Some("spec.memory_mib")), "{}", r.body);
    assert_eq!(d.call("GET", "/v1/functions/bad", None).status, 404, "a refused deploy leaves nothing");

    // A second deploy is a new version.
    let r = deploy(&d, "name=hello", &component("echo"));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["spec"]["versions"], serde_json::json!([1, 2]));
    assert_eq!(call(&format!("{g}/hello"), None, Some("v2")).1, "v2", "version 2 (echo) serves now");

    // A restart: every function answers again, compiled artifacts taken from the cache.
    d.kill9();
    d.launch();
    // The log is colored: compare it without ANSI escapes.
    let plain: String = {
        let log = d.log();
        let mut out = String::new();
        let mut esc = false;
        for c in log.chars() {
            match (esc, c) {
                (false, '\u{1b}') => esc = true,
                (true, 'm') => esc = false,
                (true, _) => {}
                (false, c) => out.push(c),
            }
        }
        out
    };
    assert!(plain.contains("functions loaded functions=4 from_cache=4"), "log:\n{plain}");
    let g = gateway(&d);
    assert_eq!(call(&format!("{g}/hello"), None, Some("again")).1, "again");
    assert_eq!(call(&format!("{g}/config"), None, None).0, 200);
    assert_eq!(d.call("DELETE", "/v1/functions/hello", None).status, 204);
    assert_eq!(call(&format!("{g}/hello"), None, None).0, 404, "a deleted function stops at once");
}

/// A one-request-at-a-time HTTP server on loopback answering `upstream ok`; stops after `n`.
fn upstream(n: usize) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for s in l.incoming().take(n) {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: close\r\n\r\nupstream ok\n");
        }
    });
    port
}

#[test]
fn functions_logs_metrics_config_rollback_outbound_buckets_and_cli() {
    // The upstream is on loopback: the site permits exactly its address and port.
    let port = upstream(2);
    let d = Daemon::start_with(&["--gateway", "127.0.0.1:0", "--egress-allow", &format!("127.0.0.1:{port}")]);
    let g = gateway(&d);
    let remote = format!("http://{}", d.addr);
    let cli = |args: &[&str]| {
        let mut all = vec!["--remote", remote.as_str(), "--token", d.token.as_str(), "--project", "default"];
        all.extend_from_slice(args);
        let (code, out, err) = common::cli(&all, None);
        assert_eq!(code, 0, "cloudlet {args:?}: {out}{err}");
        out
    };
    let dir = tempfile::tempdir().expect("tmp");
    for f in ["echo", "config", "hello", "spin", "fetch"] {
        std::fs::write(dir.path().join(format!("{f}.wasm")), component(f)).expect("write");
    }
    let file = |f: &str| dir.path().join(format!("{f}.wasm")).to_string_lossy().into_owned();

    // Deploy with the CLI; the guest's stdout lands in the function's log.
    assert!(cli(&["function", "deploy", "echo", "--component", &file("echo"), "--route", "/e"]).contains("version 1"));
    cli(&["function", "deploy", "spin", "--component", &file("spin"), "--route", "/spin", "--timeout", "200"]);
    assert!(cli(&["function", "ls"]).contains("/e"));
    let follower = {
        let all = ["--remote", remote.as_str(), "--token", d.token.as_str(), "--project", "default", "function", "logs", "echo", "-f"];
        std::process::Command::new(common::bin()).args(all).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null()).spawn().expect("logs -f")
    };
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(call(&format!("{g}/e/first"), None, Some("abc")).1, "abc");
    let logs = cli(&["function", "logs", "echo"]);
    assert!(logs.contains(" stdout echo POST /e/first 3 bytes"), "{logs}");
    // `logs -f` prints lines as they come.
    let mut follower = follower;
    let mut out = follower.stdout.take().expect("stdout");
    assert_eq!(call(&format!("{g}/e/second"), None, Some("abcd")).1, "abcd");
    let seen = {
        use std::io::Read;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) && !String::from_utf8_lossy(&got).contains("/e/second 4 bytes") {
            match out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    };
    let _ = follower.kill();
    let _ = follower.wait();
    assert!(seen.contains("echo POST /e/first 3 bytes") && seen.contains("echo POST /e/second 4 bytes"), "logs -f printed: {seen}");

    // A timeout is a log line and a metric; the other function is unaffected.
    assert_eq!(call(&format!("{g}/spin"), None, None).0, 504);
    assert!(cli(&["function", "logs", "spin"]).contains(" host request timed out"), "the gateway logs the timeout");
    let m = d.call("GET", "/v1/functions/echo/metrics?project=default", None).json();
    assert_eq!((m["invocations"]["ok"].as_u64(), m["cold_starts"].as_u64(), m["warm_starts"].as_u64()), (Some(2), Some(1), Some(1)), "{m}");
    assert_eq!(m["latency"].as_array().map(|b| b.iter().map(|x| x["count"].as_u64().unwrap_or(0)).sum::<u64>()), Some(2));
    let m = d.call("GET", "/v1/functions/spin/metrics?project=default", None).json();
    assert_eq!((m["invocations"]["timeout"].as_u64(), m["errors"].as_u64()), (Some(1), Some(1)), "{m}");
    let prom = d.call("GET", "/metrics", None).body;
    assert!(prom.contains(r#"cloudlet_function_invocations_total{function="echo",project="default",outcome="ok"} 2"#), "{prom}");
    assert!(prom.contains(r#"cloudlet_function_starts_total{function="echo",project="default",start="cold"} 1"#), "{prom}");
    assert!(prom.contains(r#"cloudlet_function_duration_seconds_count{function="spin",project="default"} 1"#), "{prom}");
    assert!(cli(&["function", "metrics", "echo"]).contains("2 ok, 0 errors"));

    // A test request through the API, as the console sends it.
    let r = d.call(
        "POST",
        "/v1/functions/echo/invoke?project=default",
        Some(serde_json::json!({"method": "PUT", "path": "/e/z?q=1", "body": "hi", "headers": {"x-test": "1"}})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(
        (v["status"].as_u64(), v["body"].as_str(), v["headers"]["x-echo-method"].as_str(), v["headers"]["x-echo-h-x-test"].as_str()),
        (Some(200), Some("hi"), Some("PUT"), Some("1")),
        "{v}"
    );
    let r = d.call("POST", "/v1/functions/echo/invoke?project=default", Some(serde_json::json!({"method": "BAD METHOD"})));
    assert_eq!((r.status, r.json()["error"]["field"].as_str()), (422, Some("method")), "{}", r.body);
    let r = d.call("POST", "/v1/functions/spin/invoke?project=default", Some(serde_json::json!({})));
    assert_eq!(r.json()["status"].as_u64(), Some(504), "{}", r.body);
    assert!(cli(&["function", "invoke", "echo", "--path", "/e/cli", "-X", "POST", "-d", "from cli"]).contains("from cli"));

    // Configuration: env vars by the CLI; bad settings are 422 naming the field.
    cli(&["function", "deploy", "config", "--component", &file("config"), "--route", "/config"]);
    assert!(call(&format!("{g}/config"), None, None).1.starts_with("hello, world"));
    cli(&["function", "set", "config", "--env", "GREETING=hej"]);
    assert!(call(&format!("{g}/config"), None, None).1.starts_with("hej, world"), "env applies to the next request");
    cli(&["function", "set", "config", "--env", "GREETING="]);
    assert!(call(&format!("{g}/config"), None, None).1.starts_with("hello, world"), "an env var is removed");
    for (spec, field) in [
        (serde_json::json!({"env": {"A=B": "x"}}), "spec.env"),
        (serde_json::json!({"version": 7}), "spec.version"),
        (serde_json::json!({"versions": [1]}), "spec.versions"),
        (serde_json::json!({"timeout_ms": 0}), "spec.timeout_ms"),
        (serde_json::json!({"allowed_hosts": ["Bad Host"]}), "spec.allowed_hosts"),
        (serde_json::json!({"nope": 1}), "spec"),
    ] {
        let r = d.call("PATCH", "/v1/functions/config?project=default", Some(serde_json::json!({"spec": spec})));
        assert_eq!((r.status, r.json()["error"]["field"].as_str()), (422, Some(field)), "{spec}: {}", r.body);
    }
    assert!(call(&format!("{g}/config"), None, None).1.starts_with("hello, world"), "a refused change changes nothing");

    // Roll back: version 2 (hello) serves, then version 1 (config) again.
    cli(&["function", "deploy", "config", "--component", &file("hello")]);
    assert_eq!(call(&format!("{g}/config"), None, None).1, "hello from cloudlet\n");
    cli(&["function", "rollback", "config"]);
    let v = d.call("GET", "/v1/functions/config?project=default", None).json();
    assert_eq!((v["spec"]["version"].as_u64(), v["spec"]["versions"].clone()), (Some(1), serde_json::json!([1, 2])));
    assert!(call(&format!("{g}/config"), None, None).1.starts_with("hello, world"), "version 1 serves again");

    // Outbound HTTP: denied until the allow-list names the host.
    cli(&["function", "deploy", "fetch", "--component", &file("fetch"), "--route", "/fetch"]);
    let url = format!("{g}/fetch?url=http://127.0.0.1:{port}/");
    let (status, body, _) = call(&url, None, None);
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("HttpRequestDenied"), "{body}");
    assert!(cli(&["function", "logs", "fetch"]).contains("denied: not on the function's allow-list"));
    cli(&["function", "set", "fetch", "--allow-host", "127.0.0.1"]);
    let (status, body, _) = call(&url, None, None);
    assert_eq!((status, body.as_str()), (200, "upstream ok\n"), "an allowed host is reached");

    // Deploy from an object in a bucket of the project.
    assert_eq!(d.call("POST", "/v1/buckets?project=default", Some(serde_json::json!({"name": "fn-code"}))).status, 201);
    let auth = format!("Bearer {}", d.token);
    let put = d.raw("PUT", "/v1/buckets/fn-code/object?key=hello.wasm&project=default", Some(&component("hello")), &[("authorization", &auth)]).expect("put");
    assert_eq!(put.status, 201, "{}", put.body);
    cli(&["function", "deploy", "from-bucket", "--bucket", "fn-code", "--key", "hello.wasm", "--route", "/fb"]);
    assert_eq!(call(&format!("{g}/fb"), None, None).1, "hello from cloudlet\n");
    let r = deploy(&d, "name=nokey&bucket=fn-code&project=default", b"");
    assert_eq!((r.status, r.json()["error"]["field"].as_str()), (422, Some("key")), "{}", r.body);
    assert_eq!(deploy(&d, "name=missing&bucket=fn-code&key=nope.wasm&project=default", b"").status, 404);
    let r = deploy(&d, "name=both&bucket=fn-code&key=hello.wasm&project=default", &component("hello"));
    assert_eq!((r.status, r.json()["error"]["field"].as_str()), (422, Some("bucket")), "{}", r.body);

    // Another project's member sees none of it.
    assert_eq!(d.call("POST", "/v1/projects", Some(serde_json::json!({"name": "other"}))).status, 201);
    let t = d.call("POST", "/v1/tokens?project=other", Some(serde_json::json!({"name": "o", "spec": {"role": "admin"}})));
    assert_eq!(t.status, 201, "{}", t.body);
    let other = t.json()["secret"].as_str().expect("secret").to_string();
    for (m, path) in
        [("GET", "/v1/functions/echo"), ("GET", "/v1/functions/echo/logs"), ("GET", "/v1/functions/echo/metrics"), ("POST", "/v1/functions/echo/invoke")]
    {
        let body = (m == "POST").then(|| serde_json::json!({}));
        assert_eq!(d.call_as(&other, m, path, body).status, 404, "{m} {path}");
    }
    assert_eq!(d.call_as(&other, "GET", "/v1/functions", None).json()["items"].as_array().map(Vec::len), Some(0));
}

/// A one-answer-per-connection HTTP server in namespace `netns` on `port` (it reads the request
/// head before it answers, so the client sees the whole response).
/// The body names the client's address: `from IP`.
fn serve_http_in(netns: &std::path::Path, port: u16, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let ns = netns.to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        common::enter_netns(&ns);
        let l = std::net::TcpListener::bind(("0.0.0.0", port)).expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        tx.send(()).expect("ready");
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let Ok((mut s, peer)) = l.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            let _ = s.set_nonblocking(false);
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let (mut head, mut buf) = (Vec::new(), [0u8; 1024]);
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let body = format!("from {}", peer.ip());
            let _ = s.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes());
        }
    });
    rx.recv().expect("server ready");
}

/// Privileged lane: a function served on a network interface of a VPC is reachable from another
/// workload of the VPC and, through an EIP, from the "internet" namespace; its outbound requests
/// leave from the VPC; it comes back after a restart; another project can't attach its function
/// to this project's interface.
#[test]
fn a_function_on_a_network_interface_answers_in_its_vpc_and_through_an_eip() {
    use common::{NetnsGuard, create, http_get_in, ready_netns};
    use serde_json::json;
    if !common::privileged(common::is_root(), "root (CAP_NET_ADMIN, CAP_SYS_ADMIN) for namespaces, veth and nftables") {
        return;
    }
    let net = common::internet("fn");
    let (tmp, stop) = (tempfile::tempdir().expect("tmp"), std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)));
    let _topology = NetnsGuard { data: None, extra: vec![net.up.clone(), net.inet.clone()], stop: stop.clone() };
    let cfg = common::uplink_config(tmp.path(), &net);
    let mut d = Daemon::start_with(&["--config", cfg.to_str().expect("utf-8"), "--gateway", "127.0.0.1:0"]);
    let stop_in_vpc = stop.clone();
    let _owned = NetnsGuard { data: Some(d.dir.clone()), extra: vec![], stop };

    create(&d, "/v1/vpcs", json!({"name": "prod", "spec": {"cidr": "10.0.0.0/16"}}));
    create(&d, "/v1/subnets", json!({"name": "web", "spec": {"vpc": "prod", "cidr": "10.0.1.0/24"}}));
    create(
        &d,
        "/v1/security-groups",
        json!({"name": "http", "spec": {"vpc": "prod", "ingress": [{"protocol": "tcp", "ports": "80", "source_cidr": "0.0.0.0/0"}]}}),
    );
    for n in ["fn-ep", "client"] {
        create(&d, "/v1/network-interfaces", json!({"name": n, "spec": {"subnet": "web", "security_groups": ["http"]}}));
    }
    let (_, ep_ip) = ready_netns(&d, "fn-ep");
    let (client, _) = ready_netns(&d, "client");
    let client = client.file_name().and_then(|n| n.to_str()).expect("netns name").to_string();

    let r = deploy(&d, "name=hello&route=/hello", &component("hello"));
    assert_eq!(r.status, 201, "{}", r.body);
    let r = d.call("PATCH", "/v1/functions/hello", Some(json!({"spec": {"network_interface": "nope"}})));
    assert_eq!((r.status, r.json()["error"]["field"].as_str()), (422, Some("spec.network_interface")), "{}", r.body);
    let r = d.call("PATCH", "/v1/functions/hello", Some(json!({"spec": {"network_interface": "fn-ep"}})));
    assert_eq!(r.status, 200, "{}", r.body);
    let eni_id = d.call("GET", "/v1/network-interfaces/fn-ep", None).json()["id"].as_str().expect("id").to_string();
    assert_eq!(r.json()["spec"]["network_interface"].as_str(), Some(eni_id.as_str()), "stored as the id");

    let url = format!("http://{ep_ip}/hello");
    let body = d.wait_for(30, "the function from inside the VPC", || http_get_in(&client, &url).filter(|b| b.contains("hello")));
    assert_eq!(body, "hello from cloudlet\n");
    assert!(http_get_in(&client, &format!("http://{ep_ip}/other")).is_some_and(|b| b.contains("not_found")), "only routes of functions on this interface");

    // A function on the interface makes its outbound requests from the VPC: a workload there
    // sees them come from the function's interface.
    let (client_ns, client_ip) = ready_netns(&d, "client");
    serve_http_in(&client_ns, 80, stop_in_vpc);
    let r = deploy(&d, "name=fetch&route=/fetch", &component("fetch"));
    assert_eq!(r.status, 201, "{}", r.body);
    let r = d.call("PATCH", "/v1/functions/fetch", Some(json!({"spec": {"network_interface": "fn-ep", "allowed_hosts": [client_ip.clone()]}})));
    assert_eq!(r.status, 200, "{}", r.body);
    let fetched = d.wait_for(30, "a request from the function to the VPC", || {
        let (status, body, _) = call(&format!("{}/fetch?url=http://{client_ip}/", gateway(&d)), None, None);
        (status == 200).then_some(body)
    });
    assert_eq!(fetched, format!("from {ep_ip}"));

    let eip = create(&d, "/v1/eips", json!({"name": "fn-ip", "spec": {"network_interface": "fn-ep"}}));
    let public = format!("http://{}/hello", eip["spec"]["public_ip"].as_str().expect("ip"));
    let body = d.wait_for(30, "the function through its EIP", || http_get_in(&net.inet, &public).filter(|b| b.contains("hello")));
    assert_eq!(body, "hello from cloudlet\n");

    // After kill -9 and a restart the endpoint listens again.
    d.kill9();
    d.launch();
    let body = d.wait_for(30, "the function's endpoint after a restart", || http_get_in(&client, &url).filter(|b| b.contains("hello")));
    assert_eq!(body, "hello from cloudlet\n");

    // Another project cannot use this project's interface.
    assert_eq!(d.call("POST", "/v1/projects", Some(json!({"name": "other"}))).status, 201);
    // (On a prefix of its own: this project's /hello owns /hello, and `/` would overlap it.)
    let r = deploy(&d, "name=x&route=/x&project=other", &component("hello"));
    assert_eq!(r.status, 201, "{}", r.body);
    let r = d.call("PATCH", "/v1/functions/x?project=other", Some(json!({"spec": {"network_interface": eni_id}})));
    assert_eq!((r.status, r.json()["error"]["field"].as_str()), (422, Some("spec.network_interface")), "{}", r.body);
}

/// `kill -9` between storing a deploy's component and committing the spec that names it: the
/// function stays absent (first deploy) or on its old version (later deploy), the component
/// nobody names is swept at the next start, and deploying again works.
#[test]
fn a_crash_inside_a_deploy_leaves_no_half_deployed_function() {
    let mut d = Daemon::start_with(&["--gateway", "127.0.0.1:0"]);
    let r = deploy(&d, "name=kept&route=/kept", &component("hello"));
    assert_eq!(r.status, 201, "{}", r.body);
    let components = d.dir.join("functions/components");
    let count = |dir: &std::path::Path| std::fs::read_dir(dir).map(|e| e.count()).unwrap_or(0);
    assert_eq!(count(&components), 1);
    let paused = |d: &Daemon, n: usize| common::wait_secs(30, "the failpoint", || (d.log().matches("failpoint: pausing").count() >= n).then_some(()));
    let restart_with = |d: &mut Daemon, failpoint: Option<&str>| {
        d.kill9();
        d.env = failpoint.map(|f| vec![("CLOUDLET_FAILPOINT".to_string(), f.to_string())]).unwrap_or_default();
        d.launch();
    };
    restart_with(&mut d, Some("deploy_commit=5000"));
    for (i, (name, wasm)) in [("fresh", component("echo")), ("kept", component("config"))].into_iter().enumerate() {
        let (addr, token) = (d.addr.clone(), d.token.clone());
        let q = format!("name={name}&route=/{name}");
        let t = std::thread::spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
            let _ = agent.post(&format!("http://{addr}/v1/functions/deploy?{q}")).header("authorization", &format!("Bearer {token}")).send(&wasm[..]);
        });
        paused(&d, i + 1);
        assert_eq!(count(&components), 2, "the component is stored before the commit");
        restart_with(&mut d, if name == "fresh" { Some("deploy_commit=5000") } else { None });
        let _ = t.join();
    }
    assert_eq!(d.call("GET", "/v1/functions/fresh", None).status, 404, "the first deploy never committed");
    let kept = d.call("GET", "/v1/functions/kept", None).json();
    assert_eq!(kept["spec"]["versions"], serde_json::json!([1]), "the second deploy of kept never committed: {kept}");
    assert_eq!(count(&components), 1, "the unnamed components were swept at start-up");
    assert_eq!(call(&format!("{}/kept", gateway(&d)), None, None).1, "hello from cloudlet\n", "the old version serves");
    let r = deploy(&d, "name=fresh&route=/fresh", &component("echo"));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(call(&format!("{}/fresh", gateway(&d)), None, Some("again")).1, "again");
}

/// Issue 14 (3), as a member of project `b`: whatever the function's allow-list names, its
/// outbound requests cannot reach the daemon's API (by address, by `localhost`, by `0.0.0.0`,
/// IPv4-mapped), the metadata address or the host's own addresses; they are refused before any
/// connection (`DestinationIpProhibited`) and read nothing. The site's exception opens exactly
/// its address and port.
#[test]
fn a_tenants_function_cannot_reach_the_daemon_the_host_or_link_local_addresses() {
    use serde_json::json;
    let port = upstream(1);
    let d = Daemon::start_with(&["--gateway", "127.0.0.1:0", "--egress-allow", &format!("127.0.0.1:{port}")]);
    let g = gateway(&d);
    let api = d.addr.rsplit(':').next().expect("api port").to_string();
    assert_eq!(d.call("POST", "/v1/projects", Some(json!({"name": "b"}))).status, 201);
    let t = d.call("POST", "/v1/tokens?project=b", Some(json!({"name": "m", "spec": {"role": "member"}})));
    assert_eq!(t.status, 201, "{}", t.body);
    let b = t.json()["secret"].as_str().expect("secret").to_string();
    let auth = format!("Bearer {b}");
    let r = d
        .raw(
            "POST",
            "/v1/functions/deploy?name=probe&route=/b-probe",
            Some(&component("fetch")),
            &[("authorization", &auth), ("content-type", "application/wasm")],
        )
        .expect("connection");
    assert_eq!(r.status, 201, "{}", r.body);
    // A global address of this host, if it has one (the API does not listen there, but the
    // refusal must come before any connection attempt).
    let own = std::process::Command::new("ip").args(["-4", "-o", "addr", "show", "scope", "global"]).output().ok().and_then(|o| {
        String::from_utf8_lossy(&o.stdout).split_whitespace().skip_while(|w| *w != "inet").nth(1).and_then(|a| a.split('/').next()).map(str::to_string)
    });
    let mut hosts = vec!["127.0.0.1".to_string(), "localhost".into(), "0.0.0.0".into(), "169.254.169.254".into(), "127.1.2.3".into()];
    hosts.extend(own.clone());
    let r = d.call_as(&b, "PATCH", "/v1/functions/probe", Some(json!({"spec": {"allowed_hosts": hosts}})));
    assert_eq!(r.status, 200, "{}", r.body);

    let mut targets = vec![
        format!("127.0.0.1:{api}/v1/projects"),
        format!("localhost:{api}/v1/projects"),
        format!("0.0.0.0:{api}/v1/projects"),
        format!("127.1.2.3:{api}/v1/projects"),
        "169.254.169.254/latest/meta-data/".to_string(),
        format!("127.0.0.1:{}/", port.wrapping_add(1).max(1)),
    ];
    targets.extend(own.map(|a| format!("{a}:{api}/v1/projects")));
    for t in &targets {
        let (status, body, _) = call(&format!("{g}/b-probe?url=http://{t}"), None, None);
        assert_eq!(status, 502, "{t}: {body}");
        assert!(body.contains("DestinationIpProhibited"), "{t}: refused before connecting: {body}");
        for leak in ["items", "unauthenticated", "authentication required", "upstream ok"] {
            assert!(!body.contains(leak), "{t}: nothing of the target is read: {body}");
        }
    }
    let logs = d.call_as(&b, "GET", "/v1/functions/probe/logs", None).body;
    assert!(logs.contains("refused by the site's egress policy"), "{logs}");
    // The site's exception: exactly 127.0.0.1:<port>.
    let (status, body, _) = call(&format!("{g}/b-probe?url=http://127.0.0.1:{port}/"), None, None);
    assert_eq!((status, body.as_str()), (200, "upstream ok\n"), "the permitted address and port are reached");
}

fn deploy_as(d: &Daemon, token: &str, query: &str, wasm: &[u8]) -> common::Answer {
    let auth = format!("Bearer {token}");
    d.raw("POST", &format!("/v1/functions/deploy?{query}"), Some(wasm), &[("authorization", &auth), ("content-type", "application/wasm")]).expect("connection")
}

/// The `field` of an error answer, after checking it is a JSON error with a code and a message.
fn error_field(r: &common::Answer) -> String {
    let e = &r.json()["error"];
    assert!(e["code"].as_str().is_some_and(|c| !c.is_empty()) && e["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", r.body);
    e["field"].as_str().unwrap_or_default().to_string()
}

/// POST `body` to the gateway with a `Host` header; (status, body, x-echo-path).
fn post_host(url: &str, host: &str, body: &str) -> (u16, String, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(20))).build().into();
    let mut r = agent.post(url).header("host", host).header("content-type", "text/plain").send(body).expect("gateway answers");
    let path = r.headers().get("x-echo-path").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap_or_default(), path)
}

/// Projects `a` and `b` (function domains approved by the site admin: each its own, and one
/// both share) with a member token each.
fn two_tenants(d: &Daemon) -> (String, String) {
    let mut tokens = Vec::new();
    for (name, domains) in [("a", serde_json::json!(["a.example", "shared.example"])), ("b", serde_json::json!(["b.example", "shared.example"]))] {
        let r = d.call("POST", "/v1/projects", Some(serde_json::json!({"name": name, "spec": {"function_domains": domains}})));
        assert_eq!(r.status, 201, "{}", r.body);
        let r = d.call("POST", &format!("/v1/tokens?project={name}"), Some(serde_json::json!({"name": "m", "spec": {"role": "member"}})));
        assert_eq!(r.status, 201, "{}", r.body);
        tokens.push(r.json()["secret"].as_str().expect("secret").to_string());
    }
    (tokens.remove(0), tokens.remove(0))
}

#[test]
fn routes_and_hosts_cannot_be_hijacked_across_projects() {
    use serde_json::json;
    let mut d = Daemon::start_with(&["--gateway", "127.0.0.1:0"]);
    let (a, b) = two_tenants(&d);
    let (echo, hello) = (component("echo"), component("hello"));
    // A serves /app and the host api.shared.example (both with echo: the body comes back).
    for q in ["name=app&route=/app", "name=api&route=/&host=api.shared.example"] {
        let r = deploy_as(&d, &a, q, &echo);
        assert_eq!(r.status, 201, "{q}: {}", r.body);
    }

    // B under, on or over A's prefix: 409 naming spec.route, and nothing is made.
    for q in ["name=login&route=/app/login", "name=login&route=/app", "name=login&route=/app/", "name=login&route=/"] {
        let r = deploy_as(&d, &b, q, &hello);
        assert_eq!((r.status, error_field(&r)), (409, "spec.route".to_string()), "{q}: {}", r.body);
    }
    // B on A's host (in a domain approved for both): 409 naming spec.host; outside B's domains 403.
    let r = deploy_as(&d, &b, "name=login&route=/app/login&host=api.shared.example", &hello);
    assert_eq!((r.status, error_field(&r)), (409, "spec.host".to_string()), "{}", r.body);
    for h in ["a.example", "www.a.example", "evil.com", "API.A.EXAMPLE"] {
        let r = deploy_as(&d, &b, &format!("name=login&route=/&host={h}"), &hello);
        assert_eq!((r.status, error_field(&r)), (403, "spec.host".to_string()), "{h}: {}", r.body);
        assert_eq!(r.json()["error"]["code"], "permission_denied");
    }
    assert_eq!(d.call_as(&b, "GET", "/v1/functions/login", None).status, 404, "a refused deploy leaves nothing");
    // What is B's to take: a prefix that only shares letters, and its own host.
    for q in ["name=apple&route=/apple", "name=own&route=/app/login&host=login.b.example"] {
        let r = deploy_as(&d, &b, q, &hello);
        assert_eq!(r.status, 201, "{q}: {}", r.body);
    }
    // Nor can B move a function of its own there with PATCH.
    for (spec, status, f) in [
        (json!({"route": "/app/login"}), 409, "spec.route"),
        (json!({"route": "/"}), 409, "spec.route"),
        (json!({"host": "api.shared.example"}), 409, "spec.host"),
        (json!({"host": "www.a.example"}), 403, "spec.host"),
    ] {
        let r = d.call_as(&b, "PATCH", "/v1/functions/apple", Some(json!({"spec": spec})));
        assert_eq!((r.status, error_field(&r)), (status, f.to_string()), "{spec}: {}", r.body);
    }
    let apple = d.call_as(&b, "GET", "/v1/functions/apple", None).json();
    assert_eq!((apple["spec"]["route"].as_str(), apple["spec"].get("host"), apple["generation"].as_i64()), (Some("/apple"), None, Some(1)));
    // A may nest its own routes.
    let r = deploy_as(&d, &a, "name=app-admin&route=/app/admin", &echo);
    assert_eq!(r.status, 201, "{}", r.body);
    // Concurrent deploys of overlapping prefixes by both projects: exactly one wins each time.
    for i in 0..4 {
        let (qa, qb) = (format!("name=race{i}&route=/race{i}"), format!("name=race{i}&route=/race{i}/x"));
        let (ra, rb) = std::thread::scope(|t| {
            let ha = t.spawn(|| deploy_as(&d, &a, &qa, &hello).status);
            let hb = t.spawn(|| deploy_as(&d, &b, &qb, &hello).status);
            (ha.join().expect("thread"), hb.join().expect("thread"))
        });
        let mut got = [ra, rb];
        got.sort();
        assert_eq!(got, [201, 409], "round {i}: a {ra}, b {rb}");
    }

    // B approves no domain and grants no host path to itself.
    for spec in [json!({"function_domains": ["a.example"]}), json!({"host_paths": {"any": "rw"}})] {
        let r = d.call_as(&b, "PATCH", "/v1/projects/b", Some(json!({"spec": spec})));
        assert_eq!((r.status, r.json()["error"]["code"].as_str()), (403, Some("permission_denied")), "{}", r.body);
    }
    assert_eq!(d.call("GET", "/v1/projects/b", None).json()["spec"]["function_domains"], json!(["b.example", "shared.example"]));
    // Bad input: 4xx JSON errors with code, message and field.
    for (q, status, f) in [
        ("name=x&route=app", 422, "spec.route"),
        ("name=x&route=/a/../b", 422, "spec.route"),
        ("name=x&route=/a%25b", 422, "spec.route"),
        ("name=x&host=bad_host", 422, "spec.host"),
        ("name=x&host=b.example:8080", 422, "spec.host"),
    ] {
        let r = deploy_as(&d, &b, q, &hello);
        assert_eq!((r.status, error_field(&r)), (status, f.to_string()), "{q}: {}", r.body);
    }
    for (spec, f) in [
        (json!({"function_domains": ["not a domain"]}), "spec.function_domains"),
        (json!({"host_paths": {"nope": "ro"}}), "spec.host_paths.nope"),
        (json!({"host_paths": {"nope": "rwx"}}), "spec"),
    ] {
        let r = d.call("PATCH", "/v1/projects/b", Some(json!({"spec": spec})));
        assert_eq!((r.status, error_field(&r)), (422, f.to_string()), "{spec}: {}", r.body);
    }

    // Every request of A's prefix and host reaches A: the body comes back from A's echo.
    let g = gateway(&d);
    let check_a = |g: &str| {
        let (status, body, path) = post_host(&format!("{g}/app/login"), "fn.example", "a-secret");
        assert_eq!((status, body.as_str(), path.as_str()), (200, "a-secret", "/app/login"), "A's /app serves /app/login");
        let (status, body, _) = post_host(&format!("{g}/app/login"), "API.shared.example:8080", "a-host-secret");
        assert_eq!((status, body.as_str()), (200, "a-host-secret"), "A's host serves its requests");
    };
    check_a(&g);
    let (status, body, _) = post_host(&format!("{g}/app/login"), "login.b.example", "to-b");
    assert_eq!((status, body.as_str()), (200, "hello from cloudlet\n"), "B's own host is B's");

    // Overlaps made before ownership was enforced (here written into the state as an old daemon
    // allowed them) keep loading, but the gateway gives A's requests to A, never to B.
    d.kill9();
    {
        let db = rusqlite::Connection::open(d.dir.join("cloudlet.db")).expect("db");
        let n =
            db.execute("UPDATE resources SET spec = json_set(spec, '$.route', '/app/login') WHERE kind = 'function' AND name = 'apple'", []).expect("update");
        let m = db
            .execute("UPDATE resources SET spec = json_set(spec, '$.host', 'api.shared.example') WHERE kind = 'function' AND name = 'own'", [])
            .expect("update");
        assert_eq!((n, m), (1, 1));
    }
    d.launch();
    let g = gateway(&d);
    check_a(&g);
    for name in ["apple", "own"] {
        let m = d.call_as(&b, "GET", &format!("/v1/functions/{name}/metrics"), None);
        assert_eq!(m.status, 200, "{}", m.body);
        assert_eq!(m.json()["invocations"]["ok"], 0, "B's {name} never received a request: {}", m.body);
    }
    assert!(!d.log().contains("panicked"));
}

#[test]
fn a_projects_flood_cannot_take_another_projects_share_of_the_function_pool() {
    // A pool of 8 instances: each of the two projects with functions may have 4 requests in flight.
    let cfg = tempfile::tempdir().expect("tmp");
    let path = cfg.path().join("config.toml");
    std::fs::write(&path, "[functions]\npool_instances = 8\n").expect("write");
    let d = Daemon::start_with(&["--gateway", "127.0.0.1:0", "--config", path.to_str().expect("utf-8")]);
    let (a, b) = two_tenants(&d);
    assert_eq!(deploy_as(&d, &a, "name=hello&route=/hello", &component("hello")).status, 201);
    let r = deploy_as(&d, &b, "name=spin&route=/spin&timeout_ms=2000&memory_mib=16&max_concurrency=8", &component("spin"));
    assert_eq!(r.status, 201, "{}", r.body);
    let g = gateway(&d);
    // b floods with as many slow requests as the whole pool has instances.
    let flood: Vec<_> = (0..8)
        .map(|_| {
            let url = format!("{g}/spin");
            std::thread::spawn(move || call(&url, None, None))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // a's function still gets an instance and answers.
    let (status, body, _) = call(&format!("{g}/hello"), None, None);
    assert_eq!((status, body.as_str()), (200, "hello from cloudlet\n"));
    // b got its share (4, cut off at their CPU budget) and was told the rest is busy.
    let outcomes: Vec<(u16, String)> = flood.into_iter().map(|h| h.join().expect("thread")).map(|(s, body, _)| (s, body)).collect();
    let busy = outcomes.iter().filter(|(s, body)| *s == 503 && body.contains("share of the site's function pool")).count();
    let timed_out = outcomes.iter().filter(|(s, _)| *s == 504).count();
    assert_eq!((busy, timed_out), (4, 4), "{outcomes:?}");
    // With the flood over, b's share is free again.
    assert_eq!(call(&format!("{g}/spin"), None, None).0, 504);
}
