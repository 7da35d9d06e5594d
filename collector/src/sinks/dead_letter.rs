//! Records a server refused for good (an Elasticsearch mapping conflict, a message over
//! Kafka's size limit): one JSON line each in `<state_dir>/dead-letter.ndjson` with where it
//! was going and why it was refused, so it can be found (`rg`, `jq`) and replayed once the
//! cause is fixed.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::sink::SinkError;

pub(crate) struct DeadLetters {
    path: PathBuf,
    file: File,
}

impl DeadLetters {
    pub(crate) fn open(dir: &Path) -> Result<Self, SinkError> {
        let path = dir.join("dead-letter.ndjson");
        std::fs::create_dir_all(dir)
            .and_then(|()| OpenOptions::new().create(true).append(true).open(&path))
            .map(|file| Self { path, file })
            .map_err(|e| {
                SinkError(format!("cannot open the dead-letter file in {}: {e}", dir.display()))
            })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends and syncs: a dead letter must be durable before its WAL position is released.
    pub(crate) fn add(&mut self, entries: &[Value]) -> std::io::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut out = Vec::new();
        for entry in entries {
            serde_json::to_writer(&mut out, entry).map_err(std::io::Error::other)?;
            out.push(b'\n');
        }
        self.file.write_all(&out)?;
        self.file.sync_data()
    }
}
