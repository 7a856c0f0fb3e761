//! The Elasticsearch sink end to end through the real driver and queue,
//! against the fake `_bulk` server in `fakes/es_bulk.rs` (which parses
//! NDJSON the way ES does and answers with its per-item statuses).
//!
//! The classification rows for this sink are checked row by row: bulk
//! item statuses, whole-request statuses, and transport failures; and every
//! record is delivered exactly once by `_id` across item retries, request
//! retries and a lost response.

#![allow(clippy::unwrap_used)]

mod fakes;
mod support;

use std::future::Future;
use std::time::{Duration, Instant};

use fakes::es_bulk::{EsFake, RequestFailure};
use flowscribe_sinks::core::classify::RejectReason;
use flowscribe_sinks::core::http::{HttpAuth, SecretSource};
use flowscribe_sinks::core::queue::Record;
use flowscribe_sinks::elasticsearch::ElasticsearchConfig;
use support::{Running, driver_config, wait_for};

const INDEX: &str = "logs-flowscribe.flow-default";

fn es_config(url: &str) -> ElasticsearchConfig {
    let mut c = ElasticsearchConfig::new(url);
    c.http.request_timeout = Duration::from_secs(5);
    c
}

fn id(i: usize) -> String {
    format!("ev-{i:05}")
}

fn ecs(i: usize) -> Record {
    Record::new(
        id(i),
        format!(
            r#"{{"@timestamp":"2026-11-21T04:30:00.{:03}Z","event":{{"kind":"event","category":["network"]}},"source":{{"port":{}}}}}"#,
            i % 1000,
            1024 + i
        ),
    )
}

async fn with_fake<F, Fut>(f: F)
where
    F: FnOnce(EsFake) -> Fut,
    Fut: Future<Output = ()>,
{
    f(EsFake::start().await).await;
}

#[tokio::test]
async fn every_record_is_delivered_exactly_once_by_id_across_retries() {
    with_fake(|es| async move {
        // Batch 1 (ev-00000..49): a whole-request 503, then a response
        // lost after the items were processed, so the resend meets 409s;
        // two items also fail with retryable item statuses.
        es.fail_request(RequestFailure::Status {
            status: 503,
            retry_after: Some("0".into()),
        });
        es.fail_request(RequestFailure::DropAfterProcessing);
        es.fail_item(&id(3), 429, "es_rejected_execution_exception", 2);
        es.fail_item(&id(10), 503, "unavailable_shards_exception", 1);
        // Batch 2: one item fails three times with a shard error.
        es.fail_item(&id(77), 500, "node_not_connected_exception", 3);
        let transport = es_config(&es.url()).build().unwrap();
        let run = Running::start(transport, driver_config(50));
        run.push((0..500).map(ecs).collect()).await;
        let snap = run.settle().await;

        let ids = es.ids(INDEX);
        assert_eq!(
            ids,
            (0..500).map(id).collect::<Vec<_>>(),
            "each id exactly once"
        );
        // Batch 1: 48 items landed during the lost response (409 on the
        // resend = already delivered); ev-3 and ev-10 were created later.
        assert_eq!(snap.already_delivered_records_total, 48);
        assert_eq!(snap.delivered_records_total, 452);
        assert_eq!(snap.rejected_total(), 0);
        {
            let st = es.state();
            // Only the failed items were resent: a batch-2 item that succeeded
            // at once was attempted once; ev-77 four times; ev-3 three.
            assert_eq!(st.attempts[&id(50)], 1);
            assert_eq!(st.attempts[&id(77)], 4);
            assert_eq!(st.attempts[&id(3)], 3);
            assert_eq!(st.attempts[&id(0)], 2);
            // Default gzip: every processed request was compressed.
            assert_eq!(st.gzip_requests, st.requests - 1, "all but the 503");
        }
        run.stop().await;
    })
    .await;
}

/// What should become of the one record whose item fails.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fate {
    /// Retried `n` times, then created.
    DeliveredAfterRetries(u64),
    AlreadyDelivered,
    Rejected,
}

#[tokio::test]
async fn bulk_item_statuses_row_by_row() {
    let rows: &[(u16, &str, u32, Fate)] = &[
        (201, "", 0, Fate::DeliveredAfterRetries(0)),
        (409, "", 0, Fate::AlreadyDelivered),
        (400, "document_parsing_exception", u32::MAX, Fate::Rejected),
        (400, "mapper_parsing_exception", u32::MAX, Fate::Rejected),
        (413, "illegal_argument_exception", u32::MAX, Fate::Rejected),
        (
            429,
            "es_rejected_execution_exception",
            2,
            Fate::DeliveredAfterRetries(2),
        ),
        (500, "exception", 1, Fate::DeliveredAfterRetries(1)),
        (
            503,
            "unavailable_shards_exception",
            1,
            Fate::DeliveredAfterRetries(1),
        ),
        (
            403,
            "cluster_block_exception",
            1,
            Fate::DeliveredAfterRetries(1),
        ),
        (401, "security_exception", 1, Fate::DeliveredAfterRetries(1)),
        (
            404,
            "index_not_found_exception",
            1,
            Fate::DeliveredAfterRetries(1),
        ),
        (302, "odd", 1, Fate::DeliveredAfterRetries(1)),
    ];
    for &(status, kind, times, fate) in rows {
        let es = EsFake::start().await;
        if status == 409 {
            // The document is already there from an earlier attempt.
            es.state().docs.insert(
                (INDEX.to_string(), id(1)),
                serde_json::json!({"@timestamp": "earlier"}),
            );
        } else if times > 0 {
            es.fail_item(&id(1), status, kind, times);
        }
        let transport = es_config(&es.url()).build().unwrap();
        let stats = transport.stats();
        let run = Running::start(transport, driver_config(50));
        run.push((0..3).map(ecs).collect()).await;
        let snap = run.settle().await;
        let row = format!("item {status} {kind}");
        match fate {
            Fate::DeliveredAfterRetries(n) => {
                assert_eq!(snap.delivered_records_total, 3, "{row}");
                assert_eq!(snap.retried_records_total, n, "{row}");
                assert_eq!(es.state().attempts[&id(1)], 1 + n as u32, "{row}");
                assert_eq!(
                    es.state().attempts[&id(0)],
                    1,
                    "{row}: only the failed item is resent"
                );
            }
            Fate::AlreadyDelivered => {
                assert_eq!(snap.delivered_records_total, 2, "{row}");
                assert_eq!(snap.already_delivered_records_total, 1, "{row}");
            }
            Fate::Rejected => {
                assert_eq!(snap.delivered_records_total, 2, "{row}");
                assert_eq!(snap.rejected(RejectReason::InvalidData), 1, "{row}");
                let drained = run.handle.take_rejected();
                assert_eq!(drained.records.len(), 1, "{row}");
                assert_eq!(drained.records[0].event_id, id(1), "{row}");
                assert_eq!(
                    drained.records[0].outcome, "ES bulk item other 4xx (400 mapping errors)",
                    "{row}"
                );
                let last = stats.last_rejection.lock().unwrap().clone().unwrap();
                assert!(last.starts_with(kind), "{row}: {last}");
                assert_eq!(es.state().attempts[&id(1)], 1, "{row}: never resent");
            }
        }
        assert_eq!(
            es.ids(INDEX).len(),
            3 - usize::from(fate == Fate::Rejected),
            "{row}"
        );
        run.stop().await;
    }
}

#[tokio::test]
async fn whole_request_statuses_row_by_row() {
    // Retried statuses: the batch is resent whole and then created.
    for status in [401, 403, 404, 408, 500, 501, 502, 503, 504, 429] {
        let es = EsFake::start().await;
        es.fail_request(RequestFailure::Status {
            status,
            retry_after: None,
        });
        let run = Running::start(es_config(&es.url()).build().unwrap(), driver_config(50));
        run.push((0..3).map(ecs).collect()).await;
        let snap = run.settle().await;
        assert_eq!(snap.delivered_records_total, 3, "HTTP {status}");
        assert_eq!(snap.retried_records_total, 3, "HTTP {status}");
        assert_eq!(snap.rejected_total(), 0, "HTTP {status}");
        assert_eq!(es.ids(INDEX).len(), 3, "HTTP {status}");
        run.stop().await;
    }
    // Rejected statuses: the batch is recorded as lost with the row's reason.
    for (status, reason) in [
        (400, RejectReason::InvalidData),
        (422, RejectReason::InvalidData),
        (409, RejectReason::Conflict),
    ] {
        let es = EsFake::start().await;
        es.fail_request(RequestFailure::Status {
            status,
            retry_after: None,
        });
        let run = Running::start(es_config(&es.url()).build().unwrap(), driver_config(50));
        run.push((0..3).map(ecs).collect()).await;
        let snap = run.settle().await;
        assert_eq!(snap.rejected(reason), 3, "HTTP {status}");
        assert_eq!(snap.delivered_records_total, 0, "HTTP {status}");
        assert!(es.ids(INDEX).is_empty(), "HTTP {status}");
        run.stop().await;
    }
}

#[tokio::test]
async fn retry_after_on_429_is_honoured() {
    let es = EsFake::start().await;
    // 1 s, capped by the driver's max_retry_after (300 ms here); the
    // jittered backoff alone is at most 5 ms.
    es.fail_request(RequestFailure::Status {
        status: 429,
        retry_after: Some("1".into()),
    });
    let run = Running::start(es_config(&es.url()).build().unwrap(), driver_config(50));
    let t0 = Instant::now();
    run.push((0..2).map(ecs).collect()).await;
    let snap = run.settle().await;
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(snap.delivered_records_total, 2);
    assert_eq!(snap.retried_records_total, 2);
    run.stop().await;
}

#[tokio::test]
async fn payload_too_large_splits_until_each_part_fits() {
    let es = EsFake::start().await;
    // One create pair fits, two do not.
    let one = {
        let r = ecs(0);
        r.payload.len() + r.event_id.len() + 24
    };
    es.state().max_content_length = one + 10;
    let mut cfg = es_config(&es.url());
    cfg.gzip = false;
    let run = Running::start(cfg.build().unwrap(), driver_config(50));
    run.push((0..3).map(ecs).collect()).await;
    let snap = run.settle().await;
    // [0,1,2] -> [0] + [1,2]; [1,2] -> [1] + [2].
    assert_eq!(snap.split_batches_total, 2);
    assert_eq!(snap.delivered_records_total, 3);
    assert_eq!(es.ids(INDEX).len(), 3);
    // A single record above the limit can never be sent: rejected.
    es.state().max_content_length = 10;
    run.push(vec![ecs(3)]).await;
    let snap = run.settle().await;
    assert_eq!(snap.rejected(RejectReason::InvalidData), 1);
    run.stop().await;
}

#[tokio::test]
async fn refused_connections_retry_until_elasticsearch_appears() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let run = Running::start(
        es_config(&format!("http://{addr}")).build().unwrap(),
        driver_config(50),
    );
    run.push((0..5).map(ecs).collect()).await;
    let h = run.handle.clone();
    wait_for("refused retries", || {
        let s = h.snapshot();
        s.retried_records_total >= 10 && s.degraded == Some("connection refused")
    })
    .await;
    assert_eq!(run.handle.snapshot().rejected_total(), 0);
    let es = EsFake::start_on(&addr).await;
    let snap = run.settle().await;
    assert_eq!(snap.delivered_records_total, 5);
    assert_eq!(snap.degraded, None);
    assert_eq!(es.ids(INDEX).len(), 5);
    run.stop().await;
}

#[tokio::test]
async fn api_key_and_basic_auth_and_a_rotated_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("es.key");
    std::fs::write(&key, "aWQ6c2VjcmV0\n").unwrap();
    let es = EsFake::start().await;
    es.state().expected_auth = Some("ApiKey aWQ6c2VjcmV0".into());
    let mut cfg = es_config(&es.url());
    cfg.http.auth = HttpAuth::ApiKey(SecretSource::File(key.clone()));
    let run = Running::start(cfg.build().unwrap(), driver_config(50));
    run.push((0..4).map(ecs).collect()).await;
    assert_eq!(run.settle().await.delivered_records_total, 4);
    run.stop().await;

    // The server's key was rotated and ours is stale: 401, retried with the
    // sink degraded, never dropped; once the server accepts it again the
    // records go through.
    es.state().expected_auth = Some("ApiKey bmV3OmtleQ==".into());
    let run = Running::start(cfg.build().unwrap(), driver_config(50));
    run.push((4..6).map(ecs).collect()).await;
    let h = run.handle.clone();
    wait_for("401 retries", || {
        let s = h.snapshot();
        s.retried_records_total >= 4 && s.degraded == Some("HTTP 401")
    })
    .await;
    assert_eq!(run.handle.snapshot().rejected_total(), 0);
    es.state().expected_auth = Some("ApiKey aWQ6c2VjcmV0".into());
    assert_eq!(run.settle().await.delivered_records_total, 2);
    run.stop().await;

    // Basic auth.
    es.state().expected_auth = Some("Basic ZWxhc3RpYzpjaGFuZ2VtZQ==".into());
    std::fs::write(&key, "changeme").unwrap();
    let mut cfg = es_config(&es.url());
    cfg.http.auth = HttpAuth::Basic {
        username: "elastic".into(),
        password: SecretSource::File(key),
    };
    let run = Running::start(cfg.build().unwrap(), driver_config(50));
    run.push((6..8).map(ecs).collect()).await;
    assert_eq!(run.settle().await.delivered_records_total, 2);
    assert_eq!(es.ids(INDEX).len(), 8);
    run.stop().await;
}

#[tokio::test]
async fn data_stream_rules_reject_bad_documents_with_their_reason() {
    let es = EsFake::start().await;
    let mut cfg = es_config(&es.url());
    cfg.namespace = "prod".into();
    let transport = cfg.build().unwrap();
    let stats = transport.stats();
    let run = Running::start(transport, driver_config(50));
    run.push(vec![
        ecs(0),
        Record::new("no-ts", r#"{"event":{"kind":"event"}}"#),
        Record::new(
            "cef",
            "CEF:0|flowscribe|flowscribe|0.1|flow|flow|3|src=10.0.0.1",
        ),
        ecs(1),
    ])
    .await;
    let snap = run.settle().await;
    assert_eq!(snap.delivered_records_total, 2);
    assert_eq!(snap.rejected(RejectReason::InvalidData), 2);
    let rejected: Vec<String> = run
        .handle
        .take_rejected()
        .records
        .into_iter()
        .map(|r| r.event_id)
        .collect();
    assert_eq!(rejected, ["no-ts", "cef"]);
    assert_eq!(
        stats
            .rejected_items_total
            .load(std::sync::atomic::Ordering::SeqCst),
        2
    );
    assert_eq!(es.ids("logs-flowscribe.flow-prod"), [id(0), id(1)]);
    run.stop().await;
}

#[tokio::test]
async fn a_crash_mid_batch_with_a_disk_queue_loses_nothing_and_duplicates_nothing() {
    use flowscribe_sinks::core::queue::{Durability, DurableQueue, QueueConfig};
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        DurableQueue::open(QueueConfig::new(
            "es-crash",
            Some(dir.path().to_path_buf()),
            Durability::Disk,
        ))
        .unwrap()
    };
    let es = EsFake::start().await;
    // One item of the third batch (ev-00100..149) keeps failing with a
    // shard error, so that batch is in flight when the process "crashes";
    // its other 49 items are already stored.
    es.fail_item(&id(120), 503, "unavailable_shards_exception", u32::MAX);
    let run = Running::start_with_queue(
        es_config(&es.url()).build().unwrap(),
        driver_config(50),
        open(),
    );
    // A disk-mode push returns once the records are fsynced.
    run.push((0..300).map(ecs).collect()).await;
    let h = run.handle.clone();
    wait_for("the stuck item to be retried", || {
        h.snapshot().retried_records_total >= 3
    })
    .await;
    drop(h);
    run.crash().await;
    assert_eq!(
        es.ids(INDEX).len(),
        149,
        "two batches + 49 items of the third"
    );

    // Restart on the same directory; the shard recovered.
    es.state().item_failures.clear();
    let queue = open();
    assert!(
        queue.snapshot().queued_records >= 200,
        "the unacked batches are replayed"
    );
    let run = Running::start_with_queue(
        es_config(&es.url()).build().unwrap(),
        driver_config(50),
        queue,
    );
    let snap = run.settle().await;
    // Every record once in ES; the replayed ones that had landed answer
    // 409 and count as already delivered, not as new documents.
    assert_eq!(es.ids(INDEX), (0..300).map(id).collect::<Vec<_>>());
    assert_eq!(snap.delivered_records_total, 151, "ev-120 and ev-150..299");
    assert!(snap.already_delivered_records_total >= 49);
    assert_eq!(snap.rejected_total(), 0);
    run.stop().await;
}
