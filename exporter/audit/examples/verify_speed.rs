//! Timed verification of ~1M records (one node, 1000 one-second batches of
//! 1000 ECS flows, checkpoints every 60 s): prints records/s on one core.
//! `cargo run --release -p flowscribe-audit --example verify_speed [BATCHES]`
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

use flowscribe_audit::MemoryStateStore;

fn main() {
    let batches: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let started = Instant::now();
    let archive = common::run_node(
        "node-a",
        MemoryStateStore::default(),
        0,
        batches,
        1000,
        true,
        [3; 16],
    )
    .0;
    let generate = started.elapsed();
    let bytes: usize = archive.lines.iter().map(|l| l.len() + 1).sum();
    let started = Instant::now();
    let cpu_before = cpu_seconds();
    let report = common::verify_lines(&archive.lines, common::options());
    let verify = started.elapsed();
    let cpu = cpu_seconds() - cpu_before;
    assert!(report.ok(), "{}", report.render());
    let per_s = archive.records as f64 / verify.as_secs_f64();
    println!(
        "records {} lines {} bytes {} | generate+seal {:.2} s | verify {:.2} s wall = {:.0} records/s, {:.1} MB/s | {:.2} s CPU = {:.0} records/s per core",
        archive.records,
        archive.lines.len(),
        bytes,
        generate.as_secs_f64(),
        verify.as_secs_f64(),
        per_s,
        bytes as f64 / verify.as_secs_f64() / 1e6,
        cpu,
        archive.records as f64 / cpu
    );
}
