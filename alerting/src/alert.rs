//! An alert as rules raise it and notifiers show it: labels that identify it (its fingerprint),
//! annotations that describe it, and when it started and ended — Alertmanager's model, so
//! alerts pushed by Prometheus fit beside the rules' own.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub labels: Labels,
    pub annotations: Labels,
    /// Unix milliseconds.
    pub starts_at: i64,
    /// Unix milliseconds; `None` while it fires.
    pub ends_at: Option<i64>,
}

impl Alert {
    /// The stable identity of an alert: a hash of its labels, as Alertmanager keys alerts.
    pub fn fingerprint(&self) -> u64 {
        fingerprint(&self.labels)
    }

    pub fn is_firing(&self) -> bool {
        self.ends_at.is_none()
    }

    pub fn name(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }

    /// Critical alerts go first in a digest.
    pub fn rank(&self) -> u8 {
        match self.labels.get("severity").map(String::as_str) {
            Some("critical") | Some("page") => 0,
            Some("error") | Some("high") => 1,
            Some("warning") | Some("warn") => 2,
            _ => 3,
        }
    }

    pub fn summary(&self) -> &str {
        self.annotations.get("summary").map_or("", String::as_str)
    }
}

/// The fingerprint of a label set: its sorted `name=value` pairs, hashed.
pub fn fingerprint(labels: &Labels) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for (k, v) in labels {
        h.update(k.as_bytes());
        h.update(&[0xff]);
        h.update(v.as_bytes());
        h.update(&[0xfe]);
    }
    h.digest()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_depend_on_every_label_and_nothing_else() {
        let a = Labels::from([("alertname".into(), "x".into()), ("ns".into(), "a".into())]);
        let mut b = a.clone();
        assert_eq!(fingerprint(&a), fingerprint(&b));
        b.insert("ns".into(), "b".into());
        assert_ne!(fingerprint(&a), fingerprint(&b));
        let glued = Labels::from([("alertname".into(), "xns".into())]);
        assert_ne!(fingerprint(&a), fingerprint(&glued));
    }
}
