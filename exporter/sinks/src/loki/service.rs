//! The Loki transport: one push per batch, protobuf + snappy or JSON
//! (gzip).
//!
//! Pipeline position: a [`Transport`] for the sink driver. Loki answers
//! 204 when it took the push. A 400 means validation failed for some
//! entries (entry too old, too far behind the stream's newest entry, line
//! too long, bad labels): Loki keeps the valid entries and lists the
//! rejected ones in the body, and resending cannot change its mind, so the
//! table rejects the batch (`invalid_data`). The body is logged and the
//! Loki reason counted in [`LokiStats`]; because Loki does not say which
//! records it kept in a machine-readable way, the loss record may name
//! records that Loki did store (loss is over-stated, never hidden). 429
//! and 5xx retry (honouring `Retry-After`), 413 splits, 401/403/404 retry
//! with the sink degraded, and Loki's `block_ingestion_status_code` (260)
//! is not taken as success.
//!
//! This module must not retry or classify on its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::config::{LokiConfig, LokiEncoding};
use super::request_builder::LokiRequestBuilder;
use crate::core::driver::{SendReport, Transport, TransportError};
use crate::core::http::{HttpClient, HttpRequest};
use crate::core::queue::QueuedRecord;

const PUSH_PATH: &str = "/loki/api/v1/push";
const RETRY_AFTER_PARSE_CAP: Duration = Duration::from_secs(86_400);

/// Counters of the Loki transport, readable while the driver owns it.
#[derive(Debug, Default)]
pub struct LokiStats {
    /// Pushes that got a response.
    pub pushes_total: AtomicU64,
    /// Pushes answered 400 (their records are recorded as rejected).
    pub rejected_pushes_total: AtomicU64,
    /// 400s naming entries older than `reject_old_samples_max_age`.
    pub too_old_total: AtomicU64,
    /// 400s naming entries too far behind their stream (out of order).
    pub out_of_order_total: AtomicU64,
    /// The last 400 body (truncated), for the admin endpoint.
    pub last_rejection: Mutex<Option<String>>,
}

/// The Loki transport. Build with [`LokiConfig::build`].
#[derive(Debug)]
pub struct LokiTransport {
    client: HttpClient,
    builder: LokiRequestBuilder,
    encoding: LokiEncoding,
    gzip: bool,
    stats: Arc<LokiStats>,
}

impl LokiTransport {
    pub(crate) fn new(cfg: &LokiConfig, client: HttpClient) -> Self {
        LokiTransport {
            client,
            builder: LokiRequestBuilder::new(cfg),
            encoding: cfg.encoding,
            gzip: cfg.gzip,
            stats: Arc::new(LokiStats::default()),
        }
    }

    /// Counters, shared with the transport.
    pub fn stats(&self) -> Arc<LokiStats> {
        Arc::clone(&self.stats)
    }

    fn note_rejection(&self, body: &[u8]) {
        let text = String::from_utf8_lossy(&body[..body.len().min(1024)]).into_owned();
        self.stats
            .rejected_pushes_total
            .fetch_add(1, Ordering::Relaxed);
        if text.contains("too old") {
            self.stats.too_old_total.fetch_add(1, Ordering::Relaxed);
        }
        if text.contains("too far behind") || text.contains("out of order") {
            self.stats
                .out_of_order_total
                .fetch_add(1, Ordering::Relaxed);
        }
        tracing::warn!(loki = %text, "loki rejected a push (its records are recorded as lost)");
        if let Ok(mut last) = self.stats.last_rejection.lock() {
            *last = Some(text);
        }
    }
}

impl Transport for LokiTransport {
    async fn send(&mut self, batch: &[QueuedRecord]) -> SendReport {
        let now = SystemTime::now();
        let req = match self.encoding {
            // Snappy is the protobuf push's own compression; no
            // Content-Encoding.
            LokiEncoding::Protobuf => HttpRequest::post(
                PUSH_PATH,
                "application/x-protobuf",
                Bytes::from(self.builder.body(batch, now)),
            ),
            LokiEncoding::Json => HttpRequest::post(
                PUSH_PATH,
                "application/json",
                Bytes::from(self.builder.json_body(batch, now)),
            )
            .gzip(self.gzip),
        };
        let resp = match self.client.send(req).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(failure = ?e.failure, detail = %e.detail, records = batch.len(), "loki push failed");
                return SendReport::batch(e.outcome());
            }
        };
        self.stats.pushes_total.fetch_add(1, Ordering::Relaxed);
        if resp.status == 400 {
            self.note_rejection(&resp.body);
        } else if !(200..300).contains(&resp.status) {
            tracing::debug!(
                status = resp.status,
                records = batch.len(),
                "loki push not accepted"
            );
        }
        SendReport::batch(resp.outcome()).with_retry_after(resp.retry_after(RETRY_AFTER_PARSE_CAP))
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        Ok(())
    }

    async fn shutdown(&mut self) -> Result<(), TransportError> {
        self.client.close_idle();
        Ok(())
    }
}
