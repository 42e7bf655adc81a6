//! The portal and the site's join: real `cloudlet portal` and `cloudlet serve` processes on
//! loopback. A good token joins once and the new certificate authenticates over mutual TLS;
//! every bad token is refused with a clear error and leaves nothing half-registered on either
//! side; a removed site's certificate stops being accepted; the portal's state survives kill -9.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Daemon, bin, cli};

/// A running portal on a temporary data dir.
pub(crate) struct Portal {
    pub(crate) dir: PathBuf,
    _tmp: tempfile::TempDir,
    child: Option<Child>,
    args: Vec<String>,
    pub(crate) http: String,
    pub(crate) link: String,
    pub(crate) token: String,
}

impl Portal {
    pub(crate) fn start() -> Portal {
        Portal::start_with(&[])
    }

    /// A portal started with extra flags (kept for restarts).
    pub(crate) fn start_with(args: &[&str]) -> Portal {
        let tmp = tempfile::tempdir().expect("tempdir");
        let args = args.iter().map(|a| a.to_string()).collect();
        let mut p = Portal { dir: tmp.path().to_path_buf(), _tmp: tmp, child: None, args, http: String::new(), link: String::new(), token: String::new() };
        p.launch();
        p
    }

    pub(crate) fn launch(&mut self) {
        for f in ["http.addr", "link.addr"] {
            let _ = std::fs::remove_file(self.dir.join(f));
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("portal.log")).expect("log");
        // A restart keeps its addresses (what the joined sites know).
        let or_any = |a: &str| if a.is_empty() { "127.0.0.1:0".to_string() } else { a.to_string() };
        let child = Command::new(bin())
            .args(["portal", "--http", &or_any(&self.http), "--link", &or_any(&self.link), "--data-dir"])
            .arg(&self.dir)
            .args(&self.args)
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn cloudlet portal");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).ok().map(|s| s.trim().to_string());
            if let (Some(h), Some(l)) = (read("http.addr"), read("link.addr")) {
                self.http = h;
                self.link = l;
                break;
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("portal exited early ({st}):\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "portal did not start in 30 s:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        self.token = std::fs::read_to_string(self.dir.join("admin.token")).expect("admin.token").trim().to_string();
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("portal.log")).unwrap_or_default()
    }

    pub(crate) fn link_url(&self) -> String {
        format!("https://{}", self.link)
    }

    pub(crate) fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// An admin API call: (status, JSON body or null).
    pub(crate) fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(&self.token, method, path, body)
    }

    pub(crate) fn call_as(&self, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_full(token, method, path, body, &[])
    }

    /// An admin call with extra headers: (status, JSON body or null).
    pub(crate) fn call_as_with(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        self.call_full(&self.token, method, path, None, headers)
    }

    fn call_full(&self, token: &str, method: &str, path: &str, body: Option<Value>, headers: &[(&str, &str)]) -> (u16, Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(30))).build().into();
        let mut b =
            ureq::http::Request::builder().method(method).uri(format!("http://{}{}", self.http, path)).header("authorization", format!("Bearer {token}"));
        if body.is_some() {
            b = b.header("content-type", "application/json");
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(body.map(|v| serde_json::to_vec(&v).expect("json")).unwrap_or_default()).expect("request");
        let resp = agent.run(req).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let mut text = String::new();
        let _ = resp.into_body().into_reader().read_to_string(&mut text);
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub(crate) fn token_for(&self, site: &str, seconds: u64) -> String {
        let (st, b) = self.call("POST", "/v1/join-tokens", Some(json!({"name": site, "spec": {"expires_in_seconds": seconds}})));
        assert_eq!(st, 201, "{b}");
        b["token"].as_str().expect("token").to_string()
    }

    pub(crate) fn phase(&self, site: &str) -> Option<String> {
        let (st, b) = self.call("GET", &format!("/v1/sites/{site}"), None);
        (st == 200).then(|| b["status"]["phase"].as_str().unwrap_or("").to_string())
    }
}

impl Drop for Portal {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The site's join call: (status, body).
pub(crate) fn join(site: &Daemon, url: &str, token: &str) -> (u16, Value) {
    let a = site.call("POST", "/v1/site/join", Some(json!({"portal": url, "token": token})));
    let body = serde_json::from_str(&a.body).unwrap_or(Value::Null);
    (a.status, body)
}

fn no_identity(site: &Daemon) {
    assert_eq!(site.call("GET", "/v1/site/portal", None).status, 404, "the site holds no portal identity");
    assert!(!site.dir.join("portal/identity.json").exists());
}

fn tampered(token: &str) -> String {
    let last = token.chars().last().expect("token");
    let flipped = if last == '0' { '1' } else { '0' };
    format!("{}{flipped}", &token[..token.len() - 1])
}

/// `openssl`-free check of a PEM file's mode.
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn a_site_joins_with_a_good_token_and_every_bad_one_is_refused_leaving_nothing_half_registered() {
    let portal = joins_and_refusals(&[]);
    assert!(portal.dir.join("portal.db").exists());
}

#[test]
fn joins_and_refusals_on_postgresql() {
    if !crate::common::privileged(crate::common::is_root(), "root (PostgreSQL run as its own user)") {
        return;
    }
    let pg = crate::postgres::Postgres::start();
    let portal = joins_and_refusals(&["--database", &pg.url()]);
    assert!(!portal.dir.join("portal.db").exists(), "the state went to PostgreSQL, not to SQLite");
}

/// The join scenario on a portal started with `args` (its store); returns the portal.
fn joins_and_refusals(args: &[&str]) -> Portal {
    let portal = Portal::start_with(args);
    let other = Portal::start();
    let site = Daemon::start();
    let url = portal.link_url();

    // The admin API wants its token and checks its input.
    assert_eq!(portal.call_as("wrong", "GET", "/v1/sites", None).0, 401);
    let (st, b) = portal.call("POST", "/v1/join-tokens", Some(json!({"name": "Bad_Name"})));
    assert_eq!((st, b["error"]["field"].as_str()), (422, Some("name")), "{b}");
    let (st, b) = portal.call("POST", "/v1/join-tokens", Some(json!({"name": "plant-a", "spec": {"expires_in_seconds": 0}})));
    assert_eq!((st, b["error"]["field"].as_str()), (422, Some("spec.expires_in_seconds")), "{b}");
    let (st, b) = portal.call("POST", "/v1/join-tokens", Some(json!({"name": "plant-a", "color": "red"})));
    assert_eq!(st, 400, "unknown fields are refused: {b}");

    let good = portal.token_for("plant-a", 3600);
    assert_eq!(portal.phase("plant-a").as_deref(), Some("Pending"));
    assert!(!portal.log().contains(good.rsplit('.').next().expect("secret")), "the portal never logs a token's secret");

    // Malformed input: 400 naming the field, before any traffic.
    let (st, b) = join(&site, &url, "CLJ1.nope");
    assert_eq!((st, b["error"]["field"].as_str()), (400, Some("token")), "{b}");
    let (st, b) = join(&site, &format!("http://{}", portal.link), &good);
    assert_eq!((st, b["error"]["field"].as_str()), (400, Some("portal")), "{b}");
    // Nothing listens there: 422 naming the portal.
    let (st, b) = join(&site, "https://127.0.0.1:1", &good);
    assert_eq!((st, b["error"]["code"].as_str(), b["error"]["field"].as_str()), (422, Some("portal_unreachable"), Some("portal")), "{b}");
    // A token of another portal: its CA is not in this portal's chain, so nothing is sent.
    let foreign = other.token_for("plant-a", 3600);
    let (st, b) = join(&site, &url, &foreign);
    assert_eq!((st, b["error"]["code"].as_str()), (422, Some("portal_ca_mismatch")), "{b}");
    // A tampered secret, and an expired token: the portal refuses.
    let (st, b) = join(&site, &url, &tampered(&good));
    assert_eq!((st, b["error"]["code"].as_str()), (422, Some("join_refused")), "{b}");
    assert!(b["error"]["message"].as_str().unwrap_or("").contains("token_invalid"), "{b}");
    let short = portal.token_for("plant-b", 1);
    std::thread::sleep(Duration::from_millis(2100));
    let (st, b) = join(&site, &url, &short);
    assert_eq!(st, 422, "{b}");
    assert!(b["error"]["message"].as_str().unwrap_or("").contains("token_expired"), "{b}");
    // None of that registered anything, on either side.
    no_identity(&site);
    assert_eq!(portal.phase("plant-a").as_deref(), Some("Pending"));
    assert_eq!(portal.phase("plant-b"), None, "an expired token makes nothing pending");
    let (_, sites) = portal.call("GET", "/v1/sites", None);
    assert!(sites["items"].as_array().expect("items").iter().all(|s| s["status"]["phase"] == "Pending"), "{sites}");

    // The good token, through the CLI.
    let remote = format!("http://{}", site.addr);
    let (code, out, err) = cli(&["--remote", &remote, "--token", &site.token, "-o", "json", "site", "join", &url, "--join-token", &good], None);
    assert_eq!(code, 0, "site join failed: {out} {err}\nsite log:\n{}\nportal log:\n{}", site.log(), portal.log());
    let id: Value = serde_json::from_str(&out).expect("identity JSON");
    assert_eq!((id["site"].as_str(), id["portal"].as_str()), (Some("plant-a"), Some(url.as_str())), "{id}");
    assert_eq!(portal.phase("plant-a").as_deref(), Some("Disconnected"), "joined, with no link open yet");
    assert_eq!(site.call("GET", "/v1/site/portal", None).json()["site"], "plant-a");
    for f in ["site.key", "site.pem", "ca.pem", "identity.json"] {
        assert_eq!(mode(&site.dir.join("portal").join(f)), 0o600, "{f}");
    }
    let key = std::fs::read_to_string(site.dir.join("portal/site.key")).expect("site.key");
    assert!(!site.log().contains(key.lines().nth(1).unwrap_or("-")), "the site never logs its key");

    // Used once: again from this site (already joined) and as another site's token (used).
    let (st, b) = join(&site, &url, &good);
    assert_eq!((st, b["error"]["code"].as_str()), (409, Some("already_joined")), "{b}");
    let second = Daemon::start();
    let (st, b) = join(&second, &url, &good);
    assert_eq!((st, b["error"]["code"].as_str()), (422, Some("join_refused")), "{b}");
    assert!(b["error"]["message"].as_str().unwrap_or("").contains("token_used"), "{b}");
    no_identity(&second);
    // A token for a joined name is refused when made.
    let (st, _) = portal.call("POST", "/v1/join-tokens", Some(json!({"name": "plant-a"})));
    assert_eq!(st, 409);

    // The portal's state survives kill -9, and the certificate keeps authenticating.
    let mut portal = portal;
    portal.kill9();
    portal.launch();
    assert_eq!(portal.phase("plant-a").as_deref(), Some("Disconnected"));
    let check = |d: &Daemon| d.call("GET", "/v1/site/portal?check=true", None).json()["check"].clone();
    assert_eq!(check(&site), json!({"ok": true, "site": "plant-a"}), "mutual TLS with the new certificate");

    // Removing the site revokes its certificate.
    assert_eq!(portal.call("DELETE", "/v1/sites/plant-a", None).0, 204);
    let c = check(&site);
    assert_eq!(c["ok"], false, "{c}");
    assert!(c["error"].as_str().unwrap_or("").contains("certificate_revoked"), "{c}");
    assert_eq!(portal.phase("plant-a"), None);
    portal
}

/// Read `url`'s streamed body (with the portal admin token) on a thread until a line holds
/// `needle`; true when it did within `secs`.
fn stream_until(url: String, token: String, needle: &'static str, secs: u64) -> std::sync::mpsc::Receiver<bool> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(secs))).build().into();
        let Ok(resp) = agent.get(&url).header("authorization", format!("Bearer {token}")).header("accept", "text/event-stream").call() else {
            let _ = tx.send(false);
            return;
        };
        let mut reader = std::io::BufReader::new(resp.into_body().into_reader());
        let mut line = String::new();
        loop {
            line.clear();
            match std::io::BufRead::read_line(&mut reader, &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) if line.contains(needle) => {
                    let _ = tx.send(true);
                    return;
                }
                Ok(_) => {}
            }
        }
        let _ = tx.send(false);
    });
    rx
}

#[test]
fn a_joined_site_dials_out_and_the_portal_reaches_its_api_and_event_stream_through_the_link() {
    let portal = Portal::start();
    let mut site = Daemon::start();
    let token = portal.token_for("plant-c", 3600);
    let (st, b) = join(&site, &portal.link_url(), &token);
    assert_eq!(st, 200, "{b}");
    let connected = |p: &Portal| p.phase("plant-c").as_deref() == Some("Connected");
    site.wait_for(30, "the site's link to come up", || connected(&portal).then_some(()));

    // The site's API through the portal, as a site admin named after the portal user.
    let (st, info) = portal.call("GET", "/v1/sites/plant-c/api/site", None);
    assert_eq!(st, 200, "{info}");
    assert_eq!(info["node_name"], site.call("GET", "/v1/site", None).json()["node_name"], "the answer is the site's own");
    let (st, made) = portal.call("POST", "/v1/sites/plant-c/api/projects", Some(json!({"name": "via-portal"})));
    assert_eq!(st, 201, "{made}");
    assert_eq!(site.call("GET", "/v1/projects/via-portal", None).status, 200, "the change reached the site's state");
    let audit = site.call("GET", "/v1/audit?limit=20", None).json();
    assert!(
        audit["items"].as_array().expect("items").iter().any(|r| r["actor"] == "portal:admin" && r["method"] == "POST"),
        "audited on the site as the portal user: {audit}"
    );
    // The site's own errors pass through; the portal's credentials never do.
    let (st, b) = portal.call("POST", "/v1/sites/plant-c/api/projects", Some(json!({"name": "Bad Name"})));
    assert_eq!((st, b["error"]["field"].as_str()), (422, Some("name")), "{b}");
    assert_eq!(portal.call_as("wrong", "GET", "/v1/sites/plant-c/api/site", None).0, 401);
    assert_eq!(portal.call("GET", "/v1/sites/nowhere/api/site", None).0, 404);

    // The CLI reaches the site the same way: `cloudlet --portal URL --site NAME <noun> <verb>`.
    let via = format!("http://{}", portal.http);
    let (code, out, err) = cli(&["--portal", &via, "--site", "plant-c", "--token", &portal.token, "-o", "json", "project", "ls"], None);
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("via-portal"), "the site's projects, through the portal: {out}");
    let (code, out, err) = cli(&["--portal", &via, "--site", "plant-c", "--token", &portal.token, "project", "create", "cli-via-portal"], None);
    assert_eq!(code, 0, "{out} {err}");
    assert_eq!(site.call("GET", "/v1/projects/cli-via-portal", None).status, 200, "the CLI's change reached the site");
    let (code, _, err) = cli(&["--portal", &via, "--site", "nowhere", "--token", &portal.token, "project", "ls"], None);
    assert!(code != 0 && err.contains("not found"), "an unknown site is named: {err}");
    let (code, _, err) = cli(&["--portal", &via, "--token", &portal.token, "project", "ls"], None);
    assert!(code != 0 && err.contains("--site"), "--portal needs --site: {err}");

    // The inventory the portal keeps: what the site reports of itself, read over the link.
    let inv = site.wait_for(20, "the portal to read the site's inventory", || {
        let (_, b) = portal.call("GET", "/v1/sites/plant-c", None);
        b["status"]["inventory"].is_object().then(|| b["status"].clone())
    });
    let own = site.call("GET", "/v1/site", None).json();
    assert_eq!((&inv["inventory"]["version"], &inv["inventory"]["node_name"]), (&own["version"], &own["node_name"]), "{inv}");
    assert_eq!(inv["inventory"]["nodes"].as_array().map(Vec::len), Some(1), "{inv}");
    assert!(inv["inventory"]["capacity"]["cpus"].as_u64().unwrap_or(0) >= 1, "{inv}");
    assert!(inv["inventory"]["capacity"]["memory_bytes"].as_u64().unwrap_or(0) > 0, "{inv}");
    assert!(inv["inventory"]["link_latency_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{inv}");
    assert!(inv["inventory"]["counts"].is_object() && inv["last_seen"].is_string(), "{inv}");

    // An event stream (SSE) follows through the tunnel.
    let got = stream_until(format!("http://{}/v1/sites/plant-c/api/events?stream=true", portal.http), portal.token.clone(), "after-stream", 30);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(site.call("POST", "/v1/projects", Some(json!({"name": "after-stream"}))).status, 201);
    assert_eq!(got.recv_timeout(Duration::from_secs(30)), Ok(true), "the event reached the portal's client through the link");

    // The site goes away: the portal says so and answers 503; it comes back on its own.
    site.kill9();
    site.wait_for(40, "the portal to see the site disconnected", || (portal.phase("plant-c").as_deref() == Some("Disconnected")).then_some(()));
    let (st, b) = portal.call("GET", "/v1/sites/plant-c/api/site", None);
    assert_eq!((st, b["error"]["code"].as_str()), (503, Some("site_disconnected")), "{b}");
    let (_, b) = portal.call("GET", "/v1/sites/plant-c", None);
    assert!(b["status"]["inventory"]["version"].is_string() && b["status"]["last_seen"].is_string(), "a disconnected site keeps what it last reported: {b}");
    site.launch();
    site.wait_for(30, "the link to come back after the site's restart", || connected(&portal).then_some(()));
    assert_eq!(portal.call("GET", "/v1/sites/plant-c/api/projects/via-portal", None).0, 200);

    // Removing the site ends its live link, and the link it dials again is refused.
    assert_eq!(portal.call("DELETE", "/v1/sites/plant-c", None).0, 204);
    assert_eq!(portal.call("GET", "/v1/sites/plant-c/api/site", None).0, 404);
    site.wait_for(30, "the portal to refuse the removed site's link", || {
        portal.log().contains("refused a link without the certificate of a joined site").then_some(())
    });
    assert_eq!(portal.phase("plant-c"), None);

    // Each change of the site is a fleet event, in order.
    let (_, ev) = portal.call("GET", "/v1/events", None);
    let mine: Vec<&str> = ev["items"].as_array().expect("items").iter().filter(|e| e["site"] == "plant-c").filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(mine, ["joined", "connected", "disconnected", "connected", "removed", "disconnected"], "{ev}");
}

#[test]
fn a_site_started_with_a_portal_and_a_token_joins_by_itself() {
    let portal = Portal::start();
    let token = portal.token_for("plant-e", 3600);
    let url = portal.link_url();
    let site = Daemon::start_with(&["--portal", &url, "--join-token", &token]);
    site.wait_for(30, "the site to join and link by itself", || (portal.phase("plant-e").as_deref() == Some("Connected")).then_some(()));
    assert_eq!(site.call("GET", "/v1/site/portal", None).json()["site"], "plant-e");
    let secret = token.rsplit('.').next().expect("secret");
    assert!(!site.log().contains(secret), "the daemon never logs the join token");
}

/// An nftables table that drops every packet to or from a loopback TCP port (both directions of
/// a link), removed on drop.
pub(crate) struct Blackhole(String);

impl Blackhole {
    pub(crate) fn port(port: u16) -> Blackhole {
        let table = format!("cltest_link_{port}");
        let rules = format!(
            "table inet {table} {{\n chain out {{\n  type filter hook output priority -10; policy accept;\n  tcp dport {port} drop\n  tcp sport {port} drop\n }}\n}}\n"
        );
        let path = std::env::temp_dir().join(format!("{table}.nft"));
        std::fs::write(&path, rules).expect("write the rules");
        let ok = Command::new("nft").arg("-f").arg(&path).status().map(|s| s.success()).unwrap_or(false);
        let _ = std::fs::remove_file(&path);
        assert!(ok, "nft could not add the drop rules");
        Blackhole(table)
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        let _ = Command::new("nft").args(["delete", "table", "inet", &self.0]).status();
    }
}

#[test]
fn a_silently_dead_link_is_found_by_its_pings_and_the_site_dials_again() {
    if !crate::common::privileged(crate::common::is_root(), "root (nftables rules that black-hole the link's port)") {
        return;
    }
    let portal = Portal::start();
    let site = Daemon::start();
    let token = portal.token_for("plant-d", 3600);
    assert_eq!(join(&site, &portal.link_url(), &token).0, 200);
    site.wait_for(30, "the link to come up", || (portal.phase("plant-d").as_deref() == Some("Connected")).then_some(()));

    // Every packet of the link vanishes: no FIN, no RST, as when a middlebox dies.
    let port: u16 = portal.link.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).expect("link port");
    let cut = Blackhole::port(port);
    let t0 = Instant::now();
    site.wait_for(40, "the portal to find the dead link", || (portal.phase("plant-d").as_deref() == Some("Disconnected")).then_some(()));
    let found = t0.elapsed();
    println!("dead link found by the portal after {:.1} s (bound: 25 s)", found.as_secs_f64());
    assert_eq!(portal.call("GET", "/v1/sites/plant-d/api/site", None).0, 503);

    // The path heals: the site's back-off brings the link back by itself.
    drop(cut);
    site.wait_for(90, "the link to come back", || (portal.phase("plant-d").as_deref() == Some("Connected")).then_some(()));
    assert_eq!(portal.call("GET", "/v1/sites/plant-d/api/site", None).0, 200);
}

#[test]
fn a_short_lived_certificate_is_renewed_by_the_site_and_the_renewed_one_opens_the_link() {
    let portal = Portal::start_with(&["--site-cert-lifetime", "24"]);
    let mut site = Daemon::start();
    let (st, b) = join(&site, &portal.link_url(), &portal.token_for("plant-r", 3600));
    assert_eq!(st, 200, "{b}");
    let not_after = |p: &Portal| p.call("GET", "/v1/sites/plant-r", None).1["status"]["certificate_not_after"].as_str().unwrap_or("").to_string();
    let first = not_after(&portal);
    site.wait_for(30, "the link to come up", || (portal.phase("plant-r").as_deref() == Some("Connected")).then_some(()));

    // At 2/3 of its 24 s (less a jitter of at most 1/15), the site asks for the next certificate.
    let renewed = site.wait_for(40, "the site to renew its certificate", || {
        let now = not_after(&portal);
        (now != first && !now.is_empty()).then_some(now)
    });
    site.wait_for(10, "the site to hold the renewed certificate", || {
        let mine = site.call("GET", "/v1/site/portal", None).json();
        let same = chrono::DateTime::parse_from_rfc3339(mine["not_after"].as_str().unwrap_or("")).ok() == chrono::DateTime::parse_from_rfc3339(&renewed).ok();
        same.then_some(())
    });
    assert!(site.log().contains("renewed the portal certificate"), "{}", site.log());

    // Once the first certificate has expired only the renewed one can open a link: restart.
    let end = chrono::DateTime::parse_from_rfc3339(&first).expect("not_after");
    while chrono::Utc::now() < end + chrono::Duration::seconds(1) {
        std::thread::sleep(Duration::from_millis(200));
    }
    site.kill9();
    site.launch();
    site.wait_for(30, "the link to come back with the renewed certificate", || (portal.phase("plant-r").as_deref() == Some("Connected")).then_some(()));
    let check = site.call("GET", "/v1/site/portal?check=true", None).json();
    assert_eq!(check["check"], json!({"ok": true, "site": "plant-r"}), "{check}");
}

#[test]
fn a_join_whose_answer_was_lost_is_answered_again_for_the_same_key_and_for_no_other() {
    let portal = Portal::start();
    let mut site = Daemon::start();
    let token = portal.token_for("plant-l", 3600);
    assert_eq!(join(&site, &portal.link_url(), &token).0, 200);
    let dir = site.dir.join("portal");
    let first = std::fs::read_to_string(dir.join("site.pem")).expect("site.pem");

    // The answer never reached the site's disk: only its key (written before the request) is left.
    site.kill9();
    for f in ["identity.json", "site.pem", "ca.pem"] {
        std::fs::remove_file(dir.join(f)).expect("remove");
    }
    site.launch();
    no_identity(&site);
    let (st, b) = join(&site, &portal.link_url(), &token);
    assert_eq!((st, b["site"].as_str()), (200, Some("plant-l")), "the same key gets its answer again: {b}");
    assert_eq!(std::fs::read_to_string(dir.join("site.pem")).expect("site.pem"), first, "the same certificate, not a second one");
    site.wait_for(30, "the link to come up", || (portal.phase("plant-l").as_deref() == Some("Connected")).then_some(()));

    // Any other key with that token is still refused.
    let other = Daemon::start();
    let (st, b) = join(&other, &portal.link_url(), &token);
    assert_eq!(st, 422, "{b}");
    assert!(b["error"]["message"].as_str().unwrap_or("").contains("token_used"), "{b}");
    no_identity(&other);
}

#[test]
fn the_admin_api_answers_over_https_with_a_certificate_of_the_portal_ca() {
    let portal = Portal::start_with(&["--https", "127.0.0.1:0"]);
    let addr = crate::common::wait_secs(30, "https.addr", || std::fs::read_to_string(portal.dir.join("https.addr")).ok().filter(|s| !s.trim().is_empty()));
    let url = format!("https://{}", addr.trim());
    let ca = portal.dir.join("ca/ca.pem");
    let curl = |extra: &[&str]| {
        let out = Command::new("curl")
            .args(["-sS", "-H", &format!("authorization: Bearer {}", portal.token)])
            .args(extra)
            .arg(format!("{url}/v1/sites"))
            .output()
            .expect("curl (Debian curl)");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (ok, body) = curl(&["--cacert", ca.to_str().expect("utf-8")]);
    assert!(ok && body.contains("\"items\""), "the sites, over TLS: {body}");
    assert!(!curl(&[]).0, "a client that does not trust the portal CA refuses the certificate");
    // The CLI reaches it the same way (the portal answers for the unknown site).
    let (code, _, err) =
        cli(&["--portal", &url, "--ca-cert", ca.to_str().expect("utf-8"), "--site", "nowhere", "--token", &portal.token, "project", "ls"], None);
    assert!(code != 0 && err.contains("not found"), "{err}");
}
