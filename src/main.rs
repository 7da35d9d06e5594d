//! `sluice`: run the pipeline (`up`, `collector`, `events`), search what it indexed
//! (`search`) and manage alerts (`alert`).
//!
//! A thin edge: flags, logging and exit codes here, and the application assembled from the
//! libraries' parts (`app`); the work is in the libraries.

mod app;
mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "sluice", version, about = "Sluice: logs from the pod to the search box")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Tail files, index them locally and serve the search API, all in one process.
    Up(commands::up::UpArgs),
    /// Receive from agents, index, and serve the search API.
    Collector(commands::up::CollectorCommandArgs),
    /// Search indexed logs, from a data directory or a running server.
    Search(commands::search::SearchArgs),
    /// Watch this cluster's Kubernetes events and push them to a central collector, through
    /// a disk spool.
    Events(commands::events::EventsArgs),
    /// Check alert files; see, silence and unsilence alerts on a running server.
    Alert(commands::alert::AlertArgs),
    /// Check dashboards and monitors kept as files; render them for Grafana or KubeSphere.
    Dash(commands::dash::DashArgs),
}

// Indexing allocates and frees many small buffers across threads; mimalloc spends about a
// tenth less CPU on that than glibc's malloc (bench/: collector MB per CPU-second).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Search(_)) { "warn" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Command::Up(args) => commands::up::up(args),
        Command::Collector(args) => commands::up::collector(args),
        Command::Search(args) => commands::search::search(args),
        Command::Events(args) => commands::events::events(args),
        Command::Alert(args) => commands::alert::alert(args),
        Command::Dash(args) => commands::dash::dash(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sluice: {e:#}");
            ExitCode::FAILURE
        }
    }
}
