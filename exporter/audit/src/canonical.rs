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
//! Pure: no IO, no clocks.

use serde_json::Value;

use crate::fields::AUDIT_PATH;

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

    #[test]
    fn a_changed_value_changes_the_form() {
        assert_ne!(canon(json!({"bytes": 100})), canon(json!({"bytes": 101})));
        assert_ne!(canon(json!({"a": "1"})), canon(json!({"a": 1})));
        assert_ne!(canon(json!({"a": null})), canon(json!({})));
    }
}
