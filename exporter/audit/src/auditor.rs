//! The [`Auditor`]: the state machine the pipeline drives at ⑤ deliver.
//!
//! ```text
//! start(store, signer, options, now)  -> Auditor + Option<GapRecord>
//! per batch:  stamp(n)                -> BatchStamp (seq, batch, run, chain)
//!             encode records with stamp.fields(view, i) appended
//!             seal(view, &stamp, &lines, now) -> SealRecord (emit after the lines)
//! every loop: tick(now)               -> checkpoints due (emit), heartbeat due?
//! at exit:    shutdown(now)           -> final checkpoints; state marked clean
//! ```
//!
//! It reads no clock (times are passed in) and does no IO of its own: the
//! state goes through a [`StateStore`]. Sequence numbers are reserved in
//! blocks: the store is written before any number past the reservation is
//! handed out, so a crash (no `shutdown`) can only skip numbers, never reuse
//! them.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::canonical::Canonicalizer;
use crate::fields::{
    AuditFields, append_to_object, canonical_u64, chain_hex, push_chain_hex, push_decimal,
    write_audit_object,
};
use crate::form_template::{FormTemplate, FormTemplates, HoleTable, Known};
use crate::hash::{BatchPosition, ChainId, Hash, HeadInput, Suite, TAG_BYTES};
use crate::hash_v2::DigestBatch;
use crate::hash_v3::Splitter;
use crate::note::{Checkpoint, NoteSigner};
use crate::records::{CheckpointRecord, GapRecord, SealRecord, unix_ms};
use crate::state::{PersistedCheckpoint, PersistedState, StateError, StateStore};

/// Settings of the audit trail.
#[derive(Debug, Clone)]
pub struct AuditorOptions {
    /// The node name written into seals and checkpoints.
    pub node: String,
    /// The output formats in use (`ecs`, `ocsf`, ...): one hash chain each.
    pub views: Vec<String>,
    /// Sequence numbers reserved per state write (default 65,536).
    pub reserve_block: u64,
    /// Signed checkpoint period, also when idle (default 60 s).
    pub checkpoint_interval: Duration,
    /// Heartbeat period (default 30 s).
    pub heartbeat_interval: Duration,
    /// The hash suite of the chains this auditor writes (default v1; v2 is
    /// several times cheaper, see docs/compliance.md). A restart may change
    /// it: each run's seals and records name their suite.
    pub suite: Suite,
}

impl AuditorOptions {
    pub fn new(node: impl Into<String>, views: Vec<String>) -> Self {
        AuditorOptions {
            node: node.into(),
            views,
            reserve_block: 65_536,
            checkpoint_interval: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(30),
            suite: Suite::V1,
        }
    }

    /// The same options with another hash suite.
    pub fn with_suite(mut self, suite: Suite) -> Self {
        self.suite = suite;
        self
    }
}

/// What can go wrong while auditing. All are bugs in the caller or IO
/// failures of the state store; none loses a record silently (the caller
/// still holds the batch).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("view {0:?} was not declared in AuditorOptions::views")]
    UnknownView(String),
    #[error("a batch must have at least one record")]
    EmptyBatch,
    #[error("view {view}: batch {got} sealed out of order (expected batch {expected})")]
    OutOfOrder {
        view: String,
        expected: u64,
        got: u64,
    },
    #[error("batch {batch}: {got} lines given for {expected} stamped records")]
    CountMismatch {
        batch: u64,
        expected: u64,
        got: usize,
    },
    #[error("batch {batch} record {index}: {reason}")]
    BadRecord {
        batch: u64,
        index: usize,
        reason: String,
    },
    #[error("no views: AuditorOptions::views is empty")]
    NoViews,
}

/// The sequence numbers of one batch, handed out by [`Auditor::stamp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchStamp {
    pub chain: ChainId,
    pub run: u64,
    pub batch: u64,
    pub first_seq: u64,
    pub count: u64,
    /// The hash suite; records of every suite but v1 carry it in their
    /// audit fields.
    pub suite: Suite,
}

impl BatchStamp {
    /// The audit fields of record `index` (0-based) of the batch in `view`.
    pub fn fields(&self, view: &str, index: u64) -> AuditFields {
        AuditFields {
            chain: self.chain,
            view: view.to_string(),
            run: self.run,
            batch: self.batch,
            seq: self.first_seq + index,
            suite: self.suite,
        }
    }

    /// Append record `index`'s audit fields in `view` to its encoded JSON
    /// object: the same bytes as
    /// `self.fields(view, index).append_to_json_object(line)`, without
    /// allocating. False, and `line` untouched, when it is not an object.
    pub fn append_fields(&self, view: &str, index: u64, line: &mut Vec<u8>) -> bool {
        append_to_object(line, |out| {
            write_audit_object(
                &self.chain,
                view,
                self.run,
                self.batch,
                self.first_seq + index,
                self.suite,
                out,
            );
        })
    }
}

/// The canonical values a batch's records must carry in their audit fields:
/// compared as bytes, so checking a record allocates nothing.
struct ExpectedFields {
    chain: Vec<u8>,
    view: Vec<u8>,
    run: (Vec<u8>, u64),
    batch: (Vec<u8>, u64),
    /// The canonical `suite` value; `None` for v1, whose records have none.
    suite: Option<Vec<u8>>,
}

impl ExpectedFields {
    fn new(stamp: &BatchStamp, view: &str) -> Self {
        let mut chain = vec![b'"'];
        push_chain_hex(&stamp.chain, &mut chain);
        chain.push(b'"');
        let number = |n: u64| {
            let mut text = Vec::new();
            push_decimal(n, &mut text);
            (text, n)
        };
        ExpectedFields {
            chain,
            // serde_json's escaping is the canonical one.
            view: serde_json::to_vec(view).unwrap_or_default(),
            run: number(stamp.run),
            batch: number(stamp.batch),
            suite: (stamp.suite != Suite::V1)
                .then(|| format!("\"{}\"", stamp.suite.name()).into_bytes()),
        }
    }

    /// True when the canonicalised record carries exactly these fields and
    /// `seq`. False can also mean an unusual spelling (`"12"` for 12): the
    /// caller then compares the parsed fields.
    fn matches(&self, canon: &Canonicalizer, seq: u64, seq_text: &mut Vec<u8>) -> bool {
        seq_text.clear();
        push_decimal(seq, seq_text);
        let number = |v: &[u8], (text, n): (&[u8], u64)| v == text || canonical_u64(v) == Some(n);
        // The first field of a name counts (as `audit_field`).
        let [chain, view, run, batch, seq_value, suite] = canon.known_audit_fields();
        chain == Some(&self.chain[..])
            && view == Some(&self.view[..])
            && run.is_some_and(|v| number(v, (&self.run.0, self.run.1)))
            && batch.is_some_and(|v| number(v, (&self.batch.0, self.batch.1)))
            && seq_value.is_some_and(|v| number(v, (seq_text, seq)))
            && suite == self.suite.as_deref()
    }
}

/// The audit fields `BatchStamp::append_fields` ends a batch's lines
/// with, as the bytes before and after the sequence number: a line is
/// checked against them without writing the chain id out per line.
struct AuditSuffix {
    /// `,"flowscribe.audit":{"chain":…,"seq":`
    head: Vec<u8>,
    /// What follows the number: `}}`, or `,"suite":"v2"}}`.
    tail: Vec<u8>,
    digits: Vec<u8>,
}

impl AuditSuffix {
    fn new(stamp: &BatchStamp, view: &str) -> Self {
        let mut head = b",\"flowscribe.audit\":".to_vec();
        write_audit_object(
            &stamp.chain,
            view,
            stamp.run,
            stamp.batch,
            0,
            stamp.suite,
            &mut head,
        );
        head.push(b'}');
        // `"seq":0` is written once, after the view: its last occurrence.
        let at = memchr::memmem::rfind(&head, b"\"seq\":0").map_or(head.len(), |at| at + 6);
        let tail = head.split_off(at.min(head.len()));
        AuditSuffix {
            head,
            tail: tail.get(1..).unwrap_or_default().to_vec(),
            digits: Vec::with_capacity(20),
        }
    }

    /// Where the audit fields of record `seq` begin in `line`, when it
    /// ends with exactly those `append_fields` writes (and has a body).
    fn body_end(&mut self, line: &[u8], seq: u64) -> Option<usize> {
        self.digits.clear();
        push_decimal(seq, &mut self.digits);
        let rest = line.strip_suffix(&self.tail[..])?;
        let rest = rest.strip_suffix(&self.digits[..])?;
        let body = rest.strip_suffix(&self.head[..])?;
        (!body.is_empty()).then_some(body.len())
    }
}

/// One view's chain within the current run.
#[derive(Debug, Clone)]
struct ViewChain {
    name: String,
    head: Hash,
    /// Batches sealed in this run; also the next batch number expected.
    batches: u64,
    /// Every seq below this is sealed (or skipped before this run).
    size: u64,
    checkpoints: u64,
}

/// What [`Auditor::tick`] says is due.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tick {
    /// Signed checkpoints to emit now, one per view.
    pub checkpoints: Vec<CheckpointRecord>,
    /// The pipeline should emit a heartbeat record now.
    pub heartbeat_due: bool,
}

/// The audit trail of one node. See the module docs for the call order.
#[derive(Debug)]
pub struct Auditor<S: StateStore> {
    store: S,
    signer: NoteSigner,
    options: AuditorOptions,
    chain: ChainId,
    run: u64,
    next_seq: u64,
    reserved_until: u64,
    next_batch: u64,
    views: Vec<ViewChain>,
    state: PersistedState,
    last_checkpoint: Option<SystemTime>,
    last_heartbeat: Option<SystemTime>,
    /// Kept between batches: it holds the learned record shapes.
    canon: Canonicalizer,
    /// The same with connection bases ([`Canonicalizer::with_hints`]), for
    /// [`Auditor::seal`]: the lines of views the encoder gives no side
    /// table for (OCSF, ...) come back every window, one per connection.
    canon_bases: Canonicalizer,
    /// v2: canonical forms waiting to be hashed together, and the hasher;
    /// v3: the records' hash inputs (`crate::hash_v3`), hashed the same way.
    forms: Vec<u8>,
    form_ends: Vec<usize>,
    digest_batch: DigestBatch,
    /// v3: splits canonical forms into their hash inputs.
    splitter: Splitter,
    /// Canonical forms of encoder templates ([`Auditor::seal_templated`]).
    form_templates: FormTemplates,
    /// Lines whose form came from a form template (statistics).
    filled: u64,
}

/// v2 hashes this many records' canonical forms side by side (a group of
/// ~1 KB forms stays in the L2 cache between canonical form and hash).
const DIGEST_GROUP: usize = 64;

/// The sealer's bounds on connection bases: a quarter of the verifier's
/// count and half its bytes (up to 32 MiB in the daemon while it seals
/// views without templates). Measured on the ECS encoder's lines sealed
/// without templates (`verify_real`'s seal): 6.6-7.0 -> 4.3-4.7 µs per
/// record.
const SEAL_BASES: usize = 4096;
const SEAL_BASE_BYTES: usize = 32 << 20;

impl<S: StateStore> Auditor<S> {
    /// Resume from the store (or begin a new chain with `new_chain` when the
    /// store is empty), reserve the first block, and say what the gap was.
    pub fn start(
        mut store: S,
        signer: NoteSigner,
        options: AuditorOptions,
        now: SystemTime,
        new_chain: ChainId,
    ) -> Result<(Self, Option<GapRecord>), AuditError> {
        if options.views.is_empty() {
            return Err(AuditError::NoViews);
        }
        let previous = store.load()?;
        let (chain, run, first_seq, gap) = match &previous {
            None => (new_chain, 1, 0, None),
            Some(p) => {
                // validate() has checked the chain id when the store loaded it;
                // a store that skips validation still gets a clear error.
                let chain = p.chain_id().ok_or_else(|| StateError::Corrupt {
                    path: "state".into(),
                    reason: format!("chain {:?} is not 32 hex digits", p.chain),
                })?;
                let first_seq = p.clean_next_seq.unwrap_or(p.reserved_until);
                let gap = GapRecord {
                    previous_run: p.run,
                    run: p.run + 1,
                    clean: p.clean_next_seq.is_some(),
                    stopped: SystemTime::UNIX_EPOCH + Duration::from_millis(p.written_unix_ms),
                    started: now,
                    resumed_seq: first_seq,
                    previous_reserved_until: p.reserved_until,
                    previous_checkpoints: p.views.clone(),
                };
                (chain, p.run + 1, first_seq, Some(gap))
            }
        };
        let views = options
            .views
            .iter()
            .map(|name| {
                let prev_head = previous
                    .as_ref()
                    .and_then(|p| p.views.get(name))
                    .and_then(PersistedCheckpoint::head);
                ViewChain {
                    name: name.clone(),
                    head: options.suite.run_genesis(
                        &chain,
                        name,
                        run,
                        first_seq,
                        prev_head.as_ref(),
                    ),
                    batches: 0,
                    size: first_seq,
                    checkpoints: 0,
                }
            })
            .collect();
        let mut state = previous.unwrap_or_else(|| PersistedState::fresh(&chain));
        state.run = run;
        state.clean_next_seq = None;
        state.reserved_until = first_seq + options.reserve_block.max(1);
        state.written_unix_ms = unix_ms(now);
        store.store(&state)?;
        let auditor = Auditor {
            reserved_until: state.reserved_until,
            store,
            signer,
            options,
            chain,
            run,
            next_seq: first_seq,
            next_batch: 0,
            views,
            state,
            last_checkpoint: None,
            last_heartbeat: None,
            canon: Canonicalizer::new(),
            canon_bases: Canonicalizer::with_hints_bounded(SEAL_BASES, SEAL_BASE_BYTES),
            forms: Vec::new(),
            form_ends: Vec::new(),
            digest_batch: DigestBatch::new(),
            splitter: Splitter::default(),
            form_templates: FormTemplates::default(),
            filled: 0,
        };
        Ok((auditor, gap))
    }

    pub fn chain(&self) -> ChainId {
        self.chain
    }

    pub fn run(&self) -> u64 {
        self.run
    }

    /// The next sequence number to be handed out.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The verifier key of the signer, in note format.
    pub fn verifier_key(&self) -> String {
        self.signer.verifier_key()
    }

    /// Hand out `count` sequence numbers as the next batch. Persists a new
    /// reservation first when the current one would be exceeded.
    pub fn stamp(&mut self, count: usize, now: SystemTime) -> Result<BatchStamp, AuditError> {
        if count == 0 {
            return Err(AuditError::EmptyBatch);
        }
        let count = count as u64;
        let end = self.next_seq + count;
        if end > self.reserved_until {
            let reserved = end + self.options.reserve_block.max(1);
            self.state.reserved_until = reserved;
            self.state.written_unix_ms = unix_ms(now);
            self.store.store(&self.state)?;
            self.reserved_until = reserved;
        }
        let stamp = BatchStamp {
            chain: self.chain,
            run: self.run,
            batch: self.next_batch,
            first_seq: self.next_seq,
            count,
            suite: self.options.suite,
        };
        self.next_seq = end;
        self.next_batch += 1;
        Ok(stamp)
    }

    fn view_index(&self, view: &str) -> Result<usize, AuditError> {
        self.views
            .iter()
            .position(|v| v.name == view)
            .ok_or_else(|| AuditError::UnknownView(view.to_string()))
    }

    /// Seal a stamped batch as encoded for `view`: `lines` are the JSON
    /// records with their audit fields, in stamp order. Checks that each
    /// line carries the stamp's fields, hashes the canonical forms, and
    /// advances the view's chain. Emit the returned seal after the lines.
    pub fn seal<L: AsRef<[u8]>>(
        &mut self,
        view: &str,
        stamp: &BatchStamp,
        lines: &[L],
        now: SystemTime,
    ) -> Result<SealRecord, AuditError> {
        // Lines without an encoder's side table (the views other than
        // ECS) are canonicalised with connection bases: each compared with
        // its connection's line of the last window.
        std::mem::swap(&mut self.canon, &mut self.canon_bases);
        let sealed = self.seal_inner(view, stamp, lines, None, now);
        std::mem::swap(&mut self.canon, &mut self.canon_bases);
        sealed
    }

    /// [`Auditor::seal`], with the encoder's side table: `holes.get(i)`
    /// names the encoder template that wrote line `i` and where its values
    /// are (lines past the table's end have none). A line whose audit
    /// fields are exactly the ones [`BatchStamp::append_fields`] appends
    /// gets its canonical form from its template's form template
    /// (`crate::form_template`), made on the template's second line and
    /// checked there against a parse; every other line, and any line the
    /// form template refuses, is canonicalised as by `seal`. The seal is
    /// the same as `seal`'s. The caller vouches that the encoder's lines
    /// carry no audit fields of their own (the form template checks the
    /// line it is built from; later lines equal it outside the holes).
    pub fn seal_templated<L: AsRef<[u8]>>(
        &mut self,
        view: &str,
        stamp: &BatchStamp,
        lines: &[L],
        holes: &HoleTable,
        now: SystemTime,
    ) -> Result<SealRecord, AuditError> {
        self.seal_inner(view, stamp, lines, Some(holes), now)
    }

    /// Lines whose canonical form came from a form template, and form
    /// templates built and refused.
    pub fn form_template_counts(&self) -> (u64, u64, u64) {
        let (built, refused) = self.form_templates.counts();
        (self.filled, built, refused)
    }

    fn seal_inner<L: AsRef<[u8]>>(
        &mut self,
        view: &str,
        stamp: &BatchStamp,
        lines: &[L],
        holes: Option<&HoleTable>,
        now: SystemTime,
    ) -> Result<SealRecord, AuditError> {
        let node = self.options.node.clone();
        let index = self.view_index(view)?;
        let v = &self.views[index];
        if stamp.batch != v.batches {
            return Err(AuditError::OutOfOrder {
                view: view.to_string(),
                expected: v.batches,
                got: stamp.batch,
            });
        }
        if lines.len() as u64 != stamp.count {
            return Err(AuditError::CountMismatch {
                batch: stamp.batch,
                expected: stamp.count,
                got: lines.len(),
            });
        }
        let suite = stamp.suite;
        let mut digests: Vec<Hash> = Vec::with_capacity(lines.len());
        let mut group: Vec<Hash> = Vec::with_capacity(DIGEST_GROUP);
        self.forms.clear();
        self.form_ends.clear();
        let expected = ExpectedFields::new(stamp, view);
        let mut seq_text = Vec::with_capacity(20);
        let mut suffix = AuditSuffix::new(stamp, view);
        for (i, line) in lines.iter().enumerate() {
            let line = line.as_ref();
            let seq = stamp.first_seq + i as u64;
            let form_start = self.forms.len();
            let templated = holes.and_then(|h| h.get(i));
            let filled = templated.is_some_and(|(template, spans)| {
                suffix.body_end(line, seq).is_some_and(|body_end| {
                    self.fill_form(suite, index, template, spans, line, body_end)
                })
            });
            if filled {
                // The form (v3: the hash input) equals that of a parse of
                // the line, and the line's audit fields are exactly the
                // stamp's (its template's line has none of its own): debug
                // builds check both on every line.
                #[cfg(debug_assertions)]
                {
                    let parsed = self.canon.canonicalize(line).ok().map(|form| {
                        let mut want = Vec::new();
                        self.splitter.write_hashed(suite, form, None, &mut want);
                        want
                    });
                    assert_eq!(
                        parsed.as_deref(),
                        Some(&self.forms[form_start..]),
                        "line {i}: a form template's form differs from the parse"
                    );
                }
                debug_assert!(expected.matches(&self.canon, seq, &mut seq_text));
                self.filled += 1;
                if suite == Suite::V1 {
                    digests.push(suite.content_digest(&self.forms[form_start..]));
                    self.forms.truncate(form_start);
                }
            } else {
                let bad = |reason: String| AuditError::BadRecord {
                    batch: stamp.batch,
                    index: i,
                    reason,
                };
                // v3: the line's parts alone when its connection's last
                // line had the same stable leaves (their digest is kept
                // with that line).
                self.canon.set_v3_parts(suite == Suite::V3);
                let read = self.canon.canonicalize(line).map(|_| ());
                self.canon.set_v3_parts(false);
                read.map_err(|e| bad(e.to_string()))?;
                match suite {
                    Suite::V1 => digests.push(suite.content_digest(self.canon.form())),
                    _ => self
                        .splitter
                        .write_hashed_read(suite, &mut self.canon, &mut self.forms),
                }
                if !expected.matches(&self.canon, seq, &mut seq_text) {
                    // The slow comparison decides (and says what differs).
                    let want = stamp.fields(view, i as u64);
                    let got =
                        AuditFields::from_canonical(&self.canon).map_err(|e| bad(e.to_string()))?;
                    if got != want {
                        return Err(bad(format!(
                            "audit fields {got:?} differ from the stamp {want:?}"
                        )));
                    }
                }
            }
            if suite != Suite::V1 {
                self.form_ends.push(self.forms.len());
            }
            if self.form_ends.len() == DIGEST_GROUP
                || (i + 1 == lines.len() && !self.form_ends.is_empty())
            {
                let mut start = 0;
                let forms = &self.forms;
                let refs: Vec<&[u8]> = self
                    .form_ends
                    .iter()
                    .map(|&end| {
                        let f = &forms[start..end];
                        start = end;
                        f
                    })
                    .collect();
                self.digest_batch.digests(&refs, &mut group);
                digests.extend_from_slice(&group);
                self.forms.clear();
                self.form_ends.clear();
            }
        }
        let mut tags = Vec::with_capacity(lines.len() * TAG_BYTES);
        for d in &digests {
            tags.extend_from_slice(&d[..TAG_BYTES]);
        }
        let root = suite.batch_root(
            BatchPosition {
                chain: &stamp.chain,
                view,
                run: stamp.run,
                batch: stamp.batch,
                first_seq: stamp.first_seq,
            },
            &digests,
        );
        let v = &mut self.views[index];
        let prev = v.head;
        let head = suite.batch_head(HeadInput {
            prev: &prev,
            chain: &stamp.chain,
            view,
            run: stamp.run,
            batch: stamp.batch,
            first_seq: stamp.first_seq,
            count: stamp.count,
            root: &root,
            tags: &tags,
        });
        v.head = head;
        v.batches += 1;
        v.size = stamp.first_seq + stamp.count;
        Ok(SealRecord {
            chain: stamp.chain,
            view: view.to_string(),
            node,
            run: stamp.run,
            batch: stamp.batch,
            first_seq: stamp.first_seq,
            count: stamp.count,
            root,
            prev,
            head,
            tags,
            suite,
            at: now,
        })
    }

    /// Appends the canonical form (v3: the hash input) of `line[..body_end]`
    /// followed by `}` (a line of view `index` without the audit fields it ends with) from
    /// its template's form template to `self.forms` and says `true`, when
    /// the form template takes it; on the
    /// template's second line the form template is built and its form
    /// compared with a parse (a mismatch refuses the template for good).
    /// `false`, and `self.forms` as it was, otherwise.
    fn fill_form(
        &mut self,
        suite: Suite,
        index: usize,
        template: u64,
        spans: &[(u32, u32)],
        line: &[u8],
        body_end: usize,
    ) -> bool {
        let form_start = self.forms.len();
        let fill =
            |t: &FormTemplate, out: &mut Vec<u8>| t.fill_for(suite, line, body_end, spans, out);
        match self.form_templates.get(index, template) {
            Known::Built(t) => fill(t, &mut self.forms),
            Known::Parse => false,
            Known::Build => {
                let made = self
                    .form_templates
                    .build(index, template, line, body_end, spans);
                let built = made.is_some();
                let ok = made.is_some_and(|t| fill(t, &mut self.forms))
                    && self.canon.canonicalize(line).ok().is_some_and(|form| {
                        // v1 fills forms as v2 does.
                        let mut want = Vec::new();
                        self.splitter.write_hashed(suite, form, None, &mut want);
                        want == self.forms[form_start..]
                    });
                if !ok {
                    self.forms.truncate(form_start);
                    if built {
                        self.form_templates.refuse(index, template);
                    }
                }
                ok
            }
        }
    }

    /// Call often (every loop turn). Returns the checkpoints that are due
    /// (the first call, then every `checkpoint_interval`, also when nothing
    /// was sealed) and whether a heartbeat is due. A clock that went back
    /// makes both due at once rather than silent for the size of the step.
    pub fn tick(&mut self, now: SystemTime) -> Result<Tick, AuditError> {
        let due = |last: Option<SystemTime>, every: Duration| match last {
            None => true,
            Some(last) => now.duration_since(last).map_or(true, |d| d >= every),
        };
        let mut tick = Tick::default();
        if due(self.last_heartbeat, self.options.heartbeat_interval) {
            self.last_heartbeat = Some(now);
            tick.heartbeat_due = true;
        }
        if due(self.last_checkpoint, self.options.checkpoint_interval) {
            tick.checkpoints = self.checkpoint_all(now, false)?;
        }
        Ok(tick)
    }

    /// Sign a checkpoint of every view now and persist it.
    fn checkpoint_all(
        &mut self,
        now: SystemTime,
        stop: bool,
    ) -> Result<Vec<CheckpointRecord>, AuditError> {
        let chain_text = chain_hex(&self.chain);
        let mut out = Vec::with_capacity(self.views.len());
        let mut persisted = BTreeMap::new();
        for v in &mut self.views {
            let cp = Checkpoint {
                origin: Checkpoint::origin_for(&chain_text, &v.name),
                size: v.size,
                head: v.head,
                run: self.run,
                batches: v.batches,
                number: v.checkpoints,
                time_unix_ms: unix_ms(now),
                stop,
            };
            persisted.insert(
                v.name.clone(),
                PersistedCheckpoint::new(self.run, v.size, &v.head, v.batches, v.checkpoints),
            );
            out.push(CheckpointRecord {
                chain: self.chain,
                view: v.name.clone(),
                node: self.options.node.clone(),
                run: self.run,
                number: v.checkpoints,
                note: self.signer.sign(&cp.body()),
                at: now,
            });
            v.checkpoints += 1;
        }
        // The next run's gap record names these, so the verifier can insist
        // on finding them.
        self.state.views = persisted;
        self.state.written_unix_ms = unix_ms(now);
        self.store.store(&self.state)?;
        self.last_checkpoint = Some(now);
        Ok(out)
    }

    /// Final checkpoints, and the state marked clean with the exact next
    /// sequence number. Emit the returned records before closing the sinks.
    pub fn shutdown(mut self, now: SystemTime) -> Result<(Vec<CheckpointRecord>, S), AuditError> {
        let checkpoints = self.checkpoint_all(now, true)?;
        self.state.clean_next_seq = Some(self.next_seq);
        self.state.written_unix_ms = unix_ms(now);
        self.store.store(&self.state)?;
        Ok((checkpoints, self.store))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryStateStore;
    use crate::state_file::FileStateStore;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_763_712_000 + secs)
    }

    fn options(block: u64) -> AuditorOptions {
        let mut o = AuditorOptions::new("node-a", vec!["ecs".into()]);
        o.reserve_block = block;
        o
    }

    fn signer() -> NoteSigner {
        NoteSigner::from_seed("flowscribe-test", [7; 32]).unwrap()
    }

    /// Encode `n` JSON records of a stamp in `view`, as the pipeline would.
    fn lines(stamp: &BatchStamp, view: &str) -> Vec<Vec<u8>> {
        (0..stamp.count)
            .map(|i| {
                let mut l = format!(r#"{{"n":{},"msg":"flow"}}"#, stamp.first_seq + i).into_bytes();
                assert!(stamp.fields(view, i).append_to_json_object(&mut l));
                l
            })
            .collect()
    }

    #[test]
    fn reservations_are_persisted_before_numbers_are_used() {
        let (mut a, gap) = Auditor::start(
            MemoryStateStore::default(),
            signer(),
            options(10),
            t(0),
            [1; 16],
        )
        .unwrap();
        assert!(gap.is_none());
        assert_eq!(a.store.stores, 1);
        assert_eq!(a.store.state.as_ref().unwrap().reserved_until, 10);
        let s1 = a.stamp(7, t(1)).unwrap();
        assert_eq!((s1.first_seq, s1.count, s1.batch, s1.run), (0, 7, 0, 1));
        assert_eq!(a.store.stores, 1, "7 numbers fit the first block");
        let s2 = a.stamp(7, t(2)).unwrap();
        assert_eq!((s2.first_seq, s2.batch), (7, 1));
        assert_eq!(a.store.stores, 2);
        assert_eq!(a.store.state.as_ref().unwrap().reserved_until, 24);
        assert!(matches!(a.stamp(0, t(3)), Err(AuditError::EmptyBatch)));
    }

    #[test]
    fn a_crash_never_reuses_a_number_and_leaves_a_gap_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit-state.json");
        let mut issued = Vec::new();
        {
            let (mut a, _) = Auditor::start(
                FileStateStore::new(&path),
                signer(),
                options(10),
                t(0),
                [2; 16],
            )
            .unwrap();
            a.tick(t(0)).unwrap();
            for _ in 0..5 {
                let s = a.stamp(5, t(1)).unwrap();
                issued.extend(s.first_seq..s.first_seq + s.count);
            }
            // Crash: dropped without shutdown().
        }
        assert_eq!(issued.len(), 25);
        let (a, gap) = Auditor::start(
            FileStateStore::new(&path),
            signer(),
            options(10),
            t(100),
            [9; 16],
        )
        .unwrap();
        let gap = gap.unwrap();
        assert_eq!(a.chain(), [2; 16], "the chain id survives the restart");
        assert_eq!(a.run(), 2);
        assert!(!gap.clean);
        // Start reserved 0..10; the 3rd batch (10..15) reserved up to 15 + 10.
        assert_eq!(gap.previous_reserved_until, 25);
        assert_eq!(gap.resumed_seq, 25);
        assert_eq!(a.next_seq(), 25);
        assert!(issued.iter().all(|s| *s < a.next_seq()));
        assert_eq!(gap.stopped, t(1), "the last state write before the crash");
        assert_eq!(gap.started, t(100));
        let cp = &gap.previous_checkpoints["ecs"];
        assert_eq!((cp.run, cp.size, cp.batches, cp.number), (1, 0, 0, 0));
    }

    #[test]
    fn a_run_that_crashes_before_its_first_checkpoint_passes_on_the_older_one() {
        let mut store = MemoryStateStore::default();
        let (mut a, _) = Auditor::start(store, signer(), options(10), t(0), [6; 16]).unwrap();
        a.tick(t(0)).unwrap();
        store = a.store.clone(); // run 1 crashes after checkpoint #0
        let (b, _) = Auditor::start(store, signer(), options(10), t(5), [6; 16]).unwrap();
        store = b.store.clone(); // run 2 crashes before any checkpoint
        let (_, gap) = Auditor::start(store, signer(), options(10), t(9), [6; 16]).unwrap();
        let gap = gap.unwrap();
        assert_eq!((gap.previous_run, gap.run), (2, 3));
        assert_eq!(gap.previous_checkpoints["ecs"].run, 1);
        assert_eq!((gap.resumed_seq, gap.previous_reserved_until), (20, 20));
    }

    #[test]
    fn a_clean_shutdown_resumes_at_the_exact_next_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let (mut a, _) = Auditor::start(
            FileStateStore::new(&path),
            signer(),
            options(1000),
            t(0),
            [3; 16],
        )
        .unwrap();
        let s = a.stamp(12, t(1)).unwrap();
        a.seal("ecs", &s, &lines(&s, "ecs"), t(1)).unwrap();
        let (final_cps, _) = a.shutdown(t(5)).unwrap();
        assert_eq!(final_cps.len(), 1);
        let (b, gap) = Auditor::start(
            FileStateStore::new(&path),
            signer(),
            options(1000),
            t(9),
            [9; 16],
        )
        .unwrap();
        let gap = gap.unwrap();
        assert!(gap.clean);
        assert_eq!((gap.resumed_seq, b.next_seq()), (12, 12));
        assert_eq!(gap.stopped, t(5));
        let cp = &gap.previous_checkpoints["ecs"];
        assert_eq!((cp.size, cp.batches, cp.number), (12, 1, 0));
    }

    #[test]
    fn seal_checks_the_lines_against_the_stamp() {
        let (mut a, _) = Auditor::start(
            MemoryStateStore::default(),
            signer(),
            options(100),
            t(0),
            [4; 16],
        )
        .unwrap();
        let s = a.stamp(3, t(1)).unwrap();
        let mut l = lines(&s, "ecs");
        // Record 1 carries the fields of record 2.
        l[1] = l[2].clone();
        let err = a.seal("ecs", &s, &l, t(1)).unwrap_err();
        assert!(
            matches!(
                err,
                AuditError::BadRecord {
                    batch: 0,
                    index: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert!(matches!(
            a.seal("ocsf", &s, &lines(&s, "ocsf"), t(1)),
            Err(AuditError::UnknownView(_))
        ));
        assert!(matches!(
            a.seal("ecs", &s, &l[..2], t(1)),
            Err(AuditError::CountMismatch {
                expected: 3,
                got: 2,
                ..
            })
        ));
        let s2 = a.stamp(1, t(1)).unwrap();
        assert!(matches!(
            a.seal("ecs", &s2, &lines(&s2, "ecs"), t(1)),
            Err(AuditError::OutOfOrder {
                expected: 0,
                got: 1,
                ..
            })
        ));
        let seal = a.seal("ecs", &s, &lines(&s, "ecs"), t(1)).unwrap();
        assert_eq!((seal.first_seq, seal.count, seal.tags.len()), (0, 3, 24));
        let seal2 = a.seal("ecs", &s2, &lines(&s2, "ecs"), t(1)).unwrap();
        assert_eq!(seal2.prev, seal.head, "batches are linked");
    }

    /// A record must name its batch's suite exactly: a v2 batch refuses a
    /// record without `suite` (or with another one, v3 among them), a v1
    /// batch one with `"suite":"v2"`, a v3 batch one with `"suite":"v2"`;
    /// a duplicate `suite` key is read as its first one.
    #[test]
    fn seal_checks_the_suite_of_each_line() {
        for (suite, other) in [
            (Suite::V1, Suite::V2),
            (Suite::V2, Suite::V1),
            (Suite::V2, Suite::V3),
            (Suite::V3, Suite::V2),
        ] {
            let (mut a, _) = Auditor::start(
                MemoryStateStore::default(),
                signer(),
                options(100).with_suite(suite),
                t(0),
                [4; 16],
            )
            .unwrap();
            let s = a.stamp(3, t(1)).unwrap();
            let good = lines(&s, "ecs");
            let wrong = BatchStamp {
                suite: other,
                ..s.clone()
            };
            let mut l = good.clone();
            l[2] = lines(&wrong, "ecs").swap_remove(2);
            let err = a.seal("ecs", &s, &l, t(1)).unwrap_err();
            assert!(
                matches!(err, AuditError::BadRecord { index: 2, .. }),
                "{suite:?}: {err}"
            );
            // A second `suite` key: the first one counts, as the verifier
            // reads it (`AuditFieldsRef`); a wrong first one is refused.
            let text = String::from_utf8(good[0].clone()).unwrap();
            let (wrong_first, right_first) = match suite {
                Suite::V1 => (
                    text.replacen("}}", r#","suite":"v9","suite":"v1"}}"#, 1),
                    text.replacen("}}", r#","suite":"v1","suite":"v9"}}"#, 1),
                ),
                Suite::V2 | Suite::V3 => {
                    let named = format!(r#""suite":"{}""#, suite.name());
                    (
                        text.replacen(&named, &format!(r#""suite":"v9",{named}"#), 1),
                        text.replacen(&named, &format!(r#"{named},"suite":"v9""#), 1),
                    )
                }
            };
            let mut dup = good.clone();
            dup[0] = wrong_first.into_bytes();
            assert!(a.seal("ecs", &s, &dup, t(1)).is_err(), "{suite:?}");
            dup[0] = right_first.into_bytes();
            let seal = a.seal("ecs", &s, &dup, t(1)).unwrap();
            assert_eq!(seal.suite, suite);
            // The chain goes on after the refused attempts.
            let s2 = a.stamp(3, t(2)).unwrap();
            let again = a.seal("ecs", &s2, &lines(&s2, "ecs"), t(2)).unwrap();
            assert_eq!(again.suite, suite);
        }
    }

    /// The suffix check finds exactly the fields `append_fields` writes,
    /// for any sequence number, in every suite, and nothing else.
    #[test]
    fn the_audit_suffix_is_what_append_fields_writes() {
        for suite in [Suite::V1, Suite::V2, Suite::V3] {
            for first_seq in [0, 7, 10, 99_999, u64::MAX - 10] {
                let stamp = BatchStamp {
                    chain: [5; 16],
                    run: 3,
                    batch: 12,
                    first_seq,
                    count: 5,
                    suite,
                };
                let mut suffix = AuditSuffix::new(&stamp, "ecs");
                for i in 0..5 {
                    let mut line = br#"{"a":1}"#.to_vec();
                    assert!(stamp.append_fields("ecs", i, &mut line));
                    let seq = first_seq + i;
                    assert_eq!(suffix.body_end(&line, seq), Some(6), "{suite:?} {seq}");
                    assert_eq!(suffix.body_end(&line, seq.wrapping_add(1)), None);
                    let mut other = br#"{"a":1}"#.to_vec();
                    assert!(stamp.append_fields("ocsf", i, &mut other));
                    assert_eq!(suffix.body_end(&other, seq), None);
                }
            }
        }
    }

    /// Lines "from one template" (they differ in two values) and their
    /// side table, with the stamp's audit fields.
    fn templated_lines(stamp: &BatchStamp, view: &str) -> (Vec<Vec<u8>>, HoleTable) {
        templated_lines_at(stamp, view, ["z", "msg"])
    }

    /// Lines of one template with two holes, a number at `{keys[0]}.n` and
    /// text in the string at `keys[1]`.
    fn templated_lines_at(
        stamp: &BatchStamp,
        view: &str,
        keys: [&str; 2],
    ) -> (Vec<Vec<u8>>, HoleTable) {
        let mut table = HoleTable::new();
        let lines = (0..stamp.count)
            .map(|i| {
                let n = (stamp.first_seq + i) * 7919;
                let number_key = format!(r#"{{"{}":{{"n":"#, keys[0]);
                let head = format!(r#"{number_key}{n}}},"{}":"flow at "#, keys[1]);
                let text = format!("t{}", n % 1000);
                let mut l = format!(r#"{head}{text} ok","a":1}}"#).into_bytes();
                let n_at = number_key.len() as u32;
                let t_at = head.len();
                table.push(Some((
                    42,
                    &[
                        (n_at, n_at + n.to_string().len() as u32),
                        (t_at as u32, (t_at + text.len()) as u32),
                    ],
                )));
                assert!(stamp.append_fields(view, i, &mut l));
                l
            })
            .collect();
        (lines, table)
    }

    /// An auditor of view `ecs` in `suite`, started at `t(0)` on a new
    /// chain.
    fn started(suite: Suite, chain: [u8; 16]) -> Auditor<MemoryStateStore> {
        Auditor::start(
            MemoryStateStore::default(),
            signer(),
            options(1000).with_suite(suite),
            t(0),
            chain,
        )
        .unwrap()
        .0
    }

    /// With the side table the seal is the one a parse of every line
    /// gives, in every suite; lines filled from the form template count.
    /// In v3 a template fills only when its holes are volatile leaves (its
    /// stable leaves are then the same on every line): with holes in
    /// stable leaves it is refused, and its lines are parsed.
    #[test]
    fn seal_templated_equals_seal() {
        for (suite, keys, counts) in [
            (Suite::V1, ["z", "msg"], (299, 1, 0)),
            (Suite::V2, ["z", "msg"], (299, 1, 0)),
            (Suite::V3, ["traffic", "event.id"], (299, 1, 0)),
            (Suite::V3, ["z", "event.id"], (0, 0, 1)),
            (Suite::V3, ["traffic", "msg"], (0, 0, 1)),
            (Suite::V2, ["traffic", "event.id"], (299, 1, 0)),
        ] {
            let (mut plain, mut templated) = (started(suite, [8; 16]), started(suite, [8; 16]));
            for b in 0..3 {
                let s = plain.stamp(100, t(b)).unwrap();
                assert_eq!(templated.stamp(100, t(b)).unwrap(), s);
                let (lines, table) = templated_lines_at(&s, "ecs", keys);
                let want = plain.seal("ecs", &s, &lines, t(b)).unwrap();
                let got = templated
                    .seal_templated("ecs", &s, &lines, &table, t(b))
                    .unwrap();
                assert_eq!(got, want, "{suite:?} {keys:?} batch {b}");
                // The root is the suite's over each line's digest by the
                // reference path (serde_json, `canonical_bytes`, the
                // suite's unbatched digest).
                let digests: Vec<Hash> = lines
                    .iter()
                    .map(|l| {
                        let value: serde_json::Value = serde_json::from_slice(l).unwrap();
                        suite.content_digest(&crate::canonical::canonical_bytes(&value))
                    })
                    .collect();
                let pos = BatchPosition {
                    chain: &got.chain,
                    view: "ecs",
                    run: got.run,
                    batch: got.batch,
                    first_seq: got.first_seq,
                };
                assert_eq!(
                    got.root,
                    suite.batch_root(pos, &digests),
                    "{suite:?} {keys:?}"
                );
            }
            // The first line was parsed, the second built the form
            // template (and was also parsed, to check it); all but the
            // first were filled.
            assert_eq!(
                templated.form_template_counts(),
                counts,
                "{suite:?} {keys:?}"
            );
        }
    }

    /// `seal` reads the lines of views without templates against their
    /// connection's line of the last batch (connection bases): its seals
    /// equal those of an auditor that parses every line.
    #[test]
    fn seal_with_connection_bases_equals_the_general_path() {
        for suite in [Suite::V1, Suite::V2, Suite::V3] {
            let (mut bases, mut general) = (started(suite, [9; 16]), started(suite, [9; 16]));
            general.canon_bases = Canonicalizer::general_only();
            for b in 0..6u64 {
                let s = bases.stamp(120, t(10 * b)).unwrap();
                assert_eq!(general.stamp(120, t(10 * b)).unwrap(), s);
                let lines: Vec<Vec<u8>> = (0..s.count)
                    .map(|i| {
                        // 120 connections in 3 label sets, in another
                        // order each batch.
                        let conn = (i * 7 + b * 13) % 120;
                        let labels: String = (0..1 + conn % 3)
                            .map(|j| format!(r#""k{j}":"pod-{conn}""#))
                            .collect::<Vec<_>>()
                            .join(",");
                        let mut l = format!(
                            r#"{{"time":{},"src":{{"ip":"10.0.0.{conn}","labels":{{{labels}}}}},"network":{{"bytes":{},"community_uid":"1:c{conn}="}}}}"#,
                            10 * b,
                            conn * 100 + b * b * 1000
                        )
                        .into_bytes();
                        assert!(s.fields("ecs", i).append_to_json_object(&mut l));
                        l
                    })
                    .collect();
                let want = general.seal("ecs", &s, &lines, t(10 * b)).unwrap();
                let got = bases.seal("ecs", &s, &lines, t(10 * b)).unwrap();
                assert_eq!(got, want, "{suite:?} batch {b}");
            }
            // Every line after the first batch (but the three that taught
            // the label sets' shapes) against its connection's last line.
            assert_eq!(bases.canon_bases.base_hits(), 5 * 120 - 3, "{suite:?}");
            assert_eq!(general.canon_bases.base_hits(), 0);
            // v3: each of those repeats its connection's stable leaves
            // (`src`, the Community ID) and is read as v3's parts.
            let parts = if suite == Suite::V3 { 5 * 120 - 3 } else { 0 };
            assert_eq!(bases.canon_bases.v3_part_hits(), parts, "{suite:?}");
        }
    }

    /// A templated line whose audit fields are another record's is
    /// parsed and refused as by `seal`; one changed outside its holes is
    /// parsed, and sealed as its parse says.
    #[test]
    fn seal_templated_checks_what_it_does_not_fill() {
        let (mut a, mut b) = (started(Suite::V2, [4; 16]), started(Suite::V2, [4; 16]));
        let s = a.stamp(3, t(1)).unwrap();
        b.stamp(3, t(1)).unwrap();
        let (mut l, table) = templated_lines(&s, "ecs");
        let good = l.clone();
        let mut refused_at_1 = |l: &[Vec<u8>]| {
            let err = a.seal_templated("ecs", &s, l, &table, t(1)).unwrap_err();
            assert!(
                matches!(err, AuditError::BadRecord { index: 1, .. }),
                "{err}"
            );
        };
        l[1] = l[2].clone();
        refused_at_1(&l);
        // Line 1's own body with line 2's audit fields: the template fits,
        // the fields do not.
        let mut l = good.clone();
        let at = memchr::memmem::find(&l[1], b",\"flowscribe.audit\":").unwrap();
        l[1].truncate(at);
        l[1].push(b'}');
        assert!(s.append_fields("ecs", 2, &mut l[1]));
        refused_at_1(&l);
        let mut changed = good.clone();
        let at = memchr::memmem::find(&changed[2], b"flow").unwrap();
        changed[2][at] = b'F';
        let got = a.seal_templated("ecs", &s, &changed, &table, t(1)).unwrap();
        let want = b.seal("ecs", &s, &changed, t(1)).unwrap();
        assert_eq!(got, want);
        // Filled: line 0 of the second attempt (the template's second
        // line), lines 0 and 1 of this one.
        assert_eq!(a.form_template_counts(), (3, 1, 0));
    }

    #[test]
    fn checkpoints_every_interval_also_when_idle_and_after_a_clock_step_back() {
        let (mut a, _) = Auditor::start(
            MemoryStateStore::default(),
            signer(),
            options(100),
            t(0),
            [5; 16],
        )
        .unwrap();
        let first = a.tick(t(0)).unwrap();
        assert_eq!((first.checkpoints.len(), first.heartbeat_due), (1, true));
        assert_eq!(first.checkpoints[0].number, 0);
        let at_30 = a.tick(t(30)).unwrap();
        assert_eq!((at_30.checkpoints.len(), at_30.heartbeat_due), (0, true));
        assert_eq!(a.tick(t(59)).unwrap(), Tick::default());
        let at_60 = a.tick(t(60)).unwrap();
        assert_eq!(at_60.checkpoints.len(), 1);
        assert_eq!(at_60.checkpoints[0].number, 1);
        // The clock steps back 10 minutes: due at once, not in 11 minutes.
        let back = a.tick(t(60) - Duration::from_secs(600)).unwrap();
        assert_eq!((back.checkpoints.len(), back.heartbeat_due), (1, true));
        let note = crate::note::SignedNote::parse(&back.checkpoints[0].note).unwrap();
        let body = Checkpoint::parse_body(&note.body).unwrap();
        assert_eq!((body.number, body.batches, body.size), (2, 0, 0));
    }
}
