//! Silences: matchers that mute alerts between two times, with who made them and why, as in
//! Alertmanager (`/api/v1/silences`, `sluice alert silence`).

use serde::{Deserialize, Serialize};

use crate::alert::Alert;
use crate::route::LabelMatcher;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    /// As written (`namespace="pay"`); parsed again when loaded.
    pub matchers: Vec<String>,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    pub created_by: String,
    pub comment: String,
}

impl Silence {
    pub fn new(
        matchers: Vec<LabelMatcher>,
        starts_at_ms: i64,
        ends_at_ms: i64,
        created_by: &str,
        comment: &str,
    ) -> Self {
        let matchers: Vec<String> = matchers.iter().map(ToString::to_string).collect();
        let id = format!(
            "{:016x}",
            xxhash_rust::xxh3::xxh3_64(
                format!("{matchers:?}{starts_at_ms}{ends_at_ms}{created_by}{comment}").as_bytes()
            )
        );
        Self {
            id,
            matchers,
            starts_at_ms,
            ends_at_ms,
            created_by: created_by.to_owned(),
            comment: comment.to_owned(),
        }
    }

    pub fn is_active(&self, now_ms: i64) -> bool {
        (self.starts_at_ms..self.ends_at_ms).contains(&now_ms)
    }

    /// Whether it mutes `alert` now.
    pub fn mutes(&self, alert: &Alert, now_ms: i64) -> bool {
        self.is_active(now_ms)
            && !self.matchers.is_empty()
            && self
                .matchers
                .iter()
                .all(|m| m.parse::<LabelMatcher>().is_ok_and(|m| m.matches(&alert.labels)))
    }
}
