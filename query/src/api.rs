//! The HTTP API: `GET /api/v1/search`, `GET /healthz`, `GET /metrics`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use crate::search::{DEFAULT_LIMIT, SearchRequest};
use crate::{QueryError, Store};

/// Renders the process's metrics in the Prometheus text format.
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<Store>,
    pub metrics: MetricsRender,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/search", get(search))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchParams {
    #[serde(default)]
    q: String,
    start: Option<String>,
    end: Option<String>,
    limit: Option<usize>,
}

async fn search(
    State(state): State<ApiState>,
    Query(params): Query<SearchParams>,
) -> Result<Response, ApiError> {
    let request = SearchRequest {
        query: params.q,
        start_ns: params.start.as_deref().map(|s| parse_time("start", s)).transpose()?,
        end_ns: params.end.as_deref().map(|s| parse_time("end", s)).transpose()?,
        limit: params.limit.unwrap_or(DEFAULT_LIMIT),
    };
    let store = state.store.clone();
    let response = tokio::task::spawn_blocking(move || store.search(&request))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(response).into_response())
}

async fn metrics(State(state): State<ApiState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], (state.metrics)()).into_response()
}

/// A time parameter: RFC 3339, or an integer number of nanoseconds since the epoch.
pub fn parse_time(name: &'static str, value: &str) -> Result<i64, QueryError> {
    if let Ok(ns) = value.parse::<i64>() {
        return Ok(ns);
    }
    chrono::DateTime::parse_from_rfc3339(value)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .ok_or_else(|| QueryError::Parameter {
            name,
            reason: format!("{value:?} is neither RFC 3339 nor Unix nanoseconds"),
        })
}

/// The one place query errors become HTTP answers.
#[derive(Debug)]
pub enum ApiError {
    Query(QueryError),
    Internal(String),
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        ApiError::Query(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match &self {
            ApiError::Query(e @ (QueryError::Syntax(_) | QueryError::Parameter { .. })) => {
                (StatusCode::BAD_REQUEST, e.to_string())
            }
            ApiError::Query(e) => {
                tracing::error!(error = %e, "search failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "search failed; see the server log".to_owned())
            }
            ApiError::Internal(e) => {
                tracing::error!(error = %e, "search task failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "search failed; see the server log".to_owned())
            }
        };
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use sluice_proto::LogRecord;
    use tower::ServiceExt;

    use super::*;
    use crate::StoreWriter;

    fn app() -> (tempfile::TempDir, Router) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut writer = StoreWriter::new(store.clone());
        let record = LogRecord {
            source: 1,
            timestamp_ns: 1_700_000_000_000_000_000,
            message: "支付超时 db timeout".into(),
            level: "error".into(),
            ..LogRecord::default()
        };
        writer.add(&record, 1).unwrap();
        writer.commit(1).unwrap();
        let state = ApiState { store, metrics: Arc::new(|| "sluice_up 1\n".to_owned()) };
        (dir, router(state))
    }

    async fn get(app: Router, uri: &str) -> (StatusCode, serde_json::Value) {
        let response = app.oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    #[tokio::test]
    async fn search_returns_hits_as_json() {
        let (_dir, app) = app();
        let (status, body) =
            get(app, "/api/v1/search?q=%E6%94%AF%E4%BB%98%E8%B6%85%E6%97%B6&limit=5").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["total"], 1);
        assert_eq!(body["hits"][0]["message"], "支付超时 db timeout");
        assert_eq!(body["hits"][0]["ts"], "2023-11-14T22:13:20.000000000Z");
        assert_eq!(body["hits"][0]["level"], "error");
        assert!(body["took_ms"].is_u64());
    }

    #[tokio::test]
    async fn time_range_accepts_rfc3339_and_nanoseconds() {
        let (_dir, app) = app();
        let (_, body) =
            get(app.clone(), "/api/v1/search?q=timeout&start=2023-11-14T22:13:21Z").await;
        assert_eq!(body["total"], 0);
        let (_, body) = get(app, "/api/v1/search?q=timeout&start=1700000000000000000").await;
        assert_eq!(body["total"], 1);
    }

    #[tokio::test]
    async fn bad_input_is_a_400_with_a_message() {
        let (_dir, app) = app();
        let (status, body) = get(app.clone(), "/api/v1/search?q=(timeout").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["error"].as_str().unwrap().contains("never closed"), "{body}");
        let (status, body) = get(app.clone(), "/api/v1/search?q=x&start=yesterday").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["error"].as_str().unwrap().contains("start"), "{body}");
        let (status, _) = get(app, "/api/v1/search?q=x&limt=3").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn health_and_metrics() {
        let (_dir, app) = app();
        let response = app
            .clone()
            .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let response =
            app.oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"sluice_up 1\n");
    }
}
