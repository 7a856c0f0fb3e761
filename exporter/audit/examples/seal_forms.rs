//! The seal's CPU time per record on lines from the real ECS encoder,
//! with and without form templates, in one run: `Auditor::seal` (every
//! line canonicalised) against `Auditor::seal_templated` (lines written
//! from an encoder template get their form from its form template), on
//! the same lines, and the encoder's own cost with and without the side
//! table it gives for that.
//!
//! `cargo build --release -p flowscribe-audit --example seal_forms`, then
//! `target/release/examples/seal_forms [BATCHES] [--suite v1|v2|v3]`
//! (default 200 batches of 1000 flows, suite v2). The flows are
//! normalize's benchmark workload (`fixtures::workload`, 200 shared pod
//! identities, 50 policies): the same 1000 connections reported batch
//! after batch, each batch 10 s later with grown counters, as a node's
//! long-lived connections are.
//!
//! Each batch is encoded, stamped and sealed both ways before the next
//! (its lines warm in the cache, as in the pipeline), the two seals in
//! alternating order.
//!
//! Prints `seal_forms suite=.. records=.. templated=..% filled=..
//! seal_parse_us=.. seal_forms_us=.. saved_us=.. hashing_alone_us=..
//! form_bytes=.. encode_us=.. encode_noting_us=.. built=.. refused=..`:
//! CPU time per record (this thread's, from
//! /proc/thread-self/schedstat, ns resolution); `hashing_alone` is the
//! suite's digests of what it hashes of the forms (forms, or v3's hash
//! inputs, computed beforehand), the floor of any seal; `form_bytes` the mean canonical form's size. The two seals are
//! asserted equal batch by batch.
#![allow(clippy::unwrap_used, reason = "measuring harness")]

#[path = "../../normalize/tests/fixtures/mod.rs"]
mod fixtures;

use std::time::Duration;

use flowscribe_audit::form_template::HoleTable;
use flowscribe_audit::{Auditor, AuditorOptions, MemoryStateStore, NoteSigner, Suite};
use flowscribe_normalize::ecs::EcsEncoder;

/// This thread's CPU time so far in seconds, in nanoseconds' resolution
/// (the first field of /proc/thread-self/schedstat: time on a CPU), so
/// that the phases of one batch (a few ms each) can be timed apart.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    let ns: u64 = stat.split(' ').next().unwrap().parse().unwrap();
    ns as f64 / 1e9
}

const FLOWS: usize = 1000;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut suite = Suite::V2;
    if let Some(i) = args.iter().position(|a| a == "--suite") {
        suite =
            Suite::from_name(args.get(i + 1).map_or("", String::as_str)).expect("--suite v1|v2|v3");
        args.drain(i..(i + 2).min(args.len()));
    }
    let batches: usize = args.first().map_or(200, |a| a.parse().expect("BATCHES"));
    let ctx = fixtures::context();
    let mut flows = fixtures::workload(FLOWS, 200, 50, true);
    let observed = fixtures::observed();

    // The encoder without and with the side table, and two auditors that
    // hand out the same numbers (same chain, same store): one seals every
    // line by parsing it, the other from form templates.
    let mut plain = EcsEncoder::new(ctx.clone());
    let mut noting = EcsEncoder::new(ctx);
    noting.note_holes(true);
    let start = || {
        let signer = NoteSigner::from_seed("flowscribe-bench", [42; 32]).unwrap();
        let options = AuditorOptions::new("node-a", vec!["ecs".into()]).with_suite(suite);
        Auditor::start(
            MemoryStateStore::default(),
            signer,
            options,
            observed,
            [3; 16],
        )
        .unwrap()
        .0
    };
    let (mut parse, mut forms) = (start(), start());
    let (mut encode_plain, mut encode_noting, mut seal_parse, mut seal_forms) =
        (0.0, 0.0, 0.0, 0.0);
    let (mut templated, mut form_bytes) = (0usize, 0usize);
    let mut hashing = 0.0;
    let mut canon = flowscribe_audit::canonical::Canonicalizer::new();
    let mut digests = flowscribe_audit::hash_v2::DigestBatch::new();
    let mut splitter = flowscribe_audit::hash_v3::Splitter::default();
    let mut out = Vec::with_capacity(1 << 20);
    // The lines of one batch, with room for the audit fields as the
    // pipeline's lines have; reused, as an encoder's buffers are warm.
    let mut lines: Vec<Vec<u8>> = (0..FLOWS).map(|_| Vec::with_capacity(4096)).collect();
    let mut table = HoleTable::new();
    for b in 0..batches {
        let at = observed + Duration::from_secs(10 * b as u64);
        // ④ Encoding, timed without and with the side table (into one
        // warm buffer each, in alternating order), then the lines to seal
        // (not timed: the noting encoder again, which writes the same
        // bytes from the same templates).
        let mut encode = |encoder: &mut EcsEncoder| {
            let cpu = cpu_seconds();
            for f in &flows {
                out.clear();
                encoder.encode(f, at, &mut out);
                std::hint::black_box(encoder.last_holes());
            }
            cpu_seconds() - cpu
        };
        if b % 2 == 0 {
            encode_plain += encode(&mut plain);
            encode_noting += encode(&mut noting);
        } else {
            encode_noting += encode(&mut noting);
            encode_plain += encode(&mut plain);
        }
        table.clear();
        for (f, line) in flows.iter().zip(&mut lines) {
            line.clear();
            noting.encode(f, at, line);
            table.push(noting.last_holes());
        }
        templated += (0..table.len()).filter(|&i| table.get(i).is_some()).count();
        // ⑤ Stamp and audit fields (the same for both), then both seals,
        // in alternating order so that neither always finds the lines in
        // the cache the other warmed.
        let stamp = parse.stamp(lines.len(), at).unwrap();
        assert_eq!(forms.stamp(lines.len(), at).unwrap(), stamp);
        for (i, l) in lines.iter_mut().enumerate() {
            assert!(stamp.append_fields("ecs", i as u64, l));
        }
        let mut seal_with_parse = || {
            let cpu = cpu_seconds();
            let seal = parse.seal("ecs", &stamp, &lines, at).unwrap();
            (seal, cpu_seconds() - cpu)
        };
        let mut seal_with_forms = || {
            let cpu = cpu_seconds();
            let seal = forms
                .seal_templated("ecs", &stamp, &lines, &table, at)
                .unwrap();
            (seal, cpu_seconds() - cpu)
        };
        let ((want, p), (got, f)) = if b % 2 == 0 {
            let p = seal_with_parse();
            (p, seal_with_forms())
        } else {
            let f = seal_with_forms();
            (seal_with_parse(), f)
        };
        assert!(want == got, "batch {b}: the seals differ");
        seal_parse += p;
        seal_forms += f;
        // The floor the hash suite sets: the forms' digests alone, as the
        // seal groups them (forms made beforehand, not timed).
        // v3: what it hashes of each form is its hash input (the stable
        // part's digest made beforehand too).
        let all: Vec<Vec<u8>> = lines
            .iter()
            .map(|l| {
                let form = canon.canonicalize(l).unwrap();
                form_bytes += form.len();
                let mut hashed = Vec::new();
                splitter.write_hashed(suite, form, None, &mut hashed);
                hashed
            })
            .collect();
        let cpu = cpu_seconds();
        let mut group = Vec::new();
        for g in all.chunks(64) {
            if suite == Suite::V1 {
                group = g.iter().map(|f| suite.content_digest(f)).collect();
            } else {
                let refs: Vec<&[u8]> = g.iter().map(Vec::as_slice).collect();
                digests.digests(&refs, &mut group);
            }
            std::hint::black_box(&group);
        }
        hashing += cpu_seconds() - cpu;
        // The next window: the same connections 10 s later.
        for f in &mut flows {
            let ff = &mut f.flow.flow;
            ff.window_start = ff.window_end;
            ff.window_end += Duration::from_secs(10);
            ff.last_packet = ff.window_end - Duration::from_millis(3);
            ff.forward.bytes += 1_234 + b as u64;
            ff.forward.packets += 3;
            ff.reverse.bytes += 98_765;
            ff.reverse.packets += 70;
        }
    }
    let records = (batches * FLOWS) as f64;
    let (filled, built, refused) = forms.form_template_counts();
    assert!(filled as usize <= templated);
    let us = |s: f64| s * 1e6 / records;
    println!(
        "seal_forms suite={} records={} templated={:.1}% filled={} seal_parse_us={:.3} seal_forms_us={:.3} saved_us={:.3} hashing_alone_us={:.3} form_bytes={:.0} encode_us={:.3} encode_noting_us={:.3} built={built} refused={refused}",
        suite.name(),
        records,
        100.0 * templated as f64 / records,
        filled,
        us(seal_parse),
        us(seal_forms),
        us(seal_parse - seal_forms),
        us(hashing),
        form_bytes as f64 / records,
        us(encode_plain),
        us(encode_noting),
    );
}
