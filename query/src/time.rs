//! Time as the API, the CLI and the collector's documents write and read it: a leaf that
//! every layer may use.

use std::time::Instant;

use chrono::SecondsFormat;

use crate::QueryError;

/// A time parameter named `name`: RFC 3339, or an integer number of nanoseconds since the
/// epoch.
pub fn parse_time(name: &'static str, value: &str) -> Result<i64, QueryError> {
    if let Ok(ns) = value.parse::<i64>() {
        return Ok(ns);
    }
    chrono::DateTime::parse_from_rfc3339(value)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .ok_or_else(|| QueryError::Parameter {
            name,
            reason: format!("{value:?} is neither RFC 3339 nor Unix nanoseconds"),
        })
}

/// RFC 3339 in UTC with nanoseconds, the way hits show time.
pub fn format_ts(ts_ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ts_ns).to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// Milliseconds since `started`, to the microsecond.
pub fn elapsed_ms(started: Instant) -> f64 {
    (started.elapsed().as_micros() as f64) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_from_rfc3339_or_nanoseconds_and_format_back() {
        assert_eq!(parse_time("start", "1700000000000000000").unwrap(), 1_700_000_000_000_000_000);
        let ns = parse_time("start", "2023-11-14T22:13:20.5+08:00").unwrap();
        assert_eq!(format_ts(ns), "2023-11-14T14:13:20.500000000Z");
        let err = parse_time("end", "yesterday").unwrap_err().to_string();
        assert!(err.contains("end") && err.contains("yesterday"), "{err}");
    }
}
