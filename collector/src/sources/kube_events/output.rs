//! Where forwarded events go: the collector's WAL (`--kube-events`), or, for `sluice events`
//! in a remote cluster, the agent's spool on the way to a central collector. Either way the
//! source's state is committed only once the records it covers are delivered, so a crash
//! forwards again rather than loses.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sluice_proto::LogRecord;
use tokio::sync::watch;

use super::state::State;
use crate::runner::Cursors;
use crate::sources::append::{Batch, Delivery};
use crate::wal::Wal;

/// A destination for event records.
#[async_trait]
pub trait Output: Send {
    /// Makes `records` durable, retrying until it can or `stop` comes; `false` when it could
    /// not (at once on a failure when `stopping` already).
    async fn append(
        &mut self,
        records: Vec<LogRecord>,
        stopping: bool,
        stop: &mut watch::Receiver<bool>,
    ) -> bool;

    /// Keeps `state` until everything appended so far is delivered.
    fn hold(&mut self, state: State);

    /// The newest state held whose records are all delivered now.
    fn delivered(&mut self) -> Option<State>;
}

/// The collector's WAL; delivered once every sink's cursor is past the records.
pub struct WalOutput {
    wal: Arc<Wal>,
    cursors: Arc<Cursors>,
    delivery: Delivery<State>,
    appended_to: u64,
    retry: Duration,
}

impl WalOutput {
    pub fn new(wal: Arc<Wal>, cursors: Arc<Cursors>, retry: Duration) -> Self {
        let appended_to = wal.end();
        Self { wal, cursors, delivery: Delivery::default(), appended_to, retry }
    }
}

#[async_trait]
impl Output for WalOutput {
    async fn append(
        &mut self,
        records: Vec<LogRecord>,
        stopping: bool,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let batch = Batch::with_ids("kube-events", records);
        // The cluster keeps the events while the WAL cannot take them.
        match batch.append_until_stopped(&self.wal, "events", self.retry, stopping, stop).await {
            Some(appended) => {
                self.appended_to = appended.end;
                true
            }
            None => false,
        }
    }

    fn hold(&mut self, state: State) {
        self.delivery.push(self.appended_to, state);
    }

    fn delivered(&mut self) -> Option<State> {
        self.delivery.delivered(&self.cursors).pop()
    }
}
