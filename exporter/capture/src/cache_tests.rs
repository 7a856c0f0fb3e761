//! The per-CPU flow cache (FLOW_CACHE in bpf/flow.bpf.c) keeps every counter
//! exact: packets run through the real classifier with BPF_PROG_TEST_RUN,
//! with more flows than cache slots (so slots are taken over and spilled all
//! the time) and drains in between (so pending counters are flushed while
//! flows are live), must come out of the drains packet for packet and byte
//! for byte. Entries re-created from a slot after their FLOWS entry was
//! deleted start with the first pending packet's time and flags, and what
//! no flush can reach is folded into the records at shutdown. Needs root
//! (CAP_BPF), like the end-to-end tests.
//!
//! Each test has its own `Capture`, so its own maps; within a test, packets
//! go through the classifier one at a time (BPF_PROG_TEST_RUN of a
//! classifier is preemptible, see the FLOW_CACHE comment in flow.bpf.c).
#![allow(
    unsafe_code,
    reason = "geteuid, sched_getcpu and sched_setaffinity through libc"
)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use aya::maps::{MapData, PerCpuArray, PerCpuValues};
use aya::programs::SchedClassifier;
use flowscribe_model::{Flow, LossReason, Orientation};

use crate::abi::{RawCacheSlot, RawFlowKey, RawFlowVal};
use crate::{Capture, CaptureConfig, abi, boot_ns, sys};

/// More than the 256 slots of one CPU's cache.
const FLOWS: u32 = 700;

struct TestFlow {
    src: Ipv4Addr,
    sport: u16,
    proto: u8,
    packets: u64,
    payload: usize,
}

impl TestFlow {
    fn new(i: u32) -> TestFlow {
        TestFlow {
            src: Ipv4Addr::new(10, 9, (i / 250) as u8, (i % 250 + 1) as u8),
            sport: 10_000 + i as u16,
            // Every seventh flow is TCP, to follow flags through the cache.
            proto: if i.is_multiple_of(7) { 6 } else { 17 },
            packets: 1 + u64::from(i % 5),
            payload: 10 + (i % 13) as usize,
        }
    }

    fn l4_len(&self) -> usize {
        if self.proto == 6 { 20 } else { 8 }
    }

    fn ip_len(&self) -> u64 {
        (20 + self.l4_len() + self.payload) as u64
    }

    /// Ethernet + IPv4 + UDP or TCP (SYN first, then ACK, FIN last).
    fn packet(&self, n: u64) -> Vec<u8> {
        let mut p = vec![0u8; 14];
        p[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let ip_len = self.ip_len() as u16;
        p.extend_from_slice(&[0x45, 0]);
        p.extend_from_slice(&ip_len.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0, 64, self.proto, 0, 0]);
        p.extend_from_slice(&self.src.octets());
        p.extend_from_slice(&[10, 8, 0, 1]);
        p.extend_from_slice(&self.sport.to_be_bytes());
        p.extend_from_slice(&53u16.to_be_bytes());
        if self.proto == 6 {
            let flags = if n == 0 {
                0x02
            } else if n + 1 == self.packets {
                0x11
            } else {
                0x10
            };
            p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        } else {
            let udp_len = (8 + self.payload) as u16;
            p.extend_from_slice(&udp_len.to_be_bytes());
            p.extend_from_slice(&[0, 0]);
        }
        p.resize(14 + self.ip_len() as usize, 0xab);
        p
    }

    fn expected_flags(&self) -> u8 {
        match (self.proto, self.packets) {
            (6, 1) => 0x02,
            (6, _) => 0x13, // SYN | ACK | FIN
            _ => 0,
        }
    }
}

fn run_ingress(capture: &Capture, packet: &[u8]) {
    let prog: &SchedClassifier = capture
        .ebpf
        .program("fs_tc_ingress")
        .expect("fs_tc_ingress")
        .try_into()
        .expect("a classifier");
    let fd = prog.fd().expect("loaded");
    let rc = sys::prog_test_run(fd, packet).expect("BPF_PROG_TEST_RUN");
    assert_eq!(
        rc as i32, -1,
        "the classifier always passes packets on (TCX_NEXT)"
    );
}

fn add(records: &mut HashMap<(IpAddr, u16), (u64, u64, u8, usize)>, flows: &[Flow]) {
    for f in flows {
        let e = records
            .entry((f.key.src_addr, f.key.src_port))
            .or_insert((0, 0, 0, 0));
        e.0 += f.forward.packets;
        e.1 += f.forward.bytes;
        e.2 |= f.forward.tcp_flags;
        e.3 += 1;
        assert_eq!(f.reverse.packets, 0, "no reverse traffic was sent: {f:?}");
    }
}

fn require_root() {
    assert_eq!(
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() },
        0,
        "this test loads eBPF programs: run it as root"
    );
}

/// A capture attached nowhere: the packets come from BPF_PROG_TEST_RUN.
fn test_config() -> CaptureConfig {
    CaptureConfig {
        include: vec!["fs-cache-test-none-*".to_string()],
        // The host's own drops would add loss reports the tests do not make.
        trace_drops: false,
        ..CaptureConfig::default()
    }
}

/// Keep this test's thread on the CPU it runs on, so every packet it sends
/// through the classifier meets the same CPU's cache slots. Returns the CPU.
fn pin_to_current_cpu() -> u32 {
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    assert!(cpu >= 0, "sched_getcpu failed");
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET writes inside it
    // (cpu < CPU_SETSIZE), and sched_setaffinity reads size_of bytes of it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    assert_eq!(rc, 0, "sched_setaffinity to CPU {cpu}");
    cpu as u32
}

/// Where `cpu`'s values are in a per-CPU map's value list.
fn cpu_index(capture: &Capture, cpu: u32) -> usize {
    capture
        .possible_cpus
        .iter()
        .position(|c| *c == cpu)
        .expect("the CPU we run on is a possible CPU")
}

/// The FLOWS entry of the classifier's key for packets of `f` (the test
/// run's skb comes from the loopback device).
fn flows_entry(capture: &Capture, f: &TestFlow) -> Option<(RawFlowKey, RawFlowVal)> {
    let flows = Capture::map_data(&capture.flows).expect("FLOWS");
    let all: Vec<(RawFlowKey, RawFlowVal)> = sys::lookup_batch(flows.fd(), 4096).expect("FLOWS");
    all.into_iter().find(|(k, _)| is_key_of(k, f))
}

/// Spin until the boot clock is past `stamp`. A tick stamp can be late by
/// a tick interrupt's delay (see tick_clock), and a drain treats an entry
/// whose last packet is not yet in the past as live, whatever the idle
/// timeout: a test that expects an idle end must wait for its last stamp.
fn until_boot_time_passes(stamp: u64) {
    while boot_ns() <= stamp {
        std::hint::spin_loop();
    }
}

/// The latest tick stamp of `f`'s packets: its FLOWS entry's and those of
/// the cache slots (any CPU) that hold its key with packets pending.
fn latest_stamp(capture: &Capture, f: &TestFlow) -> u64 {
    let in_flows = flows_entry(capture, f).map_or(0, |(_, v)| v.last_ns);
    (0..abi::CACHE_SLOTS)
        .flat_map(|idx| cache_slot(capture, idx))
        .filter(|slot| slot.packets > 0 && is_key_of(&slot.key, f))
        .map(|slot| slot.last_ns)
        .fold(in_flows, u64::max)
}

fn is_key_of(k: &RawFlowKey, f: &TestFlow) -> bool {
    k.saddr[..4] == f.src.octets() && k.sport == f.sport && k.proto == f.proto
}

#[test]
fn flow_cache_counts_every_packet_exactly_across_slot_takeovers_and_drains() {
    require_root();
    let (mut capture, _) = Capture::start(&test_config()).expect("capture starts");
    let flows: Vec<TestFlow> = (0..FLOWS).map(TestFlow::new).collect();
    let mut records = HashMap::new();
    let rounds = flows.iter().map(|f| f.packets).max().unwrap_or(0);
    let mut sent = 0u64;
    // Round-robin over the flows: with more flows than slots, nearly every
    // packet takes a slot from another flow, whose pending counters spill.
    for n in 0..rounds {
        for f in flows.iter().filter(|f| n < f.packets) {
            run_ingress(&capture, &f.packet(n));
            sent += 1;
            if sent.is_multiple_of(333) {
                add(&mut records, &capture.drain().expect("drain").flows);
            }
        }
    }
    let (batch, counters) = capture.shutdown().expect("shutdown");
    add(&mut records, &batch.flows);

    assert_eq!(records.len(), FLOWS as usize, "one connection per flow");
    for f in &flows {
        let got = records
            .get(&(IpAddr::V4(f.src), f.sport))
            .unwrap_or_else(|| panic!("no record for {}:{}", f.src, f.sport));
        assert_eq!(
            (got.0, got.1, got.2),
            (f.packets, f.packets * f.ip_len(), f.expected_flags()),
            "{}:{} proto {}",
            f.src,
            f.sport,
            f.proto
        );
    }
    let total: u64 = flows.iter().map(|f| f.packets).sum();
    assert_eq!(sent, total);
    assert_eq!(
        counters.new_flow_events,
        u64::from(FLOWS),
        "one ring event per flow"
    );
    for (i, name) in [
        (abi::stat::FLOW_MAP_FULL, "map full"),
        (abi::stat::FLOW_UPDATE_FAILED, "update failed"),
        (abi::stat::RING_RESERVE_FAILED, "ring full"),
    ] {
        assert_eq!(counters.kernel[i as usize], 0, "{name}");
    }
    assert_eq!(counters.cache_flush_incomplete, 0);
}

/// A reused 5-tuple (here: a TCP client port) whose FLOWS entry the drain
/// deleted as idle while this CPU's cache slot still held the key: the next
/// connection's SYN, ACK and data wait in the slot, and the spill re-creates
/// the entry. It must start with the SYN (time and flags of the first
/// pending packet), not with the spill's time and the OR of every pending
/// flag, which made the aggregator orient the connection backwards.
#[test]
fn an_entry_recreated_from_a_cache_slot_starts_with_its_first_pending_packet() {
    require_root();
    pin_to_current_cpu();
    let config = CaptureConfig {
        // Every drain deletes every entry whose last packet is in the past
        // as idle (after the flush).
        idle_timeout: Duration::from_nanos(1),
        ..test_config()
    };
    let (mut capture, _) = Capture::start(&config).expect("capture starts");
    let tcp = TestFlow {
        src: Ipv4Addr::new(10, 9, 250, 1),
        sport: 40_000,
        proto: 6,
        packets: 4, // packet(0) is a SYN, packet(1) and packet(2) are ACKs
        payload: 20,
    };

    // First connection: the SYN creates the entry and the slot takes the
    // key; the ACK waits in the slot, and the drain flushes it into FLOWS,
    // reports the connection and deletes its entry. The slot keeps the key.
    run_ingress(&capture, &tcp.packet(0));
    run_ingress(&capture, &tcp.packet(1));
    until_boot_time_passes(latest_stamp(&capture, &tcp));
    let first = capture.drain().expect("drain").flows;
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!((first[0].forward.packets, first[0].reverse.packets), (2, 0));
    assert!(flows_entry(&capture, &tcp).is_none(), "deleted as idle");

    // Second connection on the same 5-tuple: every packet is pending in the
    // slot until the flush re-creates the entry.
    // The SYN, then the ACKs at least three ticks later, so the two times
    // differ in tick stamps (spinning on the clock, nothing to wait for).
    let tick = u64::from(capture.kernel_config.tick_ns);
    let before = boot_ns();
    run_ingress(&capture, &tcp.packet(0));
    let syn_sent = boot_ns();
    while boot_ns() < syn_sent + 3 * tick {
        std::hint::spin_loop();
    }
    for n in 1..3 {
        run_ingress(&capture, &tcp.packet(n));
    }
    assert!(
        flows_entry(&capture, &tcp).is_none(),
        "the packets wait in the cache slot"
    );
    let online = aya::util::online_cpus().expect("online CPUs");
    capture.flush_cache(&online).expect("flush");
    let (_, v) = flows_entry(&capture, &tcp).expect("re-created by the spill");
    assert_eq!((v.packets, v.bytes), (3, 3 * tcp.ip_len()));
    assert_eq!(v.tcp_flags, 0x12, "SYN | ACK over the three packets");
    assert_eq!(
        v.first_tcp_flags, 0x02,
        "the first pending packet's flags: the SYN alone"
    );
    // Tick stamps are up to one tick early (tick_clock); allow two. Their
    // offset can err late by a tick interrupt's delay on a busy host, so
    // the upper bounds are relative: the SYN is ticks before the ACKs,
    // which the flush's or the last packet's time would not be.
    assert!(
        v.first_ns >= before.saturating_sub(2 * tick),
        "first_ns {} is not before the SYN was sent ({before} - 2 ticks)",
        v.first_ns
    );
    assert!(
        v.first_ns + 2 * tick <= v.last_ns,
        "first_ns {} is the SYN's time, ticks before last_ns {} (the ACKs'), not the flush's",
        v.first_ns,
        v.last_ns
    );

    // Through the aggregator: oriented by the SYN, so the client is the
    // source and all three packets are forward.
    until_boot_time_passes(v.last_ns);
    let second = capture.drain().expect("drain").flows;
    assert_eq!(second.len(), 1, "{second:?}");
    let f = &second[0];
    assert_eq!(
        (f.key.src_addr, f.key.src_port),
        (IpAddr::V4(tcp.src), tcp.sport)
    );
    assert_eq!(f.orientation, Orientation::Syn);
    assert_eq!((f.forward.packets, f.reverse.packets), (3, 0));
    assert_eq!(f.forward.tcp_flags, 0x12);
    let counters = capture.counters();
    assert_eq!(
        counters.new_flow_events, 2,
        "a ring event for the entry and for its re-creation"
    );
    assert_eq!(counters.cache_flush_incomplete, 0);
}

/// Read slot `idx` of FLOW_CACHE (every CPU's value).
fn cache_slot(capture: &Capture, idx: u32) -> Vec<RawCacheSlot> {
    let cache: PerCpuArray<&MapData, RawCacheSlot> =
        PerCpuArray::try_from(&capture.cache).expect("FLOW_CACHE");
    cache.get(&idx, 0).expect("slot").iter().copied().collect()
}

/// Write slot `idx` of FLOW_CACHE for every CPU.
fn set_cache_slot(capture: &mut Capture, idx: u32, values: Vec<RawCacheSlot>) {
    let mut cache: PerCpuArray<&mut MapData, RawCacheSlot> =
        PerCpuArray::try_from(&mut capture.cache).expect("FLOW_CACHE");
    let values = PerCpuValues::try_from(values).expect("one value per possible CPU");
    cache.set(idx, values, 0).expect("write slot");
}

/// A slot on `cpu` that no flush can take (its busy mark stuck, as a
/// classifier that never finished would leave it; the same state as the
/// slots of an offline CPU as far as the flush is concerned) holding
/// `slot`'s pending counts. Returns the slot index used.
fn strand(capture: &mut Capture, cpu: u32, idx: Option<u32>, slot: RawCacheSlot) -> u32 {
    let i = cpu_index(capture, cpu);
    let idx = idx.unwrap_or_else(|| {
        (0..abi::CACHE_SLOTS)
            .find(|idx| cache_slot(capture, *idx)[i].key.family == 0)
            .expect("a free slot")
    });
    let mut values = cache_slot(capture, idx);
    values[i] = RawCacheSlot { busy: 1, ..slot };
    set_cache_slot(capture, idx, values);
    idx
}

/// The key the classifier gives `f`'s packets: `template`'s interface
/// (the test runs' loopback device) and hook, `f`'s address, port and protocol.
fn stranded_key(f: &TestFlow, template: &RawFlowKey) -> RawFlowKey {
    let mut k = *template;
    k.saddr = [0; 16];
    k.saddr[..4].copy_from_slice(&f.src.octets());
    k.sport = f.sport;
    k.proto = f.proto;
    k
}

/// C2/C3: pending counts no flush could move (a slot busy at every attempt,
/// or an offline CPU's slots) are counted while running and folded into
/// FLOWS at shutdown, so the final records hold every packet: into the
/// existing entry of one flow, and as a new entry (first time and flags of
/// the first pending packet) for a flow whose entry was gone.
#[test]
fn pending_counts_no_flush_reaches_are_counted_and_folded_in_at_shutdown() {
    require_root();
    let cpu = pin_to_current_cpu();
    let (mut capture, _) = Capture::start(&test_config()).expect("capture starts");
    let i = cpu_index(&capture, cpu);
    let a = TestFlow {
        src: Ipv4Addr::new(10, 9, 251, 1),
        sport: 41_000,
        proto: 17,
        packets: 3,
        payload: 30,
    };
    // One packet to FLOWS (the slot takes the key), two pending in the slot.
    for n in 0..3 {
        run_ingress(&capture, &a.packet(n));
    }
    let (a_key, a_val) = flows_entry(&capture, &a).expect("a's entry");
    assert_eq!(a_val.packets, 1);
    let a_idx = (0..abi::CACHE_SLOTS)
        .find(|idx| cache_slot(&capture, *idx)[i].key == a_key)
        .expect("a's slot");
    let a_slot = cache_slot(&capture, a_idx)[i];
    assert_eq!((a_slot.packets, a_slot.bytes), (2, 2 * a.ip_len()));
    strand(&mut capture, cpu, Some(a_idx), a_slot);

    // A flow with no FLOWS entry (deleted as idle) and three pending packets.
    let b = TestFlow {
        src: Ipv4Addr::new(10, 9, 251, 2),
        sport: 41_001,
        proto: 6,
        packets: 3,
        payload: 0,
    };
    let b_first_ns = boot_ns() - 2_000_000_000;
    let b_slot = RawCacheSlot {
        key: stranded_key(&b, &a_key),
        packets: 3,
        bytes: 3 * b.ip_len(),
        first_ns: b_first_ns,
        last_ns: b_first_ns + 5_000_000,
        first_tcp_flags: 0x02,
        tcp_flags: 0x12,
        ..RawCacheSlot::default()
    };
    strand(&mut capture, cpu, None, b_slot);

    // Counted as stranded when the CPU is offline (here: left out of the
    // online list), and not when it is online.
    let online = aya::util::online_cpus().expect("online CPUs");
    let without: Vec<u32> = online.iter().copied().filter(|c| *c != cpu).collect();
    capture.count_stranded(&without).expect("count");
    assert_eq!(capture.counters().cache_stranded_packets, 5);
    assert_eq!(capture.counters().cache_stranded_drains, 1);
    capture.count_stranded(&online).expect("count");
    assert_eq!(capture.counters().cache_stranded_packets, 0);

    // A drain cannot flush the busy slots: FLOWS still has a's one packet,
    // and no record is due yet.
    let drained = capture.drain().expect("drain");
    assert!(drained.flows.is_empty(), "{:?}", drained.flows);
    assert_eq!(capture.counters().cache_flush_incomplete, 1);
    assert_eq!(flows_entry(&capture, &a).map(|(_, v)| v.packets), Some(1));
    let mut records = HashMap::new();

    let (batch, counters) = capture.shutdown().expect("shutdown");
    add(&mut records, &batch.flows);
    assert_eq!(counters.cache_flush_incomplete, 2);
    assert_eq!(counters.cache_folded_packets, 5, "2 of a and 3 of b");
    assert!(batch.losses.is_empty(), "{:?}", batch.losses);
    let got = |f: &TestFlow| records.get(&(IpAddr::V4(f.src), f.sport)).copied();
    assert_eq!(got(&a), Some((3, 3 * a.ip_len(), 0, 1)));
    assert_eq!(got(&b), Some((3, 3 * b.ip_len(), 0x12, 1)));
    let b_record = batch
        .flows
        .iter()
        .find(|f| f.key.src_port == b.sport)
        .expect("b's record");
    assert_eq!(b_record.orientation, Orientation::Syn);
    assert_eq!(
        b_record
            .last_packet
            .duration_since(b_record.first_packet)
            .expect("last after first"),
        Duration::from_millis(5),
        "first and last time from the slot"
    );
}

/// At shutdown, pending counts that FLOWS cannot take (full) are a loss
/// record with their packets and bytes, not silently gone.
#[test]
fn pending_counts_that_find_flows_full_at_shutdown_are_reported_as_lost() {
    require_root();
    let cpu = pin_to_current_cpu();
    let config = CaptureConfig {
        flow_map_entries: 1,
        ..test_config()
    };
    let (mut capture, _) = Capture::start(&config).expect("capture starts");
    let a = TestFlow::new(1);
    run_ingress(&capture, &a.packet(0));
    let (a_key, _) = flows_entry(&capture, &a).expect("a's entry fills FLOWS");
    let b = TestFlow::new(2);
    let now = boot_ns();
    strand(
        &mut capture,
        cpu,
        None,
        RawCacheSlot {
            key: stranded_key(&b, &a_key),
            packets: 4,
            bytes: 4 * b.ip_len(),
            first_ns: now,
            last_ns: now,
            ..RawCacheSlot::default()
        },
    );
    let (batch, counters) = capture.shutdown().expect("shutdown");
    assert_eq!(counters.cache_folded_packets, 0);
    let lost: Vec<(LossReason, u64, u64)> = batch
        .losses
        .iter()
        .map(|l| (l.reason, l.count, l.bytes))
        .collect();
    assert_eq!(lost, [(LossReason::FlowMapFull, 4, 4 * b.ip_len())]);
    assert_eq!(batch.flows.len(), 1, "a's record only: {:?}", batch.flows);
}
