//! The rustls client configuration every TLS sink shares (syslog over TLS,
//! RFC 5425, and the HTTP sinks): system roots or a CA file that replaces
//! them, an optional client certificate, verification always on, and the
//! ring provider named explicitly.
//!
//! Pipeline position: called once when a sink's transport is built; the
//! connector is then used for every (re)connection. This module must not
//! open sockets.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto};

/// The files and name a TLS client needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct TlsClientFiles<'a> {
    /// PEM CA certificates; replace the system roots when set.
    pub ca_file: Option<&'a Path>,
    /// PEM certificate chain presented to the server (mutual TLS).
    pub client_cert_file: Option<&'a Path>,
    /// PEM private key of `client_cert_file`.
    pub client_key_file: Option<&'a Path>,
    /// The name the server certificate must carry; default: the host.
    pub server_name: Option<&'a str>,
}

/// Why a TLS client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path).map_err(|source| TlsSetupError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The certificates of a PEM file (at least one).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let certs = CertificateDer::pem_slice_iter(&read(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsSetupError::Invalid(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsSetupError::Invalid(format!(
            "{}: no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// The connector (with `alpn` protocols, if any) and the server name to
/// verify for `host`.
pub fn client_connector(
    files: &TlsClientFiles<'_>,
    host: &str,
    alpn: &[&[u8]],
) -> Result<(TlsConnector, ServerName<'static>), TlsSetupError> {
    let invalid = TlsSetupError::Invalid;
    let mut roots = RootCertStore::empty();
    match files.ca_file {
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
                tracing::warn!(error = %e, "TLS: a system root certificate could not be loaded");
            }
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(invalid(
                    "no system root certificates found; set ca_file".into(),
                ));
            }
        }
    }
    // The provider is named explicitly: the process may link more than one
    // and rustls refuses to guess.
    let builder = ClientConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(e.to_string()))?
        .with_root_certificates(roots);
    let mut config = match (files.client_cert_file, files.client_key_file) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert)?;
            let key_der = PrivateKeyDer::from_pem_slice(&read(key)?)
                .map_err(|e| invalid(format!("{}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| invalid(format!("client certificate: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = files.server_name.unwrap_or(host).to_string();
    let server_name = ServerName::try_from(name.clone())
        .map_err(|e| invalid(format!("server name {name:?}: {e}")))?;
    Ok((TlsConnector::from(Arc::new(config)), server_name))
}

/// Owned TLS file settings, kept by a [`ReloadingConnector`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca_file: Option<PathBuf>,
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    pub server_name: Option<String>,
}

impl TlsFiles {
    pub fn borrowed(&self) -> TlsClientFiles<'_> {
        TlsClientFiles {
            ca_file: self.ca_file.as_deref(),
            client_cert_file: self.client_cert_file.as_deref(),
            client_key_file: self.client_key_file.as_deref(),
            server_name: self.server_name.as_deref(),
        }
    }
}

/// When each TLS file was last changed (modification time and size), to
/// notice a rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp(Vec<Option<(std::time::SystemTime, u64)>>);

impl FileStamp {
    fn of(files: &TlsFiles) -> FileStamp {
        let paths = [
            &files.ca_file,
            &files.client_cert_file,
            &files.client_key_file,
        ];
        FileStamp(
            paths
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

/// TLS settings rebuilt from their files when they change (certificate
/// rotation without a restart). A rebuild applies to the next connection;
/// an open connection keeps the session it negotiated. A file caught
/// mid-rotation (unparsable) keeps the previous settings, is reported
/// once, and is tried again at the next connection.
pub struct ReloadingConnector {
    files: TlsFiles,
    host: String,
    alpn: Vec<Vec<u8>>,
    /// For log lines: which sink kind this is.
    label: &'static str,
    stamp: FileStamp,
    current: (TlsConnector, ServerName<'static>),
    failed: Option<FileStamp>,
    reloads: u64,
}

impl std::fmt::Debug for ReloadingConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingConnector")
            .field("files", &self.files)
            .field("host", &self.host)
            .field("reloads", &self.reloads)
            .finish_non_exhaustive()
    }
}

impl ReloadingConnector {
    /// Build the settings now (errors are configuration errors).
    pub fn new(
        files: TlsFiles,
        host: &str,
        alpn: &[&[u8]],
        label: &'static str,
    ) -> Result<Self, TlsSetupError> {
        let stamp = FileStamp::of(&files);
        let current = client_connector(&files.borrowed(), host, alpn)?;
        Ok(ReloadingConnector {
            host: host.to_string(),
            alpn: alpn.iter().map(|p| p.to_vec()).collect(),
            label,
            stamp,
            current,
            failed: None,
            reloads: 0,
            files,
        })
    }

    /// The connector for a new connection, rebuilt first if a file changed.
    pub fn current(&mut self) -> (TlsConnector, ServerName<'static>) {
        let stamp = FileStamp::of(&self.files);
        if stamp != self.stamp && self.failed.as_ref() != Some(&stamp) {
            let alpn: Vec<&[u8]> = self.alpn.iter().map(Vec::as_slice).collect();
            match client_connector(&self.files.borrowed(), &self.host, &alpn) {
                Ok(c) => {
                    self.current = c;
                    self.stamp = stamp;
                    self.failed = None;
                    self.reloads += 1;
                    tracing::info!(sink = self.label, host = %self.host, "TLS certificate files changed; reloaded");
                }
                Err(e) => {
                    tracing::warn!(sink = self.label, host = %self.host, error = %e, "changed TLS certificate files do not load; keeping the previous ones");
                    self.failed = Some(stamp);
                }
            }
        }
        self.current.clone()
    }

    /// Successful rebuilds after the first build.
    pub fn reloads(&self) -> u64 {
        self.reloads
    }
}
