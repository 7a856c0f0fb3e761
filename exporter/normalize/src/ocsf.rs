//! The OCSF 1.8 view of a flow record: one Network Activity event
//! (class_uid 4001) per flow, with the `security_control` profile for the
//! verdict (`action_id`, `disposition_id`, `firewall_rule`, `policy`) and the
//! `host` profile for the node (`device`). Kubernetes identities and the
//! full policy trace have no OCSF object; they go under
//! `unmapped.flowscribe` in the same shape as ECS `flowscribe.*`.
//! [`MAPPING`] is the contract; the golden tests hold every event against
//! the pinned class (`crate::ocsf_check`).
//!
//! Stage ④. Pure: no IO, no clock. It must not decide verdicts or
//! directions itself: those come from [`FlowView`].

use std::time::SystemTime;

use flowscribe_model::{
    CaptureLoss, Endpoint, EndpointKind, ExplainedFlow, FlowState, Observed, Verdict,
};
use serde_json::{Value, json};

use crate::event_id::{EventId, loss_event_id};
use crate::schema::row;
use crate::view::{
    Decision, FlowView, NodeDirection, Severity, endpoint_label, has_ports, loss_description,
    loss_summary, loss_unit, policy_display, rule_id, rule_name, unix_millis,
};
use crate::{Context, FieldMapping};

pub const UPSTREAM: &str = "OCSF 1.8.0 (ocsf/ocsf-schema tag 1.8.0), class Network Activity \
     (class_uid 4001), profiles `security_control` and `host`";

pub const JSON_SCHEMA: &str = include_str!("../../../schemas/ocsf/flow.schema.json");

/// The JSON Schema of a capture loss event ([`loss_event`]).
pub const LOSS_JSON_SCHEMA: &str = include_str!("../../../schemas/ocsf/loss.schema.json");

pub const NOTES: &str = "One Network Activity event per flow record and aggregation window. \
`activity_id` is 6 Traffic for records of a live connection, 2 Close for final records, and 5 \
Refuse for a denied connection the dataplane did not deliver. `time` is the end of the window \
(epoch milliseconds). `traffic.*_out` counts initiator → responder (source → destination), \
`*_in` the reverse. `firewall_rule` is the enforced deciding rule; `policy` is the staged policy \
that would change the verdict (`is_applied: false`) when there is one, else the enforced deciding \
policy (`is_applied: true`). Kubernetes identities and the full trace are under \
`unmapped.flowscribe` (same shape as ECS `flowscribe.*`). \
Capture loss records are Network Activity events too: activity 99 Other, status 2 Failure, the \
reason in `status_code` and the exact counts in `unmapped.flowscribe.loss`. OCSF 1.8 has no class \
for telemetry loss (Event Log Activity is about logs being cleared or rotated, and carries no \
counts), and in 4001 the gap lands in the same class, table and Security Lake custom source (one \
per class) as the flows it is missing from. The class requires a source or destination endpoint: \
`src_endpoint` is the node that reports the loss. Loss events have their own JSON Schema, \
`schemas/ocsf/loss.schema.json`.";

/// The OCSF Network Activity event of one flow record.
pub fn network_activity(ctx: &Context, flow: &ExplainedFlow, observed: SystemTime) -> Value {
    network_activity_with_event_id(ctx, flow, None, observed)
}

/// [`network_activity`] with the record's event id given (`None`: hashed
/// from the flow).
pub fn network_activity_with_event_id(
    ctx: &Context,
    flow: &ExplainedFlow,
    id: Option<EventId>,
    observed: SystemTime,
) -> Value {
    let view = FlowView::with_event_id(ctx, flow, id);
    let ef = &flow.flow;
    let f = &ef.flow;
    let key = &f.key;

    let delivered = !matches!(
        flow.trace.as_ref().map(|t| &t.observed),
        Some(Observed::Dropped { .. }) | Some(Observed::Unknown)
    ) || f.reverse.packets > 0;
    let (activity_id, activity_name) = match (view.verdict, f.state) {
        (Some(Verdict::Deny), _) if !delivered => (5, "Refuse"),
        (_, FlowState::Completed | FlowState::OneSided) => (2, "Close"),
        _ => (6, "Traffic"),
    };
    let (severity_id, severity) = match view.severity {
        Severity::Info => (1, "Informational"),
        Severity::Warn => (3, "Medium"),
    };

    let mut connection_info = json!({
        "protocol_num": key.protocol,
        "protocol_name": flowscribe_model::protocol_name(key.protocol),
        "protocol_ver_id": if key.src_addr.is_ipv4() { 4 } else { 6 },
        "protocol_ver": if key.src_addr.is_ipv4() { "Internet Protocol version 4 (IPv4)" } else { "Internet Protocol version 6 (IPv6)" },
        "direction_id": match view.direction {
            NodeDirection::Ingress => 1,
            NodeDirection::Egress => 2,
            NodeDirection::Internal => 3,
            NodeDirection::Unknown => 0,
        },
        "direction": match view.direction {
            NodeDirection::Ingress => "Inbound",
            NodeDirection::Egress => "Outbound",
            NodeDirection::Internal => "Lateral",
            NodeDirection::Unknown => "Unknown",
        },
        "uid": view.event_id.as_str(),
    });
    if let Some(c) = &view.community_id {
        connection_info["community_uid"] = json!(c.as_str());
    }
    if key.protocol == 6 {
        connection_info["tcp_flags"] = json!(f.forward.tcp_flags | f.reverse.tcp_flags);
    }
    let external = |e: &Endpoint| e.kind == EndpointKind::PublicNetwork;
    connection_info["boundary_id"] = if external(&ef.source) || external(&ef.destination) {
        json!(3)
    } else {
        json!(2)
    };
    connection_info["boundary"] = if external(&ef.source) || external(&ef.destination) {
        json!("External")
    } else {
        json!("Internal")
    };

    let mut event = json!({
        "class_uid": 4001,
        "class_name": "Network Activity",
        "category_uid": 4,
        "category_name": "Network Activity",
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": 4001 * 100 + activity_id,
        "type_name": format!("Network Activity: {activity_name}"),
        "severity_id": severity_id,
        "severity": severity,
        "time": unix_millis(f.window_end),
        "start_time": unix_millis(f.window_start),
        "end_time": unix_millis(f.window_end),
        "duration": unix_millis(f.window_end).saturating_sub(unix_millis(f.window_start)),
        "message": view.summary(),
        "metadata": {
            "version": crate::ocsf_check::OCSF_VERSION,
            "product": {"name": "flowscribe", "vendor_name": "flowscribe",
                        "version": ctx.service_version},
            "uid": view.event_id.as_str(),
            "log_name": "flowscribe.flow",
            "processed_time": unix_millis(observed),
            "profiles": ["security_control", "host"],
        },
        "src_endpoint": endpoint(&ef.source, key.src_addr, key.src_port, has_ports(key.protocol)),
        "dst_endpoint": endpoint(&ef.destination, key.dst_addr, key.dst_port, has_ports(key.protocol)),
        "connection_info": connection_info,
        "traffic": {
            "bytes": f.forward.bytes + f.reverse.bytes,
            "packets": f.forward.packets + f.reverse.packets,
            "bytes_out": f.forward.bytes,
            "packets_out": f.forward.packets,
            "bytes_in": f.reverse.bytes,
            "packets_in": f.reverse.packets,
        },
        "device": {"type_id": 1, "type": "Server", "hostname": ctx.node, "name": ctx.node},
        "observables": [
            {"name": "src_endpoint.ip", "type_id": 2, "type": "IP Address", "value": key.src_addr.to_string()},
            {"name": "dst_endpoint.ip", "type_id": 2, "type": "IP Address", "value": key.dst_addr.to_string()},
        ],
        "is_src_dst_assignment_known": true,
    });

    match view.verdict {
        Some(v) => {
            let (action_id, action, disposition_id, disposition) = match v {
                Verdict::Allow => (1, "Allowed", 1, "Allowed"),
                Verdict::Deny => (2, "Denied", 2, "Blocked"),
            };
            event["action_id"] = json!(action_id);
            event["action"] = json!(action);
            event["disposition_id"] = json!(disposition_id);
            event["disposition"] = json!(disposition);
            event["is_alert"] = json!(false);
        }
        None => {
            event["action_id"] = json!(3);
            event["action"] = json!("Observed");
        }
    }
    if let Some(d) = &view.decision {
        event["firewall_rule"] = firewall_rule(d);
    }
    let staged = flow
        .trace
        .as_ref()
        .filter(|t| t.would_change())
        .and(view.pending_decision.as_ref())
        .and_then(|d| d.hit.map(|h| (h, false)));
    let enforced = view
        .decision
        .as_ref()
        .and_then(|d| d.hit.map(|h| (h, true)));
    if let Some((h, applied)) = staged.or(enforced) {
        let p = &h.policy;
        let mut policy = json!({
            "name": policy_display(p),
            "uid": &*p.uid,
            "version": &*p.resource_version,
            "type": format!("{} {}", p.kind.api_version(), p.kind.as_str()),
            "is_applied": applied,
        });
        if let Some(ns) = &p.namespace {
            policy["group"] = json!({"name": &**ns, "type": "namespace"});
        }
        event["policy"] = policy;
    }

    let mut unmapped = crate::ecs::flowscribe_namespace_value(&view);
    if let Some(c) = &ctx.cluster {
        unmapped["cluster"] = json!(c);
    }
    unmapped["node"] = json!(ctx.node);
    event["unmapped"] = json!({"flowscribe": unmapped});
    event
}

/// The OCSF event of one capture loss report: a Network Activity event
/// (4001) with activity 99 Other and status Failure, so that the gap lands
/// in the same class, table and Security Lake custom source as the flows
/// it is missing from. OCSF has no class for telemetry loss; the counts
/// and the reason are under `unmapped.flowscribe.loss` (as ECS
/// `flowscribe.loss.*`), `status_code` is the reason and `status_detail`
/// says what it means. The class needs a source or destination endpoint:
/// `src_endpoint` is the node that reports the loss.
pub fn loss_event(ctx: &Context, loss: &CaptureLoss, observed: SystemTime) -> Value {
    let (start, end) = (unix_millis(loss.window_start), unix_millis(loss.window_end));
    let mut unmapped = json!({
        "loss": {
            "stage": "capture",
            "reason": loss.reason.as_str(),
            "unit": loss_unit(loss.reason),
            "loses_flow_data": loss.reason.loses_flow_data(),
            "count": loss.count,
            "bytes": loss.bytes,
        },
        "node": ctx.node,
    });
    if let Some(c) = &ctx.cluster {
        unmapped["cluster"] = json!(c);
    }
    json!({
        "class_uid": 4001,
        "class_name": "Network Activity",
        "category_uid": 4,
        "category_name": "Network Activity",
        "activity_id": 99,
        "activity_name": "Other",
        "type_uid": 4001 * 100 + 99,
        "type_name": "Network Activity: Other",
        "severity_id": 3,
        "severity": "Medium",
        "status_id": 2,
        "status": "Failure",
        "status_code": loss.reason.as_str(),
        "status_detail": loss_description(loss.reason),
        "time": end,
        "start_time": start,
        "end_time": end,
        "duration": end.saturating_sub(start),
        "message": loss_summary(ctx, loss),
        "metadata": {
            "version": crate::ocsf_check::OCSF_VERSION,
            "product": {"name": "flowscribe", "vendor_name": "flowscribe",
                        "version": ctx.service_version},
            "uid": loss_event_id(&ctx.node, loss),
            "log_name": "flowscribe.loss",
            "processed_time": unix_millis(observed),
            "profiles": ["host"],
        },
        "src_endpoint": {"hostname": ctx.node, "name": ctx.node},
        "device": {"type_id": 1, "type": "Server", "hostname": ctx.node, "name": ctx.node},
        "unmapped": {"flowscribe": unmapped},
    })
}

fn firewall_rule(d: &Decision<'_>) -> Value {
    let mut rule = json!({
        "name": rule_name(d),
        "category": d.side.direction.as_str(),
        "desc": d.side.reason.as_str(),
    });
    if let Some(id) = rule_id(d) {
        rule["uid"] = json!(id);
    }
    if let Some(h) = d.hit {
        rule["type"] = json!(h.policy.kind.as_str());
        rule["version"] = json!(&*h.policy.resource_version);
    }
    rule
}

fn endpoint(e: &Endpoint, addr: std::net::IpAddr, port: u16, ports: bool) -> Value {
    let mut v = json!({"ip": addr.to_string()});
    if ports {
        v["port"] = json!(port);
    }
    let label = endpoint_label(e, addr);
    if label != addr.to_string() {
        v["name"] = json!(label);
    }
    if let Some(p) = &e.pod {
        v["uid"] = json!(&*p.uid);
    }
    if let Some(s) = &e.service {
        v["svc_name"] = json!(format!("{}/{}", s.namespace, s.name));
    }
    if let Some(n) = e
        .node
        .as_deref()
        .or(e.pod.as_ref().and_then(|p| p.node.as_deref()))
    {
        v["hostname"] = json!(n);
    }
    let scope = match e.kind {
        EndpointKind::PublicNetwork => Some((2, "External")),
        EndpointKind::Unknown => None,
        _ => Some((1, "Internal")),
    };
    if let Some((id, name)) = scope {
        v["network_scope_id"] = json!(id);
        v["network_scope"] = json!(name);
    }
    v
}

/// Every attribute the OCSF event can carry.
pub const MAPPING: &[FieldMapping] = &[
    row(
        "(constant)",
        "class_uid",
        "integer_t",
        "4001",
        "Network Activity.",
    ),
    row(
        "(constant)",
        "class_name",
        "string_t",
        "Network Activity",
        "",
    ),
    row("(constant)", "category_uid", "integer_t", "4", ""),
    row(
        "(constant)",
        "category_name",
        "string_t",
        "Network Activity",
        "",
    ),
    row(
        "flow.state, verdict, observed",
        "activity_id",
        "integer_t",
        "6",
        "6 Traffic, 2 Close (final record), 5 Refuse (denied and not delivered).",
    ),
    row("activity_id", "activity_name", "string_t", "Traffic", ""),
    row(
        "class_uid * 100 + activity_id",
        "type_uid",
        "long_t",
        "400106",
        "",
    ),
    row(
        "activity",
        "type_name",
        "string_t",
        "Network Activity: Traffic",
        "",
    ),
    row(
        "severity",
        "severity_id",
        "integer_t",
        "1",
        "1 Informational (allowed), 3 Medium (denied or mismatch).",
    ),
    row("severity", "severity", "string_t", "Informational", ""),
    row(
        "flow.window_end",
        "time",
        "timestamp_t",
        "1795321810000",
        "Epoch milliseconds.",
    ),
    row(
        "flow.window_start",
        "start_time",
        "timestamp_t",
        "1795321800000",
        "",
    ),
    row(
        "flow.window_end",
        "end_time",
        "timestamp_t",
        "1795321810000",
        "",
    ),
    row(
        "window length",
        "duration",
        "long_t",
        "10000",
        "Milliseconds.",
    ),
    row(
        "(summary)",
        "message",
        "string_t",
        "shop/web-1 → db/pg-0:5432/TCP allowed: allowed-by-rule (ingress, ns db)",
        "",
    ),
    row(
        "(constant)",
        "metadata.version",
        "string_t",
        "1.8.0",
        "OCSF schema version.",
    ),
    row(
        "(constant)",
        "metadata.product.name",
        "string_t",
        "flowscribe",
        "",
    ),
    row(
        "(constant)",
        "metadata.product.vendor_name",
        "string_t",
        "flowscribe",
        "",
    ),
    row(
        "context.service_version",
        "metadata.product.version",
        "string_t",
        "0.1.0",
        "",
    ),
    row(
        "event_id",
        "metadata.uid",
        "string_t",
        "3f0c…(32 hex)",
        "Deterministic id for deduplication.",
    ),
    row(
        "(constant)",
        "metadata.log_name",
        "string_t",
        "flowscribe.flow",
        "",
    ),
    row(
        "observed time (parameter)",
        "metadata.processed_time",
        "timestamp_t",
        "1795321810200",
        "",
    ),
    row(
        "(constant)",
        "metadata.profiles",
        "string_t[]",
        "[\"security_control\",\"host\"]",
        "",
    ),
    row(
        "key.src_addr",
        "src_endpoint.ip",
        "ip_t",
        "10.0.1.5",
        "Same fields under `dst_endpoint`.",
    ),
    row(
        "key.src_port",
        "src_endpoint.port",
        "port_t",
        "51320",
        "Absent for ICMP.",
    ),
    row(
        "source (label)",
        "src_endpoint.name",
        "string_t",
        "shop/web-1",
        "`namespace/pod`, `namespace/service`, `node/<name>` or `address (network)`.",
    ),
    row(
        "source.pod.uid",
        "src_endpoint.uid",
        "string_t",
        "6a1f…",
        "",
    ),
    row(
        "source.service",
        "src_endpoint.svc_name",
        "string_t",
        "shop/web",
        "",
    ),
    row(
        "source.node / pod.node",
        "src_endpoint.hostname",
        "hostname_t",
        "node-1",
        "",
    ),
    row(
        "source.kind",
        "src_endpoint.network_scope_id",
        "integer_t",
        "1",
        "1 Internal, 2 External (public network).",
    ),
    row(
        "source.kind",
        "src_endpoint.network_scope",
        "string_t",
        "Internal",
        "",
    ),
    row(
        "destination",
        "dst_endpoint.*",
        "network_endpoint",
        "",
        "As `src_endpoint`.",
    ),
    row(
        "key.protocol",
        "connection_info.protocol_num",
        "integer_t",
        "6",
        "",
    ),
    row(
        "key.protocol",
        "connection_info.protocol_name",
        "string_t",
        "tcp",
        "",
    ),
    row(
        "key family",
        "connection_info.protocol_ver_id",
        "integer_t",
        "4",
        "",
    ),
    row(
        "key family",
        "connection_info.protocol_ver",
        "string_t",
        "Internet Protocol version 4 (IPv4)",
        "",
    ),
    row(
        "endpoints' nodes",
        "connection_info.direction_id",
        "integer_t",
        "1",
        "1 Inbound (destination on this node), 2 Outbound (source here), 3 Lateral (both), 0 Unknown.",
    ),
    row(
        "endpoints' nodes",
        "connection_info.direction",
        "string_t",
        "Inbound",
        "",
    ),
    row("event_id", "connection_info.uid", "string_t", "3f0c…", ""),
    row(
        "community_id_v1",
        "connection_info.community_uid",
        "string_t",
        "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
        "Community ID v1.",
    ),
    row(
        "forward|reverse tcp_flags",
        "connection_info.tcp_flags",
        "integer_t",
        "27",
        "TCP only.",
    ),
    row(
        "endpoint kinds",
        "connection_info.boundary_id",
        "integer_t",
        "2",
        "2 Internal, 3 External (an end is a public network).",
    ),
    row(
        "endpoint kinds",
        "connection_info.boundary",
        "string_t",
        "Internal",
        "",
    ),
    row("forward + reverse", "traffic.bytes", "long_t", "3400", ""),
    row("forward + reverse", "traffic.packets", "long_t", "9", ""),
    row(
        "forward.bytes",
        "traffic.bytes_out",
        "long_t",
        "400",
        "Initiator → responder.",
    ),
    row("forward.packets", "traffic.packets_out", "long_t", "5", ""),
    row(
        "reverse.bytes",
        "traffic.bytes_in",
        "long_t",
        "3000",
        "Responder → initiator.",
    ),
    row("reverse.packets", "traffic.packets_in", "long_t", "4", ""),
    row(
        "(constant)",
        "device.type_id",
        "integer_t",
        "1",
        "The node: 1 Server.",
    ),
    row("(constant)", "device.type", "string_t", "Server", ""),
    row(
        "context.node",
        "device.hostname",
        "hostname_t",
        "node-1",
        "",
    ),
    row("context.node", "device.name", "string_t", "node-1", ""),
    row(
        "key addresses",
        "observables[]",
        "observable[]",
        "",
        "`src_endpoint.ip` and `dst_endpoint.ip` as type 2 IP Address: name, type_id, type, value.",
    ),
    row(
        "(constant)",
        "is_src_dst_assignment_known",
        "boolean_t",
        "true",
        "Source is the initiator.",
    ),
    row(
        "trace.enforced.verdict",
        "action_id",
        "integer_t",
        "2",
        "1 Allowed, 2 Denied, 3 Observed (no trace).",
    ),
    row("trace.enforced.verdict", "action", "string_t", "Denied", ""),
    row(
        "trace.enforced.verdict",
        "disposition_id",
        "integer_t",
        "2",
        "1 Allowed, 2 Blocked.",
    ),
    row(
        "trace.enforced.verdict",
        "disposition",
        "string_t",
        "Blocked",
        "",
    ),
    row(
        "(constant)",
        "is_alert",
        "boolean_t",
        "false",
        "Flow records are not alerts.",
    ),
    row(
        "deciding rule",
        "firewall_rule.name",
        "string_t",
        "ingress[0]",
        "As ECS `rule.name`.",
    ),
    row(
        "deciding rule",
        "firewall_rule.uid",
        "string_t",
        "0d9e…/ingress/0",
        "",
    ),
    row(
        "deciding side.direction",
        "firewall_rule.category",
        "string_t",
        "ingress",
        "",
    ),
    row(
        "deciding side.reason",
        "firewall_rule.desc",
        "string_t",
        "allowed-by-rule",
        "",
    ),
    row(
        "deciding policy.kind",
        "firewall_rule.type",
        "string_t",
        "NetworkPolicy",
        "",
    ),
    row(
        "deciding policy.resource_version",
        "firewall_rule.version",
        "string_t",
        "12345",
        "",
    ),
    row(
        "staged or enforced deciding policy",
        "policy.name",
        "string_t",
        "db/allow-web",
        "See notes.",
    ),
    row("policy.uid", "policy.uid", "string_t", "0d9e…", ""),
    row(
        "policy.resource_version",
        "policy.version",
        "string_t",
        "12345",
        "",
    ),
    row(
        "policy.kind",
        "policy.type",
        "string_t",
        "networking.k8s.io/v1 NetworkPolicy",
        "",
    ),
    row(
        "policy is enforced",
        "policy.is_applied",
        "boolean_t",
        "false",
        "`false` for a staged policy.",
    ),
    row(
        "policy.namespace",
        "policy.group.name",
        "string_t",
        "db",
        "",
    ),
    row(
        "(constant)",
        "policy.group.type",
        "string_t",
        "namespace",
        "",
    ),
    row(
        "everything else",
        "unmapped.flowscribe.*",
        "object",
        "",
        "Same fields as ECS `flowscribe.*`.",
    ),
    row(
        "context.cluster",
        "unmapped.flowscribe.cluster",
        "string_t",
        "prod-eu-1",
        "",
    ),
    row(
        "context.node",
        "unmapped.flowscribe.node",
        "string_t",
        "node-1",
        "",
    ),
    // Capture loss records (`loss_event`).
    row(
        "loss record",
        "activity_id",
        "integer_t",
        "99",
        "Capture loss records are Network Activity events with activity 99 Other (`type_uid` 400199, `type_name` `Network Activity: Other`), severity 3 Medium, `metadata.log_name` `flowscribe.loss`, `metadata.uid` `loss-<node>-<reason>-<window end ns>`, `src_endpoint` and `device` the reporting node, `time`/`start_time`/`end_time` the loss window; no flow attributes.",
    ),
    row(
        "(constant, loss)",
        "status_id",
        "integer_t",
        "2",
        "2 Failure: the exporter failed to record traffic.",
    ),
    row("(constant, loss)", "status", "string_t", "Failure", ""),
    row(
        "loss.reason",
        "status_code",
        "string_t",
        "flow_map_full",
        "flow_map_full, flow_map_update_failed, ring_reserve_failed, parse_truncated, drop_map_full, drop_unmatched.",
    ),
    row(
        "loss.reason (described)",
        "status_detail",
        "string_t",
        "the kernel flow map was full: packets of new flows were not counted",
        "",
    ),
    row(
        "loss.count",
        "unmapped.flowscribe.loss.count",
        "long",
        "7",
        "Exact count; with `unit` (`packets`, or `events` for ring_reserve_failed), `bytes`, `reason`, `stage`, `loses_flow_data` as in ECS `flowscribe.loss.*`.",
    ),
];

#[cfg(test)]
mod tests {
    use crate::test_flows::{fixtures, variations};

    /// `unmapped.flowscribe` is ECS `flowscribe.*` plus the node and
    /// cluster, for every variation, including text that needs escaping.
    #[test]
    fn unmapped_is_the_ecs_namespace() {
        let observed = fixtures::observed();
        for (ctx, flow) in variations() {
            let event = super::network_activity(&ctx, &flow, observed);
            let mut unmapped = event["unmapped"]["flowscribe"].clone();
            let object = unmapped.as_object_mut().unwrap();
            assert_eq!(object.remove("node").unwrap(), ctx.node.as_str());
            assert_eq!(
                object.remove("cluster").as_ref().and_then(|c| c.as_str()),
                ctx.cluster.as_deref()
            );
            let ecs = crate::ecs::flow_document(&ctx, &flow, observed);
            assert_eq!(unmapped, ecs["flowscribe"], "{}", ctx.node);
        }
    }
}
