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

use prost::encoding::{encode_varint, encoded_len_varint};

const WIRE_VARINT: u32 = 0;
const WIRE_FIXED64: u32 = 1;
const WIRE_LEN: u32 = 2;

/// Appends protobuf fields to `buf`.
pub(crate) struct ProtoWriter<'a> {
    pub(crate) buf: &'a mut Vec<u8>,
}

/// Where a nested message's bytes start (just after its length byte).
#[derive(Debug, Clone, Copy)]
#[must_use = "a nested message must be ended"]
pub(crate) struct Nested(usize);

impl<'a> ProtoWriter<'a> {
    pub(crate) fn new(buf: &'a mut Vec<u8>) -> Self {
        ProtoWriter { buf }
    }

    #[inline]
    fn tag(&mut self, field: u32, wire: u32) {
        encode_varint(u64::from(field << 3 | wire), self.buf);
    }

    #[inline]
    pub(crate) fn varint(&mut self, field: u32, v: u64) {
        self.tag(field, WIRE_VARINT);
        encode_varint(v, self.buf);
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
        encode_varint(len as u64, self.buf);
        for p in parts {
            self.buf.extend_from_slice(p.as_bytes());
        }
    }

    /// Starts a length-delimited field (a nested message, or a string
    /// written with [`ProtoWriter::text`]).
    #[inline]
    pub(crate) fn begin(&mut self, field: u32) -> Nested {
        self.tag(field, WIRE_LEN);
        self.buf.push(0);
        Nested(self.buf.len())
    }

    /// Ends the field started at `start`, writing its length.
    #[inline]
    pub(crate) fn end(&mut self, start: Nested) {
        let start = start.0;
        let len = self.buf.len() - start;
        if len < 0x80 {
            // `len` fits the placeholder byte.
            self.buf[start - 1] = len as u8;
            return;
        }
        self.end_long(start, len);
    }

    #[cold]
    fn end_long(&mut self, start: usize, len: usize) {
        let extra = encoded_len_varint(len as u64) - 1;
        self.buf.resize(self.buf.len() + extra, 0);
        self.buf.copy_within(start..start + len, start + extra);
        let mut prefix = Vec::with_capacity(10);
        encode_varint(len as u64, &mut prefix);
        self.buf[start - 1..start + extra].copy_from_slice(&prefix);
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

    /// Lengths on both sides of every varint size boundary that matters.
    #[test]
    fn nested_lengths_match_prost() {
        for n in [0usize, 1, 126, 127, 128, 129, 16_383, 16_384, 70_000] {
            let text = "x".repeat(n);
            let want = KeyValue {
                key: "k".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(text.clone())),
                }),
                ..Default::default()
            }
            .encode_to_vec();
            let mut buf = Vec::new();
            let mut w = ProtoWriter::new(&mut buf);
            w.string_parts(1, &["k"]);
            let any = w.begin(2);
            let s = w.begin(1);
            fmt::Write::write_str(&mut w.text(), &text).unwrap();
            w.end(s);
            w.end(any);
            assert_eq!(buf, want, "{n}");
        }
    }
}
