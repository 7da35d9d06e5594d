//! Per-file gauges: how far each file is read, spooled and acknowledged, and how far behind
//! in bytes and in seconds.

use std::collections::VecDeque;
use std::time::Instant;

use super::Tailer;
use super::file::SizeSeen;

impl Tailer {
    /// Per-file gauges: how far each file is read, spooled and acknowledged, and how far
    /// behind in bytes and in seconds.
    pub(super) fn report_files(&mut self) {
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
}

/// Samples kept per file for [`lag_seconds`]; beyond it the samples are thinned.
const LAG_SAMPLES: usize = 64;

/// How long the oldest unacknowledged byte has been in the file, within the sampling
/// interval: the time since the file was first seen longer than what is acknowledged.
fn lag_seconds(sizes: &mut VecDeque<SizeSeen>, size: u64, acked: u64, now: Instant) -> f64 {
    if sizes.back().is_none_or(|s| s.size != size) {
        sizes.push_back(SizeSeen { size, seen: now });
    }
    while sizes.front().is_some_and(|s| s.size <= acked) {
        sizes.pop_front();
    }
    if sizes.len() > LAG_SAMPLES {
        // The oldest sample is the one that matters; drop the one after it.
        sizes.remove(1);
    }
    sizes.front().map_or(0.0, |s| now.duration_since(s.seen).as_secs_f64())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn lag_is_the_age_of_the_oldest_size_not_yet_acknowledged() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut sizes = VecDeque::new();
        assert_eq!(lag_seconds(&mut sizes, 100, 100, at(0)), 0.0, "all acknowledged");
        assert_eq!(lag_seconds(&mut sizes, 200, 100, at(5)), 0.0, "just seen longer");
        assert_eq!(lag_seconds(&mut sizes, 300, 100, at(8)), 3.0, "since 200 was seen");
        assert_eq!(lag_seconds(&mut sizes, 300, 250, at(9)), 1.0, "200 acknowledged: since 300");
        assert_eq!(lag_seconds(&mut sizes, 300, 300, at(20)), 0.0);
        for i in 0..200 {
            lag_seconds(&mut sizes, 400 + i, 300, at(30 + i));
        }
        assert!(sizes.len() <= LAG_SAMPLES + 1, "{} samples kept", sizes.len());
        assert_eq!(lag_seconds(&mut sizes, 1000, 300, at(300)), 270.0, "the oldest sample stays");
    }
}
