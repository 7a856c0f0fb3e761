//! The Splunk HTTP Event Collector (HEC) sink: batched JSON events to
//! `/services/collector/event`, with optional indexer acknowledgement.
//!
//! Pipeline position: one of the sink transports driven by
//! [`crate::core::driver::SinkDriver`]. [`request_builder`] wraps each
//! record in a HEC event envelope (`time`, `host`, `source`, `sourcetype`,
//! `index`, `event`, and the event id as the indexed field
//! `flowscribe_event_id`, so duplicates are identifiable in Splunk);
//! [`service`] sends the batch with the shared [`crate::core::http`]
//! client, reads HEC's body `code`, and with acknowledgements polls
//! `/services/collector/ack` until the batch is indexed. This module must
//! not retry or classify on its own.

pub mod config;
pub mod request_builder;
pub mod service;

pub use config::{HecAckConfig, SplunkHecConfig, SplunkHecConfigError};
pub use request_builder::HecRequestBuilder;
pub use service::{SplunkHecStats, SplunkHecTransport};
