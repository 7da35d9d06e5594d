//! CPU time and peak memory of a process, from `/proc` (Linux).

use std::fs;

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub(crate) struct Usage {
    pub(crate) cpu_seconds: f64,
    pub(crate) peak_rss_mib: f64,
    pub(crate) rss_mib: f64,
    /// The part of `rss_mib` that is the process's own memory, not mapped files (the index
    /// tantivy maps counts in RSS while its pages are cached, but the kernel can drop them).
    pub(crate) anon_mib: f64,
}

pub(crate) fn usage(pid: u32) -> Usage {
    let ticks = ticks_per_second();
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start past the last ')'.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    let cpu_seconds = (field(11) + field(12)) / ticks;
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Usage {
        cpu_seconds,
        peak_rss_mib: kib("VmHWM:") / 1024.0,
        rss_mib: kib("VmRSS:") / 1024.0,
        anon_mib: kib("RssAnon:") / 1024.0,
    }
}

/// Clock ticks per second for `/proc/<pid>/stat`; asked of `getconf` rather than `sysconf`
/// so the workspace stays free of `unsafe`.
fn ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}
