//! A pure batcher for stage ⑤ (deliver): groups encoded records into
//! request-sized batches by record count, byte size and age.
//!
//! A sink driver pushes records read from its queue and sends every batch
//! the batcher hands back; it asks [`Batcher::deadline`] when to call
//! [`Batcher::poll`] so a lone record leaves within `max_age` even when
//! nothing else arrives (Vector #22946 class: a record stuck until the next
//! one).
//!
//! The batcher never reads a clock (time is passed in), never drops a
//! record (a record larger than `max_bytes` leaves alone in its own batch,
//! flagged [`FlushReason::Oversized`], and the sink's 413 handling decides),
//! and does no IO.

use std::time::{Duration, Instant};

/// When a batch is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// At most this many records per batch (0 is treated as 1).
    pub max_records: usize,
    /// At most this many bytes per batch, unless one record alone is larger.
    pub max_bytes: usize,
    /// A batch leaves at most this long after its first record arrived.
    pub max_age: Duration,
}

/// Why a batch was closed; useful in metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushReason {
    MaxRecords,
    MaxBytes,
    MaxAge,
    /// One record larger than `max_bytes`, sent alone.
    Oversized,
    /// The caller asked ([`Batcher::flush`]), e.g. at shutdown.
    Flush,
}

/// A closed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch<T> {
    pub items: Vec<T>,
    /// Sum of the sizes given with the items.
    pub bytes: usize,
    pub reason: FlushReason,
}

/// Accumulates items until a limit is reached.
#[derive(Debug)]
pub struct Batcher<T> {
    limits: BatchLimits,
    items: Vec<T>,
    bytes: usize,
    opened_at: Option<Instant>,
}

impl<T> Batcher<T> {
    pub fn new(limits: BatchLimits) -> Self {
        Batcher {
            limits: BatchLimits {
                max_records: limits.max_records.max(1),
                ..limits
            },
            items: Vec::new(),
            bytes: 0,
            opened_at: None,
        }
    }

    /// Records waiting in the open batch.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// When the open batch reaches `max_age`; `None` when empty.
    pub fn deadline(&self) -> Option<Instant> {
        self.opened_at.map(|t| t + self.limits.max_age)
    }

    /// Add one item of `size` bytes at time `now`. Returns the batches that
    /// closed because of it, oldest first (at most two: the open batch the
    /// item did not fit into, and an oversized item alone). An empty `Vec`
    /// does not allocate.
    pub fn push(&mut self, item: T, size: usize, now: Instant) -> Vec<Batch<T>> {
        let mut out = Vec::new();
        // An open batch past its age leaves first, so the new item does not
        // inherit a deadline that already passed.
        if let Some(b) = self.poll(now) {
            out.push(b);
        }
        if size > self.limits.max_bytes {
            if let Some(b) = self.take(FlushReason::MaxBytes) {
                out.push(b);
            }
            out.push(Batch {
                items: vec![item],
                bytes: size,
                reason: FlushReason::Oversized,
            });
            return out;
        }
        if !self.items.is_empty()
            && self.bytes + size > self.limits.max_bytes
            && let Some(b) = self.take(FlushReason::MaxBytes)
        {
            out.push(b);
        }
        if self.items.is_empty() {
            self.opened_at = Some(now);
        }
        self.items.push(item);
        self.bytes += size;
        if self.items.len() >= self.limits.max_records {
            out.extend(self.take(FlushReason::MaxRecords));
        } else if self.bytes >= self.limits.max_bytes {
            out.extend(self.take(FlushReason::MaxBytes));
        }
        out
    }

    /// Close the open batch if it reached `max_age` at `now`.
    pub fn poll(&mut self, now: Instant) -> Option<Batch<T>> {
        match self.deadline() {
            Some(d) if now >= d => self.take(FlushReason::MaxAge),
            _ => None,
        }
    }

    /// Close the open batch regardless of limits.
    pub fn flush(&mut self) -> Option<Batch<T>> {
        self.take(FlushReason::Flush)
    }

    fn take(&mut self, reason: FlushReason) -> Option<Batch<T>> {
        if self.items.is_empty() {
            return None;
        }
        self.opened_at = None;
        let bytes = std::mem::take(&mut self.bytes);
        Some(Batch {
            items: std::mem::take(&mut self.items),
            bytes,
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One step of a batcher script: push `(item, size)` at `t_ms`, or poll
    /// / flush, and the batches expected as `(items, reason)`.
    enum Step {
        Push(u32, usize, u64),
        Poll(u64),
        FlushNow,
    }
    use FlushReason::*;
    use Step::*;

    /// Batches a step must produce: `(items, reason)`, oldest first.
    type Expected<'a> = &'a [(&'a [u32], FlushReason)];

    fn run(limits: BatchLimits, steps: &[(Step, Expected<'_>)]) {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut b = Batcher::new(limits);
        for (i, (step, want)) in steps.iter().enumerate() {
            let got: Vec<Batch<u32>> = match *step {
                Push(item, size, t) => b.push(item, size, at(t)),
                Poll(t) => b.poll(at(t)).into_iter().collect(),
                FlushNow => b.flush().into_iter().collect(),
            };
            let got: Vec<(Vec<u32>, FlushReason)> =
                got.into_iter().map(|b| (b.items, b.reason)).collect();
            let want: Vec<(Vec<u32>, FlushReason)> =
                want.iter().map(|(i, r)| (i.to_vec(), *r)).collect();
            assert_eq!(got, want, "step {i}");
        }
    }

    const L: BatchLimits = BatchLimits {
        max_records: 3,
        max_bytes: 100,
        max_age: Duration::from_millis(1_000),
    };

    #[test]
    fn closes_at_max_records() {
        run(
            L,
            &[
                (Push(1, 10, 0), &[]),
                (Push(2, 10, 1), &[]),
                (Push(3, 10, 2), &[(&[1, 2, 3], MaxRecords)]),
                (Push(4, 10, 3), &[]),
                (FlushNow, &[(&[4], Flush)]),
                (FlushNow, &[]),
            ],
        );
    }

    #[test]
    fn closes_when_the_next_record_would_not_fit() {
        run(
            L,
            &[
                (Push(1, 60, 0), &[]),
                (Push(2, 60, 1), &[(&[1], MaxBytes)]),
                (Push(3, 40, 2), &[(&[2, 3], MaxBytes)]),
            ],
        );
    }

    #[test]
    fn oversized_record_leaves_alone_after_the_open_batch() {
        run(
            L,
            &[
                (Push(1, 10, 0), &[]),
                (Push(2, 500, 1), &[(&[1], MaxBytes), (&[2], Oversized)]),
                (Push(3, 500, 2), &[(&[3], Oversized)]),
                (FlushNow, &[]),
            ],
        );
    }

    #[test]
    fn closes_at_max_age_measured_from_the_first_record() {
        run(
            L,
            &[
                (Poll(0), &[]),
                (Push(1, 10, 100), &[]),
                (Push(2, 10, 900), &[]),
                (Poll(1_099), &[]),
                (Poll(1_100), &[(&[1, 2], MaxAge)]),
                (Poll(5_000), &[]),
                // A push after the deadline first closes the stale batch.
                (Push(3, 10, 6_000), &[]),
                (Push(4, 10, 7_500), &[(&[3], MaxAge)]),
                (FlushNow, &[(&[4], Flush)]),
            ],
        );
    }

    #[test]
    fn deadline_follows_the_open_batch() {
        let t0 = Instant::now();
        let mut b = Batcher::new(L);
        assert_eq!(b.deadline(), None);
        b.push(1u32, 1, t0 + Duration::from_millis(5));
        assert_eq!(b.deadline(), Some(t0 + Duration::from_millis(1_005)));
        assert_eq!(b.len(), 1);
        b.flush();
        assert_eq!(b.deadline(), None);
        assert!(b.is_empty());
    }

    #[test]
    fn zero_max_records_means_one() {
        run(
            BatchLimits {
                max_records: 0,
                ..L
            },
            &[(Push(1, 1, 0), &[(&[1], MaxRecords)])],
        );
    }
}
