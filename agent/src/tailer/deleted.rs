//! Deleted files the tailer still holds open: while the spool is full they keep their disk,
//! and beyond `max_deleted_bytes` the largest are let go, their unread rest counted.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use super::file::TrackedFile;

/// The size of a file that is deleted but still open; `None` for one that is not deleted.
fn deleted_size(file: &File) -> Option<u64> {
    file.metadata().ok().filter(|m| m.nlink() == 0).map(|m| m.len())
}

pub(super) fn count_dropped(f: &TrackedFile, size: u64) {
    let read = f.reading.as_ref().map_or(0, |r| r.splitter.position());
    tracing::warn!(path = %f.path.display(), size, unread = size.saturating_sub(read), "letting go of a deleted file: deleted files hold more than max_deleted_bytes while the spool is full");
    metrics::counter!("sluice_agent_deleted_files_closed_total").increment(1);
    metrics::counter!("sluice_agent_deleted_bytes_dropped_total")
        .increment(size.saturating_sub(read));
}

/// With the spool full, deleted files stay open and hold their disk; beyond `cap` bytes the
/// largest go first, their unread rest counted as dropped. Returns whether `current` (the
/// file whose chunk waits) must go too.
pub(super) fn let_go_of_deleted(
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
