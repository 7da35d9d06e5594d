//! `sluice dash`: the built-in dashboards lint clean and render byte-identically; broken files
//! are refused with the file and the place named; rendered Grafana JSON type-checks against
//! Grafana's published types (`@grafana/schema` from npm, with the `tsc` the search page
//! builds with — `scripts/test` installs both); KubeSphere objects fit the CRD's schema
//! (`tests/fixtures/kubesphere`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::sluice;
use serde_json::Value;

fn builtin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/builtin")
}

fn dash(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(sluice()).arg("dash").args(args).output().expect("sluice dash runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn render(dir: &Path, target: &str, out: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<&std::ffi::OsStr> =
        vec!["render".as_ref(), dir.as_os_str(), "--target".as_ref(), target.as_ref()];
    args.extend(["--out".as_ref(), out.as_os_str()]);
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    dash(&args)
}

/// A dashboard with every panel type and both kinds of variable, beside the built-ins.
const EVERY_PANEL: &str = r#"
apiVersion: sluice.dev/v1
kind: Dashboard
name: every-panel
title: Every panel
time: 3h
variables:
  - {name: namespace, field: namespace, multi: true}
  - {name: env, values: [prod, staging]}
rows:
  - title: Logs
    panels:
      - {type: volume, query: 'namespace:$namespace'}
      - {type: errors, query: '支付失败'}
      - {type: top, field: labels.app, limit: 5}
  - title: Streams
    panels:
      - {type: logs, query: '"db timeout" -level:debug', limit: 50, width: 12}
      - {type: events, query: 'reason:BackOff', width: 12}
  - title: Metrics
    panels:
      - {type: metric, promql: 'sum(rate(sluice_agent_lines_read_total[$__rate_interval]))', legend: lines}
      - {type: metric, log_metric: pay_failures_total}
      - {type: markdown, content: '**bold**'}
monitors:
  - rule: pod-errors
  - inline: {name: quiet, query: 'level:error', every: 1m, window: 5m, when: 'count == 0'}
"#;

const LOG_METRICS: &str =
    "metrics:\n  - name: pay_failures_total\n    query: '支付失败'\n    labels: [namespace]\n";
const ALERTS: &str = "route: {receiver: r}\nreceivers: [{name: r, webhook: {url: 'http://127.0.0.1:9/'}}]\nrules:\n  - {name: pod-errors, query: 'level:error', every: 10s, window: 1m, when: 'count >= 5'}\n";

/// The built-ins and [`EVERY_PANEL`] in one directory, with the files they refer to.
fn workspace() -> (tempfile::TempDir, PathBuf, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let dashboards = dir.path().join("dashboards");
    std::fs::create_dir_all(&dashboards).unwrap();
    for entry in std::fs::read_dir(builtin()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dashboards.join(path.file_name().unwrap())).unwrap();
    }
    std::fs::write(dashboards.join("every-panel.yaml"), EVERY_PANEL).unwrap();
    std::fs::write(dir.path().join("log-metrics.yaml"), LOG_METRICS).unwrap();
    std::fs::write(dir.path().join("alerts.yaml"), ALERTS).unwrap();
    let refs = vec![
        "--log-metrics".to_owned(),
        dir.path().join("log-metrics.yaml").display().to_string(),
        "--alerts".to_owned(),
        dir.path().join("alerts.yaml").display().to_string(),
    ];
    (dir, dashboards, refs)
}

#[test]
fn builtins_lint_clean_and_render_the_same_bytes_every_time() {
    let out = dash(&["lint".as_ref(), builtin().as_os_str()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("4 dashboards, no problems"));
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for out_dir in [&a, &b] {
        let out = render(&builtin(), "grafana", out_dir, &[]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let mut names: Vec<String> = std::fs::read_dir(&a)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "alerts-overview.json",
            "kubernetes-warnings.json",
            "log-volume.json",
            "pipeline-health.json"
        ]
    );
    for name in &names {
        let (x, y) = (std::fs::read(a.join(name)).unwrap(), std::fs::read(b.join(name)).unwrap());
        assert_eq!(x, y, "{name} renders byte-identically");
        let json: Value = serde_json::from_slice(&x).unwrap();
        assert_eq!(json["uid"], format!("sluice-{}", name.trim_end_matches(".json")));
        for panel in json["panels"].as_array().unwrap() {
            if panel["type"] != "row" && panel["type"] != "text" {
                let uid = panel["datasource"]["uid"].as_str().unwrap();
                assert!(uid == "${logs}" || uid == "${metrics}", "{name}: {panel}");
            }
        }
    }
}

#[test]
fn broken_files_are_refused_naming_the_file_and_the_place() {
    let (dir, dashboards, refs) = workspace();
    let broken = [
        (
            "typo.yaml",
            "apiVersion: sluice.dev/v1\nkind: Dashboard\nname: typo\ntitel: x\nrows: []\n",
            "unknown field `titel`",
        ),
        (
            "version.yaml",
            "apiVersion: sluice.dev/v9\nkind: Dashboard\nname: version\ntitle: x\nrows: [{title: r, panels: [{type: logs}]}]\n",
            "apiVersion: \"sluice.dev/v9\" is not \"sluice.dev/v1\"",
        ),
        (
            "query.yaml",
            "apiVersion: sluice.dev/v1\nkind: Dashboard\nname: query\ntitle: x\nrows: [{title: r, panels: [{type: logs, title: L, query: 'level:'}]}]\n",
            "rows[0].panels[0] (L).query:",
        ),
        (
            "variable.yaml",
            "apiVersion: sluice.dev/v1\nkind: Dashboard\nname: variable\ntitle: x\nrows: [{title: r, panels: [{type: volume, title: V, query: 'namespace:$nope'}]}]\n",
            "query: $nope is not a variable of this dashboard",
        ),
        (
            "field.yaml",
            "apiVersion: sluice.dev/v1\nkind: Dashboard\nname: field\ntitle: x\nrows: [{title: r, panels: [{type: top, title: T, field: message}]}]\n",
            "(T).field: \"message\" is not a keyword field",
        ),
        (
            "promql.yaml",
            "apiVersion: sluice.dev/v1\nkind: Dashboard\nname: promql\ntitle: x\nrows: [{title: r, panels: [{type: metric, title: M, promql: 'rate(x[5m]'}]}]\n",
            "(M).promql:",
        ),
        (
            "range.yaml",
            "apiVersion: sluice.dev/v1\nkind: Dashboard\nname: range\ntitle: x\nrows: [{title: r, panels: [{type: logs, title: R, query: 'offset:[1 TO 5]'}]}]\n",
            "ranges do not translate",
        ),
        (
            "metric.yaml",
            "apiVersion: sluice.dev/v1\nkind: Dashboard\nname: metric\ntitle: x\nrows: [{title: r, panels: [{type: metric, title: M, log_metric: nope_total}]}]\n",
            "no metric \"nope_total\" in the log metrics file",
        ),
        (
            "keys.yaml",
            "apiVersion: sluice.dev/v1\nkind: Dashboard\nname: keys\ntitle: x\nrows: [{title: r, panels: [{type: logs, title: K, promql: up}]}]\n",
            "(K).promql: a logs panel takes no promql",
        ),
        (
            "rule.yaml",
            "apiVersion: sluice.dev/v1\nkind: Dashboard\nname: rule\ntitle: x\nrows: [{title: r, panels: [{type: logs}]}]\nmonitors: [{rule: nope}]\n",
            "monitors[0].rule: no rule \"nope\" in the alerts file",
        ),
        (
            "inline.yaml",
            "apiVersion: sluice.dev/v1\nkind: Dashboard\nname: inline\ntitle: x\nrows: [{title: r, panels: [{type: logs}]}]\nmonitors: [{inline: {name: q, query: x, every: 1m, window: 90s, when: 'count > 1'}}]\n",
            "monitors[0].inline: (q).window: a multiple of every",
        ),
    ];
    for (file, body, _) in &broken {
        std::fs::write(dashboards.join(file), body).unwrap();
    }
    let mut args: Vec<&std::ffi::OsStr> = vec!["lint".as_ref(), dashboards.as_os_str()];
    args.extend(refs.iter().map(std::ffi::OsStr::new));
    let out = dash(&args);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    for (file, _, want) in &broken {
        let line = err
            .lines()
            .find(|l| l.contains(file))
            .unwrap_or_else(|| panic!("{file} is named: {err}"));
        assert!(line.contains(want), "{file}: want {want:?} in {line:?}");
    }
    assert!(err.contains("typo.yaml: unknown field `titel`") && err.contains("line 4"), "{err}");
    assert!(
        !err.contains("every-panel.yaml") && !err.contains("pipeline-health"),
        "only the broken files: {err}"
    );
    assert!(err.contains(&format!("sluice: {} problems", broken.len())), "{err}");
    // Render refuses what lint refuses.
    let out = render(&dashboards, "grafana", &dir.path().join("out"), &[]);
    assert!(!out.status.success() && !dir.path().join("out/typo.json").exists());
}

/// `tsc --noEmit --strict` over each JSON as a `Dashboard` object literal, so an unknown key or a
/// wrong type anywhere Grafana's types reach is an error.
fn type_check(jsons: &[(String, String)]) -> Output {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("query/web");
    let tsc = web.join("node_modules/.bin/tsc");
    let types = web.join("node_modules/@grafana/schema/dist/types/index.d.ts");
    assert!(tsc.exists() && types.exists(), "run `npm ci` in query/web (scripts/test does)");
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (name, json) in jsons {
        let path = dir.path().join(format!("{name}.ts"));
        std::fs::write(
            &path,
            format!("import type {{ Dashboard }} from '@grafana/schema';\n\nexport const dashboard: Dashboard = {json};\n"),
        )
        .unwrap();
        files.push(path);
    }
    let config = serde_json::json!({
        "compilerOptions": {
            "strict": true, "noEmit": true, "target": "es2022", "module": "es2022",
            "moduleResolution": "bundler", "skipLibCheck": true,
            "paths": {"@grafana/schema": [types.display().to_string()]},
        },
        "files": files,
    });
    std::fs::write(dir.path().join("tsconfig.json"), config.to_string()).unwrap();
    Command::new(tsc).arg("-p").arg(dir.path().join("tsconfig.json")).output().unwrap()
}

#[test]
fn rendered_grafana_json_type_checks_against_grafana_schema() {
    let (dir, dashboards, refs) = workspace();
    let out_dir = dir.path().join("grafana");
    let extra: Vec<&str> = refs.iter().map(String::as_str).collect();
    let out = render(&dashboards, "grafana", &out_dir, &extra);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let jsons: Vec<(String, String)> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_stem().unwrap().to_string_lossy().replace('-', "_");
            (name, std::fs::read_to_string(&path).unwrap())
        })
        .collect();
    assert_eq!(jsons.len(), 5);
    let every: Value =
        serde_json::from_str(&jsons.iter().find(|(n, _)| n == "every_panel").unwrap().1).unwrap();
    let exprs: Vec<&str> = every["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["targets"][0]["expr"].as_str())
        .collect();
    assert!(
        exprs.contains(&"sum by (namespace) (rate(pay_failures_total[$__rate_interval]))"),
        "{exprs:?}"
    );
    let queries: Vec<&str> = every["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["targets"][0]["query"].as_str())
        .collect();
    assert!(queries.contains(&"level:\"error\" AND message:\"支付失败\""), "{queries:?}");
    assert!(queries.contains(&"_exists_:event.reason AND event.reason:\"BackOff\""), "{queries:?}");
    let out = type_check(&jsons);
    assert!(out.status.success(), "tsc: {}{}", text(&out.stdout), text(&out.stderr));
    // The check can fail: a misspelled key, and a wrong type, are each caught.
    let base: Value = serde_json::from_str(&jsons[0].1).unwrap();
    let mut key = base.clone();
    key["titel"] = Value::String("x".into());
    let mut kind = base;
    kind["panels"][0]["gridPos"]["w"] = Value::String("wide".into());
    for (name, wrong, want) in [
        ("key", key, "'\"titel\"' does not exist in type 'Dashboard'"),
        ("kind", kind, "Type 'string' is not assignable to type 'number'"),
    ] {
        let out = type_check(&[(name.into(), wrong.to_string())]);
        let said = text(&out.stdout);
        assert!(!out.status.success() && said.contains(want), "{name}: {said}");
    }
}

/// Every key of `value` is a property of `schema` (the CRD's structural schema would prune it
/// silently otherwise) and every value has the schema's type.
fn fits(value: &Value, schema: &Value, at: &str, problems: &mut Vec<String>) {
    let kind = schema["type"].as_str().unwrap_or("");
    let ok = match value {
        Value::Object(map) => {
            for (k, v) in map {
                match schema["properties"].get(k) {
                    Some(s) => fits(v, s, &format!("{at}.{k}"), problems),
                    None => problems.push(format!("{at}.{k}: not in the schema")),
                }
            }
            kind == "object"
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                fits(v, &schema["items"], &format!("{at}[{i}]"), problems);
            }
            kind == "array"
        }
        Value::String(_) => kind == "string",
        Value::Bool(_) => kind == "boolean",
        Value::Number(n) => kind == "number" || (kind == "integer" && n.is_i64()),
        Value::Null => false,
    };
    if !ok {
        problems.push(format!("{at}: {value} is not of type {kind:?}"));
    }
}

#[test]
fn kubesphere_objects_fit_the_crd_and_say_what_they_leave_out() {
    let (dir, dashboards, refs) = workspace();
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/kubesphere/dashboard-v1alpha2-spec.json"),
        )
        .unwrap(),
    )
    .unwrap();
    for namespace in [Some("monitoring"), None] {
        let out_dir = dir.path().join(namespace.unwrap_or("cluster"));
        let mut extra: Vec<&str> = refs.iter().map(String::as_str).collect();
        if let Some(ns) = namespace {
            extra.extend(["--namespace", ns]);
        }
        let out = render(&dashboards, "kubesphere", &out_dir, &extra);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let warnings = text(&out.stderr);
        assert!(
            warnings.contains(
                "warning: log-volume: rows[0].panels[0] (Lines by level): a volume panel reads logs"
            ),
            "{warnings}"
        );
        let object: Value = yaml_serde::from_str(
            &std::fs::read_to_string(out_dir.join("every-panel.yaml")).unwrap(),
        )
        .unwrap();
        assert_eq!(object["apiVersion"], "monitoring.kubesphere.io/v1alpha2");
        assert_eq!(
            object["kind"],
            if namespace.is_some() { "Dashboard" } else { "ClusterDashboard" }
        );
        assert_eq!(object["metadata"]["name"], "sluice-every-panel");
        let types: Vec<&str> = object["spec"]["panels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["row", "row", "row", "graph", "graph", "text"]);
        for entry in std::fs::read_dir(&out_dir).unwrap() {
            let path = entry.unwrap().path();
            let object: Value =
                yaml_serde::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let mut problems = Vec::new();
            fits(&object["spec"], &schema, "spec", &mut problems);
            assert!(problems.is_empty(), "{}: {problems:?}", path.display());
        }
    }
    // The check can fail.
    let mut problems = Vec::new();
    fits(
        &serde_json::json!({"panels": [{"gridPos": {}, "id": "one"}]}),
        &schema,
        "spec",
        &mut problems,
    );
    assert_eq!(problems.len(), 2, "{problems:?}");
}

/// The README's dashboard and log metrics examples lint clean together.
#[test]
fn the_readme_examples_lint_clean() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let blocks: Vec<&str> =
        readme.split("```yaml\n").skip(1).filter_map(|b| b.split("```").next()).collect();
    let find = |start: &str| {
        *blocks
            .iter()
            .find(|b| b.starts_with(start))
            .unwrap_or_else(|| panic!("README has a {start:?} example"))
    };
    let dir = tempfile::tempdir().unwrap();
    let (dashboard, metrics, alerts) = (
        dir.path().join("payments.yaml"),
        dir.path().join("metrics.yaml"),
        dir.path().join("alerts.yaml"),
    );
    std::fs::write(&dashboard, find("apiVersion: sluice.dev/v1")).unwrap();
    std::fs::write(&metrics, find("metrics:\n  - name: pay_failures_total")).unwrap();
    std::fs::write(&alerts, ALERTS).unwrap();
    let out = dash(&[
        "lint".as_ref(),
        dashboard.as_os_str(),
        "--log-metrics".as_ref(),
        metrics.as_os_str(),
        "--alerts".as_ref(),
        alerts.as_os_str(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// `sluice up --dashboards`: a broken file stops the start, naming it; good ones are served
/// beside the built-ins to every user, and only users who may read metrics reach Prometheus.
#[test]
fn sluice_up_serves_the_dashboards_and_guards_the_prometheus_proxy() {
    use common::{ADMIN_TOKEN, DEV_TOKEN, start_up_with, write_users};
    let dir = tempfile::tempdir().unwrap();
    let dashboards = dir.path().join("dashboards");
    std::fs::create_dir_all(&dashboards).unwrap();
    std::fs::write(dashboards.join("typo.yaml"), "apiVersion: sluice.dev/v1\ntitel: x\n").unwrap();
    let out = Command::new(sluice())
        .args(["up", "--listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("refused"))
        .args(["--watch", "/nonexistent/*.log", "--dashboards"])
        .arg(&dashboards)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("typo.yaml: unknown field `titel`"),
        "{}",
        text(&out.stderr)
    );

    std::fs::remove_file(dashboards.join("typo.yaml")).unwrap();
    std::fs::write(
        dashboards.join("mine.yaml"),
        "apiVersion: sluice.dev/v1\nkind: Dashboard\nname: pipeline-health\ntitle: Mine\nrows: [{title: r, panels: [{type: logs}]}]\n",
    )
    .unwrap();
    let users = write_users(dir.path());
    let start = |extra: &[&std::ffi::OsStr]| {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "--users".as_ref(),
            users.as_os_str(),
            "--dashboards".as_ref(),
            dashboards.as_os_str(),
        ];
        args.extend(extra);
        std::process::Command::new(sluice())
            .args(["up", "--listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("clash"))
            .args(["--watch", "/nonexistent/*.log"])
            .args(&args)
            .output()
            .unwrap()
    };
    let out = start(&[]);
    assert!(
        text(&out.stderr).contains("name: \"pipeline-health\" is the name of another dashboard"),
        "a name the built-ins use is refused: {}",
        text(&out.stderr)
    );
    std::fs::write(
        dashboards.join("mine.yaml"),
        "apiVersion: sluice.dev/v1\nkind: Dashboard\nname: mine\ntitle: Mine\nrows: [{title: r, panels: [{type: logs}]}]\n",
    )
    .unwrap();
    let (_up, base) = start_up_with(
        &dir.path().join("data"),
        &["/nonexistent/*.log".to_owned()],
        &["--users".as_ref(), users.as_os_str(), "--dashboards".as_ref(), dashboards.as_os_str()],
    );
    let client = reqwest::blocking::Client::new();
    let get = |path: &str, token: &str| {
        let r = client.get(format!("{base}{path}")).bearer_auth(token).send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    let (status, list) = get("/api/v1/dashboards", DEV_TOKEN);
    assert_eq!(status, 200);
    for name in ["pipeline-health", "log-volume", "kubernetes-warnings", "alerts-overview", "mine"]
    {
        assert!(list.contains(&format!("\"name\":\"{name}\"")), "{name} in {list}");
    }
    let range = "/api/v1/dashboards/query_range?query=up&start=0&end=60&step=15";
    let (status, body) = get(range, DEV_TOKEN);
    assert_eq!(status, 403, "{body}");
    let (status, body) = get(range, ADMIN_TOKEN);
    assert!(status == 404 && body.contains("--prometheus-url"), "{status} {body}");
    assert_eq!(get("/api/v1/dashboards", "wrong").0, 401);
}

/// `sluice dash import`: what Sluice renders comes back unchanged, and a foreign Grafana
/// dashboard comes in with each thing left behind named.
#[test]
fn grafana_dashboards_import_back_and_say_what_they_leave() {
    let (dir, dashboards, refs) = workspace();
    let first = dir.path().join("first");
    let extra: Vec<&str> = refs.iter().map(String::as_str).collect();
    assert!(render(&dashboards, "grafana", &first, &extra).status.success());
    let imported = dir.path().join("imported");
    std::fs::create_dir_all(&imported).unwrap();
    for entry in std::fs::read_dir(&first).unwrap() {
        let path = entry.unwrap().path();
        let out = imported.join(path.with_extension("yaml").file_name().unwrap());
        let run = dash(&["import".as_ref(), path.as_os_str(), "--out".as_ref(), out.as_os_str()]);
        assert!(
            run.status.success() && run.stderr.is_empty(),
            "{}: {}",
            path.display(),
            text(&run.stderr)
        );
    }
    let second = dir.path().join("second");
    let run = render(&imported, "grafana", &second, &[]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    for entry in std::fs::read_dir(&first).unwrap() {
        let name = entry.unwrap().file_name();
        assert_eq!(
            std::fs::read_to_string(first.join(&name)).unwrap(),
            std::fs::read_to_string(second.join(&name)).unwrap(),
            "{name:?} survives render, import, render"
        );
    }

    let foreign = serde_json::json!({
        "uid": "Team Payments!", "title": "Payments", "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [
            {"type": "interval", "name": "span", "query": "1m,5m"},
            {"type": "query", "name": "ns", "datasource": {"type": "elasticsearch"}, "query": "{\"find\": \"terms\", \"field\": \"namespace\"}", "multi": true},
        ]},
        "panels": [
            {"type": "stat", "title": "Up", "gridPos": {"w": 6}, "datasource": {"type": "prometheus"}, "targets": [{"expr": "up", "refId": "A"}]},
            {"type": "timeseries", "title": "Two", "datasource": {"type": "prometheus"}, "targets": [{"expr": "rate(a_total[5m])"}, {"expr": "rate(b_total[5m])"}]},
            {"type": "logs", "title": "Loki", "datasource": {"type": "loki"}, "targets": [{"expr": "{app=\"pay\"}"}]},
            {"type": "row", "title": "Logs", "panels": []},
            {"type": "logs", "title": "Errors", "datasource": {"type": "elasticsearch"}, "targets": [{"query": "namespace:$ns AND message:\"支付失败\"", "metrics": [{"type": "logs"}], "bucketAggs": []}]},
            {"type": "timeseries", "title": "Ranged", "datasource": {"type": "elasticsearch"}, "targets": [{"query": "@timestamp:[now-1h TO now]", "metrics": [{"type": "count"}], "bucketAggs": [{"type": "date_histogram", "field": "@timestamp"}]}]},
            {"type": "text", "title": "Notes", "options": {"content": "See the runbook."}},
        ],
    });
    let file = dir.path().join("payments.json");
    std::fs::write(&file, foreign.to_string()).unwrap();
    let run = dash(&["import".as_ref(), file.as_os_str()]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let warnings = text(&run.stderr);
    for want in [
        "variable \"span\": a interval variable; left out",
        "panel \"Up\": a stat panel becomes a time series",
        "panel \"Two\": 2 queries; only the first carried over",
        "panel \"Loki\": a loki datasource; left out",
        "panel \"Ranged\": query \"@timestamp:[now-1h TO now]\" does not read as a Sluice query",
    ] {
        assert!(warnings.contains(want), "want {want:?} in {warnings}");
    }
    let yaml = text(&run.stdout);
    let parsed: Value = yaml_serde::from_str(&yaml).unwrap();
    assert_eq!(
        (parsed["name"].as_str(), parsed["time"].as_str()),
        (Some("team-payments"), Some("6h"))
    );
    assert_eq!(parsed["rows"][1]["panels"][0]["query"], "namespace:$ns AND \"支付失败\"", "{yaml}");
    assert_eq!(parsed["rows"][0]["panels"][0]["width"], 6);
    let path = dir.path().join("payments.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let lint = dash(&["lint".as_ref(), path.as_os_str()]);
    assert!(lint.status.success(), "the import lints clean: {}\n{yaml}", text(&lint.stderr));
}

/// `sluice dash test`: the monitors (a rule of the alerts file by name and one written inline)
/// under the alerting unit tests kept beside the dashboards; a wrong expectation fails.
#[test]
fn dash_test_runs_the_monitors_unit_tests() {
    let (_dir, dashboards, refs) = workspace();
    let tests = |quiet_at_30s: &str| {
        format!(
            "tests:\n  - name: errors page, then silence is noticed\n    input_lines:\n      - {{at: 0s, namespace: pay, level: error, message: 支付失败, repeat: 5, step: 1s}}\n    alert_rule_test:\n      - {{eval_time: 20s, alertname: pod-errors, exp_alerts: [{{exp_labels: {{}}}}]}}\n      - {{eval_time: 30s, alertname: quiet, exp_alerts: {quiet_at_30s}}}\n      - {{eval_time: 7m, alertname: quiet, exp_alerts: [{{exp_labels: {{}}}}]}}\n"
        )
    };
    let run_test = || {
        let mut args: Vec<&std::ffi::OsStr> = vec!["test".as_ref(), dashboards.as_os_str()];
        args.extend(refs.iter().map(std::ffi::OsStr::new));
        dash(&args)
    };
    std::fs::write(dashboards.join("monitors.test.yaml"), tests("[]")).unwrap();
    let run = run_test();
    assert!(run.status.success(), "{}{}", text(&run.stdout), text(&run.stderr));
    assert!(
        text(&run.stdout).contains("SUCCESS  errors page, then silence is noticed"),
        "{}",
        text(&run.stdout)
    );

    std::fs::write(dashboards.join("monitors.test.yaml"), tests("[{exp_labels: {}}]")).unwrap();
    let run = run_test();
    assert!(!run.status.success());
    assert!(
        text(&run.stdout).contains("FAILED   errors page, then silence is noticed"),
        "{}",
        text(&run.stdout)
    );
}

/// `sluice dash apply`: the difference first, then the file; the same files again change
/// nothing; only admins apply; what was applied survives a restart.
#[test]
fn dash_apply_shows_the_difference_and_is_idempotent() {
    use common::{ADMIN_TOKEN, DEV_TOKEN, start_up_with, write_users};
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("dashboards");
    std::fs::create_dir_all(&files).unwrap();
    let mine = |title: &str| {
        format!(
            "apiVersion: sluice.dev/v1\nkind: Dashboard\nname: mine\ntitle: {title}\nrows: [{{title: r, panels: [{{type: logs, query: 'level:error'}}]}}]\n"
        )
    };
    std::fs::write(files.join("mine.yaml"), mine("Mine")).unwrap();
    let users = write_users(dir.path());
    let data = dir.path().join("data");
    let watch = ["/nonexistent/*.log".to_owned()];
    let up_args: [&std::ffi::OsStr; 2] = ["--users".as_ref(), users.as_os_str()];
    let (mut up, base) = start_up_with(&data, &watch, &up_args);
    let apply = |token: &str, extra: &[&str]| {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "apply".as_ref(),
            files.as_os_str(),
            "--server".as_ref(),
            base.as_ref(),
            "--token".as_ref(),
            token.as_ref(),
        ];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        dash(&args)
    };
    let run = apply(DEV_TOKEN, &[]);
    assert!(
        !run.status.success() && text(&run.stderr).contains("admins only"),
        "{}",
        text(&run.stderr)
    );

    let run = apply(ADMIN_TOKEN, &[]);
    let out = text(&run.stdout);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(
        out.contains("(new)") && out.contains("+title: Mine") && out.contains("mine: applied"),
        "{out}"
    );
    assert!(out.contains("1 changed, 0 unchanged"), "{out}");
    let run = apply(ADMIN_TOKEN, &[]);
    assert!(
        text(&run.stdout).contains("mine: unchanged\n0 changed, 1 unchanged"),
        "{}",
        text(&run.stdout)
    );

    std::fs::write(files.join("mine.yaml"), mine("Mine v2")).unwrap();
    let run = apply(ADMIN_TOKEN, &["--dry-run"]);
    let out = text(&run.stdout);
    assert!(
        out.contains("-title: Mine\n+title: Mine v2") && out.contains("1 would change"),
        "{out}"
    );
    let list_at = |base: &str| {
        reqwest::blocking::Client::new()
            .get(format!("{base}/api/v1/dashboards"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .unwrap()
            .text()
            .unwrap()
    };
    let list = || list_at(&base);
    assert!(
        list().contains("\"title\":\"Mine\"") && !list().contains("Mine v2"),
        "a dry run changes nothing"
    );
    assert!(text(&apply(ADMIN_TOKEN, &[]).stdout).contains("mine: applied"));

    // A broken file is refused before anything is sent; a built-in's name by the server.
    std::fs::write(files.join("broken.yaml"), "apiVersion: sluice.dev/v1\ntitel: x\n").unwrap();
    let run = apply(ADMIN_TOKEN, &[]);
    assert!(
        !run.status.success() && text(&run.stderr).contains("broken.yaml: unknown field `titel`")
    );
    std::fs::write(
        files.join("broken.yaml"),
        "apiVersion: sluice.dev/v1\nkind: Dashboard\nname: log-volume\ntitle: Mine\nrows: [{title: r, panels: [{type: logs}]}]\n",
    )
    .unwrap();
    let run = apply(ADMIN_TOKEN, &[]);
    assert!(
        !run.status.success() && text(&run.stderr).contains("is a built-in"),
        "{}",
        text(&run.stderr)
    );
    std::fs::remove_file(files.join("broken.yaml")).unwrap();

    up.kill9();
    let (_up, base) = start_up_with(&data, &watch, &up_args);
    let listed = list_at(&base);
    assert!(
        listed.contains("\"title\":\"Mine v2\"") && listed.contains("\"applied\":true"),
        "{listed}"
    );
}
