//! The event stream: a client that disconnects and reconnects with `Last-Event-ID` receives every
//! event exactly once, in order.

use crate::common;

use std::io::{BufRead, BufReader};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Daemon;
use serde_json::{Value, json};

/// One parsed SSE message.
#[derive(Debug, Clone)]
struct Msg {
    id: Option<i64>,
    event: String,
    data: Value,
}

/// Open a stream and read messages until `stop(msgs)` says so or `secs` pass.
fn read_stream(d: &Daemon, last_id: Option<i64>, secs: u64, mut stop: impl FnMut(&[Msg]) -> bool) -> Vec<Msg> {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(secs))).build().into();
    let mut req = agent.get(&d.url("/v1/events")).header("authorization", &format!("Bearer {}", d.token)).header("accept", "text/event-stream");
    if let Some(id) = last_id {
        req = req.header("last-event-id", &id.to_string());
    }
    let resp = req.call().expect("open stream");
    assert_eq!(resp.status().as_u16(), 200);
    let mut reader = BufReader::new(resp.into_body().into_reader());
    let mut msgs = Vec::new();
    let (mut id, mut event, mut data) = (None, String::from("message"), String::new());
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut line = String::new();
    while Instant::now() < deadline {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            if !data.is_empty() {
                msgs.push(Msg { id, event: event.clone(), data: serde_json::from_str(&data).unwrap_or(Value::Null) });
                if stop(&msgs) {
                    break;
                }
            }
            (id, event, data) = (None, "message".into(), String::new());
        } else if let Some(v) = l.strip_prefix("id:") {
            id = v.trim().parse().ok();
        } else if let Some(v) = l.strip_prefix("event:") {
            event = v.trim().to_string();
        } else if let Some(v) = l.strip_prefix("data:") {
            data.push_str(v.trim_start());
        }
    }
    msgs
}

/// A `created` event of one of the writer's tokens (`t0`..`t59`).
fn is_test_token(m: &Msg) -> bool {
    m.data["kind"] == "token" && m.data["type"] == "created" && m.data["name"].as_str().is_some_and(|n| n.starts_with('t') && n[1..].parse::<u32>().is_ok())
}

#[test]
fn reconnecting_with_last_event_id_misses_nothing() {
    let d = Arc::new(Daemon::start());
    // A writer creates tokens the whole time, across the disconnect.
    let created = Arc::new(Mutex::new(Vec::<String>::new()));
    let writer = {
        let (d, created) = (d.clone(), created.clone());
        std::thread::spawn(move || {
            for i in 0..60 {
                let r = d.call("POST", "/v1/tokens", Some(json!({"name": format!("t{i}"), "spec": {"role": "viewer"}})));
                assert_eq!(r.status, 201, "{}", r.body);
                created.lock().unwrap().push(r.json()["id"].as_str().unwrap().to_string());
                std::thread::sleep(Duration::from_millis(15));
            }
        })
    };
    // First connection: take about 10 events, then drop the connection mid-stream.
    let first = read_stream(&d, Some(0), 30, |m| m.iter().filter(|x| x.data["kind"] == "token").count() >= 10);
    let last = first.last().and_then(|m| m.id).expect("an id");
    std::thread::sleep(Duration::from_millis(300)); // events keep committing while disconnected
    // Second connection resumes after the last id it saw, until every created token arrived.
    let created_in_first = first.iter().filter(|x| is_test_token(x)).count();
    let second = read_stream(&d, Some(last), 60, |m| created_in_first + m.iter().filter(|x| is_test_token(x)).count() >= 60);
    writer.join().unwrap();
    let all: Vec<Msg> = first.iter().chain(second.iter()).cloned().collect();
    let ids: Vec<i64> = all.iter().filter_map(|m| m.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "cursors not strictly increasing: {ids:?}");
    // Exactly the stored events, none missing, none repeated.
    let stored = d.call("GET", "/v1/events?after=0&limit=1000", None).json();
    let stored_ids: Vec<i64> = stored["items"].as_array().unwrap().iter().map(|e| e["cursor"].as_i64().unwrap()).collect();
    let max_seen = *ids.last().unwrap();
    let expected: Vec<i64> = stored_ids.into_iter().filter(|c| *c <= max_seen).collect();
    assert_eq!(ids, expected);
    // Every created token's event was delivered.
    for id in created.lock().unwrap().iter() {
        assert!(all.iter().any(|m| m.data["resource_id"] == *id && m.data["type"] == "created"), "missed the event of {id}");
    }
    // Named events carry their type.
    assert!(all.iter().all(|m| m.event == m.data["type"].as_str().unwrap_or("")));
}

#[test]
fn event_list_pages_by_cursor() {
    let d = Daemon::start();
    for i in 0..5 {
        assert_eq!(d.call("POST", "/v1/projects", Some(json!({"name": format!("p{i}")}))).status, 201);
    }
    let page = d.call("GET", "/v1/events?after=0&limit=3", None).json();
    assert_eq!(page["items"].as_array().unwrap().len(), 3);
    let next = page["next_cursor"].as_i64().unwrap();
    let rest = d.call("GET", &format!("/v1/events?after={next}"), None).json();
    assert!(rest["items"].as_array().unwrap().iter().all(|e| e["cursor"].as_i64().unwrap() > next));
    let created: Vec<_> = rest["items"].as_array().unwrap().iter().filter(|e| e["kind"] == "project" && e["type"] == "created").collect();
    assert!(created.len() >= 3);
}
