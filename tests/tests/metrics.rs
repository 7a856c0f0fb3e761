//! The Prometheus endpoint of `flowscribe run`, scraped while it runs: its
//! counters must agree exactly with what reached the output and a sink.
//! Needs root (eBPF, namespaces).
#![allow(clippy::unwrap_used, reason = "tests")]

use std::time::Duration;

use flowscribe_e2e::*;

#[test]
fn metrics_agree_exactly_with_the_records_the_output_and_a_sink_got() {
    let _serial = serial();
    let node = Node::new_v4_only(2);
    let (a, b) = (&node.pods[0], &node.pods[1]);
    let sink_path = std::env::temp_dir().join(format!("fst-metrics-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&sink_path);
    let sink = format!("file:{}", sink_path.display());
    let config = TempConfig::new("capture:\n  drain_interval: 200ms\n");
    let config_arg = config.arg();
    let mut exporter = Exporter::start(
        &node.ns.name,
        &[
            "--config",
            &config_arg,
            "--idle-timeout",
            "1s",
            "--metrics-listen",
            "127.0.0.1:0",
            "--sink",
            &sink,
        ],
    );
    let port = exporter.metrics_port();

    // Three UDP conversations: three flows, each ended by the idle timeout.
    for _ in 0..3 {
        udp_exchange(&a.ns, &b.ns, b.v4, 5, 100, 2, 100);
    }
    let acked = format!("flowscribe_sinks_acknowledged_records_total{{sink=\"{sink}\"}}");
    let mut last = String::new();
    let settled = wait_until(Duration::from_secs(20), || {
        let (status, body) = http_get(&node.ns, port, "/metrics");
        assert_eq!(status, 200);
        let output = exporter.records_so_far().len() as u64;
        let in_sink = std::fs::read_to_string(&sink_path)
            .map(|t| t.lines().count() as u64)
            .unwrap_or(0);
        // Loss records count too: the drop tracer sees the whole host, so
        // unrelated drops elsewhere on a shared machine can add some.
        let flows = metric_sample(&body, "flowscribe_flow_records_total").unwrap();
        let losses = metric_sample(&body, "flowscribe_loss_records_total").unwrap();
        let ok = flows == 3
            && flows + losses == output
            && metric_sample(&body, &acked) == Some(in_sink)
            && in_sink == output;
        last = format!("{body}\noutput={output} in_sink={in_sink}");
        ok
    });
    assert!(
        settled,
        "metrics never matched the records; last scrape:\n{last}"
    );
    assert_eq!(
        metric_sample(&last, "flowscribe_capture_interfaces_attached"),
        Some(2)
    );
    assert_eq!(
        metric_sample(
            &last,
            "flowscribe_capture_kernel_total{counter=\"ring_reserve_failed\"}"
        ),
        Some(0)
    );
    assert_eq!(
        metric_sample(
            &last,
            &format!("flowscribe_sinks_queue_records{{sink=\"{sink}\"}}")
        ),
        Some(0)
    );
    let (status, _) = http_get(&node.ns, port, "/other");
    assert_eq!(status, 404);

    let stopped = exporter.stop();
    assert_eq!(stopped.code, Some(0), "log: {:#?}", stopped.log);
    let _ = std::fs::remove_file(&sink_path);
}

#[test]
fn an_unusable_metrics_address_is_a_usage_error() {
    let out = std::process::Command::new(flowscribe_bin())
        .args(["run", "--metrics-listen", "localhost:nine"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("metrics_listen: \"localhost:nine\" is not HOST:PORT"),
        "{err}"
    );
}

/// Kernel drops of connections no captured interface saw (here: UDP to a
/// closed port on a pod's loopback, which capture does not watch) are
/// counted live in the metric and summarised in-band once a minute and at
/// shutdown, not in every drain.
#[test]
fn drops_of_unseen_connections_are_a_metric_and_one_summary_record() {
    let _serial = serial();
    let node = Node::new_v4_only(1);
    let pod = &node.pods[0];
    let config = TempConfig::new("capture:\n  drain_interval: 100ms\n");
    let config_arg = config.arg();
    let mut exporter = Exporter::start(
        &node.ns.name,
        &["--config", &config_arg, "--metrics-listen", "127.0.0.1:0"],
    );
    let port = exporter.metrics_port();
    const SENT: u64 = 20;
    pod.ns.run(|| {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..SENT {
            // Port 9 (discard) has no listener: the kernel drops each
            // datagram (NO_SOCKET) on lo.
            s.send_to(b"nobody listens", "127.0.0.1:9").unwrap();
        }
    });
    let series = "flowscribe_capture_drops_unmatched_packets_total";
    let mut seen = 0;
    let counted = wait_until(Duration::from_secs(10), || {
        let (_, body) = http_get(&node.ns, port, "/metrics");
        seen = metric_sample(&body, series).unwrap_or(0);
        seen >= SENT
    });
    assert!(counted, "{series} stayed at {seen}, want >= {SENT}");
    // The metric is updated after a drain has written its records, so the
    // drain that counted these drops is in the output already: without the
    // once-a-minute summary it would hold a drop_unmatched loss record.
    let early: Vec<_> = exporter
        .records_so_far()
        .into_iter()
        .filter(|r| r["record"] == "loss" && r["reason"] == "drop_unmatched")
        .collect();
    assert!(early.is_empty(), "summarised before the minute: {early:?}");
    let stopped = exporter.stop();
    assert_eq!(stopped.code, Some(0), "log: {:#?}", stopped.log);
    let summaries: Vec<&serde_json::Value> = stopped
        .records
        .iter()
        .filter(|r| r["record"] == "loss" && r["reason"] == "drop_unmatched")
        .collect();
    assert_eq!(summaries.len(), 1, "one summary at shutdown: {summaries:?}");
    // Host-wide: other drops on the machine may add to ours, never less.
    assert!(
        stopped.lost("drop_unmatched") >= seen,
        "summary {} < metric {seen}",
        stopped.lost("drop_unmatched")
    );
}
