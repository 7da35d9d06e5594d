//! The spool thread (`sluice-spool`): compresses the chunks the reader hands over, writes
//! them as frames, syncs, and moves the files' checkpoints once their records are durable.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_proto::frame;

use super::entry::{self, SpoolEntry};
use super::handoff::{Handoff, Job, Refused};
use super::{FULL_WAIT, Segment, Shared, count_records_from};
use crate::checkpoint::{Checkpoints, Resume};
use crate::chunk::Chunk;
use crate::config::WhenFull;

/// The spool thread's state: appends chunks, syncs them, and moves file checkpoints.
pub(super) struct Appender {
    pub(super) shared: Arc<Shared>,
    pub(super) file: File,
    pub(super) base: u64,
    pub(super) len: u64,
    /// Frames written since the last sync.
    pub(super) dirty: bool,
    pub(super) last_sync: Instant,
    /// Checkpoints the frames written since the last sync allow, per source, with its path.
    pub(super) pending: HashMap<u64, Resume>,
    pub(super) checkpoints: Arc<Mutex<Checkpoints>>,
    pub(super) compressor: zstd::bulk::Compressor<'static>,
    /// Reused from chunk to chunk.
    pub(super) compressed: Vec<u8>,
    pub(super) payload: Vec<u8>,
    pub(super) frame: Vec<u8>,
}

impl Appender {
    /// Takes jobs from the reader until it closes the handoff.
    pub(super) fn run(mut self, handoff: &Handoff, stop: &AtomicBool) {
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
        self.pending
            .entry(common.source)
            .or_default()
            .raise(chunk.resume_offset, &common.file_path);
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
        entry::encode_payload(&entry, &self.compressed, &mut self.payload);
        self.frame.clear();
        frame::encode(&self.payload, &mut self.frame);
    }

    /// Writes the encoded frame, retrying (and pausing reading) while the disk refuses it.
    fn write_frame(&mut self, records: u64) {
        let path = self.shared.segments.path(self.base);
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
        let path = self.shared.segments.path(self.base);
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
                for (source, Resume { offset, path }) in self.pending.drain() {
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
            match self.shared.segments.create(base) {
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
        let path = shared.segments.path(base);
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
