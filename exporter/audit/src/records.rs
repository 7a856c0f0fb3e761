//! The records the audit trail adds to the stream, as JSON objects.
//!
//! Two kinds:
//! - **chain records** (seal, checkpoint) carry no sequence number: they are
//!   authenticated by the hash chain and the signature, not by a leaf.
//! - **data records** (gap, loss, heartbeat, lifecycle) are ordinary records:
//!   the pipeline stamps them like flows ([`crate::BatchStamp`]), so deleting
//!   one leaves a hole in the sequence.
//!
//! All share an ECS-style envelope so SIEM rules can select them:
//! `{"@timestamp", "event": {"kind": "event", "dataset": "flowscribe.audit",
//! "action": <kind>}, "host": {"name": node}, "flowscribe": {...}}`. Only what
//! is under `flowscribe.audit` (chain records) or the whole record (data
//! records, via the canonical form) is protected.
//!
//! Pure: times are passed in.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Serialize;
use serde_json::{Value, json};

use crate::fields::chain_hex;
use crate::hash::{ChainId, Hash};
use crate::state::PersistedCheckpoint;

/// Unix milliseconds of a time (0 before the epoch).
pub fn unix_ms(t: SystemTime) -> u64 {
    u64::try_from(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(u64::MAX)
}

fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn envelope(action: &str, node: &str, at: SystemTime, flowscribe: Value) -> Value {
    json!({
        "@timestamp": timestamp(at),
        "event": {"kind": "event", "dataset": "flowscribe.audit", "action": action},
        "host": {"name": node},
        "flowscribe": flowscribe,
    })
}

fn line(v: &Value) -> Vec<u8> {
    // Serialising a Value into a Vec cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

/// The seal of one batch in one view: its Merkle root and its link in the
/// chain. Emitted after the batch's records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealRecord {
    pub chain: ChainId,
    pub view: String,
    pub node: String,
    pub run: u64,
    pub batch: u64,
    pub first_seq: u64,
    pub count: u64,
    pub root: Hash,
    pub prev: Hash,
    pub head: Hash,
    /// One [`crate::hash::TAG_BYTES`] prefix of each record's content digest, in seq order.
    pub tags: Vec<u8>,
    /// The hash suite of the batch; written as `suite` only when not v1.
    pub suite: crate::hash::Suite,
    pub at: SystemTime,
}

impl SealRecord {
    pub fn to_json(&self) -> Value {
        let mut audit = json!({
                "type": "seal",
                "chain": chain_hex(&self.chain),
                "view": self.view,
                "node": self.node,
                "run": self.run,
                "batch": self.batch,
                "first_seq": self.first_seq,
                "count": self.count,
                "root": B64.encode(self.root),
                "prev": B64.encode(self.prev),
                "head": B64.encode(self.head),
                "tags": B64.encode(&self.tags),
        });
        // v1 seals look as they did before suites had names.
        if self.suite != crate::hash::Suite::V1
            && let Value::Object(map) = &mut audit
        {
            map.insert("suite".into(), self.suite.name().into());
        }
        envelope("seal", &self.node, self.at, json!({ "audit": audit }))
    }

    pub fn to_json_line(&self) -> Vec<u8> {
        line(&self.to_json())
    }
}

/// A signed checkpoint of one view, in-band.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRecord {
    pub chain: ChainId,
    pub view: String,
    pub node: String,
    pub run: u64,
    pub number: u64,
    /// The full signed note (C2SP), newlines included.
    pub note: String,
    pub at: SystemTime,
}

impl CheckpointRecord {
    pub fn to_json(&self) -> Value {
        envelope(
            "checkpoint",
            &self.node,
            self.at,
            json!({"audit": {
                "type": "checkpoint",
                "chain": chain_hex(&self.chain),
                "view": self.view,
                "node": self.node,
                "run": self.run,
                "checkpoint": self.number,
                "note": self.note,
            }}),
        )
    }

    pub fn to_json_line(&self) -> Vec<u8> {
        line(&self.to_json())
    }
}

/// `[stopped, started]`: the exporter was not running. Made by
/// [`crate::Auditor::start`] from the persisted state; the pipeline stamps
/// and emits it in the first batch of the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GapRecord {
    pub previous_run: u64,
    pub run: u64,
    /// The previous run shut down cleanly (its state says exactly where it stopped).
    pub clean: bool,
    /// Clean: when the previous run stopped. After a crash: the last time it
    /// wrote its state, so it stopped at or after this.
    #[serde(serialize_with = "ser_time")]
    pub stopped: SystemTime,
    #[serde(serialize_with = "ser_time")]
    pub started: SystemTime,
    /// The first sequence number of this run.
    pub resumed_seq: u64,
    /// The previous run used no sequence number at or above this; after a
    /// crash, numbers below it that no record carries were never issued or
    /// were lost with the crash.
    pub previous_reserved_until: u64,
    /// Per view, the last checkpoint the previous run persisted: the
    /// verifier requires it in the archive.
    pub previous_checkpoints: BTreeMap<String, PersistedCheckpoint>,
}

fn ser_time<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&timestamp(*t))
}

impl GapRecord {
    /// The record's JSON (without audit fields: the pipeline appends them).
    pub fn to_json(&self, node: &str) -> Value {
        envelope(
            "gap",
            node,
            self.started,
            json!({"record": "gap", "gap": self}),
        )
    }
}

/// Where a loss happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LossStage {
    /// Kernel ring reserve failures, map pressure, parse failures.
    Capture,
    /// Userspace queues shedding.
    Queue,
    /// A sink rejected records permanently.
    Sink,
}

/// Records that were not exported, in-band, so the SIEM sees the hole. The
/// counts equal the matching metric's increase over the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LossRecord {
    pub stage: LossStage,
    /// e.g. `ring_reserve_failed`, `flow_map_full`, `queue_full`, `sink_rejected`.
    pub reason: String,
    /// The sink, for queue and sink losses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sink: Option<String>,
    pub count: u64,
    /// False when `count` is a lower bound (e.g. estimated after a crash).
    pub count_is_exact: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// The lost records' sequence numbers, when they had been assigned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq_range: Option<[u64; 2]>,
    #[serde(serialize_with = "ser_time")]
    pub window_start: SystemTime,
    #[serde(serialize_with = "ser_time")]
    pub window_end: SystemTime,
}

impl LossRecord {
    pub fn to_json(&self, node: &str, at: SystemTime) -> Value {
        envelope("loss", node, at, json!({"record": "loss", "loss": self}))
    }
}

/// The kernel's clock discipline as adjtimex(2) reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClockState {
    /// `STA_UNSYNC` is clear.
    pub synchronized: bool,
    pub max_error_us: u64,
    pub est_error_us: u64,
}

/// The 30-second proof of life: clock, coverage, pipeline health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeartbeatRecord {
    pub clock: ClockState,
    pub interfaces_attached: Vec<String>,
    /// 1 = every packet counted (flowscribe never samples).
    pub sampling: u32,
    /// Empty when healthy; otherwise the degraded conditions.
    pub degraded: Vec<String>,
}

impl HeartbeatRecord {
    pub fn to_json(&self, node: &str, at: SystemTime) -> Value {
        envelope(
            "heartbeat",
            node,
            at,
            json!({"record": "heartbeat", "heartbeat": self}),
        )
    }
}

/// What happened to the exporter itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleEvent {
    Start,
    Stop,
    Reload,
    Degraded,
    Recovered,
}

/// Start/stop/reload and degraded/recovered (paired by `incident_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LifecycleRecord {
    pub event: LifecycleEvent,
    /// Degraded/recovered: `capture_failing`, `api_unreachable`, `sink_blocked`, `disk_full`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<String>,
    /// Start: version, config hash, kernel, attach mode, capabilities, interfaces.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, Value>,
}

impl LifecycleRecord {
    pub fn to_json(&self, node: &str, at: SystemTime) -> Value {
        envelope(
            "lifecycle",
            node,
            at,
            json!({"record": "lifecycle", "lifecycle": self}),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn loss_record_has_its_fields() {
        let t = UNIX_EPOCH + Duration::from_secs(1_763_712_000);
        let loss = LossRecord {
            stage: LossStage::Capture,
            reason: "ring_reserve_failed".into(),
            sink: None,
            count: 12,
            count_is_exact: true,
            bytes: None,
            seq_range: None,
            window_start: t,
            window_end: t + Duration::from_secs(1),
        };
        let v = loss.to_json("node-a", t);
        assert_eq!(v["event"]["action"], "loss");
        assert_eq!(v["host"]["name"], "node-a");
        assert_eq!(
            v["flowscribe"]["loss"],
            json!({"stage": "capture", "reason": "ring_reserve_failed", "count": 12,
                   "count_is_exact": true, "window_start": "2025-11-21T08:00:00.000Z",
                   "window_end": "2025-11-21T08:00:01.000Z"})
        );
    }
}
