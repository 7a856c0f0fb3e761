//! An OTLP logs receiver for tests and benches: the tonic-generated
//! `LogsService` server from opentelemetry-proto (gRPC) and an HTTP/1.1
//! `POST /v1/logs` endpoint, both decoding the real
//! `ExportLogsServiceRequest` bytes (protobuf, or OTLP/JSON through the
//! crate's serde support; gzip or zstd undone as a collector does).
//!
//! Each request is answered by the next scripted [`Reply`] (default
//! [`Reply::Ok`]): any gRPC code with or without `RetryInfo`, any HTTP
//! status with or without `Retry-After`, a partial success, or a stall.
//! Every request is recorded with its decoded records, headers and the
//! reply it got, so tests can check exactly-once delivery by counting
//! record bodies in accepted requests.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::VecDeque;
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message as _;
use tokio::sync::{Notify, oneshot};
use tonic::codec::CompressionEncoding;
use tonic::transport::server::TcpIncoming;
use tonic_types::{ErrorDetails, StatusExt as _};

/// How the server answers one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Success with an empty response.
    Ok,
    /// Success with `partial_success` set.
    PartialSuccess { rejected: i64, message: String },
    /// gRPC only: this status; `retry_delay` adds `google.rpc.RetryInfo`.
    Grpc {
        code: tonic::Code,
        retry_delay: Option<Duration>,
    },
    /// HTTP only: this status (with a `google.rpc.Status` body for 4xx/5xx
    /// as the spec asks); `retry_after_secs` adds `Retry-After`.
    Http {
        status: u16,
        retry_after_secs: Option<u64>,
    },
    /// Wait this long, then answer `Ok` (deadline tests).
    Stall(Duration),
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    pub request: ExportLogsServiceRequest,
    /// Lower-case header / metadata names and values.
    pub headers: Vec<(String, String)>,
    /// HTTP only: the path requested.
    pub path: String,
    /// The body size on the wire (after compression), HTTP only.
    pub wire_bytes: usize,
    pub reply: Reply,
    /// When the request arrived.
    pub at: Instant,
}

impl ReceivedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The string bodies of the request's records, in order.
    pub fn bodies(&self) -> Vec<String> {
        self.request
            .resource_logs
            .iter()
            .flat_map(|rl| &rl.scope_logs)
            .flat_map(|sl| &sl.log_records)
            .map(|r| match r.body.as_ref().and_then(|b| b.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    /// Whether the reply means the receiver kept the records.
    pub fn accepted(&self) -> bool {
        matches!(
            self.reply,
            Reply::Ok | Reply::PartialSuccess { .. } | Reply::Stall(_)
        )
    }
}

#[derive(Debug, Default)]
struct State {
    script: Mutex<VecDeque<Reply>>,
    received: Mutex<Vec<ReceivedRequest>>,
    /// Only count records (benches: no per-request copies).
    count_only: bool,
    /// Decode nothing; count requests (benches).
    discard: bool,
    records_accepted: Mutex<u64>,
    changed: Notify,
}

impl State {
    fn next_reply(&self) -> Reply {
        self.script.lock().unwrap().pop_front().unwrap_or(Reply::Ok)
    }

    fn record(&self, r: ReceivedRequest) {
        if r.accepted() {
            let n: usize = r
                .request
                .resource_logs
                .iter()
                .flat_map(|rl| &rl.scope_logs)
                .map(|sl| sl.log_records.len())
                .sum();
            *self.records_accepted.lock().unwrap() += n as u64;
        }
        if !self.count_only {
            self.received.lock().unwrap().push(r);
        }
        self.changed.notify_waiters();
    }
}

/// A running receiver; stops on drop.
#[derive(Debug)]
pub struct OtlpServer {
    pub addr: SocketAddr,
    state: Arc<State>,
    stop: Option<oneshot::Sender<()>>,
    /// The accept loop (or tonic's server), done once stopped.
    task: Option<tokio::task::JoinHandle<()>>,
}

/// TLS for the server: its PEM certificate and key, and when `client_ca`
/// is set, client certificates signed by it are required.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub client_ca_pem: Option<Vec<u8>>,
}

impl ServerTls {
    /// Read the server's certificate and key, and the CA that client
    /// certificates must chain to when given (mutual TLS).
    pub fn from_files(
        cert: &std::path::Path,
        key: &std::path::Path,
        client_ca: Option<&std::path::Path>,
    ) -> ServerTls {
        ServerTls {
            cert_pem: std::fs::read(cert).unwrap(),
            key_pem: std::fs::read(key).unwrap(),
            client_ca_pem: client_ca.map(|ca| std::fs::read(ca).unwrap()),
        }
    }
}

impl OtlpServer {
    /// Start the gRPC receiver on `addr` (port 0: any free port).
    pub async fn grpc(addr: &str, tls: Option<ServerTls>) -> OtlpServer {
        Self::grpc_with(addr, tls, false).await
    }

    /// A gRPC receiver that decodes and counts records but keeps no copy
    /// of the requests (benches).
    pub async fn grpc_counting(addr: &str) -> OtlpServer {
        Self::grpc_with(addr, None, true).await
    }

    async fn grpc_with(addr: &str, tls: Option<ServerTls>, count_only: bool) -> OtlpServer {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            count_only,
            ..State::default()
        });
        let svc = LogsServiceServer::new(GrpcReceiver {
            state: Arc::clone(&state),
        })
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(64 << 20);
        let (stop, stopped) = oneshot::channel::<()>();
        let mut builder = tonic::transport::Server::builder();
        if let Some(t) = tls {
            let mut tc = tonic::transport::ServerTlsConfig::new()
                .identity(tonic::transport::Identity::from_pem(t.cert_pem, t.key_pem));
            if let Some(ca) = t.client_ca_pem {
                tc = tc.client_ca_root(tonic::transport::Certificate::from_pem(ca));
            }
            builder = builder.tls_config(tc).unwrap();
        }
        let router = builder.add_service(svc);
        let task = tokio::spawn(async move {
            let _ = router
                .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
                    let _ = stopped.await;
                })
                .await;
        });
        OtlpServer {
            addr,
            state,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Answer the next requests with these replies, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.script.lock().unwrap().extend(replies);
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<ReceivedRequest> {
        self.state.received.lock().unwrap().clone()
    }

    /// Record bodies in accepted requests, in arrival order (duplicates kept).
    pub fn accepted_bodies(&self) -> Vec<String> {
        self.received()
            .iter()
            .filter(|r| r.accepted())
            .flat_map(|r| r.bodies())
            .collect()
    }

    pub fn records_accepted(&self) -> u64 {
        *self.state.records_accepted.lock().unwrap()
    }

    /// Wait until `cond` holds over the received requests (panics after
    /// `timeout`: a failure, not a synchronisation sleep).
    pub async fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        cond: impl Fn(&[ReceivedRequest]) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.state.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if cond(&self.state.received.lock().unwrap()) {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out waiting for: {what}");
            let _ = tokio::time::timeout(left, notified).await;
        }
    }

    /// Stop accepting connections (asynchronously: see [`Self::shutdown`]).
    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    /// Stop, and return once the listener is closed and every kept-alive
    /// connection is gone, so a client can no longer reach this server.
    pub async fn shutdown(&mut self) {
        self.stop();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl OtlpServer {
    /// Start the OTLP/HTTP receiver (`POST /v1/logs`) on `addr`.
    pub async fn http(addr: &str) -> OtlpServer {
        Self::http_with(addr, false, false, None).await
    }

    /// The OTLP/HTTP receiver behind TLS (rustls, ring).
    pub async fn https(addr: &str, tls: ServerTls) -> OtlpServer {
        Self::http_with(addr, false, false, Some(tls_acceptor(&tls))).await
    }

    /// An OTLP/HTTP receiver that decodes and counts records but keeps no
    /// copy of the requests (benches).
    pub async fn http_counting(addr: &str) -> OtlpServer {
        Self::http_with(addr, true, false, None).await
    }

    /// An HTTP receiver that reads each body completely and answers 200
    /// with an empty body, decoding nothing (benches: the client's cost
    /// without the receiver's). Counts requests in `records_accepted`.
    pub async fn http_discarding(addr: &str) -> OtlpServer {
        Self::http_with(addr, true, true, None).await
    }

    async fn http_with(
        addr: &str,
        count_only: bool,
        discard: bool,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> OtlpServer {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            count_only,
            discard,
            ..State::default()
        });
        let (stop, mut stopped) = oneshot::channel::<()>();
        let accept_state = Arc::clone(&state);
        let task = tokio::spawn(async move {
            let mut connections = Vec::new();
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let state = Arc::clone(&accept_state);
                        let tls = tls.clone();
                        connections.push(tokio::spawn(async move {
                            let service = hyper::service::service_fn(move |req| {
                                let state = Arc::clone(&state);
                                async move { Ok::<_, std::convert::Infallible>(http_export(&state, req).await) }
                            });
                            let http = hyper::server::conn::http1::Builder::new();
                            match tls {
                                None => {
                                    let io = hyper_util::rt::TokioIo::new(stream);
                                    let _ = http.serve_connection(io, service).await;
                                }
                                Some(acceptor) => {
                                    // A failed handshake is the client's
                                    // outcome to observe; nothing to serve.
                                    let Ok(tls) = acceptor.accept(stream).await else { return };
                                    let io = hyper_util::rt::TokioIo::new(tls);
                                    let _ = http.serve_connection(io, service).await;
                                }
                            }
                        }));
                    }
                }
            }
            // Stopping closes kept-alive connections too, like a restart.
            for c in &connections {
                c.abort();
            }
            for c in connections {
                let _ = c.await;
            }
        });
        OtlpServer {
            addr,
            state,
            stop: Some(stop),
            task: Some(task),
        }
    }
}

/// A rustls acceptor for `tls` (client certificates required when
/// `client_ca_pem` is set).
fn tls_acceptor(tls: &ServerTls) -> tokio_rustls::TlsAcceptor {
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls::{RootCertStore, ServerConfig, server::WebPkiClientVerifier};
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&tls.cert_pem)
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(&tls.key_pem).unwrap();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match &tls.client_ca_pem {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca) {
                roots.add(c.unwrap()).unwrap();
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    tokio_rustls::TlsAcceptor::from(Arc::new(builder.with_single_cert(chain, key).unwrap()))
}

type HttpResponse = hyper::Response<http_body_util::Full<bytes::Bytes>>;

fn http_response(status: u16, content_type: &str, body: Vec<u8>) -> HttpResponse {
    hyper::Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap()
}

/// A `google.rpc.Status` body in the request's encoding (OTLP/HTTP spec).
fn http_failure(status: u16, json: bool, message: &str) -> HttpResponse {
    let code = if status == 400 { 3 } else { 14 };
    if json {
        let body = serde_json::json!({ "code": code, "message": message });
        http_response(status, "application/json", body.to_string().into_bytes())
    } else {
        let body = tonic_types::Status {
            code,
            message: message.to_string(),
            details: vec![],
        }
        .encode_to_vec();
        http_response(status, "application/x-protobuf", body)
    }
}

async fn http_export(state: &State, req: hyper::Request<hyper::body::Incoming>) -> HttpResponse {
    use http_body_util::BodyExt as _;
    let path = req.uri().path().to_string();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let json = header("content-type").as_deref() == Some("application/json");
    let method_ok = req.method() == hyper::Method::POST;
    let Ok(body) = req.into_body().collect().await else {
        return http_failure(400, json, "unreadable body");
    };
    let wire = body.to_bytes();
    if state.discard {
        *state.records_accepted.lock().unwrap() += 1;
        return http_response(200, "application/x-protobuf", Vec::new());
    }
    if !method_ok || path != "/v1/logs" {
        return http_failure(404, json, "not found");
    }
    let raw = match header("content-encoding").as_deref() {
        None => wire.to_vec(),
        Some("gzip") => match gunzip(&wire) {
            Ok(b) => b,
            Err(e) => return http_failure(400, json, &format!("bad gzip: {e}")),
        },
        // The OTel Collector's confighttp also takes zstd.
        Some("zstd") => match zstd::stream::decode_all(&wire[..]) {
            Ok(b) => b,
            Err(e) => return http_failure(400, json, &format!("bad zstd: {e}")),
        },
        Some(other) => return http_failure(415, json, &format!("encoding {other}")),
    };
    let request = match header("content-type").as_deref() {
        Some("application/x-protobuf") => decode_protobuf(&raw),
        Some("application/json") => {
            serde_json::from_slice::<ExportLogsServiceRequest>(&raw).map_err(|e| e.to_string())
        }
        other => return http_failure(415, json, &format!("content type {other:?}")),
    };
    let request = match request {
        Ok(r) => r,
        Err(e) => return http_failure(400, json, &format!("undecodable request: {e}")),
    };
    let reply = state.next_reply();
    if let Reply::Stall(d) = &reply {
        tokio::time::sleep(*d).await;
    }
    state.record(ReceivedRequest {
        request,
        headers: headers.clone(),
        path,
        wire_bytes: wire.len(),
        reply: reply.clone(),
        at: Instant::now(),
    });
    let ok = |partial: Option<ExportLogsPartialSuccess>| {
        if json {
            let body = match partial {
                // OTLP/JSON: int64 as a decimal string.
                Some(p) => serde_json::json!({ "partialSuccess": {
                    "rejectedLogRecords": p.rejected_log_records.to_string(),
                    "errorMessage": p.error_message,
                }})
                .to_string(),
                None => "{}".to_string(),
            };
            http_response(200, "application/json", body.into_bytes())
        } else {
            let body = ExportLogsServiceResponse {
                partial_success: partial,
            }
            .encode_to_vec();
            http_response(200, "application/x-protobuf", body)
        }
    };
    match reply {
        Reply::Ok | Reply::Stall(_) => ok(None),
        Reply::PartialSuccess { rejected, message } => ok(Some(ExportLogsPartialSuccess {
            rejected_log_records: rejected,
            error_message: message,
        })),
        Reply::Http {
            status,
            retry_after_secs,
        } => {
            let mut r = http_failure(status, json, "scripted failure");
            if let Some(secs) = retry_after_secs {
                r.headers_mut()
                    .insert("retry-after", secs.to_string().parse().unwrap());
            }
            r
        }
        Reply::Grpc { .. } => http_failure(
            500,
            json,
            "test bug: a gRPC reply scripted on the HTTP server",
        ),
    }
}

impl Drop for OtlpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

struct GrpcReceiver {
    state: Arc<State>,
}

#[tonic::async_trait]
impl LogsService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let headers = request
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let reply = self.state.next_reply();
        if let Reply::Stall(d) = &reply {
            tokio::time::sleep(*d).await;
        }
        self.state.record(ReceivedRequest {
            request: request.into_inner(),
            headers,
            path: String::new(),
            wire_bytes: 0,
            reply: reply.clone(),
            at: Instant::now(),
        });
        match reply {
            Reply::Ok | Reply::Stall(_) => {
                Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
            }
            Reply::PartialSuccess { rejected, message } => {
                Ok(tonic::Response::new(ExportLogsServiceResponse {
                    partial_success: Some(ExportLogsPartialSuccess {
                        rejected_log_records: rejected,
                        error_message: message,
                    }),
                }))
            }
            Reply::Grpc {
                code,
                retry_delay: Some(d),
            } => Err(tonic::Status::with_error_details(
                code,
                "scripted failure",
                ErrorDetails::with_retry_info(Some(d)),
            )),
            Reply::Grpc {
                code,
                retry_delay: None,
            } => Err(tonic::Status::new(code, "scripted failure")),
            Reply::Http { .. } => Err(tonic::Status::internal(
                "test bug: an HTTP reply scripted on the gRPC server",
            )),
        }
    }
}

/// Undo `Content-Encoding: gzip`.
pub fn gunzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body).read_to_end(&mut out)?;
    Ok(out)
}

/// Decode a protobuf body (used by the HTTP receiver).
pub fn decode_protobuf(body: &[u8]) -> Result<ExportLogsServiceRequest, String> {
    ExportLogsServiceRequest::decode(body).map_err(|e| e.to_string())
}
