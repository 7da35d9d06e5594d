//! A local double of the WeCom (企业微信) group robot and the Feishu (飞书) custom bot — test
//! doubles, as both are cloud services — enforcing what their documentation says:
//! - WeCom: `POST /cgi-bin/webhook/send?key=KEY`; an unknown key is `93000`; `msgtype` text or
//!   markdown; a markdown `content` over 4096 bytes is `40058`; 20 messages a minute, past
//!   that `45009` ("api freq out of limit"). Answers `{"errcode", "errmsg"}`, HTTP 200.
//! - Feishu: `POST /open-apis/bot/v2/hook/TOKEN`; an unknown token is `19001`; with a signing
//!   secret, `timestamp` (seconds, within an hour) and `sign` =
//!   base64(HMAC-SHA256(key = "{timestamp}\n{secret}", message = "")) in the body, else
//!   `19021`; bodies over 20 KiB are `9499`; 100 a minute and 5 a second, past that `11232`.
//!   Answers `{"code", "msg"}`, HTTP 200.
//!
//! Every request is recorded (which robot, its code, its body) for the tests to count.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::routing::post;
use base64::Engine;
use serde_json::{Value, json};

/// One request as the double saw it: `wecom/KEY` or `feishu/TOKEN`, its code, its body.
#[derive(Debug, Clone)]
pub struct Request {
    pub at: Instant,
    pub robot: String,
    pub code: i64,
    pub body: Value,
}

impl Request {
    pub fn text(&self) -> String {
        let b = &self.body;
        b["markdown"]["content"]
            .as_str()
            .or(b["text"]["content"].as_str())
            .or(b["content"]["text"].as_str())
            .unwrap_or("")
            .to_owned()
    }
}

#[derive(Clone, Default)]
struct Shared {
    /// Feishu tokens and their signing secrets.
    feishu: Arc<HashMap<String, Option<String>>>,
    wecom: Arc<Vec<String>>,
    accepted: Arc<Mutex<HashMap<String, Vec<Instant>>>>,
    log: Arc<Mutex<Vec<Request>>>,
}

pub struct FakeChatbot {
    pub base: String,
    shared: Shared,
    _runtime: tokio::runtime::Runtime,
}

impl FakeChatbot {
    /// Serves the WeCom robots `wecom` (keys) and the Feishu bots `feishu` (token, secret).
    pub fn start(wecom: Vec<String>, feishu: Vec<(String, Option<String>)>) -> Self {
        let (runtime, listener, base) = crate::loopback();
        let shared = Shared {
            feishu: Arc::new(feishu.into_iter().collect()),
            wecom: Arc::new(wecom),
            ..Shared::default()
        };
        let app = Router::new()
            .route("/cgi-bin/webhook/send", post(wecom_send))
            .route("/open-apis/bot/v2/hook/{token}", post(feishu_send))
            .with_state(shared.clone());
        runtime.spawn(async move { axum::serve(listener, app).await });
        Self { base, shared, _runtime: runtime }
    }

    pub fn wecom_url(&self, key: &str) -> String {
        format!("{}/cgi-bin/webhook/send?key={key}", self.base)
    }

    pub fn feishu_url(&self, token: &str) -> String {
        format!("{}/open-apis/bot/v2/hook/{token}", self.base)
    }

    pub fn requests(&self, robot: &str) -> Vec<Request> {
        self.shared.log.lock().unwrap().iter().filter(|r| r.robot == robot).cloned().collect()
    }

    /// Messages the robot took (code 0).
    pub fn delivered(&self, robot: &str) -> Vec<Request> {
        self.requests(robot).into_iter().filter(|r| r.code == 0).collect()
    }

    pub fn count_code(&self, robot: &str, code: i64) -> usize {
        self.requests(robot).iter().filter(|r| r.code == code).count()
    }

    /// The most requests the robot saw within one 60 s window.
    pub fn busiest_minute(&self, robot: &str) -> usize {
        let times: Vec<Instant> = self.requests(robot).iter().map(|r| r.at).collect();
        (0..times.len())
            .map(|i| {
                times[i..].iter().take_while(|t| **t - times[i] < Duration::from_secs(60)).count()
            })
            .max()
            .unwrap_or(0)
    }
}

/// Feishu's bot signature.
pub fn feishu_sign(secret: &str, timestamp: &str) -> String {
    let key =
        ring::hmac::Key::new(ring::hmac::HMAC_SHA256, format!("{timestamp}\n{secret}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(ring::hmac::sign(&key, b"").as_ref())
}

/// Whether `robot` may send one more now: at most `per_minute` in 60 s and, when given,
/// `per_second` in 1 s; a refused request does not count.
fn within_rate(shared: &Shared, robot: &str, per_minute: usize, per_second: Option<usize>) -> bool {
    let now = Instant::now();
    let mut all = shared.accepted.lock().unwrap();
    let times = all.entry(robot.to_owned()).or_default();
    times.retain(|t| now - *t < Duration::from_secs(60));
    let last_second = times.iter().filter(|t| now - **t < Duration::from_secs(1)).count();
    if times.len() >= per_minute || per_second.is_some_and(|n| last_second >= n) {
        return false;
    }
    times.push(now);
    true
}

fn record(shared: &Shared, robot: String, code: i64, body: Value) {
    shared.log.lock().unwrap().push(Request { at: Instant::now(), robot, code, body });
}

async fn wecom_send(
    State(shared): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> axum::Json<Value> {
    let key = query.get("key").cloned().unwrap_or_default();
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (code, message) = if !shared.wecom.contains(&key) {
        (93000, "invalid webhook url")
    } else {
        match parsed["msgtype"].as_str() {
            Some("markdown") if parsed["markdown"]["content"].as_str().is_none() => {
                (44004, "markdown.content is empty")
            }
            Some("markdown")
                if parsed["markdown"]["content"].as_str().is_some_and(|c| c.len() > 4096) =>
            {
                (40058, "markdown.content exceed max length 4096")
            }
            Some("markdown") | Some("text") => {
                if within_rate(&shared, &format!("wecom/{key}"), 20, None) {
                    (0, "ok")
                } else {
                    (45009, "api freq out of limit")
                }
            }
            _ => (40008, "invalid message type"),
        }
    };
    record(&shared, format!("wecom/{key}"), code, parsed);
    axum::Json(json!({"errcode": code, "errmsg": message}))
}

async fn feishu_send(
    State(shared): State<Shared>,
    Path(token): Path<String>,
    body: Bytes,
) -> axum::Json<Value> {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (code, message) = match shared.feishu.get(&token) {
        None => (19001, "param invalid: incoming webhook access token invalid"),
        Some(_) if body.len() > 20 * 1024 => (9499, "Bad Request"),
        Some(secret) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            let signed = match secret {
                None => true,
                Some(secret) => {
                    let ts = parsed["timestamp"].as_str().unwrap_or("");
                    ts.parse::<i64>().is_ok_and(|t| (now - t).abs() <= 3600)
                        && parsed["sign"].as_str() == Some(&feishu_sign(secret, ts))
                }
            };
            if !signed {
                (19021, "sign match fail or timestamp is not within one hour from current time")
            } else if !matches!(parsed["msg_type"].as_str(), Some("text" | "post" | "interactive"))
            {
                (9499, "Bad Request")
            } else if !within_rate(&shared, &format!("feishu/{token}"), 100, Some(5)) {
                (11232, "frequency limited")
            } else {
                (0, "success")
            }
        }
    };
    record(&shared, format!("feishu/{token}"), code, parsed);
    axum::Json(json!({"code": code, "msg": message, "data": {}}))
}
