//! Hostile queries against a real `sluice up --users`, sent with a valid low-privilege token
//! (issue 31, items 1 and 4): nesting that overflowed the stack, a range open at both ends that
//! panicked inside tantivy, a histogram over the whole i64 range, malformed and unknown
//! parameters, a word longer than the index keeps. Each gets a 400 with `{"error": …}` naming
//! what is wrong, and `/metrics` (item 5) answers only admins and metrics users; the process stays up, the caller sees nothing of another namespace, and a
//! line written afterwards becomes searchable as usual.

mod common;

use std::io::{BufRead, Write};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// What is sent, as what, and what the error must say.
struct Case<'a> {
    what: &'a str,
    query: Vec<(&'a str, &'a str)>,
    says: &'a str,
}

fn get(base: &str, path: &str, token: &str, query: &[(&str, &str)]) -> (u16, Value) {
    let request = reqwest::blocking::Client::new().get(format!("{base}{path}")).query(query);
    answer(path, request.bearer_auth(token))
}

/// The `POST` form of a query path: the same parameters as a JSON object, or as a form.
fn post(base: &str, path: &str, token: &str, query: &[(&str, &str)], json: bool) -> (u16, Value) {
    let request = reqwest::blocking::Client::new().post(format!("{base}{path}"));
    let request = if json {
        let object: serde_json::Map<String, Value> =
            query.iter().map(|(k, v)| (k.to_string(), Value::from(*v))).collect();
        request.json(&object)
    } else {
        request.form(query)
    };
    answer(path, request.bearer_auth(token))
}

fn answer(path: &str, request: reqwest::blocking::RequestBuilder) -> (u16, Value) {
    let response = request.timeout(Duration::from_secs(60)).send().unwrap();
    let status = response.status().as_u16();
    let body = response.text().unwrap();
    let json = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("{path} {status}: not JSON ({e}): {body:.200}"));
    (status, json)
}

#[test]
fn hostile_queries_get_a_clear_400_and_the_pipeline_keeps_moving() {
    let dir = tempfile::tempdir().unwrap();
    let (_prod, dev_file, watch) = two_namespaces(dir.path(), 300, 200);
    let users = write_users(dir.path());
    let (mut up, base) =
        start_up_with(&dir.path().join("data"), &[watch], &["--users".as_ref(), users.as_os_str()]);
    wait_until(Duration::from_secs(60), "every line is searchable", || {
        get(&base, "/api/v1/search", ADMIN_TOKEN, &[("q", ""), ("limit", "0")]).1["total"] == 500
    });

    let deep_not = "NOT ".repeat(600) + "x";
    let deep_parens = "(".repeat(2000) + "x" + &")".repeat(2000);
    let long_word = "a".repeat(300);
    let read_paths = ["/api/v1/search", "/api/v1/histogram", "/api/v1/facets", "/api/v1/export"];
    let case = |what, query, says| Case { what, query, says };
    let cases = [
        case("600 NOTs", vec![("q", deep_not.as_str())], "more than 64 deep"),
        case("2,000 parentheses", vec![("q", &deep_parens)], "more than 64 deep"),
        case("a word over 255 bytes", vec![("q", &long_word)], "longer than 255 bytes"),
        case("an unknown parameter", vec![("q", "x"), ("limitt", "5")], "limitt"),
        case("a malformed parameter", vec![("q", "x"), ("force", "maybe")], "force"),
    ];
    for path in read_paths {
        for Case { what, query, says } in &cases {
            let (status, body) = get(&base, path, DEV_TOKEN, query);
            assert_eq!(status, 400, "{path} {what}: {body}");
            let error = body["error"].as_str().unwrap_or_default();
            assert!(error.contains(says), "{path} {what}: {error}");
        }
        assert!(up.is_running(), "after {path}");
    }
    // A query longer than a URL holds goes by POST, and is refused there with the limit; one
    // that fits a URL but not the limit is refused the same way by GET. (A GET whose request
    // line passes 64 KiB never reaches the API: hyper answers 414 itself.)
    let huge = "x".repeat(100_000);
    let long = "订单 ".repeat(3_000);
    for path in read_paths.iter().chain(&["/api/v1/tail"]) {
        for json in [true, false] {
            let (status, body) = post(&base, path, DEV_TOKEN, &[("q", &huge)], json);
            assert_eq!(status, 400, "{path} POST json={json}: {body}");
            let error = body["error"].as_str().unwrap_or_default();
            assert!(error.contains("100000 bytes long; at most 16384"), "{path}: {error}");
        }
        let (status, body) = get(&base, path, DEV_TOKEN, &[("q", &long)]);
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body["error"].as_str().unwrap_or_default().contains("at most 16384"), "{body}");
    }
    // No URL crate builds such a request line, so it goes over a bare socket.
    let mut socket = std::net::TcpStream::connect(base.trim_start_matches("http://")).unwrap();
    write!(socket, "GET /api/v1/search?q={huge} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut status_line = String::new();
    std::io::BufReader::new(socket).read_line(&mut status_line).unwrap();
    assert!(status_line.starts_with("HTTP/1.1 414"), "{status_line}");
    assert!(up.is_running());
    let (status, body) =
        post(&base, "/api/v1/search", DEV_TOKEN, &[("q", "x"), ("limt", "1")], true);
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("limt"), "{body}");
    let form = [("q", ""), ("limit", "0")];
    assert_eq!(post(&base, "/api/v1/search", DEV_TOKEN, &form, false).1["total"], 200);

    // The tail refuses the same queries before it starts streaming.
    for Case { what, query, says } in &cases[..3] {
        let (status, body) = get(&base, "/api/v1/tail", DEV_TOKEN, query);
        assert_eq!(status, 400, "tail {what}: {body}");
        assert!(body["error"].as_str().unwrap_or_default().contains(says), "tail {what}: {body}");
    }

    // A range open at both ends is every record the caller may read, and no more.
    for q in ["ts:[* TO *]", "offset:{* TO *}"] {
        let (status, body) = get(&base, "/api/v1/search", DEV_TOKEN, &[("q", q), ("limit", "0")]);
        assert_eq!((status, body["total"].as_u64()), (200, Some(200)), "{q}: {body}");
    }
    // The widest histogram: sane buckets in order holding the caller's records once, or a
    // 400 for an interval that would make too many of them.
    let (min, max) = (i64::MIN.to_string(), i64::MAX.to_string());
    for interval in [None, Some("36500d")] {
        let mut query = vec![("q", ""), ("start", min.as_str()), ("end", max.as_str())];
        query.extend(interval.map(|i| ("interval", i)));
        let (status, body) = get(&base, "/api/v1/histogram", DEV_TOKEN, &query);
        assert_eq!((status, body["total"].as_u64()), (200, Some(200)), "{interval:?}: {body}");
        let starts: Vec<&str> =
            body["buckets"].as_array().unwrap().iter().map(|b| b["ts"].as_str().unwrap()).collect();
        assert!(starts.windows(2).all(|w| w[0] < w[1]), "{interval:?}: {starts:?}");
    }
    let query = [("q", ""), ("start", min.as_str()), ("end", max.as_str()), ("interval", "1s")];
    let (status, body) = get(&base, "/api/v1/histogram", DEV_TOKEN, &query);
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("buckets"), "{body}");

    // Metadata counts only what the caller may read (item 6): no partition counts or sizes
    // for a scoped token, and an open histogram range closes at its own first and last
    // record, not at prod's.
    let (_, body) = get(&base, "/api/v1/search", DEV_TOKEN, &[("q", ""), ("limit", "1")]);
    assert!(
        body["touched"].get("partitions").is_none() && body["touched"].get("bytes").is_none(),
        "{body}"
    );
    let (_, body) = get(&base, "/api/v1/search", ADMIN_TOKEN, &[("q", ""), ("limit", "1")]);
    assert_eq!(body["touched"]["partitions"], 1, "{body}");
    let (_, dev) = get(&base, "/api/v1/histogram", DEV_TOKEN, &[("q", "")]);
    let (_, all) = get(&base, "/api/v1/histogram", ADMIN_TOKEN, &[("q", "")]);
    let (dev_start, all_start) = (dev["start"].as_str().unwrap(), all["start"].as_str().unwrap());
    assert!(dev_start > "2026-11-30T10:40", "dev's range starts at dev's data: {dev_start}");
    assert!(all_start < "2026-11-30T10:01", "{all_start}");
    assert_eq!(dev["total"], 200);

    // `/metrics` names every tailed file and counts every namespace: not for a dev token.
    let metrics = |token: Option<&str>| {
        let mut request = reqwest::blocking::Client::new().get(format!("{base}/metrics"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().unwrap();
        (response.status().as_u16(), response.text().unwrap())
    };
    assert_eq!(metrics(None).0, 401);
    let (status, body) = metrics(Some(DEV_TOKEN));
    assert_eq!(status, 403, "{body}");
    assert!(!body.contains("prod"), "{body}");
    let (status, body) = metrics(Some(ADMIN_TOKEN));
    assert_eq!(status, 200);
    assert!(body.contains("sluice_"), "{body:.200}");

    assert!(up.is_running());
    append(&dev_file, &cri_lines("dev", 1, 10_000, 1).replace("dev line", "after the storm"));
    wait_until(Duration::from_secs(10), "a new line is searchable", || {
        get(&base, "/api/v1/search", DEV_TOKEN, &[("q", "\"after the storm\"")]).1["total"] == 1
    });
}
