//! Serverless functions through the real daemon: deploy the example components, call them
//! through the gateway with an HTTP client, check bodies and headers; an endless loop answers 504
//! within its budget and a memory hog 502 while the others keep serving; an invalid component is
//! 422 at deploy and an unknown route 404; after a restart the functions answer again from the
//! artifact cache.

mod common;

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
    for (name, q) in [("hello", "name=hello&route=/hello"), ("echo", "name=echo&route=/echo"), ("config", "name=config&route=/config"), ("spin", "name=spin&route=/spin&timeout_ms=400&memory_mib=16&max_concurrency=1")] {
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
