//! Streaming verification (`--ordered --stream`): memory bounded by the
//! records between two checkpoints, not by the archive.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use flowscribe_audit::verify::{FindingKind, Verifier, VerifyOptions};
use flowscribe_audit::{Auditor, AuditorOptions, FileStateStore, MemoryStateStore, Suite};

/// Feed a verifier a clean run of `batches` batches of `batch_size` flows,
/// one batch per simulated second, generated as they are fed (the archive
/// is never held in memory). Returns the most records the verifier held
/// after any line, and the lines fed.
fn feed_generated(v: &mut Verifier, batches: u64, batch_size: u64) -> (usize, u64) {
    let options = AuditorOptions::new("node-a", vec!["ecs".into()]).with_suite(suite());
    let (mut auditor, _) = Auditor::start(
        MemoryStateStore::default(),
        signer(),
        options,
        t(0),
        [0xa1; 16],
    )
    .unwrap();
    let f = v.add_file("generated.jsonl");
    let mut line = 0u64;
    let mut peak = 0usize;
    let mut feed = |v: &mut Verifier, bytes: &[u8]| {
        line += 1;
        v.add_line(f, line, bytes);
        peak = peak.max(v.retained_records());
    };
    let mut n = 0;
    for b in 0..batches {
        let now = t(b * 1000);
        for cp in auditor.tick(now).unwrap().checkpoints {
            feed(v, &cp.to_json_line());
        }
        let mut docs: Vec<Vec<u8>> = (0..batch_size)
            .map(|i| flow_json("node-a", n + i))
            .collect();
        n += batch_size;
        let stamp = auditor.stamp(docs.len(), now).unwrap();
        for (i, d) in docs.iter_mut().enumerate() {
            stamp.append_fields("ecs", i as u64, d);
        }
        let seal = auditor.seal("ecs", &stamp, &docs, now).unwrap();
        for d in &docs {
            feed(v, d);
        }
        feed(v, &seal.to_json_line());
    }
    let (cps, _) = auditor.shutdown(t(batches * 1000)).unwrap();
    for cp in cps {
        feed(v, &cp.to_json_line());
    }
    (peak, line)
}

fn stream_options() -> VerifyOptions {
    VerifyOptions {
        ordered: true,
        stream: true,
        ..options()
    }
}

/// How many records (`STREAM_RECORDS`, default 2,000,000) in batches of 100.
fn generated_batches() -> u64 {
    std::env::var("STREAM_RECORDS")
        .ok()
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(2_000_000)
        / 100
}

#[test]
fn streaming_holds_at_most_the_records_between_two_checkpoints() {
    let batches = generated_batches();
    let mut v = Verifier::new(stream_options());
    let (peak, lines) = feed_generated(&mut v, batches, 100);
    // A checkpoint every 60 batches: at most the 60 batches since the last
    // one are held for checking, plus the one it arrives with (checkpoints
    // precede their tick's batch), and the 60 released last, kept to
    // recognise replays: 100 records each.
    assert!(peak <= (61 + 60) * 100, "held {peak} records at once");
    assert!(
        peak >= 120 * 100,
        "held only {peak}: nothing between checkpoints?"
    );
    // The stop checkpoint released the rest: only the last stretch's
    // replay index (batches 19,980..20,000 at the default size) stays.
    let last = if batches.is_multiple_of(60) {
        60
    } else {
        batches % 60
    };
    assert_eq!(v.retained_records() as u64, last * 100);
    let report = v.finish();
    assert!(report.ok(), "{}", report.render());
    assert_eq!(report.chains[0].records, batches * 100);
    assert_eq!(report.chains[0].records_verified, batches * 100);
    assert_eq!(report.chains[0].batches_verified, batches);
    assert!(lines > batches * 101);
}

#[test]
fn without_streaming_every_record_is_held() {
    let mut v = Verifier::new(VerifyOptions {
        ordered: true,
        ..options()
    });
    let (peak, _) = feed_generated(&mut v, 200, 100);
    assert_eq!(peak, 200 * 100);
    assert!(v.finish().ok());
}

/// An exact replay of a record of the stretch released last (the 60
/// batches before the newest checkpoint) or of the open stretch passes, as
/// without streaming; one of an older stretch cannot be compared any more:
/// streaming fails it, naming why (the whole-archive verifier passes it).
#[test]
fn replays_pass_unless_their_stretch_was_released_before_the_last() {
    let archive = simple_archive(130, 10);
    let lines = archive.text();
    let seals: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains("\"type\":\"seal\""))
        .collect();
    let whole = |l: &[String]| {
        verify_lines(
            l,
            VerifyOptions {
                stream: false,
                ..stream_options()
            },
        )
    };
    // Batch 0's seal is line 13 (a checkpoint, a heartbeat, 10 flows);
    // after batch b-1's seal comes batch b, or first the checkpoint after
    // b batches when b is a multiple of 60.
    // Replays right after batch 120's seal: of batch 120 (open stretch)
    // and of batch 100 (released by the checkpoint after 120 batches).
    for b in [120usize, 100] {
        let mut replayed = lines.clone();
        replayed.insert(seals[120] + 1, lines[seals[b] - 1].clone());
        let r = verify_lines(&replayed, stream_options());
        assert!(r.ok(), "batch {b}: {}", r.render());
        assert_eq!(r.chains, whole(&replayed).chains);
    }
    // A data line of batch 3, replayed at the end: released long before.
    let mut old = lines.clone();
    old.push(lines[seals[3] - 1].clone());
    assert!(whole(&old).ok());
    let r = verify_lines(&old, stream_options());
    assert!(!r.ok());
    let late = r.of_kind(FindingKind::Reordered);
    assert_eq!(late.len(), 1, "{}", r.render());
    assert!(late[0].detail.contains("--stream cannot compare it"));
    assert_eq!(late[0].location.unwrap().line, old.len() as u64);
    assert_eq!(r.findings.len(), 1, "{}", r.render());
}

/// A crash and restart (gap record, crash tail, unissued block) on node-a,
/// interleaved line by line with a second node's chain, in both suites:
/// streaming gives the whole-archive report, strict and lenient, and with a
/// checkpoint deleted.
#[test]
fn crash_restart_and_interleaved_chains_report_the_same() {
    for suite in [Suite::V1, Suite::V2, Suite::V3] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit-state.json");
        let store = || FileStateStore::new(&path);
        let (run1, _) = run_node_in(
            suite,
            "node-a",
            store(),
            0,
            1000,
            100,
            20,
            false,
            [0xc3; 16],
        );
        let (run2, _) = run_node_in(
            suite,
            "node-a",
            store(),
            130_000,
            1000,
            150,
            20,
            true,
            [0xc3; 16],
        );
        let (other, _) = run_node_in(
            suite,
            "node-b",
            MemoryStateStore::default(),
            0,
            1000,
            200,
            10,
            true,
            [0xb2; 16],
        );
        let a: Vec<String> = run1.text().into_iter().chain(run2.text()).collect();
        let b = other.text();
        let mut all = Vec::new();
        for i in 0..a.len().max(b.len()) {
            all.extend(a.get(i).cloned());
            all.extend(b.get(i).cloned());
        }
        let mut no_cp = all.clone();
        let i = no_cp
            .iter()
            .position(|l| l.contains("\"type\":\"checkpoint\"") && l.contains("\"checkpoint\":1"))
            .unwrap();
        no_cp.remove(i);
        for lenient in [false, true] {
            for lines in [&all, &no_cp] {
                let whole = VerifyOptions {
                    ordered: true,
                    accept_crash_tail: lenient,
                    ..options()
                };
                let streamed = VerifyOptions {
                    stream: true,
                    ..whole.clone()
                };
                let w = verify_lines(lines, whole);
                let s = verify_lines(lines, streamed);
                assert_eq!(w.findings, s.findings, "{}\n{}", w.render(), s.render());
                assert_eq!(w.chains, s.chains);
                assert_eq!(w.ok(), s.ok());
            }
        }
        // Streaming did release: at most run 1's unsigned tail (seqs
        // 1202..=2003, 802 records, see tests/verify.rs) and one stretch of
        // replay index per chain (60 batches of 20 and of 10 flows, a
        // heartbeat every 30) are held at the end.
        let mut v = Verifier::new(VerifyOptions {
            ordered: true,
            stream: true,
            ..options()
        });
        let f = v.add_file("all.jsonl");
        for (i, l) in all.iter().enumerate() {
            v.add_line(f, i as u64 + 1, l.as_bytes());
        }
        let held = v.retained_records();
        assert!(held <= 802 + 60 * 21 + 60 * 11, "{held}");
        let total: u64 = v.finish().chains.iter().map(|c| c.records).sum();
        assert!(held as u64 * 3 < total, "{held} of {total}");
        // The lenient full archive passes; the strict one names the tail.
        let r = verify_lines(
            &all,
            VerifyOptions {
                ordered: true,
                stream: true,
                accept_crash_tail: true,
                ..options()
            },
        );
        assert!(r.ok(), "{}", r.render());
        assert_eq!(r.chains.len(), 2);
        assert_eq!(r.of_kind(FindingKind::CrashGap).len(), 1);
    }
}
