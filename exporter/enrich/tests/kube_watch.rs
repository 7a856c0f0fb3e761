//! The live source against an in-process fake API server over HTTP, with
//! the real kube client and kube-runtime watchers: initial list, watch
//! events, bookmarks, 410 Gone relists, 403 naming the missing permission,
//! malformed objects skipped and counted.
#![allow(clippy::unwrap_used, reason = "tests")]

mod fake_apiserver;

use std::net::IpAddr;
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant, SystemTime};

use fake_apiserver::FakeApiServer;
use flowscribe_enrich::kube_policies::{
    POLICY_RESOURCES, PolicyEvent, PolicyObjects, PolicyReport, spawn_policy_watchers,
};
use flowscribe_enrich::kube_source::{SourceEvent, SourceReport, SourceState, spawn_watchers};
use flowscribe_enrich::objects::Kind;
use flowscribe_enrich::{IdentityIndex, IndexConfig};
use flowscribe_model::EndpointKind;
use serde_json::{Value, json};

fn pod(name: &str, ip: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"),
                     "labels": {"app": name},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                          "name": "web-1", "uid": "rs", "controller": true}]},
        "spec": {"nodeName": "n1", "serviceAccountName": "web-sa"},
        "status": {"phase": "Running", "podIP": ip}
    })
}

/// A fake cluster with one of every watched kind.
async fn cluster() -> FakeApiServer {
    let fake = FakeApiServer::start().await;
    fake.apply(
        "namespaces",
        json!({"metadata": {"name": "shop", "labels": {"team": "a"}}}),
    );
    fake.apply(
        "nodes",
        json!({"metadata": {"name": "n1"},
        "status": {"addresses": [{"type": "InternalIP", "address": "192.168.9.1"}]}}),
    );
    fake.apply(
        "replicasets",
        json!({"metadata": {"name": "web-1", "namespace": "shop", "uid": "rs",
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                             "uid": "d", "controller": true}]},
        "spec": {"replicas": 2}}),
    );
    fake.apply(
        "jobs",
        json!({"metadata": {"name": "j-1", "namespace": "shop", "uid": "j"}}),
    );
    fake.apply("pods", pod("web-a", "10.1.0.1"));
    fake.apply(
        "services",
        json!({"metadata": {"name": "web", "namespace": "shop", "uid": "s"},
        "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "http", "port": 80}]}}),
    );
    fake.apply(
        "endpointslices",
        json!({"metadata": {"name": "web-x", "namespace": "shop",
        "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4", "endpoints": [{"addresses": ["10.1.0.1"]}]}),
    );
    fake
}

/// The consumer side as the daemon runs it: one index, one source state.
struct Consumer {
    rx: Receiver<(SystemTime, SourceEvent)>,
    index: IdentityIndex,
    state: SourceState,
    reports: Vec<SourceReport>,
}

impl Consumer {
    fn start(fake: &FakeApiServer) -> Consumer {
        let config = kube::Config::new(fake.url().parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let (tx, rx) = channel();
        spawn_watchers(client, tx);
        Consumer {
            rx,
            index: IdentityIndex::new(IndexConfig::default()),
            state: SourceState::default(),
            reports: Vec::new(),
        }
    }

    /// Apply events until `cond` holds (or fail after 10 s).
    fn until(&mut self, what: &str, cond: impl Fn(&Consumer) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            let got = tokio::task::block_in_place(|| self.rx.recv_timeout(left));
            match got {
                Ok((at, ev)) => {
                    let r = self.state.apply(&mut self.index, at, ev);
                    self.reports.extend(r);
                }
                Err(_) => panic!("timed out waiting for {what}; reports: {:#?}", self.reports),
            }
        }
    }

    fn pod_at(&self, ip: &str) -> Option<(String, bool)> {
        let e = self
            .index
            .resolve(ip.parse::<IpAddr>().unwrap(), None, SystemTime::now());
        e.pod.map(|p| (p.name.to_string(), e.stale.is_some()))
    }

    fn listed(&self, kind: Kind) -> usize {
        self.reports
            .iter()
            .filter(|r| matches!(r, SourceReport::Listed { kind: k, .. } if *k == kind))
            .count()
    }
}

fn synced(c: &Consumer) -> bool {
    !c.state.degraded()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_then_watch_keeps_the_index_current() {
    let fake = cluster().await;
    let mut c = Consumer::start(&fake);
    c.until("initial sync", synced);

    let e = c
        .index
        .resolve("10.1.0.1".parse().unwrap(), None, SystemTime::now());
    let p = e.pod.clone().unwrap();
    assert_eq!(&*p.name, "web-a");
    let w = p.workload.clone().unwrap();
    assert_eq!(
        (&*w.kind, &*w.name),
        ("Deployment", "web"),
        "owner chain via metadata-only RS"
    );
    assert_eq!(
        p.namespace_labels.get("team").map(String::as_str),
        Some("a")
    );
    let svc = c.index.resolve(
        "10.96.0.1".parse().unwrap(),
        Some((80, 6)),
        SystemTime::now(),
    );
    assert_eq!(svc.kind, EndpointKind::Service);
    let node = c
        .index
        .resolve("192.168.9.1".parse().unwrap(), None, SystemTime::now());
    assert_eq!(node.node.as_deref(), Some("n1"));

    let reqs = fake.requests();
    assert!(
        reqs.contains(&"LIST replicasets meta".to_string()),
        "{reqs:?}"
    );
    assert!(reqs.contains(&"LIST jobs meta".to_string()), "{reqs:?}");
    assert!(reqs.contains(&"LIST pods".to_string()), "{reqs:?}");
    // The pods watch starts from the list's version, not from scratch.
    wait_for_request(&fake, &format!("WATCH pods rv={}", fake.resource_version())).await;

    // ADDED, MODIFIED, DELETED arrive through the watch.
    fake.apply("pods", pod("web-b", "10.1.0.2"));
    c.until("web-b added", |c| {
        c.pod_at("10.1.0.2") == Some(("web-b".into(), false))
    });
    let mut moved = pod("web-b", "10.1.0.3");
    moved["metadata"]["labels"]["app"] = json!("moved");
    fake.apply("pods", moved);
    c.until("web-b moved", |c| c.pod_at("10.1.0.3").is_some());
    assert_eq!(
        c.pod_at("10.1.0.2"),
        Some(("web-b".into(), true)),
        "old address is stale"
    );
    fake.delete("pods", "shop", "web-a");
    c.until("web-a deleted", |c| {
        c.pod_at("10.1.0.1") == Some(("web-a".into(), true))
    });
    assert_eq!(c.listed(Kind::Pod), 1, "no relist needed");
}

/// Poll the fake's request log (the fake is the thing under observation,
/// it has no way to call back).
async fn wait_for_request(fake: &FakeApiServer, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fake.requests().iter().any(|r| r == want) {
        assert!(
            Instant::now() < deadline,
            "no {want:?} in {:?}",
            fake.requests()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_resumes_from_the_last_bookmark() {
    let fake = cluster().await;
    let mut c = Consumer::start(&fake);
    c.until("initial sync", synced);
    // Other resources move the global version on; pods see only a bookmark.
    fake.touch_other();
    fake.touch_other();
    let mark = fake.bookmark();
    // Sent on the open pods watch, or at once on one opened later.
    wait_for_request(&fake, &format!("BOOKMARK pods rv={mark}")).await;
    fake.close_watches();
    wait_for_request(&fake, &format!("WATCH pods rv={mark}")).await;
    // Still current, and the pods were not relisted.
    fake.apply("pods", pod("web-c", "10.1.0.4"));
    c.until("web-c", |c| c.pod_at("10.1.0.4").is_some());
    let lists = fake.requests().iter().filter(|r| *r == "LIST pods").count();
    assert_eq!(lists, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_410_relists_and_catches_a_missed_deletion() {
    let fake = cluster().await;
    let mut c = Consumer::start(&fake);
    c.until("initial sync", synced);
    fake.delete_during_outage("pods", "shop", "web-a");
    // The watch resumes from a compacted version, gets 410, relists; the
    // relist no longer has web-a, so it ends (stale) in the index.
    c.until("relist after 410", |c| c.listed(Kind::Pod) == 2);
    assert_eq!(c.pod_at("10.1.0.1"), Some(("web-a".into(), true)));
    let lists = fake.requests().iter().filter(|r| *r == "LIST pods").count();
    assert_eq!(lists, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_names_the_missing_permission_and_recovers() {
    let fake = cluster().await;
    fake.forbid("pods", true);
    let mut c = Consumer::start(&fake);
    c.until("pods failing and the rest listed", |c| {
        c.state.failing().contains_key(&Kind::Pod)
            && [
                Kind::Namespace,
                Kind::Node,
                Kind::Service,
                Kind::ReplicaSet,
                Kind::Job,
                Kind::EndpointSlice,
            ]
            .iter()
            .all(|k| c.listed(*k) == 1)
    });
    assert!(c.state.degraded());
    let problem = &c.state.failing()[&Kind::Pod];
    assert_eq!(
        problem.missing_permission.as_deref(),
        Some("get/list/watch on pods (apiGroups: [\"\"])")
    );
    assert!(problem.message.starts_with("403 Forbidden"), "{problem:?}");
    // Other identities still resolve while pods are forbidden.
    let svc = c.index.resolve(
        "10.96.0.1".parse().unwrap(),
        Some((80, 6)),
        SystemTime::now(),
    );
    assert_eq!(svc.kind, EndpointKind::Service);
    // Reported once, however often the watcher retries.
    let failing_reports = c
        .reports
        .iter()
        .filter(|r| matches!(r, SourceReport::Failing { .. }))
        .count();
    assert_eq!(failing_reports, 1);

    // Permission granted: the watcher's backoff retry lists pods.
    fake.forbid("pods", false);
    c.until("pods recovered", synced);
    assert!(
        c.reports
            .contains(&SourceReport::Recovered { kind: Kind::Pod })
    );
    assert_eq!(c.pod_at("10.1.0.1"), Some(("web-a".into(), false)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_objects_are_skipped_and_counted() {
    let fake = cluster().await;
    fake.apply("pods", pod("bad-1", "not-an-ip"));
    let mut c = Consumer::start(&fake);
    c.until("initial sync", synced);
    assert_eq!(c.state.malformed_objects, 1);
    assert_eq!(c.pod_at("10.1.0.1"), Some(("web-a".into(), false)));

    fake.apply("pods", pod("bad-2", "10.1.0.999"));
    fake.apply("pods", pod("good", "10.1.0.9"));
    c.until("good pod after bad one", |c| c.pod_at("10.1.0.9").is_some());
    assert_eq!(c.state.malformed_objects, 2);
    let skipped: Vec<&SourceReport> = c
        .reports
        .iter()
        .filter(|r| matches!(r, SourceReport::Skipped(_)))
        .collect();
    assert_eq!(skipped.len(), 2);
    assert!(
        matches!(skipped[1], SourceReport::Skipped(m) if m.contains("shop/bad-2") && m.contains("status.podIP")),
        "{skipped:?}"
    );
}

/// The policy watchers, as the daemon consumes them.
struct PolicyConsumer {
    rx: Receiver<(SystemTime, PolicyEvent)>,
    objects: PolicyObjects,
    reports: Vec<PolicyReport>,
}

impl PolicyConsumer {
    fn start(fake: &FakeApiServer) -> PolicyConsumer {
        let config = kube::Config::new(fake.url().parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let (tx, rx) = channel();
        spawn_policy_watchers(client, tx);
        PolicyConsumer {
            rx,
            objects: PolicyObjects::default(),
            reports: Vec::new(),
        }
    }

    fn until(&mut self, what: &str, cond: impl Fn(&PolicyConsumer) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::task::block_in_place(|| self.rx.recv_timeout(left)) {
                Ok((_, ev)) => self.reports.extend(self.objects.apply(ev)),
                Err(_) => panic!("timed out waiting for {what}; reports: {:#?}", self.reports),
            }
        }
    }

    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .objects
            .objects()
            .map(|o| {
                format!(
                    "{}/{}/{}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["namespace"].as_str().unwrap_or(""),
                    o["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect();
        v.sort();
        v
    }
}

fn netpol(ns: &str, name: &str) -> Value {
    json!({"metadata": {"name": name, "namespace": ns, "uid": format!("np-{name}")},
           "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_are_watched_and_missing_crds_are_not_a_degradation() {
    let fake = FakeApiServer::start().await;
    fake.apply("networkpolicies", netpol("shop", "deny-all"));
    fake.apply(
        "stagednetworkpolicies",
        json!({"metadata": {"name": "lockdown", "namespace": "shop"},
               "spec": {"podSelector": {}, "policyTypes": ["Egress"]}}),
    );
    let mut c = PolicyConsumer::start(&fake);
    c.until("policies listed, CRDs found absent", |c| {
        !c.objects.degraded()
    });
    // The fake serves two of the resources; every other CRD (Calico's,
    // network-policy-api's) answers 404 and is reported absent once.
    assert_eq!(
        c.names(),
        vec![
            "NetworkPolicy/shop/deny-all",
            "StagedNetworkPolicy/shop/lockdown"
        ]
    );
    let absent = c
        .reports
        .iter()
        .filter(|r| matches!(r, PolicyReport::Absent { .. }))
        .count();
    assert_eq!(absent, POLICY_RESOURCES.len() - 2, "{:#?}", c.reports);
    // Calico's NetworkPolicy shares the plural with Kubernetes' and must
    // not be confused with it.
    assert!(c.reports.iter().any(|r| matches!(r,
        PolicyReport::Absent { resource } if resource.group == "projectcalico.org" && resource.plural == "networkpolicies")));
    assert!(c.objects.take_changed());

    // A change, a new policy and a deletion arrive through the watch.
    let mut changed = netpol("shop", "deny-all");
    changed["spec"]["policyTypes"] = json!(["Ingress", "Egress"]);
    fake.apply("networkpolicies", changed);
    fake.apply("networkpolicies", netpol("ops", "allow-dns"));
    fake.delete("stagednetworkpolicies", "shop", "lockdown");
    c.until("watch events applied", |c| {
        c.names() == vec!["NetworkPolicy/ops/allow-dns", "NetworkPolicy/shop/deny-all"]
    });
    let current = c
        .objects
        .objects()
        .find(|o| o["metadata"]["name"] == "deny-all")
        .unwrap()
        .clone();
    assert_eq!(current["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(current["apiVersion"], "networking.k8s.io/v1");
    // Each change is reported once, with what identifies it (the initial
    // list is the baseline, not a change).
    let mut changes: Vec<(&str, &str, Vec<String>)> = c
        .reports
        .iter()
        .filter_map(|r| match r {
            PolicyReport::Changed(ch) => {
                Some((ch.change.as_str(), ch.name.as_str(), ch.changed.clone()))
            }
            _ => None,
        })
        .collect();
    // Two watchers (networkpolicies, stagednetworkpolicies): no order
    // between them.
    changes.sort_by_key(|(_, name, _)| name.to_string());
    assert_eq!(
        changes,
        vec![
            ("created", "allow-dns", vec![]),
            ("updated", "deny-all", vec!["spec.policyTypes".to_string()]),
            ("deleted", "lockdown", vec![]),
        ],
        "{:#?}",
        c.reports
    );
    let updated = c
        .reports
        .iter()
        .find_map(|r| match r {
            PolicyReport::Changed(ch) if ch.name == "deny-all" => Some(ch),
            _ => None,
        })
        .unwrap();
    assert_eq!(updated.uid, "np-deny-all");
    assert_ne!(
        updated.previous_resource_version.as_deref(),
        Some(updated.resource_version.as_str())
    );
    assert!(c.objects.take_changed());
    assert!(!c.objects.degraded());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_policies_degrade_the_source_and_name_the_permission() {
    let fake = FakeApiServer::start().await;
    fake.forbid("networkpolicies", true);
    let mut c = PolicyConsumer::start(&fake);
    c.until("the 403 reported", |c| {
        c.reports
            .iter()
            .any(|r| matches!(r, PolicyReport::Failing { .. }))
    });
    assert!(
        c.objects.degraded(),
        "verdicts cannot be trusted without NetworkPolicies"
    );
    let failing: Vec<&PolicyReport> = c
        .reports
        .iter()
        .filter(|r| matches!(r, PolicyReport::Failing { .. }))
        .collect();
    let PolicyReport::Failing { problem, .. } = failing[0] else {
        unreachable!()
    };
    assert_eq!(
        problem.missing_permission.as_deref(),
        Some("get/list/watch on networkpolicies (apiGroups: [\"networking.k8s.io\"])")
    );
    fake.forbid("networkpolicies", false);
    fake.apply("networkpolicies", netpol("shop", "deny-all"));
    c.until("recovered", |c| !c.objects.degraded());
    assert_eq!(c.names(), vec!["NetworkPolicy/shop/deny-all"]);
    assert!(
        c.reports
            .iter()
            .any(|r| matches!(r, PolicyReport::Recovered { .. }))
    );
}
