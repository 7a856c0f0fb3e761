//! Stage ③ (explain): which policy and which rule decided each flow, for
//! the enforced policies and for staged ones (pending), and whether that
//! agrees with what the dataplane was seen to do.
//!
//! Policies come in as untyped JSON ([`parse_policy`], following the lenient
//! approach of `flowscribe-enrich`'s objects: one bad field marks one policy
//! invalid, naming the field) and are compiled into a [`PolicyIndex`]. The
//! data path calls [`explain`] per flow: a pure function of the index and
//! the [`EnrichedFlow`](flowscribe_model::EnrichedFlow), returning a
//! [`PolicyTrace`](flowscribe_model::PolicyTrace).
//!
//! This crate must not do IO, read clocks, spawn tasks or log per flow; the
//! binary owns watchers and files and hands the index over.
//!
//! Implemented kinds: networking.k8s.io/v1 NetworkPolicy, flowscribe.dev
//! StagedNetworkPolicy, Calico StagedKubernetesNetworkPolicy. See
//! `docs/policy.md` for the semantics and what is not yet supported.
#![forbid(unsafe_code)]

mod explain;
mod index;
mod json;
pub mod kubernetes;
mod policy;
pub mod selector;

pub use explain::{explain, observe};
pub use index::PolicyIndex;
pub use policy::{
    InvalidPolicy, Policy, PolicyError, PolicySpec, Stage, StagedAction, parse_policy,
    parse_policy_as, policy_kind,
};
