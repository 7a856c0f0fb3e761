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

use std::fmt;

use serde_json::Value;

/// Appends JSON tokens to `out`, placing commas itself.
pub(crate) struct JsonWriter<'a> {
    out: &'a mut Vec<u8>,
    /// Whether the next member or element needs a comma before it.
    comma: bool,
}

impl<'a> JsonWriter<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        JsonWriter { out, comma: false }
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

    /// A member name that needs no escaping (the constant names of a
    /// schema; checked in debug builds).
    #[inline]
    pub(crate) fn key(&mut self, k: &str) {
        debug_assert!(!k.bytes().any(needs_escape), "{k:?} needs escaping");
        self.out.reserve(k.len() + 4);
        self.separate();
        self.out.push(b'"');
        self.out.extend_from_slice(k.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.comma = false;
    }

    /// A member name from data (label keys): escaped.
    pub(crate) fn key_escaped(&mut self, k: &str) {
        self.separate();
        write_escaped(self.out, k);
        self.out.push(b':');
        self.comma = false;
    }

    /// A member name from data with every `.` written as `_` (Beats
    /// de-dotting), escaped.
    pub(crate) fn key_dedotted(&mut self, k: &str) {
        self.separate();
        self.out.push(b'"');
        let mut start = 0;
        for (i, b) in k.bytes().enumerate() {
            if b == b'.' {
                write_escaped_body(self.out, &k[start..i]);
                self.out.push(b'_');
                start = i + 1;
            }
        }
        write_escaped_body(self.out, &k[start..]);
        self.out.extend_from_slice(b"\":");
        self.comma = false;
    }

    #[inline]
    pub(crate) fn str(&mut self, v: &str) {
        self.separate();
        write_escaped(self.out, v);
        self.comma = true;
    }

    /// A string value that is known to need no escaping (digits, hex, base64,
    /// addresses, timestamps).
    #[inline]
    pub(crate) fn plain_str(&mut self, v: &[u8]) {
        debug_assert!(!v.iter().copied().any(needs_escape));
        self.separate();
        self.out.push(b'"');
        self.out.extend_from_slice(v);
        self.out.push(b'"');
        self.comma = true;
    }

    /// A string value built with `write!`: escaped as it is written, so a
    /// derived value (`namespace/name`, a rule id) needs no temporary
    /// `String`.
    pub(crate) fn str_fmt(&mut self, f: impl FnOnce(&mut EscapingWriter<'_>) -> fmt::Result) {
        self.separate();
        self.out.push(b'"');
        // Writing to a Vec cannot fail; an error from `f` itself would only
        // shorten the string, and our callers write plain text.
        let _ = f(&mut EscapingWriter { out: self.out });
        self.out.push(b'"');
        self.comma = true;
    }

    #[inline]
    pub(crate) fn u64(&mut self, v: u64) {
        self.separate();
        push_u64(self.out, v);
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
    pub(crate) fn field_str(&mut self, k: &str, v: &str) {
        self.key(k);
        self.str(v);
    }

    #[inline]
    pub(crate) fn field_plain(&mut self, k: &str, v: &[u8]) {
        self.key(k);
        self.plain_str(v);
    }

    #[inline]
    pub(crate) fn field_u64(&mut self, k: &str, v: u64) {
        self.key(k);
        self.u64(v);
    }

    #[inline]
    pub(crate) fn field_bool(&mut self, k: &str, v: bool) {
        self.key(k);
        self.bool(v);
    }
}

/// A `fmt::Write` that appends JSON-escaped text (no quotes).
pub(crate) struct EscapingWriter<'a> {
    out: &'a mut Vec<u8>,
}

impl fmt::Write for EscapingWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_escaped_body(self.out, s);
        Ok(())
    }
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
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
        if word_needs_escape(u64::from_le_bytes(word)) {
            return chunk.iter().position(|&b| needs_escape(b)).map(|p| i + p);
        }
        i += 8;
    }
    let tail = chunks.remainder();
    let mut word = [b'a'; 8];
    word[..tail.len()].copy_from_slice(tail);
    if word_needs_escape(u64::from_le_bytes(word)) {
        return tail.iter().position(|&b| needs_escape(b)).map(|p| i + p);
    }
    None
}

/// Whether any of the eight bytes of `x` is below 0x20, `"` or `\\`
/// (the classic "has a zero / has a byte less than" bit tricks: exact about
/// whether such a byte exists, which is all the caller needs).
#[inline]
fn word_needs_escape(x: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_bytes = |y: u64| y.wrapping_sub(ONES) & !y & HIGHS;
    let control = x.wrapping_sub(ONES * 0x20) & !x & HIGHS;
    let quote = zero_bytes(x ^ (ONES * u64::from(b'"')));
    let backslash = zero_bytes(x ^ (ONES * u64::from(b'\\')));
    control | quote | backslash != 0
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
pub(crate) fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
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

    #[test]
    fn numbers_and_nesting_like_serde_json() {
        let mut out = Vec::new();
        let mut w = JsonWriter::new(&mut out);
        w.begin_object();
        w.field_u64("a", 0);
        w.field_u64("b", u64::MAX);
        w.key("c");
        w.begin_array();
        w.u64(10);
        w.begin_object();
        w.end_object();
        w.begin_array();
        w.end_array();
        w.bool(true);
        w.str_fmt(|f| fmt::Write::write_fmt(f, format_args!("x{}\"y", 1)));
        w.end_array();
        w.key_dedotted("k.a\"b.c");
        w.bool(false);
        w.key_escaped("q\n");
        w.plain_str(b"1:abc=");
        w.end_object();
        let want = serde_json::json!({
            "a": 0, "b": u64::MAX, "c": [10, {}, [], true, "x1\"y"],
            "k_a\"b_c": false, "q\n": "1:abc=",
        });
        assert_eq!(out, serde_json::to_vec(&want).unwrap());
    }
}
