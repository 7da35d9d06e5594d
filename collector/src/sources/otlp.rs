//! OTLP logs in: `POST /v1/logs` (OTLP/HTTP, protobuf) on the API listener and the gRPC
//! `LogsService` (OTLP/gRPC, conventionally port 4317), with the `opentelemetry-proto` types.
//!
//! Resource attributes give the pod identity (`k8s.cluster.name`, `k8s.namespace.name`,
//! `k8s.pod.name`, `k8s.pod.uid`, `k8s.container.name`, `k8s.node.name`, else `host.name`);
//! the body becomes the message, `severity_text` (or the severity number's range) the level,
//! `time_unix_nano` (or the observed time, or now, when neither is in the pipeline's time
//! window) the time. A request is answered once its
//! records are durable in the WAL.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use prost::Message;
use sluice_proto::LogRecord;
use sluice_proto::id::source_key;
use tokio::sync::OwnedSemaphorePermit;
use tonic::codec::CompressionEncoding;
use tonic::service::interceptor::InterceptedService;

use super::http::{ClientIngest, check_documents, decoded_body};
use super::now_ns;
use crate::auth::IngestGrant;

/// Largest OTLP/gRPC request taken.
pub(super) const MAX_REQUEST_BYTES: usize = 64 << 20;

/// The OTLP/gRPC `LogsService` and `MetricsService` (see [`super::serve_grpc`]). The client's token is checked
/// by an interceptor, before the request is decoded: a client without one learns that it is
/// unauthenticated, not what the decoder thinks of its bytes.
pub fn grpc_router(state: ClientIngest) -> tonic::transport::server::Router {
    let check = state.clone();
    let authenticate = move |request: tonic::Request<()>| {
        let mut headers = HeaderMap::new();
        if let Some(v) = request.metadata().get("authorization").and_then(|v| v.to_str().ok())
            && let Ok(v) = v.parse()
        {
            headers.insert(header::AUTHORIZATION, v);
        }
        let grant =
            check.authenticate(&headers, "OTLP/gRPC").map_err(|(status, reason)| match status {
                StatusCode::FORBIDDEN => tonic::Status::permission_denied(reason),
                _ => tonic::Status::unauthenticated(reason),
            })?;
        // The handler finds what the client may write beside the request.
        let mut request = request;
        request.extensions_mut().insert(grant);
        Ok(request)
    };
    let metrics = super::otlp_metrics::grpc_service(state.clone());
    let logs = LogsServiceServer::new(OtlpGrpc { state })
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(MAX_REQUEST_BYTES);
    tonic::transport::Server::builder()
        .add_service(InterceptedService::new(logs, authenticate.clone()))
        .add_service(InterceptedService::new(metrics, authenticate))
}

pub(crate) fn routes() -> axum::Router<ClientIngest> {
    axum::Router::new().route("/v1/logs", post(http_logs)).merge(super::otlp_metrics::routes())
}

/// What every OTLP/HTTP request goes through before its body is decoded: the token, the
/// content type, a turn and the body; or the answer that refuses it.
pub(super) async fn admit_otlp(
    state: &ClientIngest,
    headers: &HeaderMap,
    body: Body,
) -> Result<(IngestGrant, OwnedSemaphorePermit, prost::bytes::Bytes), Response> {
    let grant = state.authenticate(headers, "OTLP/HTTP").map_err(|e| e.into_response())?;
    let content_type =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.starts_with("application/x-protobuf") {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content type {content_type:?}: this receiver takes OTLP/HTTP protobuf (application/x-protobuf)"),
        )
            .into_response());
    }
    // OTLP/HTTP exporters retry a 429 after its Retry-After.
    match state.admit(body).await {
        Ok((turn, body)) => Ok((grant, turn, body)),
        Err(e) if e.status == StatusCode::TOO_MANY_REQUESTS => {
            Err((e.status, [(header::RETRY_AFTER, "1")], e.reason).into_response())
        }
        Err(e) => Err((e.status, e.reason).into_response()),
    }
}

async fn http_logs(State(state): State<ClientIngest>, headers: HeaderMap, body: Body) -> Response {
    let (grant, _turn, body) = match admit_otlp(&state, &headers, body).await {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    let decoded = tokio::task::spawn_blocking(move || decode(&headers, &body)).await;
    let records = match decoded {
        Ok(Ok(records)) => records,
        Ok(Err((status, reason))) => return (status, reason).into_response(),
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let (records, answer) = permitted(records, &grant);
    match state.append(&grant.client, records).await {
        Ok(_) => ([(header::CONTENT_TYPE, "application/x-protobuf")], answer.encode_to_vec())
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot persist an OTLP request");
            // 503 is retryable for OTLP/HTTP exporters.
            (StatusCode::SERVICE_UNAVAILABLE, format!("cannot persist the request: {e}"))
                .into_response()
        }
    }
}

/// The body decompressed (the OpenTelemetry Collector's otlphttp exporter sends gzip by
/// default), decoded and turned into records, off the runtime's threads.
fn decode(headers: &HeaderMap, body: &[u8]) -> Result<Vec<LogRecord>, (StatusCode, String)> {
    let bytes = decoded_body(headers, body).map_err(|e| (e.status, e.reason))?;
    let request = ExportLogsServiceRequest::decode(bytes.as_slice()).map_err(|e| {
        (StatusCode::BAD_REQUEST, format!("undecodable ExportLogsServiceRequest: {e}"))
    })?;
    drop(bytes);
    let records = to_records(request);
    check_documents(records.len()).map_err(|e| (e.status, e.reason))?;
    Ok(records)
}

/// The OTLP/gRPC logs service; served only behind `grpc_router`'s token check.
struct OtlpGrpc {
    state: ClientIngest,
}

#[tonic::async_trait]
impl LogsService for OtlpGrpc {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        // Authenticated by the interceptor of `grpc_router`, which left the grant here.
        let grant =
            request.extensions().get::<IngestGrant>().cloned().ok_or_else(|| {
                tonic::Status::unauthenticated("no grant: not served by grpc_router")
            })?;
        let _turn = self.state.turn().await;
        let (records, answer) = permitted(to_records(request.into_inner()), &grant);
        self.state
            .append(&grant.client, records)
            .await
            .map_err(|e| tonic::Status::unavailable(format!("cannot persist the request: {e}")))?;
        Ok(tonic::Response::new(answer))
    }
}

/// The records `grant` may write, and the answer that reports the others as rejected (OTLP's
/// partial success: the exporter logs them and does not retry).
fn permitted(
    records: Vec<sluice_proto::LogRecord>,
    grant: &IngestGrant,
) -> (Vec<sluice_proto::LogRecord>, ExportLogsServiceResponse) {
    let (kept, refused): (Vec<_>, Vec<_>) =
        records.into_iter().partition(|r| grant.allows(&r.namespace));
    let mut answer = ExportLogsServiceResponse::default();
    if let Some(first) = refused.first() {
        metrics::counter!("sluice_collector_unauthorized_writes_total")
            .increment(refused.len() as u64);
        answer.partial_success = Some(ExportLogsPartialSuccess {
            rejected_log_records: refused.len() as i64,
            error_message: format!(
                "{} may not write to namespace {:?}",
                grant.client, first.namespace
            ),
        });
    }
    (kept, answer)
}

pub(crate) fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            Any::StringValue(s) => Some(s.as_str()),
            _ => None,
        }
    })
}

/// Any value as text: strings as they are, the rest in a JSON-like form.
fn text(value: &AnyValue) -> String {
    match &value.value {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::DoubleValue(d)) => d.to_string(),
        Some(Any::BytesValue(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(Any::ArrayValue(a)) => {
            format!("[{}]", a.values.iter().map(text).collect::<Vec<_>>().join(", "))
        }
        Some(Any::KvlistValue(kv)) => format!(
            "{{{}}}",
            kv.values
                .iter()
                .map(|kv| format!(
                    "{}: {}",
                    kv.key,
                    kv.value.as_ref().map(text).unwrap_or_default()
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Some(Any::StringValueStrindex(_)) | None => String::new(),
    }
}

/// The level of a severity number (OTLP's ranges of four).
fn level_of(number: i32) -> Option<&'static str> {
    Some(match number {
        1..=4 => "trace",
        5..=8 => "debug",
        9..=12 => "info",
        13..=16 => "warn",
        17..=20 => "error",
        21..=24 => "fatal",
        _ => return None,
    })
}

pub fn to_records(request: ExportLogsServiceRequest) -> Vec<LogRecord> {
    let now = now_ns();
    let mut out = Vec::new();
    for resource_logs in request.resource_logs {
        let attributes = resource_logs.resource.map(|r| r.attributes).unwrap_or_default();
        let get = |key: &str| attribute(&attributes, key).unwrap_or_default().to_owned();
        let service = get("service.name");
        let (cluster, namespace, pod, container) = (
            get("k8s.cluster.name"),
            get("k8s.namespace.name"),
            get("k8s.pod.name"),
            get("k8s.container.name"),
        );
        let node = attribute(&attributes, "k8s.node.name")
            .or_else(|| attribute(&attributes, "host.name"))
            .unwrap_or_default()
            .to_owned();
        let origin = format!("otlp/{cluster}/{namespace}/{pod}/{container}/{service}");
        let source = source_key(&origin, 0);
        for scope in resource_logs.scope_logs {
            for r in scope.log_records {
                // A time outside the window counts as none, as a zero does.
                let ts = [r.time_unix_nano, r.observed_time_unix_nano]
                    .into_iter()
                    .filter_map(|t| i64::try_from(t).ok())
                    .find(|&t| t > 0 && sluice_proto::time::in_window(t))
                    .unwrap_or(now);
                let message = r.body.as_ref().map(text).unwrap_or_default();
                // A record without a severity (the filelog receiver's, unparsed) gets the
                // level the agent would find in its line.
                let level = sluice_proto::level::canonical(&r.severity_text)
                    .or_else(|| level_of(r.severity_number))
                    .or_else(|| sluice_proto::level::detect(&message))
                    .unwrap_or_default()
                    .to_owned();
                out.push(LogRecord {
                    source,
                    timestamp_ns: ts,
                    ingest_time_ns: now,
                    cluster: cluster.clone(),
                    namespace: namespace.clone(),
                    pod: pod.clone(),
                    pod_uid: get("k8s.pod.uid"),
                    container: container.clone(),
                    node: node.clone(),
                    level,
                    file_path: if service.is_empty() {
                        "otlp".to_owned()
                    } else {
                        format!("otlp/{service}")
                    },
                    message,
                    ..LogRecord::default()
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::KeyValueList;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord as OtlpRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    use super::*;

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue { value: Some(Any::StringValue(value.to_owned())) }),
            ..KeyValue::default()
        }
    }

    #[test]
    fn resource_attributes_become_pod_identity() {
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", "checkout"),
                        kv("k8s.namespace.name", "prod"),
                        kv("k8s.pod.name", "checkout-1"),
                        kv("k8s.container.name", "app"),
                        kv("host.name", "node-7"),
                    ],
                    ..Resource::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records: vec![
                        OtlpRecord {
                            time_unix_nano: 1_764_496_800_000_000_001,
                            severity_text: "Error".into(),
                            body: Some(AnyValue {
                                value: Some(Any::StringValue("支付超时".into())),
                            }),
                            ..OtlpRecord::default()
                        },
                        OtlpRecord {
                            observed_time_unix_nano: 5,
                            severity_number: 14,
                            body: Some(AnyValue {
                                value: Some(Any::KvlistValue(KeyValueList {
                                    values: vec![kv("a", "b")],
                                })),
                            }),
                            ..OtlpRecord::default()
                        },
                    ],
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        };
        let records = to_records(request);
        assert_eq!(records.len(), 2);
        let r = &records[0];
        assert_eq!(
            (r.namespace.as_str(), r.pod.as_str(), r.container.as_str(), r.node.as_str()),
            ("prod", "checkout-1", "app", "node-7")
        );
        assert_eq!(
            (r.level.as_str(), r.message.as_str(), r.timestamp_ns),
            ("error", "支付超时", 1_764_496_800_000_000_001)
        );
        assert_eq!(r.file_path, "otlp/checkout");
        assert_eq!(
            (records[1].level.as_str(), records[1].message.as_str(), records[1].timestamp_ns),
            ("warn", "{a: b}", 5)
        );
        assert_eq!(records[0].source, records[1].source);
    }

    #[test]
    fn a_record_without_severity_gets_the_level_of_its_line() {
        let record = |body: &str, severity_number| OtlpRecord {
            severity_number,
            body: Some(AnyValue { value: Some(Any::StringValue(body.into())) }),
            ..OtlpRecord::default()
        };
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![
                        record("2026-12-04 10:00:00 ERROR pay timeout", 0),
                        record("ERROR in the text of an INFO record", 9),
                        record("connection error, retrying", 0),
                    ],
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        };
        let levels: Vec<_> = to_records(request).into_iter().map(|r| r.level).collect();
        assert_eq!(levels, ["error", "info", ""]);
    }

    proptest::proptest! {
        /// Any bytes are decoded or refused, and what decodes becomes records without a panic,
        /// each with a time the store can keep.
        #[test]
        fn any_otlp_body_decodes_or_is_refused(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            if let Ok(request) = ExportLogsServiceRequest::decode(bytes.as_slice()) {
                for record in to_records(request) {
                    proptest::prop_assert!(sluice_proto::time::in_window(record.timestamp_ns));
                }
            }
        }

        #[test]
        fn any_record_time_becomes_one_in_the_window(time in proptest::prelude::any::<u64>(), observed in proptest::prelude::any::<u64>()) {
            let record = OtlpRecord { time_unix_nano: time, observed_time_unix_nano: observed, ..OtlpRecord::default() };
            let scope = ScopeLogs { log_records: vec![record], ..ScopeLogs::default() };
            let request = ExportLogsServiceRequest { resource_logs: vec![ResourceLogs { scope_logs: vec![scope], ..ResourceLogs::default() }] };
            let records = to_records(request);
            proptest::prop_assert_eq!(records.len(), 1);
            proptest::prop_assert!(sluice_proto::time::in_window(records[0].timestamp_ns));
        }
    }
}
