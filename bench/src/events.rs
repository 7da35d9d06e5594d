//! `sluice-bench events`: how long a Kubernetes event takes to become searchable. A
//! `sluice collector --kube-events` (default settings) watches the Kubernetes API double
//! ([`crate::fake_kube`]: a test double, no API server can run here) while events are
//! recorded at a steady rate, a quarter of them repeats of earlier ones; a poller counts the
//! searchable occurrences. Occurrences are forwarded in the order the cluster showed them, so
//! the k-th recorded is searchable once k are: its latency is from its recording to the first
//! poll that counts k.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use sluice_bench::fake_kube::{EventSpec, FakeKube};

use crate::{Killed, free_port, get, procstat, total, wait_for};

#[derive(Debug, clap::Args)]
pub(crate) struct EventsArgs {
    /// Events recorded per minute.
    #[arg(long, default_value_t = 1000)]
    per_minute: u64,
    /// How long to record them.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Where `sluice` is (default: beside this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Where the JSON report goes.
    #[arg(long, default_value = "bench/results/events.json")]
    out: PathBuf,
}

/// How often the poller counts.
const POLL: Duration = Duration::from_millis(20);

#[derive(Debug, Serialize)]
struct Report {
    per_minute: u64,
    occurrences: usize,
    repeats: usize,
    poll_ms: u64,
    latency_ms: crate::Percentiles,
    collector: procstat::Usage,
}

pub(crate) fn events(args: EventsArgs) -> anyhow::Result<()> {
    let (sluice, _) = crate::binaries(args.bin_dir)?;
    let work = tempfile::tempdir()?;
    let kube = FakeKube::start();
    let kubeconfig = kube.kubeconfig(work.path());
    let (grpc, http) = (free_port()?, free_port()?);
    let base = format!("http://127.0.0.1:{http}");
    let collector = Killed(
        Command::new(&sluice)
            .args(["collector", "--kube-events", "--data-dir"])
            .arg(work.path().join("collector"))
            .args(["--listen", &format!("127.0.0.1:{http}")])
            .args(["--grpc-listen", &format!("127.0.0.1:{grpc}")])
            .env("KUBECONFIG", &kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start the collector")?,
    );
    wait_for(Duration::from_secs(30), || get(&format!("{base}/healthz")).is_some())?;
    wait_for(Duration::from_secs(30), || kube.served_events().watches >= 1)?;

    // The poller: when each count was first seen.
    let seen: Arc<Mutex<Vec<(Instant, u64)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let (seen, stop, base) = (seen.clone(), stop.clone(), base.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let n = total(&base, "stream:event");
                let mut seen = seen.lock().expect("poller poisoned");
                if seen.last().is_none_or(|(_, last)| n > *last) {
                    seen.push((Instant::now(), n));
                }
                drop(seen);
                std::thread::sleep(POLL);
            }
        })
    };

    let occurrences = (args.per_minute * args.seconds / 60) as usize;
    let every = Duration::from_secs(60) / args.per_minute as u32;
    eprintln!("recording {occurrences} occurrences, one every {every:?}...");
    let mut recorded: Vec<Instant> = Vec::with_capacity(occurrences);
    let mut events: Vec<EventSpec> = Vec::new();
    let mut repeats = 0;
    let started = Instant::now();
    for i in 0..occurrences {
        let due = started + every * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        if i % 4 == 3 {
            let which = (i * 7) % events.len();
            let e = &mut events[which];
            e.count += 1;
            kube.record_event(e);
            repeats += 1;
        } else {
            let pod = format!("web-{}", i % 50);
            let e = EventSpec::warning("bench", &format!("bench-{i}"), "BackOff", &pod);
            kube.record_event(&e);
            events.push(e);
        }
        recorded.push(Instant::now());
    }
    wait_for(Duration::from_secs(120), || {
        seen.lock().expect("poller poisoned").last().is_some_and(|(_, n)| *n >= occurrences as u64)
    })?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = poller.join();
    let usage = procstat::usage(collector.0.id());
    drop(collector);

    let seen = seen.lock().expect("poller poisoned");
    let latencies: Vec<f64> = recorded
        .iter()
        .enumerate()
        .map(|(k, at)| {
            let (searchable, _) =
                seen.iter().find(|(_, n)| *n > k as u64).expect("every count was reached");
            searchable.saturating_duration_since(*at).as_secs_f64() * 1000.0
        })
        .collect();
    let report = Report {
        per_minute: args.per_minute,
        occurrences,
        repeats,
        poll_ms: POLL.as_millis() as u64,
        latency_ms: crate::Percentiles::of(latencies),
        collector: usage,
    };
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| events recorded | {} per minute for {} s: {} occurrences ({} repeats) |",
        report.per_minute, args.seconds, report.occurrences, report.repeats
    );
    let l = &report.latency_ms;
    println!(
        "| recorded → searchable | p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms (polled every {} ms) |",
        l.p50, l.p90, l.p99, l.max, report.poll_ms
    );
    println!(
        "| collector | {:.2} CPU-s, peak RSS {:.1} MiB |",
        report.collector.cpu_seconds, report.collector.peak_rss_mib
    );
    crate::write_report(&args.out, &report)
}
