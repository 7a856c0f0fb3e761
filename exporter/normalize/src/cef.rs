//! The CEF (ArcSight Common Event Format, version 0) view of a flow record:
//! one line per flow with the fields a network-firewall event carries, for
//! syslog-based SIEMs (the line is the syslog MSG; framing and transport
//! belong to the syslog sink).
//!
//! Header fields escape `\` and `|`; extension values escape `\`, `=` and
//! line breaks (`\n`, `\r`), as the CEF implementation standard asks.
//! Extension keys are fixed ASCII and never escaped. [`MAPPING`] is the
//! contract.
//!
//! Stage ④. Pure: no IO, no clock. It must not decide verdicts: those come
//! from [`FlowView`].

use std::fmt::Write as _;
use std::time::SystemTime;

use flowscribe_model::{CaptureLoss, ExplainedFlow, Verdict};

use crate::event_id::{EventId, loss_event_id};
use crate::schema::row;
use crate::view::{
    FlowView, NodeDirection, Severity, endpoint_label, has_ports, is_icmp, loss_summary, loss_unit,
    policy_display, rule_name, unix_millis,
};
use crate::{Context, FieldMapping};

pub const UPSTREAM: &str = "ArcSight Common Event Format (CEF) version 0, \
     Implementation Standard revision 25 key names";

pub const JSON_SCHEMA: &str = include_str!("../../../schemas/cef/flow.schema.json");

/// The JSON Schema of a capture loss line ([`loss_line`]), as a JSON string.
pub const LOSS_JSON_SCHEMA: &str = include_str!("../../../schemas/cef/loss.schema.json");

pub const NOTES: &str = "One line per flow record: \
`CEF:0|flowscribe|flowscribe|<version>|<class>|<name>|<severity>|<extension>`. Class ids: \
`flow-allowed`, `flow-denied`, `flow` (no policy trace). Severity 3 (Low) for allowed flows, 6 \
(Medium) for denied flows or a verdict mismatch. `out`/`cn1` count initiator → responder, \
`in`/`cn2` responder → initiator. IPv6 addresses are in `src`/`dst` and also in `c6a2`/`c6a3` \
for consumers that take only IPv4 in `src`/`dst`. Custom strings `cs1`..`cs6` carry their \
labels in `cs<n>Label`. Capture loss lines have class `capture-loss` (Name `Capture loss`, \
severity 6): the count in `flexNumber1` (`lostCount`, packets or events as `cs1` `lossUnit` \
says), bytes in `flexNumber2` (`lostBytes`), the reason in `reason`; their JSON Schema is \
`schemas/cef/loss.schema.json`.";

/// `s` escaped for a CEF header field: `\` → `\\`, `|` → `\|`; line breaks
/// (not allowed in the header) become spaces.
pub fn escape_header(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
}

/// `s` escaped for a CEF extension value: `\` → `\\`, `=` → `\=`,
/// newline → `\n`, carriage return → `\r`. `|` needs no escape there.
pub fn escape_extension(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

struct Extension {
    line: String,
}

impl Extension {
    fn push(&mut self, key: &str, value: &str) {
        if !self.line.ends_with('|') {
            self.line.push(' ');
        }
        self.line.push_str(key);
        self.line.push('=');
        escape_extension(value, &mut self.line);
    }

    fn num(&mut self, key: &str, value: u64) {
        if !self.line.ends_with('|') {
            self.line.push(' ');
        }
        let _ = write!(self.line, "{key}={value}");
    }

    fn labelled(&mut self, key: &str, label: &str, value: &str) {
        self.push(&format!("{key}Label"), label);
        self.push(key, value);
    }
}

/// The CEF line of one flow record (no newline).
pub fn flow_line(ctx: &Context, flow: &ExplainedFlow, observed: SystemTime) -> String {
    flow_line_with_event_id(ctx, flow, None, observed)
}

/// [`flow_line`] with the record's event id given (`None`: hashed from the
/// flow).
pub fn flow_line_with_event_id(
    ctx: &Context,
    flow: &ExplainedFlow,
    id: Option<EventId>,
    observed: SystemTime,
) -> String {
    let view = FlowView::with_event_id(ctx, flow, id);
    let ef = &flow.flow;
    let f = &ef.flow;
    let key = &f.key;
    let (class, name) = match view.verdict {
        Some(Verdict::Allow) => ("flow-allowed", "Network flow allowed"),
        Some(Verdict::Deny) => ("flow-denied", "Network flow denied"),
        None => ("flow", "Network flow"),
    };
    let severity = match view.severity {
        Severity::Info => 3,
        Severity::Warn => 6,
    };
    let mut line = String::with_capacity(768);
    line.push_str("CEF:0|flowscribe|flowscribe|");
    escape_header(&ctx.service_version, &mut line);
    let _ = write!(line, "|{class}|{name}|{severity}|");
    let mut x = Extension { line };

    x.num("rt", unix_millis(observed));
    x.num("start", unix_millis(f.window_start));
    x.num("end", unix_millis(f.window_end));
    x.push("src", &key.src_addr.to_string());
    x.push("dst", &key.dst_addr.to_string());
    if has_ports(key.protocol) {
        x.num("spt", key.src_port.into());
        x.num("dpt", key.dst_port.into());
    }
    x.push(
        "proto",
        &flowscribe_model::protocol_name(key.protocol).to_ascii_uppercase(),
    );
    if let Some(v) = view.verdict {
        x.push("act", v.as_str());
        x.push(
            "outcome",
            match v {
                Verdict::Allow => "success",
                Verdict::Deny => "failure",
            },
        );
    }
    if let Some(d) = &view.decision {
        x.push("reason", d.side.reason.as_str());
    }
    x.num("out", f.forward.bytes);
    x.num("in", f.reverse.bytes);
    match view.direction {
        NodeDirection::Ingress => x.num("deviceDirection", 0),
        NodeDirection::Egress => x.num("deviceDirection", 1),
        NodeDirection::Internal | NodeDirection::Unknown => {}
    }
    x.push("deviceInboundInterface", &f.interface.name);
    x.push("dvchost", &ctx.node);
    x.push("deviceExternalId", &ctx.node);
    x.push("externalId", view.event_id.as_str());
    x.push("cat", "network/flow");
    x.push("msg", &view.summary());

    if let Some(d) = &view.decision {
        if let Some(h) = d.hit {
            x.labelled("cs1", "policy", &policy_display(&h.policy));
        }
        x.labelled("cs2", "rule", &rule_name(d));
    }
    x.labelled("cs3", "source", &endpoint_label(&ef.source, key.src_addr));
    x.labelled(
        "cs4",
        "destination",
        &endpoint_label(&ef.destination, key.dst_addr),
    );
    if let Some(t) = &flow.trace
        && let Some(p) = &t.pending
    {
        x.labelled("cs5", "stagedVerdict", p.verdict.as_str());
    }
    if let Some(c) = &view.community_id {
        x.labelled("cs6", "communityId", c.as_str());
    }
    x.labelled("cn1", "packetsOut", &f.forward.packets.to_string());
    x.labelled("cn2", "packetsIn", &f.reverse.packets.to_string());
    if is_icmp(key.protocol) {
        x.labelled("cn3", "icmpType", &key.src_port.to_string());
    }
    if key.src_addr.is_ipv6() {
        x.labelled("c6a2", "Source IPv6 Address", &key.src_addr.to_string());
        x.labelled(
            "c6a3",
            "Destination IPv6 Address",
            &key.dst_addr.to_string(),
        );
    }
    if let Some(t) = &flow.trace
        && let Some(m) = t.mismatch
    {
        x.labelled("flexString1", "mismatch", m.as_str());
    }
    if ef.source.stale.is_some() || ef.destination.stale.is_some() {
        x.labelled("flexString2", "stale", "true");
    }
    x.line
}

/// The CEF line of one capture loss report (no newline): class
/// `capture-loss`, severity 6 (data is missing), the counts in
/// `flexNumber1` (packets or events, as `cs1` says) and `flexNumber2`
/// (bytes).
pub fn loss_line(ctx: &Context, loss: &CaptureLoss, observed: SystemTime) -> String {
    let mut line = String::with_capacity(512);
    line.push_str("CEF:0|flowscribe|flowscribe|");
    escape_header(&ctx.service_version, &mut line);
    line.push_str("|capture-loss|Capture loss|6|");
    let mut x = Extension { line };
    x.num("rt", unix_millis(observed));
    x.num("start", unix_millis(loss.window_start));
    x.num("end", unix_millis(loss.window_end));
    x.push("outcome", "failure");
    x.push("reason", loss.reason.as_str());
    x.push("dvchost", &ctx.node);
    x.push("deviceExternalId", &ctx.node);
    x.push("externalId", &loss_event_id(&ctx.node, loss));
    x.push("cat", "capture/loss");
    x.push("msg", &loss_summary(ctx, loss));
    x.labelled("flexNumber1", "lostCount", &loss.count.to_string());
    x.labelled("flexNumber2", "lostBytes", &loss.bytes.to_string());
    x.labelled("cs1", "lossUnit", loss_unit(loss.reason));
    x.labelled("cs2", "lossStage", "capture");
    x.labelled(
        "cs3",
        "losesFlowData",
        if loss.reason.loses_flow_data() {
            "true"
        } else {
            "false"
        },
    );
    x.line
}

/// The header fields and every extension key a flow line can carry.
pub const MAPPING: &[FieldMapping] = &[
    row(
        "(constant)",
        "header:Device Vendor",
        "string",
        "flowscribe",
        "",
    ),
    row(
        "(constant)",
        "header:Device Product",
        "string",
        "flowscribe",
        "",
    ),
    row(
        "context.service_version",
        "header:Device Version",
        "string",
        "0.1.0",
        "",
    ),
    row(
        "trace.enforced.verdict",
        "header:Device Event Class ID",
        "string",
        "flow-denied",
        "flow-allowed, flow-denied, flow.",
    ),
    row(
        "trace.enforced.verdict",
        "header:Name",
        "string",
        "Network flow denied",
        "",
    ),
    row(
        "severity",
        "header:Severity",
        "integer",
        "6",
        "3 allowed; 6 denied or mismatch.",
    ),
    row(
        "observed time (parameter)",
        "rt",
        "epoch ms",
        "1795321810200",
        "deviceReceiptTime.",
    ),
    row(
        "flow.window_start",
        "start",
        "epoch ms",
        "1795321800000",
        "",
    ),
    row("flow.window_end", "end", "epoch ms", "1795321810000", ""),
    row("key.src_addr", "src", "IP address", "10.0.1.5", ""),
    row("key.dst_addr", "dst", "IP address", "10.0.2.7", ""),
    row(
        "key.src_port",
        "spt",
        "integer",
        "51320",
        "Absent for ICMP.",
    ),
    row("key.dst_port", "dpt", "integer", "5432", "Absent for ICMP."),
    row("key.protocol", "proto", "string", "TCP", ""),
    row("trace.enforced.verdict", "act", "string", "deny", ""),
    row("trace.enforced.verdict", "outcome", "string", "failure", ""),
    row(
        "deciding side.reason",
        "reason",
        "string",
        "isolated-no-match",
        "",
    ),
    row(
        "forward.bytes",
        "out",
        "integer",
        "400",
        "Initiator → responder.",
    ),
    row(
        "reverse.bytes",
        "in",
        "integer",
        "3000",
        "Responder → initiator.",
    ),
    row(
        "endpoints' nodes",
        "deviceDirection",
        "integer",
        "0",
        "0 inbound (destination on this node), 1 outbound (source here); absent otherwise.",
    ),
    row(
        "flow.interface.name",
        "deviceInboundInterface",
        "string",
        "veth1a2b",
        "",
    ),
    row("context.node", "dvchost", "string", "node-1", ""),
    row("context.node", "deviceExternalId", "string", "node-1", ""),
    row(
        "event_id",
        "externalId",
        "string",
        "3f0c…(32 hex)",
        "Deterministic id for deduplication.",
    ),
    row("(constant)", "cat", "string", "network/flow", ""),
    row(
        "(summary)",
        "msg",
        "string",
        "shop/web-1 → db/pg-0:5432/TCP denied: isolated-no-match (ingress, ns db)",
        "",
    ),
    row(
        "deciding policy",
        "cs1",
        "string",
        "db/default-deny",
        "cs1Label=policy.",
    ),
    row(
        "deciding rule",
        "cs2",
        "string",
        "ingress[0]",
        "cs2Label=rule.",
    ),
    row("source", "cs3", "string", "shop/web-1", "cs3Label=source."),
    row(
        "destination",
        "cs4",
        "string",
        "db/pg-0",
        "cs4Label=destination.",
    ),
    row(
        "trace.pending.verdict",
        "cs5",
        "string",
        "deny",
        "cs5Label=stagedVerdict.",
    ),
    row(
        "community_id_v1",
        "cs6",
        "string",
        "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
        "cs6Label=communityId.",
    ),
    row(
        "forward.packets",
        "cn1",
        "integer",
        "5",
        "cn1Label=packetsOut.",
    ),
    row(
        "reverse.packets",
        "cn2",
        "integer",
        "4",
        "cn2Label=packetsIn.",
    ),
    row(
        "key.src_port (ICMP type)",
        "cn3",
        "integer",
        "8",
        "cn3Label=icmpType.",
    ),
    row(
        "key.src_addr (IPv6)",
        "c6a2",
        "IPv6 address",
        "fd00::1",
        "c6a2Label=Source IPv6 Address.",
    ),
    row(
        "key.dst_addr (IPv6)",
        "c6a3",
        "IPv6 address",
        "fd00::2",
        "c6a3Label=Destination IPv6 Address.",
    ),
    row(
        "trace.mismatch",
        "flexString1",
        "string",
        "policy-not-enforced",
        "flexString1Label=mismatch.",
    ),
    row(
        "endpoint stale",
        "flexString2",
        "string",
        "true",
        "flexString2Label=stale.",
    ),
    // Capture loss records (`loss_line`).
    row(
        "loss record",
        "header:Device Event Class ID",
        "string",
        "capture-loss",
        "Capture loss lines: Name `Capture loss`, Severity 6, `rt`/`start`/`end`, `outcome=failure`, `reason` the loss reason, `dvchost`, `deviceExternalId`, `externalId` `loss-<node>-<reason>-<window end ns>`, `cat=capture/loss`, `msg`; no flow keys.",
    ),
    row(
        "loss.count",
        "flexNumber1",
        "long",
        "7",
        "Label `lostCount`: packets lost (events for ring_reserve_failed).",
    ),
    row(
        "loss.bytes",
        "flexNumber2",
        "long",
        "4200",
        "Label `lostBytes`.",
    ),
    row(
        "loss unit",
        "cs1",
        "string",
        "packets",
        "Loss lines: label `lossUnit`, `packets` or `events`.",
    ),
    row(
        "(constant)",
        "cs2",
        "string",
        "capture",
        "Loss lines: label `lossStage`.",
    ),
    row(
        "loss.reason.loses_flow_data()",
        "cs3",
        "string",
        "true",
        "Loss lines: label `losesFlowData`.",
    ),
];

#[cfg(test)]
mod tests {
    use super::{escape_extension, escape_header};

    /// A node name and version with CEF's special characters stay inside
    /// their fields in a loss line: escaped header, escaped extension
    /// values (including the id and the message that carry the name).
    #[test]
    fn loss_line_escapes_what_comes_from_configuration() {
        let ctx = crate::Context {
            node: "n=1\\x".into(),
            cluster: None,
            service_version: "1|2".into(),
            community_id_seed: 0,
        };
        let loss = flowscribe_model::CaptureLoss {
            reason: flowscribe_model::LossReason::DropMapFull,
            count: 2,
            bytes: 0,
            window_start: std::time::UNIX_EPOCH,
            window_end: std::time::UNIX_EPOCH + std::time::Duration::from_millis(1500),
        };
        let line = super::loss_line(&ctx, &loss, std::time::UNIX_EPOCH);
        assert!(
            line.starts_with("CEF:0|flowscribe|flowscribe|1\\|2|capture-loss|"),
            "{line}"
        );
        for part in [
            " dvchost=n\\=1\\\\x ",
            " externalId=loss-n\\=1\\\\x-drop_map_full-1500000000 ",
            " msg=capture lost 2 packets (0 bytes) on n\\=1\\\\x: drop_map_full ",
            " cs3=false",
        ] {
            assert!(line.contains(part), "{part:?} in {line}");
        }
    }

    #[test]
    fn header_escaping() {
        let cases = [
            ("plain", "plain"),
            ("a|b", "a\\|b"),
            ("a\\b", "a\\\\b"),
            ("\\|", "\\\\\\|"),
            ("a=b", "a=b"),
            ("line\nbreak\r", "line break "),
            ("→ ünï", "→ ünï"),
        ];
        for (input, want) in cases {
            let mut out = String::new();
            escape_header(input, &mut out);
            assert_eq!(out, want, "{input:?}");
        }
    }

    #[test]
    fn extension_escaping() {
        let cases = [
            ("plain value", "plain value"),
            ("a=b", "a\\=b"),
            ("a\\b", "a\\\\b"),
            ("a|b", "a|b"),
            ("one\ntwo", "one\\ntwo"),
            ("one\r\ntwo", "one\\r\\ntwo"),
            ("\\=", "\\\\\\="),
            ("1:abc=", "1:abc\\="),
        ];
        for (input, want) in cases {
            let mut out = String::new();
            escape_extension(input, &mut out);
            assert_eq!(out, want, "{input:?}");
        }
    }
}
