//! Plain-file lines keep the time they were written (issue 26, part 2), through `sluice up`
//! with `--timezone Asia/Shanghai`: a backfilled day of log4j lines (with a stack trace whose
//! lines have no stamp of their own), syslog lines without a year, and lines that carry their
//! own zone. Times, time filters and the histogram are checked through the API.

mod common;

use std::fmt::Write as _;
use std::time::Duration;

use common::*;

const HOURS: usize = 24;
const PER_HOUR: usize = 50;

fn get(base: &str, path: &str, query: &[(&str, &str)]) -> serde_json::Value {
    let response = reqwest::blocking::Client::new()
        .get(format!("{base}{path}"))
        .query(query)
        .timeout(Duration::from_secs(30))
        .send()
        .unwrap();
    assert!(response.status().is_success(), "{path}: {}", response.status());
    response.json().unwrap()
}

#[test]
fn lines_keep_the_time_they_were_written() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    // A day of an app's log in Shanghai time, written out of the agent's sight (a backfill).
    let mut app = String::new();
    for hour in 0..HOURS {
        for i in 0..PER_HOUR {
            let (minute, second, ms) = (i, i % 60, i * 7);
            writeln!(app, "2026-11-30 {hour:02}:{minute:02}:{second:02},{ms:03} INFO  [main] app - backfill h{hour} n{i} 订单创建成功").unwrap();
        }
    }
    writeln!(app, "2026-11-30 23:59:59,999 ERROR [main] app - 支付超时 last event").unwrap();
    writeln!(app, "java.net.SocketTimeoutException: Read timed out").unwrap();
    writeln!(app, "\tat com.example.Pay.call(Pay.java:42)").unwrap();
    std::fs::write(logs.join("app.log"), app).unwrap();
    std::fs::write(
        logs.join("messages.log"),
        "Nov 30 08:00:00 node-1 sshd[42]: accepted publickey for ops\n\
         2026-11-30T09:30:00Z node-1 kernel: an ISO line with its own zone\n",
    )
    .unwrap();

    let watch = format!("{}/*.log", logs.display());
    let (_up, base) = start_up_with(
        &dir.path().join("data"),
        &[watch],
        &["--timezone".as_ref(), "Asia/Shanghai".as_ref()],
    );
    let want = HOURS * PER_HOUR + 3 + 2;
    wait_until(Duration::from_secs(60), "every line is searchable", || {
        total(&base, "") == want as u64
    });

    // Shanghai is UTC+8 all year: 00:00 there is 16:00 UTC the day before.
    let hit = &search(&base, "backfill h0 n0", 1).hits[0];
    assert_eq!(hit.ts, "2026-11-29T16:00:00.000000000Z");
    assert!(hit.flags.is_empty(), "{:?}", hit.flags);
    let hit = &search(&base, "backfill h13 n42", 1).hits[0];
    assert_eq!(hit.ts, "2026-11-30T05:42:42.294000000Z");
    let hit = &search(&base, "\"last event\"", 1).hits[0];
    assert_eq!(hit.ts, "2026-11-30T15:59:59.999000000Z");
    // The stack trace's lines stay beside their event, in order, and say they had no time.
    let trace = search(&base, "SocketTimeoutException OR Pay.java", 5);
    let mut times: Vec<(&str, &[String])> =
        trace.hits.iter().map(|h| (h.ts.as_str(), h.flags.as_slice())).collect();
    times.sort();
    assert_eq!(
        times.iter().map(|t| t.0).collect::<Vec<_>>(),
        ["2026-11-30T15:59:59.999000001Z", "2026-11-30T15:59:59.999000002Z"]
    );
    assert!(times.iter().all(|t| t.1 == ["time_not_found"]), "{times:?}");
    // A syslog line's year is this year's or the last; its zone is the configured one.
    let hit = &search(&base, "publickey", 1).hits[0];
    assert!(hit.ts.ends_with("-11-30T00:00:00.000000000Z"), "{}", hit.ts);
    assert!(hit.ts.starts_with("2026") || hit.ts.starts_with("2025"), "{}", hit.ts);
    let hit = &search(&base, "\"its own zone\"", 1).hits[0];
    assert_eq!(hit.ts, "2026-11-30T09:30:00.000000000Z", "a stamp's own zone wins");

    // A time filter finds the hours that were written in it, not the minute they were read.
    let morning = get(
        &base,
        "/api/v1/search",
        &[
            ("q", "backfill"),
            ("start", "2026-11-30T01:00:00Z"),
            ("end", "2026-11-30T04:00:00Z"),
            ("limit", "0"),
        ],
    );
    assert_eq!(morning["total"], 3 * PER_HOUR, "Shanghai 09:00 to 12:00");
    let histogram = get(
        &base,
        "/api/v1/histogram",
        &[
            ("q", "backfill"),
            ("start", "2026-11-29T16:00:00Z"),
            ("end", "2026-11-30T16:00:00Z"),
            ("interval", "1h"),
            ("split", ""),
        ],
    );
    let buckets = histogram["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), HOURS, "{histogram}");
    assert!(
        buckets.iter().all(|b| b["total"] == PER_HOUR),
        "every hour holds its own lines: {histogram}"
    );
}
