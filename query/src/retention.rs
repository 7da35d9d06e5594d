//! Keeping the store bounded and quick: whole day partitions dropped by age and by a disk cap,
//! and closed partitions merged into one segment.
//!
//! Housekeeping runs through the [`StoreWriter`], the store's only writer, so a drop or a merge
//! never races the indexing of the same partition. A partition is dropped by renaming its
//! directory aside, then writing the manifest without it, then deleting it: a crash between
//! leaves a `trash-*` directory that the next open deletes, never a half-present partition.
//! Searches that already hold a dropped partition's searcher finish on their open files.

use std::time::Duration;

use crate::QueryError;
use crate::store::{NANOS_PER_DAY, StoreWriter};

/// What housekeeping keeps and merges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Partitions whose whole day is older than this are dropped.
    pub max_age: Option<Duration>,
    /// While all partitions together are larger, the oldest is dropped (never the newest).
    pub max_bytes: Option<u64>,
    /// A day's partition is merged into one segment this long after the day ended: late
    /// records still land in it, but rarely.
    pub merge_after: Duration,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self { max_age: None, max_bytes: None, merge_after: Duration::from_secs(3600) }
    }
}

/// Why a partition went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    Age,
    Size,
}

impl DropReason {
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Age => "age",
            DropReason::Size => "size",
        }
    }
}

/// What one round of housekeeping did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Housekeeping {
    /// Day, reason, documents and bytes of each dropped partition.
    pub dropped: Vec<(String, DropReason, u64, u64)>,
    /// Days merged into one segment.
    pub merged: Vec<String>,
}

impl StoreWriter {
    /// Drops what the policy no longer keeps and merges closed partitions; `now_ns` is the
    /// current time. Records the drops in metrics.
    pub fn housekeeping(
        &mut self,
        now_ns: i64,
        policy: &RetentionPolicy,
    ) -> Result<Housekeeping, QueryError> {
        let mut done = Housekeeping::default();
        let mut stats: Vec<_> = self.store().partition_stats().into_iter().collect();
        // Oldest first (keys are YYYY-MM-DD).
        stats.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(age) = policy.max_age {
            let oldest_kept =
                now_ns.saturating_sub(i64::try_from(age.as_nanos()).unwrap_or(i64::MAX));
            for (key, s) in &stats {
                let Some(start) = crate::store::partition_start(key) else { continue };
                if start + NANOS_PER_DAY <= oldest_kept {
                    done.dropped.push((key.clone(), DropReason::Age, s.docs, s.bytes));
                }
            }
        }
        stats.retain(|(key, _)| !done.dropped.iter().any(|d| &d.0 == key));
        if let Some(cap) = policy.max_bytes {
            let mut total: u64 = stats.iter().map(|(_, s)| s.bytes).sum();
            for (key, s) in stats.iter().take(stats.len().saturating_sub(1)) {
                if total <= cap {
                    break;
                }
                total -= s.bytes;
                done.dropped.push((key.clone(), DropReason::Size, s.docs, s.bytes));
            }
        }
        for (key, reason, docs, bytes) in &done.dropped {
            self.drop_partition(key)?;
            tracing::info!(partition = %key, reason = reason.name(), docs, bytes, "dropped a partition");
            metrics::counter!("sluice_index_partitions_dropped_total", "reason" => reason.name())
                .increment(1);
            metrics::counter!("sluice_index_docs_dropped_total", "reason" => reason.name())
                .increment(*docs);
        }
        let merge_after = i64::try_from(policy.merge_after.as_nanos()).unwrap_or(i64::MAX);
        for key in self.store().partition_keys() {
            let Some(start) = crate::store::partition_start(&key) else { continue };
            if start + NANOS_PER_DAY + merge_after > now_ns {
                continue;
            }
            if self.merge_partition(&key)? {
                tracing::info!(partition = %key, "merged a closed partition into one segment");
                done.merged.push(key);
            }
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::SearchRequest;
    use crate::testing::{rec, store};

    const DAY: i64 = NANOS_PER_DAY;

    fn days(store: &crate::Store) -> Vec<String> {
        store.partition_stats().into_keys().collect()
    }

    #[test]
    fn partitions_go_by_age_then_by_size_oldest_first() {
        let records: Vec<_> = (0..50u64)
            .map(|i| rec(1, i, (i as i64 / 10) * DAY + 5, "ns", "p", &format!("INFO r{i}")))
            .collect();
        let (dir, store, mut writer) = store(&records);
        assert_eq!(days(&store).len(), 5);
        let now = 5 * DAY + 10;
        let policy = RetentionPolicy {
            max_age: Some(Duration::from_secs(3 * 86_400)),
            ..RetentionPolicy::default()
        };
        let done = writer.housekeeping(now, &policy).unwrap();
        let dropped: Vec<_> = done.dropped.iter().map(|d| (d.0.as_str(), d.1, d.2)).collect();
        assert_eq!(
            dropped,
            [("1970-01-01", DropReason::Age, 10), ("1970-01-02", DropReason::Age, 10)]
        );
        assert_eq!(days(&store), ["1970-01-03", "1970-01-04", "1970-01-05"]);
        assert_eq!(store.search(&SearchRequest::new("INFO")).unwrap().total, 30);
        assert!(!dir.path().join("p-1970-01-01").exists());
        let per_day = store.partition_stats()["1970-01-03"].bytes;
        let policy = RetentionPolicy {
            max_bytes: Some(per_day * 2 + per_day / 2),
            ..RetentionPolicy::default()
        };
        let done = writer.housekeeping(now, &policy).unwrap();
        assert_eq!(done.dropped.len(), 1);
        assert_eq!(done.dropped[0].1, DropReason::Size);
        assert_eq!(days(&store), ["1970-01-04", "1970-01-05"]);
        // A cap below the newest partition keeps the newest.
        let policy = RetentionPolicy { max_bytes: Some(1), ..RetentionPolicy::default() };
        writer.housekeeping(now, &policy).unwrap();
        assert_eq!(days(&store), ["1970-01-05"]);
        // The store reopens as it was left, and records of a dropped day can come anew.
        drop(writer);
        let reopened = crate::Store::open(dir.path()).unwrap();
        assert_eq!(days(&reopened), ["1970-01-05"]);
        assert_eq!(reopened.search(&SearchRequest::new("")).unwrap().total, 10);
        let mut writer = StoreWriter::new(reopened.clone());
        writer.add(&rec(1, 0, 5, "ns", "p", "INFO again"), 99).unwrap();
        writer.commit(99).unwrap();
        assert_eq!(reopened.search(&SearchRequest::new("again")).unwrap().total, 1);
    }

    #[test]
    fn closed_partitions_are_merged_and_keep_every_record() {
        let (_dir, store, mut writer) = store(&[rec(1, 0, 10, "ns", "p", "INFO a")]);
        for i in 1..6u64 {
            writer.add(&rec(1, i, 10 + i as i64, "ns", "p", "INFO a"), i + 1).unwrap();
            writer.commit(i + 1).unwrap();
        }
        assert!(store.segment_count("1970-01-01").unwrap() > 1);
        let policy = RetentionPolicy::default();
        // Not yet closed: the day has not ended an hour ago.
        assert!(writer.housekeeping(DAY, &policy).unwrap().merged.is_empty());
        let done = writer.housekeeping(DAY + 2 * 3_600_000_000_000, &policy).unwrap();
        assert_eq!(done.merged, ["1970-01-01"]);
        assert_eq!(store.segment_count("1970-01-01").unwrap(), 1);
        assert_eq!(store.search(&SearchRequest::new("a")).unwrap().total, 6);
        // Once merged, nothing more to do; a late record reopens the partition for writing.
        assert!(writer.housekeeping(DAY * 2, &policy).unwrap().merged.is_empty());
        writer.add(&rec(1, 6, 20, "ns", "p", "INFO a"), 9).unwrap();
        writer.commit(9).unwrap();
        assert_eq!(store.search(&SearchRequest::new("a")).unwrap().total, 7);
    }
}
