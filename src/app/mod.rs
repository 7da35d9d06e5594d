//! The application, assembled: which sources, sinks and routes run, on which listeners, for
//! `sluice up` and `sluice collector`. The libraries offer the parts; only this module knows
//! them all, so a new capability (events, alerting, dashboards) plugs in here beside the
//! others rather than into a library's configuration.
//!
//! Data flows one way: sources → WAL → one runner per sink → the index → the search API.
//!
//! # Layout
//! - [`flags`]: the flags that choose the parts.
//! - [`sinks`]: the sinks those flags ask for.
//! - [`history`]: the index as what rules read of the past when they start.

mod flags;
mod history;
mod sinks;

use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
pub(crate) use flags::CollectorArgs;
use sluice_alerting::{Alerting, AlertsFile};
use sluice_collector::auth::{AgentTokens, IngestAuthenticator, IngestGrant, TlsFiles};
use sluice_collector::enrich::{self, PodCache};
use sluice_collector::runner::{Cursors, Feed, SinkTask, spawn_sinks};
use sluice_collector::sources::http::ClientIngest;
use sluice_collector::sources::kafka::{KafkaSource, KafkaSourceConfig};
use sluice_collector::sources::kube_events::lease::LeaseConfig;
use sluice_collector::sources::kube_events::{KubeEventsConfig, KubeEventsSource};
use sluice_collector::sources::{self, Source};
use sluice_collector::wal::Wal;
use sluice_dashboards::api::Dashboards;
use sluice_dashboards::dashboard::builtin::builtin;
use sluice_dashboards::dashboard::{Loaded, lint, load};
use sluice_dashboards::log_metrics::{LogMetrics, LogMetricsFile};
use sluice_query::Store;
use sluice_query::access::{Authenticator, Open, Users};
use sluice_query::api::{Admission, ApiState, MetricsRender, router};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The collector's listeners, bound before it starts so that their ports are known.
pub(crate) struct Listeners {
    /// Agents' gRPC pushes.
    pub(crate) grpc: TcpListener,
    /// The search API, the page, `_bulk` and OTLP/HTTP.
    pub(crate) http: TcpListener,
}

impl Listeners {
    /// Binds `--grpc-listen` and `--listen`, and says where on stdout: tests and scripts
    /// read these lines to learn the ports when they asked for port 0.
    pub(crate) async fn bind(args: &CollectorArgs) -> anyhow::Result<Self> {
        let grpc = TcpListener::bind(args.grpc_listen)
            .await
            .with_context(|| format!("cannot listen on {} (--grpc-listen)", args.grpc_listen))?;
        let http = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {} (--listen)", args.listen))?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "sluice: agents push to {} (gRPC)", grpc.local_addr()?)?;
        writeln!(out, "sluice: search API on http://{}", http.local_addr()?)?;
        out.flush()?;
        Ok(Self { grpc, http })
    }
}

/// Who may push: in `sluice up` anyone on loopback; `sluice collector` may demand TLS and
/// tokens of remote agents and clients.
#[derive(Default)]
pub(crate) struct AgentAccess {
    pub(crate) tls: Option<TlsFiles>,
    pub(crate) tokens: Option<AgentTokens>,
}

/// Runs the collector the flags describe until `shutdown` completes.
pub(crate) async fn run_collector(
    args: &CollectorArgs,
    listeners: Listeners,
    access: AgentAccess,
    metrics: MetricsRender,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let users = args.users.as_deref().map(Users::load).transpose()?;
    let alerts =
        args.alerts.as_deref().map(|path| AlertsFile::load(path).map(|f| (f, path))).transpose()?;
    let log_metrics = args.log_metrics.as_deref().map(LogMetricsFile::load).transpose()?;
    let dashboards = dashboards(args, alerts.as_ref().map(|(f, _)| f), log_metrics.as_ref())?;
    let alerts_for_dashboards = alerts.as_ref().map(|(f, _)| f.clone());
    if users.is_none() && !args.listen.ip().is_loopback() {
        tracing::warn!(
            listen = %args.listen,
            "the search API is open: anyone who reaches this address reads every namespace; pass --users"
        );
    }
    let wal = {
        let (dir, segment_bytes, limit) =
            (args.data_dir.join("wal"), args.wal_segment_size.as_u64(), args.wal_limit());
        Arc::new(
            tokio::task::spawn_blocking(move || {
                Wal::open(&dir, segment_bytes).map(|w| w.with_limit(limit))
            })
            .await??,
        )
    };
    let store = Store::open(&args.data_dir.join("index")).context("cannot open the index")?;
    store.set_query_budget(args.query_budget.map(|b| b.as_u64()));
    let (stop_tx, stop_rx) = watch::channel(false);

    let cursors = Arc::new(Cursors::default());
    let pods = match args.no_pod_metadata {
        false => enrich::client().await.map(|client| {
            let cache = Arc::new(PodCache::default());
            tokio::spawn(enrich::watch_pods(client, cache.clone(), stop_rx.clone()));
            cache
        }),
        true => None,
    };
    let feed = Feed { wal: wal.clone(), cursors: cursors.clone(), pods };
    let mut sink_tasks = sinks::build(args, &wal, &store).await?;
    let alerting = match alerts {
        Some((file, path)) => {
            let (alerting, sink) = Alerting::start(
                &file,
                path,
                &args.data_dir.join("alerts"),
                wal.clone(),
                Some(&history::StoreHistory(store.clone())),
                stop_rx.clone(),
            )?;
            tracing::info!(
                rules = file.rules.len(),
                receivers = file.receivers.len(),
                "alerting on"
            );
            // Counts are saved with their WAL position this often: what a crash replays.
            sink_tasks
                .push(SinkTask { sink: Box::new(sink), flush_interval: Duration::from_secs(1) });
            Some(alerting)
        }
        None => None,
    };
    let metrics = match &log_metrics {
        Some(file) => {
            let (shown, sink) = LogMetrics::start(file, &args.data_dir.join("log-metrics"), &wal)?;
            tracing::info!(metrics = file.metrics.len(), "log metrics on");
            // The counts are saved, and shown, this often.
            sink_tasks
                .push(SinkTask { sink: Box::new(sink), flush_interval: Duration::from_secs(1) });
            let process = metrics;
            Arc::new(move || process() + &shown.render()) as MetricsRender
        }
        None => metrics,
    };
    let runners = spawn_sinks(sink_tasks, &feed, &stop_rx)?;
    let mut sources: Vec<Box<dyn Source>> = Vec::new();
    if let Some(brokers) = &args.kafka_source {
        sources.push(Box::new(KafkaSource::new(KafkaSourceConfig {
            brokers: brokers.clone(),
            topics: args.kafka_source_topic.clone(),
            group: args.kafka_source_group.clone(),
            instance_id: args.kafka_source_instance_id.clone(),
            options: args.kafka_options(),
        })));
    }
    if args.kube_events {
        let mut config = KubeEventsConfig::new(&args.cluster, &args.data_dir);
        config.namespaces = args.kube_events_namespace.clone();
        config.types = args.kube_events_type.clone();
        config.lease = args
            .kube_events_lease
            .as_deref()
            .map(|lease| LeaseConfig::new(lease, args.kube_events_lease_duration));
        sources.push(Box::new(KubeEventsSource::connect(config).await?));
    }
    let source_tasks: Vec<_> = sources
        .into_iter()
        .map(|source| {
            tracing::info!(source = source.name(), "starting a source");
            tokio::spawn(source.run(wal.clone(), cursors.clone(), stop_rx.clone()))
        })
        .collect();

    // With agent tokens, they admit clients; else with users, their tokens do (what each may
    // write); with neither, the ingest endpoints are as open as the search API.
    let ingest_auth: Option<Arc<dyn IngestAuthenticator>> = match (&access.tokens, &users) {
        (Some(tokens), _) => Some(Arc::new(tokens.clone())),
        (None, Some(users)) => Some(Arc::new(UsersIngest(users.clone()))),
        (None, None) => None,
    };
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let clients = ClientIngest::new(
        wal.clone(),
        ingest_auth,
        args.max_concurrent_ingest.unwrap_or(cores.max(2)),
    );
    let agents = sources::agent::router(wal, access.tls.as_ref(), access.tokens)?;
    let grpc_task =
        tokio::spawn(sources::serve_grpc(agents, listeners.grpc, stopped(stop_rx.clone())));
    let otlp_task = match args.otlp_grpc_listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} for OTLP/gRPC"))?;
            tracing::info!(%addr, "OTLP/gRPC logs");
            let router = sources::otlp::grpc_router(clients.clone());
            Some(tokio::spawn(sources::serve_grpc(router, listener, stopped(stop_rx.clone()))))
        }
        None => None,
    };
    let auth: Arc<dyn Authenticator> = match users {
        Some(users) => Arc::new(users),
        None => Arc::new(Open),
    };
    // `_bulk` and OTLP/HTTP share the API listener, as Elasticsearch and collectors do.
    let admission = Arc::new(Admission::new(
        args.max_concurrent_queries.unwrap_or(cores.max(2)),
        args.max_queued_queries,
    ));
    let exports =
        Arc::new(Admission::new(args.max_concurrent_exports, args.max_concurrent_exports));
    let mut app = router(ApiState { store, metrics, auth: auth.clone(), admission, exports })
        .merge(sources::http::routes(clients));
    app = match alerting {
        Some(alerting) => app.merge(sluice_alerting::api::routes(alerting, auth.clone())),
        None => app.merge(sluice_alerting::api::disabled()),
    };
    let served = Dashboards {
        dashboards,
        alerts: alerts_for_dashboards,
        log_metrics,
        prometheus: args.prometheus_url.clone(),
        store: args.data_dir.join("dashboards"),
    };
    app = app.merge(
        sluice_dashboards::api::routes(served, auth.clone()).map_err(|e| anyhow::anyhow!(e))?,
    );
    let http_server =
        axum::serve(listeners.http, app).with_graceful_shutdown(stopped(stop_rx.clone()));
    let http_task = tokio::spawn(async move { http_server.await });

    shutdown.await;
    tracing::info!("collector stopping");
    let _ = stop_tx.send(true);
    let grpc_result = grpc_task.await;
    let http_result = http_task.await;
    if let Some(task) = otlp_task {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "OTLP/gRPC server stopped with an error"),
            Err(e) => tracing::warn!(error = %e, "OTLP/gRPC task failed"),
        }
    }
    for task in source_tasks {
        let _ = task.await;
    }
    for runner in runners {
        let _ = runner.await;
    }
    grpc_result.context("gRPC server task failed")?.context("gRPC server")?;
    http_result.context("HTTP server task failed")?.context("HTTP server")?;
    Ok(())
}

/// The built-in dashboards and those of `--dashboards`, which must pass lint.
fn dashboards(
    args: &CollectorArgs,
    alerts: Option<&AlertsFile>,
    log_metrics: Option<&LogMetricsFile>,
) -> anyhow::Result<Vec<Loaded>> {
    let mut all = builtin();
    if let Some(dir) = &args.dashboards {
        let (loaded, mut problems) = load(dir);
        all.extend(loaded);
        problems.extend(lint::lint(&all, &lint::Context { alerts, log_metrics }));
        if !problems.is_empty() {
            let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
            anyhow::bail!(
                "dashboards refused (sluice dash lint says the same):\n{}",
                lines.join("\n")
            );
        }
    }
    Ok(all)
}

/// The users file as the ingest endpoints' authentication: admins write anywhere, other users
/// the namespaces of their `ingest:` list.
struct UsersIngest(Users);

impl IngestAuthenticator for UsersIngest {
    fn grant(&self, token: &str) -> Result<IngestGrant, &'static str> {
        let rights = self.0.ingest_rights(token).ok_or("unknown token")?;
        Ok(match rights.namespaces {
            None => IngestGrant::anywhere(&rights.name),
            Some(namespaces) => IngestGrant::only(&rights.name, &namespaces),
        })
    }
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
