//! The small HTTP/1.1 client the HTTP sinks share (Elasticsearch `_bulk`,
//! Splunk HEC, Loki push, OTLP/HTTP).
//!
//! Pipeline position: a sink's transport builds one [`HttpClient`] from an
//! [`HttpClientConfig`] when the sink is built, then calls
//! [`HttpClient::send`] once per request. The client does what every HTTP
//! sink needs and nothing protocol-specific:
//!
//! * `http://` and `https://` (rustls with the ring provider; system roots,
//!   or a CA file that replaces them; optional client certificate; the
//!   files are re-read for the next connection when they change);
//! * kept-alive connections reused across requests, a fresh connection
//!   tried once when a reused one turns out to be closed by the server;
//! * an optional compressed request body: gzip (`Content-Encoding: gzip`)
//!   or zstd
//!   (`Content-Encoding: zstd`, for receivers that accept it, such as the
//!   OTel Collector's OTLP/HTTP receiver);
//! * an `Authorization` header (Bearer, ApiKey, Basic, Splunk) whose secret
//!   is read once from a file or an environment variable, marked sensitive,
//!   and redacted in every `Debug` output;
//! * a per-request timeout covering connect, TLS, request and response;
//! * failures without a response mapped to the classification table's
//!   [`TransportFailure`]s (refused, reset, DNS, TLS handshake vs
//!   verification, timeout), and [`HttpResponse::retry_after`] for the
//!   `Retry-After` header (both forms, via [`parse_retry_after`]).
//!
//! It is built on hyper's connection API rather than a full client so that
//! each failure can be classified exactly (see `docs/adr/003-http-client.md`).
//! Redirects are not followed: a 3xx reaches the sink as its status, and the
//! table retries it with the sink flagged degraded (a redirected POST is a
//! misconfigured endpoint).
//!
//! Use from a transport's `send` (the OTLP/HTTP shape):
//!
//! ```no_run
//! # async fn send_logs(body: bytes::Bytes) -> Result<(), Box<dyn std::error::Error>> {
//! use flowscribe_sinks::core::driver::SendReport;
//! use flowscribe_sinks::core::http::{HttpAuth, HttpClient, HttpClientConfig, HttpRequest, SecretSource};
//! use std::time::Duration;
//!
//! let mut cfg = HttpClientConfig::new("https://collector:4318");
//! cfg.auth = HttpAuth::Bearer(SecretSource::Env("OTLP_TOKEN".into()));
//! let client = HttpClient::new(&cfg)?; // reads the secret and TLS files once
//! let req = HttpRequest::post("/v1/logs", "application/x-protobuf", body).gzip(true);
//! let report = match client.send(req).await {
//!     // Any status is a response: the table decides what it means.
//!     Ok(resp) => SendReport::batch(resp.outcome())
//!         .with_retry_after(resp.retry_after(Duration::from_secs(300))),
//!     // No (complete) response: refused, reset, DNS, TLS, timeout.
//!     Err(e) => SendReport::batch(e.outcome()),
//! };
//! # let _ = report;
//! # Ok(())
//! # }
//! ```
//!
//! This module must not retry beyond that one reconnect, sleep, classify
//! statuses (sinks ask [`crate::core::classify`]) or log a secret.

#[cfg(test)]
mod tests;

use std::error::Error as _;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::rustls;

use super::backoff::parse_retry_after;
use super::classify::{Outcome, TransportFailure};
use super::tls::{ReloadingConnector, TlsFiles};

/// A secret (token, API key, password) read from a file or the
/// environment. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for building a header. Never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where a secret comes from. Secrets are never written in the config
/// itself, so configs and `--sink` URLs can be logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// The whole file, without trailing line breaks (`echo token > file`).
    File(PathBuf),
    /// The value of this environment variable.
    Env(String),
}

impl SecretSource {
    /// Read the secret now. An empty secret is an error: it would only
    /// produce 401s later.
    pub fn load(&self) -> Result<Secret, HttpConfigError> {
        let value = match self {
            SecretSource::File(path) => std::fs::read_to_string(path).map_err(|e| {
                HttpConfigError(vec![format!("secret file {}: {e}", path.display())])
            })?,
            SecretSource::Env(var) => std::env::var(var).map_err(|e| {
                HttpConfigError(vec![format!("secret environment variable {var}: {e}")])
            })?,
        };
        let value = value.trim_end_matches(['\r', '\n']).to_string();
        if value.is_empty() {
            return Err(HttpConfigError(vec![format!("secret {self:?} is empty")]));
        }
        Ok(Secret(value))
    }
}

/// The `Authorization` header a sink sends.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HttpAuth {
    #[default]
    None,
    /// `Authorization: Bearer <token>` (Loki gateways, OTLP).
    Bearer(SecretSource),
    /// `Authorization: ApiKey <value>` (Elasticsearch). The secret is the
    /// `encoded` value of ES's create-API-key response, i.e.
    /// `base64(id:api_key)`.
    ApiKey(SecretSource),
    /// `Authorization: Basic base64(username:password)`.
    Basic {
        username: String,
        password: SecretSource,
    },
    /// `Authorization: Splunk <hec token>` (Splunk HEC).
    Splunk(SecretSource),
}

impl HttpAuth {
    /// The header value, secrets loaded; `None` for [`HttpAuth::None`].
    fn header_value(&self) -> Result<Option<HeaderValue>, HttpConfigError> {
        let text = match self {
            HttpAuth::None => return Ok(None),
            HttpAuth::Bearer(s) => format!("Bearer {}", s.load()?.expose()),
            HttpAuth::ApiKey(s) => format!("ApiKey {}", s.load()?.expose()),
            HttpAuth::Basic { username, password } => {
                let pair = format!("{username}:{}", password.load()?.expose());
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                )
            }
            HttpAuth::Splunk(s) => format!("Splunk {}", s.load()?.expose()),
        };
        let mut value = HeaderValue::try_from(text).map_err(|_| {
            HttpConfigError(vec![
                "auth: the secret contains characters not allowed in a header".into(),
            ])
        })?;
        value.set_sensitive(true);
        Ok(Some(value))
    }
}

/// TLS settings for `https://` endpoints. Verification is always on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpTlsConfig {
    /// PEM file of the CA certificates that may sign the server's
    /// certificate; replaces the system roots when set.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain presented to the server (mutual TLS).
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file`.
    pub client_key_file: Option<PathBuf>,
    /// The name the server certificate must carry; default: the URL's host.
    pub server_name: Option<String>,
}

/// Settings of one [`HttpClient`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpClientConfig {
    /// `http://host[:port][/base/path]` or `https://…`. Request paths are
    /// appended to the base path.
    pub endpoint: String,
    /// Used only for `https://`.
    pub tls: HttpTlsConfig,
    pub auth: HttpAuth,
    /// Extra headers sent with every request (e.g. `X-Scope-OrgID`).
    pub headers: Vec<(String, String)>,
    /// TCP connect plus TLS handshake must finish within this.
    pub connect_timeout: Duration,
    /// The whole request (connect, send, full response) must finish within
    /// this, else [`TransportFailure::Timeout`].
    pub request_timeout: Duration,
    /// Idle kept-alive connections kept for reuse.
    pub max_idle_connections: usize,
    /// A response body larger than this is abandoned as a transport failure
    /// (the records are retried, never dropped).
    pub max_response_bytes: usize,
    /// gzip level 0..=9 for requests sent with [`HttpRequest::gzip`].
    pub gzip_level: u32,
}

impl HttpClientConfig {
    /// Defaults: connect 10 s, request 25 s (below the driver's default 30 s
    /// send timeout, so a slow receiver is reported by the client with its
    /// detail), 4 idle connections, responses up to 64 MiB, gzip level 1
    /// (fast; see docs/benchmarks.md).
    pub fn new(endpoint: impl Into<String>) -> Self {
        HttpClientConfig {
            endpoint: endpoint.into(),
            tls: HttpTlsConfig::default(),
            auth: HttpAuth::None,
            headers: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(25),
            max_idle_connections: 4,
            max_response_bytes: 64 << 20,
            gzip_level: 1,
        }
    }

    /// Every problem, without IO (secrets and TLS files are read by
    /// [`HttpClient::new`]).
    pub fn validate(&self) -> Result<(), HttpConfigError> {
        let mut problems = Vec::new();
        match Endpoint::parse(&self.endpoint) {
            Ok(ep) => {
                if !ep.https && self.tls != HttpTlsConfig::default() {
                    problems.push("tls: only valid with an https:// endpoint".into());
                }
            }
            Err(p) => problems.push(format!("endpoint: {p}")),
        }
        if self.tls.client_cert_file.is_some() != self.tls.client_key_file.is_some() {
            problems.push("tls: client_cert_file and client_key_file go together".into());
        }
        for (name, value) in &self.headers {
            if HeaderName::try_from(name.as_str()).is_err() {
                problems.push(format!("headers: {name:?} is not a header name"));
            }
            if HeaderValue::try_from(value.as_str()).is_err() {
                problems.push(format!(
                    "headers: the value of {name:?} is not a header value"
                ));
            }
        }
        if let HttpAuth::Basic { username, .. } = &self.auth
            && username.contains(':')
        {
            problems.push("auth: a basic-auth username cannot contain ':'".into());
        }
        if self.connect_timeout.is_zero() {
            problems.push("connect_timeout: must be positive".into());
        }
        if self.request_timeout.is_zero() {
            problems.push("request_timeout: must be positive".into());
        }
        if self.gzip_level > 9 {
            problems.push("gzip_level: must be 0..=9".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(HttpConfigError(problems))
        }
    }
}

/// Every problem found while validating or building an [`HttpClient`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid HTTP client config: {}", .0.join("; "))]
pub struct HttpConfigError(pub Vec<String>);

/// A parsed endpoint URL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    https: bool,
    host: String,
    port: u16,
    /// `Host` header value: `host[:port]` as given.
    authority: String,
    /// Without a trailing `/`; empty for none.
    base_path: String,
}

impl Endpoint {
    fn parse(url: &str) -> Result<Endpoint, String> {
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("{url:?} must start with http:// or https://"));
        };
        if rest.contains(['?', '#']) {
            return Err(format!("{url:?}: no query or fragment allowed"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(format!(
                "{url:?}: credentials in the URL are not supported; use auth"
            ));
        }
        let default_port = if https { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{url:?}: unclosed [ in host"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| format!("{url:?}: bad port"))?,
                None if after.is_empty() => default_port,
                None => return Err(format!("{url:?}: bad authority")),
            };
            (h.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_string(),
                    p.parse().map_err(|_| format!("{url:?}: bad port"))?,
                ),
                None => (authority.to_string(), default_port),
            }
        };
        if host.is_empty() {
            return Err(format!("{url:?}: no host"));
        }
        Ok(Endpoint {
            https,
            host,
            port,
            authority: authority.to_string(),
            base_path: path.trim_end_matches('/').to_string(),
        })
    }
}

/// One request. Build with [`HttpRequest::post`] (or set `method`).
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: Method,
    /// Appended to the endpoint's base path; starts with `/`, may carry a
    /// query.
    pub path: String,
    pub content_type: &'static str,
    pub body: Bytes,
    /// How the body is compressed on the wire (`Content-Encoding`).
    pub encoding: BodyEncoding,
    /// Headers for this request only.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl HttpRequest {
    /// A POST of `body` to `path`.
    pub fn post(path: impl Into<String>, content_type: &'static str, body: Bytes) -> Self {
        HttpRequest {
            method: Method::POST,
            path: path.into(),
            content_type,
            body,
            encoding: BodyEncoding::Identity,
            headers: Vec::new(),
        }
    }

    /// Compress the body with gzip (or not).
    pub fn gzip(mut self, on: bool) -> Self {
        self.encoding = if on {
            BodyEncoding::Gzip
        } else {
            BodyEncoding::Identity
        };
        self
    }

    /// Send the body with this `Content-Encoding`.
    pub fn encoding(mut self, encoding: BodyEncoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// Add a header for this request.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
}

/// A complete response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl HttpResponse {
    /// The classification-table outcome of the status.
    pub fn outcome(&self) -> Outcome {
        Outcome::Http {
            status: self.status,
        }
    }

    /// The `Retry-After` delay, if the header is present and valid
    /// (delta-seconds or HTTP-date), capped at `cap`.
    pub fn retry_after(&self, cap: Duration) -> Option<Duration> {
        let value = self.headers.get(header::RETRY_AFTER)?.to_str().ok()?;
        parse_retry_after(value, SystemTime::now(), cap)
    }
}

/// A request that got no (complete) response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{failure:?}: {detail}")]
pub struct HttpSendError {
    /// The table row this falls under.
    pub failure: TransportFailure,
    /// What happened, for logs (never contains a secret).
    pub detail: String,
}

impl HttpSendError {
    fn new(failure: TransportFailure, detail: impl Into<String>) -> Self {
        HttpSendError {
            failure,
            detail: detail.into(),
        }
    }

    /// The classification-table outcome.
    pub fn outcome(&self) -> Outcome {
        Outcome::Transport(self.failure)
    }
}

/// A request body's `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyEncoding {
    /// Sent as it is.
    #[default]
    Identity,
    /// gzip at the client's `gzip_level`: what every HTTP sink's receiver
    /// accepts (the only compression Elasticsearch takes).
    Gzip,
    /// zstd at [`ZSTD_LEVEL`]: several times faster than gzip level 1 with a
    /// better ratio (docs/benchmarks.md, "End to end"); only for receivers
    /// that accept it (the OTel Collector's OTLP/HTTP receiver does).
    Zstd,
}

impl BodyEncoding {
    /// The `Content-Encoding` header value; `None` for identity.
    pub fn header_value(self) -> Option<&'static str> {
        match self {
            BodyEncoding::Identity => None,
            BodyEncoding::Gzip => Some("gzip"),
            BodyEncoding::Zstd => Some("zstd"),
        }
    }
}

/// The zstd level of [`BodyEncoding::Zstd`]: zstd's fast end, where it
/// still compresses our records 3-4x better than gzip level 1.
pub const ZSTD_LEVEL: i32 = 1;

/// gzip `data` at `level` (0..=9): one gzip member, which every receiver
/// decodes the same whichever library wrote it. With the `isal` feature,
/// level 1 (the default) goes through ISA-L's igzip level 1: 3-4x the CPU
/// throughput of zlib-rs on our `_bulk` and OTLP bodies, with about twice
/// the ratio (docs/benchmarks.md, "End to end"); other levels, and igzip's
/// rare refusal, use zlib-rs. (A deflate state kept per thread and the
/// gzip member framed here around it with `crc32fast` ran 24 % fewer
/// instructions under callgrind but no less CPU time on the machine, so
/// the zlib-rs encoder stays the library's.)
pub fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    #[cfg(feature = "isal")]
    if level == 1
        && let Some(out) = igzip_level1(data)
    {
        return out;
    }
    zlib_gzip(data, level)
}

/// gzip through zlib-rs (flate2).
fn zlib_gzip(data: &[u8], level: u32) -> Vec<u8> {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 64),
        flate2::Compression::new(level.min(9)),
    );
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

/// The largest igzip scratch buffer a thread keeps between bodies.
#[cfg(feature = "isal")]
const SCRATCH_KEEP: usize = 16 << 20;

/// gzip through ISA-L igzip level 1 (stateless: the whole body in one
/// call; `flowscribe-sinks-igzip`), into a scratch buffer kept per thread
/// (a fresh buffer of the body's size costs its page faults on every
/// call), copied out at its compressed size. `None` when igzip fails (it
/// should not: the output has room for stored blocks, igzip's fallback
/// for incompressible data).
#[cfg(feature = "isal")]
fn igzip_level1(data: &[u8]) -> Option<Vec<u8>> {
    use std::cell::RefCell;
    thread_local! {
        static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.try_borrow_mut().ok()?;
        scratch.clear();
        let out = flowscribe_sinks_igzip::gzip_level1(data, &mut scratch)
            .ok()
            .map(|()| scratch.to_vec());
        // Keep the scratch for ordinary batches, not the largest body ever.
        if scratch.capacity() > SCRATCH_KEEP {
            *scratch = Vec::new();
        }
        out
    })
}

/// zstd `data` at `level`: one frame. (A compression context kept per
/// thread made no difference in CPU time on a 1.5 MB batch.)
/// Fails only for a level zstd does not have.
pub fn zstd(data: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    zstd::bulk::compress(data, level)
}

type Sender = SendRequest<Full<Bytes>>;

/// The shared HTTP/1.1 client. Cheap to clone (one connection pool).
#[derive(Clone)]
pub struct HttpClient {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Endpoint,
    /// Rebuilt from its files when they change (certificate rotation).
    tls: Option<Mutex<ReloadingConnector>>,
    /// `Authorization` (sensitive) and the configured extra headers.
    headers: HeaderMap,
    connect_timeout: Duration,
    request_timeout: Duration,
    max_idle: usize,
    max_response_bytes: usize,
    gzip_level: u32,
    idle: Mutex<Vec<Sender>>,
    stats: HttpClientStats,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values are left out: one of them is the credential.
        f.debug_struct("HttpClient")
            .field("endpoint", &self.inner.endpoint)
            .field("tls", &self.inner.tls.is_some())
            .field(
                "headers",
                &self
                    .inner
                    .headers
                    .keys()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("request_timeout", &self.inner.request_timeout)
            .finish_non_exhaustive()
    }
}

/// Counters of one client (connections are the interesting part).
#[derive(Debug, Default)]
pub struct HttpClientStats {
    /// Connections opened (TCP, plus TLS for https).
    pub connects_total: std::sync::atomic::AtomicU64,
    /// Requests that got a complete response.
    pub responses_total: std::sync::atomic::AtomicU64,
    /// Requests sent again on a fresh connection because a reused one
    /// closed before any response byte (the keep-alive race).
    pub reconnects_total: std::sync::atomic::AtomicU64,
}

impl HttpClient {
    /// Validate, read the secret and the TLS files, and return the client.
    /// Opens no connection (the first request does).
    pub fn new(cfg: &HttpClientConfig) -> Result<HttpClient, HttpConfigError> {
        cfg.validate()?;
        let endpoint = Endpoint::parse(&cfg.endpoint).map_err(|e| HttpConfigError(vec![e]))?;
        let tls = if endpoint.https {
            Some(Mutex::new(tls_connector(&cfg.tls, &endpoint.host)?))
        } else {
            None
        };
        let mut headers = HeaderMap::new();
        for (name, value) in &cfg.headers {
            // Both were checked by validate().
            if let (Ok(n), Ok(v)) = (
                HeaderName::try_from(name.as_str()),
                HeaderValue::try_from(value.as_str()),
            ) {
                headers.append(n, v);
            }
        }
        if let Some(auth) = cfg.auth.header_value()? {
            headers.insert(header::AUTHORIZATION, auth);
        }
        Ok(HttpClient {
            inner: Arc::new(Inner {
                endpoint,
                tls,
                headers,
                connect_timeout: cfg.connect_timeout,
                request_timeout: cfg.request_timeout,
                max_idle: cfg.max_idle_connections,
                max_response_bytes: cfg.max_response_bytes,
                gzip_level: cfg.gzip_level,
                idle: Mutex::new(Vec::new()),
                stats: HttpClientStats::default(),
            }),
        })
    }

    /// Counters of this client.
    pub fn stats(&self) -> &HttpClientStats {
        &self.inner.stats
    }

    /// Send one request and read the whole response, within the request
    /// timeout. Any status is a response; only a missing or incomplete
    /// response is an error.
    pub async fn send(&self, req: HttpRequest) -> Result<HttpResponse, HttpSendError> {
        let body = match req.encoding {
            BodyEncoding::Identity => req.body.clone(),
            BodyEncoding::Gzip => Bytes::from(gzip(&req.body, self.inner.gzip_level)),
            BodyEncoding::Zstd => match zstd(&req.body, ZSTD_LEVEL) {
                Ok(body) => Bytes::from(body),
                // Our bug, not the records' fault: keep them (retry), as
                // for a request that cannot be built.
                Err(e) => {
                    return Err(HttpSendError::new(
                        TransportFailure::ConnectionReset,
                        format!("zstd compression: {e}"),
                    ));
                }
            },
        };
        let attempt = self.send_with_reconnect(&req, body);
        match tokio::time::timeout(self.inner.request_timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(HttpSendError::new(
                TransportFailure::Timeout,
                format!(
                    "no complete response within {:?}",
                    self.inner.request_timeout
                ),
            )),
        }
    }

    /// Drop every idle connection (sink shutdown).
    pub fn close_idle(&self) {
        self.idle().clear();
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Sender>> {
        self.inner.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn send_with_reconnect(
        &self,
        req: &HttpRequest,
        body: Bytes,
    ) -> Result<HttpResponse, HttpSendError> {
        let reused = self.checkout_idle();
        let reused_attempt = reused.is_some();
        let sender = match reused {
            Some(s) => s,
            None => self.connect().await?,
        };
        match self.exchange(sender, req, body.clone()).await {
            Err(Exchange::ClosedBeforeResponse(e)) if reused_attempt => {
                // The server closed the kept-alive connection as our request
                // went out (the keep-alive race): one fresh try.
                tracing::debug!(detail = %e, "reused HTTP connection was closed; reconnecting");
                self.inner
                    .stats
                    .reconnects_total
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let sender = self.connect().await?;
                self.exchange(sender, req, body)
                    .await
                    .map_err(Exchange::into_error)
            }
            r => r.map_err(Exchange::into_error),
        }
    }

    fn checkout_idle(&self) -> Option<Sender> {
        let mut idle = self.idle();
        while let Some(s) = idle.pop() {
            if s.is_ready() && !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    fn checkin(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle();
        if idle.len() < self.inner.max_idle {
            idle.push(sender);
        }
    }

    fn build_request(
        &self,
        req: &HttpRequest,
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>, HttpSendError> {
        let ep = &self.inner.endpoint;
        let uri = format!("{}{}", ep.base_path, req.path);
        let mut builder = Request::builder()
            .method(req.method.clone())
            .uri(uri)
            .header(header::HOST, ep.authority.as_str())
            .header(header::CONTENT_TYPE, req.content_type);
        if let Some(value) = req.encoding.header_value() {
            builder = builder.header(header::CONTENT_ENCODING, value);
        }
        let mut request = builder.body(Full::new(body)).map_err(|e| {
            // Only a bad path can get here; resending cannot fix it, but it
            // is our bug, not the records' fault: keep them (retry).
            HttpSendError::new(
                TransportFailure::ConnectionReset,
                format!("building the request: {e}"),
            )
        })?;
        let headers = request.headers_mut();
        for (k, v) in &self.inner.headers {
            headers.append(k, v.clone());
        }
        for (k, v) in &req.headers {
            headers.insert(k, v.clone());
        }
        Ok(request)
    }

    async fn exchange(
        &self,
        mut sender: Sender,
        req: &HttpRequest,
        body: Bytes,
    ) -> Result<HttpResponse, Exchange> {
        let request = self.build_request(req, body).map_err(Exchange::Failed)?;
        sender
            .ready()
            .await
            .map_err(|e| Exchange::ClosedBeforeResponse(map_hyper_error(&e)))?;
        let response = match sender.send_request(request).await {
            Ok(r) => r,
            Err(e) if e.is_canceled() || e.is_closed() || e.is_incomplete_message() => {
                return Err(Exchange::ClosedBeforeResponse(map_hyper_error(&e)));
            }
            Err(e) => return Err(Exchange::Failed(map_hyper_error(&e))),
        };
        let (parts, incoming) = response.into_parts();
        let body = Limited::new(incoming, self.inner.max_response_bytes)
            .collect()
            .await
            .map_err(|e| {
                let detail = match e.downcast_ref::<hyper::Error>() {
                    Some(h) => return Exchange::Failed(map_hyper_error(h)),
                    None => format!("reading the response body: {e}"),
                };
                Exchange::Failed(HttpSendError::new(
                    TransportFailure::ConnectionReset,
                    detail,
                ))
            })?
            .to_bytes();
        self.inner
            .stats
            .responses_total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.checkin(sender);
        Ok(HttpResponse {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }

    /// Resolve, connect, handshake TLS and HTTP/1.1, within the connect
    /// timeout.
    async fn connect(&self) -> Result<Sender, HttpSendError> {
        let timeout = self.inner.connect_timeout;
        match tokio::time::timeout(timeout, self.connect_inner()).await {
            Ok(r) => r,
            Err(_) => Err(HttpSendError::new(
                TransportFailure::Timeout,
                format!(
                    "connect to {} took longer than {timeout:?}",
                    self.inner.endpoint.authority
                ),
            )),
        }
    }

    async fn connect_inner(&self) -> Result<Sender, HttpSendError> {
        let ep = &self.inner.endpoint;
        let addrs: Vec<SocketAddr> = match ep.host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, ep.port)],
            Err(_) => tokio::net::lookup_host((ep.host.as_str(), ep.port))
                .await
                .map_err(|e| {
                    HttpSendError::new(
                        TransportFailure::DnsFailure,
                        format!("resolving {}: {e}", ep.host),
                    )
                })?
                .collect(),
        };
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(tcp) => return self.handshake(tcp).await,
                Err(e) => last = Some((addr, e)),
            }
        }
        let Some((addr, e)) = last else {
            return Err(HttpSendError::new(
                TransportFailure::DnsFailure,
                format!("{} resolved to no address", ep.host),
            ));
        };
        let failure = match e.kind() {
            io::ErrorKind::TimedOut => TransportFailure::Timeout,
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                TransportFailure::ConnectionReset
            }
            // Refused, unreachable, no route: nobody took the connection.
            _ => TransportFailure::ConnectionRefused,
        };
        Err(HttpSendError::new(
            failure,
            format!("connecting to {addr}: {e}"),
        ))
    }

    /// TLS (for https) and the HTTP/1.1 handshake on a connected socket.
    async fn handshake(&self, tcp: TcpStream) -> Result<Sender, HttpSendError> {
        // Requests are written whole; Nagle would only delay the last segment.
        let _ = tcp.set_nodelay(true);
        self.inner
            .stats
            .connects_total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match &self.inner.tls {
            None => handshake_http1(tcp).await,
            Some(reloading) => {
                // Rebuilt here when a TLS file changed since the last
                // connection; the lock is not held across the handshake.
                let (connector, name) = reloading
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .current();
                let tls = connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| map_tls_error(&e))?;
                handshake_http1(tls).await
            }
        }
    }
}

/// Why an exchange failed.
enum Exchange {
    /// The connection closed before any response byte. On a reused
    /// connection this is almost always the keep-alive race (the server
    /// closed an idle connection as we wrote); the request may still have
    /// been processed, so a resend can duplicate, which event ids make
    /// identifiable.
    ClosedBeforeResponse(HttpSendError),
    Failed(HttpSendError),
}

impl Exchange {
    fn into_error(self) -> HttpSendError {
        match self {
            Exchange::ClosedBeforeResponse(e) | Exchange::Failed(e) => e,
        }
    }
}

async fn handshake_http1<T>(io: T) -> Result<Sender, HttpSendError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| map_hyper_error(&e))?;
    tokio::spawn(async move {
        // Ends when the server closes or the last sender is dropped; an
        // error here was already seen by the request that hit it.
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "HTTP connection ended");
        }
    });
    Ok(sender)
}

/// The rustls error somewhere in an error's source chain.
fn find_rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(io) = err.downcast_ref::<io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(r) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(r);
        }
        cur = err.source();
    }
    None
}

fn tls_failure(e: &rustls::Error) -> TransportFailure {
    match e {
        rustls::Error::InvalidCertificate(_) => TransportFailure::TlsVerification,
        _ => TransportFailure::TlsHandshake,
    }
}

fn map_tls_error(e: &io::Error) -> HttpSendError {
    match find_rustls_error(e) {
        Some(r) => HttpSendError::new(tls_failure(r), format!("TLS: {r}")),
        // EOF or reset during the handshake: the peer does not speak TLS
        // or refused us.
        None => HttpSendError::new(
            TransportFailure::TlsHandshake,
            format!("TLS handshake: {e}"),
        ),
    }
}

fn map_hyper_error(e: &hyper::Error) -> HttpSendError {
    if let Some(r) = find_rustls_error(e) {
        // TLS 1.3 reports a refused client certificate on the first read.
        return HttpSendError::new(tls_failure(r), format!("TLS: {r}"));
    }
    if e.is_timeout() {
        return HttpSendError::new(TransportFailure::Timeout, e.to_string());
    }
    let detail = match e.source() {
        Some(s) => format!("{e}: {s}"),
        None => e.to_string(),
    };
    HttpSendError::new(TransportFailure::ConnectionReset, detail)
}

/// The reloading rustls connector (ALPN `http/1.1`).
fn tls_connector(cfg: &HttpTlsConfig, host: &str) -> Result<ReloadingConnector, HttpConfigError> {
    let files = TlsFiles {
        ca_file: cfg.ca_file.clone(),
        client_cert_file: cfg.client_cert_file.clone(),
        client_key_file: cfg.client_key_file.clone(),
        server_name: cfg.server_name.clone(),
    };
    ReloadingConnector::new(files, host, &[b"http/1.1"], "http")
        .map_err(|e| HttpConfigError(vec![format!("tls: {e}")]))
}
