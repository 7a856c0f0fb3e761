//! The previous ECS encoder, which built a `serde_json::Value` tree: kept
//! for tests only, as the reference the streaming writer in `ecs.rs` is
//! compared against on flows beyond the golden cases.

use std::time::SystemTime;

use flowscribe_model::{
    Endpoint, Evaluation, ExplainedFlow, Observed, PolicyHit, SideVerdict, Verdict,
};
use serde_json::{Map, Value, json};

use crate::Context;
use crate::view::{
    FlowView, duration_nanos, has_ports, is_icmp, observed_str, policy_display, rfc3339, rule_id,
    rule_name, tcp_flag_names,
};

/// The ECS document of one flow record.
pub fn flow_document(ctx: &Context, flow: &ExplainedFlow, observed: SystemTime) -> Value {
    let view = FlowView::new(ctx, flow);
    let ef = &flow.flow;
    let f = &ef.flow;
    let key = &f.key;
    let ports = has_ports(key.protocol);

    let mut event_type = vec!["connection"];
    match view.verdict {
        Some(Verdict::Allow) => event_type.push("allowed"),
        Some(Verdict::Deny) => event_type.push("denied"),
        None => {}
    }
    match f.state {
        flowscribe_model::FlowState::Started => event_type.push("start"),
        flowscribe_model::FlowState::Completed | flowscribe_model::FlowState::OneSided => {
            event_type.push("end")
        }
        flowscribe_model::FlowState::Live => {}
    }
    let (action, outcome) = match view.verdict {
        Some(Verdict::Allow) => ("network-policy-allow", "success"),
        Some(Verdict::Deny) => ("network-policy-deny", "failure"),
        None => ("network-flow", "unknown"),
    };
    let mut event = json!({
        "kind": "event",
        "category": ["network"],
        "type": event_type,
        "action": action,
        "outcome": outcome,
        "start": rfc3339(f.window_start),
        "end": rfc3339(f.window_end),
        "duration": duration_nanos(f.window_start, f.window_end),
        "created": rfc3339(observed),
        "dataset": "flowscribe.flow",
        "module": "flowscribe",
        "provider": "flowscribe",
        "id": view.event_id.as_str(),
        "severity": match view.severity {
            crate::view::Severity::Info => 9,
            crate::view::Severity::Warn => 13,
        },
    });
    if let Some(d) = &view.decision {
        event["reason"] = json!(d.side.reason.as_str());
    }

    let side = |addr: std::net::IpAddr, port: u16, c: &flowscribe_model::DirectionCounters| {
        let mut v = json!({
            "ip": addr.to_string(),
            "address": addr.to_string(),
            "bytes": c.bytes,
            "packets": c.packets,
        });
        if ports {
            v["port"] = json!(port);
        }
        v
    };

    let mut network = json!({
        "transport": flowscribe_model::protocol_name(key.protocol),
        "type": if key.src_addr.is_ipv4() { "ipv4" } else { "ipv6" },
        "iana_number": key.protocol.to_string(),
        "direction": view.direction.as_str(),
        "bytes": f.forward.bytes + f.reverse.bytes,
        "packets": f.forward.packets + f.reverse.packets,
    });
    if let Some(c) = &view.community_id {
        network["community_id"] = json!(c.as_str());
    }

    let mut related_ip = vec![key.src_addr.to_string()];
    if key.dst_addr != key.src_addr {
        related_ip.push(key.dst_addr.to_string());
    }

    let mut observer = json!({
        "type": "sensor",
        "vendor": "flowscribe",
        "product": "flowscribe",
        "version": ctx.service_version,
        "hostname": ctx.node,
        "name": ctx.node,
    });
    observer["ingress"] = json!({"interface": {"name": &*f.interface.name,
                                                "id": f.interface.ifindex.to_string()}});

    let mut doc = json!({
        "@timestamp": rfc3339(f.window_end),
        "ecs": {"version": crate::ecs_fields::ECS_VERSION},
        "message": view.summary(),
        "event": event,
        "source": side(key.src_addr, key.src_port, &f.forward),
        "destination": side(key.dst_addr, key.dst_port, &f.reverse),
        "network": network,
        "host": {"name": ctx.node, "hostname": ctx.node},
        "observer": observer,
        "related": {"ip": related_ip},
    });

    if let Some(d) = &view.decision {
        let mut rule = json!({"name": rule_name(d), "category": d.side.direction.as_str()});
        if let Some(h) = d.hit {
            rule["ruleset"] = json!(policy_display(&h.policy));
            rule["uuid"] = json!(&*h.policy.uid);
            rule["version"] = json!(&*h.policy.resource_version);
            rule["description"] = json!(format!(
                "{} {} ({}), tier {}, action {}",
                h.policy.kind.api_version(),
                h.policy.kind.as_str(),
                policy_display(&h.policy),
                h.policy.tier,
                h.action.as_str()
            ));
        }
        if let Some(id) = rule_id(d) {
            rule["id"] = json!(id);
        }
        doc["rule"] = rule;
    }

    let mut orchestrator = json!({"type": "kubernetes"});
    if let Some(c) = &ctx.cluster {
        orchestrator["cluster"] = json!({"name": c});
    }
    if let Some(e) = view.local_pod_endpoint(&ctx.node)
        && let Some(p) = &e.pod
    {
        orchestrator["namespace"] = json!(&*p.namespace);
        let mut resource = json!({"type": "pod", "name": &*p.name, "id": &*p.uid});
        if let Some(w) = &p.workload {
            resource["parent"] = json!({"type": &*w.kind});
        }
        orchestrator["resource"] = resource;
        let ip = if std::ptr::eq(e, &ef.source) {
            key.src_addr
        } else {
            key.dst_addr
        };
        doc["kubernetes"] = beats_kubernetes(p, ip);
    }
    doc["orchestrator"] = orchestrator;

    doc["flowscribe"] = flowscribe_namespace_value(&view);
    doc
}

/// The Beats `add_kubernetes_metadata` fields of one pod. Label keys are
/// de-dotted (`.` → `_`) as Beats does by default.
fn beats_kubernetes(p: &flowscribe_model::PodIdentity, ip: std::net::IpAddr) -> Value {
    let mut k = json!({
        "namespace": &*p.namespace,
        "pod": {"name": &*p.name, "uid": &*p.uid, "ip": ip.to_string()},
    });
    if let Some(n) = &p.node {
        k["node"] = json!({"name": &**n});
    }
    if !p.labels.is_empty() {
        let labels: Map<String, Value> = p
            .labels
            .iter()
            .map(|(key, v)| (key.replace('.', "_"), json!(v)))
            .collect();
        k["labels"] = Value::Object(labels);
    }
    if let Some(w) = &p.workload {
        let field = match &*w.kind {
            "Deployment" => Some("deployment"),
            "ReplicaSet" => Some("replicaset"),
            "StatefulSet" => Some("statefulset"),
            "DaemonSet" => Some("daemonset"),
            "Job" => Some("job"),
            "CronJob" => Some("cronjob"),
            _ => None,
        };
        if let Some(field) = field {
            k[field] = json!({"name": &*w.name});
        }
    }
    k
}

fn endpoint(e: &Endpoint) -> Value {
    let mut v = json!({"kind": e.kind.as_str()});
    if let Some(p) = &e.pod {
        v["namespace"] = json!(&*p.namespace);
        v["pod"] = json!({"name": &*p.name, "uid": &*p.uid});
        if !p.labels.is_empty() {
            v["labels"] = json!(&*p.labels);
        }
        if let Some(sa) = &p.service_account {
            v["service_account"] = json!(&**sa);
        }
        if let Some(w) = &p.workload {
            v["workload"] = json!({"kind": &*w.kind, "name": &*w.name});
        }
    }
    if let Some(n) = &e.node {
        v["node"] = json!(&**n);
    }
    if let Some(s) = &e.service {
        let mut svc = json!({"namespace": &*s.namespace, "name": &*s.name});
        if let Some(port) = &s.port_name {
            svc["port_name"] = json!(&**port);
        }
        v["service"] = svc;
    }
    if let Some(n) = &e.network {
        v["network"] = json!(&**n);
    }
    if let Some(s) = e.stale {
        v["stale"] = json!(true);
        v["deleted_at"] = json!(rfc3339(s.deleted_at));
    }
    v
}

fn hit(h: &PolicyHit) -> Value {
    let p = &h.policy;
    let mut v = json!({
        "tier": &*p.tier,
        "kind": p.kind.as_str(),
        "api_version": p.kind.api_version(),
        "name": &*p.name,
        "uid": &*p.uid,
        "resource_version": &*p.resource_version,
        "action": h.action.as_str(),
        "staged": p.kind.is_staged(),
    });
    if let Some(ns) = &p.namespace {
        v["namespace"] = json!(&**ns);
    }
    if let Some(i) = h.rule_index {
        v["rule_index"] = json!(i);
    }
    if let Some(n) = &h.rule_name {
        v["rule_name"] = json!(&**n);
    }
    v
}

fn side_verdict(s: &SideVerdict) -> Value {
    json!({
        "verdict": s.verdict.as_str(),
        "reason": s.reason.as_str(),
        "hits": s.hits.iter().map(hit).collect::<Vec<_>>(),
    })
}

fn evaluation(e: &Evaluation) -> Value {
    json!({
        "verdict": e.verdict.as_str(),
        "egress": side_verdict(&e.egress),
        "ingress": side_verdict(&e.ingress),
    })
}

fn flowscribe_namespace_value(view: &FlowView<'_>) -> Value {
    let ef = &view.flow.flow;
    let f = &ef.flow;
    let mut flow = json!({
        "state": f.state.as_str(),
        "orientation": f.orientation.as_str(),
        "initiator_hook": f.initiator_hook.as_str(),
        "interfaces": f.interfaces.iter().map(|i| &*i.name).collect::<Vec<_>>(),
        "first_packet": rfc3339(f.first_packet),
        "last_packet": rfc3339(f.last_packet),
    });
    if let Some(e) = f.end_reason {
        flow["end_reason"] = json!(e.as_str());
    }
    if f.key.protocol == 6 {
        flow["tcp_flags"] = json!({
            "forward": tcp_flag_names(f.forward.tcp_flags),
            "reverse": tcp_flag_names(f.reverse.tcp_flags),
        });
    }
    if is_icmp(f.key.protocol) {
        flow["icmp"] = json!({"type": f.key.src_port, "code": f.key.dst_port});
    }
    if let Some(d) = &f.drops {
        flow["drops"] = json!({
            "packets_forward": d.packets_forward,
            "packets_reverse": d.packets_reverse,
            "bytes": d.bytes,
            "last_reason": d.last_reason,
        });
    }
    let mut ns = json!({
        "flow": flow,
        "source": endpoint(&ef.source),
        "destination": endpoint(&ef.destination),
        "identity_degraded": ef.identity_degraded,
    });
    if let Some(t) = &view.flow.trace {
        let mut policy = json!({
            "verdict": t.enforced.verdict.as_str(),
            "verdict_source": t.verdict_source.as_str(),
            "observed": observed_str(&t.observed),
            "egress": side_verdict(&t.enforced.egress),
            "ingress": side_verdict(&t.enforced.ingress),
        });
        if let Some(d) = &view.decision {
            policy["reason"] = json!(d.side.reason.as_str());
            policy["direction"] = json!(d.side.direction.as_str());
        }
        if let Observed::Dropped { reason } = &t.observed {
            policy["observed_drop_reason"] = json!(&**reason);
        }
        if let Some(m) = t.mismatch {
            policy["mismatch"] = json!(m.as_str());
        }
        if let Some(p) = &t.pending {
            let mut pending = evaluation(p);
            pending["would_change"] = json!(t.would_change());
            policy["pending"] = pending;
        }
        if !t.invalid_policies.is_empty() {
            policy["invalid_policies"] = json!(
                t.invalid_policies
                    .iter()
                    .map(|p| format!("{} {}", p.kind.as_str(), policy_display(p)))
                    .collect::<Vec<_>>()
            );
        }
        ns["policy"] = policy;
    }
    ns
}

#[cfg(test)]
mod tests {
    use crate::test_flows::{fixtures, variations};

    #[test]
    fn streaming_writer_matches_the_value_tree() {
        let observed = fixtures::observed();
        let variations = variations();
        assert!(variations.len() > 50);
        for (ctx, flow) in variations {
            let mut line = Vec::new();
            crate::ecs::write_flow_document(&ctx, &flow, observed, &mut line);
            let want = serde_json::to_vec(&super::flow_document(&ctx, &flow, observed)).unwrap();
            assert_eq!(
                String::from_utf8(line).unwrap(),
                String::from_utf8(want).unwrap()
            );
        }
    }
}
