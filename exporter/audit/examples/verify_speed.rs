//! Timed sealing and verification of ~1M records (one node, 1000
//! one-second batches of 1000 ECS flows of ~900 bytes, checkpoints every
//! 60 s): prints, per hash suite, CPU time per record for sealing and
//! records/s per core for verifying. CPU time (from /proc) rather than wall
//! time, because the machine is shared.
//! `cargo run --release -p flowscribe-audit --example verify_speed [BATCHES [OUT.jsonl]] [--suite v1|v2|v3] [--exact-capacity] [--doc-bytes N] [--stream]`
//! (both suites, one line each, unless `--suite` names one; OUT.jsonl gets
//! the archive of the last suite run; `--exact-capacity`: documents without
//! spare room for the audit fields, as the harness had before round 3;
//! `--doc-bytes 3000`: documents grown to ~3 KB with ECS labels, the size of
//! real flow documents with pod labels; `--stream`: instead of the
//! default unordered verification, verify as an ordered file-sink archive
//! twice, whole-archive and streaming, and print records/s per core and the
//! peak number of records each held).
#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

/// This process's CPU time (user + system) in seconds, from /proc: on a
/// shared machine wall time overstates what the work costs.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat: indices 11 and 12 after the
    // closing parenthesis (which ends field 2).
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<f64>().ok()))
        .sum();
    ticks / 100.0
}

use flowscribe_audit::canonical::Canonicalizer;
use flowscribe_audit::hash::{
    BatchPosition, Hash, LeafPosition, content_digest, leaf_hash, merkle_root,
};
use flowscribe_audit::hash_v2::DigestBatch;
use flowscribe_audit::{Auditor, AuditorOptions, MemoryStateStore, Suite};

/// The floor the hash definitions set (docs/compliance.md): CPU seconds
/// for the hashing alone on the data records' canonical forms, computed
/// beforehand and not timed. v1: SHA-256 content digest, leaf hash, Merkle
/// nodes; v2: BLAKE3 digests 64 records at a time, the flat root.
fn hash_floor(suite: Suite, lines: &[Vec<u8>]) -> f64 {
    let mut canon = Canonicalizer::new();
    let forms: Vec<Vec<u8>> = lines
        .iter()
        // Data records carry the dotted audit key; seals and checkpoints nest it.
        .filter(|l| memchr::memmem::find(l, b"\"flowscribe.audit\":").is_some())
        .map(|l| canon.canonicalize(l).unwrap().to_vec())
        .collect();
    // v3 hashes each form's hash input as v2 hashes forms (made here, not
    // timed: the floor is the hashing).
    let forms: Vec<Vec<u8>> = if suite == Suite::V3 {
        let mut splitter = flowscribe_audit::hash_v3::Splitter::default();
        forms
            .iter()
            .map(|f| {
                let mut input = Vec::new();
                splitter.hash_input(f, &mut input);
                input
            })
            .collect()
    } else {
        forms
    };
    if suite != Suite::V1 {
        let cpu = cpu_seconds();
        let mut batch = DigestBatch::new();
        let (mut digests, mut group): (Vec<Hash>, Vec<Hash>) = (Vec::new(), Vec::new());
        for (b, forms) in forms.chunks(1000).enumerate() {
            digests.clear();
            for g in forms.chunks(64) {
                let refs: Vec<&[u8]> = g.iter().map(Vec::as_slice).collect();
                batch.digests(&refs, &mut group);
                digests.extend_from_slice(&group);
            }
            let pos = BatchPosition {
                chain: &[3u8; 16],
                view: "ecs",
                run: 1,
                batch: b as u64,
                first_seq: b as u64 * 1000,
            };
            std::hint::black_box(Suite::V2.batch_root(pos, &digests));
        }
        return cpu_seconds() - cpu;
    }
    let cpu = cpu_seconds();
    let chain = [3u8; 16];
    let mut leaves = Vec::with_capacity(1000);
    for (b, batch) in forms.chunks(1000).enumerate() {
        leaves.clear();
        for (i, form) in batch.iter().enumerate() {
            let pos = LeafPosition {
                chain: &chain,
                view: "ecs",
                run: 1,
                batch: b as u64,
                seq: (b * 1000 + i) as u64,
            };
            leaves.push(leaf_hash(pos, &content_digest(form)));
        }
        std::hint::black_box(merkle_root(&leaves));
    }
    cpu_seconds() - cpu
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut suites = vec![Suite::V1, Suite::V2];
    if let Some(i) = args.iter().position(|a| a == "--suite") {
        let name = args.get(i + 1).cloned().unwrap_or_default();
        suites = vec![Suite::from_name(&name).expect("--suite v1, v2 or v3")];
        args.drain(i..(i + 2).min(args.len()));
    }
    let exact_capacity = args.iter().any(|a| a == "--exact-capacity");
    args.retain(|a| a != "--exact-capacity");
    let stream = args.iter().any(|a| a == "--stream");
    args.retain(|a| a != "--stream");
    let mut doc_bytes = 0;
    if let Some(i) = args.iter().position(|a| a == "--doc-bytes") {
        doc_bytes = args
            .get(i + 1)
            .and_then(|n| n.parse().ok())
            .expect("--doc-bytes N");
        args.drain(i..(i + 2).min(args.len()));
    }
    let batches: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let out = args.get(1).cloned();
    for suite in suites {
        run(
            suite,
            batches,
            out.as_deref(),
            exact_capacity,
            doc_bytes,
            stream,
        );
    }
}

/// Verify as an ordered archive, streaming or not: CPU seconds and the
/// most records the verifier held at once (sampled every 1000 lines).
fn verify_ordered(lines: &[Vec<u8>], stream: bool, records: u64) -> (f64, usize) {
    let options = flowscribe_audit::verify::VerifyOptions {
        ordered: true,
        stream,
        ..common::options()
    };
    let cpu = cpu_seconds();
    let mut v = flowscribe_audit::verify::Verifier::new(options);
    let f = v.add_file("archive.jsonl");
    let mut peak = 0;
    for (i, l) in lines.iter().enumerate() {
        v.add_line(f, i as u64 + 1, l);
        if i % 1000 == 0 {
            peak = peak.max(v.retained_records());
        }
    }
    peak = peak.max(v.retained_records());
    let report = v.finish();
    let cpu = cpu_seconds() - cpu;
    assert!(report.ok(), "{}", report.render());
    assert_eq!(report.chains[0].records_verified, records);
    (cpu, peak)
}

fn run(
    suite: Suite,
    batches: u64,
    out: Option<&str>,
    exact_capacity: bool,
    doc_bytes: usize,
    stream: bool,
) {
    // Phase 1 (not measured): the ECS documents, as the encoder would give them.
    // An encoder writing into a growing buffer leaves room at the end;
    // `format!` leaves none, and appending the audit fields would then time
    // a reallocation (and the page faults of a fresh gigabyte) per record
    // that belong to this harness, not to sealing. `--exact-capacity` keeps
    // the old behaviour, to compare with rounds before this one.
    let spare = if exact_capacity { 0 } else { 256 };
    let docs: Vec<Vec<Vec<u8>>> = (0..batches)
        .map(|b| {
            (0..1000)
                .map(|i| {
                    let mut d = common::flow_json_sized("node-a", b * 1000 + i, doc_bytes);
                    d.reserve_exact(spare);
                    d
                })
                .collect()
        })
        .collect();
    // Phase 2: the exporter's integrity work: stamp, append the audit
    // fields, seal (canonical form, SHA-256, Merkle root, head), and a signed
    // checkpoint every 60 batches (one batch per second).
    let options = AuditorOptions::new("node-a", vec!["ecs".into()]).with_suite(suite);
    let (mut auditor, _) = Auditor::start(
        MemoryStateStore::default(),
        common::signer(),
        options,
        common::t(0),
        [3; 16],
    )
    .unwrap();
    let mut lines: Vec<Vec<u8>> = Vec::with_capacity(batches as usize * 1001 + 64);
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    for (b, mut batch) in docs.into_iter().enumerate() {
        let now = common::t(b as u64 * 1000);
        for cp in auditor.tick(now).unwrap().checkpoints {
            lines.push(cp.to_json_line());
        }
        let stamp = auditor.stamp(batch.len(), now).unwrap();
        for (i, d) in batch.iter_mut().enumerate() {
            stamp.append_fields("ecs", i as u64, d);
        }
        let seal = auditor.seal("ecs", &stamp, &batch, now).unwrap();
        lines.extend(batch);
        lines.push(seal.to_json_line());
    }
    let (cps, _) = auditor.shutdown(common::t(batches * 1000)).unwrap();
    lines.extend(cps.iter().map(|c| c.to_json_line()));
    let (seal_wall, seal_cpu) = (wall.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    let records = batches * 1000;
    // With a second argument, also write the archive there (a file sink's
    // output) for `flowscribe verify`.
    if let Some(path) = out {
        let mut text = lines.join(&b'\n');
        text.push(b'\n');
        std::fs::write(path, text).unwrap();
    }
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    if stream {
        let (whole_cpu, whole_peak) = verify_ordered(&lines, false, records);
        let (stream_cpu, stream_peak) = verify_ordered(&lines, true, records);
        println!(
            "suite {} records {records} MB {:.0} | ordered verify: {:.0} records/s per core, peak {whole_peak} records held | --stream: {:.0} records/s per core, peak {stream_peak} records held",
            suite.name(),
            bytes as f64 / 1e6,
            records as f64 / whole_cpu,
            records as f64 / stream_cpu,
        );
        return;
    }
    let floor = hash_floor(suite, &lines);
    // Phase 3: the auditor's side.
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    let report = common::verify_lines(&lines, common::options());
    let (verify_wall, verify_cpu) = (wall.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    assert!(report.ok(), "{}", report.render());
    assert_eq!(report.chains[0].records_verified, records);
    println!(
        "suite {} records {records} lines {} MB {:.0} | seal: {:.2} s CPU ({:.2} s wall) = {:.2} us/record | verify: {:.2} s CPU ({:.2} s wall) = {:.0} records/s per core | hashing alone: {:.2} us/record",
        suite.name(),
        lines.len(),
        bytes as f64 / 1e6,
        seal_cpu,
        seal_wall,
        seal_cpu * 1e6 / records as f64,
        verify_cpu,
        verify_wall,
        records as f64 / verify_cpu,
        floor * 1e6 / records as f64,
    );
}
