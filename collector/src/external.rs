//! Records from clients other than our agent (`_bulk`, OTLP): the shared last step of their
//! receivers — authenticate, append the records to the WAL as one external batch, sync — so
//! a client hears "yes" only once its records are durable, as an agent does.

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, header};
use sluice_proto::{LogBatch, LogRecord, RecordId};

use crate::CollectorError;
use crate::auth::AgentTokens;
use crate::wal::Wal;
use crate::wal_frame::{self, MAX_EXTERNAL_RECORDS};

/// Unix nanoseconds now: the receive time of records, and their time when they carry none.
pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// What the HTTP receivers share.
#[derive(Clone)]
pub struct ExternalState {
    pub wal: Arc<Wal>,
    /// When set, clients must present one of these tokens.
    pub tokens: Option<AgentTokens>,
}

impl ExternalState {
    /// The client's name, or why it is refused (a 401).
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        what: &str,
    ) -> Result<String, (StatusCode, String)> {
        let Some(tokens) = &self.tokens else { return Ok("anonymous".to_owned()) };
        let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        match tokens.http_client(authorization) {
            Ok(name) => Ok(name.to_owned()),
            Err(reason) => {
                metrics::counter!("sluice_collector_unauthenticated_total").increment(1);
                tracing::warn!(reason, what, "refused an HTTP client");
                Err((
                    StatusCode::UNAUTHORIZED,
                    format!(
                        "{reason}: send Authorization: Bearer <token> (or Basic with the token as password)"
                    ),
                ))
            }
        }
    }

    /// Appends `records` and syncs; returns the ids they got (see [`wal_frame`]).
    pub async fn append(
        &self,
        client: &str,
        mut records: Vec<LogRecord>,
    ) -> Result<Vec<RecordId>, CollectorError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        if records.len() > MAX_EXTERNAL_RECORDS {
            return Err(CollectorError::Server(format!(
                "{} records in one request; the most is {MAX_EXTERNAL_RECORDS}",
                records.len()
            )));
        }
        for (i, r) in records.iter_mut().enumerate() {
            r.offset = i as u64;
        }
        let count = records.len() as u64;
        let sources: Vec<u64> = records.iter().map(|r| r.source).collect();
        let batch = LogBatch { agent: client.to_owned(), records, ..LogBatch::default() };
        let payload = wal_frame::encode_external(&batch);
        let bytes = payload.len() as u64;
        let wal = self.wal.clone();
        let end = tokio::task::spawn_blocking(move || wal.append(&payload))
            .await
            .map_err(|e| CollectorError::Server(format!("WAL task failed: {e}")))??;
        metrics::counter!("sluice_collector_batches_received_total").increment(1);
        metrics::counter!("sluice_collector_records_received_total").increment(count);
        metrics::counter!("sluice_collector_bytes_received_total").increment(bytes);
        let start = end - (sluice_proto::frame::HEADER_BYTES as u64 + bytes);
        Ok(sources
            .into_iter()
            .enumerate()
            .map(|(i, source)| RecordId::new(source, (start << 20) | i as u64))
            .collect())
    }
}
