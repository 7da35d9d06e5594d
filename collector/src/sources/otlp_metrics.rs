//! OTLP metrics in: `POST /v1/metrics` (OTLP/HTTP, protobuf) on the API listener and the gRPC
//! `MetricsService` beside the logs service on the OTLP port.
//!
//! A request is kept as the client sent it — less the resources whose `k8s.namespace.name`
//! the client may not write, reported as OTLP's partial success — in one WAL frame, and
//! answered once that frame is durable. Sinks convert it as their destination needs
//! (Prometheus remote-write, OTLP messages on Kafka).

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics};
use prost::Message;
use tonic::codec::CompressionEncoding;

use super::append::Batch;
use super::http::{ClientIngest, decoded_body};
use super::otlp::{MAX_REQUEST_BYTES, admit_otlp, attribute};
use crate::auth::IngestGrant;

/// The gRPC `MetricsService`, to be served behind `otlp::grpc_router`'s token check.
pub(super) fn grpc_service(state: ClientIngest) -> MetricsServiceServer<OtlpMetricsGrpc> {
    MetricsServiceServer::new(OtlpMetricsGrpc { state })
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(MAX_REQUEST_BYTES)
}

pub(crate) fn routes() -> axum::Router<ClientIngest> {
    axum::Router::new().route("/v1/metrics", post(http_metrics))
}

async fn http_metrics(
    State(state): State<ClientIngest>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (grant, _turn, body) = match admit_otlp(&state, &headers, body).await {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    let decoded = tokio::task::spawn_blocking(move || {
        let bytes = decoded_body(&headers, &body).map_err(|e| (e.status, e.reason))?;
        ExportMetricsServiceRequest::decode(bytes.as_slice()).map_err(|e| {
            (StatusCode::BAD_REQUEST, format!("undecodable ExportMetricsServiceRequest: {e}"))
        })
    })
    .await;
    let request = match decoded {
        Ok(Ok(request)) => request,
        Ok(Err((status, reason))) => return (status, reason).into_response(),
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    match append(&state, request, &grant).await {
        Ok(answer) => ([(header::CONTENT_TYPE, "application/x-protobuf")], answer.encode_to_vec())
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot persist an OTLP metrics request");
            // 503 is retryable for OTLP/HTTP exporters.
            (StatusCode::SERVICE_UNAVAILABLE, format!("cannot persist the request: {e}"))
                .into_response()
        }
    }
}

/// The OTLP/gRPC metrics service.
pub(super) struct OtlpMetricsGrpc {
    state: ClientIngest,
}

#[tonic::async_trait]
impl MetricsService for OtlpMetricsGrpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let grant =
            request.extensions().get::<IngestGrant>().cloned().ok_or_else(|| {
                tonic::Status::unauthenticated("no grant: not served by grpc_router")
            })?;
        let _turn = self.state.turn().await;
        let answer = append(&self.state, request.into_inner(), &grant)
            .await
            .map_err(|e| tonic::Status::unavailable(format!("cannot persist the request: {e}")))?;
        Ok(tonic::Response::new(answer))
    }
}

/// Appends what `grant` may write of `request` as one WAL frame, and answers with the rest
/// reported as rejected.
async fn append(
    state: &ClientIngest,
    request: ExportMetricsServiceRequest,
    grant: &IngestGrant,
) -> Result<ExportMetricsServiceResponse, crate::CollectorError> {
    let (kept, answer) = permitted(request, grant);
    let points = kept.resource_metrics.iter().map(resource_points).sum::<usize>();
    let points = u32::try_from(points).map_err(|_| {
        crate::CollectorError::Server(format!("{points} data points in one request"))
    })?;
    Batch::metrics(&kept.encode_to_vec(), points).append(&state.wal).await?;
    Ok(answer)
}

/// The resources `grant` may write, and the answer reporting the others' points as rejected.
fn permitted(
    request: ExportMetricsServiceRequest,
    grant: &IngestGrant,
) -> (ExportMetricsServiceRequest, ExportMetricsServiceResponse) {
    let namespace = |r: &ResourceMetrics| {
        r.resource
            .as_ref()
            .and_then(|r| attribute(&r.attributes, "k8s.namespace.name"))
            .unwrap_or_default()
            .to_owned()
    };
    let (kept, refused): (Vec<_>, Vec<_>) =
        request.resource_metrics.into_iter().partition(|r| grant.allows(&namespace(r)));
    let mut answer = ExportMetricsServiceResponse::default();
    if let Some(first) = refused.first() {
        let points = refused.iter().map(resource_points).sum::<usize>();
        metrics::counter!("sluice_collector_unauthorized_writes_total").increment(points as u64);
        answer.partial_success = Some(ExportMetricsPartialSuccess {
            rejected_data_points: points as i64,
            error_message: format!(
                "{} may not write to namespace {:?}",
                grant.client,
                namespace(first)
            ),
        });
    }
    (ExportMetricsServiceRequest { resource_metrics: kept }, answer)
}

fn resource_points(r: &ResourceMetrics) -> usize {
    r.scope_metrics.iter().flat_map(|s| &s.metrics).map(metric_points).sum()
}

/// How many data points a metric holds, whatever its type.
pub fn metric_points(metric: &Metric) -> usize {
    match &metric.data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
    use opentelemetry_proto::tonic::metrics::v1::{Gauge, NumberDataPoint, ScopeMetrics};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    use super::*;

    fn resource(namespace: &str, points: usize) -> ResourceMetrics {
        let gauge = Gauge { data_points: vec![NumberDataPoint::default(); points] };
        ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "k8s.namespace.name".into(),
                    value: Some(AnyValue { value: Some(Any::StringValue(namespace.into())) }),
                    ..KeyValue::default()
                }],
                ..Resource::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric { data: Some(Data::Gauge(gauge)), ..Metric::default() }],
                ..ScopeMetrics::default()
            }],
            ..ResourceMetrics::default()
        }
    }

    #[test]
    fn resources_of_other_namespaces_are_reported_rejected() {
        let grant = IngestGrant::only("shop-agent", &["shop".to_owned()]);
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![resource("shop", 2), resource("pay", 3), resource("pay", 1)],
        };
        let (kept, answer) = permitted(request, &grant);
        assert_eq!(kept.resource_metrics.len(), 1);
        assert_eq!(resource_points(&kept.resource_metrics[0]), 2);
        let partial = answer.partial_success.unwrap();
        assert_eq!(partial.rejected_data_points, 4);
        assert!(partial.error_message.contains("\"pay\""), "{}", partial.error_message);
    }
}
