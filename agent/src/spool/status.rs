//! What `sluice-agent explain` shows of the spool, read without changing it.

use std::fs;
use std::path::Path;

use sluice_proto::segment::Segments;

use super::SUFFIX;
use crate::AgentError;

/// The spool's segments and positions.
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
    let segments = Segments::new(&dir, SUFFIX);
    let bases = match dir.exists() {
        true => segments.list().map_err(AgentError::io("list spool directory", &dir))?,
        false => Vec::new(),
    };
    let mut disk_bytes = 0;
    let mut end = 0;
    for &base in &bases {
        let len = fs::metadata(segments.path(base)).map_or(0, |m| m.len());
        disk_bytes += len;
        end = base + len;
    }
    Ok(SpoolStatus { segments: bases.len(), disk_bytes, end: end.max(acked), acked })
}
