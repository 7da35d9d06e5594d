//! [`StoreWriter`], the store's one writer: adds each record at most once and commits with
//! the WAL position the commit covers.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::Path;
use std::sync::Arc;

use sluice_proto::{LogRecord, RecordId};
use tantivy::{IndexWriter, TantivyDocument};

use super::manifest::{
    FORMAT_VERSION, NANOS_PER_DAY, PartitionStats, partition_key, partition_start,
};
use super::{Partition, Store};
use crate::QueryError;

/// How many partitions may have an open writer at once; each holds an indexing arena.
const MAX_OPEN_WRITERS: usize = 4;
const WRITER_MEMORY_BYTES: usize = 64 << 20;

/// Unix nanoseconds now.
fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// The earliest and latest record time added to a partition since the last commit.
#[derive(Debug, Clone, Copy)]
struct TimeRange {
    min_ts: i64,
    max_ts: i64,
}

/// Per source, the offsets the committed index holds between a first and a last one: what
/// [`StoreWriter::add_all`] looked up for a batch.
type LookedUp = HashMap<u64, (u64, u64, HashSet<u64>)>;

/// Whether [`StoreWriter::add`] indexed a record or found it already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    Indexed,
    Duplicate,
}

struct OpenWriter {
    writer: IndexWriter<TantivyDocument>,
    partition: Arc<Partition>,
    last_used: u64,
    dirty: bool,
}

/// The store's one writer: adds records at most once and commits them with a WAL position.
pub struct StoreWriter {
    store: Arc<Store>,
    /// Open writers by the first nanosecond of their day.
    writers: HashMap<i64, OpenWriter>,
    tick: u64,
    /// Per source, the highest offset committed or added (`None`: the source has no record).
    high_water: HashMap<u64, Option<u64>>,
    /// Per source, the highest offset committed: only at or below it can a record be in the
    /// committed index, which is costly to ask. Agents push several batches at once, so a
    /// batch may land behind the next one; its records are then below `high_water` but above
    /// this, and need only the cheap check of `uncommitted`.
    committed_high: HashMap<u64, Option<u64>>,
    /// Ids added since the last commit, which searchers cannot see yet.
    uncommitted: HashSet<RecordId>,
    /// Time ranges of what was added since the last commit, per partition's first nanosecond.
    pending: HashMap<i64, TimeRange>,
    last_position: u64,
    /// The number the next commit will have, which records added now carry.
    seq: u64,
}

impl StoreWriter {
    pub fn new(store: Arc<Store>) -> Self {
        let last_position = store.committed_position();
        let seq = store.commit_seq() + 1;
        Self {
            store,
            writers: HashMap::new(),
            tick: 0,
            high_water: HashMap::new(),
            committed_high: HashMap::new(),
            uncommitted: HashSet::new(),
            pending: HashMap::new(),
            last_position,
            seq,
        }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The highest offset of `source` added, loading the committed one at first sight.
    fn high_water(&mut self, source: u64) -> Result<Option<u64>, QueryError> {
        if let Some(h) = self.high_water.get(&source) {
            return Ok(*h);
        }
        let h = self.store.committed_high_water(source)?;
        self.high_water.insert(source, h);
        self.committed_high.insert(source, h);
        Ok(h)
    }

    /// Whether `id` may be in the committed index, so that only a lookup can tell.
    fn needs_lookup(&self, id: &RecordId, high_water: Option<u64>) -> bool {
        high_water.is_some_and(|h| id.offset <= h)
            && !self.uncommitted.contains(id)
            && self
                .committed_high
                .get(&id.source)
                .copied()
                .flatten()
                .is_some_and(|c| id.offset <= c)
    }

    /// Adds each of `records` (one batch, in order) that the store does not hold yet; returns
    /// how many were indexed and how many were already there.
    ///
    /// Records that only a lookup can tell (a batch that reached the WAL after a later one of
    /// its source was committed, or a replay) are looked up together, one query per source: a
    /// lookup scans the offsets of the source's records, and one per record cost a third of
    /// the collector's CPU on a bulk load whose pushes landed out of order.
    pub fn add_all(
        &mut self,
        records: &[LogRecord],
        position: u64,
    ) -> Result<(u64, u64), QueryError> {
        let mut ranges: HashMap<u64, (u64, u64)> = HashMap::new();
        for record in records {
            let id = record.id();
            let high_water = self.high_water(id.source)?;
            if self.needs_lookup(&id, high_water) {
                let range = ranges.entry(id.source).or_insert((id.offset, id.offset));
                range.0 = range.0.min(id.offset);
                range.1 = range.1.max(id.offset);
            }
        }
        let mut looked_up = LookedUp::new();
        for (source, (first, last)) in ranges {
            let offsets = self.store.committed_offsets(source, first, last)?;
            looked_up.insert(source, (first, last, offsets));
        }
        let (mut indexed, mut duplicates) = (0, 0);
        for record in records {
            match self.add_with(record, position, &looked_up)? {
                Added::Indexed => indexed += 1,
                Added::Duplicate => duplicates += 1,
            }
        }
        Ok((indexed, duplicates))
    }

    /// Whether the committed index holds `id`, from `looked_up` when it covers the id.
    fn committed(&self, id: &RecordId, looked_up: &LookedUp) -> Result<bool, QueryError> {
        match looked_up.get(&id.source) {
            Some((first, last, offsets)) if (*first..=*last).contains(&id.offset) => {
                Ok(offsets.contains(&id.offset))
            }
            _ => self.store.contains_committed(id),
        }
    }

    /// Adds `record` unless the store already holds its id. `position` is the WAL position
    /// just after the record's batch: what a commit of this record covers.
    pub fn add(&mut self, record: &LogRecord, position: u64) -> Result<Added, QueryError> {
        self.add_with(record, position, &LookedUp::new())
    }

    fn add_with(
        &mut self,
        record: &LogRecord,
        position: u64,
        looked_up: &LookedUp,
    ) -> Result<Added, QueryError> {
        self.last_position = self.last_position.max(position);
        let id = record.id();
        let high_water = self.high_water(id.source)?;
        if high_water.is_some_and(|h| id.offset <= h)
            && (self.uncommitted.contains(&id)
                || (self.needs_lookup(&id, high_water) && self.committed(&id, looked_up)?))
        {
            return Ok(Added::Duplicate);
        }
        self.high_water.insert(id.source, Some(high_water.map_or(id.offset, |h| h.max(id.offset))));
        // A time outside the window would overflow the day arithmetic below (a record of 1677
        // landed in the partition of 2262 and wedged the writer): it is stored at the time it
        // was received, flagged.
        let replaced;
        let record = if sluice_proto::time::in_window(record.timestamp_ns) {
            record
        } else {
            let received = record.ingest_time_ns;
            replaced = LogRecord {
                timestamp_ns: if sluice_proto::time::in_window(received) {
                    received
                } else {
                    now_ns()
                },
                flags: record.flags | sluice_proto::flags::TIME_REPLACED,
                ..record.clone()
            };
            &replaced
        };
        let ts = record.timestamp_ns;
        let document = self.store.schema.to_document(record, self.seq);
        let start_ns = ts.div_euclid(NANOS_PER_DAY) * NANOS_PER_DAY;
        let writer = self.writer_for(start_ns)?;
        writer.dirty = true;
        if let Err(e) = writer.writer.add_document(document) {
            return Err(QueryError::index(self.store.partition_dir(&partition_key(start_ns)))(e));
        }
        self.uncommitted.insert(id);
        let range = self.pending.entry(start_ns).or_insert(TimeRange { min_ts: ts, max_ts: ts });
        range.min_ts = range.min_ts.min(ts);
        range.max_ts = range.max_ts.max(ts);
        Ok(Added::Indexed)
    }

    /// The open writer of the day starting at `start_ns`; keyed by that number so the hot
    /// path formats no partition name.
    fn writer_for(&mut self, start_ns: i64) -> Result<&mut OpenWriter, QueryError> {
        self.tick += 1;
        if !self.writers.contains_key(&start_ns) {
            let partition = self.store.get_or_create_partition(start_ns)?;
            if self.writers.len() >= MAX_OPEN_WRITERS {
                self.evict_least_recently_used()?;
            }
            // Half the cores index; the other half receive, decode and write the WAL. On two
            // cores one indexing thread finished a bulk load sooner than two (bench/).
            let threads =
                std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).clamp(1, 4));
            let writer = partition
                .index
                .writer_with_num_threads(threads, WRITER_MEMORY_BYTES)
                .map_err(QueryError::index(self.store.partition_dir(&partition.key)))?;
            self.writers
                .insert(start_ns, OpenWriter { writer, partition, last_used: 0, dirty: false });
        }
        let open = self.writers.get_mut(&start_ns).expect("writer just ensured");
        open.last_used = self.tick;
        Ok(open)
    }

    /// Commits the writer used longest ago and closes it; it covers every record added so
    /// far, so its payload is the last position seen.
    fn evict_least_recently_used(&mut self) -> Result<(), QueryError> {
        let Some(start) = self.writers.iter().min_by_key(|(_, w)| w.last_used).map(|(k, _)| *k)
        else {
            return Ok(());
        };
        let mut open = self.writers.remove(&start).expect("key taken from the map");
        self.commit_one(&mut open)?;
        open.writer
            .wait_merging_threads()
            .map_err(QueryError::index(self.store.partition_dir(&open.partition.key)))?;
        Ok(())
    }

    fn commit_one(&self, open: &mut OpenWriter) -> Result<(), QueryError> {
        if !open.dirty {
            return Ok(());
        }
        let path = self.store.partition_dir(&open.partition.key);
        let mut prepared = open.writer.prepare_commit().map_err(QueryError::index(&path))?;
        prepared
            .set_payload(&serde_json::json!({ "wal_position": self.last_position }).to_string());
        prepared.commit().map_err(QueryError::index(&path))?;
        open.partition.reader.reload().map_err(QueryError::index(&path))?;
        open.dirty = false;
        Ok(())
    }

    /// Makes every added record durable and searchable, and records that the store covers
    /// the WAL up to `position`.
    pub fn commit(&mut self, position: u64) -> Result<(), QueryError> {
        self.commit_with(position, None)
    }

    /// [`Self::commit`], and when `caught_up_at` is given — a time at which the WAL ended at
    /// or before `position` — records that everything acknowledged before it is searchable.
    pub fn commit_with(
        &mut self,
        position: u64,
        caught_up_at: Option<i64>,
    ) -> Result<(), QueryError> {
        self.last_position = self.last_position.max(position);
        let mut writers = std::mem::take(&mut self.writers);
        let result = writers.values_mut().try_for_each(|open| self.commit_one(open));
        self.writers = writers;
        result?;
        let mut manifest = self.store.manifest.read().expect("manifest poisoned").clone();
        if self.pending.is_empty() && manifest.wal_position == self.last_position {
            if let Some(t) = caught_up_at.filter(|t| manifest.complete_until_ns < Some(*t)) {
                manifest.complete_until_ns = Some(t);
                self.store.write_manifest(&manifest)?;
            }
            return Ok(());
        }
        for (start_ns, TimeRange { min_ts, max_ts }) in self.pending.drain() {
            let key = partition_key(start_ns);
            let partition = self.store.partitions.read().expect("poisoned").get(&key).cloned();
            let docs = partition.map_or(0, |p| p.searcher().num_docs());
            let bytes = dir_bytes(&self.store.partition_dir(&key));
            let stats = manifest.partitions.entry(key).or_insert(PartitionStats {
                min_ts,
                max_ts,
                docs: 0,
                bytes: 0,
            });
            stats.min_ts = stats.min_ts.min(min_ts);
            stats.max_ts = stats.max_ts.max(max_ts);
            stats.docs = docs;
            stats.bytes = bytes;
        }
        manifest.version = FORMAT_VERSION;
        manifest.wal_position = self.last_position;
        manifest.commit_seq += 1;
        if caught_up_at.is_some() {
            manifest.complete_until_ns = caught_up_at.max(manifest.complete_until_ns);
        }
        self.store.write_manifest(&manifest)?;
        self.seq = manifest.commit_seq + 1;
        self.uncommitted.clear();
        self.committed_high.clone_from(&self.high_water);
        Ok(())
    }

    /// Drops a partition: its open writer (and anything it had not committed) and its files.
    pub(crate) fn drop_partition(&mut self, key: &str) -> Result<(), QueryError> {
        if let Some(start) = partition_start(key) {
            self.writers.remove(&start);
            self.pending.remove(&start);
        }
        self.store.remove_partition(key)
    }

    /// Merges a partition into one segment; false when it already is one (or is gone).
    pub(crate) fn merge_partition(&mut self, key: &str) -> Result<bool, QueryError> {
        let Some(partition) = self.store.partitions.read().expect("poisoned").get(key).cloned()
        else {
            return Ok(false);
        };
        let path = self.store.partition_dir(key);
        let ids = partition.index.searchable_segment_ids().map_err(QueryError::index(&path))?;
        if ids.len() <= 1 && !self.writers.contains_key(&partition.start_ns) {
            return Ok(false);
        }
        // The open writer commits what it holds and finishes its own merges first, so the
        // merge below owns every segment.
        if let Some(mut open) = self.writers.remove(&partition.start_ns) {
            self.commit_one(&mut open)?;
            open.writer.wait_merging_threads().map_err(QueryError::index(&path))?;
        }
        let ids = partition.index.searchable_segment_ids().map_err(QueryError::index(&path))?;
        if ids.len() <= 1 {
            return Ok(false);
        }
        let mut writer: IndexWriter<TantivyDocument> = partition
            .index
            .writer_with_num_threads(1, WRITER_MEMORY_BYTES)
            .map_err(QueryError::index(&path))?;
        writer.merge(&ids).wait().map_err(QueryError::index(&path))?;
        writer.wait_merging_threads().map_err(QueryError::index(&path))?;
        partition.reader.reload().map_err(QueryError::index(&path))?;
        let mut manifest = self.store.manifest.read().expect("manifest poisoned").clone();
        if let Some(stats) = manifest.partitions.get_mut(key) {
            stats.bytes = dir_bytes(&path);
        }
        self.store.write_manifest(&manifest)?;
        Ok(true)
    }

    /// Records added since the last commit.
    pub fn uncommitted(&self) -> usize {
        self.uncommitted.len()
    }
}

/// Bytes of the files directly in `dir` (a tantivy index keeps no subdirectories).
fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use sluice_proto::id::source_key;

    use super::*;

    pub(crate) fn record(source: u64, offset: u64, ts: i64, message: &str) -> LogRecord {
        LogRecord {
            source,
            offset,
            timestamp_ns: ts,
            message: message.to_owned(),
            namespace: "default".to_owned(),
            ..LogRecord::default()
        }
    }

    const DAY: i64 = NANOS_PER_DAY;

    #[test]
    fn partitions_by_day_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut writer = StoreWriter::new(store.clone());
        let s = source_key("c/n", 1);
        writer.add(&record(s, 0, 10, "a"), 100).unwrap();
        writer.add(&record(s, 10, DAY + 10, "b"), 200).unwrap();
        writer.commit(200).unwrap();
        assert_eq!(store.doc_count(), 2);
        assert_eq!(store.partitions_overlapping(0, DAY).len(), 1);
        assert_eq!(store.partitions_overlapping(0, i64::MAX).len(), 2);
        drop(writer);
        let reopened = Store::open(dir.path()).unwrap();
        assert_eq!(reopened.committed_position(), 200);
        assert_eq!(reopened.doc_count(), 2);
        let keys: Vec<_> = reopened
            .partitions_overlapping(i64::MIN, i64::MAX)
            .iter()
            .map(|p| p.key.clone())
            .collect();
        assert_eq!(keys, ["1970-01-02", "1970-01-01"]);
    }

    #[test]
    fn skips_ids_it_already_has_before_and_after_commit_and_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut writer = StoreWriter::new(store.clone());
        let s = source_key("c/n", 1);
        assert_eq!(writer.add(&record(s, 0, 1, "a"), 1).unwrap(), Added::Indexed);
        assert_eq!(writer.add(&record(s, 5, 1, "b"), 1).unwrap(), Added::Indexed);
        // A resend before the commit.
        assert_eq!(writer.add(&record(s, 0, 1, "a"), 2).unwrap(), Added::Duplicate);
        writer.commit(2).unwrap();
        // A resend after it.
        assert_eq!(writer.add(&record(s, 5, 1, "b"), 3).unwrap(), Added::Duplicate);
        drop(writer);
        // A replay after a restart: the high-water mark is rebuilt from the index.
        let mut writer = StoreWriter::new(Store::open(dir.path()).unwrap());
        assert_eq!(writer.add(&record(s, 0, 1, "a"), 4).unwrap(), Added::Duplicate);
        assert_eq!(writer.add(&record(s, 5, 1, "b"), 4).unwrap(), Added::Duplicate);
        assert_eq!(writer.add(&record(s, 9, 1, "c"), 4).unwrap(), Added::Indexed);
        // An offset below the high-water mark that was never stored is new.
        assert_eq!(writer.add(&record(s, 3, 1, "d"), 4).unwrap(), Added::Indexed);
        writer.commit(4).unwrap();
        assert_eq!(writer.store().doc_count(), 4);
    }

    #[test]
    fn batches_out_of_order_are_each_indexed_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = source_key("c/n", 3);
        let store = Store::open(dir.path()).unwrap();
        let mut writer = StoreWriter::new(store.clone());
        for offset in 0..10 {
            writer.add(&record(s, offset, 1, "old"), 10).unwrap();
        }
        writer.commit(10).unwrap();
        // The batch after the next one lands first, then the next one, then a resend of both.
        for offsets in [30..40, 10..30, 10..40] {
            for offset in offsets.clone() {
                let added = writer.add(&record(s, offset, 1, "new"), 20).unwrap();
                let expected = if offsets.start == 10 && offsets.end == 40 {
                    Added::Duplicate
                } else {
                    Added::Indexed
                };
                assert_eq!(added, expected, "offset {offset} of {offsets:?}");
            }
        }
        assert_eq!(writer.add(&record(s, 5, 1, "old"), 20).unwrap(), Added::Duplicate);
        writer.commit(20).unwrap();
        assert_eq!(writer.add(&record(s, 35, 1, "new"), 30).unwrap(), Added::Duplicate);
        assert_eq!(store.doc_count(), 40);
    }

    #[test]
    fn a_batch_is_looked_up_once_per_source_and_each_record_kept_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (a, b) = (source_key("a", 1), source_key("b", 1));
        let batch = |source: u64, offsets: std::ops::Range<u64>| -> Vec<LogRecord> {
            offsets.map(|o| record(source, o * 10, DAY + o as i64, "line")).collect()
        };
        let mut writer = StoreWriter::new(store.clone());
        // A later batch of `a` committed before an earlier one arrives, as pushes in flight do.
        assert_eq!(writer.add_all(&batch(a, 50..100), 1).unwrap(), (50, 0));
        assert_eq!(writer.add_all(&batch(b, 0..10), 1).unwrap(), (10, 0));
        writer.commit(1).unwrap();
        let mut late = batch(a, 0..50);
        late.extend(batch(a, 40..60));
        late.extend(batch(b, 5..15));
        assert_eq!(writer.add_all(&late, 2).unwrap(), (55, 25), "new: a 0..50 and b 10..15");
        writer.commit(2).unwrap();
        drop(writer);
        let mut replay = StoreWriter::new(store.clone());
        let mut all = batch(a, 0..100);
        all.extend(batch(b, 0..15));
        assert_eq!(replay.add_all(&all, 3).unwrap(), (0, 115));
        assert_eq!(store.doc_count(), 115);
    }

    #[test]
    fn uncommitted_records_are_lost_on_crash_and_replayed_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = source_key("c/n", 2);
        {
            let mut writer = StoreWriter::new(Store::open(dir.path()).unwrap());
            writer.add(&record(s, 0, 1, "a"), 10).unwrap();
            writer.commit(10).unwrap();
            writer.add(&record(s, 1, 1, "b"), 20).unwrap();
            // Dropped without a commit: the crash.
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.committed_position(), 10);
        let mut writer = StoreWriter::new(store.clone());
        assert_eq!(writer.add(&record(s, 1, 1, "b"), 20).unwrap(), Added::Indexed);
        writer.commit(20).unwrap();
        assert_eq!(store.doc_count(), 2);
    }

    #[test]
    fn evicting_writers_keeps_every_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut writer = StoreWriter::new(store.clone());
        let s = source_key("c/n", 3);
        let days = MAX_OPEN_WRITERS as i64 + 3;
        for day in 0..days {
            writer.add(&record(s, day as u64, day * DAY, "x"), day as u64).unwrap();
        }
        writer.commit(days as u64).unwrap();
        assert_eq!(store.doc_count(), days as u64);
        assert_eq!(writer.add(&record(s, 0, 0, "x"), 99).unwrap(), Added::Duplicate);
    }

    #[test]
    fn read_only_store_refuses_writes_and_sees_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let reader = Store::open_read_only(dir.path()).unwrap();
        let mut writer = StoreWriter::new(store);
        writer.add(&record(1, 0, 5, "x"), 1).unwrap();
        writer.commit(1).unwrap();
        assert_eq!(reader.doc_count(), 0);
        reader.reload().unwrap();
        assert_eq!(reader.doc_count(), 1);
        let mut read_only_writer = StoreWriter::new(reader);
        assert!(matches!(
            read_only_writer.add(&record(1, 1, 5, "y"), 2),
            Err(QueryError::ReadOnly(_))
        ));
    }

    #[test]
    fn records_with_times_outside_the_window_are_kept_at_their_receive_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut writer = StoreWriter::new(store.clone());
        let s = source_key("c/n", 4);
        let received = 1_764_496_800_000_000_000;
        for (offset, ts) in
            [(0, i64::MIN + 1), (1, i64::MAX), (2, -1), (3, 1_700_000_000_000_000_000)]
        {
            let record = LogRecord { ingest_time_ns: received, ..record(s, offset, ts, "x") };
            assert_eq!(writer.add(&record, offset + 1).unwrap(), Added::Indexed, "{ts}");
        }
        writer.commit(4).unwrap();
        assert_eq!(store.doc_count(), 4);
        let days: Vec<String> = store.partition_stats().into_keys().collect();
        assert_eq!(days, ["2023-11-14", "2025-11-30"], "in-window days only");
        assert_eq!(store.partition_stats()["2025-11-30"].docs, 3);
        // The writer goes on: nothing is wedged.
        writer.add(&record(s, 9, 1_700_000_000_000_000_001, "y"), 5).unwrap();
        writer.commit(5).unwrap();
        assert_eq!(store.doc_count(), 5);
    }
}
