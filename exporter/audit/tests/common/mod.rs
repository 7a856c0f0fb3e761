//! A pipeline stand-in: drives an `Auditor` the way `pipeline.rs` will
//! (stamp, encode with audit fields, seal, tick, shutdown) and collects the
//! JSON lines a file sink would hold. Shared by the tests and the bench.
#![allow(dead_code, clippy::unwrap_used)]

use std::cell::Cell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flowscribe_audit::verify::{Report, Verifier, VerifyOptions};
use flowscribe_audit::{
    Auditor, AuditorOptions, ClockState, HeartbeatRecord, MemoryStateStore, NoteSigner,
    NoteVerifier, StateStore, Suite,
};

thread_local! {
    /// The hash suite archives are written with on this test's thread.
    static SUITE: Cell<Suite> = const { Cell::new(Suite::V1) };
}

/// Run a test body with archives written in `suite` (each test runs on its
/// own thread, so this does not leak into other tests).
pub fn with_suite(suite: Suite, body: fn()) {
    SUITE.set(suite);
    body();
}

/// The suite [`run_node`] and friends write with.
pub fn suite() -> Suite {
    SUITE.get()
}

/// Generate `suite_v1::NAME`, `suite_v2::NAME` and `suite_v3::NAME` tests
/// that run the function `NAME` with archives of each suite.
#[macro_export]
macro_rules! in_both_suites {
    ($($name:ident),* $(,)?) => {
        mod suite_v1 {
            $(#[test]
            fn $name() {
                $crate::common::with_suite(flowscribe_audit::Suite::V1, super::$name)
            })*
        }
        mod suite_v2 {
            $(#[test]
            fn $name() {
                $crate::common::with_suite(flowscribe_audit::Suite::V2, super::$name)
            })*
        }
        mod suite_v3 {
            $(#[test]
            fn $name() {
                $crate::common::with_suite(flowscribe_audit::Suite::V3, super::$name)
            })*
        }
    };
}

pub const KEY_NAME: &str = "flowscribe-test";

pub fn signer() -> NoteSigner {
    NoteSigner::from_seed(KEY_NAME, [42; 32]).unwrap()
}

pub fn verifier_key() -> NoteVerifier {
    NoteVerifier::parse(&signer().verifier_key()).unwrap()
}

pub fn t(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_763_712_000_000 + ms)
}

/// How many connections [`flow_json`]'s documents come from.
pub const CONNECTIONS: u64 = 7;

/// An ECS-shaped flow document of about 900 bytes, distinct per `n`: the
/// window `n` of connection `n % CONNECTIONS`. The connection's own values
/// (addresses, ports, Community ID, pod, interface) repeat from one of its
/// windows to the next, as a node's do; times, ids and counters do not.
/// So v3's stable part repeats too, and a verifier reads a connection's
/// later records from its volatile part alone.
pub fn flow_json(node: &str, n: u64) -> Vec<u8> {
    flow_json_of(node, n, CONNECTIONS)
}

/// [`flow_json`] from `connections` connections (`u64::MAX`: each document
/// its own).
pub fn flow_json_of(node: &str, n: u64, connections: u64) -> Vec<u8> {
    let c = n % connections;
    format!(
        concat!(
            r#"{{"@timestamp":"2025-11-21T08:00:{:02}.{:03}Z","ecs":{{"version":"9.1.0"}},"#,
            r#""event":{{"kind":"event","category":["network"],"type":["connection"],"action":"flow","outcome":"success","id":"{:016x}"}},"#,
            r#""network":{{"transport":"tcp","type":"ipv4","iana_number":"6","community_id":"1:{:x}=","bytes":{},"packets":{}}},"#,
            r#""source":{{"ip":"10.244.{}.{}","port":{},"bytes":{},"packets":{}}},"#,
            r#""destination":{{"ip":"10.96.0.{}","port":443,"bytes":{},"packets":{}}},"#,
            r#""host":{{"name":"{}"}},"observer":{{"type":"flowscribe","hostname":"{}"}},"#,
            r#""orchestrator":{{"namespace":"shop","resource":{{"type":"pod","name":"checkout-{:x}"}}}},"#,
            r#""flowscribe":{{"state":"completed","interface":"veth{:x}","window_start":"2025-11-21T08:00:00Z","window_end":"2025-11-21T08:00:10Z","policy":{{"verdict":"allowed-by-rule","reason":"allowed-by-rule","hits":[{{"kind":"NetworkPolicy","namespace":"shop","name":"allow-checkout","rule":0}}]}}}}}}"#
        ),
        n % 60,
        n % 1000,
        n.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        c,
        n * 1500 + 7,
        n % 90 + 2,
        c % 250,
        c % 200 + 1,
        30_000 + c % 30_000,
        n * 1000,
        n % 50 + 1,
        c % 200 + 1,
        n * 500 + 7,
        n % 40 + 1,
        node,
        node,
        c,
        c % 4096,
    )
    .into_bytes()
}

/// [`flow_json`] grown to about `bytes` bytes (when more than ~900) with
/// ECS `labels`, as pod labels make real flow documents 2-3 KB: a fixed
/// number of `"k8s-label-NNN":"value-NNN-<n>"` entries, so every document
/// of one size has the same shape. Each document is its own connection.
pub fn flow_json_sized(node: &str, n: u64, bytes: usize) -> Vec<u8> {
    let mut doc = flow_json_of(node, n, u64::MAX);
    let labels = bytes.saturating_sub(900) / 36;
    if labels > 0 {
        doc.pop();
        doc.extend_from_slice(br#","labels":{"#);
        for i in 0..labels {
            if i > 0 {
                doc.push(b',');
            }
            doc.extend_from_slice(
                format!(r#""k8s-label-{i:03}":"value-{i:03}-{}""#, n % 977).as_bytes(),
            );
        }
        doc.extend_from_slice(b"}}");
    }
    doc
}

/// What a run of the stand-in pipeline produced.
#[derive(Debug, Default)]
pub struct Archive {
    pub lines: Vec<Vec<u8>>,
    pub records: u64,
    pub checkpoints: u64,
}

impl Archive {
    pub fn text(&self) -> Vec<String> {
        self.lines
            .iter()
            .map(|l| String::from_utf8(l.clone()).unwrap())
            .collect()
    }
}

/// Run `batches` batches of `batch_size` flows, one per simulated second,
/// from `start_ms` (see [`run_node_every`] for another pace), with checkpoints every 60 s and heartbeats every 30 s,
/// on `store`. `clean` ends with `shutdown`; otherwise the auditor is
/// dropped (a crash). Returns the lines and the store.
pub fn run_node<S: StateStore>(
    node: &str,
    store: S,
    start_ms: u64,
    batches: u64,
    batch_size: u64,
    clean: bool,
    chain_id: [u8; 16],
) -> (Archive, Option<S>) {
    run_node_every(
        node, store, start_ms, 1000, batches, batch_size, clean, chain_id,
    )
}

/// [`run_node`] with one batch every `step_ms` of simulated time.
#[allow(clippy::too_many_arguments)]
pub fn run_node_every<S: StateStore>(
    node: &str,
    store: S,
    start_ms: u64,
    step_ms: u64,
    batches: u64,
    batch_size: u64,
    clean: bool,
    chain_id: [u8; 16],
) -> (Archive, Option<S>) {
    run_node_in(
        suite(),
        node,
        store,
        start_ms,
        step_ms,
        batches,
        batch_size,
        clean,
        chain_id,
    )
}

/// [`run_node_every`] in a given hash suite.
#[allow(clippy::too_many_arguments)]
pub fn run_node_in<S: StateStore>(
    suite: Suite,
    node: &str,
    store: S,
    start_ms: u64,
    step_ms: u64,
    batches: u64,
    batch_size: u64,
    clean: bool,
    chain_id: [u8; 16],
) -> (Archive, Option<S>) {
    let options = AuditorOptions::new(node, vec!["ecs".into()]).with_suite(suite);
    let (mut auditor, gap) =
        Auditor::start(store, signer(), options, t(start_ms), chain_id).unwrap();
    let mut out = Archive::default();
    let mut pending_extra: Vec<Vec<u8>> = Vec::new();
    if let Some(gap) = gap {
        pending_extra.push(serde_json::to_vec(&gap.to_json(node)).unwrap());
    }
    let mut n = 0u64;
    for b in 0..batches {
        let now = t(start_ms + b * step_ms);
        let tick = auditor.tick(now).unwrap();
        for cp in &tick.checkpoints {
            out.lines.push(cp.to_json_line());
            out.checkpoints += 1;
        }
        if tick.heartbeat_due {
            let hb = HeartbeatRecord {
                clock: ClockState {
                    synchronized: true,
                    max_error_us: 1200,
                    est_error_us: 40,
                },
                interfaces_attached: vec!["eth0".into()],
                sampling: 1,
                degraded: vec![],
            };
            pending_extra.push(serde_json::to_vec(&hb.to_json(node, now)).unwrap());
        }
        let mut docs: Vec<Vec<u8>> = std::mem::take(&mut pending_extra);
        for _ in 0..batch_size {
            docs.push(flow_json(node, n + start_ms));
            n += 1;
        }
        let stamp = auditor.stamp(docs.len(), now).unwrap();
        for (i, d) in docs.iter_mut().enumerate() {
            assert!(stamp.fields("ecs", i as u64).append_to_json_object(d));
        }
        let seal = auditor.seal("ecs", &stamp, &docs, now).unwrap();
        out.records += docs.len() as u64;
        out.lines.extend(docs);
        out.lines.push(seal.to_json_line());
    }
    if clean {
        let (cps, store) = auditor.shutdown(t(start_ms + batches * step_ms)).unwrap();
        for cp in cps {
            out.lines.push(cp.to_json_line());
            out.checkpoints += 1;
        }
        (out, Some(store))
    } else {
        (out, None)
    }
}

/// One node, one clean run.
pub fn simple_archive(batches: u64, batch_size: u64) -> Archive {
    run_node(
        "node-a",
        MemoryStateStore::default(),
        0,
        batches,
        batch_size,
        true,
        [0xa1; 16],
    )
    .0
}

pub fn options() -> VerifyOptions {
    VerifyOptions {
        trusted: vec![verifier_key()],
        ..VerifyOptions::default()
    }
}

/// Verify lines as one file.
pub fn verify_lines<L: AsRef<[u8]>>(lines: &[L], options: VerifyOptions) -> Report {
    let mut v = Verifier::new(options);
    let f = v.add_file("archive.jsonl");
    for (i, l) in lines.iter().enumerate() {
        v.add_line(f, i as u64 + 1, l.as_ref());
    }
    v.finish()
}
