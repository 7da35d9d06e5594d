//! `/api/v1/dashboards` (the list), `/api/v1/dashboards/{name}` (one, as the page draws it)
//! and `/api/v1/dashboards/query_range` (metric panels' PromQL, asked of `--prometheus-url`),
//! behind the search API's authentication. Log panels use the search API itself, so a user
//! limited to some namespaces sees only their numbers; metric panels need the right to read
//! `/metrics` (admins, `metrics: true`), since Prometheus knows no namespaces of ours.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sluice_alerting::http::HttpClient;
use sluice_query::access::{Authenticator, Principal};

use crate::dashboard::grafana::log_metric_expr;
use crate::dashboard::{Dashboard, Loaded};
use crate::log_metrics::LogMetricsFile;

/// What the routes serve.
pub struct Dashboards {
    pub dashboards: Vec<Loaded>,
    pub log_metrics: Option<LogMetricsFile>,
    /// The Prometheus-compatible API metric panels ask.
    pub prometheus: Option<String>,
}

#[derive(Clone)]
struct ApiState {
    served: Arc<Dashboards>,
    client: Arc<HttpClient>,
    auth: Arc<dyn Authenticator>,
}

pub fn routes(served: Dashboards, auth: Arc<dyn Authenticator>) -> Result<Router, String> {
    let client = Arc::new(HttpClient::new(None)?);
    Ok(Router::new()
        .route("/api/v1/dashboards", get(list))
        .route("/api/v1/dashboards/query_range", get(query_range))
        .route("/api/v1/dashboards/{name}", get(one))
        .with_state(ApiState { served: Arc::new(served), client, auth }))
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

fn caller(state: &ApiState, headers: &HeaderMap) -> Result<Principal, Box<Response>> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    state
        .auth
        .authenticate(bearer)
        .map_err(|e| Box::new(error(StatusCode::UNAUTHORIZED, e.to_string())))
}

async fn list(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if let Err(r) = caller(&state, &headers) {
        return *r;
    }
    let list: Vec<Value> = state
        .served
        .dashboards
        .iter()
        .map(|l| {
            let d = &l.dashboard;
            json!({"name": d.name, "title": d.title, "description": d.description, "tags": d.tags})
        })
        .collect();
    Json(json!({"dashboards": list})).into_response()
}

async fn one(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if let Err(r) = caller(&state, &headers) {
        return *r;
    }
    match state.served.dashboards.iter().find(|l| l.dashboard.name == name) {
        Some(l) => Json(view(&l.dashboard, &state.served)).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no dashboard {name:?}")),
    }
}

/// A dashboard as the page draws it: log metrics resolved to their PromQL.
fn view(d: &Dashboard, served: &Dashboards) -> Value {
    let rows: Vec<Value> = d
        .rows
        .iter()
        .map(|row| {
            let panels: Vec<Value> = row
                .panels
                .iter()
                .map(|p| {
                    let promql = p.promql.clone().or_else(|| {
                        p.log_metric
                            .as_deref()
                            .map(|m| log_metric_expr(m, served.log_metrics.as_ref()))
                    });
                    json!({
                        "type": format!("{:?}", p.kind).to_lowercase(), "title": p.title,
                        "width": p.width, "query": p.query, "field": p.field, "limit": p.limit,
                        "promql": promql, "legend": p.legend, "content": p.content,
                    })
                })
                .collect();
            json!({"title": row.title, "panels": panels})
        })
        .collect();
    let variables: Vec<Value> = d
        .variables
        .iter()
        .map(|v| json!({"name": v.name, "label": v.label.clone().unwrap_or_else(|| v.name.clone()), "field": v.field, "values": v.values, "multi": v.multi}))
        .collect();
    json!({
        "name": d.name, "title": d.title, "description": d.description, "time": d.time,
        "refresh": d.refresh, "variables": variables, "rows": rows,
        "prometheus": served.prometheus.is_some(),
    })
}

#[derive(Deserialize)]
struct RangeParams {
    query: String,
    start: f64,
    end: f64,
    step: f64,
}

async fn query_range(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(params): Query<RangeParams>,
) -> Response {
    let principal = match caller(&state, &headers) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    if !principal.metrics {
        return error(
            StatusCode::FORBIDDEN,
            format!(
                "{} may not read metrics: it needs admin or metrics: true in the users file",
                principal.name
            ),
        );
    }
    let Some(base) = &state.served.prometheus else {
        return error(
            StatusCode::NOT_FOUND,
            "no Prometheus to ask: start with --prometheus-url".into(),
        );
    };
    let encode = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let url = format!(
        "{}/api/v1/query_range?query={}&start={}&end={}&step={}",
        base.trim_end_matches('/'),
        encode(&params.query),
        params.start,
        params.end,
        params.step.max(1.0)
    );
    match state.client.get(&url, Duration::from_secs(30)).await {
        // Prometheus's own answer, errors included (400 for a bad expression, 422, 503).
        Ok((status, body)) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            [("content-type", "application/json")],
            body,
        )
            .into_response(),
        Err(e) => error(
            StatusCode::BAD_GATEWAY,
            format!(
                "cannot reach Prometheus at {}: {}",
                sluice_alerting::http::redact(base),
                e.message
            ),
        ),
    }
}
