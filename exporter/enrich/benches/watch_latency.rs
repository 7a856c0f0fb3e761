//! Watch event -> reflected in emitted records, measured against the fake
//! API server (real HTTP, real kube client and watchers, the daemon's
//! consumer loop).
//!
//! The daemon applies source events before every drain, and a drain's
//! records are resolved with the index as it is then. So an event is in
//! the records of the first drain after it has been *applied*; the latency
//! of one event is (arrival at the consumer - the API change) plus the wait
//! for the next drain. This bench runs that loop: a drain every
//! `DRAIN` (the daemon's `capture.drain_interval`), 300 pod relabels at
//! random moments, and for each the time until a drain resolves the pod
//! with its new label.
#![allow(clippy::unwrap_used, reason = "bench")]

#[allow(
    dead_code,
    reason = "shared with the tests; not every helper is used here"
)]
#[path = "../tests/fake_apiserver/mod.rs"]
mod fake_apiserver;

use std::net::IpAddr;
use std::sync::mpsc::channel;
use std::time::{Duration, Instant, SystemTime};

use fake_apiserver::FakeApiServer;
use flowscribe_enrich::kube_source::{SourceState, spawn_watchers};
use flowscribe_enrich::{IdentityIndex, IndexConfig};
use serde_json::json;

const EVENTS: usize = 300;

fn pod(generation: usize) -> serde_json::Value {
    json!({
        "metadata": {"name": "web", "namespace": "shop", "uid": "uid-web",
                     "labels": {"generation": generation.to_string()}},
        "spec": {"nodeName": "n1"},
        "status": {"phase": "Running", "podIP": "10.1.0.1"}
    })
}

fn run(drain: Duration) -> Vec<Duration> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let fake = rt.block_on(FakeApiServer::start());
    fake.apply("namespaces", json!({"metadata": {"name": "shop"}}));
    fake.apply("pods", pod(0));
    let (tx, rx) = channel();
    {
        let _enter = rt.enter();
        let client =
            kube::Client::try_from(kube::Config::new(fake.url().parse().unwrap())).unwrap();
        spawn_watchers(client, tx);
    }
    let mut index = IdentityIndex::new(IndexConfig::default());
    let mut state = SourceState::default();
    let addr: IpAddr = "10.1.0.1".parse().unwrap();
    let label = |index: &IdentityIndex| {
        index
            .resolve(addr, None, SystemTime::now())
            .pod
            .and_then(|p| {
                p.labels
                    .iter()
                    .find(|(k, _)| &**k == "generation")
                    .map(|(_, v)| v.to_string())
            })
    };
    // An LCG picks when in the drain cycle each change happens.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut latencies = Vec::with_capacity(EVENTS);
    let mut next_drain = Instant::now() + drain;
    let mut pending: Option<(usize, Instant)> = None;
    let mut generation = 0;
    while latencies.len() < EVENTS {
        if pending.is_none() {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let offset = drain.mul_f64((x >> 11) as f64 / (1u64 << 53) as f64);
            // Change the pod at a random point of the cycle.
            std::thread::sleep(offset.min(next_drain.saturating_duration_since(Instant::now())));
            generation += 1;
            fake.apply("pods", pod(generation));
            pending = Some((generation, Instant::now()));
        }
        // The daemon's loop: wait for the drain, apply what arrived, resolve.
        std::thread::sleep(next_drain.saturating_duration_since(Instant::now()));
        next_drain += drain;
        while let Ok((at, ev)) = rx.try_recv() {
            state.apply(&mut index, at, ev);
        }
        if let Some((g, since)) = pending
            && label(&index).as_deref() == Some(g.to_string().as_str())
        {
            latencies.push(since.elapsed());
            pending = None;
        }
    }
    latencies.sort();
    latencies
}

fn main() {
    for drain in [
        Duration::from_millis(1000),
        Duration::from_millis(500),
        Duration::from_millis(200),
    ] {
        let l = run(drain);
        let p = |q: f64| l[((l.len() - 1) as f64 * q) as usize];
        println!(
            "drain every {drain:?}: {EVENTS} watch events -> records: p50 {:?} p99 {:?} max {:?}",
            p(0.5),
            p(0.99),
            l[l.len() - 1]
        );
    }
}
