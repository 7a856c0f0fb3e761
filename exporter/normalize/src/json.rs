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
//! are and only notes (eight bytes at a time) whether one of them needed
//! escaping; the caller then checks [`JsonWriter::needed_escaping`] and, in
//! that rare case, writes the record again with [`JsonWriter::escaping`],
//! which escapes every data string. Constant names and pre-rendered
//! fragments are never checked: they are the crate's own text.

use std::fmt;

use serde_json::Value;

/// A constant member name, pre-rendered with the comma that may precede
/// it: `k!("name")` is `,"name":` (see [`JsonWriter::key`]).
macro_rules! k {
    ($name:literal) => {
        $crate::json::Key(concat!(",\"", $name, "\":"))
    };
}
pub(crate) use k;

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
    /// A data string copied unescaped needed escaping: the output is not
    /// valid and must be written again with [`JsonWriter::escaping`].
    needed_escaping: bool,
}

impl<'a> JsonWriter<'a> {
    /// A writer that copies data strings unescaped and notes whether one
    /// needed escaping (see the module doc).
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        JsonWriter {
            out,
            comma: false,
            escape: false,
            needed_escaping: false,
        }
    }

    /// A writer that escapes every data string.
    pub(crate) fn escaping(out: &'a mut Vec<u8>) -> Self {
        JsonWriter {
            out,
            comma: false,
            escape: true,
            needed_escaping: false,
        }
    }

    /// Whether a data string written by a [`JsonWriter::new`] writer needed
    /// escaping (the output must then be written again).
    pub(crate) fn needed_escaping(&self) -> bool {
        self.needed_escaping
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
    pub(crate) fn members(&mut self, raw: &'static str) {
        self.separate();
        self.out.extend_from_slice(raw.as_bytes());
        self.comma = true;
    }

    /// Pre-rendered text appended as it is, with no separator (the end of
    /// a pre-rendered array).
    #[inline]
    pub(crate) fn raw(&mut self, raw: &'static str) {
        self.out.extend_from_slice(raw.as_bytes());
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
        self.out.push(b'"');
        let start = self.out.len();
        let mut text = self.text();
        fmt::Write::write_str(&mut text, k).ok();
        for b in &mut self.out[start..] {
            if *b == b'.' {
                *b = b'_';
            }
        }
        self.out.extend_from_slice(b"\":");
        self.comma = false;
    }

    /// A data string, quoted.
    #[inline]
    fn string(&mut self, v: &str) {
        if self.escape {
            write_escaped(self.out, v);
        } else {
            self.needed_escaping |= needs_escaping(v.as_bytes());
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
    #[inline]
    pub(crate) fn plain_str(&mut self, v: &[u8]) {
        debug_assert!(!v.iter().copied().any(needs_escape));
        self.separate();
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
        self.out.push(b'"');
        f(&mut self.text());
        self.out.push(b'"');
        self.comma = true;
    }

    /// Text appended inside an open string.
    #[inline]
    fn text(&mut self) -> Text<'_> {
        Text {
            out: self.out,
            escape: self.escape,
            needed_escaping: &mut self.needed_escaping,
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
    needed_escaping: &'a mut bool,
}

impl fmt::Write for Text<'_> {
    #[inline]
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.escape {
            write_escaped_body(self.out, s);
        } else {
            *self.needed_escaping |= needs_escaping(s.as_bytes());
            self.out.extend_from_slice(s.as_bytes());
        }
        Ok(())
    }
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Whether any byte of `s` needs escaping: eight bytes at a time without an
/// early exit (strings are short and almost never need it), the last one
/// to seven bytes through a table.
#[inline]
pub(crate) fn needs_escaping(s: &[u8]) -> bool {
    let mut chunks = s.chunks_exact(8);
    let mut found = 0u64;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        found |= escape_bits(u64::from_le_bytes(word));
    }
    let mut tail = false;
    for &b in chunks.remainder() {
        tail |= NEEDS_ESCAPE[usize::from(b)];
    }
    found != 0 || tail
}

/// Which bytes need escaping, as a table.
static NEEDS_ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

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
    let d = crate::view::Decimal::new(v);
    out.extend_from_slice(d.as_bytes());
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
        w.members(r#""r":1,"s":"o""#);
        w.key(k!("t"));
        w.begin_array();
        w.members(r#""x""#);
        w.raw(r#","y"]"#);
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

    /// `needs_escaping` sees every special byte at every position of
    /// strings of up to 40 bytes, and nothing in clean text.
    #[test]
    fn needs_escaping_finds_every_special_byte() {
        let clean: String = (0x20u8..0x7f)
            .filter(|b| *b != b'"' && *b != b'\\')
            .map(char::from)
            .chain("é → ✓ \u{7f}\u{10ffff}".chars())
            .collect();
        assert!(!needs_escaping(clean.as_bytes()));
        for len in 0..40 {
            assert!(!needs_escaping(&vec![b'a'; len]));
            for at in 0..len {
                for special in (0u8..0x20).chain([b'"', b'\\']) {
                    let mut s = vec![0xffu8; len];
                    s[at] = special;
                    assert!(needs_escaping(&s), "{len} {at} {special}");
                }
            }
        }
    }
}
