//! Issue 6's long outage: a syslog receiver on loopback is down for 60 s
//! while 5,000 records/s are pushed into a disk-backed queue (300,000
//! records, about 190 MB). Nothing may be lost or shed, the queue's memory
//! must stay within its configured bound the whole time (the rest waits on
//! disk), and once the receiver comes up every record arrives.

// A failed step should fail the test; clippy.toml's allow-unwrap-in-tests
// covers #[test] fns but not the helpers of an integration test.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flowscribe_sinks::core::backoff::BackoffConfig;
use flowscribe_sinks::core::driver::{DriverConfig, SinkDriver};
use flowscribe_sinks::core::queue::{Durability, DurableQueue, QueueConfig, Record};
use flowscribe_sinks::syslog::{SyslogConfig, SyslogProtocol};

const RATE_PER_S: u64 = 5_000;
const OUTAGE: Duration = Duration::from_secs(60);
const TICK: Duration = Duration::from_millis(100);
const MEMORY_MAX: u64 = 8 << 20;

/// Bitset of the event ids `e<n>` the receiver saw.
struct Seen {
    bits: Mutex<Vec<u64>>,
    unique: AtomicU64,
}

impl Seen {
    fn mark(&self, n: usize) {
        let mut bits = self.bits.lock().unwrap();
        let (w, b) = (n / 64, n % 64);
        if bits[w] & (1 << b) == 0 {
            bits[w] |= 1 << b;
            self.unique.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Read RFC 6587 octet-counted messages and mark their event ids.
fn receive(stream: TcpStream, seen: &Seen) {
    let mut r = BufReader::new(stream);
    loop {
        let mut len = Vec::new();
        if r.read_until(b' ', &mut len).unwrap_or(0) == 0 {
            return;
        }
        let n: usize = std::str::from_utf8(&len[..len.len() - 1])
            .unwrap()
            .parse()
            .unwrap();
        let mut msg = vec![0u8; n];
        if r.read_exact(&mut msg).is_err() {
            return; // the sender reconnects and replays its window
        }
        let text = std::str::from_utf8(&msg).unwrap();
        let id = text.split("event_id=\"e").nth(1).unwrap();
        let id: usize = id[..id.find('"').unwrap()].parse().unwrap();
        seen.mark(id);
    }
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

#[test]
fn a_60s_outage_at_5k_records_per_second_loses_nothing_within_the_memory_bound() {
    let total = RATE_PER_S * OUTAGE.as_secs();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let queue = DurableQueue::open(QueueConfig {
        memory_max_bytes: MEMORY_MAX,
        ..QueueConfig::new("outage", Some(tmp.path().to_path_buf()), Durability::Disk)
    })
    .unwrap();
    let transport = {
        let _enter = rt.enter();
        SyslogConfig::new(format!("127.0.0.1:{port}"), SyslogProtocol::Tcp, "node-1")
            .build()
            .unwrap()
    };
    let mut cfg = DriverConfig::new("outage");
    // Reconnect attempts at most 500 ms apart, so the end of the outage is
    // noticed quickly.
    cfg.backoff = BackoffConfig {
        initial: Duration::from_millis(100),
        max: Duration::from_millis(500),
        multiplier: 2.0,
    };
    let (driver, handle) = SinkDriver::new(cfg, queue, transport);
    rt.spawn(driver.run());

    // The outage: nothing listens on the port while 60 s of records arrive.
    let rss_before = rss_bytes();
    let (mut max_memory, mut max_rss, mut shed) = (0u64, 0u64, 0usize);
    let per_tick = RATE_PER_S * TICK.as_millis() as u64 / 1000;
    let body = vec![b'x'; 600];
    let start = Instant::now();
    for tick in 0..(OUTAGE.as_millis() / TICK.as_millis()) as u64 {
        let records: Vec<Record> = (0..per_tick)
            .map(|i| Record::new(format!("e{}", tick * per_tick + i), body.clone()))
            .collect();
        let receipt = rt.block_on(handle.queue().push(records)).unwrap();
        shed += receipt.shed.len();
        let snap = handle.queue().snapshot();
        max_memory = max_memory.max(snap.memory_bytes);
        max_rss = max_rss.max(rss_bytes());
        // Pace to 5k/s (this is the load generator's clock, not a wait for
        // a result).
        let due = start + TICK * (tick as u32 + 1);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    let pushed = handle.queue().snapshot();
    assert_eq!(shed, 0, "records shed during the outage");
    assert_eq!(pushed.pushed_records_total, total);
    assert_eq!(
        handle.snapshot().acknowledged_records_total(),
        0,
        "nothing listens yet"
    );
    assert!(
        max_memory <= MEMORY_MAX,
        "queue memory {max_memory} B exceeded its bound {MEMORY_MAX} B"
    );
    // 300k records of 600 B would be ~190 MB in memory; the process may
    // grow by the queue's memory bound plus allocator and runtime slack.
    let growth = max_rss.saturating_sub(rss_before);
    assert!(
        growth < 64 << 20,
        "RSS grew by {} MiB during the outage",
        growth >> 20
    );

    // The outage ends.
    let seen = Arc::new(Seen {
        bits: Mutex::new(vec![0; total as usize / 64 + 1]),
        unique: AtomicU64::new(0),
    });
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let accept = Arc::clone(&seen);
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(s) = s else { return };
            let seen = Arc::clone(&accept);
            std::thread::spawn(move || receive(s, &seen));
        }
    });
    let recovered = Instant::now();
    while seen.unique.load(Ordering::Relaxed) < total {
        assert!(
            recovered.elapsed() < Duration::from_secs(300),
            "only {} of {total} records arrived",
            seen.unique.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let snap = handle.snapshot();
    assert_eq!(snap.rejected_total(), 0);
    eprintln!(
        "outage: {total} records queued, queue memory max {} KiB (bound {} KiB), RSS growth {} MiB; \
         all delivered {:.1} s after the receiver came up",
        max_memory >> 10,
        MEMORY_MAX >> 10,
        growth >> 20,
        recovered.elapsed().as_secs_f64()
    );
}
