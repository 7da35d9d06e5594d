//! `--kube-events`: the cluster's Kubernetes events as records, one per occurrence.
//!
//! An Event object repeats in place (`count` or `series.count` grows); each `(uid, count)` the
//! cluster shows becomes one record whose id is the event's uid (source key
//! `k8s-event/<cluster>/<uid>`) and its count (offset), so anything forwarded twice — after a
//! relist, a restart, or by a second replica — is the same record, which the index and the
//! Elasticsearch sink already keep once. The source forwards only occurrences it has not
//! forwarded yet ([`state`]), and commits that state, with the resourceVersion to watch on
//! from, only once every sink holds the records ([`Delivery`]): a crash anywhere forwards
//! again rather than loses.
//!
//! # Layout
//! - [`occurrence`]: an Event of either API (`events.k8s.io/v1`, else `v1`) and its record.
//! - [`watch`]: list, then watch, resuming and relisting as the apiserver's protocol asks.
//! - [`state`]: what was forwarded, persisted.
//! - [`output`]: where records go (the WAL, or `sluice events`' spool) and when the state
//!   they cover may be committed.
//! - [`lease`]: leader election, so two replicas forward as one.

pub mod lease;
pub mod occurrence;
pub mod output;
pub mod state;
pub mod watch;

use std::collections::HashSet;
use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::{core::v1 as core, events::v1 as events};
use kube::api::ListParams;
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use sluice_proto::LogRecord;
use tokio::sync::watch as signal;
use tokio::time::Instant;

use super::{Source, now_ns};
use crate::CollectorError;
use crate::runner::Cursors;
use crate::wal::Wal;
use lease::{Elector, LeaseConfig};
use occurrence::Occurrence;
use output::{Output, WalOutput};
use state::State;
use watch::{Seen, Watcher};

/// A WAL frame is cut at this many records, or this long after its first.
const BATCH_RECORDS: usize = 500;
const BATCH_WAIT: Duration = Duration::from_millis(100);
/// How often the delivered state is written.
const COMMIT_EVERY: Duration = Duration::from_millis(500);
const RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct KubeEventsConfig {
    /// Put on every record.
    pub cluster: String,
    /// Only events of these namespaces; all when empty.
    pub namespaces: Vec<String>,
    /// Only events of these types (`Normal`, `Warning`); all when empty.
    pub types: Vec<String>,
    /// Where the source keeps its [`State`].
    pub state_path: PathBuf,
    /// An event not seen for this long is forgotten (twice the apiserver's default
    /// `--event-ttl` of one hour by default).
    pub forget_after: Duration,
    /// Forward only while holding this Lease (two replicas, one forwarding); always when
    /// `None`.
    pub lease: Option<LeaseConfig>,
}

impl KubeEventsConfig {
    pub fn new(cluster: &str, data_dir: &std::path::Path) -> Self {
        Self {
            cluster: cluster.to_owned(),
            namespaces: Vec::new(),
            types: Vec::new(),
            state_path: data_dir.join("sources/kube-events/state.json"),
            forget_after: Duration::from_secs(2 * 3600),
            lease: None,
        }
    }

    fn wanted(&self, o: &Occurrence) -> bool {
        (self.namespaces.is_empty() || self.namespaces.contains(&o.namespace))
            && (self.types.is_empty() || self.types.iter().any(|t| t.eq_ignore_ascii_case(&o.kind)))
    }
}

/// `--kube-events` as one of the collector's sources.
pub struct KubeEventsSource {
    config: KubeEventsConfig,
    client: Client,
}

/// The client for the cluster found as kubectl finds it: `KUBECONFIG`, `~/.kube/config`, or
/// the service account of the pod it runs in.
pub async fn client() -> Result<Client, CollectorError> {
    Client::try_default().await.map_err(|e| {
        CollectorError::NoCluster(format!(
            "no Kubernetes cluster to watch events in (KUBECONFIG, ~/.kube/config or a pod's service account): {e}"
        ))
    })
}

impl KubeEventsSource {
    pub async fn connect(config: KubeEventsConfig) -> Result<Self, CollectorError> {
        Ok(Self { config, client: client().await? })
    }
}

#[async_trait]
impl Source for KubeEventsSource {
    fn name(&self) -> &str {
        "kube-events"
    }

    async fn run(
        self: Box<Self>,
        wal: Arc<Wal>,
        cursors: Arc<Cursors>,
        stop: signal::Receiver<bool>,
    ) {
        let mut output = WalOutput::new(wal, cursors, RETRY);
        forward(&self.config, self.client, &mut output, stop).await;
    }
}

/// Forwards the cluster's events to `output` until `stop`: at once, or, with a Lease
/// configured, while this replica holds it.
pub async fn forward(
    config: &KubeEventsConfig,
    client: Client,
    output: &mut dyn Output,
    mut stop: signal::Receiver<bool>,
) {
    let (leading_tx, mut leading) = signal::channel(config.lease.is_none());
    // Without a Lease the sender stays here, unchanged, so `leading` never closes.
    let (elector, _always) = match config.lease.clone() {
        Some(lease) => {
            tracing::info!(lease = %format!("{}/{}", lease.namespace, lease.name), identity = %lease.identity, "campaigning for the events Lease");
            let campaign = Elector::new(client.clone(), lease).run(leading_tx, stop.clone());
            (Some(tokio::spawn(campaign)), None)
        }
        None => (None, Some(leading_tx)),
    };
    loop {
        tokio::select! {
            _ = leading.wait_for(|l| *l) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        // Saved by this replica's last term, if any: what the other one forwarded since is
        // forwarded again, and kept once by its ids.
        let mut state = State::load(&config.state_path);
        let api = loop {
            match served(&client).await {
                Ok(api) => break Some(api),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reach the cluster's events; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY) => {}
                        _ = stop.wait_for(|s| *s) => break None,
                    }
                }
            }
        };
        let Some(api) = api else { break };
        if state.api != api {
            // A version of the other API means nothing here: list, and let the forwarded
            // counts keep what was sent from being sent again.
            state.api = api.to_owned();
            state.resource_version = None;
        }
        tracing::info!(api, cluster = %config.cluster, "forwarding Kubernetes events");
        let forwarding = Forwarding {
            config,
            output: &mut *output,
            state,
            stop: stop.clone(),
            leading: leading.clone(),
        };
        match api {
            EVENTS_V1 => forwarding.run::<events::Event>(Api::all(client.clone())).await,
            _ => forwarding.run::<core::Event>(Api::all(client.clone())).await,
        }
        if *stop.borrow() {
            break;
        }
        tracing::info!(cluster = %config.cluster, "no longer forwarding Kubernetes events: another replica holds the Lease");
    }
    if let Some(elector) = elector {
        let _ = elector.await;
    }
}

const EVENTS_V1: &str = "events.k8s.io/v1";

/// `events.k8s.io/v1` where the cluster serves it, else `v1`.
async fn served(client: &Client) -> kube::Result<&'static str> {
    let api: Api<events::Event> = Api::all(client.clone());
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(EVENTS_V1),
        Err(kube::Error::Api(status)) if status.code == 404 => {
            let core: Api<core::Event> = Api::all(client.clone());
            core.list(&ListParams::default().limit(1)).await.map(|_| "v1")
        }
        Err(e) => Err(e),
    }
}

struct Forwarding<'a> {
    config: &'a KubeEventsConfig,
    output: &'a mut dyn Output,
    state: State,
    stop: signal::Receiver<bool>,
    /// Whether this replica may forward; always while no Lease is configured.
    leading: signal::Receiver<bool>,
}

impl Forwarding<'_> {
    /// Forwards until stopped or no longer leading, then appends what it holds and commits.
    async fn run<K>(mut self, api: Api<K>)
    where
        K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
        for<'k> &'k K: Into<Occurrence>,
    {
        let mut watcher = Watcher::new(api, self.state.resource_version.clone());
        let mut records: Vec<LogRecord> = Vec::new();
        let mut first_at: Option<Instant> = None;
        let mut changed = false;
        let mut last_commit = Instant::now();
        loop {
            let cut_at = first_at.map(|t| t + BATCH_WAIT);
            let (ending, seen) = tokio::select! {
                _ = self.stop.wait_for(|s| *s) => (true, None),
                _ = self.leading.wait_for(|l| !*l) => (true, None),
                _ = tokio::time::sleep_until(cut_at.unwrap_or(last_commit + COMMIT_EVERY)) => (false, None),
                seen = watcher.next() => (false, Some(seen)),
            };
            match seen {
                Some(Ok(seen)) => {
                    let before = records.len();
                    self.apply(seen, &mut records);
                    changed = true;
                    if records.len() > before {
                        first_at.get_or_insert_with(Instant::now);
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "watching the cluster's events failed; going on");
                    metrics::counter!("sluice_kube_events_watch_errors_total").increment(1);
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY) => {}
                        _ = self.stop.wait_for(|s| *s) => {}
                    }
                }
                None => {}
            }
            let due = first_at.is_some_and(|t| t.elapsed() >= BATCH_WAIT);
            if !records.is_empty() && (ending || due || records.len() >= BATCH_RECORDS) {
                let count = records.len() as u64;
                first_at = None;
                let records = std::mem::take(&mut records);
                if !self.output.append(records, ending, &mut self.stop).await {
                    return;
                }
                metrics::counter!("sluice_kube_events_forwarded_total").increment(count);
                // Everything the state covers is appended up to here; a steady stream that
                // never leaves `records` empty at a tick still commits.
                self.output.hold(self.state.clone());
                changed = false;
            }
            if ending || last_commit.elapsed() >= COMMIT_EVERY {
                last_commit = Instant::now();
                self.state.expire(now_ns(), self.config.forget_after.as_nanos() as i64);
                if records.is_empty() && changed {
                    // Versions moved (bookmarks, deletions) with nothing new to append.
                    self.output.hold(self.state.clone());
                    changed = false;
                }
                if let Some(state) = self.output.delivered()
                    && let Err(e) = state.save(&self.config.state_path)
                {
                    tracing::warn!(error = %e, "cannot save the events source's state");
                }
            }
            if ending {
                return;
            }
        }
    }

    /// Takes what the cluster showed into the state, and the occurrences not forwarded yet
    /// into `records`.
    fn apply(&mut self, seen: Seen, records: &mut Vec<LogRecord>) {
        let now = now_ns();
        let mut take = |state: &mut State, o: &Occurrence| {
            if self.config.wanted(o) && state.take(o, now) {
                records.push(o.to_record(&self.config.cluster, now));
            }
        };
        let version = match seen {
            Seen::Listed { occurrences, version } => {
                for o in &occurrences {
                    take(&mut self.state, o);
                }
                let shown: HashSet<String> = occurrences.into_iter().map(|o| o.uid).collect();
                self.state.keep_only(&shown);
                version
            }
            Seen::Changed { occurrence, version } => {
                take(&mut self.state, &occurrence);
                version
            }
            Seen::Deleted { uid, version } => {
                self.state.forget(&uid);
                version
            }
            Seen::Progressed { version } => version,
        };
        self.state.resource_version = Some(version);
    }
}
