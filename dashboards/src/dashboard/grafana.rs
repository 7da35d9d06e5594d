//! Grafana dashboard JSON (schema version [`SCHEMA_VERSION`], checked in the tests against
//! `@grafana/schema`). Log panels query Elasticsearch — the indexes Sluice's Elasticsearch
//! sink writes, queries translated by [`lucene`] — and metric panels Prometheus, through two
//! datasource variables (`logs`, `metrics`), so one JSON works in every Grafana whatever its
//! datasources are called. The same dashboard renders to the same bytes: keys sorted, ids and
//! positions from the file's order, the uid from the dashboard's name.

use serde_json::{Value, json};

use super::lucene;
use super::model::{Dashboard, Panel, PanelType, Variable};
use crate::log_metrics::LogMetricsFile;
use crate::log_metrics::config::label_name;

/// The dashboard schema version written (Grafana 12.2 and 13; `@grafana/schema` 13.2).
pub const SCHEMA_VERSION: u32 = 42;

/// The Grafana uid of a dashboard: at most 40 characters, stable across renders.
pub fn uid(d: &Dashboard) -> String {
    format!("sluice-{}", d.name)
}

/// The dashboard as Grafana JSON, pretty-printed with a final newline. `d` must have passed
/// lint: queries that do not translate render as written.
pub fn render(d: &Dashboard, log_metrics: Option<&LogMetricsFile>) -> String {
    let mut panels = Vec::new();
    let mut id = 0;
    let mut y = 0;
    for row in &d.rows {
        id += 1;
        panels.push(json!({
            "type": "row", "id": id, "title": row.title, "collapsed": false, "panels": [],
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
        }));
        y += 1;
        let fixed: u32 = row.panels.iter().filter_map(|p| p.width).sum();
        let free = row.panels.iter().filter(|p| p.width.is_none()).count() as u32;
        let share = 24u32.saturating_sub(fixed).checked_div(free).map_or(0, |w| w.max(1));
        let (mut x, mut height) = (0, 0);
        for p in &row.panels {
            let w = p.width.unwrap_or(share);
            if x + w > 24 {
                (x, y) = (0, y + height);
            }
            let h = panel_height(p);
            id += 1;
            let mut panel = panel_json(p, log_metrics);
            panel["id"] = json!(id);
            panel["title"] = json!(p.title);
            panel["gridPos"] = json!({"h": h, "w": w, "x": x, "y": y});
            panels.push(panel);
            x += w;
            height = height.max(h);
        }
        y += height;
    }
    let mut variables = vec![
        json!({"type": "datasource", "name": "logs", "label": "Logs (Elasticsearch)", "query": "elasticsearch", "hide": 0, "options": [], "refresh": 1, "regex": ""}),
        json!({"type": "datasource", "name": "metrics", "label": "Metrics (Prometheus)", "query": "prometheus", "hide": 0, "options": [], "refresh": 1, "regex": ""}),
    ];
    variables.extend(d.variables.iter().map(variable));
    let mut tags = vec!["sluice".to_owned()];
    tags.extend(d.tags.iter().filter(|t| *t != "sluice").cloned());
    let dashboard = json!({
        "uid": uid(d),
        "title": d.title,
        "description": d.description,
        "tags": tags,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": true,
        "graphTooltip": 1,
        "timezone": "browser",
        "time": {"from": format!("now-{}", d.time), "to": "now"},
        "refresh": d.refresh.clone().unwrap_or_default(),
        "templating": {"list": variables},
        "annotations": {"list": []},
        "links": [],
        "panels": panels,
    });
    let mut text = serde_json::to_string_pretty(&sorted(dashboard)).expect("JSON serialises");
    text.push('\n');
    text
}

fn panel_height(p: &Panel) -> u32 {
    match p.kind {
        PanelType::Logs | PanelType::Events => 10,
        PanelType::Markdown => 4,
        _ => 8,
    }
}

fn logs() -> Value {
    json!({"type": "elasticsearch", "uid": "${logs}"})
}

fn metrics() -> Value {
    json!({"type": "prometheus", "uid": "${metrics}"})
}

/// The Lucene of a panel's query, ANDed with what its type adds.
fn lucene_of(p: &Panel, extra: Option<&str>) -> String {
    let q = p.query.as_deref().unwrap_or("");
    let base = lucene::translate(q).unwrap_or_else(|_| q.to_owned());
    match (extra, base.as_str()) {
        (Some(e), "*") => e.to_owned(),
        (Some(e), b) => format!("{e} AND {b}"),
        (None, b) => b.to_owned(),
    }
}

fn histogram() -> Value {
    json!({"id": "3", "type": "date_histogram", "field": "@timestamp", "settings": {"interval": "auto", "min_doc_count": "0"}})
}

fn es_target(query: String, metrics: Value, aggs: Value) -> Value {
    json!({"refId": "A", "datasource": logs(), "query": query, "alias": "", "metrics": metrics, "bucketAggs": aggs, "timeField": "@timestamp"})
}

fn bars() -> Value {
    json!({
        "defaults": {"custom": {"drawStyle": "bars", "fillOpacity": 80, "lineWidth": 1, "stacking": {"group": "A", "mode": "normal"}}},
        "overrides": [],
    })
}

fn legend() -> Value {
    json!({"legend": {"calcs": [], "displayMode": "list", "placement": "bottom", "showLegend": true}, "tooltip": {"mode": "multi", "sort": "desc"}})
}

fn panel_json(p: &Panel, log_metrics: Option<&LogMetricsFile>) -> Value {
    let count = json!([{"id": "1", "type": "count"}]);
    match p.kind {
        PanelType::Volume => json!({
            "type": "timeseries", "datasource": logs(), "fieldConfig": bars(), "options": legend(),
            "targets": [es_target(lucene_of(p, None), count, json!([
                {"id": "2", "type": "terms", "field": "level", "settings": {"min_doc_count": "1", "order": "desc", "orderBy": "_count", "size": "10"}},
                histogram(),
            ]))],
        }),
        PanelType::Errors => json!({
            "type": "timeseries", "datasource": logs(), "fieldConfig": bars(), "options": legend(),
            "targets": [es_target(lucene_of(p, Some("level:\"error\"")), count, json!([histogram()]))],
        }),
        PanelType::Top => {
            let field = p.field.as_deref().unwrap_or("namespace");
            json!({
                "type": "table", "datasource": logs(),
                "fieldConfig": {"defaults": {}, "overrides": []},
                "options": {"showHeader": true, "cellHeight": "sm"},
                "targets": [es_target(lucene_of(p, None), count, json!([
                    {"id": "2", "type": "terms", "field": lucene_field(field), "settings": {"min_doc_count": "1", "order": "desc", "orderBy": "_count", "size": p.limit.unwrap_or(10).to_string()}},
                ]))],
            })
        }
        PanelType::Logs | PanelType::Events => {
            let extra = (p.kind == PanelType::Events).then_some("_exists_:event.reason");
            let limit = p.limit.unwrap_or(100).to_string();
            json!({
                "type": "logs", "datasource": logs(),
                "options": {"showTime": true, "wrapLogMessage": true, "sortOrder": "Descending", "enableLogDetails": true, "dedupStrategy": "none", "prettifyLogMessage": false, "showCommonLabels": false, "showLabels": false},
                "targets": [es_target(lucene_of(p, extra), json!([{"id": "1", "type": "logs", "settings": {"limit": limit}}]), json!([]))],
            })
        }
        PanelType::Metric => {
            let expr = match (&p.promql, &p.log_metric) {
                (Some(e), _) => e.clone(),
                (None, Some(name)) => log_metric_expr(name, log_metrics),
                (None, None) => String::new(),
            };
            json!({
                "type": "timeseries", "datasource": metrics(),
                "fieldConfig": {"defaults": {"custom": {"drawStyle": "line", "fillOpacity": 10, "lineWidth": 1}}, "overrides": []},
                "options": legend(),
                "targets": [{"refId": "A", "datasource": metrics(), "expr": expr, "legendFormat": p.legend.clone().unwrap_or_else(|| "__auto".into()), "range": true}],
            })
        }
        PanelType::Markdown => json!({
            "type": "text",
            "options": {"mode": "markdown", "content": p.content.clone().unwrap_or_default()},
        }),
    }
}

/// A log metric as a per-second rate, summed by its labels when the metrics file is known.
pub fn log_metric_expr(name: &str, file: Option<&LogMetricsFile>) -> String {
    let labels: Option<Vec<String>> = file
        .and_then(|f| f.metrics.iter().find(|m| m.name == name))
        .map(|m| m.labels.iter().map(|l| label_name(l)).collect());
    match labels {
        Some(l) if !l.is_empty() => {
            format!("sum by ({}) (rate({name}[$__rate_interval]))", l.join(", "))
        }
        _ => format!("sum(rate({name}[$__rate_interval]))"),
    }
}

fn lucene_field(field: &str) -> String {
    lucene::es_field(field).unwrap_or_else(|_| field.to_owned())
}

fn variable(v: &Variable) -> Value {
    let label = v.label.clone().unwrap_or_else(|| v.name.clone());
    let all = json!({"selected": true, "text": ["All"], "value": ["$__all"]});
    match (&v.field, &v.values) {
        (Some(field), _) => json!({
            "type": "query", "name": v.name, "label": label, "datasource": logs(),
            "query": format!("{{\"find\": \"terms\", \"field\": \"{}\"}}", lucene_field(field)),
            "refresh": 2, "includeAll": true, "multi": v.multi, "sort": 1, "hide": 0,
            "current": all, "options": [], "regex": "",
        }),
        (None, values) => {
            let values = values.clone().unwrap_or_default();
            let options: Vec<Value> = values
                .iter()
                .enumerate()
                .map(|(i, x)| json!({"selected": i == 0, "text": x, "value": x}))
                .collect();
            let first = values.first().cloned().unwrap_or_default();
            json!({
                "type": "custom", "name": v.name, "label": label, "query": values.join(","),
                "includeAll": false, "multi": v.multi, "hide": 0, "options": options,
                "current": {"selected": true, "text": first, "value": first},
            })
        }
    }
}

/// The value with every object's keys in order, so output never depends on how serde_json
/// keeps maps.
fn sorted(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}
