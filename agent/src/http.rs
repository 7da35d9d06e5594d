//! The agent's own HTTP endpoint, when `metrics_listen` is set: `/metrics` (Prometheus text)
//! and `/healthz`.
//!
//! Two fixed routes on hyper's HTTP/1 server, which the agent links anyway for gRPC: a web
//! framework's router (axum and tower were 75 KiB of resident code) buys nothing here, and the
//! agent's code is most of its idle memory.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Renders the process's metrics in the Prometheus text format.
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// Serves `/metrics` (from the installed [`crate::telemetry::Telemetry`]) and `/healthz` on
/// `addr` in the background.
pub async fn start(
    addr: std::net::SocketAddr,
    telemetry: Arc<crate::telemetry::Telemetry>,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics and /healthz");
    tokio::spawn(serve(listener, Arc::new(move || telemetry.render())));
    Ok(())
}

/// Serves until the task is dropped. A failed accept (out of file descriptors, say) is logged
/// and retried after a pause, as a connection that fails ends only itself.
pub async fn serve(listener: TcpListener, render: MetricsRender) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "metrics endpoint cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let render = render.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let response = respond(request.method(), request.uri().path(), &render);
                async move { Ok::<_, Infallible>(response) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(error = %e, "metrics connection failed");
            }
        });
    }
}

fn respond(method: &Method, path: &str, render: &MetricsRender) -> Response<Full<Bytes>> {
    let body = match path {
        "/healthz" => "ok\n".to_owned(),
        "/metrics" => render(),
        _ => return reply(StatusCode::NOT_FOUND, "not found\n".to_owned(), "text/plain"),
    };
    if method != Method::GET && method != Method::HEAD {
        let mut response =
            reply(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".to_owned(), "text/plain");
        response.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let content_type = match path {
        "/metrics" => "text/plain; version=0.0.4",
        _ => "text/plain; charset=utf-8",
    };
    reply(StatusCode::OK, body, content_type)
}

fn reply(status: StatusCode, body: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render() -> MetricsRender {
        Arc::new(|| "# TYPE up gauge\nup 1\n".to_owned())
    }

    #[test]
    fn routes_answer_as_prometheus_and_probes_expect() {
        let metrics = respond(&Method::GET, "/metrics", &render());
        assert_eq!(metrics.status(), StatusCode::OK);
        assert_eq!(metrics.headers()[CONTENT_TYPE], "text/plain; version=0.0.4");
        assert_eq!(respond(&Method::GET, "/healthz", &render()).status(), StatusCode::OK);
        assert_eq!(respond(&Method::HEAD, "/healthz", &render()).status(), StatusCode::OK);
        assert_eq!(respond(&Method::GET, "/nope", &render()).status(), StatusCode::NOT_FOUND);
        let post = respond(&Method::POST, "/metrics", &render());
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(post.headers()[ALLOW], "GET, HEAD");
    }

    #[tokio::test]
    async fn serves_metrics_over_tcp() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, render()));
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\n# TYPE up gauge\nup 1\n"), "{answer}");
        server.abort();
    }
}
