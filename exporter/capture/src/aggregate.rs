//! Turns kernel flow-map snapshots into connection records (stage 1, pure).
//!
//! The kernel keeps one cumulative entry per 5-tuple, interface and hook
//! direction. This module pairs the two directions of a connection, picks the
//! initiator (SYN when seen, else the first packet), keeps only the counters
//! of the first interface that saw the connection (a routed packet is seen
//! once per interface it crosses), and cuts the cumulative counters into
//! windows on the active timeout, ending connections on the idle timeout.
//!
//! It must not do IO: the caller reads and deletes map entries and hands the
//! values in. Times are kernel boot-clock nanoseconds until [`Aggregator::emit`]
//! converts them with the caller's clock.

use std::collections::{BTreeSet, HashMap};
use std::time::SystemTime;

use flowscribe_model::{
    DirectionCounters, Drops, EndReason, Flow, FlowKey, FlowState, HookDirection, InterfaceRef,
    Orientation,
};

use crate::abi::{DIR_INGRESS, RawDropVal, RawFlowKey, RawFlowVal, addr_of};

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;

/// How many drain cycles a kernel drop may wait for its connection to appear
/// before it is counted as unmatched.
const DROP_MATCH_CYCLES: u8 = 2;

/// Timeouts that cut connections into records.
#[derive(Debug, Clone, Copy)]
pub struct AggregatorConfig {
    /// A live connection gets a record at least this often (nanoseconds).
    pub active_timeout_ns: u64,
    /// A connection without packets for this long is ended (nanoseconds).
    pub idle_timeout_ns: u64,
}

/// Identity of a connection regardless of direction and interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ConnKey {
    lo: ([u8; 16], u16),
    hi: ([u8; 16], u16),
    proto: u8,
    family: u8,
    /// For ICMP: the echo identifier (bit 16 set) or type/code; 0 otherwise.
    icmp: u32,
}

fn is_icmp(proto: u8) -> bool {
    proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6
}

fn icmp_is_echo(family: u8, type_: u8) -> bool {
    if family == crate::abi::FAMILY_V4 {
        type_ == 8 || type_ == 0
    } else {
        type_ == 128 || type_ == 129
    }
}

impl ConnKey {
    fn of(k: &RawFlowKey) -> ConnKey {
        let (a, b, icmp) = if is_icmp(k.proto) {
            let type_ = (k.sport >> 8) as u8;
            let disc = if icmp_is_echo(k.family, type_) {
                (1u32 << 16) | u32::from(k.dport)
            } else {
                u32::from(k.sport)
            };
            ((k.saddr, 0), (k.daddr, 0), disc)
        } else {
            ((k.saddr, k.sport), (k.daddr, k.dport), 0)
        };
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        ConnKey {
            lo,
            hi,
            proto: k.proto,
            family: k.family,
            icmp,
        }
    }
}

/// The cumulative counters of one kernel entry that are already accounted.
#[derive(Debug, Clone, Copy, Default)]
struct EntryProgress {
    packets: u64,
    bytes: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct DropAccum {
    packets_forward: u64,
    packets_reverse: u64,
    bytes: u64,
    last_ns: u64,
    last_reason: u32,
    last_netns_ino: u32,
}

#[derive(Debug)]
struct Conn {
    /// An initiator -> responder entry's key: the record's 5-tuple, and what
    /// tells the two directions apart.
    template: RawFlowKey,
    orientation: Orientation,
    owner_ifindex: u32,
    initiator_hook: HookDirection,
    interfaces: BTreeSet<u32>,
    entries: HashMap<RawFlowKey, EntryProgress>,
    forward: DirectionCounters,
    reverse: DirectionCounters,
    window_start_ns: u64,
    first_ns: u64,
    last_ns: u64,
    records: u64,
    reverse_seen: bool,
    drops: Option<DropAccum>,
}

impl Conn {
    fn is_forward(&self, k: &RawFlowKey) -> bool {
        same_side(k, &self.template)
    }

    fn pending(&self) -> bool {
        self.forward.packets > 0 || self.reverse.packets > 0 || self.drops.is_some()
    }

    fn flags(&self) -> u8 {
        self.forward.tcp_flags | self.reverse.tcp_flags
    }
}

/// Counters the aggregator keeps about its own work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AggregatorStats {
    /// Connections currently tracked.
    pub connections: u64,
    /// Kernel entries whose counters went backwards (recreated entry); their
    /// new counts are taken as a fresh start.
    pub counter_resets: u64,
    /// Dropped packets whose connection was never seen (cumulative).
    pub drops_unmatched_packets: u64,
}

/// The pure connection table. See the module docs.
#[derive(Debug)]
pub struct Aggregator {
    config: AggregatorConfig,
    conns: HashMap<ConnKey, Conn>,
    pending_drops: Vec<(RawFlowKey, RawDropVal, u8)>,
    stats: AggregatorStats,
}

/// Resolves the names that records carry: interfaces and drop reasons.
pub trait Names {
    fn interface(&self, ifindex: u32) -> std::sync::Arc<str>;
    fn drop_reason(&self, value: u32) -> String;
}

impl Aggregator {
    pub fn new(config: AggregatorConfig) -> Self {
        Aggregator {
            config,
            conns: HashMap::new(),
            pending_drops: Vec::new(),
            stats: AggregatorStats::default(),
        }
    }

    pub fn stats(&self) -> AggregatorStats {
        AggregatorStats {
            connections: self.conns.len() as u64,
            ..self.stats
        }
    }

    /// Take in one snapshot of the kernel flow map (cumulative values).
    pub fn ingest(&mut self, snapshot: &[(RawFlowKey, RawFlowVal)]) {
        // New connections are oriented from all their entries in this
        // snapshot at once, so group the unknown ones first.
        let mut fresh: HashMap<ConnKey, Vec<(RawFlowKey, RawFlowVal)>> = HashMap::new();
        for (k, v) in snapshot {
            let ck = ConnKey::of(k);
            if self.conns.contains_key(&ck) {
                self.update_entry(ck, k, v);
            } else {
                fresh.entry(ck).or_default().push((*k, *v));
            }
        }
        for (ck, entries) in fresh {
            let conn = new_conn(&entries);
            self.conns.insert(ck, conn);
            for (k, v) in &entries {
                self.update_entry(ck, k, v);
            }
        }
    }

    /// Take in the final value of an entry that the caller deleted.
    pub fn ingest_final(&mut self, key: &RawFlowKey, val: &RawFlowVal) {
        let ck = ConnKey::of(key);
        self.conns
            .entry(ck)
            .or_insert_with(|| new_conn(&[(*key, *val)]));
        self.update_entry(ck, key, val);
    }

    fn update_entry(&mut self, ck: ConnKey, k: &RawFlowKey, v: &RawFlowVal) {
        let Some(conn) = self.conns.get_mut(&ck) else {
            return;
        };
        conn.interfaces.insert(k.ifindex);
        let forward = conn.is_forward(k);
        let prog = conn.entries.entry(*k).or_default();
        let (dp, db) = if v.packets < prog.packets || v.bytes < prog.bytes {
            self.stats.counter_resets += 1;
            (v.packets, v.bytes)
        } else {
            (v.packets - prog.packets, v.bytes - prog.bytes)
        };
        prog.packets = v.packets;
        prog.bytes = v.bytes;
        conn.last_ns = conn.last_ns.max(v.last_ns);
        conn.first_ns = conn.first_ns.min(v.first_ns);
        if k.ifindex != conn.owner_ifindex {
            return;
        }
        let side = if forward {
            &mut conn.forward
        } else {
            conn.reverse_seen |= dp > 0;
            &mut conn.reverse
        };
        side.packets += dp;
        side.bytes += db;
        // The kernel ORs flags cumulatively; OR-ing here keeps flags seen
        // before a counter reset.
        side.tcp_flags |= v.tcp_flags as u8;
    }

    /// Take in kernel drops (the caller removed them from the drop map).
    pub fn add_drops(&mut self, drops: &[(RawFlowKey, RawDropVal)]) {
        let mut waiting = std::mem::take(&mut self.pending_drops);
        waiting.extend(drops.iter().map(|(k, v)| (*k, *v, 0u8)));
        for (k, v, age) in waiting {
            let ck = ConnKey::of(&k);
            match self.conns.get_mut(&ck) {
                Some(conn) => {
                    let forward = conn.is_forward(&k);
                    let acc = conn.drops.get_or_insert_with(DropAccum::default);
                    if forward {
                        acc.packets_forward += v.packets;
                    } else {
                        acc.packets_reverse += v.packets;
                    }
                    acc.bytes += v.bytes;
                    if v.last_ns >= acc.last_ns {
                        acc.last_ns = v.last_ns;
                        acc.last_reason = v.last_reason;
                        acc.last_netns_ino = v.netns_ino;
                    }
                }
                None if age + 1 >= DROP_MATCH_CYCLES => {
                    self.stats.drops_unmatched_packets += v.packets;
                }
                None => self.pending_drops.push((k, v, age + 1)),
            }
        }
    }

    /// Kernel keys of connections idle at `now_ns`; the caller deletes them
    /// (reading their final values) and passes those to [`Self::ingest_final`].
    pub fn idle_keys(&self, now_ns: u64) -> Vec<RawFlowKey> {
        self.conns
            .values()
            .filter(|c| now_ns.saturating_sub(c.last_ns) >= self.config.idle_timeout_ns)
            .flat_map(|c| c.entries.keys().copied())
            .collect()
    }

    /// Write the records that are due at `now_ns`: ended connections (idle,
    /// or every connection when `shutdown`) and live ones past the active
    /// timeout. Ended connections are forgotten.
    pub fn emit(
        &mut self,
        now_ns: u64,
        shutdown: bool,
        to_system: &dyn Fn(u64) -> SystemTime,
        names: &dyn Names,
    ) -> Vec<Flow> {
        let mut out = Vec::new();
        let mut ended = Vec::new();
        for (ck, conn) in self.conns.iter_mut() {
            let idle = now_ns.saturating_sub(conn.last_ns) >= self.config.idle_timeout_ns;
            // A TCP connection that closed says so, whether it is ended by
            // the idle timeout or by our shutdown.
            let end = match (idle, shutdown) {
                (true, _) => Some(tcp_end(conn).unwrap_or(EndReason::IdleTimeout)),
                (false, true) => Some(tcp_end(conn).unwrap_or(EndReason::Shutdown)),
                (false, false) => None,
            };
            let active_due =
                now_ns.saturating_sub(conn.window_start_ns) >= self.config.active_timeout_ns;
            if end.is_some() {
                ended.push(*ck);
            }
            // An ending connection always gets a final record (its state and
            // end reason matter even when the window has no new packets); a
            // live one only when its window is due and has something in it.
            let due = match end {
                Some(_) => conn.pending() || conn.records > 0,
                None => conn.pending() && active_due,
            };
            if !due {
                continue;
            }
            out.push(record(conn, now_ns, end, to_system, names));
            conn.records += 1;
            conn.window_start_ns = now_ns;
            conn.forward.packets = 0;
            conn.forward.bytes = 0;
            conn.reverse.packets = 0;
            conn.reverse.bytes = 0;
            conn.drops = None;
        }
        for ck in ended {
            self.conns.remove(&ck);
        }
        out.sort_by_key(|f| (f.first_packet, f.key));
        out
    }
}

/// RST from either side, or FIN from both sides, ends a TCP connection.
fn tcp_end(conn: &Conn) -> Option<EndReason> {
    if conn.template.proto != IPPROTO_TCP {
        None
    } else if conn.flags() & TCP_RST != 0 {
        Some(EndReason::TcpRst)
    } else if conn.forward.tcp_flags & conn.reverse.tcp_flags & TCP_FIN != 0 {
        Some(EndReason::TcpFin)
    } else {
        None
    }
}

/// Build the table entry of a connection first seen in these entries.
fn new_conn(entries: &[(RawFlowKey, RawFlowVal)]) -> Conn {
    // The first interface that saw the connection owns its counters.
    let first = entries
        .iter()
        .min_by_key(|(k, v)| (v.first_ns, k.ifindex, k.direction))
        .map(|(k, _)| *k)
        .unwrap_or_default();
    let owner = first.ifindex;
    // The entry whose first packet was a TCP SYN without ACK belongs to the
    // initiator; one that began with a SYN-ACK belongs to the responder.
    // Otherwise the first packet's sender is the initiator.
    let first_flags = |v: &RawFlowVal| (v.first_tcp_flags as u8) & (TCP_SYN | TCP_ACK);
    let syn = entries
        .iter()
        .find(|(k, v)| k.proto == IPPROTO_TCP && first_flags(v) == TCP_SYN);
    let syn_ack = entries
        .iter()
        .find(|(k, v)| k.proto == IPPROTO_TCP && first_flags(v) == TCP_SYN | TCP_ACK);
    let (template, orientation) = match (syn, syn_ack) {
        (Some((k, _)), _) => (*k, Orientation::Syn),
        (None, Some((k, _))) => (reversed(k), Orientation::Syn),
        (None, None) => (first, Orientation::FirstPacket),
    };
    // The initiator's packets at the owner interface give the hook direction;
    // if only the reply was seen there, its direction is the opposite one.
    let owner_forward = entries
        .iter()
        .find(|(k, _)| k.ifindex == owner && same_side(k, &template));
    let initiator_hook = match owner_forward {
        Some((k, _)) => hook(k.direction),
        None => opposite(hook(first.direction)),
    };
    let first_ns = entries.iter().map(|(_, v)| v.first_ns).min().unwrap_or(0);
    Conn {
        template,
        orientation,
        owner_ifindex: owner,
        initiator_hook,
        interfaces: BTreeSet::new(),
        entries: HashMap::new(),
        forward: DirectionCounters::default(),
        reverse: DirectionCounters::default(),
        window_start_ns: first_ns,
        first_ns,
        last_ns: 0,
        records: 0,
        reverse_seen: false,
        drops: None,
    }
}

/// The key of the opposite direction (same interface and hook).
fn reversed(k: &RawFlowKey) -> RawFlowKey {
    RawFlowKey {
        saddr: k.daddr,
        daddr: k.saddr,
        sport: k.dport,
        dport: k.sport,
        ..*k
    }
}

fn same_side(k: &RawFlowKey, template: &RawFlowKey) -> bool {
    if is_icmp(k.proto) {
        k.saddr == template.saddr
    } else {
        (k.saddr, k.sport) == (template.saddr, template.sport)
    }
}

fn hook(direction: u8) -> HookDirection {
    if direction == DIR_INGRESS {
        HookDirection::Ingress
    } else {
        HookDirection::Egress
    }
}

fn opposite(h: HookDirection) -> HookDirection {
    match h {
        HookDirection::Ingress => HookDirection::Egress,
        HookDirection::Egress => HookDirection::Ingress,
    }
}

fn record(
    conn: &Conn,
    now_ns: u64,
    end: Option<EndReason>,
    to_system: &dyn Fn(u64) -> SystemTime,
    names: &dyn Names,
) -> Flow {
    let t = &conn.template;
    let (src_port, dst_port) = if is_icmp(t.proto) {
        (t.sport >> 8, t.sport & 0xff)
    } else {
        (t.sport, t.dport)
    };
    let state = match end {
        Some(_) if !conn.reverse_seen => FlowState::OneSided,
        Some(_) => FlowState::Completed,
        None if conn.records == 0 => FlowState::Started,
        None => FlowState::Live,
    };
    let iface = |i: u32| InterfaceRef {
        ifindex: i,
        name: names.interface(i),
    };
    Flow {
        key: FlowKey {
            src_addr: addr_of(t.family, &t.saddr),
            dst_addr: addr_of(t.family, &t.daddr),
            src_port,
            dst_port,
            protocol: t.proto,
        },
        interface: iface(conn.owner_ifindex),
        initiator_hook: conn.initiator_hook,
        interfaces: conn.interfaces.iter().map(|i| iface(*i)).collect(),
        orientation: conn.orientation,
        window_start: to_system(conn.window_start_ns),
        window_end: to_system(now_ns),
        first_packet: to_system(conn.first_ns),
        last_packet: to_system(conn.last_ns),
        forward: conn.forward,
        reverse: conn.reverse,
        state,
        end_reason: end,
        drops: conn.drops.map(|d| Drops {
            packets_forward: d.packets_forward,
            packets_reverse: d.packets_reverse,
            bytes: d.bytes,
            last_reason: names.drop_reason(d.last_reason),
            last_netns_ino: d.last_netns_ino,
        }),
    }
}

#[cfg(test)]
mod tests;
