//! `/api/v1/alerts` (firing, pending and silenced alerts), `/api/v1/alerts/status` (each
//! channel: ok, throttled, config_error, with its last error and queue) and
//! `/api/v1/silences` (list, create, expire), behind the search API's authentication. A user
//! limited to some namespaces sees only alerts labelled with one of them; channels and
//! silences are for admins.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
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
        .with_state(ApiState { alerting, auth })
}

fn caller(state: &ApiState, headers: &HeaderMap) -> Result<Principal, Box<Response>> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    state.auth.authenticate(bearer).map_err(|e| {
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
    Json(json!({ "alerts": alerts })).into_response()
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
