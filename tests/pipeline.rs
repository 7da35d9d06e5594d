//! The whole path as a user runs it: `sluice up` tails the shared test data, and every line
//! is searchable exactly once. Real binaries, real files, real HTTP; nothing mocked.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;

fn indexed_testdata() -> (tempfile::TempDir, Proc, String, Vec<(std::path::PathBuf, Vec<String>)>) {
    let dir = tempfile::tempdir().unwrap();
    let files = copy_testdata(&dir.path().join("logs"));
    let expected_total: usize = files.iter().map(|(_, e)| e.len()).sum();
    let watch = format!("{}/logs/*.log", dir.path().display());
    let (proc, base) = start_up(&dir.path().join("data"), &[watch]);
    wait_until(Duration::from_secs(120), "every test-data line is indexed", || {
        total(&base, "") as usize >= expected_total
    });
    (dir, proc, base, files)
}

#[test]
fn every_testdata_line_is_searchable_exactly_once() {
    let (_dir, mut proc, base, files) = indexed_testdata();
    for (path, expected) in &files {
        assert_file_exactly_once(&base, path, expected);
    }
    // CRI parts were merged: the CRI file has more lines than records.
    let (cri, merged) = files.iter().find(|(p, _)| p.to_string_lossy().contains(".cri.")).unwrap();
    let raw_lines = std::fs::read(cri).unwrap().iter().filter(|&&b| b == b'\n').count();
    assert!(merged.len() < raw_lines, "{} records from {raw_lines} CRI lines", merged.len());
    let hit = &search(&base, &format!("file:\"{}\"", cri.display()), 1).hits[0];
    assert!(hit.stream == "stdout" || hit.stream == "stderr", "{hit:?}");
    assert!(hit.ts.starts_with("2026-11-23T"), "CRI time kept: {hit:?}");
    // Nothing indexed twice anywhere.
    let total_expected: usize = files.iter().map(|(_, e)| e.len()).sum();
    assert_eq!(total(&base, "") as usize, total_expected);
    assert!(proc.is_running());
}

/// For 50 Chinese substrings and 50 English words from the test data, the hit count equals
/// the exact count: for Chinese, the records `grep -F` would match; for English words, the
/// records holding that alphanumeric run, case-insensitively.
#[test]
fn recall_is_exact_for_chinese_substrings_and_english_words() {
    let (_dir, _proc, base, files) = indexed_testdata();
    let records: Vec<&str> = files.iter().flat_map(|(_, e)| e.iter().map(String::as_str)).collect();

    let is_han = |c: char| ('\u{4e00}'..='\u{9fff}').contains(&c);
    let mut chinese = BTreeSet::new();
    for record in &records {
        let chars: Vec<char> = record.chars().collect();
        for run in chars.split(|c| !is_han(*c)).filter(|r| r.len() >= 2) {
            for len in 2..=run.len().min(6) {
                for start in (0..=run.len() - len).step_by(2) {
                    chinese.insert(run[start..start + len].iter().collect::<String>());
                }
            }
        }
    }
    let words_of = |record: &str| -> BTreeSet<String> {
        record
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_ascii_lowercase)
            .collect()
    };
    let mut english = BTreeSet::new();
    for (path, expected) in &files {
        if path.to_string_lossy().contains("_2k") {
            for record in expected {
                english
                    .extend(words_of(record).into_iter().filter(|w| (3..=24).contains(&w.len())));
            }
        }
    }
    let pick = |set: &BTreeSet<String>| -> Vec<String> {
        let all: Vec<&String> = set.iter().collect();
        assert!(all.len() >= 50, "only {} candidates", all.len());
        (0..50).map(|i| all[i * all.len() / 50].clone()).collect()
    };
    let mut wrong = Vec::new();
    for substring in pick(&chinese) {
        let want = records.iter().filter(|r| r.contains(substring.as_str())).count() as u64;
        let got = total(&base, &substring);
        if got != want {
            wrong.push(format!("{substring}: {got} hits, grep -F finds {want}"));
        }
    }
    let record_words: Vec<BTreeSet<String>> = records.iter().map(|r| words_of(r)).collect();
    for word in pick(&english) {
        let want = record_words.iter().filter(|w| w.contains(&word)).count() as u64;
        let got = total(&base, &word);
        if got != want {
            wrong.push(format!("{word}: {got} hits, {want} records hold it"));
        }
    }
    assert!(
        wrong.is_empty(),
        "recall is off for {} of 100 terms:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn the_cli_searches_a_data_dir_and_a_server() {
    let (dir, _proc, base, files) = indexed_testdata();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(sluice()).arg("search").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "sluice search {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let data_dir = dir.path().join("data");
    let data_dir = data_dir.to_str().unwrap();
    let want = total(&base, "订单创建失败 AND level:error");
    assert!(want > 0);
    let local = run(&["--data-dir", data_dir, "订单创建失败 AND level:error", "--limit", "1000"]);
    assert_eq!(local.lines().count() as u64, want);
    assert!(local.lines().all(|l| l.contains("订单创建失败") && l.contains(" error ")), "{local}");
    // The CRI records carry the runtime's times and the plain file's lines their own stamps,
    // all of 2026-11-23 (the plain ones in the machine's zone, whatever it is): a range
    // around that day finds them all, the last two hours none.
    let (plain, _) = files.iter().find(|(p, _)| p.ends_with("java_zh.log")).unwrap();
    let plain_want =
        total(&base, &format!("订单创建失败 AND level:error file:\"{}\"", plain.display()));
    assert!(0 < plain_want && plain_want < want, "{plain_want} of {want}");
    let since = run(&["--data-dir", data_dir, "订单创建失败", "--since", "2h", "--limit", "1000"]);
    assert_eq!(since.lines().count(), 0, "{since}");
    let day = run(&[
        "--data-dir",
        data_dir,
        "订单创建失败 AND level:error",
        "--start",
        "2026-11-22T12:00:00Z",
        "--end",
        "2026-11-24T12:00:00Z",
        "--limit",
        "1000",
    ]);
    assert_eq!(day.lines().count() as u64, want);
    let remote = run(&["--server", &base, "db timeout", "--json"]);
    let response: serde_json::Value = serde_json::from_str(&remote).unwrap();
    assert_eq!(response["total"].as_u64().unwrap(), total(&base, "db timeout"));
    assert!(response["hits"][0]["message"].as_str().unwrap().to_lowercase().contains("timeout"));
    let bad = std::process::Command::new(sluice())
        .args(["search", "--server", &base, "(unclosed"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("never closed"));
}
