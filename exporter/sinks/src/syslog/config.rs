//! Configuration of the syslog sink: documented fields, `validate` (pure,
//! every problem at once) and `build` (reads TLS files, returns the
//! transport).
//!
//! Pipeline position: the daemon's config loader fills a [`SyslogConfig`],
//! validates it with the rest of the config, then builds the transport for
//! the sink's driver. This module must not open sockets.

use std::path::PathBuf;
use std::time::Duration;

use super::framing::{
    APP_NAME_MAX, HOSTNAME_MAX, MSGID_MAX, PROCID_MAX, SD_NAME_MAX, SyslogHeader,
    validate_header_field,
};
use super::service::SyslogTransport;
use crate::core::driver::TransportError;

/// How messages travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyslogProtocol {
    /// RFC 6587 octet counting over TCP.
    Tcp,
    /// RFC 5425: octet counting over TLS (rustls).
    Tls,
    /// RFC 5426: one message per datagram. **Lossy**: no acknowledgement
    /// and no flow control; a datagram lost on the way is not detected.
    Udp,
}

/// TLS settings (RFC 5425). Verification is always on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyslogTlsConfig {
    /// PEM file of the CA certificates that may sign the server's
    /// certificate; replaces the system roots when set.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain presented to the server (mutual TLS).
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file`.
    pub client_key_file: Option<PathBuf>,
    /// The name the server certificate must carry; default: the host of
    /// `address`.
    pub server_name: Option<String>,
}

/// Where the event id goes in each message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StructuredData {
    /// STRUCTURED-DATA is the NILVALUE `-`; the event id is only in the body.
    Nil,
    /// `[SD-ID event_id="..."]`. The default SD-ID `flowscribe@32473` uses
    /// the documentation enterprise number of RFC 5612; set your own
    /// registered one for production.
    EventId { sd_id: String },
}

/// The syslog sink.
#[derive(Debug, Clone, PartialEq)]
pub struct SyslogConfig {
    /// `host:port` of the receiver.
    pub address: String,
    pub protocol: SyslogProtocol,
    /// Required for [`SyslogProtocol::Tls`].
    pub tls: Option<SyslogTlsConfig>,
    /// HOSTNAME field: the node name.
    pub hostname: String,
    /// APP-NAME field; default `flowscribe`.
    pub app_name: String,
    /// PROCID field; default the process id.
    pub procid: String,
    /// MSGID field; default `flow`.
    pub msgid: String,
    /// Facility 0..=23; default 16 (local0).
    pub facility: u8,
    /// Severity 0..=7; default 6 (informational).
    pub severity: u8,
    pub structured_data: StructuredData,
    /// UDP only: a message larger than this is rejected (`too_large`) and
    /// counted, never truncated. RFC 5426 asks receivers to accept 2048
    /// bytes; at most 65507 (the IPv4 UDP payload limit).
    pub max_datagram_bytes: usize,
    /// TCP connect plus TLS handshake must finish within this.
    pub connect_timeout: Duration,
    /// TCP/TLS: plain syslog has no acknowledgement, so the last frames
    /// written on a connection are kept and written again on the next
    /// connection when this one breaks (duplicates carry the same event
    /// id). At most this many records.
    pub replay_window_records: usize,
}

impl SyslogConfig {
    /// Defaults for everything but the address, protocol and hostname.
    pub fn new(
        address: impl Into<String>,
        protocol: SyslogProtocol,
        hostname: impl Into<String>,
    ) -> Self {
        SyslogConfig {
            address: address.into(),
            protocol,
            tls: (protocol == SyslogProtocol::Tls).then(SyslogTlsConfig::default),
            hostname: hostname.into(),
            app_name: "flowscribe".into(),
            procid: std::process::id().to_string(),
            msgid: "flow".into(),
            facility: 16,
            severity: 6,
            structured_data: StructuredData::EventId {
                sd_id: "flowscribe@32473".into(),
            },
            max_datagram_bytes: 2048,
            connect_timeout: Duration::from_secs(10),
            replay_window_records: 1_000,
        }
    }

    /// Every problem, as `field: problem`.
    pub fn validate(&self) -> Result<(), SyslogConfigError> {
        let mut problems = Vec::new();
        if split_host_port(&self.address).is_none() {
            problems.push("address: expected host:port".to_string());
        }
        for (name, value, max) in [
            ("hostname", &self.hostname, HOSTNAME_MAX),
            ("app_name", &self.app_name, APP_NAME_MAX),
            ("procid", &self.procid, PROCID_MAX),
            ("msgid", &self.msgid, MSGID_MAX),
        ] {
            if let Some(p) = validate_header_field(value, max, false) {
                problems.push(format!("{name}: {p}"));
            }
        }
        if let StructuredData::EventId { sd_id } = &self.structured_data {
            if let Some(p) = validate_header_field(sd_id, SD_NAME_MAX, true) {
                problems.push(format!("structured_data.sd_id: {p}"));
            }
            if !sd_id.contains('@') {
                problems.push("structured_data.sd_id: must be name@enterprise-number (only IANA may register names without @)".into());
            }
        }
        if self.facility > 23 {
            problems.push("facility: must be 0..=23".into());
        }
        if self.severity > 7 {
            problems.push("severity: must be 0..=7".into());
        }
        if self.protocol == SyslogProtocol::Udp
            && !(480..=65_507).contains(&self.max_datagram_bytes)
        {
            problems.push("max_datagram_bytes: must be 480..=65507".into());
        }
        match (&self.tls, self.protocol) {
            (None, SyslogProtocol::Tls) => problems.push("tls: required for protocol tls".into()),
            (Some(_), SyslogProtocol::Tcp | SyslogProtocol::Udp) => {
                problems.push("tls: only valid with protocol tls".into())
            }
            (Some(t), SyslogProtocol::Tls) => {
                if t.client_cert_file.is_some() != t.client_key_file.is_some() {
                    problems.push("tls: client_cert_file and client_key_file go together".into());
                }
            }
            (None, _) => {}
        }
        if self.connect_timeout.is_zero() {
            problems.push("connect_timeout: must be positive".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SyslogConfigError(problems))
        }
    }

    /// Validate, read the TLS files and return the transport. Opens no
    /// connection (the first send does).
    pub fn build(&self) -> Result<SyslogTransport, TransportError> {
        self.validate()
            .map_err(|e| TransportError::InvalidConfig(e.to_string()))?;
        SyslogTransport::new(self)
    }

    pub(crate) fn header(&self) -> SyslogHeader {
        SyslogHeader {
            pri: self.facility * 8 + self.severity,
            hostname: self.hostname.clone(),
            app_name: self.app_name.clone(),
            procid: self.procid.clone(),
            msgid: self.msgid.clone(),
            event_id_sd_id: match &self.structured_data {
                StructuredData::Nil => None,
                StructuredData::EventId { sd_id } => Some(sd_id.clone()),
            },
        }
    }
}

/// `host:port` (IPv6 as `[addr]:port`) into its parts.
pub(crate) fn split_host_port(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty()).then_some((host, port))
}

/// Every problem found by [`SyslogConfig::validate`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid syslog sink config: {}", .0.join("; "))]
pub struct SyslogConfigError(pub Vec<String>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_problems_are_all_listed() {
        let ok = SyslogConfig::new("127.0.0.1:514", SyslogProtocol::Tcp, "node-1");
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(ok.header().pri, 134);
        let bad = SyslogConfig {
            address: "nohost".into(),
            hostname: "has space".into(),
            facility: 24,
            tls: Some(SyslogTlsConfig::default()),
            structured_data: StructuredData::EventId { sd_id: "x".into() },
            ..ok.clone()
        };
        let Err(SyslogConfigError(problems)) = bad.validate() else {
            panic!("expected problems");
        };
        assert_eq!(problems.len(), 5, "{problems:?}");
        let tls = SyslogConfig {
            tls: Some(SyslogTlsConfig {
                client_cert_file: Some("c.pem".into()),
                ..SyslogTlsConfig::default()
            }),
            ..SyslogConfig::new("[::1]:6514", SyslogProtocol::Tls, "n")
        };
        assert_eq!(tls.validate().map_err(|e| e.0.len()), Err(1));
        assert_eq!(split_host_port("[::1]:6514"), Some(("::1", 6514)));
    }
}
