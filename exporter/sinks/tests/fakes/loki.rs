//! A fake Grafana Loki distributor for `POST /loki/api/v1/push` that
//! decodes the wire format the way Loki does: raw (block) snappy, then the
//! `logproto.PushRequest` protobuf (its own prost messages, written from
//! `pkg/push/push.proto`, not shared with the sink).
//!
//! * `Content-Type: application/x-protobuf`: a body that is not raw snappy
//!   or not a `PushRequest` is a 400. `application/json` (optionally
//!   `Content-Encoding: gzip`): `{"streams":[{"stream":{name: value},
//!   "values":[["<ns epoch string>", "<line>", {metadata}]]}]}`, decoded
//!   with its own serde types; a malformed body or timestamp is a 400.
//!   Other content types: 415.
//! * Labels parsed from the Prometheus form; at least one, valid names,
//!   at most `max_label_names` (15): else 400 for the whole push.
//! * Per entry, as Loki's validation does: older than
//!   `reject_old_samples_max_age` is "entry too old"; more than
//!   `max_chunk_age / 2` behind the newest entry of its stream is "entry too
//!   far behind" (out of order); longer than `max_line_size` is "line too
//!   long". Valid entries are kept; if any were rejected the answer is 400
//!   listing them and "total ignored: N out of M", else 204.
//! * `X-Scope-OrgID` required when `require_tenant` is set (401 otherwise).
//! * Failure injection: whole-push answers (status, `Retry-After`), e.g.
//!   429, 5xx or the `block_ingestion_status_code` 260.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message as _;

use super::{FakeRequest, FakeResponse, FakeServer};

#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<Stream>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Stream {
    #[prost(string, tag = "1")]
    pub labels: String,
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<Entry>,
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Entry {
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Ts>,
    #[prost(string, tag = "2")]
    pub line: String,
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<Pair>,
    #[prost(message, repeated, tag = "4")]
    pub parsed: Vec<Pair>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Pair {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Ts {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// One stored entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// Which push (1-based) brought it.
    pub push: u64,
    /// Nanoseconds since the epoch.
    pub ts: i128,
    pub line: String,
    pub metadata: Vec<(String, String)>,
}

#[derive(Debug)]
pub struct LokiState {
    /// Canonical label set (sorted, `{a="x", b="y"}`) -> entries in
    /// arrival order.
    pub streams: BTreeMap<String, Vec<Stored>>,
    pub pushes: u64,
    /// Pushes that came as JSON, and of those, gzip-compressed.
    pub json_pushes: u64,
    pub gzip_pushes: u64,
    pub answers: VecDeque<(u16, Option<String>)>,
    pub require_tenant: Option<String>,
    pub reject_old_samples_max_age: Duration,
    pub max_chunk_age: Duration,
    pub max_line_size: usize,
    pub max_label_names: usize,
}

impl Default for LokiState {
    fn default() -> Self {
        LokiState {
            streams: BTreeMap::new(),
            pushes: 0,
            json_pushes: 0,
            gzip_pushes: 0,
            answers: VecDeque::new(),
            require_tenant: None,
            // Loki's defaults.
            reject_old_samples_max_age: Duration::from_secs(7 * 24 * 3600),
            max_chunk_age: Duration::from_secs(2 * 3600),
            max_line_size: 256 * 1024,
            max_label_names: 15,
        }
    }
}

pub struct LokiFake {
    pub server: FakeServer,
    pub state: Arc<Mutex<LokiState>>,
}

impl LokiFake {
    pub async fn start() -> LokiFake {
        let state = Arc::new(Mutex::new(LokiState::default()));
        let s = Arc::clone(&state);
        let server = super::serve(Arc::new(move |req| handle(&mut s.lock().unwrap(), req))).await;
        LokiFake { server, state }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, LokiState> {
        self.state.lock().unwrap()
    }

    /// Every stored `event_id` metadata value.
    pub fn event_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .state()
            .streams
            .values()
            .flatten()
            .filter_map(|e| {
                e.metadata
                    .iter()
                    .find(|(k, _)| k == "event_id")
                    .map(|(_, v)| v.clone())
            })
            .collect();
        ids.sort();
        ids
    }

    pub fn answer(&self, status: u16, retry_after: Option<&str>) {
        self.state()
            .answers
            .push_back((status, retry_after.map(str::to_string)));
    }
}

fn text(status: u16, body: impl Into<String>) -> FakeResponse {
    FakeResponse::Reply {
        status,
        headers: vec![("content-type", "text/plain; charset=utf-8".into())],
        body: body.into().into_bytes(),
    }
}

/// Parse `{a="x", b="y"}` into sorted pairs, as Loki's label parser does.
pub fn parse_labels(s: &str) -> Result<Vec<(String, String)>, String> {
    let inner = s
        .trim()
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .ok_or("labels must be enclosed in {}")?;
    let mut out = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            name.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') || chars.next() != Some('"') {
            return Err(format!("expected =\" after label {name:?}"));
        }
        let mut value = String::new();
        loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some('"') => break,
                Some('\\') => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c @ ('\\' | '"')) => value.push(c),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some(c) => value.push(c),
            }
        }
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("invalid label name {name:?}"));
        }
        out.push((name, value));
    }
    out.sort();
    Ok(out)
}

fn canonical(pairs: &[(String, String)]) -> String {
    let body: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", body.join(", "))
}

fn handle(st: &mut LokiState, req: FakeRequest) -> FakeResponse {
    if req.path != "/loki/api/v1/push" || req.method != "POST" {
        return text(404, "404 page not found\n");
    }
    st.pushes += 1;
    if let Some(want) = &st.require_tenant
        && req.header("x-scope-orgid") != Some(want.as_str())
    {
        return text(401, "no org id\n");
    }
    if let Some((status, retry_after)) = st.answers.pop_front() {
        let mut r = text(status, format!("injected {status}\n"));
        if let Some(ra) = retry_after {
            r = r.with_header("retry-after", ra);
        }
        return r;
    }
    let push = match req.header("content-type") {
        Some("application/x-protobuf") => {
            let raw = match snap::raw::Decoder::new().decompress_vec(&req.body) {
                Ok(r) => r,
                Err(e) => return text(400, format!("snappy: {e}\n")),
            };
            match PushRequest::decode(&raw[..]) {
                Ok(p) => p,
                Err(e) => return text(400, format!("proto: {e}\n")),
            }
        }
        Some("application/json") => {
            st.json_pushes += 1;
            let body = match req.decoded_body() {
                Ok(b) => b,
                Err(e) => return text(400, format!("{e}\n")),
            };
            if req.header("content-encoding") == Some("gzip") {
                st.gzip_pushes += 1;
            }
            match json_push(&body) {
                Ok(p) => p,
                Err(e) => return text(400, format!("{e}\n")),
            }
        }
        _ => return text(415, "unsupported content type\n"),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128;
    let oldest_allowed = now - st.reject_old_samples_max_age.as_nanos() as i128;
    let behind = (st.max_chunk_age / 2).as_nanos() as i128;
    let mut errors = Vec::new();
    let mut total = 0;
    for stream in push.streams {
        let pairs = match parse_labels(&stream.labels) {
            Ok(p) => p,
            Err(e) => {
                return text(
                    400,
                    format!("error parsing labels {}: {e}\n", stream.labels),
                );
            }
        };
        if pairs.is_empty() {
            return text(
                400,
                "error at least one label pair is required per stream\n",
            );
        }
        if pairs.len() > st.max_label_names {
            return text(
                400,
                format!(
                    "entry for stream '{}' has {} label names; limit {}\n",
                    stream.labels,
                    pairs.len(),
                    st.max_label_names
                ),
            );
        }
        let key = canonical(&pairs);
        for e in stream.entries {
            total += 1;
            let Some(ts) = &e.timestamp else {
                errors.push(format!("entry for stream '{key}' has no timestamp"));
                continue;
            };
            let t = i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos);
            let newest = st
                .streams
                .get(&key)
                .and_then(|v| v.iter().map(|s| s.ts).max());
            if t < oldest_allowed {
                errors.push(format!(
                    "entry for stream '{key}' has timestamp too old: {t}, oldest acceptable timestamp is: {oldest_allowed}"
                ));
            } else if newest.is_some_and(|n| t < n - behind) {
                errors.push(format!(
                    "entry with timestamp {t} ignored, reason: 'entry too far behind, oldest acceptable timestamp is: {}' for stream: {key}",
                    newest.unwrap_or_default() - behind
                ));
            } else if e.line.len() > st.max_line_size {
                errors.push(format!(
                    "max entry size '{}' exceeded for stream '{key}' while adding an entry with length '{}'",
                    st.max_line_size,
                    e.line.len()
                ));
            } else {
                let push = st.pushes;
                st.streams.entry(key.clone()).or_default().push(Stored {
                    push,
                    ts: t,
                    line: e.line,
                    metadata: e
                        .structured_metadata
                        .into_iter()
                        .map(|p| (p.name, p.value))
                        .collect(),
                });
            }
        }
    }
    if errors.is_empty() {
        return FakeResponse::Reply {
            status: 204,
            headers: vec![],
            body: Vec::new(),
        };
    }
    let n = errors.len();
    text(
        400,
        format!("{}\ntotal ignored: {n} out of {total}\n", errors.join("\n")),
    )
}

/// Loki's JSON push, as its own serde types.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonPush {
    streams: Vec<JsonStream>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonStream {
    stream: BTreeMap<String, String>,
    values: Vec<JsonValue>,
}

/// `[ts, line]` or `[ts, line, {metadata}]`.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum JsonValue {
    Two(String, String),
    Three(String, String, BTreeMap<String, String>),
}

/// The JSON body as the same `PushRequest` the protobuf path decodes, so
/// both go through one validation.
fn json_push(body: &[u8]) -> Result<PushRequest, String> {
    let push: JsonPush = serde_json::from_slice(body).map_err(|e| format!("json: {e}"))?;
    let mut streams = Vec::new();
    for s in push.streams {
        let pairs: Vec<(String, String)> = s.stream.into_iter().collect();
        let mut entries = Vec::new();
        for v in s.values {
            let (ts, line, md) = match v {
                JsonValue::Two(t, l) => (t, l, BTreeMap::new()),
                JsonValue::Three(t, l, m) => (t, l, m),
            };
            let ns: i64 = ts
                .parse()
                .map_err(|_| format!("json: timestamp {ts:?} is not nanoseconds"))?;
            entries.push(Entry {
                timestamp: Some(Ts {
                    seconds: ns.div_euclid(1_000_000_000),
                    nanos: i32::try_from(ns.rem_euclid(1_000_000_000)).unwrap_or(0),
                }),
                line,
                structured_metadata: md
                    .into_iter()
                    .map(|(name, value)| Pair { name, value })
                    .collect(),
                parsed: Vec::new(),
            });
        }
        streams.push(Stream {
            labels: canonical(&pairs),
            entries,
            hash: 0,
        });
    }
    Ok(PushRequest { streams })
}
