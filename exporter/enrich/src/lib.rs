//! Stage ②: who is talking. Turns captured [`Flow`]s into [`EnrichedFlow`]s
//! with an [`Endpoint`](flowscribe_model::Endpoint) on each side, resolved
//! by address *at the time of the flow*.
//!
//! Sources ([`manifests`], and the API watchers in [`kube_source`]) parse objects
//! with [`objects`] and feed [`index::Change`]s to the single writer of the
//! [`IdentityIndex`]. [`enrich_batch`] is pure: no IO, no async, no clocks.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::net::IpAddr;

use flowscribe_model::{Endpoint, EndpointKind, EnrichedFlow, Flow};

pub mod index;
pub mod kube_policies;
pub mod kube_source;
pub mod manifests;
pub mod networks;
pub mod objects;

pub use index::{Change, IdentityIndex, IndexConfig};

/// Resolve both ends of every flow of a batch.
///
/// A flow to a Service's virtual IP is also joined with its post-DNAT twin
/// in the same batch (same initiator address, port and protocol, destined to
/// one of the service's endpoints, seen at the backend's interface): the
/// service endpoint then carries the backend pod.
pub fn enrich_batch(index: &IdentityIndex, flows: Vec<Flow>, degraded: bool) -> Vec<EnrichedFlow> {
    // Both ends of every flow in one batch lookup (see resolve_batch).
    let queries: Vec<_> = flows
        .iter()
        .flat_map(|f| {
            let (k, at) = (f.key, f.last_packet);
            [
                (k.src_addr, None, at),
                (k.dst_addr, Some((k.dst_port, k.protocol)), at),
            ]
        })
        .collect();
    let mut ends = index.resolve_batch(&queries).into_iter();
    // Two ends per flow, in order; the fallback never happens.
    let mut next = || {
        ends.next()
            .unwrap_or_else(|| Endpoint::of_kind(EndpointKind::Unknown))
    };
    let mut out: Vec<EnrichedFlow> = flows
        .into_iter()
        .map(|flow| EnrichedFlow {
            source: next(),
            destination: next(),
            flow,
            identity_degraded: degraded,
        })
        .collect();
    join_service_backends(index, &mut out);
    out
}

fn join_service_backends(index: &IdentityIndex, flows: &mut [EnrichedFlow]) {
    if !flows
        .iter()
        .any(|f| f.destination.kind == EndpointKind::Service)
    {
        return;
    }
    let mut by_initiator: HashMap<(IpAddr, u16, u8), Vec<usize>> = HashMap::new();
    for (i, f) in flows.iter().enumerate() {
        let k = f.flow.key;
        by_initiator
            .entry((k.src_addr, k.src_port, k.protocol))
            .or_default()
            .push(i);
    }
    for i in 0..flows.len() {
        let Some(service) = flows[i].destination.service.clone() else {
            continue;
        };
        let k = flows[i].flow.key;
        let Some(twins) = by_initiator.get(&(k.src_addr, k.src_port, k.protocol)) else {
            continue;
        };
        let backend = twins.iter().find_map(|&j| {
            let t = &flows[j];
            (j != i && index.is_backend(&service, t.flow.key.dst_addr))
                .then(|| t.destination.pod.clone())
                .flatten()
        });
        if let Some(pod) = backend {
            flows[i].destination.pod = Some(pod);
        }
    }
}
