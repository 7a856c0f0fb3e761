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
use flowscribe_sinks::core::classify::RejectReason;
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
    let mut max_datagram = None;
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
            "max_datagram" => {
                max_datagram =
                    Some(v.parse::<usize>().map_err(|_| {
                        format!("{url}: max_datagram={v:?} is not a number of bytes")
                    })?)
            }
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
        if let Some(n) = max_datagram {
            if protocol != SyslogProtocol::Udp {
                return Err(format!("{url}: max_datagram applies to syslog+udp only"));
            }
            c.max_datagram_bytes = n;
        }
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
        let shed = std::sync::Mutex::new(vec![Default::default(); sinks.len()]);
        Ok(Sinks {
            runtime,
            sinks,
            shed,
        })
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
