//! Whole-record templates for records that differ only in per-window and
//! per-connection values. A long-lived connection yields one record per
//! active timeout, and between two of them only its window, its counters,
//! the observed time and the event id change; a client that opens
//! connection after connection to the same server (DNS queries, HTTP
//! without keep-alive) yields records that differ in those and in the
//! source port, the first packet and the Community ID. The first record of
//! such a peer pair is rendered as usual while the writer marks where
//! those values went ("holes"); the rendered record and its marks are
//! kept, and the next record of the same peers (the same flow key but for
//! the source port) is one copy per constant run with the new values
//! written in between.
//!
//! Stage ④, per encoder instance (no global state, no locks). A template
//! is only used when everything else the record is made of is equal to
//! what it was made from. Two maps, each key compared in full (never
//! trusted to a hash alone): connections by their flow key, consulted
//! first, whose templates fit only the same connection (key and first
//! packet), and peer pairs by the flow key without the source port of
//! protocols with ports ([`PeerKey`]), whose templates fit any connection
//! between the two peers. A template fits a record when the record's flow
//! has the *shape* of the flow it was made from: everything but the key
//! and the holes, written as words, the objects shared between records
//! (pods, services, policies, names) by address (`shape`). The shape is
//! kept at the start of the template's one allocation, so deciding
//! costs one read of memory the record's writing reads next; equal
//! shapes mean the two flows are equal but for the holes
//! ([`same_except_holes`], the tests' reference), because each entry
//! also keeps the flow it was made from, which keeps the objects at
//! those addresses alive. Values that are constant for one connection
//! (the Community ID, the first packet) are copied from the kept record
//! when the record is of the same connection ([`Lookup::Hit`]'s
//! `same_connection`), and computed otherwise. A peer pair is remembered
//! on its first record and templated on its second, so peers seen once
//! cost one map insertion; when records rarely hit, [`Admission`] turns
//! a map off for a while. Both maps are bounded by the encoder's capacity
//! (a full map is cleared), so an encoder keeps at most twice that many
//! records and flows alive.

use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

#[cfg(test)]
use flowscribe_model::{DirectionCounters, Flow};
use flowscribe_model::{ExplainedFlow, FlowKey};

use crate::fragment_cache::{Admission, BoundedMap};
use crate::view::has_ports;

mod shape;

/// A hole's kind: which per-window value goes there (the schema's own
/// numbering).
pub(crate) type Hole = u8;

/// A set of [`Hole`]s, a bit each.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HoleSet(pub(crate) u64);

impl HoleSet {
    #[inline]
    pub(crate) fn contains(self, h: Hole) -> bool {
        h < 64 && self.0 & (1 << h) != 0
    }
}

/// Where a writer put a hole's value: start and end (relative to the
/// record's start) and which value it was.
pub(crate) type Mark = (usize, usize, Hole);

/// The next [`Template::id`]: ids are unique in the process, so a cache
/// keyed by them (the audit trail's form templates) never mistakes one
/// encoder's template for another's, nor a replaced template for its
/// successor.
static NEXT_TEMPLATE_ID: AtomicU64 = AtomicU64::new(1);

/// Bytes per hole in a [`Template`]'s data: start, end and hole, each a
/// `u32`.
const HOLE_BYTES: usize = 12;

/// A rendered record, where its holes are, and the shape of the flow it
/// was made from (see `shape`), in one allocation: a record written from
/// it reads one run of memory after the map's bucket.
#[derive(Debug)]
pub(crate) struct Template {
    /// Unique in the process; a template never changes after it is made.
    id: u64,
    /// The shape, the holes (per hole: its start and end in the record,
    /// and the hole, [`HOLE_BYTES`]), then the whole record as it was
    /// rendered, holes included (the values they held are what
    /// [`Template::write`] passes as `kept`).
    data: Box<[u8]>,
    shape_len: u32,
    holes: u32,
}

impl Template {
    /// The template of `record` (one whole record) whose holes are at
    /// `marks`, in the order written, but for the holes in `constant` (a
    /// bit per [`Hole`]), which stay as they are in the record, made from a
    /// flow of shape `shape`. `None` when the marks are not in order or not
    /// inside the record (they always are when recorded by the writers).
    pub(crate) fn new(
        record: &[u8],
        marks: &[Mark],
        constant: HoleSet,
        shape: &[u8],
    ) -> Option<Template> {
        let holes = marks.iter().filter(|m| !constant.contains(m.2)).count();
        let mut data = Vec::with_capacity(shape.len() + holes * HOLE_BYTES + record.len());
        data.extend_from_slice(shape);
        let mut at = 0;
        for &(start, end, hole) in marks {
            if start < at || end < start || end > record.len() {
                return None;
            }
            at = end;
            if constant.contains(hole) {
                continue;
            }
            for v in [
                u32::try_from(start).ok()?,
                u32::try_from(end).ok()?,
                u32::from(hole),
            ] {
                data.extend_from_slice(&v.to_ne_bytes());
            }
        }
        data.extend_from_slice(record);
        Some(Template {
            id: NEXT_TEMPLATE_ID.fetch_add(1, Ordering::Relaxed),
            data: data.into_boxed_slice(),
            shape_len: u32::try_from(shape.len()).ok()?,
            holes: u32::try_from(holes).ok()?,
        })
    }

    /// This template's id, unique in the process.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The shape of the flow it was made from.
    #[inline]
    fn shape(&self) -> &[u8] {
        &self.data[..self.shape_len as usize]
    }

    /// Appends the record: the constant runs, with `fill` writing each
    /// hole's value (given the value the kept record has there).
    #[inline]
    pub(crate) fn write(&self, out: &mut Vec<u8>, fill: impl FnMut(Hole, &[u8], &mut Vec<u8>)) {
        self.write_noting(out, None, fill);
    }

    /// [`Template::write`]; with `spans`, also notes there (cleared first) where each hole's value
    /// went, relative to the record's start, in the order of the holes:
    /// every record from one template has the same number of them.
    #[inline]
    pub(crate) fn write_noting(
        &self,
        out: &mut Vec<u8>,
        mut spans: Option<&mut Vec<(u32, u32)>>,
        mut fill: impl FnMut(Hole, &[u8], &mut Vec<u8>),
    ) {
        let (holes, bytes) =
            self.data[self.shape_len as usize..].split_at(self.holes as usize * HOLE_BYTES);
        // The holes are numbers, times and ids: a few hundred bytes.
        out.reserve(bytes.len() + 512);
        let record = out.len();
        if let Some(spans) = spans.as_deref_mut() {
            spans.clear();
        }
        let word = |h: &[u8], i: usize| {
            let mut w = [0; 4];
            w.copy_from_slice(&h[4 * i..4 * i + 4]);
            u32::from_ne_bytes(w) as usize
        };
        let mut at = 0;
        for h in holes.chunks_exact(HOLE_BYTES) {
            let (start, end, hole) = (word(h, 0), word(h, 1), word(h, 2) as Hole);
            // Holes often follow each other (the counters): an empty run
            // would still be a call to `memcpy`.
            if start > at {
                out.extend_from_slice(&bytes[at..start]);
            }
            let value = out.len();
            fill(hole, &bytes[start..end], out);
            if let Some(spans) = spans.as_deref_mut() {
                // A record is a few KiB; a span that does not fit is noted
                // empty, which no form template accepts.
                let from = u32::try_from(value - record).unwrap_or(u32::MAX);
                let to = u32::try_from(out.len() - record).unwrap_or(u32::MAX);
                spans.push((from, to));
            }
            at = end;
        }
        out.extend_from_slice(&bytes[at..]);
    }
}

/// Whether `a` and `b` give the same record but for the values a template
/// leaves as holes: the window, the first and last packet, the byte and
/// packet counters, the source port of protocols with ports (and the
/// observed time, the event id and the Community ID, which are not in the
/// flow). Everything else is compared: the rest of the key, TCP flags,
/// state, end reason and drops included. What equal shapes (`shape`) must
/// imply; the destructuring makes a new field of `Flow` a compile error
/// here until it is sorted into one of the two.
#[cfg(test)]
pub(crate) fn same_except_holes(a: &ExplainedFlow, b: &ExplainedFlow) -> bool {
    let Flow {
        key,
        interface,
        initiator_hook,
        interfaces,
        orientation,
        window_start: _,
        window_end: _,
        first_packet: _,
        last_packet: _,
        forward:
            DirectionCounters {
                packets: _,
                bytes: _,
                tcp_flags: forward_flags,
            },
        reverse:
            DirectionCounters {
                packets: _,
                bytes: _,
                tcp_flags: reverse_flags,
            },
        state,
        end_reason,
        drops,
    } = &a.flow.flow;
    let o = &b.flow.flow;
    PeerKey::of(key) == PeerKey::of(&o.key)
        && *forward_flags == o.forward.tcp_flags
        && *reverse_flags == o.reverse.tcp_flags
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
        hash_key(&self.0, h);
    }
}

/// A flow key without the source port of protocols with ports (ICMP keeps
/// its type and code): what the connections between two peers share.
/// Hashed as [`ConnectionKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PeerKey(FlowKey);

impl PeerKey {
    #[inline]
    fn of(key: &FlowKey) -> PeerKey {
        let mut key = *key;
        if has_ports(key.protocol) {
            key.src_port = 0;
        }
        PeerKey(key)
    }
}

impl Hash for PeerKey {
    #[inline]
    fn hash<H: Hasher>(&self, h: &mut H) {
        hash_key(&self.0, h);
    }
}

#[inline]
fn hash_key<H: Hasher>(k: &FlowKey, h: &mut H) {
    fn word(a: IpAddr) -> u64 {
        match a {
            IpAddr::V4(a) => u64::from(a.to_bits()),
            IpAddr::V6(a) => {
                let b = a.to_bits();
                (b >> 64) as u64 ^ (b as u64).rotate_left(29) ^ 1
            }
        }
    }
    h.write_u64(word(k.src_addr));
    h.write_u64(word(k.dst_addr));
    h.write_u64(u64::from(k.src_port) << 24 | u64::from(k.dst_port) << 8 | u64::from(k.protocol));
}

/// What a [`ConnectionMemo`] says about a record.
pub(crate) enum Lookup<'m> {
    /// Write it from this template; `same_connection` when the kept
    /// record is of the same connection (its per-connection values, the
    /// Community ID and the first packet, can be copied).
    Hit {
        template: &'m Template,
        same_connection: bool,
    },
    /// The peers were seen before: render the record writing its
    /// holes' marks here (cleared), then
    /// [`ConnectionMemo::store_recorded`] it.
    Record(&'m mut Vec<Mark>),
    /// Render it as usual (the peers' first record, or the memo is off).
    Render,
}

#[derive(Debug)]
struct Entry {
    /// The template of its last record; `None` after the first. Kept in
    /// the map's bucket, so that a hit reads the bucket, then the
    /// template's data.
    template: Option<Template>,
    /// The flow the template was made from: never read on a hit, it keeps
    /// the objects alive whose addresses the template's shape holds.
    /// Boxed, so that the map's buckets stay small for probing.
    _pin: Option<Box<ExplainedFlow>>,
    /// Of the flow the template was made from: a record with the same
    /// first packet and source port (under the same key or peers) is of
    /// its connection (a key reused by a later connection has another
    /// first packet).
    first_packet: SystemTime,
    source_port: u16,
    /// Records since the template last fitted (peer pairs only).
    misfits: u8,
}

impl Entry {
    fn empty() -> Entry {
        Entry {
            template: None,
            _pin: None,
            first_packet: SystemTime::UNIX_EPOCH,
            source_port: 0,
            misfits: 0,
        }
    }
}

/// Records of other connections between two peers that a peers'
/// template does not fit before it is replaced: connections that differ
/// in more than the holes do not replace each other's template on every
/// record (each replacement copies the record and its flow).
const PEER_MISFITS: u8 = 4;

/// Records per admission window of a [`ConnectionMemo`]'s connections.
const MEMO_WINDOW: u32 = 16_384;

/// Records per admission window of a [`ConnectionMemo`]'s peer pairs.
const PEER_WINDOW: u32 = 2_048;

/// What one map of a [`ConnectionMemo`] says about a record.
enum Found<'m> {
    /// A template that fits: of the same connection, or not.
    Template(&'m Template, bool),
    /// The key was seen before: record this one.
    Seen,
    /// A new key, or the map is off.
    New,
}

/// Templates by one kind of key, bounded (a full map is cleared when a
/// new key arrives), with its own admission.
#[derive(Debug)]
struct Templates<K> {
    map: BoundedMap<K, Entry>,
    admission: Admission,
    /// Lookups, and lookups that did not give a template.
    lookups: u64,
    misses: u64,
}

impl<K: Hash + Eq + Copy> Templates<K> {
    fn new(capacity: usize, admission: Admission) -> Templates<K> {
        Templates {
            map: BoundedMap::new(capacity),
            admission,
            lookups: 0,
            misses: 0,
        }
    }

    /// What this map says about `flow`'s record (`shape` is its shape);
    /// with `exact`, a template fits only a record of its own connection.
    #[inline]
    fn find(
        &mut self,
        key: K,
        flow: &ExplainedFlow,
        shape: &mut LazyShape,
        exact: bool,
    ) -> Found<'_> {
        if !self.admission.admit((self.lookups, self.misses)) {
            return Found::New;
        }
        self.lookups += 1;
        let mut seen = true;
        let entry = self.map.get_or_insert_with(key, || {
            seen = false;
            Entry::empty()
        });
        if let Some(template) = entry.template.as_ref() {
            if shape.of(flow) == template.shape() {
                // The key (or the peers) are the map's.
                let f = &flow.flow.flow;
                let same =
                    entry.source_port == f.key.src_port && entry.first_packet == f.first_packet;
                if same || !exact {
                    entry.misfits = 0;
                    return Found::Template(template, same);
                }
            } else if !exact {
                // Replaced only when it keeps missing.
                entry.misfits = entry.misfits.saturating_add(1);
                if entry.misfits < PEER_MISFITS {
                    self.misses += 1;
                    return Found::New;
                }
            }
        }
        self.misses += 1;
        if seen { Found::Seen } else { Found::New }
    }

    fn store(&mut self, key: K, flow: &ExplainedFlow, template: Template) {
        let entry = self.map.get_or_insert_with(key, Entry::empty);
        let f = &flow.flow.flow;
        *entry = Entry {
            template: Some(template),
            _pin: Some(Box::new(flow.clone())),
            first_packet: f.first_packet,
            source_port: f.key.src_port,
            misfits: 0,
        };
    }
}

/// A flow's shape, written when first needed (a lookup that finds no
/// template does not need it).
#[derive(Debug, Default)]
struct LazyShape {
    words: shape::ShapeWords,
    written: bool,
}

impl LazyShape {
    /// `flow`'s shape, written on the first call after [`LazyShape::forget`].
    #[inline]
    fn of(&mut self, flow: &ExplainedFlow) -> &[u8] {
        if !self.written {
            shape::shape(flow, &mut self.words);
            self.written = true;
        }
        self.words.bytes()
    }

    /// For the next flow.
    #[inline]
    fn forget(&mut self) {
        self.written = false;
    }
}

/// Which map the record being recorded goes to.
#[derive(Debug, Clone, Copy)]
enum Recording {
    Connection,
    Peers,
}

/// Record templates per connection (the flow key) and per peer pair
/// ([`PeerKey`]). A record is written from its connection's template when
/// there is one; a connection's first record from its peers' template
/// (another connection's), when there is one. Two maps, so that the
/// connections between two peers that differ in more than the holes (a
/// long-lived one beside short ones, with other flags and state) do not
/// take each other's template, and so that a connection's own template
/// keeps its per-connection values as constant bytes.
#[derive(Debug)]
pub(crate) struct ConnectionMemo {
    connections: Templates<ConnectionKey>,
    peers: Templates<PeerKey>,
    /// The holes whose values are the connection's (source port,
    /// Community ID, first packet): constant in a connection's template.
    per_connection: HoleSet,
    hits: u64,
    /// Hits on the template of another connection between the same peers.
    peer_hits: u64,
    /// Hits on a peers' template made from the same connection (its
    /// connection's template was not there: the map was cleared or off).
    peer_own_hits: u64,
    /// Where the holes went in the record being recorded, and for which
    /// map.
    marks: Vec<Mark>,
    recording: Option<Recording>,
    /// The shape of the flow being looked up or stored.
    shape: LazyShape,
}

impl ConnectionMemo {
    /// A memo of up to `capacity` connections and as many peer pairs, for
    /// a schema whose holes `per_connection` hold a connection's own
    /// values.
    pub(crate) fn new(capacity: usize, per_connection: HoleSet) -> ConnectionMemo {
        ConnectionMemo {
            // A miss costs a map insertion (or a copy of the record when a
            // connection is seen again), a hit saves most of the record:
            // the map stays on while one record in sixteen hits. The
            // window is long because a connection only hits on its third
            // record: the first two windows of a cold start all miss. The
            // pause is longer still: insertions into a map that never hits
            // cost 8-16 % of CPU time on records of new connections
            // (cache misses; +1 % in instructions), so a useless map runs
            // one window in nine.
            connections: Templates::new(
                capacity,
                Admission::with_limits(
                    MEMO_WINDOW,
                    u64::from(MEMO_WINDOW) * 15 / 16,
                    8 * MEMO_WINDOW,
                ),
            ),
            // Peer pairs whose connections differ in more than the holes
            // (pods behind one address, connections in different states)
            // replace each other's template on every record, and each
            // replacement copies the record and its flow: the map stays on
            // while one record in four hits, and a useless one runs one
            // short window in 33 (measured with `encode_profile
            // ecs-cached-newconns`, whose pods change under fixed
            // addresses: one record in thirteen hits and each miss
            // re-records; on for one window in nine it cost +15 % of CPU
            // time, in seventeen +2.2 % of instructions).
            peers: Templates::new(
                capacity,
                Admission::with_limits(
                    PEER_WINDOW,
                    u64::from(PEER_WINDOW) * 3 / 4,
                    32 * PEER_WINDOW,
                ),
            ),
            per_connection,
            hits: 0,
            peer_hits: 0,
            peer_own_hits: 0,
            marks: Vec::new(),
            recording: None,
            shape: LazyShape::default(),
        }
    }

    /// What to do with `flow`'s record.
    #[inline]
    pub(crate) fn lookup(&mut self, flow: &ExplainedFlow) -> Lookup<'_> {
        let key = &flow.flow.flow.key;
        self.recording = None;
        self.shape.forget();
        match self
            .connections
            .find(ConnectionKey(*key), flow, &mut self.shape, true)
        {
            Found::Template(template, _) => {
                self.hits += 1;
                Lookup::Hit {
                    template,
                    same_connection: true,
                }
            }
            Found::Seen => {
                self.marks.clear();
                self.recording = Some(Recording::Connection);
                Lookup::Record(&mut self.marks)
            }
            Found::New => match self
                .peers
                .find(PeerKey::of(key), flow, &mut self.shape, false)
            {
                Found::Template(template, same_connection) => {
                    self.hits += 1;
                    self.peer_hits += u64::from(!same_connection);
                    self.peer_own_hits += u64::from(same_connection);
                    Lookup::Hit {
                        template,
                        same_connection,
                    }
                }
                Found::Seen => {
                    self.marks.clear();
                    self.recording = Some(Recording::Peers);
                    Lookup::Record(&mut self.marks)
                }
                Found::New => Lookup::Render,
            },
        }
    }

    /// Keeps `record`, rendered after [`Lookup::Record`] with its marks,
    /// as the template of `flow`'s connection or peers (`flow` is the flow
    /// of that lookup, the last one).
    pub(crate) fn store_recorded(&mut self, flow: &ExplainedFlow, record: &[u8]) {
        let key = &flow.flow.flow.key;
        // The shape is the lookup's (which set `recording` for this flow):
        // written there if it met a template, else on first use below.
        match self.recording.take() {
            Some(Recording::Peers) => {
                let shape = self.shape.of(flow);
                if let Some(t) = Template::new(record, &self.marks, HoleSet::default(), shape) {
                    self.peers.store(PeerKey::of(key), flow, t);
                }
            }
            Some(Recording::Connection) => {
                let shape = self.shape.of(flow);
                if let Some(t) = Template::new(record, &self.marks, self.per_connection, shape) {
                    self.connections.store(ConnectionKey(*key), flow, t);
                }
            }
            // Not recording: the marks are another record's.
            None => {}
        }
    }

    /// Keeps `record`, with holes at `marks`, as the template of `flow`'s
    /// connection, or of its peers (tests of the lookups).
    #[cfg(test)]
    fn store(&mut self, flow: &ExplainedFlow, record: &[u8], marks: &[Mark], peers: bool) {
        let key = &flow.flow.flow.key;
        self.shape.forget();
        let shape = self.shape.of(flow);
        let template = Template::new(record, marks, HoleSet::default(), shape).unwrap();
        if peers {
            self.peers.store(PeerKey::of(key), flow, template);
        } else {
            self.connections.store(ConnectionKey(*key), flow, template);
        }
    }

    /// Records written from a template.
    pub(crate) fn hits(&self) -> u64 {
        self.hits
    }

    /// Records written from the template of another connection between
    /// the same peers (part of [`ConnectionMemo::hits`]).
    pub(crate) fn peer_hits(&self) -> u64 {
        self.peer_hits
    }

    /// Records written from a peers' template that was made from their
    /// own connection (part of [`ConnectionMemo::hits`]).
    #[cfg(test)]
    pub(crate) fn peer_own_hits(&self) -> u64 {
        self.peer_own_hits
    }

    /// Records written without the connection map because it missed too
    /// often (the peers' map pauses on its own and is not counted here).
    pub(crate) fn bypassed(&self) -> u64 {
        self.connections.admission.bypassed()
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
        let mut memo = ConnectionMemo::new(4096, HoleSet::default());
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
        let mut memo = ConnectionMemo::new(16, HoleSet::default());
        assert!(matches!(memo.lookup(&flow), Lookup::Render));
        assert!(matches!(memo.lookup(&flow), Lookup::Record(_)));
        memo.store(&flow, b"ab", &[(1, 1, 0)], false);
        let mut next = flow.clone();
        next.flow.flow.window_end += std::time::Duration::from_secs(10);
        next.flow.flow.forward.bytes += 1;
        assert!(matches!(
            memo.lookup(&next),
            Lookup::Hit {
                same_connection: true,
                ..
            }
        ));
        next.flow.flow.forward.tcp_flags ^= 0x80;
        assert!(matches!(memo.lookup(&next), Lookup::Record(_)));
        assert_eq!(memo.hits(), 1);
    }

    /// A new connection between peers seen before (another source port,
    /// another first packet) is written from the template of the peers'
    /// earlier connection, but not with its per-connection values; another
    /// destination port, or for ICMP another type, is other peers.
    #[test]
    fn connections_between_the_same_peers_share_a_template() {
        let flow = crate::test_flows::fixtures::case("allowed");
        assert!(has_ports(flow.flow.flow.key.protocol));
        let port = |p: u16| {
            let mut f = flow.clone();
            f.flow.flow.key.src_port = p;
            f
        };
        let mut memo = ConnectionMemo::new(16, HoleSet::default());
        assert!(matches!(memo.lookup(&port(1)), Lookup::Render));
        assert!(matches!(memo.lookup(&port(2)), Lookup::Record(_)));
        memo.store_recorded(&port(2), b"ab");
        assert!(matches!(
            memo.lookup(&port(3)),
            Lookup::Hit {
                same_connection: false,
                ..
            }
        ));
        let mut later = port(4);
        later.flow.flow.first_packet += std::time::Duration::from_secs(1);
        assert!(matches!(
            memo.lookup(&later),
            Lookup::Hit {
                same_connection: false,
                ..
            }
        ));
        let mut elsewhere = port(5);
        elsewhere.flow.flow.key.dst_port ^= 1;
        assert!(matches!(memo.lookup(&elsewhere), Lookup::Render));
        // A connection seen before is recorded for its own template.
        assert!(matches!(memo.lookup(&port(1)), Lookup::Record(_)));
        assert_eq!((memo.hits(), memo.peer_hits()), (2, 2));
        // Connections the peers' template does not fit are rendered; the
        // template is replaced on the fourth in a row, and a fit resets
        // the count.
        let other_flags = |p: u16| {
            let mut f = port(p);
            f.flow.flow.forward.tcp_flags ^= 0x80;
            f
        };
        for p in 10..13 {
            assert!(matches!(memo.lookup(&other_flags(p)), Lookup::Render));
        }
        assert!(matches!(memo.lookup(&port(13)), Lookup::Hit { .. }));
        for p in 14..17 {
            assert!(matches!(memo.lookup(&other_flags(p)), Lookup::Render));
        }
        assert!(matches!(memo.lookup(&other_flags(17)), Lookup::Record(_)));
        memo.store_recorded(&other_flags(17), b"ab");
        assert!(matches!(memo.lookup(&other_flags(18)), Lookup::Hit { .. }));

        let icmp = crate::test_flows::fixtures::case("icmp");
        assert!(!has_ports(icmp.flow.flow.key.protocol));
        assert!(matches!(memo.lookup(&icmp), Lookup::Render));
        assert!(matches!(memo.lookup(&icmp), Lookup::Record(_)));
        memo.store_recorded(&icmp, b"ab");
        let mut other_type = icmp.clone();
        other_type.flow.flow.key.src_port ^= 1;
        assert!(matches!(memo.lookup(&other_type), Lookup::Render));
        assert!(matches!(memo.lookup(&icmp), Lookup::Hit { .. }));
    }

    #[test]
    fn a_template_writes_its_holes_in_place() {
        // A shape before the record's bytes: only the record is written.
        let t = Template::new(
            b"a:1,b:22,c",
            &[(2, 3, 7), (6, 8, 9)],
            HoleSet::default(),
            b"SHAPE---",
        )
        .unwrap();
        assert_eq!(t.shape(), b"SHAPE---");
        let mut out = b"xyz".to_vec();
        let mut spans = vec![(9, 9)];
        t.write_noting(&mut out, Some(&mut spans), |h, kept, out| {
            out.extend_from_slice(format!("<{h}:").as_bytes());
            out.extend_from_slice(kept);
            out.push(b'>');
        });
        assert_eq!(out, b"xyza:<7:1>,b:<9:22>,c");
        // The spans are relative to the record's start, in hole order.
        assert_eq!(spans, [(2, 7), (10, 16)]);
        assert_eq!(&out[3 + 2..3 + 7], b"<7:1>");
        // Holes kept constant stay as they were; adjacent holes and holes
        // at the ends leave no gap.
        let t = Template::new(
            b"a:1,b:22,c",
            &[(2, 3, 7), (6, 8, 9)],
            HoleSet(1 << 9),
            b"s",
        )
        .unwrap();
        out.clear();
        t.write_noting(&mut out, Some(&mut spans), |h, _, out| {
            out.extend_from_slice(format!("<{h}>").as_bytes())
        });
        assert_eq!(out, b"a:<7>,b:22,c");
        assert_eq!(spans, [(2, 5)]);
        let ends =
            Template::new(b"1234", &[(0, 1, 1), (1, 2, 2), (3, 4, 3)], HoleSet(0), b"").unwrap();
        out.clear();
        ends.write(&mut out, |h, kept, out| {
            out.push(b'<');
            out.push(b'0' + h);
            out.extend_from_slice(kept);
            out.push(b'>');
        });
        assert_eq!(out, b"<11><22>3<34>");
        // Each template has its own id.
        let other = Template::new(b"a:1,b:22,c", &[(2, 3, 7)], HoleSet(1 << 9), b"").unwrap();
        assert_ne!(t.id(), other.id());
        // Marks out of order or outside the record are refused.
        let none = HoleSet::default();
        assert!(Template::new(b"abc", &[(2, 3, 0), (0, 1, 1)], none, b"").is_none());
        assert!(Template::new(b"abc", &[(2, 4, 0)], none, b"").is_none());
    }
}
