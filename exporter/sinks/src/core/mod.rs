//! The shared machinery of stage ⑤ (deliver): one error-classification
//! table, backoff with jitter, a pure batcher and the durable per-sink
//! queue.
//!
//! Pipeline position: normalize hands encoded records to the daemon, which
//! pushes them into one [`queue::DurableQueue`] per sink; a sink driver
//! reads batches from it, sends them, [`classify::classify`]s the outcome,
//! waits [`backoff::Backoff`] between retries, and acks the batch when the
//! outcome is final. Nothing here knows a wire protocol.

pub mod backoff;
pub mod batch;
pub mod classify;
pub mod driver;
pub mod http;
pub mod json;
pub mod queue;
pub mod tls;

#[cfg(test)]
mod docs;
