//! A fixed amount of encoding work, for instruction counts under
//! `valgrind --tool=callgrind` (stable on a noisy machine, unlike wall
//! time) and for CPU time per record (printed at the end).
//!
//! Run: `cargo build --release -p flowscribe-normalize --example encode_profile`, then
//! `target/release/examples/encode_profile <mode> <rounds>`; under
//! callgrind, divide the instruction count by the records (after
//! subtracting a run with 0 rounds, which measures start-up and fixture
//! building).
//!
//! Modes over the seven golden cases (7 records a round): `ecs`,
//! `otlp-json`, `ocsf`, `cef`, `otlp-record` (one protobuf `LogRecord` per
//! record, as the OTLP sink queues them), `otlp-protobuf` (a batch request,
//! as a sink sends it) and `otlp-prost` (the same request through the
//! prost types).
//!
//! Modes over a workload of 512-flow batches (512 records a round; see
//! `fixtures::workload`), `<encoding>-<sharing>`:
//! - encoding `ecs` (`write_flow_document`), `ecs-cached` (`EcsEncoder`),
//!   `ecs-fragments` (`EcsEncoder` without its connection templates),
//!   `otlp-record` (`write_log_record_protobuf`), `otlp-cached`
//!   (`OtlpEncoder`), `otlp-fragments` (`OtlpEncoder` without templates);
//!   `ecs-cached`, `ecs-fragments`, `otlp-cached` and `otlp-fragments` are
//!   given each batch's event ids, hashed side by side in the timed loop
//!   as the daemon hashes them (since session 10; before, each record's
//!   id was hashed one by one, with SHA-256, by the encoder), `ecs` and
//!   `otlp-record` hash their own one by one;
//! - sharing `shared`: the flows draw their pods from 200 pod identities
//!   and their policies from 50 (shared `Arc`s); `distinct`: every flow
//!   has its own endpoint and policy objects, and the batches cycle through
//!   16 of them (8,192 flows, twice the cache's bound), so that a cached
//!   encoder never finds a part it has seen; `newconns`: the pods and
//!   policies of `shared`, but the batches cycle through 8,192 flows with
//!   distinct flow keys (twice the connection memo's bound), so every
//!   record is a connection seen once and no connection template is ever
//!   used; `newpeers`: the seven golden flows over and over, every
//!   record a new connection between the same peers (its own source port,
//!   first packet and window; ICMP keeps its type), as the e2e bench's
//!   `new-conns` cases: a cached encoder writes them from the template of
//!   the peers' earlier connection. In `shared` each round encodes the same 512 flows again:
//!   connections reported again, which a cached encoder writes from their
//!   templates from the third round on; `many`: the same with 3,072
//!   connections, each reported every sixth round (a busier node: the
//!   templates no longer fit in the core's caches). Cached encoders are kept across
//!   batches, as the daemon keeps them.
//!
//! The last line printed is `<mode> records=<n> bytes/record=<b>
//! cpu_ns/record=<t> records/s/core=<r> bypassed=<k> templated=<m>
//! of_new_connections=<c>`: CPU
//! time (user + system, from `/proc/self/stat`, 10 ms resolution) of the
//! encoding loop only, how many records a cached encoder wrote without its
//! fragment cache, how many from a template, and how many of those were
//! records of new connections written from another connection's template.
#![allow(clippy::unwrap_used, reason = "profiling harness")]

#[path = "../tests/fixtures/mod.rs"]
mod fixtures;

use std::hint::black_box;

use flowscribe_model::ExplainedFlow;
use flowscribe_normalize::event_id::{EventId, EventIdHasher};
use flowscribe_normalize::{Schema, ecs, encode_flow, otlp};

/// Flows per batch in the workload modes.
const BATCH: usize = 512;
/// Distinct pod identities and policies of the shared workload.
const PODS: usize = 200;
const POLICIES: usize = 50;

/// CPU time of this process so far, in nanoseconds (user + system).
fn cpu_nanos() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which is in parentheses): utime is
    // the 12th and stime the 13th of them, in USER_HZ (100 on Linux).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks * 10_000_000
}

/// The event ids of `flows`, in order (`ids` cleared first).
fn batch_ids(hasher: &mut EventIdHasher, flows: &[ExplainedFlow], ids: &mut Vec<EventId>) {
    ids.clear();
    hasher.ids(
        flows.iter().map(|f| {
            let flow = &f.flow.flow;
            (&flow.key, flow.window_start, flow.window_end)
        }),
        ids,
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "ecs".to_string());
    let rounds: usize = args.next().map_or(1000, |r| r.parse().unwrap());
    let ctx = fixtures::context();
    let observed = fixtures::observed();
    let golden: Vec<ExplainedFlow> = fixtures::CASES.iter().map(|c| fixtures::case(c)).collect();
    let (encoding, sharing) = match mode.rsplit_once('-') {
        Some((e, s @ ("shared" | "many" | "distinct" | "newconns" | "newpeers"))) => {
            (e.to_string(), Some(s))
        }
        _ => (mode.clone(), None),
    };
    let all = match sharing {
        Some("shared") => fixtures::workload(BATCH, PODS, POLICIES, true),
        Some("many") => fixtures::workload(6 * BATCH, PODS, POLICIES, true),
        Some("newconns") => fixtures::workload(16 * BATCH, PODS, POLICIES, true),
        Some("newpeers") => (0..16 * BATCH)
            .map(|i| {
                let mut f = golden[i % golden.len()].clone();
                let shift = std::time::Duration::from_millis(i as u64);
                let ff = &mut f.flow.flow;
                ff.window_start += shift;
                ff.window_end += shift;
                if !matches!(ff.key.protocol, 1 | 58) {
                    ff.key.src_port = 10_000 + i as u16;
                    ff.first_packet += shift;
                }
                f
            })
            .collect(),
        Some(_) => fixtures::workload(16 * BATCH, PODS, POLICIES, false),
        None => golden,
    };
    // The flows of round `r`.
    let per_round = all.len().min(BATCH);
    let batch = |r: usize| {
        let start = r * per_round % all.len();
        &all[start..start + per_round]
    };
    let mut out = Vec::with_capacity(4 * 1024 * 1024);
    let mut total = 0usize;
    // Records a cached encoder wrote without its cache (it missed too often).
    let mut bypassed = 0;
    // Records a cached encoder wrote from a connection template.
    let mut templated = 0;
    // Of those, records of new connections (another connection's template).
    let mut new_connections = 0;
    // The cached encoders are given their batch's event ids, hashed side by
    // side as the daemon does (`flow_event_ids`); the time counts.
    let mut event_id_hasher = EventIdHasher::new(&ctx.node);
    let mut ids = Vec::with_capacity(BATCH);
    let cpu_start = cpu_nanos();
    match encoding.as_str() {
        "otlp-record" => {
            for r in 0..rounds {
                out.clear();
                for f in batch(r) {
                    otlp::write_log_record_protobuf(&ctx, black_box(f), observed, &mut out);
                }
                total += out.len();
            }
        }
        "otlp-cached" | "otlp-fragments" => {
            let mut encoder = otlp::OtlpEncoder::new(ctx.clone());
            if encoding == "otlp-fragments" {
                encoder = encoder.without_memo();
            }
            for r in 0..rounds {
                out.clear();
                batch_ids(&mut event_id_hasher, batch(r), &mut ids);
                for (f, id) in batch(r).iter().zip(&ids) {
                    encoder.write_log_record_with_event_id(
                        black_box(f),
                        observed,
                        Some(*id),
                        &mut out,
                    );
                }
                total += out.len();
            }
            bypassed = encoder.bypassed();
            templated = encoder.templated();
            new_connections = encoder.templated_new_connections();
        }
        "ecs-cached" | "ecs-fragments" => {
            let mut encoder = ecs::EcsEncoder::new(ctx.clone());
            if encoding == "ecs-fragments" {
                encoder = encoder.without_memo();
            }
            for r in 0..rounds {
                out.clear();
                batch_ids(&mut event_id_hasher, batch(r), &mut ids);
                for (f, id) in batch(r).iter().zip(&ids) {
                    encoder.encode_with_event_id(black_box(f), observed, Some(*id), &mut out);
                    out.push(b'\n');
                }
                total += out.len();
            }
            bypassed = encoder.bypassed();
            templated = encoder.templated();
            new_connections = encoder.templated_new_connections();
        }
        "otlp-protobuf" => {
            let mut writer = otlp::ProtobufRequestWriter::new();
            for r in 0..rounds {
                for f in batch(r) {
                    writer.push_flow(&ctx, black_box(f), observed);
                }
                out.clear();
                writer.finish(&ctx, &mut out);
                total += out.len();
            }
        }
        "otlp-prost" => {
            for _ in 0..rounds {
                let records = all
                    .iter()
                    .map(|f| otlp::log_record(&ctx, black_box(f), observed))
                    .collect();
                let request = otlp::export_request(&ctx, records);
                total += otlp::encode_protobuf(&request).len();
            }
        }
        schema => {
            let schema: Schema = schema.parse().unwrap();
            for r in 0..rounds {
                out.clear();
                for f in batch(r) {
                    encode_flow(schema, &ctx, black_box(f), observed, &mut out).unwrap();
                    out.push(b'\n');
                }
                total += out.len();
            }
        }
    }
    let cpu = cpu_nanos() - cpu_start;
    let records = (rounds * per_round).max(1);
    println!(
        "{mode} records={records} bytes/record={} cpu_ns/record={} records/s/core={} bypassed={bypassed} templated={templated} of_new_connections={new_connections}",
        total / records,
        cpu / records as u64,
        if cpu == 0 {
            0
        } else {
            records as u128 * 1_000_000_000 / u128::from(cpu)
        }
    );
}
