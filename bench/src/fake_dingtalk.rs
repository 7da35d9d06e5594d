//! A local double of DingTalk's custom robot API — a test double, as the real one is a cloud
//! service — enforcing what `shared/specs/notifiers.md` says a robot does:
//! - an unknown `access_token` is `300005`;
//! - with a secret ("加签"), `timestamp` (milliseconds, within an hour of the double's clock)
//!   and `sign` = urlencode(base64(HMAC-SHA256(secret, "{timestamp}\n{secret}"))) are required,
//!   else `310000`; with keywords, the text must hold one, else `310000`;
//! - bodies over 20,000 bytes are `460101`;
//! - 20 messages a minute: the 21st within any 60 s is `130101`, and the robot then refuses
//!   everything for the throttle period (about ten minutes on the real service; shorter here
//!   when a test asks);
//! - every answer is HTTP 200 with `{"errcode", "errmsg"}`.
//!
//! It records every request (time, token, errcode, body) so tests can count messages, check
//! that a `@mobile` in `at.atMobiles` also appears in a markdown text (else nobody is
//! notified), and measure the busiest minute.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::routing::post;
use base64::Engine;
use serde_json::{Value, json};

const LIMIT_PER_MINUTE: usize = 20;
pub const MAX_BODY_BYTES: usize = 20_000;

/// A robot the double serves.
#[derive(Debug, Clone, Default)]
pub struct Robot {
    pub token: String,
    pub secret: Option<String>,
    pub keywords: Vec<String>,
}

/// One request as the double saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub at: Instant,
    pub token: String,
    pub errcode: i64,
    pub body: Value,
}

impl Request {
    /// The message's text (markdown or text).
    pub fn text(&self) -> String {
        let b = &self.body;
        b["markdown"]["text"].as_str().or(b["text"]["content"].as_str()).unwrap_or("").to_owned()
    }
}

#[derive(Default)]
struct RobotState {
    accepted: Vec<Instant>,
    throttled_until: Option<Instant>,
}

#[derive(Clone)]
struct Shared {
    robots: Arc<HashMap<String, Robot>>,
    throttle: Duration,
    state: Arc<Mutex<HashMap<String, RobotState>>>,
    log: Arc<Mutex<Vec<Request>>>,
}

pub struct FakeDingTalk {
    pub base: String,
    shared: Shared,
    _runtime: tokio::runtime::Runtime,
}

impl FakeDingTalk {
    /// Serves `robots`; a robot that exceeds its limit is refused for `throttle`.
    pub fn start(robots: Vec<Robot>, throttle: Duration) -> Self {
        let (runtime, listener, base) = crate::loopback();
        let shared = Shared {
            robots: Arc::new(robots.into_iter().map(|r| (r.token.clone(), r)).collect()),
            throttle,
            state: Arc::default(),
            log: Arc::default(),
        };
        let app = Router::new().route("/robot/send", post(send)).with_state(shared.clone());
        runtime.spawn(async move { axum::serve(listener, app).await });
        Self { base, shared, _runtime: runtime }
    }

    /// The webhook URL of a robot, as DingTalk shows it.
    pub fn webhook(&self, token: &str) -> String {
        format!("{}/robot/send?access_token={token}", self.base)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.shared.log.lock().unwrap().clone()
    }

    /// Messages the robot took (errcode 0).
    pub fn delivered(&self, token: &str) -> Vec<Request> {
        self.requests().into_iter().filter(|r| r.token == token && r.errcode == 0).collect()
    }

    /// The most requests of any kind the robot saw within one 60 s window.
    pub fn busiest_minute(&self, token: &str) -> usize {
        let times: Vec<Instant> =
            self.requests().iter().filter(|r| r.token == token).map(|r| r.at).collect();
        (0..times.len())
            .map(|i| {
                times[i..].iter().take_while(|t| **t - times[i] < Duration::from_secs(60)).count()
            })
            .max()
            .unwrap_or(0)
    }

    pub fn count_errcode(&self, token: &str, errcode: i64) -> usize {
        self.requests().iter().filter(|r| r.token == token && r.errcode == errcode).count()
    }
}

/// The signature DingTalk expects, before URL encoding.
pub fn sign(secret: &str, timestamp: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, format!("{timestamp}\n{secret}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
}

async fn send(
    State(shared): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> axum::Json<Value> {
    let token = query.get("access_token").cloned().unwrap_or_default();
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (errcode, errmsg) = judge(&shared, &token, &query, &body, &parsed);
    shared.log.lock().unwrap().push(Request { at: Instant::now(), token, errcode, body: parsed });
    axum::Json(json!({"errcode": errcode, "errmsg": errmsg}))
}

fn judge(
    shared: &Shared,
    token: &str,
    query: &HashMap<String, String>,
    body: &[u8],
    parsed: &Value,
) -> (i64, &'static str) {
    let Some(robot) = shared.robots.get(token) else {
        return (300005, "token is not exist");
    };
    if let Some(secret) = &robot.secret {
        let (Some(ts), Some(sign_given)) = (query.get("timestamp"), query.get("sign")) else {
            return (310000, "sign not match");
        };
        let now_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
                as i64;
        match ts.parse::<i64>() {
            Ok(t) if (now_ms - t).abs() <= 3_600_000 => {}
            _ => return (310000, "invalid timestamp"),
        }
        // axum's Query already percent-decoded the parameter.
        if *sign_given != sign(secret, ts) {
            return (310000, "sign not match");
        }
    }
    if body.len() > MAX_BODY_BYTES {
        return (460101, "message too long");
    }
    let text = parsed["markdown"]["text"].as_str().or(parsed["text"]["content"].as_str());
    let Some(text) = text else {
        return (40035, "缺少参数 json");
    };
    if !robot.keywords.is_empty() && !robot.keywords.iter().any(|k| text.contains(k)) {
        return (310000, "keywords not in content");
    }
    let now = Instant::now();
    let mut states = shared.state.lock().unwrap();
    let state = states.entry(token.to_owned()).or_default();
    if state.throttled_until.is_some_and(|until| now < until) {
        return (130101, "send too fast, exceed 20 times per minute");
    }
    state.accepted.retain(|t| now - *t < Duration::from_secs(60));
    if state.accepted.len() >= LIMIT_PER_MINUTE {
        state.throttled_until = Some(now + shared.throttle);
        return (130101, "send too fast, exceed 20 times per minute");
    }
    state.accepted.push(now);
    (0, "ok")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_double_signs_like_the_spec_vector() {
        assert_eq!(
            sign("SECtestsecret", "1700000000000"),
            "7LVwF0dAF3/+MRRulbpE4y72Ogzykc6bS2nG4I99T4s="
        );
    }
}
