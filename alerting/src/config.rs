//! The alerts file: receivers, the route tree and the rules, as a user writes them. Unknown
//! keys are refused by serde (the message names the key, the line and the column) and the
//! loader adds the file; what serde cannot check (queries, conditions, references between
//! sections) is checked by [`AlertsFile::load`] before anything runs.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use sluice_query::matcher::Matcher;

use crate::AlertError;
use crate::condition::Condition;
use crate::route::LabelMatcher;
use crate::template::Template;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsFile {
    #[serde(default)]
    pub receivers: Vec<Receiver>,
    pub route: RouteConfig,
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    #[serde(default)]
    pub inhibit_rules: Vec<InhibitRule>,
    /// The Prometheus-compatible HTTP API the metric rules ask.
    pub prometheus: Option<PrometheusConfig>,
    #[serde(default)]
    pub metric_rules: Vec<MetricRuleConfig>,
    /// How far behind the wall clock a window closes: records reach the collector this much
    /// after they were written, and an absence rule must not fire before they can have come.
    #[serde(default = "default_evaluation_delay", deserialize_with = "duration")]
    pub evaluation_delay: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receiver {
    pub name: String,
    #[serde(default = "yes")]
    pub send_resolved: bool,
    pub dingtalk: Option<DingTalkConfig>,
    pub email: Option<EmailConfig>,
    pub sms: Option<SmsConfig>,
    pub webhook: Option<WebhookConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DingTalkConfig {
    /// `https://oapi.dingtalk.com/robot/send?access_token=…`
    pub webhook: String,
    pub secret: Option<Secret>,
    pub secret_file: Option<PathBuf>,
    #[serde(default)]
    pub at_mobiles: Vec<String>,
    #[serde(default)]
    pub msgtype: DingTalkType,
    /// What the robot allows a minute; the budget stays one under it.
    #[serde(default = "default_robot_limit")]
    pub per_minute: u32,
    /// How long to pause a robot that answered "too fast" (`130101`).
    #[serde(default = "default_throttle", deserialize_with = "duration")]
    pub throttle_wait: Duration,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DingTalkType {
    #[default]
    Markdown,
    Text,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// `host:port`.
    pub smtp: String,
    #[serde(default)]
    pub tls: EmailTls,
    pub from: String,
    pub to: Vec<String>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    /// A CA to trust besides the system's, for a server with a private certificate.
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmailTls {
    /// Implicit TLS (port 465).
    #[default]
    Tls,
    /// A plain connection upgraded by `STARTTLS` (port 587); refused if the server cannot.
    Starttls,
    /// No TLS: only to a server on loopback.
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsConfig {
    #[serde(default = "default_sms_endpoint")]
    pub endpoint: String,
    pub access_key_id: String,
    pub access_key_secret: Option<Secret>,
    pub access_key_secret_file: Option<PathBuf>,
    pub sign_name: String,
    pub template_code: String,
    pub phone_numbers: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    #[serde(default)]
    pub format: WebhookFormat,
    /// A Feishu bot's signing secret (签名校验); or `secret_file:`.
    pub secret: Option<Secret>,
    pub secret_file: Option<PathBuf>,
    /// What the robot allows a minute (WeCom 20, Feishu 100); the budget stays one under it.
    pub per_minute: Option<u32>,
}

impl WebhookConfig {
    /// The robot's limit a minute: none for a plain JSON webhook.
    pub fn limit(&self) -> Option<u32> {
        match self.format {
            WebhookFormat::Json => self.per_minute,
            WebhookFormat::Wecom => Some(self.per_minute.unwrap_or(20)),
            WebhookFormat::Feishu => Some(self.per_minute.unwrap_or(100)),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// Alertmanager's webhook payload.
    #[default]
    Json,
    /// A WeCom (企业微信) group robot.
    Wecom,
    /// A Feishu (飞书) custom bot.
    Feishu,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub receiver: Option<String>,
    pub group_by: Option<Vec<String>>,
    #[serde(default, deserialize_with = "maybe_duration")]
    pub group_wait: Option<Duration>,
    #[serde(default, deserialize_with = "maybe_duration")]
    pub group_interval: Option<Duration>,
    #[serde(default, deserialize_with = "maybe_duration")]
    pub repeat_interval: Option<Duration>,
    #[serde(default)]
    pub matchers: Vec<String>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitRule {
    #[serde(default)]
    pub source_matchers: Vec<String>,
    #[serde(default)]
    pub target_matchers: Vec<String>,
    #[serde(default)]
    pub equal: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    pub query: String,
    #[serde(deserialize_with = "duration")]
    pub every: Duration,
    #[serde(deserialize_with = "duration")]
    pub window: Duration,
    #[serde(default)]
    pub group_by: Vec<String>,
    pub when: String,
    #[serde(default, rename = "for", deserialize_with = "duration")]
    pub for_: Duration,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub summary: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// `http://prometheus:9090` (Prometheus, Thanos, VictoriaMetrics, Mimir…).
    pub url: String,
    #[serde(default = "default_query_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// A CA to trust besides the system's.
    pub ca_file: Option<PathBuf>,
}

/// A rule as Prometheus writes one: every series `expr` returns is an alert.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricRuleConfig {
    pub name: String,
    pub expr: String,
    #[serde(default = "default_metric_every", deserialize_with = "duration")]
    pub every: Duration,
    #[serde(default, rename = "for", deserialize_with = "duration")]
    pub for_: Duration,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub summary: Option<String>,
}

/// A secret written in the file; `Debug` shows none of it, so no log line can leak it.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

fn yes() -> bool {
    true
}

fn default_evaluation_delay() -> Duration {
    Duration::from_secs(2)
}

fn default_query_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_metric_every() -> Duration {
    Duration::from_secs(30)
}

fn default_robot_limit() -> u32 {
    20
}

fn default_throttle() -> Duration {
    Duration::from_secs(600)
}

fn default_sms_endpoint() -> String {
    "https://dysmsapi.aliyuncs.com/".to_owned()
}

/// `10s`, `5m`, `4h` (humantime), for serde's `deserialize_with`.
pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!("{text:?} is not a duration (10s, 5m, 4h): {e}"))
    })
}

pub(crate) fn maybe_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

/// A metric rule checked, ready to evaluate.
#[derive(Debug, Clone)]
pub struct MetricRule {
    pub name: String,
    pub expr: String,
    pub every: Duration,
    pub for_: Duration,
    pub labels: BTreeMap<String, String>,
    pub summary: Template,
}

/// A rule checked and compiled, ready to evaluate.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    /// The search-language query, as written.
    pub query: String,
    pub matcher: Matcher,
    pub every: Duration,
    pub window: Duration,
    pub group_by: Vec<String>,
    pub condition: Condition,
    pub for_: Duration,
    pub labels: BTreeMap<String, String>,
    pub summary: Template,
}

impl AlertsFile {
    /// Reads and checks an alerts file; every error names the file and what is wrong where.
    pub fn load(path: &Path) -> Result<Self, AlertError> {
        let config = |message: String| AlertError::Config { path: path.to_owned(), message };
        let text = std::fs::read_to_string(path)
            .map_err(|e| config(format!("cannot read the file: {e}")))?;
        let file: AlertsFile = yaml_serde::from_str(&text).map_err(|e| config(e.to_string()))?;
        file.check(path).map_err(config)?;
        Ok(file)
    }

    fn check(&self, path: &Path) -> Result<(), String> {
        let mut names = HashSet::new();
        for (i, r) in self.receivers.iter().enumerate() {
            let at = format!("receivers[{i}] ({})", r.name);
            if !names.insert(r.name.as_str()) {
                return Err(format!("{at}: a second receiver with this name"));
            }
            if r.dingtalk.is_none() && r.email.is_none() && r.sms.is_none() && r.webhook.is_none() {
                return Err(format!("{at}: give at least one of dingtalk, email, sms, webhook"));
            }
            if let Some(d) = &r.dingtalk {
                if d.secret.is_some() && d.secret_file.is_some() {
                    return Err(format!("{at}.dingtalk: give secret or secret_file, not both"));
                }
                if d.per_minute < 2 {
                    return Err(format!("{at}.dingtalk.per_minute: at least 2"));
                }
                if !d.webhook.contains("access_token=") {
                    return Err(format!("{at}.dingtalk.webhook: has no access_token= parameter"));
                }
                if let Some(f) = &d.secret_file {
                    read_secret(path, f).map_err(|e| format!("{at}.dingtalk.secret_file: {e}"))?;
                }
            }
            if let Some(e) = &r.email {
                if e.to.is_empty() {
                    return Err(format!("{at}.email.to: no address"));
                }
                if e.username.is_some() != e.password_file.is_some() {
                    return Err(format!("{at}.email: username and password_file go together"));
                }
                if e.tls == EmailTls::None && !is_loopback(&e.smtp) {
                    return Err(format!(
                        "{at}.email.tls: none is only allowed to a server on loopback, not {}",
                        e.smtp
                    ));
                }
            }
            if let Some(s) = &r.sms {
                match (&s.access_key_secret, &s.access_key_secret_file) {
                    (Some(_), Some(_)) | (None, None) => {
                        return Err(format!(
                            "{at}.sms: give one of access_key_secret, access_key_secret_file"
                        ));
                    }
                    (None, Some(f)) => {
                        read_secret(path, f)
                            .map_err(|e| format!("{at}.sms.access_key_secret_file: {e}"))?;
                    }
                    _ => {}
                }
                if s.phone_numbers.is_empty() || s.phone_numbers.len() > 1000 {
                    return Err(format!("{at}.sms.phone_numbers: 1 to 1000 numbers"));
                }
            }
            if let Some(w) = &r.webhook {
                if (w.secret.is_some() || w.secret_file.is_some())
                    && w.format != WebhookFormat::Feishu
                {
                    return Err(format!(
                        "{at}.webhook.secret: only a Feishu bot signs (format: feishu)"
                    ));
                }
                if w.secret.is_some() && w.secret_file.is_some() {
                    return Err(format!("{at}.webhook: give secret or secret_file, not both"));
                }
                if let Some(f) = &w.secret_file {
                    read_secret(path, f).map_err(|e| format!("{at}.webhook.secret_file: {e}"))?;
                }
                if w.per_minute.is_some_and(|n| n < 2) {
                    return Err(format!("{at}.webhook.per_minute: at least 2"));
                }
            }
        }
        check_route(&self.route, "route", &names, true)?;
        let mut rules = HashSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            if !rules.insert(r.name.as_str()) {
                return Err(format!("rules[{i}] ({}): a second rule with this name", r.name));
            }
            self.rule(i)?;
        }
        for (i, r) in self.metric_rules.iter().enumerate() {
            if !rules.insert(r.name.as_str()) {
                return Err(format!(
                    "metric_rules[{i}] ({}): a second rule with this name",
                    r.name
                ));
            }
            self.metric_rule(i)?;
        }
        if !self.metric_rules.is_empty() && self.prometheus.is_none() {
            return Err("metric_rules: give prometheus.url, the API they ask".to_owned());
        }
        if let Some(p) = &self.prometheus
            && !(p.url.starts_with("http://") || p.url.starts_with("https://"))
        {
            return Err(format!("prometheus.url: {} is not an http(s) URL", p.url));
        }
        for (i, rule) in self.inhibit_rules.iter().enumerate() {
            for m in rule.source_matchers.iter().chain(&rule.target_matchers) {
                m.parse::<LabelMatcher>().map_err(|e| format!("inhibit_rules[{i}]: {e}"))?;
            }
        }
        Ok(())
    }

    /// The `i`th rule, compiled; the error names the rule and the key.
    pub fn rule(&self, i: usize) -> Result<Rule, String> {
        let r = &self.rules[i];
        let at = format!("rules[{i}] ({})", r.name);
        let matcher = Matcher::new(&r.query).map_err(|e| format!("{at}.query: {e}"))?;
        let condition = r.when.parse::<Condition>().map_err(|e| format!("{at}.when: {e}"))?;
        if r.every.is_zero() || r.every.subsec_nanos() != 0 {
            return Err(format!("{at}.every: a whole number of seconds, at least 1s"));
        }
        if r.window.is_zero() || !r.window.as_secs().is_multiple_of(r.every.as_secs()) {
            return Err(format!(
                "{at}.window: a multiple of every ({})",
                humantime::format_duration(r.every)
            ));
        }
        if r.window.as_secs() / r.every.as_secs() > 10_000 {
            return Err(format!("{at}.window: at most 10,000 times every"));
        }
        for field in &r.group_by {
            if !Matcher::is_keyword_field(field) {
                return Err(format!(
                    "{at}.group_by: {field} is not a keyword field (namespace, pod, container, level, labels.<key>, …)"
                ));
            }
        }
        let mut known: Vec<&str> = vec!["count", "rule", "previous", "occurrences"];
        known.extend(r.group_by.iter().map(String::as_str));
        known.extend(r.labels.keys().map(String::as_str));
        let summary =
            Template::new(r.summary.as_deref().unwrap_or("{{ rule }}: {{ count }}"), &known)
                .map_err(|e| format!("{at}.summary: {e}"))?;
        Ok(Rule {
            name: r.name.clone(),
            query: r.query.clone(),
            matcher,
            every: r.every,
            window: r.window,
            group_by: r.group_by.clone(),
            condition,
            for_: r.for_,
            labels: r.labels.clone(),
            summary,
        })
    }

    /// The `i`th metric rule, checked: its PromQL parses and gives an instant vector or a
    /// scalar; the error names the rule and the key.
    pub fn metric_rule(&self, i: usize) -> Result<MetricRule, String> {
        use promql_parser::parser::value::ValueType;
        let r = &self.metric_rules[i];
        let at = format!("metric_rules[{i}] ({})", r.name);
        let expr = promql_parser::parser::parse(&r.expr).map_err(|e| format!("{at}.expr: {e}"))?;
        match expr.value_type() {
            ValueType::Vector | ValueType::Scalar => {}
            other => {
                return Err(format!(
                    "{at}.expr: gives a {other}, a rule needs an instant vector or a scalar"
                ));
            }
        }
        if r.every.as_millis() < 1000 {
            return Err(format!("{at}.every: at least 1s"));
        }
        let mut known: Vec<&str> = vec!["value", "rule", "labels.*"];
        known.extend(r.labels.keys().map(String::as_str));
        let summary =
            Template::new(r.summary.as_deref().unwrap_or("{{ rule }}: {{ value }}"), &known)
                .map_err(|e| format!("{at}.summary: {e}"))?;
        Ok(MetricRule {
            name: r.name.clone(),
            expr: r.expr.clone(),
            every: r.every,
            for_: r.for_,
            labels: r.labels.clone(),
            summary,
        })
    }

    /// Every metric rule, checked.
    pub fn metric_rules(&self) -> Vec<MetricRule> {
        (0..self.metric_rules.len())
            .map(|i| self.metric_rule(i).expect("checked at load"))
            .collect()
    }

    /// Every rule, compiled.
    pub fn rules(&self) -> Vec<Rule> {
        (0..self.rules.len()).map(|i| self.rule(i).expect("checked at load")).collect()
    }
}

fn check_route(
    route: &RouteConfig,
    at: &str,
    receivers: &HashSet<&str>,
    root: bool,
) -> Result<(), String> {
    match &route.receiver {
        Some(r) if !receivers.contains(r.as_str()) => {
            return Err(format!("{at}.receiver: no receiver is named {r}"));
        }
        None if root => return Err(format!("{at}.receiver: the root route needs a receiver")),
        _ => {}
    }
    if root && !route.matchers.is_empty() {
        return Err(format!("{at}.matchers: the root route matches every alert"));
    }
    for m in &route.matchers {
        m.parse::<LabelMatcher>().map_err(|e| format!("{at}.matchers: {e}"))?;
    }
    for (i, child) in route.routes.iter().enumerate() {
        check_route(child, &format!("{at}.routes[{i}]"), receivers, false)?;
    }
    Ok(())
}

fn is_loopback(host_port: &str) -> bool {
    let host = host_port.rsplit_once(':').map_or(host_port, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A secret from a file, relative to the alerts file; surrounding whitespace dropped.
pub fn read_secret(alerts_file: &Path, file: &Path) -> Result<Secret, String> {
    let path = match file.is_absolute() {
        true => file.to_owned(),
        false => alerts_file.parent().unwrap_or(Path::new(".")).join(file),
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(Secret(secret.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<AlertsFile, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.yaml");
        std::fs::write(&path, text).unwrap();
        AlertsFile::load(&path).map_err(|e| e.to_string())
    }

    const GOOD: &str = r#"
receivers:
  - name: oncall
    send_resolved: false
    dingtalk:
      webhook: "https://oapi.dingtalk.com/robot/send?access_token=abc"
      secret: "SECabc"
      at_mobiles: ["13800000000"]
    email:
      smtp: "smtp.example.com:465"
      tls: tls
      from: "sluice@example.com"
      to: ["oncall@example.com"]
route:
  receiver: oncall
  group_by: [rule, namespace]
  group_wait: 5s
  group_interval: 30s
  repeat_interval: 4h
rules:
  - name: pay-failures
    query: '支付失败 AND level:error'
    every: 10s
    window: 10m
    group_by: [namespace]
    when: 'count >= 3'
    for: 0s
    labels: {severity: critical}
    summary: '{{ namespace }}: {{ count }} 支付失败'
"#;

    #[test]
    fn the_issue_example_loads() {
        let file = load(GOOD).unwrap();
        let rules = file.rules();
        assert_eq!(rules[0].window, Duration::from_secs(600));
        assert!(!file.receivers[0].send_resolved);
        assert!(format!("{:?}", file.receivers[0].dingtalk).contains("Secret(…)"));
        assert!(!format!("{:?}", file.receivers[0].dingtalk).contains("SECabc"));
    }

    #[test]
    fn unknown_keys_name_the_key_the_file_and_the_line() {
        let err = load(&GOOD.replace("at_mobiles", "at_mobile")).unwrap_err();
        assert!(err.contains("alerts.yaml"), "{err}");
        assert!(err.contains("unknown field `at_mobile`"), "{err}");
        assert!(err.contains("line 8"), "{err}");
    }

    #[test]
    fn semantic_mistakes_say_where() {
        for (from, to, says) in [
            ("receiver: oncall", "receiver: nobody", "route.receiver: no receiver is named nobody"),
            ("'count >= 3'", "'count >>= 3'", "rules[0] (pay-failures).when"),
            ("window: 10m", "window: 15s", "window: a multiple of every"),
            ("group_by: [namespace]", "group_by: [nmespace]", "nmespace is not a keyword field"),
            ("{{ count }} 支付失败", "{{ cnt }}", "summary: unknown name cnt"),
            ("level:error'", "level:'", "rules[0] (pay-failures).query"),
            ("tls: tls", "tls: none", "none is only allowed to a server on loopback"),
            ("every: 10s", "every: soon", "\"soon\" is not a duration"),
        ] {
            let err = load(&GOOD.replace(from, to)).unwrap_err();
            assert!(err.contains(says), "{from} → {to}: {err}");
        }
    }

    #[test]
    fn metric_rules_are_checked_at_load() {
        let with = |rule: &str| {
            format!("{GOOD}prometheus: {{url: \"http://127.0.0.1:9090\"}}\nmetric_rules:\n{rule}")
        };
        let good = "  - {name: up, expr: 'up == 0', for: 1m, summary: '{{ labels.job }} is {{ value }}'}\n";
        let file = load(&with(good)).unwrap();
        assert_eq!(file.metric_rules()[0].every, Duration::from_secs(30));
        for (rule, says) in [
            ("  - {name: up, expr: 'up{job=\"a\" == 0'}\n", "metric_rules[0] (up).expr"),
            ("  - {name: up, expr: 'up[5m]'}\n", "gives a matrix"),
            ("  - {name: up, expr: 'up', summary: '{{ job }}'}\n", "unknown name job"),
            ("  - {name: pay-failures, expr: 'up'}\n", "a second rule with this name"),
            ("  - {name: up, exp: 'up'}\n", "unknown field `exp`"),
        ] {
            let err = load(&with(rule)).unwrap_err();
            assert!(err.contains(says), "{rule}: {err}");
        }
        let err = load(&format!("{GOOD}metric_rules:\n{good}")).unwrap_err();
        assert!(err.contains("give prometheus.url"), "{err}");
    }
}
