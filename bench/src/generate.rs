//! Realistic log files from the shapes in `shared/testdata`: Loghub system logs and Chinese
//! Java service logs, half as plain files, half as CRI files under a kubelet-style path with
//! long lines split into `P`/`F` parts. Every line carries a unique `seq=N`.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// What was generated.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Generated {
    pub(crate) bytes: u64,
    pub(crate) records: u64,
}

/// CRI runtimes split lines at 16 KiB; we split smaller so the merge path is exercised often.
const CRI_SPLIT_BYTES: usize = 200;

pub(crate) fn templates(testdata: &Path) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    for sub in ["loghub", "zh"] {
        let dir = testdata.join(sub);
        for entry in fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "log")
                && !path.to_string_lossy().contains(".cri.")
            {
                let text = String::from_utf8_lossy(&fs::read(&path)?).into_owned();
                lines.extend(
                    text.lines()
                        .map(|l| l.trim_end_matches('\r').to_owned())
                        .filter(|l| !l.is_empty()),
                );
            }
        }
    }
    anyhow::ensure!(!lines.is_empty(), "no template lines under {}", testdata.display());
    Ok(lines)
}

/// Writes about `total_bytes` of logs into `files` files under `dir`; returns their paths.
pub(crate) fn generate(
    dir: &Path,
    templates: &[String],
    total_bytes: u64,
    files: usize,
) -> anyhow::Result<(Vec<PathBuf>, Generated)> {
    let mut paths = Vec::new();
    let mut generated = Generated::default();
    let per_file = total_bytes / files as u64;
    let mut seq = 0u64;
    // Times run up to now, a millisecond apart, so `--since` finds the demo's records: the
    // runtime's in CRI lines, and in plain lines a stamp before the template's own (which is
    // years old: the agent reads a line's first stamp).
    let end = chrono::Utc::now();
    for i in 0..files {
        let cri = i % 2 == 0;
        let path = if cri {
            dir.join(format!("pods/bench_app-{i}_0000-{i:04}/app/0.log"))
        } else {
            dir.join(format!("app/service-{i}.log"))
        };
        fs::create_dir_all(path.parent().expect("has a parent"))?;
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&path)?);
        let mut written = 0u64;
        while written < per_file {
            let template = &templates[(seq as usize * 7919) % templates.len()];
            let line = format!("{template} seq={seq}");
            seq += 1;
            let back = (total_bytes / 64).saturating_sub(seq);
            let at = end - chrono::TimeDelta::milliseconds(i64::try_from(back).unwrap_or(0));
            if cri {
                let ts = at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
                let mut rest = line.as_str();
                while rest.len() > CRI_SPLIT_BYTES {
                    let mut cut = CRI_SPLIT_BYTES;
                    while !rest.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    writeln!(out, "{ts} stdout P {}", &rest[..cut])?;
                    written += (ts.len() + 10 + cut) as u64;
                    rest = &rest[cut..];
                }
                writeln!(out, "{ts} stdout F {rest}")?;
                written += (ts.len() + 10 + rest.len()) as u64;
            } else {
                let line =
                    format!("{} {line}", at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
                writeln!(out, "{line}")?;
                written += line.len() as u64 + 1;
            }
            generated.records += 1;
        }
        out.flush()?;
        generated.bytes += fs::metadata(&path)?.len();
        paths.push(path);
    }
    Ok((paths, generated))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// Every record appears once, whole: plain lines after a stamp of their own, CRI records
    /// as `P` parts and one `F` part that join back to the record.
    #[test]
    fn records_are_unique_and_cri_parts_join_back() {
        let dir = tempfile::tempdir().unwrap();
        let templates = vec!["订单创建失败 orderId=1 ".repeat(20), "INFO short".to_owned()];
        let (paths, generated) = generate(dir.path(), &templates, 64 << 10, 2).unwrap();
        let mut seen = HashSet::new();
        for path in &paths {
            let text = fs::read_to_string(path).unwrap();
            let mut record = String::new();
            for line in text.lines() {
                let message = if path.ends_with("0.log") {
                    let mut parts = line.splitn(4, ' ');
                    let (_, stream, tag) = (parts.next(), parts.next(), parts.next().unwrap());
                    assert_eq!(stream, Some("stdout"));
                    record.push_str(parts.next().unwrap());
                    if tag == "P" {
                        continue;
                    }
                    std::mem::take(&mut record)
                } else {
                    let (stamp, message) = line.split_once(' ').unwrap();
                    assert!(chrono::DateTime::parse_from_rfc3339(stamp).is_ok(), "{line}");
                    message.to_owned()
                };
                let seq = message.rsplit_once(" seq=").unwrap().1.to_owned();
                assert!(templates.iter().any(|t| message == format!("{t} seq={seq}")));
                assert!(seen.insert(seq), "seq repeated in {message}");
            }
            assert!(record.is_empty(), "a CRI record without its F part");
        }
        assert_eq!(seen.len() as u64, generated.records);
        let bytes: u64 = paths.iter().map(|p| fs::metadata(p).unwrap().len()).sum();
        assert_eq!(bytes, generated.bytes);
        assert!(bytes >= 64 << 10);
    }
}
