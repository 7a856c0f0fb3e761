//! The durable per-sink queue of stage ⑤ (deliver).
//!
//! The daemon pushes encoded records (bytes plus an event id) into one
//! [`DurableQueue`] per sink; the sink driver reads batches, delivers them
//! and [`ack`](DurableQueue::ack)s each batch once its outcome is final
//! (delivered, or rejected and recorded). Delivery is at-least-once: what
//! is not acked is redelivered after a restart, with its event id so the
//! duplicate is identifiable.
//!
//! * **Memory first.** Records live in memory up to `memory_max_bytes`.
//!   In [`Durability::Memory`] the overflow spills to segment files
//!   (written, not fsynced) and graceful shutdown spills the rest; a crash
//!   loses what was only in memory. In [`Durability::Disk`] every push is
//!   written **and fsynced** before it is acknowledged, and memory is only
//!   a read cache. Concurrent pushes share fsyncs (group commit: while one
//!   fsync runs, later pushes write and then wait for the next one, which
//!   covers them all), and one push of many records costs one fsync.
//! * **Readers only see durable records** in disk mode, so nothing held
//!   only in memory can be delivered ahead of the durable point.
//! * **Bounded** by `max_records` and `max_bytes` (event id + record bytes
//!   of records not yet acked). When full, [`WhenFull`] applies: wait for
//!   space (backpressure), drop the oldest unread records, or drop the new
//!   ones. Every record not taken is counted with a [`ShedReason`] and
//!   returned to the caller with its event id, so the loss can become an
//!   in-band record.
//! * **Recovery** ([`storage`](self) docs): torn tails are truncated, a
//!   corrupt record in the middle is skipped while later valid records are
//!   kept, and what could not be recovered is counted in the
//!   [`RecoveryReport`]. The work is one sequential read of the queue's
//!   files: bounded, never a wait, never a loop on bad input.
//! * **Never ack after a failed fsync**: the queue stops accepting
//!   (every later push fails with [`QueueError::Poisoned`], counted) until
//!   it is reopened and recovery re-reads what actually reached the disk.
//!
//! This module must not encode records, talk to sinks, or decide retries.
//! Its async parts wait only on its own notifications and on fsync (run on
//! tokio's blocking pool); file writes to the page cache happen under the
//! lock and are short.

mod done;
pub mod frame;
mod storage;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;

use done::DoneSet;
pub use storage::RecoveryReport;
use storage::{Storage, SyncWork};

/// Where acknowledged records live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Memory, spilling to disk without fsync. Fast; a crash loses what was
    /// not yet delivered (the restart gap record covers it).
    Memory,
    /// Written and fsynced before a push is acknowledged; replayed after a
    /// crash. Required in compliance mode.
    Disk,
}

/// What a push does when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Wait for acks to free space (backpressure to the producer).
    Block,
    /// Shed the oldest records not yet handed to the sink driver.
    DropOldest,
    /// Shed the records being pushed.
    DropNewest,
}

/// Queue settings. `validate` before `open`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// Sink name, for logs.
    pub sink: String,
    /// Directory of the segment files; required for [`Durability::Disk`],
    /// optional for memory (no spilling without it).
    pub dir: Option<PathBuf>,
    pub durability: Durability,
    pub when_full: WhenFull,
    /// Most records not yet acked.
    pub max_records: u64,
    /// Most event-id + record bytes not yet acked.
    pub max_bytes: u64,
    /// Most bytes held in memory (cache in disk mode, data in memory mode).
    pub memory_max_bytes: u64,
    /// A segment file is closed and a new one started past this size.
    pub segment_max_bytes: u64,
}

impl QueueConfig {
    /// Defaults sized for one sink of one node: 1 GiB / 1M records,
    /// 32 MiB in memory, 8 MiB segments.
    pub fn new(sink: impl Into<String>, dir: Option<PathBuf>, durability: Durability) -> Self {
        QueueConfig {
            sink: sink.into(),
            dir,
            durability,
            when_full: WhenFull::Block,
            max_records: 1_000_000,
            max_bytes: 1 << 30,
            memory_max_bytes: 32 << 20,
            segment_max_bytes: 8 << 20,
        }
    }

    /// All problems at once, as the config loader expects.
    pub fn validate(&self) -> Result<(), QueueError> {
        let mut problems = Vec::new();
        if self.durability == Durability::Disk && self.dir.is_none() {
            problems.push("durability `disk` needs a directory");
        }
        if self.max_records == 0 {
            problems.push("max_records must be at least 1");
        }
        if self.max_bytes == 0 {
            problems.push("max_bytes must be at least 1");
        }
        if self.segment_max_bytes == 0 {
            problems.push("segment_max_bytes must be at least 1");
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(QueueError::InvalidConfig(problems.join("; ")))
        }
    }
}

/// One encoded record and the id that identifies its duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub event_id: String,
    pub payload: Bytes,
}

impl Record {
    pub fn new(event_id: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        Record {
            event_id: event_id.into(),
            payload: payload.into(),
        }
    }

    /// The bytes this record counts against `max_bytes`.
    pub fn size(&self) -> u64 {
        (self.event_id.len() + self.payload.len()) as u64
    }
}

/// A record handed to the sink driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedRecord {
    /// The queue's sequence number (per queue directory, increasing).
    pub seq: u64,
    pub event_id: String,
    pub payload: Bytes,
}

/// Why a record was not kept. The `reason` label of
/// `flowscribe_sinks_queue_shed_records_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShedReason {
    /// `drop-newest`: the pushed record did not fit.
    DropNewest,
    /// `drop-oldest`: an older unread record was shed to make room.
    DropOldest,
    /// `drop-oldest` with nothing unread left to shed (everything is with
    /// the sink driver): the pushed record was shed instead.
    FullAllInFlight,
    /// One record larger than `max_bytes` (or the frame limit): it can
    /// never fit, whatever the policy.
    TooLarge,
    /// Writing the segment failed (e.g. disk full); the push failed.
    WriteFailed,
    /// Pushed after shutdown, or blocked when shutdown began.
    Closed,
    /// Memory mode: still in memory or with the driver at shutdown, with
    /// no directory (or no time) to spill to.
    LostAtShutdown,
}

impl ShedReason {
    pub const ALL: [ShedReason; 7] = [
        ShedReason::DropNewest,
        ShedReason::DropOldest,
        ShedReason::FullAllInFlight,
        ShedReason::TooLarge,
        ShedReason::WriteFailed,
        ShedReason::Closed,
        ShedReason::LostAtShutdown,
    ];

    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ShedReason::DropNewest => "drop_newest",
            ShedReason::DropOldest => "drop_oldest",
            ShedReason::FullAllInFlight => "full_all_in_flight",
            ShedReason::TooLarge => "too_large",
            ShedReason::WriteFailed => "write_failed",
            ShedReason::Closed => "closed",
            ShedReason::LostAtShutdown => "lost_at_shutdown",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A record the queue did not keep, with its evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShedRecord {
    pub event_id: String,
    /// Set when the record had been accepted earlier (drop-oldest).
    pub seq: Option<u64>,
    pub reason: ShedReason,
}

/// What happened to one push.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushReceipt {
    /// Records accepted (durable, in disk mode) from this push.
    pub accepted: u64,
    /// Sequence numbers of the accepted records, first and last.
    pub seqs: Option<(u64, u64)>,
    /// Records shed because of this push: its own (drop-newest, too large)
    /// and older ones it displaced (drop-oldest).
    pub shed: Vec<ShedRecord>,
}

/// Identifies a batch handed out by [`DurableQueue::read_batch`]; give it
/// back to [`DurableQueue::ack`]. Not `Clone`: a batch is acked once.
#[derive(Debug, PartialEq, Eq)]
pub struct BatchToken {
    first_seq: u64,
    last_seq: u64,
    records: u64,
    bytes: u64,
}

impl BatchToken {
    /// The sequence range the batch covers (including skipped gaps).
    pub fn seq_range(&self) -> (u64, u64) {
        (self.first_seq, self.last_seq)
    }
}

/// Records for the sink driver.
#[derive(Debug)]
pub struct ReadBatch {
    pub records: Vec<QueuedRecord>,
    pub token: BatchToken,
}

/// Counters and gauges, for metrics and the admin endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueSnapshot {
    /// Records not yet acked (unread + with the driver).
    pub queued_records: u64,
    pub queued_bytes: u64,
    /// Records not yet handed to the driver.
    pub unread_records: u64,
    pub memory_bytes: u64,
    pub segments: u64,
    pub segment_bytes: u64,
    pub pushed_records_total: u64,
    pub pushed_bytes_total: u64,
    pub acked_records_total: u64,
    /// Per [`ShedReason`], in [`ShedReason::ALL`] order.
    pub shed_records_total: [u64; 7],
    pub fsyncs_total: u64,
    pub disk_bytes_written_total: u64,
    /// Records found missing while reading records written by this process
    /// (corruption after start-up; corruption found at start-up is in
    /// `recovery`).
    pub read_corrupt_records_total: u64,
    pub segments_deleted_total: u64,
    pub unreadable_segments_total: u64,
    /// Set after a failed fsync: the queue accepts nothing until reopened.
    pub poisoned: bool,
    pub recovery: RecoveryReport,
    /// How long the oldest record not yet acked has been queued; `None`
    /// when nothing is queued. Records recovered at start-up count from
    /// the time the queue was opened (their push time is not stored), so
    /// after a restart this is a lower bound.
    pub oldest_record_age: Option<Duration>,
    /// The sequence number of the last record accepted (0: none yet).
    pub last_pushed_seq: u64,
    /// Every record up to this sequence number is acked or shed.
    pub done_through_seq: u64,
}

impl QueueSnapshot {
    pub fn shed(&self, reason: ShedReason) -> u64 {
        self.shed_records_total[reason.index()]
    }

    pub fn shed_total(&self) -> u64 {
        self.shed_records_total.iter().sum()
    }

    /// `(metric name, reason label, value)` for every metric this queue
    /// exports; the names are listed in docs/sinks.md ([`METRICS`]).
    pub fn metric_samples(&self) -> Vec<(&'static str, Option<&'static str>, u64)> {
        let r = &self.recovery;
        let mut v = vec![
            ("flowscribe_sinks_queue_records", None, self.queued_records),
            ("flowscribe_sinks_queue_bytes", None, self.queued_bytes),
            (
                "flowscribe_sinks_queue_memory_bytes",
                None,
                self.memory_bytes,
            ),
            (
                "flowscribe_sinks_queue_segment_bytes",
                None,
                self.segment_bytes,
            ),
            (
                "flowscribe_sinks_queue_pushed_records_total",
                None,
                self.pushed_records_total,
            ),
            (
                "flowscribe_sinks_queue_pushed_bytes_total",
                None,
                self.pushed_bytes_total,
            ),
            (
                "flowscribe_sinks_queue_acked_records_total",
                None,
                self.acked_records_total,
            ),
            (
                "flowscribe_sinks_queue_fsyncs_total",
                None,
                self.fsyncs_total,
            ),
            (
                "flowscribe_sinks_queue_disk_written_bytes_total",
                None,
                self.disk_bytes_written_total,
            ),
            (
                "flowscribe_sinks_queue_corrupt_records_total",
                None,
                self.read_corrupt_records_total + r.records_lost_corrupt,
            ),
            (
                "flowscribe_sinks_queue_torn_tail_records_total",
                None,
                r.records_lost_torn_tail,
            ),
            (
                "flowscribe_sinks_queue_corrupt_bytes_total",
                None,
                r.corrupt_bytes + r.torn_tail_bytes,
            ),
            (
                "flowscribe_sinks_queue_unreadable_segments_total",
                None,
                self.unreadable_segments_total,
            ),
            (
                "flowscribe_sinks_queue_poisoned",
                None,
                u64::from(self.poisoned),
            ),
            (
                "flowscribe_sinks_queue_oldest_record_age_milliseconds",
                None,
                self.oldest_record_age
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            ),
        ];
        for reason in ShedReason::ALL {
            v.push((
                "flowscribe_sinks_queue_shed_records_total",
                Some(reason.as_str()),
                self.shed(reason),
            ));
        }
        v
    }
}

/// Every metric name [`QueueSnapshot::metric_samples`] produces, with help.
pub const METRICS: &[(&str, &str)] = &[
    (
        "flowscribe_sinks_queue_records",
        "gauge: records not yet acked",
    ),
    (
        "flowscribe_sinks_queue_bytes",
        "gauge: event-id + record bytes not yet acked",
    ),
    (
        "flowscribe_sinks_queue_memory_bytes",
        "gauge: bytes held in memory",
    ),
    (
        "flowscribe_sinks_queue_segment_bytes",
        "gauge: bytes of segment files",
    ),
    (
        "flowscribe_sinks_queue_pushed_records_total",
        "records accepted",
    ),
    (
        "flowscribe_sinks_queue_pushed_bytes_total",
        "event-id + record bytes accepted",
    ),
    (
        "flowscribe_sinks_queue_acked_records_total",
        "records acked by the sink driver",
    ),
    (
        "flowscribe_sinks_queue_fsyncs_total",
        "fsync calls (segments, directory)",
    ),
    (
        "flowscribe_sinks_queue_disk_written_bytes_total",
        "bytes written to segments and the ack log",
    ),
    (
        "flowscribe_sinks_queue_corrupt_records_total",
        "records lost to corrupt frames (recovery + reads)",
    ),
    (
        "flowscribe_sinks_queue_torn_tail_records_total",
        "records lost to a torn tail at start-up (lower bound)",
    ),
    (
        "flowscribe_sinks_queue_corrupt_bytes_total",
        "bytes skipped or truncated by recovery",
    ),
    (
        "flowscribe_sinks_queue_unreadable_segments_total",
        "segment files that could not be read",
    ),
    (
        "flowscribe_sinks_queue_poisoned",
        "gauge: 1 after a failed fsync until reopened",
    ),
    (
        "flowscribe_sinks_queue_oldest_record_age_milliseconds",
        "gauge: age of the oldest record not yet acked (0 when empty; recovered records count from start-up)",
    ),
    (
        "flowscribe_sinks_queue_shed_records_total{reason}",
        "records not kept, by `ShedReason`",
    ),
];

/// What [`DurableQueue::shutdown`] left behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Records on disk that the next start replays.
    pub records_pending_replay: u64,
    /// Records lost (memory mode only), also counted as
    /// [`ShedReason::LostAtShutdown`].
    pub records_lost: u64,
}

/// Queue errors.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("invalid queue config: {0}")]
    InvalidConfig(String),
    #[error("queue {context}: {source}")]
    Io {
        context: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("queue is closed")]
    Closed,
    #[error("queue stopped after a failed fsync ({0}); reopen it to recover")]
    Poisoned(String),
    #[error("shutdown deadline passed before the queue was flushed")]
    DeadlineExceeded,
}

fn io_err(context: &'static str) -> impl FnOnce(io::Error) -> QueueError {
    move |source| QueueError::Io { context, source }
}

#[derive(Debug)]
struct MemRecord {
    seq: u64,
    event_id: String,
    payload: Bytes,
}

impl MemRecord {
    fn size(&self) -> u64 {
        (self.event_id.len() + self.payload.len()) as u64
    }
}

#[derive(Debug, Default)]
struct Counters {
    pushed_records: u64,
    pushed_bytes: u64,
    acked_records: u64,
    shed: [u64; 7],
    fsyncs: u64,
    read_corrupt: u64,
}

#[derive(Debug)]
struct State {
    cfg: QueueConfig,
    storage: Option<Storage>,
    done: DoneSet,
    next_seq: u64,
    /// The first seq not yet handed to the driver (or shed).
    read_next: u64,
    /// Highest seq appended to a segment file.
    written_seq: u64,
    /// Highest seq known durable (disk mode).
    synced_seq: u64,
    sync_in_progress: bool,
    /// Unread records not (only) on disk, ascending seq.
    mem: VecDeque<MemRecord>,
    mem_bytes: u64,
    queued_records: u64,
    queued_bytes: u64,
    unread_records: u64,
    /// Seqs below this existed at open; their corruption was counted then.
    recovered_end: u64,
    poisoned: Option<String>,
    closed: bool,
    c: Counters,
    recovery: RecoveryReport,
    /// `(last seq of a push, when it was accepted)`, ascending; entries
    /// whose records are all done are pruned on ack. Feeds
    /// `oldest_record_age`.
    push_times: VecDeque<(u64, Instant)>,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    /// Space freed by acks or shedding, or the queue closed.
    space: Notify,
    /// Records became visible, or the queue closed.
    data: Notify,
    /// An fsync finished (or failed).
    synced: Notify,
}

/// The durable per-sink queue. Cheap to clone; all clones share one queue.
#[derive(Debug, Clone)]
pub struct DurableQueue {
    inner: Arc<Inner>,
}

impl State {
    fn disk_mode(&self) -> bool {
        self.cfg.durability == Durability::Disk
    }

    /// The last seq a reader may see.
    fn visible_last(&self) -> u64 {
        if self.disk_mode() {
            self.synced_seq
        } else {
            self.next_seq - 1
        }
    }

    fn fits(&self, records: u64, bytes: u64) -> bool {
        self.queued_records + records <= self.cfg.max_records
            && self.queued_bytes + bytes <= self.cfg.max_bytes
    }

    fn shed(&mut self, reason: ShedReason, n: u64) {
        self.c.shed[reason.index()] += n;
    }

    /// Hand out the next unread record with seq `<= max_seq`, skipping done
    /// seqs and accounting for gaps. Advances `read_next`.
    fn pop_unread(&mut self, max_seq: u64) -> Option<QueuedRecord> {
        let seq = self.done.next_undone(self.read_next);
        if seq > max_seq {
            return None;
        }
        while self.mem.front().is_some_and(|m| m.seq < seq) {
            if let Some(m) = self.mem.pop_front() {
                self.mem_bytes -= m.size();
            }
        }
        let mem_first = self.mem.front().map(|m| m.seq);
        let from_disk = if mem_first == Some(seq) {
            None
        } else {
            // Older records than the memory holds are on disk.
            let disk_max = mem_first.map_or(max_seq, |m| m.saturating_sub(1).min(max_seq));
            self.storage
                .as_mut()
                .and_then(|s| s.read_next(seq, disk_max))
                .map(|d| QueuedRecord {
                    seq: d.seq,
                    event_id: d.event_id,
                    payload: d.payload,
                })
        };
        let rec = match from_disk {
            Some(r) => Some(r),
            None if mem_first.is_some_and(|m| m <= max_seq) => self.mem.pop_front().map(|m| {
                self.mem_bytes -= m.size();
                QueuedRecord {
                    seq: m.seq,
                    event_id: m.event_id,
                    payload: m.payload,
                }
            }),
            None => None,
        };
        // Seqs between `seq` and the record found (or everything up to
        // max_seq when nothing was found) cannot be read: corrupt frames.
        let next = rec.as_ref().map_or(max_seq + 1, |r| r.seq);
        if next > seq {
            let missing = self.done.count_undone(seq, next - 1);
            // Only seqs written by this process count here; missing seqs
            // that existed at open were counted by recovery.
            let fresh = self
                .done
                .count_undone(seq.max(self.recovered_end), next - 1);
            self.c.read_corrupt += fresh;
            self.queued_records = self.queued_records.saturating_sub(fresh);
            self.unread_records = self.unread_records.saturating_sub(fresh);
            if missing > 0 {
                tracing::warn!(sink = %self.cfg.sink, first = seq, last = next - 1, missing, "queue records unreadable");
            }
        }
        self.read_next = next + u64::from(rec.is_some());
        if rec.is_some() {
            self.unread_records = self.unread_records.saturating_sub(1);
        }
        rec
    }

    fn take_batch(&mut self, max_records: usize, max_bytes: u64) -> Option<ReadBatch> {
        let first = self.read_next;
        let visible = self.visible_last();
        let mut records = Vec::new();
        let mut bytes = 0u64;
        while records.len() < max_records.max(1) && (records.is_empty() || bytes < max_bytes) {
            match self.pop_unread(visible) {
                Some(r) => {
                    bytes += (r.event_id.len() + r.payload.len()) as u64;
                    records.push(r);
                }
                None => break,
            }
        }
        let last = self.read_next - 1;
        if records.is_empty() {
            if last >= first {
                // Only done or missing seqs were passed over: nothing to
                // deliver, so mark them done right away.
                self.mark_done(first, last);
            }
            return None;
        }
        Some(ReadBatch {
            token: BatchToken {
                first_seq: first,
                last_seq: last,
                records: records.len() as u64,
                bytes,
            },
            records,
        })
    }

    fn mark_done(&mut self, first: u64, last: u64) {
        self.done.insert(first, last);
        let watermark = self.done.watermark();
        while self
            .push_times
            .front()
            .is_some_and(|&(l, _)| l <= watermark)
        {
            self.push_times.pop_front();
        }
        let next_seq = self.next_seq;
        if let Some(s) = self.storage.as_mut() {
            // Losing a done entry only causes redelivery; log and go on.
            if let Err(e) = s.log_done(first, last) {
                tracing::warn!(sink = %self.cfg.sink, error = %e, "queue ack log append failed");
            }
            if let Err(e) = s.collect_garbage(&self.done, next_seq) {
                tracing::warn!(sink = %self.cfg.sink, error = %e, "queue segment cleanup failed");
            }
        }
    }

    /// drop-oldest: shed unread records until `records`/`bytes` fit.
    fn shed_oldest(&mut self, records: u64, bytes: u64, receipt: &mut PushReceipt) -> bool {
        let written_last = self.next_seq - 1;
        while !self.fits(records, bytes) {
            let first = self.read_next;
            let Some(r) = self.pop_unread(written_last) else {
                return false;
            };
            let size = (r.event_id.len() + r.payload.len()) as u64;
            self.mark_done(first, r.seq);
            self.queued_records -= 1;
            self.queued_bytes -= size;
            self.shed(ShedReason::DropOldest, 1);
            receipt.shed.push(ShedRecord {
                event_id: r.event_id,
                seq: Some(r.seq),
                reason: ShedReason::DropOldest,
            });
        }
        true
    }

    /// Assign seqs, write (disk mode), keep in memory. Returns the seq range.
    fn write(&mut self, records: Vec<Record>) -> Result<(u64, u64), QueueError> {
        let first = self.next_seq;
        let last = first + records.len() as u64 - 1;
        if self.disk_mode() {
            let mut buf = Vec::new();
            for (i, r) in records.iter().enumerate() {
                frame::encode_record(&mut buf, first + i as u64, &r.event_id, &r.payload);
            }
            let seg_max = self.cfg.segment_max_bytes;
            let Some(storage) = self.storage.as_mut() else {
                return Err(QueueError::InvalidConfig(
                    "disk mode without storage".into(),
                ));
            };
            if let Err(e) = storage.append(first, &buf, seg_max) {
                self.shed(ShedReason::WriteFailed, records.len() as u64);
                return Err(io_err("segment write")(e));
            }
            self.written_seq = last;
        }
        for (i, r) in records.into_iter().enumerate() {
            let size = r.size();
            self.queued_records += 1;
            self.queued_bytes += size;
            self.unread_records += 1;
            self.c.pushed_records += 1;
            self.c.pushed_bytes += size;
            self.mem_bytes += size;
            self.mem.push_back(MemRecord {
                seq: first + i as u64,
                event_id: r.event_id,
                payload: r.payload,
            });
        }
        self.next_seq = last + 1;
        self.push_times.push_back((last, Instant::now()));
        self.enforce_memory_budget();
        Ok((first, last))
    }

    /// Keep memory within budget: drop the cache (disk mode) or spill the
    /// oldest records to segment files (memory mode with a directory).
    fn enforce_memory_budget(&mut self) {
        while self.mem_bytes > self.cfg.memory_max_bytes {
            if !self.disk_mode() && !self.spill_front() {
                break;
            }
            if self.disk_mode() {
                match self.mem.pop_front() {
                    Some(m) => self.mem_bytes -= m.size(),
                    None => break,
                }
            }
        }
    }

    /// Memory mode: move the oldest in-memory record to disk (no fsync).
    fn spill_front(&mut self) -> bool {
        let seg_max = self.cfg.segment_max_bytes;
        let (Some(storage), Some(m)) = (self.storage.as_mut(), self.mem.front()) else {
            return false;
        };
        let mut buf = Vec::new();
        frame::encode_record(&mut buf, m.seq, &m.event_id, &m.payload);
        if let Err(e) = storage.append(m.seq, &buf, seg_max) {
            tracing::warn!(sink = %self.cfg.sink, error = %e, "queue spill failed; keeping records in memory");
            return false;
        }
        self.written_seq = m.seq;
        if let Some(m) = self.mem.pop_front() {
            self.mem_bytes -= m.size();
        }
        true
    }

    fn oldest_record_age(&self) -> Option<Duration> {
        if self.queued_records == 0 {
            return None;
        }
        // Acks can arrive out of order, so the oldest push entry may be
        // fully done while its neighbours are not: find the first entry
        // that still has an undone record.
        let mut first_of_entry = self.done.watermark() + 1;
        for &(last, at) in &self.push_times {
            if self.done.count_undone(first_of_entry, last) > 0 {
                return Some(at.elapsed());
            }
            first_of_entry = last + 1;
        }
        None
    }

    fn snapshot(&self) -> QueueSnapshot {
        let (segments, segment_bytes, written, deleted, unreadable) = match &self.storage {
            Some(s) => (
                s.segment_count() as u64,
                s.segment_bytes(),
                s.bytes_written_total,
                s.segments_deleted_total,
                s.unreadable_segments_total,
            ),
            None => (0, 0, 0, 0, 0),
        };
        QueueSnapshot {
            queued_records: self.queued_records,
            queued_bytes: self.queued_bytes,
            unread_records: self.unread_records,
            memory_bytes: self.mem_bytes,
            segments,
            segment_bytes,
            pushed_records_total: self.c.pushed_records,
            pushed_bytes_total: self.c.pushed_bytes,
            acked_records_total: self.c.acked_records,
            shed_records_total: self.c.shed,
            fsyncs_total: self.c.fsyncs,
            disk_bytes_written_total: written,
            read_corrupt_records_total: self.c.read_corrupt,
            segments_deleted_total: deleted,
            unreadable_segments_total: unreadable,
            poisoned: self.poisoned.is_some(),
            recovery: self.recovery.clone(),
            oldest_record_age: self.oldest_record_age(),
            last_pushed_seq: self.next_seq - 1,
            done_through_seq: self.done.watermark(),
        }
    }
}

/// How a push leaves the admission step.
enum Admission {
    Wait,
    Done(Result<PushReceipt, QueueError>),
    Written { last: u64, receipt: PushReceipt },
}

impl DurableQueue {
    /// Open a queue: validate the config, create the directory, recover its
    /// content (see [`RecoveryReport`]). Synchronous start-up work with a
    /// bounded cost; call it before the sink starts.
    pub fn open(cfg: QueueConfig) -> Result<DurableQueue, QueueError> {
        cfg.validate()?;
        let (storage, recovered) = match &cfg.dir {
            Some(dir) => {
                let (s, r) = Storage::open(dir).map_err(io_err("recovery"))?;
                (Some(s), r)
            }
            None => (None, storage::Recovered::default()),
        };
        let next_seq = recovered.max_seq.max(recovered.done.watermark()) + 1;
        if recovered.report != RecoveryReport::default() {
            let r = &recovered.report;
            tracing::info!(
                sink = %cfg.sink,
                records = r.records_recovered,
                lost_corrupt = r.records_lost_corrupt,
                torn_tail_bytes = r.torn_tail_bytes,
                corrupt_bytes = r.corrupt_bytes,
                duration_ms = r.duration.as_millis() as u64,
                "queue recovered"
            );
        }
        let mut push_times = VecDeque::new();
        if recovered.queued_records > 0 {
            push_times.push_back((next_seq - 1, Instant::now()));
        }
        let state = State {
            read_next: recovered.done.watermark() + 1,
            written_seq: next_seq - 1,
            synced_seq: next_seq - 1,
            next_seq,
            recovered_end: next_seq,
            queued_records: recovered.queued_records,
            queued_bytes: recovered.queued_bytes,
            unread_records: recovered.queued_records,
            done: recovered.done,
            recovery: recovered.report,
            storage,
            cfg,
            sync_in_progress: false,
            mem: VecDeque::new(),
            mem_bytes: 0,
            poisoned: None,
            closed: false,
            c: Counters::default(),
            push_times,
        };
        Ok(DurableQueue {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                space: Notify::new(),
                data: Notify::new(),
                synced: Notify::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug elsewhere; the state is
        // still consistent enough to count and report, so keep going.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Push records. Returns once they are accepted — in disk mode, written
    /// and fsynced — or shed (see the receipt). With [`WhenFull::Block`]
    /// this waits for space; a push larger than the whole queue is admitted
    /// when the queue is empty, so it cannot wait forever.
    pub async fn push(&self, records: Vec<Record>) -> Result<PushReceipt, QueueError> {
        let mut receipt = PushReceipt::default();
        let mut records = {
            let mut st = self.lock();
            let max_bytes = st.cfg.max_bytes;
            let (fit, too_large): (Vec<Record>, Vec<Record>) = records.into_iter().partition(|r| {
                r.size() <= max_bytes
                    && r.event_id.len() <= usize::from(u16::MAX)
                    && r.size() + 2 <= u64::from(frame::MAX_PAYLOAD_LEN)
            });
            st.shed(ShedReason::TooLarge, too_large.len() as u64);
            receipt
                .shed
                .extend(too_large.into_iter().map(|r| ShedRecord {
                    event_id: r.event_id,
                    seq: None,
                    reason: ShedReason::TooLarge,
                }));
            fit
        };
        if records.is_empty() {
            return Ok(receipt);
        }
        let (last, receipt) = loop {
            let space = self.inner.space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            match self.admit(&mut records, &mut receipt) {
                Admission::Wait => space.await,
                Admission::Done(r) => return r,
                Admission::Written { last, receipt } => break (last, receipt),
            }
        };
        if self.lock().disk_mode() {
            self.wait_durable(last).await?;
        } else {
            self.inner.data.notify_waiters();
        }
        Ok(receipt)
    }

    fn admit(&self, records: &mut Vec<Record>, receipt: &mut PushReceipt) -> Admission {
        let mut st = self.lock();
        if st.closed {
            st.shed(ShedReason::Closed, records.len() as u64);
            return Admission::Done(Err(QueueError::Closed));
        }
        if let Some(p) = &st.poisoned {
            let p = p.clone();
            st.shed(ShedReason::WriteFailed, records.len() as u64);
            return Admission::Done(Err(QueueError::Poisoned(p)));
        }
        let n = records.len() as u64;
        let bytes: u64 = records.iter().map(Record::size).sum();
        // Block admits an oversized push into an empty queue, or it would
        // wait forever; the drop policies shed instead.
        let empty_and_blocking = st.queued_records == 0 && st.cfg.when_full == WhenFull::Block;
        if !(st.fits(n, bytes) || empty_and_blocking) {
            match st.cfg.when_full {
                WhenFull::Block => return Admission::Wait,
                WhenFull::DropNewest | WhenFull::DropOldest => {
                    let reason = if st.cfg.when_full == WhenFull::DropOldest
                        && st.shed_oldest(n, bytes, receipt)
                    {
                        None
                    } else if st.cfg.when_full == WhenFull::DropOldest {
                        Some(ShedReason::FullAllInFlight)
                    } else {
                        Some(ShedReason::DropNewest)
                    };
                    if let Some(reason) = reason {
                        // Keep the prefix that fits, shed the rest.
                        let mut keep = 0;
                        let (mut r, mut b) = (0u64, 0u64);
                        for rec in records.iter() {
                            if !st.fits(r + 1, b + rec.size()) {
                                break;
                            }
                            r += 1;
                            b += rec.size();
                            keep += 1;
                        }
                        let shed = records.split_off(keep);
                        st.shed(reason, shed.len() as u64);
                        receipt.shed.extend(shed.into_iter().map(|r| ShedRecord {
                            event_id: r.event_id,
                            seq: None,
                            reason,
                        }));
                    }
                    if records.is_empty() {
                        return Admission::Done(Ok(std::mem::take(receipt)));
                    }
                }
            }
        }
        let n = records.len() as u64;
        match st.write(std::mem::take(records)) {
            Ok((first, last)) => {
                receipt.accepted = n;
                receipt.seqs = Some((first, last));
                Admission::Written {
                    last,
                    receipt: std::mem::take(receipt),
                }
            }
            Err(e) => Admission::Done(Err(e)),
        }
    }

    /// Wait until every seq `<= target` is fsynced, starting an fsync when
    /// none is running (group commit). The fsync runs on the blocking pool
    /// in its own task, so a cancelled push cannot leave it half-done.
    async fn wait_durable(&self, target: u64) -> Result<(), QueueError> {
        loop {
            let synced = self.inner.synced.notified();
            tokio::pin!(synced);
            synced.as_mut().enable();
            {
                let mut st = self.lock();
                if st.synced_seq >= target {
                    return Ok(());
                }
                if let Some(p) = &st.poisoned {
                    return Err(QueueError::Poisoned(p.clone()));
                }
                if !st.sync_in_progress {
                    st.sync_in_progress = true;
                    let sync_to = st.written_seq;
                    let work = st
                        .storage
                        .as_mut()
                        .map(Storage::take_sync_work)
                        .unwrap_or_default();
                    drop(st);
                    let inner = Arc::clone(&self.inner);
                    tokio::task::spawn_blocking(move || run_sync(&inner, &work, sync_to));
                }
            }
            synced.await;
        }
    }

    /// The next batch of up to `max_records` records / about `max_bytes`
    /// bytes (at least one record), waiting until one is available.
    /// `None` once the queue is shut down and nothing is left to read.
    pub async fn read_batch(&self, max_records: usize, max_bytes: u64) -> Option<ReadBatch> {
        loop {
            let data = self.inner.data.notified();
            tokio::pin!(data);
            data.as_mut().enable();
            {
                let mut st = self.lock();
                if let Some(b) = st.take_batch(max_records, max_bytes) {
                    return Some(b);
                }
                if st.closed {
                    return None;
                }
            }
            data.await;
        }
    }

    /// Like [`read_batch`](Self::read_batch) without waiting.
    pub fn try_read_batch(&self, max_records: usize, max_bytes: u64) -> Option<ReadBatch> {
        self.lock().take_batch(max_records, max_bytes)
    }

    /// The batch's outcome is final (delivered, or rejected and recorded):
    /// its records will not be redelivered, and their space is free.
    pub fn ack(&self, token: BatchToken) {
        let mut st = self.lock();
        st.queued_records = st.queued_records.saturating_sub(token.records);
        st.queued_bytes = st.queued_bytes.saturating_sub(token.bytes);
        st.c.acked_records += token.records;
        st.mark_done(token.first_seq, token.last_seq);
        drop(st);
        self.inner.space.notify_waiters();
    }

    /// Make everything pushed so far durable (disk mode) and persist the
    /// ack log, so a restart redelivers as little as possible.
    pub async fn flush(&self) -> Result<(), QueueError> {
        let (disk, target) = {
            let st = self.lock();
            (st.disk_mode(), st.written_seq)
        };
        if disk {
            self.wait_durable(target).await?;
        }
        self.sync_ack_log().await
    }

    async fn sync_ack_log(&self) -> Result<(), QueueError> {
        let inner = Arc::clone(&self.inner);
        let res = tokio::task::spawn_blocking(move || {
            let st = inner
                .state
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match &st.storage {
                Some(s) => s.sync_ack_log(),
                None => Ok(()),
            }
        })
        .await;
        match res {
            Ok(r) => r.map_err(io_err("ack log fsync")),
            Err(e) => Err(io_err("ack log fsync")(io::Error::other(e))),
        }
    }

    /// Stop accepting pushes (blocked and later pushes fail with
    /// [`QueueError::Closed`], counted), spill memory to disk in memory
    /// mode, and flush, all before `deadline`. Readers drain what is left
    /// and then get `None`.
    pub async fn shutdown(&self, deadline: Instant) -> Result<ShutdownReport, QueueError> {
        {
            let mut st = self.lock();
            st.closed = true;
            if !st.disk_mode() {
                while st.spill_front() {}
            }
        }
        self.inner.space.notify_waiters();
        self.inner.data.notify_waiters();
        let flushed = tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), async {
            let work = {
                let mut st = self.lock();
                if st.disk_mode() {
                    None
                } else {
                    st.storage.as_mut().map(Storage::take_sync_work)
                }
            };
            if let Some(work) = work {
                let n = tokio::task::spawn_blocking(move || work.run())
                    .await
                    .map_err(|e| io_err("spill fsync")(io::Error::other(e)))?
                    .map_err(io_err("spill fsync"))?;
                self.lock().c.fsyncs += n;
            }
            self.flush().await
        })
        .await;
        let mut st = self.lock();
        let mut report = ShutdownReport::default();
        if st.disk_mode() {
            report.records_pending_replay = st.queued_records;
        } else {
            // In memory mode what is still in memory (no directory) and
            // what the driver holds unacked is gone with the process.
            let in_memory = st.mem.len() as u64;
            let in_flight = st.queued_records - st.unread_records;
            report.records_lost = in_memory + in_flight;
            report.records_pending_replay = st.unread_records - in_memory;
            let lost = report.records_lost;
            st.shed(ShedReason::LostAtShutdown, lost);
        }
        drop(st);
        match flushed {
            Ok(Ok(())) => Ok(report),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(QueueError::DeadlineExceeded),
        }
    }

    pub fn snapshot(&self) -> QueueSnapshot {
        self.lock().snapshot()
    }
}

/// The blocking half of group commit: fsync, then publish the result.
fn run_sync(inner: &Inner, work: &SyncWork, sync_to: u64) {
    let result = work.run();
    {
        let mut st = inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        st.sync_in_progress = false;
        match result {
            Ok(n) => {
                st.c.fsyncs += n;
                st.synced_seq = st.synced_seq.max(sync_to);
            }
            Err(e) => {
                // fsyncgate: after a failed fsync the page cache may say the
                // data is there when the disk does not have it. Never ack;
                // stop until reopened and recovery reads the real state.
                tracing::error!(sink = %st.cfg.sink, error = %e, "queue fsync failed; queue stopped");
                st.poisoned = Some(e.to_string());
            }
        }
    }
    inner.synced.notify_waiters();
    inner.data.notify_waiters();
}
