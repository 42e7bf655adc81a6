//! The engine against the example components of `images/functions/` (built by its build.sh into
//! target/functions/).

use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};

use super::*;

fn component(name: &str) -> Vec<u8> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = root.join("target/functions").join(format!("{name}.wasm"));
    if !path.exists() {
        let ok = std::process::Command::new("bash").arg(root.join("images/functions/build.sh")).status().map(|s| s.success()).unwrap_or(false);
        assert!(ok, "building the example functions failed");
    }
    std::fs::read(&path).expect("component")
}

fn req(path: &str, body: &'static [u8]) -> hyper::Request<Full<Bytes>> {
    hyper::Request::builder()
        .uri(format!("http://fn.test{path}"))
        .header("host", "fn.test")
        .header("content-type", "text/x-test")
        .body(Full::new(Bytes::from_static(body)))
        .expect("request")
}

const LIMITS: Limits = Limits { memory_bytes: 64 << 20, timeout: Duration::from_millis(300) };

#[derive(Default)]
struct Collect(std::sync::Mutex<Vec<(Stream, String)>>);
impl LogSink for Collect {
    fn line(&self, s: Stream, t: &str) {
        self.0.lock().expect("lock").push((s, t.to_string()));
    }
}

fn inv(env: &[(&str, &str)], log: &Arc<Collect>) -> Invocation {
    Invocation {
        limits: LIMITS,
        env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        allowed_hosts: Arc::from(vec!["allowed.test".to_string()]),
        log: log.clone(),
        netns: None,
    }
}

async fn text(r: hyper::Response<HyperOutgoingBody>) -> (u16, String, hyper::HeaderMap) {
    let (parts, body) = r.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    (parts.status.as_u16(), String::from_utf8_lossy(&bytes).into_owned(), parts.headers)
}

#[test]
fn the_allow_list_matches_hosts_and_host_ports() {
    let h = Hooks {
        allowed: Arc::from(vec!["api.example".to_string(), "db.example:5432".to_string()]),
        log: Arc::new(Collect::default()),
        egress: Arc::default(),
        netns: None,
    };
    assert!(h.allows("api.example") && h.allows("API.example:8080") && h.allows("db.example:5432"));
    assert!(!h.allows("db.example:80") && !h.allows("evil.example") && !h.allows("api.example.evil") && !h.allows(""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_answer_fail_in_isolation_and_come_from_the_cache() {
    let dir = tempfile::tempdir().expect("tmp");
    let e = FunctionEngine::new(dir.path(), 8, 128 << 20).expect("engine");
    let log = Arc::new(Collect::default());
    let none = inv(&[], &log);
    let hello = e.load(&component("hello")).expect("hello loads");
    assert!(!hello.from_cache);
    assert!(hello.take_cold() && !hello.take_cold(), "the first request is the cold one");
    let (status, body, _) = text(e.invoke(&hello, req("/", b""), &none).await.expect("hello")).await;
    assert_eq!((status, body.as_str()), (200, "hello from cloudlet\n"));

    let echo = e.load(&component("echo")).expect("echo loads");
    let (_, body, headers) = text(e.invoke(&echo, req("/a/b?x=1", b"ping"), &none).await.expect("echo")).await;
    assert_eq!(body, "ping");
    assert!(log.0.lock().expect("lock").iter().any(|(s, t)| *s == Stream::Stdout && t == "echo GET /a/b?x=1 4 bytes"), "the guest's stdout reached the sink");
    assert_eq!(headers.get("x-echo-path").map(|v| v.as_bytes()), Some(&b"/a/b?x=1"[..]));
    assert_eq!(headers.get("content-type").map(|v| v.as_bytes()), Some(&b"text/x-test"[..]));

    let config = e.load(&component("config")).expect("config loads");
    let (_, body, _) = text(e.invoke(&config, req("/", b""), &inv(&[("GREETING", "hej")], &log)).await.expect("config")).await;
    assert!(body.starts_with("hej, world\n") && body.contains("GREETING=hej"), "{body}");

    // An endless loop is interrupted at its CPU budget; a memory hog fails; the others still serve.
    let spin = e.load(&component("spin")).expect("spin loads");
    let t = Instant::now();
    assert!(matches!(e.invoke(&spin, req("/", b""), &none).await, Err(FunctionError::Timeout(_))));
    assert!(t.elapsed() < Duration::from_secs(5), "interrupted in {:?}", t.elapsed());
    assert!(matches!(e.invoke(&spin, req("/?alloc=1", b""), &none).await, Err(FunctionError::Failed(_))));
    assert!(log.0.lock().expect("lock").iter().any(|(s, t)| *s == Stream::Stderr && t.starts_with("spin: allocating")), "stderr reached the sink");

    // Outbound requests: a host off the allow-list is denied before any connection is made.
    let fetch = e.load(&component("fetch")).expect("fetch loads");
    let (status, body, _) = text(e.invoke(&fetch, req("/?url=http://denied.test:9/x", b""), &none).await.expect("fetch")).await;
    assert_eq!(status, 502);
    assert!(body.contains("HttpRequestDenied"), "{body}");
    assert!(log.0.lock().expect("lock").iter().any(|(s, t)| *s == Stream::Host && t.contains("denied.test")));
    assert_eq!(text(e.invoke(&hello, req("/", b""), &none).await.expect("hello again")).await.0, 200);

    // Not a component, and a core module, are refused with the reason.
    assert!(matches!(e.load(b"hello"), Err(FunctionError::Invalid(_))));
    assert!(matches!(e.load(b"\0asm\x01\0\0\0"), Err(FunctionError::Invalid(_))));

    // A second engine (a restarted daemon) finds the compiled artifacts.
    let e2 = FunctionEngine::new(dir.path(), 8, 128 << 20).expect("engine");
    let again = e2.load(&component("hello")).expect("hello loads");
    assert!(again.from_cache, "the artifact came from the cache");
    assert_eq!(text(e2.invoke(&again, req("/", b""), &none).await.expect("cached hello")).await.0, 200);
}
