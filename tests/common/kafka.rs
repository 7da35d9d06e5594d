//! Kafka for the tests: the broker `scripts/test-servers` started (`KAFKA_BROKERS`), brokers
//! of a test's own that it can kill and restart, and a reader that sees what a
//! `read_committed` consumer sees.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::{Proc, free_port, log_file, wait_until};

pub fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").expect(
        "KAFKA_BROKERS is not set: run `bash scripts/test-servers start` and export its `env` (scripts/test does)",
    )
}

/// A name no other test run uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}x{}", std::process::id(), chrono::Utc::now().timestamp_micros())
}

/// One message as a consumer sees it.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub partition: i32,
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub content_type: Option<String>,
    /// The message's timestamp, in milliseconds.
    pub timestamp_ms: Option<i64>,
}

/// Every committed message of `topics` from the beginning (a topic not created yet has
/// none), read with `isolation.level=read_committed` up to each partition's end.
pub fn read_committed(brokers: &str, topics: &[String]) -> Vec<Received> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for topic in topics {
        let Ok(metadata) = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)) else {
            continue;
        };
        for t in metadata.topics() {
            if t.error().is_some() {
                continue;
            }
            for p in t.partitions() {
                assignment.add_partition_offset(t.name(), p.id(), Offset::Beginning).unwrap();
            }
        }
    }
    let mut left = assignment.count();
    if left == 0 {
        return Vec::new();
    }
    consumer.assign(&assignment).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while left > 0 {
        assert!(Instant::now() < deadline, "reading {topics:?} did not reach the end");
        match consumer.poll(Duration::from_millis(500)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(_))) => left -= 1,
            Some(Err(e)) => panic!("reading {topics:?}: {e}"),
            Some(Ok(m)) => out.push(Received {
                topic: m.topic().to_owned(),
                partition: m.partition(),
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                payload: m.payload().unwrap_or_default().to_vec(),
                timestamp_ms: m.timestamp().to_millis(),
                content_type: m.headers().and_then(|h| {
                    h.iter()
                        .find(|h| h.key == "content-type")
                        .and_then(|h| h.value)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                }),
            }),
        }
    }
    out
}

/// Waits until `topics` hold at least `n` committed messages, gives stragglers two more
/// seconds, and returns them all (so a test can check there are not more).
pub fn wait_for_messages(
    brokers: &str,
    topics: &[String],
    n: usize,
    timeout: Duration,
) -> Vec<Received> {
    let mut seen = 0;
    wait_until(timeout, &format!("{n} messages in {topics:?}"), || {
        seen = read_committed(brokers, topics).len();
        seen >= n
    });
    std::thread::sleep(Duration::from_secs(2));
    read_committed(brokers, topics)
}

/// The flags of a Kafka sink sending to `topic` (its transactional id too) in `encoding`.
pub fn sink_args(brokers: &str, topic: &str, encoding: &str) -> Vec<std::ffi::OsString> {
    let args = ["--kafka", brokers, "--kafka-topic", topic, "--kafka-transactional-id", topic];
    args.iter().chain(&["--kafka-encoding", encoding]).map(Into::into).collect()
}

/// Each `protobuf-batch` message in `topic`, with its `LogBatch` and that batch's records.
pub fn batches(
    brokers: &str,
    topic: &str,
) -> Vec<(Received, sluice_proto::LogBatch, Vec<sluice_proto::LogRecord>)> {
    read_committed(brokers, &[topic.to_owned()])
        .into_iter()
        .map(|m| {
            let batch: sluice_proto::LogBatch =
                prost::Message::decode(m.payload.as_slice()).unwrap();
            let records = batch.clone().into_records().unwrap();
            (m, batch, records)
        })
        .collect()
}

/// Sends `messages` (key, payload, content type) to `topic` and waits for every delivery.
pub fn produce(brokers: &str, topic: &str, messages: &[(Option<String>, Vec<u8>, Option<&str>)]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    for (key, payload, content_type) in messages {
        let mut headers = OwnedHeaders::new();
        if let Some(ct) = content_type {
            headers = headers.insert(Header { key: "content-type", value: Some(*ct) });
        }
        let mut record = BaseRecord::<String, Vec<u8>>::to(topic).payload(payload).headers(headers);
        if let Some(k) = key {
            record = record.key(k);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// The committed offsets of `group` on `topic`, by partition.
pub fn committed(brokers: &str, group: &str, topic: &str) -> HashMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .unwrap();
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let mut list = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            list.add_partition(topic, p.id());
        }
    }
    let committed = consumer.committed_offsets(list, Duration::from_secs(10)).unwrap();
    committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// A broker of the test's own, in `dir` (kept across restarts), on fixed ports.
pub struct Broker {
    dir: PathBuf,
    port: u16,
    controller: u16,
    proc: Option<Proc>,
}

impl Broker {
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, |_, _| String::new())
    }

    /// A broker with settings of the test's own too (more listeners, TLS, SASL), made from
    /// its plaintext and controller ports.
    pub fn start_with(dir: &Path, extra: impl FnOnce(u16, u16) -> String) -> Self {
        let (port, controller) = (free_port(), free_port());
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("extra.properties"), extra(port, controller)).unwrap();
        let mut broker = Self { dir: dir.to_owned(), port, controller, proc: None };
        broker.restart();
        broker
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn kill9(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.kill9();
        }
    }

    pub fn restart(&mut self) {
        let script = std::env::var("KAFKA_RUN").expect(
            "KAFKA_RUN is not set: run `bash scripts/test-servers start` and export its `env` (scripts/test does)",
        );
        let log = self.dir.join("broker.log");
        let _ = std::fs::remove_file(&log);
        // `kafka-run` execs java, so killing the child kills the broker.
        let child = Command::new("bash")
            .arg(script)
            .arg("kafka-run")
            .arg(&self.dir)
            .args([self.port.to_string(), self.controller.to_string()])
            .stdout(Stdio::null())
            // slf4j-simple logs to stderr.
            .stderr(log_file(&self.dir, "broker"))
            .spawn()
            .expect("the broker starts");
        let mut proc = Proc { child, name: "kafka broker" };
        wait_until(Duration::from_secs(60), "the test's Kafka broker serves", || {
            assert!(proc.is_running(), "the broker exited; see {}", log.display());
            std::fs::read_to_string(&log).is_ok_and(|t| t.contains("Kafka Server started"))
        });
        self.proc = Some(proc);
    }
}
