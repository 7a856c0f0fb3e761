//! Sequence numbers, hash chain, signed checkpoints and the verifier (issue 7).
//!
//! This crate holds its place in the workspace layout of DESIGN.md; it has no
//! code yet. Nothing depends on it until issue 7 fills it in.
#![forbid(unsafe_code)]
