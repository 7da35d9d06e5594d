//! `sluice events`: the Kubernetes events watcher alone, in a remote cluster, pushing to a
//! central collector over the agent protocol through the agent's spool and shipper.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use async_trait::async_trait;
use clap::Args;
use sluice_agent::config::RawTls;
use sluice_agent::forward::Forwarder;
use sluice_collector::sources::kube_events::lease::LeaseConfig;
use sluice_collector::sources::kube_events::output::Output;
use sluice_collector::sources::kube_events::state::State;
use sluice_collector::sources::kube_events::{self, KubeEventsConfig};
use sluice_proto::LogRecord;
use tokio::sync::watch;

use super::up::{runtime, shutdown_signal};

#[derive(Debug, Args)]
pub(crate) struct EventsArgs {
    /// The central collector's gRPC endpoint (http:// or https://); repeat for failover.
    #[arg(long, required = true)]
    collector: Vec<String>,
    /// A file holding the bearer token the collector knows this cluster by.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// PEM certificate(s) of the authority that signed the collector's certificate
    /// (required for https://).
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// The name the collector's certificate carries, when not the endpoint's host.
    #[arg(long, requires = "tls_ca")]
    tls_server_name: Option<String>,
    /// Where the spool and the watcher's state live; keep it across restarts.
    #[arg(long, default_value = "sluice-events-data")]
    data_dir: PathBuf,
    /// The cluster name put on every event.
    #[arg(long, default_value = "default")]
    cluster: String,
    /// Only the events of this namespace; repeat for more (default: all).
    #[arg(long)]
    namespace: Vec<String>,
    /// Only the events of this type, Normal or Warning; repeat for both (the default).
    #[arg(long = "type", value_parser = ["Normal", "Warning"])]
    types: Vec<String>,
    /// Forward only while holding this coordination.k8s.io Lease, `NAMESPACE/NAME` or
    /// `NAME` (in the pod's namespace), so two replicas forward as one.
    #[arg(long)]
    lease: Option<String>,
    /// How long the Lease stays its holder's without renewal.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    lease_duration: std::time::Duration,
    /// Serve `/metrics` and `/healthz` here, such as 0.0.0.0:9282 (for probes and
    /// Prometheus); off when unset.
    #[arg(long)]
    metrics_listen: Option<std::net::SocketAddr>,
}

pub(crate) fn events(args: EventsArgs) -> anyhow::Result<ExitCode> {
    let tls =
        args.tls_ca.map(|ca_file| RawTls { ca_file, server_name: args.tls_server_name.clone() });
    let agent = sluice_agent::RawConfig::forwarding(
        args.collector,
        args.data_dir.join("spool"),
        args.cluster.clone(),
        tls,
        args.token_file,
    )
    .validate_forwarding()
    .map_err(|e| anyhow::anyhow!("invalid flags: {e}"))?;
    let mut config = KubeEventsConfig::new(&args.cluster, &args.data_dir);
    config.namespaces = args.namespace;
    config.types = args.types;
    config.lease = args.lease.as_deref().map(|l| LeaseConfig::new(l, args.lease_duration));
    runtime()?.block_on(async {
        if let Some(addr) = args.metrics_listen {
            let telemetry = sluice_agent::telemetry::Telemetry::install("sluice-events", None)?;
            sluice_agent::http::start(addr, std::sync::Arc::new(telemetry))
                .await
                .with_context(|| format!("cannot serve metrics on {addr} (--metrics-listen)"))?;
        }
        let client = kube_events::client().await?;
        let forwarder = Forwarder::start(agent).context("cannot start the spool")?;
        let (stop_tx, stop_rx) = watch::channel(false);
        {
            let mut output = Spooled { forwarder: &forwarder, held: None };
            let forwarding = kube_events::forward(&config, client, &mut output, stop_rx);
            tokio::pin!(forwarding);
            tokio::select! {
                () = shutdown_signal() => {
                    let _ = stop_tx.send(true);
                    forwarding.await;
                }
                () = &mut forwarding => {}
            }
        }
        forwarder.stop().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// How long the last records get to reach the spool when stopping.
const STOPPING_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The agent's spool as the events' output: once records are synced there they are as safe
/// as a file's lines the agent has spooled, so the state covering them may be committed.
struct Spooled<'a> {
    forwarder: &'a Forwarder,
    held: Option<State>,
}

#[async_trait]
impl Output for Spooled<'_> {
    async fn append(
        &mut self,
        records: Vec<LogRecord>,
        stopping: bool,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        if stopping {
            // The last records before a stop: spooled if there is room, else they are listed
            // again at the next start.
            let last = self.forwarder.append(records);
            return tokio::time::timeout(STOPPING_WAIT, last).await.unwrap_or(false);
        }
        // While the spool is full (a long collector outage) this waits, and the cluster keeps
        // the events meanwhile.
        tokio::select! {
            appended = self.forwarder.append(records) => appended,
            _ = stop.wait_for(|s| *s) => false,
        }
    }

    fn hold(&mut self, state: State) {
        self.held = Some(state);
    }

    fn delivered(&mut self) -> Option<State> {
        self.held.take()
    }
}
