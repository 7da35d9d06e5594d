//! List, then watch from the list's resourceVersion, as the apiserver's protocol asks:
//! bookmarks requested, a watch that ends (server timeout, network) resumed from the last
//! version seen, and any `410` — an `ERROR` event inside a watch's 200 stream, or a paged
//! list's `continue` that expired — answered by listing again from scratch.
//!
//! Written against the raw list and watch calls rather than kube's `watcher`: the source must
//! resume from a version it persisted across restarts, and must know when a relist is whole
//! (to forget the events it no longer shows), neither of which that stream offers.

use std::fmt::Debug;
use std::pin::Pin;

use kube::Api;
use kube::api::{ListParams, WatchEvent, WatchParams};
use serde::de::DeserializeOwned;
use tokio_stream::{Stream, StreamExt};

use super::occurrence::Occurrence;

/// Items per list page.
const PAGE: u32 = 500;
/// How long the server is asked to keep a watch open (bookmarks on, the default); it may
/// end it sooner.
const WATCH_SECONDS: u32 = 290;

/// What the cluster showed.
#[derive(Debug)]
pub enum Seen {
    /// A whole list: every event the cluster holds, as of `version`.
    Listed {
        occurrences: Vec<Occurrence>,
        version: String,
    },
    Changed {
        occurrence: Box<Occurrence>,
        version: String,
    },
    Deleted {
        uid: String,
        version: String,
    },
    /// Nothing changed up to `version` (a bookmark).
    Progressed {
        version: String,
    },
}

type Events<K> = Pin<Box<dyn Stream<Item = kube::Result<WatchEvent<K>>> + Send>>;

/// Lists and watches one kind of Event.
pub struct Watcher<K> {
    api: Api<K>,
    /// Where the next watch starts; `None` means list first.
    version: Option<String>,
    events: Option<Events<K>>,
}

impl<K> Watcher<K>
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    for<'a> &'a K: Into<Occurrence>,
{
    /// A watcher that goes on from `version`, or lists first when there is none.
    pub fn new(api: Api<K>, version: Option<String>) -> Self {
        Self { api, version, events: None }
    }

    /// The next thing the cluster showed. An error leaves the watcher ready to go on: after a
    /// `410` it lists again, after anything else it watches again from the last version.
    pub async fn next(&mut self) -> kube::Result<Seen> {
        loop {
            let Some(version) = self.version.clone() else {
                return self.list().await;
            };
            let events = match &mut self.events {
                Some(events) => events,
                None => {
                    let params = WatchParams::default().timeout(WATCH_SECONDS);
                    match self.api.watch(&params, &version).await {
                        Ok(events) => self.events.insert(Box::pin(events)),
                        Err(e) => return Err(self.failed(e)),
                    }
                }
            };
            let Some(event) = events.next().await else {
                // The server ended the watch: go on from where it stopped.
                self.events = None;
                continue;
            };
            let seen = match event {
                Ok(WatchEvent::Added(k)) | Ok(WatchEvent::Modified(k)) => {
                    let version = resource_version(&k, &version);
                    Seen::Changed { occurrence: Box::new((&k).into()), version }
                }
                Ok(WatchEvent::Deleted(k)) => {
                    let version = resource_version(&k, &version);
                    Seen::Deleted { uid: k.meta().uid.clone().unwrap_or_default(), version }
                }
                Ok(WatchEvent::Bookmark(b)) => {
                    Seen::Progressed { version: b.metadata.resource_version }
                }
                Ok(WatchEvent::Error(status)) => {
                    self.events = None;
                    return Err(self.failed(kube::Error::Api(status)));
                }
                Err(e) => {
                    self.events = None;
                    return Err(self.failed(e));
                }
            };
            if let Seen::Changed { version, .. }
            | Seen::Deleted { version, .. }
            | Seen::Progressed { version } = &seen
            {
                self.version = Some(version.clone());
            }
            return Ok(seen);
        }
    }

    /// Every page of a fresh list. A `continue` that expired mid-way starts it over.
    async fn list(&mut self) -> kube::Result<Seen> {
        let mut occurrences = Vec::new();
        let mut params = ListParams::default().limit(PAGE);
        loop {
            let page = self.api.list(&params).await.map_err(|e| self.failed(e))?;
            occurrences.extend(page.items.iter().map(Into::into));
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => {
                    let version = page.metadata.resource_version.unwrap_or_default();
                    self.version = Some(version.clone());
                    self.events = None;
                    return Ok(Seen::Listed { occurrences, version });
                }
            }
        }
    }

    /// Notes what an error means for the next call: a `410` expires the version.
    fn failed(&mut self, e: kube::Error) -> kube::Error {
        if matches!(&e, kube::Error::Api(status) if status.code == 410) {
            tracing::info!(error = %e, "the events' resourceVersion expired; listing again");
            metrics::counter!("sluice_kube_events_relists_total", "reason" => "expired")
                .increment(1);
            self.version = None;
            self.events = None;
        }
        e
    }
}

fn resource_version<K: kube::Resource>(k: &K, before: &str) -> String {
    k.meta().resource_version.clone().unwrap_or_else(|| before.to_owned())
}
