//! The one trait every notifier implements, so the outbox drives them all alike.

use std::time::Duration;

use async_trait::async_trait;

use crate::dispatch::Notification;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// Not delivered, and sending again later is safe.
    #[error("{0}")]
    Retry(String),
    /// The service refuses more for a while: wait that long, then send again.
    #[error("throttled for {}: {reason}", humantime::format_duration(*wait))]
    Throttled { wait: Duration, reason: String },
    /// A setting is wrong (a secret, a token, an address): sending the same again fails the
    /// same way, so the channel is paused and the error shown until the file is fixed.
    #[error("configuration error: {0}")]
    Config(String),
    /// The request may have been carried out: a channel that is not idempotent must not send
    /// it again.
    #[error("unknown outcome: {0}")]
    Unsure(String),
}

/// A per-minute budget a channel shares with every channel of the same key (one DingTalk robot
/// used by two receivers is one budget).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub key: String,
    pub per_minute: u32,
    /// A second limit some services add (Feishu: 5 a second).
    pub per_second: Option<u32>,
}

/// A message as a channel would send it, built offline for `sluice alert test` and backtests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    /// How many of the notifications it carries (a digest cut at the size limit carries fewer).
    pub carried: usize,
    /// What people read (for webhooks, the body).
    pub text: String,
    /// The request's body size.
    pub bytes: usize,
    /// What the service would refuse or lose: a test that sees one fails.
    pub problems: Vec<String>,
    /// What is sent altered (a parameter cut to the service's length).
    pub warnings: Vec<String>,
}

/// What a channel sends next from `due` (its waiting notifications, oldest first) at `now`.
/// Without a budget: the oldest alone. With one (`sent` the send times it keeps, pruned to the
/// last minute here): `Err(until)` when the minute's (or the second's) budget is spent; else
/// one message, recorded in `sent` — and when the waiting notifications would use up the rest
/// of the minute's budget, a channel that `merges` sends them all as one digest, most urgent
/// first.
pub fn next_message(
    budget: Option<(&Budget, &mut Vec<i64>)>,
    merges: bool,
    mut due: Vec<Notification>,
    now: i64,
) -> Result<Vec<Notification>, i64> {
    let Some((budget, sent)) = budget else {
        due.truncate(1);
        return Ok(due);
    };
    sent.retain(|t| *t > now - 60_000);
    let remaining = budget.per_minute.saturating_sub(sent.len() as u32);
    if remaining == 0 {
        return Err(sent[0] + 60_001);
    }
    if let Some(per_second) = budget.per_second {
        let this_second: Vec<i64> = sent.iter().copied().filter(|t| *t > now - 1_000).collect();
        if this_second.len() as u32 >= per_second {
            // A quarter second more: the service counts from when each request reached it.
            return Err(this_second[0] + 1_250);
        }
    }
    if merges && due.len() as u32 >= remaining {
        due.sort_by_key(|n| (n.rank(), n.created_ms));
    } else {
        due.truncate(1);
    }
    sent.push(now);
    Ok(due)
}

#[async_trait]
pub trait Notifier: Send + Sync {
    /// `dingtalk`, `sms`, `email`, `webhook`.
    fn kind(&self) -> &'static str;

    /// The channel's rate limit, if the service has one.
    fn budget(&self) -> Option<Budget> {
        None
    }

    /// Whether several notifications may go out as one digest message.
    fn merges(&self) -> bool {
        false
    }

    /// Whether sending the same notification twice reaches people twice with no way for the
    /// service to tell: then an [`NotifyError::Unsure`] outcome is not retried.
    fn idempotent(&self) -> bool {
        true
    }

    /// Builds the message [`Notifier::send`] would send for `notifications`, without sending it.
    fn render(&self, notifications: &[Notification]) -> Rendered;

    /// Sends `notifications` (one, or several when [`Notifier::merges`]) as one message;
    /// returns how many it carried — a digest cut at the service's size limit carries fewer,
    /// and the rest go in the next message.
    async fn send(&self, notifications: &[Notification]) -> Result<usize, NotifyError>;
}
