//! A small HTTP(S) client for the notifiers: rustls on ring, as everywhere in the collector
//! (reqwest's rustls feature would bring a second crypto provider; see
//! `shared/specs/dependencies.md`).

use std::path::Path;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Bytes;

const TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Clone)]
pub struct HttpClient {
    http: sluice_collector::auth::HttpsClient,
}

/// Why a request got no answer; `sent` when it may have reached the server.
#[derive(Debug)]
pub struct HttpError {
    pub message: String,
    pub sent: bool,
}

impl HttpClient {
    pub fn new(ca_file: Option<&Path>) -> Result<Self, String> {
        let http = sluice_collector::auth::https_client(ca_file)?;
        Ok(Self { http })
    }

    /// POSTs `body`; the answer's status and body.
    pub async fn post(
        &self,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Vec<u8>), HttpError> {
        let request = hyper::Request::post(url)
            .header("Content-Type", content_type)
            .body(http_body_util::Full::new(Bytes::from(body)))
            .map_err(|e| HttpError { message: format!("{}: {e}", redact(url)), sent: false })?;
        self.send(url, request, TIMEOUT).await
    }

    /// GETs `url` within `timeout`; the answer's status and body.
    pub async fn get(&self, url: &str, timeout: Duration) -> Result<(u16, Vec<u8>), HttpError> {
        let request = hyper::Request::get(url)
            .header("Accept", "application/json")
            .body(http_body_util::Full::new(Bytes::new()))
            .map_err(|e| HttpError { message: format!("{}: {e}", redact(url)), sent: false })?;
        self.send(url, request, timeout).await
    }

    async fn send(
        &self,
        url: &str,
        request: hyper::Request<http_body_util::Full<Bytes>>,
        timeout: Duration,
    ) -> Result<(u16, Vec<u8>), HttpError> {
        let response = tokio::time::timeout(timeout, self.http.request(request))
            .await
            .map_err(|_| HttpError {
                message: format!("{}: no answer within {timeout:?}", redact(url)),
                sent: true,
            })?
            .map_err(|e| HttpError {
                message: format!("cannot reach {}: {e}", redact(url)),
                sent: !e.is_connect(),
            })?;
        let status = response.status().as_u16();
        let body = tokio::time::timeout(timeout, response.into_body().collect())
            .await
            .map_err(|_| HttpError {
                message: format!("{}: answer cut off", redact(url)),
                sent: true,
            })?
            .map_err(|e| HttpError { message: format!("{}: {e}", redact(url)), sent: true })?
            .to_bytes()
            .to_vec();
        Ok((status, body))
    }
}

/// A URL without its query: robot tokens and signatures travel there and must not be logged.
pub fn redact(url: &str) -> &str {
    url.split_once('?').map_or(url, |(base, _)| base)
}
