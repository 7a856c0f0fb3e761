//! Batch → Loki push body: records grouped into streams by their label
//! set, each stream ordered by time, encoded as a protobuf `PushRequest`
//! and compressed with snappy's raw (block) format, which is what Loki
//! expects for `application/x-protobuf` (not the framed format); or the
//! same streams as Loki's JSON push (`application/json`).
//!
//! Per record: the label values are read from the record's JSON at the
//! configured paths (a missing or non-scalar value leaves the label out),
//! the static labels are added, and the names are sorted so one label set
//! is always one stream; the entry's timestamp is the record's ECS
//! `@timestamp` (else the send time); its structured metadata is the event
//! id plus the configured fields; the line is the record itself.
//!
//! Pure apart from the fallback clock passed in: no IO, no classification.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message as _;

use super::config::{LokiConfig, LokiField};
use super::logproto::{EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter, Timestamp};
use crate::core::json::{PathExtractor, ecs_timestamp, rfc3339_to_parts, write_json_string};
use crate::core::queue::QueuedRecord;

/// Builds push requests for one sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LokiRequestBuilder {
    labels: Vec<LokiField>,
    static_labels: Vec<(String, String)>,
    metadata: Vec<LokiField>,
    /// Label paths first, then metadata paths.
    extractor: PathExtractor,
}

impl LokiRequestBuilder {
    pub fn new(cfg: &LokiConfig) -> Self {
        let paths: Vec<&str> = cfg
            .labels
            .iter()
            .chain(&cfg.structured_metadata)
            .map(|f| f.path.as_str())
            .collect();
        LokiRequestBuilder {
            labels: cfg.labels.clone(),
            static_labels: cfg.static_labels.clone(),
            metadata: cfg.structured_metadata.clone(),
            extractor: PathExtractor::new(&paths),
        }
    }

    /// The batch grouped into streams (sorted by label set), each stream's
    /// entries in time order.
    fn streams(&self, batch: &[QueuedRecord], now: SystemTime) -> Vec<Grouped> {
        let now_ts = {
            let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
            Timestamp {
                seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
            }
        };
        type Entries = Vec<(Timestamp, usize, EntryAdapter)>;
        let mut streams: BTreeMap<String, (Vec<(String, String)>, Entries)> = BTreeMap::new();
        for (i, r) in batch.iter().enumerate() {
            let mut pairs: Vec<(String, String)> = self.static_labels.clone();
            let mut metadata = vec![LabelPairAdapter {
                name: "event_id".into(),
                value: r.event_id.clone(),
            }];
            if let Some(mut values) = self.extractor.extract(&r.payload) {
                let (label_values, metadata_values) = values.split_at_mut(self.labels.len());
                for (f, v) in self.labels.iter().zip(label_values) {
                    if let Some(v) = v.take() {
                        pairs.push((f.name.clone(), v));
                    }
                }
                for (f, v) in self.metadata.iter().zip(metadata_values) {
                    if let Some(v) = v.take() {
                        metadata.push(LabelPairAdapter {
                            name: f.name.clone(),
                            value: v,
                        });
                    }
                }
            }
            pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            let ts = ecs_timestamp(&r.payload)
                .and_then(rfc3339_to_parts)
                .map(|(seconds, nanos)| Timestamp {
                    seconds,
                    nanos: i32::try_from(nanos).unwrap_or(0),
                })
                .unwrap_or(now_ts);
            let entry = EntryAdapter {
                timestamp: Some(ts),
                // Records are UTF-8: validate fast, repair only if not.
                line: match std::str::from_utf8(&r.payload) {
                    Ok(text) => text.to_owned(),
                    Err(_) => String::from_utf8_lossy(&r.payload).into_owned(),
                },
                structured_metadata: metadata,
            };
            streams
                .entry(label_string(&pairs))
                .or_insert_with(|| (pairs, Vec::new()))
                .1
                .push((ts, i, entry));
        }
        streams
            .into_iter()
            .map(|(labels, (pairs, mut entries))| {
                // Loki orders a stream by time; keep equal times in batch
                // order.
                entries.sort_by_key(|(ts, i, _)| (*ts, *i));
                Grouped {
                    labels,
                    pairs,
                    entries: entries.into_iter().map(|(_, _, e)| e).collect(),
                }
            })
            .collect()
    }

    /// The push request for `batch`; `now` stamps records without a
    /// timestamp.
    pub fn push_request(&self, batch: &[QueuedRecord], now: SystemTime) -> PushRequest {
        PushRequest {
            streams: self
                .streams(batch, now)
                .into_iter()
                .map(|g| StreamAdapter {
                    labels: g.labels,
                    entries: g.entries,
                    hash: 0,
                })
                .collect(),
        }
    }

    /// The snappy-compressed protobuf body for `batch`.
    pub fn body(&self, batch: &[QueuedRecord], now: SystemTime) -> Vec<u8> {
        let proto = self.push_request(batch, now).encode_to_vec();
        // Compressing into a buffer sized by max_compress_len cannot fail.
        snap::raw::Encoder::new()
            .compress_vec(&proto)
            .unwrap_or_default()
    }

    /// The JSON push body for `batch` (uncompressed): the same streams,
    /// order and metadata as [`Self::push_request`], timestamps as
    /// nanosecond epoch strings, structured metadata as the third element
    /// of each value.
    pub fn json_body(&self, batch: &[QueuedRecord], now: SystemTime) -> Vec<u8> {
        let streams = self.streams(batch, now);
        let line_bytes: usize = batch.iter().map(|r| r.payload.len() + 128).sum();
        let mut out = Vec::with_capacity(line_bytes + 64);
        out.extend_from_slice(b"{\"streams\":[");
        for (i, g) in streams.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"stream\":{");
            for (j, (name, value)) in g.pairs.iter().enumerate() {
                if j > 0 {
                    out.push(b',');
                }
                write_json_string(name.as_bytes(), &mut out);
                out.push(b':');
                write_json_string(value.as_bytes(), &mut out);
            }
            out.extend_from_slice(b"},\"values\":[");
            for (j, e) in g.entries.iter().enumerate() {
                if j > 0 {
                    out.push(b',');
                }
                let ts = e.timestamp.unwrap_or_default();
                let ns = i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos);
                out.extend_from_slice(b"[\"");
                out.extend_from_slice(ns.to_string().as_bytes());
                out.extend_from_slice(b"\",");
                write_json_string(e.line.as_bytes(), &mut out);
                out.extend_from_slice(b",{");
                for (k, p) in e.structured_metadata.iter().enumerate() {
                    if k > 0 {
                        out.push(b',');
                    }
                    write_json_string(p.name.as_bytes(), &mut out);
                    out.push(b':');
                    write_json_string(p.value.as_bytes(), &mut out);
                }
                out.extend_from_slice(b"}]");
            }
            out.extend_from_slice(b"]}");
        }
        out.extend_from_slice(b"]}");
        out
    }
}

/// One stream of a push.
struct Grouped {
    /// Prometheus form, `{a="x", b="y"}`.
    labels: String,
    /// The same labels, sorted by name.
    pairs: Vec<(String, String)>,
    /// In time order.
    entries: Vec<EntryAdapter>,
}

/// `{a="x", b="y\"z"}`: the Prometheus label-set form Loki parses.
fn label_string(pairs: &[(String, String)]) -> String {
    let mut out = String::from("{");
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(name);
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn rec(id: &str, doc: &str) -> QueuedRecord {
        QueuedRecord {
            seq: 1,
            event_id: id.into(),
            payload: Bytes::copy_from_slice(doc.as_bytes()),
        }
    }

    fn doc(ts: &str, ns: &str, verdict: &str) -> String {
        format!(
            r#"{{"@timestamp":"{ts}","host":{{"name":"node-1"}},"kubernetes":{{"namespace":"{ns}"}},"flowscribe":{{"policy":{{"verdict":"{verdict}"}}}},"network":{{"community_id":"1:abc"}}}}"#
        )
    }

    #[test]
    fn streams_by_label_set_ordered_by_time_with_metadata() {
        let b = LokiRequestBuilder::new(&LokiConfig::new("http://loki:3100"));
        let now = UNIX_EPOCH + std::time::Duration::from_secs(2_000_000_000);
        let batch = [
            rec("e1", &doc("2026-11-21T04:30:02Z", "shop", "deny")),
            rec("e2", &doc("2026-11-21T04:30:01.5Z", "shop", "deny")),
            rec("e3", &doc("2026-11-21T04:30:00Z", "db", "allow")),
            rec("e4", "CEF:0|not json"),
        ];
        let req = b.push_request(&batch, now);
        let labels: Vec<&str> = req.streams.iter().map(|s| s.labels.as_str()).collect();
        assert_eq!(
            labels,
            [
                r#"{job="flowscribe", namespace="db", node="node-1", verdict="allow"}"#,
                r#"{job="flowscribe", namespace="shop", node="node-1", verdict="deny"}"#,
                r#"{job="flowscribe"}"#,
            ]
        );
        let shop = &req.streams[1];
        let ids: Vec<&str> = shop
            .entries
            .iter()
            .map(|e| e.structured_metadata[0].value.as_str())
            .collect();
        assert_eq!(ids, ["e2", "e1"], "ordered by time, not batch order");
        assert_eq!(
            shop.entries[0].timestamp,
            Some(Timestamp {
                seconds: 1_795_235_401,
                nanos: 500_000_000
            })
        );
        assert_eq!(
            shop.entries[0].structured_metadata[1],
            LabelPairAdapter {
                name: "community_id".into(),
                value: "1:abc".into()
            }
        );
        // Not JSON: only static labels, stamped with the send time.
        assert_eq!(req.streams[2].entries[0].line, "CEF:0|not json");
        assert_eq!(
            req.streams[2].entries[0].timestamp.unwrap().seconds,
            2_000_000_000
        );
        // The body is raw snappy of exactly this protobuf.
        let body = b.body(&batch, now);
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        assert_eq!(PushRequest::decode(&raw[..]).unwrap(), req);
    }

    #[test]
    fn json_body_carries_the_same_streams_as_the_protobuf() {
        let b = LokiRequestBuilder::new(&LokiConfig::new("http://loki:3100"));
        let now = UNIX_EPOCH + std::time::Duration::from_secs(2_000_000_000);
        let batch = [
            rec("e1", &doc("2026-11-21T04:30:02Z", "shop", "deny")),
            rec("e2", &doc("2026-11-21T04:30:01.5Z", "shop", "deny")),
            // A label value that needs escaping in both forms.
            rec("e3", &doc("2026-11-21T04:30:00Z", "d\\\"b", "allow")),
        ];
        let json: serde_json::Value = serde_json::from_slice(&b.json_body(&batch, now)).unwrap();
        let proto = b.push_request(&batch, now);
        let streams = json["streams"].as_array().unwrap();
        assert_eq!(streams.len(), proto.streams.len());
        for (j, p) in streams.iter().zip(&proto.streams) {
            // The label map spells the same set as the protobuf's string.
            let labels: Vec<(String, String)> = j["stream"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            assert_eq!(label_string(&labels), p.labels);
            let values = j["values"].as_array().unwrap();
            assert_eq!(values.len(), p.entries.len());
            for (v, e) in values.iter().zip(&p.entries) {
                let ts = e.timestamp.unwrap();
                let ns = i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos);
                assert_eq!(v[0].as_str().unwrap(), ns.to_string());
                assert_eq!(v[1].as_str().unwrap(), e.line);
                let md: Vec<(&str, &str)> = v[2]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
                    .collect();
                let want: Vec<(&str, &str)> = e
                    .structured_metadata
                    .iter()
                    .map(|p| (p.name.as_str(), p.value.as_str()))
                    .collect();
                // serde_json's map is sorted; compare as sets.
                let mut want_sorted = want.clone();
                want_sorted.sort_unstable();
                assert_eq!(md, want_sorted);
            }
        }
        assert_eq!(
            streams[1]["values"][0][0].as_str(),
            Some("1795235401500000000"),
            "nanosecond epoch string"
        );
        assert_eq!(streams[0]["stream"]["namespace"].as_str(), Some("d\"b"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            label_string(&[("a".into(), "x\"y\\z\nw".into())]),
            r#"{a="x\"y\\z\nw"}"#
        );
    }
}
