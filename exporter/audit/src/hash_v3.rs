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
//! stable digest  = v2 content digest of S   (BLAKE3 of S padded with spaces to 64 bytes)
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

use crate::hash::Hash;
use crate::hash_v2::{content_digest_v2, padded_len};

/// The prefix byte of the v3 content digest's input (after v1's 0x00-0x03
/// and v2's batch root 0x04).
pub const CONTENT_V3: u8 = 0x05;

/// Paths that are volatile exactly (ECS, then OCSF).
const VOLATILE_PATHS: &[&[u8]] = &[
    b"@timestamp",
    b"event.created",
    b"event.duration",
    b"event.end",
    b"event.id",
    b"event.start",
    b"source.bytes",
    b"source.packets",
    b"destination.bytes",
    b"destination.packets",
    b"network.bytes",
    b"network.packets",
    b"time",
    b"start_time",
    b"end_time",
    b"duration",
    b"metadata.uid",
    b"metadata.processed_time",
    b"connection_info.uid",
    b"connection_info.tcp_flags",
];

/// Path prefixes under which every leaf is volatile: the flow's own
/// counters and times (ECS `flowscribe.flow.*`, OCSF `traffic.*` and
/// `unmapped.flowscribe.flow.*`).
const VOLATILE_PREFIXES: &[&[u8]] = &[
    b"flowscribe.flow.",
    b"traffic.",
    b"unmapped.flowscribe.flow.",
];

/// Is the leaf at `path` (its bytes in the canonical form, without the
/// quotes) volatile? The listed paths have no byte the canonical form
/// escapes, so comparing the escaped bytes is comparing the paths.
pub fn is_volatile(path: &[u8]) -> bool {
    VOLATILE_PATHS.contains(&path) || VOLATILE_PREFIXES.iter().any(|p| path.starts_with(p))
}

/// The end of the JSON string that starts at `form[at]` (a `"`): the index
/// after its closing quote.
fn string_end(form: &[u8], at: usize) -> Option<usize> {
    let mut i = at + 1;
    loop {
        match *form.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
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

/// The v3 content digest from the stable digest and the volatile leaves.
pub fn content_digest_from_parts(stable_digest: &Hash, volatile: &[u8]) -> Hash {
    const SPACES: [u8; 64] = [b' '; 64];
    let len = 1 + stable_digest.len() + volatile.len();
    let mut h = blake3::Hasher::new();
    h.update(&[CONTENT_V3]);
    h.update(stable_digest);
    h.update(volatile);
    h.update(&SPACES[..padded_len(len) - len]);
    *h.finalize().as_bytes()
}

/// The v3 content digest of one canonical form (the reference). A form that
/// does not split (never one the canonicalizer wrote) is all stable.
pub fn content_digest_v3(form: &[u8]) -> Hash {
    let (mut stable, mut volatile) = (Vec::new(), Vec::new());
    if split(form, &mut stable, &mut volatile).is_none() {
        stable.clear();
        stable.extend_from_slice(form);
        volatile.clear();
        volatile.extend_from_slice(b"{}");
    }
    content_digest_from_parts(&content_digest_v2(&stable), &volatile)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_form_that_does_not_split_is_all_stable() {
        let bad = br#"{"a":1,}"#;
        assert_eq!(
            content_digest_v3(bad),
            content_digest_from_parts(&content_digest_v2(bad), b"{}")
        );
    }
}
