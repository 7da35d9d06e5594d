//! How a record travels as a Kafka message, both ways: the sink encodes, the Kafka source
//! decodes. The `content-type` header names the encoding; a message without one is read as
//! a JSON document (or, failing that, as a plain line), so other producers can feed the
//! source too.

use prost::Message;
use serde_json::{Map, Value};
use sluice_proto::id::source_key;
use sluice_proto::{LogBatch, LogRecord, RecordId};

use crate::sinks::document::Document;

pub(crate) const CONTENT_TYPE: &str = "content-type";
const JSON: &str = "application/json";
const PROTOBUF: &str = "application/x-protobuf; message=sluice.v1.LogRecord";
const PROTOBUF_BATCH: &str = "application/x-protobuf; message=sluice.v1.LogBatch";
const NDJSON: &str = "application/x-ndjson";
/// The field number of `records` in `LogBatch`.
const BATCH_RECORDS_FIELD: u32 = 3;
/// `LogBatch.zstd_blocks` and `LogBatch.enrichment`.
const BATCH_BLOCKS_FIELD: u32 = 4;
const BATCH_ENRICHMENT_FIELD: u32 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The document the Elasticsearch sink indexes: readable by any consumer.
    Json,
    /// The record as the agent sent it: smaller, and exact (ingest time, flags, labels).
    Protobuf,
    /// The records of one key (namespace/pod) from one WAL frame in one message, a
    /// `LogBatch`: librdkafka's cost is per message, so this takes several times less CPU
    /// per record (bench/: `sluice-bench sinks`). For Sluice's own `--kafka-source`, as
    /// Loki's Kafka ingest writes whole push requests.
    ProtobufBatch,
    /// The JSON documents of one key from one WAL frame in one message, one per line: as
    /// cheap as `protobuf-batch`, and readable by any consumer with a line codec.
    Ndjson,
}

impl std::str::FromStr for Encoding {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(Self::Json),
            "protobuf" => Ok(Self::Protobuf),
            "protobuf-batch" => Ok(Self::ProtobufBatch),
            "ndjson" => Ok(Self::Ndjson),
            other => Err(format!(
                "unknown encoding {other:?}: use json, protobuf, protobuf-batch or ndjson"
            )),
        }
    }
}

impl Encoding {
    pub(super) fn content_type(self) -> &'static str {
        match self {
            Self::Json => JSON,
            Self::Protobuf => PROTOBUF,
            Self::ProtobufBatch => PROTOBUF_BATCH,
            Self::Ndjson => NDJSON,
        }
    }

    /// The length of `r`'s part of a batch message when it is known without encoding it
    /// (`protobuf-batch`, which is then encoded straight into the message).
    pub(super) fn part_len(self, r: &LogRecord) -> Option<usize> {
        (self == Self::ProtobufBatch)
            .then(|| prost::encoding::message::encoded_len(BATCH_RECORDS_FIELD, r))
    }

    /// A `protobuf-batch` message of one block as it is, with the metadata its records get.
    /// Written field by field: a `LogBatch` value would copy the block once more.
    pub(super) fn forward_block(block: &[u8], enrichment: Option<LogRecord>) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            block.len() + 16 + enrichment.as_ref().map_or(0, |e| e.encoded_len() + 8),
        );
        prost::encoding::encode_key(
            BATCH_BLOCKS_FIELD,
            prost::encoding::WireType::LengthDelimited,
            &mut out,
        );
        prost::encoding::encode_varint(block.len() as u64, &mut out);
        out.extend_from_slice(block);
        if let Some(e) = enrichment {
            prost::encoding::message::encode(BATCH_ENRICHMENT_FIELD, &e, &mut out);
        }
        out
    }

    /// Appends `r`'s `protobuf-batch` part to `out`.
    pub(super) fn encode_part_into(r: &LogRecord, out: &mut Vec<u8>) {
        prost::encoding::message::encode(BATCH_RECORDS_FIELD, r, out);
    }

    /// Whether a message holds the records of one key rather than one record.
    pub(super) fn batches(self) -> bool {
        matches!(self, Self::ProtobufBatch | Self::Ndjson)
    }

    /// One record's message, or its part of a batch message: the parts of a batch encoding
    /// laid end to end are a whole message (a `LogBatch`'s repeated field, or lines).
    pub(super) fn encode(self, r: &LogRecord) -> Vec<u8> {
        match self {
            Self::Json => Document::of(r).to_json().into_bytes(),
            Self::Protobuf => r.encode_to_vec(),
            Self::ProtobufBatch => {
                let mut out = Vec::with_capacity(self.part_len(r).unwrap_or_default());
                Self::encode_part_into(r, &mut out);
                out
            }
            Self::Ndjson => {
                let mut line = Document::of(r).to_json().into_bytes();
                line.push(b'\n');
                line
            }
        }
    }
}

/// Where a message came from: what gives a record without an id of its own a stable one.
#[derive(Clone, Copy)]
pub(crate) struct Origin<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// The line within an `ndjson` message.
    pub line: Option<usize>,
}

/// The records a message carries, and what was wrong with it if it could not be read as
/// what it claims to be (it is then kept as one plain line, never dropped).
pub(crate) fn decode(
    payload: &[u8],
    content_type: Option<&str>,
    origin: &Origin<'_>,
) -> (Vec<LogRecord>, Option<String>) {
    let broken = |reason: String| (vec![plain(payload, origin)], Some(reason));
    match content_type {
        Some(PROTOBUF_BATCH) => match LogBatch::decode(payload) {
            Ok(batch) => match batch.into_records() {
                Ok(records) => (records, None),
                Err(e) => broken(format!("undecodable record block: {e}")),
            },
            Err(e) => broken(format!("undecodable protobuf batch: {e}")),
        },
        Some(NDJSON) => {
            let mut records = Vec::new();
            for (i, line) in payload.split(|b| *b == b'\n').filter(|l| !l.is_empty()).enumerate() {
                // Lines without a `sluice_id` get one from their message and place in it.
                let place = Origin { line: Some(i), ..*origin };
                match serde_json::from_slice::<Value>(line) {
                    Ok(Value::Object(doc)) => records.push(from_document(doc, &place)),
                    _ => records.push(plain(line, &place)),
                }
            }
            (records, None)
        }
        Some(t) if t.starts_with("application/x-protobuf") => match LogRecord::decode(payload) {
            Ok(record) => (vec![record], None),
            Err(e) => broken(format!("undecodable protobuf record: {e}")),
        },
        _ => match serde_json::from_slice::<Value>(payload) {
            Ok(Value::Object(doc)) => (vec![from_document(doc, origin)], None),
            _ if content_type.is_some_and(|t| t.starts_with(JSON)) => {
                broken("the payload is not a JSON object".to_owned())
            }
            _ => (vec![plain(payload, origin)], None),
        },
    }
}

fn origin_id(origin: &Origin<'_>) -> RecordId {
    let offset = origin.offset.max(0) as u64;
    match origin.line {
        None => RecordId::new(
            source_key(&format!("kafka/{}/{}", origin.topic, origin.partition), 0),
            offset,
        ),
        Some(line) => RecordId::new(
            source_key(&format!("kafka/{}/{}/ndjson", origin.topic, origin.partition), 0),
            (offset << 20) | (line as u64 & ((1 << 20) - 1)),
        ),
    }
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
    let (node, file, owner) = (text("node"), text("file"), text("owner"));
    let event = doc.get("event").and_then(Value::as_object).map(kube_event);
    let mut record = crate::sources::bulk::to_record(origin.topic, doc);
    if event.is_some() {
        record.stream = sluice_proto::Stream::Event as i32;
        record.event = event;
    }
    record.node = node.unwrap_or(record.node);
    record.file_path = file.unwrap_or(record.file_path);
    record.owner = owner.unwrap_or_default();
    record.source = id.source;
    record.offset = id.offset;
    record.labels = labels;
    record
}

/// The `event` object of a Kubernetes event record's document (see `sinks::document`).
fn kube_event(event: &Map<String, Value>) -> sluice_proto::KubeEvent {
    let text = |key: &str| event.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
    let time = |key: &str| {
        event
            .get(key)
            .and_then(Value::as_str)
            .and_then(|t| sluice_query::time::parse_time("event time", t).ok())
            .unwrap_or_default()
    };
    sluice_proto::KubeEvent {
        uid: text("uid"),
        reason: text("reason"),
        r#type: text("type"),
        object_kind: text("object_kind"),
        object_name: text("object_name"),
        count: event.get("count").and_then(Value::as_u64).unwrap_or(1),
        first_seen_ns: time("first_seen"),
        last_seen_ns: time("last_seen"),
        reporter: text("reporter"),
    }
}

/// The payload as one line of text, lossily if it is not UTF-8 (and flagged so).
fn plain(payload: &[u8], origin: &Origin<'_>) -> LogRecord {
    let id = origin_id(origin);
    let (message, flags) = match std::str::from_utf8(payload) {
        Ok(text) => (text.trim_end_matches(['\n', '\r']).to_owned(), 0),
        Err(_) => (
            String::from_utf8_lossy(payload).trim_end_matches(['\n', '\r']).to_owned(),
            sluice_proto::flags::INVALID_UTF8,
        ),
    };
    let now = crate::sources::now_ns();
    LogRecord {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin<'static> {
        Origin { topic: "logs", partition: 2, offset: 41, line: None }
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
        assert_eq!(proto, (vec![r.clone()], None));
        let other = LogRecord { offset: 1300, message: "next".into(), ..r.clone() };
        let parts = |e: Encoding| [e.encode(&r), e.encode(&other)].concat();
        let batch = decode(&parts(Encoding::ProtobufBatch), Some(PROTOBUF_BATCH), &origin());
        assert_eq!(batch, (vec![r.clone(), other.clone()], None));
        let (lines, problem) = decode(&parts(Encoding::Ndjson), Some(NDJSON), &origin());
        assert_eq!(problem, None);
        assert_eq!(lines.iter().map(|l| l.id()).collect::<Vec<_>>(), [r.id(), other.id()]);
        assert_eq!(lines[1].message, "next");
        let foreign = decode(b"{\"message\":\"a\"}\nplain b\n", Some(NDJSON), &origin()).0;
        assert_eq!((foreign[0].message.as_str(), foreign[1].message.as_str()), ("a", "plain b"));
        assert_ne!(foreign[0].id(), foreign[1].id(), "each line its own id");
        let (json, problem) = decode(&Encoding::Json.encode(&r), Some(JSON), &origin());
        assert_eq!(problem, None);
        let json = &json[0];
        assert_eq!(json.id(), r.id());
        assert_eq!(
            (json.timestamp_ns, &json.namespace, &json.pod, &json.message, &json.labels),
            (r.timestamp_ns, &r.namespace, &r.pod, &r.message, &r.labels)
        );
        assert_eq!((&json.container, &json.level, &json.node), (&r.container, &r.level, &r.node));
    }

    #[test]
    fn an_event_record_keeps_what_it_is_about_through_json() {
        let event = sluice_proto::KubeEvent {
            uid: "e-1".into(),
            reason: "BackOff".into(),
            r#type: "Warning".into(),
            object_kind: "Pod".into(),
            object_name: "pay-1".into(),
            count: 30,
            first_seen_ns: 1_796_032_000_000_000_000,
            last_seen_ns: 1_796_032_800_000_000_000,
            reporter: "kubelet".into(),
        };
        let r = LogRecord {
            stream: sluice_proto::Stream::Event as i32,
            event: Some(event),
            ..record()
        };
        let (json, problem) = decode(&Encoding::Json.encode(&r), Some(JSON), &origin());
        assert_eq!(problem, None);
        assert_eq!((json[0].stream, &json[0].event), (r.stream, &r.event));
        let plain = decode(&Encoding::Json.encode(&record()), Some(JSON), &origin()).0;
        assert_eq!((plain[0].stream, &plain[0].event), (sluice_proto::Stream::File as i32, &None));
    }

    #[test]
    fn foreign_messages_get_an_id_from_where_they_were_read() {
        let (r, problem) =
            decode(br#"{"message":"WARN disk low","namespace":"ops"}"#, None, &origin());
        let r = &r[0];
        assert_eq!(problem, None);
        assert_eq!(
            (r.message.as_str(), r.namespace.as_str(), r.level.as_str()),
            ("WARN disk low", "ops", "warn")
        );
        assert_eq!(r.offset, 41);
        let (again, _) =
            decode(br#"{"message":"WARN disk low","namespace":"ops"}"#, None, &origin());
        assert_eq!(again[0].id(), r.id(), "a redelivery has the same id");
        let (line, problem) = decode(b"plain \xff line\r\n", None, &origin());
        let line = &line[0];
        assert_eq!(problem, None);
        assert_eq!(line.message, "plain \u{fffd} line");
        assert_eq!(line.flags, sluice_proto::flags::INVALID_UTF8);
    }

    #[test]
    fn a_broken_message_is_kept_as_text_with_the_reason() {
        let (r, problem) = decode(b"\x0a\xff\xff", Some(PROTOBUF), &origin());
        assert!(problem.unwrap().contains("undecodable protobuf"));
        assert_eq!(r[0].offset, 41);
        let (r, problem) = decode(b"\x1a\xff\xff", Some(PROTOBUF_BATCH), &origin());
        assert!(problem.unwrap().contains("undecodable protobuf batch"));
        assert_eq!(r.len(), 1);
        let (_, problem) = decode(b"[1,2]", Some(JSON), &origin());
        assert!(problem.unwrap().contains("not a JSON object"));
    }
}
