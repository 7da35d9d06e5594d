//! Each receiver's channels built from the alerts file — its notifiers with their secrets read,
//! and the dispatcher over the route tree and inhibitions — for the running engine and for
//! `sluice alert test`/`backtest`, which render what the same channels would send.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::AlertError;
use crate::config::{AlertsFile, read_secret};
use crate::dispatch::{Dispatcher, Inhibition, ReceiverChannels};
use crate::http::HttpClient;
use crate::notifier::Notifier;
use crate::notifiers::{dingtalk::DingTalk, email::Email, sms::Sms, webhook::Webhook};
use crate::route::Route;

pub struct Channels {
    /// `receiver/kind` and its notifier.
    pub notifiers: Vec<(String, Arc<dyn Notifier>)>,
    pub dispatcher: Dispatcher,
}

impl Channels {
    /// Builds every receiver's notifiers (nothing is contacted) and the dispatcher.
    pub fn build(file: &AlertsFile, file_path: &Path) -> Result<Self, AlertError> {
        let mut channels: Vec<(String, Arc<dyn Notifier>)> = Vec::new();
        let mut receivers = BTreeMap::new();
        let config_err = |m: String| AlertError::Config { path: file_path.to_owned(), message: m };
        for r in &file.receivers {
            let mut names = Vec::new();
            let mut add = |kind: &str, n: Arc<dyn Notifier>| {
                let key = format!("{}/{kind}", r.name);
                names.push(key.clone());
                channels.push((key, n));
            };
            if let Some(d) = &r.dingtalk {
                let secret = match (&d.secret, &d.secret_file) {
                    (Some(s), _) => Some(s.clone()),
                    (None, Some(f)) => Some(read_secret(file_path, f).map_err(config_err)?),
                    (None, None) => None,
                };
                add(
                    "dingtalk",
                    Arc::new(DingTalk::new(d, secret, HttpClient::new(None).map_err(config_err)?)),
                );
            }
            if let Some(e) = &r.email {
                let password = e
                    .password_file
                    .as_ref()
                    .map(|f| read_secret(file_path, f))
                    .transpose()
                    .map_err(config_err)?;
                add("email", Arc::new(Email::new(e, password).map_err(config_err)?));
            }
            if let Some(s) = &r.sms {
                let secret = match (&s.access_key_secret, &s.access_key_secret_file) {
                    (Some(secret), _) => secret.clone(),
                    (None, Some(f)) => read_secret(file_path, f).map_err(config_err)?,
                    (None, None) => unreachable!("checked at load"),
                };
                add(
                    "sms",
                    Arc::new(Sms::new(s, secret, HttpClient::new(None).map_err(config_err)?)),
                );
            }
            if let Some(w) = &r.webhook {
                let secret = match (&w.secret, &w.secret_file) {
                    (Some(s), _) => Some(s.clone()),
                    (None, Some(f)) => Some(read_secret(file_path, f).map_err(config_err)?),
                    (None, None) => None,
                };
                add(
                    "webhook",
                    Arc::new(Webhook::new(w, secret, HttpClient::new(None).map_err(config_err)?)),
                );
            }
            receivers.insert(
                r.name.clone(),
                ReceiverChannels { send_resolved: r.send_resolved, channels: names },
            );
        }
        let inhibitions = file
            .inhibit_rules
            .iter()
            .map(|i| Inhibition {
                source: i.source_matchers.iter().map(|m| m.parse().expect("checked")).collect(),
                target: i.target_matchers.iter().map(|m| m.parse().expect("checked")).collect(),
                equal: i.equal.clone(),
            })
            .collect();
        Ok(Self {
            notifiers: channels,
            dispatcher: Dispatcher::new(Route::new(&file.route), receivers, inhibitions),
        })
    }
}
