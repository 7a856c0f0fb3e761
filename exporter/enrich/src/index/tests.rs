use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::*;
use crate::objects;

fn t(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
}

fn rfc(s: u64) -> String {
    humantime::format_rfc3339(t(s)).to_string()
}

fn obj(v: Value) -> Object {
    objects::parse(&v).expect("valid").expect("known kind")
}

fn pod(name: &str, uid: &str, ip: &str, created: u64, owner: Option<(&str, &str)>) -> Object {
    let mut v = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "uid": uid,
                     "labels": {"app": name}, "creationTimestamp": rfc(created)},
        "spec": {"nodeName": "node-a", "serviceAccountName": format!("{name}-sa"),
                 "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {"podIP": ip}
    });
    if let Some((kind, oname)) = owner {
        v["metadata"]["ownerReferences"] =
            json!([{"kind": kind, "name": oname, "controller": true}]);
    }
    obj(v)
}

fn owner(kind: &str, api: &str, name: &str, up: Option<(&str, &str)>) -> Object {
    let mut v = json!({"apiVersion": api, "kind": kind,
                       "metadata": {"name": name, "namespace": "shop", "uid": name}});
    if let Some((k, n)) = up {
        v["metadata"]["ownerReferences"] = json!([{"kind": k, "name": n, "controller": true}]);
    }
    obj(v)
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn key(kind: Kind, ns: &str, name: &str) -> ObjectKey {
    ObjectKey {
        kind,
        namespace: ns.into(),
        name: name.into(),
    }
}

fn pod_name(ep: &Endpoint) -> Option<&str> {
    ep.pod.as_ref().map(|p| &*p.name)
}

#[test]
fn an_address_resolves_to_its_holder_at_the_time_of_the_flow() {
    let mut idx = IdentityIndex::new(IndexConfig::default());
    idx.apply(
        Change::Upsert(pod("old", "u-old", "10.1.0.5", 0, None)),
        t(1),
    );
    idx.apply(Change::Delete(key(Kind::Pod, "shop", "old")), t(100));
    idx.apply(
        Change::Upsert(pod("new", "u-new", "10.1.0.5", 130, None)),
        t(131),
    );

    let at = |s| idx.resolve(ip("10.1.0.5"), None, t(s));
    // Before the deletion: the old pod, not stale.
    let e = at(50);
    assert_eq!(
        (e.kind, pod_name(&e), e.stale),
        (EndpointKind::Pod, Some("old"), None)
    );
    // After deletion, before reuse: the old pod, stale since the deletion.
    let e = at(120);
    assert_eq!(pod_name(&e), Some("old"));
    assert_eq!(e.stale, Some(Stale { deleted_at: t(100) }));
    // After reuse: the new pod.
    let e = at(140);
    assert_eq!((pod_name(&e), e.stale), (Some("new"), None));
    // Before anything held it: no pod, classified by network.
    let e = at(0).kind;
    assert_eq!(e, EndpointKind::Pod, "created at 0 holds from 0");
    let before = idx.resolve(ip("10.1.0.5"), None, t(0) - Duration::from_secs(1));
    assert_eq!(before.kind, EndpointKind::PrivateNetwork);
    assert!(before.pod.is_none());
}

#[test]
fn stale_identities_expire_after_the_grace_period() {
    let mut idx = IdentityIndex::new(IndexConfig {
        deleted_grace: Duration::from_secs(60),
        ..IndexConfig::default()
    });
    idx.apply(Change::Upsert(pod("gone", "u1", "10.1.0.9", 0, None)), t(1));
    idx.apply(Change::Delete(key(Kind::Pod, "shop", "gone")), t(10));
    assert!(idx.resolve(ip("10.1.0.9"), None, t(70)).stale.is_some());
    // 61 s after the deletion the pod no longer resolves, even before expire().
    assert!(idx.resolve(ip("10.1.0.9"), None, t(71)).pod.is_none());
    assert_eq!(idx.stats().holdings, 1);
    idx.expire(t(71));
    assert_eq!(idx.stats().holdings, 0);
}

#[test]
fn a_recreated_pod_with_the_same_name_ends_the_old_one() {
    let mut idx = IdentityIndex::new(IndexConfig::default());
    idx.apply(
        Change::Upsert(pod("db-0", "u1", "10.1.0.20", 0, None)),
        t(1),
    );
    // StatefulSet pod recreated: same name, new uid, new address.
    idx.apply(
        Change::Upsert(pod("db-0", "u2", "10.1.0.21", 50, None)),
        t(51),
    );
    let old = idx.resolve(ip("10.1.0.20"), None, t(60));
    assert_eq!(old.pod.as_ref().map(|p| &*p.uid), Some("u1"));
    assert_eq!(old.stale, Some(Stale { deleted_at: t(51) }));
    let new = idx.resolve(ip("10.1.0.21"), None, t(60));
    assert_eq!(
        (new.pod.as_ref().map(|p| &*p.uid), new.stale),
        (Some("u2"), None)
    );
}

#[test]
fn top_owner_chains() {
    let mut idx = IdentityIndex::new(IndexConfig::default());
    let objs = vec![
        owner(
            "ReplicaSet",
            "apps/v1",
            "web-7d4f9",
            Some(("Deployment", "web")),
        ),
        owner(
            "Job",
            "batch/v1",
            "report-2891",
            Some(("CronJob", "report")),
        ),
        owner("ReplicaSet", "apps/v1", "orphan-rs", None),
        pod("w", "u1", "10.1.0.1", 0, Some(("ReplicaSet", "web-7d4f9"))),
        pod("r", "u2", "10.1.0.2", 0, Some(("Job", "report-2891"))),
        pod("s", "u3", "10.1.0.3", 0, Some(("StatefulSet", "db"))),
        pod("d", "u4", "10.1.0.4", 0, Some(("DaemonSet", "agent"))),
        pod("o", "u5", "10.1.0.5", 0, Some(("ReplicaSet", "orphan-rs"))),
        pod("u", "u6", "10.1.0.6", 0, Some(("ReplicaSet", "unknown-rs"))),
        pod("bare", "u7", "10.1.0.7", 0, None),
    ];
    for o in objs {
        idx.apply(Change::Upsert(o), t(1));
    }
    let cases = [
        ("10.1.0.1", Some(("Deployment", "web"))),
        ("10.1.0.2", Some(("CronJob", "report"))),
        ("10.1.0.3", Some(("StatefulSet", "db"))),
        ("10.1.0.4", Some(("DaemonSet", "agent"))),
        ("10.1.0.5", Some(("ReplicaSet", "orphan-rs"))),
        ("10.1.0.6", Some(("ReplicaSet", "unknown-rs"))),
        ("10.1.0.7", None),
    ];
    for (addr, want) in cases {
        let e = idx.resolve(ip(addr), None, t(2));
        let got = e.pod.as_ref().and_then(|p| p.workload.clone());
        let got = got.as_ref().map(|w| (&*w.kind, &*w.name));
        assert_eq!(got, want, "{addr}");
    }
}

#[test]
fn an_owner_seen_after_its_pods_updates_their_workload() {
    let mut idx = IdentityIndex::new(IndexConfig::default());
    idx.apply(
        Change::Upsert(pod("w", "u1", "10.1.0.1", 0, Some(("ReplicaSet", "web-1")))),
        t(1),
    );
    let w = |idx: &IdentityIndex| {
        idx.resolve(ip("10.1.0.1"), None, t(5))
            .pod
            .and_then(|p| p.workload.clone())
            .map(|w| w.kind.to_string())
    };
    assert_eq!(w(&idx).as_deref(), Some("ReplicaSet"));
    idx.apply(
        Change::Upsert(owner(
            "ReplicaSet",
            "apps/v1",
            "web-1",
            Some(("Deployment", "web")),
        )),
        t(2),
    );
    assert_eq!(w(&idx).as_deref(), Some("Deployment"));
}

#[test]
fn namespace_labels_follow_namespace_changes() {
    let mut idx = IdentityIndex::new(IndexConfig::default());
    idx.apply(Change::Upsert(pod("w", "u1", "10.1.0.1", 0, None)), t(1));
    let labels = |idx: &IdentityIndex| {
        idx.resolve(ip("10.1.0.1"), None, t(5))
            .pod
            .expect("pod")
            .namespace_labels
            .clone()
    };
    assert_eq!(
        labels(&idx)
            .get("kubernetes.io/metadata.name")
            .map(String::as_str),
        Some("shop")
    );
    idx.apply(
        Change::Upsert(obj(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "shop", "labels": {"team": "payments"}}}))),
        t(2),
    );
    assert_eq!(
        labels(&idx).get("team").map(String::as_str),
        Some("payments")
    );
}

#[test]
fn services_nodes_host_network_pods_and_networks() {
    let mut idx = IdentityIndex::new(IndexConfig {
        service_cidrs: vec!["10.96.0.0/12".parse().expect("cidr")],
        ..IndexConfig::default()
    });
    let objs = vec![
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a"},
               "spec": {"podCIDR": "10.244.1.0/24"},
               "status": {"addresses": [{"type": "InternalIP", "address": "192.168.5.10"}]}}),
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "db", "namespace": "shop", "uid": "s1"},
               "spec": {"clusterIP": "10.96.0.20", "ports": [{"name": "pg", "port": 5432}]}}),
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "node-exporter-x", "namespace": "mon", "uid": "h1"},
               "spec": {"nodeName": "node-a", "hostNetwork": true,
                        "containers": [{"name": "c", "ports": [{"containerPort": 9100}]}]},
               "status": {"podIP": "192.168.5.10"}}),
    ];
    for v in objs {
        idx.apply(Change::Upsert(obj(v)), t(1));
    }
    let svc = idx.resolve(ip("10.96.0.20"), Some((5432, 6)), t(2));
    assert_eq!(svc.kind, EndpointKind::Service);
    let s = svc.service.expect("service");
    assert_eq!(
        (&*s.namespace, &*s.name, s.port_name.as_deref()),
        ("shop", "db", Some("pg"))
    );
    assert_eq!(svc.network.as_deref(), Some(SERVICE_NETWORK));
    // Flow ends to one service port share one reference (no allocation
    // per flow); another port or protocol names no port.
    let again = idx.resolve(ip("10.96.0.20"), Some((5432, 6)), t(3));
    assert!(Arc::ptr_eq(&s, again.service.as_ref().expect("service")));
    for listening in [Some((5433, 6)), Some((5432, 17)), None] {
        let other = idx.resolve(ip("10.96.0.20"), listening, t(2));
        let o = other.service.expect("service");
        assert_eq!(
            (&*o.namespace, &*o.name, o.port_name.as_deref()),
            ("shop", "db", None),
            "{listening:?}"
        );
    }

    let host = idx.resolve(ip("192.168.5.10"), Some((9100, 6)), t(2));
    assert_eq!(host.kind, EndpointKind::HostNetworkPod);
    assert_eq!(pod_name(&host), Some("node-exporter-x"));
    assert_eq!(host.node.as_deref(), Some("node-a"));

    let node = idx.resolve(ip("192.168.5.10"), Some((22, 6)), t(2));
    assert_eq!(
        (node.kind, node.node.as_deref()),
        (EndpointKind::Node, Some("node-a"))
    );
    assert!(node.pod.is_none());

    let unknown_pod = idx.resolve(ip("10.244.1.77"), None, t(2));
    assert_eq!(unknown_pod.kind, EndpointKind::PrivateNetwork);
    assert_eq!(unknown_pod.network.as_deref(), Some(POD_NETWORK));

    let metadata = idx.resolve(ip("169.254.169.254"), Some((80, 6)), t(2));
    assert_eq!(metadata.kind, EndpointKind::CloudMetadata);

    // Deleting the node removes its addresses and its pod CIDR.
    idx.apply(Change::Delete(key(Kind::Node, "", "node-a")), t(3));
    assert_eq!(
        idx.resolve(ip("192.168.5.10"), Some((22, 6)), t(4)).kind,
        EndpointKind::PrivateNetwork
    );
    assert_eq!(
        idx.resolve(ip("10.244.1.77"), None, t(4))
            .network
            .as_deref(),
        Some(crate::networks::PRIVATE_NETWORK)
    );
}

#[test]
fn replace_kind_deletes_what_is_missing() {
    let mut idx = IdentityIndex::new(IndexConfig::default());
    idx.replace_kind(
        Kind::Pod,
        vec![
            pod("a", "ua", "10.1.0.1", 0, None),
            pod("b", "ub", "10.1.0.2", 0, None),
        ],
        t(1),
    );
    idx.replace_kind(Kind::Pod, vec![pod("b", "ub", "10.1.0.2", 0, None)], t(10));
    assert_eq!(idx.stats().pods, 1);
    let a = idx.resolve(ip("10.1.0.1"), None, t(11));
    assert_eq!(a.stale, Some(Stale { deleted_at: t(10) }));
    assert_eq!(idx.resolve(ip("10.1.0.2"), None, t(11)).stale, None);
}

#[test]
fn finished_pods_release_their_address() {
    let mut idx = IdentityIndex::new(IndexConfig::default());
    idx.apply(Change::Upsert(pod("job", "u1", "10.1.0.1", 0, None)), t(1));
    let Object::Pod(mut p) = pod("job", "u1", "10.1.0.1", 0, None) else {
        unreachable!()
    };
    p.finished = true;
    idx.apply(Change::Upsert(Object::Pod(p)), t(20));
    let e = idx.resolve(ip("10.1.0.1"), None, t(25));
    assert_eq!(e.stale, Some(Stale { deleted_at: t(20) }));
}

#[test]
fn identities_share_interned_values() {
    let mut idx = IdentityIndex::new(IndexConfig::default());
    idx.apply(Change::Upsert(pod("a", "ua", "10.1.0.1", 0, None)), t(1));
    idx.apply(Change::Upsert(pod("b", "ub", "10.1.0.2", 0, None)), t(1));
    let a = idx.resolve(ip("10.1.0.1"), None, t(2)).pod.expect("a");
    let b = idx.resolve(ip("10.1.0.2"), None, t(2)).pod.expect("b");
    assert!(Arc::ptr_eq(&a.namespace_labels, &b.namespace_labels));
    assert!(std::ptr::eq(a.namespace.as_ptr(), b.namespace.as_ptr()));
}

#[test]
fn an_unchanged_pod_is_skipped_and_any_changed_field_is_applied() {
    let base = || pod("w", "u1", "10.1.0.1", 0, Some(("StatefulSet", "db")));
    let resolved = |idx: &IdentityIndex| idx.resolve(ip("10.1.0.1"), None, t(5)).pod.expect("pod");
    let mut idx = IdentityIndex::new(IndexConfig::default());
    idx.apply(Change::Upsert(base()), t(1));
    let first = resolved(&idx);
    idx.apply(Change::Upsert(base()), t(2));
    assert!(
        Arc::ptr_eq(&first, &resolved(&idx)),
        "unchanged: same identity"
    );

    type Edit = fn(&mut Pod);
    let edits: [(&str, Edit); 6] = [
        ("label", |p| {
            p.meta.labels.insert("v".into(), "2".into());
        }),
        ("service account", |p| {
            p.service_account = Some("other".into())
        }),
        ("node", |p| p.node = Some("node-b".into())),
        ("owner", |p| p.meta.owners[0].name = "db2".into()),
        ("port", |p| p.ports[0].port = 9090),
        ("port name", |p| p.ports[0].name = Some("metrics".into())),
    ];
    for (what, edit) in edits {
        let mut idx = IdentityIndex::new(IndexConfig::default());
        idx.apply(Change::Upsert(base()), t(1));
        let Object::Pod(mut p) = base() else {
            unreachable!()
        };
        edit(&mut p);
        idx.apply(Change::Upsert(Object::Pod(p.clone())), t(2));
        let got = resolved(&idx);
        let want = PodIdentity {
            labels: Arc::new(p.meta.labels.clone()),
            service_account: p.service_account.as_deref().map(Arc::from),
            node: p.node.as_deref().map(Arc::from),
            workload: Some(Workload {
                kind: "StatefulSet".into(),
                name: Arc::from(p.meta.owners[0].name.as_str()),
            }),
            ports: p
                .ports
                .iter()
                .map(|c| {
                    (
                        Arc::from(c.name.as_deref().unwrap_or("")),
                        c.port,
                        c.protocol,
                    )
                })
                .collect(),
            ..(*first).clone()
        };
        assert_eq!(*got, want, "{what}");
        assert_eq!(
            idx.resolve(ip("10.1.0.1"), None, t(5)).node.as_deref(),
            p.node.as_deref(),
            "{what}: endpoint node"
        );
    }
}

#[test]
fn batch_resolution_answers_exactly_as_one_by_one() {
    let mut idx = IdentityIndex::new(IndexConfig {
        service_cidrs: vec!["10.96.0.0/12".parse().expect("cidr")],
        ..IndexConfig::default()
    });
    idx.apply(
        Change::Upsert(pod("old", "u-old", "10.1.0.5", 0, None)),
        t(1),
    );
    idx.apply(Change::Delete(key(Kind::Pod, "shop", "old")), t(100));
    idx.apply(
        Change::Upsert(pod("new", "u-new", "10.1.0.5", 130, None)),
        t(131),
    );
    idx.apply(
        Change::Upsert(pod(
            "web",
            "u-web",
            "10.1.0.6",
            0,
            Some(("ReplicaSet", "web-1")),
        )),
        t(1),
    );
    for v in [
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a"},
               "spec": {"podCIDR": "10.244.1.0/24"},
               "status": {"addresses": [{"type": "InternalIP", "address": "192.168.5.10"}]}}),
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "db", "namespace": "shop", "uid": "s1"},
               "spec": {"clusterIP": "10.96.0.20", "ports": [{"name": "pg", "port": 5432}]}}),
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "node-exporter-x", "namespace": "mon", "uid": "h1"},
               "spec": {"nodeName": "node-a", "hostNetwork": true,
                        "containers": [{"name": "c", "ports": [{"containerPort": 9100}]}]},
               "status": {"podIP": "192.168.5.10"}}),
    ] {
        idx.apply(Change::Upsert(obj(v)), t(1));
    }
    let queries: Vec<Query> = [
        ("10.1.0.5", None, 50),
        ("10.1.0.5", None, 120),
        ("10.1.0.5", Some((80, 6)), 140),
        ("10.1.0.6", None, 2),
        ("10.96.0.20", Some((5432, 6)), 2),
        ("192.168.5.10", Some((9100, 6)), 2),
        ("192.168.5.10", Some((22, 6)), 2),
        ("10.244.1.77", None, 2),
        ("169.254.169.254", Some((80, 6)), 2),
        ("8.8.8.8", Some((53, 17)), 2),
        ("fd00::1", None, 2),
    ]
    .iter()
    .map(|(a, l, s)| (ip(a), *l, t(*s)))
    .collect();
    let one_by_one: Vec<Endpoint> = queries
        .iter()
        .map(|(a, l, at)| idx.resolve(*a, *l, *at))
        .collect();
    assert_eq!(idx.resolve_batch(&queries), one_by_one);
    // The cases are distinct: stale, reused, service, host-network, node, ...
    assert_eq!(one_by_one[1].stale, Some(Stale { deleted_at: t(100) }));
    assert_eq!(pod_name(&one_by_one[2]), Some("new"));
    assert_eq!(one_by_one[5].kind, EndpointKind::HostNetworkPod);
    assert_eq!(one_by_one[9].kind, EndpointKind::PublicNetwork);

    // Batches longer than one round of the passes (and not a multiple of
    // it), times changing within and across rounds, the same address at
    // different times next to each other.
    let long: Vec<Query> = (0..300u64)
        .map(|i| {
            let (a, l, _) = queries[(i as usize * 7) % queries.len()];
            (
                a,
                l,
                t([2, 50, 99, 100, 120, 131, 140, 100_000][(i / 3) as usize % 8]),
            )
        })
        .collect();
    let one_by_one: Vec<Endpoint> = long
        .iter()
        .map(|(a, l, at)| idx.resolve(*a, *l, *at))
        .collect();
    assert_eq!(idx.resolve_batch(&long), one_by_one);
    assert_eq!(idx.resolve_batch(&[]), Vec::new());
    let kinds: HashSet<EndpointKind> = one_by_one.iter().map(|e| e.kind).collect();
    assert!(kinds.len() >= 6, "{kinds:?}");
    assert!(one_by_one.iter().any(|e| e.stale.is_some()));
}

/// A pod address's slot (key, one holding inline, node name) is one cache
/// line: the lookup's first miss fetches all of it.
#[test]
fn a_pod_address_slot_is_one_cache_line() {
    assert_eq!(AddrMap::<History<PodHolder>>::slot_bytes(), 64);
}

/// Times survive the round trip through the holdings' integer form, before
/// and after the epoch, and the ends clamp without reading as "open".
#[test]
fn holding_times_round_trip() {
    for t in [
        UNIX_EPOCH,
        t(0),
        t(123) + Duration::from_nanos(456_789),
        UNIX_EPOCH - Duration::from_secs(86_400 * 365 * 10) + Duration::from_nanos(1),
    ] {
        assert_eq!(system_time(nanos(t)), t);
    }
    let far = UNIX_EPOCH + Duration::from_secs(400 * 365 * 86_400);
    assert_eq!(nanos(far), OPEN - 1);
    let long_ago = UNIX_EPOCH - Duration::from_secs(400 * 365 * 86_400);
    assert_eq!(nanos(long_ago), Nanos::MIN);
}
