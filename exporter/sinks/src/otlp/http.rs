//! OTLP/HTTP: `POST /v1/logs` with a binary protobuf
//! (`application/x-protobuf`) or OTLP/JSON (`application/json`) body,
//! optionally gzip (`Content-Encoding: gzip`), through the shared
//! [`HttpClient`](crate::core::http::HttpClient).
//!
//! Pipeline position: the HTTP half of [`super::OtlpTransport`]. A success
//! status carries an `ExportLogsServiceResponse` in the request's encoding,
//! whose `partial_success` is counted; any other status goes to the
//! classification table as it is (429/502/503/504 retry with `Retry-After`,
//! 400 rejects, ...). This module must not retry or log header values.

use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceResponse,
};
use prost::Message as _;

use super::config::{Headers, OtlpConfig, OtlpEncoding};
use super::response::ExportResult;
use crate::core::classify::{HttpClass, Outcome};
use crate::core::driver::TransportError;
use crate::core::http::{
    BodyEncoding, HttpClient, HttpClientConfig, HttpRequest, HttpResponse, HttpSendError,
    HttpTlsConfig,
};

/// A `Retry-After` longer than this is cut here (the driver caps it again
/// with its own, usually shorter, limit).
const RETRY_AFTER_CAP: Duration = Duration::from_secs(3600);

/// The OTLP/HTTP exporter of one sink.
#[derive(Debug)]
pub(crate) struct HttpExporter {
    client: HttpClient,
    path: String,
    encoding: OtlpEncoding,
    body_encoding: BodyEncoding,
}

impl HttpExporter {
    pub(crate) fn new(cfg: &OtlpConfig, headers: &Headers) -> Result<HttpExporter, TransportError> {
        // The shared client reads the TLS files itself.
        let scheme = if cfg.tls.is_some() { "https" } else { "http" };
        let mut c = HttpClientConfig::new(format!("{scheme}://{}", cfg.endpoint));
        if let Some(t) = &cfg.tls {
            c.tls = HttpTlsConfig {
                ca_file: t.ca_file.clone(),
                client_cert_file: t.client_cert_file.clone(),
                client_key_file: t.client_key_file.clone(),
                server_name: t.server_name.clone(),
            };
        }
        c.headers = headers.0.clone();
        c.connect_timeout = cfg.connect_timeout;
        c.request_timeout = cfg.timeout;
        let client = HttpClient::new(&c).map_err(|e| {
            // The client's errors name headers, never their values.
            TransportError::InvalidConfig(e.0.join("; "))
        })?;
        Ok(HttpExporter {
            client,
            path: cfg.http_path.clone(),
            encoding: cfg.encoding,
            body_encoding: if cfg.zstd {
                BodyEncoding::Zstd
            } else if cfg.gzip {
                BodyEncoding::Gzip
            } else {
                BodyEncoding::Identity
            },
        })
    }

    pub(crate) fn encoding(&self) -> OtlpEncoding {
        self.encoding
    }

    pub(crate) fn client(&self) -> &HttpClient {
        &self.client
    }

    /// One export of an encoded request body.
    pub(crate) async fn export(&self, body: Bytes) -> ExportResult {
        let request = HttpRequest::post(self.path.clone(), self.encoding.content_type(), body)
            .encoding(self.body_encoding);
        match self.client.send(request).await {
            // Only the table's success statuses carry an export response;
            // other 2xx (Loki-style 260) go to the table like any status.
            Ok(response) if HttpClass::of(response.status) == HttpClass::Success => {
                ExportResult::Accepted {
                    ok: response.outcome(),
                    response: ExportLogsServiceResponse {
                        partial_success: self.partial_success(&response),
                    },
                }
            }
            Ok(response) => {
                tracing::debug!(status = response.status, message = %status_message(&response, self.encoding), "OTLP/HTTP export failed");
                ExportResult::Failed {
                    outcome: response.outcome(),
                    retry_after: response.retry_after(RETRY_AFTER_CAP),
                }
            }
            Err(HttpSendError { failure, detail }) => {
                tracing::debug!(failure = ?failure, detail = %detail, "OTLP/HTTP export got no response");
                ExportResult::Failed {
                    outcome: Outcome::Transport(failure),
                    retry_after: None,
                }
            }
        }
    }

    /// The response's `partial_success`. An empty or undecodable body is
    /// taken as "no partial success": the status already said accepted.
    fn partial_success(&self, response: &HttpResponse) -> Option<ExportLogsPartialSuccess> {
        if response.body.is_empty() {
            return None;
        }
        let decoded = match self.encoding {
            OtlpEncoding::Protobuf => ExportLogsServiceResponse::decode(response.body.as_ref())
                .map(|r| r.partial_success)
                .map_err(|e| e.to_string()),
            OtlpEncoding::Json => partial_success_from_json(&response.body),
        };
        match decoded {
            Ok(ps) => ps,
            Err(e) => {
                tracing::warn!(error = %e, "OTLP/HTTP success response body is not an ExportLogsServiceResponse; taking every record as accepted");
                None
            }
        }
    }
}

/// `partialSuccess` of an OTLP/JSON response. `rejectedLogRecords` is an
/// int64, which OTLP/JSON writes as a string; numbers are accepted too.
pub(crate) fn partial_success_from_json(
    body: &[u8],
) -> Result<Option<ExportLogsPartialSuccess>, String> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let Some(ps) = v.get("partialSuccess") else {
        return Ok(None);
    };
    let rejected = match ps.get("rejectedLogRecords") {
        None | Some(serde_json::Value::Null) => 0,
        Some(serde_json::Value::String(s)) => s
            .parse::<i64>()
            .map_err(|_| format!("rejectedLogRecords {s:?} is not an integer"))?,
        Some(serde_json::Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| format!("rejectedLogRecords {n} is not an integer"))?,
        Some(other) => return Err(format!("rejectedLogRecords {other} is not an integer")),
    };
    let message = ps
        .get("errorMessage")
        .and_then(|m| m.as_str())
        .unwrap_or_default()
        .to_string();
    Ok(Some(ExportLogsPartialSuccess {
        rejected_log_records: rejected,
        error_message: message,
    }))
}

/// The `message` of a failure response's `google.rpc.Status` body, for
/// debug logs; empty when there is none.
fn status_message(response: &HttpResponse, encoding: OtlpEncoding) -> String {
    match encoding {
        OtlpEncoding::Protobuf => tonic_types::Status::decode(response.body.as_ref())
            .map(|s| s.message)
            .unwrap_or_default(),
        OtlpEncoding::Json => serde_json::from_slice::<serde_json::Value>(&response.body)
            .ok()
            .and_then(|v| v.get("message")?.as_str().map(str::to_string))
            .unwrap_or_default(),
    }
}
