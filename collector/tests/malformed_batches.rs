//! A collector on loopback receives malformed protobuf over real gRPC: each push is refused
//! with a clear status, nothing reaches the WAL or the index, and the next good batch is
//! acknowledged and indexed. The parts are the real ones — the agents' gRPC source, the WAL
//! and the index sink's runner — wired as the `sluice` binary wires them.

use std::sync::Arc;
use std::time::Duration;

mod common;

use common::call_raw;
use prost::Message;
use sluice_collector::runner::{Cursors, Feed, SinkTask, spawn_sinks};
use sluice_collector::sinks::index::IndexSinkConfig;
use sluice_collector::sources;
use sluice_collector::wal::Wal;
use sluice_proto::ingest_client::IngestClient;
use sluice_proto::{Ack, LogBatch, LogRecord, RecordBlock};
use sluice_query::{SearchRequest, Store};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// Pushes `bytes` as an agent's batch, as a broken agent would.
async fn push_raw(channel: Channel, bytes: Vec<u8>) -> Result<Ack, Status> {
    let answer = call_raw(channel, "/sluice.v1.Ingest/Push", bytes, None).await?;
    Ack::decode(answer.as_slice()).map_err(|e| Status::internal(e.to_string()))
}

fn batch(sequence: u64, messages: &[&str]) -> LogBatch {
    LogBatch {
        agent: "test".into(),
        sequence,
        records: messages
            .iter()
            .enumerate()
            .map(|(i, m)| LogRecord {
                source: 42,
                offset: sequence * 1000 + i as u64,
                timestamp_ns: 1_795_000_000_000_000_000,
                message: (*m).to_owned(),
                ..LogRecord::default()
            })
            .collect(),
        ..LogBatch::default()
    }
}

/// `batch`, with its records sent as one zstd record block, as agents send them.
fn block_batch(sequence: u64, messages: &[&str]) -> LogBatch {
    let records = batch(sequence, messages).records;
    let block = RecordBlock { common: None, records }.encode_to_vec();
    LogBatch {
        agent: "test".into(),
        sequence,
        records: Vec::new(),
        zstd_blocks: vec![zstd::bulk::compress(&block, 1).unwrap().into()],
        ..LogBatch::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_batches_are_refused_and_the_collector_keeps_going() {
    let dir = tempfile::tempdir().unwrap();
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_addr = grpc.local_addr().unwrap();

    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let wal = Arc::new(Wal::open(&dir.path().join("wal"), 64 << 20).unwrap());
    let store = sluice_query::Store::open(&dir.path().join("index")).unwrap();
    let index =
        IndexSinkConfig { commit_interval: Duration::from_millis(100), ..Default::default() };
    let sink = SinkTask {
        sink: Box::new(index.build(store, wal.subscribe())),
        flush_interval: index.commit_interval,
    };
    let feed = Feed { wal: wal.clone(), cursors: Arc::new(Cursors::default()), pods: None };
    let runners = spawn_sinks(vec![sink], &feed, &stopped).unwrap();
    let router = sources::agent::router(wal, None, None).unwrap();
    let server = tokio::spawn(sources::serve_grpc(router, grpc, async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));
    let channel = Channel::from_shared(format!("http://{grpc_addr}")).unwrap().connect_lazy();

    let good = batch(1, &["first good line"]).encode_to_vec();
    let mut invalid_utf8 = batch(2, &["ok"]).encode_to_vec();
    let at = invalid_utf8.windows(2).position(|w| w == b"ok").unwrap();
    invalid_utf8[at] = 0xff;
    let malformed: [(&str, Vec<u8>); 4] = [
        ("truncated", good[..good.len() - 3].to_vec()),
        ("garbage", vec![0xff; 64]),
        ("bad wire type", vec![0x0f, 0x01]),
        ("invalid UTF-8 in a string", invalid_utf8),
    ];
    for (what, bytes) in malformed {
        let status = push_raw(channel.clone(), bytes).await.expect_err(what);
        assert_eq!(status.code(), Code::Internal, "{what}: {status:?}");
        assert!(status.message().contains("decode"), "{what}: {}", status.message());
    }

    // Blocks that are not what they claim are refused as malformed, before the WAL.
    let mut garbage_block = block_batch(5, &["never stored"]);
    garbage_block.zstd_blocks.push(b"not zstd at all".to_vec().into());
    let mut not_records = block_batch(6, &["never stored"]);
    not_records.zstd_blocks[0] = zstd::bulk::compress(&[0xff; 32], 1).unwrap().into();
    for (what, bad) in [("garbage block", garbage_block), ("block of no records", not_records)] {
        let status = push_raw(channel.clone(), bad.encode_to_vec()).await.expect_err(what);
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert!(
            status.message().contains("malformed batch: block"),
            "{what}: {}",
            status.message()
        );
    }

    let mut client = IngestClient::new(channel.clone());
    let ack =
        push_raw(channel.clone(), block_batch(7, &["a block line"]).encode_to_vec()).await.unwrap();
    assert_eq!(ack.records, 1);
    let ack = client.push(batch(3, &["second good line", "third"])).await.unwrap().into_inner();
    assert_eq!((ack.sequence, ack.records), (3, 2));
    let ack = push_raw(channel, batch(4, &["fourth"]).encode_to_vec()).await.unwrap();
    assert_eq!(ack.records, 1);

    let index = dir.path().join("index");
    let mut found = 0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Ok(store) = Store::open_read_only(&index) {
            found = store.search(&SearchRequest::new("")).unwrap().total;
            if found >= 4 {
                break;
            }
        }
    }
    assert_eq!(found, 4, "the four good records, and nothing else");
    stop.send(true).unwrap();
    server.await.unwrap().unwrap();
    for runner in runners {
        runner.await.unwrap();
    }
}
