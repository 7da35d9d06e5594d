//! Prometheus remote-write 1.0 requests: a `prometheus.WriteRequest` protobuf, snappy block
//! compressed. The three messages are declared here with prost's derive rather than taken
//! from a crate: the only published ones bring their own HTTP clients and Prometheus's whole
//! `prompb` tree, for a format that is three small, frozen messages.

use super::convert::Sample;

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub(super) timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub(super) labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub(super) samples: Vec<PromSample>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Label {
    #[prost(string, tag = "1")]
    pub(super) name: String,
    #[prost(string, tag = "2")]
    pub(super) value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct PromSample {
    #[prost(double, tag = "1")]
    pub(super) value: f64,
    #[prost(int64, tag = "2")]
    pub(super) timestamp: i64,
}

/// The compressed body of a request holding `samples`, one series each.
pub(super) fn body(samples: &[&Sample]) -> Vec<u8> {
    let request = WriteRequest {
        timeseries: samples
            .iter()
            .map(|s| TimeSeries {
                labels: s
                    .labels
                    .iter()
                    .map(|(name, value)| Label { name: name.clone(), value: value.clone() })
                    .collect(),
                samples: vec![PromSample { value: s.value, timestamp: s.timestamp_ms }],
            })
            .collect(),
    };
    let bytes = prost::Message::encode_to_vec(&request);
    snap::raw::Encoder::new().compress_vec(&bytes).expect("a Vec takes any snappy output")
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn a_body_decompresses_to_the_series_with_their_samples() {
        let sample = Sample {
            labels: vec![("__name__".into(), "up".into()), ("job".into(), "a".into())],
            timestamp_ms: 1_700_000_000_000,
            value: 1.5,
        };
        let bytes = snap::raw::Decoder::new().decompress_vec(&body(&[&sample])).unwrap();
        let request = WriteRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(request.timeseries.len(), 1);
        let series = &request.timeseries[0];
        assert_eq!(series.labels[1], Label { name: "job".into(), value: "a".into() });
        assert_eq!(series.samples, [PromSample { value: 1.5, timestamp: 1_700_000_000_000 }]);
    }
}
