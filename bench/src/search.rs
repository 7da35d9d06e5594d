//! `sluice-bench search`: search latency over a large index, against `rg` over the same raw
//! files and, with `--opensearch`, against an OpenSearch node fed by the same collector.
//! Generates logs (default 2 GiB), ships them agent → collector → index, then times, warm,
//! through the HTTP API: a rare term (one record id, top 100 newest), two common terms, two
//! Chinese phrases, a field filter with a term, and a 24 h histogram — each question put to
//! both stores in turn — and `rg` finding the rare term and the phrase in the raw files.
//! Prints a table with p50/p99, the hits each side and grep counted, and the ratios, and
//! writes JSON.
//!
//! With `--work DIR` the logs and the index stay in DIR and a later run reuses them (only the
//! queries are timed again).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::opensearch::{self, INDEX, OpenSearch};
use crate::{
    Killed, binaries, dir_bytes, free_port, generate, metric, procstat, start_agent,
    start_collector, wait_for,
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
    /// Also feed this OpenSearch node through the Elasticsearch sink and ask it the same
    /// questions (`scripts/test-servers env` prints OPENSEARCH_URL).
    #[arg(long, env = "OPENSEARCH_URL")]
    opensearch: Option<String>,
    /// The node's pid, to report the CPU it spent indexing
    /// (`cat /tmp/sluice-servers-$(id -u)/opensearch.pid`).
    #[arg(long, requires = "opensearch")]
    opensearch_pid: Option<u32>,
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

/// A timed question: its name, Sluice's API path and query parameters, and the same question
/// in OpenSearch's query DSL.
struct Case {
    name: &'static str,
    path: &'static str,
    params: Vec<(&'static str, String)>,
    opensearch: serde_json::Value,
}

/// What a finished build of the work directory holds.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Built {
    mib: u64,
    raw_bytes: u64,
    pub(crate) records: u64,
    ingest_seconds: f64,
}

/// One side's answers to one question.
#[derive(Debug, Serialize)]
struct Side {
    hits_total: u64,
    /// As the client sees it: HTTP on loopback, JSON, the search.
    p50_ms: f64,
    p99_ms: f64,
    /// The server's own time (Sluice's `took_ms`, OpenSearch's `took`).
    server_p50_ms: f64,
    server_p99_ms: f64,
}

#[derive(Debug, Serialize)]
struct Timing {
    name: &'static str,
    query: String,
    #[serde(flatten)]
    sluice: Side,
    opensearch: Option<Side>,
    /// Lines `rg -c -F` counts in the raw files, for the phrases: what the hits should be.
    grep_lines: Option<u64>,
}

#[derive(Debug, Serialize)]
struct OpenSearchReport {
    /// The primary store after the force-merge to one segment.
    index_bytes: u64,
    index_percent_of_raw: f64,
    /// The node's CPU from the first record to the end of the force-merge, when its pid was given.
    feed_cpu_seconds: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Report {
    raw_bytes: u64,
    records: u64,
    ingest_seconds: f64,
    index_bytes: u64,
    index_percent_of_raw: f64,
    index_bytes_by_kind: std::collections::BTreeMap<String, u64>,
    opensearch: Option<OpenSearchReport>,
    queries: Vec<Timing>,
    rg_ms: f64,
    /// rg's time over the rare term's client-side p50, and over its store time.
    rare_term_speedup_over_rg: f64,
    rare_term_store_speedup_over_rg: f64,
    /// `rg -c -F` for the long Chinese phrase, and its time over Sluice's p50 for it.
    rg_phrase_ms: f64,
    phrase_speedup_over_rg: f64,
}

/// The Chinese phrases asked: a common one and a shorter, commoner one.
const PHRASE: &str = "订单创建成功";
const SHORT_PHRASE: &str = "订单创建";

pub(crate) fn search(args: SearchArgs) -> anyhow::Result<()> {
    let (sluice, agent_bin) = binaries(args.bin_dir.clone())?;
    if Command::new("rg").arg("--version").output().is_err() {
        bail!("ripgrep (rg) is missing: apt-get install ripgrep");
    }
    let temp = tempfile::tempdir()?;
    let work = args.work.clone().unwrap_or_else(|| temp.path().to_owned());
    let logs = work.join("logs");
    let data = work.join("collector");
    let os = args.opensearch.as_deref().map(OpenSearch::new).transpose()?;
    let mut extra = Vec::new();
    let os_cpu_before = args.opensearch_pid.map(|pid| procstat::usage(pid).cpu_seconds);
    if let (Some(os), Some(url)) = (&os, &args.opensearch) {
        // The node's data directory is new with every start of the servers script: an index
        // reused from an earlier run is rebuilt when the node no longer holds its records.
        let marker = work.join("built.json");
        let reusable = std::fs::read(&marker)
            .ok()
            .and_then(|b| serde_json::from_slice::<Built>(&b).ok())
            .is_some_and(|b| b.mib == args.mib && os.count() == b.records);
        if !reusable {
            let _ = std::fs::remove_file(&marker);
            os.reset()?;
        }
        extra = vec![
            "--elasticsearch".to_owned(),
            url.clone(),
            "--es-index".to_owned(),
            INDEX.to_owned(),
        ];
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let Indexed { built, collector, base } =
        indexed(&work, args.mib, args.files, &args.testdata, (&sluice, &agent_bin), &extra)?;
    let os_report = match &os {
        Some(os) => {
            eprintln!("waiting for OpenSearch to hold {} records...", built.records);
            wait_for(Duration::from_secs(7200), || os.count() >= built.records)?;
            eprintln!("force-merging OpenSearch's index...");
            os.force_merge()?;
            let index_bytes = os.store_bytes()?;
            Some(OpenSearchReport {
                index_bytes,
                index_percent_of_raw: index_bytes as f64 * 100.0 / built.raw_bytes as f64,
                feed_cpu_seconds: args
                    .opensearch_pid
                    .zip(os_cpu_before)
                    .map(|(pid, before)| procstat::usage(pid).cpu_seconds - before),
            })
        }
        None => None,
    };

    let client = reqwest::blocking::Client::new();
    let rare_seq = built.records / 2 + 17;
    let now = chrono::Utc::now();
    let day_ago = (now - chrono::TimeDelta::hours(24)).to_rfc3339();
    let now = now.to_rfc3339();
    let top100 = |q: &str| vec![("q", q.to_owned()), ("limit", "100".to_owned())];
    let rare = format!("seq={rare_seq}");
    let cases = [
        Case {
            name: "rare term, top 100 newest",
            path: "/api/v1/search",
            params: top100(&rare),
            opensearch: opensearch::top100(opensearch::phrase(&rare)),
        },
        Case {
            name: "common term",
            path: "/api/v1/search",
            params: top100("INFO"),
            opensearch: opensearch::top100(opensearch::word("INFO")),
        },
        Case {
            name: "commonish term",
            path: "/api/v1/search",
            params: top100("ERROR"),
            opensearch: opensearch::top100(opensearch::word("ERROR")),
        },
        Case {
            name: "Chinese phrase",
            path: "/api/v1/search",
            params: top100(PHRASE),
            opensearch: opensearch::top100(opensearch::phrase(PHRASE)),
        },
        Case {
            name: "shorter Chinese phrase",
            path: "/api/v1/search",
            params: top100(SHORT_PHRASE),
            opensearch: opensearch::top100(opensearch::phrase(SHORT_PHRASE)),
        },
        Case {
            name: "field filter + term",
            path: "/api/v1/search",
            params: top100("namespace:bench error"),
            opensearch: opensearch::top100(opensearch::filtered("namespace", "bench", "error")),
        },
        Case {
            name: "24 h histogram",
            path: "/api/v1/histogram",
            params: vec![("q", String::new()), ("start", day_ago.clone()), ("end", now.clone())],
            opensearch: opensearch::histogram(&day_ago, &now),
        },
    ];
    let mut timings = Vec::new();
    for case in cases {
        let url = format!("{base}{}", case.path);
        let ours = || -> anyhow::Result<(f64, f64, u64)> {
            let started = Instant::now();
            let response = client.get(&url).query(&case.params).send()?;
            let status = response.status();
            let body: serde_json::Value = response.json()?;
            if !status.is_success() {
                bail!("{}: {status}: {body}", case.name);
            }
            Ok((
                started.elapsed().as_secs_f64() * 1000.0,
                body["took_ms"].as_f64().unwrap_or(f64::NAN),
                body["total"].as_u64().unwrap_or(0),
            ))
        };
        let theirs = || os.as_ref().map(|os| os.time(&case.opensearch)).transpose();
        for _ in 0..5 {
            ours()?;
            theirs()?;
        }
        // Interleaved, so both sides see the same machine.
        let (mut sluice_runs, mut os_runs) = (Vec::new(), Vec::new());
        for _ in 0..args.runs {
            sluice_runs.push(ours()?);
            os_runs.extend(theirs()?);
        }
        let query =
            case.params.iter().find(|(k, _)| *k == "q").map(|(_, v)| v.clone()).unwrap_or_default();
        let grep_lines = [PHRASE, SHORT_PHRASE]
            .contains(&query.as_str())
            .then(|| rg_count(&logs, &query))
            .transpose()?;
        timings.push(Timing {
            name: case.name,
            query,
            sluice: side(&sluice_runs),
            opensearch: os.is_some().then(|| side(&os_runs)),
            grep_lines,
        });
    }
    if timings[0].sluice.hits_total == 0 {
        bail!("the rare term seq={rare_seq} was not found; the index is incomplete");
    }

    // rg, warm: the files are read once before timing, so both sides run from the page cache.
    let rg = |args: &[&str]| -> anyhow::Result<f64> {
        let started = Instant::now();
        let out = Command::new("rg").args(args).arg(&logs).output().context("cannot run rg")?;
        anyhow::ensure!(out.status.code().is_some_and(|c| c <= 1), "rg failed");
        Ok(started.elapsed().as_secs_f64() * 1000.0)
    };
    let median = |rg_args: &[&str]| -> anyhow::Result<f64> {
        rg(rg_args)?;
        let mut ms: Vec<f64> = (0..5).map(|_| rg(rg_args)).collect::<anyhow::Result<_>>()?;
        Ok(quantiles(&mut ms).0)
    };
    let rg_p50 = median(&["-c", "-F", "-w", &rare])?;
    let rg_phrase = median(&["-c", "-F", PHRASE])?;
    let phrase_p50 =
        timings.iter().find(|t| t.query == PHRASE).map_or(f64::NAN, |t| t.sluice.p50_ms);

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
        opensearch: os_report,
        rare_term_speedup_over_rg: rg_p50 / timings[0].sluice.p50_ms,
        rare_term_store_speedup_over_rg: rg_p50 / timings[0].sluice.server_p50_ms,
        queries: timings,
        rg_ms: rg_p50,
        rg_phrase_ms: rg_phrase,
        phrase_speedup_over_rg: rg_phrase / phrase_p50,
    };
    print_table(&report);
    crate::write_report(&args.out, &report)
}

/// The quantiles of one side's runs: (client ms, server ms, total).
fn side(runs: &[(f64, f64, u64)]) -> Side {
    let mut client: Vec<f64> = runs.iter().map(|r| r.0).collect();
    let mut server: Vec<f64> = runs.iter().map(|r| r.1).collect();
    let (p50_ms, p99_ms) = quantiles(&mut client);
    let (server_p50_ms, server_p99_ms) = quantiles(&mut server);
    Side {
        hits_total: runs.last().map_or(0, |r| r.2),
        p50_ms,
        p99_ms,
        server_p50_ms,
        server_p99_ms,
    }
}

/// The lines holding `needle` over every file under `logs`, by `rg -c -F`.
fn rg_count(logs: &Path, needle: &str) -> anyhow::Result<u64> {
    let out = Command::new("rg").args(["-c", "-F", "--no-filename", needle]).arg(logs).output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .sum())
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
    if let Some(os) = &r.opensearch {
        println!(
            "OpenSearch, force-merged: {:.2} GiB = {:.1}% of raw{}",
            os.index_bytes as f64 / (1u64 << 30) as f64,
            os.index_percent_of_raw,
            os.feed_cpu_seconds.map_or(String::new(), |s| format!(
                "; {:.3} CPU s per MB to index",
                s / (r.raw_bytes as f64 / 1e6)
            ))
        );
    }
    println!(
        "{:<26} {:>9} {:>8} {:>8} {:>9} | {:>9} {:>8} {:>9} | {:>9}  query",
        "case", "hits", "p50 ms", "p99 ms", "store p50", "OS hits", "OS p50", "OS took50", "grep"
    );
    for t in &r.queries {
        let (os_hits, os_p50, os_took) =
            t.opensearch.as_ref().map_or(("-".to_owned(), "-".to_owned(), "-".to_owned()), |o| {
                (
                    o.hits_total.to_string(),
                    format!("{:.2}", o.p50_ms),
                    format!("{:.2}", o.server_p50_ms),
                )
            });
        println!(
            "{:<26} {:>9} {:>8.2} {:>8.2} {:>9.2} | {:>9} {:>8} {:>9} | {:>9}  {}",
            t.name,
            t.sluice.hits_total,
            t.sluice.p50_ms,
            t.sluice.p99_ms,
            t.sluice.server_p50_ms,
            os_hits,
            os_p50,
            os_took,
            t.grep_lines.map_or("-".to_owned(), |n| n.to_string()),
            t.query
        );
    }
    println!("{:<26} {:>9} {:>8.1}  rg -c -F -w (warm)", "rg, rare term", "", r.rg_ms);
    println!(
        "{:<26} {:>9} {:>8.1}  rg -c -F {PHRASE} (warm)",
        "rg, Chinese phrase", "", r.rg_phrase_ms
    );
    println!(
        "rare term: {:.0}x faster than rg as the client sees it, {:.0}x in the store; Chinese phrase: {:.1}x faster than rg",
        r.rare_term_speedup_over_rg, r.rare_term_store_speedup_over_rg, r.phrase_speedup_over_rg
    );
    for (kind, bytes) in &r.index_bytes_by_kind {
        println!("  index {kind:<10} {:>8.1} MiB", *bytes as f64 / 1048576.0);
    }
}
