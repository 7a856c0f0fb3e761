//! OTLP/gRPC: unary `/opentelemetry.proto.collector.logs.v1.LogsService/Export`
//! over tonic, sending request bytes the builder already encoded.
//!
//! Pipeline position: the gRPC half of [`super::OtlpTransport`]. The
//! generated client would want an `ExportLogsServiceRequest` value, which
//! means decoding the queued records and encoding them again; instead a
//! small codec hands the encoded body to tonic as it is (tonic still does
//! the gRPC framing and gzip) and decodes the response with prost.
//!
//! Status -> [`Outcome`]: the code as on the wire, `RetryInfo` (from
//! `grpc-status-details-bin`) as the server's delay; a status that tonic
//! made up for a failure below gRPC (connection refused, TLS) becomes the
//! transport failure it wraps, so the sink is flagged for the right reason.
//! This module must not retry or log metadata values.

use std::error::Error as StdError;
use std::io;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use prost::Message as _;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};
use tonic_types::StatusExt as _;

use super::config::{Headers, OtlpConfig, TlsFiles};
use super::response::ExportResult;
use crate::core::classify::{GrpcCode, Outcome, TransportFailure};
use crate::core::driver::TransportError;

/// The OTLP logs export method.
pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// A tonic client of `LogsService/Export` that sends pre-encoded bodies.
#[derive(Debug, Clone)]
pub(crate) struct GrpcExporter {
    grpc: tonic::client::Grpc<Channel>,
    metadata: MetadataMap,
    timeout: Duration,
}

impl GrpcExporter {
    /// A lazily connecting channel: nothing is dialled until the first
    /// export, and a broken connection is re-established by the next one.
    pub(crate) fn new(
        cfg: &OtlpConfig,
        headers: &Headers,
        tls: Option<&TlsFiles>,
    ) -> Result<GrpcExporter, TransportError> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let uri = format!("{scheme}://{}", cfg.endpoint);
        let mut endpoint = Endpoint::from_shared(uri)
            .map_err(|e| TransportError::InvalidConfig(format!("endpoint: {e}")))?
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.timeout)
            .tcp_nodelay(true);
        if let Some(t) = tls {
            let mut tc = ClientTlsConfig::new();
            tc = match &t.ca_pem {
                Some(ca) => tc.ca_certificate(Certificate::from_pem(ca)),
                None => tc.with_native_roots(),
            };
            if let Some((cert, key)) = &t.identity {
                tc = tc.identity(Identity::from_pem(cert, key));
            }
            if let Some(name) = &t.server_name {
                tc = tc.domain_name(name.clone());
            }
            endpoint = endpoint
                .tls_config(tc)
                .map_err(|e| TransportError::InvalidConfig(format!("tls: {e}")))?;
        }
        let mut grpc = tonic::client::Grpc::new(endpoint.connect_lazy())
            .accept_compressed(CompressionEncoding::Gzip);
        if cfg.gzip {
            grpc = grpc.send_compressed(CompressionEncoding::Gzip);
        }
        let mut metadata = MetadataMap::new();
        for (name, value) in &headers.0 {
            let key = AsciiMetadataKey::from_bytes(name.as_bytes()).map_err(|_| {
                TransportError::InvalidConfig(format!(
                    "headers_file: {name:?} is not a valid gRPC metadata key"
                ))
            })?;
            let mut value: AsciiMetadataValue = value.parse().map_err(|_| {
                TransportError::InvalidConfig(format!(
                    "headers_file: the value of {name:?} is not valid gRPC metadata"
                ))
            })?;
            value.set_sensitive(true);
            metadata.append(key, value);
        }
        Ok(GrpcExporter {
            grpc,
            metadata,
            timeout: cfg.timeout,
        })
    }

    /// One export of an encoded `ExportLogsServiceRequest`.
    pub(crate) async fn export(&mut self, body: Bytes) -> ExportResult {
        match self.call(body).await {
            Ok(response) => ExportResult::Accepted {
                ok: Outcome::Grpc {
                    code: GrpcCode::Ok,
                    retry_info: false,
                },
                response,
            },
            Err(status) => {
                let (outcome, retry_after) = status_outcome(&status);
                tracing::debug!(code = ?status.code(), message = status.message(), "OTLP/gRPC export failed");
                ExportResult::Failed {
                    outcome,
                    retry_after,
                }
            }
        }
    }

    async fn call(&mut self, body: Bytes) -> Result<ExportLogsServiceResponse, Status> {
        self.grpc
            .ready()
            .await
            .map_err(|e| Status::from_error(e.into()))?;
        let mut request = tonic::Request::new(body);
        *request.metadata_mut() = self.metadata.clone();
        request.set_timeout(self.timeout);
        let response = self
            .grpc
            .unary(
                request,
                PathAndQuery::from_static(EXPORT_PATH),
                EncodedCodec,
            )
            .await?;
        Ok(response.into_inner())
    }
}

/// The outcome of a failed export and the server's delay, if it sent one.
fn status_outcome(status: &Status) -> (Outcome, Option<Duration>) {
    if let Some(failure) = transport_failure(status) {
        return (Outcome::Transport(failure), None);
    }
    let retry_delay = status.get_details_retry_info().and_then(|r| r.retry_delay);
    let code = GrpcCode::from_i32(status.code() as i32).unwrap_or(GrpcCode::Unknown);
    (
        Outcome::Grpc {
            code,
            retry_info: retry_delay.is_some(),
        },
        retry_delay,
    )
}

/// A failure below gRPC, found in the status's error chain: tonic reports
/// those as `UNAVAILABLE` / `UNKNOWN` / `CANCELLED` with the cause attached.
fn transport_failure(status: &Status) -> Option<TransportFailure> {
    // tonic's own deadline (our `grpc-timeout`) expiring is reported as
    // CANCELLED with the TimeoutExpired text and no source: no response
    // arrived in time.
    if status.code() == Code::Cancelled && status.message() == tonic::TimeoutExpired(()).to_string()
    {
        return Some(TransportFailure::Timeout);
    }
    if !matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
    ) {
        return None;
    }
    let mut source: Option<&(dyn StdError + 'static)> = status.source();
    while let Some(e) = source {
        if let Some(tls) = e.downcast_ref::<tokio_rustls::rustls::Error>() {
            return Some(match tls {
                tokio_rustls::rustls::Error::InvalidCertificate(_) => {
                    TransportFailure::TlsVerification
                }
                _ => TransportFailure::TlsHandshake,
            });
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            // rustls errors surface wrapped in io::Error from tokio-rustls.
            if let Some(inner) = io
                .get_ref()
                .and_then(|i| i.downcast_ref::<tokio_rustls::rustls::Error>())
            {
                return Some(match inner {
                    tokio_rustls::rustls::Error::InvalidCertificate(_) => {
                        TransportFailure::TlsVerification
                    }
                    _ => TransportFailure::TlsHandshake,
                });
            }
            return Some(match io.kind() {
                io::ErrorKind::ConnectionRefused => TransportFailure::ConnectionRefused,
                io::ErrorKind::TimedOut => TransportFailure::Timeout,
                _ => TransportFailure::ConnectionReset,
            });
        }
        // hyper-util's resolver error is a private type whose message
        // starts "dns error"; it sits before the resolver's own io::Error in
        // the chain, so it is seen first (tested).
        if e.to_string().contains("dns error") {
            return Some(TransportFailure::DnsFailure);
        }
        source = e.source();
    }
    None
}

/// Sends already encoded message bytes; decodes the response with prost.
#[derive(Debug, Clone, Copy, Default)]
struct EncodedCodec;

impl Codec for EncodedCodec {
    type Encode = Bytes;
    type Decode = ExportLogsServiceResponse;
    type Encoder = EncodedCodec;
    type Decoder = EncodedCodec;

    fn encoder(&mut self) -> Self::Encoder {
        EncodedCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        EncodedCodec
    }
}

impl Encoder for EncodedCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for EncodedCodec {
    type Item = ExportLogsServiceResponse;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        let len = src.remaining();
        let response = ExportLogsServiceResponse::decode(src.copy_to_bytes(len))
            .map_err(|e| Status::internal(format!("undecodable ExportLogsServiceResponse: {e}")))?;
        Ok(Some(response))
    }
}
