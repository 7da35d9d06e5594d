//! The engine on a simulated clock, for `sluice alert test` and `sluice alert backtest`:
//! records fed in time order through the same evaluator, dispatcher and budgets as the running
//! engine, and every message rendered by the same notifiers instead of sent. Delivery always
//! succeeds at once; what remains is what the rules and the budgets make of the records.

use std::collections::BTreeMap;
use std::path::Path;

use sluice_proto::LogRecord;

use crate::AlertError;
use crate::alert::Alert;
use crate::channels::Channels;
use crate::config::AlertsFile;
use crate::dispatch::NotifyState;
use crate::evaluate::{EvalState, Evaluator};
use crate::notifier::{Rendered, next_message};

/// The simulated clock's step: rules evaluate every whole second at most.
const STEP_MS: i64 = 1_000;

/// One message a channel would have sent.
#[derive(Debug, Clone)]
pub struct Message {
    pub at_ms: i64,
    /// `receiver/kind`.
    pub channel: String,
    /// Notifications it carried (more than one: a digest past the budget).
    pub carried: usize,
    pub rendered: Rendered,
}

pub struct Simulation {
    evaluator: Evaluator,
    notify: NotifyState,
    channels: Channels,
    now_ms: i64,
    /// Alerts raised (newly firing) per rule.
    pub firings: BTreeMap<String, u64>,
    /// Notifications the dispatcher created, one per channel.
    pub notifications: u64,
    pub messages: Vec<Message>,
}

impl Simulation {
    /// A fresh engine for `file` starting at `start_ms`; nothing is contacted.
    pub fn new(file: &AlertsFile, path: &Path, start_ms: i64) -> Result<Self, AlertError> {
        let mut evaluator = Evaluator::new(file.rules(), EvalState::default());
        evaluator.evaluate(start_ms);
        Ok(Self {
            evaluator,
            notify: NotifyState::default(),
            channels: Channels::build(file, path)?,
            now_ms: start_ms,
            firings: BTreeMap::new(),
            notifications: 0,
            messages: Vec::new(),
        })
    }

    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    /// Moves the clock to `at_ms` and passes `record` through the rules, as the rule sink does
    /// when the record arrives.
    pub fn observe(&mut self, record: &LogRecord, at_ms: i64) {
        self.advance(at_ms);
        let fired = self.evaluator.observe(record, at_ms);
        self.route(fired);
    }

    /// Runs the clock up to `to_ms` in steps: windows close, groups flush, channels send.
    /// Records observed at one moment are all counted before the next step, as the records of
    /// one frame are before the engine's clock ticks.
    pub fn advance(&mut self, to_ms: i64) {
        while self.now_ms < to_ms {
            self.now_ms = (self.now_ms + STEP_MS).min(to_ms);
            self.tick();
        }
    }

    /// Runs the clock on until every new alert had its `group_wait` and every notification
    /// waiting for a budget went out (at most an hour more): what would still be sent.
    pub fn drain(&mut self) {
        let settle = self.channels.dispatcher.longest_group_wait().as_millis() as i64 + STEP_MS;
        self.advance(self.now_ms + settle);
        let limit = self.now_ms + 3_600_000;
        while !self.notify.outbox.is_empty() && self.now_ms < limit {
            self.advance(self.now_ms + STEP_MS);
        }
    }

    /// The alerts of the rules now: `firing` or `pending`.
    pub fn alerts(&self) -> Vec<(String, Alert)> {
        self.evaluator.firing()
    }

    fn route(&mut self, alerts: Vec<Alert>) {
        for alert in alerts {
            if alert.is_firing() && !self.already_firing(&alert) {
                *self.firings.entry(alert.name().to_owned()).or_default() += 1;
            }
            self.channels.dispatcher.add(&mut self.notify, alert, self.now_ms);
        }
    }

    /// Whether the dispatcher already holds `alert` as firing: a rule restates a firing alert
    /// at every point, and only the first is a firing.
    fn already_firing(&self, alert: &Alert) -> bool {
        let fp = alert.fingerprint();
        self.notify.groups.values().any(|g| g.alerts.get(&fp).is_some_and(Alert::is_firing))
    }

    fn tick(&mut self) {
        let now = self.now_ms;
        let updates = self.evaluator.evaluate(now);
        self.route(updates);
        let before = self.notify.next_id;
        self.channels.dispatcher.flush(&mut self.notify, now);
        self.notifications += self.notify.next_id - before;
        for (channel, notifier) in &self.channels.notifiers {
            loop {
                let due: Vec<_> = self
                    .notify
                    .outbox
                    .values()
                    .filter(|n| &n.channel == channel)
                    .cloned()
                    .collect();
                if due.is_empty() {
                    break;
                }
                let budget = notifier.budget();
                let sent = budget
                    .as_ref()
                    .map(|b| (b, self.notify.sent.entry(b.key.clone()).or_default()));
                let Ok(batch) = next_message(sent, notifier.merges(), due, now) else {
                    break;
                };
                let rendered = notifier.render(&batch);
                let carried = rendered.carried.max(1);
                for n in &batch[..carried.min(batch.len())] {
                    self.notify.outbox.retain(|_, o| !(o.id == n.id && &o.channel == channel));
                }
                self.messages.push(Message {
                    at_ms: now,
                    channel: channel.clone(),
                    carried,
                    rendered,
                });
            }
        }
    }
}
