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
