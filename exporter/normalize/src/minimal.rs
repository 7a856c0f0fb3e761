//! The minimal flow record (`"record": "flow"`) and loss record
//! (`"record": "loss"`), one JSON object per line. docs/record.md documents
//! every field; the tests below pin the exact shape.

use std::time::SystemTime;

use flowscribe_model::{
    CaptureLoss, EndReason, Flow, FlowState, HookDirection, Orientation, protocol_name,
};
use serde_json::{Value, json};

/// RFC 3339 with nanoseconds, UTC.
fn ts(t: SystemTime) -> String {
    humantime::format_rfc3339_nanos(t).to_string()
}

fn state(s: FlowState) -> &'static str {
    match s {
        FlowState::Started => "started",
        FlowState::Live => "live",
        FlowState::Completed => "completed",
        FlowState::OneSided => "one-sided",
    }
}

fn end_reason(e: EndReason) -> &'static str {
    match e {
        EndReason::TcpFin => "tcp-fin",
        EndReason::TcpRst => "tcp-rst",
        EndReason::IdleTimeout => "idle-timeout",
        EndReason::Shutdown => "shutdown",
    }
}

/// TCP flag names in header bit order.
fn tcp_flags(flags: u8) -> Vec<&'static str> {
    const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
    NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| flags & (1 << i) != 0)
        .map(|(_, n)| *n)
        .collect()
}

/// One flow as a minimal JSON record.
pub fn flow(f: &Flow, node: &str) -> Value {
    let tcp = f.key.protocol == 6;
    let side = |c: &flowscribe_model::DirectionCounters| {
        let mut v = json!({"packets": c.packets, "bytes": c.bytes});
        if tcp {
            v["tcp_flags"] = json!(tcp_flags(c.tcp_flags));
        }
        v
    };
    let mut v = json!({
        "record": "flow",
        "node": node,
        "family": if f.key.src_addr.is_ipv4() { "ipv4" } else { "ipv6" },
        "protocol": protocol_name(f.key.protocol),
        "iana_number": f.key.protocol,
        "src_addr": f.key.src_addr.to_string(),
        "src_port": f.key.src_port,
        "dst_addr": f.key.dst_addr.to_string(),
        "dst_port": f.key.dst_port,
        "interface": f.interface.name,
        "ifindex": f.interface.ifindex,
        "initiator_hook": match f.initiator_hook {
            HookDirection::Ingress => "ingress",
            HookDirection::Egress => "egress",
        },
        "interfaces": f.interfaces.iter().map(|i| i.name.clone()).collect::<Vec<_>>(),
        "orientation": match f.orientation {
            Orientation::Syn => "syn",
            Orientation::FirstPacket => "first-packet",
        },
        "window_start": ts(f.window_start),
        "window_end": ts(f.window_end),
        "first_packet": ts(f.first_packet),
        "last_packet": ts(f.last_packet),
        "forward": side(&f.forward),
        "reverse": side(&f.reverse),
        "state": state(f.state),
    });
    if let Some(e) = f.end_reason {
        v["end_reason"] = json!(end_reason(e));
    }
    if let Some(d) = &f.drops {
        v["dropped"] = json!({
            "packets_forward": d.packets_forward,
            "packets_reverse": d.packets_reverse,
            "bytes": d.bytes,
            "last_reason": d.last_reason,
            "last_netns_ino": d.last_netns_ino,
        });
    }
    v
}

/// One loss report as a minimal JSON record.
pub fn loss(l: &CaptureLoss, node: &str) -> Value {
    json!({
        "record": "loss",
        "node": node,
        "stage": "capture",
        "reason": l.reason.as_str(),
        "loses_flow_data": l.reason.loses_flow_data(),
        "count": l.count,
        "bytes": l.bytes,
        "window_start": ts(l.window_start),
        "window_end": ts(l.window_end),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowscribe_model::{DirectionCounters, Drops, FlowKey, InterfaceRef, LossReason};
    use std::time::{Duration, UNIX_EPOCH};

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    #[test]
    fn flow_record_shape() {
        let iface = |i: u32, n: &str| InterfaceRef {
            ifindex: i,
            name: n.to_string(),
        };
        let f = Flow {
            key: FlowKey {
                src_addr: "10.0.0.1".parse().unwrap(),
                dst_addr: "10.0.0.2".parse().unwrap(),
                src_port: 40000,
                dst_port: 80,
                protocol: 6,
            },
            interface: iface(3, "veth-a"),
            initiator_hook: HookDirection::Ingress,
            interfaces: vec![iface(3, "veth-a"), iface(4, "veth-b")],
            orientation: Orientation::Syn,
            window_start: t(0),
            window_end: t(10),
            first_packet: t(0),
            last_packet: t(9),
            forward: DirectionCounters {
                packets: 5,
                bytes: 400,
                tcp_flags: 0x1b,
            },
            reverse: DirectionCounters {
                packets: 4,
                bytes: 3000,
                tcp_flags: 0x12,
            },
            state: FlowState::Completed,
            end_reason: Some(EndReason::TcpFin),
            drops: Some(Drops {
                packets_forward: 1,
                packets_reverse: 0,
                bytes: 60,
                last_reason: "NETFILTER_DROP".into(),
                last_netns_ino: 4026532389,
            }),
        };
        let want = json!({
            "record": "flow", "node": "n1", "family": "ipv4", "protocol": "tcp",
            "iana_number": 6, "src_addr": "10.0.0.1", "src_port": 40000,
            "dst_addr": "10.0.0.2", "dst_port": 80, "interface": "veth-a", "ifindex": 3,
            "initiator_hook": "ingress", "interfaces": ["veth-a", "veth-b"],
            "orientation": "syn",
            "window_start": "2023-11-14T22:13:20.000000000Z",
            "window_end": "2023-11-14T22:13:30.000000000Z",
            "first_packet": "2023-11-14T22:13:20.000000000Z",
            "last_packet": "2023-11-14T22:13:29.000000000Z",
            "forward": {"packets": 5, "bytes": 400, "tcp_flags": ["FIN", "SYN", "PSH", "ACK"]},
            "reverse": {"packets": 4, "bytes": 3000, "tcp_flags": ["SYN", "ACK"]},
            "state": "completed", "end_reason": "tcp-fin",
            "dropped": {"packets_forward": 1, "packets_reverse": 0, "bytes": 60,
                        "last_reason": "NETFILTER_DROP", "last_netns_ino": 4026532389u64},
        });
        assert_eq!(flow(&f, "n1"), want);
    }

    #[test]
    fn loss_record_shape() {
        let l = CaptureLoss {
            reason: LossReason::FlowMapFull,
            count: 7,
            bytes: 700,
            window_start: t(0),
            window_end: t(1),
        };
        let v = loss(&l, "n1");
        assert_eq!(v["reason"], "flow_map_full");
        assert_eq!(v["loses_flow_data"], true);
        assert_eq!(
            (v["count"].as_u64(), v["bytes"].as_u64()),
            (Some(7), Some(700))
        );
    }
}
