// The synthetic cluster of the explain_scale bench: 10,000 policy objects
// over 150,000 pods, and random flows between them. Included (with
// `include!`) by benches/explain_scale.rs and examples/profile.rs, which
// bring the imports and include support/flows.rs (`Lcg`, `pod_flow`) first.

const NAMESPACES: usize = 1000;
const PODS_PER_NAMESPACE: usize = 150;

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

/// Pods per namespace come from this many Deployments (`i % DEPLOYMENTS`),
/// 7 or 8 replicas each; replicas share labels (`pod-template-hash` is
/// the ReplicaSet's), service account and ports, as in a real cluster.
const DEPLOYMENTS: usize = 20;

fn pod(ns: usize, i: usize) -> (IpAddr, Endpoint) {
    let deployment = i % DEPLOYMENTS;
    let labels = BTreeMap::from([
        ("app".to_string(), format!("app-{}", deployment % 10)),
        ("version".to_string(), format!("v{}", deployment % 4)),
        (
            "pod-template-hash".to_string(),
            format!("{:08x}", ns * 1000 + deployment),
        ),
    ]);
    let namespace_labels = BTreeMap::from([
        ("team".to_string(), format!("team-{}", ns % 50)),
        (
            "env".to_string(),
            ["prod", "dev", "staging"][ns % 3].to_string(),
        ),
        ("kubernetes.io/metadata.name".to_string(), ns_name(ns)),
    ]);
    let identity = PodIdentity {
        name: Arc::from(format!("app-{}-{i}", deployment % 10)),
        uid: Arc::from(format!("uid-{ns}-{i}")),
        namespace: Arc::from(ns_name(ns)),
        labels: Arc::new(labels),
        service_account: Some(Arc::from(format!("app-{}", deployment % 10))),
        node: None,
        workload: None,
        namespace_labels: Arc::new(namespace_labels),
        ports: Arc::from(vec![
            (Arc::from("http"), 8080u16, 6u8),
            (Arc::from("metrics"), 9090, 6),
        ]),
    };
    let mut e = Endpoint::of_kind(EndpointKind::Pod);
    e.pod = Some(Arc::new(identity));
    let n = ns * PODS_PER_NAMESPACE + i;
    (
        IpAddr::from([10, (n >> 16) as u8, (n >> 8) as u8, n as u8]),
        e,
    )
}

/// The number of the pod at `addr` (the inverse of [`pod`]'s address).
fn pod_number(addr: IpAddr) -> usize {
    match addr {
        IpAddr::V4(a) => {
            let [_, b, c, d] = a.octets();
            (usize::from(b) << 16) | (usize::from(c) << 8) | usize::from(d)
        }
        IpAddr::V6(_) => unreachable!("the bench's pods are IPv4"),
    }
}

/// Another replica of the same Deployment.
fn other_replica(n: usize) -> usize {
    let (ns, i) = (n / PODS_PER_NAMESPACE, n % PODS_PER_NAMESPACE);
    let j = if i + DEPLOYMENTS < PODS_PER_NAMESPACE {
        i + DEPLOYMENTS
    } else {
        i % DEPLOYMENTS
    };
    ns * PODS_PER_NAMESPACE + j
}

/// The same flows between other replicas of the same Deployments (so the
/// same identity pairs, other pods and addresses).
fn replica_flows(pods: &[(IpAddr, Endpoint)], flows: &[EnrichedFlow]) -> Vec<EnrichedFlow> {
    flows
        .iter()
        .map(|f| {
            let mut r = f.clone();
            let src = other_replica(pod_number(f.flow.key.src_addr));
            let dst = other_replica(pod_number(f.flow.key.dst_addr));
            (r.flow.key.src_addr, r.source) = pods[src].clone();
            (r.flow.key.dst_addr, r.destination) = pods[dst].clone();
            r
        })
        .collect()
}

/// The flows the other way round (other identity pairs, the same pods).
fn reversed_flows(flows: &[EnrichedFlow]) -> Vec<EnrichedFlow> {
    flows
        .iter()
        .map(|f| {
            let mut r = f.clone();
            std::mem::swap(&mut r.source, &mut r.destination);
            std::mem::swap(&mut r.flow.key.src_addr, &mut r.flow.key.dst_addr);
            r
        })
        .collect()
}

/// Flows whose source is the first pod of a Deployment in namespaces
/// `0..NAMESPACES / 2`, one per Deployment (each source a new identity
/// for an index that has only seen the other half), to a random pod of the
/// other half.
fn new_identity_flows(pods: &[(IpAddr, Endpoint)], seed: u64) -> Vec<EnrichedFlow> {
    let half = NAMESPACES / 2 * PODS_PER_NAMESPACE;
    let template = &flows(pods, 1, seed)[0];
    let mut rng = Lcg(seed);
    (0..NAMESPACES / 2)
        .flat_map(|ns| (0..DEPLOYMENTS).map(move |d| ns * PODS_PER_NAMESPACE + d))
        .map(|src| {
            let mut f = template.clone();
            (f.flow.key.src_addr, f.source) = pods[src].clone();
            (f.flow.key.dst_addr, f.destination) = pods[half + rng.next(pods.len() - half)].clone();
            f.flow.key.dst_port = [8080, 9090, 8443, 9050][rng.next(4)];
            f.flow.key.protocol = 6;
            f
        })
        .collect()
}

/// Flows among the pods of namespaces `NAMESPACES / 2..`: one from every
/// pod, so every identity there is interned and its selection memoised.
fn second_half_flows(pods: &[(IpAddr, Endpoint)]) -> Vec<EnrichedFlow> {
    let half = NAMESPACES / 2 * PODS_PER_NAMESPACE;
    let template = &flows(pods, 1, 1)[0];
    (half..pods.len())
        .map(|n| {
            let mut f = template.clone();
            (f.flow.key.src_addr, f.source) = pods[n].clone();
            let m = if n + 1 < pods.len() { n + 1 } else { half };
            (f.flow.key.dst_addr, f.destination) = pods[m].clone();
            f
        })
        .collect()
}

fn all_pods() -> Vec<(IpAddr, Endpoint)> {
    (0..NAMESPACES)
        .flat_map(|ns| (0..PODS_PER_NAMESPACE).map(move |i| pod(ns, i)))
        .collect()
}

fn flows(pods: &[(IpAddr, Endpoint)], n: usize, seed: u64) -> Vec<EnrichedFlow> {
    let mut rng = Lcg(seed);
    (0..n)
        .map(|_| {
            let src = pods[rng.next(pods.len())].clone();
            let dst = pods[rng.next(pods.len())].clone();
            let (dst_port, protocol) =
                [(8080, 6), (9090, 6), (8443, 6), (53, 17), (9050, 6)][rng.next(5)];
            pod_flow(src, dst, dst_port, protocol)
        })
        .collect()
}
