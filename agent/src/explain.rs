//! `sluice-agent explain PATH`: how the agent sees one file — whether it is selected, its
//! pod, identity, format, how far it is read into the spool and acknowledged by the
//! collector, and where the spool stands.

use std::fmt::Write;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use sluice_proto::id::source_key;

use crate::AgentError;
use crate::checkpoint::Checkpoints;
use crate::config::AgentConfig;
use crate::fingerprint::{HEAD_BYTES, fingerprint, with_generation};
use crate::{cri, docker, spool};

/// A report of `path` for people, one `key: value` per line.
pub fn explain(config: &AgentConfig, path: &Path) -> Result<String, AgentError> {
    let file = File::open(path).map_err(AgentError::io("open", path))?;
    let meta = file.metadata().map_err(AgentError::io("stat", path))?;
    let text = path.to_string_lossy();
    let mut out = String::new();
    let mut line = |key: &str, value: String| {
        let _ = writeln!(out, "{:<12} {value}", format!("{key}:"));
    };
    line("path", text.clone().into_owned());
    let watched = config.watch.iter().any(|p| p.matches(&text));
    line(
        "watched",
        if watched { "yes".into() } else { "no: no watch pattern matches this path".into() },
    );
    let pod = config.pod_meta(path);
    if pod.pod.is_empty() {
        line("pod", "none (the path names no pod and no sidecar pod is set)".into());
    } else {
        line(
            "pod",
            format!(
                "namespace={} pod={} uid={} container={}",
                pod.namespace, pod.pod, pod.pod_uid, pod.container
            ),
        );
        let selected = config.select.allows(&pod);
        line("selected", if selected { "yes".into() } else { "no: excluded by select:".into() });
    }
    line("inode", format!("{} on device {}", meta.ino(), meta.dev()));
    line("size", format!("{} bytes", meta.len()));
    let mut head = vec![0; 64 * 1024];
    let n = file.read_at(&mut head, 0).map_err(AgentError::io("read", path))?;
    let first = head[..n].split(|&b| b == b'\n').next().unwrap_or_default();
    let compressed = path.extension().is_some_and(|e| e == "gz");
    let format = if compressed {
        "gzip (a compressed rotation)"
    } else if n == 0 {
        "unknown (empty)"
    } else if cri::parse(first).is_some() {
        "cri"
    } else if docker::parse(first).is_some() {
        "docker json-file"
    } else {
        "plain"
    };
    line("format", format.into());
    let checkpoints = Checkpoints::load(&config.data_dir)?;
    if compressed {
        let mut head = Vec::new();
        let decoded =
            flate2::read::MultiGzDecoder::new(&file).take(HEAD_BYTES as u64).read_to_end(&mut head);
        let holds = match decoded {
            Err(e) => {
                format!("unknown: not a whole gzip file ({e}); looked at again when it grows")
            }
            Ok(_) => match checkpoints.known().into_iter().find(|k| k.held_in(&head)) {
                Some(k) => format!(
                    "the content of {} (source {:016x}), read up to byte {}: what is past it is read from here",
                    k.path, k.source, k.offset
                ),
                None => "nothing the agent has read: an archive from before it watched, left alone"
                    .into(),
            },
        };
        line("holds", holds);
        line("spool", spool::status(&config.data_dir, checkpoints.spool_acked())?.to_string());
        return Ok(out);
    }
    let Some(fp) = fingerprint(&file).map_err(AgentError::io("read", path))? else {
        line("identity", "none yet: the file has no complete first line".into());
        return Ok(out);
    };
    let found = checkpoints.find(fp);
    let source = match &found {
        Some(found) => source_key(
            &config.source_identity(),
            with_generation(found.fingerprint, found.generation),
        ),
        None => source_key(&config.source_identity(), fp),
    };
    line(
        "source",
        format!("{source:016x} (fingerprint {fp:016x}, identity {})", config.source_identity()),
    );
    match found {
        Some(found) if found.fingerprint != fp => line(
            "copy of",
            format!(
                "the file last read as {} (recognised by its first bytes): read on under its identity, from where it was left",
                found.path
            ),
        ),
        Some(_) => {}
        None => {
            let starts_like = checkpoints.known().into_iter().find(|k| {
                k.identified.fingerprint != fp
                    && k.identified.head.starts(&head[..n.min(HEAD_BYTES)])
            });
            if let Some(k) = starts_like {
                line(
                    "copy of",
                    format!(
                        "{} perhaps: it starts with that file's first {} bytes; read on from byte {} once that content is gone from there (copytruncate), else read as a file of its own",
                        k.path, k.identified.head.len, k.offset
                    ),
                );
            }
        }
    }
    match (checkpoints.acked(source), checkpoints.offset(source)) {
        (Some(acked), Some(spooled)) => {
            line(
                "checkpoint",
                format!(
                    "{acked} acknowledged by the collector; {} bytes behind",
                    meta.len().saturating_sub(acked)
                ),
            );
            line(
                "spooled",
                format!(
                    "{spooled} read into the spool; {} bytes of it wait there for the collector",
                    spooled.saturating_sub(acked)
                ),
            );
        }
        _ => line("checkpoint", "none: the agent has not read this file yet".into()),
    }
    line("spool", spool::status(&config.data_dir, checkpoints.spool_acked())?.to_string());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawConfig;

    #[test]
    fn reports_pod_format_identity_and_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pods/shop_api-1_u1/app/0.log");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(
            &file,
            "2026-11-24T01:00:00Z stdout F hello\n2026-11-24T01:00:01Z stdout F x\n",
        )
        .unwrap();
        let mut raw = RawConfig::new(
            "http://127.0.0.1:1".into(),
            dir.path().join("state"),
            vec![format!("{}/pods/*/*/*.log", dir.path().display())],
        );
        raw.node = "n1".into();
        let config = raw.validate().unwrap();
        let report = explain(&config, &file).unwrap();
        for wanted in [
            "watched:     yes",
            "pod:         namespace=shop pod=api-1 uid=u1 container=app",
            "selected:    yes",
            "format:      cri",
            "size:        68 bytes",
            "identity default/n1",
            "checkpoint:  none",
        ] {
            assert!(report.contains(wanted), "{wanted:?} in\n{report}");
        }
        std::fs::create_dir_all(&config.data_dir).unwrap();
        let fp = fingerprint(&File::open(&file).unwrap()).unwrap().unwrap();
        let mut checkpoints = Checkpoints::load(&config.data_dir).unwrap();
        let source = source_key(&config.source_identity(), fp);
        checkpoints.advance(source, "x", 50);
        checkpoints.acknowledge(source, "x", 36);
        checkpoints.acknowledge_spool(4096);
        checkpoints.save().unwrap();
        let report = explain(&config, &file).unwrap();
        for wanted in [
            "checkpoint:  36 acknowledged by the collector; 32 bytes behind",
            "spooled:     50 read into the spool; 14 bytes of it wait there",
            "spool:       0 bytes in 0 segments; written up to position 4096, acknowledged up to 4096",
        ] {
            assert!(report.contains(wanted), "{wanted:?} in\n{report}");
        }

        // Read on as a copy of another file (copytruncate), and compressed.
        let copy = dir.path().join("pods/shop_api-1_u1/app/0.log.1");
        std::fs::copy(&file, &copy).unwrap();
        let copy_fp = fingerprint(&File::open(&copy).unwrap()).unwrap().unwrap();
        let head = crate::fingerprint::Head::read(&File::open(&file).unwrap()).unwrap();
        let identified =
            crate::checkpoint::Identified { fingerprint: fp, generation: 0, content: 1, head };
        checkpoints.register(source, identified);
        checkpoints.advance(source, &file.display().to_string(), 68);
        checkpoints.note_copy(source, copy_fp);
        checkpoints.save().unwrap();
        let report = explain(&config, &copy).unwrap();
        assert!(
            report.contains(&format!("copy of:     the file last read as {}", file.display())),
            "{report}"
        );
        assert!(report.contains(&format!("source:      {source:016x}")), "{report}");
        let gz = dir.path().join("pods/shop_api-1_u1/app/0.log.1.gz");
        let mut encoder =
            flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
        std::io::Write::write_all(&mut encoder, &std::fs::read(&file).unwrap()).unwrap();
        encoder.finish().unwrap();
        let report = explain(&config, &gz).unwrap();
        assert!(report.contains("format:      gzip"), "{report}");
        assert!(
            report.contains(&format!("holds:       the content of {}", file.display())),
            "{report}"
        );

        let empty = dir.path().join("empty.log");
        std::fs::write(&empty, "no newline yet").unwrap();
        let report = explain(&config, &empty).unwrap();
        assert!(
            report.contains("watched:     no") && report.contains("identity:    none yet"),
            "{report}"
        );
        assert!(
            explain(&config, &dir.path().join("missing.log"))
                .unwrap_err()
                .to_string()
                .contains("missing.log")
        );
    }
}
