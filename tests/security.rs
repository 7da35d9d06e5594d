//! TLS and per-agent tokens between `sluice-agent` and `sluice collector`, with the real
//! binaries on loopback and certificates made for the test (rcgen). Agents with a wrong token,
//! without TLS or trusting another authority deliver nothing and keep running; fixed, they
//! deliver everything exactly once; no token ever appears in a log.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::pki::make_pki;
use common::{
    Proc, acked_offset, assert_file_exactly_once, free_port, metric, start_agent,
    start_collector_with, total, wait_until,
};

const GOOD_TOKEN: &str = "good-token-0123456789abcdef";
const WRONG_TOKEN: &str = "wrong-token-0123456789abcdef";

/// An agent config in its own directory; `tls` is the CA file, if any.
fn agent(
    dir: &Path,
    scheme: &str,
    grpc: u16,
    tls: Option<&Path>,
    token: &str,
    watch: &Path,
) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("token"), format!("{token}\n")).unwrap();
    let tls = tls.map_or(String::new(), |ca| {
        format!("tls:\n  ca_file: {}\n  server_name: collector.sluice.test\n", ca.display())
    });
    let config = dir.join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            "collector: {scheme}://127.0.0.1:{grpc}\ndata_dir: {}\nnode: secure-node\nbatch_linger_ms: 50\ntoken_file: {}\nwatch:\n  - '{}'\n{tls}",
            dir.join("state").display(),
            dir.join("token").display(),
            watch.display()
        ),
    )
    .unwrap();
    config
}

fn logs(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default()
}

#[test]
fn only_agents_with_tls_and_a_known_token_deliver() {
    let work = tempfile::tempdir().unwrap();
    let pki = make_pki(work.path());
    let tokens = work.path().join("agent-tokens");
    std::fs::write(&tokens, format!("# name token\nsecure-node {GOOD_TOKEN}\n")).unwrap();
    let (grpc, http) = (free_port(), free_port());
    let data = work.path().join("collector");
    let _collector = start_collector_with(&data, grpc, http, &pki.collector_flags(&tokens));
    let base = format!("http://127.0.0.1:{http}");

    let log = work.path().join("app.log");
    let lines: Vec<String> = (0..500).map(|i| format!("secure line {i}")).collect();
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();

    let refused = [
        ("wrong-token", "https", Some(pki.ca.as_path()), WRONG_TOKEN),
        ("no-tls", "http", None, GOOD_TOKEN),
        ("other-ca", "https", Some(pki.other_ca.as_path()), GOOD_TOKEN),
    ];
    let mut agents: Vec<(PathBuf, Proc)> = Vec::new();
    for (name, scheme, ca, token) in refused {
        let dir = work.path().join(name);
        let config = agent(&dir, scheme, grpc, ca, token, &log);
        agents.push((dir.clone(), start_agent(&config, &dir)));
    }
    wait_until(Duration::from_secs(20), "the collector refuses the wrong token", || {
        metric(&base, "sluice_collector_unauthenticated_total") >= 1.0
    });
    wait_until(Duration::from_secs(20), "every refused agent logs a failed push", || {
        agents.iter().all(|(dir, _)| logs(dir).contains("push to collector failed"))
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(total(&base, "secure"), 0, "a refused agent delivered records");
    for (dir, proc) in &mut agents {
        assert!(proc.is_running(), "{} exited; see {}", proc.name, dir.display());
        assert_eq!(acked_offset(dir), 0, "{}: checkpoint moved without an ack", dir.display());
    }
    assert!(logs(&agents[0].0).contains("refused this agent's token"));
    assert!(logs(&agents[2].0).contains("UnknownIssuer"), "{}", logs(&agents[2].0));

    let good_dir = work.path().join("good");
    let config = agent(&good_dir, "https", grpc, Some(&pki.ca), GOOD_TOKEN, &log);
    let _good = start_agent(&config, &good_dir);
    wait_until(Duration::from_secs(30), "the good agent delivers", || {
        total(&base, "secure") >= 500
    });

    // The agent with the wrong token, fixed and restarted, resends all its file: the records
    // carry the same ids, so the index still holds each line once.
    let (wrong_dir, mut wrong) = agents.remove(0);
    wrong.kill9();
    std::fs::write(wrong_dir.join("token"), format!("{GOOD_TOKEN}\n")).unwrap();
    let _fixed = start_agent(&wrong_dir.join("agent.yaml"), &wrong_dir);
    let file_len = std::fs::metadata(&log).unwrap().len();
    wait_until(Duration::from_secs(30), "the fixed agent is acknowledged", || {
        acked_offset(&wrong_dir) == file_len
    });
    std::thread::sleep(Duration::from_millis(800));
    assert_file_exactly_once(&base, &log, &lines);

    let mut all_logs = std::fs::read_to_string(data.join("logs/collector.log")).unwrap();
    for dir in ["wrong-token", "no-tls", "other-ca", "good"] {
        all_logs.push_str(&logs(&work.path().join(dir)));
    }
    assert!(all_logs.contains("refused an agent"), "the collector logs refusals");
    for secret in [GOOD_TOKEN, WRONG_TOKEN] {
        assert!(!all_logs.contains(secret), "a log line shows {secret:?}");
    }
}
