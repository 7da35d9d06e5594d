//! One occurrence of a Kubernetes event — the Event object as the cluster showed it at one
//! `count` — from either API that serves events, and the record it becomes.

use k8s_openapi::api::core::v1::{EventSource, ObjectReference};
use k8s_openapi::api::{core::v1 as core, events::v1 as events};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use sluice_proto::id::source_key;
use sluice_proto::{KubeEvent, LogRecord, Stream};

/// What the source keeps of an Event, whichever API served it.
#[derive(Debug, Clone, PartialEq)]
pub struct Occurrence {
    pub uid: String,
    pub namespace: String,
    /// `series.count`, else `count`, else 1: which occurrence this is.
    pub count: u64,
    pub reason: String,
    /// `Normal` or `Warning`.
    pub kind: String,
    pub note: String,
    pub regarding: ObjectReference,
    pub reporter: String,
    /// The node, for events a kubelet reported.
    pub host: String,
    /// Unix nanoseconds of this occurrence, and of the first.
    pub time_ns: i64,
    pub first_ns: i64,
}

/// The times an Event may carry, in either API.
#[derive(Default)]
struct Times<'a> {
    series_last: Option<&'a MicroTime>,
    last: Option<&'a Time>,
    event: Option<&'a MicroTime>,
    first: Option<&'a Time>,
    created: Option<&'a Time>,
}

impl Times<'_> {
    /// When this occurrence happened: the series' last observation, else the last
    /// timestamp, else `eventTime`, else the first timestamp, else when the object was made.
    /// `eventTime` is the first occurrence's time, so for an event that repeats by `count`
    /// (kubelet's, through core/v1) `lastTimestamp` is the newer; and real apiservers send
    /// `eventTime: null` for every event created through core/v1, hence the fallbacks.
    fn occurred(&self) -> i64 {
        let micro = |t: Option<&MicroTime>| t.map(|t| t.0);
        let time = |t: Option<&Time>| t.map(|t| t.0);
        micro(self.series_last)
            .or(time(self.last))
            .or(micro(self.event))
            .or(time(self.first))
            .or(time(self.created))
            .map_or(0, nanos)
    }

    fn first(&self) -> i64 {
        let micro = self.event.map(|t| t.0);
        self.first.map(|t| t.0).or(micro).or(self.created.map(|t| t.0)).map_or(0, nanos)
    }
}

fn nanos(t: k8s_openapi::jiff::Timestamp) -> i64 {
    i64::try_from(t.as_nanosecond()).unwrap_or(0)
}

fn count(series: Option<i32>, count: Option<i32>) -> u64 {
    series.or(count).and_then(|c| u64::try_from(c).ok()).filter(|&c| c > 0).unwrap_or(1)
}

fn text(s: &Option<String>) -> String {
    s.clone().unwrap_or_default()
}

fn base(meta: &ObjectMeta) -> (String, String) {
    (text(&meta.uid), text(&meta.namespace))
}

/// The reporting component, else (empty or absent) the deprecated source's component.
fn reporter(reporting: &Option<String>, source: Option<&EventSource>) -> String {
    reporting
        .clone()
        .filter(|c| !c.is_empty())
        .or_else(|| source.and_then(|s| s.component.clone()))
        .unwrap_or_default()
}

fn host(source: Option<&EventSource>) -> String {
    source.and_then(|s| s.host.clone()).unwrap_or_default()
}

impl From<&events::Event> for Occurrence {
    fn from(e: &events::Event) -> Self {
        let (uid, namespace) = base(&e.metadata);
        let times = Times {
            series_last: e.series.as_ref().map(|s| &s.last_observed_time),
            last: e.deprecated_last_timestamp.as_ref(),
            event: e.event_time.as_ref(),
            first: e.deprecated_first_timestamp.as_ref(),
            created: e.metadata.creation_timestamp.as_ref(),
        };
        let reporter = reporter(&e.reporting_controller, e.deprecated_source.as_ref());
        let mut host = host(e.deprecated_source.as_ref());
        if host.is_empty() && reporter == "kubelet" {
            // kubelet reports itself by its node's name.
            host = text(&e.reporting_instance);
        }
        Self {
            uid,
            namespace,
            count: count(e.series.as_ref().map(|s| s.count), e.deprecated_count),
            reason: text(&e.reason),
            kind: text(&e.type_),
            note: text(&e.note),
            regarding: e.regarding.clone().unwrap_or_default(),
            reporter,
            host,
            time_ns: times.occurred(),
            first_ns: times.first(),
        }
    }
}

impl From<&core::Event> for Occurrence {
    fn from(e: &core::Event) -> Self {
        let (uid, namespace) = base(&e.metadata);
        let times = Times {
            series_last: e.series.as_ref().and_then(|s| s.last_observed_time.as_ref()),
            last: e.last_timestamp.as_ref(),
            event: e.event_time.as_ref(),
            first: e.first_timestamp.as_ref(),
            created: e.metadata.creation_timestamp.as_ref(),
        };
        let reporter = reporter(&e.reporting_component, e.source.as_ref());
        Self {
            uid,
            namespace,
            count: count(e.series.as_ref().and_then(|s| s.count), e.count),
            reason: text(&e.reason),
            kind: text(&e.type_),
            note: text(&e.message),
            regarding: e.involved_object.clone(),
            reporter,
            host: host(e.source.as_ref()),
            time_ns: times.occurred(),
            first_ns: times.first(),
        }
    }
}

impl Occurrence {
    /// The record of this occurrence: its id is the event's uid and count, so a relist, a
    /// restart or a second replica that forwards it again forwards the same record.
    pub fn to_record(&self, cluster: &str, now_ns: i64) -> LogRecord {
        let kind = text(&self.regarding.kind);
        let name = text(&self.regarding.name);
        let on_pod = kind == "Pod";
        LogRecord {
            source: source_key(&format!("k8s-event/{cluster}/{}", self.uid), 0),
            offset: self.count,
            timestamp_ns: if self.time_ns == 0 { now_ns } else { self.time_ns },
            ingest_time_ns: now_ns,
            cluster: cluster.to_owned(),
            namespace: self.namespace.clone(),
            pod: if on_pod { name.clone() } else { String::new() },
            pod_uid: if on_pod { text(&self.regarding.uid) } else { String::new() },
            container: if on_pod { container(&self.regarding) } else { String::new() },
            node: self.host.clone(),
            stream: Stream::Event as i32,
            level: sluice_proto::level::of_event_type(&self.kind).to_owned(),
            message: self.note.clone(),
            event: Some(KubeEvent {
                uid: self.uid.clone(),
                reason: self.reason.clone(),
                r#type: self.kind.clone(),
                object_kind: kind,
                object_name: name,
                count: self.count,
                first_seen_ns: self.first_ns,
                last_seen_ns: self.time_ns,
                reporter: self.reporter.clone(),
            }),
            ..LogRecord::default()
        }
    }
}

/// The container a pod's event is about: kubelet names it in `fieldPath` as
/// `spec.containers{nginx}` (or `initContainers`, `ephemeralContainers`).
fn container(regarding: &ObjectReference) -> String {
    let path = regarding.field_path.as_deref().unwrap_or_default();
    path.split_once('{')
        .and_then(|(kind, rest)| kind.ends_with("ontainers").then_some(rest))
        .and_then(|rest| rest.strip_suffix('}'))
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const CREATED: &str = "2026-12-04T10:00:00Z";
    const CREATED_NS: i64 = 1_796_378_400_000_000_000;

    fn v1(extra: serde_json::Value) -> Occurrence {
        let mut event = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "web-1.17f", "namespace": "shop", "uid": "e-1",
                         "creationTimestamp": CREATED},
            "eventTime": null,
            "reason": "BackOff", "type": "Warning", "note": "Back-off restarting failed container",
            "regarding": {"kind": "Pod", "name": "web-1", "namespace": "shop", "uid": "p-1",
                          "fieldPath": "spec.containers{app}"},
            "reportingController": "kubelet", "reportingInstance": "node-7",
        });
        event.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        Occurrence::from(&serde_json::from_value::<events::Event>(event).unwrap())
    }

    fn core(extra: serde_json::Value) -> Occurrence {
        let mut event = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "web-1.17f", "namespace": "shop", "uid": "e-2",
                         "creationTimestamp": CREATED},
            "involvedObject": {"kind": "Node", "name": "node-7"},
            "reason": "NodeNotReady", "type": "Normal", "message": "node is not ready",
            "source": {"component": "node-controller"},
        });
        event.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        Occurrence::from(&serde_json::from_value::<core::Event>(event).unwrap())
    }

    #[test]
    fn a_null_event_time_falls_back_to_the_last_timestamp_then_to_creation() {
        let e = v1(json!({}));
        assert_eq!((e.time_ns, e.first_ns, e.count), (CREATED_NS, CREATED_NS, 1));
        let e = v1(json!({"deprecatedLastTimestamp": "2026-12-04T10:05:00Z",
                          "deprecatedFirstTimestamp": "2026-12-04T10:01:00Z",
                          "deprecatedCount": 4}));
        assert_eq!(e.time_ns, CREATED_NS + 300_000_000_000);
        assert_eq!((e.first_ns, e.count), (CREATED_NS + 60_000_000_000, 4));
        let e = v1(json!({"eventTime": "2026-12-04T10:00:02.500000Z"}));
        assert_eq!(
            (e.time_ns, e.first_ns),
            (CREATED_NS + 2_500_000_000, CREATED_NS + 2_500_000_000)
        );
    }

    #[test]
    fn an_empty_reporting_controller_falls_back_to_the_deprecated_source() {
        let e = v1(json!({"reportingController": "",
                          "deprecatedSource": {"component": "kubelet", "host": "node-2"}}));
        assert_eq!((e.reporter.as_str(), e.host.as_str()), ("kubelet", "node-2"));
    }

    #[test]
    fn a_series_says_which_occurrence_and_when() {
        let e = v1(json!({"eventTime": "2026-12-04T10:00:01.000000Z",
                          "series": {"count": 30, "lastObservedTime": "2026-12-04T10:09:00.000000Z"}}));
        assert_eq!((e.count, e.time_ns), (30, CREATED_NS + 540_000_000_000));
        assert_eq!(e.first_ns, CREATED_NS + 1_000_000_000);
    }

    #[test]
    fn core_events_count_by_count_and_name_their_reporter_by_source() {
        let e = core(json!({"count": 3, "lastTimestamp": "2026-12-04T10:00:09Z"}));
        assert_eq!((e.count, e.time_ns), (3, CREATED_NS + 9_000_000_000));
        assert_eq!((e.reporter.as_str(), e.uid.as_str()), ("node-controller", "e-2"));
        let e = core(json!({"count": 0}));
        assert_eq!((e.count, e.time_ns), (1, CREATED_NS), "no count, no times: the first, created");
    }

    #[test]
    fn a_pods_event_is_a_record_of_that_pod_and_container() {
        let r = v1(json!({"deprecatedCount": 2})).to_record("c1", 5);
        assert_eq!((r.offset, r.source), (2, source_key("k8s-event/c1/e-1", 0)));
        assert_eq!(
            (r.pod.as_str(), r.pod_uid.as_str(), r.container.as_str()),
            ("web-1", "p-1", "app")
        );
        assert_eq!(
            (r.namespace.as_str(), r.node.as_str(), r.level.as_str()),
            ("shop", "node-7", "warn")
        );
        assert_eq!(r.stream, Stream::Event as i32);
        let event = r.event.unwrap();
        assert_eq!((event.object().as_str(), event.reporter.as_str()), ("Pod/web-1", "kubelet"));
        let r = core(json!({})).to_record("c1", 5);
        assert_eq!((r.pod.as_str(), r.level.as_str()), ("", "info"));
        assert_eq!(r.event.unwrap().object(), "Node/node-7");
    }
}
