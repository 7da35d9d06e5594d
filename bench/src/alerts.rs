//! `sluice-bench alerts`: how long a log line takes to become a DingTalk request. A `sluice up
//! --alerts` tails a directory while a background writer appends ordinary lines; every few
//! seconds a probe line that a rule matches is written to a new file, and the rule (grouped by
//! file, `group_wait: 0s`) makes a new alert of it. The DingTalk robot is the local double
//! ([`crate::fake_dingtalk`]: the real service is in the cloud), which notes when each request
//! arrived; a probe's latency is from its write to the request naming its file. Probes stay
//! under the robot's 20 a minute, so none waits for a digest.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use sluice_bench::fake_dingtalk::{FakeDingTalk, Robot};

use crate::{Killed, free_port, get, procstat, wait_for};

#[derive(Debug, clap::Args)]
pub(crate) struct AlertsArgs {
    /// Probes to write (one new alert each).
    #[arg(long, default_value_t = 30)]
    probes: usize,
    /// Seconds between probes (at least 3.2: the robot's budget is 19 a minute).
    #[arg(long, default_value_t = 3.5)]
    every: f64,
    /// Background lines a second that no rule matches.
    #[arg(long, default_value_t = 2000)]
    background: u64,
    /// Where `sluice` is (default: beside this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Where the JSON report goes.
    #[arg(long, default_value = "bench/results/alerts.json")]
    out: PathBuf,
}

#[derive(Debug, Serialize)]
struct Report {
    probes: usize,
    background_lines_per_second: u64,
    latency_ms: crate::Percentiles,
    up: procstat::Usage,
}

const TOKEN: &str = "bench-robot";
const SECRET: &str = "SECbenchsecret";

pub(crate) fn alerts(args: AlertsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.every >= 3.2, "--every below 3.2 s would exceed the robot's budget");
    let (sluice, _) = crate::binaries(args.bin_dir)?;
    let work = tempfile::tempdir()?;
    let logs = work.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    let robot = FakeDingTalk::start(
        vec![Robot { token: TOKEN.into(), secret: Some(SECRET.into()), keywords: vec![] }],
        Duration::from_secs(600),
    );
    let alerts = work.path().join("alerts.yaml");
    std::fs::write(
        &alerts,
        format!(
            "receivers:\n  - name: oncall\n    dingtalk: {{webhook: '{}', secret: '{SECRET}'}}\n\
             route: {{receiver: oncall, group_by: [rule, file], group_wait: 0s, group_interval: 1s}}\n\
             rules:\n  - {{name: probe, query: 'latency probe 支付失败', every: 1s, window: 1m, group_by: [file], when: 'count >= 1'}}\n",
            robot.webhook(TOKEN)
        ),
    )?;
    let http = free_port()?;
    let base = format!("http://127.0.0.1:{http}");
    let up = Killed(
        Command::new(&sluice)
            .args(["up", "--listen", &format!("127.0.0.1:{http}"), "--grpc-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(work.path().join("data"))
            .arg("--watch")
            .arg(format!("{}/*.log", logs.display()))
            .arg("--alerts")
            .arg(&alerts)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start sluice up")?,
    );
    wait_for(Duration::from_secs(30), || get(&format!("{base}/healthz")).is_some())?;

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, path, rate) = (stop.clone(), logs.join("busy.log"), args.background);
        std::thread::spawn(move || -> std::io::Result<()> {
            let mut f = std::fs::File::create(path)?;
            let started = Instant::now();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let due = started.elapsed().as_secs_f64() * rate as f64;
                while (n as f64) < due {
                    writeln!(
                        f,
                        "2026-12-05 10:00:00.000 INFO  [main] c.e.OrderService - 订单创建成功 order={n}"
                    )?;
                    n += 1;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(())
        })
    };

    eprintln!("writing {} probes, one every {} s...", args.probes, args.every);
    let mut written = Vec::with_capacity(args.probes);
    for i in 0..args.probes {
        let name = format!("probe-{i:04}.log");
        let mut f = std::fs::File::create(logs.join(&name))?;
        writeln!(f, "ERROR latency probe 支付失败 number {i}")?;
        written.push((name, Instant::now()));
        std::thread::sleep(Duration::from_secs_f64(args.every));
    }
    wait_for(Duration::from_secs(60), || {
        let texts: Vec<String> = robot.delivered(TOKEN).iter().map(|r| r.text()).collect();
        written.iter().all(|(name, _)| texts.iter().any(|t| t.contains(name.as_str())))
    })?;
    stop.store(true, Ordering::Relaxed);
    let _ = writer.join();
    let usage = procstat::usage(up.0.id());
    drop(up);
    anyhow::ensure!(
        robot.count_errcode(TOKEN, 0) == robot.requests().len(),
        "the robot refused a request"
    );

    let delivered = robot.delivered(TOKEN);
    let latencies: Vec<f64> = written
        .iter()
        .map(|(name, at)| {
            let request =
                delivered.iter().find(|r| r.text().contains(name.as_str())).expect("delivered");
            request.at.saturating_duration_since(*at).as_secs_f64() * 1000.0
        })
        .collect();
    let report = Report {
        probes: args.probes,
        background_lines_per_second: args.background,
        latency_ms: crate::Percentiles::of(latencies),
        up: usage,
    };
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| probes | {} new alerts, one every {} s, over {} background lines/s |",
        report.probes, args.every, report.background_lines_per_second
    );
    let l = &report.latency_ms;
    println!(
        "| line written → DingTalk request | p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms |",
        l.p50, l.p90, l.p99, l.max
    );
    println!(
        "| sluice up | {:.2} CPU-s, peak RSS {:.1} MiB |",
        report.up.cpu_seconds, report.up.peak_rss_mib
    );
    crate::write_report(&args.out, &report)
}
