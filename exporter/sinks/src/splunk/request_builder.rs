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
use crate::core::queue::QueuedRecord;
use crate::elasticsearch::request_builder::write_json_string;

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

/// The value of a top-level-looking `"@timestamp":"…"` (ECS documents
/// start with it).
fn ecs_timestamp(doc: &[u8]) -> Option<&str> {
    const KEY: &[u8] = b"\"@timestamp\":\"";
    let start = memchr::memmem::find(doc, KEY)? + KEY.len();
    let len = memchr::memchr(b'"', &doc[start..])?;
    std::str::from_utf8(&doc[start..start + len]).ok()
}

/// RFC 3339 (`2026-11-21T04:30:00.123456Z`, or with `±HH:MM`) to epoch
/// seconds as a decimal string with the given fraction (up to 9 digits),
/// exactly (no float rounding).
pub fn rfc3339_to_epoch(s: &str) -> Option<String> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac = "";
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        let mut end = start;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        if end == start || end - start > 9 {
            return None;
        }
        frac = &s[start..end];
        i = end;
    }
    let offset_secs = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            let o = oh * 3600 + om * 60;
            if *sign == b'+' { o } else { -o }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_secs;
    Some(if frac.is_empty() {
        secs.to_string()
    } else {
        format!("{secs}.{frac}")
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::http::{HttpAuth, SecretSource};
    use bytes::Bytes;

    #[test]
    fn rfc3339_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("1970-01-01T00:00:00Z", Some("0")),
            ("2026-11-21T04:30:00.123Z", Some("1795235400.123")),
            (
                "2026-11-21T04:30:00.123456789Z",
                Some("1795235400.123456789"),
            ),
            ("2026-11-21T06:30:00+02:00", Some("1795235400")),
            ("2026-11-21T00:00:00-04:30", Some("1795235400")),
            ("2000-02-29T12:00:00Z", Some("951825600")),
            ("1969-12-31T23:59:59Z", Some("-1")),
            ("2026-11-21T04:30:00", None),
            ("2026-13-21T04:30:00Z", None),
            ("2026-11-21T04:30:00.Z", None),
            ("2026-11-21T04:30:00.1234567890Z", None),
            ("yesterday", None),
        ];
        for (input, want) in cases {
            assert_eq!(rfc3339_to_epoch(input).as_deref(), *want, "{input}");
        }
    }

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
