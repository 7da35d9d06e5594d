//! An Elasticsearch `_bulk`-compatible receiver (`POST /_bulk`, `POST /{index}/_bulk`), so
//! Fluent Bit's `es` output, Filebeat or Logstash ship into Sluice unchanged.
//!
//! The body is NDJSON action/document pairs, optionally gzip-compressed. `index` and
//! `create` documents become records (the message from `log`, `message` or `msg`; the time
//! from `@timestamp`, `timestamp` or `time`; pod identity from Fluent Bit's `kubernetes`
//! object or flat `namespace`/`pod`/`container` keys); every item gets an answer in order, as
//! Elasticsearch gives it: `201 created`, or a `400` for a document that is not a JSON
//! object; `delete` and `update` are refused per item (logs are not edited). A line that is
//! not an action fails the whole request with 400, as in Elasticsearch. All accepted records
//! of a request are one WAL frame, synced before the answer.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Map, Value, json};
use sluice_proto::id::source_key;
use sluice_proto::{LogRecord, Stream};

use super::http::{ClientIngest, check_documents, decoded_body};
use super::now_ns;
use crate::auth::IngestGrant;

pub(crate) fn routes() -> Router<ClientIngest> {
    Router::new()
        .route("/_bulk", post(bulk_default).put(bulk_default))
        .route("/{index}/_bulk", post(bulk_index).put(bulk_index))
}

async fn bulk_default(
    State(state): State<ClientIngest>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    bulk(state, None, headers, body).await
}

async fn bulk_index(
    State(state): State<ClientIngest>,
    Path(index): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    bulk(state, Some(index), headers, body).await
}

/// An Elasticsearch-shaped error for the whole request.
fn request_error(status: StatusCode, kind: &str, reason: String) -> Response {
    let body = json!({
        "error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason},
        "status": status.as_u16(),
    });
    (status, Json(body)).into_response()
}

async fn bulk(
    state: ClientIngest,
    path_index: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let grant = match state.authenticate(&headers, "_bulk") {
        Ok(grant) => grant,
        Err((status, reason)) => return request_error(status, "security_exception", reason),
    };
    let (_turn, body) = match state.admit(body).await {
        Ok(admitted) => admitted,
        Err(e) if e.status == StatusCode::TOO_MANY_REQUESTS => {
            return request_error(e.status, "es_rejected_execution_exception", e.reason);
        }
        Err(e) => return request_error(e.status, "parse_exception", e.reason),
    };
    // Decoding and parsing take a core for up to a second on a large request: off the
    // runtime's threads, which also serve searches.
    let client = grant.client.clone();
    let parsed = tokio::task::spawn_blocking(move || decode(&headers, &body, path_index, &grant))
        .await
        .unwrap_or_else(|e| Err((StatusCode::INTERNAL_SERVER_ERROR, "exception", e.to_string())));
    let (items, records) = match parsed {
        Ok(parsed) => parsed,
        Err((status, kind, reason)) => return request_error(status, kind, reason),
    };
    let ids = match state.append(&client, records).await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::error!(error = %e, "cannot persist a _bulk request");
            // 429 makes Elasticsearch clients retry the request later.
            return request_error(
                StatusCode::TOO_MANY_REQUESTS,
                "es_rejected_execution_exception",
                format!("cannot persist the request: {e}"),
            );
        }
    };
    let took = started.elapsed().as_millis() as u64;
    (
        [(header::CONTENT_TYPE, "application/json")],
        answer(took, items, ids.into_iter().map(|id| id.to_string())),
    )
        .into_response()
}

/// Why a whole request is refused: its status, Elasticsearch's error type, the reason.
type Refusal = (StatusCode, &'static str, String);

/// The body decoded and parsed into answers to give and records to append: those the grant
/// may write, moved out of their items.
fn decode(
    headers: &HeaderMap,
    body: &[u8],
    path_index: Option<String>,
    grant: &IngestGrant,
) -> Result<(Vec<Item>, Vec<LogRecord>), Refusal> {
    let bytes = decoded_body(headers, body).map_err(|e| (e.status, "parse_exception", e.reason))?;
    // Invalid UTF-8 is replaced rather than refused: a log line must not sink its batch.
    let text = String::from_utf8(bytes)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    // Counted before parsing: a parsed document costs far more memory than its line.
    let actions = text.lines().filter(|l| !l.trim().is_empty()).count().div_ceil(2);
    check_documents(actions).map_err(|e| (e.status, "illegal_argument_exception", e.reason))?;
    let mut items = parse(&text, path_index.as_deref())
        .map_err(|reason| (StatusCode::BAD_REQUEST, "illegal_argument_exception", reason))?;
    drop(text);
    for item in &mut items {
        if let Item::Accepted { action, index, record } = item
            && !grant.allows(&record.namespace)
        {
            metrics::counter!("sluice_collector_unauthorized_writes_total").increment(1);
            let reason =
                format!("{} may not write to namespace {:?}", grant.client, record.namespace);
            let (action, index) = (std::mem::take(action), std::mem::take(index));
            *item =
                Item::Refused { action, index, status: 403, kind: "security_exception", reason };
        }
    }
    let mut records = Vec::new();
    for item in &mut items {
        if let Item::Accepted { record, .. } = item {
            // Moved out: the answers need only the action and the index.
            records.push(*std::mem::take(record));
        }
    }
    Ok((items, records))
}

/// The answer, written item by item straight into its bytes: a tree of JSON values for
/// 100,000 items would take several times the bytes it becomes.
fn answer(took: u64, items: Vec<Item>, mut ids: impl Iterator<Item = String>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + items.len() * 200);
    let errors = items.iter().any(|i| matches!(i, Item::Refused { .. }));
    out.extend_from_slice(format!("{{\"took\":{took},\"errors\":{errors},\"items\":[").as_bytes());
    for (n, item) in items.into_iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        let value = match item {
            Item::Accepted { action, index, .. } => {
                let id = ids.next().unwrap_or_default();
                json!({ action: {
                    "_index": index, "_id": id, "_version": 1, "result": "created",
                    "_shards": {"total": 1, "successful": 1, "failed": 0},
                    "_seq_no": 0, "_primary_term": 1, "status": 201,
                }})
            }
            Item::Refused { action, index, status, kind, reason } => {
                metrics::counter!("sluice_collector_bulk_items_refused_total").increment(1);
                json!({ action: {
                    "_index": index, "status": status,
                    "error": {"type": kind, "reason": reason},
                }})
            }
        };
        serde_json::to_writer(&mut out, &value).expect("a JSON value writes to a Vec");
    }
    out.extend_from_slice(b"]}");
    out
}

/// One action of a request, answered in order.
#[derive(Debug)]
enum Item {
    Accepted { action: String, index: String, record: Box<LogRecord> },
    Refused { action: String, index: String, status: u16, kind: &'static str, reason: String },
}

fn parse(text: &str, path_index: Option<&str>) -> Result<Vec<Item>, String> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let mut items = Vec::new();
    while let Some((n, line)) = lines.next() {
        let action_line: Map<String, Value> = serde_json::from_str(line)
            .map_err(|e| format!("line {}: an action must be a JSON object: {e}", n + 1))?;
        let Some((action, meta)) = action_line.iter().next() else {
            return Err(format!("line {}: the action object is empty", n + 1));
        };
        let index = meta
            .get("_index")
            .and_then(Value::as_str)
            .or(path_index)
            .unwrap_or_default()
            .to_owned();
        let refuse = |status, kind, reason: String| Item::Refused {
            action: action.clone(),
            index: index.clone(),
            status,
            kind,
            reason,
        };
        match action.as_str() {
            "index" | "create" => {
                let Some((_, doc)) = lines.next() else {
                    return Err(format!("line {}: the {action} action has no document", n + 1));
                };
                if index.is_empty() {
                    items.push(refuse(
                        400,
                        "action_request_validation_exception",
                        "index is missing".into(),
                    ));
                    continue;
                }
                match serde_json::from_str::<Value>(doc) {
                    Ok(Value::Object(doc)) => {
                        let record = to_record(&index, doc);
                        // As Elasticsearch refuses a date it cannot hold: a time outside the
                        // window is a clock or parsing error, refused per item with its reason.
                        if sluice_proto::time::in_window(record.timestamp_ns) {
                            let record = Box::new(record);
                            items.push(Item::Accepted { action: action.clone(), record, index });
                        } else {
                            items.push(refuse(
                                400,
                                "mapper_parsing_exception",
                                format!(
                                    "the document's time (Unix ns {}) is outside {}",
                                    record.timestamp_ns,
                                    sluice_proto::time::WINDOW
                                ),
                            ));
                        }
                    }
                    Ok(_) => items.push(refuse(
                        400,
                        "mapper_parsing_exception",
                        "the document is not a JSON object".into(),
                    )),
                    Err(e) => items.push(refuse(
                        400,
                        "mapper_parsing_exception",
                        format!("failed to parse the document: {e}"),
                    )),
                }
            }
            "update" => {
                lines.next();
                items.push(refuse(
                    400,
                    "illegal_argument_exception",
                    "sluice keeps logs as written: update is not supported".into(),
                ));
            }
            "delete" => items.push(refuse(
                400,
                "illegal_argument_exception",
                "sluice keeps logs as written: delete is not supported".into(),
            )),
            other => return Err(format!("line {}: unknown action {other:?}", n + 1)),
        }
    }
    Ok(items)
}

fn text_at<'a>(doc: &'a Map<String, Value>, paths: &[&[&str]]) -> Option<&'a str> {
    paths.iter().find_map(|path| {
        let mut at = doc.get(path[0])?;
        for key in &path[1..] {
            at = at.get(key)?;
        }
        at.as_str().filter(|s| !s.is_empty())
    })
}

/// A document as a record; what it does not map stays in the message only when there is no
/// message field (the whole document is then the message).
pub(crate) fn to_record(index: &str, doc: Map<String, Value>) -> LogRecord {
    let time = ["@timestamp", "timestamp", "time"].iter().find_map(|k| doc.get(*k));
    let timestamp_ns = match time {
        Some(Value::String(s)) => {
            chrono::DateTime::parse_from_rfc3339(s).ok().and_then(|t| t.timestamp_nanos_opt())
        }
        // Epoch numbers: seconds (with a fraction) or milliseconds, by magnitude.
        Some(Value::Number(n)) => {
            n.as_f64().map(|v| if v > 1e12 { (v * 1e6) as i64 } else { (v * 1e9) as i64 })
        }
        _ => None,
    }
    .unwrap_or_else(now_ns);
    let k8s = |key: &'static str, flat: &'static str| {
        text_at(&doc, &[&["kubernetes", key], &[flat]]).unwrap_or_default().to_owned()
    };
    let message = match text_at(&doc, &[&["log"], &["message"], &["msg"]]) {
        Some(m) => m.trim_end_matches(['\n', '\r']).to_owned(),
        None => Value::Object(doc.clone()).to_string(),
    };
    // A document without a level field gets the level the agent would find in its line.
    let level = text_at(&doc, &[&["level"], &["log.level"], &["log", "level"], &["severity"]])
        .and_then(sluice_proto::level::canonical)
        .or_else(|| sluice_proto::level::detect(&message))
        .unwrap_or_default()
        .to_owned();
    let stream = match text_at(&doc, &[&["stream"]]) {
        Some("stderr") => Stream::Stderr,
        Some("stdout") => Stream::Stdout,
        _ => Stream::File,
    };
    let (namespace, pod, container) = (
        k8s("namespace_name", "namespace"),
        k8s("pod_name", "pod"),
        k8s("container_name", "container"),
    );
    LogRecord {
        // One source per index and container, so a hit's context is its container's lines.
        source: source_key(&format!("_bulk/{index}/{namespace}/{pod}/{container}"), 0),
        timestamp_ns,
        ingest_time_ns: now_ns(),
        cluster: text_at(&doc, &[&["cluster"], &["kubernetes", "cluster_name"]])
            .unwrap_or_default()
            .to_owned(),
        namespace,
        pod,
        pod_uid: k8s("pod_id", "pod_uid"),
        container,
        node: k8s("host", "host"),
        stream: stream as i32,
        level,
        file_path: format!("_bulk/{index}"),
        message,
        ..LogRecord::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fluent_bit_documents_map_to_records() {
        let body = concat!(
            r#"{"create":{"_index":"logs-2026.11.30"}}"#,
            "\n",
            r#"{"@timestamp":"2026-11-30T10:00:00.5Z","log":"ERROR 支付超时 orderId=1\n","stream":"stderr","kubernetes":{"namespace_name":"prod","pod_name":"pay-1","container_name":"app","host":"node-1","pod_id":"u-1"}}"#,
            "\n",
            r#"{"index":{}}"#,
            "\n",
            r#"{"time":1796032800,"message":"10:00:00 [warn] plain","namespace":"dev"}"#,
            "\n",
            r#"{"index":{}}"#,
            "\n",
            "not json\n",
            r#"{"delete":{"_id":"x"}}"#,
            "\n",
            r#"{"index":{}}"#,
            "\n",
            r#"{"k":"v"}"#,
            "\n",
        );
        let items = parse(body, Some("fallback")).unwrap();
        assert_eq!(items.len(), 5);
        let Item::Accepted { action, index, record } = &items[0] else { panic!("{:?}", items[0]) };
        assert_eq!((action.as_str(), index.as_str()), ("create", "logs-2026.11.30"));
        assert_eq!(record.message, "ERROR 支付超时 orderId=1");
        assert_eq!(record.timestamp_ns, 1_796_032_800_500_000_000);
        assert_eq!(
            (
                record.namespace.as_str(),
                record.pod.as_str(),
                record.container.as_str(),
                record.node.as_str()
            ),
            ("prod", "pay-1", "app", "node-1")
        );
        assert_eq!((record.level.as_str(), record.stream), ("error", Stream::Stderr as i32));
        let Item::Accepted { index, record, .. } = &items[1] else { panic!() };
        assert_eq!((index.as_str(), record.namespace.as_str()), ("fallback", "dev"));
        assert_eq!(record.level, "warn", "found in the line, as the agent finds it");
        assert_eq!(record.timestamp_ns, 1_796_032_800_000_000_000);
        assert!(matches!(
            &items[2],
            Item::Refused { status: 400, kind: "mapper_parsing_exception", .. }
        ));
        assert!(matches!(&items[3], Item::Refused { action, .. } if action == "delete"));
        let Item::Accepted { record, .. } = &items[4] else { panic!() };
        assert_eq!(record.message, r#"{"k":"v"}"#);
    }

    #[test]
    fn a_broken_action_line_fails_the_request() {
        assert!(parse("{\"index\":{}}\n", None).unwrap_err().contains("no document"));
        assert!(parse("nope\n{}\n", None).unwrap_err().contains("line 1"));
        assert!(parse("{\"upsert\":{}}\n{}\n", None).unwrap_err().contains("unknown action"));
        let items = parse("{\"index\":{}}\n{\"log\":\"x\"}\n", None).unwrap();
        assert!(
            matches!(&items[0], Item::Refused { reason, .. } if reason.contains("index is missing"))
        );
    }

    proptest::proptest! {
        /// Whatever a client sends as a `_bulk` body, the parser answers (the request refused,
        /// or an answer per item) without a panic, and no record it accepts has a time the
        /// store cannot keep.
        #[test]
        fn any_bulk_body_is_answered_without_a_panic(
            lines in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just(r#"{"index":{"_index":"logs"}}"#.to_owned()),
                    proptest::strategy::Just(r#"{"create":{}}"#.to_owned()),
                    proptest::strategy::Just(r#"{"delete":{"_index":"x"}}"#.to_owned()),
                    r#"\{"@timestamp":(-?[0-9]{1,25}(\.[0-9]{1,3})?(e[0-9]{1,3})?|"[0-9TZ:.-]{0,30}"),"log":"[a-z ]{0,10}"\}"#,
                    proptest::prelude::any::<String>(),
                ],
                0..12,
            )
        ) {
            if let Ok(items) = parse(&lines.join("\n"), None) {
                for item in items {
                    if let Item::Accepted { record, .. } = item {
                        proptest::prop_assert!(sluice_proto::time::in_window(record.timestamp_ns));
                    }
                }
            }
        }
    }
}
