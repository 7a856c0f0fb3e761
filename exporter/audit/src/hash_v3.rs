//! The v3 content digest: the canonical form split in two, so that what a
//! connection repeats from window to window is hashed once.
//!
//! A node reports each open connection once per window, and from one of its
//! records to the next only a few leaves change: times, counters, the event
//! id, the flow's state. Those are the *volatile* leaves ([`is_volatile`]: a
//! fixed list of paths, part of the suite's definition). Everything else
//! (both ends' identities, labels, the policy trace, the observer, ~90 % of
//! a ~4 KB form) is *stable*. v3 hashes the two parts apart:
//!
//! ```text
//! stable digest  = v2 content digest of S   (BLAKE3 of S padded with spaces to a multiple of 64 bytes)
//! content digest = BLAKE3(0x05 · stable digest · V · spaces to a multiple of 64 bytes)
//! ```
//!
//! where S and V are the canonical form's stable and volatile leaves, each
//! written as the canonical form writes leaves (one JSON object, in the
//! form's order, `{}` when there are none). The form is recovered from S and V
//! (merge by path), so the digest binds it as v2's does. What v3 buys is that
//! a sealer or verifier that has already hashed a connection's S (the same
//! bytes as its last record's) reuses its stable digest and hashes only the
//! ~0.5 KB of V. This module is the definition and the reference; the fast
//! paths must give the same bytes (docs/compliance.md, "Hashes, v3").
//!
//! Pure: no IO.

use crate::hash::{Hash, Suite};
use crate::hash_v2::content_digest_v2;
#[cfg(test)]
use crate::hash_v2::padded_len;

/// The prefix byte of the v3 content digest's input (after v1's 0x00-0x03
/// and v2's batch root 0x04).
pub const CONTENT_V3: u8 = 0x05;

/// Is the leaf at `path` (its bytes in the canonical form, without the
/// quotes) volatile? The listed paths have no byte the canonical form
/// escapes, so comparing the escaped bytes is comparing the paths. Exactly
/// (ECS, then OCSF; the last four: a connection's own identity among those
/// between the same two pods, which the encoder writes from a template the
/// pods' connections share, so that template's stable part is one), or
/// under a prefix: the flow's own counters and times (ECS
/// `flowscribe.flow.*`, OCSF `traffic.*` and `unmapped.flowscribe.flow.*`).
pub fn is_volatile(path: &[u8]) -> bool {
    matches!(
        path,
        b"@timestamp"
            | b"event.created"
            | b"event.duration"
            | b"event.end"
            | b"event.id"
            | b"event.start"
            | b"source.bytes"
            | b"source.packets"
            | b"destination.bytes"
            | b"destination.packets"
            | b"network.bytes"
            | b"network.packets"
            | b"time"
            | b"start_time"
            | b"end_time"
            | b"duration"
            | b"metadata.uid"
            | b"metadata.processed_time"
            | b"connection_info.uid"
            | b"connection_info.tcp_flags"
            | b"source.port"
            | b"network.community_id"
            | b"src_endpoint.port"
            | b"connection_info.community_uid"
    ) || path.starts_with(b"flowscribe.flow.")
        || path.starts_with(b"traffic.")
        || path.starts_with(b"unmapped.flowscribe.flow.")
}

/// The end of the JSON string that starts at `form[at]` (a `"`): the index
/// after its closing quote.
fn string_end(form: &[u8], at: usize) -> Option<usize> {
    let mut i = at + 1;
    loop {
        i += memchr::memchr2(b'"', b'\\', form.get(i..)?)?;
        if form[i] == b'"' {
            return Some(i + 1);
        }
        i += 2;
    }
}

/// The end of the canonical value that starts at `form[at]`: a string, an
/// array or object (nesting counted, strings skipped), or a scalar that
/// runs to the next `,` or `}`.
fn value_end(form: &[u8], at: usize) -> Option<usize> {
    match *form.get(at)? {
        b'"' => string_end(form, at),
        b'[' | b'{' => {
            let mut depth = 0usize;
            let mut i = at;
            loop {
                match *form.get(i)? {
                    b'"' => {
                        i = string_end(form, i)?;
                        continue;
                    }
                    b'[' | b'{' => depth += 1,
                    b']' | b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let rest = &form[at..];
            let len = rest.iter().position(|&b| b == b',' || b == b'}')?;
            (len > 0).then_some(at + len)
        }
    }
}

/// Split a canonical form into its stable and volatile leaves, each written
/// as a canonical object (`{}` when empty) into `stable` and `volatile`
/// (cleared first). `None` when `form` is not an object of leaves as the
/// canonical form writes it (never for a form the canonicalizer wrote).
pub fn split(form: &[u8], stable: &mut Vec<u8>, volatile: &mut Vec<u8>) -> Option<()> {
    stable.clear();
    volatile.clear();
    stable.push(b'{');
    volatile.push(b'{');
    if form.first() != Some(&b'{') {
        return None;
    }
    let mut i = 1;
    if form.get(i) == Some(&b'}') {
        i += 1;
    } else {
        loop {
            if form.get(i) != Some(&b'"') {
                return None;
            }
            let path_end = string_end(form, i)?;
            let path = &form[i + 1..path_end - 1];
            if form.get(path_end) != Some(&b':') {
                return None;
            }
            let end = value_end(form, path_end + 1)?;
            let out = if is_volatile(path) {
                &mut *volatile
            } else {
                &mut *stable
            };
            if out.len() > 1 {
                out.push(b',');
            }
            out.extend_from_slice(&form[i..end]);
            match form.get(end) {
                Some(b',') => i = end + 1,
                Some(b'}') => {
                    i = end + 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    if i != form.len() {
        return None;
    }
    stable.push(b'}');
    volatile.push(b'}');
    Some(())
}

/// [`split`] of a form whose leaves' values are at `values`: the range of
/// *every* leaf's value, in order (what
/// `Canonicalizer::leaf_value_ranges` gives), so that the bytes between
/// two values are one `,"path":` (`{"path":` before the first): each piece
/// is checked to be one key (its ends, no unescaped quote inside, its
/// closing quote not escaped); debug builds also compare every split with
/// [`split`]. A path is classified by its
/// escaped bytes, which is exact: no listed path or prefix has a byte the
/// form escapes. `None` when a piece does not have those ends, or the form
/// does not end right after the last value: the caller then scans.
pub(crate) fn split_by_leaves(
    form: &[u8],
    values: &[(u32, u32)],
    stable: &mut Vec<u8>,
    volatile: &mut Vec<u8>,
) -> Option<()> {
    stable.clear();
    volatile.clear();
    stable.push(b'{');
    volatile.push(b'{');
    if values.is_empty() {
        return (form == b"{}").then(|| {
            stable.push(b'}');
            volatile.push(b'}');
        });
    }
    // Leaves of one class in a row are copied as one run:
    // `form[run_start..prev_end]`, without its leading separator.
    let (mut prev_end, mut run_start) = (0usize, 1usize);
    let mut run_volatile: Option<bool> = None;
    let flush = |run: &[u8], to: &mut Vec<u8>| {
        if !run.is_empty() {
            if to.len() > 1 {
                to.push(b',');
            }
            to.extend_from_slice(run);
        }
    };
    for (i, &(start, end)) in values.iter().enumerate() {
        let (start, end) = (start as usize, end as usize);
        let piece = form.get(prev_end..start)?;
        let opener = if i == 0 { b'{' } else { b',' };
        let [first, b'"', path @ .., b'"', b':'] = piece else {
            return None;
        };
        // One key: no unescaped quote inside, and its closing quote not
        // escaped (ranges that skip a leaf or end inside a value fail here).
        let trailing_backslashes = path.iter().rev().take_while(|&&b| b == b'\\').count();
        if *first != opener
            || end < start
            || trailing_backslashes % 2 == 1
            || memchr::memchr(b'"', path).is_some_and(|_| has_unescaped_quote(path))
        {
            return None;
        }
        let volatile_leaf = is_volatile(path);
        match run_volatile {
            Some(run) if run == volatile_leaf => {}
            Some(run) => {
                let bytes = &form[run_start..prev_end];
                flush(bytes, if run { &mut *volatile } else { &mut *stable });
                (run_start, run_volatile) = (prev_end + 1, Some(volatile_leaf));
            }
            None => run_volatile = Some(volatile_leaf),
        }
        prev_end = end;
    }
    if form.get(prev_end..)? != b"}" {
        return None;
    }
    let bytes = &form[run_start..prev_end];
    flush(
        bytes,
        if run_volatile == Some(true) {
            &mut *volatile
        } else {
            &mut *stable
        },
    );
    stable.push(b'}');
    volatile.push(b'}');
    Some(())
}

/// Does `path` (key bytes between its quotes) hold a `"` that no
/// backslash escapes?
fn has_unescaped_quote(path: &[u8]) -> bool {
    let mut i = 0;
    while i < path.len() {
        match path[i] {
            b'\\' => i += 2,
            b'"' => return true,
            _ => i += 1,
        }
    }
    false
}

/// Append the v3 digest's *hash input* (before the padding): `0x05`, the
/// stable digest, the volatile leaves. The content digest is then the v2
/// digest of these bytes (BLAKE3 with the same space padding), so many
/// records' inputs hash side by side in [`crate::hash_v2::DigestBatch`].
pub fn write_hash_input(stable_digest: &Hash, volatile: &[u8], out: &mut Vec<u8>) {
    out.push(CONTENT_V3);
    out.extend_from_slice(stable_digest);
    out.extend_from_slice(volatile);
}

/// Splits canonical forms into their hash inputs, remembering the stable
/// digests of recent stable parts: a node reports each open connection
/// once per window, and its stable part is the same bytes every time, so
/// from its second record on only the volatile part is hashed. A stable
/// part is found by a 64-bit hash of its bytes and then compared in full
/// (a collision costs a recomputation, never a wrong digest).
#[derive(Debug, Default)]
pub struct Splitter {
    stable: Vec<u8>,
    volatile: Vec<u8>,
    memo: Memo,
    hits: u64,
}

/// Stable digests by a hash of their stable part, in two generations: when
/// the current one is full it becomes the previous one (the old previous
/// is dropped), and a part found in the previous one moves to the current
/// one. So a connection keeps its entry while fewer than a generation's
/// worth of other parts come between two of its records.
#[derive(Debug, Default)]
struct Memo {
    current: Generation,
    previous: Generation,
}

#[derive(Debug, Default)]
struct Generation {
    map: rustc_hash::FxHashMap<u64, (Box<[u8]>, Hash)>,
    bytes: usize,
}

/// The memo's key of a stable part: a multiply-xor hash of its 8-byte
/// words in four independent lanes (a stable part is ~3.7 KB; one lane's
/// chain of multiplies would take ~4× as long). Only a key: a collision
/// costs a recomputation, never a wrong digest.
fn memo_key(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let word = |b: &[u8]| {
        let mut w = [0u8; 8];
        w[..b.len()].copy_from_slice(b);
        u64::from_le_bytes(w)
    };
    let mut lanes = [bytes.len() as u64, 1, 2, 3];
    let mut blocks = bytes.chunks_exact(32);
    for block in &mut blocks {
        for (lane, w) in lanes.iter_mut().zip(block.chunks_exact(8)) {
            *lane = (*lane ^ word(w)).wrapping_mul(K).rotate_left(31);
        }
    }
    for (lane, w) in lanes.iter_mut().zip(blocks.remainder().chunks(8)) {
        *lane = (*lane ^ word(w)).wrapping_mul(K).rotate_left(31);
    }
    lanes
        .iter()
        .fold(0u64, |h, &l| (h ^ l).wrapping_mul(K).rotate_left(29))
}

/// Bounds on one generation of [`Memo`].
const MEMO_ENTRIES: usize = 8_192;
const MEMO_BYTES: usize = 16 << 20;

impl Memo {
    fn get(&mut self, key: u64, stable: &[u8]) -> Option<Hash> {
        if let Some((bytes, digest)) = self.current.map.get(&key)
            && **bytes == *stable
        {
            return Some(*digest);
        }
        let (bytes, digest) = self.previous.map.remove(&key)?;
        self.previous.bytes -= bytes.len();
        if *bytes != *stable {
            return None;
        }
        self.insert(key, bytes, digest);
        Some(digest)
    }

    fn insert(&mut self, key: u64, bytes: Box<[u8]>, digest: Hash) {
        if self.current.map.len() >= MEMO_ENTRIES || self.current.bytes + bytes.len() > MEMO_BYTES {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.bytes += bytes.len();
        if let Some((old, _)) = self.current.map.insert(key, (bytes, digest)) {
            self.current.bytes -= old.len();
        }
    }
}

impl Splitter {
    /// Append the hash input of a canonical form (see [`write_hash_input`];
    /// a form that does not split, never one the canonicalizer wrote, is
    /// all stable).
    pub fn hash_input(&mut self, form: &[u8], out: &mut Vec<u8>) {
        self.hash_input_with(form, None, out);
    }

    /// [`hash_input`](Self::hash_input), with the ranges of the form's
    /// leaf values when known (see [`split_by_leaves`]): then the values
    /// are not scanned. Returns the stable part's digest.
    pub fn hash_input_with(
        &mut self,
        form: &[u8],
        values: Option<&[(u32, u32)]>,
        out: &mut Vec<u8>,
    ) -> Hash {
        let by_leaves = values
            .and_then(|values| split_by_leaves(form, values, &mut self.stable, &mut self.volatile));
        // Debug builds (every test) check the ranges against a scan.
        #[cfg(debug_assertions)]
        if by_leaves.is_some() {
            let (mut stable, mut volatile) = (Vec::new(), Vec::new());
            assert!(
                split(form, &mut stable, &mut volatile).is_some()
                    && stable == self.stable
                    && volatile == self.volatile,
                "a split by leaf ranges differs from the scan"
            );
        }
        if by_leaves.is_none() && split(form, &mut self.stable, &mut self.volatile).is_none() {
            self.stable.clear();
            self.stable.extend_from_slice(form);
            self.volatile.clear();
            self.volatile.extend_from_slice(b"{}");
        }
        let digest = self.stable_digest();
        write_hash_input(&digest, &self.volatile, out);
        digest
    }

    /// Append what a batched suite hashes of a canonical form: v3 its hash
    /// input, v2 the form itself (each then BLAKE3 with space padding, as
    /// [`crate::hash_v2::DigestBatch`] computes it). `values`: as for
    /// [`hash_input_with`](Self::hash_input_with). Returns, for v3, the
    /// stable part's digest.
    pub fn write_hashed(
        &mut self,
        suite: Suite,
        form: &[u8],
        values: Option<&[(u32, u32)]>,
        out: &mut Vec<u8>,
    ) -> Option<Hash> {
        match suite {
            Suite::V3 => Some(self.hash_input_with(form, values, out)),
            _ => {
                out.extend_from_slice(form);
                None
            }
        }
    }

    /// [`write_hashed`](Self::write_hashed) of the record `canon` has just
    /// read: v3 from its parts when it wrote only them
    /// (`Canonicalizer::set_v3_parts`), else from its form, keeping the
    /// stable part's digest with the line
    /// (`Canonicalizer::keep_stable_digest`) for the next line compared
    /// with it. A record of another suite must have been read with its form.
    pub fn write_hashed_read(
        &mut self,
        suite: Suite,
        canon: &mut crate::canonical::Canonicalizer,
        out: &mut Vec<u8>,
    ) {
        if let Some((stable, volatile)) = canon.v3_parts() {
            debug_assert_eq!(
                suite,
                Suite::V3,
                "a record of another suite read as v3 parts"
            );
            write_hash_input(stable, volatile, out);
            return;
        }
        let stable = self.write_hashed(suite, canon.form(), canon.leaf_value_ranges(), out);
        if let Some(stable) = stable {
            canon.keep_stable_digest(stable);
        }
    }

    /// Stable parts whose digest came from the memo.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    fn stable_digest(&mut self) -> Hash {
        let key = memo_key(&self.stable);
        if let Some(digest) = self.memo.get(key, &self.stable) {
            self.hits += 1;
            return digest;
        }
        let digest = content_digest_v2(&self.stable);
        // A part too big for the bound would turn a generation over by
        // itself: not kept.
        if self.stable.len() <= MEMO_BYTES / 16 {
            self.memo.insert(key, self.stable.as_slice().into(), digest);
        }
        digest
    }
}

/// The v3 content digest of one canonical form (the reference).
pub fn content_digest_v3(form: &[u8]) -> Hash {
    let mut input = Vec::new();
    Splitter::default().hash_input(form, &mut input);
    content_digest_v2(&input)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The v3 content digest from the stable digest and the volatile leaves.
    fn content_digest_from_parts(stable_digest: &Hash, volatile: &[u8]) -> Hash {
        let mut input = Vec::with_capacity(1 + stable_digest.len() + volatile.len());
        write_hash_input(stable_digest, volatile, &mut input);
        content_digest_v2(&input)
    }

    fn parts(form: &str) -> (String, String) {
        let (mut s, mut v) = (Vec::new(), Vec::new());
        split(form.as_bytes(), &mut s, &mut v).expect("splits");
        (String::from_utf8(s).unwrap(), String::from_utf8(v).unwrap())
    }

    #[test]
    fn leaves_go_to_their_part_in_order() {
        let form = r#"{"@timestamp":"t","destination.bytes":30,"destination.ip":"10.0.0.2","event.category":["network"],"flowscribe.flow.tcp_flags.forward":["SYN","ACK"],"flowscribe.policy.ingress.hits":[{"kind":"NetworkPolicy","name":"a,b}]\"x"}],"message":"a \"quoted\" } , text","network.bytes":40,"x":{},"y":null}"#;
        let (s, v) = parts(form);
        assert_eq!(
            s,
            r#"{"destination.ip":"10.0.0.2","event.category":["network"],"flowscribe.policy.ingress.hits":[{"kind":"NetworkPolicy","name":"a,b}]\"x"}],"message":"a \"quoted\" } , text","x":{},"y":null}"#
        );
        assert_eq!(
            v,
            r#"{"@timestamp":"t","destination.bytes":30,"flowscribe.flow.tcp_flags.forward":["SYN","ACK"],"network.bytes":40}"#
        );
    }

    /// The value ranges of a form's leaves, found by a scan (what the
    /// canonicalizer's learned shapes give), for the tests.
    fn value_ranges(form: &[u8]) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        let mut i = 1;
        while form.get(i) == Some(&b'"') {
            let start = string_end(form, i).unwrap() + 1;
            let end = value_end(form, start).expect("a test form");
            out.push((start as u32, end as u32));
            i = end + 1;
        }
        out
    }

    /// Splitting by the leaves' value ranges gives what scanning gives,
    /// whichever class the first and last leaves are; anything else about
    /// the pieces between values makes it decline.
    #[test]
    fn split_by_leaves_equals_split() {
        for form in [
            r#"{"@timestamp":"t","a":1,"b":[1,{"c":"}\""}],"event.id":"e","z":null}"#,
            r#"{"a":1,"b":2}"#,
            r#"{"time":1,"traffic.bytes":2}"#,
            r#"{"a":1,"time":2}"#,
            r#"{"time":1,"a":2}"#,
            r#"{"a":"x,\"y\":1","event.end":"q"}"#,
            "{}",
        ] {
            let values = value_ranges(form.as_bytes());
            let (mut s1, mut v1, mut s2, mut v2) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            split(form.as_bytes(), &mut s1, &mut v1).unwrap();
            split_by_leaves(form.as_bytes(), &values, &mut s2, &mut v2).unwrap();
            assert_eq!((&s1, &v1), (&s2, &v2), "{form}");
        }
        // Empty-object leaves and escaped keys, every leaf listed.
        for form in [
            r#"{"a":1,"e":{},"time":2}"#,
            r#"{"a\"b":1,"flowscribe.flow.x\"y":2,"z\\":{}}"#,
        ] {
            let values = value_ranges(form.as_bytes());
            let (mut s1, mut v1, mut s2, mut v2) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            split(form.as_bytes(), &mut s1, &mut v1).unwrap();
            split_by_leaves(form.as_bytes(), &values, &mut s2, &mut v2).unwrap();
            assert_eq!((&s1, &v1), (&s2, &v2), "{form}");
        }
        // Pieces without the ends of one key, ranges past the form,
        // trailing bytes, a form with leaves given none.
        let (mut s, mut v) = (Vec::new(), Vec::new());
        assert!(split_by_leaves(br#"{"a":1,"b":2}"#, &[(5, 6), (7, 12)], &mut s, &mut v).is_none());
        // A skipped leaf: the piece holds two keys.
        let form = br#"{"a":1,"time":2,"b":3}"#;
        assert!(split_by_leaves(form, &[(5, 6), (20, 21)], &mut s, &mut v).is_none());
        // A range ending inside a string value: the next piece's quote is
        // escaped, or it holds an unescaped one.
        let form = br#"{"a":"x\","time":2}"#;
        assert!(split_by_leaves(form, &[(5, 8), (18, 19)], &mut s, &mut v).is_none());
        assert!(split_by_leaves(br#"{"a":1}"#, &[(5, 9)], &mut s, &mut v).is_none());
        assert!(split_by_leaves(br#"{"a":1}}"#, &[(5, 6)], &mut s, &mut v).is_none());
        assert!(split_by_leaves(br#"{"a":1}"#, &[], &mut s, &mut v).is_none());
    }

    #[test]
    fn empty_parts_are_empty_objects() {
        assert_eq!(parts("{}"), ("{}".into(), "{}".into()));
        assert_eq!(parts(r#"{"a":1}"#), (r#"{"a":1}"#.into(), "{}".into()));
        assert_eq!(
            parts(r#"{"time":1}"#),
            ("{}".into(), r#"{"time":1}"#.into())
        );
    }

    #[test]
    fn what_is_not_a_form_does_not_split() {
        for bad in [
            "",
            "[]",
            "{",
            r#"{"a":1"#,
            r#"{"a":1,}"#,
            r#"{"a":1}x"#,
            r#"{"a"1}"#,
            r#"{"a":}"#,
            r#"{"a":"x}"#,
            r#"{"a":[1}"#,
            r#"{a:1}"#,
        ] {
            let (mut s, mut v) = (Vec::new(), Vec::new());
            assert!(split(bad.as_bytes(), &mut s, &mut v).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_digest_is_the_definition() {
        let form = br#"{"@timestamp":"t","a":"x","event.id":"e","z":[1,2]}"#;
        let stable = br#"{"a":"x","z":[1,2]}"#;
        let volatile = br#"{"@timestamp":"t","event.id":"e"}"#;
        let mut s = stable.to_vec();
        s.resize(64, b' ');
        let stable_digest = *blake3::hash(&s).as_bytes();
        let mut input = vec![CONTENT_V3];
        input.extend_from_slice(&stable_digest);
        input.extend_from_slice(volatile);
        input.resize(padded_len(input.len()), b' ');
        assert_eq!(content_digest_v3(form), *blake3::hash(&input).as_bytes());
        assert_eq!(
            content_digest_v3(form),
            content_digest_from_parts(&content_digest_v2(stable), volatile)
        );
    }

    /// A vector from an independent implementation: the Python snippet in
    /// docs/compliance.md ("Hashes, v3") with the `blake3` package from PyPI.
    #[test]
    fn the_documented_python_gives_the_same_digest() {
        let form = r#"{"@timestamp":"2026-11-22T04:30:10.000000000Z","destination.bytes":3000,"destination.ip":"10.0.2.7","event.category":["network"],"flowscribe.flow.state":"completed","message":"shop/web → db/pg-0 \"x\"","network.packets":9,"x":{}}"#;
        let hex: String = content_digest_v3(form.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "4159f4ffa8ddf2c3e548bec9581c365d3e581fff1704382eda48e1a5223145d7"
        );
    }

    /// More vectors from the documented Python
    /// (`tests/fixtures/v3_vectors.py`: the snippet plus the form of the
    /// same leaves), at the definition's
    /// edges: no padding in either input (S 64 bytes, 1 + 32 + |V| = 128),
    /// empty parts, an escaped key, arrays of objects in both parts. Each
    /// form is checked to be its own canonical form.
    #[test]
    fn the_documented_python_gives_the_same_digests_at_the_edges() {
        let y = |n: usize| "y".repeat(n);
        let no_padding = format!(r#"{{"a":"{}","time":"{}"}}"#, y(56), y(84));
        for (form, want) in [
            (
                no_padding.as_str(),
                "2af54a408a50f34b3a8b2acda2e94cc4e0d2c980c28305d9b92e495a67b0596c",
            ),
            (
                r#"{"@timestamp":"t","event.id":"e"}"#,
                "bdadc5ee5acd18bfbbaa89d4dda5d9a905d9107981e26893507140adaabc84ed",
            ),
            (
                r#"{"a":1,"b":"x"}"#,
                "253c21dae501cc378b48c6e3266548b4a700f93295c9ff7903e45be6ee39c02c",
            ),
            (
                r#"{"a\"b\\c":1,"event.id":"e","z":{}}"#,
                "b7fbf1d00fe7d68fb492031faca222eb4139430e52a04e5d587ab9b039e2ad99",
            ),
            (
                r#"{"flowscribe.flow.hits":[{"kind":"NetworkPolicy","rule":0},{"kind":"x"}],"k":[{"a":1}]}"#,
                "d3cbd3126b27aeeb76997d564a6bd1a990790940d889c378179b5bb62b444c95",
            ),
        ] {
            let mut canon = crate::canonical::Canonicalizer::general_only();
            assert_eq!(
                canon.canonicalize(form.as_bytes()).unwrap(),
                form.as_bytes()
            );
            let hex: String = content_digest_v3(form.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(hex, want, "{form}");
        }
        let (s, v) = parts(&no_padding);
        assert_eq!((s.len(), 1 + 32 + v.len()), (64, 128));
    }

    /// Two stable parts under one memo key (forced: a key's entry holding
    /// another part's bytes and digest): the full comparison refuses it,
    /// and the digest is computed.
    #[test]
    fn a_memo_key_collision_is_a_recomputation() {
        let mut splitter = Splitter::default();
        let (a, b) = (br#"{"a":"one"}"#, br#"{"a":"two"}"#);
        let key = memo_key(a);
        assert_ne!(key, memo_key(b));
        splitter
            .memo
            .insert(key, b.as_slice().into(), content_digest_v2(b));
        let form = br#"{"a":"one","time":1}"#;
        let mut input = Vec::new();
        splitter.hash_input(form, &mut input);
        assert_eq!(content_digest_v2(&input), content_digest_v3(form));
        assert_eq!(splitter.hits(), 0);
        // The same in the previous generation.
        let mut splitter = Splitter::default();
        splitter
            .memo
            .insert(key, b.as_slice().into(), content_digest_v2(b));
        splitter.memo.previous = std::mem::take(&mut splitter.memo.current);
        input.clear();
        splitter.hash_input(form, &mut input);
        assert_eq!(content_digest_v2(&input), content_digest_v3(form));
        assert_eq!(splitter.hits(), 0);
        // And the right part is then found.
        input.clear();
        splitter.hash_input(form, &mut input);
        assert_eq!(splitter.hits(), 1);
    }

    #[test]
    fn every_change_changes_the_digest() {
        let form =
            r#"{"@timestamp":"t","a":"x","event.id":"e","flowscribe.flow.state":"open","z":[1,2]}"#;
        let base = content_digest_v3(form.as_bytes());
        for other in [
            r#"{"@timestamp":"u","a":"x","event.id":"e","flowscribe.flow.state":"open","z":[1,2]}"#,
            r#"{"@timestamp":"t","a":"y","event.id":"e","flowscribe.flow.state":"open","z":[1,2]}"#,
            r#"{"@timestamp":"t","a":"x","event.id":"e","flowscribe.flow.state":"ended","z":[1,2]}"#,
            r#"{"@timestamp":"t","a":"x","event.id":"e","flowscribe.flow.state":"open","z":[2,1]}"#,
            r#"{"@timestamp":"t","a":"x","event.id":"e","flowscribe.flow.state":"open"}"#,
            r#"{"@timestamp":"t","a":"x","flowscribe.flow.state":"open","z":[1,2]}"#,
            r#"{"@timestamp":"t","a":"x","event.id":"e","flowscribe.flow.state":"open","z":[1,2],"zz":1}"#,
            // A leaf renamed across the split: same bytes, other parts.
            r#"{"@timestamp":"t","a":"x","event.idx":"e","flowscribe.flow.state":"open","z":[1,2]}"#,
        ] {
            assert_ne!(content_digest_v3(other.as_bytes()), base, "{other}");
        }
        // Not a v2 digest of the same form.
        assert_ne!(base, content_digest_v2(form.as_bytes()));
    }

    /// Lines in a learned shape are split by their leaves' value ranges,
    /// with the same result as a scan (an escaped key: never in a learned
    /// shape, so scanned).
    #[test]
    fn learned_shapes_split_by_their_value_ranges() {
        let mut canon = crate::canonical::Canonicalizer::new();
        let mut splitter = Splitter::default();
        let mut by_ranges = 0;
        for i in 0..20 {
            for line in [
                format!(
                    r#"{{"@timestamp":"t{i}","a":{{"b":"x","c":[1,{{"d":"}}\""}}]}},"event":{{"id":"e{i}","kind":"k"}},"z":{i}}}"#
                ),
                format!(
                    r#"{{"time":{i},"src_endpoint":{{"port":{i}}},"e":{{}},"traffic":{{"bytes":{i}}},"y":"q"}}"#
                ),
                format!(r#"{{"a\"b":{i},"event.end":"x"}}"#),
            ] {
                let form = canon.canonicalize(line.as_bytes()).unwrap().to_vec();
                let ranges = canon.leaf_value_ranges();
                let (mut s1, mut v1) = (Vec::new(), Vec::new());
                if let Some(r) = ranges
                    && split_by_leaves(&form, r, &mut s1, &mut v1).is_some()
                {
                    by_ranges += 1;
                }
                let (mut with, mut without) = (Vec::new(), Vec::new());
                splitter.hash_input_with(&form, ranges, &mut with);
                splitter.hash_input(&form, &mut without);
                assert_eq!(with, without, "{line}");
                assert_eq!(content_digest_v2(&with), content_digest_v3(&form));
            }
        }
        // The first two lines' later records (a shape is learned from a
        // line the general path did; the third has an escaped key).
        assert_eq!(by_ranges, 2 * 19);
    }

    /// The memo gives exactly the digests of the definition, across its
    /// clearing; a connection's later records hit it.
    #[test]
    fn the_memo_gives_the_reference_digest() {
        let mut splitter = Splitter::default();
        let mut input = Vec::new();
        let connections = MEMO_ENTRIES + MEMO_ENTRIES / 2;
        for window in 0..2 {
            for c in 0..connections {
                let stable = format!(r#"{{"a":"connection {c}"}}"#);
                let volatile = format!(r#"{{"event.id":"{window}-{c}"}}"#);
                let form = format!(r#"{{"a":"connection {c}","event.id":"{window}-{c}"}}"#);
                input.clear();
                splitter.hash_input(form.as_bytes(), &mut input);
                assert_eq!(
                    content_digest_v2(&input),
                    content_digest_from_parts(
                        &content_digest_v2(stable.as_bytes()),
                        volatile.as_bytes()
                    ),
                    "{form}"
                );
            }
        }
        // 1.5 generations (N) of connections, twice. After the first
        // window the previous generation holds connections 0..N, the
        // current one N..1.5N. In the second, 0..N/2 hit in the previous
        // and move to the current one, filling it; N/2 hits too and turns
        // it over (the previous is now N..1.5N and 0..N/2; N/2+1..N are
        // dropped and miss); N..1.5N hit. N + 1 hits.
        assert_eq!(splitter.hits(), MEMO_ENTRIES as u64 + 1);
        assert!(splitter.memo.current.map.len() <= MEMO_ENTRIES);
        assert!(splitter.memo.previous.map.len() <= MEMO_ENTRIES);
        // Same stable part: a hit; another: not.
        let before = splitter.hits();
        for form in [
            r#"{"b":1,"time":1}"#,
            r#"{"b":1,"time":2}"#,
            r#"{"b":2,"time":2}"#,
        ] {
            input.clear();
            splitter.hash_input(form.as_bytes(), &mut input);
            assert_eq!(
                content_digest_v2(&input),
                content_digest_v3(form.as_bytes())
            );
        }
        assert_eq!(splitter.hits() - before, 1);
    }

    #[test]
    fn a_form_that_does_not_split_is_all_stable() {
        let bad = br#"{"a":1,}"#;
        assert_eq!(
            content_digest_v3(bad),
            content_digest_from_parts(&content_digest_v2(bad), b"{}")
        );
    }
}
