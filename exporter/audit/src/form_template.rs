//! Form templates: the canonical form of a record written from an
//! encoder's template, made by filling holes instead of parsing the line.
//!
//! The ECS encoder writes most records from a template, the line of an
//! earlier record with *holes* (counters, times, the source port, ids)
//! whose new values are copied in, and can say which template wrote a
//! line and where the values went (`EcsEncoder::last_holes`). Leaves are
//! sorted by path, not by value, so the canonical form of such a line is
//! the canonical form of the template's line with the same values at other
//! positions, as long as each value's canonical bytes are its line bytes:
//! a plain integer (`0`, `17`, `-3`; not `-0`, `1.0`, `1e3`), or text
//! inside a string leaf that has no escapes, made of printable ASCII
//! without `"` or `\`. A [`FormTemplate`] is built once per encoder
//! template, with one parse of a line in which every value is replaced by
//! a unique sentinel (so that where each value lands in the form can be
//! found); every later line of that template gets its form by copying:
//! about 1 KB instead of a parse.
//!
//! Nothing is trusted: [`FormTemplate::fill`] compares every byte of the
//! line outside the holes with the template's line and checks each value,
//! and says `false` (the caller canonicalises the line as usual) on any
//! difference. The caller still vouches that the line has no audit fields
//! (the auditor strips and checks the appended ones itself).
//!
//! Pure: no IO, no clocks. It must not change the canonical form's
//! definition (`canonical.rs`): a form made here equals
//! `Canonicalizer::canonicalize` of the line byte for byte, and debug
//! builds check that on every sealed line (`Auditor::seal_templated`).

use std::collections::HashMap;

use crate::canonical::Canonicalizer;
use crate::hash::Suite;

/// Which lines of a batch came from which encoder template, and where
/// their holes' values are: the side table the encoder gives.
#[derive(Debug, Default, Clone)]
pub struct HoleTable {
    /// Per line: the template id and its spans in `spans` (start, end).
    lines: Vec<Option<(u64, u32, u32)>>,
    spans: Vec<(u32, u32)>,
}

impl HoleTable {
    pub fn new() -> Self {
        HoleTable::default()
    }

    /// The next line's entry: its template id and, per hole in the
    /// template's order, the start and end of its value in the line; or
    /// `None` for a line not written from a template.
    pub fn push(&mut self, holes: Option<(u64, &[(u32, u32)])>) {
        let entry = holes.and_then(|(template, spans)| {
            let start = u32::try_from(self.spans.len()).ok()?;
            let end = u32::try_from(self.spans.len() + spans.len()).ok()?;
            self.spans.extend_from_slice(spans);
            Some((template, start, end))
        });
        self.lines.push(entry);
    }

    /// Line `index`'s entry (`None` past the end).
    pub fn get(&self, index: usize) -> Option<(u64, &[(u32, u32)])> {
        let (template, start, end) = (*self.lines.get(index)?)?;
        Some((template, self.spans.get(start as usize..end as usize)?))
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub fn clear(&mut self) {
        self.lines.clear();
        self.spans.clear();
    }
}

/// What a hole's value is in the line, which decides what it may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A whole JSON number: must be a canonical integer.
    Integer,
    /// Text inside a string leaf without escapes: printable ASCII but `"`
    /// and `\`.
    Text,
}

/// The canonical form of a template's lines, with holes.
#[derive(Debug, Clone)]
pub struct FormTemplate {
    /// The line's bytes outside the holes, run after run (a run before
    /// each hole and the last one after it; the line up to the end given
    /// to [`FormTemplate::build`]).
    line_runs: Box<[u8]>,
    /// Where each line run ends in `line_runs`, and each hole's kind.
    line_holes: Box<[(u32, Kind)]>,
    /// The form, with holes.
    form: Runs,
    /// The hash input of suite v3 (`crate::hash_v3`), with holes: the
    /// stable digest (computed once) and the volatile leaves. `None` when
    /// a hole lies in a stable leaf (the stable part then differs from
    /// line to line).
    v3: Option<Runs>,
}

/// Bytes with holes for a line's values.
#[derive(Debug, Clone)]
struct Runs {
    /// The bytes outside the holes.
    bytes: Box<[u8]>,
    /// Per hole in order: where it goes in `bytes` (the end of the run
    /// before it) and which hole (line order) it is.
    holes: Box<[(u32, u16)]>,
}

impl Runs {
    /// The runs of `text` (a form or hash input with the sentinels of
    /// `kinds` in it), searched from `from`: each sentinel must be there
    /// exactly once.
    fn of(text: &[u8], from: usize, kinds: &[Kind]) -> Option<Runs> {
        let mut found = Vec::with_capacity(kinds.len());
        let mut sentinel_text = Vec::with_capacity(24);
        for (i, &kind) in kinds.iter().enumerate() {
            sentinel_text.clear();
            sentinel(kind, i, &mut sentinel_text);
            let at = from + memchr::memmem::find(text.get(from..)?, &sentinel_text)?;
            if memchr::memmem::find(&text[at + 1..], &sentinel_text).is_some() {
                return None;
            }
            found.push((at, sentinel_text.len(), u16::try_from(i).ok()?));
        }
        found.sort_unstable();
        let mut bytes = Vec::with_capacity(text.len());
        let mut holes = Vec::with_capacity(found.len());
        let mut at = 0;
        for (start, len, i) in found {
            if start < at {
                return None;
            }
            bytes.extend_from_slice(&text[at..start]);
            holes.push((u32::try_from(bytes.len()).ok()?, i));
            at = start + len;
        }
        bytes.extend_from_slice(&text[at..]);
        Some(Runs {
            bytes: bytes.into(),
            holes: holes.into(),
        })
    }

    /// Append the runs with the line's values in the holes (`spans`: where
    /// the values are in `line`).
    fn write(&self, line: &[u8], spans: &[(u32, u32)], out: &mut Vec<u8>) {
        out.reserve(self.bytes.len() + 256);
        let mut at = 0;
        for &(run_end, hole) in self.holes.iter() {
            let run_end = run_end as usize;
            out.extend_from_slice(&self.bytes[at..run_end]);
            let (start, end) = spans[usize::from(hole)];
            out.extend_from_slice(&line[start as usize..end as usize]);
            at = run_end;
        }
        out.extend_from_slice(&self.bytes[at..]);
    }

    fn held_bytes(&self) -> usize {
        self.bytes.len() + std::mem::size_of_val(&*self.holes)
    }
}

/// A canonical integer as written: `0`, or an optional `-` and digits not
/// starting with `0`, within the integer types the canonicaliser writes
/// plainly (`i64` when negative, `u64` otherwise).
fn plain_integer(v: &[u8]) -> bool {
    let (digits, max): (&[u8], &[u8]) = match v.split_first() {
        Some((b'-', rest)) => (rest, b"9223372036854775808"),
        _ => (v, b"18446744073709551615"),
    };
    match digits {
        [b'0'] => digits.len() == v.len(),
        [first, ..] => {
            *first != b'0'
                && digits.iter().fold(true, |ok, b| ok & b.is_ascii_digit())
                // Digits of one length compare as their values do.
                && (digits.len() < max.len() || (digits.len() == max.len() && digits <= max))
        }
        [] => false,
    }
}

/// Text whose canonical string bytes are itself.
fn plain_text(v: &[u8]) -> bool {
    // A fold without early exit: values are short, and this form
    // vectorises.
    v.iter().fold(true, |ok, &b| {
        ok & (0x20..0x7f).contains(&b) & (b != b'"') & (b != b'\\')
    })
}

impl Kind {
    fn admits(self, v: &[u8]) -> bool {
        match self {
            Kind::Integer => plain_integer(v),
            Kind::Text => plain_text(v),
        }
    }
}

/// The kind of each span of `line`: `None` when one is not a whole number
/// token, nor inside a string value (not a key) without escapes, or when
/// the spans are out of order or overlap.
fn kinds(line: &[u8], spans: &[(u32, u32)]) -> Option<Vec<Kind>> {
    let mut kinds = Vec::with_capacity(spans.len());
    let mut next = spans
        .iter()
        .map(|&(s, e)| (s as usize, e as usize))
        .peekable();
    let mut at = 0;
    let mut last_end = 0;
    while at < line.len() {
        let Some(&(start, end)) = next.peek() else {
            break;
        };
        if start < last_end || end < start || end > line.len() {
            return None;
        }
        match line[at] {
            b'"' => {
                // A string: its content is `open + 1..close`.
                let open = at;
                let mut i = open + 1;
                let mut escapes = false;
                while i < line.len() && line[i] != b'"' {
                    if line[i] == b'\\' {
                        escapes = true;
                        i += 1;
                    }
                    i += 1;
                }
                let close = i;
                if close >= line.len() {
                    return None;
                }
                let after = line[close + 1..]
                    .iter()
                    .find(|b| !b.is_ascii_whitespace())
                    .copied();
                while let Some(&(s, e)) = next.peek() {
                    if s > close {
                        break;
                    }
                    if s <= open
                        || e > close
                        || s < last_end
                        || e < s
                        || escapes
                        || after == Some(b':')
                    {
                        return None;
                    }
                    kinds.push(Kind::Text);
                    last_end = e;
                    next.next();
                }
                at = close + 1;
            }
            b'-' | b'0'..=b'9' => {
                let token = at;
                while at < line.len()
                    && matches!(line[at], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    at += 1;
                }
                if start < at {
                    if (start, end) != (token, at) {
                        return None;
                    }
                    kinds.push(Kind::Integer);
                    last_end = end;
                    next.next();
                }
            }
            _ => {
                if start <= at {
                    // A hole over structure or a literal.
                    return None;
                }
                at += 1;
            }
        }
    }
    (next.peek().is_none()).then_some(kinds)
}

/// The sentinel standing in for hole `i` of `kind` while building: unique
/// text that is its own canonical form.
fn sentinel(kind: Kind, i: usize, out: &mut Vec<u8>) {
    match kind {
        // 18 digits: an i64.
        Kind::Integer => out.extend_from_slice(format!("-918273645546{i:06}").as_bytes()),
        // DEL is printable for JSON (not escaped) but never in the
        // encoder's text, and an `admits` check refuses it in values.
        Kind::Text => out.extend_from_slice(format!("\x7f~fs{i:06}~\x7f").as_bytes()),
    }
}

impl FormTemplate {
    /// The form template of the JSON object `line[..body_end]` followed by
    /// `}` (a line without its closing brace, or without the audit fields
    /// appended there), whose holes' values are at `spans` (in line order).
    /// Parses once, with `canon`. `None` when a hole is not a plain
    /// integer or text inside an escape-free string value, when the line's
    /// own values are not plain, when a sentinel cannot be found exactly
    /// once in the form, or when the line has audit fields.
    pub fn build(
        line: &[u8],
        body_end: usize,
        spans: &[(u32, u32)],
        canon: &mut Canonicalizer,
    ) -> Option<FormTemplate> {
        if spans.len() > usize::from(u16::MAX) {
            return None;
        }
        let line = line.get(..body_end)?;
        let kinds = kinds(line, spans)?;
        let mut line_runs = Vec::with_capacity(line.len());
        let mut line_holes = Vec::with_capacity(spans.len());
        let mut with_sentinels = Vec::with_capacity(line.len() + 24 * spans.len());
        let mut at = 0;
        for (i, (&(start, end), &kind)) in spans.iter().zip(&kinds).enumerate() {
            let (start, end) = (start as usize, end as usize);
            if !kind.admits(&line[start..end]) {
                return None;
            }
            line_runs.extend_from_slice(&line[at..start]);
            line_holes.push((u32::try_from(line_runs.len()).ok()?, kind));
            with_sentinels.extend_from_slice(&line[at..start]);
            sentinel(kind, i, &mut with_sentinels);
            at = end;
        }
        line_runs.extend_from_slice(&line[at..]);
        with_sentinels.extend_from_slice(&line[at..]);
        with_sentinels.push(b'}');
        canon.canonicalize(&with_sentinels).ok()?;
        // Two leaves of one path are ordered by value: where a hole's value
        // goes would depend on it.
        if canon.has_audit() || canon.had_duplicate_paths() {
            return None;
        }
        let form = canon.form();
        let form_with_holes = Runs::of(form, 0, &kinds)?;
        // v3: the stable leaves hold no sentinel (no hole), so their
        // digest is the same for every line of the template.
        let (mut stable, mut volatile) = (Vec::new(), Vec::new());
        let v3 = crate::hash_v3::split(form, &mut stable, &mut volatile).and_then(|()| {
            let mut text = Vec::with_capacity(24);
            let in_stable = kinds.iter().enumerate().any(|(i, &kind)| {
                text.clear();
                sentinel(kind, i, &mut text);
                memchr::memmem::find(&stable, &text).is_some()
            });
            if in_stable {
                return None;
            }
            let mut input = Vec::with_capacity(33 + volatile.len());
            crate::hash_v3::write_hash_input(
                &crate::hash_v2::content_digest_v2(&stable),
                &volatile,
                &mut input,
            );
            // Past the digest: its bytes are arbitrary.
            Runs::of(&input, 33, &kinds)
        });
        Some(FormTemplate {
            line_runs: line_runs.into(),
            line_holes: line_holes.into(),
            form: form_with_holes,
            v3,
        })
    }

    /// Appends the canonical form of `line[..body_end]` followed by `}`
    /// (a line of this template, `spans` where its values are) to `out`
    /// and says `true`; `false`, and `out` as it was, when the line is not
    /// this template's with plain values (the caller canonicalises it).
    pub fn fill(
        &self,
        line: &[u8],
        body_end: usize,
        spans: &[(u32, u32)],
        out: &mut Vec<u8>,
    ) -> bool {
        self.fill_for(Suite::V2, line, body_end, spans, out)
    }

    /// [`fill`](Self::fill), appending what `suite` hashes: for v3 the
    /// line's hash input (`crate::hash_v3::write_hash_input`) instead of
    /// its form, and `false` also when the template has none (a hole in a
    /// stable leaf).
    pub fn fill_for(
        &self,
        suite: Suite,
        line: &[u8],
        body_end: usize,
        spans: &[(u32, u32)],
        out: &mut Vec<u8>,
    ) -> bool {
        let runs = match suite {
            Suite::V3 => self.v3.as_ref(),
            _ => Some(&self.form),
        };
        runs.is_some_and(|runs| self.fill_runs(runs, line, body_end, spans, out))
    }

    /// `runs` with the line's values, when the line is this template's.
    fn fill_runs(
        &self,
        runs: &Runs,
        line: &[u8],
        body_end: usize,
        spans: &[(u32, u32)],
        out: &mut Vec<u8>,
    ) -> bool {
        let ok = self.is_line(line, body_end, spans);
        if ok {
            runs.write(line, spans, out);
        }
        ok
    }

    /// Is `line[..body_end]` this template's line with plain values at
    /// `spans`? Every byte outside the holes is compared.
    fn is_line(&self, line: &[u8], body_end: usize, spans: &[(u32, u32)]) -> bool {
        if spans.len() != self.line_holes.len() || body_end > line.len() {
            return false;
        }
        let (mut at, mut run) = (0, 0);
        for (&(start, end), &(run_end, kind)) in spans.iter().zip(self.line_holes.iter()) {
            let (start, end, run_end) = (start as usize, end as usize, run_end as usize);
            if start < at || end < start || end > body_end {
                return false;
            }
            if line[at..start] != self.line_runs[run..run_end] || !kind.admits(&line[start..end]) {
                return false;
            }
            (at, run) = (end, run_end);
        }
        line[at..body_end] == self.line_runs[run..]
    }

    /// The number of holes.
    pub fn holes(&self) -> usize {
        self.line_holes.len()
    }

    /// The bytes it holds (constant line and form bytes, hole tables).
    pub fn held_bytes(&self) -> usize {
        self.line_runs.len()
            + std::mem::size_of_val(&*self.line_holes)
            + self.form.held_bytes()
            + self.v3.as_ref().map_or(0, Runs::held_bytes)
    }
}

/// What [`FormTemplates`] knows of an encoder template.
#[derive(Debug)]
enum Slot {
    /// One line of it was seen (and parsed): a template used once costs
    /// no build.
    Seen,
    Built(FormTemplate),
    Refused,
}

/// What [`FormTemplates::get`] says about an encoder template.
#[derive(Debug)]
pub enum Known<'t> {
    /// Its form template: fill from it.
    Built(&'t FormTemplate),
    /// Parse the line: the template is new (now marked seen) or was
    /// refused.
    Parse,
    /// Its second line: [`FormTemplates::build`] from it.
    Build,
}

/// Form templates by encoder template id, bounded: a full map is cleared
/// (a template of a connection that ended is never asked for again).
/// A form template is built on an encoder template's second line, so that
/// templates used once cost a map entry, not a build (one parse of a
/// sentinel line). Refusals are remembered, so a template that has no
/// form template is tried once.
#[derive(Debug)]
pub struct FormTemplates {
    map: HashMap<(usize, u64), Slot>,
    capacity: usize,
    /// Sentinel lines are parsed here, not by the seal's canonicaliser,
    /// whose learned shapes would otherwise be the sentinels' (and only by
    /// the general path: each is parsed once).
    canon: Canonicalizer,
    /// Bytes held by the built form templates (constant line and form
    /// bytes), bounded by `max_bytes` as the count is by `capacity`.
    bytes: usize,
    max_bytes: usize,
    built: u64,
    refused: u64,
}

/// The default bound: the ECS encoder keeps up to 4,096 connection and as
/// many peer templates (`fragment_cache::DEFAULT_CAPACITY` each). A form
/// template of a ~3 KB ECS line holds its ~3 KB of constant line bytes and
/// its ~4 KB of form: ~60 MB if full, so the bytes held are bounded too
/// ([`DEFAULT_FORM_TEMPLATE_BYTES`]). Either bound, reached, clears the
/// map: templates still in use cost one parse and one build again.
pub const DEFAULT_FORM_TEMPLATES: usize = 8192;

/// The default bound on the bytes the form templates hold: 32 MiB.
pub const DEFAULT_FORM_TEMPLATE_BYTES: usize = 32 << 20;

impl Default for FormTemplates {
    fn default() -> Self {
        FormTemplates::new(DEFAULT_FORM_TEMPLATES)
    }
}

impl FormTemplates {
    pub fn new(capacity: usize) -> Self {
        FormTemplates {
            map: HashMap::new(),
            capacity: capacity.max(1),
            canon: Canonicalizer::general_only(),
            bytes: 0,
            max_bytes: DEFAULT_FORM_TEMPLATE_BYTES,
            built: 0,
            refused: 0,
        }
    }

    /// The same, with another bound on the bytes held.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// What to do with a line of encoder template `template` in view
    /// `view` (a view's lines come from one encoder).
    pub fn get(&mut self, view: usize, template: u64) -> Known<'_> {
        if !self.map.contains_key(&(view, template)) {
            if self.map.len() >= self.capacity || self.bytes > self.max_bytes {
                self.map.clear();
                self.bytes = 0;
            }
            self.map.insert((view, template), Slot::Seen);
            return Known::Parse;
        }
        match self.map.get(&(view, template)) {
            Some(Slot::Built(t)) => Known::Built(t),
            Some(Slot::Seen) => Known::Build,
            Some(Slot::Refused) | None => Known::Parse,
        }
    }

    /// Builds and keeps the form template of `(view, template)` from
    /// `line[..body_end]` (as [`FormTemplate::build`]).
    pub fn build(
        &mut self,
        view: usize,
        template: u64,
        line: &[u8],
        body_end: usize,
        spans: &[(u32, u32)],
    ) -> Option<&FormTemplate> {
        let slot = match FormTemplate::build(line, body_end, spans, &mut self.canon) {
            Some(t) => {
                self.built += 1;
                self.bytes += t.held_bytes();
                Slot::Built(t)
            }
            None => {
                self.refused += 1;
                Slot::Refused
            }
        };
        match self
            .map
            .entry((view, template))
            .insert_entry(slot)
            .into_mut()
        {
            Slot::Built(t) => Some(t),
            _ => None,
        }
    }

    /// Refuses `(view, template)` for good (its form did not match a
    /// parse).
    pub fn refuse(&mut self, view: usize, template: u64) {
        if let Some(slot) = self.map.get_mut(&(view, template)) {
            if let Slot::Built(t) = slot {
                self.built = self.built.saturating_sub(1);
                self.bytes = self.bytes.saturating_sub(t.held_bytes());
            }
            *slot = Slot::Refused;
            self.refused += 1;
        }
    }

    /// Form templates built, and encoder templates refused.
    pub fn counts(&self) -> (u64, u64) {
        (self.built, self.refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(line: &[u8], value: &str) -> (u32, u32) {
        let at = memchr::memmem::find(line, value.as_bytes()).unwrap();
        (at as u32, (at + value.len()) as u32)
    }

    #[test]
    fn plain_values() {
        for v in [
            "0",
            "7",
            "-3",
            "18446744073709551615",
            "-9223372036854775808",
            "-123456789012345678",
        ] {
            assert!(plain_integer(v.as_bytes()), "{v}");
        }
        for v in [
            "",
            "-",
            "-0",
            "01",
            "1.0",
            "1e3",
            "+1",
            "123456789012345678901",
            "18446744073709551616",
            "-9223372036854775809",
        ] {
            assert!(!plain_integer(v.as_bytes()), "{v}");
        }
        assert!(plain_text(b"2025-11-21T10:00:00.123Z"));
        assert!(plain_text(b""));
        for v in ["a\"b", "a\\b", "a\nb", "\x7f", "é"] {
            assert!(!plain_text(v.as_bytes()), "{v:?}");
        }
    }

    /// Values move in the form (leaves sorted by path), and a template
    /// fills them where they went.
    #[test]
    fn a_form_template_fills_its_values_where_the_form_has_them() {
        let line =
            br#"{"z":{"n":17,"t":"at 2025-01-01 ok"},"a":{"m":-4},"s":"x","b":[1,{"q":"id-9"}]}"#;
        let spans = [
            span(line, "17"),
            span(line, "2025-01-01"),
            span(line, "-4"),
            span(line, "id-9"),
        ];
        let mut canon = Canonicalizer::new();
        let t = FormTemplate::build(line, line.len() - 1, &spans, &mut canon).unwrap();
        assert_eq!(t.holes(), 4);
        let mut out = Vec::new();
        assert!(t.fill(line, line.len() - 1, &spans, &mut out));
        assert_eq!(out, canon.canonicalize(line).unwrap());
        // Another line of the same template.
        let other =
            br#"{"z":{"n":123456,"t":"at 1999-12-31T23 ok"},"a":{"m":0},"s":"x","b":[1,{"q":""}]}"#;
        let other_spans = [
            span(other, "123456"),
            span(other, "1999-12-31T23"),
            (span(other, "0}").0, span(other, "0}").0 + 1),
            (span(other, r#""}]"#).0, span(other, r#""}]"#).0),
        ];
        out.clear();
        assert!(t.fill(other, other.len() - 1, &other_spans, &mut out));
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            String::from_utf8(canon.canonicalize(other).unwrap().to_vec()).unwrap()
        );
        // A body without its closing brace: the form of body + `}`.
        let with_tail = [&other[..other.len() - 1], b",\"flowscribe.audit\":{}}"].concat();
        out.clear();
        assert!(t.fill(&with_tail, other.len() - 1, &other_spans, &mut out));
        assert_eq!(out, canon.canonicalize(other).unwrap());
    }

    /// Anything a form template cannot stand for is refused at build or
    /// at fill (`false`, output untouched).
    #[test]
    fn doubtful_lines_are_refused() {
        let line = br#"{"k":"v 12 w","n":35,"e":"a\"b 7","f":1.5}"#;
        let mut canon = Canonicalizer::new();
        let good = [span(line, "12"), span(line, "35")];
        let t = FormTemplate::build(line, line.len() - 1, &good, &mut canon).unwrap();
        // A hole in an escaped string, in a key, over part of a number, a
        // float, over structure; out of order.
        for bad in [
            vec![span(line, "7")],
            vec![(2, 3)],
            vec![(span(line, "35").0, span(line, "35").0 + 1)],
            vec![span(line, "1.5")],
            vec![span(line, ",\"n\"")],
            vec![span(line, "35"), span(line, "12")],
            vec![(0, 100)],
            // Overlapping or backwards inside one string.
            vec![span(line, "v 12"), span(line, "12 w")],
            vec![
                span(line, "v 1"),
                (span(line, "w").0, span(line, "w").0 - 1),
            ],
        ] {
            assert!(
                FormTemplate::build(line, line.len() - 1, &bad, &mut canon).is_none(),
                "{bad:?}"
            );
        }
        // Two leaves of one path: ordered by value in the form, so where
        // the hole goes depends on it (5 sorts before 7, 9 after).
        let twice = br#"{"a":{"b":5},"a.b":7}"#;
        assert!(
            FormTemplate::build(twice, twice.len() - 1, &[span(twice, "5")], &mut canon).is_none()
        );
        // Audit fields in the template line.
        let audited = br#"{"flowscribe.audit":{"seq":1},"n":35}"#;
        assert!(
            FormTemplate::build(
                audited,
                audited.len() - 1,
                &[span(audited, "35")],
                &mut canon
            )
            .is_none()
        );
        // At fill: a changed constant byte, a value that is not plain, a
        // wrong number of spans.
        let mut out = b"kept".to_vec();
        let changed = br#"{"k":"v 12 w","n":35,"e":"a\"b 8","f":1.5}"#;
        assert!(!t.fill(changed, changed.len() - 1, &good, &mut out));
        // A line whose two values (at these texts) the fill refuses.
        let mut refused = |line: &[u8], first: &str, second: &str| {
            let spans = [span(line, first), span(line, second)];
            assert!(!t.fill(line, line.len() - 1, &spans, &mut out));
        };
        refused(
            br#"{"k":"v 1" w","n":35,"e":"a\"b 7","f":1.5}"#,
            "1\"",
            "35",
        );
        refused(
            br#"{"k":"v 12 w","n":3.5,"e":"a\"b 7","f":1.5}"#,
            "12",
            "3.5",
        );
        refused(br#"{"k":"v 12 w","n":-0,"e":"a\"b 7","f":1.5}"#, "12", "-0");
        assert!(!t.fill(line, line.len() - 1, &good[..1], &mut out));
        assert_eq!(out, b"kept");
        assert!(t.fill(line, line.len() - 1, &good, &mut out));
    }

    #[test]
    fn the_cache_builds_on_the_second_line_is_bounded_and_remembers_refusals() {
        let line = br#"{"n":35}"#;
        let spans = [span(line, "35")];
        let mut cache = FormTemplates::new(3);
        assert!(matches!(cache.get(0, 1), Known::Parse), "first line");
        assert!(matches!(cache.get(0, 1), Known::Build), "second line");
        assert!(cache.build(0, 1, line, line.len() - 1, &spans).is_some());
        assert!(matches!(cache.get(0, 1), Known::Built(_)));
        assert!(matches!(cache.get(0, 2), Known::Parse));
        assert!(cache.build(0, 2, line, line.len() - 1, &[(1, 2)]).is_none());
        assert!(matches!(cache.get(0, 2), Known::Parse), "refused");
        assert!(matches!(cache.get(1, 1), Known::Parse), "views are apart");
        assert_eq!(cache.counts(), (1, 1));
        cache.refuse(0, 1);
        assert!(matches!(cache.get(0, 1), Known::Parse));
        assert_eq!(cache.counts(), (0, 2));
        // Full (3 entries): the next new template clears the map.
        assert!(matches!(cache.get(0, 3), Known::Parse));
        assert!(matches!(cache.get(0, 3), Known::Build));
        assert!(matches!(cache.get(1, 1), Known::Parse), "cleared");
    }

    /// The bytes held are bounded too: past the budget, the next new
    /// template clears the map.
    #[test]
    fn the_cache_is_bounded_in_bytes() {
        let line = br#"{"n":35,"s":"a fairly long constant string of text"}"#;
        let spans = [span(line, "35")];
        let t =
            FormTemplate::build(line, line.len() - 1, &spans, &mut Canonicalizer::new()).unwrap();
        let mut cache = FormTemplates::new(100).with_max_bytes(2 * t.held_bytes());
        for id in 1..=3 {
            assert!(matches!(cache.get(0, id), Known::Parse));
            assert!(cache.build(0, id, line, line.len() - 1, &spans).is_some());
        }
        // 3 built, over twice one's bytes: the next new one clears.
        assert!(matches!(cache.get(0, 1), Known::Built(_)));
        assert!(matches!(cache.get(0, 4), Known::Parse));
        assert!(matches!(cache.get(0, 1), Known::Parse), "cleared");
    }
}
