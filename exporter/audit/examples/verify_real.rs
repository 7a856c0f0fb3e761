//! The verifier on real records: an archive of the ECS encoder's lines
//! (normalize's benchmark workload: 1,000 flows of the seven golden
//! cases per batch, pod identities drawn from a pool, 50 policies; ~3.2 KB
//! lines in ~46 shapes, interleaved), sealed (suite v2 unless told), then
//! canonicalised line by line and verified, in one run.
//!
//! `cargo build --release -p flowscribe-audit --example verify_real`, then
//! `target/release/examples/verify_real [BATCHES] [PODS] [ARCHIVE]
//! [--flows N] [--suite v1|v2|v3]` (default 50 batches of 1,000 records,
//! 200 pods, suite v2; `--flows`
//! sets the connections per batch, e.g. more than the verifier keeps
//! bases for; with ARCHIVE, the
//! archive is also written there for `flowscribe verify`). Prints the
//! seal's CPU per record (every line parsed: the daemon's seal without
//! form templates), the canonical form alone per line with how many lines
//! were read in a learned shape (and of those, how many against their
//! connection's last line), and verify records/s per core (this
//! thread's CPU time, /proc/thread-self/schedstat; with
//! `FLOWSCRIBE_VERIFY_REPEAT=N`, the median of N verifications).
#![allow(clippy::unwrap_used, reason = "measuring harness")]
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../../normalize/tests/fixtures/mod.rs"]
mod fixtures;
use flowscribe_audit::{Auditor, AuditorOptions, MemoryStateStore, Suite};
use flowscribe_normalize::ecs::EcsEncoder;
use std::time::Duration;
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    let ns: u64 = stat.split(' ').next().unwrap().parse().unwrap();
    ns as f64 / 1e9
}
fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut per_batch = 1000;
    if let Some(i) = args.iter().position(|a| a == "--flows") {
        per_batch = args
            .get(i + 1)
            .and_then(|n| n.parse().ok())
            .expect("--flows N");
        args.drain(i..i + 2);
    }
    let mut suite = Suite::V2;
    if let Some(i) = args.iter().position(|a| a == "--suite") {
        let name = args.get(i + 1).cloned().unwrap_or_default();
        suite = Suite::from_name(&name).expect("--suite v1, v2 or v3");
        args.drain(i..(i + 2).min(args.len()));
    }
    let batches: usize = args.first().map_or(50, |a| a.parse().unwrap());
    let pods: usize = args.get(1).map_or(200, |a| a.parse().unwrap());
    let ctx = fixtures::context();
    let flows = fixtures::workload(per_batch, pods, 50, true);
    let observed = fixtures::observed();
    let mut enc = EcsEncoder::new(ctx);
    let options = AuditorOptions::new("node-a", vec!["ecs".into()]).with_suite(suite);
    let (mut auditor, _) = Auditor::start(
        MemoryStateStore::default(),
        common::signer(),
        options,
        observed,
        [3; 16],
    )
    .unwrap();
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut seal_cpu = 0.0;
    for b in 0..batches {
        let at = observed + Duration::from_secs(10 * b as u64);
        for cp in auditor.tick(at).unwrap().checkpoints {
            lines.push(cp.to_json_line());
        }
        let mut batch: Vec<Vec<u8>> = flows
            .iter()
            .map(|f| {
                let mut o = Vec::new();
                enc.encode(f, at, &mut o);
                o
            })
            .collect();
        let stamp = auditor.stamp(batch.len(), at).unwrap();
        for (i, l) in batch.iter_mut().enumerate() {
            assert!(stamp.append_fields("ecs", i as u64, l));
        }
        let c = cpu_seconds();
        let seal = auditor.seal("ecs", &stamp, &batch, at).unwrap();
        seal_cpu += cpu_seconds() - c;
        lines.extend(batch);
        lines.push(seal.to_json_line());
    }
    let (cps, _) = auditor
        .shutdown(observed + Duration::from_secs(10 * batches as u64))
        .unwrap();
    lines.extend(cps.iter().map(|c| c.to_json_line()));
    let records = batches * per_batch;
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    if let Some(p) = args.get(2) {
        let mut t = lines.join(&b'\n');
        t.push(b'\n');
        std::fs::write(p, t).unwrap();
    }
    // As the verifier reads lines: each compared with its connection's
    // last one where it can be (`Canonicalizer::with_hints`).
    let mut canon = flowscribe_audit::canonical::Canonicalizer::with_hints();
    let c = cpu_seconds();
    for l in &lines {
        let _ = canon.canonicalize(l);
    }
    let canon_cpu = cpu_seconds() - c;
    // FLOWSCRIBE_VERIFY_REPEAT=N verifies N times (a profile of the
    // verifier alone); the rate is the median run's.
    let repeat: usize = std::env::var("FLOWSCRIBE_VERIFY_REPEAT")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let mut runs = Vec::new();
    for _ in 0..repeat.max(1) {
        let c = cpu_seconds();
        let report = common::verify_lines(&lines, common::options());
        runs.push(cpu_seconds() - c);
        assert!(report.ok(), "{}", report.render());
    }
    runs.sort_by(f64::total_cmp);
    let v = runs[runs.len() / 2];
    println!(
        "records {records} avg line {} B | seal {:.2} us/rec | canonicalize alone {:.2} us/line, fast hits {}/{}, against their connection's last line {} | verify {:.0} records/s per core",
        bytes / lines.len(),
        seal_cpu * 1e6 / records as f64,
        canon_cpu * 1e6 / lines.len() as f64,
        canon.fast_hits(),
        lines.len(),
        canon.base_hits(),
        records as f64 / v
    );
}
