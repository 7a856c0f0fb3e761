//! Identity index at cluster scale: memory per pod and lookup latency
//! percentiles with 150k synthetic pods (issue 3's goals: <= 1 KiB per pod,
//! <= 100 ns p99 per lookup). Run:
//!
//!     cargo bench -p flowscribe-enrich --bench index
//!
//! Memory is counted by a counting allocator (live heap bytes held by the
//! index once built, divided by the pod count), and cross-checked with the
//! resident set growth. Two address mixes: uniformly random over all 150k
//! pods (every lookup a cache miss: the worst case) and a hot set of 2,000
//! pods (a node's pods and their usual peers).
//!
//! Per flow is what the daemon pays: `resolve_batch` over both ends of 512
//! flows, timed per call with `Instant` and divided by its flows
//! (percentiles over the calls), and the same calls' on-CPU time per flow
//! from the scheduler's account (`CLOCK_THREAD_CPUTIME_ID`: percentiles and
//! mean), which preemption and the hypervisor's steal time on a busy
//! machine do not inflate. The goal is a cost, so on-CPU is its measure;
//! wall time is printed beside it. The kernel charges an interrupt's
//! handler (a tick, which on this VM can take tens of microseconds) to the
//! thread it interrupted, so the calls an interrupt ran in are counted
//! (perf tracepoint counters on the thread, read outside the timed span)
//! and the percentiles of the other calls printed apart: the lookup's own
//! cost. Single lookups are also timed one by one, the timer's own cost
//! reported beside them. `FLOWSCRIBE_BENCH_ROUNDS`, `_BATCHES` and
//! `_LOOKUPS` shrink the run (e.g. under callgrind).
#![allow(clippy::unwrap_used, reason = "bench")]
#![allow(
    unsafe_code,
    reason = "a counting global allocator needs unsafe impl GlobalAlloc; the thread CPU clock and perf counters are libc"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering};

/// Forwards to the system allocator and keeps the live byte count.
struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);

// SAFETY: every call forwards to `System` with the caller's arguments; the
// counter is a side effect only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant, UNIX_EPOCH};

use flowscribe_enrich::objects::{self, Object};
use flowscribe_enrich::{Change, IdentityIndex, IndexConfig};
use flowscribe_model::EndpointKind;
use serde_json::json;

const PODS: u32 = 150_000;
const PODS_PER_DEPLOYMENT: u32 = 50;
const NAMESPACES: u32 = 500;
const NODES: u32 = 500;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn pod_ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000 + i + 1)
}

fn objects() -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for n in 0..NAMESPACES {
        out.push(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": format!("ns-{n}"), "labels": {"team": format!("t{}", n % 40),
                "kubernetes.io/metadata.name": format!("ns-{n}")}}}));
    }
    for d in 0..PODS / PODS_PER_DEPLOYMENT {
        out.push(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": format!("app-{d}-5f7b9c"), "namespace": format!("ns-{}", d % NAMESPACES),
                "ownerReferences": [{"kind": "Deployment", "name": format!("app-{d}"), "controller": true}]}}));
    }
    for i in 0..PODS {
        let d = i / PODS_PER_DEPLOYMENT;
        out.push(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": format!("app-{d}-5f7b9c-{i:05x}"), "namespace": format!("ns-{}", d % NAMESPACES),
                "uid": format!("{:08x}-0000-4000-8000-{:012x}", i, i),
                "labels": {"app": format!("app-{d}"), "pod-template-hash": "5f7b9c",
                           "tier": if d.is_multiple_of(2) { "web" } else { "backend" }},
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "ownerReferences": [{"kind": "ReplicaSet", "name": format!("app-{d}-5f7b9c"), "controller": true}]},
            "spec": {"nodeName": format!("node-{}", i % NODES), "serviceAccountName": format!("app-{d}"),
                     "containers": [{"name": "app", "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": pod_ip(i).to_string()}}));
    }
    out
}

fn percentiles(mut ns: Vec<u64>) -> (u64, u64, u64) {
    ns.sort_unstable();
    let p = |q: f64| ns[((ns.len() as f64 - 1.0) * q) as usize];
    (p(0.5), p(0.99), p(0.999))
}

fn main() {
    let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let before = rss_bytes();
    let live_before = LIVE.load(Ordering::Relaxed);
    let mut values = objects();
    values.reverse();
    let t0 = Instant::now();
    let mut index = IdentityIndex::new(IndexConfig::default());
    // Parse and apply one object at a time, freeing its JSON as we go, so
    // the live-byte difference is the index alone.
    let mut shrink_at = values.len();
    while let Some(v) = values.pop() {
        let o: Object = objects::parse(&v).unwrap().unwrap();
        drop(v);
        index.apply(Change::Upsert(o), at);
        if values.len() < shrink_at / 2 {
            values.shrink_to_fit();
            shrink_at = values.len();
        }
    }
    drop(values);
    let build = t0.elapsed();
    let live_after = LIVE.load(Ordering::Relaxed);
    let after = rss_bytes();
    let stats = index.stats();
    assert_eq!(stats.pods, PODS as usize);
    let per_pod = (live_after - live_before) as f64 / f64::from(PODS);
    println!(
        "index: {} pods, {} namespaces, {} ReplicaSets; built in {:.2} s",
        PODS,
        NAMESPACES,
        PODS / PODS_PER_DEPLOYMENT,
        build.as_secs_f64()
    );
    println!(
        "memory: live heap of the index {:.1} MiB = {:.0} bytes per pod (goal <= 1024); \
         RSS {:+.1} MiB while building (includes the freed JSON input)",
        (live_after - live_before) as f64 / 1048576.0,
        per_pod,
        (after as f64 - before as f64) / 1048576.0,
    );

    // Lookups: pod addresses in random order (an LCG; deterministic).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) as u32
    };
    let random_pod = |r: u32| IpAddr::V4(pod_ip(r % PODS));
    // The hot set: 2,000 pods spread over the whole table.
    let hot_pod = |r: u32| IpAddr::V4(pod_ip((r % 2000) * (PODS / 2000)));
    let public_addr = |r: u32| IpAddr::V4(Ipv4Addr::from(0x0808_0000 + (r & 0xffff)));
    // Flows an hour after the index was built (the pods' creationTimestamp
    // is earlier still): every pod address resolves to its pod, asserted
    // below, so the time-aware pick is on the measured path.
    let now = at + Duration::from_secs(3600);
    let rounds: usize = env_or("FLOWSCRIBE_BENCH_ROUNDS", 3);
    let n: usize = env_or("FLOWSCRIBE_BENCH_LOOKUPS", 1_000_000);
    let batches: usize = env_or("FLOWSCRIBE_BENCH_BATCHES", 2_000);
    // Which calls an interrupt landed in: the kernel charges an interrupt
    // handler's time (and a tick's, which on this VM can take tens of
    // microseconds) to the thread it interrupted, as it has no IRQ time
    // accounting here. Counted by perf tracepoint counters on this thread
    // (one read per call, outside the timed span, so the count does not
    // disturb what it counts); `None` without tracefs or perf.
    let interrupts = Interrupts::open();
    if interrupts.is_none() {
        println!(
            "interrupt counters unavailable (they need root and tracefs: \
             mount -t tracefs nodev /sys/kernel/tracing): the interrupt-free percentiles are not printed"
        );
    }
    let addrs: Vec<IpAddr> = (0..n).map(|_| random_pod(next())).collect();
    let hot: Vec<IpAddr> = (0..n).map(|_| hot_pod(next())).collect();
    let public: Vec<IpAddr> = (0..n).map(|_| public_addr(next())).collect();
    for round in 0..rounds {
        // Per flow, as enrich_batch resolves them: both ends of 512 flows
        // in one resolve_batch call, the call timed as a whole and divided
        // by its flows. Dropping the endpoints is timed apart: it happens
        // after the records are encoded, not in the lookup.
        let flows_per_batch: usize = env_or("FLOWSCRIBE_BENCH_FLOWS", 512);
        let mut queries: Vec<flowscribe_enrich::index::Query> =
            Vec::with_capacity(2 * flows_per_batch);
        for (mix, pick) in [
            ("hot 2k", &hot_pod as &dyn Fn(u32) -> IpAddr),
            ("random 150k", &random_pod),
        ] {
            let mut per_flow = Vec::with_capacity(batches);
            let mut cpu_per_flow = Vec::with_capacity(batches);
            let mut drop_per_flow = Vec::with_capacity(batches);
            let mut cpu_ns = 0u64;
            let (mut faulted, mut faults_total) = (0u64, 0u64);
            let mut quiet_cpu_per_flow = Vec::new();
            for _ in 0..batches {
                queries.clear();
                for _ in 0..flows_per_batch {
                    // Each flow its own last-packet time within the last
                    // second, shared by its two ends (as enrich_batch asks).
                    let at = now - Duration::from_nanos(u64::from(next()) % 1_000_000_000);
                    queries.push((pick(next()), None, at));
                    queries.push((pick(next()), Some((8080, 6)), at));
                }
                let irqs0 = interrupts.as_ref().map(Interrupts::count);
                let faults0 = thread_minor_faults();
                let cpu0 = thread_cpu_ns();
                let t = Instant::now();
                let ends = index.resolve_batch(black_box(&queries));
                let took = t.elapsed();
                let cpu = thread_cpu_ns() - cpu0;
                let faults = thread_minor_faults() - faults0;
                if let (Some(before), Some(counter)) = (irqs0, &interrupts)
                    && counter.count() == before
                {
                    quiet_cpu_per_flow.push(cpu / flows_per_batch as u64);
                }
                if faults > 0 {
                    faulted += 1;
                    faults_total += faults;
                }
                cpu_ns += cpu;
                cpu_per_flow.push(cpu / flows_per_batch as u64);
                assert_eq!(ends.len(), 2 * flows_per_batch);
                assert!(
                    ends.iter()
                        .all(|e| e.kind == EndpointKind::Pod && e.pod.is_some()),
                    "every pod address resolves to its pod"
                );
                let t = Instant::now();
                drop(black_box(ends));
                drop_per_flow.push(t.elapsed().as_nanos() as u64 / flows_per_batch as u64);
                per_flow.push(took.as_nanos() as u64 / flows_per_batch as u64);
            }
            let (p50, p99, p999) = percentiles(per_flow);
            let (c50, c99, c999) = percentiles(cpu_per_flow);
            let (d50, d99, _) = percentiles(drop_per_flow);
            println!(
                "round {round}: resolve_batch, per flow (2 ends, batches of {flows_per_batch}, \
                 {batches} batches), {mix}: wall p50 {p50} p99 {p99} p99.9 {p999} ns; \
                 on-CPU p50 {c50} p99 {c99} p99.9 {c999} mean {} ns; \
                 dropping the endpoints p50 {d50} p99 {d99} ns; \
                 calls with page faults {faulted} ({faults_total} faults)",
                cpu_ns / (batches * flows_per_batch) as u64
            );
            if interrupts.is_some() && !quiet_cpu_per_flow.is_empty() {
                let calls = quiet_cpu_per_flow.len();
                let (q50, q99, q999) = percentiles(quiet_cpu_per_flow);
                println!(
                    "round {round}: {mix}: the {calls} of {batches} calls no interrupt or softirq \
                     landed in: on-CPU p50 {q50} p99 {q99} p99.9 {q999} ns per flow"
                );
            }
        }

        // One by one, each lookup timed alone (timer included).
        let mut timer = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            black_box(());
            timer.push(t.elapsed().as_nanos() as u64);
        }
        let mut pods = Vec::with_capacity(n);
        for a in &addrs {
            let t = Instant::now();
            black_box(index.resolve(black_box(*a), Some((8080, 6)), now));
            pods.push(t.elapsed().as_nanos() as u64);
        }
        let mut hot_pods = Vec::with_capacity(n);
        for a in &hot {
            let t = Instant::now();
            black_box(index.resolve(black_box(*a), Some((8080, 6)), now));
            hot_pods.push(t.elapsed().as_nanos() as u64);
        }
        let mut external = Vec::with_capacity(n);
        for a in &public {
            let t = Instant::now();
            black_box(index.resolve(black_box(*a), Some((443, 6)), now));
            external.push(t.elapsed().as_nanos() as u64);
        }
        let (t50, t99, _) = percentiles(timer);
        let (p50, p99, p999) = percentiles(pods);
        let (e50, e99, e999) = percentiles(external);
        let (h50, h99, h999) = percentiles(hot_pods);
        println!(
            "round {round}: resolve one by one: pod (random of 150k) p50 {p50} p99 {p99} p99.9 {p999} | \
             pod (hot 2k) p50 {h50} p99 {h99} p99.9 {h999} | \
             public p50 {e50} p99 {e99} p99.9 {e999} | timer alone p50 {t50} p99 {t99} (ns)"
        );
    }
}

/// A positive integer from the environment, else `default`.
fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Interrupts (every hardware IRQ, the local timer, softirqs, IPIs and
/// irq_work) that ran while this thread was on a CPU: a group of perf
/// tracepoint counters attached to the thread.
struct Interrupts {
    leader: std::fs::File,
    _members: Vec<std::fs::File>,
    events: usize,
}

impl Interrupts {
    const EVENTS: [&'static str; 7] = [
        "irq_vectors/local_timer_entry",
        "irq/irq_handler_entry",
        "irq/softirq_entry",
        "irq_vectors/call_function_entry",
        "irq_vectors/call_function_single_entry",
        "irq_vectors/reschedule_entry",
        "irq_vectors/irq_work_entry",
    ];

    fn open() -> Option<Interrupts> {
        use std::os::fd::FromRawFd;
        const PERF_TYPE_TRACEPOINT: u32 = 2;
        const PERF_FORMAT_GROUP: u64 = 1 << 3;
        let mut leader: Option<std::fs::File> = None;
        let mut members = Vec::new();
        for event in Self::EVENTS {
            let id: u64 = std::fs::read_to_string(format!("/sys/kernel/tracing/events/{event}/id"))
                .ok()?
                .trim()
                .parse()
                .ok()?;
            // perf_event_attr as of PERF_ATTR_SIZE_VER0 (64 bytes): type,
            // size, config, sample_period, sample_type, read_format, the
            // flag bits (all clear: enabled, kernel events counted),
            // wakeup_events, bp_type, config1.
            let mut attr = [0u64; 8];
            attr[0] = u64::from(PERF_TYPE_TRACEPOINT) | (64u64 << 32);
            attr[1] = id;
            attr[4] = PERF_FORMAT_GROUP;
            let group = leader.as_ref().map_or(-1, |l| {
                use std::os::fd::AsRawFd;
                l.as_raw_fd()
            });
            // SAFETY: `attr` is a valid 64-byte perf_event_attr for the
            // call's duration; pid 0 and cpu -1 is this thread on any CPU.
            let fd =
                unsafe { libc::syscall(libc::SYS_perf_event_open, attr.as_ptr(), 0, -1, group, 0) };
            if fd < 0 {
                return None;
            }
            // SAFETY: a new descriptor this function owns.
            let file = unsafe { std::fs::File::from_raw_fd(fd as i32) };
            match leader {
                None => leader = Some(file),
                Some(_) => members.push(file),
            }
        }
        Some(Interrupts {
            leader: leader?,
            _members: members,
            events: Self::EVENTS.len(),
        })
    }

    /// Interrupts counted so far.
    fn count(&self) -> u64 {
        use std::io::Read;
        // PERF_FORMAT_GROUP: the number of events, then one value each.
        let mut buf = [0u8; 8 * 8];
        let want = 8 * (1 + self.events);
        let read = (&self.leader).read(&mut buf[..want]).unwrap();
        assert_eq!(read, want, "perf group read");
        buf[8..want]
            .chunks_exact(8)
            .map(|c| u64::from_ne_bytes(c.try_into().unwrap()))
            .sum()
    }
}

/// Minor page faults this thread has taken so far.
fn thread_minor_faults() -> u64 {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage for the call's duration.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    assert_eq!(rc, 0, "getrusage(RUSAGE_THREAD)");
    ru.ru_minflt as u64
}

/// This thread's time on a CPU so far, in nanoseconds (the kernel's own
/// account): unlike wall time, it does not count preemption by other work.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
