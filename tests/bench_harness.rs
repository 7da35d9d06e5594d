//! The benchmark harness runs the real pipeline at a tiny size and reports every measure.
//! Real processes: `sluice-bench` drives `sluice collector` and `sluice-agent` on loopback
//! (and, for `events`, the Kubernetes API double in its library; for `search`, the real
//! OpenSearch node of `scripts/test-servers`, at `OPENSEARCH_URL`).

mod common;

use std::process::Command;

use common::{shared_testdata, sluice_agent, sluice_bench};

/// Runs `sluice-bench` with `args` (the shared testdata when `testdata`), writing its report
/// to a temporary file; returns what it printed and the report.
fn bench(args: &[&str], testdata: bool) -> (String, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.json");
    let mut command = Command::new(sluice_bench());
    command.args(args).arg("--out").arg(&out);
    if testdata {
        command.arg("--testdata").arg(shared_testdata());
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let report = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    (stdout, report)
}

#[test]
fn pipeline_bench_reports_throughput_resources_and_latency() {
    sluice_agent();
    let (stdout, report) =
        bench(&["pipeline", "--mib", "2", "--files", "4", "--probes", "3"], true);
    assert!(stdout.contains("| write → searchable p50 / p99 / max |"), "{stdout}");
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

/// The comparison the search bench exists for: the same questions put to Sluice's index and
/// to OpenSearch fed by the same collector, with hits that agree (and, for the Chinese
/// phrases, agree with grep).
#[test]
fn search_bench_puts_each_question_to_sluice_and_opensearch() {
    sluice_agent();
    let opensearch = std::env::var("OPENSEARCH_URL").expect(
        "OPENSEARCH_URL is not set: run `bash scripts/test-servers start` and export its `env` (scripts/test does)",
    );
    let (stdout, report) = bench(
        &["search", "--mib", "2", "--files", "2", "--runs", "3", "--opensearch", &opensearch],
        true,
    );
    assert!(stdout.contains("OpenSearch, force-merged"), "{stdout}");
    assert!(report["opensearch"]["index_bytes"].as_u64().unwrap() > 0, "{report}");
    let queries = report["queries"].as_array().unwrap();
    assert_eq!(queries.len(), 7, "{report}");
    for q in queries {
        let ours = q["hits_total"].as_u64().unwrap();
        assert!(ours > 0, "{q}");
        assert!(q["p50_ms"].as_f64().unwrap() > 0.0, "{q}");
        assert!(q["opensearch"]["p50_ms"].as_f64().unwrap() > 0.0, "{q}");
        let name = q["name"].as_str().unwrap();
        // The standard tokenizer keeps `user_info` whole where Sluice finds `info` in it, so
        // only the common term may count differently.
        if name != "common term" {
            assert_eq!(q["opensearch"]["hits_total"].as_u64().unwrap(), ours, "{q}");
        }
        if let Some(grep) = q["grep_lines"].as_u64() {
            assert_eq!(grep, ours, "{q}");
        }
    }
    assert!(queries.iter().filter(|q| q["grep_lines"].is_u64()).count() == 2, "{report}");
}

#[test]
fn events_bench_reports_event_to_searchable_latency() {
    let (stdout, report) = bench(&["events", "--per-minute", "1200", "--seconds", "3"], false);
    assert!(stdout.contains("| recorded → searchable |"), "{stdout}");
    assert_eq!(report["occurrences"], 60, "{report}");
    assert_eq!(report["repeats"], 15, "{report}");
    let latency = &report["latency_ms"];
    let p50 = latency["p50"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 <= latency["p99"].as_f64().unwrap(), "{report}");
    assert!(report["collector"]["cpu_seconds"].as_f64().unwrap() > 0.0, "{report}");
}
