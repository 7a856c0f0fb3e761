//! Configuration of the OTLP sink: documented fields, `validate` (pure,
//! every problem at once) and `build` (reads the TLS and header files,
//! returns the transport).
//!
//! Pipeline position: the daemon fills an [`OtlpConfig`] from `--sink
//! otlp+grpc://…` / `otlp+http://…` or the config file, validates it, then
//! builds the transport for the sink's driver inside the sinks runtime.
//! This module must not open sockets, and must never print a header value.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use opentelemetry_proto::tonic::logs::v1::ResourceLogs;

use super::service::OtlpTransport;
use crate::core::driver::TransportError;

/// How requests travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP/gRPC: unary `LogsService/Export` over HTTP/2 (tonic).
    Grpc,
    /// OTLP/HTTP: `POST {path}` (default `/v1/logs`) over HTTP/1.1.
    Http,
}

/// The body encoding of OTLP/HTTP (gRPC is always protobuf).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpEncoding {
    /// `Content-Type: application/x-protobuf`.
    Protobuf,
    /// `Content-Type: application/json`, OTLP/JSON (hex ids, integer enums,
    /// 64-bit integers as strings), written by normalize's `write_json`.
    Json,
}

impl OtlpEncoding {
    pub fn content_type(self) -> &'static str {
        match self {
            OtlpEncoding::Protobuf => "application/x-protobuf",
            OtlpEncoding::Json => "application/json",
        }
    }
}

/// TLS settings. Verification is always on; without `ca_file` the system
/// roots are used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OtlpTlsConfig {
    /// PEM file of the CA certificates that may sign the server's
    /// certificate; replaces the system roots when set.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain presented to the server (mutual TLS).
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file`.
    pub client_key_file: Option<PathBuf>,
    /// The name the server certificate must carry; default: the host of
    /// `endpoint`.
    pub server_name: Option<String>,
}

/// The OTLP logs sink.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpConfig {
    /// `host:port` of the receiver (4317 is the usual gRPC port, 4318 HTTP).
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    /// HTTP only; gRPC always sends protobuf.
    pub encoding: OtlpEncoding,
    /// `None`: plaintext (h2c for gRPC, `http://` for HTTP).
    pub tls: Option<OtlpTlsConfig>,
    /// A file of extra request headers (gRPC metadata), one `name: value`
    /// per line; blank lines and lines starting with `#` are ignored. Read
    /// at build; values are never logged (they carry API keys).
    pub headers_file: Option<PathBuf>,
    /// Compress request bodies with gzip (gRPC message compression,
    /// HTTP `Content-Encoding: gzip`).
    pub gzip: bool,
    /// HTTP only, off by default: compress with zstd instead
    /// (`Content-Encoding: zstd`), several times cheaper than gzip. The
    /// spec only requires receivers to accept gzip; the OTel Collector's
    /// OTLP/HTTP receiver accepts zstd too. Takes precedence over `gzip`.
    pub zstd: bool,
    /// The deadline of one export (gRPC `grpc-timeout`; HTTP request
    /// timeout). Keep it below the driver's send timeout.
    pub timeout: Duration,
    /// TCP connect plus TLS handshake must finish within this.
    pub connect_timeout: Duration,
    /// HTTP only: the request path; default `/v1/logs` (OTLP spec).
    pub http_path: String,
    /// The resource and scope every batch is sent under (its `log_records`
    /// are ignored); the daemon passes normalize's
    /// `otlp::resource_logs(ctx, vec![])`.
    pub envelope: ResourceLogs,
}

/// The OTLP/HTTP logs path of the spec.
pub const OTLP_HTTP_LOGS_PATH: &str = "/v1/logs";

impl OtlpConfig {
    /// Defaults for everything but the endpoint, protocol and envelope:
    /// protobuf, plaintext, gzip on, 10 s deadline, 10 s connect timeout.
    pub fn new(
        endpoint: impl Into<String>,
        protocol: OtlpProtocol,
        envelope: ResourceLogs,
    ) -> Self {
        OtlpConfig {
            endpoint: endpoint.into(),
            protocol,
            encoding: OtlpEncoding::Protobuf,
            tls: None,
            headers_file: None,
            gzip: true,
            zstd: false,
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            http_path: OTLP_HTTP_LOGS_PATH.to_string(),
            envelope,
        }
    }

    /// Every problem, as `field: problem`.
    pub fn validate(&self) -> Result<(), OtlpConfigError> {
        let mut problems = Vec::new();
        if split_host_port(&self.endpoint).is_none() {
            problems.push(format!(
                "endpoint: {:?} is not HOST:PORT (IPv6 as [ADDR]:PORT)",
                self.endpoint
            ));
        }
        if self.protocol == OtlpProtocol::Grpc && self.encoding == OtlpEncoding::Json {
            problems
                .push("encoding: json is only available over HTTP (gRPC sends protobuf)".into());
        }
        if self.protocol == OtlpProtocol::Grpc && self.zstd {
            problems.push("zstd: only available over HTTP (gRPC compresses with gzip)".into());
        }
        if self.timeout.is_zero() {
            problems.push("timeout: must be greater than zero".into());
        }
        if self.connect_timeout.is_zero() {
            problems.push("connect_timeout: must be greater than zero".into());
        }
        if self.protocol == OtlpProtocol::Http && !self.http_path.starts_with('/') {
            problems.push(format!(
                "http_path: {:?} must start with '/'",
                self.http_path
            ));
        }
        if let Some(tls) = &self.tls
            && tls.client_cert_file.is_some() != tls.client_key_file.is_some()
        {
            problems.push("tls: client_cert_file and client_key_file go together".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(OtlpConfigError(problems))
        }
    }

    /// Validate, read the TLS and header files, and build the transport.
    /// Call inside the tokio runtime the driver runs on.
    pub fn build(&self) -> Result<OtlpTransport, TransportError> {
        self.validate()
            .map_err(|e| TransportError::InvalidConfig(e.0.join("; ")))?;
        let headers = match &self.headers_file {
            Some(p) => Headers::load(p)?,
            None => Headers::default(),
        };
        // gRPC hands tonic the PEM bytes; the shared HTTP client reads the
        // files itself.
        let tls = match (&self.tls, self.protocol) {
            (Some(t), OtlpProtocol::Grpc) => Some(TlsFiles::load(t)?),
            _ => None,
        };
        OtlpTransport::new(self, headers, tls)
    }
}

/// `host:port` split; IPv6 addresses in brackets. `None` when malformed.
pub(crate) fn split_host_port(endpoint: &str) -> Option<(&str, u16)> {
    let (host, port) = endpoint.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    if host.is_empty() || port == 0 || endpoint.contains('/') {
        return None;
    }
    if host.starts_with('[') != host.ends_with(']') {
        return None;
    }
    if !host.starts_with('[') && host.contains(':') {
        return None;
    }
    Some((host, port))
}

/// Every problem found by [`OtlpConfig::validate`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid OTLP sink config: {}", .0.join("; "))]
pub struct OtlpConfigError(pub Vec<String>);

/// Extra request headers from `headers_file`. Debug prints the names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Headers(pub(crate) Vec<(String, String)>);

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(n, _)| format!("{n}: <redacted>")))
            .finish()
    }
}

/// Header names the transport sets itself (or that gRPC reserves).
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-encoding",
    "content-length",
    "host",
    "te",
    "connection",
    "transfer-encoding",
    "user-agent",
];

impl Headers {
    fn load(path: &Path) -> Result<Headers, TransportError> {
        let text = std::fs::read_to_string(path).map_err(|source| TransportError::Io {
            context: "reading the OTLP headers_file",
            source,
        })?;
        Headers::parse(&text).map_err(|e| {
            TransportError::InvalidConfig(format!("headers_file {}: {e}", path.display()))
        })
    }

    /// Parse `name: value` lines. Errors name the line, never the value.
    pub(crate) fn parse(text: &str) -> Result<Headers, String> {
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let n = i + 1;
            let Some((name, value)) = line.split_once(':') else {
                return Err(format!("line {n}: expected `name: value`"));
            };
            let name = name.trim().to_ascii_lowercase();
            let value = value.trim();
            let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
            if name.is_empty() || !name.chars().all(token) {
                return Err(format!("line {n}: {name:?} is not a valid header name"));
            }
            if RESERVED_HEADERS.contains(&name.as_str()) || name.starts_with("grpc-") {
                return Err(format!(
                    "line {n}: header {name:?} is set by the transport and cannot be overridden"
                ));
            }
            if value.is_empty() || !value.chars().all(|c| c == '\t' || (' '..='~').contains(&c)) {
                return Err(format!(
                    "line {n}: the value of {name:?} is empty or not visible ASCII"
                ));
            }
            out.push((name, value.to_string()));
        }
        Ok(Headers(out))
    }
}

/// The TLS files, read at build.
#[derive(Clone)]
pub(crate) struct TlsFiles {
    pub(crate) ca_pem: Option<Vec<u8>>,
    /// Certificate chain and key PEM.
    pub(crate) identity: Option<(Vec<u8>, Vec<u8>)>,
    pub(crate) server_name: Option<String>,
}

impl fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsFiles")
            .field("custom_ca", &self.ca_pem.is_some())
            .field("client_identity", &self.identity.is_some())
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl TlsFiles {
    pub(crate) fn load(c: &OtlpTlsConfig) -> Result<TlsFiles, TransportError> {
        let read = |p: &PathBuf, context: &'static str| {
            std::fs::read(p).map_err(|source| TransportError::Io { context, source })
        };
        let ca_pem = match &c.ca_file {
            Some(p) => Some(read(p, "reading the OTLP TLS ca_file")?),
            None => None,
        };
        let identity = match (&c.client_cert_file, &c.client_key_file) {
            (Some(cert), Some(key)) => Some((
                read(cert, "reading the OTLP TLS client_cert_file")?,
                read(key, "reading the OTLP TLS client_key_file")?,
            )),
            _ => None,
        };
        Ok(TlsFiles {
            ca_pem,
            identity,
            server_name: c.server_name.clone(),
        })
    }
}
