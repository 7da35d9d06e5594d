//! Finds the files the watch patterns match and reads their new lines into records.
//!
//! Runs on its own thread with plain blocking reads (file reads do not benefit from async).
//! Records go to the disk spool: when it is full, the append blocks and reading pauses, with
//! the unread data still safe in the files.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use sluice_proto::{LogRecord, Stream, flags, id::source_key};

use crate::checkpoint::Checkpoints;
use crate::chunk::{Chunk, Record};
use crate::config::{AgentConfig, ReadFrom};
use crate::cri::{self, Assembler, CriLine, Merged, SecondCache};
use crate::decode::decode;
use crate::docker;
use crate::fingerprint::{content_hash, fingerprint, first_line, identify, with_generation};
use crate::kube_path::PodMeta;
use crate::level;
use crate::line_reader::{Line, LineSplitter};
use crate::multiline::Joiner;
use crate::spool::{Refused, SpoolWriter};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Unknown,
    Cri,
    Docker,
    Plain,
}

/// A file being read, once it has a fingerprint.
struct Reading {
    source: u64,
    fingerprint: u64,
    /// Truncations in place so far (see [`with_generation`]).
    generation: u32,
    splitter: LineSplitter,
    parse: Parse,
}

/// What turns a file's lines into records.
struct Parse {
    /// What every record of the file shares, sent once per chunk.
    common: LogRecord,
    format: Format,
    /// The last CRI time's second.
    seconds: SecondCache,
    cri: Assembler,
    joiner: Joiner,
    /// The time given to the last line without a time of its own.
    last_read_ns: i64,
}

struct TrackedFile {
    path: PathBuf,
    path_text: String,
    meta: PodMeta,
    file: File,
    dev: u64,
    ino: u64,
    /// Read from the end: an existing file at the very first start with `read_from: end`.
    from_end: bool,
    /// Fingerprint and generation of the content before an in-place truncation, until the
    /// new content has a first line to compare.
    after_truncation: Option<(u64, u32)>,
    reading: Option<Reading>,
    /// Sizes the file was seen with and when, oldest first, for its lag in seconds.
    sizes: VecDeque<(u64, Instant)>,
    /// Fingerprint and content hash to read under instead of the handle's own: a rotated
    /// file recovered from its compressed copy keeps the identity it was read under.
    known_identity: Option<(u64, u64)>,
    /// When the file last gave new bytes.
    last_read: Instant,
}

pub struct Tailer {
    config: Arc<AgentConfig>,
    identity: String,
    checkpoints: Arc<Mutex<Checkpoints>>,
    files: HashMap<PathBuf, TrackedFile>,
    /// Files rotated away or deleted, still being read to their end.
    draining: Vec<TrackedFile>,
    /// Files closed at the open-file cap while idle: device, inode and size then.
    parked: HashMap<PathBuf, (u64, u64, u64)>,
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

    /// Watches the fixed directories of the patterns (what precedes their first wildcard), so
    /// a created, renamed or deleted file is noticed at once rather than at the next rescan.
    fn watch_directories(&self, changed: Arc<AtomicBool>) -> Option<notify::RecommendedWatcher> {
        use notify::{EventKind, RecursiveMode, Watcher, event::ModifyKind};
        let handler = move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event
                && matches!(
                    event.kind,
                    EventKind::Create(_)
                        | EventKind::Remove(_)
                        | EventKind::Modify(ModifyKind::Name(_))
                )
            {
                changed.store(true, Ordering::Relaxed);
            }
        };
        let mut watcher = match notify::recommended_watcher(handler) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch directories; relying on the periodic rescan");
                return None;
            }
        };
        for pattern in &self.config.watch {
            let fixed: PathBuf = Path::new(pattern.as_str())
                .components()
                .take_while(|c| !c.as_os_str().to_string_lossy().contains(['*', '?', '[']))
                .collect();
            let dir = if fixed.as_os_str() == pattern.as_str() {
                fixed.parent().map(Path::to_path_buf).unwrap_or_default()
            } else {
                fixed
            };
            if let Err(e) = watcher.watch(&dir, RecursiveMode::Recursive) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch; relying on the periodic rescan");
            }
        }
        Some(watcher)
    }

    /// Files rotated while the agent was away (kubelet's `0.log` → `0.log.<time>`, logrotate's
    /// `app.log` → `app.log.1`) are no longer under their watched name, but their unread tail
    /// is still in them. Each checkpointed file whose name now holds other content is looked
    /// for among its siblings by fingerprint (device, inode and first line survive a rename)
    /// and read to its end under its old identity, so its records keep their ids.
    fn recover_rotated(&mut self) -> Result<(), Halt> {
        let entries: Vec<(PathBuf, u64, Option<u64>, u64)> = {
            let checkpoints = self.checkpoints.lock().expect("checkpoints poisoned");
            let mut latest: HashMap<u64, (PathBuf, u32, Option<u64>, u64)> = HashMap::new();
            for (_, entry) in checkpoints.entries() {
                let Some(fp) = entry.fingerprint else { continue };
                let newer = latest.get(&fp).is_none_or(|(_, g, _, _)| entry.generation > *g);
                if newer {
                    let path = PathBuf::from(&entry.path);
                    latest.insert(fp, (path, entry.generation, entry.content, entry.offset));
                }
            }
            latest
                .into_iter()
                .map(|(fp, (path, _, content, offset))| (path, fp, content, offset))
                .collect()
        };
        'entries: for (path, fp, content, offset) in entries {
            let still_there =
                File::open(&path).ok().and_then(|f| fingerprint(&f).ok().flatten()) == Some(fp);
            let Some(dir) = path.parent().filter(|_| !still_there) else { continue };
            let Ok(siblings) = std::fs::read_dir(dir) else { continue };
            for sibling in siblings.flatten().map(|e| e.path()) {
                let Ok(file) = File::open(&sibling) else { continue };
                let meta = match file.metadata() {
                    Ok(m) if m.is_file() && m.len() > offset => m,
                    _ => continue,
                };
                if fingerprint(&file).ok().flatten() != Some(fp) {
                    continue;
                }
                tracing::info!(path = %sibling.display(), was = %path.display(), offset, "reading the unread tail of a file rotated while the agent was away");
                metrics::counter!("sluice_agent_rotated_tails_read_total").increment(1);
                let pod = self.config.pod_meta(&path);
                let mut tracked =
                    TrackedFile::new(sibling, pod, file, meta.dev(), meta.ino(), false);
                if let Err(Halt::Stopping) = self.read_to_end(&mut tracked) {
                    return Err(Halt::Stopping);
                }
                continue 'entries;
            }
            if let Some(content) = content {
                self.recover_compressed(&path, fp, content, offset)?;
            }
        }
        Ok(())
    }

    /// Kubelet compresses rotated logs (`0.log.<time>` → `0.log.<time>.gz`): a tail still
    /// unread then is only in the compressed copy, found by the hash of its head among the
    /// `.gz` siblings named after the file. It is read from a decompressed scratch copy under
    /// the file's old identity, so its records keep their ids.
    fn recover_compressed(
        &mut self,
        path: &Path,
        fp: u64,
        content: u64,
        offset: u64,
    ) -> Result<(), Halt> {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else { return Ok(()) };
        let name = name.to_string_lossy();
        let Ok(siblings) = std::fs::read_dir(dir) else { return Ok(()) };
        for gz in siblings.flatten().map(|e| e.path()) {
            let gz_name =
                gz.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if !(gz_name.starts_with(&*name) && gz_name.ends_with(".gz")) {
                continue;
            }
            let Ok(compressed) = File::open(&gz) else { continue };
            let mut head = Vec::new();
            let mut decoder = flate2::read::MultiGzDecoder::new(compressed);
            let read = (&mut decoder)
                .take(crate::fingerprint::FINGERPRINT_BYTES as u64)
                .read_to_end(&mut head);
            if read.is_err() || first_line(&head).map(content_hash) != Some(content) {
                continue;
            }
            let scratch = self.config.data_dir.join("rotated.gz.tmp");
            let copied = File::create(&scratch).and_then(|mut out| {
                out.write_all(&head)?;
                std::io::copy(&mut decoder, &mut out)
            });
            let file = match copied.and_then(|_| File::open(&scratch)) {
                Ok(file) => file,
                Err(e) => {
                    tracing::warn!(path = %gz.display(), error = %e, "cannot decompress a rotated file");
                    continue;
                }
            };
            let meta = match file.metadata() {
                Ok(m) if m.len() > offset => m,
                _ => continue,
            };
            tracing::info!(path = %gz.display(), was = %path.display(), offset, "reading the unread tail of a rotated file from its compressed copy");
            metrics::counter!("sluice_agent_rotated_tails_read_total").increment(1);
            let pod = self.config.pod_meta(path);
            let mut tracked =
                TrackedFile::new(gz.clone(), pod, file, meta.dev(), meta.ino(), false);
            tracked.known_identity = Some((fp, content));
            let result = self.read_to_end(&mut tracked);
            let _ = std::fs::remove_file(&scratch);
            return match result {
                Err(Halt::Stopping) => Err(Halt::Stopping),
                _ => Ok(()),
            };
        }
        Ok(())
    }

    /// Reads a file that is being let go to its end, including a pending multi-line event.
    fn read_to_end(&mut self, tracked: &mut TrackedFile) -> Result<(), Halt> {
        while self.read_file(tracked)? {}
        let last = self.flush_pending(tracked, true);
        if !last.is_empty() {
            self.send(last, tracked)?;
        }
        Ok(())
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

    /// Per-file gauges: how far each file is read, spooled and acknowledged, and how far
    /// behind in bytes and in seconds.
    fn report_files(&mut self) {
        metrics::gauge!("sluice_agent_open_files").set(self.files.len() as f64);
        let checkpoints = self.checkpoints.lock().expect("checkpoints poisoned");
        let now = Instant::now();
        for f in self.files.values_mut() {
            let Some(reading) = &f.reading else { continue };
            let size = f.file.metadata().map_or(0, |m| m.len());
            let acked = checkpoints.acked(reading.source).unwrap_or(0);
            let spooled = checkpoints.offset(reading.source).unwrap_or(0);
            let path = f.path_text.clone();
            metrics::gauge!("sluice_agent_file_read_offset_bytes", "path" => path.clone())
                .set(reading.splitter.position() as f64);
            metrics::gauge!("sluice_agent_file_spooled_offset_bytes", "path" => path.clone())
                .set(spooled as f64);
            metrics::gauge!("sluice_agent_file_acked_offset_bytes", "path" => path.clone())
                .set(acked as f64);
            metrics::gauge!("sluice_agent_file_lag_bytes", "path" => path.clone())
                .set(size.saturating_sub(acked) as f64);
            metrics::gauge!("sluice_agent_file_lag_seconds", "path" => path).set(lag_seconds(
                &mut f.sizes,
                size,
                acked,
                now,
            ));
        }
    }

    /// Expands the patterns: starts new files, lets rotated and deleted ones go.
    fn scan(&mut self) {
        let mut seen = Vec::new();
        for pattern in &self.config.watch {
            let paths = match glob::glob(pattern.as_str()) {
                Ok(paths) => paths,
                Err(e) => {
                    tracing::warn!(pattern = pattern.as_str(), error = %e, "cannot expand watch pattern");
                    continue;
                }
            };
            for path in paths.flatten() {
                if !self.config.select.allows(&self.config.pod_meta(&path)) {
                    continue;
                }
                match std::fs::metadata(&path) {
                    Ok(m) if m.is_file() => seen.push((path, m.dev(), m.ino(), m.len())),
                    _ => {}
                }
            }
        }
        let from_end = self.first_scan && self.config.read_from == ReadFrom::End;
        self.first_scan = false;
        let mut gone = Vec::new();
        let mut live = HashMap::new();
        let mut waiting = 0;
        for (path, dev, ino, size) in seen {
            let known = self.files.get(&path).is_some_and(|f| f.dev == dev && f.ino == ino);
            if !known {
                if let Some(old) = self.files.remove(&path) {
                    tracing::info!(path = %old.path.display(), "file replaced; following the new one");
                    gone.push(old);
                }
                // A file closed at the open-file cap stays closed until it grows.
                if self.parked.get(&path) == Some(&(dev, ino, size)) {
                    live.insert(path, ());
                    continue;
                }
                self.parked.remove(&path);
                if self.files.len() >= self.config.max_open_files && !self.park_one_idle() {
                    waiting += 1;
                    live.insert(path, ());
                    continue;
                }
                match File::open(&path) {
                    Ok(file) => {
                        tracing::info!(path = %path.display(), "tailing");
                        let meta = self.config.pod_meta(&path);
                        let tracked =
                            TrackedFile::new(path.clone(), meta, file, dev, ino, from_end);
                        self.files.insert(path.clone(), tracked);
                    }
                    Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot open"),
                }
            }
            live.insert(path, ());
        }
        if waiting > 0 {
            tracing::warn!(
                waiting,
                max_open_files = self.config.max_open_files,
                "files wait for a slot: every open file is busy"
            );
        }
        metrics::gauge!("sluice_agent_files_waiting").set(f64::from(waiting));
        self.parked.retain(|path, _| live.contains_key(path));
        metrics::gauge!("sluice_agent_files_parked").set(self.parked.len() as f64);
        let (kept, deleted): (HashMap<_, _>, HashMap<_, _>) = std::mem::take(&mut self.files)
            .into_iter()
            .partition(|(path, _)| live.contains_key(path));
        self.files = kept;
        gone.extend(deleted.into_values());
        // A rotated or deleted file may have been written to since the last round: read it to
        // its end through the handle still open, then let it go.
        self.draining.extend(gone);
        while let Some(mut old) = self.draining.pop() {
            if let Err(Halt::Stopping) = self.read_to_end(&mut old) {
                return;
            }
        }
    }

    /// At the open-file cap: closes the file idle longest, if one is read to its end with
    /// nothing pending and idle for a scan interval; it is reopened once it grows.
    fn park_one_idle(&mut self) -> bool {
        let now = Instant::now();
        let idle = self
            .files
            .iter()
            .filter(|(_, f)| now.duration_since(f.last_read) >= self.config.scan_interval)
            .filter_map(|(path, f)| {
                let reading = f.reading.as_ref()?;
                let size = f.file.metadata().ok()?.len();
                (reading.idle() && reading.splitter.position() == size).then_some((
                    f.last_read,
                    path.clone(),
                    size,
                ))
            })
            .min();
        let Some((_, path, size)) = idle else { return false };
        let f = self.files.remove(&path).expect("listed from the map");
        tracing::debug!(path = %path.display(), "closing an idle file to make room");
        self.parked.insert(path, (f.dev, f.ino, size));
        true
    }

    /// One round over every file; `Ok(true)` when any of them had new bytes.
    fn read_all(&mut self) -> Result<bool, Halt> {
        let mut any = false;
        let paths: Vec<PathBuf> = self.files.keys().cloned().collect();
        for path in paths {
            // Gone already when the spool's wait let go of it as a deleted file.
            let Some(mut file) = self.files.remove(&path) else { continue };
            let read = match self.read_file(&mut file) {
                Ok(read) => read,
                Err(Halt::GaveUp) => continue,
                Err(Halt::Stopping) => return Err(Halt::Stopping),
            };
            any |= read;
            let timed_out = self.flush_pending(&mut file, false);
            if !timed_out.is_empty() {
                match self.send(timed_out, &file) {
                    Ok(()) => {}
                    Err(Halt::GaveUp) => continue,
                    Err(Halt::Stopping) => return Err(Halt::Stopping),
                }
            }
            self.files.insert(path, file);
        }
        Ok(any)
    }

    fn read_file(&mut self, f: &mut TrackedFile) -> Result<bool, Halt> {
        if f.reading.is_none() && !self.start_reading(f) {
            return Ok(false);
        }
        let size = f.file.metadata().map_or(u64::MAX, |m| m.len());
        if f.reading.as_ref().is_some_and(|r| size < r.splitter.position()) {
            self.truncated(f)?;
            if !self.start_reading(f) {
                return Ok(false);
            }
        }
        let mut budget = READ_BUDGET_BYTES;
        let mut any = false;
        while budget > 0 {
            let n = match f.file.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(path = %f.path.display(), error = %e, "read failed; will retry");
                    break;
                }
            };
            any = true;
            f.last_read = Instant::now();
            budget = budget.saturating_sub(n);
            metrics::counter!("sluice_agent_bytes_read_total").increment(n as u64);
            let reading = f.reading.as_mut().expect("reading started above");
            let (now, read_at) = (now_ns(), Instant::now());
            let mut out = Chunk::new(&reading.parse.common, now, n + n / 4);
            let mut lines = 0;
            let parse = &mut reading.parse;
            reading.splitter.push(&self.buf[..n], |line| {
                lines += 1;
                self.record(parse, line, now, read_at, &mut out);
            });
            metrics::counter!("sluice_agent_lines_read_total").increment(lines);
            if !out.is_empty() {
                self.send(out, f)?;
            }
        }
        Ok(any)
    }

    /// The file shrank under the reader (copytruncate): what was read of the old content is
    /// finished, and the new content is read from 0 once it has a first line. With the same
    /// first line it is the next generation of the file, so its records get new ids rather
    /// than ids the old content already used.
    fn truncated(&mut self, f: &mut TrackedFile) -> Result<(), Halt> {
        let last = self.flush_pending(f, true);
        if !last.is_empty() {
            self.send(last, f)?;
        }
        let reading = f.reading.take().expect("called while reading");
        tracing::warn!(path = %f.path.display(), read = reading.splitter.position(), "file truncated in place; reading it again from the start");
        metrics::counter!("sluice_agent_truncations_total").increment(1);
        f.after_truncation = Some((reading.fingerprint, reading.generation));
        f.from_end = false;
        if let Err(e) = f.file.seek(SeekFrom::Start(0)) {
            tracing::warn!(path = %f.path.display(), error = %e, "cannot seek");
        }
        Ok(())
    }

    /// Fingerprints the file and seeks to its checkpoint; false while it is too short.
    fn start_reading(&self, f: &mut TrackedFile) -> bool {
        let identified = match f.known_identity {
            Some(known) => Ok(Some(known)),
            None => identify(&f.file),
        };
        let (fp, content) = match identified {
            Ok(Some(identity)) => identity,
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(path = %f.path.display(), error = %e, "cannot fingerprint");
                return false;
            }
        };
        let size = f.file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut checkpoints = self.checkpoints.lock().expect("checkpoints poisoned");
        let (generation, offset) = match f.after_truncation.take() {
            // Seen shrinking while read: the same first line is the file's next content.
            Some((old_fp, old_generation)) if old_fp == fp => (old_generation + 1, 0),
            _ => {
                // Checkpoints written before generations existed are found by the plain key.
                let (generation, checkpoint) = match checkpoints.latest_generation(fp) {
                    Some((generation, offset)) => (generation, Some(offset)),
                    None => (0, checkpoints.offset(source_key(&self.identity, fp))),
                };
                match checkpoint {
                    Some(offset) if offset <= size => (generation, offset),
                    Some(offset) => {
                        tracing::warn!(path = %f.path.display(), offset, size, "file shorter than its checkpoint (truncated while the agent was away); reading it from the start");
                        metrics::counter!("sluice_agent_truncations_total").increment(1);
                        (generation + 1, 0)
                    }
                    None if f.from_end => (0, end_of_last_line(&f.file, size)),
                    None => (0, 0),
                }
            }
        };
        let source = source_key(&self.identity, with_generation(fp, generation));
        checkpoints.register(source, fp, generation, content);
        drop(checkpoints);
        if let Err(e) = f.file.seek(SeekFrom::Start(offset)) {
            tracing::warn!(path = %f.path.display(), error = %e, "cannot seek");
            return false;
        }
        f.reading = Some(Reading {
            source,
            fingerprint: fp,
            generation,
            splitter: LineSplitter::new(self.config.max_line_bytes, offset),
            parse: Parse {
                common: LogRecord {
                    source,
                    cluster: self.config.cluster.clone(),
                    node: self.config.node.clone(),
                    namespace: f.meta.namespace.clone(),
                    pod: f.meta.pod.clone(),
                    pod_uid: f.meta.pod_uid.clone(),
                    container: f.meta.container.clone(),
                    file_path: f.path_text.clone(),
                    ..LogRecord::default()
                },
                format: Format::Unknown,
                seconds: SecondCache::default(),
                cri: Assembler::new(self.config.max_line_bytes),
                joiner: Joiner::default(),
                last_read_ns: 0,
            },
        });
        true
    }

    /// The record a line completes, if any, into `out`; `now` and `read_at` are when the
    /// bytes were read.
    fn record(
        &self,
        parse: &mut Parse,
        line: Line<'_>,
        now: i64,
        read_at: Instant,
        out: &mut Chunk,
    ) {
        if parse.format == Format::Unknown {
            parse.format = if cri::parse(line.bytes).is_some() {
                Format::Cri
            } else if docker::parse(line.bytes).is_some() {
                Format::Docker
            } else {
                Format::Plain
            };
        }
        // The shared fields, read time included, stay in the chunk's common record.
        let docker_line;
        let (part, malformed) = match parse.format {
            Format::Cri => {
                (cri::parse_cached(line.bytes, &mut parse.seconds), flags::CRI_MALFORMED)
            }
            Format::Docker => {
                docker_line = docker::parse(line.bytes);
                let part = docker_line.as_ref().map(|d| CriLine {
                    timestamp_ns: d.timestamp_ns,
                    stream: d.stream,
                    partial: d.partial,
                    text: &d.text,
                });
                (part, flags::DOCKER_MALFORMED)
            }
            Format::Plain | Format::Unknown => (None, 0),
        };
        let record = match part {
            Some(part) => {
                let Some(merged) =
                    parse.cri.push(&part, line.start, line.end, line.truncated, read_at)
                else {
                    return;
                };
                merged_record(merged, 0)
            }
            None => {
                let (message, decode_flags) = decode(Cow::Borrowed(line.bytes), line.truncated);
                Record {
                    offset: line.start,
                    timestamp_ns: parse.read_time(now),
                    stream: Stream::File as i32,
                    flags: malformed | decode_flags,
                    level: "",
                    message,
                }
            }
        };
        self.complete(parse, record, line.end, read_at, out);
    }

    /// A record that ends at `end`, through the multi-line joiner when there is one.
    fn complete(
        &self,
        parse: &mut Parse,
        record: Record<'_>,
        end: u64,
        read_at: Instant,
        out: &mut Chunk,
    ) {
        match &self.config.multiline {
            Some(multiline) => {
                let record = record.into_log_record();
                for (record, end) in parse.joiner.push(multiline, record, end, read_at) {
                    self.finish(parse, Record::from_log_record(record), end, out);
                }
            }
            None => self.finish(parse, record, end, out),
        }
    }

    /// What waits for more and has waited long enough, or everything when the file is being
    /// let go: CRI records whose `F` never came (once the file is read to its end, so an
    /// unread `F` is not taken for a missing one), then multi-line events.
    fn flush_pending(&self, f: &mut TrackedFile, all: bool) -> Chunk {
        let Some(reading) = f.reading.as_mut() else {
            return Chunk::new(&LogRecord::default(), 0, 0);
        };
        let now = Instant::now();
        let parse = &mut reading.parse;
        let mut out = Chunk::new(&parse.common, now_ns(), 0);
        let read_to_end =
            || f.file.metadata().is_ok_and(|m| reading.splitter.position() >= m.len());
        if parse.cri.pending_start().is_some() && (all || read_to_end()) {
            for merged in parse.cri.take_stale(now, PARTIAL_TIMEOUT, all) {
                let end = merged.end;
                let record = merged_record(merged, flags::PARTIAL);
                self.complete(parse, record, end, now, &mut out);
            }
        }
        if let Some(multiline) = &self.config.multiline {
            for (record, end) in parse.joiner.flush(multiline, now, all) {
                self.finish(parse, Record::from_log_record(record), end, &mut out);
            }
        }
        out
    }

    /// Redaction, flags and level on a complete record, added to `out` with the checkpoint
    /// its ack allows: past its last line, but not past the first line of anything still
    /// being assembled.
    fn finish(&self, parse: &Parse, mut record: Record<'_>, end: u64, out: &mut Chunk) {
        if !self.config.redact.is_empty() {
            let mut text = record.message.into_owned();
            if self.config.redact.apply(&mut text) {
                record.flags |= flags::REDACTED;
            }
            record.message = Cow::Owned(text);
        }
        if record.flags != 0 {
            for name in flags::names(record.flags) {
                metrics::counter!("sluice_agent_records_flagged_total", "flag" => name)
                    .increment(1);
            }
        }
        record.level = level::detect(&record.message).unwrap_or_default();
        let resume_offset = [parse.cri.pending_start(), parse.joiner.pending_start()]
            .into_iter()
            .flatten()
            .fold(end, u64::min);
        out.push(&record, resume_offset);
    }
}

impl Reading {
    /// Nothing read is waiting for more: no partial line, CRI record or multi-line event.
    fn idle(&self) -> bool {
        self.splitter.pending_start() == self.splitter.position()
            && self.parse.cri.pending_start().is_none()
            && self.parse.joiner.pending_start().is_none()
    }
}

impl Parse {
    /// Lines without a time of their own get the read time, made strictly increasing per
    /// file (by nanoseconds) so that newest-first keeps their order.
    fn read_time(&mut self, now: i64) -> i64 {
        self.last_read_ns = now.max(self.last_read_ns + 1);
        self.last_read_ns
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

impl TrackedFile {
    fn new(path: PathBuf, meta: PodMeta, file: File, dev: u64, ino: u64, from_end: bool) -> Self {
        Self {
            path_text: path.to_string_lossy().into_owned(),
            meta,
            path,
            file,
            dev,
            ino,
            from_end,
            after_truncation: None,
            reading: None,
            sizes: VecDeque::new(),
            known_identity: None,
            last_read: Instant::now(),
        }
    }
}

/// Samples kept per file for [`lag_seconds`]; beyond it the samples are thinned.
const LAG_SAMPLES: usize = 64;

/// How long the oldest unacknowledged byte has been in the file, within the sampling
/// interval: the time since the file was first seen longer than what is acknowledged.
fn lag_seconds(sizes: &mut VecDeque<(u64, Instant)>, size: u64, acked: u64, now: Instant) -> f64 {
    if sizes.back().is_none_or(|&(s, _)| s != size) {
        sizes.push_back((size, now));
    }
    while sizes.front().is_some_and(|&(s, _)| s <= acked) {
        sizes.pop_front();
    }
    if sizes.len() > LAG_SAMPLES {
        // The oldest sample is the one that matters; drop the one after it.
        sizes.remove(1);
    }
    sizes.front().map_or(0.0, |&(_, seen)| now.duration_since(seen).as_secs_f64())
}

/// A record from a merged CRI or Docker record.
fn merged_record(merged: Merged<'_>, flag_bits: u32) -> Record<'_> {
    let (message, decode_flags) = decode(merged.text, merged.truncated);
    Record {
        offset: merged.start,
        timestamp_ns: merged.timestamp_ns,
        stream: merged.stream as i32,
        flags: flag_bits | decode_flags,
        level: "",
        message,
    }
}

/// The size of a file that is deleted but still open; `None` for one that is not deleted.
fn deleted_size(file: &File) -> Option<u64> {
    file.metadata().ok().filter(|m| m.nlink() == 0).map(|m| m.len())
}

fn count_dropped(f: &TrackedFile, size: u64) {
    let read = f.reading.as_ref().map_or(0, |r| r.splitter.position());
    tracing::warn!(path = %f.path.display(), size, unread = size.saturating_sub(read), "letting go of a deleted file: deleted files hold more than max_deleted_bytes while the spool is full");
    metrics::counter!("sluice_agent_deleted_files_closed_total").increment(1);
    metrics::counter!("sluice_agent_deleted_bytes_dropped_total")
        .increment(size.saturating_sub(read));
}

/// With the spool full, deleted files stay open and hold their disk; beyond `cap` bytes the
/// largest go first, their unread rest counted as dropped. Returns whether `current` (the
/// file whose chunk waits) must go too.
fn let_go_of_deleted(
    files: &mut HashMap<PathBuf, TrackedFile>,
    draining: &mut Vec<TrackedFile>,
    current: &TrackedFile,
    cap: u64,
) -> bool {
    enum Held {
        Tracked(PathBuf),
        Draining(usize),
        Current,
    }
    let mut held: Vec<(u64, Held)> = files
        .iter()
        .filter_map(|(path, f)| Some((deleted_size(&f.file)?, Held::Tracked(path.clone()))))
        .chain(
            draining
                .iter()
                .enumerate()
                .filter_map(|(i, f)| Some((deleted_size(&f.file)?, Held::Draining(i)))),
        )
        .collect();
    if let Some(size) = deleted_size(&current.file) {
        held.push((size, Held::Current));
    }
    let mut total: u64 = held.iter().map(|(size, _)| size).sum();
    metrics::gauge!("sluice_agent_deleted_bytes_held").set(total as f64);
    if total <= cap {
        return false;
    }
    held.sort_by_key(|(size, _)| std::cmp::Reverse(*size));
    let mut give_up_current = false;
    let mut gone_from_draining = Vec::new();
    for (size, which) in held {
        if total <= cap {
            break;
        }
        total -= size;
        match which {
            Held::Tracked(path) => {
                if let Some(f) = files.remove(&path) {
                    count_dropped(&f, size);
                }
            }
            Held::Draining(i) => {
                count_dropped(&draining[i], size);
                gone_from_draining.push(i);
            }
            Held::Current => give_up_current = true,
        }
    }
    gone_from_draining.sort_unstable_by(|a, b| b.cmp(a));
    for i in gone_from_draining {
        draining.remove(i);
    }
    give_up_current
}

/// Where the last complete line of the first `size` bytes ends: the start when tailing from
/// the end, so a half-written line is not read from its middle.
fn end_of_last_line(file: &File, size: u64) -> u64 {
    use std::os::unix::fs::FileExt;
    let from = size.saturating_sub(READ_CHUNK_BYTES as u64);
    let mut tail = vec![0; (size - from) as usize];
    match file.read_exact_at(&mut tail, from) {
        Ok(()) => tail.iter().rposition(|&b| b == b'\n').map_or(from, |i| from + i as u64 + 1),
        Err(_) => size,
    }
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}
