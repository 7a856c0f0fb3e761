//! Driver tests with a scripted fake transport: the classification table
//! row by row through the driver, Retry-After on a paused clock, split,
//! reject-and-record, fan-out and shutdown.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::core::backoff::{Backoff, BackoffConfig};
use crate::core::classify::{CLASSIFICATION_TABLE, GrpcCode, OutcomeClass};
use crate::core::queue::{Durability, QueueConfig, Record};

/// What the fake saw: per send, the event ids and the (tokio) time.
type Calls = Arc<Mutex<Vec<(Vec<String>, tokio::time::Instant)>>>;

/// Answers sends from a script; once the script is empty, every record is
/// delivered. `None` in the script means "never answer" (a hung receiver).
#[derive(Debug, Clone)]
struct FakeTransport {
    script: Arc<Mutex<VecDeque<Option<SendReport>>>>,
    calls: Calls,
    flushes: Arc<Mutex<u32>>,
    /// Notified after every send, so tests wait on calls, not on time.
    called: Arc<tokio::sync::Notify>,
    /// When set, every send fails with connection refused, forever.
    dead: bool,
}

impl FakeTransport {
    fn new(script: Vec<Option<SendReport>>) -> Self {
        FakeTransport {
            script: Arc::new(Mutex::new(script.into())),
            calls: Arc::default(),
            flushes: Arc::default(),
            called: Arc::default(),
            dead: false,
        }
    }

    fn dead() -> Self {
        FakeTransport {
            dead: true,
            ..FakeTransport::new(Vec::new())
        }
    }

    fn sent(&self) -> Vec<Vec<String>> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|(ids, _)| ids.clone())
            .collect()
    }

    /// Wait until at least `n` sends happened.
    async fn wait_calls(&self, n: usize) {
        loop {
            let notified = self.called.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.sent().len() >= n {
                return;
            }
            notified.await;
        }
    }

    fn times(&self) -> Vec<tokio::time::Instant> {
        self.calls.lock().unwrap().iter().map(|(_, t)| *t).collect()
    }
}

impl Transport for FakeTransport {
    async fn send(&mut self, batch: &[QueuedRecord]) -> SendReport {
        let ids = batch.iter().map(|r| r.event_id.clone()).collect();
        self.calls
            .lock()
            .unwrap()
            .push((ids, tokio::time::Instant::now()));
        self.called.notify_waiters();
        if self.dead {
            return SendReport::batch(Outcome::Transport(TransportFailure::ConnectionRefused));
        }
        let next = self.script.lock().unwrap().pop_front();
        match next {
            Some(Some(report)) => report,
            Some(None) => std::future::pending().await,
            None => SendReport::batch(Outcome::Http { status: 200 }),
        }
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        *self.flushes.lock().unwrap() += 1;
        Ok(())
    }

    async fn shutdown(&mut self) -> Result<(), TransportError> {
        Ok(())
    }
}

fn memory_queue(name: &str) -> DurableQueue {
    DurableQueue::open(QueueConfig::new(name, None, Durability::Memory)).unwrap()
}

fn cfg(name: &str) -> DriverConfig {
    DriverConfig {
        backoff: BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            multiplier: 2.0,
        },
        ..DriverConfig::new(name)
    }
}

fn records(prefix: &str, n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| Record::new(format!("{prefix}{i}"), format!("payload {i}")))
        .collect()
}

/// Start a driver over a fresh memory queue holding `n` records pushed as
/// one batch; returns the handle, the fake and the driver task.
async fn start(
    cfg: DriverConfig,
    fake: FakeTransport,
    n: usize,
) -> (DriverHandle, tokio::task::JoinHandle<DriverShutdownReport>) {
    let queue = memory_queue(&cfg.sink);
    if n > 0 {
        queue.push(records("e", n)).await.unwrap();
    }
    let backoff = Backoff::with_seed(cfg.backoff, 7);
    let (driver, handle) = SinkDriver::with_backoff(cfg, queue, fake, backoff);
    let task = tokio::spawn(driver.run());
    (handle, task)
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(3_600)
}

fn ids(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// One representative outcome per table row key.
fn representatives() -> HashMap<OutcomeClass, Outcome> {
    let mut samples = Vec::new();
    for t in [
        TransportFailure::ConnectionRefused,
        TransportFailure::ConnectionReset,
        TransportFailure::DnsFailure,
        TransportFailure::TlsHandshake,
        TransportFailure::TlsVerification,
        TransportFailure::Timeout,
        TransportFailure::LocalIo,
    ] {
        samples.push(Outcome::Transport(t));
    }
    for status in 0..=999u16 {
        samples.push(Outcome::Http { status });
        samples.push(Outcome::ElasticsearchBulkItem { status });
        samples.push(Outcome::SplunkHec { code: status });
    }
    for code in GrpcCode::ALL {
        for retry_info in [false, true] {
            samples.push(Outcome::Grpc { code, retry_info });
        }
    }
    samples.push(Outcome::OtlpPartialSuccess { rejected: 0 });
    samples.push(Outcome::OtlpPartialSuccess { rejected: 1 });
    samples.push(Outcome::RecordTooLarge);
    samples.push(Outcome::Written);
    let mut m = HashMap::new();
    for o in samples {
        m.entry(OutcomeClass::of(&o)).or_insert(o);
    }
    m
}

/// Every row of the table, through the driver: a batch of two records
/// meets the row's outcome once, then the receiver accepts everything.
#[tokio::test(start_paused = true)]
async fn every_table_row_through_the_driver() {
    let reps = representatives();
    for row in CLASSIFICATION_TABLE {
        let outcome = reps[&row.class];
        let fake = FakeTransport::new(vec![Some(SendReport::batch(outcome))]);
        let (h, task) = start(cfg("row"), fake.clone(), 2).await;
        h.flush(far()).await.unwrap();
        let snap = h.snapshot();
        let sent = fake.sent();
        let both = ids(&["e0", "e1"]);
        let label = row.outcome;
        match row.action {
            Action::Delivered => {
                assert_eq!(sent, [both], "{label}");
                assert_eq!(snap.delivered_records_total, 2, "{label}");
            }
            Action::AlreadyDelivered => {
                assert_eq!(sent, [both], "{label}");
                assert_eq!(snap.already_delivered_records_total, 2, "{label}");
                assert_eq!(snap.acknowledged_records_total(), 2, "{label}");
            }
            Action::Retry { .. } => {
                assert_eq!(
                    sent,
                    [both.clone(), both.clone()],
                    "{label}: same batch resent"
                );
                assert_eq!(snap.retried_records_total, 2, "{label}");
                assert_eq!(snap.delivered_records_total, 2, "{label}");
                // Delivery clears the degraded flag the retry set.
                assert_eq!(snap.degraded, None, "{label}");
            }
            Action::SplitAndRetry => {
                assert_eq!(sent, [both.clone(), ids(&["e0"]), ids(&["e1"])], "{label}");
                assert_eq!(snap.split_batches_total, 1, "{label}");
                assert_eq!(snap.delivered_records_total, 2, "{label}");
            }
            Action::RejectAndRecord { reason } => {
                assert_eq!(sent, [both], "{label}");
                assert_eq!(snap.rejected(reason), 2, "{label}");
                let drained = h.take_rejected();
                let got: Vec<_> = drained
                    .records
                    .iter()
                    .map(|r| (r.event_id.as_str(), r.reason, r.outcome))
                    .collect();
                assert_eq!(got, [("e0", reason, label), ("e1", reason, label)]);
            }
        }
        // Whatever the row, the batch is final: acked, nothing queued.
        assert_eq!(snap.queue.queued_records, 0, "{label}");
        assert_eq!(snap.queue.acked_records_total, 2, "{label}");
        h.shutdown(far()).await.unwrap();
        task.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn degraded_is_visible_while_retrying() {
    let fake = FakeTransport::dead();
    let (h, _task) = start(cfg("dead"), fake.clone(), 3).await;
    fake.wait_calls(3).await;
    let snap = h.snapshot();
    assert_eq!(snap.degraded, Some("connection refused"));
    assert_eq!(snap.delivered_records_total, 0);
    assert_eq!(snap.queue.queued_records, 3);
    assert!(snap.retried_records_total >= 9);
    assert!(snap.queue.oldest_record_age.is_some());
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_where_the_row_says_so_and_capped() {
    // (outcome, server hint, expected wait: Some(exact) or None = jittered
    // within the first ceiling of 100 ms)
    let cases: &[(Outcome, Option<u64>, Option<u64>)] = &[
        (Outcome::Http { status: 429 }, Some(7), Some(7)),
        (Outcome::Http { status: 503 }, Some(120), Some(120)),
        // Capped at max_retry_after (300 s).
        (Outcome::Http { status: 429 }, Some(86_400), Some(300)),
        (
            Outcome::Grpc {
                code: GrpcCode::Unavailable,
                retry_info: true,
            },
            Some(2),
            Some(2),
        ),
        // Rows that do not honour the hint use the jittered delay.
        (Outcome::Http { status: 500 }, Some(60), None),
        // No hint: jittered.
        (Outcome::Http { status: 429 }, None, None),
    ];
    for &(outcome, hint, want) in cases {
        let report = SendReport::batch(outcome).with_retry_after(hint.map(Duration::from_secs));
        let fake = FakeTransport::new(vec![Some(report)]);
        let (h, task) = start(cfg("ra"), fake.clone(), 1).await;
        h.flush(far()).await.unwrap();
        let t = fake.times();
        assert_eq!(t.len(), 2, "{outcome:?}");
        let waited = t[1] - t[0];
        match want {
            Some(secs) => assert_eq!(waited, Duration::from_secs(secs), "{outcome:?}"),
            None => assert!(
                waited <= Duration::from_millis(100),
                "{outcome:?}: {waited:?}"
            ),
        }
        h.shutdown(far()).await.unwrap();
        task.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn backoff_grows_between_consecutive_retries_and_resets_after_success() {
    let refused = || {
        Some(SendReport::batch(Outcome::Transport(
            TransportFailure::ConnectionRefused,
        )))
    };
    let fake = FakeTransport::new(vec![refused(), refused(), refused(), refused()]);
    let (h, task) = start(cfg("grow"), fake.clone(), 1).await;
    h.flush(far()).await.unwrap();
    let t = fake.times();
    assert_eq!(t.len(), 5);
    // Full jitter: each wait is within its ceiling 100, 200, 400, 800 ms.
    for (i, ceiling_ms) in [100u64, 200, 400, 800].into_iter().enumerate() {
        let waited = t[i + 1] - t[i];
        assert!(
            waited <= Duration::from_millis(ceiling_ms),
            "wait {i}: {waited:?}"
        );
    }
    h.shutdown(far()).await.unwrap();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn per_record_outcomes_resend_only_the_retryable_records() {
    // An Elasticsearch-like bulk answer: created, 429, conflict (already
    // there), mapping error.
    let first = SendReport::per_record(vec![
        Outcome::ElasticsearchBulkItem { status: 201 },
        Outcome::ElasticsearchBulkItem { status: 429 },
        Outcome::ElasticsearchBulkItem { status: 409 },
        Outcome::ElasticsearchBulkItem { status: 400 },
    ]);
    let fake = FakeTransport::new(vec![Some(first)]);
    let (h, task) = start(cfg("items"), fake.clone(), 4).await;
    h.flush(far()).await.unwrap();
    assert_eq!(fake.sent(), [ids(&["e0", "e1", "e2", "e3"]), ids(&["e1"])]);
    let snap = h.snapshot();
    assert_eq!(snap.delivered_records_total, 2);
    assert_eq!(snap.already_delivered_records_total, 1);
    assert_eq!(snap.rejected(RejectReason::InvalidData), 1);
    assert_eq!(snap.sent_records_total, 5);
    let drained = h.take_rejected();
    assert_eq!(drained.records.len(), 1);
    assert_eq!(drained.records[0].event_id, "e3");
    assert_eq!(
        drained.records[0].outcome,
        "ES bulk item other 4xx (400 mapping errors)"
    );
    // Taken once.
    assert!(h.take_rejected().records.is_empty());
    h.shutdown(far()).await.unwrap();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn split_halves_until_single_records_then_rejects_the_one_still_too_large() {
    let too_large = || Some(SendReport::batch(Outcome::Http { status: 413 }));
    // [e0..e3] 413 -> [e0,e1] 413 -> [e0] ok, [e1] 413 (alone: rejected)
    // -> [e2,e3] ok.
    let ok = || Some(SendReport::batch(Outcome::Http { status: 200 }));
    let fake = FakeTransport::new(vec![too_large(), too_large(), ok(), too_large(), ok()]);
    let (h, task) = start(cfg("split"), fake.clone(), 4).await;
    h.flush(far()).await.unwrap();
    assert_eq!(
        fake.sent(),
        [
            ids(&["e0", "e1", "e2", "e3"]),
            ids(&["e0", "e1"]),
            ids(&["e0"]),
            ids(&["e1"]),
            ids(&["e2", "e3"]),
        ]
    );
    let snap = h.snapshot();
    assert_eq!(snap.split_batches_total, 2);
    assert_eq!(snap.delivered_records_total, 3);
    assert_eq!(snap.rejected(RejectReason::InvalidData), 1);
    assert_eq!(h.take_rejected().records[0].event_id, "e1");
    h.shutdown(far()).await.unwrap();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_hung_send_times_out_and_is_retried() {
    let fake = FakeTransport::new(vec![None]);
    let c = DriverConfig {
        send_timeout: Duration::from_secs(5),
        ..cfg("hung")
    };
    let (h, task) = start(c, fake.clone(), 2).await;
    h.flush(far()).await.unwrap();
    let t = fake.times();
    assert_eq!(fake.sent().len(), 2);
    assert!(t[1] - t[0] >= Duration::from_secs(5));
    assert_eq!(h.snapshot().delivered_records_total, 2);
    h.shutdown(far()).await.unwrap();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn itemised_rejects_are_bounded_and_the_rest_counted() {
    let fake = FakeTransport::new(vec![Some(SendReport::batch(Outcome::Http { status: 400 }))]);
    let c = DriverConfig {
        max_itemised_rejects: 3,
        ..cfg("bounded")
    };
    let (h, task) = start(c, fake, 5).await;
    h.flush(far()).await.unwrap();
    let drained = h.take_rejected();
    assert_eq!(drained.records.len(), 3);
    assert_eq!(drained.not_itemised[RejectReason::InvalidData.index()], 2);
    assert_eq!(h.snapshot().rejected(RejectReason::InvalidData), 5);
    h.shutdown(far()).await.unwrap();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn flush_reaches_the_transport() {
    let fake = FakeTransport::new(Vec::new());
    let (h, task) = start(cfg("flush"), fake.clone(), 3).await;
    h.flush(far()).await.unwrap();
    assert_eq!(*fake.flushes.lock().unwrap(), 1);
    assert_eq!(h.snapshot().delivered_records_total, 3);
    h.shutdown(far()).await.unwrap();
    task.await.unwrap();
}

/// Fan-out: a dead sink keeps its records; a healthy one next to it
/// delivers everything.
#[tokio::test(start_paused = true)]
async fn a_dead_sink_does_not_stall_a_healthy_one() {
    let dead = FakeTransport::dead();
    let alive = FakeTransport::new(Vec::new());
    let (hd, td) = start(cfg("dead"), dead, 0).await;
    let (ha, ta) = start(cfg("alive"), alive.clone(), 0).await;
    for i in 0..10 {
        let batch = records(&format!("b{i}-"), 10);
        hd.queue().push(batch.clone()).await.unwrap();
        ha.queue().push(batch).await.unwrap();
    }
    ha.flush(far()).await.unwrap();
    assert_eq!(ha.snapshot().delivered_records_total, 100);
    assert_eq!(ha.snapshot().queue.queued_records, 0);
    let d = hd.snapshot();
    assert_eq!(d.delivered_records_total, 0);
    assert_eq!(d.queue.queued_records, 100);
    // The dead sink's flush cannot finish: it reports the deadline.
    let soon = Instant::now() + Duration::from_secs(1);
    assert!(matches!(
        hd.flush(soon).await,
        Err(DriverError::DeadlineExceeded)
    ));
    ha.shutdown(far()).await.unwrap();
    ta.await.unwrap();
    let report = hd
        .shutdown(Instant::now() + Duration::from_millis(10))
        .await
        .unwrap();
    td.await.unwrap();
    assert!(!report.drained);
    // Memory mode: what the dead sink held is lost and counted as such.
    assert_eq!(report.queue.records_lost, 100);
}

/// Real time, disk queue: shutdown during an outage leaves the records on
/// disk for the next start, which delivers them.
#[tokio::test]
async fn shutdown_during_an_outage_keeps_records_for_replay() {
    let dir = tempfile::tempdir().unwrap();
    let qcfg = QueueConfig::new("replay", Some(dir.path().to_path_buf()), Durability::Disk);
    let queue = DurableQueue::open(qcfg.clone()).unwrap();
    queue.push(records("r", 20)).await.unwrap();
    let (driver, h) = SinkDriver::new(cfg("replay"), queue, FakeTransport::dead());
    let task = tokio::spawn(driver.run());
    let report = h
        .shutdown(Instant::now() + Duration::from_millis(200))
        .await
        .unwrap();
    task.await.unwrap();
    assert!(!report.drained);
    assert_eq!(report.queue.records_pending_replay, 20);
    assert_eq!(report.queue.records_lost, 0);

    let queue = DurableQueue::open(qcfg).unwrap();
    let alive = FakeTransport::new(Vec::new());
    let (driver, h) = SinkDriver::new(cfg("replay"), queue, alive.clone());
    let task = tokio::spawn(driver.run());
    h.flush(Instant::now() + Duration::from_secs(10))
        .await
        .unwrap();
    let mut got: Vec<String> = alive.sent().concat();
    got.sort();
    let mut want: Vec<String> = (0..20).map(|i| format!("r{i}")).collect();
    want.sort();
    assert_eq!(got, want);
    let report = h
        .shutdown(Instant::now() + Duration::from_secs(5))
        .await
        .unwrap();
    task.await.unwrap();
    assert!(report.drained);
    assert_eq!(report.queue.records_pending_replay, 0);
}

#[test]
fn driver_metrics_doc_is_current() {
    let mut body = String::from("| Metric | Meaning |\n|---|---|\n");
    for (name, help) in METRICS {
        body.push_str(&format!("| `{name}` | {help} |\n"));
    }
    crate::core::docs::check_generated_section("driver-metrics", &body);
}
