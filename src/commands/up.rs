//! `sluice up` and `sluice collector`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use sluice_agent::config::ReadFrom;

use crate::app::{self, AgentAccess, CollectorArgs, Listeners};
use sluice_agent::telemetry::{OtlpExport, Telemetry};

#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    #[command(flatten)]
    collector: CollectorArgs,
    /// Files to tail (glob; `**` crosses directories). Repeat for more.
    #[arg(long, required = true)]
    watch: Vec<String>,
    /// The node name put on every record (default: the host name).
    #[arg(long, default_value = "")]
    node: String,
    /// For files already there at the first start: read them from the beginning or the end.
    #[arg(long, value_enum, default_value = "beginning")]
    read_from: ReadFromArg,
    /// How lines get their time: `auto` (the stamp each line starts with, in any common
    /// shape), `none` (the time it is read), or a strftime format such as `%d.%m.%Y %H:%M:%S`.
    #[arg(long, default_value = "auto")]
    timestamp_format: String,
    /// The zone of stamps that carry none: `local` (the machine's), `UTC`, `+08:00` or a
    /// name such as `Asia/Shanghai`.
    #[arg(long, default_value = "local")]
    timezone: String,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ReadFromArg {
    Beginning,
    End,
}

pub(crate) fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let listeners = Listeners::bind(&args.collector).await?;
        let mut agent = sluice_agent::RawConfig::new(
            format!("http://{}", listeners.grpc.local_addr()?),
            args.collector.data_dir.join("agent"),
            args.watch,
        );
        agent.cluster = args.collector.cluster.clone();
        agent.node = args.node;
        agent.timestamp.format = Some(args.timestamp_format);
        agent.timestamp.timezone = Some(args.timezone);
        agent.read_from = match args.read_from {
            ReadFromArg::Beginning => ReadFrom::Beginning,
            ReadFromArg::End => ReadFrom::End,
        };
        let agent = agent.validate().map_err(|e| anyhow::anyhow!("invalid flags: {e}"))?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let metrics = metrics_render("sluice", &args.collector)?;
        let collector_args = args.collector;
        let shutdown = stopped(stop_rx.clone());
        let mut collector = tokio::spawn(async move {
            let access = AgentAccess::default();
            app::run_collector(&collector_args, listeners, access, metrics, shutdown).await
        });
        let agent = tokio::spawn(sluice_agent::run(agent, stopped(stop_rx)));
        // A collector that cannot start (a bad users file, an unreadable WAL) ends `up` at once.
        let failed = tokio::select! {
            () = shutdown_signal() => None,
            result = &mut collector => Some(result),
        };
        let _ = stop_tx.send(true);
        agent.await.context("agent task failed")??;
        match failed {
            Some(result) => result.context("collector task failed")??,
            None => collector.await.context("collector task failed")??,
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `sluice collector`: the collector alone, which remote agents reach, so it can demand TLS
/// and tokens. (`sluice up` keeps its agent on loopback inside the process.)
#[derive(Debug, Args)]
pub(crate) struct CollectorCommandArgs {
    #[command(flatten)]
    collector: CollectorArgs,
    /// PEM certificate (chain) for the agents' gRPC listener; agents then connect with https://.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// File of `<agent name> <token> [clusters=<glob>,…]` lines; agents must send one of the
    /// tokens, and a token bound to clusters may only write records of those clusters.
    #[arg(long)]
    agent_tokens: Option<PathBuf>,
}

pub(crate) fn collector(args: CollectorCommandArgs) -> anyhow::Result<ExitCode> {
    let agent_tokens =
        args.agent_tokens.as_deref().map(sluice_collector::auth::AgentTokens::load).transpose()?;
    if agent_tokens.is_none() && !args.collector.grpc_listen.ip().is_loopback() {
        tracing::warn!(
            listen = %args.collector.grpc_listen,
            "agents are not authenticated: any host that reaches this address can push; pass --agent-tokens"
        );
    }
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(sluice_collector::auth::TlsFiles { cert, key }),
        _ => None,
    };
    let args = args.collector;
    runtime()?.block_on(async {
        let listeners = Listeners::bind(&args).await?;
        let access = AgentAccess { tls, tokens: agent_tokens };
        app::run_collector(
            &args,
            listeners,
            access,
            metrics_render("sluice-collector", &args)?,
            shutdown_signal(),
        )
        .await?;
        Ok(ExitCode::SUCCESS)
    })
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Installs the process's metrics recorder: `/metrics`, and OTLP pushes when asked.
fn metrics_render(
    service: &str,
    args: &app::CollectorArgs,
) -> anyhow::Result<sluice_query::api::MetricsRender> {
    let otlp = args.telemetry_otlp_endpoint.as_ref().map(|endpoint| OtlpExport {
        endpoint: endpoint.clone(),
        interval: args.telemetry_interval,
    });
    let telemetry = Telemetry::install(service, otlp.as_ref())?;
    Ok(Arc::new(move || telemetry.render()))
}

pub(crate) async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
