//! explain() at cluster scale: 10,000 policy objects of every kind over
//! 150,000 pods (1,000 namespaces of 150 pods), the issue 4 goal (≤ 2 µs
//! per flow at p99, full rebuild ≤ 100 ms, one changed policy ≤ 5 ms).
//! Run:
//!
//!     cargo bench -p flowscribe-policy --bench explain_scale
//!
//! The policy mix per namespace: 7 NetworkPolicies of the common shapes, 2
//! Calico NetworkPolicies (one in the `platform` tier, one in `default`);
//! cluster-wide: 601 GlobalNetworkPolicies over 2 tiers, 100
//! AdminNetworkPolicies, 98 ClusterNetworkPolicies, 1
//! BaselineAdminNetworkPolicy; staged: 100 StagedNetworkPolicies and 100
//! Calico StagedNetworkPolicies. Flows go between random pods.
//!
//! Before criterion runs, the per-flow latency distribution (p50, p99,
//! p99.9) is measured flow by flow with `Instant` over 100,000 flows, and
//! printed: on a fresh index (nothing memoised); for new pairs of pods whose
//! selections are memoised (after one flow from every pod to the next);
//! and for the same pairs again (the pair memo answers). The criterion
//! batch repeats the same 1,024 flows, so it measures the last case.
#![allow(clippy::unwrap_used, reason = "bench")]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flowscribe_model::{
    DirectionCounters, Endpoint, EndpointKind, EnrichedFlow, Flow, FlowKey, FlowState,
    HookDirection, InterfaceRef, Observed, Orientation, PodIdentity,
};
use flowscribe_policy::{PolicyIndex, explain, parse_policy, parse_tier};
use serde_json::{Value, json};

const NAMESPACES: usize = 1000;
const PODS_PER_NAMESPACE: usize = 150;
const BATCH: usize = 1024;

/// A deterministic generator, so runs compare.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

fn ns_name(ns: usize) -> String {
    format!("ns-{ns}")
}

fn np(ns: usize, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": name, "namespace": ns_name(ns), "uid": format!("{ns}-{name}")},
           "spec": spec})
}

fn calico(kind: &str, ns: Option<usize>, name: &str, spec: Value) -> Value {
    let mut meta = json!({"name": name});
    if let Some(ns) = ns {
        meta["namespace"] = json!(ns_name(ns));
    }
    json!({"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": meta, "spec": spec})
}

fn policies() -> Vec<Value> {
    let mut out = vec![
        json!({"apiVersion": "projectcalico.org/v3", "kind": "Tier",
               "metadata": {"name": "security"}, "spec": {"order": 100}}),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "Tier",
               "metadata": {"name": "platform"}, "spec": {"order": 200, "defaultAction": "Pass"}}),
    ];
    for ns in 0..NAMESPACES {
        let team = format!("team-{}", ns % 50);
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
        out.push(np(ns, "allow-named", json!({
            "podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["app-4", "app-5"]}]},
            "ingress": [{"ports": [{"port": "http"}]}]})));
        out.push(np(ns, "egress-dns-and-internal", json!({
            "podSelector": {"matchLabels": {"app": "app-4"}}, "policyTypes": ["Egress"],
            "egress": [
                {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
                 "ports": [{"protocol": "UDP", "port": 53}]},
                {"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.255.0.0/16"]}}]}]})));
        out.push(np(
            ns,
            "allow-range",
            json!({
            "podSelector": {"matchLabels": {"app": "app-6"}},
            "ingress": [{"ports": [{"port": 8000, "endPort": 9000}]}]}),
        ));
        out.push(np(
            ns,
            "allow-same-ns",
            json!({
            "podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}),
        ));
        out.push(calico(
            "NetworkPolicy",
            Some(ns),
            "platform.metrics",
            json!({
            "tier": "platform", "order": 10, "selector": "has(app) && app != 'app-9'",
            "ingress": [{"action": "Allow", "protocol": "TCP",
                         "source": {"namespaceSelector": "projectcalico.org/name == 'monitoring'"},
                         "destination": {"ports": ["metrics"]}}]}),
        ));
        out.push(calico("NetworkPolicy", Some(ns), "default.deny-legacy", json!({
            "order": 500, "selector": "version in {'v1', 'v2'}",
            "ingress": [{"action": "Deny", "source": {"selector": "version == 'v0'", "namespaceSelector": "all()"}}]})));
        if ns % 10 == 0 {
            out.push(json!({"apiVersion": "flowscribe.dev/v1alpha1", "kind": "StagedNetworkPolicy",
                "metadata": {"name": "allow-team", "namespace": ns_name(ns)},
                "spec": {"podSelector": {"matchLabels": {"app": "app-1"}},
                         "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": team}}}],
                                      "ports": [{"port": 8080}]}]}}));
            out.push(calico(
                "StagedNetworkPolicy",
                Some(ns),
                "default.deny-legacy",
                json!({
                "stagedAction": "Delete"}),
            ));
        }
    }
    for i in 0..601 {
        let tier = if i % 2 == 0 { "security" } else { "platform" };
        out.push(calico("GlobalNetworkPolicy", None, &format!("{tier}.g-{i}"), json!({
            "tier": tier, "order": i,
            "selector": format!("app == 'app-{}' && pcns.team == 'team-{}'", i % 10, i % 50),
            "types": ["Ingress", "Egress"],
            "ingress": [{"action": "Pass", "source": {"nets": ["10.0.0.0/8"]}}],
            "egress": [{"action": "Deny", "destination": {"nets": [format!("203.0.{}.0/24", i % 256)]}},
                       {"action": "Pass"}]})));
    }
    for i in 0..100 {
        out.push(json!({"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
            "metadata": {"name": format!("anp-{i}")},
            "spec": {"priority": i, "subject": {"namespaces": {"matchLabels": {"team": format!("team-{}", i % 50)}}},
                     "ingress": [{"name": "deny-quarantine", "action": "Deny",
                                  "from": [{"namespaces": {"matchLabels": {"quarantine": "true"}}}]},
                                 {"name": "pass-monitoring", "action": "Pass",
                                  "from": [{"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]}],
                     "egress": [{"name": "deny-metadata", "action": "Deny", "to": [{"networks": ["169.254.169.254/32"]}]}]}}));
    }
    for i in 0..98 {
        out.push(json!({"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
            "metadata": {"name": format!("cnp-{i}")},
            "spec": {"tier": if i % 2 == 0 { "Admin" } else { "Baseline" }, "priority": i,
                     "subject": {"pods": {"namespaceSelector": {"matchLabels": {"env": "prod"}},
                                          "podSelector": {"matchLabels": {"app": format!("app-{}", i % 10)}}}},
                     "ingress": [{"action": "Deny", "from": [{"pods": {"namespaceSelector": {"matchLabels": {"env": "dev"}},
                                                                       "podSelector": {}}}],
                                  "protocols": [{"tcp": {"destinationPort": {"range": {"start": 9000, "end": 9100}}}}]}]}}));
    }
    out.push(json!({"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "BaselineAdminNetworkPolicy",
        "metadata": {"name": "default"},
        "spec": {"subject": {"namespaces": {"matchLabels": {"env": "prod"}}},
                 "ingress": [{"action": "Deny", "from": [{"namespaces": {"matchLabels": {"env": "dev"}}}]}]}}));
    out
}

fn pod(ns: usize, i: usize) -> (IpAddr, Endpoint) {
    let labels = BTreeMap::from([
        ("app".to_string(), format!("app-{}", i % 10)),
        ("version".to_string(), format!("v{}", i % 4)),
        (
            "pod-template-hash".to_string(),
            format!("{:08x}", ns * 1000 + i),
        ),
    ]);
    let namespace_labels = BTreeMap::from([
        ("team".to_string(), format!("team-{}", ns % 50)),
        (
            "env".to_string(),
            ["prod", "dev", "staging"][ns % 3].to_string(),
        ),
        ("kubernetes.io/metadata.name".to_string(), ns_name(ns)),
    ]);
    let identity = PodIdentity {
        name: Arc::from(format!("app-{}-{i}", i % 10)),
        uid: Arc::from(format!("uid-{ns}-{i}")),
        namespace: Arc::from(ns_name(ns)),
        labels: Arc::new(labels),
        service_account: Some(Arc::from(format!("app-{}", i % 10))),
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
    let n = ns * PODS_PER_NAMESPACE + i;
    (
        IpAddr::from([10, (n >> 16) as u8, (n >> 8) as u8, n as u8]),
        e,
    )
}

fn all_pods() -> Vec<(IpAddr, Endpoint)> {
    (0..NAMESPACES)
        .flat_map(|ns| (0..PODS_PER_NAMESPACE).map(move |i| pod(ns, i)))
        .collect()
}

fn flows(pods: &[(IpAddr, Endpoint)], n: usize, seed: u64) -> Vec<EnrichedFlow> {
    let mut rng = Lcg(seed);
    let interface = InterfaceRef {
        ifindex: 2,
        name: "eth0".to_string(),
    };
    (0..n)
        .map(|_| {
            let (src_addr, source) = pods[rng.next(pods.len())].clone();
            let (dst_addr, destination) = pods[rng.next(pods.len())].clone();
            let (dst_port, protocol) =
                [(8080, 6), (9090, 6), (8443, 6), (53, 17), (9050, 6)][rng.next(5)];
            EnrichedFlow {
                flow: Flow {
                    key: FlowKey {
                        src_addr,
                        dst_addr,
                        src_port: 40000,
                        dst_port,
                        protocol,
                    },
                    interface: interface.clone(),
                    initiator_hook: HookDirection::Egress,
                    interfaces: vec![interface.clone()],
                    orientation: Orientation::Syn,
                    window_start: SystemTime::UNIX_EPOCH,
                    window_end: SystemTime::UNIX_EPOCH,
                    first_packet: SystemTime::UNIX_EPOCH,
                    last_packet: SystemTime::UNIX_EPOCH,
                    forward: DirectionCounters {
                        packets: 3,
                        bytes: 180,
                        tcp_flags: 0x02,
                    },
                    reverse: DirectionCounters {
                        packets: 2,
                        bytes: 120,
                        tcp_flags: 0x12,
                    },
                    state: FlowState::Started,
                    end_reason: None,
                    drops: None,
                },
                source,
                destination,
                identity_degraded: false,
            }
        })
        .collect()
}

fn percentiles(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    format!(
        "p50 {:?}, p99 {:?}, p99.9 {:?}, max {:?}",
        at(0.5),
        at(0.99),
        at(0.999),
        samples[samples.len() - 1]
    )
}

fn latency_distribution(index: &PolicyIndex, flows: &[EnrichedFlow]) -> String {
    let samples: Vec<Duration> = flows
        .iter()
        .map(|f| {
            let start = Instant::now();
            black_box(explain(index, black_box(f), Observed::Delivered));
            start.elapsed()
        })
        .collect();
    percentiles(samples)
}

fn bench(c: &mut Criterion) {
    let objects = policies();
    let policy_count = objects.len() - 2;
    let (index, problems) = PolicyIndex::from_objects(&objects);
    assert!(problems.is_empty(), "{problems:?}");
    let pods = all_pods();
    let sample = flows(&pods, 100_000, 7);

    let traces: Vec<_> = sample
        .iter()
        .take(10_000)
        .map(|f| explain(&index, f, Observed::Delivered))
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
        "{policy_count} policies + 2 tiers, {} pods; of 10,000 flows: {denied} denied, {pending} with a pending trace, {:.1} hits per flow",
        pods.len(),
        hits as f64 / 10_000.0
    );
    drop(traces);
    // Where a rebuild's time goes: parsing the JSON, then compiling.
    let start = Instant::now();
    let parsed: Vec<_> = objects.iter().filter_map(parse_policy).collect();
    let tiers: Vec<_> = objects.iter().filter_map(parse_tier).collect();
    let parse_time = start.elapsed();
    let start = Instant::now();
    black_box(PolicyIndex::build_with_tiers(parsed, tiers));
    eprintln!(
        "rebuild, once: parse {parse_time:?}, compile {:?}",
        start.elapsed()
    );
    // Per flow: cold (a fresh index, nothing memoised); a new pair of
    // known pods (every pod's selection memoised, the pair not); the same
    // pairs again (the pair memo answers).
    let (fresh, _) = PolicyIndex::from_objects(&objects);
    eprintln!("per flow, cold: {}", latency_distribution(&fresh, &sample));
    let every_pod: Vec<EnrichedFlow> = (0..pods.len())
        .map(|i| {
            let mut f = sample[0].clone();
            (f.flow.key.src_addr, f.source) = pods[i].clone();
            (f.flow.key.dst_addr, f.destination) = pods[(i + 1) % pods.len()].clone();
            f
        })
        .collect();
    for f in &every_pod {
        black_box(explain(&fresh, f, Observed::Delivered));
    }
    // 50,000: within the pair memo's capacity (65,536).
    let new_pairs = flows(&pods, 50_000, 9);
    eprintln!(
        "per flow, new pair of known pods: {}",
        latency_distribution(&fresh, &new_pairs)
    );
    eprintln!(
        "per flow, repeated pair: {}",
        latency_distribution(&fresh, &new_pairs)
    );

    let batch = flows(&pods, BATCH, 42);
    let mut group = c.benchmark_group("explain_scale");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("10k_policies_150k_pods/batch_1024", |b| {
        b.iter(|| {
            for f in &batch {
                black_box(explain(&index, black_box(f), Observed::Delivered));
            }
        })
    });
    group.finish();

    let mut group = c.benchmark_group("index_scale");
    group.sample_size(10);
    group.bench_function("rebuild_from_json_10k_policies", |b| {
        b.iter(|| black_box(PolicyIndex::from_objects(black_box(&objects))))
    });
    // One changed policy: parse it and upsert it into a built index,
    // alternating between two versions so every iteration is a change.
    let mut live = PolicyIndex::from_objects(&objects).0;
    let versions = [
        np(
            17,
            "allow-team",
            json!({"podSelector": {"matchLabels": {"app": "app-1"}},
                                    "ingress": [{"from": [{"podSelector": {}}]}]}),
        ),
        np(
            17,
            "allow-team",
            json!({"podSelector": {"matchLabels": {"app": "app-1"}},
                                    "ingress": [{"ports": [{"port": 443}]}]}),
        ),
    ];
    let mut turn = 0;
    group.bench_function("one_changed_policy_10k_policies", |b| {
        b.iter(|| {
            turn ^= 1;
            let parsed = parse_policy(&versions[turn]).unwrap();
            live.upsert(parsed);
        })
    });
    assert_eq!(live.policies().len(), index.policies().len());
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
