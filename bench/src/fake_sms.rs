//! A local double of Aliyun's SMS `SendSms` API (RPC style) — a test double, as the real one is
//! a cloud service — enforcing `shared/specs/notifiers.md`: every common parameter present,
//! the HMAC-SHA1 signature over the sorted, RFC 3986-encoded parameters
//! (`SignatureDoesNotMatch`), an unknown key (`InvalidAccessKeyId.NotFound`), a nonce used
//! before (`SignatureNonceUsed`), a timestamp more than 15 minutes off
//! (`InvalidTimeStamp.Expired`), `TemplateParam` a JSON object of strings
//! (`isv.INVALID_JSON_PARAM`) of at most 20 characters each (`isv.PARAM_LENGTH_LIMIT`), at most
//! 1,000 numbers, and, when asked, a per-number limit a minute
//! (`isv.BUSINESS_LIMIT_CONTROL`). Accepts GET and form POST; records every accepted message.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::Method;
use axum::routing::any;
use base64::Engine;
use serde_json::{Value, json};

pub const MAX_PARAM_CHARS: usize = 20;

/// One message the double accepted.
#[derive(Debug, Clone)]
pub struct Sent {
    pub phone_numbers: String,
    pub template_code: String,
    pub template_param: BTreeMap<String, String>,
    pub out_id: String,
}

#[derive(Clone)]
struct Shared {
    keys: Arc<HashMap<String, String>>,
    per_number_per_minute: Option<usize>,
    nonces: Arc<Mutex<HashSet<String>>>,
    per_number: Arc<Mutex<HashMap<String, Vec<Instant>>>>,
    sent: Arc<Mutex<Vec<Sent>>>,
    refused: Arc<Mutex<Vec<String>>>,
}

pub struct FakeSms {
    pub url: String,
    shared: Shared,
    _runtime: tokio::runtime::Runtime,
}

impl FakeSms {
    /// Serves the access keys `(id, secret)`.
    pub fn start(keys: &[(&str, &str)], per_number_per_minute: Option<usize>) -> Self {
        let (runtime, listener, base) = crate::loopback();
        let url = format!("{base}/");
        let shared = Shared {
            keys: Arc::new(keys.iter().map(|(k, s)| (k.to_string(), s.to_string())).collect()),
            per_number_per_minute,
            nonces: Arc::default(),
            per_number: Arc::default(),
            sent: Arc::default(),
            refused: Arc::default(),
        };
        let app = Router::new().route("/", any(serve)).with_state(shared.clone());
        runtime.spawn(async move { axum::serve(listener, app).await });
        Self { url, shared, _runtime: runtime }
    }

    pub fn sent(&self) -> Vec<Sent> {
        self.shared.sent.lock().unwrap().clone()
    }

    /// The codes of refused requests, in order.
    pub fn refused(&self) -> Vec<String> {
        self.shared.refused.lock().unwrap().clone()
    }
}

/// RFC 3986 percent-encoding as Aliyun's signature wants it.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

pub fn signature(method: &str, params: &BTreeMap<String, String>, secret: &str) -> String {
    let canonical: Vec<String> = params
        .iter()
        .filter(|(k, _)| *k != "Signature")
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect();
    let to_sign = format!("{method}&%2F&{}", percent_encode(&canonical.join("&")));
    let key = ring::hmac::Key::new(
        ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        format!("{secret}&").as_bytes(),
    );
    base64::engine::general_purpose::STANDARD
        .encode(ring::hmac::sign(&key, to_sign.as_bytes()).as_ref())
}

async fn serve(
    State(shared): State<Shared>,
    method: Method,
    Query(query): Query<BTreeMap<String, String>>,
    body: Bytes,
) -> axum::Json<Value> {
    let params: BTreeMap<String, String> =
        if method == Method::POST { form_urlencoded(&body) } else { query };
    let answer = match judge(&shared, method.as_str(), &params) {
        Ok(()) => json!({"Code": "OK", "Message": "OK", "BizId": "biz", "RequestId": "req"}),
        Err((code, message)) => {
            shared.refused.lock().unwrap().push(code.to_owned());
            json!({"Code": code, "Message": message, "RequestId": "req"})
        }
    };
    axum::Json(answer)
}

fn form_urlencoded(body: &[u8]) -> BTreeMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

fn judge(
    shared: &Shared,
    method: &str,
    params: &BTreeMap<String, String>,
) -> Result<(), (&'static str, String)> {
    for key in [
        "AccessKeyId",
        "Action",
        "Version",
        "Format",
        "RegionId",
        "SignatureMethod",
        "SignatureVersion",
        "SignatureNonce",
        "Timestamp",
        "Signature",
        "PhoneNumbers",
        "SignName",
        "TemplateCode",
    ] {
        if params.get(key).is_none_or(|v| v.is_empty()) {
            return Err(("MissingParameter", format!("{key} is mandatory for this action")));
        }
    }
    let secret = shared
        .keys
        .get(&params["AccessKeyId"])
        .ok_or(("InvalidAccessKeyId.NotFound", "Specified access key is not found.".to_owned()))?;
    if params["Signature"] != signature(method, params, secret) {
        return Err((
            "SignatureDoesNotMatch",
            "Specified signature is not matched with our calculation.".to_owned(),
        ));
    }
    let ts = chrono::DateTime::parse_from_rfc3339(&params["Timestamp"]).map_err(|_| {
        ("InvalidTimeStamp.Format", "Specified time stamp is not valid.".to_owned())
    })?;
    if (chrono::Utc::now().timestamp() - ts.timestamp()).abs() > 15 * 60 {
        return Err((
            "InvalidTimeStamp.Expired",
            "Specified time stamp or date value is expired.".to_owned(),
        ));
    }
    if !shared.nonces.lock().unwrap().insert(params["SignatureNonce"].clone()) {
        return Err((
            "SignatureNonceUsed",
            "Specified signature nonce was used already.".to_owned(),
        ));
    }
    let template: BTreeMap<String, Value> = match params.get("TemplateParam") {
        None => BTreeMap::new(),
        Some(t) => serde_json::from_str(t)
            .map_err(|_| ("isv.INVALID_JSON_PARAM", "JSON参数不合法".to_owned()))?,
    };
    let mut strings = BTreeMap::new();
    for (k, v) in template {
        let Value::String(s) = v else {
            return Err(("isv.INVALID_JSON_PARAM", format!("{k} is not a string")));
        };
        if s.chars().count() > MAX_PARAM_CHARS {
            return Err(("isv.PARAM_LENGTH_LIMIT", format!("参数超出长度限制: {k}")));
        }
        strings.insert(k, s);
    }
    let numbers: Vec<&str> = params["PhoneNumbers"].split(',').collect();
    if numbers.len() > 1000 {
        return Err(("isv.MOBILE_COUNT_OVER_LIMIT", "手机号码数量超过限制".to_owned()));
    }
    if let Some(limit) = shared.per_number_per_minute {
        let now = Instant::now();
        let mut per = shared.per_number.lock().unwrap();
        for n in &numbers {
            let times = per.entry(n.to_string()).or_default();
            times.retain(|t| now - *t < Duration::from_secs(60));
            if times.len() >= limit {
                return Err(("isv.BUSINESS_LIMIT_CONTROL", "触发分钟级流控Permits:1".to_owned()));
            }
        }
        for n in &numbers {
            per.get_mut(*n).unwrap().push(now);
        }
    }
    shared.sent.lock().unwrap().push(Sent {
        phone_numbers: params["PhoneNumbers"].clone(),
        template_code: params["TemplateCode"].clone(),
        template_param: strings,
        out_id: params.get("OutId").cloned().unwrap_or_default(),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_double_checks_signatures_by_the_official_vector() {
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
        let form = form_urlencoded(b"a=%E9%98%BF+b&c=%2B");
        assert_eq!(form["a"], "阿 b");
        assert_eq!(form["c"], "+");
    }
}
