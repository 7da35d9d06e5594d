use std::sync::Arc;
use std::time::Duration;

use sluice_query::Store;
use sluice_query::retention::RetentionPolicy;
use tokio::sync::watch;

use super::IndexSink;

/// How the index sink commits: the runner flushes it every `commit_interval`.
#[derive(Debug, Clone)]
pub struct IndexSinkConfig {
    /// Records become searchable at most this long after they reach the WAL. Each commit
    /// writes new segment files, so shorter means more merging work.
    pub commit_interval: Duration,
    /// What the index keeps, and when closed days are merged.
    pub retention: RetentionPolicy,
    /// How often, at most, a commit is followed by retention and merging.
    pub housekeeping_interval: Duration,
}

impl Default for IndexSinkConfig {
    fn default() -> Self {
        Self {
            commit_interval: Duration::from_secs(1),
            retention: RetentionPolicy::default(),
            housekeeping_interval: Duration::from_secs(60),
        }
    }
}

impl IndexSinkConfig {
    /// `wal_end` follows the WAL's end, so a commit that caught up with it can say that
    /// everything acknowledged so far is searchable.
    pub fn build(&self, store: Arc<Store>, wal_end: watch::Receiver<u64>) -> IndexSink {
        IndexSink::new(store, wal_end, self.retention.clone(), self.housekeeping_interval)
    }
}
