//! `sluice-agent`: the small per-node or per-pod shipper. It links neither tantivy nor Kafka
//! nor Elasticsearch.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sluice_agent::AgentConfig;
use sluice_agent::telemetry::Telemetry;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

#[derive(Debug, Parser)]
#[command(
    name = "sluice-agent",
    version,
    about = "Tail logs and ship them to a Sluice collector",
    args_conflicts_with_subcommands = true
)]
struct Args {
    /// The agent's config file (see agent.example.yaml); runs the agent.
    #[arg(long, short = 'c', required = true)]
    config: Option<PathBuf>,
    /// Check the config and exit (as `sluice-agent validate`).
    #[arg(long)]
    validate: bool,
    /// Reload the config when its file changes (a Kubernetes ConfigMap update), as on SIGHUP.
    #[arg(long)]
    watch_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a config file and exit: unknown keys and bad values name the key and the file.
    Validate { config: PathBuf },
    /// Show how the agent sees a file: selection, pod, format, identity and checkpoint.
    Explain {
        #[arg(long, short = 'c')]
        config: PathBuf,
        path: PathBuf,
    },
}

fn main() -> ExitCode {
    // `Targets` reads the usual `RUST_LOG` syntax (`info,sluice_agent::shipper=debug`)
    // without the regex engine that `EnvFilter` brings for span-field matching.
    let filter = std::env::var("RUST_LOG").ok().filter(|s| !s.is_empty());
    let targets = match filter.as_deref().map(str::parse::<Targets>) {
        Some(Ok(targets)) => targets,
        Some(Err(e)) => {
            eprintln!("sluice-agent: RUST_LOG is invalid ({e}); logging at info");
            Targets::new().with_default(tracing::Level::INFO)
        }
        None => Targets::new().with_default(tracing::Level::INFO),
    };
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_filter(targets),
        )
        .init();
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sluice-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let path = match args.command {
        Some(Command::Validate { config }) => return validate(&config),
        Some(Command::Explain { config, path }) => {
            print!("{}", sluice_agent::explain::explain(&AgentConfig::load(&config)?, &path)?);
            return Ok(ExitCode::SUCCESS);
        }
        None => args.config.expect("clap requires --config without a subcommand"),
    };
    if args.validate {
        return validate(&path);
    }
    let mut config = AgentConfig::load(&path)?;
    // One thread: the reader has its own, and shipping one batch at a time needs no more.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Installed once for the process: a reload keeps the recorder and its counts.
    let telemetry = match (&config.metrics_listen, &config.telemetry) {
        (None, None) => None,
        (_, otlp) => Some(Arc::new(Telemetry::install("sluice-agent", otlp.as_ref())?)),
    };
    runtime.block_on(async {
        if let (Some(addr), Some(telemetry)) = (config.metrics_listen, &telemetry) {
            sluice_agent::http::start(addr, telemetry.clone())
                .await
                .with_context(|| format!("cannot serve metrics on {addr} (metrics_listen)"))?;
        }
        let mut hangup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
        let (changed_tx, mut changed) = tokio::sync::mpsc::unbounded_channel();
        // Kept alive for the loop.
        let _watcher = match args.watch_config {
            true => Some(watch_config(&path, changed_tx)?),
            false => None,
        };
        let mut running = std::fs::read(&path).unwrap_or_default();
        let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        // A reload stops the agent and starts it again with the new config: all state that
        // matters is in the checkpoints, and what was read but not acknowledged is read again
        // (and deduplicated by the collector).
        loop {
            let next = std::cell::RefCell::new(None);
            let stop = async {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                    new = reloaded(&path, &mut hangup, &mut changed, &mut running) => *next.borrow_mut() = Some(new),
                }
            };
            sluice_agent::run(config, stop).await?;
            match next.into_inner() {
                Some(new) => {
                    tracing::info!(config = %path.display(), "config reloaded");
                    config = new;
                }
                None => return anyhow::Ok(()),
            }
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The config after the next SIGHUP or change of the file that finds it valid; an invalid
/// one is logged and the running config kept. A change that leaves the text as it runs is
/// not a reload.
async fn reloaded(
    path: &std::path::Path,
    hangup: &mut Signal,
    changed: &mut tokio::sync::mpsc::UnboundedReceiver<()>,
    running: &mut Vec<u8>,
) -> AgentConfig {
    loop {
        tokio::select! {
            _ = hangup.recv() => {}
            Some(()) = changed.recv() => {
                // Editors and ConfigMap updates write in several steps: let them finish.
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                while changed.try_recv().is_ok() {}
                if std::fs::read(path).ok().as_ref() == Some(running) {
                    continue;
                }
            }
        }
        *running = std::fs::read(path).unwrap_or_default();
        match AgentConfig::load(path) {
            Ok(config) => return config,
            Err(e) => tracing::error!("reload refused, keeping the running config: {e}"),
        }
    }
}

/// Watches the config file's directory, where editors replace the file and Kubernetes swaps
/// the `..data` link of a mounted ConfigMap.
fn watch_config(
    path: &std::path::Path,
    changed: tokio::sync::mpsc::UnboundedSender<()>,
) -> anyhow::Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let dir =
        path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let name = path.file_name().map(std::ffi::OsStr::to_owned).unwrap_or_default();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let ours = |p: &std::path::PathBuf| {
            p.file_name().is_some_and(|n| n == name.as_os_str() || n == "..data")
        };
        if event.is_ok_and(|e| !e.kind.is_access() && e.paths.iter().any(ours)) {
            let _ = changed.send(());
        }
    })
    .context("cannot watch the config file")?;
    watcher
        .watch(dir, notify::RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch {}", dir.display()))?;
    tracing::info!(config = %path.display(), "reloading the config when it changes");
    Ok(watcher)
}

fn validate(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    AgentConfig::load(path)?;
    println!("{}: ok", path.display());
    Ok(ExitCode::SUCCESS)
}
