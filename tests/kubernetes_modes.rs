//! The two ways the agent runs in Kubernetes, with real `sluice-agent` and `sluice collector`
//! processes: as a DaemonSet reading `/var/log/pods` with namespace and pod selection, and as
//! a sidecar that learns its pod from Downward-API environment variables.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn daemonset_selection_and_sidecar_identity() {
    let dir = tempfile::tempdir().unwrap();
    let (_collector, grpc, base) = start_test_collector(&dir.path().join("collector"));

    let pods = dir.path().join("var/log/pods");
    for (pod_dir, container) in [
        ("prod_order-1_u1", "app"),
        ("kube-system_order-9_u2", "app"),
        ("prod_nginx-1_u3", "web"),
        ("dev_pay-2_u4", "app"),
        ("dev_pay-3_u5", "istio-proxy"),
    ] {
        let file = pods.join(pod_dir).join(container).join("0.log");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(
            &file,
            format!("2026-11-24T01:00:00.000000001Z stdout F line of {pod_dir}/{container}\n"),
        )
        .unwrap();
    }
    let node_dir = dir.path().join("node-agent");
    let config = write_agent_config_with(
        &node_dir,
        grpc,
        &[format!("{}/*/*/*.log", pods.display())],
        "select:\n  namespaces:\n    exclude: ['kube-*']\n  pods:\n    include: ['order-*', 'pay-*']\n  containers:\n    exclude: [istio-proxy]\n",
    );
    let _node_agent = start_agent(&config, &node_dir);

    let shared = dir.path().join("shared-volume");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(shared.join("app.log"), "INFO from the sidecar's pod\n").unwrap();
    let sidecar_dir = dir.path().join("sidecar-agent");
    let config = write_agent_config_with(
        &sidecar_dir,
        grpc,
        &[format!("{}/*.log", shared.display())],
        "pod:\n  namespace: ${POD_NAMESPACE}\n  name: ${POD_NAME}\n  uid: ${POD_UID}\n  container: app\n",
    );
    let _sidecar = Proc {
        child: Command::new(sluice_agent())
            .arg("--config")
            .arg(&config)
            .env("POD_NAMESPACE", "billing")
            .env("POD_NAME", "invoice-5c7d")
            .env("POD_UID", "9a8b7c6d")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        name: "sidecar sluice-agent",
    };

    wait_until(Duration::from_secs(30), "3 records arrive", || total(&base, "") >= 3);
    std::thread::sleep(Duration::from_secs(2));
    let mut got: Vec<(String, String, String)> = search(&base, "", 100)
        .hits
        .into_iter()
        .map(|h| (h.namespace, h.pod, h.container))
        .collect();
    got.sort();
    let want =
        [("billing", "invoice-5c7d", "app"), ("dev", "pay-2", "app"), ("prod", "order-1", "app")];
    assert_eq!(got, want.map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned())));
    assert_eq!(total(&base, "sidecar"), 1);
}
