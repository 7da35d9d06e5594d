//! `sluice-bench search`: search latency over a large index, against `rg` over the same raw
//! files. Generates logs (default 2 GiB), ships them agent → collector → index, then times,
//! warm, through the HTTP API: a rare term (one record id, top 100 newest), a common term, a
//! Chinese phrase, a field filter with a term, and a 24 h histogram; and `rg` finding the rare
//! term in the raw files. Prints a table with p50/p99 and the ratios, and writes JSON.
//!
//! With `--work DIR` the logs and the index stay in DIR and a later run reuses them (only the
//! queries are timed again).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::{
    Killed, binaries, dir_bytes, free_port, generate, metric, start_agent, start_collector,
    wait_for,
};

#[derive(Debug, clap::Args)]
pub(crate) struct SearchArgs {
    /// Raw log volume to index.
    #[arg(long, default_value_t = 2048)]
    mib: u64,
    #[arg(long, default_value_t = 8)]
    files: usize,
    /// Timed runs of each query, after warm-up runs.
    #[arg(long, default_value_t = 50)]
    runs: usize,
    /// Keep logs and index here and reuse them next time (default: a temporary directory).
    #[arg(long)]
    work: Option<PathBuf>,
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    #[arg(long, default_value = "../shared/testdata")]
    testdata: PathBuf,
    #[arg(long, default_value = "bench/results/search.json")]
    out: PathBuf,
}

/// An index of generated logs behind a running collector.
pub(crate) struct Indexed {
    pub(crate) built: Built,
    pub(crate) collector: Killed,
    pub(crate) base: String,
}

/// Generates `mib` of logs in `work` and ships them agent → collector → index, or reuses what
/// an earlier run built there; the collector (started with `extra`) keeps running.
pub(crate) fn indexed(
    work: &Path,
    mib: u64,
    files: usize,
    testdata: &Path,
    (sluice, agent_bin): (&Path, &Path),
    extra: &[&str],
) -> anyhow::Result<Indexed> {
    std::fs::create_dir_all(work)?;
    let logs = work.join("logs");
    let data = work.join("collector");
    let marker = work.join("built.json");
    let (grpc, http) = (free_port()?, free_port()?);
    let base = format!("http://127.0.0.1:{http}");

    let reuse = std::fs::read(&marker)
        .ok()
        .and_then(|b| serde_json::from_slice::<Built>(&b).ok())
        .filter(|b| b.mib == mib);
    if let Some(built) = reuse {
        eprintln!("reusing the index in {}", work.display());
        let collector = start_collector(sluice, &data, grpc, http, extra)?;
        return Ok(Indexed { built, collector, base });
    }
    let _ = std::fs::remove_dir_all(&logs);
    let _ = std::fs::remove_dir_all(&data);
    eprintln!("generating {mib} MiB of logs...");
    let templates = generate::templates(testdata)?;
    let (_, g) = generate::generate(&logs, &templates, mib << 20, files)?;
    let collector = start_collector(sluice, &data, grpc, http, extra)?;
    eprintln!("indexing {} records...", g.records);
    let started = Instant::now();
    let agent = start_agent(
        agent_bin,
        &work.join("agent"),
        grpc,
        &format!("{}/**/*.log", logs.display()),
        "",
    )?;
    wait_for(Duration::from_secs(7200), || metric(&base, "sluice_index_docs") as u64 >= g.records)?;
    drop(agent);
    let built = Built {
        mib,
        raw_bytes: g.bytes,
        records: g.records,
        ingest_seconds: started.elapsed().as_secs_f64(),
    };
    std::fs::write(&marker, serde_json::to_vec_pretty(&built)?)?;
    Ok(Indexed { built, collector, base })
}

/// A timed request: its name, the API path and the query parameters.
type Case = (&'static str, &'static str, Vec<(&'static str, String)>);

/// What a finished build of the work directory holds.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Built {
    mib: u64,
    raw_bytes: u64,
    pub(crate) records: u64,
    ingest_seconds: f64,
}

#[derive(Debug, Serialize)]
struct Timing {
    name: &'static str,
    query: String,
    hits_total: u64,
    /// As the client sees it: HTTP on loopback, JSON, the search.
    p50_ms: f64,
    p99_ms: f64,
    /// The store's own time (`took_ms`).
    server_p50_ms: f64,
    server_p99_ms: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    raw_bytes: u64,
    records: u64,
    ingest_seconds: f64,
    index_bytes: u64,
    index_percent_of_raw: f64,
    index_bytes_by_kind: std::collections::BTreeMap<String, u64>,
    queries: Vec<Timing>,
    rg_ms: f64,
    /// rg's time over the rare term's client-side p50, and over its store time.
    rare_term_speedup_over_rg: f64,
    rare_term_store_speedup_over_rg: f64,
}

pub(crate) fn search(args: SearchArgs) -> anyhow::Result<()> {
    let (sluice, agent_bin) = binaries(args.bin_dir.clone())?;
    if Command::new("rg").arg("--version").output().is_err() {
        bail!("ripgrep (rg) is missing: apt-get install ripgrep");
    }
    let temp = tempfile::tempdir()?;
    let work = args.work.clone().unwrap_or_else(|| temp.path().to_owned());
    let logs = work.join("logs");
    let data = work.join("collector");
    let Indexed { built, collector, base } =
        indexed(&work, args.mib, args.files, &args.testdata, (&sluice, &agent_bin), &[])?;

    let client = reqwest::blocking::Client::new();
    let rare_seq = built.records / 2 + 17;
    let now = chrono::Utc::now();
    let day_ago = (now - chrono::TimeDelta::hours(24)).to_rfc3339();
    let now = now.to_rfc3339();
    let top100 = |q: String| vec![("q", q), ("limit", "100".to_owned())];
    let cases: [Case; 5] = [
        ("rare term, top 100 newest", "/api/v1/search", top100(format!("seq={rare_seq}"))),
        ("common term", "/api/v1/search", top100("INFO".to_owned())),
        ("Chinese phrase", "/api/v1/search", top100("订单创建成功".to_owned())),
        ("field filter + term", "/api/v1/search", top100("namespace:bench error".to_owned())),
        (
            "24 h histogram",
            "/api/v1/histogram",
            vec![("q", String::new()), ("start", day_ago), ("end", now)],
        ),
    ];
    let mut timings = Vec::new();
    for (name, path, params) in cases {
        let url = format!("{base}{path}");
        let run = || -> anyhow::Result<(f64, f64, u64)> {
            let started = Instant::now();
            let response = client.get(&url).query(&params).send()?;
            let status = response.status();
            let body: serde_json::Value = response.json()?;
            if !status.is_success() {
                bail!("{name}: {status}: {body}");
            }
            Ok((
                started.elapsed().as_secs_f64() * 1000.0,
                body["took_ms"].as_f64().unwrap_or(f64::NAN),
                body["total"].as_u64().unwrap_or(0),
            ))
        };
        for _ in 0..5 {
            run()?;
        }
        let mut ms = Vec::with_capacity(args.runs);
        let mut server = Vec::with_capacity(args.runs);
        let mut total = 0;
        for _ in 0..args.runs {
            let (t, took, n) = run()?;
            ms.push(t);
            server.push(took);
            total = n;
        }
        let (p50_ms, p99_ms) = quantiles(&mut ms);
        let (server_p50_ms, server_p99_ms) = quantiles(&mut server);
        let query =
            params.iter().find(|(k, _)| *k == "q").map(|(_, v)| v.clone()).unwrap_or_default();
        timings.push(Timing {
            name,
            query,
            hits_total: total,
            p50_ms,
            p99_ms,
            server_p50_ms,
            server_p99_ms,
        });
    }
    if timings[0].hits_total == 0 {
        bail!("the rare term seq={rare_seq} was not found; the index is incomplete");
    }

    // rg, warm: the files are read once before timing, so both sides run from the page cache.
    let rg = |logs: &Path| -> anyhow::Result<f64> {
        let started = Instant::now();
        let out = Command::new("rg")
            .args(["-c", "-F", "-w", &format!("seq={rare_seq}")])
            .arg(logs)
            .output()
            .context("cannot run rg")?;
        anyhow::ensure!(out.status.code().is_some_and(|c| c <= 1), "rg failed");
        Ok(started.elapsed().as_secs_f64() * 1000.0)
    };
    rg(&logs)?;
    let mut rg_ms: Vec<f64> = (0..5).map(|_| rg(&logs)).collect::<anyhow::Result<_>>()?;
    let (rg_p50, _) = quantiles(&mut rg_ms);

    let mut by_kind = std::collections::BTreeMap::new();
    dir_bytes(&data.join("index"), &mut by_kind);
    let index_bytes: u64 = by_kind.values().sum();
    drop::<Killed>(collector);
    let report = Report {
        raw_bytes: built.raw_bytes,
        records: built.records,
        ingest_seconds: built.ingest_seconds,
        index_bytes,
        index_percent_of_raw: index_bytes as f64 * 100.0 / built.raw_bytes as f64,
        index_bytes_by_kind: by_kind,
        rare_term_speedup_over_rg: rg_p50 / timings[0].p50_ms,
        rare_term_store_speedup_over_rg: rg_p50 / timings[0].server_p50_ms,
        queries: timings,
        rg_ms: rg_p50,
    };
    print_table(&report);
    crate::write_report(&args.out, &report)
}

/// The median and the 99th percentile (NaN of no samples).
pub(crate) fn quantiles(ms: &mut [f64]) -> (f64, f64) {
    if ms.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}

fn print_table(r: &Report) {
    println!(
        "\nsearch over {:.2} GiB raw, {} records (indexed in {:.0} s); index {:.2} GiB = {:.1}% of raw",
        r.raw_bytes as f64 / (1u64 << 30) as f64,
        r.records,
        r.ingest_seconds,
        r.index_bytes as f64 / (1u64 << 30) as f64,
        r.index_percent_of_raw
    );
    println!(
        "{:<26} {:>9} {:>8} {:>8} {:>10} {:>10}  query",
        "case", "hits", "p50 ms", "p99 ms", "store p50", "store p99"
    );
    for t in &r.queries {
        println!(
            "{:<26} {:>9} {:>8.2} {:>8.2} {:>10.2} {:>10.2}  {}",
            t.name, t.hits_total, t.p50_ms, t.p99_ms, t.server_p50_ms, t.server_p99_ms, t.query
        );
    }
    println!("{:<26} {:>9} {:>8.1}  rg -c -F -w (warm)", "rg, rare term", "", r.rg_ms);
    println!(
        "rare term: {:.0}x faster than rg as the client sees it, {:.0}x in the store",
        r.rare_term_speedup_over_rg, r.rare_term_store_speedup_over_rg
    );
    for (kind, bytes) in &r.index_bytes_by_kind {
        println!("  index {kind:<10} {:>8.1} MiB", *bytes as f64 / 1048576.0);
    }
}
