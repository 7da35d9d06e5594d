//! `agent.yaml`: what to tail and where to ship it.
//!
//! Read in two steps, like Vector's configs: a raw serde struct that rejects unknown keys,
//! then [`RawConfig::validate`] into the checked [`AgentConfig`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::AgentError;
use crate::kube_path::{PodMeta, pod_meta};
use crate::multiline::{MultilineConfig, Rule};
use crate::redact::Redactor;
use crate::timestamp::{Stamps, TimeParser, Zone};

/// Where to start in files that already exist when the agent starts for the first time
/// (with no checkpoints). Files that appear later are always read from their start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    Beginning,
    End,
}

/// The config file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// The collector's gRPC endpoint, such as `http://127.0.0.1:7281`, or a list of them:
    /// the agent uses the first that answers and fails over in order.
    pub collector: Collectors,
    /// Where the agent keeps its checkpoints.
    pub data_dir: PathBuf,
    /// Glob patterns of files to tail; `**` crosses directories.
    pub watch: Vec<String>,
    /// The cluster name put on every record.
    #[serde(default = "default_cluster")]
    pub cluster: String,
    /// The node name put on every record; the host name when empty.
    #[serde(default)]
    pub node: String,
    #[serde(default = "default_read_from")]
    pub read_from: ReadFrom,
    /// Lines longer than this are cut to it and flagged `truncated`.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
    /// A batch is sent when it holds this many bytes of records...
    #[serde(default = "default_batch_max_bytes")]
    pub batch_max_bytes: usize,
    /// ...or when its first record has waited this long.
    #[serde(default = "default_batch_linger_ms")]
    pub batch_linger_ms: u64,
    /// How often open files are read for new lines.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// How often the watch patterns are expanded to find new files.
    #[serde(default = "default_scan_interval_ms")]
    pub scan_interval_ms: u64,
    /// TLS to the collector; required when `collector` is `https://`.
    #[serde(default)]
    pub tls: Option<RawTls>,
    /// A file holding this agent's bearer token, such as a mounted Kubernetes secret.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Masking of personal data and secrets in messages, before they leave the node.
    #[serde(default)]
    pub redact: RawRedact,
    /// Sidecar mode: the pod this agent runs in, given to files whose path names no pod.
    /// Values may be `${VAR}`: environment variables the Downward API sets.
    #[serde(default)]
    pub pod: Option<RawPod>,
    /// DaemonSet mode: which pods' files to read, by globs on their names.
    #[serde(default)]
    pub select: RawSelect,
    /// Joining stack traces and other multi-line events into one record.
    #[serde(default)]
    pub multiline: Option<RawMultiline>,
    /// Reading plain-file lines' own times.
    #[serde(default)]
    pub timestamp: RawTimestamp,
    /// Where to serve `/metrics` and `/healthz`, such as `0.0.0.0:9281`; off when unset.
    #[serde(default)]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Pushing the agent's own metrics over OTLP/HTTP as well; off when unset.
    #[serde(default)]
    pub telemetry: Option<RawTelemetry>,
    /// The disk spool between reading and shipping.
    #[serde(default)]
    pub spool: RawSpool,
    /// At most this many files are open at once; beyond it, files that are read to their
    /// end and idle are closed (and reopened when they grow) to let waiting files in.
    #[serde(default = "default_max_open_files")]
    pub max_open_files: usize,
    /// Deleted files stay open until read to their end; while the spool is full, once they
    /// hold more disk than this, the largest are closed and their unread rest dropped
    /// (counted), so a long outage cannot fill the node's disk with deleted logs.
    #[serde(default = "default_max_deleted_bytes")]
    pub max_deleted_bytes: u64,
}

fn default_max_open_files() -> usize {
    1024
}
fn default_max_deleted_bytes() -> u64 {
    1 << 30
}

/// What the spool does when it holds `max_bytes` and the collector has not caught up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Stop reading until the collector acknowledges: nothing is lost, the unread data waits
    /// in the source files.
    Backpressure,
    /// Delete the oldest unacknowledged records to make room (counted as dropped).
    DropOldest,
    /// Discard what was just read (counted as dropped).
    DropNewest,
}

/// The `telemetry:` section as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    /// An OTLP/HTTP metrics URL, such as `http://otel-collector:4318/v1/metrics` (or a
    /// Sluice collector's `/v1/metrics`).
    pub otlp_endpoint: String,
    #[serde(default = "default_telemetry_interval_ms")]
    pub interval_ms: u64,
}

fn default_telemetry_interval_ms() -> u64 {
    10_000
}

/// The `spool:` section as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpool {
    /// The most disk the spool may use, compressed.
    #[serde(default = "default_spool_max_bytes")]
    pub max_bytes: u64,
    #[serde(default = "default_when_full")]
    pub when_full: WhenFull,
    /// Records are synced to disk at least this often; a file's checkpoint moves when its
    /// records are synced, and the shipper sends only synced records.
    #[serde(default = "default_spool_sync_interval_ms")]
    pub sync_interval_ms: u64,
    /// zstd level of the spool's blocks, which are also what goes over the wire: negative
    /// levels trade size for speed.
    #[serde(default = "default_zstd_level")]
    pub zstd_level: i32,
}

impl Default for RawSpool {
    fn default() -> Self {
        Self {
            max_bytes: default_spool_max_bytes(),
            when_full: default_when_full(),
            sync_interval_ms: default_spool_sync_interval_ms(),
            zstd_level: default_zstd_level(),
        }
    }
}

/// Measured on a 1 GiB CRI file (`sluice-bench agent`): level 1 took 8 % more of the agent's
/// CPU than -3, for blocks a fifth smaller.
fn default_zstd_level() -> i32 {
    -3
}

/// The zstd levels allowed: below -7 blocks barely shrink; above 9 the reader cannot keep up
/// with a busy node.
const ZSTD_LEVELS: std::ops::RangeInclusive<i32> = -7..=9;

fn default_spool_max_bytes() -> u64 {
    256 << 20
}
fn default_when_full() -> WhenFull {
    WhenFull::Backpressure
}
fn default_spool_sync_interval_ms() -> u64 {
    100
}

/// The checked `spool:` section.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub max_bytes: u64,
    pub when_full: WhenFull,
    pub sync_interval: Duration,
    pub zstd_level: i32,
}

/// The smallest spool allowed: a few segments of a few batches.
const MIN_SPOOL_BYTES: u64 = 1 << 20;

/// The `timestamp:` section as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimestamp {
    /// How plain-file lines' times are read: `auto` (default: every known shape), `none`
    /// (the time the agent read them), or a strftime format the line starts with.
    #[serde(default)]
    pub format: Option<String>,
    /// The zone of stamps that carry none: `local` (default: the node's zone), `UTC`, an
    /// offset such as `+08:00`, or a name such as `Asia/Shanghai`.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Other settings for the files that match a glob; the first match wins.
    #[serde(default)]
    pub files: Vec<RawTimestampFiles>,
}

/// A `timestamp.files` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimestampFiles {
    pub glob: String,
    /// As `timestamp.format`; the section's when absent.
    #[serde(default)]
    pub format: Option<String>,
    /// As `timestamp.timezone`; the section's when absent.
    #[serde(default)]
    pub timezone: Option<String>,
}

/// How each file's lines get their time.
#[derive(Debug, Clone)]
pub struct TimestampConfig {
    default: (Option<Stamps>, Zone),
    files: Vec<(glob::Pattern, Option<Stamps>, Zone)>,
}

impl TimestampConfig {
    fn new(raw: &RawTimestamp) -> Result<Self, String> {
        let stamps = |key: &str, format: Option<&str>| -> Result<Option<Stamps>, String> {
            match format {
                None | Some("auto") => Ok(Some(Stamps::Auto)),
                Some("none") => Ok(None),
                Some(f) if f.contains('%') => Ok(Some(Stamps::Format(f.to_owned()))),
                Some(f) => Err(format!("{key}: {f:?} is neither auto, none nor a strftime format")),
            }
        };
        let zone = |key: &str, zone: Option<&str>| {
            Zone::parse(zone.unwrap_or("local")).map_err(|e| format!("{key}: {e}"))
        };
        let default = (
            stamps("timestamp.format", raw.format.as_deref())?,
            zone("timestamp.timezone", raw.timezone.as_deref())?,
        );
        let files = raw
            .files
            .iter()
            .map(|f| {
                let glob = glob::Pattern::new(&f.glob)
                    .map_err(|e| format!("timestamp.files: glob {:?}: {e}", f.glob))?;
                let stamps = match &f.format {
                    None => default.0.clone(),
                    Some(format) => stamps("timestamp.files.format", Some(format))?,
                };
                let zone = match &f.timezone {
                    None => default.1.clone(),
                    Some(z) => zone("timestamp.files.timezone", Some(z))?,
                };
                Ok((glob, stamps, zone))
            })
            .collect::<Result<_, String>>()?;
        Ok(TimestampConfig { default, files })
    }

    /// The parser for the lines of `path`, or `None` when they keep the time they are read.
    pub fn parser_for(&self, path: &Path) -> Option<TimeParser> {
        let (stamps, zone) = self
            .files
            .iter()
            .find(|(glob, ..)| glob.matches_path(path))
            .map_or((&self.default.0, &self.default.1), |(_, s, z)| (s, z));
        stamps.clone().map(|s| TimeParser::new(s, zone.clone()))
    }
}

/// The `multiline:` section as written: exactly one of `preset`, `start_pattern` and
/// `continue_pattern`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMultiline {
    /// `java`, `python` or `go`.
    #[serde(default)]
    pub preset: Option<String>,
    /// A line matching this starts a record; others continue it.
    #[serde(default)]
    pub start_pattern: Option<String>,
    /// A line matching this continues the record; others start one.
    #[serde(default)]
    pub continue_pattern: Option<String>,
    /// A record is complete after this long without another line.
    #[serde(default = "default_multiline_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_multiline_max_lines")]
    pub max_lines: usize,
    /// Default: `max_line_bytes`.
    #[serde(default)]
    pub max_bytes: Option<usize>,
}

fn default_multiline_timeout_ms() -> u64 {
    1000
}
fn default_multiline_max_lines() -> usize {
    500
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPod {
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub container: String,
}

/// Globs on namespace, pod and container names. A file of a pod is read when each name
/// matches some `include` (or the list is empty) and no `exclude`. Files whose path names
/// no pod are not filtered.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSelect {
    #[serde(default)]
    pub namespaces: RawPatterns,
    #[serde(default)]
    pub pods: RawPatterns,
    #[serde(default)]
    pub containers: RawPatterns,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPatterns {
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// Checked include and exclude globs for one name.
#[derive(Debug, Clone, Default)]
pub struct NameFilter {
    include: Vec<glob::Pattern>,
    exclude: Vec<glob::Pattern>,
}

impl NameFilter {
    fn new(key: &str, raw: &RawPatterns) -> Result<Self, String> {
        let compile = |list: &[String], which: &str| {
            list.iter()
                .map(|p| {
                    glob::Pattern::new(p)
                        .map_err(|e| format!("select.{key}.{which}: pattern {p:?}: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self {
            include: compile(&raw.include, "include")?,
            exclude: compile(&raw.exclude, "exclude")?,
        })
    }

    pub fn allows(&self, name: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| p.matches(name)))
            && !self.exclude.iter().any(|p| p.matches(name))
    }
}

/// Which pods' files the agent reads.
#[derive(Debug, Clone, Default)]
pub struct Select {
    pub namespaces: NameFilter,
    pub pods: NameFilter,
    pub containers: NameFilter,
}

impl Select {
    /// Whether to read a file with this pod identity (files of no pod always are).
    pub fn allows(&self, meta: &PodMeta) -> bool {
        meta.pod.is_empty()
            || (self.namespaces.allows(&meta.namespace)
                && self.pods.allows(&meta.pod)
                && self.containers.allows(&meta.container))
    }
}

fn multiline_rule(m: &RawMultiline) -> Result<Rule, String> {
    let regex = |key: &str, p: &str| {
        regex::Regex::new(p).map_err(|e| format!("multiline.{key}: invalid pattern: {e}"))
    };
    match (&m.preset, &m.start_pattern, &m.continue_pattern) {
        (Some(name), None, None) => MultilineConfig::preset(name).ok_or_else(|| {
            format!("multiline.preset: unknown preset {name:?}; presets are java, python, go")
        }),
        (None, Some(p), None) => Ok(Rule::Start(regex("start_pattern", p)?)),
        (None, None, Some(p)) => Ok(Rule::Continue(regex("continue_pattern", p)?)),
        _ => {
            Err("multiline: give exactly one of preset, start_pattern, continue_pattern".to_owned())
        }
    }
}

/// `${VAR}` in `value` replaced by the environment variable's value; an unset one is an
/// error naming it and `key`.
fn expand_env(key: &str, value: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start + 2..].find('}') else {
            return Err(format!("{key}: unclosed ${{ in {value:?}"));
        };
        let name = &rest[start + 2..start + 2 + len];
        let var = std::env::var(name)
            .map_err(|_| format!("{key}: environment variable {name} is not set"))?;
        out.push_str(&var);
        rest = &rest[start + 3 + len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The `redact:` section as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedact {
    /// Built-in rules by name, or `all`: cn_mobile, cn_id_card, bank_card, bearer_token,
    /// password.
    #[serde(default)]
    pub builtin: Vec<String>,
    /// User rules, applied after the built-in ones.
    #[serde(default)]
    pub rules: Vec<RawRedactRule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedactRule {
    pub name: String,
    /// A regular expression (Rust `regex` syntax).
    pub pattern: String,
    /// What replaces each match; `$1` and `${name}` refer to groups.
    #[serde(default = "default_replacement")]
    pub replacement: String,
}

fn default_replacement() -> String {
    "[REDACTED]".to_owned()
}

/// One collector endpoint or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Collectors {
    One(String),
    Many(Vec<String>),
}

/// The `tls:` section as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM certificate(s) of the authority that signed the collector's certificate.
    pub ca_file: PathBuf,
    /// The name the collector's certificate must carry; the endpoint's host when unset.
    #[serde(default)]
    pub server_name: Option<String>,
}

/// How the agent checks the collector it talks to.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub ca_pem: Vec<u8>,
    pub server_name: Option<String>,
}

/// The agent's bearer token; `Debug` shows no part of it, so no log line can leak it.
#[derive(Clone)]
pub struct Token(pub String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

fn default_cluster() -> String {
    "default".to_owned()
}
fn default_read_from() -> ReadFrom {
    ReadFrom::Beginning
}
fn default_max_line_bytes() -> usize {
    256 * 1024
}
/// Measured on a 1 GiB CRI file (`sluice-bench agent`), eight batches in flight: 512 KiB
/// batches ship as fast as 1 MiB ones, and the agent's peak RSS is 8 MiB instead of 10.7.
fn default_batch_max_bytes() -> usize {
    512 << 10
}
fn default_batch_linger_ms() -> u64 {
    200
}
fn default_poll_interval_ms() -> u64 {
    100
}
fn default_scan_interval_ms() -> u64 {
    1000
}

/// The checked config.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Collector endpoints in failover order; never empty.
    pub collectors: Vec<String>,
    pub data_dir: PathBuf,
    pub watch: Vec<glob::Pattern>,
    pub cluster: String,
    pub node: String,
    pub read_from: ReadFrom,
    pub max_line_bytes: usize,
    pub batch_max_bytes: usize,
    pub batch_linger: Duration,
    pub poll_interval: Duration,
    pub scan_interval: Duration,
    pub tls: Option<TlsSettings>,
    pub token: Option<Token>,
    pub redact: Redactor,
    /// The sidecar's own pod, for files whose path names none.
    pub pod: Option<PodMeta>,
    pub select: Select,
    pub multiline: Option<MultilineConfig>,
    pub timestamp: TimestampConfig,
    pub metrics_listen: Option<std::net::SocketAddr>,
    pub telemetry: Option<crate::telemetry::OtlpExport>,
    pub spool: SpoolConfig,
    pub max_open_files: usize,
    pub max_deleted_bytes: u64,
}

impl AgentConfig {
    /// Reads and checks a config file; errors name the file and the offending key.
    pub fn load(path: &Path) -> Result<Self, AgentError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| AgentError::ConfigRead { path: path.to_owned(), source })?;
        let raw: RawConfig = yaml_serde::from_str(&text)
            .map_err(|e| AgentError::Config { path: path.to_owned(), message: e.to_string() })?;
        raw.validate().map_err(|message| AgentError::Config { path: path.to_owned(), message })
    }

    /// The pod a file's records belong to: from its path, else the sidecar's own pod.
    pub fn pod_meta(&self, path: &Path) -> PodMeta {
        pod_meta(path).or_else(|| self.pod.clone()).unwrap_or_default()
    }

    /// The identity that, with a file's fingerprint, keys its records' ids.
    pub fn source_identity(&self) -> String {
        format!("{}/{}", self.cluster, self.node)
    }
}

impl RawConfig {
    /// A config with defaults for everything but the essentials, as `sluice up` builds it.
    pub fn new(collector: String, data_dir: PathBuf, watch: Vec<String>) -> Self {
        Self {
            collector: Collectors::One(collector),
            data_dir,
            watch,
            cluster: default_cluster(),
            node: String::new(),
            read_from: default_read_from(),
            max_line_bytes: default_max_line_bytes(),
            batch_max_bytes: default_batch_max_bytes(),
            batch_linger_ms: default_batch_linger_ms(),
            poll_interval_ms: default_poll_interval_ms(),
            scan_interval_ms: default_scan_interval_ms(),
            tls: None,
            token_file: None,
            redact: RawRedact::default(),
            pod: None,
            select: RawSelect::default(),
            multiline: None,
            timestamp: RawTimestamp::default(),
            metrics_listen: None,
            telemetry: None,
            spool: RawSpool::default(),
            max_open_files: default_max_open_files(),
            max_deleted_bytes: default_max_deleted_bytes(),
        }
    }

    pub fn validate(self) -> Result<AgentConfig, String> {
        if self.watch.is_empty() {
            return Err("watch: at least one pattern is needed".to_owned());
        }
        self.checked()
    }

    /// The settings of an agent that tails nothing and forwards records made elsewhere
    /// ([`crate::forward`]): collectors, data dir, cluster, TLS and token; the rest defaults.
    pub fn forwarding(
        collectors: Vec<String>,
        data_dir: PathBuf,
        cluster: String,
        tls: Option<RawTls>,
        token_file: Option<PathBuf>,
    ) -> Self {
        Self {
            collector: Collectors::Many(collectors),
            cluster,
            tls,
            token_file,
            ..Self::new(String::new(), data_dir, Vec::new())
        }
    }

    /// Checked as [`RawConfig::validate`] does, but with no file to watch.
    pub fn validate_forwarding(self) -> Result<AgentConfig, String> {
        self.checked()
    }

    fn checked(self) -> Result<AgentConfig, String> {
        let watch = self
            .watch
            .iter()
            .map(|p| glob::Pattern::new(p).map_err(|e| format!("watch: pattern {p:?}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let collectors = match &self.collector {
            Collectors::One(c) => vec![c.clone()],
            Collectors::Many(list) => list.clone(),
        };
        if collectors.is_empty() {
            return Err("collector: at least one endpoint is needed".to_owned());
        }
        for c in &collectors {
            if !(c.starts_with("http://") || c.starts_with("https://")) {
                return Err(format!("collector: {c:?} must start with http:// or https://"));
            }
        }
        let https = collectors[0].starts_with("https://");
        if collectors.iter().any(|c| c.starts_with("https://") != https) {
            return Err("collector: mix of http:// and https:// endpoints; use one".to_owned());
        }
        if self.max_line_bytes < 1024 {
            return Err(format!(
                "max_line_bytes: {} is below the minimum of 1024",
                self.max_line_bytes
            ));
        }
        if self.batch_max_bytes < self.max_line_bytes {
            return Err(format!(
                "batch_max_bytes: {} is below max_line_bytes ({}), so a long line could never be sent",
                self.batch_max_bytes, self.max_line_bytes
            ));
        }
        if self.spool.max_bytes < MIN_SPOOL_BYTES {
            return Err(format!(
                "spool.max_bytes: {} is below the minimum of {MIN_SPOOL_BYTES}",
                self.spool.max_bytes
            ));
        }
        if !ZSTD_LEVELS.contains(&self.spool.zstd_level) {
            return Err(format!(
                "spool.zstd_level: {} is outside {}..={}",
                self.spool.zstd_level,
                ZSTD_LEVELS.start(),
                ZSTD_LEVELS.end()
            ));
        }
        for (key, value) in [
            ("poll_interval_ms", self.poll_interval_ms),
            ("scan_interval_ms", self.scan_interval_ms),
            ("spool.sync_interval_ms", self.spool.sync_interval_ms),
            ("max_open_files", self.max_open_files as u64),
        ] {
            if value == 0 {
                return Err(format!("{key}: must be above 0"));
            }
        }
        let tls = match (&self.tls, https) {
            (None, true) => {
                return Err("tls.ca_file: required for an https:// collector".to_owned());
            }
            (Some(_), false) => {
                return Err(format!("tls: set, but collector {:?} is not https://", collectors[0]));
            }
            (Some(tls), true) => Some(TlsSettings {
                ca_pem: std::fs::read(&tls.ca_file).map_err(|e| {
                    format!("tls.ca_file: cannot read {}: {e}", tls.ca_file.display())
                })?,
                server_name: tls.server_name.clone(),
            }),
            (None, false) => None,
        };
        let token = match &self.token_file {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("token_file: cannot read {}: {e}", path.display()))?;
                let token = text.trim();
                if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(format!(
                        "token_file: {} must hold one token without spaces",
                        path.display()
                    ));
                }
                Some(Token(token.to_owned()))
            }
        };
        let custom: Vec<(String, String, String)> = self
            .redact
            .rules
            .iter()
            .map(|r| (r.name.clone(), r.pattern.clone(), r.replacement.clone()))
            .collect();
        let redact = Redactor::new(&self.redact.builtin, &custom)?;
        let pod = match &self.pod {
            None => None,
            Some(p) => Some(PodMeta {
                namespace: expand_env("pod.namespace", &p.namespace)?,
                pod: expand_env("pod.name", &p.name)?,
                pod_uid: expand_env("pod.uid", &p.uid)?,
                container: expand_env("pod.container", &p.container)?,
            }),
        };
        if pod.as_ref().is_some_and(|p| p.namespace.is_empty() || p.pod.is_empty()) {
            return Err("pod: namespace and name must not be empty".to_owned());
        }
        let multiline = match &self.multiline {
            None => None,
            Some(m) => Some(MultilineConfig {
                rule: multiline_rule(m)?,
                timeout: Duration::from_millis(m.timeout_ms),
                max_lines: m.max_lines.max(1),
                max_bytes: m.max_bytes.unwrap_or(self.max_line_bytes),
            }),
        };
        let timestamp = TimestampConfig::new(&self.timestamp)?;
        let select = Select {
            namespaces: NameFilter::new("namespaces", &self.select.namespaces)?,
            pods: NameFilter::new("pods", &self.select.pods)?,
            containers: NameFilter::new("containers", &self.select.containers)?,
        };
        let node = if self.node.is_empty() { hostname() } else { self.node };
        Ok(AgentConfig {
            collectors,
            data_dir: self.data_dir,
            watch,
            cluster: self.cluster,
            node,
            read_from: self.read_from,
            max_line_bytes: self.max_line_bytes,
            batch_max_bytes: self.batch_max_bytes,
            batch_linger: Duration::from_millis(self.batch_linger_ms),
            poll_interval: Duration::from_millis(self.poll_interval_ms),
            scan_interval: Duration::from_millis(self.scan_interval_ms),
            tls,
            token,
            redact,
            pod,
            select,
            multiline,
            timestamp,
            metrics_listen: self.metrics_listen,
            telemetry: self.telemetry.map(|t| crate::telemetry::OtlpExport {
                endpoint: t.otlp_endpoint,
                interval: Duration::from_millis(t.interval_ms.max(1)),
            }),
            spool: SpoolConfig {
                max_bytes: self.spool.max_bytes,
                when_full: self.spool.when_full,
                sync_interval: Duration::from_millis(self.spool.sync_interval_ms),
                zstd_level: self.spool.zstd_level,
            },
            max_open_files: self.max_open_files,
            max_deleted_bytes: self.max_deleted_bytes,
        })
    }
}

fn hostname() -> String {
    std::env::var("NODE_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|n| n.trim().to_owned())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<AgentConfig, AgentError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.yaml");
        std::fs::write(&path, text).unwrap();
        AgentConfig::load(&path)
    }

    #[test]
    fn the_example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("agent.example.yaml");
        let config = AgentConfig::load(&path).unwrap();
        assert_eq!(config.watch.len(), 2);
        assert_eq!(config.max_line_bytes, 256 * 1024);
    }

    #[test]
    fn an_unknown_key_is_named_with_the_file() {
        let err =
            load("collector: http://x:1\ndata_dir: /tmp\nwatch: ['*.log']\nmax_line_byte: 5\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("agent.yaml"), "{err}");
        assert!(err.contains("max_line_byte"), "{err}");
        assert!(err.contains("line 4"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let err =
            load("collector: x:1\ndata_dir: /tmp\nwatch: ['*.log']\n").unwrap_err().to_string();
        assert!(err.contains("collector:"), "{err}");
        let err =
            load("collector: http://x:1\ndata_dir: /tmp\nwatch: ['[']\n").unwrap_err().to_string();
        assert!(err.contains("watch: pattern"), "{err}");
        let err =
            load("collector: http://x:1\ndata_dir: /tmp\nwatch: []\n").unwrap_err().to_string();
        assert!(err.contains("at least one"), "{err}");
        let err = load("collector: http://x:1\ndata_dir: /tmp\nwatch: ['*']\nread_from: middle\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("read_from") && err.contains("middle"), "{err}");
    }

    #[test]
    fn sidecar_pod_from_the_environment_and_pod_selection() {
        let base = "collector: http://c:1\ndata_dir: /tmp\nwatch: ['*.log']\n";
        let config = load(&format!(
            "{base}pod:\n  namespace: shop\n  name: ${{HOME}}-x\n  container: app\nselect:\n  namespaces:\n    exclude: [kube-*]\n  pods:\n    include: ['order-*', 'pay-*']\n"
        ))
        .unwrap();
        let home = std::env::var("HOME").unwrap();
        let sidecar = config.pod_meta(Path::new("/data/app.log"));
        assert_eq!(
            (sidecar.namespace.as_str(), sidecar.pod.as_str()),
            ("shop", format!("{home}-x").as_str())
        );
        let from_path = config.pod_meta(Path::new("/var/log/pods/prod_order-1_u/app/0.log"));
        assert_eq!(from_path.namespace, "prod", "the path wins over the sidecar pod");
        let meta = |ns: &str, pod: &str| PodMeta {
            namespace: ns.into(),
            pod: pod.into(),
            container: "app".into(),
            ..PodMeta::default()
        };
        assert!(config.select.allows(&meta("prod", "order-1")));
        assert!(config.select.allows(&meta("dev", "pay-2")));
        assert!(!config.select.allows(&meta("kube-system", "order-1")));
        assert!(!config.select.allows(&meta("prod", "nginx-1")));
        assert!(config.select.allows(&PodMeta::default()), "files of no pod are not filtered");

        let err =
            load(&format!("{base}pod:\n  namespace: ${{SLUICE_TEST_UNSET_VAR}}\n  name: x\n"))
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("pod.namespace: environment variable SLUICE_TEST_UNSET_VAR is not set"),
            "{err}"
        );
        let err =
            load(&format!("{base}select:\n  pods:\n    include: ['[']\n")).unwrap_err().to_string();
        assert!(err.contains("select.pods.include"), "{err}");
        let err = load(&format!("{base}select:\n  namespace: {{}}\n")).unwrap_err().to_string();
        assert!(err.contains("unknown field `namespace`"), "{err}");
    }

    #[test]
    fn spool_settings_are_checked() {
        let base = "collector: http://x:1\ndata_dir: /tmp\nwatch: ['*']\n";
        let config = load(base).unwrap();
        assert_eq!(config.spool.max_bytes, 256 << 20);
        assert_eq!(config.spool.when_full, WhenFull::Backpressure);
        let config =
            load(&format!("{base}spool: {{max_bytes: 4194304, when_full: drop_oldest}}\n"))
                .unwrap();
        assert_eq!(
            (config.spool.max_bytes, config.spool.when_full),
            (4 << 20, WhenFull::DropOldest)
        );
        let err = load(&format!("{base}spool: {{when_full: drop_all}}\n")).unwrap_err().to_string();
        assert!(err.contains("drop_all") && err.contains("backpressure"), "{err}");
        let err = load(&format!("{base}spool: {{max_bytes: 10}}\n")).unwrap_err().to_string();
        assert!(err.contains("spool.max_bytes"), "{err}");
        let err = load(&format!("{base}spool: {{max_byte: 10}}\n")).unwrap_err().to_string();
        assert!(err.contains("max_byte"), "{err}");
        assert_eq!(config.spool.zstd_level, -3);
        let config = load(&format!("{base}spool: {{zstd_level: 3}}\n")).unwrap();
        assert_eq!(config.spool.zstd_level, 3);
        let err = load(&format!("{base}spool: {{zstd_level: 22}}\n")).unwrap_err().to_string();
        assert!(err.contains("spool.zstd_level: 22"), "{err}");
    }

    #[test]
    fn one_or_several_collectors() {
        let base = "data_dir: /tmp\nwatch: ['*.log']\n";
        let one = load(&format!("{base}collector: http://a:1\n")).unwrap();
        assert_eq!(one.collectors, ["http://a:1"]);
        let two = load(&format!("{base}collector: [http://a:1, http://b:1]\n")).unwrap();
        assert_eq!(two.collectors, ["http://a:1", "http://b:1"]);
        for (text, wanted) in [
            ("collector: []\n", "at least one endpoint"),
            ("collector: [http://a:1, b:1]\n", "\"b:1\" must start with"),
            ("collector: [http://a:1, https://b:1]\n", "mix of http:// and https://"),
        ] {
            let err = load(&format!("{base}{text}")).unwrap_err().to_string();
            assert!(err.contains(wanted), "{text}: {err}");
        }
    }

    #[test]
    fn multiline_settings_are_checked() {
        let base = "collector: http://c:1\ndata_dir: /tmp\nwatch: ['*.log']\n";
        let config =
            load(&format!("{base}multiline:\n  preset: java\n  timeout_ms: 300\n")).unwrap();
        let multiline = config.multiline.unwrap();
        assert_eq!(
            (multiline.timeout, multiline.max_lines, multiline.max_bytes),
            (Duration::from_millis(300), 500, 256 * 1024)
        );
        assert!(load(&format!("{base}multiline:\n  start_pattern: '^\\d{{4}}-'\n")).is_ok());
        for (text, wanted) in [
            ("multiline:\n  preset: cobol\n", "unknown preset \"cobol\""),
            ("multiline:\n  preset: java\n  start_pattern: x\n", "exactly one of"),
            ("multiline: {}\n", "exactly one of"),
            (
                "multiline:\n  continue_pattern: '('\n",
                "multiline.continue_pattern: invalid pattern",
            ),
            ("multiline:\n  flush_ms: 5\n", "unknown field `flush_ms`"),
        ] {
            let err = load(&format!("{base}{text}")).unwrap_err().to_string();
            assert!(err.contains(wanted), "{text}: {err}");
        }
    }

    #[test]
    fn redaction_rules_are_checked() {
        let base = "collector: http://c:1\ndata_dir: /tmp\nwatch: ['*.log']\n";
        let config = load(&format!(
            "{base}redact:\n  builtin: [cn_mobile, password]\n  rules:\n    - name: email\n      pattern: '[a-z]+@[a-z.]+'\n"
        ))
        .unwrap();
        let mut text = "a@b.cn 13812345678".to_owned();
        assert!(config.redact.apply(&mut text));
        assert_eq!(text, "[REDACTED] 138****5678");
        let err = load(&format!("{base}redact:\n  builtin: [phone]\n")).unwrap_err().to_string();
        assert!(err.contains("agent.yaml") && err.contains("unknown rule \"phone\""), "{err}");
        let err = load(&format!("{base}redact:\n  rule: []\n")).unwrap_err().to_string();
        assert!(err.contains("unknown field `rule`"), "{err}");
    }

    #[test]
    fn tls_and_token_are_checked_and_the_token_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret-token-value-123\n").unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not checked until connecting").unwrap();
        let base = "data_dir: /tmp\nwatch: ['*.log']\n";
        let config = load(&format!(
            "{base}collector: https://c:1\ntls:\n  ca_file: {}\n  server_name: collector\ntoken_file: {}\n",
            ca.display(),
            token.display()
        ))
        .unwrap();
        assert_eq!(config.token.as_ref().unwrap().0, "s3cret-token-value-123");
        assert_eq!(config.tls.as_ref().unwrap().server_name.as_deref(), Some("collector"));
        assert!(!format!("{config:?}").contains("s3cret"), "Debug must not show the token");

        let err = load(&format!("{base}collector: https://c:1\n")).unwrap_err().to_string();
        assert!(err.contains("tls.ca_file: required"), "{err}");
        let err =
            load(&format!("{base}collector: http://c:1\ntls:\n  ca_file: {}\n", ca.display()))
                .unwrap_err()
                .to_string();
        assert!(err.contains("not https://"), "{err}");
        let err = load(&format!("{base}collector: https://c:1\ntls:\n  ca_file: /nope.pem\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("tls.ca_file: cannot read /nope.pem"), "{err}");
        let err = load(&format!("{base}collector: https://c:1\ntls:\n  ca: x\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `ca`"), "{err}");
        std::fs::write(&token, "two words").unwrap();
        let err = load(&format!("{base}collector: http://c:1\ntoken_file: {}\n", token.display()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("token_file") && !err.contains("two words"), "{err}");
    }
}
