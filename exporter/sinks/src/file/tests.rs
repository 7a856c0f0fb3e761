//! File and stdout sink tests: exact JSON lines through the driver, size
//! and age rotation with gzip (every record exactly once across the active
//! and rotated files), and a failed write classified as a retry.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use super::*;
use crate::core::classify::{Outcome, TransportFailure};
use crate::core::driver::{DriverConfig, SendReport, SinkDriver, Transport};
use crate::core::queue::{Durability, DurableQueue, QueueConfig, QueuedRecord, Record};

fn rec(seq: u64, payload: &str) -> QueuedRecord {
    QueuedRecord {
        seq,
        event_id: format!("e{seq}"),
        payload: payload.to_string().into(),
    }
}

/// Every line of every file in `dir` (gzip decompressed), sorted.
fn all_lines(dir: &Path) -> (Vec<String>, usize, usize) {
    let (mut lines, mut gz, mut plain) = (Vec::new(), 0, 0);
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let mut text = String::new();
        if path.extension().is_some_and(|e| e == "gz") {
            gz += 1;
            flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap())
                .read_to_string(&mut text)
                .unwrap();
        } else {
            plain += 1;
            text = std::fs::read_to_string(&path).unwrap();
        }
        lines.extend(text.lines().map(str::to_string));
    }
    lines.sort();
    (lines, gz, plain)
}

#[tokio::test]
async fn json_lines_through_the_driver() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flows.jsonl");
    let t = FileConfig::new(&path).build().unwrap();
    let queue = DurableQueue::open(QueueConfig::new("file", None, Durability::Memory)).unwrap();
    queue
        .push(vec![
            Record::new("a", r#"{"n":1}"#),
            // A pretty-printed document still becomes one line.
            Record::new("b", "{\n  \"n\": 2\r\n}"),
        ])
        .await
        .unwrap();
    let (driver, h) = SinkDriver::new(DriverConfig::new("file"), queue, t);
    let task = tokio::spawn(driver.run());
    h.flush(Instant::now() + Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "{\"n\":1}\n{   \"n\": 2  }\n"
    );
    assert_eq!(h.snapshot().delivered_records_total, 2);
    assert!(
        h.shutdown(Instant::now() + Duration::from_secs(5))
            .await
            .unwrap()
            .drained
    );
    task.await.unwrap();
}

#[tokio::test]
async fn size_rotation_gzips_and_keeps_every_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = FileConfig {
        max_file_bytes: 200,
        ..FileConfig::new(dir.path().join("flows.jsonl"))
    };
    let mut t = cfg.build().unwrap();
    let mut want = Vec::new();
    for b in 0..20u64 {
        let batch: Vec<QueuedRecord> = (0..5)
            .map(|i| rec(b * 5 + i, &format!("{{\"n\":{:03}}}", b * 5 + i)))
            .collect();
        want.extend(
            batch
                .iter()
                .map(|r| String::from_utf8(r.payload.to_vec()).unwrap()),
        );
        assert_eq!(t.send(&batch).await, SendReport::batch(Outcome::Written));
    }
    t.shutdown().await.unwrap();
    let (lines, gz, plain) = all_lines(dir.path());
    want.sort();
    assert_eq!(lines, want);
    // 50 bytes per batch, rotation before a write at >= 200 bytes.
    assert_eq!((gz, plain), (4, 1));
}

#[tokio::test]
async fn age_rotation_and_uncompressed_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = FileConfig {
        // Any elapsed time reaches this, so each write after the first
        // rotates; no sleeping needed.
        max_file_age: Some(Duration::from_nanos(1)),
        compress_rotated: false,
        ..FileConfig::new(dir.path().join("flows.jsonl"))
    };
    let mut t = cfg.build().unwrap();
    for i in 0..3 {
        t.send(&[rec(i, "{}")]).await;
    }
    t.flush().await.unwrap();
    let (lines, gz, plain) = all_lines(dir.path());
    assert_eq!(lines.len(), 3);
    assert_eq!((gz, plain), (0, 3));
}

#[tokio::test]
async fn a_failed_write_is_a_local_io_failure_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("missing");
    let mut t = FileConfig::new(sub.join("flows.jsonl")).build().unwrap();
    assert_eq!(
        t.send(&[rec(1, "{}")]).await,
        SendReport::batch(Outcome::Transport(TransportFailure::LocalIo))
    );
    std::fs::create_dir(&sub).unwrap();
    assert_eq!(
        t.send(&[rec(1, "{}")]).await,
        SendReport::batch(Outcome::Written)
    );
}

#[test]
fn config_problems_are_listed() {
    let bad = FileConfig {
        max_file_bytes: 0,
        max_file_age: Some(Duration::ZERO),
        ..FileConfig::new("/")
    };
    let Err(e) = bad.validate() else {
        panic!("expected problems")
    };
    assert_eq!(e.to_string().matches(": must").count(), 3, "{e}");
}

#[tokio::test]
async fn stdout_writes() {
    let mut t = StdoutTransport;
    assert_eq!(
        t.send(&[rec(1, "{}")]).await,
        SendReport::batch(Outcome::Written)
    );
}
