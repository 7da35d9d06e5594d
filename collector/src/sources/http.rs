//! What the HTTP receivers (`_bulk`, OTLP/HTTP) and OTLP/gRPC share: the client's token
//! check, and the last step — the records appended as one WAL frame and synced — so a client
//! hears "yes" only once its records are durable, as an agent does.

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use sluice_proto::{LogRecord, RecordId};

use super::append::Batch;
use super::{bulk, otlp};
use crate::CollectorError;
use crate::auth::AgentTokens;
use crate::wal::Wal;

/// Largest request body taken (before decompression); as large as an agent's batch may be.
pub const MAX_REQUEST_BYTES: usize = 64 << 20;

/// The state of the clients' receivers.
#[derive(Clone)]
pub struct ClientIngest {
    pub wal: Arc<Wal>,
    /// When set, clients must present one of these tokens.
    pub tokens: Option<AgentTokens>,
}

impl ClientIngest {
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

    /// Appends `records`, which have no ids of their own, and syncs; returns their ids.
    pub async fn append(
        &self,
        client: &str,
        records: Vec<LogRecord>,
    ) -> Result<Vec<RecordId>, CollectorError> {
        Ok(Batch::without_ids(client, records)?.append(&self.wal).await?.ids)
    }
}

/// `POST /_bulk`, `/{index}/_bulk` and `/v1/logs`, to be served beside the search API, as
/// Elasticsearch and OpenTelemetry collectors do.
pub fn routes(state: ClientIngest) -> Router {
    bulk::routes()
        .merge(otlp::routes())
        .layer(axum::extract::DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(state)
}
