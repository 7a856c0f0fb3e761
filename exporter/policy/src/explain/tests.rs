//! Semantics cases after the upstream Kubernetes e2e network-policy tests
//! (test/e2e/network/netpol): namespaces x, y, z; pods a, b, c in each;
//! ports 80 and 81 over TCP, UDP and SCTP. Each case states the whole
//! trace: per side the verdict, reason and hits (policy, first matching
//! rule, action), and the overall verdict.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use flowscribe_model::{
    DirectionCounters, Drops, Endpoint, EndpointKind, EnrichedFlow, Flow, FlowKey, FlowState,
    HookDirection, InterfaceRef, Mismatch, Observed, Orientation, PodIdentity, PolicyAction,
    PolicyDirection, PolicyKind, PolicyTrace, ServiceRef, SideVerdict, Verdict, VerdictReason,
};
use serde_json::{Value, json};

use crate::{PolicyIndex, explain, observe};

pub(super) const TCP: u8 = 6;
pub(super) const UDP: u8 = 17;
pub(super) const SCTP: u8 = 132;
const ICMP: u8 = 1;

fn ns_index(ns: &str) -> u8 {
    match ns {
        "x" => 1,
        "y" => 2,
        "z" => 3,
        other => panic!("unknown namespace {other}"),
    }
}

fn pod_index(name: &str) -> u8 {
    match name {
        "a" => 1,
        "b" => 2,
        "c" => 3,
        other => panic!("unknown pod {other}"),
    }
}

/// Pod `ns/name` with label `pod=<name>` in a namespace labelled `ns=<ns>`
/// (deliberately without `kubernetes.io/metadata.name`, which is implied),
/// serving 80 and 81 on TCP, UDP and SCTP with the e2e port names.
pub(super) fn pod(spec: &str) -> Arc<PodIdentity> {
    let (ns, name) = spec.split_once('/').expect("ns/name");
    let labels = |k: &str, v: &str| Arc::new(BTreeMap::from([(k.to_string(), v.to_string())]));
    let mut ports = Vec::new();
    for (proto_name, proto) in [("tcp", TCP), ("udp", UDP), ("sctp", SCTP)] {
        for port in [80u16, 81] {
            ports.push((Arc::from(format!("serve-{port}-{proto_name}")), port, proto));
        }
    }
    Arc::new(PodIdentity {
        name: Arc::from(name),
        uid: Arc::from(format!("uid-{ns}-{name}")),
        namespace: Arc::from(ns),
        labels: labels("pod", name),
        service_account: None,
        node: None,
        workload: None,
        namespace_labels: labels("ns", ns),
        ports: ports.into(),
    })
}

/// `x/a` (a pod), `ip:192.0.2.10` (a public address), `hostnet:x/a` (a
/// host-network pod on a node address), `svc:y/s` (a ClusterIP whose
/// backend is unknown), `svc:y/s>y/b` (whose backend is known).
pub(super) fn endpoint(spec: &str) -> (IpAddr, Endpoint) {
    if let Some(ip) = spec.strip_prefix("ip:") {
        return (
            ip.parse().expect("ip"),
            Endpoint::of_kind(EndpointKind::PublicNetwork),
        );
    }
    if let Some(p) = spec.strip_prefix("hostnet:") {
        let mut e = Endpoint::of_kind(EndpointKind::HostNetworkPod);
        e.pod = Some(pod(p));
        return ("172.18.0.2".parse().expect("ip"), e);
    }
    if let Some(s) = spec.strip_prefix("svc:") {
        let (svc, backend) = match s.split_once('>') {
            Some((svc, b)) => (svc, Some(pod(b))),
            None => (s, None),
        };
        let (ns, name) = svc.split_once('/').expect("ns/name");
        let mut e = Endpoint::of_kind(EndpointKind::Service);
        e.pod = backend;
        e.service = Some(Arc::new(ServiceRef {
            name: Arc::from(name),
            namespace: Arc::from(ns),
            port_name: None,
        }));
        return ("10.96.0.10".parse().expect("ip"), e);
    }
    let p = pod(spec);
    let addr = IpAddr::from([10, 0, ns_index(&p.namespace), pod_index(&p.name)]);
    let mut e = Endpoint::of_kind(EndpointKind::Pod);
    e.pod = Some(p);
    (addr, e)
}

pub(super) fn flow(from: &str, to: &str, port: u16, protocol: u8) -> EnrichedFlow {
    let (src_addr, source) = endpoint(from);
    let (dst_addr, destination) = endpoint(to);
    let interface = InterfaceRef {
        ifindex: 2,
        name: "eth0".into(),
    };
    EnrichedFlow {
        flow: Flow {
            key: FlowKey {
                src_addr,
                dst_addr,
                src_port: 40000,
                dst_port: port,
                protocol,
            },
            interface: interface.clone(),
            initiator_hook: HookDirection::Egress,
            interfaces: vec![interface],
            orientation: Orientation::Syn,
            window_start: SystemTime::UNIX_EPOCH,
            window_end: SystemTime::UNIX_EPOCH,
            first_packet: SystemTime::UNIX_EPOCH,
            last_packet: SystemTime::UNIX_EPOCH,
            forward: DirectionCounters::default(),
            reverse: DirectionCounters::default(),
            state: FlowState::Started,
            end_reason: None,
            drops: None,
        },
        source,
        destination,
        identity_degraded: false,
    }
}

pub(super) fn np(ns: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}")},
        "spec": spec
    })
}

fn staged(ns: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "flowscribe.dev/v1alpha1", "kind": "StagedNetworkPolicy",
        "metadata": {"name": name, "namespace": ns}, "spec": spec
    })
}

fn calico_staged(ns: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "projectcalico.org/v3", "kind": "StagedKubernetesNetworkPolicy",
        "metadata": {"name": name, "namespace": ns}, "spec": spec
    })
}

fn index(policies: &[Value]) -> PolicyIndex {
    let (index, problems) = PolicyIndex::from_objects(policies);
    assert!(problems.is_empty(), "{problems:?}");
    index
}

/// A hit: `ns/name`, first matching rule, action.
type Hit = (&'static str, Option<u32>, PolicyAction);

/// A side as the cases state it.
#[derive(Debug, PartialEq)]
struct Side {
    verdict: Verdict,
    reason: VerdictReason,
    hits: Vec<(String, Option<u32>, PolicyAction)>,
}

fn side(verdict: Verdict, reason: VerdictReason, hits: &[Hit]) -> Side {
    Side {
        verdict,
        reason,
        hits: hits
            .iter()
            .map(|(p, r, a)| (p.to_string(), *r, *a))
            .collect(),
    }
}

/// Not isolated for this direction: allowed, no hits.
fn open() -> Side {
    side(Verdict::Allow, VerdictReason::NotIsolatedDefaultAllow, &[])
}

fn outside() -> Side {
    side(Verdict::Allow, VerdictReason::NotSubject, &[])
}

fn allowed(hits: &[Hit]) -> Side {
    side(Verdict::Allow, VerdictReason::AllowedByRule, hits)
}

fn isolated(hits: &[Hit]) -> Side {
    side(Verdict::Deny, VerdictReason::IsolatedNoMatch, hits)
}

fn indeterminate(hits: &[Hit]) -> Side {
    side(Verdict::Deny, VerdictReason::Indeterminate, hits)
}

const ALLOW: PolicyAction = PolicyAction::Allow;
const DENY: PolicyAction = PolicyAction::Deny;

fn actual(s: &SideVerdict, direction: PolicyDirection, kind: PolicyKind) -> Side {
    assert_eq!(s.direction, direction);
    for h in s.hits.iter() {
        assert_eq!(h.rule_name, None, "NetworkPolicy rules have no names");
        assert_eq!(h.policy.kind, kind);
        assert_eq!(&*h.policy.tier, "default");
    }
    Side {
        verdict: s.verdict,
        reason: s.reason,
        hits: s
            .hits
            .iter()
            .map(|h| {
                (
                    format!(
                        "{}/{}",
                        h.policy.namespace.as_deref().unwrap_or(""),
                        h.policy.name
                    ),
                    h.rule_index,
                    h.action,
                )
            })
            .collect(),
    }
}

struct Case {
    name: &'static str,
    policies: Vec<Value>,
    from: &'static str,
    to: &'static str,
    port: u16,
    protocol: u8,
    egress: Side,
    ingress: Side,
    verdict: Verdict,
}

fn case(
    name: &'static str,
    policies: &[Value],
    (from, to, port, protocol): (&'static str, &'static str, u16, u8),
    egress: Side,
    ingress: Side,
    verdict: Verdict,
) -> Case {
    Case {
        name,
        policies: policies.to_vec(),
        from,
        to,
        port,
        protocol,
        egress,
        ingress,
        verdict,
    }
}

fn deny_all_ingress(ns: &str) -> Value {
    np(ns, "deny-all-ingress", json!({"podSelector": {}}))
}

fn deny_all_egress(ns: &str) -> Value {
    np(
        ns,
        "deny-all-egress",
        json!({"podSelector": {}, "policyTypes": ["Egress"]}),
    )
}

/// A policy on y/b allowing ingress with the given rule.
fn y_b_ingress(name: &str, rule: Value) -> Value {
    np(
        "y",
        name,
        json!({"podSelector": {"matchLabels": {"pod": "b"}}, "ingress": [rule]}),
    )
}

fn x_a_egress(name: &str, rule: Value) -> Value {
    np(
        "x",
        name,
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
               "egress": [rule]}),
    )
}

#[test]
fn network_policy_semantics() {
    use Verdict::{Allow, Deny};
    let from_ns_x = y_b_ingress(
        "allow-from-ns-x",
        json!({"from": [{"namespaceSelector": {"matchLabels": {"ns": "x"}}}]}),
    );
    let and_peer = y_b_ingress(
        "allow-x-a",
        json!({"from": [{"namespaceSelector": {"matchLabels": {"ns": "x"}},
                          "podSelector": {"matchLabels": {"pod": "a"}}}]}),
    );
    let or_peers = y_b_ingress(
        "allow-a-or-x",
        json!({"from": [{"podSelector": {"matchLabels": {"pod": "a"}}},
                         {"namespaceSelector": {"matchLabels": {"ns": "x"}}}]}),
    );
    let from_pod_a = y_b_ingress(
        "allow-from-pod-a",
        json!({"from": [{"podSelector": {"matchLabels": {"pod": "a"}}}]}),
    );
    let block = y_b_ingress(
        "allow-block",
        json!({"from": [{"ipBlock": {"cidr": "10.0.1.0/24", "except": ["10.0.1.3/32"]}}]}),
    );
    let egress_block = x_a_egress(
        "allow-egress-block",
        json!({"to": [{"ipBlock": {"cidr": "192.0.2.0/24", "except": ["192.0.2.128/25"]}}]}),
    );
    let port_80 = y_b_ingress("allow-80", json!({"ports": [{"port": 80}]}));
    let named_81 = y_b_ingress(
        "allow-81-named",
        json!({"ports": [{"port": "serve-81-tcp"}]}),
    );
    let named_udp = y_b_ingress(
        "allow-80-udp-named",
        json!({"ports": [{"protocol": "UDP", "port": "serve-80-udp"}]}),
    );
    let named_egress = x_a_egress(
        "allow-egress-named",
        json!({"ports": [{"port": "serve-80-tcp"}]}),
    );
    let range = y_b_ingress(
        "allow-range",
        json!({"ports": [{"port": 80, "endPort": 81}]}),
    );
    let sctp = y_b_ingress(
        "allow-sctp-80",
        json!({"ports": [{"protocol": "SCTP", "port": 80}]}),
    );
    let egress_only = np(
        "y",
        "egress-only",
        json!({"podSelector": {"matchLabels": {"pod": "b"}}, "policyTypes": ["Egress"]}),
    );
    let allow_all_ingress = np(
        "y",
        "allow-all-ingress",
        json!({"podSelector": {}, "ingress": [{}]}),
    );
    let two_rules = y_b_ingress("two-rules", json!({"ports": [{"port": 81}]}));
    let two_rules = {
        let mut p = two_rules;
        p["spec"]["ingress"]
            .as_array_mut()
            .expect("rules")
            .push(json!({"ports": [{"port": 80}]}));
        p
    };
    let not_b = np(
        "y",
        "deny-all-but-b",
        json!({"podSelector": {"matchExpressions": [
            {"key": "pod", "operator": "NotIn", "values": ["b"]}]}}),
    );
    let ingress_type_only = np(
        "x",
        "ingress-type-only",
        json!({"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}], "egress": []}),
    );
    let implied_label = y_b_ingress(
        "allow-from-ns-name-x",
        json!({"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "x"}}}]}),
    );
    let any_ns_pod_a = y_b_ingress(
        "allow-pod-a-any-ns",
        json!({"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "a"}}}]}),
    );

    let cases = [
        case(
            "no policy: not isolated",
            &[],
            ("x/a", "y/b", 80, TCP),
            open(),
            open(),
            Allow,
        ),
        case(
            "deny-all ingress isolates every pod of y",
            &[deny_all_ingress("y")],
            ("x/a", "y/b", 80, TCP),
            open(),
            isolated(&[("y/deny-all-ingress", None, DENY)]),
            Deny,
        ),
        case(
            "deny-all ingress in y does not govern y's egress",
            &[deny_all_ingress("y")],
            ("y/b", "x/a", 80, TCP),
            open(),
            open(),
            Allow,
        ),
        case(
            "deny-all egress",
            &[deny_all_egress("x")],
            ("x/a", "y/b", 80, TCP),
            isolated(&[("x/deny-all-egress", None, DENY)]),
            open(),
            Deny,
        ),
        case(
            "allow from namespace with label: x allowed",
            std::slice::from_ref(&from_ns_x),
            ("x/a", "y/b", 80, TCP),
            open(),
            allowed(&[("y/allow-from-ns-x", Some(0), ALLOW)]),
            Allow,
        ),
        case(
            "allow from namespace with label: z denied",
            std::slice::from_ref(&from_ns_x),
            ("z/a", "y/b", 80, TCP),
            open(),
            isolated(&[("y/allow-from-ns-x", None, DENY)]),
            Deny,
        ),
        case(
            "kubernetes.io/metadata.name is implied on namespaces",
            std::slice::from_ref(&implied_label),
            ("x/c", "y/b", 80, TCP),
            open(),
            allowed(&[("y/allow-from-ns-name-x", Some(0), ALLOW)]),
            Allow,
        ),
        case(
            "podSelector alone means the policy's own namespace: y/a allowed",
            std::slice::from_ref(&from_pod_a),
            ("y/a", "y/b", 80, TCP),
            open(),
            allowed(&[("y/allow-from-pod-a", Some(0), ALLOW)]),
            Allow,
        ),
        case(
            "podSelector alone means the policy's own namespace: x/a denied",
            std::slice::from_ref(&from_pod_a),
            ("x/a", "y/b", 80, TCP),
            open(),
            isolated(&[("y/allow-from-pod-a", None, DENY)]),
            Deny,
        ),
        case(
            "one peer with both selectors is AND: x/a allowed",
            std::slice::from_ref(&and_peer),
            ("x/a", "y/b", 80, TCP),
            open(),
            allowed(&[("y/allow-x-a", Some(0), ALLOW)]),
            Allow,
        ),
        case(
            "one peer with both selectors is AND: x/c denied",
            std::slice::from_ref(&and_peer),
            ("x/c", "y/b", 80, TCP),
            open(),
            isolated(&[("y/allow-x-a", None, DENY)]),
            Deny,
        ),
        case(
            "one peer with both selectors is AND: y/a denied",
            std::slice::from_ref(&and_peer),
            ("y/a", "y/b", 80, TCP),
            open(),
            isolated(&[("y/allow-x-a", None, DENY)]),
            Deny,
        ),
        case(
            "two peers are OR: y/a by the pod peer",
            std::slice::from_ref(&or_peers),
            ("y/a", "y/b", 80, TCP),
            open(),
            allowed(&[("y/allow-a-or-x", Some(0), ALLOW)]),
            Allow,
        ),
        case(
            "two peers are OR: x/c by the namespace peer",
            std::slice::from_ref(&or_peers),
            ("x/c", "y/b", 80, TCP),
            open(),
            allowed(&[("y/allow-a-or-x", Some(0), ALLOW)]),
            Allow,
        ),
        case(
            "two peers are OR: z/c by neither",
            std::slice::from_ref(&or_peers),
            ("z/c", "y/b", 80, TCP),
            open(),
            isolated(&[("y/allow-a-or-x", None, DENY)]),
            Deny,
        ),
        case(
            "empty namespaceSelector with podSelector: pod a of any namespace",
            std::slice::from_ref(&any_ns_pod_a),
            ("z/a", "y/b", 80, TCP),
            open(),
            allowed(&[("y/allow-pod-a-any-ns", Some(0), ALLOW)]),
            Allow,
        ),
        case(
            "ipBlock matches pod addresses: x/a inside the block",
            std::slice::from_ref(&block),
            ("x/a", "y/b", 80, TCP),
            open(),
            allowed(&[("y/allow-block", Some(0), ALLOW)]),
            Allow,
        ),
        case(
            "ipBlock except: x/c is excepted",
            std::slice::from_ref(&block),
            ("x/c", "y/b", 80, TCP),
            open(),
            isolated(&[("y/allow-block", None, DENY)]),
            Deny,
        ),
        case(
            "egress ipBlock: inside the block",
            std::slice::from_ref(&egress_block),
            ("x/a", "ip:192.0.2.10", 443, TCP),
            allowed(&[("x/allow-egress-block", Some(0), ALLOW)]),
            outside(),
            Allow,
        ),
        case(
            "egress ipBlock: in the except",
            std::slice::from_ref(&egress_block),
            ("x/a", "ip:192.0.2.200", 443, TCP),
            isolated(&[("x/allow-egress-block", None, DENY)]),
            outside(),
            Deny,
        ),
        case(
            "numeric port: 80/TCP allowed",
            std::slice::from_ref(&port_80),
            ("x/a", "y/b", 80, TCP),
            open(),
            allowed(&[("y/allow-80", Some(0), ALLOW)]),
            Allow,
        ),
        case(
            "numeric port: 81/TCP denied",
            std::slice::from_ref(&port_80),
            ("x/a", "y/b", 81, TCP),
            open(),
            isolated(&[("y/allow-80", None, DENY)]),
            Deny,
        ),
        case(
            "numeric port defaults to TCP: 80/UDP denied",
            std::slice::from_ref(&port_80),
            ("x/a", "y/b", 80, UDP),
            open(),
            isolated(&[("y/allow-80", None, DENY)]),
            Deny,
        ),
        case(
            "named port resolves on the destination pod: 81 allowed",
            std::slice::from_ref(&named_81),
            ("x/a", "y/b", 81, TCP),
            open(),
            allowed(&[("y/allow-81-named", Some(0), ALLOW)]),
            Allow,
        ),
        case(
            "named port: 80 is not serve-81-tcp",
            std::slice::from_ref(&named_81),
            ("x/a", "y/b", 80, TCP),
            open(),
            isolated(&[("y/allow-81-named", None, DENY)]),
            Deny,
        ),
        case(
            "named UDP port: 80/UDP allowed",
            std::slice::from_ref(&named_udp),
            ("x/a", "y/b", 80, UDP),
            open(),
            allowed(&[("y/allow-80-udp-named", Some(0), ALLOW)]),
            Allow,
        ),
        case(
            "named UDP port: 80/TCP denied (the protocol must match too)",
            std::slice::from_ref(&named_udp),
            ("x/a", "y/b", 80, TCP),
            open(),
            isolated(&[("y/allow-80-udp-named", None, DENY)]),
            Deny,
        ),
        case(
            "egress named port resolves on the destination pod",
            std::slice::from_ref(&named_egress),
            ("x/a", "y/b", 80, TCP),
            allowed(&[("x/allow-egress-named", Some(0), ALLOW)]),
            open(),
            Allow,
        ),
        case(
            "egress named port cannot match a destination without a pod",
            std::slice::from_ref(&named_egress),
            ("x/a", "ip:192.0.2.10", 80, TCP),
            isolated(&[("x/allow-egress-named", None, DENY)]),
            outside(),
            Deny,
        ),
        case(
            "endPort range: 81 inside",
            std::slice::from_ref(&range),
            ("x/a", "y/b", 81, TCP),
            open(),
            allowed(&[("y/allow-range", Some(0), ALLOW)]),
            Allow,
        ),
        case(
            "endPort range: 82 outside",
            std::slice::from_ref(&range),
            ("x/a", "y/b", 82, TCP),
            open(),
            isolated(&[("y/allow-range", None, DENY)]),
            Deny,
        ),
        case(
            "SCTP port: 80/SCTP allowed",
            std::slice::from_ref(&sctp),
            ("x/a", "y/b", 80, SCTP),
            open(),
            allowed(&[("y/allow-sctp-80", Some(0), ALLOW)]),
            Allow,
        ),
        case(
            "SCTP port: 80/TCP denied",
            std::slice::from_ref(&sctp),
            ("x/a", "y/b", 80, TCP),
            open(),
            isolated(&[("y/allow-sctp-80", None, DENY)]),
            Deny,
        ),
        case(
            "rules with ports never match ICMP",
            std::slice::from_ref(&port_80),
            ("x/a", "y/b", 0, ICMP),
            open(),
            isolated(&[("y/allow-80", None, DENY)]),
            Deny,
        ),
        case(
            "a rule without ports matches ICMP",
            std::slice::from_ref(&from_ns_x),
            ("x/a", "y/b", 0, ICMP),
            open(),
            allowed(&[("y/allow-from-ns-x", Some(0), ALLOW)]),
            Allow,
        ),
        case(
            "egress-only policy leaves ingress open",
            std::slice::from_ref(&egress_only),
            ("x/a", "y/b", 80, TCP),
            open(),
            open(),
            Allow,
        ),
        case(
            "egress-only policy without rules denies egress",
            std::slice::from_ref(&egress_only),
            ("y/b", "x/a", 80, TCP),
            isolated(&[("y/egress-only", None, DENY)]),
            open(),
            Deny,
        ),
        case(
            "policyTypes [Ingress] ignores egress rules",
            std::slice::from_ref(&ingress_type_only),
            ("x/a", "y/b", 80, TCP),
            open(),
            open(),
            Allow,
        ),
        case(
            "policies union: one allow is enough, every selecting policy is listed by name",
            &[from_pod_a.clone(), from_ns_x.clone(), deny_all_ingress("y")],
            ("x/a", "y/b", 80, TCP),
            open(),
            allowed(&[
                ("y/allow-from-ns-x", Some(0), ALLOW),
                ("y/allow-from-pod-a", None, DENY),
                ("y/deny-all-ingress", None, DENY),
            ]),
            Allow,
        ),
        case(
            "policies union: none allows",
            &[from_pod_a.clone(), from_ns_x.clone()],
            ("z/a", "y/b", 80, TCP),
            open(),
            isolated(&[
                ("y/allow-from-ns-x", None, DENY),
                ("y/allow-from-pod-a", None, DENY),
            ]),
            Deny,
        ),
        case(
            "allow-all ingress beside deny-all",
            &[deny_all_ingress("y"), allow_all_ingress.clone()],
            ("z/c", "y/a", 81, UDP),
            open(),
            allowed(&[
                ("y/allow-all-ingress", Some(0), ALLOW),
                ("y/deny-all-ingress", None, DENY),
            ]),
            Allow,
        ),
        case(
            "the first matching rule is reported",
            std::slice::from_ref(&two_rules),
            ("x/a", "y/b", 80, TCP),
            open(),
            allowed(&[("y/two-rules", Some(1), ALLOW)]),
            Allow,
        ),
        case(
            "both sides: egress denies although ingress allows",
            &[deny_all_egress("x"), allow_all_ingress.clone()],
            ("x/a", "y/b", 80, TCP),
            isolated(&[("x/deny-all-egress", None, DENY)]),
            allowed(&[("y/allow-all-ingress", Some(0), ALLOW)]),
            Deny,
        ),
        case(
            "a source outside the cluster is not subject to egress policy",
            &[deny_all_ingress("y")],
            ("ip:192.0.2.10", "y/b", 80, TCP),
            outside(),
            isolated(&[("y/deny-all-ingress", None, DENY)]),
            Deny,
        ),
        case(
            "host-network pods are not subject, nor matched by pod selectors",
            &[
                deny_all_egress("x"),
                allow_all_ingress.clone(),
                from_ns_x.clone(),
            ],
            ("hostnet:x/a", "y/b", 80, TCP),
            outside(),
            allowed(&[
                ("y/allow-all-ingress", Some(0), ALLOW),
                ("y/allow-from-ns-x", None, DENY),
            ]),
            Allow,
        ),
        case(
            "NotIn selector: b is not selected",
            std::slice::from_ref(&not_b),
            ("x/a", "y/b", 80, TCP),
            open(),
            open(),
            Allow,
        ),
        case(
            "NotIn selector: a is selected",
            std::slice::from_ref(&not_b),
            ("x/a", "y/a", 80, TCP),
            open(),
            isolated(&[("y/deny-all-but-b", None, DENY)]),
            Deny,
        ),
        case(
            "a Service with a known backend is explained as the backend",
            std::slice::from_ref(&from_ns_x),
            ("x/a", "svc:y/s>y/b", 80, TCP),
            open(),
            allowed(&[("y/allow-from-ns-x", Some(0), ALLOW)]),
            Allow,
        ),
        case(
            "a Service with an unknown backend in a namespace without ingress policy",
            &[deny_all_egress("y")],
            ("x/a", "svc:y/s", 80, TCP),
            open(),
            open(),
            Allow,
        ),
        case(
            "a Service with an unknown backend where policies could isolate it",
            std::slice::from_ref(&from_ns_x),
            ("x/a", "svc:y/s", 80, TCP),
            open(),
            indeterminate(&[]),
            Deny,
        ),
        case(
            "egress to a Service with an unknown backend that no rule matches",
            std::slice::from_ref(&named_egress),
            ("x/a", "svc:y/s", 80, TCP),
            indeterminate(&[("x/allow-egress-named", None, DENY)]),
            open(),
            Deny,
        ),
    ];
    let mut failures = Vec::new();
    for c in cases {
        let index = index(&c.policies);
        let trace = explain(
            &index,
            &flow(c.from, c.to, c.port, c.protocol),
            Observed::Unknown,
        );
        let got = (
            actual(
                &trace.enforced.egress,
                PolicyDirection::Egress,
                PolicyKind::NetworkPolicy,
            ),
            actual(
                &trace.enforced.ingress,
                PolicyDirection::Ingress,
                PolicyKind::NetworkPolicy,
            ),
            trace.enforced.verdict,
        );
        let want = (c.egress, c.ingress, c.verdict);
        if got != want {
            failures.push(format!("{}:\n  want {want:?}\n  got  {got:?}", c.name));
        }
        assert_eq!(trace.pending, None, "{}", c.name);
        assert!(trace.invalid_policies.is_empty(), "{}", c.name);
        assert_eq!(trace.mismatch, None, "{}", c.name);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A hit with its policy kind: `ns/name`, kind, first matching rule, action.
type KindHit = (String, PolicyKind, Option<u32>, PolicyAction);

fn hits_of(s: &SideVerdict) -> Vec<KindHit> {
    s.hits
        .iter()
        .map(|h| {
            (
                format!(
                    "{}/{}",
                    h.policy.namespace.as_deref().unwrap_or(""),
                    h.policy.name
                ),
                h.policy.kind,
                h.rule_index,
                h.action,
            )
        })
        .collect()
}

#[test]
fn staged_policies_give_the_pending_verdict() {
    use PolicyKind::StagedNetworkPolicy as Snp;
    use PolicyKind::{CalicoStagedKubernetesNetworkPolicy as Sknp, NetworkPolicy as Np};
    let allow_x = y_b_ingress(
        "allow-from-ns-x",
        json!({"from": [{"namespaceSelector": {"matchLabels": {"ns": "x"}}}]}),
    );
    struct StagedCase {
        name: &'static str,
        policies: Vec<Value>,
        from: &'static str,
        to: &'static str,
        enforced: Verdict,
        /// `None`: no staged policy touches the flow.
        pending: Option<(Verdict, VerdictReason, Vec<KindHit>)>,
    }
    let h = |p: &str, k, r, a| (p.to_string(), k, r, a);
    let cases = [
        StagedCase {
            name: "our staged deny-all would deny what is allowed today",
            policies: vec![staged("y", "deny-all", json!({"podSelector": {}}))],
            from: "x/a",
            to: "y/b",
            enforced: Verdict::Allow,
            pending: Some((
                Verdict::Deny,
                VerdictReason::IsolatedNoMatch,
                vec![h("y/deny-all", Snp, None, DENY)],
            )),
        },
        StagedCase {
            name: "a staged policy that selects neither endpoint leaves no pending trace",
            policies: vec![staged(
                "y",
                "only-c",
                json!({"podSelector": {"matchLabels": {"pod": "c"}}}),
            )],
            from: "x/a",
            to: "y/b",
            enforced: Verdict::Allow,
            pending: None,
        },
        StagedCase {
            name: "staged Set replaces the enforced policy of the same name",
            policies: vec![
                allow_x.clone(),
                calico_staged(
                    "y",
                    "allow-from-ns-x",
                    json!({"podSelector": {"matchLabels": {"pod": "b"}}, "ingress": [
                        {"from": [{"namespaceSelector": {"matchLabels": {"ns": "z"}}}]}]}),
                ),
            ],
            from: "x/a",
            to: "y/b",
            enforced: Verdict::Allow,
            pending: Some((
                Verdict::Deny,
                VerdictReason::IsolatedNoMatch,
                vec![h("y/allow-from-ns-x", Sknp, None, DENY)],
            )),
        },
        StagedCase {
            name: "staged Delete removes the enforced deny",
            policies: vec![
                deny_all_ingress("y"),
                calico_staged("y", "deny-all-ingress", json!({"stagedAction": "Delete"})),
            ],
            from: "x/a",
            to: "y/b",
            enforced: Verdict::Deny,
            pending: Some((
                Verdict::Allow,
                VerdictReason::NotIsolatedDefaultAllow,
                vec![],
            )),
        },
        StagedCase {
            name: "staged Delete of a policy that does not select the flow",
            policies: vec![
                deny_all_ingress("z"),
                calico_staged("z", "deny-all-ingress", json!({"stagedAction": "Delete"})),
            ],
            from: "x/a",
            to: "y/b",
            enforced: Verdict::Allow,
            pending: None,
        },
        StagedCase {
            name: "a staged allow beside an enforced deny: the pending trace lists both",
            policies: vec![
                deny_all_ingress("y"),
                staged("y", "allow-x", allow_x["spec"].clone()),
            ],
            from: "x/a",
            to: "y/b",
            enforced: Verdict::Deny,
            pending: Some((
                Verdict::Allow,
                VerdictReason::AllowedByRule,
                vec![
                    h("y/allow-x", Snp, Some(0), ALLOW),
                    h("y/deny-all-ingress", Np, None, DENY),
                ],
            )),
        },
    ];
    for c in cases {
        let index = index(&c.policies);
        let trace = explain(&index, &flow(c.from, c.to, 80, TCP), Observed::Unknown);
        assert_eq!(trace.enforced.verdict, c.enforced, "{}", c.name);
        let pending = trace.pending.as_ref().map(|p| {
            // Staged policies here only touch ingress.
            assert_eq!(p.egress, trace.enforced.egress, "{}", c.name);
            assert_eq!(p.verdict, p.ingress.verdict, "{}", c.name);
            (p.ingress.verdict, p.ingress.reason, hits_of(&p.ingress))
        });
        assert_eq!(pending, c.pending, "{}", c.name);
        assert_eq!(
            trace.would_change(),
            c.pending.as_ref().is_some_and(|p| p.0 != c.enforced),
            "{}",
            c.name
        );
    }
}

#[test]
fn staged_policies_are_never_enforced() {
    let index = index(&[staged(
        "x",
        "deny-egress",
        json!({"podSelector": {}, "policyTypes": ["Egress"]}),
    )]);
    let trace = explain(&index, &flow("x/a", "y/b", 80, TCP), Observed::Unknown);
    assert_eq!(
        trace.enforced.egress.reason,
        VerdictReason::NotIsolatedDefaultAllow
    );
    let pending = trace.pending.as_ref().expect("pending");
    assert_eq!(pending.egress.reason, VerdictReason::IsolatedNoMatch);
    assert_eq!(pending.verdict, Verdict::Deny);
    assert!(trace.would_change());
}

fn invalid_np(ns: &str, name: &str, pod_selector: Value) -> Value {
    np(
        ns,
        name,
        json!({"podSelector": pod_selector,
               "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/40"}}]}]}),
    )
}

#[test]
fn invalid_policies_are_reported_flagged_and_never_silently_allow() {
    let (idx, problems) = PolicyIndex::from_objects(&[
        invalid_np("y", "bad-cidr", json!({"matchLabels": {"pod": "b"}})),
        deny_all_egress("x"),
    ]);
    assert_eq!(
        problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
        vec![
            "NetworkPolicy y/bad-cidr: spec.ingress[0].from[0].ipBlock.cidr: \"10.0.0.0/40\" is not a CIDR"
        ]
    );

    // It selects y/b: the flow is flagged and ingress is indeterminate
    // (not proven allowed), with no mismatch claimed when delivered.
    let trace = explain(&idx, &flow("z/a", "y/b", 80, TCP), Observed::Delivered);
    let flagged: Vec<&str> = trace.invalid_policies.iter().map(|p| &*p.name).collect();
    assert_eq!(flagged, vec!["bad-cidr"]);
    assert_eq!(trace.enforced.ingress.reason, VerdictReason::Indeterminate);
    assert_eq!(trace.enforced.ingress.verdict, Verdict::Deny);
    assert!(trace.enforced.ingress.hits.is_empty());
    assert_eq!(trace.mismatch, None);

    // It does not select y/a: nothing flagged.
    let trace = explain(&idx, &flow("z/a", "y/a", 80, TCP), Observed::Unknown);
    assert!(trace.invalid_policies.is_empty());
    assert_eq!(
        trace.enforced.ingress.reason,
        VerdictReason::NotIsolatedDefaultAllow
    );

    // A valid allow is certain whatever the invalid policy says (NetworkPolicy
    // only adds allows); the flow is still flagged.
    let (idx, _) = PolicyIndex::from_objects(&[
        invalid_np("y", "bad-cidr", json!({})),
        y_b_ingress("allow-all", json!({})),
    ]);
    let trace = explain(&idx, &flow("z/a", "y/b", 80, TCP), Observed::Unknown);
    assert_eq!(trace.enforced.ingress.reason, VerdictReason::AllowedByRule);
    assert_eq!(trace.invalid_policies.len(), 1);

    // An invalid pod selector may select any pod of its namespace.
    let (idx, problems) = PolicyIndex::from_objects(&[np(
        "y",
        "bad-selector",
        json!({"podSelector": {"matchExpressions": [{"key": "pod", "operator": "Equals", "values": ["b"]}]}}),
    )]);
    assert_eq!(
        problems[0].field,
        "spec.podSelector.matchExpressions[0].operator"
    );
    let trace = explain(&idx, &flow("z/a", "y/c", 80, TCP), Observed::Unknown);
    assert_eq!(trace.enforced.ingress.reason, VerdictReason::Indeterminate);
    assert_eq!(trace.invalid_policies.len(), 1);

    // Without a name it is reported but cannot select anything.
    let (idx, problems) = PolicyIndex::from_objects(&[json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"namespace": "y"}, "spec": {}
    })]);
    assert_eq!(problems.len(), 1);
    assert_eq!(idx.invalid().len(), 1);
    let trace = explain(&idx, &flow("z/a", "y/c", 80, TCP), Observed::Unknown);
    assert_eq!(
        trace.enforced.ingress.reason,
        VerdictReason::NotIsolatedDefaultAllow
    );
}

#[test]
fn an_invalid_staged_policy_only_affects_pending() {
    let bad = {
        let mut v = invalid_np("y", "bad", json!({}));
        v["apiVersion"] = json!("flowscribe.dev/v1alpha1");
        v["kind"] = json!("StagedNetworkPolicy");
        v
    };
    let (idx, problems) = PolicyIndex::from_objects(&[bad]);
    assert_eq!(problems[0].kind, "StagedNetworkPolicy");
    let trace = explain(&idx, &flow("z/a", "y/b", 80, TCP), Observed::Unknown);
    assert_eq!(
        trace.enforced.ingress.reason,
        VerdictReason::NotIsolatedDefaultAllow
    );
    let pending = trace.pending.as_ref().expect("pending");
    assert_eq!(pending.ingress.reason, VerdictReason::Indeterminate);
    assert_eq!(trace.invalid_policies.len(), 1);
    assert_eq!(
        trace.invalid_policies[0].kind,
        PolicyKind::StagedNetworkPolicy
    );
}

#[test]
fn degraded_identity_makes_an_unmatched_peer_indeterminate() {
    let idx = index(&[y_b_ingress(
        "allow-from-ns-x",
        json!({"from": [{"namespaceSelector": {"matchLabels": {"ns": "x"}}}]}),
    )]);
    let mut f = flow("ip:10.9.9.9", "y/b", 80, TCP);
    assert_eq!(
        explain(&idx, &f, Observed::Unknown).enforced.ingress.reason,
        VerdictReason::IsolatedNoMatch
    );
    // The address may have been a pod of x the index could not see.
    f.identity_degraded = true;
    assert_eq!(
        explain(&idx, &f, Observed::Unknown).enforced.ingress.reason,
        VerdictReason::Indeterminate
    );
}

#[test]
fn observed_from_counters() {
    let drops = Drops {
        packets_forward: 3,
        packets_reverse: 0,
        bytes: 180,
        last_reason: "NETFILTER_DROP".to_string(),
        last_netns_ino: 4026531840,
    };
    // (reply packets, drops, observed)
    let cases = [
        (0, None, Observed::Unknown),
        (1, None, Observed::Delivered),
        (
            0,
            Some(drops.clone()),
            Observed::Dropped {
                reason: Arc::from("NETFILTER_DROP"),
            },
        ),
        // A reply proves delivery even if some packets were dropped.
        (2, Some(drops), Observed::Delivered),
    ];
    for (reply, drops, want) in cases {
        let mut f = flow("x/a", "y/b", 80, TCP).flow;
        f.reverse.packets = reply;
        f.drops = drops;
        assert_eq!(observe(&f), want);
    }
}

#[test]
fn evaluated_and_observed_mismatch() {
    let deny = index(&[deny_all_ingress("y")]);
    let none = index(&[]);
    let dropped = Observed::Dropped {
        reason: Arc::from("NETFILTER_DROP"),
    };
    // (index, observed, mismatch)
    let cases = [
        (
            &deny,
            Observed::Delivered,
            Some(Mismatch::PolicyNotEnforced),
        ),
        (&deny, dropped.clone(), None),
        (&deny, Observed::Unknown, None),
        (&none, Observed::Delivered, None),
        (&none, dropped.clone(), Some(Mismatch::UnexplainedDrop)),
        (&none, Observed::Unknown, None),
    ];
    for (idx, observed, want) in cases {
        let trace: PolicyTrace = explain(idx, &flow("x/a", "y/b", 80, TCP), observed.clone());
        assert_eq!(trace.mismatch, want, "{observed:?}");
        assert_eq!(trace.observed, observed);
        assert_eq!(trace.verdict_source.as_str(), "evaluated");
    }
}
