//! `flowscribe run` refuses bad input with one clear sentence per problem
//! and exit code 2, before it loads anything.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::process::Command;

use flowscribe_e2e::{Exporter, Node, TempConfig, flowscribe_bin, serial};

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(flowscribe_bin())
        .arg("run")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_config_lists_every_problem_with_its_path_and_exits_2() {
    let cases: &[(&str, &[&str])] = &[
        (
            "capture:\n  active_timeout: soon\n  ring_buffer_bytes: 1000\n  interfaces: ['eth[']\n",
            &[
                "capture.interfaces[0]",
                "capture.active_timeout",
                "capture.ring_buffer_bytes",
            ],
        ),
        ("capture:\n  interfacez: [eth0]\n", &["interfacez"]),
        (
            "output: kafka://somewhere\n",
            &["output: \"kafka://somewhere\" is not an output"],
        ),
    ];
    for (i, (yaml, needles)) in cases.iter().enumerate() {
        let config = TempConfig::new(yaml);
        let (code, stderr) = run(&["--config", &config.arg()]);
        assert_eq!(code, Some(2), "case {i}: {stderr}");
        for n in *needles {
            assert!(stderr.contains(n), "case {i}: {n:?} missing from {stderr}");
        }
    }
    let (code, stderr) = run(&["--config", "/nonexistent/flowscribe.yaml"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("cannot read config file /nonexistent/flowscribe.yaml"),
        "{stderr}"
    );
}

#[test]
fn an_interface_that_does_not_exist_is_named_with_exit_2() {
    let (code, stderr) = run(&["--interface", "fsnope0"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("interface \"fsnope0\" does not exist"),
        "{stderr}"
    );
}

#[test]
fn missing_capabilities_are_named_with_exit_2() {
    let _serial = serial();
    // Drop every capability, keep uid 0 (setpriv is in util-linux).
    let out = Command::new("setpriv")
        .args(["--inh-caps=-all", "--bounding-set=-all", "--"])
        .arg(flowscribe_bin())
        .args(["run", "--interface", "lo", "--exclude-interface", "none"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("missing capabilities CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN"),
        "{stderr}"
    );
}

#[test]
fn the_exporters_own_sink_traffic_is_not_captured() {
    let _serial = serial();
    let node = Node::new_v4_only(2);
    let (a, b) = (&node.pods[0], &node.pods[1]);
    // Pretend pod b runs the exporter's sink on a UDP port.
    let sink = b.ns.run(|| std::net::UdpSocket::bind("0.0.0.0:0").unwrap());
    let sink_port = sink.local_addr().unwrap().port();
    let config = TempConfig::new(&format!(
        "capture:\n  exclude_endpoints: ['{}:{sink_port}/udp']\n",
        b.v4
    ));
    let config_arg = config.arg();
    let exporter = Exporter::start(
        &node.ns.name,
        &[
            "--config",
            &config_arg,
            "--active-timeout",
            "300s",
            "--idle-timeout",
            "300s",
        ],
    );
    // To the sink (excluded) and to another port (captured), replies included.
    let client = a.ns.run(|| std::net::UdpSocket::bind("0.0.0.0:0").unwrap());
    client.send_to(b"to-sink", (b.v4, sink_port)).unwrap();
    let mut buf = [0u8; 16];
    let (_, peer) = sink.recv_from(&mut buf).unwrap();
    sink.send_to(b"ack", peer).unwrap();
    client.recv(&mut buf).unwrap();
    let other = flowscribe_e2e::udp_exchange(&a.ns, &b.ns, b.v4, 2, 10, 0, 0);

    let stopped = exporter.stop();
    assert_eq!(stopped.code, Some(0));
    let flows = stopped.flows_between(a.v4, b.v4);
    assert!(
        flows
            .iter()
            .all(|r| r["dst_port"] != sink_port && r["src_port"] != sink_port),
        "sink traffic captured: {flows:#?}"
    );
    assert_eq!(
        flows
            .iter()
            .filter(|r| r["src_port"] == other || r["dst_port"] == other)
            .count(),
        1
    );
}

#[test]
fn compliance_mode_names_every_setting_that_could_lose_records() {
    let config = TempConfig::new("mode: compliance\nsinks: ['syslog+udp://127.0.0.1:514']\n");
    let (code, stderr) = run(&["--config", &config.arg()]);
    assert_eq!(code, Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 4, "{stderr}");
    assert!(lines[0].starts_with("flowscribe: sinks[0]: compliance mode: a memory queue"));
    assert!(lines[1].contains("syslog over UDP"));
    assert!(lines[2].contains("cef records cannot carry the audit fields"));
    assert!(
        lines[3].starts_with("flowscribe: audit.key_file: compliance mode needs the audit trail")
    );
}
