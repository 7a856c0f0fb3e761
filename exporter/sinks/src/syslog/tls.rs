//! The rustls client configuration of the syslog sink (RFC 5425): the
//! shared [`crate::core::tls`] setup with the syslog config's files.
//!
//! Pipeline position: built once by [`SyslogConfig::build`](super::SyslogConfig::build);
//! the transport uses the connector for every (re)connection. This module
//! must not open sockets.

use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

use super::config::SyslogTlsConfig;
use crate::core::driver::TransportError;
use crate::core::tls::{TlsClientFiles, TlsSetupError, client_connector};

/// The connector and the server name to verify.
pub(crate) fn connector(
    cfg: &SyslogTlsConfig,
    host: &str,
) -> Result<(TlsConnector, ServerName<'static>), TransportError> {
    let files = TlsClientFiles {
        ca_file: cfg.ca_file.as_deref(),
        client_cert_file: cfg.client_cert_file.as_deref(),
        client_key_file: cfg.client_key_file.as_deref(),
        server_name: cfg.server_name.as_deref(),
    };
    client_connector(&files, host, &[]).map_err(|e| match e {
        TlsSetupError::Read { source, .. } => TransportError::Io {
            context: "reading a TLS certificate or key file",
            source,
        },
        TlsSetupError::Invalid(m) => TransportError::InvalidConfig(format!("tls: {m}")),
    })
}
