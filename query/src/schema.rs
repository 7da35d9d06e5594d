//! The fields of a stored record and the conversion from the wire type.

use sluice_proto::{LogRecord, Stream};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::{TantivyDocument, Term};

use crate::tokenizer::TOKENIZER_NAME;

/// Keyword fields a query can filter on with `field:value`, in the order the API lists them.
pub const KEYWORD_FIELDS: [&str; 10] = [
    "cluster",
    "namespace",
    "pod",
    "pod_uid",
    "container",
    "node",
    "stream",
    "level",
    "file",
    "id",
];

/// Handles to every field of the log schema.
#[derive(Debug, Clone)]
pub struct LogSchema {
    pub schema: Schema,
    pub id: Field,
    pub source: Field,
    pub offset: Field,
    pub ts: Field,
    pub ingest_ts: Field,
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
}

impl LogSchema {
    pub fn new() -> Self {
        let mut b = Schema::builder();
        let keyword = STRING | STORED | FAST;
        let message_options = TextOptions::default().set_stored().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(TOKENIZER_NAME)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        );
        let id = b.add_text_field("id", STRING | STORED);
        let source = b.add_u64_field("source", INDEXED | FAST);
        let offset = b.add_u64_field("offset", FAST);
        let ts = b.add_i64_field("ts", INDEXED | FAST | STORED);
        let ingest_ts = b.add_i64_field("ingest_ts", FAST | STORED);
        let cluster = b.add_text_field("cluster", keyword.clone());
        let namespace = b.add_text_field("namespace", keyword.clone());
        let pod = b.add_text_field("pod", keyword.clone());
        let pod_uid = b.add_text_field("pod_uid", keyword.clone());
        let container = b.add_text_field("container", keyword.clone());
        let node = b.add_text_field("node", keyword.clone());
        let stream = b.add_text_field("stream", keyword.clone());
        let level = b.add_text_field("level", keyword.clone());
        let file = b.add_text_field("file", keyword);
        let message = b.add_text_field("message", message_options);
        let flags = b.add_u64_field("flags", STORED);
        Self {
            schema: b.build(),
            id,
            source,
            offset,
            ts,
            ingest_ts,
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
        }
    }

    /// The field behind a `field:value` filter, if `name` is one.
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
            "id" => self.id,
            _ => return None,
        })
    }

    /// The term that finds the record with this id.
    pub fn id_term(&self, id: &sluice_proto::RecordId) -> Term {
        Term::from_field_text(self.id, &id.to_string())
    }

    pub fn to_document(&self, r: &LogRecord) -> TantivyDocument {
        let mut doc = TantivyDocument::new();
        doc.add_text(self.id, r.id().to_string());
        doc.add_u64(self.source, r.source);
        doc.add_u64(self.offset, r.offset);
        doc.add_i64(self.ts, r.timestamp_ns);
        doc.add_i64(self.ingest_ts, r.ingest_time_ns);
        doc.add_text(self.cluster, &r.cluster);
        doc.add_text(self.namespace, &r.namespace);
        doc.add_text(self.pod, &r.pod);
        doc.add_text(self.pod_uid, &r.pod_uid);
        doc.add_text(self.container, &r.container);
        doc.add_text(self.node, &r.node);
        doc.add_text(self.stream, Stream::try_from(r.stream).unwrap_or_default().name());
        doc.add_text(self.level, &r.level);
        doc.add_text(self.file, &r.file_path);
        doc.add_text(self.message, &r.message);
        doc.add_u64(self.flags, u64::from(r.flags));
        doc
    }
}

impl Default for LogSchema {
    fn default() -> Self {
        Self::new()
    }
}
