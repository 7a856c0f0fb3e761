//! HTTP sinks end to end on loopback: batch → request body (NDJSON or HEC
//! envelopes) → gzip (optional) → HTTP/1.1 POST → response read and
//! classified, in records per second.
//!
//! `cargo bench -p flowscribe-sinks --bench http_sinks`
//!
//! What is measured: `Transport::send` of the Elasticsearch and Splunk HEC
//! transports (and Loki's) for one batch of 500 ECS documents, on a current-thread tokio
//! runtime (one core). Not measured: ECS encoding (normalize's own bench),
//! the queue and the driver. The documents are the seven ECS golden
//! fixtures (`schemas/ecs/golden`, minified, 3.2 KB on average) cycled,
//! each with a 64-hex event id. The receiver is a hyper server on its own
//! thread that reads the whole body and answers `{"errors":false}` (ES) or
//! `{"text":"Success","code":0}` (HEC) or 200 with an empty body (Loki): it
//! does not parse, so the number is the sender's cost plus one loopback
//! round trip per batch. `build_only` is the body building alone, without
//! gzip or network (for Loki it includes the protobuf encoding and snappy).

#![allow(clippy::unwrap_used)] // a benchmark that cannot set up should stop

#[path = "../tests/fakes/mod.rs"]
mod fakes;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flowscribe_sinks::core::driver::{SendOutcomes, Transport};
use flowscribe_sinks::core::http::{HttpAuth, SecretSource};
use flowscribe_sinks::core::queue::QueuedRecord;
use flowscribe_sinks::elasticsearch::{BulkRequestBuilder, ElasticsearchConfig};
use flowscribe_sinks::loki::{LokiConfig, LokiRequestBuilder};
use flowscribe_sinks::splunk::SplunkHecConfig;

const BATCH: usize = 500;

fn documents() -> Vec<Vec<u8>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/ecs/golden");
    let mut docs = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap();
        docs.push(serde_json::to_vec(&v).unwrap());
    }
    docs.sort();
    docs
}

fn batch() -> Vec<QueuedRecord> {
    let docs = documents();
    (0..BATCH)
        .map(|i| QueuedRecord {
            seq: i as u64,
            event_id: format!("{:064x}", (i as u128) * 0x9E37_79B9_7F4A_7C15),
            payload: Bytes::from(docs[i % docs.len()].clone()),
        })
        .collect()
}

/// A receiver on its own runtime thread that answers `reply` as JSON.
fn receiver(reply: &'static str) -> (tokio::runtime::Runtime, fakes::FakeServer) {
    fakes::fixed_reply_server("application/json", reply.as_bytes())
}

fn delivered(outcomes: &SendOutcomes) -> bool {
    use flowscribe_sinks::core::classify::{Action, classify};
    match outcomes {
        SendOutcomes::Batch(o) => classify(o).action == Action::Delivered,
        SendOutcomes::PerRecord(v) => v.iter().all(|o| classify(o).action == Action::Delivered),
    }
}

fn bench_http_sinks(c: &mut Criterion) {
    let records = batch();
    let bytes: usize = records.iter().map(|r| r.payload.len()).sum();
    eprintln!(
        "batch: {BATCH} records, {bytes} document bytes ({} B/record)",
        bytes / BATCH
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("http_sinks");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(30);

    let builder = BulkRequestBuilder::new(&ElasticsearchConfig::new("http://127.0.0.1:9200"));
    g.bench_function("build_only/es_bulk", |b| {
        b.iter(|| builder.body(std::hint::black_box(&records)))
    });

    let (_es_rt, es) = receiver(r#"{"errors":false}"#);
    for gzip in [false, true] {
        let mut cfg = ElasticsearchConfig::new(es.url());
        cfg.gzip = gzip;
        let mut t = cfg.build().unwrap();
        assert!(delivered(&rt.block_on(t.send(&records)).outcomes));
        let name = if gzip { "gzip1" } else { "plain" };
        g.bench_with_input(BenchmarkId::new("es_bulk", name), &records, |b, r| {
            b.iter(|| rt.block_on(t.send(r)))
        });
    }

    let (_hec_rt, hec) = receiver(r#"{"text":"Success","code":0}"#);
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "bench-token").unwrap();
    for gzip in [false, true] {
        let mut cfg = SplunkHecConfig::new(
            hec.url(),
            HttpAuth::Splunk(SecretSource::File(token.clone())),
            "node-1",
        );
        cfg.gzip = gzip;
        let mut t = cfg.build().unwrap();
        assert!(delivered(&rt.block_on(t.send(&records)).outcomes));
        let name = if gzip { "gzip1" } else { "plain" };
        g.bench_with_input(BenchmarkId::new("splunk_hec", name), &records, |b, r| {
            b.iter(|| rt.block_on(t.send(r)))
        });
    }

    // Loki parses each record to read its label values: measured apart.
    let loki_builder = LokiRequestBuilder::new(&LokiConfig::new("http://127.0.0.1:3100"));
    let now = std::time::SystemTime::now();
    g.bench_function("build_only/loki", |b| {
        b.iter(|| loki_builder.body(std::hint::black_box(&records), now))
    });
    let (_loki_rt, loki) = receiver("");
    let mut t = LokiConfig::new(loki.url()).build().unwrap();
    assert!(delivered(&rt.block_on(t.send(&records)).outcomes));
    g.bench_with_input(BenchmarkId::new("loki", "snappy"), &records, |b, r| {
        b.iter(|| rt.block_on(t.send(r)))
    });
    g.finish();
}

criterion_group!(benches, bench_http_sinks);
criterion_main!(benches);
