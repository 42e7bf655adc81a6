//! The site's outbox to the portal, with real processes: events and audit records written while
//! the link is cut reach the portal once it heals, each exactly once and in order, although
//! the portal and then the site are killed with SIGKILL on the way; on PostgreSQL, the database
//! crashes and restarts on the way too.

use std::time::Instant;

use serde_json::{Value, json};

use crate::common::Daemon;
use crate::portal::{Blackhole, Portal, join};
use crate::postgres::Postgres;

/// Every record the portal holds of `site`'s `stream`: (seq, record), in the portal's order.
fn portal_records(portal: &Portal, site: &str, stream: &str) -> Vec<(i64, Value)> {
    let (mut out, mut after) = (Vec::new(), 0i64);
    loop {
        let (st, b) = portal.call("GET", &format!("/v1/sites/{site}/{stream}?after={after}&limit=1000"), None);
        assert_eq!(st, 200, "{b}");
        assert_eq!(b["gaps"], json!([]), "the portal saw no gap");
        let items = b["items"].as_array().expect("items").clone();
        if items.is_empty() {
            return out;
        }
        for i in items {
            after = i["seq"].as_i64().expect("seq");
            out.push((after, i["record"].clone()));
        }
    }
}

/// Every event of the site, oldest first.
fn site_events(site: &Daemon) -> Vec<Value> {
    let (mut out, mut after) = (Vec::new(), 0i64);
    loop {
        let b = site.call("GET", &format!("/v1/events?after={after}&limit=1000"), None).json();
        let items = b["items"].as_array().expect("items").clone();
        if items.is_empty() {
            return out;
        }
        after = b["next_cursor"].as_i64().expect("next_cursor");
        out.extend(items);
    }
}

/// Every audit record of the site, oldest first.
fn site_audit(site: &Daemon) -> Vec<Value> {
    let mut out = Vec::new();
    let mut before: Option<i64> = None;
    loop {
        let q = before.map(|b| format!("&before={b}")).unwrap_or_default();
        let b = site.call("GET", &format!("/v1/audit?limit=1000{q}"), None).json();
        let items = b["items"].as_array().expect("items").clone();
        if items.is_empty() {
            out.reverse();
            return out;
        }
        before = items.last().and_then(|i| i["id"].as_i64());
        out.extend(items);
    }
}

/// A `created` event of one of the tokens `o0`..`o1999` made while the link was cut.
fn is_cut_off_token(r: &Value) -> bool {
    r["kind"] == "token" && r["type"] == "created" && r["name"].as_str().is_some_and(|n| n.starts_with('o') && n[1..].parse::<u32>().is_ok())
}

/// The portal's position in `site`'s `stream`: (cursor, latest).
fn position(portal: &Portal, site: &str, stream: &str) -> (i64, i64) {
    let (_, b) = portal.call("GET", &format!("/v1/sites/{site}"), None);
    let s = &b["status"]["streams"][stream];
    (s["cursor"].as_i64().unwrap_or(0), s["latest"].as_i64().unwrap_or(0))
}

#[test]
fn records_written_while_cut_off_reach_the_portal_exactly_once_in_order_across_kill_9_of_both_ends() {
    if !crate::common::privileged(crate::common::is_root(), "root (nftables rules that cut the link's port)") {
        return;
    }
    exactly_once(None);
}

#[test]
fn the_same_on_postgresql_with_postgresql_crashed_and_restarted_during_the_drain() {
    if !crate::common::privileged(crate::common::is_root(), "root (nftables rules that cut the link's port; PostgreSQL run as its user)") {
        return;
    }
    exactly_once(Some(Postgres::start()));
}

/// The scenario, on the portal's SQLite store or on PostgreSQL (`pg`), which then also crashes
/// and restarts while the backlog drains.
fn exactly_once(mut pg: Option<Postgres>) {
    let url = pg.as_ref().map(Postgres::url);
    let args: Vec<&str> = url.as_deref().map(|u| vec!["--database", u]).unwrap_or_default();
    let mut portal = Portal::start_with(&args);
    let mut site = Daemon::start();
    assert_eq!(join(&site, &portal.link_url(), &portal.token_for("plant-o", 3600)).0, 200);
    site.wait_for(30, "the link to come up", || (portal.phase("plant-o").as_deref() == Some("Connected")).then_some(()));

    // Only the portal's own puller pulls (and so acknowledges) the outbox: not a caller of the
    // site, and not a portal user's call forwarded over the link.
    let a = site.call("GET", "/v1/site/outbox", None);
    assert_eq!((a.status, a.json()["error"]["code"].as_str().map(str::to_string)), (403, Some("permission_denied".into())), "{}", a.body);
    let (st, b) = portal.call("GET", "/v1/sites/plant-o/api/site/outbox?events=999999", None);
    assert_eq!((st, b["error"]["code"].as_str()), (403, Some("permission_denied")), "{b}");
    let (st, b) = portal.call_as_with("GET", "/v1/sites/plant-o/api/site/outbox?events=999999", &[("x-cloudlet-outbox-puller", "1")]);
    assert_eq!(st, 403, "the puller's header from a user is stripped: {b}");

    // While linked, a change reaches the portal at once (the pull is a long poll).
    assert_eq!(site.call("POST", "/v1/projects", Some(json!({"name": "before-cut"}))).status, 201);
    site.wait_for(15, "the event to reach the portal", || {
        portal_records(&portal, "plant-o", "events").iter().any(|(_, r)| r["name"] == "before-cut").then_some(())
    });

    // The link is cut; the site goes on working and writes 2,000 changes.
    let port: u16 = portal.link.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).expect("link port");
    let cut = Blackhole::port(port);
    for i in 0..2000 {
        let a = site.call("POST", "/v1/tokens", Some(json!({"name": format!("o{i}"), "spec": {"role": "viewer"}})));
        assert_eq!(a.status, 201, "{}", a.body);
    }
    let crossed = portal_records(&portal, "plant-o", "events").iter().filter(|(_, r)| is_cut_off_token(r)).count();
    assert_eq!(crossed, 0, "nothing crossed the cut");

    // The portal dies while cut off, the path heals, and the portal comes back.
    portal.kill9();
    drop(cut);
    portal.launch();
    // The site dials in and the drain begins (a page of 500 per pull): kill -9 the site as soon
    // as the first page is committed.
    let t0 = Instant::now();
    let start = position(&portal, "plant-o", "events").0;
    while position(&portal, "plant-o", "events").0 <= start {
        assert!(t0.elapsed().as_secs() < 90, "the drain did not begin in 90 s:\n{}", portal.log());
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    site.kill9();
    let (at_kill, latest) = position(&portal, "plant-o", "events");
    println!("site killed {:.1} s after the portal's restart, the portal at event {at_kill} of {latest}", t0.elapsed().as_secs_f64());
    if let Some(pg) = pg.as_mut() {
        pg.crash();
        site.launch();
        std::thread::sleep(std::time::Duration::from_secs(3));
        pg.launch();
        println!("PostgreSQL crashed and restarted");
    } else {
        site.launch();
    }

    // Everything arrives: the portal's streams end where the site's do.
    let want_events = site_events(&site);
    let want_audit = site_audit(&site);
    let last = |v: &[Value], key: &str| v.last().and_then(|x| x[key].as_i64()).unwrap_or(0);
    let (last_event, last_audit) = (last(&want_events, "cursor"), last(&want_audit, "id"));
    site.wait_for(90, "the backlog to drain to the portal", || {
        (position(&portal, "plant-o", "events").0 >= last_event && position(&portal, "plant-o", "audit").0 >= last_audit).then_some(())
    });

    // Exactly once and in order: the portal's sequence is the site's, record for record.
    let got = portal_records(&portal, "plant-o", "events");
    let want: Vec<(i64, Value)> =
        want_events.iter().filter(|e| e["cursor"].as_i64().unwrap_or(0) <= last_event).map(|e| (e["cursor"].as_i64().unwrap_or(0), e.clone())).collect();
    let got: Vec<(i64, Value)> = got.into_iter().filter(|(s, _)| *s <= last_event).collect();
    assert_eq!(got.len(), want.len(), "as many events at the portal as on the site");
    for ((gs, g), (ws, w)) in got.iter().zip(&want) {
        assert_eq!(gs, ws, "the same sequence numbers, in order");
        assert_eq!((&g["kind"], &g["name"], &g["type"]), (&w["kind"], &w["name"], &w["type"]), "event {gs}");
    }
    let tokens = got.iter().filter(|(_, r)| is_cut_off_token(r)).count();
    assert_eq!(tokens, 2000, "each of the 2,000 changes made while cut off is there once");
    let audit: Vec<i64> = portal_records(&portal, "plant-o", "audit").into_iter().map(|(s, _)| s).filter(|s| *s <= last_audit).collect();
    assert_eq!(audit, want_audit.iter().filter_map(|a| a["id"].as_i64()).collect::<Vec<_>>(), "every audit record once, in order");
    assert_eq!(portal.dir.join("portal.db").exists(), pg.is_none(), "the state is in the store asked for");
    let (_, b) = portal.call("GET", "/v1/sites/plant-o", None);
    assert_eq!((&b["status"]["streams"]["events"]["missing"], &b["status"]["streams"]["events"]["lost"]), (&json!(0), &json!(0)), "{b}");
}
