//! Syslog sink tests against a real rsyslog on loopback (apt packages
//! `rsyslog` and `rsyslog-openssl`): octet-counted TCP with exact content,
//! TLS with a CA the test generates (openssl CLI), mutual TLS, a wrong CA
//! (retry, never a drop), UDP with its size limit, and an outage with a
//! disk queue where every acknowledged record arrives.
//!
//! Every rsyslog is started by the test with a generated config and killed
//! by a Drop guard, so a failing assertion leaves no process behind; temp
//! directories are removed the same way.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;
use crate::core::backoff::BackoffConfig;
use crate::core::classify::{Outcome, RejectReason, TransportFailure};
use crate::core::driver::{DriverConfig, DriverHandle, SinkDriver, Transport};
use crate::core::queue::{Durability, DurableQueue, QueueConfig, QueuedRecord, Record};

const RSYSLOGD: &str = "/usr/sbin/rsyslogd";

/// TLS files for rsyslog's server side.
struct ServerTls {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    /// `anon` (no client certificate) or `x509/certvalid` (one signed by
    /// the CA is required).
    auth_mode: &'static str,
}

impl ServerTls {
    /// The server side of the PKI `make_pki` wrote into `dir`.
    fn of_pki(dir: &Path, auth_mode: &'static str) -> ServerTls {
        ServerTls {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            auth_mode,
        }
    }
}

/// A private rsyslogd; killed on drop.
struct Rsyslog {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
    out: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Rsyslog {
    /// Start rsyslogd on 127.0.0.1:`port` (TCP, or UDP when `udp`), writing
    /// `PRI|HOSTNAME|APP|PROCID|MSGID|SD|MSG` lines to `dir/out.log`.
    fn start(dir: &Path, port: u16, tls: Option<&ServerTls>, udp: bool) -> Rsyslog {
        let work = dir.join("work");
        std::fs::create_dir_all(&work).unwrap();
        let out = dir.join("out.log");
        let mut conf = format!("global(workDirectory=\"{}\"", work.display());
        if let Some(t) = tls {
            conf += &format!(
                " DefaultNetstreamDriver=\"ossl\" DefaultNetstreamDriverCAFile=\"{}\" DefaultNetstreamDriverCertFile=\"{}\" DefaultNetstreamDriverKeyFile=\"{}\"",
                t.ca.display(),
                t.cert.display(),
                t.key.display()
            );
        }
        conf += ")\n";
        if udp {
            conf += "module(load=\"imudp\")\n";
            conf += &format!(
                "input(type=\"imudp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"r\")\n"
            );
        } else if let Some(t) = tls {
            conf += &format!(
                "module(load=\"imtcp\" StreamDriver.Name=\"ossl\" StreamDriver.Mode=\"1\" StreamDriver.AuthMode=\"{}\")\n",
                t.auth_mode
            );
            conf += &format!(
                "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"r\")\n"
            );
        } else {
            conf += "module(load=\"imtcp\")\n";
            conf += &format!(
                "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"r\")\n"
            );
        }
        conf += "template(name=\"t\" type=\"string\" string=\"%pri%|%hostname%|%app-name%|%procid%|%msgid%|%structured-data%|%msg%\\n\")\n";
        conf += &format!(
            "ruleset(name=\"r\") {{ action(type=\"omfile\" file=\"{}\" template=\"t\" flushOnTXEnd=\"on\" asyncWriting=\"off\") }}\n",
            out.display()
        );
        let conf_path = dir.join("rsyslog.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(RSYSLOGD)
            .arg("-n")
            .arg("-f")
            .arg(&conf_path)
            .arg("-i")
            .arg(dir.join("rsyslog.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rsyslogd (apt package rsyslog) must be installed");
        let r = Rsyslog {
            child: Some(child),
            dir: dir.to_path_buf(),
            port,
            out,
        };
        if !udp {
            r.wait_listening();
        } else {
            r.wait_udp_ready();
        }
        r
    }

    /// Wait (with a deadline) until rsyslog accepts TCP connections.
    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "rsyslog did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// UDP has no handshake: wait until rsyslog reports itself started by
    /// writing its pid file.
    fn wait_udp_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.dir.join("rsyslog.pid").exists() {
            assert!(Instant::now() < deadline, "rsyslog did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The pid file is written before inputs are activated; probe
        // with marker datagrams until one shows up in the output.
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        loop {
            probe
                .send_to(b"<134>1 - probe - - - - ready", ("127.0.0.1", self.port))
                .unwrap();
            if self.lines().iter().any(|l| l.ends_with("ready")) {
                return;
            }
            assert!(Instant::now() < deadline, "rsyslog UDP input not ready");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop gracefully (SIGTERM) and wait for the process to exit.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Wait until `done(lines)` holds, with a deadline.
    fn wait_for(&self, what: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let lines = self.lines();
            if done(&lines) {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; have {} lines",
                lines.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Lines that are our records (not rsyslog's own or probe messages).
fn records_in(lines: &[String]) -> Vec<&String> {
    lines
        .iter()
        .filter(|l| l.contains("|flowscribe|"))
        .collect()
}

/// The event id from a `[flowscribe@32473 event_id="..."]` field.
fn event_id(line: &str) -> Option<&str> {
    let start = line.find("event_id=\"")? + "event_id=\"".len();
    let end = line[start..].find('"')?;
    Some(&line[start..start + end])
}

use crate::test_pki::make_pki;

fn fast_driver(name: &str) -> DriverConfig {
    DriverConfig {
        backoff: BackoffConfig {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(300),
            multiplier: 2.0,
        },
        max_batch_records: 50,
        ..DriverConfig::new(name)
    }
}

fn start_driver<T: Transport + 'static>(
    name: &str,
    queue: DurableQueue,
    transport: T,
) -> (
    DriverHandle,
    tokio::task::JoinHandle<crate::core::driver::DriverShutdownReport>,
) {
    let (driver, handle) = SinkDriver::new(fast_driver(name), queue, transport);
    (handle, tokio::spawn(driver.run()))
}

fn in_secs(s: u64) -> std::time::Instant {
    Instant::now() + Duration::from_secs(s)
}

fn record(i: usize) -> Record {
    Record::new(format!("ev-{i:05}"), format!("{{\"n\":{i}}}"))
}

#[tokio::test]
async fn tcp_octet_counting_delivers_exact_content() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let rs = Rsyslog::start(dir.path(), port, None, false);
    let cfg = SyslogConfig {
        procid: "4242".into(),
        ..SyslogConfig::new(format!("127.0.0.1:{port}"), SyslogProtocol::Tcp, "node-1")
    };
    let queue = DurableQueue::open(QueueConfig::new("syslog", None, Durability::Memory)).unwrap();
    queue
        .push(vec![
            Record::new("e1", r#"{"a":1}"#),
            // A line break inside a body survives thanks to octet counting
            // (rsyslog escapes it as #012 when writing the file).
            Record::new("e2", "two\nlines"),
            Record::new(
                "e3",
                "CEF:0|flowscribe|flowscribe|0.1|flow|Flow|3|src=10.0.0.1",
            ),
        ])
        .await
        .unwrap();
    let (h, task) = start_driver("syslog", queue, cfg.build().unwrap());
    h.flush(in_secs(10)).await.unwrap();
    let lines = rs.wait_for("3 records", |l| records_in(l).len() >= 3);
    assert_eq!(
        records_in(&lines),
        [
            r#"134|node-1|flowscribe|4242|flow|[flowscribe@32473 event_id="e1"]|{"a":1}"#,
            r#"134|node-1|flowscribe|4242|flow|[flowscribe@32473 event_id="e2"]|two#012lines"#,
            r#"134|node-1|flowscribe|4242|flow|[flowscribe@32473 event_id="e3"]|CEF:0|flowscribe|flowscribe|0.1|flow|Flow|3|src=10.0.0.1"#,
        ]
    );
    let snap = h.snapshot();
    assert_eq!(snap.delivered_records_total, 3);
    h.shutdown(in_secs(5)).await.unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn tls_with_a_custom_ca_and_with_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    make_pki(dir.path());
    let p = |f: &str| dir.path().join(f);
    for (mode, client_cert) in [("anon", false), ("x509/certvalid", true)] {
        let rs_dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let rs = Rsyslog::start(
            rs_dir.path(),
            port,
            Some(&ServerTls::of_pki(dir.path(), mode)),
            false,
        );
        let mut cfg = SyslogConfig::new(format!("127.0.0.1:{port}"), SyslogProtocol::Tls, "node-1");
        cfg.tls = Some(SyslogTlsConfig {
            ca_file: Some(p("ca.pem")),
            client_cert_file: client_cert.then(|| p("client.pem")),
            client_key_file: client_cert.then(|| p("client.key")),
            server_name: None,
        });
        let queue = DurableQueue::open(QueueConfig::new("tls", None, Durability::Memory)).unwrap();
        queue.push((0..100).map(record).collect()).await.unwrap();
        let (h, task) = start_driver("tls", queue, cfg.build().unwrap());
        h.flush(in_secs(15)).await.unwrap();
        let lines = rs.wait_for("100 records", |l| records_in(l).len() >= 100);
        let ids: Vec<&str> = records_in(&lines)
            .iter()
            .filter_map(|l| event_id(l))
            .collect();
        let want: Vec<String> = (0..100).map(|i| format!("ev-{i:05}")).collect();
        assert_eq!(ids, want, "{mode}");
        assert!(lines.iter().any(|l| l.ends_with("|{\"n\":99}")), "{mode}");
        h.shutdown(in_secs(5)).await.unwrap();
        task.await.unwrap();
    }
}

#[tokio::test]
async fn tls_with_the_wrong_ca_is_a_verification_failure_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    make_pki(dir.path());
    let p = |f: &str| dir.path().join(f);
    let rs_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _rs = Rsyslog::start(
        rs_dir.path(),
        port,
        Some(&ServerTls::of_pki(dir.path(), "anon")),
        false,
    );
    let mut cfg = SyslogConfig::new(format!("127.0.0.1:{port}"), SyslogProtocol::Tls, "node-1");
    cfg.tls = Some(SyslogTlsConfig {
        ca_file: Some(p("other-ca.pem")),
        ..SyslogTlsConfig::default()
    });
    let mut t = cfg.build().unwrap();
    let batch = [QueuedRecord {
        seq: 1,
        event_id: "e".into(),
        payload: "x".into(),
    }];
    let report = t.send(&batch).await;
    assert_eq!(
        report,
        crate::core::driver::SendReport::batch(Outcome::Transport(
            TransportFailure::TlsVerification
        ))
    );
    // Through the driver: retried and degraded, never rejected.
    let queue = DurableQueue::open(QueueConfig::new("badca", None, Durability::Memory)).unwrap();
    queue.push(vec![record(0)]).await.unwrap();
    let (h, task) = start_driver("badca", queue, t);
    assert!(matches!(
        h.flush(Instant::now() + Duration::from_millis(500)).await,
        Err(crate::core::driver::DriverError::DeadlineExceeded)
    ));
    let snap = h.snapshot();
    assert!(snap.retried_records_total >= 1);
    assert_eq!(snap.rejected_total(), 0);
    assert_eq!(
        snap.degraded,
        Some("TLS verification failure (expired, unknown CA, name)")
    );
    h.shutdown(Instant::now()).await.unwrap();
    task.await.unwrap();
}

/// Certificate rotation without a restart: the CA file the sink trusts is
/// replaced (as cert-manager or a Secret update does, by rename); the next
/// connection uses the new file, and what waited in the queue is delivered.
#[tokio::test]
async fn tls_files_are_reloaded_when_they_change() {
    let dir = tempfile::tempdir().unwrap();
    make_pki(dir.path());
    let p = |f: &str| dir.path().join(f);
    let rs_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let rs = Rsyslog::start(
        rs_dir.path(),
        port,
        Some(&ServerTls::of_pki(dir.path(), "anon")),
        false,
    );
    // The sink starts out trusting the wrong CA.
    std::fs::copy(p("other-ca.pem"), p("trust.pem")).unwrap();
    let mut cfg = SyslogConfig::new(format!("127.0.0.1:{port}"), SyslogProtocol::Tls, "node-1");
    cfg.tls = Some(SyslogTlsConfig {
        ca_file: Some(p("trust.pem")),
        ..SyslogTlsConfig::default()
    });
    let queue = DurableQueue::open(QueueConfig::new("reload", None, Durability::Memory)).unwrap();
    queue.push((0..10).map(record).collect()).await.unwrap();
    let (h, task) = start_driver("reload", queue, cfg.build().unwrap());
    assert!(matches!(
        h.flush(Instant::now() + Duration::from_millis(500)).await,
        Err(crate::core::driver::DriverError::DeadlineExceeded)
    ));
    assert_eq!(
        h.snapshot().degraded,
        Some("TLS verification failure (expired, unknown CA, name)")
    );
    assert_eq!(h.snapshot().acknowledged_records_total(), 0);
    // Rotate: the right CA replaces the file atomically.
    std::fs::copy(p("ca.pem"), p("trust.pem.new")).unwrap();
    std::fs::rename(p("trust.pem.new"), p("trust.pem")).unwrap();
    h.flush(in_secs(15)).await.unwrap();
    let lines = rs.wait_for("10 records", |l| records_in(l).len() >= 10);
    assert_eq!(records_in(&lines).len(), 10);
    let snap = h.snapshot();
    assert_eq!(snap.acknowledged_records_total(), 10);
    assert_eq!(snap.rejected_total(), 0);
    assert_eq!(snap.degraded, None);
    h.shutdown(in_secs(5)).await.unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn tcp_connection_refused_is_retried_until_the_receiver_appears() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = SyslogConfig::new(format!("127.0.0.1:{port}"), SyslogProtocol::Tcp, "node-1");
    let mut t = cfg.build().unwrap();
    let batch = [QueuedRecord {
        seq: 1,
        event_id: "e".into(),
        payload: "x".into(),
    }];
    assert_eq!(
        t.send(&batch).await,
        crate::core::driver::SendReport::batch(Outcome::Transport(
            TransportFailure::ConnectionRefused
        ))
    );
    let queue = DurableQueue::open(QueueConfig::new("late", None, Durability::Memory)).unwrap();
    queue.push((0..10).map(record).collect()).await.unwrap();
    let (h, task) = start_driver("late", queue, t);
    let rs = Rsyslog::start(dir.path(), port, None, false);
    h.flush(in_secs(15)).await.unwrap();
    rs.wait_for("10 records", |l| records_in(l).len() >= 10);
    assert_eq!(h.snapshot().rejected_total(), 0);
    h.shutdown(in_secs(5)).await.unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn udp_delivers_small_records_and_rejects_oversized_ones_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let rs = Rsyslog::start(dir.path(), port, None, true);
    let cfg = SyslogConfig {
        max_datagram_bytes: 480,
        ..SyslogConfig::new(format!("127.0.0.1:{port}"), SyslogProtocol::Udp, "node-1")
    };
    let queue = DurableQueue::open(QueueConfig::new("udp", None, Durability::Memory)).unwrap();
    queue
        .push(vec![
            record(1),
            Record::new("big", "x".repeat(1_000)),
            record(2),
        ])
        .await
        .unwrap();
    let (h, task) = start_driver("udp", queue, cfg.build().unwrap());
    h.flush(in_secs(10)).await.unwrap();
    let lines = rs.wait_for("2 records", |l| records_in(l).len() >= 2);
    let ids: Vec<&str> = records_in(&lines)
        .iter()
        .filter_map(|l| event_id(l))
        .collect();
    assert_eq!(ids, ["ev-00001", "ev-00002"]);
    let snap = h.snapshot();
    assert_eq!(snap.delivered_records_total, 2);
    assert_eq!(snap.rejected(RejectReason::TooLarge), 1);
    let rejected = h.take_rejected();
    assert_eq!(rejected.records.len(), 1);
    assert_eq!(rejected.records[0].event_id, "big");
    h.shutdown(in_secs(5)).await.unwrap();
    task.await.unwrap();
}

/// rsyslog stops while records are pushed into a disk queue, then comes
/// back on the same port: every record the queue acknowledged arrives
/// (duplicates allowed, identified by event id).
#[tokio::test]
async fn outage_with_a_disk_queue_loses_no_acknowledged_record() {
    let rs_dir = tempfile::tempdir().unwrap();
    let q_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut rs = Rsyslog::start(rs_dir.path(), port, None, false);
    let cfg = SyslogConfig::new(format!("127.0.0.1:{port}"), SyslogProtocol::Tcp, "node-1");
    let transport = cfg.build().unwrap();
    let stats = transport.stats();
    let queue = DurableQueue::open(QueueConfig::new(
        "outage",
        Some(q_dir.path().to_path_buf()),
        Durability::Disk,
    ))
    .unwrap();
    let (h, task) = start_driver("outage", queue.clone(), transport);
    let mut acknowledged = BTreeSet::new();
    let mut next = 0usize;
    let mut push = async |n: usize, acknowledged: &mut BTreeSet<String>| {
        for _ in 0..n / 10 {
            let batch: Vec<Record> = (next..next + 10).map(record).collect();
            next += 10;
            let receipt = queue.push(batch.clone()).await.unwrap();
            assert_eq!(receipt.accepted, 10);
            acknowledged.extend(batch.into_iter().map(|r| r.event_id));
        }
    };
    // Phase 1: healthy.
    push(300, &mut acknowledged).await;
    rs.wait_for("first records", |l| records_in(l).len() >= 100);
    // Phase 2: rsyslog stops while we keep pushing.
    rs.stop();
    push(500, &mut acknowledged).await;
    // Wait on the condition that proves the outage was seen: a retry.
    let deadline = Instant::now() + Duration::from_secs(20);
    while h.snapshot().retried_records_total == 0 {
        assert!(Instant::now() < deadline, "the driver never saw the outage");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(h.snapshot().degraded.is_some());
    push(200, &mut acknowledged).await;
    // Phase 3: rsyslog is back (same port, appends to the same file).
    let rs = Rsyslog::start(rs_dir.path(), port, None, false);
    h.flush(in_secs(30)).await.unwrap();
    let lines = rs.wait_for("every acknowledged record", |l| {
        let got: BTreeSet<&str> = records_in(l).iter().filter_map(|x| event_id(x)).collect();
        acknowledged.iter().all(|id| got.contains(id.as_str()))
    });
    let delivered: Vec<&str> = records_in(&lines)
        .iter()
        .filter_map(|l| event_id(l))
        .collect();
    let unique: BTreeSet<&str> = delivered.iter().copied().collect();
    assert_eq!(acknowledged.len(), 1_000);
    assert_eq!(unique.len(), 1_000);
    eprintln!(
        "outage: {} acknowledged, {} lines delivered, {} duplicates, {} replayed by the syslog window, {} connects",
        acknowledged.len(),
        delivered.len(),
        delivered.len() - unique.len(),
        stats
            .replayed_records_total
            .load(std::sync::atomic::Ordering::Relaxed),
        stats
            .connects_total
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    let snap = h.snapshot();
    assert_eq!(snap.rejected_total(), 0);
    assert_eq!(snap.queue.queued_records, 0);
    assert_eq!(snap.degraded, None);
    let report = h.shutdown(in_secs(5)).await.unwrap();
    task.await.unwrap();
    assert!(report.drained);
}
