//! Other shippers into a real `sluice collector`: Fluent Bit-style `_bulk` requests (NDJSON,
//! gzip, Basic auth with the token as password, Fluent Bit's `kubernetes` metadata) with a
//! collector `kill -9` between requests, and the OpenTelemetry SDK's own OTLP exporters over
//! HTTP/protobuf and gRPC. Records are counted exactly and searched. No doubles: the SDK is
//! the real client; the Fluent Bit requests are built here in its wire format, because no
//! Fluent Bit binary can be installed on this machine.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;
use opentelemetry::KeyValue;
use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use serde_json::Value;

const TOKEN: &str = "fluent-bit-token-0123456789";
const REQUESTS: usize = 10;
const DOCS: usize = 300;

/// One request as Fluent Bit's `es` output sends it (`Suppress_Type_Name On`, gzip), with
/// one malformed document in it.
fn fluent_bit_body(request: usize) -> Vec<u8> {
    let mut ndjson = String::new();
    for i in 0..DOCS {
        ndjson.push_str("{\"create\":{\"_index\":\"fluent-bit\"}}\n");
        if i == 7 {
            ndjson.push_str("{\"log\": broken\n");
            continue;
        }
        let doc = serde_json::json!({
            "@timestamp": format!("2026-11-30T10:{:02}:{:02}.{:03}Z", request, i % 60, i),
            "log": format!("ERROR bulk request {request} doc {i} 支付超时\n"),
            "stream": "stdout",
            "kubernetes": {
                "pod_name": "pay-7f9c", "namespace_name": "payments", "pod_id": "uid-1",
                "container_name": "app", "host": "node-3",
            },
        });
        ndjson.push_str(&doc.to_string());
        ndjson.push('\n');
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(ndjson.as_bytes()).unwrap();
    gz.finish().unwrap()
}

fn post_bulk(base: &str, body: Vec<u8>, password: &str) -> (u16, Value) {
    let response = reqwest::blocking::Client::new()
        .post(format!("{base}/_bulk"))
        .header("Content-Type", "application/x-ndjson")
        .header("Content-Encoding", "gzip")
        .basic_auth("fluent-bit", Some(password))
        .body(body)
        .timeout(Duration::from_secs(30))
        .send()
        .unwrap();
    (response.status().as_u16(), response.json().unwrap_or(Value::Null))
}

#[test]
fn fluent_bit_bulk_requests_survive_a_collector_kill_each_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("fluent-bit {TOKEN}\n")).unwrap();
    let data = dir.path().join("collector");
    let (grpc, http) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{http}");
    let extra = ["--agent-tokens".as_ref(), tokens.as_os_str()];
    let mut collector = start_collector_with(&data, grpc, http, &extra);

    let (status, body) = post_bulk(&base, fluent_bit_body(0), "wrong-token-0123456789");
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["type"], "security_exception");

    for request in 0..REQUESTS {
        if request == REQUESTS / 2 {
            // Everything acknowledged so far is in the WAL; the index may not have it yet.
            collector.kill9();
            collector = start_collector_with(&data, grpc, http, &extra);
        }
        let (status, body) = post_bulk(&base, fluent_bit_body(request), TOKEN);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["errors"], true);
        let items = body["items"].as_array().unwrap();
        assert_eq!(items.len(), DOCS);
        assert_eq!(items[7]["create"]["status"], 400);
        assert_eq!(items[7]["create"]["error"]["type"], "mapper_parsing_exception");
        assert!(items.iter().enumerate().all(|(i, it)| i == 7 || it["create"]["status"] == 201));
        assert_eq!(items[0]["create"]["_index"], "fluent-bit");
    }
    let want = (REQUESTS * (DOCS - 1)) as u64;
    wait_until(Duration::from_secs(30), "every accepted document is searchable", || {
        total(&base, "bulk") >= want
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(total(&base, "bulk"), want, "each document exactly once");
    let hit = &search(&base, "bulk request 3 doc 42", 1).hits[0];
    assert_eq!(
        (hit.namespace.as_str(), hit.pod.as_str(), hit.container.as_str()),
        ("payments", "pay-7f9c", "app")
    );
    assert_eq!((hit.level.as_str(), hit.stream.as_str()), ("error", "stdout"));
    assert_eq!(hit.ts, "2026-11-30T10:03:42.042000000Z");
    assert_eq!(hit.message, "ERROR bulk request 3 doc 42 支付超时");
    assert_eq!(total(&base, "namespace:payments 支付超时"), want);
}

fn otel_provider(
    exporter: opentelemetry_otlp::LogExporter,
    pod: &str,
) -> opentelemetry_sdk::logs::SdkLoggerProvider {
    opentelemetry_sdk::logs::SdkLoggerProvider::builder()
        .with_resource(
            Resource::builder()
                .with_attributes([
                    KeyValue::new("service.name", "checkout"),
                    KeyValue::new("k8s.namespace.name", "shop"),
                    KeyValue::new("k8s.pod.name", pod.to_owned()),
                    KeyValue::new("k8s.container.name", "app"),
                ])
                .build(),
        )
        .with_batch_exporter(exporter)
        .build()
}

fn emit(provider: &opentelemetry_sdk::logs::SdkLoggerProvider, what: &str, n: usize) {
    let logger = provider.logger("ecosystem-test");
    for i in 0..n {
        let mut record = logger.create_log_record();
        record.set_severity_number(if i % 2 == 0 { Severity::Error } else { Severity::Info });
        record.set_severity_text(if i % 2 == 0 { "ERROR" } else { "INFO" });
        record.set_body(AnyValue::from(format!("{what} 订单 line {i}")));
        logger.emit(record);
    }
    provider.force_flush().unwrap();
}

#[test]
fn the_opentelemetry_sdk_ships_over_otlp_http_and_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    let (grpc, http, otlp) = (free_port(), free_port(), free_port());
    let base = format!("http://127.0.0.1:{http}");
    let otlp_listen = format!("127.0.0.1:{otlp}");
    let _collector = start_collector_with(
        &data,
        grpc,
        http,
        &["--otlp-grpc-listen".as_ref(), otlp_listen.as_ref()],
    );

    let http_exporter = opentelemetry_otlp::LogExporter::builder()
        .with_http()
        .with_endpoint(format!("{base}/v1/logs"))
        .with_timeout(Duration::from_secs(10))
        .with_http_client(reqwest::blocking::Client::new())
        .build()
        .unwrap();
    let provider = otel_provider(http_exporter, "checkout-http");
    emit(&provider, "viahttp", 120);
    provider.shutdown().unwrap();

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let grpc_exporter = opentelemetry_otlp::LogExporter::builder()
            .with_tonic()
            .with_endpoint(format!("http://{otlp_listen}"))
            .build()
            .unwrap();
        let provider = otel_provider(grpc_exporter, "checkout-grpc");
        let p = provider.clone();
        tokio::task::spawn_blocking(move || emit(&p, "viagrpc", 80)).await.unwrap();
        tokio::task::spawn_blocking(move || provider.shutdown().unwrap()).await.unwrap();
    });

    wait_until(Duration::from_secs(30), "OTLP records are searchable", || {
        total(&base, "viahttp") >= 120 && total(&base, "viagrpc") >= 80
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(total(&base, "viahttp"), 120);
    assert_eq!(total(&base, "viagrpc"), 80);
    assert_eq!(total(&base, "namespace:shop level:error 订单"), 100);
    let hit = &search(&base, "viagrpc line 7", 1).hits[0];
    assert_eq!(
        (hit.pod.as_str(), hit.container.as_str(), hit.level.as_str()),
        ("checkout-grpc", "app", "info")
    );
    assert_eq!(hit.file, "otlp/checkout");
}
