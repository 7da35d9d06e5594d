//! `sluice-bench load`: memory and answers under many concurrent heavy requests. Builds (or
//! reuses) an index of generated logs behind a `sluice collector`, then runs `--clients`
//! clients at once for `--seconds`, each cycling through a mix of searches, open-range
//! histograms, facets over everything, exports of every error and `_bulk` writes (a request
//! not answered within 60 s counts as failed), and reports the
//! collector's peak RSS during the load (`VmHWM`, reset before it starts) beside its idle RSS,
//! and per kind of request how many were answered, refused with 429 (and so should be retried)
//! or failed, with client-side p50/p99.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::procstat;
use crate::search::{Indexed, indexed, quantiles};

#[derive(Debug, clap::Args)]
pub(crate) struct LoadArgs {
    /// Raw log volume to index first.
    #[arg(long, default_value_t = 256)]
    mib: u64,
    #[arg(long, default_value_t = 8)]
    files: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 200)]
    clients: usize,
    /// How long the load runs.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Which kinds of request the clients cycle through, of search, empty, histogram,
    /// facets, export and bulk.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "search,empty,histogram,facets,export,bulk"
    )]
    kinds: Vec<String>,
    /// Documents per `_bulk` request.
    #[arg(long, default_value_t = 5_000)]
    bulk_docs: usize,
    /// Keep logs and index here and reuse them next time (default: a temporary directory).
    #[arg(long)]
    work: Option<PathBuf>,
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    #[arg(long, default_value = "../shared/testdata")]
    testdata: PathBuf,
    /// More arguments for the collector, as one string split at spaces.
    #[arg(long, default_value = "")]
    collector_args: String,
    #[arg(long, default_value = "bench/results/load.json")]
    out: PathBuf,
}

#[derive(Debug, Default, Serialize)]
struct Kind {
    requests: u64,
    ok: u64,
    /// Refused for now (429 with Retry-After): the client should come back.
    busy: u64,
    failed: u64,
    p50_ms: f64,
    p99_ms: f64,
    #[serde(skip)]
    ms: Vec<f64>,
    #[serde(skip)]
    first_failure: Option<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    records: u64,
    clients: usize,
    seconds: u64,
    collector_args: String,
    idle_rss_mib: f64,
    idle_anon_mib: f64,
    peak_rss_mib: f64,
    /// The highest anonymous RSS sampled every 100 ms: the process's own memory, without the
    /// index pages it maps.
    peak_anon_mib: f64,
    kinds: BTreeMap<&'static str, Kind>,
}

type Request = (&'static str, reqwest::blocking::RequestBuilder);

pub(crate) fn load(args: LoadArgs) -> anyhow::Result<()> {
    let (sluice, agent_bin) = crate::binaries(args.bin_dir.clone())?;
    let temp = tempfile::tempdir()?;
    let work = args.work.clone().unwrap_or_else(|| temp.path().to_owned());
    let extra: Vec<&str> = args.collector_args.split_whitespace().collect();
    let Indexed { built, collector, base } =
        indexed(&work, args.mib, args.files, &args.testdata, (&sluice, &agent_bin), &extra)?;
    let pid = collector.0.id();
    std::thread::sleep(Duration::from_secs(2));
    let idle = procstat::usage(pid);
    // Writing 5 to clear_refs resets VmHWM to the current RSS, so the peak is the load's own.
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")?;

    let known = ["search", "empty", "histogram", "facets", "export", "bulk"];
    if let Some(unknown) = args.kinds.iter().find(|k| !known.contains(&k.as_str())) {
        anyhow::bail!("--kinds: {unknown:?} is none of {known:?}");
    }
    let bulk = Arc::new(bulk_body(args.bulk_docs));
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(args.clients)
        .build()?;
    let mix = args.kinds.clone();
    let request = move |i: usize| -> Request {
        let api = |path: &str| client.post(format!("{base}{path}"));
        match mix[i % mix.len()].as_str() {
            "search" => (
                "search common term",
                api("/api/v1/search").form(&[("q", "INFO"), ("limit", "100")]),
            ),
            "empty" => {
                ("search empty query", api("/api/v1/search").form(&[("q", ""), ("limit", "500")]))
            }
            "histogram" => ("histogram, open range", api("/api/v1/histogram").form(&[("q", "")])),
            "facets" => {
                ("facets over all", api("/api/v1/facets").form(&[("q", ""), ("size", "1000")]))
            }
            "export" => ("export level:error", api("/api/v1/export").form(&[("q", "level:error")])),
            "bulk" => (
                "_bulk",
                client
                    .post(format!("{base}/_bulk"))
                    .header("Content-Type", "application/x-ndjson")
                    .body(bulk.as_ref().clone()),
            ),
            other => unreachable!("--kinds was checked: {other}"),
        }
    };
    let request = Arc::new(request);
    let kinds: Arc<Mutex<BTreeMap<&'static str, Kind>>> = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    eprintln!("{} clients for {} s...", args.clients, args.seconds);
    let threads: Vec<_> = (0..args.clients)
        .map(|c| {
            let (request, kinds) = (request.clone(), kinds.clone());
            std::thread::spawn(move || {
                let mut i = c;
                while Instant::now() < deadline {
                    let (name, builder) = request(i);
                    let started = Instant::now();
                    let outcome = send(builder);
                    let ms = started.elapsed().as_secs_f64() * 1000.0;
                    let mut kinds = kinds.lock().expect("no client panics holding it");
                    let kind = kinds.entry(name).or_default();
                    kind.requests += 1;
                    match outcome {
                        Ok(()) => {
                            kind.ok += 1;
                            kind.ms.push(ms);
                        }
                        Err(Outcome::Busy) => kind.busy += 1,
                        Err(Outcome::Failed(why)) => {
                            kind.failed += 1;
                            kind.first_failure.get_or_insert(why);
                        }
                    }
                    drop(kinds);
                    i += 1;
                }
            })
        })
        .collect();
    let (mut peak_sampled, mut peak_anon) = (0f64, 0f64);
    while threads.iter().any(|t| !t.is_finished()) {
        let now = procstat::usage(pid);
        peak_sampled = peak_sampled.max(now.rss_mib);
        peak_anon = peak_anon.max(now.anon_mib);
        std::thread::sleep(Duration::from_millis(100));
    }
    for t in threads {
        t.join().map_err(|_| anyhow::anyhow!("a client panicked"))?;
    }
    let peak = procstat::usage(pid).peak_rss_mib.max(peak_sampled);
    drop(collector);

    let mut kinds = std::mem::take(&mut *kinds.lock().expect("the clients are done"));
    for kind in kinds.values_mut() {
        (kind.p50_ms, kind.p99_ms) = quantiles(&mut kind.ms);
    }
    let report = Report {
        records: built.records,
        clients: args.clients,
        seconds: args.seconds,
        collector_args: args.collector_args.clone(),
        idle_rss_mib: idle.rss_mib,
        idle_anon_mib: idle.anon_mib,
        peak_rss_mib: peak,
        peak_anon_mib: peak_anon,
        kinds,
    };
    print_table(&report);
    crate::write_report(&args.out, &report)
}

enum Outcome {
    Busy,
    Failed(String),
}

/// Sends a request and reads its whole answer (an export's too, as a client saving it would).
fn send(builder: reqwest::blocking::RequestBuilder) -> Result<(), Outcome> {
    let mut response = builder.send().map_err(|e| Outcome::Failed(e.to_string()))?;
    let status = response.status();
    let mut sink = [0u8; 64 * 1024];
    let mut body = Vec::new();
    loop {
        match response.read(&mut sink) {
            Ok(0) => break,
            Ok(n) if body.len() < 512 => body.extend_from_slice(&sink[..n.min(512)]),
            Ok(_) => {}
            Err(e) => return Err(Outcome::Failed(format!("{status}: reading the body: {e}"))),
        }
    }
    match status.as_u16() {
        200..=299 => Ok(()),
        429 | 503 => Err(Outcome::Busy),
        _ => Err(Outcome::Failed(format!("{status}: {}", String::from_utf8_lossy(&body)))),
    }
}

fn bulk_body(docs: usize) -> Vec<u8> {
    let mut body = String::new();
    for i in 0..docs {
        body.push_str("{\"create\":{\"_index\":\"load\"}}\n");
        body.push_str(&format!(
            "{{\"message\":\"INFO load test document {i} 订单创建成功\",\"namespace\":\"load\"}}\n"
        ));
    }
    body.into_bytes()
}

fn print_table(r: &Report) {
    println!(
        "\n{} clients for {} s over {} records ({}): collector RSS idle {:.0} MiB ({:.0} MiB own), peak {:.0} MiB ({:.0} MiB own, sampled)",
        r.clients,
        r.seconds,
        r.records,
        if r.collector_args.is_empty() { "default settings" } else { &r.collector_args },
        r.idle_rss_mib,
        r.idle_anon_mib,
        r.peak_rss_mib,
        r.peak_anon_mib
    );
    println!(
        "{:<24} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9}",
        "request", "sent", "ok", "429", "failed", "p50 ms", "p99 ms"
    );
    for (name, k) in &r.kinds {
        println!(
            "{name:<24} {:>8} {:>8} {:>8} {:>8} {:>9.1} {:>9.1}",
            k.requests, k.ok, k.busy, k.failed, k.p50_ms, k.p99_ms
        );
        if let Some(why) = &k.first_failure {
            println!("  first failure: {why:.200}");
        }
    }
}
