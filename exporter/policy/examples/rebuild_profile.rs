//! The rebuild of the explain_scale bench's 10,000 policies, once, for
//! instruction counts that do not depend on the machine's load:
//!
//!     cargo build --release -p flowscribe-policy --example rebuild_profile
//!     valgrind --tool=callgrind --toggle-collect='*PolicyIndex*from_objects*' \
//!         target/release/examples/rebuild_profile
//!
//! The policy generator is the bench's (benches/explain_scale.rs).
#![allow(clippy::unwrap_used, reason = "example")]

use flowscribe_policy::PolicyIndex;
use serde_json::{Value, json};

const NAMESPACES: usize = 1000;

fn ns_name(ns: usize) -> String {
    format!("ns-{ns}")
}

fn np(ns: usize, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": name, "namespace": ns_name(ns), "uid": format!("{ns}-{name}")},
           "spec": spec})
}

fn calico(kind: &str, ns: Option<usize>, name: &str, spec: Value) -> Value {
    let mut meta = json!({"name": name});
    if let Some(ns) = ns {
        meta["namespace"] = json!(ns_name(ns));
    }
    json!({"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": meta, "spec": spec})
}

fn policies() -> Vec<Value> {
    let mut out = vec![
        json!({"apiVersion": "projectcalico.org/v3", "kind": "Tier",
               "metadata": {"name": "security"}, "spec": {"order": 100}}),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "Tier",
               "metadata": {"name": "platform"}, "spec": {"order": 200, "defaultAction": "Pass"}}),
    ];
    for ns in 0..NAMESPACES {
        let team = format!("team-{}", ns % 50);
        out.push(np(
            ns,
            "deny-all-app-0",
            json!({"podSelector": {"matchLabels": {"app": "app-0"}}}),
        ));
        out.push(np(
            ns,
            "allow-team",
            json!({
            "podSelector": {"matchLabels": {"app": "app-1"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": team}}}]}]}),
        ));
        out.push(np(
            ns,
            "allow-and",
            json!({
            "podSelector": {"matchLabels": {"app": "app-2"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "app-3"}},
                                    "namespaceSelector": {"matchLabels": {"env": "prod"}}}],
                         "ports": [{"port": 8080}]}]}),
        ));
        out.push(np(ns, "allow-named", json!({
            "podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["app-4", "app-5"]}]},
            "ingress": [{"ports": [{"port": "http"}]}]})));
        out.push(np(ns, "egress-dns-and-internal", json!({
            "podSelector": {"matchLabels": {"app": "app-4"}}, "policyTypes": ["Egress"],
            "egress": [
                {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
                 "ports": [{"protocol": "UDP", "port": 53}]},
                {"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.255.0.0/16"]}}]}]})));
        out.push(np(
            ns,
            "allow-range",
            json!({
            "podSelector": {"matchLabels": {"app": "app-6"}},
            "ingress": [{"ports": [{"port": 8000, "endPort": 9000}]}]}),
        ));
        out.push(np(
            ns,
            "allow-same-ns",
            json!({
            "podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}),
        ));
        out.push(calico(
            "NetworkPolicy",
            Some(ns),
            "platform.metrics",
            json!({
            "tier": "platform", "order": 10, "selector": "has(app) && app != 'app-9'",
            "ingress": [{"action": "Allow", "protocol": "TCP",
                         "source": {"namespaceSelector": "projectcalico.org/name == 'monitoring'"},
                         "destination": {"ports": ["metrics"]}}]}),
        ));
        out.push(calico("NetworkPolicy", Some(ns), "default.deny-legacy", json!({
            "order": 500, "selector": "version in {'v1', 'v2'}",
            "ingress": [{"action": "Deny", "source": {"selector": "version == 'v0'", "namespaceSelector": "all()"}}]})));
        if ns % 10 == 0 {
            out.push(json!({"apiVersion": "flowscribe.dev/v1alpha1", "kind": "StagedNetworkPolicy",
                "metadata": {"name": "allow-team", "namespace": ns_name(ns)},
                "spec": {"podSelector": {"matchLabels": {"app": "app-1"}},
                         "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": team}}}],
                                      "ports": [{"port": 8080}]}]}}));
            out.push(calico(
                "StagedNetworkPolicy",
                Some(ns),
                "default.deny-legacy",
                json!({
                "stagedAction": "Delete"}),
            ));
        }
    }
    for i in 0..601 {
        let tier = if i % 2 == 0 { "security" } else { "platform" };
        out.push(calico("GlobalNetworkPolicy", None, &format!("{tier}.g-{i}"), json!({
            "tier": tier, "order": i,
            "selector": format!("app == 'app-{}' && pcns.team == 'team-{}'", i % 10, i % 50),
            "types": ["Ingress", "Egress"],
            "ingress": [{"action": "Pass", "source": {"nets": ["10.0.0.0/8"]}}],
            "egress": [{"action": "Deny", "destination": {"nets": [format!("203.0.{}.0/24", i % 256)]}},
                       {"action": "Pass"}]})));
    }
    for i in 0..100 {
        out.push(json!({"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
            "metadata": {"name": format!("anp-{i}")},
            "spec": {"priority": i, "subject": {"namespaces": {"matchLabels": {"team": format!("team-{}", i % 50)}}},
                     "ingress": [{"name": "deny-quarantine", "action": "Deny",
                                  "from": [{"namespaces": {"matchLabels": {"quarantine": "true"}}}]},
                                 {"name": "pass-monitoring", "action": "Pass",
                                  "from": [{"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]}],
                     "egress": [{"name": "deny-metadata", "action": "Deny", "to": [{"networks": ["169.254.169.254/32"]}]}]}}));
    }
    for i in 0..98 {
        out.push(json!({"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
            "metadata": {"name": format!("cnp-{i}")},
            "spec": {"tier": if i % 2 == 0 { "Admin" } else { "Baseline" }, "priority": i,
                     "subject": {"pods": {"namespaceSelector": {"matchLabels": {"env": "prod"}},
                                          "podSelector": {"matchLabels": {"app": format!("app-{}", i % 10)}}}},
                     "ingress": [{"action": "Deny", "from": [{"pods": {"namespaceSelector": {"matchLabels": {"env": "dev"}},
                                                                       "podSelector": {}}}],
                                  "protocols": [{"tcp": {"destinationPort": {"range": {"start": 9000, "end": 9100}}}}]}]}}));
    }
    out.push(json!({"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "BaselineAdminNetworkPolicy",
        "metadata": {"name": "default"},
        "spec": {"subject": {"namespaces": {"matchLabels": {"env": "prod"}}},
                 "ingress": [{"action": "Deny", "from": [{"namespaces": {"matchLabels": {"env": "dev"}}}]}]}}));
    out
}

fn main() {
    let objects = policies();
    let (index, problems) = PolicyIndex::from_objects(&objects);
    assert!(problems.is_empty());
    println!("{} policies", index.policies().len());
}
