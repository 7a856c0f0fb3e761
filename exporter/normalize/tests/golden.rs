//! The output contract in `schemas/`: golden fixtures for every case and
//! schema (byte for byte; `FLOWSCRIBE_UPDATE_GOLDEN=1` rewrites them), the
//! generated docs pages and mapping files (`FLOWSCRIBE_UPDATE_DOCS=1`),
//! and the checks that hold each golden against its upstream schema, our
//! JSON Schema and our mapping table.

#![allow(clippy::unwrap_used, reason = "tests: a failed step fails the test")]

mod fixtures;

use std::path::{Path, PathBuf};

use flowscribe_normalize::{
    FieldMapping, Schema, encode_flow, encode_loss, json_schema, loss_json_schema, mapping_json,
    mapping_markdown, otlp,
};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use prost::Message as _;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn golden_path(schema: Schema, case: &str) -> PathBuf {
    let ext = match schema {
        Schema::Ecs | Schema::Ocsf => "json",
        Schema::OtlpJson => "otlp.json",
        Schema::Cef => "cef",
    };
    repo()
        .join("schemas")
        .join(schema.dir())
        .join("golden")
        .join(format!("{case}.{ext}"))
}

/// The record as `encode_flow` writes it.
fn encoded(schema: Schema, case: &str) -> Vec<u8> {
    let mut out = Vec::new();
    encode_flow(
        schema,
        &fixtures::context(),
        &fixtures::case(case),
        fixtures::observed(),
        &mut out,
    )
    .unwrap();
    out
}

/// The loss record as `encode_loss` writes it.
fn encoded_loss(schema: Schema, case: &str) -> Vec<u8> {
    let mut out = Vec::new();
    encode_loss(
        schema,
        &fixtures::context(),
        &fixtures::loss_case(case),
        fixtures::observed(),
        &mut out,
    )
    .unwrap();
    out
}

/// Every golden case of `schema`, flows then losses: (case, line).
fn all_encoded(schema: Schema) -> Vec<(&'static str, Vec<u8>)> {
    let flows = fixtures::CASES.iter().map(|c| (*c, encoded(schema, c)));
    let losses = fixtures::LOSS_CASES
        .iter()
        .map(|c| (*c, encoded_loss(schema, c)));
    flows.chain(losses).collect()
}

/// The golden file text: pretty JSON for ECS and OCSF (their key order is
/// sorted, so this is a faithful, reviewable form of the line), the exact
/// line for OTLP/JSON and CEF.
fn golden_text(schema: Schema, line: &[u8]) -> String {
    match schema {
        Schema::Ecs | Schema::Ocsf => {
            let v: Value = serde_json::from_slice(line).unwrap();
            // The line must be exactly the compact form of the document.
            assert_eq!(serde_json::to_vec(&v).unwrap(), line);
            serde_json::to_string_pretty(&v).unwrap() + "\n"
        }
        Schema::OtlpJson | Schema::Cef => String::from_utf8(line.to_vec()).unwrap() + "\n",
    }
}

/// Compares `actual` with the file at `path`, or rewrites the file when
/// `env` is set.
fn check_file(path: &Path, actual: &str, env: &str) -> Result<(), String> {
    if std::env::var_os(env).is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, actual).unwrap();
        return Ok(());
    }
    let expected = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: {e} (run with {env}=1)", path.display()))?;
    if expected != actual {
        return Err(format!(
            "{} is stale; review the diff after running with {env}=1",
            path.display()
        ));
    }
    Ok(())
}

#[test]
fn goldens_match_byte_for_byte() {
    let mut failures = Vec::new();
    for schema in Schema::ALL {
        for (case, line) in all_encoded(schema) {
            let text = golden_text(schema, &line);
            if let Err(e) = check_file(
                &golden_path(schema, case),
                &text,
                "FLOWSCRIBE_UPDATE_GOLDEN",
            ) {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn docs_and_mapping_files_are_current() {
    let mut failures = Vec::new();
    for schema in Schema::ALL {
        let doc = repo()
            .join("docs/schemas")
            .join(format!("{}.md", schema.dir()));
        let map = repo()
            .join("schemas")
            .join(schema.dir())
            .join("mapping.json");
        for (path, text) in [(doc, mapping_markdown(schema)), (map, mapping_json(schema))] {
            if let Err(e) = check_file(&path, &text, "FLOWSCRIBE_UPDATE_DOCS") {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn json_record(schema: Schema, case: &str) -> Value {
    serde_json::from_slice(&encoded(schema, case)).unwrap()
}

#[test]
fn ecs_goldens_are_ecs_documents() {
    for (case, line) in all_encoded(Schema::Ecs) {
        let doc: Value = serde_json::from_slice(&line).unwrap();
        let problems = flowscribe_normalize::ecs_fields::check_ecs_document(&doc).unwrap();
        assert!(
            problems.is_empty(),
            "{case}: {}",
            problems
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[test]
fn ocsf_goldens_are_network_activity_events() {
    for (case, line) in all_encoded(Schema::Ocsf) {
        let event: Value = serde_json::from_slice(&line).unwrap();
        let problems = flowscribe_normalize::ocsf_check::check_network_activity(&event).unwrap();
        assert!(
            problems.is_empty(),
            "{case}: {}",
            problems
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

fn validator(schema: Schema) -> jsonschema::Validator {
    compile(schema, json_schema(schema))
}

fn compile(schema: Schema, text: &str) -> jsonschema::Validator {
    let js: Value = serde_json::from_str(text).unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&js)
        .unwrap_or_else(|e| panic!("{}: invalid JSON Schema: {e}", schema.name()))
}

/// The JSON Schemas are not vacuous: each rejects a broken record.
#[test]
fn json_schemas_reject_broken_records() {
    type Break = fn(&mut Value);
    let broken: [(Schema, Break); 7] = [
        (Schema::Ecs, |v| v["source"]["ip"] = "10.0.0.300".into()),
        (Schema::Ecs, |v| v["event"]["outcome"] = "maybe".into()),
        (Schema::Ecs, |v| v["surprise"] = 1.into()),
        (Schema::Ocsf, |v| v["activity_id"] = 4.into()),
        (Schema::Ocsf, |v| {
            v.as_object_mut().unwrap().remove("metadata");
        }),
        (Schema::OtlpJson, |v| {
            v["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["timeUnixNano"] =
                1795321810000000000u64.into()
        }),
        (Schema::Cef, |v| {
            *v = v.as_str().unwrap().replacen("CEF:0|", "CEF:1|", 1).into()
        }),
    ];
    for (schema, breaks) in broken {
        let line = encoded(schema, "denied");
        let mut v = match schema {
            Schema::Cef => Value::String(String::from_utf8(line).unwrap()),
            _ => serde_json::from_slice(&line).unwrap(),
        };
        let validator = validator(schema);
        assert!(validator.is_valid(&v), "{} denied is valid", schema.name());
        breaks(&mut v);
        assert!(!validator.is_valid(&v), "{}: {v}", schema.name());
    }
    // An unescaped `=` in an extension value breaks the CEF pattern.
    let cef = validator(Schema::Cef);
    let line = String::from_utf8(encoded(Schema::Cef, "denied")).unwrap();
    assert!(!cef.is_valid(&Value::String(line.replace("cs6=1:", "cs6=1:a=b"))));
}

#[test]
fn goldens_validate_against_our_json_schemas() {
    for schema in Schema::ALL {
        let validator = validator(schema);
        for case in fixtures::CASES {
            let line = encoded(schema, case);
            let instance = match schema {
                Schema::Cef => Value::String(String::from_utf8(line).unwrap()),
                _ => serde_json::from_slice(&line).unwrap(),
            };
            let errors: Vec<String> = validator
                .iter_errors(&instance)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            assert!(
                errors.is_empty(),
                "{} {case}: {}",
                schema.name(),
                errors.join("\n")
            );
        }
    }
}

/// Loss goldens validate against the loss JSON Schemas, flow records do
/// not (and loss records do not pass as flows): the two shapes cannot be
/// confused.
#[test]
fn loss_goldens_validate_against_the_loss_json_schemas() {
    let mut checked = 0;
    for schema in Schema::ALL {
        let Some(text) = loss_json_schema(schema) else {
            continue;
        };
        let loss_validator = compile(schema, text);
        let flow_validator = validator(schema);
        let instance = |line: Vec<u8>| match schema {
            Schema::Cef => Value::String(String::from_utf8(line).unwrap()),
            _ => serde_json::from_slice(&line).unwrap(),
        };
        for case in fixtures::LOSS_CASES {
            let v = instance(encoded_loss(schema, case));
            let errors: Vec<String> = loss_validator
                .iter_errors(&v)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            assert!(
                errors.is_empty(),
                "{} {case}: {}",
                schema.name(),
                errors.join("\n")
            );
            assert!(!flow_validator.is_valid(&v), "{} {case}", schema.name());
            checked += 1;
        }
        for case in fixtures::CASES {
            let v = instance(encoded(schema, case));
            assert!(!loss_validator.is_valid(&v), "{} {case}", schema.name());
        }
    }
    assert_eq!(checked, 4, "OCSF and CEF, two cases each");
}

/// What the loss shapes promise beyond their schemas: OCSF activity 99
/// Other with the exact counts, CEF class `capture-loss` with the counts,
/// one id per report shared by both.
#[test]
fn loss_records_carry_counts_and_ids() {
    let loss = fixtures::loss_case("loss_flow_map_full");
    let event: Value =
        serde_json::from_slice(&encoded_loss(Schema::Ocsf, "loss_flow_map_full")).unwrap();
    assert_eq!(event["type_uid"], 400199);
    assert_eq!(event["status_code"], "flow_map_full");
    let l = &event["unmapped"]["flowscribe"]["loss"];
    assert_eq!(
        (l["count"].as_u64(), l["bytes"].as_u64()),
        (Some(7), Some(4200))
    );
    assert_eq!(l["unit"], "packets");
    assert_eq!(l["loses_flow_data"], true);
    let id = flowscribe_normalize::event_id::loss_event_id("node-1", &loss);
    assert_eq!(event["metadata"]["uid"], id.as_str());

    let line = String::from_utf8(encoded_loss(Schema::Cef, "loss_flow_map_full")).unwrap();
    assert!(line.contains("|capture-loss|Capture loss|6|"), "{line}");
    for part in [
        "flexNumber1=7 ",
        "flexNumber2=4200 ",
        "cs1=packets ",
        "cs3=true",
        &format!("externalId={id} "),
    ] {
        assert!(line.contains(part), "{part} in {line}");
    }
    let events = String::from_utf8(encoded_loss(Schema::Cef, "loss_ring_reserve_failed")).unwrap();
    assert!(
        events.contains("flexNumber1=3 ") && events.contains("cs1=events "),
        "{events}"
    );
    assert!(events.ends_with("cs3=false"), "{events}");
}

/// Whether `field` (a leaf path or attribute key) is covered by a row.
/// Rows ending in `.*` or `[]` cover everything below them.
fn covered(rows: &[FieldMapping], field: &str) -> bool {
    rows.iter().any(|r| {
        let f = r.field;
        f == field
            || f.strip_suffix(".*")
                .is_some_and(|p| field.starts_with(&format!("{p}.")))
            || f.strip_suffix("[]")
                .is_some_and(|p| field == p || field.starts_with(&format!("{p}.")))
    })
}

/// Leaf paths of a JSON document, array indices dropped.
fn leaves(prefix: &str, v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(&p, v, out);
            }
        }
        Value::Array(items) if items.iter().any(Value::is_object) => {
            for item in items {
                leaves(prefix, item, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

#[test]
fn coverage_rule() {
    let rows = Schema::Ecs.mapping();
    assert!(covered(rows, "source.ip"));
    assert!(covered(rows, "kubernetes.labels.app"));
    assert!(covered(rows, "flowscribe.policy.egress.hits.uid"));
    assert!(!covered(rows, "source.ipx"));
    assert!(!covered(rows, "bogus.field"));
}

#[test]
fn every_field_written_is_in_the_mapping_table() {
    let mut missing = Vec::new();
    for case in fixtures::CASES {
        for schema in [Schema::Ecs, Schema::Ocsf] {
            let mut paths = Vec::new();
            leaves("", &json_record(schema, case), &mut paths);
            for p in paths {
                if !covered(schema.mapping(), &p) {
                    missing.push(format!("{} {case}: {p}", schema.name()));
                }
            }
        }
        let ctx = fixtures::context();
        let record = otlp::log_record(&ctx, &fixtures::case(case), fixtures::observed());
        let resource = otlp::resource(&ctx);
        let keys = record.attributes.iter().map(|kv| kv.key.clone()).chain(
            resource
                .attributes
                .iter()
                .map(|kv| format!("resource:{}", kv.key)),
        );
        for k in keys {
            if !covered(Schema::OtlpJson.mapping(), &k) {
                missing.push(format!("otlp {case}: {k}"));
            }
        }
        let line = String::from_utf8(encoded(Schema::Cef, case)).unwrap();
        for k in cef_keys(&line) {
            if !covered(Schema::Cef.mapping(), &k) {
                missing.push(format!("cef {case}: {k}"));
            }
        }
    }
    for case in fixtures::LOSS_CASES {
        for schema in [Schema::Ecs, Schema::Ocsf] {
            let mut paths = Vec::new();
            let v: Value = serde_json::from_slice(&encoded_loss(schema, case)).unwrap();
            leaves("", &v, &mut paths);
            for p in paths {
                if !covered(schema.mapping(), &p) {
                    missing.push(format!("{} {case}: {p}", schema.name()));
                }
            }
        }
        let ctx = fixtures::context();
        let record = otlp::loss_record(&ctx, &fixtures::loss_case(case), fixtures::observed());
        for kv in &record.attributes {
            if !covered(Schema::OtlpJson.mapping(), &kv.key) {
                missing.push(format!("otlp {case}: {}", kv.key));
            }
        }
        let line = String::from_utf8(encoded_loss(Schema::Cef, case)).unwrap();
        for k in cef_keys(&line) {
            if !covered(Schema::Cef.mapping(), &k) {
                missing.push(format!("cef {case}: {k}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not in the mapping table:\n{}",
        missing.join("\n")
    );
}

/// The extension keys of a CEF line, `Label` suffixes removed.
fn cef_keys(line: &str) -> Vec<String> {
    let extension = line.splitn(8, '|').nth(7).unwrap();
    extension
        .split(' ')
        .filter_map(|token| token.split_once('=').map(|(k, _)| k))
        .filter(|k| !k.contains('\\') && k.chars().all(|c| c.is_ascii_alphanumeric()))
        .map(|k| k.strip_suffix("Label").unwrap_or(k).to_string())
        .collect()
}

#[test]
fn otlp_protobuf_decodes_and_json_round_trips() {
    let ctx = fixtures::context();
    let records = fixtures::CASES
        .iter()
        .map(|c| otlp::log_record(&ctx, &fixtures::case(c), fixtures::observed()))
        .collect();
    let request = otlp::export_request(&ctx, records);

    let bytes = otlp::encode_protobuf(&request);
    let decoded = ExportLogsServiceRequest::decode(bytes.as_slice()).unwrap();
    assert_eq!(decoded, request);

    // Our OTLP/JSON, read by the opentelemetry-proto deserializer (which
    // follows the OTLP/JSON mapping), gives back the same request.
    let mut json = Vec::new();
    otlp::write_json(&request, &mut json);
    let parsed: ExportLogsServiceRequest = serde_json::from_slice(&json).unwrap();
    assert_eq!(parsed, request);

    // The OTLP/JSON rules themselves, on the raw text.
    let v: Value = serde_json::from_slice(&json).unwrap();
    let record = &v["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
    assert!(record["timeUnixNano"].is_string(), "fixed64 as a string");
    assert!(record["observedTimeUnixNano"].is_string());
    assert_eq!(record["severityNumber"], 9, "enums as integers");
    assert_eq!(record["eventName"], "network.flow", "camelCase keys");
    assert!(record.get("traceId").is_none(), "empty ids are left out");
    let port = record["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == "source.port")
        .unwrap();
    assert_eq!(port["value"]["intValue"], "51320", "int64 as a string");
}

#[test]
fn otlp_json_writes_ids_as_hex() {
    let ctx = fixtures::context();
    let mut record = otlp::log_record(&ctx, &fixtures::case("allowed"), fixtures::observed());
    record.trace_id = (0u8..16).collect();
    record.span_id = vec![0xab; 8];
    let request = otlp::export_request(&ctx, vec![record]);
    let mut json = Vec::new();
    otlp::write_json(&request, &mut json);
    let v: Value = serde_json::from_slice(&json).unwrap();
    let record = &v["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
    assert_eq!(record["traceId"], "000102030405060708090a0b0c0d0e0f");
    assert_eq!(record["spanId"], "abababababababab");
    let parsed: ExportLogsServiceRequest = serde_json::from_slice(&json).unwrap();
    assert_eq!(parsed, request);
}

#[test]
fn schema_names_round_trip() {
    for schema in Schema::ALL {
        assert_eq!(schema.name().parse::<Schema>().unwrap(), schema);
    }
    assert!("json".parse::<Schema>().is_err());
}

#[test]
fn otlp_loss_record_round_trips() {
    let ctx = fixtures::context();
    let loss = flowscribe_model::CaptureLoss {
        reason: flowscribe_model::LossReason::RingReserveFailed,
        count: 3,
        bytes: 0,
        window_start: fixtures::t(0),
        window_end: fixtures::t(10_000),
    };
    let record = otlp::loss_record(&ctx, &loss, fixtures::observed());
    assert_eq!(record.event_name, otlp::LOSS_EVENT_NAME);
    let request = otlp::export_request(&ctx, vec![record]);
    let decoded =
        ExportLogsServiceRequest::decode(otlp::encode_protobuf(&request).as_slice()).unwrap();
    assert_eq!(decoded, request);
    let mut json = Vec::new();
    otlp::write_json(&request, &mut json);
    let parsed: ExportLogsServiceRequest = serde_json::from_slice(&json).unwrap();
    assert_eq!(parsed, request);
}
