//! `sluice alert backtest`: stored records replayed through the rules on a simulated clock —
//! how often each rule would have fired, how many notifications that makes, and how many
//! messages each channel would have sent, with what its budget would have merged into digests.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use sluice_proto::id::RecordId;
use sluice_proto::{KubeEvent, LogRecord, Stream};
use sluice_query::Hit;

use crate::AlertError;
use crate::config::AlertsFile;
use crate::simulate::Simulation;

/// What the rules would have done.
#[derive(Debug, Default)]
pub struct Report {
    pub records: u64,
    pub firings: BTreeMap<String, u64>,
    pub notifications: u64,
    pub channels: BTreeMap<String, ChannelReport>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct ChannelReport {
    pub messages: u64,
    /// Messages that carried more than one notification.
    pub digests: u64,
    /// Notifications that went out inside digests.
    pub merged: u64,
    /// The most messages in any 60 s.
    pub busiest_minute: u64,
}

/// Replays `records` (oldest first) from `start_ms` to `end_ms`, then lets what they started
/// go out (group waits, budgets).
pub fn run(
    file: &AlertsFile,
    path: &Path,
    start_ms: i64,
    end_ms: i64,
    records: impl IntoIterator<Item = LogRecord>,
) -> Result<Report, AlertError> {
    let mut sim = Simulation::new(file, path, start_ms)?;
    let mut report = Report::default();
    for record in records {
        let at = (record.timestamp_ns / 1_000_000).max(sim.now_ms());
        sim.observe(&record, at);
        report.records += 1;
    }
    sim.advance(end_ms);
    sim.drain();
    report.firings = sim.firings.clone();
    for rule in &file.rules {
        report.firings.entry(rule.name.clone()).or_default();
    }
    report.notifications = sim.notifications;
    let mut times: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for m in &sim.messages {
        let c = report.channels.entry(m.channel.clone()).or_default();
        c.messages += 1;
        if m.carried > 1 {
            c.digests += 1;
            c.merged += m.carried as u64;
        }
        times.entry(m.channel.clone()).or_default().push(m.at_ms);
    }
    for (channel, times) in times {
        let mut busiest = 0;
        let mut from = 0;
        for (i, t) in times.iter().enumerate() {
            while times[from] <= t - 60_000 {
                from += 1;
            }
            busiest = busiest.max(i + 1 - from);
        }
        report.channels.get_mut(&channel).expect("counted").busiest_minute = busiest as u64;
    }
    Ok(report)
}

impl Report {
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{} matching records replayed", self.records);
        let _ = writeln!(out, "{:<32} {:>8}", "rule", "firings");
        for (rule, n) in &self.firings {
            let _ = writeln!(out, "{rule:<32} {n:>8}");
        }
        let _ = writeln!(out, "notifications (one per channel): {}", self.notifications);
        let _ = writeln!(
            out,
            "{:<32} {:>8} {:>8} {:>8} {:>15}",
            "channel", "messages", "digests", "merged", "busiest minute"
        );
        for (channel, c) in &self.channels {
            let _ = writeln!(
                out,
                "{channel:<32} {:>8} {:>8} {:>8} {:>15}",
                c.messages, c.digests, c.merged, c.busiest_minute
            );
        }
        out
    }
}

/// A stored hit as the record the rules saw, with its id.
pub fn hit_record(hit: &Hit) -> Result<LogRecord, String> {
    let ts = chrono::DateTime::parse_from_rfc3339(&hit.ts)
        .map_err(|e| format!("hit {}: ts {:?}: {e}", hit.id, hit.ts))?;
    let ns = ts.timestamp_nanos_opt().unwrap_or_default();
    let stream = match hit.stream.as_str() {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        "file" => Stream::File,
        "event" => Stream::Event,
        _ => Stream::Unspecified,
    };
    let id = hit.id.parse::<RecordId>().unwrap_or(RecordId::new(0, 0));
    Ok(LogRecord {
        source: id.source,
        offset: id.offset,
        timestamp_ns: ns,
        ingest_time_ns: ns,
        cluster: hit.cluster.clone(),
        namespace: hit.namespace.clone(),
        pod: hit.pod.clone(),
        container: hit.container.clone(),
        node: hit.node.clone(),
        stream: stream as i32,
        file_path: hit.file.clone(),
        level: hit.level.clone(),
        message: hit.message.clone(),
        labels: hit.labels.clone().into_iter().collect(),
        owner: hit.owner.clone(),
        event: hit.event.as_ref().map(|e| {
            let (kind, name) = e.object.split_once('/').unwrap_or(("", &e.object));
            KubeEvent {
                uid: e.uid.clone(),
                reason: e.reason.clone(),
                r#type: e.kind.clone(),
                object_kind: kind.to_owned(),
                object_name: name.to_owned(),
                count: e.count,
                reporter: e.reporter.clone(),
                ..KubeEvent::default()
            }
        }),
        ..LogRecord::default()
    })
}
