//! The spool's tests: writing, reading, acknowledging, backpressure, drop policies and
//! damaged segments.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use sluice_proto::LogRecord;
use sluice_proto::block::decode_block;
use sluice_proto::segment::damage;

use crate::chunk::{Chunk, Record};
use crate::config::WhenFull;

use super::*;

fn config(max_bytes: u64, when_full: WhenFull) -> SpoolConfig {
    SpoolConfig { max_bytes, when_full, sync_interval: Duration::from_secs(3600), zstd_level: 1 }
}

fn chunk_of(source: u64, from: u64, n: u64, message: impl Fn(u64) -> String) -> Chunk {
    let common = LogRecord { source, file_path: "/var/log/a.log".into(), ..LogRecord::default() };
    let mut chunk = Chunk::new(&common, 1, 0);
    for i in from..from + n {
        let record = Record {
            offset: i * 100,
            timestamp_ns: 0,
            stream: 0,
            flags: 0,
            level: "",
            message: message(i).into(),
        };
        chunk.push(&record, (i + 1) * 100);
    }
    chunk
}

fn chunk(source: u64, from: u64, n: u64) -> Chunk {
    chunk_of(source, from, n, |i| format!("line {i} 订单 {}", "x".repeat((i % 7) as usize * 50)))
}

/// Records whose messages barely compress, so that a few thousand fill a small spool.
fn noisy_chunk(source: u64, from: u64, n: u64) -> Chunk {
    chunk_of(source, from, n, |i| {
        (0..8u64)
            .map(|k| {
                let seed = (i * 100 * 8 + k + source * 1_000_003).to_le_bytes();
                format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&seed))
            })
            .collect()
    })
}

/// The record offsets (in hundreds) of spooled entries.
fn offsets_of(entries: &[SpoolEntry]) -> Vec<u64> {
    entries
        .iter()
        .flat_map(|e| decode_block(&e.zstd_block).unwrap().into_records())
        .map(|r| r.offset / 100)
        .collect()
}

fn checkpoints(dir: &Path) -> Arc<Mutex<Checkpoints>> {
    Arc::new(Mutex::new(Checkpoints::load(dir).unwrap()))
}

fn open_in(dir: &Path, config: SpoolConfig) -> (SpoolWriter, SpoolReader, Arc<Mutex<Checkpoints>>) {
    open_stoppable(dir, config, Arc::new(AtomicBool::new(false)))
}

fn open_stoppable(
    dir: &Path,
    config: SpoolConfig,
    stop: Arc<AtomicBool>,
) -> (SpoolWriter, SpoolReader, Arc<Mutex<Checkpoints>>) {
    let c = checkpoints(dir);
    let acked = c.lock().unwrap().spool_acked();
    let (w, r) = open(dir, config, acked, c.clone(), stop).unwrap();
    (w, r, c)
}

/// Everything synced and not yet taken, acknowledged as it is read when `ack`.
fn drain(reader: &mut SpoolReader, c: &Arc<Mutex<Checkpoints>>, ack: bool) -> Vec<u64> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (_stop_tx, mut stop) = watch::channel(false);
    let mut offsets = Vec::new();
    runtime.block_on(async {
        while *reader.synced.borrow() > reader.position {
            let Batch { entries, end, .. } =
                reader.next_batch(4096, Duration::from_millis(1), &mut stop).await.unwrap();
            offsets.extend(offsets_of(&entries));
            if ack {
                let mut c = c.lock().unwrap();
                c.acknowledge_spool(end);
                c.save().unwrap();
                drop(c);
                reader.acknowledge(end);
            }
        }
    });
    offsets
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let segments = Segments::new(&dir.join("spool"), SUFFIX);
    segments.list().unwrap().into_iter().map(|b| segments.path(b)).collect()
}

#[test]
fn records_come_back_in_order_and_checkpoints_move_on_sync() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, mut r, c) = open_in(dir.path(), config(1 << 20, WhenFull::Backpressure));
    for i in 0..50 {
        w.append(chunk(7, i * 10, 10), &mut || false).unwrap();
    }
    assert_eq!(c.lock().unwrap().offset(7), None, "nothing synced yet");
    assert!(drain(&mut r, &c, true).is_empty(), "the shipper sees only synced records");
    w.flush();
    assert_eq!(c.lock().unwrap().offset(7), Some(500 * 100));
    assert_eq!(drain(&mut r, &c, true), (0..500).collect::<Vec<_>>());
    assert!(segment_files(dir.path()).len() <= 2, "acknowledged segments are deleted");
}

#[test]
fn unacknowledged_records_are_resent_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut w, mut r, c) = open_in(dir.path(), config(1 << 20, WhenFull::Backpressure));
        for i in 0..30 {
            w.append(chunk(1, i * 10, 10), &mut || false).unwrap();
            w.flush();
        }
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (_tx, mut stop_rx) = watch::channel(false);
        let Batch { entries, end, .. } =
            runtime.block_on(r.next_batch(2000, Duration::from_millis(1), &mut stop_rx)).unwrap();
        assert!(!entries.is_empty() && entries.len() < 300);
        let mut c = c.lock().unwrap();
        c.acknowledge_spool(end);
        c.save().unwrap();
        drop(c);
        r.acknowledge(end);
        let next =
            runtime.block_on(r.next_batch(2000, Duration::from_millis(1), &mut stop_rx)).unwrap();
        assert!(!next.entries.is_empty(), "taken but never acknowledged: must come back");
    }
    let (_w, mut r, c) = open_in(dir.path(), config(1 << 20, WhenFull::Backpressure));
    let resent = drain(&mut r, &c, true);
    let first = resent[0];
    assert!(first > 0);
    assert_eq!(resent, (first..300).collect::<Vec<_>>());
}

#[test]
fn a_torn_tail_is_cut_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut w, _r, _c) = open_in(dir.path(), config(1 << 20, WhenFull::Backpressure));
        w.append(chunk(1, 0, 5), &mut || false).unwrap();
        w.flush();
    }
    let last = segment_files(dir.path()).pop().unwrap();
    let whole = fs::metadata(&last).unwrap().len();
    OpenOptions::new().append(true).open(&last).unwrap().write_all(&[90, 0, 0, 0, 1]).unwrap();
    let (mut w, mut r, c) = open_in(dir.path(), config(1 << 20, WhenFull::Backpressure));
    assert_eq!(fs::metadata(&last).unwrap().len(), whole, "the torn frame is cut");
    w.append(chunk(1, 5, 5), &mut || false).unwrap();
    w.flush();
    assert_eq!(drain(&mut r, &c, true), (0..10).collect::<Vec<_>>());
}

#[test]
fn a_corrupt_segment_is_skipped_and_reading_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    // 1 MiB spool: 128 KiB segments, so these chunks fill several.
    let (mut w, _r, _c) = open_in(dir.path(), config(1 << 20, WhenFull::Backpressure));
    for i in 0..200 {
        w.append(noisy_chunk(1, i * 10, 10), &mut || false).unwrap();
    }
    w.flush();
    drop((w, _r));
    let files = segment_files(dir.path());
    assert!(files.len() >= 3, "{files:?}");
    let mut bytes = fs::read(&files[1]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&files[1], &bytes).unwrap();
    let (_w, mut r, c) = open_in(dir.path(), config(1 << 20, WhenFull::Backpressure));
    let got = drain(&mut r, &c, true);
    assert!(got.len() < 2000, "the damaged part is gone");
    assert!(got.len() > 1000, "everything else arrives: {}", got.len());
    assert!(got.windows(2).all(|p| p[0] < p[1]), "in order, no repeats");
    assert_eq!(*got.last().unwrap(), 1999, "segments after the damage are read");
}

#[test]
fn a_full_spool_blocks_the_reader_until_acks_make_room() {
    let dir = tempfile::tempdir().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (mut w, mut r, c) =
        open_stoppable(dir.path(), config(1 << 20, WhenFull::Backpressure), stop.clone());
    let writer = std::thread::spawn(move || {
        for i in 0..3000 {
            w.append(noisy_chunk(1, i * 10, 10), &mut || false).unwrap();
        }
        w.flush();
        w
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(!writer.is_finished(), "the writer waits for room");
    let disk = r.shared.state().disk_bytes();
    assert!(disk <= 1 << 20, "the cap holds: {disk}");
    let mut got = Vec::new();
    while !writer.is_finished() || *r.synced.borrow() > r.position {
        got.extend(drain(&mut r, &c, true));
        std::thread::sleep(Duration::from_millis(5));
    }
    got.extend(drain(&mut r, &c, true));
    assert_eq!(got, (0..30000).collect::<Vec<_>>(), "nothing lost under backpressure");
    let mut w = writer.join().unwrap();
    // While the spool thread waits for room, the reader is asked every little while
    // whether to give up on its chunk.
    let mut asked = 0;
    let mut refused = None;
    for i in 0..1000 {
        let result = w.append(noisy_chunk(2, i * 10, 10), &mut || {
            asked += 1;
            asked >= 2
        });
        if let Err(reason) = result {
            refused = Some(reason);
            break;
        }
    }
    assert_eq!(refused, Some(Refused::GaveUp), "asked {asked} times");
    assert!(r.shared.state().disk_bytes() <= 1 << 20);
    // Nor does a flush wait for room: the reader goes on scanning files meanwhile.
    let started = Instant::now();
    w.flush();
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    // A stopping agent is not kept waiting by a full spool.
    stop.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let mut stopped = false;
    for _ in 0..100 {
        if w.append(chunk(2, 0, 200), &mut || false) == Err(Refused::Stopping) {
            stopped = true;
            break;
        }
    }
    assert!(stopped && started.elapsed() < Duration::from_secs(5));
    drop(w);
}

#[test]
fn drop_policies_make_room_and_count_what_they_drop() {
    for policy in [WhenFull::DropNewest, WhenFull::DropOldest] {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, mut r, c) = open_in(dir.path(), config(1 << 20, policy));
        let mut written = 0;
        for i in 0..2000u64 {
            let records = noisy_chunk(1, i * 10, 10);
            written += records.len();
            w.append(records, &mut || false).unwrap();
        }
        w.flush();
        let disk = r.shared.state().disk_bytes();
        assert!(disk <= 1 << 20, "{policy:?}: the cap holds: {disk}");
        let got = drain(&mut r, &c, true);
        assert!(got.len() < written && !got.is_empty(), "{policy:?}: {}", got.len());
        assert!(got.windows(2).all(|p| p[0] < p[1]), "{policy:?}: in order, no repeats");
        match policy {
            WhenFull::DropNewest => assert_eq!(got[0], 0, "the oldest are kept"),
            _ => assert_eq!(*got.last().unwrap(), written as u64 - 1, "the newest are kept"),
        }
    }
}
/// Every batch of the spool, read until it is drained, none acknowledged.
fn batches(reader: &mut SpoolReader, max_bytes: usize) -> Vec<Batch> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (_stop_tx, mut stop) = watch::channel(false);
    let mut out = Vec::new();
    while *reader.synced.borrow() > reader.position {
        let batch = runtime
            .block_on(reader.next_batch(max_bytes, Duration::from_millis(1), &mut stop))
            .unwrap();
        out.push(batch);
    }
    out
}

#[test]
fn a_batch_read_again_is_the_batch_taken() {
    let dir = tempfile::tempdir().unwrap();
    // Noisy records fill several 128 KiB segments, so batches cross segment ends.
    let (mut w, mut r, _c) = open_in(dir.path(), config(1 << 20, WhenFull::Backpressure));
    for i in 0..350 {
        w.append(noisy_chunk(3, i * 10, 10), &mut || false).unwrap();
    }
    w.flush();
    assert!(segment_files(dir.path()).len() >= 3);
    let taken = batches(&mut r, 40_000);
    assert!(taken.len() > 5, "{} batches", taken.len());
    let mut previous_end = 0;
    for batch in &taken {
        assert!(batch.start >= previous_end && batch.start < batch.end);
        previous_end = batch.end;
        assert_eq!(r.reread(batch.start, batch.end), batch.entries);
    }
    let all: Vec<u64> = taken.iter().flat_map(|b| offsets_of(&b.entries)).collect();
    assert_eq!(all, (0..3500).collect::<Vec<_>>());
}

#[test]
fn a_batch_read_again_lacks_what_drop_oldest_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, mut r, _c) = open_in(dir.path(), config(1 << 20, WhenFull::DropOldest));
    for i in 0..100 {
        w.append(noisy_chunk(4, i * 10, 10), &mut || false).unwrap();
    }
    w.flush();
    let first = batches(&mut r, 40_000).remove(0);
    for i in 100..2000 {
        w.append(noisy_chunk(4, i * 10, 10), &mut || false).unwrap();
    }
    w.flush();
    let again = r.reread(first.start, first.end);
    assert!(again.len() < first.entries.len(), "its segment was dropped to make room");
    let offsets = offsets_of(&again);
    assert!(offsets.iter().all(|o| offsets_of(&first.entries).contains(o)));
}

/// The spool as the agent runs it, one chunk a frame, read by the shipper's reader.
struct DamagedSpool {
    dir: PathBuf,
    open: Option<(SpoolWriter, SpoolReader, Arc<Mutex<Checkpoints>>)>,
}

impl damage::Log for DamagedSpool {
    fn append(&mut self, id: u64) {
        let dir = self.dir.clone();
        let (writer, _, _) =
            self.open.get_or_insert_with(|| open_in(&dir, config(1 << 20, WhenFull::Backpressure)));
        writer.append(noisy_chunk(1, id * 10, 10), &mut || false).unwrap();
    }

    fn close(&mut self) {
        if let Some((mut writer, _, _)) = self.open.take() {
            writer.flush();
        }
    }

    fn reopen_and_read(&mut self) -> Vec<u64> {
        self.close();
        let (writer, mut reader, checkpoints) =
            open_in(&self.dir, config(1 << 20, WhenFull::Backpressure));
        let ids = batches(&mut reader, 40_000)
            .iter()
            .flat_map(|batch| &batch.entries)
            .map(|entry| offsets_of(std::slice::from_ref(entry))[0] / 10)
            .collect();
        self.open = Some((writer, reader, checkpoints));
        ids
    }

    fn segments(&self) -> Segments {
        Segments::new(&self.dir.join("spool"), SUFFIX)
    }
}

#[test]
fn damaged_segments_lose_only_what_is_damaged() {
    let scratch = tempfile::tempdir().unwrap();
    damage::run_all(scratch.path(), 400, |dir| {
        Box::new(DamagedSpool { dir: dir.to_owned(), open: None })
    });
}
