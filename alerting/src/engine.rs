//! The running whole: the rule sink that counts records from its own WAL cursor, a clock that
//! closes windows and flushes groups, and one delivery task per channel draining the outbox.
//!
//! Two state files, each replaced atomically: `rules.json` (the rules' counts with the WAL
//! position they cover, saved when the sink flushes) and `notify.json` (groups, what was
//! notified, the outbox, the channels' sending times, silences — saved before anything in it
//! is sent and after each delivery). A `kill -9` at any moment replays records from the
//! cursor (the same alerts, already known) and sends what the outbox still holds. One narrow
//! window is left: a message the service took just before the kill, whose removal from the
//! outbox was not yet saved, is sent again — at-least-once, as no notifier API here takes an
//! idempotency key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sluice_collector::sink::{Sink, SinkError};
use sluice_collector::wal::Wal;
use sluice_collector::wal_frame::Frame;
use tokio::sync::{Notify, watch};

use crate::AlertError;
use crate::alert::Alert;
use crate::channels::Channels;
use crate::config::{AlertsFile, MetricRule};
use crate::dispatch::{Dispatcher, Notification, NotifyState};
use crate::evaluate::{EvalState, Evaluator};
use crate::history::{History, seed};
use crate::http::HttpClient;
use crate::metric_rules::MetricState;
use crate::notifier::{Notifier, NotifyError, next_message};
use crate::silence::Silence;

/// The state files' format; a file of another version is refused with a clear error rather
/// than misread.
const STATE_VERSION: u32 = 1;
/// How often windows are closed and groups flushed.
const TICK: Duration = Duration::from_millis(100);
/// A channel whose settings are wrong is tried again this rarely, not in a loop.
const CONFIG_RETRY: Duration = Duration::from_secs(600);
const RETRY_MAX: Duration = Duration::from_secs(300);

/// The state beside its format version (not flattened: serde's `flatten` cannot read maps with
/// integer keys back).
#[derive(Serialize, Deserialize)]
struct Versioned<T> {
    version: u32,
    state: T,
}

/// How a channel is doing, for logs, metrics and `/api/v1/alerts/status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChannelStatus {
    pub channel: String,
    pub state: String,
    pub last_error: Option<String>,
    pub sent: u64,
    pub merged: u64,
    pub queued: usize,
}

struct Shared {
    evaluator: Mutex<Evaluator>,
    metrics: Mutex<MetricState>,
    metric_rules: Vec<MetricRule>,
    notify: Mutex<NotifyState>,
    dispatcher: Dispatcher,
    /// The end of the last frame the sink took.
    written: AtomicU64,
    wake: Notify,
    statuses: Mutex<BTreeMap<String, ChannelStatus>>,
    dir: PathBuf,
    evaluation_delay: Duration,
    save: Mutex<()>,
}

/// The handle the application keeps: status, alerts, silences.
#[derive(Clone)]
pub struct Alerting {
    shared: Arc<Shared>,
}

/// The sink the collector's runner feeds from the alerting's own WAL cursor.
pub struct RuleSink {
    shared: Arc<Shared>,
}

impl Alerting {
    /// Opens the state under `dir`, builds the notifiers and starts the clock and the
    /// deliveries; the returned sink must be registered with the WAL's runner.
    pub fn start(
        file: &AlertsFile,
        file_path: &Path,
        dir: &Path,
        wal: Arc<Wal>,
        history: Option<&dyn History>,
        stop: watch::Receiver<bool>,
    ) -> Result<(Self, RuleSink), AlertError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| AlertError::State { path: dir.to_owned(), message: e.to_string() })?;
        // On the first start rules judge what arrives from now on, not the history the WAL
        // holds: the cursor starts at the WAL's end, saved at once so that a crash before the
        // first flush replays from there rather than skipping to a later end.
        let eval = match load(&dir.join("rules.json"))? {
            Some(eval) => eval,
            None => {
                let eval = EvalState { cursor: wal.end(), ..EvalState::default() };
                save(&dir.join("rules.json"), &eval)?;
                eval
            }
        };
        let notify: NotifyState = load(&dir.join("notify.json"))?.unwrap_or_default();
        let metrics: MetricState = load(&dir.join("metric_rules.json"))?.unwrap_or_default();
        let Channels { notifiers: channels, dispatcher } = Channels::build(file, file_path)?;
        let cursor = eval.cursor;
        let mut evaluator = Evaluator::new(file.rules(), eval);
        let mut notify = notify;
        if let Some(history) = history {
            seed(&mut evaluator, &mut notify, &dispatcher, history);
        }
        let shared = Arc::new(Shared {
            written: AtomicU64::new(cursor),
            evaluator: Mutex::new(evaluator),
            metrics: Mutex::new(metrics),
            metric_rules: file.metric_rules(),
            notify: Mutex::new(notify),
            dispatcher,
            wake: Notify::new(),
            statuses: Mutex::new(
                channels
                    .iter()
                    .map(|(k, _)| {
                        (
                            k.clone(),
                            ChannelStatus {
                                channel: k.clone(),
                                state: "ok".into(),
                                ..Default::default()
                            },
                        )
                    })
                    .collect(),
            ),
            dir: dir.to_owned(),
            evaluation_delay: file.evaluation_delay,
            save: Mutex::new(()),
        });
        tokio::spawn(clock(shared.clone(), wal.clone(), stop.clone()));
        if let Some(prometheus) = &file.prometheus {
            let client = HttpClient::new(prometheus.ca_file.as_deref())
                .map_err(|m| AlertError::Config { path: file_path.to_owned(), message: m })?;
            for i in 0..shared.metric_rules.len() {
                let (url, timeout) = (prometheus.url.clone(), prometheus.timeout);
                let (shared, client, stop) = (shared.clone(), client.clone(), stop.clone());
                tokio::spawn(ask_prometheus(shared, i, client, url, timeout, stop));
            }
        }
        for (key, notifier) in channels {
            tokio::spawn(deliver(shared.clone(), key, notifier, stop.clone()));
        }
        Ok((Self { shared: shared.clone() }, RuleSink { shared }))
    }

    /// Firing and pending alerts of the rules, and the silences' effect.
    pub fn alerts(&self) -> Vec<(String, Alert)> {
        let now = now_ms();
        let mut alerts = self.shared.evaluator.lock().expect("poisoned").firing();
        let metrics = self.shared.metrics.lock().expect("poisoned");
        for rule in &self.shared.metric_rules {
            for a in metrics.get(&rule.name).into_iter().flat_map(|m| m.values()) {
                let state = if a.firing_since_ms.is_some() { "firing" } else { "pending" };
                let since = a.firing_since_ms.unwrap_or(a.active_since_ms);
                alerts.push((state.to_owned(), rule.alert(a, since, None)));
            }
        }
        drop(metrics);
        let notify = self.shared.notify.lock().expect("poisoned");
        // What Prometheus or an Alertmanager pushed and still fires.
        alerts.extend(notify.pushed.values().map(|(_, a)| ("firing".to_owned(), a.clone())));
        for (state, alert) in &mut alerts {
            if notify.silences.iter().any(|s| s.mutes(alert, now)) {
                *state = "silenced".to_owned();
            }
        }
        alerts
    }

    pub fn statuses(&self) -> Vec<ChannelStatus> {
        let queued = {
            let notify = self.shared.notify.lock().expect("poisoned");
            let mut q: BTreeMap<String, usize> = BTreeMap::new();
            for n in notify.outbox.values() {
                *q.entry(n.channel.clone()).or_default() += 1;
            }
            q
        };
        let mut out: Vec<ChannelStatus> =
            self.shared.statuses.lock().expect("poisoned").values().cloned().collect();
        for s in &mut out {
            s.queued = queued.get(&s.channel).copied().unwrap_or(0);
        }
        out
    }

    pub fn silences(&self) -> Vec<Silence> {
        self.shared.notify.lock().expect("poisoned").silences.clone()
    }

    /// Takes alerts from elsewhere (Prometheus's push, an Alertmanager webhook) into the same
    /// grouping, budgets and channels. A firing alert with an `expires_ms` resolves then unless
    /// pushed again, as Alertmanager treats `endsAt`.
    pub fn receive(&self, alerts: Vec<(Alert, Option<i64>)>) -> Result<usize, AlertError> {
        let now = now_ms();
        let count = alerts.len();
        {
            let mut notify = self.shared.notify.lock().expect("poisoned");
            for (alert, expires) in alerts {
                let fp = alert.fingerprint();
                match expires {
                    Some(at) if alert.is_firing() => {
                        notify.pushed.insert(fp, (at, alert.clone()));
                    }
                    _ => {
                        notify.pushed.remove(&fp);
                    }
                }
                self.shared.dispatcher.add(&mut notify, alert, now);
            }
        }
        save_notify(&self.shared)?;
        Ok(count)
    }

    /// Adds a silence, durably; returns its id.
    pub fn add_silence(&self, silence: Silence) -> Result<String, AlertError> {
        let id = silence.id.clone();
        self.shared.notify.lock().expect("poisoned").silences.push(silence);
        save_notify(&self.shared)?;
        Ok(id)
    }

    /// Ends a silence now; whether it existed.
    pub fn expire_silence(&self, id: &str) -> Result<bool, AlertError> {
        let found = {
            let mut notify = self.shared.notify.lock().expect("poisoned");
            let now = now_ms();
            let mut found = false;
            for s in notify.silences.iter_mut().filter(|s| s.id == id && s.ends_at_ms > now) {
                s.ends_at_ms = now;
                found = true;
            }
            found
        };
        save_notify(&self.shared)?;
        Ok(found)
    }
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[async_trait]
impl Sink for RuleSink {
    fn name(&self) -> &str {
        "alerts"
    }

    /// Where the counts left off.
    async fn open(&mut self) -> Result<u64, SinkError> {
        let cursor = self.shared.evaluator.lock().expect("poisoned").state().cursor;
        self.shared.written.store(cursor, Ordering::SeqCst);
        Ok(cursor)
    }

    async fn write(&mut self, frame: Arc<Frame>, end: u64) -> Result<(), SinkError> {
        let now = now_ms();
        let fired: Vec<Alert> = {
            let mut evaluator = self.shared.evaluator.lock().expect("poisoned");
            frame.records().iter().flat_map(|r| evaluator.observe(r, now)).collect()
        };
        if !fired.is_empty() {
            let mut notify = self.shared.notify.lock().expect("poisoned");
            for alert in fired {
                self.shared.dispatcher.add(&mut notify, alert, now);
            }
        }
        self.shared.written.store(end, Ordering::SeqCst);
        Ok(())
    }

    async fn flush(&mut self) -> Result<u64, SinkError> {
        let cursor = self.shared.written.load(Ordering::SeqCst);
        let state = {
            let mut evaluator = self.shared.evaluator.lock().expect("poisoned");
            evaluator.set_cursor(cursor);
            evaluator.state().clone()
        };
        let path = self.shared.dir.join("rules.json");
        tokio::task::spawn_blocking(move || save(&path, &state))
            .await
            .map_err(|e| SinkError(e.to_string()))?
            .map_err(|e| SinkError(e.to_string()))?;
        Ok(cursor)
    }

    async fn healthcheck(&self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Closes windows up to the watermark and flushes due groups, saving before the deliveries
/// see anything new. The watermark is the latest moment by which everything the WAL had taken
/// has passed through the rules, less the evaluation delay.
async fn clock(shared: Arc<Shared>, wal: Arc<Wal>, mut stop: watch::Receiver<bool>) {
    let mut samples: std::collections::VecDeque<(i64, u64)> = Default::default();
    let mut watermark = i64::MIN;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = now_ms();
        samples.push_back((now, wal.end()));
        let written = shared.written.load(Ordering::SeqCst);
        while let Some(&(at, end)) = samples.front() {
            if end > written {
                break;
            }
            watermark = at - shared.evaluation_delay.as_millis() as i64;
            samples.pop_front();
        }
        let changed = {
            let updates = if watermark > i64::MIN {
                shared.evaluator.lock().expect("poisoned").evaluate(watermark)
            } else {
                Vec::new()
            };
            let mut notify = shared.notify.lock().expect("poisoned");
            for alert in updates {
                shared.dispatcher.add(&mut notify, alert, now);
            }
            let expired: Vec<u64> =
                notify.pushed.iter().filter(|(_, (at, _))| *at <= now).map(|(fp, _)| *fp).collect();
            for fp in expired {
                let (at, mut alert) = notify.pushed.remove(&fp).expect("listed");
                alert.ends_at = Some(at);
                shared.dispatcher.add(&mut notify, alert, now);
            }
            shared.dispatcher.flush(&mut notify, now)
        };
        if changed {
            match save_notify(&shared) {
                Ok(()) => shared.wake.notify_waiters(),
                Err(e) => {
                    tracing::error!(error = %e, "cannot save the alerting state; notifications wait")
                }
            }
        }
    }
}

/// Evaluates metric rule `i` every `every` against Prometheus, routes what fires and resolves
/// and saves the series' state. A query that fails is logged and counted, and changes nothing.
async fn ask_prometheus(
    shared: Arc<Shared>,
    i: usize,
    client: HttpClient,
    url: String,
    timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let rule = &shared.metric_rules[i];
    let mut ticks = tokio::time::interval(rule.every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = now_ms();
        let samples = match crate::metric_rules::query(&client, &url, &rule.expr, now, timeout)
            .await
        {
            Ok(samples) => samples,
            Err(e) => {
                tracing::warn!(rule = %rule.name, error = %e, "metric rule: the query failed");
                metrics::counter!("sluice_alerting_rule_failures_total", "rule" => rule.name.clone())
                        .increment(1);
                continue;
            }
        };
        metrics::counter!("sluice_alerting_rule_evaluations_total", "rule" => rule.name.clone())
            .increment(1);
        let state = {
            let mut all = shared.metrics.lock().expect("poisoned");
            let active = all.entry(rule.name.clone()).or_default();
            let alerts = rule.step(active, samples, now);
            let mut notify = shared.notify.lock().expect("poisoned");
            for alert in alerts {
                shared.dispatcher.add(&mut notify, alert, now);
            }
            all.clone()
        };
        let path = shared.dir.join("metric_rules.json");
        match tokio::task::spawn_blocking(move || save(&path, &state)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot save the metric rules' state"),
            Err(e) => tracing::error!(error = %e, "cannot save the metric rules' state"),
        }
    }
}

/// Sends one channel's notifications from the outbox, in order, within its budget.
async fn deliver(
    shared: Arc<Shared>,
    channel: String,
    notifier: Arc<dyn Notifier>,
    mut stop: watch::Receiver<bool>,
) {
    let budget = notifier.budget();
    let mut paused_until = 0i64;
    loop {
        if *stop.borrow() {
            return;
        }
        let now = now_ms();
        let mut due: Vec<Notification> = {
            let notify = shared.notify.lock().expect("poisoned");
            notify.outbox.values().filter(|n| n.channel == channel).cloned().collect()
        };
        let next_try = due.iter().map(|n| n.next_try_ms).min();
        due.retain(|n| n.next_try_ms <= now);
        let wait_until = match (due.is_empty(), next_try) {
            _ if paused_until > now => Some(paused_until),
            (true, Some(t)) => Some(t),
            (true, None) => Some(now + 1_000),
            (false, _) => None,
        };
        if let Some(until) = wait_until {
            let nap = Duration::from_millis((until - now).clamp(1, 1_000) as u64);
            tokio::select! {
                _ = tokio::time::sleep(nap) => {}
                _ = shared.wake.notified() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            continue;
        }
        let batch = {
            let mut notify = shared.notify.lock().expect("poisoned");
            let sent = budget.as_ref().map(|b| (b, notify.sent.entry(b.key.clone()).or_default()));
            next_message(sent, notifier.merges(), due, now)
        };
        let due = match batch {
            Ok(batch) => batch,
            Err(until) => {
                paused_until = until;
                continue;
            }
        };
        if budget.is_some()
            && let Err(e) = save_notify(&shared)
        {
            tracing::error!(error = %e, "cannot save the alerting state");
            paused_until = now + 1_000;
            continue;
        }
        let result = notifier.send(&due).await;
        let now = now_ms();
        let mut status =
            shared.statuses.lock().expect("poisoned").get(&channel).cloned().unwrap_or_default();
        let remove = match &result {
            Ok(carried) => {
                status.state = "ok".into();
                status.sent += 1;
                if *carried > 1 {
                    status.merged += *carried as u64;
                    tracing::info!(%channel, merged = carried, "sent a digest");
                }
                metrics::counter!("sluice_alerting_messages_total", "channel" => channel.clone(), "outcome" => "sent").increment(1);
                metrics::counter!("sluice_alerting_notifications_total", "channel" => channel.clone(), "outcome" => "delivered").increment(*carried as u64);
                metrics::gauge!("sluice_alerting_channel_config_error", "channel" => channel.clone()).set(0.0);
                due[..*carried].iter().map(|n| n.id.clone()).collect()
            }
            Err(NotifyError::Throttled { wait, .. }) => {
                paused_until = now + wait.as_millis() as i64;
                status.state = "throttled".into();
                status.last_error = result.as_ref().err().map(ToString::to_string);
                tracing::warn!(%channel, error = %result.as_ref().unwrap_err(), "channel throttled; waiting");
                metrics::counter!("sluice_alerting_messages_total", "channel" => channel.clone(), "outcome" => "throttled").increment(1);
                Vec::new()
            }
            Err(NotifyError::Config(message)) => {
                paused_until = now + CONFIG_RETRY.as_millis() as i64;
                status.state = "config_error".into();
                status.last_error = Some(message.clone());
                tracing::error!(%channel, error = %message, "notification channel misconfigured; not retrying for {}", humantime::format_duration(CONFIG_RETRY));
                metrics::counter!("sluice_alerting_messages_total", "channel" => channel.clone(), "outcome" => "config_error").increment(1);
                metrics::gauge!("sluice_alerting_channel_config_error", "channel" => channel.clone()).set(1.0);
                Vec::new()
            }
            Err(NotifyError::Unsure(message)) if !notifier.idempotent() => {
                status.last_error = Some(message.clone());
                tracing::error!(%channel, error = %message, "a notification may not have been delivered; not sent again, the service is not idempotent");
                metrics::counter!("sluice_alerting_messages_total", "channel" => channel.clone(), "outcome" => "unsure").increment(1);
                vec![due[0].id.clone()]
            }
            Err(e) => {
                status.state = "retrying".into();
                status.last_error = Some(e.to_string());
                tracing::warn!(%channel, error = %e, "notification not delivered; will retry");
                metrics::counter!("sluice_alerting_messages_total", "channel" => channel.clone(), "outcome" => "retry").increment(1);
                let mut notify = shared.notify.lock().expect("poisoned");
                for n in
                    notify.outbox.values_mut().filter(|n| n.id == due[0].id && n.channel == channel)
                {
                    n.attempts += 1;
                    let backoff = Duration::from_secs(1 << n.attempts.min(9)).min(RETRY_MAX);
                    n.next_try_ms = now + backoff.as_millis() as i64;
                }
                Vec::new()
            }
        };
        shared.statuses.lock().expect("poisoned").insert(channel.clone(), status);
        if !remove.is_empty() {
            shared
                .notify
                .lock()
                .expect("poisoned")
                .outbox
                .retain(|_, n| n.channel != channel || !remove.contains(&n.id));
        }
        if let Err(e) = save_notify(&shared) {
            tracing::error!(error = %e, "cannot save the alerting state");
        }
    }
}

fn save_notify(shared: &Shared) -> Result<(), AlertError> {
    // One writer at a time, with the state as it is when its turn comes.
    let _turn = shared.save.lock().expect("poisoned");
    let state = shared.notify.lock().expect("poisoned").clone();
    save(&shared.dir.join("notify.json"), &state)
}

/// Replaces `path` atomically and durably.
fn save<T: Serialize>(path: &Path, state: &T) -> Result<(), AlertError> {
    let err = |e: String| AlertError::State { path: path.to_owned(), message: e };
    let bytes = serde_json::to_vec(&Versioned { version: STATE_VERSION, state })
        .map_err(|e| err(e.to_string()))?;
    sluice_collector::durable::replace(path, &bytes).map_err(|e| err(e.to_string()))
}

fn load<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, AlertError> {
    let err = |m: String| AlertError::State { path: path.to_owned(), message: m };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(e.to_string())),
    };
    let version: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))?;
    match version.get("version").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(STATE_VERSION) => {}
        v => {
            return Err(err(format!(
                "state format {v:?} is not {STATE_VERSION}, the one this release reads"
            )));
        }
    }
    let state: Versioned<T> = serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))?;
    Ok(Some(state.state))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::alert::Labels;
    use crate::config::RouteConfig;
    use crate::dispatch::ReceiverChannels;
    use crate::route::Route;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/state-v1").join(name)
    }

    /// Files a release of format 1 wrote (a `sluice up` killed mid-storm) are read, and
    /// nothing already notified is notified again from them.
    #[test]
    fn state_files_of_format_1_are_read() {
        let eval: EvalState = load(&fixture("rules.json")).unwrap().unwrap();
        assert!(eval.cursor > 0);
        assert!(eval.rules.contains_key("pod-errors"));
        let mut notify: NotifyState = load(&fixture("notify.json")).unwrap().unwrap();
        assert_eq!(notify.groups.len(), 20);
        assert!(notify.log.values().all(|n| n.firing.len() == 1));
        let route: RouteConfig =
            yaml_serde::from_str("{receiver: oncall, group_by: [rule, namespace]}").unwrap();
        let receivers = BTreeMap::from([(
            "oncall".to_owned(),
            ReceiverChannels { send_resolved: false, channels: vec!["oncall/dingtalk".into()] },
        )]);
        let dispatcher = Dispatcher::new(Route::new(&route), receivers, Vec::new());
        let later = notify.groups.values().map(|g| g.next_flush_ms).max().unwrap() + 1;
        dispatcher.flush(&mut notify, later);
        assert!(notify.outbox.is_empty(), "{:?}", notify.outbox.keys());
    }

    #[test]
    fn state_round_trips_with_its_outbox_and_refuses_other_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.json");
        let mut state = NotifyState::default();
        let alert = Alert {
            labels: Labels::from([("alertname".to_owned(), "x".to_owned())]),
            annotations: Labels::new(),
            starts_at: 1,
            ends_at: None,
        };
        state.outbox.insert(
            7,
            Notification {
                id: "7-a".into(),
                channel: "r/sms".into(),
                receiver: "r".into(),
                group_key: "g".into(),
                group_labels: Labels::new(),
                alerts: vec![alert.clone()],
                created_ms: 1,
                next_try_ms: 2,
                attempts: 1,
            },
        );
        state.log.insert(
            "g".into(),
            crate::dispatch::Notified { firing: [alert.fingerprint()].into(), at_ms: 3 },
        );
        state.sent.insert("dingtalk:1".into(), vec![1, 2]);
        save(&path, &state).unwrap();
        let back: NotifyState = load(&path).unwrap().unwrap();
        assert_eq!(back.outbox[&7], state.outbox[&7]);
        assert_eq!(back.log["g"].firing, state.log["g"].firing);
        std::fs::write(&path, r#"{"version":2,"state":{}}"#).unwrap();
        let err = load::<NotifyState>(&path).unwrap_err().to_string();
        assert!(err.contains("state format Some(2) is not 1"), "{err}");
    }
}
