//! ⑤ The audit trail as the daemon runs it (issue 7; the chain, seals,
//! checkpoints and verifier are `flowscribe-audit`).
//!
//! Per drain, after encoding: every JSON format in use (the output's and
//! each sink's) is one *view* with its own hash chain over the same
//! sequence numbers. The batch is stamped once, every record of every view
//! gets its `flowscribe.audit` fields, and each view's lines end with that
//! view's seal. Records the trail itself makes (the gap after a restart,
//! start and stop, heartbeats) travel in the batch like flows, so they are
//! numbered and sealed too. Signed checkpoints go out every
//! `audit.checkpoint_interval`, also when idle, and one last at shutdown.
//!
//! CEF lines and OTLP protobuf records cannot carry the fields; those
//! consumers are outside the trail (the config reference says so).

use std::collections::BTreeMap;
use std::time::SystemTime;

use anyhow::Context as _;
use flowscribe_audit::fields::chain_hex;
use flowscribe_audit::form_template::HoleTable;
use flowscribe_audit::{
    Auditor, AuditorOptions, ClockState, FileStateStore, HeartbeatRecord, LifecycleEvent,
    LifecycleRecord, LossRecord, LossStage, NoteSigner,
};
use flowscribe_enrich::kube_policies::PolicyChange;
use flowscribe_normalize::Schema;
use serde_json::Value;

use crate::config::{AuditSettings, Format};
use crate::sinks::SinkLoss;

/// One format's share of a drain: its encoded lines and their event ids.
pub type Encoded = (Format, Vec<Vec<u8>>, Vec<String>);

/// The view name of a format that can carry audit fields (JSON objects).
pub fn view_name(format: Format) -> Option<&'static str> {
    match format {
        Format::Minimal => Some("minimal"),
        Format::Schema(Schema::Cef) => None,
        Format::Schema(s) => Some(s.name()),
    }
}

/// The daemon's audit trail.
#[derive(Debug)]
pub struct AuditTrail {
    auditor: Auditor<FileStateStore>,
    node: String,
    chain: String,
    /// Records the trail made, waiting for the next batch.
    pending: Vec<Value>,
    /// Checkpoints due, per view, waiting for the next delivery.
    checkpoints: Vec<(String, Vec<u8>, String)>,
    /// Open incidents: condition -> incident id.
    incidents: BTreeMap<String, String>,
    incident_seq: u64,
}

impl AuditTrail {
    /// Load the key and resume the chain from the state directory (a gap
    /// record when a previous run existed). Call [`AuditTrail::started`]
    /// once capture runs.
    pub fn start(
        settings: &AuditSettings,
        node: &str,
        formats: &[Format],
        now: SystemTime,
    ) -> anyhow::Result<AuditTrail> {
        let mut views: Vec<String> = Vec::new();
        for f in formats {
            if let Some(v) = view_name(*f)
                && !views.iter().any(|x| x == v)
            {
                views.push(v.to_string());
            }
        }
        anyhow::ensure!(
            !views.is_empty(),
            "audit: no JSON output or sink to carry the trail (CEF and OTLP protobuf cannot)"
        );
        let key = std::fs::read(&settings.key_file)
            .with_context(|| format!("audit.key_file {}", settings.key_file.display()))?;
        let signer = NoteSigner::from_key_bytes(&settings.key_name, &key)
            .with_context(|| format!("audit.key_file {}", settings.key_file.display()))?;
        std::fs::create_dir_all(&settings.state_dir)
            .with_context(|| format!("audit.state_dir {}", settings.state_dir.display()))?;
        let store = FileStateStore::new(settings.state_dir.join("audit-state.json"));
        let mut options = AuditorOptions::new(node, views).with_suite(settings.hash_suite);
        options.checkpoint_interval = settings.checkpoint_interval;
        options.heartbeat_interval = settings.heartbeat_interval;
        let new_chain = flowscribe_audit::random_chain_id()
            .map_err(|e| anyhow::anyhow!("audit: random chain id: {e}"))?;
        let (auditor, gap) = Auditor::start(store, signer, options, now, new_chain)
            .context("audit: resuming the chain")?;
        let mut trail = AuditTrail {
            chain: chain_hex(&auditor.chain()),
            auditor,
            node: node.to_string(),
            pending: Vec::new(),
            checkpoints: Vec::new(),
            incidents: BTreeMap::new(),
            incident_seq: 0,
        };
        if let Some(gap) = gap {
            trail.pending.push(gap.to_json(node));
        }
        tracing::info!(chain = %trail.chain, run = trail.auditor.run(), first_seq = trail.auditor.next_seq(), key = %trail.auditor.verifier_key(), "audit trail on");
        Ok(trail)
    }

    /// Queue the start record: version, config hash, kernel, attach mode,
    /// interfaces (what an auditor needs to know was running).
    pub fn started(&mut self, details: BTreeMap<String, Value>, now: SystemTime) {
        self.lifecycle(LifecycleEvent::Start, details, now);
    }

    /// Queue a reload record for each source re-read after start (what was
    /// loaded, in `details`).
    pub fn reloads(&mut self, reloads: Vec<(SystemTime, BTreeMap<String, Value>)>) {
        for (at, details) in reloads {
            self.lifecycle(LifecycleEvent::Reload, details, at);
        }
    }

    fn lifecycle(
        &mut self,
        event: LifecycleEvent,
        details: BTreeMap<String, Value>,
        now: SystemTime,
    ) {
        let r = LifecycleRecord {
            event,
            reason: None,
            incident_id: None,
            details,
        };
        self.pending.push(r.to_json(&self.node, now));
    }

    /// Queue policy change records (PCI DSS 1.2.2, 10.2.1.7): which policy,
    /// which version replaced which, and what changed.
    pub fn policy_changes(&mut self, changes: Vec<(SystemTime, PolicyChange)>) {
        for (at, c) in changes {
            let record = serde_json::json!({
                "@timestamp": humantime::format_rfc3339_millis(at).to_string(),
                "event": {"kind": "event", "dataset": "flowscribe.audit", "action": "policy-change"},
                "host": {"name": self.node},
                "flowscribe": {
                    "record": "policy_change",
                    "policy_change": {
                        "change": c.change.as_str(),
                        "api_version": c.resource.api_version(),
                        "kind": c.resource.kind,
                        "namespace": c.namespace,
                        "name": c.name,
                        "uid": c.uid,
                        "resource_version": c.resource_version,
                        "generation": c.generation,
                        "previous_resource_version": c.previous_resource_version,
                        "changed": c.changed,
                    }
                }
            });
            self.pending.push(record);
        }
    }

    /// Compare the conditions that are degraded now (`name` -> detail) with
    /// the last call, and queue a `degraded` record for each that began and
    /// a `recovered` record (same incident id) for each that ended.
    pub fn conditions(&mut self, now_degraded: BTreeMap<String, String>, at: SystemTime) {
        let began: Vec<(String, String)> = now_degraded
            .iter()
            .filter(|(k, _)| !self.incidents.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let ended: Vec<String> = self
            .incidents
            .keys()
            .filter(|k| !now_degraded.contains_key(*k))
            .cloned()
            .collect();
        for (reason, detail) in began {
            self.incident_seq += 1;
            let id = format!(
                "{}-{}-{}",
                self.chain,
                self.auditor.run(),
                self.incident_seq
            );
            let r = LifecycleRecord {
                event: LifecycleEvent::Degraded,
                reason: Some(reason.clone()),
                incident_id: Some(id.clone()),
                details: BTreeMap::from([("detail".to_string(), Value::from(detail))]),
            };
            self.pending.push(r.to_json(&self.node, at));
            self.incidents.insert(reason, id);
        }
        for reason in ended {
            let id = self.incidents.remove(&reason);
            let r = LifecycleRecord {
                event: LifecycleEvent::Recovered,
                reason: Some(reason),
                incident_id: id,
                details: BTreeMap::new(),
            };
            self.pending.push(r.to_json(&self.node, at));
        }
    }

    /// Queue loss records for what sinks shed or had rejected in the window
    /// (counts equal the increase of the sinks' shed and rejected metrics).
    pub fn sink_losses(&mut self, losses: Vec<SinkLoss>, start: SystemTime, end: SystemTime) {
        for l in losses {
            let record = LossRecord {
                stage: if l.stage == "queue" {
                    LossStage::Queue
                } else {
                    LossStage::Sink
                },
                reason: l.reason.to_string(),
                sink: Some(l.sink),
                count: l.count,
                count_is_exact: true,
                bytes: None,
                seq_range: None,
                window_start: start,
                window_end: end,
            };
            self.pending.push(record.to_json(&self.node, end));
        }
    }

    /// Once per loop: queue the checkpoints and the heartbeat that are due.
    pub fn tick(
        &mut self,
        now: SystemTime,
        heartbeat: impl FnOnce() -> HeartbeatRecord,
    ) -> anyhow::Result<()> {
        let tick = self.auditor.tick(now).context("audit: checkpoint")?;
        if tick.heartbeat_due {
            self.pending.push(heartbeat().to_json(&self.node, now));
        }
        self.queue_checkpoints(tick.checkpoints);
        Ok(())
    }

    fn queue_checkpoints(&mut self, checkpoints: Vec<flowscribe_audit::CheckpointRecord>) {
        let chain = self.chain.clone();
        self.checkpoints
            .extend(checkpoints.iter().map(|c| checkpoint_line(&chain, c)));
    }

    /// Number, seal and checkpoint one delivery: `encoded` holds every
    /// format's lines of this drain (flows and losses, the same records in
    /// each); audited views get the trail's own records, the audit fields,
    /// their seal, and any checkpoint that is due.
    ///
    /// `ecs_holes` is the ECS encoder's side table of this drain's flow
    /// lines (empty when it kept none): the ECS view's lines written from
    /// a template get their canonical form from it.
    pub fn seal(
        &mut self,
        encoded: &mut [Encoded],
        ecs_holes: &HoleTable,
        now: SystemTime,
    ) -> anyhow::Result<()> {
        let data = encoded.first().map_or(0, |(_, lines, _)| lines.len());
        let extras: Vec<Vec<u8>> = self
            .pending
            .drain(..)
            .map(|v| serde_json::to_vec(&v).unwrap_or_default())
            .collect();
        let count = data + extras.len();
        // Checkpoints first: they cover what was sealed before this batch.
        for (format, lines, ids) in encoded.iter_mut() {
            let Some(view) = view_name(*format) else {
                continue;
            };
            let (l, i): (Vec<Vec<u8>>, Vec<String>) = self
                .checkpoints
                .iter()
                .filter(|(v, _, _)| v == view)
                .map(|(_, l, id)| (l.clone(), id.clone()))
                .unzip();
            lines.splice(0..0, l);
            ids.splice(0..0, i);
        }
        self.checkpoints.clear();
        if count == 0 {
            return Ok(());
        }
        let stamp = self.auditor.stamp(count, now).context("audit: numbering")?;
        for (format, lines, ids) in encoded.iter_mut() {
            let Some(view) = view_name(*format) else {
                continue;
            };
            let skip = lines.len() - data; // the checkpoints put in front
            for (i, extra) in extras.iter().enumerate() {
                lines.push(extra.clone());
                ids.push(format!(
                    "audit-{}-{}",
                    self.chain,
                    stamp.first_seq + (data + i) as u64
                ));
            }
            for (i, line) in lines[skip..].iter_mut().enumerate() {
                if !stamp.append_fields(view, i as u64, line) {
                    anyhow::bail!("audit: a {view} record is not a JSON object");
                }
            }
            let seal = if *format == Format::Schema(Schema::Ecs) {
                self.auditor
                    .seal_templated(view, &stamp, &lines[skip..], ecs_holes, now)
            } else {
                self.auditor.seal(view, &stamp, &lines[skip..], now)
            }
            .context("audit: sealing")?;
            lines.push(seal.to_json_line());
            ids.push(format!(
                "seal-{}-{view}-{}-{}",
                self.chain, stamp.run, stamp.batch
            ));
        }
        Ok(())
    }

    /// Queue the stop record (deliver it with the final batch), then close
    /// the chain with [`AuditTrail::finish`].
    pub fn stopping(&mut self, now: SystemTime) {
        self.lifecycle(LifecycleEvent::Stop, BTreeMap::new(), now);
    }

    /// The final checkpoints (stop = true), to deliver last; the state is
    /// marked clean so the next start records a clean gap.
    pub fn finish(self, now: SystemTime) -> anyhow::Result<Vec<(String, Vec<u8>, String)>> {
        let chain = self.chain.clone();
        let (checkpoints, _) = self
            .auditor
            .shutdown(now)
            .context("audit: final checkpoint")?;
        Ok(checkpoints
            .iter()
            .map(|c| checkpoint_line(&chain, c))
            .collect())
    }
}

/// A checkpoint as delivered: its view, its JSON line and its event id.
fn checkpoint_line(
    chain: &str,
    c: &flowscribe_audit::CheckpointRecord,
) -> (String, Vec<u8>, String) {
    let id = format!("checkpoint-{chain}-{}-{}-{}", c.view, c.run, c.number);
    (c.view.clone(), c.to_json_line(), id)
}

/// The kernel's clock discipline, for heartbeats.
pub fn clock_state() -> ClockState {
    let c = flowscribe_capture::kernel_clock();
    ClockState {
        synchronized: c.synchronized,
        max_error_us: c.max_error_us,
        est_error_us: c.est_error_us,
    }
}

/// The normalize crate's test fixtures (flows of the golden cases and its
/// benchmark workload), for this module's and the pipeline's tests.
#[cfg(test)]
#[path = "../../normalize/tests/fixtures/mod.rs"]
pub(crate) mod fixtures;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use flowscribe_audit::verify::{Verifier, VerifyOptions};
    use flowscribe_audit::{NoteVerifier, Suite};
    use flowscribe_normalize::ecs::EcsEncoder;

    use super::*;

    /// ECS lines written from templates are sealed from their form
    /// templates (debug builds compare each with a parse), and the archive
    /// verifies; a changed hole value in one line is found.
    #[test]
    fn templated_ecs_lines_are_sealed_from_their_forms_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("audit.key");
        std::fs::write(&key_file, [9u8; 32]).unwrap();
        let settings = AuditSettings {
            key_file,
            key_name: "flowscribe-test".into(),
            state_dir: dir.path().join("state"),
            checkpoint_interval: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(30),
            hash_suite: Suite::V2,
        };
        let format = Format::Schema(Schema::Ecs);
        let start = super::fixtures::observed();
        let mut trail = AuditTrail::start(&settings, "node-1", &[format], start).unwrap();
        let mut encoder = EcsEncoder::new(super::fixtures::context());
        encoder.note_holes(true);
        let mut flows = super::fixtures::workload(50, 10, 5, true);
        let mut archive: Vec<Vec<u8>> = Vec::new();
        for b in 0..6u64 {
            let at = start + Duration::from_secs(10 * b);
            let (mut lines, mut table) = (Vec::new(), HoleTable::new());
            for f in &flows {
                let mut line = Vec::new();
                encoder.encode(f, at, &mut line);
                table.push(encoder.last_holes());
                lines.push(line);
            }
            let ids = (0..lines.len()).map(|i| format!("{b}-{i}")).collect();
            let mut encoded = vec![(format, lines, ids)];
            trail.seal(&mut encoded, &table, at).unwrap();
            archive.append(&mut encoded[0].1);
            for f in &mut flows {
                let ff = &mut f.flow.flow;
                ff.window_start = ff.window_end;
                ff.window_end += Duration::from_secs(10);
                ff.forward.bytes += 1_000 + b;
                ff.reverse.packets += 3;
            }
        }
        // The connections' templates are recorded on batch 1 and write
        // their lines from batch 2 on; a form template is built on its
        // template's second line (batch 3), and fills that line and every
        // later one.
        let (filled, built, refused) = trail.auditor.form_template_counts();
        assert_eq!((filled, built, refused), (150, 50, 0));
        let end = start + Duration::from_secs(60);
        archive.extend(trail.finish(end).unwrap().into_iter().map(|(_, l, _)| l));
        let verify = |lines: &[Vec<u8>]| {
            let key = NoteSigner::from_key_bytes("flowscribe-test", &[9u8; 32]).unwrap();
            let mut v = Verifier::new(VerifyOptions {
                trusted: vec![NoteVerifier::parse(&key.verifier_key()).unwrap()],
                ..VerifyOptions::default()
            });
            let file = v.add_file("archive.jsonl");
            for (i, l) in lines.iter().enumerate() {
                v.add_line(file, i as u64 + 1, l);
            }
            v.finish()
        };
        let report = verify(&archive);
        assert!(report.ok(), "{}", report.render());
        assert_eq!(report.chains[0].records_verified, 300);
        // A counter of the last batch's first flow, changed by one digit.
        let line = archive.len() - 2 - 50;
        let at = find_bytes(&archive[line], b"\"bytes\":").unwrap() + 8;
        archive[line][at] = if archive[line][at] == b'9' {
            b'8'
        } else {
            b'9'
        };
        assert!(!verify(&archive).ok());
    }

    fn find_bytes(haystack: &[u8], needle: &[u8]) -> Option<usize> {
        haystack.windows(needle.len()).position(|w| w == needle)
    }
}
