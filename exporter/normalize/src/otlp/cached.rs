//! The OTLP encoder with a fragment cache: the attributes of an
//! endpoint's shared objects and of a policy are encoded once (complete
//! `KeyValue` fields, which concatenate) and copied into every record
//! that shares them (see `crate::fragment_cache`). The bytes equal
//! [`super::write_log_record_protobuf`]'s: both write through the same
//! functions, this one into the cache first.

use std::sync::Arc;
use std::time::SystemTime;

use flowscribe_model::{Endpoint, ExplainedFlow, PolicyRef};

use super::{
    Attributes, Direct, KEY_VALUE_LIST_VALUES, LOG_RECORD_ATTRIBUTES, LastNanos, Parts,
    ProtobufRequestWriter, Side, endpoint_attributes, fill_hole, hit_policy, render, rule_policy,
    write_flow_record,
};
use crate::Context;
use crate::event_id::{EventId, event_id};
use crate::fragment_cache::{
    Admission, BoundedMap, DEFAULT_CAPACITY, EndpointKey, pin_endpoint, policy_key,
};
use crate::protobuf::ProtoWriter;
use crate::template::{ConnectionMemo, Lookup};

/// Encodes flow records as OTLP `LogRecord`s for one [`Context`], keeping
/// the encoded attributes of the endpoints and policies it has seen. One
/// per thread (it needs `&mut`); the bytes are those of
/// [`crate::otlp::write_log_record_protobuf`] and
/// [`ProtobufRequestWriter::push_flow`].
#[derive(Debug)]
pub struct OtlpEncoder {
    ctx: Context,
    cache: OtlpCache,
    /// Whether a record goes through the cache (`None`: always).
    admission: Option<Admission>,
    /// Whole-record templates of connections reported again (`None`:
    /// off).
    memo: Option<ConnectionMemo>,
    /// The batch's window end and observed time in nanoseconds.
    nanos: LastNanos,
}

#[derive(Debug)]
struct OtlpCache {
    endpoints: BoundedMap<EndpointKey, EndpointFragments>,
    policies: BoundedMap<usize, PolicyFragments>,
}

#[derive(Debug)]
struct EndpointFragments {
    /// Holds every `Arc` of the key (see `crate::fragment_cache`).
    _pin: Endpoint,
    /// Made when the endpoint is first a source, or a destination.
    source: Option<Box<[u8]>>,
    destination: Option<Box<[u8]>>,
}

#[derive(Debug)]
struct PolicyFragments {
    _pin: Arc<PolicyRef>,
    /// A hit's policy attributes (inside the hit's `KeyValueList`).
    hit: Box<[u8]>,
    /// `security_rule.*` (record attributes), made when the policy first
    /// decides a record.
    rule: Option<Box<[u8]>>,
}

impl OtlpEncoder {
    /// An encoder keeping up to
    /// [`DEFAULT_CAPACITY`](crate::fragment_cache::DEFAULT_CAPACITY)
    /// endpoints and as many policies.
    pub fn new(ctx: Context) -> Self {
        Self::with_capacity(ctx, DEFAULT_CAPACITY)
    }

    /// An encoder keeping up to `capacity` endpoints and as many policies;
    /// a full map is cleared when a new one arrives.
    pub fn with_capacity(ctx: Context, capacity: usize) -> Self {
        OtlpEncoder {
            ctx,
            cache: OtlpCache {
                endpoints: BoundedMap::new(capacity),
                policies: BoundedMap::new(capacity),
            },
            admission: Some(Admission::default()),
            memo: Some(ConnectionMemo::new(capacity, super::hole::PER_CONNECTION)),
            nanos: LastNanos::default(),
        }
    }

    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// Appends the protobuf `LogRecord` of one flow record to `out`, as
    /// [`crate::otlp::write_log_record_protobuf`] with this encoder's
    /// context.
    pub fn write_log_record(
        &mut self,
        flow: &ExplainedFlow,
        observed: SystemTime,
        out: &mut Vec<u8>,
    ) {
        self.write_log_record_with_event_id(flow, observed, None, out);
    }

    /// [`OtlpEncoder::write_log_record`] with the record's event id given
    /// (the daemon hashes a batch's ids before redaction, `EventIdHasher`);
    /// `None` hashes `crate::event_id::event_id` of this context's node and
    /// the flow.
    pub fn write_log_record_with_event_id(
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
                let times = self.nanos.window(f, observed, self.ctx.community_id_seed);
                template.write(out, |h, kept, out| {
                    fill_hole(h, kept, same_connection, f, id, &times, out);
                });
                return;
            }
            Lookup::Record(marks) => Some(marks),
            Lookup::Render => None,
        };
        let recording = marks.is_some();
        // Records are 1.5-4 KiB: one reservation instead of growth steps.
        out.reserve(4096);
        let start = out.len();
        let w = &mut ProtoWriter::new(out);
        let counts = self.cache.counts();
        if self.admission.as_mut().is_none_or(|a| a.admit(counts)) {
            write_flow_record(w, &self.ctx, flow, id, observed, &mut self.cache, marks);
        } else {
            write_flow_record(w, &self.ctx, flow, id, observed, &mut Direct, marks);
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

    fn admit(&mut self) -> bool {
        let counts = self.cache.counts();
        self.admission.as_mut().is_none_or(|a| a.admit(counts))
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

    /// Adds the `LogRecord` of one flow record to `writer`, as
    /// [`ProtobufRequestWriter::push_flow`] with this encoder's context.
    pub fn push_flow(
        &mut self,
        writer: &mut ProtobufRequestWriter,
        flow: &ExplainedFlow,
        observed: SystemTime,
    ) {
        if self.admit() {
            writer.push_flow_with(&self.ctx, flow, observed, &mut self.cache);
        } else {
            writer.push_flow_with(&self.ctx, flow, observed, &mut Direct);
        }
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

impl OtlpCache {
    fn counts(&self) -> (u64, u64) {
        let (a, b) = (self.endpoints.counts(), self.policies.counts());
        (a.0 + b.0, a.1 + b.1)
    }

    #[inline]
    fn policy(&mut self, p: &Arc<PolicyRef>) -> &mut PolicyFragments {
        self.policies
            .get_or_insert_with(policy_key(p), || PolicyFragments {
                _pin: p.clone(),
                hit: render(KEY_VALUE_LIST_VALUES, |l| hit_policy(l, p)),
                rule: None,
            })
    }
}

impl Parts for OtlpCache {
    fn endpoint(&mut self, a: &mut Attributes<'_, '_>, side: Side, e: &Endpoint) {
        let entry = self
            .endpoints
            .get_or_insert_with(EndpointKey::new(e), || EndpointFragments {
                _pin: pin_endpoint(e),
                source: None,
                destination: None,
            });
        let slot = match side {
            Side::Source => &mut entry.source,
            Side::Destination => &mut entry.destination,
        };
        let bytes = slot.get_or_insert_with(|| {
            render(LOG_RECORD_ATTRIBUTES, |a| {
                endpoint_attributes(a, side.keys(), e)
            })
        });
        a.w.encoded(bytes);
    }

    fn hit_policy(&mut self, l: &mut Attributes<'_, '_>, p: &Arc<PolicyRef>) {
        l.w.encoded(&self.policy(p).hit);
    }

    fn rule_policy(&mut self, a: &mut Attributes<'_, '_>, p: &Arc<PolicyRef>) {
        let bytes = self
            .policy(p)
            .rule
            .get_or_insert_with(|| render(LOG_RECORD_ATTRIBUTES, |a| rule_policy(a, p)));
        a.w.encoded(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_flows::RandomFlows;

    /// Connections reported window after window: records from their
    /// templates, and re-rendered ones when something a template holds
    /// constant changed, equal the writer's.
    #[test]
    fn templated_records_equal_the_writer_s() {
        let encoders = crate::test_flows::encoders_equal_the_writer(
            12,
            OtlpEncoder::new,
            OtlpEncoder::context,
            crate::otlp::write_log_record_protobuf,
            |e, f, o, out| e.write_log_record(f, o, out),
        );
        let templated: u64 = encoders.iter().map(OtlpEncoder::templated).sum();
        assert!(templated > 8_000, "{templated} templated");
        // New connections between known peers came from the templates of
        // others: one record in ten is a new connection, and its peers'
        // template fits when nothing else of that slot changed since the
        // template was made, or it was replaced (132 and 159 of them with
        // these seeds).
        let new: u64 = encoders
            .iter()
            .map(OtlpEncoder::templated_new_connections)
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
            |ctx| OtlpEncoder::with_capacity(ctx, 4),
            OtlpEncoder::context,
            crate::otlp::write_log_record_protobuf,
            |e, f, o, out| e.write_log_record(f, o, out),
        );
        let own: u64 = encoders
            .iter()
            .map(OtlpEncoder::templated_from_own_peers)
            .sum();
        let new: u64 = encoders
            .iter()
            .map(OtlpEncoder::templated_new_connections)
            .sum();
        assert!(
            own > 20 && new > 20,
            "{own} from own peers' templates, {new} from others'"
        );
    }

    /// A precomputed event id gives the same record as hashing it here;
    /// another id shows up in `flowscribe.event_id` (the parameter is used).
    #[test]
    fn a_given_event_id_is_the_one_written() {
        use prost::Message as _;
        let observed = crate::test_flows::fixtures::observed();
        for (ctx, flow) in crate::test_flows::variations() {
            let f = &flow.flow.flow;
            let id = crate::event_id::event_id(&ctx.node, &f.key, f.window_start, f.window_end);
            let mut e = OtlpEncoder::new(ctx.clone());
            let (mut plain, mut given, mut other) = (Vec::new(), Vec::new(), Vec::new());
            e.write_log_record(&flow, observed, &mut plain);
            e.write_log_record_with_event_id(&flow, observed, Some(id), &mut given);
            assert_eq!(plain, given);
            let wrong =
                crate::event_id::event_id("elsewhere", &f.key, f.window_start, f.window_end);
            e.write_log_record_with_event_id(&flow, observed, Some(wrong), &mut other);
            let record =
                opentelemetry_proto::tonic::logs::v1::LogRecord::decode(&other[..]).unwrap();
            let written = record
                .attributes
                .iter()
                .find(|kv| kv.key == "flowscribe.event_id")
                .and_then(|kv| kv.value.as_ref())
                .and_then(|v| v.value.as_ref());
            assert_eq!(
                written,
                Some(
                    &opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                        wrong.to_hex()
                    )
                )
            );
        }
    }

    /// Encodes `n` random flows with one cached encoder per context, one
    /// record at a time and into a batch, and compares the bytes with the
    /// uncached writers'.
    fn cached_equals_uncached(
        seed: u64,
        n: usize,
        capacity: usize,
        admission: bool,
    ) -> (u64, u64, u64) {
        let mut flows = RandomFlows::new(seed);
        let observed = crate::test_flows::fixtures::observed();
        let mut encoders: Vec<OtlpEncoder> = Vec::new();
        let (mut want, mut got) = (Vec::new(), Vec::new());
        let (mut want_batch, mut got_batch) =
            (ProtobufRequestWriter::new(), ProtobufRequestWriter::new());
        for i in 0..n {
            let (ctx, flow) = flows.next_flow();
            let at = match encoders.iter().position(|e| e.context() == &ctx) {
                Some(at) => at,
                None => {
                    let encoder = OtlpEncoder::with_capacity(ctx.clone(), capacity);
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
            crate::otlp::write_log_record_protobuf(&ctx, &flow, observed, &mut want);
            encoders[at].write_log_record(&flow, observed, &mut got);
            assert!(want == got, "record {i} of seed {seed}");
            want_batch.push_flow(&ctx, &flow, observed);
            encoders[at].push_flow(&mut got_batch, &flow, observed);
            if i % 100 == 99 {
                let (mut a, mut b) = (Vec::new(), Vec::new());
                want_batch.finish(&ctx, &mut a);
                got_batch.finish(&ctx, &mut b);
                assert!(a == b, "batch ending at {i} of seed {seed}");
            }
        }
        assert!(flows.replaced > n / 20, "{} replacements", flows.replaced);
        encoders.iter().fold((0, 0, 0), |(e, p, b), enc| {
            let (ce, cp) = enc.clears();
            (e + ce, p + cp, b + enc.bypassed())
        })
    }

    #[test]
    fn cached_records_equal_the_writer_s() {
        let clears = cached_equals_uncached(3, 10_000, 1 << 20, false);
        assert_eq!(clears, (0, 0, 0));
    }

    #[test]
    fn cached_records_equal_the_writer_s_across_evictions() {
        let (endpoint_clears, policy_clears, _) = cached_equals_uncached(4, 10_000, 8, false);
        assert!(
            endpoint_clears > 100 && policy_clears > 100,
            "{endpoint_clears} {policy_clears}"
        );
    }

    #[test]
    fn a_missing_cache_is_bypassed_with_the_same_output() {
        let (_, _, bypassed) = cached_equals_uncached(6, 10_000, 8, true);
        assert!(bypassed > 5_000, "{bypassed}");
    }
}
