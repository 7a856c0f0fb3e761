//! OTLP/gRPC sink against the tonic-generated `LogsService` server of
//! opentelemetry-proto on loopback (tests/support/otlp_server.rs): every
//! record exactly once with the configured resource, gzip and headers;
//! every gRPC code and partial success decoded into the outcome the
//! classification table has a row for; retry / reject / partial success
//! through the driver; an outage (connection refused, then the receiver
//! comes up); a deadline; mutual TLS with a CA the test generates and a
//! wrong CA (retried, never dropped).

// A failed step should fail the test; clippy.toml's allow-unwrap-in-tests
// does not reach integration-test helpers.
#![allow(clippy::unwrap_used)]

#[path = "support/otlp_common.rs"]
mod otlp_common;
#[path = "support/otlp_server.rs"]
mod otlp_server;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use flowscribe_sinks::core::classify::{
    Action, GrpcCode, Outcome, RejectReason, TransportFailure, classify,
};
use flowscribe_sinks::core::driver::{SendOutcomes, Transport};
use flowscribe_sinks::otlp::{OtlpConfig, OtlpProtocol, OtlpTlsConfig};
use otlp_common::*;
use otlp_server::{OtlpServer, Reply, ServerTls};

fn grpc_config(server: &OtlpServer) -> OtlpConfig {
    OtlpConfig::new(server.addr.to_string(), OtlpProtocol::Grpc, envelope())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_arrives_exactly_once_with_resource_gzip_and_headers() {
    let server = OtlpServer::grpc("127.0.0.1:0", None).await;
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("headers");
    std::fs::write(
        &headers,
        "# tenant and key\nX-Scope-OrgID: tenant-a\nauthorization: Bearer s3cret-token\n",
    )
    .unwrap();
    let mut cfg = grpc_config(&server);
    cfg.headers_file = Some(headers);
    let transport = cfg.build().unwrap();
    // The credential never shows in Debug output (logs of the config).
    assert!(!format!("{transport:?}").contains("s3cret"));
    let (handle, task) = start_driver("otlp-grpc", transport, 100);
    push_records(&handle, 0..1000).await;
    handle
        .flush(Instant::now() + Duration::from_secs(20))
        .await
        .unwrap();

    let received = server.received();
    assert_eq!(received.len(), 10, "1000 records in batches of 100");
    assert_exactly_once(&server.accepted_bodies(), 0..1000);
    for r in &received {
        assert_eq!(r.request.resource_logs.len(), 1);
        let rl = &r.request.resource_logs[0];
        assert_eq!(rl.resource, envelope().resource);
        assert_eq!(rl.scope_logs.len(), 1);
        assert_eq!(rl.scope_logs[0].scope, envelope().scope_logs[0].scope);
        assert_eq!(r.header("grpc-encoding"), Some("gzip"));
        assert_eq!(r.header("x-scope-orgid"), Some("tenant-a"));
        assert_eq!(r.header("authorization"), Some("Bearer s3cret-token"));
        assert!(r.header("grpc-timeout").is_some(), "deadline sent");
    }
    let snap = handle.snapshot();
    assert_eq!(snap.delivered_records_total, 1000);
    assert_eq!(snap.retried_records_total, 0);
    assert_eq!(snap.rejected_total(), 0);
    stop_driver(handle, task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_gzip_the_message_is_sent_uncompressed() {
    let server = OtlpServer::grpc("127.0.0.1:0", None).await;
    let mut cfg = grpc_config(&server);
    cfg.gzip = false;
    let mut t = cfg.build().unwrap();
    let report = t.send(&queued(0..3)).await;
    assert_eq!(
        report.outcomes,
        SendOutcomes::PerRecord(vec![grpc(GrpcCode::Ok); 3])
    );
    let r = &server.received()[0];
    assert_eq!(r.header("grpc-encoding"), None);
    assert_eq!(r.bodies(), ["rec-0", "rec-1", "rec-2"]);
}

fn grpc(code: GrpcCode) -> Outcome {
    Outcome::Grpc {
        code,
        retry_info: false,
    }
}

/// Every gRPC status the receiver can send becomes exactly the outcome of
/// that code, so the table row for the code decides (row by row).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_grpc_code_becomes_its_table_row() {
    let server = OtlpServer::grpc("127.0.0.1:0", None).await;
    let mut t = grpc_config(&server).build().unwrap();
    for code in GrpcCode::ALL.into_iter().filter(|c| *c != GrpcCode::Ok) {
        server.script([Reply::Grpc {
            code: tonic::Code::from_i32(code as i32),
            retry_delay: None,
        }]);
        let report = t.send(&queued(0..2)).await;
        assert_eq!(
            report.outcomes,
            SendOutcomes::Batch(grpc(code)),
            "{}",
            code.name()
        );
        assert_eq!(report.retry_after, None);
        let row = classify(&grpc(code)).row;
        assert!(
            row.outcome.contains(code.name()),
            "{} -> {}",
            code.name(),
            row.outcome
        );
    }
    // RESOURCE_EXHAUSTED with RetryInfo: the server's delay is passed on
    // and the row that honours it decides.
    server.script([Reply::Grpc {
        code: tonic::Code::ResourceExhausted,
        retry_delay: Some(Duration::from_millis(1500)),
    }]);
    let report = t.send(&queued(0..2)).await;
    let exhausted = Outcome::Grpc {
        code: GrpcCode::ResourceExhausted,
        retry_info: true,
    };
    assert_eq!(report.outcomes, SendOutcomes::Batch(exhausted));
    assert_eq!(report.retry_after, Some(Duration::from_millis(1500)));
    assert_eq!(
        classify(&exhausted).action,
        Action::Retry {
            honour_retry_after: true
        }
    );
    // UNAVAILABLE with RetryInfo keeps its delay too.
    server.script([Reply::Grpc {
        code: tonic::Code::Unavailable,
        retry_delay: Some(Duration::from_secs(3)),
    }]);
    let report = t.send(&queued(0..1)).await;
    assert_eq!(report.retry_after, Some(Duration::from_secs(3)));
    assert_eq!(server.received().len(), 18, "16 codes + 2 RetryInfo cases");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_success_marks_exactly_the_rejected_count() {
    let server = OtlpServer::grpc("127.0.0.1:0", None).await;
    let mut t = grpc_config(&server).build().unwrap();
    server.script([
        Reply::PartialSuccess {
            rejected: 3,
            message: "3 records too old".into(),
        },
        Reply::PartialSuccess {
            rejected: 0,
            message: "deprecated field".into(),
        },
        Reply::PartialSuccess {
            rejected: 99,
            message: "more than sent".into(),
        },
    ]);
    let ok = grpc(GrpcCode::Ok);
    let part = Outcome::OtlpPartialSuccess { rejected: 3 };
    let report = t.send(&queued(0..5)).await;
    assert_eq!(
        report.outcomes,
        SendOutcomes::PerRecord(vec![ok, ok, part, part, part])
    );
    let report = t.send(&queued(0..2)).await;
    let warn_only = Outcome::OtlpPartialSuccess { rejected: 0 };
    assert_eq!(report.outcomes, SendOutcomes::PerRecord(vec![warn_only; 2]));
    assert_eq!(classify(&warn_only).action, Action::Delivered);
    let report = t.send(&queued(0..2)).await;
    let all = Outcome::OtlpPartialSuccess { rejected: 99 };
    assert_eq!(report.outcomes, SendOutcomes::PerRecord(vec![all; 2]));
    let stats = t.stats();
    assert_eq!(
        stats.partial_success_rejected_total.load(Ordering::Relaxed),
        3 + 99
    );
    // The last message that came with rejected records is kept (the
    // warning-only one is not a rejection).
    assert_eq!(
        stats.last_rejection.lock().unwrap().as_deref(),
        Some("99 rejected: more than sent")
    );
}

/// Through the driver: a retryable code is retried and then delivered once;
/// INVALID_ARGUMENT is rejected and recorded; a partial success rejects
/// exactly its count with reason `partially_rejected`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_retries_rejects_and_counts_partial_success() {
    let server = OtlpServer::grpc("127.0.0.1:0", None).await;
    server.script([
        Reply::Grpc {
            code: tonic::Code::Unavailable,
            retry_delay: None,
        },
        Reply::Grpc {
            code: tonic::Code::Aborted,
            retry_delay: None,
        },
        Reply::Ok,
        Reply::Grpc {
            code: tonic::Code::InvalidArgument,
            retry_delay: None,
        },
        Reply::PartialSuccess {
            rejected: 2,
            message: "timestamp too old".into(),
        },
    ]);
    let (handle, task) = start_driver("otlp-grpc", grpc_config(&server).build().unwrap(), 10);
    // Three pushes, three batches of 10: retried twice then delivered;
    // rejected; partially rejected.
    for range in [0..10, 10..20, 20..30] {
        push_records(&handle, range).await;
        handle
            .flush(Instant::now() + Duration::from_secs(20))
            .await
            .unwrap();
    }
    let snap = handle.snapshot();
    assert_eq!(snap.retried_records_total, 20);
    assert_eq!(snap.delivered_records_total, 10 + 8);
    assert_eq!(snap.rejected(RejectReason::InvalidData), 10);
    assert_eq!(snap.rejected(RejectReason::PartiallyRejected), 2);
    assert_eq!(server.received().len(), 5);
    let rejected = handle.take_rejected();
    assert_eq!(rejected.records.len(), 12);
    let by_outcome: BTreeMap<&str, usize> =
        rejected.records.iter().fold(BTreeMap::new(), |mut m, r| {
            *m.entry(r.outcome).or_default() += 1;
            m
        });
    assert_eq!(by_outcome["gRPC INVALID_ARGUMENT"], 10);
    assert_eq!(by_outcome["OTLP partial success, rejected > 0"], 2);
    // Accepted bodies: batch 1 once (after two failures) and batch 3.
    let mut expected: Vec<u32> = (0..10).collect();
    expected.extend(20..30);
    assert_exactly_once(&server.accepted_bodies(), expected);
    stop_driver(handle, task).await;
}

/// The receiver is down (connection refused, retried with the sink flagged
/// degraded for that reason), then comes up: everything arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_connection_refused_then_delivered_when_the_receiver_starts() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let cfg = OtlpConfig::new(addr.clone(), OtlpProtocol::Grpc, envelope());
    let mut probe = cfg.build().unwrap();
    let report = probe.send(&queued(0..1)).await;
    assert_eq!(
        report.outcomes,
        SendOutcomes::Batch(Outcome::Transport(TransportFailure::ConnectionRefused))
    );

    let (handle, task) = start_driver("otlp-grpc", cfg.build().unwrap(), 25);
    push_records(&handle, 0..50).await;
    wait_until(Duration::from_secs(20), "two refused attempts", || {
        let s = handle.snapshot();
        s.retried_records_total >= 50 && s.degraded == Some("connection refused")
    })
    .await;
    assert_eq!(handle.snapshot().delivered_records_total, 0);

    let server = OtlpServer::grpc(&addr, None).await;
    handle
        .flush(Instant::now() + Duration::from_secs(30))
        .await
        .unwrap();
    assert_exactly_once(&server.accepted_bodies(), 0..50);
    let snap = handle.snapshot();
    assert_eq!(snap.delivered_records_total, 50);
    assert_eq!(snap.rejected_total(), 0);
    assert_eq!(snap.degraded, None);
    stop_driver(handle, task).await;
}

/// A receiver slower than the deadline: the client gives up (a timeout,
/// retried) instead of waiting forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_slower_than_the_deadline_is_a_retried_timeout() {
    let server = OtlpServer::grpc("127.0.0.1:0", None).await;
    server.script([Reply::Stall(Duration::from_secs(3))]);
    let mut cfg = grpc_config(&server);
    cfg.timeout = Duration::from_millis(300);
    let mut t = cfg.build().unwrap();
    let started = Instant::now();
    let report = t.send(&queued(0..2)).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    let outcome = Outcome::Transport(TransportFailure::Timeout);
    assert_eq!(report.outcomes, SendOutcomes::Batch(outcome));
    assert!(matches!(classify(&outcome).action, Action::Retry { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_a_custom_ca_and_a_wrong_ca_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let server = OtlpServer::grpc(
        "127.0.0.1:0",
        Some(ServerTls::from_files(
            &pki.server_cert,
            &pki.server_key,
            Some(&pki.ca),
        )),
    )
    .await;
    let mut cfg = OtlpConfig::new(
        format!("localhost:{}", server.addr.port()),
        OtlpProtocol::Grpc,
        envelope(),
    );
    cfg.tls = Some(mutual_tls(&pki));
    let mut t = cfg.build().unwrap();
    let report = t.send(&queued(0..4)).await;
    assert_eq!(
        report.outcomes,
        SendOutcomes::PerRecord(vec![grpc(GrpcCode::Ok); 4])
    );
    assert_exactly_once(&server.accepted_bodies(), 0..4);

    // A CA that did not sign the server certificate: a verification
    // failure, which retries (never a drop).
    let mut wrong = cfg.clone();
    wrong.tls.as_mut().unwrap().ca_file = Some(pki.other_ca.clone());
    let mut t = wrong.build().unwrap();
    let report = t.send(&queued(4..6)).await;
    let outcome = Outcome::Transport(TransportFailure::TlsVerification);
    assert_eq!(report.outcomes, SendOutcomes::Batch(outcome));
    assert!(matches!(classify(&outcome).action, Action::Retry { .. }));
    assert_eq!(server.received().len(), 1, "nothing reached the receiver");
}

/// Certificate rotation without a restart: the CA file the sink trusts is
/// replaced by rename; the next export builds a new channel with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_tls_files_are_reloaded_when_they_change() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let server = OtlpServer::grpc(
        "127.0.0.1:0",
        Some(ServerTls::from_files(
            &pki.server_cert,
            &pki.server_key,
            None,
        )),
    )
    .await;
    let trust = dir.path().join("trust.pem");
    std::fs::copy(&pki.other_ca, &trust).unwrap();
    let mut cfg = OtlpConfig::new(
        format!("localhost:{}", server.addr.port()),
        OtlpProtocol::Grpc,
        envelope(),
    );
    cfg.tls = Some(OtlpTlsConfig {
        ca_file: Some(trust.clone()),
        ..OtlpTlsConfig::default()
    });
    let mut t = cfg.build().unwrap();
    let report = t.send(&queued(0..3)).await;
    assert_eq!(
        report.outcomes,
        SendOutcomes::Batch(Outcome::Transport(TransportFailure::TlsVerification))
    );
    // Rotate: the right CA replaces the file atomically.
    let next = dir.path().join("trust.pem.new");
    std::fs::copy(&pki.ca, &next).unwrap();
    std::fs::rename(&next, &trust).unwrap();
    let report = t.send(&queued(0..3)).await;
    assert_eq!(
        report.outcomes,
        SendOutcomes::PerRecord(vec![grpc(GrpcCode::Ok); 3])
    );
    assert_exactly_once(&server.accepted_bodies(), 0..3);
}

/// A name that does not resolve is a DNS failure (retried, never a drop),
/// for both protocols.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresolvable_name_is_a_dns_failure() {
    for protocol in [OtlpProtocol::Grpc, OtlpProtocol::Http] {
        let cfg = OtlpConfig::new("no-such-host.invalid:4317", protocol, envelope());
        let mut t = cfg.build().unwrap();
        let report = t.send(&queued(0..1)).await;
        assert_eq!(
            report.outcomes,
            SendOutcomes::Batch(Outcome::Transport(TransportFailure::DnsFailure)),
            "{protocol:?}"
        );
    }
}
