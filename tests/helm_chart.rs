//! The Helm chart (`deploy/helm/sluice`), checked with a real `helm` (v4.3.2, built from the Go
//! module proxy by `scripts/test-servers helm`, cached): `helm lint` and `helm template` for the
//! defaults and each example values file; every rendered object decoded into its `k8s-openapi`
//! type and encoded again, which must give back exactly what was rendered — a misspelled field
//! (`tolerationz`) is a field the types do not know, so it does not pass silently. The agent's
//! and the alerts' files the chart renders are checked by `sluice-agent validate` and `sluice
//! alert validate`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::Deserialize;
use serde_json::Value;

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/helm/sluice")
}

fn helm(args: &[&str]) -> String {
    let out = Command::new(test_servers_tool("HELM_BIN", "helm"))
        .args(args)
        .current_dir(chart())
        .output()
        .expect("helm runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "helm {args:?}:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// `helm lint` and `helm template` with `values` (a file under examples/, or none); the
/// rendered objects, each checked against its type.
fn render(values: Option<&str>, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["template", "sluice", ".", "--namespace", "sluice"];
    let mut lint = vec!["lint", ".", "--strict"];
    if let Some(v) = values {
        args.extend(["-f", v]);
        lint.extend(["-f", v]);
    }
    args.extend(extra);
    helm(&lint);
    let text = helm(&args);
    let mut objects = Vec::new();
    for doc in yaml_serde::Deserializer::from_str(&text) {
        let value = Value::deserialize(doc).expect("rendered YAML parses");
        if value.is_null() {
            continue;
        }
        check_known(&value).unwrap_or_else(|e| panic!("{e}"));
        objects.push(value);
    }
    objects
}

/// Decodes `object` into its type and back; anything the type dropped or changed is an error.
fn check_known(object: &Value) -> Result<(), String> {
    fn round<T: serde::de::DeserializeOwned + serde::Serialize>(
        v: &Value,
    ) -> Result<Value, String> {
        let typed: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
        serde_json::to_value(typed).map_err(|e| e.to_string())
    }
    let kind = object["kind"].as_str().unwrap_or("");
    let again = match kind {
        "DaemonSet" => round::<DaemonSet>(object),
        "StatefulSet" => round::<StatefulSet>(object),
        "Deployment" => round::<Deployment>(object),
        "Service" => round::<Service>(object),
        "ConfigMap" => round::<ConfigMap>(object),
        "Secret" => round::<Secret>(object),
        "ServiceAccount" => round::<ServiceAccount>(object),
        "ClusterRole" => round::<ClusterRole>(object),
        "ClusterRoleBinding" => round::<ClusterRoleBinding>(object),
        "Role" => round::<Role>(object),
        "RoleBinding" => round::<RoleBinding>(object),
        "Pod" => round::<Pod>(object),
        "ServiceMonitor" => Ok(object.clone()),
        other => Err(format!("a kind the test does not know: {other}")),
    }
    .map_err(|e| format!("{kind} {}: {e}", object["metadata"]["name"]))?;
    let name = format!("{kind} {}", object["metadata"]["name"]);
    match first_difference(object, &again, "") {
        None => Ok(()),
        Some(path) => Err(format!(
            "{name}: {path} is not what its type knows (a misspelled or misplaced field?)"
        )),
    }
}

/// The first path where `a` and `b` differ.
fn first_difference(a: &Value, b: &Value, at: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                let here = format!("{at}.{k}");
                match y.get(k) {
                    Some(w) => {
                        if let Some(d) = first_difference(v, w, &here) {
                            return Some(d);
                        }
                    }
                    None => return Some(here),
                }
            }
            // Nested resources (a claim template) come back with their own apiVersion and kind.
            y.keys()
                .find(|k| !x.contains_key(*k) && !matches!(k.as_str(), "apiVersion" | "kind"))
                .map(|k| format!("{at}.{k} (added)"))
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (v, w))| first_difference(v, w, &format!("{at}[{i}]"))),
        _ if a == b => None,
        _ => Some(at.to_owned()),
    }
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objects.iter().find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

fn container<'a>(object: &'a Value, name: &str) -> &'a Value {
    let spec =
        if object["kind"] == "Pod" { &object["spec"] } else { &object["spec"]["template"]["spec"] };
    spec["containers"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()
}

fn args(c: &Value) -> Vec<String> {
    c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()).collect()
}

/// Runs `sluice-agent validate` on a rendered agent.yaml.
fn agent_validates(config: &str, env: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.yaml");
    std::fs::write(&file, config).unwrap();
    let out = Command::new(sluice_agent())
        .arg("validate")
        .arg(&file)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the chart's agent.yaml:\n{config}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_default_release_renders_agent_and_collector_with_known_fields() {
    let objects = render(None, &[]);
    let ds = find(&objects, "DaemonSet", "sluice-agent").expect("the agent DaemonSet");
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(spec["tolerations"][0]["operator"], "Exists", "every taint tolerated");
    assert_eq!(spec["priorityClassName"], "system-node-critical");
    let agent = container(ds, "agent");
    assert_eq!(agent["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(agent["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert_eq!(agent["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert!(args(agent).contains(&"--watch-config".to_owned()), "reloads its ConfigMap");
    let mounts = agent["volumeMounts"].as_array().unwrap();
    for path in ["/var/log/pods", "/var/log/containers"] {
        let m = mounts.iter().find(|m| m["mountPath"] == path).expect(path);
        assert_eq!(m["readOnly"], true, "{path} read-only");
    }
    let volumes = spec["volumes"].as_array().unwrap();
    assert!(
        volumes.iter().any(|v| v["hostPath"]["path"] == "/var/lib/sluice-agent"),
        "state on the node"
    );
    assert!(
        mounts.iter().all(|m| m.get("subPath").is_none()),
        "a subPath mount never sees a ConfigMap update"
    );

    let cm = find(&objects, "ConfigMap", "sluice-agent").unwrap();
    let config = cm["data"]["agent.yaml"].as_str().unwrap();
    assert!(config.contains("http://sluice-collector.sluice.svc:7281"), "{config}");
    agent_validates(config, &[]);

    let sts = find(&objects, "StatefulSet", "sluice-collector").expect("the collector");
    let claims: Vec<&str> = sts["spec"]["volumeClaimTemplates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(claims, ["wal", "index"]);
    let collector = container(sts, "collector");
    let a = args(collector);
    assert!(
        a.contains(&"--kube-events".to_owned())
            && a.contains(&"--kube-events-lease=sluice-events".to_owned()),
        "{a:?}"
    );
    assert!(a.contains(&"--grpc-listen=0.0.0.0:7281".to_owned()), "{a:?}");
    assert_eq!(collector["securityContext"]["runAsNonRoot"], true);
    let service = find(&objects, "Service", "sluice-collector").unwrap();
    let ports: Vec<i64> = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_i64().unwrap())
        .collect();
    assert_eq!(ports, [7280, 7281, 4317]);
    let role = find(&objects, "ClusterRole", "sluice").unwrap();
    assert_eq!(role["rules"][0]["resources"], serde_json::json!(["pods", "events"]));
    let leases = find(&objects, "Role", "sluice-leases").unwrap();
    assert_eq!(leases["rules"][0]["verbs"], serde_json::json!(["get", "create", "update"]));
    assert!(
        find(&objects, "ServiceMonitor", "sluice-collector").is_none(),
        "no CRD, no ServiceMonitor"
    );

    let with_crd = render(None, &["--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"]);
    let sm =
        find(&with_crd, "ServiceMonitor", "sluice-collector").expect("made when the CRD exists");
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
}

#[test]
fn a_remote_cluster_ships_agents_and_events_over_tls_with_a_token() {
    let objects = render(Some("examples/remote-values.yaml"), &[]);
    assert!(find(&objects, "StatefulSet", "sluice-collector").is_none(), "no collector there");
    let cm = find(&objects, "ConfigMap", "sluice-agent").unwrap();
    let config = cm["data"]["agent.yaml"].as_str().unwrap();
    for want in ["https://sluice.example.com:7281", "cluster: cluster-b", "token_file:", "ca_file:"]
    {
        assert!(config.contains(want), "{want}: {config}");
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, "placeholder").unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "cluster-b-token-0123456789abcdef\n").unwrap();
    // The files the pod mounts from Secrets, here.
    let local = config
        .replace("/etc/sluice/ca/ca.crt", ca.to_str().unwrap())
        .replace("/var/run/secrets/sluice/token", token.to_str().unwrap());
    agent_validates(&local, &[]);
    let events = find(&objects, "Deployment", "sluice-events").expect("the events forwarder");
    assert_eq!(events["spec"]["replicas"], 2);
    let a = args(container(events, "events"));
    for want in [
        "events",
        "--collector=https://sluice.example.com:7281",
        "--cluster=cluster-b",
        "--lease=sluice-events",
        "--token-file=/var/run/secrets/sluice/token",
        "--tls-ca=/etc/sluice/ca/ca.crt",
    ] {
        assert!(a.contains(&want.to_owned()), "{want}: {a:?}");
    }
}

#[test]
fn the_central_release_takes_remote_clusters_and_alerts() {
    let objects = render(Some("examples/central-values.yaml"), &[]);
    let sts = find(&objects, "StatefulSet", "sluice-collector").unwrap();
    let a = args(container(sts, "collector"));
    for want in [
        "--tls-cert=/etc/sluice/tls/tls.crt",
        "--agent-tokens=/etc/sluice/agent-tokens/tokens",
        "--users=/etc/sluice/users/users.yaml",
        "--alerts=/etc/sluice/alerts/alerts.yaml",
        "--cluster=cluster-a",
    ] {
        assert!(a.contains(&want.to_owned()), "{want}: {a:?}");
    }
    assert_eq!(find(&objects, "Service", "sluice-ingest").unwrap()["spec"]["type"], "LoadBalancer");
    let tokens = find(&objects, "Secret", "sluice-agent-tokens").unwrap();
    let lines = tokens["stringData"]["tokens"].as_str().unwrap();
    assert!(
        lines.contains("cluster-b replace-with-a-long-random-token-b clusters=cluster-b\n"),
        "{lines}"
    );
    // The alerts file the chart renders is one `sluice alert validate` accepts.
    let alerts = find(&objects, "ConfigMap", "sluice-alerts").unwrap()["data"]["alerts.yaml"]
        .as_str()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("alerts.yaml"), alerts).unwrap();
    std::fs::write(dir.path().join("dingtalk.secret"), "SECnot-a-real-one\n").unwrap();
    let out = Command::new(sluice())
        .args(["alert", "validate"])
        .arg(dir.path().join("alerts.yaml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{alerts}\n{}", String::from_utf8_lossy(&out.stderr));
    let cm = find(&objects, "ConfigMap", "sluice-agent").unwrap();
    assert!(
        cm["data"]["agent.yaml"]
            .as_str()
            .unwrap()
            .contains("https://sluice-collector.sluice.svc:7281")
    );
}

#[test]
fn the_sidecar_example_is_an_app_pod_with_the_agent_beside_it() {
    let objects = render(Some("examples/sidecar-values.yaml"), &[]);
    let pod = find(&objects, "Pod", "sluice-sidecar-example").expect("the example pod");
    let app = container(pod, "app");
    let agent = container(pod, "sluice-agent");
    let shared =
        |c: &Value| c["volumeMounts"].as_array().unwrap().iter().any(|m| m["name"] == "logs");
    assert!(shared(app) && shared(agent), "one emptyDir, both containers");
    assert_eq!(agent["securityContext"]["runAsNonRoot"], true);
    let cm = find(&objects, "ConfigMap", "sluice-sidecar-agent").unwrap();
    let config = cm["data"]["agent.yaml"].as_str().unwrap();
    agent_validates(
        config,
        &[("POD_NAMESPACE", "shop"), ("POD_NAME", "web-1"), ("POD_UID", "u-1")],
    );
}

/// The check itself: a misspelled field in a rendered object is caught.
#[test]
fn a_misspelled_field_does_not_pass() {
    let objects = render(None, &[]);
    let mut ds = find(&objects, "DaemonSet", "sluice-agent").unwrap().clone();
    let spec = ds["spec"]["template"]["spec"].as_object_mut().unwrap();
    let tolerations = spec.remove("tolerations").unwrap();
    spec.insert("tolerationz".to_owned(), tolerations);
    let err = check_known(&ds).unwrap_err();
    assert!(err.contains(".spec.template.spec.tolerationz"), "{err}");
    let mut svc = find(&objects, "Service", "sluice-collector").unwrap().clone();
    svc["spec"]["ports"][0]["prot"] = serde_json::json!(80);
    assert!(check_known(&svc).unwrap_err().contains("prot"));
}
