//! The route tree: which receiver an alert goes to and how alerts are grouped and timed on
//! the way, in Alertmanager's shape — children inherit what they do not set, the first
//! matching child takes the alert unless it says `continue`, and the node itself takes it when
//! no child does.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use regex::Regex;

use crate::alert::Labels;
use crate::config::RouteConfig;

/// Alertmanager's defaults.
const GROUP_WAIT: Duration = Duration::from_secs(30);
const GROUP_INTERVAL: Duration = Duration::from_secs(300);
const REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 3600);

#[derive(Debug, Clone)]
pub struct Route {
    /// The node's place in the tree (`0`, `0.1`): part of its groups' keys.
    pub id: String,
    pub receiver: String,
    pub group_by: Vec<String>,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
    matchers: Vec<LabelMatcher>,
    continue_matching: bool,
    routes: Vec<Route>,
}

impl Route {
    pub fn new(config: &RouteConfig) -> Self {
        Self::child(config, None, "0".to_owned())
    }

    /// The longest `group_wait` in the tree: how long a new alert can wait for its first flush.
    pub fn longest_group_wait(&self) -> Duration {
        self.routes.iter().map(Route::longest_group_wait).fold(self.group_wait, Duration::max)
    }

    fn child(config: &RouteConfig, parent: Option<&Route>, id: String) -> Self {
        let inherit = |own: Option<Duration>, of: fn(&Route) -> Duration, default| {
            own.or(parent.map(of)).unwrap_or(default)
        };
        let mut route = Route {
            receiver: config
                .receiver
                .clone()
                .or_else(|| parent.map(|p| p.receiver.clone()))
                .unwrap_or_default(),
            group_by: config
                .group_by
                .clone()
                .or_else(|| parent.map(|p| p.group_by.clone()))
                .unwrap_or_default(),
            group_wait: inherit(config.group_wait, |p| p.group_wait, GROUP_WAIT),
            group_interval: inherit(config.group_interval, |p| p.group_interval, GROUP_INTERVAL),
            repeat_interval: inherit(
                config.repeat_interval,
                |p| p.repeat_interval,
                REPEAT_INTERVAL,
            ),
            matchers: config.matchers.iter().map(|m| m.parse().expect("checked at load")).collect(),
            continue_matching: config.continue_matching,
            routes: Vec::new(),
            id,
        };
        route.routes = config
            .routes
            .iter()
            .enumerate()
            .map(|(i, c)| Route::child(c, Some(&route), format!("{}.{i}", route.id)))
            .collect();
        route
    }

    /// The nodes that take an alert with these labels.
    pub fn matching(&self, labels: &Labels) -> Vec<&Route> {
        let mut found = Vec::new();
        for child in &self.routes {
            if child.matchers.iter().all(|m| m.matches(labels)) {
                found.extend(child.matching(labels));
                if !child.continue_matching {
                    break;
                }
            }
        }
        if found.is_empty() {
            found.push(self);
        }
        found
    }

    /// The node with this id.
    pub fn find(&self, id: &str) -> Option<&Route> {
        if self.id == id {
            return Some(self);
        }
        self.routes.iter().find_map(|r| r.find(id))
    }

    /// The labels an alert's group is known by on this node.
    pub fn group_labels(&self, labels: &Labels) -> Labels {
        if self.group_by.iter().any(|g| g == "...") {
            return labels.clone();
        }
        self.group_by
            .iter()
            .filter_map(|g| {
                let key = if g == "rule" { "alertname" } else { g.as_str() };
                labels.get(key).map(|v| (key.to_owned(), v.clone()))
            })
            .collect()
    }
}

/// `name=value`, `name!=value`, `name=~regex`, `name!~regex`; the value may be quoted. A
/// regex matches the whole value, as in Alertmanager.
#[derive(Debug, Clone)]
pub struct LabelMatcher {
    name: String,
    kind: MatchKind,
    text: String,
}

#[derive(Debug, Clone)]
enum MatchKind {
    Equal(String),
    NotEqual(String),
    Regex(Regex),
    NotRegex(Regex),
}

impl LabelMatcher {
    pub fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.name).map_or("", String::as_str);
        match &self.kind {
            MatchKind::Equal(v) => value == v,
            MatchKind::NotEqual(v) => value != v,
            MatchKind::Regex(r) => r.is_match(value),
            MatchKind::NotRegex(r) => !r.is_match(value),
        }
    }
}

impl FromStr for LabelMatcher {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let at = text.find(['=', '!']).ok_or_else(|| {
            format!("{text:?} is not name=value, name!=value, name=~re or name!~re")
        })?;
        let name = text[..at].trim();
        let rest = &text[at..];
        let (op, value) = ["=~", "!~", "!=", "="]
            .into_iter()
            .find_map(|op| rest.strip_prefix(op).map(|v| (op, v.trim())))
            .ok_or_else(|| format!("{text:?}: expected = != =~ or !~ after {name}"))?;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("{text:?}: {name:?} is not a label name"));
        }
        let value =
            value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value).to_owned();
        let regex = |v: &str| {
            Regex::new(&format!("^(?:{v})$")).map_err(|e| format!("{text:?}: bad regex: {e}"))
        };
        let kind = match op {
            "=" => MatchKind::Equal(value),
            "!=" => MatchKind::NotEqual(value),
            "=~" => MatchKind::Regex(regex(&value)?),
            _ => MatchKind::NotRegex(regex(&value)?),
        };
        Ok(Self { name: name.to_owned(), kind, text: text.to_owned() })
    }
}

impl fmt::Display for LabelMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_first_matching_child_takes_an_alert_unless_it_continues() {
        let config: RouteConfig = yaml_serde::from_str(
            r#"
receiver: default
group_by: [rule]
group_wait: 1s
routes:
  - matchers: ['severity="critical"']
    receiver: pager
    continue: true
    group_wait: 0s
  - matchers: ['namespace=~"pay-.*"']
    receiver: pay
  - matchers: ['namespace!~"pay-.*"']
    receiver: never
"#,
        )
        .unwrap();
        let root = Route::new(&config);
        let names =
            |l: &Labels| root.matching(l).iter().map(|r| r.receiver.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(&labels(&[("severity", "critical"), ("namespace", "pay-1")])),
            ["pager", "pay"]
        );
        assert_eq!(names(&labels(&[("namespace", "pay-1")])), ["pay"]);
        assert_eq!(names(&labels(&[("namespace", "web")])), ["never"]);
        let pager = root.matching(&labels(&[("severity", "critical")]))[0];
        assert_eq!(
            (pager.group_wait, pager.group_by.clone()),
            (Duration::ZERO, vec!["rule".to_owned()])
        );
        assert_eq!(pager.repeat_interval, REPEAT_INTERVAL);
    }

    #[test]
    fn matchers_parse_or_say_why_not() {
        assert!("a=b".parse::<LabelMatcher>().is_ok());
        assert!("a=~\"(x\"".parse::<LabelMatcher>().unwrap_err().contains("bad regex"));
        assert!("a b".parse::<LabelMatcher>().is_err());
        assert!("-x=1".parse::<LabelMatcher>().unwrap_err().contains("not a label name"));
    }
}
