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

use std::fmt::{self, Write as _};
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64_STANDARD;

use flowscribe_model::{
    CaptureLoss, Endpoint, EndpointKind, ExplainedFlow, LossReason, Observed, PolicyHit, PolicyRef,
    SideVerdict, Verdict,
};

use crate::Context;
use crate::community_id::community_id_v1_digest;
use crate::event_id::{EventId, event_id};

/// Short ASCII text held inline (ids, digests, addresses), so that a record
/// costs no heap allocation for them. Writing more than `N` bytes fails
/// (`fmt::Error`) and leaves what fitted.
#[derive(Debug, Clone, Copy)]
pub struct ShortText<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> ShortText<N> {
    pub fn new() -> Self {
        ShortText {
            bytes: [0; N],
            len: 0,
        }
    }

    pub fn as_str(&self) -> &str {
        // Only whole `&str`s are ever copied in, so this cannot fail.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Text made of exactly `N` ASCII bytes.
    pub(crate) fn from_ascii(bytes: [u8; N]) -> Self {
        debug_assert!(bytes.is_ascii());
        ShortText { bytes, len: N }
    }

    fn push_bytes(&mut self, b: &[u8]) -> fmt::Result {
        let end = self.len + b.len();
        let dst = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(b);
        self.len = end;
        Ok(())
    }
}

impl<const N: usize> Default for ShortText<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Write for ShortText<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push_bytes(s.as_bytes())
    }
}

/// An address as text, exactly as `IpAddr`'s `Display` writes it (the
/// longest form, an IPv4-mapped IPv6 address, has 45 characters).
pub type AddrText = ShortText<45>;

/// Two decimal digits of every value below 100, for writing integers two
/// digits at a time.
static DIGIT_PAIRS: [[u8; 2]; 100] = {
    let mut t = [[0u8; 2]; 100];
    let mut i = 0;
    while i < 100 {
        t[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    t
};

/// The two digits of `v % 100`.
#[inline]
fn pair(v: u64) -> [u8; 2] {
    DIGIT_PAIRS[(v % 100) as usize]
}

/// An unsigned integer in decimal, held inline: what `Display` writes,
/// without the formatting machinery.
#[derive(Debug, Clone, Copy)]
pub struct Decimal {
    bytes: [u8; 20],
    start: usize,
}

impl Decimal {
    #[inline]
    pub fn new(v: u64) -> Decimal {
        let mut bytes = [b'0'; 20];
        let start = bytes.len() - decimal_len(v);
        write_decimal(&mut bytes[start..], v);
        Decimal { bytes, start }
    }

    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[self.start..]
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits are ever written, so this cannot fail.
        std::str::from_utf8(self.as_bytes()).unwrap_or("0")
    }
}

/// Digits of `v` in decimal.
#[inline]
pub fn decimal_len(v: u64) -> usize {
    v.checked_ilog10().map_or(1, |l| l as usize + 1)
}

/// Writes `v` in decimal to `dst`, which is [`decimal_len`] bytes long.
/// Eight digits at a time: one 64-bit division per eight digits, the rest
/// in independent 32-bit steps (durations in nanoseconds have 10-19
/// digits).
#[inline]
pub fn write_decimal(dst: &mut [u8], v: u64) {
    let mut i = dst.len();
    let mut v = v;
    while v >= 100_000_000 && i >= 8 {
        let low = (v % 100_000_000) as u32;
        v /= 100_000_000;
        i -= 8;
        let (hi, lo) = (low / 10_000, low % 10_000);
        dst[i..i + 2].copy_from_slice(&pair(u64::from(hi / 100)));
        dst[i + 2..i + 4].copy_from_slice(&pair(u64::from(hi % 100)));
        dst[i + 4..i + 6].copy_from_slice(&pair(u64::from(lo / 100)));
        dst[i + 6..i + 8].copy_from_slice(&pair(u64::from(lo % 100)));
    }
    let mut v = v as u32;
    while v >= 100 && i >= 2 {
        i -= 2;
        dst[i..i + 2].copy_from_slice(&pair(u64::from(v % 100)));
        v /= 100;
    }
    if v >= 10 && i >= 2 {
        dst[i - 2..i].copy_from_slice(&pair(u64::from(v)));
    } else if i >= 1 {
        dst[i - 1] = b'0' + v as u8;
    }
}

/// `addr` as text. IPv4 is formatted by hand (it is most of the traffic and
/// `Display` goes through the formatting machinery); IPv6 uses `Display`
/// for its RFC 5952 compression rules.
pub fn addr_text(addr: IpAddr) -> AddrText {
    let mut t = AddrText::new();
    match addr {
        IpAddr::V4(a) => {
            for (i, o) in a.octets().into_iter().enumerate() {
                if i > 0 {
                    t.bytes[t.len] = b'.';
                    t.len += 1;
                }
                if o >= 100 {
                    t.bytes[t.len] = b'0' + o / 100;
                    t.len += 1;
                }
                if o >= 10 {
                    t.bytes[t.len] = b'0' + o / 10 % 10;
                    t.len += 1;
                }
                t.bytes[t.len] = b'0' + o % 10;
                t.len += 1;
            }
        }
        IpAddr::V6(a) => {
            // 45 bytes hold every form `Display` writes.
            let _ = write!(t, "{a}");
        }
    }
    t
}

/// What a capture loss report counts: lost new-flow events for
/// [`LossReason::RingReserveFailed`], lost packets otherwise.
pub fn loss_unit(reason: LossReason) -> &'static str {
    if reason == LossReason::RingReserveFailed {
        "events"
    } else {
        "packets"
    }
}

/// What a loss reason means, in one sentence (OCSF `status_detail`).
pub fn loss_description(reason: LossReason) -> &'static str {
    match reason {
        LossReason::FlowMapFull => {
            "the kernel flow map was full: packets of new flows were not counted"
        }
        LossReason::FlowMapUpdateFailed => {
            "updating the kernel flow map failed: packets were not counted"
        }
        LossReason::RingReserveFailed => {
            "the new-flow ring buffer was full: new-flow events were lost (the flows were still counted)"
        }
        LossReason::ParseTruncated => {
            "packet headers were shorter than they claim: counted, not attributed to a flow"
        }
        LossReason::DropMapFull => {
            "the kernel drop map was full: drops were not joined to their flow"
        }
        LossReason::DropUnmatched => {
            "kernel drops of connections never seen on a captured interface"
        }
    }
}

/// The one-line summary of a capture loss report for OCSF and CEF, e.g.
/// `capture lost 7 packets (4200 bytes) on node-1: flow_map_full`.
pub fn loss_summary(ctx: &Context, loss: &CaptureLoss) -> String {
    format!(
        "capture lost {} {} ({} bytes) on {}: {}",
        loss.count,
        loss_unit(loss.reason),
        loss.bytes,
        ctx.node,
        loss.reason.as_str()
    )
}

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
    /// The event id as 32 lowercase hex digits.
    pub event_id: ShortText<32>,
    /// `1:` and the base64 digest. `None` only for a key with mixed address
    /// families, which capture never produces.
    pub community_id: Option<ShortText<30>>,
    /// The key's source and destination addresses as text.
    pub src_text: AddrText,
    pub dst_text: AddrText,
    /// The enforced verdict; `None` when explain is off.
    pub verdict: Option<Verdict>,
    pub decision: Option<Decision<'a>>,
    /// The decision of the staged (pending) evaluation, when one exists.
    pub pending_decision: Option<Decision<'a>>,
    pub severity: Severity,
    pub direction: NodeDirection,
}

impl<'a> FlowView<'a> {
    /// The view with the event id hashed from the flow (tests and the
    /// reference writers).
    #[cfg(test)]
    pub fn new(ctx: &Context, flow: &'a ExplainedFlow) -> FlowView<'a> {
        Self::with_event_id(ctx, flow, None)
    }

    /// [`FlowView::new`] with the record's event id when the caller has
    /// already computed it (the daemon hashes it once for every format and
    /// sink); `None` computes it here.
    pub fn with_event_id(
        ctx: &Context,
        flow: &'a ExplainedFlow,
        id: Option<EventId>,
    ) -> FlowView<'a> {
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
        FlowView {
            flow,
            event_id: id
                .unwrap_or_else(|| event_id(&ctx.node, &f.key, f.window_start, f.window_end))
                .to_hex_text(),
            community_id: community_id_text(&f.key, ctx.community_id_seed),
            src_text: addr_text(f.key.src_addr),
            dst_text: addr_text(f.key.dst_addr),
            verdict,
            decision,
            pending_decision,
            severity,
            direction: node_direction(&ctx.node, &flow.flow.source, &flow.flow.destination),
        }
    }

    /// The one-line human summary, e.g.
    /// `x/a → y/b:80/TCP denied: isolated-no-match (ingress, ns y)`.
    pub fn summary(&self) -> String {
        let mut s = String::with_capacity(128);
        let _ = write_summary(&mut s, self);
        s
    }

    /// [`FlowView::summary`] written to `w` (the encoders write it straight
    /// into the record).
    pub fn write_summary(&self, w: &mut impl fmt::Write) -> fmt::Result {
        write_summary(w, self)
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

/// The Community ID v1 (`1:` and the padded base64 of the digest), as
/// [`crate::community_id::community_id_v1`] writes it, without allocating.
pub(crate) fn community_id_text(
    key: &flowscribe_model::FlowKey,
    seed: u16,
) -> Option<ShortText<30>> {
    let digest = community_id_v1_digest(key, seed).ok()?;
    let mut t = ShortText::<30>::new();
    t.bytes[..2].copy_from_slice(b"1:");
    // 20 bytes are 28 base64 characters with padding: exactly the rest.
    let n = BASE64_STANDARD
        .encode_slice(digest, &mut t.bytes[2..])
        .ok()?;
    t.len = 2 + n;
    Some(t)
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

/// The last time converted, and what it gave: the records of one batch
/// share times (a drain's window end, often its start, the observed
/// time), each converted once while it repeats.
#[derive(Debug)]
pub(crate) struct LastConverted<T>(Option<(SystemTime, T)>);

impl<T> Default for LastConverted<T> {
    fn default() -> Self {
        LastConverted(None)
    }
}

impl<T: Copy> LastConverted<T> {
    /// `convert(t)`, or what it gave last time when `t` is that time.
    #[inline]
    pub(crate) fn of(&mut self, t: SystemTime, convert: impl FnOnce(SystemTime) -> T) -> T {
        match self.0 {
            Some((at, v)) if at == t => v,
            _ => {
                let v = convert(t);
                self.0 = Some((t, v));
                v
            }
        }
    }
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
    let b = rfc3339_bytes(t);
    String::from_utf8_lossy(&b).into_owned()
}

/// RFC 3339, UTC, nanosecond precision, as 30 bytes
/// (`2026-11-21T04:30:10.000000000Z`): byte for byte what
/// `humantime::format_rfc3339_nanos` writes, without the formatting
/// machinery. humantime panics outside 1970..=9999; here times before the
/// epoch print as the epoch and times after 9999 as its last nanosecond.
pub fn rfc3339_bytes(t: SystemTime) -> [u8; 30] {
    Rfc3339Dates::default().format(t)
}

/// [`rfc3339_bytes`] for several times of one record: the date part
/// (the costly days-to-civil-date arithmetic) is kept for the last day
/// seen, which the window, the packets and the observed time almost always
/// share.
#[derive(Debug, Default)]
pub struct Rfc3339Dates {
    /// The day (since the epoch) of `date`, when one was computed.
    day: Option<u64>,
    /// `YYYY-MM-DD`.
    date: [u8; 10],
}

impl Rfc3339Dates {
    pub fn format(&mut self, t: SystemTime) -> [u8; 30] {
        let mut b = [0u8; 30];
        self.write(t, &mut b);
        b
    }

    /// [`Rfc3339Dates::format`] appended to `out`: the digits go straight
    /// into the output (assembled on the stack and copied out, they stall
    /// on store forwarding).
    #[inline]
    pub fn format_into(&mut self, t: SystemTime, out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + 30, b'0');
        if let Some(b) = out.get_mut(start..start + 30) {
            self.write(t, b);
        }
    }

    /// The 30 bytes of `t` into `b` (30 bytes long).
    #[inline]
    fn write(&mut self, t: SystemTime, b: &mut [u8]) {
        // 10000-01-01T00:00:00Z.
        const END_SECS: u64 = 253_402_300_800;
        let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
            Ok(d) if d.as_secs() < END_SECS => (d.as_secs(), d.subsec_nanos()),
            Ok(_) => (END_SECS - 1, 999_999_999),
            Err(_) => (0, 0),
        };
        let days = secs / 86_400;
        if self.day != Some(days) {
            self.date = civil_date(days);
            self.day = Some(days);
        }
        let secs_of_day = secs % 86_400;
        let (hour, minute, second) = (secs_of_day / 3600, secs_of_day / 60 % 60, secs_of_day % 60);

        b.copy_from_slice(b"0000-00-00T00:00:00.000000000Z");
        b[..10].copy_from_slice(&self.date);
        let put = |b: &mut [u8], at: usize, v: u64| b[at..at + 2].copy_from_slice(&pair(v));
        put(b, 11, hour);
        put(b, 14, minute);
        put(b, 17, second);
        // Nine digits of nanoseconds: one, then four pairs.
        let n = u64::from(nanos);
        b[20] = b'0' + (n / 100_000_000) as u8;
        put(b, 21, n / 1_000_000);
        put(b, 23, n / 10_000);
        put(b, 25, n / 100);
        put(b, 27, n);
    }
}

/// `YYYY-MM-DD` of a day since the epoch: Howard Hinnant's
/// `civil_from_days`, for days >= 0 and years up to 9999.
fn civil_date(days: u64) -> [u8; 10] {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    let mut b = *b"0000-00-00";
    b[0..2].copy_from_slice(&pair(year / 100));
    b[2..4].copy_from_slice(&pair(year));
    b[5..7].copy_from_slice(&pair(month));
    b[8..10].copy_from_slice(&pair(day));
    b
}

/// TCP flag names in header bit order.
pub fn tcp_flag_names(flags: u8) -> Vec<&'static str> {
    tcp_flag_iter(flags).collect()
}

/// [`tcp_flag_names`] without the `Vec`.
pub fn tcp_flag_iter(flags: u8) -> impl Iterator<Item = &'static str> {
    const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
    NAMES
        .into_iter()
        .enumerate()
        .filter(move |(i, _)| flags & (1 << i) != 0)
        .map(|(_, n)| n)
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
    let mut s = String::new();
    let _ = write_policy_display(&mut s, p);
    s
}

/// [`policy_display`] written to `w`.
pub fn write_policy_display(w: &mut impl fmt::Write, p: &PolicyRef) -> fmt::Result {
    if let Some(ns) = &p.namespace {
        w.write_str(ns)?;
        w.write_char('/')?;
    }
    w.write_str(&p.name)
}

/// The rule's name: its own name, else `<direction>[<index>]`, else (the
/// policy selected the endpoint but no rule matched) the verdict reason.
pub fn rule_name(d: &Decision<'_>) -> String {
    let mut s = String::new();
    let _ = write_rule_name(&mut s, d);
    s
}

/// [`rule_name`] written to `w`.
pub fn write_rule_name(w: &mut impl fmt::Write, d: &Decision<'_>) -> fmt::Result {
    match d.hit {
        Some(PolicyHit {
            rule_name: Some(n), ..
        }) => w.write_str(n),
        Some(PolicyHit {
            rule_index: Some(i),
            ..
        }) => {
            w.write_str(d.side.direction.as_str())?;
            w.write_char('[')?;
            w.write_str(Decimal::new((*i).into()).as_str())?;
            w.write_char(']')
        }
        _ => w.write_str(d.side.reason.as_str()),
    }
}

/// A stable id of the rule: `<policy uid>/<direction>/<index>`, or
/// `<policy uid>/<direction>/default` when no rule matched.
pub fn rule_id(d: &Decision<'_>) -> Option<String> {
    d.hit?;
    let mut s = String::new();
    let _ = write_rule_id(&mut s, d);
    Some(s)
}

/// [`rule_id`] written to `w`; writes nothing when there is no hit (check
/// `d.hit` first).
pub fn write_rule_id(w: &mut impl fmt::Write, d: &Decision<'_>) -> fmt::Result {
    let Some(hit) = d.hit else { return Ok(()) };
    w.write_str(&hit.policy.uid)?;
    w.write_char('/')?;
    w.write_str(d.side.direction.as_str())?;
    match hit.rule_index {
        Some(i) => {
            w.write_char('/')?;
            w.write_str(Decimal::new(i.into()).as_str())
        }
        None => w.write_str("/default"),
    }
}

/// How an endpoint is named in the summary line: `namespace/pod` for pods,
/// `namespace/service` for services, `node/<name>` for nodes, otherwise the
/// address (with the configured network name when one matched).
pub fn endpoint_label(e: &Endpoint, addr: IpAddr) -> String {
    let mut s = String::new();
    let _ = write_endpoint_label(&mut s, e, addr_text(addr).as_str());
    s
}

/// [`endpoint_label`] written to `w`, with the address already as text.
pub fn write_endpoint_label(w: &mut impl fmt::Write, e: &Endpoint, addr: &str) -> fmt::Result {
    if let Some(p) = &e.pod
        && matches!(e.kind, EndpointKind::Pod | EndpointKind::HostNetworkPod)
    {
        w.write_str(&p.namespace)?;
        w.write_char('/')?;
        return w.write_str(&p.name);
    }
    if let Some(s) = &e.service {
        w.write_str(&s.namespace)?;
        w.write_char('/')?;
        return w.write_str(&s.name);
    }
    if e.kind == EndpointKind::Node
        && let Some(n) = &e.node
    {
        w.write_str("node/")?;
        return w.write_str(n);
    }
    w.write_str(addr)?;
    if let Some(n) = &e.network {
        w.write_str(" (")?;
        w.write_str(n)?;
        w.write_char(')')?;
    }
    Ok(())
}

/// Upper-case name of a protocol for the summary line.
fn protocol_upper(protocol: u8) -> &'static str {
    match protocol {
        1 => "ICMP",
        6 => "TCP",
        17 => "UDP",
        58 => "IPV6-ICMP",
        132 => "SCTP",
        136 => "UDPLITE",
        _ => "OTHER",
    }
}

/// The one-line human summary (see [`FlowView::summary`]), written in
/// pieces: integers through [`Decimal`], never the formatting machinery.
fn write_summary(s: &mut impl fmt::Write, v: &FlowView<'_>) -> fmt::Result {
    let ef = &v.flow.flow;
    let key = &ef.flow.key;
    let proto = protocol_upper(key.protocol);
    let int = |v: u64| Decimal::new(v);
    write_endpoint_label(s, &ef.source, v.src_text.as_str())?;
    s.write_str(" → ")?;
    write_endpoint_label(s, &ef.destination, v.dst_text.as_str())?;
    if has_ports(key.protocol) {
        s.write_char(':')?;
        s.write_str(int(key.dst_port.into()).as_str())?;
        s.write_char('/')?;
        s.write_str(proto)?;
    } else if is_icmp(key.protocol) {
        s.write_char(' ')?;
        s.write_str(proto)?;
        s.write_str(" type ")?;
        s.write_str(int(key.src_port.into()).as_str())?;
        s.write_str(" code ")?;
        s.write_str(int(key.dst_port.into()).as_str())?;
    } else {
        s.write_str(" proto ")?;
        s.write_str(int(key.protocol.into()).as_str())?;
    }
    match (&v.flow.trace, &v.decision) {
        (Some(t), Some(d)) => {
            s.write_str(match t.enforced.verdict {
                Verdict::Allow => " allowed: ",
                Verdict::Deny => " denied: ",
            })?;
            s.write_str(d.side.reason.as_str())?;
            s.write_str(" (")?;
            s.write_str(d.side.direction.as_str())?;
            let ns = d
                .hit
                .and_then(|h| h.policy.namespace.as_deref())
                .or_else(|| {
                    let e = match d.side.direction {
                        flowscribe_model::PolicyDirection::Egress => &ef.source,
                        flowscribe_model::PolicyDirection::Ingress => &ef.destination,
                    };
                    e.pod.as_ref().map(|p| &*p.namespace)
                });
            if let Some(ns) = ns {
                s.write_str(", ns ")?;
                s.write_str(ns)?;
            }
            s.write_char(')')?;
            if let (Some(p), Some(pd)) = (&t.pending, &v.pending_decision)
                && p.verdict != t.enforced.verdict
            {
                s.write_str("; staged would ")?;
                s.write_str(p.verdict.as_str())?;
                if let Some(h) = pd.hit {
                    s.write_str(" (")?;
                    write_policy_display(s, &h.policy)?;
                    s.write_char(')')?;
                }
            }
            if let Some(m) = t.mismatch {
                s.write_str("; mismatch: ")?;
                s.write_str(m.as_str())?;
            }
        }
        _ => {
            s.write_char(' ')?;
            s.write_str(ef.flow.state.as_str())?;
        }
    }
    if let Some(d) = &ef.flow.drops {
        s.write_str("; kernel dropped ")?;
        s.write_str(int(d.packets_forward + d.packets_reverse).as_str())?;
        s.write_str(" packets (")?;
        s.write_str(&d.last_reason)?;
        s.write_char(')')?;
    }
    if ef.source.stale.is_some() || ef.destination.stale.is_some() {
        s.write_str("; stale identity")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use std::time::{Duration, UNIX_EPOCH};

    use super::{addr_text, community_id_text, rfc3339_bytes};

    /// The hand-written formatter agrees with humantime over the whole
    /// range humantime accepts (a stride through 1970..=9999, plus the
    /// edges and every month boundary of a leap and a non-leap year).
    #[test]
    fn rfc3339_matches_humantime() {
        let mut secs: Vec<u64> = (0..253_402_300_800u64).step_by(7_919_993).collect();
        secs.extend([0, 1, 59, 86_399, 86_400, 951_782_400, 4_107_542_400]);
        secs.push(253_402_300_799);
        for year_start in [1_704_067_200u64, 1_735_689_600] {
            secs.extend((0..367 * 4).map(|q| year_start + q * 21_600 - 1));
        }
        for (i, s) in secs.into_iter().enumerate() {
            let nanos = (i as u32).wrapping_mul(2_654_435_761) % 1_000_000_000;
            let t = UNIX_EPOCH + Duration::new(s, nanos);
            let want = humantime::format_rfc3339_nanos(t).to_string();
            assert_eq!(std::str::from_utf8(&rfc3339_bytes(t)).unwrap(), want);
        }
    }

    /// One `Rfc3339Dates` reused over times in every order (same day,
    /// next day, back, far apart) writes what a fresh one writes.
    #[test]
    fn rfc3339_dates_reused_match_fresh() {
        let mut dates = super::Rfc3339Dates::default();
        let base = 1_795_321_800u64;
        let offsets: [i64; 9] = [
            0,
            5,
            86_399,
            86_400,
            -1,
            3 * 86_400 + 7,
            0,
            -400 * 86_400,
            11,
        ];
        for (i, o) in offsets.into_iter().enumerate() {
            let t = UNIX_EPOCH + Duration::new(base.saturating_add_signed(o), i as u32 * 7);
            assert_eq!(dates.format(t), rfc3339_bytes(t), "{o}");
            assert_eq!(
                std::str::from_utf8(&dates.format(t)).unwrap(),
                humantime::format_rfc3339_nanos(t).to_string()
            );
        }
    }

    #[test]
    fn rfc3339_outside_humantime_range_is_clamped() {
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(&rfc3339_bytes(before), b"1970-01-01T00:00:00.000000000Z");
        let after = UNIX_EPOCH + Duration::from_secs(300_000_000_000);
        assert_eq!(&rfc3339_bytes(after), b"9999-12-31T23:59:59.999999999Z");
    }

    #[test]
    fn decimal_matches_display() {
        let mut values = vec![0u64, 1, 9, u64::MAX, u64::MAX - 1];
        let mut p = 1u64;
        for _ in 0..19 {
            p *= 10;
            values.extend([p - 1, p, p + 1]);
        }
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(x >> (x % 64));
        }
        for v in values {
            let d = super::Decimal::new(v);
            assert_eq!(d.as_str(), v.to_string());
            let mut pushed = b"y".to_vec();
            crate::json::push_u64(&mut pushed, v);
            assert_eq!(pushed, format!("y{v}").into_bytes());
        }
    }

    #[test]
    fn addr_text_matches_display() {
        let mut addrs: Vec<IpAddr> = vec![
            Ipv6Addr::new(
                0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff,
            )
            .into(),
            "::ffff:255.255.255.255".parse().unwrap(),
            "::".parse().unwrap(),
            "::1".parse().unwrap(),
            "2001:db8::1:0:0:1".parse().unwrap(),
            "fe80::1%0".parse().unwrap_or(Ipv6Addr::LOCALHOST.into()),
        ];
        // Every octet in every position.
        for o in 0..=255u8 {
            addrs.push(Ipv4Addr::new(o, 255 - o, o / 2, 7).into());
            addrs.push(Ipv4Addr::new(7, o / 3, o, 255 - o).into());
        }
        addrs.push(Ipv4Addr::new(255, 255, 255, 255).into());
        addrs.push(Ipv4Addr::new(0, 0, 0, 0).into());
        for a in addrs {
            assert_eq!(addr_text(a).as_str(), a.to_string());
        }
    }

    #[test]
    fn community_id_text_matches_community_id_v1() {
        let key = flowscribe_model::FlowKey {
            src_addr: "10.0.1.5".parse().unwrap(),
            dst_addr: "10.0.2.7".parse().unwrap(),
            src_port: 51320,
            dst_port: 5432,
            protocol: 6,
        };
        let want = crate::community_id::community_id_v1(&key, 3).unwrap();
        assert_eq!(community_id_text(&key, 3).unwrap().as_str(), want);
    }
}
