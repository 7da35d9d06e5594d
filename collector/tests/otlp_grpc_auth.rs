//! OTLP/gRPC checks a client's token before it reads the request (issue 31, item 8): without
//! a token, or with a wrong one, garbage and a valid request alike are `unauthenticated` and
//! nothing reaches the WAL; with the token, garbage is a decode error and a valid request is
//! appended. The server is the real OTLP/gRPC source on loopback.

mod common;

use std::sync::Arc;

use common::call_raw;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use prost::Message;
use sluice_collector::auth::AgentTokens;
use sluice_collector::sources::{self, http::ClientIngest, otlp};
use sluice_collector::wal::Wal;
use tonic::Code;
use tonic::transport::Channel;

const EXPORT: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
const TOKEN: &str = "otel-collector-token-0123456789";

fn one_record() -> Vec<u8> {
    let body = AnyValue { value: Some(any_value::Value::StringValue("订单创建成功".into())) };
    let record = LogRecord { body: Some(body), ..LogRecord::default() };
    let scope = ScopeLogs { log_records: vec![record], ..ScopeLogs::default() };
    let resource = ResourceLogs { scope_logs: vec![scope], ..ResourceLogs::default() };
    ExportLogsServiceRequest { resource_logs: vec![resource] }.encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_grpc_authenticates_before_it_decodes() {
    let dir = tempfile::tempdir().unwrap();
    let tokens_file = dir.path().join("tokens");
    std::fs::write(&tokens_file, format!("otel {TOKEN}\n")).unwrap();
    let wal = Arc::new(Wal::open(&dir.path().join("wal"), 1 << 20).unwrap());
    let tokens = AgentTokens::load(&tokens_file).unwrap();
    let state = ClientIngest::new(wal.clone(), Some(Arc::new(tokens)), 2);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let server =
        tokio::spawn(sources::serve_grpc(otlp::grpc_router(state), listener, async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
    let channel = Channel::from_shared(format!("http://{address}")).unwrap().connect_lazy();

    for (what, bytes) in [("garbage", vec![0xff; 64]), ("a valid request", one_record())] {
        for token in [None, Some("not-the-token-0123456789")] {
            let status = call_raw(channel.clone(), EXPORT, bytes.clone(), token).await.unwrap_err();
            assert_eq!(status.code(), Code::Unauthenticated, "{what}, {token:?}: {status:?}");
            assert!(!status.message().contains("decode"), "{what}: {}", status.message());
        }
    }
    assert_eq!(wal.end(), 0, "nothing unauthenticated reached the WAL");

    let status = call_raw(channel.clone(), EXPORT, vec![0xff; 64], Some(TOKEN)).await.unwrap_err();
    assert_ne!(status.code(), Code::Unauthenticated, "{status:?}");
    call_raw(channel, EXPORT, one_record(), Some(TOKEN)).await.unwrap();
    assert!(wal.end() > 0, "the authenticated record is durable");

    stop.send(true).unwrap();
    server.await.unwrap().unwrap();
}
