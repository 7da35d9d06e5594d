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

    /// Sends `notifications` (one, or several when [`Notifier::merges`]) as one message;
    /// returns how many it carried — a digest cut at the service's size limit carries fewer,
    /// and the rest go in the next message.
    async fn send(&self, notifications: &[Notification]) -> Result<usize, NotifyError>;
}
