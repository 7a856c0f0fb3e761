//! Queue tests: crash simulation on real files (torn tails at every byte,
//! corrupt middle records), full policies with exact counts, and the
//! ack/replay contract. The `kill -9` test is in `tests/kill9.rs`.

use super::*;
use std::path::Path;
use std::time::Duration;

fn cfg(dir: &Path, durability: Durability) -> QueueConfig {
    QueueConfig {
        segment_max_bytes: 1024,
        ..QueueConfig::new("test", Some(dir.to_path_buf()), durability)
    }
}

fn rec(i: u64) -> Record {
    Record::new(
        format!("ev-{i}"),
        format!("record {i} {}", "x".repeat((i % 13) as usize)),
    )
}

fn recs(range: std::ops::RangeInclusive<u64>) -> Vec<Record> {
    range.map(rec).collect()
}

/// Read everything currently readable, acking nothing; returns event ids.
fn drain_ids(q: &DurableQueue) -> Vec<String> {
    let mut ids = Vec::new();
    while let Some(b) = q.try_read_batch(7, u64::MAX) {
        ids.extend(b.records.into_iter().map(|r| r.event_id));
    }
    ids
}

fn ids(range: impl IntoIterator<Item = u64>) -> Vec<String> {
    range.into_iter().map(|i| format!("ev-{i}")).collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

/// Frame start offsets within one segment file.
fn frame_starts(path: &Path) -> Vec<usize> {
    let buf = std::fs::read(path).unwrap();
    frame::Scanner::new(&buf, None)
        .filter_map(|i| match i {
            frame::ScanItem::Frame(f) => Some(f.offset),
            frame::ScanItem::Garbage { .. } => None,
        })
        .collect()
}

/// Push 1..=n one record per push in disk mode, then drop the queue
/// without shutdown (a crash, as far as the files are concerned).
async fn crashed_queue(dir: &Path, n: u64) {
    let q = DurableQueue::open(cfg(dir, Durability::Disk)).unwrap();
    for i in 1..=n {
        let r = q.push(vec![rec(i)]).await.unwrap();
        assert_eq!(r.seqs, Some((i, i)));
    }
    drop(q);
}

#[tokio::test]
async fn push_read_ack_round_trip_in_both_modes() {
    for durability in [Durability::Memory, Durability::Disk] {
        let tmp = tempfile::tempdir().unwrap();
        let q = DurableQueue::open(cfg(tmp.path(), durability)).unwrap();
        let r = q.push(recs(1..=10)).await.unwrap();
        assert_eq!((r.accepted, r.seqs), (10, Some((1, 10))));
        let b = q.read_batch(4, u64::MAX).await.unwrap();
        assert_eq!(b.token.seq_range(), (1, 4));
        assert_eq!(b.records[0].payload, rec(1).payload);
        q.ack(b.token);
        let s = q.snapshot();
        assert_eq!(
            (s.queued_records, s.unread_records, s.acked_records_total),
            (6, 6, 4)
        );
        assert_eq!(drain_ids(&q), ids(5..=10));
    }
}

#[tokio::test]
async fn acked_records_are_not_replayed_and_unacked_ones_are() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let q = DurableQueue::open(cfg(tmp.path(), Durability::Disk)).unwrap();
        q.push(recs(1..=12)).await.unwrap();
        let b1 = q.try_read_batch(3, u64::MAX).unwrap(); // 1..=3, never acked
        let b2 = q.try_read_batch(3, u64::MAX).unwrap(); // 4..=6, acked
        let b3 = q.try_read_batch(2, u64::MAX).unwrap(); // 7..=8, acked
        q.ack(b3.token);
        q.ack(b2.token);
        drop(b1);
        // no shutdown, no flush: a crash
    }
    let q = DurableQueue::open(cfg(tmp.path(), Durability::Disk)).unwrap();
    let s = q.snapshot();
    assert_eq!(s.recovery.records_recovered, 7);
    assert_eq!(s.queued_records, 7);
    assert_eq!(drain_ids(&q), ids([1, 2, 3, 9, 10, 11, 12]));
}

#[tokio::test]
async fn torn_last_frame_at_every_byte_offset_keeps_every_earlier_record() {
    let tmp = tempfile::tempdir().unwrap();
    let orig = tmp.path().join("orig");
    let n = 40;
    crashed_queue(&orig, n).await;
    let segs = segments(&orig);
    assert!(segs.len() > 1, "test wants several segments");
    let last = segs.last().unwrap().clone();
    let last_start = *frame_starts(&last).last().unwrap();
    let len = std::fs::metadata(&last).unwrap().len() as usize;
    for cut in last_start..len {
        let dir = tmp.path().join(format!("cut{cut}"));
        copy_dir(&orig, &dir);
        let seg = dir.join(last.file_name().unwrap());
        std::fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(cut as u64)
            .unwrap();
        let q = DurableQueue::open(cfg(&dir, Durability::Disk)).unwrap();
        let r = q.snapshot().recovery;
        assert_eq!(drain_ids(&q), ids(1..n), "cut at {cut}");
        assert_eq!(r.records_recovered, n - 1, "cut at {cut}");
        assert_eq!(r.torn_tail_bytes, (cut - last_start) as u64, "cut at {cut}");
        assert_eq!(r.records_lost_torn_tail, u64::from(cut > last_start));
        assert_eq!((r.records_lost_corrupt, r.corrupt_bytes), (0, 0));
        // The queue goes on: the next record gets the next seq and a
        // second crash recovers it too.
        let p = q.push(vec![rec(1000)]).await.unwrap();
        assert_eq!(p.seqs, Some((n, n)));
        drop(q);
        let q = DurableQueue::open(cfg(&dir, Durability::Disk)).unwrap();
        let mut want = ids(1..n);
        want.push("ev-1000".into());
        assert_eq!(drain_ids(&q), want, "cut at {cut}, second open");
        assert_eq!(q.snapshot().recovery.torn_tail_bytes, 0);
        drop(q);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[tokio::test]
async fn a_flipped_byte_in_a_middle_record_loses_exactly_that_record() {
    let tmp = tempfile::tempdir().unwrap();
    let orig = tmp.path().join("orig");
    let n = 40;
    crashed_queue(&orig, n).await;
    let segs = segments(&orig);
    // A record in the middle of the first segment, and the last record of
    // the first segment (its loss shows as a gap across files).
    let first = &segs[0];
    let starts = frame_starts(first);
    let first_len = std::fs::metadata(first).unwrap().len() as usize;
    let victims = [
        (3usize, starts[3], starts[4]),
        (starts.len() - 1, starts[starts.len() - 1], first_len),
    ];
    for (victim_seq, from, to) in victims {
        for at in from..to {
            let dir = tmp.path().join(format!("flip{at}"));
            copy_dir(&orig, &dir);
            let seg = dir.join(first.file_name().unwrap());
            let mut bytes = std::fs::read(&seg).unwrap();
            bytes[at] ^= 0x5A;
            std::fs::write(&seg, bytes).unwrap();
            let q = DurableQueue::open(cfg(&dir, Durability::Disk)).unwrap();
            let r = q.snapshot().recovery;
            let want: Vec<u64> = (1..=n).filter(|&i| i != victim_seq as u64 + 1).collect();
            assert_eq!(drain_ids(&q), ids(want), "flip at {at}");
            assert_eq!(r.records_lost_corrupt, 1, "flip at {at}");
            assert_eq!(r.corrupt_bytes, (to - from) as u64, "flip at {at}");
            assert_eq!(r.torn_tail_bytes, 0);
            drop(q);
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}

#[tokio::test]
async fn corrupt_records_already_acked_are_not_counted_as_lost() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let q = DurableQueue::open(cfg(tmp.path(), Durability::Disk)).unwrap();
        for i in 1..=10 {
            q.push(vec![rec(i)]).await.unwrap();
        }
        let b = q.try_read_batch(5, u64::MAX).unwrap();
        q.ack(b.token);
    }
    let seg = &segments(tmp.path())[0];
    let starts = frame_starts(seg);
    let mut bytes = std::fs::read(seg).unwrap();
    bytes[starts[2] + 30] ^= 0xFF; // record 3: acked
    std::fs::write(seg, bytes).unwrap();
    let q = DurableQueue::open(cfg(tmp.path(), Durability::Disk)).unwrap();
    assert_eq!(q.snapshot().recovery.records_lost_corrupt, 0);
    assert_eq!(drain_ids(&q), ids(6..=10));
}

#[tokio::test]
async fn garbage_files_and_empty_segments_do_not_stop_start_up() {
    let tmp = tempfile::tempdir().unwrap();
    crashed_queue(tmp.path(), 5).await;
    // A segment created just before a crash, with nothing in it.
    std::fs::write(tmp.path().join("00000000000000000006.seg"), b"").unwrap();
    std::fs::write(tmp.path().join("README"), b"not a segment").unwrap();
    std::fs::write(tmp.path().join("acks.log"), b"\xF5FSQ garbage").unwrap();
    let q = DurableQueue::open(cfg(tmp.path(), Durability::Disk)).unwrap();
    let r = q.snapshot().recovery;
    assert_eq!(r.ack_log_corrupt_bytes, 12);
    assert_eq!(drain_ids(&q), ids(1..=5));
    assert_eq!(q.push(vec![rec(6)]).await.unwrap().seqs, Some((6, 6)));
}

fn small(dir: &Path, when_full: WhenFull, max_records: u64) -> QueueConfig {
    QueueConfig {
        when_full,
        max_records,
        ..cfg(dir, Durability::Disk)
    }
}

#[tokio::test]
async fn drop_newest_sheds_exactly_what_does_not_fit() {
    let tmp = tempfile::tempdir().unwrap();
    let q = DurableQueue::open(small(tmp.path(), WhenFull::DropNewest, 5)).unwrap();
    let r = q.push(recs(1..=8)).await.unwrap();
    assert_eq!(r.accepted, 5);
    let shed: Vec<_> = r
        .shed
        .iter()
        .map(|s| (s.event_id.as_str(), s.reason))
        .collect();
    assert_eq!(
        shed,
        [
            ("ev-6", ShedReason::DropNewest),
            ("ev-7", ShedReason::DropNewest),
            ("ev-8", ShedReason::DropNewest)
        ]
    );
    let r = q.push(recs(9..=9)).await.unwrap();
    assert_eq!(r.accepted, 0);
    let s = q.snapshot();
    assert_eq!(s.shed(ShedReason::DropNewest), 4);
    assert_eq!(s.shed_total(), 4);
    assert_eq!(s.queued_records, 5);
    assert_eq!(drain_ids(&q), ids(1..=5));
}

#[tokio::test]
async fn drop_oldest_sheds_unread_records_and_counts_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let q = DurableQueue::open(small(tmp.path(), WhenFull::DropOldest, 5)).unwrap();
    q.push(recs(1..=5)).await.unwrap();
    let in_flight = q.try_read_batch(2, u64::MAX).unwrap(); // 1, 2 with the driver
    // 4 new records need 4 free slots: 3 unread (3, 4, 5) can be shed, the
    // 2 in flight cannot, so the last new record is shed too.
    let r = q.push(recs(6..=9)).await.unwrap();
    assert_eq!(r.accepted, 3);
    let shed: Vec<_> = r
        .shed
        .iter()
        .map(|s| (s.event_id.as_str(), s.seq, s.reason))
        .collect();
    assert_eq!(
        shed,
        [
            ("ev-3", Some(3), ShedReason::DropOldest),
            ("ev-4", Some(4), ShedReason::DropOldest),
            ("ev-5", Some(5), ShedReason::DropOldest),
            ("ev-9", None, ShedReason::FullAllInFlight),
        ]
    );
    let s = q.snapshot();
    assert_eq!(s.shed(ShedReason::DropOldest), 3);
    assert_eq!(s.shed(ShedReason::FullAllInFlight), 1);
    assert_eq!(s.shed_total(), 4);
    assert_eq!(s.queued_records, 5);
    q.ack(in_flight.token);
    assert_eq!(drain_ids(&q), ids(6..=8));
    // Shed records stay shed after a crash: they are in the done set.
    drop(q);
    let q = DurableQueue::open(small(tmp.path(), WhenFull::DropOldest, 5)).unwrap();
    assert_eq!(drain_ids(&q), ids(6..=8));
}

#[tokio::test]
async fn block_waits_for_an_ack_and_sheds_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let q = DurableQueue::open(small(tmp.path(), WhenFull::Block, 3)).unwrap();
    q.push(recs(1..=3)).await.unwrap();
    let q2 = q.clone();
    let blocked = tokio::spawn(async move { q2.push(recs(4..=5)).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !blocked.is_finished(),
        "push must wait while the queue is full"
    );
    let b = q.try_read_batch(1, u64::MAX).unwrap();
    q.ack(b.token);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !blocked.is_finished(),
        "one free slot is not enough for two"
    );
    let b = q.try_read_batch(1, u64::MAX).unwrap();
    q.ack(b.token);
    let r = tokio::time::timeout(Duration::from_secs(5), blocked)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((r.accepted, r.shed.len()), (2, 0));
    assert_eq!(q.snapshot().shed_total(), 0);
    assert_eq!(drain_ids(&q), ids(3..=5));
}

#[tokio::test]
async fn shutdown_releases_blocked_pushes_and_counts_them() {
    let tmp = tempfile::tempdir().unwrap();
    let q = DurableQueue::open(small(tmp.path(), WhenFull::Block, 2)).unwrap();
    q.push(recs(1..=2)).await.unwrap();
    let q2 = q.clone();
    let blocked = tokio::spawn(async move { q2.push(recs(3..=5)).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let report = q
        .shutdown(Instant::now() + Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(report.records_pending_replay, 2);
    assert!(matches!(blocked.await.unwrap(), Err(QueueError::Closed)));
    assert!(matches!(q.push(recs(6..=6)).await, Err(QueueError::Closed)));
    assert_eq!(q.snapshot().shed(ShedReason::Closed), 4);
    // Readers drain what is left, then see the end.
    assert_eq!(q.read_batch(10, u64::MAX).await.unwrap().records.len(), 2);
    assert!(q.read_batch(10, u64::MAX).await.is_none());
}

#[tokio::test]
async fn bytes_limit_and_too_large_records() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = small(tmp.path(), WhenFull::DropNewest, 1000);
    c.max_bytes = 100;
    let q = DurableQueue::open(c).unwrap();
    let big = Record::new("ev-big", vec![0u8; 200]);
    let r = q
        .push(vec![
            big,
            Record::new("a", vec![0u8; 59]),
            Record::new("b", vec![0u8; 59]),
        ])
        .await
        .unwrap();
    assert_eq!(r.accepted, 1);
    let reasons: Vec<_> = r.shed.iter().map(|s| s.reason).collect();
    assert_eq!(reasons, [ShedReason::TooLarge, ShedReason::DropNewest]);
    let s = q.snapshot();
    assert_eq!((s.queued_bytes, s.shed(ShedReason::TooLarge)), (60, 1));
}

#[tokio::test]
async fn fully_acked_segments_are_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let q = DurableQueue::open(cfg(tmp.path(), Durability::Disk)).unwrap();
    for i in 0..50 {
        q.push(recs(i * 10 + 1..=i * 10 + 10)).await.unwrap();
    }
    let before = segments(tmp.path()).len();
    assert!(before > 3);
    while let Some(b) = q.try_read_batch(64, u64::MAX) {
        q.ack(b.token);
    }
    let s = q.snapshot();
    assert_eq!(s.segments_deleted_total as usize, before - 1);
    assert_eq!(
        segments(tmp.path()).len(),
        1,
        "only the segment being written stays"
    );
    assert_eq!(s.queued_records, 0);
    drop(q);
    let q = DurableQueue::open(cfg(tmp.path(), Durability::Disk)).unwrap();
    assert!(drain_ids(&q).is_empty());
    assert_eq!(q.push(vec![rec(1)]).await.unwrap().seqs, Some((501, 501)));
}

#[tokio::test]
async fn memory_mode_spills_in_order_and_shutdown_keeps_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = cfg(tmp.path(), Durability::Memory);
    c.memory_max_bytes = 200;
    {
        let q = DurableQueue::open(c.clone()).unwrap();
        q.push(recs(1..=30)).await.unwrap();
        let s = q.snapshot();
        assert!(s.memory_bytes <= 200, "{}", s.memory_bytes);
        assert!(s.segment_bytes > 0, "overflow spilled to disk");
        assert_eq!(s.fsyncs_total, 0, "memory mode does not fsync pushes");
        let b = q.try_read_batch(10, u64::MAX).unwrap();
        assert_eq!(
            b.records
                .iter()
                .map(|r| r.event_id.clone())
                .collect::<Vec<_>>(),
            ids(1..=10)
        );
        q.ack(b.token);
        let report = q
            .shutdown(Instant::now() + Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(
            report,
            ShutdownReport {
                records_pending_replay: 20,
                records_lost: 0
            }
        );
    }
    let q = DurableQueue::open(c).unwrap();
    assert_eq!(drain_ids(&q), ids(11..=30));
}

#[tokio::test]
async fn memory_mode_without_a_directory_counts_what_shutdown_loses() {
    let mut c = QueueConfig::new("mem", None, Durability::Memory);
    c.memory_max_bytes = 10;
    let q = DurableQueue::open(c).unwrap();
    q.push(recs(1..=6)).await.unwrap();
    let _in_flight = q.try_read_batch(2, u64::MAX).unwrap();
    let report = q
        .shutdown(Instant::now() + Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(report.records_lost, 6);
    assert_eq!(q.snapshot().shed(ShedReason::LostAtShutdown), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_share_fsyncs() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = cfg(tmp.path(), Durability::Disk);
    c.segment_max_bytes = 1 << 20;
    let q = DurableQueue::open(c.clone()).unwrap();
    let tasks: Vec<_> = (0..16u64)
        .map(|t| {
            let q = q.clone();
            tokio::spawn(async move {
                for i in 0..20 {
                    q.push(vec![rec(t * 100 + i)]).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let s = q.snapshot();
    assert_eq!(s.pushed_records_total, 320);
    assert!(
        s.fsyncs_total < 320,
        "group commit: {} fsyncs for 320 pushes",
        s.fsyncs_total
    );
    drop(q);
    let q = DurableQueue::open(c).unwrap();
    assert_eq!(drain_ids(&q).len(), 320);
}

#[test]
fn config_validation_lists_every_problem() {
    let mut c = QueueConfig::new("x", None, Durability::Disk);
    c.max_records = 0;
    c.max_bytes = 0;
    let Err(QueueError::InvalidConfig(msg)) = c.validate() else {
        panic!("invalid config accepted");
    };
    assert_eq!(msg.matches(';').count(), 2, "{msg}");
}

#[test]
fn docs_sinks_md_metrics_are_current() {
    let mut body = String::from("| Metric | Meaning |\n|---|---|\n");
    for (name, help) in METRICS {
        body.push_str(&format!("| `{name}` | {help} |\n"));
    }
    crate::core::docs::check_generated_section("queue-metrics", &body);
    // Every sample name is documented.
    let documented: Vec<&str> = METRICS
        .iter()
        .map(|(n, _)| n.split('{').next().unwrap_or(n))
        .collect();
    for (name, _, _) in QueueSnapshot::default().metric_samples() {
        assert!(documented.contains(&name), "{name} undocumented");
    }
}
