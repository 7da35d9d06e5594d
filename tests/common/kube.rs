//! A local double of the Kubernetes API server's pod endpoints — a test double, as no real
//! API server can run here — that keeps the protocol a client sees from a real one:
//! bearer-token auth (`401` Status otherwise); `GET /api/v1/pods` lists with
//! `metadata.resourceVersion`, pages by `limit` and `continue` (an expired token is `410`);
//! `?watch=true&resourceVersion=N` streams newline-delimited `ADDED`/`MODIFIED`/`DELETED`
//! events after N, `BOOKMARK`s when `allowWatchBookmarks=true`, ends after `timeoutSeconds`
//! (capped, as servers may close early), and answers a resourceVersion older than its
//! history with an `ERROR` event holding a `410 Expired` Status, which obliges the client to
//! list again.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::sync::watch;

/// The longest a watch stays open, whatever the client asked.
const WATCH_MAX: Duration = Duration::from_secs(20);
const BOOKMARK_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Cluster {
    resource_version: u64,
    /// Pods by uid, each with its current resourceVersion.
    pods: BTreeMap<String, Value>,
    /// `(resourceVersion, type, object)` of every change not compacted away.
    history: Vec<(u64, &'static str, Value)>,
    /// Watches from a resourceVersion below this get `410`.
    oldest_watchable: u64,
    lists: usize,
    watches: usize,
    expired: usize,
}

#[derive(Clone)]
struct Shared {
    token: String,
    cluster: Arc<Mutex<Cluster>>,
    /// Bumped on every change (wakes watches) and by [`FakeKube::end_watches`].
    changes: watch::Sender<(u64, u64)>,
}

/// The double, serving on loopback from its own thread until dropped.
pub struct FakeKube {
    pub url: String,
    pub token: String,
    shared: Shared,
    _runtime: tokio::runtime::Runtime,
}

/// What the double has served, for tests to check the client's behaviour.
#[derive(Debug, Clone, Copy)]
pub struct Served {
    pub lists: usize,
    pub watches: usize,
    pub expired: usize,
}

pub struct PodSpec<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub labels: Vec<(&'a str, &'a str)>,
    pub node: &'a str,
    pub owner: (&'a str, &'a str),
}

fn pod_json(p: &PodSpec<'_>, resource_version: u64) -> Value {
    let labels: HashMap<&str, &str> = p.labels.iter().copied().collect();
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": p.name,
            "namespace": p.namespace,
            "uid": p.uid,
            "resourceVersion": resource_version.to_string(),
            "labels": labels,
            "ownerReferences": [{
                "apiVersion": "apps/v1",
                "kind": p.owner.0,
                "name": p.owner.1,
                "uid": format!("owner-{}", p.owner.1),
                "controller": true,
                "blockOwnerDeletion": true,
            }],
        },
        "spec": {"nodeName": p.node, "containers": [{"name": "app", "image": "registry.local/app:1"}]},
        "status": {"phase": "Running"},
    })
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

impl FakeKube {
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let token = "kube-test-token-0123456789".to_owned();
        let shared = Shared {
            token: token.clone(),
            cluster: Arc::default(),
            changes: watch::channel((0, 0)).0,
        };
        let app = Router::new().route("/api/v1/pods", get(pods)).with_state(shared.clone());
        runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, token, shared, _runtime: runtime }
    }

    /// A kubeconfig for the double, for `KUBECONFIG`.
    pub fn kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("kubeconfig.yaml");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\nusers:\n- name: test\n  user:\n    token: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: test\ncurrent-context: fake\n",
                self.url, self.token
            ),
        )
        .unwrap();
        path
    }

    /// Adds or changes a pod, as an `ADDED` or `MODIFIED` event.
    pub fn apply(&self, pod: &PodSpec<'_>) {
        self.change(|c, rv| {
            let object = pod_json(pod, rv);
            let kind = if c.pods.contains_key(pod.uid) { "MODIFIED" } else { "ADDED" };
            c.pods.insert(pod.uid.to_owned(), object.clone());
            c.history.push((rv, kind, object));
        });
    }

    pub fn delete(&self, uid: &str) {
        self.change(|c, rv| {
            if let Some(mut object) = c.pods.remove(uid) {
                object["metadata"]["resourceVersion"] = json!(rv.to_string());
                c.history.push((rv, "DELETED", object));
            }
        });
    }

    /// Changes a pod and compacts the history past the change: open watches get a `410`
    /// ERROR event, and a client can only learn of the change by listing again.
    pub fn apply_unwatchable(&self, pod: &PodSpec<'_>) {
        self.change(|c, rv| {
            c.pods.insert(pod.uid.to_owned(), pod_json(pod, rv));
            c.history.clear();
            c.oldest_watchable = rv + 1;
        });
    }

    /// Closes every open watch, as an API server does when it restarts.
    pub fn end_watches(&self) {
        self.shared.changes.send_modify(|(_, epoch)| *epoch += 1);
    }

    pub fn served(&self) -> Served {
        let c = self.shared.cluster.lock().unwrap();
        Served { lists: c.lists, watches: c.watches, expired: c.expired }
    }

    fn change(&self, f: impl FnOnce(&mut Cluster, u64)) {
        let rv = {
            let mut c = self.shared.cluster.lock().unwrap();
            c.resource_version += 1;
            let rv = c.resource_version;
            f(&mut c, rv);
            rv
        };
        self.shared.changes.send_modify(|(seen, _)| *seen = rv);
    }
}

async fn pods(
    State(shared): State<Shared>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {}", shared.token));
    if !authorized {
        return (StatusCode::UNAUTHORIZED, axum::Json(status(401, "Unauthorized", "Unauthorized")))
            .into_response();
    }
    let watching = params.get("watch").is_some_and(|w| w == "true" || w == "1");
    if watching { watch_pods(shared, &params) } else { list_pods(&shared, &params) }
}

fn list_pods(shared: &Shared, params: &HashMap<String, String>) -> Response {
    let mut c = shared.cluster.lock().unwrap();
    c.lists += 1;
    let limit = params.get("limit").and_then(|l| l.parse::<usize>().ok()).filter(|l| *l > 0);
    // A continue token pins the list to the resourceVersion of its first page.
    let (snapshot_rv, start) = match params.get("continue").filter(|t| !t.is_empty()) {
        Some(token) => {
            let Some((rv, start)) = token
                .split_once(':')
                .and_then(|(rv, s)| Some((rv.parse::<u64>().ok()?, s.parse::<usize>().ok()?)))
            else {
                return (
                    StatusCode::BAD_REQUEST,
                    axum::Json(status(400, "BadRequest", "invalid continue token")),
                )
                    .into_response();
            };
            if rv < c.oldest_watchable {
                c.expired += 1;
                let message = "The provided continue parameter is too old to display a consistent list result.";
                return (StatusCode::GONE, axum::Json(status(410, "Expired", message)))
                    .into_response();
            }
            (rv, start)
        }
        None => (c.resource_version, 0),
    };
    let items: Vec<Value> =
        c.pods.values().skip(start).take(limit.unwrap_or(usize::MAX)).cloned().collect();
    let next = start + items.len();
    let mut metadata = json!({"resourceVersion": snapshot_rv.to_string()});
    if next < c.pods.len() {
        metadata["continue"] = json!(format!("{snapshot_rv}:{next}"));
        metadata["remainingItemCount"] = json!(c.pods.len() - next);
    }
    axum::Json(json!({"apiVersion": "v1", "kind": "PodList", "metadata": metadata, "items": items}))
        .into_response()
}

fn watch_pods(shared: Shared, params: &HashMap<String, String>) -> Response {
    let from = params.get("resourceVersion").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let bookmarks = params.get("allowWatchBookmarks").is_some_and(|b| b == "true");
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map_or(WATCH_MAX, Duration::from_secs)
        .min(WATCH_MAX);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::convert::Infallible>>(64);
    shared.cluster.lock().unwrap().watches += 1;
    tokio::spawn(async move {
        let line = |v: Value| Ok(format!("{v}\n"));
        let mut changes = shared.changes.subscribe();
        let epoch = changes.borrow().1;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut sent = from;
        loop {
            enum Next {
                Events(Vec<(u64, &'static str, Value)>),
                Expired(String),
                Idle(u64),
            }
            let next = {
                let mut c = shared.cluster.lock().unwrap();
                if sent + 1 < c.oldest_watchable {
                    c.expired += 1;
                    Next::Expired(format!(
                        "too old resource version: {sent} ({})",
                        c.oldest_watchable
                    ))
                } else {
                    let events: Vec<_> =
                        c.history.iter().filter(|(rv, _, _)| *rv > sent).cloned().collect();
                    if events.is_empty() {
                        Next::Idle(c.resource_version)
                    } else {
                        Next::Events(events)
                    }
                }
            };
            match next {
                Next::Expired(message) => {
                    let error =
                        json!({"type": "ERROR", "object": status(410, "Expired", &message)});
                    let _ = tx.send(line(error)).await;
                    return;
                }
                Next::Events(events) => {
                    for (rv, kind, object) in events {
                        if tx.send(line(json!({"type": kind, "object": object}))).await.is_err() {
                            return;
                        }
                        sent = rv;
                    }
                }
                Next::Idle(now) => tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => return,
                    _ = tokio::time::sleep(BOOKMARK_EVERY), if bookmarks => {
                        let bookmark = json!({"type": "BOOKMARK", "object": {
                            "kind": "Pod", "apiVersion": "v1",
                            "metadata": {"resourceVersion": now.to_string()},
                        }});
                        if tx.send(line(bookmark)).await.is_err() {
                            return;
                        }
                        sent = now;
                    }
                    changed = changes.changed() => {
                        if changed.is_err() || changes.borrow().1 != epoch {
                            return;
                        }
                    }
                },
            }
        }
    });
    streamed(rx)
}

fn streamed(rx: tokio::sync::mpsc::Receiver<Result<String, std::convert::Infallible>>) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)))
        .unwrap()
}
