//! The per-sink delivery loop of stage ⑤ (deliver), transport-agnostic.
//!
//! Pipeline position: the daemon pushes encoded records into one
//! [`DurableQueue`] per sink and spawns one [`SinkDriver`] per sink. The
//! driver reads a batch from its queue, hands it to its [`Transport`],
//! [`classify`]s what came back, and acks the batch in the queue once every
//! record's outcome is final:
//!
//! * *delivered* / *already delivered*: done;
//! * *retry*: back off (full jitter; a server's `Retry-After` replaces the
//!   jittered delay where the table says so) and resend the **same**
//!   records. The queue has no nack, so the driver holds the failed records
//!   until they are final; nothing is acked early;
//! * *split and retry*: halve the records and send each half (a single
//!   record that is still too large is rejected as `invalid_data`);
//! * *reject and record*: the record is final (acked) **and** recorded as
//!   rejected with the table row's reason; the audit stage drains these
//!   with [`DriverHandle::take_rejected`] and turns them into loss records.
//!
//! Fan-out is one driver per sink: a slow or dead sink only fills its own
//! queue. There is no retry limit and no maximum elapsed time (the queue's
//! full policy is the only place data leaves without delivery).
//!
//! This module must not know a wire protocol, encode records, or decide a
//! classification itself (the table does); it must not drop a record
//! without counting it.

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc, oneshot, watch};

use super::backoff::{Backoff, BackoffConfig};
use super::classify::{Action, Classification, Outcome, RejectReason, TransportFailure, classify};
use super::queue::{
    DurableQueue, QueueError, QueueSnapshot, QueuedRecord, ReadBatch, ShutdownReport,
};

/// What a transport says about one send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReport {
    pub outcomes: SendOutcomes,
    /// A server-chosen delay (`Retry-After`, gRPC `RetryInfo`), used only
    /// when the outcome's table row says to honour it; capped by
    /// [`DriverConfig::max_retry_after`].
    pub retry_after: Option<Duration>,
}

/// One outcome for the whole batch, or one per record (same order and
/// length as the batch sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcomes {
    Batch(Outcome),
    PerRecord(Vec<Outcome>),
}

impl SendReport {
    /// One outcome for every record of the batch.
    pub fn batch(outcome: Outcome) -> Self {
        SendReport {
            outcomes: SendOutcomes::Batch(outcome),
            retry_after: None,
        }
    }

    /// One outcome per record, in batch order.
    pub fn per_record(outcomes: Vec<Outcome>) -> Self {
        SendReport {
            outcomes: SendOutcomes::PerRecord(outcomes),
            retry_after: None,
        }
    }

    /// The same report with a server-chosen delay.
    pub fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }
}

/// A transport failure outside `send` (flush, shutdown, setup).
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("invalid sink config: {0}")]
    InvalidConfig(String),
}

/// One sink's way of moving bytes. Implementations frame and send the
/// records' payloads and report what happened as [`Outcome`]s; they do not
/// retry (beyond re-establishing a connection inside one `send`), sleep
/// between attempts, or drop records.
pub trait Transport: Send {
    /// Send one batch (never empty). A future dropped mid-way (send timeout,
    /// shutdown deadline) must leave the transport usable: the next `send`
    /// must not continue a half-written frame.
    fn send(&mut self, batch: &[QueuedRecord]) -> impl Future<Output = SendReport> + Send;

    /// Make what was reported delivered durable at the receiver where the
    /// transport can (fsync a file, flush a socket).
    fn flush(&mut self) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// Flush and release connections and files.
    fn shutdown(&mut self) -> impl Future<Output = Result<(), TransportError>> + Send;
}

/// Driver settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DriverConfig {
    /// Sink name, for logs and metrics labels.
    pub sink: String,
    /// At most this many records per send.
    pub max_batch_records: usize,
    /// At most about this many event-id + payload bytes per send (a larger
    /// single record still goes alone).
    pub max_batch_bytes: u64,
    pub backoff: BackoffConfig,
    /// Cap on a server-chosen delay, so a broken server cannot park a sink
    /// for a day.
    pub max_retry_after: Duration,
    /// A send that takes longer is abandoned and classified as a timeout
    /// (retry); the transport must then not reuse a half-written stream.
    pub send_timeout: Duration,
    /// Rejected records kept itemised (event id + reason) until the audit
    /// stage takes them; beyond this, rejects are only counted per reason
    /// ([`RejectedDrain::not_itemised`]), so memory stays bounded.
    pub max_itemised_rejects: usize,
}

impl DriverConfig {
    /// Defaults: 500 records / 1 MiB per send, backoff 1 s..60 s,
    /// `Retry-After` capped at 300 s, 30 s send timeout.
    pub fn new(sink: impl Into<String>) -> Self {
        DriverConfig {
            sink: sink.into(),
            max_batch_records: 500,
            max_batch_bytes: 1 << 20,
            backoff: BackoffConfig::default(),
            max_retry_after: Duration::from_secs(300),
            send_timeout: Duration::from_secs(30),
            max_itemised_rejects: 100_000,
        }
    }
}

/// A record rejected by the sink, for the audit stage's loss record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRecord {
    /// The queue sequence number.
    pub seq: u64,
    pub event_id: String,
    pub reason: RejectReason,
    /// The deciding table row's outcome label (e.g. "HTTP 400").
    pub outcome: &'static str,
}

/// What [`DriverHandle::take_rejected`] hands over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RejectedDrain {
    pub records: Vec<RejectedRecord>,
    /// Rejects past [`DriverConfig::max_itemised_rejects`], counted per
    /// reason in [`RejectReason::ALL`] order; their event ids were not kept.
    pub not_itemised: [u64; 4],
}

/// Counters and gauges of one sink, for metrics and the admin endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriverSnapshot {
    pub sink: String,
    /// Records handed to the transport, resends included.
    pub sent_records_total: u64,
    /// Records the receiver took (delivered).
    pub delivered_records_total: u64,
    /// Records the receiver already had (an earlier attempt landed).
    pub already_delivered_records_total: u64,
    /// Records scheduled for another attempt after a backoff.
    pub retried_records_total: u64,
    /// Per [`RejectReason`], in [`RejectReason::ALL`] order.
    pub rejected_records_total: [u64; 4],
    /// Batches halved after a "too large" outcome.
    pub split_batches_total: u64,
    /// Set while the last outcome was a degraded retry: the row's label.
    pub degraded: Option<&'static str>,
    pub queue: QueueSnapshot,
}

impl DriverSnapshot {
    /// Delivered plus already delivered.
    pub fn acknowledged_records_total(&self) -> u64 {
        self.delivered_records_total + self.already_delivered_records_total
    }

    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.rejected_records_total[reason.index()]
    }

    pub fn rejected_total(&self) -> u64 {
        self.rejected_records_total.iter().sum()
    }

    /// `(metric name, reason label, value)` for the driver's metrics and
    /// its queue's; the caller adds the `sink` label. Names are listed in
    /// docs/sinks.md ([`METRICS`]).
    pub fn metric_samples(&self) -> Vec<(&'static str, Option<&'static str>, u64)> {
        let mut v = vec![
            (
                "flowscribe_sinks_sent_records_total",
                None,
                self.sent_records_total,
            ),
            (
                "flowscribe_sinks_acknowledged_records_total",
                None,
                self.acknowledged_records_total(),
            ),
            (
                "flowscribe_sinks_already_delivered_records_total",
                None,
                self.already_delivered_records_total,
            ),
            (
                "flowscribe_sinks_retried_records_total",
                None,
                self.retried_records_total,
            ),
            (
                "flowscribe_sinks_split_batches_total",
                None,
                self.split_batches_total,
            ),
            (
                "flowscribe_sinks_degraded",
                None,
                u64::from(self.degraded.is_some()),
            ),
        ];
        for reason in RejectReason::ALL {
            v.push((
                "flowscribe_sinks_rejected_records_total",
                Some(reason.as_str()),
                self.rejected(reason),
            ));
        }
        v.extend(self.queue.metric_samples());
        v
    }
}

/// Every metric name [`DriverSnapshot::metric_samples`] adds to the
/// queue's, with help text.
pub const METRICS: &[(&str, &str)] = &[
    (
        "flowscribe_sinks_sent_records_total",
        "records handed to the transport, resends included",
    ),
    (
        "flowscribe_sinks_acknowledged_records_total",
        "records the receiver took or already had",
    ),
    (
        "flowscribe_sinks_already_delivered_records_total",
        "records the receiver already had (ES 409 on create, gRPC ALREADY_EXISTS)",
    ),
    (
        "flowscribe_sinks_retried_records_total",
        "records scheduled for another attempt after a backoff",
    ),
    (
        "flowscribe_sinks_split_batches_total",
        "batches halved after a too-large outcome",
    ),
    (
        "flowscribe_sinks_degraded",
        "gauge: 1 while the sink's last outcome was a degraded retry",
    ),
    (
        "flowscribe_sinks_rejected_records_total{reason}",
        "records rejected by the sink and recorded as lost, by `RejectReason`",
    ),
];

/// What the driver left behind when it stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriverShutdownReport {
    /// The queue was empty when the driver stopped (everything delivered or
    /// recorded).
    pub drained: bool,
    /// What the queue's own shutdown reported (records pending replay on
    /// disk, records lost in memory mode).
    pub queue: ShutdownReport,
    /// Errors from the transport's or the queue's shutdown, as text.
    pub errors: Vec<String>,
}

/// Driver errors seen by [`DriverHandle`] callers.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("deadline passed before the sink was flushed or stopped")]
    DeadlineExceeded,
    #[error("the sink driver is not running")]
    NotRunning,
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// How long the driver's teardown (transport and queue shutdown) may run
/// past the drain deadline given to [`DriverHandle::shutdown`].
pub const TEARDOWN_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
struct Stats {
    sent: u64,
    delivered: u64,
    already_delivered: u64,
    retried: u64,
    rejected: [u64; 4],
    split: u64,
    degraded: Option<&'static str>,
    rejected_items: VecDeque<RejectedRecord>,
    not_itemised: [u64; 4],
    report: Option<DriverShutdownReport>,
}

#[derive(Debug)]
struct Shared {
    sink: String,
    queue: DurableQueue,
    stats: Mutex<Stats>,
    /// A batch was acked, or the driver stopped.
    progress: Notify,
}

impl Shared {
    fn stats(&self) -> MutexGuard<'_, Stats> {
        // Counters stay meaningful after a panic elsewhere; keep going.
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }
}

enum Command {
    Flush(oneshot::Sender<Result<(), TransportError>>),
}

/// The cheap, cloneable side of a driver: metrics, rejected records,
/// flush and shutdown.
#[derive(Debug, Clone)]
pub struct DriverHandle {
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    stop: Arc<watch::Sender<Option<Instant>>>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command::Flush")
    }
}

/// The delivery loop of one sink. Build with [`SinkDriver::new`], spawn
/// [`SinkDriver::run`] on the runtime, keep the [`DriverHandle`].
#[derive(Debug)]
pub struct SinkDriver<T> {
    delivery: Delivery<T>,
    commands: mpsc::Receiver<Command>,
    stop: watch::Receiver<Option<Instant>>,
}

#[derive(Debug)]
struct Delivery<T> {
    cfg: DriverConfig,
    transport: T,
    backoff: Backoff,
    shared: Arc<Shared>,
}

impl<T: Transport> SinkDriver<T> {
    pub fn new(cfg: DriverConfig, queue: DurableQueue, transport: T) -> (Self, DriverHandle) {
        let backoff = Backoff::new(cfg.backoff);
        Self::with_backoff(cfg, queue, transport, backoff)
    }

    /// Like [`new`](Self::new) with a given backoff schedule (tests seed it).
    pub fn with_backoff(
        cfg: DriverConfig,
        queue: DurableQueue,
        transport: T,
        backoff: Backoff,
    ) -> (Self, DriverHandle) {
        let shared = Arc::new(Shared {
            sink: cfg.sink.clone(),
            queue,
            stats: Mutex::new(Stats::default()),
            progress: Notify::new(),
        });
        let (cmd_tx, cmd_rx) = mpsc::channel(4);
        let (stop_tx, stop_rx) = watch::channel(None);
        let driver = SinkDriver {
            delivery: Delivery {
                cfg,
                transport,
                backoff,
                shared: Arc::clone(&shared),
            },
            commands: cmd_rx,
            stop: stop_rx,
        };
        let handle = DriverHandle {
            shared,
            commands: cmd_tx,
            stop: Arc::new(stop_tx),
        };
        (driver, handle)
    }

    /// Deliver until [`DriverHandle::shutdown`] (drain, then stop at its
    /// deadline) or until the queue is shut down by someone else and
    /// drained. Returns what was left behind (also published to the handle).
    pub async fn run(self) -> DriverShutdownReport {
        let SinkDriver {
            mut delivery,
            mut commands,
            mut stop,
        } = self;
        let queue = delivery.shared.queue.clone();
        let (max_records, max_bytes) =
            (delivery.cfg.max_batch_records, delivery.cfg.max_batch_bytes);
        let mut deadline_hit = false;
        loop {
            let stopping = stop.borrow_and_update().is_some();
            let batch: ReadBatch = if stopping {
                // Draining: deliver what is there, stop when it is empty.
                match queue.try_read_batch(max_records, max_bytes) {
                    Some(b) => b,
                    None => break,
                }
            } else {
                tokio::select! {
                    b = queue.read_batch(max_records, max_bytes) => match b {
                        Some(b) => b,
                        // Shut down by someone else and drained.
                        None => break,
                    },
                    Some(cmd) = commands.recv() => {
                        delivery.handle(cmd).await;
                        continue;
                    }
                    _ = stop.changed() => continue,
                }
            };
            let done = tokio::select! {
                () = delivery.deliver(batch) => true,
                () = stop_deadline(&mut stop) => false,
            };
            if !done {
                // The unfinished batch is not acked: disk mode replays it
                // on the next start, memory mode counts it lost below.
                deadline_hit = true;
                break;
            }
        }
        let teardown_deadline = stop.borrow().map_or_else(
            || Instant::now() + TEARDOWN_GRACE,
            |d| d.max(Instant::now()) + TEARDOWN_GRACE,
        );
        let mut report = DriverShutdownReport {
            drained: !deadline_hit && queue.snapshot().queued_records == 0,
            ..DriverShutdownReport::default()
        };
        let td = tokio::time::Instant::from_std(teardown_deadline);
        match tokio::time::timeout_at(td, delivery.transport.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => report.errors.push(format!("transport shutdown: {e}")),
            Err(_) => report
                .errors
                .push("transport shutdown: deadline passed".into()),
        }
        match queue.shutdown(teardown_deadline).await {
            Ok(r) => report.queue = r,
            Err(e) => {
                report.errors.push(format!("queue shutdown: {e}"));
                // The queue still counted what it lost; report its view.
                let snap = queue.snapshot();
                report.queue.records_pending_replay = snap.queued_records;
            }
        }
        tracing::info!(
            sink = %delivery.shared.sink,
            drained = report.drained,
            pending_replay = report.queue.records_pending_replay,
            lost = report.queue.records_lost,
            "sink driver stopped"
        );
        delivery.shared.stats().report = Some(report.clone());
        delivery.shared.progress.notify_waiters();
        report
    }
}

/// Resolves when a stop deadline is set and has passed.
async fn stop_deadline(stop: &mut watch::Receiver<Option<Instant>>) {
    loop {
        let deadline = *stop.borrow_and_update();
        match deadline {
            Some(d) => {
                tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await;
                return;
            }
            None => {
                if stop.changed().await.is_err() {
                    // No handle left: nobody can ask us to stop.
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}

/// How one send's records split up by what happens next.
#[derive(Debug, Default)]
struct Sorted {
    retry: Vec<QueuedRecord>,
    split: Vec<QueuedRecord>,
    /// Some retried record's row says to honour the server's delay.
    honour_hint: bool,
}

impl<T: Transport> Delivery<T> {
    async fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Flush(reply) => {
                let r = self.transport.flush().await;
                // The caller may have given up (deadline); nothing to do then.
                let _ = reply.send(r);
            }
        }
    }

    /// Deliver one queue batch until every record is final, then ack it.
    async fn deliver(&mut self, batch: ReadBatch) {
        let ReadBatch { records, token } = batch;
        // Each piece of work: records to send, and how long to wait first
        // (a backoff for retried records; none for split halves, which can
        // succeed right away).
        let mut work: VecDeque<(Vec<QueuedRecord>, Option<Duration>)> =
            VecDeque::from([(records, None)]);
        while let Some((chunk, wait)) = work.pop_front() {
            if let Some(delay) = wait {
                tracing::debug!(sink = %self.shared.sink, delay_ms = delay.as_millis() as u64, records = chunk.len(), "sink retry after backoff");
                tokio::time::sleep(delay).await;
            }
            self.shared.stats().sent += chunk.len() as u64;
            let send = self.transport.send(&chunk);
            let report = match tokio::time::timeout(self.cfg.send_timeout, send).await {
                Ok(r) => r,
                Err(_) => SendReport::batch(Outcome::Transport(TransportFailure::Timeout)),
            };
            let sorted = self.sort(chunk, &report.outcomes);
            if !sorted.retry.is_empty() {
                let hint = if sorted.honour_hint {
                    report.retry_after.map(|d| d.min(self.cfg.max_retry_after))
                } else {
                    None
                };
                let delay = self.backoff.next_delay_with_hint(hint);
                work.push_front((sorted.retry, Some(delay)));
            }
            if !sorted.split.is_empty() {
                let mut first = sorted.split;
                let second = first.split_off(first.len() / 2);
                self.shared.stats().split += 1;
                work.push_front((second, None));
                work.push_front((first, None));
            }
        }
        self.shared.queue.ack(token);
        self.shared.progress.notify_waiters();
    }

    /// Classify every record of a sent chunk, count it, and keep the ones
    /// that need another attempt.
    fn sort(&mut self, chunk: Vec<QueuedRecord>, outcomes: &SendOutcomes) -> Sorted {
        let classifications: Vec<Classification> = match outcomes {
            SendOutcomes::Batch(o) => vec![classify(o); chunk.len()],
            SendOutcomes::PerRecord(v) if v.len() == chunk.len() => {
                v.iter().map(classify).collect()
            }
            SendOutcomes::PerRecord(v) => {
                // A transport bug; retrying is the one action that cannot
                // lose data.
                tracing::error!(sink = %self.shared.sink, sent = chunk.len(), outcomes = v.len(), "transport returned the wrong number of outcomes; retrying the batch");
                vec![classify(&Outcome::Transport(TransportFailure::ConnectionReset)); chunk.len()]
            }
        };
        let single = chunk.len() == 1;
        let mut sorted = Sorted::default();
        let mut st = self.shared.stats();
        let mut any_delivered = false;
        for (record, c) in chunk.into_iter().zip(classifications) {
            match c.action {
                Action::Delivered => {
                    st.delivered += 1;
                    any_delivered = true;
                }
                Action::AlreadyDelivered => {
                    st.already_delivered += 1;
                    any_delivered = true;
                }
                Action::Retry { honour_retry_after } => {
                    st.retried += 1;
                    sorted.honour_hint |= honour_retry_after;
                    if c.degraded {
                        st.degraded = Some(c.row.outcome);
                    }
                    sorted.retry.push(record);
                }
                Action::SplitAndRetry if !single => sorted.split.push(record),
                Action::SplitAndRetry => {
                    // One record still too large: it can never be sent.
                    record_reject(
                        &mut st,
                        self.cfg.max_itemised_rejects,
                        record,
                        RejectReason::InvalidData,
                        c.row.outcome,
                    );
                }
                Action::RejectAndRecord { reason } => {
                    record_reject(
                        &mut st,
                        self.cfg.max_itemised_rejects,
                        record,
                        reason,
                        c.row.outcome,
                    );
                }
            }
        }
        if any_delivered && sorted.retry.is_empty() {
            st.degraded = None;
        }
        drop(st);
        if any_delivered && sorted.retry.is_empty() {
            self.backoff.reset();
        }
        sorted
    }
}

fn record_reject(
    st: &mut Stats,
    max_items: usize,
    record: QueuedRecord,
    reason: RejectReason,
    outcome: &'static str,
) {
    st.rejected[reason.index()] += 1;
    tracing::debug!(event_id = %record.event_id, reason = reason.as_str(), outcome, "sink rejected record");
    if st.rejected_items.len() < max_items {
        st.rejected_items.push_back(RejectedRecord {
            seq: record.seq,
            event_id: record.event_id,
            reason,
            outcome,
        });
    } else {
        st.not_itemised[reason.index()] += 1;
    }
}

impl DriverHandle {
    pub fn sink(&self) -> &str {
        &self.shared.sink
    }

    /// The queue this driver reads (push into it).
    pub fn queue(&self) -> &DurableQueue {
        &self.shared.queue
    }

    pub fn snapshot(&self) -> DriverSnapshot {
        let queue = self.shared.queue.snapshot();
        let st = self.shared.stats();
        DriverSnapshot {
            sink: self.shared.sink.clone(),
            sent_records_total: st.sent,
            delivered_records_total: st.delivered,
            already_delivered_records_total: st.already_delivered,
            retried_records_total: st.retried,
            rejected_records_total: st.rejected,
            split_batches_total: st.split,
            degraded: st.degraded,
            queue,
        }
    }

    /// Take the rejected records recorded since the last call, for the
    /// audit stage's loss records. Counters are not reset.
    pub fn take_rejected(&self) -> RejectedDrain {
        let mut st = self.shared.stats();
        RejectedDrain {
            records: st.rejected_items.drain(..).collect(),
            not_itemised: std::mem::take(&mut st.not_itemised),
        }
    }

    /// Wait until every record pushed before this call is final (delivered
    /// or recorded), then flush the transport (e.g. fsync the file) and the
    /// queue's ack log; all before `deadline`.
    pub async fn flush(&self, deadline: Instant) -> Result<(), DriverError> {
        let dl = tokio::time::Instant::from_std(deadline);
        let target = self.shared.queue.snapshot().last_pushed_seq;
        tokio::time::timeout_at(dl, self.wait_done_through(target))
            .await
            .map_err(|_| DriverError::DeadlineExceeded)??;
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Flush(tx))
            .await
            .map_err(|_| DriverError::NotRunning)?;
        tokio::time::timeout_at(dl, rx)
            .await
            .map_err(|_| DriverError::DeadlineExceeded)?
            .map_err(|_| DriverError::NotRunning)??;
        tokio::time::timeout_at(dl, self.shared.queue.flush())
            .await
            .map_err(|_| DriverError::DeadlineExceeded)??;
        Ok(())
    }

    async fn wait_done_through(&self, target: u64) -> Result<(), DriverError> {
        loop {
            let notified = self.shared.progress.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.shared.queue.snapshot().done_through_seq >= target {
                return Ok(());
            }
            if self.shared.stats().report.is_some() {
                return Err(DriverError::NotRunning);
            }
            notified.await;
        }
    }

    /// Stop: the driver keeps delivering what is queued until the queue is
    /// empty or `deadline` passes, then shuts the transport and the queue
    /// down (within [`TEARDOWN_GRACE`]). Stop the producers first. A batch
    /// cut off at the deadline is not acked: disk mode replays it on the
    /// next start, memory mode counts it lost.
    pub async fn shutdown(&self, deadline: Instant) -> Result<DriverShutdownReport, DriverError> {
        self.stop.send_replace(Some(deadline));
        let dl = tokio::time::Instant::from_std(deadline + TEARDOWN_GRACE);
        tokio::time::timeout_at(dl, async {
            loop {
                let notified = self.shared.progress.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if let Some(r) = self.shared.stats().report.clone() {
                    return r;
                }
                notified.await;
            }
        })
        .await
        .map_err(|_| DriverError::DeadlineExceeded)
    }
}
