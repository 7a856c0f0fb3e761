//! Timed sealing and verification of ~1M records (one node, 1000
//! one-second batches of 1000 ECS flows of ~900 bytes, checkpoints every
//! 60 s): prints CPU time per record for sealing and records/s per core for
//! verifying. CPU time (from /proc) rather than wall time, because the
//! machine is shared.
//! `cargo run --release -p flowscribe-audit --example verify_speed [BATCHES [OUT.jsonl]]`
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
use flowscribe_audit::hash::{LeafPosition, content_digest, leaf_hash, merkle_root};
use flowscribe_audit::{Auditor, AuditorOptions, MemoryStateStore};

/// The floor the hash definitions set (docs/compliance.md): CPU seconds
/// for the SHA-256 work alone on the data records' canonical forms (content
/// digest, leaf hash, Merkle nodes), computed beforehand and not timed.
fn hash_floor(lines: &[Vec<u8>]) -> f64 {
    let mut canon = Canonicalizer::new();
    let forms: Vec<Vec<u8>> = lines
        .iter()
        // Data records carry the dotted audit key; seals and checkpoints nest it.
        .filter(|l| memchr::memmem::find(l, b"\"flowscribe.audit\":").is_some())
        .map(|l| canon.canonicalize(l).unwrap().to_vec())
        .collect();
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
    let batches: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    // Phase 1 (not measured): the ECS documents, as the encoder would give them.
    let docs: Vec<Vec<Vec<u8>>> = (0..batches)
        .map(|b| {
            (0..1000)
                .map(|i| common::flow_json("node-a", b * 1000 + i))
                .collect()
        })
        .collect();
    // Phase 2: the exporter's integrity work: stamp, append the audit
    // fields, seal (canonical form, SHA-256, Merkle root, head), and a signed
    // checkpoint every 60 batches (one batch per second).
    let options = AuditorOptions::new("node-a", vec!["ecs".into()]);
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
    if let Some(path) = std::env::args().nth(2) {
        let mut text = lines.join(&b'\n');
        text.push(b'\n');
        std::fs::write(&path, text).unwrap();
    }
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    let floor = hash_floor(&lines);
    // Phase 3: the auditor's side.
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    let report = common::verify_lines(&lines, common::options());
    let (verify_wall, verify_cpu) = (wall.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    assert!(report.ok(), "{}", report.render());
    assert_eq!(report.chains[0].records_verified, records);
    println!(
        "records {records} lines {} MB {:.0} | seal: {:.2} s CPU ({:.2} s wall) = {:.2} us/record | verify: {:.2} s CPU ({:.2} s wall) = {:.0} records/s per core | hashing alone: {:.2} us/record",
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
