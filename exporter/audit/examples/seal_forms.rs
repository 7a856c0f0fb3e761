//! The seal's CPU time per record on lines from the real ECS encoder,
//! with and without form templates, in one run: `Auditor::seal` (every
//! line canonicalised) against `Auditor::seal_templated` (lines written
//! from an encoder template get their form from its form template), on
//! the same lines, and the encoder's own cost with and without the side
//! table it gives for that.
//!
//! `cargo build --release -p flowscribe-audit --example seal_forms`, then
//! `target/release/examples/seal_forms [BATCHES] [--suite v1|v2]`
//! (default 200 batches of 1000 flows, suite v2). The flows are
//! normalize's benchmark workload (`fixtures::workload`, 200 shared pod
//! identities, 50 policies): the same 1000 connections reported batch
//! after batch, each batch 10 s later with grown counters, as a node's
//! long-lived connections are.
//!
//! Prints `seal_forms suite=.. records=.. templated=..% seal_parse_us=..
//! seal_forms_us=.. saved_us=.. hashing_alone_us=.. form_bytes=..
//! encode_us=.. encode_noting_us=.. built=.. refused=..`: CPU time (user +
//! system, /proc, 10 ms resolution) per record; `hashing_alone` is the
//! suite's digests of the forms (computed beforehand), the floor of any
//! seal; `form_bytes` the mean canonical form's size. The two seals are asserted equal batch by
//! batch.
#![allow(clippy::unwrap_used, reason = "measuring harness")]

#[path = "../../normalize/tests/fixtures/mod.rs"]
mod fixtures;

use std::time::Duration;

use flowscribe_audit::form_template::HoleTable;
use flowscribe_audit::{Auditor, AuditorOptions, MemoryStateStore, NoteSigner, Suite};
use flowscribe_normalize::ecs::EcsEncoder;

/// This process's CPU time so far in seconds (user + system).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

const FLOWS: usize = 1000;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut suite = Suite::V2;
    if let Some(i) = args.iter().position(|a| a == "--suite") {
        suite =
            Suite::from_name(args.get(i + 1).map_or("", String::as_str)).expect("--suite v1|v2");
        args.drain(i..(i + 2).min(args.len()));
    }
    let batches: usize = args.first().map_or(200, |a| a.parse().expect("BATCHES"));
    let ctx = fixtures::context();
    let mut flows = fixtures::workload(FLOWS, 200, 50, true);
    let observed = fixtures::observed();

    // The encoder, without and with the side table (timed apart; the
    // second one's lines are sealed).
    let mut plain = EcsEncoder::new(ctx.clone());
    let mut noting = EcsEncoder::new(ctx);
    noting.note_holes(true);
    let (mut encode_plain, mut encode_noting) = (0.0, 0.0);
    let mut out = Vec::with_capacity(1 << 20);
    let mut batches_of_lines: Vec<(Vec<Vec<u8>>, HoleTable)> = Vec::with_capacity(batches);
    for b in 0..batches {
        let at = observed + Duration::from_secs(10 * b as u64);
        let cpu = cpu_seconds();
        for f in &flows {
            out.clear();
            plain.encode(f, at, &mut out);
        }
        encode_plain += cpu_seconds() - cpu;
        let cpu = cpu_seconds();
        for f in &flows {
            out.clear();
            noting.encode(f, at, &mut out);
            std::hint::black_box(noting.last_holes());
        }
        encode_noting += cpu_seconds() - cpu;
        // The lines to seal (not timed): the same encoder again at the
        // same time gives the same bytes and side table.
        let mut lines = Vec::with_capacity(FLOWS);
        let mut table = HoleTable::new();
        for f in &flows {
            // Room for the audit fields, as the pipeline's lines have.
            let mut line = Vec::with_capacity(4096);
            noting.encode(f, at, &mut line);
            table.push(noting.last_holes());
            lines.push(line);
        }
        batches_of_lines.push((lines, table));
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
    let templated: usize = batches_of_lines
        .iter()
        .map(|(_, t)| (0..t.len()).filter(|&i| t.get(i).is_some()).count())
        .sum();

    // Stamp and append the audit fields once: both auditors hand out the
    // same numbers (same chain, same store), so they seal the same lines.
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
    let mut stamps = Vec::with_capacity(batches);
    for (b, (lines, _)) in batches_of_lines.iter_mut().enumerate() {
        let now = observed + Duration::from_secs(10 * b as u64);
        let stamp = parse.stamp(lines.len(), now).unwrap();
        assert_eq!(forms.stamp(lines.len(), now).unwrap(), stamp);
        for (i, l) in lines.iter_mut().enumerate() {
            assert!(stamp.append_fields("ecs", i as u64, l));
        }
        stamps.push((stamp, now));
    }
    let cpu = cpu_seconds();
    let want: Vec<_> = batches_of_lines
        .iter()
        .zip(&stamps)
        .map(|((lines, _), (stamp, now))| parse.seal("ecs", stamp, lines, *now).unwrap())
        .collect();
    let seal_parse = cpu_seconds() - cpu;
    let cpu = cpu_seconds();
    let got: Vec<_> = batches_of_lines
        .iter()
        .zip(&stamps)
        .map(|((lines, table), (stamp, now))| {
            forms
                .seal_templated("ecs", stamp, lines, table, *now)
                .unwrap()
        })
        .collect();
    let seal_forms = cpu_seconds() - cpu;
    assert!(want == got, "the seals differ");
    // The floor the hash suite sets: hashing the canonical forms alone
    // (made beforehand, not timed), as the seal groups them.
    let mut canon = flowscribe_audit::canonical::Canonicalizer::new();
    let all_forms: Vec<Vec<u8>> = batches_of_lines
        .iter()
        .flat_map(|(l, _)| l.iter())
        .map(|l| canon.canonicalize(l).unwrap().to_vec())
        .collect();
    let cpu = cpu_seconds();
    let mut digests = flowscribe_audit::hash_v2::DigestBatch::new();
    let mut group = Vec::new();
    for g in all_forms.chunks(64) {
        if suite == Suite::V2 {
            let refs: Vec<&[u8]> = g.iter().map(Vec::as_slice).collect();
            digests.digests(&refs, &mut group);
        } else {
            group = g.iter().map(|f| suite.content_digest(f)).collect();
        }
        std::hint::black_box(&group);
    }
    let hashing = cpu_seconds() - cpu;
    let form_bytes: usize = all_forms.iter().map(Vec::len).sum();
    drop(all_forms);
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
