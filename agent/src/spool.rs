//! The disk spool: records read from their files but not yet acknowledged by the collector.
//!
//! Kubelet rotates a container's log every few MiB and deletes the oldest rotations, so during
//! a long collector outage the source files are not a safe place to leave unread data. The
//! reader writes records here instead, and a file's checkpoint moves once its records are
//! synced; the shipper sends from here and moves the spool's acknowledged position on the
//! collector's ack. Memory stays flat whatever the backlog: the backlog is on disk, bounded by
//! `spool.max_bytes`; when that is reached the default is backpressure (reading pauses, the
//! unread data is still in its files), or, opt-in and counted, dropping the oldest or newest.
//!
//! Segment files `<base>.spool` in `<data_dir>/spool/` hold [`frame`]s whose payload is
//! `[records u32][SpoolEntry]`: one frame per chunk the reader produced, its records a zstd
//! [`sluice_proto::RecordBlock`] that the shipper sends to the collector as it is, so records are encoded
//! and compressed once. As in the
//! collector's WAL, a position is a byte offset in the whole spool and a segment is named by
//! the position of its first byte. On open, a torn tail is cut; a frame that fails its
//! checksum later ends its segment: the rest of it is skipped, logged and counted as lost,
//! and reading goes on with the next segment, so corruption never stops the agent.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prost::Message;
use sluice_proto::frame;
use tokio::sync::watch;

use crate::AgentError;
use crate::checkpoint::Checkpoints;
use crate::chunk::Chunk;
use crate::config::{SpoolConfig, WhenFull};

const SUFFIX: &str = ".spool";
/// A frame announcing more than this is taken as corruption.
const MAX_FRAME_BYTES: u64 = 256 << 20;
/// How long the reader waits for room before it checks whether the agent is stopping.
const FULL_WAIT: Duration = Duration::from_millis(100);
/// What one frame holds: a chunk's records, compressed, and what the shipper needs to know
/// of them without decompressing.
#[derive(Clone, PartialEq, Message)]
pub struct SpoolEntry {
    /// The file's source key.
    #[prost(fixed64, tag = "1")]
    pub source: u64,
    #[prost(string, tag = "2")]
    pub path: String,
    /// The file's checkpoint once these records are acknowledged.
    #[prost(uint64, tag = "3")]
    pub resume_offset: u64,
    #[prost(uint32, tag = "4")]
    pub records: u32,
    /// The encoded block's size before compression, for batch sizing.
    #[prost(uint64, tag = "5")]
    pub raw_bytes: u64,
    /// A zstd frame of the encoded [`sluice_proto::RecordBlock`]; the last field (see
    /// [`ZSTD_BLOCK_TAG`]).
    #[prost(bytes = "bytes", tag = "6")]
    pub zstd_block: prost::bytes::Bytes,
}

/// `SpoolEntry.zstd_block`, which the writer appends to the other fields' encoding.
const ZSTD_BLOCK_TAG: u32 = 6;

/// One segment file: its length in whole frames and the records in them.
#[derive(Debug, Clone, Copy)]
struct Segment {
    len: u64,
    records: u64,
}

#[derive(Debug, Default)]
struct State {
    /// Every segment on disk by base position; the last one is being written.
    segments: BTreeMap<u64, Segment>,
    /// Acknowledged by the collector up to here.
    acked: u64,
    /// The shipper has taken everything before here (it may not be acknowledged yet).
    taken: u64,
}

impl State {
    fn disk_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.len).sum()
    }

    fn end(&self) -> u64 {
        self.segments.iter().next_back().map_or(0, |(base, s)| base + s.len)
    }

    fn report(&self) {
        metrics::gauge!("sluice_agent_spool_bytes").set(self.disk_bytes() as f64);
        metrics::gauge!("sluice_agent_spool_unacked_bytes")
            .set(self.end().saturating_sub(self.acked) as f64);
        metrics::gauge!("sluice_agent_spool_segments").set(self.segments.len() as f64);
    }
}

struct Shared {
    dir: PathBuf,
    config: SpoolConfig,
    segment_bytes: u64,
    state: Mutex<State>,
    /// Signalled when acknowledged segments are deleted, for a writer waiting for room.
    room: Condvar,
    /// The end of the synced frames: the shipper reads up to here.
    synced: watch::Sender<u64>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("spool state poisoned")
    }

    /// Deletes the segments wholly acknowledged, never the one being written.
    fn release(&self, state: &mut State) {
        let active = state.segments.keys().next_back().copied();
        let done: Vec<u64> = state
            .segments
            .iter()
            .filter(|&(&base, s)| Some(base) != active && base + s.len <= state.acked)
            .map(|(&base, _)| base)
            .collect();
        for base in done {
            let path = segment_path(&self.dir, base);
            if let Err(e) = fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot delete an acknowledged spool segment");
                continue;
            }
            state.segments.remove(&base);
        }
        state.report();
        self.room.notify_all();
    }
}

/// What `sluice-agent explain` shows of the spool, read without changing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolStatus {
    pub segments: usize,
    pub disk_bytes: u64,
    pub end: u64,
    pub acked: u64,
}

impl std::fmt::Display for SpoolStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bytes in {} segments; written up to position {}, acknowledged up to {} ({} bytes unacknowledged)",
            self.disk_bytes,
            self.segments,
            self.end,
            self.acked,
            self.end.saturating_sub(self.acked)
        )
    }
}

/// The spool of `data_dir` as it is on disk.
pub fn status(data_dir: &Path, acked: u64) -> Result<SpoolStatus, AgentError> {
    let dir = data_dir.join("spool");
    let bases = if dir.exists() { list_segments(&dir)? } else { Vec::new() };
    let mut disk_bytes = 0;
    let mut end = 0;
    for &base in &bases {
        let len = fs::metadata(segment_path(&dir, base)).map_or(0, |m| m.len());
        disk_bytes += len;
        end = base + len;
    }
    Ok(SpoolStatus { segments: bases.len(), disk_bytes, end: end.max(acked), acked })
}

/// Opens (or creates) the spool in `<data_dir>/spool`, acknowledged up to `acked`, and
/// starts its writing thread, which gives up waiting for room once `stop` is set.
pub fn open(
    data_dir: &Path,
    config: SpoolConfig,
    acked: u64,
    checkpoints: Arc<Mutex<Checkpoints>>,
    stop: Arc<AtomicBool>,
) -> Result<(SpoolWriter, SpoolReader), AgentError> {
    let dir = data_dir.join("spool");
    fs::create_dir_all(&dir).map_err(AgentError::io("create spool directory", &dir))?;
    let mut state = State { acked, ..State::default() };
    let bases = list_segments(&dir)?;
    for (i, &base) in bases.iter().enumerate() {
        let path = segment_path(&dir, base);
        let last = i + 1 == bases.len();
        let (segment, on_disk) = scan(&path)?;
        if segment.len < on_disk {
            if last {
                tracing::warn!(path = %path.display(), cut = on_disk - segment.len, "cutting a torn frame off the spool");
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(AgentError::io("open spool segment", &path))?;
                file.set_len(segment.len).map_err(AgentError::io("truncate", &path))?;
                file.sync_all().map_err(AgentError::io("sync", &path))?;
            } else {
                corrupt(&path, base + segment.len, on_disk - segment.len, "checksum mismatch");
            }
        }
        state.segments.insert(base, segment);
    }
    let segment_bytes = (config.max_bytes / 8).clamp(64 << 10, 8 << 20);
    let end = state.end().max(acked);
    // A fresh segment at each start keeps appends away from a tail that was just repaired.
    let base = end;
    let file = create_segment(&dir, base)?;
    state.segments.insert(base, Segment { len: 0, records: 0 });
    state.taken = acked.max(state.segments.keys().next().copied().unwrap_or(base));
    let (synced, synced_rx) = watch::channel(end);
    let shared = Arc::new(Shared {
        dir,
        config,
        segment_bytes,
        state: Mutex::new(state),
        room: Condvar::new(),
        synced,
    });
    {
        let mut state = shared.state();
        shared.release(&mut state);
        let unacked = state.end().saturating_sub(acked);
        if unacked > 0 {
            tracing::info!(bytes = unacked, "resending records left in the spool");
        }
    }
    let position = shared.state().taken;
    let mut compressor = zstd::bulk::Compressor::new(shared.config.zstd_level)
        .map_err(AgentError::io("start zstd", &shared.dir))?;
    // The collector sizes its buffer from the frame header.
    compressor.include_contentsize(true).map_err(AgentError::io("configure zstd", &shared.dir))?;
    let appender = Appender {
        shared: shared.clone(),
        file,
        base,
        len: 0,
        dirty: false,
        last_sync: Instant::now(),
        pending: HashMap::new(),
        checkpoints,
        compressor,
        compressed: Vec::new(),
        payload: Vec::new(),
        frame: Vec::new(),
    };
    let handoff = Arc::new(Handoff::default());
    let thread = {
        let (handoff, stop) = (handoff.clone(), stop.clone());
        std::thread::Builder::new()
            .name("sluice-spool".to_owned())
            .spawn(move || appender.run(&handoff, &stop))
            .map_err(AgentError::io("start spool thread", &shared.dir))?
    };
    let writer = SpoolWriter { handoff, thread: Some(thread), stop };
    let reader = SpoolReader {
        shared,
        synced: synced_rx,
        position,
        file: None,
        pending: Vec::new(),
        pending_start: position,
        pending_bytes: 0,
        deadline: None,
    };
    Ok((writer, reader))
}

/// Chunks handed over by the reader thread that the spool thread has not taken yet. One is
/// enough to keep both threads busy: the reader splits, parses and encodes the next read
/// while the spool thread compresses, writes and syncs the last.
const HANDOFF_CHUNKS: usize = 1;

/// The reader thread's end: hands chunks to the spool thread, which compresses, writes and
/// syncs them and moves the files' checkpoints. Compressing on the reader thread made it the
/// agent's bottleneck: zstd was 45 % of its work.
pub struct SpoolWriter {
    handoff: Arc<Handoff>,
    thread: Option<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

/// What passes between the reader thread and the spool thread.
#[derive(Default)]
struct Handoff {
    state: Mutex<Handing>,
    changed: Condvar,
}

#[derive(Default)]
struct Handing {
    chunks: std::collections::VecDeque<Box<Chunk>>,
    flushes_asked: u64,
    flushes_done: u64,
    /// The spool thread is waiting for room.
    full: bool,
    /// The reader is done: what was handed over is written and synced, then the thread ends.
    closing: bool,
    ended: bool,
}

impl Handoff {
    fn state(&self) -> MutexGuard<'_, Handing> {
        self.state.lock().expect("spool handoff poisoned")
    }

    fn wait<'a>(&self, state: MutexGuard<'a, Handing>) -> MutexGuard<'a, Handing> {
        self.changed.wait(state).expect("spool handoff poisoned")
    }

    fn set_full(&self, full: bool) {
        self.state().full = full;
        self.changed.notify_all();
    }

    /// Counts every flush asked so far as done.
    fn flushed(&self) {
        let mut state = self.state();
        state.flushes_done = state.flushes_asked;
        self.changed.notify_all();
    }
}

/// What the spool thread does next.
enum Job {
    Append(Box<Chunk>),
    /// Sync, and count the flushes asked so far as done.
    Flush,
    Close,
}

/// Why a chunk did not go into the spool while the writer waited for room.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The agent is stopping.
    Stopping,
    /// The caller's `waiting` check gave up on the chunk.
    GaveUp,
}

impl SpoolWriter {
    /// Hands a chunk to the spool thread. While that thread still holds the last one and
    /// waits for room (the spool is full), this waits too (backpressure), calling `waiting`
    /// every little while; `Err` when the agent stops or `waiting` returns true meanwhile.
    /// The drop policies are applied by the spool thread.
    pub fn append(
        &mut self,
        chunk: Chunk,
        waiting: &mut dyn FnMut() -> bool,
    ) -> Result<(), Refused> {
        if chunk.is_empty() {
            return Ok(());
        }
        let handoff = &self.handoff;
        let mut state = handoff.state();
        loop {
            if state.ended || (state.full && self.stop.load(Ordering::Relaxed)) {
                return Err(Refused::Stopping);
            }
            if state.chunks.len() < HANDOFF_CHUNKS {
                break;
            }
            let (next, timeout) =
                handoff.changed.wait_timeout(state, FULL_WAIT).expect("spool handoff poisoned");
            state = next;
            if timeout.timed_out() && state.full {
                drop(state);
                if waiting() {
                    return Err(Refused::GaveUp);
                }
                state = handoff.state();
            }
        }
        state.chunks.push_back(Box::new(chunk));
        handoff.changed.notify_all();
        Ok(())
    }

    /// Waits until everything handed over is written and synced, so the shipper can send it
    /// and the checkpoints move; while the spool is full, until what is written is synced
    /// (a chunk waiting for room stays with the spool thread).
    pub fn flush(&mut self) {
        let handoff = &self.handoff;
        let mut state = handoff.state();
        state.flushes_asked += 1;
        let asked = state.flushes_asked;
        handoff.changed.notify_all();
        while state.flushes_done < asked && !state.ended {
            state = handoff.wait(state);
        }
    }
}

impl Drop for SpoolWriter {
    /// Lets the spool thread write and sync what it was handed, then waits for it to end.
    fn drop(&mut self) {
        self.handoff.state().closing = true;
        self.handoff.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The spool thread's state: appends chunks, syncs them, and moves file checkpoints.
struct Appender {
    shared: Arc<Shared>,
    file: File,
    base: u64,
    len: u64,
    /// Frames written since the last sync.
    dirty: bool,
    last_sync: Instant,
    /// Checkpoints the frames written since the last sync allow, per source, with its path.
    pending: HashMap<u64, (u64, String)>,
    checkpoints: Arc<Mutex<Checkpoints>>,
    compressor: zstd::bulk::Compressor<'static>,
    /// Reused from chunk to chunk.
    compressed: Vec<u8>,
    payload: Vec<u8>,
    frame: Vec<u8>,
}

impl Appender {
    /// Takes jobs from the reader until it closes the handoff.
    fn run(mut self, handoff: &Handoff, stop: &AtomicBool) {
        /// Tells the reader the thread has ended, however it ends: a reader waiting on a
        /// thread that panicked would wait for ever.
        struct Ended<'a>(&'a Handoff);
        impl Drop for Ended<'_> {
            fn drop(&mut self) {
                if let Ok(mut state) = self.0.state.lock() {
                    state.ended = true;
                }
                self.0.changed.notify_all();
            }
        }
        let _ended = Ended(handoff);
        loop {
            let job = {
                let mut state = handoff.state();
                loop {
                    if let Some(chunk) = state.chunks.pop_front() {
                        handoff.changed.notify_all();
                        break Job::Append(chunk);
                    }
                    if state.flushes_done < state.flushes_asked {
                        break Job::Flush;
                    }
                    if state.closing {
                        break Job::Close;
                    }
                    state = handoff.wait(state);
                }
            };
            match job {
                // A chunk refused because the agent stops is read again after the restart:
                // its checkpoint never moved.
                Job::Append(chunk) => {
                    let _ = self.append(chunk, stop, handoff);
                }
                Job::Flush => {
                    self.flush();
                    handoff.flushed();
                }
                Job::Close => {
                    self.flush();
                    break;
                }
            }
        }
    }

    /// Appends a chunk. With the spool full it waits for room (backpressure), telling the
    /// reader through `handoff`, or drops by the configured policy; `Err` when `stop` is set
    /// meanwhile.
    fn append(
        &mut self,
        chunk: Box<Chunk>,
        stop: &AtomicBool,
        handoff: &Handoff,
    ) -> Result<(), Refused> {
        let count = chunk.len() as u64;
        self.encode(&chunk);
        let need = self.frame.len() as u64;
        let mut waited: Option<Instant> = None;
        let result = loop {
            let (full, active_acked) = {
                let state = self.shared.state();
                let disk = state.disk_bytes();
                (disk > 0 && disk + need > self.shared.config.max_bytes, state.acked > self.base)
            };
            if !full {
                break Ok(());
            }
            if active_acked && self.len > 0 {
                // What is acknowledged of the segment being written can only go once it is
                // closed.
                self.roll();
                continue;
            }
            let when_full = self.shared.config.when_full;
            match when_full {
                WhenFull::DropNewest => {
                    metrics::counter!("sluice_agent_spool_dropped_records_total", "policy" => "drop_newest")
                        .increment(count);
                    tracing::warn!(
                        records = count,
                        "spool full: dropping the records just read (when_full: drop_newest)"
                    );
                    return Ok(());
                }
                WhenFull::DropOldest if self.drop_oldest() => continue,
                WhenFull::DropOldest | WhenFull::Backpressure => {}
            }
            if waited.is_none() {
                tracing::warn!(
                    max_bytes = self.shared.config.max_bytes,
                    "spool full: reading paused until the collector catches up"
                );
                metrics::gauge!("sluice_agent_spool_full").set(1.0);
                handoff.set_full(true);
            }
            waited.get_or_insert_with(Instant::now);
            if self.dirty {
                self.sync();
            }
            // The reader must not wait for room in a flush: it goes on scanning and lets go
            // of deleted files meanwhile.
            handoff.flushed();
            if stop.load(Ordering::Relaxed) {
                break Err(Refused::Stopping);
            }
            let state = self.shared.state();
            drop(self.shared.room.wait_timeout(state, FULL_WAIT).expect("spool state poisoned"));
        };
        if let Some(since) = waited {
            // A spool left full by a stopping agent refuses the reader's next chunks at once.
            if result.is_ok() {
                handoff.set_full(false);
            }
            metrics::gauge!("sluice_agent_spool_full").set(0.0);
            metrics::counter!("sluice_agent_spool_full_milliseconds_total")
                .increment(since.elapsed().as_millis() as u64);
        }
        result?;
        self.write_frame(count);
        self.note_checkpoint(&chunk);
        if self.len >= self.shared.segment_bytes {
            self.roll();
        } else if self.last_sync.elapsed() >= self.shared.config.sync_interval {
            self.sync();
        }
        Ok(())
    }

    /// Syncs what was written, so the shipper can send it and the checkpoints move.
    fn flush(&mut self) {
        if self.dirty {
            self.sync();
        }
    }

    /// The checkpoint the chunk allows, saved at the next sync.
    fn note_checkpoint(&mut self, chunk: &Chunk) {
        let common = chunk.common();
        let entry = self.pending.entry(common.source).or_insert((0, String::new()));
        entry.0 = entry.0.max(chunk.resume_offset);
        if entry.1 != common.file_path {
            entry.1.clone_from(&common.file_path);
        }
    }

    /// The chunk's frame into `self.frame`, through buffers kept from chunk to chunk: a fresh
    /// compression buffer is sized for the worst case, 256 KiB and more per chunk.
    fn encode(&mut self, chunk: &Chunk) {
        let raw = chunk.encoded();
        self.compressed.clear();
        self.compressed.reserve(zstd::zstd_safe::compress_bound(raw.len()));
        self.compressor
            .compress_to_buffer(raw, &mut self.compressed)
            .expect("the buffer has room for zstd's bound");
        let common = chunk.common();
        let entry = SpoolEntry {
            source: common.source,
            path: common.file_path.clone(),
            resume_offset: chunk.resume_offset,
            records: chunk.len() as u32,
            raw_bytes: raw.len() as u64,
            zstd_block: prost::bytes::Bytes::new(),
        };
        self.payload.clear();
        self.payload.extend_from_slice(&entry.records.to_le_bytes());
        entry.encode(&mut self.payload).expect("a Vec grows as needed");
        // The block is the entry's last field: appended, the bytes are prost's for the whole.
        prost::encoding::bytes::encode(ZSTD_BLOCK_TAG, &self.compressed, &mut self.payload);
        self.frame.clear();
        frame::encode(&self.payload, &mut self.frame);
    }

    /// Writes the encoded frame, retrying (and pausing reading) while the disk refuses it.
    fn write_frame(&mut self, records: u64) {
        let path = segment_path(&self.shared.dir, self.base);
        let mut delay = Duration::from_millis(100);
        while let Err(e) = self.file.write_all(&self.frame) {
            // Whatever part reached the file must not count; cut back to the last whole frame.
            let _ = self.file.set_len(self.len);
            tracing::error!(path = %path.display(), error = %e, "cannot write to the spool; retrying");
            metrics::counter!("sluice_agent_spool_write_errors_total").increment(1);
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        self.len += self.frame.len() as u64;
        self.dirty = true;
        let mut state = self.shared.state();
        let segment = state.segments.get_mut(&self.base).expect("the active segment is listed");
        segment.len = self.len;
        segment.records += records;
        state.report();
    }

    /// fsync, then the checkpoints of what is now durable, then tell the shipper.
    fn sync(&mut self) {
        let path = segment_path(&self.shared.dir, self.base);
        if let Err(e) = self.file.sync_data() {
            // The records stay unsynced and their checkpoints unmoved: after a crash they are
            // read again from their files.
            tracing::error!(path = %path.display(), error = %e, "cannot sync the spool");
            return;
        }
        self.dirty = false;
        self.last_sync = Instant::now();
        if !self.pending.is_empty() {
            let snapshot = {
                let mut checkpoints = self.checkpoints.lock().expect("checkpoints poisoned");
                for (source, (offset, path)) in self.pending.drain() {
                    checkpoints.advance(source, &path, offset);
                }
                checkpoints.snapshot()
            };
            if let Err(e) = snapshot.write() {
                tracing::error!(error = %e, "cannot save checkpoints");
            }
        }
        self.shared.synced.send_replace(self.base + self.len);
    }

    /// Closes the active segment and starts the next; deletes what is acknowledged.
    fn roll(&mut self) {
        self.sync();
        let base = self.base + self.len;
        let file = loop {
            match create_segment(&self.shared.dir, base) {
                Ok(file) => break file,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start a spool segment; retrying");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        };
        self.file = file;
        self.base = base;
        self.len = 0;
        let mut state = self.shared.state();
        state.segments.insert(base, Segment { len: 0, records: 0 });
        self.shared.release(&mut state);
    }

    /// Deletes the oldest closed segment to make room; false when there is none. The records
    /// in it that the shipper has not taken are counted as dropped.
    fn drop_oldest(&mut self) -> bool {
        let shared = self.shared.clone();
        let mut state = shared.state();
        let base = match state.segments.keys().next().copied() {
            Some(base) if base != self.base => base,
            _ => {
                drop(state);
                if self.len == 0 {
                    return false;
                }
                self.roll();
                return true;
            }
        };
        // Counted and unlisted under the lock the reader takes for each frame, so every
        // record is either taken by the shipper or dropped, never both.
        let path = segment_path(&shared.dir, base);
        let dropped = count_records_from(&path, base, state.taken.max(state.acked));
        state.segments.remove(&base);
        state.report();
        drop(state);
        if let Err(e) = fs::remove_file(&path) {
            tracing::error!(path = %path.display(), error = %e, "cannot delete a spool segment");
        }
        metrics::counter!("sluice_agent_spool_dropped_records_total", "policy" => "drop_oldest")
            .increment(dropped);
        tracing::warn!(
            records = dropped,
            "spool full: dropped its oldest segment (when_full: drop_oldest)"
        );
        true
    }
}

/// Synced entries the shipper took in one go, and where they are in the spool.
#[derive(Debug)]
pub struct Batch {
    pub entries: Vec<SpoolEntry>,
    /// Where the first entry's frame starts.
    pub start: u64,
    /// Just past the last entry's frame.
    pub end: u64,
}

/// The shipper's end: batches of synced records, and acknowledgements.
pub struct SpoolReader {
    shared: Arc<Shared>,
    synced: watch::Receiver<u64>,
    /// The next frame to read.
    position: u64,
    /// The segment last read from, kept open.
    file: Option<(u64, File)>,
    /// Entries read for the batch being gathered, where the first starts, their records'
    /// size, and when the batch must go.
    pending: Vec<SpoolEntry>,
    pending_start: u64,
    pending_bytes: usize,
    deadline: Option<tokio::time::Instant>,
}

impl SpoolReader {
    /// The next synced entries, about `max_bytes` of records in them, waiting up to
    /// `linger` for more once there are some. `None` when `stop` turns true first.
    /// Cancel-safe: entries read before a cancellation are kept for the next call.
    pub async fn next_batch(
        &mut self,
        max_bytes: usize,
        linger: Duration,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<Batch> {
        loop {
            // Reads come from the page cache, written moments ago: short enough to do inline
            // on the shipper's runtime.
            while self.pending_bytes < max_bytes && self.position < *self.synced.borrow_and_update()
            {
                if let Some((start, entry)) = self.read_frame() {
                    if self.pending.is_empty() {
                        self.pending_start = start;
                    }
                    self.pending_bytes += entry.raw_bytes as usize;
                    self.pending.push(entry);
                }
            }
            if self.pending_bytes >= max_bytes {
                break;
            }
            if !self.pending.is_empty() {
                self.deadline.get_or_insert_with(|| tokio::time::Instant::now() + linger);
            }
            let deadline = self.deadline;
            tokio::select! {
                _ = self.synced.changed() => {}
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => break,
                _ = stop.wait_for(|s| *s) => return None,
            }
        }
        self.deadline = None;
        self.pending_bytes = 0;
        let entries = std::mem::take(&mut self.pending);
        let start = if entries.is_empty() { self.position } else { self.pending_start };
        Some(Batch { entries, start, end: self.position })
    }

    /// The entries of a batch taken before, read again from `start` to `end`, so that a
    /// batch being pushed needs no copy in memory for its retries. Fewer than were taken
    /// when `drop_oldest` deleted some of them meanwhile, or they turned out corrupt (counted
    /// once, when first read, not again here).
    pub fn reread(&mut self, start: u64, end: u64) -> Vec<SpoolEntry> {
        let shared = self.shared.clone();
        let mut entries = Vec::new();
        let mut position = start;
        while position < end {
            let before = position;
            match self.frame_at(&shared.state(), &mut position, false) {
                // Past a dropped segment the next frame may be beyond the batch.
                Some((at, entry)) if at < end => entries.push(entry),
                Some(_) => break,
                None if position == before => break,
                None => {}
            }
        }
        entries
    }

    /// The collector has everything before `position`: its segments can go.
    pub fn acknowledge(&self, position: u64) {
        let mut state = self.shared.state();
        state.acked = state.acked.max(position);
        self.shared.release(&mut state);
    }

    /// The frame at the reader's position, with where it starts; on corruption, none, and
    /// the position moves past the damaged part.
    fn read_frame(&mut self) -> Option<(u64, SpoolEntry)> {
        // The lock is held through the read, so that drop_oldest sees what is taken.
        let shared = self.shared.clone();
        let mut state = shared.state();
        let mut position = self.position;
        let read = self.frame_at(&state, &mut position, true);
        self.position = position;
        if read.is_some() {
            state.taken = state.taken.max(position);
        }
        read
    }

    /// The frame at `position`, or at the start of the next segment when `position` is the
    /// end of one, with where it starts; `position` moves past what was read or skipped, and
    /// corruption is logged and counted when `first_read`.
    fn frame_at(
        &mut self,
        state: &State,
        position: &mut u64,
        first_read: bool,
    ) -> Option<(u64, SpoolEntry)> {
        // Dropped segments (drop_oldest) are gone from under the position.
        if let Some((&first, _)) = state.segments.iter().next()
            && *position < first
        {
            *position = first;
        }
        let (&base, &segment) = state
            .segments
            .range(..=*position)
            .next_back()
            .expect("the position is within the spool");
        let next = state.segments.range(*position + 1..).next().map(|(&b, _)| b);
        if *position >= base + segment.len {
            // The end of a closed segment: the next one starts at a later base.
            *position = next.unwrap_or(base + segment.len);
            return None;
        }
        let path = segment_path(&self.shared.dir, base);
        let frame_end = base + segment.len;
        let start = *position;
        match self.read_at(&path, base, start - base, frame_end - start) {
            Ok((entry, len)) => {
                *position += len;
                Some((start, entry))
            }
            Err(reason) => {
                let lost_to = next.unwrap_or(frame_end).max(frame_end);
                if first_read {
                    corrupt(&path, start, lost_to - start, &reason);
                }
                *position = lost_to;
                None
            }
        }
    }

    /// Reads and decodes the frame at `offset` in segment `base`, which has `room` bytes
    /// after it; returns its entry and its length.
    fn read_at(
        &mut self,
        path: &Path,
        base: u64,
        offset: u64,
        room: u64,
    ) -> Result<(SpoolEntry, u64), String> {
        if self.file.as_ref().is_none_or(|(b, _)| *b != base) {
            let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
            self.file = Some((base, file));
        }
        let (_, file) = self.file.as_ref().expect("opened above");
        let mut header = [0; frame::HEADER_BYTES];
        file.read_exact_at(&mut header, offset).map_err(|e| format!("cannot read: {e}"))?;
        let (len, crc) = frame::header(&header);
        let total = frame::HEADER_BYTES as u64 + len;
        if len > MAX_FRAME_BYTES || total > room || len < 4 {
            return Err(format!("frame length {len} runs past the segment"));
        }
        let mut payload = vec![0; len as usize];
        file.read_exact_at(&mut payload, offset + frame::HEADER_BYTES as u64)
            .map_err(|e| format!("cannot read: {e}"))?;
        if !frame::verify(&payload, crc) {
            return Err("checksum mismatch".to_owned());
        }
        // Decoded from `Bytes`, the entry's block is a view of the payload, not a copy.
        let entry = SpoolEntry::decode(prost::bytes::Bytes::from(payload).slice(4..))
            .map_err(|e| format!("undecodable spool entry: {e}"))?;
        Ok((entry, total))
    }
}

fn corrupt(path: &Path, position: u64, bytes: u64, reason: &str) {
    tracing::error!(path = %path.display(), position, lost_bytes = bytes, reason, "corrupt spool segment: skipping the rest of it; its records are lost");
    metrics::counter!("sluice_agent_spool_corrupt_segments_total").increment(1);
    metrics::counter!("sluice_agent_spool_lost_bytes_total").increment(bytes);
}

/// The whole frames of a segment file and its length on disk, read a frame at a time so
/// that opening a large spool does not need its size in memory.
fn scan(path: &Path) -> Result<(Segment, u64), AgentError> {
    let file = File::open(path).map_err(AgentError::io("open spool segment", path))?;
    let size = file.metadata().map_err(AgentError::io("stat", path))?.len();
    let mut segment = Segment { len: 0, records: 0 };
    let mut header = [0; frame::HEADER_BYTES];
    let mut payload = Vec::new();
    while file.read_exact_at(&mut header, segment.len).is_ok() {
        let (len, crc) = frame::header(&header);
        if !(4..=MAX_FRAME_BYTES).contains(&len) {
            break;
        }
        payload.resize(len as usize, 0);
        let at = segment.len + frame::HEADER_BYTES as u64;
        if file.read_exact_at(&mut payload, at).is_err() || !frame::verify(&payload, crc) {
            break;
        }
        segment.records += u64::from(u32::from_le_bytes(payload[..4].try_into().expect("4")));
        segment.len = at + len;
    }
    Ok((segment, size))
}

/// Records in the frames of a segment at positions from `from` on.
fn count_records_from(path: &Path, base: u64, from: u64) -> u64 {
    let Ok(file) = File::open(path) else { return 0 };
    let size = file.metadata().map_or(0, |m| m.len());
    let mut offset = 0;
    let mut records = 0;
    let mut head = [0; frame::HEADER_BYTES + 4];
    while offset + head.len() as u64 <= size && file.read_exact_at(&mut head, offset).is_ok() {
        let (len, _) = frame::header(head[..frame::HEADER_BYTES].try_into().expect("8"));
        if base + offset >= from {
            records +=
                u64::from(u32::from_le_bytes(head[frame::HEADER_BYTES..].try_into().expect("4")));
        }
        offset += frame::HEADER_BYTES as u64 + len;
    }
    records
}

fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}{SUFFIX}"))
}

fn create_segment(dir: &Path, base: u64) -> Result<File, AgentError> {
    let path = segment_path(dir, base);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(AgentError::io("create spool segment", &path))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(AgentError::io("sync", dir))?;
    Ok(file)
}

fn list_segments(dir: &Path) -> Result<Vec<u64>, AgentError> {
    let mut bases: Vec<u64> = fs::read_dir(dir)
        .map_err(AgentError::io("list spool directory", dir))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(SUFFIX)?.parse().ok())
        .collect();
    bases.sort_unstable();
    Ok(bases)
}

#[cfg(test)]
mod tests {
    use sluice_proto::LogRecord;
    use sluice_proto::block::decode_block;

    use crate::chunk::Record;

    use super::*;

    fn config(max_bytes: u64, when_full: WhenFull) -> SpoolConfig {
        SpoolConfig {
            max_bytes,
            when_full,
            sync_interval: Duration::from_secs(3600),
            zstd_level: 1,
        }
    }

    fn chunk_of(source: u64, from: u64, n: u64, message: impl Fn(u64) -> String) -> Chunk {
        let common =
            LogRecord { source, file_path: "/var/log/a.log".into(), ..LogRecord::default() };
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
        chunk_of(source, from, n, |i| {
            format!("line {i} 订单 {}", "x".repeat((i % 7) as usize * 50))
        })
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

    fn open_in(
        dir: &Path,
        config: SpoolConfig,
    ) -> (SpoolWriter, SpoolReader, Arc<Mutex<Checkpoints>>) {
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
        list_segments(&dir.join("spool"))
            .unwrap()
            .into_iter()
            .map(|b| segment_path(&dir.join("spool"), b))
            .collect()
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
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let (_tx, mut stop_rx) = watch::channel(false);
            let Batch { entries, end, .. } = runtime
                .block_on(r.next_batch(2000, Duration::from_millis(1), &mut stop_rx))
                .unwrap();
            assert!(!entries.is_empty() && entries.len() < 300);
            let mut c = c.lock().unwrap();
            c.acknowledge_spool(end);
            c.save().unwrap();
            drop(c);
            r.acknowledge(end);
            let next = runtime
                .block_on(r.next_batch(2000, Duration::from_millis(1), &mut stop_rx))
                .unwrap();
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
}
