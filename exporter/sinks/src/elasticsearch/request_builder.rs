//! Batch → `_bulk` request: NDJSON pairs of a `create` action carrying the
//! record's event id as `_id`, and the record's JSON document.
//!
//! ```text
//! POST /logs-flowscribe.flow-default/_bulk?filter_path=errors,items.*.status,items.*.error.type,items.*.error.reason
//! {"create":{"_id":"<event id>"}}
//! {"@timestamp":"…", …the ECS document…}
//! ```
//!
//! `create` is what data streams require and what makes retries
//! idempotent: a document whose `_id` already exists answers 409 instead of
//! being indexed twice. `filter_path` keeps the response to what the
//! transport reads (ES otherwise echoes index, id, version, shards and
//! sequence numbers for every item). Line breaks inside a document become
//! spaces: in JSON they can only be whitespace, and NDJSON needs one
//! document per line. The body ends with `\n`, as ES requires.
//!
//! Pure: no IO, no classification.

use super::config::ElasticsearchConfig;
use crate::core::json::write_json_string;
use crate::core::queue::QueuedRecord;

/// What the transport reads from a bulk response.
pub const FILTER_PATH: &str = "errors,items.*.status,items.*.error.type,items.*.error.reason";

/// Builds `_bulk` request paths and bodies for one sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkRequestBuilder {
    path: String,
}

impl BulkRequestBuilder {
    pub fn new(cfg: &ElasticsearchConfig) -> Self {
        let mut path = format!("/{}/_bulk?filter_path={FILTER_PATH}", cfg.data_stream());
        if let Some(p) = &cfg.pipeline {
            path.push_str("&pipeline=");
            path.push_str(p);
        }
        if cfg.require_data_stream {
            path.push_str("&require_data_stream=true");
        }
        BulkRequestBuilder { path }
    }

    /// The request path and query, relative to the endpoint.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The NDJSON body for `batch`, appended to `out`.
    pub fn write_body(&self, batch: &[QueuedRecord], out: &mut Vec<u8>) {
        for r in batch {
            out.extend_from_slice(b"{\"create\":{\"_id\":");
            write_json_string(r.event_id.as_bytes(), out);
            out.extend_from_slice(b"}}\n");
            let doc = r.payload.as_ref();
            if memchr::memchr2(b'\n', b'\r', doc).is_some() {
                out.extend(doc.iter().map(|&b| match b {
                    b'\n' | b'\r' => b' ',
                    b => b,
                }));
            } else {
                out.extend_from_slice(doc);
            }
            out.push(b'\n');
        }
    }

    /// The NDJSON body for `batch`.
    pub fn body(&self, batch: &[QueuedRecord]) -> Vec<u8> {
        let size: usize = batch
            .iter()
            .map(|r| r.payload.len() + r.event_id.len() + 24)
            .sum();
        let mut out = Vec::with_capacity(size);
        self.write_body(batch, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn rec(seq: u64, id: &str, doc: &str) -> QueuedRecord {
        QueuedRecord {
            seq,
            event_id: id.into(),
            payload: Bytes::copy_from_slice(doc.as_bytes()),
        }
    }

    #[test]
    fn body_is_create_pairs_ending_in_a_newline() {
        let cfg = ElasticsearchConfig::new("http://es:9200");
        let b = BulkRequestBuilder::new(&cfg);
        assert_eq!(
            b.path(),
            "/logs-flowscribe.flow-default/_bulk?filter_path=errors,items.*.status,items.*.error.type,items.*.error.reason"
        );
        let body = b.body(&[
            rec(1, "a1", r#"{"@timestamp":"2026-11-21T04:30:00Z","n":1}"#),
            rec(2, "we\"ird\\id\u{1}", "{\"m\":\"x\",\n \"k\":2}\r\n"),
        ]);
        let want = concat!(
            "{\"create\":{\"_id\":\"a1\"}}\n",
            "{\"@timestamp\":\"2026-11-21T04:30:00Z\",\"n\":1}\n",
            "{\"create\":{\"_id\":\"we\\\"ird\\\\id\\u0001\"}}\n",
            "{\"m\":\"x\",  \"k\":2}  \n",
        );
        assert_eq!(String::from_utf8(body.clone()).unwrap(), want);
        // Every line is valid JSON and the id round-trips.
        let lines: Vec<&str> = want.lines().collect();
        assert_eq!(lines.len(), 4);
        for l in &lines {
            serde_json::from_str::<serde_json::Value>(l).unwrap();
        }
        let action: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
        assert_eq!(action["create"]["_id"], "we\"ird\\id\u{1}");
    }

    #[test]
    fn pipeline_and_require_data_stream_go_in_the_query() {
        let cfg = ElasticsearchConfig {
            namespace: "prod".into(),
            pipeline: Some("flows-geoip".into()),
            require_data_stream: true,
            ..ElasticsearchConfig::new("http://es:9200")
        };
        let p = BulkRequestBuilder::new(&cfg);
        assert!(p.path().starts_with("/logs-flowscribe.flow-prod/_bulk?"));
        assert!(
            p.path()
                .ends_with("&pipeline=flows-geoip&require_data_stream=true")
        );
    }
}
