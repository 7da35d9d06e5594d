//! What the tailer keeps of a file it follows.

use std::collections::VecDeque;
use std::fs::File;
use std::path::PathBuf;
use std::time::Instant;

use super::parse::Parse;
use crate::checkpoint::Identified;
use crate::kube_path::PodMeta;
use crate::line_reader::LineSplitter;

/// A file the tailer follows, opened.
pub(super) struct TrackedFile {
    pub(super) path: PathBuf,
    pub(super) path_text: String,
    pub(super) meta: PodMeta,
    pub(super) file: File,
    pub(super) dev: u64,
    pub(super) ino: u64,
    /// Read from the end: an existing file at the very first start with `read_from: end`.
    pub(super) from_end: bool,
    /// The content before an in-place truncation, until the new content has a first line
    /// to compare.
    pub(super) after_truncation: Option<Truncated>,
    pub(super) reading: Option<Reading>,
    /// Sizes the file was seen with and when, oldest first, for its lag in seconds.
    pub(super) sizes: VecDeque<SizeSeen>,
    /// Another file's reading this one goes on with, instead of its own: a compressed
    /// rotation, decompressed, is read on under the identity of the file it holds.
    pub(super) continues: Option<Continues>,
    /// When the file last gave new bytes.
    pub(super) last_read: Instant,
}

/// The content of a file before it was truncated in place: its fingerprint and generation.
#[derive(Debug, Clone, Copy)]
pub(super) struct Truncated {
    pub(super) fingerprint: u64,
    pub(super) generation: u32,
}

/// Where a file goes on with another's reading: under its identity, from its offset.
#[derive(Debug, Clone, Copy)]
pub(super) struct Continues {
    pub(super) identified: Identified,
    pub(super) offset: u64,
}

/// A size a file was seen with, and when.
#[derive(Debug, Clone, Copy)]
pub(super) struct SizeSeen {
    pub(super) size: u64,
    pub(super) seen: Instant,
}

/// A file being read, once it has a fingerprint.
pub(super) struct Reading {
    pub(super) source: u64,
    /// What is read: the file's own identity, or for a copy the identity of the file it
    /// copies; its generation counts truncations in place (see
    /// [`crate::fingerprint::with_generation`]).
    pub(super) identified: Identified,
    /// A copy of another file, or a compressed rotation: it is not written to, so it is
    /// never taken for truncated in place.
    pub(super) copy: bool,
    pub(super) splitter: LineSplitter,
    pub(super) parse: Parse,
}

impl TrackedFile {
    pub(super) fn new(
        path: PathBuf,
        meta: PodMeta,
        file: File,
        dev: u64,
        ino: u64,
        from_end: bool,
    ) -> Self {
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
            continues: None,
            last_read: Instant::now(),
        }
    }
}

impl Reading {
    /// Nothing read is waiting for more: no partial line, CRI record or multi-line event.
    pub(super) fn idle(&self) -> bool {
        self.splitter.pending_start() == self.splitter.position()
            && self.parse.cri.pending_start().is_none()
            && self.parse.joiner.pending_start().is_none()
    }
}
