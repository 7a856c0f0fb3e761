//! A small streaming JSON writer for the hot encode paths (ECS): appends
//! to a caller's `Vec<u8>` so a buffer is reused across records, and builds
//! no `serde_json::Value` tree.
//!
//! It writes exactly what `serde_json::to_writer` writes for the same
//! document: compact, strings escaped the serde_json way (`\"`, `\\`,
//! `\b`, `\f`, `\n`, `\r`, `\t`, other control characters as `\u00XX`,
//! nothing else), integers in decimal. It does not order keys: callers
//! write object members in the order the output contract needs (sorted,
//! for the ECS goldens), and the golden tests check that order.
//!
//! Escaping is optimistic. Almost no text in a flow record needs escaping,
//! so a writer made with [`JsonWriter::new`] copies data strings as they
//! are and counts the quotes it writes itself. At the end one pass over
//! the output ([`JsonWriter::needed_escaping`]) finds whether any data
//! needed escaping: the structure never contains a control character or a
//! backslash, and a quote in the data makes the output hold more quotes
//! than the writer wrote. In that rare case the caller writes the record
//! again with [`JsonWriter::escaping`], which escapes every data string.
//!
//! Records assembled mostly from cached fragments ([`CachedJson`], made
//! by the escaping writer and exact as they are) use
//! [`JsonWriter::checking`] instead: the fragments are not checked again,
//! and the few data strings written per record are checked as they are
//! written, which costs less than scanning the whole record.

use std::fmt;

use serde_json::Value;

use crate::template::{Hole, Mark};

/// A constant member name, pre-rendered with the comma that may precede
/// it: `k!("name")` is `,"name":` (see [`JsonWriter::key`]).
macro_rules! k {
    ($name:literal) => {
        $crate::json::Key(concat!(",\"", $name, "\":"))
    };
}
pub(crate) use k;

/// Pre-rendered JSON text with its quotes counted at compile time: what
/// [`JsonWriter::members`] and [`JsonWriter::raw`] take (see [`frag!`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fragment {
    text: &'static str,
    quotes: usize,
}

impl Fragment {
    pub(crate) const fn new(text: &'static str) -> Fragment {
        let b = text.as_bytes();
        let mut quotes = 0;
        let mut i = 0;
        while i < b.len() {
            assert!(b[i] >= 0x20 && b[i] != b'\\', "a fragment needs no escapes");
            if b[i] == b'"' {
                quotes += 1;
            }
            i += 1;
        }
        Fragment { text, quotes }
    }

    #[cfg(test)]
    pub(crate) fn text(&self) -> &'static str {
        self.text
    }
}

/// A [`Fragment`], counted at compile time.
macro_rules! frag {
    ($text:expr) => {
        const { $crate::json::Fragment::new($text) }
    };
}
pub(crate) use frag;

/// A member name rendered by [`k!`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Key(pub(crate) &'static str);

/// Appends JSON tokens to `out`, placing commas itself.
pub(crate) struct JsonWriter<'a> {
    out: &'a mut Vec<u8>,
    /// Whether the next member or element needs a comma before it.
    comma: bool,
    /// Escape data strings as they are written (the second pass).
    escape: bool,
    /// Quotes written as structure (around names and strings, inside
    /// fragments); see the module doc.
    quotes: usize,
    /// Where this writer's output starts in `out`.
    start: usize,
    /// Check each data string as it is written instead of scanning the
    /// output at the end ([`JsonWriter::checking`]).
    check: bool,
    /// A checked data string needed escaping.
    dirty: bool,
    /// Where the text of the string open now starts (see
    /// [`JsonWriter::close_string`]).
    text_start: usize,
    /// Where the per-window values went, when a template is being made
    /// (see `crate::template`).
    marks: Option<&'a mut Vec<Mark>>,
}

/// JSON rendered once and copied into many records (see
/// `crate::fragment_cache`): escaped exactly as the escaping writer
/// escapes, with the comma state it needs before and leaves after.
#[derive(Debug, Clone)]
pub(crate) struct CachedJson {
    bytes: Box<[u8]>,
    /// Rendered after a member or element, so it carries its own leading
    /// comma (the tail of an object).
    separated: bool,
    /// Whether a comma is due after it.
    comma_after: bool,
}

impl CachedJson {
    /// Renders what `f` writes to a fresh escaping writer that starts with
    /// a comma due (`separated`) or not.
    pub(crate) fn render(separated: bool, f: impl FnOnce(&mut JsonWriter<'_>)) -> CachedJson {
        let mut buf = Vec::with_capacity(256);
        let mut w = JsonWriter::escaping(&mut buf);
        w.comma = separated;
        f(&mut w);
        let comma_after = w.comma;
        CachedJson {
            bytes: buf.into_boxed_slice(),
            separated,
            comma_after,
        }
    }
}

impl<'a> JsonWriter<'a> {
    /// A writer that copies data strings unescaped and notes whether one
    /// needed escaping (see the module doc).
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        let start = out.len();
        JsonWriter {
            out,
            comma: false,
            escape: false,
            quotes: 0,
            start,
            check: false,
            dirty: false,
            text_start: 0,
            marks: None,
        }
    }

    /// A writer that copies data strings unescaped, checking each as it
    /// is written (no scan of the output at the end): for records made
    /// mostly of cached fragments ([`JsonWriter::splice`]), which need no
    /// check, so that checking the few data strings left costs less than
    /// scanning the whole record.
    pub(crate) fn checking(out: &'a mut Vec<u8>) -> Self {
        let mut w = JsonWriter::new(out);
        w.check = true;
        w
    }

    /// This writer, noting in `marks` where it writes holes
    /// ([`JsonWriter::hole_u64`], [`JsonWriter::hole_plain`]).
    pub(crate) fn marking(mut self, marks: Option<&'a mut Vec<Mark>>) -> Self {
        self.marks = marks;
        self
    }

    /// A member whose value is a per-window number: a hole of a template.
    #[inline]
    pub(crate) fn hole_u64(&mut self, k: Key, v: u64, hole: Hole) {
        self.key(k);
        let start = self.out.len();
        push_u64(self.out, v);
        self.comma = true;
        self.mark(start, hole);
    }

    /// A member whose value is a per-window string that needs no escaping
    /// (a time, an id): its text is a hole of a template.
    #[inline]
    pub(crate) fn hole_plain(&mut self, k: Key, v: &[u8], hole: Hole) {
        debug_assert!(!v.iter().copied().any(needs_escape));
        self.key(k);
        self.quotes += 2;
        self.out.reserve(v.len() + 2);
        self.out.push(b'"');
        let start = self.out.len();
        self.out.extend_from_slice(v);
        self.mark(start, hole);
        self.out.push(b'"');
        self.comma = true;
    }

    #[inline]
    fn mark(&mut self, start: usize, hole: Hole) {
        if let Some(marks) = &mut self.marks {
            marks.push((start - self.start, self.out.len() - self.start, hole));
        }
    }

    /// A writer that escapes every data string.
    pub(crate) fn escaping(out: &'a mut Vec<u8>) -> Self {
        let start = out.len();
        JsonWriter {
            out,
            comma: false,
            escape: true,
            quotes: 0,
            start,
            check: false,
            dirty: false,
            text_start: 0,
            marks: None,
        }
    }

    /// Whether data written by a [`JsonWriter::new`] writer needed
    /// escaping, so the output must be written again: one pass over the
    /// output for control characters, backslashes and quotes the writer did
    /// not write itself. Always false for an escaping writer.
    pub(crate) fn needed_escaping(&self) -> bool {
        if self.escape {
            return false;
        }
        if self.check {
            return self.dirty;
        }
        let (special, quotes) = scan(&self.out[self.start..]);
        // Data can only add quotes; fewer than written is a counting bug.
        debug_assert!(quotes >= self.quotes, "{quotes} < {}", self.quotes);
        special || quotes != self.quotes
    }

    /// Copies a cached fragment, preceded by a comma where one is due
    /// (unless it carries its own). The fragment is exact as it is: only an
    /// escaping or a checking writer takes one (a scan of the output would
    /// see its escapes).
    #[inline]
    pub(crate) fn splice(&mut self, f: &CachedJson) {
        debug_assert!(self.escape || self.check, "a fragment needs no scan");
        if !f.separated {
            self.separate();
        }
        self.out.extend_from_slice(&f.bytes);
        self.text_start = self.out.len();
        self.comma = f.comma_after;
    }

    /// Opens a string value whose text is written with
    /// [`JsonWriter::text`] and closed by [`JsonWriter::close_string`].
    #[inline]
    pub(crate) fn open_string(&mut self) {
        self.separate();
        self.quotes += 1;
        self.out.push(b'"');
        self.text_start = self.out.len();
    }

    /// Closes a string opened by [`JsonWriter::open_string`] (or by a
    /// cached fragment that ends inside one: then only the text written
    /// since the fragment is checked).
    #[inline]
    pub(crate) fn close_string(&mut self) {
        self.check_from(self.text_start.min(self.out.len()));
        self.quotes += 1;
        self.out.push(b'"');
        self.comma = true;
    }

    #[inline]
    fn separate(&mut self) {
        if self.comma {
            self.out.push(b',');
        }
    }

    #[inline]
    pub(crate) fn begin_object(&mut self) {
        self.separate();
        self.out.push(b'{');
        self.comma = false;
    }

    #[inline]
    pub(crate) fn end_object(&mut self) {
        self.out.push(b'}');
        self.comma = true;
    }

    #[inline]
    pub(crate) fn begin_array(&mut self) {
        self.separate();
        self.out.push(b'[');
        self.comma = false;
    }

    #[inline]
    pub(crate) fn end_array(&mut self) {
        self.out.push(b']');
        self.comma = true;
    }

    /// A constant member name, pre-rendered by [`k!`] as `,"name":` (the
    /// comma is left out where none is due); one copy per name.
    #[inline]
    pub(crate) fn key(&mut self, Key(k): Key) {
        debug_assert!(
            k.len() >= 4
                && k.starts_with(",\"")
                && k.ends_with("\":")
                && !k.as_bytes()[2..k.len() - 2]
                    .iter()
                    .copied()
                    .any(needs_escape),
            "{k:?} is not a k!() key"
        );
        self.quotes += 2;
        let k = k.as_bytes();
        if self.comma {
            self.out.extend_from_slice(k);
        } else {
            self.out.extend_from_slice(&k[1..]);
        }
        self.comma = false;
    }

    /// Pre-rendered members (`"a":"x","b":1`, the crate's own constant
    /// text, written as they are), preceded by a comma where one is due.
    #[inline]
    pub(crate) fn members(&mut self, f: Fragment) {
        self.separate();
        self.quotes += f.quotes;
        self.out.extend_from_slice(f.text.as_bytes());
        self.comma = true;
    }

    /// Pre-rendered text appended as it is, with no separator (the end of
    /// a pre-rendered array).
    #[inline]
    pub(crate) fn raw(&mut self, f: Fragment) {
        self.quotes += f.quotes;
        self.out.extend_from_slice(f.text.as_bytes());
    }

    /// A member name from data (label keys).
    pub(crate) fn key_escaped(&mut self, k: &str) {
        self.separate();
        self.string(k);
        self.out.push(b':');
        self.comma = false;
    }

    /// A member name from data with every `.` written as `_` (Beats
    /// de-dotting).
    pub(crate) fn key_dedotted(&mut self, k: &str) {
        self.separate();
        self.quotes += 2;
        self.out.push(b'"');
        let start = self.out.len();
        let mut text = self.text();
        fmt::Write::write_str(&mut text, k).ok();
        self.check_from(start);
        for b in &mut self.out[start..] {
            if *b == b'.' {
                *b = b'_';
            }
        }
        self.out.extend_from_slice(b"\":");
        self.comma = false;
    }

    /// A data string, quoted.
    #[inline(always)]
    fn string(&mut self, v: &str) {
        self.quotes += 2;
        if self.escape {
            write_escaped_cold(self.out, v);
        } else {
            if self.check {
                check_bytes(&mut self.dirty, v.as_bytes());
            }
            self.out.reserve(v.len() + 2);
            self.out.push(b'"');
            self.out.extend_from_slice(v.as_bytes());
            self.out.push(b'"');
        }
    }

    #[inline]
    pub(crate) fn str(&mut self, v: &str) {
        self.separate();
        self.string(v);
        self.comma = true;
    }

    /// A string value that is known to need no escaping (digits, hex, base64,
    /// addresses, timestamps, the crate's constants).
    #[inline(always)]
    pub(crate) fn plain_str(&mut self, v: &[u8]) {
        debug_assert!(!v.iter().copied().any(needs_escape));
        self.separate();
        self.quotes += 2;
        self.out.reserve(v.len() + 2);
        self.out.push(b'"');
        self.out.extend_from_slice(v);
        self.out.push(b'"');
        self.comma = true;
    }

    /// A string value written in pieces through [`Text`] (`namespace/name`,
    /// a rule id), so a derived value needs no temporary `String`.
    #[inline]
    pub(crate) fn str_with(&mut self, f: impl FnOnce(&mut Text<'_>)) {
        self.separate();
        self.quotes += 2;
        self.out.push(b'"');
        let start = self.out.len();
        f(&mut self.text());
        self.check_from(start);
        self.out.push(b'"');
        self.comma = true;
    }

    /// In a checking writer, checks the data written since `start` (one
    /// check for a string written in pieces).
    #[inline]
    fn check_from(&mut self, start: usize) {
        if self.check && !self.escape {
            check_bytes(&mut self.dirty, &self.out[start..]);
        }
    }

    /// Text appended inside an open string.
    #[inline]
    pub(crate) fn text(&mut self) -> Text<'_> {
        Text {
            out: self.out,
            escape: self.escape,
        }
    }

    #[inline]
    pub(crate) fn u64(&mut self, v: u64) {
        self.separate();
        push_u64(self.out, v);
        self.comma = true;
    }

    /// An integer as a JSON string (`"6"`).
    #[inline]
    pub(crate) fn u64_str(&mut self, v: u64) {
        self.separate();
        self.quotes += 2;
        self.out.push(b'"');
        push_u64(self.out, v);
        self.out.push(b'"');
        self.comma = true;
    }

    #[inline]
    pub(crate) fn bool(&mut self, v: bool) {
        self.separate();
        self.out
            .extend_from_slice(if v { b"true" as &[u8] } else { b"false" });
        self.comma = true;
    }

    #[inline]
    pub(crate) fn field_str(&mut self, k: Key, v: &str) {
        self.key(k);
        self.str(v);
    }

    #[inline]
    pub(crate) fn field_plain(&mut self, k: Key, v: &[u8]) {
        self.key(k);
        self.plain_str(v);
    }

    #[inline]
    pub(crate) fn field_u64(&mut self, k: Key, v: u64) {
        self.key(k);
        self.u64(v);
    }

    #[inline]
    pub(crate) fn field_bool(&mut self, k: Key, v: bool) {
        self.key(k);
        self.bool(v);
    }
}

/// Text inside an open JSON string: copied (and checked) or escaped, as
/// its [`JsonWriter`] does.
pub(crate) struct Text<'a> {
    out: &'a mut Vec<u8>,
    escape: bool,
}

impl fmt::Write for Text<'_> {
    #[inline]
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.escape {
            write_escaped_body(self.out, s);
        } else {
            self.out.extend_from_slice(s.as_bytes());
        }
        Ok(())
    }
}

/// Notes in `dirty` when `s` needs escaping (a checking writer's data);
/// out of line, so that the writer's small methods stay inlined.
#[inline(never)]
fn check_bytes(dirty: &mut bool, s: &[u8]) {
    if find_escape(s, 0).is_some() {
        *dirty = true;
    }
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Whether `s` holds a control character or a backslash, and how many
/// quotes: branch-free over blocks of 64 bytes, which the compiler turns
/// into vector instructions.
fn scan(s: &[u8]) -> (bool, usize) {
    let mut special = 0u8;
    let mut quotes = 0usize;
    let mut blocks = s.chunks_exact(64);
    for block in &mut blocks {
        let (sp, q) = scan_block(block);
        special |= sp;
        quotes += usize::from(q);
    }
    let (sp, q) = scan_block(blocks.remainder());
    (special | sp != 0, quotes + usize::from(q))
}

/// [`scan`] of at most 255 bytes (so that the count fits a byte).
#[inline]
fn scan_block(block: &[u8]) -> (u8, u8) {
    let mut special = 0u8;
    let mut quotes = 0u8;
    for &b in block {
        special |= u8::from(b < 0x20) | u8::from(b == b'\\');
        quotes += u8::from(b == b'"');
    }
    (special, quotes)
}

/// [`write_escaped`] out of line: the second pass of a record, rarely run.
#[cold]
#[inline(never)]
fn write_escaped_cold(out: &mut Vec<u8>, s: &str) {
    write_escaped(out, s);
}

/// `s` as a JSON string literal, escaped as serde_json escapes it.
#[inline]
pub(crate) fn write_escaped(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    write_escaped_body(out, s);
    out.push(b'"');
}

fn write_escaped_body(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    while let Some(i) = find_escape(bytes, start) {
        out.extend_from_slice(&bytes[start..i]);
        write_escape(out, bytes[i]);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// The index of the first byte at or after `from` that needs escaping.
/// Eight bytes at a time (most strings need no escaping at all); the tail
/// is padded with a harmless byte and checked the same way.
#[inline]
fn find_escape(bytes: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    let mut chunks = bytes[from..].chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if escape_bits(u64::from_le_bytes(word)) != 0 {
            return chunk.iter().position(|&b| needs_escape(b)).map(|p| i + p);
        }
        i += 8;
    }
    let tail = chunks.remainder();
    let mut word = [b'a'; 8];
    word[..tail.len()].copy_from_slice(tail);
    if escape_bits(u64::from_le_bytes(word)) != 0 {
        return tail.iter().position(|&b| needs_escape(b)).map(|p| i + p);
    }
    None
}

/// Non-zero when any of the eight bytes of `x` is below 0x20, `"` or `\\`
/// (the classic "has a zero / has a byte less than" bit tricks: exact about
/// whether such a byte exists, which is all the callers need).
#[inline]
fn escape_bits(x: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_bytes = |y: u64| y.wrapping_sub(ONES) & !y & HIGHS;
    let control = x.wrapping_sub(ONES * 0x20) & !x & HIGHS;
    let quote = zero_bytes(x ^ (ONES * u64::from(b'"')));
    let backslash = zero_bytes(x ^ (ONES * u64::from(b'\\')));
    control | quote | backslash
}

#[cold]
fn write_escape(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match b {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        0x08 => out.extend_from_slice(b"\\b"),
        0x0c => out.extend_from_slice(b"\\f"),
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        _ => out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[usize::from(b >> 4)],
            HEX[usize::from(b & 0x0f)],
        ]),
    }
}

/// `v` in decimal, appended to `out`.
#[inline]
pub(crate) fn push_u64(out: &mut Vec<u8>, v: u64) {
    // Straight into the output: digits assembled on the stack and copied
    // out stall on store forwarding.
    let start = out.len();
    out.resize(start + crate::view::decimal_len(v), b'0');
    crate::view::write_decimal(&mut out[start..], v);
}

/// A short description of a JSON value for problem messages.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) if s.len() <= 64 => format!("string {s:?}"),
        Value::String(_) => "a long string".into(),
        Value::Array(a) => format!("an array of {}", a.len()),
        Value::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_escape_like_serde_json() {
        let mut all: String = (0u8..0x80).map(char::from).collect();
        all.push_str("é → ✓ \u{2028}\u{10ffff}");
        for s in [all.as_str(), "", "plain", "\"", "a\\b", "\u{7f}"] {
            let mut out = Vec::new();
            write_escaped(&mut out, s);
            assert_eq!(out, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
    }

    /// Every special byte at every position of strings of up to 40 bytes,
    /// so that both the 8-byte scan and its remainder see them.
    #[test]
    fn escapes_at_every_position() {
        for len in 0..40 {
            for at in 0..len {
                for special in ['"', '\\', '\n', '\u{1f}', '\u{0}', 'é', '\u{7f}'] {
                    let s: String = (0..len)
                        .map(|i| if i == at { special } else { 'a' })
                        .collect();
                    let mut out = Vec::new();
                    write_escaped(&mut out, &s);
                    assert_eq!(out, serde_json::to_vec(&s).unwrap(), "{s:?}");
                }
            }
        }
    }

    /// The document of `numbers_and_nesting_like_serde_json`, with or
    /// without text that needs escaping.
    fn nested(w: &mut JsonWriter<'_>, special: &str) {
        w.begin_object();
        w.field_u64(k!("a"), 0);
        w.field_u64(k!("b"), u64::MAX);
        w.key(k!("c"));
        w.begin_array();
        w.u64(10);
        w.begin_object();
        w.end_object();
        w.begin_array();
        w.end_array();
        w.bool(true);
        w.str_with(|f| fmt::Write::write_fmt(f, format_args!("x{}{special}y", 1)).unwrap());
        w.u64_str(7);
        w.end_array();
        w.key_dedotted(&format!("k.a{special}b.c"));
        w.bool(false);
        w.key_escaped(&format!("q{special}"));
        w.plain_str(b"1:abc=");
        w.members(frag!(r#""r":1,"s":"o""#));
        w.key(k!("t"));
        w.begin_array();
        w.members(frag!(r#""x""#));
        w.raw(frag!(r#","y"]"#));
        w.end_object();
    }

    #[test]
    fn numbers_and_nesting_like_serde_json() {
        for special in ["", "-", "\"", "\n"] {
            let want = serde_json::json!({
                "a": 0, "b": u64::MAX, "c": [10, {}, [], true, format!("x1{special}y"), "7"],
                format!("k_a{special}b_c"): false, format!("q{special}"): "1:abc=",
                "r": 1, "s": "o", "t": ["x", "y"],
            });
            let want = serde_json::to_vec(&want).unwrap();
            let mut out = Vec::new();
            let mut w = JsonWriter::escaping(&mut out);
            nested(&mut w, special);
            assert!(!w.needed_escaping(), "the escaping writer never asks");
            assert_eq!(out, want, "{special:?}");

            // The optimistic writer is exact when nothing needs escaping,
            // and says so when something did.
            let mut out = Vec::new();
            let mut w = JsonWriter::new(&mut out);
            nested(&mut w, special);
            let needed = w.needed_escaping();
            assert_eq!(needed, special.len() == 1 && special != "-", "{special:?}");
            if !needed {
                assert_eq!(out, want, "{special:?}");
            }
        }
    }

    /// `scan` sees every special byte at every position of strings of up
    /// to 200 bytes (three blocks and a remainder), counts quotes exactly,
    /// and finds nothing in clean text.
    #[test]
    fn scan_finds_every_special_byte_and_counts_quotes() {
        let clean: String = (0x20u8..0x7f)
            .filter(|b| *b != b'"' && *b != b'\\')
            .map(char::from)
            .chain("é → ✓ \u{7f}\u{10ffff}".chars())
            .collect();
        assert_eq!(scan(clean.as_bytes()), (false, 0));
        for len in [4095, 4096, 10_000] {
            assert_eq!(scan(&vec![b'"'; len]), (false, len));
        }
        for len in 0..200 {
            assert_eq!(scan(&vec![b'a'; len]), (false, 0));
            assert_eq!(scan(&vec![b'"'; len]), (false, len));
            for at in 0..len {
                for special in (0u8..0x20).chain([b'\\']) {
                    let mut s = vec![0xffu8; len];
                    s[at] = special;
                    assert_eq!(scan(&s), (true, 0), "{len} {at} {special}");
                }
                let mut s = vec![b'x'; len];
                s[at] = b'"';
                assert_eq!(scan(&s), (false, 1), "{len} {at}");
            }
        }
    }
}
