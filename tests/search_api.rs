//! The search API as ops use it, against a real `sluice up` with a users file: cursor paging
//! past 10,000 hits, histogram, facets, context, live tail, export (NDJSON, CSV, gzip), the
//! CLI's `--all`, and access control — a dev token reads no prod record by any endpoint or
//! query trick. No doubles: real processes on loopback.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const ADMIN: &str = ADMIN_TOKEN;
const DEV: &str = DEV_TOKEN;
const PROD_LINES: usize = 8_000;
const DEV_LINES: usize = 4_000;

struct Api {
    base: String,
    client: reqwest::blocking::Client,
}

impl Api {
    fn get(&self, path: &str, token: Option<&str>, query: &[(&str, &str)]) -> (u16, String) {
        let mut request = self
            .client
            .get(format!("{}{path}", self.base))
            .query(query)
            .timeout(Duration::from_secs(60));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let response = request.send().unwrap();
        let status = response.status().as_u16();
        (status, response.text().unwrap())
    }

    fn json(&self, path: &str, token: &str, query: &[(&str, &str)]) -> Value {
        let (status, body) = self.get(path, Some(token), query);
        assert_eq!(status, 200, "{path} {query:?}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    fn namespaces_of(&self, hits: &Value) -> HashSet<String> {
        hits.as_array()
            .unwrap()
            .iter()
            .map(|h| h["namespace"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// Opens a live tail; a thread forwards each hit's JSON.
fn tail(api: &Api, token: &str, q: &str) -> mpsc::Receiver<Value> {
    let response = api
        .client
        .get(format!("{}/api/v1/tail", api.base))
        .query(&[("q", q)])
        .bearer_auth(token)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut event = String::new();
        for line in BufReader::new(response).lines() {
            let Ok(line) = line else { return };
            if let Some(name) = line.strip_prefix("event: ") {
                event = name.to_owned();
            } else if let Some(data) = line.strip_prefix("data: ")
                && event == "hit"
                && tx.send(serde_json::from_str(data).unwrap()).is_err()
            {
                return;
            }
        }
    });
    rx
}

fn collect_for(rx: &mpsc::Receiver<Value>, want: usize, limit: Duration) -> Vec<Value> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    while got.len() < want {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(v) => got.push(v),
            Err(_) => break,
        }
    }
    // Anything extra would be a duplicate or a leak; give it a moment to show up.
    while let Ok(v) = rx.recv_timeout(Duration::from_millis(1500)) {
        got.push(v);
    }
    got
}

#[test]
fn every_read_path_pages_counts_streams_and_respects_the_callers_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let (prod, dev, watch) = two_namespaces(dir.path(), PROD_LINES, DEV_LINES);
    let users = write_users(dir.path());
    let (_up, base) =
        start_up_with(&dir.path().join("data"), &[watch], &["--users".as_ref(), users.as_os_str()]);
    let api = Api { base, client: reqwest::blocking::Client::new() };
    let all = PROD_LINES + DEV_LINES;
    wait_until(Duration::from_secs(60), "every line is searchable", || {
        api.json("/api/v1/search", ADMIN, &[("q", ""), ("limit", "0")])["total"] == all as u64
    });

    // No token, a wrong token, a malformed header: 401 on every path.
    for path in
        ["/api/v1/search", "/api/v1/histogram", "/api/v1/facets", "/api/v1/tail", "/api/v1/export"]
    {
        assert_eq!(api.get(path, None, &[("q", "")]).0, 401, "{path}");
        assert_eq!(api.get(path, Some("not-a-known-token-000"), &[("q", "")]).0, 401, "{path}");
    }
    let response = api
        .client
        .get(format!("{}/api/v1/search", api.base))
        .header("Authorization", format!("Basic {ADMIN}"))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");

    // Cursor paging past the 10,000-hit page cap: every record once, newest first.
    let mut ids = HashSet::new();
    let mut cursor: Option<String> = None;
    let mut last_ts = String::from("9999");
    loop {
        let mut q = vec![("q", ""), ("limit", "5000")];
        if let Some(c) = &cursor {
            q.push(("cursor", c));
        }
        let page = api.json("/api/v1/search", ADMIN, &q);
        for hit in page["hits"].as_array().unwrap() {
            let ts = hit["ts"].as_str().unwrap().to_owned();
            assert!(ts <= last_ts, "newest first across pages");
            last_ts = ts;
            assert!(ids.insert(hit["id"].as_str().unwrap().to_owned()), "a hit came twice");
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(ids.len(), all);
    let page = api.json("/api/v1/search", ADMIN, &[("q", "支付超时"), ("limit", "5")]);
    assert_eq!(page["total"], (all / 10) as u64);
    assert!(page["touched"]["partitions"].as_u64().unwrap() >= 1);
    assert!(page["touched"]["watermark"].as_str().unwrap() > "2026-12-01");
    let hl = &page["hits"][0]["highlights"][0];
    let message: Vec<char> = page["hits"][0]["message"].as_str().unwrap().chars().collect();
    let marked: String = message
        [hl[0].as_u64().unwrap() as usize..hl[1].as_u64().unwrap() as usize]
        .iter()
        .collect();
    assert_eq!(marked, "支付超时");

    // Histogram split by level adds up to the total; facets count namespaces.
    let h = api.json("/api/v1/histogram", ADMIN, &[("q", "")]);
    assert_eq!(h["total"], all as u64);
    let by_level: u64 = h["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["counts"]["error"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(by_level, (all / 10) as u64);
    let f = api.json("/api/v1/facets", ADMIN, &[("q", ""), ("fields", "namespace,level")]);
    assert_eq!(
        f["facets"][0]["values"][0],
        serde_json::json!({"value": "prod", "count": PROD_LINES})
    );
    assert_eq!(
        f["facets"][0]["values"][1],
        serde_json::json!({"value": "dev", "count": DEV_LINES})
    );

    // The dev token sees dev only, whatever it asks.
    for q in [
        "",
        "namespace:prod",
        "namespace:prod OR namespace:dev",
        "prod OR dev",
        "namespace:*",
        "NOT namespace:dev",
        "pod:pay-*",
        "支付超时",
    ] {
        let page = api.json("/api/v1/search", DEV, &[("q", q), ("limit", "10000")]);
        let seen = api.namespaces_of(&page["hits"]);
        assert!(seen.iter().all(|n| n == "dev"), "{q}: {seen:?}");
        assert!(page["total"].as_u64().unwrap() <= DEV_LINES as u64, "{q}");
        let h = api.json("/api/v1/histogram", DEV, &[("q", q)]);
        assert_eq!(h["total"], page["total"], "histogram of {q}");
        let f = api.json("/api/v1/facets", DEV, &[("q", q), ("fields", "namespace")]);
        for v in f["facets"][0]["values"].as_array().unwrap() {
            assert_eq!(v["value"], "dev", "facets of {q}");
        }
    }
    assert_eq!(
        api.json("/api/v1/search", DEV, &[("q", "namespace:prod"), ("limit", "0")])["total"],
        0
    );
    assert_eq!(
        api.json("/api/v1/search", DEV, &[("q", ""), ("limit", "0")])["total"],
        DEV_LINES as u64
    );

    // Context: a prod id is "not found" to dev, exactly like an id that does not exist.
    let prod_hit = &api.json(
        "/api/v1/search",
        ADMIN,
        &[("q", "namespace:prod line 4321"), ("limit", "1")],
    )["hits"][0];
    let prod_id = prod_hit["id"].as_str().unwrap();
    assert_eq!(api.get("/api/v1/context", Some(DEV), &[("id", prod_id)]).0, 404);
    let by_id = api.json("/api/v1/search", DEV, &[("q", &format!("id:{prod_id}"))]);
    assert_eq!(by_id["total"], 0);
    let c = api.json("/api/v1/context", ADMIN, &[("id", prod_id), ("before", "3"), ("after", "2")]);
    let lines = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|h| h["message"].as_str().unwrap().split(' ').nth(3).unwrap().to_owned())
            .collect()
    };
    assert_eq!(lines(&c["before"]), ["4318", "4319", "4320"]);
    assert_eq!(lines(&c["after"]), ["4322", "4323"]);
    let live_query = c["live_query"].as_str().unwrap().to_owned();
    let dev_hit =
        &api.json("/api/v1/search", DEV, &[("q", "line 9000"), ("limit", "1")])["hits"][0];
    let c = api.json(
        "/api/v1/context",
        DEV,
        &[("id", dev_hit["id"].as_str().unwrap()), ("before", "1")],
    );
    assert_eq!(lines(&c["before"]), ["8999"]);

    // Export: NDJSON for dev holds dev only, every line once; CSV gzip for admin holds all.
    let (status, body) = api.get("/api/v1/export", Some(DEV), &[("q", "")]);
    assert_eq!(status, 200);
    let exported: Vec<Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(exported.len(), DEV_LINES);
    assert!(exported.iter().all(|h| h["namespace"] == "dev"));
    let response = api
        .client
        .get(format!("{}/api/v1/export", api.base))
        .query(&[("q", ""), ("format", "csv"), ("gzip", "true")])
        .bearer_auth(ADMIN)
        .send()
        .unwrap();
    assert_eq!(response.headers()["content-type"], "application/gzip");
    assert_eq!(response.headers()["x-sluice-total"], all.to_string().as_str());
    let mut text = String::new();
    flate2::read::GzDecoder::new(response).read_to_string(&mut text).unwrap();
    let mut rows = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(rows.headers().unwrap().get(10), Some("message"));
    let ids: HashSet<String> = rows.records().map(|r| r.unwrap()[9].to_owned()).collect();
    assert_eq!(ids.len(), all);

    // The CLI pages through everything too; piped, it prints no progress bar.
    let out = Command::new(sluice())
        .args([
            "search", "--server", &api.base, "--all", "--limit", "1500", "--format", "ndjson", "",
        ])
        .env("SLUICE_TOKEN", DEV)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), DEV_LINES);
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));

    // Live tail: dev follows everything it may see, admin follows prod's source from the
    // context view; new lines in both namespaces arrive once each, to the right follower.
    let dev_tail = tail(&api, DEV, "");
    let admin_tail = tail(&api, ADMIN, &live_query);
    std::thread::sleep(Duration::from_millis(500));
    append(&prod, &cri_lines("prod", 30, all, all));
    append(&dev, &cri_lines("dev", 20, all + 30, all));
    let dev_got = collect_for(&dev_tail, 20, Duration::from_secs(30));
    let admin_got = collect_for(&admin_tail, 30, Duration::from_secs(30));
    assert_eq!(dev_got.len(), 20, "dev tail");
    assert!(dev_got.iter().all(|h| h["namespace"] == "dev"));
    assert_eq!(admin_got.len(), 30, "admin tail of the prod source");
    assert!(admin_got.iter().all(|h| h["namespace"] == "prod"));
    let unique: HashSet<_> =
        admin_got.iter().map(|h| h["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(unique.len(), 30);
}
