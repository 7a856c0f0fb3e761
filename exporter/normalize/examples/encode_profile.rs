//! A fixed amount of encoding work for instruction counting under
//! `valgrind --tool=callgrind` (stable on a noisy machine, unlike wall
//! time): encodes the seven golden cases `ROUNDS` times in one schema.
//!
//! Run: `cargo build --release -p flowscribe-normalize --example encode_profile`, then
//! `valgrind --tool=callgrind target/release/examples/encode_profile ecs 1000`
//! and divide the instruction count by `7 * 1000` (after subtracting a run
//! with 0 rounds, which measures start-up and fixture building).
//! Schemas: `ecs`, `otlp-json`, `ocsf`, `cef`, `otlp-record` (one
//! protobuf `LogRecord` per record, as the OTLP sink queues them),
//! `otlp-protobuf` (a batch request, as a sink sends it) and `otlp-prost`
//! (the same request through the prost types).
#![allow(clippy::unwrap_used, reason = "profiling harness")]

#[path = "../tests/fixtures/mod.rs"]
mod fixtures;

use std::hint::black_box;

use flowscribe_model::ExplainedFlow;
use flowscribe_normalize::{Schema, encode_flow, otlp};

fn main() {
    let mut args = std::env::args().skip(1);
    let schema = args.next().unwrap_or_else(|| "ecs".to_string());
    let rounds: usize = args.next().map_or(1000, |r| r.parse().unwrap());
    let ctx = fixtures::context();
    let observed = fixtures::observed();
    let flows: Vec<ExplainedFlow> = fixtures::CASES.iter().map(|c| fixtures::case(c)).collect();
    let mut out = Vec::with_capacity(64 * 1024);
    let mut total = 0usize;
    if schema == "otlp-record" {
        for _ in 0..rounds {
            out.clear();
            for f in &flows {
                otlp::write_log_record_protobuf(&ctx, black_box(f), observed, &mut out);
            }
            total += out.len();
        }
    } else if schema == "otlp-protobuf" {
        let mut writer = otlp::ProtobufRequestWriter::new();
        for _ in 0..rounds {
            for f in &flows {
                writer.push_flow(&ctx, black_box(f), observed);
            }
            out.clear();
            writer.finish(&ctx, &mut out);
            total += out.len();
        }
    } else if schema == "otlp-prost" {
        for _ in 0..rounds {
            let records = flows
                .iter()
                .map(|f| otlp::log_record(&ctx, black_box(f), observed))
                .collect();
            let request = otlp::export_request(&ctx, records);
            total += otlp::encode_protobuf(&request).len();
        }
    } else {
        let schema: Schema = schema.parse().unwrap();
        for _ in 0..rounds {
            out.clear();
            for f in &flows {
                encode_flow(schema, &ctx, black_box(f), observed, &mut out).unwrap();
                out.push(b'\n');
            }
            total += out.len();
        }
    }
    println!("{total}");
}
