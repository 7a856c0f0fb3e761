//! Holds an ECS JSON document against the pinned Elastic Common Schema
//! (`schemas/ecs/upstream/ecs_flat.yml`, ECS 9.4.0), so that golden fixtures
//! and tests can prove that every field flowscribe writes is an ECS field of
//! the right type, or sits in one of the two namespaces ECS leaves to us.
//!
//! A document passes when every leaf (nested objects flattened with dots)
//! is one of:
//! - an ECS field whose JSON type fits its ECS type: keyword-like and `ip`
//!   -> string (an `ip` must parse as an address), integer types -> integer
//!   within range, float types -> number, `boolean` -> bool, `date` -> RFC 3339
//!   string or integer epoch milliseconds, `geo_point` -> `{lat, lon}`,
//!   string or `[lon, lat]`, `object`/`flattened`/`nested` -> object (free
//!   form when ECS defines no sub-fields, else checked field by field);
//!   values of fields with `allowed_values` (`event.kind`, `event.category`,
//!   `event.type`, `event.outcome`, ...) must be among them;
//!   arrays only where ECS normalizes the field to an array, on keyword-like
//!   fields, and on `nested` fields;
//! - anything under `flowscribe.*`, our documented custom namespace;
//! - `labels.*` with string values (ECS maps labels as keywords);
//! - one of the Beats `add_kubernetes_metadata` fields listed in
//!   [`BEATS_KUBERNETES_FIELDS`] (`kubernetes.pod.name`, ...): not ECS, but
//!   what Elastic users already query, so the ECS schema writes them and the
//!   checker holds them to the types Beats maps them with.
//!
//! `null` is reported too: our schemas omit absent fields instead.
//!
//! The checker reports every problem with its path; it does not stop at the
//! first. It must stay a checker: no rewriting of documents, no IO (the
//! schema is compiled in and parsed once on first use).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::OnceLock;

use crate::json::describe;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::rfc3339::is_rfc3339_date_time;

/// The ECS release the embedded schema comes from.
pub const ECS_VERSION: &str = "9.4.0";

/// `generated/ecs/ecs_flat.yml` of elastic/ecs at tag v9.4.0.
const ECS_FLAT_YML: &str = include_str!("../../../schemas/ecs/upstream/ecs_flat.yml");

/// Our custom namespace: anything goes under it.
const CUSTOM_NAMESPACE: &str = "flowscribe";

/// The Beats `kubernetes.*` fields flowscribe writes, with their Beats
/// mapping types (Beats `add_kubernetes_metadata` exported fields).
/// `kubernetes.labels` is an object of de-dotted label keys.
pub const BEATS_KUBERNETES_FIELDS: &[(&str, &str)] = &[
    ("kubernetes.namespace", "keyword"),
    ("kubernetes.pod.name", "keyword"),
    ("kubernetes.pod.uid", "keyword"),
    ("kubernetes.pod.ip", "ip"),
    ("kubernetes.node.name", "keyword"),
    ("kubernetes.labels", "object"),
    ("kubernetes.deployment.name", "keyword"),
    ("kubernetes.replicaset.name", "keyword"),
    ("kubernetes.statefulset.name", "keyword"),
    ("kubernetes.daemonset.name", "keyword"),
    ("kubernetes.job.name", "keyword"),
    ("kubernetes.cronjob.name", "keyword"),
];

/// One thing wrong with a document, at a dotted path (`source.port`;
/// `event.type[1]` for an element of an array).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcsProblem {
    pub path: String,
    pub kind: EcsProblemKind,
}

/// What is wrong at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EcsProblemKind {
    /// Not an ECS field, and not under `flowscribe.*` or `labels.*`.
    UnknownField,
    /// The JSON value does not fit the field's ECS type.
    WrongType {
        ecs_type: String,
        expected: &'static str,
        found: String,
    },
    /// An array on a field that ECS does not normalize to an array.
    ArrayNotAllowed { ecs_type: String },
    /// A value outside the field's `allowed_values`.
    NotAllowedValue { value: String },
    /// A `labels.*` value that is not a string.
    LabelNotString { found: String },
    /// `null`: absent fields are left out, not written as null.
    Null,
}

impl fmt::Display for EcsProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "(document)"
        } else {
            &self.path
        };
        match &self.kind {
            EcsProblemKind::UnknownField => write!(f, "{path}: not an ECS {ECS_VERSION} field"),
            EcsProblemKind::WrongType {
                ecs_type,
                expected,
                found,
            } => write!(
                f,
                "{path}: ECS type {ecs_type} needs {expected}, found {found}"
            ),
            EcsProblemKind::ArrayNotAllowed { ecs_type } => {
                write!(f, "{path}: ECS field of type {ecs_type} is not an array")
            }
            EcsProblemKind::NotAllowedValue { value } => {
                write!(f, "{path}: {value:?} is not an allowed value")
            }
            EcsProblemKind::LabelNotString { found } => {
                write!(f, "{path}: labels are strings, found {found}")
            }
            EcsProblemKind::Null => write!(f, "{path}: null (leave absent fields out)"),
        }
    }
}

/// The embedded schema could not be read: a bug in the copied data or in
/// this module, caught by the tests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EcsSchemaError {
    #[error("ecs_flat.yml does not parse: {0}")]
    Parse(String),
    #[error("ECS field {field} has type {ecs_type}, which this checker does not know")]
    UnknownType { field: String, ecs_type: String },
}

/// How a field's ECS type is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// keyword, constant_keyword, wildcard, text, match_only_text.
    Keyword,
    Ip,
    Integer {
        min: i64,
        max: i64,
    },
    UnsignedLong,
    Float,
    Boolean,
    Date,
    GeoPoint,
    /// object, flattened, nested.
    Object {
        nested: bool,
    },
}

impl Kind {
    fn of(ecs_type: &str) -> Option<Kind> {
        Some(match ecs_type {
            "keyword" | "constant_keyword" | "wildcard" | "text" | "match_only_text" => {
                Kind::Keyword
            }
            "ip" => Kind::Ip,
            "long" => Kind::Integer {
                min: i64::MIN,
                max: i64::MAX,
            },
            "integer" => Kind::Integer {
                min: i32::MIN.into(),
                max: i32::MAX.into(),
            },
            "short" => Kind::Integer {
                min: i16::MIN.into(),
                max: i16::MAX.into(),
            },
            "byte" => Kind::Integer {
                min: i8::MIN.into(),
                max: i8::MAX.into(),
            },
            "unsigned_long" => Kind::UnsignedLong,
            "float" | "double" | "scaled_float" | "half_float" => Kind::Float,
            "boolean" => Kind::Boolean,
            "date" => Kind::Date,
            "geo_point" => Kind::GeoPoint,
            "object" | "flattened" => Kind::Object { nested: false },
            "nested" => Kind::Object { nested: true },
            _ => return None,
        })
    }
}

#[derive(Debug)]
struct EcsField {
    ecs_type: String,
    kind: Kind,
    /// ECS `normalize: [array]`.
    array: bool,
    allowed_values: Option<Vec<String>>,
    /// ECS defines fields below this one (`observer.ingress.interface.name`
    /// below `observer.ingress`): check its content field by field.
    has_subfields: bool,
}

/// The fields of one ECS release, keyed by dotted name.
#[derive(Debug)]
pub struct EcsSchema {
    fields: HashMap<String, EcsField>,
    /// Every proper dotted prefix of a field name (`source`, `source.geo`).
    prefixes: HashSet<String>,
}

/// The parts of an `ecs_flat.yml` entry the checker reads.
#[derive(Deserialize)]
struct RawField {
    #[serde(rename = "type")]
    ecs_type: String,
    #[serde(default)]
    normalize: Vec<String>,
    #[serde(default)]
    allowed_values: Option<Vec<RawAllowedValue>>,
}

#[derive(Deserialize)]
struct RawAllowedValue {
    name: String,
}

impl EcsSchema {
    /// The schema compiled into this crate (ECS [`ECS_VERSION`]), parsed on
    /// first use.
    pub fn embedded() -> Result<&'static EcsSchema, EcsSchemaError> {
        static SCHEMA: OnceLock<Result<EcsSchema, EcsSchemaError>> = OnceLock::new();
        SCHEMA
            .get_or_init(|| {
                EcsSchema::from_ecs_flat_yml(ECS_FLAT_YML).map(EcsSchema::with_beats_kubernetes)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// This schema plus [`BEATS_KUBERNETES_FIELDS`].
    pub fn with_beats_kubernetes(mut self) -> EcsSchema {
        for (name, ecs_type) in BEATS_KUBERNETES_FIELDS {
            let mut end = 0;
            while let Some(dot) = name[end..].find('.') {
                end += dot;
                self.prefixes.insert(name[..end].to_string());
                end += 1;
            }
            let kind = match *ecs_type {
                "ip" => Kind::Ip,
                "object" => Kind::Object { nested: false },
                _ => Kind::Keyword,
            };
            self.fields.insert(
                (*name).to_string(),
                EcsField {
                    ecs_type: (*ecs_type).to_string(),
                    kind,
                    array: false,
                    allowed_values: None,
                    has_subfields: false,
                },
            );
        }
        self
    }

    /// A schema from the text of an `ecs_flat.yml`.
    pub fn from_ecs_flat_yml(text: &str) -> Result<EcsSchema, EcsSchemaError> {
        let raw: HashMap<String, RawField> =
            serde_yaml::from_str(text).map_err(|e| EcsSchemaError::Parse(e.to_string()))?;
        let mut prefixes = HashSet::new();
        for name in raw.keys() {
            let mut end = 0;
            while let Some(dot) = name[end..].find('.') {
                end += dot;
                prefixes.insert(name[..end].to_string());
                end += 1;
            }
        }
        let mut fields = HashMap::with_capacity(raw.len());
        for (name, f) in raw {
            let kind = Kind::of(&f.ecs_type).ok_or_else(|| EcsSchemaError::UnknownType {
                field: name.clone(),
                ecs_type: f.ecs_type.clone(),
            })?;
            let field = EcsField {
                kind,
                array: f.normalize.iter().any(|n| n == "array"),
                allowed_values: f
                    .allowed_values
                    .map(|v| v.into_iter().map(|a| a.name).collect()),
                has_subfields: prefixes.contains(&name),
                ecs_type: f.ecs_type,
            };
            fields.insert(name, field);
        }
        Ok(EcsSchema { fields, prefixes })
    }

    /// The ECS type of a dotted field name (`"long"` for `source.port`).
    pub fn field_type(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(|f| f.ecs_type.as_str())
    }

    /// Every problem of `doc`, object keys in sorted order. Empty means it conforms.
    pub fn check(&self, doc: &Value) -> Vec<EcsProblem> {
        let mut out = Vec::new();
        match doc {
            Value::Object(map) => self.walk_object("", map, &mut out),
            other => out.push(EcsProblem {
                path: String::new(),
                kind: EcsProblemKind::WrongType {
                    ecs_type: "document".into(),
                    expected: "an object",
                    found: describe(other),
                },
            }),
        }
        out
    }

    fn walk_object(&self, prefix: &str, map: &Map<String, Value>, out: &mut Vec<EcsProblem>) {
        for (key, value) in map {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            self.walk(path, value, out);
        }
    }

    fn walk(&self, path: String, value: &Value, out: &mut Vec<EcsProblem>) {
        if path == CUSTOM_NAMESPACE || path.starts_with("flowscribe.") {
            return;
        }
        if path == "labels" {
            match value {
                Value::Object(map) => {
                    for (key, label) in map {
                        check_label(format!("labels.{key}"), label, out);
                    }
                }
                other => out.push(EcsProblem {
                    path,
                    kind: EcsProblemKind::WrongType {
                        ecs_type: "object".into(),
                        expected: "an object of string values",
                        found: describe(other),
                    },
                }),
            }
            return;
        }
        if path.starts_with("labels.") {
            check_label(path, value, out);
            return;
        }
        if let Some(field) = self.fields.get(&path) {
            self.check_field(path, field, value, out);
            return;
        }
        match value {
            Value::Object(map) if self.prefixes.contains(&path) => {
                self.walk_object(&path, map, out);
            }
            Value::Null if self.prefixes.contains(&path) => out.push(EcsProblem {
                path,
                kind: EcsProblemKind::Null,
            }),
            Value::Array(_) | Value::Bool(_) | Value::Number(_) | Value::String(_)
                if self.prefixes.contains(&path) =>
            {
                out.push(EcsProblem {
                    path,
                    kind: EcsProblemKind::WrongType {
                        ecs_type: "object".into(),
                        expected: "an object",
                        found: describe(value),
                    },
                })
            }
            _ => out.push(EcsProblem {
                path,
                kind: EcsProblemKind::UnknownField,
            }),
        }
    }

    fn check_field(
        &self,
        path: String,
        field: &EcsField,
        value: &Value,
        out: &mut Vec<EcsProblem>,
    ) {
        match (value, field.kind) {
            (Value::Null, _) => out.push(EcsProblem {
                path,
                kind: EcsProblemKind::Null,
            }),
            // A geo_point may be written as `[lon, lat]`.
            (Value::Array(items), Kind::GeoPoint) => {
                if !(items.len() == 2 && items.iter().all(Value::is_number)) {
                    out.push(wrong_type(path, field, "[lon, lat] numbers", value));
                }
            }
            (Value::Array(items), kind) => {
                let nested = matches!(kind, Kind::Object { nested: true });
                let keyword = kind == Kind::Keyword;
                if !(field.array || nested || keyword) {
                    out.push(EcsProblem {
                        path,
                        kind: EcsProblemKind::ArrayNotAllowed {
                            ecs_type: field.ecs_type.clone(),
                        },
                    });
                    return;
                }
                for (i, item) in items.iter().enumerate() {
                    let item_path = format!("{path}[{i}]");
                    match item {
                        Value::Array(_) => {
                            out.push(wrong_type(item_path, field, "a single value", item))
                        }
                        Value::Object(map) if field.has_subfields => {
                            // Sub-field paths leave the index out, as ECS
                            // names them (`dns.answers.name`); the index goes
                            // on problems of the element itself only.
                            let mut inner = Vec::new();
                            self.walk_object(&path, map, &mut inner);
                            out.extend(inner.into_iter().map(|mut p| {
                                p.path = p.path.replacen(&path, &item_path, 1);
                                p
                            }));
                        }
                        _ => self.check_scalar(item_path, field, item, out),
                    }
                }
            }
            (Value::Object(map), Kind::Object { .. }) if field.has_subfields => {
                self.walk_object(&path, map, out);
            }
            _ => self.check_scalar(path, field, value, out),
        }
    }

    /// One non-array value of a field.
    fn check_scalar(
        &self,
        path: String,
        field: &EcsField,
        value: &Value,
        out: &mut Vec<EcsProblem>,
    ) {
        let ok = match field.kind {
            Kind::Keyword => match value {
                Value::String(s) => {
                    if let Some(allowed) = &field.allowed_values
                        && !allowed.iter().any(|a| a == s)
                    {
                        out.push(EcsProblem {
                            path,
                            kind: EcsProblemKind::NotAllowedValue { value: s.clone() },
                        });
                        return;
                    }
                    true
                }
                _ => false,
            },
            Kind::Ip => value.as_str().is_some_and(|s| s.parse::<IpAddr>().is_ok()),
            Kind::Integer { min, max } => value.as_i64().is_some_and(|n| (min..=max).contains(&n)),
            Kind::UnsignedLong => value.is_u64(),
            Kind::Float => value.is_number(),
            Kind::Boolean => value.is_boolean(),
            Kind::Date => match value {
                Value::String(s) => is_rfc3339_date_time(s),
                Value::Number(n) => n.is_i64(),
                _ => false,
            },
            Kind::GeoPoint => match value {
                Value::String(_) => true,
                Value::Object(map) => {
                    map.len() == 2
                        && map.get("lat").is_some_and(Value::is_number)
                        && map.get("lon").is_some_and(Value::is_number)
                }
                _ => false,
            },
            Kind::Object { .. } => value.is_object() && !field.has_subfields,
        };
        if !ok {
            out.push(wrong_type(path, field, expected(field.kind), value));
        }
    }
}

/// Checks `doc` against the embedded ECS [`ECS_VERSION`] schema.
pub fn check_ecs_document(doc: &Value) -> Result<Vec<EcsProblem>, EcsSchemaError> {
    Ok(EcsSchema::embedded()?.check(doc))
}

fn check_label(path: String, value: &Value, out: &mut Vec<EcsProblem>) {
    if !value.is_string() {
        out.push(EcsProblem {
            path,
            kind: EcsProblemKind::LabelNotString {
                found: describe(value),
            },
        });
    }
}

fn wrong_type(path: String, field: &EcsField, expected: &'static str, found: &Value) -> EcsProblem {
    EcsProblem {
        path,
        kind: EcsProblemKind::WrongType {
            ecs_type: field.ecs_type.clone(),
            expected,
            found: describe(found),
        },
    }
}

fn expected(kind: Kind) -> &'static str {
    match kind {
        Kind::Keyword => "a string",
        Kind::Ip => "an IP address string",
        Kind::Integer { .. } => "an integer in range",
        Kind::UnsignedLong => "a non-negative integer",
        Kind::Float => "a number",
        Kind::Boolean => "a boolean",
        Kind::Date => "an RFC 3339 string or epoch milliseconds",
        Kind::GeoPoint => "{lat, lon}, a string or [lon, lat]",
        Kind::Object { .. } => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> &'static EcsSchema {
        EcsSchema::embedded().unwrap()
    }

    /// A denied pod-to-pod flow as the ECS schema will write it.
    fn valid_flow() -> Value {
        json!({
            "@timestamp": "2026-11-21T04:30:00.123Z",
            "ecs": {"version": ECS_VERSION},
            "data_stream": {"type": "logs", "dataset": "flowscribe.flow", "namespace": "default"},
            "event": {
                "kind": "event", "category": ["network"], "type": ["connection", "denied"],
                "action": "network-policy-deny", "outcome": "failure",
                "start": "2026-11-21T04:29:59.900Z", "end": 1763699400100u64,
                "duration": 200_000_000, "id": "fdd104dd15966600cec98f6b7d3692d8",
                "sequence": 42
            },
            "source": {"ip": "10.0.1.5", "port": 51320, "bytes": 180, "packets": 3,
                       "geo": {"location": {"lat": 52.5, "lon": 13.4}}},
            "destination": {"ip": "fd00::7", "port": 5432, "bytes": 0, "packets": 0},
            "network": {"transport": "tcp", "type": "ipv4", "iana_number": "6",
                        "direction": "egress", "bytes": 180, "packets": 3,
                        "community_id": "1:LQU9qZlK+B5F3KDmev6m5PMibrg="},
            "observer": {"ingress": {"interface": {"name": "eth0"}}, "hostname": "node-1"},
            "rule": {"ruleset": "payments/db-allow-app", "name": "default-deny", "author": ["x"]},
            "orchestrator": {"type": "kubernetes", "resource": {"ip": ["10.0.1.5"]}},
            "container": {"labels": {"app": "web", "tier": {"any": "thing"}}},
            "related": {"ip": ["10.0.1.5", "fd00::7"]},
            "labels": {"policy_mode": "enforced"},
            "host.name": "node-1",
            "flowscribe": {"verdict": {"source": "evaluated", "mismatch": false}, "n": [1, 2]}
        })
    }

    #[test]
    fn embedded_schema_is_ecs_9_4_0() {
        let s = schema();
        assert!(s.fields.len() > 2500, "{} fields", s.fields.len());
        assert_eq!(s.field_type("source.port"), Some("long"));
        assert_eq!(s.field_type("network.iana_number"), Some("keyword"));
        assert_eq!(s.field_type("no.such.field"), None);
    }

    #[test]
    fn valid_flow_passes() {
        let problems = check_ecs_document(&valid_flow()).unwrap();
        assert!(problems.is_empty(), "{problems:#?}");
    }

    fn problems_of(doc: Value) -> Vec<(String, EcsProblemKind)> {
        schema()
            .check(&doc)
            .into_iter()
            .map(|p| (p.path, p.kind))
            .collect()
    }

    #[test]
    fn each_problem_at_its_path() {
        let wrong =
            |ecs_type: &str, expected: &'static str, found: &str| EcsProblemKind::WrongType {
                ecs_type: ecs_type.into(),
                expected,
                found: found.into(),
            };
        let cases: Vec<(Value, Vec<(&str, EcsProblemKind)>)> = vec![
            (
                json!({"kubernetes": {"pod": {"name": "web", "hostname": "web"}}}),
                vec![("kubernetes.pod.hostname", EcsProblemKind::UnknownField)],
            ),
            (
                json!({"source": {"ip": "10.0.0.1", "pod": "web"}}),
                vec![("source.pod", EcsProblemKind::UnknownField)],
            ),
            (
                json!({"source": {"port": "80"}}),
                vec![(
                    "source.port",
                    wrong("long", "an integer in range", "string \"80\""),
                )],
            ),
            (
                json!({"source": {"ip": "10.0.0.300"}}),
                vec![(
                    "source.ip",
                    wrong("ip", "an IP address string", "string \"10.0.0.300\""),
                )],
            ),
            (
                json!({"network": {"iana_number": 6}}),
                vec![(
                    "network.iana_number",
                    wrong("keyword", "a string", "number 6"),
                )],
            ),
            (
                json!({"event": {"start": "2026-11-21 04:30:00"}}),
                vec![(
                    "event.start",
                    wrong(
                        "date",
                        "an RFC 3339 string or epoch milliseconds",
                        "string \"2026-11-21 04:30:00\"",
                    ),
                )],
            ),
            (
                json!({"event": {"duration": 1.5}}),
                vec![(
                    "event.duration",
                    wrong("long", "an integer in range", "number 1.5"),
                )],
            ),
            (
                json!({"labels": {"env": "prod", "replicas": 3, "deep": {"a": "b"}}}),
                vec![
                    (
                        "labels.deep",
                        EcsProblemKind::LabelNotString {
                            found: "an object".into(),
                        },
                    ),
                    (
                        "labels.replicas",
                        EcsProblemKind::LabelNotString {
                            found: "number 3".into(),
                        },
                    ),
                ],
            ),
            (
                json!({"labels.flat": true}),
                vec![(
                    "labels.flat",
                    EcsProblemKind::LabelNotString {
                        found: "boolean true".into(),
                    },
                )],
            ),
            (
                json!({"event": {"kind": "flow", "type": ["connection", "dropped"]}}),
                vec![
                    (
                        "event.kind",
                        EcsProblemKind::NotAllowedValue {
                            value: "flow".into(),
                        },
                    ),
                    (
                        "event.type[1]",
                        EcsProblemKind::NotAllowedValue {
                            value: "dropped".into(),
                        },
                    ),
                ],
            ),
            (
                json!({"source": {"port": [80, 443]}}),
                vec![(
                    "source.port",
                    EcsProblemKind::ArrayNotAllowed {
                        ecs_type: "long".into(),
                    },
                )],
            ),
            (
                json!({"source": {"bytes": null}}),
                vec![("source.bytes", EcsProblemKind::Null)],
            ),
            (
                json!({"source": "10.0.0.1"}),
                vec![(
                    "source",
                    wrong("object", "an object", "string \"10.0.0.1\""),
                )],
            ),
            (
                json!({"observer": {"ingress": {"interface": {"nick": "e"}}}}),
                vec![(
                    "observer.ingress.interface.nick",
                    EcsProblemKind::UnknownField,
                )],
            ),
            (
                json!({"dns": {"answers": [{"name": "a.example", "ttl": "60"}]}}),
                vec![(
                    "dns.answers[0].ttl",
                    wrong("long", "an integer in range", "string \"60\""),
                )],
            ),
            (
                json!({"related": {"ip": ["10.0.0.1", 7]}}),
                vec![(
                    "related.ip[1]",
                    wrong("ip", "an IP address string", "number 7"),
                )],
            ),
        ];
        for (doc, want) in cases {
            let want: Vec<(String, EcsProblemKind)> =
                want.into_iter().map(|(p, k)| (p.to_string(), k)).collect();
            assert_eq!(problems_of(doc.clone()), want, "{doc}");
        }
    }

    #[test]
    fn problems_read_well() {
        let p = EcsProblem {
            path: "source.port".into(),
            kind: EcsProblemKind::WrongType {
                ecs_type: "long".into(),
                expected: "an integer in range",
                found: "string \"80\"".into(),
            },
        };
        assert_eq!(
            p.to_string(),
            "source.port: ECS type long needs an integer in range, found string \"80\""
        );
    }

    #[test]
    fn document_must_be_an_object() {
        assert_eq!(
            problems_of(json!([1])),
            vec![(
                String::new(),
                EcsProblemKind::WrongType {
                    ecs_type: "document".into(),
                    expected: "an object",
                    found: "an array of 1".into()
                }
            )]
        );
    }
}
