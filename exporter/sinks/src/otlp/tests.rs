//! Unit tests of the OTLP sink's pure parts: request bodies (byte-identical
//! to prost and to normalize's writer), the malformed-record check, the
//! headers file and config validation. Transport tests against a real
//! receiver live in `tests/otlp_*.rs`.

use std::time::Duration;

use bytes::Bytes;
use flowscribe_normalize::{Context, otlp};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message as _;

use super::config::Headers;
use super::request_builder::{BuiltRequest, is_well_formed_message};
use super::*;
use crate::core::queue::QueuedRecord;

fn ctx() -> Context {
    Context {
        node: "node-a".into(),
        cluster: Some("c1".into()),
        service_version: "1.2.3".into(),
        community_id_seed: 0,
    }
}

fn record(i: u64) -> LogRecord {
    LogRecord {
        time_unix_nano: 1_700_000_000_000_000_000 + i,
        severity_number: 9,
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(format!("flow {i}"))),
        }),
        ..Default::default()
    }
}

fn queued(records: &[LogRecord]) -> Vec<QueuedRecord> {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| QueuedRecord {
            seq: i as u64,
            event_id: format!("ev-{i}"),
            payload: Bytes::from(r.encode_to_vec()),
        })
        .collect()
}

#[test]
fn protobuf_body_is_byte_identical_to_prost_and_to_normalize() {
    let records: Vec<LogRecord> = (0..7).map(record).collect();
    let builder = OtlpRequestBuilder::new(&otlp::resource_logs(&ctx(), vec![]));
    let mut body = Vec::new();
    let built = builder.protobuf(&queued(&records), &mut body);
    assert_eq!(
        built,
        BuiltRequest {
            included: (0..7).collect(),
            malformed: vec![]
        }
    );
    let expected = otlp::encode_protobuf(&otlp::export_request(&ctx(), records.clone()));
    assert_eq!(body, expected);
    // normalize's streaming writer produces the same request.
    let mut writer = otlp::ProtobufRequestWriter::new();
    for r in &records {
        writer.push_record(r);
    }
    let mut from_writer = Vec::new();
    writer.finish(&ctx(), &mut from_writer);
    assert_eq!(body, from_writer);
}

/// A record with every value kind normalize writes (strings, ints, bools,
/// nested kvlists, ids), for the JSON path.
fn rich_record(i: u64) -> LogRecord {
    use opentelemetry_proto::tonic::common::v1::{KeyValue, KeyValueList};
    let kv = |k: &str, v: any_value::Value| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    };
    let mut r = record(i);
    r.observed_time_unix_nano = 1_700_000_001_000_000_000;
    r.severity_text = "INFO".into();
    r.event_name = "network.flow".into();
    r.trace_id = vec![0xab; 16];
    r.attributes = vec![
        kv(
            "network.transport",
            any_value::Value::StringValue("tcp".into()),
        ),
        kv("source.port", any_value::Value::IntValue(40_000 + i as i64)),
        kv("flowscribe.bytes", any_value::Value::IntValue(i64::MAX)),
        kv(
            "flowscribe.stale",
            any_value::Value::BoolValue(i.is_multiple_of(2)),
        ),
        kv(
            "flowscribe.policy.egress",
            any_value::Value::KvlistValue(KeyValueList {
                values: vec![kv("verdict", any_value::Value::StringValue("allow".into()))],
            }),
        ),
    ];
    r
}

#[test]
fn json_body_is_normalize_otlp_json_of_the_same_request() {
    let records: Vec<LogRecord> = (0..4).map(rich_record).collect();
    let builder = OtlpRequestBuilder::new(&otlp::resource_logs(&ctx(), vec![]));
    let mut body = Vec::new();
    builder.protobuf(&queued(&records), &mut body);
    let decoded = ExportLogsServiceRequest::decode(body.as_slice()).unwrap();
    assert_eq!(decoded, otlp::export_request(&ctx(), records.clone()));

    let mut json = Vec::new();
    let built = builder.json(&queued(&records), &mut json);
    assert_eq!(built.included, [0, 1, 2, 3]);
    let mut expected = Vec::new();
    otlp::write_json(&otlp::export_request(&ctx(), records), &mut expected);
    let json = String::from_utf8(json).unwrap();
    assert_eq!(json, String::from_utf8(expected).unwrap());
    // The OTLP/JSON rules: 64-bit integers as strings, ids as hex.
    assert!(
        json.contains("\"intValue\":\"9223372036854775807\""),
        "{json}"
    );
    assert!(json.contains(&"ab".repeat(16)), "{json}");
}

#[test]
fn malformed_records_are_left_out_and_named() {
    let mut batch = queued(&[record(0), record(1), record(2)]);
    // Truncated in the middle of a field.
    let truncated = batch[1].payload.slice(..batch[1].payload.len() - 3);
    batch[1].payload = truncated;
    batch.push(QueuedRecord {
        seq: 9,
        event_id: "ev-json".into(),
        payload: Bytes::from_static(b"{\"not\":\"protobuf\"}"),
    });
    let builder = OtlpRequestBuilder::new(&otlp::resource_logs(&ctx(), vec![]));
    let mut body = Vec::new();
    let built = builder.protobuf(&batch, &mut body);
    assert_eq!(built.included, [0, 2]);
    assert_eq!(built.malformed, [1, 3]);
    let decoded = ExportLogsServiceRequest::decode(body.as_slice()).unwrap();
    let sent = &decoded.resource_logs[0].scope_logs[0].log_records;
    assert_eq!(sent, &[record(0), record(2)]);

    let mut json = Vec::new();
    let built = builder.json(&batch, &mut json);
    assert_eq!(built.included, [0, 2]);
    assert_eq!(built.malformed, [1, 3]);
}

#[test]
fn well_formed_check_table() {
    let cases: &[(&[u8], bool)] = &[
        (b"", true),
        (&[0x08, 0x96, 0x01], true),             // field 1 varint 150
        (&[0x12, 0x02, b'h', b'i'], true),       // field 2 bytes "hi"
        (&[0x12, 0x05, b'h', b'i'], false),      // length past the end
        (&[0x08], false),                        // varint missing
        (&[0x08, 0x96], false),                  // varint cut
        (&[0x00, 0x01], false),                  // field number 0
        (&[0x0b], false),                        // group start
        (&[0x0f], false),                        // wire type 7
        (&[0x09, 1, 2, 3, 4, 5, 6, 7, 8], true), // fixed64
        (&[0x0d, 1, 2, 3], false),               // fixed32 cut
    ];
    for (bytes, ok) in cases {
        assert_eq!(is_well_formed_message(bytes), *ok, "{bytes:?}");
    }
}

#[test]
fn headers_file_parses_and_errors_never_show_values() {
    let h = Headers::parse("# comment\n\nX-Api-Key: abc123\nx-scope-orgid:  tenant \n").unwrap();
    assert_eq!(
        h.0,
        [
            ("x-api-key".to_string(), "abc123".to_string()),
            ("x-scope-orgid".to_string(), "tenant".to_string())
        ]
    );
    assert_eq!(
        format!("{h:?}"),
        "[\"x-api-key: <redacted>\", \"x-scope-orgid: <redacted>\"]"
    );
    let cases = [
        ("novalue-secret", "line 1: expected `name: value`"),
        (
            "bad name: secret",
            "line 1: \"bad name\" is not a valid header name",
        ),
        (
            "content-type: secret",
            "line 1: header \"content-type\" is set by the transport",
        ),
        (
            "grpc-timeout: secret",
            "line 1: header \"grpc-timeout\" is set by the transport",
        ),
        (
            "\nx-key:",
            "line 2: the value of \"x-key\" is empty or not visible ASCII",
        ),
        (
            "x-key: caf\u{e9}secret",
            "line 1: the value of \"x-key\" is empty or not visible ASCII",
        ),
    ];
    for (text, want) in cases {
        let err = Headers::parse(text).unwrap_err();
        assert!(err.starts_with(want), "{text:?}: {err}");
        assert!(!err.contains("secret"), "{err}");
    }
}

#[test]
fn validate_collects_every_problem() {
    let mut c = OtlpConfig::new("collector", OtlpProtocol::Grpc, Default::default());
    c.encoding = OtlpEncoding::Json;
    c.zstd = true;
    c.timeout = Duration::ZERO;
    c.tls = Some(OtlpTlsConfig {
        client_cert_file: Some("c.pem".into()),
        ..Default::default()
    });
    let err = c.validate().unwrap_err();
    assert_eq!(
        err.0,
        [
            "endpoint: \"collector\" is not HOST:PORT (IPv6 as [ADDR]:PORT)",
            "encoding: json is only available over HTTP (gRPC sends protobuf)",
            "zstd: only available over HTTP (gRPC compresses with gzip)",
            "timeout: must be greater than zero",
            "tls: client_cert_file and client_key_file go together",
        ]
    );
    for ok in ["collector:4317", "10.0.0.1:4317", "[::1]:4317"] {
        let c = OtlpConfig::new(ok, OtlpProtocol::Grpc, Default::default());
        assert_eq!(c.validate(), Ok(()), "{ok}");
    }
    let mut zstd_over_http =
        OtlpConfig::new("collector:4318", OtlpProtocol::Http, Default::default());
    zstd_over_http.zstd = true;
    assert_eq!(zstd_over_http.validate(), Ok(()));
    for bad in [
        "::1:4317",
        "host:0",
        "host:70000",
        ":4317",
        "http://host:4317",
    ] {
        let c = OtlpConfig::new(bad, OtlpProtocol::Grpc, Default::default());
        assert!(c.validate().is_err(), "{bad}");
    }
}

#[test]
fn json_partial_success_reads_int64_as_string_or_number() {
    use super::http::partial_success_from_json;
    let ps = |rejected: i64, msg: &str| {
        Some(
            opentelemetry_proto::tonic::collector::logs::v1::ExportLogsPartialSuccess {
                rejected_log_records: rejected,
                error_message: msg.into(),
            },
        )
    };
    let cases: &[(&str, Result<_, ()>)] = &[
        ("{}", Ok(None)),
        (r#"{"partialSuccess":{}}"#, Ok(ps(0, ""))),
        (
            r#"{"partialSuccess":{"rejectedLogRecords":"12","errorMessage":"old"}}"#,
            Ok(ps(12, "old")),
        ),
        (
            r#"{"partialSuccess":{"rejectedLogRecords":3}}"#,
            Ok(ps(3, "")),
        ),
        (r#"{"partialSuccess":{"rejectedLogRecords":"x"}}"#, Err(())),
        (r#"{"partialSuccess":{"rejectedLogRecords":1.5}}"#, Err(())),
        ("not json", Err(())),
    ];
    for (body, want) in cases {
        let got = partial_success_from_json(body.as_bytes()).map_err(|_| ());
        assert_eq!(&got, want, "{body}");
    }
}
