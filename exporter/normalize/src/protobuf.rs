//! A small protobuf writer for the hot OTLP encode path: appends fields to a
//! caller's `Vec<u8>`, so a batch is encoded without building the prost
//! message tree first (and without prost's `encoded_len` pass over nested
//! `KeyValueList`s, which is quadratic in the nesting depth).
//!
//! Nested messages get a one-byte length placeholder that is patched when
//! the message ends; a message of 128 bytes or more moves its bytes up to
//! make room for the longer length. Lengths are therefore minimal varints
//! and fields come in the order written, so when callers write fields in
//! tag order the bytes equal prost's `encode_to_vec` (the OTLP tests check
//! exactly that). It knows wire types, not OTLP: field numbers belong to
//! the callers.

use std::fmt;

const WIRE_VARINT: u32 = 0;
const WIRE_FIXED64: u32 = 1;
const WIRE_LEN: u32 = 2;

/// The longest varint (a `u64`).
const MAX_VARINT: usize = 10;

/// Bytes of `v` as a varint.
#[inline]
pub(crate) fn varint_len(v: u64) -> usize {
    // One byte per started group of seven bits, at least one.
    ((64 - (v | 1).leading_zeros() as usize) * 9 + 64) / 64
}

/// `v` as a varint, appended to `buf`; one byte, the common case, without
/// a loop.
#[inline(always)]
pub(crate) fn push_varint(buf: &mut Vec<u8>, v: u64) {
    if v < 0x80 {
        buf.push(v as u8);
    } else {
        push_varint_long(buf, v);
    }
}

fn push_varint_long(buf: &mut Vec<u8>, v: u64) {
    // All sixteen bytes appended before the length is cut back: a copy of
    // a known size is one store, where one of `n` bytes was a call to
    // `memcpy` (a tenth of a templated OTLP record's time) and bytes
    // stored one by one then copied stall the load that reads them back.
    let (bytes, n) = varint_bytes(v);
    let start = buf.len();
    buf.extend_from_slice(&bytes);
    buf.truncate(start + n);
}

/// `v` as a varint: its bytes (the first `n` of sixteen) and `n`.
#[inline(always)]
pub(crate) fn varint_bytes(v: u64) -> ([u8; 16], usize) {
    let n = varint_len(v);
    // The seven-bit groups spread to bytes in two words, the continuation
    // bit set on all but the last. The low 56 bits, eight groups, spread
    // by halves: 28-bit halves to 32-bit lanes, 14 to 16, 7 to 8.
    let mut low = v & 0x00ff_ffff_ffff_ffff;
    low = (low & 0x0fff_ffff) | (low & 0x00ff_ffff_f000_0000) << 4;
    low = (low & 0x0000_3fff_0000_3fff) | (low & 0x0fff_c000_0fff_c000) << 2;
    low = (low & 0x007f_007f_007f_007f) | (low & 0x3f80_3f80_3f80_3f80) << 1;
    // Groups 8 (bits 56..62) and 9 (bit 63).
    let top = v >> 56;
    let mut high = (top & 0x7f) | (top & 0x80) << 1;
    // Bytes 0..n-1 continue.
    if n == MAX_VARINT {
        low |= 0x8080_8080_8080_8080;
        high |= 0x80;
    } else if n > 1 {
        low |= 0x8080_8080_8080_8080 >> (8 * (9 - n));
    }
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&low.to_le_bytes());
    bytes[8..].copy_from_slice(&high.to_le_bytes());
    (bytes, n)
}

/// A constant string field, pre-encoded: field 1 with wire type LEN (the
/// `key` of a `KeyValue`), its length and its bytes. Built at compile time
/// by `otlp`'s `key!`; a key of 128 bytes or more does not compile.
pub(crate) const fn key_field<const N: usize>(key: &str) -> [u8; N] {
    let b = key.as_bytes();
    assert!(
        b.len() + 2 == N && b.len() < 0x80,
        "a short key, two bytes longer"
    );
    let mut out = [0u8; N];
    out[0] = 0x0a;
    out[1] = b.len() as u8;
    let mut i = 0;
    while i < b.len() {
        out[i + 2] = b[i];
        i += 1;
    }
    out
}

/// Appends protobuf fields to `buf`.
pub(crate) struct ProtoWriter<'a> {
    pub(crate) buf: &'a mut Vec<u8>,
}

/// Where a nested message's bytes start (just after its length
/// placeholder) and how many bytes the placeholder has.
#[derive(Debug, Clone, Copy)]
#[must_use = "a nested message must be ended"]
pub(crate) struct Nested {
    start: usize,
    placeholder: usize,
}

impl<'a> ProtoWriter<'a> {
    pub(crate) fn new(buf: &'a mut Vec<u8>) -> Self {
        ProtoWriter { buf }
    }

    #[inline(always)]
    fn tag(&mut self, field: u32, wire: u32) {
        push_varint(self.buf, u64::from(field << 3 | wire));
    }

    #[inline(always)]
    pub(crate) fn varint(&mut self, field: u32, v: u64) {
        self.tag(field, WIRE_VARINT);
        push_varint(self.buf, v);
    }

    #[inline]
    pub(crate) fn fixed64(&mut self, field: u32, v: u64) {
        self.tag(field, WIRE_FIXED64);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A string field made of `parts` written back to back (a prefixed
    /// attribute key without a temporary `String`).
    #[inline]
    pub(crate) fn string_parts(&mut self, field: u32, parts: &[&str]) {
        self.tag(field, WIRE_LEN);
        let len: usize = parts.iter().map(|p| p.len()).sum();
        push_varint(self.buf, len as u64);
        for p in parts {
            self.buf.extend_from_slice(p.as_bytes());
        }
    }

    /// Pre-encoded fields (tags and lengths included), copied as they are.
    #[inline(always)]
    pub(crate) fn encoded(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// A string field from bytes that are known to be UTF-8 (ASCII text
    /// held inline: addresses, ids).
    #[inline(always)]
    pub(crate) fn ascii(&mut self, field: u32, v: &[u8]) {
        self.tag(field, WIRE_LEN);
        push_varint(self.buf, v.len() as u64);
        self.buf.extend_from_slice(v);
    }

    /// A length-delimited field whose length is known before its bytes
    /// are written: the tag and the length, nothing to patch later.
    #[inline(always)]
    pub(crate) fn begin_sized(&mut self, field: u32, len: usize) {
        self.tag(field, WIRE_LEN);
        push_varint(self.buf, len as u64);
    }

    /// Starts a length-delimited field (a nested message, or a string
    /// written with [`ProtoWriter::text`]) expected to be short: a one-byte
    /// length placeholder.
    #[inline]
    pub(crate) fn begin(&mut self, field: u32) -> Nested {
        self.begin_with(field, 1)
    }

    /// Starts a length-delimited field expected to be 128 bytes to 16 KiB
    /// long (a whole record, a policy side): a two-byte placeholder, so
    /// that ending it moves nothing when the guess is right.
    #[inline]
    pub(crate) fn begin_wide(&mut self, field: u32) -> Nested {
        self.begin_with(field, 2)
    }

    #[inline]
    fn begin_with(&mut self, field: u32, placeholder: usize) -> Nested {
        self.tag(field, WIRE_LEN);
        self.buf.extend_from_slice(&[0, 0][..placeholder]);
        Nested {
            start: self.buf.len(),
            placeholder,
        }
    }

    /// Ends the field started at `start`, writing its length as a minimal
    /// varint (moving the bytes when the placeholder had the wrong size).
    #[inline]
    pub(crate) fn end(&mut self, nested: Nested) {
        let Nested { start, placeholder } = nested;
        let len = self.buf.len() - start;
        match (placeholder, len) {
            (1, 0..0x80) => self.buf[start - 1] = len as u8,
            (2, 0x80..0x4000) => {
                self.buf[start - 2] = (len as u8) | 0x80;
                self.buf[start - 1] = (len >> 7) as u8;
            }
            _ => self.end_resized(nested, len),
        }
    }

    #[cold]
    fn end_resized(&mut self, Nested { start, placeholder }: Nested, len: usize) {
        let mut prefix = [0u8; MAX_VARINT];
        let n = varint_len(len as u64);
        let mut v = len as u64;
        for b in &mut prefix[..n] {
            *b = (v as u8 & 0x7f) | 0x80;
            v >>= 7;
        }
        prefix[n - 1] &= 0x7f;
        // Replace the placeholder by exactly the length's bytes.
        self.buf
            .splice(start - placeholder..start, prefix[..n].iter().copied());
    }

    /// Text appended to an open string field (see [`ProtoWriter::begin`]).
    pub(crate) fn text(&mut self) -> TextWriter<'_> {
        TextWriter { buf: self.buf }
    }
}

/// `fmt::Write` into an open string field.
pub(crate) struct TextWriter<'a> {
    buf: &'a mut Vec<u8>,
}

impl fmt::Write for TextWriter<'_> {
    #[inline]
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.buf.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use prost::Message as _;

    use super::*;

    #[test]
    fn varints_match_prost() {
        let mut values = vec![0u64, 1, u64::MAX, i64::MAX as u64];
        for shift in 1..64 {
            values.extend([(1u64 << shift) - 1, 1 << shift, (1 << shift) + 1]);
        }
        for v in values {
            let mut want = Vec::new();
            prost::encoding::encode_varint(v, &mut want);
            // After other bytes, as in a record: only the varint's bytes
            // are added.
            let mut got = vec![0xaa; 3];
            push_varint(&mut got, v);
            assert_eq!(got[..3], [0xaa; 3]);
            assert_eq!(got[3..], want, "{v}");
            assert_eq!(varint_len(v), want.len(), "{v}");
        }
        // Every bit pattern's spread: random values of every length.
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut got = Vec::new();
        let mut want = Vec::new();
        for i in 0..200_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = x >> (i % 64);
            got.clear();
            want.clear();
            push_varint(&mut got, v);
            prost::encoding::encode_varint(v, &mut want);
            assert_eq!(got, want, "{v}");
            // One-byte values too, which `push_varint` writes itself.
            let (bytes, n) = varint_bytes(v);
            assert_eq!(bytes[..n], want, "{v}");
        }
    }

    /// Lengths on both sides of every varint size boundary that matters,
    /// with both placeholder sizes.
    #[test]
    fn nested_lengths_match_prost() {
        for n in [
            0usize, 1, 123, 124, 125, 126, 127, 128, 129, 16_380, 16_383, 16_384, 70_000,
        ] {
            let text = "x".repeat(n);
            let want = KeyValue {
                key: "k".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(text.clone())),
                }),
                ..Default::default()
            }
            .encode_to_vec();
            for wide in [false, true] {
                let mut buf = Vec::new();
                let mut w = ProtoWriter::new(&mut buf);
                w.string_parts(1, &["k"]);
                let any = if wide { w.begin_wide(2) } else { w.begin(2) };
                let s = w.begin(1);
                fmt::Write::write_str(&mut w.text(), &text).unwrap();
                w.end(s);
                w.end(any);
                assert_eq!(buf, want, "{n} {wide}");

                let mut buf = Vec::new();
                let mut w = ProtoWriter::new(&mut buf);
                w.string_parts(1, &["k"]);
                w.begin_sized(2, 1 + varint_len(n as u64) + n);
                w.string_parts(1, &[&text]);
                assert_eq!(buf, want, "{n} sized");
            }
        }
    }
}
