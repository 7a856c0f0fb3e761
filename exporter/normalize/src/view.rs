//! What every output schema derives from one [`ExplainedFlow`] in the same
//! way: the overall verdict and the rule that decided it, the severity, the
//! one-line human summary, the connection direction relative to this node,
//! the Community ID and the event id.
//!
//! Stage ④ (normalize) computes a [`FlowView`] once per record and each
//! schema module (`ecs`, `ocsf`, `otlp`, `cef`) only renames and reshapes
//! it, so that the four outputs never disagree about a flow. Pure: no IO, no
//! clock (observed time is a parameter of the schema functions). It must not
//! choose field names; those belong to the schema modules and their tables.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use flowscribe_model::{
    EndReason, Endpoint, EndpointKind, ExplainedFlow, FlowState, Observed, PolicyHit, PolicyRef,
    SideVerdict, Verdict,
};

use crate::Context;
use crate::community_id::community_id_v1;
use crate::event_id::event_id;

/// OTel-style severity of a record: INFO for allowed flows, WARN for denied
/// flows and for flows where evaluation and observation disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Info,
    Warn,
}

/// Where the connection runs relative to the node that wrote the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeDirection {
    /// The destination lives on this node, the source does not.
    Ingress,
    /// The source lives on this node, the destination does not.
    Egress,
    /// Both ends live on this node.
    Internal,
    /// Neither end is known to live on this node (forwarded traffic, or
    /// endpoints without identity).
    Unknown,
}

impl NodeDirection {
    /// The ECS `network.direction` value (host-based view).
    pub fn as_str(self) -> &'static str {
        match self {
            NodeDirection::Ingress => "ingress",
            NodeDirection::Egress => "egress",
            NodeDirection::Internal => "internal",
            NodeDirection::Unknown => "unknown",
        }
    }
}

/// The rule that decided one evaluation: the side whose verdict is the
/// overall one, and the last hit on that side (when any policy selected
/// the endpoint).
#[derive(Debug, Clone, Copy)]
pub struct Decision<'a> {
    pub side: &'a SideVerdict,
    pub hit: Option<&'a PolicyHit>,
}

/// The derived facts of one flow record, shared by every schema.
#[derive(Debug)]
pub struct FlowView<'a> {
    pub flow: &'a ExplainedFlow,
    pub event_id: String,
    /// `None` only for a key with mixed address families, which capture
    /// never produces.
    pub community_id: Option<String>,
    /// The enforced verdict; `None` when explain is off.
    pub verdict: Option<Verdict>,
    pub decision: Option<Decision<'a>>,
    /// The decision of the staged (pending) evaluation, when one exists.
    pub pending_decision: Option<Decision<'a>>,
    pub severity: Severity,
    pub direction: NodeDirection,
    pub summary: String,
}

impl<'a> FlowView<'a> {
    pub fn new(ctx: &Context, flow: &'a ExplainedFlow) -> FlowView<'a> {
        let f = &flow.flow.flow;
        let trace = flow.trace.as_ref();
        let decision = trace.map(|t| decide(&t.enforced.egress, &t.enforced.ingress));
        let pending_decision = trace
            .and_then(|t| t.pending.as_ref())
            .map(|p| decide(&p.egress, &p.ingress));
        let verdict = trace.map(|t| t.enforced.verdict);
        let severity = match trace {
            Some(t) if t.enforced.verdict == Verdict::Deny || t.mismatch.is_some() => {
                Severity::Warn
            }
            _ => Severity::Info,
        };
        let mut view = FlowView {
            flow,
            event_id: event_id(&ctx.node, &f.key, f.window_start, f.window_end).to_hex(),
            community_id: community_id_v1(&f.key, ctx.community_id_seed).ok(),
            verdict,
            decision,
            pending_decision,
            severity,
            direction: node_direction(&ctx.node, &flow.flow.source, &flow.flow.destination),
            summary: String::new(),
        };
        view.summary = summary(&view);
        view
    }

    /// The endpoint on this node that Beats-style single-pod fields
    /// (`kubernetes.*`, `orchestrator.*`) describe: the source pod when it
    /// runs here, else the destination pod when it runs here, else whichever
    /// end is a pod.
    pub fn local_pod_endpoint(&self, node: &str) -> Option<&'a Endpoint> {
        let (s, d) = (&self.flow.flow.source, &self.flow.flow.destination);
        let on_node = |e: &Endpoint| {
            e.pod
                .as_ref()
                .is_some_and(|p| p.node.as_deref() == Some(node))
        };
        [s, d]
            .into_iter()
            .find(|e| on_node(e))
            .or_else(|| [s, d].into_iter().find(|e| e.pod.is_some()))
    }
}

/// The side whose verdict is the overall one. On a deny, the first denying
/// side in packet order (egress before ingress); on an allow, the ingress
/// side when a policy selected the destination, else the egress side when a
/// policy selected the source, else ingress (nothing selected either end).
fn decide<'a>(egress: &'a SideVerdict, ingress: &'a SideVerdict) -> Decision<'a> {
    let side = if egress.verdict == Verdict::Deny {
        egress
    } else if ingress.verdict == Verdict::Deny || !ingress.hits.is_empty() {
        ingress
    } else if !egress.hits.is_empty() {
        egress
    } else {
        ingress
    };
    Decision {
        side,
        hit: side.hits.last(),
    }
}

fn node_direction(node: &str, source: &Endpoint, destination: &Endpoint) -> NodeDirection {
    let here = |e: &Endpoint| {
        let pod_node = e.pod.as_ref().and_then(|p| p.node.as_deref());
        pod_node.or(e.node.as_deref()) == Some(node)
            && matches!(
                e.kind,
                EndpointKind::Pod | EndpointKind::HostNetworkPod | EndpointKind::Node
            )
    };
    match (here(source), here(destination)) {
        (true, true) => NodeDirection::Internal,
        (true, false) => NodeDirection::Egress,
        (false, true) => NodeDirection::Ingress,
        (false, false) => NodeDirection::Unknown,
    }
}

/// Whether the protocol has ports (ICMP carries type and code instead).
pub fn has_ports(protocol: u8) -> bool {
    matches!(protocol, 6 | 17 | 132 | 136)
}

/// Whether the protocol is ICMP or ICMPv6 (ports hold type and code).
pub fn is_icmp(protocol: u8) -> bool {
    matches!(protocol, 1 | 58)
}

/// Nanoseconds since the Unix epoch; 0 for times before it.
pub fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch; 0 for times before it.
pub fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Nanoseconds from `start` to `end`; 0 when `end` is not after `start`.
pub fn duration_nanos(start: SystemTime, end: SystemTime) -> u64 {
    end.duration_since(start)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// RFC 3339, UTC, nanosecond precision.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_nanos(t).to_string()
}

pub fn state_str(s: FlowState) -> &'static str {
    match s {
        FlowState::Started => "started",
        FlowState::Live => "live",
        FlowState::Completed => "completed",
        FlowState::OneSided => "one-sided",
    }
}

pub fn end_reason_str(e: EndReason) -> &'static str {
    match e {
        EndReason::TcpFin => "tcp-fin",
        EndReason::TcpRst => "tcp-rst",
        EndReason::IdleTimeout => "idle-timeout",
        EndReason::Shutdown => "shutdown",
    }
}

/// TCP flag names in header bit order.
pub fn tcp_flag_names(flags: u8) -> Vec<&'static str> {
    const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
    NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| flags & (1 << i) != 0)
        .map(|(_, n)| *n)
        .collect()
}

pub fn observed_str(o: &Observed) -> &'static str {
    match o {
        Observed::Delivered => "delivered",
        Observed::Dropped { .. } => "dropped",
        Observed::Unknown => "unknown",
    }
}

/// `namespace/name` for namespaced policies, `name` for cluster-scoped ones.
pub fn policy_display(p: &PolicyRef) -> String {
    match &p.namespace {
        Some(ns) => format!("{ns}/{}", p.name),
        None => p.name.to_string(),
    }
}

/// The rule's name: its own name, else `<direction>[<index>]`, else (the
/// policy selected the endpoint but no rule matched) the verdict reason.
pub fn rule_name(d: &Decision<'_>) -> String {
    match d.hit {
        Some(PolicyHit {
            rule_name: Some(n), ..
        }) => n.to_string(),
        Some(PolicyHit {
            rule_index: Some(i),
            ..
        }) => format!("{}[{i}]", d.side.direction.as_str()),
        _ => d.side.reason.as_str().to_string(),
    }
}

/// A stable id of the rule: `<policy uid>/<direction>/<index>`, or
/// `<policy uid>/<direction>/default` when no rule matched.
pub fn rule_id(d: &Decision<'_>) -> Option<String> {
    let hit = d.hit?;
    let dir = d.side.direction.as_str();
    Some(match hit.rule_index {
        Some(i) => format!("{}/{dir}/{i}", hit.policy.uid),
        None => format!("{}/{dir}/default", hit.policy.uid),
    })
}

/// How an endpoint is named in the summary line: `namespace/pod` for pods,
/// `namespace/service` for services, `node/<name>` for nodes, otherwise the
/// address (with the configured network name when one matched).
pub fn endpoint_label(e: &Endpoint, addr: std::net::IpAddr) -> String {
    if let Some(p) = &e.pod
        && matches!(e.kind, EndpointKind::Pod | EndpointKind::HostNetworkPod)
    {
        return format!("{}/{}", p.namespace, p.name);
    }
    if let Some(s) = &e.service {
        return format!("{}/{}", s.namespace, s.name);
    }
    if e.kind == EndpointKind::Node
        && let Some(n) = &e.node
    {
        return format!("node/{n}");
    }
    match &e.network {
        Some(n) => format!("{addr} ({n})"),
        None => addr.to_string(),
    }
}

/// The one-line human summary, e.g.
/// `x/a → y/b:80/TCP denied: isolated-no-match (ingress, ns y)`.
fn summary(v: &FlowView<'_>) -> String {
    let ef = &v.flow.flow;
    let key = &ef.flow.key;
    let proto = flowscribe_model::protocol_name(key.protocol).to_ascii_uppercase();
    let mut s = String::with_capacity(96);
    s.push_str(&endpoint_label(&ef.source, key.src_addr));
    s.push_str(" → ");
    s.push_str(&endpoint_label(&ef.destination, key.dst_addr));
    if has_ports(key.protocol) {
        let _ = write!(s, ":{}/{proto}", key.dst_port);
    } else if is_icmp(key.protocol) {
        let _ = write!(s, " {proto} type {} code {}", key.src_port, key.dst_port);
    } else {
        let _ = write!(s, " proto {}", key.protocol);
    }
    match (&v.flow.trace, &v.decision) {
        (Some(t), Some(d)) => {
            let word = match t.enforced.verdict {
                Verdict::Allow => "allowed",
                Verdict::Deny => "denied",
            };
            let _ = write!(
                s,
                " {word}: {} ({}",
                d.side.reason.as_str(),
                d.side.direction.as_str()
            );
            let ns = d
                .hit
                .and_then(|h| h.policy.namespace.as_deref())
                .map(str::to_string)
                .or_else(|| {
                    let e = match d.side.direction {
                        flowscribe_model::PolicyDirection::Egress => &ef.source,
                        flowscribe_model::PolicyDirection::Ingress => &ef.destination,
                    };
                    e.pod.as_ref().map(|p| p.namespace.to_string())
                });
            if let Some(ns) = ns {
                let _ = write!(s, ", ns {ns}");
            }
            s.push(')');
            if let (Some(p), Some(pd)) = (&t.pending, &v.pending_decision)
                && p.verdict != t.enforced.verdict
            {
                let _ = write!(s, "; staged would {}", p.verdict.as_str());
                if let Some(h) = pd.hit {
                    let _ = write!(s, " ({})", policy_display(&h.policy));
                }
            }
            if let Some(m) = t.mismatch {
                let _ = write!(s, "; mismatch: {}", m.as_str());
            }
        }
        _ => {
            let _ = write!(s, " {}", state_str(ef.flow.state));
        }
    }
    if let Some(d) = &ef.flow.drops {
        let _ = write!(
            s,
            "; kernel dropped {} packets ({})",
            d.packets_forward + d.packets_reverse,
            d.last_reason
        );
    }
    if ef.source.stale.is_some() || ef.destination.stale.is_some() {
        s.push_str("; stale identity");
    }
    s
}
