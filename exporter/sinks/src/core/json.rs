//! Small JSON helpers the HTTP sinks share, on record bytes as they come
//! from normalize: string escaping for envelopes and action lines, finding
//! an ECS `@timestamp`, RFC 3339 to epoch time, and reading the values at
//! dotted field paths without building a document tree.
//!
//! Pipeline position: used by the request builders of stage ⑤. Pure: no
//! IO.

/// `s` as a JSON string literal (quotes, backslashes and control
/// characters escaped; other bytes, UTF-8 included, copied).
pub fn write_json_string(s: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &b in s {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0..=0x1f => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// The value of a top-level-looking `"@timestamp":"…"` (ECS documents
/// start with it).
pub fn ecs_timestamp(doc: &[u8]) -> Option<&str> {
    const KEY: &[u8] = b"\"@timestamp\":\"";
    let start = memchr::memmem::find(doc, KEY)? + KEY.len();
    let len = memchr::memchr(b'"', &doc[start..])?;
    std::str::from_utf8(&doc[start..start + len]).ok()
}

/// RFC 3339 (`2026-11-21T04:30:00.123456Z`, or with `±HH:MM`) to epoch
/// seconds as a decimal string with the given fraction (up to 9 digits),
/// exactly (no float rounding). Times before 1970 are `None`.
pub fn rfc3339_to_epoch(s: &str) -> Option<String> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac = "";
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        let mut end = start;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        if end == start || end - start > 9 {
            return None;
        }
        frac = &s[start..end];
        i = end;
    }
    let offset_secs = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            let o = oh * 3600 + om * 60;
            if *sign == b'+' { o } else { -o }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_secs;
    if secs < 0 {
        // Before 1970: no flow record has such a time, and `-1.5` would
        // not mean "one second before, plus half".
        return None;
    }
    Some(if frac.is_empty() {
        secs.to_string()
    } else {
        format!("{secs}.{frac}")
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// RFC 3339 to (epoch seconds, nanoseconds).
pub fn rfc3339_to_parts(s: &str) -> Option<(i64, u32)> {
    let text = rfc3339_to_epoch(s)?;
    let (secs, frac) = text.split_once('.').unwrap_or((&text, ""));
    let secs: i64 = secs.parse().ok()?;
    let mut nanos = 0u32;
    for (i, d) in frac.bytes().enumerate().take(9) {
        nanos += u32::from(d - b'0') * 10u32.pow(8 - i as u32);
    }
    Some((secs, nanos))
}

/// Reads the scalar values at a fixed set of dotted paths
/// (`flowscribe.policy.verdict`) out of JSON documents without building a
/// tree: everything else is skipped by the parser, so a 3 KB ECS record
/// costs a scan, not hundreds of allocations. Nested objects are followed;
/// a key that itself contains dots (flattened documents) matches too.
/// Strings are returned as they are, numbers and booleans as text; arrays,
/// objects, null and empty strings count as missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathExtractor {
    root: PathNode,
    paths: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct PathNode {
    children: Vec<(String, PathNode)>,
    /// Index of the path ending here.
    leaf: Option<usize>,
}

impl PathNode {
    fn child(&self, segment: &str) -> Option<&PathNode> {
        self.children
            .iter()
            .find(|(s, _)| s == segment)
            .map(|(_, n)| n)
    }

    /// The node a (possibly dotted) key leads to.
    fn descend(&self, key: &str) -> Option<&PathNode> {
        if let Some(n) = self.child(key) {
            return Some(n);
        }
        if !key.contains('.') {
            return None;
        }
        key.split('.').try_fold(self, |n, seg| n.child(seg))
    }
}

impl PathExtractor {
    pub fn new<S: AsRef<str>>(paths: &[S]) -> Self {
        let mut root = PathNode::default();
        for (i, p) in paths.iter().enumerate() {
            let mut node = &mut root;
            for seg in p.as_ref().split('.') {
                let pos = match node.children.iter().position(|(s, _)| s == seg) {
                    Some(pos) => pos,
                    None => {
                        node.children.push((seg.to_string(), PathNode::default()));
                        node.children.len() - 1
                    }
                };
                node = &mut node.children[pos].1;
            }
            node.leaf = Some(i);
        }
        PathExtractor {
            root,
            paths: paths.len(),
        }
    }

    /// One value per path, in the order given to [`new`](Self::new);
    /// `None` when the document is not JSON.
    pub fn extract(&self, doc: &[u8]) -> Option<Vec<Option<String>>> {
        use serde::de::DeserializeSeed as _;
        let mut out = vec![None; self.paths];
        let mut de = serde_json::Deserializer::from_slice(doc);
        Walk {
            node: &self.root,
            out: &mut out,
        }
        .deserialize(&mut de)
        .ok()?;
        de.end().ok()?;
        Some(out)
    }
}

/// Walks one JSON value at a trie node.
struct Walk<'a> {
    node: &'a PathNode,
    out: &'a mut [Option<String>],
}

impl<'de> serde::de::DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Walk<'_> {
    fn set(&mut self, v: String) {
        if let Some(i) = self.node.leaf
            && !v.is_empty()
            && let Some(slot) = self.out.get_mut(i)
        {
            *slot = Some(v);
        }
    }
}

/// A map key, borrowed from the input when it has no escapes.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_string()))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> serde::de::Visitor<'de> for Walk<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_str<E>(mut self, v: &str) -> Result<(), E> {
        self.set(v.to_string());
        Ok(())
    }
    fn visit_bool<E>(mut self, v: bool) -> Result<(), E> {
        self.set(v.to_string());
        Ok(())
    }
    fn visit_i64<E>(mut self, v: i64) -> Result<(), E> {
        self.set(v.to_string());
        Ok(())
    }
    fn visit_u64<E>(mut self, v: u64) -> Result<(), E> {
        self.set(v.to_string());
        Ok(())
    }
    fn visit_f64<E>(mut self, v: f64) -> Result<(), E> {
        self.set(v.to_string());
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let k = match &key {
                Key::Borrowed(s) => *s,
                Key::Owned(s) => s.as_str(),
            };
            match self.node.descend(k) {
                Some(child) => map.next_value_seed(Walk {
                    node: child,
                    out: &mut *self.out,
                })?,
                None => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("1970-01-01T00:00:00Z", Some("0")),
            ("2026-11-21T04:30:00.123Z", Some("1795235400.123")),
            (
                "2026-11-21T04:30:00.123456789Z",
                Some("1795235400.123456789"),
            ),
            ("2026-11-21T06:30:00+02:00", Some("1795235400")),
            ("2026-11-21T00:00:00-04:30", Some("1795235400")),
            ("2000-02-29T12:00:00Z", Some("951825600")),
            ("1969-12-31T23:59:59Z", None),
            ("2026-11-21T04:30:00", None),
            ("2026-13-21T04:30:00Z", None),
            ("2026-11-21T04:30:00.Z", None),
            ("2026-11-21T04:30:00.1234567890Z", None),
            ("yesterday", None),
        ];
        for (input, want) in cases {
            assert_eq!(rfc3339_to_epoch(input).as_deref(), *want, "{input}");
        }
    }

    #[test]
    fn parts_and_paths() {
        assert_eq!(
            rfc3339_to_parts("2026-11-21T04:30:00.5Z"),
            Some((1_795_235_400, 500_000_000))
        );
        assert_eq!(
            rfc3339_to_parts("1970-01-01T00:00:01.000000001Z"),
            Some((1, 1))
        );
        let x = PathExtractor::new(&["a.b.c", "x.y", "n", "a.z", "t", "arr", "e"]);
        let got = x
            .extract(br#"{"a":{"b":{"c":"deep"},"q":[1,{"c":2}]},"x.y":"flat","n":3,"t":true,"arr":[1],"e":"","a\u0020":1}"#)
            .unwrap();
        let want = [
            Some("deep"),
            Some("flat"),
            Some("3"),
            None,
            Some("true"),
            None,
            None,
        ];
        assert_eq!(got, want.map(|w| w.map(str::to_string)).to_vec());
        assert_eq!(x.extract(b"CEF:0|x"), None);
        assert_eq!(x.extract(b"[1,2]"), Some(vec![None; 7]));
        assert_eq!(x.extract(br#"{"n":1} trailing"#), None);
    }

    #[test]
    fn timestamps_are_found_in_documents() {
        assert_eq!(
            ecs_timestamp(br#"{"@timestamp":"2026-11-21T04:30:00Z","a":1}"#),
            Some("2026-11-21T04:30:00Z")
        );
        assert_eq!(ecs_timestamp(br#"{"a":1}"#), None);
    }
}
