//! Stage ⑤ (deliver): batching, durable queues, retries and the sink
//! transports (issue 6).
//!
//! [`core`] holds what every sink stands on and is transport-agnostic: it
//! works on encoded records (bytes) plus a per-record event id, so a
//! duplicate delivered after a retry or a crash is identifiable. The sink
//! folders (OTLP, Loki, Elasticsearch, Splunk HEC, syslog, file) come later
//! and must not re-implement classification, backoff, batching or queueing.
#![forbid(unsafe_code)]

pub mod core;
pub mod syslog;
