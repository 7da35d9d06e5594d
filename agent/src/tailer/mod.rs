//! Finds the files the watch patterns match and reads their new lines into records.
//!
//! Runs on its own thread with plain blocking reads (file reads do not benefit from async).
//! Records go to the disk spool: when it is full, the append blocks and reading pauses, with
//! the unread data still safe in the files.
//!
//! # Layout
//! - this file: [`Tailer`] and its loop: scan, read every file, hand chunks to the spool.
//! - `discovery`: the patterns expanded, directories watched, files opened, replaced, let go
//!   and parked at the open-file cap.
//! - `rotation`: the unread tails of files rotated while the agent was away, found again by
//!   fingerprint.
//! - `copies`: copies of files already read (copytruncate), known by their head and read on
//!   where their original was left.
//! - `compressed`: `.gz` rotations, read from where the file they hold was left.
//! - `read`: a file read by offset from its checkpoint, truncation in place.
//! - `parse`: lines into records: CRI, Docker json-file or plain, multi-line, redaction, level.
//! - `file`: what is kept of a tracked file.
//! - `lag`: per-file gauges, lag in bytes and seconds.
//! - `deleted`: deleted files held open while the spool is full, and the cap on their disk.

mod compressed;
mod copies;
mod deleted;
mod discovery;
mod file;
mod lag;
mod parse;
mod read;
mod rotation;
#[cfg(test)]
mod testing;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::checkpoint::Checkpoints;
use crate::chunk::Chunk;
use crate::config::AgentConfig;
use crate::spool::{Refused, SpoolWriter};
use deleted::{count_dropped, let_go_of_deleted};
use discovery::ParkedFile;
use file::TrackedFile;

/// One read, and so one chunk and one spool frame at most. Against 64 KiB, on a 1 GiB CRI
/// file: zstd compresses the bigger blocks a fifth smaller (5.2 against 4.4 times) and a
/// little faster, and a quarter of the syscalls and frames go, for 10–15 % less agent CPU.
const READ_CHUNK_BYTES: usize = 256 * 1024;
/// How often checkpoints of files whose directory is gone are forgotten.
const FORGET_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);
/// Runtimes write every part of a long line at once: a `P` part with no `F` after this long,
/// in a file read to its end, belongs to a container that died mid-line.
const PARTIAL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Bytes read from one file before moving to the next, so one busy file cannot starve others.
const READ_BUDGET_BYTES: usize = 4 << 20;

pub struct Tailer {
    config: Arc<AgentConfig>,
    identity: String,
    checkpoints: Arc<Mutex<Checkpoints>>,
    files: HashMap<PathBuf, TrackedFile>,
    /// Files rotated away or deleted, still being read to their end.
    draining: Vec<TrackedFile>,
    /// Files closed at the open-file cap while idle.
    parked: HashMap<PathBuf, ParkedFile>,
    /// Compressed files looked into, as they were then: looked into again only if changed.
    examined: HashMap<PathBuf, ParkedFile>,
    spool: SpoolWriter,
    stop: Arc<AtomicBool>,
    first_scan: bool,
    buf: Vec<u8>,
}

impl Tailer {
    pub fn new(
        config: Arc<AgentConfig>,
        checkpoints: Arc<Mutex<Checkpoints>>,
        spool: SpoolWriter,
        stop: Arc<AtomicBool>,
    ) -> Self {
        let first_scan = checkpoints.lock().expect("checkpoints poisoned").first_start();
        Self {
            identity: config.source_identity(),
            config,
            checkpoints,
            files: HashMap::new(),
            draining: Vec::new(),
            parked: HashMap::new(),
            examined: HashMap::new(),
            spool,
            stop,
            first_scan,
            buf: vec![0; READ_CHUNK_BYTES],
        }
    }

    /// Reads until the stop flag is set.
    pub fn run(mut self) {
        if self.recover_rotated().is_err() {
            return;
        }
        let changed = Arc::new(AtomicBool::new(false));
        // Kept alive for the loop; without it, the periodic rescan still finds every file.
        let _watcher = self.watch_directories(changed.clone());
        let mut last_scan: Option<Instant> = None;
        let mut last_forget: Option<Instant> = None;
        while !self.stop.load(Ordering::Relaxed) {
            let due = last_scan.is_none_or(|t| t.elapsed() >= self.config.scan_interval);
            if due || changed.swap(false, Ordering::Relaxed) {
                self.scan();
                self.report_files();
                last_scan = Some(Instant::now());
            }
            if last_forget.is_none_or(|t| t.elapsed() >= FORGET_INTERVAL) {
                let gone = self.checkpoints.lock().expect("checkpoints poisoned").forget_gone();
                if gone > 0 {
                    tracing::info!(
                        files = gone,
                        "forgot the checkpoints of files whose directory is gone"
                    );
                }
                last_forget = Some(Instant::now());
            }
            match self.read_all() {
                Ok(true) => {}
                Ok(false) => {
                    self.spool.flush();
                    std::thread::sleep(self.config.poll_interval);
                }
                Err(Halt::Stopping) => break,
                Err(Halt::GaveUp) => {}
            }
        }
        // What reached the spool keeps its checkpoint across a reload or a clean stop.
        self.spool.flush();
    }

    /// Hands a chunk of `current` to the spool. While the spool is full this waits, and
    /// keeps the disk held by deleted files under `max_deleted_bytes` meanwhile.
    fn send(&mut self, chunk: Chunk, current: &TrackedFile) -> Result<(), Halt> {
        let cap = self.config.max_deleted_bytes;
        let (files, draining) = (&mut self.files, &mut self.draining);
        let mut waiting = || let_go_of_deleted(files, draining, current, cap);
        match self.spool.append(chunk, &mut waiting) {
            Ok(()) => Ok(()),
            Err(Refused::Stopping) => Err(Halt::Stopping),
            Err(Refused::GaveUp) => {
                let size = current.file.metadata().map_or(0, |m| m.len());
                count_dropped(current, size);
                Err(Halt::GaveUp)
            }
        }
    }
}

/// Why reading a file stopped early.
enum Halt {
    /// The agent is stopping.
    Stopping,
    /// The file was deleted and, with the spool full, held more disk than
    /// `max_deleted_bytes` allows: it is let go with its unread rest (counted).
    GaveUp,
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}
