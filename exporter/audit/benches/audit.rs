//! What integrity costs: sealing on the exporter side (per record), and
//! verifying on the auditor's side (records per second). Hand-run:
//! `cargo bench -p flowscribe-audit --bench audit`; results in
//! docs/benchmarks.md.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flowscribe_audit::canonical::{Canonicalizer, canonical_bytes};
use flowscribe_audit::hash::{LeafPosition, content_digest, leaf_hash};
use flowscribe_audit::hash_v2::{DigestBatch, content_digest_v2};
use flowscribe_audit::{Auditor, AuditorOptions, MemoryStateStore, Suite};

/// Bench names: v1 keeps the names of the rounds before v2 existed.
fn named(base: &str, suite: Suite) -> String {
    match suite {
        Suite::V1 => base.to_string(),
        Suite::V2 | Suite::V3 => format!("{base}_{}", suite.name()),
    }
}

/// Exporter side: stamp + append the audit fields + seal one batch of 1000
/// ECS flow documents (~900 bytes each), as the pipeline will per batch.
fn seal(c: &mut Criterion) {
    let docs: Vec<Vec<u8>> = (0..1000)
        .map(|n| common::flow_json_of("node-a", n, u64::MAX))
        .collect();
    let mut g = c.benchmark_group("audit");
    g.throughput(Throughput::Elements(docs.len() as u64));
    for suite in [Suite::V1, Suite::V2] {
        g.bench_function(named("stamp_append_seal_1000_records", suite), |b| {
            let options = AuditorOptions::new("node-a", vec!["ecs".into()]).with_suite(suite);
            let (mut a, _) = Auditor::start(
                MemoryStateStore::default(),
                common::signer(),
                options,
                common::t(0),
                [1; 16],
            )
            .unwrap();
            b.iter(|| {
                let stamp = a.stamp(docs.len(), common::t(1)).unwrap();
                let lines: Vec<Vec<u8>> = docs
                    .iter()
                    .enumerate()
                    .map(|(i, d)| {
                        let mut l = d.clone();
                        stamp.append_fields("ecs", i as u64, &mut l);
                        l
                    })
                    .collect();
                black_box(a.seal("ecs", &stamp, &lines, common::t(1)).unwrap())
            })
        });
    }
    // The part of sealing that is not hashing: parse + canonical form.
    let v: serde_json::Value = serde_json::from_slice(&docs[0]).unwrap();
    g.throughput(Throughput::Elements(1));
    g.bench_function("canonical_form_one_record", |b| {
        b.iter(|| black_box(canonical_bytes(black_box(&v))))
    });
    // The streaming canonical form: the general path (parse, flatten,
    // sort) and a line in a learned shape (the hot path of seal and verify).
    let mut line = docs[0].clone();
    flowscribe_audit::AuditFields {
        chain: [1; 16],
        view: "ecs".into(),
        run: 1,
        batch: 0,
        seq: 0,
        suite: Suite::V1,
    }
    .append_to_json_object(&mut line);
    g.bench_function("canonicalize_general_one_record", |b| {
        let mut c = Canonicalizer::general_only();
        b.iter(|| black_box(c.canonicalize(black_box(&line)).unwrap().len()))
    });
    // One record per iteration, each a different record of the view (a
    // shape compares a line with the last one it matched: the same line
    // again would be a best case no exporter sees).
    let lines: Vec<Vec<u8>> = docs
        .iter()
        .take(64)
        .enumerate()
        .map(|(i, d)| {
            let mut line = d.clone();
            flowscribe_audit::AuditFields {
                chain: [1; 16],
                view: "ecs".into(),
                run: 1,
                batch: 0,
                seq: i as u64,
                suite: Suite::V1,
            }
            .append_to_json_object(&mut line);
            line
        })
        .collect();
    g.bench_function("canonicalize_learned_shape_one_record", |b| {
        let mut c = Canonicalizer::new();
        c.canonicalize(&line).unwrap();
        let mut next = 0;
        b.iter(|| {
            next = (next + 1) % lines.len();
            black_box(c.canonicalize(black_box(&lines[next])).unwrap().len())
        });
        assert!(c.fast_hits() > 0);
    });
    // The floor the hash definitions set: content digest and leaf hash of
    // one record (plus, per record, about one Merkle node in a batch).
    let form = Canonicalizer::new().canonicalize(&line).unwrap().to_vec();
    g.bench_function("hash_content_and_leaf_one_record", |b| {
        let chain = [1u8; 16];
        b.iter(|| {
            let digest = content_digest(black_box(&form));
            black_box(leaf_hash(
                LeafPosition {
                    chain: &chain,
                    view: "ecs",
                    run: 1,
                    batch: 0,
                    seq: 0,
                },
                &digest,
            ))
        })
    });
    // v2: BLAKE3 of one padded form alone (no faster than SHA-256 at this
    // size), and 64 forms side by side, as seal and verify hash them.
    g.bench_function("hash_content_v2_one_record", |b| {
        b.iter(|| black_box(content_digest_v2(black_box(&form))))
    });
    let forms: Vec<Vec<u8>> = docs
        .iter()
        .take(64)
        .map(|d| Canonicalizer::new().canonicalize(d).unwrap().to_vec())
        .collect();
    let refs: Vec<&[u8]> = forms.iter().map(Vec::as_slice).collect();
    g.throughput(Throughput::Elements(64));
    g.bench_function("hash_content_sha256_64_records", |b| {
        b.iter(|| {
            for f in &refs {
                black_box(content_digest(black_box(f)));
            }
        })
    });
    g.bench_function("hash_content_v2_64_records", |b| {
        let mut batch = DigestBatch::new();
        let mut out = Vec::new();
        b.iter(|| {
            batch.digests(black_box(&refs), &mut out);
            black_box(out[63])
        })
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_one_record", |b| {
        b.iter(|| {
            black_box(serde_json::from_slice::<serde_json::Value>(black_box(&docs[0])).unwrap())
        })
    });
    // The checkpoint: one Ed25519 signature per view per minute.
    let signer = common::signer();
    g.bench_function("sign_checkpoint", |b| {
        b.iter(|| {
            black_box(signer.sign(black_box(
                "flowscribe/x/ecs\n1\nAAAA\nflowscribe run 1 batches 1 checkpoint 1 time 1\n",
            )))
        })
    });
    g.finish();
}

/// Auditor side: verify an archive of 100k records (100 batches of 1000,
/// checkpoints every 60 batches and at the end).
fn verify(c: &mut Criterion) {
    let mut g = c.benchmark_group("audit");
    g.sample_size(10);
    for suite in [Suite::V1, Suite::V2] {
        let archive = common::run_node_in(
            suite,
            "node-a",
            MemoryStateStore::default(),
            0,
            1000,
            100,
            1000,
            true,
            [2; 16],
        )
        .0;
        g.throughput(Throughput::Elements(archive.records));
        g.bench_function(named("verify_100k_records", suite), |b| {
            b.iter(|| {
                let r = common::verify_lines(&archive.lines, common::options());
                assert!(r.ok());
                black_box(r)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, seal, verify);
criterion_main!(benches);
