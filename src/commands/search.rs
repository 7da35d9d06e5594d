//! `sluice search`: a query against a data directory or a running server; with `--all`, every
//! match page by page (an export), with a progress bar when stderr is a terminal.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use sluice_query::collect::Order;
use sluice_query::search::Cursor;
use sluice_query::time::parse_time;
use sluice_query::{Hit, SearchRequest, SearchResponse, Store};

#[derive(Debug, Args)]
pub(crate) struct SearchArgs {
    /// The query: words, "phrases", field:value (cluster, namespace, pod, container, stream,
    /// level, node, file), field:glob* , ts:[A TO B], AND / OR / NOT, parentheses.
    query: String,
    /// Search the index in this data directory (as given to `sluice up`).
    #[arg(long, conflicts_with = "server")]
    data_dir: Option<PathBuf>,
    /// Search through a running server, such as http://127.0.0.1:7280.
    #[arg(long)]
    server: Option<String>,
    /// Bearer token for --server (or set SLUICE_TOKEN).
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Only records newer than this, such as 15m, 2h or 7d.
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "start")]
    since: Option<Duration>,
    /// Only records at or after this time (RFC 3339 or Unix nanoseconds).
    #[arg(long)]
    start: Option<String>,
    /// Only records before this time (RFC 3339 or Unix nanoseconds).
    #[arg(long)]
    end: Option<String>,
    /// How many hits to print (per page with --all).
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Print every match, page after page: no cap.
    #[arg(long)]
    all: bool,
    /// Oldest first instead of newest first.
    #[arg(long)]
    oldest_first: bool,
    /// How to print hits.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Same as --format json: the API's response object.
    #[arg(long, conflicts_with_all = ["format", "all"])]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// `<time> <namespace/pod/container> <level> <message>`
    Text,
    /// The API's JSON response (one page).
    Json,
    /// One hit per line as JSON.
    Ndjson,
    Csv,
}

pub(crate) fn search(args: SearchArgs) -> anyhow::Result<ExitCode> {
    let start_ns = match (&args.since, &args.start) {
        (Some(since), _) => Some(now_ns() - since.as_nanos() as i64),
        (None, Some(start)) => Some(parse_time("start", start)?),
        (None, None) => None,
    };
    let end_ns = args.end.as_deref().map(|e| parse_time("end", e)).transpose()?;
    let format = if args.json { Format::Json } else { args.format };
    if format == Format::Json && args.all {
        anyhow::bail!("--all prints hits one by one; use --format ndjson or csv");
    }
    let mut request = SearchRequest::new(args.query.clone());
    request.start_ns = start_ns;
    request.end_ns = end_ns;
    request.limit = args.limit;
    request.order = if args.oldest_first { Order::Oldest } else { Order::Newest };
    let source = Source::open(args.server.as_deref(), args.token.clone(), args.data_dir.clone())?;

    let mut out = std::io::stdout().lock();
    let mut csv = (format == Format::Csv).then(|| csv::Writer::from_writer(std::io::stdout()));
    if let Some(w) = &mut csv {
        w.write_record([
            "ts",
            "cluster",
            "namespace",
            "pod",
            "container",
            "level",
            "id",
            "message",
        ])?;
    }
    let mut progress: Option<ProgressBar> = None;
    let mut printed = 0u64;
    loop {
        let response = source.search(&request)?;
        if format == Format::Json {
            serde_json::to_writer(&mut out, &response)?;
            writeln!(out)?;
            return Ok(ExitCode::SUCCESS);
        }
        if args.all && progress.is_none() {
            // Drawn only when stderr is a terminal: piped runs stay quiet.
            let bar = ProgressBar::new(response.total);
            bar.set_style(
                ProgressStyle::with_template("{bar:40} {pos}/{len} hits {per_sec} eta {eta}")
                    .expect("valid template"),
            );
            progress = Some(bar);
        }
        for hit in &response.hits {
            print_hit(&mut out, csv.as_mut(), format, hit)?;
        }
        if let Some(w) = &mut csv {
            w.flush()?;
        }
        printed += response.hits.len() as u64;
        if let Some(bar) = &progress {
            bar.set_position(printed);
        }
        match response.next_cursor {
            Some(cursor) if args.all => request.cursor = Some(cursor.parse::<Cursor>()?),
            _ => {
                if let Some(bar) = progress {
                    bar.finish_and_clear();
                }
                if !args.all && format == Format::Text {
                    eprintln!(
                        "{} of {} hits ({} ms)",
                        response.hits.len(),
                        response.total,
                        response.took_ms
                    );
                }
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
}

fn print_hit(
    out: &mut impl Write,
    csv: Option<&mut csv::Writer<std::io::Stdout>>,
    format: Format,
    hit: &Hit,
) -> anyhow::Result<()> {
    match format {
        Format::Text => {
            let source = [hit.namespace.as_str(), &hit.pod, &hit.container]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join("/");
            let source = if source.is_empty() { hit.file.as_str() } else { source.as_str() };
            let level = if hit.level.is_empty() { "-" } else { hit.level.as_str() };
            writeln!(out, "{} {source} {level} {}", hit.ts, hit.message)?;
        }
        Format::Ndjson => {
            serde_json::to_writer(&mut *out, hit)?;
            writeln!(out)?;
        }
        Format::Csv => {
            if let Some(w) = csv {
                w.write_record([
                    &hit.ts,
                    &hit.cluster,
                    &hit.namespace,
                    &hit.pod,
                    &hit.container,
                    &hit.level,
                    &hit.id,
                    &hit.message,
                ])?;
            }
        }
        Format::Json => unreachable!("json prints the whole response"),
    }
    Ok(())
}

/// Where hits come from: the local index, or a server over HTTP.
pub(crate) enum Source {
    Local(std::sync::Arc<Store>),
    Remote { url: String, token: Option<String>, runtime: tokio::runtime::Runtime },
}

impl Source {
    /// A server's API when `server` is given, else the index under `data_dir` (`./data`).
    pub(crate) fn open(
        server: Option<&str>,
        token: Option<String>,
        data_dir: Option<PathBuf>,
    ) -> anyhow::Result<Self> {
        match (server, data_dir) {
            (Some(server), _) => Ok(Source::Remote {
                url: format!("{}/api/v1/search", server.trim_end_matches('/')),
                token,
                runtime: tokio::runtime::Builder::new_current_thread().enable_all().build()?,
            }),
            (None, data_dir) => {
                let dir = data_dir.unwrap_or_else(|| PathBuf::from("./data")).join("index");
                let store = Store::open_read_only(&dir)
                    .with_context(|| format!("cannot open the index in {}", dir.display()))?;
                Ok(Source::Local(store))
            }
        }
    }

    pub(crate) fn search(&self, request: &SearchRequest) -> anyhow::Result<SearchResponse> {
        match self {
            Source::Local(store) => Ok(store.search(request)?),
            Source::Remote { url, token, runtime } => {
                let mut params =
                    vec![("q", request.query.clone()), ("limit", request.limit.to_string())];
                params.extend(request.start_ns.map(|s| ("start", s.to_string())));
                params.extend(request.end_ns.map(|e| ("end", e.to_string())));
                params.extend(request.cursor.map(|c| ("cursor", c.to_string())));
                if request.order == Order::Oldest {
                    params.push(("order", "oldest".to_owned()));
                }
                runtime.block_on(remote(url, token.as_deref(), &params))
            }
        }
    }
}

async fn remote(
    url: &str,
    token: Option<&str>,
    params: &[(&str, String)],
) -> anyhow::Result<SearchResponse> {
    // A form POST, not a GET: a pasted query may not fit a URL.
    let mut request = reqwest::Client::new().post(url).form(params);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    let body = response.text().await.with_context(|| format!("cannot read the answer of {url}"))?;
    if !status.is_success() {
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or(body);
        anyhow::bail!("{url} answered {status}: {message}");
    }
    serde_json::from_str(&body).with_context(|| format!("unexpected answer from {url}"))
}

pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}
