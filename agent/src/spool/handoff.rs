//! The reader thread's end of the spool: chunks handed, one at a time, to the spool thread
//! ([`super::appender`]), with backpressure while the spool is full.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::FULL_WAIT;
use crate::chunk::Chunk;

/// Chunks handed over by the reader thread that the spool thread has not taken yet. One is
/// enough to keep both threads busy: the reader splits, parses and encodes the next read
/// while the spool thread compresses, writes and syncs the last.
const HANDOFF_CHUNKS: usize = 1;

/// The reader thread's end: hands chunks to the spool thread, which compresses, writes and
/// syncs them and moves the files' checkpoints. Compressing on the reader thread made it the
/// agent's bottleneck: zstd was 45 % of its work.
pub struct SpoolWriter {
    pub(super) handoff: Arc<Handoff>,
    pub(super) thread: Option<std::thread::JoinHandle<()>>,
    pub(super) stop: Arc<AtomicBool>,
}

/// What passes between the reader thread and the spool thread.
#[derive(Default)]
pub(super) struct Handoff {
    pub(super) state: Mutex<Handing>,
    pub(super) changed: Condvar,
}

#[derive(Default)]
pub(super) struct Handing {
    pub(super) chunks: std::collections::VecDeque<Box<Chunk>>,
    pub(super) flushes_asked: u64,
    pub(super) flushes_done: u64,
    /// The spool thread is waiting for room.
    pub(super) full: bool,
    /// The reader is done: what was handed over is written and synced, then the thread ends.
    pub(super) closing: bool,
    pub(super) ended: bool,
}

impl Handoff {
    pub(super) fn state(&self) -> MutexGuard<'_, Handing> {
        self.state.lock().expect("spool handoff poisoned")
    }

    pub(super) fn wait<'a>(&self, state: MutexGuard<'a, Handing>) -> MutexGuard<'a, Handing> {
        self.changed.wait(state).expect("spool handoff poisoned")
    }

    pub(super) fn set_full(&self, full: bool) {
        self.state().full = full;
        self.changed.notify_all();
    }

    /// Counts every flush asked so far as done.
    pub(super) fn flushed(&self) {
        let mut state = self.state();
        state.flushes_done = state.flushes_asked;
        self.changed.notify_all();
    }
}

/// What the spool thread does next.
pub(super) enum Job {
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
