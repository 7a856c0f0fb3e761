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
//! StagedNetworkPolicy; policy.networking.k8s.io AdminNetworkPolicy,
//! BaselineAdminNetworkPolicy (v1alpha1) and ClusterNetworkPolicy
//! (v1alpha2); projectcalico.org/v3 Tier, NetworkPolicy,
//! GlobalNetworkPolicy, StagedNetworkPolicy, StagedGlobalNetworkPolicy and
//! StagedKubernetesNetworkPolicy. See `docs/policy.md` for the semantics
//! and what is not supported.
#![forbid(unsafe_code)]

pub mod admin;
pub mod calico;
pub mod calico_selector;
mod candidates;
mod explain;
mod index;
mod json;
pub mod kubernetes;
mod matching;
mod memo;
mod policy;
pub mod selector;

pub use explain::{explain, observe};
pub use index::PolicyIndex;
pub use policy::{
    ADMIN_TIER, BASELINE_TIER, InvalidPolicy, InvalidScope, InvalidTier, Policy, PolicyError,
    PolicySpec, Stage, StagedAction, parse_policy, parse_policy_as, parse_tier, policy_kind,
};
