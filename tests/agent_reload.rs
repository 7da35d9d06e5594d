//! SIGHUP reloads `agent.yaml` without losing or repeating a line: an invalid file is refused
//! and the running config kept; a valid one takes effect (a new watch pattern, redaction).
//! Real `sluice-agent` and `sluice collector` processes on loopback.

mod common;

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use common::*;

fn hangup(agent: &Proc) {
    let status = Command::new("kill").args(["-HUP", &agent.pid().to_string()]).status().unwrap();
    assert!(status.success());
}

#[test]
fn sighup_reloads_the_config_and_keeps_every_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_collector, grpc, base) = start_test_collector(&dir.path().join("collector"));

    let a = dir.path().join("a/app.log");
    let b = dir.path().join("b/other.log");
    for path in [&a, &b] {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    }
    let mut a_lines: Vec<String> = (0..10).map(|i| format!("INFO first file line {i}")).collect();
    std::fs::write(&a, a_lines.join("\n") + "\n").unwrap();
    std::fs::write(&b, "INFO second file, phone 13812345678\n").unwrap();

    let agent_dir = dir.path().join("agent");
    let config = write_agent_config(&agent_dir, grpc, &[a.display().to_string()]);
    let original = std::fs::read_to_string(&config).unwrap();
    let agent = start_agent(&config, &agent_dir);
    wait_until(Duration::from_secs(30), "the first file arrives", || total(&base, "first") >= 10);

    std::fs::write(&config, original.clone() + "watch_everything: true\n").unwrap();
    hangup(&agent);
    let log = agent_dir.join("agent.log");
    wait_until(Duration::from_secs(10), "the invalid config is refused", || {
        std::fs::read_to_string(&log).unwrap().contains("reload refused")
    });
    assert!(std::fs::read_to_string(&log).unwrap().contains("watch_everything"));
    let mut file = std::fs::OpenOptions::new().append(true).open(&a).unwrap();
    for i in 10..15 {
        let line = format!("INFO first file line {i}");
        writeln!(file, "{line}").unwrap();
        a_lines.push(line);
    }
    wait_until(Duration::from_secs(30), "the old config still ships", || {
        total(&base, "first") >= 15
    });

    let reloaded = original.replace(
        "watch:\n",
        &format!("redact:\n  builtin: [cn_mobile]\nwatch:\n  - '{}'\n", b.display()),
    );
    std::fs::write(&config, reloaded).unwrap();
    hangup(&agent);
    wait_until(Duration::from_secs(30), "the new pattern's file arrives", || {
        total(&base, "second") >= 1
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert_file_exactly_once(&base, &a, &a_lines);
    assert_file_exactly_once(&base, &b, &["INFO second file, phone 138****5678".to_owned()]);
    let mut agent = agent;
    assert!(agent.is_running());
    assert!(std::fs::read_to_string(&log).unwrap().contains("config reloaded"));
}

/// With `--watch-config`, writing the file is enough, as when Kubernetes updates a mounted
/// ConfigMap: an invalid version is refused, a valid one takes effect, every line once.
#[test]
fn a_changed_config_file_is_reloaded_without_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    let (_collector, grpc, base) = start_test_collector(&dir.path().join("collector"));
    let a = dir.path().join("a/app.log");
    let b = dir.path().join("b/other.log");
    for path in [&a, &b] {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    }
    std::fs::write(&a, "INFO watched first\n").unwrap();
    std::fs::write(&b, "INFO watched second\n").unwrap();
    let agent_dir = dir.path().join("agent");
    let config = write_agent_config(&agent_dir, grpc, &[a.display().to_string()]);
    let original = std::fs::read_to_string(&config).unwrap();
    let mut agent = start_agent_with(&config, &agent_dir, &["--watch-config"]);
    wait_until(Duration::from_secs(30), "the first file arrives", || total(&base, "watched") >= 1);
    let log = agent_dir.join("agent.log");
    // Replaced as editors and ConfigMaps do: written aside, renamed over.
    let replace = |text: &str| {
        let aside = agent_dir.join(".agent.yaml.new");
        std::fs::write(&aside, text).unwrap();
        std::fs::rename(&aside, &config).unwrap();
    };
    replace(&(original.clone() + "watch_everything: true\n"));
    wait_until(Duration::from_secs(10), "the invalid change is refused", || {
        std::fs::read_to_string(&log).unwrap().contains("reload refused")
    });
    replace(&original.replace("watch:\n", &format!("watch:\n  - '{}'\n", b.display())));
    wait_until(Duration::from_secs(30), "the new pattern's file arrives", || {
        total(&base, "watched") >= 2
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert_file_exactly_once(&base, &a, &["INFO watched first".to_owned()]);
    assert_file_exactly_once(&base, &b, &["INFO watched second".to_owned()]);
    assert!(agent.is_running());
    assert!(std::fs::read_to_string(&log).unwrap().contains("config reloaded"));
}
