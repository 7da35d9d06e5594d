//! `sluice-bench agent`: what the agent costs. Idle RSS with one tailed file; then one large
//! kubelet-style CRI file (long lines split into `P`/`F` parts) shipped to a collector that
//! makes every batch durable in its WAL before acking and then discards it (`--blackhole`),
//! so indexing speed does not hide the agent's: wall throughput, MB per agent CPU-second,
//! peak RSS, and the spool's size on the way.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::{Killed, free_port, generate, metric, procstat, start_collector, wait_for};

#[derive(Debug, clap::Args)]
pub(crate) struct AgentArgs {
    /// Size of the CRI file to ship.
    #[arg(long, default_value_t = 1024)]
    mib: u64,
    /// Where `sluice` and `sluice-agent` are (default: beside this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// The agent to measure, when not the one in `--bin-dir`: the node build from
    /// `scripts/build-agent` (static, link-time optimised) is the one to ship and measure.
    #[arg(long)]
    agent_bin: Option<PathBuf>,
    #[arg(long, default_value = "../shared/testdata")]
    testdata: PathBuf,
    /// Where the JSON report goes.
    #[arg(long, default_value = "bench/results/agent.json")]
    out: PathBuf,
}

#[derive(Debug, Serialize)]
struct Report {
    raw_mib: f64,
    records: u64,
    idle_rss_mib: f64,
    wall_seconds: f64,
    mb_per_second: f64,
    agent: procstat::Usage,
    agent_mb_per_cpu_second: f64,
    collector: procstat::Usage,
    spool_max_mib: f64,
    /// Batches the collector acknowledged.
    batches: u64,
}

pub(crate) fn agent(args: AgentArgs) -> anyhow::Result<()> {
    let (sluice, agent_bin) = crate::binaries(args.bin_dir)?;
    let agent_bin = args.agent_bin.unwrap_or(agent_bin);
    anyhow::ensure!(agent_bin.exists(), "{} is missing: scripts/build-agent", agent_bin.display());
    let work = tempfile::tempdir()?;
    let logs = work.path().join("logs");
    eprintln!("generating a {} MiB CRI file...", args.mib);
    let templates = generate::templates(&args.testdata)?;
    let (paths, generated) = generate::generate(&logs, &templates, args.mib << 20, 1)?;
    let big = &paths[0];

    let (grpc, http) = (free_port()?, free_port()?);
    let collector =
        start_collector(&sluice, &work.path().join("collector"), grpc, http, &["--blackhole"])?;

    let start_agent = |name: &str, watch: &std::path::Path| -> anyhow::Result<(Killed, String)> {
        let metrics_port = free_port()?;
        let agent = crate::start_agent(
            &agent_bin,
            &work.path().join(name),
            grpc,
            &watch.display().to_string(),
            &format!("metrics_listen: 127.0.0.1:{metrics_port}\n"),
        )?;
        Ok((agent, format!("http://127.0.0.1:{metrics_port}")))
    };
    let acked = |base: &str| metric(base, "sluice_agent_records_acked_total") as u64;

    eprintln!("idle: one tailed file...");
    let small = work.path().join("idle/app.log");
    std::fs::create_dir_all(small.parent().context("has a parent")?)?;
    std::fs::write(&small, "INFO one line\nINFO and another\n")?;
    let (idle, idle_base) = start_agent("idle-agent", &small)?;
    wait_for(Duration::from_secs(30), || acked(&idle_base) >= 2)?;
    std::thread::sleep(Duration::from_secs(3));
    let idle_rss_mib = procstat::usage(idle.0.id()).rss_mib;
    drop(idle);

    eprintln!("shipping {} records...", generated.records);
    let started = Instant::now();
    let (loaded, base) = start_agent("load-agent", big)?;
    let mut spool_max: f64 = 0.0;
    wait_for(Duration::from_secs(3600), || {
        spool_max = spool_max.max(metric(&base, "sluice_agent_spool_bytes"));
        std::thread::sleep(Duration::from_millis(50));
        acked(&base) >= generated.records
    })?;
    let wall = started.elapsed().as_secs_f64();
    let batches = metric(&base, "sluice_agent_batches_acked_total") as u64;
    let agent = procstat::usage(loaded.0.id());
    let collector = procstat::usage(collector.0.id());
    let mb = generated.bytes as f64 / 1e6;
    let report = Report {
        raw_mib: generated.bytes as f64 / 1048576.0,
        records: generated.records,
        idle_rss_mib,
        wall_seconds: wall,
        mb_per_second: mb / wall,
        agent_mb_per_cpu_second: mb / agent.cpu_seconds.max(1e-9),
        agent,
        collector,
        spool_max_mib: spool_max / 1048576.0,
        batches,
    };
    println!("| measure | value |");
    println!("|---|---|");
    println!("| CRI file | {:.1} MiB, {} records |", report.raw_mib, report.records);
    println!("| agent idle RSS (one tailed file) | {:.1} MiB |", report.idle_rss_mib);
    println!("| wall time, agent start → all acknowledged | {:.2} s |", report.wall_seconds);
    println!("| throughput | {:.1} MB/s |", report.mb_per_second);
    println!(
        "| agent CPU | {:.2} s → {:.1} MB per CPU-second |",
        report.agent.cpu_seconds, report.agent_mb_per_cpu_second
    );
    println!("| agent peak RSS | {:.1} MiB |", report.agent.peak_rss_mib);
    println!("| spool at most | {:.1} MiB |", report.spool_max_mib);
    println!("| batches acknowledged | {} |", report.batches);
    println!(
        "| collector (WAL, fsync per batch, blackhole) | {:.2} CPU-s, peak RSS {:.1} MiB |",
        report.collector.cpu_seconds, report.collector.peak_rss_mib
    );
    crate::write_report(&args.out, &report)
}
