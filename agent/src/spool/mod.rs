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
//! Segment files `<base>.spool` in `<data_dir>/spool/` hold frames whose payload is
//! `[records u32][SpoolEntry]`: one frame per chunk the reader produced, its records a zstd
//! [`sluice_proto::RecordBlock`] that the shipper sends to the collector as it is, so records
//! are encoded and compressed once. The segments are laid out and recovered as
//! [`sluice_proto::segment`] says for the collector's WAL too: a position is a byte offset in
//! the whole spool; on open, a torn tail is cut; a damaged frame ends its segment, and a
//! missing segment is passed over — logged and counted as lost — and reading goes on with the
//! next segment, so corruption never stops the agent.
//!
//! # Layout
//! - this file: [`open`], the segments and the state both threads share.
//! - [`entry`]: what a frame holds.
//! - [`handoff`]: [`SpoolWriter`], the reader thread's end, with backpressure.
//! - [`appender`]: the spool thread, which compresses, writes, syncs and moves checkpoints.
//! - [`reader`]: [`SpoolReader`], the shipper's end: batches and acknowledgements.
//! - [`status`]: what `sluice-agent explain` shows.

mod appender;
mod entry;
mod handoff;
mod reader;
mod status;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sluice_proto::segment::{self, Segments};
use tokio::sync::watch;

pub use entry::SpoolEntry;
pub use handoff::{Refused, SpoolWriter};
pub use reader::{Batch, SpoolReader};
pub use status::{SpoolStatus, status};

use crate::AgentError;
use crate::checkpoint::Checkpoints;
use crate::config::SpoolConfig;
use appender::Appender;
use handoff::Handoff;

const SUFFIX: &str = ".spool";
/// How long the reader waits for room before it checks whether the agent is stopping.
const FULL_WAIT: Duration = Duration::from_millis(100);

/// One segment file: its length in whole frames and the records in them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Segment {
    pub(super) len: u64,
    pub(super) records: u64,
}

#[derive(Debug, Default)]
pub(super) struct State {
    /// Every segment on disk by base position; the last one is being written.
    pub(super) segments: BTreeMap<u64, Segment>,
    /// Acknowledged by the collector up to here.
    pub(super) acked: u64,
    /// The shipper has taken everything before here (it may not be acknowledged yet).
    pub(super) taken: u64,
}

impl State {
    pub(super) fn disk_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.len).sum()
    }

    pub(super) fn end(&self) -> u64 {
        self.segments.iter().next_back().map_or(0, |(base, s)| base + s.len)
    }

    pub(super) fn report(&self) {
        metrics::gauge!("sluice_agent_spool_bytes").set(self.disk_bytes() as f64);
        metrics::gauge!("sluice_agent_spool_unacked_bytes")
            .set(self.end().saturating_sub(self.acked) as f64);
        metrics::gauge!("sluice_agent_spool_segments").set(self.segments.len() as f64);
    }
}

pub(super) struct Shared {
    pub(super) segments: Segments,
    pub(super) config: SpoolConfig,
    pub(super) segment_bytes: u64,
    pub(super) state: Mutex<State>,
    /// Signalled when acknowledged segments are deleted, for a writer waiting for room.
    pub(super) room: Condvar,
    /// The end of the synced frames: the shipper reads up to here.
    pub(super) synced: watch::Sender<u64>,
}

impl Shared {
    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("spool state poisoned")
    }

    /// Deletes the segments wholly acknowledged, never the one being written.
    pub(super) fn release(&self, state: &mut State) {
        let active = state.segments.keys().next_back().copied();
        let done: Vec<u64> = state
            .segments
            .iter()
            .filter(|&(&base, s)| Some(base) != active && base + s.len <= state.acked)
            .map(|(&base, _)| base)
            .collect();
        for base in done {
            let path = self.segments.path(base);
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
    let segments = Segments::new(&dir, SUFFIX);
    let mut state = State { acked, ..State::default() };
    let bases = segments.list().map_err(AgentError::io("list spool directory", &dir))?;
    let mut expected_base = bases.first().copied().unwrap_or(0);
    for (i, &base) in bases.iter().enumerate() {
        let path = segments.path(base);
        if base > expected_base {
            corrupt(
                &segments.path(expected_base),
                expected_base,
                base - expected_base,
                "a segment is missing",
            );
        }
        let mut records = 0;
        let count = |payload: &[u8]| records += entry::records_in(payload);
        let last = i + 1 == bases.len();
        let scanned = match last {
            true => segments.cut_torn_tail(base, count),
            false => File::open(&path).and_then(|file| segment::scan(&file, count)),
        }
        .map_err(AgentError::io("scan spool segment", &path))?;
        if scanned.whole < scanned.on_disk {
            let damaged = scanned.on_disk - scanned.whole;
            match last {
                true => {
                    tracing::warn!(path = %path.display(), cut = damaged, "cutting a torn frame off the spool")
                }
                false => corrupt(&path, base + scanned.whole, damaged, "not a whole frame"),
            }
        }
        expected_base = base + scanned.on_disk;
        state.segments.insert(base, Segment { len: scanned.whole, records });
    }
    let segment_bytes = (config.max_bytes / 8).clamp(64 << 10, 8 << 20);
    let end = state.end().max(acked);
    // A fresh segment at each start keeps appends away from a tail that was just repaired.
    let base = end;
    let file = segments
        .create(base)
        .map_err(AgentError::io("create spool segment", segments.path(base)))?;
    state.segments.insert(base, Segment { len: 0, records: 0 });
    state.taken = acked.max(state.segments.keys().next().copied().unwrap_or(base));
    let (synced, synced_rx) = watch::channel(end);
    let shared = Arc::new(Shared {
        segments,
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
        .map_err(AgentError::io("start zstd", shared.segments.dir()))?;
    // The collector sizes its buffer from the frame header.
    compressor
        .include_contentsize(true)
        .map_err(AgentError::io("configure zstd", shared.segments.dir()))?;
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
            .map_err(AgentError::io("start spool thread", shared.segments.dir()))?
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

fn corrupt(path: &Path, position: u64, bytes: u64, reason: &str) {
    tracing::error!(path = %path.display(), position, lost_bytes = bytes, reason, "corrupt spool segment: skipping the rest of it; its records are lost");
    metrics::counter!("sluice_agent_spool_corrupt_segments_total").increment(1);
    metrics::counter!("sluice_agent_spool_lost_bytes_total").increment(bytes);
}

/// Records in the frames of a segment at positions from `from` on.
fn count_records_from(path: &Path, base: u64, from: u64) -> u64 {
    let Ok(file) = File::open(path) else { return 0 };
    let mut at = base;
    let mut records = 0;
    let _ = segment::scan(&file, |payload| {
        if at >= from {
            records += entry::records_in(payload);
        }
        at += (sluice_proto::frame::HEADER_BYTES + payload.len()) as u64;
    });
    records
}
