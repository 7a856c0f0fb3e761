//! Table-driven tests of the pure connection table.

use super::*;
use crate::abi::{DIR_EGRESS, FAMILY_V4, FAMILY_V6};
use std::time::{Duration, UNIX_EPOCH};

const S: u64 = 1_000_000_000;

struct TestNames;
impl Names for TestNames {
    fn interface(&self, ifindex: u32) -> std::sync::Arc<str> {
        format!("if{ifindex}").into()
    }
    fn drop_reason(&self, value: u32) -> String {
        format!("R{value}")
    }
}

fn to_system(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

fn v4(last: u8) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&[10, 0, 0, last]);
    a
}

#[allow(clippy::too_many_arguments)]
fn key(src: u8, sport: u16, dst: u8, dport: u16, proto: u8, ifindex: u32, dir: u8) -> RawFlowKey {
    RawFlowKey {
        saddr: v4(src),
        daddr: v4(dst),
        sport,
        dport,
        ifindex,
        proto,
        family: FAMILY_V4,
        direction: dir,
        pad: 0,
    }
}

fn val(packets: u64, bytes: u64, first_ns: u64, last_ns: u64, flags: u32) -> RawFlowVal {
    RawFlowVal {
        packets,
        bytes,
        first_ns,
        last_ns,
        tcp_flags: flags,
        first_tcp_flags: 0,
    }
}

/// A TCP entry whose first packet had `first` flags.
fn tcp(mut v: RawFlowVal, first: u32) -> RawFlowVal {
    v.first_tcp_flags = first;
    v
}

fn agg() -> Aggregator {
    Aggregator::new(AggregatorConfig {
        active_timeout_ns: 10 * S,
        idle_timeout_ns: 15 * S,
    })
}

fn emit(a: &mut Aggregator, now: u64, shutdown: bool) -> Vec<Flow> {
    a.emit(now, shutdown, &to_system, &TestNames)
}

/// Drain like the capture loop does: idle keys are read "finally" from the
/// snapshot values, then records are emitted.
fn cycle(a: &mut Aggregator, snap: &[(RawFlowKey, RawFlowVal)], now: u64) -> Vec<Flow> {
    a.ingest(snap);
    for k in a.idle_keys(now) {
        if let Some((_, v)) = snap.iter().find(|(sk, _)| *sk == k) {
            a.ingest_final(&k, v);
        }
    }
    emit(a, now, false)
}

#[test]
fn routed_tcp_is_reported_once_by_the_first_interface() {
    let mut a = agg();
    // Pod A (10.0.0.1, if3) talks to pod B (10.0.0.2, if4) through the node.
    let snap = [
        (
            key(1, 40000, 2, 80, 6, 3, DIR_INGRESS),
            tcp(val(5, 400, 100, 900, 0x1b), 0x02),
        ), // SYN|ACK|PSH|FIN
        (
            key(2, 80, 1, 40000, 6, 3, DIR_EGRESS),
            tcp(val(4, 3000, 300, 950, 0x13), 0x12),
        ),
        (
            key(1, 40000, 2, 80, 6, 4, DIR_EGRESS),
            val(5, 400, 150, 910, 0x1b),
        ),
        (
            key(2, 80, 1, 40000, 6, 4, DIR_INGRESS),
            val(4, 3000, 250, 940, 0x13),
        ),
    ];
    a.ingest(&snap);
    let out = emit(&mut a, 20 * S, true);
    assert_eq!(out.len(), 1);
    let f = &out[0];
    assert_eq!(f.interface.ifindex, 3);
    assert_eq!(
        f.interfaces.iter().map(|i| i.ifindex).collect::<Vec<_>>(),
        vec![3, 4]
    );
    assert_eq!(f.orientation, Orientation::Syn);
    assert_eq!(f.initiator_hook, HookDirection::Ingress);
    assert_eq!(
        (f.key.src_port, f.key.dst_port, f.key.protocol),
        (40000, 80, 6)
    );
    assert_eq!((f.forward.packets, f.forward.bytes), (5, 400));
    assert_eq!((f.reverse.packets, f.reverse.bytes), (4, 3000));
    assert_eq!(f.forward.tcp_flags, 0x1b);
    assert_eq!(f.end_reason, Some(EndReason::TcpFin));
    assert_eq!(f.state, FlowState::Completed);
    assert_eq!(f.first_packet, to_system(100));
    assert_eq!(f.last_packet, to_system(950));
}

#[test]
fn orientation_cases() {
    // (entries, expected initiator source last octet, expected orientation, expected hook)
    type Case = (
        Vec<(RawFlowKey, RawFlowVal)>,
        u8,
        Orientation,
        HookDirection,
    );
    let cases: Vec<Case> = vec![
        // The SYN-ACK entry is older than the SYN entry (clock skew between
        // CPUs): the SYN still names the initiator.
        (
            vec![
                (
                    key(2, 80, 1, 5555, 6, 3, DIR_EGRESS),
                    tcp(val(1, 60, 10, 10, 0x12), 0x12),
                ),
                (
                    key(1, 5555, 2, 80, 6, 3, DIR_INGRESS),
                    tcp(val(2, 112, 20, 20, 0x12), 0x02),
                ),
            ],
            1,
            Orientation::Syn,
            HookDirection::Ingress,
        ),
        // Only the SYN-ACK was seen (the SYN crossed another node): its
        // destination is the initiator.
        (
            vec![(
                key(2, 80, 1, 5555, 6, 3, DIR_EGRESS),
                tcp(val(1, 60, 10, 10, 0x12), 0x12),
            )],
            1,
            Orientation::Syn,
            HookDirection::Ingress,
        ),
        // UDP: the first packet's sender is the initiator.
        (
            vec![
                (
                    key(2, 53, 1, 999, 17, 3, DIR_EGRESS),
                    val(1, 100, 50, 50, 0),
                ),
                (
                    key(1, 999, 2, 53, 17, 3, DIR_INGRESS),
                    val(1, 60, 40, 40, 0),
                ),
            ],
            1,
            Orientation::FirstPacket,
            HookDirection::Ingress,
        ),
        // Only the reply direction seen at the owner interface.
        (
            vec![(
                key(2, 53, 1, 999, 17, 7, DIR_EGRESS),
                val(1, 100, 50, 50, 0),
            )],
            2,
            Orientation::FirstPacket,
            HookDirection::Egress,
        ),
    ];
    for (i, (entries, src, orientation, hook)) in cases.into_iter().enumerate() {
        let mut a = agg();
        a.ingest(&entries);
        let out = emit(&mut a, 1000, true);
        assert_eq!(out.len(), 1, "case {i}");
        assert_eq!(
            out[0].key.src_addr,
            addr_of(FAMILY_V4, &v4(src)),
            "case {i}"
        );
        assert_eq!(out[0].orientation, orientation, "case {i}");
        assert_eq!(out[0].initiator_hook, hook, "case {i}");
    }
}

#[test]
fn active_timeout_cuts_windows_with_deltas_and_idle_ends_the_connection() {
    let mut a = agg();
    let k = key(1, 1000, 2, 2000, 17, 3, DIR_INGRESS);
    // t=1s: first packets, nothing due yet.
    assert!(cycle(&mut a, &[(k, val(3, 300, S, S, 0))], S).is_empty());
    // t=11s: active timeout from the first packet passed.
    let out = cycle(&mut a, &[(k, val(10, 1000, S, 11 * S, 0))], 11 * S);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].forward.packets, out[0].forward.bytes), (10, 1000));
    assert_eq!(out[0].state, FlowState::Started);
    assert_eq!(out[0].window_start, to_system(S));
    assert_eq!(out[0].window_end, to_system(11 * S));
    // t=21s: 2 more packets arrived at 12s; active timeout again.
    let out = cycle(&mut a, &[(k, val(12, 1200, S, 12 * S, 0))], 21 * S);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].forward.packets, out[0].forward.bytes), (2, 200));
    assert_eq!(out[0].state, FlowState::Live);
    assert_eq!(out[0].window_start, to_system(11 * S));
    // t=27s: idle since 12s; nothing new, but the end still gets a record.
    let out = cycle(&mut a, &[(k, val(12, 1200, S, 12 * S, 0))], 27 * S);
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].forward.packets, out[0].end_reason),
        (0, Some(EndReason::IdleTimeout))
    );
    assert_eq!(out[0].state, FlowState::OneSided);
    assert_eq!(a.stats().connections, 0);
}

#[test]
fn idle_final_values_are_counted_and_one_sided_is_flagged() {
    let mut a = agg();
    let k = key(1, 1000, 2, 2000, 17, 3, DIR_INGRESS);
    a.ingest(&[(k, val(1, 100, S, S, 0))]);
    assert_eq!(a.idle_keys(20 * S), vec![k]);
    // The delete returned one more packet than the snapshot had.
    a.ingest_final(&k, &val(2, 200, S, S, 0));
    let out = emit(&mut a, 20 * S, false);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].forward.packets, 2);
    assert_eq!(out[0].state, FlowState::OneSided);
    assert_eq!(out[0].end_reason, Some(EndReason::IdleTimeout));
}

#[test]
fn icmp_echo_request_and_reply_pair_up() {
    for (family, req, rep, proto) in [(FAMILY_V4, 8u16, 0u16, 1u8), (FAMILY_V6, 128, 129, 58)] {
        let mut a = agg();
        let mut rq = key(1, req << 8, 2, 77, proto, 3, DIR_INGRESS);
        let mut rp = key(2, rep << 8, 1, 77, proto, 3, DIR_EGRESS);
        rq.family = family;
        rp.family = family;
        a.ingest(&[(rq, val(3, 252, 10, 30, 0)), (rp, val(3, 252, 15, 35, 0))]);
        let out = emit(&mut a, 100, true);
        assert_eq!(out.len(), 1, "family {family}");
        assert_eq!((out[0].key.src_port, out[0].key.dst_port), (req, 0));
        assert_eq!((out[0].forward.packets, out[0].reverse.packets), (3, 3));
        assert_eq!(out[0].state, FlowState::Completed);
    }
}

#[test]
fn drops_join_their_connection_or_are_counted_unmatched() {
    let mut a = agg();
    let k = key(1, 1000, 2, 9999, 6, 3, DIR_INGRESS);
    a.ingest(&[(k, val(3, 180, S, 3 * S, 0x02))]);
    let mut dk = k;
    dk.ifindex = 0;
    dk.direction = 0;
    let d = RawDropVal {
        packets: 3,
        bytes: 180,
        last_ns: 3 * S,
        last_reason: 12,
        ifindex: 9,
        netns_ino: 4242,
        pad: 0,
    };
    let stray = key(5, 1, 6, 2, 17, 0, 0);
    a.add_drops(&[(dk, d), (stray, d)]);
    assert_eq!(
        a.stats().drops_unmatched_packets,
        0,
        "a stray drop waits one cycle"
    );
    a.add_drops(&[]);
    assert_eq!(a.stats().drops_unmatched_packets, 3);
    let out = emit(&mut a, 4 * S, true);
    let drops = out[0].drops.clone().unwrap();
    assert_eq!(
        (drops.packets_forward, drops.packets_reverse, drops.bytes),
        (3, 0, 180)
    );
    assert_eq!(drops.last_reason, "R12");
    assert_eq!(drops.last_netns_ino, 4242);
    assert_eq!(out[0].state, FlowState::OneSided);
}

#[test]
fn counters_that_go_backwards_restart_from_the_new_value() {
    let mut a = agg();
    let k = key(1, 1000, 2, 2000, 17, 3, DIR_INGRESS);
    a.ingest(&[(k, val(10, 1000, S, S, 0))]);
    a.ingest(&[(k, val(2, 200, 2 * S, 2 * S, 0))]);
    assert_eq!(a.stats().counter_resets, 1);
    let out = emit(&mut a, 3 * S, true);
    assert_eq!(out[0].forward.packets, 12);
}
