//! One file per service; all implement [`crate::notifier::Notifier`]. `digest` is the chat
//! robots' shared message text.

pub mod digest;
pub mod dingtalk;
pub mod email;
pub mod sms;
pub mod webhook;
