//! Calico (`projectcalico.org/v3`): tiers in order, policies in order
//! within a tier, first matching rule, Pass to the next tier, Log, the end
//! of a tier (defaultAction Deny or Pass), profiles when nothing applies;
//! rule criteria (selectors, namespaceSelector, serviceAccounts, nets,
//! ports); staged policies; bad input. Same x/y/z, a/b/c layout as the
//! NetworkPolicy tests.

use std::sync::Arc;

use serde_json::{Value, json};

use flowscribe_model::{EnrichedFlow, Observed, PodIdentity, PolicyKind, Verdict, VerdictReason};

use super::admin_tests::{index, summary};
use super::tests::{SCTP, TCP, UDP, flow, np};
use crate::{PolicyIndex, explain};

fn calico_np(ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
           "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

fn gnp(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
           "metadata": {"name": name}, "spec": spec})
}

fn tier(name: &str, order: Option<f64>, default_action: Option<&str>) -> Value {
    let mut spec = json!({});
    if let Some(o) = order {
        spec["order"] = json!(o);
    }
    if let Some(a) = default_action {
        spec["defaultAction"] = json!(a);
    }
    json!({"apiVersion": "projectcalico.org/v3", "kind": "Tier",
           "metadata": {"name": name}, "spec": spec})
}

/// The flow with the source pod's service account set.
fn with_source_sa(mut f: EnrichedFlow, sa: &str) -> EnrichedFlow {
    let pod = f.source.pod.as_deref().expect("a pod");
    f.source.pod = Some(Arc::new(PodIdentity {
        service_account: Some(Arc::from(sa)),
        ..pod.clone()
    }));
    f
}

type Row<'a> = (&'a str, &'a str, u16, u8, &'a str, &'a str);

fn check_flows(name: &str, idx: &PolicyIndex, rows: &[(EnrichedFlow, &str, &str)]) {
    let mut failures = Vec::new();
    for (f, egress, ingress) in rows {
        let trace = explain(idx, f, Observed::Unknown);
        let got = (
            summary(&trace.enforced.egress),
            summary(&trace.enforced.ingress),
        );
        if got != (egress.to_string(), ingress.to_string()) {
            let k = f.flow.key;
            failures.push(format!(
                "{name}: {} -> {}:{}/{}\n  egress  want {egress}\n          got  {}\n  ingress want {ingress}\n          got  {}",
                k.src_addr, k.dst_addr, k.dst_port, k.protocol, got.0, got.1
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn check(name: &str, idx: &PolicyIndex, rows: &[Row<'_>]) {
    let rows: Vec<(EnrichedFlow, &str, &str)> = rows
        .iter()
        .map(|(from, to, port, proto, e, i)| (flow(from, to, *port, *proto), *e, *i))
        .collect();
    check_flows(name, idx, &rows);
}

const PROFILE: &str = "allow profile-allow []";
const SECURITY_PASS: &str = "security:GlobalNetworkPolicy/security.pass-rest#0:pass";

/// Tiers security (100) -> platform (200, defaultAction Pass) -> default;
/// inside default a Calico policy (order 500) before the Kubernetes
/// NetworkPolicies (order 1000).
#[test]
fn tiers_order_pass_log_and_end_of_tier() {
    let idx = index(&[
        tier("security", Some(100.0), None),
        tier("platform", Some(200.0), Some("Pass")),
        gnp(
            "security.quarantine",
            json!({"tier": "security", "order": 1, "selector": "projectcalico.org/namespace == 'z'",
                   "types": ["Ingress", "Egress"],
                   "ingress": [{"action": "Deny"}], "egress": [{"action": "Deny"}]}),
        ),
        gnp(
            "security.pass-rest",
            json!({"tier": "security", "order": 2, "selector": "all()",
                   "ingress": [{"action": "Pass"}], "egress": [{"action": "Pass"}]}),
        ),
        calico_np(
            "x",
            "platform.allow-dns",
            json!({"tier": "platform", "order": 10, "selector": "all()", "types": ["Egress"],
                   "egress": [{"action": "Allow", "protocol": "UDP", "destination": {"ports": [53]}}]}),
        ),
        calico_np(
            "x",
            "default.x-a-ingress",
            json!({"order": 500, "selector": "pod == 'a'",
                   "ingress": [
                     {"action": "Log", "source": {"selector": "pod == 'b'"}},
                     {"action": "Deny", "protocol": "TCP",
                      "source": {"namespaceSelector": "ns == 'y'"},
                      "destination": {"ports": ["80:81"]}}]}),
        ),
        np(
            "x",
            "allow-from-y",
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
                   "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}),
        ),
    ]);
    let security_then_profile = format!("allow profile-allow [{SECURITY_PASS}]");
    let spp = security_then_profile.as_str();
    let x_b_egress = format!(
        "allow profile-allow [{SECURITY_PASS}, platform:NetworkPolicy/x/platform.allow-dns#-:pass]"
    );
    let a_deny = format!(
        "deny denied-by-rule [{SECURITY_PASS}, default:NetworkPolicy/x/default.x-a-ingress#1:deny]"
    );
    let a_end = format!(
        "deny end-of-tier-deny [{SECURITY_PASS}, default:NetworkPolicy/x/default.x-a-ingress#0:log, default:NetworkPolicy/x/default.x-a-ingress#-:deny, default:NetworkPolicy/x/allow-from-y#-:deny]"
    );
    let a_knp = format!(
        "allow allowed-by-rule [{SECURITY_PASS}, default:NetworkPolicy/x/allow-from-y#0:allow]"
    );
    let dns = format!(
        "allow allowed-by-rule [{SECURITY_PASS}, platform:NetworkPolicy/x/platform.allow-dns#0:allow]"
    );
    check(
        "tiers",
        &idx,
        &[
            // Quarantined z: the first tier decides, later tiers never run.
            (
                "z/a",
                "x/b",
                80,
                TCP,
                "deny denied-by-rule [security:GlobalNetworkPolicy/security.quarantine#0:deny]",
                spp,
            ),
            // A Calico Deny at order 500 beats the NetworkPolicy allow at 1000.
            ("y/a", "x/a", 80, TCP, spp, &a_deny),
            // Log records and goes on; nothing decides: end of the default tier.
            ("x/b", "x/a", 80, TCP, &x_b_egress, &a_end),
            // The Deny rule is TCP only: the NetworkPolicy allows UDP.
            ("y/a", "x/a", 81, UDP, spp, &a_knp),
            ("x/c", "y/c", 53, UDP, &dns, spp),
        ],
    );
}

#[test]
fn policy_order_then_name_and_nil_order_last() {
    let deny_80 = json!([{"action": "Deny", "protocol": "TCP", "destination": {"ports": [80]}}]);
    let allow = json!([{"action": "Allow"}]);
    let idx = index(&[
        // Same order: by name, so a-deny first. No order: after all.
        calico_np("y", "b-allow", json!({"order": 10, "ingress": allow})),
        calico_np("y", "a-deny", json!({"order": 10, "ingress": deny_80})),
        calico_np("y", "last-deny", json!({"ingress": [{"action": "Deny"}]})),
        calico_np(
            "y",
            "first-pass",
            json!({"order": 1, "selector": "pod == 'c'", "ingress": [{"action": "Pass"}]}),
        ),
    ]);
    check(
        "order",
        &idx,
        &[
            (
                "x/a",
                "y/a",
                80,
                TCP,
                PROFILE,
                "deny denied-by-rule [default:NetworkPolicy/y/a-deny#0:deny]",
            ),
            (
                "x/a",
                "y/a",
                81,
                TCP,
                PROFILE,
                "allow allowed-by-rule [default:NetworkPolicy/y/b-allow#0:allow]",
            ),
            // Pass in the last Calico tier: on to the profiles (allow).
            (
                "x/a",
                "y/c",
                80,
                TCP,
                PROFILE,
                "allow profile-allow [default:NetworkPolicy/y/first-pass#0:pass]",
            ),
        ],
    );
    // Tiers: an unordered tier comes after the ordered ones; a tier that
    // applies but decides nothing denies.
    let idx = index(&[
        tier("late", None, None),
        tier("early", Some(1.0), Some("Pass")),
        gnp(
            "late.allow-80",
            json!({"tier": "late", "selector": "pod == 'a'",
                                    "ingress": [{"action": "Allow", "protocol": "TCP", "destination": {"ports": [80]}}]}),
        ),
        gnp(
            "early.nothing",
            json!({"tier": "early", "selector": "pod == 'a'",
                                    "ingress": [{"action": "Deny", "source": {"nets": ["203.0.113.0/24"]}}]}),
        ),
    ]);
    check(
        "tier order",
        &idx,
        &[
            (
                "x/b",
                "y/a",
                80,
                TCP,
                PROFILE,
                "allow allowed-by-rule [early:GlobalNetworkPolicy/early.nothing#-:pass, late:GlobalNetworkPolicy/late.allow-80#0:allow]",
            ),
            (
                "x/b",
                "y/a",
                81,
                TCP,
                PROFILE,
                "deny end-of-tier-deny [early:GlobalNetworkPolicy/early.nothing#-:pass, late:GlobalNetworkPolicy/late.allow-80#-:deny]",
            ),
            ("x/b", "y/b", 81, TCP, PROFILE, PROFILE),
        ],
    );
}

/// Rule criteria: nets/notNets, named ports, notProtocol, namespaceSelector,
/// selector/notSelector, notPorts, ipVersion; a GlobalNetworkPolicy's own
/// namespaceSelector.
#[test]
fn rule_criteria() {
    let idx = index(&[gnp(
        "edges",
        json!({"order": 1, "selector": "pod in {'a', 'b'}", "namespaceSelector": "ns == 'x'",
        "types": ["Egress"],
        "egress": [
          {"action": "Deny", "destination": {"nets": ["192.0.2.0/24"], "notNets": ["192.0.2.128/25"]}},
          {"action": "Allow", "protocol": "TCP", "destination": {"ports": ["serve-80-tcp"]}},
          {"action": "Deny", "notProtocol": "TCP", "destination": {"namespaceSelector": "ns == 'y'"}},
          {"action": "Allow", "protocol": "SCTP",
           "destination": {"selector": "has(pod) && pod not in {'a'}", "namespaceSelector": "all()",
                           "notPorts": [81]}},
          {"action": "Allow", "ipVersion": 6}
        ]}),
    )]);
    let end = "deny end-of-tier-deny [default:GlobalNetworkPolicy/edges#-:deny]";
    check(
        "criteria",
        &idx,
        &[
            (
                "x/a",
                "ip:192.0.2.10",
                443,
                TCP,
                "deny denied-by-rule [default:GlobalNetworkPolicy/edges#0:deny]",
                "allow not-subject []",
            ),
            (
                "x/a",
                "ip:192.0.2.200",
                443,
                TCP,
                end,
                "allow not-subject []",
            ),
            (
                "x/a",
                "y/a",
                80,
                TCP,
                "allow allowed-by-rule [default:GlobalNetworkPolicy/edges#1:allow]",
                PROFILE,
            ),
            ("x/a", "y/a", 81, TCP, end, PROFILE),
            (
                "x/a",
                "y/a",
                81,
                UDP,
                "deny denied-by-rule [default:GlobalNetworkPolicy/edges#2:deny]",
                PROFILE,
            ),
            (
                "x/b",
                "z/b",
                80,
                SCTP,
                "allow allowed-by-rule [default:GlobalNetworkPolicy/edges#3:allow]",
                PROFILE,
            ),
            ("x/b", "z/a", 80, SCTP, end, PROFILE),
            ("x/b", "z/b", 81, SCTP, end, PROFILE),
            (
                "x/b",
                "ip:2001:db8::1",
                443,
                TCP,
                "allow allowed-by-rule [default:GlobalNetworkPolicy/edges#4:allow]",
                "allow not-subject []",
            ),
            // Not selected: pod c, or pods outside x.
            (
                "x/c",
                "ip:192.0.2.10",
                443,
                TCP,
                PROFILE,
                "allow not-subject []",
            ),
            (
                "y/a",
                "ip:192.0.2.10",
                443,
                TCP,
                PROFILE,
                "allow not-subject []",
            ),
        ],
    );
}

/// serviceAccounts in a rule and serviceAccountSelector on a policy: the
/// name is known, a service account's labels are not.
#[test]
fn service_accounts() {
    let idx = index(&[
        calico_np(
            "y",
            "sa-gate",
            json!({"selector": "pod == 'b'",
                   "ingress": [{"action": "Allow", "source": {"serviceAccounts": {"names": ["frontend"]}}}]}),
        ),
        gnp(
            "frontend-egress",
            json!({"serviceAccountSelector": "projectcalico.org/name == 'frontend'", "types": ["Egress"],
                   "egress": [{"action": "Deny", "destination": {"nets": ["203.0.113.0/24"]}},
                              {"action": "Allow"}]}),
        ),
    ]);
    let f = |from: &str, to: &str, sa: Option<&str>| {
        let f = flow(from, to, 80, TCP);
        match sa {
            Some(sa) => with_source_sa(f, sa),
            None => f,
        }
    };
    // Source selectors of a namespaced policy (serviceAccounts too) stay
    // in the policy's namespace: the clients are in y.
    let frontend_egress =
        "allow allowed-by-rule [default:GlobalNetworkPolicy/frontend-egress#1:allow]";
    check_flows(
        "service accounts",
        &idx,
        &[
            (
                f("y/a", "y/b", Some("frontend")),
                frontend_egress,
                "allow allowed-by-rule [default:NetworkPolicy/y/sa-gate#0:allow]",
            ),
            (
                f("y/a", "y/b", Some("backend")),
                PROFILE,
                "deny end-of-tier-deny [default:NetworkPolicy/y/sa-gate#-:deny]",
            ),
            (
                f("x/a", "y/b", Some("frontend")),
                frontend_egress,
                "deny end-of-tier-deny [default:NetworkPolicy/y/sa-gate#-:deny]",
            ),
            // Unknown service account: neither the rule nor the policy
            // selector can be decided.
            (
                f("y/a", "y/b", None),
                "deny indeterminate []",
                "deny indeterminate []",
            ),
            (
                f("x/a", "ip:203.0.113.9", Some("frontend")),
                "deny denied-by-rule [default:GlobalNetworkPolicy/frontend-egress#0:deny]",
                "allow not-subject []",
            ),
            (
                f("x/a", "ip:203.0.113.9", Some("backend")),
                PROFILE,
                "allow not-subject []",
            ),
        ],
    );
}

#[test]
fn staged_calico_policies_give_the_pending_verdict() {
    let idx = index(&[
        calico_np(
            "y",
            "guard",
            json!({"selector": "pod == 'a'",
                                       "ingress": [{"action": "Allow", "source": {"namespaceSelector": "ns == 'x'"}}]}),
        ),
        gnp(
            "deny-z",
            json!({"order": 1, "selector": "projectcalico.org/namespace == 'z'",
                             "types": ["Egress"], "egress": [{"action": "Deny"}]}),
        ),
        // Tighten guard to port 81; delete deny-z.
        json!({"apiVersion": "projectcalico.org/v3", "kind": "StagedNetworkPolicy",
               "metadata": {"name": "guard", "namespace": "y"},
               "spec": {"stagedAction": "Set", "selector": "pod == 'a'",
                        "ingress": [{"action": "Allow", "protocol": "TCP",
                                     "source": {"namespaceSelector": "ns == 'x'"},
                                     "destination": {"ports": [81]}}]}}),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "StagedGlobalNetworkPolicy",
               "metadata": {"name": "deny-z"}, "spec": {"stagedAction": "Delete"}}),
    ]);
    let trace = explain(&idx, &flow("x/b", "y/a", 80, TCP), Observed::Delivered);
    assert_eq!(
        summary(&trace.enforced.ingress),
        "allow allowed-by-rule [default:NetworkPolicy/y/guard#0:allow]"
    );
    let pending = trace.pending.as_ref().expect("staged changes the flow");
    assert_eq!(
        summary(&pending.ingress),
        "deny end-of-tier-deny [default:StagedNetworkPolicy/y/guard#-:deny]"
    );
    assert!(trace.would_change());
    assert_eq!(trace.mismatch, None, "the enforced verdict is allow");

    let trace = explain(&idx, &flow("z/c", "y/b", 80, TCP), Observed::Unknown);
    assert_eq!(
        summary(&trace.enforced.egress),
        "deny denied-by-rule [default:GlobalNetworkPolicy/deny-z#0:deny]"
    );
    let pending = trace.pending.as_ref().expect("the delete changes the flow");
    assert_eq!(summary(&pending.egress), PROFILE);
    assert_eq!(pending.verdict, Verdict::Allow);
    assert!(trace.would_change());
    // Staged policies never take part in the enforced evaluation.
    assert!(
        idx.policies()
            .iter()
            .any(|p| p.reference.kind == PolicyKind::CalicoStagedNetworkPolicy)
    );
}

#[test]
fn bad_input_is_reported_once_flagged_and_never_allows() {
    let (idx, problems) = PolicyIndex::from_objects(&[
        tier("broken", Some(5.0), Some("Allow")),
        calico_np(
            "y",
            "bad-selector",
            json!({"order": 10, "selector": "pod == 'b' &&",
                                               "ingress": [{"action": "Allow"}]}),
        ),
        calico_np(
            "y",
            "bad-rule",
            json!({"order": 20, "selector": "pod == 'c'",
                                           "ingress": [{"action": "Allow", "sauce": {}}]}),
        ),
        calico_np(
            "y",
            "fine",
            json!({"order": 30, "ingress": [{"action": "Allow"}]}),
        ),
        gnp(
            "in-broken-tier",
            json!({"tier": "broken", "selector": "pod == 'a'", "ingress": [{"action": "Allow"}]}),
        ),
        gnp(
            "in-missing-tier",
            json!({"tier": "nowhere", "selector": "projectcalico.org/namespace == 'z'", "ingress": [{"action": "Allow"}]}),
        ),
    ]);
    let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        vec![
            "NetworkPolicy y/bad-selector: spec.selector: invalid selector at position 13: unexpected end of selector, expected an expression in \"pod == 'b' &&\"",
            "NetworkPolicy y/bad-rule: spec.ingress[0].sauce: unknown field (known: action, protocol, notProtocol, icmp, notICMP, ipVersion, source, destination, http, metadata)",
            "Tier broken: spec.defaultAction: \"Allow\" is not a tier default action (Deny, Pass)",
            "GlobalNetworkPolicy in-missing-tier: spec.tier: tier \"nowhere\" is not defined (no Tier object)",
        ]
    );
    // (destination, ingress reason, flagged policies)
    let cases = [
        // bad-selector may select any pod of y and comes first: y/b, y/c.
        ("y/b", VerdictReason::Indeterminate, vec!["bad-selector"]),
        ("y/c", VerdictReason::Indeterminate, vec!["bad-selector"]),
        // y/a: the broken tier's policy selects it.
        ("y/a", VerdictReason::Indeterminate, vec!["in-broken-tier"]),
        // z/b: the policy of the missing tier selects it.
        ("z/b", VerdictReason::Indeterminate, vec!["in-missing-tier"]),
        // x/b: nothing invalid can select it; no policy applies, so its
        // profile allows.
        ("x/b", VerdictReason::ProfileAllow, vec![]),
    ];
    for (to, reason, flagged) in cases {
        let trace = explain(&idx, &flow("x/a", to, 80, TCP), Observed::Delivered);
        assert_eq!(trace.enforced.ingress.reason, reason, "{to}");
        let names: Vec<&str> = trace.invalid_policies.iter().map(|p| &*p.name).collect();
        assert_eq!(names, flagged, "{to}");
        if reason == VerdictReason::Indeterminate {
            assert_eq!(trace.enforced.verdict, Verdict::Deny, "{to}: never allowed");
            assert_eq!(trace.mismatch, None, "{to}");
        }
    }
}

/// Changing policies one at a time gives the same answers as building the
/// index from the final set: every kind, new and replaced, enforced and
/// staged, including a change of tier and order.
#[test]
fn incremental_changes_agree_with_a_full_rebuild() {
    use crate::parse_policy;
    let base = vec![
        tier("security", Some(100.0), None),
        np(
            "y",
            "allow-x",
            json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "x"}}}]}]}),
        ),
        calico_np(
            "y",
            "guard",
            json!({"order": 10, "selector": "pod == 'a'", "ingress": [{"action": "Deny", "protocol": "TCP", "destination": {"ports": [81]}}]}),
        ),
        gnp(
            "security.z",
            json!({"tier": "security", "selector": "projectcalico.org/namespace == 'z'", "types": ["Egress"], "egress": [{"action": "Deny"}]}),
        ),
        json!({"apiVersion": "flowscribe.dev/v1alpha1", "kind": "StagedNetworkPolicy",
               "metadata": {"name": "allow-x", "namespace": "y"}, "spec": {"podSelector": {}}}),
    ];
    let changes = vec![
        // Replace in place: the NetworkPolicy now allows z only.
        np(
            "y",
            "allow-x",
            json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "z"}}}]}]}),
        ),
        // Move the Calico policy to another tier and order.
        calico_np(
            "y",
            "guard",
            json!({"tier": "security", "order": 1, "selector": "pod == 'b'", "ingress": [{"action": "Deny"}]}),
        ),
        // A cluster-scoped selector on another label: the policy must be
        // filed anew (x/a is selected now, z/b no longer).
        gnp(
            "security.z",
            json!({"tier": "security", "selector": "pod == 'a'", "types": ["Egress"], "egress": [{"action": "Deny"}]}),
        ),
        // New policies of other kinds.
        gnp(
            "security.pass-all",
            json!({"tier": "security", "order": 50, "ingress": [{"action": "Pass"}], "egress": [{"action": "Pass"}]}),
        ),
        json!({"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
               "metadata": {"name": "deny-x-to-y"},
               "spec": {"tier": "Admin", "priority": 1, "subject": {"namespaces": {"matchLabels": {"ns": "y"}}},
                        "ingress": [{"action": "Deny", "from": [{"namespaces": {"matchLabels": {"ns": "x"}}}],
                                     "protocols": [{"udp": {}}]}]}}),
        // A staged change of the staged policy.
        json!({"apiVersion": "flowscribe.dev/v1alpha1", "kind": "StagedNetworkPolicy",
               "metadata": {"name": "allow-x", "namespace": "y"},
               "spec": {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}}),
    ];
    let mut live = index(&base);
    let mut all = base.clone();
    let flows = || {
        let mut out = Vec::new();
        for from in ["x/a", "z/b", "y/c"] {
            for to in ["y/a", "y/b", "x/c"] {
                for (port, proto) in [(80, TCP), (81, TCP), (80, UDP)] {
                    out.push(flow(from, to, port, proto));
                }
            }
        }
        out
    };
    // The same flows (the same identities) throughout: answers before a
    // change warm the selection cache, which the change must invalidate.
    let flows = flows();
    for change in changes {
        for f in &flows {
            explain(&live, f, Observed::Unknown);
        }
        live.upsert(parse_policy(&change).expect("a policy"));
        let name = change["metadata"]["name"].clone();
        let kind = change["kind"].clone();
        all.retain(|o| !(o["metadata"]["name"] == name && o["kind"] == kind));
        all.push(change);
        let full = index(&all);
        assert_eq!(live.policies().len(), full.policies().len());
        let (a, b): (Vec<_>, Vec<_>) = flows
            .iter()
            .map(|f| {
                (
                    explain(&live, f, Observed::Unknown),
                    explain(&full, f, Observed::Unknown),
                )
            })
            .unzip();
        assert_eq!(a, b);
    }
}

/// The per-pair memo keys on what the evaluation reads: the same two pods
/// answer differently by port, and by source port once a rule matches it.
#[test]
fn memoised_pairs_keep_ports_apart() {
    let idx = index(&[gnp(
        "dns-replies-only",
        json!({"selector": "pod == 'a'",
               "ingress": [{"action": "Allow", "protocol": "UDP", "source": {"ports": [53]}},
                           {"action": "Allow", "protocol": "TCP", "destination": {"ports": [80]}}]}),
    )]);
    let from_53 = {
        let mut f = flow("x/b", "y/a", 5353, UDP);
        f.flow.key.src_port = 53;
        f
    };
    // The same identities (the same Arcs) with other ports.
    let mut from_other = from_53.clone();
    from_other.flow.key.src_port = 40000;
    let mut tcp_80 = from_53.clone();
    tcp_80.flow.key.protocol = TCP;
    tcp_80.flow.key.dst_port = 80;
    let mut tcp_81 = tcp_80.clone();
    tcp_81.flow.key.dst_port = 81;
    for _ in 0..2 {
        let reason = |f: &EnrichedFlow| explain(&idx, f, Observed::Unknown).enforced.ingress.reason;
        assert_eq!(reason(&from_53), VerdictReason::AllowedByRule);
        assert_eq!(reason(&from_other), VerdictReason::EndOfTierDeny);
        assert_eq!(reason(&tcp_80), VerdictReason::AllowedByRule);
        assert_eq!(reason(&tcp_81), VerdictReason::EndOfTierDeny);
    }
}
