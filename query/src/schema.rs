//! The fields of a stored record and the conversion from the wire type.

use std::ops::Bound;

use sluice_proto::{KubeEvent, LogRecord, Stream};
use tantivy::query::{BooleanQuery, Occur, RangeQuery, TermQuery};
use tantivy::schema::{
    FAST, Field, IndexRecordOption, STORED, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::{TantivyDocument, Term};

use crate::cjk::CJK_TOKENIZER_NAME;
use crate::tokenizer::TOKENIZER_NAME;

/// The field partitions sort their documents by.
pub const SHAPE_FIELD: &str = "shape";

/// Handles to every field of the log schema.
#[derive(Debug, Clone)]
pub struct LogSchema {
    pub schema: Schema,
    pub source: Field,
    pub offset: Field,
    pub ts: Field,
    pub seq: Field,
    pub cluster: Field,
    pub namespace: Field,
    pub pod: Field,
    pub pod_uid: Field,
    pub container: Field,
    pub node: Field,
    pub stream: Field,
    pub level: Field,
    pub file: Field,
    pub message: Field,
    pub flags: Field,
    /// The pod's controller (`ReplicaSet/pay-7d9f8`), from the collector's enrichment.
    pub owner: Field,
    /// One `key=value` term per pod label, from the collector's enrichment.
    pub labels: Field,
    /// The message's [`crate::shape::shape`], the key a partition sorts its documents by.
    pub shape: Field,
    /// What a Kubernetes event record is about (format 5): its reason (`BackOff`), type
    /// (`Warning`), object (`Pod/nginx-7d9f`) and that object's kind, and who reported it.
    pub reason: Field,
    pub event_type: Field,
    pub object: Field,
    pub object_kind: Field,
    pub reporter: Field,
    /// The event's uid, occurrence count and first and last seen times, shown with a hit.
    pub event_uid: Field,
    pub event_count: Field,
    pub event_first_seen: Field,
    pub event_last_seen: Field,
    /// The message's CJK runs as the terms [`crate::cjk`] describes (format 6); not stored, the
    /// message is.
    pub cjk: Field,
}

impl LogSchema {
    pub fn new() -> Self {
        let mut b = Schema::builder();
        // No field norms on any field: hits are ordered by time, never by relevance, so a
        // byte per document and field would buy nothing.
        let keyword_indexing = TextFieldIndexing::default()
            .set_tokenizer("raw")
            .set_fieldnorms(false)
            .set_index_option(IndexRecordOption::Basic);
        let keyword =
            TextOptions::default().set_stored().set_indexing_options(keyword_indexing.clone());
        let message_options = TextOptions::default().set_stored().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(TOKENIZER_NAME)
                .set_fieldnorms(false)
                // Neither frequencies (nothing is scored) nor positions: a phrase is checked
                // against the stored message instead (see `crate::phrase`).
                .set_index_option(IndexRecordOption::Basic),
        );
        // Only the keyword fields that facets and histogram splits count are fast fields:
        // columns for all nine strings would cost indexing time for nothing.
        let keyword_fast = keyword.clone().set_fast("raw");
        let source_options =
            TextOptions::default().set_indexing_options(keyword_indexing).set_fast("raw");
        // The record id is `source` and `offset` together; a text field for it would add a
        // unique term per record to the index for nothing (see `id_query`).
        // Numbers that a hit shows are read from their fast fields, not stored: nanosecond
        // times and offsets barely compress and would double the document store.
        // Range queries on a fast field scan its column (tantivy picks that path whenever the
        // field is fast), so `ts` and `seq` are not indexed too: nearly every record has a
        // `ts` of its own, and the unused terms cost a tenth of the index. `source` is
        // indexed: a context or a live follow asks for one source's records among millions.
        // The source key is a keyword (16 hex digits) rather than a u64: its column is then a
        // dictionary of the few sources a partition holds, a few bits per record, where a u64
        // column of hashes in shape order costs 64 (22 of 145 MiB of the bench's index).
        let source = b.add_text_field("source", source_options);
        let offset = b.add_u64_field("offset", FAST);
        let ts = b.add_i64_field("ts", FAST);
        // The store's commit number at the time the record was added: a live tail asks for
        // the records of the commits it has not seen, whatever their timestamps.
        let seq = b.add_u64_field("seq", FAST);
        let cluster = b.add_text_field("cluster", keyword_fast.clone());
        let namespace = b.add_text_field("namespace", keyword_fast.clone());
        let pod = b.add_text_field("pod", keyword_fast.clone());
        let pod_uid = b.add_text_field("pod_uid", keyword.clone());
        let container = b.add_text_field("container", keyword_fast.clone());
        let node = b.add_text_field("node", keyword.clone());
        let stream = b.add_text_field("stream", keyword.clone());
        let level = b.add_text_field("level", keyword_fast);
        let file = b.add_text_field("file", keyword.clone());
        let message = b.add_text_field("message", message_options);
        let flags = b.add_u64_field("flags", STORED);
        let owner = b.add_text_field("owner", keyword.clone());
        let labels = b.add_text_field("labels", keyword.clone());
        let shape = b.add_u64_field(SHAPE_FIELD, FAST);
        // Fields after `shape` came with formats 5 and 6; older partitions gain them when they
        // are opened (see `crate::store::upgrade`), so they must stay last, in this order.
        let reason = b.add_text_field("reason", keyword.clone());
        let event_type = b.add_text_field("event_type", keyword.clone());
        let object = b.add_text_field("object", keyword.clone());
        let object_kind = b.add_text_field("object_kind", keyword.clone());
        let reporter = b.add_text_field("reporter", keyword);
        let event_uid = b.add_text_field("event_uid", STORED);
        let event_count = b.add_u64_field("event_count", STORED);
        let event_first_seen = b.add_i64_field("event_first_seen", STORED);
        let event_last_seen = b.add_i64_field("event_last_seen", STORED);
        // Format 6; the message field's terms lost the CJK characters it holds.
        let cjk = b.add_text_field(
            "cjk",
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(CJK_TOKENIZER_NAME)
                    .set_fieldnorms(false)
                    .set_index_option(IndexRecordOption::Basic),
            ),
        );
        Self {
            schema: b.build(),
            source,
            offset,
            ts,
            seq,
            cluster,
            namespace,
            pod,
            pod_uid,
            container,
            node,
            stream,
            level,
            file,
            message,
            flags,
            owner,
            labels,
            shape,
            reason,
            event_type,
            object,
            object_kind,
            reporter,
            event_uid,
            event_count,
            event_first_seen,
            event_last_seen,
            cjk,
        }
    }

    /// Whether `name:` starts a filter: a keyword field, a label (`labels.app`), a numeric
    /// field, `id` or `source`.
    pub fn is_filter(&self, name: &str) -> bool {
        matches!(name, "id" | "source")
            || self.keyword_field(name).is_some()
            || label_key(name).is_some()
            || self.numeric_field(name).is_some()
    }

    /// The keyword fields that are also columns, so facets and histograms can count them.
    pub const COUNTABLE: [&'static str; 5] = ["cluster", "namespace", "pod", "container", "level"];

    /// The numeric field behind a range filter (`ts:>=…`, `offset:[a TO b]`).
    pub fn numeric_field(&self, name: &str) -> Option<(Field, NumericKind)> {
        Some(match name {
            "ts" => (self.ts, NumericKind::Time),
            "offset" => (self.offset, NumericKind::Unsigned),
            _ => return None,
        })
    }

    /// The keyword field behind a `field:value` filter, if `name` is one.
    pub fn keyword_field(&self, name: &str) -> Option<Field> {
        Some(match name {
            "cluster" => self.cluster,
            "namespace" => self.namespace,
            "pod" => self.pod,
            "pod_uid" => self.pod_uid,
            "container" => self.container,
            "node" => self.node,
            "stream" => self.stream,
            "level" => self.level,
            "file" => self.file,
            "owner" => self.owner,
            "reason" => self.reason,
            "event_type" => self.event_type,
            "object" => self.object,
            "object_kind" => self.object_kind,
            "reporter" => self.reporter,
            _ => return None,
        })
    }

    /// The query that finds the record with this id.
    pub fn id_query(&self, id: &sluice_proto::RecordId) -> BooleanQuery {
        self.source_range_query(id.source, id.offset, id.offset)
    }

    /// The records of `source` whose offsets are in `first..=last`.
    pub fn source_range_query(&self, source: u64, first: u64, last: u64) -> BooleanQuery {
        let (first, last) =
            (Term::from_field_u64(self.offset, first), Term::from_field_u64(self.offset, last));
        BooleanQuery::new(vec![
            (
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(self.source, &source_term(source)),
                    IndexRecordOption::Basic,
                )),
            ),
            (Occur::Must, Box::new(RangeQuery::new(Bound::Included(first), Bound::Included(last)))),
        ])
    }

    pub fn to_document(&self, r: &LogRecord, seq: u64) -> TantivyDocument {
        let mut doc = TantivyDocument::new();
        doc.add_u64(self.seq, seq);
        doc.add_text(self.source, source_term(r.source));
        doc.add_u64(self.offset, r.offset);
        doc.add_i64(self.ts, r.timestamp_ns);
        // An empty keyword is left out: no filter can ask for it, and each value costs a
        // term, a posting and stored bytes.
        let stream = Stream::try_from(r.stream).unwrap_or_default().name();
        for (field, value) in [
            (self.cluster, r.cluster.as_str()),
            (self.namespace, &r.namespace),
            (self.pod, &r.pod),
            (self.pod_uid, &r.pod_uid),
            (self.container, &r.container),
            (self.node, &r.node),
            (self.stream, stream),
            (self.level, &r.level),
            (self.file, &r.file_path),
        ] {
            if !value.is_empty() {
                doc.add_text(field, value);
            }
        }
        if !r.owner.is_empty() {
            doc.add_text(self.owner, &r.owner);
        }
        let mut labels: Vec<_> = r.labels.iter().collect();
        labels.sort();
        for (key, value) in labels {
            doc.add_text(self.labels, format!("{key}={value}"));
        }
        doc.add_u64(self.shape, crate::shape::shape(&r.message));
        doc.add_text(self.message, &r.message);
        // Only text outside ASCII can hold CJK; the check is far cheaper than a token pass.
        if !r.message.is_ascii() {
            doc.add_text(self.cjk, &r.message);
        }
        if r.flags != 0 {
            doc.add_u64(self.flags, u64::from(r.flags));
        }
        if let Some(event) = &r.event {
            self.add_event(&mut doc, event);
        }
        doc
    }

    fn add_event(&self, doc: &mut TantivyDocument, event: &KubeEvent) {
        let object = event.object();
        for (field, value) in [
            (self.reason, event.reason.as_str()),
            (self.event_type, &event.r#type),
            (self.object, &object),
            (self.object_kind, &event.object_kind),
            (self.reporter, &event.reporter),
            (self.event_uid, &event.uid),
        ] {
            if !value.is_empty() {
                doc.add_text(field, value);
            }
        }
        doc.add_u64(self.event_count, event.count);
        doc.add_i64(self.event_first_seen, event.first_seen_ns);
        doc.add_i64(self.event_last_seen, event.last_seen_ns);
    }
}

/// The term a source key is indexed as.
pub fn source_term(source: u64) -> String {
    format!("{source:016x}")
}

/// The label a `labels.<key>` filter names.
pub fn label_key(name: &str) -> Option<&str> {
    name.strip_prefix("labels.").filter(|k| !k.is_empty())
}

/// How a range filter reads its bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumericKind {
    /// Nanoseconds, written as RFC 3339 or as an integer.
    Time,
    Unsigned,
}

impl Default for LogSchema {
    fn default() -> Self {
        Self::new()
    }
}
