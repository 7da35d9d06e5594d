//! `--kafka-source`: a consumer group reading topics into the WAL — the scale-out tier
//! (collectors → Kafka → indexers). Offsets are committed only once every sink has flushed
//! past the WAL frame that holds the messages, so a crash anywhere replays rather than
//! loses; replays are harmless because each record keeps a stable id (its own when it came
//! from our Kafka sink, else topic/partition/offset) and the sinks store an id once.
//!
//! Reading uses `isolation.level=read_committed`: what an aborted transaction of our Kafka
//! sink wrote is never read.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio::time::Instant;

use super::Source;
use super::append::{Batch, Delivery};
use crate::runner::Cursors;
use crate::sinks::kafka::encoding::{self, CONTENT_TYPE, Origin};
use crate::sinks::kafka::service::{Context, client_config};
use crate::wal::Wal;

/// A WAL frame is cut at this many records or bytes, or this long after its first record.
const BATCH_RECORDS: usize = 5_000;
const BATCH_BYTES: usize = 4 << 20;
const BATCH_WAIT: Duration = Duration::from_millis(200);
/// How often delivered offsets are committed.
const COMMIT_EVERY: Duration = Duration::from_millis(500);
const RETRY: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct KafkaSourceConfig {
    pub brokers: String,
    pub topics: Vec<String>,
    pub group: String,
    /// `group.instance.id` (static membership): a restarted collector gets its partitions
    /// back at once instead of after the group's session timeout.
    pub instance_id: Option<String>,
    /// More librdkafka settings, applied last.
    pub options: Vec<(String, String)>,
}

// Options may hold SASL passwords; they never reach logs.
impl fmt::Debug for KafkaSourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSourceConfig")
            .field("brokers", &self.brokers)
            .field("topics", &self.topics)
            .field("group", &self.group)
            .field("instance_id", &self.instance_id)
            .finish_non_exhaustive()
    }
}

/// The next offset to read, per topic and partition: the source's checkpoint.
type Offsets = HashMap<(String, i32), i64>;

/// `--kafka-source` as one of the collector's sources.
pub struct KafkaSource {
    config: KafkaSourceConfig,
}

impl KafkaSource {
    pub fn new(config: KafkaSourceConfig) -> Self {
        Self { config }
    }
}

#[async_trait]
impl Source for KafkaSource {
    fn name(&self) -> &str {
        "kafka"
    }

    async fn run(
        self: Box<Self>,
        wal: Arc<Wal>,
        cursors: Arc<Cursors>,
        stop: watch::Receiver<bool>,
    ) {
        run(self.config, wal, cursors, stop).await;
    }
}

/// Reads until `stop`; a consumer that cannot be made is retried.
async fn run(
    config: KafkaSourceConfig,
    wal: Arc<Wal>,
    cursors: Arc<Cursors>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        match consumer(&config) {
            Ok(consumer) => {
                tracing::info!(brokers = %config.brokers, topics = ?config.topics, group = %config.group, "reading from Kafka");
                consume(&config, &consumer, &wal, &cursors, &mut stop).await;
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the Kafka source; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(RETRY) => {}
                    () = stopped(&mut stop) => return,
                }
            }
        }
    }
}

fn consumer(config: &KafkaSourceConfig) -> Result<StreamConsumer<Context>, String> {
    let mut settings = vec![
        ("group.id", config.group.clone()),
        ("enable.auto.commit", "false".to_owned()),
        ("auto.offset.reset", "earliest".to_owned()),
        ("isolation.level", "read_committed".to_owned()),
    ];
    if let Some(id) = &config.instance_id {
        settings.push(("group.instance.id", id.clone()));
    }
    let consumer: StreamConsumer<Context> =
        client_config(&config.brokers, &settings, &config.options)
            .create_with_context(Context)
            .map_err(|e| format!("cannot create a Kafka consumer for {}: {e}", config.brokers))?;
    let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| format!("cannot subscribe to {:?}: {e}", config.topics))?;
    Ok(consumer)
}

async fn consume(
    config: &KafkaSourceConfig,
    consumer: &StreamConsumer<Context>,
    wal: &Arc<Wal>,
    cursors: &Cursors,
    stop: &mut watch::Receiver<bool>,
) {
    let agent = format!("kafka:{}", config.group);
    let mut records = Vec::new();
    let mut bytes = 0;
    let mut next: Offsets = HashMap::new();
    let mut delivery: Delivery<Offsets> = Delivery::default();
    let mut first_at: Option<Instant> = None;
    let mut last_commit = Instant::now();
    loop {
        let cut_at = first_at.map(|t| t + BATCH_WAIT);
        let stopping = tokio::select! {
            () = stopped(stop) => true,
            _ = tokio::time::sleep_until(cut_at.unwrap_or_else(|| Instant::now() + COMMIT_EVERY)) => false,
            message = consumer.recv() => {
                match message {
                    Ok(m) => {
                        let content_type = m.headers().and_then(|h| {
                            h.iter().find(|h| h.key.eq_ignore_ascii_case(CONTENT_TYPE))
                                .and_then(|h| std::str::from_utf8(h.value?).ok())
                        });
                        let origin = Origin { topic: m.topic(), partition: m.partition(), offset: m.offset(), line: None };
                        let payload = m.payload().unwrap_or_default();
                        let (decoded, problem) = encoding::decode(payload, content_type, &origin);
                        if let Some(problem) = problem {
                            metrics::counter!("sluice_kafka_source_undecodable_total").increment(1);
                            tracing::warn!(topic = m.topic(), partition = m.partition(), offset = m.offset(), problem, "kept a Kafka message as plain text");
                        }
                        bytes += payload.len();
                        records.extend(decoded);
                        next.insert((m.topic().to_owned(), m.partition()), m.offset() + 1);
                        first_at.get_or_insert_with(Instant::now);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "Kafka consumer error");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                false
            }
        };
        let due = first_at.is_some_and(|t| t.elapsed() >= BATCH_WAIT);
        if !records.is_empty()
            && (stopping || due || records.len() >= BATCH_RECORDS || bytes >= BATCH_BYTES)
        {
            // Each record keeps the id it came with (see `encoding::decode`).
            let batch = Batch::with_ids(&agent, std::mem::take(&mut records));
            let count = batch.records() as u64;
            // The records stay ours until the WAL has them: Kafka keeps the rest meanwhile.
            let appended =
                batch.append_until_stopped(wal, "Kafka records", RETRY, stopping, stop).await;
            let end = appended.map(|a| a.end);
            let Some(end) = end else { return };
            metrics::counter!("sluice_kafka_source_records_total").increment(count);
            metrics::counter!("sluice_kafka_source_bytes_total").increment(bytes as u64);
            delivery.push(end, std::mem::take(&mut next));
            bytes = 0;
            first_at = None;
        }
        if stopping || last_commit.elapsed() >= COMMIT_EVERY {
            commit_delivered(consumer, cursors, &mut delivery, stopping);
            last_commit = Instant::now();
        }
        if stopping {
            return;
        }
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Commits the offsets of every WAL frame all sinks have flushed past.
fn commit_delivered(
    consumer: &StreamConsumer<Context>,
    cursors: &Cursors,
    delivery: &mut Delivery<Offsets>,
    last: bool,
) {
    let mut offsets: Offsets = HashMap::new();
    for delivered in delivery.delivered(cursors) {
        offsets.extend(delivered);
    }
    if offsets.is_empty() {
        return;
    }
    let mut list = TopicPartitionList::new();
    for ((topic, partition), offset) in &offsets {
        if let Err(e) = list.add_partition_offset(topic, *partition, Offset::Offset(*offset)) {
            tracing::warn!(error = %e, topic, partition, "cannot list a Kafka offset");
        }
    }
    let mode = if last { CommitMode::Sync } else { CommitMode::Async };
    match consumer.commit(&list, mode) {
        Ok(()) => metrics::counter!("sluice_kafka_source_commits_total").increment(1),
        // Not fatal: a later commit covers these offsets, and a replay is deduplicated.
        Err(e) => tracing::warn!(error = %e, "cannot commit Kafka offsets"),
    }
}
