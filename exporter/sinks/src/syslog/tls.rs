//! The rustls client configuration of the syslog sink (RFC 5425): the
//! shared [`crate::core::tls`] setup with the syslog config's files.
//!
//! Pipeline position: built by [`SyslogConfig::build`](super::SyslogConfig::build);
//! the transport asks [`ReloadingConnector::current`] for every
//! (re)connection, which rebuilds the settings first when one of the files
//! changed (certificate rotation without a restart). This module must not
//! open sockets.

use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

use super::config::SyslogTlsConfig;
use crate::core::driver::TransportError;
use crate::core::tls::{TlsClientFiles, TlsSetupError, client_connector};

/// When each TLS file was last changed (modification time and size), to
/// notice a rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp(Vec<Option<(std::time::SystemTime, u64)>>);

impl FileStamp {
    fn of(cfg: &SyslogTlsConfig) -> FileStamp {
        let files = [&cfg.ca_file, &cfg.client_cert_file, &cfg.client_key_file];
        FileStamp(
            files
                .into_iter()
                .flatten()
                .map(|f| {
                    let m = std::fs::metadata(f).ok()?;
                    Some((m.modified().ok()?, m.len()))
                })
                .collect(),
        )
    }
}

/// The TLS settings of a sink, rebuilt from their files when they change.
/// A rebuild applies to the next connection; an open connection keeps the
/// session it negotiated. A file caught mid-rotation (unparsable) keeps the
/// previous settings, is reported once, and is tried again at the next
/// connection.
pub(crate) struct ReloadingConnector {
    cfg: SyslogTlsConfig,
    host: String,
    stamp: FileStamp,
    current: (TlsConnector, ServerName<'static>),
    failed: Option<FileStamp>,
    /// Successful rebuilds after the first build.
    pub(crate) reloads: u64,
}

impl ReloadingConnector {
    pub(crate) fn new(cfg: &SyslogTlsConfig, host: &str) -> Result<Self, TransportError> {
        let stamp = FileStamp::of(cfg);
        Ok(ReloadingConnector {
            current: connector(cfg, host)?,
            cfg: cfg.clone(),
            host: host.to_string(),
            stamp,
            failed: None,
            reloads: 0,
        })
    }

    /// The connector for a new connection.
    pub(crate) fn current(&mut self) -> (TlsConnector, ServerName<'static>) {
        let stamp = FileStamp::of(&self.cfg);
        if stamp != self.stamp && self.failed.as_ref() != Some(&stamp) {
            match connector(&self.cfg, &self.host) {
                Ok(c) => {
                    self.current = c;
                    self.stamp = stamp;
                    self.failed = None;
                    self.reloads += 1;
                    tracing::info!(host = %self.host, "syslog TLS: certificate files changed; reloaded");
                }
                Err(e) => {
                    tracing::warn!(host = %self.host, error = %e, "syslog TLS: changed certificate files do not load; keeping the previous ones");
                    self.failed = Some(stamp);
                }
            }
        }
        self.current.clone()
    }
}

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
