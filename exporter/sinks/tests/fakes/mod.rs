//! Protocol-faithful fake receivers for the HTTP sinks, on loopback: a
//! small hyper server ([`serve`]) plus one module per protocol that decodes
//! the real wire format and answers with the real error semantics.
//!
//! Shared by the integration tests (`mod fakes;`) and the benches
//! (`#[path = "../tests/fakes/mod.rs"] mod fakes;`), so it depends only on
//! the crate's own and dev dependencies. Not every user calls every item.
#![allow(dead_code, clippy::unwrap_used)]

pub mod es_bulk;
pub mod hec;
pub mod loki;

use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct FakeRequest {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    /// As received (still compressed when it was sent compressed).
    pub body: Bytes,
}

impl FakeRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body with `Content-Encoding: gzip` undone.
    pub fn decoded_body(&self) -> Result<Vec<u8>, String> {
        match self.header("content-encoding") {
            None => Ok(self.body.to_vec()),
            Some("gzip") => {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&self.body[..])
                    .read_to_end(&mut out)
                    .map_err(|e| format!("bad gzip body: {e}"))?;
                Ok(out)
            }
            Some(other) => Err(format!("unsupported content-encoding {other}")),
        }
    }
}

/// What the fake answers.
#[derive(Debug, Clone)]
pub enum FakeResponse {
    Reply {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    },
    /// Close the connection without any response (the request may have
    /// been processed: a lost response).
    Drop,
}

impl FakeResponse {
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        FakeResponse::Reply {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: serde_json::to_vec(body).unwrap(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        if let FakeResponse::Reply { headers, .. } = &mut self {
            headers.push((name, value.into()));
        }
        self
    }
}

pub type Handler = Arc<dyn Fn(FakeRequest) -> FakeResponse + Send + Sync>;

/// A running fake; stops when dropped.
pub struct FakeServer {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeServer {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A receiver for benches, on a runtime thread of its own: reads each body
/// whole and answers 200 with `content_type` and `body`, nothing parsed.
pub fn fixed_reply_server(
    content_type: &'static str,
    body: &'static [u8],
) -> (tokio::runtime::Runtime, FakeServer) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(serve(Arc::new(move |_req| FakeResponse::Reply {
        status: 200,
        headers: vec![("content-type", content_type.into())],
        body: body.to_vec(),
    })));
    (rt, server)
}

/// Serve `handler` on 127.0.0.1 (HTTP/1.1, keep-alive).
pub async fn serve(handler: Handler) -> FakeServer {
    serve_on("127.0.0.1:0", handler).await
}

/// Serve `handler` on `addr`.
pub async fn serve_on(addr: &str, handler: Handler) -> FakeServer {
    let listener = TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicU64::new(0));
    let conns = Arc::clone(&connections);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let _ = stream.set_nodelay(true);
            conns.fetch_add(1, Ordering::SeqCst);
            let handler = Arc::clone(&handler);
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let handler = Arc::clone(&handler);
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes());
                        let Ok(body) = body else {
                            return Err("client went away");
                        };
                        let query = parts
                            .uri
                            .query()
                            .unwrap_or("")
                            .split('&')
                            .filter(|s| !s.is_empty())
                            .map(|kv| {
                                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                                (k.to_string(), v.to_string())
                            })
                            .collect();
                        let fr = FakeRequest {
                            method: parts.method.to_string(),
                            path: parts.uri.path().to_string(),
                            query,
                            headers: parts.headers,
                            body,
                        };
                        // The handler may block briefly on its state lock;
                        // it never awaits.
                        match handler(fr) {
                            FakeResponse::Reply {
                                status,
                                headers,
                                body,
                            } => {
                                let mut r = Response::new(Full::new(Bytes::from(body)));
                                *r.status_mut() = StatusCode::from_u16(status).unwrap();
                                for (k, v) in headers {
                                    r.headers_mut().insert(k, v.parse().unwrap());
                                }
                                Ok::<_, &'static str>(r)
                            }
                            // hyper closes the connection when the service
                            // fails, without writing a response.
                            FakeResponse::Drop => Err("dropped by the fake"),
                        }
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    FakeServer {
        addr,
        connections,
        task,
    }
}
