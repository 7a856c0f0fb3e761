//! Stage-neutral types shared by every stage of the flowscribe pipeline.
//!
//! Capture (stage 1) produces [`Flow`] and [`CaptureLoss`] values; later stages
//! (enrich, explain, normalize, deliver) read them. This crate does no IO and
//! its types are deliberately not `Serialize`: each output schema in
//! `flowscribe-normalize` decides its own field names.
#![forbid(unsafe_code)]

mod flow;
mod loss;

pub use flow::{
    DirectionCounters, Drops, EndReason, Flow, FlowKey, FlowState, HookDirection, InterfaceRef,
    Orientation, protocol_name,
};
pub use loss::{CaptureLoss, LossReason};
