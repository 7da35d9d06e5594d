//! Names from a record: the placeholders of index and topic templates.

use sluice_proto::LogRecord;

/// `template` with `{cluster}`, `{namespace}`, `{pod}`, `{container}` (`none` when empty) and
/// the record's UTC date as `{yyyy.MM.dd}`, `{yyyy-MM-dd}` or `{yyyy.MM}` filled in.
pub(crate) fn fill(template: &str, r: &LogRecord) -> String {
    let or_none = |s: &str| if s.is_empty() { "none".to_owned() } else { s.to_owned() };
    let mut name = template
        .replace("{cluster}", &or_none(&r.cluster))
        .replace("{namespace}", &or_none(&r.namespace))
        .replace("{pod}", &or_none(&r.pod))
        .replace("{container}", &or_none(&r.container));
    if name.contains("{yyyy") {
        let date = chrono::DateTime::from_timestamp_nanos(r.timestamp_ns);
        name = name
            .replace("{yyyy.MM.dd}", &date.format("%Y.%m.%d").to_string())
            .replace("{yyyy-MM-dd}", &date.format("%Y-%m-%d").to_string())
            .replace("{yyyy.MM}", &date.format("%Y.%m").to_string());
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled() {
        let r = LogRecord {
            timestamp_ns: 1_796_032_800_000_000_000,
            namespace: "prod".into(),
            ..LogRecord::default()
        };
        assert_eq!(
            fill("logs-{namespace}-{cluster}-{yyyy.MM.dd}", &r),
            "logs-prod-none-2026.11.30"
        );
        assert_eq!(fill("plain", &r), "plain");
    }
}
