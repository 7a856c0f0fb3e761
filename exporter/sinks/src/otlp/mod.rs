//! The OTLP logs sink: one `ExportLogsServiceRequest` per batch, sent over
//! gRPC (tonic, `/opentelemetry.proto.collector.logs.v1.LogsService/Export`)
//! or HTTP (`POST /v1/logs`, binary protobuf or OTLP/JSON).
//!
//! Pipeline position: one of the sink transports driven by
//! [`crate::core::driver::SinkDriver`]. Each queued record is one encoded
//! `LogRecord` (protobuf, written by normalize); [`request_builder`] wraps
//! a batch of them in one `ResourceLogs` / `ScopeLogs` by concatenating the
//! record bytes as repeated fields (no decode and re-encode on the protobuf
//! paths). [`grpc`] and [`http`] move the bytes and turn what came back (a
//! gRPC status, an HTTP status, a `partial_success`) into
//! [`Outcome`](crate::core::classify::Outcome)s for the driver.
//!
//! This module must not retry, sleep, queue or decide a classification: the
//! driver and [`crate::core::classify`]'s table do. It must never log the
//! headers it sends (they carry credentials).

pub mod config;
pub mod grpc;
pub mod http;
pub mod request_builder;
mod response;
mod service;

#[cfg(test)]
mod tests;

pub use config::{OtlpConfig, OtlpConfigError, OtlpEncoding, OtlpProtocol, OtlpTlsConfig};
pub use request_builder::OtlpRequestBuilder;
pub use service::{OtlpStats, OtlpTransport};
