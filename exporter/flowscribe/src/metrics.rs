//! The opt-in Prometheus endpoint (`--metrics-listen ADDR`): `GET /metrics`
//! in the text exposition format, for the SRE who wants to see the
//! exporter's own health next to everything else they scrape.
//!
//! What it shows: capture's kernel counters (every loss source included),
//! the records the pipeline produced, the identity sources' state, and per
//! sink what stage ⑤ counts (sent, acknowledged, retried, rejected by
//! reason, queue depth and age). The run loop refreshes the pipeline part
//! after every drain; sink numbers are read live from the drivers. The
//! metric names are listed in docs/metrics.md (a test keeps it complete).
//!
//! The server is deliberately tiny (one request per connection, no
//! keep-alive, 8 KiB request limit): it only has to answer a scraper.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use flowscribe_capture::abi::stat;
use flowscribe_sinks::core::driver::DriverHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Names of capture's per-CPU kernel counters, by index (`enum fs_stat`).
const KERNEL_COUNTERS: &[(u32, &str)] = &[
    (stat::RING_RESERVE_FAILED, "ring_reserve_failed"),
    (stat::FLOW_MAP_FULL, "flow_map_full_packets"),
    (stat::FLOW_LOST_BYTES, "flow_lost_bytes"),
    (stat::PARSE_TRUNCATED, "parse_truncated"),
    (stat::PARSE_EXT_LIMIT, "parse_ext_limit"),
    (stat::NON_IP, "non_ip"),
    (stat::EXCLUDED, "excluded"),
    (stat::DROP_MAP_FULL, "drop_map_full"),
    (stat::DROPS_SEEN, "drops_seen"),
    (stat::FLOW_UPDATE_FAILED, "flow_update_failed_packets"),
];

/// What the run loop reports after each drain.
#[derive(Debug, Clone, Default)]
pub struct PipelineState {
    /// Capture's kernel counters (cumulative, summed over CPUs).
    pub kernel: Vec<u64>,
    pub new_flow_events: u64,
    /// Kernel drop packets of connections never seen on a captured
    /// interface (summarised in-band once a minute as `drop_unmatched`).
    pub drops_unmatched: u64,
    pub interfaces_attached: u64,
    /// The per-CPU flow cache (capture's `CaptureCounters` of that name).
    pub cache_flush_incomplete: u64,
    pub cache_stranded_packets: u64,
    pub cache_folded_packets: u64,
    pub flow_records: u64,
    pub loss_records: u64,
    pub identity_degraded: bool,
    pub malformed_objects: u64,
    pub pods: u64,
}

/// Shared between the run loop (writer) and the endpoint (reader).
#[derive(Debug)]
pub struct Metrics {
    pipeline: Mutex<PipelineState>,
    sinks: Vec<DriverHandle>,
}

impl Metrics {
    pub fn new(sinks: Vec<DriverHandle>) -> Arc<Metrics> {
        Arc::new(Metrics {
            pipeline: Mutex::new(PipelineState::default()),
            sinks,
        })
    }

    pub fn update(&self, f: impl FnOnce(&mut PipelineState)) {
        let mut p = self.pipeline.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut p);
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let p = self
            .pipeline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            name.to_string()
        };
        let name = family(
            "flowscribe_capture_kernel_total",
            "counter",
            "capture's kernel counters by name (losses, parse failures, exclusions, drops seen)",
        );
        let mut lines = String::new();
        for (i, counter) in KERNEL_COUNTERS {
            let v = p.kernel.get(*i as usize).copied().unwrap_or(0);
            let _ = writeln!(lines, "{name}{{counter=\"{counter}\"}} {v}");
        }
        let scalars: [(&str, &str, &str, u64); 11] = [
            (
                "flowscribe_capture_new_flow_events_total",
                "counter",
                "new-flow events read from the ring buffer",
                p.new_flow_events,
            ),
            (
                "flowscribe_capture_drops_unmatched_packets_total",
                "counter",
                "kernel drops of connections never seen on a captured interface",
                p.drops_unmatched,
            ),
            (
                "flowscribe_capture_interfaces_attached",
                "gauge",
                "interfaces the programs are attached to",
                p.interfaces_attached,
            ),
            (
                "flowscribe_capture_cache_flush_incomplete_total",
                "counter",
                "drains before which some CPU's flow cache could not be flushed completely (counts reach the flow map later)",
                p.cache_flush_incomplete,
            ),
            (
                "flowscribe_capture_cache_stranded_packets",
                "gauge",
                "packets pending in the flow caches of offline CPUs at the last drain",
                p.cache_stranded_packets,
            ),
            (
                "flowscribe_capture_cache_folded_packets_total",
                "counter",
                "packets still pending in a flow cache at shutdown, folded into the flow map by userspace",
                p.cache_folded_packets,
            ),
            (
                "flowscribe_flow_records_total",
                "counter",
                "flow records produced",
                p.flow_records,
            ),
            (
                "flowscribe_loss_records_total",
                "counter",
                "loss records produced",
                p.loss_records,
            ),
            (
                "flowscribe_identity_degraded",
                "gauge",
                "1 while an identity source is incomplete (records say identity_degraded)",
                u64::from(p.identity_degraded),
            ),
            (
                "flowscribe_identity_malformed_objects_total",
                "counter",
                "Kubernetes objects and policies skipped as malformed",
                p.malformed_objects,
            ),
            (
                "flowscribe_identity_pods",
                "gauge",
                "pods in the identity index",
                p.pods,
            ),
        ];
        out.push_str(&lines);
        for (name, kind, help, v) in scalars {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
        // Sinks: one family per metric name, one sample per sink (and reason).
        let snaps: Vec<_> = self.sinks.iter().map(DriverHandle::snapshot).collect();
        let mut names: Vec<&'static str> = Vec::new();
        for s in &snaps {
            for (n, _, _) in s.metric_samples() {
                if !names.contains(&n) {
                    names.push(n);
                }
            }
        }
        for n in names {
            let kind = if n.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(out, "# TYPE {n} {kind}");
            for s in &snaps {
                for (m, reason, v) in s.metric_samples() {
                    if m != n {
                        continue;
                    }
                    let sink = escape(&s.sink);
                    match reason {
                        Some(r) => {
                            let _ = writeln!(out, "{n}{{sink=\"{sink}\",reason=\"{r}\"}} {v}");
                        }
                        None => {
                            let _ = writeln!(out, "{n}{{sink=\"{sink}\"}} {v}");
                        }
                    }
                }
            }
        }
        out
    }
}

/// A label value as the exposition format wants it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Serve `GET /metrics` on `listener` until the runtime stops.
pub async fn serve(listener: std::net::TcpListener, metrics: Arc<Metrics>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "metrics endpoint failed to start");
            return;
        }
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let _ = answer(stream, &metrics).await;
        });
    }
}

async fn answer(mut stream: tokio::net::TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() > 8192 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, body) = match (method, path.split('?').next().unwrap_or("")) {
        ("GET", "/metrics") => ("200 OK", metrics.render()),
        ("GET", _) => ("404 Not Found", "only /metrics is served\n".to_string()),
        _ => ("405 Method Not Allowed", "only GET\n".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Bind the endpoint's address now, so a bad address is a start-up error.
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_every_family_typed_and_the_documented_names() {
        let m = Metrics::new(Vec::new());
        m.update(|p| {
            p.kernel = vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
            p.flow_records = 42;
            p.identity_degraded = true;
            p.cache_stranded_packets = 7;
        });
        let text = m.render();
        assert!(text.contains("flowscribe_capture_kernel_total{counter=\"parse_ext_limit\"} 5\n"));
        assert!(text.contains(
            "flowscribe_capture_kernel_total{counter=\"flow_update_failed_packets\"} 10\n"
        ));
        assert!(text.contains("\nflowscribe_flow_records_total 42\n"));
        assert!(text.contains("\nflowscribe_identity_degraded 1\n"));
        assert!(text.contains("\nflowscribe_capture_cache_stranded_packets 7\n"));
        // Every sample's family is declared before it.
        let mut declared = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.push(rest.split(' ').next().unwrap().to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(declared.iter().any(|d| d == name), "{name} undeclared");
            }
        }
        // docs/metrics.md names every pipeline family (the sinks' are
        // generated into docs/sinks.md by their crate).
        let doc = include_str!("../../../docs/metrics.md");
        for name in declared {
            assert!(
                doc.contains(&format!("`{name}`")),
                "docs/metrics.md lacks `{name}`"
            );
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
