//! An OTLP logs receiver for tests and benches: the tonic-generated
//! `LogsService` server from opentelemetry-proto (gRPC) and an HTTP/1.1
//! `POST /v1/logs` endpoint, both decoding the real
//! `ExportLogsServiceRequest` bytes (protobuf, or OTLP/JSON through the
//! crate's serde support; gzip undone as a collector does).
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
    records_accepted: Mutex<u64>,
    changed: Notify,
}

impl State {
    fn next_reply(&self) -> Reply {
        self.script.lock().unwrap().pop_front().unwrap_or(Reply::Ok)
    }

    fn record(&self, r: ReceivedRequest) {
        if r.accepted() {
            *self.records_accepted.lock().unwrap() += r.bodies().len() as u64;
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
}

/// TLS for the server: its PEM certificate and key, and when `client_ca`
/// is set, client certificates signed by it are required.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub client_ca_pem: Option<Vec<u8>>,
}

impl OtlpServer {
    /// Start the gRPC receiver on `addr` (port 0: any free port).
    pub async fn grpc(addr: &str, tls: Option<ServerTls>) -> OtlpServer {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
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
        tokio::spawn(async move {
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

    /// Stop accepting connections.
    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
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
