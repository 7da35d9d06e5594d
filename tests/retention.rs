//! Retention and the scan budget against a real `sluice up`: records of a day beyond
//! `--retention` are dropped as a whole partition (counted exactly), also when more arrive
//! later, today's stay, and `--query-budget` refuses an unselective scan unless `force=true`.

mod common;

use std::time::Duration;

use common::*;

fn cri_at(day: &str, tag: &str, n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{day}T10:{:02}:{:02}.{i:09}Z stdout F INFO {tag} line {i}\n",
                i / 60 % 60,
                i % 60
            )
        })
        .collect()
}

#[test]
fn old_days_are_dropped_whole_and_broad_scans_need_force() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let old = (chrono::Utc::now() - chrono::Duration::days(10)).format("%Y-%m-%d").to_string();
    std::fs::write(logs.join("old.log"), cri_at(&old, "old", 700)).unwrap();
    std::fs::write(logs.join("new.log"), cri_at(&today, "new", 500)).unwrap();
    let data = dir.path().join("data");
    let (_up, base) = start_up_with(
        &data,
        &[format!("{}/*.log", logs.display())],
        &[
            "--retention".as_ref(),
            "2d".as_ref(),
            "--housekeeping-interval".as_ref(),
            "1s".as_ref(),
            "--query-budget".as_ref(),
            "1KiB".as_ref(),
        ],
    );
    let client = reqwest::blocking::Client::new();
    let count = |q: &str, force: bool| -> (u16, serde_json::Value) {
        let mut query = vec![("q", q), ("limit", "0")];
        if force {
            query.push(("force", "true"));
        }
        let r = client.get(format!("{base}/api/v1/search")).query(&query).send().unwrap();
        (r.status().as_u16(), r.json().unwrap())
    };
    wait_until(Duration::from_secs(60), "today's lines are in and the old day is gone", || {
        count("new", false).1["total"] == 500
            && count("old", false).1["total"] == 0
            && metric(&base, "sluice_index_docs_dropped_total{reason=\"age\"}") >= 700.0
    });
    assert_eq!(metric(&base, "sluice_index_docs_dropped_total{reason=\"age\"}"), 700.0);
    let index = data.join("index");
    assert!(!index.join(format!("p-{old}")).exists(), "the old partition's files are deleted");
    assert!(index.join(format!("p-{today}")).exists());
    let manifest = std::fs::read_to_string(index.join("manifest.json")).unwrap();
    assert!(!manifest.contains(&old), "{manifest}");

    // A late batch for the old day (an agent's backlog) goes the same way.
    std::fs::OpenOptions::new()
        .append(true)
        .open(logs.join("old.log"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, cri_at(&old, "late", 50).as_bytes()))
        .unwrap();
    wait_until(Duration::from_secs(60), "the late lines are dropped too", || {
        metric(&base, "sluice_index_docs_dropped_total{reason=\"age\"}") >= 750.0
    });
    assert_eq!(count("late", false).1["total"], 0);
    assert_eq!(count("new", false).1["total"], 500);

    // The budget: a query with nothing to look up reads the whole range; refused, then forced.
    let (status, body) = count("", false);
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("force=true"), "{body}");
    let (status, body) = count("NOT new", false);
    assert_eq!(status, 400, "{body}");
    let (status, body) = count("", true);
    assert_eq!((status, body["total"].as_u64()), (200, Some(500)));
    let h = client.get(format!("{base}/api/v1/histogram")).query(&[("q", "")]).send().unwrap();
    assert_eq!(h.status().as_u16(), 400);
}
