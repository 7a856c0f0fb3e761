//! End to end to a local HTTP receiver, per core: encode + compress + send
//! (issue 6's goal: ≥ 200 k records/s per core for ECS `_bulk` and for
//! OTLP/HTTP).
//!
//! `cargo bench -p flowscribe-sinks --bench e2e [-- SECONDS] [CASE]` (default
//! 5 s per case, every case twice, interleaved; CASE picks the cases whose
//! name contains it, e.g. `gzip`).
//!
//! One thread does what the daemon and one sink driver do for a record:
//! the event id (what the daemon queues with the record), the encoding
//! (the daemon's `EcsEncoder` line or `OtlpEncoder` `LogRecord`, whose
//! fragment caches see the seven cases' shared pods and policies again and
//! again, as a node's encoder sees its pods and their peers), the queued
//! `Bytes`, and `Transport::send` of batches of 500: request body, gzip
//! level 1 (or zstd level 1) where named, the HTTP/1.1 POST on a
//! kept-alive loopback connection, the response read and classified. The
//! flows are normalize's seven golden cases, each record with its own time
//! window (so every event id and timestamp differs): seven long-lived
//! connections reported again and again, which the encoders write from
//! their connection templates. Cases named `new-conns` give every record
//! its own source port and first packet (ICMP aside), so each is a
//! connection seen once: a new connection between peers seen before, which
//! the encoders write from the template of the peers' earlier connection
//! (source port, Community ID and first packet written per record). Not included: capture, enrichment and
//! explanation, the queue (see the `queue` bench), the receiver.
//!
//! `-- SECONDS compressors` instead compresses one batch's bodies (500
//! ECS documents with their `_bulk` action lines; 500 OTLP `LogRecord`s;
//! then the same for batches of 100)
//! with each compressor the HTTP client could use, for SECONDS each: CPU
//! MB/s, ns per record and ratio.
//!
//! With the `isal` feature (on by default) the HTTP client gzips with ISA-L
//! igzip level 1 (`core::http::gzip`); with `--no-default-features`, with
//! zlib-rs (the "before" of docs/benchmarks.md, "End to end"). The `gzip` cases measure
//! whichever the build has (the table's header line says which).
//!
//! Cost is the CPU time of that one thread (`CLOCK_THREAD_CPUTIME_ID`), so another process's load does not inflate it the way it
//! inflates wall time; the receiver runs on its own thread and only reads
//! bodies. The encode and send shares are timed the same way, apart.
#![allow(clippy::unwrap_used)] // a benchmark that cannot set up should stop

#[path = "../tests/fakes/mod.rs"]
mod fakes;
#[path = "../../normalize/tests/fixtures/mod.rs"]
mod fixtures;

use std::time::{Duration, Instant};

use bytes::Bytes;
use fakes::fixed_reply_server;
use flowscribe_model::ExplainedFlow;
use flowscribe_normalize::ecs::EcsEncoder;
use flowscribe_normalize::event_id::EventIdHasher;
use flowscribe_normalize::otlp::{self, OtlpEncoder};
use flowscribe_sinks::core::classify::{Action, classify};
use flowscribe_sinks::core::driver::{SendOutcomes, Transport};
use flowscribe_sinks::core::queue::QueuedRecord;
use flowscribe_sinks::elasticsearch::ElasticsearchConfig;
use flowscribe_sinks::otlp::{OtlpConfig, OtlpEncoding, OtlpProtocol};

const BATCH: usize = 500;

/// CPU time of the calling thread, ns (`CLOCK_THREAD_CPUTIME_ID`, exact at
/// the call, unlike `/proc/thread-self/schedstat`, which lags by up to a
/// scheduler tick).
#[expect(
    unsafe_code,
    reason = "std has no thread CPU clock; clock_gettime is the one libc call"
)]
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    assert_eq!(rc, 0);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The golden flows, each copy with its own window (`i` ms later); with
/// `new_connections`, each with its own source port and first packet too
/// (ICMP flows keep their type): a new connection between the same peers.
fn flows(n: usize, new_connections: bool) -> Vec<ExplainedFlow> {
    let base: Vec<ExplainedFlow> = fixtures::CASES.iter().map(|c| fixtures::case(c)).collect();
    (0..n)
        .map(|i| {
            let mut f = base[i % base.len()].clone();
            let shift = Duration::from_millis(i as u64);
            f.flow.flow.window_start += shift;
            f.flow.flow.window_end += shift;
            let key = &mut f.flow.flow.key;
            if new_connections && !matches!(key.protocol, 1 | 58) {
                key.src_port = 10_000 + i as u16;
                f.flow.flow.first_packet += shift;
            }
            f
        })
        .collect()
}

/// How request bodies are compressed.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Body {
    Plain,
    Gzip,
    Zstd,
}

#[derive(Clone, Copy, Debug)]
enum Encoding {
    Ecs,
    OtlpProtobuf,
}

/// The daemon's encoders (fragment caches kept across batches).
struct Encoders {
    ecs: EcsEncoder,
    otlp: OtlpEncoder,
    event_id_hasher: EventIdHasher,
}

/// The daemon's part for one batch: event ids and encoded payloads.
fn encode_batch(e: &mut Encoders, enc: Encoding, flows: &[ExplainedFlow]) -> Vec<QueuedRecord> {
    let observed = fixtures::observed();
    // Hashed once per batch, as the daemon does, for the queue and the encoder.
    let mut ids = Vec::with_capacity(flows.len());
    e.event_id_hasher.ids(
        flows.iter().map(|f| {
            let flow = &f.flow.flow;
            (&flow.key, flow.window_start, flow.window_end)
        }),
        &mut ids,
    );
    flows
        .iter()
        .zip(ids)
        .enumerate()
        .map(|(i, (f, id))| {
            let mut out = Vec::new(); // the encoders reserve a record's size
            match enc {
                Encoding::Ecs => e.ecs.encode_with_event_id(f, observed, Some(id), &mut out),
                Encoding::OtlpProtobuf => {
                    e.otlp
                        .write_log_record_with_event_id(f, observed, Some(id), &mut out)
                }
            }
            QueuedRecord {
                seq: i as u64,
                event_id: id.to_hex(),
                payload: Bytes::from(out),
            }
        })
        .collect()
}

fn delivered(outcomes: &SendOutcomes) -> bool {
    match outcomes {
        SendOutcomes::Batch(o) => classify(o).action == Action::Delivered,
        SendOutcomes::PerRecord(v) => v.iter().all(|o| classify(o).action == Action::Delivered),
    }
}

struct Result {
    records: u64,
    encode_ns: u64,
    send_ns: u64,
    wall: Duration,
    body_bytes: u64,
}

fn run_case<T: Transport>(
    rt: &tokio::runtime::Runtime,
    t: &mut T,
    enc: Encoding,
    flows: &[ExplainedFlow],
    seconds: f64,
) -> Result {
    let ctx = fixtures::context();
    let mut encoders = Encoders {
        ecs: EcsEncoder::new(ctx.clone()),
        otlp: OtlpEncoder::new(ctx.clone()),
        event_id_hasher: EventIdHasher::new(&ctx.node),
    };
    let mut r = Result {
        records: 0,
        encode_ns: 0,
        send_ns: 0,
        wall: Duration::ZERO,
        body_bytes: 0,
    };
    let start = Instant::now();
    let mut k = 0;
    while start.elapsed().as_secs_f64() < seconds {
        let chunk = &flows[k * BATCH..(k + 1) * BATCH];
        k = (k + 1) % (flows.len() / BATCH);
        let c0 = thread_cpu_ns();
        let batch = encode_batch(&mut encoders, enc, chunk);
        let c1 = thread_cpu_ns();
        let report = rt.block_on(t.send(&batch));
        let c2 = thread_cpu_ns();
        assert!(delivered(&report.outcomes), "{:?}", report.outcomes);
        r.encode_ns += c1 - c0;
        r.send_ns += c2 - c1;
        r.records += BATCH as u64;
        r.body_bytes += batch.iter().map(|q| q.payload.len() as u64).sum::<u64>();
    }
    r.wall = start.elapsed();
    r
}

/// Compresses one batch's request bodies with each compressor.
fn compressors(flows: &[ExplainedFlow], seconds: f64) {
    use std::io::Write as _;
    let ctx = fixtures::context();
    let mut encoders = Encoders {
        ecs: EcsEncoder::new(ctx.clone()),
        otlp: OtlpEncoder::new(ctx.clone()),
        event_id_hasher: EventIdHasher::new(&ctx.node),
    };
    let mut es_body = Vec::new();
    for q in encode_batch(&mut encoders, Encoding::Ecs, flows) {
        write!(
            es_body,
            r#"{{"create":{{"_index":"logs-flowscribe.flow-default","_id":"{}"}}}}"#,
            q.event_id
        )
        .unwrap();
        es_body.push(b'\n');
        es_body.extend_from_slice(&q.payload);
        es_body.push(b'\n');
    }
    let mut otlp_body = Vec::new();
    for q in encode_batch(&mut encoders, Encoding::OtlpProtobuf, flows) {
        // `ScopeLogs.log_records` (field 2, length-delimited).
        otlp_body.push(0x12);
        let mut n = q.payload.len();
        while n >= 0x80 {
            otlp_body.push(n as u8 | 0x80);
            n >>= 7;
        }
        otlp_body.push(n as u8);
        otlp_body.extend_from_slice(&q.payload);
    }
    println!("| body | compressor | CPU MB/s | ns/record | ratio |");
    println!("|---|---|---|---|---|");
    for (name, body) in [("ES _bulk", &es_body), ("OTLP", &otlp_body)] {
        type Compressor = Box<dyn Fn(&[u8]) -> usize>;
        let cases: [(&str, Compressor); 5] = [
            (
                // zlib-rs, whatever backend `http::gzip` uses.
                "flate2 (zlib-rs) gzip level 1",
                Box::new(|b: &[u8]| {
                    let mut e = flate2::write::GzEncoder::new(
                        Vec::with_capacity(b.len() / 4),
                        flate2::Compression::new(1),
                    );
                    e.write_all(b).unwrap();
                    e.finish().unwrap().len()
                }),
            ),
            (
                if cfg!(feature = "isal") {
                    "http::gzip level 1 (igzip)"
                } else {
                    "http::gzip level 1 (zlib-rs)"
                },
                Box::new(|b: &[u8]| flowscribe_sinks::core::http::gzip(b, 1).len()),
            ),
            (
                "zstd level 1, fresh context",
                Box::new(|b: &[u8]| zstd::bulk::compress(b, 1).unwrap().len()),
            ),
            (
                "http::zstd level 1",
                Box::new(|b: &[u8]| flowscribe_sinks::core::http::zstd(b, 1).unwrap().len()),
            ),
            (
                "http::zstd level 3",
                Box::new(|b: &[u8]| flowscribe_sinks::core::http::zstd(b, 3).unwrap().len()),
            ),
        ];
        for (codec, f) in cases {
            let (mut n, mut out) = (0u64, 0);
            let (c0, w0) = (thread_cpu_ns(), Instant::now());
            while w0.elapsed().as_secs_f64() < seconds {
                out = f(body);
                n += 1;
            }
            let cpu = (thread_cpu_ns() - c0) as f64;
            println!(
                "| {name} ({} records) | {codec} | {:.0} | {:.0} | {:.1} |",
                flows.len(),
                n as f64 * body.len() as f64 / cpu * 1e3,
                cpu / (n as f64 * flows.len() as f64),
                body.len() as f64 / out as f64
            );
        }
    }
}

fn main() {
    let seconds: f64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5.0);
    // A word that is not a number picks the cases whose name contains it.
    let only: Option<String> = std::env::args()
        .skip(1)
        .find(|a| a.parse::<f64>().is_err() && !a.starts_with('-'));
    if only.as_deref() == Some("compressors") {
        // The sinks' batch, and a smaller one (a body that stays in the
        // core's L2 with the compressor's tables).
        for records in [BATCH, 100] {
            compressors(&flows(records, false), seconds);
        }
        return;
    }
    let reported_again = flows(BATCH * 14, false);
    let new_connections = flows(BATCH * 14, true);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (_es_rt, es) = fixed_reply_server("application/json", br#"{"errors":false}"#);
    let (_otlp_rt, otlp_rx) = fixed_reply_server("application/x-protobuf", b"");
    let otlp_addr = otlp_rx.url().trim_start_matches("http://").to_string();

    println!(
        "gzip backend: {}",
        if cfg!(feature = "isal") {
            "ISA-L igzip level 1 (the default `isal` feature)"
        } else {
            "zlib-rs level 1"
        }
    );
    println!(
        "| case | round | records per CPU-second (encode + send) | encode ns/record | send ns/record | wall records/s | payload B/record |"
    );
    println!("|---|---|---|---|---|---|---|");
    for round in 1..=2 {
        for (name, enc, body) in [
            ("es_bulk gzip", Encoding::Ecs, Body::Gzip),
            ("otlp_http gzip", Encoding::OtlpProtobuf, Body::Gzip),
            ("otlp_http zstd", Encoding::OtlpProtobuf, Body::Zstd),
            ("es_bulk plain", Encoding::Ecs, Body::Plain),
            ("otlp_http plain", Encoding::OtlpProtobuf, Body::Plain),
            ("es_bulk gzip new-conns", Encoding::Ecs, Body::Gzip),
            (
                "otlp_http gzip new-conns",
                Encoding::OtlpProtobuf,
                Body::Gzip,
            ),
        ] {
            if only.as_ref().is_some_and(|o| !name.contains(o.as_str())) {
                continue;
            }
            let flows = if name.ends_with("new-conns") {
                &new_connections
            } else {
                &reported_again
            };
            let r = match enc {
                Encoding::Ecs => {
                    let mut cfg = ElasticsearchConfig::new(es.url());
                    cfg.gzip = body == Body::Gzip;
                    let mut t = cfg.build().unwrap();
                    run_case(&rt, &mut t, enc, flows, seconds)
                }
                Encoding::OtlpProtobuf => {
                    let _enter = rt.enter();
                    let mut cfg = OtlpConfig::new(
                        otlp_addr.clone(),
                        OtlpProtocol::Http,
                        otlp::resource_logs(&fixtures::context(), vec![]),
                    );
                    cfg.encoding = OtlpEncoding::Protobuf;
                    cfg.gzip = body == Body::Gzip;
                    cfg.zstd = body == Body::Zstd;
                    let mut t = cfg.build().unwrap();
                    run_case(&rt, &mut t, enc, flows, seconds)
                }
            };
            let per = |ns: u64| ns as f64 / r.records as f64;
            println!(
                "| {name} | {round} | **{:.0} k** | {:.0} | {:.0} | {:.0} k | {} |",
                r.records as f64 / ((r.encode_ns + r.send_ns) as f64 / 1e9) / 1e3,
                per(r.encode_ns),
                per(r.send_ns),
                r.records as f64 / r.wall.as_secs_f64() / 1e3,
                r.body_bytes / r.records,
            );
        }
    }
}
