//! Aliyun SMS `SendSms` (RPC style, signature version 1.0; `shared/specs/notifiers.md`). An
//! SMS carries a short pointer — service, severity, count, id — as template parameters of at
//! most 20 characters each. The API is not idempotent: an answer that may have been lost is not
//! followed by a second message, and resolved notifications send none.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use base64::Engine;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;

use crate::config::{Secret, SmsConfig};
use crate::dispatch::Notification;
use crate::http::HttpClient;
use crate::notifier::{Notifier, NotifyError, Rendered};

/// Aliyun limits each template variable (20 to 35 characters by kind); 20 fits all.
pub const MAX_PARAM_CHARS: usize = 20;

/// RFC 3986: unreserved characters are kept, everything else is percent-encoded.
const RFC3986: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

pub struct Sms {
    config: SmsConfig,
    secret: Secret,
    http: HttpClient,
    nonce: AtomicU64,
}

impl Sms {
    pub fn new(config: &SmsConfig, secret: Secret, http: HttpClient) -> Self {
        Self { config: config.clone(), secret, http, nonce: AtomicU64::new(0) }
    }

    /// The template parameters for a notification: short, all strings.
    pub fn template_param(n: &Notification) -> BTreeMap<&'static str, String> {
        Self::full_param(n).into_iter().map(|(k, v)| (k, short(&v))).collect()
    }

    /// The template parameters before they are cut to the service's length.
    fn full_param(n: &Notification) -> BTreeMap<&'static str, String> {
        let first = n.alerts.first();
        let service = n
            .group_labels
            .get("namespace")
            .or_else(|| first.and_then(|a| a.labels.get("namespace")))
            .cloned()
            .unwrap_or_else(|| first.map_or(String::new(), |a| a.name().to_owned()));
        let severity = first.and_then(|a| a.labels.get("severity")).cloned().unwrap_or_default();
        BTreeMap::from([
            ("service", service),
            ("severity", severity),
            ("count", n.firing().to_string()),
            ("id", n.id.clone()),
        ])
    }

    fn params(&self, n: &Notification, nonce: &str, timestamp: &str) -> BTreeMap<String, String> {
        let template = serde_json::to_string(&Self::template_param(n)).expect("strings");
        [
            ("AccessKeyId", self.config.access_key_id.as_str()),
            ("Action", "SendSms"),
            ("Version", "2017-05-25"),
            ("Format", "JSON"),
            ("RegionId", "cn-hangzhou"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("SignatureNonce", nonce),
            ("Timestamp", timestamp),
            ("PhoneNumbers", &self.config.phone_numbers.join(",")),
            ("SignName", &self.config.sign_name),
            ("TemplateCode", &self.config.template_code),
            ("TemplateParam", &template),
            ("OutId", &n.id),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }
}

fn short(s: &str) -> String {
    s.chars().take(MAX_PARAM_CHARS).collect()
}

pub fn percent_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, RFC3986).to_string()
}

/// The canonical query of `params` (without `Signature`), sorted by key.
pub fn canonical_query(params: &BTreeMap<String, String>) -> String {
    params
        .iter()
        .filter(|(k, _)| *k != "Signature")
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `base64(HMAC_SHA1(secret + "&", METHOD + "&%2F&" + percentEncode(canonical query)))`.
pub fn signature(method: &str, params: &BTreeMap<String, String>, secret: &str) -> String {
    let to_sign = format!("{method}&%2F&{}", percent_encode(&canonical_query(params)));
    let key = ring::hmac::Key::new(
        ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        format!("{secret}&").as_bytes(),
    );
    base64::engine::general_purpose::STANDARD
        .encode(ring::hmac::sign(&key, to_sign.as_bytes()).as_ref())
}

#[async_trait]
impl Notifier for Sms {
    fn kind(&self) -> &'static str {
        "sms"
    }

    fn idempotent(&self) -> bool {
        false
    }

    fn render(&self, notifications: &[Notification]) -> Rendered {
        let n = &notifications[0];
        if n.firing() == 0 {
            return Rendered {
                carried: 1,
                text: "(nothing: SMS tells only of firing alerts)".to_owned(),
                ..Rendered::default()
            };
        }
        let text = serde_json::to_string(&Self::template_param(n)).expect("strings");
        let warnings = Self::full_param(n)
            .into_iter()
            .filter(|(_, v)| v.chars().count() > MAX_PARAM_CHARS)
            .map(|(k, v)| {
                format!(
                    "template parameter {k} is {} characters, sent cut to {MAX_PARAM_CHARS}: {v:?}",
                    v.chars().count()
                )
            })
            .collect();
        let problems = match self.config.phone_numbers.len() {
            1..=1000 => Vec::new(),
            n => vec![format!("{n} phone numbers; SendSms takes 1 to 1000")],
        };
        Rendered { carried: 1, bytes: text.len(), text, problems, warnings }
    }

    async fn send(&self, notifications: &[Notification]) -> Result<usize, NotifyError> {
        let n = &notifications[0];
        if n.firing() == 0 {
            return Ok(1);
        }
        let now = chrono::Utc::now();
        let nonce = format!(
            "{}-{}-{}",
            n.id,
            now.timestamp_nanos_opt().unwrap_or_default(),
            self.nonce.fetch_add(1, Ordering::Relaxed)
        );
        let timestamp = now.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let mut params = self.params(n, &nonce, &timestamp);
        let sig = signature("POST", &params, &self.secret.0);
        params.insert("Signature".to_owned(), sig);
        let form: String = params
            .iter()
            .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let (status, answer) = self
            .http
            .post(&self.config.endpoint, "application/x-www-form-urlencoded", form.into_bytes())
            .await
            .map_err(|e| match e.sent {
                true => NotifyError::Unsure(e.message),
                false => NotifyError::Retry(e.message),
            })?;
        let answer: Value = serde_json::from_slice(&answer).map_err(|e| {
            NotifyError::Unsure(format!("Aliyun SMS answered HTTP {status}, unreadable: {e}"))
        })?;
        let code = answer.get("Code").and_then(Value::as_str).unwrap_or("").to_owned();
        let message = answer.get("Message").and_then(Value::as_str).unwrap_or("").to_owned();
        match code.as_str() {
            "OK" => Ok(1),
            "isv.BUSINESS_LIMIT_CONTROL" | "Throttling.User" => Err(NotifyError::Throttled {
                wait: std::time::Duration::from_secs(60),
                reason: format!("{code}: {message}"),
            }),
            "SignatureNonceUsed"
            | "InvalidTimeStamp.Expired"
            | "ServiceUnavailable"
            | "InternalError" => Err(NotifyError::Retry(format!("{code}: {message}"))),
            _ => Err(NotifyError::Config(format!("Aliyun SMS {code}: {message}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_matches_the_official_vector() {
        let params: BTreeMap<String, String> = [
            ("AccessKeyId", "testId"),
            ("Action", "SendSms"),
            ("Format", "XML"),
            ("OutId", "123"),
            ("PhoneNumbers", "15300000001"),
            ("RegionId", "cn-hangzhou"),
            ("SignName", "阿里云短信测试专用"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "45e25e9b-0a6f-4070-8c85-2956eda1b466"),
            ("SignatureVersion", "1.0"),
            ("TemplateCode", "SMS_71390007"),
            ("TemplateParam", "{\"customer\":\"test\"}"),
            ("Timestamp", "2017-07-12T02:42:19Z"),
            ("Version", "2017-05-25"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(signature("GET", &params, "testSecret"), "zJDF+Lrzhj/ThnlvIToysFRq6t4=");
        assert_eq!(percent_encode("a b*~"), "a%20b%2A~");
    }
}
