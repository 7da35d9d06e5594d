//! From alerts to notifications, as Alertmanager does it: each alert joins a group per route
//! it matches (the route's `group_by` labels); a group is flushed `group_wait` after it
//! appears and every `group_interval` after, and a flush notifies when an alert is newly
//! firing, when a notified one resolved (with `send_resolved`), or when `repeat_interval` has
//! passed. What was notified is kept per group ([`NotifyState::log`]), together with the
//! outbox of notifications not yet delivered, in one durable state: after a `kill -9` the
//! outbox is sent and nothing already notified is notified again within `repeat_interval`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::alert::{Alert, Labels};
use crate::route::{LabelMatcher, Route};
use crate::silence::Silence;

/// Everything about notifications that must survive a restart.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct NotifyState {
    pub groups: BTreeMap<String, Group>,
    /// What each group last notified, and when.
    pub log: BTreeMap<String, Notified>,
    /// Notifications not yet delivered, one per channel, in the order they were made.
    pub outbox: BTreeMap<u64, Notification>,
    pub next_id: u64,
    /// When each rate-limited channel sent, Unix milliseconds (the last minute's).
    pub sent: BTreeMap<String, Vec<i64>>,
    pub silences: Vec<Silence>,
    /// Alerts pushed by Prometheus that fire until this time (Unix milliseconds) unless pushed
    /// again, by fingerprint: Alertmanager's `endsAt` rule.
    #[serde(default)]
    pub pushed: BTreeMap<u64, (i64, Alert)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Group {
    pub route: String,
    pub receiver: String,
    pub labels: Labels,
    pub alerts: BTreeMap<u64, Alert>,
    pub next_flush_ms: i64,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Notified {
    pub firing: BTreeSet<u64>,
    pub at_ms: i64,
}

/// One notification for one channel of a receiver: a group's alerts at a flush.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Unique and stable: the idempotency key a channel can pass on (SMS `OutId`).
    pub id: String,
    /// `receiver/kind` (`oncall/dingtalk`).
    pub channel: String,
    pub receiver: String,
    pub group_key: String,
    pub group_labels: Labels,
    pub alerts: Vec<Alert>,
    pub created_ms: i64,
    /// Not tried again before this time (Unix milliseconds).
    pub next_try_ms: i64,
    pub attempts: u32,
}

impl Notification {
    pub fn firing(&self) -> usize {
        self.alerts.iter().filter(|a| a.is_firing()).count()
    }

    /// `FIRING` or `RESOLVED`, as Alertmanager says it.
    pub fn status(&self) -> &'static str {
        if self.firing() > 0 { "firing" } else { "resolved" }
    }

    /// Its most urgent alert's rank (0 is critical).
    pub fn rank(&self) -> u8 {
        self.alerts.iter().map(Alert::rank).min().unwrap_or(u8::MAX)
    }
}

/// What the dispatcher knows of a receiver.
#[derive(Debug, Clone)]
pub struct ReceiverChannels {
    pub send_resolved: bool,
    /// `receiver/kind` of each channel.
    pub channels: Vec<String>,
}

/// `source_matchers` alerts, while they fire, mute `target_matchers` alerts that share the
/// `equal` labels.
#[derive(Debug, Clone)]
pub struct Inhibition {
    pub source: Vec<LabelMatcher>,
    pub target: Vec<LabelMatcher>,
    pub equal: Vec<String>,
}

pub struct Dispatcher {
    route: Route,
    receivers: BTreeMap<String, ReceiverChannels>,
    inhibitions: Vec<Inhibition>,
}

impl Dispatcher {
    pub fn new(
        route: Route,
        receivers: BTreeMap<String, ReceiverChannels>,
        inhibitions: Vec<Inhibition>,
    ) -> Self {
        Self { route, receivers, inhibitions }
    }

    /// Adds or updates an alert in the groups of every route it matches.
    pub fn add(&self, state: &mut NotifyState, alert: Alert, now_ms: i64) {
        let fp = alert.fingerprint();
        for route in self.route.matching(&alert.labels) {
            let labels = route.group_labels(&alert.labels);
            let key = format!("{}/{}:{}", route.id, route.receiver, render(&labels));
            if !alert.is_firing()
                && !state.groups.get(&key).is_some_and(|g| g.alerts.contains_key(&fp))
            {
                continue;
            }
            let group = state.groups.entry(key).or_insert_with(|| Group {
                route: route.id.clone(),
                receiver: route.receiver.clone(),
                labels,
                alerts: BTreeMap::new(),
                next_flush_ms: now_ms + route.group_wait.as_millis() as i64,
            });
            group.alerts.insert(fp, alert.clone());
        }
    }

    /// Flushes the groups that are due; returns whether the state changed (then it must be
    /// saved before anything in the outbox is sent).
    pub fn flush(&self, state: &mut NotifyState, now_ms: i64) -> bool {
        let due: Vec<String> = state
            .groups
            .iter()
            .filter(|(_, g)| g.next_flush_ms <= now_ms)
            .map(|(k, _)| k.clone())
            .collect();
        if due.is_empty() {
            return false;
        }
        state.silences.retain(|s| s.ends_at_ms > now_ms - 24 * 3_600_000);
        let firing: Vec<Alert> = state
            .groups
            .values()
            .flat_map(|g| g.alerts.values())
            .filter(|a| a.is_firing())
            .cloned()
            .collect();
        for key in due {
            let group = state.groups.get(&key).expect("due group").clone();
            let route = self.route_by_id(&group.route);
            let receiver = self.receivers.get(&group.receiver);
            let send_resolved = receiver.is_some_and(|r| r.send_resolved);
            let muted = |a: &Alert| {
                state.silences.iter().any(|s| s.mutes(a, now_ms)) || self.inhibited(a, &firing)
            };
            let now_firing: BTreeSet<u64> = group
                .alerts
                .iter()
                .filter(|(_, a)| a.is_firing() && !muted(a))
                .map(|(fp, _)| *fp)
                .collect();
            let previous = state.log.get(&key).cloned().unwrap_or_default();
            let resolved: Vec<u64> = group
                .alerts
                .iter()
                .filter(|(fp, a)| !a.is_firing() && previous.firing.contains(fp))
                .map(|(fp, _)| *fp)
                .collect();
            let repeat_due = !now_firing.is_empty()
                && now_ms - previous.at_ms >= route.repeat_interval.as_millis() as i64;
            let notify = !now_firing.is_subset(&previous.firing)
                || (send_resolved && !resolved.is_empty())
                || repeat_due;
            if notify {
                let alerts: Vec<Alert> = group
                    .alerts
                    .iter()
                    .filter(|(fp, _)| {
                        now_firing.contains(fp) || (send_resolved && resolved.contains(fp))
                    })
                    .map(|(_, a)| a.clone())
                    .collect();
                for channel in receiver.map(|r| r.channels.as_slice()).unwrap_or_default() {
                    let id = state.next_id;
                    state.next_id += 1;
                    state.outbox.insert(
                        id,
                        Notification {
                            id: format!("{id}-{:016x}", crate::alert::fingerprint(&group.labels)),
                            channel: channel.clone(),
                            receiver: group.receiver.clone(),
                            group_key: key.clone(),
                            group_labels: group.labels.clone(),
                            alerts: alerts.clone(),
                            created_ms: now_ms,
                            next_try_ms: now_ms,
                            attempts: 0,
                        },
                    );
                }
                state.log.insert(key.clone(), Notified { firing: now_firing, at_ms: now_ms });
            } else if now_firing != previous.firing && state.log.contains_key(&key) {
                // Resolved or muted without a notification: forget them, so that firing again
                // is news.
                let at_ms = previous.at_ms;
                state.log.insert(key.clone(), Notified { firing: now_firing, at_ms });
            }
            let g = state.groups.get_mut(&key).expect("due group");
            // An emptied group lives one more interval: an alert firing again soon waits for
            // its next flush instead of starting a new group at `group_wait`.
            let was_empty = g.alerts.is_empty();
            g.alerts.retain(|_, a| a.is_firing());
            g.next_flush_ms = now_ms + route.group_interval.as_millis() as i64;
            if was_empty {
                state.groups.remove(&key);
            }
        }
        // A group gone quiet keeps its log for a repeat interval, so a flap within it is not news.
        let groups = &state.groups;
        state.log.retain(|key, n| {
            groups.contains_key(key) || now_ms - n.at_ms < 4 * 3_600_000 && !n.firing.is_empty()
        });
        true
    }

    pub fn longest_group_wait(&self) -> std::time::Duration {
        self.route.longest_group_wait()
    }

    fn route_by_id(&self, id: &str) -> &Route {
        self.route.find(id).unwrap_or(&self.route)
    }

    fn inhibited(&self, alert: &Alert, firing: &[Alert]) -> bool {
        self.inhibitions.iter().any(|rule| {
            rule.target.iter().all(|m| m.matches(&alert.labels))
                && firing.iter().any(|source| {
                    source.fingerprint() != alert.fingerprint()
                        && rule.source.iter().all(|m| m.matches(&source.labels))
                        && rule.equal.iter().all(|l| source.labels.get(l) == alert.labels.get(l))
                })
        })
    }
}

/// `{namespace="pay", alertname="x"}`.
pub fn render(labels: &Labels) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RouteConfig;

    fn dispatcher(send_resolved: bool, inhibitions: Vec<Inhibition>) -> Dispatcher {
        let route: RouteConfig = yaml_serde::from_str(
            "{receiver: r, group_by: [alertname, namespace], group_wait: 5s, group_interval: 30s, repeat_interval: 4h}",
        )
        .unwrap();
        let receivers = BTreeMap::from([(
            "r".to_owned(),
            ReceiverChannels {
                send_resolved,
                channels: vec!["r/dingtalk".into(), "r/email".into()],
            },
        )]);
        Dispatcher::new(Route::new(&route), receivers, inhibitions)
    }

    fn alert(ns: &str, firing: bool) -> Alert {
        Alert {
            labels: Labels::from([
                ("alertname".into(), "pay".into()),
                ("namespace".into(), ns.into()),
            ]),
            annotations: Labels::new(),
            starts_at: 0,
            ends_at: (!firing).then_some(1),
        }
    }

    #[test]
    fn a_group_waits_then_notifies_once_per_channel_and_not_again_until_news() {
        let d = dispatcher(true, vec![]);
        let mut s = NotifyState::default();
        d.add(&mut s, alert("a", true), 0);
        d.add(&mut s, alert("b", true), 0);
        assert!(!d.flush(&mut s, 4_999));
        assert!(d.flush(&mut s, 5_000));
        assert_eq!(s.outbox.len(), 4, "two groups × two channels");
        s.outbox.clear();
        d.add(&mut s, alert("a", true), 10_000);
        d.flush(&mut s, 35_000);
        assert!(s.outbox.is_empty(), "nothing new within repeat_interval");
        d.add(&mut s, alert("a", false), 40_000);
        d.flush(&mut s, 65_000);
        assert_eq!(s.outbox.len(), 2, "resolved, with send_resolved");
        assert!(s.outbox.values().all(|n| n.status() == "resolved"));
        d.flush(&mut s, 95_000);
        assert!(!s.groups.keys().any(|k| k.contains("\"a\"")), "{:?}", s.groups.keys());
    }

    #[test]
    fn flapping_notifies_at_most_once_per_group_interval_and_repeats_after_repeat_interval() {
        let d = dispatcher(false, vec![]);
        let mut s = NotifyState::default();
        let mut sent = 0;
        // Fires and resolves every 10 s for ten minutes, flushed every second.
        for t in (0..600_000).step_by(1_000) {
            if t % 10_000 == 0 {
                d.add(&mut s, alert("a", (t / 10_000) % 2 == 0), t);
            }
            d.flush(&mut s, t);
            sent += s.outbox.len() / 2;
            s.outbox.clear();
        }
        assert!((1..=21).contains(&sent), "{sent} notifications for 60 flaps");
        d.add(&mut s, alert("a", true), 600_000);
        d.flush(&mut s, 700_000);
        s.outbox.clear();
        d.add(&mut s, alert("a", true), 4 * 3_600_000 + 700_000);
        d.flush(&mut s, 4 * 3_600_000 + 700_000);
        assert_eq!(s.outbox.len(), 2, "repeat after repeat_interval");
    }

    #[test]
    fn silences_and_inhibitions_mute() {
        let inhibit = Inhibition {
            source: vec!["namespace=a".parse().unwrap()],
            target: vec!["namespace=b".parse().unwrap()],
            equal: vec!["alertname".into()],
        };
        let d = dispatcher(true, vec![inhibit]);
        let mut s = NotifyState::default();
        s.silences.push(Silence::new(
            vec!["namespace=c".parse().unwrap()],
            0,
            60_000,
            "me",
            "maint",
        ));
        for ns in ["a", "b", "c"] {
            d.add(&mut s, alert(ns, true), 0);
        }
        d.flush(&mut s, 5_000);
        let groups: BTreeSet<_> =
            s.outbox.values().map(|n| n.group_labels["namespace"].clone()).collect();
        assert_eq!(groups, BTreeSet::from(["a".to_owned()]));
        s.outbox.clear();
        d.add(&mut s, alert("c", true), 70_000);
        d.flush(&mut s, 70_000);
        assert!(s.outbox.values().any(|n| n.group_labels["namespace"] == "c"), "after expiry");
    }
}
