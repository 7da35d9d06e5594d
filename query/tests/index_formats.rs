//! Upgrades keep data: every index format this release can open has a fixture here, written
//! by an earlier release from fixed input, and must still open, search and take new records
//! exactly once.
//!
//! `SLUICE_WRITE_INDEX_FIXTURE=1 cargo test -p sluice-query --test index_formats -- --ignored`
//! writes the fixture of the current format (`fixtures/index-v<FORMAT_VERSION>`); commit it
//! with the change that introduces the format, and never rewrite an older one.

use std::fs;
use std::path::{Path, PathBuf};

use sluice_proto::id::source_key;
use sluice_proto::{KubeEvent, LogRecord, Stream};
use sluice_query::retention::RetentionPolicy;
use sluice_query::store::{Added, FORMAT_VERSION, READABLE_VERSIONS};
use sluice_query::{SearchRequest, Store, StoreWriter};

/// 2025-11-23T00:00:00Z: the fixture's records fall on this day and the next.
const DAY0_NS: i64 = 1_763_856_000_000_000_000;
const HOUR_NS: i64 = 3_600_000_000_000;
const RECORDS: usize = 240;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The fixed input: the first lines of the shared Chinese Java log, spread over two days,
/// two namespaces and two sources, with the level each line starts with.
fn input() -> Vec<LogRecord> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/zh/java_zh.log");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .take(RECORDS)
        .enumerate()
        .map(|(i, line)| {
            let namespace = if i % 3 == 0 { "prod" } else { "dev" };
            let source = source_key(&format!("c1/{namespace}/api/app"), 1);
            LogRecord {
                source,
                offset: i as u64 * 1000,
                timestamp_ns: DAY0_NS + (i as i64) * (HOUR_NS / 5),
                cluster: "c1".to_owned(),
                namespace: namespace.to_owned(),
                pod: "api-0".to_owned(),
                container: "app".to_owned(),
                level: sluice_proto::level::canonical(line.split_whitespace().nth(2).unwrap_or(""))
                    .unwrap_or_default()
                    .to_owned(),
                message: line.to_owned(),
                ..LogRecord::default()
            }
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn total(store: &Store, query: &str) -> u64 {
    store.search(&SearchRequest::new(query)).unwrap().total
}

/// Texts whose count must equal grep's on any mix of formats: CJK runs of one, two and more
/// characters, a run beside a word, and a run with words around it.
const TEXTS: [&str; 8] = [
    "订单创建成功",
    "订",
    "功",
    "订单",
    "资源调度完成",
    "成功 orderId",
    "耗时24352ms",
    "调度完成 region=cn-beijing",
];

/// Each of [`TEXTS`] counted in `messages` as `grep -F` would (case aside: words match in any
/// case, and the texts are written as the log writes them).
fn grep_counts<'a>(messages: impl Iterator<Item = &'a str> + Clone) -> Vec<(&'static str, u64)> {
    TEXTS.iter().map(|t| (*t, messages.clone().filter(|m| m.contains(t)).count() as u64)).collect()
}

fn assert_counts(store: &Store, expected: &[(&str, u64)], what: &str) {
    for (text, count) in expected {
        assert_eq!(total(store, text), *count, "{what}: {text}");
    }
}

#[test]
fn every_readable_format_opens_searches_and_takes_new_records_once() {
    let input = input();
    let expect = |needle: &str, namespace: Option<&str>| {
        input
            .iter()
            .filter(|r| r.message.contains(needle) && namespace.is_none_or(|n| r.namespace == n))
            .count() as u64
    };
    for version in READABLE_VERSIONS {
        let fixture = fixtures().join(format!("index-v{version}"));
        assert!(
            fixture.join("manifest.json").exists(),
            "format {version} has no fixture at {}",
            fixture.display()
        );
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&fixture, dir.path());

        let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("format {version}: {e}"));
        assert_eq!(store.doc_count(), RECORDS as u64, "format {version}");
        assert_eq!(total(&store, ""), RECORDS as u64, "format {version}");
        let old_counts = grep_counts(input.iter().map(|r| r.message.as_str()));
        assert!(old_counts.iter().all(|(_, n)| *n > 0), "{old_counts:?}");
        assert_counts(&store, &old_counts, &format!("format {version}"));
        assert_eq!(
            total(&store, "namespace:prod 订单创建成功"),
            expect("订单创建成功", Some("prod")),
            "format {version}"
        );
        let oldest = store
            .search(&SearchRequest {
                order: sluice_query::collect::Order::Oldest,
                ..SearchRequest::new("")
            })
            .unwrap();
        assert_eq!(oldest.hits[0].message, input[0].message, "format {version}");
        assert_eq!(store.partition_keys(), ["2025-11-23", "2025-11-24"], "format {version}");

        // The upgraded store goes on: a replay of what it holds is recognised, new records
        // land beside the old ones, and all of it survives a reopen.
        let position = store.committed_position();
        let mut writer = StoreWriter::new(store.clone());
        for record in &input[..10] {
            assert_eq!(
                writer.add(record, position + 1).unwrap(),
                Added::Duplicate,
                "format {version}"
            );
        }
        let mut fresh = input[0].clone();
        fresh.offset = 1 << 40;
        fresh.message = "升级之后 written by this release".to_owned();
        assert_eq!(writer.add(&fresh, position + 2).unwrap(), Added::Indexed);
        // The same lines again under new ids: written by this release, beside the old ones.
        for (i, record) in input.iter().enumerate().step_by(7) {
            let again = LogRecord { offset: (1 << 41) + i as u64, ..record.clone() };
            assert_eq!(writer.add(&again, position + 2).unwrap(), Added::Indexed);
        }
        let messages = input
            .iter()
            .map(|r| r.message.as_str())
            .chain(input.iter().step_by(7).map(|r| r.message.as_str()));
        let mixed_counts = grep_counts(messages);
        // Fields newer than the fixture's format filter nothing out of its records, and a
        // record that has them is found by them beside the old ones.
        assert_eq!(total(&store, "reason:BackOff OR stream:event"), 0, "format {version}");
        let event = LogRecord {
            source: source_key("k8s-event/c1/uid-1", 0),
            offset: 3,
            timestamp_ns: DAY0_NS + HOUR_NS,
            namespace: "prod".to_owned(),
            stream: Stream::Event as i32,
            message: "Back-off restarting failed container".to_owned(),
            event: Some(KubeEvent {
                uid: "uid-1".to_owned(),
                reason: "BackOff".to_owned(),
                r#type: "Warning".to_owned(),
                object_kind: "Pod".to_owned(),
                object_name: "api-0".to_owned(),
                count: 3,
                ..KubeEvent::default()
            }),
            ..LogRecord::default()
        };
        assert_eq!(writer.add(&event, position + 2).unwrap(), Added::Indexed);
        writer.commit(position + 2).unwrap();
        drop(writer);
        let reopened = Store::open(dir.path()).unwrap();
        let again = input.iter().step_by(7).count() as u64;
        assert_eq!(reopened.doc_count(), RECORDS as u64 + again + 2, "format {version}");
        assert_eq!(total(&reopened, "升级之后"), 1);
        assert_counts(&reopened, &mixed_counts, &format!("format {version} and this one"));
        let found =
            reopened.search(&SearchRequest::new("reason:BackOff object:Pod/api-0")).unwrap();
        assert_eq!(found.total, 1, "format {version}");
        let hit = found.hits[0].event.as_ref().expect("an event hit says what it is about");
        assert_eq!((hit.count, hit.kind.as_str()), (3, "Warning"));
        assert_eq!(total(&reopened, "stream:event namespace:prod"), 1, "format {version}");
        assert!(found.hits[0].event.is_some());
        let old = reopened.search(&SearchRequest::new("升级之后")).unwrap();
        assert_eq!(old.hits[0].event, None, "format {version}");

        // Closed days merge into one segment each, old records and new ones together.
        let mut writer = StoreWriter::new(reopened.clone());
        let merged = writer
            .housekeeping(DAY0_NS + 30 * 24 * HOUR_NS, &RetentionPolicy::default())
            .unwrap()
            .merged;
        assert_eq!(merged, ["2025-11-23", "2025-11-24"], "format {version}");
        assert_counts(&reopened, &mixed_counts, &format!("format {version}, merged"));
        assert_eq!(total(&reopened, "升级之后"), 1);
    }
}

#[test]
#[ignore = "writes the fixture of the current format; run by hand when the format changes"]
fn write_the_current_format_fixture() {
    if std::env::var_os("SLUICE_WRITE_INDEX_FIXTURE").is_none() {
        return;
    }
    let target = fixtures().join(format!("index-v{FORMAT_VERSION}"));
    assert!(!target.exists(), "{} exists: a fixture is never rewritten", target.display());
    let store = Store::open(&target).unwrap();
    let mut writer = StoreWriter::new(store.clone());
    for (i, record) in input().iter().enumerate() {
        writer.add(record, i as u64 + 1).unwrap();
    }
    writer.commit(RECORDS as u64).unwrap();
    drop(writer);
    let bytes: u64 = walk(&target);
    eprintln!("wrote {} ({bytes} bytes)", target.display());
}

fn walk(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk(&e.path())
            } else {
                e.metadata().unwrap().len()
            }
        })
        .sum()
}
