//! The shared machinery of stage ⑤ (deliver): one error-classification
//! table, backoff with jitter and a pure batcher.
//!
//! Pipeline position: a sink driver batches encoded records, sends them,
//! [`classify::classify`]s the outcome and waits [`backoff::Backoff`]
//! between retries. Nothing here knows a wire protocol.

pub mod backoff;
pub mod batch;
pub mod classify;

#[cfg(test)]
mod docs;
