//! The benchmark harness runs the real pipeline at a tiny size and reports every measure.
//! Real processes: `sluice-bench` drives `sluice collector` and `sluice-agent` on loopback
//! (and, for `events`, the Kubernetes API double in its library).

mod common;

use std::process::Command;

use common::{shared_testdata, sluice_agent, sluice_bench};

#[test]
fn pipeline_bench_reports_throughput_resources_and_latency() {
    sluice_agent();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pipeline.json");
    let output = Command::new(sluice_bench())
        .args(["pipeline", "--mib", "2", "--files", "4", "--probes", "3"])
        .arg("--testdata")
        .arg(shared_testdata())
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("| write → searchable p50 / p99 / max |"), "{stdout}");

    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert!(report["records"].as_u64().unwrap() > 5_000, "{report}");
    assert!(report["raw_mib"].as_f64().unwrap() >= 1.9, "{report}");
    for measure in [
        "mb_per_second",
        "records_per_second",
        "collector_mb_per_cpu_second",
        "agent_mb_per_cpu_second",
        "latency_ms_p50",
        "latency_ms_p99",
        "index_bytes",
    ] {
        assert!(report[measure].as_f64().unwrap() > 0.0, "{measure} in {report}");
    }
    for process in ["collector", "agent"] {
        assert!(report[process]["cpu_seconds"].as_f64().unwrap() > 0.0, "{report}");
        assert!(report[process]["peak_rss_mib"].as_f64().unwrap() > 1.0, "{report}");
    }
    assert!(
        report["latency_ms_p50"].as_f64().unwrap() <= report["latency_ms_p99"].as_f64().unwrap()
    );
}

#[test]
fn events_bench_reports_event_to_searchable_latency() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events.json");
    let output = Command::new(sluice_bench())
        .args(["events", "--per-minute", "1200", "--seconds", "3", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("| recorded → searchable |"), "{stdout}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(report["occurrences"], 60, "{report}");
    assert_eq!(report["repeats"], 15, "{report}");
    let latency = &report["latency_ms"];
    let p50 = latency["p50"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 <= latency["p99"].as_f64().unwrap(), "{report}");
    assert!(report["collector"]["cpu_seconds"].as_f64().unwrap() > 0.0, "{report}");
}
