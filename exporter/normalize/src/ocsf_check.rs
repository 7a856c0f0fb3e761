//! Holds an OCSF JSON event against the pinned OCSF 1.8.0 schema for class
//! 4001 Network Activity (`schemas/ocsf/upstream/`), so that golden fixtures
//! and tests can prove that what the OCSF schema writes is valid OCSF.
//!
//! Checked, recursively through every object attribute:
//! - required attributes are present (profile attributes only when their
//!   profile is listed in `metadata.profiles`);
//! - no unknown attributes (profile attributes are known whether or not the
//!   profile is listed);
//! - JSON types: `string_t` and its string subtypes -> string (`ip_t` must
//!   parse as an address, `datetime_t` must be RFC 3339), `integer_t` and
//!   `port_t` -> integer within range, `long_t` and `timestamp_t` (epoch
//!   milliseconds) -> integer, `float_t` -> number, `boolean_t` -> bool,
//!   `json_t` -> anything, `object` -> any object, an object type -> that
//!   object; `is_array` attributes must be arrays and others must not;
//! - integer enums (`activity_id`, `severity_id`, `action_id`,
//!   `disposition_id`, `status_id`, `type_id`, ...): the value must be one of
//!   the enum. The resolved files list only the class's or object's own
//!   values, so the dictionary's values (`0 Unknown`, `99 Other`) are added,
//!   as the OCSF schema server merges them, and `observable.type_id` gets the
//!   values the server assembles from the whole schema;
//! - `at_least_one` / `just_one` constraints of the class and its objects;
//! - `type_uid` = `class_uid` * 100 + `activity_id`.
//!
//! Not checked: string enums (OCSF lists them as suggestions, e.g.
//! `http_method`), regex-only string types (`mac_t`, `uuid_t`, `email_t`),
//! sibling captions (`activity_name` matching `activity_id`), deprecation.
//!
//! It must stay a checker: no rewriting of events, no IO (the schema is
//! compiled in and parsed once on first use).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::sync::OnceLock;

use crate::json::describe;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::rfc3339::is_rfc3339_date_time;

/// The OCSF release the embedded schema comes from.
pub const OCSF_VERSION: &str = "1.8.0";
/// Network Activity.
pub const NETWORK_ACTIVITY_CLASS_UID: i64 = 4001;

const CLASS_JSON: &str =
    include_str!("../../../schemas/ocsf/upstream/network_activity.resolved.json");
const OBJECTS_JSON: &str = include_str!("../../../schemas/ocsf/upstream/objects.resolved.json");
const DICTIONARY_JSON: &str = include_str!("../../../schemas/ocsf/upstream/dictionary.json");
/// The `network` parent class, for the class constraints the resolved file
/// leaves out.
const NETWORK_JSON: &str = include_str!("../../../schemas/ocsf/upstream/network.json");
const VERSION_JSON: &str = include_str!("../../../schemas/ocsf/upstream/version.json");
/// The enum of `observable.type_id`, which the schema server assembles from
/// `observable` numbers all over the schema (derived by
/// `schemas/ocsf/tools/derive_observable_type_ids.py`).
const OBSERVABLE_TYPE_IDS_JSON: &str =
    include_str!("../../../schemas/ocsf/upstream/observable_type_ids.json");

/// One thing wrong with an event, at a dotted path (`src_endpoint.port`;
/// `observables[0].type_id` inside arrays; empty for the event itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcsfProblem {
    pub path: String,
    pub kind: OcsfProblemKind,
}

/// What is wrong at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OcsfProblemKind {
    /// A required attribute is absent.
    MissingRequired,
    /// The class or object has no attribute of this name.
    UnknownAttribute,
    /// The JSON value does not fit the attribute's OCSF type.
    WrongType {
        ocsf_type: String,
        expected: &'static str,
        found: String,
    },
    /// An integer enum attribute with a value outside its enum.
    NotInEnum { value: i64 },
    /// None of these attributes is present, and one must be.
    AtLeastOneOf { attributes: Vec<String> },
    /// Exactly one of these attributes must be present; `present` are.
    JustOneOf {
        attributes: Vec<String>,
        present: usize,
    },
    /// `type_uid` is not `class_uid * 100 + activity_id`.
    TypeUidMismatch { expected: i64, found: i64 },
    /// `null`: absent attributes are left out, not written as null.
    Null,
}

impl fmt::Display for OcsfProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "(event)"
        } else {
            &self.path
        };
        match &self.kind {
            OcsfProblemKind::MissingRequired => write!(f, "{path}: required attribute missing"),
            OcsfProblemKind::UnknownAttribute => {
                write!(f, "{path}: not an OCSF {OCSF_VERSION} attribute here")
            }
            OcsfProblemKind::WrongType {
                ocsf_type,
                expected,
                found,
            } => write!(
                f,
                "{path}: OCSF type {ocsf_type} needs {expected}, found {found}"
            ),
            OcsfProblemKind::NotInEnum { value } => write!(f, "{path}: {value} is not in the enum"),
            OcsfProblemKind::AtLeastOneOf { attributes } => {
                write!(f, "{path}: needs at least one of {}", attributes.join(", "))
            }
            OcsfProblemKind::JustOneOf {
                attributes,
                present,
            } => write!(
                f,
                "{path}: needs exactly one of {}, has {present}",
                attributes.join(", ")
            ),
            OcsfProblemKind::TypeUidMismatch { expected, found } => {
                write!(
                    f,
                    "{path}: type_uid is {found}, class_uid * 100 + activity_id is {expected}"
                )
            }
            OcsfProblemKind::Null => write!(f, "{path}: null (leave absent attributes out)"),
        }
    }
}

/// The embedded schema could not be read: a bug in the copied data or in
/// this module, caught by the tests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OcsfSchemaError {
    #[error("{file} does not parse: {message}")]
    Parse { file: &'static str, message: String },
    #[error("{owner}.{attribute} has type {type_name}, which is neither a data type nor an object")]
    UnknownType {
        owner: String,
        attribute: String,
        type_name: String,
    },
    #[error("{owner}.{attribute} has enum key {key:?}, which is not an integer")]
    BadEnumKey {
        owner: String,
        attribute: String,
        key: String,
    },
    #[error("the embedded files are OCSF {found}, expected {OCSF_VERSION}")]
    Version { found: String },
}

/// How a value of a data type is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Primitive {
    String,
    DateTime,
    Ip,
    Integer { min: i64, max: i64 },
    Float,
    Boolean,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum AttrType {
    Primitive(Primitive),
    /// The generic `object` type: any JSON object.
    AnyObject,
    /// A named OCSF object, checked against its definition.
    Object(String),
}

#[derive(Debug)]
struct Attribute {
    /// The OCSF type name as the schema spells it (`port_t`, `network_endpoint`).
    type_name: String,
    attr_type: AttrType,
    is_array: bool,
    required: bool,
    profile: Option<String>,
    /// Integer enum values (own plus dictionary), when the attribute has one.
    enum_values: Option<BTreeSet<i64>>,
}

#[derive(Debug, Default)]
struct ObjectDef {
    attributes: BTreeMap<String, Attribute>,
    at_least_one: Vec<String>,
    just_one: Vec<String>,
}

/// OCSF class 4001 Network Activity and every object it reaches.
#[derive(Debug)]
pub struct OcsfSchema {
    class: ObjectDef,
    objects: HashMap<String, ObjectDef>,
}

#[derive(Deserialize)]
struct RawClass {
    attributes: Vec<RawAttribute>,
}

#[derive(Deserialize)]
struct RawAttribute {
    name: String,
    #[serde(rename = "type")]
    type_name: String,
    #[serde(default)]
    is_array: bool,
    #[serde(default)]
    requirement: Option<String>,
    #[serde(default)]
    profile: Option<String>,
    #[serde(default, rename = "enum")]
    enum_values: Option<HashMap<String, Value>>,
}

#[derive(Deserialize)]
struct RawObjects {
    objects: HashMap<String, RawObject>,
}

#[derive(Deserialize)]
struct RawObject {
    #[serde(default)]
    attributes: Vec<RawAttribute>,
    /// Written as `null` when the object has none.
    #[serde(default)]
    constraints: Option<RawConstraints>,
}

#[derive(Deserialize, Default, Clone)]
struct RawConstraints {
    #[serde(default)]
    at_least_one: Vec<String>,
    #[serde(default)]
    just_one: Vec<String>,
}

#[derive(Deserialize)]
struct RawParentClass {
    #[serde(default)]
    constraints: RawConstraints,
}

#[derive(Deserialize)]
struct RawDictionary {
    attributes: HashMap<String, RawDictionaryAttribute>,
    types: RawTypes,
}

#[derive(Deserialize)]
struct RawDictionaryAttribute {
    #[serde(default, rename = "enum")]
    enum_values: Option<HashMap<String, Value>>,
}

#[derive(Deserialize)]
struct RawTypes {
    attributes: HashMap<String, RawType>,
}

#[derive(Deserialize)]
struct RawType {
    /// The base type of a derived type (`port_t` -> `integer_t`).
    #[serde(default, rename = "type")]
    base: Option<String>,
    #[serde(default)]
    range: Option<[i64; 2]>,
}

#[derive(Deserialize)]
struct RawObservableTypeIds {
    type_id: HashMap<String, String>,
}

#[derive(Deserialize)]
struct RawVersion {
    version: String,
}

fn parse<'a, T: Deserialize<'a>>(file: &'static str, text: &'a str) -> Result<T, OcsfSchemaError> {
    serde_json::from_str(text).map_err(|e| OcsfSchemaError::Parse {
        file,
        message: e.to_string(),
    })
}

impl OcsfSchema {
    /// The schema compiled into this crate (OCSF [`OCSF_VERSION`]), parsed on
    /// first use.
    pub fn embedded() -> Result<&'static OcsfSchema, OcsfSchemaError> {
        static SCHEMA: OnceLock<Result<OcsfSchema, OcsfSchemaError>> = OnceLock::new();
        SCHEMA
            .get_or_init(OcsfSchema::load_embedded)
            .as_ref()
            .map_err(Clone::clone)
    }

    fn load_embedded() -> Result<OcsfSchema, OcsfSchemaError> {
        let version: RawVersion = parse("version.json", VERSION_JSON)?;
        if version.version != OCSF_VERSION {
            return Err(OcsfSchemaError::Version {
                found: version.version,
            });
        }
        let class: RawClass = parse("network_activity.resolved.json", CLASS_JSON)?;
        let objects: RawObjects = parse("objects.resolved.json", OBJECTS_JSON)?;
        let dictionary: RawDictionary = parse("dictionary.json", DICTIONARY_JSON)?;
        let parent: RawParentClass = parse("network.json", NETWORK_JSON)?;

        let resolver = TypeResolver {
            dictionary: &dictionary,
            objects: &objects.objects,
        };
        let class = ObjectDef {
            attributes: resolver.attributes("network_activity", &class.attributes)?,
            at_least_one: parent.constraints.at_least_one,
            just_one: parent.constraints.just_one,
        };
        let mut defs = HashMap::with_capacity(objects.objects.len());
        for (name, raw) in &objects.objects {
            let constraints = raw.constraints.clone().unwrap_or_default();
            let def = ObjectDef {
                attributes: resolver.attributes(name, &raw.attributes)?,
                at_least_one: constraints.at_least_one,
                just_one: constraints.just_one,
            };
            defs.insert(name.clone(), def);
        }
        let observable_ids: RawObservableTypeIds =
            parse("observable_type_ids.json", OBSERVABLE_TYPE_IDS_JSON)?;
        if let Some(values) = defs
            .get_mut("observable")
            .and_then(|o| o.attributes.get_mut("type_id"))
            .and_then(|a| a.enum_values.as_mut())
        {
            for key in observable_ids.type_id.keys() {
                let value = key.parse().map_err(|_| OcsfSchemaError::BadEnumKey {
                    owner: "observable".into(),
                    attribute: "type_id".into(),
                    key: key.clone(),
                })?;
                values.insert(value);
            }
        }
        Ok(OcsfSchema {
            class,
            objects: defs,
        })
    }

    /// Every problem of `event` as a Network Activity (4001) event.
    /// Empty means it conforms.
    pub fn check_network_activity(&self, event: &Value) -> Vec<OcsfProblem> {
        let mut out = Vec::new();
        let Value::Object(map) = event else {
            out.push(OcsfProblem {
                path: String::new(),
                kind: OcsfProblemKind::WrongType {
                    ocsf_type: "network_activity".into(),
                    expected: "an object",
                    found: describe(event),
                },
            });
            return out;
        };
        let profiles: BTreeSet<&str> = map
            .get("metadata")
            .and_then(|m| m.get("profiles"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let checker = Checker {
            schema: self,
            profiles: &profiles,
        };
        checker.object("", &self.class, map, &mut out);

        let int = |name: &str| map.get(name).and_then(Value::as_i64);
        if let (Some(class_uid), Some(activity_id), Some(type_uid)) =
            (int("class_uid"), int("activity_id"), int("type_uid"))
        {
            let expected = class_uid.saturating_mul(100).saturating_add(activity_id);
            if type_uid != expected {
                out.push(OcsfProblem {
                    path: "type_uid".into(),
                    kind: OcsfProblemKind::TypeUidMismatch {
                        expected,
                        found: type_uid,
                    },
                });
            }
        }
        out
    }
}

/// Checks `event` against the embedded OCSF [`OCSF_VERSION`] Network
/// Activity class.
pub fn check_network_activity(event: &Value) -> Result<Vec<OcsfProblem>, OcsfSchemaError> {
    Ok(OcsfSchema::embedded()?.check_network_activity(event))
}

struct TypeResolver<'a> {
    dictionary: &'a RawDictionary,
    objects: &'a HashMap<String, RawObject>,
}

impl TypeResolver<'_> {
    fn attributes(
        &self,
        owner: &str,
        raw: &[RawAttribute],
    ) -> Result<BTreeMap<String, Attribute>, OcsfSchemaError> {
        let mut out = BTreeMap::new();
        for a in raw {
            let attr_type =
                self.resolve(&a.type_name)
                    .ok_or_else(|| OcsfSchemaError::UnknownType {
                        owner: owner.to_string(),
                        attribute: a.name.clone(),
                        type_name: a.type_name.clone(),
                    })?;
            let enum_values = match (&attr_type, &a.enum_values) {
                (AttrType::Primitive(Primitive::Integer { .. }), Some(own)) => {
                    let dictionary = self
                        .dictionary
                        .attributes
                        .get(&a.name)
                        .and_then(|d| d.enum_values.as_ref());
                    let mut values = BTreeSet::new();
                    for key in own
                        .keys()
                        .chain(dictionary.into_iter().flat_map(|d| d.keys()))
                    {
                        let value = key.parse().map_err(|_| OcsfSchemaError::BadEnumKey {
                            owner: owner.to_string(),
                            attribute: a.name.clone(),
                            key: key.clone(),
                        })?;
                        values.insert(value);
                    }
                    Some(values)
                }
                _ => None,
            };
            let attribute = Attribute {
                type_name: a.type_name.clone(),
                attr_type,
                is_array: a.is_array,
                required: a.requirement.as_deref() == Some("required"),
                profile: a.profile.clone(),
                enum_values,
            };
            out.insert(a.name.clone(), attribute);
        }
        Ok(out)
    }

    fn resolve(&self, type_name: &str) -> Option<AttrType> {
        if type_name == "object" {
            return Some(AttrType::AnyObject);
        }
        if self.objects.contains_key(type_name) {
            return Some(AttrType::Object(type_name.to_string()));
        }
        let ty = self.dictionary.types.attributes.get(type_name)?;
        let base = ty.base.as_deref().unwrap_or(type_name);
        let range = |min: i64, max: i64| match ty.range {
            Some([lo, hi]) => Primitive::Integer { min: lo, max: hi },
            None => Primitive::Integer { min, max },
        };
        let primitive = match (type_name, base) {
            ("ip_t", _) => Primitive::Ip,
            ("datetime_t", _) => Primitive::DateTime,
            (_, "string_t") => Primitive::String,
            (_, "integer_t") => range(i32::MIN.into(), i32::MAX.into()),
            (_, "long_t") => range(i64::MIN, i64::MAX),
            (_, "float_t") => Primitive::Float,
            (_, "boolean_t") => Primitive::Boolean,
            (_, "json_t") => Primitive::Json,
            _ => return None,
        };
        Some(AttrType::Primitive(primitive))
    }
}

struct Checker<'a> {
    schema: &'a OcsfSchema,
    profiles: &'a BTreeSet<&'a str>,
}

impl Checker<'_> {
    fn object(
        &self,
        path: &str,
        def: &ObjectDef,
        map: &Map<String, Value>,
        out: &mut Vec<OcsfProblem>,
    ) {
        let join = |name: &str| {
            if path.is_empty() {
                name.to_string()
            } else {
                format!("{path}.{name}")
            }
        };
        for (name, attr) in &def.attributes {
            let applies = attr
                .profile
                .as_deref()
                .is_none_or(|p| self.profiles.contains(p));
            if attr.required && applies && !map.contains_key(name) {
                out.push(OcsfProblem {
                    path: join(name),
                    kind: OcsfProblemKind::MissingRequired,
                });
            }
        }
        for (name, value) in map {
            match def.attributes.get(name) {
                Some(attr) => self.attribute(join(name), attr, value, out),
                None => out.push(OcsfProblem {
                    path: join(name),
                    kind: OcsfProblemKind::UnknownAttribute,
                }),
            }
        }
        let present = |names: &[String]| {
            names
                .iter()
                .filter(|n| map.get(n.as_str()).is_some_and(|v| !v.is_null()))
                .count()
        };
        if !def.at_least_one.is_empty() && present(&def.at_least_one) == 0 {
            out.push(OcsfProblem {
                path: path.to_string(),
                kind: OcsfProblemKind::AtLeastOneOf {
                    attributes: def.at_least_one.clone(),
                },
            });
        }
        if !def.just_one.is_empty() {
            let n = present(&def.just_one);
            if n != 1 {
                out.push(OcsfProblem {
                    path: path.to_string(),
                    kind: OcsfProblemKind::JustOneOf {
                        attributes: def.just_one.clone(),
                        present: n,
                    },
                });
            }
        }
    }

    fn attribute(&self, path: String, attr: &Attribute, value: &Value, out: &mut Vec<OcsfProblem>) {
        match (value, attr.is_array) {
            (Value::Null, _) => out.push(OcsfProblem {
                path,
                kind: OcsfProblemKind::Null,
            }),
            (Value::Array(items), true) => {
                for (i, item) in items.iter().enumerate() {
                    self.value(format!("{path}[{i}]"), attr, item, out);
                }
            }
            (_, true) => out.push(wrong_type(path, attr, "an array", value)),
            (Value::Array(_), false) if attr.attr_type != AttrType::Primitive(Primitive::Json) => {
                out.push(wrong_type(path, attr, "a single value", value));
            }
            (_, false) => self.value(path, attr, value, out),
        }
    }

    /// One value (an array element, or the whole value of a non-array
    /// attribute).
    fn value(&self, path: String, attr: &Attribute, value: &Value, out: &mut Vec<OcsfProblem>) {
        match &attr.attr_type {
            AttrType::AnyObject => {
                if !value.is_object() {
                    out.push(wrong_type(path, attr, "an object", value));
                }
            }
            AttrType::Object(name) => match (value, self.schema.objects.get(name)) {
                (Value::Object(map), Some(def)) => self.object(&path, def, map, out),
                // Unreachable: every object type was resolved at load.
                (Value::Object(_), None) => {}
                _ => out.push(wrong_type(path, attr, "an object", value)),
            },
            AttrType::Primitive(p) => {
                let ok = match p {
                    Primitive::String => value.is_string(),
                    // `datetime_t`'s regex makes the offset optional.
                    Primitive::DateTime => value.as_str().is_some_and(|s| {
                        is_rfc3339_date_time(s) || is_rfc3339_date_time(&format!("{s}Z"))
                    }),
                    Primitive::Ip => value.as_str().is_some_and(|s| s.parse::<IpAddr>().is_ok()),
                    Primitive::Integer { min, max } => {
                        value.as_i64().is_some_and(|n| (*min..=*max).contains(&n))
                    }
                    Primitive::Float => value.is_number(),
                    Primitive::Boolean => value.is_boolean(),
                    Primitive::Json => true,
                };
                if !ok {
                    out.push(wrong_type(path, attr, expected(*p), value));
                    return;
                }
                if let (Some(values), Some(n)) = (&attr.enum_values, value.as_i64())
                    && !values.contains(&n)
                {
                    out.push(OcsfProblem {
                        path,
                        kind: OcsfProblemKind::NotInEnum { value: n },
                    });
                }
            }
        }
    }
}

fn wrong_type(
    path: String,
    attr: &Attribute,
    expected: &'static str,
    found: &Value,
) -> OcsfProblem {
    OcsfProblem {
        path,
        kind: OcsfProblemKind::WrongType {
            ocsf_type: attr.type_name.clone(),
            expected,
            found: describe(found),
        },
    }
}

fn expected(p: Primitive) -> &'static str {
    match p {
        Primitive::String => "a string",
        Primitive::DateTime => "an RFC 3339 date-time string",
        Primitive::Ip => "an IP address string",
        Primitive::Integer { .. } => "an integer in range",
        Primitive::Float => "a number",
        Primitive::Boolean => "a boolean",
        Primitive::Json => "any JSON value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> &'static OcsfSchema {
        OcsfSchema::embedded().unwrap()
    }

    /// The smallest event the class accepts.
    fn minimal() -> Value {
        json!({
            "activity_id": 6,
            "category_uid": 4,
            "class_uid": 4001,
            "type_uid": 400106,
            "severity_id": 1,
            "time": 1763699400123u64,
            "metadata": {
                "product": {"name": "flowscribe", "vendor_name": "flowscribe"},
                "version": OCSF_VERSION
            },
            "src_endpoint": {"ip": "10.0.1.5"}
        })
    }

    /// A denied flow with the attributes the OCSF schema will write.
    fn full() -> Value {
        json!({
            "activity_id": 5, "activity_name": "Refuse",
            "category_uid": 4, "category_name": "Network Activity",
            "class_uid": 4001, "class_name": "Network Activity",
            "type_uid": 400105, "severity_id": 1, "status_id": 2,
            "time": 1763699400123u64, "start_time": 1763699399900u64, "end_time": 1763699400100u64,
            "duration": 200,
            "action_id": 2, "disposition_id": 2,
            "metadata": {
                "product": {"name": "flowscribe", "vendor_name": "flowscribe", "version": "0.1.0"},
                "version": OCSF_VERSION, "uid": "fdd104dd15966600cec98f6b7d3692d8",
                "profiles": ["security_control", "container"],
                "sequence": 42, "logged_time": 1763699400200u64,
                "labels": ["policy_mode:enforced"]
            },
            "src_endpoint": {
                "ip": "10.0.1.5", "port": 51320, "type_id": 6,
                "container": {"uid": "c1", "name": "web", "pod_uuid": "0b9f7c1e-3d2a-4b8e-9f00-000000000001",
                              "orchestrator": "kubernetes"}
            },
            "dst_endpoint": {"ip": "fd00::7", "port": 5432, "svc_name": "db"},
            "connection_info": {
                "direction_id": 2, "protocol_num": 6, "protocol_name": "tcp", "protocol_ver_id": 4,
                "community_uid": "1:LQU9qZlK+B5F3KDmev6m5PMibrg=", "tcp_flags": 2
            },
            "traffic": {"bytes_out": 180, "packets_out": 3, "bytes_in": 0, "packets_in": 0,
                        "bytes": 180, "packets": 3},
            "firewall_rule": {"name": "default-deny", "uid": "3f1c", "version": "12345"},
            "policy": {"name": "db-allow-app", "uid": "pol-1", "is_applied": true},
            "observables": [{"type_id": 2, "name": "src_endpoint.ip", "value": "10.0.1.5"}],
            "unmapped": {"flowscribe": {"verdict_source": "evaluated"}}
        })
    }

    fn problems_of(event: &Value) -> Vec<(String, OcsfProblemKind)> {
        schema()
            .check_network_activity(event)
            .into_iter()
            .map(|p| (p.path, p.kind))
            .collect()
    }

    #[test]
    fn minimal_and_full_events_pass() {
        for event in [minimal(), full()] {
            let problems = check_network_activity(&event).unwrap();
            assert!(problems.is_empty(), "{problems:#?}");
        }
    }

    #[test]
    fn enums_include_dictionary_values() {
        let activity = &schema().class.attributes["activity_id"];
        let values: Vec<i64> = activity.enum_values.iter().flatten().copied().collect();
        assert_eq!(values, [0, 1, 2, 3, 4, 5, 6, 7, 99]);
        let type_id = &schema().objects["network_endpoint"].attributes["type_id"];
        assert!(type_id.enum_values.as_ref().unwrap().contains(&99));
        let observable = &schema().objects["observable"].attributes["type_id"];
        let observable = observable.enum_values.as_ref().unwrap();
        // IP Address, Endpoint, network_endpoint.uid; 28 is a Windows-extension type.
        assert!([2, 20, 48].iter().all(|v| observable.contains(v)));
        assert!(!observable.contains(&28));
    }

    /// `base` with the value at JSON pointer `pointer` set to `new`, or
    /// removed when `new` is None.
    fn edited(base: Value, pointer: &str, new: Option<Value>) -> Value {
        let mut event = base;
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let target = event.pointer_mut(parent).unwrap();
        match (new, target) {
            (Some(v), Value::Object(map)) => {
                map.insert(key.to_string(), v);
            }
            (Some(v), Value::Array(items)) => items[key.parse::<usize>().unwrap()] = v,
            (None, Value::Object(map)) => {
                map.remove(key);
            }
            other => panic!("cannot edit {pointer}: {other:?}"),
        }
        event
    }

    #[test]
    fn each_problem_at_its_path() {
        let wrong =
            |ocsf_type: &str, expected: &'static str, found: &str| OcsfProblemKind::WrongType {
                ocsf_type: ocsf_type.into(),
                expected,
                found: found.into(),
            };
        let cases: Vec<(Value, Vec<(&str, OcsfProblemKind)>)> = vec![
            (
                edited(minimal(), "/severity_id", None),
                vec![("severity_id", OcsfProblemKind::MissingRequired)],
            ),
            (
                edited(minimal(), "/metadata/product", None),
                vec![("metadata.product", OcsfProblemKind::MissingRequired)],
            ),
            (
                edited(minimal(), "/time", Some(json!("2026-11-21T04:30:00Z"))),
                vec![(
                    "time",
                    wrong(
                        "timestamp_t",
                        "an integer in range",
                        "string \"2026-11-21T04:30:00Z\"",
                    ),
                )],
            ),
            (
                edited(minimal(), "/src_endpoint/port", Some(json!(70000))),
                vec![(
                    "src_endpoint.port",
                    wrong("port_t", "an integer in range", "number 70000"),
                )],
            ),
            (
                edited(minimal(), "/src_endpoint/ip", Some(json!("10.0.1"))),
                vec![(
                    "src_endpoint.ip",
                    wrong("ip_t", "an IP address string", "string \"10.0.1\""),
                )],
            ),
            (
                edited(minimal(), "/metadata/version", Some(json!(1.8))),
                vec![(
                    "metadata.version",
                    wrong("string_t", "a string", "number 1.8"),
                )],
            ),
            (
                edited(full(), "/policy/is_applied", Some(json!("yes"))),
                vec![(
                    "policy.is_applied",
                    wrong("boolean_t", "a boolean", "string \"yes\""),
                )],
            ),
            (
                edited(
                    full(),
                    "/metadata/labels",
                    Some(json!("policy_mode:enforced")),
                ),
                vec![(
                    "metadata.labels",
                    wrong("string_t", "an array", "string \"policy_mode:enforced\""),
                )],
            ),
            (
                edited(
                    full(),
                    "/connection_info",
                    Some(json!([{"direction_id": 2}])),
                ),
                vec![(
                    "connection_info",
                    wrong("network_connection_info", "a single value", "an array of 1"),
                )],
            ),
            (
                edited(minimal(), "/activity_id", Some(json!(8))),
                vec![
                    ("activity_id", OcsfProblemKind::NotInEnum { value: 8 }),
                    (
                        "type_uid",
                        OcsfProblemKind::TypeUidMismatch {
                            expected: 400108,
                            found: 400106,
                        },
                    ),
                ],
            ),
            (
                edited(minimal(), "/severity_id", Some(json!(7))),
                vec![("severity_id", OcsfProblemKind::NotInEnum { value: 7 })],
            ),
            (
                edited(full(), "/action_id", Some(json!(5))),
                vec![("action_id", OcsfProblemKind::NotInEnum { value: 5 })],
            ),
            (
                edited(full(), "/disposition_id", Some(json!(28))),
                vec![("disposition_id", OcsfProblemKind::NotInEnum { value: 28 })],
            ),
            (
                edited(full(), "/status_id", Some(json!(3))),
                vec![("status_id", OcsfProblemKind::NotInEnum { value: 3 })],
            ),
            (
                edited(full(), "/connection_info/direction_id", Some(json!(5))),
                vec![(
                    "connection_info.direction_id",
                    OcsfProblemKind::NotInEnum { value: 5 },
                )],
            ),
            (
                edited(
                    full(),
                    "/observables/0",
                    Some(json!({"type_id": 2, "name": "x", "colour": "red"})),
                ),
                vec![("observables[0].colour", OcsfProblemKind::UnknownAttribute)],
            ),
            (
                edited(full(), "/observables/0/type_id", Some(json!(28))),
                vec![(
                    "observables[0].type_id",
                    OcsfProblemKind::NotInEnum { value: 28 },
                )],
            ),
            (
                edited(full(), "/observables/0", Some(json!({"name": "x"}))),
                vec![("observables[0].type_id", OcsfProblemKind::MissingRequired)],
            ),
            (
                edited(minimal(), "/pod_name", Some(json!("web"))),
                vec![("pod_name", OcsfProblemKind::UnknownAttribute)],
            ),
            (
                edited(minimal(), "/src_endpoint/pod", Some(json!("web"))),
                vec![("src_endpoint.pod", OcsfProblemKind::UnknownAttribute)],
            ),
            (
                edited(minimal(), "/src_endpoint", None),
                vec![(
                    "",
                    OcsfProblemKind::AtLeastOneOf {
                        attributes: vec!["dst_endpoint".into(), "src_endpoint".into()],
                    },
                )],
            ),
            (
                edited(minimal(), "/src_endpoint", Some(json!({"port": 80}))),
                vec![(
                    "src_endpoint",
                    OcsfProblemKind::AtLeastOneOf {
                        attributes: [
                            "ip",
                            "uid",
                            "name",
                            "hostname",
                            "svc_name",
                            "instance_uid",
                            "interface_uid",
                            "interface_name",
                            "domain",
                        ]
                        .map(String::from)
                        .to_vec(),
                    },
                )],
            ),
            (
                edited(minimal(), "/src_endpoint/name", Some(Value::Null)),
                vec![("src_endpoint.name", OcsfProblemKind::Null)],
            ),
            (
                // A profile-required attribute is required once the profile is listed.
                edited(minimal(), "/metadata/profiles", Some(json!(["cloud"]))),
                vec![("cloud", OcsfProblemKind::MissingRequired)],
            ),
        ];
        for (event, want) in cases {
            let want: Vec<(String, OcsfProblemKind)> =
                want.into_iter().map(|(p, k)| (p.to_string(), k)).collect();
            assert_eq!(problems_of(&event), want, "{event:#}");
        }
    }

    #[test]
    fn event_must_be_an_object() {
        assert_eq!(
            problems_of(&json!("x")),
            vec![(
                String::new(),
                OcsfProblemKind::WrongType {
                    ocsf_type: "network_activity".into(),
                    expected: "an object",
                    found: "string \"x\"".into()
                }
            )]
        );
    }

    #[test]
    fn problems_read_well() {
        let p = OcsfProblem {
            path: "connection_info.direction_id".into(),
            kind: OcsfProblemKind::NotInEnum { value: 5 },
        };
        assert_eq!(
            p.to_string(),
            "connection_info.direction_id: 5 is not in the enum"
        );
    }
}
