//! `sluice dash import`: a Grafana dashboard (JSON) into the format, saying what could not be
//! carried over. Elasticsearch panels become log panels (their Lucene read back into the
//! search language), Prometheus panels metric panels, text panels markdown; rows stay rows.
//! What Sluice renders, it imports back unchanged: `render(import(render(d))) == render(d)`.

use serde_json::Value;
use sluice_query::matcher::Matcher;

use super::lucene::search_field;
use super::model::{API_VERSION, Dashboard, Panel, PanelType, Row, Variable};

/// The dashboard, and a warning for each thing left behind.
pub fn import(json: &Value) -> Result<(Dashboard, Vec<String>), String> {
    let title = json["title"].as_str().ok_or("not a Grafana dashboard: no title")?;
    let mut warnings = Vec::new();
    let uid = json["uid"].as_str().unwrap_or("");
    let name =
        slug(uid.strip_prefix("sluice-").unwrap_or(if uid.is_empty() { title } else { uid }));
    let mut rows: Vec<Row> = Vec::new();
    for p in json["panels"].as_array().into_iter().flatten() {
        if p["type"] == "row" {
            rows.push(Row { title: text(&p["title"]), panels: Vec::new() });
            for nested in p["panels"].as_array().into_iter().flatten() {
                push_panel(&mut rows, nested, title, &mut warnings);
            }
        } else {
            push_panel(&mut rows, p, title, &mut warnings);
        }
    }
    rows.retain(|r| !r.panels.is_empty());
    let mut variables = Vec::new();
    for v in json["templating"]["list"].as_array().into_iter().flatten() {
        match variable(v) {
            Ok(Some(v)) => variables.push(v),
            Ok(None) => {}
            Err(w) => warnings.push(w),
        }
    }
    let time = json["time"]["from"].as_str().and_then(|f| f.strip_prefix("now-")).unwrap_or("1h");
    let dashboard = Dashboard {
        api_version: API_VERSION.into(),
        kind: "Dashboard".into(),
        name,
        title: title.into(),
        description: text(&json["description"]),
        tags: json["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|t| *t != "sluice")
            .map(str::to_owned)
            .collect(),
        time: time.into(),
        refresh: json["refresh"].as_str().filter(|r| !r.is_empty()).map(str::to_owned),
        variables,
        rows,
        monitors: Vec::new(),
    };
    Ok((dashboard, warnings))
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or("").to_owned()
}

/// Grafana uids and titles as a dashboard name: lowercase, digits and `-`, at most 33.
fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out: String = out.trim_matches('-').chars().take(33).collect();
    let out = out.trim_end_matches('-').to_owned();
    if out.is_empty() { "imported".into() } else { out }
}

fn push_panel(rows: &mut Vec<Row>, p: &Value, dashboard: &str, warnings: &mut Vec<String>) {
    if rows.is_empty() {
        rows.push(Row { title: dashboard.into(), panels: Vec::new() });
    }
    let title = text(&p["title"]);
    let before = warnings.len();
    match panel(p, &title, warnings) {
        Some(panel) => rows.last_mut().expect("a row").panels.push(panel),
        None if warnings.len() > before => {}
        None => warnings.push(format!(
            "panel {title:?} ({}): no query Sluice can run; left out",
            p["type"].as_str().unwrap_or("?")
        )),
    }
}

fn empty(kind: PanelType, title: &str, width: Option<u32>) -> Panel {
    Panel {
        kind,
        title: title.into(),
        width,
        query: None,
        field: None,
        limit: None,
        promql: None,
        log_metric: None,
        legend: None,
        content: None,
    }
}

fn panel(p: &Value, title: &str, warnings: &mut Vec<String>) -> Option<Panel> {
    let width = p["gridPos"]["w"].as_u64().map(|w| w.clamp(1, 24) as u32);
    if p["type"] == "text" {
        let mut m = empty(PanelType::Markdown, title, width);
        m.content = Some(text(&p["options"]["content"]));
        return Some(m);
    }
    let targets = p["targets"].as_array()?;
    let target = targets.first()?;
    let source = target["datasource"]["type"].as_str().or(p["datasource"]["type"].as_str());
    if let Some(kind) = source.filter(|k| !["prometheus", "elasticsearch"].contains(k)) {
        warnings.push(format!("panel {title:?}: a {kind} datasource; left out"));
        return None;
    }
    if targets.len() > 1 {
        warnings.push(format!(
            "panel {title:?}: {} queries; only the first carried over",
            targets.len()
        ));
    }
    if let Some(expr) = target["expr"].as_str() {
        if p["type"] != "timeseries" && p["type"] != "graph" {
            warnings.push(format!(
                "panel {title:?}: a {} panel becomes a time series",
                p["type"].as_str().unwrap_or("?")
            ));
        }
        let mut m = empty(PanelType::Metric, title, width);
        m.promql = Some(expr.to_owned());
        m.legend = target["legendFormat"]
            .as_str()
            .filter(|l| *l != "__auto" && !l.is_empty())
            .map(str::to_owned);
        return Some(m);
    }
    let lucene = target["query"].as_str()?;
    let metric = target["metrics"][0]["type"].as_str().unwrap_or("count");
    let aggs: Vec<&Value> = target["bucketAggs"].as_array().into_iter().flatten().collect();
    let terms = aggs.iter().find(|a| a["type"] == "terms");
    let histogram = aggs.iter().any(|a| a["type"] == "date_histogram");
    let (kind, rest) = if metric == "logs" || metric == "raw_data" {
        match strip(lucene, "_exists_:event.reason") {
            Some(rest) => (PanelType::Events, rest),
            None => (PanelType::Logs, lucene),
        }
    } else if let (Some(t), false) = (terms, histogram) {
        let mut m = empty(PanelType::Top, title, width);
        m.field = Some(search_field(t["field"].as_str().unwrap_or("namespace")));
        m.limit = t["settings"]["size"].as_str().and_then(|s| s.parse().ok());
        m.query = query(lucene, title, warnings);
        return Some(m);
    } else if terms.is_some_and(|t| t["field"] == "level") {
        (PanelType::Volume, lucene)
    } else {
        match strip(lucene, "level:\"error\"") {
            Some(rest) => (PanelType::Errors, rest),
            None => (PanelType::Volume, lucene),
        }
    };
    let mut m = empty(kind, title, width);
    m.query = query(rest, title, warnings);
    if matches!(kind, PanelType::Logs | PanelType::Events) {
        m.limit = target["metrics"][0]["settings"]["limit"].as_str().and_then(|s| s.parse().ok());
    }
    Some(m)
}

/// `lucene` without a leading `prefix` (alone, or ANDed with the rest).
fn strip<'a>(lucene: &'a str, prefix: &str) -> Option<&'a str> {
    if lucene == prefix {
        return Some("*");
    }
    lucene.strip_prefix(prefix).and_then(|r| r.strip_prefix(" AND "))
}

/// Lucene read back into the search language where it says the same; else none, warned.
fn query(lucene: &str, title: &str, warnings: &mut Vec<String>) -> Option<String> {
    if lucene.trim().is_empty() || lucene.trim() == "*" {
        return None;
    }
    let mut out = lucene.replace("message:", "");
    for es in ["event.reason", "event.type", "event.object_kind", "event.object", "event.reporter"]
    {
        out = out.replace(&format!("{es}:"), &format!("{}:", search_field(es)));
    }
    // Lucene escapes a glob's `-` and the like; the search language needs no escape there.
    let mut unescaped = String::new();
    let mut chars = out.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => unescaped.extend(chars.next()),
            c => unescaped.push(c),
        }
    }
    let bound = unescaped.replace('$', "x");
    // Read back, it must translate to the same Lucene (up to the parentheses around it).
    let same = super::lucene::translate(&unescaped)
        .is_ok_and(|again| again == lucene || again == format!("({lucene})"));
    if Matcher::new(&bound).is_ok() && same {
        Some(unescaped)
    } else {
        warnings.push(format!(
            "panel {title:?}: query {lucene:?} does not read as a Sluice query; left empty"
        ));
        None
    }
}

fn variable(v: &Value) -> Result<Option<Variable>, String> {
    let name = text(&v["name"]);
    let label = v["label"].as_str().filter(|l| *l != name).map(str::to_owned);
    let multi = v["multi"].as_bool().unwrap_or(false);
    match v["type"].as_str().unwrap_or("") {
        "datasource" => Ok(None),
        "custom" => Ok(Some(Variable {
            name,
            label,
            field: None,
            values: Some(text(&v["query"]).split(',').map(|s| s.trim().to_owned()).collect()),
            multi,
        })),
        "query" => {
            let q: Value = match &v["query"] {
                Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
                other => other.clone(),
            };
            match (q["find"].as_str(), q["field"].as_str()) {
                (Some("terms"), Some(field)) if Matcher::is_keyword_field(&search_field(field)) => {
                    Ok(Some(Variable {
                        name,
                        label,
                        field: Some(search_field(field)),
                        values: None,
                        multi,
                    }))
                }
                _ => Err(format!(
                    "variable {name:?}: its query {} is not a terms query on a keyword field; left out",
                    v["query"]
                )),
            }
        }
        other => Err(format!("variable {name:?}: a {other} variable; left out")),
    }
}
