//! Stage ⑤ (deliver): batching, durable queues, retries and the sink
//! transports (issue 6).
//!
//! [`core`] holds what every sink stands on and is transport-agnostic: it
//! works on encoded records (bytes) plus a per-record event id, so a
//! duplicate delivered after a retry or a crash is identifiable;
//! [`core::driver`] is the per-sink delivery loop. Each sink folder
//! ([`syslog`], [`file`], [`elasticsearch`], [`splunk`], [`loki`],
//! [`otlp`]) is a [`core::driver::Transport`], listed in the closed
//! [`sink::SinkTransport`], and must not re-implement classification,
//! backoff, batching or queueing.
#![forbid(unsafe_code)]

pub mod core;
pub mod elasticsearch;
pub mod file;
pub mod loki;
pub mod otlp;
pub mod sink;
pub mod splunk;
pub mod syslog;

/// The test PKI shared with the integration tests.
#[cfg(test)]
#[path = "../tests/support/pki.rs"]
pub(crate) mod test_pki;
