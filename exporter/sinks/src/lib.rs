//! Stage 5: batching, durable queues, retries and the sink transports (issue 6).
//!
//! This crate holds its place in the workspace layout of DESIGN.md; it has no
//! code yet. Nothing depends on it until issue 6 fills it in.
#![forbid(unsafe_code)]
