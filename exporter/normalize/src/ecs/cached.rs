//! The ECS encoder with a fragment cache: the parts of a document that
//! depend only on the context, on an endpoint's shared objects or on a
//! policy are rendered once and copied into every record that shares them
//! (see `crate::fragment_cache`). The bytes equal
//! [`super::write_flow_document`]'s: both write through the same
//! functions, this one into the cache first.

use std::sync::Arc;
use std::time::SystemTime;

use flowscribe_model::{Endpoint, ExplainedFlow, PodIdentity, PolicyHit, PolicyRef};

use super::{
    Direct, Parts, TimeFormatter, Times, WindowTimes, beats_kubernetes_head, beats_kubernetes_tail,
    endpoint_members, fill_hole, hit_policy_head, hit_policy_tail, hit_rule, host, observer_head,
    observer_interface, observer_tail, orchestrator_pod, rule_description_end,
    rule_description_head, rule_id_end, rule_id_head, rule_policy_tail, write_document,
};
use crate::Context;
use crate::event_id::{EventId, event_id};
use crate::fragment_cache::{
    Admission, BoundedMap, DEFAULT_CAPACITY, EndpointKey, pin_endpoint, policy_key,
};
use crate::json::{CachedJson, JsonWriter, k};
use crate::template::{ConnectionMemo, Lookup};
use crate::view::Decision;

/// Encodes flow records as ECS documents for one [`Context`], keeping the
/// rendered fragments of the endpoints and policies it has seen. One per
/// thread (it needs `&mut`); the output of [`EcsEncoder::encode`] is byte
/// for byte [`crate::ecs::write_flow_document`]'s.
#[derive(Debug)]
pub struct EcsEncoder {
    ctx: Context,
    cache: EcsCache,
    /// Whether a record goes through the cache (`None`: always).
    admission: Option<Admission>,
    /// The last day's date text, window end and observed time.
    times: TimeFormatter,
    /// Whole-document templates of connections reported again (`None`:
    /// off).
    memo: Option<ConnectionMemo>,
    /// The side table of the last record, when asked for
    /// ([`EcsEncoder::note_holes`]).
    holes: Option<NotedHoles>,
}

/// Which template wrote the last record, and where its holes' values are.
#[derive(Debug, Default)]
struct NotedHoles {
    /// The template's id; `None` when the record was rendered.
    template: Option<u64>,
    spans: Vec<(u32, u32)>,
}

#[derive(Debug)]
struct EcsCache {
    host: CachedJson,
    observer_head: CachedJson,
    observer_tail: CachedJson,
    endpoints: BoundedMap<EndpointKey, EndpointFragments>,
    policies: BoundedMap<usize, PolicyFragments>,
}

#[derive(Debug)]
struct EndpointFragments {
    /// Holds every `Arc` of the key (see `crate::fragment_cache`).
    _pin: Endpoint,
    members: CachedJson,
    /// Made when the endpoint is first the record's local pod.
    kubernetes: Option<(CachedJson, CachedJson)>,
    orchestrator: Option<CachedJson>,
}

#[derive(Debug)]
struct PolicyFragments {
    _pin: Arc<PolicyRef>,
    hit_head: CachedJson,
    hit_tail: CachedJson,
    /// Made when the policy first decides a record.
    rule: Option<RuleFragments>,
}

#[derive(Debug)]
struct RuleFragments {
    description_head: CachedJson,
    id_head: CachedJson,
    tail: CachedJson,
}

impl EcsEncoder {
    /// An encoder keeping up to
    /// [`DEFAULT_CAPACITY`](crate::fragment_cache::DEFAULT_CAPACITY)
    /// endpoints and as many policies.
    pub fn new(ctx: Context) -> Self {
        Self::with_capacity(ctx, DEFAULT_CAPACITY)
    }

    /// An encoder keeping up to `capacity` endpoints and as many policies;
    /// a full map is cleared when a new one arrives.
    pub fn with_capacity(ctx: Context, capacity: usize) -> Self {
        let cache = EcsCache {
            // Both follow a member (`flowscribe`, `network`).
            host: CachedJson::render(true, |w| host(w, &ctx)),
            observer_head: CachedJson::render(true, |w| observer_head(w, &ctx)),
            observer_tail: CachedJson::render(true, |w| observer_tail(w, &ctx)),
            endpoints: BoundedMap::new(capacity),
            policies: BoundedMap::new(capacity),
        };
        EcsEncoder {
            ctx,
            cache,
            admission: Some(Admission::default()),
            times: TimeFormatter::default(),
            memo: Some(ConnectionMemo::new(capacity, super::hole::PER_CONNECTION)),
            holes: None,
        }
    }

    /// With `true`, every later [`EcsEncoder::encode`] notes which
    /// template wrote the record and where its holes' values are (see
    /// [`EcsEncoder::last_holes`]); the bytes written are the same. Off by
    /// default: the audit trail asks for it, to reuse the canonical form
    /// of a template's record for the records written from it.
    pub fn note_holes(&mut self, on: bool) {
        self.holes = on.then(NotedHoles::default);
    }

    /// Whether [`EcsEncoder::note_holes`] is on.
    pub fn notes_holes(&self) -> bool {
        self.holes.is_some()
    }

    /// For the last record encoded, when noting is on and the record was
    /// written from a template: the template's id (unique in the process;
    /// a template never changes) and, per hole in the template's order,
    /// the start and end of its value relative to the record's start.
    /// Every byte outside the spans is the template's, so two records
    /// from one template differ only inside them. A hole's value is a
    /// JSON number or part of a string's content, as the writer wrote it.
    pub fn last_holes(&self) -> Option<(u64, &[(u32, u32)])> {
        let h = self.holes.as_ref()?;
        Some((h.template?, &h.spans))
    }

    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// Appends the ECS document of one flow record to `out`, as
    /// [`crate::ecs::write_flow_document`] with this encoder's context.
    pub fn encode(&mut self, flow: &ExplainedFlow, observed: SystemTime, out: &mut Vec<u8>) {
        self.encode_with_event_id(flow, observed, None, out);
    }

    /// [`EcsEncoder::encode`] with the record's event id given (the daemon
    /// hashes a batch's ids before redaction, `EventIdHasher`); `None`
    /// hashes `crate::event_id::event_id` of this context's node and the
    /// flow.
    pub fn encode_with_event_id(
        &mut self,
        flow: &ExplainedFlow,
        observed: SystemTime,
        id: Option<EventId>,
        out: &mut Vec<u8>,
    ) {
        let lookup = self
            .memo
            .as_mut()
            .map_or(Lookup::Render, |memo| memo.lookup(flow));
        let marks = match lookup {
            Lookup::Hit {
                template,
                same_connection,
            } => {
                let f = &flow.flow.flow;
                let id = id.unwrap_or_else(|| {
                    event_id(&self.ctx.node, &f.key, f.window_start, f.window_end)
                });
                let mut times = WindowTimes::new(
                    observed,
                    f.window_end,
                    &mut self.times,
                    self.ctx.community_id_seed,
                );
                let fill = |h, kept: &[u8], out: &mut Vec<u8>| {
                    fill_hole(h, kept, same_connection, f, &mut times, id, out);
                };
                match self.holes.as_mut() {
                    None => template.write(out, fill),
                    Some(noted) => {
                        noted.template = Some(template.id());
                        template.write_noting(out, Some(&mut noted.spans), fill);
                    }
                }
                return;
            }
            Lookup::Record(marks) => Some(marks),
            Lookup::Render => None,
        };
        if let Some(noted) = self.holes.as_mut() {
            noted.template = None;
        }
        let recording = marks.is_some();
        let times = Times::new(&flow.flow, observed, &mut self.times);
        let start = out.len();
        let counts = self.cache.counts();
        if self.admission.as_mut().is_none_or(|a| a.admit(counts)) {
            write_document(&self.ctx, flow, id, &times, &mut self.cache, marks, out);
        } else {
            write_document(&self.ctx, flow, id, &times, &mut Direct, marks, out);
        }
        if recording && let Some(memo) = self.memo.as_mut() {
            memo.store_recorded(flow, &out[start..]);
        }
    }

    /// Records written from a template (see `crate::template`).
    pub fn templated(&self) -> u64 {
        self.memo.as_ref().map_or(0, ConnectionMemo::hits)
    }

    /// Records of new connections written from the template of another
    /// connection between the same peers (part of `templated`).
    pub fn templated_new_connections(&self) -> u64 {
        self.memo.as_ref().map_or(0, ConnectionMemo::peer_hits)
    }

    /// Records written from a peers' template made from their own
    /// connection (tests: the path that copies the connection's values).
    #[cfg(test)]
    fn templated_from_own_peers(&self) -> u64 {
        self.memo.as_ref().map_or(0, ConnectionMemo::peer_own_hits)
    }

    /// Records written without the connection memo because it missed too
    /// often.
    pub fn memo_bypassed(&self) -> u64 {
        self.memo.as_ref().map_or(0, ConnectionMemo::bypassed)
    }

    /// This encoder without the connection memo (each record rendered,
    /// with the fragment cache only).
    pub fn without_memo(mut self) -> Self {
        self.memo = None;
        self
    }

    /// Records written without the cache because it missed too often
    /// (see `crate::fragment_cache::Admission`).
    pub fn bypassed(&self) -> u64 {
        self.admission.as_ref().map_or(0, Admission::bypassed)
    }

    /// Every record through the cache, however often it misses (tests
    /// of the cache itself).
    #[cfg(test)]
    fn always_cached(mut self) -> Self {
        self.admission = None;
        self
    }

    /// Endpoints and policies cached now.
    pub fn cached_entries(&self) -> (usize, usize) {
        (self.cache.endpoints.len(), self.cache.policies.len())
    }

    /// How often a full map was cleared (endpoints, policies).
    pub fn clears(&self) -> (u64, u64) {
        (self.cache.endpoints.clears(), self.cache.policies.clears())
    }
}

impl EcsCache {
    fn counts(&self) -> (u64, u64) {
        let (a, b) = (self.endpoints.counts(), self.policies.counts());
        (a.0 + b.0, a.1 + b.1)
    }

    #[inline]
    fn endpoint(&mut self, e: &Endpoint) -> &mut EndpointFragments {
        self.endpoints
            .get_or_insert_with(EndpointKey::new(e), || EndpointFragments {
                _pin: pin_endpoint(e),
                // Rendered without a leading comma: `splice` adds one
                // when `deleted_at` came first.
                members: CachedJson::render(false, |w| endpoint_members(w, e)),
                kubernetes: None,
                orchestrator: None,
            })
    }

    #[inline]
    fn policy(&mut self, p: &Arc<PolicyRef>) -> &mut PolicyFragments {
        self.policies
            .get_or_insert_with(policy_key(p), || PolicyFragments {
                _pin: p.clone(),
                hit_head: CachedJson::render(false, |w| hit_policy_head(w, p)),
                hit_tail: CachedJson::render(false, |w| hit_policy_tail(w, p)),
                rule: None,
            })
    }
}

impl Parts for EcsCache {
    const CHECK_ON_WRITE: bool = true;

    fn host(&mut self, w: &mut JsonWriter<'_>, _: &Context) {
        w.splice(&self.host);
    }

    fn observer(&mut self, w: &mut JsonWriter<'_>, _: &Context, ifindex: u32, ifname: &str) {
        w.splice(&self.observer_head);
        observer_interface(w, ifindex, ifname);
        w.splice(&self.observer_tail);
    }

    fn endpoint_members(&mut self, w: &mut JsonWriter<'_>, e: &Endpoint) {
        w.splice(&self.endpoint(e).members);
    }

    fn kubernetes(&mut self, w: &mut JsonWriter<'_>, e: &Endpoint, p: &PodIdentity, ip: &[u8]) {
        let (head, tail) = self.endpoint(e).kubernetes.get_or_insert_with(|| {
            (
                CachedJson::render(false, |w| beats_kubernetes_head(w, p)),
                CachedJson::render(true, |w| beats_kubernetes_tail(w, p)),
            )
        });
        w.splice(head);
        w.plain_str(ip);
        w.splice(tail);
    }

    fn orchestrator_pod(&mut self, w: &mut JsonWriter<'_>, e: &Endpoint, p: &PodIdentity) {
        let f = self
            .endpoint(e)
            .orchestrator
            .get_or_insert_with(|| CachedJson::render(false, |w| orchestrator_pod(w, p)));
        w.splice(f);
    }

    fn hit(&mut self, w: &mut JsonWriter<'_>, h: &PolicyHit) {
        let f = self.policy(&h.policy);
        w.begin_object();
        w.field_plain(k!("action"), h.action.as_str().as_bytes());
        w.splice(&f.hit_head);
        hit_rule(w, h);
        w.splice(&f.hit_tail);
        w.end_object();
    }

    fn rule_head(&mut self, w: &mut JsonWriter<'_>, d: &Decision<'_>, h: &PolicyHit) {
        let r = rule_fragments(self.policy(&h.policy), &h.policy);
        w.splice(&r.description_head);
        rule_description_end(w, h);
        w.splice(&r.id_head);
        rule_id_end(w, d, h);
    }

    fn rule_tail(&mut self, w: &mut JsonWriter<'_>, h: &PolicyHit) {
        let r = rule_fragments(self.policy(&h.policy), &h.policy);
        w.splice(&r.tail);
    }
}

fn rule_fragments<'f>(f: &'f mut PolicyFragments, p: &PolicyRef) -> &'f RuleFragments {
    f.rule.get_or_insert_with(|| RuleFragments {
        description_head: CachedJson::render(false, |w| rule_description_head(w, p)),
        id_head: CachedJson::render(false, |w| rule_id_head(w, p)),
        tail: CachedJson::render(false, |w| rule_policy_tail(w, p)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_flows::RandomFlows;

    /// A precomputed event id gives the same document as hashing it here;
    /// another id shows up in `event.id` (the parameter is used).
    #[test]
    fn a_given_event_id_is_the_one_written() {
        let observed = crate::test_flows::fixtures::observed();
        for (ctx, flow) in crate::test_flows::variations() {
            let f = &flow.flow.flow;
            let id = crate::event_id::event_id(&ctx.node, &f.key, f.window_start, f.window_end);
            let mut e = EcsEncoder::new(ctx.clone());
            let (mut plain, mut given, mut other) = (Vec::new(), Vec::new(), Vec::new());
            e.encode(&flow, observed, &mut plain);
            e.encode_with_event_id(&flow, observed, Some(id), &mut given);
            assert_eq!(plain, given);
            let wrong =
                crate::event_id::event_id("elsewhere", &f.key, f.window_start, f.window_end);
            e.encode_with_event_id(&flow, observed, Some(wrong), &mut other);
            let doc: serde_json::Value = serde_json::from_slice(&other).unwrap();
            assert_eq!(doc["event"]["id"].as_str(), Some(wrong.to_hex().as_str()));
        }
    }

    /// Encodes `n` random flows with one cached encoder per context and
    /// compares every document with the uncached writer's.
    fn cached_equals_uncached(
        seed: u64,
        n: usize,
        capacity: usize,
        admission: bool,
    ) -> (u64, u64, u64) {
        let mut flows = RandomFlows::new(seed);
        let observed = crate::test_flows::fixtures::observed();
        let mut encoders: Vec<EcsEncoder> = Vec::new();
        let (mut want, mut got) = (Vec::new(), Vec::new());
        for i in 0..n {
            let (ctx, flow) = flows.next_flow();
            let at = match encoders.iter().position(|e| e.context() == &ctx) {
                Some(at) => at,
                None => {
                    let encoder = EcsEncoder::with_capacity(ctx.clone(), capacity);
                    encoders.push(if admission {
                        encoder
                    } else {
                        encoder.always_cached()
                    });
                    encoders.len() - 1
                }
            };
            want.clear();
            got.clear();
            crate::ecs::write_flow_document(&ctx, &flow, observed, &mut want);
            encoders[at].encode(&flow, observed, &mut got);
            assert!(
                want == got,
                "record {i} of seed {seed}:\nwant {}\ngot  {}",
                String::from_utf8_lossy(&want),
                String::from_utf8_lossy(&got)
            );
        }
        assert!(flows.replaced > n / 20, "{} replacements", flows.replaced);
        encoders.iter().fold((0, 0, 0), |(e, p, b), enc| {
            let (ce, cp) = enc.clears();
            (e + ce, p + cp, b + enc.bypassed())
        })
    }

    /// Connections reported window after window: documents from their
    /// templates, and re-rendered ones when something a template holds
    /// constant changed, equal the writer's.
    #[test]
    fn templated_documents_equal_the_writer_s() {
        let encoders = crate::test_flows::encoders_equal_the_writer(
            11,
            EcsEncoder::new,
            EcsEncoder::context,
            crate::ecs::write_flow_document,
            |e, f, o, out| e.encode(f, o, out),
        );
        let templated: u64 = encoders.iter().map(EcsEncoder::templated).sum();
        assert!(templated > 8_000, "{templated} templated");
        // New connections between known peers came from the templates of
        // others: one record in ten is a new connection, and its peers'
        // template fits when nothing else of that slot changed since the
        // template was made, or it was replaced (132 and 159 of them with
        // these seeds).
        let new: u64 = encoders
            .iter()
            .map(EcsEncoder::templated_new_connections)
            .sum();
        assert!(new > 100, "{new} new connections templated");
    }

    /// With maps of four entries the connection map is cleared again and
    /// again, so a connection's record is often written from its peers'
    /// template made from that same connection, copying the connection's
    /// own Community ID and first packet from the kept record: equal to
    /// the writer's too.
    #[test]
    fn templates_of_cleared_maps_equal_the_writer_s() {
        let encoders = crate::test_flows::encoders_equal_the_writer(
            13,
            |ctx| EcsEncoder::with_capacity(ctx, 4),
            EcsEncoder::context,
            crate::ecs::write_flow_document,
            |e, f, o, out| e.encode(f, o, out),
        );
        let own: u64 = encoders
            .iter()
            .map(EcsEncoder::templated_from_own_peers)
            .sum();
        let new: u64 = encoders
            .iter()
            .map(EcsEncoder::templated_new_connections)
            .sum();
        assert!(
            own > 20 && new > 20,
            "{own} from own peers' templates, {new} from others'"
        );
    }

    /// The audit trail's form templates over the side table: for every
    /// record written from a template (connections' and peers' templates,
    /// with maps big and cleared again and again), the form filled from
    /// its template's form template equals a parse of the record, byte
    /// for byte; and the side table does not change the bytes written.
    fn form_templates_equal_the_parse(seed: u64, capacity: usize) -> (u64, u64) {
        use flowscribe_audit::canonical::Canonicalizer;
        use flowscribe_audit::form_template::FormTemplate;
        use std::collections::HashMap;
        let mut connections = crate::test_flows::Connections::new(seed);
        let mut encoders: Vec<(EcsEncoder, EcsEncoder)> = Vec::new();
        let mut forms: HashMap<u64, FormTemplate> = HashMap::new();
        let (mut parse, mut sentinels) = (Canonicalizer::general_only(), Canonicalizer::new());
        let (mut plain, mut noted, mut form) = (Vec::new(), Vec::new(), Vec::new());
        let (mut filled, mut templated) = (0, 0);
        for i in 0..20_000 {
            let (ctx, flow, observed) = connections.next_record();
            let at = match encoders.iter().position(|(e, _)| e.context() == &ctx) {
                Some(at) => at,
                None => {
                    let mut noting = EcsEncoder::with_capacity(ctx.clone(), capacity);
                    noting.note_holes(true);
                    encoders.push((EcsEncoder::with_capacity(ctx, capacity), noting));
                    encoders.len() - 1
                }
            };
            let (e, n) = &mut encoders[at];
            plain.clear();
            noted.clear();
            e.encode(&flow, observed, &mut plain);
            n.encode(&flow, observed, &mut noted);
            assert!(plain == noted, "record {i}: noting changed the bytes");
            let Some((id, spans)) = n.last_holes() else {
                continue;
            };
            templated += 1;
            let body_end = noted.len() - 1;
            let t = forms.entry(id).or_insert_with(|| {
                FormTemplate::build(&noted, body_end, spans, &mut sentinels).unwrap_or_else(|| {
                    let values: Vec<String> = spans
                        .iter()
                        .map(|&(a, b)| {
                            String::from_utf8_lossy(
                                &noted[(a as usize).saturating_sub(3)..b as usize + 3],
                            )
                            .into_owned()
                        })
                        .collect();
                    panic!(
                        "record {i}: template {id} refused: {values:?}\n{}",
                        String::from_utf8_lossy(&noted)
                    )
                })
            });
            form.clear();
            assert!(t.fill(&noted, body_end, spans, &mut form), "record {i}");
            filled += 1;
            let want = parse.canonicalize(&noted).unwrap();
            assert!(
                form == want,
                "record {i} of seed {seed}:\nwant {}\ngot  {}",
                String::from_utf8_lossy(want),
                String::from_utf8_lossy(&form)
            );
        }
        let noted_total: u64 = encoders.iter().map(|(_, n)| n.templated()).sum();
        assert_eq!(
            templated, noted_total,
            "one side table per templated record"
        );
        (filled, forms.len() as u64)
    }

    #[test]
    fn form_templates_of_records_equal_their_parse() {
        let (filled, templates) = form_templates_equal_the_parse(17, DEFAULT_CAPACITY);
        assert!(
            filled > 8_000 && templates > 50,
            "{filled} filled from {templates}"
        );
    }

    #[test]
    fn form_templates_of_cleared_maps_equal_their_parse() {
        let (filled, templates) = form_templates_equal_the_parse(19, 4);
        assert!(
            filled > 1_000 && templates > 500,
            "{filled} filled from {templates}"
        );
    }

    /// A rendered record after a templated one has no side table.
    #[test]
    fn rendered_records_have_no_side_table() {
        let mut e = EcsEncoder::new(crate::test_flows::fixtures::context());
        let observed = crate::test_flows::fixtures::observed();
        let flow = crate::test_flows::fixtures::case("allowed");
        let mut out = Vec::new();
        e.encode(&flow, observed, &mut out);
        e.encode(&flow, observed, &mut out);
        e.encode(&flow, observed, &mut out);
        assert!(e.last_holes().is_none(), "not asked for");
        e.note_holes(true);
        e.encode(&flow, observed, &mut out);
        let (_, spans) = e.last_holes().unwrap();
        assert!(spans.len() >= 10, "{} holes", spans.len());
        let mut changed = flow.clone();
        changed.flow.flow.forward.tcp_flags ^= 0x80;
        e.encode(&changed, observed, &mut out);
        assert!(e.last_holes().is_none());
    }

    #[test]
    fn cached_documents_equal_the_writer_s() {
        let clears = cached_equals_uncached(1, 10_000, 1 << 20, false);
        assert_eq!(clears, (0, 0, 0));
    }

    #[test]
    fn cached_documents_equal_the_writer_s_across_evictions() {
        let (endpoint_clears, policy_clears, _) = cached_equals_uncached(2, 10_000, 8, false);
        assert!(
            endpoint_clears > 100 && policy_clears > 100,
            "{endpoint_clears} {policy_clears}"
        );
    }

    /// A cache that misses more than half the time is bypassed, and the
    /// bypassed records are the same.
    #[test]
    fn a_missing_cache_is_bypassed_with_the_same_output() {
        let (_, _, bypassed) = cached_equals_uncached(5, 10_000, 8, true);
        assert!(bypassed > 5_000, "{bypassed}");
    }

    /// The cache keeps what it was made from alive: a pod dropped by its
    /// owner cannot be freed (and its address reused) while cached.
    #[test]
    fn cached_objects_stay_alive() {
        let ctx = crate::test_flows::fixtures::context();
        let flow = crate::test_flows::fixtures::case("allowed");
        let pod = flow.flow.source.pod.clone().unwrap();
        let before = Arc::strong_count(&pod);
        let mut encoder = EcsEncoder::new(ctx);
        encoder.encode(
            &flow,
            crate::test_flows::fixtures::observed(),
            &mut Vec::new(),
        );
        assert_eq!(Arc::strong_count(&pod), before + 1);
        assert_eq!(encoder.cached_entries().0, 2);
        drop(encoder);
        assert_eq!(Arc::strong_count(&pod), before);
    }
}
