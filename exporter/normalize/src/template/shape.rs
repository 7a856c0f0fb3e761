//! A flow's *shape*: everything a template holds constant but the flow
//! key (which the memo's maps compare), written as words, so that whether
//! a template fits is one comparison of two short byte strings, the kept
//! one at the start of the template's allocation, instead of a walk
//! through the kept flow's allocations (each a cache miss once a node has
//! thousands of connections).
//!
//! Objects that a connection's records share are written by address:
//! pods, services, policies and rule names (`Arc`s from the indexes),
//! interface names (capture's interface table), interned [`Name`]s. The
//! rest is written by value, a trace's hits included (an evaluation
//! outside the pair memo makes them anew for each flow), with lengths and
//! tags, so that two flows that differ outside the key and the holes
//! (shared objects told apart by address) never write the same words. Equal
//! shapes therefore mean [`super::same_except_holes`] holds, as long as
//! the objects at the kept shape's addresses are alive (an address is only
//! reused after its object is freed): the memo keeps the flow the template
//! was made from, which holds them. Equal flows can differ in shape (an
//! identity replaced by an equal copy): the record is then rendered again,
//! which costs time but never changes a record.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use flowscribe_model::{
    DirectionCounters, Drops, Endpoint, Evaluation, ExplainedFlow, Flow, InterfaceRef, Name,
    Observed, PolicyHit, PolicyTrace, SideVerdict, Stale,
};

/// Words a shape has room for before it moves to the heap: most flows'
/// (about 25 words, 3 more per interface and 4 per policy hit).
const INLINE_WORDS: usize = 64;

/// A flow's shape, in words (kept from flow to flow): in a fixed array
/// while it fits, which costs a third fewer instructions per word than a
/// `Vec`'s pushes, then all of it in `spilled`.
#[derive(Debug)]
pub(crate) struct ShapeWords {
    inline: [u64; INLINE_WORDS],
    len: usize,
    spilled: Vec<u64>,
}

impl Default for ShapeWords {
    fn default() -> ShapeWords {
        ShapeWords {
            inline: [0; INLINE_WORDS],
            len: 0,
            spilled: Vec::new(),
        }
    }
}

impl ShapeWords {
    /// The shape as bytes.
    #[inline]
    pub(crate) fn bytes(&self) -> &[u8] {
        use zerocopy::IntoBytes as _;
        match self.inline.get(..self.len) {
            Some(words) => words.as_bytes(),
            None => self.spilled.as_bytes(),
        }
    }

    #[inline]
    fn clear(&mut self) {
        self.len = 0;
        self.spilled.clear();
    }

    #[inline]
    fn push<const N: usize>(&mut self, v: [u64; N]) {
        match self.inline.get_mut(self.len..self.len + N) {
            Some(slots) => slots.copy_from_slice(&v),
            None => self.spill(&v),
        }
        self.len += N;
    }

    #[cold]
    fn spill(&mut self, v: &[u64]) {
        if self.spilled.is_empty() {
            let inline = self.inline.get(..self.len).unwrap_or(&self.inline);
            self.spilled.extend_from_slice(inline);
        }
        self.spilled.extend_from_slice(v);
    }
}

/// Writes `flow`'s shape to `out` (replacing what it held).
pub(crate) fn shape(flow: &ExplainedFlow, out: &mut ShapeWords) {
    out.clear();
    let w = &mut Shape(out);
    // The destructuring makes a new field a compile error here until it
    // is written or named a hole, as in `same_except_holes`.
    let ExplainedFlow { flow, trace } = flow;
    let flowscribe_model::EnrichedFlow {
        flow,
        source,
        destination,
        identity_degraded,
    } = flow;
    let Flow {
        // Compared by the maps.
        key: _,
        interface,
        initiator_hook,
        interfaces,
        orientation,
        // Holes.
        window_start: _,
        window_end: _,
        first_packet: _,
        last_packet: _,
        forward:
            DirectionCounters {
                packets: _,
                bytes: _,
                tcp_flags: forward_flags,
            },
        reverse:
            DirectionCounters {
                packets: _,
                bytes: _,
                tcp_flags: reverse_flags,
            },
        state,
        end_reason,
        drops,
    } = flow;
    // The counters are holes, the flags are not.
    w.word(
        u64::from(*forward_flags)
            | u64::from(*reverse_flags) << 8
            | (*state as u64) << 16
            | end_reason.map_or(0xff, |r| r as u64) << 24
            | (*initiator_hook as u64) << 32
            | (*orientation as u64) << 40
            | u64::from(*identity_degraded) << 48,
    );
    w.interface(interface);
    w.word(interfaces.len() as u64);
    for i in interfaces {
        w.interface(i);
    }
    w.drops(drops.as_ref());
    w.endpoint(source);
    w.endpoint(destination);
    match trace {
        None => w.word(0),
        Some(t) => w.trace(t),
    }
}

/// A shared object by its address (the flow it came from keeps it
/// alive); never zero, which stands for none.
#[inline]
fn addr<T: ?Sized>(a: &Arc<T>) -> u64 {
    Arc::as_ptr(a).cast::<()>() as usize as u64
}

struct Shape<'a>(&'a mut ShapeWords);

impl Shape<'_> {
    #[inline]
    fn word(&mut self, v: u64) {
        self.0.push([v]);
    }

    #[inline]
    fn words<const N: usize>(&mut self, v: [u64; N]) {
        self.0.push(v);
    }

    /// A text by value: its length, then its bytes eight to a word.
    fn text(&mut self, s: &str) {
        self.word(s.len() as u64);
        for chunk in s.as_bytes().chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.word(u64::from_ne_bytes(w));
        }
    }

    /// A name as `Name`'s equality sees it, in one word: zero when empty,
    /// one for none, else its address (names are interned: one text, one
    /// address, and a text's address is never 0 or 1).
    #[inline]
    fn name(n: Option<Name>) -> u64 {
        match n {
            None => 1,
            Some(n) if n.is_empty() => 0,
            Some(n) => n.addr() as u64,
        }
    }

    fn time(&mut self, t: SystemTime) {
        let (sign, d) = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => (0, d),
            Err(e) => (1, e.duration()),
        };
        self.words([sign, d.as_secs(), u64::from(d.subsec_nanos())]);
    }

    /// An interface: its name by address (capture shares one per
    /// interface).
    #[inline]
    fn interface(&mut self, i: &InterfaceRef) {
        let InterfaceRef { ifindex, name } = i;
        self.words([u64::from(*ifindex), addr(name), name.len() as u64]);
    }

    fn drops(&mut self, d: Option<&Drops>) {
        let Some(Drops {
            packets_forward,
            packets_reverse,
            bytes,
            last_reason,
            last_netns_ino,
        }) = d
        else {
            self.word(0);
            return;
        };
        self.words([
            1,
            *packets_forward,
            *packets_reverse,
            *bytes,
            u64::from(*last_netns_ino),
        ]);
        self.text(last_reason);
    }

    #[inline(always)]
    fn endpoint(&mut self, e: &Endpoint) {
        let Endpoint {
            kind,
            pod,
            node,
            service,
            network,
            stale,
        } = e;
        self.words([
            *kind as u64 | u64::from(stale.is_some()) << 8,
            pod.as_ref().map_or(0, addr),
            service.as_ref().map_or(0, addr),
            Self::name(*node),
            Self::name(*network),
        ]);
        if let Some(Stale { deleted_at }) = stale {
            self.time(*deleted_at);
        }
    }

    fn trace(&mut self, t: &PolicyTrace) {
        let PolicyTrace {
            enforced,
            pending,
            observed,
            verdict_source,
            mismatch,
            invalid_policies,
        } = t;
        self.word(
            1 | (*verdict_source as u64) << 8
                | mismatch.map_or(0xff, |m| m as u64) << 16
                | u64::from(pending.is_some()) << 24,
        );
        self.evaluation(enforced);
        if let Some(p) = pending {
            self.evaluation(p);
        }
        match observed {
            Observed::Delivered => self.word(0),
            // Made per flow from its drops: by value.
            Observed::Dropped { reason } => {
                self.word(1);
                self.text(reason);
            }
            Observed::Unknown => self.word(2),
        }
        self.word(invalid_policies.len() as u64);
        for p in invalid_policies {
            self.word(addr(p));
        }
    }

    #[inline(always)]
    fn evaluation(&mut self, e: &Evaluation) {
        let Evaluation {
            egress,
            ingress,
            verdict,
        } = e;
        self.word(*verdict as u64);
        self.side(egress);
        self.side(ingress);
    }

    #[inline(always)]
    fn side(&mut self, s: &SideVerdict) {
        let SideVerdict {
            direction,
            hits,
            verdict,
            reason,
        } = s;
        self.word(
            (*direction as u64)
                | (*verdict as u64) << 8
                | (*reason as u64) << 16
                | (hits.len() as u64) << 32,
        );
        for PolicyHit {
            policy,
            rule_index,
            rule_name,
            action,
        } in hits.iter()
        {
            let (name_at, name_len) = rule_name
                .as_ref()
                .map_or((0, u64::MAX), |n| (addr(n), n.len() as u64));
            self.words([
                addr(policy),
                rule_index.map_or(0, |i| 1 | u64::from(i) << 32) | (*action as u64) << 8,
                name_at,
                name_len,
            ]);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use flowscribe_model::{
        EndReason, EndpointKind, FlowState, HookDirection, Mismatch, Orientation, PolicyAction,
        Verdict, VerdictReason, VerdictSource,
    };

    use super::*;
    use crate::template::same_except_holes;

    fn shape_of(f: &ExplainedFlow) -> Vec<u8> {
        let mut w = ShapeWords::default();
        shape(f, &mut w);
        w.bytes().to_vec()
    }

    /// Records of connections window after window, with fields changed on
    /// the way (another endpoint, trace, flags, state, an interface name
    /// made anew): whenever a record's shape equals that of the last
    /// record of its peers, the two are equal but for the holes; and both
    /// outcomes, and equal flows of different shape, all occur.
    #[test]
    fn equal_shapes_mean_the_same_but_for_the_holes() {
        let mut connections = crate::test_flows::Connections::new(21);
        let mut last: HashMap<_, ExplainedFlow> = HashMap::new();
        let (mut fits, mut differs, mut equal_but_other_shape) = (0, 0, 0);
        for _ in 0..20_000 {
            let (_, flow, _) = connections.next_record();
            let key = super::super::PeerKey::of(&flow.flow.flow.key);
            if let Some(kept) = last.get(&key) {
                let same = same_except_holes(kept, &flow);
                if shape_of(kept) == shape_of(&flow) {
                    assert!(same, "equal shapes of different flows: {kept:?} {flow:?}");
                    fits += 1;
                } else if same {
                    equal_but_other_shape += 1;
                } else {
                    differs += 1;
                }
            }
            last.insert(key, flow);
        }
        assert!(
            fits > 5_000 && differs > 5_000 && equal_but_other_shape > 50,
            "{fits} fit, {differs} differ, {equal_but_other_shape} equal in another shape"
        );
    }

    /// Every field that is not a hole changes the shape; the holes do not.
    #[test]
    fn every_field_but_the_holes_changes_the_shape() {
        type Edit = fn(&mut ExplainedFlow);
        let kept: &[(&str, Edit)] = &[
            ("forward flags", |f| f.flow.flow.forward.tcp_flags ^= 0x10),
            ("reverse flags", |f| f.flow.flow.reverse.tcp_flags ^= 0x01),
            ("state", |f| {
                let s = &mut f.flow.flow.state;
                *s = if *s == FlowState::Live {
                    FlowState::Completed
                } else {
                    FlowState::Live
                };
            }),
            ("end reason", |f| {
                let r = &mut f.flow.flow.end_reason;
                *r = match r {
                    Some(EndReason::TcpRst) => Some(EndReason::TcpFin),
                    Some(_) => None,
                    None => Some(EndReason::TcpRst),
                };
            }),
            ("hook", |f| {
                let h = &mut f.flow.flow.initiator_hook;
                *h = if *h == HookDirection::Ingress {
                    HookDirection::Egress
                } else {
                    HookDirection::Ingress
                };
            }),
            ("orientation", |f| {
                let o = &mut f.flow.flow.orientation;
                *o = if *o == Orientation::Syn {
                    Orientation::FirstPacket
                } else {
                    Orientation::Syn
                };
            }),
            ("ifindex", |f| f.flow.flow.interface.ifindex += 1),
            ("interface name", |f| {
                let n = &mut f.flow.flow.interface.name;
                *n = format!("{n}x").into();
            }),
            ("interfaces", |f| {
                let i = f.flow.flow.interface.clone();
                f.flow.flow.interfaces.push(i);
            }),
            ("drops", |f| {
                let d = &mut f.flow.flow.drops;
                *d = match d.take() {
                    Some(_) => None,
                    None => Some(Drops {
                        packets_forward: 1,
                        packets_reverse: 0,
                        bytes: 60,
                        last_reason: "NETFILTER_DROP".into(),
                        last_netns_ino: 7,
                    }),
                };
            }),
            ("dropped forward", |f| drops(f).packets_forward += 1),
            ("dropped reverse", |f| drops(f).packets_reverse += 1),
            ("dropped bytes", |f| drops(f).bytes += 1),
            ("drop netns", |f| drops(f).last_netns_ino += 1),
            // A text's length is written: a trailing NUL is seen.
            ("drop reason", |f| drops(f).last_reason.push('\0')),
            ("degraded", |f| f.flow.identity_degraded ^= true),
            ("source kind", |f| {
                let k = &mut f.flow.source.kind;
                *k = if *k == EndpointKind::Unknown {
                    EndpointKind::Loopback
                } else {
                    EndpointKind::Unknown
                };
            }),
            ("source pod", |f| {
                let p = &mut f.flow.source.pod;
                *p = match p {
                    Some(_) => None,
                    None => crate::test_flows::fixtures::case("allowed").flow.source.pod,
                };
            }),
            ("destination node", |f| {
                let n = &mut f.flow.destination.node;
                *n = Some(Name::new(&format!(
                    "{}-other",
                    n.map_or("", |n| n.as_str())
                )));
            }),
            ("source node, empty", |f| {
                let n = &mut f.flow.source.node;
                *n = match n {
                    None => Some(Name::default()),
                    Some(_) => None,
                };
            }),
            ("destination network", |f| {
                let n = &mut f.flow.destination.network;
                *n = if n.is_some() {
                    None
                } else {
                    Some(Name::new("corp"))
                };
            }),
            ("destination stale", |f| {
                let s = &mut f.flow.destination.stale;
                *s = match s {
                    Some(s) => Some(Stale {
                        deleted_at: s.deleted_at + Duration::from_nanos(1),
                    }),
                    None => Some(Stale {
                        deleted_at: UNIX_EPOCH + Duration::from_secs(5),
                    }),
                };
            }),
            ("destination service", |f| {
                let s = &mut f.flow.destination.service;
                *s = match s {
                    Some(_) => None,
                    None => Some(Arc::new(flowscribe_model::ServiceRef {
                        name: "s".into(),
                        namespace: "n".into(),
                        port_name: None,
                    })),
                };
            }),
            ("trace", |f| {
                f.trace = match f.trace.take() {
                    Some(_) => None,
                    None => crate::test_flows::fixtures::case("allowed").trace,
                };
            }),
        ];
        let traced: &[(&str, Edit)] = &[
            ("verdict", |f| {
                let e = &mut trace(f).enforced;
                e.verdict = if e.verdict == Verdict::Allow {
                    Verdict::Deny
                } else {
                    Verdict::Allow
                };
            }),
            ("reason", |f| {
                let s = &mut trace(f).enforced.ingress;
                s.reason = if s.reason == VerdictReason::Indeterminate {
                    VerdictReason::NotSubject
                } else {
                    VerdictReason::Indeterminate
                };
            }),
            ("another hit", |f| {
                let s = &mut trace(f).enforced.egress;
                let mut hits = s.hits.to_vec();
                hits.push(PolicyHit {
                    policy: invalid_policy(),
                    rule_index: None,
                    rule_name: None,
                    action: PolicyAction::Pass,
                });
                s.hits = hits.into();
            }),
            ("a hit's rule", |f| {
                edit_hit(f, |h| {
                    h.rule_index = match h.rule_index {
                        Some(0) => None,
                        _ => Some(0),
                    }
                })
            }),
            ("a hit's action", |f| {
                edit_hit(f, |h| {
                    h.action = if h.action == PolicyAction::Log {
                        PolicyAction::Pass
                    } else {
                        PolicyAction::Log
                    }
                })
            }),
            ("a hit's rule name", |f| {
                edit_hit(f, |h| {
                    h.rule_name = match &h.rule_name {
                        Some(_) => None,
                        None => Some("r".into()),
                    }
                })
            }),
            ("a hit's policy", |f| {
                edit_hit(f, |h| {
                    let mut p = flowscribe_model::PolicyRef::clone(&h.policy);
                    p.resource_version = format!("{}1", p.resource_version).into();
                    h.policy = Arc::new(p);
                })
            }),
            ("pending", |f| {
                let t = trace(f);
                t.pending = match t.pending.take() {
                    Some(_) => None,
                    None => Some(t.enforced.clone()),
                };
            }),
            ("observed", |f| {
                let o = &mut trace(f).observed;
                *o = match o {
                    Observed::Delivered => Observed::Unknown,
                    Observed::Unknown => Observed::Dropped { reason: "X".into() },
                    Observed::Dropped { reason } => Observed::Dropped {
                        reason: format!("{reason}Y").into(),
                    },
                };
            }),
            ("verdict source", |f| {
                let v = &mut trace(f).verdict_source;
                *v = if *v == VerdictSource::Cni {
                    VerdictSource::Observed
                } else {
                    VerdictSource::Cni
                };
            }),
            ("mismatch", |f| {
                let m = &mut trace(f).mismatch;
                *m = match m {
                    Some(Mismatch::UnexplainedDrop) => None,
                    _ => Some(Mismatch::UnexplainedDrop),
                };
            }),
            ("invalid policies", |f| {
                trace(f).invalid_policies.push(invalid_policy())
            }),
            ("an invalid policy", |f| {
                let p = &mut trace(f).invalid_policies;
                match p.last_mut() {
                    Some(last) => {
                        let mut changed = flowscribe_model::PolicyRef::clone(last);
                        changed.name = format!("{}x", changed.name).into();
                        *last = Arc::new(changed);
                    }
                    None => p.push(invalid_policy()),
                }
            }),
            ("observed reason", |f| {
                let o = &mut trace(f).observed;
                *o = match o {
                    Observed::Dropped { reason } => Observed::Dropped {
                        reason: format!("{reason}\0").into(),
                    },
                    _ => Observed::Dropped { reason: "".into() },
                };
            }),
        ];
        let holes: &[(&str, Edit)] = &[
            ("window", |f| {
                let ff = &mut f.flow.flow;
                ff.window_start += Duration::from_secs(10);
                ff.window_end += Duration::from_secs(10);
            }),
            ("packets", |f| {
                let ff = &mut f.flow.flow;
                ff.first_packet += Duration::from_secs(1);
                ff.last_packet += Duration::from_secs(3);
            }),
            ("counters", |f| {
                let ff = &mut f.flow.flow;
                ff.forward.bytes += 1;
                ff.forward.packets += 1;
                ff.reverse.bytes += 1;
                ff.reverse.packets += 1;
            }),
            ("source port", |f| f.flow.flow.key.src_port ^= 1),
        ];
        // Equal values at other addresses: the same flow, another shape.
        let copies: &[(&str, Edit)] = &[
            ("interface name", |f| {
                let n = &mut f.flow.flow.interface.name;
                *n = n.to_string().into();
            }),
            ("pods", |f| {
                for e in [&mut f.flow.source, &mut f.flow.destination] {
                    if let Some(p) = &mut e.pod {
                        *p = Arc::new(flowscribe_model::PodIdentity::clone(p));
                    }
                }
            }),
            ("rule names", |f| {
                if let Some(t) = &mut f.trace {
                    for s in [&mut t.enforced.ingress, &mut t.enforced.egress] {
                        let mut hits = s.hits.to_vec();
                        for h in &mut hits {
                            if let Some(n) = &mut h.rule_name {
                                *n = n.to_string().into();
                            }
                        }
                        s.hits = hits.into();
                    }
                }
            }),
            ("services", |f| {
                for e in [&mut f.flow.source, &mut f.flow.destination] {
                    if let Some(s) = &mut e.service {
                        *s = Arc::new(flowscribe_model::ServiceRef::clone(s));
                    }
                }
            }),
        ];
        let mut edited = 0;
        for (_, flow) in crate::test_flows::variations() {
            let before = shape_of(&flow);
            let edits = kept
                .iter()
                .chain(if flow.trace.is_some() { traced } else { &[] });
            for (what, edit) in edits {
                let mut f = flow.clone();
                edit(&mut f);
                assert!(!same_except_holes(&flow, &f), "{what} is not a hole");
                assert_ne!(shape_of(&f), before, "{what} changes the shape");
                edited += 1;
            }
            for (what, edit) in copies {
                let mut f = flow.clone();
                edit(&mut f);
                assert!(same_except_holes(&flow, &f), "{what}: a copy");
                let (s, d) = (&flow.flow.source, &flow.flow.destination);
                let named_rules = flow.trace.as_ref().is_some_and(|t| {
                    [&t.enforced.ingress, &t.enforced.egress]
                        .iter()
                        .any(|s| s.hits.iter().any(|h| h.rule_name.is_some()))
                });
                let copied = match *what {
                    "pods" => s.pod.is_some() || d.pod.is_some(),
                    "services" => s.service.is_some() || d.service.is_some(),
                    "rule names" => named_rules,
                    _ => true,
                };
                if copied {
                    assert_ne!(shape_of(&f), before, "{what}: another address");
                }
            }
            for (what, edit) in holes {
                if *what == "source port" && !crate::view::has_ports(flow.flow.flow.key.protocol) {
                    // ICMP's type: part of the peers' key, which the maps
                    // compare.
                    continue;
                }
                let mut f = flow.clone();
                edit(&mut f);
                assert!(same_except_holes(&flow, &f), "{what} is a hole");
                assert_eq!(shape_of(&f), before, "{what} leaves the shape as it is");
            }
        }
        assert!(edited > 500, "{edited} edits");
        // No name and an empty one differ (enrich interns what the API
        // server gives, empty included).
        let mut none = crate::test_flows::fixtures::case("allowed");
        none.flow.source.node = None;
        let mut empty = none.clone();
        empty.flow.source.node = Some(Name::default());
        assert!(!same_except_holes(&none, &empty));
        assert_ne!(shape_of(&none), shape_of(&empty));
    }

    fn trace(f: &mut ExplainedFlow) -> &mut PolicyTrace {
        f.trace.as_mut().expect("a trace")
    }

    /// The flow's drops (made when it has none).
    fn drops(f: &mut ExplainedFlow) -> &mut Drops {
        f.flow.flow.drops.get_or_insert_with(|| Drops {
            packets_forward: 0,
            packets_reverse: 0,
            bytes: 0,
            last_reason: String::new(),
            last_netns_ino: 0,
        })
    }

    /// Edits the last hit of the trace's enforced evaluation (ingress, else
    /// egress); a trace without hits gets one.
    fn edit_hit(f: &mut ExplainedFlow, edit: impl Fn(&mut PolicyHit)) {
        let t = trace(f);
        for s in [&mut t.enforced.ingress, &mut t.enforced.egress] {
            let mut hits = s.hits.to_vec();
            if let Some(h) = hits.last_mut() {
                edit(h);
                s.hits = hits.into();
                return;
            }
        }
        let mut hit = PolicyHit {
            policy: invalid_policy(),
            rule_index: Some(1),
            rule_name: None,
            action: PolicyAction::Allow,
        };
        edit(&mut hit);
        t.enforced.ingress.hits = vec![hit].into();
    }

    fn invalid_policy() -> Arc<flowscribe_model::PolicyRef> {
        let t = crate::test_flows::fixtures::case("allowed")
            .trace
            .expect("a trace");
        let hit = t.enforced.ingress.hits.last().expect("a hit").clone();
        Arc::new(flowscribe_model::PolicyRef::clone(&hit.policy))
    }

    /// A flow with many interfaces and hits (a long shape) is templated
    /// like any other.
    #[test]
    fn a_long_shape_is_templated() {
        let mut flow = crate::test_flows::fixtures::case("allowed");
        let i = flow.flow.flow.interface.clone();
        flow.flow.flow.interfaces = vec![i; 100];
        let t = trace(&mut flow);
        let hit = t.enforced.ingress.hits.last().expect("a hit").clone();
        t.enforced.ingress.hits = vec![hit; 100].into();
        assert!(shape_of(&flow).len() > 8 * 600);
        let mut memo = super::super::ConnectionMemo::new(16, super::super::HoleSet::default());
        assert!(matches!(memo.lookup(&flow), super::super::Lookup::Render));
        assert!(matches!(
            memo.lookup(&flow),
            super::super::Lookup::Record(_)
        ));
        memo.store_recorded(&flow, b"ab");
        assert!(matches!(
            memo.lookup(&flow),
            super::super::Lookup::Hit { .. }
        ));
        assert_eq!(memo.hits(), 1);
    }
}
