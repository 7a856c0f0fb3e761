//! The cluster-wide policies of `policy.networking.k8s.io`:
//! AdminNetworkPolicy and BaselineAdminNetworkPolicy (v1alpha1) and their
//! successor ClusterNetworkPolicy (v1alpha2, `tier: Admin | Baseline`),
//! parsed and validated into one compiled form, [`AdminPolicySpec`].
//!
//! Semantics (network-policy-api): policies of the Admin tier are evaluated
//! before NetworkPolicies, lowest `priority` first, rules in written order;
//! the first matching rule decides: Allow/Accept and Deny are final, Pass
//! skips the rest of the tier. Baseline rules are evaluated only for
//! traffic no NetworkPolicy isolates. A policy that matches nothing leaves
//! the traffic to the next tier. Nothing here looks at flows except through
//! [`crate::matching`].

use std::sync::Arc;

use flowscribe_model::{PolicyAction, PolicyDirection, PolicyKind};
use ipnet::IpNet;
use serde_json::{Map, Value};

use crate::PolicyError;
use crate::json::{Ctx, indexed, join, present, type_of};
use crate::kubernetes::PortRange;
use crate::matching::{
    EndpointView, FlowCtx, NODE_HOSTNAME_LABEL, Tri, namespace_label, port_range,
};
use crate::selector::{LabelSelector, Requirement, parse_selector};

/// Which of the two cluster-wide tiers a policy belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdminTier {
    /// Before NetworkPolicies; cannot be overridden by them.
    Admin,
    /// After NetworkPolicies, for pods they do not isolate.
    Baseline,
}

/// A compiled AdminNetworkPolicy, BaselineAdminNetworkPolicy or
/// ClusterNetworkPolicy spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminPolicySpec {
    pub tier: AdminTier,
    /// 0-1000, lower first; 0 for a BaselineAdminNetworkPolicy (there is
    /// only one).
    pub priority: u32,
    pub subject: AdminSubject,
    pub ingress: Box<[AdminRule]>,
    pub egress: Box<[AdminRule]>,
}

impl AdminPolicySpec {
    pub fn rules(&self, direction: PolicyDirection) -> &[AdminRule] {
        match direction {
            PolicyDirection::Ingress => &self.ingress,
            PolicyDirection::Egress => &self.egress,
        }
    }
}

/// The pods a policy applies to (host-network pods never).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminSubject {
    /// Every pod of the namespaces with these labels.
    Namespaces(LabelSelector),
    /// Pods with `pods` labels in namespaces with `namespaces` labels.
    Pods {
        namespaces: LabelSelector,
        pods: LabelSelector,
    },
}

impl AdminSubject {
    pub(crate) fn selects(&self, pod: &flowscribe_model::PodIdentity) -> bool {
        match self {
            AdminSubject::Namespaces(ns) => ns.matches_with(|k| namespace_label(pod, k)),
            AdminSubject::Pods { namespaces, pods } => {
                namespaces.matches_with(|k| namespace_label(pod, k)) && pods.matches(&pod.labels)
            }
        }
    }
}

/// One rule: the first that matches (peer and port) decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminRule {
    pub name: Option<Arc<str>>,
    /// Allow (ClusterNetworkPolicy `Accept`), Deny or Pass.
    pub action: PolicyAction,
    /// At least one; the rule matches when any matches.
    pub peers: Box<[AdminPeer]>,
    /// `None`: every port and protocol.
    pub ports: Option<Box<[AdminPort]>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminPeer {
    /// Every pod of the namespaces with these labels.
    Namespaces(LabelSelector),
    /// Pods with `pods` labels in namespaces with `namespaces` labels.
    Pods {
        namespaces: LabelSelector,
        pods: LabelSelector,
    },
    /// Node addresses of the nodes with these labels (egress only).
    Nodes(LabelSelector),
    /// Addresses in any of these CIDRs (egress only).
    Networks(Box<[IpNet]>),
    /// Domain names (egress Allow/Accept only). Flows carry addresses, not
    /// names, so these match only as `Unknown` for addresses outside the
    /// cluster.
    DomainNames(Box<[Arc<str>]>),
}

/// A port of a rule. `protocol: None` for a named port (the container
/// port's own protocol).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminPort {
    pub protocol: Option<u8>,
    pub port: PortRange,
}

impl AdminRule {
    /// Whether the rule matches the flow; `peer` is the other end (the
    /// source for ingress, the destination for egress).
    pub(crate) fn matches(&self, ctx: &FlowCtx, peer: &EndpointView) -> Tri {
        let ports = match &self.ports {
            None => Tri::Yes,
            Some(ports) => Tri::any(ports.iter(), |p| port_range(ctx, p.protocol, &p.port)),
        };
        ports.and(|| Tri::any(self.peers.iter(), |p| p.matches(peer)))
    }
}

impl AdminPeer {
    fn matches(&self, peer: &EndpointView) -> Tri {
        match self {
            AdminPeer::Namespaces(ns) => match peer.pod {
                Some(pod) => Tri::from_bool(ns.matches_with(|k| namespace_label(pod, k))),
                None => peer.unknown_pod(),
            },
            AdminPeer::Pods { namespaces, pods } => match peer.pod {
                Some(pod) => Tri::from_bool(
                    namespaces.matches_with(|k| namespace_label(pod, k))
                        && pods.matches(&pod.labels),
                ),
                None => peer.unknown_pod(),
            },
            AdminPeer::Nodes(selector) => {
                if !peer.is_node() {
                    return if peer.degraded && peer.pod.is_none() {
                        Tri::Unknown
                    } else {
                        Tri::No
                    };
                }
                // The identity index knows a node's name, not its labels:
                // only selectors on the hostname label can be decided.
                let decidable = selector.requirements().iter().all(|r| {
                    let key = match r {
                        Requirement::Equals { key, .. }
                        | Requirement::In { key, .. }
                        | Requirement::NotIn { key, .. }
                        | Requirement::Exists { key }
                        | Requirement::DoesNotExist { key } => key,
                    };
                    key == NODE_HOSTNAME_LABEL
                });
                match (decidable, peer.node) {
                    (true, Some(node)) => Tri::from_bool(
                        selector.matches_with(|k| (k == NODE_HOSTNAME_LABEL).then_some(node)),
                    ),
                    _ if selector.is_everything() => Tri::Yes,
                    _ => Tri::Unknown,
                }
            }
            AdminPeer::Networks(nets) => {
                Tri::from_bool(nets.iter().any(|n| n.contains(&peer.addr)))
            }
            AdminPeer::DomainNames(_) => {
                if peer.pod.is_some() || peer.is_node() || is_cluster_internal(peer.kind) {
                    Tri::No
                } else {
                    Tri::Unknown
                }
            }
        }
    }
}

/// Endpoints that a DNS answer for a domain peer cannot be.
fn is_cluster_internal(kind: flowscribe_model::EndpointKind) -> bool {
    use flowscribe_model::EndpointKind as K;
    matches!(
        kind,
        K::Pod | K::HostNetworkPod | K::Node | K::Service | K::Loopback | K::Multicast
    )
}

/// The dialect being parsed: field and action names differ.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dialect {
    /// AdminNetworkPolicy (v1alpha1).
    Admin,
    /// BaselineAdminNetworkPolicy (v1alpha1).
    Baseline,
    /// ClusterNetworkPolicy (v1alpha2).
    Cluster,
}

/// Parse the spec of one of the three kinds. `name` is `metadata.name`
/// (a BaselineAdminNetworkPolicy must be called `default`).
pub(crate) fn parse_admin_spec(
    ctx: &Ctx,
    kind: PolicyKind,
    name: &str,
    spec: &Value,
) -> Result<AdminPolicySpec, PolicyError> {
    let dialect = match kind {
        PolicyKind::AdminNetworkPolicy => Dialect::Admin,
        PolicyKind::BaselineAdminNetworkPolicy => Dialect::Baseline,
        _ => Dialect::Cluster,
    };
    let known: &[&str] = match dialect {
        Dialect::Admin => &["priority", "subject", "ingress", "egress"],
        Dialect::Baseline => &["subject", "ingress", "egress"],
        Dialect::Cluster => &["tier", "priority", "subject", "ingress", "egress"],
    };
    let map = ctx.object(spec, "spec", known)?;
    if dialect == Dialect::Baseline && name != "default" {
        return Err(ctx.err(
            "metadata.name",
            "a BaselineAdminNetworkPolicy must be named \"default\"",
        ));
    }
    let tier = match dialect {
        Dialect::Admin => AdminTier::Admin,
        Dialect::Baseline => AdminTier::Baseline,
        Dialect::Cluster => match ctx.opt_str(map, "tier", "spec")? {
            Some("Admin") => AdminTier::Admin,
            Some("Baseline") => AdminTier::Baseline,
            Some(other) => {
                return Err(ctx.err(
                    "spec.tier",
                    format!("{other:?} is not a tier (Admin, Baseline)"),
                ));
            }
            None => return Err(ctx.err("spec.tier", "missing")),
        },
    };
    let priority = match dialect {
        Dialect::Baseline => 0,
        _ => {
            let v = present(map, "priority").ok_or_else(|| ctx.err("spec.priority", "missing"))?;
            v.as_u64()
                .filter(|p| *p <= 1000)
                .and_then(|p| u32::try_from(p).ok())
                .ok_or_else(|| {
                    ctx.err(
                        "spec.priority",
                        format!("expected an integer 0-1000, found {v}"),
                    )
                })?
        }
    };
    let subject = parse_subject(
        ctx,
        present(map, "subject").ok_or_else(|| ctx.err("spec.subject", "missing"))?,
    )?;
    let max_rules = if dialect == Dialect::Cluster { 25 } else { 100 };
    let ingress = parse_rules(ctx, dialect, map, PolicyDirection::Ingress, max_rules)?;
    let egress = parse_rules(ctx, dialect, map, PolicyDirection::Egress, max_rules)?;
    Ok(AdminPolicySpec {
        tier,
        priority,
        subject,
        ingress: ingress.into(),
        egress: egress.into(),
    })
}

/// Exactly one of `namespaces` and `pods`.
fn parse_subject(ctx: &Ctx, v: &Value) -> Result<AdminSubject, PolicyError> {
    let map = ctx.object(v, "spec.subject", &["namespaces", "pods"])?;
    match (present(map, "namespaces"), present(map, "pods")) {
        (Some(ns), None) => Ok(AdminSubject::Namespaces(parse_selector(
            ctx,
            ns,
            "spec.subject.namespaces",
        )?)),
        (None, Some(p)) => {
            let (namespaces, pods) = parse_namespaced_pod(ctx, p, "spec.subject.pods")?;
            Ok(AdminSubject::Pods { namespaces, pods })
        }
        _ => Err(ctx.err(
            "spec.subject",
            "exactly one of namespaces, pods must be set",
        )),
    }
}

fn parse_namespaced_pod(
    ctx: &Ctx,
    v: &Value,
    path: &str,
) -> Result<(LabelSelector, LabelSelector), PolicyError> {
    let map = ctx.object(v, path, &["namespaceSelector", "podSelector"])?;
    let get = |key: &str| {
        let p = join(path, key);
        present(map, key)
            .ok_or_else(|| ctx.err(&p, "missing"))
            .and_then(|s| parse_selector(ctx, s, &p))
    };
    Ok((get("namespaceSelector")?, get("podSelector")?))
}

fn parse_rules(
    ctx: &Ctx,
    dialect: Dialect,
    map: &Map<String, Value>,
    direction: PolicyDirection,
    max_rules: usize,
) -> Result<Vec<AdminRule>, PolicyError> {
    let (key, peers_key) = match direction {
        PolicyDirection::Ingress => ("ingress", "from"),
        PolicyDirection::Egress => ("egress", "to"),
    };
    let list = ctx.opt_list(map, key, "spec")?.unwrap_or_default();
    if list.len() > max_rules {
        return Err(ctx.err(
            &format!("spec.{key}"),
            format!("{} rules, at most {max_rules} allowed", list.len()),
        ));
    }
    let ports_key = if dialect == Dialect::Cluster {
        "protocols"
    } else {
        "ports"
    };
    let mut rules = Vec::with_capacity(list.len());
    for (i, r) in list.iter().enumerate() {
        let rpath = indexed("spec", key, i);
        let rule = ctx.object(r, &rpath, &["name", "action", peers_key, ports_key])?;
        let name = ctx.opt_str(rule, "name", &rpath)?;
        if name.is_some_and(|n| n.chars().count() > 100) {
            return Err(ctx.err(&join(&rpath, "name"), "longer than 100 characters"));
        }
        let action_path = join(&rpath, "action");
        let action = match (
            dialect,
            ctx.opt_str(rule, "action", &rpath)?
                .ok_or_else(|| ctx.err(&action_path, "missing"))?,
        ) {
            (Dialect::Admin | Dialect::Baseline, "Allow") | (Dialect::Cluster, "Accept") => {
                PolicyAction::Allow
            }
            (_, "Deny") => PolicyAction::Deny,
            (Dialect::Admin | Dialect::Cluster, "Pass") => PolicyAction::Pass,
            (_, other) => {
                let allowed = match dialect {
                    Dialect::Admin => "Allow, Deny, Pass",
                    Dialect::Baseline => "Allow, Deny",
                    Dialect::Cluster => "Accept, Deny, Pass",
                };
                return Err(ctx.err(
                    &action_path,
                    format!("{other:?} is not an action ({allowed})"),
                ));
            }
        };
        let peers_path = join(&rpath, peers_key);
        let peer_list = ctx.opt_list(rule, peers_key, &rpath)?.unwrap_or_default();
        if peer_list.is_empty() {
            return Err(ctx.err(&peers_path, "must have at least one peer"));
        }
        if peer_list.len() > 100 {
            return Err(ctx.err(&peers_path, "at most 100 peers allowed"));
        }
        let mut peers = Vec::with_capacity(peer_list.len());
        for (j, p) in peer_list.iter().enumerate() {
            let peer = parse_peer(ctx, dialect, direction, p, &indexed(&peers_path, "", j))?;
            if matches!(peer, AdminPeer::DomainNames(_)) && action != PolicyAction::Allow {
                return Err(ctx.err(
                    &format!("{peers_path}[{j}].domainNames"),
                    "domainNames may only be used in Allow/Accept rules",
                ));
            }
            peers.push(peer);
        }
        let ports = match ctx.opt_list(rule, ports_key, &rpath)? {
            None => None,
            Some(list) => {
                let ppath = join(&rpath, ports_key);
                if list.is_empty() {
                    return Err(ctx.err(&ppath, "must have at least one entry when present"));
                }
                let mut ports = Vec::with_capacity(list.len());
                for (j, p) in list.iter().enumerate() {
                    let path = indexed(&ppath, "", j);
                    ports.push(if dialect == Dialect::Cluster {
                        parse_protocol(ctx, p, &path)?
                    } else {
                        parse_port(ctx, p, &path)?
                    });
                }
                let named = ports.iter().any(|p| matches!(p.port, PortRange::Named(_)));
                let addressed = peers.iter().any(|p| {
                    matches!(
                        p,
                        AdminPeer::Nodes(_) | AdminPeer::Networks(_) | AdminPeer::DomainNames(_)
                    )
                });
                if named && addressed {
                    return Err(ctx.err(
                        &ppath,
                        "named ports cannot be used with nodes, networks or domainNames peers",
                    ));
                }
                Some(ports.into())
            }
        };
        rules.push(AdminRule {
            name: name.map(Arc::from),
            action,
            peers: peers.into(),
            ports,
        });
    }
    Ok(rules)
}

fn parse_peer(
    ctx: &Ctx,
    dialect: Dialect,
    direction: PolicyDirection,
    v: &Value,
    path: &str,
) -> Result<AdminPeer, PolicyError> {
    let known: &[&str] = match (direction, dialect) {
        (PolicyDirection::Ingress, _) => &["namespaces", "pods"],
        (PolicyDirection::Egress, Dialect::Baseline) => {
            &["namespaces", "pods", "nodes", "networks"]
        }
        (PolicyDirection::Egress, _) => &["namespaces", "pods", "nodes", "networks", "domainNames"],
    };
    let map = ctx.object(v, path, known)?;
    let set: Vec<(&String, &Value)> = map.iter().filter(|(_, v)| !v.is_null()).collect();
    let [(key, value)] = set.as_slice() else {
        // The API says an implementation seeing no known field faces a newer
        // CRD and must fail closed; reporting the policy invalid does that.
        return Err(ctx.err(
            path,
            format!("exactly one of {} must be set", known.join(", ")),
        ));
    };
    let fpath = join(path, key);
    match key.as_str() {
        "namespaces" => Ok(AdminPeer::Namespaces(parse_selector(ctx, value, &fpath)?)),
        "pods" => {
            let (namespaces, pods) = parse_namespaced_pod(ctx, value, &fpath)?;
            Ok(AdminPeer::Pods { namespaces, pods })
        }
        "nodes" => Ok(AdminPeer::Nodes(parse_selector(ctx, value, &fpath)?)),
        "networks" => {
            let list = value.as_array().ok_or_else(|| {
                ctx.err(&fpath, format!("expected a list, found {}", type_of(value)))
            })?;
            if list.is_empty() || list.len() > 25 {
                return Err(ctx.err(&fpath, "must have 1 to 25 CIDRs"));
            }
            let mut nets = Vec::with_capacity(list.len());
            for (i, c) in list.iter().enumerate() {
                let cpath = indexed(&fpath, "", i);
                let s = ctx.str(c, &cpath)?;
                let net: IpNet = s
                    .parse()
                    .map_err(|_| ctx.err(&cpath, format!("{s:?} is not a CIDR")))?;
                nets.push(net.trunc());
            }
            Ok(AdminPeer::Networks(nets.into()))
        }
        _ => {
            let list = value.as_array().ok_or_else(|| {
                ctx.err(&fpath, format!("expected a list, found {}", type_of(value)))
            })?;
            if list.is_empty() || list.len() > 25 {
                return Err(ctx.err(&fpath, "must have 1 to 25 domain names"));
            }
            let mut names = Vec::with_capacity(list.len());
            for (i, d) in list.iter().enumerate() {
                let dpath = indexed(&fpath, "", i);
                let s = ctx.str(d, &dpath)?;
                if !is_domain_name(s) {
                    return Err(ctx.err(&dpath, format!("{s:?} is not a domain name")));
                }
                names.push(Arc::from(s));
            }
            Ok(AdminPeer::DomainNames(names.into()))
        }
    }
}

/// The CRD's pattern: labels of letters, digits, `-` and `_` (not at the
/// ends), at least two, an optional leading `*.` and trailing `.`.
fn is_domain_name(s: &str) -> bool {
    let s = s.strip_prefix("*.").unwrap_or(s);
    let s = s.strip_suffix('.').unwrap_or(s);
    let labels: Vec<&str> = s.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
        })
}

fn protocol_number(ctx: &Ctx, map: &Map<String, Value>, path: &str) -> Result<u8, PolicyError> {
    match ctx.opt_str(map, "protocol", path)?.unwrap_or("TCP") {
        "TCP" => Ok(6),
        "UDP" => Ok(17),
        "SCTP" => Ok(132),
        other => Err(ctx.err(
            &join(path, "protocol"),
            format!("{other:?} is not a protocol (TCP, UDP, SCTP)"),
        )),
    }
}

fn number(ctx: &Ctx, map: &Map<String, Value>, key: &str, path: &str) -> Result<u16, PolicyError> {
    let p = join(path, key);
    let v = present(map, key).ok_or_else(|| ctx.err(&p, "missing"))?;
    v.as_u64()
        .and_then(|n| u16::try_from(n).ok())
        .filter(|n| *n != 0)
        .ok_or_else(|| ctx.err(&p, format!("expected a port number 1-65535, found {v}")))
}

fn range(ctx: &Ctx, map: &Map<String, Value>, path: &str) -> Result<PortRange, PolicyError> {
    let start = number(ctx, map, "start", path)?;
    let end = number(ctx, map, "end", path)?;
    if end <= start {
        return Err(ctx.err(
            &join(path, "end"),
            format!("{end} must be greater than start {start}"),
        ));
    }
    Ok(PortRange::Range { start, end })
}

/// v1alpha1 `ports[]`: exactly one of `portNumber`, `namedPort`, `portRange`.
fn parse_port(ctx: &Ctx, v: &Value, path: &str) -> Result<AdminPort, PolicyError> {
    let map = ctx.object(v, path, &["portNumber", "namedPort", "portRange"])?;
    let set: Vec<(&String, &Value)> = map.iter().filter(|(_, v)| !v.is_null()).collect();
    let [(key, value)] = set.as_slice() else {
        return Err(ctx.err(
            path,
            "exactly one of portNumber, namedPort, portRange must be set",
        ));
    };
    let fpath = join(path, key);
    match key.as_str() {
        "portNumber" => {
            let m = ctx.object(value, &fpath, &["protocol", "port"])?;
            let port = number(ctx, m, "port", &fpath)?;
            Ok(AdminPort {
                protocol: Some(protocol_number(ctx, m, &fpath)?),
                port: PortRange::Range {
                    start: port,
                    end: port,
                },
            })
        }
        "namedPort" => Ok(AdminPort {
            protocol: None,
            port: PortRange::Named(Arc::from(ctx.str(value, &fpath)?)),
        }),
        _ => {
            let m = ctx.object(value, &fpath, &["protocol", "start", "end"])?;
            Ok(AdminPort {
                protocol: Some(protocol_number(ctx, m, &fpath)?),
                port: range(ctx, m, &fpath)?,
            })
        }
    }
}

/// v1alpha2 `protocols[]`: exactly one of `tcp`, `udp`, `sctp`
/// (`destinationPort` with `number` or `range`, absent: every port) or
/// `destinationNamedPort`.
fn parse_protocol(ctx: &Ctx, v: &Value, path: &str) -> Result<AdminPort, PolicyError> {
    let map = ctx.object(v, path, &["tcp", "udp", "sctp", "destinationNamedPort"])?;
    let set: Vec<(&String, &Value)> = map.iter().filter(|(_, v)| !v.is_null()).collect();
    let [(key, value)] = set.as_slice() else {
        return Err(ctx.err(
            path,
            "exactly one of tcp, udp, sctp, destinationNamedPort must be set",
        ));
    };
    let fpath = join(path, key);
    let protocol = match key.as_str() {
        "tcp" => 6,
        "udp" => 17,
        "sctp" => 132,
        _ => {
            return Ok(AdminPort {
                protocol: None,
                port: PortRange::Named(Arc::from(ctx.str(value, &fpath)?)),
            });
        }
    };
    let m = ctx.object(value, &fpath, &["destinationPort"])?;
    let port = match present(m, "destinationPort") {
        None => PortRange::All,
        Some(dp) => {
            let dpath = join(&fpath, "destinationPort");
            let d = ctx.object(dp, &dpath, &["number", "range"])?;
            match (present(d, "number"), present(d, "range")) {
                (Some(_), None) => {
                    let n = number(ctx, d, "number", &dpath)?;
                    PortRange::Range { start: n, end: n }
                }
                (None, Some(r)) => {
                    let rpath = join(&dpath, "range");
                    range(ctx, ctx.object(r, &rpath, &["start", "end"])?, &rpath)?
                }
                _ => return Err(ctx.err(&dpath, "exactly one of number, range must be set")),
            }
        }
    };
    Ok(AdminPort {
        protocol: Some(protocol),
        port,
    })
}
