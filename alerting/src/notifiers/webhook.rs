//! Generic webhooks: Alertmanager's webhook payload, or the WeCom and Feishu group robots'
//! message formats.

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::config::{WebhookConfig, WebhookFormat};
use crate::dispatch::{Notification, render};
use crate::http::HttpClient;
use crate::notifier::{Notifier, NotifyError, Rendered};

/// WeCom's markdown `content` limit, in bytes.
const WECOM_MAX_CONTENT: usize = 4096;
/// Feishu's request body limit, in bytes.
const FEISHU_MAX_BODY: usize = 20 * 1024;

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
                "markdown": {"content": fit(format!("**{title}**"), &lines, WECOM_MAX_CONTENT)},
            }),
            WebhookFormat::Feishu => json!({
                "msg_type": "text",
                // The body's JSON around the text and its escapes need room too.
                "content": {"text": fit(title, &lines, FEISHU_MAX_BODY * 3 / 4)},
            }),
        }
    }
}

/// The title and as many alert lines as fit in `max` bytes, then how many did not.
fn fit(title: String, lines: &[String], max: usize) -> String {
    let mut text = title;
    for (i, line) in lines.iter().enumerate() {
        // Room for the note is kept whether or not it is needed: the text never passes `max`.
        if text.len() + 1 + line.len() + CUT_NOTE.len() + 24 > max {
            let cut = lines.len() - i;
            text.push_str(&format!("\n… {cut}{CUT_NOTE}"));
            return text;
        }
        text.push('\n');
        text.push_str(line);
    }
    text
}

const CUT_NOTE: &str = " more alerts not shown: the message is at the service's size limit";

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

    fn render(&self, notifications: &[Notification]) -> Rendered {
        let body = self.body(&notifications[0]);
        let text = match self.format {
            WebhookFormat::Json => serde_json::to_string_pretty(&body).expect("json"),
            WebhookFormat::Wecom => body["markdown"]["content"].as_str().unwrap_or("").to_owned(),
            WebhookFormat::Feishu => body["content"]["text"].as_str().unwrap_or("").to_owned(),
        };
        let bytes = body.to_string().len();
        let mut problems = Vec::new();
        if self.format == WebhookFormat::Wecom && text.len() > WECOM_MAX_CONTENT {
            problems.push(format!(
                "the WeCom markdown is {} bytes, the robot takes {WECOM_MAX_CONTENT}",
                text.len()
            ));
        }
        if self.format == WebhookFormat::Feishu && bytes > FEISHU_MAX_BODY {
            problems
                .push(format!("the Feishu body is {bytes} bytes, the bot takes {FEISHU_MAX_BODY}"));
        }
        let mut warnings = Vec::new();
        if text.contains(CUT_NOTE) {
            warnings.push(format!(
                "{} alerts, cut at the service's size limit",
                notifications[0].alerts.len()
            ));
        }
        Rendered { carried: 1, text, bytes, problems, warnings }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{Alert, Labels};

    fn notification(alerts: usize) -> Notification {
        Notification {
            id: "1-0".into(),
            channel: "chat/webhook".into(),
            receiver: "chat".into(),
            group_key: "g".into(),
            group_labels: Labels::from([("alertname".into(), "errors".into())]),
            alerts: (0..alerts)
                .map(|i| Alert {
                    labels: Labels::from([
                        ("alertname".into(), "errors".into()),
                        ("namespace".into(), format!("team-{i:04}")),
                    ]),
                    annotations: Labels::from([(
                        "summary".into(),
                        format!("team-{i:04} 支付失败 and a long explanation of what to do"),
                    )]),
                    starts_at: 0,
                    ends_at: None,
                })
                .collect(),
            created_ms: 0,
            next_try_ms: 0,
            attempts: 0,
        }
    }

    fn hook(format: WebhookFormat) -> Webhook {
        let config = WebhookConfig { url: "http://127.0.0.1:1/".into(), format };
        Webhook::new(&config, HttpClient::new(None).unwrap())
    }

    #[test]
    fn robots_get_what_fits_their_limit_and_how_many_did_not() {
        let wecom = hook(WebhookFormat::Wecom).render(&[notification(300)]);
        assert!(wecom.problems.is_empty(), "{:?}", wecom.problems);
        assert!(wecom.text.len() <= WECOM_MAX_CONTENT, "{}", wecom.text.len());
        assert!(wecom.text.contains("team-0000") && wecom.text.contains(CUT_NOTE));
        assert_eq!(wecom.warnings.len(), 1);
        let feishu = hook(WebhookFormat::Feishu).render(&[notification(3000)]);
        assert!(feishu.problems.is_empty(), "{:?}", feishu.problems);
        assert!(feishu.bytes <= FEISHU_MAX_BODY, "{}", feishu.bytes);
        let small = hook(WebhookFormat::Wecom).render(&[notification(3)]);
        assert!(small.warnings.is_empty() && small.text.contains("team-0002"));
        let json = hook(WebhookFormat::Json).render(&[notification(3000)]);
        assert!(json.text.contains("team-2999"), "the JSON webhook carries every alert");
    }
}
