//! Pod metadata from a cluster-wide pod watch, against the local Kubernetes API double in
//! `bench/src/fake_kube/` (a test double: no API server can run here) and the real Kafka
//! broker (whose JSON documents show what every sink gets): records carry their pod's labels
//! and controller; a label change reaches later records through the watch, a change the
//! watch could not deliver (history compacted: `410 Expired`) through a fresh list, and a
//! deleted pod's late lines keep its metadata; the local index filters on labels and owner.
//! `protobuf-batch` forwards the agents' blocks undecoded, with the metadata beside them.
//! Without a cluster nothing changes.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::kafka::*;
use common::kube::*;
use common::*;
use serde_json::Value;
use sluice_proto::LogRecord;

/// `prod/pay-1` (uid `u1`, a ReplicaSet's) or `dev/pay-2` (uid `u2`, a StatefulSet's), with
/// `version` as a label.
fn pod(prod: bool, version: &str) -> PodSpec<'_> {
    let (namespace, name, uid, app, owner) = if prod {
        ("prod", "pay-1", "u1", "pay", ("ReplicaSet", "pay-7d9f8"))
    } else {
        ("dev", "pay-2", "u2", "pay-dev", ("StatefulSet", "pay-dev"))
    };
    PodSpec {
        namespace,
        name,
        uid,
        labels: vec![("app", app), ("version", version)],
        node: "node-a",
        owner,
    }
}

fn pay(version: &str) -> PodSpec<'_> {
    pod(true, version)
}

fn dev(version: &str) -> PodSpec<'_> {
    pod(false, version)
}

/// The documents in `topic` whose message holds `needle`.
fn docs_with(brokers: &str, topic: &str, needle: &str) -> Vec<Value> {
    read_committed(brokers, &[topic.to_owned()])
        .iter()
        .map(|m| serde_json::from_slice::<Value>(&m.payload).unwrap())
        .filter(|d| d["message"].as_str().unwrap().contains(needle))
        .collect()
}

/// `sluice up` watching `watch`, its cluster the one `kubeconfig` names, sending to `topic`
/// in `encoding`.
fn up_with_kafka(
    dir: &std::path::Path,
    watch: &str,
    kubeconfig: &std::path::Path,
    (brokers, topic, encoding): (&str, &str, &str),
) -> (Proc, String) {
    let args = sink_args(brokers, topic, encoding);
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    start_up_with_env(
        &dir.join("data"),
        &[watch.to_owned()],
        &args,
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    )
}

#[test]
fn records_carry_their_pods_labels_and_owner_through_watch_and_relist() {
    let kube = FakeKube::start();
    kube.apply(&pay("1"));
    kube.apply(&dev("1"));
    let brokers = brokers();
    let topic = unique("meta");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kube.kubeconfig(dir.path());
    let (prod, dev_file, watch) = two_namespaces(dir.path(), 100, 100);
    let (_up, base) = up_with_kafka(dir.path(), &watch, &kubeconfig, (&brokers, &topic, "json"));
    wait_for_messages(&brokers, std::slice::from_ref(&topic), 200, Duration::from_secs(60));
    let first = docs_with(&brokers, &topic, "prod line 7 ");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0]["labels"]["app"], "pay");
    assert_eq!(first[0]["labels"]["version"], "1");
    assert_eq!(first[0]["owner"], "ReplicaSet/pay-7d9f8");
    assert_eq!(docs_with(&brokers, &topic, "dev line 107 ")[0]["owner"], "StatefulSet/pay-dev");
    assert!(metric(&base, "sluice_enrich_hits_total") >= 200.0);
    // The local index has them too, as filters.
    wait_until(Duration::from_secs(30), "200 records indexed", || total(&base, "") >= 200);
    assert_eq!(total(&base, "labels.app:pay"), 100);
    assert_eq!(total(&base, "owner:StatefulSet/pay-dev labels.version:1"), 100);
    assert_eq!(total(&base, "labels.app:pay*"), 200);

    // A label change arrives as a MODIFIED event on the open watch.
    kube.apply(&pay("2"));
    std::thread::sleep(Duration::from_secs(1));
    append(&prod, &cri_lines("prod", 10, 1_000, 2_700));
    wait_for_messages(&brokers, std::slice::from_ref(&topic), 210, Duration::from_secs(60));
    assert_eq!(docs_with(&brokers, &topic, "prod line 1005 ")[0]["labels"]["version"], "2");

    // A change compacted away before the watch saw it: the watch gets 410 Expired, the
    // collector lists again and sees it.
    let expired_before = kube.served().expired;
    let lists_before = kube.served().lists;
    kube.apply_unwatchable(&dev("3"));
    wait_until(Duration::from_secs(30), "a relist after 410 Expired", || {
        let served = kube.served();
        served.expired > expired_before && served.lists > lists_before
    });
    std::thread::sleep(Duration::from_secs(1));
    append(&dev_file, &cri_lines("dev", 10, 2_000, 2_700));
    wait_for_messages(&brokers, std::slice::from_ref(&topic), 220, Duration::from_secs(60));
    assert_eq!(docs_with(&brokers, &topic, "dev line 2005 ")[0]["labels"]["version"], "3");

    // A deleted pod's last lines still get its metadata.
    kube.delete("u1");
    std::thread::sleep(Duration::from_secs(1));
    append(&prod, &cri_lines("prod", 10, 3_000, 2_700));
    let all =
        wait_for_messages(&brokers, std::slice::from_ref(&topic), 230, Duration::from_secs(60));
    assert_eq!(all.len(), 230);
    assert_eq!(docs_with(&brokers, &topic, "prod line 3005 ")[0]["owner"], "ReplicaSet/pay-7d9f8");
    assert!(kube.served().watches >= 2, "{:?}", kube.served());
}

#[test]
fn forwarded_blocks_carry_their_pods_metadata() {
    let kube = FakeKube::start();
    kube.apply(&pay("1"));
    kube.apply(&dev("1"));
    let brokers = brokers();
    let topic = unique("blocks");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kube.kubeconfig(dir.path());
    let (_prod, _dev, watch) = two_namespaces(dir.path(), 300, 200);
    let kafka = (brokers.as_str(), topic.as_str(), "protobuf-batch");
    let (_up, base) = up_with_kafka(dir.path(), &watch, &kubeconfig, kafka);
    wait_until(Duration::from_secs(60), "500 records in Kafka", || {
        batches(&brokers, &topic).iter().map(|(_, _, r)| r.len()).sum::<usize>() >= 500
    });
    let all = batches(&brokers, &topic);
    let records: Vec<&LogRecord> = all.iter().flat_map(|(_, _, r)| r).collect();
    assert_eq!(records.len(), 500);
    // Each sink's records are counted: the local index's 500 and the forwarded 500.
    assert!(metric(&base, "sluice_enrich_hits_total") >= 1_000.0, "forwarded records count");
    assert_eq!(records.iter().map(|r| r.id()).collect::<HashSet<_>>().len(), 500);
    for (message, batch, records) in &all {
        assert!(batch.records.is_empty() && batch.zstd_blocks.len() == 1, "a block as it came");
        let pod = &records[0];
        assert_eq!(message.key.as_deref(), Some(format!("{}/{}", pod.namespace, pod.pod).as_str()));
        let (app, owner) = match pod.namespace.as_str() {
            "prod" => ("pay", "ReplicaSet/pay-7d9f8"),
            _ => ("pay-dev", "StatefulSet/pay-dev"),
        };
        for r in records {
            assert_eq!(
                (r.namespace.as_str(), r.labels["app"].as_str()),
                (pod.namespace.as_str(), app)
            );
            assert_eq!(r.owner, owner);
        }
    }
}

#[test]
fn a_wrong_token_or_no_cluster_leaves_records_as_they_are() {
    let kube = FakeKube::start();
    kube.apply(&pay("1"));
    let brokers = brokers();
    let topic = unique("nometa");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kube.kubeconfig(dir.path());
    let text = std::fs::read_to_string(&kubeconfig)
        .unwrap()
        .replace(&kube.token, "wrong-token-0123456789");
    std::fs::write(&kubeconfig, text).unwrap();
    let (_prod, _dev, watch) = two_namespaces(dir.path(), 50, 50);
    let (_up, base) = up_with_kafka(dir.path(), &watch, &kubeconfig, (&brokers, &topic, "json"));
    let all =
        wait_for_messages(&brokers, std::slice::from_ref(&topic), 100, Duration::from_secs(60));
    assert_eq!(all.len(), 100, "records flow while the watch is refused");
    let doc: Value = serde_json::from_slice(&all[0].payload).unwrap();
    assert!(doc.get("owner").is_none() && doc.get("labels").is_none(), "{doc}");
    assert!(metric(&base, "sluice_enrich_watch_errors_total") >= 1.0);
}
