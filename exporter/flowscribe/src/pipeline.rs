//! `flowscribe run`: the pipeline, wired top to bottom in pipeline order.
//!
//! ① capture -> ② enrich -> ③ explain (policies from the manifests
//! directory) -> ④ normalize (ECS, OTLP/JSON, OCSF, CEF or the minimal line)
//! -> ⑤ the output and every sink.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use bytes::Bytes;
use flowscribe_capture::abi::stat;
use flowscribe_capture::{AttachEvent, Batch, Capture, CaptureError, interfaces::is_literal};
use flowscribe_enrich::enrich_batch;
use flowscribe_model::{CaptureLoss, ExplainedFlow};
use flowscribe_normalize::ecs::EcsEncoder;
use flowscribe_normalize::event_id::{EventId, EventIdHasher};
use flowscribe_normalize::otlp::OtlpEncoder;
use flowscribe_normalize::{Context as SchemaContext, Schema, event_id, minimal, otlp};
use tracing::{info, warn};

use crate::RunArgs;
use crate::audit_trail::{AuditTrail, Encoded, clock_state, view_name};
use crate::config::{Config, Format, KubernetesMode, RawConfig};
use crate::identity::Identities;
use crate::metrics::{self, Metrics};
use crate::output::RecordWriter;
use crate::sinks::Sinks;
use flowscribe_audit::HeartbeatRecord;
use flowscribe_audit::form_template::HoleTable;
use serde_json::json;
use std::cell::RefCell;
use std::collections::BTreeMap;

/// How `run` can fail: a usage problem (exit 2, one line each) or a runtime failure.
#[derive(Debug)]
pub enum RunError {
    Usage(Vec<String>),
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for RunError {
    fn from(e: anyhow::Error) -> Self {
        RunError::Failed(e)
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

/// Read the config file (if any), apply the flags, validate.
fn load_config(args: &RunArgs) -> Result<Config, RunError> {
    let mut raw: RawConfig = match &args.config {
        None => RawConfig::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                RunError::Usage(vec![format!(
                    "cannot read config file {}: {e}",
                    path.display()
                )])
            })?;
            serde_yaml::from_str(&text).map_err(|e| {
                RunError::Usage(vec![format!("config file {}: {e}", path.display())])
            })?
        }
    };
    if !args.interfaces.is_empty() {
        raw.capture.interfaces = Some(args.interfaces.clone());
    }
    if !args.exclude_interfaces.is_empty() {
        raw.capture.exclude_interfaces = Some(args.exclude_interfaces.clone());
    }
    if args.active_timeout.is_some() {
        raw.capture.active_timeout = args.active_timeout.clone();
    }
    if args.idle_timeout.is_some() {
        raw.capture.idle_timeout = args.idle_timeout.clone();
    }
    if args.output.is_some() {
        raw.output = args.output.clone();
    }
    if args.manifests.is_some() {
        raw.enrich.manifests = args.manifests.clone();
    }
    if args.format.is_some() {
        raw.format = args.format.clone();
    }
    if args.metrics_listen.is_some() {
        raw.metrics_listen = args.metrics_listen.clone();
    }
    if !args.sinks.is_empty() {
        raw.sinks
            .get_or_insert_with(Vec::new)
            .extend(args.sinks.iter().cloned());
    }
    raw.validate(&host_name())
        .map_err(|problems| RunError::Usage(problems.iter().map(|p| p.to_string()).collect()))
}

/// A pattern without wildcards must name an interface that exists now;
/// a typo would otherwise capture nothing, silently.
fn check_literal_interfaces(config: &Config) -> Result<(), RunError> {
    let links = flowscribe_capture::netlink::list_links()
        .context("listing network interfaces")
        .map_err(RunError::Failed)?;
    let missing: Vec<String> = config
        .capture
        .include
        .iter()
        .filter(|p| is_literal(p) && !links.iter().any(|l| &l.name == *p))
        .map(|p| {
            let names: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
            format!(
                "capture.interfaces: interface {p:?} does not exist; existing interfaces: {}",
                names.join(", ")
            )
        })
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(RunError::Usage(missing))
    }
}

fn log_attach_events(events: &[AttachEvent]) {
    for e in events {
        match e {
            AttachEvent::Attached {
                ifindex,
                name,
                mode,
            } => {
                info!(interface = %name, ifindex, mode, "attached")
            }
            AttachEvent::Released { ifindex, name } => {
                info!(interface = %name, ifindex, "released")
            }
            AttachEvent::Skipped {
                ifindex,
                name,
                reason,
            } => {
                warn!(interface = %name, ifindex, reason = %reason, "skipped")
            }
        }
    }
}

/// One drained batch after ② enrich (and, later, ③ explain).
struct Explained {
    flows: Vec<ExplainedFlow>,
    /// Each flow's event id, hashed before redaction (see [`identify_and_redact`]).
    event_ids: Vec<EventId>,
    losses: Vec<CaptureLoss>,
    at: SystemTime,
}

/// ② Enrich and ③ explain a drained batch.
fn explain(batch: Batch, identities: &mut Identities) -> Explained {
    let at = SystemTime::now();
    identities.refresh(at);
    let degraded = identities.degraded();
    let policies = identities.policies();
    let flows = enrich_batch(identities.index(), batch.flows, degraded)
        .into_iter()
        // ③ Explain: which policies decide each flow, and what was observed.
        .map(|f| ExplainedFlow {
            trace: policies
                .map(|p| flowscribe_policy::explain(p, &f, flowscribe_policy::observe(&f.flow))),
            flow: f,
        })
        .collect();
    Explained {
        flows,
        event_ids: Vec::new(),
        losses: batch.losses,
        at,
    }
}

/// The flows' event ids, then the configured redaction, on every flow
/// before anything is encoded. The ids are hashed from the flows as
/// captured: after an address is truncated, two connections can differ
/// only in the bits it lost, and one id for both would make a sink drop
/// one of them as a duplicate (the encoder's hasher then has a secret in
/// its key, so that an id does not give the lost bits away).
fn identify_and_redact(config: &Config, encoder: &Encoder, batch: &mut Explained) {
    batch.event_ids = encoder.flow_event_ids(batch);
    if !config.redactor.is_empty() {
        for f in &mut batch.flows {
            config.redactor.apply(f);
        }
    }
}

/// What the audit trail's start record says was running.
fn start_details(config: &Config, capture: &Capture) -> BTreeMap<String, serde_json::Value> {
    use sha2::Digest as _;
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let config_hash = hex_lower(&sha2::Sha256::digest(format!("{config:?}").as_bytes()));
    BTreeMap::from([
        ("version".to_string(), json!(env!("CARGO_PKG_VERSION"))),
        ("config_sha256".to_string(), json!(config_hash)),
        ("kernel".to_string(), json!(kernel)),
        (
            "attach_mode".to_string(),
            json!(if capture.uses_tcx() { "tcx" } else { "tc" }),
        ),
        ("interfaces".to_string(), json!(capture.attached())),
        ("sampling".to_string(), json!(1)),
        ("redaction".to_string(), json!(config.redactor.declared())),
    ])
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What is degraded right now, by condition, with a detail: the identity
/// sources (`api_unreachable`), each sink whose last outcome was a degraded
/// retry (`sink_blocked:<sink>`).
fn degraded_conditions(identities: &Identities, sinks: &Sinks) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if identities.degraded() {
        out.insert(
            "identity_degraded".to_string(),
            "an identity or policy source is incomplete".to_string(),
        );
    }
    for s in &sinks.sinks {
        if let Some(why) = s.degraded() {
            out.insert(format!("sink_blocked:{}", s.spec.name), why.to_string());
        }
    }
    out
}

/// The heartbeat's view of the node: clock discipline, coverage, health.
fn heartbeat(capture: &Capture, identities: &Identities) -> HeartbeatRecord {
    let mut degraded = Vec::new();
    if identities.degraded() {
        degraded.push("identity_degraded".to_string());
    }
    HeartbeatRecord {
        clock: clock_state(),
        interfaces_attached: capture.attached(),
        sampling: 1,
        degraded,
    }
}

/// Refresh the metrics endpoint's view of the pipeline after a drain.
fn report(metrics: &Metrics, capture: &Capture, identities: &Identities, batch: &Explained) {
    let counters = capture.counters();
    metrics.update(|m| {
        m.kernel = counters.kernel.clone();
        m.new_flow_events = counters.new_flow_events;
        m.drops_unmatched = counters.aggregator.drops_unmatched_packets;
        m.interfaces_attached = capture.attached().len() as u64;
        m.cache_flush_incomplete = counters.cache_flush_incomplete;
        m.cache_stranded_packets = counters.cache_stranded_packets;
        m.cache_folded_packets = counters.cache_folded_packets;
        m.flow_records += batch.flows.len() as u64;
        m.loss_records += batch.losses.len() as u64;
        m.identity_degraded = identities.degraded();
        m.malformed_objects = identities.malformed_objects;
        m.pods = identities.index().stats().pods as u64;
    });
}

/// ④ Normalize one batch in `format` -> ⑤ the output, and every sink.
fn deliver(
    batch: &Explained,
    encoder: &Encoder,
    writer: &mut RecordWriter,
    sinks: &Sinks,
    audit: Option<&mut AuditTrail>,
) -> anyhow::Result<()> {
    // Each distinct format is encoded once, however many consumers share it;
    // each flow's event id was hashed once for all of them (`identify_and_redact`). A
    // batch that skipped it would pair ids and records wrongly (or, through
    // `zip`, drop records): refuse it.
    anyhow::ensure!(
        batch.event_ids.len() == batch.flows.len(),
        "internal error: {} event ids for {} flow records",
        batch.event_ids.len(),
        batch.flows.len()
    );
    let ids = encoder.event_ids(batch);
    let mut encoded: Vec<Encoded> = Vec::new();
    for format in consumer_formats(encoder, writer, sinks) {
        encoded.push((format, encoder.encode(format, batch)?, ids.clone()));
    }
    // ⑤ The audit trail numbers, seals and checkpoints every JSON view
    // (ECS lines written from a template get their canonical form from
    // the encoder's side table).
    if let Some(audit) = audit {
        audit.seal(&mut encoded, &encoder.ecs_holes.borrow(), batch.at)?;
    }
    send(encoded, encoder, writer, sinks)?;
    push_otlp_log_records(batch, encoder, sinks, &ids)
}

/// 32 bytes from the kernel's random source (`getrandom`): the event-id key's secret
/// when redaction truncates addresses (one per run; ids are kept with their
/// records for replays, so they need not be derived again).
fn random_secret() -> anyhow::Result<[u8; 32]> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret)
        .map_err(|e| anyhow::anyhow!("no random bytes for the event-id secret: {e}"))?;
    Ok(secret)
}

/// ⑤ OTLP sinks queue one protobuf `LogRecord` per flow and loss record,
/// encoded once for all of them. They are not one of the audit trail's
/// JSON views (no seal fields).
fn push_otlp_log_records(
    batch: &Explained,
    encoder: &Encoder,
    sinks: &Sinks,
    ids: &[String],
) -> anyhow::Result<()> {
    if !sinks.sinks.iter().any(|s| s.spec.sends_otlp_log_records()) {
        return Ok(());
    }
    let records: Vec<Bytes> = encoder
        .otlp_log_records(batch)
        .into_iter()
        .map(Bytes::from)
        .collect();
    for (i, sink) in sinks.sinks.iter().enumerate() {
        if sink.spec.sends_otlp_log_records() {
            sinks.push(
                i,
                ids.iter().cloned().zip(records.iter().cloned()).collect(),
            )?;
        }
    }
    Ok(())
}

/// Every format some consumer (the output, a sink) wants, once each.
fn consumer_formats(encoder: &Encoder, writer: &RecordWriter, sinks: &Sinks) -> Vec<Format> {
    let mut formats: Vec<Format> = Vec::new();
    let wanted = (!writer.is_none())
        .then_some(encoder.format)
        .into_iter()
        .chain(
            sinks
                .sinks
                .iter()
                .filter(|s| !s.spec.sends_otlp_log_records())
                .map(|s| s.spec.format),
        );
    for f in wanted {
        if !formats.contains(&f) {
            formats.push(f);
        }
    }
    formats
}

/// Hand each consumer its format's lines (with their event ids). Each line
/// becomes one shared buffer: sinks of the same format queue the same bytes.
fn send(
    encoded: Vec<Encoded>,
    encoder: &Encoder,
    writer: &mut RecordWriter,
    sinks: &Sinks,
) -> anyhow::Result<()> {
    if !writer.is_none()
        && let Some((_, lines, _)) = encoded.iter().find(|(f, _, _)| *f == encoder.format)
    {
        writer.write_lines(lines)?;
    }
    let shared: Vec<(Format, Vec<Bytes>, Vec<String>)> = encoded
        .into_iter()
        .map(|(f, lines, ids)| (f, lines.into_iter().map(Bytes::from).collect(), ids))
        .collect();
    for (i, sink) in sinks.sinks.iter().enumerate() {
        if sink.spec.sends_otlp_log_records() {
            continue; // fed by push_otlp_log_records
        }
        if let Some((_, lines, ids)) = shared.iter().find(|(f, _, _)| *f == sink.spec.format) {
            sinks.push(i, ids.iter().cloned().zip(lines.iter().cloned()).collect())?;
        }
    }
    Ok(())
}

/// ④ The configured record format, and the encoders that keep the
/// rendered fragments of shared pods, endpoints and policies between
/// records (ECS lines and OTLP `LogRecord`s; byte-identical to the plain
/// writers). The run loop is one thread, so the caches sit in `RefCell`s.
struct Encoder {
    format: Format,
    context: SchemaContext,
    ecs: RefCell<EcsEncoder>,
    otlp: RefCell<OtlpEncoder>,
    /// The node's event-id key, derived once (with a secret when redaction
    /// truncates addresses); hashes a batch's ids side by side.
    event_id_hasher: RefCell<EventIdHasher>,
    /// With the audit trail on (the ECS encoder then notes its holes):
    /// which template wrote each ECS flow line of the last batch, and where
    /// its values are (the seal reuses the template's canonical form).
    ecs_holes: RefCell<HoleTable>,
}

impl Encoder {
    fn new(config: &Config) -> anyhow::Result<Self> {
        let context = SchemaContext {
            node: config.node_name.clone(),
            cluster: config.cluster_name.clone(),
            service_version: env!("CARGO_PKG_VERSION").to_string(),
            community_id_seed: 0,
        };
        let mut ecs = EcsEncoder::new(context.clone());
        ecs.note_holes(config.audit.is_some());
        let event_id_hasher = if config.redactor.truncates() {
            EventIdHasher::with_secret(&context.node, &random_secret()?)
        } else {
            EventIdHasher::new(&context.node)
        };
        Ok(Encoder {
            format: config.format,
            ecs: RefCell::new(ecs),
            ecs_holes: RefCell::new(HoleTable::new()),
            otlp: RefCell::new(OtlpEncoder::new(context.clone())),
            event_id_hasher: RefCell::new(event_id_hasher),
            context,
        })
    }

    /// Every record of a batch encoded in `format`, flows then losses,
    /// each flow with its id from `batch.event_ids`.
    fn encode(&self, format: Format, batch: &Explained) -> anyhow::Result<Vec<Vec<u8>>> {
        let mut out = Vec::with_capacity(batch.flows.len() + batch.losses.len());
        let noting = format == Format::Schema(Schema::Ecs) && self.ecs.borrow().notes_holes();
        if noting {
            self.ecs_holes.borrow_mut().clear();
        }
        for (f, id) in batch.flows.iter().zip(&batch.event_ids) {
            out.push(self.flow(format, f, *id, batch.at)?);
            if noting {
                self.ecs_holes
                    .borrow_mut()
                    .push(self.ecs.borrow().last_holes());
            }
        }
        for l in &batch.losses {
            out.push(self.loss(format, l, batch.at)?);
        }
        Ok(out)
    }

    /// Every record of a batch as one protobuf-encoded OTLP `LogRecord`,
    /// flows then losses (the payloads OTLP sinks queue).
    fn otlp_log_records(&self, batch: &Explained) -> Vec<Vec<u8>> {
        use prost::Message as _;
        let mut encoder = self.otlp.borrow_mut();
        let flows = batch.flows.iter().zip(&batch.event_ids).map(|(f, id)| {
            let mut out = Vec::new();
            encoder.write_log_record_with_event_id(f, batch.at, Some(*id), &mut out);
            out
        });
        let losses = batch
            .losses
            .iter()
            .map(|l| otlp::loss_record(&self.context, l, batch.at).encode_to_vec());
        flows.chain(losses).collect()
    }

    /// The event id of every flow record of a batch, hashed side by side,
    /// for the sinks (deduplication) and every format.
    fn flow_event_ids(&self, batch: &Explained) -> Vec<EventId> {
        let mut ids = Vec::with_capacity(batch.flows.len());
        self.event_id_hasher.borrow_mut().ids(
            batch.flows.iter().map(|f| {
                let flow = &f.flow.flow;
                (&flow.key, flow.window_start, flow.window_end)
            }),
            &mut ids,
        );
        ids
    }

    /// The event id of every record of a batch, in `encode`'s order: sinks
    /// use it to recognise a duplicate after a retry or a restart.
    fn event_ids(&self, batch: &Explained) -> Vec<String> {
        let flows = batch.event_ids.iter().map(EventId::to_hex);
        let losses = batch
            .losses
            .iter()
            .map(|l| event_id::loss_event_id(&self.context.node, l));
        flows.chain(losses).collect()
    }

    fn flow(
        &self,
        format: Format,
        flow: &ExplainedFlow,
        id: EventId,
        now: SystemTime,
    ) -> anyhow::Result<Vec<u8>> {
        let mut line = Vec::new();
        match format {
            Format::Minimal => serde_json::to_writer(
                &mut line,
                &minimal::enriched_flow(&flow.flow, &self.context.node),
            )?,
            Format::Schema(Schema::Ecs) => {
                self.ecs
                    .borrow_mut()
                    .encode_with_event_id(flow, now, Some(id), &mut line)
            }
            Format::Schema(schema) => flowscribe_normalize::encode_flow_with_event_id(
                schema,
                &self.context,
                flow,
                Some(id),
                now,
                &mut line,
            )?,
        }
        Ok(line)
    }

    /// Loss records in the format's own shape (ECS, OTLP/JSON, OCSF, CEF:
    /// `encode_loss`); the minimal loss line for the minimal format
    /// (docs/record.md).
    fn loss(&self, format: Format, loss: &CaptureLoss, now: SystemTime) -> anyhow::Result<Vec<u8>> {
        let mut line = Vec::new();
        match format {
            Format::Schema(schema) => {
                flowscribe_normalize::encode_loss(schema, &self.context, loss, now, &mut line)?
            }
            Format::Minimal => {
                serde_json::to_writer(&mut line, &minimal::loss(loss, &self.context.node))?
            }
        }
        Ok(line)
    }
}

/// The API server client, when `enrich.kubernetes` asks for one and a
/// configuration exists (in-cluster, `$KUBECONFIG`, ~/.kube/config).
type KubeClient = (tokio::runtime::Runtime, kube::Client, http::Uri);

fn kube_client(config: &Config) -> Result<Option<KubeClient>, RunError> {
    if config.enrich.kubernetes == KubernetesMode::Off {
        return Ok(None);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("kube")
        .enable_all()
        .build()
        .context("starting the Kubernetes runtime")?;
    let inferred = runtime.block_on(kube::Config::infer());
    let kube_config = match (inferred, config.enrich.kubernetes) {
        (Ok(c), _) => c,
        (Err(e), KubernetesMode::On) => {
            return Err(RunError::Usage(vec![format!(
                "enrich.kubernetes: on, but no Kubernetes configuration was found: {e}"
            )]));
        }
        (Err(e), _) => {
            info!(reason = %e, "no Kubernetes configuration; identities from manifests only");
            return Ok(None);
        }
    };
    info!(api_server = %kube_config.cluster_url, "watching the Kubernetes API");
    let url = kube_config.cluster_url.clone();
    let client = {
        let _enter = runtime.enter();
        kube::Client::try_from(kube_config).context("building the Kubernetes client")?
    };
    Ok(Some((runtime, client, url)))
}

/// The API server's address, when it is an IP literal (in-cluster it is the
/// `kubernetes` service's ClusterIP).
fn api_server_endpoint(url: &http::Uri) -> Option<(std::net::IpAddr, u16, u8)> {
    let host = url.host()?.trim_start_matches('[').trim_end_matches(']');
    let ip: std::net::IpAddr = host.parse().ok()?;
    let port = url.port_u16().unwrap_or(match url.scheme_str() {
        Some("http") => 80,
        _ => 443,
    });
    Some((ip, port, 6))
}

/// Where each network sink sends (its URL's host and port, resolved now;
/// UDP for `syslog+udp`, TCP otherwise): the exporter's own delivery
/// traffic is not a flow worth recording, and would feed itself.
fn sink_endpoints(config: &Config) -> Vec<(std::net::IpAddr, u16, u8)> {
    use std::net::ToSocketAddrs;
    let mut out = Vec::new();
    for spec in &config.sinks {
        let Some((_, rest)) = spec.name.split_once("://") else {
            continue; // stdout, file:
        };
        let authority = rest.split(['/', '?']).next().unwrap_or(rest);
        let proto = if spec.scheme() == "syslog+udp" { 17 } else { 6 };
        match authority.to_socket_addrs() {
            Ok(addrs) => out.extend(addrs.map(|a| (a.ip(), a.port(), proto))),
            Err(e) => {
                warn!(sink = %spec.name, error = %e, "cannot resolve the sink's address now; its traffic may be captured")
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// A manifests directory that does not exist is a usage error, not a
/// silently empty identity index.
fn check_manifests_dir(config: &Config) -> Result<(), RunError> {
    match &config.enrich.manifests {
        Some(dir) if !dir.is_dir() => Err(RunError::Usage(vec![format!(
            "enrich.manifests: {} is not a directory",
            dir.display()
        )])),
        _ => Ok(()),
    }
}

pub fn run(args: &RunArgs) -> Result<(), RunError> {
    let config = load_config(args)?;
    check_literal_interfaces(&config)?;
    check_manifests_dir(&config)?;
    let mut config = config;
    let kube_client = kube_client(&config)?;
    if let Some((_, _, url)) = &kube_client {
        // The exporter's own API traffic is not a flow worth recording.
        config
            .capture
            .excluded_endpoints
            .extend(api_server_endpoint(url));
    }
    let own = sink_endpoints(&config);
    config.capture.excluded_endpoints.extend(own);
    let config = config;
    let mut writer = RecordWriter::open(&config.output).map_err(RunError::Failed)?;
    let encoder = Encoder::new(&config).map_err(RunError::Failed)?;
    // ⑤ Deliver: a queue and a driver per sink (queues recover what a
    // previous run left before anything new is pushed).
    let sinks = Sinks::start(config.sinks.clone(), &encoder.context).map_err(RunError::Failed)?;
    let metrics = Metrics::new(sinks.handles());
    if let Some(addr) = config.metrics_listen {
        let listener = metrics::bind(addr).map_err(|e| {
            RunError::Usage(vec![format!(
                "metrics_listen: cannot listen on {addr}: {e}"
            )])
        })?;
        let local = listener
            .local_addr()
            .map_err(|e| RunError::Failed(e.into()))?;
        sinks.spawn(metrics::serve(listener, Arc::clone(&metrics)));
        info!(addr = %local, "metrics endpoint listening");
    }

    // SIGINT/SIGTERM set a flag; the loop below notices within one link-watch timeout.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")
            .map_err(RunError::Failed)?;
    }

    // ② Enrich: identities from the manifests directory (read now, before
    // capture starts, so the first flows resolve; re-read on change) and
    // from the API server's watchers, running on their own runtime (the
    // runtime lives until `run` returns).
    let mut identities =
        Identities::new(config.enrich.index.clone(), config.enrich.manifests.clone());
    let _kube_runtime = match kube_client {
        Some((runtime, client, _)) => {
            let (tx, rx) = std::sync::mpsc::channel();
            let (policy_tx, policy_rx) = std::sync::mpsc::channel();
            let _enter = runtime.enter();
            flowscribe_enrich::kube_source::spawn_watchers(client.clone(), tx);
            // ③ Policies from the API server too (CRDs that are not
            // installed are skipped).
            flowscribe_enrich::kube_policies::spawn_policy_watchers(client, policy_tx);
            identities = identities.with_kube(rx).with_kube_policies(policy_rx);
            Some(runtime)
        }
        None => None,
    };
    identities.refresh(SystemTime::now());

    // ⑤ The audit trail, when on: key and chain state first, so a bad key
    // stops the start before anything is attached.
    let mut audit = match &config.audit {
        Some(settings) => Some(
            AuditTrail::start(
                settings,
                &config.node_name,
                &consumer_formats(&encoder, &writer, &sinks),
                SystemTime::now(),
            )
            .map_err(|e| RunError::Usage(vec![format!("{e:#}")]))?,
        ),
        None => None,
    };

    // ① Capture: check the host, load the programs, attach to interfaces.
    let (mut capture, events) = Capture::start(&config.capture).map_err(|e| match e {
        CaptureError::Preflight(p) => RunError::Usage(vec![p.to_string()]),
        CaptureError::Pattern(p) => RunError::Usage(vec![p.to_string()]),
        other => RunError::Failed(other.into()),
    })?;
    log_attach_events(&events);
    if let Some(a) = audit.as_mut() {
        a.started(start_details(&config, &capture), SystemTime::now());
    }
    info!(
        node = %config.node_name,
        mode = if capture.uses_tcx() { "tcx" } else { "tc" },
        interfaces = capture.attached().len(),
        "capture running"
    );

    let mut next_drain = Instant::now() + config.drain_interval;
    let mut loss_window = SystemTime::now();
    while !stop.load(Ordering::Relaxed) {
        // ① Follow interfaces as pods come and go (netlink, at most 200 ms late).
        let wait = next_drain
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(200));
        let events = capture.watch_links(wait).map_err(anyhow::Error::from)?;
        log_attach_events(&events);
        if Instant::now() < next_drain {
            continue;
        }
        next_drain += config.drain_interval;
        // ① Drain the kernel maps -> ② enrich -> ④ normalize -> output.
        let batch = capture.drain().map_err(anyhow::Error::from)?;
        let mut explained = explain(batch, &mut identities);
        identify_and_redact(&config, &encoder, &mut explained);
        let changes = identities.take_policy_changes();
        let reloads = identities.take_reloads();
        let sink_losses = sinks.take_losses();
        let now = SystemTime::now();
        if let Some(a) = audit.as_mut() {
            a.conditions(degraded_conditions(&identities, &sinks), now);
            a.reloads(reloads);
            a.policy_changes(changes);
            a.sink_losses(sink_losses, loss_window, now);
            a.tick(now, || heartbeat(&capture, &identities))?;
        }
        loss_window = now;
        deliver(&explained, &encoder, &mut writer, &sinks, audit.as_mut())?;
        report(&metrics, &capture, &identities, &explained);
    }

    // Shutdown: detach everything first, then the final drain, so nothing
    // the kernel counted is lost.
    info!("stopping: final drain");
    let (batch, counters) = capture.shutdown().map_err(anyhow::Error::from)?;
    let mut explained = explain(batch, &mut identities);
    identify_and_redact(&config, &encoder, &mut explained);
    deliver(&explained, &encoder, &mut writer, &sinks, audit.as_mut())?;
    if let Some(a) = audit.as_mut() {
        // What the sinks lost while delivering the last records, then the
        // stop record, in one last numbered batch.
        sinks.settle(Duration::from_secs(5));
        let now = SystemTime::now();
        a.sink_losses(sinks.take_losses(), loss_window, now);
        a.stopping(now);
        let last = Explained {
            flows: Vec::new(),
            event_ids: Vec::new(),
            losses: Vec::new(),
            at: now,
        };
        deliver(&last, &encoder, &mut writer, &sinks, Some(a))?;
    }
    // The last signed checkpoints close the chain of this run.
    if let Some(a) = audit.take() {
        let formats = consumer_formats(&encoder, &writer, &sinks);
        let mut last: Vec<Encoded> = Vec::new();
        for (view, line, id) in a.finish(SystemTime::now())? {
            for f in formats
                .iter()
                .filter(|f| view_name(**f) == Some(view.as_str()))
            {
                last.push((*f, vec![line.clone()], vec![id.clone()]));
            }
        }
        send(last, &encoder, &mut writer, &sinks)?;
    }
    // ⑤ Deliver what is queued, then stop the drivers.
    sinks.shutdown(Duration::from_secs(10));
    let kernel = |i: u32| counters.kernel.get(i as usize).copied().unwrap_or(0);
    info!(
        new_flow_events = counters.new_flow_events,
        counter_resets = counters.aggregator.counter_resets,
        non_ip = kernel(stat::NON_IP),
        parse_ext_limit = kernel(stat::PARSE_EXT_LIMIT),
        excluded = kernel(stat::EXCLUDED),
        "stopped"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::audit_trail::fixtures;

    fn config(yaml: &str) -> Config {
        serde_yaml::from_str::<crate::config::RawConfig>(yaml)
            .unwrap()
            .validate("node-1")
            .unwrap()
    }

    /// Two ICMP echoes from one pod to two hosts of one /16, in one window:
    /// the same flow key once the addresses are truncated to /16.
    fn echoes() -> Explained {
        let echo = |dst: &str| {
            let mut f = fixtures::case("icmp");
            f.flow.flow.key.src_addr = "10.201.1.2".parse().unwrap();
            f.flow.flow.key.dst_addr = dst.parse().unwrap();
            f
        };
        Explained {
            flows: vec![echo("10.201.2.2"), echo("10.201.3.2")],
            event_ids: Vec::new(),
            losses: Vec::new(),
            at: fixtures::observed(),
        }
    }

    /// The id a record carries in each JSON format, and the queue's id.
    fn ids_written(encoder: &Encoder, batch: &Explained, format: Schema) -> Vec<String> {
        let lines = encoder.encode(Format::Schema(format), batch).unwrap();
        lines
            .iter()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_slice(l).unwrap();
                let id = match format {
                    Schema::Ecs => &v["event"]["id"],
                    Schema::Ocsf => &v["metadata"]["uid"],
                    _ => unreachable!("JSON formats with one id field"),
                };
                id.as_str().unwrap().to_string()
            })
            .collect()
    }

    #[test]
    fn truncated_addresses_keep_one_id_per_connection() {
        let config = config(
            "redact:\n  - {field: ip, action: truncate, prefix_v4: 16, only: all}\nformat: ecs\n",
        );
        assert!(config.redactor.truncates());
        let encoder = Encoder::new(&config).unwrap();
        let mut batch = echoes();
        identify_and_redact(&config, &encoder, &mut batch);
        // The keys are now equal; the ids are not.
        assert_eq!(batch.flows[0].flow.flow.key, batch.flows[1].flow.flow.key);
        assert_eq!(batch.event_ids.len(), 2);
        assert_ne!(batch.event_ids[0], batch.event_ids[1]);
        // Not the public id of either key: the truncated bits stay hidden.
        let public = |f: &ExplainedFlow| {
            let f = &f.flow.flow;
            flowscribe_normalize::event_id::event_id("node-1", &f.key, f.window_start, f.window_end)
        };
        let original = echoes();
        for (id, f) in batch.event_ids.iter().zip(&original.flows) {
            assert_ne!(*id, public(f));
        }
        // Every format and the queue carry the same ids.
        let hex: Vec<String> = batch.event_ids.iter().map(EventId::to_hex).collect();
        assert_eq!(ids_written(&encoder, &batch, Schema::Ecs), hex);
        assert_eq!(ids_written(&encoder, &batch, Schema::Ocsf), hex);
        assert_eq!(encoder.event_ids(&batch), hex);
        for schema in [Schema::Cef, Schema::OtlpJson] {
            let lines = encoder.encode(Format::Schema(schema), &batch).unwrap();
            for (i, line) in lines.iter().enumerate() {
                let line = String::from_utf8_lossy(line);
                assert!(line.contains(&hex[i]), "{schema:?} record {i}: {line}");
                assert!(!line.contains(&hex[1 - i]), "{schema:?} record {i}: {line}");
            }
        }
        let records = encoder.otlp_log_records(&batch);
        for (i, bytes) in records.iter().enumerate() {
            use prost::Message as _;
            let record =
                opentelemetry_proto::tonic::logs::v1::LogRecord::decode(bytes.as_slice()).unwrap();
            let id = record
                .attributes
                .iter()
                .find(|a| a.key == "flowscribe.event_id")
                .and_then(|a| a.value.as_ref())
                .and_then(|v| v.value.as_ref());
            let want = opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                hex[i].clone(),
            );
            assert_eq!(id, Some(&want), "OTLP record {i}");
        }
    }

    /// What `deliver` writes: the ids `identify_and_redact` hashed, not ids of the
    /// redacted flows (the file output carries ECS lines).
    #[test]
    fn delivered_lines_carry_the_ids_hashed_before_redaction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let config = config(&format!(
            "redact:\n  - {{field: ip, action: truncate, prefix_v4: 16, only: all}}\nformat: ecs\noutput: file:{}\n",
            path.display()
        ));
        let encoder = Encoder::new(&config).unwrap();
        let mut writer = RecordWriter::open(&config.output).unwrap();
        let sinks = Sinks::start(Vec::new(), &encoder.context).unwrap();
        let mut batch = echoes();
        identify_and_redact(&config, &encoder, &mut batch);
        deliver(&batch, &encoder, &mut writer, &sinks, None).unwrap();
        let written: Vec<String> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["event"]["id"].as_str().unwrap().to_string()
            })
            .collect();
        let hex: Vec<String> = batch.event_ids.iter().map(EventId::to_hex).collect();
        assert_eq!(written, hex);
        assert_ne!(written[0], written[1]);
        // A batch whose ids were not hashed is refused, not written short.
        let mut unhashed = echoes();
        unhashed.event_ids.clear();
        let err = deliver(&unhashed, &encoder, &mut writer, &sinks, None).unwrap_err();
        assert!(
            err.to_string().contains("0 event ids for 2 flow records"),
            "{err}"
        );
    }

    #[test]
    fn without_truncation_ids_are_the_public_ones() {
        let config = config("redact:\n  - {field: pod.labels, action: drop}\nformat: ecs\n");
        assert!(!config.redactor.truncates());
        let encoder = Encoder::new(&config).unwrap();
        let mut batch = echoes();
        identify_and_redact(&config, &encoder, &mut batch);
        for (id, f) in batch.event_ids.iter().zip(&batch.flows) {
            let f = &f.flow.flow;
            let public = flowscribe_normalize::event_id::event_id(
                "node-1",
                &f.key,
                f.window_start,
                f.window_end,
            );
            assert_eq!(*id, public);
        }
        assert_ne!(batch.event_ids[0], batch.event_ids[1]);
        let hex: Vec<String> = batch.event_ids.iter().map(EventId::to_hex).collect();
        assert_eq!(ids_written(&encoder, &batch, Schema::Ocsf), hex);
    }
}
