//! Kubernetes label selectors (`matchLabels` + `matchExpressions`), parsed
//! once into a compiled form and matched against a label lookup.
//!
//! Used by NetworkPolicy `podSelector` and `namespaceSelector` (and later by
//! AdminNetworkPolicy). Parsing validates what the API server validates
//! (operators, values, label key and value syntax); matching is pure and
//! allocation-free. Calico's selector language is a different grammar and
//! does not belong here.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::PolicyError;
use crate::json::{Ctx, join, type_of};

/// One requirement of a selector; all must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// `matchLabels` entry: the key is present with exactly this value.
    Equals {
        key: String,
        value: String,
    },
    /// The key is present with one of the values.
    In {
        key: String,
        values: Box<[String]>,
    },
    /// The key is absent, or present with none of the values.
    NotIn {
        key: String,
        values: Box<[String]>,
    },
    Exists {
        key: String,
    },
    DoesNotExist {
        key: String,
    },
}

/// A compiled label selector. The empty selector selects everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Box<[Requirement]>,
}

impl LabelSelector {
    /// The empty selector, `{}`: selects every object.
    pub fn everything() -> Self {
        LabelSelector::default()
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether labels, given as a lookup, satisfy every requirement. A lookup
    /// rather than a map so that callers can add implied labels (a
    /// namespace's `kubernetes.io/metadata.name`) without copying.
    pub fn matches_with<'a>(&self, label: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::Equals { key, value } => label(key) == Some(value.as_str()),
            Requirement::In { key, values } => {
                label(key).is_some_and(|v| values.iter().any(|x| x == v))
            }
            Requirement::NotIn { key, values } => {
                label(key).is_none_or(|v| values.iter().all(|x| x != v))
            }
            Requirement::Exists { key } => label(key).is_some(),
            Requirement::DoesNotExist { key } => label(key).is_none(),
        })
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_with(|k| labels.get(k).map(String::as_str))
    }
}

/// Parse a `metav1.LabelSelector` at `path`.
pub(crate) fn parse_selector(
    ctx: &Ctx,
    v: &Value,
    path: &str,
) -> Result<LabelSelector, PolicyError> {
    let map = ctx.object(v, path, &["matchLabels", "matchExpressions"])?;
    let mut requirements = Vec::new();
    match map.get("matchLabels") {
        None | Some(Value::Null) => {}
        Some(Value::Object(labels)) => {
            for (key, value) in labels {
                // The field path is only built for an error: this runs for
                // every label of every selector of every policy.
                let field = || join(&join(path, "matchLabels"), key);
                let Some(value) = value.as_str() else {
                    return Err(ctx.err(
                        &field(),
                        format!("expected a string, found {}", type_of(value)),
                    ));
                };
                if !is_key(key) {
                    return Err(ctx.err(&field(), format!("{key:?} is not a valid label key")));
                }
                if !is_value(value) {
                    return Err(ctx.err(&field(), format!("{value:?} is not a valid label value")));
                }
                requirements.push(Requirement::Equals {
                    key: key.clone(),
                    value: value.to_string(),
                });
            }
        }
        Some(other) => {
            return Err(ctx.err(
                &join(path, "matchLabels"),
                format!("expected an object, found {}", type_of(other)),
            ));
        }
    }
    for (i, e) in ctx
        .opt_list(map, "matchExpressions", path)?
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        // Field paths are built only for errors (this runs for every
        // expression of every selector of every policy).
        let epath = || format!("{}[{i}]", join(path, "matchExpressions"));
        let field = |f: &str| join(&epath(), f);
        let Value::Object(expr) = e else {
            return Err(ctx.err(
                &epath(),
                format!("expected an object, found {}", type_of(e)),
            ));
        };
        if let Some(unknown) = expr
            .keys()
            .find(|k| !["key", "operator", "values"].contains(&k.as_str()))
        {
            return Err(ctx.err(
                &field(unknown),
                "unknown field (known: key, operator, values)",
            ));
        }
        let text = |k: &str| -> Result<Option<&str>, PolicyError> {
            match expr.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(other) => Err(ctx.err(
                    &field(k),
                    format!("expected a string, found {}", type_of(other)),
                )),
            }
        };
        let key = text("key")?.ok_or_else(|| ctx.err(&field("key"), "missing"))?;
        if !is_key(key) {
            return Err(ctx.err(&field("key"), format!("{key:?} is not a valid label key")));
        }
        let operator = text("operator")?.ok_or_else(|| ctx.err(&field("operator"), "missing"))?;
        let mut values = Vec::new();
        match expr.get("values") {
            None | Some(Value::Null) => {}
            Some(Value::Array(list)) => {
                for (j, x) in list.iter().enumerate() {
                    let vpath = || format!("{}[{j}]", field("values"));
                    let Some(x) = x.as_str() else {
                        return Err(
                            ctx.err(&vpath(), format!("expected a string, found {}", type_of(x)))
                        );
                    };
                    if !is_value(x) {
                        return Err(ctx.err(&vpath(), format!("{x:?} is not a valid label value")));
                    }
                    values.push(x.to_string());
                }
            }
            Some(other) => {
                return Err(ctx.err(
                    &field("values"),
                    format!("expected a list, found {}", type_of(other)),
                ));
            }
        }
        let key = key.to_string();
        let requirement = match operator {
            "In" | "NotIn" if values.is_empty() => {
                return Err(ctx.err(
                    &field("values"),
                    format!("must be non-empty when operator is {operator}"),
                ));
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(ctx.err(
                    &field("values"),
                    format!("must be empty when operator is {operator}"),
                ));
            }
            "In" => Requirement::In {
                key,
                values: values.into(),
            },
            "NotIn" => Requirement::NotIn {
                key,
                values: values.into(),
            },
            "Exists" => Requirement::Exists { key },
            "DoesNotExist" => Requirement::DoesNotExist { key },
            other => {
                return Err(ctx.err(
                    &field("operator"),
                    format!("{other:?} is not a valid operator (In, NotIn, Exists, DoesNotExist)"),
                ));
            }
        };
        requirements.push(requirement);
    }
    Ok(LabelSelector {
        requirements: requirements.into(),
    })
}

/// A label name segment: at most 63 characters, alphanumeric at both ends,
/// `-`, `_` and `.` inside. Empty is allowed for values only.
fn is_name_segment(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A DNS-1123 subdomain, the optional prefix of a label key.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|part| {
            let b = part.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

fn is_key(key: &str) -> bool {
    match key.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_name_segment(name),
        None => is_name_segment(key),
    }
}

fn is_value(value: &str) -> bool {
    value.is_empty() || is_name_segment(value)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ctx() -> Ctx<'static> {
        Ctx {
            kind: "NetworkPolicy",
            namespace: Some("x"),
            name: Some("p"),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn matching_table() {
        let web = labels(&[("app", "web"), ("tier", "front")]);
        let db = labels(&[("app", "db")]);
        let none = labels(&[]);
        // (selector, matches web, matches db, matches no labels)
        let cases = [
            (json!({}), true, true, true),
            (json!({"matchLabels": {"app": "web"}}), true, false, false),
            (
                json!({"matchLabels": {"app": "web", "tier": "front"}}),
                true,
                false,
                false,
            ),
            (
                json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "db"]}]}),
                true,
                true,
                false,
            ),
            (
                json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}),
                false,
                true,
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}),
                true,
                false,
                false,
            ),
            (
                json!({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist", "values": []}]}),
                false,
                true,
                true,
            ),
            (
                json!({"matchLabels": {"app": "web"},
                       "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["front"]}]}),
                false,
                false,
                false,
            ),
        ];
        for (i, (v, w, d, n)) in cases.into_iter().enumerate() {
            let s = parse_selector(&ctx(), &v, "spec.podSelector").expect("valid");
            assert_eq!(
                (s.matches(&web), s.matches(&db), s.matches(&none)),
                (w, d, n),
                "case {i}: {v}"
            );
        }
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                json!({"matchExpressions": [{"key": "app", "operator": "Equals", "values": ["a"]}]}),
                "spec.podSelector.matchExpressions[0].operator",
            ),
            (
                json!({"matchExpressions": [{"key": "app", "operator": "In"}]}),
                "spec.podSelector.matchExpressions[0].values",
            ),
            (
                json!({"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["x"]}]}),
                "spec.podSelector.matchExpressions[0].values",
            ),
            (
                json!({"matchExpressions": [{"operator": "Exists"}]}),
                "spec.podSelector.matchExpressions[0].key",
            ),
            (
                json!({"matchLabels": {"app": 3}}),
                "spec.podSelector.matchLabels.app",
            ),
            (
                json!({"matchLabels": {"-bad": "x"}}),
                "spec.podSelector.matchLabels.-bad",
            ),
            (
                json!({"matchLabels": {"app": "no spaces"}}),
                "spec.podSelector.matchLabels.app",
            ),
            (json!({"matchLabel": {}}), "spec.podSelector.matchLabel"),
            (json!(["app"]), "spec.podSelector"),
        ];
        for (v, field) in cases {
            let e = parse_selector(&ctx(), &v, "spec.podSelector").expect_err("invalid");
            assert_eq!(e.field, field, "{v}: {e}");
        }
    }

    #[test]
    fn prefixed_keys_are_valid() {
        let v = json!({"matchLabels": {"kubernetes.io/metadata.name": "x"}});
        let s = parse_selector(&ctx(), &v, "p").expect("valid");
        assert!(s.matches(&labels(&[("kubernetes.io/metadata.name", "x")])));
    }
}
