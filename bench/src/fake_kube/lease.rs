//! The double's `coordination.k8s.io/v1` Leases, as a real apiserver keeps them: `GET` is
//! the Lease or `404`; `POST` creates it (`409 AlreadyExists` when it exists); `PUT` replaces
//! it, `409 Conflict` when the body's `metadata.resourceVersion` is not the current one (the
//! optimistic concurrency leader election rests on), `404` when there is none. Each write
//! gives the Lease a new resourceVersion.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{Cluster, Shared, authorized, status, unauthorized};

fn answer(code: StatusCode, body: Value) -> Response {
    (code, Json(body)).into_response()
}

fn refused(code: u16, reason: &str, message: String) -> Response {
    answer(StatusCode::from_u16(code).unwrap(), status(code, reason, &message))
}

/// Stores `lease` under a new resourceVersion and answers it.
fn store(c: &mut Cluster, key: (String, String), mut lease: Value, code: StatusCode) -> Response {
    c.resource_version += 1;
    lease["metadata"]["resourceVersion"] = Value::String(c.resource_version.to_string());
    lease["metadata"]["namespace"] = Value::String(key.0.clone());
    lease["metadata"]["name"] = Value::String(key.1.clone());
    c.leases.insert(key, lease.clone());
    answer(code, lease)
}

pub(super) async fn get(
    State(shared): State<Shared>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&shared.token, &headers) {
        return unauthorized();
    }
    let c = shared.cluster.lock().unwrap();
    match c.leases.get(&(namespace, name.clone())) {
        Some(lease) => answer(StatusCode::OK, lease.clone()),
        None => {
            refused(404, "NotFound", format!("leases.coordination.k8s.io \"{name}\" not found"))
        }
    }
}

pub(super) async fn create(
    State(shared): State<Shared>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    Json(lease): Json<Value>,
) -> Response {
    if !authorized(&shared.token, &headers) {
        return unauthorized();
    }
    let namespace = params.get("namespace").cloned().unwrap_or_default();
    let name = lease["metadata"]["name"].as_str().unwrap_or_default().to_owned();
    let mut c = shared.cluster.lock().unwrap();
    if c.leases.contains_key(&(namespace.clone(), name.clone())) {
        let message = format!("leases.coordination.k8s.io \"{name}\" already exists");
        return refused(409, "AlreadyExists", message);
    }
    store(&mut c, (namespace, name), lease, StatusCode::CREATED)
}

pub(super) async fn replace(
    State(shared): State<Shared>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    Json(lease): Json<Value>,
) -> Response {
    if !authorized(&shared.token, &headers) {
        return unauthorized();
    }
    let key = (namespace, name.clone());
    let mut c = shared.cluster.lock().unwrap();
    let current = c.leases.get(&key).map(|l| l["metadata"]["resourceVersion"].clone());
    let Some(current) = current else {
        return refused(
            404,
            "NotFound",
            format!("leases.coordination.k8s.io \"{name}\" not found"),
        );
    };
    let asked = &lease["metadata"]["resourceVersion"];
    if !asked.is_null() && *asked != current {
        let message = format!(
            "Operation cannot be fulfilled on leases.coordination.k8s.io \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
        );
        return refused(409, "Conflict", message);
    }
    store(&mut c, key, lease, StatusCode::OK)
}
