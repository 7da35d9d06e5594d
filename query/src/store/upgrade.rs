//! Partitions written by an older format, opened as the current one.
//!
//! A format that only adds fields (format 5 added the Kubernetes event fields after
//! `shape`) needs no rewrite of the data: tantivy reads a field that a segment never saw as
//! empty, exactly as it reads a field no document of a segment happened to have. What it
//! needs is the new fields in the partition's schema, which tantivy keeps in `meta.json`.
//! [`Upgrading`] serves `meta.json` with the missing fields appended, in memory, so a
//! partition opens with the current schema whether it is written to (the next commit writes
//! the full schema back) or only read (`sluice search` on an index no newer collector has
//! touched). Tantivy offers no way to add a field to an index, hence this wrapper.

use std::io;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tantivy::Directory;
use tantivy::directory::error::{DeleteError, LockError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    DirectoryLock, FileHandle, Lock, MmapDirectory, WatchCallback, WatchHandle, WritePtr,
};
use tantivy::schema::Schema;

const META: &str = "meta.json";

/// A partition's directory whose `meta.json` names every field of `schema`.
#[derive(Clone, Debug)]
pub(crate) struct Upgrading {
    inner: MmapDirectory,
    /// The current schema's field entries, as `meta.json` holds them.
    fields: Vec<Value>,
    path: PathBuf,
}

impl Upgrading {
    pub(crate) fn open(path: &Path, schema: &Schema) -> Result<Self, tantivy::TantivyError> {
        let inner = MmapDirectory::open(path)?;
        let fields = match serde_json::to_value(schema) {
            Ok(Value::Array(fields)) => fields,
            _ => unreachable!("a tantivy schema serialises as the array of its fields"),
        };
        Ok(Self { inner, fields, path: path.to_owned() })
    }

    /// `meta` with the fields it lacks appended; an error when its fields are not the first
    /// ones of the current schema, in order (a partition of some other program, or a format
    /// that removed or reordered fields).
    fn upgrade(&self, meta: Vec<u8>) -> Result<Vec<u8>, String> {
        let mut json: Value = serde_json::from_slice(&meta).map_err(|e| e.to_string())?;
        let Some(Value::Array(fields)) = json.get_mut("schema") else {
            return Err("it has no schema".to_owned());
        };
        if fields.len() == self.fields.len() {
            return Ok(meta);
        }
        let name = |f: &Value| f.get("name").and_then(Value::as_str).map(str::to_owned);
        let known = fields.len() < self.fields.len()
            && fields.iter().zip(&self.fields).all(|(a, b)| name(a) == name(b));
        if !known {
            let names: Vec<_> = fields.iter().filter_map(name).collect();
            return Err(format!("its fields {names:?} are not the start of this release's"));
        }
        fields.extend_from_slice(&self.fields[fields.len()..]);
        serde_json::to_vec(&json).map_err(|e| e.to_string())
    }
}

impl Directory for Upgrading {
    fn get_file_handle(
        &self,
        path: &Path,
    ) -> Result<std::sync::Arc<dyn FileHandle>, OpenReadError> {
        self.inner.get_file_handle(path)
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        self.inner.delete(path)
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        self.inner.exists(path)
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        self.inner.open_write(path)
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        let bytes = self.inner.atomic_read(path)?;
        if path != Path::new(META) {
            return Ok(bytes);
        }
        self.upgrade(bytes).map_err(|reason| OpenReadError::IoError {
            io_error: io::Error::other(format!("cannot upgrade the partition: {reason}")).into(),
            filepath: self.path.join(META),
        })
    }

    fn atomic_write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.inner.atomic_write(path, data)
    }

    fn sync_directory(&self) -> io::Result<()> {
        self.inner.sync_directory()
    }

    fn acquire_lock(&self, lock: &Lock) -> Result<DirectoryLock, LockError> {
        self.inner.acquire_lock(lock)
    }

    fn watch(&self, watch_callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        self.inner.watch(watch_callback)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tantivy::schema::{STORED, STRING};

    fn schema(names: &[&str]) -> Schema {
        let mut b = Schema::builder();
        for name in names {
            b.add_text_field(name, STRING | STORED);
        }
        b.build()
    }

    #[test]
    fn older_fields_gain_the_new_ones_and_foreign_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let current = Upgrading::open(dir.path(), &schema(&["a", "b", "c"])).unwrap();
        let meta = |names: &[&str]| {
            serde_json::to_vec(&serde_json::json!({"schema": schema(names), "segments": []}))
                .unwrap()
        };
        let upgraded: Value =
            serde_json::from_slice(&current.upgrade(meta(&["a", "b"])).unwrap()).unwrap();
        assert_eq!(upgraded["schema"], serde_json::to_value(schema(&["a", "b", "c"])).unwrap());
        assert_eq!(upgraded["segments"], serde_json::json!([]), "the rest is kept");
        assert_eq!(current.upgrade(meta(&["a", "b", "c"])).unwrap(), meta(&["a", "b", "c"]));
        let refused = current.upgrade(meta(&["a", "x"])).unwrap_err();
        assert!(refused.contains("\"x\""), "{refused}");
    }
}
