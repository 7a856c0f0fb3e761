//! The canonical flow record as capture produces it: one connection, one
//! aggregation window, one node.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

/// The 5-tuple of a connection, oriented initiator -> responder.
///
/// For ICMP and ICMPv6, `src_port` holds the initiator's message type and
/// `dst_port` its code, as Community ID v1 does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub src_addr: IpAddr,
    pub dst_addr: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    /// IANA protocol number (6 TCP, 17 UDP, 132 SCTP, 1 ICMP, 58 ICMPv6 ...).
    pub protocol: u8,
}

/// The name of an IANA protocol number as the outputs spell it.
pub fn protocol_name(protocol: u8) -> &'static str {
    match protocol {
        1 => "icmp",
        6 => "tcp",
        17 => "udp",
        58 => "ipv6-icmp",
        132 => "sctp",
        136 => "udplite",
        _ => "other",
    }
}

/// An interface of the node, by kernel index and the name it had when seen.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InterfaceRef {
    pub ifindex: u32,
    /// Shared with capture's interface table: every flow of an interface
    /// holds the one copy (a reference count, not an allocation per flow),
    /// so the records of one interface can be told equal by its address
    /// (the encoders' templates, `normalize`'s `template/shape.rs`).
    pub name: Arc<str>,
}

/// The hook that saw a packet, relative to the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookDirection {
    Ingress,
    Egress,
}

impl HookDirection {
    /// The name the outputs use.
    pub fn as_str(self) -> &'static str {
        match self {
            HookDirection::Ingress => "ingress",
            HookDirection::Egress => "egress",
        }
    }
}

/// How the initiator of a connection was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orientation {
    /// A TCP SYN without ACK was seen from the initiator.
    Syn,
    /// No SYN was seen: the sender of the first packet is the initiator.
    FirstPacket,
}

impl Orientation {
    /// The name the outputs use.
    pub fn as_str(self) -> &'static str {
        match self {
            Orientation::Syn => "syn",
            Orientation::FirstPacket => "first-packet",
        }
    }
}

/// Counters of one direction of a connection within one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectionCounters {
    /// Wire packets (a GSO/GRO super-packet counts as its segments).
    pub packets: u64,
    /// IP bytes, headers included, as on the wire.
    pub bytes: u64,
    /// OR of the TCP flags seen in this direction since the connection began.
    pub tcp_flags: u8,
}

/// Packets of the connection the kernel dropped within the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drops {
    /// Dropped packets sent by the initiator.
    pub packets_forward: u64,
    /// Dropped packets sent by the responder.
    pub packets_reverse: u64,
    /// Bytes of all dropped packets.
    pub bytes: u64,
    /// The kernel's name of the latest drop reason (`NETFILTER_DROP`, ...),
    /// read from the running kernel's BTF.
    pub last_reason: String,
    /// Network namespace inode where the latest drop happened.
    pub last_netns_ino: u32,
}

/// Where a connection is in its life, as of this record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowState {
    /// First record of a connection that is still going on.
    Started,
    /// A later record of a connection that is still going on.
    Live,
    /// Final record: the connection ended (see [`EndReason`]) and replies were seen.
    Completed,
    /// Final record of a connection that never saw a packet from the responder.
    OneSided,
}

impl FlowState {
    /// The name the outputs use.
    pub fn as_str(self) -> &'static str {
        match self {
            FlowState::Started => "started",
            FlowState::Live => "live",
            FlowState::Completed => "completed",
            FlowState::OneSided => "one-sided",
        }
    }
}

/// Why a connection's final record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// TCP FIN seen in both directions.
    TcpFin,
    /// TCP RST seen.
    TcpRst,
    /// No packet for the idle timeout.
    IdleTimeout,
    /// The exporter stopped; the connection may still be going on.
    Shutdown,
}

impl EndReason {
    /// The name the outputs use.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::TcpFin => "tcp-fin",
            EndReason::TcpRst => "tcp-rst",
            EndReason::IdleTimeout => "idle-timeout",
            EndReason::Shutdown => "shutdown",
        }
    }
}

/// One connection seen at one node during one aggregation window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    pub key: FlowKey,
    /// The interface whose counters this record carries: the first captured
    /// interface of the node that saw the connection.
    pub interface: InterfaceRef,
    /// Direction of the initiator's packets at `interface`.
    pub initiator_hook: HookDirection,
    /// Every captured interface that saw the connection, sorted by index.
    pub interfaces: Vec<InterfaceRef>,
    pub orientation: Orientation,
    pub window_start: SystemTime,
    pub window_end: SystemTime,
    /// First packet of the connection (any window).
    pub first_packet: SystemTime,
    /// Latest packet of the connection so far.
    pub last_packet: SystemTime,
    /// Initiator -> responder.
    pub forward: DirectionCounters,
    /// Responder -> initiator.
    pub reverse: DirectionCounters,
    pub state: FlowState,
    pub end_reason: Option<EndReason>,
    pub drops: Option<Drops>,
}
