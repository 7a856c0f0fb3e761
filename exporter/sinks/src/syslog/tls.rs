//! The rustls client configuration of the syslog sink (RFC 5425): the
//! shared [`crate::core::tls`] setup with the syslog config's files.
//!
//! Pipeline position: built by [`SyslogConfig::build`](super::SyslogConfig::build);
//! the transport asks [`ReloadingConnector::current`] for every
//! (re)connection, which rebuilds the settings first when one of the files
//! changed (certificate rotation without a restart). This module must not
//! open sockets.

use super::config::SyslogTlsConfig;
use crate::core::driver::TransportError;
pub(crate) use crate::core::tls::ReloadingConnector;
use crate::core::tls::{TlsFiles, TlsSetupError};

/// The reloading connector for a syslog sink's TLS files.
pub(crate) fn reloading(
    cfg: &SyslogTlsConfig,
    host: &str,
) -> Result<ReloadingConnector, TransportError> {
    let files = TlsFiles {
        ca_file: cfg.ca_file.clone(),
        client_cert_file: cfg.client_cert_file.clone(),
        client_key_file: cfg.client_key_file.clone(),
        server_name: cfg.server_name.clone(),
    };
    ReloadingConnector::new(files, host, &[], "syslog").map_err(|e| match e {
        TlsSetupError::Read { source, .. } => TransportError::Io {
            context: "reading a TLS certificate or key file",
            source,
        },
        TlsSetupError::Invalid(m) => TransportError::InvalidConfig(format!("tls: {m}")),
    })
}
