//! The ECS 9.x view of a flow record: one Elasticsearch document per flow,
//! with `event.*`, `source.*`, `destination.*`, `network.*`, `rule.*`,
//! `orchestrator.*`, `host.*`, `observer.*`, `related.ip`, the Beats
//! `kubernetes.*` fields Elastic users already query, and `flowscribe.*`
//! for what ECS has no field for. [`MAPPING`] is the contract; the golden
//! tests prove that every field written is in it and is ECS-conformant
//! (`crate::ecs_fields`).
//!
//! Stage ④. Pure: writes the document straight into the caller's buffer
//! ([`write_flow_document`]) with members in sorted order at every level
//! (the form the goldens pin, and what serializing a `serde_json::Value`
//! gives), building no `Value` tree; no IO, no clock. It must not decide verdicts or
//! directions itself: those come from [`FlowView`].

use std::time::SystemTime;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use flowscribe_model::{
    CaptureLoss, DirectionCounters, Endpoint, Evaluation, ExplainedFlow, FlowState, Observed,
    PodIdentity, PolicyHit, PolicyRef, SideVerdict, Verdict,
};
use serde_json::{Value, json};

use crate::event_id::EventId;
use crate::json::{Fragment, JsonWriter, Key, frag, k};
use crate::schema::row;
use crate::view::{
    AddrText, Decision, FlowView, LastConverted, Rfc3339Dates, community_id_text, duration_nanos,
    has_ports, is_icmp, observed_str, rfc3339, rfc3339_bytes, tcp_flag_iter, write_policy_display,
    write_rule_name,
};
use crate::{Context, FieldMapping};

mod cached;
pub use cached::EcsEncoder;

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

/// The ECS document of one flow record, appended to `out` as one compact
/// JSON line (no newline), members in sorted order at every level. This is
/// the encode path: it builds no `Value` and allocates nothing (but, rarely,
/// to re-sort de-dotted label keys). Text is copied unescaped and written a
/// second time, escaped, only when some of it needed escaping (see
/// `crate::json`).
pub fn write_flow_document(
    ctx: &Context,
    flow: &ExplainedFlow,
    observed: SystemTime,
    out: &mut Vec<u8>,
) {
    write_flow_document_with_event_id(ctx, flow, None, observed, out);
}

/// [`write_flow_document`] with the record's event id given (`None`: hashed
/// from the flow).
pub fn write_flow_document_with_event_id(
    ctx: &Context,
    flow: &ExplainedFlow,
    id: Option<EventId>,
    observed: SystemTime,
    out: &mut Vec<u8>,
) {
    let times = Times::new(&flow.flow, observed, &mut TimeFormatter::default());
    write_document(ctx, flow, id, &times, &mut Direct, None, out);
}

/// The per-window values of a document: the holes of its template (see
/// `crate::template`), written by [`fill_hole`].
mod hole {
    use crate::template::Hole;
    pub(super) const WINDOW_END: Hole = 0;
    pub(super) const WINDOW_START: Hole = 1;
    pub(super) const OBSERVED: Hole = 2;
    pub(super) const LAST_PACKET: Hole = 3;
    pub(super) const DURATION: Hole = 4;
    pub(super) const EVENT_ID: Hole = 5;
    pub(super) const SOURCE_BYTES: Hole = 6;
    pub(super) const SOURCE_PACKETS: Hole = 7;
    pub(super) const DESTINATION_BYTES: Hole = 8;
    pub(super) const DESTINATION_PACKETS: Hole = 9;
    pub(super) const NETWORK_BYTES: Hole = 10;
    pub(super) const NETWORK_PACKETS: Hole = 11;
    pub(super) const SOURCE_PORT: Hole = 12;
    pub(super) const COMMUNITY_ID: Hole = 13;
    pub(super) const FIRST_PACKET: Hole = 14;
    /// The holes of a connection's own values (the same in all its
    /// records).
    pub(super) const PER_CONNECTION: crate::template::HoleSet =
        crate::template::HoleSet(1 << SOURCE_PORT | 1 << COMMUNITY_ID | 1 << FIRST_PACKET);
}

/// Writes the value of `hole` for the record of `f` (what the document
/// writes there: the text between the quotes, or the number). `kept` is
/// the template's value there, copied for the values of a connection when
/// the template is of the same connection.
#[inline]
fn fill_hole(
    h: crate::template::Hole,
    kept: &[u8],
    same_connection: bool,
    f: &flowscribe_model::Flow,
    times: &mut WindowTimes<'_>,
    event_id: crate::event_id::EventId,
    out: &mut Vec<u8>,
) {
    use crate::json::push_u64;
    match h {
        hole::WINDOW_END => out.extend_from_slice(&times.window_end),
        hole::WINDOW_START => times.dates.format_into(f.window_start, out),
        hole::OBSERVED => out.extend_from_slice(&times.observed),
        hole::LAST_PACKET => times.dates.format_into(f.last_packet, out),
        hole::DURATION => push_u64(out, duration_nanos(f.window_start, f.window_end)),
        hole::EVENT_ID => event_id.write_hex(out),
        hole::SOURCE_BYTES => push_u64(out, f.forward.bytes),
        hole::SOURCE_PACKETS => push_u64(out, f.forward.packets),
        hole::DESTINATION_BYTES => push_u64(out, f.reverse.bytes),
        hole::DESTINATION_PACKETS => push_u64(out, f.reverse.packets),
        hole::NETWORK_BYTES => push_u64(out, f.forward.bytes + f.reverse.bytes),
        hole::SOURCE_PORT => push_u64(out, f.key.src_port.into()),
        hole::COMMUNITY_ID | hole::FIRST_PACKET if same_connection => {
            out.extend_from_slice(kept);
        }
        hole::COMMUNITY_ID => {
            // The template has one, so the key's families match and so
            // does this one's: `None` cannot happen here.
            if let Some(c) = community_id_text(&f.key, times.community_id_seed) {
                out.extend_from_slice(c.as_bytes());
            }
        }
        hole::FIRST_PACKET => times.dates.format_into(f.first_packet, out),
        _ => push_u64(out, f.forward.packets + f.reverse.packets),
    }
}

/// [`write_flow_document`] with the parts that depend only on shared
/// objects taken from `parts` (rendered on the spot, or cached).
fn write_document<P: Parts>(
    ctx: &Context,
    flow: &ExplainedFlow,
    id: Option<EventId>,
    times: &Times,
    parts: &mut P,
    mut marks: Option<&mut Vec<crate::template::Mark>>,
    out: &mut Vec<u8>,
) {
    let view = FlowView::with_event_id(ctx, flow, id);
    // Documents are 2-4 KiB: one reservation instead of growth steps.
    out.reserve(4096);
    let start = out.len();
    let mut w = if P::CHECK_ON_WRITE {
        JsonWriter::checking(out)
    } else {
        JsonWriter::new(out)
    }
    .marking(marks.as_deref_mut());
    document(&mut w, ctx, &view, times, parts);
    if w.needed_escaping() {
        out.truncate(start);
        if let Some(m) = marks.as_deref_mut() {
            m.clear();
        }
        let mut w = JsonWriter::escaping(out).marking(marks);
        document(&mut w, ctx, &view, times, parts);
    }
}

/// Where the parts of a document that depend only on shared objects (the
/// context, an endpoint's pod/node/service/network, a policy) come from:
/// written on the spot ([`Direct`]) or copied from an [`EcsEncoder`]'s
/// cache. Each method writes a whole member or value, per-record data
/// included, so both implementations share the skeleton of the document.
trait Parts {
    /// Whether the first pass checks data strings as they are written
    /// (`JsonWriter::checking`, for documents made mostly of cached
    /// fragments) rather than scanning the document at the end.
    const CHECK_ON_WRITE: bool;

    /// `host`.
    fn host(&mut self, w: &mut JsonWriter<'_>, ctx: &Context);
    /// `observer`, with the record's capturing interface.
    fn observer(&mut self, w: &mut JsonWriter<'_>, ctx: &Context, ifindex: u32, ifname: &str);
    /// The members of `flowscribe.source`/`.destination` after
    /// `deleted_at`.
    fn endpoint_members(&mut self, w: &mut JsonWriter<'_>, e: &Endpoint);
    /// The value of `kubernetes` for the pod `p` of `e`, whose address is
    /// `ip`.
    fn kubernetes(&mut self, w: &mut JsonWriter<'_>, e: &Endpoint, p: &PodIdentity, ip: &[u8]);
    /// `orchestrator.namespace` and `orchestrator.resource` of the pod `p`
    /// of `e`.
    fn orchestrator_pod(&mut self, w: &mut JsonWriter<'_>, e: &Endpoint, p: &PodIdentity);
    /// One element of `flowscribe.policy.*.hits`.
    fn hit(&mut self, w: &mut JsonWriter<'_>, h: &PolicyHit);
    /// `rule.description` and `rule.id` of a decision with a hit.
    fn rule_head(&mut self, w: &mut JsonWriter<'_>, d: &Decision<'_>, h: &PolicyHit);
    /// `rule.ruleset`, `rule.uuid` and `rule.version` of a hit.
    fn rule_tail(&mut self, w: &mut JsonWriter<'_>, h: &PolicyHit);
}

/// [`Parts`] written on the spot: what [`write_flow_document`] does.
struct Direct;

impl Parts for Direct {
    const CHECK_ON_WRITE: bool = false;

    fn host(&mut self, w: &mut JsonWriter<'_>, ctx: &Context) {
        host(w, ctx);
    }

    fn observer(&mut self, w: &mut JsonWriter<'_>, ctx: &Context, ifindex: u32, ifname: &str) {
        observer_head(w, ctx);
        observer_interface(w, ifindex, ifname);
        observer_tail(w, ctx);
    }

    fn endpoint_members(&mut self, w: &mut JsonWriter<'_>, e: &Endpoint) {
        endpoint_members(w, e);
    }

    fn kubernetes(&mut self, w: &mut JsonWriter<'_>, _: &Endpoint, p: &PodIdentity, ip: &[u8]) {
        beats_kubernetes_head(w, p);
        w.plain_str(ip);
        beats_kubernetes_tail(w, p);
    }

    fn orchestrator_pod(&mut self, w: &mut JsonWriter<'_>, _: &Endpoint, p: &PodIdentity) {
        orchestrator_pod(w, p);
    }

    fn hit(&mut self, w: &mut JsonWriter<'_>, h: &PolicyHit) {
        w.begin_object();
        w.field_plain(k!("action"), h.action.as_str().as_bytes());
        hit_policy_head(w, &h.policy);
        hit_rule(w, h);
        hit_policy_tail(w, &h.policy);
        w.end_object();
    }

    fn rule_head(&mut self, w: &mut JsonWriter<'_>, d: &Decision<'_>, h: &PolicyHit) {
        rule_description_head(w, &h.policy);
        rule_description_end(w, h);
        rule_id_head(w, &h.policy);
        rule_id_end(w, d, h);
    }

    fn rule_tail(&mut self, w: &mut JsonWriter<'_>, h: &PolicyHit) {
        rule_policy_tail(w, &h.policy);
    }
}

fn host(w: &mut JsonWriter<'_>, ctx: &Context) {
    w.key(k!("host"));
    w.begin_object();
    w.field_str(k!("hostname"), &ctx.node);
    w.field_str(k!("name"), &ctx.node);
    w.end_object();
}

/// `observer` up to the interface id's value.
fn observer_head(w: &mut JsonWriter<'_>, ctx: &Context) {
    w.key(k!("observer"));
    w.begin_object();
    w.field_str(k!("hostname"), &ctx.node);
    w.key(k!("ingress"));
    w.begin_object();
    w.key(k!("interface"));
    w.begin_object();
    w.key(k!("id"));
}

fn observer_interface(w: &mut JsonWriter<'_>, ifindex: u32, ifname: &str) {
    w.u64_str(ifindex.into());
    w.field_str(k!("name"), ifname);
}

/// `observer` after the interface name.
fn observer_tail(w: &mut JsonWriter<'_>, ctx: &Context) {
    w.end_object();
    w.end_object();
    w.field_str(k!("name"), &ctx.node);
    w.members(frag!(
        r#""product":"flowscribe","type":"sensor","vendor":"flowscribe""#
    ));
    w.field_str(k!("version"), &ctx.service_version);
    w.end_object();
}

fn orchestrator_pod(w: &mut JsonWriter<'_>, p: &PodIdentity) {
    w.field_str(k!("namespace"), &p.namespace);
    w.key(k!("resource"));
    w.begin_object();
    w.field_str(k!("id"), &p.uid);
    w.field_str(k!("name"), &p.name);
    if let Some(wl) = &p.workload {
        w.key(k!("parent"));
        w.begin_object();
        w.field_str(k!("type"), &wl.kind);
        w.end_object();
    }
    w.members(frag!(r#""type":"pod""#));
    w.end_object();
}

/// `rule.description` up to the hit's action, the string left open.
fn rule_description_head(w: &mut JsonWriter<'_>, p: &PolicyRef) {
    w.key(k!("description"));
    w.open_string();
    let _ = (|| {
        let s = &mut w.text();
        s.write_str(p.kind.api_version())?;
        s.write_char(' ')?;
        s.write_str(p.kind.as_str())?;
        s.write_str(" (")?;
        write_policy_display(s, p)?;
        s.write_str("), tier ")?;
        s.write_str(&p.tier)?;
        s.write_str(", action ")
    })();
}

fn rule_description_end(w: &mut JsonWriter<'_>, h: &PolicyHit) {
    let _ = w.text().write_str(h.action.as_str());
    w.close_string();
}

/// `rule.id` up to the policy uid's `/`, the string left open (see
/// [`crate::view::write_rule_id`]).
fn rule_id_head(w: &mut JsonWriter<'_>, p: &PolicyRef) {
    w.key(k!("id"));
    w.open_string();
    let mut s = w.text();
    let _ = s.write_str(&p.uid);
    let _ = s.write_char('/');
}

/// The rest of `rule.id`: as [`crate::view::write_rule_id`] writes it after the uid.
fn rule_id_end(w: &mut JsonWriter<'_>, d: &Decision<'_>, h: &PolicyHit) {
    let mut s = w.text();
    let _ = s.write_str(d.side.direction.as_str());
    let _ = match h.rule_index {
        Some(i) => s
            .write_char('/')
            .and_then(|()| s.write_str(crate::view::Decimal::new(i.into()).as_str())),
        None => s.write_str("/default"),
    };
    w.close_string();
}

fn rule_policy_tail(w: &mut JsonWriter<'_>, p: &PolicyRef) {
    w.key(k!("ruleset"));
    w.str_with(|s| {
        let _ = write_policy_display(s, p);
    });
    w.field_str(k!("uuid"), &p.uid);
    w.field_str(k!("version"), &p.resource_version);
}

/// `ecs.version`, pre-rendered (a test holds it to
/// [`crate::ecs_fields::ECS_VERSION`]).
const ECS_VERSION_MEMBER: Fragment = Fragment::new(r#""ecs":{"version":"9.4.0"}"#);

/// Formats the timestamps of a run of records: the date text of the last
/// day, and the last window end and observed time with their text, which
/// the records of one batch share (one drain, one encoding call).
#[derive(Debug, Default)]
struct TimeFormatter {
    dates: Rfc3339Dates,
    window_end: LastConverted<[u8; 30]>,
    observed: LastConverted<[u8; 30]>,
}

/// The timestamps of a document's holes (see [`fill_hole`]): the batch's
/// window end and observed time, formatted once per batch; the window
/// start and last packet are formatted into the hole itself.
struct WindowTimes<'d> {
    window_end: [u8; 30],
    observed: [u8; 30],
    dates: &'d mut Rfc3339Dates,
    /// The context's Community ID seed (for records of new connections).
    community_id_seed: u16,
}

impl WindowTimes<'_> {
    fn new<'d>(
        observed: SystemTime,
        end: SystemTime,
        formatter: &'d mut TimeFormatter,
        community_id_seed: u16,
    ) -> WindowTimes<'d> {
        let TimeFormatter {
            dates,
            window_end,
            observed: last_observed,
        } = formatter;
        WindowTimes {
            window_end: window_end.of(end, |t| dates.format(t)),
            observed: last_observed.of(observed, |t| dates.format(t)),
            dates,
            community_id_seed,
        }
    }
}

/// Every timestamp of the document, formatted once (for both passes),
/// sharing the date arithmetic ([`Rfc3339Dates`]).
struct Times {
    window_start: [u8; 30],
    window_end: [u8; 30],
    first_packet: [u8; 30],
    last_packet: [u8; 30],
    observed: [u8; 30],
    source_deleted_at: Option<[u8; 30]>,
    destination_deleted_at: Option<[u8; 30]>,
}

impl Times {
    fn new(
        ef: &flowscribe_model::EnrichedFlow,
        observed: SystemTime,
        formatter: &mut TimeFormatter,
    ) -> Times {
        let f = &ef.flow;
        let TimeFormatter {
            dates,
            window_end,
            observed: last_observed,
        } = formatter;
        Times {
            window_end: window_end.of(f.window_end, |t| dates.format(t)),
            window_start: dates.format(f.window_start),
            first_packet: dates.format(f.first_packet),
            last_packet: dates.format(f.last_packet),
            observed: last_observed.of(observed, |t| dates.format(t)),
            source_deleted_at: ef.source.stale.map(|s| dates.format(s.deleted_at)),
            destination_deleted_at: ef.destination.stale.map(|s| dates.format(s.deleted_at)),
        }
    }
}

fn document(
    w: &mut JsonWriter<'_>,
    ctx: &Context,
    view: &FlowView<'_>,
    times: &Times,
    parts: &mut impl Parts,
) {
    let flow = view.flow;
    let ef = &flow.flow;
    let f = &ef.flow;
    let key = &f.key;
    let ports = has_ports(key.protocol);

    w.begin_object();
    w.hole_plain(k!("@timestamp"), &times.window_end, hole::WINDOW_END);
    side(
        w,
        k!("destination"),
        &view.dst_text,
        key.dst_port,
        &f.reverse,
        ports,
        (hole::DESTINATION_BYTES, hole::DESTINATION_PACKETS, None),
    );
    w.members(ECS_VERSION_MEMBER);
    event(w, view, times);
    w.key(k!("flowscribe"));
    flowscribe_namespace(w, view, times, parts);
    parts.host(w, ctx);

    let local_pod = view
        .local_pod_endpoint(&ctx.node)
        .and_then(|e| e.pod.as_ref().map(|p| (e, p)));
    if let Some((e, p)) = local_pod {
        let ip = if std::ptr::eq(e, &ef.source) {
            &view.src_text
        } else {
            &view.dst_text
        };
        w.key(k!("kubernetes"));
        parts.kubernetes(w, e, p, ip.as_bytes());
    }
    w.key(k!("message"));
    w.str_with(|t| {
        let _ = view.write_summary(t);
    });

    w.key(k!("network"));
    w.begin_object();
    w.hole_u64(
        k!("bytes"),
        f.forward.bytes + f.reverse.bytes,
        hole::NETWORK_BYTES,
    );
    if let Some(c) = &view.community_id {
        w.hole_plain(k!("community_id"), c.as_bytes(), hole::COMMUNITY_ID);
    }
    w.field_plain(k!("direction"), view.direction.as_str().as_bytes());
    w.key(k!("iana_number"));
    w.u64_str(key.protocol.into());
    w.hole_u64(
        k!("packets"),
        f.forward.packets + f.reverse.packets,
        hole::NETWORK_PACKETS,
    );
    w.field_plain(
        k!("transport"),
        flowscribe_model::protocol_name(key.protocol).as_bytes(),
    );
    w.members(if key.src_addr.is_ipv4() {
        frag!(r#""type":"ipv4""#)
    } else {
        frag!(r#""type":"ipv6""#)
    });
    w.end_object();

    parts.observer(w, ctx, f.interface.ifindex, &f.interface.name);

    w.key(k!("orchestrator"));
    w.begin_object();
    if let Some(c) = &ctx.cluster {
        w.key(k!("cluster"));
        w.begin_object();
        w.field_str(k!("name"), c);
        w.end_object();
    }
    if let Some((e, p)) = local_pod {
        parts.orchestrator_pod(w, e, p);
    }
    w.members(frag!(r#""type":"kubernetes""#));
    w.end_object();

    w.key(k!("related"));
    w.begin_object();
    w.key(k!("ip"));
    w.begin_array();
    w.plain_str(view.src_text.as_bytes());
    if key.dst_addr != key.src_addr {
        w.plain_str(view.dst_text.as_bytes());
    }
    w.end_array();
    w.end_object();

    if let Some(d) = &view.decision {
        w.key(k!("rule"));
        w.begin_object();
        w.field_plain(k!("category"), d.side.direction.as_str().as_bytes());
        if let Some(h) = d.hit {
            parts.rule_head(w, d, h);
        }
        w.key(k!("name"));
        w.str_with(|s| {
            let _ = write_rule_name(s, d);
        });
        if let Some(h) = d.hit {
            parts.rule_tail(w, h);
        }
        w.end_object();
    }

    side(
        w,
        k!("source"),
        &view.src_text,
        key.src_port,
        &f.forward,
        ports,
        (
            hole::SOURCE_BYTES,
            hole::SOURCE_PACKETS,
            Some(hole::SOURCE_PORT),
        ),
    );
    w.end_object();
}

/// The ECS document of one flow record as a `Value` (for tests and
/// callers that edit the document; the encode path is
/// [`write_flow_document`]). It is parsed from the written line, so the two
/// cannot disagree.
pub fn flow_document(ctx: &Context, flow: &ExplainedFlow, observed: SystemTime) -> Value {
    let mut line = Vec::with_capacity(4096);
    write_flow_document(ctx, flow, observed, &mut line);
    // The writer emits valid JSON by construction (the golden tests parse
    // every case); `Null` keeps this total without a panic path.
    serde_json::from_slice(&line).unwrap_or(Value::Null)
}

/// `event.*`.
fn event(w: &mut JsonWriter<'_>, view: &FlowView<'_>, times: &Times) {
    let f = &view.flow.flow.flow;
    w.key(k!("event"));
    w.begin_object();
    w.members(match view.verdict {
        Some(Verdict::Allow) => frag!(r#""action":"network-policy-allow","category":["network"]"#),
        Some(Verdict::Deny) => frag!(r#""action":"network-policy-deny","category":["network"]"#),
        None => frag!(r#""action":"network-flow","category":["network"]"#),
    });
    w.hole_plain(k!("created"), &times.observed, hole::OBSERVED);
    w.members(frag!(r#""dataset":"flowscribe.flow""#));
    w.hole_u64(
        k!("duration"),
        duration_nanos(f.window_start, f.window_end),
        hole::DURATION,
    );
    w.hole_plain(k!("end"), &times.window_end, hole::WINDOW_END);
    w.hole_plain(k!("id"), view.event_id.as_bytes(), hole::EVENT_ID);
    w.members(match view.verdict {
        Some(Verdict::Allow) => {
            frag!(r#""kind":"event","module":"flowscribe","outcome":"success","provider":"flowscribe""#)
        }
        Some(Verdict::Deny) => {
            frag!(r#""kind":"event","module":"flowscribe","outcome":"failure","provider":"flowscribe""#)
        }
        None => {
            frag!(r#""kind":"event","module":"flowscribe","outcome":"unknown","provider":"flowscribe""#)
        }
    });
    if let Some(d) = &view.decision {
        w.field_plain(k!("reason"), d.side.reason.as_str().as_bytes());
    }
    w.members(match view.severity {
        crate::view::Severity::Info => frag!(r#""severity":9"#),
        crate::view::Severity::Warn => frag!(r#""severity":13"#),
    });
    w.hole_plain(k!("start"), &times.window_start, hole::WINDOW_START);
    w.members(match view.verdict {
        Some(Verdict::Allow) => frag!(r#""type":["connection","allowed""#),
        Some(Verdict::Deny) => frag!(r#""type":["connection","denied""#),
        None => frag!(r#""type":["connection""#),
    });
    w.raw(match f.state {
        FlowState::Started => frag!(r#","start"]"#),
        FlowState::Completed | FlowState::OneSided => frag!(r#","end"]"#),
        FlowState::Live => frag!("]"),
    });
    w.end_object();
}

/// `source.*` or `destination.*`; the port is a hole of the source's
/// (connections between the same peers differ there).
fn side(
    w: &mut JsonWriter<'_>,
    name: Key,
    addr: &AddrText,
    port: u16,
    c: &DirectionCounters,
    ports: bool,
    (bytes_hole, packets_hole, port_hole): (
        crate::template::Hole,
        crate::template::Hole,
        Option<crate::template::Hole>,
    ),
) {
    w.key(name);
    w.begin_object();
    w.field_plain(k!("address"), addr.as_bytes());
    w.hole_u64(k!("bytes"), c.bytes, bytes_hole);
    w.field_plain(k!("ip"), addr.as_bytes());
    w.hole_u64(k!("packets"), c.packets, packets_hole);
    if ports {
        match port_hole {
            Some(h) => w.hole_u64(k!("port"), port.into(), h),
            None => w.field_u64(k!("port"), port.into()),
        }
    }
    w.end_object();
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

/// The Beats workload field of a pod: (field name, its key), name.
type BeatsWorkload<'a> = Option<((&'static str, Key), &'a str)>;

fn beats_workload(p: &PodIdentity) -> BeatsWorkload<'_> {
    p.workload.as_ref().and_then(|wl| {
        // (name, pre-rendered key)
        let field = match &*wl.kind {
            "Deployment" => ("deployment", k!("deployment")),
            "ReplicaSet" => ("replicaset", k!("replicaset")),
            "StatefulSet" => ("statefulset", k!("statefulset")),
            "DaemonSet" => ("daemonset", k!("daemonset")),
            "Job" => ("job", k!("job")),
            "CronJob" => ("cronjob", k!("cronjob")),
            _ => return None,
        };
        Some((field, &*wl.name))
    })
}

fn beats_workload_field(w: &mut JsonWriter<'_>, workload: BeatsWorkload<'_>) {
    if let Some(((_, key), name)) = workload {
        w.key(key);
        w.begin_object();
        w.field_str(k!("name"), name);
        w.end_object();
    }
}

/// The Beats `add_kubernetes_metadata` fields of one pod, up to the value
/// of `kubernetes.pod.ip` (the record's address of the pod). Label keys
/// are de-dotted (`.` → `_`) as Beats does by default.
fn beats_kubernetes_head(w: &mut JsonWriter<'_>, p: &PodIdentity) {
    // The workload's field sorts before `labels` or after `pod`.
    let workload = beats_workload(p);
    w.begin_object();
    if workload.is_some_and(|((field, _), _)| field < "labels") {
        beats_workload_field(w, workload);
    }
    if !p.labels.is_empty() {
        w.key(k!("labels"));
        dedotted_labels(w, &p.labels);
    }
    w.field_str(k!("namespace"), &p.namespace);
    if let Some(n) = &p.node {
        w.key(k!("node"));
        w.begin_object();
        w.field_str(k!("name"), n);
        w.end_object();
    }
    w.key(k!("pod"));
    w.begin_object();
    w.key(k!("ip"));
}

/// The Beats fields after `kubernetes.pod.ip`.
fn beats_kubernetes_tail(w: &mut JsonWriter<'_>, p: &PodIdentity) {
    let workload = beats_workload(p);
    w.field_str(k!("name"), &p.name);
    w.field_str(k!("uid"), &p.uid);
    w.end_object();
    if workload.is_some_and(|((field, _), _)| field > "pod") {
        beats_workload_field(w, workload);
    }
    w.end_object();
}

/// A label key's bytes with `.` as `_`.
fn dedot(k: &str) -> impl Iterator<Item = u8> + '_ {
    k.bytes().map(|b| if b == b'.' { b'_' } else { b })
}

/// Labels with `.` in keys written as `_`, sorted by the de-dotted key; when
/// two keys de-dot alike the later one (in the original order) wins, as
/// when they are collected into a map.
fn dedotted_labels(w: &mut JsonWriter<'_>, labels: &BTreeMap<String, String>) {
    // `.` sorts before `_`, so de-dotting can reorder keys; the common case
    // (still strictly ascending) needs no sort and no allocation.
    let ascending = labels
        .keys()
        .zip(labels.keys().skip(1))
        .all(|(a, b)| dedot(a).lt(dedot(b)));
    w.begin_object();
    if ascending {
        for (k, v) in labels.iter() {
            w.key_dedotted(k);
            w.str(v);
        }
    } else {
        let mut sorted: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        // Stable: among keys that de-dot alike the original order stays,
        // and the last of each run is the one kept.
        sorted.sort_by(|a, b| dedot(a.0).cmp(dedot(b.0)));
        for (i, (k, v)) in sorted.iter().enumerate() {
            if sorted
                .get(i + 1)
                .is_some_and(|next| dedot(next.0).eq(dedot(k)))
            {
                continue;
            }
            w.key_dedotted(k);
            w.str(v);
        }
    }
    w.end_object();
}

/// `flowscribe.source.*` / `flowscribe.destination.*`.
fn endpoint(
    w: &mut JsonWriter<'_>,
    e: &Endpoint,
    deleted_at: Option<&[u8; 30]>,
    parts: &mut impl Parts,
) {
    w.begin_object();
    if let Some(s) = e.stale {
        w.field_plain(
            k!("deleted_at"),
            deleted_at.unwrap_or(&rfc3339_bytes(s.deleted_at)),
        );
    }
    parts.endpoint_members(w, e);
    w.end_object();
}

/// The members of an endpoint object after `deleted_at`.
fn endpoint_members(w: &mut JsonWriter<'_>, e: &Endpoint) {
    w.field_plain(k!("kind"), e.kind.as_str().as_bytes());
    if let Some(p) = &e.pod {
        if !p.labels.is_empty() {
            w.key(k!("labels"));
            w.begin_object();
            for (k, v) in p.labels.iter() {
                w.key_escaped(k);
                w.str(v);
            }
            w.end_object();
        }
        w.field_str(k!("namespace"), &p.namespace);
    }
    if let Some(n) = &e.network {
        w.field_str(k!("network"), n);
    }
    if let Some(n) = &e.node {
        w.field_str(k!("node"), n);
    }
    if let Some(p) = &e.pod {
        w.key(k!("pod"));
        w.begin_object();
        w.field_str(k!("name"), &p.name);
        w.field_str(k!("uid"), &p.uid);
        w.end_object();
    }
    if let Some(s) = &e.service {
        w.key(k!("service"));
        w.begin_object();
        w.field_str(k!("name"), &s.name);
        w.field_str(k!("namespace"), &s.namespace);
        if let Some(port) = &s.port_name {
            w.field_str(k!("port_name"), port);
        }
        w.end_object();
    }
    if let Some(sa) = e.pod.as_ref().and_then(|p| p.service_account.as_ref()) {
        w.field_str(k!("service_account"), sa);
    }
    if e.stale.is_some() {
        w.field_bool(k!("stale"), true);
    }
    if let Some(wl) = e.pod.as_ref().and_then(|p| p.workload.as_ref()) {
        w.key(k!("workload"));
        w.begin_object();
        w.field_str(k!("kind"), &wl.kind);
        w.field_str(k!("name"), &wl.name);
        w.end_object();
    }
}

/// The members of a hit from its policy, `api_version` to
/// `resource_version`.
fn hit_policy_head(w: &mut JsonWriter<'_>, p: &PolicyRef) {
    w.field_str(k!("api_version"), p.kind.api_version());
    w.field_plain(k!("kind"), p.kind.as_str().as_bytes());
    w.field_str(k!("name"), &p.name);
    if let Some(ns) = &p.namespace {
        w.field_str(k!("namespace"), ns);
    }
    w.field_str(k!("resource_version"), &p.resource_version);
}

/// The members of a hit from the hit itself.
fn hit_rule(w: &mut JsonWriter<'_>, h: &PolicyHit) {
    if let Some(i) = h.rule_index {
        w.field_u64(k!("rule_index"), i.into());
    }
    if let Some(n) = &h.rule_name {
        w.field_str(k!("rule_name"), n);
    }
}

/// The members of a hit from its policy after the rule.
fn hit_policy_tail(w: &mut JsonWriter<'_>, p: &PolicyRef) {
    w.field_bool(k!("staged"), p.kind.is_staged());
    w.field_str(k!("tier"), &p.tier);
    w.field_str(k!("uid"), &p.uid);
}

fn side_verdict(w: &mut JsonWriter<'_>, name: Key, s: &SideVerdict, parts: &mut impl Parts) {
    w.key(name);
    w.begin_object();
    w.key(k!("hits"));
    w.begin_array();
    for h in s.hits.iter() {
        parts.hit(w, h);
    }
    w.end_array();
    w.field_plain(k!("reason"), s.reason.as_str().as_bytes());
    w.field_plain(k!("verdict"), s.verdict.as_str().as_bytes());
    w.end_object();
}

/// `flowscribe.*`: everything ECS has no field for. Shared with OCSF's
/// `unmapped.flowscribe` through [`flowscribe_namespace_value`].
fn flowscribe_namespace(
    w: &mut JsonWriter<'_>,
    view: &FlowView<'_>,
    times: &Times,
    parts: &mut impl Parts,
) {
    let ef = &view.flow.flow;
    let f = &ef.flow;
    w.begin_object();
    w.key(k!("destination"));
    endpoint(
        w,
        &ef.destination,
        times.destination_deleted_at.as_ref(),
        parts,
    );

    w.key(k!("flow"));
    w.begin_object();
    if let Some(d) = &f.drops {
        w.key(k!("drops"));
        w.begin_object();
        w.field_u64(k!("bytes"), d.bytes);
        w.field_str(k!("last_reason"), &d.last_reason);
        w.field_u64(k!("packets_forward"), d.packets_forward);
        w.field_u64(k!("packets_reverse"), d.packets_reverse);
        w.end_object();
    }
    if let Some(e) = f.end_reason {
        w.field_plain(k!("end_reason"), e.as_str().as_bytes());
    }
    w.hole_plain(k!("first_packet"), &times.first_packet, hole::FIRST_PACKET);
    if is_icmp(f.key.protocol) {
        w.key(k!("icmp"));
        w.begin_object();
        w.field_u64(k!("code"), f.key.dst_port.into());
        w.field_u64(k!("type"), f.key.src_port.into());
        w.end_object();
    }
    w.field_plain(k!("initiator_hook"), f.initiator_hook.as_str().as_bytes());
    w.key(k!("interfaces"));
    w.begin_array();
    for i in &f.interfaces {
        w.str(&i.name);
    }
    w.end_array();
    w.hole_plain(k!("last_packet"), &times.last_packet, hole::LAST_PACKET);
    w.field_plain(k!("orientation"), f.orientation.as_str().as_bytes());
    w.field_plain(k!("state"), f.state.as_str().as_bytes());
    if f.key.protocol == 6 {
        w.key(k!("tcp_flags"));
        w.begin_object();
        for (name, flags) in [
            (k!("forward"), f.forward.tcp_flags),
            (k!("reverse"), f.reverse.tcp_flags),
        ] {
            w.key(name);
            w.begin_array();
            for flag in tcp_flag_iter(flags) {
                w.plain_str(flag.as_bytes());
            }
            w.end_array();
        }
        w.end_object();
    }
    w.end_object();

    w.field_bool(k!("identity_degraded"), ef.identity_degraded);

    if let Some(t) = &view.flow.trace {
        w.key(k!("policy"));
        w.begin_object();
        if let Some(d) = &view.decision {
            w.field_plain(k!("direction"), d.side.direction.as_str().as_bytes());
        }
        side_verdict(w, k!("egress"), &t.enforced.egress, parts);
        side_verdict(w, k!("ingress"), &t.enforced.ingress, parts);
        if !t.invalid_policies.is_empty() {
            w.key(k!("invalid_policies"));
            w.begin_array();
            for p in &t.invalid_policies {
                w.str_with(|s| {
                    let _ = (|| {
                        s.write_str(p.kind.as_str())?;
                        s.write_char(' ')?;
                        write_policy_display(s, p)
                    })();
                });
            }
            w.end_array();
        }
        if let Some(m) = t.mismatch {
            w.field_plain(k!("mismatch"), m.as_str().as_bytes());
        }
        w.field_plain(k!("observed"), observed_str(&t.observed).as_bytes());
        if let Observed::Dropped { reason } = &t.observed {
            w.field_str(k!("observed_drop_reason"), reason);
        }
        if let Some(p) = &t.pending {
            w.key(k!("pending"));
            evaluation(w, p, t.would_change(), parts);
        }
        if let Some(d) = &view.decision {
            w.field_plain(k!("reason"), d.side.reason.as_str().as_bytes());
        }
        w.field_plain(k!("verdict"), t.enforced.verdict.as_str().as_bytes());
        w.field_plain(k!("verdict_source"), t.verdict_source.as_str().as_bytes());
        w.end_object();
    }

    w.key(k!("source"));
    endpoint(w, &ef.source, times.source_deleted_at.as_ref(), parts);
    w.end_object();
}

fn evaluation(w: &mut JsonWriter<'_>, e: &Evaluation, would_change: bool, parts: &mut impl Parts) {
    w.begin_object();
    side_verdict(w, k!("egress"), &e.egress, parts);
    side_verdict(w, k!("ingress"), &e.ingress, parts);
    w.field_plain(k!("verdict"), e.verdict.as_str().as_bytes());
    w.field_bool(k!("would_change"), would_change);
    w.end_object();
}

/// The `flowscribe.*` object as a `Value`, for OCSF (`unmapped.flowscribe`),
/// which still builds a `Value` document.
pub(crate) fn flowscribe_namespace_value(view: &FlowView<'_>) -> Value {
    let mut buf = Vec::with_capacity(2048);
    // Escaping writer: there is no second pass here.
    let times = Times::new(
        &view.flow.flow,
        std::time::UNIX_EPOCH,
        &mut TimeFormatter::default(),
    );
    flowscribe_namespace(
        &mut JsonWriter::escaping(&mut buf),
        view,
        &times,
        &mut Direct,
    );
    // Valid JSON by construction (see `flow_document`).
    serde_json::from_slice(&buf).unwrap_or(Value::Null)
}

/// Every field the ECS document can carry.
pub const MAPPING: &[FieldMapping] = &[
    row(
        "flow.window_end",
        "@timestamp",
        "date",
        "2026-11-21T04:30:10.000000000Z",
        "End of the aggregation window.",
    ),
    row(
        "(constant)",
        "ecs.version",
        "keyword",
        "9.4.0",
        "ECS release the document follows.",
    ),
    row(
        "(summary)",
        "message",
        "match_only_text",
        "shop/web-1 → db/pg-0:5432/TCP denied: isolated-no-match (ingress, ns db)",
        "One-line human summary.",
    ),
    row(
        "(constant)",
        "event.kind",
        "keyword",
        "event",
        "Always `event`.",
    ),
    row(
        "(constant)",
        "event.category",
        "keyword[]",
        "[\"network\"]",
        "Always `[\"network\"]`.",
    ),
    row(
        "trace.enforced.verdict, flow.state",
        "event.type",
        "keyword[]",
        "[\"connection\",\"denied\",\"end\"]",
        "`connection`, then `allowed`/`denied` when explained, then `start` (first record) or `end` (final record).",
    ),
    row(
        "trace.enforced.verdict",
        "event.action",
        "keyword",
        "network-policy-deny",
        "`network-policy-allow`, `network-policy-deny`, or `network-flow` without a trace.",
    ),
    row(
        "trace.enforced.verdict",
        "event.outcome",
        "keyword",
        "failure",
        "`success` allowed, `failure` denied, `unknown` without a trace.",
    ),
    row(
        "trace.enforced (deciding side).reason",
        "event.reason",
        "keyword",
        "isolated-no-match",
        "Reason code of the enforced verdict.",
    ),
    row(
        "flow.window_start",
        "event.start",
        "date",
        "2026-11-21T04:30:00.000000000Z",
        "Start of the aggregation window.",
    ),
    row(
        "flow.window_end",
        "event.end",
        "date",
        "2026-11-21T04:30:10.000000000Z",
        "End of the aggregation window.",
    ),
    row(
        "window_end - window_start",
        "event.duration",
        "long",
        "10000000000",
        "Window length in nanoseconds.",
    ),
    row(
        "observed time (parameter)",
        "event.created",
        "date",
        "2026-11-21T04:30:10.200000000Z",
        "When flowscribe wrote the record.",
    ),
    row(
        "(constant)",
        "event.dataset",
        "keyword",
        "flowscribe.flow",
        "Dataset of flow records.",
    ),
    row("(constant)", "event.module", "keyword", "flowscribe", ""),
    row("(constant)", "event.provider", "keyword", "flowscribe", ""),
    row(
        "event_id(node, key, window)",
        "event.id",
        "keyword",
        "3f0c…(32 hex)",
        "Deterministic id for deduplication of replays.",
    ),
    row(
        "severity",
        "event.severity",
        "long",
        "13",
        "OTel severity number: 9 INFO (allowed), 13 WARN (denied or mismatch).",
    ),
    row("key.src_addr", "source.ip", "ip", "10.0.1.5", ""),
    row("key.src_addr", "source.address", "keyword", "10.0.1.5", ""),
    row(
        "key.src_port",
        "source.port",
        "long",
        "51320",
        "Absent for protocols without ports (ICMP).",
    ),
    row(
        "forward.bytes",
        "source.bytes",
        "long",
        "180",
        "Bytes initiator → responder in the window.",
    ),
    row(
        "forward.packets",
        "source.packets",
        "long",
        "3",
        "Packets initiator → responder in the window.",
    ),
    row("key.dst_addr", "destination.ip", "ip", "10.0.2.7", ""),
    row(
        "key.dst_addr",
        "destination.address",
        "keyword",
        "10.0.2.7",
        "",
    ),
    row(
        "key.dst_port",
        "destination.port",
        "long",
        "5432",
        "Absent for protocols without ports (ICMP).",
    ),
    row(
        "reverse.bytes",
        "destination.bytes",
        "long",
        "0",
        "Bytes responder → initiator in the window.",
    ),
    row(
        "reverse.packets",
        "destination.packets",
        "long",
        "0",
        "Packets responder → initiator in the window.",
    ),
    row(
        "key.protocol",
        "network.transport",
        "keyword",
        "tcp",
        "IANA keyword: tcp, udp, sctp, icmp, ipv6-icmp.",
    ),
    row("key family", "network.type", "keyword", "ipv4", ""),
    row(
        "key.protocol",
        "network.iana_number",
        "keyword",
        "6",
        "IANA protocol number as a string.",
    ),
    row(
        "endpoints' nodes",
        "network.direction",
        "keyword",
        "ingress",
        "Relative to this node: `ingress` (destination here), `egress` (source here), `internal` (both), `unknown`.",
    ),
    row(
        "community_id_v1(key, seed)",
        "network.community_id",
        "keyword",
        "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
        "Community ID v1.",
    ),
    row(
        "forward + reverse bytes",
        "network.bytes",
        "long",
        "180",
        "",
    ),
    row(
        "forward + reverse packets",
        "network.packets",
        "long",
        "3",
        "",
    ),
    row(
        "deciding rule",
        "rule.name",
        "keyword",
        "allow-web",
        "Rule name, else `<direction>[<index>]`, else the verdict reason (policy selected, no rule matched).",
    ),
    row(
        "deciding side.direction",
        "rule.category",
        "keyword",
        "ingress",
        "The side whose verdict is the overall one.",
    ),
    row(
        "deciding policy",
        "rule.ruleset",
        "keyword",
        "db/default-deny",
        "`namespace/name` (cluster-scoped: `name`).",
    ),
    row("deciding policy.uid", "rule.uuid", "keyword", "0d9e…", ""),
    row(
        "deciding policy.uid + rule",
        "rule.id",
        "keyword",
        "0d9e…/ingress/0",
        "`<policy uid>/<direction>/<index|default>`.",
    ),
    row(
        "deciding policy.resource_version",
        "rule.version",
        "keyword",
        "12345",
        "",
    ),
    row(
        "deciding policy",
        "rule.description",
        "keyword",
        "networking.k8s.io/v1 NetworkPolicy (db/default-deny), tier default, action deny",
        "",
    ),
    row(
        "(constant)",
        "orchestrator.type",
        "keyword",
        "kubernetes",
        "",
    ),
    row(
        "context.cluster",
        "orchestrator.cluster.name",
        "keyword",
        "prod-eu-1",
        "When configured.",
    ),
    row(
        "local pod.namespace",
        "orchestrator.namespace",
        "keyword",
        "shop",
        "The pod on this node (see notes).",
    ),
    row(
        "(constant)",
        "orchestrator.resource.type",
        "keyword",
        "pod",
        "",
    ),
    row(
        "local pod.name",
        "orchestrator.resource.name",
        "keyword",
        "web-7c9d",
        "",
    ),
    row(
        "local pod.uid",
        "orchestrator.resource.id",
        "keyword",
        "6a1f…",
        "",
    ),
    row(
        "local pod.workload.kind",
        "orchestrator.resource.parent.type",
        "keyword",
        "Deployment",
        "",
    ),
    row(
        "local pod.namespace",
        "kubernetes.namespace",
        "keyword",
        "shop",
        "Beats field.",
    ),
    row(
        "local pod.name",
        "kubernetes.pod.name",
        "keyword",
        "web-7c9d",
        "Beats field.",
    ),
    row(
        "local pod.uid",
        "kubernetes.pod.uid",
        "keyword",
        "6a1f…",
        "Beats field.",
    ),
    row(
        "local pod address",
        "kubernetes.pod.ip",
        "ip",
        "10.0.1.5",
        "Beats field.",
    ),
    row(
        "local pod.node",
        "kubernetes.node.name",
        "keyword",
        "node-1",
        "Beats field.",
    ),
    row(
        "local pod.labels",
        "kubernetes.labels.*",
        "keyword",
        "app_kubernetes_io/name: web",
        "Beats field; dots in keys become `_`.",
    ),
    row(
        "local pod.workload (Deployment)",
        "kubernetes.deployment.name",
        "keyword",
        "web",
        "Beats field; likewise `replicaset`, `statefulset`, `daemonset`, `job`, `cronjob`.",
    ),
    row(
        "local pod.workload (ReplicaSet)",
        "kubernetes.replicaset.name",
        "keyword",
        "web-7c9d",
        "Beats field.",
    ),
    row(
        "local pod.workload (StatefulSet)",
        "kubernetes.statefulset.name",
        "keyword",
        "pg",
        "Beats field.",
    ),
    row(
        "local pod.workload (DaemonSet)",
        "kubernetes.daemonset.name",
        "keyword",
        "agent",
        "Beats field.",
    ),
    row(
        "local pod.workload (Job)",
        "kubernetes.job.name",
        "keyword",
        "backup-1",
        "Beats field.",
    ),
    row(
        "local pod.workload (CronJob)",
        "kubernetes.cronjob.name",
        "keyword",
        "backup",
        "Beats field.",
    ),
    row(
        "context.node",
        "host.name",
        "keyword",
        "node-1",
        "The node that wrote the record.",
    ),
    row("context.node", "host.hostname", "keyword", "node-1", ""),
    row("(constant)", "observer.type", "keyword", "sensor", ""),
    row("(constant)", "observer.vendor", "keyword", "flowscribe", ""),
    row(
        "(constant)",
        "observer.product",
        "keyword",
        "flowscribe",
        "",
    ),
    row(
        "context.service_version",
        "observer.version",
        "keyword",
        "0.1.0",
        "",
    ),
    row("context.node", "observer.hostname", "keyword", "node-1", ""),
    row("context.node", "observer.name", "keyword", "node-1", ""),
    row(
        "flow.interface.name",
        "observer.ingress.interface.name",
        "keyword",
        "veth1a2b",
        "Interface whose counters the record carries.",
    ),
    row(
        "flow.interface.ifindex",
        "observer.ingress.interface.id",
        "keyword",
        "7",
        "",
    ),
    row(
        "key addresses",
        "related.ip",
        "ip[]",
        "[\"10.0.1.5\",\"10.0.2.7\"]",
        "",
    ),
    row(
        "flow.state",
        "flowscribe.flow.state",
        "keyword",
        "completed",
        "started, live, completed, one-sided.",
    ),
    row(
        "flow.end_reason",
        "flowscribe.flow.end_reason",
        "keyword",
        "tcp-fin",
        "Final records only.",
    ),
    row(
        "flow.orientation",
        "flowscribe.flow.orientation",
        "keyword",
        "syn",
        "How the initiator was decided.",
    ),
    row(
        "flow.initiator_hook",
        "flowscribe.flow.initiator_hook",
        "keyword",
        "ingress",
        "",
    ),
    row(
        "flow.interfaces",
        "flowscribe.flow.interfaces",
        "keyword[]",
        "[\"veth1a2b\"]",
        "",
    ),
    row(
        "flow.first_packet",
        "flowscribe.flow.first_packet",
        "date",
        "2026-11-21T04:29:59.900000000Z",
        "",
    ),
    row(
        "flow.last_packet",
        "flowscribe.flow.last_packet",
        "date",
        "2026-11-21T04:30:09.100000000Z",
        "",
    ),
    row(
        "forward.tcp_flags",
        "flowscribe.flow.tcp_flags.forward",
        "keyword[]",
        "[\"SYN\",\"ACK\"]",
        "TCP only.",
    ),
    row(
        "reverse.tcp_flags",
        "flowscribe.flow.tcp_flags.reverse",
        "keyword[]",
        "[\"SYN\",\"ACK\"]",
        "TCP only.",
    ),
    row(
        "key.src_port (ICMP)",
        "flowscribe.flow.icmp.type",
        "long",
        "8",
        "ICMP/ICMPv6 only.",
    ),
    row(
        "key.dst_port (ICMP)",
        "flowscribe.flow.icmp.code",
        "long",
        "0",
        "ICMP/ICMPv6 only.",
    ),
    row(
        "flow.drops.packets_forward",
        "flowscribe.flow.drops.packets_forward",
        "long",
        "1",
        "Kernel drops in the window.",
    ),
    row(
        "flow.drops.packets_reverse",
        "flowscribe.flow.drops.packets_reverse",
        "long",
        "0",
        "",
    ),
    row(
        "flow.drops.bytes",
        "flowscribe.flow.drops.bytes",
        "long",
        "60",
        "",
    ),
    row(
        "flow.drops.last_reason",
        "flowscribe.flow.drops.last_reason",
        "keyword",
        "NETFILTER_DROP",
        "Kernel drop reason name.",
    ),
    row(
        "source.kind",
        "flowscribe.source.kind",
        "keyword",
        "pod",
        "pod, host-network-pod, node, service, private-network, public-network, cloud-metadata, link-local, loopback, multicast, unknown. Same fields under `flowscribe.destination.*`.",
    ),
    row(
        "source.pod.namespace",
        "flowscribe.source.namespace",
        "keyword",
        "shop",
        "",
    ),
    row(
        "source.pod.name",
        "flowscribe.source.pod.name",
        "keyword",
        "web-7c9d",
        "",
    ),
    row(
        "source.pod.uid",
        "flowscribe.source.pod.uid",
        "keyword",
        "6a1f…",
        "",
    ),
    row(
        "source.pod.labels",
        "flowscribe.source.labels.*",
        "keyword",
        "app: web",
        "Label keys as in Kubernetes.",
    ),
    row(
        "source.pod.service_account",
        "flowscribe.source.service_account",
        "keyword",
        "web",
        "",
    ),
    row(
        "source.pod.workload",
        "flowscribe.source.workload.kind",
        "keyword",
        "Deployment",
        "",
    ),
    row(
        "source.pod.workload",
        "flowscribe.source.workload.name",
        "keyword",
        "web",
        "",
    ),
    row(
        "source.node",
        "flowscribe.source.node",
        "keyword",
        "node-1",
        "",
    ),
    row(
        "source.service",
        "flowscribe.source.service.namespace",
        "keyword",
        "shop",
        "ClusterIP services.",
    ),
    row(
        "source.service",
        "flowscribe.source.service.name",
        "keyword",
        "web",
        "",
    ),
    row(
        "source.service.port_name",
        "flowscribe.source.service.port_name",
        "keyword",
        "http",
        "",
    ),
    row(
        "source.network",
        "flowscribe.source.network",
        "keyword",
        "corp-vpn",
        "Configured named network.",
    ),
    row(
        "source.stale",
        "flowscribe.source.stale",
        "boolean",
        "true",
        "The address belonged to a deleted object.",
    ),
    row(
        "source.stale.deleted_at",
        "flowscribe.source.deleted_at",
        "date",
        "2026-11-21T04:29:00.000000000Z",
        "",
    ),
    row(
        "destination.*",
        "flowscribe.destination.*",
        "object",
        "",
        "As `flowscribe.source.*`.",
    ),
    row(
        "identity_degraded",
        "flowscribe.identity_degraded",
        "boolean",
        "false",
        "Identity sources were incomplete.",
    ),
    row(
        "trace.enforced.verdict",
        "flowscribe.policy.verdict",
        "keyword",
        "deny",
        "",
    ),
    row(
        "deciding side.reason",
        "flowscribe.policy.reason",
        "keyword",
        "isolated-no-match",
        "",
    ),
    row(
        "deciding side.direction",
        "flowscribe.policy.direction",
        "keyword",
        "ingress",
        "",
    ),
    row(
        "trace.verdict_source",
        "flowscribe.policy.verdict_source",
        "keyword",
        "evaluated",
        "evaluated, cni, observed.",
    ),
    row(
        "trace.observed",
        "flowscribe.policy.observed",
        "keyword",
        "dropped",
        "delivered, dropped, unknown.",
    ),
    row(
        "trace.observed (Dropped).reason",
        "flowscribe.policy.observed_drop_reason",
        "keyword",
        "NETFILTER_DROP",
        "",
    ),
    row(
        "trace.mismatch",
        "flowscribe.policy.mismatch",
        "keyword",
        "policy-not-enforced",
        "",
    ),
    row(
        "trace.enforced.egress",
        "flowscribe.policy.egress.verdict",
        "keyword",
        "allow",
        "Likewise `.reason` and `.hits[]`; same under `ingress`.",
    ),
    row(
        "trace.enforced.egress.reason",
        "flowscribe.policy.egress.reason",
        "keyword",
        "not-isolated-default-allow",
        "",
    ),
    row(
        "trace.enforced.egress.hits",
        "flowscribe.policy.egress.hits[]",
        "object[]",
        "",
        "tier, kind, api_version, namespace, name, uid, resource_version, rule_index, rule_name, action, staged.",
    ),
    row(
        "trace.enforced.ingress",
        "flowscribe.policy.ingress.*",
        "object",
        "",
        "As egress.",
    ),
    row(
        "trace.pending",
        "flowscribe.policy.pending.*",
        "object",
        "",
        "Staged policies applied as if enforced: verdict, egress, ingress.",
    ),
    row(
        "trace.would_change()",
        "flowscribe.policy.pending.would_change",
        "boolean",
        "true",
        "",
    ),
    row(
        "trace.invalid_policies",
        "flowscribe.policy.invalid_policies",
        "keyword[]",
        "[\"NetworkPolicy db/broken\"]",
        "",
    ),
    // Capture loss records (`loss_document`).
    row(
        "loss record",
        "event.dataset",
        "keyword",
        "flowscribe.loss",
        "Capture loss records: `event.kind` `metric`, `event.type` `[\"error\"]`, `event.action` `capture-loss`, `event.outcome` `failure`, `event.severity` 13, `event.reason` the loss reason; `@timestamp`/`event.start`/`event.end` the loss window; no flow fields.",
    ),
    row(
        "(constant)",
        "flowscribe.loss.stage",
        "keyword",
        "capture",
        "Where the data was lost.",
    ),
    row(
        "loss.reason",
        "flowscribe.loss.reason",
        "keyword",
        "flow_map_full",
        "flow_map_full, flow_map_update_failed, ring_reserve_failed, parse_truncated, drop_map_full, drop_unmatched.",
    ),
    row(
        "loss.reason.loses_flow_data()",
        "flowscribe.loss.loses_flow_data",
        "boolean",
        "true",
        "Packets or bytes are missing from flow records (not only an annotation).",
    ),
    row(
        "loss.count",
        "flowscribe.loss.count",
        "long",
        "7",
        "Packets lost (new-flow events for ring_reserve_failed).",
    ),
    row(
        "loss.bytes",
        "flowscribe.loss.bytes",
        "long",
        "4200",
        "Bytes lost, where the kernel knows them.",
    ),
];

#[cfg(test)]
mod reference;

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use flowscribe_model::{CaptureLoss, LossReason};

    /// Clean golden flows take one pass: the writer counts every quote it
    /// writes, so the escaping pass runs only for text that needs it (an
    /// undercount would silently double the work of every record).
    #[test]
    fn clean_records_take_one_pass() {
        use crate::json::JsonWriter;
        use crate::test_flows::{fixtures, variations};
        let observed = fixtures::observed();
        let clean = |s: &str| !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\');
        let mut one_pass = 0;
        for (ctx, flow) in variations() {
            let view = crate::view::FlowView::new(&ctx, &flow);
            let times =
                super::Times::new(&flow.flow, observed, &mut super::TimeFormatter::default());
            let mut out = Vec::new();
            let mut w = JsonWriter::new(&mut out);
            super::document(&mut w, &ctx, &view, &times, &mut super::Direct);
            let needed = w.needed_escaping();
            let text_is_clean = clean(&ctx.node) && {
                let doc = super::flow_document(&ctx, &flow, observed).to_string();
                // Only structure is escaped in a clean document's text.
                !doc.contains("\\")
            };
            assert_eq!(needed, !text_is_clean, "{}", ctx.node);
            one_pass += usize::from(!needed);
        }
        assert!(one_pass >= fixtures::CASES.len() * 2, "{one_pass}");
    }

    #[test]
    fn pre_rendered_version_is_the_pinned_one() {
        let want = serde_json::json!({"ecs": {"version": crate::ecs_fields::ECS_VERSION}});
        assert_eq!(
            format!("{{{}}}", super::ECS_VERSION_MEMBER.text()),
            want.to_string()
        );
    }

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
