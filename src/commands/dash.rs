//! `sluice dash`: dashboards and monitors kept in Git — checked, rendered for Grafana and
//! KubeSphere, applied to a server, imported from Grafana, and their monitors unit-tested.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use sluice_alerting::AlertsFile;
use sluice_dashboards::dashboard::lint::{self, Context as LintContext};
use sluice_dashboards::dashboard::{Loaded, grafana, import, kubesphere, load, monitors};
use sluice_dashboards::log_metrics::LogMetricsFile;

#[derive(Debug, Args)]
pub(crate) struct DashArgs {
    #[command(subcommand)]
    command: DashCommand,
}

/// The files a dashboard may name besides itself.
#[derive(Debug, Args)]
struct Refs {
    /// The alerts file whose rules monitors name.
    #[arg(long)]
    alerts: Option<PathBuf>,
    /// The log metrics file whose metrics panels name.
    #[arg(long)]
    log_metrics: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum DashCommand {
    /// Check dashboard files: keys, queries, PromQL, fields, variables, the rules and log
    /// metrics they name, and what translates for Grafana's Elasticsearch panels.
    Lint {
        /// A directory of dashboard files (*.yaml), or one file.
        dir: PathBuf,
        #[command(flatten)]
        refs: Refs,
    },
    /// Render dashboards for Grafana (dashboard JSON) or KubeSphere (Dashboard objects).
    Render {
        dir: PathBuf,
        #[arg(long, value_enum)]
        target: Target,
        /// Where the files go, one per dashboard.
        #[arg(long)]
        out: PathBuf,
        /// KubeSphere: a namespaced `Dashboard` here; without it a `ClusterDashboard`.
        #[arg(long)]
        namespace: Option<String>,
        #[command(flatten)]
        refs: Refs,
    },
    /// Run the monitors' unit tests (`*.test.yaml` beside the dashboards, the shape of
    /// `sluice alert test`): the alerts file's rules and the inline monitors.
    Test {
        dir: PathBuf,
        /// The alerts file's receivers render the messages the tests expect.
        #[command(flatten)]
        refs: Refs,
    },
    /// Store the dashboards on a server for its page: each file's difference from what the
    /// server holds is shown first; unchanged ones are left alone.
    Apply {
        dir: PathBuf,
        /// The collector's API, such as http://127.0.0.1:7280.
        #[arg(long)]
        server: String,
        /// An admin's bearer token (or set SLUICE_TOKEN).
        #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Show the differences only.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        refs: Refs,
    },
    /// Turn a Grafana dashboard (JSON) into a dashboard file, saying on stderr what could
    /// not be carried over.
    Import {
        file: PathBuf,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Target {
    Grafana,
    Kubesphere,
}

pub(crate) fn dash(args: DashArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        DashCommand::Lint { dir, refs } => {
            let Some(dashboards) = checked(&dir, &refs)? else { return Ok(ExitCode::FAILURE) };
            println!("{} dashboards, no problems", dashboards.len());
            Ok(ExitCode::SUCCESS)
        }
        DashCommand::Render { dir, target, out, namespace, refs } => {
            let Some(dashboards) = checked(&dir, &refs)? else { return Ok(ExitCode::FAILURE) };
            let metrics = refs.log_metrics.as_deref().map(LogMetricsFile::load).transpose()?;
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            for Loaded { dashboard: d, .. } in &dashboards {
                let (name, text) = match target {
                    Target::Grafana => {
                        (format!("{}.json", d.name), grafana::render(d, metrics.as_ref()))
                    }
                    Target::Kubesphere => {
                        let (text, warnings) =
                            kubesphere::render(d, metrics.as_ref(), namespace.as_deref());
                        for w in warnings {
                            eprintln!("warning: {w}");
                        }
                        (format!("{}.yaml", d.name), text)
                    }
                };
                let path = out.join(name);
                std::fs::write(&path, text)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                println!("{}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        DashCommand::Test { dir, refs } => {
            let Some(dashboards) = checked(&dir, &refs)? else { return Ok(ExitCode::FAILURE) };
            let base = refs.alerts.as_deref().map(AlertsFile::load).transpose()?;
            let file = monitors::with_monitors(&dashboards, base.as_ref());
            let alerts_path = refs.alerts.unwrap_or_else(|| dir.join("alerts.yaml"));
            let tests = monitors::test_files(&dir);
            if tests.is_empty() {
                anyhow::bail!("no monitor tests (*.test.yaml) under {}", dir.display());
            }
            let mut passed = true;
            for path in tests {
                let outcome =
                    monitors::run(&path, &file, &alerts_path).map_err(anyhow::Error::msg)?;
                print!("{}", outcome.report);
                passed &= outcome.passed;
            }
            Ok(if passed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        DashCommand::Apply { dir, server, token, dry_run, refs } => {
            let Some(dashboards) = checked(&dir, &refs)? else { return Ok(ExitCode::FAILURE) };
            super::up::runtime()?.block_on(apply(&dashboards, &server, token.as_deref(), dry_run))
        }
        DashCommand::Import { file, out } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let json: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            let (dashboard, warnings) =
                import::import(&json).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            for w in warnings {
                eprintln!("warning: {}: {w}", file.display());
            }
            let yaml = yaml_serde::to_string(&dashboard).context("cannot write YAML")?;
            match out {
                Some(path) => std::fs::write(&path, yaml)
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None => print!("{yaml}"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The dashboards under `dir` if every one passes lint; else each problem printed, and none.
fn checked(dir: &Path, refs: &Refs) -> anyhow::Result<Option<Vec<Loaded>>> {
    let alerts = refs.alerts.as_deref().map(AlertsFile::load).transpose()?;
    let metrics = refs.log_metrics.as_deref().map(LogMetricsFile::load).transpose()?;
    let (dashboards, mut problems) = load(dir);
    let cx = LintContext { alerts: alerts.as_ref(), log_metrics: metrics.as_ref() };
    problems.extend(lint::lint(&dashboards, &cx));
    if problems.is_empty() {
        return Ok(Some(dashboards));
    }
    for p in &problems {
        eprintln!("{p}");
    }
    eprintln!("sluice: {} problems", problems.len());
    Ok(None)
}

/// `sluice dash apply`: for each file, what the server holds, the difference, then the file.
async fn apply(
    dashboards: &[Loaded],
    server: &str,
    token: Option<&str>,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    let client = reqwest::Client::new();
    let base = server.trim_end_matches('/');
    let request = |method: reqwest::Method, url: String| {
        let r = client.request(method, url);
        match token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    };
    let (mut changed, mut unchanged) = (0, 0);
    for l in dashboards {
        let name = &l.dashboard.name;
        let source = std::fs::read_to_string(&l.path)
            .with_context(|| format!("cannot read {}", l.path.display()))?;
        let url = format!("{base}/api/v1/dashboards/{name}/source");
        let answer = request(reqwest::Method::GET, url.clone())
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let held = match answer.status() {
            reqwest::StatusCode::NOT_FOUND => String::new(),
            s if s.is_success() => {
                let v: serde_json::Value = answer.json().await?;
                v["source"].as_str().unwrap_or("").to_owned()
            }
            s => anyhow::bail!("{url}: {s}: {}", answer.text().await.unwrap_or_default()),
        };
        if held == source {
            println!("{name}: unchanged");
            unchanged += 1;
            continue;
        }
        let diff = similar::TextDiff::from_lines(&held, &source);
        let header = if held.is_empty() { "(new)".to_owned() } else { format!("{server} {name}") };
        print!(
            "{}",
            diff.unified_diff().context_radius(2).header(&header, &l.path.display().to_string())
        );
        changed += 1;
        if dry_run {
            continue;
        }
        let url = format!("{base}/api/v1/dashboards/{name}");
        let answer = request(reqwest::Method::PUT, url.clone())
            .json(&serde_json::json!({"source": source}))
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = answer.status();
        let v: serde_json::Value = answer.json().await.unwrap_or_default();
        if !status.is_success() {
            anyhow::bail!("{name}: {status}: {}", v["error"].as_str().unwrap_or(""));
        }
        println!("{name}: applied");
    }
    let verb = if dry_run { "would change" } else { "changed" };
    println!("{changed} {verb}, {unchanged} unchanged");
    Ok(ExitCode::SUCCESS)
}
