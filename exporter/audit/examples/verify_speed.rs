//! Timed verification of ~1M records (one node, 1000 one-second batches of
//! 1000 ECS flows, checkpoints every 60 s): prints records/s on one core.
//! `cargo run --release -p flowscribe-audit --example verify_speed [BATCHES]`
#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

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
    let report = common::verify_lines(&archive.lines, common::options());
    let verify = started.elapsed();
    assert!(report.ok(), "{}", report.render());
    let per_s = archive.records as f64 / verify.as_secs_f64();
    println!(
        "records {} lines {} bytes {} | generate+seal {:.2} s | verify {:.2} s = {:.0} records/s, {:.1} MB/s",
        archive.records,
        archive.lines.len(),
        bytes,
        generate.as_secs_f64(),
        verify.as_secs_f64(),
        per_s,
        bytes as f64 / verify.as_secs_f64() / 1e6
    );
}
