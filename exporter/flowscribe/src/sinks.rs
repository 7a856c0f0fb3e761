//! ⑤ Deliver, owned by the daemon: one durable queue and one delivery
//! driver per `--sink URL`, on a small tokio runtime of their own. The run
//! loop encodes each batch once per sink format and pushes it; each driver
//! then delivers, retries and classifies on its own, so a slow or dead sink
//! only fills its own queue.
//!
//! Today: `stdout`, `file:PATH`, `syslog+tcp://`, `syslog+tls://`,
//! `syslog+udp://`. The other sinks of issue 6 are refused by name.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use flowscribe_normalize::Schema;
use flowscribe_sinks::core::driver::{DriverConfig, DriverHandle, SinkDriver};
use flowscribe_sinks::core::queue::{Durability, DurableQueue, QueueConfig, Record};
use flowscribe_sinks::file::{FileConfig, StdoutTransport};
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
    let mut format = None;
    let mut queue_dir = None;
    let mut durability = Durability::Memory;
    let mut tls = SyslogTlsConfig::default();
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
    } else if let Some((scheme, addr)) = base.split_once("://") {
        let protocol = match scheme {
            "syslog+tcp" => SyslogProtocol::Tcp,
            "syslog+tls" => SyslogProtocol::Tls,
            "syslog+udp" => SyslogProtocol::Udp,
            "otlp+grpc" | "otlp+http" | "loki" | "elasticsearch" | "splunk-hec" => {
                return Err(format!(
                    "{url}: the {scheme} sink is not built yet (issue 6); \
                     available: stdout, file:PATH, syslog+tcp://, syslog+tls://, syslog+udp://"
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
            "{url:?} is not a sink; use stdout, file:PATH or syslog+tcp|tls|udp://HOST:PORT"
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
    pub fn start(specs: Vec<SinkSpec>) -> anyhow::Result<Sinks> {
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

    /// Queue one batch on one sink: `records` are (event id, encoded line).
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
