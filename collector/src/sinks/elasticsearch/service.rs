//! The HTTP side: `GET /`, `PUT _index_template/…`, `POST _bulk` with a gzip body, and the
//! per-item reading of the bulk answer.

use std::io::Write;
use std::time::Duration;

use axum::http::Method;
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value, json};

use super::config::{ElasticsearchAuth, ElasticsearchConfig};
use crate::sinks::http::HttpClient;

/// What became of one item of a bulk request.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum ItemOutcome {
    /// Stored now, or already there from an earlier attempt (`409` under `op_type=create`).
    Delivered { duplicate: bool },
    /// `429` or `5xx`: send it again later.
    Retry(u16),
    /// Any other refusal: it will never be taken as it is.
    Rejected(u16, Value),
}

/// The Elasticsearch API over the sinks' shared HTTP client.
pub(super) struct Client {
    http: HttpClient,
}

const TIMEOUT: Duration = Duration::from_secs(60);

impl Client {
    pub(super) fn new(config: &ElasticsearchConfig) -> Result<Self, String> {
        let authorization = match &config.auth {
            ElasticsearchAuth::None => None,
            ElasticsearchAuth::Basic { user, password } => {
                use base64::Engine;
                let pair = format!("{user}:{password}");
                Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair)))
            }
            ElasticsearchAuth::ApiKey(key) => Some(format!("ApiKey {key}")),
        };
        let http = HttpClient::new(&config.url, config.ca_file.as_deref(), authorization, TIMEOUT)?;
        Ok(Self { http })
    }

    /// The server's distribution and version, e.g. `opensearch 2.19.1`. OpenSearch sends no
    /// `X-Elastic-Product` header, so none is required.
    pub(super) async fn info(&self) -> Result<String, String> {
        let answer = self.http.send(Method::GET, "/", &[], Vec::new()).await?;
        let body: Value = serde_json::from_slice(&answer.body)
            .map_err(|e| format!("{}: unreadable answer: {e}", self.http.url))?;
        if !(200..300).contains(&answer.status) {
            return Err(format!("{} answered {}: {body}", self.http.url, answer.status));
        }
        let version = &body["version"];
        let distribution = version["distribution"].as_str().unwrap_or("elasticsearch");
        Ok(format!("{distribution} {}", version["number"].as_str().unwrap_or("?")))
    }

    /// Installs the index template for indexes starting with `prefix`: keywords for the pod
    /// identity, nanosecond time, and the message analysed with `cjk` (bigrams for Chinese,
    /// Japanese and Korean, standard tokens otherwise). With `data_stream`, indexes created
    /// by the pattern are data streams.
    pub(super) async fn put_template(
        &self,
        name: &str,
        prefix: &str,
        data_stream: bool,
    ) -> Result<(), String> {
        let keyword = json!({"type": "keyword"});
        let mut template = json!({
            "index_patterns": [format!("{prefix}*")],
            "priority": 200,
            "template": {
                "mappings": {
                    "dynamic": false,
                    // Pod labels are whatever the cluster uses: each a keyword, under `labels`.
                    "dynamic_templates": [
                        {"labels": {"path_match": "labels.*", "mapping": keyword}}
                    ],
                    "properties": {
                        "@timestamp": {"type": "date_nanos"},
                        "message": {"type": "text", "analyzer": "cjk"},
                        "cluster": keyword, "namespace": keyword, "pod": keyword,
                        "pod_uid": keyword, "container": keyword, "node": keyword,
                        "stream": keyword, "level": keyword, "file": keyword,
                        "flags": keyword, "sluice_id": keyword, "owner": keyword,
                        "labels": {"type": "object", "dynamic": true},
                        "event": {"properties": {
                            "uid": keyword, "reason": keyword, "type": keyword,
                            "object": keyword, "object_kind": keyword, "object_name": keyword,
                            "reporter": keyword, "count": {"type": "long"},
                            "first_seen": {"type": "date_nanos"},
                            "last_seen": {"type": "date_nanos"},
                        }},
                    }
                }
            }
        });
        if data_stream {
            template["data_stream"] = json!({});
        }
        let answer = self
            .http
            .send(
                Method::PUT,
                &format!("/_index_template/{name}"),
                &[("Content-Type", "application/json")],
                template.to_string().into_bytes(),
            )
            .await?;
        if !(200..300).contains(&answer.status) {
            return Err(format!(
                "installing index template {name} failed: {}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            ));
        }
        Ok(())
    }

    /// Sends one bulk request; `Err` when the request as a whole failed (the caller retries
    /// every item), else one outcome per item in order.
    pub(super) async fn bulk(
        &self,
        ndjson: &[u8],
        items: usize,
    ) -> Result<Vec<ItemOutcome>, String> {
        let mut gz = GzEncoder::new(Vec::with_capacity(ndjson.len() / 4), Compression::fast());
        gz.write_all(ndjson).map_err(|e| e.to_string())?;
        let body = gz.finish().map_err(|e| e.to_string())?;
        let headers = [("Content-Type", "application/x-ndjson"), ("Content-Encoding", "gzip")];
        let answer = self.http.send(Method::POST, "/_bulk", &headers, body).await?;
        let text = String::from_utf8_lossy(&answer.body);
        if !(200..300).contains(&answer.status) {
            return Err(format!(
                "_bulk answered {}: {}",
                answer.status,
                text.chars().take(500).collect::<String>()
            ));
        }
        parse_bulk_answer(&text, items)
    }
}

/// Reads every item of a bulk answer.
pub(super) fn parse_bulk_answer(text: &str, items: usize) -> Result<Vec<ItemOutcome>, String> {
    let body: Value =
        serde_json::from_str(text).map_err(|e| format!("unreadable _bulk answer: {e}"))?;
    let answers = body["items"].as_array().ok_or("the _bulk answer has no items")?;
    if answers.len() != items {
        return Err(format!("the _bulk answer has {} items for {items} sent", answers.len()));
    }
    Ok(answers
        .iter()
        .map(|item| {
            let result =
                item.as_object().and_then(|o| o.values().next()).cloned().unwrap_or_default();
            let status = result["status"].as_u64().unwrap_or(0) as u16;
            match status {
                200..=299 => ItemOutcome::Delivered { duplicate: false },
                409 => ItemOutcome::Delivered { duplicate: true },
                429 | 500..=599 => ItemOutcome::Retry(status),
                _ => ItemOutcome::Rejected(status, result["error"].clone()),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_is_read() {
        let answer = r#"{"took":3,"errors":true,"items":[
            {"create":{"_index":"a","_id":"1","status":201}},
            {"create":{"_index":"a","_id":"2","status":409,"error":{"type":"version_conflict_engine_exception"}}},
            {"create":{"_index":"a","_id":"3","status":429,"error":{"type":"es_rejected_execution_exception"}}},
            {"create":{"_index":"a","_id":"4","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [level]"}}},
            {"create":{"_index":"a","_id":"5","status":503}}
        ]}"#;
        let outcomes = parse_bulk_answer(answer, 5).unwrap();
        assert_eq!(outcomes[0], ItemOutcome::Delivered { duplicate: false });
        assert_eq!(outcomes[1], ItemOutcome::Delivered { duplicate: true });
        assert_eq!(outcomes[2], ItemOutcome::Retry(429));
        assert!(
            matches!(&outcomes[3], ItemOutcome::Rejected(400, e) if e["type"] == "mapper_parsing_exception")
        );
        assert_eq!(outcomes[4], ItemOutcome::Retry(503));
        assert!(parse_bulk_answer(answer, 4).unwrap_err().contains("5 items for 4"));
        assert!(parse_bulk_answer("<html>", 1).is_err());
    }
}
