//! The collector's write-ahead log: what it has acknowledged, until every sink has it.
//!
//! Segment files `<base>.wal` hold checksummed frames, laid out and recovered as
//! [`sluice_proto::segment`] says for the agent's spool too. A position is a byte offset in
//! the whole log. An append is synced to disk before it returns: the collector acks only then.
//! Appends that arrive together share one sync (group commit), so the pushes agents keep in
//! flight do not each wait for an fsync of their own.
//! On open, a torn tail (a crash mid-append) is cut off; a damaged frame or a missing segment
//! met later is reported as [`CollectorError::Corrupt`], and [`WalReader::skip_segment`] goes
//! on with the next segment.
//!
//! The log may be capped ([`WalLimit`]): when a sink stays behind, the WAL keeps its records
//! until the cap, then either refuses new batches (`block`, the default: agents keep theirs in
//! their spools and retry, nothing is lost) or deletes its oldest segments (`drop_oldest`:
//! the sinks behind lose them, counted, and the others go on).

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};

use sluice_proto::frame;
use sluice_proto::segment::{self, FrameError, MAX_FRAME_BYTES, Segments};
use tokio::sync::watch;

use crate::CollectorError;

const HEADER_BYTES: u64 = frame::HEADER_BYTES as u64;
const SUFFIX: &str = ".wal";

struct Active {
    file: Arc<File>,
    base: u64,
    len: u64,
}

/// How far the log is on disk for sure, and whether an append is syncing it further.
struct Durable {
    end: u64,
    syncing: bool,
}

/// What the log does when it holds `max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Refuse appends until sinks catch up and segments are released.
    Block,
    /// Delete the oldest segments, whatever sink still needed them.
    DropOldest,
}

/// A cap on the log's disk size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalLimit {
    pub max_bytes: u64,
    pub when_full: WhenFull,
}

pub struct Wal {
    segments: Segments,
    segment_bytes: u64,
    limit: Option<WalLimit>,
    /// Locked before `durable` when both are.
    active: Mutex<Active>,
    durable: Mutex<Durable>,
    /// Signalled when a sync ends.
    synced: Condvar,
    end: watch::Sender<u64>,
}

impl Wal {
    /// Opens the log in `dir`, creating it if needed, and cuts off a torn last frame.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<Self, CollectorError> {
        fs::create_dir_all(dir).map_err(CollectorError::io("create WAL directory", dir))?;
        let segments = Segments::new(dir, SUFFIX);
        let bases = segments.list().map_err(CollectorError::io("list WAL directory", dir))?;
        let base = bases.last().copied().unwrap_or(0);
        let path = segments.path(base);
        let len = match bases.last() {
            Some(&last) => {
                let scanned = segments
                    .cut_torn_tail(last, |_| {})
                    .map_err(CollectorError::io("repair WAL segment", &path))?;
                if scanned.whole < scanned.on_disk {
                    tracing::warn!(path = %path.display(), cut = scanned.on_disk - scanned.whole, "cutting a torn frame off the WAL");
                }
                scanned.whole
            }
            None => 0,
        };
        let file = segments.create(base).map_err(CollectorError::io("open WAL segment", &path))?;
        let (end, _) = watch::channel(base + len);
        Ok(Self {
            segments,
            segment_bytes,
            limit: None,
            active: Mutex::new(Active { file: Arc::new(file), base, len }),
            durable: Mutex::new(Durable { end: base + len, syncing: false }),
            synced: Condvar::new(),
            end,
        })
    }

    /// Appends one frame and syncs it; returns the position just past it.
    pub fn append(&self, payload: &[u8]) -> Result<u64, CollectorError> {
        if payload.is_empty() || payload.len() as u64 > MAX_FRAME_BYTES {
            return Err(CollectorError::Corrupt {
                path: self.segments.dir().to_owned(),
                position: self.end(),
                reason: format!(
                    "a frame of {} bytes is outside the limits of 1..={MAX_FRAME_BYTES}",
                    payload.len()
                ),
            });
        }
        let end = {
            let mut active = self.active.lock().expect("WAL lock poisoned");
            if let Some(limit) = self.limit {
                self.make_room(&mut active, limit, HEADER_BYTES + payload.len() as u64)?;
            }
            if active.len >= self.segment_bytes {
                self.roll(&mut active)?;
            }
            let mut frame = Vec::new();
            frame::encode(payload, &mut frame);
            if let Err(e) = (&*active.file).write_all(&frame) {
                // Whatever part reached the file must not count; cut back to the last whole frame.
                let _ = active.file.set_len(active.len);
                return Err(CollectorError::io("append to WAL", self.segments.path(active.base))(
                    e,
                ));
            }
            active.len += frame.len() as u64;
            metrics::counter!("sluice_collector_wal_appended_bytes_total")
                .increment(frame.len() as u64);
            active.base + active.len
        };
        self.wait_durable(end)?;
        Ok(end)
    }

    /// Returns once everything before `end` is synced. The first append to wait syncs all
    /// that is written by then, its own frame and any others; those behind it wait for that
    /// sync and find their frames covered. A frame whose sync failed stays in the file: the
    /// agent, told of the failure, sends its batch again, and the duplicate is dropped
    /// downstream by the records' ids.
    fn wait_durable(&self, end: u64) -> Result<(), CollectorError> {
        let mut durable = self.durable.lock().expect("WAL sync state poisoned");
        while durable.end < end {
            if durable.syncing {
                durable = self.synced.wait(durable).expect("WAL sync state poisoned");
                continue;
            }
            durable.syncing = true;
            drop(durable);
            let (file, upto, base) = {
                let active = self.active.lock().expect("WAL lock poisoned");
                (active.file.clone(), active.base + active.len, active.base)
            };
            let result = file.sync_data();
            durable = self.durable.lock().expect("WAL sync state poisoned");
            durable.syncing = false;
            self.synced.notify_all();
            result.map_err(CollectorError::io("sync WAL", self.segments.path(base)))?;
            self.advance(&mut durable, upto);
        }
        Ok(())
    }

    fn advance(&self, durable: &mut Durable, upto: u64) {
        if upto > durable.end {
            durable.end = upto;
            self.end.send_replace(upto);
        }
    }

    /// Caps the log (see [`WalLimit`]).
    pub fn with_limit(mut self, limit: Option<WalLimit>) -> Self {
        self.limit = limit;
        self
    }

    /// Applies the cap before an append of `incoming` bytes.
    fn make_room(
        &self,
        active: &mut Active,
        limit: WalLimit,
        incoming: u64,
    ) -> Result<(), CollectorError> {
        let segments = self.list()?;
        let end = active.base + active.len;
        let first = segments.first().copied().unwrap_or(active.base);
        // An empty log takes any frame, however large: nothing could ever make room for it.
        if end == first || end - first + incoming <= limit.max_bytes {
            return Ok(());
        }
        match limit.when_full {
            WhenFull::Block => {
                // Only whole segments are released, never the one being written: close it, so
                // that once the sinks are past it the log can empty.
                if active.len > 0 {
                    self.roll(active)?;
                }
                metrics::counter!("sluice_collector_wal_full_refusals_total").increment(1);
                Err(CollectorError::Full { bytes: end - first, max_bytes: limit.max_bytes })
            }
            WhenFull::DropOldest => {
                let mut first = first;
                for pair in segments.windows(2) {
                    if end - first + incoming <= limit.max_bytes || pair[0] >= active.base {
                        break;
                    }
                    let path = self.segments.path(pair[0]);
                    let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                    fs::remove_file(&path)
                        .map_err(CollectorError::io("delete WAL segment", &path))?;
                    metrics::counter!("sluice_collector_wal_dropped_bytes_total").increment(len);
                    tracing::warn!(segment = %path.display(), bytes = len, "WAL over its cap: dropped its oldest segment");
                    first = pair[1];
                }
                Ok(())
            }
        }
    }

    fn roll(&self, active: &mut Active) -> Result<(), CollectorError> {
        let base = active.base + active.len;
        // Frames waiting for a group sync must be on disk before their segment is let go.
        active
            .file
            .sync_data()
            .map_err(CollectorError::io("sync WAL", self.segments.path(active.base)))?;
        self.advance(&mut self.durable.lock().expect("WAL sync state poisoned"), base);
        let file = self
            .segments
            .create(base)
            .map_err(CollectorError::io("create WAL segment", self.segments.path(base)))?;
        *active = Active { file: Arc::new(file), base, len: 0 };
        Ok(())
    }

    fn list(&self) -> Result<Vec<u64>, CollectorError> {
        self.segments.list().map_err(CollectorError::io("list WAL directory", self.segments.dir()))
    }

    /// The position just past the last durable frame.
    pub fn end(&self) -> u64 {
        *self.end.borrow()
    }

    /// Wakes on every append.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.end.subscribe()
    }

    /// The position of the oldest byte still on disk.
    pub fn first(&self) -> Result<u64, CollectorError> {
        Ok(self.list()?.first().copied().unwrap_or(0))
    }

    pub fn reader(&self, position: u64) -> WalReader {
        WalReader { segments: self.segments.clone(), position, segment: None }
    }

    /// Deletes the segments wholly before `position`; never the one being written.
    pub fn release(&self, position: u64) -> Result<u64, CollectorError> {
        let segments = self.list()?;
        let active_base = self.active.lock().expect("WAL lock poisoned").base;
        let mut freed = 0;
        for pair in segments.windows(2) {
            let (base, next) = (pair[0], pair[1]);
            if next <= position && base < active_base {
                let path = self.segments.path(base);
                freed += fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                fs::remove_file(&path).map_err(CollectorError::io("delete WAL segment", &path))?;
            }
        }
        Ok(freed)
    }

    /// Bytes the log holds on disk.
    pub fn disk_bytes(&self) -> Result<u64, CollectorError> {
        Ok(self.end() - self.first()?)
    }
}

/// Reads frames in order from a position.
pub struct WalReader {
    segments: Segments,
    position: u64,
    /// The segment last read from, by base, kept open.
    segment: Option<(u64, File)>,
}

impl WalReader {
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The frame at the reader's position, if the log holds one before `end`.
    pub fn next(&mut self, end: u64) -> Result<Option<Vec<u8>>, CollectorError> {
        if self.position >= end {
            return Ok(None);
        }
        let position = self.position;
        let (base, file) = self.segment_for_position()?;
        let read = segment::read_frame_at(file, position - base, end - position);
        let path = self.segments.path(base);
        match read {
            Ok((payload, len)) => {
                self.position += len;
                Ok(Some(payload))
            }
            Err(FrameError::Io(e)) if e.kind() != std::io::ErrorKind::UnexpectedEof => {
                Err(CollectorError::io("read WAL frame", path)(e))
            }
            Err(e) => {
                self.segment = None;
                Err(self.corrupt(&path, e.to_string()))
            }
        }
    }

    fn corrupt(&self, path: &Path, reason: String) -> CollectorError {
        CollectorError::Corrupt { path: path.to_owned(), position: self.position, reason }
    }

    fn list(&self) -> Result<Vec<u64>, CollectorError> {
        self.segments.list().map_err(CollectorError::io("list WAL directory", self.segments.dir()))
    }

    /// Moves past a corrupt segment to the start of the next one; returns the bytes skipped.
    pub fn skip_segment(&mut self) -> Result<u64, CollectorError> {
        let next = self.list()?.into_iter().find(|&b| b > self.position);
        let skipped = match next {
            Some(next) => next - self.position,
            None => 0,
        };
        if let Some(next) = next {
            self.position = next;
        }
        self.segment = None;
        Ok(skipped)
    }

    /// The segment holding the reader's position, opened once and kept while reading it.
    fn segment_for_position(&mut self) -> Result<(u64, &File), CollectorError> {
        let position = self.position;
        let covers = |base: u64, file: &File| {
            base <= position && file.metadata().is_ok_and(|m| position - base < m.len())
        };
        if !self.segment.as_ref().is_some_and(|(base, file)| covers(*base, file)) {
            self.segment = None;
            let bases = self.list()?;
            let base = bases.iter().rev().find(|&&b| b <= position).copied().ok_or(
                CollectorError::OutOfRange {
                    position,
                    first: bases.first().copied().unwrap_or(0),
                    end: position,
                },
            )?;
            let path = self.segments.path(base);
            let file = File::open(&path).map_err(CollectorError::io("open WAL segment", &path))?;
            if !covers(base, &file) {
                // Past the end of the segment before it and short of the next: the segment
                // that held this position is gone.
                return Err(self.corrupt(&path, "no segment holds this position".to_owned()));
            }
            self.segment = Some((base, file));
        }
        let (base, file) = self.segment.as_ref().expect("segment just opened");
        Ok((*base, file))
    }
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::path::PathBuf;

    use proptest::prelude::*;
    use sluice_proto::segment::damage;

    use super::*;

    fn list_segments(dir: &Path) -> std::io::Result<Vec<u64>> {
        Segments::new(dir, SUFFIX).list()
    }

    fn segment_path(dir: &Path, base: u64) -> PathBuf {
        Segments::new(dir, SUFFIX).path(base)
    }

    /// The WAL as the collector runs it: a sink's reader skipping what is damaged.
    struct DamagedWal {
        dir: PathBuf,
        wal: Option<Wal>,
    }

    impl damage::Log for DamagedWal {
        fn append(&mut self, id: u64) {
            let dir = self.dir.clone();
            let wal = self.wal.get_or_insert_with(|| Wal::open(&dir, 64).unwrap());
            wal.append(&id.to_le_bytes()).unwrap();
        }

        fn close(&mut self) {
            self.wal = None;
        }

        fn reopen_and_read(&mut self) -> Vec<u64> {
            let wal = Wal::open(&self.dir, 64).unwrap();
            let mut reader = wal.reader(wal.first().unwrap());
            let mut ids = Vec::new();
            loop {
                match reader.next(wal.end()) {
                    Ok(Some(payload)) => {
                        ids.push(u64::from_le_bytes(payload[..].try_into().unwrap()))
                    }
                    Ok(None) => break,
                    Err(CollectorError::Corrupt { .. }) => {
                        assert!(reader.skip_segment().unwrap() > 0, "skipping moves on");
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            self.wal = Some(wal);
            ids
        }

        fn segments(&self) -> Segments {
            Segments::new(&self.dir, SUFFIX)
        }
    }

    #[test]
    fn damaged_segments_lose_only_what_is_damaged() {
        let scratch = tempfile::tempdir().unwrap();
        damage::run_all(scratch.path(), 40, |dir| {
            Box::new(DamagedWal { dir: dir.to_owned(), wal: None })
        });
    }

    fn read_all(wal: &Wal, from: u64) -> Vec<Vec<u8>> {
        let mut reader = wal.reader(from);
        let mut out = Vec::new();
        while let Some(frame) = reader.next(wal.end()).unwrap() {
            out.push(frame);
        }
        out
    }

    #[test]
    fn frames_come_back_in_order_across_segments_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), 32).unwrap();
        let frames: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; usize::from(i) + 1]).collect();
        let mut ends = Vec::new();
        for f in &frames {
            ends.push(wal.append(f).unwrap());
        }
        assert!(list_segments(dir.path()).unwrap().len() > 3);
        assert_eq!(read_all(&wal, 0), frames);
        assert_eq!(read_all(&wal, ends[9]), frames[10..]);
        drop(wal);
        let wal = Wal::open(dir.path(), 32).unwrap();
        assert_eq!(wal.end(), *ends.last().unwrap());
        assert_eq!(read_all(&wal, 0), frames);
    }

    #[test]
    fn concurrent_appends_share_syncs_and_each_returns_once_durable() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Arc::new(Wal::open(dir.path(), 4096).unwrap());
        let threads: Vec<_> = (0..8u8)
            .map(|t| {
                let wal = wal.clone();
                std::thread::spawn(move || {
                    (0..50u8)
                        .map(|i| {
                            let frame = vec![t, i, 7];
                            let end = wal.append(&frame).unwrap();
                            // What an append returns is already visible as durable.
                            assert!(wal.end() >= end);
                            (end, frame)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut appended: Vec<(u64, Vec<u8>)> =
            threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        appended.sort();
        let frames: Vec<Vec<u8>> = appended.iter().map(|(_, f)| f.clone()).collect();
        assert_eq!(read_all(&wal, 0), frames, "every frame once, in the order of their ends");
        assert!(list_segments(dir.path()).unwrap().len() > 1, "rolled while appending");
        let end = wal.end();
        drop(wal);
        assert_eq!(Wal::open(dir.path(), 4096).unwrap().end(), end);
    }

    #[test]
    fn a_torn_tail_is_cut_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), 1 << 20).unwrap();
        let end = wal.append(b"whole").unwrap();
        drop(wal);
        let path = segment_path(dir.path(), 0);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[50, 0, 0, 0, 1, 2, 3, 4, b'x']).unwrap();
        let wal = Wal::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(wal.end(), end);
        wal.append(b"next").unwrap();
        assert_eq!(read_all(&wal, 0), [b"whole".to_vec(), b"next".to_vec()]);
    }

    #[test]
    fn release_deletes_only_whole_segments_behind_the_position() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), 16).unwrap();
        let ends: Vec<u64> = (0..6).map(|_| wal.append(&[7; 10]).unwrap()).collect();
        let before = list_segments(dir.path()).unwrap().len();
        wal.release(ends[2]).unwrap();
        let after = list_segments(dir.path()).unwrap();
        assert!(after.len() < before);
        assert!(after[0] <= ends[2]);
        assert_eq!(read_all(&wal, ends[2]).len(), 3);
        wal.release(u64::MAX).unwrap();
        assert_eq!(list_segments(dir.path()).unwrap().len(), 1, "the active segment stays");
    }

    #[test]
    fn corruption_is_reported_and_skippable() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), 16).unwrap();
        let ends: Vec<u64> = (0..4).map(|i| wal.append(&[i; 10]).unwrap()).collect();
        let path = segment_path(dir.path(), 0);
        let mut bytes = fs::read(&path).unwrap();
        bytes[10] ^= 0xff;
        fs::write(&path, bytes).unwrap();
        let mut reader = wal.reader(0);
        let err = reader.next(wal.end()).unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        assert!(reader.skip_segment().unwrap() > 0);
        assert_eq!(reader.position(), ends[0]);
        assert_eq!(reader.next(wal.end()).unwrap(), Some(vec![1; 10]));
    }

    proptest! {
        /// Cutting the last segment anywhere leaves exactly the frames wholly before the cut
        /// (payloads are never empty: an empty frame is what a zero-filled tail looks like).
        #[test]
        fn any_cut_recovers_the_whole_frames(sizes in prop::collection::vec(1usize..40, 1..12), cut_back in 0u64..60) {
            let dir = tempfile::tempdir().unwrap();
            let wal = Wal::open(dir.path(), u64::MAX).unwrap();
            let ends: Vec<u64> = sizes.iter().map(|&n| wal.append(&vec![1; n]).unwrap()).collect();
            drop(wal);
            let end = *ends.last().unwrap();
            let cut = end.saturating_sub(cut_back);
            OpenOptions::new().write(true).open(segment_path(dir.path(), 0)).unwrap().set_len(cut).unwrap();
            let wal = Wal::open(dir.path(), u64::MAX).unwrap();
            let whole = ends.iter().filter(|&&e| e <= cut).count();
            prop_assert_eq!(wal.end(), if whole == 0 { 0 } else { ends[whole - 1] });
            prop_assert_eq!(read_all(&wal, 0).len(), whole);
        }
    }
    #[test]
    fn a_capped_log_blocks_or_drops_its_oldest_segments() {
        let dir = tempfile::tempdir().unwrap();
        let frame = vec![7u8; 1000];
        let limit = |when_full| Some(WalLimit { max_bytes: 5_000, when_full });
        let wal =
            Wal::open(&dir.path().join("block"), 2_000).unwrap().with_limit(limit(WhenFull::Block));
        let mut appended = 0;
        while wal.append(&frame).is_ok() {
            appended += 1;
            assert!(appended < 100, "the cap never refused");
        }
        assert!(matches!(wal.append(&frame), Err(CollectorError::Full { .. })));
        assert!(wal.disk_bytes().unwrap() <= 5_000);
        // A sink catching up frees segments; appends go on.
        wal.release(wal.end()).unwrap();
        wal.append(&frame).unwrap();

        let wal = Wal::open(&dir.path().join("drop"), 2_000)
            .unwrap()
            .with_limit(limit(WhenFull::DropOldest));
        for _ in 0..20 {
            wal.append(&frame).unwrap();
        }
        assert!(wal.disk_bytes().unwrap() <= 5_000 + 2_000, "{}", wal.disk_bytes().unwrap());
        assert!(wal.first().unwrap() > 0);
        let mut reader = wal.reader(0);
        assert!(matches!(reader.next(wal.end()), Err(CollectorError::OutOfRange { .. })));
        let mut reader = wal.reader(wal.first().unwrap());
        assert_eq!(reader.next(wal.end()).unwrap().unwrap(), frame);
    }
}
