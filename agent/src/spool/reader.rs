//! The shipper's end of the spool: batches of synced entries, read again from disk for a
//! retry, and acknowledgements that let segments go.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sluice_proto::segment;
use tokio::sync::watch;

use super::entry::{self, SpoolEntry};
use super::{Shared, State, corrupt};

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
    pub(super) shared: Arc<Shared>,
    pub(super) synced: watch::Receiver<u64>,
    /// The next frame to read.
    pub(super) position: u64,
    /// The segment last read from, kept open.
    pub(super) file: Option<(u64, File)>,
    /// Entries read for the batch being gathered, where the first starts, their records'
    /// size, and when the batch must go.
    pub(super) pending: Vec<SpoolEntry>,
    pub(super) pending_start: u64,
    pub(super) pending_bytes: usize,
    pub(super) deadline: Option<tokio::time::Instant>,
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
        let path = self.shared.segments.path(base);
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
        let (payload, len) =
            segment::read_frame_at(file, offset, room).map_err(|e| e.to_string())?;
        Ok((entry::decode_payload(payload)?, len))
    }
}
