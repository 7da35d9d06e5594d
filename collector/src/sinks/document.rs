//! A record as a JSON document: what the Elasticsearch sink indexes and the Kafka sink's
//! `json` encoding sends, with the record id as `sluice_id` so a reader can keep it.

use serde_json::{Value, json};
use sluice_proto::{LogRecord, Stream};

pub(crate) fn document(r: &LogRecord) -> Value {
    let stream = Stream::try_from(r.stream).unwrap_or_default().name();
    let mut doc = json!({
        "@timestamp": sluice_query::search::format_ts(r.timestamp_ns),
        "message": r.message,
        "cluster": r.cluster,
        "namespace": r.namespace,
        "pod": r.pod,
        "pod_uid": r.pod_uid,
        "container": r.container,
        "node": r.node,
        "stream": stream,
        "level": r.level,
        "file": r.file_path,
        "flags": sluice_proto::flags::names(r.flags),
        "sluice_id": r.id().to_string(),
    });
    if !r.labels.is_empty() {
        doc["labels"] = json!(r.labels);
    }
    doc
}
