//! The Loki sink end to end through the real driver and queue, against the
//! fake distributor in `fakes/loki.rs` (raw snappy + protobuf decoding,
//! Loki's label and entry validation). The HTTP rows of the classification
//! table that Loki answers with are checked row by row.

#![allow(clippy::unwrap_used)]

mod fakes;
mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fakes::loki::LokiFake;
use flowscribe_sinks::core::classify::RejectReason;
use flowscribe_sinks::core::queue::Record;
use flowscribe_sinks::loki::{LokiConfig, LokiEncoding};
use support::{Running, driver_config, wait_for};

fn loki_config(url: &str) -> LokiConfig {
    let mut c = LokiConfig::new(url);
    c.http.request_timeout = Duration::from_secs(5);
    c
}

/// An RFC 3339 time `secs_ago` seconds before now, with milliseconds.
fn ago(secs_ago: u64, millis: u64) -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - secs_ago;
    // Days/time by hand, to stay independent of the code under test.
    let (days, rem) = (t / 86_400, t % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn flow(i: usize, ts: &str, ns: &str, verdict: &str) -> Record {
    Record::new(
        format!("ev-{i:05}"),
        format!(
            r#"{{"@timestamp":"{ts}","host":{{"name":"node-1"}},"kubernetes":{{"namespace":"{ns}"}},"flowscribe":{{"policy":{{"verdict":"{verdict}"}}}},"network":{{"community_id":"1:c{i}"}},"n":{i}}}"#
        ),
    )
}

#[tokio::test]
async fn records_become_ordered_streams_with_labels_and_metadata() {
    streams_case(LokiEncoding::Protobuf, false).await;
}

#[tokio::test]
async fn json_pushes_carry_the_same_streams_gzip_and_plain() {
    streams_case(LokiEncoding::Json, true).await;
    streams_case(LokiEncoding::Json, false).await;
}

async fn streams_case(encoding: LokiEncoding, gzip: bool) {
    let loki = LokiFake::start().await;
    let mut cfg = loki_config(&loki.url());
    cfg.encoding = encoding;
    cfg.gzip = gzip;
    let run = Running::start(cfg.build().unwrap(), driver_config(40));
    let namespaces = ["shop", "db", "kube-system"];
    let verdicts = ["allow", "deny"];
    // Timestamps decrease with i inside each batch, so per-stream ordering
    // is the builder's work.
    let records: Vec<Record> = (0..120)
        .map(|i| {
            flow(
                i,
                &ago(560 + (i as u64 % 40), 0),
                namespaces[i % 3],
                verdicts[i % 2],
            )
        })
        .collect();
    run.push(records).await;
    let snap = run.settle().await;
    assert_eq!(snap.delivered_records_total, 120);
    assert_eq!(
        loki.event_ids(),
        (0..120).map(|i| format!("ev-{i:05}")).collect::<Vec<_>>()
    );
    {
        let st = loki.state();
        assert_eq!(st.pushes, 3);
        let json = encoding == LokiEncoding::Json;
        assert_eq!(st.json_pushes, if json { 3 } else { 0 });
        assert_eq!(st.gzip_pushes, if json && gzip { 3 } else { 0 });
        assert_eq!(st.streams.len(), 6);
        assert!(st.streams.contains_key(
            r#"{job="flowscribe", namespace="kube-system", node="node-1", verdict="deny"}"#
        ));
        for (labels, entries) in &st.streams {
            assert_eq!(entries.len(), 20, "{labels}");
            // Within one push each stream arrives in time order, although the
            // batch had its times descending.
            for w in entries.windows(2) {
                if w[0].push == w[1].push {
                    assert!(w[0].ts <= w[1].ts, "{labels}: not in time order");
                }
            }
            assert!(entries.windows(2).any(|w| w[0].push == w[1].push));
            // JSON metadata is an object: compare as a set.
            let mut md: Vec<&str> = entries[0]
                .metadata
                .iter()
                .map(|(n, _)| n.as_str())
                .collect();
            md.sort_unstable();
            assert_eq!(md, ["community_id", "event_id"]);
            let n: usize = entries[0].line[entries[0].line.rfind(':').unwrap() + 1..]
                .trim_end_matches('}')
                .parse()
                .unwrap();
            assert!(
                entries[0]
                    .metadata
                    .contains(&("community_id".to_string(), format!("1:c{n}"))),
                "{:?}",
                entries[0].metadata
            );
        }
    }
    run.stop().await;
}

#[tokio::test]
async fn an_entry_too_old_rejects_its_push_and_is_counted() {
    too_old_case(LokiEncoding::Protobuf).await;
    too_old_case(LokiEncoding::Json).await;
}

async fn too_old_case(encoding: LokiEncoding) {
    let loki = LokiFake::start().await;
    let mut cfg = loki_config(&loki.url());
    cfg.encoding = encoding;
    let transport = cfg.build().unwrap();
    let stats = transport.stats();
    let run = Running::start(transport, driver_config(50));
    run.push(vec![
        flow(0, &ago(60, 0), "shop", "allow"),
        flow(1, &ago(30 * 86_400, 0), "shop", "allow"),
        flow(2, &ago(50, 0), "shop", "allow"),
    ])
    .await;
    let snap = run.settle().await;
    // Loki kept the two valid entries but cannot say so per record: the
    // batch is recorded as rejected (loss over-stated, never hidden).
    assert_eq!(snap.rejected(RejectReason::InvalidData), 3);
    assert_eq!(snap.retried_records_total, 0, "a 400 is never resent");
    assert_eq!(loki.event_ids(), ["ev-00000", "ev-00002"]);
    assert_eq!(stats.too_old_total.load(Ordering::SeqCst), 1);
    assert_eq!(stats.rejected_pushes_total.load(Ordering::SeqCst), 1);
    let last = stats.last_rejection.lock().unwrap().clone().unwrap();
    assert!(last.contains("total ignored: 1 out of 3"), "{last}");
    run.stop().await;
}

#[tokio::test]
async fn an_entry_far_behind_its_stream_is_out_of_order() {
    let loki = LokiFake::start().await;
    let transport = loki_config(&loki.url()).build().unwrap();
    let stats = transport.stats();
    let run = Running::start(transport, driver_config(50));
    run.push(vec![flow(0, &ago(10, 0), "db", "deny")]).await;
    assert_eq!(run.settle().await.delivered_records_total, 1);
    // Two hours behind the stream's newest entry (limit: max_chunk_age/2 = 1 h).
    run.push(vec![flow(1, &ago(7_210, 0), "db", "deny")]).await;
    let snap = run.settle().await;
    assert_eq!(snap.rejected(RejectReason::InvalidData), 1);
    assert_eq!(stats.out_of_order_total.load(Ordering::SeqCst), 1);
    // Another stream is not affected by that stream's newest entry.
    run.push(vec![flow(2, &ago(7_210, 0), "db", "allow")]).await;
    assert_eq!(run.settle().await.delivered_records_total, 2);
    run.stop().await;
}

#[tokio::test]
async fn http_statuses_row_by_row() {
    // Retried, then delivered.
    for status in [401, 403, 404, 429, 500, 502, 503, 504, 260] {
        let loki = LokiFake::start().await;
        loki.answer(status, None);
        let run = Running::start(loki_config(&loki.url()).build().unwrap(), driver_config(50));
        run.push(
            (0..3)
                .map(|i| flow(i, &ago(5, 0), "shop", "allow"))
                .collect(),
        )
        .await;
        let snap = run.settle().await;
        assert_eq!(snap.delivered_records_total, 3, "HTTP {status}");
        assert_eq!(snap.retried_records_total, 3, "HTTP {status}");
        assert_eq!(loki.event_ids().len(), 3, "HTTP {status}");
        run.stop().await;
    }
    // 413: halved until each part fits.
    let loki = LokiFake::start().await;
    loki.answer(413, None);
    let run = Running::start(loki_config(&loki.url()).build().unwrap(), driver_config(50));
    run.push(
        (0..4)
            .map(|i| flow(i, &ago(5, 0), "shop", "allow"))
            .collect(),
    )
    .await;
    let snap = run.settle().await;
    assert_eq!(snap.split_batches_total, 1);
    assert_eq!(snap.delivered_records_total, 4);
    run.stop().await;
    // 429 with Retry-After is honoured (capped at 300 ms by the driver).
    let loki = LokiFake::start().await;
    loki.answer(429, Some("5"));
    let run = Running::start(loki_config(&loki.url()).build().unwrap(), driver_config(50));
    let t0 = std::time::Instant::now();
    run.push(vec![flow(0, &ago(5, 0), "shop", "allow")]).await;
    assert_eq!(run.settle().await.delivered_records_total, 1);
    assert!(t0.elapsed() >= Duration::from_millis(300));
    run.stop().await;
}

#[tokio::test]
async fn the_tenant_header_is_sent_and_a_missing_one_is_never_a_drop() {
    let loki = LokiFake::start().await;
    loki.state().require_tenant = Some("team-a".into());
    // Without the tenant: 401, retried with the sink degraded.
    let run = Running::start(loki_config(&loki.url()).build().unwrap(), driver_config(50));
    run.push(vec![flow(0, &ago(5, 0), "shop", "allow")]).await;
    let h = run.handle.clone();
    wait_for("401 retries", || {
        let s = h.snapshot();
        s.retried_records_total >= 2 && s.degraded == Some("HTTP 401")
    })
    .await;
    assert_eq!(run.handle.snapshot().rejected_total(), 0);
    loki.state().require_tenant = None;
    assert_eq!(run.settle().await.delivered_records_total, 1);
    run.stop().await;
    // With it.
    loki.state().require_tenant = Some("team-a".into());
    let mut cfg = loki_config(&loki.url());
    cfg.tenant = Some("team-a".into());
    let run = Running::start(cfg.build().unwrap(), driver_config(50));
    run.push(vec![flow(1, &ago(5, 0), "shop", "allow")]).await;
    assert_eq!(run.settle().await.delivered_records_total, 1);
    assert_eq!(loki.event_ids(), ["ev-00000", "ev-00001"]);
    run.stop().await;
}
