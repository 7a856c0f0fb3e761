//! explain() cost per flow with 1,000 NetworkPolicies across 100 namespaces
//! (10 per namespace, of the shapes people write: deny-all, namespace and
//! pod selectors, AND/OR peers, ipBlock with except, named ports, endPort
//! ranges, egress policies), plus 100 staged policies so that part of the
//! flows also get a pending evaluation. Run:
//!
//!     cargo bench -p flowscribe-policy --bench explain
//!
//! Each iteration explains a batch of 1,024 flows between random pods (20
//! per namespace) of random namespaces; divide the batch time by 1,024 for
//! the cost per flow (criterion's throughput line gives flows per second).
//! The index build from JSON is measured beside it.
#![allow(clippy::unwrap_used, reason = "bench")]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flowscribe_model::{
    DirectionCounters, Endpoint, EndpointKind, EnrichedFlow, Flow, FlowKey, FlowState,
    HookDirection, InterfaceRef, Observed, Orientation, PodIdentity,
};
use flowscribe_policy::{PolicyIndex, explain, observe};
use serde_json::{Value, json};

include!("support/flows.rs");

const NAMESPACES: usize = 100;
const PODS_PER_NAMESPACE: usize = 20;
const BATCH: usize = 1024;

fn np(ns: usize, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": name, "namespace": format!("ns-{ns}"), "uid": format!("{ns}-{name}")},
           "spec": spec})
}

fn policies() -> Vec<Value> {
    let mut out = Vec::new();
    for ns in 0..NAMESPACES {
        let team = format!("team-{}", ns % 10);
        out.push(np(
            ns,
            "deny-all-app-0",
            json!({"podSelector": {"matchLabels": {"app": "app-0"}}}),
        ));
        out.push(np(
            ns,
            "allow-team",
            json!({
            "podSelector": {"matchLabels": {"app": "app-1"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": team}}}]}]}),
        ));
        out.push(np(
            ns,
            "allow-and",
            json!({
            "podSelector": {"matchLabels": {"app": "app-2"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "app-3"}},
                                    "namespaceSelector": {"matchLabels": {"env": "prod"}}}],
                         "ports": [{"port": 8080}]}]}),
        ));
        out.push(np(
            ns,
            "allow-or",
            json!({
            "podSelector": {"matchLabels": {"app": "app-3"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "app-1"}}},
                                   {"namespaceSelector": {"matchLabels": {"env": "dev"}}}]}]}),
        ));
        out.push(np(ns, "allow-named", json!({
            "podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["app-4", "app-5"]}]},
            "ingress": [{"ports": [{"port": "http"}]}]})));
        out.push(np(ns, "egress-dns-and-internal", json!({
            "podSelector": {"matchLabels": {"app": "app-4"}},
            "policyTypes": ["Egress"],
            "egress": [
                {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
                 "ports": [{"protocol": "UDP", "port": 53}]},
                {"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.255.0.0/16"]}}]}]})));
        out.push(np(ns, "allow-tier", json!({
            "podSelector": {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]},
            "ingress": [{"from": [{"podSelector": {"matchExpressions": [{"key": "tier", "operator": "Exists"}]},
                                    "namespaceSelector": {}}]}]})));
        out.push(np(ns, "allow-range", json!({
            "podSelector": {"matchLabels": {"app": "app-6"}},
            "ingress": [{"ports": [{"port": 8000, "endPort": 9000}, {"protocol": "UDP", "port": 8000, "endPort": 9000}]}]})));
        out.push(np(
            ns,
            "deny-egress-app-2",
            json!({
            "podSelector": {"matchLabels": {"app": "app-2"}}, "policyTypes": ["Egress"]}),
        ));
        out.push(np(
            ns,
            "allow-same-ns",
            json!({
            "podSelector": {},
            "ingress": [{"from": [{"podSelector": {}}]}]}),
        ));
        // One staged change per namespace: tighten allow-team.
        out.push(
            json!({"apiVersion": "flowscribe.dev/v1alpha1", "kind": "StagedNetworkPolicy",
            "metadata": {"name": "allow-team", "namespace": format!("ns-{ns}")},
            "spec": {"podSelector": {"matchLabels": {"app": "app-1"}},
                     "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": team}}}],
                                  "ports": [{"port": 8080}]}]}}),
        );
    }
    out
}

fn pod(ns: usize, i: usize) -> (IpAddr, Endpoint) {
    let labels = BTreeMap::from([
        ("app".to_string(), format!("app-{}", i % 8)),
        ("tier".to_string(), ["web", "api", "db"][i % 3].to_string()),
        (
            "pod-template-hash".to_string(),
            format!("{:08x}", ns * 1000 + i),
        ),
    ]);
    let namespace_labels = BTreeMap::from([
        ("team".to_string(), format!("team-{}", ns % 10)),
        (
            "env".to_string(),
            ["prod", "dev", "staging"][ns % 3].to_string(),
        ),
    ]);
    let identity = PodIdentity {
        name: Arc::from(format!("app-{}-{i}", i % 8)),
        uid: Arc::from(format!("uid-{ns}-{i}")),
        namespace: Arc::from(format!("ns-{ns}")),
        labels: Arc::new(labels),
        service_account: None,
        node: None,
        workload: None,
        namespace_labels: Arc::new(namespace_labels),
        ports: Arc::from(vec![
            (Arc::from("http"), 8080u16, 6u8),
            (Arc::from("metrics"), 9090, 6),
        ]),
    };
    let mut e = Endpoint::of_kind(EndpointKind::Pod);
    e.pod = Some(Arc::new(identity));
    (
        IpAddr::from([10, (ns / 256) as u8, (ns % 256) as u8, i as u8]),
        e,
    )
}

fn flows() -> Vec<EnrichedFlow> {
    let mut rng = Lcg(42);
    let pods: Vec<Vec<(IpAddr, Endpoint)>> = (0..NAMESPACES)
        .map(|ns| (0..PODS_PER_NAMESPACE).map(|i| pod(ns, i)).collect())
        .collect();
    (0..BATCH)
        .map(|_| {
            let src = pods[rng.next(NAMESPACES)][rng.next(PODS_PER_NAMESPACE)].clone();
            let dst = pods[rng.next(NAMESPACES)][rng.next(PODS_PER_NAMESPACE)].clone();
            let dst_port = [8080, 9090, 8443, 53][rng.next(4)];
            pod_flow(src, dst, dst_port, 6)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let objects = policies();
    let (index, problems) = PolicyIndex::from_objects(&objects);
    assert!(problems.is_empty(), "{problems:?}");
    let flows = flows();

    // Print what the batch exercises, so the numbers can be read.
    let traces: Vec<_> = flows
        .iter()
        .map(|f| explain(&index, f, observe(&f.flow)))
        .collect();
    let denied = traces
        .iter()
        .filter(|t| t.enforced.verdict.as_str() == "deny")
        .count();
    let pending = traces.iter().filter(|t| t.pending.is_some()).count();
    let hits: usize = traces
        .iter()
        .map(|t| t.enforced.egress.hits.len() + t.enforced.ingress.hits.len())
        .sum();
    eprintln!(
        "{} policies ({} staged) in {NAMESPACES} namespaces; batch of {BATCH} flows: {denied} denied, {pending} with a pending trace, {:.1} hits per flow",
        objects.len() - NAMESPACES,
        NAMESPACES,
        hits as f64 / BATCH as f64
    );

    let mut group = c.benchmark_group("explain");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("1000_policies_100_namespaces/batch_1024", |b| {
        b.iter(|| {
            for f in &flows {
                black_box(explain(&index, black_box(f), Observed::Delivered));
            }
        })
    });
    // The same without the staged policies: no pending evaluation.
    let enforced_only: Vec<Value> = objects
        .iter()
        .filter(|o| o["kind"] == "NetworkPolicy")
        .cloned()
        .collect();
    let (enforced_index, _) = PolicyIndex::from_objects(&enforced_only);
    group.bench_function("1000_policies_100_namespaces_no_staged/batch_1024", |b| {
        b.iter(|| {
            for f in &flows {
                black_box(explain(&enforced_index, black_box(f), Observed::Delivered));
            }
        })
    });
    group.finish();

    let mut group = c.benchmark_group("index");
    group.throughput(Throughput::Elements(objects.len() as u64));
    group.bench_function("build_from_json_1100_policies", |b| {
        b.iter(|| black_box(PolicyIndex::from_objects(black_box(&objects))))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
