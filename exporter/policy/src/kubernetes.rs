//! The `networking.k8s.io/v1` NetworkPolicy spec, parsed and validated into
//! a compiled form that [`crate::explain`] matches flows against.
//!
//! The same spec serves our own `flowscribe.dev/v1alpha1` StagedNetworkPolicy
//! and Calico's StagedKubernetesNetworkPolicy. Validation follows the API
//! server's (so that a manifest the API server would reject is reported, not
//! half-understood), and defaulting follows its defaulting (`policyTypes`,
//! protocol TCP). Nothing here looks at flows.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use serde_json::{Map, Value};

use crate::PolicyError;
use crate::json::{Ctx, indexed, join, present, type_of};
use crate::selector::{LabelSelector, parse_selector};

/// A compiled NetworkPolicy spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesPolicySpec {
    /// The pods (in the policy's namespace) the policy applies to.
    pub pod_selector: LabelSelector,
    /// Ingress rules when the policy governs ingress (`policyTypes` has
    /// `Ingress`), else `None`. `Some` of an empty list isolates the selected
    /// pods for ingress and allows nothing.
    pub ingress: Option<Box<[Rule]>>,
    /// Egress rules, as `ingress`.
    pub egress: Option<Box<[Rule]>>,
}

impl KubernetesPolicySpec {
    /// A spec that governs no direction (what a staged Delete carries).
    pub fn governs_nothing() -> Self {
        KubernetesPolicySpec {
            pod_selector: LabelSelector::everything(),
            ingress: None,
            egress: None,
        }
    }
}

/// One ingress (`from`) or egress (`to`) rule. A flow matches when it matches
/// one of the peers and one of the ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `None` (field absent or empty): every peer.
    pub peers: Option<Box<[Peer]>>,
    /// Empty: every port and protocol.
    pub ports: Box<[PortMatch]>,
}

/// The other end of a flow, as a rule names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// Pods chosen by selectors. Both present: pods matching `pods` in
    /// namespaces matching `namespaces` (AND). Only `pods`: pods in the
    /// policy's own namespace. Only `namespaces`: every pod of the matching
    /// namespaces.
    Pods {
        pods: Option<LabelSelector>,
        namespaces: Option<LabelSelector>,
    },
    IpBlock(IpBlock),
}

/// `ipBlock`: addresses in `cidr` but in none of `except`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpBlock {
    pub cidr: IpNet,
    pub except: Box<[IpNet]>,
}

impl IpBlock {
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.cidr.contains(&addr) && !self.except.iter().any(|e| e.contains(&addr))
    }
}

/// One entry of a rule's `ports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMatch {
    /// IANA protocol number: 6 TCP (the default), 17 UDP, 132 SCTP.
    pub protocol: u8,
    pub port: PortRange,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortRange {
    /// No `port`: every port of the protocol.
    All,
    /// `port`, or `port`..=`endPort`.
    Range { start: u16, end: u16 },
    /// A named container port, resolved against the destination pod.
    Named(Arc<str>),
}

#[derive(Clone, Copy)]
enum Direction {
    Ingress,
    Egress,
}

/// Parse a NetworkPolicy `spec`. `extra` lists fields a wrapping kind adds
/// to the spec (Calico's `stagedAction`), which the caller reads itself.
pub(crate) fn parse_spec(
    ctx: &Ctx,
    spec: &Value,
    extra: &[&str],
) -> Result<KubernetesPolicySpec, PolicyError> {
    let mut known = vec!["podSelector", "policyTypes", "ingress", "egress"];
    known.extend_from_slice(extra);
    let map = ctx.object(spec, "spec", &known)?;
    // The Go type has no `omitempty` on podSelector: absent reads as `{}`.
    let pod_selector = match present(map, "podSelector") {
        None => LabelSelector::everything(),
        Some(v) => parse_selector(ctx, v, "spec.podSelector")?,
    };
    let ingress = parse_rules(ctx, map, Direction::Ingress)?;
    let egress = parse_rules(ctx, map, Direction::Egress)?;
    // API server defaulting: always Ingress; Egress when there are egress
    // rules (an empty `egress: []` does not count).
    let (governs_ingress, governs_egress) = ctx
        .policy_types(map, "policyTypes")?
        .unwrap_or((true, !egress.is_empty()));
    Ok(KubernetesPolicySpec {
        pod_selector,
        ingress: governs_ingress.then(|| ingress.into()),
        egress: governs_egress.then(|| egress.into()),
    })
}

fn parse_rules(
    ctx: &Ctx,
    map: &Map<String, Value>,
    direction: Direction,
) -> Result<Vec<Rule>, PolicyError> {
    let (key, peers_key) = match direction {
        Direction::Ingress => ("ingress", "from"),
        Direction::Egress => ("egress", "to"),
    };
    let mut rules = Vec::new();
    for (i, r) in ctx
        .opt_list(map, key, "spec")?
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let rpath = indexed("spec", key, i);
        let rule = ctx.object(r, &rpath, &[peers_key, "ports"])?;
        let mut peers = Vec::new();
        for (j, p) in ctx
            .opt_list(rule, peers_key, &rpath)?
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            peers.push(parse_peer(ctx, p, &indexed(&rpath, peers_key, j))?);
        }
        let mut ports = Vec::new();
        for (j, p) in ctx
            .opt_list(rule, "ports", &rpath)?
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            ports.push(parse_port(ctx, p, &indexed(&rpath, "ports", j))?);
        }
        rules.push(Rule {
            peers: (!peers.is_empty()).then(|| peers.into()),
            ports: ports.into(),
        });
    }
    Ok(rules)
}

fn parse_peer(ctx: &Ctx, v: &Value, path: &str) -> Result<Peer, PolicyError> {
    let map = ctx.object(v, path, &["podSelector", "namespaceSelector", "ipBlock"])?;
    let pods = present(map, "podSelector")
        .map(|s| parse_selector(ctx, s, &join(path, "podSelector")))
        .transpose()?;
    let namespaces = present(map, "namespaceSelector")
        .map(|s| parse_selector(ctx, s, &join(path, "namespaceSelector")))
        .transpose()?;
    match present(map, "ipBlock") {
        Some(_) if pods.is_some() || namespaces.is_some() => Err(ctx.err(
            path,
            "ipBlock may not be combined with podSelector or namespaceSelector",
        )),
        Some(b) => parse_ip_block(ctx, b, &join(path, "ipBlock")).map(Peer::IpBlock),
        None if pods.is_none() && namespaces.is_none() => Err(ctx.err(
            path,
            "must specify one of podSelector, namespaceSelector, ipBlock",
        )),
        None => Ok(Peer::Pods { pods, namespaces }),
    }
}

fn parse_cidr(ctx: &Ctx, v: &Value, path: &str) -> Result<IpNet, PolicyError> {
    let s = ctx.str(v, path)?;
    s.parse::<IpNet>()
        .map_err(|_| ctx.err(path, format!("{s:?} is not a CIDR")))
}

fn parse_ip_block(ctx: &Ctx, v: &Value, path: &str) -> Result<IpBlock, PolicyError> {
    let map = ctx.object(v, path, &["cidr", "except"])?;
    let cidr_path = join(path, "cidr");
    let cidr = parse_cidr(
        ctx,
        present(map, "cidr").ok_or_else(|| ctx.err(&cidr_path, "missing"))?,
        &cidr_path,
    )?;
    let mut except = Vec::new();
    for (i, e) in ctx
        .opt_list(map, "except", path)?
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let epath = indexed(path, "except", i);
        let net = parse_cidr(ctx, e, &epath)?;
        // As the API server: an except outside the block, or the whole
        // block, is a mistake worth reporting rather than guessing at.
        if !(cidr.contains(&net) && net.prefix_len() > cidr.prefix_len()) {
            return Err(ctx.err(&epath, format!("{net} is not a strict subset of {cidr}")));
        }
        except.push(net);
    }
    Ok(IpBlock {
        cidr: cidr.trunc(),
        except: except.into_iter().map(|n| n.trunc()).collect(),
    })
}

fn parse_port(ctx: &Ctx, v: &Value, path: &str) -> Result<PortMatch, PolicyError> {
    let map = ctx.object(v, path, &["protocol", "port", "endPort"])?;
    let protocol = match ctx.opt_str(map, "protocol", path)?.unwrap_or("TCP") {
        "TCP" => 6,
        "UDP" => 17,
        "SCTP" => 132,
        other => {
            return Err(ctx.err(
                &join(path, "protocol"),
                format!("{other:?} is not a protocol (TCP, UDP, SCTP)"),
            ));
        }
    };
    let port_path = join(path, "port");
    let end_path = join(path, "endPort");
    let end = present(map, "endPort")
        .map(|e| port_number(ctx, e, &end_path))
        .transpose()?;
    let port = match (present(map, "port"), end) {
        (None, Some(_)) => return Err(ctx.err(&end_path, "requires a numeric port")),
        (None, None) => PortRange::All,
        (Some(Value::String(name)), end) => {
            if end.is_some() {
                return Err(ctx.err(&end_path, "may not be used with a named port"));
            }
            if !is_port_name(name) {
                return Err(ctx.err(
                    &port_path,
                    format!("{name:?} is not a port number or a valid port name (IANA_SVC_NAME)"),
                ));
            }
            PortRange::Named(Arc::from(name.as_str()))
        }
        (Some(p), end) => {
            let start = port_number(ctx, p, &port_path)?;
            let end = end.unwrap_or(start);
            if end < start {
                return Err(ctx.err(&end_path, format!("{end} is less than port {start}")));
            }
            PortRange::Range { start, end }
        }
    };
    Ok(PortMatch { protocol, port })
}

fn port_number(ctx: &Ctx, v: &Value, path: &str) -> Result<u16, PolicyError> {
    v.as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .ok_or_else(|| {
            ctx.err(
                path,
                format!("expected a port number 1-65535, found {}", describe(v)),
            )
        })
}

fn describe(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        other => type_of(other).to_string(),
    }
}

/// IANA_SVC_NAME as the API server checks it: 1-15 characters of lowercase
/// letters, digits and `-`, at least one letter, no leading, trailing or
/// doubled `-`.
fn is_port_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 15
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.iter().any(u8::is_ascii_lowercase)
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && !s.contains("--")
}

#[cfg(test)]
mod tests;
