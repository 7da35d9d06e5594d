//! The HTTP side the HTTP sinks share (Elasticsearch, Prometheus remote-write): one request
//! with a deadline, and its answer read whole.
//!
//! HTTP and HTTPS with rustls on ring, the one crypto provider of the collector (tonic uses it
//! too). reqwest is not used here: its rustls feature would spread, through feature
//! unification, to every reqwest client in the workspace, which then all need a process-wide
//! provider installed (`shared/specs/dependencies.md`).

use std::path::Path;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{Method, Request};
use http_body_util::BodyExt;

pub(crate) struct HttpClient {
    http: crate::auth::HttpsClient,
    /// The server's base URL, without a trailing slash.
    pub(crate) url: String,
    authorization: Option<String>,
    timeout: Duration,
}

/// What a request got back.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

impl HttpClient {
    /// A client of `url`, trusting `ca_file` beside the system's roots, sending
    /// `authorization` with every request.
    pub(crate) fn new(
        url: &str,
        ca_file: Option<&Path>,
        authorization: Option<String>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let http = crate::auth::https_client(ca_file)?;
        Ok(Self { http, url: url.trim_end_matches('/').to_owned(), authorization, timeout })
    }

    /// Sends `body` to `path` under the base URL; an error when no answer came (the server is
    /// away, too slow, or cut the connection), never for a status.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Answer, String> {
        let url = format!("{}{path}", self.url);
        let mut request = Request::builder().method(method).uri(&url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(a) = &self.authorization {
            request = request.header("Authorization", a);
        }
        let request = request
            .body(http_body_util::Full::new(Bytes::from(body)))
            .map_err(|e| format!("{url}: {e}"))?;
        let timeout = self.timeout;
        let response = tokio::time::timeout(timeout, self.http.request(request))
            .await
            .map_err(|_| format!("{url}: no answer within {timeout:?}"))?
            .map_err(|e| format!("cannot reach {url}: {e:#}"))?;
        let status = response.status().as_u16();
        let body = tokio::time::timeout(timeout, response.into_body().collect())
            .await
            .map_err(|_| format!("{url}: the answer did not finish within {timeout:?}"))?
            .map_err(|e| format!("{url}: unreadable answer: {e}"))?
            .to_bytes()
            .to_vec();
        Ok(Answer { status, body })
    }
}
