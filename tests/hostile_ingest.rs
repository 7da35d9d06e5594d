//! Times no clock gives, sent to a real `sluice up` (issue 31, item 2): `_bulk` documents of
//! 1677 and 2262 (the ends of nanoseconds in an i64) and of ±1e300 seconds were accepted and
//! then wedged the index sink, so that nothing from any source became searchable. Now each is
//! refused per item with its reason, an OTLP record of time u64::MAX is kept at its receive
//! time, and records from the agent and `_bulk` sent afterwards become searchable as usual.

mod common;

use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use prost::Message;
use serde_json::Value;

fn post(url: &str, content_type: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    post_encoded(url, content_type, "identity", body)
}

fn post_encoded(url: &str, content_type: &str, encoding: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let response = reqwest::blocking::Client::new()
        .post(url)
        .header("content-type", content_type)
        .header("content-encoding", encoding)
        .body(body)
        .timeout(Duration::from_secs(30))
        .send()
        .unwrap();
    (response.status().as_u16(), response.bytes().unwrap().to_vec())
}

#[test]
fn times_out_of_range_are_refused_or_replaced_and_nothing_wedges() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    std::fs::write(&log, "before the storm\n").unwrap();
    let (mut up, base) = start_up(&dir.path().join("data"), &[log.display().to_string()]);
    wait_until(Duration::from_secs(30), "the first line is searchable", || {
        total(&base, "\"before the storm\"") == 1
    });

    let mut bulk = String::new();
    for (i, time) in [
        "\"1677-09-21T00:12:43.145224192Z\"",
        "\"2262-04-11T23:47:16.854775807Z\"",
        "1e300",
        "-1e300",
        "\"2026-11-30T10:00:00Z\"",
    ]
    .into_iter()
    .enumerate()
    {
        bulk.push_str("{\"index\":{\"_index\":\"logs\"}}\n");
        bulk.push_str(&format!("{{\"@timestamp\":{time},\"log\":\"bulk item {i}\"}}\n"));
    }
    let (status, body) = post(&format!("{base}/_bulk"), "application/x-ndjson", bulk.into_bytes());
    assert_eq!(status, 200);
    let body: Value = serde_json::from_slice(&body).unwrap();
    let statuses: Vec<u64> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["index"]["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [400, 400, 400, 400, 201], "{body}");
    let reason = body["items"][0]["index"]["error"]["reason"].as_str().unwrap();
    assert!(reason.contains("outside 1970-01-01T00:00:00Z..2200-01-01T00:00:00Z"), "{reason}");
    assert_eq!(body["errors"], true);

    let body =
        AnyValue { value: Some(any_value::Value::StringValue("otlp from the far future".into())) };
    let record = LogRecord { time_unix_nano: u64::MAX, body: Some(body), ..LogRecord::default() };
    let scope = ScopeLogs { log_records: vec![record], ..ScopeLogs::default() };
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs { scope_logs: vec![scope], ..ResourceLogs::default() }],
    };
    let (status, _) =
        post(&format!("{base}/v1/logs"), "application/x-protobuf", request.encode_to_vec());
    assert_eq!(status, 200);

    append(&log, "after the storm\n");
    wait_until(Duration::from_secs(10), "every kept record is searchable", || {
        total(&base, "\"after the storm\"") == 1
            && total(&base, "\"bulk item\"") == 1
            && total(&base, "\"bulk item 4\"") == 1
            && total(&base, "\"far future\"") == 1
    });
    let hit = &search(&base, "\"far future\"", 1).hits[0];
    assert!(hit.ts.starts_with("20"), "kept at its receive time: {}", hit.ts);
    assert!(up.is_running());
}

fn otlp_request(message: &str) -> Vec<u8> {
    let body = AnyValue { value: Some(any_value::Value::StringValue(message.into())) };
    let record = LogRecord { body: Some(body), ..LogRecord::default() };
    let scope = ScopeLogs { log_records: vec![record], ..ScopeLogs::default() };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs { scope_logs: vec![scope], ..ResourceLogs::default() }],
    }
    .encode_to_vec()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() / 1024
}

/// What real clients send (issue 31): OTLP/HTTP gzip (the OpenTelemetry Collector's default)
/// and zstd are taken; a 50 KB gzip `_bulk` body of a million tiny documents (4.5 GB of RSS
/// before) and a body that decompresses past the cap are a 413 that says to split, and the
/// process neither balloons nor stops.
#[test]
fn compressed_bodies_are_taken_and_bombs_refused_within_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    std::fs::write(&log, "first line\n").unwrap();
    let (mut up, base) = start_up(&dir.path().join("data"), &[log.display().to_string()]);
    let otlp = format!("{base}/v1/logs");
    let protobuf = "application/x-protobuf";
    let (status, _) = post_encoded(&otlp, protobuf, "gzip", gzip(&otlp_request("gzip otlp")));
    assert_eq!(status, 200);
    let zstd = zstd::bulk::compress(&otlp_request("zstd otlp"), 3).unwrap();
    assert_eq!(post_encoded(&otlp, protobuf, "zstd", zstd).0, 200);
    assert_eq!(post_encoded(&otlp, protobuf, "br", otlp_request("x")).0, 415);

    let tiny = "{\"index\":{\"_index\":\"l\"}}\n{}\n".repeat(1_000_000);
    let bomb = gzip(tiny.as_bytes());
    assert!(bomb.len() < 200_000, "{} bytes", bomb.len());
    let bulk = format!("{base}/_bulk");
    let (status, body) = post_encoded(&bulk, "application/x-ndjson", "gzip", bomb);
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("split the request"));
    let zeros = gzip(&vec![b' '; 80 << 20]);
    let (status, body) = post_encoded(&bulk, "application/x-ndjson", "gzip", zeros);
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    assert!(peak_rss_mib(up.pid()) < 1024, "peak RSS {} MiB", peak_rss_mib(up.pid()));

    append(&log, "still moving\n");
    wait_until(Duration::from_secs(10), "records after the bombs are searchable", || {
        total(&base, "\"gzip otlp\"") == 1
            && total(&base, "\"zstd otlp\"") == 1
            && total(&base, "\"still moving\"") == 1
    });
    assert!(up.is_running());
}

/// A sink that cannot make progress shows it (issue 31, item 2): with Kafka at a port where
/// no broker listens, its sink never opens; its lag grows with what the WAL holds for it,
/// where it used to say nothing (or its last value), and the local index is not held up.
#[test]
fn a_sink_that_cannot_open_shows_a_growing_lag() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    std::fs::write(&log, "line one\nline two\n").unwrap();
    let closed = format!("127.0.0.1:{}", free_port());
    let (mut up, base) = start_up_with(
        &dir.path().join("data"),
        &[log.display().to_string()],
        &["--kafka".as_ref(), closed.as_ref(), "--no-pod-metadata".as_ref()],
    );
    wait_until(Duration::from_secs(20), "the index has both lines", || total(&base, "line") == 2);
    let lag = |sink: &str| metric(&base, &format!("sluice_sink_lag_bytes{{sink=\"{sink}\"}}"));
    wait_until(Duration::from_secs(10), "the stuck sink's lag is reported", || lag("kafka") > 0.0);
    let before = lag("kafka");
    append(&log, &"more\n".repeat(100));
    wait_until(Duration::from_secs(10), "its lag grows with the WAL", || lag("kafka") > before);
    assert!(up.is_running());
}
