//! The agent's own HTTP endpoint, when `metrics_listen` is set: `/metrics` (Prometheus text)
//! and `/healthz`.

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

/// Renders the process's metrics in the Prometheus text format.
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// Serves until the task is dropped or the listener fails.
pub async fn serve(listener: TcpListener, render: MetricsRender) -> std::io::Result<()> {
    let app = Router::new().route("/healthz", get(|| async { "ok\n" })).route(
        "/metrics",
        get(move || {
            let render = render.clone();
            async move {
                ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], render()).into_response()
            }
        }),
    );
    axum::serve(listener, app).await
}
