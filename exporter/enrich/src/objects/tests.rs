use serde_json::json;

use super::*;

fn pod_json() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": "web-7d4f9-abcde", "namespace": "shop", "uid": "u-1",
            "labels": {"app": "web"},
            "creationTimestamp": "2026-11-01T10:00:00Z",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                 "name": "web-7d4f9", "controller": true, "uid": "rs"}]
        },
        "spec": {
            "nodeName": "node-a", "serviceAccountName": "web-sa",
            "containers": [{"name": "c", "ports": [
                {"name": "http", "containerPort": 8080},
                {"containerPort": 53, "protocol": "UDP"}]}]
        },
        "status": {"phase": "Running", "podIP": "10.1.0.5",
                   "podIPs": [{"ip": "10.1.0.5"}, {"ip": "fd00::5"}]}
    })
}

#[test]
fn parses_a_pod() {
    let Some(Object::Pod(p)) = parse(&pod_json()).expect("valid") else {
        panic!("not a pod");
    };
    assert_eq!(p.meta.name, "web-7d4f9-abcde");
    assert_eq!(p.meta.namespace, "shop");
    assert_eq!(p.meta.labels.get("app").map(String::as_str), Some("web"));
    assert_eq!(p.meta.owners[0].kind, "ReplicaSet");
    assert!(p.meta.owners[0].controller);
    assert_eq!(p.service_account.as_deref(), Some("web-sa"));
    assert_eq!(p.node.as_deref(), Some("node-a"));
    assert_eq!(
        p.ips,
        vec![
            "10.1.0.5".parse::<IpAddr>().expect("ip"),
            "fd00::5".parse().expect("ip")
        ]
    );
    assert_eq!(
        p.ports,
        vec![
            ContainerPort {
                name: Some("http".into()),
                port: 8080,
                protocol: 6
            },
            ContainerPort {
                name: None,
                port: 53,
                protocol: 17
            },
        ]
    );
    assert!(!p.finished);
    assert_eq!(
        p.meta.created,
        Some(humantime::parse_rfc3339("2026-11-01T10:00:00Z").expect("time"))
    );
}

#[test]
fn unknown_kinds_are_ignored_not_errors() {
    let v = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
    assert_eq!(parse(&v), Ok(None));
}

#[test]
fn malformed_objects_name_the_field() {
    // (mutation, expected field in the error)
    type Mutation = fn(&mut Value);
    let cases: Vec<(Mutation, &str)> = vec![
        (|v| v["metadata"]["name"] = json!(null), "metadata.name"),
        (
            |v| v["status"]["podIP"] = json!("10.1.0.999"),
            "status.podIP",
        ),
        (
            |v| v["status"]["podIPs"] = json!("10.1.0.5"),
            "status.podIPs",
        ),
        (
            |v| v["metadata"]["labels"]["app"] = json!(3),
            "metadata.labels.app",
        ),
        (
            |v| v["metadata"]["creationTimestamp"] = json!("yesterday"),
            "metadata.creationTimestamp",
        ),
        (
            |v| v["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(70000),
            "spec.containers[0].ports[0].containerPort",
        ),
        (
            |v| v["spec"]["containers"][0]["ports"][1]["protocol"] = json!("QUIC"),
            "spec.containers[0].ports[1].protocol",
        ),
        (
            |v| v["metadata"]["ownerReferences"][0]["kind"] = json!(null),
            "metadata.ownerReferences[0]",
        ),
    ];
    for (mutate, field) in cases {
        let mut v = pod_json();
        mutate(&mut v);
        let err = parse(&v).expect_err(field);
        assert_eq!(err.field, field, "{err}");
        assert_eq!(err.kind, "Pod");
    }
}

#[test]
fn services_skip_headless_and_read_ports() {
    let v = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "db", "namespace": "shop"},
        "spec": {"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20", "fd00:96::20"],
                 "ports": [{"name": "pg", "port": 5432}, {"port": 53, "protocol": "UDP"}]}});
    let Some(Object::Service(s)) = parse(&v).expect("valid") else {
        panic!("not a service")
    };
    assert_eq!(s.cluster_ips.len(), 2);
    assert_eq!(
        s.ports[0],
        ServicePort {
            name: Some("pg".into()),
            port: 5432,
            protocol: 6
        }
    );
    assert_eq!(s.ports[1].protocol, 17);

    let headless = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "h", "namespace": "shop"}, "spec": {"clusterIP": "None"}});
    let Some(Object::Service(s)) = parse(&headless).expect("valid") else {
        panic!("not a service")
    };
    assert!(s.cluster_ips.is_empty());
}

#[test]
fn nodes_read_addresses_and_pod_cidrs() {
    let v = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a"},
        "spec": {"podCIDR": "10.1.0.0/24", "podCIDRs": ["10.1.0.0/24", "fd00:1::/64"]},
        "status": {"addresses": [
            {"type": "InternalIP", "address": "192.168.1.10"},
            {"type": "Hostname", "address": "node-a"}]}});
    let Some(Object::Node(n)) = parse(&v).expect("valid") else {
        panic!("not a node")
    };
    assert_eq!(
        n.addresses,
        vec!["192.168.1.10".parse::<IpAddr>().expect("ip")]
    );
    assert_eq!(n.pod_cidrs.len(), 2);
    assert_eq!(n.meta.namespace, "");
}

#[test]
fn endpoint_slices_name_their_service() {
    let v = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "db-x1", "namespace": "shop",
                     "labels": {"kubernetes.io/service-name": "db"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.1.0.7"]}, {"addresses": ["10.1.0.8"]}]});
    let Some(Object::EndpointSlice(e)) = parse(&v).expect("valid") else {
        panic!("not a slice")
    };
    assert_eq!(e.service.as_deref(), Some("db"));
    assert_eq!(e.addresses.len(), 2);
}

#[test]
fn every_kind_is_found_by_its_api_version_and_no_other() {
    for kind in Kind::ALL {
        let (group, version, _) = kind.api();
        let api_version = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        assert_eq!(Kind::from_api(&api_version, kind.as_str()), Some(kind));
    }
    assert_eq!(Kind::from_api("apps/v1", "Pod"), None);
    assert_eq!(Kind::from_api("v1", "ReplicaSet"), None);
    assert_eq!(
        Kind::from_api("discovery.k8s.io/v1beta1", "EndpointSlice"),
        None
    );
}
