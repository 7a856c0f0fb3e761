//! The file sink (JSON lines, size/time rotation, gzip-compressed rotated
//! files) and the stdout sink.
//!
//! Pipeline position: sink transports driven by
//! [`crate::core::driver::SinkDriver`]. This module must not retry, queue
//! or classify on its own; the driver does.

pub mod config;
pub mod service;
pub mod stdout;

#[cfg(test)]
mod tests;

pub use config::{FileConfig, FileSync};
pub use service::FileTransport;
pub use stdout::StdoutTransport;
