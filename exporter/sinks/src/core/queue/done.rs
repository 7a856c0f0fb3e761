//! The set of sequence numbers that no longer need delivery (acked by the
//! sink driver, or shed by the full policy and counted), kept as a
//! watermark plus the out-of-order ranges above it.
//!
//! The watermark decides which segments can be deleted and where replay
//! starts after a restart; ranges above it keep records that were acked out
//! of order from being redelivered. Pure data structure, no IO.

use std::collections::BTreeMap;

/// Sequence numbers start at 1; a watermark of 0 means "nothing done".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DoneSet {
    watermark: u64,
    /// start -> end (inclusive), disjoint, non-adjacent, all > watermark + 1.
    ranges: BTreeMap<u64, u64>,
}

impl DoneSet {
    /// Every seq `<= watermark()` is done.
    pub fn watermark(&self) -> u64 {
        self.watermark
    }

    /// Ranges above the watermark, ascending.
    pub fn ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.ranges.iter().map(|(s, e)| (*s, *e))
    }

    pub fn contains(&self, seq: u64) -> bool {
        seq <= self.watermark
            || self
                .ranges
                .range(..=seq)
                .next_back()
                .is_some_and(|(_, e)| seq <= *e)
    }

    /// Mark `first..=last` done (ignored when `first > last`).
    pub fn insert(&mut self, first: u64, last: u64) {
        if first > last || last <= self.watermark {
            return;
        }
        let mut start = first.max(self.watermark + 1);
        let mut end = last;
        // Merge with an overlapping or adjacent range on the left.
        if let Some((&s, &e)) = self.ranges.range(..=start).next_back()
            && e.saturating_add(1) >= start
        {
            start = s;
            end = end.max(e);
            self.ranges.remove(&s);
        }
        // Swallow ranges that start inside or right after the new one.
        while let Some((&s, &e)) = self.ranges.range(start..).next() {
            if s > end.saturating_add(1) {
                break;
            }
            end = end.max(e);
            self.ranges.remove(&s);
        }
        if start == self.watermark + 1 {
            self.watermark = end;
        } else {
            self.ranges.insert(start, end);
        }
        // Advancing the watermark may make the next range adjacent.
        while let Some((&s, &e)) = self.ranges.iter().next() {
            if s != self.watermark + 1 {
                break;
            }
            self.watermark = e;
            self.ranges.remove(&s);
        }
    }

    /// The smallest seq `>= seq` that is not done.
    pub fn next_undone(&self, seq: u64) -> u64 {
        let mut s = seq.max(self.watermark + 1);
        if let Some((_, &e)) = self.ranges.range(..=s).next_back()
            && s <= e
        {
            s = e + 1;
        }
        s
    }

    /// How many seqs in `first..=last` are not done.
    pub fn count_undone(&self, first: u64, last: u64) -> u64 {
        if first > last {
            return 0;
        }
        let first = first.max(self.watermark + 1);
        if first > last {
            return 0;
        }
        let mut undone = last - first + 1;
        for (&s, &e) in self.ranges.range(..=last) {
            let lo = s.max(first);
            let hi = e.min(last);
            if lo <= hi {
                undone -= hi - lo + 1;
            }
        }
        undone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_inserts_advance_the_watermark() {
        let mut d = DoneSet::default();
        d.insert(1, 10);
        d.insert(11, 11);
        assert_eq!(d.watermark(), 11);
        assert_eq!(d.ranges().count(), 0);
    }

    #[test]
    fn out_of_order_ranges_merge_and_then_join_the_watermark() {
        let mut d = DoneSet::default();
        d.insert(20, 29);
        d.insert(5, 9);
        d.insert(10, 12);
        assert_eq!(d.watermark(), 0);
        assert_eq!(d.ranges().collect::<Vec<_>>(), [(5, 12), (20, 29)]);
        assert!(d.contains(12) && !d.contains(13) && d.contains(20));
        assert_eq!(d.next_undone(5), 13);
        assert_eq!(d.next_undone(1), 1);
        assert_eq!(d.count_undone(1, 30), 4 + 7 + 1);
        d.insert(13, 19);
        assert_eq!(d.ranges().collect::<Vec<_>>(), [(5, 29)]);
        d.insert(1, 4);
        assert_eq!(d.watermark(), 29);
        assert_eq!(d.ranges().count(), 0);
        assert_eq!(d.count_undone(1, 30), 1);
        assert_eq!(d.next_undone(3), 30);
    }

    #[test]
    fn overlapping_and_stale_inserts_are_harmless() {
        let mut d = DoneSet::default();
        d.insert(1, 5);
        d.insert(3, 4);
        d.insert(2, 8);
        d.insert(9, 3);
        assert_eq!(d.watermark(), 8);
        d.insert(12, 14);
        d.insert(11, 20);
        d.insert(15, 16);
        assert_eq!(d.ranges().collect::<Vec<_>>(), [(11, 20)]);
    }
}
