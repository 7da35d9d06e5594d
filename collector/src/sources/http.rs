//! What the HTTP receivers (`_bulk`, OTLP/HTTP) and OTLP/gRPC share: the client's token
//! check, and the last step — the records appended as one WAL frame and synced — so a client
//! hears "yes" only once its records are durable, as an agent does.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use sluice_proto::{LogRecord, RecordId};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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

/// How long a request waits for a turn before it is refused with 429 (and retried by the
/// client later).
const TURN_WAIT: Duration = Duration::from_secs(10);
/// How long a client may take to send its body once it has a turn.
const BODY_WAIT: Duration = Duration::from_secs(60);

/// The state of the clients' receivers.
#[derive(Clone)]
pub struct ClientIngest {
    pub wal: Arc<Wal>,
    /// When set, clients must present a token it grants; when not, anyone may write anything.
    pub auth: Option<Arc<dyn IngestAuthenticator>>,
    /// Turns to read, decode and append a request: a decoded request takes several times its
    /// body in memory, so only this many are worked on at once; the others wait with their
    /// bodies unread (in the socket, held back by TCP) rather than in memory.
    turns: Arc<Semaphore>,
}

impl ClientIngest {
    /// Receivers that work on `concurrent` requests at once (one at least).
    pub fn new(
        wal: Arc<Wal>,
        auth: Option<Arc<dyn IngestAuthenticator>>,
        concurrent: usize,
    ) -> Self {
        ClientIngest { wal, auth, turns: Arc::new(Semaphore::new(concurrent.max(1))) }
    }

    /// Waits for a turn, then reads the whole body; the turn is held until the request is
    /// answered. 429 (retry later) when no turn comes soon, 408 for a body that does not.
    pub async fn admit(&self, body: Body) -> Result<(OwnedSemaphorePermit, Bytes), BodyError> {
        let turn = match tokio::time::timeout(TURN_WAIT, self.turns.clone().acquire_owned()).await {
            Ok(turn) => turn.expect("the semaphore is never closed"),
            Err(_) => {
                metrics::counter!("sluice_collector_ingest_rejected_total").increment(1);
                return Err(BodyError {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    reason: format!(
                        "no turn to take the request within {TURN_WAIT:?}: every receiver is busy; retry"
                    ),
                });
            }
        };
        let read = axum::body::to_bytes(body, MAX_REQUEST_BYTES);
        match tokio::time::timeout(BODY_WAIT, read).await {
            Ok(Ok(bytes)) => Ok((turn, bytes)),
            Ok(Err(e)) => {
                let too_large = std::error::Error::source(&e)
                    .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
                Err(if too_large {
                    BodyError {
                        status: StatusCode::PAYLOAD_TOO_LARGE,
                        reason: format!(
                            "the body is larger than {MAX_REQUEST_BYTES} bytes: split the request"
                        ),
                    }
                } else {
                    BodyError {
                        status: StatusCode::BAD_REQUEST,
                        reason: format!("the body could not be read: {e}"),
                    }
                })
            }
            Err(_) => Err(BodyError {
                status: StatusCode::REQUEST_TIMEOUT,
                reason: format!("the body did not arrive within {BODY_WAIT:?}"),
            }),
        }
    }

    /// A turn for a request whose body is already decoded (OTLP/gRPC: tonic decodes it).
    pub async fn turn(&self) -> OwnedSemaphorePermit {
        self.turns.clone().acquire_owned().await.expect("the semaphore is never closed")
    }

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

    #[tokio::test]
    async fn a_turn_is_held_until_dropped_and_a_body_over_the_cap_is_a_413() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Arc::new(Wal::open(dir.path(), 1 << 20).unwrap());
        let ingest = ClientIngest::new(wal, None, 1);
        let (turn, body) = ingest.admit(Body::from("small")).await.unwrap();
        assert_eq!(&body[..], b"small");
        let second = tokio::spawn({
            let ingest = ingest.clone();
            async move { ingest.admit(Body::from("next")).await.map(|(_, b)| b) }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!second.is_finished(), "one request at a time");
        drop(turn);
        assert_eq!(&second.await.unwrap().unwrap()[..], b"next");
        let huge = Body::from(vec![b'x'; MAX_REQUEST_BYTES + 1]);
        let refused = ingest.admit(huge).await.map(|_| ()).unwrap_err();
        assert_eq!(refused.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", refused.reason);
    }
}
