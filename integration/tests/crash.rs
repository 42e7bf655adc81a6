//! `kill -9` during a burst of writes: the database stays intact and every acknowledged write is
//! present after a restart, with its event (no half-visible objects).

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Daemon;
use serde_json::json;

#[test]
fn kill9_during_a_write_burst_loses_no_acknowledged_write() {
    let mut d = Daemon::start();
    let mut acked_total = 0;
    for round in 0..3 {
        let addr = d.addr.clone();
        let token = d.token.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let (stop, acked, addr, token) = (stop.clone(), acked.clone(), addr.clone(), token.clone());
                std::thread::spawn(move || {
                    let agent: ureq::Agent =
                        ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(5))).build().into();
                    let mut i = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let name = format!("r{round}-w{w}-{i}");
                        i += 1;
                        let body = json!({"name": name, "labels": {"round": round.to_string()}}).to_string();
                        let r = agent
                            .post(&format!("http://{addr}/v1/projects"))
                            .header("authorization", &format!("Bearer {token}"))
                            .header("content-type", "application/json")
                            .send(&body);
                        match r {
                            Ok(resp) if resp.status().as_u16() == 201 => {
                                let v: serde_json::Value = serde_json::from_reader(resp.into_body().into_reader()).unwrap();
                                acked.lock().unwrap().push((name, v["id"].as_str().unwrap().to_string()));
                            }
                            _ => {}
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(700 + 300 * round as u64));
        d.kill9();
        stop.store(true, Ordering::SeqCst);
        for w in writers {
            w.join().unwrap();
        }
        let acked = acked.lock().unwrap().clone();
        assert!(!acked.is_empty(), "no write was acknowledged before the kill");
        acked_total += acked.len();

        // The database opens and passes integrity_check before the daemon touches it again.
        let db = cloudlet::state::Db::open(&d.dir.join("cloudlet.db")).expect("open after kill -9");
        assert_eq!(db.integrity_check().unwrap(), Ok(()));
        drop(db);

        d.launch();
        let listed = d.call("GET", &format!("/v1/projects?label=round={round}"), None).json();
        let names: Vec<&str> = listed["items"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        for (name, _) in &acked {
            assert!(names.contains(&name.as_str()), "acknowledged project {name} lost after kill -9");
        }
        // Every stored project has its created event (written in the same transaction).
        let mut cursor = 0;
        let mut created_ids = std::collections::HashSet::new();
        loop {
            let page = d.call("GET", &format!("/v1/events?after={cursor}&limit=1000"), None).json();
            let items = page["items"].as_array().unwrap().clone();
            if items.is_empty() {
                break;
            }
            for e in &items {
                if e["type"] == "created" {
                    created_ids.insert(e["resource_id"].as_str().unwrap().to_string());
                }
            }
            cursor = page["next_cursor"].as_i64().unwrap();
        }
        for p in listed["items"].as_array().unwrap() {
            assert!(created_ids.contains(p["id"].as_str().unwrap()), "project {} has no created event", p["name"]);
        }
    }
    assert!(acked_total > 10, "too few writes to mean anything: {acked_total}");
}
