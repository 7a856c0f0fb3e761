//! OTLP/HTTP sink against an HTTP/1.1 OTLP receiver on loopback
//! (tests/support/otlp_server.rs) that decodes the real request bytes
//! (protobuf with prost, OTLP/JSON with opentelemetry-proto's serde
//! support, gzip undone): every record exactly once in both encodings with
//! the spec's path and headers; every HTTP status of the table row by row;
//! `Retry-After`; partial success in protobuf and JSON responses; split on
//! 413; a malformed record rejected alone; an outage.

// A failed step should fail the test; clippy.toml's allow-unwrap-in-tests
// does not reach integration-test helpers.
#![allow(clippy::unwrap_used)]

#[path = "support/otlp_common.rs"]
mod otlp_common;
#[path = "support/otlp_server.rs"]
mod otlp_server;

use std::time::{Duration, Instant};

use bytes::Bytes;
use flowscribe_sinks::core::classify::{Action, Outcome, RejectReason, TransportFailure, classify};
use flowscribe_sinks::core::driver::{SendOutcomes, Transport};
use flowscribe_sinks::core::queue::{QueuedRecord, Record};
use flowscribe_sinks::otlp::{OtlpConfig, OtlpEncoding, OtlpProtocol};
use otlp_common::*;
use otlp_server::{OtlpServer, Reply, ServerTls};

fn http_config(server: &OtlpServer, encoding: OtlpEncoding) -> OtlpConfig {
    let mut c = OtlpConfig::new(server.addr.to_string(), OtlpProtocol::Http, envelope());
    c.encoding = encoding;
    c
}

const OK: Outcome = Outcome::Http { status: 200 };

async fn exactly_once(encoding: OtlpEncoding, content_type: &str) {
    let server = OtlpServer::http("127.0.0.1:0").await;
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("headers");
    std::fs::write(&headers, "X-Api-Key: k3y-value\n").unwrap();
    let mut cfg = http_config(&server, encoding);
    cfg.headers_file = Some(headers);
    let transport = cfg.build().unwrap();
    assert!(!format!("{transport:?}").contains("k3y-value"));
    let (handle, task) = start_driver("otlp-http", transport, 100);
    push_records(&handle, 0..1000).await;
    handle
        .flush(Instant::now() + Duration::from_secs(20))
        .await
        .unwrap();
    let received = server.received();
    assert_eq!(received.len(), 10);
    assert_exactly_once(&server.accepted_bodies(), 0..1000);
    for (n, r) in received.iter().enumerate() {
        assert_eq!(r.path, "/v1/logs");
        assert_eq!(r.header("content-type"), Some(content_type));
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        assert_eq!(r.header("x-api-key"), Some("k3y-value"));
        let rl = &r.request.resource_logs[0];
        assert_eq!(rl.resource, envelope().resource);
        assert_eq!(rl.scope_logs[0].scope, envelope().scope_logs[0].scope);
        // The records arrive as they were queued, field for field (the
        // JSON path decodes and re-encodes them).
        let first = (n * 100) as u32;
        assert_eq!(rl.scope_logs[0].log_records[0], log_record(first));
    }
    let snap = handle.snapshot();
    assert_eq!(snap.delivered_records_total, 1000);
    assert_eq!(snap.retried_records_total, 0);
    stop_driver(handle, task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_every_record_arrives_exactly_once() {
    exactly_once(OtlpEncoding::Protobuf, "application/x-protobuf").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_every_record_arrives_exactly_once() {
    exactly_once(OtlpEncoding::Json, "application/json").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_gzip_no_content_encoding() {
    let server = OtlpServer::http("127.0.0.1:0").await;
    let mut cfg = http_config(&server, OtlpEncoding::Protobuf);
    cfg.gzip = false;
    let mut t = cfg.build().unwrap();
    let report = t.send(&queued(0..3)).await;
    assert_eq!(report.outcomes, SendOutcomes::PerRecord(vec![OK; 3]));
    let r = &server.received()[0];
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.bodies(), ["rec-0", "rec-1", "rec-2"]);
}

/// `zstd`: bodies say `Content-Encoding: zstd` and decode, at the
/// receiver, to every record exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zstd_bodies_arrive_exactly_once() {
    let server = OtlpServer::http("127.0.0.1:0").await;
    for encoding in [OtlpEncoding::Protobuf, OtlpEncoding::Json] {
        let mut cfg = http_config(&server, encoding);
        cfg.zstd = true;
        let mut t = cfg.build().unwrap();
        let report = t.send(&queued(0..50)).await;
        assert_eq!(report.outcomes, SendOutcomes::PerRecord(vec![OK; 50]));
    }
    let received = server.received();
    assert_eq!(received.len(), 2);
    for r in &received {
        assert_eq!(r.header("content-encoding"), Some("zstd"));
        let want: Vec<String> = (0..50).map(|i| format!("rec-{i}")).collect();
        assert_eq!(r.bodies(), want);
    }
}

/// Every status becomes exactly `Outcome::Http { status }` (so its table
/// row decides), with `Retry-After` passed on when the server sent it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_http_status_becomes_its_table_row() {
    let server = OtlpServer::http("127.0.0.1:0").await;
    for encoding in [OtlpEncoding::Protobuf, OtlpEncoding::Json] {
        let mut t = http_config(&server, encoding).build().unwrap();
        let statuses = [
            400, 401, 403, 404, 405, 408, 409, 413, 415, 422, 429, 500, 501, 502, 503, 504,
        ];
        for status in statuses {
            server.script([Reply::Http {
                status,
                retry_after_secs: None,
            }]);
            let report = t.send(&queued(0..2)).await;
            assert_eq!(
                report.outcomes,
                SendOutcomes::Batch(Outcome::Http { status }),
                "{status} {encoding:?}"
            );
            assert_eq!(report.retry_after, None);
        }
        for status in [429, 502, 503, 504] {
            server.script([Reply::Http {
                status,
                retry_after_secs: Some(7),
            }]);
            let report = t.send(&queued(0..2)).await;
            let outcome = Outcome::Http { status };
            assert_eq!(report.outcomes, SendOutcomes::Batch(outcome));
            assert_eq!(report.retry_after, Some(Duration::from_secs(7)), "{status}");
            assert_eq!(
                classify(&outcome).action,
                Action::Retry {
                    honour_retry_after: true
                },
                "{status}"
            );
        }
        // 400 is never retried (OTLP spec).
        assert!(matches!(
            classify(&Outcome::Http { status: 400 }).action,
            Action::RejectAndRecord {
                reason: RejectReason::InvalidData
            }
        ));
    }
    assert_eq!(server.received().len(), 2 * (16 + 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_success_in_protobuf_and_json_responses() {
    let server = OtlpServer::http("127.0.0.1:0").await;
    for encoding in [OtlpEncoding::Protobuf, OtlpEncoding::Json] {
        let mut t = http_config(&server, encoding).build().unwrap();
        server.script([
            Reply::PartialSuccess {
                rejected: 2,
                message: "2 records too old".into(),
            },
            Reply::PartialSuccess {
                rejected: 0,
                message: "warning only".into(),
            },
        ]);
        let part = Outcome::OtlpPartialSuccess { rejected: 2 };
        let report = t.send(&queued(0..4)).await;
        assert_eq!(
            report.outcomes,
            SendOutcomes::PerRecord(vec![OK, OK, part, part]),
            "{encoding:?}"
        );
        let report = t.send(&queued(0..2)).await;
        let warn_only = Outcome::OtlpPartialSuccess { rejected: 0 };
        assert_eq!(report.outcomes, SendOutcomes::PerRecord(vec![warn_only; 2]));
    }
}

/// Through the driver: 429 waits as long as Retry-After says, then
/// delivers; 400 rejects and records; 413 splits; a partial success rejects
/// its count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_honours_retry_after_rejects_400_and_splits_413() {
    let server = OtlpServer::http("127.0.0.1:0").await;
    server.script([
        Reply::Http {
            status: 429,
            retry_after_secs: Some(1),
        },
        Reply::Ok,
        Reply::Http {
            status: 400,
            retry_after_secs: None,
        },
        Reply::Http {
            status: 413,
            retry_after_secs: None,
        },
        Reply::Ok,
        Reply::PartialSuccess {
            rejected: 1,
            message: "one bad".into(),
        },
    ]);
    let transport = http_config(&server, OtlpEncoding::Protobuf)
        .build()
        .unwrap();
    let (handle, task) = start_driver("otlp-http", transport, 10);
    for range in [0..10, 10..20, 20..30] {
        push_records(&handle, range).await;
        handle
            .flush(Instant::now() + Duration::from_secs(20))
            .await
            .unwrap();
    }
    let received = server.received();
    assert_eq!(received.len(), 6);
    // The retry after 429 waited for Retry-After (1 s), not the 20 ms backoff.
    let waited = received[1].at - received[0].at;
    assert!(waited >= Duration::from_millis(950), "{waited:?}");
    // 413: the halves went separately.
    assert_eq!(received[3].bodies().len(), 10);
    assert_eq!(received[4].bodies().len(), 5);
    assert_eq!(received[5].bodies().len(), 5);
    let snap = handle.snapshot();
    assert_eq!(snap.retried_records_total, 10);
    assert_eq!(snap.split_batches_total, 1);
    assert_eq!(snap.rejected(RejectReason::InvalidData), 10);
    assert_eq!(snap.rejected(RejectReason::PartiallyRejected), 1);
    assert_eq!(snap.delivered_records_total, 10 + 5 + 4);
    let mut expected: Vec<u32> = (0..10).collect();
    expected.extend(20..30);
    assert_exactly_once(&server.accepted_bodies(), expected);
    stop_driver(handle, task).await;
}

/// A queued record that is not a LogRecord is rejected alone (as the
/// receiver's 400 would), the rest of its batch is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_record_is_rejected_alone() {
    let server = OtlpServer::http("127.0.0.1:0").await;
    for encoding in [OtlpEncoding::Protobuf, OtlpEncoding::Json] {
        let transport = http_config(&server, encoding).build().unwrap();
        let (handle, task) = start_driver("otlp-http", transport, 10);
        let mut records: Vec<Record> = (0..5).map(record).collect();
        records.insert(
            2,
            Record::new("ev-bad", Bytes::from_static(&[0x12, 0x05, b'h'])),
        );
        handle.queue().push(records).await.unwrap();
        handle
            .flush(Instant::now() + Duration::from_secs(20))
            .await
            .unwrap();
        let snap = handle.snapshot();
        assert_eq!(snap.delivered_records_total, 5, "{encoding:?}");
        assert_eq!(snap.rejected(RejectReason::InvalidData), 1);
        let rejected = handle.take_rejected().records;
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].event_id, "ev-bad");
        assert_eq!(rejected[0].outcome, "HTTP 400");
        stop_driver(handle, task).await;
    }
    // Once per encoding.
    let bodies = server.accepted_bodies();
    assert_eq!(bodies.len(), 10);
    assert_exactly_once(&bodies[..5], 0..5);
    assert_exactly_once(&bodies[5..], 0..5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_connection_refused_then_delivered() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let cfg = OtlpConfig::new(addr.clone(), OtlpProtocol::Http, envelope());
    let mut probe = cfg.build().unwrap();
    let batch: Vec<QueuedRecord> = queued(0..1);
    assert_eq!(
        probe.send(&batch).await.outcomes,
        SendOutcomes::Batch(Outcome::Transport(TransportFailure::ConnectionRefused))
    );
    let (handle, task) = start_driver("otlp-http", cfg.build().unwrap(), 25);
    push_records(&handle, 0..50).await;
    wait_until(Duration::from_secs(20), "two refused attempts", || {
        let s = handle.snapshot();
        s.retried_records_total >= 50 && s.degraded == Some("connection refused")
    })
    .await;
    let mut server = OtlpServer::http(&addr).await;
    handle
        .flush(Instant::now() + Duration::from_secs(30))
        .await
        .unwrap();
    assert_exactly_once(&server.accepted_bodies(), 0..50);

    // The receiver restarts: kept-alive connections die with it; the next
    // records wait for the new one and arrive once.
    server.shutdown().await;
    push_records(&handle, 50..60).await;
    wait_until(Duration::from_secs(20), "a refused attempt", || {
        handle.snapshot().degraded == Some("connection refused")
    })
    .await;
    let server = OtlpServer::http(&addr).await;
    handle
        .flush(Instant::now() + Duration::from_secs(30))
        .await
        .unwrap();
    assert_exactly_once(&server.accepted_bodies(), 50..60);
    assert_eq!(handle.snapshot().delivered_records_total, 60);
    stop_driver(handle, task).await;
}

/// OTLP/HTTP over mutual TLS with a CA the test generates; a wrong CA is a
/// verification failure (retried, never a drop) and nothing arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_and_a_wrong_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let server = OtlpServer::https(
        "127.0.0.1:0",
        ServerTls::from_files(&pki.server_cert, &pki.server_key, Some(&pki.ca)),
    )
    .await;
    let mut cfg = OtlpConfig::new(
        format!("localhost:{}", server.addr.port()),
        OtlpProtocol::Http,
        envelope(),
    );
    cfg.tls = Some(mutual_tls(&pki));
    let mut t = cfg.build().unwrap();
    let report = t.send(&queued(0..4)).await;
    assert_eq!(report.outcomes, SendOutcomes::PerRecord(vec![OK; 4]));
    assert_exactly_once(&server.accepted_bodies(), 0..4);

    let mut wrong = cfg.clone();
    wrong.tls.as_mut().unwrap().ca_file = Some(pki.other_ca.clone());
    let mut t = wrong.build().unwrap();
    let outcome = Outcome::Transport(TransportFailure::TlsVerification);
    assert_eq!(
        t.send(&queued(4..6)).await.outcomes,
        SendOutcomes::Batch(outcome)
    );
    assert!(matches!(classify(&outcome).action, Action::Retry { .. }));

    // Without a client certificate the server refuses the handshake. With
    // TLS 1.3 the client learns it on its first read: as the server's alert
    // or, when the server's close wins the race, as a closed connection.
    // Either way a retried transport failure, never a drop.
    let mut anonymous = cfg.clone();
    let tls = anonymous.tls.as_mut().unwrap();
    tls.client_cert_file = None;
    tls.client_key_file = None;
    let mut t = anonymous.build().unwrap();
    let SendOutcomes::Batch(outcome) = t.send(&queued(6..8)).await.outcomes else {
        panic!("one outcome for the batch expected");
    };
    assert!(
        matches!(
            outcome,
            Outcome::Transport(TransportFailure::TlsHandshake | TransportFailure::ConnectionReset)
        ),
        "{outcome:?}"
    );
    assert!(matches!(classify(&outcome).action, Action::Retry { .. }));
    assert_eq!(server.received().len(), 1, "only the first request arrived");
}
