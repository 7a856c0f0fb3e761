//! Stage-neutral types shared by every stage of the flowscribe pipeline.
//!
//! Capture (stage 1) produces [`Flow`] and [`CaptureLoss`] values; enrich
//! (stage 2) turns a flow into an [`EnrichedFlow`] with an [`Endpoint`] on each
//! side; later stages (explain, normalize, deliver) read them. This crate does no IO and
//! its types are deliberately not `Serialize`: each output schema in
//! `flowscribe-normalize` decides its own field names.
#![forbid(unsafe_code)]

mod endpoint;
mod flow;
mod loss;
mod name;
mod policy;

pub use endpoint::{
    Endpoint, EndpointKind, EnrichedFlow, PodIdentity, ServiceRef, Stale, Workload,
};

pub use flow::{
    DirectionCounters, Drops, EndReason, Flow, FlowKey, FlowState, HookDirection, InterfaceRef,
    Orientation, protocol_name,
};
pub use loss::{CaptureLoss, LossReason};
pub use name::Name;
pub use policy::{
    Evaluation, ExplainedFlow, Mismatch, Observed, PolicyAction, PolicyDirection, PolicyHit,
    PolicyKind, PolicyRef, PolicyTrace, SideVerdict, Verdict, VerdictReason, VerdictSource,
};
