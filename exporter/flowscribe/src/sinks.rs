//! ⑤ Deliver, owned by the daemon: one durable queue and one delivery
//! driver per `--sink URL`, on a small tokio runtime of their own. The run
//! loop encodes each batch once per sink format and pushes it; each driver
//! then delivers, retries and classifies on its own, so a slow or dead sink
//! only fills its own queue.
//!
//! Today: `stdout`, `file:PATH`, `syslog+tcp://`, `syslog+tls://`,
//! `syslog+udp://`, `elasticsearch://`, `splunk-hec://`, `loki://`,
//! `otlp+grpc://`, `otlp+http://`. OTLP sinks queue one encoded
//! `LogRecord` (protobuf) per record whatever `format=` says; the
//! transport frames a batch of them as one `ExportLogsServiceRequest`. Credentials come from files or environment variables
//! named in the query (`api_key_file=`, `password_env=`, ...), never from
//! the URL itself, so sink names can be logged.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flowscribe_normalize::{Context as SchemaContext, Schema};
use flowscribe_sinks::core::classify::RejectReason;
use flowscribe_sinks::core::driver::{DriverConfig, DriverHandle, SinkDriver};
use flowscribe_sinks::core::http::{HttpAuth, HttpTlsConfig, SecretSource};
use flowscribe_sinks::core::queue::{Durability, DurableQueue, QueueConfig, Record};
use flowscribe_sinks::elasticsearch::ElasticsearchConfig;
use flowscribe_sinks::file::{FileConfig, StdoutTransport};
use flowscribe_sinks::loki::{LokiConfig, LokiEncoding, LokiField};
use flowscribe_sinks::otlp::{OtlpConfig, OtlpEncoding, OtlpProtocol, OtlpTlsConfig};
use flowscribe_sinks::sink::SinkTransport;
use flowscribe_sinks::splunk::{HecAckConfig, SplunkHecConfig};
use flowscribe_sinks::syslog::{SyslogConfig, SyslogProtocol, SyslogTlsConfig};
use tracing::info;

use crate::config::Format;

/// A parsed `--sink` URL.
#[derive(Debug, Clone)]
pub struct SinkSpec {
    /// The URL as given, with its query (which names files and environment
    /// variables, never secrets).
    pub name: String,
    pub format: Format,
    transport: TransportSpec,
    queue_dir: Option<PathBuf>,
    durability: Durability,
}

#[derive(Debug, Clone)]
enum TransportSpec {
    Stdout,
    File(FileConfig),
    Syslog(Box<SyslogConfig>),
    Elasticsearch(Box<ElasticsearchConfig>),
    SplunkHec(Box<SplunkHecConfig>),
    Loki(Box<LokiConfig>),
    /// The envelope (resource, scope) is filled in at start from the
    /// schema context.
    Otlp(Box<OtlpConfig>),
}

impl SinkSpec {
    /// True when the sink takes encoded OTLP `LogRecord`s (protobuf)
    /// rather than lines in [`SinkSpec::format`].
    pub fn sends_otlp_log_records(&self) -> bool {
        matches!(self.transport, TransportSpec::Otlp(_))
    }
}

/// The query parameters of one URL, consumed as they are recognised, so
/// whatever is left over is reported as unknown.
struct Query<'a> {
    url: &'a str,
    pairs: Vec<(&'a str, &'a str)>,
}

impl<'a> Query<'a> {
    fn parse(url: &'a str, query: &'a str) -> Result<Self, String> {
        let mut pairs = Vec::new();
        for kv in query.split('&').filter(|s| !s.is_empty()) {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("{url}: query part {kv:?} is not key=value"))?;
            if pairs.iter().any(|(seen, _)| *seen == k) {
                return Err(format!("{url}: query parameter {k:?} given twice"));
            }
            pairs.push((k, v));
        }
        Ok(Query { url, pairs })
    }

    fn take(&mut self, key: &str) -> Option<&'a str> {
        let i = self.pairs.iter().position(|(k, _)| *k == key)?;
        Some(self.pairs.remove(i).1)
    }

    fn take_bool(&mut self, key: &str) -> Result<Option<bool>, String> {
        match self.take(key) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(v) => Err(format!("{}: {key}={v:?} is not true or false", self.url)),
        }
    }

    /// A secret named by `<name>_file=PATH` or `<name>_env=VAR` (never the
    /// secret itself, so the URL can be logged).
    fn take_secret(&mut self, name: &str) -> Result<Option<SecretSource>, String> {
        let file = self.take(&format!("{name}_file"));
        let env = self.take(&format!("{name}_env"));
        match (file, env) {
            (None, None) => Ok(None),
            (Some(f), None) => Ok(Some(SecretSource::File(PathBuf::from(f)))),
            (None, Some(e)) => Ok(Some(SecretSource::Env(e.to_string()))),
            (Some(_), Some(_)) => Err(format!(
                "{}: give {name}_file or {name}_env, not both",
                self.url
            )),
        }
    }

    /// TLS files: `tls=true` selects https; `ca=`, `cert=`, `key=`,
    /// `server_name=` refine it.
    fn take_http_tls(&mut self) -> Result<(bool, HttpTlsConfig), String> {
        let tls = HttpTlsConfig {
            ca_file: self.take("ca").map(PathBuf::from),
            client_cert_file: self.take("cert").map(PathBuf::from),
            client_key_file: self.take("key").map(PathBuf::from),
            server_name: self.take("server_name").map(str::to_string),
        };
        let on = self.take_bool("tls")?.unwrap_or(false);
        if !on && tls != HttpTlsConfig::default() {
            return Err(format!(
                "{}: ca=, cert=, key= and server_name= need tls=true",
                self.url
            ));
        }
        Ok((on, tls))
    }

    fn finish(self) -> Result<(), String> {
        match self.pairs.first() {
            None => Ok(()),
            Some((k, _)) => Err(format!("{}: unknown query parameter {k:?}", self.url)),
        }
    }
}

impl SinkSpec {
    /// What a crash does to the records queued for this sink.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// The URL scheme (`syslog+tcp`, ...), or `stdout` / `file`.
    pub fn scheme(&self) -> &str {
        match self.name.split_once("://") {
            Some((scheme, _)) => scheme,
            None if self.name.starts_with("file:") => "file",
            None => &self.name,
        }
    }
}

/// Parse `--sink URL`; `node` is the syslog HOSTNAME.
pub fn parse_sink(url: &str, node: &str) -> Result<SinkSpec, String> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut q = Query::parse(url, query)?;
    let format = q
        .take("format")
        .map(|v| v.parse::<Format>().map_err(|e| format!("{url}: {e}")))
        .transpose()?;
    let durability = match q.take("queue") {
        None | Some("memory") => Durability::Memory,
        Some("disk") => Durability::Disk,
        Some(v) => return Err(format!("{url}: queue={v:?} is not memory or disk")),
    };
    let queue_dir = q.take("queue_dir").map(PathBuf::from);
    if durability == Durability::Disk && queue_dir.is_none() {
        return Err(format!("{url}: queue=disk needs queue_dir=DIR"));
    }
    let (transport, default_format) = if base == "stdout" {
        (TransportSpec::Stdout, Format::Schema(Schema::Ecs))
    } else if let Some(path) = base.strip_prefix("file:") {
        if path.is_empty() {
            return Err(format!("{url}: file: needs a path"));
        }
        (
            TransportSpec::File(FileConfig::new(path)),
            Format::Schema(Schema::Ecs),
        )
    } else if let Some((scheme, addr)) = base.split_once("://") {
        match scheme {
            "syslog+tcp" | "syslog+tls" | "syslog+udp" => (
                syslog_spec(url, scheme, addr, node, &mut q)?,
                Format::Schema(Schema::Cef),
            ),
            "elasticsearch" => (
                elasticsearch_spec(url, addr, &mut q)?,
                Format::Schema(Schema::Ecs),
            ),
            "splunk-hec" => (
                splunk_hec_spec(url, addr, node, &mut q)?,
                Format::Schema(Schema::Ecs),
            ),
            "loki" => (loki_spec(url, addr, &mut q)?, Format::Schema(Schema::Ecs)),
            "otlp+grpc" | "otlp+http" => (
                otlp_spec(url, scheme, addr, &mut q)?,
                // Nominal: OTLP sinks queue LogRecords, not lines.
                Format::Schema(Schema::OtlpJson),
            ),
            _ => return Err(format!("{url}: unknown sink scheme {scheme:?}")),
        }
    } else {
        return Err(format!(
            "{url:?} is not a sink; use stdout, file:PATH, syslog+tcp|tls|udp://HOST:PORT \
             elasticsearch://HOST:PORT, splunk-hec://HOST:PORT, loki://HOST:PORT or \
             otlp+grpc|http://HOST:PORT"
        ));
    };
    q.finish()?;
    if matches!(transport, TransportSpec::Otlp(_)) && format.is_some() {
        return Err(format!(
            "{url}: OTLP sinks send OTLP LogRecords; format= does not apply"
        ));
    }
    let format = format.unwrap_or(default_format);
    if matches!(transport, TransportSpec::Elasticsearch(_)) && format != Format::Schema(Schema::Ecs)
    {
        // The data stream refuses documents without `@timestamp`, which
        // only the ECS format carries: any other format would have every
        // record rejected.
        return Err(format!(
            "{url}: the Elasticsearch data stream needs ECS documents (@timestamp); use format=ecs"
        ));
    }
    Ok(SinkSpec {
        name: base.to_string(),
        format,
        transport,
        queue_dir,
        durability,
    })
}

fn syslog_spec(
    url: &str,
    scheme: &str,
    addr: &str,
    node: &str,
    q: &mut Query<'_>,
) -> Result<TransportSpec, String> {
    let protocol = match scheme {
        "syslog+tcp" => SyslogProtocol::Tcp,
        "syslog+tls" => SyslogProtocol::Tls,
        _ => SyslogProtocol::Udp,
    };
    let tls = SyslogTlsConfig {
        ca_file: q.take("ca").map(PathBuf::from),
        client_cert_file: q.take("cert").map(PathBuf::from),
        client_key_file: q.take("key").map(PathBuf::from),
        server_name: q.take("server_name").map(str::to_string),
    };
    let mut c = SyslogConfig::new(addr, protocol, node);
    if let Some(v) = q.take("max_datagram") {
        if protocol != SyslogProtocol::Udp {
            return Err(format!("{url}: max_datagram applies to syslog+udp only"));
        }
        c.max_datagram_bytes = v
            .parse::<usize>()
            .map_err(|_| format!("{url}: max_datagram={v:?} is not a number of bytes"))?;
    }
    if protocol == SyslogProtocol::Tls {
        c.tls = Some(tls);
    } else if tls != SyslogTlsConfig::default() {
        return Err(format!("{url}: TLS parameters need syslog+tls://"));
    }
    c.validate()
        .map_err(|e| format!("{url}: {}", e.0.join("; ")))?;
    Ok(TransportSpec::Syslog(Box::new(c)))
}

/// `elasticsearch://HOST:PORT[/PREFIX]?tls=true&ca=…&api_key_file=…|user=…&password_file=…
/// &namespace=…&pipeline=…&gzip=false`.
fn elasticsearch_spec(url: &str, addr: &str, q: &mut Query<'_>) -> Result<TransportSpec, String> {
    let (https, tls) = q.take_http_tls()?;
    let scheme = if https { "https" } else { "http" };
    let mut c = ElasticsearchConfig::new(format!("{scheme}://{addr}"));
    c.http.tls = tls;
    let api_key = q.take_secret("api_key")?;
    let user = q.take("user");
    let password = q.take_secret("password")?;
    c.http.auth = match (api_key, user, password) {
        (None, None, None) => HttpAuth::None,
        (Some(k), None, None) => HttpAuth::ApiKey(k),
        (None, Some(u), Some(p)) => HttpAuth::Basic {
            username: u.to_string(),
            password: p,
        },
        (None, Some(_), None) | (None, None, Some(_)) => {
            return Err(format!(
                "{url}: basic auth needs user= and password_file= (or password_env=)"
            ));
        }
        (Some(_), _, _) => {
            return Err(format!("{url}: give an API key or user/password, not both"));
        }
    };
    if let Some(ns) = q.take("namespace") {
        c.namespace = ns.to_string();
    }
    c.pipeline = q.take("pipeline").map(str::to_string);
    if let Some(g) = q.take_bool("gzip")? {
        c.gzip = g;
    }
    c.validate()
        .map_err(|e| format!("{url}: {}", e.0.join("; ")))?;
    Ok(TransportSpec::Elasticsearch(Box::new(c)))
}

/// `splunk-hec://HOST:PORT?token_file=…|token_env=…[&tls=true&ca=…][&index=…&source=…
/// &sourcetype=…&ack=true&gzip=false]`.
fn splunk_hec_spec(
    url: &str,
    addr: &str,
    node: &str,
    q: &mut Query<'_>,
) -> Result<TransportSpec, String> {
    let (https, tls) = q.take_http_tls()?;
    let scheme = if https { "https" } else { "http" };
    let token = q
        .take_secret("token")?
        .ok_or_else(|| format!("{url}: splunk-hec needs token_file= or token_env="))?;
    let mut c = SplunkHecConfig::new(format!("{scheme}://{addr}"), HttpAuth::Splunk(token), node);
    c.http.tls = tls;
    c.index = q.take("index").map(str::to_string);
    if let Some(v) = q.take("source") {
        c.source = v.to_string();
    }
    if let Some(v) = q.take("sourcetype") {
        c.sourcetype = v.to_string();
    }
    if let Some(g) = q.take_bool("gzip")? {
        c.gzip = g;
    }
    c.channel = q.take("channel").map(str::to_string);
    if q.take_bool("ack")?.unwrap_or(false) {
        c.ack = Some(HecAckConfig::default());
    }
    c.validate()
        .map_err(|e| format!("{url}: {}", e.0.join("; ")))?;
    Ok(TransportSpec::SplunkHec(Box::new(c)))
}

/// `loki://HOST:PORT[/PREFIX]?[tenant=…&tls=true&ca=…&token_file=…|user=…&password_file=…
/// &labels=NAME:PATH,…&static_labels=NAME:VALUE,…&metadata=NAME:PATH,…
/// &encoding=protobuf|json&gzip=true|false]` (`gzip=` with JSON only).
fn loki_spec(url: &str, addr: &str, q: &mut Query<'_>) -> Result<TransportSpec, String> {
    let (https, tls) = q.take_http_tls()?;
    let scheme = if https { "https" } else { "http" };
    let mut c = LokiConfig::new(format!("{scheme}://{addr}"));
    c.http.tls = tls;
    c.tenant = q.take("tenant").map(str::to_string);
    let token = q.take_secret("token")?;
    let user = q.take("user");
    let password = q.take_secret("password")?;
    c.http.auth = match (token, user, password) {
        (None, None, None) => HttpAuth::None,
        (Some(t), None, None) => HttpAuth::Bearer(t),
        (None, Some(u), Some(p)) => HttpAuth::Basic {
            username: u.to_string(),
            password: p,
        },
        _ => {
            return Err(format!(
                "{url}: give token_file= (bearer) or user= with password_file=, not a mix"
            ));
        }
    };
    let pairs = |v: &str| -> Result<Vec<(String, String)>, String> {
        v.split(',')
            .filter(|s| !s.is_empty())
            .map(|kv| {
                kv.split_once(':')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .ok_or_else(|| format!("{url}: {kv:?} is not NAME:VALUE"))
            })
            .collect()
    };
    if let Some(v) = q.take("labels") {
        c.labels = pairs(v)?
            .into_iter()
            .map(|(n, p)| LokiField::new(n, p))
            .collect();
    }
    if let Some(v) = q.take("static_labels") {
        c.static_labels = pairs(v)?;
    }
    if let Some(v) = q.take("metadata") {
        c.structured_metadata = pairs(v)?
            .into_iter()
            .map(|(n, p)| LokiField::new(n, p))
            .collect();
    }
    c.encoding = match q.take("encoding") {
        None | Some("protobuf") => LokiEncoding::Protobuf,
        Some("json") => LokiEncoding::Json,
        Some(v) => return Err(format!("{url}: encoding={v:?} is not protobuf or json")),
    };
    if let Some(g) = q.take_bool("gzip")? {
        if c.encoding == LokiEncoding::Protobuf {
            return Err(format!(
                "{url}: gzip= applies to encoding=json (protobuf pushes are always snappy-compressed)"
            ));
        }
        c.gzip = g;
    }
    c.validate()
        .map_err(|e| format!("{url}: {}", e.0.join("; ")))?;
    Ok(TransportSpec::Loki(Box::new(c)))
}

/// `otlp+grpc://HOST:PORT` / `otlp+http://HOST:PORT` with
/// `?encoding=protobuf|json` (HTTP only), `headers_file=PATH`,
/// `gzip=true|false`, `zstd=true|false` (HTTP only), `tls=true` (`ca=`,
/// `cert=`, `key=`, `server_name=`).
fn otlp_spec(
    url: &str,
    scheme: &str,
    addr: &str,
    q: &mut Query<'_>,
) -> Result<TransportSpec, String> {
    let protocol = if scheme == "otlp+grpc" {
        OtlpProtocol::Grpc
    } else {
        OtlpProtocol::Http
    };
    let mut c = OtlpConfig::new(addr, protocol, Default::default());
    c.encoding = match q.take("encoding") {
        None | Some("protobuf") => OtlpEncoding::Protobuf,
        Some("json") => OtlpEncoding::Json,
        Some(v) => return Err(format!("{url}: encoding={v:?} is not protobuf or json")),
    };
    c.headers_file = q.take("headers_file").map(PathBuf::from);
    if let Some(g) = q.take_bool("gzip")? {
        c.gzip = g;
    }
    if let Some(z) = q.take_bool("zstd")? {
        c.zstd = z;
    }
    let (tls_on, tls) = q.take_http_tls()?;
    if tls_on {
        c.tls = Some(OtlpTlsConfig {
            ca_file: tls.ca_file,
            client_cert_file: tls.client_cert_file,
            client_key_file: tls.client_key_file,
            server_name: tls.server_name,
        });
    }
    c.validate()
        .map_err(|e| format!("{url}: {}", e.0.join("; ")))?;
    Ok(TransportSpec::Otlp(Box::new(c)))
}

/// One running sink.
#[derive(Debug)]
pub struct RunningSink {
    pub spec: SinkSpec,
    handle: DriverHandle,
}

impl RunningSink {
    /// Why the sink is retrying in a degraded state, if it is.
    pub fn degraded(&self) -> Option<&'static str> {
        self.handle.snapshot().degraded
    }
}

/// Every running sink and the runtime their drivers run on.
#[derive(Debug)]
pub struct Sinks {
    runtime: tokio::runtime::Runtime,
    pub sinks: Vec<RunningSink>,
    /// Records each sink's queue shed since the last `take_losses`, by reason.
    shed: std::sync::Mutex<Vec<std::collections::BTreeMap<&'static str, u64>>>,
}

/// Records a sink will never deliver, since the last report: shed by its
/// queue, or rejected for good by the receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkLoss {
    pub sink: String,
    /// `queue` (shed) or `sink` (rejected).
    pub stage: &'static str,
    pub reason: &'static str,
    pub count: u64,
}

impl Sinks {
    /// Open each sink's queue (recovering what a previous run left) and
    /// start its driver. `context` gives OTLP sinks their resource and
    /// scope.
    pub fn start(specs: Vec<SinkSpec>, context: &SchemaContext) -> anyhow::Result<Sinks> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sinks")
            .enable_all()
            .build()?;
        let mut sinks = Vec::new();
        for spec in specs {
            let qc = QueueConfig::new(spec.name.clone(), spec.queue_dir.clone(), spec.durability);
            qc.validate()?;
            let queue = DurableQueue::open(qc)?;
            let recovered = queue.snapshot();
            let transport = {
                let _enter = runtime.enter();
                match &spec.transport {
                    TransportSpec::Stdout => SinkTransport::Stdout(StdoutTransport),
                    TransportSpec::File(c) => SinkTransport::File(c.build()?),
                    TransportSpec::Syslog(c) => SinkTransport::Syslog(c.build()?),
                    TransportSpec::Elasticsearch(c) => SinkTransport::Elasticsearch(c.build()?),
                    TransportSpec::SplunkHec(c) => SinkTransport::SplunkHec(c.build()?),
                    TransportSpec::Loki(c) => SinkTransport::Loki(c.build()?),
                    TransportSpec::Otlp(c) => {
                        let mut c = (**c).clone();
                        c.envelope = flowscribe_normalize::otlp::resource_logs(context, vec![]);
                        SinkTransport::Otlp(c.build()?)
                    }
                }
            };
            let (driver, handle) =
                SinkDriver::new(DriverConfig::new(spec.name.clone()), queue, transport);
            runtime.spawn(driver.run());
            info!(sink = %spec.name, format = ?spec.format, queued = recovered.queued_records, "sink started");
            sinks.push(RunningSink { spec, handle });
        }
        let shed = std::sync::Mutex::new(vec![Default::default(); sinks.len()]);
        Ok(Sinks {
            runtime,
            sinks,
            shed,
        })
    }

    /// Queue one batch on one sink: `records` are (event id, encoded
    /// record: a line, or an OTLP LogRecord).
    /// With a full queue this waits (`block`: backpressure into capture,
    /// where the kernel keeps aggregating).
    pub fn push(&self, sink: usize, records: Vec<(String, Bytes)>) -> anyhow::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let records: Vec<Record> = records
            .into_iter()
            .map(|(id, line)| Record::new(id, line))
            .collect();
        let handle = &self.sinks[sink].handle;
        let receipt = self.runtime.block_on(handle.queue().push(records))?;
        if !receipt.shed.is_empty() {
            let mut counts = self.shed.lock().unwrap_or_else(|e| e.into_inner());
            for shed in &receipt.shed {
                tracing::warn!(sink = %self.sinks[sink].spec.name, reason = shed.reason.as_str(), event_id = %shed.event_id, "record shed by the queue");
                *counts[sink].entry(shed.reason.as_str()).or_default() += 1;
            }
        }
        Ok(())
    }

    /// What every sink lost since the last call (shed and rejected), per
    /// reason; equal to the increase of the matching metrics.
    pub fn take_losses(&self) -> Vec<SinkLoss> {
        let mut out = Vec::new();
        let shed = std::mem::replace(
            &mut *self.shed.lock().unwrap_or_else(|e| e.into_inner()),
            vec![Default::default(); self.sinks.len()],
        );
        for (s, shed) in self.sinks.iter().zip(shed) {
            for (reason, count) in shed {
                out.push(SinkLoss {
                    sink: s.spec.name.clone(),
                    stage: "queue",
                    reason,
                    count,
                });
            }
            let drain = s.handle.take_rejected();
            let mut per_reason = std::collections::BTreeMap::new();
            for r in &drain.records {
                *per_reason.entry(r.reason.as_str()).or_insert(0u64) += 1;
            }
            for (reason, n) in RejectReason::ALL.iter().zip(drain.not_itemised) {
                if n > 0 {
                    *per_reason.entry(reason.as_str()).or_insert(0) += n;
                }
            }
            for (reason, count) in per_reason {
                out.push(SinkLoss {
                    sink: s.spec.name.clone(),
                    stage: "sink",
                    reason,
                    count,
                });
            }
        }
        out
    }

    /// Wait until everything pushed so far is delivered or recorded (or
    /// `timeout` passes), without stopping the drivers.
    pub fn settle(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for s in &self.sinks {
            if let Err(e) = self.runtime.block_on(s.handle.flush(deadline)) {
                tracing::warn!(sink = %s.spec.name, error = %e, "sink did not settle before shutdown");
            }
        }
    }

    /// The drivers' handles (metrics, rejected records), in sink order.
    pub fn handles(&self) -> Vec<DriverHandle> {
        self.sinks.iter().map(|s| s.handle.clone()).collect()
    }

    /// Run a task on the sinks' runtime (the metrics endpoint).
    pub fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.runtime.spawn(task);
    }

    /// Deliver what is queued (until `timeout`), then stop every driver.
    pub fn shutdown(self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for s in &self.sinks {
            match self.runtime.block_on(s.handle.shutdown(deadline)) {
                Ok(report) => {
                    let snap = s.handle.snapshot();
                    info!(
                        sink = %s.spec.name,
                        acknowledged = snap.acknowledged_records_total(),
                        rejected = snap.rejected_total(),
                        drained = report.drained,
                        "sink stopped"
                    );
                }
                Err(e) => tracing::warn!(sink = %s.spec.name, error = %e, "sink shutdown failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn es(url: &str) -> ElasticsearchConfig {
        match parse_sink(url, "node-1").unwrap().transport {
            TransportSpec::Elasticsearch(c) => *c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn elasticsearch_urls() {
        let c = es("elasticsearch://es.local:9200");
        assert_eq!(c.http.endpoint, "http://es.local:9200");
        assert_eq!(c.http.auth, HttpAuth::None);
        assert_eq!(c.data_stream(), "logs-flowscribe.flow-default");
        let c = es(
            "elasticsearch://es:9243?tls=true&ca=/etc/ca.pem&api_key_file=/run/es.key&namespace=prod&gzip=false",
        );
        assert_eq!(c.http.endpoint, "https://es:9243");
        assert_eq!(c.http.tls.ca_file, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(
            c.http.auth,
            HttpAuth::ApiKey(SecretSource::File("/run/es.key".into()))
        );
        assert_eq!(c.data_stream(), "logs-flowscribe.flow-prod");
        assert!(!c.gzip);
        let c = es("elasticsearch://es:9200?user=elastic&password_env=ES_PASSWORD");
        assert_eq!(
            c.http.auth,
            HttpAuth::Basic {
                username: "elastic".into(),
                password: SecretSource::Env("ES_PASSWORD".into())
            }
        );
        let spec = parse_sink("elasticsearch://es:9200?format=ecs", "n").unwrap();
        assert_eq!(spec.format, Format::Schema(Schema::Ecs));
        assert_eq!(spec.name, "elasticsearch://es:9200");
    }

    #[test]
    fn splunk_hec_urls() {
        let spec = parse_sink(
            "splunk-hec://splunk:8088?tls=true&token_env=HEC_TOKEN&index=netflow&ack=true",
            "node-1",
        )
        .unwrap();
        let TransportSpec::SplunkHec(c) = spec.transport else {
            panic!("{:?}", spec.transport);
        };
        assert_eq!(c.http.endpoint, "https://splunk:8088");
        assert_eq!(
            c.http.auth,
            HttpAuth::Splunk(SecretSource::Env("HEC_TOKEN".into()))
        );
        assert_eq!(c.host, "node-1");
        assert_eq!(c.index.as_deref(), Some("netflow"));
        assert_eq!(c.ack, Some(HecAckConfig::default()));
        assert_eq!(spec.format, Format::Schema(Schema::Ecs));
    }

    #[test]
    fn loki_urls() {
        let spec = parse_sink(
            "loki://loki:3100?tenant=team-a&token_env=LOKI_TOKEN&labels=node:host.name,ns:kubernetes.namespace&static_labels=cluster:prod",
            "n",
        )
        .unwrap();
        let TransportSpec::Loki(c) = spec.transport else {
            panic!("{:?}", spec.transport);
        };
        assert_eq!(c.http.endpoint, "http://loki:3100");
        assert_eq!(c.tenant.as_deref(), Some("team-a"));
        assert_eq!(
            c.http.auth,
            HttpAuth::Bearer(SecretSource::Env("LOKI_TOKEN".into()))
        );
        assert_eq!(
            c.labels,
            [
                LokiField::new("node", "host.name"),
                LokiField::new("ns", "kubernetes.namespace")
            ]
        );
        assert_eq!(
            c.static_labels,
            [("cluster".to_string(), "prod".to_string())]
        );
        let TransportSpec::Loki(d) = parse_sink("loki://l:3100", "n").unwrap().transport else {
            panic!();
        };
        assert_eq!(d.labels.len(), 3, "default node, namespace, verdict");
        assert_eq!(d.encoding, LokiEncoding::Protobuf);
        let TransportSpec::Loki(j) = parse_sink("loki://l:3100?encoding=json&gzip=false", "n")
            .unwrap()
            .transport
        else {
            panic!();
        };
        assert_eq!((j.encoding, j.gzip), (LokiEncoding::Json, false));
    }

    #[test]
    fn bad_sink_urls_say_what_is_wrong() {
        for (url, want) in [
            ("elasticsearch://es:9200?ca=/x", "need tls=true"),
            ("elasticsearch://es:9200?user=u", "basic auth needs"),
            (
                "elasticsearch://es:9200?api_key_file=a&api_key_env=B",
                "not both",
            ),
            (
                "elasticsearch://es:9200?api_key_file=a&user=u&password_env=P",
                "not both",
            ),
            ("elasticsearch://es:9200?namespace=Prod", "namespace"),
            ("elasticsearch://es:9200?format=cef", "needs ECS documents"),
            ("elasticsearch://es:9200?format=ocsf", "needs ECS documents"),
            (
                "elasticsearch://es:9200?bogus=1",
                "unknown query parameter \"bogus\"",
            ),
            ("elasticsearch://es:9200?gzip=yes", "not true or false"),
            (
                "elasticsearch://es:9200?gzip=true&gzip=false",
                "given twice",
            ),
            ("syslog+tcp://h:514?ca=/x", "need syslog+tls"),
            ("splunk-hec://h:8088", "needs token_file= or token_env="),
            ("splunk-hec://h:8088?token_env=T&channel=x", "GUID"),
            ("loki://h:3100?labels=k8s.ns:x", "not a Loki label name"),
            ("loki://h:3100?labels=nocolon", "is not NAME:VALUE"),
            ("loki://h:3100?gzip=true", "gzip= applies to encoding=json"),
            (
                "loki://h:3100?encoding=avro",
                "encoding=\"avro\" is not protobuf or json",
            ),
            ("loki://h:3100?token_env=T&user=u", "not a mix"),
        ] {
            let err = parse_sink(url, "n").unwrap_err();
            assert!(err.contains(want), "{url}: {err}");
        }
    }
}

#[cfg(test)]
mod otlp_tests {
    use std::io::Read as _;
    use std::net::TcpListener;

    use super::*;

    fn otlp(spec: &SinkSpec) -> &OtlpConfig {
        match &spec.transport {
            TransportSpec::Otlp(c) => c,
            other => panic!("not an OTLP sink: {other:?}"),
        }
    }

    #[test]
    fn otlp_sink_urls_parse() {
        let s = parse_sink("otlp+grpc://127.0.0.1:4317", "node-a").unwrap();
        assert!(s.sends_otlp_log_records());
        assert_eq!(s.name, "otlp+grpc://127.0.0.1:4317");
        let c = otlp(&s);
        assert_eq!(c.endpoint, "127.0.0.1:4317");
        assert_eq!(c.protocol, OtlpProtocol::Grpc);
        assert_eq!(c.encoding, OtlpEncoding::Protobuf);
        assert!(c.gzip);
        assert_eq!(c.tls, None);
        assert_eq!(c.headers_file, None);

        let s = parse_sink(
            "otlp+http://collector:4318?encoding=json&gzip=false&headers_file=/etc/h&tls=true&ca=/ca.pem&cert=/c.pem&key=/k.pem&queue=disk&queue_dir=/q",
            "node-a",
        )
        .unwrap();
        assert_eq!(s.name, "otlp+http://collector:4318");
        assert_eq!(s.durability, Durability::Disk);
        let c = otlp(&s);
        assert_eq!(c.protocol, OtlpProtocol::Http);
        assert_eq!(c.encoding, OtlpEncoding::Json);
        assert!(!c.gzip);
        assert_eq!(c.headers_file, Some(PathBuf::from("/etc/h")));
        assert_eq!(
            c.tls,
            Some(OtlpTlsConfig {
                ca_file: Some("/ca.pem".into()),
                client_cert_file: Some("/c.pem".into()),
                client_key_file: Some("/k.pem".into()),
                server_name: None,
            })
        );
        assert!(!c.zstd);
        // tls=true alone: system roots.
        let s = parse_sink("otlp+grpc://collector:4317?tls=true", "n").unwrap();
        assert_eq!(otlp(&s).tls, Some(OtlpTlsConfig::default()));
        // zstd bodies, asked for by name.
        let s = parse_sink("otlp+http://collector:4318?zstd=true", "n").unwrap();
        assert!(otlp(&s).zstd);
    }

    #[test]
    fn bad_otlp_sink_urls_say_why() {
        let cases = [
            ("otlp+grpc://collector", "is not HOST:PORT"),
            (
                "otlp+grpc://c:4317?encoding=json",
                "encoding: json is only available over HTTP",
            ),
            (
                "otlp+http://c:4318?encoding=xml",
                "encoding=\"xml\" is not protobuf or json",
            ),
            (
                "otlp+http://c:4318?gzip=yes",
                "gzip=\"yes\" is not true or false",
            ),
            ("otlp+http://c:4318?format=ecs", "format= does not apply"),
            (
                "otlp+http://c:4318?tls=true&cert=/c.pem",
                "client_cert_file and client_key_file go together",
            ),
            ("otlp+http://c:4318?ca=/ca.pem", "need tls=true"),
            (
                "otlp+grpc://c:4317?zstd=true",
                "zstd: only available over HTTP",
            ),
            (
                "otlp+http://c:4318?compression=zstd",
                "unknown query parameter \"compression\"",
            ),
            (
                "syslog+tcp://c:514?headers_file=/h",
                "unknown query parameter \"headers_file\"",
            ),
        ];
        for (url, want) in cases {
            let err = parse_sink(url, "n").unwrap_err();
            assert!(err.contains(want), "{url}: {err}");
        }
    }

    /// `--sink otlp+grpc://…` and `otlp+http://…` start and send: a plain
    /// listener sees the HTTP/2 preface of a gRPC call, and an OTLP/HTTP
    /// POST to /v1/logs with a protobuf body.
    #[test]
    fn otlp_sinks_start_and_send_to_their_endpoint() {
        let context = SchemaContext {
            node: "node-a".into(),
            cluster: None,
            service_version: "0.1.0".into(),
            community_id_seed: 0,
        };
        for (scheme, expect) in [
            ("otlp+grpc", &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..]),
            ("otlp+http", &b"POST /v1/logs HTTP/1.1\r\n"[..]),
        ] {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let url = format!("{scheme}://{}", listener.local_addr().unwrap());
            let spec = parse_sink(&url, "node-a").unwrap();
            let sinks = Sinks::start(vec![spec], &context).unwrap();
            sinks
                .push(0, vec![("ev-1".into(), Bytes::from_static(b"\x08\x01"))])
                .unwrap();
            let (mut conn, _) = listener.accept().unwrap();
            let mut head = vec![0u8; expect.len()];
            conn.read_exact(&mut head).unwrap();
            assert_eq!(head, expect, "{scheme}");
            drop(conn);
            drop(listener);
            // Nothing can be delivered now; shutdown gives up at its deadline.
            sinks.shutdown(Duration::from_millis(100));
        }
    }
}
