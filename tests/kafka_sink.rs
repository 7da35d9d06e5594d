//! The Kafka sink against a real Apache Kafka broker (`scripts/test-servers start`, which
//! `scripts/test` runs; `KAFKA_BROKERS` says where): every record exactly once as a
//! `read_committed` consumer sees it — also across a `kill -9` of `sluice up` mid-stream and
//! a `kill -9` and restart of the broker (one of the test's own) mid-stream, and with
//! `protobuf-batch`, which forwards the agents' compressed blocks undecoded.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::kafka::*;
use common::*;
use serde_json::Value;

fn ids(messages: &[Received]) -> HashSet<String> {
    messages
        .iter()
        .map(|m| {
            let doc: Value = serde_json::from_slice(&m.payload).unwrap();
            doc["sluice_id"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn every_record_once_in_kafka_across_a_collector_kill() {
    let brokers = brokers();
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique("t");
    let (prod, _dev, watch) = two_namespaces(dir.path(), 1_500, 1_000);
    let data = dir.path().join("data");
    let topic_template = format!("{prefix}-{{namespace}}");
    let args = [
        "--kafka",
        &brokers,
        "--kafka-topic",
        &topic_template,
        "--kafka-transactional-id",
        &prefix,
    ];
    let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    let (mut up, base) = start_up_with(&data, std::slice::from_ref(&watch), &args);
    let topics = [format!("{prefix}-prod"), format!("{prefix}-dev")];

    let messages = wait_for_messages(&brokers, &topics, 2_500, Duration::from_secs(90));
    assert_eq!(messages.len(), 2_500);
    assert_eq!(ids(&messages).len(), 2_500);
    let prod_messages: Vec<&Received> = messages.iter().filter(|m| m.topic == topics[0]).collect();
    assert_eq!(prod_messages.len(), 1_500);
    assert!(prod_messages.iter().all(|m| m.key.as_deref() == Some("prod/pay-1")));
    assert_eq!(messages[0].content_type.as_deref(), Some("application/json"));
    let doc: Value = serde_json::from_slice(&prod_messages[0].payload).unwrap();
    assert_eq!(doc["namespace"], "prod");
    // The message's timestamp is the record's own time.
    let ts = chrono::DateTime::parse_from_rfc3339(doc["@timestamp"].as_str().unwrap()).unwrap();
    assert_eq!(prod_messages[0].timestamp_ms, Some(ts.timestamp_millis()));
    assert!(doc["message"].as_str().unwrap().contains("prod line"), "{doc}");
    assert!(metric(&base, "sluice_sink_kafka_delivered_total") >= 2_500.0);

    // More lines, and sluice up killed while they ship: a transaction that did not commit is
    // invisible to read_committed readers and sent again from the WAL after the restart.
    append(&prod, &cri_lines("prod", 3_000, 20_000, 2_700));
    std::thread::sleep(Duration::from_millis(500));
    up.kill9();
    let (_up, _base) = start_up_with(&data, std::slice::from_ref(&watch), &args);
    let messages = wait_for_messages(&brokers, &topics, 5_500, Duration::from_secs(90));
    assert_eq!(messages.len(), 5_500, "each record exactly once");
    assert_eq!(ids(&messages).len(), 5_500);
}

#[test]
fn forwarded_blocks_exactly_once_across_a_collector_kill() {
    let brokers = brokers();
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("blocks");
    let (prod, _dev, watch) = two_namespaces(dir.path(), 1_500, 1_000);
    let data = dir.path().join("data");
    let args = sink_args(&brokers, &topic, "protobuf-batch");
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let (mut up, _base) = start_up_with(&data, std::slice::from_ref(&watch), &args);
    let records = || batches(&brokers, &topic).into_iter().flat_map(|(_, _, r)| r);
    let count = |wanted: usize| {
        wait_until(Duration::from_secs(90), "records in Kafka", || records().count() >= wanted);
        std::thread::sleep(Duration::from_secs(1));
        let ids: HashSet<_> = records().map(|r| r.id()).collect();
        (records().count(), ids.len())
    };
    assert_eq!(count(2_500), (2_500, 2_500));
    append(&prod, &cri_lines("prod", 3_000, 20_000, 2_700));
    std::thread::sleep(Duration::from_millis(500));
    up.kill9();
    let (_up, _base) = start_up_with(&data, std::slice::from_ref(&watch), &args);
    assert_eq!(count(5_500), (5_500, 5_500), "each record exactly once");
}

#[test]
fn records_too_large_for_a_message_go_to_the_dead_letter_file() {
    let brokers = brokers();
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("big");
    let (prod, _dev, watch) = two_namespaces(dir.path(), 300, 200);
    let long = "x".repeat(6_000);
    append(
        &prod,
        &format!("2026-11-30T11:00:00.000000000Z stdout F ERROR {long} oversized\n").repeat(20),
    );
    let args = [
        "--kafka",
        &brokers,
        "--kafka-topic",
        &topic,
        "--kafka-transactional-id",
        &topic,
        "--kafka-max-message-size",
        "4KiB",
    ];
    let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    let data = dir.path().join("data");
    let (_up, base) = start_up_with(&data, std::slice::from_ref(&watch), &args);
    let messages =
        wait_for_messages(&brokers, std::slice::from_ref(&topic), 500, Duration::from_secs(60));
    assert_eq!(messages.len(), 500);
    let dead_letters = data.join("sinks/kafka/dead-letter.ndjson");
    wait_until(Duration::from_secs(10), "20 dead letters", || {
        std::fs::read_to_string(&dead_letters).is_ok_and(|t| t.lines().count() == 20)
    });
    let text = std::fs::read_to_string(&dead_letters).unwrap();
    let letter: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(letter["topic"], topic.as_str());
    assert!(letter["reason"].as_str().unwrap().contains("over the limit of 4096"), "{letter}");
    assert!(letter["document"]["message"].as_str().unwrap().ends_with("oversized"));
    assert_eq!(metric(&base, "sluice_sink_kafka_dead_letters_total"), 20.0);
    assert_eq!(total(&base, "oversized"), 20, "the local index keeps them");
}

#[test]
fn every_record_once_in_kafka_across_a_broker_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(&dir.path().join("broker"));
    let brokers = broker.address();
    let (prod, _dev, watch) = two_namespaces(dir.path(), 2_000, 1_000);
    let args = ["--kafka", &brokers, "--kafka-topic", "logs", "--kafka-encoding", "protobuf"];
    let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    let (_up, _base) = start_up_with(&dir.path().join("data"), std::slice::from_ref(&watch), &args);
    let topics = ["logs".to_owned()];
    wait_for_messages(&brokers, &topics, 3_000, Duration::from_secs(90));

    // The broker dies while lines keep coming; the sink retries its transaction, the WAL
    // holds the rest, and when the broker is back everything arrives once.
    append(&prod, &cri_lines("prod", 2_000, 30_000, 2_700));
    std::thread::sleep(Duration::from_millis(300));
    broker.kill9();
    append(&prod, &cri_lines("prod", 2_000, 40_000, 2_700));
    std::thread::sleep(Duration::from_secs(3));
    broker.restart();
    let messages = wait_for_messages(&brokers, &topics, 7_000, Duration::from_secs(120));
    assert_eq!(messages.len(), 7_000, "each record exactly once");
    let ids: HashSet<(u64, u64)> = messages
        .iter()
        .map(|m| {
            assert_eq!(
                m.content_type.as_deref(),
                Some("application/x-protobuf; message=sluice.v1.LogRecord")
            );
            let r: sluice_proto::LogRecord = prost::Message::decode(m.payload.as_slice()).unwrap();
            (r.source, r.offset)
        })
        .collect();
    assert_eq!(ids.len(), 7_000);
}
