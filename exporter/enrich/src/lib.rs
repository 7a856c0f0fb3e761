//! Stage 2: who is talking. Kubernetes and manifest sources fill a time-aware IP -> identity index (issue 3).
//!
//! This crate holds its place in the workspace layout of DESIGN.md; it has no
//! code yet. Nothing depends on it until issue 3 fills it in.
#![forbid(unsafe_code)]
