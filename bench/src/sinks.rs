//! `sluice-bench sinks`: what each sink costs the collector. Generated logs are shipped
//! once by an agent into a collector's WAL (held there by a sink at a closed port); then,
//! for each sink, a collector starts on a copy of that WAL with only that sink behind
//! (beside `--blackhole`, which starts at the WAL's end and costs nothing) and drains it:
//! wall time until the sink's lag is zero, the collector's CPU seconds and peak RSS.
//! Throughput is in raw log bytes, like the other benches.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::{free_port, generate, metric, procstat, start_collector, wait_for};

#[derive(Debug, clap::Args)]
pub(crate) struct SinksArgs {
    /// Raw log volume to ship.
    #[arg(long, default_value_t = 256)]
    mib: u64,
    #[arg(long, default_value_t = 8)]
    files: usize,
    /// Kafka brokers for the Kafka rows (`scripts/test-servers env` prints KAFKA_BROKERS).
    #[arg(long, env = "KAFKA_BROKERS")]
    kafka: Option<String>,
    /// OpenSearch for its row (OPENSEARCH_URL).
    #[arg(long, env = "OPENSEARCH_URL")]
    opensearch: Option<String>,
    /// Where `sluice` and `sluice-agent` are (default: beside this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    #[arg(long, default_value = "../shared/testdata")]
    testdata: PathBuf,
    /// Where the JSON report goes.
    #[arg(long, default_value = "bench/results/sinks.json")]
    out: PathBuf,
    /// Run only the sinks whose row name contains this (for example `protobuf-batch`).
    #[arg(long)]
    only: Option<String>,
}

#[derive(Debug, Serialize)]
struct Row {
    sink: String,
    wall_seconds: f64,
    mb_per_second: f64,
    collector: procstat::Usage,
    mb_per_cpu_second: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    raw_mib: f64,
    records: u64,
    wal_mib: f64,
    rows: Vec<Row>,
}

pub(crate) fn sinks(args: SinksArgs) -> anyhow::Result<()> {
    let (sluice, agent_bin) = crate::binaries(args.bin_dir)?;
    let work = tempfile::tempdir()?;
    let logs = work.path().join("logs");
    eprintln!("generating {} MiB of logs...", args.mib);
    let templates = generate::templates(&args.testdata)?;
    let (_, generated) = generate::generate(&logs, &templates, args.mib << 20, args.files)?;

    // Fill a WAL: a blackhole collector whose Elasticsearch sink (a closed port) never
    // moves, so no segment is released.
    let filled = work.path().join("filled");
    {
        let (grpc, http) = (free_port()?, free_port()?);
        let base = format!("http://127.0.0.1:{http}");
        let dead = format!("http://127.0.0.1:{}", free_port()?);
        let _collector = start_collector(
            &sluice,
            &filled,
            grpc,
            http,
            &["--blackhole", "--elasticsearch", &dead],
        )?;
        let watch = format!("{}/**/*.log", logs.display());
        eprintln!("shipping {} records into the WAL...", generated.records);
        let _agent = crate::start_agent(&agent_bin, &work.path().join("agent"), grpc, &watch, "")?;
        wait_for(Duration::from_secs(3600), || {
            metric(&base, "sluice_collector_blackhole_records_total") as u64 >= generated.records
        })?;
    }
    let mut wal_files = std::collections::BTreeMap::new();
    crate::dir_bytes(&filled.join("wal"), &mut wal_files);
    let wal_bytes: u64 = wal_files.values().sum();

    let run_id = format!("{}x{}", std::process::id(), chrono::Utc::now().timestamp());
    let mut cases: Vec<(String, Vec<String>, &str)> =
        vec![("index (local tantivy)".to_owned(), vec![], "index")];
    if let Some(brokers) = args.kafka.as_ref().filter(|b| !b.is_empty()) {
        for (encoding, compression) in [
            ("json", "zstd"),
            ("protobuf", "lz4"),
            ("protobuf-batch", "zstd"),
            ("protobuf-batch", "lz4"),
            ("ndjson", "zstd"),
        ] {
            let id = format!("bench-{run_id}-{encoding}-{compression}");
            cases.push((
                format!("kafka ({encoding}, {compression})"),
                [
                    "--blackhole",
                    "--kafka",
                    brokers,
                    "--kafka-topic",
                    &id,
                    "--kafka-transactional-id",
                    &id,
                    "--kafka-encoding",
                    encoding,
                    "--kafka-compression",
                    compression,
                ]
                .map(str::to_owned)
                .to_vec(),
                "kafka",
            ));
        }
    }
    if let Some(url) = args.opensearch.as_ref().filter(|u| !u.is_empty()) {
        let index = format!("bench-{run_id}-{{namespace}}-{{yyyy.MM.dd}}");
        cases.push((
            "opensearch (_bulk, gzip)".to_owned(),
            ["--blackhole", "--elasticsearch", url, "--es-index", &index]
                .map(str::to_owned)
                .to_vec(),
            "elasticsearch",
        ));
    }

    if let Some(only) = &args.only {
        cases.retain(|(name, _, _)| name.contains(only.as_str()));
    }
    let mb = generated.bytes as f64 / 1e6;
    let mut rows = Vec::new();
    for (name, flags, sink) in cases {
        let data = work.path().join(format!("run-{}", rows.len()));
        std::fs::create_dir_all(&data)?;
        let status = Command::new("cp").arg("-r").arg(filled.join("wal")).arg(&data).status()?;
        anyhow::ensure!(status.success(), "cannot copy the WAL");
        eprintln!("draining the WAL into {name}...");
        let (grpc, http) = (free_port()?, free_port()?);
        let base = format!("http://127.0.0.1:{http}");
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let started = Instant::now();
        let collector = start_collector(&sluice, &data, grpc, http, &flags)?;
        let lag = format!("sluice_sink_lag_bytes{{sink=\"{sink}\"}}");
        let position = format!("sluice_sink_position{{sink=\"{sink}\"}}");
        wait_for(Duration::from_secs(3600), || {
            metric(&base, &position) > 0.0 && metric(&base, &lag) == 0.0
        })
        .with_context(|| format!("{name} did not catch up"))?;
        let wall = started.elapsed().as_secs_f64();
        let usage = procstat::usage(collector.0.id());
        rows.push(Row {
            sink: name,
            wall_seconds: wall,
            mb_per_second: mb / wall,
            mb_per_cpu_second: mb / usage.cpu_seconds.max(1e-9),
            collector: usage,
        });
    }
    let report = Report {
        raw_mib: generated.bytes as f64 / 1048576.0,
        records: generated.records,
        wal_mib: wal_bytes as f64 / 1048576.0,
        rows,
    };
    println!(
        "{:.1} MiB raw, {} records, a WAL of {:.1} MiB, drained into each sink:\n",
        report.raw_mib, report.records, report.wal_mib
    );
    println!("| sink | wall s | MB/s | collector CPU s | MB per CPU-second | peak RSS MiB |");
    println!("|---|---|---|---|---|---|");
    for r in &report.rows {
        println!(
            "| {} | {:.2} | {:.1} | {:.2} | {:.1} | {:.0} |",
            r.sink,
            r.wall_seconds,
            r.mb_per_second,
            r.collector.cpu_seconds,
            r.mb_per_cpu_second,
            r.collector.peak_rss_mib
        );
    }
    crate::write_report(&args.out, &report)
}
