//! Log-to-metric counters end to end: `sluice up --log-metrics` tailing pod logs, killed with
//! `kill -9` twice while lines are written, and `/metrics` ending at exactly what was written
//! (each line counted once across the restarts: the agent re-reads and resends what it had
//! not checkpointed, and the sink replays the WAL from its saved cursor).

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

const METRICS: &str = "metrics:
  - name: pay_failures_total
    help: 支付失败 lines
    query: '支付失败'
    labels: [namespace]
  - name: error_lines_total
    query: 'level:error'
    labels: [namespace, container]
  - name: orders_by_pod_total
    query: 'order'
    labels: [pod]
    max_series: 2
";

/// Series of `/metrics` by their full name with labels.
fn series(base: &str) -> BTreeMap<String, u64> {
    http_get(&format!("{base}/metrics"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(k, v)| v.parse().ok().map(|v| (k.to_owned(), v)))
        .collect()
}

struct Pod {
    ns: &'static str,
    name: &'static str,
}

const PODS: [Pod; 4] = [
    Pod { ns: "pay", name: "pay-1" },
    Pod { ns: "pay", name: "pay-2" },
    Pod { ns: "shop", name: "shop-1" },
    Pod { ns: "ops", name: "ops-1" },
];

/// Appends lines `first..first + n` to a pod's CRI file; every third is an ERROR 支付失败.
fn write_lines(pods: &Path, pod: &Pod, first: usize, n: usize) {
    let file = pods.join(format!("{}_{}_uid-{}", pod.ns, pod.name, pod.name)).join("app/0.log");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&file).unwrap();
    let mut text = String::new();
    for i in first..first + n {
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.9fZ");
        let body = match i % 3 {
            0 => format!("ERROR 支付失败 order {i}"),
            1 => format!("INFO 订单创建成功 order {i}"),
            _ => format!("WARN slow order {i}"),
        };
        text.push_str(&format!("{now} stdout F {body}\n"));
    }
    f.write_all(text.as_bytes()).unwrap();
}

#[test]
fn counts_stay_exact_across_two_kill_9s() {
    let dir = tempfile::tempdir().unwrap();
    let pods = dir.path().join("var/log/pods");
    std::fs::create_dir_all(&pods).unwrap();
    let file = dir.path().join("log-metrics.yaml");
    std::fs::write(&file, METRICS).unwrap();
    let data = dir.path().join("data");
    let watch = [format!("{}/*/*/*.log", pods.display())];
    let start = || start_up_with(&data, &watch, &["--log-metrics".as_ref(), file.as_os_str()]);
    let (mut up, mut base) = start();

    const ROUNDS: usize = 30;
    const PER_ROUND: usize = 200;
    const BURST: usize = 20_000;
    let began = Instant::now();
    let mut kills = 0;
    for round in 0..ROUNDS {
        // The rounds before a kill are large, so the kill finds batches the WAL holds but
        // the agent has not checkpointed: after the restart it sends them again.
        let n = if round == 8 || round == 20 { BURST } else { PER_ROUND };
        for pod in &PODS {
            write_lines(&pods, pod, round * BURST, n);
        }
        std::thread::sleep(Duration::from_millis(150));
        if round == 8 || round == 20 {
            up.kill9();
            kills += 1;
            (up, base) = start();
        }
    }
    assert_eq!(kills, 2);
    let lines = (ROUNDS - 2) * PER_ROUND + 2 * BURST;
    // Lines `round * BURST ..`: an ERROR where the number is a multiple of three.
    let failures: u64 = (0..ROUNDS)
        .map(|r| {
            let n = if r == 8 || r == 20 { BURST } else { PER_ROUND };
            (r * BURST..r * BURST + n).filter(|i| i % 3 == 0).count() as u64
        })
        .sum();
    let mut want = BTreeMap::new();
    for ns in ["pay", "shop", "ops"] {
        let pods_in_ns = PODS.iter().filter(|p| p.ns == ns).count() as u64;
        want.insert(format!("pay_failures_total{{namespace=\"{ns}\"}}"), failures * pods_in_ns);
        want.insert(
            format!("error_lines_total{{namespace=\"{ns}\",container=\"app\"}}"),
            failures * pods_in_ns,
        );
    }
    let counted = |s: &BTreeMap<String, u64>| -> BTreeMap<String, u64> {
        s.iter()
            .filter(|(k, _)| k.starts_with("pay_failures_total") || k.starts_with("error_lines"))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    while counted(&series(&base)) != want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    // Anything counted twice would show now, once the last resends are through.
    std::thread::sleep(Duration::from_secs(3));
    let s = series(&base);
    assert_eq!(
        counted(&s),
        want,
        "every line counted exactly once ({} s of writing, 2 kills); see {}",
        began.elapsed().as_secs(),
        dir.keep().display()
    );
    // The cap: two pods' series, the other pods' lines refused and counted as such.
    let by_pod: u64 =
        s.iter().filter(|(k, _)| k.starts_with("orders_by_pod_total{")).map(|(_, v)| v).sum();
    let refused = s["sluice_log_metrics_refused_total{metric=\"orders_by_pod_total\"}"];
    assert_eq!(s["sluice_log_metrics_series{metric=\"orders_by_pod_total\"}"], 2);
    assert_eq!(by_pod + refused, (lines * PODS.len()) as u64, "each line counted or refused");
    assert!(refused > 0);
    println!("resent records counted once: {}", s["sluice_log_metrics_duplicates_total"]);
    // The index, which dedupes by its own means, agrees.
    let indexed = failures * PODS.len() as u64;
    wait_until(Duration::from_secs(60), "the index holds every 支付失败 line", || {
        total(&base, "支付失败") == indexed
    });
}

#[test]
fn a_wrong_key_in_the_file_stops_sluice_up_with_the_key_and_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("log-metrics.yaml");
    std::fs::write(&file, "metrics:\n  - name: a_total\n    query: x\n    lables: [pod]\n")
        .unwrap();
    let out = std::process::Command::new(sluice())
        .args(["up", "--listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--watch", "/nonexistent/*.log", "--log-metrics"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("log-metrics.yaml") && err.contains("unknown field `lables`"),
        "the error names the file and the key: {err}"
    );
}
