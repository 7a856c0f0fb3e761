//! The syslog sink: RFC 5424 messages with a CEF or JSON body, over TCP
//! with RFC 6587 octet counting, TLS (RFC 5425, rustls) or UDP (RFC 5426,
//! lossy).
//!
//! Pipeline position: one of the sink transports driven by
//! [`crate::core::driver::SinkDriver`]. Format (the body, from normalize),
//! framing ([`framing`]) and transport ([`service`]) stay apart. This
//! module must not retry, queue or classify on its own; the driver does.

pub mod config;
pub mod framing;
pub mod service;
mod tls;

#[cfg(test)]
mod tests;

pub use config::{
    StructuredData, SyslogConfig, SyslogConfigError, SyslogProtocol, SyslogTlsConfig,
};
pub use service::{SyslogStats, SyslogTransport};
