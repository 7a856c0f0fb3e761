//! The per-CPU flow cache (FLOW_CACHE in bpf/flow.bpf.c) keeps every counter
//! exact: packets run through the real classifier with BPF_PROG_TEST_RUN,
//! with more flows than cache slots (so slots are taken over and spilled all
//! the time) and drains in between (so pending counters are flushed while
//! flows are live), must come out of the drains packet for packet and byte
//! for byte. Needs root (CAP_BPF), like the end-to-end tests.
#![allow(unsafe_code, reason = "geteuid, to say why the test cannot run")]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use aya::programs::SchedClassifier;
use flowscribe_model::Flow;

use crate::{Capture, CaptureConfig, abi, sys};

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

#[test]
fn flow_cache_counts_every_packet_exactly_across_slot_takeovers_and_drains() {
    assert_eq!(
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() },
        0,
        "this test loads eBPF programs: run it as root"
    );
    let config = CaptureConfig {
        // Attach nowhere: the packets come from BPF_PROG_TEST_RUN.
        include: vec!["fs-cache-test-none-*".to_string()],
        ..CaptureConfig::default()
    };
    let (mut capture, _) = Capture::start(&config).expect("capture starts");
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
