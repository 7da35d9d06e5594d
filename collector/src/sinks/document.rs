//! A record as a JSON document: what the Elasticsearch sink indexes and the Kafka sink's
//! `json` encoding sends, with the record id as `sluice_id` so a reader can keep it.
//!
//! A borrowed struct rather than `serde_json::json!`: building a `Value` map per record cost
//! a fifth of the Kafka sink's CPU (bench/: `sluice-bench sinks`).

use std::collections::HashMap;

use serde::Serialize;
use sluice_proto::{KubeEvent, LogRecord, Stream};

#[derive(Serialize)]
pub(crate) struct Document<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: String,
    message: &'a str,
    cluster: &'a str,
    namespace: &'a str,
    pod: &'a str,
    pod_uid: &'a str,
    container: &'a str,
    node: &'a str,
    stream: &'static str,
    level: &'a str,
    file: &'a str,
    flags: Vec<&'static str>,
    sluice_id: String,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    labels: &'a HashMap<String, String>,
    #[serde(skip_serializing_if = "str::is_empty")]
    owner: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<Event<'a>>,
}

/// A Kubernetes event record's `event` object.
#[derive(Serialize)]
struct Event<'a> {
    uid: &'a str,
    reason: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    object: String,
    object_kind: &'a str,
    object_name: &'a str,
    reporter: &'a str,
    count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_seen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_seen: Option<String>,
}

impl<'a> Event<'a> {
    fn of(e: &'a KubeEvent) -> Self {
        let seen = |ns: i64| (ns != 0).then(|| sluice_query::time::format_ts(ns));
        Self {
            uid: &e.uid,
            reason: &e.reason,
            kind: &e.r#type,
            object: e.object(),
            object_kind: &e.object_kind,
            object_name: &e.object_name,
            reporter: &e.reporter,
            count: e.count,
            first_seen: seen(e.first_seen_ns),
            last_seen: seen(e.last_seen_ns),
        }
    }
}

impl<'a> Document<'a> {
    pub(crate) fn of(r: &'a LogRecord) -> Self {
        Self {
            timestamp: sluice_query::time::format_ts(r.timestamp_ns),
            message: &r.message,
            cluster: &r.cluster,
            namespace: &r.namespace,
            pod: &r.pod,
            pod_uid: &r.pod_uid,
            container: &r.container,
            node: &r.node,
            stream: Stream::try_from(r.stream).unwrap_or_default().name(),
            level: &r.level,
            file: &r.file_path,
            flags: sluice_proto::flags::names(r.flags),
            sluice_id: r.id().to_string(),
            labels: &r.labels,
            owner: &r.owner,
            event: r.event.as_ref().map(Event::of),
        }
    }

    /// The document as one line of JSON.
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).expect("strings and lists serialize")
    }

    pub(crate) fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("strings and lists serialize")
    }
}
