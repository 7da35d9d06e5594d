//! `sluice alert`: check and unit-test an alerts file, replay stored records through it; see
//! and silence alerts on a running server.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use sluice_alerting::AlertsFile;
use sluice_proto::LogRecord;
use sluice_query::collect::Order;
use sluice_query::search::Cursor;
use sluice_query::{Hit, SearchRequest};

use super::search::{Source, now_ns};

#[derive(Debug, Args)]
pub(crate) struct AlertArgs {
    #[command(subcommand)]
    command: AlertCommand,
}

#[derive(Debug, Subcommand)]
enum AlertCommand {
    /// Check an alerts file: keys, durations, queries, conditions, receivers and routes.
    Validate { file: PathBuf },
    /// Run unit tests of rules (promtool-style): input lines and events, expected alerts, and
    /// each channel's messages rendered offline and checked against the services' limits.
    Test {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Replay stored records through the rules: firings, notifications, and the messages each
    /// channel would have sent (with what its budget would have merged into digests).
    Backtest {
        /// The alerts file.
        #[arg(long)]
        alerts: PathBuf,
        /// How far back: `7d`, `24h`.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "7d")]
        since: std::time::Duration,
        /// Read the index in this data directory (as given to `sluice up`).
        #[arg(long, conflicts_with = "server")]
        data_dir: Option<PathBuf>,
        /// Read through a running server, such as http://127.0.0.1:7280.
        #[arg(long)]
        server: Option<String>,
        /// Bearer token for --server (or set SLUICE_TOKEN).
        #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Firing, pending and silenced alerts, and how each channel is doing.
    Status(Server),
    /// Silence the alerts matching every --matcher for a while.
    Silence {
        #[command(flatten)]
        server: Server,
        /// `name=value`, `name!=value`, `name=~regex`, `name!~regex`; repeat for more.
        #[arg(long = "matcher", required = true)]
        matchers: Vec<String>,
        /// How long: `30m`, `2h`.
        #[arg(long)]
        duration: String,
        /// Who silences (shown with the silence).
        #[arg(long)]
        created_by: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// End a silence now.
    Expire {
        #[command(flatten)]
        server: Server,
        id: String,
    },
}

#[derive(Debug, Args)]
struct Server {
    /// The collector's API, such as http://127.0.0.1:7280.
    #[arg(long)]
    server: String,
    /// Bearer token (or set SLUICE_TOKEN).
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

pub(crate) fn alert(args: AlertArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        AlertCommand::Validate { file } => {
            let alerts = AlertsFile::load(&file)?;
            println!(
                "{}: ok ({} receivers, {} rules, {} metric rules, {} inhibit rules)",
                file.display(),
                alerts.receivers.len(),
                alerts.rules.len(),
                alerts.metric_rules.len(),
                alerts.inhibit_rules.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        AlertCommand::Test { files } => {
            let mut passed = true;
            for file in files {
                let outcome = sluice_alerting::rule_test::run(&file)?;
                print!("{}", outcome.report);
                passed &= outcome.passed;
            }
            Ok(if passed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        AlertCommand::Backtest { alerts, since, data_dir, server, token } => {
            let file = AlertsFile::load(&alerts)?;
            let source = Source::open(server.as_deref(), token, data_dir)?;
            let end_ns = now_ns();
            let start_ns = end_ns - since.as_nanos() as i64;
            let mut streams = Vec::new();
            for rule in &file.rules {
                let mut request = SearchRequest::new(rule.query.clone());
                request.start_ns = Some(start_ns);
                request.end_ns = Some(end_ns);
                request.order = Order::Oldest;
                request.limit = 2_000;
                request.force = true;
                streams.push(Pages {
                    source: &source,
                    request,
                    page: Vec::new().into_iter(),
                    done: false,
                });
            }
            let mut records = Merge::new(streams)?;
            let report = sluice_alerting::backtest::run(
                &file,
                &alerts,
                start_ns / 1_000_000,
                end_ns / 1_000_000,
                &mut records,
            )?;
            if let Some(e) = records.error {
                return Err(e.context("reading the stored records"));
            }
            println!(
                "backtest of {} over the last {}:",
                alerts.display(),
                humantime::format_duration(since)
            );
            print!("{}", report.render());
            Ok(ExitCode::SUCCESS)
        }
        AlertCommand::Status(server) => {
            let alerts = call(&server, reqwest::Method::GET, "/api/v1/alerts", None)?;
            let status = call(&server, reqwest::Method::GET, "/api/v1/alerts/status", None)?;
            for a in alerts["alerts"].as_array().into_iter().flatten() {
                println!(
                    "{:<9} {} {}",
                    a["state"].as_str().unwrap_or(""),
                    a["labels"],
                    a["annotations"]["summary"].as_str().unwrap_or("")
                );
            }
            for c in status["channels"].as_array().into_iter().flatten() {
                println!(
                    "channel {:<24} {:<13} queued {:<4} {}",
                    c["channel"].as_str().unwrap_or(""),
                    c["state"].as_str().unwrap_or(""),
                    c["queued"],
                    c["last_error"].as_str().unwrap_or("")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AlertCommand::Silence { server, matchers, duration, created_by, comment } => {
            let body = serde_json::json!({
                "matchers": matchers, "duration": duration, "created_by": created_by, "comment": comment,
            });
            let answer = call(&server, reqwest::Method::POST, "/api/v1/silences", Some(body))?;
            println!("silence {}", answer["id"].as_str().unwrap_or(""));
            Ok(ExitCode::SUCCESS)
        }
        AlertCommand::Expire { server, id } => {
            call(&server, reqwest::Method::DELETE, &format!("/api/v1/silences/{id}"), None)?;
            println!("expired {id}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One rule's matches, oldest first, page after page.
struct Pages<'a> {
    source: &'a Source,
    request: SearchRequest,
    page: std::vec::IntoIter<Hit>,
    done: bool,
}

impl Pages<'_> {
    fn next_hit(&mut self) -> anyhow::Result<Option<Hit>> {
        loop {
            if let Some(hit) = self.page.next() {
                return Ok(Some(hit));
            }
            if self.done {
                return Ok(None);
            }
            let response = self.source.search(&self.request)?;
            match response.next_cursor {
                Some(cursor) => self.request.cursor = Some(cursor.parse::<Cursor>()?),
                None => self.done = true,
            }
            self.page = response.hits.into_iter();
        }
    }
}

/// The rules' matches as one stream of records, oldest first, read a page at a time; a record
/// two rules match is replayed once (the same id). The first error ends the stream and is kept.
struct Merge<'a> {
    streams: Vec<Pages<'a>>,
    heads: Vec<Option<(i64, Hit)>>,
    seen_at: (i64, std::collections::HashSet<String>),
    error: Option<anyhow::Error>,
}

impl<'a> Merge<'a> {
    fn new(mut streams: Vec<Pages<'a>>) -> anyhow::Result<Self> {
        let heads = streams.iter_mut().map(head).collect::<anyhow::Result<_>>()?;
        Ok(Self { streams, heads, seen_at: (i64::MIN, Default::default()), error: None })
    }

    fn step(&mut self) -> anyhow::Result<Option<LogRecord>> {
        loop {
            let Some(i) = (0..self.heads.len())
                .filter(|i| self.heads[*i].is_some())
                .min_by_key(|i| self.heads[*i].as_ref().map(|(t, _)| *t))
            else {
                return Ok(None);
            };
            let (t, hit) = self.heads[i].take().expect("a head");
            self.heads[i] = head(&mut self.streams[i])?;
            if t != self.seen_at.0 {
                self.seen_at = (t, Default::default());
            }
            if self.seen_at.1.insert(hit.id.clone()) {
                return sluice_alerting::backtest::hit_record(&hit)
                    .map(Some)
                    .map_err(anyhow::Error::msg);
            }
        }
    }
}

impl Iterator for Merge<'_> {
    type Item = LogRecord;

    fn next(&mut self) -> Option<LogRecord> {
        if self.error.is_some() {
            return None;
        }
        self.step().unwrap_or_else(|e| {
            self.error = Some(e);
            None
        })
    }
}

fn head(stream: &mut Pages<'_>) -> anyhow::Result<Option<(i64, Hit)>> {
    Ok(match stream.next_hit()? {
        Some(hit) => {
            let t = sluice_query::time::parse_time("ts", &hit.ts)?;
            Some((t, hit))
        }
        None => None,
    })
}

fn call(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<serde_json::Value> {
    let url = format!("{}{path}", server.server.trim_end_matches('/'));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut request = reqwest::Client::new().request(method, &url);
        if let Some(token) = &server.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        let value: serde_json::Value =
            response.json().await.with_context(|| format!("{url}: unreadable answer"))?;
        if !status.is_success() {
            anyhow::bail!("{url}: {status}: {}", value["error"].as_str().unwrap_or(""));
        }
        Ok(value)
    })
}
