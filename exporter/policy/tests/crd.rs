//! The StagedNetworkPolicy CRD the chart ships
//! (helm/flowscribe/crds/stagednetworkpolicies.flowscribe.dev.yaml): its
//! names match the kind this crate reads, and its schema accepts the
//! NetworkPolicy spec shapes the engine understands and rejects wrong
//! shapes, checked with a small validator of the Kubernetes structural
//! schema subset the CRD uses (type, properties, required, items, enum,
//! additionalProperties, minimum/maximum, x-kubernetes-int-or-string).
//! Unlike the API server, which prunes unknown fields silently, the
//! validator rejects them, so a field the schema forgot shows up here.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

use flowscribe_model::PolicyKind;
use flowscribe_policy::{PolicyIndex, Stage, StagedAction, parse_policy};
use serde_json::{Value, json};

fn crd() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../helm/flowscribe/crds/stagednetworkpolicies.flowscribe.dev.yaml"
    );
    let text = std::fs::read_to_string(path).expect("the CRD file");
    serde_yaml::from_str(&text).expect("valid YAML")
}

fn schema(crd: &Value) -> &Value {
    let versions = crd["spec"]["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 1);
    &versions[0]["schema"]["openAPIV3Schema"]
}

/// Errors as `path: problem`; empty when `v` is valid.
fn validate(schema: &Value, v: &Value, path: &str, errors: &mut Vec<String>) {
    if schema.get("x-kubernetes-int-or-string") == Some(&json!(true)) {
        if !(v.is_i64() || v.is_string()) {
            errors.push(format!("{path}: expected an integer or a string"));
        }
        return;
    }
    let ty = schema.get("type").and_then(Value::as_str);
    let ok = match ty {
        Some("object") => v.is_object(),
        Some("array") => v.is_array(),
        Some("string") => v.is_string(),
        Some("integer") => v.is_i64(),
        Some("boolean") => v.is_boolean(),
        Some(other) => panic!("{path}: schema type {other} not handled"),
        None => panic!("{path}: structural schemas need a type"),
    };
    if !ok {
        errors.push(format!("{path}: expected {}", ty.unwrap_or("?")));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        errors.push(format!("{path}: {v} not in {allowed:?}"));
    }
    if let Some(n) = v.as_i64() {
        if schema
            .get("minimum")
            .and_then(Value::as_i64)
            .is_some_and(|m| n < m)
        {
            errors.push(format!("{path}: {n} below minimum"));
        }
        if schema
            .get("maximum")
            .and_then(Value::as_i64)
            .is_some_and(|m| n > m)
        {
            errors.push(format!("{path}: {n} above maximum"));
        }
    }
    match v {
        Value::Object(map) => {
            for key in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let key = key.as_str().expect("a field name");
                if !map.contains_key(key) {
                    errors.push(format!("{path}.{key}: required"));
                }
            }
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            for (key, value) in map {
                let field = format!("{path}.{key}");
                match (properties.and_then(|p| p.get(key)), additional) {
                    (Some(s), _) => validate(s, value, &field, errors),
                    (None, Some(s)) => validate(s, value, &field, errors),
                    // An object without properties (metadata) is free-form.
                    (None, None) if properties.is_none() => {}
                    (None, None) => errors.push(format!("{field}: unknown field")),
                }
            }
        }
        Value::Array(items) => {
            let item_schema = schema.get("items").expect("arrays have items");
            for (i, item) in items.iter().enumerate() {
                validate(item_schema, item, &format!("{path}[{i}]"), errors);
            }
        }
        _ => {}
    }
}

fn object(spec: Value) -> Value {
    json!({"apiVersion": "flowscribe.dev/v1alpha1", "kind": "StagedNetworkPolicy",
           "metadata": {"name": "p", "namespace": "x"}, "spec": spec})
}

#[test]
fn names_match_the_kind_the_engine_reads() {
    let crd = crd();
    assert_eq!(crd["apiVersion"], "apiextensions.k8s.io/v1");
    assert_eq!(crd["kind"], "CustomResourceDefinition");
    let spec = &crd["spec"];
    assert_eq!(
        crd["metadata"]["name"],
        format!(
            "{}.{}",
            spec["names"]["plural"].as_str().unwrap(),
            spec["group"].as_str().unwrap()
        )
    );
    assert_eq!(spec["scope"], "Namespaced");
    assert_eq!(
        spec["names"]["kind"],
        PolicyKind::StagedNetworkPolicy.as_str()
    );
    let version = &spec["versions"][0];
    assert_eq!(
        format!(
            "{}/{}",
            spec["group"].as_str().unwrap(),
            version["name"].as_str().unwrap()
        ),
        PolicyKind::StagedNetworkPolicy.api_version()
    );
    assert_eq!(
        (version["served"].clone(), version["storage"].clone()),
        (json!(true), json!(true))
    );
}

#[test]
fn schema_accepts_network_policy_specs_the_engine_reads() {
    let crd = crd();
    let schema = schema(&crd);
    // The shapes of the upstream e2e and the docs: deny-all, selectors with
    // both forms, AND/OR peers, ipBlock with except, numbered, named and
    // ranged ports over each protocol, egress with policyTypes.
    let specs = [
        json!({"podSelector": {}}),
        json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        json!({"podSelector": {"matchLabels": {"pod": "b"}},
               "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}},
                                      "podSelector": {"matchExpressions": [{"key": "pod", "operator": "In", "values": ["a", "c"]}]}},
                                     {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
                            "ports": [{"port": 80}, {"protocol": "UDP", "port": "serve-81-udp"},
                                      {"protocol": "SCTP", "port": 80, "endPort": 81}]}]}),
        json!({"podSelector": {"matchExpressions": [{"key": "tier", "operator": "Exists"}]},
               "policyTypes": ["Egress"],
               "egress": [{"to": [{"namespaceSelector": {}}], "ports": [{"protocol": "UDP", "port": 53}]},
                          {}]}),
        json!({"ingress": [{}], "egress": []}),
    ];
    for spec in specs {
        let obj = object(spec.clone());
        let mut errors = Vec::new();
        validate(schema, &obj, "", &mut errors);
        assert!(errors.is_empty(), "{spec}: {errors:?}");
        // And the engine reads the same object as a staged policy.
        let policy = parse_policy(&obj).expect("a policy kind").expect("valid");
        assert_eq!(policy.stage, Stage::Staged(StagedAction::Set));
    }
    let objects: Vec<Value> = vec![object(json!({"podSelector": {}}))];
    let (index, problems) = PolicyIndex::from_objects(&objects);
    assert!(problems.is_empty());
    assert_eq!(index.policies().len(), 1);
}

#[test]
fn schema_rejects_wrong_shapes() {
    let crd = crd();
    let schema = schema(&crd);
    // (spec, the error path)
    let cases = [
        (json!({"policyTypes": ["Sideways"]}), ".spec.policyTypes[0]"),
        (json!({"podSelector": []}), ".spec.podSelector"),
        (
            json!({"podSelector": {"matchLabels": {"a": 1}}}),
            ".spec.podSelector.matchLabels.a",
        ),
        (
            json!({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Equals"}]}}),
            ".spec.podSelector.matchExpressions[0].operator",
        ),
        (
            json!({"ingress": [{"from": [{"ipBlock": {"except": []}}]}]}),
            ".spec.ingress[0].from[0].ipBlock.cidr",
        ),
        (
            json!({"ingress": [{"ports": [{"port": [80]}]}]}),
            ".spec.ingress[0].ports[0].port",
        ),
        (
            json!({"ingress": [{"ports": [{"protocol": "ICMP"}]}]}),
            ".spec.ingress[0].ports[0].protocol",
        ),
        (
            json!({"egress": [{"ports": [{"port": 80, "endPort": 70000}]}]}),
            ".spec.egress[0].ports[0].endPort",
        ),
        (json!({"egress": [{"too": []}]}), ".spec.egress[0].too"),
        (json!({"stagedAction": "Set"}), ".spec.stagedAction"),
    ];
    for (spec, path) in cases {
        let mut errors = Vec::new();
        validate(schema, &object(spec.clone()), "", &mut errors);
        assert_eq!(errors.len(), 1, "{spec}: {errors:?}");
        assert!(
            errors[0].starts_with(&format!("{path}:")),
            "{spec}: {errors:?}"
        );
    }
    let mut errors = Vec::new();
    validate(
        schema,
        &json!({"apiVersion": "flowscribe.dev/v1alpha1", "kind": "StagedNetworkPolicy", "metadata": {}}),
        "",
        &mut errors,
    );
    assert_eq!(errors, vec![".spec: required"]);
}
