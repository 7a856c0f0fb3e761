//! The rustls client configuration of the syslog sink (RFC 5425): system
//! roots or a custom CA file, optional client certificate, verification
//! always on.
//!
//! Pipeline position: built by [`SyslogConfig::build`](super::SyslogConfig::build);
//! the transport asks [`ReloadingConnector::current`] for every
//! (re)connection, which rebuilds the settings first when one of the files
//! changed (certificate rotation without a restart). This module must not
//! open sockets.

use std::sync::Arc;

use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto};

use super::config::SyslogTlsConfig;
use crate::core::driver::TransportError;

fn invalid(msg: String) -> TransportError {
    TransportError::InvalidConfig(msg)
}

fn read_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let pem = std::fs::read(path).map_err(|source| TransportError::Io {
        context: "reading a TLS certificate file",
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(invalid(format!("{}: no PEM certificate", path.display())));
    }
    Ok(certs)
}

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
    let mut roots = RootCertStore::empty();
    match &cfg.ca_file {
        Some(path) => {
            for cert in read_certs(path)? {
                roots
                    .add(cert)
                    .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "syslog TLS: a system root certificate could not be loaded");
            }
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(invalid(
                    "tls: no system root certificates found; set ca_file".into(),
                ));
            }
        }
    }
    // The provider is named explicitly: the process may link more than one
    // and rustls refuses to guess.
    let builder = ClientConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(format!("tls: {e}")))?
        .with_root_certificates(roots);
    let config = match (&cfg.client_cert_file, &cfg.client_key_file) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert)?;
            let pem = std::fs::read(key).map_err(|source| TransportError::Io {
                context: "reading the TLS client key file",
                source,
            })?;
            let key_der = PrivateKeyDer::from_pem_slice(&pem)
                .map_err(|e| invalid(format!("{}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| invalid(format!("tls client certificate: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    let name = cfg.server_name.clone().unwrap_or_else(|| host.to_string());
    let server_name = ServerName::try_from(name.clone())
        .map_err(|e| invalid(format!("tls server name {name:?}: {e}")))?;
    Ok((TlsConnector::from(Arc::new(config)), server_name))
}
