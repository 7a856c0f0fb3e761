//! The Elasticsearch / OpenSearch sink: `_bulk` NDJSON with `create`
//! actions into the data stream `logs-flowscribe.flow-<namespace>`.
//!
//! Pipeline position: one of the sink transports driven by
//! [`crate::core::driver::SinkDriver`]. Each record's deterministic event id
//! becomes the document `_id`, so a resend after a lost response answers
//! 409 for that item, which the table counts as already delivered: retries
//! are idempotent. Items are classified one by one, so only the retryable
//! items (429, 5xx, ...) are resent and a 400 mapping error rejects only
//! its own document, with the reason logged and counted.
//!
//! [`request_builder`] turns a batch into the body, [`service`] sends it
//! with the shared [`crate::core::http`] client and reads the per-item
//! statuses; this module must not retry, sleep or classify on its own.

pub mod config;
pub mod request_builder;
pub mod service;

pub use config::{ElasticsearchConfig, ElasticsearchConfigError};
pub use request_builder::BulkRequestBuilder;
pub use service::{ElasticsearchStats, ElasticsearchTransport};
