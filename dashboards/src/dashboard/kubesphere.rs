//! KubeSphere custom monitoring dashboards: `monitoring.kubesphere.io/v1alpha2` `Dashboard`
//! (in a namespace) or `ClusterDashboard`. KubeSphere's dashboards ask Prometheus only, so
//! metric and markdown panels carry over and log panels are left out, each with a warning
//! (a log metric of the same query can chart it there).

use serde_json::{Value, json};

use super::grafana::log_metric_expr;
use super::model::{Dashboard, PanelType};
use crate::log_metrics::LogMetricsFile;
use crate::log_metrics::config::label_name;

/// The object as YAML, and what could not be carried over.
pub fn render(
    d: &Dashboard,
    log_metrics: Option<&LogMetricsFile>,
    namespace: Option<&str>,
) -> (String, Vec<String>) {
    let mut warnings = Vec::new();
    let mut panels = Vec::new();
    let mut id = 0;
    for (r, row) in d.rows.iter().enumerate() {
        id += 1;
        panels.push(json!({"id": id, "title": row.title, "type": "row"}));
        for (p, panel) in row.panels.iter().enumerate() {
            let expr = match (panel.kind, &panel.promql, &panel.log_metric) {
                (PanelType::Metric, Some(e), _) => Some(e.clone()),
                (PanelType::Metric, None, Some(name)) => Some(log_metric_expr(name, log_metrics)),
                _ => None,
            };
            id += 1;
            let rendered = match (panel.kind, expr) {
                (PanelType::Metric, Some(expr)) => json!({
                    "id": id, "title": panel.title, "type": "graph", "datasource": "prometheus",
                    "lines": true,
                    "targets": [{
                        "expr": expr.replace("$__rate_interval", "5m"),
                        "legendFormat": panel.legend.clone().unwrap_or_default(),
                        "refId": 1, "step": "1m",
                    }],
                }),
                (PanelType::Markdown, _) => json!({
                    "id": id, "title": panel.title, "type": "text", "mode": "markdown",
                    "content": panel.content.clone().unwrap_or_default(),
                }),
                (kind, _) => {
                    id -= 1;
                    warnings.push(format!(
                        "{}: rows[{r}].panels[{p}] ({}): a {} panel reads logs, and KubeSphere dashboards ask Prometheus only; left out",
                        d.name,
                        panel.title,
                        format!("{kind:?}").to_lowercase()
                    ));
                    continue;
                }
            };
            panels.push(rendered);
        }
    }
    let templatings: Vec<Value> = d
        .variables
        .iter()
        .map(|v| {
            let query = match (&v.field, &v.values) {
                (Some(f), _) => format!("label_values({})", label_name(f)),
                (None, values) => values.clone().unwrap_or_default().join(","),
            };
            json!({
                "name": v.name, "label": v.label.clone().unwrap_or_else(|| v.name.clone()),
                "type": if v.field.is_some() { "query" } else { "custom" },
                "datasource": "prometheus", "query": query, "multi": v.multi,
                "includeAll": v.field.is_some(), "hide": 0, "sort": 1,
            })
        })
        .collect();
    let mut metadata = json!({
        "name": format!("sluice-{}", d.name),
        "labels": {"app.kubernetes.io/managed-by": "sluice"},
    });
    if let Some(ns) = namespace {
        metadata["namespace"] = json!(ns);
    }
    let mut spec = json!({
        "title": d.title,
        "description": d.description,
        "editable": true,
        "shared_crosshair": true,
        "tags": d.tags,
        "time": {"from": format!("now-{}", d.time), "to": "now"},
        "templatings": templatings,
        "panels": panels,
    });
    if let Some(r) = &d.refresh {
        spec["auto_refresh"] = json!(r);
    }
    let object = json!({
        "apiVersion": "monitoring.kubesphere.io/v1alpha2",
        "kind": if namespace.is_some() { "Dashboard" } else { "ClusterDashboard" },
        "metadata": metadata,
        "spec": spec,
    });
    (yaml_serde::to_string(&object).expect("YAML serialises"), warnings)
}
