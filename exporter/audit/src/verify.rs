//! The verifier behind `flowscribe verify`: JSON lines in (file-sink output,
//! or records exported from a SIEM, several nodes interleaved, any order), a
//! [`Report`] out that says exactly which sequence ranges are missing,
//! modified, reordered, inserted or unsigned.
//!
//! How it decides, per chain and view:
//! 1. Checkpoints are checked against the trusted keys. A verified
//!    checkpoint signs the head after `batches` batches of a run.
//! 2. Each batch's head is recomputed from its seal (or, when the seal is
//!    gone, from its records). Walking back from every signed head, a batch
//!    is *authenticated* when its head equals what the signed chain expects;
//!    its seal's `prev` is then what the batch before must hash to.
//! 3. In an authenticated batch every sequence number must have a record
//!    whose content digest matches the seal's tag and whose audit fields
//!    match the batch; the records' leaves must give the seal's root.
//!    Otherwise: no record = missing; content of another sequence number =
//!    reordered; a second, different record next to a matching one =
//!    inserted; anything else = modified.
//! 4. Records outside every authenticated batch are unsigned. Sequence
//!    numbers between runs are explained by the next run's gap record.
//!
//! Exact duplicates (same sequence number, same content: a replay) pass.
//! Pure: callers feed lines; no IO.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value};

use crate::canonical::Canonicalizer;
use crate::fields::{
    AuditFieldsRef, FieldError, audit_object, canonical_str, canonical_u64, chain_hex, get_chain,
    get_str, get_u64,
};
use crate::hash::{BatchPosition, ChainId, Hash, HeadInput, Suite, TAG_BYTES};
use crate::hash_v2::{DigestBatch, content_digest_v2};
use crate::hash_v3::Splitter;
use crate::note::{Checkpoint, NoteCheck, NoteVerifier, SignedNote};

/// How strict to be.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Keys whose checkpoints are trusted.
    pub trusted: Vec<NoteVerifier>,
    /// Lines of one file must be in sequence order (file-sink archives);
    /// off for SIEM exports, whose order means nothing.
    pub ordered: bool,
    /// The archive is a slice: it need not start at the chain's first record.
    pub partial: bool,
    /// Unsigned records at the end of a run that crashed (its successor's
    /// gap record says so) are a warning, not a failure.
    pub accept_crash_tail: bool,
    /// The newest run may still be running: its end without a stop
    /// checkpoint is a note, not a failure (an archive cut after a
    /// checkpoint looks the same, so the note says where it ends).
    pub open_end: bool,
    /// Consecutive checkpoints of a run further apart than this (ms) mean
    /// the exporter stopped checkpointing while it ran (`flowscribe verify`
    /// uses twice the 60 s period; None: not checked).
    pub max_checkpoint_gap_ms: Option<u64>,
    /// Streaming (needs `ordered`): once a verified checkpoint signs a
    /// stretch of batches whose seals and records all check out, their
    /// per-record state is released and only a summary stays, so memory is
    /// bounded by the records between two checkpoints, not by the archive.
    /// The report is the same as without it except for lines that touch a
    /// released stretch afterwards (docs/compliance.md lists them): those
    /// always fail.
    pub stream: bool,
}

/// A line of an input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    pub file: u32,
    pub line: u64,
}

/// What a finding says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FindingKind {
    /// Sequence numbers the signed chain has and the archive lacks.
    Missing,
    /// A record whose content or audit fields differ from what was sealed.
    Modified,
    /// A record carrying another sequence number's content, or (ordered
    /// mode) a line out of sequence order.
    Reordered,
    /// A second, different record for a sequence number that has a valid one.
    Inserted,
    /// Records not covered by any verified checkpoint.
    Unsigned,
    /// Unsigned records at the end of a run that crashed.
    UnsignedCrashTail,
    /// A batch's seal record is missing.
    SealMissing,
    /// A checkpoint the numbering (or the next run's gap record) says exists.
    CheckpointMissing,
    /// A checkpoint that names a trusted key with a wrong signature, or whose
    /// signed origin is not the chain it is filed under.
    BadSignature,
    /// Checkpoints signed by no trusted key.
    UnknownKey,
    /// Two different verified checkpoints for one point of a chain.
    Equivocation,
    /// A line that is not JSON, or whose audit fields cannot be read.
    Malformed,
    /// Lines without audit fields.
    Unaudited,
    /// The archive does not start at the chain's first record.
    HeadMissing,
    /// Sequence numbers skipped by a crash (explained by a gap record).
    CrashGap,
    /// The newest run has no stop checkpoint: cut, or still running.
    OpenEnd,
    /// Two consecutive checkpoints further apart than allowed.
    CheckpointLate,
}

impl FindingKind {
    pub fn label(self) -> &'static str {
        match self {
            FindingKind::Missing => "MISSING",
            FindingKind::Modified => "MODIFIED",
            FindingKind::Reordered => "REORDERED",
            FindingKind::Inserted => "INSERTED",
            FindingKind::Unsigned => "UNSIGNED",
            FindingKind::UnsignedCrashTail => "UNSIGNED-CRASH-TAIL",
            FindingKind::SealMissing => "SEAL-MISSING",
            FindingKind::CheckpointMissing => "CHECKPOINT-MISSING",
            FindingKind::BadSignature => "BAD-SIGNATURE",
            FindingKind::UnknownKey => "UNKNOWN-KEY",
            FindingKind::Equivocation => "EQUIVOCATION",
            FindingKind::Malformed => "MALFORMED",
            FindingKind::Unaudited => "UNAUDITED",
            FindingKind::HeadMissing => "HEAD-MISSING",
            FindingKind::CrashGap => "CRASH-GAP",
            FindingKind::OpenEnd => "OPEN-END",
            FindingKind::CheckpointLate => "CHECKPOINT-LATE",
        }
    }
}

/// One finding: a kind, where (chain, view, an inclusive sequence range),
/// why, and the first line involved when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: FindingKind,
    pub chain: Option<(ChainId, String)>,
    pub seqs: Option<(u64, u64)>,
    pub detail: String,
    pub location: Option<Location>,
    /// Counts toward failure (false: informational).
    pub fails: bool,
}

/// Per chain and view: what was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSummary {
    pub chain: ChainId,
    pub view: String,
    pub nodes: BTreeSet<String>,
    pub runs: BTreeSet<u64>,
    pub records: u64,
    pub records_verified: u64,
    pub batches_verified: u64,
    pub checkpoints_verified: u64,
}

/// The verifier's answer.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub files: Vec<String>,
    pub lines: u64,
    pub chains: Vec<ChainSummary>,
    pub findings: Vec<Finding>,
}

impl Report {
    /// Everything verified: no failing finding, and something was checked.
    pub fn ok(&self) -> bool {
        !self.chains.is_empty() && !self.findings.iter().any(|f| f.fails)
    }

    /// Findings of one kind (tests and tools).
    pub fn of_kind(&self, kind: FindingKind) -> Vec<&Finding> {
        self.findings.iter().filter(|f| f.kind == kind).collect()
    }

    /// The human-readable report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.chains {
            let nodes: Vec<&str> = c.nodes.iter().map(String::as_str).collect();
            let runs: Vec<String> = c.runs.iter().map(u64::to_string).collect();
            let _ = writeln!(
                out,
                "chain {} view {} node {}: runs {}; {} records, {} verified in {} batches; {} checkpoints verified",
                chain_hex(&c.chain),
                c.view,
                if nodes.is_empty() {
                    "?".to_string()
                } else {
                    nodes.join(",")
                },
                runs.join(","),
                c.records,
                c.records_verified,
                c.batches_verified,
                c.checkpoints_verified
            );
        }
        for f in &self.findings {
            let seqs = match f.seqs {
                Some((a, b)) if a == b => format!("seq {a}"),
                Some((a, b)) => format!("seq {a}..={b}"),
                None => String::new(),
            };
            let chain = f
                .chain
                .as_ref()
                .map(|(c, v)| format!("{}/{v} ", &chain_hex(c)[..8]))
                .unwrap_or_default();
            let loc = f
                .location
                .map(|l| {
                    let name = self.files.get(l.file as usize).map_or("?", String::as_str);
                    format!(" [{name}:{}]", l.line)
                })
                .unwrap_or_default();
            let mut words: Vec<String> = vec![format!(
                "{}{:<20}",
                if f.fails { "" } else { "note: " },
                f.kind.label()
            )];
            words.extend([chain.trim_end().to_string(), seqs, f.detail.clone()]);
            words.retain(|w| !w.is_empty());
            let _ = writeln!(out, "{}{loc}", words.join(" "));
        }
        let failing = self.findings.iter().filter(|f| f.fails).count();
        if self.ok() {
            let _ = writeln!(out, "OK: {} lines verified", self.lines);
        } else if self.chains.is_empty() {
            let _ = writeln!(out, "FAILED: no audited records found");
        } else {
            let _ = writeln!(out, "FAILED: {failing} findings");
        }
        out
    }
}

/// A data record, reduced to what verification needs.
#[derive(Debug, Clone, Copy)]
struct Rec {
    seq: u64,
    run: u64,
    batch: u64,
    digest: Hash,
    suite: Suite,
    loc: Location,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct SealInfo {
    run: u64,
    batch: u64,
    first_seq: u64,
    count: u64,
    root: Hash,
    prev: Hash,
    /// The head as written in the seal (recomputed, never trusted).
    claimed_head: Hash,
    tags: Vec<u8>,
    suite: Suite,
}

#[derive(Debug, Clone)]
enum CheckpointStatus {
    Verified(Checkpoint),
    Bad(String),
    Unknown(Vec<String>),
    Malformed(String),
}

#[derive(Debug, Clone)]
struct GapInfo {
    previous_run: u64,
    run: u64,
    clean: bool,
    resumed_seq: u64,
    /// (run, number) of the last checkpoint the previous runs persisted.
    previous_checkpoint: Option<(u64, u64)>,
    loc: Location,
}

#[derive(Debug, Default)]
struct ChainData {
    records: Vec<Rec>,
    seals: Vec<(SealInfo, Location)>,
    checkpoints: Vec<(CheckpointStatus, Location)>,
    gaps: Vec<GapInfo>,
    nodes: BTreeSet<String>,
    /// Streaming: per run, the batches already verified and released.
    released: BTreeMap<u64, Released>,
    /// Streaming: records released (they still count in the summary).
    released_records: u64,
    /// Streaming: the end of the highest released sequence range.
    frontier: u64,
    /// Streaming: the first verified checkpoint head per (run, batches).
    signed_points: HashMap<(u64, u64), Hash>,
    /// Streaming: lines that touch a released stretch after its release.
    late: Vec<Late>,
    /// Streaming: the records of the stretch released last (one per seq,
    /// in seq order), so an exact replay of one of them still passes.
    recent: Vec<Rec>,
}

/// A run's first batches, verified against a signed checkpoint and released.
#[derive(Debug, Clone, Copy)]
struct Released {
    /// Batches `0..batches` are released; the checkpoint after them signs `head`.
    batches: u64,
    first_seq: u64,
    end_seq: u64,
    head: Hash,
    records_verified: u64,
}

/// Streaming: a line that arrived after the stretch it belongs to was
/// released, so it cannot be compared with the records any more.
#[derive(Debug, Clone)]
enum Late {
    Record {
        seq: u64,
        run: u64,
        loc: Location,
    },
    Seal {
        run: u64,
        batch: u64,
        seqs: (u64, u64),
        loc: Location,
    },
    Checkpoint {
        run: u64,
        batches: u64,
        loc: Location,
    },
}

type ChainKey = (ChainId, String);

/// The audit fields of a data record the verifier keeps per record (the
/// chain and view are its chain's index).
#[derive(Debug, Clone, Copy)]
struct RecordFields {
    run: u64,
    batch: u64,
    seq: u64,
    suite: Suite,
}

/// The last data record's chain, view and suite as canonical bytes (the
/// suite absent for v1), and what they read as: its chain's index and
/// suite.
#[derive(Debug)]
struct FieldsMemo {
    chain: Vec<u8>,
    view: Vec<u8>,
    suite_raw: Option<Vec<u8>>,
    index: usize,
    suite: Suite,
    /// The last run and batch read through this memo, as written and as
    /// read: they change once per batch, so equal bytes are not read again.
    run: (Vec<u8>, u64),
    batch: (Vec<u8>, u64),
}

/// Feed it lines, then [`Verifier::finish`].
#[derive(Debug)]
pub struct Verifier {
    options: VerifyOptions,
    files: Vec<String>,
    lines: u64,
    chains: Vec<(ChainKey, ChainData)>,
    chain_index: HashMap<ChainKey, usize>,
    /// The chain of the previous line: consecutive lines mostly share it.
    last_chain: Option<usize>,
    findings: Vec<Finding>,
    /// Per file: lines without audit fields, and the first of them.
    unaudited: BTreeMap<u32, (u64, Location)>,
    /// Boxed, so that taking it out per line moves a pointer, not the
    /// canonicaliser (`None` only while a line is being added).
    canon: Option<Box<Canonicalizer>>,
    /// v2 and v3 records whose digests are computed together (chain
    /// index, record index), their canonical forms (v3: hash inputs) back
    /// to back, and where each ends.
    pending: Vec<(usize, usize)>,
    pending_forms: Vec<u8>,
    pending_ends: Vec<usize>,
    digest_batch: DigestBatch,
    splitter: Splitter,
    /// The last data record's chain, view and suite, as read.
    fields_memo: Option<FieldsMemo>,
    /// The last data record's `host.name` (canonical bytes) and chain
    /// index: already in that chain's nodes.
    node_memo: Option<(usize, Vec<u8>)>,
}

/// v2 digests are computed for this many records at once.
const DIGEST_GROUP: usize = 64;

/// Make `canon.form()` the line's canonical form when `canon` (which has
/// just read it) wrote only its v3 parts: read it again without asking for
/// them. False when the line does not read the second time (it did the
/// first).
fn full_form(canon: &mut Canonicalizer, line: &[u8]) -> bool {
    if canon.v3_parts().is_none() {
        return true;
    }
    canon.set_v3_parts(false);
    let read = canon.canonicalize(line).is_ok();
    canon.set_v3_parts(true);
    read
}

/// Find a value by dotted path in a record that may be nested, dotted or
/// flattened (`a.b.c` matches `{"a":{"b":{"c":…}}}`, `{"a.b":{"c":…}}`, …).
fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let Value::Object(map) = v else {
        return None;
    };
    if let Some(found) = map.get(path) {
        return Some(found);
    }
    map.iter().find_map(|(k, child)| {
        path.strip_prefix(k.as_str())
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|rest| lookup(child, rest))
    })
}

fn b64_hash(obj: &Map<String, Value>, key: &'static str) -> Result<Hash, String> {
    let text = get_str(obj, key).map_err(|e| e.to_string())?;
    B64.decode(text)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("flowscribe.audit.{key} is not 32 bytes of base64"))
}

fn parse_seal(obj: &Map<String, Value>) -> Result<SealInfo, String> {
    let e = |e: crate::fields::FieldError| e.to_string();
    let tags = B64
        .decode(get_str(obj, "tags").map_err(e)?)
        .map_err(|_| "flowscribe.audit.tags is not base64".to_string())?;
    let seal = SealInfo {
        run: get_u64(obj, "run").map_err(e)?,
        batch: get_u64(obj, "batch").map_err(e)?,
        first_seq: get_u64(obj, "first_seq").map_err(e)?,
        count: get_u64(obj, "count").map_err(e)?,
        root: b64_hash(obj, "root")?,
        prev: b64_hash(obj, "prev")?,
        claimed_head: b64_hash(obj, "head")?,
        tags,
        suite: match obj.get("suite") {
            None => Suite::V1,
            Some(_) => get_str(obj, "suite")
                .ok()
                .and_then(Suite::from_name)
                .ok_or_else(|| "flowscribe.audit.suite names no known hash suite".to_string())?,
        },
    };
    if seal.count == 0 || seal.tags.len() as u64 != seal.count * TAG_BYTES as u64 {
        return Err(format!(
            "seal of batch {} lists {} tag bytes for {} records",
            seal.batch,
            seal.tags.len(),
            seal.count
        ));
    }
    Ok(seal)
}

fn parse_gap(record: &Value, view: &str, loc: Location) -> Option<GapInfo> {
    let gap = lookup(record, "flowscribe.gap")?;
    let u = |path: &str| lookup(gap, path).and_then(Value::as_u64);
    Some(GapInfo {
        previous_run: u("previous_run")?,
        run: u("run")?,
        clean: lookup(gap, "clean").and_then(Value::as_bool)?,
        resumed_seq: u("resumed_seq")?,
        previous_checkpoint: lookup(gap, "previous_checkpoints")
            .and_then(|p| lookup(p, view))
            .and_then(|c| {
                let field = |k: &str| lookup(c, k).and_then(Value::as_u64);
                // Older gap records name no run: the previous one.
                let run = field("run").filter(|r| *r > 0).or(u("previous_run"))?;
                Some((run, field("number")?))
            }),
        loc,
    })
}

impl Verifier {
    pub fn new(options: VerifyOptions) -> Self {
        Verifier {
            options,
            files: Vec::new(),
            lines: 0,
            chains: Vec::new(),
            chain_index: HashMap::new(),
            last_chain: None,
            findings: Vec::new(),
            unaudited: BTreeMap::new(),
            canon: Some(Box::new(Canonicalizer::with_hints())),
            pending: Vec::new(),
            pending_forms: Vec::new(),
            splitter: Splitter::default(),
            pending_ends: Vec::new(),
            digest_batch: DigestBatch::new(),
            fields_memo: None,
            node_memo: None,
        }
    }

    /// Register an input file; its id goes with each of its lines.
    pub fn add_file(&mut self, name: &str) -> u32 {
        self.files.push(name.to_string());
        u32::try_from(self.files.len() - 1).unwrap_or(u32::MAX)
    }

    fn malformed(&mut self, loc: Location, detail: String) {
        self.findings.push(Finding {
            kind: FindingKind::Malformed,
            chain: None,
            seqs: None,
            detail,
            location: Some(loc),
            fails: true,
        });
    }

    /// One line of a file (1-based line number). Blank lines are skipped.
    pub fn add_line(&mut self, file: u32, line: u64, bytes: &[u8]) {
        let loc = Location { file, line };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        self.lines += 1;
        let mut canon = self
            .canon
            .take()
            .unwrap_or_else(|| Box::new(Canonicalizer::with_hints()));
        // v3's parts rather than the form, while the records are v3.
        canon.set_v3_parts(
            self.fields_memo
                .as_ref()
                .is_some_and(|m| m.suite == Suite::V3),
        );
        self.add_canonicalized(&mut canon, loc, bytes);
        self.canon = Some(canon);
    }

    /// Many lines at once: `chunk` holds whole lines (a last line without
    /// its newline counts as one), the first of them is line `first_line`.
    /// Returns how many lines it held, so a caller reading a file in large
    /// blocks numbers the next block's lines on. The same as calling
    /// [`Verifier::add_line`] per line, without copying each line out.
    pub fn add_lines(&mut self, file: u32, first_line: u64, chunk: &[u8]) -> u64 {
        let mut count = 0;
        let mut start = 0;
        while start < chunk.len() {
            let end = memchr::memchr(b'\n', &chunk[start..]).map_or(chunk.len(), |i| start + i);
            self.add_line(file, first_line + count, &chunk[start..end]);
            count += 1;
            start = end + 1;
        }
        count
    }

    fn add_canonicalized(&mut self, canon: &mut Canonicalizer, loc: Location, bytes: &[u8]) {
        if let Err(e) = canon.canonicalize(bytes) {
            return self.malformed(loc, e.to_string());
        }
        if !canon.has_audit() {
            let entry = self.unaudited.entry(loc.file).or_insert((0, loc));
            entry.0 += 1;
            return;
        }
        let kind = canon.audit_type().and_then(canonical_str);
        if let Some(kind @ ("seal" | "checkpoint")) = kind.as_deref() {
            // Chain records are few: read them through serde_json.
            let seal = kind == "seal";
            let value: Value = match serde_json::from_slice(bytes) {
                Ok(v) => v,
                Err(e) => return self.malformed(loc, format!("not JSON: {e}")),
            };
            if let Some(audit) = audit_object(&value) {
                self.add_chain_record(&audit, seal, loc);
            }
            return;
        }
        // Chain, view and suite mostly repeat from one record to the next:
        // bytes equal to the last record's read as they did then (run,
        // batch and seq are read anew, with the errors `from_canonical`
        // gives for them).
        let [chain_raw, view_raw, run_raw, batch_raw, seq_raw, suite_raw] =
            canon.known_audit_fields();
        let repeated = self.fields_memo.as_mut().filter(|m| {
            chain_raw == Some(&m.chain[..])
                && view_raw == Some(&m.view[..])
                && suite_raw == m.suite_raw.as_deref()
        });
        let (index, fields) = match repeated {
            Some(m) => {
                let u = |v: Option<&[u8]>, name: &'static str| {
                    v.ok_or(FieldError::Missing(name))
                        .and_then(|v| canonical_u64(v).ok_or(FieldError::Invalid(name)))
                };
                // Run and batch: bytes equal to the last ones read as they
                // did (they were valid then).
                let memo_u = |v: Option<&[u8]>,
                              memo: &mut (Vec<u8>, u64),
                              name: &'static str|
                 -> Result<u64, FieldError> {
                    match v {
                        Some(raw) if raw == &memo.0[..] => Ok(memo.1),
                        _ => {
                            let n = u(v, name)?;
                            memo.0.clear();
                            memo.0.extend_from_slice(v.unwrap_or_default());
                            memo.1 = n;
                            Ok(n)
                        }
                    }
                };
                let (index, suite) = (m.index, m.suite);
                let read = memo_u(run_raw, &mut m.run, "run").and_then(|run| {
                    Ok(RecordFields {
                        run,
                        batch: memo_u(batch_raw, &mut m.batch, "batch")?,
                        seq: u(seq_raw, "seq")?,
                        suite,
                    })
                });
                match read {
                    Ok(f) => (index, f),
                    Err(e) => return self.malformed(loc, e.to_string()),
                }
            }
            None => {
                let f = match AuditFieldsRef::from_canonical(canon) {
                    Ok(f) => f,
                    Err(e) => return self.malformed(loc, e.to_string()),
                };
                let index = self.chain_slot(f.chain, &f.view);
                self.fields_memo = Some(FieldsMemo {
                    chain: chain_raw.unwrap_or_default().to_vec(),
                    view: view_raw.unwrap_or_default().to_vec(),
                    suite_raw: suite_raw.map(<[u8]>::to_vec),
                    index,
                    suite: f.suite,
                    run: (run_raw.unwrap_or_default().to_vec(), f.run),
                    batch: (batch_raw.unwrap_or_default().to_vec(), f.batch),
                });
                let f = RecordFields {
                    run: f.run,
                    batch: f.batch,
                    seq: f.seq,
                    suite: f.suite,
                };
                (index, f)
            }
        };
        // Only a v3 record is hashed from v3's parts: any other needs the
        // form.
        if fields.suite != Suite::V3 && !full_form(canon, bytes) {
            return self.malformed(loc, "the line reads differently twice".into());
        }
        self.last_chain = Some(index);
        let gap = if canon.known_leaf(1) == Some(b"\"gap\"") {
            let view = &self.chains[index].0.1;
            serde_json::from_slice::<Value>(bytes)
                .ok()
                .and_then(|v| parse_gap(&v, view, loc))
        } else {
            None
        };
        // The node: a chain's nodes are only ever added to, so the bytes
        // it had in the last record of the same chain are in its set.
        let node_raw = canon.known_leaf(0);
        let node_known = self
            .node_memo
            .as_ref()
            .is_some_and(|(i, raw)| *i == index && node_raw == Some(&raw[..]));
        let node = if node_known {
            None
        } else {
            if let Some(raw) = node_raw {
                self.node_memo = Some((index, raw.to_vec()));
            }
            node_raw.and_then(canonical_str)
        };
        // v1 digests now; v2 and v3 digests in groups (filled in by
        // flush_digests).
        let digest = match fields.suite {
            Suite::V1 => Suite::V1.content_digest(canon.form()),
            Suite::V2 | Suite::V3 => [0; 32],
        };
        let stream = self.options.stream && self.options.ordered;
        let data = &mut self.chains[index].1;
        if let Some(node) = node
            && !data.nodes.contains(node.as_ref())
        {
            data.nodes.insert(node.into_owned());
        }
        data.gaps.extend(gap);
        if stream && fields.seq < data.frontier {
            let digest = match fields.suite {
                Suite::V1 => Suite::V1.content_digest(canon.form()),
                // v2 and v3: the v2 digest of what the suite hashes.
                suite => {
                    let mut hashed = Vec::new();
                    self.splitter.write_hashed_read(suite, canon, &mut hashed);
                    content_digest_v2(&hashed)
                }
            };
            let i = data.recent.partition_point(|r| r.seq < fields.seq);
            if data.recent.get(i).is_some_and(|r| {
                // In another file its place is disorder there (order is
                // checked per file): not a plain replay.
                r.seq == fields.seq
                    && r.loc.file == loc.file
                    && r.digest == digest
                    && r.run == fields.run
                    && r.batch == fields.batch
                    && r.suite == fields.suite
            }) {
                data.released_records += 1;
                return;
            }
            data.late.push(Late::Record {
                seq: fields.seq,
                run: fields.run,
                loc,
            });
            return;
        }
        data.records.push(Rec {
            seq: fields.seq,
            run: fields.run,
            batch: fields.batch,
            digest,
            suite: fields.suite,
            loc,
        });
        if fields.suite != Suite::V1 {
            let record = data.records.len() - 1;
            if let Some(chain) = self.last_chain {
                self.pending.push((chain, record));
                // v3: the hash input, whose v2 digest is the v3 digest.
                self.splitter
                    .write_hashed_read(fields.suite, canon, &mut self.pending_forms);
                self.pending_ends.push(self.pending_forms.len());
                if self.pending.len() == DIGEST_GROUP {
                    self.flush_digests();
                }
            }
        }
    }

    /// Compute the pending v2 and v3 digests and store them in their
    /// records.
    fn flush_digests(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut start = 0;
        let forms: Vec<&[u8]> = self
            .pending_ends
            .iter()
            .map(|&end| {
                let f = &self.pending_forms[start..end];
                start = end;
                f
            })
            .collect();
        let mut digests = Vec::with_capacity(forms.len());
        self.digest_batch.digests(&forms, &mut digests);
        for (&(chain, record), d) in self.pending.iter().zip(&digests) {
            self.chains[chain].1.records[record].digest = *d;
        }
        self.pending.clear();
        self.pending_forms.clear();
        self.pending_ends.clear();
    }

    /// The data of a chain and view (the last one used is found first,
    /// without allocating).
    fn chain_data(&mut self, chain: ChainId, view: &str) -> &mut ChainData {
        let idx = self.chain_slot(chain, view);
        &mut self.chains[idx].1
    }

    /// The index of a chain and view in `chains` (added if new); it
    /// becomes the last chain used.
    fn chain_slot(&mut self, chain: ChainId, view: &str) -> usize {
        let idx = match self.last_chain {
            Some(i) if self.chains[i].0.0 == chain && self.chains[i].0.1 == view => i,
            _ => {
                let key = (chain, view.to_string());
                let next = self.chains.len();
                let i = *self.chain_index.entry(key.clone()).or_insert(next);
                if i == next {
                    self.chains.push((key, ChainData::default()));
                }
                i
            }
        };
        self.last_chain = Some(idx);
        idx
    }

    fn add_chain_record(&mut self, audit: &Map<String, Value>, seal: bool, loc: Location) {
        let chain = match get_chain(audit) {
            Ok(c) => c,
            Err(e) => return self.malformed(loc, e.to_string()),
        };
        let view = match get_str(audit, "view") {
            Ok(v) => v.to_string(),
            Err(e) => return self.malformed(loc, e.to_string()),
        };
        if seal {
            match parse_seal(audit) {
                Ok(seal) => {
                    let data = self.chain_data(chain, &view);
                    if let Ok(node) = get_str(audit, "node") {
                        data.nodes.insert(node.to_string());
                    }
                    if data
                        .released
                        .get(&seal.run)
                        .is_some_and(|r| seal.batch < r.batches)
                        || seal.first_seq < data.frontier
                    {
                        // A released batch's seal is not kept; one whose
                        // seqs reach into a released stretch is kept (its
                        // batch is checked as usual) and noted.
                        let released = data
                            .released
                            .get(&seal.run)
                            .is_some_and(|r| seal.batch < r.batches);
                        data.late.push(Late::Seal {
                            run: seal.run,
                            batch: seal.batch,
                            seqs: (
                                seal.first_seq,
                                seal.first_seq + seal.count.saturating_sub(1),
                            ),
                            loc,
                        });
                        if released {
                            return;
                        }
                    }
                    data.seals.push((seal, loc));
                }
                Err(e) => self.malformed(loc, e),
            }
            return;
        }
        let status = match get_str(audit, "note") {
            Err(e) => CheckpointStatus::Malformed(e.to_string()),
            Ok(text) => match SignedNote::parse(text) {
                Err(e) => CheckpointStatus::Malformed(e.to_string()),
                Ok(note) => match note.check(&self.options.trusted) {
                    NoteCheck::Verified { .. } => match Checkpoint::parse_body(&note.body) {
                        Ok(cp) => CheckpointStatus::Verified(cp),
                        Err(e) => CheckpointStatus::Malformed(e.to_string()),
                    },
                    NoteCheck::BadSignature { key } => CheckpointStatus::Bad(format!(
                        "signature by trusted key {key} does not verify"
                    )),
                    NoteCheck::UnknownKey { signers } => CheckpointStatus::Unknown(signers),
                },
            },
        };
        let stream = self.options.stream && self.options.ordered;
        let origin = Checkpoint::origin_for(&chain_hex(&chain), &view);
        let data = self.chain_data(chain, &view);
        if let Ok(node) = get_str(audit, "node") {
            data.nodes.insert(node.to_string());
        }
        let point = match &status {
            CheckpointStatus::Verified(cp) if stream && cp.origin == origin => {
                Some((cp.run, cp.batches, cp.head))
            }
            _ => None,
        };
        data.checkpoints.push((status, loc));
        let Some((run, batches, head)) = point else {
            return;
        };
        let known = data.signed_points.get(&(run, batches)).copied();
        if known.is_none() {
            data.signed_points.insert((run, batches), head);
        }
        if let Some(r) = data.released.get(&run)
            && batches <= r.batches
        {
            // A new point inside a released stretch cannot be compared with
            // its batch any more (a repeat was; a different one is an
            // equivocation, reported at the end).
            if known.is_none() {
                data.late.push(Late::Checkpoint { run, batches, loc });
            }
            return;
        }
        if known.is_none_or(|k| k == head) {
            self.release(run, batches, head);
        }
    }

    /// Streaming: release the batches of `run` up to `batches` (exclusive)
    /// when everything about them verifies against the signed `head` and
    /// no retained line could change that verdict. Otherwise keep them; the
    /// final check then sees them as without streaming.
    fn release(&mut self, run: u64, batches: u64, head: Hash) {
        self.flush_digests();
        let Some(idx) = self.last_chain else { return };
        let (key, data) = &mut self.chains[idx];
        let prior = data.released.get(&run).copied();
        let start = prior.map_or(0, |r| r.batches);
        if batches <= start {
            return;
        }
        // One seal per batch of the stretch, linked from one to the next
        // and ending in the signed head.
        let mut seals: Vec<Option<usize>> = vec![None; (batches - start) as usize];
        for (i, (s, _)) in data.seals.iter().enumerate() {
            if s.run == run && (start..batches).contains(&s.batch) {
                let slot = &mut seals[(s.batch - start) as usize];
                match slot {
                    // An exact replay of the seal is the same seal.
                    Some(j) if data.seals[*j].0 == *s => {}
                    Some(_) => return,
                    None => *slot = Some(i),
                }
            }
        }
        let Some(seals) = seals.into_iter().collect::<Option<Vec<usize>>>() else {
            return;
        };
        let mut expected = head;
        for &i in seals.iter().rev() {
            let s = &data.seals[i].0;
            let h = s.suite.batch_head(HeadInput {
                prev: &s.prev,
                chain: &key.0,
                view: &key.1,
                run,
                batch: s.batch,
                first_seq: s.first_seq,
                count: s.count,
                root: &s.root,
                tags: &s.tags,
            });
            let signed = data.signed_points.get(&(run, s.batch + 1));
            if h != expected || h != s.claimed_head || signed.is_some_and(|c| *c != h) {
                return;
            }
            expected = s.prev;
        }
        let (lo, hi) = {
            let first = &data.seals[seals[0]].0;
            let last = &data.seals[seals[seals.len() - 1]].0;
            (first.first_seq, last.first_seq + last.count)
        };
        if prior.is_some_and(|p| p.end_seq != lo) || lo < data.frontier {
            return;
        }
        // The records: one contiguous block of the retained ones, in
        // sequence order, every sealed seq once (exact replays aside), and
        // no retained record before it above `lo` or after it below `hi`.
        let in_stretch = |r: &Rec| r.run == run && (start..batches).contains(&r.batch);
        let Some(begin) = data.records.iter().position(in_stretch) else {
            return;
        };
        let len = data.records[begin..]
            .iter()
            .take_while(|r| in_stretch(r))
            .count();
        let end = begin + len;
        if data.records[..begin].iter().any(|r| r.seq >= lo)
            || data.records[end..]
                .iter()
                .any(|r| r.seq < hi || in_stretch(r))
        {
            return;
        }
        let block = &data.records[begin..end];
        let mut at = 0;
        let mut verified = 0;
        for &i in &seals {
            let s = &data.seals[i].0;
            let mut digests = Vec::with_capacity(s.count as usize);
            for (k, tag) in s.tags.chunks_exact(TAG_BYTES).enumerate() {
                let seq = s.first_seq + k as u64;
                let Some(r) = block.get(at) else { return };
                if r.seq != seq
                    || r.batch != s.batch
                    || r.suite != s.suite
                    || &r.digest[..TAG_BYTES] != tag
                {
                    return;
                }
                digests.push(r.digest);
                at += 1;
                // Exact replays of this record.
                while let Some(d) = block.get(at)
                    && d.seq == seq
                {
                    if d.digest != r.digest || d.batch != r.batch || d.suite != r.suite {
                        return;
                    }
                    at += 1;
                }
            }
            let position = BatchPosition {
                chain: &key.0,
                view: &key.1,
                run,
                batch: s.batch,
                first_seq: s.first_seq,
            };
            if s.suite.batch_root(position, &digests) != s.root {
                return;
            }
            verified += s.count;
        }
        if at != block.len() {
            return;
        }
        data.recent.clear();
        for r in data.records.drain(begin..end) {
            if data.recent.last().is_none_or(|l| l.seq != r.seq) {
                data.recent.push(r);
            }
        }
        data.released_records += len as u64;
        data.seals
            .retain(|(s, _)| !(s.run == run && (start..batches).contains(&s.batch)));
        data.frontier = hi;
        data.released.insert(
            run,
            Released {
                batches,
                first_seq: prior.map_or(lo, |p| p.first_seq),
                end_seq: hi,
                head,
                records_verified: prior.map_or(0, |p| p.records_verified) + verified,
            },
        );
    }

    /// Records held: for the final check, and (streaming) those of the
    /// stretch released last, kept to recognise replays. Streaming releases
    /// verified stretches; without it, every record of the archive stays.
    pub fn retained_records(&self) -> usize {
        self.chains
            .iter()
            .map(|(_, d)| d.records.len() + d.recent.len())
            .sum()
    }

    /// v3 records read as their parts alone: a connection's record whose
    /// stable leaves repeat its last one's (see
    /// `Canonicalizer::set_v3_parts`; tests and tools).
    pub fn v3_part_hits(&self) -> u64 {
        self.canon.as_ref().map_or(0, |c| c.v3_part_hits())
    }

    /// Check everything fed so far.
    pub fn finish(mut self) -> Report {
        self.flush_digests();
        let mut chains = Vec::new();
        let mut all = std::mem::take(&mut self.chains);
        all.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, data) in all {
            let mut check = ChainCheck::new(&key, &self.options);
            let summary = check.run(data);
            chains.push(summary);
            self.findings.extend(check.into_findings());
        }
        for (file, (count, first)) in &self.unaudited {
            let _ = file;
            self.findings.push(Finding {
                kind: FindingKind::Unaudited,
                chain: None,
                seqs: None,
                detail: format!("{count} lines without flowscribe.audit fields"),
                location: Some(*first),
                fails: true,
            });
        }
        Report {
            files: self.files,
            lines: self.lines,
            chains,
            findings: self.findings,
        }
    }
}

/// One batch as the verifier reconstructs it.
#[derive(Debug, Clone)]
struct BatchView {
    first_seq: u64,
    count: u64,
    root: Hash,
    prev: Hash,
    head: Hash,
    tags: Vec<u8>,
    suite: Suite,
    from_seal: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BatchStatus {
    Authenticated,
    Failed,
    Unsigned,
}

/// Per-seq finding before ranges are merged.
#[derive(Debug, Clone)]
struct Point {
    kind: FindingKind,
    seq: u64,
    detail: String,
    loc: Option<Location>,
    fails: bool,
}

struct ChainCheck<'a> {
    chain: ChainId,
    view: String,
    options: &'a VerifyOptions,
    points: Vec<Point>,
    findings: Vec<Finding>,
}

impl<'a> ChainCheck<'a> {
    fn new(key: &ChainKey, options: &'a VerifyOptions) -> Self {
        ChainCheck {
            chain: key.0,
            view: key.1.clone(),
            options,
            points: Vec::new(),
            findings: Vec::new(),
        }
    }

    fn finding(
        &mut self,
        kind: FindingKind,
        seqs: Option<(u64, u64)>,
        detail: String,
        location: Option<Location>,
    ) {
        self.findings.push(Finding {
            kind,
            chain: Some((self.chain, self.view.clone())),
            seqs,
            detail,
            location,
            fails: match kind {
                FindingKind::CrashGap => false,
                FindingKind::OpenEnd => !self.options.open_end,
                _ => true,
            },
        });
    }

    fn point(&mut self, kind: FindingKind, seq: u64, detail: String, loc: Option<Location>) {
        let fails = match kind {
            FindingKind::CrashGap => false,
            FindingKind::UnsignedCrashTail => !self.options.accept_crash_tail,
            _ => true,
        };
        self.points.push(Point {
            kind,
            seq,
            detail,
            loc,
            fails,
        });
    }

    /// Per-seq points merged into ranges (same kind and detail, consecutive).
    fn into_findings(mut self) -> Vec<Finding> {
        self.points
            .sort_by(|a, b| (a.kind, &a.detail, a.seq).cmp(&(b.kind, &b.detail, b.seq)));
        let mut merged: Vec<Finding> = Vec::new();
        for p in self.points {
            if let Some(last) = merged.last_mut()
                && last.kind == p.kind
                && last.detail == p.detail
                && let Some((a, b)) = last.seqs
                && (b == p.seq || b + 1 == p.seq)
            {
                last.seqs = Some((a, p.seq));
                continue;
            }
            merged.push(Finding {
                kind: p.kind,
                chain: Some((self.chain, self.view.clone())),
                seqs: Some((p.seq, p.seq)),
                detail: p.detail,
                location: p.loc,
                fails: p.fails,
            });
        }
        self.findings.extend(merged);
        self.findings
            .sort_by(|a, b| (a.seqs.map(|s| s.0), a.kind).cmp(&(b.seqs.map(|s| s.0), b.kind)));
        self.findings
    }

    fn run(&mut self, mut data: ChainData) -> ChainSummary {
        let mut summary = ChainSummary {
            chain: self.chain,
            view: self.view.clone(),
            nodes: std::mem::take(&mut data.nodes),
            runs: BTreeSet::new(),
            records: data.records.len() as u64
                + data.released_records
                + data
                    .late
                    .iter()
                    .filter(|l| matches!(l, Late::Record { .. }))
                    .count() as u64,
            records_verified: 0,
            batches_verified: 0,
            checkpoints_verified: 0,
        };
        // Explicitly (seq, file, line): check_line_order relies on the
        // lines of one file with one seq being neighbours.
        data.records
            .sort_unstable_by_key(|r| (r.seq, r.loc.file, r.loc.line));
        if self.options.ordered {
            self.check_line_order(&data.records);
        }

        // 1. Checkpoints.
        let origin = Checkpoint::origin_for(&chain_hex(&self.chain), &self.view);
        let mut signed: BTreeMap<(u64, u64), (Checkpoint, Location)> = BTreeMap::new();
        let mut unknown: Option<(u64, Vec<String>, Location)> = None;
        for (status, loc) in &data.checkpoints {
            match status {
                CheckpointStatus::Verified(cp) if cp.origin != origin => self.finding(
                    FindingKind::BadSignature,
                    None,
                    format!(
                        "checkpoint signed for origin {} filed under {origin}",
                        cp.origin
                    ),
                    Some(*loc),
                ),
                CheckpointStatus::Verified(cp) => match signed.get(&(cp.run, cp.batches)) {
                    Some((other, _)) if other.head != cp.head || other.size != cp.size => self
                        .finding(
                            FindingKind::Equivocation,
                            None,
                            format!(
                                "two signed checkpoints for run {} after {} batches disagree",
                                cp.run, cp.batches
                            ),
                            Some(*loc),
                        ),
                    _ => {
                        let entry = signed
                            .entry((cp.run, cp.batches))
                            .or_insert_with(|| (cp.clone(), *loc));
                        // An idle run's stop checkpoint repeats the point of
                        // the one before it.
                        entry.0.stop |= cp.stop;
                    }
                },
                CheckpointStatus::Bad(why) => {
                    self.finding(FindingKind::BadSignature, None, why.clone(), Some(*loc))
                }
                CheckpointStatus::Malformed(why) => self.finding(
                    FindingKind::Malformed,
                    None,
                    format!("checkpoint: {why}"),
                    Some(*loc),
                ),
                CheckpointStatus::Unknown(signers) => {
                    let u = unknown.get_or_insert((0, signers.clone(), *loc));
                    u.0 += 1;
                }
            }
        }
        if let Some((n, signers, loc)) = unknown {
            self.finding(
                FindingKind::UnknownKey,
                None,
                format!(
                    "{n} checkpoints signed only by keys not given with --key ({})",
                    signers.join(", ")
                ),
                Some(loc),
            );
        }
        // Checkpoint numbers per run must have no holes (several checkpoints
        // may share one point of the chain when idle, so count numbers).
        let mut numbers: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
        for (status, _) in &data.checkpoints {
            if let CheckpointStatus::Verified(cp) = status
                && cp.origin == origin
            {
                numbers.entry(cp.run).or_default().insert(cp.number);
            }
        }
        summary.checkpoints_verified = numbers.values().map(|s| s.len() as u64).sum();
        if let Some(max_gap) = self.options.max_checkpoint_gap_ms {
            let mut times: BTreeMap<(u64, u64), u64> = BTreeMap::new();
            for (status, _) in &data.checkpoints {
                if let CheckpointStatus::Verified(cp) = status
                    && cp.origin == origin
                {
                    times.insert((cp.run, cp.number), cp.time_unix_ms);
                }
            }
            let late: Vec<(u64, u64, u64)> = times
                .iter()
                .zip(times.iter().skip(1))
                .filter(|((a, _), (b, _))| a.0 == b.0 && a.1 + 1 == b.1)
                .filter_map(|((a, ta), (_, tb))| {
                    let gap = tb.saturating_sub(*ta);
                    (gap > max_gap).then_some((a.0, a.1, gap))
                })
                .collect();
            for (run, n, gap) in late {
                self.finding(
                    FindingKind::CheckpointLate,
                    None,
                    format!(
                        "run {run}: checkpoints #{n} and #{} are {} s apart (more than {} s): the exporter was not checkpointing",
                        n + 1,
                        gap / 1000,
                        max_gap / 1000
                    ),
                    None,
                );
            }
        }
        for (run, nums) in &numbers {
            let max = nums.iter().next_back().copied().unwrap_or(0);
            let missing: Vec<u64> = (0..max).filter(|n| !nums.contains(n)).collect();
            for n in missing {
                self.finding(
                    FindingKind::CheckpointMissing,
                    None,
                    format!("run {run} checkpoint #{n} is not in the archive (#{max} is)"),
                    None,
                );
            }
        }

        // 2. Seals, one per (run, batch).
        let mut seals: BTreeMap<(u64, u64), SealInfo> = BTreeMap::new();
        for (seal, loc) in std::mem::take(&mut data.seals) {
            match seals.get(&(seal.run, seal.batch)) {
                Some(existing) if *existing != seal => self.finding(
                    FindingKind::Inserted,
                    Some((
                        seal.first_seq,
                        seal.first_seq + seal.count.saturating_sub(1),
                    )),
                    format!(
                        "a second, different seal for run {} batch {}",
                        seal.run, seal.batch
                    ),
                    Some(loc),
                ),
                Some(_) => {}
                None => {
                    seals.insert((seal.run, seal.batch), seal);
                }
            }
        }

        // Records grouped by the batch they claim.
        // Consecutive records (in seq order) mostly claim one batch: each
        // stretch goes into the map at once, in order.
        let mut claimed: BTreeMap<(u64, u64), Vec<usize>> = BTreeMap::new();
        let mut stretch = 0;
        for i in 1..=data.records.len() {
            let key = |r: &Rec| (r.run, r.batch);
            if data.records.get(i).map(key) != Some(key(&data.records[stretch])) {
                claimed
                    .entry(key(&data.records[stretch]))
                    .or_default()
                    .extend(stretch..i);
                stretch = i;
            }
        }
        let mut runs: BTreeSet<u64> = seals.keys().map(|k| k.0).collect();
        runs.extend(claimed.keys().map(|k| k.0));
        runs.extend(signed.keys().map(|k| k.0));
        runs.extend(data.late.iter().filter_map(|l| match l {
            Late::Record { run, .. } => Some(*run),
            _ => None,
        }));
        summary.runs = runs.clone();

        let mut accounted = vec![false; data.records.len()];
        let mut auth_tags: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut mismatched: Vec<(usize, u64)> = Vec::new();
        // Per run: the seq range its authenticated batches and signed
        // checkpoints cover, and whether it has any data at all.
        let mut run_first: BTreeMap<u64, u64> = BTreeMap::new();
        let mut run_end: BTreeMap<u64, u64> = BTreeMap::new();

        for &run in &runs {
            let max_batch = seals
                .range((run, 0)..=(run, u64::MAX))
                .map(|(k, _)| k.1)
                .chain(claimed.range((run, 0)..=(run, u64::MAX)).map(|(k, _)| k.1))
                .chain(
                    signed
                        .range((run, 0)..=(run, u64::MAX))
                        .filter(|(k, _)| k.1 > 0)
                        .map(|(k, _)| k.1 - 1),
                )
                .max();
            if let Some((cp, _)) = signed.get(&(run, 0)) {
                run_first.insert(run, cp.size);
                run_end.insert(run, cp.size);
            }
            // Streaming: the batches released while reading verified.
            let released = data.released.get(&run).copied();
            let start = released.map_or(0, |r| r.batches);
            if let Some(r) = released {
                run_first.entry(run).or_insert(r.first_seq);
                let end = run_end.entry(run).or_insert(0);
                *end = (*end).max(r.end_seq);
                summary.batches_verified += r.batches;
                summary.records_verified += r.records_verified;
            }
            let Some(max_batch) = max_batch.filter(|m| *m >= start) else {
                continue;
            };
            // Forward: every batch's head from its seal or its records.
            let mut views: Vec<Option<BatchView>> = Vec::new();
            let mut prev_head: Option<Hash> = match released {
                Some(r) => Some(r.head),
                None => signed.get(&(run, 0)).map(|(cp, _)| cp.head),
            };
            for b in start..=max_batch {
                let view = match seals.get(&(run, b)) {
                    Some(s) => {
                        let v = self.view_from_seal(run, b, s);
                        if v.head != s.claimed_head {
                            self.finding(
                                FindingKind::Modified,
                                Some((s.first_seq, s.first_seq + s.count.saturating_sub(1))),
                                format!("run {run} batch {b}: the seal's head field was altered"),
                                None,
                            );
                        }
                        Some(v)
                    }
                    None => prev_head.and_then(|prev| {
                        self.view_from_records(run, b, prev, &data.records, claimed.get(&(run, b)))
                    }),
                };
                prev_head = view.as_ref().map(|v| v.head);
                views.push(view);
            }
            // Backward from every signed head.
            let mut status = vec![BatchStatus::Unsigned; views.len()];
            let mut expected: Option<Hash> = None;
            for b in (0..views.len()).rev() {
                if let Some((cp, _)) = signed.get(&(run, start + b as u64 + 1)) {
                    expected = Some(cp.head);
                }
                match (expected, &views[b]) {
                    (Some(h), Some(v)) if v.head == h => {
                        status[b] = BatchStatus::Authenticated;
                        expected = Some(v.prev);
                    }
                    (Some(_), _) => {
                        status[b] = BatchStatus::Failed;
                        expected = None;
                    }
                    (None, _) => {}
                }
            }
            // The end of each batch's range, to bound a batch that is gone.
            let range_of = |b: usize| views[b].as_ref().map(|v| (v.first_seq, v.count));
            for b in 0..views.len() {
                let batch = start + b as u64;
                match status[b] {
                    BatchStatus::Authenticated => {
                        let Some(v) = views[b].clone() else { continue };
                        if !v.from_seal {
                            self.finding(
                                FindingKind::SealMissing,
                                Some((v.first_seq, v.first_seq + v.count - 1)),
                                format!(
                                    "run {run} batch {batch}: seal record missing (its records still match the signed chain)"
                                ),
                                None,
                            );
                        }
                        summary.batches_verified += 1;
                        summary.records_verified += self.check_batch(
                            run,
                            batch,
                            &v,
                            &data.records,
                            &mut accounted,
                            &mut mismatched,
                        );
                        auth_tags.push((v.first_seq, v.tags.clone()));
                        run_first.entry(run).or_insert(v.first_seq);
                        let end = run_end.entry(run).or_insert(0);
                        *end = (*end).max(v.first_seq + v.count);
                    }
                    BatchStatus::Failed => {
                        // The range: the seal's claim, else between neighbours.
                        let lo = range_of(b).map(|r| r.0).or_else(|| match b.checked_sub(1) {
                            Some(p) => range_of(p).map(|(f, c)| f + c),
                            None => released.map(|r| r.end_seq),
                        });
                        let hi = range_of(b).map(|(f, c)| f + c).or_else(|| {
                            views
                                .get(b + 1)
                                .and_then(|v| v.as_ref())
                                .map(|v| v.first_seq)
                        });
                        let (Some(lo), Some(hi)) = (lo, hi) else {
                            self.finding(
                                FindingKind::Modified,
                                None,
                                format!("run {run} batch {batch} does not match the signed chain"),
                                None,
                            );
                            continue;
                        };
                        if seals.contains_key(&(run, batch)) {
                            for seq in lo..hi {
                                let loc =
                                    first_record(&data.records, seq).map(|i| data.records[i].loc);
                                self.point(
                                    FindingKind::Modified,
                                    seq,
                                    format!("run {run} batch {batch}: seal or records altered (does not match the signed chain)"),
                                    loc,
                                );
                            }
                        } else {
                            self.finding(
                                FindingKind::SealMissing,
                                (hi > lo).then(|| (lo, hi - 1)),
                                format!("run {run} batch {batch}: seal record missing and its records do not match the signed chain"),
                                None,
                            );
                            for seq in lo..hi {
                                match first_record(&data.records, seq) {
                                    None => self.point(
                                        FindingKind::Missing,
                                        seq,
                                        format!("run {run}"),
                                        None,
                                    ),
                                    Some(i) => self.point(
                                        FindingKind::Modified,
                                        seq,
                                        format!(
                                            "run {run} batch {batch}: unverifiable without its seal"
                                        ),
                                        Some(data.records[i].loc),
                                    ),
                                }
                            }
                        }
                        for seq in lo..hi {
                            for i in records_at(&data.records, seq) {
                                accounted[i] = true;
                            }
                        }
                        let end = run_end.entry(run).or_insert(0);
                        *end = (*end).max(hi);
                    }
                    BatchStatus::Unsigned => {
                        // Sealed but unsigned: the missing ones are missing
                        // all the same (the present ones are unsigned, below).
                        if let Some(v) = &views[b]
                            && v.from_seal
                        {
                            for seq in v.first_seq..v.first_seq + v.count {
                                if first_record(&data.records, seq).is_none() {
                                    self.point(
                                        FindingKind::Missing,
                                        seq,
                                        format!("run {run} (unsigned batch)"),
                                        None,
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }

        // Streaming: lines that came after their stretch was released.
        for late in std::mem::take(&mut data.late) {
            match late {
                Late::Record { seq, loc, .. } => self.point(
                    FindingKind::Reordered,
                    seq,
                    "line out of sequence order in its file, after its batch was verified and released (--stream cannot compare it)".to_string(),
                    Some(loc),
                ),
                Late::Seal { run, batch, seqs, loc } => self.finding(
                    FindingKind::Inserted,
                    Some(seqs),
                    format!("a seal for run {run} batch {batch} after that batch or these seqs were verified and released (--stream cannot compare it)"),
                    Some(loc),
                ),
                Late::Checkpoint { run, batches, loc } => self.finding(
                    FindingKind::Reordered,
                    None,
                    format!("checkpoint of run {run} after {batches} batches arrived after those batches were released (--stream cannot check its head)"),
                    Some(loc),
                ),
            }
        }

        // Records whose content matches no tag at their seq: moved or changed.
        if !mismatched.is_empty() {
            let mut by_tag: HashMap<[u8; TAG_BYTES], u64> = HashMap::new();
            for (first, tags) in &auth_tags {
                for (i, t) in tags.chunks_exact(TAG_BYTES).enumerate() {
                    let mut k = [0u8; TAG_BYTES];
                    k.copy_from_slice(t);
                    by_tag.insert(k, first + i as u64);
                }
            }
            for (i, seq) in mismatched {
                let r = data.records[i];
                let mut k = [0u8; TAG_BYTES];
                k.copy_from_slice(&r.digest[..TAG_BYTES]);
                match by_tag.get(&k) {
                    Some(&other) if other != seq => self.point(
                        FindingKind::Reordered,
                        seq,
                        format!("carries the content of seq {other}"),
                        Some(r.loc),
                    ),
                    _ => self.point(
                        FindingKind::Modified,
                        seq,
                        "content differs from what was sealed".to_string(),
                        Some(r.loc),
                    ),
                }
            }
        }

        // Runs and what lies between them.
        let crashed: BTreeSet<u64> = data
            .gaps
            .iter()
            .filter(|g| !g.clean)
            .map(|g| g.previous_run)
            .collect();
        let gap_by_run: BTreeMap<u64, &GapInfo> = data.gaps.iter().map(|g| (g.run, g)).collect();
        let run_list: Vec<u64> = runs.iter().copied().collect();
        if let Some(&first_run) = run_list.first()
            && !self.options.partial
        {
            let start = run_first.get(&first_run).copied().unwrap_or(0);
            if first_run != 1 || start != 0 {
                self.finding(
                    FindingKind::HeadMissing,
                    (start > 0).then(|| (0, start - 1)),
                    format!(
                        "the archive starts at run {first_run} seq {start}; what came before is not in it (use --partial for a slice)"
                    ),
                    None,
                );
            }
        }
        for (i, &run) in run_list.iter().enumerate() {
            let Some(gap) = gap_by_run.get(&run) else {
                continue;
            };
            let prev_run = gap.previous_run;
            let prev_end = run_end.get(&prev_run).copied();
            if prev_end.is_none() && (i > 0 || !self.options.partial) {
                self.finding(
                    FindingKind::Missing,
                    None,
                    format!(
                        "run {prev_run} (named by run {run}'s gap record) has no signed data in the archive"
                    ),
                    Some(gap.loc),
                );
            }
            if let Some((cp_run, n)) = gap.previous_checkpoint
                && run_end.contains_key(&cp_run)
                && !numbers.get(&cp_run).is_some_and(|s| s.contains(&n))
            {
                self.finding(
                    FindingKind::CheckpointMissing,
                    None,
                    format!(
                        "run {cp_run} checkpoint #{n}, named by run {run}'s gap record, is not in the archive"
                    ),
                    Some(gap.loc),
                );
            }
            if let Some(end) = prev_end {
                for seq in end..gap.resumed_seq {
                    if first_record(&data.records, seq).is_some() {
                        continue; // unsigned records, reported below
                    }
                    if gap.clean {
                        self.point(
                            FindingKind::Missing,
                            seq,
                            format!("run {prev_run} stopped cleanly after this seq, but its signed records end earlier"),
                            None,
                        );
                    } else {
                        self.point(
                            FindingKind::CrashGap,
                            seq,
                            format!("not issued or lost when run {prev_run} crashed (gap record of run {run})"),
                            Some(gap.loc),
                        );
                    }
                }
            }
        }

        // The newest run must have ended with its stop checkpoint.
        if let Some(&last_run) = run_list.last() {
            let stopped = signed
                .range((last_run, 0)..=(last_run, u64::MAX))
                .any(|(_, (cp, _))| cp.stop);
            if !stopped {
                let end = run_end.get(&last_run).copied().unwrap_or(0);
                self.finding(
                    FindingKind::OpenEnd,
                    None,
                    format!(
                        "run {last_run} has no stop checkpoint: the signed archive ends before seq {end}; it was cut there, or the node is still running (--open-end)"
                    ),
                    None,
                );
            }
        }

        // Whatever no authenticated batch covered.
        for (i, r) in data.records.iter().enumerate() {
            if accounted[i] {
                continue;
            }
            let tail =
                crashed.contains(&r.run) && run_end.get(&r.run).is_none_or(|end| r.seq >= *end);
            let (kind, detail) = if tail {
                (
                    FindingKind::UnsignedCrashTail,
                    format!(
                        "run {}: after its last signed checkpoint; the run crashed",
                        r.run
                    ),
                )
            } else {
                (
                    FindingKind::Unsigned,
                    format!("run {}: not covered by a verified checkpoint", r.run),
                )
            };
            self.point(kind, r.seq, detail, Some(r.loc));
        }
        summary
    }

    fn view_from_seal(&self, run: u64, batch: u64, s: &SealInfo) -> BatchView {
        let head = s.suite.batch_head(HeadInput {
            prev: &s.prev,
            chain: &self.chain,
            view: &self.view,
            run,
            batch,
            first_seq: s.first_seq,
            count: s.count,
            root: &s.root,
            tags: &s.tags,
        });
        BatchView {
            first_seq: s.first_seq,
            count: s.count,
            root: s.root,
            prev: s.prev,
            head,
            tags: s.tags.clone(),
            suite: s.suite,
            from_seal: true,
        }
    }

    /// Rebuild a batch whose seal is gone from the records that claim it.
    fn view_from_records(
        &self,
        run: u64,
        batch: u64,
        prev: Hash,
        records: &[Rec],
        members: Option<&Vec<usize>>,
    ) -> Option<BatchView> {
        let members = members?;
        let mut picked: Vec<&Rec> = Vec::new();
        for &i in members {
            let r = &records[i];
            match picked.last() {
                Some(last) if last.seq == r.seq && last.digest == r.digest => {}
                Some(last) if last.seq == r.seq => return None,
                _ => picked.push(r),
            }
        }
        let first_seq = picked.first()?.seq;
        let count = picked.len() as u64;
        if picked.last()?.seq != first_seq + count - 1 {
            return None;
        }
        // One suite per batch: records that disagree cannot rebuild it.
        let suite = picked.first()?.suite;
        if picked.iter().any(|r| r.suite != suite) {
            return None;
        }
        let mut tags = Vec::with_capacity(picked.len() * TAG_BYTES);
        let digests: Vec<Hash> = picked
            .iter()
            .map(|r| {
                tags.extend_from_slice(&r.digest[..TAG_BYTES]);
                r.digest
            })
            .collect();
        let root = suite.batch_root(
            BatchPosition {
                chain: &self.chain,
                view: &self.view,
                run,
                batch,
                first_seq,
            },
            &digests,
        );
        let head = suite.batch_head(HeadInput {
            prev: &prev,
            chain: &self.chain,
            view: &self.view,
            run,
            batch,
            first_seq,
            count,
            root: &root,
            tags: &tags,
        });
        Some(BatchView {
            first_seq,
            count,
            root,
            prev,
            head,
            tags,
            suite,
            from_seal: false,
        })
    }

    /// Check the records of an authenticated batch; returns how many verified.
    fn check_batch(
        &mut self,
        run: u64,
        batch: u64,
        v: &BatchView,
        records: &[Rec],
        accounted: &mut [bool],
        mismatched: &mut Vec<(usize, u64)>,
    ) -> u64 {
        let mut digests = Vec::with_capacity(v.count as usize);
        let mut complete = true;
        let mut verified = 0;
        // The batch's seqs are consecutive and `records` is sorted by seq:
        // one search for the first, then each range starts where the last
        // one ended (`records_at` for each, without a search per seq).
        let mut cursor = records.partition_point(|r| r.seq < v.first_seq);
        for (i, tag) in v.tags.chunks_exact(TAG_BYTES).enumerate() {
            let seq = v.first_seq + i as u64;
            // The records with this seq: contiguous, as records are sorted.
            let start = cursor + records[cursor..].iter().take_while(|r| r.seq < seq).count();
            let len = records[start..].iter().take_while(|r| r.seq == seq).count();
            let at = start..start + len;
            cursor = at.end;
            let good = at.clone().find(|&j| {
                let r = &records[j];
                &r.digest[..TAG_BYTES] == tag
                    && r.run == run
                    && r.batch == batch
                    && r.suite == v.suite
            });
            for j in at.clone() {
                accounted[j] = true;
            }
            match good {
                None if at.is_empty() => {
                    complete = false;
                    self.point(FindingKind::Missing, seq, format!("run {run}"), None);
                }
                None => {
                    complete = false;
                    for j in at.clone() {
                        let r = &records[j];
                        if &r.digest[..TAG_BYTES] == tag {
                            self.point(
                                FindingKind::Modified,
                                seq,
                                "audit fields altered (run, batch or suite)".to_string(),
                                Some(r.loc),
                            );
                        } else {
                            mismatched.push((j, seq));
                        }
                    }
                }
                Some(g) => {
                    verified += 1;
                    let gr = records[g];
                    digests.push(gr.digest);
                    for j in at.clone() {
                        let r = &records[j];
                        if j == g
                            || (r.digest == gr.digest
                                && r.run == run
                                && r.batch == batch
                                && r.suite == v.suite)
                        {
                            continue; // the record itself, or an exact replay
                        }
                        let kind = if r.digest == gr.digest {
                            FindingKind::Modified
                        } else {
                            FindingKind::Inserted
                        };
                        self.point(
                            kind,
                            seq,
                            "a second, different record with this sequence number".to_string(),
                            Some(r.loc),
                        );
                    }
                }
            }
        }
        let position = BatchPosition {
            chain: &self.chain,
            view: &self.view,
            run,
            batch,
            first_seq: v.first_seq,
        };
        if complete && v.suite.batch_root(position, &digests) != v.root {
            // Only reachable when tags collide: integrity rests on the root.
            for seq in v.first_seq..v.first_seq + v.count {
                self.point(
                    FindingKind::Modified,
                    seq,
                    format!("run {run} batch {batch}: records do not give the sealed root"),
                    None,
                );
            }
            return 0;
        }
        verified
    }

    /// Ordered mode: per file, the lines of this chain not in the longest
    /// increasing run of sequence numbers are out of order. `records` is
    /// sorted by (seq, file, line).
    fn check_line_order(&mut self, records: &[Rec]) {
        let mut by_file: BTreeMap<u32, Vec<&Rec>> = BTreeMap::new();
        let mut previous: Option<&Rec> = None;
        for r in records {
            // Exact replays are not disorder: a line with the seq and digest
            // of the line before it (in its file) with that seq. Sorted by
            // seq, then file and line, that line is the record just before
            // (no map of every seq needed).
            let replay = previous.is_some_and(|p| {
                p.seq == r.seq && p.loc.file == r.loc.file && p.digest == r.digest
            });
            previous = Some(r);
            if !replay {
                by_file.entry(r.loc.file).or_default().push(r);
            }
        }
        for (_, mut recs) in by_file {
            recs.sort_unstable_by_key(|r| r.loc.line);
            let seqs: Vec<u64> = recs.iter().map(|r| r.seq).collect();
            let keep = longest_increasing(&seqs);
            for (i, r) in recs.iter().enumerate() {
                if !keep[i] {
                    self.point(
                        FindingKind::Reordered,
                        r.seq,
                        "line out of sequence order in its file".to_string(),
                        Some(r.loc),
                    );
                }
            }
        }
    }
}

/// Indices into `records` (sorted by seq) with this seq.
fn records_at(records: &[Rec], seq: u64) -> std::ops::Range<usize> {
    let start = records.partition_point(|r| r.seq < seq);
    let len = records[start..].iter().take_while(|r| r.seq == seq).count();
    start..start + len
}

fn first_record(records: &[Rec], seq: u64) -> Option<usize> {
    records_at(records, seq).next()
}

/// Which elements form a longest non-decreasing subsequence (two lines with
/// one sequence number are a duplicate, reported as such, not disorder).
fn longest_increasing(xs: &[u64]) -> Vec<bool> {
    // Patience sorting: tails[k] = index of the smallest tail of a run of k+1.
    let mut tails: Vec<usize> = Vec::new();
    let mut parent: Vec<Option<usize>> = vec![None; xs.len()];
    for (i, &x) in xs.iter().enumerate() {
        let k = tails.partition_point(|&t| xs[t] <= x);
        parent[i] = k.checked_sub(1).map(|p| tails[p]);
        if k == tails.len() {
            tails.push(i);
        } else {
            tails[k] = i;
        }
    }
    let mut keep = vec![false; xs.len()];
    let mut cur = tails.last().copied();
    while let Some(i) = cur {
        keep[i] = true;
        cur = parent[i];
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_increasing_keeps_all_but_swapped_lines() {
        let keep = longest_increasing(&[1, 5, 3, 4, 2, 6]);
        assert_eq!(keep, vec![true, false, true, true, false, true]);
        assert!(longest_increasing(&[1, 2, 3]).iter().all(|k| *k));
        assert!(longest_increasing(&[1, 2, 2, 3]).iter().all(|k| *k));
        assert!(longest_increasing(&[]).is_empty());
    }

    #[test]
    fn lookup_finds_nested_dotted_and_flat_paths() {
        let v: Value = serde_json::json!({"a": {"b.c": 1}, "x.y": {"z": 2}, "p.q.r": 3});
        assert_eq!(lookup(&v, "a.b.c"), Some(&Value::from(1)));
        assert_eq!(lookup(&v, "x.y.z"), Some(&Value::from(2)));
        assert_eq!(lookup(&v, "p.q.r"), Some(&Value::from(3)));
        assert_eq!(lookup(&v, "a.b"), None);
    }
}
