//! Stage 4 of the flowscribe pipeline: turn canonical flows into documents.
//!
//! Today it has one schema, [`minimal`], the documented JSON line that
//! `flowscribe run` prints until the ECS/OTLP/OCSF/CEF schemas (issue 5)
//! replace it, and the helpers those schemas share: [`community_id`],
//! [`event_id`], and a checker that holds a document against the pinned
//! upstream schema ([`ecs_fields`], [`ocsf_check`]). Pure functions: no IO, no clocks.
#![forbid(unsafe_code)]

pub mod community_id;
pub mod ecs_fields;
pub mod event_id;
mod hex;
pub mod minimal;
pub mod ocsf_check;
mod rfc3339;
