//! The OpenSearch column of `sluice-bench search`: the servers script's node, fed by the
//! collector's own Elasticsearch sink in the same run that builds Sluice's index (through the
//! sink's index template: keywords, and the message analysed by `cjk`, which cuts Chinese into
//! bigrams), force-merged to one segment, then asked the same questions in its query DSL.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// The index the sink writes (`--es-index`): one, so a question reads one place.
pub(crate) const INDEX: &str = "sluice-bench";

pub(crate) struct OpenSearch {
    base: String,
    client: reqwest::blocking::Client,
}

impl OpenSearch {
    pub(crate) fn new(base: &str) -> anyhow::Result<Self> {
        let client =
            reqwest::blocking::Client::builder().timeout(Duration::from_secs(600)).build()?;
        let os = Self { base: base.trim_end_matches('/').to_owned(), client };
        os.get("/").with_context(|| format!("OpenSearch at {base} does not answer"))?;
        Ok(os)
    }

    fn get(&self, path: &str) -> anyhow::Result<Value> {
        let response = self.client.get(format!("{}{path}", self.base)).send()?;
        let status = response.status();
        let body: Value = response.json()?;
        if !status.is_success() {
            bail!("GET {path}: {status}: {body}");
        }
        Ok(body)
    }

    fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let response = self.client.post(format!("{}{path}", self.base)).json(body).send()?;
        let status = response.status();
        let answer: Value = response.json()?;
        if !status.is_success() {
            bail!("POST {path}: {status}: {answer}");
        }
        Ok(answer)
    }

    /// Deletes what an earlier run left, so the sink's documents are the only ones.
    pub(crate) fn reset(&self) -> anyhow::Result<()> {
        let response = self.client.delete(format!("{}/{INDEX}", self.base)).send()?;
        anyhow::ensure!(
            response.status().is_success() || response.status().as_u16() == 404,
            "cannot delete {INDEX}: {}",
            response.status()
        );
        Ok(())
    }

    /// Documents searchable in the index (0 when there is none).
    pub(crate) fn count(&self) -> u64 {
        let _ = self.client.post(format!("{}/{INDEX}/_refresh", self.base)).send();
        self.get(&format!("/{INDEX}/_count")).map_or(0, |b| b["count"].as_u64().unwrap_or(0))
    }

    /// Merges the index to one segment, as a closed day's index would be, and waits for it.
    pub(crate) fn force_merge(&self) -> anyhow::Result<()> {
        self.post(&format!("/{INDEX}/_forcemerge?max_num_segments=1"), &json!({}))?;
        self.post(&format!("/{INDEX}/_refresh"), &json!({}))?;
        Ok(())
    }

    /// The primary store's bytes on disk.
    pub(crate) fn store_bytes(&self) -> anyhow::Result<u64> {
        let stats = self.get(&format!("/{INDEX}/_stats/store"))?;
        stats["_all"]["primaries"]["store"]["size_in_bytes"].as_u64().context("no store size")
    }

    /// Runs one search: the client's milliseconds, the node's `took`, and the total hits.
    pub(crate) fn time(&self, body: &Value) -> anyhow::Result<(f64, f64, u64)> {
        let started = Instant::now();
        let answer = self.post(&format!("/{INDEX}/_search"), body)?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let total = answer["hits"]["total"]["value"].as_u64().unwrap_or(0);
        Ok((ms, answer["took"].as_f64().unwrap_or(f64::NAN), total))
    }
}

/// The newest 100 hits of `query` and their exact count, as Sluice's search answers.
pub(crate) fn top100(query: Value) -> Value {
    json!({
        "query": query,
        "size": 100,
        "sort": [{"@timestamp": "desc"}],
        "track_total_hits": true,
    })
}

/// A phrase of the message, as the template's `cjk` analyzer cuts it.
pub(crate) fn phrase(text: &str) -> Value {
    json!({"match_phrase": {"message": text}})
}

pub(crate) fn word(text: &str) -> Value {
    json!({"match": {"message": text}})
}

/// A keyword filter and a word.
pub(crate) fn filtered(field: &str, value: &str, text: &str) -> Value {
    json!({"bool": {
        "filter": [{"term": {field: value}}],
        "must": [word(text)],
    }})
}

/// Counts per 15 minutes over `[start, end)`, about the hundred buckets Sluice picks for a day.
pub(crate) fn histogram(start: &str, end: &str) -> Value {
    json!({
        "size": 0,
        "track_total_hits": true,
        "query": {"range": {"@timestamp": {"gte": start, "lt": end}}},
        "aggs": {"h": {"date_histogram": {"field": "@timestamp", "fixed_interval": "15m"}}},
    })
}
