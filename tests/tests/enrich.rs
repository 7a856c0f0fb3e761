//! Enrich end to end: real `flowscribe run --manifests DIR` with real traffic
//! between namespaces the test made, described by a manifests directory as
//! `kubectl get -A -o yaml` would print it. Needs root.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use flowscribe_e2e::*;
use serde_json::Value;

const ONE_WINDOW: &[&str] = &["--active-timeout", "300s", "--idle-timeout", "300s"];

/// The cluster: pod 1 = frontend/web (Deployment web), pod 2 = backend/db-0
/// (StatefulSet db) behind Service db (ClusterIP 10.96.0.10:80 -> 8080).
const CLUSTER: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata: {name: frontend, labels: {team: web, kubernetes.io/metadata.name: frontend}}
- apiVersion: v1
  kind: Namespace
  metadata: {name: backend, labels: {kubernetes.io/metadata.name: backend}}
- apiVersion: apps/v1
  kind: ReplicaSet
  metadata:
    name: web-5f7b9
    namespace: frontend
    uid: rs-1
    ownerReferences: [{apiVersion: apps/v1, kind: Deployment, name: web, uid: d-1, controller: true}]
- apiVersion: v1
  kind: Pod
  metadata:
    name: web-5f7b9-x1
    namespace: frontend
    uid: pod-web
    labels: {app: web, pod-template-hash: 5f7b9}
    creationTimestamp: "2026-01-01T00:00:00Z"
    ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-5f7b9, uid: rs-1, controller: true}]
  spec: {nodeName: test-node, serviceAccountName: web-sa, containers: [{name: web, image: x}]}
  status: {phase: Running, podIP: 10.201.1.2, podIPs: [{ip: 10.201.1.2}]}
"#;

const DB: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: db-0
  namespace: backend
  uid: pod-db
  labels: {app: db}
  creationTimestamp: "2026-01-01T00:00:00Z"
  ownerReferences: [{apiVersion: apps/v1, kind: StatefulSet, name: db, uid: ss-1, controller: true}]
spec:
  nodeName: test-node
  serviceAccountName: db-sa
  containers: [{name: db, image: x, ports: [{name: http, containerPort: 8080}]}]
status: {phase: Running, podIP: 10.201.2.2}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: backend, uid: svc-db}
spec:
  clusterIP: 10.96.0.10
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: db-x7k2p, namespace: backend, labels: {kubernetes.io/service-name: db}}
addressType: IPv4
endpoints: [{addresses: [10.201.2.2]}]
ports: [{name: http, port: 8080}]
"#;

/// Pod 3 appears later; no creationTimestamp, so it holds its address from
/// the moment the exporter reads it.
const LATE_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: late, namespace: frontend, uid: pod-late, labels: {app: late}}
spec: {nodeName: test-node, serviceAccountName: late-sa}
status: {podIP: 10.201.3.2}
"#;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The single flow record from `src` to `dst`.
fn flow(stopped: &Stopped, src: IpAddr, dst: IpAddr, dst_port: u16) -> &Value {
    let found: Vec<&Value> = stopped
        .flows_between(src, dst)
        .into_iter()
        .filter(|r| r["dst_port"] == dst_port && r["src_addr"] == src.to_string())
        .collect();
    assert_eq!(
        found.len(),
        1,
        "records {src} -> {dst}:{dst_port}: {found:#?}"
    );
    found[0]
}

/// Wait until the exporter has logged "manifests loaded" `times` times.
fn manifests_loaded(e: &mut Exporter, times: usize) {
    let seen = |e: &Exporter| {
        e.log
            .iter()
            .filter(|l| l.contains("manifests loaded"))
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while seen(e) < times {
        assert!(
            std::time::Instant::now() < deadline,
            "manifests not (re)loaded; log:\n{}",
            e.log.join("\n")
        );
        // Reads (and keeps) stderr lines for up to 50 ms.
        e.wait_for_log(|_| false, Duration::from_millis(50));
    }
}

#[test]
fn flows_carry_pod_workload_service_account_and_service_backend() {
    let _serial = serial();
    let node = Node::new_v4_only(2);
    let (web, db) = (&node.pods[0], &node.pods[1]);
    let dir = ManifestsDir::new("pods");
    dir.write("cluster.yaml", CLUSTER);
    dir.write("db.yaml", DB);
    // kube-proxy's job: ClusterIP 10.96.0.10:80 -> db-0:8080, in the node.
    node.ns.sh(&["nft", "add table ip fsnat"]);
    node.ns.sh(&[
        "nft",
        "add chain ip fsnat pre { type nat hook prerouting priority -100 ; }",
    ]);
    node.ns.sh(&[
        "nft",
        "add rule ip fsnat pre ip daddr 10.96.0.10 tcp dport 80 dnat to 10.201.2.2:8080",
    ]);

    let mut args = ONE_WINDOW.to_vec();
    let dir_arg = dir.arg().display().to_string();
    args.extend(["--manifests", &dir_arg]);
    let mut exporter = Exporter::start(&node.ns.name, &args);
    manifests_loaded(&mut exporter, 1);

    let (direct_port, _) = tcp_transfer(&web.ns, &db.ns, db.v4, 10_000);
    let via_service_port = tcp_via(&web.ns, &db.ns, ip("10.96.0.10"), 80, 8080, 5_000);
    let stopped = exporter.stop();
    assert_eq!(stopped.code, Some(0), "log:\n{}", stopped.log.join("\n"));

    // Pod to pod: both sides fully identified.
    let r = flow(
        &stopped,
        web.v4,
        db.v4,
        r_port(&stopped, web.v4, db.v4, direct_port),
    );
    let src = &r["source"];
    assert_eq!(src["kind"], "pod");
    assert_eq!(src["namespace"], "frontend");
    assert_eq!(src["pod"], "web-5f7b9-x1");
    assert_eq!(src["pod_uid"], "pod-web");
    assert_eq!(src["workload"]["kind"], "Deployment");
    assert_eq!(src["workload"]["name"], "web");
    assert_eq!(src["service_account"], "web-sa");
    assert_eq!(src["labels"]["app"], "web");
    assert_eq!(src["node"], "test-node");
    let dst = &r["destination"];
    assert_eq!(dst["kind"], "pod");
    assert_eq!(dst["namespace"], "backend");
    assert_eq!(dst["pod"], "db-0");
    assert_eq!(dst["workload"]["kind"], "StatefulSet");
    assert_eq!(dst["service_account"], "db-sa");
    assert!(dst.get("stale").is_none());
    assert_eq!(r["identity_degraded"], false);

    // Through the ClusterIP: the pre-DNAT record names the service and,
    // joined with the post-DNAT record seen at db-0's interface, the backend.
    let svc = flow(&stopped, web.v4, ip("10.96.0.10"), 80);
    assert_eq!(svc["src_port"], via_service_port);
    let d = &svc["destination"];
    assert_eq!(d["kind"], "service");
    assert_eq!(d["service"]["namespace"], "backend");
    assert_eq!(d["service"]["name"], "db");
    assert_eq!(d["service"]["port_name"], "http");
    assert_eq!(d["pod"], "db-0");
    assert_eq!(svc["source"]["pod"], "web-5f7b9-x1");
    let post = flow(&stopped, web.v4, db.v4, 8080);
    assert_eq!(post["src_port"], via_service_port);
    assert_eq!(post["destination"]["pod"], "db-0");
}

/// `tcp_transfer` picks its own port; find the record's server port by the
/// client port it returned.
fn r_port(stopped: &Stopped, a: IpAddr, b: IpAddr, client_port: u16) -> u16 {
    let r = stopped
        .flows_between(a, b)
        .into_iter()
        .find(|r| r["src_port"] == client_port)
        .unwrap_or_else(|| panic!("no record from client port {client_port}"));
    r["dst_port"].as_u64().unwrap() as u16
}

/// Connect from `from` to `addr:port` (translated by the node to a listener
/// on `listen_port` in `to`), send `bytes`, close. Returns the client port.
fn tcp_via(
    from: &Netns,
    to: &Netns,
    addr: IpAddr,
    port: u16,
    listen_port: u16,
    bytes: usize,
) -> u16 {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    let listener = to.run(move || TcpListener::bind(("0.0.0.0", listen_port)).unwrap());
    let srv = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), bytes);
    });
    let dst = SocketAddr::new(addr, port);
    let mut c = from.run(move || TcpStream::connect(dst).unwrap());
    c.write_all(&vec![1u8; bytes]).unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    srv.join().unwrap();
    c.local_addr().unwrap().port()
}

#[test]
fn private_metadata_and_public_destinations_are_classified() {
    let _serial = serial();
    let node = Node::new_v4_only(2);
    let (client, host) = (&node.pods[0], &node.pods[1]);
    // Pod 2's namespace also hosts a private, a cloud-metadata and a public
    // (documentation range) address; the node routes them to it.
    for addr in ["192.168.77.7", "169.254.169.254", "203.0.113.7"] {
        host.ns
            .sh(&["ip", "addr", "add", &format!("{addr}/32"), "dev", "eth0"]);
        node.ns.sh(&[
            "ip",
            "route",
            "add",
            &format!("{addr}/32"),
            "via",
            "10.201.2.2",
        ]);
    }
    let dir = ManifestsDir::new("classes");
    dir.write("cluster.yaml", CLUSTER);
    let config = TempConfig::new(&format!(
        "enrich:\n  manifests: {}\n  networks:\n  - {{name: partner-net, cidrs: [203.0.113.0/24]}}\n",
        dir.arg().display()
    ));
    let cfg = config.arg();
    let mut args = ONE_WINDOW.to_vec();
    args.extend(["--config", &cfg]);
    let mut exporter = Exporter::start(&node.ns.name, &args);
    manifests_loaded(&mut exporter, 1);

    let mut ports = Vec::new();
    for addr in ["192.168.77.7", "169.254.169.254", "203.0.113.7"] {
        let (p, _) = tcp_transfer(&client.ns, &host.ns, ip(addr), 1_000);
        ports.push((addr, p));
    }
    let stopped = exporter.stop();
    assert_eq!(stopped.code, Some(0));
    let want = [
        ("192.168.77.7", "private-network", "PRIVATE NETWORK"),
        ("169.254.169.254", "cloud-metadata", "CLOUD METADATA"),
        ("203.0.113.7", "public-network", "partner-net"),
    ];
    for ((addr, kind, network), (_, client_port)) in want.iter().zip(&ports) {
        let r = stopped
            .flows_between(client.v4, ip(addr))
            .into_iter()
            .find(|r| r["src_port"] == *client_port)
            .unwrap_or_else(|| panic!("no record to {addr}"));
        assert_eq!(r["destination"]["kind"], *kind, "{addr}");
        assert_eq!(r["destination"]["network"], *network, "{addr}");
        assert_eq!(r["source"]["pod"], "web-5f7b9-x1", "{addr}");
    }
}

#[test]
fn manifest_changes_apply_by_time_new_pods_and_zombie_traffic() {
    let _serial = serial();
    let node = Node::new_v4_only(3);
    let (web, db, late) = (&node.pods[0], &node.pods[1], &node.pods[2]);
    let dir = ManifestsDir::new("changes");
    dir.write("cluster.yaml", CLUSTER);
    dir.write("changing.yaml", DB);
    let dir_arg = dir.arg().display().to_string();
    let mut args = ONE_WINDOW.to_vec();
    args.extend(["--manifests", &dir_arg]);
    let mut exporter = Exporter::start(&node.ns.name, &args);
    manifests_loaded(&mut exporter, 1);

    // Before: pod 3 is unknown, db-0 is live.
    let (late_before, _) = tcp_transfer(&web.ns, &late.ns, late.v4, 1_000);
    let (db_before, _) = tcp_transfer(&web.ns, &db.ns, db.v4, 1_000);

    // One atomic change: pod 3 appears, db-0 (and its service) is deleted.
    let changed_at = SystemTime::now();
    dir.write("changing.yaml", LATE_POD);
    manifests_loaded(&mut exporter, 2);

    // After: pod 3 resolves; traffic to db-0's address is zombie traffic.
    let (late_after, _) = tcp_transfer(&web.ns, &late.ns, late.v4, 1_000);
    let (db_after, _) = tcp_transfer(&web.ns, &db.ns, db.v4, 1_000);
    let stopped = exporter.stop();
    assert_eq!(stopped.code, Some(0));

    let by_port = |a: IpAddr, b: IpAddr, p: u16| {
        stopped
            .flows_between(a, b)
            .into_iter()
            .find(|r| r["src_port"] == p)
            .unwrap_or_else(|| panic!("no record from port {p}"))
            .clone()
    };
    let r = by_port(web.v4, late.v4, late_before);
    assert_eq!(r["destination"]["kind"], "private-network");
    assert!(r["destination"].get("pod").is_none());
    let r = by_port(web.v4, late.v4, late_after);
    assert_eq!(r["destination"]["kind"], "pod");
    assert_eq!(r["destination"]["pod"], "late");
    assert_eq!(r["destination"]["service_account"], "late-sa");

    let r = by_port(web.v4, db.v4, db_before);
    assert_eq!(r["destination"]["pod"], "db-0");
    assert!(r["destination"].get("stale").is_none());
    let r = by_port(web.v4, db.v4, db_after);
    assert_eq!(r["destination"]["pod"], "db-0");
    let deleted_at =
        humantime::parse_rfc3339(r["destination"]["stale"]["deleted_at"].as_str().unwrap())
            .unwrap();
    // Deleted when the exporter re-read the directory: after the change
    // and before the next traffic.
    let last_packet = humantime::parse_rfc3339(r["last_packet"].as_str().unwrap()).unwrap();
    assert!(deleted_at >= changed_at, "{deleted_at:?} {changed_at:?}");
    assert!(deleted_at <= last_packet);
}
