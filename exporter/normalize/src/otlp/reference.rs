//! The previous OTLP record builder, which assembled the prost message tree
//! attribute by attribute: kept for tests only, as the reference the direct
//! protobuf writer in `otlp.rs` is compared against.

use std::time::SystemTime;

use flowscribe_model::{Endpoint, Evaluation, ExplainedFlow, Observed, PolicyHit, SideVerdict};
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::LogRecord;

use super::{FLOW_EVENT_NAME, boolean, int, kv, s};
use crate::Context;
use crate::view::{
    FlowView, Severity, has_ports, is_icmp, observed_str, policy_display, rule_id, rule_name,
    tcp_flag_names, unix_nanos,
};

fn strings<'a>(items: impl IntoIterator<Item = &'a str>) -> any_value::Value {
    any_value::Value::ArrayValue(ArrayValue {
        values: items
            .into_iter()
            .map(|i| AnyValue { value: Some(s(i)) })
            .collect(),
    })
}

fn kvlist(values: Vec<KeyValue>) -> any_value::Value {
    any_value::Value::KvlistValue(KeyValueList { values })
}

/// The LogRecord of one flow record.
pub fn log_record(ctx: &Context, flow: &ExplainedFlow, observed: SystemTime) -> LogRecord {
    let view = FlowView::new(ctx, flow);
    let ef = &flow.flow;
    let f = &ef.flow;
    let key = &f.key;
    let mut a = Vec::with_capacity(48);
    a.push(kv(
        "network.transport",
        s(flowscribe_model::protocol_name(key.protocol)),
    ));
    a.push(kv(
        "network.type",
        s(if key.src_addr.is_ipv4() {
            "ipv4"
        } else {
            "ipv6"
        }),
    ));
    a.push(kv("source.address", s(key.src_addr.to_string())));
    a.push(kv("destination.address", s(key.dst_addr.to_string())));
    if has_ports(key.protocol) {
        a.push(kv("source.port", int(key.src_port.into())));
        a.push(kv("destination.port", int(key.dst_port.into())));
    }
    a.push(kv("network.interface.name", s(&*f.interface.name)));
    a.push(kv("flowscribe.event_id", s(view.event_id.as_str())));
    if let Some(c) = &view.community_id {
        a.push(kv("flowscribe.community_id", s(c.as_str())));
    }
    a.push(kv("flowscribe.flow.state", s(f.state.as_str())));
    if let Some(e) = f.end_reason {
        a.push(kv("flowscribe.flow.end_reason", s(e.as_str())));
    }
    a.push(kv("flowscribe.flow.direction", s(view.direction.as_str())));
    a.push(kv("flowscribe.flow.iana_number", int(key.protocol.into())));
    a.push(kv(
        "flowscribe.flow.window.start_unix_nano",
        int(unix_nanos(f.window_start)),
    ));
    a.push(kv(
        "flowscribe.flow.first_packet_unix_nano",
        int(unix_nanos(f.first_packet)),
    ));
    a.push(kv(
        "flowscribe.flow.last_packet_unix_nano",
        int(unix_nanos(f.last_packet)),
    ));
    a.push(kv("flowscribe.flow.bytes.forward", int(f.forward.bytes)));
    a.push(kv("flowscribe.flow.bytes.reverse", int(f.reverse.bytes)));
    a.push(kv(
        "flowscribe.flow.packets.forward",
        int(f.forward.packets),
    ));
    a.push(kv(
        "flowscribe.flow.packets.reverse",
        int(f.reverse.packets),
    ));
    if key.protocol == 6 {
        a.push(kv(
            "flowscribe.flow.tcp_flags.forward",
            strings(tcp_flag_names(f.forward.tcp_flags)),
        ));
        a.push(kv(
            "flowscribe.flow.tcp_flags.reverse",
            strings(tcp_flag_names(f.reverse.tcp_flags)),
        ));
    }
    if is_icmp(key.protocol) {
        a.push(kv("flowscribe.flow.icmp.type", int(key.src_port.into())));
        a.push(kv("flowscribe.flow.icmp.code", int(key.dst_port.into())));
    }
    if let Some(d) = &f.drops {
        a.push(kv(
            "flowscribe.flow.drops.packets_forward",
            int(d.packets_forward),
        ));
        a.push(kv(
            "flowscribe.flow.drops.packets_reverse",
            int(d.packets_reverse),
        ));
        a.push(kv("flowscribe.flow.drops.bytes", int(d.bytes)));
        a.push(kv(
            "flowscribe.flow.drops.last_reason",
            s(d.last_reason.as_str()),
        ));
    }
    endpoint_attributes(&mut a, "flowscribe.source.", &ef.source);
    endpoint_attributes(&mut a, "flowscribe.destination.", &ef.destination);
    a.push(kv(
        "flowscribe.identity_degraded",
        boolean(ef.identity_degraded),
    ));

    if let Some(d) = &view.decision {
        a.push(kv("security_rule.name", s(rule_name(d))));
        a.push(kv("security_rule.category", s(d.side.direction.as_str())));
        if let Some(h) = d.hit {
            a.push(kv(
                "security_rule.ruleset.name",
                s(policy_display(&h.policy)),
            ));
            a.push(kv("security_rule.uuid", s(&*h.policy.uid)));
            a.push(kv("security_rule.version", s(&*h.policy.resource_version)));
        }
        if let Some(id) = rule_id(d) {
            a.push(kv("flowscribe.policy.rule_id", s(id)));
        }
        a.push(kv("flowscribe.policy.reason", s(d.side.reason.as_str())));
        a.push(kv(
            "flowscribe.policy.direction",
            s(d.side.direction.as_str()),
        ));
    }
    if let Some(t) = &flow.trace {
        a.push(kv(
            "flowscribe.policy.verdict",
            s(t.enforced.verdict.as_str()),
        ));
        a.push(kv(
            "flowscribe.policy.verdict_source",
            s(t.verdict_source.as_str()),
        ));
        a.push(kv(
            "flowscribe.policy.observed",
            s(observed_str(&t.observed)),
        ));
        if let Observed::Dropped { reason } = &t.observed {
            a.push(kv("flowscribe.policy.observed_drop_reason", s(&**reason)));
        }
        if let Some(m) = t.mismatch {
            a.push(kv("flowscribe.policy.mismatch", s(m.as_str())));
        }
        a.push(kv("flowscribe.policy.egress", side(&t.enforced.egress)));
        a.push(kv("flowscribe.policy.ingress", side(&t.enforced.ingress)));
        if let Some(p) = &t.pending {
            a.push(kv(
                "flowscribe.policy.pending",
                evaluation(p, t.would_change()),
            ));
        }
        if !t.invalid_policies.is_empty() {
            let names: Vec<String> = t
                .invalid_policies
                .iter()
                .map(|p| format!("{} {}", p.kind.as_str(), policy_display(p)))
                .collect();
            a.push(kv(
                "flowscribe.policy.invalid_policies",
                strings(names.iter().map(String::as_str)),
            ));
        }
    }

    let (severity_number, severity_text) = match view.severity {
        Severity::Info => (9, "INFO"),
        Severity::Warn => (13, "WARN"),
    };
    LogRecord {
        time_unix_nano: unix_nanos(f.window_end),
        observed_time_unix_nano: unix_nanos(observed),
        severity_number,
        severity_text: severity_text.to_string(),
        body: Some(AnyValue {
            value: Some(s(view.summary())),
        }),
        attributes: a,
        event_name: FLOW_EVENT_NAME.to_string(),
        ..Default::default()
    }
}

fn endpoint_attributes(a: &mut Vec<KeyValue>, prefix: &str, e: &Endpoint) {
    let key = |k: &str| format!("{prefix}{k}");
    a.push(kv(&key("kind"), s(e.kind.as_str())));
    if let Some(p) = &e.pod {
        a.push(kv(&key("k8s.namespace.name"), s(&*p.namespace)));
        a.push(kv(&key("k8s.pod.name"), s(&*p.name)));
        a.push(kv(&key("k8s.pod.uid"), s(&*p.uid)));
        for (k, v) in p.labels.iter() {
            a.push(kv(&key(&format!("k8s.pod.label.{k}")), s(v.as_str())));
        }
        if let Some(sa) = &p.service_account {
            a.push(kv(&key("service_account"), s(&**sa)));
        }
        if let Some(w) = &p.workload {
            a.push(kv(&key("workload.kind"), s(&*w.kind)));
            a.push(kv(&key("workload.name"), s(&*w.name)));
        }
    }
    if let Some(n) = &e.node {
        a.push(kv(&key("k8s.node.name"), s(&**n)));
    }
    if let Some(svc) = &e.service {
        a.push(kv(&key("k8s.service.name"), s(&*svc.name)));
        a.push(kv(&key("k8s.service.namespace"), s(&*svc.namespace)));
        if let Some(p) = &svc.port_name {
            a.push(kv(&key("k8s.service.port_name"), s(&**p)));
        }
    }
    if let Some(n) = &e.network {
        a.push(kv(&key("network"), s(&**n)));
    }
    if let Some(st) = e.stale {
        a.push(kv(&key("stale"), boolean(true)));
        a.push(kv(
            &key("deleted_at_unix_nano"),
            int(unix_nanos(st.deleted_at)),
        ));
    }
}

fn hit(h: &PolicyHit) -> AnyValue {
    let p = &h.policy;
    let mut v = vec![
        kv("tier", s(&*p.tier)),
        kv("kind", s(p.kind.as_str())),
        kv("api_version", s(p.kind.api_version())),
    ];
    if let Some(ns) = &p.namespace {
        v.push(kv("namespace", s(&**ns)));
    }
    v.push(kv("name", s(&*p.name)));
    v.push(kv("uid", s(&*p.uid)));
    v.push(kv("resource_version", s(&*p.resource_version)));
    if let Some(i) = h.rule_index {
        v.push(kv("rule_index", int(i.into())));
    }
    if let Some(n) = &h.rule_name {
        v.push(kv("rule_name", s(&**n)));
    }
    v.push(kv("action", s(h.action.as_str())));
    v.push(kv("staged", boolean(p.kind.is_staged())));
    AnyValue {
        value: Some(kvlist(v)),
    }
}

fn side(sv: &SideVerdict) -> any_value::Value {
    kvlist(vec![
        kv("verdict", s(sv.verdict.as_str())),
        kv("reason", s(sv.reason.as_str())),
        kv(
            "hits",
            any_value::Value::ArrayValue(ArrayValue {
                values: sv.hits.iter().map(hit).collect(),
            }),
        ),
    ])
}

fn evaluation(e: &Evaluation, would_change: bool) -> any_value::Value {
    kvlist(vec![
        kv("verdict", s(e.verdict.as_str())),
        kv("would_change", boolean(would_change)),
        kv("egress", side(&e.egress)),
        kv("ingress", side(&e.ingress)),
    ])
}

#[cfg(test)]
mod tests {
    use crate::otlp::{ProtobufRequestWriter, encode_protobuf, export_request};
    use crate::test_flows::{fixtures, variations};

    /// The public per-record writer gives exactly prost's bytes of the
    /// reference builder's record, appended after what `out` held.
    #[test]
    fn write_log_record_protobuf_is_prost_encode_to_vec() {
        use prost::Message as _;
        let observed = fixtures::observed();
        let variations = variations();
        let mut out = Vec::new();
        for (i, (c, flow)) in variations.iter().enumerate() {
            let want = super::log_record(c, flow, observed).encode_to_vec();
            out.clear();
            out.extend_from_slice(&[0xAA; 3][..i % 4]);
            let before = out.len();
            crate::otlp::write_log_record_protobuf(c, flow, observed, &mut out);
            assert_eq!(&out[..before], &[0xAA; 3][..i % 4], "kept what was there");
            assert_eq!(out[before..], want[..], "case {i}");
        }
    }

    /// The direct writer gives prost's bytes of the reference builder's
    /// records, record by record and as a whole request.
    #[test]
    fn direct_protobuf_matches_the_prost_tree() {
        let observed = fixtures::observed();
        let variations = variations();
        let ctx = fixtures::context();
        let mut batch = ProtobufRequestWriter::new();
        let mut records = Vec::new();
        for (c, flow) in &variations {
            let want = super::log_record(c, flow, observed);
            let got = crate::otlp::log_record(c, flow, observed);
            assert_eq!(got, want);
            let mut one = ProtobufRequestWriter::new();
            one.push_flow(c, flow, observed);
            let mut bytes = Vec::new();
            one.finish(c, &mut bytes);
            assert_eq!(
                bytes,
                encode_protobuf(&export_request(c, vec![want.clone()]))
            );
            batch.push_flow(&ctx, flow, observed);
            records.push(super::log_record(&ctx, flow, observed));
        }
        assert_eq!(batch.len(), variations.len());
        let mut bytes = Vec::new();
        batch.finish(&ctx, &mut bytes);
        assert_eq!(bytes, encode_protobuf(&export_request(&ctx, records)));
        assert!(batch.is_empty(), "finish starts a new batch");

        // Reused after finish, and mixed with prost-built records.
        let loss = crate::otlp::loss_record(
            &ctx,
            &flowscribe_model::CaptureLoss {
                reason: flowscribe_model::LossReason::FlowMapFull,
                count: 1,
                bytes: 2,
                window_start: fixtures::t(0),
                window_end: fixtures::t(1),
            },
            observed,
        );
        let flow = &variations[0].1;
        batch.push_flow(&ctx, flow, observed);
        batch.push_record(&loss);
        let mut bytes = Vec::new();
        batch.finish(&ctx, &mut bytes);
        let want = vec![super::log_record(&ctx, flow, observed), loss];
        assert_eq!(bytes, encode_protobuf(&export_request(&ctx, want)));
    }
}
