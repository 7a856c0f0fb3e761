//! Flows for unit tests: the golden fixtures of `tests/fixtures/` and
//! variations of them the goldens do not cover, shared by the tests that
//! compare the streaming encoders with their reference implementations.

#[path = "../tests/fixtures/mod.rs"]
pub(crate) mod fixtures;

use std::collections::BTreeMap;
use std::sync::Arc;

use flowscribe_model::{
    Endpoint, EndpointKind, ExplainedFlow, Mismatch, PodIdentity, ServiceRef, Stale, Workload,
};

/// The golden flows and variations of them that the goldens do not
/// cover: label keys that de-dot alike or reorder, text that needs JSON
/// escaping, every Beats workload kind, services, stale and networked
/// endpoints, no cluster, no trace, mismatches, invalid policies.
pub(crate) fn variations() -> Vec<(crate::Context, ExplainedFlow)> {
    let mut out = Vec::new();
    let ctx = fixtures::context();
    for case in fixtures::CASES {
        let base = fixtures::case(case);
        out.push((ctx.clone(), base.clone()));

        let mut no_cluster = ctx.clone();
        no_cluster.cluster = None;
        no_cluster.node = "node \"2\"\t\\".into();
        out.push((no_cluster, base.clone()));

        let mut untraced = base.clone();
        untraced.trace = None;
        out.push((ctx.clone(), untraced));

        if let Some(t) = &base.trace {
            let mut odd = base.clone();
            let t2 = odd.trace.as_mut().unwrap_or_else(|| unreachable!());
            t2.mismatch = Some(Mismatch::PolicyNotEnforced);
            t2.invalid_policies = t
                .enforced
                .ingress
                .hits
                .iter()
                .chain(&t.enforced.egress.hits)
                .map(|h| h.policy.clone())
                .collect();
            out.push((ctx.clone(), odd));
        }

        for kind in [
            "Deployment",
            "ReplicaSet",
            "StatefulSet",
            "DaemonSet",
            "Job",
            "CronJob",
            "Rollout",
        ] {
            let mut f = base.clone();
            for e in [&mut f.flow.source, &mut f.flow.destination] {
                restyle(e, kind);
            }
            out.push((ctx.clone(), f));
        }
    }
    out
}

fn restyle(e: &mut Endpoint, workload_kind: &str) {
    if let Some(p) = &mut e.pod {
        let p: &mut PodIdentity = Arc::make_mut(p);
        p.workload = Some(Workload {
            kind: workload_kind.into(),
            name: "w\u{1}\u{8}\u{c}é".into(),
        });
        let labels: BTreeMap<String, String> = [
            ("a.b", "dotted"),
            ("a_b", "underscored"),
            ("a/b", "slash"),
            ("a-b", "dash"),
            ("x\"y.z", "quote\n"),
            ("k8s.io/app", "v"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        p.labels = Arc::new(labels);
    } else {
        e.network = Some("corp \"vpn\"".into());
        e.service = Some(ServiceRef {
            name: "svc".into(),
            namespace: "ns".into(),
            port_name: Some("http".into()),
        });
        e.kind = EndpointKind::Service;
    }
    e.stale = Some(Stale {
        deleted_at: fixtures::t(1),
    });
}
