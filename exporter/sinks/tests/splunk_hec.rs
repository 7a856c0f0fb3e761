//! The Splunk HEC sink end to end through the real driver and queue,
//! against the fake HEC in `fakes/hec.rs` (concatenated JSON events, token
//! and channel checks, HEC body codes, indexer acknowledgement). The HEC
//! rows of the classification table are checked row by row.

#![allow(clippy::unwrap_used)]

mod fakes;
mod support;

use std::time::{Duration, Instant};

use fakes::hec::HecFake;
use flowscribe_sinks::core::classify::RejectReason;
use flowscribe_sinks::core::http::{HttpAuth, SecretSource};
use flowscribe_sinks::core::queue::Record;
use flowscribe_sinks::splunk::{HecAckConfig, SplunkHecConfig};
use support::{Running, driver_config, wait_for};

const TOKEN: &str = "11111111-2222-3333-4444-555555555555";

fn hec_config(url: &str, token_file: &std::path::Path) -> SplunkHecConfig {
    let mut c = SplunkHecConfig::new(
        url,
        HttpAuth::Splunk(SecretSource::File(token_file.to_path_buf())),
        "node-1",
    );
    c.index = Some("netflow".into());
    c.http.request_timeout = Duration::from_secs(5);
    c
}

fn token_file(dir: &tempfile::TempDir, token: &str) -> std::path::PathBuf {
    let p = dir.path().join("hec.token");
    std::fs::write(&p, format!("{token}\n")).unwrap();
    p
}

fn id(i: usize) -> String {
    format!("ev-{i:05}")
}

fn ecs(i: usize) -> Record {
    Record::new(
        id(i),
        format!(
            r#"{{"@timestamp":"2026-11-21T04:30:{:02}.{:03}Z","event":{{"kind":"event"}},"n":{i}}}"#,
            i % 60,
            i % 1000
        ),
    )
}

#[tokio::test]
async fn events_arrive_in_hec_envelopes_with_flow_time_and_event_id() {
    let dir = tempfile::tempdir().unwrap();
    let hec = HecFake::start(TOKEN).await;
    let run = Running::start(
        hec_config(&hec.url(), &token_file(&dir, TOKEN))
            .build()
            .unwrap(),
        driver_config(50),
    );
    run.push((0..120).map(ecs).collect()).await;
    let snap = run.settle().await;
    assert_eq!(snap.delivered_records_total, 120);
    assert_eq!(hec.event_ids(), (0..120).map(id).collect::<Vec<_>>());
    {
        let st = hec.state();
        assert_eq!(st.event_requests, 3);
        assert_eq!(st.gzip_requests, 3);
        let e = &st.events[61];
        assert_eq!(e["host"], "node-1");
        assert_eq!(e["source"], "flowscribe");
        assert_eq!(e["sourcetype"], "flowscribe:flow");
        assert_eq!(e["index"], "netflow");
        assert_eq!(e["event"]["n"], 61);
        // 2026-11-21T04:30:01.061Z
        assert_eq!(e["time"].as_f64().unwrap(), 1_795_235_401.061);
    }
    run.stop().await;
}

#[tokio::test]
async fn hec_codes_row_by_row() {
    let dir = tempfile::tempdir().unwrap();
    let tok = token_file(&dir, TOKEN);
    // Retried (the batch is delivered on the next attempt).
    for (status, code) in [
        (403, 1),
        (401, 2),
        (401, 3),
        (403, 4),
        (400, 7),
        (500, 8),
        (503, 9),
        (400, 10),
        (400, 11),
        (400, 14),
        (400, 99),
    ] {
        let hec = HecFake::start(TOKEN).await;
        hec.answer(status, code, None);
        let run = Running::start(
            hec_config(&hec.url(), &tok).build().unwrap(),
            driver_config(50),
        );
        run.push((0..3).map(ecs).collect()).await;
        let snap = run.settle().await;
        assert_eq!(snap.delivered_records_total, 3, "code {code}");
        assert_eq!(snap.retried_records_total, 3, "code {code}");
        assert_eq!(snap.rejected_total(), 0, "code {code}");
        assert_eq!(hec.event_ids().len(), 3, "code {code}");
        run.stop().await;
    }
    // Rejected: the body is wrong.
    for code in [5, 6, 12, 13] {
        let hec = HecFake::start(TOKEN).await;
        hec.answer(400, code, None);
        let run = Running::start(
            hec_config(&hec.url(), &tok).build().unwrap(),
            driver_config(50),
        );
        run.push((0..3).map(ecs).collect()).await;
        let snap = run.settle().await;
        assert_eq!(snap.rejected(RejectReason::InvalidData), 3, "code {code}");
        assert_eq!(snap.delivered_records_total, 0, "code {code}");
        let rejected = run.handle.take_rejected().records;
        assert_eq!(rejected[0].outcome, "Splunk HEC code 5, 6, 12, 13 (data)");
        run.stop().await;
    }
}

#[tokio::test]
async fn one_bad_event_is_rejected_and_the_others_are_resent() {
    let dir = tempfile::tempdir().unwrap();
    let hec = HecFake::start(TOKEN).await;
    hec.state().reject_event_ids.insert(id(2), 6);
    let transport = hec_config(&hec.url(), &token_file(&dir, TOKEN))
        .build()
        .unwrap();
    let stats = transport.stats();
    let run = Running::start(transport, driver_config(50));
    run.push((0..5).map(ecs).collect()).await;
    let snap = run.settle().await;
    assert_eq!(snap.delivered_records_total, 4);
    assert_eq!(snap.rejected(RejectReason::InvalidData), 1);
    let rejected = run.handle.take_rejected().records;
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].event_id, id(2));
    // The fake kept the two events before the bad one, so the resend
    // duplicates them; the event id identifies the duplicates.
    assert_eq!(hec.event_ids(), [id(0), id(1), id(0), id(1), id(3), id(4)]);
    assert_eq!(
        stats.last_error.lock().unwrap().as_deref(),
        Some("code 6: Invalid data format")
    );
    run.stop().await;
}

#[tokio::test]
async fn a_wrong_token_is_retried_degraded_until_it_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let hec = HecFake::start(TOKEN).await;
    let run = Running::start(
        hec_config(&hec.url(), &token_file(&dir, "stale-token"))
            .build()
            .unwrap(),
        driver_config(50),
    );
    run.push((0..4).map(ecs).collect()).await;
    let h = run.handle.clone();
    wait_for("token retries", || {
        let s = h.snapshot();
        s.retried_records_total >= 8 && s.degraded == Some("Splunk HEC code 1-4 (token)")
    })
    .await;
    assert_eq!(run.handle.snapshot().rejected_total(), 0);
    hec.state().tokens.insert("stale-token".into());
    let snap = run.settle().await;
    assert_eq!(snap.delivered_records_total, 4);
    assert_eq!(snap.degraded, None);
    run.stop().await;
}

#[tokio::test]
async fn server_busy_honours_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let hec = HecFake::start(TOKEN).await;
    // 2 s, capped at the driver's 300 ms; the jittered backoff is <= 5 ms.
    hec.answer(503, 9, Some("2"));
    let run = Running::start(
        hec_config(&hec.url(), &token_file(&dir, TOKEN))
            .build()
            .unwrap(),
        driver_config(50),
    );
    let t0 = Instant::now();
    run.push((0..2).map(ecs).collect()).await;
    let snap = run.settle().await;
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(snap.delivered_records_total, 2);
    run.stop().await;
}

fn with_ack(mut c: SplunkHecConfig, timeout_ms: u64) -> SplunkHecConfig {
    c.ack = Some(HecAckConfig {
        poll_interval: Duration::from_millis(10),
        timeout: Duration::from_millis(timeout_ms),
    });
    c
}

#[tokio::test]
async fn indexer_acknowledgement_is_awaited_and_a_lost_ack_resends() {
    let dir = tempfile::tempdir().unwrap();
    let tok = token_file(&dir, TOKEN);
    let hec = HecFake::start(TOKEN).await;
    {
        let mut st = hec.state();
        st.ack_enabled = true;
        st.ack_after_polls = 2;
    }
    let transport = with_ack(hec_config(&hec.url(), &tok), 5_000)
        .build()
        .unwrap();
    let stats = transport.stats();
    let run = Running::start(transport, driver_config(50));
    run.push((0..100).map(ecs).collect()).await;
    let snap = run.settle().await;
    assert_eq!(snap.delivered_records_total, 100);
    // Two polls per batch: the ack turns true on the second.
    assert_eq!(hec.state().ack_polls, 4);
    assert_eq!(
        stats
            .ack_polls_total
            .load(std::sync::atomic::Ordering::SeqCst),
        4
    );
    run.stop().await;

    // The indexer loses the first batch's ack: after the ack timeout the
    // batch is sent again and acknowledged; the duplicates carry the same
    // event ids.
    let hec = HecFake::start(TOKEN).await;
    {
        let mut st = hec.state();
        st.ack_enabled = true;
        st.ack_after_polls = 1;
        st.lost_acks.insert(0);
    }
    let transport = with_ack(hec_config(&hec.url(), &tok), 200).build().unwrap();
    let stats = transport.stats();
    let run = Running::start(transport, driver_config(50));
    run.push((0..50).map(ecs).collect()).await;
    let snap = run.settle().await;
    assert_eq!(snap.delivered_records_total, 50);
    assert_eq!(snap.retried_records_total, 50);
    assert_eq!(
        stats
            .ack_timeouts_total
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    let ids = hec.event_ids();
    assert_eq!(ids.len(), 100);
    assert_eq!(ids[..50], ids[50..]);
    run.stop().await;

    // Acknowledgement configured but disabled on the token: HEC returns no
    // ackId and acceptance is delivery.
    let hec = HecFake::start(TOKEN).await;
    let run = Running::start(
        with_ack(hec_config(&hec.url(), &tok), 5_000)
            .build()
            .unwrap(),
        driver_config(50),
    );
    run.push((0..3).map(ecs).collect()).await;
    assert_eq!(run.settle().await.delivered_records_total, 3);
    assert_eq!(hec.state().ack_polls, 0);
    run.stop().await;
}
