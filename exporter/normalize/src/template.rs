//! Whole-record templates for connections that are reported again: a
//! long-lived connection yields one record per active timeout, and
//! between two of them only its window, its counters, the observed time
//! and the event id change. The first record of such a connection is
//! rendered as usual while the writer marks where those per-window values
//! went ("holes"); the rendered bytes minus the holes are kept, and the
//! next record of the same connection is one copy per constant run with
//! the new values written in between.
//!
//! Stage ④, per encoder instance (no global state, no locks). A template
//! is only used when everything else the record is made of is equal to
//! what it was made from: the map is keyed by the flow key (compared in
//! full, never trusted to a hash alone), and the entry keeps a copy of
//! the flow, compared field by field except for the holes
//! ([`same_except_window`]; `Arc`s compare by address first, then by
//! value). The copy also keeps the shared objects alive. A connection is
//! remembered on its first record and templated on its second, so
//! connections reported once cost one map insertion; when records rarely
//! repeat a connection, [`Admission`] turns the memo off for a while.

use std::hash::{Hash, Hasher};
use std::net::IpAddr;

use flowscribe_model::{ExplainedFlow, Flow, FlowKey};

use crate::fragment_cache::{Admission, BoundedMap};

/// A hole's kind: which per-window value goes there (the schema's own
/// numbering).
pub(crate) type Hole = u8;

/// Where a writer put a hole's value: start and end (relative to the
/// record's start) and which value it was.
pub(crate) type Mark = (usize, usize, Hole);

/// A rendered record without its holes: runs of constant bytes, each
/// followed by a hole.
#[derive(Debug)]
pub(crate) struct Template {
    /// The constant bytes, back to back.
    bytes: Box<[u8]>,
    /// Per hole: the constant bytes before it, and the hole.
    holes: Box<[(u32, Hole)]>,
}

impl Template {
    /// The template of `record` (one whole record) whose holes are at
    /// `marks`, in the order written. `None` when the marks are not in
    /// order or not inside the record (they always are when recorded by
    /// the writers).
    pub(crate) fn new(record: &[u8], marks: &[Mark]) -> Option<Template> {
        let mut bytes = Vec::with_capacity(record.len());
        let mut holes = Vec::with_capacity(marks.len());
        let mut at = 0;
        for &(start, end, hole) in marks {
            let constant = record.get(at..start)?;
            if end < start || end > record.len() {
                return None;
            }
            bytes.extend_from_slice(constant);
            holes.push((u32::try_from(constant.len()).ok()?, hole));
            at = end;
        }
        bytes.extend_from_slice(record.get(at..)?);
        Some(Template {
            bytes: bytes.into_boxed_slice(),
            holes: holes.into_boxed_slice(),
        })
    }

    /// Appends the record: the constant runs, with `fill` writing each
    /// hole's value.
    #[inline]
    pub(crate) fn write(&self, out: &mut Vec<u8>, mut fill: impl FnMut(Hole, &mut Vec<u8>)) {
        // The holes are numbers, times and ids: a few hundred bytes.
        out.reserve(self.bytes.len() + 512);
        let mut rest: &[u8] = &self.bytes;
        for &(len, hole) in self.holes.iter() {
            let (constant, after) = rest.split_at(len as usize);
            out.extend_from_slice(constant);
            fill(hole, out);
            rest = after;
        }
        out.extend_from_slice(rest);
    }
}

/// Whether `a` and `b` give the same record but for the per-window values
/// a template leaves as holes: the window, the last packet, the byte and
/// packet counters (and the observed time and event id, which are not in
/// the flow). Everything else is compared: the first packet (a
/// connection's never changes), TCP flags, state, end reason and drops
/// included. The destructuring makes a new field of
/// `Flow` a compile error here until it is sorted into one of the two.
pub(crate) fn same_except_window(a: &ExplainedFlow, b: &ExplainedFlow) -> bool {
    let Flow {
        key,
        interface,
        initiator_hook,
        interfaces,
        orientation,
        window_start: _,
        window_end: _,
        first_packet,
        last_packet: _,
        forward,
        reverse,
        state,
        end_reason,
        drops,
    } = &a.flow.flow;
    let o = &b.flow.flow;
    *key == o.key
        && *first_packet == o.first_packet
        && forward.tcp_flags == o.forward.tcp_flags
        && reverse.tcp_flags == o.reverse.tcp_flags
        && *state == o.state
        && *end_reason == o.end_reason
        && *initiator_hook == o.initiator_hook
        && *orientation == o.orientation
        && *interface == o.interface
        && *interfaces == o.interfaces
        && *drops == o.drops
        && a.flow.identity_degraded == b.flow.identity_degraded
        && a.flow.source == b.flow.source
        && a.flow.destination == b.flow.destination
        && a.trace == b.trace
}

/// A flow key as a map key: compared in full, hashed as three words
/// (`FlowKey`'s derived hash feeds the addresses byte by byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ConnectionKey(FlowKey);

impl Hash for ConnectionKey {
    #[inline]
    fn hash<H: Hasher>(&self, h: &mut H) {
        fn word(a: IpAddr) -> u64 {
            match a {
                IpAddr::V4(a) => u64::from(a.to_bits()),
                IpAddr::V6(a) => {
                    let b = a.to_bits();
                    (b >> 64) as u64 ^ (b as u64).rotate_left(29) ^ 1
                }
            }
        }
        let k = &self.0;
        h.write_u64(word(k.src_addr));
        h.write_u64(word(k.dst_addr));
        h.write_u64(
            u64::from(k.src_port) << 24 | u64::from(k.dst_port) << 8 | u64::from(k.protocol),
        );
    }
}

/// What a [`ConnectionMemo`] says about a record.
pub(crate) enum Lookup<'m> {
    /// Write it from this template.
    Hit(&'m Template),
    /// The connection was seen before: render the record writing its
    /// holes' marks here (cleared), then
    /// [`ConnectionMemo::store_recorded`] it.
    Record(&'m mut Vec<Mark>),
    /// Render it as usual (first sighting, or the memo is off).
    Render,
}

#[derive(Debug)]
struct Entry {
    /// The flow and template of its last record; `None` after the first.
    /// Boxed, so that the map's buckets stay small for probing.
    made: Option<Box<(ExplainedFlow, Template)>>,
}

/// Records per admission window of a [`ConnectionMemo`].
const MEMO_WINDOW: u32 = 16_384;

/// Record templates per connection (flow key), bounded: a full map is
/// cleared when a new connection arrives.
#[derive(Debug)]
pub(crate) struct ConnectionMemo {
    map: BoundedMap<ConnectionKey, Entry>,
    admission: Admission,
    /// Lookups, and lookups that did not give a template.
    lookups: u64,
    misses: u64,
    hits: u64,
    /// Where the holes went in the record being recorded.
    marks: Vec<Mark>,
}

impl ConnectionMemo {
    /// A memo of up to `capacity` connections.
    pub(crate) fn new(capacity: usize) -> ConnectionMemo {
        ConnectionMemo {
            map: BoundedMap::new(capacity),
            // A miss costs a map insertion (or a copy of the record when a
            // connection is seen again), a hit saves most of the record:
            // the memo stays on while one record in sixteen hits. The
            // window is long because a connection only hits on its third
            // record: the first two windows of a cold start all miss. The
            // pause is longer still: insertions into a map that never hits
            // cost 8-16 % of CPU time on records of new connections
            // (cache misses; +1 % in instructions), so a useless memo runs
            // one window in nine.
            admission: Admission::with_limits(
                MEMO_WINDOW,
                u64::from(MEMO_WINDOW) * 15 / 16,
                8 * MEMO_WINDOW,
            ),
            lookups: 0,
            misses: 0,
            hits: 0,
            marks: Vec::new(),
        }
    }

    /// What to do with `flow`'s record.
    #[inline]
    pub(crate) fn lookup(&mut self, flow: &ExplainedFlow) -> Lookup<'_> {
        if !self.admission.admit((self.lookups, self.misses)) {
            return Lookup::Render;
        }
        self.lookups += 1;
        let mut seen = true;
        let entry = self
            .map
            .get_or_insert_with(ConnectionKey(flow.flow.flow.key), || {
                seen = false;
                Entry { made: None }
            });
        match entry.made.as_deref() {
            Some((made, template)) if same_except_window(made, flow) => {
                self.hits += 1;
                Lookup::Hit(template)
            }
            _ => {
                self.misses += 1;
                if seen {
                    self.marks.clear();
                    Lookup::Record(&mut self.marks)
                } else {
                    Lookup::Render
                }
            }
        }
    }

    /// Keeps `record`, rendered after [`Lookup::Record`] with its marks,
    /// as the template of `flow`'s connection.
    pub(crate) fn store_recorded(&mut self, flow: &ExplainedFlow, record: &[u8]) {
        if let Some(template) = Template::new(record, &self.marks) {
            self.store(flow, template);
        }
    }

    /// Keeps `template` as the record of `flow`'s connection.
    fn store(&mut self, flow: &ExplainedFlow, template: Template) {
        let entry = self
            .map
            .get_or_insert_with(ConnectionKey(flow.flow.flow.key), || Entry { made: None });
        entry.made = Some(Box::new((flow.clone(), template)));
    }

    /// Records written from a template.
    pub(crate) fn hits(&self) -> u64 {
        self.hits
    }

    /// Records written without the memo because it missed too often.
    pub(crate) fn bypassed(&self) -> u64 {
        self.admission.bypassed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records of connections seen once turn the memo off for eight
    /// windows; then it tries again.
    #[test]
    fn a_memo_of_new_connections_turns_itself_off() {
        let mut flow = crate::test_flows::fixtures::case("allowed");
        let mut memo = ConnectionMemo::new(4096);
        let window = MEMO_WINDOW as usize;
        let mut rendered = 0;
        for i in 0..window + 8 * window + 1 {
            flow.flow.flow.key.src_addr = std::net::IpAddr::V4((i as u32).into());
            if matches!(memo.lookup(&flow), Lookup::Render) {
                rendered += 1;
            }
        }
        assert_eq!(rendered, window + 8 * window + 1);
        assert_eq!(memo.bypassed(), 8 * MEMO_WINDOW as u64);
        assert_eq!(memo.hits(), 0);
    }

    /// The third record of a connection comes from its template, and a
    /// changed flow under the same key is rendered again.
    #[test]
    fn a_connection_is_templated_on_its_second_record() {
        let flow = crate::test_flows::fixtures::case("allowed");
        let mut memo = ConnectionMemo::new(16);
        assert!(matches!(memo.lookup(&flow), Lookup::Render));
        assert!(matches!(memo.lookup(&flow), Lookup::Record(_)));
        memo.store(&flow, Template::new(b"ab", &[(1, 1, 0)]).unwrap());
        let mut next = flow.clone();
        next.flow.flow.window_end += std::time::Duration::from_secs(10);
        next.flow.flow.forward.bytes += 1;
        assert!(matches!(memo.lookup(&next), Lookup::Hit(_)));
        next.flow.flow.forward.tcp_flags ^= 0x80;
        assert!(matches!(memo.lookup(&next), Lookup::Record(_)));
        assert_eq!(memo.hits(), 1);
    }

    #[test]
    fn a_template_writes_its_holes_in_place() {
        let t = Template::new(b"a:1,b:22,c", &[(2, 3, 7), (6, 8, 9)]).unwrap();
        let mut out = Vec::new();
        t.write(&mut out, |h, out| {
            out.extend_from_slice(format!("<{h}>").as_bytes())
        });
        assert_eq!(out, b"a:<7>,b:<9>,c");
        // Marks out of order or outside the record are refused.
        assert!(Template::new(b"abc", &[(2, 3, 0), (0, 1, 1)]).is_none());
        assert!(Template::new(b"abc", &[(2, 4, 0)]).is_none());
    }
}
