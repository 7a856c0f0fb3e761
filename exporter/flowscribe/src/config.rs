//! The configuration file: raw (serde, unknown fields rejected) ->
//! [`RawConfig::validate`] (pure, collects every problem with its path) ->
//! [`Config`] (typed). CLI flags override the file.
//!
//! [`FIELDS`] documents every field; docs/config.md is generated from it and
//! a test fails when the page is stale.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use flowscribe_capture::{AttachMode, CaptureConfig, interfaces::InterfaceFilter};
use flowscribe_enrich::IndexConfig;
use flowscribe_enrich::networks::NamedNetwork;
use flowscribe_normalize::Schema;

use crate::sinks::{SinkSpec, parse_sink};
use serde::{Deserialize, Serialize};

/// One documented configuration field.
#[derive(Debug)]
pub struct FieldDoc {
    pub path: &'static str,
    pub kind: &'static str,
    pub default: &'static str,
    pub doc: &'static str,
}

/// Every field of the configuration file, in file order.
pub const FIELDS: &[FieldDoc] = &[
    FieldDoc {
        path: "node_name",
        kind: "string",
        default: "the host name",
        doc: "Node name written into every record.",
    },
    FieldDoc {
        path: "output",
        kind: "string",
        default: "stdout, or none when `sinks` are set",
        doc: "Where records go without a queue: `stdout`, `file:PATH` (lines appended) or `none`.",
    },
    FieldDoc {
        path: "format",
        kind: "ecs | otlp-json | ocsf | cef | minimal",
        default: "ecs",
        doc: "Record format of `output` (docs/schemas/). Loss records take each format's own shape (ECS event, OTLP log record, OCSF 4001 activity Other, CEF capture-loss; docs/schemas/), and the minimal line for `minimal`.",
    },
    FieldDoc {
        path: "cluster_name",
        kind: "string",
        default: "none",
        doc: "Cluster name written into every record (`orchestrator.cluster.name`, `k8s.cluster.name`).",
    },
    FieldDoc {
        path: "redact",
        kind: "list of {field, action, ...}",
        default: "[]",
        doc: "Applied to every flow before it is encoded, in order, and declared in the audit start record. `{field: ip | source.ip | destination.ip, action: truncate, prefix_v4: 24, prefix_v6: 48, only: all | public}` (public keeps cluster and private addresses whole; event ids are hashed before truncation, under a per-run secret, so connections that differ only in the truncated bits keep distinct ids: ADR 005); `{field: pod.name | pod.service_account, action: keyed_hash, key_file: PATH}` (HMAC-SHA256, `h:` + 16 hex, a key of at least 16 bytes); `{field: pod.labels | namespace.labels | pod.service_account, action: drop}`.",
    },
    FieldDoc {
        path: "mode",
        kind: "standard | compliance",
        default: "standard",
        doc: "`compliance` refuses, with one error per field, any setting that could lose records silently or keep them out of the audit trail: no `audit.key_file`, a sink with a memory queue (`queue=memory`), a lossy transport (`syslog+udp`), a sink format that cannot carry the audit fields (CEF, and OTLP sinks' protobuf LogRecords). The exporter never samples and retries delivery without a time limit, so there is nothing else to refuse.",
    },
    FieldDoc {
        path: "metrics_listen",
        kind: "HOST:PORT",
        default: "off",
        doc: "Serve Prometheus metrics at `http://HOST:PORT/metrics` (docs/metrics.md). No authentication: bind loopback or a node-internal address. `--metrics-listen` sets it.",
    },
    FieldDoc {
        path: "sinks",
        kind: "list of URLs",
        default: "[]",
        doc: "Delivery with a queue per sink, retries and the error table of docs/sinks.md: `stdout`, `file:PATH`, `syslog+tcp://HOST:PORT`, `syslog+tls://HOST:PORT?ca=FILE[&cert=FILE&key=FILE&server_name=NAME]`, `syslog+udp://HOST:PORT[?max_datagram=BYTES]` (lossy; larger records are rejected and counted, default 2048), `elasticsearch://HOST:PORT?[tls=true&ca=FILE&]api_key_file=FILE|user=NAME&password_file=FILE[&namespace=NS]`, `splunk-hec://HOST:PORT?token_file=FILE[&tls=true&ca=FILE&index=NAME&ack=true]`, `loki://HOST:PORT[?tenant=ID&token_file=FILE&labels=NAME:PATH,...&encoding=protobuf|json&gzip=false]` (secrets also as `*_env=VAR`; see docs/sinks.md), `otlp+grpc://HOST:PORT` and `otlp+http://HOST:PORT` `[?encoding=protobuf|json&headers_file=FILE&gzip=false&tls=true&ca=FILE&cert=FILE&key=FILE]` (OTLP LogRecords; `format=` does not apply; `zstd=true` compresses OTLP/HTTP bodies with zstd instead of gzip, for collectors that accept it). Query parameters for all: `format=` (default cef for syslog, ecs otherwise), `queue=memory|disk`, `queue_dir=DIR` (required for disk). `--sink URL` adds one.",
    },
    FieldDoc {
        path: "capture.interfaces",
        kind: "list of globs",
        default: "[] (every interface)",
        doc: "Interface names to capture on. A pattern without wildcards must name an existing interface at start.",
    },
    FieldDoc {
        path: "capture.exclude_interfaces",
        kind: "list of globs",
        default: "[lo]",
        doc: "Interface names never to capture on; wins over `capture.interfaces`.",
    },
    FieldDoc {
        path: "capture.active_timeout",
        kind: "duration",
        default: "10s",
        doc: "A live connection gets a record at least this often. At least 1s.",
    },
    FieldDoc {
        path: "capture.idle_timeout",
        kind: "duration",
        default: "15s",
        doc: "A connection with no packet for this long is ended and removed from the kernel map. At least 1s.",
    },
    FieldDoc {
        path: "capture.drain_interval",
        kind: "duration",
        default: "1s",
        doc: "How often the kernel maps are read. Between 100ms and the active timeout.",
    },
    FieldDoc {
        path: "capture.attach_mode",
        kind: "auto | tcx | tc",
        default: "auto",
        doc: "TCX links (kernel >= 6.6) or legacy clsact filters; auto picks TCX when the kernel has it.",
    },
    FieldDoc {
        path: "capture.flow_map_entries",
        kind: "integer",
        default: "65536",
        doc: "Kernel flow map size. Each connection crossing N captured interfaces uses 2N entries. When full, packets of new flows are counted as lost (loss record `flow_map_full`).",
    },
    FieldDoc {
        path: "capture.ring_buffer_bytes",
        kind: "integer",
        default: "262144",
        doc: "New-flow ring buffer size; a power of two, at least 4096.",
    },
    FieldDoc {
        path: "capture.drop_map_entries",
        kind: "integer",
        default: "8192",
        doc: "Kernel drop map size (5-tuples with drops between two drains).",
    },
    FieldDoc {
        path: "capture.trace_drops",
        kind: "bool",
        default: "true",
        doc: "Trace kernel drops (tp_btf/kfree_skb) and join them to flows.",
    },
    FieldDoc {
        path: "capture.exclude_endpoints",
        kind: "list of ADDR:PORT/PROTO",
        default: "[]",
        doc: "Endpoints whose traffic is never captured, e.g. `10.0.0.5:4317/tcp`. The exporter adds its own: every network sink (its URL host resolved at start, UDP for `syslog+udp`, TCP otherwise) and the API server.",
    },
    FieldDoc {
        path: "enrich.manifests",
        kind: "path",
        default: "none",
        doc: "A directory of Kubernetes manifests (YAML/JSON, multi-document, `List` kinds, `kubectl get -A -o yaml` output) to resolve identities from: Pods, Namespaces, Nodes, Services, EndpointSlices, ReplicaSets, Jobs. Re-read when a file changes; objects that disappear count as deleted then.",
    },
    FieldDoc {
        path: "enrich.kubernetes",
        kind: "auto | on | off",
        default: "auto",
        doc: "Watch the API server for identities (in-cluster service account, else `$KUBECONFIG` or ~/.kube/config). `auto`: when such a configuration exists; `on`: required (exit 2 without one); `off`: never. Needs get/list/watch on pods, namespaces, nodes, services, endpointslices (discovery.k8s.io), replicasets (apps), jobs (batch); a missing permission is logged by name and the records say `identity_degraded`.",
    },
    FieldDoc {
        path: "enrich.deleted_grace",
        kind: "duration",
        default: "10m",
        doc: "How long the address of a deleted pod or service still resolves to it, marked `stale` with the deletion time.",
    },
    FieldDoc {
        path: "enrich.service_cidrs",
        kind: "list of CIDRs",
        default: "[]",
        doc: "The cluster's service ranges (not discoverable from the API); addresses in them are named `service-network`.",
    },
    FieldDoc {
        path: "enrich.networks",
        kind: "list of {name, cidrs}",
        default: "[]",
        doc: "Named networks, e.g. `{name: corp-vpn, cidrs: [10.50.0.0/16]}`. The most specific range wins; a configured name wins over a built-in one of equal prefix. Built-in: LOOPBACK, MULTICAST, CLOUD METADATA (169.254.169.254, fd00:ec2::254), LINK LOCAL, PRIVATE NETWORK (RFC 1918, 100.64/10, fc00::/7), pod-network (Node pod CIDRs), PUBLIC NETWORK (everything else).",
    },
    FieldDoc {
        path: "audit.key_file",
        kind: "path",
        default: "none (audit trail off)",
        doc: "Ed25519 signing key (32-byte raw seed, or PKCS#8 PEM/DER) for the checkpoints. Setting it turns the audit trail on (docs/compliance.md): every JSON record gets `flowscribe.audit` {chain, view, run, batch, seq}, each batch a seal record, and a signed checkpoint per format goes out every `checkpoint_interval`. CEF and OTLP protobuf records are not part of the trail.",
    },
    FieldDoc {
        path: "audit.key_name",
        kind: "string",
        default: "flowscribe",
        doc: "The key's name in signed checkpoints and in `flowscribe audit public-key` output.",
    },
    FieldDoc {
        path: "audit.state_dir",
        kind: "path",
        default: "/var/lib/flowscribe",
        doc: "Where the sequence-number state is persisted (atomically, before numbers are handed out), so a restart continues the chain and a crash shows as a gap record.",
    },
    FieldDoc {
        path: "audit.checkpoint_interval",
        kind: "duration",
        default: "60s",
        doc: "Signed checkpoint period, also when idle.",
    },
    FieldDoc {
        path: "audit.heartbeat_interval",
        kind: "duration",
        default: "30s",
        doc: "Heartbeat record period: clock state (adjtimex), interfaces attached, degraded conditions.",
    },
    FieldDoc {
        path: "audit.hash_suite",
        kind: "v1 | v2 | v3",
        default: "v3",
        doc: "How records, batches and checkpoints are hashed (docs/compliance.md, \"Hash suites\"). v3 (BLAKE3; each record's stable leaves hashed apart from its per-window ones, so a connection's repeated leaves are hashed once) seals and verifies fastest; v2 (BLAKE3, many records hashed side by side) and v1 (SHA-256, RFC 6962 Merkle tree) are what earlier versions wrote. Records and seals name their suite, so a chain may switch at a restart and `flowscribe verify` checks each batch in its own suite.",
    },
];

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub node_name: Option<String>,
    pub output: Option<String>,
    pub format: Option<String>,
    pub cluster_name: Option<String>,
    pub redact: Option<Vec<crate::redact::RawRule>>,
    pub mode: Option<String>,
    pub metrics_listen: Option<String>,
    pub sinks: Option<Vec<String>>,
    #[serde(default)]
    pub capture: RawCapture,
    #[serde(default)]
    pub enrich: RawEnrich,
    #[serde(default)]
    pub audit: RawAudit,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    pub key_file: Option<PathBuf>,
    pub key_name: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub checkpoint_interval: Option<String>,
    pub heartbeat_interval: Option<String>,
    pub hash_suite: Option<String>,
}

/// Validated `audit` settings (present when the trail is on).
#[derive(Debug, Clone)]
pub struct AuditSettings {
    pub key_file: PathBuf,
    pub key_name: String,
    pub state_dir: PathBuf,
    pub checkpoint_interval: Duration,
    pub heartbeat_interval: Duration,
    pub hash_suite: flowscribe_audit::Suite,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnrich {
    pub manifests: Option<PathBuf>,
    pub kubernetes: Option<String>,
    pub deleted_grace: Option<String>,
    pub service_cidrs: Option<Vec<String>>,
    pub networks: Option<Vec<RawNetwork>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawNetwork {
    pub name: String,
    pub cidrs: Vec<String>,
}

/// Whether to watch the API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubernetesMode {
    Auto,
    On,
    Off,
}

/// Validated `enrich` settings.
#[derive(Debug, Clone)]
pub struct EnrichSettings {
    pub manifests: Option<PathBuf>,
    pub kubernetes: KubernetesMode,
    pub index: IndexConfig,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCapture {
    pub interfaces: Option<Vec<String>>,
    pub exclude_interfaces: Option<Vec<String>>,
    pub active_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub drain_interval: Option<String>,
    pub attach_mode: Option<String>,
    pub flow_map_entries: Option<u64>,
    pub ring_buffer_bytes: Option<u64>,
    pub drop_map_entries: Option<u64>,
    pub trace_drops: Option<bool>,
    pub exclude_endpoints: Option<Vec<String>>,
}

/// The record format of the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The interim JSON line of docs/record.md.
    Minimal,
    Schema(Schema),
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "minimal" {
            return Ok(Format::Minimal);
        }
        s.parse::<Schema>().map(Format::Schema).map_err(|_| {
            let names: Vec<&str> = Schema::ALL.iter().map(|s| s.name()).collect();
            format!("{s:?} is not a format; use {} or minimal", names.join(", "))
        })
    }
}

/// Where records are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Stdout,
    File(PathBuf),
    None,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub node_name: String,
    pub output: Output,
    pub format: Format,
    pub cluster_name: Option<String>,
    /// Where the Prometheus endpoint listens, when on.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The audit trail, when on.
    pub audit: Option<AuditSettings>,
    pub redactor: crate::redact::Redactor,
    pub sinks: Vec<SinkSpec>,
    pub capture: CaptureConfig,
    pub drain_interval: Duration,
    pub enrich: EnrichSettings,
}

/// One configuration problem, with the path of the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

fn duration(
    problems: &mut Vec<ConfigProblem>,
    path: &str,
    raw: &Option<String>,
    default: Duration,
    min: Duration,
) -> Duration {
    let Some(s) = raw else { return default };
    match humantime::parse_duration(s) {
        Ok(d) if d >= min => d,
        Ok(_) => {
            problems.push(problem(
                path,
                format!(
                    "{s:?} is shorter than the minimum {}",
                    humantime::format_duration(min)
                ),
            ));
            default
        }
        Err(e) => {
            problems.push(problem(
                path,
                format!("{s:?} is not a duration ({e}); use e.g. 10s or 500ms"),
            ));
            default
        }
    }
}

fn problem(path: &str, message: String) -> ConfigProblem {
    ConfigProblem {
        path: path.to_string(),
        message,
    }
}

fn parse_output(s: &str) -> Result<Output, String> {
    if s == "stdout" {
        Ok(Output::Stdout)
    } else if s == "none" {
        Ok(Output::None)
    } else if let Some(p) = s.strip_prefix("file:") {
        if p.is_empty() {
            Err("file: needs a path, e.g. file:/var/log/flowscribe.jsonl".into())
        } else {
            Ok(Output::File(PathBuf::from(p)))
        }
    } else {
        Err(format!(
            "{s:?} is not an output; use stdout, file:PATH or none"
        ))
    }
}

/// Parse `ADDR:PORT/PROTO` (IPv6 as `[ADDR]:PORT/PROTO`).
pub fn parse_endpoint(s: &str) -> Result<(std::net::IpAddr, u16, u8), String> {
    let (addr, proto) = s.split_once('/').unwrap_or((s, "tcp"));
    let proto = match proto.to_ascii_lowercase().as_str() {
        "tcp" => 6,
        "udp" => 17,
        "sctp" => 132,
        other => return Err(format!("protocol {other:?} is not tcp, udp or sctp")),
    };
    let sa: SocketAddr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not ADDR:PORT (IPv6 as [ADDR]:PORT)"))?;
    Ok((sa.ip(), sa.port(), proto))
}

fn entries(problems: &mut Vec<ConfigProblem>, path: &str, raw: Option<u64>, default: u32) -> u32 {
    match raw {
        None => default,
        Some(n) if (1..=1 << 24).contains(&n) => n as u32,
        Some(n) => {
            problems.push(problem(path, format!("{n} is outside 1..=16777216")));
            default
        }
    }
}

impl RawConfig {
    /// Check every field; return all problems, not just the first.
    pub fn validate(&self, default_node: &str) -> Result<Config, Vec<ConfigProblem>> {
        let mut p = Vec::new();
        let c = &self.capture;
        let defaults = CaptureConfig::default();
        let node_name = self
            .node_name
            .clone()
            .unwrap_or_else(|| default_node.to_string());
        let output = match self.output.as_deref().map(parse_output) {
            None if self.sinks.as_ref().is_some_and(|s| !s.is_empty()) => Output::None,
            None => Output::Stdout,
            Some(Ok(o)) => o,
            Some(Err(e)) => {
                p.push(problem("output", e));
                Output::Stdout
            }
        };
        let format = match self.format.as_deref().map(str::parse::<Format>) {
            None => Format::Schema(Schema::Ecs),
            Some(Ok(f)) => f,
            Some(Err(e)) => {
                p.push(problem("format", e));
                Format::Schema(Schema::Ecs)
            }
        };
        let compliance = match self.mode.as_deref() {
            None | Some("standard") => false,
            Some("compliance") => true,
            Some(other) => {
                p.push(problem(
                    "mode",
                    format!("{other:?} is not a mode; use standard or compliance"),
                ));
                false
            }
        };
        let mut sinks = Vec::new();
        for (i, url) in self.sinks.iter().flatten().enumerate() {
            match parse_sink(url, &node_name) {
                Ok(s) => {
                    if compliance {
                        for m in compliance_problems(&s) {
                            p.push(problem(&format!("sinks[{i}]"), m));
                        }
                    }
                    sinks.push(s)
                }
                Err(e) => p.push(problem(&format!("sinks[{i}]"), e)),
            }
        }
        if compliance && self.audit.key_file.is_none() {
            p.push(problem(
                "audit.key_file",
                "compliance mode needs the audit trail: set a signing key".into(),
            ));
        }
        let include = c.interfaces.clone().unwrap_or_default();
        let exclude = c
            .exclude_interfaces
            .clone()
            .unwrap_or(defaults.exclude.clone());
        for (path, list) in [
            ("capture.interfaces", &include),
            ("capture.exclude_interfaces", &exclude),
        ] {
            for (i, pat) in list.iter().enumerate() {
                if let Err(e) = InterfaceFilter::new(std::slice::from_ref(pat), &[]) {
                    p.push(problem(&format!("{path}[{i}]"), e.to_string()));
                }
            }
        }
        let second = Duration::from_secs(1);
        let active = duration(
            &mut p,
            "capture.active_timeout",
            &c.active_timeout,
            defaults.active_timeout,
            second,
        );
        let idle = duration(
            &mut p,
            "capture.idle_timeout",
            &c.idle_timeout,
            defaults.idle_timeout,
            second,
        );
        let drain = duration(
            &mut p,
            "capture.drain_interval",
            &c.drain_interval,
            second,
            Duration::from_millis(100),
        );
        if drain > active {
            p.push(problem(
                "capture.drain_interval",
                format!(
                    "{} is longer than capture.active_timeout ({})",
                    humantime::format_duration(drain),
                    humantime::format_duration(active)
                ),
            ));
        }
        let attach_mode = match c.attach_mode.as_deref() {
            None | Some("auto") => AttachMode::Auto,
            Some("tcx") => AttachMode::Tcx,
            Some("tc") => AttachMode::Tc,
            Some(other) => {
                p.push(problem(
                    "capture.attach_mode",
                    format!("{other:?} is not auto, tcx or tc"),
                ));
                AttachMode::Auto
            }
        };
        let flow_map_entries = entries(
            &mut p,
            "capture.flow_map_entries",
            c.flow_map_entries,
            defaults.flow_map_entries,
        );
        let drop_map_entries = entries(
            &mut p,
            "capture.drop_map_entries",
            c.drop_map_entries,
            defaults.drop_map_entries,
        );
        let ring_bytes = match c.ring_buffer_bytes {
            None => defaults.ring_bytes,
            Some(n) if (4096..=1 << 30).contains(&n) && n.is_power_of_two() => n as u32,
            Some(n) => {
                p.push(problem(
                    "capture.ring_buffer_bytes",
                    format!("{n} is not a power of two between 4096 and 1073741824"),
                ));
                defaults.ring_bytes
            }
        };
        let mut excluded_endpoints = Vec::new();
        for (i, e) in c.exclude_endpoints.iter().flatten().enumerate() {
            match parse_endpoint(e) {
                Ok(ep) => excluded_endpoints.push(ep),
                Err(m) => p.push(problem(&format!("capture.exclude_endpoints[{i}]"), m)),
            }
        }
        let enrich = self.enrich.validate(&mut p);
        let metrics_listen = match self.metrics_listen.as_deref().map(str::parse) {
            None => None,
            Some(Ok(a)) => Some(a),
            Some(Err(_)) => {
                p.push(problem(
                    "metrics_listen",
                    format!(
                        "{:?} is not HOST:PORT with an IP address, e.g. 127.0.0.1:9464",
                        self.metrics_listen.as_deref().unwrap_or_default()
                    ),
                ));
                None
            }
        };
        let audit = self.audit.validate(&mut p);
        let redactor = match crate::redact::compile(self.redact.as_deref().unwrap_or_default()) {
            Ok(r) => r,
            Err(problems) => {
                for (path, message) in problems {
                    p.push(problem(&path, message));
                }
                crate::redact::Redactor::default()
            }
        };
        if !p.is_empty() {
            return Err(p);
        }
        Ok(Config {
            enrich,
            metrics_listen,
            audit,
            redactor,
            format,
            cluster_name: self.cluster_name.clone(),
            sinks,
            node_name,
            output,
            drain_interval: drain,
            capture: CaptureConfig {
                include,
                exclude,
                active_timeout: active,
                idle_timeout: idle,
                attach_mode,
                flow_map_entries,
                ring_bytes,
                drop_map_entries,
                trace_drops: c.trace_drops.unwrap_or(true),
                excluded_endpoints,
            },
        })
    }
}

fn cidrs(p: &mut Vec<ConfigProblem>, path: &str, raw: &[String]) -> Vec<ipnet::IpNet> {
    let mut out = Vec::new();
    for (i, c) in raw.iter().enumerate() {
        match c.parse::<ipnet::IpNet>() {
            Ok(n) => out.push(n),
            // A bare address is a /32 or /128.
            Err(_) => match c.parse::<std::net::IpAddr>() {
                Ok(a) => out.push(ipnet::IpNet::from(a)),
                Err(_) => p.push(problem(
                    &format!("{path}[{i}]"),
                    format!("{c:?} is not a CIDR (e.g. 10.0.0.0/8) or an address"),
                )),
            },
        }
    }
    out
}

/// Why a sink could lose records silently or stay outside the audit trail.
fn compliance_problems(s: &SinkSpec) -> Vec<String> {
    let mut out = Vec::new();
    if s.durability() != flowscribe_sinks::core::queue::Durability::Disk {
        out.push(
            "compliance mode: a memory queue loses what it holds on a crash; \
             add queue=disk&queue_dir=DIR"
                .to_string(),
        );
    }
    if s.scheme() == "syslog+udp" {
        out.push(
            "compliance mode: syslog over UDP drops without telling (RFC 5426); \
             use syslog+tcp or syslog+tls"
                .to_string(),
        );
    }
    if s.sends_otlp_log_records() {
        // Their protobuf LogRecords are not one of the trail's JSON views.
        out.push(
            "compliance mode: OTLP sinks send protobuf LogRecords, which do not carry the \
             audit fields yet; use an ecs, ocsf or otlp-json sink for the trail"
                .to_string(),
        );
    } else if crate::audit_trail::view_name(s.format).is_none() {
        out.push(format!(
            "compliance mode: {} records cannot carry the audit fields; \
             use format=ecs, ocsf or otlp-json",
            match s.format {
                Format::Minimal => "minimal",
                Format::Schema(sc) => sc.name(),
            }
        ));
    }
    out
}

impl RawAudit {
    fn validate(&self, p: &mut Vec<ConfigProblem>) -> Option<AuditSettings> {
        let checkpoint_interval = duration(
            p,
            "audit.checkpoint_interval",
            &self.checkpoint_interval,
            Duration::from_secs(60),
            Duration::from_secs(1),
        );
        let heartbeat_interval = duration(
            p,
            "audit.heartbeat_interval",
            &self.heartbeat_interval,
            Duration::from_secs(30),
            Duration::from_secs(1),
        );
        let hash_suite = match self.hash_suite.as_deref() {
            None | Some("v3") => flowscribe_audit::Suite::V3,
            Some("v2") => flowscribe_audit::Suite::V2,
            Some("v1") => flowscribe_audit::Suite::V1,
            Some(other) => {
                p.push(problem(
                    "audit.hash_suite",
                    format!("{other:?} is not one of v1, v2, v3"),
                ));
                flowscribe_audit::Suite::V3
            }
        };
        let key_name = self
            .key_name
            .clone()
            .unwrap_or_else(|| "flowscribe".to_string());
        // A note key name: printable, no spaces or '+' (C2SP signed-note).
        if key_name.is_empty() || key_name.chars().any(|c| c.is_whitespace() || c == '+') {
            p.push(problem(
                "audit.key_name",
                format!("{key_name:?} must be non-empty, without spaces or '+'"),
            ));
        }
        let Some(key_file) = self.key_file.clone() else {
            if self.key_name.is_some() || self.state_dir.is_some() {
                p.push(problem(
                    "audit.key_file",
                    "required when other audit settings are given (it turns the trail on)".into(),
                ));
            }
            return None;
        };
        Some(AuditSettings {
            key_file,
            key_name,
            state_dir: self
                .state_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("/var/lib/flowscribe")),
            checkpoint_interval,
            heartbeat_interval,
            hash_suite,
        })
    }
}

impl RawEnrich {
    fn validate(&self, p: &mut Vec<ConfigProblem>) -> EnrichSettings {
        let kubernetes = match self.kubernetes.as_deref() {
            None | Some("auto") => KubernetesMode::Auto,
            Some("on") => KubernetesMode::On,
            Some("off") => KubernetesMode::Off,
            Some(other) => {
                p.push(problem(
                    "enrich.kubernetes",
                    format!("{other:?} is not auto, on or off"),
                ));
                KubernetesMode::Auto
            }
        };
        let defaults = IndexConfig::default();
        let deleted_grace = duration(
            p,
            "enrich.deleted_grace",
            &self.deleted_grace,
            defaults.deleted_grace,
            Duration::ZERO,
        );
        let service_cidrs = cidrs(
            p,
            "enrich.service_cidrs",
            self.service_cidrs.as_deref().unwrap_or_default(),
        );
        let mut networks = Vec::new();
        for (i, n) in self.networks.iter().flatten().enumerate() {
            if n.name.trim().is_empty() {
                p.push(problem(
                    &format!("enrich.networks[{i}].name"),
                    "must not be empty".into(),
                ));
            }
            networks.push(NamedNetwork {
                name: n.name.clone(),
                cidrs: cidrs(p, &format!("enrich.networks[{i}].cidrs"), &n.cidrs),
            });
        }
        EnrichSettings {
            manifests: self.manifests.clone(),
            kubernetes,
            index: IndexConfig {
                deleted_grace,
                networks,
                service_cidrs,
            },
        }
    }
}

/// Render docs/config.md from [`FIELDS`].
pub fn reference_markdown() -> String {
    let mut s = String::from(
        "# Configuration reference\n\n\
         <!-- Generated from exporter/flowscribe/src/config.rs (FIELDS) by\n     \
         `flowscribe config-reference > docs/config.md`; a test fails when this page is stale. -->\n\n\
         flowscribe reads one YAML file (`--config FILE`). Unknown fields are errors. Every problem is\n\
         listed with its path and the exit code is 2. Command-line flags override the file.\n\n\
         | field | type | default | meaning |\n| --- | --- | --- | --- |\n",
    );
    for f in FIELDS {
        s.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            f.path, f.kind, f.default, f.doc
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> RawConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = parse("{}").validate("n1").unwrap();
        assert_eq!(c.node_name, "n1");
        assert_eq!(c.output, Output::Stdout);
        assert_eq!(c.capture.exclude, vec!["lo".to_string()]);
        assert_eq!(c.capture.active_timeout, Duration::from_secs(10));
        assert_eq!(c.capture.idle_timeout, Duration::from_secs(15));
        assert_eq!(c.drain_interval, Duration::from_secs(1));
    }

    #[test]
    fn every_problem_is_listed_with_its_path() {
        let raw = parse(
            "output: kafka://x\nformat: xml\nsinks: ['kafka://broker:9092']\ncapture:\n  interfaces: ['veth[']\n  active_timeout: 10 parsecs\n  idle_timeout: 10ms\n  attach_mode: xdp\n  ring_buffer_bytes: 5000\n  flow_map_entries: 0\n  exclude_endpoints: ['10.0.0.1:80/icmp', 'nope']\nenrich:\n  kubernetes: maybe\n  deleted_grace: soon\n  service_cidrs: [10.96.0.0/12, 10.300.0.0/16]\n  networks: [{name: '', cidrs: [corp]}]\n",
        );
        let paths: Vec<String> = raw
            .validate("n")
            .unwrap_err()
            .into_iter()
            .map(|p| p.path)
            .collect();
        assert_eq!(
            paths,
            vec![
                "output",
                "format",
                "sinks[0]",
                "capture.interfaces[0]",
                "capture.active_timeout",
                "capture.idle_timeout",
                "capture.attach_mode",
                "capture.flow_map_entries",
                "capture.ring_buffer_bytes",
                "capture.exclude_endpoints[0]",
                "capture.exclude_endpoints[1]",
                "enrich.kubernetes",
                "enrich.deleted_grace",
                "enrich.service_cidrs[1]",
                "enrich.networks[0].name",
                "enrich.networks[0].cidrs[0]",
            ]
        );
    }

    #[test]
    fn compliance_mode_refuses_every_silent_loss_with_its_path() {
        let raw = parse(
            "mode: compliance\nsinks:\n  - syslog+udp://10.0.0.1:514\n  - 'syslog+tcp://10.0.0.1:601?queue=disk&queue_dir=/q'\n  - 'file:/var/log/f.jsonl?queue=disk&queue_dir=/q2'\n  - 'file:/var/log/g.jsonl'\n",
        );
        let problems = raw.validate("n").unwrap_err();
        let got: Vec<(String, bool)> = problems
            .iter()
            .map(|p| (p.path.clone(), p.message.contains("compliance")))
            .collect();
        let want: Vec<(String, bool)> = [
            "sinks[0]", // memory queue
            "sinks[0]", // UDP
            "sinks[0]", // CEF (syslog's default) cannot carry the fields
            "sinks[1]", // the same
            "sinks[3]", // memory queue
            "audit.key_file",
        ]
        .iter()
        .map(|p| (p.to_string(), true))
        .collect();
        assert_eq!(got, want, "{problems:#?}");
        // The same sinks are fine in standard mode (with a key, a clean bill).
        let ok = parse(
            "mode: compliance\naudit:\n  key_file: /k\nsinks:\n  - 'file:/var/log/f.jsonl?queue=disk&queue_dir=/q2'\n  - 'syslog+tls://10.0.0.1:6514?format=ecs&queue=disk&queue_dir=/q'\n",
        );
        let c = ok.validate("n").unwrap();
        assert_eq!(c.audit.unwrap().key_name, "flowscribe");
        assert!(parse("mode: lax\n").validate("n").unwrap_err()[0].path == "mode");
    }

    #[test]
    fn audit_hash_suite_defaults_to_v3_and_names_a_bad_value() {
        let suite = |yaml: &str| {
            parse(yaml)
                .validate("n")
                .map(|c| c.audit.unwrap().hash_suite)
        };
        assert_eq!(
            suite("audit:\n  key_file: /k\n").unwrap(),
            flowscribe_audit::Suite::V3
        );
        for (name, want) in [
            ("v1", flowscribe_audit::Suite::V1),
            ("v2", flowscribe_audit::Suite::V2),
            ("v3", flowscribe_audit::Suite::V3),
        ] {
            let yaml = format!("audit:\n  key_file: /k\n  hash_suite: {name}\n");
            assert_eq!(suite(&yaml).unwrap(), want);
        }
        let problems = suite("audit:\n  key_file: /k\n  hash_suite: sha1\n").unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert_eq!(problems[0].path, "audit.hash_suite");
        assert!(problems[0].message.contains("\"sha1\""), "{problems:#?}");
    }

    #[test]
    fn compliance_mode_refuses_otlp_sinks_outside_the_trail() {
        let raw = parse(
            "mode: compliance\naudit:\n  key_file: /k\nsinks:\n  - 'otlp+grpc://10.0.0.1:4317?queue=disk&queue_dir=/q'\n",
        );
        let problems = raw.validate("n").unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert_eq!(problems[0].path, "sinks[0]");
        assert!(problems[0].message.contains("OTLP sinks"), "{problems:#?}");
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_name() {
        let err =
            serde_yaml::from_str::<RawConfig>("capture:\n  interfacez: [eth0]\n").unwrap_err();
        assert!(err.to_string().contains("interfacez"), "{err}");
    }

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            parse_endpoint("10.0.0.5:4317/tcp").unwrap(),
            ("10.0.0.5".parse().unwrap(), 4317, 6)
        );
        assert_eq!(
            parse_endpoint("[fd00::1]:514/udp").unwrap(),
            ("fd00::1".parse().unwrap(), 514, 17)
        );
        assert!(parse_endpoint("10.0.0.5/tcp").is_err());
    }

    /// Leaf paths of a serialized config, in field order.
    fn leaf_paths(prefix: &str, v: &serde_yaml::Value, out: &mut Vec<String>) {
        match v {
            serde_yaml::Value::Mapping(m) => {
                for (k, child) in m {
                    let key = k.as_str().unwrap();
                    let path = if prefix.is_empty() {
                        key.to_string()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    leaf_paths(&path, child, out);
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }

    #[test]
    fn every_raw_field_is_documented_and_nothing_else() {
        // Serializing the default config lists every field the parser knows
        // (None fields serialize as null), so a field added without docs, or
        // docs for a field that does not exist, fails here.
        let mut fields = Vec::new();
        leaf_paths(
            "",
            &serde_yaml::to_value(RawConfig::default()).unwrap(),
            &mut fields,
        );
        let documented: Vec<&str> = FIELDS.iter().map(|f| f.path).collect();
        assert_eq!(fields, documented);
    }

    #[test]
    fn docs_config_md_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/config.md");
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        if std::env::var_os("FLOWSCRIBE_UPDATE_DOCS").is_some() {
            std::fs::write(path, reference_markdown()).unwrap();
            return;
        }
        assert_eq!(
            on_disk,
            reference_markdown(),
            "docs/config.md is stale: run FLOWSCRIBE_UPDATE_DOCS=1 cargo test -p flowscribe"
        );
    }
}
