//! The librdkafka side of the sink: the transactional producer, the cursor topic, and
//! librdkafka's logs and delivery reports routed to tracing and metrics.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use super::config::{KafkaCompression, KafkaConfig};

/// Longest a transaction call (init, commit, abort) or the cursor read may take.
pub(super) const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// What a message costs beyond its payload (key, headers, record overhead), for the size check.
pub(super) const MESSAGE_OVERHEAD: usize = 4096;

/// Routes librdkafka's logs to tracing and counts failed deliveries.
pub(crate) struct Context;

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
            | RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", fac, "{message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", fac, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // The end of a partition is news only to the cursor reader, which asked for it.
        if !matches!(error, KafkaError::PartitionEOF(_)) {
            tracing::warn!(target: "librdkafka", %error, "{reason}");
        }
    }
}

impl ConsumerContext for Context {}

impl ProducerContext for Context {
    type DeliveryOpaque = ();

    // A failed delivery fails the transaction's commit, which resends; this only counts.
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            metrics::counter!("sluice_sink_kafka_delivery_errors_total").increment(1);
            tracing::debug!(error = %e, "a Kafka delivery failed; its transaction will be sent again");
        }
    }
}

pub(super) type Producer = ThreadedProducer<Context>;

/// A client of `brokers` with `settings`, then the user's `options`, which win.
pub(crate) fn client_config(
    brokers: &str,
    settings: &[(&str, String)],
    options: &[(String, String)],
) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers).set_log_level(RDKafkaLogLevel::Warning);
    for (k, v) in settings {
        c.set(*k, v);
    }
    for (k, v) in options {
        c.set(k, v);
    }
    c
}

/// A transactional producer with `config`'s id, its earlier incarnations fenced.
pub(super) fn producer(config: &KafkaConfig) -> Result<Producer, String> {
    let request_max = config.max_message_bytes + MESSAGE_OVERHEAD;
    // zstd's level 1 compresses logs nearly as well as its default 3 for about half the CPU
    // (bench/: `sluice-bench sinks`); other codecs keep their defaults.
    let level = if config.compression == KafkaCompression::Zstd { "1" } else { "-1" };
    let settings = [
        ("transactional.id", config.transactional_id.clone()),
        ("enable.idempotence", "true".to_owned()),
        ("acks", "all".to_owned()),
        ("compression.type", config.compression.codec().to_owned()),
        ("compression.level", level.to_owned()),
        ("linger.ms", config.linger.as_millis().to_string()),
        ("batch.size", config.batch_bytes.min(request_max).to_string()),
        ("message.max.bytes", request_max.to_string()),
        // What waits in librdkafka's queue; beyond it `send` says QueueFull and the sink waits.
        ("queue.buffering.max.kbytes", "65536".to_owned()),
        ("queue.buffering.max.messages", "500000".to_owned()),
        ("transaction.timeout.ms", "60000".to_owned()),
        ("message.timeout.ms", "55000".to_owned()),
    ];
    let producer: Producer = client_config(&config.brokers, &settings, &config.options)
        .create_with_context(Context)
        .map_err(|e| format!("cannot create a Kafka producer for {}: {e}", config.brokers))?;
    rdkafka::producer::Producer::init_transactions(&producer, CALL_TIMEOUT).map_err(|e| {
        format!(
            "cannot start transactions on {} as {:?}: {e}",
            config.brokers, config.transactional_id
        )
    })?;
    Ok(producer)
}

/// Creates the cursor topic (one partition, compacted) unless it exists.
pub(super) async fn ensure_cursor_topic(config: &KafkaConfig) -> Result<(), String> {
    let admin: AdminClient<_> = client_config(&config.brokers, &[], &config.options)
        .create_with_context(Context)
        .map_err(|e| format!("cannot create a Kafka admin client: {e}"))?;
    let topic = NewTopic::new(&config.cursor_topic, 1, TopicReplication::Fixed(-1))
        .set("cleanup.policy", "compact");
    let results = admin
        .create_topics([&topic], &AdminOptions::new().operation_timeout(Some(CALL_TIMEOUT)))
        .await
        .map_err(|e| format!("cannot create the cursor topic {:?}: {e}", config.cursor_topic))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(format!("cannot create the cursor topic {name:?}: {code}"));
            }
        }
    }
    Ok(())
}

/// The WAL position the last committed transaction of `config.transactional_id` reached,
/// read with `read_committed` to the end of the cursor topic; `None` before the first one.
pub(super) fn read_cursor(config: &KafkaConfig) -> Result<Option<u64>, String> {
    let settings = [
        ("group.id", format!("{}-cursor", config.transactional_id)),
        ("enable.auto.commit", "false".to_owned()),
        ("isolation.level", "read_committed".to_owned()),
        ("enable.partition.eof", "true".to_owned()),
    ];
    let consumer: BaseConsumer<Context> =
        client_config(&config.brokers, &settings, &config.options)
            .create_with_context(Context)
            .map_err(|e| format!("cannot create a Kafka consumer: {e}"))?;
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(&config.cursor_topic, 0, Offset::Beginning)
        .map_err(|e| e.to_string())?;
    consumer
        .assign(&assignment)
        .map_err(|e| format!("cannot read {:?}: {e}", config.cursor_topic))?;
    let started = Instant::now();
    let mut cursor = None;
    loop {
        if started.elapsed() > CALL_TIMEOUT {
            return Err(format!(
                "reading the cursor topic {:?} did not reach its end in {CALL_TIMEOUT:?}",
                config.cursor_topic
            ));
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok(cursor),
            Some(Err(e)) => return Err(format!("cannot read {:?}: {e}", config.cursor_topic)),
            Some(Ok(m)) if m.key() == Some(config.transactional_id.as_bytes()) => {
                let value = m.payload().and_then(|p| std::str::from_utf8(p).ok());
                cursor = Some(value.and_then(|v| v.parse().ok()).ok_or_else(|| {
                    format!("corrupt cursor in {:?}: {value:?}", config.cursor_topic)
                })?);
            }
            Some(Ok(_)) => {}
        }
    }
}
