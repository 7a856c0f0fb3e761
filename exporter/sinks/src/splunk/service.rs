//! The Splunk HEC transport: one `/services/collector/event` request per
//! batch, classified by HEC's body `code`, and with acknowledgements one
//! wait for the batch's `ackId`.
//!
//! Pipeline position: a [`Transport`] for the sink driver.
//!
//! * HEC answers `{"text":…,"code":N}`; the code (not only the HTTP
//!   status) becomes an [`Outcome::SplunkHec`]: 0 success, 1-4 token
//!   problems (retry, degraded), 5/6/12/13 bad data (reject), 7/10/11/14
//!   configuration (retry, degraded), 9 server busy (503; `Retry-After`
//!   honoured). A response without a HEC body (a proxy's error page) is
//!   classified by its HTTP status.
//! * When a data error names the event (`invalid-event-number`), only that
//!   record is rejected; the others are sent again, since HEC does not
//!   promise whether the events before it were indexed (a resend can
//!   duplicate; `flowscribe_event_id` identifies duplicates).
//! * With indexer acknowledgement the transport polls
//!   `/services/collector/ack` (same channel) every `poll_interval` until
//!   the batch's `ackId` is `true`. Only then is the batch delivered; no
//!   ack within `ack.timeout` is a timeout (resent). A 200 without `ackId`
//!   (acknowledgement disabled on the token) is delivery on acceptance.
//!
//! This module must not retry or classify on its own; waiting for an ack
//! is part of one send.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use http::header::HeaderName;
use serde::Deserialize;

use super::config::{HecAckConfig, SplunkHecConfig, random_channel};
use super::request_builder::HecRequestBuilder;
use crate::core::classify::{HecClass, Outcome, TransportFailure};
use crate::core::driver::{SendReport, Transport, TransportError};
use crate::core::http::{HttpClient, HttpRequest, HttpResponse};
use crate::core::queue::QueuedRecord;

/// Server delays are capped again by the driver; this only keeps the
/// parse finite.
const RETRY_AFTER_PARSE_CAP: Duration = Duration::from_secs(86_400);

const EVENT_PATH: &str = "/services/collector/event";
const ACK_PATH: &str = "/services/collector/ack";
const CHANNEL_HEADER: &str = "x-splunk-request-channel";

/// Counters of the HEC transport, readable while the driver owns it.
#[derive(Debug, Default)]
pub struct SplunkHecStats {
    /// Event requests that got a response.
    pub requests_total: AtomicU64,
    /// Ack polls sent.
    pub ack_polls_total: AtomicU64,
    /// Batches resent because their ack did not come in time.
    pub ack_timeouts_total: AtomicU64,
    /// The last HEC error, `code N: text`, for the admin endpoint.
    pub last_error: Mutex<Option<String>>,
}

/// The Splunk HEC transport. Build with [`SplunkHecConfig::build`].
#[derive(Debug)]
pub struct SplunkHecTransport {
    client: HttpClient,
    builder: HecRequestBuilder,
    gzip: bool,
    channel: HeaderValue,
    ack: Option<HecAckConfig>,
    stats: Arc<SplunkHecStats>,
}

/// The parts of a HEC response body the transport reads.
#[derive(Debug, Deserialize)]
struct HecBody {
    #[serde(default)]
    text: String,
    code: Option<u16>,
    #[serde(rename = "ackId")]
    ack_id: Option<u64>,
    #[serde(rename = "invalid-event-number")]
    invalid_event_number: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct AckBody {
    acks: std::collections::HashMap<String, bool>,
}

impl SplunkHecTransport {
    pub(crate) fn new(cfg: &SplunkHecConfig, client: HttpClient) -> Self {
        let channel = cfg.channel.clone().unwrap_or_else(random_channel);
        SplunkHecTransport {
            client,
            builder: HecRequestBuilder::new(cfg),
            gzip: cfg.gzip,
            // A validated or generated GUID is always a valid header value.
            channel: HeaderValue::try_from(channel).unwrap_or_else(|_| {
                HeaderValue::from_static("00000000-0000-4000-8000-000000000000")
            }),
            ack: cfg.ack.clone(),
            stats: Arc::new(SplunkHecStats::default()),
        }
    }

    /// Counters, shared with the transport.
    pub fn stats(&self) -> Arc<SplunkHecStats> {
        Arc::clone(&self.stats)
    }

    /// The request channel this transport sends on.
    pub fn channel(&self) -> &str {
        self.channel.to_str().unwrap_or_default()
    }

    fn request(&self, path: &str, body: Bytes, gzip: bool) -> HttpRequest {
        HttpRequest::post(path, "application/json", body)
            .gzip(gzip)
            .header(
                HeaderName::from_static(CHANNEL_HEADER),
                self.channel.clone(),
            )
    }

    fn note_error(&self, code: u16, text: &str) {
        if let Ok(mut last) = self.stats.last_error.lock() {
            *last = Some(format!("code {code}: {text}"));
        }
    }

    /// Poll the ack endpoint until `ack_id` is indexed, the endpoint
    /// answers an error, or the ack timeout passes.
    async fn wait_for_ack(&self, ack_id: u64, ack: &HecAckConfig) -> SendReport {
        let deadline = tokio::time::Instant::now() + ack.timeout;
        let body = Bytes::from(format!("{{\"acks\":[{ack_id}]}}"));
        let key = ack_id.to_string();
        loop {
            tokio::time::sleep(ack.poll_interval).await;
            if tokio::time::Instant::now() >= deadline {
                self.stats
                    .ack_timeouts_total
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(ack_id, timeout = ?ack.timeout, "splunk HEC ack not received in time; resending the batch");
                return SendReport::batch(Outcome::Transport(TransportFailure::Timeout));
            }
            self.stats.ack_polls_total.fetch_add(1, Ordering::Relaxed);
            let resp = match self
                .client
                .send(self.request(ACK_PATH, body.clone(), false))
                .await
            {
                Ok(r) => r,
                // The batch was accepted; a failed poll is retried until
                // the ack deadline.
                Err(e) => {
                    tracing::debug!(failure = ?e.failure, detail = %e.detail, "splunk HEC ack poll failed");
                    continue;
                }
            };
            if resp.status == 200
                && let Ok(acks) = serde_json::from_slice::<AckBody>(&resp.body)
            {
                if acks.acks.get(&key) == Some(&true) {
                    return SendReport::batch(Outcome::SplunkHec { code: 0 });
                }
                continue;
            }
            // An error from the ack endpoint (e.g. 14: ACK is disabled)
            // is classified like any HEC answer, for the whole batch.
            return self.batch_report(&resp);
        }
    }

    /// A whole-batch report from a response that is not a success.
    fn batch_report(&self, resp: &HttpResponse) -> SendReport {
        let retry_after = resp.retry_after(RETRY_AFTER_PARSE_CAP);
        let outcome = match serde_json::from_slice::<HecBody>(&resp.body) {
            Ok(HecBody {
                code: Some(code),
                text,
                ..
            }) => {
                self.note_error(code, &text);
                Outcome::SplunkHec { code }
            }
            _ => resp.outcome(),
        };
        SendReport::batch(outcome).with_retry_after(retry_after)
    }
}

impl Transport for SplunkHecTransport {
    async fn send(&mut self, batch: &[QueuedRecord]) -> SendReport {
        let body = Bytes::from(self.builder.body(batch));
        let resp = match self
            .client
            .send(self.request(EVENT_PATH, body, self.gzip))
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(failure = ?e.failure, detail = %e.detail, records = batch.len(), "splunk HEC request failed");
                return SendReport::batch(e.outcome());
            }
        };
        self.stats.requests_total.fetch_add(1, Ordering::Relaxed);
        let parsed = serde_json::from_slice::<HecBody>(&resp.body).ok();
        let Some(hec) = parsed.filter(|b| b.code.is_some()) else {
            // No HEC body: a proxy or a non-HEC endpoint; the status decides.
            tracing::debug!(
                status = resp.status,
                records = batch.len(),
                "splunk HEC response without a HEC body"
            );
            return SendReport::batch(resp.outcome())
                .with_retry_after(resp.retry_after(RETRY_AFTER_PARSE_CAP));
        };
        let code = hec.code.unwrap_or_default();
        if code == 0 && (200..300).contains(&resp.status) {
            return match (&self.ack, hec.ack_id) {
                (Some(ack), Some(id)) => {
                    let ack = ack.clone();
                    self.wait_for_ack(id, &ack).await
                }
                _ => SendReport::batch(Outcome::SplunkHec { code: 0 }),
            };
        }
        if code != 0 {
            self.note_error(code, &hec.text);
            tracing::debug!(code, text = %hec.text, status = resp.status, records = batch.len(), "splunk HEC refused the batch");
        }
        match hec.invalid_event_number {
            Some(n) if n < batch.len() && HecClass::of(code) == HecClass::InvalidData => {
                tracing::warn!(code, text = %hec.text, event = n, "splunk HEC rejected one event (recorded as lost); resending the others");
                SendReport::per_record(
                    (0..batch.len())
                        .map(|i| {
                            if i == n {
                                Outcome::SplunkHec { code }
                            } else {
                                // Not known to be indexed: send again. The
                                // 408 row is "retry, not degraded", which
                                // is exactly this.
                                Outcome::Http { status: 408 }
                            }
                        })
                        .collect(),
                )
            }
            _ => self.batch_report(&resp),
        }
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        // With acks every delivered batch is indexed; without, HEC gives
        // nothing more to wait for.
        Ok(())
    }

    async fn shutdown(&mut self) -> Result<(), TransportError> {
        self.client.close_idle();
        Ok(())
    }
}
