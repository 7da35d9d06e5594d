//! The example queries README.md and `scripts/up` show find records in the demo's data: the
//! demo logs as `scripts/up` writes them (`sluice-bench generate`), indexed by a real `sluice
//! up`, and every example query of a `sluice search` or `curl …/api/v1/search?q=` line asked
//! through the search API.

mod common;

use std::time::Duration;

use common::*;

/// The quoted query of each `sluice search` line, and the `q=` of each search URL.
fn example_queries(text: &str, origin: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.contains("sluice search")
            && let Some(query) = line.split('\'').nth(1)
        {
            out.push((query.to_owned(), format!("{origin}: {}", line.trim())));
        }
        if let Some(at) = line.find("/api/v1/search?") {
            let url = line[at..].split(['\'', ' ', '`']).next().unwrap();
            let parsed = reqwest::Url::parse(&format!("http://x{url}")).unwrap();
            if let Some((_, q)) = parsed.query_pairs().find(|(k, _)| k == "q") {
                out.push((q.into_owned(), format!("{origin}: {}", line.trim())));
            }
        }
    }
    out
}

#[test]
fn the_readme_and_demo_example_queries_find_records_in_the_demo_data() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut examples =
        example_queries(&std::fs::read_to_string(root.join("README.md")).unwrap(), "README.md");
    examples.extend(example_queries(
        &std::fs::read_to_string(root.join("scripts/up")).unwrap(),
        "scripts/up",
    ));
    assert!(examples.len() >= 5, "{examples:?}");

    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let generated = std::process::Command::new(sluice_bench())
        .args(["generate", "--mib", "4", "--out"])
        .arg(&logs)
        .arg("--testdata")
        .arg(shared_testdata())
        .output()
        .unwrap();
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
    let (_up, base) = start_up(&dir.path().join("data"), &[format!("{}/**/*.log", logs.display())]);
    let mut last = 0;
    wait_until(Duration::from_secs(120), "the demo logs are indexed", || {
        let now = total(&base, "");
        let settled = now > 0 && now == last;
        last = now;
        std::thread::sleep(Duration::from_millis(500));
        settled
    });
    let empty: Vec<&(String, String)> =
        examples.iter().filter(|(q, _)| total(&base, q) == 0).collect();
    assert!(empty.is_empty(), "examples that find nothing in the demo data: {empty:#?}");
}
