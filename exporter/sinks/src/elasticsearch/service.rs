//! The Elasticsearch / OpenSearch transport: one `_bulk` request per batch,
//! then one outcome per item.
//!
//! Pipeline position: a [`Transport`] for the sink driver. The whole
//! request's status decides first: anything but 200 is one outcome for the
//! batch (429/503 carry `Retry-After`, 413 makes the driver split, 401/403
//! retry with the sink degraded). A 200 is read item by item, because ES
//! answers 200 even when items fail: `errors: false` means every item was
//! created; otherwise each item's `status` becomes an
//! [`Outcome::ElasticsearchBulkItem`], so the driver resends only the
//! retryable items (429, 5xx), counts 409 (our `_id` exists: an earlier
//! attempt landed) as already delivered, and rejects 400-class mapping
//! errors, whose `error.type` and `error.reason` are logged and kept in
//! [`ElasticsearchStats`]. A 200 whose body cannot be matched to the batch
//! is never taken as success: every record is retried with the sink
//! degraded.
//!
//! This module must not retry, sleep, or classify on its own; the driver
//! and the table do.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;

use super::config::ElasticsearchConfig;
use super::request_builder::BulkRequestBuilder;
use crate::core::classify::{EsItemClass, Outcome};
use crate::core::driver::{SendReport, Transport, TransportError};
use crate::core::http::{HttpClient, HttpRequest};
use crate::core::queue::QueuedRecord;

/// Server delays are capped again by the driver (`max_retry_after`); this
/// only keeps the parse finite.
const RETRY_AFTER_PARSE_CAP: Duration = Duration::from_secs(86_400);

/// Counters of the Elasticsearch transport, readable while the driver owns
/// it.
#[derive(Debug, Default)]
pub struct ElasticsearchStats {
    /// `_bulk` requests that got a response.
    pub requests_total: AtomicU64,
    /// Items answered with a non-retryable error (400-class).
    pub rejected_items_total: AtomicU64,
    /// Items answered 409 (already there).
    pub conflict_items_total: AtomicU64,
    /// The last item rejection, `type: reason`, for the admin endpoint.
    pub last_rejection: Mutex<Option<String>>,
}

/// The Elasticsearch transport. Build with [`ElasticsearchConfig::build`].
#[derive(Debug)]
pub struct ElasticsearchTransport {
    client: HttpClient,
    builder: BulkRequestBuilder,
    gzip: bool,
    stats: Arc<ElasticsearchStats>,
}

impl ElasticsearchTransport {
    pub(crate) fn new(cfg: &ElasticsearchConfig, client: HttpClient) -> Self {
        ElasticsearchTransport {
            client,
            builder: BulkRequestBuilder::new(cfg),
            gzip: cfg.gzip,
            stats: Arc::new(ElasticsearchStats::default()),
        }
    }

    /// Counters, shared with the transport.
    pub fn stats(&self) -> Arc<ElasticsearchStats> {
        Arc::clone(&self.stats)
    }

    /// The HTTP client (connection counters).
    pub fn client(&self) -> &HttpClient {
        &self.client
    }
}

impl Transport for ElasticsearchTransport {
    async fn send(&mut self, batch: &[QueuedRecord]) -> SendReport {
        let body = Bytes::from(self.builder.body(batch));
        let req =
            HttpRequest::post(self.builder.path(), "application/x-ndjson", body).gzip(self.gzip);
        let resp = match self.client.send(req).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(failure = ?e.failure, detail = %e.detail, records = batch.len(), "elasticsearch bulk request failed");
                return SendReport::batch(e.outcome());
            }
        };
        self.stats.requests_total.fetch_add(1, Ordering::Relaxed);
        if resp.status != 200 {
            let retry_after = resp.retry_after(RETRY_AFTER_PARSE_CAP);
            tracing::debug!(status = resp.status, body = %excerpt(&resp.body), records = batch.len(), "elasticsearch bulk request not accepted");
            return SendReport::batch(resp.outcome()).with_retry_after(retry_after);
        }
        match read_bulk_response(&resp.body, batch.len()) {
            Ok(BulkResult::AllCreated) => {
                SendReport::batch(Outcome::ElasticsearchBulkItem { status: 201 })
            }
            Ok(BulkResult::PerItem(items)) => {
                self.note_item_errors(&items);
                SendReport::per_record(
                    items
                        .iter()
                        .map(|i| Outcome::ElasticsearchBulkItem { status: i.status })
                        .collect(),
                )
            }
            Err(problem) => {
                tracing::warn!(%problem, records = batch.len(), "elasticsearch bulk response unusable; retrying the batch");
                // Status 0 falls in the "other status" row: retry, degraded.
                SendReport::batch(Outcome::ElasticsearchBulkItem { status: 0 })
            }
        }
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        // A 2xx bulk item is already durable per the index's translog
        // settings; there is nothing more to flush from here.
        Ok(())
    }

    async fn shutdown(&mut self) -> Result<(), TransportError> {
        self.client.close_idle();
        Ok(())
    }
}

impl ElasticsearchTransport {
    fn note_item_errors(&self, items: &[ItemStatus]) {
        let mut rejected = 0u64;
        let mut conflicts = 0u64;
        let mut first: Option<&ItemStatus> = None;
        for i in items {
            match EsItemClass::of(i.status) {
                EsItemClass::VersionConflict => conflicts += 1,
                EsItemClass::OtherClientError => {
                    rejected += 1;
                    first.get_or_insert(i);
                }
                _ => {}
            }
        }
        self.stats
            .conflict_items_total
            .fetch_add(conflicts, Ordering::Relaxed);
        if let Some(f) = first {
            self.stats
                .rejected_items_total
                .fetch_add(rejected, Ordering::Relaxed);
            let text = format!("{}: {}", f.error_type, f.error_reason);
            tracing::warn!(rejected, status = f.status, error = %text, "elasticsearch rejected documents (recorded as lost)");
            if let Ok(mut last) = self.stats.last_rejection.lock() {
                *last = Some(text);
            }
        }
    }
}

/// One item of a bulk response, as the transport needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemStatus {
    pub status: u16,
    /// `error.type`, empty without an error.
    pub error_type: String,
    /// `error.reason`, empty without an error.
    pub error_reason: String,
}

/// What a 200 bulk response says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkResult {
    /// `errors: false`: every item was created.
    AllCreated,
    /// One status per item, in request order.
    PerItem(Vec<ItemStatus>),
}

#[derive(Deserialize)]
struct BulkResponseBody {
    errors: Option<bool>,
    #[serde(default)]
    items: Vec<ItemEnvelope>,
}

/// `{"create": {...}}` (or the other action names, for foreign servers).
#[derive(Deserialize)]
struct ItemEnvelope {
    #[serde(alias = "index", alias = "update", alias = "delete")]
    create: ItemBody,
}

#[derive(Deserialize)]
struct ItemBody {
    status: u16,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// Read a 200 `_bulk` response for a request of `sent` items.
pub fn read_bulk_response(body: &[u8], sent: usize) -> Result<BulkResult, String> {
    let parsed: BulkResponseBody =
        serde_json::from_slice(body).map_err(|e| format!("not a bulk response: {e}"))?;
    match parsed.errors {
        Some(false) => return Ok(BulkResult::AllCreated),
        Some(true) => {}
        None => return Err("bulk response without `errors`".into()),
    }
    if parsed.items.len() != sent {
        return Err(format!(
            "bulk response has {} items for {sent} documents",
            parsed.items.len()
        ));
    }
    Ok(BulkResult::PerItem(
        parsed
            .items
            .into_iter()
            .map(|i| {
                let (error_type, error_reason) = match &i.create.error {
                    Some(serde_json::Value::Object(m)) => (
                        m.get("type")
                            .and_then(|v| v.as_str())
                            .unwrap_or_default()
                            .to_string(),
                        m.get("reason")
                            .and_then(|v| v.as_str())
                            .unwrap_or_default()
                            .to_string(),
                    ),
                    Some(other) => (String::new(), other.to_string()),
                    None => (String::new(), String::new()),
                };
                ItemStatus {
                    status: i.create.status,
                    error_type,
                    error_reason,
                }
            })
            .collect(),
    ))
}

/// The start of a response body for a debug log line.
fn excerpt(body: &[u8]) -> String {
    let end = body.len().min(300);
    String::from_utf8_lossy(&body[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_filtered_and_full_responses() {
        assert_eq!(
            read_bulk_response(br#"{"errors":false}"#, 3),
            Ok(BulkResult::AllCreated)
        );
        // Full (unfiltered) form, as OpenSearch or a proxy may send.
        let full = br#"{"took":3,"errors":true,"items":[
          {"create":{"_index":"i","_id":"a","_version":1,"result":"created","status":201}},
          {"create":{"_index":"i","_id":"b","status":409,"error":{"type":"version_conflict_engine_exception","reason":"[b]: version conflict, document already exists (current version [1])"}}},
          {"create":{"_index":"i","_id":"c","status":400,"error":{"type":"document_parsing_exception","reason":"failed to parse field [source.port]"}}}
        ]}"#;
        let Ok(BulkResult::PerItem(items)) = read_bulk_response(full, 3) else {
            panic!("expected items");
        };
        assert_eq!(
            items.iter().map(|i| i.status).collect::<Vec<_>>(),
            [201, 409, 400]
        );
        assert_eq!(items[2].error_type, "document_parsing_exception");
        assert_eq!(items[2].error_reason, "failed to parse field [source.port]");
        assert!(items[0].error_type.is_empty());
    }

    #[test]
    fn unusable_responses_are_errors_not_success() {
        for (body, sent) in [
            (
                &br#"{"errors":true,"items":[{"create":{"status":201}}]}"#[..],
                2,
            ),
            (br#"{"items":[]}"#, 1),
            (br#"<html>proxy</html>"#, 1),
            (br#"{"errors":true,"items":[{"create":{}}]}"#, 1),
        ] {
            assert!(read_bulk_response(body, sent).is_err(), "{body:?}");
        }
    }
}
