//! Leader election on a `coordination.k8s.io/v1` Lease, so two replicas can watch one
//! cluster's events and only one forwards them.
//!
//! The protocol client-go's leader election uses, with plain GET, POST and PUT (no PATCH): the
//! holder renews the Lease every third of its duration by replacing it with the
//! `resourceVersion` it read, so a `409` means another replica wrote first and won. A replica
//! takes a Lease over only when its record has not changed for a whole duration by the
//! replica's own clock (the holder's `renewTime` is never compared with local time, so clock
//! skew between nodes cannot cut a lease short). A holder that could not renew for two thirds
//! of the duration stops leading before anyone else may start. Stopping hands the Lease back
//! (holder cleared) so the standby takes over at once.
//!
//! Written by hand because kube-rs 5 ships no leader election; the crates that do
//! (`kube-leader-election`, `kubert`) patch the Lease, and the protocol here must hold against
//! apiservers and proxies that only allow replace.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::time::Instant;

/// How long a stopping holder tries to hand the Lease back.
const RELEASE_WAIT: Duration = Duration::from_secs(3);

/// Which Lease, held by whom, for how long.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's name in the Lease's `holderIdentity`; unique among replicas.
    pub identity: String,
    /// How long a Lease not renewed stays its holder's.
    pub duration: Duration,
}

impl LeaseConfig {
    /// The Lease `namespace/name` (or `name` in the pod's own namespace, else `default`),
    /// held as `<pod or host name>_<process id>`.
    pub fn new(lease: &str, duration: Duration) -> Self {
        let (namespace, name) = match lease.split_once('/') {
            Some((namespace, name)) => (namespace.to_owned(), name.to_owned()),
            None => (own_namespace(), lease.to_owned()),
        };
        let host = std::env::var("POD_NAME")
            .ok()
            .filter(|n| !n.is_empty())
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .map(|n| n.trim().to_owned())
            .unwrap_or_default();
        let identity = format!("{host}_{}", std::process::id());
        Self { namespace, name, identity, duration }
    }

    /// How often the holder renews and a standby looks.
    fn retry(&self) -> Duration {
        self.duration / 3
    }

    /// How long the holder goes on leading without a successful renewal.
    fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }
}

/// The namespace of the pod this runs in, as its service account says.
fn own_namespace() -> String {
    std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        .map(|n| n.trim().to_owned())
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_owned())
}

/// Campaigns for the Lease and tells, through `leading`, whether this replica holds it.
pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    /// The Lease as last read, and when (by this replica's clock) it last changed.
    observed: Option<(Lease, Instant)>,
    /// When this replica last renewed successfully, while it leads.
    renewed: Option<Instant>,
}

/// What one attempt found.
enum Outcome {
    Holding,
    HeldByOther,
    Failed(kube::Error),
}

impl Elector {
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        let api = Api::namespaced(client, &config.namespace);
        Self { api, config, observed: None, renewed: None }
    }

    /// Campaigns until `stop`, then hands the Lease back if it holds it.
    pub async fn run(mut self, leading: watch::Sender<bool>, mut stop: watch::Receiver<bool>) {
        loop {
            let outcome = self.attempt().await;
            let now = Instant::now();
            let holds = match outcome {
                Outcome::Holding => {
                    self.renewed = Some(now);
                    true
                }
                Outcome::HeldByOther => {
                    self.renewed = None;
                    false
                }
                Outcome::Failed(e) => {
                    tracing::warn!(error = %e, lease = %self.config.name, "cannot read or write the events Lease");
                    metrics::counter!("sluice_kube_events_lease_errors_total").increment(1);
                    self.renewed.is_some_and(|r| now - r < self.config.renew_deadline())
                }
            };
            if *leading.borrow() != holds {
                tracing::info!(
                    identity = %self.config.identity,
                    lease = %format!("{}/{}", self.config.namespace, self.config.name),
                    leading = holds,
                    "events leadership changed"
                );
                metrics::gauge!("sluice_kube_events_leader").set(if holds { 1.0 } else { 0.0 });
                leading.send_replace(holds);
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.retry()) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        if *leading.borrow() {
            leading.send_replace(false);
            // An unreachable apiserver must not hold up the shutdown: the standby then waits
            // the Lease out instead.
            let _ = tokio::time::timeout(RELEASE_WAIT, self.release()).await;
        }
    }

    async fn attempt(&mut self) -> Outcome {
        let current = match self.api.get_opt(&self.config.name).await {
            Ok(current) => current,
            Err(e) => return Outcome::Failed(e),
        };
        let Some(current) = current else {
            return self.create().await;
        };
        let changed = self.observed.as_ref().is_none_or(|(seen, _)| {
            seen.metadata.resource_version != current.metadata.resource_version
        });
        if changed {
            self.observed = Some((current.clone(), Instant::now()));
        }
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.as_deref().unwrap_or_default();
        let mine = holder == self.config.identity;
        let since = self.observed.as_ref().map_or(Duration::ZERO, |(_, at)| at.elapsed());
        let expired = holder.is_empty() || since >= self.config.duration;
        if !mine && !expired {
            return Outcome::HeldByOther;
        }
        let now = MicroTime(Timestamp::now());
        let mut next = current;
        next.spec = Some(LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(self.config.duration.as_secs().max(1) as i32),
            renew_time: Some(now.clone()),
            acquire_time: if mine { spec.acquire_time } else { Some(now) },
            lease_transitions: Some(spec.lease_transitions.unwrap_or(0) + i32::from(!mine)),
            ..spec
        });
        self.replace(next).await
    }

    async fn create(&mut self) -> Outcome {
        let now = MicroTime(Timestamp::now());
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.config.name.clone()),
                namespace: Some(self.config.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.config.identity.clone()),
                lease_duration_seconds: Some(self.config.duration.as_secs().max(1) as i32),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(created) => {
                self.observed = Some((created, Instant::now()));
                Outcome::Holding
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Outcome::HeldByOther,
            Err(e) => Outcome::Failed(e),
        }
    }

    /// Replaces the Lease at the version read; a `409` means another replica wrote first.
    async fn replace(&mut self, lease: Lease) -> Outcome {
        match self.api.replace(&self.config.name, &PostParams::default(), &lease).await {
            Ok(written) => {
                self.observed = Some((written, Instant::now()));
                Outcome::Holding
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Outcome::HeldByOther,
            Err(e) => Outcome::Failed(e),
        }
    }

    /// Clears the holder, so a standby need not wait out the duration.
    async fn release(&mut self) {
        let Some((mut lease, _)) = self.observed.take() else { return };
        let held = lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref())
            == Some(self.config.identity.as_str());
        if !held {
            return;
        }
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
            spec.renew_time = Some(MicroTime(Timestamp::now()));
        }
        if let Err(e) = self.api.replace(&self.config.name, &PostParams::default(), &lease).await {
            tracing::warn!(error = %e, "cannot hand the events Lease back; the standby waits it out");
        }
    }
}
