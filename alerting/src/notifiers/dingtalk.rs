//! DingTalk custom robots (`shared/specs/notifiers.md`): a fresh timestamp and signature per
//! request, markdown or text bodies within 20,000 bytes with every `@mobile` also in the text,
//! HTTP 200 answers read for their `errcode`. The robot allows 20 messages a minute; the
//! outbox keeps under that ([`Notifier::budget`]) and merges what would not fit into one
//! digest ([`Notifier::merges`]).

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use serde_json::{Value, json};

use crate::config::{DingTalkConfig, DingTalkType, Secret};
use crate::dispatch::Notification;
use crate::http::HttpClient;
use crate::notifier::{Budget, Notifier, NotifyError, Rendered};
use crate::notifiers::digest::{self, Style};

/// The robot refuses longer bodies (`460101`).
pub const MAX_BODY_BYTES: usize = 20_000;

pub struct DingTalk {
    webhook: String,
    secret: Option<Secret>,
    at_mobiles: Vec<String>,
    msgtype: DingTalkType,
    per_minute: u32,
    throttle_wait: Duration,
    http: HttpClient,
}

impl DingTalk {
    pub fn new(config: &DingTalkConfig, secret: Option<Secret>, http: HttpClient) -> Self {
        Self {
            webhook: config.webhook.clone(),
            secret,
            at_mobiles: config.at_mobiles.clone(),
            msgtype: config.msgtype,
            per_minute: config.per_minute,
            throttle_wait: config.throttle_wait,
            http,
        }
    }

    /// The body for as many of `notifications` as fit in [`MAX_BODY_BYTES`], most urgent
    /// first, and how many that is.
    pub fn body(&self, notifications: &[Notification]) -> (Value, usize) {
        let (body, carried) = digest::fit(
            notifications,
            MAX_BODY_BYTES,
            |shown, more| self.message(shown, more),
            |body| body.to_string().len(),
        );
        let size = body.to_string().len();
        if size <= MAX_BODY_BYTES {
            return (body, carried);
        }
        let pointer = self.text_pointer();
        let text = body.pointer(pointer).and_then(Value::as_str).unwrap_or("").to_owned();
        let mut body = body;
        *body.pointer_mut(pointer).expect("text") =
            json!(digest::cut(&text, size - MAX_BODY_BYTES));
        (body, 1)
    }

    fn message(&self, shown: &[&Notification], more: usize) -> Value {
        let style = match self.msgtype {
            DingTalkType::Markdown => Style::Markdown,
            DingTalkType::Text => Style::Plain,
        };
        let (title, text) = digest::text(shown, more, style);
        let mentions: String = self.at_mobiles.iter().map(|m| format!(" @{m}")).collect();
        let text = format!("{text}\n\n{}", mentions.trim());
        let mut body = match self.msgtype {
            DingTalkType::Markdown => {
                json!({"msgtype": "markdown", "markdown": {"title": title, "text": text}})
            }
            DingTalkType::Text => json!({"msgtype": "text", "text": {"content": text}}),
        };
        body["at"] = json!({"atMobiles": self.at_mobiles, "isAtAll": false});
        body
    }

    fn text_pointer(&self) -> &'static str {
        match self.msgtype {
            DingTalkType::Markdown => "/markdown/text",
            DingTalkType::Text => "/text/content",
        }
    }

    fn url(&self, now_ms: i64) -> String {
        match &self.secret {
            None => self.webhook.clone(),
            Some(secret) => {
                format!("{}&timestamp={now_ms}&sign={}", self.webhook, sign(&secret.0, now_ms))
            }
        }
    }
}

/// `urlencode(base64(HMAC_SHA256(secret, "{ts}\n{secret}")))`.
pub fn sign(secret: &str, timestamp_ms: i64) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, format!("{timestamp_ms}\n{secret}").as_bytes());
    let b64 = base64::engine::general_purpose::STANDARD.encode(tag.as_ref());
    percent_encoding::utf8_percent_encode(&b64, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[async_trait]
impl Notifier for DingTalk {
    fn kind(&self) -> &'static str {
        "dingtalk"
    }

    fn budget(&self) -> Option<Budget> {
        let token = self.webhook.split("access_token=").nth(1).unwrap_or(&self.webhook);
        Some(Budget {
            key: format!("dingtalk:{:016x}", xxhash_rust::xxh3::xxh3_64(token.as_bytes())),
            per_minute: self.per_minute - 1,
            per_second: None,
        })
    }

    fn merges(&self) -> bool {
        true
    }

    fn render(&self, notifications: &[Notification]) -> Rendered {
        let (body, carried) = self.body(notifications);
        let text =
            body.pointer(self.text_pointer()).and_then(Value::as_str).unwrap_or("").to_owned();
        let bytes = body.to_string().len();
        let mut problems = Vec::new();
        if bytes > MAX_BODY_BYTES {
            problems.push(format!("the body is {bytes} bytes, the robot takes {MAX_BODY_BYTES}"));
        }
        for m in &self.at_mobiles {
            if !text.contains(&format!("@{m}")) {
                problems.push(format!("@{m} is not in the text: the robot would not mention them"));
            }
        }
        let mut warnings = Vec::new();
        if text.contains("\n\n… cut: ") {
            warnings.push("one notification alone is over the size limit: its text is cut".into());
        }
        Rendered { carried, text, bytes, problems, warnings }
    }

    async fn send(&self, notifications: &[Notification]) -> Result<usize, NotifyError> {
        let (body, carried) = self.body(notifications);
        let now_ms = chrono::Utc::now().timestamp_millis();
        let (status, answer) = self
            .http
            .post(
                &self.url(now_ms),
                "application/json;charset=utf-8",
                body.to_string().into_bytes(),
            )
            .await
            .map_err(|e| NotifyError::Retry(e.message))?;
        if status != 200 {
            return Err(NotifyError::Retry(format!("DingTalk answered HTTP {status}")));
        }
        let answer: Value = serde_json::from_slice(&answer).map_err(|e| {
            NotifyError::Retry(format!("DingTalk answered something unreadable: {e}"))
        })?;
        if answer.get("status").and_then(Value::as_i64) == Some(1111) {
            let wait = answer.get("wait").and_then(Value::as_u64).unwrap_or(5);
            return Err(NotifyError::Throttled {
                wait: Duration::from_secs(wait.max(1)),
                reason: format!("DingTalk anti-abuse reply {answer}"),
            });
        }
        let code = answer.get("errcode").and_then(Value::as_i64).unwrap_or(-1);
        let message = answer.get("errmsg").and_then(Value::as_str).unwrap_or("").to_owned();
        match code {
            0 => Ok(carried),
            130101 | 410100 => Err(NotifyError::Throttled {
                wait: self.throttle_wait,
                reason: format!("errcode {code}: {message}"),
            }),
            310000 => Err(NotifyError::Config(format!(
                "DingTalk errcode 310000 ({message}): the secret, the keywords or the IP allow-list of the robot do not match"
            ))),
            300005 | 400101 | 400102 | 460101 => {
                Err(NotifyError::Config(format!("DingTalk errcode {code}: {message}")))
            }
            _ => Err(NotifyError::Retry(format!("DingTalk errcode {code}: {message}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{Alert, Labels};

    #[test]
    fn the_signature_matches_the_spec_vector() {
        assert_eq!(
            sign("SECtestsecret", 1_700_000_000_000),
            "7LVwF0dAF3%2F%2BMRRulbpE4y72Ogzykc6bS2nG4I99T4s%3D"
        );
    }

    fn notification(i: usize, severity: &str, summary_len: usize) -> Notification {
        let labels = Labels::from([
            ("alertname".to_owned(), "pay".to_owned()),
            ("namespace".to_owned(), format!("ns-{i}")),
            ("severity".to_owned(), severity.to_owned()),
        ]);
        Notification {
            id: format!("{i}"),
            channel: "r/dingtalk".into(),
            receiver: "r".into(),
            group_key: format!("g{i}"),
            group_labels: labels.clone(),
            alerts: vec![Alert {
                labels,
                annotations: Labels::from([("summary".to_owned(), "支".repeat(summary_len))]),
                starts_at: 0,
                ends_at: None,
            }],
            created_ms: i as i64,
            next_try_ms: 0,
            attempts: 0,
        }
    }

    fn robot(at: &[&str]) -> DingTalk {
        let config: DingTalkConfig = yaml_serde::from_str(&format!(
            "{{webhook: 'http://127.0.0.1:1/robot/send?access_token=t', at_mobiles: {at:?}}}"
        ))
        .unwrap();
        DingTalk::new(&config, None, HttpClient::new(None).unwrap())
    }

    #[test]
    fn a_digest_puts_critical_first_mentions_in_the_text_and_cuts_only_at_the_limit() {
        let d = robot(&["13800000000"]);
        let ns: Vec<_> = (0..30)
            .map(|i| notification(i, if i == 29 { "critical" } else { "warning" }, 5))
            .collect();
        let (body, carried) = d.body(&ns);
        assert_eq!(carried, 30);
        let text = body["markdown"]["text"].as_str().unwrap();
        assert!(text.find("ns-29").unwrap() < text.find("ns-0\"").unwrap(), "{text}");
        assert!(text.contains("@13800000000"));
        assert_eq!(body["at"]["atMobiles"][0], "13800000000");
        for i in 0..30 {
            assert!(text.contains(&format!("namespace=\"ns-{i}\"")));
        }
        let big: Vec<_> = (0..30).map(|i| notification(i, "warning", 800)).collect();
        let (body, carried) = d.body(&big);
        assert!(carried < 30 && carried > 1, "{carried}");
        assert!(body.to_string().len() <= MAX_BODY_BYTES);
        assert!(
            body["markdown"]["text"]
                .as_str()
                .unwrap()
                .contains(&format!("{} more notifications follow", 30 - carried))
        );
        let (one, _) = d.body(&[notification(0, "critical", 20_000)]);
        assert!(one.to_string().len() <= MAX_BODY_BYTES);
        assert!(one["markdown"]["text"].as_str().unwrap().contains("… cut:"));
    }
}
