//! The ECS 9.x view of a flow record: one Elasticsearch document per flow,
//! with `event.*`, `source.*`, `destination.*`, `network.*`, `rule.*`,
//! `orchestrator.*`, `host.*`, `observer.*`, `related.ip`, the Beats
//! `kubernetes.*` fields Elastic users already query, and `flowscribe.*`
//! for what ECS has no field for. [`MAPPING`] is the contract; the golden
//! tests prove that every field written is in it and is ECS-conformant
//! (`crate::ecs_fields`).
//!
//! Stage ④. Pure: builds a `serde_json::Value` (keys sorted, so output is
//! deterministic); no IO, no clock. It must not decide verdicts or
//! directions itself: those come from [`FlowView`].

use std::time::SystemTime;

use flowscribe_model::{
    CaptureLoss, Endpoint, Evaluation, ExplainedFlow, Observed, PolicyHit, SideVerdict, Verdict,
};
use serde_json::{Map, Value, json};

use crate::view::{
    FlowView, duration_nanos, end_reason_str, has_ports, is_icmp, observed_str, policy_display,
    rfc3339, rule_id, rule_name, state_str, tcp_flag_names,
};
use crate::{Context, FieldMapping};

pub const UPSTREAM: &str = "Elastic Common Schema 9.4.0 (elastic/ecs tag v9.4.0), plus the Beats \
     `add_kubernetes_metadata` fields under `kubernetes.*`";

pub const JSON_SCHEMA: &str = include_str!("../../../schemas/ecs/flow.schema.json");

pub const NOTES: &str = "One JSON document per flow record and aggregation window. Verdicts: \
`event.type` carries `allowed`/`denied`, `event.outcome` is `success` for allowed and `failure` \
for denied flows (`unknown` without a policy trace). Staged (pending) policies never change \
`event.type`; they show in `flowscribe.policy.pending.*`. ECS has one `orchestrator.*` and one \
Beats `kubernetes.*` per event: both describe the pod on this node (the source pod when it runs \
here, else the destination pod, else whichever end is a pod); both endpoints are complete under \
`flowscribe.source.*` and `flowscribe.destination.*`. `source.*` counters are initiator → \
responder, `destination.*` counters responder → initiator. ICMP flows have no ports: type and code \
are in `flowscribe.flow.icmp.*`. Absent values are left out, never `null`.";

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
        "id": view.event_id,
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
        network["community_id"] = json!(c);
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
    observer["ingress"] = json!({"interface": {"name": f.interface.name,
                                                "id": f.interface.ifindex.to_string()}});

    let mut doc = json!({
        "@timestamp": rfc3339(f.window_end),
        "ecs": {"version": crate::ecs_fields::ECS_VERSION},
        "message": view.summary,
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

/// The ECS document of one capture loss report: `event.kind` `metric`,
/// `event.type` `error`, the loss under `flowscribe.loss.*`, so a SIEM sees
/// the gap in the same index as the flows.
pub fn loss_document(ctx: &Context, loss: &CaptureLoss, observed: SystemTime) -> Value {
    json!({
        "@timestamp": rfc3339(loss.window_end),
        "ecs": {"version": crate::ecs_fields::ECS_VERSION},
        "message": format!("capture lost {} ({}) on {}: {}", loss.count,
                           if loss.reason == flowscribe_model::LossReason::RingReserveFailed {
                               "events" } else { "packets" },
                           ctx.node, loss.reason.as_str()),
        "event": {
            "kind": "metric",
            "category": ["network"],
            "type": ["error"],
            "action": "capture-loss",
            "outcome": "failure",
            "reason": loss.reason.as_str(),
            "start": rfc3339(loss.window_start),
            "end": rfc3339(loss.window_end),
            "created": rfc3339(observed),
            "dataset": "flowscribe.loss",
            "module": "flowscribe",
            "provider": "flowscribe",
            "severity": 13,
        },
        "host": {"name": ctx.node, "hostname": ctx.node},
        "observer": {"type": "sensor", "vendor": "flowscribe", "product": "flowscribe",
                     "version": ctx.service_version, "hostname": ctx.node, "name": ctx.node},
        "flowscribe": {"loss": {
            "stage": "capture",
            "reason": loss.reason.as_str(),
            "loses_flow_data": loss.reason.loses_flow_data(),
            "count": loss.count,
            "bytes": loss.bytes,
        }},
    })
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

pub(crate) fn flowscribe_namespace_value(view: &FlowView<'_>) -> Value {
    let ef = &view.flow.flow;
    let f = &ef.flow;
    let mut flow = json!({
        "state": state_str(f.state),
        "orientation": match f.orientation {
            flowscribe_model::Orientation::Syn => "syn",
            flowscribe_model::Orientation::FirstPacket => "first-packet",
        },
        "initiator_hook": match f.initiator_hook {
            flowscribe_model::HookDirection::Ingress => "ingress",
            flowscribe_model::HookDirection::Egress => "egress",
        },
        "interfaces": f.interfaces.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
        "first_packet": rfc3339(f.first_packet),
        "last_packet": rfc3339(f.last_packet),
    });
    if let Some(e) = f.end_reason {
        flow["end_reason"] = json!(end_reason_str(e));
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

macro_rules! row {
    ($canonical:expr, $field:expr, $ty:expr, $example:expr, $description:expr) => {
        FieldMapping {
            canonical: $canonical,
            field: $field,
            ty: $ty,
            example: $example,
            description: $description,
        }
    };
}

/// Every field the ECS document can carry.
pub const MAPPING: &[FieldMapping] = &[
    row!(
        "flow.window_end",
        "@timestamp",
        "date",
        "2026-11-21T04:30:10.000000000Z",
        "End of the aggregation window."
    ),
    row!(
        "(constant)",
        "ecs.version",
        "keyword",
        "9.4.0",
        "ECS release the document follows."
    ),
    row!(
        "(summary)",
        "message",
        "match_only_text",
        "shop/web-1 → db/pg-0:5432/TCP denied: isolated-no-match (ingress, ns db)",
        "One-line human summary."
    ),
    row!(
        "(constant)",
        "event.kind",
        "keyword",
        "event",
        "Always `event`."
    ),
    row!(
        "(constant)",
        "event.category",
        "keyword[]",
        "[\"network\"]",
        "Always `[\"network\"]`."
    ),
    row!(
        "trace.enforced.verdict, flow.state",
        "event.type",
        "keyword[]",
        "[\"connection\",\"denied\",\"end\"]",
        "`connection`, then `allowed`/`denied` when explained, then `start` (first record) or `end` (final record)."
    ),
    row!(
        "trace.enforced.verdict",
        "event.action",
        "keyword",
        "network-policy-deny",
        "`network-policy-allow`, `network-policy-deny`, or `network-flow` without a trace."
    ),
    row!(
        "trace.enforced.verdict",
        "event.outcome",
        "keyword",
        "failure",
        "`success` allowed, `failure` denied, `unknown` without a trace."
    ),
    row!(
        "trace.enforced (deciding side).reason",
        "event.reason",
        "keyword",
        "isolated-no-match",
        "Reason code of the enforced verdict."
    ),
    row!(
        "flow.window_start",
        "event.start",
        "date",
        "2026-11-21T04:30:00.000000000Z",
        "Start of the aggregation window."
    ),
    row!(
        "flow.window_end",
        "event.end",
        "date",
        "2026-11-21T04:30:10.000000000Z",
        "End of the aggregation window."
    ),
    row!(
        "window_end - window_start",
        "event.duration",
        "long",
        "10000000000",
        "Window length in nanoseconds."
    ),
    row!(
        "observed time (parameter)",
        "event.created",
        "date",
        "2026-11-21T04:30:10.200000000Z",
        "When flowscribe wrote the record."
    ),
    row!(
        "(constant)",
        "event.dataset",
        "keyword",
        "flowscribe.flow",
        "Dataset of flow records."
    ),
    row!("(constant)", "event.module", "keyword", "flowscribe", ""),
    row!("(constant)", "event.provider", "keyword", "flowscribe", ""),
    row!(
        "event_id(node, key, window)",
        "event.id",
        "keyword",
        "3f0c…(32 hex)",
        "Deterministic id for deduplication of replays."
    ),
    row!(
        "severity",
        "event.severity",
        "long",
        "13",
        "OTel severity number: 9 INFO (allowed), 13 WARN (denied or mismatch)."
    ),
    row!("key.src_addr", "source.ip", "ip", "10.0.1.5", ""),
    row!("key.src_addr", "source.address", "keyword", "10.0.1.5", ""),
    row!(
        "key.src_port",
        "source.port",
        "long",
        "51320",
        "Absent for protocols without ports (ICMP)."
    ),
    row!(
        "forward.bytes",
        "source.bytes",
        "long",
        "180",
        "Bytes initiator → responder in the window."
    ),
    row!(
        "forward.packets",
        "source.packets",
        "long",
        "3",
        "Packets initiator → responder in the window."
    ),
    row!("key.dst_addr", "destination.ip", "ip", "10.0.2.7", ""),
    row!(
        "key.dst_addr",
        "destination.address",
        "keyword",
        "10.0.2.7",
        ""
    ),
    row!(
        "key.dst_port",
        "destination.port",
        "long",
        "5432",
        "Absent for protocols without ports (ICMP)."
    ),
    row!(
        "reverse.bytes",
        "destination.bytes",
        "long",
        "0",
        "Bytes responder → initiator in the window."
    ),
    row!(
        "reverse.packets",
        "destination.packets",
        "long",
        "0",
        "Packets responder → initiator in the window."
    ),
    row!(
        "key.protocol",
        "network.transport",
        "keyword",
        "tcp",
        "IANA keyword: tcp, udp, sctp, icmp, ipv6-icmp."
    ),
    row!("key family", "network.type", "keyword", "ipv4", ""),
    row!(
        "key.protocol",
        "network.iana_number",
        "keyword",
        "6",
        "IANA protocol number as a string."
    ),
    row!(
        "endpoints' nodes",
        "network.direction",
        "keyword",
        "ingress",
        "Relative to this node: `ingress` (destination here), `egress` (source here), `internal` (both), `unknown`."
    ),
    row!(
        "community_id_v1(key, seed)",
        "network.community_id",
        "keyword",
        "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
        "Community ID v1."
    ),
    row!(
        "forward + reverse bytes",
        "network.bytes",
        "long",
        "180",
        ""
    ),
    row!(
        "forward + reverse packets",
        "network.packets",
        "long",
        "3",
        ""
    ),
    row!(
        "deciding rule",
        "rule.name",
        "keyword",
        "allow-web",
        "Rule name, else `<direction>[<index>]`, else the verdict reason (policy selected, no rule matched)."
    ),
    row!(
        "deciding side.direction",
        "rule.category",
        "keyword",
        "ingress",
        "The side whose verdict is the overall one."
    ),
    row!(
        "deciding policy",
        "rule.ruleset",
        "keyword",
        "db/default-deny",
        "`namespace/name` (cluster-scoped: `name`)."
    ),
    row!("deciding policy.uid", "rule.uuid", "keyword", "0d9e…", ""),
    row!(
        "deciding policy.uid + rule",
        "rule.id",
        "keyword",
        "0d9e…/ingress/0",
        "`<policy uid>/<direction>/<index|default>`."
    ),
    row!(
        "deciding policy.resource_version",
        "rule.version",
        "keyword",
        "12345",
        ""
    ),
    row!(
        "deciding policy",
        "rule.description",
        "keyword",
        "networking.k8s.io/v1 NetworkPolicy (db/default-deny), tier default, action deny",
        ""
    ),
    row!(
        "(constant)",
        "orchestrator.type",
        "keyword",
        "kubernetes",
        ""
    ),
    row!(
        "context.cluster",
        "orchestrator.cluster.name",
        "keyword",
        "prod-eu-1",
        "When configured."
    ),
    row!(
        "local pod.namespace",
        "orchestrator.namespace",
        "keyword",
        "shop",
        "The pod on this node (see notes)."
    ),
    row!(
        "(constant)",
        "orchestrator.resource.type",
        "keyword",
        "pod",
        ""
    ),
    row!(
        "local pod.name",
        "orchestrator.resource.name",
        "keyword",
        "web-7c9d",
        ""
    ),
    row!(
        "local pod.uid",
        "orchestrator.resource.id",
        "keyword",
        "6a1f…",
        ""
    ),
    row!(
        "local pod.workload.kind",
        "orchestrator.resource.parent.type",
        "keyword",
        "Deployment",
        ""
    ),
    row!(
        "local pod.namespace",
        "kubernetes.namespace",
        "keyword",
        "shop",
        "Beats field."
    ),
    row!(
        "local pod.name",
        "kubernetes.pod.name",
        "keyword",
        "web-7c9d",
        "Beats field."
    ),
    row!(
        "local pod.uid",
        "kubernetes.pod.uid",
        "keyword",
        "6a1f…",
        "Beats field."
    ),
    row!(
        "local pod address",
        "kubernetes.pod.ip",
        "ip",
        "10.0.1.5",
        "Beats field."
    ),
    row!(
        "local pod.node",
        "kubernetes.node.name",
        "keyword",
        "node-1",
        "Beats field."
    ),
    row!(
        "local pod.labels",
        "kubernetes.labels.*",
        "keyword",
        "app_kubernetes_io/name: web",
        "Beats field; dots in keys become `_`."
    ),
    row!(
        "local pod.workload (Deployment)",
        "kubernetes.deployment.name",
        "keyword",
        "web",
        "Beats field; likewise `replicaset`, `statefulset`, `daemonset`, `job`, `cronjob`."
    ),
    row!(
        "local pod.workload (ReplicaSet)",
        "kubernetes.replicaset.name",
        "keyword",
        "web-7c9d",
        "Beats field."
    ),
    row!(
        "local pod.workload (StatefulSet)",
        "kubernetes.statefulset.name",
        "keyword",
        "pg",
        "Beats field."
    ),
    row!(
        "local pod.workload (DaemonSet)",
        "kubernetes.daemonset.name",
        "keyword",
        "agent",
        "Beats field."
    ),
    row!(
        "local pod.workload (Job)",
        "kubernetes.job.name",
        "keyword",
        "backup-1",
        "Beats field."
    ),
    row!(
        "local pod.workload (CronJob)",
        "kubernetes.cronjob.name",
        "keyword",
        "backup",
        "Beats field."
    ),
    row!(
        "context.node",
        "host.name",
        "keyword",
        "node-1",
        "The node that wrote the record."
    ),
    row!("context.node", "host.hostname", "keyword", "node-1", ""),
    row!("(constant)", "observer.type", "keyword", "sensor", ""),
    row!("(constant)", "observer.vendor", "keyword", "flowscribe", ""),
    row!(
        "(constant)",
        "observer.product",
        "keyword",
        "flowscribe",
        ""
    ),
    row!(
        "context.service_version",
        "observer.version",
        "keyword",
        "0.1.0",
        ""
    ),
    row!("context.node", "observer.hostname", "keyword", "node-1", ""),
    row!("context.node", "observer.name", "keyword", "node-1", ""),
    row!(
        "flow.interface.name",
        "observer.ingress.interface.name",
        "keyword",
        "veth1a2b",
        "Interface whose counters the record carries."
    ),
    row!(
        "flow.interface.ifindex",
        "observer.ingress.interface.id",
        "keyword",
        "7",
        ""
    ),
    row!(
        "key addresses",
        "related.ip",
        "ip[]",
        "[\"10.0.1.5\",\"10.0.2.7\"]",
        ""
    ),
    row!(
        "flow.state",
        "flowscribe.flow.state",
        "keyword",
        "completed",
        "started, live, completed, one-sided."
    ),
    row!(
        "flow.end_reason",
        "flowscribe.flow.end_reason",
        "keyword",
        "tcp-fin",
        "Final records only."
    ),
    row!(
        "flow.orientation",
        "flowscribe.flow.orientation",
        "keyword",
        "syn",
        "How the initiator was decided."
    ),
    row!(
        "flow.initiator_hook",
        "flowscribe.flow.initiator_hook",
        "keyword",
        "ingress",
        ""
    ),
    row!(
        "flow.interfaces",
        "flowscribe.flow.interfaces",
        "keyword[]",
        "[\"veth1a2b\"]",
        ""
    ),
    row!(
        "flow.first_packet",
        "flowscribe.flow.first_packet",
        "date",
        "2026-11-21T04:29:59.900000000Z",
        ""
    ),
    row!(
        "flow.last_packet",
        "flowscribe.flow.last_packet",
        "date",
        "2026-11-21T04:30:09.100000000Z",
        ""
    ),
    row!(
        "forward.tcp_flags",
        "flowscribe.flow.tcp_flags.forward",
        "keyword[]",
        "[\"SYN\",\"ACK\"]",
        "TCP only."
    ),
    row!(
        "reverse.tcp_flags",
        "flowscribe.flow.tcp_flags.reverse",
        "keyword[]",
        "[\"SYN\",\"ACK\"]",
        "TCP only."
    ),
    row!(
        "key.src_port (ICMP)",
        "flowscribe.flow.icmp.type",
        "long",
        "8",
        "ICMP/ICMPv6 only."
    ),
    row!(
        "key.dst_port (ICMP)",
        "flowscribe.flow.icmp.code",
        "long",
        "0",
        "ICMP/ICMPv6 only."
    ),
    row!(
        "flow.drops.packets_forward",
        "flowscribe.flow.drops.packets_forward",
        "long",
        "1",
        "Kernel drops in the window."
    ),
    row!(
        "flow.drops.packets_reverse",
        "flowscribe.flow.drops.packets_reverse",
        "long",
        "0",
        ""
    ),
    row!(
        "flow.drops.bytes",
        "flowscribe.flow.drops.bytes",
        "long",
        "60",
        ""
    ),
    row!(
        "flow.drops.last_reason",
        "flowscribe.flow.drops.last_reason",
        "keyword",
        "NETFILTER_DROP",
        "Kernel drop reason name."
    ),
    row!(
        "source.kind",
        "flowscribe.source.kind",
        "keyword",
        "pod",
        "pod, host-network-pod, node, service, private-network, public-network, cloud-metadata, link-local, loopback, multicast, unknown. Same fields under `flowscribe.destination.*`."
    ),
    row!(
        "source.pod.namespace",
        "flowscribe.source.namespace",
        "keyword",
        "shop",
        ""
    ),
    row!(
        "source.pod.name",
        "flowscribe.source.pod.name",
        "keyword",
        "web-7c9d",
        ""
    ),
    row!(
        "source.pod.uid",
        "flowscribe.source.pod.uid",
        "keyword",
        "6a1f…",
        ""
    ),
    row!(
        "source.pod.labels",
        "flowscribe.source.labels.*",
        "keyword",
        "app: web",
        "Label keys as in Kubernetes."
    ),
    row!(
        "source.pod.service_account",
        "flowscribe.source.service_account",
        "keyword",
        "web",
        ""
    ),
    row!(
        "source.pod.workload",
        "flowscribe.source.workload.kind",
        "keyword",
        "Deployment",
        ""
    ),
    row!(
        "source.pod.workload",
        "flowscribe.source.workload.name",
        "keyword",
        "web",
        ""
    ),
    row!(
        "source.node",
        "flowscribe.source.node",
        "keyword",
        "node-1",
        ""
    ),
    row!(
        "source.service",
        "flowscribe.source.service.namespace",
        "keyword",
        "shop",
        "ClusterIP services."
    ),
    row!(
        "source.service",
        "flowscribe.source.service.name",
        "keyword",
        "web",
        ""
    ),
    row!(
        "source.service.port_name",
        "flowscribe.source.service.port_name",
        "keyword",
        "http",
        ""
    ),
    row!(
        "source.network",
        "flowscribe.source.network",
        "keyword",
        "corp-vpn",
        "Configured named network."
    ),
    row!(
        "source.stale",
        "flowscribe.source.stale",
        "boolean",
        "true",
        "The address belonged to a deleted object."
    ),
    row!(
        "source.stale.deleted_at",
        "flowscribe.source.deleted_at",
        "date",
        "2026-11-21T04:29:00.000000000Z",
        ""
    ),
    row!(
        "destination.*",
        "flowscribe.destination.*",
        "object",
        "",
        "As `flowscribe.source.*`."
    ),
    row!(
        "identity_degraded",
        "flowscribe.identity_degraded",
        "boolean",
        "false",
        "Identity sources were incomplete."
    ),
    row!(
        "trace.enforced.verdict",
        "flowscribe.policy.verdict",
        "keyword",
        "deny",
        ""
    ),
    row!(
        "deciding side.reason",
        "flowscribe.policy.reason",
        "keyword",
        "isolated-no-match",
        ""
    ),
    row!(
        "deciding side.direction",
        "flowscribe.policy.direction",
        "keyword",
        "ingress",
        ""
    ),
    row!(
        "trace.verdict_source",
        "flowscribe.policy.verdict_source",
        "keyword",
        "evaluated",
        "evaluated, cni, observed."
    ),
    row!(
        "trace.observed",
        "flowscribe.policy.observed",
        "keyword",
        "dropped",
        "delivered, dropped, unknown."
    ),
    row!(
        "trace.observed (Dropped).reason",
        "flowscribe.policy.observed_drop_reason",
        "keyword",
        "NETFILTER_DROP",
        ""
    ),
    row!(
        "trace.mismatch",
        "flowscribe.policy.mismatch",
        "keyword",
        "policy-not-enforced",
        ""
    ),
    row!(
        "trace.enforced.egress",
        "flowscribe.policy.egress.verdict",
        "keyword",
        "allow",
        "Likewise `.reason` and `.hits[]`; same under `ingress`."
    ),
    row!(
        "trace.enforced.egress.reason",
        "flowscribe.policy.egress.reason",
        "keyword",
        "not-isolated-default-allow",
        ""
    ),
    row!(
        "trace.enforced.egress.hits",
        "flowscribe.policy.egress.hits[]",
        "object[]",
        "",
        "tier, kind, api_version, namespace, name, uid, resource_version, rule_index, rule_name, action, staged."
    ),
    row!(
        "trace.enforced.ingress",
        "flowscribe.policy.ingress.*",
        "object",
        "",
        "As egress."
    ),
    row!(
        "trace.pending",
        "flowscribe.policy.pending.*",
        "object",
        "",
        "Staged policies applied as if enforced: verdict, egress, ingress."
    ),
    row!(
        "trace.would_change()",
        "flowscribe.policy.pending.would_change",
        "boolean",
        "true",
        ""
    ),
    row!(
        "trace.invalid_policies",
        "flowscribe.policy.invalid_policies",
        "keyword[]",
        "[\"NetworkPolicy db/broken\"]",
        ""
    ),
];

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use flowscribe_model::{CaptureLoss, LossReason};

    #[test]
    fn loss_document_is_ecs() {
        let t = |s: u64| UNIX_EPOCH + Duration::from_secs(1_795_321_800 + s);
        let ctx = crate::Context {
            node: "node-1".into(),
            cluster: None,
            service_version: "0.1.0".into(),
            community_id_seed: 0,
        };
        let loss = CaptureLoss {
            reason: LossReason::FlowMapFull,
            count: 7,
            bytes: 700,
            window_start: t(0),
            window_end: t(10),
        };
        let doc = super::loss_document(&ctx, &loss, t(11));
        assert_eq!(crate::ecs_fields::check_ecs_document(&doc).unwrap(), vec![]);
        assert_eq!(doc["flowscribe"]["loss"]["reason"], "flow_map_full");
        assert_eq!(doc["event"]["dataset"], "flowscribe.loss");
    }
}
