//! Many clusters, one search: two "clusters" on loopback — each an agent with its own
//! `cluster` name and token, one also `sluice events` watching its Kubernetes API (the local
//! double `sluice_bench::fake_kube`, since no API server runs here) — ship over TLS to one
//! central `sluice collector`, as the chart's remote-cluster values set them up. Searches by
//! `cluster:`, and users limited to a cluster (and a namespace) see exactly their records;
//! every line and event arrives once. Each token is bound to its cluster (`clusters=`): an
//! agent with cluster-b's token that calls itself cluster-a is refused, and keeps its lines.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::kube::{EventSpec, FakeKube};
use common::pki::{SERVER_NAME, make_pki};
use common::*;

const TOKEN_A: &str = "cluster-a-token-0123456789abcdef";
const TOKEN_B: &str = "cluster-b-token-0123456789abcdef";
const ADMIN: &str = "central-admin-token-0123456789";
const TEAM_B: &str = "team-b-token-0123456789abcdef";
const PAY_A: &str = "pay-a-token-0123456789abcdef";

/// An agent of `cluster` on its own node, tailing `pods`, shipping over TLS with `token`.
fn agent(dir: &Path, cluster: &str, token: &str, grpc: u16, ca: &Path, pods: &Path) -> Proc {
    let home = dir.join(format!("agent-{cluster}"));
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join("token"), format!("{token}\n")).unwrap();
    let config = home.join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            "collector: https://127.0.0.1:{grpc}\ndata_dir: {}\ncluster: {cluster}\nnode: {cluster}-node-1\nbatch_linger_ms: 50\ntoken_file: {}\ntls:\n  ca_file: {}\n  server_name: {SERVER_NAME}\nwatch:\n  - '{}/*/*/*.log'\n",
            home.join("data").display(),
            home.join("token").display(),
            ca.display(),
            pods.display()
        ),
    )
    .unwrap();
    start_agent(&config, &home)
}

/// CRI lines of pod `ns/pod` in `pods`, stamped now.
fn pod_lines(pods: &Path, ns: &str, pod: &str, n: usize, text: &str) -> PathBuf {
    let file = pods.join(format!("{ns}_{pod}_uid-{ns}-{pod}/app/0.log"));
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.9fZ");
    let lines: String = (0..n).map(|i| format!("{now} stdout F INFO {text} {i}\n")).collect();
    std::fs::write(&file, lines).unwrap();
    file
}

fn count(base: &str, token: &str, query: &str) -> u64 {
    let response = reqwest::blocking::Client::new()
        .post(format!("{base}/api/v1/search"))
        .bearer_auth(token)
        .form(&[("q", query), ("limit", "0")])
        .send()
        .unwrap();
    assert!(response.status().is_success(), "{query}: {}", response.status());
    response.json::<serde_json::Value>().unwrap()["total"].as_u64().unwrap()
}

#[test]
fn two_clusters_ship_over_tls_to_one_collector_and_each_user_sees_their_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let tokens = dir.path().join("agent-tokens");
    std::fs::write(
        &tokens,
        format!("cluster-a {TOKEN_A} clusters=cluster-a\ncluster-b {TOKEN_B} clusters=cluster-b\n"),
    )
    .unwrap();
    let users = dir.path().join("users.yaml");
    std::fs::write(
        &users,
        format!(
            "users:\n  - {{name: ops, token: {ADMIN}, admin: true}}\n  - {{name: team-b, token: {TEAM_B}, clusters: [cluster-b], namespaces: ['*']}}\n  - {{name: pay-a, token: {PAY_A}, clusters: [cluster-a], namespaces: [pay]}}\n"
        ),
    )
    .unwrap();
    let (grpc, http) = (free_port(), free_port());
    let mut flags: Vec<&std::ffi::OsStr> = pki.collector_flags(&tokens).to_vec();
    flags.extend(["--users".as_ref(), users.as_os_str(), "--cluster".as_ref(), "central".as_ref()]);
    let _central = start_collector_with(&dir.path().join("central"), grpc, http, &flags);
    let base = format!("http://127.0.0.1:{http}");

    // Cluster A: pay and shop. Cluster B: pay too (same namespace name, another cluster).
    let pods_a = dir.path().join("a/var/log/pods");
    let pods_b = dir.path().join("b/var/log/pods");
    pod_lines(&pods_a, "pay", "api-1", 300, "order paid in a");
    pod_lines(&pods_a, "shop", "web-1", 200, "cart seen in a");
    pod_lines(&pods_b, "pay", "api-1", 150, "order paid in b");
    let _agent_a = agent(dir.path(), "cluster-a", TOKEN_A, grpc, &pki.ca, &pods_a);
    let _agent_b = agent(dir.path(), "cluster-b", TOKEN_B, grpc, &pki.ca, &pods_b);
    // Cluster-b's token on an agent that says it is cluster-a.
    let pods_x = dir.path().join("x/var/log/pods");
    pod_lines(&pods_x, "pay", "api-9", 40, "impostor line");
    let impostor_home = dir.path().join("impostor");
    let _impostor = agent(&impostor_home, "cluster-a", TOKEN_B, grpc, &pki.ca, &pods_x);

    // Cluster B's events, through `sluice events` with B's token over TLS.
    let kube = FakeKube::start();
    for i in 0..12 {
        kube.record_event(&EventSpec::warning("pay", &format!("ev-{i}"), "BackOff", "api-1"));
    }
    std::fs::write(dir.path().join("token-b"), format!("{TOKEN_B}\n")).unwrap();
    let events_dir = dir.path().join("events-b");
    std::fs::create_dir_all(&events_dir).unwrap();
    let _events = Proc {
        child: std::process::Command::new(sluice())
            .args(["events", "--cluster", "cluster-b", "--data-dir"])
            .arg(&events_dir)
            .args(["--collector", &format!("https://127.0.0.1:{grpc}")])
            .arg("--token-file")
            .arg(dir.path().join("token-b"))
            .arg("--tls-ca")
            .arg(&pki.ca)
            .args(["--tls-server-name", SERVER_NAME])
            .env("KUBECONFIG", kube.kubeconfig(dir.path()))
            .env("POD_NAME", "events-b-0")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(events_dir.join("events.log")).unwrap())
            .spawn()
            .expect("sluice events starts"),
        name: "sluice events",
    };

    wait_until(Duration::from_secs(60), "every line and event reaches the center", || {
        count(&base, ADMIN, "") == 300 + 200 + 150 + 12
    });
    // Nothing more comes: each once.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(count(&base, ADMIN, ""), 662);
    assert_eq!(count(&base, ADMIN, "cluster:cluster-a"), 500);
    assert_eq!(count(&base, ADMIN, "cluster:cluster-b"), 162);
    assert_eq!(count(&base, ADMIN, "cluster:cluster-b AND stream:event"), 12);
    assert_eq!(count(&base, ADMIN, "namespace:pay"), 300 + 150 + 12);
    assert_eq!(count(&base, ADMIN, "cluster:cluster-a AND namespace:pay"), 300);
    // Access control by cluster and namespace.
    assert_eq!(count(&base, TEAM_B, ""), 162, "team-b sees cluster-b only");
    assert_eq!(count(&base, TEAM_B, "paid"), 150);
    assert_eq!(count(&base, TEAM_B, "cluster:cluster-a"), 0);
    assert_eq!(count(&base, PAY_A, ""), 300, "pay-a sees cluster-a's pay only");
    assert_eq!(count(&base, PAY_A, "namespace:shop"), 0);
    assert_eq!(count(&base, PAY_A, "cluster:cluster-b"), 0);
    let facets = reqwest::blocking::Client::new()
        .post(format!("{base}/api/v1/facets"))
        .bearer_auth(ADMIN)
        .form(&[("q", ""), ("fields", "cluster")])
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(facets.contains("cluster-a") && facets.contains("cluster-b"), "{facets}");
    // The impostor's lines were refused, and it says why.
    assert_eq!(count(&base, ADMIN, "impostor"), 0);
    let log = std::fs::read_to_string(impostor_home.join("agent-cluster-a/agent.log")).unwrap();
    assert!(log.contains("refused records of this agent's cluster"), "{log}");
    assert!(log.contains("may not write records of cluster"), "{log}");
}
