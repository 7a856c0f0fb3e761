//! Stage 4 of the flowscribe pipeline: turn canonical flows into documents.
//!
//! Today it has one schema, [`minimal`], the documented JSON line that
//! `flowscribe run` prints until the ECS/OTLP/OCSF/CEF schemas (issue 5)
//! replace it, and the helpers those schemas share: [`community_id`] and
//! [`event_id`]. Pure functions: no IO, no clocks.
#![forbid(unsafe_code)]

pub mod community_id;
pub mod event_id;
mod hex;
pub mod minimal;
