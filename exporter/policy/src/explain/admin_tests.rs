//! Cluster-wide policies (policy.networking.k8s.io): ClusterNetworkPolicy
//! v1alpha2 and AdminNetworkPolicy / BaselineAdminNetworkPolicy v1alpha1.
//! Cases after the network-policy-api conformance suite
//! (conformance/tests/admin-network-policy-standard-*.go and
//! conformance/base/admin_tier/*.yaml), moved onto the e2e layout used by
//! the NetworkPolicy tests: namespaces x, y, z; pods a, b, c; ports 80/81
//! over TCP, UDP and SCTP. `x` plays the conformance suite's server house.

use serde_json::{Value, json};

use flowscribe_model::{Observed, PolicyKind, SideVerdict, Verdict, VerdictReason};

use super::tests::{SCTP, TCP, UDP, flow, np};
use crate::{PolicyIndex, explain, parse_policy};

/// `verdict reason [hits]`, each hit `tier:Kind/[ns/]name#rule:action`
/// (`#-` when no rule matched), the rule name in parentheses when it has
/// one.
pub(super) fn summary(s: &SideVerdict) -> String {
    let hits: Vec<String> = s
        .hits
        .iter()
        .map(|h| {
            let p = &h.policy;
            let ns = p
                .namespace
                .as_deref()
                .map_or(String::new(), |n| format!("{n}/"));
            let rule = h.rule_index.map_or("-".to_string(), |r| r.to_string());
            let name = h
                .rule_name
                .as_deref()
                .map_or(String::new(), |n| format!("({n})"));
            format!(
                "{}:{}/{ns}{}#{rule}{name}:{}",
                p.tier,
                p.kind.as_str(),
                p.name,
                h.action.as_str()
            )
        })
        .collect();
    format!(
        "{} {} [{}]",
        s.verdict.as_str(),
        s.reason.as_str(),
        hits.join(", ")
    )
}

pub(super) fn index(objects: &[Value]) -> PolicyIndex {
    let (index, problems) = PolicyIndex::from_objects(objects);
    assert!(problems.is_empty(), "{problems:?}");
    index
}

fn cnp(name: &str, tier: &str, priority: u32, spec: Value) -> Value {
    let mut spec = spec;
    spec["tier"] = json!(tier);
    spec["priority"] = json!(priority);
    json!({"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
           "metadata": {"name": name, "uid": format!("uid-{name}")}, "spec": spec})
}

fn anp(name: &str, priority: u32, spec: Value) -> Value {
    let mut spec = spec;
    spec["priority"] = json!(priority);
    json!({"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
           "metadata": {"name": name}, "spec": spec})
}

fn banp(spec: Value) -> Value {
    json!({"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "BaselineAdminNetworkPolicy",
           "metadata": {"name": "default"}, "spec": spec})
}

fn ns(name: &str) -> Value {
    json!({"matchLabels": {"kubernetes.io/metadata.name": name}})
}

fn pods(namespace: &str, pod: &str) -> Value {
    json!({"namespaceSelector": ns(namespace), "podSelector": {"matchLabels": {"pod": pod}}})
}

/// One flow: (from, to, port, protocol, egress summary, ingress summary).
type Row = (
    &'static str,
    &'static str,
    u16,
    u8,
    &'static str,
    &'static str,
);

fn check(name: &str, idx: &PolicyIndex, rows: &[Row]) {
    let mut failures = Vec::new();
    for (from, to, port, protocol, egress, ingress) in rows {
        let trace = explain(idx, &flow(from, to, *port, *protocol), Observed::Unknown);
        let got = (
            summary(&trace.enforced.egress),
            summary(&trace.enforced.ingress),
        );
        if got != (egress.to_string(), ingress.to_string()) {
            failures.push(format!(
                "{name}: {from} -> {to}:{port}/{protocol}\n  egress  want {egress}\n          got  {}\n  ingress want {ingress}\n          got  {}",
                got.0, got.1
            ));
        }
        let want_verdict = if egress.starts_with("allow") && ingress.starts_with("allow") {
            Verdict::Allow
        } else {
            Verdict::Deny
        };
        assert_eq!(
            trace.enforced.verdict, want_verdict,
            "{name}: {from} -> {to}"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

const OPEN: &str = "allow not-isolated-default-allow []";

/// conformance base/admin_tier/standard-ingress-tcp-rules.yaml, on x: the
/// first matching rule wins whatever follows (Accept before Deny and Pass
/// for the same peer), port and protocol narrow a rule.
#[test]
fn cluster_network_policy_first_matching_rule_wins() {
    let from_y_c = json!([{"pods": pods("y", "c")}]);
    let idx = index(&[cnp(
        "ingress-tcp",
        "Admin",
        3,
        json!({"subject": {"namespaces": ns("x")},
        "ingress": [
          {"name": "allow-from-y-c", "action": "Accept", "from": from_y_c},
          {"name": "deny-from-y-c", "action": "Deny", "from": from_y_c},
          {"name": "pass-from-y-c", "action": "Pass", "from": from_y_c},
          {"name": "deny-from-y-at-80", "action": "Deny", "from": [{"namespaces": ns("y")}],
           "protocols": [{"tcp": {"destinationPort": {"number": 80}}}]},
          {"name": "pass-from-y-at-80", "action": "Pass", "from": [{"namespaces": ns("y")}],
           "protocols": [{"tcp": {"destinationPort": {"number": 80}}}]},
          {"name": "allow-from-z-at-80", "action": "Accept", "from": [{"namespaces": ns("z")}],
           "protocols": [{"tcp": {"destinationPort": {"number": 80}}}]},
          {"name": "deny-from-z-else", "action": "Deny", "from": [{"namespaces": ns("z")}]}
        ]}),
    )]);
    check(
        "ingress-tcp",
        &idx,
        &[
            (
                "y/c",
                "x/a",
                80,
                TCP,
                OPEN,
                "allow allowed-by-rule [admin:ClusterNetworkPolicy/ingress-tcp#0(allow-from-y-c):allow]",
            ),
            (
                "y/c",
                "x/a",
                81,
                UDP,
                OPEN,
                "allow allowed-by-rule [admin:ClusterNetworkPolicy/ingress-tcp#0(allow-from-y-c):allow]",
            ),
            (
                "y/a",
                "x/a",
                80,
                TCP,
                OPEN,
                "deny denied-by-rule [admin:ClusterNetworkPolicy/ingress-tcp#3(deny-from-y-at-80):deny]",
            ),
            ("y/a", "x/b", 81, TCP, OPEN, OPEN),
            ("y/a", "x/a", 80, UDP, OPEN, OPEN),
            ("y/a", "x/a", 80, SCTP, OPEN, OPEN),
            (
                "z/b",
                "x/b",
                80,
                TCP,
                OPEN,
                "allow allowed-by-rule [admin:ClusterNetworkPolicy/ingress-tcp#5(allow-from-z-at-80):allow]",
            ),
            (
                "z/b",
                "x/b",
                81,
                TCP,
                OPEN,
                "deny denied-by-rule [admin:ClusterNetworkPolicy/ingress-tcp#6(deny-from-z-else):deny]",
            ),
            (
                "z/b",
                "x/b",
                80,
                SCTP,
                OPEN,
                "deny denied-by-rule [admin:ClusterNetworkPolicy/ingress-tcp#6(deny-from-z-else):deny]",
            ),
            (
                "z/b",
                "x/b",
                80,
                UDP,
                OPEN,
                "deny denied-by-rule [admin:ClusterNetworkPolicy/ingress-tcp#6(deny-from-z-else):deny]",
            ),
            // Not a subject: policies of other namespaces do not apply.
            ("x/a", "y/a", 80, TCP, OPEN, OPEN),
            ("x/a", "x/b", 80, TCP, OPEN, OPEN),
        ],
    );
}

/// conformance base/admin_tier/standard-priority-field.yaml: priority 50
/// denies y <-> x both ways; priority 60 passes; a Baseline-tier policy
/// accepts. Then the pass policy moves to priority 40 (the test patches
/// it): traffic is passed, no NetworkPolicy isolates, and the Baseline
/// accept decides — unless a NetworkPolicy isolates x/a, which then wins
/// over Baseline.
#[test]
fn cluster_network_policy_priority_pass_and_baseline() {
    let deny = |priority: u32| {
        cnp(
            "priority-50-example",
            "Admin",
            priority,
            json!({"subject": {"namespaces": ns("x")},
              "ingress": [{"name": "deny-all-ingress-from-y", "action": "Deny", "from": [{"namespaces": ns("y")}]}],
              "egress": [{"name": "deny-all-egress-to-y", "action": "Deny", "to": [{"namespaces": ns("y")}]}]}),
        )
    };
    let pass = |priority: u32| {
        cnp(
            "old-priority-60-new-priority-40-example",
            "Admin",
            priority,
            json!({"subject": {"namespaces": ns("x")},
              "ingress": [{"name": "pass-all-ingress-from-y", "action": "Pass", "from": [{"namespaces": ns("y")}]}],
              "egress": [{"name": "pass-all-egress-to-y", "action": "Pass", "to": [{"namespaces": ns("y")}]}]}),
        )
    };
    let baseline = cnp(
        "default",
        "Baseline",
        10,
        json!({"subject": {"namespaces": ns("x")},
          "ingress": [{"name": "allow-all-ingress-from-y", "action": "Accept", "from": [{"namespaces": ns("y")}]}],
          "egress": [{"name": "allow-all-egress-to-y", "action": "Accept", "to": [{"namespaces": ns("y")}]}]}),
    );
    let mut idx = index(&[deny(50), pass(60), baseline.clone()]);
    check(
        "priority 50 deny wins over 60 pass",
        &idx,
        &[
            (
                "y/a",
                "x/a",
                80,
                TCP,
                OPEN,
                "deny denied-by-rule [admin:ClusterNetworkPolicy/priority-50-example#0(deny-all-ingress-from-y):deny]",
            ),
            (
                "x/b",
                "y/a",
                81,
                TCP,
                "deny denied-by-rule [admin:ClusterNetworkPolicy/priority-50-example#0(deny-all-egress-to-y):deny]",
                OPEN,
            ),
            ("z/a", "x/a", 80, TCP, OPEN, OPEN),
        ],
    );

    // The conformance test patches the priority; so does the index.
    let Some(Ok(moved)) = parse_policy(&pass(40)) else {
        panic!("valid")
    };
    idx.upsert(Ok(moved));
    assert_eq!(idx.policies().len(), 3, "replaced, not added");
    check(
        "priority 40 pass, then baseline accept",
        &idx,
        &[
            (
                "y/a",
                "x/a",
                80,
                TCP,
                OPEN,
                "allow allowed-by-rule [admin:ClusterNetworkPolicy/old-priority-60-new-priority-40-example#0(pass-all-ingress-from-y):pass, baseline:ClusterNetworkPolicy/default#0(allow-all-ingress-from-y):allow]",
            ),
            (
                "x/b",
                "y/a",
                8080,
                TCP,
                "allow allowed-by-rule [admin:ClusterNetworkPolicy/old-priority-60-new-priority-40-example#0(pass-all-egress-to-y):pass, baseline:ClusterNetworkPolicy/default#0(allow-all-egress-to-y):allow]",
                OPEN,
            ),
        ],
    );

    // A NetworkPolicy isolating x/a (allowing only z) decides before Baseline.
    let idx = index(&[
        deny(50),
        pass(40),
        baseline,
        np(
            "x",
            "allow-from-z",
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
                   "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "z"}}}]}]}),
        ),
    ]);
    check(
        "networkpolicy between admin and baseline",
        &idx,
        &[
            (
                "y/a",
                "x/a",
                80,
                TCP,
                OPEN,
                "deny isolated-no-match [admin:ClusterNetworkPolicy/old-priority-60-new-priority-40-example#0(pass-all-ingress-from-y):pass, default:NetworkPolicy/x/allow-from-z#-:deny]",
            ),
            (
                "y/a",
                "x/b",
                80,
                TCP,
                OPEN,
                "allow allowed-by-rule [admin:ClusterNetworkPolicy/old-priority-60-new-priority-40-example#0(pass-all-ingress-from-y):pass, baseline:ClusterNetworkPolicy/default#0(allow-all-ingress-from-y):allow]",
            ),
            (
                "z/c",
                "x/a",
                80,
                TCP,
                OPEN,
                "allow allowed-by-rule [default:NetworkPolicy/x/allow-from-z#0:allow]",
            ),
        ],
    );
}

/// v1alpha1: AdminNetworkPolicy (Allow/Deny/Pass, ports as portNumber,
/// portRange, namedPort; egress networks) and the singleton
/// BaselineAdminNetworkPolicy `default`.
#[test]
fn admin_and_baseline_admin_network_policy() {
    let admin = anp(
        "x-gate",
        10,
        json!({"subject": {"pods": {"namespaceSelector": ns("x"), "podSelector": {}}},
        "ingress": [
          {"name": "allow-y-a-80", "action": "Allow", "from": [{"pods": pods("y", "a")}],
           "ports": [{"portNumber": {"protocol": "TCP", "port": 80}}]},
          {"name": "allow-z-named-udp", "action": "Allow", "from": [{"namespaces": ns("z")}],
           "ports": [{"namedPort": "serve-81-udp"}]},
          {"name": "deny-y", "action": "Deny", "from": [{"namespaces": ns("y")}]},
          {"name": "pass-z-range", "action": "Pass", "from": [{"namespaces": ns("z")}],
           "ports": [{"portRange": {"protocol": "SCTP", "start": 80, "end": 81}}]}
        ],
        "egress": [
          {"name": "pass-docs-net", "action": "Pass", "to": [{"networks": ["192.0.2.0/24"]}]}
        ]}),
    );
    let baseline = banp(json!({"subject": {"namespaces": ns("x")},
      "ingress": [{"name": "deny-all", "action": "Deny", "from": [{"namespaces": {}}]}],
      "egress": [{"name": "deny-internet", "action": "Deny", "to": [{"networks": ["0.0.0.0/0"]}]}]}));
    let idx = index(&[admin.clone(), baseline.clone()]);
    let deny_all =
        "deny denied-by-rule [baseline:BaselineAdminNetworkPolicy/default#0(deny-all):deny]";
    let deny_internet =
        "deny denied-by-rule [baseline:BaselineAdminNetworkPolicy/default#0(deny-internet):deny]";
    check(
        "anp + banp",
        &idx,
        &[
            (
                "y/a",
                "x/c",
                80,
                TCP,
                OPEN,
                "allow allowed-by-rule [admin:AdminNetworkPolicy/x-gate#0(allow-y-a-80):allow]",
            ),
            (
                "y/a",
                "x/c",
                81,
                TCP,
                OPEN,
                "deny denied-by-rule [admin:AdminNetworkPolicy/x-gate#2(deny-y):deny]",
            ),
            (
                "y/b",
                "x/c",
                80,
                TCP,
                OPEN,
                "deny denied-by-rule [admin:AdminNetworkPolicy/x-gate#2(deny-y):deny]",
            ),
            // The named port resolves against x/b's container ports:
            // serve-81-udp is 81/UDP only.
            (
                "z/a",
                "x/b",
                81,
                UDP,
                OPEN,
                "allow allowed-by-rule [admin:AdminNetworkPolicy/x-gate#1(allow-z-named-udp):allow]",
            ),
            ("z/a", "x/b", 81, TCP, OPEN, deny_all),
            (
                "z/a",
                "x/b",
                80,
                SCTP,
                OPEN,
                "deny denied-by-rule [admin:AdminNetworkPolicy/x-gate#3(pass-z-range):pass, baseline:BaselineAdminNetworkPolicy/default#0(deny-all):deny]",
            ),
            // Pod to pod inside x: no admin rule; Baseline denies, egress
            // too: 0.0.0.0/0 covers pod addresses (as the API warns).
            ("x/a", "x/b", 80, TCP, deny_internet, deny_all),
            (
                "x/a",
                "ip:192.0.2.10",
                443,
                TCP,
                "deny denied-by-rule [admin:AdminNetworkPolicy/x-gate#0(pass-docs-net):pass, baseline:BaselineAdminNetworkPolicy/default#0(deny-internet):deny]",
                "allow not-subject []",
            ),
        ],
    );

    // A NetworkPolicy overrides Baseline: allowing x/a egress to the
    // documentation network and all ingress within x.
    let idx = index(&[
        admin,
        baseline,
        np(
            "x",
            "egress-docs",
            json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
                   "egress": [{"to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}]}]}),
        ),
        np(
            "x",
            "same-ns",
            json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}),
        ),
    ]);
    check(
        "anp + np + banp",
        &idx,
        &[
            (
                "x/a",
                "ip:192.0.2.10",
                443,
                TCP,
                "allow allowed-by-rule [admin:AdminNetworkPolicy/x-gate#0(pass-docs-net):pass, default:NetworkPolicy/x/egress-docs#0:allow]",
                "allow not-subject []",
            ),
            (
                "x/a",
                "x/b",
                80,
                TCP,
                "deny isolated-no-match [default:NetworkPolicy/x/egress-docs#-:deny]",
                "allow allowed-by-rule [default:NetworkPolicy/x/same-ns#0:allow]",
            ),
            (
                "x/b",
                "x/c",
                80,
                TCP,
                "deny denied-by-rule [baseline:BaselineAdminNetworkPolicy/default#0(deny-internet):deny]",
                "allow allowed-by-rule [default:NetworkPolicy/x/same-ns#0:allow]",
            ),
        ],
    );
}

/// Egress peers the identity index only partly knows: nodes (only the
/// hostname label is known) and domain names (flows carry addresses).
#[test]
fn nodes_and_domain_names_are_decided_or_indeterminate() {
    let idx = index(&[cnp(
        "egress-edges",
        "Admin",
        5,
        json!({"subject": {"namespaces": ns("x")},
        "egress": [
          {"name": "allow-example", "action": "Accept", "to": [{"domainNames": ["example.com", "*.example.org"]}]},
          {"name": "deny-nodes", "action": "Deny", "to": [{"nodes": {}}]},
          {"name": "deny-internet", "action": "Deny", "to": [{"networks": ["0.0.0.0/0", "::/0"]}]}
        ]}),
    )]);
    check(
        "edges",
        &idx,
        &[
            // A public address may be example.com: not provable either way.
            (
                "x/a",
                "ip:192.0.2.10",
                443,
                TCP,
                "deny indeterminate []",
                "allow not-subject []",
            ),
            // A pod is not a domain name answer; 0.0.0.0/0 matches pods too.
            (
                "x/a",
                "y/a",
                80,
                TCP,
                "deny denied-by-rule [admin:ClusterNetworkPolicy/egress-edges#2(deny-internet):deny]",
                OPEN,
            ),
            // A host-network pod is its node's address.
            (
                "x/a",
                "hostnet:y/a",
                80,
                TCP,
                "deny denied-by-rule [admin:ClusterNetworkPolicy/egress-edges#1(deny-nodes):deny]",
                "allow not-subject []",
            ),
        ],
    );
    let idx = index(&[cnp(
        "node-labels",
        "Admin",
        5,
        json!({"subject": {"namespaces": ns("x")},
          "egress": [{"action": "Deny", "to": [{"nodes": {"matchLabels": {"node-role.kubernetes.io/control-plane": ""}}}]}]}),
    )]);
    check(
        "node labels unknown",
        &idx,
        &[
            (
                "x/a",
                "hostnet:y/a",
                80,
                TCP,
                "deny indeterminate []",
                "allow not-subject []",
            ),
            ("x/a", "y/a", 80, TCP, OPEN, OPEN),
        ],
    );
}

#[test]
fn invalid_admin_policies_are_reported_and_flag_what_they_may_select() {
    let (idx, problems) = PolicyIndex::from_objects(&[
        // v1alpha2 says Accept, not Allow.
        cnp(
            "wrong-action",
            "Admin",
            1,
            json!({"subject": {"namespaces": ns("x")},
                   "ingress": [{"action": "Allow", "from": [{"namespaces": {}}]}]}),
        ),
        // A peer with two fields, or one the API does not know, fails closed.
        anp(
            "two-fields",
            2,
            json!({"subject": {"namespaces": ns("y")},
                   "egress": [{"action": "Deny", "to": [{"namespaces": {}, "networks": ["10.0.0.0/8"]}]}]}),
        ),
        json!({"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "BaselineAdminNetworkPolicy",
               "metadata": {"name": "not-default"}, "spec": {"subject": {"namespaces": {}}}}),
        cnp(
            "bad-priority",
            "Admin",
            2000,
            json!({"subject": {"namespaces": ns("z")}}),
        ),
    ]);
    let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        vec![
            "ClusterNetworkPolicy wrong-action: spec.ingress[0].action: \"Allow\" is not an action (Accept, Deny, Pass)",
            "AdminNetworkPolicy two-fields: spec.egress[0].to[0]: exactly one of namespaces, pods, nodes, networks, domainNames must be set",
            "BaselineAdminNetworkPolicy not-default: metadata.name: a BaselineAdminNetworkPolicy must be named \"default\"",
            "ClusterNetworkPolicy bad-priority: spec.priority: expected an integer 0-1000, found 2000",
        ]
    );
    // x/a is a subject of wrong-action (its subject parsed): indeterminate,
    // flagged once, never allowed. y/a's egress: two-fields may select it.
    // The evaluation stops there: the invalid Baseline policy is never
    // reached, so it is not flagged.
    let trace = explain(&idx, &flow("y/a", "x/a", 80, TCP), Observed::Delivered);
    assert_eq!(trace.enforced.ingress.reason, VerdictReason::Indeterminate);
    assert_eq!(trace.enforced.egress.reason, VerdictReason::Indeterminate);
    assert_eq!(trace.enforced.verdict, Verdict::Deny);
    assert_eq!(
        trace.mismatch, None,
        "indeterminate is not policy-not-enforced"
    );
    let mut flagged: Vec<(&str, PolicyKind)> = trace
        .invalid_policies
        .iter()
        .map(|p| (&*p.name, p.kind))
        .collect();
    flagged.sort();
    assert_eq!(
        flagged,
        vec![
            ("two-fields", PolicyKind::AdminNetworkPolicy),
            ("wrong-action", PolicyKind::ClusterNetworkPolicy),
        ]
    );
    // z/b <- z/c: bad-priority selects z (placed first in Admin).
    let trace = explain(&idx, &flow("z/c", "z/b", 80, TCP), Observed::Unknown);
    assert_eq!(trace.enforced.ingress.reason, VerdictReason::Indeterminate);
    assert_eq!(trace.enforced.egress.reason, VerdictReason::Indeterminate);
    let names: Vec<&str> = trace.invalid_policies.iter().map(|p| &*p.name).collect();
    assert_eq!(names, vec!["bad-priority"]);
}
