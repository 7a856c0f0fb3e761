//! Delivery end to end: `flowscribe run --sink …` with real traffic, into a
//! real rsyslog (RFC 5424 over TCP, octet counting) and a file sink, both
//! inside the test's node namespace. Needs root and rsyslog (apt).
#![allow(clippy::unwrap_used, reason = "tests")]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flowscribe_e2e::*;
use serde_json::Value;

const ONE_WINDOW: &[&str] = &["--active-timeout", "300s", "--idle-timeout", "300s"];

/// A private rsyslogd in a namespace, writing every message's MSG to a
/// file; killed and its directory removed on drop.
struct Rsyslog {
    child: Child,
    dir: PathBuf,
}

impl Rsyslog {
    fn start(ns: &Netns, port: u16) -> Rsyslog {
        let dir = std::env::temp_dir().join(format!("fst-rsyslog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("work")).unwrap();
        let conf = format!(
            "global(workDirectory=\"{work}\")\n\
             module(load=\"imtcp\")\n\
             input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"r\")\n\
             template(name=\"t\" type=\"string\" string=\"%hostname%|%app-name%|%msg%\\n\")\n\
             ruleset(name=\"r\") {{ action(type=\"omfile\" file=\"{out}\" template=\"t\" flushOnTXEnd=\"on\" asyncWriting=\"off\") }}\n",
            work = dir.join("work").display(),
            out = dir.join("out.log").display(),
        );
        std::fs::write(dir.join("rsyslog.conf"), conf).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "/usr/sbin/rsyslogd", "-n", "-f"])
            .arg(dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(dir.join("rsyslog.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rsyslogd (apt package rsyslog) must be installed");
        let listening = wait_until(Duration::from_secs(10), || {
            ns.run(move || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok())
        });
        assert!(listening, "rsyslog did not listen on {port}");
        Rsyslog { child, dir }
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("out.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn flows_reach_rsyslog_as_cef_and_a_file_sink_as_ecs() {
    let _serial = serial();
    let node = Node::new_v4_only(2);
    let rsyslog = Rsyslog::start(&node.ns, 6514);
    let file = std::env::temp_dir().join(format!("fst-sink-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let file_sink = format!("file:{}", file.display());
    let mut args = ONE_WINDOW.to_vec();
    args.extend([
        "--sink",
        "syslog+tcp://127.0.0.1:6514",
        "--sink",
        &file_sink,
    ]);
    let exporter = Exporter::start(&node.ns.name, &args);

    let (a, b) = (&node.pods[0], &node.pods[1]);
    let (port, tcp) = tcp_transfer(&a.ns, &b.ns, b.v4, 20_000);
    let stopped = exporter.stop();
    assert_eq!(stopped.code, Some(0), "log:\n{}", stopped.log.join("\n"));
    // Shutdown delivers what is queued before exiting.
    assert!(
        stopped
            .log
            .iter()
            .any(|l| l.contains("sink stopped") && l.contains("syslog+tcp")),
        "{:#?}",
        stopped.log
    );

    // rsyslog: exactly one CEF message for the connection, from this node.
    let spt = format!("spt={port} ");
    let cef: Vec<String> = rsyslog
        .lines()
        .into_iter()
        .filter(|l| l.contains(&spt))
        .collect();
    assert_eq!(cef.len(), 1, "{:#?}", rsyslog.lines());
    let line = &cef[0];
    assert!(line.contains("|flowscribe|CEF:0|"), "{line}");
    assert!(line.contains(&format!("src={} ", a.v4)), "{line}");
    assert!(line.contains(&format!("dst={} ", b.v4)), "{line}");

    // The file sink: exactly one ECS document for it, with the true counters.
    let text = std::fs::read_to_string(&file).unwrap();
    let _ = std::fs::remove_file(&file);
    let docs: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|d: &Value| d["source"]["port"] == port)
        .collect();
    assert_eq!(docs.len(), 1, "{text}");
    assert_eq!(docs[0]["source"]["packets"], tcp.segs_out);
    assert_eq!(docs[0]["destination"]["packets"], tcp.segs_in);
}

#[test]
fn a_bad_sink_is_a_usage_error() {
    let out = Command::new(flowscribe_bin())
        .args([
            "run",
            "--sink",
            "splunk-hec://127.0.0.1:8088",
            "--sink",
            "syslog+tls://:6514",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sinks[0]") && err.contains("needs token_file= or token_env="),
        "{err}"
    );
    assert!(err.contains("sinks[1]"), "{err}");
}

/// A plain RFC 6587 octet-counting receiver on 127.0.0.1:`port` inside a
/// namespace: collects the JSON body of every syslog message it gets.
struct FrameReceiver {
    bodies: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
}

impl FrameReceiver {
    fn start(ns: &Netns, port: u16) -> FrameReceiver {
        Self::start_on(ns, "127.0.0.1".parse().unwrap(), port)
    }

    fn start_on(ns: &Netns, addr: std::net::IpAddr, port: u16) -> FrameReceiver {
        let listener = ns.run(move || std::net::TcpListener::bind((addr, port)).unwrap());
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&bodies);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let sink = std::sync::Arc::clone(&sink);
                std::thread::spawn(move || read_frames(stream, &sink));
            }
        });
        FrameReceiver { bodies }
    }

    fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }
}

fn read_frames(stream: std::net::TcpStream, out: &std::sync::Mutex<Vec<Value>>) {
    use std::io::{BufRead, Read};
    let mut r = std::io::BufReader::new(stream);
    loop {
        let mut len = Vec::new();
        if r.read_until(b' ', &mut len).unwrap_or(0) == 0 {
            return;
        }
        let n: usize = std::str::from_utf8(&len[..len.len() - 1])
            .unwrap()
            .parse()
            .unwrap();
        let mut msg = vec![0u8; n];
        r.read_exact(&mut msg).unwrap();
        // RFC 5424 header and structured data, then the JSON body.
        let text = String::from_utf8(msg).unwrap();
        let body = &text[text.find('{').expect("JSON body")..];
        out.lock()
            .unwrap()
            .push(serde_json::from_str(body).unwrap());
    }
}

/// A free port on 127.0.0.1 inside `ns` (bound, then released).
fn free_port(ns: &Netns) -> u16 {
    ns.run(|| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    })
}

/// Issue 6's crash test through the binary: the syslog receiver is down,
/// records pile up in the disk queue, the exporter is SIGKILLed, the
/// receiver comes up, a new exporter on the same queue directory delivers
/// every record the first one had queued (duplicates allowed, identified
/// by event id).
#[test]
fn records_queued_on_disk_during_an_outage_survive_kill_9() {
    let _serial = serial();
    let node = Node::new_v4_only(2);
    let (a, b) = (&node.pods[0], &node.pods[1]);
    let port = free_port(&node.ns);
    let queue_dir = std::env::temp_dir().join(format!("fst-q-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&queue_dir);
    let sink = format!(
        "syslog+tcp://127.0.0.1:{port}?format=ecs&queue=disk&queue_dir={}",
        queue_dir.display()
    );
    let sink_label = format!("syslog+tcp://127.0.0.1:{port}");
    let config = TempConfig::new("capture:\n  drain_interval: 200ms\n");
    let config_arg = config.arg();
    let args = [
        "--config",
        &config_arg,
        "--idle-timeout",
        "1s",
        "--metrics-listen",
        "127.0.0.1:0",
        "--sink",
        &sink,
    ];
    let mut first = Exporter::start(&node.ns.name, &args);
    let metrics = first.metrics_port();

    // Five conversations -> five flows, each ended by the idle timeout.
    let ports: Vec<u16> = (0..5)
        .map(|_| udp_exchange(&a.ns, &b.ns, b.v4, 3, 100, 1, 100))
        .collect();
    // Wait until all five are in the disk queue (pushed = fsynced) and the
    // sink has failed to deliver anything (connection refused: retrying).
    let pushed = format!("flowscribe_sinks_queue_pushed_records_total{{sink=\"{sink_label}\"}}");
    let acked = format!("flowscribe_sinks_acknowledged_records_total{{sink=\"{sink_label}\"}}");
    let mut last = String::new();
    let queued = wait_until(Duration::from_secs(20), || {
        let (_, body) = http_get(&node.ns, metrics, "/metrics");
        let ok = metric_sample(&body, "flowscribe_flow_records_total") == Some(5)
            && metric_sample(&body, &pushed).unwrap_or(0) >= 5
            && metric_sample(&body, &acked) == Some(0);
        last = body;
        ok
    });
    assert!(queued, "records never queued; last scrape:\n{last}");
    let log = first.kill9();
    assert!(
        !log.iter().any(|l| l.contains("sink stopped")),
        "SIGKILL must not run the shutdown path: {log:#?}"
    );

    // The receiver comes up; a new exporter replays the queue.
    let receiver = FrameReceiver::start(&node.ns, port);
    let second = Exporter::start(&node.ns.name, &args);
    let delivered = wait_until(Duration::from_secs(30), || {
        let got = receiver.bodies();
        ports
            .iter()
            .all(|p| got.iter().any(|d| d["source"]["port"] == *p))
    });
    let stopped = second.stop();
    assert!(
        delivered,
        "not every queued flow arrived after the restart; got {:#?}\nlog: {:#?}",
        receiver.bodies(),
        stopped.log
    );
    assert_eq!(stopped.code, Some(0), "log: {:#?}", stopped.log);
    // Each flow arrived with its one event id; a replayed duplicate would
    // carry the same id.
    let got = receiver.bodies();
    for p in &ports {
        let ids: std::collections::BTreeSet<&str> = got
            .iter()
            .filter(|d| d["source"]["port"] == *p)
            .map(|d| d["event"]["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), 1, "flow from port {p}: {ids:?}");
    }
    let _ = std::fs::remove_dir_all(&queue_dir);
}

/// The exporter's own delivery traffic is left out of capture without any
/// configuration: here the syslog receiver sits in a pod, so every frame
/// crosses a captured veth.
#[test]
fn the_sink_connection_itself_is_not_captured() {
    let _serial = serial();
    let node = Node::new_v4_only(2);
    let (a, b) = (&node.pods[0], &node.pods[1]);
    let port = free_port(&b.ns);
    let receiver = FrameReceiver::start_on(&b.ns, "0.0.0.0".parse().unwrap(), port);
    let sink = format!("syslog+tcp://{}:{port}?format=ecs", b.v4);
    let config = TempConfig::new("capture:\n  drain_interval: 200ms\n");
    let config_arg = config.arg();
    let exporter = Exporter::start(
        &node.ns.name,
        &[
            "--config",
            &config_arg,
            "--idle-timeout",
            "1s",
            "--sink",
            &sink,
        ],
    );
    // A flow whose record travels to the receiver while capture is attached.
    let first = udp_exchange(&a.ns, &b.ns, b.v4, 2, 50, 1, 50);
    assert!(
        wait_until(Duration::from_secs(15), || receiver
            .bodies()
            .iter()
            .any(|d| d["source"]["port"] == first)),
        "the record never reached the receiver"
    );
    let stopped = exporter.stop();
    assert_eq!(stopped.code, Some(0), "log: {:#?}", stopped.log);
    let node_side: std::net::IpAddr = "10.201.2.1".parse().unwrap();
    let own: Vec<&Value> = stopped
        .flows_between(node_side, b.v4)
        .into_iter()
        .filter(|r| r["dst_port"] == port || r["src_port"] == port)
        .collect();
    assert!(own.is_empty(), "the sink connection was captured: {own:#?}");
    // Other traffic on the same veth still is.
    assert_eq!(
        stopped
            .flows_between(a.v4, b.v4)
            .iter()
            .filter(|r| r["src_port"] == first)
            .count(),
        1
    );
}

/// Fan-out: a dead sink (connection refused, retrying) holds only its own
/// queue; the other sink keeps receiving every record meanwhile.
#[test]
fn a_dead_sink_does_not_hold_up_the_others() {
    let _serial = serial();
    let node = Node::new_v4_only(2);
    let (a, b) = (&node.pods[0], &node.pods[1]);
    let dead = free_port(&node.ns);
    let file = std::env::temp_dir().join(format!("fst-fanout-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let config = TempConfig::new("capture:\n  drain_interval: 200ms\n");
    let config_arg = config.arg();
    let dead_sink = format!("syslog+tcp://127.0.0.1:{dead}");
    let file_sink = format!("file:{}", file.display());
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
            &dead_sink,
            "--sink",
            &file_sink,
        ],
    );
    let metrics = exporter.metrics_port();
    let ports: Vec<u16> = (0..4)
        .map(|_| udp_exchange(&a.ns, &b.ns, b.v4, 2, 40, 1, 40))
        .collect();
    let in_file = || -> Vec<Value> {
        std::fs::read_to_string(&file)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(15), || {
            let docs = in_file();
            ports
                .iter()
                .all(|p| docs.iter().any(|d| d["source"]["port"] == *p))
        }),
        "the file sink did not get every flow while the other sink was dead"
    );
    // Meanwhile the dead sink holds them in its queue, retrying.
    let (_, body) = http_get(&node.ns, metrics, "/metrics");
    let queued = metric_sample(
        &body,
        &format!("flowscribe_sinks_queue_records{{sink=\"{dead_sink}\"}}"),
    )
    .unwrap();
    assert!(queued >= 4, "{body}");
    assert_eq!(
        metric_sample(
            &body,
            &format!("flowscribe_sinks_acknowledged_records_total{{sink=\"{dead_sink}\"}}")
        ),
        Some(0)
    );
    drop(exporter);
    let _ = std::fs::remove_file(&file);
}
