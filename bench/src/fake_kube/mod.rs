//! A local double of the Kubernetes API server — a test double, as no real API server can
//! run here — serving pods and events (through both `v1` and `events.k8s.io/v1`, one object
//! behind both as in a real cluster) with the protocol a client sees from a real one:
//! bearer-token auth (`401` Status otherwise); lists with `metadata.resourceVersion`, paged by
//! `limit` and `continue` (an expired token is `410`); `?watch=true&resourceVersion=N` streams
//! newline-delimited `ADDED`/`MODIFIED`/`DELETED` events after N, `BOOKMARK`s only when
//! `allowWatchBookmarks=true`, ends after `timeoutSeconds` (capped, as servers may close
//! early) or, when set, after a number of events, and answers a resourceVersion older than
//! its history with an `ERROR` event holding a `410 Expired` Status, which obliges the
//! client to list again. Events created through `v1` show `eventTime: null` in the
//! `events.k8s.io/v1` view, as real apiservers send them; a cluster may serve no
//! `events.k8s.io/v1` at all (`404`).
//!
//! Kept in the bench crate so both the black-box tests (`tests/common`) and
//! `sluice-bench events` drive the same double.

mod lease;

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

/// The kinds of object the double keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Collection {
    Pods,
    Events,
}

/// How a request sees objects: pods, or events through one of the two APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    Pods,
    CoreEvents,
    EventsV1,
}

impl View {
    fn collection(self) -> Collection {
        match self {
            View::Pods => Collection::Pods,
            View::CoreEvents | View::EventsV1 => Collection::Events,
        }
    }

    fn list_kind(self) -> (&'static str, &'static str) {
        match self {
            View::Pods => ("v1", "PodList"),
            View::CoreEvents => ("v1", "EventList"),
            View::EventsV1 => ("events.k8s.io/v1", "EventList"),
        }
    }
}

/// An object as both views of its collection show it (a pod's are the same).
#[derive(Clone)]
struct Stored {
    core: Value,
    v1: Value,
}

impl Stored {
    fn seen_by(&self, view: View) -> &Value {
        if view == View::EventsV1 { &self.v1 } else { &self.core }
    }

    fn set_version(&mut self, rv: u64) {
        for object in [&mut self.core, &mut self.v1] {
            object["metadata"]["resourceVersion"] = json!(rv.to_string());
        }
    }
}

#[derive(Default)]
struct Cluster {
    resource_version: u64,
    /// Objects by collection and uid, each with its current resourceVersion.
    objects: BTreeMap<(Collection, String), Stored>,
    /// `(resourceVersion, type, collection, object)` of every change not compacted away.
    history: Vec<(u64, &'static str, Collection, Stored)>,
    /// Watches from a resourceVersion below this get `410`.
    oldest_watchable: u64,
    served: HashMap<Collection, Served>,
    leases: BTreeMap<(String, String), Value>,
}

#[derive(Clone, Copy)]
struct Options {
    events_v1: bool,
    /// A watch ends after sending this many events.
    watch_events: Option<usize>,
}

#[derive(Clone)]
struct Shared {
    token: String,
    options: Options,
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

/// What the double has served of one collection, for tests to check the client's behaviour.
#[derive(Debug, Clone, Copy, Default)]
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

/// An event as a component records it. Through `v1` (`via_core`, as kubelet does) it
/// repeats by `count` with first and last timestamps and has no `eventTime`; through
/// `events.k8s.io/v1` it has an `eventTime` and repeats as a `series`.
#[derive(Debug, Clone)]
pub struct EventSpec {
    pub namespace: String,
    pub uid: String,
    pub reason: String,
    pub kind: String,
    pub message: String,
    /// Kind, name and uid of the object it is about.
    pub regarding: (String, String, String),
    pub count: u64,
    pub via_core: bool,
    /// Unix seconds of the first occurrence; each repeat is a second later.
    pub first_s: i64,
}

impl EventSpec {
    /// A kubelet's Warning about pod `pod` (uid `pod-<pod>`) in `namespace`.
    pub fn warning(namespace: &str, uid: &str, reason: &str, pod: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            uid: uid.to_owned(),
            reason: reason.to_owned(),
            kind: "Warning".to_owned(),
            message: format!("{reason} for pod {pod} event {uid}"),
            regarding: ("Pod".to_owned(), pod.to_owned(), format!("pod-{pod}")),
            count: 1,
            via_core: true,
            first_s: 1_796_378_400,
        }
    }
}

fn rfc3339(unix_s: i64, micro: bool) -> String {
    let t = chrono::DateTime::from_timestamp(unix_s, 0).unwrap();
    let format = if micro { "%Y-%m-%dT%H:%M:%S%.6fZ" } else { "%Y-%m-%dT%H:%M:%SZ" };
    t.format(format).to_string()
}

fn event_views(e: &EventSpec, rv: u64) -> Stored {
    let name = format!("{}.{}", e.regarding.1, e.uid);
    let metadata = json!({
        "name": name, "namespace": e.namespace, "uid": e.uid,
        "resourceVersion": rv.to_string(), "creationTimestamp": rfc3339(e.first_s, false),
    });
    let reference = json!({
        "kind": e.regarding.0, "name": e.regarding.1, "uid": e.regarding.2,
        "namespace": e.namespace, "fieldPath": "spec.containers{app}",
    });
    let last_s = e.first_s + e.count as i64 - 1;
    let series =
        (e.count > 1).then(|| json!({"count": e.count, "lastObservedTime": rfc3339(last_s, true)}));
    let (core, v1) = if e.via_core {
        let core = json!({
            "apiVersion": "v1", "kind": "Event", "metadata": metadata,
            "involvedObject": reference, "reason": e.reason, "message": e.message, "type": e.kind,
            "count": e.count, "firstTimestamp": rfc3339(e.first_s, false),
            "lastTimestamp": rfc3339(last_s, false), "eventTime": null,
            "source": {"component": "kubelet", "host": "node-1"},
            "reportingComponent": "", "reportingInstance": "",
        });
        let v1 = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": metadata,
            "eventTime": null, "regarding": reference, "note": e.message, "reason": e.reason,
            "type": e.kind, "deprecatedSource": {"component": "kubelet", "host": "node-1"},
            "deprecatedCount": e.count,
            "deprecatedFirstTimestamp": rfc3339(e.first_s, false),
            "deprecatedLastTimestamp": rfc3339(last_s, false),
        });
        (core, v1)
    } else {
        let mut core = json!({
            "apiVersion": "v1", "kind": "Event", "metadata": metadata,
            "involvedObject": reference, "reason": e.reason, "message": e.message, "type": e.kind,
            "eventTime": rfc3339(e.first_s, true), "firstTimestamp": null, "lastTimestamp": null,
            "source": {}, "reportingComponent": "default-scheduler",
            "reportingInstance": "default-scheduler-1",
        });
        let mut v1 = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": metadata,
            "eventTime": rfc3339(e.first_s, true), "regarding": reference, "note": e.message,
            "reason": e.reason, "type": e.kind, "reportingController": "default-scheduler",
            "reportingInstance": "default-scheduler-1", "action": "Scheduling",
        });
        if let Some(series) = series {
            core["series"] = series.clone();
            v1["series"] = series;
        }
        (core, v1)
    };
    Stored { core, v1 }
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
        Self::start_with(Options { events_v1: true, watch_events: None })
    }

    /// A cluster that serves events only through `v1`, as before `events.k8s.io/v1`.
    pub fn start_without_events_v1() -> Self {
        Self::start_with(Options { events_v1: false, watch_events: None })
    }

    /// A cluster whose watches end after `n` events each (a load balancer's idle timeout, an
    /// apiserver rollout): a client must resume each from where it ended.
    pub fn start_ending_watches_every(n: usize) -> Self {
        Self::start_with(Options { events_v1: true, watch_events: Some(n) })
    }

    fn start_with(options: Options) -> Self {
        let (runtime, listener, url) = crate::loopback();
        let token = "kube-test-token-0123456789".to_owned();
        let shared = Shared {
            token: token.clone(),
            options,
            cluster: Arc::default(),
            changes: watch::channel((0, 0)).0,
        };
        let view = |v: View| {
            move |state: State<Shared>,
                  query: Query<HashMap<String, String>>,
                  headers: HeaderMap| { serve(v, state, query, headers) }
        };
        let app = Router::new()
            .route("/api/v1/pods", get(view(View::Pods)))
            .route("/api/v1/events", get(view(View::CoreEvents)))
            .route("/apis/events.k8s.io/v1/events", get(view(View::EventsV1)))
            .route(
                "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases",
                axum::routing::post(lease::create),
            )
            .route(
                "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}",
                get(lease::get).put(lease::replace),
            )
            .with_state(shared.clone());
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
        self.put(Collection::Pods, pod.uid, |rv| {
            let object = pod_json(pod, rv);
            Stored { core: object.clone(), v1: object }
        });
    }

    pub fn delete(&self, uid: &str) {
        self.remove(Collection::Pods, uid);
    }

    /// Changes a pod and compacts the history past the change: open watches get a `410`
    /// ERROR event, and a client can only learn of the change by listing again.
    pub fn apply_unwatchable(&self, pod: &PodSpec<'_>) {
        self.apply(pod);
        self.compact();
    }

    /// Records an event, or its repeat (the same uid with a higher count), in place.
    pub fn record_event(&self, event: &EventSpec) {
        self.put(Collection::Events, &event.uid, |rv| event_views(event, rv));
    }

    /// Deletes an event, as the apiserver does when its TTL runs out.
    pub fn delete_event(&self, uid: &str) {
        self.remove(Collection::Events, uid);
    }

    /// Drops the history of changes (etcd compaction): watches from before now get `410`.
    pub fn compact(&self) {
        self.change(|c, rv| {
            c.history.clear();
            c.oldest_watchable = rv + 1;
        });
    }

    /// Closes every open watch, as an API server does when it restarts.
    pub fn end_watches(&self) {
        self.shared.changes.send_modify(|(_, epoch)| *epoch += 1);
    }

    /// What was served of pods.
    pub fn served(&self) -> Served {
        self.served_of(Collection::Pods)
    }

    /// What was served of events, through either API.
    pub fn served_events(&self) -> Served {
        self.served_of(Collection::Events)
    }

    fn served_of(&self, collection: Collection) -> Served {
        let c = self.shared.cluster.lock().unwrap();
        c.served.get(&collection).copied().unwrap_or_default()
    }

    /// The holder of a Lease, if it exists.
    pub fn lease_holder(&self, namespace: &str, name: &str) -> Option<String> {
        let c = self.shared.cluster.lock().unwrap();
        let lease = c.leases.get(&(namespace.to_owned(), name.to_owned()))?;
        lease["spec"]["holderIdentity"].as_str().map(str::to_owned)
    }

    fn put(&self, collection: Collection, uid: &str, make: impl FnOnce(u64) -> Stored) {
        self.change(|c, rv| {
            let object = make(rv);
            let key = (collection, uid.to_owned());
            let kind = if c.objects.contains_key(&key) { "MODIFIED" } else { "ADDED" };
            c.objects.insert(key, object.clone());
            c.history.push((rv, kind, collection, object));
        });
    }

    fn remove(&self, collection: Collection, uid: &str) {
        self.change(|c, rv| {
            if let Some(mut object) = c.objects.remove(&(collection, uid.to_owned())) {
                object.set_version(rv);
                c.history.push((rv, "DELETED", collection, object));
            }
        });
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

/// Whether the request carries the double's token.
fn authorized(shared_token: &str, headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {shared_token}"))
}

fn unauthorized() -> Response {
    (StatusCode::UNAUTHORIZED, axum::Json(status(401, "Unauthorized", "Unauthorized")))
        .into_response()
}

async fn serve(
    view: View,
    State(shared): State<Shared>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&shared.token, &headers) {
        return unauthorized();
    }
    if view == View::EventsV1 && !shared.options.events_v1 {
        let message = "the server could not find the requested resource";
        return (StatusCode::NOT_FOUND, axum::Json(status(404, "NotFound", message)))
            .into_response();
    }
    let watching = params.get("watch").is_some_and(|w| w == "true" || w == "1");
    if watching { watch(view, shared, &params) } else { list(view, &shared, &params) }
}

fn list(view: View, shared: &Shared, params: &HashMap<String, String>) -> Response {
    let mut c = shared.cluster.lock().unwrap();
    let collection = view.collection();
    c.served.entry(collection).or_default().lists += 1;
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
                c.served.entry(collection).or_default().expired += 1;
                let message = "The provided continue parameter is too old to display a consistent list result.";
                return (StatusCode::GONE, axum::Json(status(410, "Expired", message)))
                    .into_response();
            }
            (rv, start)
        }
        None => (c.resource_version, 0),
    };
    let all: Vec<&Stored> =
        c.objects.iter().filter(|((k, _), _)| *k == collection).map(|(_, o)| o).collect();
    let items: Vec<Value> = all
        .iter()
        .skip(start)
        .take(limit.unwrap_or(usize::MAX))
        .map(|o| o.seen_by(view).clone())
        .collect();
    let next = start + items.len();
    let mut metadata = json!({"resourceVersion": snapshot_rv.to_string()});
    if next < all.len() {
        metadata["continue"] = json!(format!("{snapshot_rv}:{next}"));
        metadata["remainingItemCount"] = json!(all.len() - next);
    }
    let (api_version, kind) = view.list_kind();
    axum::Json(
        json!({"apiVersion": api_version, "kind": kind, "metadata": metadata, "items": items}),
    )
    .into_response()
}

fn watch(view: View, shared: Shared, params: &HashMap<String, String>) -> Response {
    let from = params.get("resourceVersion").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let bookmarks = params.get("allowWatchBookmarks").is_some_and(|b| b == "true");
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map_or(WATCH_MAX, Duration::from_secs)
        .min(WATCH_MAX);
    let collection = view.collection();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::convert::Infallible>>(64);
    shared.cluster.lock().unwrap().served.entry(collection).or_default().watches += 1;
    tokio::spawn(async move {
        let line = |v: Value| Ok(format!("{v}\n"));
        let mut changes = shared.changes.subscribe();
        let epoch = changes.borrow().1;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut sent = from;
        let mut left = shared.options.watch_events.unwrap_or(usize::MAX);
        loop {
            enum Next {
                Events(Vec<(u64, &'static str, Value)>),
                Expired(String),
                Idle(u64),
            }
            let next = {
                let mut c = shared.cluster.lock().unwrap();
                if sent + 1 < c.oldest_watchable {
                    c.served.entry(collection).or_default().expired += 1;
                    Next::Expired(format!(
                        "too old resource version: {sent} ({})",
                        c.oldest_watchable
                    ))
                } else {
                    let events: Vec<_> = c
                        .history
                        .iter()
                        .filter(|(rv, _, k, _)| *rv > sent && *k == collection)
                        .map(|(rv, kind, _, o)| (*rv, *kind, o.seen_by(view).clone()))
                        .collect();
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
                        if left == 0 {
                            return;
                        }
                        if tx.send(line(json!({"type": kind, "object": object}))).await.is_err() {
                            return;
                        }
                        sent = rv;
                        left -= 1;
                    }
                }
                Next::Idle(now) => tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => return,
                    _ = tokio::time::sleep(BOOKMARK_EVERY), if bookmarks => {
                        let (api_version, _) = view.list_kind();
                        let kind = if view == View::Pods { "Pod" } else { "Event" };
                        let bookmark = json!({"type": "BOOKMARK", "object": {
                            "kind": kind, "apiVersion": api_version,
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
