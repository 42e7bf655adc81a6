//! API behaviour of the real daemon: errors, resources, auth, tenancy, audit, metrics, OpenAPI,
//! and recovery across restarts.

use crate::common;

use common::Daemon;
use serde_json::{Value, json};

struct Case {
    what: &'static str,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
}

fn case(what: &'static str, method: &'static str, path: &str, body: Option<&str>, status: u16, code: &'static str, field: Option<&'static str>) -> Case {
    Case {
        what,
        method,
        path: path.to_string(),
        headers: vec![("content-type", "application/json".into())],
        body: body.map(|b| b.as_bytes().to_vec()),
        status,
        code,
        field,
    }
}

#[test]
fn bad_requests_get_documented_json_errors_and_the_daemon_stays_up() {
    let d = Daemon::start();
    let tok_id = format!("tok-{}", "01JD5T3M9C7T4ZB3H2W6Y1Q8NA");
    let node = d.call("GET", "/v1/nodes", None).json()["items"][0]["name"].as_str().unwrap().to_string();
    let mut cases = vec![
        case("truncated JSON", "POST", "/v1/projects", Some("{"), 400, "bad_request", None),
        case("JSON array", "POST", "/v1/projects", Some("[]"), 400, "bad_request", None),
        case("trailing garbage", "POST", "/v1/projects", Some(r#"{"name":"a"} x"#), 400, "bad_request", None),
        case("unknown field", "POST", "/v1/projects", Some(r#"{"name":"a","zzz":1}"#), 400, "unknown_field", Some("zzz")),
        case("unknown spec field", "POST", "/v1/projects", Some(r#"{"name":"a","spec":{"nope":1}}"#), 400, "unknown_field", Some("spec.nope")),
        case("uppercase name", "POST", "/v1/projects", Some(r#"{"name":"A_b"}"#), 422, "invalid_argument", Some("name")),
        case("empty name", "POST", "/v1/projects", Some(r#"{"name":""}"#), 422, "invalid_argument", Some("name")),
        case("missing name", "POST", "/v1/projects", Some("{}"), 422, "invalid_argument", Some("name")),
        case("name of wrong type", "POST", "/v1/projects", Some(r#"{"name":5}"#), 400, "bad_request", Some("name")),
        case("duplicate name", "POST", "/v1/projects", Some(r#"{"name":"default"}"#), 409, "already_exists", Some("name")),
        case(
            "quota for a site kind",
            "POST",
            "/v1/projects",
            Some(r#"{"name":"q","spec":{"quotas":{"nodes":1}}}"#),
            422,
            "invalid_argument",
            Some("spec.quotas.nodes"),
        ),
        case("label value of wrong type", "POST", "/v1/projects", Some(r#"{"name":"l","labels":{"k":5}}"#), 400, "bad_request", Some("labels.k")),
        case("bad label key", "POST", "/v1/projects", Some(r#"{"name":"l","labels":{"bad key":"v"}}"#), 422, "invalid_argument", Some("labels.bad key")),
        case("name that is another kind's id", "GET", &format!("/v1/projects/{tok_id}"), None, 400, "invalid_id", Some("id")),
        case("id that is no name", "GET", "/v1/projects/Bad_Name", None, 400, "invalid_id", Some("id")),
        case("unknown project", "GET", "/v1/projects/nonexistent", None, 404, "not_found", None),
        case("delete system project", "DELETE", "/v1/projects/system", None, 409, "conflict", None),
        case("wrong method", "PUT", "/v1/projects", Some("{}"), 405, "method_not_allowed", None),
        case("unknown route", "GET", "/v1/nope", None, 404, "not_found", None),
        case("unknown role", "POST", "/v1/tokens", Some(r#"{"name":"t","spec":{"role":"root"}}"#), 422, "invalid_argument", Some("spec.role")),
        case("token without spec", "POST", "/v1/tokens", Some(r#"{"name":"t"}"#), 422, "invalid_argument", Some("spec")),
        case(
            "expiry in the past",
            "POST",
            "/v1/tokens",
            Some(r#"{"name":"t","spec":{"role":"member","expires_at":"2001-01-01T00:00:00Z"}}"#),
            422,
            "invalid_argument",
            Some("spec.expires_at"),
        ),
        case(
            "expiry not a time",
            "POST",
            "/v1/tokens",
            Some(r#"{"name":"t","spec":{"role":"member","expires_at":"soon"}}"#),
            400,
            "bad_request",
            Some("spec.expires_at"),
        ),
        case(
            "short password",
            "POST",
            "/v1/users",
            Some(r#"{"name":"u","spec":{"role":"member","password":"short"}}"#),
            422,
            "invalid_argument",
            Some("spec.password"),
        ),
        case("limit zero", "GET", "/v1/projects?limit=0", None, 422, "invalid_argument", Some("limit")),
        case("limit not a number", "GET", "/v1/projects?limit=abc", None, 400, "bad_request", None),
        case("unknown query parameter", "GET", "/v1/projects?bogus=1", None, 400, "bad_request", None),
        case("forged page token", "GET", "/v1/projects?page_token=%21%21", None, 400, "bad_request", Some("page_token")),
        case("unknown project scope", "GET", "/v1/tokens?project=nonexistent", None, 404, "not_found", None),
        case("garbage operation id", "GET", "/v1/operations/Op_Bad", None, 400, "invalid_id", Some("id")),
        case("audit limit too high", "GET", "/v1/audit?limit=5000", None, 400, "bad_request", Some("limit")),
        case("empty username", "POST", "/v1/auth/login", Some(r#"{"username":"","password":"x"}"#), 422, "invalid_argument", Some("username")),
        case("wrong password", "POST", "/v1/auth/login", Some(r#"{"username":"admin","password":"wrong-password"}"#), 401, "unauthenticated", None),
        case(
            "node spec of wrong type",
            "PATCH",
            &format!("/v1/nodes/{node}"),
            Some(r#"{"spec":{"schedulable":"yes"}}"#),
            422,
            "invalid_argument",
            Some("spec"),
        ),
    ];
    let mut c = case("stale If-Match", "PATCH", "/v1/projects/default", Some(r#"{"labels":{}}"#), 409, "conflict", None);
    c.headers.push(("if-match", "\"99\"".into()));
    cases.push(c);
    let mut c = case("If-Match not a generation", "PATCH", "/v1/projects/default", Some(r#"{"labels":{}}"#), 400, "bad_request", Some("If-Match"));
    c.headers.push(("if-match", "abc".into()));
    cases.push(c);
    let mut c = case("text body", "POST", "/v1/projects", Some(r#"{"name":"t"}"#), 415, "unsupported_media_type", None);
    c.headers = vec![("content-type", "text/plain".into())];
    cases.push(c);
    let mut c = case("no content type", "POST", "/v1/projects", Some(r#"{"name":"t"}"#), 415, "unsupported_media_type", None);
    c.headers.clear();
    cases.push(c);
    let mut c = case("bad Last-Event-ID", "GET", "/v1/events", None, 400, "bad_request", Some("Last-Event-ID"));
    c.headers = vec![("accept", "text/event-stream".into()), ("last-event-id", "abc".into())];
    cases.push(c);
    assert!(cases.len() >= 30, "{} cases", cases.len());

    // An oversized body is refused from its Content-Length, before it is read: the client sends
    // `Expect: 100-continue` as curl does for large bodies, and gets the 413 instead of a 100.
    let mut tcp = std::net::TcpStream::connect(&d.addr).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST /v1/projects HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        d.token,
        2 * 1024 * 1024
    );
    std::io::Write::write_all(&mut tcp, head.as_bytes()).unwrap();
    let mut resp = String::new();
    let _ = std::io::Read::read_to_string(&mut tcp, &mut resp);
    assert!(resp.starts_with("HTTP/1.1 413"), "oversized body: {resp}");
    assert!(resp.contains(r#""code":"payload_too_large""#), "oversized body: {resp}");

    let auth = format!("Bearer {}", d.token);
    for c in &cases {
        let mut h: Vec<(&str, &str)> = c.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        h.push(("authorization", &auth));
        let a = d.raw(c.method, &c.path, c.body.as_deref(), &h).unwrap_or_else(|| panic!("{}: connection failed", c.what));
        let v: Value = serde_json::from_str(&a.body).unwrap_or_else(|_| panic!("{}: not JSON: {}", c.what, a.body));
        assert_eq!(a.status, c.status, "{}: {}", c.what, a.body);
        assert_eq!(v["error"]["code"], c.code, "{}: {}", c.what, a.body);
        assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{}: no message", c.what);
        if let Some(f) = c.field {
            assert_eq!(v["error"]["field"], f, "{}: {}", c.what, a.body);
        }
        assert_eq!(d.raw("GET", "/healthz", None, &[]).map(|a| a.status), Some(200), "{}: daemon down", c.what);
    }
    // Unauthenticated and badly authenticated requests.
    for (what, h) in [
        ("no credentials", vec![]),
        ("garbage bearer", vec![("authorization", "Bearer nope")]),
        ("unknown token", vec![("authorization", "Bearer clt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")]),
        ("bad cookie", vec![("cookie", "cloudlet_session=forged")]),
    ] {
        let a = d.raw("GET", "/v1/projects", None, &h).expect("answer");
        assert_eq!(a.status, 401, "{what}");
        assert_eq!(a.json()["error"]["code"], "unauthenticated", "{what}");
    }
    // Nothing half-created by any of the refused requests.
    let names: Vec<String> =
        d.call("GET", "/v1/projects", None).json()["items"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, vec!["default", "system"]);
    assert!(!d.log().contains("panicked"), "a handler panicked:\n{}", d.log());
}

#[test]
fn resources_have_generations_pages_labels_and_long_deletes() {
    let d = Daemon::start();
    let r = d.call("POST", "/v1/projects", Some(json!({"name": "acme", "labels": {"tier": "gold"}, "spec": {"description": "Acme"}})));
    assert_eq!(r.status, 201, "{}", r.body);
    let p = r.json();
    let id = p["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("proj-") && id.len() == 31, "{id}");
    assert_eq!(r.header("location"), Some(format!("/v1/projects/{id}").as_str()));
    // The reconciler makes the project Ready and creates its directory.
    let dir = d.dir.join("projects").join(&id);
    d.wait_for(20, "project Ready", || (d.call("GET", "/v1/projects/acme", None).json()["status"]["phase"] == "Ready" && dir.is_dir()).then_some(()));
    let g = d.call("GET", &format!("/v1/projects/{id}"), None);
    assert_eq!(g.header("etag"), Some("\"1\""));
    // If-Match: current generation succeeds, then the old one is stale.
    let u = d
        .raw(
            "PATCH",
            "/v1/projects/acme",
            Some(br#"{"spec":{"description":"Acme Corp"}}"#),
            &[("authorization", &format!("Bearer {}", d.token)), ("content-type", "application/json"), ("if-match", "\"1\"")],
        )
        .unwrap();
    assert_eq!(u.status, 200, "{}", u.body);
    assert_eq!(u.json()["generation"], 2);
    assert_eq!(u.json()["spec"]["description"], "Acme Corp");
    assert_eq!(u.json()["labels"]["tier"], "gold");
    let stale = d
        .raw(
            "PATCH",
            "/v1/projects/acme",
            Some(br#"{"labels":{}}"#),
            &[("authorization", &format!("Bearer {}", d.token)), ("content-type", "application/json"), ("if-match", "\"1\"")],
        )
        .unwrap();
    assert_eq!(stale.status, 409);
    // Pagination and label filter.
    for n in 0..5 {
        assert_eq!(d.call("POST", "/v1/projects", Some(json!({"name": format!("p{n}"), "labels": {"batch": "x"}}))).status, 201);
    }
    let page1 = d.call("GET", "/v1/projects?limit=3", None).json();
    assert_eq!(page1["items"].as_array().unwrap().len(), 3);
    let tok = page1["next_page_token"].as_str().unwrap();
    let page2 = d.call("GET", &format!("/v1/projects?limit=3&page_token={tok}"), None).json();
    let all: Vec<String> =
        [&page1, &page2].iter().flat_map(|p| p["items"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap().to_string())).collect();
    assert_eq!(all.len(), 6);
    let labelled = d.call("GET", "/v1/projects?label=batch=x", None).json();
    assert_eq!(labelled["items"].as_array().unwrap().len(), 5);
    // Deleting a project is a long action with an operation, and removes its tokens and files.
    assert_eq!(d.call("POST", "/v1/tokens?project=acme", Some(json!({"name": "ci", "spec": {"role": "member"}}))).status, 201);
    let del = d.call("DELETE", "/v1/projects/acme", None);
    assert_eq!(del.status, 202, "{}", del.body);
    let op_id = del.json()["id"].as_str().unwrap().to_string();
    assert_eq!(del.header("location"), Some(format!("/v1/operations/{op_id}").as_str()));
    let op = d.wait_operation(&op_id);
    assert_eq!(op["status"]["phase"], "Succeeded", "{op}");
    assert_eq!(op["status"]["progress"], 100);
    assert_eq!(d.call("GET", "/v1/projects/acme", None).status, 404);
    assert!(!dir.exists(), "project directory left behind");
}

#[test]
fn tenants_are_isolated_by_project_and_role() {
    let d = Daemon::start();
    assert_eq!(d.call("POST", "/v1/projects", Some(json!({"name": "acme"}))).status, 201);
    assert_eq!(d.call("POST", "/v1/projects", Some(json!({"name": "globex"}))).status, 201);
    let mk = |project: &str, name: &str, role: &str| {
        let r = d.call("POST", &format!("/v1/tokens?project={project}"), Some(json!({"name": name, "spec": {"role": role}})));
        assert_eq!(r.status, 201, "{}", r.body);
        r.json()["secret"].as_str().unwrap().to_string()
    };
    let acme_admin = mk("acme", "admin", "admin");
    let acme_member = mk("acme", "dev", "member");
    let acme_viewer = mk("acme", "ro", "viewer");
    let globex_admin = mk("globex", "admin", "admin");
    // A tenant sees only its own project.
    let l = d.call_as(&acme_member, "GET", "/v1/projects", None).json();
    let names: Vec<&str> = l["items"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["acme"]);
    assert_eq!(d.call_as(&acme_member, "GET", "/v1/projects/globex", None).status, 404);
    assert_eq!(d.call_as(&acme_admin, "GET", "/v1/tokens?project=globex", None).status, 403);
    assert_eq!(d.call_as(&acme_admin, "POST", "/v1/projects", Some(json!({"name": "evil"}))).status, 403);
    assert_eq!(d.call_as(&acme_admin, "GET", "/v1/nodes", None).status, 403);
    // Roles: members and viewers cannot manage tokens; admins manage their own project's only.
    assert_eq!(d.call_as(&acme_member, "GET", "/v1/tokens", None).status, 403);
    assert_eq!(d.call_as(&acme_viewer, "POST", "/v1/tokens", Some(json!({"name": "x", "spec": {"role": "viewer"}}))).status, 403);
    let acme_tokens = d.call_as(&acme_admin, "GET", "/v1/tokens", None).json();
    assert_eq!(acme_tokens["items"].as_array().unwrap().len(), 3);
    let globex_id = d.call_as(&globex_admin, "GET", "/v1/tokens/admin", None).json()["id"].as_str().unwrap().to_string();
    assert_eq!(d.call_as(&acme_admin, "GET", &format!("/v1/tokens/{globex_id}"), None).status, 404);
    assert_eq!(d.call_as(&acme_admin, "DELETE", &format!("/v1/tokens/{globex_id}"), None).status, 404);
    // Events and audit are per project.
    let ev = d.call_as(&acme_viewer, "GET", "/v1/events", None).json();
    assert!(ev["items"].as_array().unwrap().iter().all(|e| e["project"] == "acme"), "{ev}");
    assert!(ev["items"].as_array().unwrap().iter().any(|e| e["kind"] == "token"));
    let au = d.call_as(&acme_admin, "GET", "/v1/audit", None).json();
    assert!(au["items"].as_array().unwrap().iter().all(|a| a["project"] == "acme"), "{au}");
    // A revoked token stops working at once.
    assert_eq!(d.call_as(&acme_admin, "DELETE", "/v1/tokens/dev", None).status, 204);
    assert_eq!(d.call_as(&acme_member, "GET", "/v1/projects", None).status, 401);
    // Quotas.
    let q = d.call("PATCH", "/v1/projects/globex", Some(json!({"spec": {"quotas": {"tokens": 1}}})));
    assert_eq!(q.status, 200, "{}", q.body);
    let over = d.call_as(&globex_admin, "POST", "/v1/tokens", Some(json!({"name": "second", "spec": {"role": "viewer"}})));
    assert_eq!(over.status, 422, "{}", over.body);
    assert_eq!(over.json()["error"]["code"], "quota_exceeded");
    assert_eq!(over.json()["error"]["field"], "quotas.tokens");
}

#[test]
fn console_sessions_cookies_and_audit_without_secrets() {
    let d = Daemon::start();
    let pw = d.admin_password();
    let body = json!({"username": "admin", "password": pw}).to_string();
    let a = d.raw("POST", "/v1/auth/login", Some(body.as_bytes()), &[("content-type", "application/json")]).unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    let set = a.header("set-cookie").unwrap().to_string();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    let cookie = set.split(';').next().unwrap().to_string();
    let who = d.raw("GET", "/v1/auth/whoami", None, &[("cookie", &cookie)]).unwrap().json();
    assert_eq!(who["actor"], "user:admin@system");
    assert_eq!(who["site_admin"], true);
    // Cookie writes must be JSON (CSRF guard).
    let form = d.raw("POST", "/v1/projects", Some(b"name=x"), &[("cookie", &cookie), ("content-type", "application/x-www-form-urlencoded")]).unwrap();
    assert_eq!(form.status, 403, "{}", form.body);
    let ok = d
        .raw("POST", "/v1/tokens", Some(br#"{"name":"from-console","spec":{"role":"viewer"}}"#), &[("cookie", &cookie), ("content-type", "application/json")])
        .unwrap();
    assert_eq!(ok.status, 201, "{}", ok.body);
    let secret = ok.json()["secret"].as_str().unwrap().to_string();
    // The audit log has the write, with actor and target, and no secret anywhere.
    let au = d.call("GET", "/v1/audit", None);
    let rec = au.json()["items"].as_array().unwrap().iter().find(|r| r["path"] == "/v1/tokens" && r["method"] == "POST").cloned().unwrap();
    assert_eq!(rec["actor"], "user:admin@system");
    assert_eq!(rec["status"], 201);
    assert!(rec["target"].as_str().unwrap().starts_with("tok-"));
    assert!(!au.body.contains(&secret) && !au.body.contains(&pw));
    let login = au.json()["items"].as_array().unwrap().iter().find(|r| r["path"] == "/v1/auth/login").cloned().unwrap();
    assert_eq!((login["actor"].as_str(), login["status"].as_u64()), (Some("user:admin@system"), Some(200)));
    // Logout ends the session.
    let out = d.raw("POST", "/v1/auth/logout", None, &[("cookie", &cookie), ("x-requested-with", "fetch")]).unwrap();
    assert_eq!(out.status, 204);
    assert_eq!(d.raw("GET", "/v1/auth/whoami", None, &[("cookie", &cookie)]).unwrap().status, 401);
    // Secrets never reach the logs or the database in clear text.
    let log = d.log();
    assert!(!log.contains(&secret) && !log.contains(&pw) && !log.contains(&d.token), "a secret leaked into the log");
    let db = std::fs::read(d.dir.join("cloudlet.db")).unwrap_or_default();
    let wal = std::fs::read(d.dir.join("cloudlet.db-wal")).unwrap_or_default();
    for s in [&secret, &pw, &d.token] {
        let needle = s.as_bytes();
        assert!(!db.windows(needle.len()).any(|w| w == needle) && !wal.windows(needle.len()).any(|w| w == needle), "a secret is stored in clear");
    }
}

#[test]
fn health_metrics_node_heartbeat_and_openapi() {
    let d = Daemon::start();
    assert_eq!(d.raw("GET", "/healthz", None, &[]).unwrap().status, 200);
    assert_eq!(d.raw("GET", "/metrics", None, &[]).unwrap().status, 401);
    // The local node registered itself and keeps its heartbeat current.
    let node = d.wait_for(20, "node Ready", || {
        let n = d.call("GET", "/v1/nodes", None).json()["items"][0].clone();
        (n["status"]["phase"] == "Ready").then_some(n)
    });
    assert!(node["status"]["capacity"]["cpus"].as_u64().unwrap() >= 1);
    assert!(node["status"]["probe"]["features"]["kvm"]["detail"].is_string());
    let first = node["status"]["heartbeat_at"].as_str().unwrap().to_string();
    d.wait_for(20, "a newer heartbeat", || {
        let n = d.call("GET", "/v1/nodes", None).json()["items"][0].clone();
        (n["status"]["heartbeat_at"].as_str().unwrap() > first.as_str()).then_some(())
    });
    let m = d.call("GET", "/metrics", None);
    assert_eq!(m.status, 200);
    assert!(m.body.contains("cloudlet_http_requests_total{route=\"/v1/nodes\",method=\"GET\",status=\"200\"}"), "{}", m.body);
    assert!(m.body.contains("cloudlet_resources{kind=\"node\"} 1"), "{}", m.body);
    assert!(m.body.contains("cloudlet_reconcile_total{kind=\"node\"}"));
    assert!(m.body.contains("cloudlet_http_request_duration_seconds_bucket"));
    let site = d.call("GET", "/v1/site", None).json();
    assert_eq!(site["counts"]["projects"], 2);
    // Every documented route exists, and the document names every route of the daemon.
    assert_eq!(d.raw("GET", "/v1/openapi.json", None, &[]).unwrap().status, 401);
    let doc = d.call("GET", "/v1/openapi.json", None).json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for want in [
        "/v1/projects",
        "/v1/projects/{id}",
        "/v1/tokens",
        "/v1/tokens/{id}",
        "/v1/users",
        "/v1/users/{id}",
        "/v1/nodes",
        "/v1/nodes/{id}",
        "/v1/operations",
        "/v1/operations/{id}",
        "/v1/events",
        "/v1/audit",
        "/v1/site",
        "/v1/auth/login",
        "/v1/auth/logout",
        "/v1/auth/whoami",
        "/v1/openapi.json",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(paths.contains_key(want), "OpenAPI lacks {want}");
    }
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let concrete = path.replace("{id}", "default");
            let a = d.raw(&method.to_uppercase(), &concrete, None, &[]).unwrap();
            let body = a.body.clone();
            assert_ne!(a.status, 405, "{method} {path} is documented but not routed");
            assert!(!(a.status == 404 && body.contains("no route")), "{method} {path} is documented but not routed");
        }
    }
}

#[test]
fn restart_recovers_state_without_duplicates() {
    let mut d = Daemon::start();
    assert_eq!(d.call("POST", "/v1/projects", Some(json!({"name": "acme"}))).status, 201);
    let acme = d.call("GET", "/v1/projects/acme", None).json();
    let dir = d.dir.join("projects").join(acme["id"].as_str().unwrap());
    d.wait_for(20, "project dir", || dir.is_dir().then_some(()));
    let token = d.token.clone();
    assert!(d.terminate(), "graceful shutdown failed:\n{}", d.log());
    // Simulate a host that lost the project's host state while the daemon was down.
    std::fs::remove_dir_all(&dir).unwrap();
    d.launch();
    assert_eq!(d.token, token, "the first start ran twice");
    d.wait_for(20, "project dir recreated", || dir.is_dir().then_some(()));
    let nodes = d.call("GET", "/v1/nodes", None).json();
    assert_eq!(nodes["items"].as_array().unwrap().len(), 1, "duplicate node after restart");
    let projects = d.call("GET", "/v1/projects", None).json();
    assert_eq!(projects["items"].as_array().unwrap().len(), 3);
    let users = d.call("GET", "/v1/users", None).json();
    assert_eq!(users["items"].as_array().unwrap().len(), 1);
    // kill -9, then start again: still one of everything.
    d.kill9();
    d.launch();
    assert_eq!(d.call("GET", "/v1/nodes", None).json()["items"].as_array().unwrap().len(), 1);
    assert_eq!(d.call("GET", "/v1/projects", None).json()["items"].as_array().unwrap().len(), 3);
}

#[test]
fn reconcile_failures_are_reported_retried_with_back_off_and_recover() {
    let d = Daemon::start();
    // Break the host: the projects directory becomes a file, so the reconciler cannot create
    // the new project's directory.
    let projects = d.dir.join("projects");
    let aside = d.dir.join("projects.aside");
    std::fs::rename(&projects, &aside).unwrap();
    std::fs::write(&projects, b"not a directory").unwrap();
    assert_eq!(d.call("POST", "/v1/projects", Some(json!({"name": "flaky"}))).status, 201);
    let failed = d.wait_for(20, "a Reconciled=False condition", || {
        let p = d.call("GET", "/v1/projects/flaky", None).json();
        let c = p["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "Reconciled")?.clone();
        (c["status"] == "False").then_some(c)
    });
    assert!(failed["message"].as_str().unwrap().contains("creating"), "{failed}");
    let m = d.call("GET", "/metrics", None).body;
    let errors: f64 =
        m.lines().find(|l| l.starts_with("cloudlet_reconcile_errors_total{kind=\"project\"}")).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0.0);
    assert!(errors >= 1.0, "{m}");
    // Repair the host: the retry with back-off converges without any new request.
    std::fs::remove_file(&projects).unwrap();
    std::fs::rename(&aside, &projects).unwrap();
    let p = d.wait_for(30, "recovery", || {
        let p = d.call("GET", "/v1/projects/flaky", None).json();
        (p["status"]["phase"] == "Ready").then_some(p)
    });
    let c = p["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Reconciled").unwrap().clone();
    assert_eq!(c["status"], "True", "{p}");
    assert!(d.dir.join("projects").join(p["id"].as_str().unwrap()).is_dir());
}
