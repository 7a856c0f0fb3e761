//! Helpers for the end-to-end tests (network namespaces, the flowscribe binary).
#![forbid(unsafe_code)]
