//! Disk-queue throughput and write amplification.
//!
//! `cargo bench -p flowscribe-sinks --bench queue`
//!
//! Criterion measures push throughput (records acknowledged per second,
//! i.e. written and fsynced) for concurrent pushers × records per push, and
//! the read + ack path. After each push configuration a fixed workload runs
//! on a fresh directory and one line reports write amplification:
//! `logical` = bytes written to segment and ack-log files / encoded bytes
//! (event id + record), `device` = bytes this process sent to the block
//! layer (`/proc/self/io` write_bytes, which counts pages rewritten by every
//! fsync) / encoded bytes, and records per fsync (group commit).
//! Records are 512 bytes with a 32-byte event id, about an OTLP flow record.

#![allow(clippy::unwrap_used)] // a benchmark that cannot set up should stop

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flowscribe_sinks::core::queue::{Durability, DurableQueue, QueueConfig, Record};

const RECORD_BYTES: usize = 512;

fn config(dir: &Path, durability: Durability) -> QueueConfig {
    QueueConfig {
        max_records: u64::MAX / 2,
        max_bytes: u64::MAX / 2,
        ..QueueConfig::new("bench", Some(dir.to_path_buf()), durability)
    }
}

fn batch(pusher: usize, n: u64, size: usize) -> Vec<Record> {
    (0..size)
        .map(|k| {
            Record::new(
                format!("{pusher:08x}-{n:015x}-{k:07x}"),
                vec![b'r'; RECORD_BYTES],
            )
        })
        .collect()
}

/// Push `rounds` rounds: each of `pushers` tasks pushes one batch per round.
async fn push_rounds(q: &DurableQueue, pushers: usize, per_push: usize, rounds: u64) {
    let tasks: Vec<_> = (0..pushers)
        .map(|p| {
            let q = q.clone();
            tokio::spawn(async move {
                for n in 0..rounds {
                    q.push(batch(p, n, per_push)).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

fn proc_write_bytes() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .and_then(|v| v.trim().parse().ok())
}

const SHAPES: [(usize, usize); 4] = [(1, 1), (1, 64), (8, 1), (8, 64)];

fn push_throughput(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("disk_queue_push");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    for (pushers, per_push) in SHAPES {
        group.throughput(Throughput::Elements((pushers * per_push) as u64));
        let id = BenchmarkId::from_parameter(format!("{pushers}x{per_push}"));
        group.bench_function(id, |b| {
            b.iter_custom(|rounds| {
                let tmp = tempfile::tempdir().unwrap();
                let q = DurableQueue::open(config(tmp.path(), Durability::Disk)).unwrap();
                let started = Instant::now();
                rt.block_on(push_rounds(&q, pushers, per_push, rounds));
                started.elapsed()
            });
        });
        amplification(&rt, pushers, per_push);
    }
    group.finish();

    let mut group = c.benchmark_group("memory_queue_push");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(64));
    group.bench_function("1x64", |b| {
        b.iter_custom(|rounds| {
            let tmp = tempfile::tempdir().unwrap();
            let q = DurableQueue::open(config(tmp.path(), Durability::Memory)).unwrap();
            let started = Instant::now();
            rt.block_on(push_rounds(&q, 1, 64, rounds));
            started.elapsed()
        });
    });
    group.finish();
}

/// A fixed workload on a fresh directory; prints one summary line.
fn amplification(rt: &tokio::runtime::Runtime, pushers: usize, per_push: usize) {
    let total_records = 16_384u64;
    let rounds = total_records / (pushers * per_push) as u64;
    let tmp = tempfile::tempdir().unwrap();
    let q = DurableQueue::open(config(tmp.path(), Durability::Disk)).unwrap();
    let before = proc_write_bytes();
    let started = Instant::now();
    rt.block_on(push_rounds(&q, pushers, per_push, rounds));
    let elapsed = started.elapsed();
    let after = proc_write_bytes();
    let s = q.snapshot();
    let encoded = s.pushed_bytes_total as f64;
    let record_only = (s.pushed_records_total as usize * RECORD_BYTES) as f64;
    let device = match (before, after) {
        (Some(b), Some(a)) => format!("{:.2}x", (a - b) as f64 / encoded),
        _ => "n/a".into(),
    };
    println!(
        "amplification {pushers}x{per_push}: records={} logical={:.3}x (vs record bytes only {:.3}x) device={device} fsyncs={} records/fsync={:.1} records/s={:.0}",
        s.pushed_records_total,
        s.disk_bytes_written_total as f64 / encoded,
        s.disk_bytes_written_total as f64 / record_only,
        s.fsyncs_total,
        s.pushed_records_total as f64 / s.fsyncs_total.max(1) as f64,
        s.pushed_records_total as f64 / elapsed.as_secs_f64(),
    );
}

fn read_ack_throughput(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("disk_queue_read_ack");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(512));
    group.bench_function("batch512_from_disk", |b| {
        b.iter_custom(|iters| {
            let tmp = tempfile::tempdir().unwrap();
            let mut cfg = config(tmp.path(), Durability::Disk);
            // No memory cache: every read comes from the segment files.
            cfg.memory_max_bytes = 0;
            let q = DurableQueue::open(cfg).unwrap();
            rt.block_on(push_rounds(&q, 1, 512, iters));
            let started = Instant::now();
            for _ in 0..iters {
                let batch = q.try_read_batch(512, u64::MAX).unwrap();
                q.ack(batch.token);
            }
            started.elapsed()
        });
    });
    group.finish();
}

criterion_group!(benches, push_throughput, read_ack_throughput);
criterion_main!(benches);
