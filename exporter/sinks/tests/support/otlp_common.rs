//! Helpers shared by the OTLP sink tests: records, a driver over a memory
//! queue, exactly-once checks, a generated PKI.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flowscribe_normalize::Context;
use flowscribe_sinks::core::backoff::BackoffConfig;
use flowscribe_sinks::core::driver::{DriverConfig, DriverHandle, SinkDriver, Transport};
use flowscribe_sinks::core::queue::{Durability, DurableQueue, QueueConfig, QueuedRecord, Record};
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs};
use prost::Message as _;

pub fn context() -> Context {
    Context {
        node: "node-a".into(),
        cluster: Some("test-cluster".into()),
        service_version: "0.1.0-test".into(),
        community_id_seed: 0,
    }
}

/// The resource and scope the daemon sends under.
pub fn envelope() -> ResourceLogs {
    flowscribe_normalize::otlp::resource_logs(&context(), vec![])
}

/// A LogRecord whose body is `rec-{i}`.
pub fn log_record(i: u32) -> LogRecord {
    LogRecord {
        time_unix_nano: 1_700_000_000_000_000_000 + u64::from(i),
        severity_number: 9,
        event_name: "network.flow".into(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(format!("rec-{i}"))),
        }),
        ..Default::default()
    }
}

pub fn record(i: u32) -> Record {
    Record::new(format!("ev-{i}"), log_record(i).encode_to_vec())
}

/// Records as the driver hands them to a transport.
pub fn queued(range: std::ops::Range<u32>) -> Vec<QueuedRecord> {
    range
        .map(|i| QueuedRecord {
            seq: u64::from(i),
            event_id: format!("ev-{i}"),
            payload: Bytes::from(log_record(i).encode_to_vec()),
        })
        .collect()
}

pub fn fast_driver(name: &str, batch: usize) -> DriverConfig {
    DriverConfig {
        backoff: BackoffConfig {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(200),
            multiplier: 2.0,
        },
        max_batch_records: batch,
        send_timeout: Duration::from_secs(10),
        ..DriverConfig::new(name)
    }
}

pub fn start_driver<T: Transport + 'static>(
    name: &str,
    transport: T,
    batch: usize,
) -> (DriverHandle, tokio::task::JoinHandle<()>) {
    let queue = DurableQueue::open(QueueConfig::new(name, None, Durability::Memory)).unwrap();
    let (driver, handle) = SinkDriver::new(fast_driver(name, batch), queue, transport);
    let task = tokio::spawn(async move {
        driver.run().await;
    });
    (handle, task)
}

pub async fn stop_driver(handle: DriverHandle, task: tokio::task::JoinHandle<()>) {
    let report = handle
        .shutdown(Instant::now() + Duration::from_secs(5))
        .await
        .unwrap();
    assert!(report.drained, "{report:?}");
    task.await.unwrap();
}

pub async fn push_records(handle: &DriverHandle, range: std::ops::Range<u32>) {
    let receipt = handle
        .queue()
        .push(range.map(record).collect())
        .await
        .unwrap();
    assert!(receipt.shed.is_empty());
}

/// `bodies` holds `rec-{i}` exactly once for every expected `i`, and
/// nothing else.
pub fn assert_exactly_once(bodies: &[String], expected: impl IntoIterator<Item = u32>) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for b in bodies {
        *counts.entry(b.as_str()).or_default() += 1;
    }
    let expected: Vec<String> = expected.into_iter().map(|i| format!("rec-{i}")).collect();
    for e in &expected {
        assert_eq!(counts.get(e.as_str()), Some(&1), "{e} not exactly once");
    }
    assert_eq!(bodies.len(), expected.len(), "unexpected extra records");
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Poll `cond` on every tokio tick until it holds (panics after `timeout`).
pub async fn wait_until(timeout: Duration, what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[path = "pki.rs"]
mod pki;
pub use pki::{Pki, make_pki};

/// The client side of mutual TLS with `pki`: trust its CA, present its
/// client certificate.
pub fn mutual_tls(pki: &Pki) -> flowscribe_sinks::otlp::OtlpTlsConfig {
    flowscribe_sinks::otlp::OtlpTlsConfig {
        ca_file: Some(pki.ca.clone()),
        client_cert_file: Some(pki.client_cert.clone()),
        client_key_file: Some(pki.client_key.clone()),
        server_name: None,
    }
}
