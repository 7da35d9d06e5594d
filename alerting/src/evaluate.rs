//! Rules evaluated over records as they pass: each matching record counts in its group's
//! bucket of `every` seconds by its own time; a window is the `window / every` buckets before an
//! evaluation point. Points close on record time up to a watermark, so a late record never
//! makes an absence fire; a condition that only more records can make true (`count >= 3`) is
//! also decided as records arrive, without waiting for the window to close.
//!
//! The counts and the lifecycle are kept with the WAL position they cover ([`EvalState`]), so
//! after a crash the sink replays from there and every window stays exact.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sluice_proto::LogRecord;

use crate::alert::{Alert, Labels};
use crate::config::Rule;

/// What rules have counted and decided, with the WAL position that covers it.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct EvalState {
    pub cursor: u64,
    pub rules: BTreeMap<String, RuleState>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct RuleState {
    /// The rule's shape when these counts were made: counts of another shape are dropped.
    every_secs: u64,
    window_secs: u64,
    /// The next evaluation point, Unix milliseconds; 0 before the first.
    next_eval_ms: i64,
    groups: BTreeMap<String, GroupState>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct GroupState {
    /// The `group_by` fields' values.
    values: Vec<String>,
    /// Matching records per bucket (the bucket's start in seconds divided by `every`).
    buckets: BTreeMap<i64, u64>,
    pending_since_ms: Option<i64>,
    firing_since_ms: Option<i64>,
    /// The latest point at which the condition held: a record decides a rising condition for
    /// the point after its bucket, before the watermark reaches the points in between, and
    /// those earlier points cannot undo it (that would resolve and re-fire the alert).
    #[serde(default)]
    decided_at_ms: i64,
    /// For event rules: the highest occurrence count (the event's own `count`) per bucket, so
    /// a `BackOff` seen once by the rules but 40 times by the kubelet says 40.
    #[serde(default)]
    occurrences: BTreeMap<i64, u64>,
    /// Records counted from the store when the rule started (their id → bucket): the WAL may
    /// bring them again, and they count once.
    #[serde(default)]
    seeded: BTreeMap<(u64, u64), i64>,
}

/// The rules and what they have counted.
pub struct Evaluator {
    rules: Vec<Rule>,
    state: EvalState,
    /// Rules with no counts of their own yet (new, changed, or the first start).
    fresh: Vec<usize>,
}

impl Evaluator {
    pub fn new(rules: Vec<Rule>, mut state: EvalState) -> Self {
        state.rules.retain(|name, _| rules.iter().any(|r| &r.name == name));
        let mut fresh = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            let s = state.rules.entry(rule.name.clone()).or_default();
            if (s.every_secs, s.window_secs) != (rule.every.as_secs(), rule.window.as_secs()) {
                *s = RuleState {
                    every_secs: rule.every.as_secs(),
                    window_secs: rule.window.as_secs(),
                    ..RuleState::default()
                };
                fresh.push(i);
            }
        }
        Self { rules, state, fresh }
    }

    /// The rules that start without counts, with how far back their windows reach from `now`
    /// (this window and the one before, which a spike compares with): what to count from the
    /// store before the WAL's records.
    pub fn fresh(&self) -> Vec<(&Rule, std::time::Duration)> {
        self.fresh.iter().map(|i| &self.rules[*i]).map(|r| (r, r.window * 2 + r.every)).collect()
    }

    /// Counts records of the store in the fresh rule `name` (each once, by id: the WAL may
    /// bring some again); returns the alerts that now fire.
    pub fn seed(&mut self, name: &str, records: &[LogRecord], now_ms: i64) -> Vec<Alert> {
        let Some(index) = self.rules.iter().position(|r| r.name == name) else {
            return Vec::new();
        };
        let rule = &self.rules[index];
        let state = self.state.rules.get_mut(&rule.name).expect("one state per rule");
        let mut fired = Vec::new();
        for record in records {
            if rule.matcher.matches(record)
                && let Some(alert) = count(rule, state, record, now_ms, true)
            {
                fired.push(alert);
            }
        }
        self.fresh.retain(|i| *i != index);
        fired
    }

    pub fn state(&self) -> &EvalState {
        &self.state
    }

    pub fn set_cursor(&mut self, cursor: u64) {
        self.state.cursor = cursor;
    }

    /// Counts `record` in every rule it matches; returns the alerts that now fire.
    pub fn observe(&mut self, record: &LogRecord, now_ms: i64) -> Vec<Alert> {
        let mut fired = Vec::new();
        for rule in &self.rules {
            if !rule.matcher.matches(record) {
                continue;
            }
            let state = self.state.rules.get_mut(&rule.name).expect("one state per rule");
            if let Some(alert) = count(rule, state, record, now_ms, false) {
                fired.push(alert);
            }
        }
        fired
    }

    /// Evaluates every rule at each of its points up to `watermark_ms`; returns what fires
    /// (again) and what resolves.
    pub fn evaluate(&mut self, watermark_ms: i64) -> Vec<Alert> {
        let mut changed = Vec::new();
        for rule in &self.rules {
            let state = self.state.rules.get_mut(&rule.name).expect("one state per rule");
            let every_ms = rule.every.as_millis() as i64;
            let window_ms = rule.window.as_millis() as i64;
            if state.next_eval_ms == 0 {
                state.next_eval_ms = (watermark_ms.div_euclid(every_ms) + 1) * every_ms;
                if rule.group_by.is_empty() {
                    state.groups.entry(String::new()).or_default();
                }
            }
            // After a long stop only the last points can differ: a window sees no further back.
            let last = watermark_ms.div_euclid(every_ms) * every_ms;
            state.next_eval_ms = state.next_eval_ms.max(last - 2 * window_ms);
            while state.next_eval_ms <= watermark_ms {
                let at = state.next_eval_ms;
                state.groups.retain(|_, g| {
                    g.buckets.retain(|b, _| b * every_ms >= at - 2 * window_ms);
                    g.occurrences.retain(|b, _| b * every_ms >= at - 2 * window_ms);
                    g.seeded.retain(|_, b| *b * every_ms >= at - 2 * window_ms);
                    !g.buckets.is_empty() || g.firing_since_ms.is_some() || rule.group_by.is_empty()
                });
                for group in state.groups.values_mut() {
                    let was_firing = group.firing_since_ms.is_some();
                    match step(rule, group, at, at) {
                        Some(alert) => changed.push(alert),
                        None if was_firing && group.firing_since_ms.is_none() => {
                            changed.push(alert(rule, group, at, Some(at)));
                        }
                        None => {}
                    }
                }
                state.next_eval_ms += every_ms;
            }
        }
        changed
    }

    /// The alerts firing now, for the status page.
    pub fn firing(&self) -> Vec<(String, Alert)> {
        let mut out = Vec::new();
        for rule in &self.rules {
            let state = &self.state.rules[&rule.name];
            let last_point = state.next_eval_ms - rule.every.as_millis() as i64;
            for group in state.groups.values() {
                // Counts as of the latest point judged: a closed window, or the one a record
                // decided ahead of the watermark.
                let at = group.decided_at_ms.max(last_point);
                if group.firing_since_ms.is_some() {
                    out.push(("firing".to_owned(), alert(rule, group, at, None)));
                } else if group.pending_since_ms.is_some() {
                    out.push(("pending".to_owned(), alert(rule, group, at, None)));
                }
            }
        }
        out
    }
}

/// Counts a record `rule` matches in its group's bucket (`seeding`: a record from the store,
/// remembered by id; otherwise one the store already gave is skipped); returns the alert when
/// a rising condition now fires.
fn count(
    rule: &Rule,
    state: &mut RuleState,
    record: &LogRecord,
    now_ms: i64,
    seeding: bool,
) -> Option<Alert> {
    let time_ms = record_time_ms(record, now_ms);
    let every = rule.every.as_secs() as i64;
    let bucket = time_ms.div_euclid(every * 1000);
    if bucket < horizon(state, rule) {
        // Older than any window still open: it can change no evaluation.
        return None;
    }
    let values: Vec<String> =
        rule.group_by.iter().map(|f| sluice_query::matcher::field_value(record, f)).collect();
    let key = values.join("\u{1f}");
    let group =
        state.groups.entry(key).or_insert_with(|| GroupState { values, ..GroupState::default() });
    let id = (record.source, record.offset);
    if id != (0, 0) {
        if seeding {
            group.seeded.insert(id, bucket);
        } else if group.seeded.contains_key(&id) {
            return None;
        }
    }
    *group.buckets.entry(bucket).or_default() += 1;
    if let Some(event) = &record.event {
        let seen = group.occurrences.entry(bucket).or_default();
        *seen = (*seen).max(event.count);
    }
    let at = (bucket + 1) * every * 1000;
    let (count, previous) = counts(rule, group, at);
    if rule.condition.rises()
        && group.firing_since_ms.is_none()
        && rule.condition.holds(count, previous)
    {
        return step(rule, group, at, time_ms);
    }
    None
}

/// The oldest bucket any open evaluation still reads.
fn horizon(state: &RuleState, rule: &Rule) -> i64 {
    let every_ms = rule.every.as_millis() as i64;
    match state.next_eval_ms {
        0 => i64::MIN,
        next => (next - 2 * rule.window.as_millis() as i64).div_euclid(every_ms),
    }
}

/// Applies the condition at point `at` (`time_ms` is when it became true); returns the alert
/// when it fires (newly or still). A pending alert fires once it has held for `for`.
fn step(rule: &Rule, group: &mut GroupState, at: i64, time_ms: i64) -> Option<Alert> {
    let (count, previous) = counts(rule, group, at);
    if !rule.condition.holds(count, previous) {
        if at >= group.decided_at_ms {
            group.firing_since_ms = None;
            group.pending_since_ms = None;
        }
        return None;
    }
    group.decided_at_ms = group.decided_at_ms.max(at);
    if group.firing_since_ms.is_some() {
        return Some(alert(rule, group, at, None));
    }
    let since = *group.pending_since_ms.get_or_insert(time_ms);
    if time_ms - since >= rule.for_.as_millis() as i64 {
        group.firing_since_ms = Some(time_ms);
        return Some(alert(rule, group, at, None));
    }
    None
}

/// The window before `at` and the one before it.
fn counts(rule: &Rule, group: &GroupState, at: i64) -> (u64, u64) {
    let every_ms = rule.every.as_millis() as i64;
    let width = rule.window.as_millis() as i64 / every_ms;
    let end = at.div_euclid(every_ms);
    let sum = |from: i64, to: i64| group.buckets.range(from..to).map(|(_, n)| n).sum::<u64>();
    (sum(end - width, end), sum(end - 2 * width, end - width))
}

/// The highest occurrence count of the events in the window before `at` (0 for log records).
fn occurrences(rule: &Rule, group: &GroupState, at: i64) -> u64 {
    let every_ms = rule.every.as_millis() as i64;
    let end = at.div_euclid(every_ms);
    let start = end - rule.window.as_millis() as i64 / every_ms;
    group.occurrences.range(start..end).map(|(_, n)| *n).max().unwrap_or(0)
}

fn alert(rule: &Rule, group: &GroupState, at: i64, ends_at: Option<i64>) -> Alert {
    let (count, previous) = counts(rule, group, at.min(i64::MAX / 2));
    let mut labels = Labels::new();
    labels.insert("alertname".to_owned(), rule.name.clone());
    for (field, value) in rule.group_by.iter().zip(&group.values) {
        labels.insert(label_name(field), value.clone());
    }
    for (k, v) in &rule.labels {
        labels.insert(k.clone(), v.clone());
    }
    let mut values = labels.clone();
    for (field, value) in rule.group_by.iter().zip(&group.values) {
        values.insert(field.clone(), value.clone());
    }
    values.insert("rule".to_owned(), rule.name.clone());
    values.insert("count".to_owned(), count.to_string());
    values.insert("previous".to_owned(), previous.to_string());
    let occurrences = occurrences(rule, group, at.min(i64::MAX / 2));
    values.insert("occurrences".to_owned(), occurrences.to_string());
    let mut annotations = Labels::new();
    annotations.insert("summary".to_owned(), rule.summary.render(&values));
    annotations.insert("count".to_owned(), count.to_string());
    if occurrences > 0 {
        annotations.insert("occurrences".to_owned(), occurrences.to_string());
    }
    annotations.insert("condition".to_owned(), rule.condition.to_string());
    Alert {
        labels,
        annotations,
        starts_at: group.firing_since_ms.or(group.pending_since_ms).unwrap_or(at),
        ends_at,
    }
}

/// A record field as an alert label name: `labels.app` is `labels_app`.
pub fn label_name(field: &str) -> String {
    field.replace('.', "_")
}

/// A record's own time, or when it was read, or now.
fn record_time_ms(record: &LogRecord, now_ms: i64) -> i64 {
    match (record.timestamp_ns, record.ingest_time_ns) {
        (0, 0) => now_ms,
        (0, read) => read / 1_000_000,
        (ts, _) => ts / 1_000_000,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AlertsFile;

    fn rules(rule_yaml: &str) -> Vec<Rule> {
        let text = format!(
            "receivers: [{{name: r, webhook: {{url: 'http://127.0.0.1:1/'}}}}]\nroute: {{receiver: r}}\nrules:\n{rule_yaml}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.yaml");
        std::fs::write(&path, text).unwrap();
        AlertsFile::load(&path).unwrap().rules()
    }

    fn rec(ns: &str, msg: &str, at_ms: i64) -> LogRecord {
        LogRecord {
            namespace: ns.into(),
            level: "error".into(),
            message: msg.into(),
            timestamp_ns: at_ms * 1_000_000,
            ..Default::default()
        }
    }

    const T0: i64 = 1_700_000_000_000;

    #[test]
    fn a_threshold_fires_as_records_arrive_per_group_and_resolves_when_the_window_passes() {
        let r = rules(
            "  - {name: pay, query: '支付失败', every: 10s, window: 1m, group_by: [namespace], when: 'count >= 3', labels: {severity: critical}, summary: '{{ namespace }}: {{ count }}'}\n",
        );
        let mut e = Evaluator::new(r, EvalState::default());
        assert!(e.evaluate(T0).is_empty());
        assert!(e.observe(&rec("a", "支付失败 1", T0 + 1000), T0).is_empty());
        assert!(e.observe(&rec("b", "支付失败", T0 + 1000), T0).is_empty());
        assert!(e.observe(&rec("a", "支付成功", T0 + 1000), T0).is_empty());
        assert!(e.observe(&rec("a", "支付失败 2", T0 + 2000), T0).is_empty());
        let fired = e.observe(&rec("a", "支付失败 3", T0 + 3000), T0);
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].labels["namespace"], "a");
        assert_eq!(fired[0].labels["severity"], "critical");
        assert_eq!(fired[0].summary(), "a: 3");
        assert_eq!(fired[0].starts_at, T0 + 3000);
        // Still firing while the window holds them; resolved once it has moved past.
        let still = e.evaluate(T0 + 30_000);
        assert!(still.iter().all(|a| a.is_firing() && a.labels["namespace"] == "a"));
        let later = e.evaluate(T0 + 90_000);
        let resolved: Vec<_> = later.iter().filter(|a| !a.is_firing()).collect();
        assert_eq!(resolved.len(), 1);
        assert!(e.firing().is_empty());
    }

    #[test]
    fn points_before_a_record_decided_its_alert_do_not_resolve_it() {
        let r = rules("  - {name: p, query: 'x', every: 1s, window: 1m, when: 'count >= 1'}\n");
        let mut e = Evaluator::new(r, EvalState::default());
        e.evaluate(T0);
        assert_eq!(e.observe(&rec("a", "x", T0 + 2_500), T0 + 2_500).len(), 1);
        // The watermark trails: the points at T0+1s and T0+2s come after the record fired it.
        let changes = e.evaluate(T0 + 2_000);
        assert!(changes.iter().all(Alert::is_firing), "{changes:?}");
        assert!(e.evaluate(T0 + 10_000).iter().all(Alert::is_firing));
        assert_eq!(e.firing().len(), 1);
    }

    #[test]
    fn an_absence_waits_for_the_watermark_and_a_late_record_cannot_fire_it() {
        let r = rules(
            "  - {name: quiet, query: 'heartbeat', every: 10s, window: 30s, when: 'count == 0'}\n",
        );
        let mut e = Evaluator::new(r, EvalState::default());
        e.evaluate(T0);
        e.observe(&rec("a", "heartbeat", T0 + 5_000), T0);
        // The record is in every window up to the point at T0+30s: no absence before.
        assert!(e.evaluate(T0 + 30_000).iter().all(|a| !a.is_firing()));
        let fired = e.evaluate(T0 + 50_000);
        assert!(fired.iter().any(Alert::is_firing), "{fired:?}");
    }

    #[test]
    fn a_spike_compares_with_the_previous_window_and_for_delays_firing() {
        let r = rules(
            "  - {name: spike, query: 'x', every: 10s, window: 10s, when: 'count > 2 * previous and count >= 4', for: 10s}\n",
        );
        let mut e = Evaluator::new(r, EvalState::default());
        e.evaluate(T0 - 1);
        e.observe(&rec("a", "x", T0 + 1_000), T0);
        e.evaluate(T0 + 10_000);
        for i in 0..5 {
            e.observe(&rec("a", "x", T0 + 11_000 + i), T0 + 11_000);
        }
        assert!(e.evaluate(T0 + 20_000).is_empty(), "pending, not firing yet");
        let mut fired = Vec::new();
        for i in 0..11 {
            fired.extend(e.observe(&rec("a", "x", T0 + 21_000 + i), T0 + 21_000));
        }
        assert_eq!(fired.len(), 1, "fires once it has held for 10 s: {fired:?}");
        assert!(e.evaluate(T0 + 30_000).iter().all(Alert::is_firing));
    }

    #[test]
    fn counts_survive_a_restart_through_the_state() {
        let yaml = "  - {name: pay, query: 'x', every: 10s, window: 1m, when: 'count >= 2'}\n";
        let mut e = Evaluator::new(rules(yaml), EvalState::default());
        e.evaluate(T0);
        e.observe(&rec("a", "x", T0 + 1000), T0);
        let saved = serde_json::to_string(e.state()).unwrap();
        let mut again = Evaluator::new(rules(yaml), serde_json::from_str(&saved).unwrap());
        assert_eq!(again.observe(&rec("a", "x", T0 + 2000), T0).len(), 1);
        let reshaped = "  - {name: pay, query: 'x', every: 5s, window: 1m, when: 'count >= 2'}\n";
        let mut other = Evaluator::new(rules(reshaped), serde_json::from_str(&saved).unwrap());
        other.evaluate(T0);
        assert!(other.observe(&rec("a", "x", T0 + 2000), T0).is_empty());
    }

    #[test]
    fn event_rules_carry_the_events_own_occurrence_count() {
        let r = rules(
            "  - {name: backoff, query: 'stream:event AND reason:BackOff', every: 10s, window: 1m, group_by: [namespace], when: 'count >= 2', summary: '{{ namespace }}: BackOff x{{ occurrences }}'}",
        );
        let mut e = Evaluator::new(r, EvalState::default());
        let event = |count: u64, at_ms: i64| {
            let mut r = rec("web", "Back-off restarting failed container", at_ms);
            r.stream = sluice_proto::Stream::Event as i32;
            r.event = Some(sluice_proto::KubeEvent {
                reason: "BackOff".into(),
                count,
                ..Default::default()
            });
            r
        };
        assert!(e.observe(&event(1, T0), T0).is_empty());
        let fired = e.observe(&event(40, T0 + 1_000), T0 + 1_000);
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].summary(), "web: BackOff x40");
        assert_eq!(fired[0].annotations["occurrences"], "40");
        assert!(e.observe(&rec("web", "BackOff", T0 + 2_000), T0 + 2_000).is_empty());
    }

    /// A rule starting without counts counts the stored records its windows reach; a record
    /// the WAL brings again (same id) counts once, one without an id is not mistaken for it.
    #[test]
    fn stored_records_seed_a_fresh_rule_once() {
        let r = rules(
            "  - {name: pay, query: '支付失败', every: 10s, window: 1m, group_by: [namespace], when: 'count >= 3'}",
        );
        let with_id = |offset: u64, at_ms: i64| {
            let mut r = rec("pay", "支付失败", at_ms);
            (r.source, r.offset) = (7, offset);
            r
        };
        let mut e = Evaluator::new(r.clone(), EvalState::default());
        assert_eq!(e.fresh().len(), 1);
        let stored = [with_id(1, T0), with_id(2, T0 + 1_000)];
        assert!(e.seed("pay", &stored, T0 + 2_000).is_empty(), "two of three");
        assert!(e.fresh().is_empty());
        assert!(e.observe(&with_id(2, T0 + 1_000), T0 + 2_000).is_empty(), "seen before: once");
        assert!(e.observe(&with_id(1, T0), T0 + 2_000).is_empty(), "seen before: once");
        let fired = e.observe(&with_id(3, T0 + 2_500), T0 + 3_000);
        assert_eq!(fired.len(), 1, "the third record fires");
        assert_eq!(fired[0].annotations["count"], "3");
        // A state saved with counts is not fresh again, and ids without a source count.
        let again = Evaluator::new(r, e.state().clone());
        assert!(again.fresh().is_empty());
        let mut e = Evaluator::new(
            rules("  - {name: any, query: 'x', every: 10s, window: 1m, when: 'count >= 2'}"),
            EvalState::default(),
        );
        e.seed("any", &[rec("a", "x", T0)], T0);
        assert_eq!(e.observe(&rec("a", "x", T0 + 1), T0 + 1).len(), 1);
    }
}
