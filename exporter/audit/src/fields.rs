//! The audit fields every exported record carries, under `flowscribe.audit`:
//!
//! ```json
//! {"flowscribe":{"audit":{"chain":"<32 hex>","view":"ecs","run":3,"batch":17,"seq":123456}}}
//! ```
//!
//! Records hashed with suite v2 add `"suite":"v2"` after `seq`; no `suite`
//! means v1 (`hash.rs`).
//!
//! The object may be nested (`{"flowscribe":{"audit":{…}}}`), written with a
//! dotted key (`"flowscribe.audit":{…}`), or fully flattened
//! (`"flowscribe.audit.seq":123456`); readers accept all three, because SIEMs
//! flatten. Seal and checkpoint records (`records.rs`) live under the same
//! object with a `type` field; data records have no `type`, or `type` of one
//! of the data record kinds (`gap`, `loss`, `heartbeat`, `lifecycle`).
//!
//! Pure: no IO.

use serde_json::{Map, Value};

use crate::hash::{ChainId, Suite};

/// The JSON path of the audit object.
pub const AUDIT_PATH: &str = "flowscribe.audit";

/// The audit fields of one data record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFields {
    pub chain: ChainId,
    /// The output format the record was encoded in (`ecs`, `ocsf`, ...):
    /// each format's records have their own hash chain over the same
    /// sequence numbers.
    pub view: String,
    pub run: u64,
    pub batch: u64,
    pub seq: u64,
    /// The hash suite of the record's chain (written only when not v1).
    pub suite: Suite,
}

impl AuditFields {
    /// Append the audit object to an encoded JSON object (`{...}`), as a
    /// dotted top-level key `"flowscribe.audit"` just before the closing
    /// brace. Returns false, and leaves `line` alone, when `line` does not end
    /// with `}` (not a JSON object).
    pub fn append_to_json_object(&self, line: &mut Vec<u8>) -> bool {
        append_to_object(line, |out| self.write_json(out))
    }

    /// The audit object itself, as JSON.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        write_audit_object(
            &self.chain,
            &self.view,
            self.run,
            self.batch,
            self.seq,
            self.suite,
            out,
        );
    }
}

/// Append the audit object that `write` writes as a dotted top-level key
/// `"flowscribe.audit"` before the closing brace of the JSON object `line`
/// (see [`AuditFields::append_to_json_object`]).
pub(crate) fn append_to_object(line: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) -> bool {
    // Tolerate a trailing newline or spaces after the object.
    let end = line
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    line.truncate(end);
    if line.last() != Some(&b'}') {
        return false;
    }
    line.pop();
    let empty_object = line.iter().rev().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if !empty_object {
        line.push(b',');
    }
    line.extend_from_slice(b"\"flowscribe.audit\":");
    write(line);
    line.push(b'}');
    true
}

/// Append `{"chain":…,"view":…,"run":…,"batch":…,"seq":…}` to `out` without
/// allocating (the exporter writes one per record).
pub(crate) fn write_audit_object(
    chain: &ChainId,
    view: &str,
    run: u64,
    batch: u64,
    seq: u64,
    suite: Suite,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"{\"chain\":\"");
    push_chain_hex(chain, out);
    out.extend_from_slice(b"\",\"view\":");
    if view.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        // A view name is a short format name; serde_json escapes an odd one.
        let _ = serde_json::to_writer(&mut *out, view);
    } else {
        out.push(b'"');
        out.extend_from_slice(view.as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(b",\"run\":");
    push_decimal(run, out);
    out.extend_from_slice(b",\"batch\":");
    push_decimal(batch, out);
    out.extend_from_slice(b",\"seq\":");
    push_decimal(seq, out);
    if suite != Suite::V1 {
        out.extend_from_slice(b",\"suite\":\"");
        out.extend_from_slice(suite.name().as_bytes());
        out.push(b'"');
    }
    out.push(b'}');
}

/// Append `n` in decimal.
pub(crate) fn push_decimal(mut n: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        // n % 10 < 10: the cast is exact.
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Append a chain id as 32 lowercase hex digits.
pub(crate) fn push_chain_hex(chain: &ChainId, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in chain {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0xf)]);
    }
}

/// A chain id as 32 lowercase hex digits.
pub fn chain_hex(chain: &ChainId) -> String {
    let mut s = Vec::with_capacity(32);
    push_chain_hex(chain, &mut s);
    // Hex digits are ASCII.
    String::from_utf8(s).unwrap_or_default()
}

/// Parse 32 hex digits into a chain id.
pub fn parse_chain_hex(s: &str) -> Option<ChainId> {
    // Lowercase only, as written: one value has one spelling.
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let hex = s.as_bytes();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// The audit object of a record, gathered from nested, dotted or flattened
/// keys into one map (`{"seq": 5, "chain": "…", …}`). `None` when the record
/// has no audit field at all.
pub fn audit_object(record: &Value) -> Option<Map<String, Value>> {
    let Value::Object(root) = record else {
        return None;
    };
    let mut out = Map::new();
    gather(root, "", &mut out);
    (!out.is_empty()).then_some(out)
}

fn gather(map: &Map<String, Value>, prefix: &str, out: &mut Map<String, Value>) {
    for (k, v) in map {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if let Some(rest) = path.strip_prefix(AUDIT_PATH) {
            if rest.is_empty() {
                if let Value::Object(inner) = v {
                    for (ik, iv) in inner {
                        out.insert(ik.clone(), iv.clone());
                    }
                }
                continue;
            }
            if let Some(field) = rest.strip_prefix('.') {
                out.insert(field.to_string(), v.clone());
                continue;
            }
        }
        // Only descend where an audit path can still begin.
        if AUDIT_PATH.starts_with(&path)
            && AUDIT_PATH.as_bytes().get(path.len()) == Some(&b'.')
            && let Value::Object(inner) = v
        {
            gather(inner, &path, out);
        }
    }
}

/// Why a record's audit fields could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("flowscribe.audit.{0} is missing")]
    Missing(&'static str),
    #[error("flowscribe.audit.{0} has the wrong type or value")]
    Invalid(&'static str),
}

/// Read a u64 field of an audit object (a JSON integer, or a decimal string:
/// some SIEMs store large integers as strings).
pub fn get_u64(obj: &Map<String, Value>, key: &'static str) -> Result<u64, FieldError> {
    match obj.get(key) {
        None => Err(FieldError::Missing(key)),
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 9_007_199_254_740_992.0)
                    // Integral and below 2^53: exact.
                    .map(|f| {
                        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                        let u = f as u64;
                        u
                    })
            })
            .ok_or(FieldError::Invalid(key)),
        Some(Value::String(s)) => s.parse().map_err(|_| FieldError::Invalid(key)),
        Some(_) => Err(FieldError::Invalid(key)),
    }
}

/// Read a string field of an audit object.
pub fn get_str<'a>(obj: &'a Map<String, Value>, key: &'static str) -> Result<&'a str, FieldError> {
    match obj.get(key) {
        None => Err(FieldError::Missing(key)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(FieldError::Invalid(key)),
    }
}

/// Read the chain id of an audit object.
pub fn get_chain(obj: &Map<String, Value>) -> Result<ChainId, FieldError> {
    parse_chain_hex(get_str(obj, "chain")?).ok_or(FieldError::Invalid("chain"))
}

/// A string from a canonical JSON value (`"…"`).
pub fn canonical_str(v: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    let inner = v.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    if inner.contains(&b'\\') {
        serde_json::from_slice::<String>(v).ok().map(Into::into)
    } else {
        std::str::from_utf8(inner).ok().map(Into::into)
    }
}

/// A u64 from a canonical JSON value: an integer, or a decimal string.
pub fn canonical_u64(v: &[u8]) -> Option<u64> {
    let text = v
        .strip_prefix(b"\"")
        .and_then(|s| s.strip_suffix(b"\""))
        .unwrap_or(v);
    // Plain digits (what the exporter writes) without the UTF-8 check and
    // `str::parse`; anything else (a sign, overflow, garbage) goes the
    // general way, so both give the same answer.
    if !text.is_empty() && text.len() <= 19 && text.iter().all(u8::is_ascii_digit) {
        return Some(text.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')));
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

impl AuditFields {
    /// Read the audit fields of a data record from a canonicalised line.
    pub fn from_canonical(c: &crate::canonical::Canonicalizer) -> Result<Self, FieldError> {
        let f = AuditFieldsRef::from_canonical(c)?;
        Ok(AuditFields {
            chain: f.chain,
            view: f.view.into_owned(),
            run: f.run,
            batch: f.batch,
            seq: f.seq,
            suite: f.suite,
        })
    }

    /// Read the audit fields of a data record from its audit object.
    pub fn from_object(obj: &Map<String, Value>) -> Result<Self, FieldError> {
        Ok(AuditFields {
            chain: get_chain(obj)?,
            view: get_str(obj, "view")?.to_string(),
            run: get_u64(obj, "run")?,
            batch: get_u64(obj, "batch")?,
            seq: get_u64(obj, "seq")?,
            suite: match obj.get("suite") {
                None => Suite::V1,
                Some(_) => {
                    Suite::from_name(get_str(obj, "suite")?).ok_or(FieldError::Invalid("suite"))?
                }
            },
        })
    }
}

/// [`AuditFields`] with the view borrowed from the canonicaliser: what the
/// verifier reads per record, without allocating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFieldsRef<'a> {
    pub chain: ChainId,
    pub view: std::borrow::Cow<'a, str>,
    pub run: u64,
    pub batch: u64,
    pub seq: u64,
    pub suite: Suite,
}

impl<'a> AuditFieldsRef<'a> {
    /// Read the audit fields of a data record from a canonicalised line.
    pub fn from_canonical(c: &'a crate::canonical::Canonicalizer) -> Result<Self, FieldError> {
        // The first field of a name counts, as with
        // `Canonicalizer::audit_field`.
        let found = c.known_audit_fields();
        let [chain, view, run, batch, seq, suite] = found;
        let field = |v: Option<&'a [u8]>, name: &'static str| v.ok_or(FieldError::Missing(name));
        let u = |v: Option<&'a [u8]>, name: &'static str| {
            field(v, name).and_then(|v| canonical_u64(v).ok_or(FieldError::Invalid(name)))
        };
        let chain = canonical_str(field(chain, "chain")?)
            .and_then(|s| parse_chain_hex(&s))
            .ok_or(FieldError::Invalid("chain"))?;
        let view = canonical_str(field(view, "view")?).ok_or(FieldError::Invalid("view"))?;
        Ok(AuditFieldsRef {
            chain,
            view,
            run: u(run, "run")?,
            batch: u(batch, "batch")?,
            seq: u(seq, "seq")?,
            suite: match suite {
                None => Suite::V1,
                Some(v) => canonical_str(v)
                    .and_then(|s| Suite::from_name(&s))
                    .ok_or(FieldError::Invalid("suite"))?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields() -> AuditFields {
        AuditFields {
            chain: [0xab; 16],
            view: "ecs".into(),
            run: 3,
            batch: 17,
            seq: 123_456,
            suite: Suite::V1,
        }
    }

    /// v1 records look as before v2 existed (no `suite`); v2 records name
    /// their suite, and every layout reads it back.
    #[test]
    fn the_suite_is_written_only_for_v2_and_read_back() {
        let v2 = AuditFields {
            suite: Suite::V2,
            ..fields()
        };
        let mut line = br#"{"a":1}"#.to_vec();
        assert!(v2.append_to_json_object(&mut line));
        assert_eq!(
            String::from_utf8(line.clone()).unwrap(),
            r#"{"a":1,"flowscribe.audit":{"chain":"abababababababababababababababab","view":"ecs","run":3,"batch":17,"seq":123456,"suite":"v2"}}"#
        );
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(
            AuditFields::from_object(&audit_object(&v).unwrap()),
            Ok(v2.clone())
        );
        let mut canon = crate::canonical::Canonicalizer::new();
        canon.canonicalize(&line).unwrap();
        assert_eq!(AuditFields::from_canonical(&canon), Ok(v2));
        let flat = json!({"flowscribe.audit.chain": "ab".repeat(16), "flowscribe.audit.view": "ecs", "flowscribe.audit.run": 3, "flowscribe.audit.batch": 17, "flowscribe.audit.seq": 123456, "flowscribe.audit.suite": "v9"});
        assert_eq!(
            AuditFields::from_object(&audit_object(&flat).unwrap()),
            Err(FieldError::Invalid("suite"))
        );
    }

    #[test]
    fn appended_fields_read_back_in_every_layout() {
        let mut line = br#"{"a":1}"#.to_vec();
        assert!(fields().append_to_json_object(&mut line));
        let text = String::from_utf8(line.clone()).unwrap();
        assert_eq!(
            text,
            r#"{"a":1,"flowscribe.audit":{"chain":"abababababababababababababababab","view":"ecs","run":3,"batch":17,"seq":123456}}"#
        );
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(
            AuditFields::from_object(&audit_object(&v).unwrap()),
            Ok(fields())
        );

        let nested = json!({"flowscribe": {"kind": "x", "audit": {"chain": "ab".repeat(16), "view": "ecs", "run": 3, "batch": 17, "seq": 123456}}});
        assert_eq!(
            AuditFields::from_object(&audit_object(&nested).unwrap()),
            Ok(fields())
        );
        let flat = json!({"flowscribe.audit.chain": "ab".repeat(16), "flowscribe.audit.view": "ecs", "flowscribe.audit.run": "3", "flowscribe.audit.batch": 17.0, "flowscribe.audit.seq": 123456});
        assert_eq!(
            AuditFields::from_object(&audit_object(&flat).unwrap()),
            Ok(fields())
        );
    }

    #[test]
    fn append_handles_empty_objects_and_refuses_non_objects() {
        let mut empty = b"{ }\n".to_vec();
        assert!(fields().append_to_json_object(&mut empty));
        assert!(serde_json::from_slice::<Value>(&empty).is_ok());
        let mut cef = b"CEF:0|flowscribe|x".to_vec();
        assert!(!fields().append_to_json_object(&mut cef));
        assert_eq!(cef, b"CEF:0|flowscribe|x");
    }

    /// The digit fast path answers what `str::parse` answers.
    #[test]
    fn canonical_u64_reads_what_str_parse_reads() {
        let cases = [
            "0",
            "7",
            "00012",
            "18446744073709551615",
            "18446744073709551616",
            "9999999999999999999",
            "99999999999999999999",
            "",
            "+5",
            "-1",
            "1.0",
            "1e3",
            "12a",
            " 1",
            "\"123\"",
            "\"\"",
            "\"+7\"",
            "\"18446744073709551615\"",
        ];
        for text in cases {
            let inner = text
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .unwrap_or(text);
            assert_eq!(
                canonical_u64(text.as_bytes()),
                inner.parse::<u64>().ok(),
                "{text}"
            );
        }
    }

    #[test]
    fn chain_ids_are_32_lowercase_hex_digits() {
        assert_eq!(parse_chain_hex(&"ab".repeat(16)), Some([0xab; 16]));
        assert_eq!(
            parse_chain_hex("000102030405060708090a0b0c0d0e0f"),
            Some([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15])
        );
        assert_eq!(chain_hex(&[0xf0; 16]), "f0".repeat(16));
        for bad in [
            "AB".repeat(16),
            "ab".repeat(15),
            "ab".repeat(17),
            "zz".repeat(16),
            format!("{}g", "a".repeat(31)),
        ] {
            assert_eq!(parse_chain_hex(&bad), None, "{bad}");
        }
    }

    #[test]
    fn bad_fields_say_which_and_why() {
        let no_audit = json!({"a": 1});
        assert_eq!(audit_object(&no_audit), None);
        let v = json!({"flowscribe": {"audit": {"chain": "zz", "view": "ecs", "run": 1, "batch": 1, "seq": 1}}});
        assert_eq!(
            AuditFields::from_object(&audit_object(&v).unwrap()),
            Err(FieldError::Invalid("chain"))
        );
        let v = json!({"flowscribe": {"audit": {"chain": "ab".repeat(16), "view": "ecs", "run": 1, "batch": 1}}});
        assert_eq!(
            AuditFields::from_object(&audit_object(&v).unwrap()),
            Err(FieldError::Missing("seq"))
        );
        let v = json!({"flowscribe": {"audit": {"chain": "ab".repeat(16), "view": "ecs", "run": 1, "batch": 1, "seq": -4}}});
        assert_eq!(
            AuditFields::from_object(&audit_object(&v).unwrap()),
            Err(FieldError::Invalid("seq"))
        );
    }
}
