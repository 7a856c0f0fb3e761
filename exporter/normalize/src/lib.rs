//! Stage 4 of the flowscribe pipeline: turn canonical flows
//! ([`flowscribe_model::ExplainedFlow`]) into the documents sinks ship.
//!
//! One module per output schema, registered in the closed [`Schema`] enum:
//! [`ecs`] (Elastic Common Schema 9.x), [`otlp`] (OTLP LogRecords, protobuf
//! and OTLP/JSON), [`ocsf`] (OCSF 1.8 Network Activity) and [`cef`] (CEF:0
//! for syslog SIEMs). Each has a mapping table ([`FieldMapping`]) that is
//! the published contract in `schemas/` and `docs/schemas/`. Shared
//! helpers: [`community_id`], [`event_id`], and checkers that hold a
//! document against the pinned upstream schema ([`ecs_fields`],
//! [`ocsf_check`]). [`minimal`] is the interim JSON line of `flowscribe run`.
//!
//! For streams of records, [`ecs::EcsEncoder`] and [`otlp::OtlpEncoder`]
//! write the same bytes as [`ecs::write_flow_document`] and
//! [`otlp::write_log_record_protobuf`], rendering the parts that depend only
//! on shared pods, endpoints and policies once ([`fragment_cache`]), and
//! write a connection reported again from a template of its last record
//! with the per-window values filled in (`template`).
//!
//! Pure functions: no IO, no clocks (the observed time is a parameter), no
//! async. Batching, framing and transport belong to the sinks.
#![forbid(unsafe_code)]

// Lets unit tests share the golden fixtures in `tests/fixtures/`, which name
// this crate by its package name.
#[cfg(test)]
extern crate self as flowscribe_normalize;

pub mod cef;
pub mod community_id;
pub mod ecs;
pub mod ecs_fields;
pub mod event_id;
pub mod fragment_cache;
mod hex;
mod json;
pub mod minimal;
pub mod ocsf;
pub mod ocsf_check;
pub mod otlp;
mod protobuf;
mod rfc3339;
mod schema;
mod template;
#[cfg(test)]
mod test_flows;
mod view;

pub use schema::{
    Context, EncodeError, FieldMapping, Schema, UnknownSchema, encode_flow,
    encode_flow_with_event_id, encode_loss, json_schema, loss_json_schema, mapping_json,
    mapping_markdown,
};
