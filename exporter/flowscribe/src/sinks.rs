//! ⑤ Deliver, owned by the daemon: one durable queue and one delivery
//! driver per `--sink URL`, on a small tokio runtime of their own. The run
//! loop encodes each batch once per sink format and pushes it; each driver
//! then delivers, retries and classifies on its own, so a slow or dead sink
//! only fills its own queue.
//!
//! Today: `stdout`, `file:PATH`, `syslog+tcp://`, `syslog+tls://`,
//! `syslog+udp://`, `otlp+grpc://`, `otlp+http://`. The other sinks of
//! issue 6 are refused by name. OTLP sinks queue one encoded `LogRecord`
//! (protobuf) per record whatever `--format` says; the transport frames a
//! batch of them as one `ExportLogsServiceRequest`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use flowscribe_normalize::{Context as SchemaContext, Schema};
use flowscribe_sinks::core::driver::{DriverConfig, DriverHandle, SinkDriver};
use flowscribe_sinks::core::queue::{Durability, DurableQueue, QueueConfig, Record};
use flowscribe_sinks::file::{FileConfig, StdoutTransport};
use flowscribe_sinks::otlp::{OtlpConfig, OtlpEncoding, OtlpProtocol, OtlpTlsConfig};
use flowscribe_sinks::sink::SinkTransport;
use flowscribe_sinks::syslog::{SyslogConfig, SyslogProtocol, SyslogTlsConfig};
use tracing::info;

use crate::config::Format;

/// A parsed `--sink` URL.
#[derive(Debug, Clone)]
pub struct SinkSpec {
    /// The URL as given, with its query (which names files, never secrets).
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

/// Parse `--sink URL`; `node` is the syslog HOSTNAME.
pub fn parse_sink(url: &str, node: &str) -> Result<SinkSpec, String> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut format = None;
    let mut queue_dir = None;
    let mut durability = Durability::Memory;
    let mut tls = SyslogTlsConfig::default();
    let mut otlp = OtlpQuery::default();
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("{url}: query part {kv:?} is not key=value"))?;
        match k {
            "format" => format = Some(v.parse::<Format>().map_err(|e| format!("{url}: {e}"))?),
            "queue" => {
                durability = match v {
                    "memory" => Durability::Memory,
                    "disk" => Durability::Disk,
                    _ => return Err(format!("{url}: queue={v:?} is not memory or disk")),
                }
            }
            "queue_dir" => queue_dir = Some(PathBuf::from(v)),
            "ca" => tls.ca_file = Some(PathBuf::from(v)),
            "cert" => tls.client_cert_file = Some(PathBuf::from(v)),
            "key" => tls.client_key_file = Some(PathBuf::from(v)),
            "server_name" => tls.server_name = Some(v.to_string()),
            "encoding" => {
                otlp.encoding = Some(match v {
                    "protobuf" => OtlpEncoding::Protobuf,
                    "json" => OtlpEncoding::Json,
                    _ => return Err(format!("{url}: encoding={v:?} is not protobuf or json")),
                })
            }
            "headers_file" => otlp.headers_file = Some(PathBuf::from(v)),
            "gzip" => otlp.gzip = Some(parse_bool(url, k, v)?),
            "tls" => otlp.tls = Some(parse_bool(url, k, v)?),
            _ => return Err(format!("{url}: unknown query parameter {k:?}")),
        }
    }
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
    } else if let Some((scheme, addr)) = base.split_once("://")
        && let Some(protocol) = match scheme {
            "otlp+grpc" => Some(OtlpProtocol::Grpc),
            "otlp+http" => Some(OtlpProtocol::Http),
            _ => None,
        }
    {
        if format.is_some() {
            return Err(format!(
                "{url}: OTLP sinks send OTLP LogRecords; format= does not apply"
            ));
        }
        let c = otlp
            .config(addr, protocol, tls)
            .map_err(|e| format!("{url}: {e}"))?;
        (
            TransportSpec::Otlp(Box::new(c)),
            Format::Schema(Schema::OtlpJson),
        )
    } else if let Some((scheme, addr)) = base.split_once("://") {
        if otlp != OtlpQuery::default() {
            return Err(format!(
                "{url}: encoding=, headers_file=, gzip= and tls= are OTLP sink parameters"
            ));
        }
        let protocol = match scheme {
            "syslog+tcp" => SyslogProtocol::Tcp,
            "syslog+tls" => SyslogProtocol::Tls,
            "syslog+udp" => SyslogProtocol::Udp,
            "loki" | "elasticsearch" | "splunk-hec" => {
                return Err(format!(
                    "{url}: the {scheme} sink is not built yet (issue 6); \
                     available: stdout, file:PATH, syslog+tcp://, syslog+tls://, syslog+udp://, \
                     otlp+grpc://, otlp+http://"
                ));
            }
            _ => return Err(format!("{url}: unknown sink scheme {scheme:?}")),
        };
        let mut c = SyslogConfig::new(addr, protocol, node);
        if protocol == SyslogProtocol::Tls {
            c.tls = Some(tls);
        }
        c.validate()
            .map_err(|e| format!("{url}: {}", e.0.join("; ")))?;
        (
            TransportSpec::Syslog(Box::new(c)),
            Format::Schema(Schema::Cef),
        )
    } else {
        return Err(format!(
            "{url:?} is not a sink; use stdout, file:PATH, syslog+tcp|tls|udp://HOST:PORT \
             or otlp+grpc|http://HOST:PORT"
        ));
    };
    Ok(SinkSpec {
        name: base.to_string(),
        format: format.unwrap_or(default_format),
        transport,
        queue_dir,
        durability,
    })
}

/// The OTLP query parameters of a `--sink` URL.
#[derive(Debug, Default, PartialEq, Eq)]
struct OtlpQuery {
    encoding: Option<OtlpEncoding>,
    headers_file: Option<PathBuf>,
    gzip: Option<bool>,
    tls: Option<bool>,
}

impl OtlpQuery {
    /// The sink's config; TLS is on with `tls=true` or any of `ca=`,
    /// `cert=`, `key=`, `server_name=`.
    fn config(
        self,
        addr: &str,
        protocol: OtlpProtocol,
        tls: SyslogTlsConfig,
    ) -> Result<OtlpConfig, String> {
        let mut c = OtlpConfig::new(addr, protocol, Default::default());
        if let Some(e) = self.encoding {
            c.encoding = e;
        }
        c.headers_file = self.headers_file;
        if let Some(g) = self.gzip {
            c.gzip = g;
        }
        let any_tls_file = tls != SyslogTlsConfig::default();
        match self.tls {
            Some(false) if any_tls_file => {
                return Err("tls=false with ca=, cert=, key= or server_name=".into());
            }
            Some(true) => {}
            _ if any_tls_file => {}
            _ => {
                c.validate().map_err(|e| e.0.join("; "))?;
                return Ok(c);
            }
        }
        c.tls = Some(OtlpTlsConfig {
            ca_file: tls.ca_file,
            client_cert_file: tls.client_cert_file,
            client_key_file: tls.client_key_file,
            server_name: tls.server_name,
        });
        c.validate().map_err(|e| e.0.join("; "))?;
        Ok(c)
    }
}

fn parse_bool(url: &str, key: &str, v: &str) -> Result<bool, String> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("{url}: {key}={v:?} is not true or false")),
    }
}

/// One running sink.
#[derive(Debug)]
pub struct RunningSink {
    pub spec: SinkSpec,
    handle: DriverHandle,
}

/// Every running sink and the runtime their drivers run on.
#[derive(Debug)]
pub struct Sinks {
    runtime: tokio::runtime::Runtime,
    pub sinks: Vec<RunningSink>,
}

impl Sinks {
    /// Open each sink's queue (recovering what a previous run left) and
    /// start its driver.
    /// `context` gives OTLP sinks their resource and scope.
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
        Ok(Sinks { runtime, sinks })
    }

    /// Queue one batch on one sink: `records` are (event id, encoded
    /// record: a line, or an OTLP LogRecord).
    /// With a full queue this waits (`block`: backpressure into capture,
    /// where the kernel keeps aggregating).
    pub fn push(&self, sink: usize, records: Vec<(String, Vec<u8>)>) -> anyhow::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let records: Vec<Record> = records
            .into_iter()
            .map(|(id, line)| Record::new(id, line))
            .collect();
        let handle = &self.sinks[sink].handle;
        let receipt = self.runtime.block_on(handle.queue().push(records))?;
        for shed in &receipt.shed {
            tracing::warn!(sink = %self.sinks[sink].spec.name, reason = shed.reason.as_str(), event_id = %shed.event_id, "record shed by the queue");
        }
        Ok(())
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
            "otlp+http://collector:4318?encoding=json&gzip=false&headers_file=/etc/h&ca=/ca.pem&cert=/c.pem&key=/k.pem&queue=disk&queue_dir=/q",
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
        // tls=true alone: system roots.
        let s = parse_sink("otlp+grpc://collector:4317?tls=true", "n").unwrap();
        assert_eq!(otlp(&s).tls, Some(OtlpTlsConfig::default()));
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
                "otlp+http://c:4318?cert=/c.pem",
                "client_cert_file and client_key_file go together",
            ),
            (
                "otlp+http://c:4318?tls=false&ca=/ca.pem",
                "tls=false with ca=",
            ),
            ("syslog+tcp://c:514?gzip=true", "are OTLP sink parameters"),
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
                .push(0, vec![("ev-1".into(), b"\x08\x01".to_vec())])
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
