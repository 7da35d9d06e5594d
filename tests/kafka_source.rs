//! The Kafka source against a real Apache Kafka broker (`KAFKA_BROKERS`, from
//! `scripts/test-servers`): a collector reading a topic indexes every message once — foreign
//! JSON, plain lines and a broken protobuf message alike — also across a `kill -9` while it
//! reads, and commits its group's offsets to the end; and the scale-out chain, agents →
//! `sluice up --kafka` → Kafka → `sluice collector --kafka-source`, keeps every record's id.

mod common;

use std::time::Duration;

use common::kafka::*;
use common::*;
use serde_json::json;

fn fluent_bit_doc(i: usize) -> Vec<u8> {
    let level = if i.is_multiple_of(10) { "ERROR 支付超时" } else { "INFO request ok" };
    json!({
        "@timestamp": "2026-11-30T10:00:00.000Z",
        "log": format!("{level} kafka line {i}\n"),
        "stream": "stdout",
        "kubernetes": {"namespace_name": "shop", "pod_name": format!("cart-{}", i % 3), "container_name": "app"},
    })
    .to_string()
    .into_bytes()
}

/// `sluice collector` flags reading `topic` as `group`, and `more`.
fn source_args(brokers: &str, topic: &str, group: &str, more: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["--kafka-source", brokers, "--kafka-source-topic", topic]
        .iter()
        .chain(&["--kafka-source-group", group])
        .map(|s| (*s).to_owned())
        .collect();
    args.extend(more.iter().map(|s| (*s).to_owned()));
    args
}

#[test]
fn every_message_indexed_once_across_a_collector_kill() {
    let brokers = brokers();
    let topic = unique("src");
    let group = unique("g");
    let first: Vec<_> =
        (0..3_000).map(|i| (Some(format!("k{i}")), fluent_bit_doc(i), None)).collect();
    produce(&brokers, &topic, &first);
    let mut odd: Vec<(Option<String>, Vec<u8>, Option<&str>)> =
        (0..200).map(|i| (None, format!("WARN plain line {i}").into_bytes(), None)).collect();
    odd.push((
        None,
        b"\x0a\xff\xff broken".to_vec(),
        Some("application/x-protobuf; message=sluice.v1.LogRecord"),
    ));
    odd.push((None, b"bytes \xff\xfe not utf-8".to_vec(), None));
    produce(&brokers, &topic, &odd);

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (grpc, http) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{http}");
    // Static membership: the restarted collector takes its partitions back at once.
    let args = source_args(&brokers, &topic, &group, &["--kafka-source-instance-id", "indexer-0"]);
    let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    let mut collector = start_collector_with(&data, grpc, http, &args);
    wait_until(Duration::from_secs(60), "3,202 records indexed", || total(&base, "") >= 3_202);
    assert_eq!(total(&base, "namespace:shop"), 3_000);
    assert_eq!(total(&base, "支付超时"), 300);
    assert_eq!(total(&base, "level:warn plain"), 200);
    assert_eq!(total(&base, "broken"), 1, "an undecodable message is kept as text");
    assert_eq!(metric(&base, "sluice_kafka_source_undecodable_total"), 1.0);
    let hit = &search(&base, "\"kafka line 7\"", 5).hits[0];
    assert_eq!((hit.pod.as_str(), hit.container.as_str()), ("cart-1", "app"));

    // More messages, and the collector killed while it reads them: what it had not
    // committed is read again after the restart, and the index keeps each record once.
    let second: Vec<_> = (3_000..30_000).map(|i| (None, fluent_bit_doc(i), None)).collect();
    produce(&brokers, &topic, &second);
    wait_until(Duration::from_secs(60), "more records indexed", || total(&base, "") > 3_202);
    let at_kill = total(&base, "");
    collector.kill9();
    let _collector = start_collector_with(&data, grpc, http, &args);
    wait_until(Duration::from_secs(60), "30,202 records indexed", || total(&base, "") >= 30_202);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(total(&base, ""), 30_202, "each message exactly once");
    assert_eq!(total(&base, "namespace:shop"), 30_000);
    // Offsets are committed once the index holds the records: all of them, in the end.
    wait_until(Duration::from_secs(30), "the group's offsets reach the topic's end", || {
        committed(&brokers, &group, &topic).values().sum::<i64>() == 30_202
    });
    eprintln!("killed with {at_kill} of 30,202 records indexed");
}

#[test]
fn agents_to_kafka_to_an_indexer_keep_every_record_once() {
    for encoding in ["protobuf-batch", "ndjson"] {
        chain(encoding);
    }
}

/// Agents → `sluice up --kafka --kafka-encoding <encoding>` → `sluice collector --kafka-source`.
fn chain(encoding: &str) {
    let brokers = brokers();
    let topic = unique("chain");
    let dir = tempfile::tempdir().unwrap();
    let (_prod, _dev, watch) = two_namespaces(dir.path(), 1_500, 1_000);
    // The edge: agents' records into Kafka, nothing indexed that matters here.
    let edge = [
        "--kafka",
        &brokers,
        "--kafka-topic",
        &topic,
        "--kafka-encoding",
        encoding,
        "--kafka-transactional-id",
        &topic,
    ];
    let edge: Vec<&std::ffi::OsStr> = edge.iter().map(std::ffi::OsStr::new).collect();
    let (_up, edge_base) =
        start_up_with(&dir.path().join("edge"), std::slice::from_ref(&watch), &edge);
    // The indexer: Kafka into its own index.
    let (grpc, http) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{http}");
    let group = unique("indexers");
    let args = source_args(&brokers, &topic, &group, &[]);
    let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    let _indexer = start_collector_with(&dir.path().join("indexer"), grpc, http, &args);
    wait_until(Duration::from_secs(90), "2,500 records in the indexer", || {
        total(&base, "") >= 2_500
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(total(&base, ""), 2_500, "{encoding}");
    assert_eq!(total(&base, "namespace:dev"), 1_000);
    assert_eq!(total(&base, "支付超时"), 250);
    // The same record has the same id at the edge and in the indexer.
    let at_edge = &search(&edge_base, "\"prod line 42\"", 1).hits[0];
    let in_indexer = &search(&base, "\"prod line 42\"", 1).hits[0];
    assert_eq!(at_edge.id, in_indexer.id);
    assert_eq!(at_edge.ts, in_indexer.ts);
    assert_eq!(in_indexer.pod, "pay-1");
}
