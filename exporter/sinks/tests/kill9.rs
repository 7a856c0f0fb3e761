//! A real `kill -9`: a child process (this test executable, re-invoked with
//! an env var) pushes into a disk-mode queue from several tasks and prints
//! every acknowledged sequence number; the parent SIGKILLs it mid-run,
//! reopens the directory and checks that every acknowledged record is
//! there with its event id. Three rounds on the same directory, so later
//! rounds also start from a directory recovered after a kill.

// A failed step should fail the test; clippy.toml's allow-unwrap-in-tests
// covers #[test] fns but not the helpers of an integration test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flowscribe_sinks::core::queue::{Durability, DurableQueue, QueueConfig, Record};

const CHILD_ENV: &str = "FLOWSCRIBE_KILL9_CHILD_DIR";

fn config(dir: &Path) -> QueueConfig {
    QueueConfig {
        // Small segments so the kill also lands around segment rolls.
        segment_max_bytes: 64 * 1024,
        ..QueueConfig::new("kill9", Some(dir.to_path_buf()), Durability::Disk)
    }
}

/// The child half: does nothing unless started by the parent.
#[test]
fn kill9_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let round = std::env::var("FLOWSCRIBE_KILL9_ROUND").unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let q = DurableQueue::open(config(Path::new(&dir))).unwrap();
        let tasks: Vec<_> = (0..4u64)
            .map(|t| {
                let q = q.clone();
                let round = round.clone();
                tokio::spawn(async move {
                    // Bounded, in case the parent never kills us.
                    for n in 0..200_000u64 {
                        let batch: Vec<Record> = (0..=(n % 4))
                            .map(|k| {
                                Record::new(
                                    format!("r{round}-t{t}-{n}-{k}"),
                                    vec![b'x'; 200 + (n % 300) as usize],
                                )
                            })
                            .collect();
                        let ids: Vec<String> = batch.iter().map(|r| r.event_id.clone()).collect();
                        let receipt = q.push(batch).await.unwrap();
                        let (first, _) = receipt.seqs.unwrap();
                        let mut out = std::io::stdout().lock();
                        for (i, id) in ids.iter().enumerate() {
                            writeln!(out, "ACK {} {id}", first + i as u64).unwrap();
                        }
                        out.flush().unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

/// Run one child until it acknowledged `kill_after` records, SIGKILL it,
/// and return every (seq, event id) it acknowledged.
fn run_and_kill(dir: &Path, round: u32, kill_after: usize) -> Vec<(u64, String)> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["kill9_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .env("FLOWSCRIBE_KILL9_ROUND", round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut acked = Vec::new();
    let started = Instant::now();
    let mut killed = false;
    // Lines printed before the kill are still in the pipe afterwards, so
    // keep reading to EOF.
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("ACK ") {
            let (seq, id) = rest.split_once(' ').unwrap();
            acked.push((seq.parse::<u64>().unwrap(), id.to_owned()));
        }
        if !killed && (acked.len() >= kill_after || started.elapsed() > Duration::from_secs(60)) {
            child.kill().unwrap(); // SIGKILL
            killed = true;
        }
    }
    let status = child.wait().unwrap();
    assert!(killed, "child exited on its own: {status:?}");
    assert!(
        acked.len() >= kill_after,
        "child acknowledged only {} records",
        acked.len()
    );
    acked
}

#[test]
fn every_acknowledged_record_survives_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let mut all_acked: BTreeMap<u64, String> = BTreeMap::new();
    for round in 0..3 {
        for (seq, id) in run_and_kill(tmp.path(), round, 3_000) {
            assert!(all_acked.insert(seq, id).is_none(), "seq {seq} acked twice");
        }
        let q = DurableQueue::open(config(tmp.path())).unwrap();
        let snapshot = q.snapshot();
        let mut found = BTreeMap::new();
        while let Some(b) = q.try_read_batch(1024, u64::MAX) {
            for r in b.records {
                found.insert(r.seq, r.event_id);
            }
        }
        drop(q);
        let missing: Vec<_> = all_acked
            .iter()
            .filter(|(seq, id)| found.get(seq) != Some(id))
            .take(5)
            .collect();
        assert!(
            missing.is_empty(),
            "round {round}: acknowledged records lost after kill -9: {missing:?} (recovery: {:?})",
            snapshot.recovery
        );
        // Nothing acknowledged can be in a torn tail or a corrupt frame.
        assert_eq!(snapshot.recovery.records_lost_corrupt, 0);
        eprintln!(
            "round {round}: {} acknowledged, {} recovered, torn tail {} bytes, recovery {:?}",
            all_acked.len(),
            found.len(),
            snapshot.recovery.torn_tail_bytes,
            snapshot.recovery.duration
        );
    }
}
