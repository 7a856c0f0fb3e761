//! The live Kubernetes source end to end: the real `flowscribe run` watching
//! a fake API server (real list/watch over HTTP, inside the test's node
//! namespace) while real traffic flows between pod namespaces. Needs root.
#![allow(clippy::unwrap_used, reason = "tests")]

#[path = "../../exporter/enrich/tests/fake_apiserver/mod.rs"]
#[allow(
    dead_code,
    reason = "shared with the enrich tests; this file uses part of it"
)]
mod fake_apiserver;

use std::time::Duration;

use fake_apiserver::FakeApiServer;
use flowscribe_e2e::*;
use serde_json::{Value, json};

const ONE_WINDOW: &[&str] = &["--active-timeout", "300s", "--idle-timeout", "300s"];

fn pod(name: &str, ns: &str, ip: &str, sa: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}"),
                     "labels": {"app": name}, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"nodeName": "test-node", "serviceAccountName": sa},
        "status": {"phase": "Running", "podIP": ip}
    })
}

/// A fake API server listening on 127.0.0.1 inside the node namespace,
/// served by `rt`, and a kubeconfig file pointing at it.
fn api_server(rt: &tokio::runtime::Runtime, node: &Node) -> (FakeApiServer, TempConfig) {
    let listener = node
        .ns
        .run(|| std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let fake = {
        let _enter = rt.enter();
        FakeApiServer::start_on(listener)
    };
    fake.apply("namespaces", json!({"metadata": {"name": "shop"}}));
    fake.apply("pods", pod("web", "shop", "10.201.1.2", "web-sa"));
    fake.apply("pods", pod("db", "shop", "10.201.2.2", "db-sa"));
    let kubeconfig = TempConfig::new(&format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: test\n\
         clusters: [{{name: fake, cluster: {{server: '{}'}}}}]\n\
         users: [{{name: nobody, user: {{}}}}]\n\
         contexts: [{{name: test, context: {{cluster: fake, user: nobody}}}}]\n",
        fake.url()
    ));
    (fake, kubeconfig)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn record_from(stopped: &Stopped, client_port: u16) -> &Value {
    stopped
        .records
        .iter()
        .find(|r| r["record"] == "flow" && r["src_port"] == client_port)
        .unwrap_or_else(|| panic!("no record from port {client_port}"))
}

#[test]
fn watched_pods_name_both_ends_including_pods_added_while_running() {
    let _serial = serial();
    let node = Node::new_v4_only(3);
    let rt = runtime();
    let (fake, kubeconfig) = api_server(&rt, &node);
    let path = kubeconfig.arg();
    // Loopback is captured too (nothing excluded by name), so the API
    // server's traffic there is left out only by the endpoint exclusion.
    let mut args = ONE_WINDOW.to_vec();
    args.extend(["--exclude-interface", "none-excluded"]);
    let mut exporter =
        Exporter::start_with_env(&node.ns.name, &args, &[("KUBECONFIG", path.as_str())]);
    exporter
        .wait_for_log(
            |l| l.contains("kubernetes objects listed") && l.contains("kind=\"Pod\""),
            Duration::from_secs(15),
        )
        .unwrap_or_else(|| panic!("pods never listed; log:\n{}", exporter.log.join("\n")));

    let (web, db, late) = (&node.pods[0], &node.pods[1], &node.pods[2]);
    let (p1, _) = tcp_transfer(&web.ns, &db.ns, db.v4, 2_000);
    // A pod created while the exporter runs arrives as a watch event.
    fake.apply("pods", pod("late", "shop", "10.201.3.2", "late-sa"));
    let (p2, _) = tcp_transfer(&late.ns, &web.ns, web.v4, 2_000);
    // Other loopback traffic of the node is recorded: lo is captured.
    let lo = "127.0.0.1".parse().unwrap();
    let lo_port = udp_exchange(&node.ns, &node.ns, lo, 3, 100, 1, 100);
    let stopped = exporter.stop();
    assert_eq!(stopped.code, Some(0), "log:\n{}", stopped.log.join("\n"));

    let r = record_from(&stopped, p1);
    assert_eq!(r["source"]["pod"], "web");
    assert_eq!(r["source"]["service_account"], "web-sa");
    assert_eq!(r["destination"]["pod"], "db");
    assert_eq!(r["identity_degraded"], false);
    let r = record_from(&stopped, p2);
    assert_eq!(r["source"]["pod"], "late");
    assert_eq!(r["source"]["service_account"], "late-sa");
    assert_eq!(r["destination"]["pod"], "web");
    assert!(
        stopped
            .records
            .iter()
            .any(|r| r["record"] == "flow" && r["src_port"] == lo_port),
        "loopback not captured"
    );
    // The exporter's own API traffic, on that same loopback, is not a flow.
    assert!(
        !stopped.records.iter().any(|r| r["record"] == "flow"
            && (r["dst_port"] == fake.addr.port() || r["src_port"] == fake.addr.port())),
        "API server traffic recorded"
    );
}

#[test]
fn a_forbidden_resource_is_named_and_records_say_identity_is_degraded() {
    let _serial = serial();
    let node = Node::new_v4_only(2);
    let rt = runtime();
    let (fake, kubeconfig) = api_server(&rt, &node);
    fake.forbid("pods", true);
    let path = kubeconfig.arg();
    let mut exporter =
        Exporter::start_with_env(&node.ns.name, ONE_WINDOW, &[("KUBECONFIG", path.as_str())]);
    let line = exporter
        .wait_for_log(
            |l| l.contains("kubernetes watch failing"),
            Duration::from_secs(15),
        )
        .unwrap_or_else(|| panic!("no failing watch logged; log:\n{}", exporter.log.join("\n")));
    assert!(line.contains("kind=\"Pod\""), "{line}");
    assert!(
        line.contains(r#"get/list/watch on pods (apiGroups: [""])"#),
        "{line}"
    );
    assert!(line.contains("WARN"), "{line}");

    let (web, db) = (&node.pods[0], &node.pods[1]);
    let (p, _) = tcp_transfer(&web.ns, &db.ns, db.v4, 1_000);
    let stopped = exporter.stop();
    assert_eq!(stopped.code, Some(0));
    let r = record_from(&stopped, p);
    assert_eq!(r["identity_degraded"], true);
    assert_eq!(r["source"]["kind"], "private-network");
    // Reported once, however often the watcher retried.
    let failing = stopped
        .log
        .iter()
        .filter(|l| l.contains("kubernetes watch failing"))
        .count();
    assert_eq!(failing, 1, "{:#?}", stopped.log);
}

/// ③ from the live cluster: NetworkPolicies listed and watched from the API
/// server decide the recorded verdicts, a policy created while running
/// applies to later flows, and the CRDs the fake does not serve (Calico,
/// network-policy-api) are skipped without degrading anything.
#[test]
fn policies_from_the_api_server_decide_verdicts_and_follow_changes() {
    let _serial = serial();
    let node = Node::new_v4_only(2);
    let rt = runtime();
    let (fake, kubeconfig) = api_server(&rt, &node);
    fake.apply(
        "networkpolicies",
        json!({"metadata": {"name": "db-ingress", "namespace": "shop", "uid": "np-db",
                            "generation": 1},
               "spec": {"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress"],
                        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                                     "ports": [{"port": 5432}]}]}}),
    );
    let path = kubeconfig.arg();
    // Short windows: each flow is explained about a second after it ends,
    // with the policies of that moment.
    let config = TempConfig::new("capture:\n  drain_interval: 200ms\n");
    let config_arg = config.arg();
    let args = [
        "--config",
        &config_arg,
        "--idle-timeout",
        "1s",
        "--format",
        "ecs",
    ];
    let mut exporter =
        Exporter::start_with_env(&node.ns.name, &args, &[("KUBECONFIG", path.as_str())]);
    exporter
        .wait_for_log(
            |l| l.contains("policies listed") && l.contains("networkpolicies.networking.k8s.io"),
            Duration::from_secs(15),
        )
        .unwrap_or_else(|| panic!("policies never listed; log:\n{}", exporter.log.join("\n")));
    let record = |e: &Exporter, port: u16| {
        e.records_so_far()
            .into_iter()
            .find(|r| r["source"]["port"] == port)
    };
    let wait_record = |e: &Exporter, port: u16| {
        let mut found = None;
        assert!(
            wait_until(Duration::from_secs(15), || {
                found = record(e, port);
                found.is_some()
            }),
            "no record from port {port}"
        );
        found.unwrap()
    };

    let (web, db) = (&node.pods[0], &node.pods[1]);
    // Not port 5432: db is isolated for ingress and no rule matches.
    let (denied, _) = tcp_transfer(&web.ns, &db.ns, db.v4, 1_000);
    // db's egress is not isolated (yet).
    let (allowed, _) = tcp_transfer(&db.ns, &web.ns, web.v4, 1_000);
    let d = wait_record(&exporter, denied);
    assert_eq!(
        d["flowscribe"]["policy"]["ingress"]["verdict"], "deny",
        "{d:#}"
    );
    assert_eq!(
        d["flowscribe"]["policy"]["ingress"]["hits"][0]["name"],
        "db-ingress"
    );
    assert_eq!(d["rule"]["uuid"], "np-db");
    let a = wait_record(&exporter, allowed);
    assert_eq!(a["flowscribe"]["policy"]["verdict"], "allow", "{a:#}");

    // A default-deny for egress in shop arrives through the watch; probe
    // until a flow is explained with it (each probe's record is awaited).
    fake.apply(
        "networkpolicies",
        json!({"metadata": {"name": "deny-egress", "namespace": "shop", "uid": "np-eg"},
               "spec": {"podSelector": {}, "policyTypes": ["Egress"]}}),
    );
    let mut late = None;
    let applied = wait_until(Duration::from_secs(20), || {
        let (p, _) = tcp_transfer(&db.ns, &web.ns, web.v4, 100);
        let r = wait_record(&exporter, p);
        let deny = r["flowscribe"]["policy"]["egress"]["verdict"] == "deny";
        late = Some(r);
        deny
    });
    let late = late.unwrap();
    assert!(applied, "the new policy never applied: {late:#}");
    assert_eq!(
        late["flowscribe"]["policy"]["egress"]["hits"][0]["name"],
        "deny-egress"
    );

    let stopped = exporter.stop();
    assert_eq!(stopped.code, Some(0), "log:\n{}", stopped.log.join("\n"));
    // Nothing degraded: the unserved CRDs are absent, not failing.
    let flows: Vec<&Value> = stopped
        .records
        .iter()
        .filter(|r| r["event"]["dataset"] == "flowscribe.flow")
        .collect();
    assert!(flows.len() >= 3, "{:#?}", stopped.records);
    assert!(
        flows
            .iter()
            .all(|r| r["flowscribe"]["identity_degraded"] == false),
        "a record says degraded"
    );
    assert!(
        stopped.log.iter().any(|l| l.contains("CRD not installed")
            && l.contains("globalnetworkpolicies.projectcalico.org")),
        "{:#?}",
        stopped.log
    );
}
