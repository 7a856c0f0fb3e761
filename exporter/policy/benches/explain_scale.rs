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
//! Pods come from Deployments of 7-8 replicas that share labels, service
//! account and ports (20 per namespace: 20,000 identities).
//!
//! Before criterion runs, the per-flow latency distribution (p50, p99,
//! p99.9) is measured flow by flow with `Instant` and printed: on a fresh
//! index (100,000 random flows, nothing memoised); (c) flows whose source
//! is a new identity (10,000); (b) new pairs of known identities (40,000,
//! after one flow from every pod to the next); (a) the same identity pairs
//! between other replicas, and the same pods again (the pair memo
//! answers). The criterion batch repeats the same 1,024 flows, so it
//! measures the last case.
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

include!("support/flows.rs");
include!("support/scale_data.rs");

const BATCH: usize = 1024;

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
    // Per flow, on a fresh index each: (c) cold, nothing memoised; and
    // flows whose source is a new identity (a Deployment never seen) to
    // pods whose identities are known.
    let (fresh, _) = PolicyIndex::from_objects(&objects);
    eprintln!("per flow, cold: {}", latency_distribution(&fresh, &sample));
    let (fresh, _) = PolicyIndex::from_objects(&objects);
    for f in &second_half_flows(&pods) {
        black_box(explain(&fresh, f, Observed::Delivered));
    }
    eprintln!(
        "per flow, (c) new identity: {}",
        latency_distribution(&fresh, &new_identity_flows(&pods, 11))
    );
    // (b) a new pair of known identities: every identity interned and its
    // selection memoised, the pair not.
    let (fresh, _) = PolicyIndex::from_objects(&objects);
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
    eprintln!(
        "{} pods, {} identities",
        pods.len(),
        fresh.interned_identities()
    );
    // 40,000 pairs, the 20,000 the loop above memoised and 40,000 more
    // below: within the pair memo's capacity (131,072).
    let new_pairs = flows(&pods, 40_000, 9);
    eprintln!(
        "per flow, (b) new pair of known identities: {}",
        latency_distribution(&fresh, &new_pairs)
    );
    // (a) steady state: the same identity pairs between other replicas
    // (other pods, other addresses); and the same pods again.
    let replicas = replica_flows(&pods, &new_pairs);
    // The replicas' pods are known (seen the other way round, with other
    // identity pairs), as on a node in its steady state.
    for f in &reversed_flows(&replicas) {
        black_box(explain(&fresh, f, Observed::Delivered));
    }
    eprintln!(
        "per flow, (a) identity pair seen, other replicas: {}",
        latency_distribution(&fresh, &replicas)
    );
    eprintln!(
        "per flow, (a) identity pair seen, same pods: {}",
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
