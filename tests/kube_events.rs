//! Kubernetes events as records through `sluice up --kube-events`, and through `sluice events`
//! pushing to a real `sluice collector` (over TLS with a token; two replicas on a Lease),
//! against the local Kubernetes API double in `bench/src/fake_kube/` (a test double: no API
//! server can run here; it keeps the apiserver's list, watch, bookmark, `410`, paging and
//! Lease behaviour). Each
//! scenario counts the occurrences searchable afterwards, by event uid and count: every one the
//! cluster showed, each exactly once.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use common::kube::*;
use common::pki::{SERVER_NAME, make_pki};
use common::*;
use serde_json::Value;

/// The remote cluster's token at the central collector.
const TOKEN: &str = "shanghai-token-0123456789abcdef";

/// `sluice up --kube-events` for the cluster `kube` serves.
fn up(dir: &Path, kube: &FakeKube) -> (Proc, String) {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let kubeconfig = kube.kubeconfig(dir);
    start_up_with_env(
        &dir.join("data"),
        &[format!("{}/*.log", logs.display())],
        &["--kube-events".as_ref(), "--cluster".as_ref(), "c1".as_ref()],
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    )
}

/// Every event record searchable, as `(uid, count) → how many records`.
fn occurrences(base: &str) -> BTreeMap<(String, u64), usize> {
    let url = format!("{base}/api/v1/search?q=stream:event&limit=10000");
    let answer: Value = serde_json::from_str(&http_get(&url).expect("search answers")).unwrap();
    let mut seen = BTreeMap::new();
    for hit in answer["hits"].as_array().unwrap() {
        let event = &hit["event"];
        let key = (event["uid"].as_str().unwrap().to_owned(), event["count"].as_u64().unwrap());
        *seen.entry(key).or_default() += 1;
    }
    seen
}

/// Waits until exactly `expected` is searchable, then a little longer for anything extra,
/// and checks each occurrence is there once.
fn assert_exactly(base: &str, expected: &BTreeSet<(String, u64)>) {
    wait_until(Duration::from_secs(60), "every occurrence is searchable", || {
        total(base, "stream:event") as usize >= expected.len()
    });
    std::thread::sleep(Duration::from_secs(2));
    let seen = occurrences(base);
    let lost: Vec<_> = expected.iter().filter(|k| !seen.contains_key(k)).collect();
    let extra: Vec<_> = seen.keys().filter(|k| !expected.contains(k)).collect();
    let twice: usize = seen.values().map(|n| n - 1).sum();
    println!(
        "{} occurrences expected; lost {}, unexpected {}, twice {twice}",
        expected.len(),
        lost.len(),
        extra.len()
    );
    assert!(lost.is_empty() && extra.is_empty() && twice == 0, "lost {lost:?}, extra {extra:?}");
}

fn wait_for_watch(kube: &FakeKube) {
    wait_until(Duration::from_secs(30), "the source watches events", || {
        kube.served_events().watches >= 1
    });
}

#[test]
fn a_steady_stream_of_events_and_their_repeats_is_forwarded_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let kube = FakeKube::start();
    // Already there at the start: listed, at the count the cluster shows by then.
    let mut early = EventSpec::warning("shop", "early", "BackOff", "web-0");
    early.count = 4;
    kube.record_event(&early);
    let (_up, base) = up(dir.path(), &kube);
    wait_for_watch(&kube);
    let mut expected = BTreeSet::from([("early".to_owned(), 4)]);
    for i in 0..120 {
        let mut e =
            EventSpec::warning("shop", &format!("e{i}"), "BackOff", &format!("web-{}", i % 7));
        // Half recorded through events.k8s.io/v1 (an eventTime, repeats as a series), half
        // through v1 (no eventTime: `null` in the events.k8s.io view), as kubelet does.
        e.via_core = i % 2 == 0;
        for count in 1..=(1 + i as u64 % 3) {
            e.count = count;
            kube.record_event(&e);
            expected.insert((e.uid.clone(), count));
        }
        if i % 10 == 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert_exactly(&base, &expected);

    // What an event record carries, and its time from lastTimestamp when eventTime is null.
    let url =
        format!("{base}/api/v1/search?q=reason:BackOff%20object:Pod/web-2%20pod:web-2&limit=1");
    let answer: Value = serde_json::from_str(&http_get(&url).unwrap()).unwrap();
    let hit = &answer["hits"][0];
    assert_eq!(hit["stream"], "event");
    assert_eq!(hit["level"], "warn");
    assert_eq!(hit["namespace"], "shop");
    assert_eq!(hit["container"], "app");
    assert_eq!(hit["event"]["type"], "Warning");
    let early = search(&base, "stream:event event_type:Warning reason:BackOff \"event early\"", 1);
    assert_eq!(early.hits[0].ts, "2026-12-04T10:00:03.000000000Z", "lastTimestamp of count 4");
    assert_eq!(total(&base, "object_kind:Pod"), expected.len() as u64);
}

#[test]
fn watches_the_server_ends_every_few_events_are_resumed_where_they_ended() {
    let dir = tempfile::tempdir().unwrap();
    let kube = FakeKube::start_ending_watches_every(7);
    let (_up, base) = up(dir.path(), &kube);
    wait_for_watch(&kube);
    let mut expected = BTreeSet::new();
    for i in 0..150 {
        let e = EventSpec::warning("shop", &format!("w{i}"), "Unhealthy", "web-1");
        kube.record_event(&e);
        expected.insert((e.uid, 1));
    }
    assert_exactly(&base, &expected);
    let served = kube.served_events();
    assert!(served.watches >= 150 / 7, "{served:?}");
    assert_eq!(served.lists, 2, "one to choose the API, one to start: no relist {served:?}");
}

#[test]
fn an_event_repeated_thirty_times_is_thirty_occurrences_with_their_history_around_each() {
    let dir = tempfile::tempdir().unwrap();
    let kube = FakeKube::start();
    let (_up, base) = up(dir.path(), &kube);
    wait_for_watch(&kube);
    let mut e = EventSpec::warning("shop", "crashloop", "BackOff", "web-3");
    e.via_core = false;
    let mut expected = BTreeSet::new();
    for count in 1..=30 {
        e.count = count;
        kube.record_event(&e);
        expected.insert(("crashloop".to_owned(), count));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_exactly(&base, &expected);
    let fifteenth = search(&base, "stream:event \"event crashloop\"", 100)
        .hits
        .into_iter()
        .find(|h| h.ts == "2026-12-04T10:00:14.000000000Z")
        .expect("the fifteenth occurrence, at its series' last observed time");
    let url = format!("{base}/api/v1/context?id={}&before=3&after=3", fifteenth.id);
    let context: Value = serde_json::from_str(&http_get(&url).unwrap()).unwrap();
    let counts: Vec<u64> = ["before", "after"]
        .iter()
        .flat_map(|side| context[side].as_array().unwrap().iter())
        .map(|h| h["event"]["count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, [12, 13, 14, 16, 17, 18], "{context}");
}

#[test]
fn a_cluster_without_events_k8s_io_is_watched_through_v1() {
    let dir = tempfile::tempdir().unwrap();
    let kube = FakeKube::start_without_events_v1();
    let (_up, base) = up(dir.path(), &kube);
    wait_for_watch(&kube);
    let mut expected = BTreeSet::new();
    for i in 0..40 {
        let mut e = EventSpec::warning("shop", &format!("c{i}"), "FailedMount", "web-4");
        e.via_core = i % 2 == 0;
        e.count = 2;
        kube.record_event(&e);
        expected.insert((e.uid, 2));
    }
    assert_exactly(&base, &expected);
}

#[test]
fn a_kill_during_a_burst_with_changes_and_compaction_while_down_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let kube = FakeKube::start();
    let (mut up1, base) = up(dir.path(), &kube);
    wait_for_watch(&kube);
    let mut expected = BTreeSet::new();
    let first: Vec<EventSpec> =
        (0..50).map(|i| EventSpec::warning("shop", &format!("a{i}"), "BackOff", "web-5")).collect();
    for e in &first {
        kube.record_event(e);
        expected.insert((e.uid.clone(), 1));
    }
    assert_exactly(&base, &expected);

    // A burst, and the collector killed in the middle of it.
    for i in 0..50 {
        let e = EventSpec::warning("shop", &format!("b{i}"), "Pulling", "web-6");
        kube.record_event(&e);
        expected.insert((e.uid, 1));
        if i == 25 {
            up1.kill9();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // While it is down: repeats (only the last one stays visible once the history is
    // compacted), deletions of forwarded events, events created and deleted unseen.
    for e in first.iter().take(10) {
        let mut e = e.clone();
        for count in [2, 3] {
            e.count = count;
            kube.record_event(&e);
        }
        expected.insert((e.uid, 3));
    }
    for e in first.iter().skip(40) {
        kube.delete_event(&e.uid);
    }
    for i in 0..10 {
        let e = EventSpec::warning("shop", &format!("d{i}"), "Killing", "web-7");
        kube.record_event(&e);
        if i % 2 == 0 {
            kube.delete_event(&e.uid);
        } else {
            expected.insert((e.uid, 1));
        }
    }
    let expired_before = kube.served_events().expired;
    kube.compact();

    let (_up2, base) = up(dir.path(), &kube);
    assert_exactly(&base, &expected);
    let served = kube.served_events();
    assert!(served.expired > expired_before, "the resume met 410 and relisted: {served:?}");
}

/// `sluice events` for the cluster `kube` serves, pushing to the collector at `collector`, as
/// the replica `name` (its Lease identity starts with it).
fn events(dir: &Path, kube: &FakeKube, collector: &str, name: &str, extra: &[&str]) -> Proc {
    let data = dir.join(name);
    std::fs::create_dir_all(&data).unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data.join("events.log"))
        .unwrap();
    let child = std::process::Command::new(sluice())
        .args(["events", "--cluster", "c1", "--data-dir"])
        .arg(&data)
        .args(["--collector", collector])
        .args(extra)
        .env("KUBECONFIG", kube.kubeconfig(dir))
        .env("POD_NAME", name)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("sluice events starts");
    Proc { child, name: "sluice events" }
}

#[test]
fn sluice_events_pushing_to_a_collector_down_for_a_while_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let kube = FakeKube::start();
    let (grpc, http) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{http}");
    // Across the public network: TLS, and a token the central collector knows.
    let pki = make_pki(dir.path());
    let tokens = dir.path().join("agent-tokens");
    std::fs::write(&tokens, format!("shanghai {TOKEN}\n")).unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let central = dir.path().join("central");
    let secured = pki.collector_flags(&tokens);
    let mut collector = start_collector_with(&central, grpc, http, &secured);
    let collector_url = format!("https://127.0.0.1:{grpc}");
    let (ca, token_file) = (pki.ca.to_str().unwrap(), token_file.to_str().unwrap());
    let remote = ["--tls-ca", ca, "--tls-server-name", SERVER_NAME, "--token-file", token_file];
    let mut watcher = events(dir.path(), &kube, &collector_url, "remote", &remote);
    wait_for_watch(&kube);
    let mut expected = BTreeSet::new();
    let record = |e: &EventSpec, expected: &mut BTreeSet<(String, u64)>| {
        kube.record_event(e);
        expected.insert((e.uid.clone(), e.count));
    };
    for i in 0..40 {
        record(&EventSpec::warning("shop", &format!("r{i}"), "BackOff", "web-1"), &mut expected);
    }
    assert_exactly(&base, &expected);

    // The collector goes away: events go on, into the remote spool.
    collector.kill9();
    for i in 0..60 {
        let mut e = EventSpec::warning("shop", &format!("o{i}"), "Unhealthy", "web-2");
        for count in 1..=(1 + i % 3) {
            e.count = count;
            record(&e, &mut expected);
        }
        if i == 30 {
            // And the watcher itself is killed and restarted meanwhile: its spool and state
            // are on disk.
            std::thread::sleep(Duration::from_millis(300));
            watcher.kill9();
            watcher = events(dir.path(), &kube, &collector_url, "remote", &remote);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_secs(2));
    let _collector = start_collector_with(&central, grpc, http, &secured);
    for i in 0..20 {
        record(&EventSpec::warning("shop", &format!("n{i}"), "Pulled", "web-3"), &mut expected);
    }
    assert_exactly(&base, &expected);
    assert!(watcher.is_running());
    let log = std::fs::read_to_string(dir.path().join("remote/events.log")).unwrap();
    assert!(!log.contains(TOKEN), "the token is never logged");
}

#[test]
fn two_replicas_with_the_leader_killed_forward_every_occurrence_once() {
    let dir = tempfile::tempdir().unwrap();
    let kube = FakeKube::start();
    let (_collector, grpc, base) = start_test_collector(&dir.path().join("central"));
    let collector = format!("http://127.0.0.1:{grpc}");
    let (metrics_a, metrics_b) = (free_port(), free_port());
    let with_metrics = |port: u16| {
        let listen = format!("127.0.0.1:{port}");
        ["--lease", "sluice/events", "--lease-duration", "3s", "--metrics-listen"]
            .map(str::to_owned)
            .into_iter()
            .chain([listen])
            .collect::<Vec<_>>()
    };
    let (args_a, args_b) = (with_metrics(metrics_a), with_metrics(metrics_b));
    fn strs(args: &[String]) -> Vec<&str> {
        args.iter().map(String::as_str).collect()
    }
    let mut a = events(dir.path(), &kube, &collector, "replica-a", &strs(&args_a));
    let mut b = events(dir.path(), &kube, &collector, "replica-b", &strs(&args_b));
    let holder = || kube.lease_holder("sluice", "events").unwrap_or_default();
    wait_until(Duration::from_secs(30), "one replica holds the Lease", || !holder().is_empty());
    wait_for_watch(&kube);
    let first = holder();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(kube.served_events().watches, 1, "the standby does not watch");
    let leader_gauge =
        |port: u16| metric(&format!("http://127.0.0.1:{port}"), "sluice_kube_events_leader");
    let (standby_port, a_leads) = match first.starts_with("replica-a_") {
        true => (metrics_b, true),
        false => (metrics_a, false),
    };
    assert_eq!(leader_gauge(if a_leads { metrics_a } else { metrics_b }), 1.0);
    assert_eq!(leader_gauge(standby_port), 0.0);
    let mut killed_at = None;
    let mut expected = BTreeSet::new();
    for i in 0..120 {
        let mut e = EventSpec::warning("shop", &format!("l{i}"), "BackOff", "web-1");
        e.count = 1 + i as u64 % 2;
        kube.record_event(&e);
        expected.insert((e.uid, e.count));
        if i == 60 {
            // The leader dies without handing the Lease back.
            let leader = if first.starts_with("replica-a_") { &mut a } else { &mut b };
            leader.kill9();
            killed_at = Some(std::time::Instant::now());
        }
        std::thread::sleep(Duration::from_millis(40));
    }
    wait_until(Duration::from_secs(20), "the standby takes the Lease over", || holder() != first);
    println!(
        "the standby took the Lease over within {:?} of the kill",
        killed_at.unwrap().elapsed()
    );
    assert_exactly(&base, &expected);
    assert!(kube.served_events().watches >= 2, "both replicas watched, in turn");
    assert_eq!(leader_gauge(standby_port), 1.0, "the standby now leads");
    let forwarded =
        metric(&format!("http://127.0.0.1:{standby_port}"), "sluice_kube_events_forwarded_total");
    assert!(forwarded > 0.0, "the new leader forwarded");
}

#[test]
fn without_a_cluster_kube_events_stops_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(sluice())
        .args(["collector", "--kube-events", "--listen", "127.0.0.1:0", "--grpc-listen"])
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("KUBECONFIG", dir.path().join("missing-kubeconfig"))
        .env("HOME", dir.path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("sluice: no Kubernetes cluster to watch events in (KUBECONFIG"),
        "{stderr}"
    );
}
