//! Helpers for black-box tests of the `sluice` and `sluice-agent` binaries.
//!
//! Every server here is a real process on loopback; nothing is mocked.

// Each test binary uses a part of these (the Kubernetes double only some).
#![allow(dead_code, unreachable_pub, unused_imports)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

pub mod kafka;
pub mod pki;
pub use sluice_bench::fake_kube as kube;

pub fn sluice() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sluice"))
}

/// `sluice-agent` lives in another package; cargo puts it beside `sluice`.
pub fn sluice_agent() -> PathBuf {
    let path = sluice().with_file_name("sluice-agent");
    assert!(
        path.exists(),
        "{} is missing: build it first (scripts/test does: cargo build --workspace --bins)",
        path.display()
    );
    path
}

/// The benchmark harness, built by `cargo build --workspace --bins` like `sluice-agent`.
pub fn sluice_bench() -> PathBuf {
    let path = sluice().with_file_name("sluice-bench");
    assert!(path.exists(), "{} is missing: cargo build --workspace --bins", path.display());
    path
}

/// A child process killed with SIGKILL when dropped, so a failing test leaves nothing behind.
pub struct Proc {
    pub child: Child,
    pub name: &'static str,
}

impl Proc {
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A tool `scripts/test-servers` provides: the path it exported as `var` when the test script
/// started the servers, or what `scripts/test-servers <command>` builds or installs now.
pub fn test_servers_tool(var: &str, command: &str) -> PathBuf {
    if let Ok(path) = std::env::var(var) {
        return path.into();
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test-servers");
    let out = Command::new("bash").arg(script).arg(command).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn log_file(dir: &Path, name: &str) -> std::fs::File {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))
        .unwrap()
}

/// Starts `sluice up` on ephemeral ports; returns it and its HTTP base URL.
pub fn start_up(data_dir: &Path, watch: &[String]) -> (Proc, String) {
    start_up_with(data_dir, watch, &[])
}

/// `start_up` with more arguments, such as `--users`.
pub fn start_up_with(
    data_dir: &Path,
    watch: &[String],
    extra: &[&std::ffi::OsStr],
) -> (Proc, String) {
    start_up_with_env(data_dir, watch, extra, &[])
}

/// `start_up_with` and environment variables for the process (secrets, say).
pub fn start_up_with_env(
    data_dir: &Path,
    watch: &[String],
    extra: &[&std::ffi::OsStr],
    env: &[(&str, &str)],
) -> (Proc, String) {
    let mut cmd = Command::new(sluice());
    cmd.envs(env.iter().copied());
    cmd.args(["up", "--listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(["--commit-interval", "300ms"]);
    for w in watch {
        cmd.args(["--watch", w]);
    }
    cmd.args(extra);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(log_file(&data_dir.join("logs"), "up"))
        .spawn()
        .expect("sluice up starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut http = None;
    for _ in 0..2 {
        let line = lines.next().expect("sluice up prints its addresses").unwrap();
        if let Some(url) = line.strip_prefix("sluice: search API on ") {
            http = Some(url.to_owned());
        }
    }
    (Proc { child, name: "sluice up" }, http.expect("sluice up printed its API address"))
}

/// Starts `sluice collector` on fixed ports (so a restart keeps them).
pub fn start_collector(data_dir: &Path, grpc_port: u16, http_port: u16) -> Proc {
    start_collector_with(data_dir, grpc_port, http_port, &[])
}

/// A collector on fresh ports: the process, its gRPC port and its HTTP base URL.
pub fn start_test_collector(data_dir: &Path) -> (Proc, u16, String) {
    let (grpc, http) = (free_port(), free_port());
    (start_collector(data_dir, grpc, http), grpc, format!("http://127.0.0.1:{http}"))
}

/// `start_collector` with more arguments, such as TLS and token files.
pub fn start_collector_with(
    data_dir: &Path,
    grpc_port: u16,
    http_port: u16,
    extra: &[&std::ffi::OsStr],
) -> Proc {
    let child = Command::new(sluice())
        .args(["collector", "--commit-interval", "300ms", "--data-dir"])
        .arg(data_dir)
        .args(["--listen", &format!("127.0.0.1:{http_port}")])
        .args(["--grpc-listen", &format!("127.0.0.1:{grpc_port}")])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(log_file(&data_dir.join("logs"), "collector"))
        .spawn()
        .expect("sluice collector starts");
    let mut proc = Proc { child, name: "sluice collector" };
    wait_until(Duration::from_secs(20), "collector answers /healthz", || {
        assert!(proc.is_running(), "collector exited; see {}/logs", data_dir.display());
        http_get(&format!("http://127.0.0.1:{http_port}/healthz")).is_some()
    });
    proc
}

/// `write_agent_config` with more YAML appended (`select:`, `redact:`, ...).
pub fn write_agent_config_with(
    dir: &Path,
    grpc_port: u16,
    watch: &[String],
    extra: &str,
) -> PathBuf {
    let path = write_agent_config(dir, grpc_port, watch);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(extra);
    std::fs::write(&path, text).unwrap();
    path
}

pub fn write_agent_config(dir: &Path, grpc_port: u16, watch: &[String]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("agent.yaml");
    let watch: Vec<String> = watch.iter().map(|w| format!("  - '{w}'")).collect();
    std::fs::write(
        &path,
        format!(
            "collector: http://127.0.0.1:{grpc_port}\ndata_dir: {}\nnode: test-node\nbatch_linger_ms: 50\nwatch:\n{}\n",
            dir.join("state").display(),
            watch.join("\n")
        ),
    )
    .unwrap();
    path
}

pub fn start_agent(config: &Path, log_dir: &Path) -> Proc {
    start_agent_with(config, log_dir, &[])
}

/// `start_agent` with more flags, such as `--watch-config`.
pub fn start_agent_with(config: &Path, log_dir: &Path, flags: &[&str]) -> Proc {
    let child = Command::new(sluice_agent())
        .arg("--config")
        .arg(config)
        .args(flags)
        .stdout(Stdio::null())
        .stderr(log_file(log_dir, "agent"))
        .spawn()
        .expect("sluice-agent starts");
    Proc { child, name: "sluice-agent" }
}

pub fn http_get(url: &str) -> Option<String> {
    let response =
        reqwest::blocking::Client::new().get(url).timeout(Duration::from_secs(10)).send().ok()?;
    response.status().is_success().then(|| response.text().ok()).flatten()
}

#[derive(Debug, Deserialize)]
pub struct Hit {
    pub ts: String,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub stream: String,
    pub level: String,
    pub file: String,
    pub message: String,
    pub id: String,
    #[serde(default)]
    pub flags: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct SearchResponse {
    pub hits: Vec<Hit>,
    pub total: u64,
}

/// `GET /api/v1/search`; panics with the server's message on an error status.
pub fn search(base: &str, query: &str, limit: usize) -> SearchResponse {
    let response = reqwest::blocking::Client::new()
        .get(format!("{base}/api/v1/search"))
        .query(&[("q", query), ("limit", &limit.to_string())])
        .timeout(Duration::from_secs(30))
        .send()
        .expect("search request");
    let status = response.status();
    let body = response.text().unwrap();
    assert!(status.is_success(), "search {query:?}: {status}: {body}");
    serde_json::from_str(&body).unwrap()
}

pub fn total(base: &str, query: &str) -> u64 {
    search(base, query, 0).total
}

/// A Prometheus counter or gauge value from `/metrics` (0 when absent).
pub fn metric(base: &str, name: &str) -> f64 {
    http_get(&format!("{base}/metrics"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .and_then(|v| v.strip_prefix(' '))
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0.0)
}

pub fn wait_until(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn shared_testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata")
}

/// The records a file should produce, computed here independently of the agent's code:
/// complete lines only (an unterminated last line waits for its newline, as `wc -l` does
/// not count it), CRLF stripped, CRI parts merged per stream.
pub fn expected_messages(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    lines.pop();
    let lines = lines.into_iter().map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let is_cri = path.to_string_lossy().contains(".cri.");
    if !is_cri {
        return lines.map(|l| String::from_utf8_lossy(l).into_owned()).collect();
    }
    let mut open: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let mut out = Vec::new();
    for line in lines {
        let parts: Vec<&[u8]> = line.splitn(4, |&b| b == b' ').collect();
        let (stream, tag, text) = (parts[1], parts[2], parts.get(3).copied().unwrap_or_default());
        let buffer = open.entry(stream.to_vec()).or_default();
        buffer.extend_from_slice(text);
        if tag == b"F" {
            out.push(String::from_utf8(std::mem::take(buffer)).unwrap());
        }
    }
    out
}

/// Copies the shared test data into `dir` and returns (path, expected messages) per file.
pub fn copy_testdata(dir: &Path) -> Vec<(PathBuf, Vec<String>)> {
    std::fs::create_dir_all(dir).unwrap();
    let mut files = Vec::new();
    for sub in ["loghub", "zh"] {
        for entry in std::fs::read_dir(shared_testdata().join(sub)).unwrap() {
            let src = entry.unwrap().path();
            if src.extension().is_some_and(|e| e == "log") {
                let dst = dir.join(src.file_name().unwrap());
                std::fs::copy(&src, &dst).unwrap();
                let expected = expected_messages(&dst);
                files.push((dst, expected));
            }
        }
    }
    files.sort();
    assert_eq!(files.len(), 10, "the shared test data has 8 Loghub and 2 Chinese logs");
    files
}

/// Every hit of a file, checked to be there exactly once.
pub fn assert_file_exactly_once(base: &str, path: &Path, expected: &[String]) {
    let query = format!("file:\"{}\"", path.display());
    let response = search(base, &query, 10_000);
    let name = path.file_name().unwrap().to_string_lossy();
    assert_eq!(response.total as usize, expected.len(), "{name}: hits vs lines");
    let mut ids: Vec<&str> = response.hits.iter().map(|h| h.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), expected.len(), "{name}: distinct ids");
    let mut got: Vec<&str> = response.hits.iter().map(|h| h.message.as_str()).collect();
    let mut want: Vec<&str> = expected.iter().map(String::as_str).collect();
    got.sort_unstable();
    want.sort_unstable();
    if got != want {
        let missing: Vec<_> = want.iter().filter(|w| !got.contains(w)).take(3).collect();
        panic!("{name}: messages differ; first missing: {missing:?}");
    }
}

/// The highest offset the agent in `dir` has had acknowledged (0 before any ack).
pub fn acked_offset(dir: &Path) -> u64 {
    let Ok(text) = std::fs::read_to_string(dir.join("state/checkpoints.json")) else { return 0 };
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["files"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(|e| e["acked"].as_u64())
        .max()
        .unwrap_or(0)
}

/// `words` × 16 pseudo-random hex digits from `seed`: text that zstd cannot squeeze much, so
/// a few MiB of lines fill a small spool.
pub fn noise_hex(seed: u64, words: usize) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..words)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!("{x:016x}")
        })
        .collect()
}

/// CRI lines `first..first + n` of a namespace, their times spread over two hours from
/// 2026-11-30T10:00Z as if `spread` lines were written in all; every tenth is an ERROR with
/// `支付超时`, two in ten are WARN, the rest INFO. The message is `<LEVEL> <ns> line <i> …`.
pub fn cri_lines(ns: &str, n: usize, first: usize, spread: usize) -> String {
    let mut out = String::new();
    for i in first..first + n {
        let secs = 36_000 + (i * 7_200 / spread.max(1)).min(7_199);
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        let (level, text) = match i % 10 {
            0 => ("ERROR", "支付超时 payment timeout"),
            1 | 2 => ("WARN", "slow query"),
            _ => ("INFO", "request ok"),
        };
        out.push_str(&format!(
            "2026-11-30T{h:02}:{m:02}:{s:02}.{i:09}Z stdout F {level} {ns} line {i} {text}\n"
        ));
    }
    out
}

/// The admin's and the dev team's tokens in [`write_users`].
pub const ADMIN_TOKEN: &str = "ops-admin-token-0123456789";
pub const DEV_TOKEN: &str = "dev-team-token-0123456789";

/// A `--users` file: `ops` (admin) and `dev` (namespace `dev` only).
pub fn write_users(dir: &Path) -> PathBuf {
    let users = dir.join("users.yaml");
    std::fs::write(
        &users,
        format!(
            "users:\n  - name: ops\n    token: {ADMIN_TOKEN}\n    admin: true\n  - name: dev\n    token: {DEV_TOKEN}\n    namespaces: [dev]\n"
        ),
    )
    .unwrap();
    users
}

/// Two pods' CRI files under `<dir>/var/log/pods`: `prod/pay-1` with lines `0..prod` and
/// `dev/pay-2` with the next `dev`; returns both paths and the glob that watches them.
pub fn two_namespaces(dir: &Path, prod: usize, dev: usize) -> (PathBuf, PathBuf, String) {
    let pods = dir.join("var/log/pods");
    let prod_file = pods.join("prod_pay-1_u1/app/0.log");
    let dev_file = pods.join("dev_pay-2_u2/app/0.log");
    for (file, ns, n, first) in [(&prod_file, "prod", prod, 0), (&dev_file, "dev", dev, prod)] {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, cri_lines(ns, n, first, prod + dev)).unwrap();
    }
    (prod_file, dev_file, format!("{}/*/*/*.log", pods.display()))
}

/// Appends `text` to the file at `path`, as a logging application does.
pub fn append(path: &Path, text: &str) {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

/// A Prometheus on `port` with `config` (written to the directory), its data under `dir`.
pub fn start_prometheus(dir: &std::path::Path, port: u16, config: &str) -> Proc {
    start_prometheus_with(dir, port, config, &[])
}

/// `start_prometheus` with more flags, such as `--web.enable-remote-write-receiver`.
pub fn start_prometheus_with(
    dir: &std::path::Path,
    port: u16,
    config: &str,
    extra: &[&str],
) -> Proc {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("prometheus.yml");
    std::fs::write(&path, config).unwrap();
    Proc {
        child: Command::new(test_servers_tool("PROMETHEUS_BIN", "prometheus"))
            .arg(format!("--config.file={}", path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--rules.alert.resend-delay=1s")
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log_file(dir, "prometheus"))
            .spawn()
            .expect("prometheus starts"),
        name: "prometheus",
    }
}
