//! One file per service; all implement [`crate::notifier::Notifier`].

pub mod dingtalk;
pub mod email;
pub mod sms;
pub mod webhook;
