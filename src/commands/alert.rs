//! `sluice alert`: check an alerts file; see and silence alerts on a running server.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use sluice_alerting::AlertsFile;

#[derive(Debug, Args)]
pub(crate) struct AlertArgs {
    #[command(subcommand)]
    command: AlertCommand,
}

#[derive(Debug, Subcommand)]
enum AlertCommand {
    /// Check an alerts file: keys, durations, queries, conditions, receivers and routes.
    Validate { file: PathBuf },
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
                "{}: ok ({} receivers, {} rules, {} inhibit rules)",
                file.display(),
                alerts.receivers.len(),
                alerts.rules.len(),
                alerts.inhibit_rules.len()
            );
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
