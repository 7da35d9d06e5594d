//! Chinese Java-log records for the benchmarks of what runs on every record (alert rules,
//! log metrics), so their numbers are over the same input.

use crate::LogRecord;

/// `n` records cycling through five kinds of line (a 支付失败 error, an order created, a
/// database timeout, an access line, a Java exception), in 30 namespaces' pods.
pub fn java_log_records(n: usize) -> Vec<LogRecord> {
    let lines = [
        ("ERROR", "支付失败: 订单 {} 余额不足"),
        ("INFO", "订单创建成功 order={} user=alice"),
        ("WARN", "db timeout after 3000 ms on query {}"),
        ("INFO", "GET /api/v1/orders/{} 200 12ms"),
        ("ERROR", "java.lang.NullPointerException at com.example.Pay.charge({})"),
    ];
    (0..n)
        .map(|i| {
            let (level, text) = lines[i % lines.len()];
            LogRecord {
                namespace: format!("ns-{}", i % 30),
                pod: format!("pay-{}", i % 7),
                level: level.to_lowercase(),
                message: format!("{level} {}", text.replace("{}", &i.to_string())),
                timestamp_ns: 1_700_000_000_000_000_000 + i as i64 * 1_000_000,
                ..Default::default()
            }
        })
        .collect()
}
