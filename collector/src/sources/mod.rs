//! Where records come from. Every source makes them durable in the WAL before it answers or
//! commits, and gives each a stable id ([`append`]).
//!
//! # Layout
//! - [`agent`]: the gRPC `Push` of our agents; a batch is acknowledged once it is durable.
//! - [`http`]: what the clients' receivers share (token check, append), and their routes:
//!   [`bulk`] (Elasticsearch `_bulk`), [`otlp`] (OTLP/HTTP `/v1/logs`, and OTLP/gRPC) and
//!   [`otlp_metrics`] (`/v1/metrics` and the gRPC `MetricsService`: metrics kept as sent).
//! - [`kafka`]: a consumer group reading topics, a [`Source`] of its own.
//! - [`kube_events`]: the cluster's Kubernetes events, one record per occurrence, a
//!   [`Source`] too.
//! - [`append`]: the one way a batch goes into the WAL with stable ids, and [`append::Delivery`],
//!   which holds a source's checkpoint until every sink holds its records.

pub mod agent;
pub mod append;
pub mod bulk;
pub mod http;
pub mod kafka;
pub mod kube_events;
pub mod otlp;
pub mod otlp_metrics;

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::server::{Router, TcpIncoming};

use crate::runner::Cursors;
use crate::wal::Wal;

/// A source that pulls records (a Kafka consumer group, Kubernetes events) rather than
/// being pushed to through a listener.
#[async_trait]
pub trait Source: Send {
    /// A short name for logs.
    fn name(&self) -> &str;

    /// Reads until `stop`, appending to `wal`, and commits its own checkpoints only once
    /// `cursors` say every sink holds what they cover (see [`append::Delivery`]).
    async fn run(
        self: Box<Self>,
        wal: Arc<Wal>,
        cursors: Arc<Cursors>,
        stop: watch::Receiver<bool>,
    );
}

/// Unix nanoseconds now: the receive time of records, and their time when they carry none.
pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Serves a gRPC `router` on `listener` until `shutdown`.
pub async fn serve_grpc(
    router: Router,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    router.serve_with_incoming_shutdown(no_delay(listener), shutdown).await
}

/// Accepted connections with Nagle's algorithm off. tonic sets `TCP_NODELAY` only on
/// listeners it binds itself; on these, an ack written while a window update was still
/// unacknowledged waited for the agent's delayed ACK (up to 40 ms on Linux), and an agent with
/// all its pushes in flight has nothing to send that would carry the ACK sooner.
fn no_delay(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

#[cfg(test)]
mod tests {
    use tokio_stream::StreamExt;

    use super::*;

    #[tokio::test]
    async fn accepted_connections_do_not_wait_for_acks_to_send() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut incoming = no_delay(listener);
        let _client = tokio::net::TcpStream::connect(address).await.unwrap();
        let accepted = incoming.next().await.unwrap().unwrap();
        assert!(accepted.nodelay().unwrap());
    }
}
