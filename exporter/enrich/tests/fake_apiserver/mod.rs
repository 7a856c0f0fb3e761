//! An in-process fake of the Kubernetes API server's list/watch protocol,
//! over real HTTP/1.1 on loopback, for the real kube client.
//!
//! What it reproduces: cluster-wide list with `resourceVersion` and
//! `limit`/`continue` paging; watch from a resourceVersion as a chunked
//! stream of `ADDED`/`MODIFIED`/`DELETED`/`BOOKMARK` events (bookmarks only
//! when `allowWatchBookmarks=true`); `410 Gone` as an `ERROR` watch event
//! when the requested version is older than the compacted history; `403`
//! with a `Status` body for forbidden resources; metadata-only responses
//! (`PartialObjectMetadata[List]`) when the client asks for them in
//! `Accept`. One global resourceVersion counter, as etcd has.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// (apiVersion, kind) of each plural resource the fake serves.
fn kind_of(plural: &str) -> Option<(&'static str, &'static str)> {
    Some(match plural {
        "pods" => ("v1", "Pod"),
        "namespaces" => ("v1", "Namespace"),
        "nodes" => ("v1", "Node"),
        "services" => ("v1", "Service"),
        "endpointslices" => ("discovery.k8s.io/v1", "EndpointSlice"),
        "replicasets" => ("apps/v1", "ReplicaSet"),
        "jobs" => ("batch/v1", "Job"),
        "networkpolicies" => ("networking.k8s.io/v1", "NetworkPolicy"),
        "stagednetworkpolicies" => ("flowscribe.dev/v1alpha1", "StagedNetworkPolicy"),
        _ => return None,
    })
}

/// The apiVersion a request path addresses: `/api/v1/pods` -> `v1`,
/// `/apis/networking.k8s.io/v1/networkpolicies` -> `networking.k8s.io/v1`.
fn path_api_version(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').collect();
    match parts.get(1) {
        Some(&"api") => parts.get(2).copied().unwrap_or("").to_string(),
        Some(&"apis") => format!(
            "{}/{}",
            parts.get(2).copied().unwrap_or(""),
            parts.get(3).copied().unwrap_or("")
        ),
        _ => String::new(),
    }
}

#[derive(Debug, Default)]
struct Resource {
    objects: BTreeMap<(String, String), Value>,
    /// (resourceVersion, type, object) in order.
    events: Vec<(u64, &'static str, Value)>,
}

#[derive(Debug, Default)]
struct State {
    rv: u64,
    /// Watches from a version below this get 410 Gone.
    compacted: u64,
    resources: HashMap<String, Resource>,
    forbidden: HashSet<String>,
    /// Every request: "LIST pods", "WATCH pods rv=12", with "meta" when
    /// metadata-only was asked for.
    requests: Vec<String>,
    /// Bumped to make every open watch send a bookmark.
    bookmark_seq: u64,
    /// Bumped to end every open watch stream.
    close_seq: u64,
}

/// A running fake; dropped with the runtime that serves it.
#[derive(Debug, Clone)]
pub struct FakeApiServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    changed: Arc<watch::Sender<u64>>,
}

impl FakeApiServer {
    pub async fn start() -> FakeApiServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve_on(listener)
    }

    /// Serve on a listener bound elsewhere (e.g. inside a test's network
    /// namespace). Must be called within a tokio runtime.
    #[allow(dead_code, reason = "used by the end-to-end tests in tests/")]
    pub fn start_on(listener: std::net::TcpListener) -> FakeApiServer {
        listener.set_nonblocking(true).unwrap();
        Self::serve_on(TcpListener::from_std(listener).unwrap())
    }

    fn serve_on(listener: TcpListener) -> FakeApiServer {
        let (tx, _) = watch::channel(0u64);
        let fake = FakeApiServer {
            addr: listener.local_addr().unwrap(),
            state: Arc::default(),
            changed: Arc::new(tx),
        };
        let server = fake.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let s = server.clone();
                tokio::spawn(async move { s.serve(sock).await });
            }
        });
        fake
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn notify(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    /// Create or replace an object (ADDED or MODIFIED); returns its version.
    pub fn apply(&self, plural: &str, mut obj: Value) -> u64 {
        let rv = {
            let mut s = self.state.lock().unwrap();
            Self::apply_locked(&mut s, plural, &mut obj)
        };
        self.notify();
        rv
    }

    fn apply_locked(s: &mut State, plural: &str, obj: &mut Value) -> u64 {
        let (api_version, kind) = kind_of(plural).unwrap();
        s.rv += 1;
        let rv = s.rv;
        obj["apiVersion"] = json!(api_version);
        obj["kind"] = json!(kind);
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let ns = obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
        let r = s.resources.entry(plural.to_string()).or_default();
        let ty = if r.objects.contains_key(&(ns.clone(), name.clone())) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        r.objects.insert((ns, name), obj.clone());
        r.events.push((rv, ty, obj.clone()));
        rv
    }

    /// Delete an object (a DELETED event with its last state).
    pub fn delete(&self, plural: &str, ns: &str, name: &str) {
        {
            let mut s = self.state.lock().unwrap();
            Self::delete_locked(&mut s, plural, ns, name);
        }
        self.notify();
    }

    fn delete_locked(s: &mut State, plural: &str, ns: &str, name: &str) {
        s.rv += 1;
        let rv = s.rv;
        let r = s.resources.get_mut(plural).unwrap();
        let mut obj = r
            .objects
            .remove(&(ns.to_string(), name.to_string()))
            .unwrap();
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        r.events.push((rv, "DELETED", obj));
    }

    /// Delete while every watch is disconnected, then compact history past
    /// the deletion: clients can only learn of it by relisting after 410.
    pub fn delete_during_outage(&self, plural: &str, ns: &str, name: &str) {
        {
            let mut s = self.state.lock().unwrap();
            s.close_seq += 1;
            Self::delete_locked(&mut s, plural, ns, name);
            s.compacted = s.rv;
        }
        self.notify();
    }

    /// Ask every open watch to send a BOOKMARK at the current version.
    pub fn bookmark(&self) -> u64 {
        let rv = {
            let mut s = self.state.lock().unwrap();
            s.bookmark_seq += 1;
            s.rv
        };
        self.notify();
        rv
    }

    /// End every open watch stream (as an API server restart or a load
    /// balancer timeout does).
    pub fn close_watches(&self) {
        self.state.lock().unwrap().close_seq += 1;
        self.notify();
    }

    /// Bump the version without touching `plural`s (other resources change).
    pub fn touch_other(&self) {
        let n = self.state.lock().unwrap().rv;
        self.apply(
            "namespaces",
            json!({"metadata": {"name": format!("touch-{n}")}}),
        );
    }

    pub fn forbid(&self, plural: &str, forbidden: bool) {
        let mut s = self.state.lock().unwrap();
        if forbidden {
            s.forbidden.insert(plural.to_string());
        } else {
            s.forbidden.remove(plural);
        }
    }

    /// The current (global) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.state.lock().unwrap().rv
    }

    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    async fn serve(&self, sock: TcpStream) {
        let mut reader = BufReader::new(sock);
        loop {
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if line == "\r\n" {
                    break;
                }
                head.push(line.trim_end().to_string());
            }
            let Some(request_line) = head.first() else {
                return;
            };
            let mut parts = request_line.split(' ');
            let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let header = |name: &str| {
                head.iter().skip(1).find_map(|h| {
                    let (k, v) = h.split_once(':')?;
                    k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                })
            };
            let length: usize = header("content-length")
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            if length > 0 {
                let mut body = vec![0u8; length];
                if reader.read_exact(&mut body).await.is_err() {
                    return;
                }
            }
            let meta_only =
                header("accept").is_some_and(|a| a.contains("as=PartialObjectMetadata"));
            let keep_going = self
                .respond(reader.get_mut(), method, target, meta_only)
                .await;
            if !keep_going {
                return;
            }
        }
    }

    /// Answer one request; false when the connection must close.
    async fn respond(
        &self,
        sock: &mut TcpStream,
        method: &str,
        target: &str,
        meta_only: bool,
    ) -> bool {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let q: HashMap<&str, String> = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k, percent_decode(v)))
            .collect();
        let plural = path.rsplit('/').next().unwrap_or("").to_string();
        // A resource of another API group with the same plural (Calico's
        // networkpolicies) is not served: a CRD that is not installed.
        let served = kind_of(&plural).is_some_and(|(v, _)| v == path_api_version(path));
        if method != "GET" || !served {
            return send_json(
                sock,
                404,
                &status(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                ),
            )
            .await;
        }
        let watching = q.get("watch").is_some_and(|w| w == "true" || w == "1");
        let forbidden = {
            let mut s = self.state.lock().unwrap();
            let what = if watching {
                format!(
                    "WATCH {plural} rv={}",
                    q.get("resourceVersion").cloned().unwrap_or_default()
                )
            } else {
                format!("LIST {plural}")
            };
            s.requests.push(if meta_only {
                format!("{what} meta")
            } else {
                what
            });
            s.forbidden.contains(&plural)
        };
        if forbidden {
            let api_version = kind_of(&plural).unwrap().0;
            let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
            let msg = format!(
                "{plural} is forbidden: User \"system:serviceaccount:flowscribe:flowscribe\" cannot {} resource \"{plural}\" in API group \"{group}\" at the cluster scope",
                if watching { "watch" } else { "list" }
            );
            let mut st = status(403, "Forbidden", &msg);
            st["details"] = json!({"kind": plural, "group": group});
            return send_json(sock, 403, &st).await;
        }
        if watching {
            // A watch that ended cleanly leaves the connection reusable.
            self.watch(sock, &plural, &q, meta_only).await
        } else {
            let body = self.list(&plural, &q, meta_only);
            send_json(sock, 200, &body).await
        }
    }

    fn list(&self, plural: &str, q: &HashMap<&str, String>, meta_only: bool) -> Value {
        let s = self.state.lock().unwrap();
        let (api_version, kind) = kind_of(plural).unwrap();
        let all: Vec<Value> = s
            .resources
            .get(plural)
            .map(|r| r.objects.values().cloned().collect())
            .unwrap_or_default();
        let start: usize = q.get("continue").and_then(|c| c.parse().ok()).unwrap_or(0);
        let limit: usize = q
            .get("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(usize::MAX);
        let end = start.saturating_add(limit).min(all.len());
        let items: Vec<Value> = all[start.min(end)..end]
            .iter()
            .map(|o| {
                // Lists do not repeat kind and apiVersion per item.
                let mut o = o.clone();
                if meta_only {
                    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": o["metadata"].take()})
                } else {
                    o.as_object_mut().unwrap().remove("kind");
                    o.as_object_mut().unwrap().remove("apiVersion");
                    o
                }
            })
            .collect();
        let mut metadata = json!({"resourceVersion": s.rv.to_string()});
        if end < all.len() {
            metadata["continue"] = json!(end.to_string());
        }
        if meta_only {
            json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList", "metadata": metadata, "items": items})
        } else {
            json!({"apiVersion": api_version, "kind": format!("{kind}List"), "metadata": metadata, "items": items})
        }
    }

    /// Stream events; true when the stream ended cleanly.
    async fn watch(
        &self,
        sock: &mut TcpStream,
        plural: &str,
        q: &HashMap<&str, String>,
        meta_only: bool,
    ) -> bool {
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
        if sock.write_all(head.as_bytes()).await.is_err() {
            return false;
        }
        let mut from: u64 = q
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let bookmarks = q.get("allowWatchBookmarks").is_some_and(|b| b == "true");
        let (api_version, kind) = kind_of(plural).unwrap();
        let mut changed = self.changed.subscribe();
        // Bookmarks may be sent at any time; a watch opened after one was
        // requested sends it at once, so a test cannot race the opening.
        let mut bookmark_seq = 0;
        let close_seq = self.state.lock().unwrap().close_seq;
        loop {
            let mut out: Vec<Value> = Vec::new();
            let mut end = false;
            {
                let mut s = self.state.lock().unwrap();
                if s.close_seq != close_seq {
                    end = true;
                } else if from < s.compacted {
                    out.push(json!({"type": "ERROR", "object": status(410, "Expired",
                        &format!("too old resource version: {from} ({})", s.compacted))}));
                    end = true;
                } else {
                    if let Some(r) = s.resources.get(plural) {
                        let since = from;
                        for (rv, ty, obj) in r.events.iter().filter(|(rv, _, _)| *rv > since) {
                            let object = if meta_only {
                                json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": obj["metadata"].clone()})
                            } else {
                                obj.clone()
                            };
                            out.push(json!({"type": ty, "object": object}));
                            from = *rv;
                        }
                    }
                    if bookmarks && s.bookmark_seq != bookmark_seq {
                        bookmark_seq = s.bookmark_seq;
                        from = from.max(s.rv);
                        let sent = format!("BOOKMARK {plural} rv={}", s.rv);
                        s.requests.push(sent);
                        out.push(json!({"type": "BOOKMARK", "object": {
                            "apiVersion": api_version, "kind": kind,
                            "metadata": {"resourceVersion": s.rv.to_string()}}}));
                    }
                }
            }
            for ev in out {
                let line = format!("{ev}\n");
                let chunk = format!("{:x}\r\n{line}\r\n", line.len());
                if sock.write_all(chunk.as_bytes()).await.is_err() {
                    return false;
                }
            }
            if end || changed.changed().await.is_err() {
                return sock.write_all(b"0\r\n\r\n").await.is_ok();
            }
        }
    }
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

async fn send_json(sock: &mut TcpStream, code: u16, body: &Value) -> bool {
    let text = body.to_string();
    let reason = match code {
        200 => "OK",
        403 => "Forbidden",
        404 => "Not Found",
        _ => "Error",
    };
    let resp = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
        text.len()
    );
    sock.write_all(resp.as_bytes()).await.is_ok()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
