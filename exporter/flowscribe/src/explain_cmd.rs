//! `flowscribe explain`: stage ③ on demand, for people and scripts. "Can
//! pod x/a reach pod y/b on 80/TCP, and which policy and rule decide it?"
//!
//! It answers from a manifests directory (the same loader and the same
//! identity index as `flowscribe run`, so a pod resolves exactly as it
//! would for a captured flow), builds the flow the question describes, and
//! runs the same pure `explain()`. No traffic is sent; the observed side of
//! the trace is therefore always `unknown`.
//!
//! One question from flags prints a readable explanation (or one JSON
//! object with `--output json`); `--batch FILE` (or `-`) reads JSON lines
//! `{"from","to","port","protocol"}` and writes one JSON line per line read,
//! in order: the answer, or `{"error": ...}` for a question that cannot be
//! answered (the others are still answered; the exit code is then 1).

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::SystemTime;

use clap::{Args, ValueEnum};
use flowscribe_enrich::manifests;
use flowscribe_enrich::objects::{Kind, Object};
use flowscribe_enrich::{IdentityIndex, IndexConfig, enrich_batch};
use flowscribe_model::{
    DirectionCounters, EnrichedFlow, Flow, FlowKey, FlowState, HookDirection, InterfaceRef,
    Observed, Orientation, PolicyHit, PolicyTrace, SideVerdict,
};
use flowscribe_normalize::minimal;
use flowscribe_policy::PolicyIndex;
use serde_json::{Value, json};

/// Flags of `flowscribe explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Directory of YAML/JSON manifests: pods, namespaces, services and the
    /// policies (the output of `kubectl get -A -o yaml` works).
    #[arg(long, value_name = "DIR")]
    pub manifests: PathBuf,
    /// Source: NAMESPACE/POD or an IP address.
    #[arg(long, value_name = "NS/POD|IP", required_unless_present = "batch")]
    pub from: Option<String>,
    /// Destination: NAMESPACE/POD or an IP address.
    #[arg(long, value_name = "NS/POD|IP", required_unless_present = "batch")]
    pub to: Option<String>,
    /// Destination port (0 for ICMP).
    #[arg(long, required_unless_present = "batch")]
    pub port: Option<u16>,
    /// TCP, UDP, SCTP, ICMP or a protocol number.
    #[arg(long, default_value = "TCP")]
    pub protocol: String,
    /// text (readable) or json (one object).
    #[arg(long, value_enum, default_value_t = OutputKind::Text)]
    pub output: OutputKind,
    /// Read questions as JSON lines from FILE (`-` for stdin); answers are
    /// JSON lines, one per question, in order.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["from", "to", "port"])]
    pub batch: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputKind {
    Text,
    Json,
}

/// One question.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub from: String,
    pub to: String,
    pub port: u16,
    pub protocol: String,
}

/// How `explain` ended.
#[derive(Debug)]
pub enum ExplainError {
    /// The question or the flags are wrong (exit 2).
    Usage(String),
    /// Some batch questions could not be answered (exit 1); each got an
    /// error line.
    Unanswered(usize),
    /// Reading input or writing output failed (exit 1).
    Io(std::io::Error),
}

impl From<std::io::Error> for ExplainError {
    fn from(e: std::io::Error) -> Self {
        ExplainError::Io(e)
    }
}

/// Run `flowscribe explain`.
pub fn run(args: &ExplainArgs) -> Result<(), ExplainError> {
    let world = World::load(&args.manifests)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if let Some(batch) = &args.batch {
        let reader: Box<dyn BufRead> = if batch == "-" {
            Box::new(std::io::stdin().lock())
        } else {
            let file = std::fs::File::open(batch)
                .map_err(|e| ExplainError::Usage(format!("--batch {batch}: {e}")))?;
            Box::new(std::io::BufReader::new(file))
        };
        let mut failed = 0;
        for (n, line) in reader.lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let answer = parse_query(&line)
                .map_err(|e| format!("line {}: {e}", n + 1))
                .and_then(|q| world.answer(&q).map(|a| a.to_json(&q)));
            let value = answer.unwrap_or_else(|e| {
                failed += 1;
                json!({ "error": e })
            });
            serde_json::to_writer(&mut out, &value).map_err(std::io::Error::from)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        return if failed == 0 {
            Ok(())
        } else {
            Err(ExplainError::Unanswered(failed))
        };
    }
    let query = Query {
        from: args.from.clone().unwrap_or_default(),
        to: args.to.clone().unwrap_or_default(),
        port: args.port.unwrap_or_default(),
        protocol: args.protocol.clone(),
    };
    let answer = world.answer(&query).map_err(ExplainError::Usage)?;
    match args.output {
        OutputKind::Json => {
            serde_json::to_writer_pretty(&mut out, &answer.to_json(&query))
                .map_err(std::io::Error::from)?;
            out.write_all(b"\n")?;
        }
        OutputKind::Text => out.write_all(answer.to_text(&query).as_bytes())?,
    }
    Ok(())
}

fn parse_query(line: &str) -> Result<Query, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let text = |k: &str| -> Result<String, String> {
        v.get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("{k:?} must be a string (NAMESPACE/POD or an IP address)"))
    };
    let port = match v.get("port") {
        None => 0,
        Some(p) => p
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| format!("\"port\" must be 0..65535, not {p}"))?,
    };
    let protocol = match v.get("protocol") {
        None => "TCP".to_string(),
        Some(p) => p
            .as_str()
            .ok_or_else(|| format!("\"protocol\" must be a string, not {p}"))?
            .to_string(),
    };
    Ok(Query {
        from: text("from")?,
        to: text("to")?,
        port,
        protocol,
    })
}

/// IANA number of a protocol name or number.
fn protocol_number(p: &str) -> Result<u8, String> {
    match p.to_ascii_uppercase().as_str() {
        "TCP" => Ok(6),
        "UDP" => Ok(17),
        "SCTP" => Ok(132),
        "ICMP" => Ok(1),
        "ICMPV6" | "IPV6-ICMP" => Ok(58),
        other => other
            .parse::<u8>()
            .map_err(|_| format!("unknown protocol {p:?}; use TCP, UDP, SCTP, ICMP or a number")),
    }
}

/// What the manifests say: identities and policies.
struct World {
    index: IdentityIndex,
    policies: PolicyIndex,
    /// NAMESPACE/POD -> the pod's addresses.
    pods: HashMap<String, Vec<IpAddr>>,
    at: SystemTime,
}

impl World {
    fn load(dir: &std::path::Path) -> Result<World, ExplainError> {
        let loaded = manifests::load_dir(dir)
            .map_err(|e| ExplainError::Usage(format!("--manifests {}: {e}", dir.display())))?;
        for p in &loaded.problems {
            eprintln!("flowscribe: skipped {}: {}", p.location, p.problem);
        }
        let (policies, problems) = PolicyIndex::from_objects(&loaded.others);
        for p in &problems {
            eprintln!("flowscribe: invalid policy (flows it may select are flagged): {p}");
        }
        let at = SystemTime::now();
        let mut pods = HashMap::new();
        let mut by_kind: Vec<(Kind, Vec<Object>)> =
            Kind::ALL.iter().map(|k| (*k, Vec::new())).collect();
        for o in loaded.objects {
            if let Object::Pod(p) = &o {
                pods.insert(
                    format!("{}/{}", p.meta.namespace, p.meta.name),
                    p.ips.clone(),
                );
            }
            if let Some((_, list)) = by_kind.iter_mut().find(|(k, _)| *k == o.kind()) {
                list.push(o);
            }
        }
        let mut index = IdentityIndex::new(IndexConfig::default());
        for (kind, objects) in by_kind {
            index.replace_kind(kind, objects, at);
        }
        Ok(World {
            index,
            policies,
            pods,
            at,
        })
    }

    /// The addresses `who` (NAMESPACE/POD or an IP) stands for.
    fn addresses(&self, who: &str) -> Result<Vec<IpAddr>, String> {
        if let Ok(ip) = who.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        if !who.contains('/') {
            return Err(format!(
                "{who:?} is neither NAMESPACE/POD nor an IP address"
            ));
        }
        match self.pods.get(who) {
            None => Err(format!("no pod {who} in the manifests")),
            Some(ips) if ips.is_empty() => Err(format!(
                "pod {who} has no address in the manifests (status.podIPs); \
                 give its IP address instead"
            )),
            Some(ips) => Ok(ips.clone()),
        }
    }

    fn answer(&self, q: &Query) -> Result<Answer, String> {
        let protocol = protocol_number(&q.protocol)?;
        let (from, to) = (self.addresses(&q.from)?, self.addresses(&q.to)?);
        // The first pair of one family (a dual-stack pod has both).
        let (src, dst) = from
            .iter()
            .find_map(|s| {
                to.iter()
                    .find(|d| d.is_ipv4() == s.is_ipv4())
                    .map(|d| (*s, *d))
            })
            .ok_or_else(|| format!("{} and {} share no address family", q.from, q.to))?;
        let flow = question_flow(src, dst, q.port, protocol, self.at);
        let enriched = enrich_batch(&self.index, vec![flow], false)
            .pop()
            .ok_or("enrichment returned no flow")?;
        let trace = flowscribe_policy::explain(&self.policies, &enriched, Observed::Unknown);
        Ok(Answer { enriched, trace })
    }
}

/// The flow a question describes: one packet's worth of identity, no
/// counters (nothing was captured).
fn question_flow(src: IpAddr, dst: IpAddr, port: u16, protocol: u8, at: SystemTime) -> Flow {
    let interface = InterfaceRef {
        ifindex: 0,
        name: "explain".into(),
    };
    Flow {
        key: FlowKey {
            src_addr: src,
            dst_addr: dst,
            src_port: 0,
            dst_port: port,
            protocol,
        },
        interface: interface.clone(),
        initiator_hook: HookDirection::Ingress,
        interfaces: vec![interface],
        orientation: Orientation::FirstPacket,
        window_start: at,
        window_end: at,
        first_packet: at,
        last_packet: at,
        forward: DirectionCounters::default(),
        reverse: DirectionCounters::default(),
        state: FlowState::Started,
        end_reason: None,
        drops: None,
    }
}

struct Answer {
    enriched: EnrichedFlow,
    trace: PolicyTrace,
}

fn hit_json(h: &PolicyHit) -> Value {
    let p = &h.policy;
    json!({
        "tier": &*p.tier,
        "kind": p.kind.as_str(),
        "api_version": p.kind.api_version(),
        "namespace": p.namespace.as_deref(),
        "name": &*p.name,
        "uid": &*p.uid,
        "resource_version": &*p.resource_version,
        "generation": p.generation,
        "rule_index": h.rule_index,
        "rule_name": h.rule_name.as_deref(),
        "action": h.action.as_str(),
    })
}

fn side_json(s: &SideVerdict) -> Value {
    json!({
        "direction": s.direction.as_str(),
        "verdict": s.verdict.as_str(),
        "reason": s.reason.as_str(),
        "hits": s.hits.iter().map(hit_json).collect::<Vec<_>>(),
    })
}

/// `x/a (10.0.0.1)` or just the address.
fn name_of(who: &str, addr: IpAddr) -> String {
    if who.parse::<IpAddr>().is_ok() {
        who.to_string()
    } else {
        format!("{who} ({addr})")
    }
}

fn side_text(s: &SideVerdict, subject: &str) -> String {
    let mut t = format!(
        "  {} of {subject}: {} ({})\n",
        s.direction.as_str(),
        s.verdict.as_str(),
        s.reason.as_str()
    );
    if s.hits.is_empty() {
        t.push_str("    no policy selects it for this direction\n");
    }
    for h in s.hits.iter() {
        let p = &h.policy;
        let name = match &p.namespace {
            Some(ns) => format!("{ns}/{}", p.name),
            None => p.name.to_string(),
        };
        let rule = match (h.rule_index, &h.rule_name) {
            (Some(i), Some(n)) => format!("rule {i} ({n}) matched"),
            (Some(i), None) => format!("rule {i} matched"),
            (None, _) => "no rule matched".to_string(),
        };
        t.push_str(&format!(
            "    {} {name} (tier {}): {rule} -> {}\n",
            p.kind.as_str(),
            p.tier,
            h.action.as_str()
        ));
    }
    t
}

impl Answer {
    fn to_json(&self, q: &Query) -> Value {
        let t = &self.trace;
        let key = &self.enriched.flow.key;
        json!({
            "from": q.from,
            "to": q.to,
            "port": q.port,
            "protocol": flowscribe_model::protocol_name(key.protocol),
            "source_address": key.src_addr.to_string(),
            "destination_address": key.dst_addr.to_string(),
            "source": minimal::endpoint(&self.enriched.source),
            "destination": minimal::endpoint(&self.enriched.destination),
            "verdict": t.enforced.verdict.as_str(),
            "egress": side_json(&t.enforced.egress),
            "ingress": side_json(&t.enforced.ingress),
            "pending_verdict": t.pending.as_ref().map(|p| p.verdict.as_str()),
            "would_change": t.would_change(),
            "pending": t.pending.as_ref().map(|p| json!({
                "egress": side_json(&p.egress),
                "ingress": side_json(&p.ingress),
            })),
            "invalid_policies": t.invalid_policies.iter().map(|p| json!({
                "kind": p.kind.as_str(),
                "namespace": p.namespace.as_deref(),
                "name": &*p.name,
            })).collect::<Vec<_>>(),
        })
    }

    fn to_text(&self, q: &Query) -> String {
        let t = &self.trace;
        let key = &self.enriched.flow.key;
        let (from, to) = (name_of(&q.from, key.src_addr), name_of(&q.to, key.dst_addr));
        let mut s = format!(
            "{from} -> {to} port {}/{}: {}\n",
            q.port,
            flowscribe_model::protocol_name(key.protocol).to_ascii_uppercase(),
            t.enforced.verdict.as_str().to_ascii_uppercase()
        );
        s.push_str(&side_text(&t.enforced.egress, &q.from));
        s.push_str(&side_text(&t.enforced.ingress, &q.to));
        match &t.pending {
            None => s.push_str("staged policies: none apply\n"),
            Some(p) => {
                s.push_str(&format!(
                    "staged policies applied as enforced: {}{}\n",
                    p.verdict.as_str().to_ascii_uppercase(),
                    if t.would_change() {
                        " (would change the verdict)"
                    } else {
                        " (no change)"
                    }
                ));
                s.push_str(&side_text(&p.egress, &q.from));
                s.push_str(&side_text(&p.ingress, &q.to));
            }
        }
        for p in &t.invalid_policies {
            s.push_str(&format!(
                "warning: invalid {} {}{} may select this flow; the verdict may be wrong\n",
                p.kind.as_str(),
                p.namespace
                    .as_deref()
                    .map(|n| format!("{n}/"))
                    .unwrap_or_default(),
                p.name
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_lines_parse_with_defaults_and_name_their_problem() {
        let q = parse_query(r#"{"from":"x/a","to":"10.0.0.9","port":80}"#).unwrap();
        assert_eq!(
            q,
            Query {
                from: "x/a".into(),
                to: "10.0.0.9".into(),
                port: 80,
                protocol: "TCP".into()
            }
        );
        assert!(
            parse_query(r#"{"from":"x/a","to":"y/b","port":70000}"#)
                .unwrap_err()
                .contains("port")
        );
        assert!(
            parse_query(r#"{"to":"y/b"}"#)
                .unwrap_err()
                .contains("\"from\"")
        );
        assert!(parse_query("nope").unwrap_err().contains("not JSON"));
        assert_eq!(protocol_number("sctp"), Ok(132));
        assert!(
            protocol_number("QUIC")
                .unwrap_err()
                .contains("unknown protocol")
        );
    }
}
