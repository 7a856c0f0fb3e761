//! Streaming verification (`--ordered --stream`): memory bounded by the
//! records between two checkpoints, not by the archive.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use flowscribe_audit::verify::{FindingKind, Verifier, VerifyOptions};
use flowscribe_audit::{Auditor, AuditorOptions, MemoryStateStore};

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
    // one are held, plus the one it arrives with (checkpoints precede their
    // tick's batch), 100 records each.
    assert!(peak <= 61 * 100, "held {peak} records at once");
    assert!(
        peak >= 60 * 100,
        "held only {peak}: nothing between checkpoints?"
    );
    // Everything released by the stop checkpoint.
    assert_eq!(v.retained_records(), 0);
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

/// An exact replay of a line whose stretch was already released cannot be
/// compared any more: streaming fails it, naming why (the whole-archive
/// verifier lets it pass); a replay within the open stretch still passes.
#[test]
fn replays_pass_within_the_open_stretch_and_fail_after_release() {
    let archive = simple_archive(130, 10);
    let lines = archive.text();
    let seals: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains("\"type\":\"seal\""))
        .collect();
    // A data line of batch 120, replayed right after its batch's seal
    // (the open stretch runs from the checkpoint after 120 batches).
    let data_120 = seals[119] + 2;
    let mut recent = lines.clone();
    recent.insert(seals[120] + 1, lines[data_120].clone());
    let r = verify_lines(&recent, stream_options());
    assert!(r.ok(), "{}", r.render());
    // A data line of batch 3, replayed at the end: released by then.
    let mut old = lines.clone();
    let data_3 = seals[2] + 1;
    old.push(lines[data_3].clone());
    let whole = verify_lines(
        &old,
        VerifyOptions {
            stream: false,
            ..stream_options()
        },
    );
    assert!(whole.ok(), "{}", whole.render());
    let r = verify_lines(&old, stream_options());
    assert!(!r.ok());
    let late = r.of_kind(FindingKind::Reordered);
    assert_eq!(late.len(), 1, "{}", r.render());
    assert!(late[0].detail.contains("--stream cannot compare it"));
    assert_eq!(late[0].location.unwrap().line, old.len() as u64);
}
