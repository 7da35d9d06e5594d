//! Generic webhooks: Alertmanager's webhook payload, or the WeCom and Feishu group robots'
//! message formats.

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::config::{WebhookConfig, WebhookFormat};
use crate::dispatch::{Notification, render};
use crate::http::HttpClient;
use crate::notifier::{Notifier, NotifyError};

pub struct Webhook {
    url: String,
    format: WebhookFormat,
    http: HttpClient,
}

impl Webhook {
    pub fn new(config: &WebhookConfig, http: HttpClient) -> Self {
        Self { url: config.url.clone(), format: config.format, http }
    }

    pub fn body(&self, n: &Notification) -> Value {
        let lines: Vec<String> = n
            .alerts
            .iter()
            .map(|a| {
                let state = if a.is_firing() { "FIRING" } else { "RESOLVED" };
                format!("[{state}] {}: {}", a.name(), a.summary())
            })
            .collect();
        let title = format!(
            "[{}:{}] {}",
            n.status().to_uppercase(),
            n.alerts.len(),
            render(&n.group_labels)
        );
        match self.format {
            WebhookFormat::Json => json!({
                "version": "4",
                "groupKey": n.group_key,
                "status": n.status(),
                "receiver": n.receiver,
                "groupLabels": n.group_labels,
                "alerts": n.alerts.iter().map(|a| json!({
                    "status": if a.is_firing() { "firing" } else { "resolved" },
                    "labels": a.labels,
                    "annotations": a.annotations,
                    "startsAt": rfc3339(a.starts_at),
                    "endsAt": a.ends_at.map_or("0001-01-01T00:00:00Z".to_owned(), rfc3339),
                    "fingerprint": format!("{:016x}", a.fingerprint()),
                })).collect::<Vec<_>>(),
            }),
            WebhookFormat::Wecom => json!({
                "msgtype": "markdown",
                "markdown": {"content": format!("**{title}**\n{}", lines.join("\n"))},
            }),
            WebhookFormat::Feishu => json!({
                "msg_type": "text",
                "content": {"text": format!("{title}\n{}", lines.join("\n"))},
            }),
        }
    }
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

#[async_trait]
impl Notifier for Webhook {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    async fn send(&self, notifications: &[Notification]) -> Result<usize, NotifyError> {
        let body = self.body(&notifications[0]).to_string().into_bytes();
        let (status, answer) = self
            .http
            .post(&self.url, "application/json", body)
            .await
            .map_err(|e| NotifyError::Retry(e.message))?;
        match status {
            200..=299 => {
                // WeCom and Feishu answer 200 with a code of their own.
                let answer: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
                let code =
                    answer.get("errcode").or_else(|| answer.get("code")).and_then(Value::as_i64);
                match code {
                    None | Some(0) => Ok(1),
                    Some(code) => {
                        Err(NotifyError::Config(format!("webhook answered code {code}: {answer}")))
                    }
                }
            }
            429 | 500..=599 => Err(NotifyError::Retry(format!("webhook answered HTTP {status}"))),
            _ => Err(NotifyError::Config(format!("webhook answered HTTP {status}"))),
        }
    }
}
