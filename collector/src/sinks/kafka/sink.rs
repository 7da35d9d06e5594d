use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use prost::Message;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _};
use serde_json::json;
use sluice_proto::LogRecord;

use super::config::KafkaConfig;
use super::encoding::{CONTENT_TYPE, Encoding};
use super::service::{self, Producer};
use crate::sink::{Sink, SinkError};
use crate::sinks::dead_letter::DeadLetters;
use crate::sinks::document::Document;
use crate::sinks::template;
use crate::wal_frame::{Frame, Metrics};

/// How long the sink waits when librdkafka's queue is full before it tries again.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(5);

/// A message of the open transaction, kept until it commits: an abort sends it again.
struct Pending {
    topic: String,
    key: String,
    payload: Vec<u8>,
    content_type: &'static str,
    /// The message's Kafka timestamp: its (first) record's time, in milliseconds, so that
    /// time-based lookups (`offsetsForTimes`) and retention follow the logs' own clock.
    timestamp_ms: i64,
}

pub struct KafkaSink {
    config: KafkaConfig,
    /// `None` until opened, and again after a fatal error (a new one is made and fences it).
    producer: Option<Arc<Producer>>,
    /// Messages of the transaction in progress.
    pending: Vec<Pending>,
    pending_bytes: usize,
    /// Whether `pending` is in an open transaction at the broker as it stands; false after an
    /// abort (or a half-done write), when it must be sent again in a new one.
    in_transaction: bool,
    /// The WAL position the pending messages reach, and the one last committed.
    end: u64,
    committed: u64,
    dead_letters: DeadLetters,
    /// The topic when the template has no placeholders: one name for every record.
    fixed_topic: Option<String>,
}

impl KafkaSink {
    pub fn new(config: KafkaConfig) -> Result<Self, SinkError> {
        let dead_letters = DeadLetters::open(&config.state_dir)?;
        let fixed_topic =
            (!config.topic.contains('{')).then(|| topic_name(&config.topic, &LogRecord::default()));
        Ok(Self {
            fixed_topic,
            config,
            producer: None,
            pending: Vec::new(),
            pending_bytes: 0,
            in_transaction: false,
            end: 0,
            committed: 0,
            dead_letters,
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Producer) -> Result<T, KafkaError> + Send + 'static,
    ) -> Result<T, KafkaError> {
        let producer = self.producer.clone().expect("the sink is open");
        tokio::task::spawn_blocking(move || work(&producer))
            .await
            .map_err(|_| KafkaError::Canceled)?
    }

    /// Makes sure a producer exists and a transaction holding every pending message is open.
    async fn ready(&mut self) -> Result<(), SinkError> {
        if self.producer.is_none() {
            let config = self.config.clone();
            let producer = tokio::task::spawn_blocking(move || service::producer(&config))
                .await
                .map_err(|e| SinkError(format!("Kafka producer task failed: {e}")))?
                .map_err(SinkError)?;
            self.producer = Some(Arc::new(producer));
            self.in_transaction = false;
        }
        if !self.in_transaction {
            self.blocking(|p| p.begin_transaction()).await.map_err(|e| self.failed("begin", e))?;
            self.in_transaction = true;
            for i in 0..self.pending.len() {
                if let Err(e) = self.produce(i).await {
                    self.in_transaction = false;
                    let _ = self.blocking(|p| p.abort_transaction(service::CALL_TIMEOUT)).await;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Hands pending message `i` to librdkafka, waiting while its queue is full.
    async fn produce(&self, i: usize) -> Result<(), SinkError> {
        let producer = self.producer.as_ref().expect("the sink is open");
        let m = &self.pending[i];
        loop {
            let headers = OwnedHeaders::new()
                .insert(Header { key: CONTENT_TYPE, value: Some(m.content_type) });
            let record = BaseRecord::to(&m.topic)
                .key(&m.key)
                .payload(&m.payload)
                .headers(headers)
                .timestamp(m.timestamp_ms);
            match producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    metrics::counter!("sluice_sink_kafka_queue_full_total").increment(1);
                    tokio::time::sleep(QUEUE_FULL_WAIT).await;
                }
                Err((e, _)) => {
                    return Err(SinkError(format!(
                        "cannot send to Kafka topic {:?}: {e}",
                        m.topic
                    )));
                }
            }
        }
    }

    /// The error for a failed transaction call, after doing what it asks: an abortable
    /// error aborts (the pending messages go again in the next transaction); a fatal one
    /// drops the producer (a new one fences it and starts over).
    fn failed(&mut self, what: &str, e: KafkaError) -> SinkError {
        let rd = match &e {
            KafkaError::Transaction(rd) => Some(rd.clone()),
            _ => None,
        };
        if rd.as_ref().is_some_and(|rd| rd.is_fatal()) {
            tracing::error!(error = %e, id = %self.config.transactional_id, "fatal Kafka producer error (is another collector using this transactional id?); starting a new producer");
            self.producer = None;
            self.in_transaction = false;
        } else if rd.as_ref().is_some_and(|rd| rd.txn_requires_abort()) {
            self.in_transaction = false;
            if let Some(producer) = self.producer.clone()
                && let Err(abort) = producer.abort_transaction(service::CALL_TIMEOUT)
            {
                tracing::warn!(error = %abort, "cannot abort the Kafka transaction; starting a new producer");
                self.producer = None;
            }
        }
        metrics::counter!("sluice_sink_kafka_transaction_errors_total").increment(1);
        SinkError(format!("kafka transaction {what} failed: {e}"))
    }

    async fn commit(&mut self) -> Result<(), SinkError> {
        if self.end == self.committed && self.pending.is_empty() {
            return Ok(());
        }
        self.ready().await?;
        let position = self.end.to_string();
        let cursor = BaseRecord::<str, str>::to(&self.config.cursor_topic)
            .key(self.config.transactional_id.as_str())
            .payload(position.as_str())
            .partition(0);
        let sent = self.producer.as_ref().expect("ready").send(cursor).map_err(|(e, _)| e);
        if let Err(e) = sent {
            return Err(self.failed("cursor", e));
        }
        let result = self.blocking(|p| p.commit_transaction(service::CALL_TIMEOUT)).await;
        match result {
            Ok(()) => {
                metrics::counter!("sluice_sink_kafka_delivered_total")
                    .increment(self.pending.len() as u64);
                self.pending.clear();
                self.pending_bytes = 0;
                self.in_transaction = false;
                self.committed = self.end;
                Ok(())
            }
            // Retriable (a timeout, a broker away): the same commit is tried again; the
            // extra cursor message it carries says the same thing.
            Err(KafkaError::Transaction(rd)) if rd.is_retriable() => {
                metrics::counter!("sluice_sink_kafka_transaction_errors_total").increment(1);
                Err(SinkError(format!("kafka commit did not finish, retrying: {rd}")))
            }
            Err(e) => Err(self.failed("commit", e)),
        }
    }
}

impl KafkaSink {
    fn topic(&self, r: &LogRecord) -> String {
        match &self.fixed_topic {
            Some(topic) => topic.clone(),
            None => topic_name(&self.config.topic, r),
        }
    }

    /// `protobuf-batch` for an agent's frame: each block goes on as the agent compressed it,
    /// in a `LogBatch` of its own with its pod's metadata beside it, so its records are
    /// neither decoded nor encoded again (that was most of this sink's CPU). The block's
    /// shared fields give the key and topic: an agent's block holds one file's records.
    /// `None` when a block cannot go so (damaged, over the size limit, no topic name, or a
    /// topic named by date, which a block's records need not share): the frame then goes
    /// record by record, with dead letters.
    fn block_messages(
        &self,
        frame: &Frame,
        blocks: &[prost::bytes::Bytes],
    ) -> Option<Vec<Pending>> {
        if self.config.topic.contains("{yyyy") {
            return None;
        }
        let mut out = Vec::with_capacity(blocks.len());
        let content_type = self.config.encoding.content_type();
        for block in blocks {
            let head = sluice_proto::block::block_head(block).ok()?;
            let (common, Some(first)) = (head.common, head.first) else { continue };
            let topic = self.topic(&common);
            let enrichment = frame.pod_metadata(&common.pod_uid, head.records);
            let payload = Encoding::forward_block(block, enrichment);
            if payload.len() > self.config.max_message_bytes || topic.is_empty() {
                return None;
            }
            let key = message_key(&common);
            out.push(Pending { topic, key, payload, content_type, timestamp_ms: millis(&first) });
        }
        Some(out)
    }

    /// The messages for `records` (one each, or one per key for a batch encoding), and
    /// dead letters for those no message can carry.
    fn messages(&self, records: &[LogRecord]) -> (Vec<Pending>, Vec<serde_json::Value>) {
        let max = self.config.max_message_bytes;
        let content_type = self.config.encoding.content_type();
        let mut dead = Vec::new();
        let mut refuse = |r: &LogRecord, topic: &str, size: usize| {
            let reason = if topic.is_empty() {
                format!("the topic template {:?} gives an empty name", self.config.topic)
            } else {
                format!("the message is {size} bytes, over the limit of {max}")
            };
            dead.push(
                json!({"topic": topic, "reason": reason, "document": Document::of(r).to_value()}),
            );
        };
        let mut out = Vec::new();
        if !self.config.encoding.batches() {
            for r in records {
                let (topic, payload) = (self.topic(r), self.config.encoding.encode(r));
                if payload.len() > max || topic.is_empty() {
                    refuse(r, &topic, payload.len());
                } else {
                    out.push(Pending {
                        topic,
                        key: message_key(r),
                        payload,
                        content_type,
                        timestamp_ms: millis(r),
                    });
                }
            }
            return (out, dead);
        }
        // Records' parts grouped by topic and key in first-seen order, each group cut into
        // messages under the size limit; order within a key is kept.
        let mut groups: Vec<(String, String, Vec<Part<'_>>)> = Vec::new();
        let mut index: HashMap<(String, String), usize> = HashMap::new();
        let encoding = self.config.encoding;
        for r in records {
            let (topic, key) = (self.topic(r), message_key(r));
            let part = match encoding.part_len(r) {
                Some(len) => Part::Record(r, len),
                None => Part::Encoded(encoding.encode(r), millis(r)),
            };
            if part.len() > max || topic.is_empty() {
                refuse(r, &topic, part.len());
                continue;
            }
            let i = *index.entry((topic.clone(), key.clone())).or_insert_with(|| {
                groups.push((topic, key, Vec::new()));
                groups.len() - 1
            });
            groups[i].2.push(part);
        }
        for (topic, key, parts) in groups {
            // Each message is sized once: growing megabyte payloads by doubling cost more
            // than encoding them (fresh pages to zero, copies).
            let mut left: usize = parts.iter().map(Part::len).sum();
            let mut payload: Vec<u8> = Vec::with_capacity(left.min(max));
            let mut first_ms = parts.first().map_or(0, Part::millis);
            for part in parts {
                if payload.len() + part.len() > max {
                    let full = std::mem::replace(&mut payload, Vec::with_capacity(left.min(max)));
                    out.push(Pending {
                        topic: topic.clone(),
                        key: key.clone(),
                        payload: full,
                        content_type,
                        timestamp_ms: first_ms,
                    });
                    first_ms = part.millis();
                }
                left -= part.len();
                match part {
                    Part::Record(r, _) => Encoding::encode_part_into(r, &mut payload),
                    Part::Encoded(bytes, _) => payload.extend_from_slice(&bytes),
                }
            }
            out.push(Pending { topic, key, payload, content_type, timestamp_ms: first_ms });
        }
        (out, dead)
    }
}

impl KafkaSink {
    /// The message for a frame of OTLP metrics: the request as the client sent it, or, when
    /// that is over the size limit, one per resource; a dead letter for a resource over the
    /// limit alone.
    fn metric_messages(&self, metrics: &Metrics) -> (Vec<Pending>, Vec<serde_json::Value>) {
        let topic = &self.config.metrics_topic;
        let now_ms = crate::sources::now_ns().div_euclid(1_000_000);
        let message = |key: String, payload: Vec<u8>| Pending {
            topic: topic.clone(),
            key,
            payload,
            content_type: OTLP_METRICS,
            timestamp_ms: now_ms,
        };
        let Ok(request) = ExportMetricsServiceRequest::decode(&metrics.request[..]) else {
            tracing::error!("skipping an undecodable metrics frame");
            metrics::counter!("sluice_collector_wal_undecodable_frames_total").increment(1);
            return (Vec::new(), Vec::new());
        };
        if metrics.request.len() <= self.config.max_message_bytes {
            let key = request.resource_metrics.first().map(service_key).unwrap_or_default();
            return (vec![message(key, metrics.request.to_vec())], Vec::new());
        }
        let (mut out, mut dead) = (Vec::new(), Vec::new());
        for resource in request.resource_metrics {
            let key = service_key(&resource);
            let payload =
                ExportMetricsServiceRequest { resource_metrics: vec![resource] }.encode_to_vec();
            if payload.len() > self.config.max_message_bytes {
                let reason = format!(
                    "the metrics of one resource are {} bytes, over the limit of {}",
                    payload.len(),
                    self.config.max_message_bytes
                );
                dead.push(json!({"topic": topic, "reason": reason, "service": key}));
            } else {
                out.push(message(key, payload));
            }
        }
        (out, dead)
    }
}

/// The key of a resource's metrics: its `service.name`, so one service's metrics stay in
/// order on one partition.
fn service_key(resource: &ResourceMetrics) -> String {
    let attributes = resource.resource.as_ref().map(|r| &r.attributes[..]).unwrap_or(&[]);
    crate::sources::otlp::attribute(attributes, "service.name").unwrap_or_default().to_owned()
}

/// The content type of a metrics message.
const OTLP_METRICS: &str = "application/x-protobuf; message=opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest";

#[async_trait]
impl Sink for KafkaSink {
    fn name(&self) -> &str {
        "kafka"
    }

    async fn open(&mut self) -> Result<u64, SinkError> {
        // Making the producer fences an earlier one with the same id and settles its open
        // transaction, so the cursor read next is final. It comes first because its polling
        // thread logs why brokers refuse us (TLS, SASL) at once; the admin client only times
        // out.
        self.ready().await?;
        service::ensure_cursor_topic(&self.config).await.map_err(SinkError)?;
        let config = self.config.clone();
        let cursor = tokio::task::spawn_blocking(move || service::read_cursor(&config))
            .await
            .map_err(|e| SinkError(format!("Kafka cursor task failed: {e}")))?
            .map_err(SinkError)?
            .unwrap_or(0);
        self.end = cursor;
        self.committed = cursor;
        Ok(cursor)
    }

    async fn write(&mut self, frame: Arc<Frame>, end: u64) -> Result<(), SinkError> {
        if self.pending_bytes >= self.config.transaction_bytes {
            self.commit().await?;
        }
        self.ready().await?;
        let first = self.pending.len();
        let forwarded = match frame.blocks() {
            Some(blocks) if self.config.encoding == Encoding::ProtobufBatch => {
                self.block_messages(&frame, blocks)
            }
            _ => None,
        };
        let (messages, dead) = match (forwarded, frame.metrics()) {
            (Some(m), _) => (m, Vec::new()),
            (None, Some(metrics)) => self.metric_messages(metrics),
            (None, None) => self.messages(frame.records()),
        };
        for m in messages {
            self.pending_bytes += m.payload.len();
            self.pending.push(m);
        }
        for i in first..self.pending.len() {
            if let Err(e) = self.produce(i).await {
                // Some of these records may be in the transaction already: it is abandoned,
                // and what was pending before them goes again in a new one.
                self.pending.truncate(first);
                self.pending_bytes = self.pending.iter().map(|p| p.payload.len()).sum();
                self.in_transaction = false;
                let _ = self.blocking(|p| p.abort_transaction(service::CALL_TIMEOUT)).await;
                return Err(e);
            }
        }
        if !dead.is_empty() {
            self.dead_letters.add(&dead).map_err(|e| {
                SinkError(format!("cannot write {}: {e}", self.dead_letters.path().display()))
            })?;
            metrics::counter!("sluice_sink_kafka_dead_letters_total").increment(dead.len() as u64);
            tracing::warn!(count = dead.len(), file = %self.dead_letters.path().display(), "records Kafka cannot take are in the dead-letter file");
        }
        self.end = end;
        Ok(())
    }

    async fn flush(&mut self) -> Result<u64, SinkError> {
        self.commit().await?;
        Ok(self.committed)
    }

    async fn healthcheck(&self) -> Result<(), SinkError> {
        let Some(producer) = self.producer.clone() else {
            return Err(SinkError("not connected to Kafka".to_owned()));
        };
        tokio::task::spawn_blocking(move || {
            producer.client().fetch_metadata(None, Duration::from_secs(5)).map(|_| ())
        })
        .await
        .map_err(|e| SinkError(e.to_string()))?
        .map_err(|e| SinkError(format!("kafka is not reachable: {e}")))
    }
}

/// A record's time as a Kafka timestamp, never ahead of the collector's clock: a broker can
/// refuse timestamps too far in the future (`log.message.timestamp.after.max.ms`), and one
/// refused message would fail its whole transaction again and again.
/// A message's key: `namespace/pod`, so one pod's records stay in order on one partition.
fn message_key(r: &LogRecord) -> String {
    format!("{}/{}", r.namespace, r.pod)
}

fn millis(r: &LogRecord) -> i64 {
    let now = crate::sources::now_ns().div_euclid(1_000_000);
    r.timestamp_ns.div_euclid(1_000_000).min(now)
}

/// One record's share of a batch message.
enum Part<'r> {
    /// Encoded straight into the message (`protobuf-batch`), with its encoded length.
    Record(&'r LogRecord, usize),
    /// Encoded already, with its record's time in milliseconds.
    Encoded(Vec<u8>, i64),
}

impl Part<'_> {
    fn len(&self) -> usize {
        match self {
            Part::Record(_, len) => *len,
            Part::Encoded(bytes, _) => bytes.len(),
        }
    }

    fn millis(&self) -> i64 {
        match self {
            Part::Record(r, _) => millis(r),
            Part::Encoded(_, ms) => *ms,
        }
    }
}

/// The topic a record goes to: the template filled in, characters Kafka does not allow
/// (anything but ASCII letters, digits, `.`, `_`, `-`) replaced, at most 249 of them.
fn topic_name(template: &str, r: &LogRecord) -> String {
    template::fill(template, r)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' })
        .take(249)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_the_template_and_kafka_rules() {
        let r =
            LogRecord { namespace: "prod".into(), pod: "订单/1".into(), ..LogRecord::default() };
        assert_eq!(topic_name("logs-{namespace}", &r), "logs-prod");
        assert_eq!(topic_name("{cluster}.{pod}", &r), "none.___1");
        assert_eq!(topic_name(&"x".repeat(300), &r).len(), 249);
    }

    #[test]
    fn message_times_are_the_records_but_never_in_the_future() {
        let past = LogRecord { timestamp_ns: 1_796_032_800_123_456_789, ..LogRecord::default() };
        assert_eq!(millis(&past), 1_796_032_800_123);
        let future = LogRecord { timestamp_ns: i64::MAX, ..LogRecord::default() };
        assert!(millis(&future) <= crate::sources::now_ns() / 1_000_000);
    }

    #[test]
    fn batches_group_by_key_keep_order_and_stay_under_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = KafkaConfig::new("127.0.0.1:1", dir.path().to_owned());
        config.encoding = Encoding::ProtobufBatch;
        config.max_message_bytes = 400;
        let sink = KafkaSink::new(config).unwrap();
        let record = |pod: &str, offset: u64, size: usize| LogRecord {
            namespace: "prod".into(),
            pod: pod.into(),
            offset,
            message: "m".repeat(size),
            ..LogRecord::default()
        };
        let records: Vec<LogRecord> = (0..10)
            .map(|i| record(if i % 3 == 0 { "a" } else { "b" }, i, 90))
            .chain([record("a", 10, 500)])
            .collect();
        let (messages, dead) = sink.messages(&records);
        assert_eq!(dead.len(), 1, "the record over the limit is refused");
        assert!(dead[0]["reason"].as_str().unwrap().contains("over the limit of 400"));
        let mut seen: Vec<(String, u64)> = Vec::new();
        for m in &messages {
            assert!(m.payload.len() <= 400, "{} bytes", m.payload.len());
            let batch =
                <sluice_proto::LogBatch as prost::Message>::decode(m.payload.as_slice()).unwrap();
            assert!(batch.records.iter().all(|r| format!("{}/{}", r.namespace, r.pod) == m.key));
            seen.extend(batch.records.iter().map(|r| (m.key.clone(), r.offset)));
        }
        let offsets =
            |key: &str| seen.iter().filter(|(k, _)| k == key).map(|(_, o)| *o).collect::<Vec<_>>();
        assert_eq!(offsets("prod/a"), [0, 3, 6, 9]);
        assert_eq!(offsets("prod/b"), [1, 2, 4, 5, 7, 8]);
        assert!(messages.len() >= 4, "two keys, cut to stay under 400 bytes");
    }

    #[test]
    fn an_agents_blocks_go_as_they_are_unless_one_is_too_large() {
        use prost::Message as _;
        let block = |pod: &str, messages: &[&str]| {
            let common = LogRecord {
                source: 7,
                namespace: "prod".into(),
                pod: pod.into(),
                ..LogRecord::default()
            };
            let records = messages
                .iter()
                .enumerate()
                .map(|(i, m)| LogRecord {
                    offset: i as u64,
                    timestamp_ns: 1_796_032_800_000_000_000 + i as i64,
                    message: (*m).into(),
                    ..LogRecord::default()
                })
                .collect();
            let block = sluice_proto::RecordBlock { common: Some(common), records };
            prost::bytes::Bytes::from(zstd::bulk::compress(&block.encode_to_vec(), 1).unwrap())
        };
        let blocks = vec![block("a", &["one", "two"]), block("b", &[]), block("c", &["three"])];
        let frame = Frame::new(
            sluice_proto::LogBatch { zstd_blocks: blocks.clone(), ..Default::default() },
            0,
            None,
        );
        let dir = tempfile::tempdir().unwrap();
        let mut config = KafkaConfig::new("127.0.0.1:1", dir.path().to_owned());
        config.encoding = Encoding::ProtobufBatch;
        let sink = KafkaSink::new(config.clone()).unwrap();
        let messages = sink.block_messages(&frame, frame.blocks().unwrap()).unwrap();
        assert_eq!(messages.len(), 2, "an empty block sends nothing");
        assert_eq!((messages[0].key.as_str(), messages[1].key.as_str()), ("prod/a", "prod/c"));
        assert_eq!(messages[0].timestamp_ms, 1_796_032_800_000);
        let batch = sluice_proto::LogBatch::decode(messages[0].payload.as_slice()).unwrap();
        assert_eq!(batch.zstd_blocks, [blocks[0].clone()]);
        let records = batch.into_records().unwrap();
        assert_eq!((records[1].message.as_str(), records[1].pod.as_str()), ("two", "a"));

        let mut dated = config.clone();
        dated.topic = "logs-{yyyy.MM.dd}".into();
        let sink = KafkaSink::new(dated).unwrap();
        assert!(sink.block_messages(&frame, frame.blocks().unwrap()).is_none());
        config.max_message_bytes = blocks[0].len() - 1;
        let sink = KafkaSink::new(config).unwrap();
        assert!(sink.block_messages(&frame, frame.blocks().unwrap()).is_none());
        assert!(Frame::of_records(vec![LogRecord::default()]).blocks().is_none());
    }
}
