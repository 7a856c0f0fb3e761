//! The canonical form of an exported JSON record: the bytes whose SHA-256 is
//! the record's content digest (docs/compliance.md, "What is hashed").
//!
//! A SIEM re-serialises what it stores: it reorders keys, changes spacing,
//! writes `5.0` for `5`, or flattens `{"a":{"b":1}}` into `{"a.b":1}`. The
//! canonical form is chosen so that all of these give the same bytes:
//!
//! 1. The record is flattened into leaves: every path from the root object to
//!    a value that is not an object, keys joined with `.`. An empty object is
//!    a leaf with the value `{}`. Arrays are leaves (their elements are written
//!    in canonical JSON, objects inside them with sorted keys, not flattened).
//! 2. Leaves under `flowscribe.audit` are left out: the audit fields are bound
//!    into the leaf hash on their own (see `hash.rs`).
//! 3. The leaves are written as one JSON object, sorted by path (byte order),
//!    without whitespace; strings escaped as serde_json escapes them (`"`,
//!    `\`, control characters as `\n`-style or `\u00xx`, all else literal
//!    UTF-8); numbers that are integers (or floats with an integral value below
//!    2^53) in plain decimal, other numbers in shortest round-trip form.
//!
//! A line nested deeper than 256 levels (objects and values) has no
//! canonical form: it is an error, so that a hostile line cannot exhaust
//! the stack (serde_json itself stops at 128).
//!
//! Two implementations give the same bytes: the general streaming parser
//! ([`Canonicalizer`] on a line it has not seen the shape of) and learned
//! record shapes (`canonical/shape.rs`) for the lines of one view.
//!
//! Pure: no IO, no clocks.

use serde_json::Value;

use crate::fields::AUDIT_PATH;
use crate::hash::Hash;

/// A JSON number written canonically: integral values as integers.
fn write_number(n: &serde_json::Number, out: &mut Vec<u8>) {
    if let Some(i) = n.as_i64() {
        out.extend_from_slice(i.to_string().as_bytes());
    } else if let Some(u) = n.as_u64() {
        out.extend_from_slice(u.to_string().as_bytes());
    } else if let Some(f) = n.as_f64() {
        // 2^53: every integer below it is exact in an f64.
        if f.is_finite() && f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
            // The value is integral and within i64 range, so the cast is exact.
            #[allow(clippy::cast_possible_truncation)]
            let i = f as i64;
            out.extend_from_slice(i.to_string().as_bytes());
        } else {
            out.extend_from_slice(n.to_string().as_bytes());
        }
    }
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    // Most strings need no escape: copy them (the common, fast case).
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    // serde_json writes a &str as a JSON string with the minimal escapes
    // described above; writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Canonical JSON of a value (used inside arrays, and for leaf values).
fn write_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(k, out);
                out.push(b':');
                write_value(v, out);
            }
            out.push(b'}');
        }
    }
}

/// Collect the leaves of `v` under `prefix` (an empty prefix is the root).
fn collect<'a>(prefix: &str, v: &'a Value, leaves: &mut Vec<(String, &'a Value)>) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, child) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    let mut p = String::with_capacity(prefix.len() + 1 + k.len());
                    p.push_str(prefix);
                    p.push('.');
                    p.push_str(k);
                    p
                };
                if is_audit_path(&path) {
                    continue;
                }
                collect(&path, child, leaves);
            }
        }
        _ => leaves.push((prefix.to_string(), v)),
    }
}

/// `flowscribe.audit` itself or anything below it.
fn is_audit_path(path: &str) -> bool {
    path.strip_prefix(AUDIT_PATH)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// The canonical bytes of a record (a JSON object), audit fields left out.
pub fn canonical_bytes(record: &Value) -> Vec<u8> {
    let mut leaves = Vec::with_capacity(64);
    if let Value::Object(map) = record {
        if map.is_empty() {
            return b"{}".to_vec();
        }
        collect("", record, &mut leaves);
    } else {
        // Not an object: the record is its own single leaf with the empty path.
        leaves.push((String::new(), record));
    }
    // Two leaves with one path (a record with both `"a":{"b":1}` and
    // `"a.b":2`) are ordered by value so the form stays deterministic.
    let mut rendered: Vec<(String, Vec<u8>)> = leaves
        .into_iter()
        .map(|(p, v)| {
            let mut b = Vec::new();
            write_value(v, &mut b);
            (p, b)
        })
        .collect();
    rendered.sort_unstable_by(|a, b| {
        a.0.as_bytes()
            .cmp(b.0.as_bytes())
            .then_with(|| a.1.cmp(&b.1))
    });
    let mut out = Vec::with_capacity(rendered.iter().map(|(p, v)| p.len() + v.len() + 4).sum());
    out.push(b'{');
    for (i, (p, v)) in rendered.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(p, &mut out);
        out.push(b':');
        out.extend_from_slice(v);
    }
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(v: Value) -> String {
        String::from_utf8(canonical_bytes(&v)).unwrap()
    }

    #[test]
    fn nested_and_flattened_records_have_one_form() {
        let nested = json!({"source": {"ip": "10.0.0.1", "port": 443}, "a": 1});
        let flat = json!({"source.port": 443, "a": 1, "source.ip": "10.0.0.1"});
        let expected = r#"{"a":1,"source.ip":"10.0.0.1","source.port":443}"#;
        assert_eq!(canon(nested), expected);
        assert_eq!(canon(flat), expected);
    }

    #[test]
    fn re_serialised_numbers_and_spacing_do_not_matter() {
        let a: Value =
            serde_json::from_str(r#"{"n": 5, "f": 0.5, "big": 18446744073709551615}"#).unwrap();
        let b: Value =
            serde_json::from_str(r#"{ "big":18446744073709551615,"f":5e-1, "n":5.0 }"#).unwrap();
        assert_eq!(canon(a.clone()), canon(b));
        assert_eq!(canon(a), r#"{"big":18446744073709551615,"f":0.5,"n":5}"#);
    }

    #[test]
    fn audit_fields_are_left_out_nested_or_flattened() {
        let nested = json!({"x": 1, "flowscribe": {"audit": {"seq": 7}, "kind": "flow"}});
        let flat = json!({"x": 1, "flowscribe.audit": {"seq": 8}, "flowscribe.kind": "flow"});
        let dotted = json!({"x": 1, "flowscribe.audit.seq": 9, "flowscribe": {"kind": "flow"}});
        let expected = r#"{"flowscribe.kind":"flow","x":1}"#;
        assert_eq!(canon(nested), expected);
        assert_eq!(canon(flat), expected);
        assert_eq!(canon(dotted), expected);
        // A field that only starts with the same letters is content.
        assert_eq!(
            canon(json!({"flowscribe.auditor": 1})),
            r#"{"flowscribe.auditor":1}"#
        );
    }

    #[test]
    fn arrays_keep_order_and_sort_keys_inside() {
        let v = json!({"tags": [{"b": 1, "a": "x"}, 2, null], "empty": {}, "s": "é\n\"\u{1}"});
        assert_eq!(
            canon(v),
            "{\"empty\":{},\"s\":\"é\\n\\\"\\u0001\",\"tags\":[{\"a\":\"x\",\"b\":1},2,null]}"
        );
    }

    /// The streaming form and the Value form agree (the Value form is the
    /// readable reference; production uses the streaming one).
    #[test]
    fn streaming_matches_the_value_form() {
        let inputs = [
            r#"{"source": {"ip": "10.0.0.1", "port": 443}, "a": 1}"#,
            r#"{"source.port": 443, "a": 1, "source.ip": "10.0.0.1"}"#,
            r#"{"n": 5.0, "f": 5e-1, "big": 18446744073709551615, "neg": -12, "z": -0, "huge": 1e300, "over": 123456789012345678901234}"#,
            r#"{"x": 1, "flowscribe": {"audit": {"seq": 7}, "kind": "flow"}}"#,
            r#"{"x": 1, "flowscribe.audit.seq": 9, "flowscribe": {"kind": "flow"}}"#,
            r#"{"tags": [{"b": 1, "a": "x", "c": {"z": [], "y": {}}}, 2, null, true, false], "empty": {}, "e": []}"#,
            r#"{"s": "caf\u00e9 \ud83d\ude00 \/ \" \\ \n \u0001", "k\u0065y": "v", "plain": "é😀"}"#,
            "{ \"spaced\" :\t{ \"out\" : [ 1 , 2 ] } }\n",
            r#"{"we\"ird": {"k\\ey": 1, "ok": 2}, "tab\tkey": 3}"#,
            r#"{"flowscribe":{"state":"completed","policy":{"hits":[{"kind":"NetworkPolicy","rule":0}]}},"flowscribe.audit":{"chain":"ab","seq":1}}"#,
        ];
        let mut c = Canonicalizer::new();
        for input in inputs {
            let v: Value = serde_json::from_str(input).unwrap();
            let streamed = c.canonicalize(input.as_bytes()).unwrap().to_vec();
            assert_eq!(
                String::from_utf8(streamed).unwrap(),
                String::from_utf8(canonical_bytes(&v)).unwrap(),
                "{input}"
            );
        }
        c.canonicalize(br#"{"a":1,"flowscribe.audit":{"seq":"12","chain":"ab"}}"#)
            .unwrap();
        assert_eq!(c.audit_field("seq"), Some(&b"\"12\""[..]));
        assert_eq!(c.audit_field("chain"), Some(&b"\"ab\""[..]));
        assert_eq!(c.leaf("a"), Some(&b"1"[..]));
        assert!(c.has_audit());
    }

    #[test]
    fn streaming_rejects_what_is_not_a_json_object() {
        let mut c = Canonicalizer::new();
        for bad in [
            &b"[1]"[..],
            b"{\"a\":1} x",
            b"{\"a\":}",
            b"{\"a\":tru}",
            b"{\"a\":\"unterminated}",
            b"{\"a\":1,}",
            b"{\"a\":\"\xff\"}",
            b"{\"a\":1e}",
            b"",
        ] {
            assert!(
                c.canonicalize(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// A line of one of `shapes` label sets, with an array of objects
    /// whose length varies (a policy trace's hits) and values that vary.
    fn labelled_line(shape: usize, n: usize) -> Vec<u8> {
        let labels: String = (0..1 + shape % 5)
            .map(|j| format!(r#""key-{shape}-{j}":"v{n}""#))
            .collect::<Vec<_>>()
            .join(",");
        let hits: String = (0..1 + n % 3)
            .map(|h| format!(r#"{{"action":"allow","name":"p-{h}","rule":{n}}}"#))
            .collect::<Vec<_>>()
            .join(",");
        format!(
            r#"{{"@timestamp":"2026-11-21T10:00:0{}Z","labels":{{{labels}}},"bytes":{},"policy":{{"hits":[{hits}]}},"host":{{"name":"node-a"}}}}"#,
            n % 10,
            n * 37
        )
        .into_bytes()
    }

    /// Many shapes interleaved (more than a canonicalizer kept before the
    /// key print): after each shape's first line, every line is read in its
    /// shape, and every form equals the general path's.
    #[test]
    fn interleaved_shapes_are_each_found_by_their_key_print() {
        const SHAPES: usize = 60;
        let mut fast = Canonicalizer::new();
        let mut general = Canonicalizer::general_only();
        let mut lines = 0u64;
        for n in 0..40 {
            for shape in 0..SHAPES {
                // A stride that is not the order they were learned in.
                let shape = (shape * 7 + n) % SHAPES;
                let line = labelled_line(shape, n);
                let want = general.canonicalize(&line).unwrap().to_vec();
                assert_eq!(fast.canonicalize(&line).unwrap(), &want[..]);
                lines += 1;
            }
        }
        assert_eq!(fast.fast_hits(), lines - SHAPES as u64);
        assert_eq!(general.fast_hits(), 0);
    }

    /// A connection's record in window `w`: one of `shape`'s label sets,
    /// its Community ID, per-window values, and audit fields.
    fn connection_line(conn: usize, shape: usize, w: usize) -> Vec<u8> {
        let labels: String = (0..1 + shape % 4)
            .map(|j| format!(r#""key-{shape}-{j}":"pod-{conn}""#))
            .collect::<Vec<_>>()
            .join(",");
        let hits: String = (0..1 + (conn + w / 4) % 2)
            .map(|h| format!(r#"{{"name":"p-{h}","rule":{}}}"#, conn % 7))
            .collect::<Vec<_>>()
            .join(",");
        format!(
            r#"{{"@timestamp":"2026-11-21T10:{:02}:00Z","event":{{"id":"{:016x}","duration":{}}},"labels":{{{labels}}},"network":{{"bytes":{},"community_id":"1:c{conn}="}},"policy":{{"hits":[{hits}]}},"source":{{"ip":"10.0.{}.{}","port":{}}},"flowscribe":{{"audit":{{"seq":{},"run":1}}}}}}"#,
            w % 60,
            (conn as u64 + 1).wrapping_mul(0x9E37_79B9) ^ w as u64,
            w * 10,
            conn * 31 + w * 1000,
            conn / 250,
            conn % 250,
            30_000 + conn,
            w * 100_000 + conn,
        )
        .into_bytes()
    }

    /// Everything a reader asks of the last record, from both.
    fn same_record(fast: &mut Canonicalizer, general: &mut Canonicalizer, line: &[u8]) {
        let want = general.canonicalize(line).map(<[u8]>::to_vec);
        let got = fast.canonicalize(line).map(<[u8]>::to_vec);
        assert_eq!(got, want, "{}", String::from_utf8_lossy(line));
        if want.is_ok() {
            assert_eq!(fast.audit_field("seq"), general.audit_field("seq"));
            assert_eq!(fast.known_audit_fields(), general.known_audit_fields());
            assert_eq!(fast.leaf("network.bytes"), general.leaf("network.bytes"));
            assert_eq!(fast.leaf("event.id"), general.leaf("event.id"));
        }
    }

    /// A node's archive: every connection reported once per window, in
    /// another order each window, in a dozen shapes; some connections
    /// change shape (a policy hit more or less), two share a hint, some
    /// lines are damaged. Each line is compared with its connection's last
    /// one, and every form and audit value equals the general path's.
    #[test]
    fn connections_are_compared_with_their_own_last_line() {
        const CONNS: usize = 300;
        const WINDOWS: usize = 12;
        let mut fast = Canonicalizer::with_hints();
        let mut plain = Canonicalizer::new();
        let mut general = Canonicalizer::general_only();
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut order: Vec<usize> = (0..CONNS).collect();
        let mut one_offs = 0;
        for w in 0..WINDOWS {
            for i in (1..CONNS).rev() {
                order.swap(i, (next() % (i as u64 + 1)) as usize);
            }
            for &conn in &order {
                // Every fifth connection changes shape halfway.
                let shape = if conn % 5 == 0 && w >= WINDOWS / 2 {
                    (conn + 1) % 12
                } else {
                    conn % 12
                };
                let mut line = connection_line(conn, shape, w);
                if conn == 7 {
                    // Connection 7 carries connection 8's hint.
                    let text = String::from_utf8(line).unwrap().replace("1:c7=", "1:c8=");
                    line = text.into_bytes();
                }
                if next() % 50 == 0 {
                    // One byte changed anywhere.
                    let at = (next() % line.len() as u64) as usize;
                    line[at] = b"\"{}:,0aZ\\ "[(next() % 10) as usize];
                }
                same_record(&mut fast, &mut general, &line);
                same_record(&mut plain, &mut general, &line);
                if next() % 50 == 0 {
                    // A connection seen once, in the shape just read
                    // (fewer than would pass the bound on bases).
                    one_offs += 1;
                    let line = connection_line(CONNS + one_offs, shape, w);
                    same_record(&mut fast, &mut general, &line);
                    same_record(&mut plain, &mut general, &line);
                }
            }
        }
        // After each connection's first window, nearly every line is read
        // against its own last one (not the damaged ones, nor the line
        // after one), and reads only what changed since that line: the
        // time, the event id and duration, the bytes, now and then the
        // policy hits (against another connection's line it would read
        // its labels, addresses, port and Community ID too).
        let later = ((WINDOWS - 1) * CONNS) as u64;
        assert!(fast.base_hits() > later * 9 / 10, "{}", fast.base_hits());
        assert!(fast.base_hits() <= later + one_offs as u64);
        assert!(
            fast.base_values_read() <= fast.base_hits() * 5,
            "{} values in {} lines",
            fast.base_values_read(),
            fast.base_hits()
        );
        assert_eq!(plain.base_hits(), 0);
        // One or two (those that changed shape, the shared hint) per hint,
        // and a few from damaged hints and the one-off connections.
        let (bases, bytes) = fast.bases();
        assert!(bases >= CONNS, "{bases}");
        assert!(bases <= CONNS + CONNS / 5 + 40 + one_offs, "{bases}");
        assert!(bytes > bases * 300 && bytes < bases * 4096, "{bytes}");
        assert_eq!(general.fast_hits(), 0);
    }

    /// Wherever the key is, and wherever the last line had it, a line's
    /// hint is its value's: the search that starts near the last place
    /// also looks before it.
    #[test]
    fn hints_are_found_wherever_the_last_line_had_theirs() {
        let pad = |n: usize| "x".repeat(n);
        let line = |before: usize, after: usize, id: &str| {
            format!(
                r#"{{"a":"{}","network":{{"community_id":"{id}"}},"z":"{}"}}"#,
                pad(before),
                pad(after)
            )
        };
        let lines = [
            line(0, 3000, "1:a="),
            line(3000, 0, "1:b="),
            line(10, 10, "1:c="),
            line(2000, 2000, "1:d="),
            line(0, 3000, "1:e="),
            line(3000, 5, "1:f="),
        ];
        let mut warm = Hints::new(MAX_BASES, MAX_BASE_BYTES);
        for l in &lines {
            let fresh = Hints::new(MAX_BASES, MAX_BASE_BYTES).of(l.as_bytes());
            assert!(fresh.is_some());
            assert_eq!(warm.of(l.as_bytes()), fresh, "{}", &l[..40]);
        }
        assert_eq!(warm.of(br#"{"a":"no key"}"#), None);
    }

    /// More connections per window than bases: bases stay within their
    /// bounds, hints are turned off once dropped bases are asked for more
    /// often than bases are found, and the forms stay right. Then a quarter
    /// of the bound: every line after the first window finds its base.
    #[test]
    fn bases_stay_within_their_bound() {
        let mut fast = Canonicalizer::with_hints();
        let mut general = Canonicalizer::general_only();
        for w in 0..4 {
            for conn in 0..MAX_BASES * 2 + 7 {
                same_record(&mut fast, &mut general, &connection_line(conn, conn % 5, w));
                fast.hints.as_ref().unwrap().check_counts();
                let (bases, bytes) = fast.bases();
                assert!(bases <= MAX_BASES && bytes <= MAX_BASE_BYTES);
            }
        }
        // Bases were dropped before their connections came back: hints
        // were turned off, and bases dropped.
        let offs = fast.hints.as_ref().unwrap().offs;
        assert!(offs > 0);
        // Connections that fit, on the same canonicalizer: once the lines
        // of the off period have passed, bases are kept and found again.
        let hits = fast.base_hits();
        let n = MAX_BASES / 4;
        for w in 4..(4 + 2 * OFF_LINES as usize / n + 3) {
            for conn in 0..n {
                same_record(&mut fast, &mut general, &connection_line(conn, conn % 5, w));
            }
        }
        assert!(
            fast.base_hits() > hits + 2 * n as u64,
            "{}",
            fast.base_hits() - hits
        );
        assert_eq!(fast.hints.as_ref().unwrap().offs, offs);
        let mut fast = Canonicalizer::with_hints();
        let n = MAX_BASES / 4;
        for w in 0..4 {
            for conn in 0..n {
                same_record(&mut fast, &mut general, &connection_line(conn, conn % 5, w));
            }
        }
        // All but the second lines of the five connections whose first
        // lines taught the five shapes (the general path keeps no base).
        assert_eq!(fast.base_hits(), 3 * n as u64 - 5);
    }

    /// Connections that come back every window among one-off ones that
    /// fill a generation each window: the returning ones' bases move from
    /// the last generation to this one and are found every time, while the
    /// one-off ones' are dropped with their generation.
    #[test]
    fn returning_connections_keep_their_bases_across_generations() {
        let mut fast = Canonicalizer::with_hints();
        let mut general = Canonicalizer::general_only();
        let (returning, one_off) = (MAX_BASES / 4, MAX_BASES / 5);
        let mut hits = 0;
        let mut next_one_off = returning;
        for w in 0..6 {
            for conn in 0..returning {
                let before = fast.base_hits();
                same_record(&mut fast, &mut general, &connection_line(conn, conn % 5, w));
                hits += fast.base_hits() - before;
                if conn < one_off {
                    next_one_off += 1;
                    let line = connection_line(next_one_off, conn % 5, w);
                    same_record(&mut fast, &mut general, &line);
                }
            }
        }
        // Every line of a returning connection after its first, but the
        // second lines of the five that taught the shapes.
        assert_eq!(hits, 5 * returning as u64 - 5);
        assert_eq!(fast.hints.as_ref().unwrap().offs, 0);
        // Generations turned: the one-off bases (more than the bound) were
        // dropped.
        assert!(returning + 6 * one_off > MAX_BASES);
        assert!(fast.bases().0 <= MAX_BASES);
    }

    /// Each connection's record in two views in one archive (an ECS line
    /// and an OCSF-like one, both with its Community ID): each finds its
    /// own view's base, the other view's is passed over untouched.
    #[test]
    fn two_views_of_a_connection_keep_a_base_each() {
        let mut fast = Canonicalizer::with_hints();
        let mut general = Canonicalizer::general_only();
        const CONNS: usize = 200;
        for w in 0..8 {
            for conn in 0..CONNS {
                same_record(&mut fast, &mut general, &connection_line(conn, conn % 5, w));
                let other = format!(
                    r#"{{"activity_id":6,"connection_info":{{"community_uid":"1:c{conn}=","direction":"inbound"}},"time":{},"traffic":{{"bytes":{}}}}}"#,
                    w * 10_000,
                    conn * 7 + w * 100
                );
                same_record(&mut fast, &mut general, other.as_bytes());
            }
        }
        // Every line after the first window, but the second lines of the
        // six connections whose first lines taught the six shapes.
        assert_eq!(fast.base_hits(), (2 * CONNS * 7 - 6) as u64);
        assert_eq!(fast.bases().0, 2 * CONNS);
    }

    /// Lines that grow window after window (a long value), connections
    /// that alternate between two shapes, tight bounds: the counts stay
    /// the sums over the maps, and the bytes within the bound (plus at
    /// most one base's growth, before the generation turns).
    #[test]
    fn growing_lines_stay_within_the_byte_bound() {
        const MAX: (usize, usize) = (64, 128 << 10);
        let mut fast = Canonicalizer::with_hints_bounded(MAX.0, MAX.1);
        let mut general = Canonicalizer::general_only();
        let cap = fast.hints.as_ref().unwrap().max_base_bytes();
        for w in 0..24 {
            for conn in 0..40 {
                // Two shapes in turn for the first windows, then one shape
                // and only longer lines (bases grow while they take them).
                let shape = if conn % 2 == 0 && w < 8 {
                    (conn + w) % 2
                } else {
                    0
                };
                let mut line = connection_line(conn, shape, w);
                let grow = if w < 8 { 0 } else { 400 * (w - 7) };
                let note = format!(r#","note":"{}"}}"#, "x".repeat(grow + conn));
                line.pop();
                line.extend_from_slice(note.as_bytes());
                same_record(&mut fast, &mut general, &line);
                let h = fast.hints.as_ref().unwrap();
                h.check_counts();
                let (bases, bytes) = fast.bases();
                assert!(bases <= MAX.0 && bytes <= MAX.1 + cap, "{bases} {bytes}");
            }
        }
        // Early windows' lines were found (later ones are too long to keep).
        assert!(fast.base_hits() > 40, "{}", fast.base_hits());
    }

    /// More shapes than are kept, one connection each, so that shapes are
    /// evicted while bases name them: every form and audit value stays
    /// right, and shape ids stay unique (a base of an evicted shape names
    /// no shape, rather than another one).
    #[test]
    fn bases_of_evicted_shapes_are_passed_over() {
        let mut fast = Canonicalizer::with_hints();
        let mut general = Canonicalizer::general_only();
        for w in 0..4 {
            for conn in 0..MAX_SHAPES + 72 {
                // One shape per connection: its label keys are its own.
                let line = connection_line(conn, conn, w);
                same_record(&mut fast, &mut general, &line);
                assert_eq!(fast.audit_type(), general.audit_type());
                assert_eq!(fast.known_leaf(0), general.known_leaf(0));
            }
        }
        assert_eq!(fast.shapes.len(), MAX_SHAPES);
        assert_eq!(fast.ids.len(), MAX_SHAPES);
        let mut ids = fast.ids.clone();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), MAX_SHAPES);
    }

    /// Past 128 shapes the least recently used is evicted: the 128 most
    /// recent are found, older ones are parsed (and learned again). Lines
    /// of one key set in several orders share a print and are each found.
    #[test]
    fn shapes_are_evicted_least_recently_used_and_shared_prints_are_tried() {
        let mut fast = Canonicalizer::new();
        let mut general = Canonicalizer::general_only();
        let mut check = |c: &mut Canonicalizer, line: &[u8]| {
            let want = general.canonicalize(line).unwrap().to_vec();
            assert_eq!(c.canonicalize(line).unwrap(), &want[..]);
        };
        // Each shape twice in a row: learned, then found.
        for shape in 0..200 {
            check(&mut fast, &labelled_line(shape, 1));
            check(&mut fast, &labelled_line(shape, 2));
        }
        assert_eq!(fast.fast_hits(), 200);
        // The 100 most recent: all found.
        for shape in 100..200 {
            check(&mut fast, &labelled_line(shape, 3));
        }
        assert_eq!(fast.fast_hits(), 300);
        // The 50 oldest were evicted: none found.
        for shape in 0..50 {
            check(&mut fast, &labelled_line(shape, 4));
        }
        assert_eq!(fast.fast_hits(), 300);
        // One key set in five orders: one print, five shapes, each found.
        let orders = [
            r#"{"a":N,"b":1,"c":2}"#,
            r#"{"b":1,"a":N,"c":2}"#,
            r#"{"c":2,"b":1,"a":N}"#,
            r#"{"a":N,"c":2,"b":1}"#,
            r#"{"b":1,"c":2,"a":N}"#,
        ];
        let mut fresh = Canonicalizer::new();
        for n in 0..10 {
            for o in orders {
                check(&mut fresh, o.replace('N', &n.to_string()).as_bytes());
            }
        }
        assert_eq!(fresh.fast_hits(), 45);
    }

    /// The key print, byte by byte: what the word-at-a-time scan and the
    /// tail's masking must give.
    fn key_print_reference(json: &[u8]) -> u64 {
        let mut bits = [0u64; 4];
        for p in 2..json.len() {
            if json[p] != b':' || json[p - 1] != b'"' || json[p - 2] == b'\\' {
                continue;
            }
            let end = p - 1;
            let key = &json[end.saturating_sub(4)..end];
            let mut tail = [0u8; 4];
            tail[4 - key.len()..].copy_from_slice(key);
            if let Some(q) = tail.iter().rposition(|&b| b == b'"') {
                tail[..=q].fill(0);
            }
            let h = u32::from_le_bytes(tail).wrapping_mul(0x9E37_79B1) >> 24;
            bits[(h >> 6) as usize] |= 1 << (h & 63);
        }
        bits.iter().fold(0u64, |print, &w| {
            (print ^ w)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .rotate_left(29)
        })
    }

    #[test]
    fn the_key_print_scan_equals_the_byte_by_byte_reference() {
        // Lines from an alphabet rich in quotes, colons, backslashes and
        // the bytes next to them (`#`, `;`: a borrow in the word trick).
        let alphabet = br#"":\ab#;{},"#;
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for len in 0..400 {
            for _ in 0..20 {
                let line: Vec<u8> = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        alphabet[(state % alphabet.len() as u64) as usize]
                    })
                    .collect();
                assert_eq!(key_print(&line), key_print_reference(&line), "{line:?}");
            }
        }
        for shape in 0..50 {
            let line = labelled_line(shape, 7);
            assert_eq!(key_print(&line), key_print_reference(&line));
        }
    }

    #[test]
    fn the_key_print_is_the_set_of_keys() {
        // Values, the length of an array of objects: the same print.
        assert_eq!(
            key_print(&labelled_line(3, 1)),
            key_print(&labelled_line(3, 5))
        );
        // Another label key: another print.
        assert_ne!(
            key_print(&labelled_line(3, 1)),
            key_print(&labelled_line(4, 1))
        );
        // A `":` inside a string value is escaped, not a key.
        assert_eq!(
            key_print(br#"{"a":"x","b":1}"#),
            key_print(br#"{"a":"x\":\"y","b":1}"#)
        );
        // Short keys: the bytes before the opening quote do not count.
        assert_eq!(
            key_print(br#"{"a":1,"b":2}"#),
            key_print(br#"{"a":12345,"b":2}"#)
        );
    }

    /// Objects inside arrays are copied when their keys are in order and
    /// sorted otherwise; both give the reference's bytes.
    #[test]
    fn objects_in_arrays_in_order_or_not() {
        for line in [
            r#"{"a":[{"k":1,"m":{"x":"1","y":[{"p":1,"q":2}]},"z":null}]}"#,
            r#"{"a":[{"z":1,"k":2},{"k":1,"k":2},{"":1,"a":2},{"b":1,"":2},{}]}"#,
            r#"{"a":[{"k\u0041":1,"kA":2},{"é":1,"e":2},{"e":1,"é":2}]}"#,
            r#"{"a":[{ "k" : 1 , "m" : 2 }]}"#,
        ] {
            let v: Value = serde_json::from_str(line).unwrap();
            let want = canonical_bytes(&v);
            for mut c in [Canonicalizer::new(), Canonicalizer::general_only()] {
                for _ in 0..3 {
                    assert_eq!(
                        String::from_utf8_lossy(c.canonicalize(line.as_bytes()).unwrap()),
                        String::from_utf8_lossy(&want),
                        "{line}"
                    );
                }
            }
        }
        // Out of order inside in order and the reverse, a space before the
        // brace, duplicates after an ordered start (the last one kept),
        // more members than are kept on the stack.
        let many: String = (0..40)
            .map(|i| format!(r#""k{i:02}":{i}"#))
            .collect::<Vec<_>>()
            .join(",");
        for line in [
            r#"{"a":[{"a":1,"b":{"z":1,"y":2},"c":3}]}"#.to_string(),
            r#"{"a":[{"b":1,"a":{"y":1,"z":2}}]}"#.to_string(),
            r#"{"a":[{"k":1 }]}"#.to_string(),
            r#"{"a":[{"a":1,"b":2,"a":3}]}"#.to_string(),
            format!(r#"{{"a":[{{{many}}}]}}"#),
            format!(r#"{{"a":[{{{many},"k00":"last"}}]}}"#),
        ] {
            let v: Value = serde_json::from_str(&line).unwrap();
            let want = canonical_bytes(&v);
            for mut c in [Canonicalizer::new(), Canonicalizer::general_only()] {
                assert_eq!(
                    String::from_utf8_lossy(c.canonicalize(line.as_bytes()).unwrap()),
                    String::from_utf8_lossy(&want),
                    "{line}"
                );
            }
        }
        // A broken object inside an array is the same error either way.
        let bad = br#"{"a":[{"k":1,"m"}]}"#;
        assert_eq!(
            Canonicalizer::new().canonicalize(bad).unwrap_err(),
            Canonicalizer::general_only().canonicalize(bad).unwrap_err()
        );
    }

    /// Objects nested in arrays whose keys turn out of order only after a
    /// nested value was read: the work stays linear (reading them again at
    /// each level would double it per level: 2^60 here, a hang).
    #[test]
    fn nested_objects_out_of_order_are_read_once() {
        let mut o = "1".to_string();
        for _ in 0..60 {
            o = format!(r#"{{"b":{o},"a":1}}"#);
        }
        let line = format!(r#"{{"x":[{o}]}}"#);
        let v: Value = serde_json::from_str(&line).unwrap();
        for mut c in [Canonicalizer::new(), Canonicalizer::general_only()] {
            assert_eq!(
                c.canonicalize(line.as_bytes()).unwrap(),
                canonical_bytes(&v)
            );
        }
        // Broken, and deeper than a line may nest: an error, the same one.
        let broken = format!(r#"{{"x":[{}"#, r#"{"a":"#.repeat(100_000));
        let want = Canonicalizer::general_only()
            .canonicalize(broken.as_bytes())
            .unwrap_err();
        assert_eq!(want.0, "nested too deep");
        assert_eq!(
            Canonicalizer::new()
                .canonicalize(broken.as_bytes())
                .unwrap_err(),
            want
        );
        let shallow = format!(r#"{{"x":[{}1"#, r#"{"b":1,"a":"#.repeat(200));
        assert_eq!(
            Canonicalizer::new()
                .canonicalize(shallow.as_bytes())
                .unwrap_err(),
            Canonicalizer::general_only()
                .canonicalize(shallow.as_bytes())
                .unwrap_err()
        );
    }

    #[test]
    fn a_changed_value_changes_the_form() {
        assert_ne!(canon(json!({"bytes": 100})), canon(json!({"bytes": 101})));
        assert_ne!(canon(json!({"a": "1"})), canon(json!({"a": 1})));
        assert_ne!(canon(json!({"a": null})), canon(json!({})));
    }
}

/// Why a line has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a JSON object: {0} at byte {1}")]
pub struct CanonicalError(pub &'static str, pub usize);

/// One leaf: ranges into the path and value arenas.
#[derive(Debug, Clone, Copy)]
struct LeafRef {
    path: (u32, u32),
    value: (u32, u32),
    /// A key of the path holds `"`, `\\` or a control character.
    escape: bool,
}

/// The canonical form computed straight from JSON bytes, without building a
/// `serde_json::Value`: the hot path of sealing and verifying. It produces
/// the same bytes as [`canonical_bytes`] (a test checks both on the same
/// inputs) and keeps the audit fields aside. Reusable: buffers are kept
/// between calls.
#[derive(Debug, Default)]
pub struct Canonicalizer {
    /// Learned record shapes (`shape.rs`); `shapes[0]` matched last.
    shapes: Vec<shape::Shape>,
    /// Per shape: the key print of the line it was learned from
    /// ([`key_print`]), so that a line is tried only against the shapes
    /// whose print equals its own.
    prints: Vec<u64>,
    /// Per shape: when it last matched (a count of lines), to evict the
    /// least recently used one when all slots are taken.
    used: Vec<u64>,
    /// Per shape: its id, unique within this canonicalizer (a base names
    /// the shape it was kept for; indices move).
    ids: Vec<u64>,
    next_id: u64,
    /// Lines compared with their connection's last line (see
    /// [`Canonicalizer::with_hints`]); `None` unless asked for.
    hints: Option<Box<Hints>>,
    base_hits: u64,
    base_values_read: u64,
    /// Lines canonicalised so far (the clock of `used`).
    clock: u64,
    /// The last line matched `shapes[0]` at the first try: the next one is
    /// tried there first too (a view in one shape never computes a print).
    /// Otherwise lines come in several shapes, interleaved, and the print
    /// picks the shapes to try: a failed match would drop a shape's kept
    /// line, and its next line would be read in full.
    streak: bool,
    /// The last record went through `shapes[0]` rather than the general path.
    last_was_shape: bool,
    /// `out` and `leaf_values` hold the form `shapes[0]` emitted for the
    /// last line it matched (so the next line it matches can rewrite only
    /// the values that changed).
    out_from_shape0: bool,
    /// Only the general path (a reference for tests and benchmarks).
    general_only: bool,
    /// Asked for ([`Canonicalizer::set_v3_parts`]): when the v3 stable
    /// part of a line's form is known to be a line before's, write only
    /// its volatile part.
    v3_parts: bool,
    /// The last line's `out` holds only its v3 volatile part; this is the
    /// digest of its stable part.
    volatile_only: Option<Hash>,
    /// Where the last line's state (its `LastLine`) is kept, for
    /// [`Canonicalizer::keep_stable_digest`].
    line_at: LineAt,
    /// Lines for which only v3's parts were written.
    v3_part_hits: u64,
    /// For such a line (`volatile_only`): the values of its
    /// [`KNOWN_LEAVES`], copied while its state is in the shape (the
    /// ranges index `known_values`).
    known_values: Vec<u8>,
    known_ranges: [Option<(u32, u32)>; 2],
    /// Lines since the last one that was in a known shape.
    misses_in_a_row: u32,
    fast_hits: u64,
    /// The last record had two leaves with one path (the general path
    /// orders them by value; learned shapes never have them).
    duplicate_paths: bool,
    /// Per content leaf of the matched shape (output order): its value's
    /// range in `out`.
    leaf_values: Vec<(u32, u32)>,
    /// The general path's output, kept while a newly learned shape is checked.
    check: Vec<u8>,
    path: Vec<u8>,
    /// Keys on the current path that need escaping when written.
    special_keys: u32,
    paths: Vec<u8>,
    values: Vec<u8>,
    leaves: Vec<LeafRef>,
    audit: Vec<LeafRef>,
    out: Vec<u8>,
    scratch: String,
}

const AUDIT_PREFIX: &[u8] = b"flowscribe.audit";

/// The audit fields a data record carries, in the order
/// [`Canonicalizer::known_audit_fields`] returns them.
pub const KNOWN_AUDIT_FIELDS: [&str; 6] = ["chain", "view", "run", "batch", "seq", "suite"];

/// Content leaves the verifier reads from every record, in the order
/// [`Canonicalizer::known_leaf`] numbers them: a learned shape finds them
/// once, not per record.
pub const KNOWN_LEAVES: [&str; 2] = ["host.name", "flowscribe.record"];

/// The longest stretch of a line [`Canonicalizer`] copies to keep a
/// record's audit values in one piece (they are ~150 bytes together).
const AUDIT_SPAN: usize = 1024;

/// How many shapes a canonicalizer keeps. A view's records come in as
/// many shapes as their sources and destinations have label sets and
/// policy traces have structures: dozens on a node (the ECS records of
/// normalize's benchmark workload come in 46), interleaved.
const MAX_SHAPES: usize = 128;

/// How many shapes sharing a line's key print are tried before the
/// general path.
const PRINT_TRIES: usize = 8;

/// The longest line a shape is learned from: a shape holds a few times its
/// line (segments, the last line, the form's prefixes), so 128 of them stay
/// within tens of MB. Records are a few KB; longer lines take the general
/// path.
const MAX_LEARNED_LINE: usize = 64 << 10;

/// How far before where the last line had its hint key a line's is
/// looked for from ([`Hints::of`]).
const HINT_BACK: usize = 512;

/// What marks a line's connection hint: the value of a key
/// `community_id` or `community_uid` (ECS `network.community_id`, OCSF
/// `connection_info.community_uid`: the Community ID of the 5-tuple).
const HINT_KEY: &[u8] = b"\"community_";

/// Bases kept at most, and the bytes they may hold (each counted when
/// kept and again after each line it takes; a base of a ~3 KB line holds
/// ~6 KB). They are kept in two generations of half of each: when this
/// generation is full, the last one is dropped and this one becomes the
/// last; a base found in the last moves to this one. So a connection keeps
/// its base while at most a generation's worth of other connections'
/// bases (~5,000 of ~3 KB lines) are kept or moved in between two of its
/// lines: a node's archive with up to that many connections per window.
/// The bound counts what bases hold (lines, slots, values; one base at
/// most [`Hints::max_base_bytes`]), not the maps' own overhead, and may be
/// passed by one base's growth before its generation turns.
const MAX_BASES: usize = if cfg!(test) { 1024 } else { 16384 };
const MAX_BASE_BYTES: usize = 64 << 20;

/// Lookups per epoch. An epoch in which more lookups missed a base that
/// had been dropped with its generation than found one (more connections
/// per window than bases fit: every base is dropped before its connection
/// comes back) turns hints off for [`OFF_LINES`] lines, and drops every
/// base: they would only cost copies and cache (measured: 20,000
/// connections per window ran 20-25 % slower with them than without).
const HINT_EPOCH: u32 = if cfg!(test) { 256 } else { 4096 };
const OFF_LINES: u64 = if cfg!(test) { 2048 } else { 1 << 20 };

/// Bases kept per hint, one per shape: a connection's records in two views
/// come in two shapes. (Two nodes' records of one connection in one view
/// share a shape when their node names are as long: they take turns in
/// its one base, and each is compared with the other node's line, whose
/// stable leaves differ, so v3 reads them in full.)
const BASES_PER_HINT: usize = 2;

/// Lookups in a row that find no base before hints are read only after
/// the other shapes fail (an archive of one-off connections).
const HINT_MISSES_OFF: u32 = 64;

/// A connection's last line in one shape, kept so that its next line is
/// compared with it (they differ in a dozen values: times, counters, ids)
/// rather than with the last line of the shape, which on a node's archive
/// is another connection's (pods, addresses, labels: most values differ).
/// The form is then written in full from the shape (its pieces are hot in
/// the cache; a kept form would be cold: measured no faster, for twice the
/// memory).
#[derive(Debug)]
struct Base {
    /// The shape's id (`Canonicalizer::ids`).
    shape: u64,
    last: shape::LastLine,
    /// What it held when kept (for the byte bound).
    bytes: usize,
}

/// Where the last line's state is, after it went through a learned shape.
#[derive(Debug, Default, Clone, Copy)]
enum LineAt {
    /// Nowhere (the general path, or before any line).
    #[default]
    Nowhere,
    /// In `shapes[0]`; with a hint when a copy was also kept as the base
    /// of that hint.
    Shape(Option<u64>),
    /// In the first base of this hint (`try_base` gave it the line).
    Base(u64),
}

/// The bases by connection hint ([`Canonicalizer::with_hints`]).
#[derive(Debug)]
struct Hints {
    finder: memchr::memmem::Finder<'static>,
    /// The bounds: [`MAX_BASES`] and [`MAX_BASE_BYTES`] unless given.
    max_bases: usize,
    max_bytes: usize,
    /// This generation's bases and the last one's (see [`MAX_BASES`]).
    bases: std::collections::HashMap<u64, Vec<Base>>,
    old: std::collections::HashMap<u64, Vec<Base>>,
    /// Bases and their bytes, in `bases` and in `old`.
    count: usize,
    bytes: usize,
    old_count: usize,
    old_bytes: usize,
    /// The last lookups found a base: hints are read before the shape of
    /// the last line is tried.
    first: bool,
    /// Where the last hint key was, counted from its line's start and
    /// from its end.
    from_start: usize,
    from_end: usize,
    misses: u32,
    /// The hints of bases dropped with their generation, in two sets of
    /// up to twice [`MAX_BASES`] each: when the first is full, it becomes
    /// the second (and the second is forgotten).
    dropped: std::collections::HashSet<u64>,
    dropped_before: std::collections::HashSet<u64>,
    /// In this epoch ([`HINT_EPOCH`]): lookups, bases found, and lookups of
    /// a dropped hint that found none.
    lookups: u32,
    found: u32,
    thrashed: u32,
    /// Lines left before hints are read again (0: on), and how often
    /// they were turned off.
    off_for: u64,
    offs: u64,
}

impl Hints {
    fn new(max_bases: usize, max_bytes: usize) -> Self {
        Hints {
            finder: memchr::memmem::Finder::new(HINT_KEY).into_owned(),
            max_bases,
            max_bytes,
            bases: std::collections::HashMap::new(),
            old: std::collections::HashMap::new(),
            count: 0,
            bytes: 0,
            old_count: 0,
            old_bytes: 0,
            first: false,
            from_start: 0,
            from_end: 0,
            misses: 0,
            dropped: std::collections::HashSet::new(),
            dropped_before: std::collections::HashSet::new(),
            lookups: 0,
            found: 0,
            thrashed: 0,
            off_for: 0,
            offs: 0,
        }
    }

    /// Whether this line may read its hint: false for [`OFF_LINES`] lines
    /// after an epoch of thrashing (called once per line).
    fn line_on(&mut self) -> bool {
        if self.off_for == 0 {
            return true;
        }
        self.off_for -= 1;
        false
    }

    /// Count a lookup; at the end of an epoch, turn hints off if bases
    /// were dropped before their connections came back more often than
    /// they were found.
    fn looked_up(&mut self, hint: u64, found: bool) {
        self.lookups += 1;
        if found {
            self.found += 1;
            (self.misses, self.first) = (0, true);
        } else {
            self.misses = self.misses.saturating_add(1);
            if self.misses >= HINT_MISSES_OFF {
                self.first = false;
            }
            // A dropped hint counts once: its connection keeps a base again.
            if self.dropped.remove(&hint) || self.dropped_before.remove(&hint) {
                self.thrashed += 1;
            }
        }
        if self.lookups < HINT_EPOCH {
            return;
        }
        if self.thrashed > self.found {
            self.off_for = OFF_LINES;
            self.offs += 1;
            self.first = false;
            self.bases = std::collections::HashMap::new();
            self.old = std::collections::HashMap::new();
            self.dropped = std::collections::HashSet::new();
            self.dropped_before = std::collections::HashSet::new();
            (self.count, self.bytes, self.old_count, self.old_bytes) = (0, 0, 0, 0);
        }
        (self.lookups, self.found, self.thrashed) = (0, 0, 0);
    }

    /// The most one base may hold: eight times its share of the bound (a
    /// connection of very long lines keeps none).
    fn max_base_bytes(&self) -> usize {
        8 * self.max_bytes / self.max_bases.max(1)
    }

    /// The counts equal the sums over the maps (tests).
    #[cfg(test)]
    fn check_counts(&self) {
        let sum = |m: &std::collections::HashMap<u64, Vec<Base>>| {
            m.values()
                .flatten()
                .fold((0, 0), |(n, b), x| (n + 1, b + x.bytes))
        };
        assert_eq!(sum(&self.bases), (self.count, self.bytes));
        assert_eq!(sum(&self.old), (self.old_count, self.old_bytes));
    }

    /// Start a new generation when this one cannot take `bases` more
    /// bases of `bytes` more bytes.
    fn turn_if_full(&mut self, bases: usize, bytes: usize) {
        if self.count + bases <= self.max_bases / 2 && self.bytes + bytes <= self.max_bytes / 2 {
            return;
        }
        let old = std::mem::replace(&mut self.old, std::mem::take(&mut self.bases));
        if self.dropped.len() + old.len() > 2 * self.max_bases {
            self.dropped_before = std::mem::take(&mut self.dropped);
        }
        self.dropped.extend(old.into_keys());
        (self.old_count, self.old_bytes) = (self.count, self.bytes);
        (self.count, self.bytes) = (0, 0);
    }

    /// The base of `hint` kept for the shape `shape`, in either
    /// generation (not moved).
    fn base_of(&mut self, hint: u64, shape: u64) -> Option<&mut Base> {
        let list = match self.bases.get_mut(&hint) {
            Some(list) => list,
            None => self.old.get_mut(&hint)?,
        };
        list.iter_mut().find(|b| b.shape == shape)
    }

    /// The bases of `hint`, in this generation (moved there from the last
    /// one if they were in it).
    fn get(&mut self, hint: u64) -> Option<&mut Vec<Base>> {
        if !self.bases.contains_key(&hint) {
            let list = self.old.remove(&hint)?;
            let bytes: usize = list.iter().map(|b| b.bytes).sum();
            self.old_count -= list.len();
            self.old_bytes -= bytes;
            self.turn_if_full(list.len(), bytes);
            self.count += list.len();
            self.bytes += bytes;
            self.bases.insert(hint, list);
        }
        self.bases.get_mut(&hint)
    }

    /// The hash of the line's hint value, if it has one: a
    /// `"community_id":"` or `"community_uid":"` (a key with no space
    /// before its value, as writers put it) in a line of at most
    /// [`MAX_LEARNED_LINE`] bytes (longer lines are never learned from, and
    /// keep no base). Looked for from [`HINT_BACK`] bytes before where the
    /// last line had it, counted from the end it was nearer (a writer puts
    /// the key at about the same place: the ECS encoder near the end, the
    /// OCSF one near the start), to the line's end, then before that. A
    /// line with two such keys may so give either value; a hint only picks
    /// the line to compare with.
    fn of(&mut self, json: &[u8]) -> Option<u64> {
        if json.len() > MAX_LEARNED_LINE {
            return None;
        }
        let value_at = |at: usize| {
            let rest = json.get(at + HINT_KEY.len()..)?;
            rest.strip_prefix(b"id\":\"")
                .or_else(|| rest.strip_prefix(b"uid\":\""))
        };
        let expected = if self.from_start <= self.from_end {
            self.from_start
        } else {
            json.len().saturating_sub(self.from_end)
        };
        let from = expected.saturating_sub(HINT_BACK).min(json.len());
        let find = |lo: usize, hi: usize| {
            let part = json.get(lo..hi)?;
            self.finder
                .find_iter(part)
                .find_map(|at| value_at(lo + at).map(|v| (lo + at, v)))
        };
        let (at, rest) =
            find(from, json.len()).or_else(|| find(0, (from + HINT_KEY.len()).min(json.len())))?;
        (self.from_start, self.from_end) = (at, json.len() - at);
        let end = memchr::memchr(b'"', rest)?;
        let value = &rest[..end];
        if value.is_empty() || value.len() > 256 {
            return None;
        }
        // A hint only picks the line to compare with (the comparison
        // decides), so any well-mixed hash does.
        let mut h = value.len() as u64;
        for chunk in value.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            h = (h ^ u64::from_le_bytes(w))
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .rotate_left(29);
        }
        Some(h)
    }
}

/// The key print of a line: which keys it has, whatever their values.
///
/// A key ends at `":` outside a string (inside one, a `"` is escaped, so
/// `\":` is skipped: a key ending in an escaped backslash, never learned,
/// is left out too). Of each key, its last four bytes (fewer when it is
/// shorter: the bytes up to its opening quote are masked) are hashed to one
/// of 256 bits; the print folds the bits. It is a set, not a sequence: a
/// key repeated in the objects of an array leaf (whose length varies from
/// line to line of one shape) sets the same bit. Lines of one shape have
/// one print but for keys that only some of its array leaves hold (an empty
/// array): such a line finds no shape under its print and teaches another
/// copy of the same shape, under its own print. Different shapes may share
/// a print: `Shape::matches` decides.
fn key_print(json: &[u8]) -> u64 {
    let mut bits = [0u64; 4];
    let mut note = |p: usize| {
        if p < 2 || json[p] != b':' || json[p - 1] != b'"' || json[p - 2] == b'\\' {
            return;
        }
        let tail = if p >= 5 {
            // The key's last four bytes (`p - 5 .. p - 1`), the bytes up to
            // and including its opening quote, if within them, cleared:
            // the quotes found exactly (`t` has 0x80 at each zero byte of
            // `x`, no borrow between bytes), the highest one kept.
            let w = u32::from_le_bytes([json[p - 5], json[p - 4], json[p - 3], json[p - 2]]);
            let x = w ^ 0x2222_2222;
            let t = !((((x & 0x7f7f_7f7f) + 0x7f7f_7f7f) | x) | 0x7f7f_7f7f);
            match t.checked_ilog2() {
                None => w,
                Some(31) => 0,
                Some(high) => w & (u32::MAX << (high + 1)),
            }
        } else {
            let end = p - 1; // the closing quote
            let mut tail = [0u8; 4];
            let key = &json[..end];
            tail[4 - key.len()..].copy_from_slice(key);
            if let Some(q) = tail.iter().rposition(|&b| b == b'"') {
                tail[..=q].fill(0);
            }
            u32::from_le_bytes(tail)
        };
        let h = tail.wrapping_mul(0x9E37_79B1) >> 24;
        bits[(h >> 6) as usize] |= 1 << (h & 63);
    };
    // Eight bytes at a time: `(x - 1…1) & !x & 0x80…80` flags the bytes of
    // `x` that are zero (the colons, with `x` the word XOR `:`), and
    // perhaps a byte above a flagged one (a borrow): `note` checks that the
    // byte is a colon.
    const ONES: u64 = 0x0101_0101_0101_0101;
    let mut words = json.chunks_exact(8);
    let mut i = 0;
    for chunk in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let x = u64::from_le_bytes(w) ^ (ONES * u64::from(b':'));
        let mut found = x.wrapping_sub(ONES) & !x & (ONES << 7);
        while found != 0 {
            note(i + (found.trailing_zeros() / 8) as usize);
            found &= found - 1;
        }
        i += 8;
    }
    for p in i..json.len() {
        note(p);
    }
    let mut print = 0u64;
    for w in bits {
        print = (print ^ w)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
    }
    print
}

/// `flowscribe.audit` itself or anything below it.
fn is_audit_path_bytes(p: &[u8]) -> bool {
    p.starts_with(AUDIT_PREFIX) && (p.len() == AUDIT_PREFIX.len() || p[AUDIT_PREFIX.len()] == b'.')
}

mod shape;

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
    /// Objects and values entered and not yet left (see [`MAX_DEPTH`]).
    depth: u32,
}

/// How deep a line may nest (objects and values entered at once). A hostile
/// line of a million `[` must get an error, not exhaust the stack; no
/// writer nests anywhere near this.
const MAX_DEPTH: u32 = 256;

impl Cursor<'_> {
    fn enter(&mut self) -> Result<(), CanonicalError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err("nested too deep"));
        }
        Ok(())
    }
    fn ws(&mut self) {
        while let Some(c) = self.b.get(self.i) {
            if matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                self.i += 1;
            } else {
                break;
            }
        }
    }
    fn err(&self, what: &'static str) -> CanonicalError {
        CanonicalError(what, self.i)
    }
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }
    /// After a member or element: `true` past a `,` (another follows),
    /// `false` past `close` (`}` or `]`, which ended the container).
    fn more(&mut self, close: u8) -> Result<bool, CanonicalError> {
        match self.peek() {
            Some(b',') => {
                self.i += 1;
                Ok(true)
            }
            Some(b) if b == close => {
                self.i += 1;
                Ok(false)
            }
            _ => Err(self.err(if close == b'}' {
                "expected , or }"
            } else {
                "expected , or ]"
            })),
        }
    }
    fn eat(&mut self, c: u8) -> Result<(), CanonicalError> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err("unexpected character"))
        }
    }
    fn literal(&mut self, word: &'static [u8]) -> Result<(), CanonicalError> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(self.err("bad literal"))
        }
    }

    /// A string's raw content (between the quotes) and whether it has escapes.
    fn raw_string(&mut self) -> Result<(&[u8], bool), CanonicalError> {
        self.eat(b'"')?;
        let start = self.i;
        let mut escaped = false;
        loop {
            match self.b.get(self.i) {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    self.i += 2;
                }
                Some(c) if *c < 0x20 => return Err(self.err("control character in string")),
                Some(_) => self.i += 1,
            }
        }
        let raw = &self.b[start..self.i.min(self.b.len())];
        self.i += 1;
        Ok((raw, escaped))
    }
}

/// Decode a JSON string body with escapes (via serde_json, which knows
/// surrogate pairs) into `out`.
fn unescape(raw: &[u8], out: &mut String) -> Result<(), ()> {
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    *out = serde_json::from_slice::<String>(&quoted).map_err(|_| ())?;
    Ok(())
}

/// A JSON number's canonical text.
fn write_number_text(text: &str, out: &mut Vec<u8>) -> Result<(), ()> {
    let plain_integer = {
        let digits = text.strip_prefix('-').unwrap_or(text);
        !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'))
    };
    if plain_integer && (text.parse::<i64>().is_ok() || text.parse::<u64>().is_ok()) {
        // "-0" is an i64 0 for serde_json: written as 0.
        if text == "-0" {
            out.push(b'0');
        } else {
            out.extend_from_slice(text.as_bytes());
        }
        return Ok(());
    }
    let n: serde_json::Number = serde_json::from_str(text).map_err(|_| ())?;
    write_number(&n, out);
    Ok(())
}

impl Canonicalizer {
    pub fn new() -> Self {
        Self::default()
    }

    /// A canonicalizer that also keeps, per connection, its last line in
    /// each shape (a *base*, at most [`MAX_BASES`]), found by the line's
    /// hint ([`HINT_KEY`]): a connection's next record is compared with its
    /// own last one, so only its per-window values are read. For the verifier, which reads a node's records
    /// interleaved (each window reports every open connection once); the
    /// sealer writes templated lines' forms from form templates instead
    /// and leaves this off. The forms are the same either way.
    pub fn with_hints() -> Self {
        Self::with_hints_bounded(MAX_BASES, MAX_BASE_BYTES)
    }

    /// [`Canonicalizer::with_hints`] with other bounds on the bases (in
    /// count and bytes; half of each per generation).
    pub fn with_hints_bounded(max_bases: usize, max_bytes: usize) -> Self {
        Canonicalizer {
            hints: Some(Box::new(Hints::new(max_bases, max_bytes))),
            ..Self::default()
        }
    }

    /// A canonicalizer that never uses learned shapes: the reference the
    /// fast path is tested against.
    pub fn general_only() -> Self {
        Canonicalizer {
            general_only: true,
            ..Self::default()
        }
    }

    /// How many records so far went through a learned shape (tests and
    /// benchmarks use it to prove the fast path ran).
    pub fn fast_hits(&self) -> u64 {
        self.fast_hits
    }

    /// How many of those were compared with their connection's last line
    /// (a base: [`Canonicalizer::with_hints`]).
    pub fn base_hits(&self) -> u64 {
        self.base_hits
    }

    /// How many values the lines compared with their base read (those
    /// that differed from the base's line).
    pub fn base_values_read(&self) -> u64 {
        self.base_values_read
    }

    /// Bases kept now, and the bytes they hold.
    pub fn bases(&self) -> (usize, usize) {
        self.hints
            .as_ref()
            .map_or((0, 0), |h| (h.count + h.old_count, h.bytes + h.old_bytes))
    }

    /// The canonical form the last successful [`Canonicalizer::canonicalize`]
    /// returned.
    pub fn form(&self) -> &[u8] {
        &self.out
    }

    /// Where the values of [`form`](Self::form)'s leaves are (ranges, in
    /// order; an empty-object leaf's covers its `{}`), when the last record
    /// went through a learned shape; `None` after the general path.
    pub fn leaf_value_ranges(&self) -> Option<&[(u32, u32)]> {
        (self.last_was_shape && self.volatile_only.is_none()).then_some(&self.leaf_values[..])
    }

    /// Ask for (or stop asking for) v3's parts rather than the form
    /// (`crate::hash_v3`): when a line in a learned shape differs from the
    /// line it was compared with only in volatile leaves, and the stable
    /// part's digest was given for that line
    /// ([`keep_stable_digest`](Self::keep_stable_digest)), `canonicalize`
    /// writes only the volatile part, and [`v3_parts`](Self::v3_parts)
    /// says so. Then [`form`](Self::form) is not the form: a caller that
    /// needs it (a record of another suite) canonicalises the line again
    /// with this off. Off by default.
    pub fn set_v3_parts(&mut self, on: bool) {
        self.v3_parts = on;
    }

    /// How many lines so far were read as v3's parts only (tests and
    /// benchmarks).
    pub fn v3_part_hits(&self) -> u64 {
        self.v3_part_hits
    }

    /// The last line's v3 parts, when `canonicalize` wrote only them (see
    /// [`set_v3_parts`](Self::set_v3_parts)): its stable part's digest and
    /// its volatile part.
    pub fn v3_parts(&self) -> Option<(&Hash, &[u8])> {
        self.volatile_only.as_ref().map(|d| (d, &self.out[..]))
    }

    /// Keep the digest of the v3 stable part of the last line's form
    /// (computed by the caller from [`form`](Self::form)) with the line's
    /// state, so that a later line compared with this one and differing
    /// from it only in volatile leaves does not need its stable part
    /// written or hashed. Nothing is kept after the general path.
    pub fn keep_stable_digest(&mut self, digest: Hash) {
        match self.line_at {
            LineAt::Nowhere => {}
            LineAt::Shape(hint) => {
                self.shapes[0].set_stable_digest(digest);
                if let Some(hint) = hint
                    && let Some(hints) = self.hints.as_deref_mut()
                    && let Some(base) = hints.base_of(hint, self.ids[0])
                {
                    base.last.stable = Some(digest);
                }
            }
            LineAt::Base(hint) => {
                if let Some(hints) = self.hints.as_deref_mut()
                    && let Some(base) = hints.base_of(hint, self.ids[0])
                {
                    base.last.stable = Some(digest);
                }
            }
        }
    }

    /// Write the matched line's form from `shapes[0]`, or only its v3
    /// volatile part when asked and its stable digest is known (then
    /// `volatile_only` holds that digest).
    fn emit_shape0(&mut self, json: &[u8]) {
        let shape = &self.shapes[0];
        self.volatile_only = None;
        if self.v3_parts
            && let Some(&digest) = shape.stable_digest()
        {
            shape.emit_volatile(json, &mut self.out);
            self.volatile_only = Some(digest);
            self.v3_part_hits += 1;
            // The form is not written: the leaves the verifier reads from
            // every record are kept aside.
            self.known_values.clear();
            for (k, known) in shape.known_leaves().iter().enumerate() {
                self.known_ranges[k] = known.and_then(|e| {
                    let value = shape.leaf_value(json, e as usize)?;
                    let start = self.known_values.len() as u32;
                    self.known_values.extend_from_slice(value);
                    Some((start, self.known_values.len() as u32))
                });
            }
            #[cfg(debug_assertions)]
            {
                // What the parts stand for: the split of the full form.
                let (mut full, mut leaves) = (Vec::new(), Vec::new());
                shape.emit(json, &mut full, &mut leaves);
                let (mut stable, mut volatile) = (Vec::new(), Vec::new());
                assert!(crate::hash_v3::split(&full, &mut stable, &mut volatile).is_some());
                assert!(
                    volatile == self.out && crate::hash_v2::content_digest_v2(&stable) == digest,
                    "v3 parts written from a shape differ from the split form"
                );
                for (k, known) in shape.known_leaves().iter().enumerate() {
                    let want = known.map(|e| {
                        let (start, end) = leaves[e as usize];
                        &full[start as usize..end as usize]
                    });
                    let got = self.known_ranges[k]
                        .map(|(start, end)| &self.known_values[start as usize..end as usize]);
                    assert_eq!(got, want, "a known leaf of a parts-only read");
                }
            }
            return;
        }
        shape.emit(json, &mut self.out, &mut self.leaf_values);
    }

    /// Compute the canonical form of one JSON object.
    pub fn canonicalize(&mut self, json: &[u8]) -> Result<&[u8], CanonicalError> {
        self.duplicate_paths = false;
        self.volatile_only = None;
        self.line_at = LineAt::Nowhere;
        // Offsets are kept as u32.
        if u32::try_from(json.len()).is_err() {
            return Err(CanonicalError("line longer than 4 GiB", 0));
        }
        // The fast path checks the bytes it relies on itself (see
        // `Shape::matches`): a line in a known shape is read once.
        if !self.general_only && json.len() <= shape::MAX_FAST_LINE {
            if self.try_shapes(json) {
                self.fast_hits += 1;
                self.misses_in_a_row = 0;
                return Ok(&self.out);
            }
            self.misses_in_a_row = self.misses_in_a_row.saturating_add(1);
        }
        let (ascii, no_controls) = Self::byte_classes(json);
        if !ascii {
            std::str::from_utf8(json)
                .map_err(|e| CanonicalError("invalid UTF-8", e.valid_up_to()))?;
        }
        self.last_was_shape = false;
        self.canonicalize_general(json)?;
        // Learn the line's shape, unless lines keep coming in new shapes
        // (then only every 16th, so learning costs little on a SIEM export
        // with many shapes).
        // A line with control characters (other than trailing whitespace)
        // is not learned from: writers do not produce them, so its shape
        // is not worth a slot.
        if !self.general_only
            && no_controls
            && json.len() <= MAX_LEARNED_LINE
            && (self.misses_in_a_row < 64 || self.misses_in_a_row.is_multiple_of(16))
        {
            self.learn(json);
        }
        Ok(&self.out)
    }

    /// In one pass: whether the line is ASCII (then it is valid UTF-8
    /// without further checks), and whether it holds no control character
    /// other than trailing whitespace (such lines are not learned from).
    fn byte_classes(json: &[u8]) -> (bool, bool) {
        let end = json
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(0, |i| i + 1);
        // Branch-free folds, so the compiler can vectorise them; the
        // trailing whitespace is ASCII.
        let (high, control) = json[..end].iter().fold((0u8, 0u8), |(high, control), &b| {
            (high | b, control | u8::from(b < 0x20))
        });
        (high < 0x80, control == 0)
    }

    /// Try the line's base (when hints are on and bases keep being found),
    /// the shape that matched the last line, the line's base (when hints
    /// are on), then the shapes of the line's key print.
    fn try_shapes(&mut self, json: &[u8]) -> bool {
        if self.shapes.is_empty() {
            return false;
        }
        self.clock += 1;
        let mut hint = None;
        let hinting = self.hints.as_deref_mut().is_some_and(Hints::line_on);
        // v3's parts pay only against the connection's own last line (the
        // last line of the shape is mostly another connection's, with other
        // stable values): asked for, hints go first until they keep
        // missing.
        let hints_first = hinting
            && self
                .hints
                .as_ref()
                .is_some_and(|h| h.first || (self.v3_parts && h.misses < HINT_MISSES_OFF));
        if hints_first {
            hint = self.hints.as_deref_mut().and_then(|h| h.of(json));
            if hint.is_some_and(|h| self.try_base(json, h)) {
                return true;
            }
        }
        // The shape that matched the last line first (a view's lines often
        // come in one shape: then no print is needed), then the shapes
        // whose print is the line's.
        let k = if self.streak && self.shapes[0].matches(json, &mut self.scratch) {
            0
        } else {
            if hinting && !hints_first {
                hint = self.hints.as_deref_mut().and_then(|h| h.of(json));
                if hint.is_some_and(|h| self.try_base(json, h)) {
                    return true;
                }
            }
            // At most `PRINT_TRIES` shapes of one print are tried: lines
            // with one key set in many orders or spacings (a SIEM that
            // re-serialises) share a print, and the general path is cheaper
            // than a hundred failed matches.
            let print = key_print(json);
            let mut tries = 0;
            let mut found = None;
            let first = usize::from(self.streak);
            for k in first..self.shapes.len() {
                if self.prints[k] != print {
                    continue;
                }
                if self.shapes[k].matches(json, &mut self.scratch) {
                    found = Some(k);
                    break;
                }
                tries += 1;
                if tries == PRINT_TRIES {
                    break;
                }
            }
            let Some(k) = found else {
                self.streak = false;
                return false;
            };
            k
        };
        self.streak = k == 0;
        // Patching rewrites the form: not when only v3's parts are asked
        // for and can be written.
        let patched = k == 0
            && self.out_from_shape0
            && !(self.v3_parts && self.shapes[0].stable_digest().is_some())
            && self.shapes[0].emit_changes(json, &mut self.out, &mut self.leaf_values);
        #[cfg(debug_assertions)]
        if patched {
            self.check_patched_form(json);
        }
        if !patched {
            self.move_to_front(k);
            self.emit_shape0(json);
        }
        self.used[0] = self.clock;
        // `out` holds the form `shapes[0]` wrote unless it holds only the
        // volatile part.
        self.out_from_shape0 = self.volatile_only.is_none();
        self.keep_audit_values(json);
        self.last_was_shape = true;
        let kept = hint.is_some_and(|h| self.keep_base(h));
        self.line_at = LineAt::Shape(hint.filter(|_| kept));
        true
    }

    /// What patching relies on: the form it changed is the one a full
    /// write of this line by `shapes[0]` gives.
    #[cfg(debug_assertions)]
    fn check_patched_form(&self, json: &[u8]) {
        let (mut full, mut leaves) = (Vec::new(), Vec::new());
        self.shapes[0].emit(json, &mut full, &mut leaves);
        debug_assert!(
            full == self.out && leaves == self.leaf_values,
            "a patched canonical form differs from the full one"
        );
    }

    /// Shape `k` to the front (the order of the others does not matter).
    fn move_to_front(&mut self, k: usize) {
        self.shapes.swap(0, k);
        self.prints.swap(0, k);
        self.used.swap(0, k);
        self.ids.swap(0, k);
    }

    /// Match the line against the bases of its hint: with a base's line in
    /// its shape, the match compares the two lines (only the values where
    /// they differ are read). The shape gets its own last line back; the
    /// base keeps this one.
    fn try_base(&mut self, json: &[u8], hint: u64) -> bool {
        let Some(hints) = self.hints.as_deref_mut() else {
            return false;
        };
        let Some(bases) = hints.get(hint) else {
            hints.looked_up(hint, false);
            return false;
        };
        let mut hit = None;
        let mut failed = 0;
        for (b, base) in bases.iter_mut().enumerate() {
            let Some(k) = self.ids.iter().position(|&id| id == base.shape) else {
                continue;
            };
            let shape = &mut self.shapes[k];
            if !shape.starts(json) {
                // Another view's line of this connection: its base stays.
                continue;
            }
            shape.swap_last(&mut base.last);
            if shape.matches(json, &mut self.scratch) {
                hit = Some((b, k));
                break;
            }
            // The failed match cleared the base's line (its state is
            // partly rewritten): it is worth nothing now, and dropped.
            shape.swap_last(&mut base.last);
            base.shape = 0;
            failed += 1;
        }
        if failed > 0 {
            let dropped: usize = bases.iter().filter(|x| x.shape == 0).map(|x| x.bytes).sum();
            bases.retain(|x| x.shape != 0);
            hints.count -= failed;
            hints.bytes -= dropped;
            if let Some((b, _)) = &mut hit {
                *b -= failed;
            }
        }
        let Some((b, k)) = hit else {
            hints.looked_up(hint, false);
            return false;
        };
        hints.looked_up(hint, true);
        self.base_hits += 1;
        self.move_to_front(k);
        self.base_values_read += self.shapes[0].values_read() as u64;
        self.emit_shape0(json);
        self.used[0] = self.clock;
        // The audit values are read while the line's state is in the shape.
        self.keep_audit_values(json);
        // The base (still there: nothing above touches the bases) first of
        // its hint's, with this line's state, counted anew.
        if let Some(hints) = self.hints.as_deref_mut()
            && let cap = hints.max_base_bytes()
            && let Some(list) = hints.bases.get_mut(&hint)
            && b < list.len()
        {
            list.swap(0, b);
            let base = &mut list[0];
            self.shapes[0].swap_last(&mut base.last);
            base.last.compact();
            let bytes = base.last.held_bytes() + std::mem::size_of::<Base>();
            hints.bytes = hints.bytes - base.bytes + bytes;
            base.bytes = bytes;
            if bytes > cap {
                list.remove(0);
                hints.count -= 1;
                hints.bytes -= bytes;
            }
            hints.turn_if_full(0, 0);
        }
        // `out` is this line's form, not that of the line `shapes[0]` holds.
        self.out_from_shape0 = false;
        self.streak = false;
        self.last_was_shape = true;
        self.line_at = LineAt::Base(hint);
        true
    }

    /// Keep the line `shapes[0]` has just matched as the base of its hint
    /// in that shape; false when it is not kept.
    fn keep_base(&mut self, hint: u64) -> bool {
        let Some(hints) = self.hints.as_deref_mut() else {
            return false;
        };
        if hints.off_for > 0 {
            return false;
        }
        let last = self.shapes[0].last_line().compact_clone();
        let bytes = last.held_bytes() + std::mem::size_of::<Base>();
        if bytes > hints.max_base_bytes() {
            return false;
        }
        let base = Base {
            shape: self.ids[0],
            last,
            bytes,
        };
        // Its hint's bases, in this generation: `try_base` looked the hint
        // up just before, which moves bases out of the last generation.
        debug_assert!(!hints.old.contains_key(&hint));
        let mut list = hints
            .bases
            .remove(&hint)
            .unwrap_or_else(|| Vec::with_capacity(BASES_PER_HINT));
        hints.count -= list.len();
        hints.bytes -= list.iter().map(|b| b.bytes).sum::<usize>();
        list.retain(|b| b.shape != base.shape);
        list.insert(0, base);
        list.truncate(BASES_PER_HINT);
        let bytes: usize = list.iter().map(|b| b.bytes).sum();
        hints.turn_if_full(list.len(), bytes);
        hints.count += list.len();
        hints.bytes += bytes;
        hints.bases.insert(hint, list);
        true
    }

    /// Copy the matched shape's audit values (the line is not kept).
    fn keep_audit_values(&mut self, json: &[u8]) {
        self.values.clear();
        self.audit.clear();
        let shape = &self.shapes[0];
        let (vals, arena) = (shape.vals(), shape.arena());
        // The writer puts the audit fields together: when all of them are
        // in the line within a short stretch, that stretch is copied once.
        let mut span = (usize::MAX, 0);
        for (_, slot) in shape.audit() {
            let v = vals[*slot as usize];
            let r = v.range();
            if v.in_arena() {
                span = (usize::MAX, 0);
                break;
            }
            span = (span.0.min(r.start), span.1.max(r.end));
        }
        if span.0 < span.1 && span.1 - span.0 <= AUDIT_SPAN {
            self.values.extend_from_slice(&json[span.0..span.1]);
            for (_, slot) in shape.audit() {
                let r = vals[*slot as usize].range();
                self.audit.push(LeafRef {
                    path: (0, 0),
                    value: ((r.start - span.0) as u32, (r.end - span.0) as u32),
                    escape: false,
                });
            }
            return;
        }
        for (_, slot) in shape.audit() {
            let v = vals[*slot as usize];
            let src = if v.in_arena() { arena } else { json };
            let start = self.values.len() as u32;
            self.values.extend_from_slice(&src[v.range()]);
            self.audit.push(LeafRef {
                path: (0, 0),
                value: (start, self.values.len() as u32),
                escape: false,
            });
        }
    }

    /// Learn the shape of the line the general path has just canonicalised,
    /// and keep it if it gives the same bytes and audit fields.
    fn learn(&mut self, json: &[u8]) {
        // Learning writes `leaf_values` for another buffer: the form in
        // `out` may not be patched after it.
        self.out_from_shape0 = false;
        let Some(mut shape) = shape::Shape::learn(json) else {
            return;
        };
        if !shape.matches(json, &mut self.scratch) {
            return;
        }
        let mut fast = std::mem::take(&mut self.check);
        shape.emit(json, &mut fast, &mut self.leaf_values);
        let same_audit = shape.audit().len() == self.audit.len()
            && shape
                .audit()
                .iter()
                .zip(&self.audit)
                .all(|((name, slot), l)| {
                    let v = shape.vals()[*slot as usize];
                    let src = if v.in_arena() { shape.arena() } else { json };
                    let path = &self.paths[l.path.0 as usize..l.path.1 as usize];
                    path.get(AUDIT_PREFIX.len()..) == Some(&name[..])
                        && src[v.range()] == self.values[l.value.0 as usize..l.value.1 as usize]
                });
        if fast == self.out && same_audit {
            if self.shapes.len() == MAX_SHAPES {
                // Evict the least recently used shape.
                let (v, _) = self
                    .used
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, u)| **u)
                    .unwrap_or((0, &0));
                self.shapes.swap_remove(v);
                self.prints.swap_remove(v);
                self.used.swap_remove(v);
                self.ids.swap_remove(v);
            }
            // In at the end, then to the front.
            self.shapes.push(shape);
            self.prints.push(key_print(json));
            self.used.push(self.clock);
            // Ids start at 1: 0 marks a dropped base.
            self.next_id += 1;
            self.ids.push(self.next_id);
            self.move_to_front(self.shapes.len() - 1);
        }
        self.check = fast;
    }

    /// The general path: parse, flatten, sort.
    fn canonicalize_general(&mut self, json: &[u8]) -> Result<(), CanonicalError> {
        self.out_from_shape0 = false;
        self.path.clear();
        self.special_keys = 0;
        self.paths.clear();
        self.values.clear();
        self.leaves.clear();
        self.audit.clear();
        self.out.clear();
        let mut c = Cursor {
            b: json,
            i: 0,
            depth: 0,
        };
        if c.peek() != Some(b'{') {
            return Err(c.err("expected an object"));
        }
        self.object_leaves(&mut c)?;
        if c.peek().is_some() {
            return Err(c.err("trailing characters"));
        }
        let (paths, values) = (&self.paths, &self.values);
        let key = |l: &LeafRef| {
            (
                &paths[l.path.0 as usize..l.path.1 as usize],
                &values[l.value.0 as usize..l.value.1 as usize],
            )
        };
        self.leaves.sort_unstable_by(|a, b| key(a).cmp(&key(b)));
        self.duplicate_paths = self.leaves.windows(2).any(|w| key(&w[0]).0 == key(&w[1]).0);
        self.out.push(b'{');
        for (n, l) in self.leaves.iter().enumerate() {
            if n > 0 {
                self.out.push(b',');
            }
            // Paths are stored unescaped. A key without escapes in the input
            // holds nothing that needs one, so most paths are copied as is.
            let p = &self.paths[l.path.0 as usize..l.path.1 as usize];
            if l.escape {
                write_string(&String::from_utf8_lossy(p), &mut self.out);
            } else {
                self.out.push(b'"');
                self.out.extend_from_slice(p);
                self.out.push(b'"');
            }
            self.out.push(b':');
            self.out
                .extend_from_slice(&self.values[l.value.0 as usize..l.value.1 as usize]);
        }
        self.out.push(b'}');
        Ok(())
    }

    /// The canonical JSON value of audit field `name` (under
    /// `flowscribe.audit`) of the last record, if present.
    pub fn audit_field(&self, name: &str) -> Option<&[u8]> {
        if self.last_was_shape {
            return self.shapes[0]
                .audit()
                .iter()
                .zip(&self.audit)
                .find_map(|((field, _), l)| {
                    (field.strip_prefix(b".")? == name.as_bytes())
                        .then(|| &self.values[l.value.0 as usize..l.value.1 as usize])
                });
        }
        self.audit.iter().find_map(|l| {
            let p = &self.paths[l.path.0 as usize..l.path.1 as usize];
            let rest = p.strip_prefix(AUDIT_PREFIX)?.strip_prefix(b".")?;
            (rest == name.as_bytes()).then(|| &self.values[l.value.0 as usize..l.value.1 as usize])
        })
    }

    /// [`Canonicalizer::audit_field`] of `type` (what tells a seal or a
    /// checkpoint from a data record), from an index a learned shape
    /// computed once.
    pub fn audit_type(&self) -> Option<&[u8]> {
        if self.last_was_shape {
            let l = self.audit.get(self.shapes[0].type_audit()? as usize)?;
            return self.values.get(l.value.0 as usize..l.value.1 as usize);
        }
        self.audit_field("type")
    }

    /// Every audit field of the last record as (name, canonical value), in
    /// the order [`Canonicalizer::audit_field`] searches them: the first
    /// entry with a name is the one `audit_field` returns. One pass for a
    /// reader that wants several fields.
    pub fn audit_fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let shape = self
            .last_was_shape
            .then(|| {
                self.shapes[0]
                    .audit()
                    .iter()
                    .zip(&self.audit)
                    .filter_map(|((field, _), l)| {
                        Some((
                            field.strip_prefix(b".")?,
                            &self.values[l.value.0 as usize..l.value.1 as usize],
                        ))
                    })
            })
            .into_iter()
            .flatten();
        let general = (!self.last_was_shape)
            .then(|| {
                self.audit.iter().filter_map(|l| {
                    let p = &self.paths[l.path.0 as usize..l.path.1 as usize];
                    let rest = p.strip_prefix(AUDIT_PREFIX)?.strip_prefix(b".")?;
                    Some((rest, &self.values[l.value.0 as usize..l.value.1 as usize]))
                })
            })
            .into_iter()
            .flatten();
        shape.chain(general)
    }

    /// The canonical values of the [`KNOWN_AUDIT_FIELDS`] of the last
    /// record, in that order: for each name the value
    /// [`Canonicalizer::audit_field`] returns. A record in a learned shape
    /// answers from indices the shape computed once.
    pub fn known_audit_fields(&self) -> [Option<&[u8]>; 6] {
        let mut found = [None; 6];
        if self.last_was_shape {
            for (slot, index) in found.iter_mut().zip(self.shapes[0].known_audit()) {
                *slot = index.and_then(|i| {
                    let l = self.audit.get(i as usize)?;
                    self.values.get(l.value.0 as usize..l.value.1 as usize)
                });
            }
            return found;
        }
        for (name, value) in self.audit_fields() {
            if let Some(k) = KNOWN_AUDIT_FIELDS
                .iter()
                .position(|known| known.as_bytes() == name)
                && found[k].is_none()
            {
                found[k] = Some(value);
            }
        }
        found
    }

    /// Whether two leaves of the last record had one path (`{"a":{"b":1},
    /// "a.b":2}`): their order in the form depends on their values.
    pub fn had_duplicate_paths(&self) -> bool {
        self.duplicate_paths
    }

    /// Whether the last record had any audit field.
    pub fn has_audit(&self) -> bool {
        !self.audit.is_empty()
    }

    /// The canonical JSON value at a (flattened) path of the last record.
    /// After a read of v3's parts alone ([`set_v3_parts`](Self::set_v3_parts)),
    /// only the paths of [`KNOWN_LEAVES`] are kept (the form was not
    /// written): any other path gives `None`.
    pub fn leaf(&self, path: &str) -> Option<&[u8]> {
        if self.volatile_only.is_some() {
            let k = KNOWN_LEAVES.iter().position(|p| *p == path)?;
            return self.known_leaf(k);
        }
        if self.last_was_shape {
            let k = self.shapes[0].leaf_index(path.as_bytes())?;
            let (start, end) = self.leaf_values[k];
            return Some(&self.out[start as usize..end as usize]);
        }
        self.leaves.iter().find_map(|l| {
            (&self.paths[l.path.0 as usize..l.path.1 as usize] == path.as_bytes())
                .then(|| &self.values[l.value.0 as usize..l.value.1 as usize])
        })
    }

    /// The canonical JSON value of the content leaf at `KNOWN_LEAVES[k]` of
    /// the last record: what [`Canonicalizer::leaf`] returns for that path,
    /// from an index a learned shape computed once. `None` also for `k`
    /// out of range.
    pub fn known_leaf(&self, k: usize) -> Option<&[u8]> {
        if self.volatile_only.is_some() {
            let (start, end) = (*self.known_ranges.get(k)?)?;
            return self.known_values.get(start as usize..end as usize);
        }
        if self.last_was_shape {
            let i = (*self.shapes[0].known_leaves().get(k)?)? as usize;
            let &(start, end) = self.leaf_values.get(i)?;
            return self.out.get(start as usize..end as usize);
        }
        self.leaf(KNOWN_LEAVES.get(k)?)
    }

    fn push_leaf(&mut self, value_start: usize) {
        let ps = self.paths.len();
        self.paths.extend_from_slice(&self.path);
        let leaf = LeafRef {
            path: (ps as u32, self.paths.len() as u32),
            value: (value_start as u32, self.values.len() as u32),
            escape: self.special_keys > 0,
        };
        if is_audit_path_bytes(&self.path) {
            self.audit.push(leaf);
        } else {
            self.leaves.push(leaf);
        }
    }

    /// The members of an object at the current path, as leaves.
    fn object_leaves(&mut self, c: &mut Cursor<'_>) -> Result<(), CanonicalError> {
        c.enter()?;
        let r = self.object_leaves_entered(c);
        c.depth -= 1;
        r
    }

    fn object_leaves_entered(&mut self, c: &mut Cursor<'_>) -> Result<(), CanonicalError> {
        c.eat(b'{')?;
        if c.peek() == Some(b'}') {
            c.i += 1;
            if !self.path.is_empty() {
                let start = self.values.len();
                self.values.extend_from_slice(b"{}");
                self.push_leaf(start);
            }
            return Ok(());
        }
        loop {
            c.ws();
            let (raw, escaped) = c.raw_string()?;
            let base = self.path.len();
            if base > 0 {
                self.path.push(b'.');
            }
            let mut special = false;
            if escaped {
                let mut s = std::mem::take(&mut self.scratch);
                unescape(raw, &mut s).map_err(|()| c.err("bad escape in key"))?;
                special = s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\');
                self.path.extend_from_slice(s.as_bytes());
                self.scratch = s;
            } else {
                self.path.extend_from_slice(raw);
            }
            self.special_keys += u32::from(special);
            c.eat(b':')?;
            if c.peek() == Some(b'{') {
                self.object_leaves(c)?;
            } else {
                let start = self.values.len();
                write_canonical_value(c, &mut self.values, &mut self.scratch)?;
                self.push_leaf(start);
            }
            self.path.truncate(base);
            self.special_keys -= u32::from(special);
            if !c.more(b'}')? {
                return Ok(());
            }
        }
    }
}

/// Any value, written canonically to `out` (objects with sorted keys).
/// `scratch` is a reusable buffer for unescaped strings.
fn write_canonical_value(
    c: &mut Cursor<'_>,
    out: &mut Vec<u8>,
    scratch: &mut String,
) -> Result<(), CanonicalError> {
    c.enter()?;
    let r = write_canonical_value_entered(c, out, scratch);
    c.depth -= 1;
    r
}

/// Members of an object kept on the stack while its keys come in order.
const ORDERED_MEMBERS: usize = 16;

/// The object at the cursor, canonically. While its keys come in order
/// (ASCII, unescaped, each greater than the one before: what writers
/// produce) each member is written as it is read. At the first key that
/// does not, or past [`ORDERED_MEMBERS`], the members written so far become
/// the member list of the general way (read order kept), and the rest is
/// read into it: sorted by key, the last of duplicate keys kept (as
/// serde_json's Map does). Nothing is read twice, so the work stays linear
/// in the line however the objects nest; errors are the general way's, at
/// the same place (both read the same tokens in the same order).
fn write_object(
    c: &mut Cursor<'_>,
    out: &mut Vec<u8>,
    scratch: &mut String,
) -> Result<(), CanonicalError> {
    c.i += 1;
    let start = out.len();
    out.push(b'{');
    if c.peek() == Some(b'}') {
        c.i += 1;
        out.push(b'}');
        return Ok(());
    }
    let bytes = c.b;
    // While in order: each member's key (in `bytes`) and value (in `out`).
    let mut ordered = [(0usize, 0usize, 0usize, 0usize); ORDERED_MEMBERS];
    let mut n: usize = 0;
    let mut members: Option<Vec<(String, Vec<u8>)>> = None;
    loop {
        c.ws();
        let at = c.i + 1;
        let (len, escaped) = c.raw_string().map(|(raw, e)| (raw.len(), e))?;
        let raw = &bytes[at..at + len];
        if members.is_none() {
            let previous: &[u8] = match n.checked_sub(1) {
                Some(last) => {
                    let (ks, ke, _, _) = ordered[last];
                    &bytes[ks..ke]
                }
                None => &[],
            };
            let in_order = !escaped
                && !raw.is_empty()
                && raw.is_ascii()
                && raw > previous
                && n < ORDERED_MEMBERS;
            if !in_order {
                let mut list = Vec::with_capacity(n + 8);
                for &(ks, ke, vs, ve) in &ordered[..n] {
                    list.push((
                        String::from_utf8_lossy(&bytes[ks..ke]).into_owned(),
                        out[vs..ve].to_vec(),
                    ));
                }
                out.truncate(start);
                members = Some(list);
            }
        }
        match &mut members {
            None => {
                if n > 0 {
                    out.push(b',');
                }
                out.push(b'"');
                out.extend_from_slice(raw);
                out.extend_from_slice(b"\":");
                c.eat(b':')?;
                let value_start = out.len();
                write_canonical_value(c, out, scratch)?;
                ordered[n] = (at, at + len, value_start, out.len());
                n += 1;
            }
            Some(list) => {
                let mut key = String::new();
                if escaped {
                    unescape(raw, &mut key).map_err(|()| c.err("bad escape in key"))?;
                } else {
                    key = String::from_utf8_lossy(raw).into_owned();
                }
                c.eat(b':')?;
                let mut v = Vec::new();
                write_canonical_value(c, &mut v, scratch)?;
                list.push((key, v));
            }
        }
        if !c.more(b'}')? {
            break;
        }
    }
    let Some(mut members) = members else {
        out.push(b'}');
        return Ok(());
    };
    // serde_json's Map keeps the last of duplicate keys.
    members.reverse();
    members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    members.dedup_by(|a, b| a.0 == b.0);
    out.push(b'{');
    for (k, (key, v)) in members.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        write_string(key, out);
        out.push(b':');
        out.extend_from_slice(v);
    }
    out.push(b'}');
    Ok(())
}

fn write_canonical_value_entered(
    c: &mut Cursor<'_>,
    out: &mut Vec<u8>,
    scratch: &mut String,
) -> Result<(), CanonicalError> {
    match c.peek() {
        Some(b'"') => {
            let (raw, escaped) = c.raw_string()?;
            if escaped {
                unescape(raw, scratch).map_err(|()| c.err("bad escape"))?;
                write_string(scratch, out);
            } else {
                // Valid JSON without escapes holds no `"`, `\` or control
                // characters: the raw bytes are already canonical.
                out.push(b'"');
                out.extend_from_slice(raw);
                out.push(b'"');
            }
        }
        Some(b'{') => write_object(c, out, scratch)?,
        Some(b'[') => {
            c.i += 1;
            out.push(b'[');
            if c.peek() == Some(b']') {
                c.i += 1;
            } else {
                let mut first = true;
                loop {
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    write_canonical_value(c, out, scratch)?;
                    if !c.more(b']')? {
                        break;
                    }
                }
            }
            out.push(b']');
        }
        Some(b't') => {
            c.literal(b"true")?;
            out.extend_from_slice(b"true");
        }
        Some(b'f') => {
            c.literal(b"false")?;
            out.extend_from_slice(b"false");
        }
        Some(b'n') => {
            c.literal(b"null")?;
            out.extend_from_slice(b"null");
        }
        Some(b'-' | b'0'..=b'9') => {
            let start = c.i;
            while let Some(b) = c.b.get(c.i) {
                if matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                    c.i += 1;
                } else {
                    break;
                }
            }
            let text = std::str::from_utf8(&c.b[start..c.i]).map_err(|_| c.err("bad number"))?;
            write_number_text(text, out).map_err(|()| CanonicalError("bad number", start))?;
        }
        _ => return Err(c.err("expected a value")),
    }
    Ok(())
}
