//! Pod metadata on records: one cluster-wide watch of pods (kube's watcher: list, then watch
//! from the list's resourceVersion, relisting after `410 Gone`) keeps a cache by pod uid, and
//! every record whose `pod_uid` is in it gets the pod's labels, node and controller before a
//! sink sees it. Without a cluster (no kubeconfig, not in a pod) nothing is watched and the
//! fields stay as the agent sent them.
//!
//! A deleted pod stays in the cache for [`DELETED_GRACE`]: its last lines often reach the
//! collector after the pod is gone.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use sluice_proto::LogRecord;
use tokio::sync::watch;
use tokio_stream::StreamExt;

/// How long a deleted pod's metadata is kept for its late records.
pub const DELETED_GRACE: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodInfo {
    pub labels: BTreeMap<String, String>,
    pub node: String,
    /// `Kind/name` of the controlling owner reference.
    pub owner: String,
}

#[derive(Default)]
struct Entry {
    info: Arc<PodInfo>,
    /// Set once the pod was deleted (or missing from a relist).
    gone_since: Option<Instant>,
    /// The relist generation that last saw it.
    seen_in: u64,
}

/// Pods by uid, filled by [`watch_pods`].
pub struct PodCache {
    pods: RwLock<HashMap<String, Entry>>,
    /// True once the first list is in.
    listed: watch::Sender<bool>,
}

impl Default for PodCache {
    fn default() -> Self {
        Self { pods: RwLock::default(), listed: watch::channel(false).0 }
    }
}

impl PodCache {
    /// Waits until the first list of pods is in, at most `limit`; false if it is not. Sinks
    /// wait for it at start so that the first records after a restart get their metadata.
    pub async fn wait_listed(&self, limit: Duration) -> bool {
        let mut listed = self.listed.subscribe();
        tokio::time::timeout(limit, listed.wait_for(|l| *l)).await.is_ok()
    }

    /// Adds the metadata of each record's pod, when known; the agent's own values win.
    pub fn enrich(&self, records: &mut [LogRecord]) {
        let pods = self.pods.read().expect("pod cache poisoned");
        if pods.is_empty() {
            return;
        }
        let (mut hits, mut misses) = (0u64, 0u64);
        for r in records.iter_mut().filter(|r| !r.pod_uid.is_empty()) {
            let Some(entry) = pods.get(&r.pod_uid) else {
                misses += 1;
                continue;
            };
            hits += 1;
            let info = &entry.info;
            if r.labels.is_empty() {
                r.labels.extend(info.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            if r.node.is_empty() {
                r.node.clone_from(&info.node);
            }
            if r.owner.is_empty() {
                r.owner.clone_from(&info.owner);
            }
        }
        metrics::counter!("sluice_enrich_hits_total").increment(hits);
        metrics::counter!("sluice_enrich_misses_total").increment(misses);
    }

    #[cfg(test)]
    fn info(&self, uid: &str) -> Option<Arc<PodInfo>> {
        self.pods.read().expect("pod cache poisoned").get(uid).map(|e| e.info.clone())
    }

    /// What is known of the pod `uid`, for `records` records that are not decoded (a block
    /// forwarded as it is), counted as [`PodCache::enrich`] counts them.
    pub fn info_for(&self, uid: &str, records: usize) -> Option<Arc<PodInfo>> {
        let pods = self.pods.read().expect("pod cache poisoned");
        if pods.is_empty() || uid.is_empty() {
            return None;
        }
        let info = pods.get(uid).map(|e| e.info.clone());
        let counter =
            if info.is_some() { "sluice_enrich_hits_total" } else { "sluice_enrich_misses_total" };
        metrics::counter!(counter).increment(records as u64);
        info
    }

    fn apply(&self, pod: &Pod, generation: u64) {
        let Some(uid) = pod.metadata.uid.clone() else { return };
        let info = Arc::new(info_of(pod));
        let mut pods = self.pods.write().expect("pod cache poisoned");
        pods.insert(uid, Entry { info, gone_since: None, seen_in: generation });
    }

    fn delete(&self, pod: &Pod) {
        let Some(uid) = &pod.metadata.uid else { return };
        if let Some(entry) = self.pods.write().expect("pod cache poisoned").get_mut(uid) {
            entry.gone_since.get_or_insert_with(Instant::now);
        }
    }

    /// After a relist: pods it did not return were deleted while the watch was down.
    fn relisted(&self, generation: u64) {
        let now = Instant::now();
        for entry in self.pods.write().expect("pod cache poisoned").values_mut() {
            if entry.seen_in < generation {
                entry.gone_since.get_or_insert(now);
            }
        }
    }

    /// Forgets pods deleted longer than `grace` ago; returns how many are cached.
    fn sweep(&self, grace: Duration) -> usize {
        let mut pods = self.pods.write().expect("pod cache poisoned");
        pods.retain(|_, e| e.gone_since.is_none_or(|t| t.elapsed() < grace));
        pods.len()
    }
}

fn info_of(pod: &Pod) -> PodInfo {
    let meta = &pod.metadata;
    let owners = meta.owner_references.as_deref().unwrap_or_default();
    let owner = owners
        .iter()
        .find(|o| o.controller == Some(true))
        .or_else(|| owners.first())
        .map(|o| format!("{}/{}", o.kind, o.name))
        .unwrap_or_default();
    PodInfo {
        labels: meta.labels.clone().unwrap_or_default(),
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default(),
        owner,
    }
}

/// Connects to the cluster the environment points at (in-cluster service account, or
/// `KUBECONFIG` / `~/.kube/config`); `None` when there is none.
pub async fn client() -> Option<Client> {
    match Client::try_default().await {
        Ok(client) => Some(client),
        Err(e) => {
            tracing::info!(reason = %e, "no Kubernetes cluster found; records are not enriched with pod metadata");
            None
        }
    }
}

/// Keeps `cache` current until `stop`: the watcher relists and re-watches by itself, with
/// backoff, after errors and `410 Gone`.
pub async fn watch_pods(client: Client, cache: Arc<PodCache>, mut stop: watch::Receiver<bool>) {
    let api: Api<Pod> = Api::all(client);
    let events = watcher::watcher(api, watcher::Config::default()).default_backoff();
    let mut events = std::pin::pin!(events);
    let mut generation = 0u64;
    let mut sweep = tokio::time::interval(Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = sweep.tick() => {
                metrics::gauge!("sluice_enrich_pods").set(cache.sweep(DELETED_GRACE) as f64);
            }
            event = events.next() => match event {
                None => return,
                Some(Ok(Event::Init)) => {
                    generation += 1;
                }
                Some(Ok(Event::InitApply(pod) | Event::Apply(pod))) => cache.apply(&pod, generation),
                Some(Ok(Event::Delete(pod))) => cache.delete(&pod),
                Some(Ok(Event::InitDone)) => {
                    cache.relisted(generation);
                    cache.listed.send_replace(true);
                    let n = cache.sweep(DELETED_GRACE);
                    metrics::gauge!("sluice_enrich_pods").set(n as f64);
                    tracing::info!(pods = n, "pod metadata listed");
                }
                Some(Err(e)) => {
                    metrics::counter!("sluice_enrich_watch_errors_total").increment(1);
                    tracing::warn!(error = %e, "pod watch failed; retrying");
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    use super::*;

    fn pod(uid: &str, app: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                uid: Some(uid.into()),
                labels: Some([("app".to_owned(), app.to_owned())].into()),
                owner_references: Some(vec![OwnerReference {
                    kind: "ReplicaSet".into(),
                    name: format!("{app}-7d9f8"),
                    controller: Some(true),
                    ..OwnerReference::default()
                }]),
                ..ObjectMeta::default()
            },
            spec: Some(k8s_openapi::api::core::v1::PodSpec {
                node_name: Some("node-3".into()),
                ..Default::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn records_get_their_pods_metadata_and_keep_their_own() {
        let cache = PodCache::default();
        cache.apply(&pod("u1", "pay"), 1);
        let mut records = vec![
            LogRecord { pod_uid: "u1".into(), ..LogRecord::default() },
            LogRecord { pod_uid: "u1".into(), node: "from-agent".into(), ..LogRecord::default() },
            LogRecord { pod_uid: "u9".into(), ..LogRecord::default() },
        ];
        cache.enrich(&mut records);
        assert_eq!(records[0].labels.get("app").map(String::as_str), Some("pay"));
        assert_eq!(
            (records[0].node.as_str(), records[0].owner.as_str()),
            ("node-3", "ReplicaSet/pay-7d9f8")
        );
        assert_eq!(records[1].node, "from-agent");
        assert!(records[2].labels.is_empty() && records[2].owner.is_empty());
    }

    #[test]
    fn deleted_pods_are_kept_for_their_late_lines_then_forgotten() {
        let cache = PodCache::default();
        cache.apply(&pod("u1", "pay"), 1);
        cache.apply(&pod("u2", "cart"), 1);
        cache.delete(&pod("u1", "pay"));
        assert_eq!(cache.sweep(Duration::from_secs(60)), 2, "still within the grace");
        assert_eq!(cache.sweep(Duration::ZERO), 1);
        // A relist that does not return u2 means it went while the watch was down.
        cache.apply(&pod("u3", "web"), 2);
        cache.relisted(2);
        assert!(cache.info("u2").is_some());
        assert_eq!(cache.sweep(Duration::ZERO), 1);
        assert!(cache.info("u3").is_some());
    }
}
