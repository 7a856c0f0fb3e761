use serde_json::{Value, json};

use crate::{InvalidPolicy, Policy, PolicySpec, Stage, StagedAction, parse_policy};

use super::*;

fn np(spec: Value) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "p", "namespace": "x", "uid": "u-1",
                     "resourceVersion": "42", "generation": 3},
        "spec": spec
    })
}

fn parse(v: &Value) -> Result<Policy, InvalidPolicy> {
    parse_policy(v).expect("a policy kind")
}

fn spec_of(p: &Policy) -> &KubernetesPolicySpec {
    let PolicySpec::Kubernetes(s) = &p.spec else {
        panic!("not a NetworkPolicy spec")
    };
    s
}

#[test]
fn reference_carries_metadata() {
    let p = parse(&np(json!({"podSelector": {}}))).expect("valid");
    assert_eq!(
        p.reference.kind,
        flowscribe_model::PolicyKind::NetworkPolicy
    );
    assert_eq!(p.reference.namespace.as_deref(), Some("x"));
    assert_eq!(&*p.reference.name, "p");
    assert_eq!(&*p.reference.uid, "u-1");
    assert_eq!(&*p.reference.resource_version, "42");
    assert_eq!(p.reference.generation, Some(3));
    assert_eq!(&*p.reference.tier, "default");
    assert_eq!(p.stage, Stage::Enforced);
}

#[test]
fn policy_types_defaulting() {
    // (spec, governs ingress, governs egress, ingress rule count, egress rule count)
    let cases = [
        (json!({}), true, false, 0, 0),
        (json!({"ingress": [{}]}), true, false, 1, 0),
        (json!({"egress": [{}]}), true, true, 0, 1),
        (json!({"egress": []}), true, false, 0, 0),
        (json!({"egress": null, "ingress": null}), true, false, 0, 0),
        (json!({"policyTypes": ["Egress"]}), false, true, 0, 0),
        (
            json!({"policyTypes": ["Egress"], "ingress": [{}], "egress": [{}, {}]}),
            false,
            true,
            0,
            2,
        ),
        (
            json!({"policyTypes": ["Ingress", "Egress"]}),
            true,
            true,
            0,
            0,
        ),
    ];
    for (spec, gi, ge, ni, ne) in cases {
        let p = parse(&np(spec.clone())).expect("valid");
        let s = spec_of(&p);
        assert_eq!(
            (
                s.ingress.is_some(),
                s.egress.is_some(),
                s.ingress.as_deref().map_or(0, <[Rule]>::len),
                s.egress.as_deref().map_or(0, <[Rule]>::len)
            ),
            (gi, ge, ni, ne),
            "{spec}"
        );
    }
}

#[test]
fn peers_ports_and_blocks_compile() {
    let p = parse(&np(json!({
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{
            "from": [
                {"podSelector": {"matchLabels": {"pod": "b"}}, "namespaceSelector": {}},
                {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}
            ],
            "ports": [
                {"port": 80},
                {"protocol": "UDP", "port": 1000, "endPort": 2000},
                {"protocol": "SCTP", "port": "serve-81-sctp"},
                {"protocol": "UDP"}
            ]
        }, {"from": []}]
    })))
    .expect("valid");
    let rules = spec_of(&p).ingress.as_deref().expect("ingress");
    assert!(matches!(
        &rules[0].peers.as_deref().expect("peers")[0],
        Peer::Pods {
            pods: Some(_),
            namespaces: Some(n)
        } if n.is_everything()
    ));
    let Peer::IpBlock(b) = &rules[0].peers.as_deref().expect("peers")[1] else {
        panic!("not a block");
    };
    assert!(b.contains("10.2.0.1".parse().expect("ip")));
    assert!(!b.contains("10.1.0.1".parse().expect("ip")));
    assert!(!b.contains("11.0.0.1".parse().expect("ip")));
    assert_eq!(
        &*rules[0].ports,
        &[
            PortMatch {
                protocol: 6,
                port: PortRange::Range { start: 80, end: 80 }
            },
            PortMatch {
                protocol: 17,
                port: PortRange::Range {
                    start: 1000,
                    end: 2000
                }
            },
            PortMatch {
                protocol: 132,
                port: PortRange::Named("serve-81-sctp".into())
            },
            PortMatch {
                protocol: 17,
                port: PortRange::All
            },
        ]
    );
    // `from: []` is "every peer", like no `from` at all.
    assert_eq!(rules[1].peers, None);
}

#[test]
fn invalid_specs_name_the_field() {
    let cases = [
        (
            json!({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}]}),
            "spec.ingress[0].from[0].ipBlock.cidr",
        ),
        (
            json!({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}]}]}),
            "spec.ingress[0].from[0].ipBlock.except[0]",
        ),
        (
            json!({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8"]}}]}]}),
            "spec.ingress[0].from[0].ipBlock.except[0]",
        ),
        (
            json!({"ingress": [{"from": [{"ipBlock": {}}]}]}),
            "spec.ingress[0].from[0].ipBlock.cidr",
        ),
        (
            json!({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]}),
            "spec.ingress[0].from[0]",
        ),
        (json!({"egress": [{"to": [{}]}]}), "spec.egress[0].to[0]"),
        (
            json!({"egress": [{"to": [{"podSelector": {"matchExpressions": [{"key": "a", "operator": "Is"}]}}]}]}),
            "spec.egress[0].to[0].podSelector.matchExpressions[0].operator",
        ),
        (
            json!({"ingress": [{"ports": [{"port": 0}]}]}),
            "spec.ingress[0].ports[0].port",
        ),
        (
            json!({"ingress": [{"ports": [{"port": 70000}]}]}),
            "spec.ingress[0].ports[0].port",
        ),
        (
            json!({"ingress": [{"ports": [{"port": "80"}]}]}),
            "spec.ingress[0].ports[0].port",
        ),
        (
            json!({"ingress": [{"ports": [{"port": 90, "endPort": 80}]}]}),
            "spec.ingress[0].ports[0].endPort",
        ),
        (
            json!({"ingress": [{"ports": [{"endPort": 80}]}]}),
            "spec.ingress[0].ports[0].endPort",
        ),
        (
            json!({"ingress": [{"ports": [{"port": "http", "endPort": 80}]}]}),
            "spec.ingress[0].ports[0].endPort",
        ),
        (
            json!({"ingress": [{"ports": [{"protocol": "ICMP"}]}]}),
            "spec.ingress[0].ports[0].protocol",
        ),
        (
            json!({"ingress": [{"ports": [{"port": 80, "hostPort": 1}]}]}),
            "spec.ingress[0].ports[0].hostPort",
        ),
        (json!({"ingress": [{"form": []}]}), "spec.ingress[0].form"),
        (json!({"policyTypes": ["ingress"]}), "spec.policyTypes[0]"),
        (json!({"podselector": {}}), "spec.podselector"),
        (json!({"ingress": {}}), "spec.ingress"),
        (json!({"podSelector": []}), "spec.podSelector"),
    ];
    for (spec, field) in cases {
        let e = parse(&np(spec.clone())).expect_err("invalid");
        assert_eq!(e.error.field, field, "{spec}: {}", e.error);
        assert_eq!(e.error.name, "x/p");
        assert_eq!(e.error.kind, "NetworkPolicy");
        assert!(e.reference.is_some());
    }
}

#[test]
fn invalid_policy_keeps_a_valid_pod_selector() {
    let e = parse(&np(json!({
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"ipBlock": {"cidr": "bad"}}]}]
    })))
    .expect_err("invalid");
    let sel = e.pod_selector.expect("selector kept");
    assert!(!sel.is_everything());
    let e = parse(&np(json!({
        "podSelector": {"matchLabels": {"pod": 1}},
    })))
    .expect_err("invalid");
    assert_eq!(e.pod_selector, None, "may select any pod");
    assert_eq!(
        e.error.to_string(),
        "NetworkPolicy x/p: spec.podSelector.matchLabels.pod: expected a string, found a number"
    );
}

#[test]
fn unknown_top_level_field_and_missing_name() {
    let mut v = np(json!({}));
    v["specs"] = json!({});
    assert_eq!(parse(&v).expect_err("invalid").error.field, "specs");
    let v = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                   "metadata": {"namespace": "x"}, "spec": {}});
    let e = parse(&v).expect_err("invalid");
    assert_eq!(e.error.field, "metadata.name");
    assert_eq!(e.error.name, "?");
    assert!(e.reference.is_none());
}

#[test]
fn other_kinds_are_not_policies() {
    assert!(parse_policy(&json!({"apiVersion": "v1", "kind": "Pod"})).is_none());
    assert!(
        parse_policy(&json!({"apiVersion": "networking.k8s.io/v1beta1", "kind": "NetworkPolicy"}))
            .is_none()
    );
}

#[test]
fn staged_kinds() {
    let ours = json!({
        "apiVersion": "flowscribe.dev/v1alpha1", "kind": "StagedNetworkPolicy",
        "metadata": {"name": "p", "namespace": "x"}, "spec": {"podSelector": {}}
    });
    let p = parse(&ours).expect("valid");
    assert_eq!(p.stage, Stage::Staged(StagedAction::Set));
    assert_eq!(
        p.reference.kind,
        flowscribe_model::PolicyKind::StagedNetworkPolicy
    );

    let calico = |action: Value| {
        json!({
            "apiVersion": "projectcalico.org/v3", "kind": "StagedKubernetesNetworkPolicy",
            "metadata": {"name": "p", "namespace": "x"},
            "spec": {"stagedAction": action, "podSelector": {}, "policyTypes": ["Ingress"]}
        })
    };
    assert_eq!(
        parse(&calico(json!("Set"))).expect("valid").stage,
        Stage::Staged(StagedAction::Set)
    );
    assert_eq!(
        parse(&calico(Value::Null)).expect("valid").stage,
        Stage::Staged(StagedAction::Set)
    );
    let delete = parse(&calico(json!("Delete"))).expect("valid");
    assert_eq!(delete.stage, Stage::Staged(StagedAction::Delete));
    assert_eq!(spec_of(&delete), &KubernetesPolicySpec::governs_nothing());
    assert_eq!(
        parse(&calico(json!("Remove")))
            .expect_err("invalid")
            .error
            .field,
        "spec.stagedAction"
    );
    // `stagedAction` is not part of our own kind's spec.
    let mut ours_with_action = ours.clone();
    ours_with_action["spec"]["stagedAction"] = json!("Delete");
    assert_eq!(
        parse(&ours_with_action).expect_err("invalid").error.field,
        "spec.stagedAction"
    );
}
