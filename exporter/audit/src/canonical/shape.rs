//! Record shapes: the fast path of the canonical form.
//!
//! The records of one view mostly share their *shape*: the same keys in the
//! same order with the same nesting and spacing; only the values differ. A
//! [`Shape`] is learned from one line: the line's bytes between its leaf
//! values (the *segments*: keys, colons, commas, braces, and empty objects),
//! the flattened path of every value, and the order in which the canonical
//! form writes them (sorted by path). A later line is in the shape when its
//! bytes are segment 0, a value, segment 1, a value, ... exactly. Then the
//! general parser would see the same tokens in the same states (the bytes up
//! to each value are the same), so the leaves have the same paths, and their
//! sorted order is known without sorting. Only the values are read: each is
//! scanned to its end and, where it is not already canonical (an escaped
//! string, a number like `5.0`, an array), written by the same functions the
//! general path uses. So a line in a known shape gives the same bytes as the
//! general path; a property test checks this on randomised JSON.
//!
//! A shape is learned only when its paths are unique (two leaves with one
//! path are ordered by value, which a shape cannot know), no key has an
//! escape, and it is not the empty object. A value slot that holds an object
//! in a later line is not in the shape (its leaves would be different).
//!
//! Pure: no IO.

use super::{Cursor, is_audit_path_bytes, write_canonical_value, write_number_text};

/// Where a slot's canonical value lies: in the input line (already
/// canonical) or in the scratch arena (rewritten). Two words, the arena
/// flag in the top bit of the end (lines on the fast path are shorter than
/// 2 GiB), so that it moves in registers.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Val {
    start: u32,
    end: u32,
}

const IN_ARENA: u32 = 1 << 31;

/// The longest line the fast path takes (offsets and [`IN_ARENA`]).
pub(super) const MAX_FAST_LINE: usize = (IN_ARENA - 1) as usize;

impl Val {
    fn line(start: usize, end: usize) -> Val {
        Val {
            start: start as u32,
            end: end as u32,
        }
    }
    fn arena(start: usize, end: usize) -> Val {
        Val {
            start: start as u32,
            end: end as u32 | IN_ARENA,
        }
    }
    pub(super) fn in_arena(self) -> bool {
        self.end & IN_ARENA != 0
    }
    pub(super) fn range(self) -> std::ops::Range<usize> {
        self.start as usize..(self.end & !IN_ARENA) as usize
    }
    fn len(self) -> usize {
        ((self.end & !IN_ARENA) - self.start) as usize
    }
}

/// One leaf of the canonical form, in output order.
#[derive(Debug, Clone, Copy)]
struct Emit {
    /// `{"path":` or `,"path":` (plus `{}` for an empty-object leaf), as a
    /// range of `Shape::prefixes`.
    prefix_start: u32,
    prefix_end: u32,
    /// The slot whose value follows, or [`NO_SLOT`] for an empty-object
    /// leaf (its value is in the prefix).
    slot: u32,
}

const NO_SLOT: u32 = u32::MAX;

/// One value slot, in line order: the segment before it and the objects
/// around it (so that a value rewritten by the general writer meets the
/// same nesting limit as on the general path).
#[derive(Debug, Clone, Copy)]
struct SlotSpec {
    seg_start: u32,
    seg_end: u32,
    depth: u32,
}

/// The fixed block [`put`] copies short pieces with.
const BLOCK: usize = 32;

/// A shape's arena keeps the rewritten values of earlier lines that later
/// lines replaced; past this size it is compacted to the live ones (small
/// in tests, so that the property tests compact often).
const ARENA_COMPACT_AT: usize = if cfg!(test) { 256 } else { 64 * 1024 };

/// Copy the arena values `vals` refers to into a fresh arena, in slot
/// order, and point `vals` there.
fn compact_arena(vals: &mut [Val], arena: &mut Vec<u8>) {
    let mut fresh = Vec::with_capacity(arena.len() / 2);
    for v in vals.iter_mut().filter(|v| v.in_arena()) {
        let start = fresh.len();
        fresh.extend_from_slice(&arena[v.range()]);
        *v = Val::arena(start, fresh.len());
    }
    *arena = fresh;
}

/// A learned record shape (see the module docs).
#[derive(Debug, Clone)]
pub(super) struct Shape {
    /// The segments, concatenated.
    segments: Vec<u8>,
    /// Per slot, in line order: its segment and depth.
    slot_specs: Vec<SlotSpec>,
    /// Where the segment after the last value starts.
    last_segment: u32,
    /// Content leaves in canonical (path) order.
    emits: Vec<Emit>,
    /// The emits' prefixes, then `BLOCK` bytes of padding.
    prefixes: Vec<u8>,
    /// The prefixes' length without the padding.
    prefix_bytes: usize,
    /// The paths of `emits`, in the same (sorted) order, for leaf lookups.
    paths: Vec<u8>,
    path_ends: Vec<u32>,
    /// Per slot: the last array seen there, as written and in canonical
    /// form. Records of one view often repeat an array (`"category":
    /// ["network"]`); bytes equal to a complete array parse to that array,
    /// so its canonical form is reused without parsing.
    arrays: Vec<Option<(Vec<u8>, Vec<u8>)>>,
    /// Audit leaves: the path after `flowscribe.audit` (`.seq`, ...; empty
    /// for a value at `flowscribe.audit` itself) and slot, in line order.
    audit: Vec<(Box<[u8]>, u32)>,
    /// Per name of [`super::KNOWN_AUDIT_FIELDS`]: the first audit leaf of
    /// that name (an index into `audit`).
    known_audit: [Option<u32>; 6],
    /// The first audit leaf named `type` (an index into `audit`).
    type_audit: Option<u32>,
    /// Per path of [`super::KNOWN_LEAVES`]: its content leaf (an index in
    /// output order), computed once.
    known_leaves: [Option<u32>; 2],
    /// The v3 volatile part (`crate::hash_v3`): its leaves, in output
    /// order, with prefixes of their own (`{"path":` first, `,"path":`
    /// after), in `v_prefixes` (then `BLOCK` bytes of padding).
    v_emits: Vec<Emit>,
    v_prefixes: Vec<u8>,
    v_prefix_bytes: usize,
    /// Per content leaf (output order): whether v3 counts it volatile.
    emit_volatile: Vec<bool>,
    /// The last line matched in full, and its slots.
    last: LastLine,
    /// Per slot: the index in `emits` of its content leaf, or [`NO_SLOT`]
    /// for an audit slot (not in the form).
    slot_emit: Vec<u32>,
    /// The content leaves whose values the last match read anew, as the
    /// leaf's index in `emits` and its value (the other values are byte for
    /// byte those of the line matched before it); meaningful only when
    /// `compared` is set.
    changed: Vec<(u32, Val)>,
    /// The last match compared the line with the line matched before it
    /// (rather than scanning it), so `changed` lists every content leaf
    /// that can differ from that line's.
    compared: bool,
}

/// The last line a shape matched in full, kept so that the next line is
/// compared with it rather than scanned (`Shape::matches_against_last`),
/// and the state of its slots, which the next match updates in place.
/// `line` is empty when there is none (or a failed match left the slots
/// partly rewritten).
#[derive(Debug, Clone, Default)]
pub(super) struct LastLine {
    line: Vec<u8>,
    /// Per slot: its value's bytes in `line`.
    raw: Vec<(u32, u32)>,
    /// Per slot: its canonical value, in `line` (the same offsets as in
    /// the line just matched) or in `arena`.
    vals: Vec<Val>,
    /// Rewritten values; may hold stale ones (see [`ARENA_COMPACT_AT`]).
    arena: Vec<u8>,
    /// The v2 digest of the v3 stable part of `line`'s form, when the
    /// caller gave it ([`Shape::set_stable_digest`]). A match that changes
    /// a stable leaf, or scans the line, forgets it; one that changes only
    /// volatile leaves keeps it: the stable leaves are then byte for byte
    /// those of the line it was compared with, and so is the stable part.
    pub(super) stable: Option<crate::hash::Hash>,
}

impl LastLine {
    /// A copy without the rewritten values no slot refers to any more.
    pub(super) fn compact_clone(&self) -> LastLine {
        let mut vals = self.vals.clone();
        let mut arena = Vec::new();
        for v in vals.iter_mut().filter(|v| v.in_arena()) {
            let start = arena.len();
            arena.extend_from_slice(&self.arena[v.range()]);
            *v = Val::arena(start, arena.len());
        }
        LastLine {
            line: self.line.clone(),
            raw: self.raw.clone(),
            vals,
            arena,
            stable: self.stable,
        }
    }

    /// Drop the rewritten values no slot refers to, when they outweigh the
    /// line.
    pub(super) fn compact(&mut self) {
        if self.arena.len() > self.line.len() {
            compact_arena(&mut self.vals, &mut self.arena);
        }
    }

    /// The bytes it holds (what a kept copy costs).
    pub(super) fn held_bytes(&self) -> usize {
        self.line.capacity()
            + self.arena.capacity()
            + std::mem::size_of_val(&*self.raw)
            + std::mem::size_of_val(&*self.vals)
    }
}

/// A plain integer whose text is already canonical: `0`, or an optional
/// minus and 1 to 18 digits without a leading zero (so it fits an i64).
fn canonical_integer_text(text: &[u8]) -> bool {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    match digits {
        [b'0'] => text.len() == 1,
        [b'1'..=b'9', rest @ ..] => rest.len() < 18 && rest.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

fn load64(s: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&s[at..at + 8]);
    u64::from_le_bytes(w)
}

fn load32(s: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&s[at..at + 4]);
    u32::from_le_bytes(w)
}

/// The first `"` or `\` in `s`, eight bytes at a time: a byte equal to
/// `c` is a zero byte of `w ^ c…c`, and the lowest flagged zero byte of
/// `(v - 0x01…01) & !v & 0x80…80` is exact (only bytes above a zero can be
/// flagged falsely).
fn string_stop(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 8 <= s.len() {
        let w = load64(s, i);
        let q = w ^ (ONES * u64::from(b'"'));
        let b = w ^ (ONES * u64::from(b'\\'));
        let found = ((q.wrapping_sub(ONES) & !q) | (b.wrapping_sub(ONES) & !b)) & HIGHS;
        if found != 0 {
            return Some(i + (found.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    s[i..]
        .iter()
        .position(|&b| b == b'"' || b == b'\\')
        .map(|p| i + p)
}

/// `rest` starts with `seg`. Segments are short: word compares (the last
/// one overlapping) cost less than a call to `memcmp`.
fn starts_with(rest: &[u8], seg: &[u8]) -> bool {
    let n = seg.len();
    let Some(r) = rest.get(..n) else {
        return false;
    };
    if n >= 8 {
        let mut i = 0;
        while i + 8 <= n {
            if load64(r, i) != load64(seg, i) {
                return false;
            }
            i += 8;
        }
        load64(r, n - 8) == load64(seg, n - 8)
    } else if n >= 4 {
        load32(r, 0) == load32(seg, 0) && load32(r, n - 4) == load32(seg, n - 4)
    } else {
        r == seg
    }
}

/// Scan the value that starts at `pos` (no whitespace before it); returns
/// its end and where its canonical text is. `None` when the value is an
/// object (a shape slot never is), is malformed, or starts with whitespace.
/// The two common cases, a string without escapes and a small
/// non-negative integer, are handled inline; the rest by
/// [`scan_other_value`].
#[inline(always)]
pub(super) fn scan_value(
    json: &[u8],
    pos: usize,
    depth: u32,
    arena: &mut Vec<u8>,
    scratch: &mut String,
) -> Option<(usize, Val)> {
    // The caller has checked that the line fits u32 offsets.
    let input = |end: usize| Val::line(pos, end);
    let first = *json.get(pos)?;
    if first == b'"' {
        let body = pos + 1;
        let stop = body + string_stop(json.get(body..)?)?;
        if json[stop] == b'"' {
            // No escape: the raw bytes are canonical (the caller has
            // checked that the line holds no control characters).
            return Some((stop + 1, input(stop + 1)));
        }
    } else if first.is_ascii_digit() {
        let mut end = pos + 1;
        while json.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        // Digits only (the number does not go on with `.`, `e`, a sign),
        // no leading zero, at most 18 digits: an i64 as written.
        let plain = !matches!(json.get(end), Some(b'.' | b'e' | b'E' | b'+' | b'-'));
        if plain && (first != b'0' || end == pos + 1) && end - pos <= 18 {
            return Some((end, input(end)));
        }
    }
    scan_other_value(json, pos, depth, arena, scratch)
}

/// [`scan_value`] for everything but the two inline cases.
fn scan_other_value(
    json: &[u8],
    pos: usize,
    depth: u32,
    arena: &mut Vec<u8>,
    scratch: &mut String,
) -> Option<(usize, Val)> {
    let input = |end: usize| Some((end, Val::line(pos, end)));
    match *json.get(pos)? {
        b'"' => into_arena(json, pos, depth, arena, scratch),
        b'-' | b'0'..=b'9' => {
            let mut end = pos;
            while let Some(b) = json.get(end) {
                if matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                    end += 1;
                } else {
                    break;
                }
            }
            let text = &json[pos..end];
            if canonical_integer_text(text) {
                return input(end);
            }
            let start = arena.len();
            let text = std::str::from_utf8(text).ok()?;
            write_number_text(text, arena).ok()?;
            Some((end, Val::arena(start, arena.len())))
        }
        b't' if json[pos..].starts_with(b"true") => input(pos + 4),
        b'f' if json[pos..].starts_with(b"false") => input(pos + 5),
        b'n' if json[pos..].starts_with(b"null") => input(pos + 4),
        b'[' => into_arena(json, pos, depth, arena, scratch),
        _ => None,
    }
}

/// A value rewritten by the general writer into the arena.
fn into_arena(
    json: &[u8],
    pos: usize,
    depth: u32,
    arena: &mut Vec<u8>,
    scratch: &mut String,
) -> Option<(usize, Val)> {
    let start = arena.len();
    let mut c = Cursor {
        b: json,
        i: pos,
        depth,
    };
    write_canonical_value(&mut c, arena, scratch).ok()?;
    Some((c.i, Val::arena(start, arena.len())))
}

/// [`into_arena`] for a value whose bytes the caller has not checked: the
/// general writer copies string bytes as they are, so they must be UTF-8.
fn checked_into_arena(
    json: &[u8],
    pos: usize,
    depth: u32,
    arena: &mut Vec<u8>,
    scratch: &mut String,
) -> Option<(usize, Val)> {
    let (end, v) = into_arena(json, pos, depth, arena, scratch)?;
    std::str::from_utf8(&json[pos..end]).ok()?;
    Some((end, v))
}

/// The array at `pos`: `memo`'s canonical form when the bytes repeat the
/// array it holds (they were checked when it was remembered), else parsed
/// and remembered.
fn array_value(
    memo: &mut Option<(Vec<u8>, Vec<u8>)>,
    json: &[u8],
    pos: usize,
    depth: u32,
    arena: &mut Vec<u8>,
    scratch: &mut String,
) -> Option<(usize, Val)> {
    let start = arena.len();
    if let Some((raw, canonical)) = memo.as_ref()
        && json[pos..].starts_with(raw)
    {
        arena.extend_from_slice(canonical);
        let v = Val::arena(start, arena.len());
        return Some((pos + raw.len(), v));
    }
    let (end, v) = checked_into_arena(json, pos, depth, arena, scratch)?;
    *memo = Some((json[pos..end].to_vec(), arena[v.range()].to_vec()));
    Some((end, v))
}

/// The first `"`, `\` or control character of `json` from `from` on, eight
/// bytes at a time (see [`string_stop`]; a byte below 0x20 is flagged by
/// `(w - 0x20…20) & !w & 0x80…80`, exactly at the lowest one). The bytes
/// before it are ORed into `high`, so the caller knows whether the string
/// had a non-ASCII byte.
#[inline(always)]
fn string_end(json: &[u8], from: usize, high: &mut u64) -> Option<usize> {
    let mut i = from;
    while i + 8 <= json.len() {
        let w = load64(json, i);
        let q = w ^ (ONES * u64::from(b'"'));
        let b = w ^ (ONES * u64::from(b'\\'));
        let c = w.wrapping_sub(ONES * 0x20) & !w;
        let found = ((q.wrapping_sub(ONES) & !q) | (b.wrapping_sub(ONES) & !b) | c) & HIGHS;
        if found != 0 {
            // The bits of the bytes below the first flagged one.
            let below = ((found & found.wrapping_neg()) >> 7).wrapping_sub(1);
            *high |= w & below;
            return Some(i + (found.trailing_zeros() / 8) as usize);
        }
        *high |= w;
        i += 8;
    }
    while let Some(&byte) = json.get(i) {
        if byte == b'"' || byte == b'\\' || byte < 0x20 {
            return Some(i);
        }
        *high |= u64::from(byte);
        i += 1;
    }
    None
}

/// Copy `src[start..end]` to `out` at `at`; returns the end. A piece of
/// at most [`BLOCK`] bytes is copied as one fixed block when both sides
/// have room for it (the bytes past its end are overwritten by the next
/// piece or cut off at the end).
#[inline(always)]
fn put(out: &mut [u8], at: usize, src: &[u8], start: usize, end: usize) -> usize {
    let n = end - start;
    if n <= BLOCK
        && let (Some(to), Some(from)) = (out.get_mut(at..at + BLOCK), src.get(start..start + BLOCK))
    {
        to.copy_from_slice(from);
    } else {
        out[at..at + n].copy_from_slice(&src[start..end]);
    }
    at + n
}

/// How many bytes `a` and `b` have in common from their starts: 32 bytes
/// at a time as fixed-size arrays (the compiler writes vector compares
/// and no bounds checks), then, in the 32 bytes that differ, a word at a
/// time (the first differing byte of a word is its lowest nonzero byte of
/// `x ^ y`).
#[inline(always)]
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let (blocks_a, _) = a.as_chunks::<32>();
    let (blocks_b, _) = b.as_chunks::<32>();
    let mut i = 0;
    for (x, y) in blocks_a.iter().zip(blocks_b) {
        if x != y {
            return i + first_difference(x, y);
        }
        i += 32;
    }
    let (words_a, _) = a[i..].as_chunks::<8>();
    let (words_b, _) = b[i..].as_chunks::<8>();
    for (x, y) in words_a.iter().zip(words_b) {
        let d = u64::from_le_bytes(*x) ^ u64::from_le_bytes(*y);
        if d != 0 {
            return i + (d.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

/// The first byte where two different 32-byte blocks differ.
#[inline(always)]
fn first_difference(x: &[u8; 32], y: &[u8; 32]) -> usize {
    let (wx, _) = x.as_chunks::<8>();
    let (wy, _) = y.as_chunks::<8>();
    let mut at = 0;
    for (x, y) in wx.iter().zip(wy) {
        let d = u64::from_le_bytes(*x) ^ u64::from_le_bytes(*y);
        if d != 0 {
            return at + (d.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    at
}

/// A string value at `at` of exactly `len` bytes, quotes included: the
/// common case of a value that changed but kept its length (a timestamp,
/// an id, an address). True when the bytes between the quotes hold no
/// `"`, `\` or control character (checked a word at a time, the last
/// word overlapping, so the work does not depend on where the string
/// ends); their high bits go to `high`.
#[inline(always)]
fn same_length_string(json: &[u8], at: usize, len: usize, high: &mut u64) -> Option<Val> {
    let end = at + len;
    if len < 2 || json.get(at) != Some(&b'"') || json.get(end - 1) != Some(&b'"') {
        return None;
    }
    let body = &json[at + 1..end - 1];
    let bad = |w: u64| {
        let q = w ^ (ONES * u64::from(b'"'));
        let b = w ^ (ONES * u64::from(b'\\'));
        let c = w.wrapping_sub(ONES * 0x20) & !w;
        ((q.wrapping_sub(ONES) & !q) | (b.wrapping_sub(ONES) & !b) | c) & HIGHS
    };
    let mut flags = 0;
    let mut bits = 0;
    if body.len() >= 8 {
        let mut i = 0;
        while i + 8 < body.len() {
            let w = load64(body, i);
            flags |= bad(w);
            bits |= w;
            i += 8;
        }
        let w = load64(body, body.len() - 8);
        flags |= bad(w);
        bits |= w;
    } else if let Some(w) = json.get(at + 1..at + 9) {
        // Fewer than 8 bytes: the word from the body's start (the line
        // goes on past it), the bytes after the body replaced by `a`.
        let mut word = [0u8; 8];
        word.copy_from_slice(w);
        let mask = low_bytes(body.len());
        let w = (u64::from_le_bytes(word) & mask) | ((ONES * u64::from(b'a')) & !mask);
        flags = bad(w);
        bits = w;
    } else {
        for &byte in body {
            flags |= u64::from(byte == b'"' || byte == b'\\' || byte < 0x20);
            bits |= u64::from(byte);
        }
    }
    if flags != 0 {
        return None;
    }
    *high |= bits;
    Some(Val::line(at, end))
}

/// A mask of the low `n` bytes of a word (`n` < 8).
#[inline(always)]
fn low_bytes(n: usize) -> u64 {
    (1u64 << (8 * (n as u32 & 7))) - 1
}

/// An integer at `at` of exactly `len` bytes, 1 to 8 digits: the common
/// case of a counter that changed but kept its width. The value
/// [`scan_value`] gives when its text is canonical (digits only, no
/// leading zero, not followed by `.`, `e`, `E`, `+`, `-` or a digit);
/// `None` otherwise (the caller then scans it). The digits are checked in
/// one word: per byte, `(b & 0x7f) + 0x46` has its high bit set from
/// `:` up, `(b | 0x80) - 0x30` has it clear below `0`, and neither
/// carries into the next byte.
#[inline(always)]
fn same_length_integer(json: &[u8], at: usize, len: usize) -> Option<Val> {
    if !(1..=8).contains(&len) {
        return None;
    }
    let w = json.get(at..at + 8)?;
    if matches!(
        json.get(at + len),
        None | Some(b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
    ) || (len > 1 && w[0] == b'0')
    {
        return None;
    }
    let mut word = [0u8; 8];
    word.copy_from_slice(w);
    let mask = if len == 8 { u64::MAX } else { low_bytes(len) };
    let x = (u64::from_le_bytes(word) & mask) | ((ONES * u64::from(b'0')) & !mask);
    let above = (x & !HIGHS).wrapping_add(ONES * 0x46);
    let below = !((x | HIGHS).wrapping_sub(ONES * 0x30));
    if (above | below | x) & HIGHS != 0 {
        return None;
    }
    Some(Val::line(at, at + len))
}

/// The value at `pos` of a slot (objects around it: `depth`; its array
/// memo: `array`); its end and where its canonical text is. `None` when it
/// is not a value a slot can hold or its bytes are not valid.
#[inline(always)]
fn scan_slot(
    json: &[u8],
    pos: usize,
    depth: u32,
    array: &mut Option<(Vec<u8>, Vec<u8>)>,
    arena: &mut Vec<u8>,
    scratch: &mut String,
    high: &mut u64,
) -> Option<(usize, Val)> {
    match json.get(pos) {
        Some(b'"') => match string_end(json, pos + 1, high) {
            Some(stop) if json[stop] == b'"' => Some((stop + 1, Val::line(pos, stop + 1))),
            // An escape or a control character: the general writer
            // decides.
            _ => checked_into_arena(json, pos, depth, arena, scratch),
        },
        Some(b'[') => array_value(array, json, pos, depth, arena, scratch),
        Some(_) => scan_value(json, pos, depth, arena, scratch).and_then(|(end, v)| {
            // Numbers and literals are ASCII; a value rewritten by the
            // general writer is checked.
            if v.in_arena() && std::str::from_utf8(&json[pos..end]).is_err() {
                None
            } else {
                Some((end, v))
            }
        }),
        None => None,
    }
}

/// What the learner collects from one line.
struct Learner<'a> {
    json: &'a [u8],
    path: Vec<u8>,
    /// Value ranges of the slots in the line, in line order.
    slots: Vec<(usize, usize)>,
    /// Objects around each slot.
    slot_depths: Vec<u32>,
    /// (path, slot) per leaf; `None`: an empty-object leaf.
    leaves: Vec<(Vec<u8>, Option<u32>)>,
    arena: Vec<u8>,
    scratch: String,
}

impl Learner<'_> {
    /// The members of the object whose `{` was just consumed.
    fn members(&mut self, c: &mut Cursor<'_>) -> Option<()> {
        if c.peek() == Some(b'}') {
            c.i += 1;
            // An empty object below the root is a leaf with the value `{}`.
            self.leaves.push((self.path.clone(), None));
            return Some(());
        }
        loop {
            c.ws();
            let (raw, escaped) = c.raw_string().ok()?;
            if escaped {
                return None;
            }
            let base = self.path.len();
            if base > 0 {
                self.path.push(b'.');
            }
            self.path.extend_from_slice(raw);
            c.eat(b':').ok()?;
            if c.peek()? == b'{' {
                c.i += 1;
                c.depth += 1;
                self.members(c)?;
                c.depth -= 1;
            } else {
                let start = c.i;
                let (end, _) = scan_value(
                    self.json,
                    start,
                    c.depth,
                    &mut self.arena,
                    &mut self.scratch,
                )?;
                c.i = end;
                let slot = u32::try_from(self.slots.len()).ok()?;
                self.slots.push((start, end));
                self.slot_depths.push(c.depth);
                self.leaves.push((self.path.clone(), Some(slot)));
            }
            self.path.truncate(base);
            if !c.more(b'}').ok()? {
                return Some(());
            }
        }
    }
}

impl Shape {
    /// Learn the shape of a line that the general path has just
    /// canonicalised; `None` when it cannot have one (see the module docs).
    pub(super) fn learn(json: &[u8]) -> Option<Shape> {
        let mut learner = Learner {
            json,
            path: Vec::new(),
            slots: Vec::new(),
            slot_depths: Vec::new(),
            leaves: Vec::new(),
            arena: Vec::new(),
            scratch: String::new(),
        };
        // The depth as the general path counts it: one per object entered.
        let mut c = Cursor {
            b: json,
            i: 0,
            depth: 1,
        };
        c.eat(b'{').ok()?;
        if c.peek()? == b'}' {
            return None;
        }
        learner.members(&mut c)?;
        if c.peek().is_some() {
            return None;
        }
        let Learner {
            slots,
            slot_depths,
            leaves,
            ..
        } = learner;

        let mut segments = Vec::with_capacity(json.len());
        let mut slot_specs = Vec::with_capacity(slots.len());
        let mut at = 0;
        for (&(start, end), &depth) in slots.iter().zip(&slot_depths) {
            let seg_start = u32::try_from(segments.len()).ok()?;
            segments.extend_from_slice(&json[at..start]);
            slot_specs.push(SlotSpec {
                seg_start,
                seg_end: u32::try_from(segments.len()).ok()?,
                depth,
            });
            at = end;
        }
        let last_segment = u32::try_from(segments.len()).ok()?;
        segments.extend_from_slice(&json[at..]);

        let mut audit = Vec::new();
        let mut content: Vec<(Vec<u8>, Option<u32>)> = Vec::with_capacity(leaves.len());
        for (path, slot) in leaves {
            if is_audit_path_bytes(&path) {
                // An empty object as an audit value is left to the general path.
                let slot = slot?;
                let name = path
                    .get(super::AUDIT_PREFIX.len()..)
                    .unwrap_or_default()
                    .into();
                audit.push((name, slot));
            } else {
                content.push((path, slot));
            }
        }
        content.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if content.windows(2).any(|w| w[0].0 == w[1].0) {
            return None;
        }
        let mut shape = Shape {
            segments,
            slot_specs,
            last_segment,
            emits: Vec::with_capacity(content.len()),
            prefixes: Vec::new(),
            prefix_bytes: 0,
            paths: Vec::new(),
            path_ends: Vec::with_capacity(content.len()),
            arrays: vec![None; slots.len()],
            known_audit: [None; 6],
            type_audit: None,
            known_leaves: [None; 2],
            audit,
            v_emits: Vec::new(),
            v_prefixes: Vec::new(),
            v_prefix_bytes: 0,
            emit_volatile: Vec::with_capacity(content.len()),
            last: LastLine::default(),
            slot_emit: vec![NO_SLOT; slots.len()],
            changed: Vec::new(),
            compared: false,
        };
        shape.type_audit = match shape
            .audit
            .iter()
            .position(|(name, _)| &name[..] == b".type")
        {
            Some(i) => Some(u32::try_from(i).ok()?),
            None => None,
        };
        for (i, (name, _)) in shape.audit.iter().enumerate() {
            if let Some(k) = name.strip_prefix(b".").and_then(|name| {
                super::KNOWN_AUDIT_FIELDS
                    .iter()
                    .position(|known| known.as_bytes() == name)
            }) && shape.known_audit[k].is_none()
            {
                shape.known_audit[k] = Some(u32::try_from(i).ok()?);
            }
        }
        for (n, (path, slot)) in content.iter().enumerate() {
            let prefix_start = u32::try_from(shape.prefixes.len()).ok()?;
            shape.prefixes.push(if n == 0 { b'{' } else { b',' });
            shape.prefixes.push(b'"');
            shape.prefixes.extend_from_slice(path);
            shape.prefixes.extend_from_slice(b"\":");
            if slot.is_none() {
                shape.prefixes.extend_from_slice(b"{}");
            }
            if let Some(slot) = slot {
                *shape.slot_emit.get_mut(*slot as usize)? = u32::try_from(n).ok()?;
            }
            shape.emits.push(Emit {
                prefix_start,
                prefix_end: u32::try_from(shape.prefixes.len()).ok()?,
                slot: slot.unwrap_or(NO_SLOT),
            });
            shape.paths.extend_from_slice(path);
            shape.path_ends.push(u32::try_from(shape.paths.len()).ok()?);
            // The path's bytes are as the form writes them (escaped), which
            // is how v3 classifies them.
            let volatile = crate::hash_v3::is_volatile(path);
            shape.emit_volatile.push(volatile);
            if volatile {
                let v_start = u32::try_from(shape.v_prefixes.len()).ok()?;
                let first = shape.v_emits.is_empty();
                shape.v_prefixes.push(if first { b'{' } else { b',' });
                shape.v_prefixes.push(b'"');
                shape.v_prefixes.extend_from_slice(path);
                shape.v_prefixes.extend_from_slice(b"\":");
                if slot.is_none() {
                    shape.v_prefixes.extend_from_slice(b"{}");
                }
                shape.v_emits.push(Emit {
                    prefix_start: v_start,
                    prefix_end: u32::try_from(shape.v_prefixes.len()).ok()?,
                    slot: slot.unwrap_or(NO_SLOT),
                });
            }
        }
        shape.prefix_bytes = shape.prefixes.len();
        shape.prefixes.resize(shape.prefix_bytes + BLOCK, 0);
        shape.v_prefix_bytes = shape.v_prefixes.len();
        shape.v_prefixes.resize(shape.v_prefix_bytes + BLOCK, 0);
        for (k, path) in super::KNOWN_LEAVES.iter().enumerate() {
            shape.known_leaves[k] = match shape.leaf_index(path.as_bytes()) {
                Some(i) => Some(u32::try_from(i).ok()?),
                None => None,
            };
        }
        Some(shape)
    }

    /// Match `json` against the shape. True when the line is in the shape:
    /// then [`Shape::vals`] holds each slot's canonical value (in `json` or
    /// in [`Shape::arena`]) and the line is kept for the next comparison.
    ///
    /// The caller has not checked the line's bytes: this checks what the
    /// general path would reject. The segments are bytes of a line the
    /// general path accepted; a string value stops the scan at a control
    /// character (invalid inside a string, so the general path decides); a
    /// non-ASCII byte in a string value has the whole line checked for
    /// UTF-8; values rewritten by the general writer have their bytes
    /// checked for UTF-8. So a line that matches is one the general path
    /// accepts, with the same leaves.
    pub(super) fn matches(&mut self, json: &[u8], scratch: &mut String) -> bool {
        // The OR of the bytes of scanned string values: a high bit means
        // non-ASCII.
        let mut high = 0u64;
        self.changed.clear();
        self.compared = !self.last.line.is_empty();
        let matched = if self.compared {
            self.matches_against_last(json, scratch, &mut high)
        } else {
            self.matches_scanning(json, scratch, &mut high)
        };
        if !matched || (high & HIGHS != 0 && std::str::from_utf8(json).is_err()) {
            // The per-slot state may be partly rewritten for this line: the
            // next line is scanned in full.
            self.last.line.clear();
            self.last.stable = None;
            return false;
        }
        if !self.compared
            || self
                .changed
                .iter()
                .any(|&(e, _)| self.emit_volatile.get(e as usize) != Some(&true))
        {
            self.last.stable = None;
        }
        // This line is the reference for the next one: its slots' state is
        // already in `last`.
        self.last.line.clear();
        self.last.line.extend_from_slice(json);
        true
    }

    /// Per slot, in line order: where its canonical value is (in the line
    /// last matched, or in [`Shape::arena`]). Meaningful after a match.
    pub(super) fn vals(&self) -> &[Val] {
        &self.last.vals
    }

    /// The last line matched and its slots' state (a copy of it lets a
    /// later line be compared with this one rather than with whatever line
    /// the shape matched in between: see `Canonicalizer`'s bases).
    pub(super) fn last_line(&self) -> &LastLine {
        &self.last
    }

    /// Exchange the line the next match compares with, and its slots'
    /// state, for `other` (kept by the caller since that line matched this
    /// shape, or empty: then the next line is scanned in full).
    pub(super) fn swap_last(&mut self, other: &mut LastLine) {
        std::mem::swap(&mut self.last, other);
    }

    /// Whether the line starts as the shape's lines do (its bytes before
    /// the first value): a cheap test before a match, which would clear
    /// the last line on a line of another view.
    pub(super) fn starts(&self, json: &[u8]) -> bool {
        let first = self.slot_specs.first().map_or(&self.segments[..], |spec| {
            &self.segments[spec.seg_start as usize..spec.seg_end as usize]
        });
        json.starts_with(first)
    }

    /// How many values the last match read: those that differed from the
    /// line it was compared with, or every slot when it scanned the line.
    pub(super) fn values_read(&self) -> usize {
        if self.compared {
            self.changed.len()
        } else {
            self.slot_specs.len()
        }
    }

    /// The rewritten values of the line last matched.
    pub(super) fn arena(&self) -> &[u8] {
        &self.last.arena
    }

    /// [`Shape::matches`] by scanning every segment and value.
    fn matches_scanning(&mut self, json: &[u8], scratch: &mut String, high: &mut u64) -> bool {
        let Shape {
            segments,
            slot_specs,
            arrays,
            last,
            ..
        } = self;
        let LastLine {
            raw, vals, arena, ..
        } = last;
        arena.clear();
        raw.resize(slot_specs.len(), (0, 0));
        vals.resize(slot_specs.len(), Val::default());
        let mut pos = 0;
        for (((spec, val), array), raw) in slot_specs
            .iter()
            .zip(vals.iter_mut())
            .zip(arrays.iter_mut())
            .zip(raw.iter_mut())
        {
            let seg = &segments[spec.seg_start as usize..spec.seg_end as usize];
            let Some(rest) = json.get(pos..) else {
                return false;
            };
            if !starts_with(rest, seg) {
                return false;
            }
            pos += seg.len();
            let Some((end, v)) = scan_slot(json, pos, spec.depth, array, arena, scratch, high)
            else {
                return false;
            };
            *raw = (pos as u32, end as u32);
            *val = v;
            pos = end;
        }
        json.get(pos..) == Some(&self.segments[self.last_segment as usize..])
    }

    /// [`Shape::matches`] by comparing the line with the last line matched
    /// (`self.last`): bytes equal to it, segments and values, are in the
    /// shape as they were there (values equal to values that were checked,
    /// ending where they ended: the byte after each is compared too, so a
    /// number cannot go on); only values where the lines differ are
    /// scanned. A difference inside a segment means the line is not in the
    /// shape. Lines of one view differ in a few values, so this reads most
    /// of the line at the speed of a comparison.
    ///
    /// The per-slot state is updated in place: a slot before the next
    /// difference is skipped (or, once a value changed its length, moved by
    /// the difference); a changed value is scanned, and a rewritten one
    /// appended to the arena (which is compacted when it grows).
    fn matches_against_last(&mut self, json: &[u8], scratch: &mut String, high: &mut u64) -> bool {
        let Shape {
            slot_specs,
            arrays,
            last,
            changed,
            slot_emit,
            ..
        } = self;
        let LastLine {
            line: prev,
            raw,
            vals,
            arena,
            ..
        } = last;
        let prev = &prev[..];
        if arena.len() > ARENA_COMPACT_AT {
            compact_arena(vals, arena);
        }
        let slots = raw
            .len()
            .min(vals.len())
            .min(slot_specs.len())
            .min(arrays.len());
        // Slices of one known length: no bounds checks in the loops below.
        let (raw, vals) = (&mut raw[..slots], &mut vals[..slots]);
        let (specs, arrays) = (&slot_specs[..slots], &mut arrays[..slots]);
        let slot_emit = &slot_emit[..slots];
        // `json[..q]` corresponds to `prev[..p]`; both are at the end of a
        // value (or the start). The lines first differ at `differs_at` in
        // `prev`. `raw[..s]` and `vals[..s]` are this line's.
        let (mut p, mut q) = (0usize, 0usize);
        let mut differs_at = common_prefix(json, prev);
        let mut s = 0;
        loop {
            // The slots whose value and the byte after it are the same as
            // in the last line.
            if p == q {
                while s < slots && (raw[s].1 as usize) < differs_at {
                    s += 1;
                }
            } else {
                // Moved by `q - p` (mod 2^32: the sums are in range).
                let d = (q as u32).wrapping_sub(p as u32);
                while s < slots && (raw[s].1 as usize) < differs_at {
                    let (start, end) = raw[s];
                    let (start, end) = (start.wrapping_add(d), end.wrapping_add(d));
                    raw[s] = (start, end);
                    if !vals[s].in_arena() {
                        vals[s] = Val { start, end };
                    }
                    s += 1;
                }
            }
            if s == slots {
                break;
            }
            let (start, end) = (raw[s].0 as usize, raw[s].1 as usize);
            if differs_at < start {
                // In the segment before this value.
                return false;
            }
            // This value differs (or the byte after it does): read it anew.
            let at = q + (start - p);
            let same_length = match json.get(at) {
                Some(b'"') => same_length_string(json, at, end - start, high),
                Some(b'1'..=b'9') => same_length_integer(json, at, end - start),
                _ => None,
            };
            let scanned = match same_length {
                Some(v) => Some((v.range().end, v)),
                None => scan_slot(
                    json,
                    at,
                    specs[s].depth,
                    &mut arrays[s],
                    arena,
                    scratch,
                    high,
                ),
            };
            let Some((value_end, v)) = scanned else {
                return false;
            };
            raw[s] = (at as u32, value_end as u32);
            vals[s] = v;
            if slot_emit[s] != NO_SLOT {
                changed.push((slot_emit[s], v));
            }
            p = end;
            q = value_end;
            differs_at = p + common_prefix(&json[q..], &prev[p..]);
            s += 1;
        }
        // Only the last segment is left: equal to the end of both lines.
        differs_at == prev.len() && json.len() - q == prev.len() - p
    }

    /// Write the canonical form of the matched line into `out`; the range of
    /// each content leaf's value in `out` goes to `leaf_values`.
    pub(super) fn emit(&self, json: &[u8], out: &mut Vec<u8>, leaf_values: &mut Vec<(u32, u32)>) {
        leaf_values.clear();
        leaf_values.reserve(self.emits.len());
        self.write_leaves(
            &self.emits,
            &self.prefixes[..],
            self.prefix_bytes,
            json,
            out,
            |range| leaf_values.push(range),
        );
    }

    /// Write `emits` (each its prefix, then its slot's value) and the
    /// closing `}` into `out`, from the matched line; `leaf` gets each
    /// value's range in `out` (an empty-object leaf's covers its `{}`).
    #[inline(always)]
    fn write_leaves(
        &self,
        emits: &[Emit],
        prefixes: &[u8],
        prefix_bytes: usize,
        json: &[u8],
        out: &mut Vec<u8>,
        mut leaf: impl FnMut((u32, u32)),
    ) {
        let (vals, arena) = (&self.last.vals[..], &self.last.arena[..]);
        // Most pieces are short: each is copied as a fixed block of `BLOCK`
        // bytes when its source has that many from its start (the bytes past
        // its end are overwritten by the next piece or cut off at the end),
        // so the copy is two vector moves rather than a call to `memcpy`.
        // `prefixes` has `BLOCK` bytes of padding; the output, `BLOCK` bytes
        // of slack past its exact length (prefixes + values + `}`).
        let value_bytes: usize = emits
            .iter()
            .filter(|e| e.slot != NO_SLOT)
            .map(|e| vals[e.slot as usize].len())
            .sum();
        let bound = prefix_bytes + value_bytes + 1 + BLOCK;
        if out.len() < bound {
            out.resize(bound, 0);
        }
        let mut at = 0;
        for e in emits {
            at = put(
                out,
                at,
                prefixes,
                e.prefix_start as usize,
                e.prefix_end as usize,
            );
            leaf(if e.slot == NO_SLOT {
                (at as u32 - 2, at as u32)
            } else {
                let v = vals[e.slot as usize];
                let src = if v.in_arena() { arena } else { json };
                let start = at;
                let r = v.range();
                at = put(out, at, src, r.start, r.end);
                (start as u32, at as u32)
            });
        }
        out[at] = b'}';
        out.truncate(at + 1);
    }

    /// The v2 digest of the v3 stable part of the matched line's form,
    /// when known: given for a line before it whose stable leaves this
    /// one repeats (see [`LastLine::stable`]).
    pub(super) fn stable_digest(&self) -> Option<&crate::hash::Hash> {
        self.last.stable.as_ref()
    }

    /// Keep the digest of the matched line's stable part (computed by the
    /// caller from its form).
    pub(super) fn set_stable_digest(&mut self, digest: crate::hash::Hash) {
        self.last.stable = Some(digest);
    }

    /// Write the v3 volatile part of the matched line's form into `out`
    /// (its leaves as [`Shape::emit`] writes them, `{}` when there are
    /// none): the bytes `crate::hash_v3::split` gives of the full form.
    pub(super) fn emit_volatile(&self, json: &[u8], out: &mut Vec<u8>) {
        if self.v_emits.is_empty() {
            out.clear();
            out.extend_from_slice(b"{}");
            return;
        }
        self.write_leaves(
            &self.v_emits,
            &self.v_prefixes,
            self.v_prefix_bytes,
            json,
            out,
            |_| {},
        );
    }

    /// Rewrite, in `out`, only the values that changed since the line
    /// matched before this one, when `out` holds that line's form (emitted
    /// by this shape, with `leaf_values` its leaves): the result is what
    /// [`Shape::emit`] writes, since the other pieces are the same bytes in
    /// the same order. A value that kept its length is copied over the old
    /// one; one that did not moves the rest of the form (and the ranges of
    /// the leaves after it) by the difference. False (and `out` partly
    /// rewritten) when the shape did not compare the line with the last:
    /// the caller then emits in full.
    pub(super) fn emit_changes(
        &self,
        json: &[u8],
        out: &mut Vec<u8>,
        leaf_values: &mut [(u32, u32)],
    ) -> bool {
        let arena = &self.last.arena[..];
        if !self.compared {
            return false;
        }
        for &(e, v) in &self.changed {
            let e = e as usize;
            let Some(&(start, end)) = leaf_values.get(e) else {
                return false;
            };
            let (start, end) = (start as usize, end as usize);
            let src = if v.in_arena() { arena } else { json };
            let Some(from) = src.get(v.range()) else {
                return false;
            };
            if from.len() == end.wrapping_sub(start) {
                // The common case: the same length, copied over.
                let Some(to) = out.get_mut(start..end) else {
                    return false;
                };
                to.copy_from_slice(from);
                continue;
            }
            if start > end || end > out.len() {
                return false;
            }
            let new_end = start + from.len();
            if new_end != end {
                // The form's length stays below 4 GiB (u32 offsets, as in
                // `emit`).
                let old_len = out.len();
                if new_end > end {
                    out.resize(old_len + (new_end - end), 0);
                }
                out.copy_within(end..old_len, new_end);
                out.truncate(old_len + new_end - end);
                let d = (new_end as u32).wrapping_sub(end as u32);
                for leaf in leaf_values.iter_mut().skip(e + 1) {
                    *leaf = (leaf.0.wrapping_add(d), leaf.1.wrapping_add(d));
                }
                leaf_values[e].1 = new_end as u32;
            }
            out[start..new_end].copy_from_slice(from);
        }
        true
    }

    /// The index (in output order) of the content leaf at `path`.
    pub(super) fn leaf_index(&self, path: &[u8]) -> Option<usize> {
        let path_at = |k: usize| {
            let start = if k == 0 {
                0
            } else {
                self.path_ends[k - 1] as usize
            };
            &self.paths[start..self.path_ends[k] as usize]
        };
        let (mut lo, mut hi) = (0, self.path_ends.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match path_at(mid).cmp(path) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    /// The audit leaves: field name and slot.
    pub(super) fn audit(&self) -> &[(Box<[u8]>, u32)] {
        &self.audit
    }

    /// Per path of [`super::KNOWN_LEAVES`]: which content leaf it is.
    pub(super) fn known_leaves(&self) -> &[Option<u32>; 2] {
        &self.known_leaves
    }

    /// The canonical value of content leaf `e` (output order) of the
    /// matched line, as [`Shape::emit`] writes it.
    pub(super) fn leaf_value<'a>(&'a self, json: &'a [u8], e: usize) -> Option<&'a [u8]> {
        let emit = self.emits.get(e)?;
        if emit.slot == NO_SLOT {
            return Some(b"{}");
        }
        let v = *self.last.vals.get(emit.slot as usize)?;
        let src = if v.in_arena() {
            &self.last.arena[..]
        } else {
            json
        };
        src.get(v.range())
    }

    /// Which audit leaf is the first named `type`.
    pub(super) fn type_audit(&self) -> Option<u32> {
        self.type_audit
    }

    /// Per name of [`super::KNOWN_AUDIT_FIELDS`]: which audit leaf holds it.
    pub(super) fn known_audit(&self) -> &[Option<u32>; 6] {
        &self.known_audit
    }
}

#[cfg(test)]
mod tests {
    use super::super::Canonicalizer;

    /// xorshift64*: a small deterministic generator (no dependency).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
            xs[self.below(xs.len())]
        }
    }

    /// A record skeleton: keys and nesting; leaves get fresh values per line.
    enum Node {
        Object(Vec<(String, Node)>),
        Leaf,
        EmptyObject,
    }

    /// Keys as written in JSON (already escaped where they have escapes),
    /// with dotted keys and pairs that flatten onto one path.
    const KEYS: &[&str] = &[
        "a",
        "b",
        "c",
        "a.b",
        "b.c",
        "source",
        "ip",
        "port",
        "x.y.z",
        "é",
        "k\\u0065y",
        "we\\\"ird",
        "tab\\tkey",
        "flowscribe",
        "audit",
        "flowscribe.audit",
        "flowscribe.auditor",
        "@timestamp",
        "",
        "z",
        "a.b.c",
        // The paths of `KNOWN_LEAVES`, whole and in parts.
        "host.name",
        "record",
    ];

    fn skeleton(rng: &mut Rng, depth: usize) -> Node {
        let n = 1 + rng.below(5);
        let mut members = Vec::new();
        for _ in 0..n {
            let key = rng.pick(KEYS).to_string();
            let child = match rng.below(10) {
                0..=5 => Node::Leaf,
                6 if depth < 3 => Node::Object(Vec::new()),
                7 => Node::EmptyObject,
                _ if depth < 3 => skeleton(rng, depth + 1),
                _ => Node::Leaf,
            };
            members.push((key, child));
        }
        // Sometimes the audit fields, in one of the three layouts.
        if depth == 0 && rng.below(3) > 0 {
            match rng.below(3) {
                0 => members.push((
                    "flowscribe.audit".into(),
                    Node::Object(
                        ["chain", "view", "run", "batch", "seq"]
                            .iter()
                            .map(|k| (k.to_string(), Node::Leaf))
                            .collect(),
                    ),
                )),
                1 => members.push((
                    "flowscribe".into(),
                    Node::Object(vec![(
                        "audit".into(),
                        Node::Object(
                            ["seq", "chain", "type"]
                                .iter()
                                .map(|k| (k.to_string(), Node::Leaf))
                                .collect(),
                        ),
                    )]),
                )),
                _ => {
                    for k in ["seq", "view", "run"] {
                        members.push((format!("flowscribe.audit.{k}"), Node::Leaf));
                    }
                }
            }
        }
        Node::Object(members)
    }

    fn scalar(rng: &mut Rng) -> String {
        let strings = [
            "\"plain\"",
            "\"\"",
            "\"10.0.0.1\"",
            "\"caf\\u00e9\"",
            "\"\\ud83d\\ude00 smile\"",
            "\"a\\nb\"",
            "\"q\\\"uote\"",
            "\"back\\\\slash\"",
            "\"sl\\/ash\"",
            "\"\\u0001\"",
            "\"é😀\"",
            "\"with space\"",
            "\"abababababababababababababababab\"",
        ];
        let numbers = [
            "0",
            "-0",
            "5",
            "-12",
            "5.0",
            "0.5",
            "5e-1",
            "1e3",
            "1E3",
            "-1.25e+2",
            "18446744073709551615",
            "9223372036854775807",
            "-9223372036854775808",
            "123456789012345678901234",
            "1e300",
            "123456789012345678",
            "1234567890123456789",
            "007",
            "1.",
            "-",
            "2.5e",
            "9007199254740993.0",
        ];
        match rng.below(40) {
            0..=15 => rng.pick(&strings).to_string(),
            16..=31 => rng.pick(&numbers).to_string(),
            32..=35 => rng.pick(&["true", "false", "null"]).to_string(),
            36..=38 => {
                let arrays = [
                    "[]",
                    "[1,2.0,\"x\"]",
                    "[{\"b\":1,\"a\":{\"d\":[],\"c\":{}}},null]",
                    "[ 1 , [ 2 ] ]",
                    "[{\"k\":1,\"k\":2}]",
                ];
                rng.pick(&arrays).to_string()
            }
            _ => {
                // Not a scalar where the shape has one: an object, or garbage.
                rng.pick(&["{\"n\":1}", "{}", "tru", "\"unterminated", "\"ctl\u{1}\""])
                    .to_string()
            }
        }
    }

    fn write(node: &Node, rng: &mut Rng, spaced: bool, out: &mut String) {
        match node {
            Node::Leaf => out.push_str(&scalar(rng)),
            Node::EmptyObject => out.push_str("{}"),
            Node::Object(members) => {
                out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    if spaced {
                        out.push(' ');
                    }
                    out.push('"');
                    out.push_str(k);
                    out.push_str("\":");
                    if spaced {
                        out.push(' ');
                    }
                    write(v, rng, spaced, out);
                }
                out.push('}');
            }
        }
    }

    /// Everything a caller can read after one line, from either path.
    fn observe(c: &mut Canonicalizer, line: &[u8], paths: &[String]) -> String {
        match c.canonicalize(line) {
            Err(e) => format!("error {e}"),
            Ok(bytes) => {
                let mut seen = String::from_utf8(bytes.to_vec()).unwrap();
                seen.push_str(&format!(" audit={}", c.has_audit()));
                for f in [
                    "chain", "view", "run", "batch", "seq", "suite", "type", "", "audit",
                ] {
                    seen.push_str(&format!(" {f}={:?}", c.audit_field(f)));
                    // The one-pass reader finds what the lookup finds.
                    let first = c
                        .audit_fields()
                        .find(|(name, _)| *name == f.as_bytes())
                        .map(|(_, v)| v);
                    assert_eq!(first, c.audit_field(f), "{f}");
                }
                let fields = crate::fields::AuditFieldsRef::from_canonical(c);
                seen.push_str(&format!(" fields={fields:?}"));
                for p in paths {
                    seen.push_str(&format!(" {p}={:?}", c.leaf(p)));
                }
                // The leaves a shape finds once are the ones a lookup finds.
                for (k, p) in super::super::KNOWN_LEAVES.iter().enumerate() {
                    assert_eq!(c.known_leaf(k), c.leaf(p), "{p}");
                    seen.push_str(&format!(" known {p}={:?}", c.known_leaf(k)));
                }
                assert_eq!(c.known_leaf(2), None);
                assert_eq!(c.audit_type(), c.audit_field("type"));
                seen
            }
        }
    }

    /// Canonicalise `text` with `fast` and with a fresh general-only
    /// canonicaliser and assert that everything a caller can read is the
    /// same. Returns whether the line was valid and had a learnable shape.
    fn compare_paths(fast: &mut Canonicalizer, text: &str) -> (bool, bool) {
        compare_lines(fast, text.as_bytes())
    }

    /// [`compare_paths`] for any bytes.
    fn compare_lines(fast: &mut Canonicalizer, line: &[u8]) -> (bool, bool) {
        let mut general = Canonicalizer::general_only();
        // Leaf lookups: every path of the general form, and a few that are
        // absent or audit paths.
        let mut paths: Vec<String> = match general.canonicalize(line) {
            Ok(b) => serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(b)
                .unwrap()
                .keys()
                .cloned()
                .collect(),
            Err(_) => Vec::new(),
        };
        paths.extend(["nope".into(), "flowscribe.audit.seq".into(), "a".into()]);
        let want = observe(&mut general, line, &paths);
        let got = observe(fast, line, &paths);
        assert_eq!(got, want, "line {}", String::from_utf8_lossy(line));
        let ok = !want.starts_with("error");
        (ok, ok && super::Shape::learn(line).is_some())
    }

    /// Lines of one shape whose rewritten values (escaped strings, numbers
    /// that are not canonical, arrays) change from line to line while
    /// others stay: the shape's arena fills with replaced values and is
    /// compacted (at 256 bytes in tests) while unchanged rewritten values
    /// must still be found, also after a value before them changed its
    /// length. Every line is compared with the general path.
    #[test]
    fn rewritten_values_survive_arena_compaction() {
        let mut fast = Canonicalizer::new();
        let mut rng = Rng(11);
        let mut fast_lines = 0;
        for n in 0..3_000u64 {
            // Changes on most lines: the escaped string, sometimes with a
            // length change; rarely: the array and the number.
            let pad = "x".repeat(rng.below(3));
            let array = if rng.below(50) == 0 { n % 7 } else { 1 };
            let number = if rng.below(40) == 0 { n % 5 } else { 2 };
            let line = format!(
                r#"{{"a":"esc\u00{:02x}{pad}","b":[{array},{{"k":"v"}}],"c":"plain-{n}","d":{number}.50,"e":"q\"{}","f":[1,2]}}"#,
                0x41 + n % 26,
                n % 13,
            );
            let before = fast.fast_hits();
            let (ok, _) = compare_paths(&mut fast, &line);
            assert!(ok, "{line}");
            fast_lines += fast.fast_hits() - before;
        }
        assert!(fast_lines > 2_900, "{fast_lines} lines took the fast path");
    }

    /// Lines that differ from the line before in a few random bytes:
    /// quotes, backslashes, control characters, bytes that are not UTF-8,
    /// digits and signs that make a number longer or not canonical,
    /// whitespace, braces; inserted, replaced or removed, or whole values
    /// changed. The fast path compares a line with the last one it matched,
    /// so these are its hardest cases; it must give what the general path
    /// gives on every one (or leave the line to it).
    #[test]
    fn lines_that_differ_from_the_last_in_a_few_bytes_give_the_same_result() {
        const BYTES: &[u8] = b"\"\\\x01\x1f\xff\xc3\xa9\x80059.-+eE }{[],:a\n\t";
        let mut rng = Rng(0xfeed_f00d);
        let mut fast = Canonicalizer::new();
        let (mut lines, mut valid, mut learnable) = (0u64, 0u64, 0u64);
        for _ in 0..400 {
            let skel = skeleton(&mut rng, 0);
            let spaced = rng.below(6) == 0;
            let mut text = String::new();
            write(&skel, &mut rng, spaced, &mut text);
            let mut line = text.into_bytes();
            for _ in 0..30 {
                // Each line is a change of the last valid one.
                let mut next = line.clone();
                match rng.below(10) {
                    // New values in the same skeleton.
                    0 => {
                        let mut text = String::new();
                        write(&skel, &mut rng, false, &mut text);
                        next = text.into_bytes();
                    }
                    // One byte replaced, inserted or removed.
                    1 if !next.is_empty() => {
                        let at = rng.below(next.len());
                        next[at] = BYTES[rng.below(BYTES.len())];
                    }
                    2 => {
                        let at = rng.below(next.len() + 1);
                        next.insert(at, BYTES[rng.below(BYTES.len())]);
                    }
                    3 if !next.is_empty() => {
                        next.remove(rng.below(next.len()));
                    }
                    // A digit or letter changed in place (the common case: a
                    // value that keeps its length).
                    _ => {
                        if let Some(at) = (0..next.len())
                            .map(|_| rng.below(next.len()))
                            .find(|&at| next[at].is_ascii_alphanumeric())
                        {
                            next[at] = b"0123456789abcdefxyz"[rng.below(19)];
                        }
                    }
                }
                let (ok, can_learn) = compare_lines(&mut fast, &next);
                learnable += u64::from(can_learn);
                if ok {
                    line = next;
                }
                valid += u64::from(ok);
                lines += 1;
            }
        }
        assert_eq!(lines, 12_000);
        // Most changed bytes fall in keys (a new shape, learned) or break
        // the line; what is left still runs the fast path several hundred
        // times on a line one byte away from the last.
        assert!(
            valid > 5_000 && fast.fast_hits() > 500,
            "{} fast of {learnable} learnable, {valid} valid",
            fast.fast_hits()
        );
    }

    /// Lines of 24 shapes in random order: more shapes than the cache
    /// holds, so shapes are evicted, relearned and reordered all the time.
    #[test]
    fn interleaved_shapes_give_the_same_form_as_the_general_path() {
        let mut rng = Rng(0x5eed);
        let skeletons: Vec<(Node, bool)> = (0..24)
            .map(|_| (skeleton(&mut rng, 0), rng.below(5) == 0))
            .collect();
        let mut fast = Canonicalizer::new();
        let mut learnable = 0u64;
        for _ in 0..6_000 {
            let (skel, spaced) = &skeletons[rng.below(skeletons.len())];
            let mut text = String::new();
            write(skel, &mut rng, *spaced, &mut text);
            learnable += u64::from(compare_paths(&mut fast, &text).1);
        }
        assert!(
            learnable > 1_000 && fast.fast_hits() * 3 > learnable,
            "{} fast of {learnable} learnable",
            fast.fast_hits()
        );
    }

    /// The fast path (learned shapes) and the general path agree on every
    /// line: bytes, errors, audit fields and leaf lookups, over randomised
    /// records with nesting, arrays, escapes, odd numbers, dotted keys,
    /// paths that collide when flattened, and lines that leave their shape.
    #[test]
    fn learned_shapes_give_the_same_form_as_the_general_path() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut fast = Canonicalizer::new();
        let mut lines = 0u64;
        let mut valid = 0u64;
        // Valid lines whose shape can be learned (unique paths, no escaped
        // keys): the fast path's share of the work.
        let mut learnable = 0u64;
        for _ in 0..600 {
            let skel = skeleton(&mut rng, 0);
            let spaced = rng.below(5) == 0;
            let newline = rng.below(4) == 0;
            for _ in 0..25 {
                let mut text = String::new();
                write(&skel, &mut rng, spaced, &mut text);
                if newline || rng.below(50) == 0 {
                    text.push('\n');
                }
                let (ok, can_learn) = compare_paths(&mut fast, &text);
                lines += 1;
                valid += u64::from(ok);
                learnable += u64::from(can_learn);
            }
        }
        assert_eq!(lines, 15_000);
        // The fast path did most of the learnable lines (each skeleton's
        // first line is learned; lines that leave their shape are not fast),
        // so the comparison above is not vacuous.
        assert!(
            valid > 7_000 && fast.fast_hits() * 3 > learnable * 2,
            "{} fast of {learnable} learnable, {valid} valid",
            fast.fast_hits()
        );
    }

    /// The word-at-a-time helpers agree with the obvious loops on every
    /// length and position around the 4- and 8-byte boundaries.
    #[test]
    fn word_helpers_match_the_plain_loops() {
        let mut rng = Rng(7);
        let alphabet = b"ab\"\\\x7f\xc3\xa9 ";
        for _ in 0..20_000 {
            let len = rng.below(40);
            let s: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
            let want = s.iter().position(|&b| b == b'"' || b == b'\\');
            assert_eq!(super::string_stop(&s), want, "{s:?}");
            let cut = rng.below(len + 1);
            let mut seg = s[..cut].to_vec();
            if !seg.is_empty() && rng.below(2) == 0 {
                let k = rng.below(seg.len());
                seg[k] ^= 1 << rng.below(8);
            }
            assert_eq!(
                super::starts_with(&s, &seg),
                s.starts_with(&seg),
                "{s:?} {seg:?}"
            );
            if cut < len {
                assert!(
                    !super::starts_with(&s[..cut], &s),
                    "segment longer than input"
                );
            }
        }
    }

    /// The same-length readers give what the scanners give: an integer of
    /// the given width whenever `scan_value` reads a canonical integer
    /// ending there, a string whenever it is one without escapes or
    /// control characters (with the same high bits).
    #[test]
    fn same_length_readers_match_the_scanners() {
        let mut rng = Rng(13);
        let alphabet = b"0123456789019.eE+-\"\\a\x1f\xc3 ,}";
        let (mut integers, mut strings) = (0, 0);
        for _ in 0..200_000 {
            let len = rng.below(14);
            let mut json: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
            if rng.below(2) == 0 && len >= 2 {
                json[0] = b'"';
                let q = 1 + rng.below(len - 1);
                json[q] = b'"';
            } else if rng.below(2) == 0 {
                // Mostly digits.
                for b in json.iter_mut() {
                    if rng.below(8) > 0 {
                        *b = b'0' + rng.below(10) as u8;
                    }
                }
            }
            // Often the width of the leading run of digits, the case that
            // is accepted.
            let run = json.iter().take_while(|b| b.is_ascii_digit()).count();
            let width = if rng.below(2) == 0 {
                run
            } else {
                rng.below(len + 2)
            };
            let (mut arena, mut scratch) = (Vec::new(), String::new());
            let scanned = super::scan_value(&json, 0, 1, &mut arena, &mut scratch);
            let integer = super::same_length_integer(&json, 0, width);
            if let Some(v) = integer {
                integers += 1;
                assert_eq!(v.range(), 0..width, "{json:?}");
                let (end, s) = scanned.expect("an integer scans");
                assert!(!s.in_arena() && end == width, "{json:?} {width}");
            } else if json.first().is_some_and(|b| (b'1'..=b'9').contains(b))
                && (1..=8).contains(&width)
                && json.len() >= 8
                && json.len() > width
            {
                // Refused (in a line, where a value is followed by a byte):
                // the scanner does not read a canonical integer of that
                // width.
                assert!(
                    !matches!(scanned, Some((end, s)) if end == width && !s.in_arena()),
                    "{json:?} {width}"
                );
            }
            let mut high = 0;
            if let Some(v) = super::same_length_string(&json, 0, width, &mut high) {
                strings += 1;
                assert_eq!(v.range(), 0..width);
                let body = &json[1..width - 1];
                assert!(!body.iter().any(|&b| b == b'"' || b == b'\\' || b < 0x20));
                let or = body.iter().fold(0u64, |a, &b| a | u64::from(b));
                assert_eq!(high & super::HIGHS != 0, or & 0x80 != 0, "{json:?}");
            } else if width >= 2
                && json.len() >= width
                && json[0] == b'"'
                && json[width - 1] == b'"'
            {
                let body = &json[1..width - 1];
                assert!(body.iter().any(|&b| b == b'"' || b == b'\\' || b < 0x20));
            }
        }
        assert!(integers > 1_000 && strings > 1_000, "{integers} {strings}");
    }

    /// Nesting is limited the same way on both paths, and a hostile depth
    /// is an error, not a stack overflow.
    #[test]
    fn nesting_limit_is_the_same_on_both_paths() {
        let line = |k: usize| {
            format!(
                r#"{{"a":{{"b":{}{}}},"c":1}}"#,
                "[".repeat(k),
                "]".repeat(k)
            )
        };
        let mut fast = Canonicalizer::new();
        fast.canonicalize(line(1).as_bytes()).unwrap();
        let mut ok = 0;
        for k in 250..262 {
            let want = Canonicalizer::general_only()
                .canonicalize(line(k).as_bytes())
                .map(<[u8]>::to_vec);
            let got = fast.canonicalize(line(k).as_bytes()).map(<[u8]>::to_vec);
            assert_eq!(got, want, "depth {k}");
            ok += usize::from(want.is_ok());
        }
        // Two objects, then arrays: 254 arrays fit in 256 levels.
        assert_eq!(ok, 5);
        assert!(fast.fast_hits() >= 5);
        for hostile in ["[".repeat(1_000_000), "{\"a\":".repeat(1_000_000)] {
            let text = format!("{{\"x\":{hostile}");
            assert!(fast.canonicalize(text.as_bytes()).is_err());
        }
    }

    #[test]
    fn a_writer_shaped_line_takes_the_fast_path_and_others_do_not() {
        let mut c = Canonicalizer::new();
        let line = |seq: u64| {
            format!(
                r#"{{"b":{{"y":"v{seq}","x":{seq}}},"a":[1,2.0],"e":{{}},"flowscribe.audit":{{"chain":"ab","seq":{seq}}}}}"#
            )
        };
        c.canonicalize(line(1).as_bytes()).unwrap();
        assert_eq!(c.fast_hits(), 0, "the first line is learned");
        let out = c.canonicalize(line(2).as_bytes()).unwrap().to_vec();
        assert_eq!(c.fast_hits(), 1);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":[1,2],"b.x":2,"b.y":"v2","e":{}}"#
        );
        assert_eq!(c.audit_field("seq"), Some(&b"2"[..]));
        assert_eq!(c.leaf("b.y"), Some(&b"\"v2\""[..]));
        assert_eq!(c.leaf("e"), Some(&b"{}"[..]));
        // A value that became an object leaves the shape.
        c.canonicalize(
            br#"{"b":{"y":{"z":1},"x":3},"a":[],"e":{},"flowscribe.audit":{"chain":"ab","seq":3}}"#,
        )
        .unwrap();
        assert_eq!(c.fast_hits(), 1);
        assert_eq!(c.leaf("b.y.z"), Some(&b"1"[..]));
        // Duplicate paths are never learned.
        for _ in 0..3 {
            c.canonicalize(br#"{"a":{"b":1},"a.b":2}"#).unwrap();
        }
        assert_eq!(c.fast_hits(), 1);
    }
}
