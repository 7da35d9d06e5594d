//! Docker json-file logs reached through kubelet's `/var/log/containers` symlinks: pod
//! metadata from the link's name, split lines merged per stream, the runtime's times kept,
//! a broken line kept whole and flagged. Real `sluice up` on loopback.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn docker_json_logs_through_container_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let id = "a1b2c3d4".repeat(8);
    let docker_dir = dir.path().join(format!("var/lib/docker/containers/{id}"));
    std::fs::create_dir_all(&docker_dir).unwrap();
    let target = docker_dir.join(format!("{id}-json.log"));
    let long = "长".repeat(3000);
    let (first, second) = long.split_at(long.len() / 2);
    let lines = [
        r#"{"log":"INFO 订单创建成功 orderId=1\n","stream":"stdout","time":"2026-11-24T01:00:00.000000001Z"}"#.to_owned(),
        format!(r#"{{"log":"ERROR start {first}","stream":"stderr","time":"2026-11-24T01:00:00.000000002Z"}}"#),
        r#"{"log":"INFO between the parts\r\n","stream":"stdout","time":"2026-11-24T01:00:00.000000003Z"}"#.to_owned(),
        format!(r#"{{"log":"{second} end\n","stream":"stderr","time":"2026-11-24T01:00:00.000000004Z"}}"#),
        r#"{"log":"broken"#.to_owned(),
        r#"{"log":"WARN last\n","stream":"stdout","time":"2026-11-24T01:00:00.000000005Z"}"#.to_owned(),
    ];
    std::fs::write(&target, lines.join("\n") + "\n").unwrap();
    let links = dir.path().join("var/log/containers");
    std::fs::create_dir_all(&links).unwrap();
    std::os::unix::fs::symlink(&target, links.join(format!("order-api-7d9f_shop_app-{id}.log")))
        .unwrap();

    let (_up, base) = start_up(&dir.path().join("data"), &[format!("{}/*.log", links.display())]);
    wait_until(Duration::from_secs(30), "5 records are indexed", || total(&base, "") >= 5);
    std::thread::sleep(Duration::from_millis(800));
    let hits = search(&base, "", 100).hits;
    assert_eq!(hits.len(), 5);
    for hit in &hits {
        assert_eq!(
            (hit.namespace.as_str(), hit.pod.as_str(), hit.container.as_str()),
            ("shop", "order-api-7d9f", "app")
        );
    }
    let one = |q: &str| {
        let hits = search(&base, q, 10).hits;
        assert_eq!(hits.len(), 1, "{q}");
        hits.into_iter().next().unwrap()
    };
    let merged = one("end AND level:error");
    assert_eq!(merged.message, format!("ERROR start {long} end"));
    assert_eq!(
        (merged.stream.as_str(), merged.ts.as_str()),
        ("stderr", "2026-11-24T01:00:00.000000002Z")
    );
    let crlf = one("between");
    assert_eq!(crlf.message, "INFO between the parts");
    assert_eq!(crlf.stream, "stdout");
    let broken = one("broken");
    assert_eq!(broken.message, r#"{"log":"broken"#);
    assert_eq!(
        (broken.stream.as_str(), broken.flags.as_slice()),
        ("file", &["docker_malformed".to_owned()][..])
    );
    assert_eq!(one("订单创建成功").ts, "2026-11-24T01:00:00.000000001Z");
    assert_eq!(total(&base, "pod:order-api-7d9f namespace:shop container:app"), 5);
}
