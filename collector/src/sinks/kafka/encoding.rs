//! How a record travels as a Kafka message, both ways: the sink encodes, the Kafka source
//! decodes. The `content-type` header names the encoding; a message without one is read as
//! a JSON document (or, failing that, as a plain line), so other producers can feed the
//! source too.

use prost::Message;
use serde_json::{Map, Value};
use sluice_proto::id::source_key;
use sluice_proto::{LogRecord, RecordId};

use crate::sinks::document::document;

pub(crate) const CONTENT_TYPE: &str = "content-type";
const JSON: &str = "application/json";
const PROTOBUF: &str = "application/x-protobuf; message=sluice.v1.LogRecord";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The document the Elasticsearch sink indexes: readable by any consumer.
    Json,
    /// The record as the agent sent it: smaller, and exact (ingest time, flags, labels).
    Protobuf,
}

impl std::str::FromStr for Encoding {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(Self::Json),
            "protobuf" => Ok(Self::Protobuf),
            other => Err(format!("unknown encoding {other:?}: use json or protobuf")),
        }
    }
}

impl Encoding {
    pub(super) fn content_type(self) -> &'static str {
        match self {
            Self::Json => JSON,
            Self::Protobuf => PROTOBUF,
        }
    }

    pub(super) fn encode(self, r: &LogRecord) -> Vec<u8> {
        match self {
            Self::Json => serde_json::to_vec(&document(r)).expect("a JSON value serializes"),
            Self::Protobuf => r.encode_to_vec(),
        }
    }
}

/// Where a message came from: what gives a record without an id of its own a stable one.
pub(crate) struct Origin<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

/// The record a message carries, and what was wrong with it if it could not be read as
/// what it claims to be (it is then kept as a plain line, never dropped).
pub(crate) fn decode(
    payload: &[u8],
    content_type: Option<&str>,
    origin: &Origin<'_>,
) -> (LogRecord, Option<String>) {
    if content_type.is_some_and(|t| t.starts_with("application/x-protobuf")) {
        match LogRecord::decode(payload) {
            Ok(record) => return (record, None),
            Err(e) => {
                let (record, _) = plain(payload, origin);
                return (record, Some(format!("undecodable protobuf record: {e}")));
            }
        }
    }
    match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(doc)) => (from_document(doc, origin), None),
        _ if content_type.is_some_and(|t| t.starts_with(JSON)) => {
            let (record, _) = plain(payload, origin);
            (record, Some("the payload is not a JSON object".to_owned()))
        }
        _ => plain(payload, origin),
    }
}

fn origin_id(origin: &Origin<'_>) -> RecordId {
    RecordId::new(
        source_key(&format!("kafka/{}/{}", origin.topic, origin.partition), 0),
        origin.offset.max(0) as u64,
    )
}

fn from_document(doc: Map<String, Value>, origin: &Origin<'_>) -> LogRecord {
    let id = doc
        .get("sluice_id")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<RecordId>().ok())
        .unwrap_or_else(|| origin_id(origin));
    let labels: std::collections::HashMap<String, String> = doc
        .get("labels")
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
        .unwrap_or_default();
    let text = |key: &str| doc.get(key).and_then(Value::as_str).map(str::to_owned);
    let (node, file) = (text("node"), text("file"));
    let mut record = crate::bulk::to_record(origin.topic, doc);
    record.node = node.unwrap_or(record.node);
    record.file_path = file.unwrap_or(record.file_path);
    record.source = id.source;
    record.offset = id.offset;
    record.labels = labels;
    record
}

/// The payload as one line of text, lossily if it is not UTF-8 (and flagged so).
fn plain(payload: &[u8], origin: &Origin<'_>) -> (LogRecord, Option<String>) {
    let id = origin_id(origin);
    let (message, flags) = match std::str::from_utf8(payload) {
        Ok(text) => (text.trim_end_matches(['\n', '\r']).to_owned(), 0),
        Err(_) => (
            String::from_utf8_lossy(payload).trim_end_matches(['\n', '\r']).to_owned(),
            sluice_proto::flags::INVALID_UTF8,
        ),
    };
    let now = crate::external::now_ns();
    let record = LogRecord {
        source: id.source,
        offset: id.offset,
        timestamp_ns: now,
        ingest_time_ns: now,
        file_path: format!("kafka/{}", origin.topic),
        level: message
            .split_whitespace()
            .next()
            .and_then(sluice_proto::level::canonical)
            .unwrap_or_default()
            .to_owned(),
        message,
        flags,
        stream: sluice_proto::Stream::File as i32,
        ..LogRecord::default()
    };
    (record, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin<'static> {
        Origin { topic: "logs", partition: 2, offset: 41 }
    }

    fn record() -> LogRecord {
        LogRecord {
            source: 77,
            offset: 1234,
            timestamp_ns: 1_796_032_800_123_456_789,
            namespace: "prod".into(),
            pod: "pay-1".into(),
            container: "app".into(),
            level: "error".into(),
            message: "订单创建失败 id=9".into(),
            labels: [("app".to_owned(), "pay".to_owned())].into(),
            ..LogRecord::default()
        }
    }

    #[test]
    fn both_encodings_keep_the_record_and_its_id() {
        let r = record();
        let proto = decode(&Encoding::Protobuf.encode(&r), Some(PROTOBUF), &origin());
        assert_eq!(proto, (r.clone(), None));
        let (json, problem) = decode(&Encoding::Json.encode(&r), Some(JSON), &origin());
        assert_eq!(problem, None);
        assert_eq!(json.id(), r.id());
        assert_eq!(
            (json.timestamp_ns, &json.namespace, &json.pod, &json.message, &json.labels),
            (r.timestamp_ns, &r.namespace, &r.pod, &r.message, &r.labels)
        );
        assert_eq!((&json.container, &json.level, &json.node), (&r.container, &r.level, &r.node));
    }

    #[test]
    fn foreign_messages_get_an_id_from_where_they_were_read() {
        let (r, problem) =
            decode(br#"{"message":"WARN disk low","namespace":"ops"}"#, None, &origin());
        assert_eq!(problem, None);
        assert_eq!(
            (r.message.as_str(), r.namespace.as_str(), r.level.as_str()),
            ("WARN disk low", "ops", "warn")
        );
        assert_eq!(r.offset, 41);
        let (again, _) =
            decode(br#"{"message":"WARN disk low","namespace":"ops"}"#, None, &origin());
        assert_eq!(again.id(), r.id(), "a redelivery has the same id");
        let (line, problem) = decode(b"plain \xff line\r\n", None, &origin());
        assert_eq!(problem, None);
        assert_eq!(line.message, "plain \u{fffd} line");
        assert_eq!(line.flags, sluice_proto::flags::INVALID_UTF8);
    }

    #[test]
    fn a_broken_message_is_kept_as_text_with_the_reason() {
        let (r, problem) = decode(b"\x0a\xff\xff", Some(PROTOBUF), &origin());
        assert!(problem.unwrap().contains("undecodable protobuf"));
        assert_eq!(r.offset, 41);
        let (_, problem) = decode(b"[1,2]", Some(JSON), &origin());
        assert!(problem.unwrap().contains("not a JSON object"));
    }
}
