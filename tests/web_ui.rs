//! The search page in a real browser: Debian's Chromium driven by playwright-core
//! (`query/web/tests/ui.mjs`) against a real `sluice up` with users, over real indexed CRI
//! logs. Types a Chinese query, checks counts, highlights and the histogram, opens a shared
//! URL, clicks a facet, opens a hit's context, toggles the live tail and sees a new line
//! arrive, exports, zooms by dragging on the histogram, and checks that a dev token sees no
//! prod data. Screenshots go to `artifacts/web/`. `scripts/test` installs Chromium and the
//! npm packages; without them this test fails, it never skips.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;

const ADMIN: &str = ADMIN_TOKEN;
const DEV: &str = DEV_TOKEN;
const PROD_LINES: usize = 2_000;
const DEV_LINES: usize = 1_000;

#[test]
fn the_search_page_works_in_chromium() {
    let web = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("query/web");
    assert!(
        web.join("node_modules/playwright-core").is_dir(),
        "run `npm ci` in query/web (scripts/test does) to get playwright-core"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(
        PathBuf::from(&chromium).exists(),
        "{chromium} is missing: install Debian's chromium (scripts/test does)"
    );

    let dir = tempfile::tempdir().unwrap();
    let (_prod, dev, watch) = two_namespaces(dir.path(), PROD_LINES, DEV_LINES);
    let users = write_users(dir.path());
    let all = PROD_LINES + DEV_LINES;
    let (_up, base) =
        start_up_with(&dir.path().join("data"), &[watch], &["--users".as_ref(), users.as_os_str()]);
    wait_until(Duration::from_secs(60), "every line is searchable", || {
        let response = reqwest::blocking::Client::new()
            .get(format!("{base}/api/v1/search"))
            .query(&[("q", ""), ("limit", "0")])
            .bearer_auth(ADMIN)
            .send()
            .unwrap();
        response.json::<serde_json::Value>().unwrap()["total"] == all as u64
    });

    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("artifacts/web");
    let out = Command::new("node")
        .arg(web.join("tests/ui.mjs"))
        .current_dir(&web)
        .env("SLUICE_URL", &base)
        .env("ADMIN_TOKEN", ADMIN)
        .env("DEV_TOKEN", DEV)
        .env("PROD_LINES", PROD_LINES.to_string())
        .env("DEV_LINES", DEV_LINES.to_string())
        .env("DEV_FILE", &dev)
        .env("CHROMIUM", &chromium)
        .env("SLUICE_ARTIFACTS", &artifacts)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "browser test failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("dev sees its"), "the script ran to its end:\n{stdout}");
    println!("screenshots in {}", artifacts.display());
}
