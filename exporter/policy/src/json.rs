//! Lenient reading of untyped Kubernetes JSON for policy objects.
//!
//! Policies arrive as `serde_json::Value` (from a manifests directory or a
//! watch), as in `flowscribe-enrich`'s `objects` module: one bad field marks
//! one policy invalid with an error naming the field path, and never fails a
//! whole list. Helpers here treat `null` as absent, as the API server does.

use serde_json::{Map, Value};

use crate::PolicyError;

/// The policy being read, for error messages.
pub(crate) struct Ctx<'a> {
    pub(crate) kind: &'a str,
    /// `None` for a cluster-scoped object.
    pub(crate) namespace: Option<&'a str>,
    /// `None` when the name is missing.
    pub(crate) name: Option<&'a str>,
}

impl Ctx<'_> {
    /// `namespace/name`, `name` for cluster-scoped objects, or `?` when
    /// the name is missing; built only for an error.
    pub(crate) fn display_name(&self) -> String {
        match (self.namespace, self.name) {
            (_, None) => "?".to_string(),
            (None, Some(n)) => n.to_string(),
            (Some(ns), Some(n)) => format!("{ns}/{n}"),
        }
    }

    pub(crate) fn err(&self, field: &str, problem: impl Into<String>) -> PolicyError {
        PolicyError {
            kind: self.kind.to_string(),
            name: self.display_name(),
            field: field.to_string(),
            problem: problem.into(),
        }
    }

    /// The object at `path`, after checking it has no field outside `known`:
    /// an unknown field may change meaning (a newer API version), so it is
    /// better reported than ignored.
    pub(crate) fn object<'v>(
        &self,
        v: &'v Value,
        path: &str,
        known: &[&str],
    ) -> Result<&'v Map<String, Value>, PolicyError> {
        let Value::Object(map) = v else {
            return Err(self.err(path, format!("expected an object, found {}", type_of(v))));
        };
        if let Some(unknown) = map.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(self.err(
                &join(path, unknown),
                format!("unknown field (known: {})", known.join(", ")),
            ));
        }
        Ok(map)
    }

    /// An optional list; absent and `null` read as `None`.
    pub(crate) fn opt_list<'v>(
        &self,
        map: &'v Map<String, Value>,
        key: &str,
        path: &str,
    ) -> Result<Option<&'v [Value]>, PolicyError> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(other) => Err(self.err(
                &join(path, key),
                format!("expected a list, found {}", type_of(other)),
            )),
        }
    }

    /// An optional string; absent and `null` read as `None`.
    pub(crate) fn opt_str<'v>(
        &self,
        map: &'v Map<String, Value>,
        key: &str,
        path: &str,
    ) -> Result<Option<&'v str>, PolicyError> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.err(
                &join(path, key),
                format!("expected a string, found {}", type_of(other)),
            )),
        }
    }

    pub(crate) fn str<'v>(&self, v: &'v Value, path: &str) -> Result<&'v str, PolicyError> {
        v.as_str()
            .ok_or_else(|| self.err(path, format!("expected a string, found {}", type_of(v))))
    }

    /// `spec.<key>` as (governs ingress, governs egress): the policy types
    /// it lists (`Ingress`, `Egress`), or `None` when the list is absent or
    /// empty, so the caller applies its kind's defaulting.
    pub(crate) fn policy_types(
        &self,
        spec: &Map<String, Value>,
        key: &str,
    ) -> Result<Option<(bool, bool)>, PolicyError> {
        let types = self.opt_list(spec, key, "spec")?.unwrap_or_default();
        if types.is_empty() {
            return Ok(None);
        }
        let (mut ingress, mut egress) = (false, false);
        for (i, t) in types.iter().enumerate() {
            let path = indexed("spec", key, i);
            match self.str(t, &path)? {
                "Ingress" => ingress = true,
                "Egress" => egress = true,
                other => {
                    return Err(self.err(
                        &path,
                        format!("{other:?} is not a policy type (Ingress, Egress)"),
                    ));
                }
            }
        }
        Ok(Some((ingress, egress)))
    }
}

/// `base.key[i]` (or `key[i]` at the top), without the formatting
/// machinery: paths are built for every rule, peer and port of every
/// policy, and `format!` costs about ten times this.
pub(crate) fn indexed(base: &str, key: &str, i: usize) -> String {
    let mut out = String::with_capacity(base.len() + key.len() + 8);
    if !base.is_empty() {
        out.push_str(base);
        if !key.is_empty() {
            out.push('.');
        }
    }
    out.push_str(key);
    out.push('[');
    let mut digits = [0u8; 20];
    let mut n = i;
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for d in digits[..len].iter().rev() {
        out.push(char::from(*d));
    }
    out.push(']');
    out
}

/// `path.key`, or `key` at the top.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        let mut out = String::with_capacity(path.len() + 1 + key.len());
        out.push_str(path);
        out.push('.');
        out.push_str(key);
        out
    }
}

/// A value that is present and not `null`.
pub(crate) fn present<'v>(map: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    map.get(key).filter(|v| !v.is_null())
}

pub(crate) fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(indexed("spec", "ingress", 0), "spec.ingress[0]");
        assert_eq!(
            indexed("spec.ingress[3]", "from", 120),
            "spec.ingress[3].from[120]"
        );
        assert_eq!(indexed("", "items", 7), "items[7]");
        assert_eq!(indexed("a.b", "", 42), "a.b[42]");
        assert_eq!(join("", "spec"), "spec");
        assert_eq!(join("spec", "podSelector"), "spec.podSelector");
    }
}
