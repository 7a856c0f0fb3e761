//! Batch → HEC `/services/collector/event` body: one JSON event envelope
//! per record, concatenated (HEC's batch format is a stream of objects,
//! not an array).
//!
//! ```text
//! {"time":1795235400.123,"host":"node-1","source":"flowscribe","sourcetype":"flowscribe:flow","index":"netflow","fields":{"flowscribe_event_id":"<id>"},"event":{…the record…}}
//! ```
//!
//! * `time` is the record's `@timestamp` (ECS) as epoch seconds with its
//!   fraction, so Splunk indexes the flow at flow time; a record without
//!   one gets no `time` and HEC uses the arrival time.
//! * `event` is the record itself when it is a JSON object, else the
//!   record as a JSON string (CEF lines).
//! * `fields.flowscribe_event_id` is an indexed field carrying the event
//!   id: a resend (after a lost response or an ack timeout) is a duplicate
//!   that a search can remove with `dedup flowscribe_event_id`.
//!
//! Pure: no IO, no classification.

use super::config::SplunkHecConfig;
use crate::core::json::{ecs_timestamp, rfc3339_to_epoch, write_json_string};
use crate::core::queue::QueuedRecord;

/// Builds HEC event bodies for one sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HecRequestBuilder {
    /// `"host":…,"source":…,"sourcetype":…[,"index":…],"fields":{"flowscribe_event_id":`
    /// — the constant middle of every envelope.
    middle: Vec<u8>,
}

impl HecRequestBuilder {
    pub fn new(cfg: &SplunkHecConfig) -> Self {
        let mut middle = Vec::new();
        middle.extend_from_slice(b"\"host\":");
        write_json_string(cfg.host.as_bytes(), &mut middle);
        middle.extend_from_slice(b",\"source\":");
        write_json_string(cfg.source.as_bytes(), &mut middle);
        middle.extend_from_slice(b",\"sourcetype\":");
        write_json_string(cfg.sourcetype.as_bytes(), &mut middle);
        if let Some(index) = &cfg.index {
            middle.extend_from_slice(b",\"index\":");
            write_json_string(index.as_bytes(), &mut middle);
        }
        middle.extend_from_slice(b",\"fields\":{\"flowscribe_event_id\":");
        HecRequestBuilder { middle }
    }

    /// The body for `batch`, appended to `out`; events are separated by
    /// `\n` (whitespace between objects is allowed).
    pub fn write_body(&self, batch: &[QueuedRecord], out: &mut Vec<u8>) {
        for r in batch {
            let doc = r.payload.as_ref();
            out.push(b'{');
            if let Some(time) = ecs_timestamp(doc).and_then(rfc3339_to_epoch) {
                out.extend_from_slice(b"\"time\":");
                out.extend_from_slice(time.as_bytes());
                out.push(b',');
            }
            out.extend_from_slice(&self.middle);
            write_json_string(r.event_id.as_bytes(), out);
            out.extend_from_slice(b"},\"event\":");
            if is_json_object(doc) {
                out.extend_from_slice(doc);
            } else {
                write_json_string(doc, out);
            }
            out.extend_from_slice(b"}\n");
        }
    }

    /// The body for `batch`.
    pub fn body(&self, batch: &[QueuedRecord]) -> Vec<u8> {
        let size: usize = batch
            .iter()
            .map(|r| r.payload.len() + r.event_id.len() + self.middle.len() + 40)
            .sum();
        let mut out = Vec::with_capacity(size);
        self.write_body(batch, &mut out);
        out
    }
}

/// A cheap test for "this is a JSON object": the record came from our own
/// JSON encoder or it did not, so the first and last non-space bytes
/// decide. A broken object is still sent as is and HEC's "invalid data
/// format" rejects it with its event number.
fn is_json_object(doc: &[u8]) -> bool {
    let t = doc.trim_ascii();
    t.first() == Some(&b'{') && t.last() == Some(&b'}')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::http::{HttpAuth, SecretSource};
    use bytes::Bytes;

    fn rec(id: &str, doc: &str) -> QueuedRecord {
        QueuedRecord {
            seq: 1,
            event_id: id.into(),
            payload: Bytes::copy_from_slice(doc.as_bytes()),
        }
    }

    #[test]
    fn body_is_concatenated_event_envelopes() {
        let mut cfg = SplunkHecConfig::new(
            "http://h:8088",
            HttpAuth::Splunk(SecretSource::Env("T".into())),
            "node-1",
        );
        cfg.index = Some("netflow".into());
        let b = HecRequestBuilder::new(&cfg);
        let body = b.body(&[
            rec("e1", r#"{"@timestamp":"2026-11-21T04:30:00.123Z","a":1}"#),
            rec("e\"2", "CEF:0|flowscribe|x|1|flow|f|3|src=10.0.0.1"),
        ]);
        let want = concat!(
            r#"{"time":1795235400.123,"host":"node-1","source":"flowscribe","sourcetype":"flowscribe:flow","index":"netflow","fields":{"flowscribe_event_id":"e1"},"event":{"@timestamp":"2026-11-21T04:30:00.123Z","a":1}}"#,
            "\n",
            r#"{"host":"node-1","source":"flowscribe","sourcetype":"flowscribe:flow","index":"netflow","fields":{"flowscribe_event_id":"e\"2"},"event":"CEF:0|flowscribe|x|1|flow|f|3|src=10.0.0.1"}"#,
            "\n"
        );
        assert_eq!(String::from_utf8(body.clone()).unwrap(), want);
        // It parses as a stream of exactly two objects.
        let events: Vec<serde_json::Value> = serde_json::Deserializer::from_slice(&body)
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1]["fields"]["flowscribe_event_id"], "e\"2");
    }
}
