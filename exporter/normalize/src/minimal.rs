//! The minimal flow record (`"record": "flow"`) and loss record
//! (`"record": "loss"`), one JSON object per line. docs/record.md documents
//! every field; the tests below pin the exact shape.

use flowscribe_model::{CaptureLoss, Endpoint, EnrichedFlow, Flow, protocol_name};

use crate::view::{rfc3339, tcp_flag_names};
use serde_json::{Value, json};

/// One flow as a minimal JSON record.
pub fn flow(f: &Flow, node: &str) -> Value {
    let tcp = f.key.protocol == 6;
    let side = |c: &flowscribe_model::DirectionCounters| {
        let mut v = json!({"packets": c.packets, "bytes": c.bytes});
        if tcp {
            v["tcp_flags"] = json!(tcp_flag_names(c.tcp_flags));
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
        "interface": &*f.interface.name,
        "ifindex": f.interface.ifindex,
        "initiator_hook": f.initiator_hook.as_str(),
        "interfaces": f.interfaces.iter().map(|i| &*i.name).collect::<Vec<_>>(),
        "orientation": f.orientation.as_str(),
        "window_start": rfc3339(f.window_start),
        "window_end": rfc3339(f.window_end),
        "first_packet": rfc3339(f.first_packet),
        "last_packet": rfc3339(f.last_packet),
        "forward": side(&f.forward),
        "reverse": side(&f.reverse),
        "state": f.state.as_str(),
    });
    if let Some(e) = f.end_reason {
        v["end_reason"] = json!(e.as_str());
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

/// One end of a flow; absent fields are omitted.
pub fn endpoint(e: &Endpoint) -> Value {
    let mut v = json!({"kind": e.kind.as_str()});
    if let Some(p) = &e.pod {
        v["namespace"] = json!(&*p.namespace);
        v["pod"] = json!(&*p.name);
        v["pod_uid"] = json!(&*p.uid);
        v["labels"] = json!(&*p.labels);
        if let Some(sa) = &p.service_account {
            v["service_account"] = json!(&**sa);
        }
        if let Some(w) = &p.workload {
            v["workload"] = json!({"kind": &*w.kind, "name": &*w.name});
        }
    }
    if let Some(s) = &e.service {
        let mut svc = json!({"namespace": &*s.namespace, "name": &*s.name});
        if let Some(port) = &s.port_name {
            svc["port_name"] = json!(&**port);
        }
        v["service"] = svc;
    }
    if let Some(n) = &e.node {
        v["node"] = json!(&**n);
    }
    if let Some(n) = &e.network {
        v["network"] = json!(&**n);
    }
    if let Some(s) = e.stale {
        v["stale"] = json!({"deleted_at": rfc3339(s.deleted_at)});
    }
    v
}

/// One enriched flow: the flow record plus `source`, `destination` and
/// `identity_degraded`.
pub fn enriched_flow(f: &EnrichedFlow, node: &str) -> Value {
    let mut v = flow(&f.flow, node);
    v["source"] = endpoint(&f.source);
    v["destination"] = endpoint(&f.destination);
    v["identity_degraded"] = json!(f.identity_degraded);
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
        "window_start": rfc3339(l.window_start),
        "window_end": rfc3339(l.window_end),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowscribe_model::{
        DirectionCounters, Drops, EndReason, FlowKey, FlowState, HookDirection, InterfaceRef,
        LossReason, Orientation,
    };
    use std::time::SystemTime;
    use std::time::{Duration, UNIX_EPOCH};

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    #[test]
    fn flow_record_shape() {
        let iface = |i: u32, n: &str| InterfaceRef {
            ifindex: i,
            name: n.into(),
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
    fn endpoint_shape() {
        use flowscribe_model::{EndpointKind, PodIdentity, ServiceRef, Stale, Workload};
        use std::sync::Arc;
        let pod = PodIdentity {
            name: "web-1".into(),
            uid: "u1".into(),
            namespace: "shop".into(),
            labels: Arc::new([("app".to_string(), "web".to_string())].into()),
            service_account: Some("web-sa".into()),
            node: Some("n1".into()),
            workload: Some(Workload {
                kind: "Deployment".into(),
                name: "web".into(),
            }),
            namespace_labels: Arc::default(),
            ports: Arc::new([]),
        };
        let mut e = Endpoint::of_kind(EndpointKind::Service);
        e.pod = Some(Arc::new(pod));
        e.node = Some("n1".into());
        e.service = Some(Arc::new(ServiceRef {
            name: "web".into(),
            namespace: "shop".into(),
            port_name: Some("http".into()),
        }));
        e.network = Some("service-network".into());
        e.stale = Some(Stale { deleted_at: t(5) });
        assert_eq!(
            endpoint(&e),
            json!({
                "kind": "service", "namespace": "shop", "pod": "web-1", "pod_uid": "u1",
                "labels": {"app": "web"}, "service_account": "web-sa",
                "workload": {"kind": "Deployment", "name": "web"},
                "service": {"namespace": "shop", "name": "web", "port_name": "http"},
                "node": "n1", "network": "service-network",
                "stale": {"deleted_at": "2023-11-14T22:13:25.000000000Z"},
            })
        );
        assert_eq!(
            endpoint(&Endpoint::of_kind(EndpointKind::PublicNetwork)),
            json!({"kind": "public-network"})
        );
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
