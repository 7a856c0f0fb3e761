//! Stage 3: which policy and rule decided each flow, as a pure explain() over a compiled index (issue 4).
//!
//! This crate holds its place in the workspace layout of DESIGN.md; it has no
//! code yet. Nothing depends on it until issue 4 fills it in.
#![forbid(unsafe_code)]
