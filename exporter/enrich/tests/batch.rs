//! `enrich_batch` over captured flows: both ends resolved, and a flow to a
//! ClusterIP joined with its post-DNAT twin to name the backend pod.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flowscribe_enrich::{IdentityIndex, IndexConfig, enrich_batch, manifests};
use flowscribe_model::{
    DirectionCounters, EndpointKind, Flow, FlowKey, FlowState, HookDirection, InterfaceRef,
    Orientation,
};

const MANIFESTS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: a, uid: c1, labels: {app: client}}
spec: {serviceAccountName: client-sa, nodeName: n1}
status: {podIP: 10.1.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, namespace: b, uid: d1, labels: {app: db}}
spec: {serviceAccountName: db-sa, nodeName: n1}
status: {podIP: 10.1.0.3}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: b, uid: s1}
spec: {clusterIP: 10.96.0.10, ports: [{name: pg, port: 5432}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: db-abc, namespace: b, labels: {kubernetes.io/service-name: db}}
addressType: IPv4
endpoints: [{addresses: [10.1.0.3]}]
"#;

fn flow(src: &str, sport: u16, dst: &str, dport: u16, at: SystemTime) -> Flow {
    let iface = InterfaceRef {
        ifindex: 3,
        name: "veth0".into(),
    };
    Flow {
        key: FlowKey {
            src_addr: src.parse().expect("ip"),
            dst_addr: dst.parse().expect("ip"),
            src_port: sport,
            dst_port: dport,
            protocol: 6,
        },
        interface: iface.clone(),
        initiator_hook: HookDirection::Ingress,
        interfaces: vec![iface],
        orientation: Orientation::Syn,
        window_start: at,
        window_end: at,
        first_packet: at,
        last_packet: at,
        forward: DirectionCounters::default(),
        reverse: DirectionCounters::default(),
        state: FlowState::Started,
        end_reason: None,
        drops: None,
    }
}

#[test]
fn service_flows_carry_their_backend_pod() {
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut loaded = manifests::Loaded::default();
    manifests::load_text("m.yaml", MANIFESTS, &mut loaded);
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    let mut index = IdentityIndex::new(IndexConfig::default());
    for o in loaded.objects {
        index.apply(flowscribe_enrich::Change::Upsert(o), now);
    }

    let flows = vec![
        // Pre-DNAT, at the client's interface.
        flow("10.1.0.2", 40000, "10.96.0.10", 5432, now),
        // Post-DNAT, at the backend's interface.
        flow("10.1.0.2", 40000, "10.1.0.3", 5432, now),
        // Another connection to the service whose twin was not seen here.
        flow("10.1.0.2", 40001, "10.96.0.10", 5432, now),
    ];
    let out = enrich_batch(&index, flows, false);
    assert_eq!(out.len(), 3);

    let src = &out[0].source;
    assert_eq!(src.kind, EndpointKind::Pod);
    let client = src.pod.as_ref().expect("client pod");
    assert_eq!((&*client.namespace, &*client.name), ("a", "client"));
    assert_eq!(client.service_account.as_deref(), Some("client-sa"));

    let svc = &out[0].destination;
    assert_eq!(svc.kind, EndpointKind::Service);
    assert_eq!(svc.service.as_ref().map(|s| &*s.name), Some("db"));
    assert_eq!(
        svc.service.as_ref().and_then(|s| s.port_name.as_deref()),
        Some("pg")
    );
    assert_eq!(
        svc.pod.as_ref().map(|p| &*p.name),
        Some("db-0"),
        "backend joined"
    );

    assert_eq!(out[1].destination.kind, EndpointKind::Pod);
    assert_eq!(
        out[1].destination.pod.as_ref().map(|p| &*p.name),
        Some("db-0")
    );

    assert_eq!(out[2].destination.kind, EndpointKind::Service);
    assert!(out[2].destination.pod.is_none(), "no twin, no backend");
    assert!(!out[2].identity_degraded);
}
