//! `sluice-bench`: measures the real binaries end to end and prints a table and JSON.
//!
//! `pipeline` generates logs from the shapes in `shared/testdata`, runs `sluice-agent` →
//! `sluice collector` → local index over them, and reports throughput, CPU seconds and peak
//! RSS per process, and how long a freshly written line takes to become searchable.
//! `agent` measures the agent alone: idle memory, and one large CRI file shipped to a
//! collector that only makes it durable. `search` times queries over a large index against
//! `rg` over the same files. `load` runs many concurrent heavy requests (searches, histograms,
//! facets, exports, `_bulk`) against an index and reports the collector's peak memory and
//! what each kind got. `events` times Kubernetes events from the cluster to searchable, with
//! the Kubernetes API double of the library ([`sluice_bench::fake_kube`]). `generate` only
//! writes the logs (the demo uses it).

mod agent;
mod alerts;
mod events;
mod generate;
mod load;
mod opensearch;
mod procstat;
mod search;
mod sinks;

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde::Serialize;

#[derive(Debug, Parser)]
#[command(name = "sluice-bench", about = "Benchmarks of the Sluice pipeline")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Agent → collector → index over generated logs.
    Pipeline(PipelineArgs),
    /// The agent alone: idle RSS, and a large CRI file to a WAL-only collector.
    Agent(agent::AgentArgs),
    /// Search latency over a large index, and rg over the same files.
    Search(search::SearchArgs),
    /// What each sink costs the collector, draining the same WAL.
    Sinks(sinks::SinksArgs),
    /// Peak memory and answers under many concurrent heavy requests.
    Load(load::LoadArgs),
    /// How long a Kubernetes event takes to become searchable, at a steady rate.
    Events(events::EventsArgs),
    /// How long a log line takes to become a DingTalk request, through an alert rule.
    Alerts(alerts::AlertsArgs),
    /// Write generated logs only.
    Generate {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 8)]
        mib: u64,
        #[arg(long, default_value_t = 4)]
        files: usize,
        #[arg(long, default_value = "../shared/testdata")]
        testdata: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct PipelineArgs {
    /// Raw log volume to ship.
    #[arg(long, default_value_t = 256)]
    mib: u64,
    #[arg(long, default_value_t = 8)]
    files: usize,
    /// Write→searchable probes after the bulk load.
    #[arg(long, default_value_t = 60)]
    probes: usize,
    /// Where `sluice` and `sluice-agent` are (default: beside this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    #[arg(long, default_value = "../shared/testdata")]
    testdata: PathBuf,
    /// How often the collector commits the index (its `--commit-interval`).
    #[arg(long, default_value = "1s")]
    commit_interval: String,
    /// Also give the collector an Elasticsearch sink at a closed port, which fails for the
    /// whole run: measures that a sick sink does not slow the local index.
    #[arg(long)]
    sick_sink: bool,
    /// Where the JSON report goes.
    #[arg(long, default_value = "bench/results/pipeline.json")]
    out: PathBuf,
}

#[derive(Debug, Serialize)]
struct Report {
    sick_sink: bool,
    raw_mib: f64,
    records: u64,
    files: usize,
    wall_seconds: f64,
    mb_per_second: f64,
    records_per_second: f64,
    collector: procstat::Usage,
    agent: procstat::Usage,
    collector_mb_per_cpu_second: f64,
    agent_mb_per_cpu_second: f64,
    latency_ms_p50: f64,
    latency_ms_p99: f64,
    latency_ms_max: f64,
    index_bytes: u64,
    index_bytes_per_raw_byte: f64,
    /// Index bytes by tantivy file kind: `store` (documents), `idx` (postings), `pos`
    /// (positions), `term` (dictionary), `fast`, ...
    index_bytes_by_kind: BTreeMap<String, u64>,
}

/// Latency percentiles in milliseconds, as the latency benches report them.
#[derive(Debug, serde::Serialize)]
struct Percentiles {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

impl Percentiles {
    fn of(mut ms: Vec<f64>) -> Self {
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
        Self { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: at(1.0) }
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Generate { out, mib, files, testdata } => {
            let templates = generate::templates(&testdata)?;
            let (_, g) = generate::generate(&out, &templates, mib << 20, files)?;
            println!(
                "wrote {} records, {:.1} MiB under {}",
                g.records,
                g.bytes as f64 / 1048576.0,
                out.display()
            );
            Ok(())
        }
        Cmd::Pipeline(args) => pipeline(args),
        Cmd::Agent(args) => agent::agent(args),
        Cmd::Search(args) => search::search(args),
        Cmd::Sinks(args) => sinks::sinks(args),
        Cmd::Load(args) => load::load(args),
        Cmd::Events(args) => events::events(args),
        Cmd::Alerts(args) => alerts::alerts(args),
    }
}

fn pipeline(args: PipelineArgs) -> anyhow::Result<()> {
    let (sluice, agent_bin) = binaries(args.bin_dir)?;
    let work = tempfile::tempdir()?;
    let logs = work.path().join("logs");
    eprintln!("generating {} MiB of logs...", args.mib);
    let templates = generate::templates(&args.testdata)?;
    let (_, generated) = generate::generate(&logs, &templates, args.mib << 20, args.files)?;

    let (grpc, http) = (free_port()?, free_port()?);
    let base = format!("http://127.0.0.1:{http}");
    let data = work.path().join("collector");
    let dead = format!("http://127.0.0.1:{}", free_port()?);
    let mut collector_args = vec!["--commit-interval", &args.commit_interval];
    if args.sick_sink {
        collector_args.extend(["--elasticsearch", dead.as_str()]);
    }
    let collector = start_collector(&sluice, &data, grpc, http, &collector_args)?;

    let agent_dir = work.path().join("agent");
    let watch = format!("{}/**/*.log", logs.display());
    eprintln!("shipping {} records...", generated.records);
    let started = Instant::now();
    let agent = start_agent(&agent_bin, &agent_dir, grpc, &watch, "")?;
    wait_for(Duration::from_secs(3600), || {
        metric(&base, "sluice_index_docs") as u64 >= generated.records
    })?;
    let wall = started.elapsed().as_secs_f64();
    let collector_usage = procstat::usage(collector.0.id());
    let agent_usage = procstat::usage(agent.0.id());

    eprintln!("probing write→searchable latency...");
    let probe_file = logs.join("app/probe.log");
    let mut probe = OpenOptions::new().create(true).append(true).open(&probe_file)?;
    writeln!(probe, "probe file start")?;
    std::thread::sleep(Duration::from_millis(1500));
    let mut latencies = Vec::new();
    for i in 0..args.probes {
        let token = format!("latencyprobe{i}x{}", std::process::id());
        let written = Instant::now();
        writeln!(probe, "INFO probe {token}")?;
        probe.flush()?;
        wait_for(Duration::from_secs(30), || total(&base, &token) >= 1)?;
        latencies.push(written.elapsed().as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(100));
    }
    latencies.sort_by(f64::total_cmp);
    let quantile = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];

    let mut index_bytes_by_kind = BTreeMap::new();
    dir_bytes(&data.join("index"), &mut index_bytes_by_kind);
    let index_bytes = index_bytes_by_kind.values().sum();
    let mib = generated.bytes as f64 / 1048576.0;
    let mb = generated.bytes as f64 / 1e6;
    let report = Report {
        sick_sink: args.sick_sink,
        raw_mib: mib,
        records: generated.records,
        files: args.files,
        wall_seconds: wall,
        mb_per_second: mb / wall,
        records_per_second: generated.records as f64 / wall,
        collector_mb_per_cpu_second: mb / collector_usage.cpu_seconds.max(1e-9),
        agent_mb_per_cpu_second: mb / agent_usage.cpu_seconds.max(1e-9),
        collector: collector_usage,
        agent: agent_usage,
        latency_ms_p50: quantile(0.5),
        latency_ms_p99: quantile(0.99),
        latency_ms_max: *latencies.last().expect("at least one probe"),
        index_bytes,
        index_bytes_per_raw_byte: index_bytes as f64 / generated.bytes as f64,
        index_bytes_by_kind,
    };
    print_table(&report);
    drop(agent);
    drop(collector);
    write_report(&args.out, &report)
}

/// `sluice` and `sluice-agent` in `bin_dir`, by default beside this binary.
fn binaries(bin_dir: Option<PathBuf>) -> anyhow::Result<(PathBuf, PathBuf)> {
    let bin_dir = match bin_dir {
        Some(d) => d,
        None => std::env::current_exe()?.parent().context("binary has a directory")?.to_owned(),
    };
    let sluice = bin_dir.join("sluice");
    let agent_bin = bin_dir.join("sluice-agent");
    for b in [&sluice, &agent_bin] {
        anyhow::ensure!(
            b.exists(),
            "{} is missing: cargo build --release --workspace --bins",
            b.display()
        );
    }
    Ok((sluice, agent_bin))
}

/// Starts `sluice collector` on the given ports and waits until it answers.
fn start_collector(
    sluice: &Path,
    data: &Path,
    grpc: u16,
    http: u16,
    extra: &[&str],
) -> anyhow::Result<Killed> {
    let collector = Killed(
        Command::new(sluice)
            .args(["collector", "--data-dir"])
            .arg(data)
            .args(["--listen", &format!("127.0.0.1:{http}")])
            .args(["--grpc-listen", &format!("127.0.0.1:{grpc}")])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start the collector")?,
    );
    wait_for(Duration::from_secs(30), || {
        get(&format!("http://127.0.0.1:{http}/healthz")).is_some()
    })?;
    Ok(collector)
}

/// Starts `sluice-agent` shipping `watch` to the collector on `grpc`, its state in `dir`;
/// `extra` is more YAML for its config.
fn start_agent(
    agent_bin: &Path,
    dir: &Path,
    grpc: u16,
    watch: &str,
    extra: &str,
) -> anyhow::Result<Killed> {
    std::fs::create_dir_all(dir)?;
    let config = dir.join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            "collector: http://127.0.0.1:{grpc}\ndata_dir: {}\n{extra}watch:\n  - '{watch}'\n",
            dir.join("state").display()
        ),
    )?;
    let child = Command::new(agent_bin)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start the agent")?;
    Ok(Killed(child))
}

fn write_report(out: &Path, report: &impl Serialize) -> anyhow::Result<()> {
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(out, serde_json::to_string_pretty(report)? + "\n")?;
    println!("\nwrote {}", out.display());
    Ok(())
}

fn print_table(r: &Report) {
    println!("| measure | value |");
    println!("|---|---|");
    println!("| raw logs | {:.1} MiB, {} records, {} files |", r.raw_mib, r.records, r.files);
    if r.sick_sink {
        println!("| sick sink | an Elasticsearch sink at a closed port, failing all along |");
    }
    println!("| wall time, agent start → all searchable | {:.2} s |", r.wall_seconds);
    println!("| throughput | {:.1} MB/s, {:.0} records/s |", r.mb_per_second, r.records_per_second);
    println!(
        "| collector CPU | {:.2} s → {:.1} MB per CPU-second |",
        r.collector.cpu_seconds, r.collector_mb_per_cpu_second
    );
    println!(
        "| agent CPU | {:.2} s → {:.1} MB per CPU-second |",
        r.agent.cpu_seconds, r.agent_mb_per_cpu_second
    );
    println!("| collector peak RSS | {:.1} MiB |", r.collector.peak_rss_mib);
    println!("| agent peak RSS | {:.1} MiB |", r.agent.peak_rss_mib);
    println!(
        "| write → searchable p50 / p99 / max | {:.0} / {:.0} / {:.0} ms |",
        r.latency_ms_p50, r.latency_ms_p99, r.latency_ms_max
    );
    println!(
        "| index size | {:.1} MiB ({:.0}% of raw) |",
        r.index_bytes as f64 / 1048576.0,
        r.index_bytes_per_raw_byte * 100.0
    );
    let parts: Vec<String> = r
        .index_bytes_by_kind
        .iter()
        .filter(|(_, b)| **b >= 1 << 20)
        .map(|(k, b)| format!("{k} {:.1}", *b as f64 / 1048576.0))
        .collect();
    println!("| index by kind (MiB) | {} |", parts.join(", "));
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn get(url: &str) -> Option<String> {
    let response =
        reqwest::blocking::Client::new().get(url).timeout(Duration::from_secs(10)).send().ok()?;
    response.status().is_success().then(|| response.text().ok()).flatten()
}

fn total(base: &str, query: &str) -> u64 {
    reqwest::blocking::Client::new()
        .get(format!("{base}/api/v1/search"))
        .query(&[("q", query), ("limit", "0")])
        .send()
        .ok()
        .and_then(|r| r.json::<serde_json::Value>().ok())
        .and_then(|v| v["total"].as_u64())
        .unwrap_or(0)
}

fn metric(base: &str, name: &str) -> f64 {
    get(&format!("{base}/metrics"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn wait_for(timeout: Duration, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Adds up the files under `dir` by extension.
fn dir_bytes(dir: &Path, by_kind: &mut BTreeMap<String, u64>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        match entry.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&path, by_kind),
            Ok(m) => {
                let kind = path.extension().map_or("other".into(), |e| e.to_string_lossy().into());
                *by_kind.entry(kind).or_default() += m.len();
            }
            Err(_) => {}
        }
    }
}
