//! Records Elasticsearch refused for good (mapping conflicts, bad values): one JSON line each
//! in `<state_dir>/dead-letter.ndjson` with the reason, the status and the index, so they can
//! be found (`rg`, `jq`) and replayed once the mapping is fixed.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

pub(super) struct DeadLetters {
    path: PathBuf,
    file: File,
}

impl DeadLetters {
    pub(super) fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("dead-letter.ndjson");
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Self { path, file })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends and syncs: a dead letter must be durable before its WAL position is released.
    pub(super) fn add(&mut self, entries: &[(String, u16, Value, Value)]) -> std::io::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut out = Vec::new();
        for (index, status, reason, doc) in entries {
            serde_json::to_writer(
                &mut out,
                &json!({"index": index, "status": status, "reason": reason, "document": doc}),
            )
            .map_err(std::io::Error::other)?;
            out.push(b'\n');
        }
        self.file.write_all(&out)?;
        self.file.sync_data()
    }
}
