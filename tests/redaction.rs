//! Redaction happens in the agent: what reaches the collector and the index is already
//! masked, flagged `redacted`, and the original numbers and secrets cannot be searched.
//! Real `sluice-agent` and `sluice collector` processes on loopback.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn personal_data_and_secrets_never_reach_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let (_collector, grpc, base) = start_test_collector(&dir.path().join("collector"));

    let log = dir.path().join("logs/app.log");
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    std::fs::write(
        &log,
        "INFO 用户 13812345678 下单 orderId=837033197616\n\
         INFO 实名 身份证 11010519491231002X 通过\n\
         INFO 支付 卡号 6222021234567890128 成功\n\
         WARN login password=hunter2 Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.x.y\n\
         INFO contact bob@example.com\n\
         INFO block blk_-1608999687919862906 untouched\n",
    )
    .unwrap();
    let agent_dir = dir.path().join("agent");
    let config = write_agent_config_with(
        &agent_dir,
        grpc,
        &[log.display().to_string()],
        "redact:\n  builtin: [all]\n  rules:\n    - name: email\n      pattern: '[\\w.+-]+@[\\w-]+\\.[\\w.]+'\n      replacement: '<email>'\n",
    );
    let _agent = start_agent(&config, &agent_dir);

    wait_until(Duration::from_secs(30), "all 6 lines are indexed", || total(&base, "") >= 6);
    let mut hits = search(&base, "", 100).hits;
    hits.sort_by(|a, b| a.ts.cmp(&b.ts));
    let messages: Vec<&str> = hits.iter().map(|h| h.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "INFO 用户 138****5678 下单 orderId=837033197616",
            "INFO 实名 身份证 110105********002X 通过",
            "INFO 支付 卡号 622202*********0128 成功",
            "WARN login password=[REDACTED] Authorization: Bearer [REDACTED]",
            "INFO contact <email>",
            "INFO block blk_-1608999687919862906 untouched",
        ]
    );
    for hit in &hits[..5] {
        assert_eq!(hit.flags, ["redacted"], "{}", hit.message);
    }
    assert!(hits[5].flags.is_empty());
    for secret in ["13812345678", "hunter2", "6222021234567890128", "eyJhbGciOiJIUzI1NiJ9", "bob"] {
        assert_eq!(total(&base, &format!("\"{secret}\"")), 0, "{secret} is searchable");
    }
    assert_eq!(total(&base, "837033197616"), 1, "other numbers stay searchable");
}
