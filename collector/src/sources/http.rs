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
use crate::auth::{IngestAuthenticator, IngestGrant, http_token};
use crate::wal::Wal;

/// Largest request body taken (before decompression); as large as an agent's batch may be.
pub const MAX_REQUEST_BYTES: usize = 64 << 20;
/// Largest body once decompressed. Tiny documents cost far more memory parsed than as
/// bytes (a 51 KB gzip body of a million documents took the process to 4.5 GB), so this and
/// [`MAX_DOCUMENTS`] bound a request's memory.
pub const MAX_DECOMPRESSED_BYTES: u64 = 64 << 20;
/// The most records one request may carry; a larger one is refused (413), to be split.
pub const MAX_DOCUMENTS: usize = 100_000;

/// Why a request body could not be read.
#[derive(Debug, PartialEq, Eq)]
pub struct BodyError {
    pub status: StatusCode,
    pub reason: String,
}

/// The request body, decompressed as its `Content-Encoding` says (none, `gzip` or `zstd`, as
/// OpenTelemetry's exporters and Fluent Bit send), at most [`MAX_DECOMPRESSED_BYTES`].
pub fn decoded_body(headers: &HeaderMap, body: &[u8]) -> Result<Vec<u8>, BodyError> {
    use std::io::Read;
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    let mut out = Vec::new();
    let read = match encoding.as_str() {
        "" | "identity" => {
            out.extend_from_slice(body);
            Ok(body.len())
        }
        "gzip" | "x-gzip" => flate2::read::MultiGzDecoder::new(body)
            .take(MAX_DECOMPRESSED_BYTES + 1)
            .read_to_end(&mut out),
        "zstd" => zstd::stream::read::Decoder::new(body)
            .and_then(|d| d.take(MAX_DECOMPRESSED_BYTES + 1).read_to_end(&mut out)),
        other => {
            return Err(BodyError {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                reason: format!("Content-Encoding {other:?}: send the body plain, gzip or zstd"),
            });
        }
    };
    if let Err(e) = read {
        return Err(BodyError {
            status: StatusCode::BAD_REQUEST,
            reason: format!("the body is not valid {encoding}: {e}"),
        });
    }
    if out.len() as u64 > MAX_DECOMPRESSED_BYTES {
        return Err(BodyError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            reason: format!(
                "the body is larger than {MAX_DECOMPRESSED_BYTES} bytes decompressed: split the request"
            ),
        });
    }
    Ok(out)
}

/// Refuses a request of more than [`MAX_DOCUMENTS`] records.
pub fn check_documents(count: usize) -> Result<(), BodyError> {
    if count > MAX_DOCUMENTS {
        return Err(BodyError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            reason: format!(
                "{count} documents in one request; the most is {MAX_DOCUMENTS}: split the request"
            ),
        });
    }
    Ok(())
}

/// The state of the clients' receivers.
#[derive(Clone)]
pub struct ClientIngest {
    pub wal: Arc<Wal>,
    /// When set, clients must present a token it grants; when not, anyone may write anything.
    pub auth: Option<Arc<dyn IngestAuthenticator>>,
}

impl ClientIngest {
    /// What the client may write, or why it is refused: 401 without a known token, 403 for a
    /// token that may write nothing.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        what: &str,
    ) -> Result<IngestGrant, (StatusCode, String)> {
        let Some(auth) = &self.auth else { return Ok(IngestGrant::anywhere("anonymous")) };
        let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        match http_token(authorization).and_then(|token| auth.grant(&token)) {
            Ok(grant) if grant.writes_anything() => Ok(grant),
            Ok(grant) => {
                metrics::counter!("sluice_collector_unauthorized_writes_total").increment(1);
                tracing::warn!(client = %grant.client, what, "refused a client that may write nothing");
                Err((
                    StatusCode::FORBIDDEN,
                    format!("{} may not write: its user has no ingest namespaces", grant.client),
                ))
            }
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn encoded(name: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_ENCODING, name.parse().unwrap());
        headers
    }

    #[test]
    fn bodies_decompress_as_their_encoding_says_within_the_cap() {
        let text = b"{\"index\":{}}\n{\"log\":\"a\"}\n".repeat(100);
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzip.write_all(&text).unwrap();
        let gzip = gzip.finish().unwrap();
        let zstd = zstd::bulk::compress(&text, 1).unwrap();
        assert_eq!(decoded_body(&HeaderMap::new(), &text).unwrap(), text);
        assert_eq!(decoded_body(&encoded("gzip"), &gzip).unwrap(), text);
        assert_eq!(decoded_body(&encoded("zstd"), &zstd).unwrap(), text);
        assert_eq!(decoded_body(&encoded("br"), &text).unwrap_err().status, 415);
        assert_eq!(decoded_body(&encoded("gzip"), b"not gzip").unwrap_err().status, 400);

        // A small body that decompresses past the cap: refused, and never held whole.
        let zeros = vec![0u8; MAX_DECOMPRESSED_BYTES as usize + 1];
        let bomb = zstd::bulk::compress(&zeros, 3).unwrap();
        assert!(bomb.len() < 64 << 10, "{}", bomb.len());
        let err = decoded_body(&encoded("zstd"), &bomb).unwrap_err();
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", err.reason);
        assert!(err.reason.contains("split"));
        assert_eq!(check_documents(MAX_DOCUMENTS).map_err(|e| e.status), Ok(()));
        assert_eq!(check_documents(MAX_DOCUMENTS + 1).unwrap_err().status, 413);
    }
}
