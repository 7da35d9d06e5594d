//! `/api/v1/dashboards` (the list), `/api/v1/dashboards/{name}` (one, as the page draws it;
//! `PUT` by an admin stores one, as `sluice dash apply` does), `/api/v1/dashboards/{name}/source`
//! (a stored one's file, for apply's diff) and `/api/v1/dashboards/query_range` (metric panels'
//! PromQL, asked of `--prometheus-url`), behind the search API's authentication. Log panels use the search API itself, so a user
//! limited to some namespaces sees only their numbers; metric panels need the right to read
//! `/metrics` (admins, `metrics: true`), since Prometheus knows no namespaces of ours.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sluice_alerting::AlertsFile;
use sluice_alerting::http::HttpClient;
use sluice_query::access::Scope;
use sluice_query::access::{Authenticator, Principal};

use crate::dashboard::grafana::log_metric_expr;
use crate::dashboard::{Dashboard, Loaded, lint};
use crate::log_metrics::LogMetricsFile;

/// What the routes serve.
pub struct Dashboards {
    /// The built-ins and those of `--dashboards`: fixed while the server runs.
    pub dashboards: Vec<Loaded>,
    pub alerts: Option<AlertsFile>,
    pub log_metrics: Option<LogMetricsFile>,
    /// The Prometheus-compatible API metric panels ask.
    pub prometheus: Option<String>,
    /// Where applied dashboards are kept, one `<name>.yaml` each.
    pub store: PathBuf,
}

/// An applied dashboard and the file it came from.
struct Applied {
    dashboard: Dashboard,
    source: String,
}

#[derive(Clone)]
struct ApiState {
    served: Arc<Dashboards>,
    applied: Arc<RwLock<BTreeMap<String, Applied>>>,
    client: Arc<HttpClient>,
    auth: Arc<dyn Authenticator>,
}

/// The routes, with the dashboards applied before read back from the store.
pub fn routes(served: Dashboards, auth: Arc<dyn Authenticator>) -> Result<Router, String> {
    let client = Arc::new(HttpClient::new(None)?);
    let mut applied = BTreeMap::new();
    let (stored, problems) = if served.store.is_dir() {
        crate::dashboard::load(&served.store)
    } else {
        (Vec::new(), Vec::new())
    };
    if let Some(p) = problems.into_iter().find(|p| !p.message.starts_with("no dashboard files")) {
        return Err(format!("an applied dashboard no longer reads: {p}"));
    }
    for l in stored {
        let source =
            std::fs::read_to_string(&l.path).map_err(|e| format!("{}: {e}", l.path.display()))?;
        applied.insert(l.dashboard.name.clone(), Applied { dashboard: l.dashboard, source });
    }
    Ok(Router::new()
        .route("/api/v1/dashboards", get(list))
        .route("/api/v1/dashboards/query_range", get(query_range))
        .route("/api/v1/dashboards/{name}", get(one).put(apply))
        .route("/api/v1/dashboards/{name}/source", get(source))
        .with_state(ApiState {
            served: Arc::new(served),
            applied: Arc::new(RwLock::new(applied)),
            client,
            auth,
        }))
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

fn caller(state: &ApiState, headers: &HeaderMap) -> Result<Principal, Box<Response>> {
    state
        .auth
        .authenticate_request(headers)
        .map_err(|e| Box::new(error(StatusCode::UNAUTHORIZED, e.to_string())))
}

async fn list(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if let Err(r) = caller(&state, &headers) {
        return *r;
    }
    let applied = state.applied.read().expect("poisoned");
    let fixed = state.served.dashboards.iter().map(|l| (&l.dashboard, false));
    let list: Vec<Value> = fixed
        .chain(applied.values().map(|a| (&a.dashboard, true)))
        .map(|(d, applied)| {
            json!({"name": d.name, "title": d.title, "description": d.description, "tags": d.tags, "applied": applied})
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
    if let Some(l) = state.served.dashboards.iter().find(|l| l.dashboard.name == name) {
        return Json(view(&l.dashboard, &state.served)).into_response();
    }
    match state.applied.read().expect("poisoned").get(&name) {
        Some(a) => Json(view(&a.dashboard, &state.served)).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no dashboard {name:?}")),
    }
}

/// An applied dashboard's file, as `sluice dash apply` compares it.
async fn source(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if let Err(r) = caller(&state, &headers) {
        return *r;
    }
    match state.applied.read().expect("poisoned").get(&name) {
        Some(a) => Json(json!({"name": name, "source": a.source})).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no applied dashboard {name:?}")),
    }
}

#[derive(Deserialize)]
struct ApplyBody {
    source: String,
}

/// Stores a dashboard file (admins only), after the same checks as `sluice dash lint` with the
/// server's alerts and log metrics files; the same file again changes nothing.
async fn apply(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Json(body): Json<ApplyBody>,
) -> Response {
    match caller(&state, &headers) {
        Ok(p) if matches!(p.scope, Scope::All) => {}
        Ok(p) => {
            return error(
                StatusCode::FORBIDDEN,
                format!("{} may not apply dashboards: admins only", p.name),
            );
        }
        Err(r) => return *r,
    }
    let path = state.served.store.join(format!("{name}.yaml"));
    let dashboard: Dashboard = match yaml_serde::from_str(&body.source) {
        Ok(d) => d,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("{name}.yaml: {e}")),
    };
    if dashboard.name != name {
        return error(
            StatusCode::BAD_REQUEST,
            format!("the file names {:?}, not {name:?}", dashboard.name),
        );
    }
    if state.served.dashboards.iter().any(|l| l.dashboard.name == name) {
        return error(
            StatusCode::CONFLICT,
            format!("{name:?} is a built-in or --dashboards dashboard; apply another name"),
        );
    }
    let mut applied = state.applied.write().expect("poisoned");
    if applied.get(&name).is_some_and(|a| a.source == body.source) {
        return Json(json!({"name": name, "changed": false})).into_response();
    }
    let mut all: Vec<Loaded> = state.served.dashboards.clone();
    all.extend(applied.iter().filter(|(n, _)| **n != name).map(|(n, a)| Loaded {
        path: state.served.store.join(format!("{n}.yaml")),
        dashboard: a.dashboard.clone(),
    }));
    all.push(Loaded { path: path.clone(), dashboard: dashboard.clone() });
    let cx = lint::Context {
        alerts: state.served.alerts.as_ref(),
        log_metrics: state.served.log_metrics.as_ref(),
    };
    let problems: Vec<String> = lint::lint(&all, &cx).iter().map(ToString::to_string).collect();
    if !problems.is_empty() {
        return error(StatusCode::BAD_REQUEST, problems.join("\n"));
    }
    if let Err(e) = sluice_collector::durable::replace(&path, body.source.as_bytes()) {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot store {}: {e}", path.display()),
        );
    }
    applied.insert(name.clone(), Applied { dashboard, source: body.source });
    Json(json!({"name": name, "changed": true})).into_response()
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
