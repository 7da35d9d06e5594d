//! `sluice-agent`: the small per-node or per-pod shipper. It links neither tantivy nor Kafka
//! nor Elasticsearch.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use sluice_agent::AgentConfig;

#[derive(Debug, Parser)]
#[command(name = "sluice-agent", version, about = "Tail logs and ship them to a Sluice collector")]
struct Args {
    /// The agent's config file (see agent.example.yaml).
    #[arg(long, short = 'c')]
    config: PathBuf,
    /// Check the config and exit.
    #[arg(long)]
    validate: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
    let config = AgentConfig::load(&args.config)?;
    if args.validate {
        println!("{}: ok", args.config.display());
        return Ok(ExitCode::SUCCESS);
    }
    // One thread: the reader has its own, and shipping one batch at a time needs no more.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(sluice_agent::run(config, shutdown_signal()))?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
