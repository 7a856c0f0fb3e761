//! The OpenTelemetry view of a flow record: one OTLP `LogRecord`
//! (`event_name` `network.flow`) per flow, built directly from the
//! `opentelemetry-proto` prost types (no SDK), the `ResourceLogs` /
//! `ExportLogsServiceRequest` around a batch, and both encodings: binary
//! protobuf ([`encode_protobuf`]) and OTLP/JSON ([`write_json`]).
//!
//! Attribute names follow OTel semantic conventions 1.44 where one exists
//! (`network.*`, `source.*`, `destination.*`, `security_rule.*`, resource
//! `service.*`, `host.name`, `k8s.*`); everything else lives under the one
//! documented `flowscribe.*` namespace, listed in [`MAPPING`].
//!
//! OTLP/JSON is written here rather than with the crate's serde support,
//! because the crate writes every default value (`"traceId": ""`,
//! `"droppedAttributesCount": 0`); this writer follows the OTLP/JSON rules
//! (camelCase keys, enums as integers, 64-bit integers as decimal strings,
//! ids as hex, default values left out), and the tests prove that the
//! crate's deserializer reads it back to the same request.
//!
//! Flow records are written straight to protobuf ([`ProtobufRequestWriter`],
//! the sink path); [`log_record`] decodes those bytes into the prost types
//! for OTLP/JSON and for callers that edit records, so both encodings come
//! from one attribute list.
//!
//! Stage ④. Pure: no IO, no clock (the observed time is a parameter). It
//! must not batch by time or size (that is the sink's job): callers hand it
//! the records of one batch.

use std::time::SystemTime;

use std::fmt::{self, Write as _};
use std::sync::Arc;

use flowscribe_model::{
    CaptureLoss, Endpoint, Evaluation, ExplainedFlow, Observed, PolicyHit, PolicyRef, SideVerdict,
};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;

use crate::event_id::EventId;
use crate::protobuf::{Nested, ProtoWriter, varint_len};
use crate::schema::row;
use crate::view::{
    FlowView, LastConverted, Severity, community_id_text, has_ports, is_icmp, observed_str,
    tcp_flag_iter, unix_nanos, write_policy_display, write_rule_id, write_rule_name,
};
use crate::{Context, FieldMapping};

mod cached;
pub use cached::OtlpEncoder;

pub const UPSTREAM: &str = "OpenTelemetry semantic conventions 1.44.0, OTLP logs \
     (opentelemetry-proto 1.x via the opentelemetry-proto crate 0.33), OTLP/JSON encoding";

/// The semantic conventions release the attribute names follow.
pub const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.44.0";

/// `event_name` of flow records.
pub const FLOW_EVENT_NAME: &str = "network.flow";
/// `event_name` of capture loss records.
pub const LOSS_EVENT_NAME: &str = "flowscribe.loss";

pub const JSON_SCHEMA: &str = include_str!("../../../schemas/otlp/flow.schema.json");

pub const NOTES: &str = "One LogRecord per flow record and aggregation window; `event_name` is \
`network.flow` (capture loss records: `flowscribe.loss`). `time_unix_nano` is the end of the \
window, `observed_time_unix_nano` when flowscribe wrote the record. Severity: 9 INFO for allowed \
flows, 13 WARN for denied flows or when evaluation and observation disagree. The body is the \
one-line human summary. Resource: `service.name` = `flowscribe`, `service.version`, `host.name`, \
`k8s.node.name`, `k8s.cluster.name` (when configured); scope `flowscribe`; schema URL \
`https://opentelemetry.io/schemas/1.44.0`. Flows have two Kubernetes endpoints and semantic \
conventions describe only the emitting one, so per-endpoint identity uses the `k8s.*` names \
under `flowscribe.source.` and `flowscribe.destination.`. Policy sides are `kvlist` values. \
OTLP/JSON: camelCase, integers as decimal strings, enums as integers, defaults left out.";

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(v: impl Into<String>) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

fn int(v: u64) -> any_value::Value {
    any_value::Value::IntValue(i64::try_from(v).unwrap_or(i64::MAX))
}

fn boolean(v: bool) -> any_value::Value {
    any_value::Value::BoolValue(v)
}

/// The resource of every record this exporter writes.
pub fn resource(ctx: &Context) -> Resource {
    let mut attributes = vec![
        kv("service.name", s("flowscribe")),
        kv("service.version", s(ctx.service_version.as_str())),
        kv("host.name", s(ctx.node.as_str())),
        kv("k8s.node.name", s(ctx.node.as_str())),
    ];
    if let Some(c) = &ctx.cluster {
        attributes.push(kv("k8s.cluster.name", s(c.as_str())));
    }
    Resource {
        attributes,
        ..Default::default()
    }
}

/// One request carrying `records` under this exporter's resource and scope.
pub fn export_request(ctx: &Context, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![resource_logs(ctx, records)],
    }
}

/// `records` under this exporter's resource and scope.
pub fn resource_logs(ctx: &Context, records: Vec<LogRecord>) -> ResourceLogs {
    ResourceLogs {
        resource: Some(resource(ctx)),
        scope_logs: vec![ScopeLogs {
            scope: Some(InstrumentationScope {
                name: "flowscribe".to_string(),
                version: ctx.service_version.clone(),
                ..Default::default()
            }),
            log_records: records,
            schema_url: SCHEMA_URL.to_string(),
        }],
        schema_url: SCHEMA_URL.to_string(),
    }
}

/// The binary protobuf encoding of a request (HTTP `application/x-protobuf`
/// body, gRPC message).
pub fn encode_protobuf(request: &ExportLogsServiceRequest) -> Vec<u8> {
    request.encode_to_vec()
}

/// The LogRecord of one flow record, as prost types (for OTLP/JSON, tests
/// and callers that edit records). It is decoded from the protobuf that
/// [`ProtobufRequestWriter`] writes, so the two encodings cannot disagree.
pub fn log_record(ctx: &Context, flow: &ExplainedFlow, observed: SystemTime) -> LogRecord {
    log_record_with_event_id(ctx, flow, None, observed)
}

/// [`log_record`] with the record's event id given (`None`: hashed from the
/// flow).
pub fn log_record_with_event_id(
    ctx: &Context,
    flow: &ExplainedFlow,
    id: Option<EventId>,
    observed: SystemTime,
) -> LogRecord {
    let mut buf = Vec::with_capacity(2048);
    write_flow_record(
        &mut ProtoWriter::new(&mut buf),
        ctx,
        flow,
        id,
        observed,
        &mut Direct,
        None,
    );
    // The writer emits a valid LogRecord by construction (the tests decode
    // every case); an empty record keeps this total without a panic path.
    LogRecord::decode(buf.as_slice()).unwrap_or_default()
}

/// The protobuf encoding of the `LogRecord` of one flow record (the bytes
/// of `prost::Message::encode_to_vec(&log_record(ctx, flow, observed))`),
/// appended to `out`: what an OTLP sink queues per record, written
/// straight from the flow without building the prost types.
pub fn write_log_record_protobuf(
    ctx: &Context,
    flow: &ExplainedFlow,
    observed: SystemTime,
    out: &mut Vec<u8>,
) {
    // Records are 1.5-4 KiB: one reservation instead of growth steps.
    out.reserve(4096);
    write_flow_record(
        &mut ProtoWriter::new(out),
        ctx,
        flow,
        None,
        observed,
        &mut Direct,
        None,
    );
}

/// An `ExportLogsServiceRequest` encoded as records are added: the
/// protobuf body an OTLP sink sends, written without building the prost
/// message tree and reusable across batches (its buffer is kept).
/// [`ProtobufRequestWriter::finish`] gives exactly the bytes of
/// [`encode_protobuf`] of [`export_request`] over the same records.
#[derive(Debug, Default)]
pub struct ProtobufRequestWriter {
    /// The `log_records` fields of the one `ScopeLogs`, tags included.
    records: Vec<u8>,
    count: usize,
}

impl ProtobufRequestWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the LogRecord of one flow record.
    pub fn push_flow(&mut self, ctx: &Context, flow: &ExplainedFlow, observed: SystemTime) {
        self.push_flow_with(ctx, flow, observed, &mut Direct);
    }

    fn push_flow_with(
        &mut self,
        ctx: &Context,
        flow: &ExplainedFlow,
        observed: SystemTime,
        parts: &mut impl Parts,
    ) {
        let mut w = ProtoWriter::new(&mut self.records);
        let record = w.begin_wide(SCOPE_LOGS_LOG_RECORDS);
        write_flow_record(&mut w, ctx, flow, None, observed, parts, None);
        w.end(record);
        self.count += 1;
    }

    /// Adds a record built as prost types (capture loss records).
    pub fn push_record(&mut self, record: &LogRecord) {
        prost::encoding::message::encode(SCOPE_LOGS_LOG_RECORDS, record, &mut self.records);
        self.count += 1;
    }

    /// Records added since the last [`ProtobufRequestWriter::finish`].
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends the request carrying the records added so far, under this
    /// exporter's resource and scope, to `out`, and starts a new batch.
    pub fn finish(&mut self, ctx: &Context, out: &mut Vec<u8>) {
        use prost::encoding::{encode_key, encode_varint, encoded_len_varint, message, string};
        // Everything around the records is small and once per batch: the
        // prost types and their encoders are fine here.
        let request = export_request(ctx, vec![]);
        let Some(rl) = request.resource_logs.first() else {
            return;
        };
        let Some(sl) = rl.scope_logs.first() else {
            return;
        };
        let scope_logs_len = sl.scope.as_ref().map_or(0, |s| message::encoded_len(1, s))
            + self.records.len()
            + string::encoded_len(3, &sl.schema_url);
        let resource_logs_len = rl
            .resource
            .as_ref()
            .map_or(0, |r| message::encoded_len(1, r))
            + 1
            + encoded_len_varint(scope_logs_len as u64)
            + scope_logs_len
            + string::encoded_len(3, &rl.schema_url);
        out.reserve(resource_logs_len + 16);
        // ExportLogsServiceRequest.resource_logs (1)
        encode_key(1, prost::encoding::WireType::LengthDelimited, out);
        encode_varint(resource_logs_len as u64, out);
        if let Some(r) = &rl.resource {
            message::encode(1, r, out);
        }
        // ResourceLogs.scope_logs (2)
        encode_key(2, prost::encoding::WireType::LengthDelimited, out);
        encode_varint(scope_logs_len as u64, out);
        if let Some(s) = &sl.scope {
            message::encode(1, s, out);
        }
        out.extend_from_slice(&self.records);
        string::encode(3, &sl.schema_url, out);
        string::encode(3, &rl.schema_url, out);
        self.records.clear();
        self.count = 0;
    }
}

// Field numbers of the OTLP messages written by hand (opentelemetry-proto
// `logs.proto` and `common.proto`), in the order prost writes them (by tag).
const SCOPE_LOGS_LOG_RECORDS: u32 = 2;
const LOG_RECORD_TIME_UNIX_NANO: u32 = 1;
const LOG_RECORD_SEVERITY_NUMBER: u32 = 2;
const LOG_RECORD_SEVERITY_TEXT: u32 = 3;
const LOG_RECORD_BODY: u32 = 5;
const LOG_RECORD_ATTRIBUTES: u32 = 6;
const LOG_RECORD_OBSERVED_TIME_UNIX_NANO: u32 = 11;
const LOG_RECORD_EVENT_NAME: u32 = 12;
const KEY_VALUE_KEY: u32 = 1;
const KEY_VALUE_VALUE: u32 = 2;
const KEY_VALUE_LIST_VALUES: u32 = 1;
const ARRAY_VALUE_VALUES: u32 = 1;
const ANY_VALUE_STRING: u32 = 1;
const ANY_VALUE_BOOL: u32 = 2;
const ANY_VALUE_INT: u32 = 3;
const ANY_VALUE_ARRAY: u32 = 5;
const ANY_VALUE_KVLIST: u32 = 6;

/// Attributes written as repeated `KeyValue` fields number `field`
/// (`LogRecord.attributes` at the top, `KeyValueList.values` inside a
/// kvlist). Keys are given in parts (`prefix`, name) to avoid building
/// `String`s.
struct Attributes<'w, 'a> {
    w: &'w mut ProtoWriter<'a>,
    field: u32,
}

/// A constant attribute key, pre-encoded as the `KeyValue.key` field
/// (see [`key!`]).
#[derive(Debug, Clone, Copy)]
struct EncodedKey(&'static [u8]);

/// The [`EncodedKey`] of a constant key, built at compile time.
macro_rules! key {
    ($k:expr) => {{
        const K: &str = $k;
        const F: [u8; K.len() + 2] = crate::protobuf::key_field::<{ K.len() + 2 }>(K);
        EncodedKey(&F)
    }};
}

/// An attribute key: pre-encoded, or parts written back to back (label
/// keys under a prefix).
trait AttrKey: Copy {
    /// Bytes of the whole `KeyValue.key` field.
    fn field_len(self) -> usize;
    fn write(self, w: &mut ProtoWriter<'_>);
}

impl AttrKey for EncodedKey {
    #[inline(always)]
    fn field_len(self) -> usize {
        self.0.len()
    }

    #[inline(always)]
    fn write(self, w: &mut ProtoWriter<'_>) {
        w.encoded(self.0);
    }
}

impl<const N: usize> AttrKey for &[&str; N] {
    #[inline(always)]
    fn field_len(self) -> usize {
        let len: usize = self.iter().map(|k| k.len()).sum();
        1 + varint_len(len as u64) + len
    }

    #[inline(always)]
    fn write(self, w: &mut ProtoWriter<'_>) {
        w.string_parts(KEY_VALUE_KEY, self);
    }
}

impl<'a> Attributes<'_, 'a> {
    /// Opens a `KeyValue` whose value is written next; `wide` when the
    /// value is expected to be 128 bytes or more (see
    /// [`ProtoWriter::begin_wide`]).
    fn begin_value(&mut self, key: impl AttrKey, wide: bool) -> (Nested, Nested) {
        let kv = if wide {
            self.w.begin_wide(self.field)
        } else {
            self.w.begin(self.field)
        };
        key.write(self.w);
        let any = if wide {
            self.w.begin_wide(KEY_VALUE_VALUE)
        } else {
            self.w.begin(KEY_VALUE_VALUE)
        };
        (kv, any)
    }

    fn end_value(&mut self, (kv, any): (Nested, Nested)) {
        self.w.end(any);
        self.w.end(kv);
    }

    /// A `KeyValue` whose `AnyValue` is `any_len` bytes long, opened with
    /// every length known up front; the caller writes the `AnyValue`'s one
    /// field next.
    #[inline(always)]
    fn begin_sized_value(&mut self, key: impl AttrKey, any_len: usize) {
        let kv_len = key.field_len() + 1 + varint_len(any_len as u64) + any_len;
        self.w.begin_sized(self.field, kv_len);
        key.write(self.w);
        self.w.begin_sized(KEY_VALUE_VALUE, any_len);
    }

    #[inline(always)]
    fn string(&mut self, key: impl AttrKey, v: &str) {
        self.ascii(key, v.as_bytes());
    }

    /// A string value from bytes known to be UTF-8 (text held inline).
    #[inline(always)]
    fn ascii(&mut self, key: impl AttrKey, v: &[u8]) {
        self.begin_sized_value(key, 1 + varint_len(v.len() as u64) + v.len());
        self.w.ascii(ANY_VALUE_STRING, v);
    }

    /// A string value written with `write!` straight into the record.
    fn string_fmt(
        &mut self,
        key: impl AttrKey,
        f: impl FnOnce(&mut crate::protobuf::TextWriter<'_>) -> fmt::Result,
    ) {
        let open = self.begin_value(key, false);
        let s = self.w.begin(ANY_VALUE_STRING);
        // Writing to a Vec cannot fail.
        let _ = f(&mut self.w.text());
        self.w.end(s);
        self.end_value(open);
    }

    /// An int64 value; counters beyond `i64::MAX` saturate.
    #[inline(always)]
    fn int(&mut self, key: impl AttrKey, v: u64) {
        let v = i64::try_from(v).unwrap_or(i64::MAX) as u64;
        self.begin_sized_value(key, 1 + varint_len(v));
        self.w.varint(ANY_VALUE_INT, v);
    }

    #[inline(always)]
    fn boolean(&mut self, key: impl AttrKey, v: bool) {
        self.begin_sized_value(key, 2);
        self.w.varint(ANY_VALUE_BOOL, u64::from(v));
    }

    /// An array of strings, each written by `item`.
    fn strings<T>(
        &mut self,
        key: impl AttrKey,
        items: impl IntoIterator<Item = T>,
        mut item: impl FnMut(&mut crate::protobuf::TextWriter<'_>, T) -> fmt::Result,
    ) {
        let open = self.begin_value(key, false);
        let array = self.w.begin(ANY_VALUE_ARRAY);
        for i in items {
            let any = self.w.begin(ARRAY_VALUE_VALUES);
            let s = self.w.begin(ANY_VALUE_STRING);
            let _ = item(&mut self.w.text(), i);
            self.w.end(s);
            self.w.end(any);
        }
        self.w.end(array);
        self.end_value(open);
    }

    /// A `kvlist` value whose members `members` writes.
    /// `wide` as for [`Attributes::begin_value`].
    fn kvlist(
        &mut self,
        key: impl AttrKey,
        wide: bool,
        members: impl FnOnce(&mut Attributes<'_, 'a>),
    ) {
        let open = self.begin_value(key, wide);
        let list = if wide {
            self.w.begin_wide(ANY_VALUE_KVLIST)
        } else {
            self.w.begin(ANY_VALUE_KVLIST)
        };
        members(&mut Attributes {
            w: self.w,
            field: KEY_VALUE_LIST_VALUES,
        });
        self.w.end(list);
        self.end_value(open);
    }
}

/// The per-window fields of a `LogRecord`: the holes of its template (see
/// `crate::template`), each a whole field, written by [`fill_hole`].
mod hole {
    use crate::template::Hole;
    pub(super) const TIME: Hole = 0;
    pub(super) const EVENT_ID: Hole = 1;
    pub(super) const WINDOW_START: Hole = 2;
    pub(super) const LAST_PACKET: Hole = 3;
    pub(super) const BYTES_FORWARD: Hole = 4;
    pub(super) const BYTES_REVERSE: Hole = 5;
    pub(super) const PACKETS_FORWARD: Hole = 6;
    pub(super) const PACKETS_REVERSE: Hole = 7;
    pub(super) const OBSERVED_TIME: Hole = 8;
    pub(super) const SOURCE_PORT: Hole = 9;
    pub(super) const COMMUNITY_ID: Hole = 10;
    pub(super) const FIRST_PACKET: Hole = 11;
    /// The holes of a connection's own values (the same in all its
    /// records).
    pub(super) const PER_CONNECTION: crate::template::HoleSet =
        crate::template::HoleSet(1 << SOURCE_PORT | 1 << COMMUNITY_ID | 1 << FIRST_PACKET);
}

/// Writes the field of `h` for the record of `f`, as
/// [`write_flow_record`] writes it. `kept` is the template's field there,
/// copied for the fields of a connection when the template is of the same
/// connection.
#[inline]
fn fill_hole(
    h: crate::template::Hole,
    kept: &[u8],
    same_connection: bool,
    f: &flowscribe_model::Flow,
    event_id: EventId,
    times: &WindowNanos,
    out: &mut Vec<u8>,
) {
    if same_connection && matches!(h, hole::COMMUNITY_ID | hole::FIRST_PACKET) {
        out.extend_from_slice(kept);
        return;
    }
    match h {
        hole::TIME => nanos_field(
            &mut ProtoWriter::new(out),
            LOG_RECORD_TIME_UNIX_NANO,
            times.window_end,
        ),
        hole::EVENT_ID => event_id_attribute(out, event_id),
        hole::WINDOW_START => int_attribute(
            out,
            key!("flowscribe.flow.window.start_unix_nano"),
            times.window_start,
        ),
        hole::LAST_PACKET => int_attribute(
            out,
            key!("flowscribe.flow.last_packet_unix_nano"),
            times.last_packet,
        ),
        hole::BYTES_FORWARD => {
            int_attribute(out, key!("flowscribe.flow.bytes.forward"), f.forward.bytes);
        }
        hole::BYTES_REVERSE => {
            int_attribute(out, key!("flowscribe.flow.bytes.reverse"), f.reverse.bytes);
        }
        hole::PACKETS_FORWARD => int_attribute(
            out,
            key!("flowscribe.flow.packets.forward"),
            f.forward.packets,
        ),
        hole::PACKETS_REVERSE => int_attribute(
            out,
            key!("flowscribe.flow.packets.reverse"),
            f.reverse.packets,
        ),
        hole::SOURCE_PORT => int_attribute(out, key!("source.port"), f.key.src_port.into()),
        hole::COMMUNITY_ID => {
            // The template has one, so the key's families match and so
            // does this one's: `None` cannot happen here.
            if let Some(c) = community_id_text(&f.key, times.community_id_seed) {
                Attributes {
                    w: &mut ProtoWriter::new(out),
                    field: LOG_RECORD_ATTRIBUTES,
                }
                .ascii(key!("flowscribe.community_id"), c.as_bytes());
            }
        }
        hole::FIRST_PACKET => int_attribute(
            out,
            key!("flowscribe.flow.first_packet_unix_nano"),
            unix_nanos(f.first_packet),
        ),
        _ => nanos_field(
            &mut ProtoWriter::new(out),
            LOG_RECORD_OBSERVED_TIME_UNIX_NANO,
            times.observed,
        ),
    }
}

/// The record attribute [`Attributes::int`] writes for `key` and `v`,
/// put together in a buffer and appended with one copy of a known size
/// (one capacity check instead of seven): a template's counters and
/// times, several per record.
#[inline(always)]
fn int_attribute(out: &mut Vec<u8>, key: EncodedKey, v: u64) {
    // Room for the tags and lengths (5 bytes), the key and 16 bytes of
    // varint.
    const ROOM: usize = 96;
    let v = i64::try_from(v).unwrap_or(i64::MAX) as u64;
    let (digits, n) = crate::protobuf::varint_bytes(v);
    let k = key.0.len();
    let any_len = 1 + n;
    let kv_len = k + 2 + any_len;
    if 5 + k + digits.len() > ROOM || kv_len >= 0x80 {
        let w = &mut ProtoWriter::new(out);
        Attributes {
            w,
            field: LOG_RECORD_ATTRIBUTES,
        }
        .int(key, v);
        return;
    }
    let mut b = [0u8; ROOM];
    // Field numbers under 16 and lengths under 128 are one byte each.
    b[0] = (LOG_RECORD_ATTRIBUTES << 3 | 2) as u8;
    b[1] = kv_len as u8;
    b[2..2 + k].copy_from_slice(key.0);
    b[2 + k] = (KEY_VALUE_VALUE << 3 | 2) as u8;
    b[3 + k] = any_len as u8;
    b[4 + k] = (ANY_VALUE_INT << 3) as u8;
    b[5 + k..5 + k + digits.len()].copy_from_slice(&digits);
    let start = out.len();
    out.extend_from_slice(&b);
    out.truncate(start + 5 + k + n);
}

/// `flowscribe.event_id` as `Attributes::ascii` writes it: every length
/// is fixed, so the attribute is one block of known size.
#[inline(always)]
fn event_id_attribute(out: &mut Vec<u8>, id: EventId) {
    const KEY: EncodedKey = key!("flowscribe.event_id");
    const HEAD: usize = 2 + KEY.0.len() + 4;
    const PREFIX: [u8; HEAD] = {
        let mut p = [0u8; HEAD];
        p[0] = (LOG_RECORD_ATTRIBUTES << 3 | 2) as u8;
        p[1] = (KEY.0.len() + 2 + 2 + 32) as u8;
        let mut i = 0;
        while i < KEY.0.len() {
            p[2 + i] = KEY.0[i];
            i += 1;
        }
        p[HEAD - 4] = (KEY_VALUE_VALUE << 3 | 2) as u8;
        p[HEAD - 3] = 2 + 32;
        p[HEAD - 2] = (ANY_VALUE_STRING << 3 | 2) as u8;
        p[HEAD - 1] = 32;
        p
    };
    let mut b = [0u8; HEAD + 32];
    b[..HEAD].copy_from_slice(&PREFIX);
    b[HEAD..].copy_from_slice(&id.hex_digits());
    out.extend_from_slice(&b);
}

/// The times of a record's holes, in nanoseconds since the epoch.
struct WindowNanos {
    window_start: u64,
    window_end: u64,
    last_packet: u64,
    observed: u64,
    /// The context's Community ID seed (for records of new connections).
    community_id_seed: u16,
}

/// The last window start and end and observed time converted, which the
/// records of one batch share (one drain, one call; a connection's window
/// starts where the last drain's ended).
#[derive(Debug, Default)]
struct LastNanos {
    window_start: LastConverted<u64>,
    window_end: LastConverted<u64>,
    observed: LastConverted<u64>,
}

impl LastNanos {
    #[inline]
    fn window(
        &mut self,
        f: &flowscribe_model::Flow,
        observed: SystemTime,
        community_id_seed: u16,
    ) -> WindowNanos {
        WindowNanos {
            window_start: self.window_start.of(f.window_start, unix_nanos),
            window_end: self.window_end.of(f.window_end, unix_nanos),
            last_packet: unix_nanos(f.last_packet),
            observed: self.observed.of(observed, unix_nanos),
            community_id_seed,
        }
    }
}

/// A `fixed64` time field; zero is proto3's default, which prost leaves
/// out, and so do we.
#[inline]
fn time_field(w: &mut ProtoWriter<'_>, field: u32, t: SystemTime) {
    nanos_field(w, field, unix_nanos(t));
}

#[inline]
fn nanos_field(w: &mut ProtoWriter<'_>, field: u32, nanos: u64) {
    if nanos != 0 {
        w.fixed64(field, nanos);
    }
}

/// Notes in `marks` (when recording) that the field of `hole` took
/// `start..end` of the record starting at `base`.
#[inline]
fn mark(
    marks: &mut Option<&mut Vec<crate::template::Mark>>,
    base: usize,
    start: usize,
    end: usize,
    hole: crate::template::Hole,
) {
    if let Some(m) = marks {
        m.push((start - base, end - base, hole));
    }
}

/// The fields of the LogRecord of one flow record, in tag order; with
/// `marks`, where the per-window fields went (see `crate::template`).
fn write_flow_record(
    w: &mut ProtoWriter<'_>,
    ctx: &Context,
    flow: &ExplainedFlow,
    id: Option<EventId>,
    observed: SystemTime,
    parts: &mut impl Parts,
    mut marks: Option<&mut Vec<crate::template::Mark>>,
) {
    let view = FlowView::with_event_id(ctx, flow, id);
    let ef = &flow.flow;
    let f = &ef.flow;
    let key = &f.key;
    let base = w.buf.len();

    let (severity_number, severity_text) = match view.severity {
        Severity::Info => (9, "INFO"),
        Severity::Warn => (13, "WARN"),
    };
    let start = w.buf.len();
    time_field(w, LOG_RECORD_TIME_UNIX_NANO, f.window_end);
    mark(&mut marks, base, start, w.buf.len(), hole::TIME);
    w.varint(LOG_RECORD_SEVERITY_NUMBER, severity_number);
    w.string_parts(LOG_RECORD_SEVERITY_TEXT, &[severity_text]);
    let body = w.begin(LOG_RECORD_BODY);
    let summary = w.begin(ANY_VALUE_STRING);
    let _ = view.write_summary(&mut w.text());
    w.end(summary);
    w.end(body);

    let mut a = Attributes {
        w,
        field: LOG_RECORD_ATTRIBUTES,
    };
    a.string(
        key!("network.transport"),
        flowscribe_model::protocol_name(key.protocol),
    );
    a.string(
        key!("network.type"),
        if key.src_addr.is_ipv4() {
            "ipv4"
        } else {
            "ipv6"
        },
    );
    a.ascii(key!("source.address"), view.src_text.as_bytes());
    a.ascii(key!("destination.address"), view.dst_text.as_bytes());
    if has_ports(key.protocol) {
        let start = a.w.buf.len();
        a.int(key!("source.port"), key.src_port.into());
        mark(&mut marks, base, start, a.w.buf.len(), hole::SOURCE_PORT);
        a.int(key!("destination.port"), key.dst_port.into());
    }
    a.string(key!("network.interface.name"), &f.interface.name);
    let start = a.w.buf.len();
    a.ascii(key!("flowscribe.event_id"), view.event_id.as_bytes());
    mark(&mut marks, base, start, a.w.buf.len(), hole::EVENT_ID);
    if let Some(c) = &view.community_id {
        let start = a.w.buf.len();
        a.ascii(key!("flowscribe.community_id"), c.as_bytes());
        mark(&mut marks, base, start, a.w.buf.len(), hole::COMMUNITY_ID);
    }
    a.string(key!("flowscribe.flow.state"), f.state.as_str());
    if let Some(e) = f.end_reason {
        a.string(key!("flowscribe.flow.end_reason"), e.as_str());
    }
    a.string(key!("flowscribe.flow.direction"), view.direction.as_str());
    a.int(key!("flowscribe.flow.iana_number"), key.protocol.into());
    let start = a.w.buf.len();
    a.int(
        key!("flowscribe.flow.window.start_unix_nano"),
        unix_nanos(f.window_start),
    );
    mark(&mut marks, base, start, a.w.buf.len(), hole::WINDOW_START);
    let start = a.w.buf.len();
    a.int(
        key!("flowscribe.flow.first_packet_unix_nano"),
        unix_nanos(f.first_packet),
    );
    mark(&mut marks, base, start, a.w.buf.len(), hole::FIRST_PACKET);
    let start = a.w.buf.len();
    a.int(
        key!("flowscribe.flow.last_packet_unix_nano"),
        unix_nanos(f.last_packet),
    );
    mark(&mut marks, base, start, a.w.buf.len(), hole::LAST_PACKET);
    let start = a.w.buf.len();
    a.int(key!("flowscribe.flow.bytes.forward"), f.forward.bytes);
    mark(&mut marks, base, start, a.w.buf.len(), hole::BYTES_FORWARD);
    let start = a.w.buf.len();
    a.int(key!("flowscribe.flow.bytes.reverse"), f.reverse.bytes);
    mark(&mut marks, base, start, a.w.buf.len(), hole::BYTES_REVERSE);
    let start = a.w.buf.len();
    a.int(key!("flowscribe.flow.packets.forward"), f.forward.packets);
    mark(
        &mut marks,
        base,
        start,
        a.w.buf.len(),
        hole::PACKETS_FORWARD,
    );
    let start = a.w.buf.len();
    a.int(key!("flowscribe.flow.packets.reverse"), f.reverse.packets);
    mark(
        &mut marks,
        base,
        start,
        a.w.buf.len(),
        hole::PACKETS_REVERSE,
    );
    if key.protocol == 6 {
        a.strings(
            key!("flowscribe.flow.tcp_flags.forward"),
            tcp_flag_iter(f.forward.tcp_flags),
            |t, n| t.write_str(n),
        );
        a.strings(
            key!("flowscribe.flow.tcp_flags.reverse"),
            tcp_flag_iter(f.reverse.tcp_flags),
            |t, n| t.write_str(n),
        );
    }
    if is_icmp(key.protocol) {
        a.int(key!("flowscribe.flow.icmp.type"), key.src_port.into());
        a.int(key!("flowscribe.flow.icmp.code"), key.dst_port.into());
    }
    if let Some(d) = &f.drops {
        a.int(
            key!("flowscribe.flow.drops.packets_forward"),
            d.packets_forward,
        );
        a.int(
            key!("flowscribe.flow.drops.packets_reverse"),
            d.packets_reverse,
        );
        a.int(key!("flowscribe.flow.drops.bytes"), d.bytes);
        a.string(key!("flowscribe.flow.drops.last_reason"), &d.last_reason);
    }
    parts.endpoint(&mut a, Side::Source, &ef.source);
    stale_attributes(&mut a, &SOURCE_KEYS, &ef.source);
    parts.endpoint(&mut a, Side::Destination, &ef.destination);
    stale_attributes(&mut a, &DESTINATION_KEYS, &ef.destination);
    a.boolean(key!("flowscribe.identity_degraded"), ef.identity_degraded);

    if let Some(d) = &view.decision {
        a.string_fmt(key!("security_rule.name"), |t| write_rule_name(t, d));
        a.string(key!("security_rule.category"), d.side.direction.as_str());
        if let Some(h) = d.hit {
            parts.rule_policy(&mut a, &h.policy);
            a.string_fmt(key!("flowscribe.policy.rule_id"), |t| write_rule_id(t, d));
        }
        a.string(key!("flowscribe.policy.reason"), d.side.reason.as_str());
        a.string(
            key!("flowscribe.policy.direction"),
            d.side.direction.as_str(),
        );
    }
    if let Some(t) = &flow.trace {
        a.string(
            key!("flowscribe.policy.verdict"),
            t.enforced.verdict.as_str(),
        );
        a.string(
            key!("flowscribe.policy.verdict_source"),
            t.verdict_source.as_str(),
        );
        a.string(
            key!("flowscribe.policy.observed"),
            observed_str(&t.observed),
        );
        if let Observed::Dropped { reason } = &t.observed {
            a.string(key!("flowscribe.policy.observed_drop_reason"), reason);
        }
        if let Some(m) = t.mismatch {
            a.string(key!("flowscribe.policy.mismatch"), m.as_str());
        }
        // A side without hits is about 60 bytes, one with hits 200 or more.
        let egress = &t.enforced.egress;
        a.kvlist(
            key!("flowscribe.policy.egress"),
            !egress.hits.is_empty(),
            |l| side(l, &t.enforced.egress, parts),
        );
        let ingress = &t.enforced.ingress;
        a.kvlist(
            key!("flowscribe.policy.ingress"),
            !ingress.hits.is_empty(),
            |l| side(l, &t.enforced.ingress, parts),
        );
        if let Some(p) = &t.pending {
            a.kvlist(key!("flowscribe.policy.pending"), true, |l| {
                evaluation(l, p, t.would_change(), parts)
            });
        }
        if !t.invalid_policies.is_empty() {
            a.strings(
                key!("flowscribe.policy.invalid_policies"),
                &t.invalid_policies,
                |w, p| {
                    w.write_str(p.kind.as_str())?;
                    w.write_char(' ')?;
                    write_policy_display(w, p)
                },
            );
        }
    }

    let w = a.w;
    let start = w.buf.len();
    time_field(w, LOG_RECORD_OBSERVED_TIME_UNIX_NANO, observed);
    mark(&mut marks, base, start, w.buf.len(), hole::OBSERVED_TIME);
    w.string_parts(LOG_RECORD_EVENT_NAME, &[FLOW_EVENT_NAME]);
}

/// The LogRecord of one capture loss report (WARN: data is missing).
pub fn loss_record(ctx: &Context, loss: &CaptureLoss, observed: SystemTime) -> LogRecord {
    let body = format!(
        "capture lost {} {} ({} bytes) on {}",
        loss.count,
        if loss.reason == flowscribe_model::LossReason::RingReserveFailed {
            "events"
        } else {
            "packets"
        },
        loss.bytes,
        ctx.node
    );
    LogRecord {
        time_unix_nano: unix_nanos(loss.window_end),
        observed_time_unix_nano: unix_nanos(observed),
        severity_number: 13,
        severity_text: "WARN".to_string(),
        body: Some(AnyValue {
            value: Some(s(body)),
        }),
        attributes: vec![
            kv("flowscribe.loss.stage", s("capture")),
            kv("flowscribe.loss.reason", s(loss.reason.as_str())),
            kv(
                "flowscribe.loss.loses_flow_data",
                boolean(loss.reason.loses_flow_data()),
            ),
            kv("flowscribe.loss.count", int(loss.count)),
            kv("flowscribe.loss.bytes", int(loss.bytes)),
            kv(
                "flowscribe.loss.window.start_unix_nano",
                int(unix_nanos(loss.window_start)),
            ),
        ],
        event_name: LOSS_EVENT_NAME.to_string(),
        ..Default::default()
    }
}

/// The pre-encoded attribute keys of one endpoint (under
/// `flowscribe.source.` or `flowscribe.destination.`).
struct EndpointKeys {
    prefix: &'static str,
    kind: EncodedKey,
    namespace: EncodedKey,
    pod_name: EncodedKey,
    pod_uid: EncodedKey,
    service_account: EncodedKey,
    workload_kind: EncodedKey,
    workload_name: EncodedKey,
    node_name: EncodedKey,
    service_name: EncodedKey,
    service_namespace: EncodedKey,
    service_port_name: EncodedKey,
    network: EncodedKey,
    stale: EncodedKey,
    deleted_at: EncodedKey,
}

macro_rules! endpoint_keys {
    ($prefix:literal) => {
        EndpointKeys {
            prefix: $prefix,
            kind: key!(concat!($prefix, "kind")),
            namespace: key!(concat!($prefix, "k8s.namespace.name")),
            pod_name: key!(concat!($prefix, "k8s.pod.name")),
            pod_uid: key!(concat!($prefix, "k8s.pod.uid")),
            service_account: key!(concat!($prefix, "service_account")),
            workload_kind: key!(concat!($prefix, "workload.kind")),
            workload_name: key!(concat!($prefix, "workload.name")),
            node_name: key!(concat!($prefix, "k8s.node.name")),
            service_name: key!(concat!($prefix, "k8s.service.name")),
            service_namespace: key!(concat!($prefix, "k8s.service.namespace")),
            service_port_name: key!(concat!($prefix, "k8s.service.port_name")),
            network: key!(concat!($prefix, "network")),
            stale: key!(concat!($prefix, "stale")),
            deleted_at: key!(concat!($prefix, "deleted_at_unix_nano")),
        }
    };
}

const SOURCE_KEYS: EndpointKeys = endpoint_keys!("flowscribe.source.");
const DESTINATION_KEYS: EndpointKeys = endpoint_keys!("flowscribe.destination.");

/// Which end of the flow an endpoint is (its attributes' key prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Source,
    Destination,
}

impl Side {
    fn keys(self) -> &'static EndpointKeys {
        match self {
            Side::Source => &SOURCE_KEYS,
            Side::Destination => &DESTINATION_KEYS,
        }
    }
}

/// Where the attributes that depend only on shared objects (an
/// endpoint's pod/node/service/network, a policy) come from: written on the
/// spot ([`Direct`]) or copied from an [`OtlpEncoder`]'s cache.
trait Parts {
    /// An endpoint's attributes up to (not including) `stale`.
    fn endpoint(&mut self, a: &mut Attributes<'_, '_>, side: Side, e: &Endpoint);
    /// A hit's attributes from its policy, `tier` to `resource_version`.
    fn hit_policy(&mut self, l: &mut Attributes<'_, '_>, p: &Arc<PolicyRef>);
    /// `security_rule.ruleset.name`, `.uuid` and `.version`.
    fn rule_policy(&mut self, a: &mut Attributes<'_, '_>, p: &Arc<PolicyRef>);
}

/// [`Parts`] written on the spot.
struct Direct;

impl Parts for Direct {
    fn endpoint(&mut self, a: &mut Attributes<'_, '_>, side: Side, e: &Endpoint) {
        endpoint_attributes(a, side.keys(), e);
    }

    fn hit_policy(&mut self, l: &mut Attributes<'_, '_>, p: &Arc<PolicyRef>) {
        hit_policy(l, p);
    }

    fn rule_policy(&mut self, a: &mut Attributes<'_, '_>, p: &Arc<PolicyRef>) {
        rule_policy(a, p);
    }
}

fn rule_policy(a: &mut Attributes<'_, '_>, p: &PolicyRef) {
    a.string_fmt(key!("security_rule.ruleset.name"), |t| {
        write_policy_display(t, p)
    });
    a.string(key!("security_rule.uuid"), &p.uid);
    a.string(key!("security_rule.version"), &p.resource_version);
}

/// The attributes of a part, rendered once into bytes that are copied
/// into every record that shares it: repeated `KeyValue` fields number
/// `field`, complete (tags and lengths included), so they concatenate.
fn render(field: u32, f: impl FnOnce(&mut Attributes<'_, '_>)) -> Box<[u8]> {
    let mut buf = Vec::with_capacity(256);
    f(&mut Attributes {
        w: &mut ProtoWriter::new(&mut buf),
        field,
    });
    buf.into_boxed_slice()
}

/// An endpoint's attributes up to `stale` (those of its shared objects).
fn endpoint_attributes(a: &mut Attributes<'_, '_>, keys: &EndpointKeys, e: &Endpoint) {
    a.string(keys.kind, e.kind.as_str());
    if let Some(p) = &e.pod {
        a.string(keys.namespace, &p.namespace);
        a.string(keys.pod_name, &p.name);
        a.string(keys.pod_uid, &p.uid);
        for (k, v) in p.labels.iter() {
            a.string(&[keys.prefix, "k8s.pod.label.", k], v);
        }
        if let Some(sa) = &p.service_account {
            a.string(keys.service_account, sa);
        }
        if let Some(wl) = &p.workload {
            a.string(keys.workload_kind, &wl.kind);
            a.string(keys.workload_name, &wl.name);
        }
    }
    if let Some(n) = &e.node {
        a.string(keys.node_name, n);
    }
    if let Some(svc) = &e.service {
        a.string(keys.service_name, &svc.name);
        a.string(keys.service_namespace, &svc.namespace);
        if let Some(p) = &svc.port_name {
            a.string(keys.service_port_name, p);
        }
    }
    if let Some(n) = &e.network {
        a.string(keys.network, n);
    }
}

/// An endpoint's `stale` and `deleted_at_unix_nano` (per record).
fn stale_attributes(a: &mut Attributes<'_, '_>, keys: &EndpointKeys, e: &Endpoint) {
    if let Some(st) = e.stale {
        a.boolean(keys.stale, true);
        a.int(keys.deleted_at, unix_nanos(st.deleted_at));
    }
}

fn hit(l: &mut Attributes<'_, '_>, h: &PolicyHit, parts: &mut impl Parts) {
    parts.hit_policy(l, &h.policy);
    if let Some(i) = h.rule_index {
        l.int(key!("rule_index"), i.into());
    }
    if let Some(n) = &h.rule_name {
        l.string(key!("rule_name"), n);
    }
    l.string(key!("action"), h.action.as_str());
    l.boolean(key!("staged"), h.policy.kind.is_staged());
}

fn hit_policy(l: &mut Attributes<'_, '_>, p: &PolicyRef) {
    l.string(key!("tier"), &p.tier);
    l.string(key!("kind"), p.kind.as_str());
    l.string(key!("api_version"), p.kind.api_version());
    if let Some(ns) = &p.namespace {
        l.string(key!("namespace"), ns);
    }
    l.string(key!("name"), &p.name);
    l.string(key!("uid"), &p.uid);
    l.string(key!("resource_version"), &p.resource_version);
}

fn side(l: &mut Attributes<'_, '_>, sv: &SideVerdict, parts: &mut impl Parts) {
    l.string(key!("verdict"), sv.verdict.as_str());
    l.string(key!("reason"), sv.reason.as_str());
    // `hits`: an array of kvlists.
    let wide = !sv.hits.is_empty();
    let open = l.begin_value(key!("hits"), wide);
    let array = if wide {
        l.w.begin_wide(ANY_VALUE_ARRAY)
    } else {
        l.w.begin(ANY_VALUE_ARRAY)
    };
    for h in sv.hits.iter() {
        let any = l.w.begin_wide(ARRAY_VALUE_VALUES);
        let list = l.w.begin_wide(ANY_VALUE_KVLIST);
        hit(
            &mut Attributes {
                w: l.w,
                field: KEY_VALUE_LIST_VALUES,
            },
            h,
            parts,
        );
        l.w.end(list);
        l.w.end(any);
    }
    l.w.end(array);
    l.end_value(open);
}

fn evaluation(
    l: &mut Attributes<'_, '_>,
    e: &Evaluation,
    would_change: bool,
    parts: &mut impl Parts,
) {
    l.string(key!("verdict"), e.verdict.as_str());
    l.boolean(key!("would_change"), would_change);
    l.kvlist(key!("egress"), !e.egress.hits.is_empty(), |s| {
        side(s, &e.egress, parts)
    });
    l.kvlist(key!("ingress"), !e.ingress.hits.is_empty(), |s| {
        side(s, &e.ingress, parts)
    });
}

// ---- OTLP/JSON -----------------------------------------------------------

/// Appends the OTLP/JSON encoding of `request` to `out` (one line, no
/// trailing newline).
pub fn write_json(request: &ExportLogsServiceRequest, out: &mut Vec<u8>) {
    let mut w = JsonWriter { out, first: vec![] };
    w.open('{');
    w.key("resourceLogs");
    w.open('[');
    for rl in &request.resource_logs {
        w.sep();
        resource_logs_json(&mut w, rl);
    }
    w.close(']');
    w.close('}');
}

fn resource_logs_json(w: &mut JsonWriter<'_>, rl: &ResourceLogs) {
    w.open('{');
    if let Some(r) = &rl.resource {
        w.key("resource");
        w.open('{');
        attributes_json(w, &r.attributes);
        if r.dropped_attributes_count != 0 {
            w.key("droppedAttributesCount");
            w.raw(&r.dropped_attributes_count.to_string());
        }
        w.close('}');
    }
    w.key("scopeLogs");
    w.open('[');
    for sl in &rl.scope_logs {
        w.sep();
        w.open('{');
        if let Some(scope) = &sl.scope {
            w.key("scope");
            w.open('{');
            if !scope.name.is_empty() {
                w.key("name");
                w.string(&scope.name);
            }
            if !scope.version.is_empty() {
                w.key("version");
                w.string(&scope.version);
            }
            attributes_json(w, &scope.attributes);
            w.close('}');
        }
        w.key("logRecords");
        w.open('[');
        for r in &sl.log_records {
            w.sep();
            log_record_json(w, r);
        }
        w.close(']');
        if !sl.schema_url.is_empty() {
            w.key("schemaUrl");
            w.string(&sl.schema_url);
        }
        w.close('}');
    }
    w.close(']');
    if !rl.schema_url.is_empty() {
        w.key("schemaUrl");
        w.string(&rl.schema_url);
    }
    w.close('}');
}

fn log_record_json(w: &mut JsonWriter<'_>, r: &LogRecord) {
    w.open('{');
    if r.time_unix_nano != 0 {
        w.key("timeUnixNano");
        w.string(&r.time_unix_nano.to_string());
    }
    if r.observed_time_unix_nano != 0 {
        w.key("observedTimeUnixNano");
        w.string(&r.observed_time_unix_nano.to_string());
    }
    if r.severity_number != 0 {
        w.key("severityNumber");
        w.raw(&r.severity_number.to_string());
    }
    if !r.severity_text.is_empty() {
        w.key("severityText");
        w.string(&r.severity_text);
    }
    if let Some(b) = &r.body {
        w.key("body");
        any_value_json(w, b);
    }
    attributes_json(w, &r.attributes);
    if r.dropped_attributes_count != 0 {
        w.key("droppedAttributesCount");
        w.raw(&r.dropped_attributes_count.to_string());
    }
    if r.flags != 0 {
        w.key("flags");
        w.raw(&r.flags.to_string());
    }
    if !r.trace_id.is_empty() {
        w.key("traceId");
        w.string(&crate::hex::lower(&r.trace_id));
    }
    if !r.span_id.is_empty() {
        w.key("spanId");
        w.string(&crate::hex::lower(&r.span_id));
    }
    if !r.event_name.is_empty() {
        w.key("eventName");
        w.string(&r.event_name);
    }
    w.close('}');
}

fn attributes_json(w: &mut JsonWriter<'_>, attributes: &[KeyValue]) {
    if attributes.is_empty() {
        return;
    }
    w.key("attributes");
    key_values_json(w, attributes);
}

fn key_values_json(w: &mut JsonWriter<'_>, kvs: &[KeyValue]) {
    w.open('[');
    for kv in kvs {
        w.sep();
        w.open('{');
        w.key("key");
        w.string(&kv.key);
        if let Some(v) = &kv.value {
            w.key("value");
            any_value_json(w, v);
        }
        w.close('}');
    }
    w.close(']');
}

fn any_value_json(w: &mut JsonWriter<'_>, v: &AnyValue) {
    w.open('{');
    match &v.value {
        Some(any_value::Value::StringValue(x)) => {
            w.key("stringValue");
            w.string(x);
        }
        Some(any_value::Value::BoolValue(x)) => {
            w.key("boolValue");
            w.raw(if *x { "true" } else { "false" });
        }
        Some(any_value::Value::IntValue(x)) => {
            w.key("intValue");
            w.string(&x.to_string());
        }
        Some(any_value::Value::DoubleValue(x)) => {
            w.key("doubleValue");
            if x.is_finite() {
                w.raw(&x.to_string());
            } else if x.is_nan() {
                w.string("NaN");
            } else if *x > 0.0 {
                w.string("Infinity");
            } else {
                w.string("-Infinity");
            }
        }
        Some(any_value::Value::ArrayValue(a)) => {
            // `values` is written even when empty: the opentelemetry-proto
            // deserializer (unlike protojson) requires it.
            w.key("arrayValue");
            w.open('{');
            w.key("values");
            w.open('[');
            for item in &a.values {
                w.sep();
                any_value_json(w, item);
            }
            w.close(']');
            w.close('}');
        }
        Some(any_value::Value::KvlistValue(l)) => {
            w.key("kvlistValue");
            w.open('{');
            w.key("values");
            key_values_json(w, &l.values);
            w.close('}');
        }
        Some(any_value::Value::BytesValue(b)) => {
            use base64::Engine as _;
            w.key("bytesValue");
            w.string(&base64::engine::general_purpose::STANDARD.encode(b));
        }
        Some(any_value::Value::StringValueStrindex(i)) => {
            w.key("stringValueStrindex");
            w.raw(&i.to_string());
        }
        None => {}
    }
    w.close('}');
}

/// A minimal JSON writer: tracks whether a separator is due at each
/// nesting level.
struct JsonWriter<'a> {
    out: &'a mut Vec<u8>,
    /// One entry per open object/array: true until its first member.
    first: Vec<bool>,
}

impl JsonWriter<'_> {
    fn open(&mut self, c: char) {
        self.out.push(c as u8);
        self.first.push(true);
    }

    fn close(&mut self, c: char) {
        self.out.push(c as u8);
        self.first.pop();
    }

    /// A comma before every member but the first of the current level.
    fn sep(&mut self) {
        if let Some(first) = self.first.last_mut() {
            if *first {
                *first = false;
            } else {
                self.out.push(b',');
            }
        }
    }

    fn key(&mut self, k: &str) {
        self.sep();
        self.string(k);
        self.out.push(b':');
    }

    fn raw(&mut self, s: &str) {
        self.out.extend_from_slice(s.as_bytes());
    }

    fn string(&mut self, s: &str) {
        write_json_string(self.out, s);
    }
}

/// `s` as a JSON string literal (RFC 8259 escaping).
pub(crate) fn write_json_string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0x00..=0x1f => None,
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        match escape {
            Some(e) => out.extend_from_slice(e),
            None => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0x0f)],
            ]),
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod reference;

/// Every LogRecord field and attribute a flow record can carry. Resource
/// attributes are prefixed `resource:`; LogRecord fields `record:`.
pub const MAPPING: &[FieldMapping] = &[
    row(
        "(constant)",
        "resource:service.name",
        "string",
        "flowscribe",
        "Semconv.",
    ),
    row(
        "context.service_version",
        "resource:service.version",
        "string",
        "0.1.0",
        "Semconv.",
    ),
    row(
        "context.node",
        "resource:host.name",
        "string",
        "node-1",
        "Semconv.",
    ),
    row(
        "context.node",
        "resource:k8s.node.name",
        "string",
        "node-1",
        "Semconv.",
    ),
    row(
        "context.cluster",
        "resource:k8s.cluster.name",
        "string",
        "prod-eu-1",
        "Semconv; when configured.",
    ),
    row(
        "flow.window_end",
        "record:time_unix_nano",
        "fixed64",
        "1795321810000000000",
        "",
    ),
    row(
        "observed time (parameter)",
        "record:observed_time_unix_nano",
        "fixed64",
        "1795321810200000000",
        "",
    ),
    row(
        "severity",
        "record:severity_number",
        "SeverityNumber",
        "13",
        "9 INFO allowed; 13 WARN denied or mismatch.",
    ),
    row("severity", "record:severity_text", "string", "WARN", ""),
    row(
        "(summary)",
        "record:body",
        "string",
        "shop/web-1 → db/pg-0:5432/TCP denied: isolated-no-match (ingress, ns db)",
        "",
    ),
    row(
        "(constant)",
        "record:event_name",
        "string",
        "network.flow",
        "",
    ),
    row(
        "key.protocol",
        "network.transport",
        "string",
        "tcp",
        "Semconv; `icmp`, `ipv6-icmp`, `sctp` as custom values.",
    ),
    row("key family", "network.type", "string", "ipv4", "Semconv."),
    row(
        "key.src_addr",
        "source.address",
        "string",
        "10.0.1.5",
        "Semconv.",
    ),
    row(
        "key.src_port",
        "source.port",
        "int",
        "51320",
        "Semconv; absent for ICMP.",
    ),
    row(
        "key.dst_addr",
        "destination.address",
        "string",
        "10.0.2.7",
        "Semconv.",
    ),
    row(
        "key.dst_port",
        "destination.port",
        "int",
        "5432",
        "Semconv; absent for ICMP.",
    ),
    row(
        "flow.interface.name",
        "network.interface.name",
        "string",
        "veth1a2b",
        "Semconv.",
    ),
    row(
        "deciding rule",
        "security_rule.name",
        "string",
        "ingress[0]",
        "Semconv; as ECS `rule.name`.",
    ),
    row(
        "deciding side.direction",
        "security_rule.category",
        "string",
        "ingress",
        "Semconv.",
    ),
    row(
        "deciding policy",
        "security_rule.ruleset.name",
        "string",
        "db/allow-web",
        "Semconv; `namespace/name`.",
    ),
    row(
        "deciding policy.uid",
        "security_rule.uuid",
        "string",
        "0d9e…",
        "Semconv.",
    ),
    row(
        "deciding policy.resource_version",
        "security_rule.version",
        "string",
        "12345",
        "Semconv.",
    ),
    row(
        "event_id",
        "flowscribe.event_id",
        "string",
        "3f0c…(32 hex)",
        "Deterministic id for deduplication.",
    ),
    row(
        "community_id_v1",
        "flowscribe.community_id",
        "string",
        "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
        "",
    ),
    row(
        "flow.state",
        "flowscribe.flow.state",
        "string",
        "completed",
        "",
    ),
    row(
        "flow.end_reason",
        "flowscribe.flow.end_reason",
        "string",
        "tcp-fin",
        "",
    ),
    row(
        "endpoints' nodes",
        "flowscribe.flow.direction",
        "string",
        "ingress",
        "ingress, egress, internal, unknown (relative to this node).",
    ),
    row(
        "key.protocol",
        "flowscribe.flow.iana_number",
        "int",
        "6",
        "",
    ),
    row(
        "flow.window_start",
        "flowscribe.flow.window.start_unix_nano",
        "int",
        "1795321800000000000",
        "",
    ),
    row(
        "flow.first_packet",
        "flowscribe.flow.first_packet_unix_nano",
        "int",
        "1795321799900000000",
        "",
    ),
    row(
        "flow.last_packet",
        "flowscribe.flow.last_packet_unix_nano",
        "int",
        "1795321809100000000",
        "",
    ),
    row(
        "forward.bytes",
        "flowscribe.flow.bytes.forward",
        "int",
        "400",
        "Initiator → responder.",
    ),
    row(
        "reverse.bytes",
        "flowscribe.flow.bytes.reverse",
        "int",
        "3000",
        "Responder → initiator.",
    ),
    row(
        "forward.packets",
        "flowscribe.flow.packets.forward",
        "int",
        "5",
        "",
    ),
    row(
        "reverse.packets",
        "flowscribe.flow.packets.reverse",
        "int",
        "4",
        "",
    ),
    row(
        "forward.tcp_flags",
        "flowscribe.flow.tcp_flags.forward",
        "string[]",
        "[\"SYN\",\"ACK\"]",
        "TCP only.",
    ),
    row(
        "reverse.tcp_flags",
        "flowscribe.flow.tcp_flags.reverse",
        "string[]",
        "[\"SYN\",\"ACK\"]",
        "TCP only.",
    ),
    row(
        "key.src_port (ICMP)",
        "flowscribe.flow.icmp.type",
        "int",
        "8",
        "ICMP only.",
    ),
    row(
        "key.dst_port (ICMP)",
        "flowscribe.flow.icmp.code",
        "int",
        "0",
        "ICMP only.",
    ),
    row(
        "flow.drops",
        "flowscribe.flow.drops.packets_forward",
        "int",
        "1",
        "",
    ),
    row(
        "flow.drops",
        "flowscribe.flow.drops.packets_reverse",
        "int",
        "0",
        "",
    ),
    row("flow.drops", "flowscribe.flow.drops.bytes", "int", "60", ""),
    row(
        "flow.drops",
        "flowscribe.flow.drops.last_reason",
        "string",
        "NETFILTER_DROP",
        "",
    ),
    row(
        "source.kind",
        "flowscribe.source.kind",
        "string",
        "pod",
        "Same keys under `flowscribe.destination.`.",
    ),
    row(
        "source.pod.namespace",
        "flowscribe.source.k8s.namespace.name",
        "string",
        "shop",
        "Semconv name under our prefix.",
    ),
    row(
        "source.pod.name",
        "flowscribe.source.k8s.pod.name",
        "string",
        "web-7c9d",
        "",
    ),
    row(
        "source.pod.uid",
        "flowscribe.source.k8s.pod.uid",
        "string",
        "6a1f…",
        "",
    ),
    row(
        "source.pod.labels",
        "flowscribe.source.k8s.pod.label.*",
        "string",
        "app: web",
        "One attribute per label.",
    ),
    row(
        "source.pod.service_account",
        "flowscribe.source.service_account",
        "string",
        "web",
        "",
    ),
    row(
        "source.pod.workload",
        "flowscribe.source.workload.kind",
        "string",
        "Deployment",
        "",
    ),
    row(
        "source.pod.workload",
        "flowscribe.source.workload.name",
        "string",
        "web",
        "",
    ),
    row(
        "source.node",
        "flowscribe.source.k8s.node.name",
        "string",
        "node-1",
        "",
    ),
    row(
        "source.service",
        "flowscribe.source.k8s.service.name",
        "string",
        "web",
        "",
    ),
    row(
        "source.service",
        "flowscribe.source.k8s.service.namespace",
        "string",
        "shop",
        "",
    ),
    row(
        "source.service.port_name",
        "flowscribe.source.k8s.service.port_name",
        "string",
        "http",
        "",
    ),
    row(
        "source.network",
        "flowscribe.source.network",
        "string",
        "corp-vpn",
        "",
    ),
    row(
        "source.stale",
        "flowscribe.source.stale",
        "bool",
        "true",
        "",
    ),
    row(
        "source.stale.deleted_at",
        "flowscribe.source.deleted_at_unix_nano",
        "int",
        "1795321740000000000",
        "",
    ),
    row(
        "destination",
        "flowscribe.destination.*",
        "",
        "",
        "As `flowscribe.source.*`.",
    ),
    row(
        "identity_degraded",
        "flowscribe.identity_degraded",
        "bool",
        "false",
        "",
    ),
    row(
        "deciding rule",
        "flowscribe.policy.rule_id",
        "string",
        "0d9e…/ingress/0",
        "",
    ),
    row(
        "deciding side.reason",
        "flowscribe.policy.reason",
        "string",
        "isolated-no-match",
        "",
    ),
    row(
        "deciding side.direction",
        "flowscribe.policy.direction",
        "string",
        "ingress",
        "",
    ),
    row(
        "trace.enforced.verdict",
        "flowscribe.policy.verdict",
        "string",
        "deny",
        "",
    ),
    row(
        "trace.verdict_source",
        "flowscribe.policy.verdict_source",
        "string",
        "evaluated",
        "",
    ),
    row(
        "trace.observed",
        "flowscribe.policy.observed",
        "string",
        "dropped",
        "",
    ),
    row(
        "trace.observed (Dropped).reason",
        "flowscribe.policy.observed_drop_reason",
        "string",
        "NETFILTER_DROP",
        "",
    ),
    row(
        "trace.mismatch",
        "flowscribe.policy.mismatch",
        "string",
        "policy-not-enforced",
        "",
    ),
    row(
        "trace.enforced.egress",
        "flowscribe.policy.egress",
        "kvlist",
        "",
        "{verdict, reason, hits: [kvlist]}; hit keys as ECS `flowscribe.policy.egress.hits[]`.",
    ),
    row(
        "trace.enforced.ingress",
        "flowscribe.policy.ingress",
        "kvlist",
        "",
        "As egress.",
    ),
    row(
        "trace.pending",
        "flowscribe.policy.pending",
        "kvlist",
        "",
        "{verdict, would_change, egress, ingress}.",
    ),
    row(
        "trace.invalid_policies",
        "flowscribe.policy.invalid_policies",
        "string[]",
        "[\"NetworkPolicy db/broken\"]",
        "",
    ),
    // Capture loss records (`loss_record`).
    row(
        "loss record",
        "event_name",
        "string",
        "flowscribe.loss",
        "Capture loss records: severity 13 WARN, `time_unix_nano` the end of the loss window, body `capture lost 7 packets (4200 bytes) on node-1`.",
    ),
    row(
        "(constant)",
        "flowscribe.loss.stage",
        "string",
        "capture",
        "Where the data was lost.",
    ),
    row(
        "loss.reason",
        "flowscribe.loss.reason",
        "string",
        "flow_map_full",
        "flow_map_full, flow_map_update_failed, ring_reserve_failed, parse_truncated, drop_map_full, drop_unmatched.",
    ),
    row(
        "loss.reason.loses_flow_data()",
        "flowscribe.loss.loses_flow_data",
        "bool",
        "true",
        "Packets or bytes are missing from flow records.",
    ),
    row(
        "loss.count",
        "flowscribe.loss.count",
        "int",
        "7",
        "Packets lost (new-flow events for ring_reserve_failed).",
    ),
    row(
        "loss.bytes",
        "flowscribe.loss.bytes",
        "int",
        "4200",
        "Bytes lost, where the kernel knows them.",
    ),
    row(
        "loss.window_start",
        "flowscribe.loss.window.start_unix_nano",
        "int",
        "1795321800000000000",
        "",
    ),
];

#[cfg(test)]
mod int_attribute_tests {
    use super::*;

    /// `event_id_attribute` writes what `Attributes::ascii` writes.
    #[test]
    fn event_id_attribute_is_attributes_ascii() {
        for (ctx, flow) in crate::test_flows::variations() {
            let f = &flow.flow.flow;
            let id = crate::event_id::event_id(&ctx.node, &f.key, f.window_start, f.window_end);
            let mut want = vec![7u8];
            Attributes {
                w: &mut ProtoWriter::new(&mut want),
                field: LOG_RECORD_ATTRIBUTES,
            }
            .ascii(key!("flowscribe.event_id"), id.to_hex().as_bytes());
            let mut got = vec![7u8];
            event_id_attribute(&mut got, id);
            assert_eq!(got, want, "{id}");
        }
    }

    /// `int_attribute` writes what `Attributes::int` writes, for values
    /// of every length (saturated above `i64::MAX`), after other bytes,
    /// and for a key too long for its buffer.
    #[test]
    fn int_attribute_is_attributes_int() {
        let long = key!(
            "flowscribe.a.key.that.is.longer.than.the.buffer.of.int_attribute.has.room.for.at.all"
        );
        for key in [
            key!("source.port"),
            key!("flowscribe.flow.bytes.forward"),
            long,
        ] {
            for shift in 0..64 {
                for v in [(1u64 << shift) - 1, 1 << shift, (1 << shift) + 1, u64::MAX] {
                    let mut want = vec![7u8];
                    Attributes {
                        w: &mut ProtoWriter::new(&mut want),
                        field: LOG_RECORD_ATTRIBUTES,
                    }
                    .int(key, v);
                    let mut got = vec![7u8];
                    int_attribute(&mut got, key, v);
                    assert_eq!(got, want, "{v}");
                }
            }
        }
    }
}
