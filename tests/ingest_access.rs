//! Writes need a token once any auth is configured (issue 31, item 7): `sluice up --users`
//! refused no one on `POST /_bulk` and `/v1/logs`, so anyone who reached the port could write
//! into `prod`. Now a client needs the token of a user who may write, and writes only to the
//! namespaces that user's `ingest:` list names (admins anywhere): a document for another
//! namespace is a per-item 403 in `_bulk` and a rejected record in OTLP's partial success.

mod common;

use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::Value;

const SHIPPER: &str = "dev-shipper-token-0123456789";
const READER: &str = "dev-reader-token-0123456789";

fn text(value: &str) -> Option<AnyValue> {
    Some(AnyValue { value: Some(any_value::Value::StringValue(value.to_owned())) })
}

fn otlp(namespace: &str, message: &str) -> Vec<u8> {
    let attribute = KeyValue {
        key: "k8s.namespace.name".into(),
        value: text(namespace),
        ..KeyValue::default()
    };
    let resource = Resource { attributes: vec![attribute], ..Resource::default() };
    let record = LogRecord { body: text(message), ..LogRecord::default() };
    let scope = ScopeLogs { log_records: vec![record], ..ScopeLogs::default() };
    let logs = ResourceLogs {
        resource: Some(resource),
        scope_logs: vec![scope],
        ..ResourceLogs::default()
    };
    ExportLogsServiceRequest { resource_logs: vec![logs] }.encode_to_vec()
}

fn post(url: &str, content_type: &str, token: Option<&str>, body: Vec<u8>) -> (u16, Vec<u8>) {
    let mut request = reqwest::blocking::Client::new()
        .post(url)
        .header("content-type", content_type)
        .body(body)
        .timeout(Duration::from_secs(30));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().unwrap();
    (response.status().as_u16(), response.bytes().unwrap().to_vec())
}

fn admin_total(base: &str, query: &str) -> u64 {
    let response = reqwest::blocking::Client::new()
        .get(format!("{base}/api/v1/search"))
        .query(&[("q", query), ("limit", "0")])
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .unwrap();
    serde_json::from_str::<Value>(&response.text().unwrap()).unwrap()["total"].as_u64().unwrap()
}

#[test]
fn ingest_needs_a_token_that_may_write_the_records_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.yaml");
    std::fs::write(
        &users,
        format!(
            "users:\n  - name: ops\n    token: {ADMIN_TOKEN}\n    admin: true\n  - name: shipper\n    token: {SHIPPER}\n    ingest: [dev]\n  - name: reader\n    token: {READER}\n    namespaces: [dev]\n"
        ),
    )
    .unwrap();
    let log = dir.path().join("app.log");
    std::fs::write(&log, "from the agent\n").unwrap();
    let (mut up, base) = start_up_with(
        &dir.path().join("data"),
        &[log.display().to_string()],
        &["--users".as_ref(), users.as_os_str()],
    );
    let bulk = format!("{base}/_bulk");
    let ndjson = "application/x-ndjson";
    let document = |namespace: &str, message: &str| {
        format!(
            "{{\"index\":{{\"_index\":\"logs\"}}}}\n{{\"namespace\":\"{namespace}\",\"log\":\"{message}\"}}\n"
        )
    };

    // No token, an unknown one, a reader's: nothing is written.
    let body = || document("prod", "planted by nobody").into_bytes();
    assert_eq!(post(&bulk, ndjson, None, body()).0, 401);
    assert_eq!(post(&bulk, ndjson, Some("not-a-token-0123456789"), body()).0, 401);
    assert_eq!(post(&bulk, ndjson, Some(READER), body()).0, 403);
    let (status, _) = post(
        &format!("{base}/v1/logs"),
        "application/x-protobuf",
        None,
        otlp("prod", "planted by nobody"),
    );
    assert_eq!(status, 401);

    // The shipper writes dev, and only dev.
    let body = document("dev", "shipped to dev") + &document("prod", "planted in prod");
    let (status, answer) = post(&bulk, ndjson, Some(SHIPPER), body.into_bytes());
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    let items = answer["items"].as_array().unwrap();
    assert_eq!(items[0]["index"]["status"], 201, "{answer}");
    assert_eq!(items[1]["index"]["status"], 403, "{answer}");
    assert!(
        items[1]["index"]["error"]["reason"].as_str().unwrap().contains("\"prod\""),
        "{answer}"
    );
    let (status, answer) = post(
        &format!("{base}/v1/logs"),
        "application/x-protobuf",
        Some(SHIPPER),
        otlp("prod", "planted through otlp"),
    );
    assert_eq!(status, 200);
    let answer = ExportLogsServiceResponse::decode(answer.as_slice()).unwrap();
    assert_eq!(answer.partial_success.map(|p| p.rejected_log_records), Some(1));
    // An admin writes anywhere.
    let (status, _) =
        post(&bulk, ndjson, Some(ADMIN_TOKEN), document("prod", "written by ops").into_bytes());
    assert_eq!(status, 200);

    append(&log, "after the writes\n");
    wait_until(Duration::from_secs(10), "the permitted writes are searchable", || {
        admin_total(&base, "\"after the writes\"") == 1
            && admin_total(&base, "\"shipped to dev\"") == 1
            && admin_total(&base, "\"written by ops\"") == 1
    });
    assert_eq!(admin_total(&base, "planted"), 0, "nothing reached another namespace");
    assert!(up.is_running());
}
