//! `/api/v1/alerts` (firing, pending and silenced alerts), `/api/v1/alerts/status` (each
//! channel: ok, throttled, config_error, with its last error and queue) and
//! `/api/v1/silences` (list, create, expire), behind the search API's authentication. A user
//! limited to some namespaces sees only alerts labelled with one of them; channels and
//! silences are for admins.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use sluice_query::access::{Authenticator, Principal, Scope};

use crate::engine::{Alerting, now_ms};
use crate::route::LabelMatcher;
use crate::silence::Silence;

#[derive(Clone)]
struct ApiState {
    alerting: Alerting,
    auth: Arc<dyn Authenticator>,
}

pub fn routes(alerting: Alerting, auth: Arc<dyn Authenticator>) -> Router {
    Router::new()
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/alerts/status", get(status))
        .route("/api/v1/silences", get(silences).post(create_silence))
        .route("/api/v1/silences/{id}", delete(expire_silence))
        .route("/api/v2/alerts", post(prometheus_push))
        .route("/api/v1/alertmanager/webhook", post(alertmanager_webhook))
        .with_state(ApiState { alerting, auth })
}

/// Without `--alerts`: `/api/v1/alerts` says so (`"enabled": false`), so the page hides its
/// alerts panel instead of meeting a 404.
pub fn disabled() -> Router {
    Router::new()
        .route("/api/v1/alerts", get(|| async { Json(json!({"enabled": false, "alerts": []})) }))
}

fn caller(state: &ApiState, headers: &HeaderMap) -> Result<Principal, Box<Response>> {
    state.auth.authenticate_request(headers).map_err(|e| {
        Box::new((StatusCode::UNAUTHORIZED, Json(json!({"error": e.to_string()}))).into_response())
    })
}

fn admin(state: &ApiState, headers: &HeaderMap) -> Result<(), Box<Response>> {
    match caller(state, headers)?.scope {
        Scope::All => Ok(()),
        Scope::Only { .. } => Err(Box::new(
            (
                StatusCode::FORBIDDEN,
                Json(json!({"error": "only admins see channels and manage silences"})),
            )
                .into_response(),
        )),
    }
}

/// Whether a glob (`*` any run) matches the whole value.
fn glob(pattern: &str, value: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == value,
        Some((head, tail)) => {
            value.starts_with(head) && {
                let rest = &value[head.len()..];
                (0..=rest.len())
                    .filter(|i| rest.is_char_boundary(*i))
                    .any(|i| glob(tail, &rest[i..]))
            }
        }
    }
}

fn visible(scope: &Scope, labels: &crate::alert::Labels) -> bool {
    match scope {
        Scope::All => true,
        Scope::Only { clusters, namespaces } => {
            let cluster = labels.get("cluster").map_or("", String::as_str);
            let Some(namespace) = labels.get("namespace") else { return false };
            (cluster.is_empty() || clusters.iter().any(|c| c == "*" || glob(c, cluster)))
                && namespaces.iter().any(|n| n == "*" || glob(n, namespace))
        }
    }
}

async fn alerts(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    let principal = match caller(&state, &headers) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let alerts: Vec<_> = state
        .alerting
        .alerts()
        .into_iter()
        .filter(|(_, a)| visible(&principal.scope, &a.labels))
        .map(|(s, a)| {
            json!({
                "state": s,
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": a.starts_at,
                "fingerprint": format!("{:016x}", a.fingerprint()),
            })
        })
        .collect();
    Json(json!({ "enabled": true, "alerts": alerts })).into_response()
}

async fn status(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if let Err(r) = admin(&state, &headers) {
        return *r;
    }
    Json(json!({ "channels": state.alerting.statuses() })).into_response()
}

async fn silences(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if let Err(r) = admin(&state, &headers) {
        return *r;
    }
    let now = now_ms();
    let list: Vec<_> = state
        .alerting
        .silences()
        .into_iter()
        .map(|s| {
            let active = s.is_active(now);
            let mut v = serde_json::to_value(s).expect("plain data");
            v["active"] = json!(active);
            v
        })
        .collect();
    Json(json!({ "silences": list })).into_response()
}

/// An alert as Prometheus pushes it and Alertmanager's webhook sends it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireAlert {
    #[serde(default)]
    status: Option<String>,
    labels: crate::alert::Labels,
    #[serde(default)]
    annotations: crate::alert::Labels,
    #[serde(default)]
    starts_at: Option<String>,
    #[serde(default)]
    ends_at: Option<String>,
}

#[derive(Deserialize)]
struct Webhook {
    alerts: Vec<WireAlert>,
}

/// Milliseconds of an RFC 3339 time; `None` for none or Go's zero time (`0001-01-01…`).
fn millis(time: Option<&str>) -> Result<Option<i64>, String> {
    match time {
        None | Some("") => Ok(None),
        Some(t) if t.starts_with("0001-01-01") => Ok(None),
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map(|t| Some(t.timestamp_millis()))
            .map_err(|e| format!("{t:?} is not an RFC 3339 time: {e}")),
    }
}

/// Each wire alert as an alert and, when it fires until a set time, that time. Prometheus
/// sets `endsAt` in the future on firing alerts (it resends them before then); a past
/// `endsAt` or `status: resolved` is a resolution.
fn convert(
    wire: Vec<WireAlert>,
    now: i64,
) -> Result<Vec<(crate::alert::Alert, Option<i64>)>, String> {
    wire.into_iter()
        .map(|w| {
            if !w.labels.contains_key("alertname") {
                return Err("an alert without an alertname label".to_owned());
            }
            let starts_at = millis(w.starts_at.as_deref())?.unwrap_or(now);
            let ends_at = millis(w.ends_at.as_deref())?;
            let resolved =
                w.status.as_deref() == Some("resolved") || ends_at.is_some_and(|t| t <= now);
            let alert = crate::alert::Alert {
                labels: w.labels,
                annotations: w.annotations,
                starts_at,
                ends_at: resolved.then(|| ends_at.unwrap_or(now)),
            };
            Ok((alert, if resolved { None } else { ends_at }))
        })
        .collect()
}

async fn take(
    state: &ApiState,
    headers: &HeaderMap,
    wire: Result<Vec<WireAlert>, String>,
) -> Response {
    if let Err(r) = admin(state, headers) {
        return *r;
    }
    let bad = |m: String| (StatusCode::BAD_REQUEST, Json(json!({"error": m}))).into_response();
    let alerts = match wire.and_then(|w| convert(w, now_ms())) {
        Ok(a) => a,
        Err(e) => return bad(format!("alerts: {e}")),
    };
    match state.alerting.receive(alerts) {
        Ok(n) => Json(json!({"received": n})).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": e.to_string()})))
            .into_response(),
    }
}

/// `POST /api/v2/alerts`, as Alertmanager serves it to Prometheus.
async fn prometheus_push(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let wire = serde_json::from_slice::<Vec<WireAlert>>(&body).map_err(|e| e.to_string());
    take(&state, &headers, wire).await
}

/// An Alertmanager `webhook_configs` URL: its notifications' alerts routed here again.
async fn alertmanager_webhook(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let wire =
        serde_json::from_slice::<Webhook>(&body).map(|w| w.alerts).map_err(|e| e.to_string());
    take(&state, &headers, wire).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSilence {
    matchers: Vec<String>,
    /// `2h`, `30m`.
    duration: String,
    created_by: String,
    #[serde(default)]
    comment: String,
}

async fn create_silence(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = admin(&state, &headers) {
        return *r;
    }
    let bad = |m: String| (StatusCode::BAD_REQUEST, Json(json!({"error": m}))).into_response();
    let new: NewSilence = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => return bad(format!("silence: {e}")),
    };
    let matchers: Result<Vec<LabelMatcher>, String> =
        new.matchers.iter().map(|m| m.parse()).collect();
    let matchers = match matchers {
        Ok(m) if !m.is_empty() => m,
        Ok(_) => return bad("silence: give at least one matcher".to_owned()),
        Err(e) => return bad(format!("silence: {e}")),
    };
    let duration = match humantime::parse_duration(&new.duration) {
        Ok(d) if !d.is_zero() => d,
        _ => {
            return bad(format!(
                "silence: duration {:?} is not a duration (30m, 2h)",
                new.duration
            ));
        }
    };
    if new.created_by.trim().is_empty() {
        return bad("silence: created_by is empty".to_owned());
    }
    let now = now_ms();
    let silence = Silence::new(
        matchers,
        now,
        now + duration.as_millis() as i64,
        &new.created_by,
        &new.comment,
    );
    match state.alerting.add_silence(silence) {
        Ok(id) => Json(json!({"id": id})).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": e.to_string()})))
            .into_response(),
    }
}

async fn expire_silence(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = admin(&state, &headers) {
        return *r;
    }
    match state.alerting.expire_silence(&id) {
        Ok(true) => Json(json!({"expired": id})).into_response(),
        Ok(false) => {
            (StatusCode::NOT_FOUND, Json(json!({"error": format!("no active silence {id}")})))
                .into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": e.to_string()})))
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushed_alerts_fire_until_ends_at_and_webhook_resolutions_resolve() {
        let now = 1_800_000_000_000;
        let pushed: Vec<WireAlert> = serde_json::from_str(
            r#"[{"labels":{"alertname":"HighLatency","namespace":"pay"},"annotations":{"summary":"p99 2s"},
                "startsAt":"2027-01-15T08:00:00Z","endsAt":"2027-01-15T08:10:00Z","generatorURL":"http://prom/graph"}]"#,
        )
        .unwrap();
        let (alert, expires) = convert(pushed, now).unwrap().remove(0);
        assert!(alert.is_firing());
        let ends = chrono::DateTime::parse_from_rfc3339("2027-01-15T08:10:00Z").unwrap();
        assert_eq!(expires, Some(ends.timestamp_millis()));
        let hook: Webhook = serde_json::from_str(
            r#"{"version":"4","status":"resolved","receiver":"sluice","groupLabels":{},"commonLabels":{},"commonAnnotations":{},"externalURL":"http://am","groupKey":"{}:{}","truncatedAlerts":0,
                "alerts":[{"status":"resolved","labels":{"alertname":"Down"},"annotations":{},"startsAt":"2027-01-15T08:00:00Z","endsAt":"2027-01-15T08:05:00Z","fingerprint":"abc","generatorURL":""},
                          {"status":"firing","labels":{"alertname":"Up"},"annotations":{},"startsAt":"2027-01-15T08:00:00Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"def","generatorURL":""}]}"#,
        )
        .unwrap();
        let alerts = convert(hook.alerts, now).unwrap();
        assert!(!alerts[0].0.is_firing() && alerts[0].1.is_none());
        assert!(alerts[1].0.is_firing() && alerts[1].1.is_none(), "fires until a resolution comes");
        let nameless: Vec<WireAlert> = serde_json::from_str(r#"[{"labels":{"x":"y"}}]"#).unwrap();
        assert!(convert(nameless, now).unwrap_err().contains("alertname"));
    }

    #[test]
    fn scoped_users_see_only_their_namespaces() {
        let scope = Scope::Only { clusters: vec!["*".into()], namespaces: vec!["pay-*".into()] };
        let labels =
            |ns: &str| crate::alert::Labels::from([("namespace".to_owned(), ns.to_owned())]);
        assert!(visible(&scope, &labels("pay-prod")));
        assert!(!visible(&scope, &labels("web")));
        assert!(!visible(&scope, &crate::alert::Labels::new()));
        assert!(visible(&Scope::All, &crate::alert::Labels::new()));
    }
}
