//! Output formats end to end: real flows from real traffic, encoded as ECS,
//! OCSF and OTLP/JSON by `flowscribe run --format`, checked against the
//! pinned upstream schemas (ECS 9.4 field definitions, OCSF 1.8 class 4001)
//! and against the flow's true counters. Needs root.
#![allow(clippy::unwrap_used, reason = "tests")]

use flowscribe_e2e::*;
use flowscribe_normalize::{ecs_fields, ocsf_check};
use serde_json::Value;

const ONE_WINDOW: &[&str] = &["--active-timeout", "300s", "--idle-timeout", "300s"];

/// One TCP connection between two pods, exported in `format`.
fn run(format: &str) -> (Vec<Value>, Node, u16, TcpCounts) {
    let node = Node::new_v4_only(2);
    let mut args = ONE_WINDOW.to_vec();
    args.extend(["--format", format]);
    let exporter = Exporter::start(&node.ns.name, &args);
    let (a, b) = (&node.pods[0], &node.pods[1]);
    let (port, counts) = tcp_transfer(&a.ns, &b.ns, b.v4, 50_000);
    let stopped = exporter.stop();
    assert_eq!(stopped.code, Some(0), "log:\n{}", stopped.log.join("\n"));
    (stopped.records, node, port, counts)
}

#[test]
fn ecs_documents_of_real_flows_follow_ecs_and_carry_exact_counters() {
    let _serial = serial();
    let (docs, node, port, tcp) = run("ecs");
    let flow: Vec<&Value> = docs
        .iter()
        .filter(|d| d["source"]["port"] == port)
        .collect();
    assert_eq!(flow.len(), 1, "{docs:#?}");
    let d = flow[0];
    let problems = ecs_fields::check_ecs_document(d).unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(d["source"]["ip"], node.pods[0].v4.to_string());
    assert_eq!(d["destination"]["ip"], node.pods[1].v4.to_string());
    assert_eq!(d["network"]["transport"], "tcp");
    assert_eq!(d["source"]["packets"], tcp.segs_out);
    assert_eq!(d["destination"]["packets"], tcp.segs_in);
    assert!(
        d["network"]["community_id"]
            .as_str()
            .unwrap()
            .starts_with("1:")
    );
    assert_eq!(d["event"]["id"].as_str().unwrap().len(), 32);
    // Every document, flows and loss records alike, is valid ECS.
    for d in &docs {
        let problems = ecs_fields::check_ecs_document(d).unwrap();
        assert!(problems.is_empty(), "{d:#}\n{problems:#?}");
    }
}

#[test]
fn ocsf_events_of_real_flows_validate_against_the_class() {
    let _serial = serial();
    let (events, node, port, tcp) = run("ocsf");
    let flow: Vec<&Value> = events
        .iter()
        .filter(|e| e["src_endpoint"]["port"] == port)
        .collect();
    assert_eq!(flow.len(), 1, "{events:#?}");
    let e = flow[0];
    let problems = ocsf_check::check_network_activity(e).unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(e["class_uid"], 4001);
    assert_eq!(e["src_endpoint"]["ip"], node.pods[0].v4.to_string());
    assert_eq!(e["dst_endpoint"]["ip"], node.pods[1].v4.to_string());
    assert_eq!(e["traffic"]["packets_out"], tcp.segs_out);
    assert_eq!(e["traffic"]["packets_in"], tcp.segs_in);
}

#[test]
fn otlp_json_lines_are_export_requests_with_one_flow_record() {
    let _serial = serial();
    let (requests, _node, port, _tcp) = run("otlp-json");
    let records: Vec<&Value> = requests
        .iter()
        .flat_map(|r| r["resourceLogs"].as_array().unwrap())
        .flat_map(|rl| rl["scopeLogs"].as_array().unwrap())
        .flat_map(|sl| sl["logRecords"].as_array().unwrap())
        .collect();
    let attr = |r: &Value, key: &str| -> Option<Value> {
        r["attributes"]
            .as_array()?
            .iter()
            .find(|a| a["key"] == key)
            .map(|a| a["value"].clone())
    };
    let flow: Vec<&&Value> = records
        .iter()
        .filter(|r| {
            attr(r, "source.port")
                .is_some_and(|v| v["intValue"].as_str().and_then(|s| s.parse().ok()) == Some(port))
        })
        .collect();
    assert_eq!(flow.len(), 1, "{records:#?}");
    let r = flow[0];
    assert_eq!(r["eventName"], "network.flow");
    assert_eq!(attr(r, "network.transport").unwrap()["stringValue"], "tcp");
    // OTLP/JSON writes 64-bit integers as strings.
    assert!(r["timeUnixNano"].is_string());
}
