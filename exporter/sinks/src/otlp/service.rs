//! The OTLP transport: batch -> request body ([`OtlpRequestBuilder`]) ->
//! gRPC or HTTP export -> one outcome per record.
//!
//! Pipeline position: a [`Transport`] driven by the sink driver. It must
//! not retry or sleep (the driver does), and never logs header values.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::config::OtlpEncoding;
use super::config::{Headers, OtlpConfig, OtlpProtocol, TlsFiles};
use super::grpc::GrpcExporter;
use super::http::HttpExporter;
use super::request_builder::OtlpRequestBuilder;
use super::response;
use super::response::ExportResult;
use crate::core::classify::{GrpcCode, Outcome};
use crate::core::driver::{SendReport, Transport, TransportError};
use crate::core::queue::QueuedRecord;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;

/// Counters of one OTLP transport (the driver counts records; these count
/// requests and bytes).
#[derive(Debug, Default)]
pub struct OtlpStats {
    /// Export requests attempted.
    pub requests_total: AtomicU64,
    /// Request bodies before compression, in bytes.
    pub request_bytes_total: AtomicU64,
    /// Records left out of a request because they are not a well-formed
    /// `LogRecord` (rejected as the receiver would reject them).
    pub malformed_records_total: AtomicU64,
    /// Sum of `partial_success.rejected_log_records` as the receiver sent it.
    pub partial_success_rejected_total: AtomicU64,
    /// The receiver's `error_message` of the last partial success that
    /// rejected records, with the count (OTLP names no record, so the
    /// message cannot go with each rejected record; it is also logged).
    pub last_rejection: Mutex<Option<String>>,
}

#[derive(Debug)]
enum Exporter {
    Grpc(Box<GrpcExporter>),
    Http(HttpExporter),
}

/// gRPC TLS from files: tonic takes the PEM bytes when the channel is
/// built, so a changed file means a new channel (for the next export; the
/// batch in flight keeps the old one). A file caught mid-rotation keeps the
/// previous channel, is reported once, and is tried again next time.
#[derive(Debug)]
struct GrpcReload {
    cfg: OtlpConfig,
    headers: Headers,
    stamp: Vec<Option<(std::time::SystemTime, u64)>>,
    failed: Option<Vec<Option<(std::time::SystemTime, u64)>>>,
}

fn tls_stamp(cfg: &OtlpConfig) -> Vec<Option<(std::time::SystemTime, u64)>> {
    let Some(t) = &cfg.tls else {
        return Vec::new();
    };
    [&t.ca_file, &t.client_cert_file, &t.client_key_file]
        .into_iter()
        .flatten()
        .map(|f| {
            let m = std::fs::metadata(f).ok()?;
            Some((m.modified().ok()?, m.len()))
        })
        .collect()
}

/// The OTLP logs sink transport.
#[derive(Debug)]
pub struct OtlpTransport {
    sink: String,
    grpc_reload: Option<Box<GrpcReload>>,
    // Boxed so the closed SinkTransport enum stays small.
    builder: Box<OtlpRequestBuilder>,
    exporter: Box<Exporter>,
    stats: Arc<OtlpStats>,
    /// Reused body buffer.
    body: Vec<u8>,
}

impl OtlpTransport {
    pub(crate) fn new(
        cfg: &OtlpConfig,
        headers: Headers,
        tls: Option<TlsFiles>,
    ) -> Result<OtlpTransport, TransportError> {
        let exporter = match cfg.protocol {
            OtlpProtocol::Grpc => {
                Exporter::Grpc(Box::new(GrpcExporter::new(cfg, &headers, tls.as_ref())?))
            }
            OtlpProtocol::Http => Exporter::Http(HttpExporter::new(cfg, &headers)?),
        };
        let grpc_reload = (cfg.protocol == OtlpProtocol::Grpc && cfg.tls.is_some()).then(|| {
            Box::new(GrpcReload {
                cfg: cfg.clone(),
                headers: headers.clone(),
                stamp: tls_stamp(cfg),
                failed: None,
            })
        });
        Ok(OtlpTransport {
            grpc_reload,
            sink: format!("otlp://{}", cfg.endpoint),
            builder: Box::new(OtlpRequestBuilder::new(&cfg.envelope)),
            exporter: Box::new(exporter),
            stats: Arc::new(OtlpStats::default()),
            body: Vec::new(),
        })
    }

    /// Rebuild the gRPC channel when its TLS files changed.
    fn reload_grpc_tls(&mut self) {
        let Some(r) = self.grpc_reload.as_mut() else {
            return;
        };
        let now = tls_stamp(&r.cfg);
        if now == r.stamp || r.failed.as_ref() == Some(&now) {
            return;
        }
        let rebuilt = r
            .cfg
            .tls
            .as_ref()
            .map(TlsFiles::load)
            .transpose()
            .and_then(|files| GrpcExporter::new(&r.cfg, &r.headers, files.as_ref()));
        match rebuilt {
            Ok(e) => {
                *self.exporter = Exporter::Grpc(Box::new(e));
                r.stamp = now;
                r.failed = None;
                tracing::info!(sink = %self.sink, "OTLP/gRPC TLS files changed; reloaded");
            }
            Err(e) => {
                tracing::warn!(sink = %self.sink, error = %e, "OTLP/gRPC TLS files changed but do not load; keeping the previous ones");
                r.failed = Some(now);
            }
        }
    }

    /// The transport's counters (shared; read them while it runs).
    pub fn stats(&self) -> Arc<OtlpStats> {
        Arc::clone(&self.stats)
    }

    fn count(&self, built: &super::request_builder::BuiltRequest) {
        self.stats.requests_total.fetch_add(1, Ordering::Relaxed);
        self.stats
            .request_bytes_total
            .fetch_add(self.body.len() as u64, Ordering::Relaxed);
        if !built.malformed.is_empty() {
            tracing::warn!(sink = %self.sink, records = built.malformed.len(), "queued records are not well-formed OTLP LogRecords; rejected");
            self.stats
                .malformed_records_total
                .fetch_add(built.malformed.len() as u64, Ordering::Relaxed);
        }
    }

    fn count_partial(&self, resp: &ExportLogsServiceResponse) {
        if let Some(ps) = &resp.partial_success {
            let rejected = u64::try_from(ps.rejected_log_records).unwrap_or(0);
            self.stats
                .partial_success_rejected_total
                .fetch_add(rejected, Ordering::Relaxed);
            if rejected > 0
                && let Ok(mut last) = self.stats.last_rejection.lock()
            {
                *last = Some(format!("{rejected} rejected: {}", ps.error_message));
            }
        }
    }
}

impl Transport for OtlpTransport {
    async fn send(&mut self, batch: &[QueuedRecord]) -> SendReport {
        self.reload_grpc_tls();
        // A record that is not a LogRecord is left out and gets what the
        // receiver would answer for it.
        let (encoding, malformed) = match &*self.exporter {
            Exporter::Grpc(_) => (
                OtlpEncoding::Protobuf,
                Outcome::Grpc {
                    code: GrpcCode::InvalidArgument,
                    retry_info: false,
                },
            ),
            Exporter::Http(h) => (h.encoding(), Outcome::Http { status: 400 }),
        };
        self.body.clear();
        let built = match encoding {
            OtlpEncoding::Protobuf => self.builder.protobuf(batch, &mut self.body),
            OtlpEncoding::Json => self.builder.json(batch, &mut self.body),
        };
        self.count(&built);
        if built.included.is_empty() {
            return response::all_malformed(batch.len(), malformed);
        }
        let body = Bytes::copy_from_slice(&self.body);
        let result = match &mut *self.exporter {
            Exporter::Grpc(e) => e.export(body).await,
            Exporter::Http(e) => e.export(body).await,
        };
        match result {
            ExportResult::Accepted { ok, response } => {
                self.count_partial(&response);
                response::accepted(&self.sink, batch.len(), &built, ok, malformed, &response)
            }
            ExportResult::Failed {
                outcome,
                retry_after,
            } => {
                tracing::debug!(sink = %self.sink, ?outcome, "OTLP export failed");
                response::failed(batch.len(), &built, outcome, malformed)
                    .with_retry_after(retry_after)
            }
        }
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        // Every export is acknowledged before send returns: nothing buffered.
        Ok(())
    }

    async fn shutdown(&mut self) -> Result<(), TransportError> {
        if let Exporter::Http(h) = &*self.exporter {
            h.client().close_idle();
        }
        Ok(())
    }
}
