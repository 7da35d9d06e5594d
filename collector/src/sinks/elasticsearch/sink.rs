use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};
use sluice_proto::LogRecord;

use super::config::ElasticsearchConfig;
use super::service::{Client, ItemOutcome};
use crate::sink::{Sink, SinkError};
use crate::sinks::dead_letter::DeadLetters;
use crate::sinks::document::Document;
use crate::sinks::template;
use crate::wal_frame::Frame;

/// Bulk requests' worth of documents the sink holds before it sends without waiting for a
/// flush.
const PENDING_BATCHES: usize = 4;

/// A document waiting for its answer.
struct Pending {
    index: String,
    /// The bulk action and document lines, ready to send (and to send again).
    lines: String,
}

pub struct ElasticsearchSink {
    config: ElasticsearchConfig,
    client: Client,
    pending: Vec<Pending>,
    /// The WAL position just past the records in `pending`.
    end: u64,
    resume: u64,
    cursor_path: PathBuf,
    dead_letters: DeadLetters,
    template_installed: bool,
}

impl ElasticsearchSink {
    pub fn new(config: ElasticsearchConfig) -> Result<Self, SinkError> {
        let cursor_path = config.state_dir.join("cursor");
        let resume = match std::fs::read_to_string(&cursor_path) {
            Ok(text) => text.trim().parse().map_err(|_| {
                SinkError(format!("corrupt cursor file {}: {text:?}", cursor_path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(SinkError(format!("cannot read {}: {e}", cursor_path.display()))),
        };
        let dead_letters = DeadLetters::open(&config.state_dir)?;
        Ok(Self {
            client: Client::new(&config).map_err(SinkError)?,
            config,
            pending: Vec::new(),
            end: resume,
            resume,
            cursor_path,
            dead_letters,
            template_installed: false,
        })
    }

    fn save_cursor(&self, position: u64) -> Result<(), SinkError> {
        crate::durable::replace(&self.cursor_path, position.to_string().as_bytes())
            .map_err(|e| SinkError(format!("cannot save {}: {e}", self.cursor_path.display())))
    }
}

/// The index a record goes to: the template filled in, lowercased, and characters
/// Elasticsearch forbids in index names replaced.
pub(super) fn index_name(template: &str, r: &LogRecord) -> String {
    let cleaned: String = template::fill(template, r)
        .to_lowercase()
        .chars()
        .map(|c| {
            if matches!(c, '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ' ' | ',' | '#' | ':') {
                '_'
            } else {
                c
            }
        })
        .collect();
    cleaned.trim_start_matches(['_', '-', '+']).to_owned()
}

#[async_trait]
impl Sink for ElasticsearchSink {
    fn name(&self) -> &str {
        "elasticsearch"
    }

    async fn open(&mut self) -> Result<u64, SinkError> {
        Ok(self.resume)
    }

    async fn write(&mut self, frame: Arc<Frame>, end: u64) -> Result<(), SinkError> {
        // Memory stays bounded when Elasticsearch is slow or away: past a few bulk requests'
        // worth, send before taking more; a failure refuses these records (the runner offers
        // them again), so nothing is held twice.
        if self.pending_bytes() >= PENDING_BATCHES * self.config.batch_bytes {
            self.send().await?;
        }
        for r in frame.records() {
            let index = index_name(&self.config.index, r);
            let id = r.id().to_string();
            // `create` and the record's own id: a resend is refused with 409, not stored twice.
            let action = json!({"create": {"_index": index, "_id": id}});
            let lines = format!("{action}\n{}\n", Document::of(r).to_json());
            self.pending.push(Pending { index, lines });
        }
        self.end = end;
        Ok(())
    }

    async fn flush(&mut self) -> Result<u64, SinkError> {
        self.send().await?;
        self.save_cursor(self.end)?;
        self.resume = self.end;
        Ok(self.end)
    }

    async fn healthcheck(&self) -> Result<(), SinkError> {
        self.client.info().await.map(|_| ()).map_err(SinkError)
    }
}

impl ElasticsearchSink {
    fn pending_bytes(&self) -> usize {
        self.pending.iter().map(|p| p.lines.len()).sum()
    }

    /// Sends everything pending; what Elasticsearch asks to retry (or could not be sent)
    /// stays pending and makes this an error, so the caller backs off and comes again.
    async fn send(&mut self) -> Result<(), SinkError> {
        if !self.template_installed {
            let prefix = self.config.index_prefix();
            if prefix.is_empty() {
                tracing::warn!(index = %self.config.index, "the index template starts with a placeholder; no index template is installed");
            } else {
                // One template per prefix, so collectors writing different prefixes into one
                // cluster do not overwrite each other's.
                let kind = if self.config.data_stream { "streams" } else { "logs" };
                let name = index_name(
                    &format!("sluice-{kind}-{}", prefix.trim_end_matches(['-', '_', '.'])),
                    &LogRecord::default(),
                );
                self.client
                    .put_template(&name, prefix, self.config.data_stream)
                    .await
                    .map_err(SinkError)?;
            }
            self.template_installed = true;
        }
        let mut retry = Vec::new();
        let mut dead = Vec::new();
        let (mut delivered, mut duplicates) = (0u64, 0u64);
        let mut failure = None;
        let pending = std::mem::take(&mut self.pending);
        let mut batch: Vec<Pending> = Vec::new();
        let mut bytes = 0;
        let mut iter = pending.into_iter().peekable();
        while iter.peek().is_some() || !batch.is_empty() {
            if let Some(next) = iter.peek()
                && (batch.is_empty() || bytes + next.lines.len() <= self.config.batch_bytes)
            {
                bytes += next.lines.len();
                batch.push(iter.next().expect("peeked"));
                continue;
            }
            let body: String = batch.iter().map(|p| p.lines.as_str()).collect();
            let sent = std::mem::take(&mut batch);
            bytes = 0;
            if failure.is_some() {
                retry.extend(sent);
                continue;
            }
            match self.client.bulk(body.as_bytes(), sent.len()).await {
                Ok(outcomes) => {
                    for (item, outcome) in sent.into_iter().zip(outcomes) {
                        match outcome {
                            ItemOutcome::Delivered { duplicate } => {
                                delivered += 1;
                                duplicates += u64::from(duplicate);
                            }
                            ItemOutcome::Retry(_) => retry.push(item),
                            ItemOutcome::Rejected(status, reason) => {
                                let doc = item
                                    .lines
                                    .split_once('\n')
                                    .and_then(|(_, d)| serde_json::from_str(d.trim_end()).ok())
                                    .unwrap_or(Value::Null);
                                dead.push(json!({"index": item.index, "status": status, "reason": reason, "document": doc}));
                            }
                        }
                    }
                }
                Err(e) => {
                    failure = Some(e);
                    retry.extend(sent);
                }
            }
        }
        metrics::counter!("sluice_sink_elasticsearch_delivered_total").increment(delivered);
        metrics::counter!("sluice_sink_elasticsearch_duplicates_total").increment(duplicates);
        metrics::counter!("sluice_sink_elasticsearch_retried_total").increment(retry.len() as u64);
        if !dead.is_empty() {
            self.dead_letters.add(&dead).map_err(|e| {
                SinkError(format!("cannot write {}: {e}", self.dead_letters.path().display()))
            })?;
            metrics::counter!("sluice_sink_elasticsearch_dead_letters_total")
                .increment(dead.len() as u64);
            tracing::warn!(count = dead.len(), file = %self.dead_letters.path().display(), "Elasticsearch refused records; they are in the dead-letter file");
        }
        if !retry.is_empty() {
            let n = retry.len();
            self.pending = retry;
            // The runner backs off and flushes again; the cursor stays until all are in.
            return Err(SinkError(match failure {
                Some(e) => format!("{n} records to send again: {e}"),
                None => format!(
                    "{n} records to send again: Elasticsearch asked to retry them (429/5xx)"
                ),
            }));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_names_follow_the_template() {
        let r = LogRecord {
            timestamp_ns: 1_796_032_800_000_000_000,
            namespace: "Prod".into(),
            pod: "pay/1".into(),
            ..LogRecord::default()
        };
        assert_eq!(index_name("logs-{namespace}-{yyyy.MM.dd}", &r), "logs-prod-2026.11.30");
        assert_eq!(index_name("{cluster}-{pod}-{yyyy-MM-dd}", &r), "none-pay_1-2026-11-30");
        assert_eq!(index_name("_x-{yyyy.MM}", &r), "x-2026.11");
    }
}
