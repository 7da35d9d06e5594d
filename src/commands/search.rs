//! `sluice search`: one query, from a data directory or a running server.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use sluice_query::api::parse_time;
use sluice_query::{SearchRequest, SearchResponse, Store};

#[derive(Debug, Args)]
pub(crate) struct SearchArgs {
    /// The query: words, "phrases", field:value (cluster, namespace, pod, container, stream,
    /// level, node, file), AND / OR / NOT, parentheses.
    query: String,
    /// Search the index in this data directory (as given to `sluice up`).
    #[arg(long, conflicts_with = "server")]
    data_dir: Option<PathBuf>,
    /// Search through a running server, such as http://127.0.0.1:7280.
    #[arg(long)]
    server: Option<String>,
    /// Only records newer than this, such as 15m, 2h or 7d.
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "start")]
    since: Option<Duration>,
    /// Only records at or after this time (RFC 3339 or Unix nanoseconds).
    #[arg(long)]
    start: Option<String>,
    /// Only records before this time (RFC 3339 or Unix nanoseconds).
    #[arg(long)]
    end: Option<String>,
    /// How many hits to print, newest first.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Print the API's JSON instead of one line per hit.
    #[arg(long)]
    json: bool,
}

pub(crate) fn search(args: SearchArgs) -> anyhow::Result<ExitCode> {
    let start_ns = match (&args.since, &args.start) {
        (Some(since), _) => Some(now_ns() - since.as_nanos() as i64),
        (None, Some(start)) => Some(parse_time("start", start)?),
        (None, None) => None,
    };
    let end_ns = args.end.as_deref().map(|e| parse_time("end", e)).transpose()?;
    let request = SearchRequest { query: args.query.clone(), start_ns, end_ns, limit: args.limit };
    let response = match (&args.server, &args.data_dir) {
        (Some(server), _) => remote(server, &request)?,
        (None, data_dir) => {
            let dir = data_dir.clone().unwrap_or_else(|| PathBuf::from("./data")).join("index");
            let store = Store::open_read_only(&dir)
                .with_context(|| format!("cannot open the index in {}", dir.display()))?;
            store.search(&request)?
        }
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, &response)?;
        writeln!(out)?;
    } else {
        for hit in &response.hits {
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
        eprintln!("{} of {} hits ({} ms)", response.hits.len(), response.total, response.took_ms);
    }
    Ok(ExitCode::SUCCESS)
}

fn remote(server: &str, request: &SearchRequest) -> anyhow::Result<SearchResponse> {
    let url = format!("{}/api/v1/search", server.trim_end_matches('/'));
    let mut params = vec![("q", request.query.clone()), ("limit", request.limit.to_string())];
    params.extend(request.start_ns.map(|s| ("start", s.to_string())));
    params.extend(request.end_ns.map(|e| ("end", e.to_string())));
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
        let response = reqwest::Client::new()
            .get(&url)
            .query(&params)
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        let body =
            response.text().await.with_context(|| format!("cannot read the answer of {url}"))?;
        if !status.is_success() {
            let message = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or(body);
            anyhow::bail!("{url} answered {status}: {message}");
        }
        serde_json::from_str(&body).with_context(|| format!("unexpected answer from {url}"))
    })
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}
