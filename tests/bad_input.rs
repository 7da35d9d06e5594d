//! Bad input gets flagged, never takes a process down, and costs no other line: NUL bytes,
//! invalid UTF-8, a 10 MB line, CRLF, a truncated CRI line, a directory named like a log.
//! Also: a wrong config key is an error that names the key and the file.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;

#[test]
fn bad_lines_are_flagged_and_every_other_line_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(logs.join("dir.log")).unwrap();
    let mut plain = std::fs::File::create(logs.join("bad.log")).unwrap();
    plain.write_all(b"good one\n").unwrap();
    plain.write_all(b"nul\0in\0the middle\n").unwrap();
    plain.write_all(b"invalid \xff\xfe utf8\n").unwrap();
    plain.write_all(&vec![b'x'; 10 << 20]).unwrap();
    plain.write_all(b"\ngood two\r\ngood three\n").unwrap();
    let mut cri = std::fs::File::create(logs.join("bad.cri.log")).unwrap();
    cri.write_all(
        b"2026-11-24T01:00:00.000000001Z stdout F cri one\n\
          2026-11-24T01:00:00.000000002Z stdout\n\
          2026-11-24T01:00:00.000000003Z stderr P cri two \xe8\xae\n\
          2026-11-24T01:00:00.000000004Z stderr F \xa2\xe5\x8d\x95 merged\n\
          2026-11-24T01:00:00.000000005Z stdout F cri three\n",
    )
    .unwrap();
    drop((plain, cri));

    let (mut up, base) = start_up(&dir.path().join("data"), &[format!("{}/*.log", logs.display())]);
    wait_until(Duration::from_secs(60), "all 10 records are indexed", || total(&base, "") >= 10);
    std::thread::sleep(Duration::from_millis(800));
    assert!(up.is_running(), "sluice up must survive bad input");
    assert_eq!(total(&base, ""), 10);

    let one = |q: &str| {
        let r = search(&base, q, 10);
        assert_eq!(r.total, 1, "{q}: {:?}", r.hits);
        r.hits.into_iter().next().unwrap()
    };
    for good in ["\"good one\"", "\"good two\"", "\"good three\"", "\"cri one\"", "\"cri three\""] {
        assert!(one(good).flags.is_empty());
    }
    assert_eq!(one("\"good two\"").message, "good two", "CRLF stripped");
    let nul = one("nulinthe");
    assert_eq!(
        (nul.message.as_str(), nul.flags.clone()),
        ("nulinthe middle", vec!["nul_removed".to_owned()])
    );
    let invalid = one("invalid");
    assert_eq!(invalid.message, "invalid \u{fffd}\u{fffd} utf8");
    assert_eq!(invalid.flags, ["invalid_utf8"]);
    let huge = search(&base, "NOT good NOT cri NOT invalid NOT nulinthe", 10);
    let huge =
        huge.hits.iter().find(|h| h.message.starts_with("xxx")).expect("the 10 MB line is there");
    assert_eq!(huge.message.len(), 256 * 1024);
    assert_eq!(huge.flags, ["truncated"]);
    let torn = one("\"2026 11 24T01\"");
    assert_eq!(torn.flags, ["cri_malformed"]);
    // A split UTF-8 character across P/F parts is whole again after the merge.
    let merged = one("订单");
    assert_eq!(
        (merged.message.as_str(), merged.stream.as_str()),
        ("cri two 订单 merged", "stderr")
    );
}

#[test]
fn a_wrong_config_key_names_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.yaml");
    std::fs::write(
        &path,
        "collector: http://127.0.0.1:1\ndata_dir: /tmp/x\nwatch: ['*.log']\nbatch_max_byte: 10\n",
    )
    .unwrap();
    let out =
        std::process::Command::new(sluice_agent()).arg("--config").arg(&path).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("batch_max_byte") && stderr.contains(&*path.to_string_lossy()),
        "{stderr}"
    );

    std::fs::write(&path, "collector: http://127.0.0.1:1\ndata_dir: /tmp/x\nwatch: ['*.log']\n")
        .unwrap();
    let out = std::process::Command::new(sluice_agent())
        .args(["--validate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Binary garbage (long runs without a newline, NULs, invalid UTF-8) and a large file cut to
/// zero while the agent is partway through it: nothing stops, the lines after both arrive.
#[test]
fn garbage_and_a_truncation_mid_read_cost_no_other_line() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let garbage: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let garbage_lines = garbage.iter().filter(|&&b| b == b'\n').count() as u64;
    let mut binary = std::fs::File::create(logs.join("binary.log")).unwrap();
    binary.write_all(&garbage).unwrap();
    binary.write_all(b"\nafter garbage line\n").unwrap();
    drop(binary);
    let big = logs.join("big.log");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
    for i in 0..300_000 {
        writeln!(file, "INFO before the cut {i} {}", "x".repeat(40)).unwrap();
    }
    drop(file);

    let (mut up, base) = start_up(&dir.path().join("data"), &[format!("{}/*.log", logs.display())]);
    wait_until(Duration::from_secs(60), "the agent is partway through the big file", || {
        total(&base, "before") > 0
    });
    std::fs::File::create(&big).unwrap();
    let mut file = std::fs::OpenOptions::new().append(true).open(&big).unwrap();
    for i in 0..100 {
        writeln!(file, "INFO after the cut {i}").unwrap();
    }
    drop(file);
    wait_until(Duration::from_secs(60), "the lines after the cut and the garbage arrive", || {
        total(&base, "after AND cut") >= 100 && total(&base, "\"after garbage line\"") >= 1
    });
    std::thread::sleep(Duration::from_millis(800));
    assert!(up.is_running(), "sluice up must survive garbage and truncation");
    assert_eq!(total(&base, "after AND cut"), 100);
    assert_eq!(total(&base, "\"after garbage line\""), 1);
    let before = total(&base, "before");
    assert!(before <= 300_000, "{before}");
    let hits = search(&base, "NOT before NOT cut", 10_000).hits;
    let from_binary: Vec<&Hit> = hits.iter().filter(|h| h.file.ends_with("binary.log")).collect();
    println!(
        "garbage: {garbage_lines} newlines; {} records from the binary file; {before} lines before the cut",
        from_binary.len()
    );
    assert_eq!(from_binary.len() as u64, garbage_lines + 2, "every garbage line, and the good one");
    assert!(from_binary.iter().any(|h| h.flags.contains(&"invalid_utf8".to_owned())));
}

/// A container that dies mid-line leaves `P` parts with no `F`: once the file is read to its
/// end and a few seconds pass, the record is sent as it is, flagged `partial`, and what the
/// file gets later arrives on its own.
#[test]
fn cri_parts_without_their_final_part_are_sent_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let pod = dir.path().join("logs/pods/shop_api-1_u1/app");
    std::fs::create_dir_all(&pod).unwrap();
    let log = pod.join("0.log");
    std::fs::write(
        &log,
        "2026-12-01T01:00:00.000000001Z stdout F before the crash\n\
         2026-12-01T01:00:00.000000002Z stdout P half of a line \n\
         2026-12-01T01:00:00.000000003Z stdout P and more\n",
    )
    .unwrap();
    let watch = format!("{}/logs/pods/*/*/*.log", dir.path().display());
    let (mut up, base) = start_up(&dir.path().join("data"), &[watch]);
    wait_until(Duration::from_secs(30), "the complete line arrives", || {
        total(&base, "before") == 1
    });
    wait_until(Duration::from_secs(30), "the partial record arrives after its timeout", || {
        total(&base, "half") == 1
    });
    let partial = search(&base, "half", 10).hits.remove(0);
    assert_eq!(partial.message, "half of a line and more");
    assert_eq!(partial.flags, ["partial"]);
    let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    writeln!(file, "2026-12-01T01:00:10.000000001Z stdout F after the restart").unwrap();
    drop(file);
    wait_until(Duration::from_secs(30), "the next line arrives on its own", || {
        total(&base, "restart") == 1
    });
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(search(&base, "restart", 10).hits[0].message, "after the restart");
    assert_eq!(total(&base, ""), 3);
    assert!(up.is_running());
}
