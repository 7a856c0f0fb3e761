//! The memos must never change an answer: pods that share an identity
//! (replicas) share one evaluation only when nothing the evaluation reads
//! tells them apart — addresses by the CIDRs that contain them, declared
//! ports, service accounts, namespace labels — and every memoised trace
//! equals the trace of an index that has seen nothing before.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use flowscribe_model::{
    Endpoint, EndpointKind, EnrichedFlow, Observed, PodIdentity, ServiceRef, VerdictReason,
};

use super::admin_tests::index;
use super::tests::{TCP, UDP, flow, np};
use crate::{PolicyIndex, explain};

/// A replica of Deployment `app` in namespace `ns`: its own name, uid and
/// node (which policy never reads), the Deployment's labels, and the
/// given service account and declared ports.
fn replica(ns: &str, app: &str, n: usize, sa: &str, port_name: &str) -> Arc<PodIdentity> {
    Arc::new(PodIdentity {
        name: Arc::from(format!("{app}-{n}")),
        uid: Arc::from(format!("uid-{ns}-{app}-{n}")),
        namespace: Arc::from(ns),
        labels: Arc::new(BTreeMap::from([
            ("app".to_string(), app.to_string()),
            ("pod-template-hash".to_string(), format!("{app}-7d9f")),
        ])),
        service_account: Some(Arc::from(sa)),
        node: Some(Arc::from(format!("node-{}", n % 3))),
        workload: None,
        namespace_labels: Arc::new(BTreeMap::from([("team".to_string(), ns.to_string())])),
        ports: Arc::from(vec![(Arc::from(port_name), 8080u16, TCP)]),
    })
}

fn endpoint(pod: &Arc<PodIdentity>) -> Endpoint {
    let mut e = Endpoint::of_kind(EndpointKind::Pod);
    e.pod = Some(pod.clone());
    e
}

fn pod_flow(
    (src, src_addr): (&Arc<PodIdentity>, &str),
    (dst, dst_addr): (&Arc<PodIdentity>, &str),
    port: u16,
    protocol: u8,
) -> EnrichedFlow {
    let mut f = flow("x/a", "x/b", port, protocol);
    f.flow.key.src_addr = src_addr.parse().expect("address");
    f.flow.key.dst_addr = dst_addr.parse().expect("address");
    f.source = endpoint(src);
    f.destination = endpoint(dst);
    f
}

fn gnp(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
           "metadata": {"name": name}, "spec": spec})
}

/// Two replicas of one Deployment, the same labels and everything else
/// policy reads, at addresses on either side of an ipBlock `except`: the
/// first allowed, the second denied, whichever is asked first. They share
/// one interned identity, not one answer.
#[test]
fn replicas_share_an_identity_but_not_an_ipblock_answer() {
    let idx = index(&[np(
        "y",
        "from-inside-only",
        json!({"podSelector": {"matchLabels": {"app": "api"}},
               "ingress": [{"from": [{"ipBlock": {"cidr": "10.1.0.0/16", "except": ["10.1.128.0/17"]}}]}]}),
    )]);
    let web_1 = replica("x", "web", 1, "web", "http");
    let web_2 = replica("x", "web", 2, "web", "http");
    let api = replica("y", "api", 1, "api", "http");
    let inside = pod_flow((&web_1, "10.1.0.5"), (&api, "10.2.0.1"), 8080, TCP);
    let excepted = pod_flow((&web_2, "10.1.200.5"), (&api, "10.2.0.1"), 8080, TCP);
    for order in [[&inside, &excepted], [&excepted, &inside]] {
        let idx = index(&[np(
            "y",
            "from-inside-only",
            json!({"podSelector": {"matchLabels": {"app": "api"}},
                   "ingress": [{"from": [{"ipBlock": {"cidr": "10.1.0.0/16", "except": ["10.1.128.0/17"]}}]}]}),
        )]);
        let reasons: Vec<VerdictReason> = order
            .iter()
            .map(|f| explain(&idx, f, Observed::Unknown).enforced.ingress.reason)
            .collect();
        let expected = if std::ptr::eq(order[0], &inside) {
            [VerdictReason::AllowedByRule, VerdictReason::IsolatedNoMatch]
        } else {
            [VerdictReason::IsolatedNoMatch, VerdictReason::AllowedByRule]
        };
        assert_eq!(reasons, expected);
        assert_eq!(
            idx.interned_identities(),
            2,
            "web replicas are one identity"
        );
    }
    // Within one address class, a replica reuses the first one's
    // evaluation: the same answer, and still two identities only.
    let web_3 = replica("x", "web", 3, "web", "http");
    let same_class = pod_flow((&web_3, "10.1.0.77"), (&api, "10.2.0.1"), 8080, TCP);
    assert_eq!(
        explain(&idx, &inside, Observed::Unknown),
        explain(&idx, &same_class, Observed::Unknown)
    );
    assert_eq!(idx.interned_identities(), 2);
}

/// Replicas whose service account or declared ports differ (a rollout in
/// progress) are different identities, and get their own answers.
#[test]
fn what_rules_read_of_a_pod_keeps_identities_apart() {
    let idx = index(&[
        np(
            "y",
            "named-port",
            json!({"podSelector": {"matchLabels": {"app": "api"}},
                   "ingress": [{"ports": [{"port": "http"}]}]}),
        ),
        gnp(
            "by-service-account",
            json!({"order": 1, "selector": "app == 'api'",
                   "ingress": [{"action": "Deny", "source": {"serviceAccounts": {"names": ["legacy"]}}}]}),
        ),
    ]);
    let web = replica("x", "web", 1, "web", "http");
    let web_legacy = replica("x", "web", 2, "legacy", "http");
    let api_http = replica("y", "api", 1, "api", "http");
    let api_renamed = replica("y", "api", 2, "api", "web");
    let cases = [
        (&web, &api_http, VerdictReason::AllowedByRule),
        // The Calico policy applied too: the default tier ends in a deny.
        (&web, &api_renamed, VerdictReason::EndOfTierDeny),
        (&web_legacy, &api_http, VerdictReason::DeniedByRule),
        (&web_legacy, &api_renamed, VerdictReason::DeniedByRule),
    ];
    for _ in 0..2 {
        for (src, dst, reason) in &cases {
            let f = pod_flow((src, "10.1.0.5"), (dst, "10.2.0.1"), 8080, TCP);
            assert_eq!(
                explain(&idx, &f, Observed::Unknown).enforced.ingress.reason,
                *reason,
                "{} -> {}",
                src.name,
                dst.name
            );
        }
    }
    assert_eq!(idx.interned_identities(), 4);
}

/// Every kind of policy, every address class, Services with a backend:
/// the memoised trace of each flow, asked twice and after its replicas,
/// equals the trace from an index that has memoised nothing.
#[test]
fn memoised_traces_equal_fresh_evaluations() {
    let objects = vec![
        json!({"apiVersion": "projectcalico.org/v3", "kind": "Tier",
               "metadata": {"name": "security"}, "spec": {"order": 100}}),
        np(
            "y",
            "api-from-web",
            json!({"podSelector": {"matchLabels": {"app": "api"}},
                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}},
                                          "namespaceSelector": {"matchLabels": {"team": "x"}}},
                                         {"ipBlock": {"cidr": "10.9.0.0/16", "except": ["10.9.9.0/24"]}}],
                                "ports": [{"port": "http"}, {"protocol": "UDP", "port": 53}]}]}),
        ),
        np(
            "x",
            "web-egress",
            json!({"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"],
                   "egress": [{"to": [{"ipBlock": {"cidr": "10.2.0.0/16"}}]}]}),
        ),
        gnp(
            "security.quarantine",
            json!({"tier": "security", "order": 1, "selector": "app == 'db' || pcns.team == 'z'",
                   "types": ["Ingress", "Egress"],
                   "ingress": [{"action": "Deny", "source": {"nets": ["10.1.0.0/24"]}},
                               {"action": "Allow", "protocol": "TCP", "source": {"notNets": ["10.1.0.0/16"]}},
                               {"action": "Pass"}],
                   "egress": [{"action": "Log"}, {"action": "Pass"}]}),
        ),
        json!({"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
               "metadata": {"name": "no-metadata"},
               "spec": {"priority": 5, "subject": {"namespaces": {}},
                        "egress": [{"name": "deny-range", "action": "Deny",
                                    "to": [{"networks": ["10.2.128.0/17"]}]}]}}),
    ];
    let (memoised, problems) = PolicyIndex::from_objects(&objects);
    assert!(problems.is_empty(), "{problems:?}");
    let mut pods = Vec::new();
    for (ns, app, sa) in [("x", "web", "web"), ("y", "api", "api"), ("z", "db", "db")] {
        for n in 0..3 {
            let port = if n == 2 { "metrics" } else { "http" };
            pods.push(replica(ns, app, n, sa, port));
        }
    }
    // Source addresses on either side of every CIDR boundary that matters
    // to a source (10.1.0.0/24, 10.1.0.0/16, 10.9.0.0/16 except
    // 10.9.9.0/24), destination addresses around 10.2.0.0/16 and
    // 10.2.128.0/17; and one IPv6 pair.
    let sources = ["10.1.0.5", "10.1.3.5", "10.9.1.1", "10.9.9.9", "192.0.2.1"];
    let destinations = ["10.2.0.9", "10.2.200.1", "10.3.0.1"];
    let mut addresses: Vec<(&str, &str)> = sources
        .iter()
        .flat_map(|s| destinations.iter().map(move |d| (*s, *d)))
        .collect();
    addresses.push(("fd00::1", "fd00::2"));
    let mut flows = Vec::new();
    for (i, src) in pods.iter().enumerate() {
        for (j, dst) in pods.iter().enumerate() {
            for (src_addr, dst_addr) in &addresses {
                for (port, protocol) in [(8080, TCP), (53, UDP), (9090, TCP)] {
                    let mut f = pod_flow((src, src_addr), (dst, dst_addr), port, protocol);
                    if (i + j) % 4 == 0 {
                        // Reached through a Service whose backend is known.
                        f.destination.kind = EndpointKind::Service;
                        f.destination.service = Some(Arc::new(ServiceRef {
                            name: Arc::from("svc"),
                            namespace: dst.namespace.clone(),
                            port_name: None,
                        }));
                    }
                    flows.push(f);
                }
            }
        }
    }
    let mut allowed = 0;
    for round in 0..2 {
        for f in &flows {
            let (fresh, _) = PolicyIndex::from_objects(&objects);
            let expected = explain(&fresh, f, Observed::Unknown);
            let got = explain(&memoised, f, Observed::Unknown);
            assert_eq!(
                got,
                expected,
                "round {round}: {} {} -> {} {} {}/{}",
                f.source.pod.as_ref().map_or("-", |p| &p.name),
                f.flow.key.src_addr,
                f.destination.pod.as_ref().map_or("-", |p| &p.name),
                f.flow.key.dst_addr,
                f.flow.key.dst_port,
                f.flow.key.protocol
            );
            allowed += usize::from(got.enforced.verdict.as_str() == "allow");
        }
    }
    // Both verdicts occur, so the comparison covers both.
    assert!(allowed > 0 && allowed < 2 * flows.len(), "{allowed}");
    // 9 pods, 6 identities: replicas 0 and 1 of each Deployment share one.
    assert_eq!(memoised.interned_identities(), 6);
}

/// A policy change forgets memoised evaluations (their answer may change)
/// but keeps the interned identities.
#[test]
fn a_changed_policy_is_seen_by_memoised_pairs() {
    let mut idx = index(&[]);
    let web = replica("x", "web", 1, "web", "http");
    let api = replica("y", "api", 1, "api", "http");
    let f = pod_flow((&web, "10.1.0.5"), (&api, "10.2.0.1"), 8080, TCP);
    let reason = |idx: &PolicyIndex| explain(idx, &f, Observed::Unknown).enforced.ingress.reason;
    assert_eq!(reason(&idx), VerdictReason::NotIsolatedDefaultAllow);
    let deny: Value = np("y", "deny-all", json!({"podSelector": {}, "ingress": []}));
    idx.upsert(crate::parse_policy(&deny).expect("a policy"));
    assert_eq!(reason(&idx), VerdictReason::IsolatedNoMatch);
    // An ipBlock arriving by upsert splits address classes that were one.
    let allow: Value = np(
        "y",
        "allow-some",
        json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.1.0.0/29"}}]}]}),
    );
    idx.upsert(crate::parse_policy(&allow).expect("a policy"));
    // Another replica below the new boundaries first: its class must not
    // be mistaken for the one `web` had cached before the change.
    let web_2 = replica("x", "web", 2, "web", "http");
    let below = pod_flow((&web_2, "9.0.0.1"), (&api, "10.2.0.1"), 8080, TCP);
    let above = pod_flow((&web_2, "10.1.0.9"), (&api, "10.2.0.1"), 8080, TCP);
    let reason_of = |f: &EnrichedFlow| explain(&idx, f, Observed::Unknown).enforced.ingress.reason;
    assert_eq!(reason_of(&below), VerdictReason::IsolatedNoMatch);
    assert_eq!(reason(&idx), VerdictReason::AllowedByRule);
    assert_eq!(reason_of(&above), VerdictReason::IsolatedNoMatch);
    assert_eq!(idx.interned_identities(), 2);
}
