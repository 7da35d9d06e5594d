//! `sluice dash lint`: everything a dashboard names exists and every query parses, so a
//! mistake is found in review, not in front of an incident.

use std::collections::HashSet;

use sluice_alerting::AlertsFile;
use sluice_query::matcher::Matcher;

use super::load::{Loaded, Problem};
use super::lucene;
use super::model::{API_VERSION, Dashboard, Panel, PanelType};
use crate::log_metrics::LogMetricsFile;

/// What dashboards may refer to besides themselves.
#[derive(Default)]
pub struct Context<'a> {
    pub alerts: Option<&'a AlertsFile>,
    pub log_metrics: Option<&'a LogMetricsFile>,
}

/// Every problem of every dashboard, each naming the file and where in it.
pub fn lint(dashboards: &[Loaded], cx: &Context<'_>) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut names = HashSet::new();
    for d in dashboards {
        let mut say = |message: String| problems.push(Problem { path: d.path.clone(), message });
        if !names.insert(d.dashboard.name.as_str()) {
            say(format!("name: {:?} is the name of another dashboard", d.dashboard.name));
        }
        for message in check(&d.dashboard, cx) {
            say(message);
        }
    }
    problems
}

fn check(d: &Dashboard, cx: &Context<'_>) -> Vec<String> {
    let mut out = Vec::new();
    if d.api_version != API_VERSION {
        out.push(format!(
            "apiVersion: {:?} is not {API_VERSION:?}, the one this release reads",
            d.api_version
        ));
    }
    if d.kind != "Dashboard" {
        out.push(format!("kind: {:?} is not \"Dashboard\"", d.kind));
    }
    if d.name.is_empty()
        || d.name.len() > 33
        || !d.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        out.push(format!("name: {:?} must be 1 to 33 of a-z, 0-9 and -", d.name));
    }
    if humantime::parse_duration(&d.time).is_err() {
        out.push(format!("time: {:?} is not a duration such as 1h", d.time));
    }
    if let Some(r) = &d.refresh
        && humantime::parse_duration(r).is_err()
    {
        out.push(format!("refresh: {r:?} is not a duration such as 30s"));
    }
    let mut variables = HashSet::new();
    for (i, v) in d.variables.iter().enumerate() {
        let at = format!("variables[{i}] ({})", v.name);
        if v.name.is_empty() || !v.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.push(format!("{at}.name: letters, digits and _ only"));
        }
        if !variables.insert(v.name.as_str()) {
            out.push(format!("{at}.name: a second variable with this name"));
        }
        match (&v.field, &v.values) {
            (Some(f), None) if !Matcher::is_keyword_field(f) => {
                out.push(format!("{at}.field: {f:?} is not a keyword field"))
            }
            (Some(_), None) => {}
            (None, Some(values)) if values.is_empty() => out.push(format!("{at}.values: empty")),
            (None, Some(_)) => {}
            _ => out.push(format!("{at}: give field or values, one of them")),
        }
    }
    if d.rows.is_empty() {
        out.push("rows: a dashboard needs at least one row".into());
    }
    for (r, row) in d.rows.iter().enumerate() {
        let mut width = 0;
        for (p, panel) in row.panels.iter().enumerate() {
            let at = format!("rows[{r}].panels[{p}] ({})", title(panel));
            out.extend(check_panel(panel, &variables, cx).into_iter().map(|m| format!("{at}.{m}")));
            width += panel.width.unwrap_or(0);
        }
        if width > 24 {
            out.push(format!(
                "rows[{r}] ({}): the panels' widths add up to {width}, past 24",
                row.title
            ));
        }
        if row.panels.is_empty() {
            out.push(format!("rows[{r}] ({}): no panels", row.title));
        }
    }
    for (i, m) in d.monitors.iter().enumerate() {
        let at = format!("monitors[{i}]");
        match (&m.rule, &m.inline) {
            (Some(name), None) => match cx.alerts {
                Some(alerts)
                    if alerts.rules.iter().any(|r| &r.name == name)
                        || alerts.metric_rules.iter().any(|r| &r.name == name) => {}
                Some(_) => out.push(format!("{at}.rule: no rule {name:?} in the alerts file")),
                None => out.push(format!(
                    "{at}.rule: {name:?} names a rule; pass --alerts FILE to check it"
                )),
            },
            (None, Some(rule)) => {
                let mut file: AlertsFile =
                    yaml_serde::from_str("route: {receiver: lint}").expect("a minimal alerts file");
                file.rules.push(rule.clone());
                if let Err(e) = file.rule(0) {
                    out.push(format!("{at}.inline: {}", e.trim_start_matches("rules[0] ")));
                }
            }
            _ => out.push(format!("{at}: give rule or inline, one of them")),
        }
    }
    out
}

fn title(p: &Panel) -> String {
    if p.title.is_empty() { format!("{:?}", p.kind).to_lowercase() } else { p.title.clone() }
}

fn check_panel(p: &Panel, variables: &HashSet<&str>, cx: &Context<'_>) -> Vec<String> {
    use PanelType::*;
    let mut out = Vec::new();
    let given = [
        ("query", p.query.is_some(), &[Volume, Errors, Top, Logs, Events][..]),
        ("field", p.field.is_some(), &[Top][..]),
        ("limit", p.limit.is_some(), &[Top, Logs, Events][..]),
        ("promql", p.promql.is_some(), &[Metric][..]),
        ("log_metric", p.log_metric.is_some(), &[Metric][..]),
        ("legend", p.legend.is_some(), &[Metric][..]),
        ("content", p.content.is_some(), &[Markdown][..]),
    ];
    for (key, present, kinds) in given {
        if present && !kinds.contains(&p.kind) {
            out.push(format!(
                "{key}: a {} panel takes no {key}",
                format!("{:?}", p.kind).to_lowercase()
            ));
        }
    }
    if let Some(w) = p.width
        && !(1..=24).contains(&w)
    {
        out.push(format!("width: {w} is not within 1..=24"));
    }
    if let Some(q) = &p.query {
        for name in referenced(q) {
            if !variables.contains(name.as_str()) {
                out.push(format!("query: ${name} is not a variable of this dashboard"));
            }
        }
        let bound = bind(q);
        if let Err(e) = Matcher::new(&bound) {
            out.push(format!("query: {e}"));
        } else if let Err(e) = lucene::translate(q) {
            out.push(format!("query: {e}"));
        }
    }
    match p.kind {
        Top => match &p.field {
            Some(f) if Matcher::is_keyword_field(f) => {}
            Some(f) => out.push(format!("field: {f:?} is not a keyword field")),
            None => out.push("field: a top panel needs the field whose values it ranks".into()),
        },
        Metric => match (&p.promql, &p.log_metric) {
            (Some(expr), None) => {
                for name in referenced(expr) {
                    if !variables.contains(name.as_str()) {
                        out.push(format!("promql: ${name} is not a variable of this dashboard"));
                    }
                }
                if let Err(e) = promql_parser::parser::parse(&bind(expr)) {
                    out.push(format!("promql: {}", e.trim()));
                }
            }
            (None, Some(name)) => match cx.log_metrics {
                Some(f) if f.metrics.iter().any(|m| &m.name == name) => {}
                Some(_) => {
                    out.push(format!("log_metric: no metric {name:?} in the log metrics file"))
                }
                None => out.push(format!(
                    "log_metric: {name:?} names a log metric; pass --log-metrics FILE to check it"
                )),
            },
            _ => out.push("a metric panel needs promql or log_metric, one of them".into()),
        },
        Markdown if p.content.is_none() => out.push("content: a markdown panel needs it".into()),
        _ => {}
    }
    out
}

/// The `$name` / `${name}` variables a query refers to.
pub fn referenced(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        let braced = rest.starts_with('{');
        let body = if braced { &rest[1..] } else { rest };
        let len =
            body.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(body.len());
        if len > 0 && !body[..len].starts_with("__") {
            out.push(body[..len].to_owned());
        }
    }
    out
}

/// `text` with each variable replaced by a plain value, to parse it as a query.
fn bind(text: &str) -> String {
    let mut out = text.to_owned();
    for name in referenced(text) {
        out = out.replace(&format!("${{{name}}}"), "x").replace(&format!("${name}"), "x");
    }
    out.replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$__range", "1h")
}
