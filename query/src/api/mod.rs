//! The HTTP API: `/api/v1/{search,histogram,facets,context,tail,export}`, `/healthz`,
//! `/metrics`, and the search page at `/`.
//!
//! Each handler authenticates the caller (`Authorization: Bearer <token>`), turns its
//! parameters into a request carrying the caller's [`Scope`], and runs it in the store; the
//! scope is applied there, in the one place every query is built. Every query path takes its
//! parameters from the query string (`GET`) or, with the same names, from a JSON or form body
//! (`POST`), as Elasticsearch's `_search` does, for queries too long for a URL.

mod admission;
mod export;
mod tail;
mod web;

pub use admission::Admission;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Form, FromRequest, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::access::{Authenticator, Principal, Scope};
use crate::collect::Order;
use crate::context::ContextRequest;
use crate::facets::FacetsRequest;
use crate::histogram::HistogramRequest;
use crate::search::{DEFAULT_LIMIT, SearchRequest};
use crate::time::parse_time;
use crate::{QueryError, Store};

/// Renders the process's metrics in the Prometheus text format.
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<Store>,
    pub metrics: MetricsRender,
    pub auth: Arc<dyn Authenticator>,
    /// Every request that reads the store takes its turn here.
    pub admission: Arc<Admission>,
    /// Exports also take one here for as long as they stream.
    pub exports: Arc<Admission>,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/search", get(search).post(search))
        .route("/api/v1/histogram", get(histogram).post(histogram))
        .route("/api/v1/facets", get(facets).post(facets))
        .route("/api/v1/context", get(context).post(context))
        .route("/api/v1/tail", get(tail::tail).post(tail::tail))
        .route("/api/v1/export", get(export::export).post(export::export))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .merge(web::routes())
        .with_state(state)
}

/// A handler's parameters: the query string of a `GET`, the JSON (`application/json`) or form
/// (`application/x-www-form-urlencoded`) body of a `POST`. A malformed or unknown one is a 400
/// in the API's `{"error": …}` shape, where axum's own extractors answer plain text.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if request.method() != Method::POST {
            return match Query::<T>::try_from_uri(request.uri()) {
                Ok(Query(params)) => Ok(Params(params)),
                Err(rejection) => Err(parameter("in the query string", rejection.body_text())),
            };
        }
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if content_type.starts_with("application/json") {
            match Json::<T>::from_request(request, state).await {
                Ok(Json(params)) => Ok(Params(params)),
                Err(rejection) => Err(parameter("in the JSON body", rejection.body_text())),
            }
        } else if content_type.starts_with("application/x-www-form-urlencoded") {
            match Form::<T>::from_request(request, state).await {
                Ok(Form(params)) => Ok(Params(params)),
                Err(rejection) => Err(parameter("in the form body", rejection.body_text())),
            }
        } else {
            Err(parameter(
                "Content-Type",
                format!(
                    "{content_type:?}: a POST carries its parameters as application/json or \
                     application/x-www-form-urlencoded"
                ),
            ))
        }
    }
}

fn parameter(name: &'static str, reason: String) -> ApiError {
    QueryError::Parameter { name, reason }.into()
}

/// The authenticated caller of a request.
pub struct Caller(pub Principal);

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        Ok(Caller(state.auth.authenticate_request(&parts.headers)?))
    }
}

impl Caller {
    fn scope(&self) -> Scope {
        self.0.scope.clone()
    }
}

fn times(start: Option<&str>, end: Option<&str>) -> Result<(Option<i64>, Option<i64>), QueryError> {
    Ok((
        start.map(|s| parse_time("start", s)).transpose()?,
        end.map(|e| parse_time("end", e)).transpose()?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchParams {
    #[serde(default)]
    q: String,
    start: Option<String>,
    end: Option<String>,
    limit: Option<usize>,
    /// `newest` (default) or `oldest`.
    order: Option<String>,
    cursor: Option<String>,
    /// Run an unselective query even beyond the scan budget.
    #[serde(default)]
    force: bool,
}

fn parse_order(order: Option<&str>) -> Result<Order, QueryError> {
    match order {
        None | Some("newest") => Ok(Order::Newest),
        Some("oldest") => Ok(Order::Oldest),
        Some(other) => Err(QueryError::Parameter {
            name: "order",
            reason: format!("{other:?} is neither newest nor oldest"),
        }),
    }
}

async fn search(
    State(state): State<ApiState>,
    caller: Caller,
    Params(params): Params<SearchParams>,
) -> Result<Response, ApiError> {
    let (start_ns, end_ns) = times(params.start.as_deref(), params.end.as_deref())?;
    let request = SearchRequest {
        query: params.q,
        start_ns,
        end_ns,
        limit: params.limit.unwrap_or(DEFAULT_LIMIT),
        order: parse_order(params.order.as_deref())?,
        cursor: params.cursor.as_deref().map(str::parse).transpose()?,
        scope: caller.scope(),
        force: params.force,
    };
    let store = state.store.clone();
    Ok(Json(state.admission.run(move || store.search(&request)).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistogramParams {
    #[serde(default)]
    q: String,
    start: Option<String>,
    end: Option<String>,
    /// A duration such as `1m` or `1h`; automatic when absent.
    interval: Option<String>,
    /// A keyword field, default `level`; empty for one series.
    split: Option<String>,
    /// Run an unselective query even beyond the scan budget.
    #[serde(default)]
    force: bool,
}

async fn histogram(
    State(state): State<ApiState>,
    caller: Caller,
    Params(params): Params<HistogramParams>,
) -> Result<Response, ApiError> {
    let (start_ns, end_ns) = times(params.start.as_deref(), params.end.as_deref())?;
    let mut request = HistogramRequest::new(params.q);
    request.start_ns = start_ns;
    request.end_ns = end_ns;
    request.scope = caller.scope();
    request.force = params.force;
    request.interval = params.interval.as_deref().map(parse_duration).transpose()?;
    if let Some(split) = params.split {
        request.split = (!split.is_empty()).then_some(split);
    }
    let store = state.store.clone();
    Ok(Json(state.admission.run(move || store.histogram(&request)).await?).into_response())
}

fn parse_duration(text: &str) -> Result<Duration, QueryError> {
    humantime::parse_duration(text)
        .map_err(|e| QueryError::Parameter { name: "interval", reason: format!("{text:?}: {e}") })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FacetsParams {
    #[serde(default)]
    q: String,
    start: Option<String>,
    end: Option<String>,
    /// Comma-separated; default namespace,pod,container,level.
    fields: Option<String>,
    size: Option<usize>,
    /// Run an unselective query even beyond the scan budget.
    #[serde(default)]
    force: bool,
}

async fn facets(
    State(state): State<ApiState>,
    caller: Caller,
    Params(params): Params<FacetsParams>,
) -> Result<Response, ApiError> {
    let (start_ns, end_ns) = times(params.start.as_deref(), params.end.as_deref())?;
    let mut request = FacetsRequest::new(params.q);
    request.start_ns = start_ns;
    request.end_ns = end_ns;
    request.scope = caller.scope();
    request.force = params.force;
    if let Some(fields) = params.fields {
        request.fields =
            fields.split(',').map(|f| f.trim().to_owned()).filter(|f| !f.is_empty()).collect();
    }
    if let Some(size) = params.size {
        request.size = size;
    }
    let store = state.store.clone();
    Ok(Json(state.admission.run(move || store.facets(&request)).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContextParams {
    id: String,
    before: Option<usize>,
    after: Option<usize>,
}

async fn context(
    State(state): State<ApiState>,
    caller: Caller,
    Params(params): Params<ContextParams>,
) -> Result<Response, ApiError> {
    let id = params.id.parse().map_err(|_| QueryError::Parameter {
        name: "id",
        reason: format!("{:?} is not a record id (32 hex digits)", params.id),
    })?;
    let request = ContextRequest {
        id,
        before: params.before.unwrap_or(10),
        after: params.after.unwrap_or(10),
        scope: caller.scope(),
    };
    let store = state.store.clone();
    Ok(Json(state.admission.run(move || store.context(&request)).await?).into_response())
}

/// Prometheus metrics: with users configured, for admins and users with `metrics: true`
/// only — they name every tailed file and count every namespace's records.
async fn metrics(State(state): State<ApiState>, caller: Caller) -> Result<Response, ApiError> {
    if !caller.0.metrics {
        return Err(QueryError::Forbidden(format!(
            "{} may not read /metrics: it needs admin or metrics: true in the users file",
            caller.0.name
        ))
        .into());
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], (state.metrics)()).into_response())
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
            ApiError::Query(
                e @ (QueryError::Syntax(_) | QueryError::Parameter { .. } | QueryError::Budget(_)),
            ) => (StatusCode::BAD_REQUEST, e.to_string()),
            ApiError::Query(e @ QueryError::Unauthorized(_)) => {
                let mut response =
                    (StatusCode::UNAUTHORIZED, Json(serde_json::json!({ "error": e.to_string() })))
                        .into_response();
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return response;
            }
            ApiError::Query(e @ QueryError::Busy(_)) => {
                let mut response = (
                    StatusCode::TOO_MANY_REQUESTS,
                    Json(serde_json::json!({ "error": e.to_string() })),
                )
                    .into_response();
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return response;
            }
            ApiError::Query(e @ QueryError::Forbidden(_)) => (StatusCode::FORBIDDEN, e.to_string()),
            ApiError::Query(e @ QueryError::NotFound(_)) => (StatusCode::NOT_FOUND, e.to_string()),
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
        app_with(1, Admission::new(1, 8))
    }

    /// `records` records (the first the one the tests search for), exports admitted by
    /// `exports`.
    fn app_with(records: u64, exports: Admission) -> (tempfile::TempDir, Router) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut writer = StoreWriter::new(store.clone());
        for i in 0..records {
            let record = LogRecord {
                source: 1,
                offset: i,
                timestamp_ns: 1_700_000_000_000_000_000 + i as i64,
                message: if i == 0 {
                    "支付超时 db timeout".into()
                } else {
                    format!("line {i}")
                },
                level: "error".into(),
                ..LogRecord::default()
            };
            writer.add(&record, i + 1).unwrap();
        }
        writer.commit(records).unwrap();
        let state = ApiState {
            store,
            metrics: Arc::new(|| "sluice_up 1\n".to_owned()),
            auth: Arc::new(crate::access::Open),
            admission: Arc::new(Admission::new(2, 8)),
            exports: Arc::new(exports),
        };
        (dir, router(state))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_export_past_the_line_is_a_429_to_retry() {
        // Enough records that an unread export stays open, holding its turn.
        let (_dir, app) = app_with(30_000, Admission::new(1, 0));
        let export = || Request::get("/api/v1/export?q=").body(Body::empty()).unwrap();
        let open = app.clone().oneshot(export()).await.unwrap();
        assert_eq!(open.status(), StatusCode::OK);
        let refused = app.clone().oneshot(export()).await.unwrap();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
        let body = refused.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(body["error"].as_str().unwrap().contains("retry shortly"), "{body}");
        let (status, _) = get(app.clone(), "/api/v1/search?q=timeout").await;
        assert_eq!(status, StatusCode::OK, "searches have turns of their own");
        let lines = open.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(lines.iter().filter(|&&b| b == b'\n').count(), 30_000);
        let again = app.oneshot(export()).await.unwrap();
        assert_eq!(again.status(), StatusCode::OK, "the turn was given back");
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
        assert!(body["took_ms"].is_f64());
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
