//! Test helpers: a store in a temporary directory filled with chosen records.

use std::sync::Arc;

use sluice_proto::LogRecord;

use crate::store::{Store, StoreWriter};

/// A record of `source` at `offset`, time `ts`, in `cluster`/`namespace`, pod `pod`; the
/// level is the message's first word when it names one.
pub(crate) fn rec(
    source: u64,
    offset: u64,
    ts: i64,
    ns: &str,
    pod: &str,
    message: &str,
) -> LogRecord {
    LogRecord {
        source,
        offset,
        timestamp_ns: ts,
        cluster: "c1".to_owned(),
        namespace: ns.to_owned(),
        pod: pod.to_owned(),
        container: "app".to_owned(),
        message: message.to_owned(),
        level: sluice_proto::level::canonical(message.split(' ').next().unwrap_or_default())
            .unwrap_or_default()
            .to_owned(),
        ..LogRecord::default()
    }
}

/// A store holding `records`, committed.
pub(crate) fn store(records: &[LogRecord]) -> (tempfile::TempDir, Arc<Store>, StoreWriter) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut writer = StoreWriter::new(store.clone());
    for (i, r) in records.iter().enumerate() {
        writer.add(r, i as u64 + 1).unwrap();
    }
    writer.commit(records.len() as u64).unwrap();
    (dir, store, writer)
}
