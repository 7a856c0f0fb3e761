//! The Grafana Loki sink: `POST /loki/api/v1/push` with a snappy-compressed
//! (raw/block format) protobuf `PushRequest`, or the JSON push (gzip).
//!
//! Pipeline position: one of the sink transports driven by
//! [`crate::core::driver::SinkDriver`]. [`request_builder`] reads the few
//! label values out of each JSON record (low-cardinality stream labels,
//! default `node`, `namespace`, `verdict`, plus static ones), puts the event
//! id and other high-cardinality values in structured metadata, groups the
//! batch into streams and orders each stream by time; [`service`] sends it
//! with the shared [`crate::core::http`] client. This module must not retry
//! or classify on its own.

pub mod config;
pub mod logproto;
pub mod request_builder;
pub mod service;

pub use config::{LokiConfig, LokiConfigError, LokiEncoding, LokiField};
pub use request_builder::LokiRequestBuilder;
pub use service::{LokiStats, LokiTransport};
