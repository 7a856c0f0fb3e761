//! Capture end to end: the real `flowscribe run` in a "node" namespace that
//! routes between "pod" namespaces over veth pairs, with real traffic and
//! exact expected counts. Needs root (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON).
#![allow(clippy::unwrap_used, reason = "tests")]

use std::net::IpAddr;
use std::time::{Duration, Instant};

use flowscribe_e2e::*;
use serde_json::Value;

/// Long timeouts: each connection ends up in exactly one record, written by
/// the final drain at shutdown (which is what some tests check).
const ONE_WINDOW: &[&str] = &["--active-timeout", "300s", "--idle-timeout", "300s"];

fn one_flow(stopped: &Stopped, a: IpAddr, b: IpAddr, port: u16) -> &Value {
    let flows: Vec<&Value> = stopped
        .flows_between(a, b)
        .into_iter()
        .filter(|r| r["src_port"] == port || r["dst_port"] == port)
        .collect();
    assert_eq!(
        flows.len(),
        1,
        "expected one record for port {port}, got {flows:#?}"
    );
    flows[0]
}

fn counts(r: &Value, dir: &str) -> (u64, u64) {
    (
        r[dir]["packets"].as_u64().unwrap(),
        r[dir]["bytes"].as_u64().unwrap(),
    )
}

fn no_errors(log: &[String]) {
    let bad: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("ERROR") || l.contains("WARN"))
        .collect();
    assert!(bad.is_empty(), "unexpected warnings/errors: {bad:#?}");
}

#[test]
fn udp_tcp_icmp_and_ipv6_have_exact_counts_both_ways_on_one_record() {
    let _serial = serial();
    let node = Node::new(2);
    let (a, b) = (&node.pods[0], &node.pods[1]);
    let exporter = Exporter::start(&node.ns.name, ONE_WINDOW);

    // UDP/IPv4: 50 x 100 B one way, 20 x 200 B back (IP + UDP headers = 28 B).
    let udp_port = udp_exchange(&a.ns, &b.ns, b.v4, 50, 100, 20, 200);
    // UDP/IPv6: 10 x 100 B, 5 x 50 B back (IPv6 + UDP headers = 48 B).
    let udp6_port = udp_exchange(&a.ns, &b.ns, b.v6, 10, 100, 5, 50);
    // TCP: 200 kB one way; the client's own TCP_INFO is the ground truth.
    let (tcp_port, tcp) = tcp_transfer(&a.ns, &b.ns, b.v4, 200_000);
    // ICMP echo: 3 requests, 3 replies of 84 B (20 IP + 8 ICMP + 56 data).
    a.ns.sh(&[
        "ping",
        "-n",
        "-q",
        "-c",
        "3",
        "-i",
        "0.2",
        "-W",
        "5",
        &b.v4.to_string(),
    ]);

    let stopped = exporter.stop();
    assert_eq!(stopped.code, Some(0), "log: {:#?}", stopped.log);
    no_errors(&stopped.log);

    let udp = one_flow(&stopped, a.v4, b.v4, udp_port);
    assert_eq!(
        udp["src_addr"],
        a.v4.to_string(),
        "initiator is the first sender"
    );
    assert_eq!(udp["protocol"], "udp");
    assert_eq!(counts(udp, "forward"), (50, 50 * 128));
    assert_eq!(counts(udp, "reverse"), (20, 20 * 228));
    assert_eq!(udp["interface"], a.host_if, "first interface that saw it");
    assert_eq!(udp["interfaces"], serde_json::json!([a.host_if, b.host_if]));
    assert_eq!(udp["initiator_hook"], "ingress");
    assert_eq!(udp["orientation"], "first-packet");

    let udp6 = one_flow(&stopped, a.v6, b.v6, udp6_port);
    assert_eq!(udp6["family"], "ipv6");
    assert_eq!(counts(udp6, "forward"), (10, 10 * 148));
    assert_eq!(counts(udp6, "reverse"), (5, 5 * 98));

    // TCP with timestamps: SYN and SYN-ACK carry 40 B of header options
    // (60 B of headers), every other segment 32 B (52 B of headers). GSO
    // super-packets must be counted as their wire segments.
    let t = one_flow(&stopped, a.v4, b.v4, tcp_port);
    assert_eq!(t["orientation"], "syn");
    assert_eq!(t["src_port"], tcp_port);
    assert_eq!(
        counts(t, "forward"),
        (tcp.segs_out, tcp.bytes_sent + 60 + 52 * (tcp.segs_out - 1))
    );
    // bytes_received counts the peer's FIN as one byte of sequence space.
    let payload_in = tcp.bytes_received - 1;
    assert_eq!(
        counts(t, "reverse"),
        (tcp.segs_in, payload_in + 60 + 52 * (tcp.segs_in - 1))
    );
    for flag in ["SYN", "ACK", "FIN"] {
        assert!(
            t["forward"]["tcp_flags"]
                .as_array()
                .unwrap()
                .contains(&flag.into()),
            "{flag} in {t}"
        );
    }
    assert_eq!(t["state"], "completed");
    assert_eq!(t["end_reason"], "tcp-fin");

    let pings: Vec<&Value> = stopped
        .flows_between(a.v4, b.v4)
        .into_iter()
        .filter(|r| r["protocol"] == "icmp")
        .collect();
    assert_eq!(pings.len(), 1, "{pings:#?}");
    assert_eq!(
        (pings[0]["src_port"].as_u64(), pings[0]["dst_port"].as_u64()),
        (Some(8), Some(0))
    );
    assert_eq!(counts(pings[0], "forward"), (3, 252));
    assert_eq!(counts(pings[0], "reverse"), (3, 252));
}

#[test]
fn a_pod_created_after_start_is_captured_and_its_removal_is_clean() {
    let _serial = serial();
    let mut node = Node::new(1);
    let mut exporter = Exporter::start(&node.ns.name, ONE_WINDOW);

    let created = Instant::now();
    node.add_pod(2);
    let attached = exporter
        .wait_for_log(
            |l| l.contains("attached") && l.contains("interface=fsv2"),
            Duration::from_secs(5),
        )
        .expect("new veth attached");
    let latency = created.elapsed();
    assert!(
        latency < Duration::from_secs(1),
        "attached after {latency:?}: {attached}"
    );

    let (a, b) = (&node.pods[0], &node.pods[1]);
    let port = udp_exchange(&a.ns, &b.ns, b.v4, 3, 10, 1, 10);
    let (a_v4, b_v4) = (a.v4, b.v4);

    // The pod goes away: its namespace and veth are deleted.
    drop(node.pods.pop());
    exporter
        .wait_for_log(
            |l| l.contains("released") && l.contains("interface=fsv2"),
            Duration::from_secs(5),
        )
        .expect("removed veth released");

    let stopped = exporter.stop();
    assert_eq!(stopped.code, Some(0));
    no_errors(&stopped.log);
    let r = one_flow(&stopped, a_v4, b_v4, port);
    assert_eq!(counts(r, "forward"), (3, 3 * 38));
    assert_eq!(counts(r, "reverse"), (1, 38));
}

fn bpf_program_names() -> Vec<String> {
    let json: Value = serde_json::from_str(&sh(&["bpftool", "prog", "show", "-j"])).unwrap();
    json.as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .filter(|n| n.starts_with("fs_"))
        .collect()
}

#[test]
fn sigterm_drains_everything_then_leaves_no_program_link_or_qdisc() {
    let _serial = serial();
    for mode in ["tcx", "tc"] {
        let node = Node::new(2);
        let (a, b) = (&node.pods[0], &node.pods[1]);
        let config = TempConfig::new(&format!("capture:\n  attach_mode: {mode}\n"));
        let config_arg = config.arg();
        let mut args = ONE_WINDOW.to_vec();
        args.extend(["--config", &config_arg]);
        let exporter = Exporter::start(&node.ns.name, &args);

        // fs_clock_probe and fs_cache_flush are loaded, never attached: test
        // runs calibrate the tick clock and flush the per-CPU flow cache.
        let mut progs = bpf_program_names();
        progs.sort();
        assert_eq!(
            progs,
            [
                "fs_cache_flush",
                "fs_clock_probe",
                "fs_kfree_skb",
                "fs_tc_egress",
                "fs_tc_ingress"
            ],
            "{mode}"
        );
        let qdiscs = node.ns.sh(&["tc", "qdisc", "show", "dev", &a.host_if]);
        assert_eq!(qdiscs.contains("clsact"), mode == "tc", "{mode}: {qdiscs}");

        let port = udp_exchange(&a.ns, &b.ns, b.v4, 5, 10, 0, 0);
        let stopped = exporter.stop();
        assert_eq!(stopped.code, Some(0), "{mode}: {:#?}", stopped.log);
        assert!(
            stopped.elapsed < Duration::from_secs(5),
            "{mode}: exit took {:?}",
            stopped.elapsed
        );
        // With 300 s timeouts only the final drain can have written this record.
        let r = one_flow(&stopped, a.v4, b.v4, port);
        assert_eq!(counts(r, "forward"), (5, 5 * 38), "{mode}");
        assert_eq!(r["end_reason"], "shutdown");

        // The kernel frees a tracing program's trampoline asynchronously
        // (RCU tasks) after its last fd closes: poll, bounded.
        let gone = wait_until(Duration::from_secs(10), || bpf_program_names().is_empty());
        assert!(
            gone,
            "{mode}: programs left behind: {:?}",
            bpf_program_names()
        );
        for pod in &node.pods {
            let qdiscs = node.ns.sh(&["tc", "qdisc", "show", "dev", &pod.host_if]);
            assert!(
                !qdiscs.contains("clsact"),
                "{mode}: clsact left on {}: {qdiscs}",
                pod.host_if
            );
            let filters = node
                .ns
                .sh(&["tc", "filter", "show", "dev", &pod.host_if, "ingress"]);
            assert!(filters.trim().is_empty(), "{mode}: filter left: {filters}");
        }
    }
}

#[test]
fn an_nftables_drop_in_a_pod_shows_dropped_packets_and_netfilter_drop() {
    let _serial = serial();
    let node = Node::new(2);
    let (a, b) = (&node.pods[0], &node.pods[1]);
    let exporter = Exporter::start(&node.ns.name, ONE_WINDOW);

    let server = b.ns.run(|| std::net::UdpSocket::bind("0.0.0.0:0").unwrap());
    let port = server.local_addr().unwrap().port();
    b.ns.sh(&["nft", "add", "table", "inet", "fst"]);
    b.ns.sh(&[
        "nft",
        "add",
        "chain",
        "inet",
        "fst",
        "input",
        "{ type filter hook input priority 0; }",
    ]);
    b.ns.sh(&[
        "nft",
        "add",
        "rule",
        "inet",
        "fst",
        "input",
        "udp",
        "dport",
        &port.to_string(),
        "counter",
        "drop",
    ]);

    let client = a.ns.run(|| std::net::UdpSocket::bind("0.0.0.0:0").unwrap());
    for _ in 0..3 {
        client.send_to(b"dropped!", (b.v4, port)).unwrap();
    }
    // Wait (bounded) until netfilter has dropped all three: its rule counter.
    let dropped = wait_until(Duration::from_secs(10), || {
        b.ns.sh(&["nft", "list", "chain", "inet", "fst", "input"])
            .contains("packets 3 ")
    });
    assert!(dropped, "nft never dropped 3 packets");
    let stopped = exporter.stop();
    assert_eq!(stopped.code, Some(0));
    let cport = client.local_addr().unwrap().port();
    let r = one_flow(&stopped, a.v4, b.v4, cport);
    assert_eq!(counts(r, "forward"), (3, 3 * 36));
    assert_eq!(r["state"], "one-sided");
    assert_eq!(r["dropped"]["packets_forward"], 3);
    assert_eq!(r["dropped"]["last_reason"], "NETFILTER_DROP");
    drop(server);
}

#[test]
fn with_a_tiny_map_and_ring_exported_plus_lost_is_every_flow() {
    let _serial = serial();
    let node = Node::new_v4_only(1);
    let pod = &node.pods[0];
    let config = TempConfig::new("capture:\n  flow_map_entries: 100\n  ring_buffer_bytes: 4096\n");
    let config_arg = config.arg();
    let mut args = ONE_WINDOW.to_vec();
    args.extend(["--config", &config_arg]);
    let exporter = Exporter::start(&node.ns.name, &args);

    // 200 one-packet flows from the pod to a socket on the node: each is one
    // kernel entry (one interface, one direction), so the map fits 100.
    const FLOWS: u64 = 200;
    let server = node
        .ns
        .run(|| std::net::UdpSocket::bind("10.201.1.1:0").unwrap());
    server
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let port = server.local_addr().unwrap().port();
    let sent = pod.ns.run(move || {
        (0..FLOWS)
            .map(|_| {
                let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
                s.send_to(b"x", ("10.201.1.1", port)).unwrap();
                s
            })
            .collect::<Vec<_>>()
    });
    let mut buf = [0u8; 16];
    for _ in 0..FLOWS {
        server.recv_from(&mut buf).expect("datagram lost");
    }
    drop(sent);

    let stopped = exporter.stop();
    assert_eq!(stopped.code, Some(0), "{:#?}", stopped.log);
    let flows: Vec<&Value> = stopped
        .records
        .iter()
        .filter(|r| r["record"] == "flow")
        .collect();
    let exported = flows.iter().filter(|r| r["dst_port"] == port).count() as u64;
    let lost = stopped.lost("flow_map_full");
    assert!(lost > 0, "the map was meant to overflow");
    assert_eq!(exported + lost, FLOWS, "exported {exported} + lost {lost}");
    assert_eq!(
        flows.len() as u64,
        exported,
        "only the test's flows exist: {flows:#?}"
    );
    // Every stored flow produced a ring event or a counted ring failure.
    let events = stopped.stopped_counter("new_flow_events");
    let ring_lost = stopped.lost("ring_reserve_failed");
    assert_eq!(
        events + ring_lost,
        exported,
        "events {events} + ring failures {ring_lost}"
    );
}

#[test]
fn active_and_idle_timeouts_cut_windows_while_running() {
    let _serial = serial();
    let node = Node::new_v4_only(2);
    let (a, b) = (&node.pods[0], &node.pods[1]);
    let exporter = Exporter::start(
        &node.ns.name,
        &["--active-timeout", "2s", "--idle-timeout", "1s"],
    );
    let server = b.ns.run(|| std::net::UdpSocket::bind("0.0.0.0:0").unwrap());
    let port = server.local_addr().unwrap().port();
    let client = a.ns.run(|| std::net::UdpSocket::bind("0.0.0.0:0").unwrap());
    let cport = client.local_addr().unwrap().port();
    let mine = |r: &Value| r["record"] == "flow" && r["src_port"] == cport && r["dst_port"] == port;

    // A live connection for 7 s (a datagram every 200 ms, so never idle):
    // the active timeout must cut it into windows while it runs. A window
    // closes at most 2 s + one 1 s drain after it opens, so 7 s of traffic
    // gives at least two live records before the idle one. The sleep
    // paces the traffic; no assertion depends on its exact timing.
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < Duration::from_millis(7000) {
        client.send_to(b"tick", (b.v4, port)).unwrap();
        sent += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    // Then silence: the idle timeout ends it without our stopping the exporter.
    let ended = wait_until(Duration::from_secs(10), || {
        exporter
            .records_so_far()
            .iter()
            .any(|r| mine(r) && r["end_reason"] == "idle-timeout")
    });
    let records: Vec<Value> = exporter
        .records_so_far()
        .into_iter()
        .filter(|r| mine(r))
        .collect();
    let stopped = exporter.stop();
    assert_eq!(stopped.code, Some(0));
    assert!(ended, "no idle-timeout record: {records:#?}");
    let packets: u64 = records
        .iter()
        .map(|r| r["forward"]["packets"].as_u64().unwrap())
        .sum();
    assert_eq!(
        packets, sent,
        "every packet in exactly one window: {records:#?}"
    );
    assert!(
        records.len() >= 3,
        "7 s of traffic with a 2 s active timeout: {records:#?}"
    );
    assert_eq!(records[0]["state"], "started");
    let (last, live) = records.split_last().unwrap();
    assert!(
        live[1..]
            .iter()
            .all(|r| r["state"] == "live" && r["end_reason"].is_null()),
        "{records:#?}"
    );
    assert_eq!(last["state"], "one-sided");
    for w in records.windows(2) {
        assert_eq!(
            w[0]["window_end"], w[1]["window_start"],
            "windows are contiguous"
        );
    }
}

/// Frame builders for the header shapes ordinary sockets cannot make here.
mod frames {
    const BROADCAST: [u8; 6] = [0xff; 6];
    const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

    fn ethernet(vlan: Option<u16>, ethertype: u16, l3: &[u8]) -> Vec<u8> {
        let mut f = Vec::with_capacity(18 + l3.len());
        f.extend_from_slice(&BROADCAST);
        f.extend_from_slice(&SRC_MAC);
        if let Some(vid) = vlan {
            f.extend_from_slice(&0x8100u16.to_be_bytes());
            f.extend_from_slice(&vid.to_be_bytes());
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(l3);
        f
    }

    fn checksum(bytes: &[u8]) -> u16 {
        let mut sum: u32 = bytes
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
        let total = (20 + l4.len()) as u16;
        let mut h = vec![0x45, 0];
        h.extend_from_slice(&total.to_be_bytes());
        h.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h.extend_from_slice(l4);
        h
    }

    fn ports(sport: u16, dport: u16) -> Vec<u8> {
        let mut p = sport.to_be_bytes().to_vec();
        p.extend_from_slice(&dport.to_be_bytes());
        p
    }

    fn udp(sport: u16, dport: u16, payload: usize) -> Vec<u8> {
        let mut u = ports(sport, dport);
        u.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]); // no checksum (IPv4 allows it)
        u.extend(std::iter::repeat_n(0x55, payload));
        u
    }

    /// IPv4 UDP in an 802.1Q-tagged frame.
    pub fn vlan_udp4(
        vid: u16,
        src: [u8; 4],
        dst: [u8; 4],
        sport: u16,
        dport: u16,
        payload: usize,
    ) -> Vec<u8> {
        ethernet(
            Some(vid),
            0x0800,
            &ipv4(src, dst, 17, &udp(sport, dport, payload)),
        )
    }

    /// IPv4 SCTP: common header and one INIT chunk (20 bytes).
    pub fn sctp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut s = ports(sport, dport);
        s.extend_from_slice(&[0; 8]); // verification tag 0 (INIT), checksum
        s.extend_from_slice(&[1, 0, 0, 20]); // INIT, flags, length 20
        s.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0x10, 0, 0, 1, 0, 1, 0, 0, 0, 1]);
        ethernet(None, 0x0800, &ipv4(src, dst, 132, &s))
    }

    /// IPv6 UDP behind `exts` extension headers, each 8 bytes: 0 = hop-by-hop
    /// or 60 = destination options (PadN), 44 = an atomic fragment header.
    pub fn udp6_with_exts(
        src: [u8; 16],
        dst: [u8; 16],
        exts: &[u8],
        sport: u16,
        dport: u16,
        payload: usize,
    ) -> Vec<u8> {
        let mut body = Vec::new();
        for (i, &kind) in exts.iter().enumerate() {
            let next = exts.get(i + 1).copied().unwrap_or(17);
            match kind {
                44 => body.extend_from_slice(&[next, 0, 0, 0, 0, 0, 0, 7]),
                _ => body.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]),
            }
        }
        let mut u = udp(sport, dport, payload);
        // IPv6 needs a UDP checksum; a wrong one only makes the receiver drop it.
        u[6..8].copy_from_slice(&[0xff, 0xff]);
        body.extend_from_slice(&u);
        let mut h = vec![0x60, 0, 0, 0];
        h.extend_from_slice(&(body.len() as u16).to_be_bytes());
        h.push(exts.first().copied().unwrap_or(17));
        h.push(64);
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        h.extend_from_slice(&body);
        ethernet(None, 0x86dd, &h)
    }
}

fn octets4(a: IpAddr) -> [u8; 4] {
    match a {
        IpAddr::V4(v) => v.octets(),
        IpAddr::V6(_) => panic!("not IPv4"),
    }
}

fn octets6(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V6(v) => v.octets(),
        IpAddr::V4(_) => panic!("not IPv6"),
    }
}

/// Headers the fast path does not take: an in-band 802.1Q tag, SCTP, and
/// IPv6 extension chains (within the walk bound, and one beyond it). The
/// frames leave the node through the pod's host-side veth, so the egress
/// program sees them byte for byte (ingress would see VLAN tags already
/// stripped by the kernel).
#[test]
fn vlan_sctp_and_ipv6_extension_headers_are_parsed_with_exact_counts() {
    let _serial = serial();
    let node = Node::new(1);
    let a = &node.pods[0];
    let exporter = Exporter::start(&node.ns.name, ONE_WINDOW);
    let (h4, h6): (IpAddr, IpAddr) = (
        "10.201.1.1".parse().unwrap(),
        "fd00:201:1::1".parse().unwrap(),
    );
    let (src4, dst4, src6, dst6) = (octets4(h4), octets4(a.v4), octets6(h6), octets6(a.v6));

    let mut out = Vec::new();
    // 7 VLAN-tagged UDP datagrams of 100 payload bytes: IP length 128.
    out.extend((0..7).map(|_| frames::vlan_udp4(100, src4, dst4, 41001, 7001, 100)));
    // 4 SCTP INITs: IP length 20 + 12 + 20 = 52.
    out.extend((0..4).map(|_| frames::sctp4(src4, dst4, 41002, 7002)));
    // 5 IPv6 UDP behind hop-by-hop, destination options and an atomic
    // fragment header: IP length 40 + 24 + 8 + 60 = 132.
    out.extend((0..5).map(|_| frames::udp6_with_exts(src6, dst6, &[0, 60, 44], 41003, 7003, 60)));
    // 3 IPv6 packets behind 7 destination-options headers, one more than the
    // walk bound: counted as such, recorded without ports.
    out.extend((0..3).map(|_| frames::udp6_with_exts(src6, dst6, &[60; 7], 41004, 7004, 10)));
    inject_frames(&node.ns, &a.host_if, out);

    let stopped = exporter.stop();
    assert_eq!(stopped.code, Some(0), "log: {:#?}", stopped.log);

    let vlan = one_flow(&stopped, h4, a.v4, 7001);
    assert_eq!(vlan["protocol"], "udp");
    assert_eq!(
        (vlan["src_port"].as_u64(), vlan["src_addr"].as_str()),
        (Some(41001), Some("10.201.1.1"))
    );
    assert_eq!(counts(vlan, "forward"), (7, 7 * 128));
    assert_eq!(vlan["initiator_hook"], "egress");

    let sctp = one_flow(&stopped, h4, a.v4, 7002);
    assert_eq!(sctp["protocol"], "sctp");
    assert_eq!(sctp["src_port"], 41002);
    assert_eq!(counts(sctp, "forward"), (4, 4 * 52));

    let ext = one_flow(&stopped, h6, a.v6, 7003);
    assert_eq!(ext["protocol"], "udp");
    assert_eq!(ext["src_port"], 41003);
    assert_eq!(counts(ext, "forward"), (5, 5 * 132));

    // Beyond the bound: no ports, protocol = the header where the walk stopped.
    let deep: Vec<&Value> = stopped
        .flows_between(h6, a.v6)
        .into_iter()
        .filter(|r| r["protocol"] == "other")
        .collect();
    assert_eq!(deep.len(), 1, "{deep:#?}");
    assert_eq!(counts(deep[0], "forward"), (3, 3 * (40 + 56 + 18)));
    assert_eq!(stopped.stopped_counter("parse_ext_limit"), 3);
}
