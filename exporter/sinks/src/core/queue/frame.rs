//! The on-disk frame of the durable queue: encode, parse, and scan with
//! resynchronisation. Pure functions over byte slices, so every crash and
//! corruption case is a unit test.
//!
//! ```text
//! offset size
//!      0    4  magic  F5 'F' 'S' 'Q'   (0xF5 never occurs in UTF-8 text)
//!      4    4  payload length, u32 LE
//!      8    8  sequence number, u64 LE
//!     16    4  CRC32C of the payload, u32 LE
//!     20    4  CRC32C of bytes 0..20 (the header), u32 LE
//!     24    n  payload: event-id length u16 LE, event id (UTF-8), record bytes
//! ```
//!
//! Why two checksums: the header CRC lets a scanner that lost its place
//! (a corrupt frame in the middle of a segment) test every occurrence of the
//! magic for "is this a real frame start" with 20 bytes of work, and only
//! then checksum the payload, so resynchronising costs O(bytes) instead of
//! O(bytes × record size). A candidate whose sequence number does not
//! increase is rejected too, which keeps a frame that happens to be embedded
//! in a record's bytes from being taken for a real one.
//!
//! This module must not do IO.

/// First four bytes of every frame.
pub const MAGIC: [u8; 4] = [0xF5, b'F', b'S', b'Q'];
/// Header size in bytes.
pub const HEADER_LEN: usize = 24;
/// The largest payload a frame may carry. Larger lengths in a header are
/// treated as corruption, which bounds the work one bogus header can cause.
pub const MAX_PAYLOAD_LEN: u32 = 64 * 1024 * 1024;

/// Append one frame for `(seq, event_id, record)` to `out`; returns the
/// frame's length. The caller has checked the sizes (event id ≤ u16::MAX,
/// payload ≤ [`MAX_PAYLOAD_LEN`]).
pub fn encode_record(out: &mut Vec<u8>, seq: u64, event_id: &str, record: &[u8]) -> usize {
    let id_len = u16::try_from(event_id.len()).unwrap_or(u16::MAX);
    let id = &event_id.as_bytes()[..usize::from(id_len)];
    let payload_len = 2 + id.len() + record.len();
    let start = out.len();
    out.reserve(HEADER_LEN + payload_len);
    out.extend_from_slice(&[0u8; HEADER_LEN]);
    out.extend_from_slice(&id_len.to_le_bytes());
    out.extend_from_slice(id);
    out.extend_from_slice(record);
    let payload_crc = crc32c::crc32c(&out[start + HEADER_LEN..]);
    write_header(
        &mut out[start..start + HEADER_LEN],
        u32::try_from(payload_len).unwrap_or(u32::MAX),
        seq,
        payload_crc,
    );
    out.len() - start
}

/// Append one frame with an arbitrary payload (the ack log's entries).
pub fn encode_raw(out: &mut Vec<u8>, seq: u64, payload: &[u8]) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER_LEN]);
    out.extend_from_slice(payload);
    write_header(
        &mut out[start..start + HEADER_LEN],
        u32::try_from(payload.len()).unwrap_or(u32::MAX),
        seq,
        crc32c::crc32c(payload),
    );
    out.len() - start
}

fn write_header(h: &mut [u8], payload_len: u32, seq: u64, payload_crc: u32) {
    h[0..4].copy_from_slice(&MAGIC);
    h[4..8].copy_from_slice(&payload_len.to_le_bytes());
    h[8..16].copy_from_slice(&seq.to_le_bytes());
    h[16..20].copy_from_slice(&payload_crc.to_le_bytes());
    let header_crc = crc32c::crc32c(&h[0..20]);
    h[20..24].copy_from_slice(&header_crc.to_le_bytes());
}

/// A valid frame found in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRef<'a> {
    pub seq: u64,
    pub payload: &'a [u8],
    /// Where the frame starts in the scanned buffer.
    pub offset: usize,
    /// Header plus payload.
    pub len: usize,
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// The frame at `offset`, if the bytes there are a complete, valid frame.
pub fn parse_at(buf: &[u8], offset: usize) -> Option<FrameRef<'_>> {
    let h = buf.get(offset..offset.checked_add(HEADER_LEN)?)?;
    if h[0..4] != MAGIC || crc32c::crc32c(&h[0..20]) != le_u32(&h[20..24]) {
        return None;
    }
    let payload_len = le_u32(&h[4..8]);
    if payload_len > MAX_PAYLOAD_LEN {
        return None;
    }
    let start = offset + HEADER_LEN;
    let payload = buf.get(start..start + payload_len as usize)?;
    if crc32c::crc32c(payload) != le_u32(&h[16..20]) {
        return None;
    }
    Some(FrameRef {
        seq: le_u64(&h[8..16]),
        payload,
        offset,
        len: HEADER_LEN + payload.len(),
    })
}

/// Split a record frame's payload into `(event_id, record)`; `None` when
/// the payload is not a record (a bug or a checksum collision: counted as
/// corrupt by the caller).
pub fn decode_record(payload: &[u8]) -> Option<(&str, &[u8])> {
    let id_len = usize::from(u16::from_le_bytes([*payload.first()?, *payload.get(1)?]));
    let id = payload.get(2..2 + id_len)?;
    let record = payload.get(2 + id_len..)?;
    Some((std::str::from_utf8(id).ok()?, record))
}

/// What a [`Scanner`] yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanItem<'a> {
    Frame(FrameRef<'a>),
    /// Bytes that are not part of a valid frame. `trailing` is true when no
    /// valid frame follows them in the buffer (a torn tail when this is
    /// the last segment).
    Garbage {
        offset: usize,
        len: usize,
        trailing: bool,
    },
}

/// Walks a buffer frame by frame, resynchronising after garbage.
///
/// Work is bounded: every step either consumes a whole valid frame or
/// advances past at least one byte of garbage, and each candidate frame
/// start costs one 20-byte header CRC plus, only for candidates whose
/// header checks out, one payload CRC.
#[derive(Debug)]
pub struct Scanner<'a> {
    buf: &'a [u8],
    pos: usize,
    last_seq: Option<u64>,
}

impl<'a> Scanner<'a> {
    /// `last_seq`: the sequence number of the frame before `buf` (frames
    /// must increase), if known.
    pub fn new(buf: &'a [u8], last_seq: Option<u64>) -> Self {
        Scanner {
            buf,
            pos: 0,
            last_seq,
        }
    }

    /// Offset of the next unread byte.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The highest sequence number yielded so far (or given to `new`).
    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    fn acceptable(&self, offset: usize) -> Option<FrameRef<'a>> {
        let f = parse_at(self.buf, offset)?;
        match self.last_seq {
            Some(last) if f.seq <= last => None,
            _ => Some(f),
        }
    }
}

impl<'a> Iterator for Scanner<'a> {
    type Item = ScanItem<'a>;

    fn next(&mut self) -> Option<ScanItem<'a>> {
        if self.pos >= self.buf.len() {
            return None;
        }
        if let Some(f) = self.acceptable(self.pos) {
            self.pos += f.len;
            self.last_seq = Some(f.seq);
            return Some(ScanItem::Frame(f));
        }
        let start = self.pos;
        let mut probe = start + 1;
        while probe < self.buf.len() {
            let Some(i) = self.buf[probe..].iter().position(|&b| b == MAGIC[0]) else {
                break;
            };
            let candidate = probe + i;
            if self.acceptable(candidate).is_some() {
                self.pos = candidate;
                return Some(ScanItem::Garbage {
                    offset: start,
                    len: candidate - start,
                    trailing: false,
                });
            }
            probe = candidate + 1;
        }
        self.pos = self.buf.len();
        Some(ScanItem::Garbage {
            offset: start,
            len: self.buf.len() - start,
            trailing: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(n: u64) -> (Vec<u8>, Vec<usize>) {
        let mut buf = Vec::new();
        let mut starts = Vec::new();
        for seq in 1..=n {
            starts.push(buf.len());
            let record = format!("record-{seq}-{}", "x".repeat(seq as usize % 7));
            encode_record(&mut buf, seq, &format!("ev-{seq}"), record.as_bytes());
        }
        (buf, starts)
    }

    fn seqs(buf: &[u8]) -> (Vec<u64>, Vec<(usize, usize, bool)>) {
        let mut s = Vec::new();
        let mut g = Vec::new();
        for item in Scanner::new(buf, None) {
            match item {
                ScanItem::Frame(f) => s.push(f.seq),
                ScanItem::Garbage {
                    offset,
                    len,
                    trailing,
                } => g.push((offset, len, trailing)),
            }
        }
        (s, g)
    }

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        let len = encode_record(&mut buf, 42, "ev-1", b"hello");
        assert_eq!(len, buf.len());
        assert_eq!(len, HEADER_LEN + 2 + 4 + 5);
        let f = parse_at(&buf, 0).unwrap();
        assert_eq!(f.seq, 42);
        assert_eq!(decode_record(f.payload), Some(("ev-1", &b"hello"[..])));
    }

    #[test]
    fn every_truncation_of_the_last_frame_is_a_trailing_tail() {
        let (buf, starts) = frames(5);
        let last = starts[4];
        for cut in last..buf.len() {
            let (s, g) = seqs(&buf[..cut]);
            assert_eq!(s, [1, 2, 3, 4], "cut at {cut}");
            if cut == last {
                assert!(g.is_empty());
            } else {
                assert_eq!(g, [(last, cut - last, true)], "cut at {cut}");
            }
        }
    }

    #[test]
    fn every_single_byte_flip_in_a_middle_frame_loses_exactly_that_frame() {
        let (buf, starts) = frames(5);
        for at in starts[2]..starts[3] {
            for bit in [0x01u8, 0x80] {
                let mut b = buf.clone();
                b[at] ^= bit;
                let (s, g) = seqs(&b);
                assert_eq!(s, [1, 2, 4, 5], "flip {bit:#x} at {at}");
                assert_eq!(g, [(starts[2], starts[3] - starts[2], false)]);
            }
        }
    }

    #[test]
    fn leading_garbage_and_embedded_stale_frames_are_skipped() {
        let (frames_buf, _) = frames(3);
        let mut buf = vec![0xF5, b'F', b'S', b'Q', 1, 2, 3];
        buf.extend_from_slice(&frames_buf);
        let (s, g) = seqs(&buf);
        assert_eq!(s, [1, 2, 3]);
        assert_eq!(g, [(0, 7, false)]);
        // A record whose bytes contain a valid older frame is not split.
        let mut inner = Vec::new();
        encode_record(&mut inner, 1, "fake", b"fake");
        let mut buf = Vec::new();
        encode_record(&mut buf, 1, "a", b"a");
        encode_record(&mut buf, 2, "b", &inner);
        let (s, g) = seqs(&buf);
        assert_eq!((s, g), (vec![1, 2], vec![]));
    }

    #[test]
    fn a_huge_length_is_rejected_without_reading_it() {
        let mut buf = Vec::new();
        encode_raw(&mut buf, 1, b"x");
        buf[4..8].copy_from_slice(&(MAX_PAYLOAD_LEN + 1).to_le_bytes());
        let crc = crc32c::crc32c(&buf[0..20]);
        buf[20..24].copy_from_slice(&crc.to_le_bytes());
        assert!(parse_at(&buf, 0).is_none());
    }

    #[test]
    fn empty_and_tiny_buffers() {
        assert_eq!(seqs(&[]), (vec![], vec![]));
        assert_eq!(seqs(&[0xF5]), (vec![], vec![(0, 1, true)]));
        assert!(decode_record(&[]).is_none());
        assert!(decode_record(&[5, 0, b'a']).is_none());
    }
}
