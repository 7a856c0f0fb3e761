//! OTLP sink throughput to a local receiver, records per second.
//!
//! `cargo bench -p flowscribe-sinks --bench otlp`
//!
//! One iteration is one `Transport::send` of a batch of 500 queued records
//! (the seven golden flows of normalize's fixtures, cycled, as protobuf
//! LogRecords of ~1.3 KB each: the bytes the pipeline queues), answered by
//! the test receiver of `tests/support/otlp_server.rs` on loopback.
//! Included: building the `ExportLogsServiceRequest` around the records (or
//! decoding them and writing OTLP/JSON), gzip, the HTTP/1.1 POST or gRPC
//! call over a kept-alive connection, reading and parsing the response.
//! Not included: encoding the LogRecords (normalize's `encode` bench), the
//! queue and the driver (the `queue` bench).
//!
//! The client runs on the bench thread (`block_on`); the receiver, which
//! decodes every request fully (gunzip + prost, or serde for JSON), runs on
//! one tokio worker thread, so on this 2-core machine the two mostly run on
//! different cores. Records per second is records sent / wall time. The
//! `*_discard` cases send to a receiver that reads the body and answers
//! 200 without decoding it: the client's own cost per record. After the
//! criterion groups, the two `*_discard` cases also run for 5 s each and
//! print records per CPU-second of the whole process (`/proc/self/stat`
//! utime + stime), which other load on the machine does not distort the way
//! it distorts wall time.
#![allow(clippy::unwrap_used)] // a benchmark that cannot set up should stop

#[path = "../../normalize/tests/fixtures/mod.rs"]
mod fixtures;
#[path = "../tests/support/otlp_server.rs"]
mod otlp_server;

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flowscribe_normalize::otlp;
use flowscribe_sinks::core::classify::{Action, classify};
use flowscribe_sinks::core::driver::{SendOutcomes, Transport};
use flowscribe_sinks::core::http::gzip;
use flowscribe_sinks::core::queue::QueuedRecord;
use flowscribe_sinks::otlp::{
    OtlpConfig, OtlpEncoding, OtlpProtocol, OtlpRequestBuilder, OtlpTransport,
};
use otlp_server::OtlpServer;
use prost::Message as _;

const BATCH: usize = 500;

fn batch() -> Vec<QueuedRecord> {
    let ctx = fixtures::context();
    let observed = fixtures::observed();
    let records: Vec<Vec<u8>> = fixtures::CASES
        .iter()
        .map(|c| otlp::log_record(&ctx, &fixtures::case(c), observed).encode_to_vec())
        .collect();
    (0..BATCH)
        .map(|i| QueuedRecord {
            seq: i as u64,
            event_id: format!("{i:064x}"),
            payload: Bytes::from(records[i % records.len()].clone()),
        })
        .collect()
}

fn transport(
    rt: &tokio::runtime::Runtime,
    addr: std::net::SocketAddr,
    protocol: OtlpProtocol,
    encoding: OtlpEncoding,
    gzip: bool,
) -> OtlpTransport {
    let _enter = rt.enter();
    let mut c = OtlpConfig::new(
        addr.to_string(),
        protocol,
        otlp::resource_logs(&fixtures::context(), vec![]),
    );
    c.encoding = encoding;
    c.gzip = gzip;
    c.build().unwrap()
}

fn send_all_delivered(rt: &tokio::runtime::Runtime, t: &mut OtlpTransport, batch: &[QueuedRecord]) {
    let report = rt.block_on(t.send(batch));
    let ok = match &report.outcomes {
        SendOutcomes::Batch(o) => classify(o).action == Action::Delivered,
        SendOutcomes::PerRecord(v) => v.iter().all(|o| classify(o).action == Action::Delivered),
    };
    assert!(ok, "{:?}", report.outcomes);
}

fn otlp_send(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let http = rt.block_on(OtlpServer::http_counting("127.0.0.1:0"));
    let grpc = rt.block_on(OtlpServer::grpc_counting("127.0.0.1:0"));
    let discard = rt.block_on(OtlpServer::http_discarding("127.0.0.1:0"));
    let batch = batch();
    let bytes: usize = batch.iter().map(|r| r.payload.len()).sum();
    eprintln!(
        "batch: {BATCH} records, {} bytes of LogRecords ({} per record)",
        bytes,
        bytes / BATCH
    );
    let mut group = c.benchmark_group("otlp_send");
    group.throughput(Throughput::Elements(BATCH as u64));
    use OtlpEncoding::{Json, Protobuf};
    use OtlpProtocol::{Grpc, Http};
    let cases = [
        (
            "http_protobuf_gzip_discard",
            discard.addr,
            Http,
            Protobuf,
            true,
        ),
        (
            "http_protobuf_plain_discard",
            discard.addr,
            Http,
            Protobuf,
            false,
        ),
        ("http_protobuf_gzip", http.addr, Http, Protobuf, true),
        ("http_protobuf_plain", http.addr, Http, Protobuf, false),
        ("http_json_gzip", http.addr, Http, Json, true),
        ("grpc_gzip", grpc.addr, Grpc, Protobuf, true),
        ("grpc_plain", grpc.addr, Grpc, Protobuf, false),
    ];
    for (name, addr, protocol, encoding, gzip) in cases {
        let mut t = transport(&rt, addr, protocol, encoding, gzip);
        group.bench_function(name, |b| b.iter(|| send_all_delivered(&rt, &mut t, &batch)));
    }
    group.finish();
    // Per core: records per CPU-second of the whole process (client plus
    // the discarding receiver, which only reads bodies), so other load on
    // the machine does not count against us the way wall time does.
    for (name, gzip) in [
        ("http_protobuf_gzip_discard", true),
        ("http_protobuf_plain_discard", false),
    ] {
        let mut t = transport(&rt, discard.addr, Http, Protobuf, gzip);
        send_all_delivered(&rt, &mut t, &batch);
        let (cpu0, wall0) = (process_cpu_seconds(), std::time::Instant::now());
        let mut records = 0u64;
        while wall0.elapsed() < std::time::Duration::from_secs(5) {
            send_all_delivered(&rt, &mut t, &batch);
            records += BATCH as u64;
        }
        let cpu = process_cpu_seconds() - cpu0;
        eprintln!(
            "{name}: {records} records, {cpu:.2} CPU-s over {:.2} s wall: {:.0} records per CPU-second",
            wall0.elapsed().as_secs_f64(),
            records as f64 / cpu
        );
    }
    eprintln!(
        "receiver counted {} (HTTP) + {} (gRPC) records",
        http.records_accepted(),
        grpc.records_accepted()
    );
}

/// Where the client's time goes: building the request body and gzip
/// (level 1, the shared HTTP client's default), no IO.
fn otlp_pieces(c: &mut Criterion) {
    let batch = batch();
    let builder = OtlpRequestBuilder::new(&otlp::resource_logs(&fixtures::context(), vec![]));
    let mut group = c.benchmark_group("otlp_pieces");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut body = Vec::with_capacity(2 << 20);
    group.bench_function("build_protobuf", |b| {
        b.iter(|| {
            body.clear();
            builder.protobuf(black_box(&batch), &mut body);
            black_box(body.len())
        })
    });
    group.bench_function("build_json", |b| {
        b.iter(|| {
            body.clear();
            builder.json(black_box(&batch), &mut body);
            black_box(body.len())
        })
    });
    body.clear();
    builder.protobuf(&batch, &mut body);
    let gz = gzip(&body, 1);
    eprintln!(
        "protobuf body {} bytes, gzip level 1 {} bytes ({:.1}x)",
        body.len(),
        gz.len(),
        body.len() as f64 / gz.len() as f64
    );
    group.bench_function("gzip_protobuf_level1", |b| {
        b.iter(|| black_box(gzip(black_box(&body), 1).len()))
    });
    group.finish();
}

/// utime + stime of this process from /proc/self/stat, in seconds.
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the parenthesised command name; utime and stime are
    // fields 14 and 15 (1-based), i.e. 12 and 13 after the name.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on Linux.
    ticks as f64 / 100.0
}

criterion_group!(benches, otlp_pieces, otlp_send);
criterion_main!(benches);
