//! Explain end to end: NetworkPolicies from the manifests directory decide
//! real flows; the record says which policy, which rule, and whether the
//! dataplane agreed (this test's "CNI" enforces nothing unless the test adds
//! an nftables drop). Needs root.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::net::{SocketAddr, UdpSocket};

use flowscribe_e2e::*;
use serde_json::Value;

const ONE_WINDOW: &[&str] = &["--active-timeout", "300s", "--idle-timeout", "300s"];

const MANIFESTS: &str = r#"
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: frontend, labels: {kubernetes.io/metadata.name: frontend}}}
- {apiVersion: v1, kind: Namespace, metadata: {name: backend, labels: {kubernetes.io/metadata.name: backend}}}
- apiVersion: v1
  kind: Pod
  metadata: {name: web, namespace: frontend, uid: pod-web, labels: {app: web}}
  spec: {serviceAccountName: web-sa}
  status: {podIP: 10.201.1.2}
- apiVersion: v1
  kind: Pod
  metadata: {name: db-0, namespace: backend, uid: pod-db, labels: {app: db}}
  spec: {serviceAccountName: db-sa}
  status: {podIP: 10.201.2.2}
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: default-deny, namespace: backend, uid: np-1, resourceVersion: "42", generation: 1}
  spec: {podSelector: {}, policyTypes: [Ingress]}
- apiVersion: flowscribe.dev/v1alpha1
  kind: StagedNetworkPolicy
  metadata: {name: lock-egress, namespace: backend, uid: snp-1}
  spec: {podSelector: {matchLabels: {app: db}}, policyTypes: [Egress]}
"#;

fn flow_from(docs: &[Value], port: u16) -> &Value {
    let found: Vec<&Value> = docs
        .iter()
        .filter(|d| d["source"]["port"] == port)
        .collect();
    assert_eq!(found.len(), 1, "{docs:#?}");
    found[0]
}

#[test]
fn a_denying_policy_names_itself_and_disagreement_with_the_dataplane_is_flagged() {
    let _serial = serial();
    let node = Node::new_v4_only(2);
    let (web, db) = (&node.pods[0], &node.pods[1]);
    let dir = ManifestsDir::new("explain");
    dir.write("cluster.yaml", MANIFESTS);
    // The node drops UDP to port 9999, as an enforcing CNI would.
    node.ns.sh(&["nft", "add table inet fsfilter"]);
    node.ns.sh(&[
        "nft",
        "add chain inet fsfilter fsfwd { type filter hook forward priority 0 ; }",
    ]);
    node.ns
        .sh(&["nft", "add rule inet fsfilter fsfwd udp dport 9999 drop"]);

    let manifests = dir.arg().display().to_string();
    let mut args = ONE_WINDOW.to_vec();
    args.extend(["--format", "ecs", "--manifests", &manifests]);
    let exporter = Exporter::start(&node.ns.name, &args);

    // Delivered although the policy denies it: the dataplane does not enforce.
    let (tcp_port, _) = tcp_transfer(&web.ns, &db.ns, db.v4, 5_000);
    // Dropped by the node: evaluation and observation agree.
    let dst = SocketAddr::new(db.v4, 9999);
    let udp_port = web.ns.run(move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..3 {
            s.send_to(b"probe", dst).unwrap();
        }
        s.local_addr().unwrap().port()
    });
    // Allowed today (frontend is not isolated), denied once the staged
    // egress lockdown of db is enforced.
    let (staged_port, _) = tcp_transfer(&db.ns, &web.ns, web.v4, 2_000);
    let stopped = exporter.stop();
    assert_eq!(stopped.code, Some(0), "log:\n{}", stopped.log.join("\n"));

    let st = flow_from(&stopped.records, staged_port);
    let p = &st["flowscribe"]["policy"];
    assert_eq!(p["verdict"], "allow", "{p:#}");
    assert_eq!(p["pending"]["verdict"], "deny", "{p:#}");
    assert_eq!(p["pending"]["would_change"], true);
    assert_eq!(p["pending"]["egress"]["hits"][0]["name"], "lock-egress");
    assert_eq!(p["pending"]["egress"]["reason"], "isolated-no-match");

    let d = flow_from(&stopped.records, tcp_port);
    assert_eq!(
        d["event"]["type"],
        serde_json::json!(["connection", "denied", "end"])
    );
    assert_eq!(d["event"]["reason"], "isolated-no-match");
    assert_eq!(d["rule"]["ruleset"], "backend/default-deny");
    assert_eq!(d["rule"]["uuid"], "np-1");
    let p = &d["flowscribe"]["policy"];
    assert_eq!(p["ingress"]["verdict"], "deny");
    assert_eq!(p["egress"]["reason"], "not-isolated-default-allow");
    assert_eq!(p["ingress"]["hits"][0]["name"], "default-deny");
    assert_eq!(p["observed"], "delivered");
    assert_eq!(p["mismatch"], "policy-not-enforced");
    assert_eq!(p["verdict_source"], "evaluated");

    let u = flow_from(&stopped.records, udp_port);
    let p = &u["flowscribe"]["policy"];
    assert_eq!(p["verdict"], "deny");
    assert_eq!(p["observed"], "dropped");
    assert_eq!(p["observed_drop_reason"], "NETFILTER_DROP");
    assert!(p.get("mismatch").is_none(), "{p:#}");
}
