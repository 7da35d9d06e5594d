//! The Kafka sink against a real Apache Kafka broker (`scripts/test-servers start`, which
//! `scripts/test` runs; `KAFKA_BROKERS` says where): every record exactly once as a
//! `read_committed` consumer sees it — also across a `kill -9` of `sluice up` mid-stream and
//! a `kill -9` and restart of the broker (one of the test's own) mid-stream, and with
//! `protobuf-batch`, which forwards the agents' compressed blocks undecoded. A broker of the
//! test's own also serves TLS with SASL (PLAIN and SCRAM), as a Kafka outside the cluster does.

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

/// A CA and a certificate for 127.0.0.1 signed by it, as PEM files: the CA's, and the
/// broker's key and certificate in one (Kafka's PEM key store).
fn broker_tls(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    // Distinct names: OpenSSL takes a certificate whose issuer is its own subject for a
    // self-signed one, whatever signed it.
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, "sluice test CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    let cert = params.signed_by(&key, &ca).unwrap();
    let (ca_file, store) = (dir.join("ca.pem"), dir.join("broker.pem"));
    std::fs::write(&ca_file, ca.pem()).unwrap();
    std::fs::write(&store, format!("{}{}", key.serialize_pem(), cert.pem())).unwrap();
    (ca_file, store)
}

#[test]
fn records_reach_a_broker_over_tls_with_sasl() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_file, store) = broker_tls(dir.path());
    let secure = free_port();
    let password = "kafka-s3cret-Zq7";
    let broker = Broker::start_with(&dir.path().join("broker"), |port, controller| {
        format!(
            "listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller},SASL_SSL://127.0.0.1:{secure}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{port},SASL_SSL://127.0.0.1:{secure}\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL\n\
             inter.broker.listener.name=PLAINTEXT\n\
             sasl.enabled.mechanisms=PLAIN\n\
             listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_sluice=\"{password}\";\n\
             ssl.keystore.type=PEM\n\
             ssl.keystore.location={}\n",
            store.display()
        )
    });
    let topic = unique("tls");
    let (_prod, _dev, watch) = two_namespaces(dir.path(), 300, 200);
    let ca = format!("ssl.ca.location={}", ca_file.display());
    let args = |name: &str| -> Vec<String> {
        [
            "--kafka",
            &format!("127.0.0.1:{secure}"),
            "--kafka-topic",
            &topic,
            "--kafka-transactional-id",
            &format!("{topic}-{name}"),
            "--kafka-option",
            "security.protocol=SASL_SSL",
            "--kafka-option",
            "sasl.mechanism=PLAIN",
            "--kafka-option",
            "sasl.username=sluice",
            "--kafka-option",
            &ca,
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let up = |name: &str, secret: &str| {
        let args = args(name);
        let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
        let data = dir.path().join(name);
        let env = [("SLUICE_KAFKA_SASL_PASSWORD", secret), ("RUST_LOG", "debug")];
        let (proc, base) = start_up_with_env(&data, std::slice::from_ref(&watch), &args, &env);
        (proc, base, data)
    };

    // A wrong password: nothing gets in, the sink says it is unhealthy, the password is in no log.
    let (mut wrong, base, data) = up("wrong", "not-the-password");
    wait_until(Duration::from_secs(120), "the refused sink fails", || {
        metric(&base, "sluice_sink_errors_total{sink=\"kafka\"}") > 0.0
    });
    assert_eq!(metric(&base, "sluice_sink_healthy{sink=\"kafka\"}"), 0.0);
    wrong.kill9();
    let log = std::fs::read_to_string(data.join("logs/up.log")).unwrap();
    assert!(log.contains("Authentication failed"), "the log says why: {log}");
    assert!(read_committed(&broker.address(), std::slice::from_ref(&topic)).is_empty());

    let (_up, _base, data_ok) = up("right", password);
    let messages = wait_for_messages(
        &broker.address(),
        std::slice::from_ref(&topic),
        500,
        Duration::from_secs(90),
    );
    assert_eq!(messages.len(), 500);
    assert_eq!(ids(&messages).len(), 500);
    for dir in [data, data_ok] {
        let log = std::fs::read_to_string(dir.join("logs/up.log")).unwrap();
        assert!(log.contains("kafka"), "the debug log is there");
        assert!(!log.contains(password) && !log.contains("not-the-password"), "{log}");
    }
}
