//! A fake Elasticsearch `_bulk` endpoint that parses the request the way
//! Elasticsearch does and answers with its statuses and error types.
//!
//! * `POST|PUT /_bulk` and `/{target}/_bulk`; `Content-Type`
//!   `application/x-ndjson` or `application/json` (else 406);
//!   `Content-Encoding: gzip` decoded; a body above `max_content_length`
//!   is 413; `Authorization` checked when configured (401
//!   `security_exception` with `WWW-Authenticate`).
//! * NDJSON: an action line (`create`, `index`, `update`, `delete`, exactly
//!   one key) followed by a source line for all but `delete`; the body must
//!   end with `\n` and an action without its source is a whole-request 400
//!   (`illegal_argument_exception`), as in ES.
//! * `create` with an existing `_id` is a per-item 409
//!   `version_conflict_engine_exception`; a source that is not a JSON object
//!   is a 400 `document_parsing_exception`; targets named `logs-*-*` are data
//!   streams: only `create` is allowed and `@timestamp` is required.
//! * The response is HTTP 200 with `errors` and one item per action in
//!   request order; `filter_path` is honoured for the fields flowscribe
//!   asks for.
//! * Failure injection: whole-request responses (status, `Retry-After`, or a
//!   dropped connection after the items were processed) and per-item
//!   failures for a given `_id`, a number of times.
//!
//! It keeps every created document.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};

use super::{FakeRequest, FakeResponse, FakeServer};

/// A whole-request response to return instead of processing.
#[derive(Debug, Clone)]
pub enum RequestFailure {
    /// Answer this status (with an ES-style error body) and optional
    /// `Retry-After`, without processing the items.
    Status {
        status: u16,
        retry_after: Option<String>,
    },
    /// Process the items (documents are stored), then close the
    /// connection without a response.
    DropAfterProcessing,
}

/// A per-item failure for one `_id`.
#[derive(Debug, Clone)]
pub struct ItemFailure {
    pub status: u16,
    pub error_type: &'static str,
    /// How many more attempts fail; `u32::MAX` for always.
    pub remaining: u32,
}

#[derive(Debug, Default)]
pub struct EsState {
    /// Created documents by (index, `_id`).
    pub docs: BTreeMap<(String, String), Value>,
    /// Every create/index attempt per `_id`, processed or not.
    pub attempts: HashMap<String, u32>,
    pub requests: u64,
    pub gzip_requests: u64,
    pub request_failures: VecDeque<RequestFailure>,
    pub item_failures: HashMap<String, ItemFailure>,
    /// Expected `Authorization` value; `None` accepts anything.
    pub expected_auth: Option<String>,
    /// Decoded body limit (ES `http.max_content_length`, default 100 MB).
    pub max_content_length: usize,
    auto_id: u64,
}

/// The fake and its state.
pub struct EsFake {
    pub server: FakeServer,
    pub state: Arc<Mutex<EsState>>,
}

impl EsFake {
    pub async fn start() -> EsFake {
        Self::start_on("127.0.0.1:0").await
    }

    /// Start on a given address (a test that first saw the port refused).
    pub async fn start_on(addr: &str) -> EsFake {
        let state = Arc::new(Mutex::new(EsState {
            max_content_length: 100 << 20,
            ..EsState::default()
        }));
        let s = Arc::clone(&state);
        let server = super::serve_on(
            addr,
            Arc::new(move |req| handle(&mut s.lock().unwrap(), req)),
        )
        .await;
        EsFake { server, state }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, EsState> {
        self.state.lock().unwrap()
    }

    /// `_id`s of the documents created in `index`.
    pub fn ids(&self, index: &str) -> Vec<String> {
        self.state()
            .docs
            .keys()
            .filter(|(i, _)| i == index)
            .map(|(_, id)| id.clone())
            .collect()
    }

    pub fn fail_item(&self, id: &str, status: u16, error_type: &'static str, times: u32) {
        self.state().item_failures.insert(
            id.to_string(),
            ItemFailure {
                status,
                error_type,
                remaining: times,
            },
        );
    }

    pub fn fail_request(&self, f: RequestFailure) {
        self.state().request_failures.push_back(f);
    }
}

fn error_body(status: u16, kind: &str, reason: &str) -> FakeResponse {
    FakeResponse::json(
        status,
        &json!({"error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason}, "status": status}),
    )
}

fn handle(st: &mut EsState, req: FakeRequest) -> FakeResponse {
    st.requests += 1;
    if req.method != "POST" && req.method != "PUT" {
        return error_body(
            405,
            "illegal_argument_exception",
            "Incorrect HTTP method for uri",
        );
    }
    let target = match req.path.strip_suffix("/_bulk") {
        Some("") => None,
        Some(t) if t.starts_with('/') && !t[1..].contains('/') => Some(t[1..].to_string()),
        _ => {
            return error_body(
                400,
                "illegal_argument_exception",
                &format!("no handler found for uri [{}]", req.path),
            );
        }
    };
    if let Some(want) = &st.expected_auth
        && req.header("authorization") != Some(want.as_str())
    {
        return error_body(401, "security_exception", "unable to authenticate user")
            .with_header("www-authenticate", "ApiKey, Basic realm=\"security\"");
    }
    if let Some(f) = st.request_failures.pop_front() {
        match f {
            RequestFailure::Status {
                status,
                retry_after,
            } => {
                let kind = match status {
                    429 => "es_rejected_execution_exception",
                    503 => "cluster_block_exception",
                    _ => "fake_injected_exception",
                };
                let mut r = error_body(status, kind, "injected by the test");
                if let Some(ra) = retry_after {
                    r = r.with_header("retry-after", ra);
                }
                return r;
            }
            RequestFailure::DropAfterProcessing => {
                let _ = process(st, &req, target.as_deref());
                return FakeResponse::Drop;
            }
        }
    }
    process(st, &req, target.as_deref())
}

/// One parsed action: (op, index, `_id`, source line).
type BulkOp<'a> = (String, Option<String>, Option<String>, Option<&'a [u8]>);

fn process(st: &mut EsState, req: &FakeRequest, target: Option<&str>) -> FakeResponse {
    let ct = req.header("content-type").unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime != "application/x-ndjson" && mime != "application/json" {
        return error_body(
            406,
            "media_type_header_exception",
            &format!("Content-Type header [{ct}] is not supported"),
        );
    }
    if req.header("content-encoding") == Some("gzip") {
        st.gzip_requests += 1;
    }
    let body = match req.decoded_body() {
        Ok(b) => b,
        Err(e) => return error_body(400, "parse_exception", &e),
    };
    if body.len() > st.max_content_length {
        return FakeResponse::Reply {
            status: 413,
            headers: vec![],
            body: Vec::new(),
        };
    }
    if body.is_empty() {
        return error_body(
            400,
            "action_request_validation_exception",
            "Validation Failed: 1: no requests added;",
        );
    }
    if body.last() != Some(&b'\n') {
        return error_body(
            400,
            "illegal_argument_exception",
            "The bulk request must be terminated by a newline [\\n]",
        );
    }
    // Parse everything first: a malformed action fails the whole request
    // before any item is executed, as in ES.
    let lines: Vec<&[u8]> = body[..body.len() - 1].split(|&b| b == b'\n').collect();
    let mut ops: Vec<BulkOp<'_>> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let n = i + 1;
        let action: Value = match serde_json::from_slice(lines[i]) {
            Ok(v) => v,
            Err(e) => {
                return error_body(
                    400,
                    "x_content_parse_exception",
                    &format!("[{n}:1] Malformed action/metadata line [{n}]: {e}"),
                );
            }
        };
        let Some(obj) = action.as_object().filter(|o| o.len() == 1) else {
            return error_body(
                400,
                "illegal_argument_exception",
                &format!(
                    "Malformed action/metadata line [{n}], expected a simple value for field [...]"
                ),
            );
        };
        let (op, meta) = obj.iter().next().unwrap();
        if !["create", "index", "update", "delete"].contains(&op.as_str()) {
            return error_body(
                400,
                "illegal_argument_exception",
                &format!(
                    "Malformed action/metadata line [{n}], expected one of [create, delete, index, update] but found [{op}]"
                ),
            );
        }
        let index = meta
            .get("_index")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| target.map(str::to_string));
        let id = meta.get("_id").and_then(Value::as_str).map(str::to_string);
        let source = if op == "delete" {
            None
        } else {
            i += 1;
            match lines.get(i) {
                Some(l) => Some(*l),
                None => {
                    return error_body(
                        400,
                        "illegal_argument_exception",
                        "The bulk request must be terminated by a newline [\\n]",
                    );
                }
            }
        };
        ops.push((op.clone(), index, id, source));
        i += 1;
    }
    let mut items = Vec::with_capacity(ops.len());
    let mut errors = false;
    for (op, index, id, source) in ops {
        let (status, error) = execute(st, &op, index.as_deref(), id.clone(), source);
        errors |= error.is_some();
        let mut item = Map::new();
        item.insert("_index".into(), json!(index));
        item.insert("_id".into(), json!(id));
        item.insert("status".into(), json!(status));
        match error {
            Some((kind, reason)) => {
                item.insert("error".into(), json!({"type": kind, "reason": reason}));
            }
            None => {
                item.insert("_version".into(), json!(1));
                item.insert("result".into(), json!("created"));
            }
        }
        items.push(json!({ op: Value::Object(item) }));
    }
    let mut resp = json!({"took": 1, "errors": errors, "items": items});
    if let Some(fp) = req.query_param("filter_path") {
        resp = filter(resp, fp);
    }
    FakeResponse::json(200, &resp)
}

/// One item: (status, error type and reason).
fn execute(
    st: &mut EsState,
    op: &str,
    index: Option<&str>,
    id: Option<String>,
    source: Option<&[u8]>,
) -> (u16, Option<(String, String)>) {
    let Some(index) = index else {
        return (
            400,
            Some((
                "action_request_validation_exception".into(),
                "Validation Failed: 1: index is missing;".into(),
            )),
        );
    };
    if let Some(id) = &id {
        *st.attempts.entry(id.clone()).or_default() += 1;
        if let Some(f) = st.item_failures.get_mut(id)
            && f.remaining > 0
        {
            f.remaining = f
                .remaining
                .saturating_sub(if f.remaining == u32::MAX { 0 } else { 1 });
            return (
                f.status,
                Some((
                    f.error_type.to_string(),
                    format!("injected failure for [{id}]"),
                )),
            );
        }
    }
    let data_stream = index.starts_with("logs-") && index.matches('-').count() >= 2;
    if data_stream && op != "create" {
        return (
            400,
            Some((
                "illegal_argument_exception".into(),
                "only write ops with an op_type of create are allowed in data streams".into(),
            )),
        );
    }
    if op == "update" || op == "delete" {
        return (
            400,
            Some((
                "illegal_argument_exception".into(),
                "not supported by the fake".into(),
            )),
        );
    }
    let doc: Value = match source.map(serde_json::from_slice::<Value>) {
        Some(Ok(v @ Value::Object(_))) => v,
        Some(Ok(_)) | Some(Err(_)) | None => {
            return (
                400,
                Some((
                    "document_parsing_exception".into(),
                    "[1:1] failed to parse: source is not a JSON object".into(),
                )),
            );
        }
    };
    if data_stream && doc.get("@timestamp").is_none() {
        return (
            400,
            Some((
                "document_parsing_exception".into(),
                "data stream timestamp field [@timestamp] is missing".into(),
            )),
        );
    }
    let id = id.unwrap_or_else(|| {
        st.auto_id += 1;
        format!("auto-{}", st.auto_id)
    });
    let key = (index.to_string(), id.clone());
    if op == "create" && st.docs.contains_key(&key) {
        return (
            409,
            Some((
                "version_conflict_engine_exception".into(),
                format!("[{id}]: version conflict, document already exists (current version [1])"),
            )),
        );
    }
    st.docs.insert(key, doc);
    (201, None)
}

/// ES `filter_path` for the patterns flowscribe uses: top-level keys, and
/// `items.*.<field>` / `items.*.error.<field>`.
fn filter(resp: Value, filter_path: &str) -> Value {
    let paths: Vec<&str> = filter_path.split(',').collect();
    let keep = |p: &str| paths.contains(&p);
    let mut out = Map::new();
    if keep("errors") {
        out.insert("errors".into(), resp["errors"].clone());
    }
    if keep("took") {
        out.insert("took".into(), resp["took"].clone());
    }
    let item_fields: Vec<&str> = paths
        .iter()
        .filter_map(|p| p.strip_prefix("items.*."))
        .collect();
    if !item_fields.is_empty()
        && let Some(items) = resp["items"].as_array()
    {
        let mut kept = Vec::new();
        for item in items {
            let Some((op, body)) = item.as_object().and_then(|o| o.iter().next()) else {
                continue;
            };
            let mut b = Map::new();
            for f in &item_fields {
                if let Some(sub) = f.strip_prefix("error.") {
                    if let Some(v) = body.get("error").and_then(|e| e.get(sub)) {
                        let e = b.entry("error").or_insert_with(|| json!({}));
                        e[sub] = v.clone();
                    }
                } else if let Some(v) = body.get(*f) {
                    b.insert((*f).to_string(), v.clone());
                }
            }
            kept.push(json!({ op.clone(): Value::Object(b) }));
        }
        // ES drops empty results entirely.
        if !kept.is_empty() {
            out.insert("items".into(), Value::Array(kept));
        }
    }
    Value::Object(out)
}
