//! A fake Splunk HTTP Event Collector that decodes requests the way HEC
//! does and answers with HEC's status codes.
//!
//! * `POST /services/collector/event` (also `/services/collector` and
//!   `/services/collector/event/1.0`): `Authorization: Splunk <token>`
//!   (missing: 401 code 2; another scheme: 401 code 3; unknown token: 403
//!   code 4; disabled: 403 code 1); gzip bodies decoded; the body is a
//!   stream of concatenated JSON objects, each needing `event` (missing:
//!   400 code 12; null or blank: 400 code 13; not JSON: 400 code 6;
//!   an index outside the allow list: 400 code 7), reported with
//!   `invalid-event-number`; the events before the invalid one are kept
//!   (the more demanding case for the client: a resend duplicates them).
//!   An empty body is 400 code 5.
//! * Indexer acknowledgement (`ack_enabled`): a channel is required
//!   (`X-Splunk-Request-Channel` or `?channel=`; missing: 400 code 10; not
//!   a GUID: 400 code 11); success carries an `ackId` per channel;
//!   `POST /services/collector/ack` with `{"acks":[..]}` answers
//!   `{"acks":{"id":bool}}`; an ack turns true after `ack_after_polls`
//!   polls, or never for ids in `lost_acks`. Without acks the ack endpoint
//!   is 400 code 14.
//! * `GET /services/collector/health`: 200 code 17.
//! * Failure injection: whole-request answers (HTTP status + HEC code,
//!   optional `Retry-After`) and per-event rejections by event id.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::{FakeRequest, FakeResponse, FakeServer};

#[derive(Debug, Clone)]
pub struct InjectedAnswer {
    pub status: u16,
    pub code: u16,
    pub retry_after: Option<String>,
}

#[derive(Debug, Default)]
pub struct HecState {
    /// Every accepted event (the whole envelope), in arrival order.
    pub events: Vec<Value>,
    pub tokens: HashSet<String>,
    pub disabled_tokens: HashSet<String>,
    pub allowed_indexes: Option<HashSet<String>>,
    pub ack_enabled: bool,
    /// Polls before an ack turns true.
    pub ack_after_polls: u32,
    /// Ack ids that never turn true (an indexer that lost the batch).
    pub lost_acks: HashSet<u64>,
    /// (channel, ack id) -> polls seen so far.
    pub pending_acks: HashMap<(String, u64), u32>,
    next_ack: HashMap<String, u64>,
    pub event_requests: u64,
    pub ack_polls: u64,
    pub gzip_requests: u64,
    pub answers: VecDeque<InjectedAnswer>,
    /// Event ids (`fields.flowscribe_event_id`) always answered with this
    /// code (`invalid-event-number` set), like a document HEC cannot take.
    pub reject_event_ids: HashMap<String, u16>,
}

pub struct HecFake {
    pub server: FakeServer,
    pub state: Arc<Mutex<HecState>>,
}

impl HecFake {
    /// A HEC accepting `token`.
    pub async fn start(token: &str) -> HecFake {
        let state = Arc::new(Mutex::new(HecState {
            tokens: HashSet::from([token.to_string()]),
            ..HecState::default()
        }));
        let s = Arc::clone(&state);
        let server = super::serve(Arc::new(move |req| handle(&mut s.lock().unwrap(), req))).await;
        HecFake { server, state }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, HecState> {
        self.state.lock().unwrap()
    }

    /// `fields.flowscribe_event_id` of every stored event, in order.
    pub fn event_ids(&self) -> Vec<String> {
        self.state()
            .events
            .iter()
            .map(|e| {
                e["fields"]["flowscribe_event_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    }

    pub fn answer(&self, status: u16, code: u16, retry_after: Option<&str>) {
        self.state().answers.push_back(InjectedAnswer {
            status,
            code,
            retry_after: retry_after.map(str::to_string),
        });
    }
}

fn text_of(code: u16) -> &'static str {
    match code {
        0 => "Success",
        1 => "Token disabled",
        2 => "Token is required",
        3 => "Invalid authorization",
        4 => "Invalid token",
        5 => "No data",
        6 => "Invalid data format",
        7 => "Incorrect index",
        8 => "Internal server error",
        9 => "Server is busy",
        10 => "Data channel is missing",
        11 => "Invalid data channel",
        12 => "Event field is required",
        13 => "Event field cannot be blank",
        14 => "ACK is disabled",
        17 => "HEC is healthy",
        _ => "Unknown",
    }
}

fn reply(status: u16, code: u16) -> FakeResponse {
    FakeResponse::json(status, &json!({"text": text_of(code), "code": code}))
}

fn invalid_event(code: u16, n: usize) -> FakeResponse {
    FakeResponse::json(
        400,
        &json!({"text": text_of(code), "code": code, "invalid-event-number": n}),
    )
}

fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn handle(st: &mut HecState, req: FakeRequest) -> FakeResponse {
    let path = req.path.as_str();
    if path.starts_with("/services/collector/health") {
        return reply(200, 17);
    }
    let is_event = matches!(
        path,
        "/services/collector/event" | "/services/collector" | "/services/collector/event/1.0"
    );
    let is_ack = path == "/services/collector/ack";
    if !is_event && !is_ack {
        return FakeResponse::json(
            404,
            &json!({"text": "The requested URL was not found on this server.", "code": 404}),
        );
    }
    // Authentication first, as HEC does.
    let Some(auth) = req.header("authorization") else {
        return reply(401, 2);
    };
    let Some(token) = auth.strip_prefix("Splunk ") else {
        return reply(401, 3);
    };
    if st.disabled_tokens.contains(token) {
        return reply(403, 1);
    }
    if !st.tokens.contains(token) {
        return reply(403, 4);
    }
    let channel = req
        .header("x-splunk-request-channel")
        .map(str::to_string)
        .or_else(|| req.query_param("channel").map(str::to_string));
    if is_ack {
        if !st.ack_enabled {
            return reply(400, 14);
        }
        let Some(channel) = channel else {
            return reply(400, 10);
        };
        st.ack_polls += 1;
        let Ok(q) = serde_json::from_slice::<Value>(&req.body) else {
            return reply(400, 6);
        };
        let Some(ids) = q["acks"].as_array() else {
            return reply(400, 6);
        };
        let mut out = serde_json::Map::new();
        for id in ids.iter().filter_map(Value::as_u64) {
            let done = match st.pending_acks.get_mut(&(channel.clone(), id)) {
                Some(polls) => {
                    *polls += 1;
                    !st.lost_acks.contains(&id) && *polls >= st.ack_after_polls
                }
                None => false,
            };
            out.insert(id.to_string(), json!(done));
        }
        return FakeResponse::json(200, &json!({"acks": out}));
    }
    if st.ack_enabled {
        match &channel {
            None => return reply(400, 10),
            Some(c) if !is_guid(c) => return reply(400, 11),
            Some(_) => {}
        }
    }
    st.event_requests += 1;
    if let Some(a) = st.answers.pop_front() {
        let mut r = reply(a.status, a.code);
        if let Some(ra) = a.retry_after {
            r = r.with_header("retry-after", ra);
        }
        return r;
    }
    if req.header("content-encoding") == Some("gzip") {
        st.gzip_requests += 1;
    }
    let body = match req.decoded_body() {
        Ok(b) => b,
        Err(_) => return reply(400, 6),
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return reply(400, 5);
    }
    let mut stream = serde_json::Deserializer::from_slice(&body).into_iter::<Value>();
    let mut n = 0;
    loop {
        let ev = match stream.next() {
            None => break,
            Some(Ok(v)) => v,
            Some(Err(_)) => return invalid_event(6, n),
        };
        let Some(obj) = ev.as_object() else {
            return invalid_event(6, n);
        };
        match obj.get("event") {
            None => return invalid_event(12, n),
            Some(Value::Null) => return invalid_event(13, n),
            Some(Value::String(s)) if s.trim().is_empty() => return invalid_event(13, n),
            Some(_) => {}
        }
        if let (Some(allowed), Some(index)) = (
            &st.allowed_indexes,
            obj.get("index").and_then(Value::as_str),
        ) && !allowed.contains(index)
        {
            return invalid_event(7, n);
        }
        if let Some(id) = obj
            .get("fields")
            .and_then(|f| f.get("flowscribe_event_id"))
            .and_then(Value::as_str)
            && let Some(code) = st.reject_event_ids.get(id).copied()
        {
            return invalid_event(code, n);
        }
        st.events.push(ev);
        n += 1;
    }
    if st.ack_enabled {
        let channel = channel.unwrap_or_default();
        let next = st.next_ack.entry(channel.clone()).or_default();
        let id = *next;
        *next += 1;
        st.pending_acks.insert((channel, id), 0);
        return FakeResponse::json(200, &json!({"text": "Success", "code": 0, "ackId": id}));
    }
    reply(200, 0)
}
