//! Generic webhooks (Alertmanager's webhook payload, one notification a request) and the WeCom
//! (企业微信) and Feishu (飞书) group robots. The robots limit messages a minute (WeCom 20,
//! Feishu 100) and the size of one: past the budget notifications merge into one digest
//! ([`Notifier::merges`]), and a message is cut at the size limit saying how many follow. A
//! Feishu bot with a signing secret gets `timestamp` and `sign` in every body.

use async_trait::async_trait;
use base64::Engine;
use serde_json::{Value, json};

use crate::config::{Secret, WebhookConfig, WebhookFormat};
use crate::dispatch::Notification;
use crate::http::HttpClient;
use crate::notifier::{Budget, Notifier, NotifyError, Rendered};
use crate::notifiers::digest::{self, Style};

/// WeCom's markdown `content` limit, in bytes.
const WECOM_MAX_CONTENT: usize = 4096;
/// Feishu's request body limit, in bytes.
const FEISHU_MAX_BODY: usize = 20 * 1024;
/// Feishu's bots also take at most 5 a second.
const FEISHU_PER_SECOND: u32 = 5;

pub struct Webhook {
    url: String,
    format: WebhookFormat,
    secret: Option<Secret>,
    limit: Option<u32>,
    http: HttpClient,
}

impl Webhook {
    pub fn new(config: &WebhookConfig, secret: Option<Secret>, http: HttpClient) -> Self {
        Self { url: config.url.clone(), format: config.format, secret, limit: config.limit(), http }
    }

    /// The body for as many of `notifications` as the format carries (a plain webhook one, a
    /// robot what fits its size limit), and how many that is.
    pub fn body(&self, notifications: &[Notification], now_ms: i64) -> (Value, usize) {
        match self.format {
            WebhookFormat::Json => (alertmanager_payload(&notifications[0]), 1),
            WebhookFormat::Wecom => {
                let (text, carried) = digest::fit(
                    notifications,
                    WECOM_MAX_CONTENT,
                    |shown, more| digest::text(shown, more, Style::Markdown).1,
                    String::len,
                );
                let text = match text.len() {
                    n if n > WECOM_MAX_CONTENT => digest::cut(&text, n - WECOM_MAX_CONTENT),
                    _ => text,
                };
                (json!({"msgtype": "markdown", "markdown": {"content": text}}), carried)
            }
            WebhookFormat::Feishu => {
                let (body, carried) = digest::fit(
                    notifications,
                    FEISHU_MAX_BODY,
                    |shown, more| self.feishu(digest::text(shown, more, Style::Plain).1, now_ms),
                    |b| b.to_string().len(),
                );
                let size = body.to_string().len();
                if size <= FEISHU_MAX_BODY {
                    return (body, carried);
                }
                let text = body["content"]["text"].as_str().unwrap_or("").to_owned();
                (self.feishu(digest::cut(&text, size - FEISHU_MAX_BODY), now_ms), 1)
            }
        }
    }

    fn feishu(&self, text: String, now_ms: i64) -> Value {
        let mut body = json!({"msg_type": "text", "content": {"text": text}});
        if let Some(secret) = &self.secret {
            let timestamp = (now_ms / 1000).to_string();
            body["timestamp"] = json!(timestamp);
            body["sign"] = json!(feishu_sign(&secret.0, &timestamp));
        }
        body
    }
}

/// `base64(HMAC-SHA256(key = "{timestamp}\n{secret}", message = ""))`, Feishu's bot signature.
pub fn feishu_sign(secret: &str, timestamp: &str) -> String {
    let key =
        ring::hmac::Key::new(ring::hmac::HMAC_SHA256, format!("{timestamp}\n{secret}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(ring::hmac::sign(&key, b"").as_ref())
}

/// Alertmanager's webhook payload (version 4) for one notification.
fn alertmanager_payload(n: &Notification) -> Value {
    json!({
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
    })
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

    fn budget(&self) -> Option<Budget> {
        let per_minute = self.limit?;
        // One budget per robot, whichever receivers use it; the URL holds its key.
        Some(Budget {
            key: format!("webhook:{:016x}", xxhash_rust::xxh3::xxh3_64(self.url.as_bytes())),
            per_minute: per_minute - 1,
            per_second: (self.format == WebhookFormat::Feishu).then_some(FEISHU_PER_SECOND),
        })
    }

    fn merges(&self) -> bool {
        self.format != WebhookFormat::Json
    }

    fn render(&self, notifications: &[Notification]) -> Rendered {
        let (body, carried) = self.body(notifications, chrono::Utc::now().timestamp_millis());
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
        if text.contains("\n\n… cut: ") {
            warnings.push(format!(
                "{} alerts in one notification, cut at the service's size limit",
                notifications[0].alerts.len()
            ));
        }
        Rendered { carried, text, bytes, problems, warnings }
    }

    async fn send(&self, notifications: &[Notification]) -> Result<usize, NotifyError> {
        let (body, carried) = self.body(notifications, chrono::Utc::now().timestamp_millis());
        let (status, answer) = self
            .http
            .post(&self.url, "application/json", body.to_string().into_bytes())
            .await
            .map_err(|e| NotifyError::Retry(e.message))?;
        match status {
            200..=299 => {
                // WeCom (`errcode`) and Feishu (`code`) answer 200 with a code of their own.
                let answer: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
                let code =
                    answer.get("errcode").or_else(|| answer.get("code")).and_then(Value::as_i64);
                let throttled = |reason: String| NotifyError::Throttled {
                    wait: std::time::Duration::from_secs(60),
                    reason,
                };
                match (self.format, code) {
                    (_, None | Some(0)) => Ok(carried),
                    (WebhookFormat::Wecom, Some(45009)) | (WebhookFormat::Feishu, Some(11232)) => {
                        Err(throttled(format!("the robot answered code {code:?}: {answer}")))
                    }
                    (_, Some(code)) => {
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
        let config = WebhookConfig {
            url: "http://127.0.0.1:1/".into(),
            format,
            secret: None,
            secret_file: None,
            per_minute: None,
        };
        Webhook::new(&config, None, HttpClient::new(None).unwrap())
    }

    #[test]
    fn robots_get_what_fits_their_limit_and_how_many_did_not() {
        let wecom = hook(WebhookFormat::Wecom).render(&[notification(300)]);
        assert!(wecom.problems.is_empty(), "{:?}", wecom.problems);
        assert!(wecom.text.len() <= WECOM_MAX_CONTENT, "{}", wecom.text.len());
        assert!(wecom.text.contains("team-0000") && wecom.text.contains("… cut: "));
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
