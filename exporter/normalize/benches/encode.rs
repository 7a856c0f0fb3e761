//! Records per second per core for each schema, record build included:
//! every iteration encodes the seven golden cases (allowed, denied,
//! staged-would-deny, stale, external, ICMP, IPv6) from their canonical
//! `ExplainedFlow`s. `encode_line/*` is `encode_flow`, `otlp_record` one
//! protobuf `LogRecord` per record (what the OTLP sink queues),
//! `otlp_batch` a 511-record request. `workload/*` encodes 512-flow
//! batches of `fixtures::workload` with the writers and with the cached
//! encoders (`EcsEncoder`, `OtlpEncoder`, kept across batches): `shared`
//! draws pods from 200 identities and policies from 50, `distinct` gives
//! every flow its own objects (cycling through 8,192 flows, twice the
//! cache's bound), `newconns` shares like `shared` but every record is a
//! connection of its own (8,192 flow keys), so no connection template is
//! used; in `shared` the same 512 connections are reported batch after
//! batch and written from their templates. `otlp-cached` hashes each
//! record's event id alone; `otlp-cached-batch-ids` hashes a batch's ids
//! side by side first, as the daemon does. Goals (issue 5): ECS JSON ≥ 1.5 M/s, OTLP protobuf
//! ≥ 3 M/s per core; docs/benchmarks.md has the runs.
//!
//! `event_id/*` hashes the shared workload's event ids (layout v1 and v2
//! one by one, v2 a batch at a time as the daemon does).
//!
//! Run: `cargo bench -p flowscribe-normalize --bench encode -- --quick`.
#![allow(clippy::unwrap_used, reason = "benchmark setup")]

#[path = "../tests/fixtures/mod.rs"]
mod fixtures;

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flowscribe_model::ExplainedFlow;
use flowscribe_normalize::event_id::EventIdHasher;
use flowscribe_normalize::{Schema, ecs, encode_flow, otlp};

fn flows() -> Vec<ExplainedFlow> {
    fixtures::CASES.iter().map(|c| fixtures::case(c)).collect()
}

fn per_schema(c: &mut Criterion) {
    let ctx = fixtures::context();
    let observed = fixtures::observed();
    let flows = flows();
    let mut group = c.benchmark_group("encode_line");
    group.throughput(Throughput::Elements(flows.len() as u64));
    for schema in Schema::ALL {
        let mut out = Vec::with_capacity(64 * 1024);
        group.bench_function(schema.name(), |b| {
            b.iter(|| {
                out.clear();
                for f in &flows {
                    encode_flow(schema, &ctx, black_box(f), observed, &mut out).unwrap();
                    out.push(b'\n');
                }
                black_box(out.len())
            })
        });
    }
    group.finish();
}

/// OTLP as the sink queues it: one `LogRecord` per record, protobuf.
fn otlp_protobuf_record(c: &mut Criterion) {
    let ctx = fixtures::context();
    let observed = fixtures::observed();
    let flows = flows();
    let mut group = c.benchmark_group("otlp_record");
    group.throughput(Throughput::Elements(flows.len() as u64));
    let mut out = Vec::with_capacity(64 * 1024);
    group.bench_function("protobuf", |b| {
        b.iter(|| {
            out.clear();
            for f in &flows {
                otlp::write_log_record_protobuf(&ctx, black_box(f), observed, &mut out);
            }
            black_box(out.len())
        })
    });
    group.finish();
}

/// OTLP as a sink sends it: a batch of records in one request, protobuf.
fn otlp_protobuf_batch(c: &mut Criterion) {
    let ctx = fixtures::context();
    let observed = fixtures::observed();
    let flows = flows();
    const BATCH: usize = 511;
    let batch: Vec<&ExplainedFlow> = flows.iter().cycle().take(BATCH).collect();
    let mut group = c.benchmark_group("otlp_batch");
    group.throughput(Throughput::Elements(BATCH as u64));
    // The sink path: records written straight to protobuf, buffers reused.
    group.bench_function("protobuf", |b| {
        let mut writer = otlp::ProtobufRequestWriter::new();
        let mut out = Vec::with_capacity(4 * 1024 * 1024);
        b.iter(|| {
            for f in &batch {
                writer.push_flow(&ctx, black_box(f), observed);
            }
            out.clear();
            writer.finish(&ctx, &mut out);
            black_box(out.len())
        })
    });
    // Through the prost types (what callers that edit records pay).
    group.bench_function("protobuf_via_prost_types", |b| {
        b.iter(|| {
            let records = batch
                .iter()
                .map(|f| otlp::log_record(&ctx, black_box(f), observed))
                .collect();
            let request = otlp::export_request(&ctx, records);
            black_box(otlp::encode_protobuf(&request).len())
        })
    });
    group.bench_function("json", |b| {
        let mut out = Vec::with_capacity(4 * 1024 * 1024);
        b.iter(|| {
            let records = batch
                .iter()
                .map(|f| otlp::log_record(&ctx, black_box(f), observed))
                .collect();
            let request = otlp::export_request(&ctx, records);
            out.clear();
            otlp::write_json(&request, &mut out);
            black_box(out.len())
        })
    });
    group.finish();
}

/// 512-flow batches of a workload, uncached and cached, ECS lines and
/// OTLP `LogRecord`s.
fn workload(c: &mut Criterion) {
    const BATCH: usize = 512;
    let ctx = fixtures::context();
    let observed = fixtures::observed();
    let mut group = c.benchmark_group("workload");
    group.throughput(Throughput::Elements(BATCH as u64));
    for (sharing, flows) in [
        ("shared", fixtures::workload(BATCH, 200, 50, true)),
        ("distinct", fixtures::workload(16 * BATCH, 200, 50, false)),
        ("newconns", fixtures::workload(16 * BATCH, 200, 50, true)),
    ] {
        let batches: Vec<&[ExplainedFlow]> = flows.chunks(BATCH).collect();
        let mut out = Vec::with_capacity(4 * 1024 * 1024);
        let mut next = 0;
        let mut batch = || {
            next = (next + 1) % batches.len();
            batches[next]
        };
        group.bench_function(format!("ecs/{sharing}"), |b| {
            b.iter(|| {
                out.clear();
                for f in batch() {
                    ecs::write_flow_document(&ctx, black_box(f), observed, &mut out);
                    out.push(b'\n');
                }
                black_box(out.len())
            })
        });
        let mut encoder = ecs::EcsEncoder::new(ctx.clone());
        group.bench_function(format!("ecs-cached/{sharing}"), |b| {
            b.iter(|| {
                out.clear();
                for f in batch() {
                    encoder.encode(black_box(f), observed, &mut out);
                    out.push(b'\n');
                }
                black_box(out.len())
            })
        });
        group.bench_function(format!("otlp-record/{sharing}"), |b| {
            b.iter(|| {
                out.clear();
                for f in batch() {
                    otlp::write_log_record_protobuf(&ctx, black_box(f), observed, &mut out);
                }
                black_box(out.len())
            })
        });
        let mut encoder = otlp::OtlpEncoder::new(ctx.clone());
        group.bench_function(format!("otlp-cached/{sharing}"), |b| {
            b.iter(|| {
                out.clear();
                for f in batch() {
                    encoder.write_log_record(black_box(f), observed, &mut out);
                }
                black_box(out.len())
            })
        });
        // As the daemon does: the batch's event ids hashed side by side
        // first (timed), then each record given its id.
        let mut encoder = otlp::OtlpEncoder::new(ctx.clone());
        let mut hasher = EventIdHasher::new(&ctx.node);
        let mut ids = Vec::with_capacity(BATCH);
        group.bench_function(format!("otlp-cached-batch-ids/{sharing}"), |b| {
            b.iter(|| {
                out.clear();
                let flows = batch();
                ids.clear();
                hasher.ids(
                    black_box(flows).iter().map(|f| {
                        let f = &f.flow.flow;
                        (&f.key, f.window_start, f.window_end)
                    }),
                    &mut ids,
                );
                for (f, id) in flows.iter().zip(&ids) {
                    encoder.write_log_record_with_event_id(
                        black_box(f),
                        observed,
                        Some(*id),
                        &mut out,
                    );
                }
                black_box(out.len())
            })
        });
    }
    group.finish();
}

/// Event ids of the shared workload's 512 flows: layout v1 (SHA-256) one
/// by one, layout v2 one by one (`event_id`, the node's key kept per
/// thread) and a batch side by side (`EventIdHasher::ids`, what the daemon
/// does).
fn event_ids(c: &mut Criterion) {
    use flowscribe_model::FlowKey;
    use flowscribe_normalize::event_id::{EventId, event_id, event_id_v1};
    use std::time::SystemTime;
    const BATCH: usize = 512;
    let ctx = fixtures::context();
    let flows = fixtures::workload(BATCH, 200, 50, true);
    let mut group = c.benchmark_group("event_id");
    group.throughput(Throughput::Elements(BATCH as u64));
    type OneByOne = fn(&str, &FlowKey, SystemTime, SystemTime) -> EventId;
    for (name, id) in [("v1", event_id_v1 as OneByOne), ("v2", event_id)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                for f in &flows {
                    let f = &f.flow.flow;
                    black_box(id(
                        &ctx.node,
                        black_box(&f.key),
                        f.window_start,
                        f.window_end,
                    ));
                }
            })
        });
    }
    let mut hasher = EventIdHasher::new(&ctx.node);
    let mut ids = Vec::with_capacity(BATCH);
    group.bench_function("v2-batch", |b| {
        b.iter(|| {
            ids.clear();
            hasher.ids(
                black_box(&flows).iter().map(|f| {
                    let f = &f.flow.flow;
                    (&f.key, f.window_start, f.window_end)
                }),
                &mut ids,
            );
            black_box(ids.len())
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    per_schema,
    otlp_protobuf_record,
    otlp_protobuf_batch,
    workload,
    event_ids
);
criterion_main!(benches);
