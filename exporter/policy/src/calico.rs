//! Calico's `projectcalico.org/v3` policy model: Tier, NetworkPolicy,
//! GlobalNetworkPolicy and their staged forms, parsed and validated into a
//! compiled [`CalicoPolicySpec`] and [`CalicoTier`].
//!
//! Semantics (Calico docs, "How policy is evaluated"): tiers in ascending
//! `order`; within a tier, policies in ascending `order` (absent: last),
//! then by name; within a policy, rules in order. The first rule whose
//! action is Allow or Deny decides; Pass jumps to the next tier; Log
//! records and goes on. A tier that applies to the endpoint but decides
//! nothing ends in its `defaultAction` (Deny unless Pass). Endpoints no
//! policy applies to fall through to their profiles, which allow in
//! Kubernetes. Matching goes through [`crate::matching`] only.

use std::net::IpAddr;
use std::sync::Arc;

use flowscribe_model::{PodIdentity, PolicyAction, PolicyDirection, PolicyKind};
use ipnet::IpNet;
use serde_json::{Map, Value};

use crate::PolicyError;
use crate::calico_selector::{CalicoSelector, Label};
use crate::json::{Ctx, indexed, join, present, type_of};
use crate::kubernetes::PortRange;
use crate::matching::{EndpointView, FlowCtx, NAMESPACE_NAME_LABEL, Tri, pod_named_port};

/// The tier every policy without `spec.tier` belongs to; Kubernetes
/// NetworkPolicies are evaluated in it too.
pub const DEFAULT_TIER: &str = "default";
/// The order of the `default` tier when no Tier object says otherwise.
pub const DEFAULT_TIER_ORDER: f64 = 1_000_000.0;
/// Where Calico places Kubernetes NetworkPolicies inside the default tier.
pub const KUBERNETES_POLICY_ORDER: f64 = 1000.0;

const NAME_LABEL: &str = "projectcalico.org/name";
const NAMESPACE_LABEL: &str = "projectcalico.org/namespace";
const ORCHESTRATOR_LABEL: &str = "projectcalico.org/orchestrator";
const SERVICE_ACCOUNT_LABEL: &str = "projectcalico.org/serviceaccount";

/// A `projectcalico.org/v3` Tier.
#[derive(Debug, Clone, PartialEq)]
pub struct CalicoTier {
    pub name: Arc<str>,
    /// `None`: after every tier with an order.
    pub order: Option<f64>,
    /// Deny (the default) or Pass.
    pub default_action: PolicyAction,
}

/// A compiled NetworkPolicy or GlobalNetworkPolicy spec (staged or not).
#[derive(Debug, Clone, PartialEq)]
pub struct CalicoPolicySpec {
    pub tier: Arc<str>,
    /// `None`: after every policy of the tier with an order.
    pub order: Option<f64>,
    /// Which endpoints (of the policy's namespace, for a NetworkPolicy).
    pub selector: CalicoSelector,
    /// GlobalNetworkPolicy only: the namespaces whose endpoints it selects.
    pub namespace_selector: Option<CalicoSelector>,
    pub service_account_selector: Option<CalicoSelector>,
    /// `None` when the policy does not govern the direction (`types`).
    pub ingress: Option<Box<[CalicoRule]>>,
    pub egress: Option<Box<[CalicoRule]>>,
    /// `doNotTrack` or `preDNAT`: such a policy applies to host endpoints
    /// only, never to pods.
    pub host_only: bool,
}

// Orders are finite numbers (checked at parse time), so equality is total.
impl Eq for CalicoPolicySpec {}
impl Eq for CalicoTier {}

#[derive(Debug, Clone, PartialEq)]
pub struct CalicoRule {
    pub action: PolicyAction,
    pub protocol: Option<u8>,
    pub not_protocol: Option<u8>,
    /// 4 or 6.
    pub ip_version: Option<u8>,
    /// `icmp` / `notICMP` type and code matches: flows carry no ICMP type,
    /// so on ICMP flows they make the rule's match unknown.
    pub icmp_match: bool,
    pub source: EntityRule,
    pub destination: EntityRule,
}

/// `source` or `destination` of a rule: all given criteria must hold.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EntityRule {
    pub nets: Box<[IpNet]>,
    pub not_nets: Box<[IpNet]>,
    pub selector: Option<CalicoSelector>,
    pub not_selector: Option<CalicoSelector>,
    pub namespace_selector: Option<CalicoSelector>,
    pub ports: Box<[PortRange]>,
    pub not_ports: Box<[PortRange]>,
    pub service_account_names: Box<[Arc<str>]>,
    pub service_account_selector: Option<CalicoSelector>,
}

impl CalicoPolicySpec {
    /// A spec that governs no direction (what a staged Delete carries).
    pub fn governs_nothing() -> Self {
        CalicoPolicySpec {
            tier: Arc::from(DEFAULT_TIER),
            order: None,
            selector: CalicoSelector::all(),
            namespace_selector: None,
            service_account_selector: None,
            ingress: None,
            egress: None,
            host_only: false,
        }
    }

    /// Some rule matches the source port (`source.ports`/`notPorts`).
    pub fn uses_source_ports(&self) -> bool {
        [&self.ingress, &self.egress]
            .into_iter()
            .flatten()
            .flat_map(|rules| rules.iter())
            .any(|r| !r.source.ports.is_empty() || !r.source.not_ports.is_empty())
    }

    pub fn rules(&self, direction: PolicyDirection) -> Option<&[CalicoRule]> {
        if self.host_only {
            return None;
        }
        match direction {
            PolicyDirection::Ingress => self.ingress.as_deref(),
            PolicyDirection::Egress => self.egress.as_deref(),
        }
    }

    /// Whether the policy applies to `pod`. `namespace`: the policy's own
    /// (a NetworkPolicy), `None` for a GlobalNetworkPolicy.
    pub(crate) fn selects(&self, namespace: Option<&str>, pod: &PodIdentity) -> Tri {
        let ns_ok = match (namespace, &self.namespace_selector) {
            (Some(ns), _) => Tri::from_bool(ns == &*pod.namespace),
            (None, Some(sel)) => sel.eval(false, &|k| namespace_lookup(pod, k)),
            (None, None) => Tri::Yes,
        };
        ns_ok
            .and(|| self.selector.eval(false, &|k| endpoint_lookup(pod, k)))
            .and(|| match &self.service_account_selector {
                None => Tri::Yes,
                Some(sel) => sel.eval(false, &|k| service_account_lookup(pod, k)),
            })
    }
}

/// Whether a policy selector selects a pod (for invalid policies, whose
/// other parts are unknown).
pub(crate) fn selector_selects(selector: &CalicoSelector, pod: &PodIdentity) -> Tri {
    selector.eval(false, &|k| endpoint_lookup(pod, k))
}

/// Labels of a workload endpoint as Calico sees them: the pod's, Calico's
/// own, and those inherited from the namespace (`pcns.`) and service
/// account (`pcsa.`) profiles.
pub(crate) fn endpoint_lookup<'a>(pod: &'a PodIdentity, key: &str) -> Label<'a> {
    if let Some(v) = pod.labels.get(key) {
        return Label::Value(v);
    }
    match key {
        NAMESPACE_LABEL => Label::Value(&pod.namespace),
        ORCHESTRATOR_LABEL => Label::Value("k8s"),
        SERVICE_ACCOUNT_LABEL => pod
            .service_account
            .as_deref()
            .map_or(Label::Unknown, Label::Value),
        _ => {
            if let Some(k) = key.strip_prefix("pcns.") {
                namespace_lookup(pod, k)
            } else if let Some(k) = key.strip_prefix("pcsa.") {
                service_account_lookup(pod, k)
            } else {
                Label::Absent
            }
        }
    }
}

pub(crate) fn namespace_lookup<'a>(pod: &'a PodIdentity, key: &str) -> Label<'a> {
    match pod.namespace_labels.get(key) {
        Some(v) => Label::Value(v),
        None if key == NAME_LABEL || key == NAMESPACE_NAME_LABEL => Label::Value(&pod.namespace),
        None => Label::Absent,
    }
}

/// Service accounts' own labels are not in the identity index: only the
/// name is known.
fn service_account_lookup<'a>(pod: &'a PodIdentity, key: &str) -> Label<'a> {
    match (key, pod.service_account.as_deref()) {
        (NAME_LABEL, Some(sa)) => Label::Value(sa),
        _ => Label::Unknown,
    }
}

impl CalicoRule {
    /// Whether the rule matches the flow. `namespace`: the policy's (for a
    /// NetworkPolicy, selectors without a namespaceSelector stay in it).
    pub(crate) fn matches(&self, namespace: Option<&str>, ctx: &FlowCtx) -> Tri {
        if self.protocol.is_some_and(|p| p != ctx.protocol)
            || self.not_protocol.is_some_and(|p| p == ctx.protocol)
        {
            return Tri::No;
        }
        if let Some(v) = self.ip_version {
            let is_v4 = matches!(ctx.destination.addr, IpAddr::V4(_));
            if (v == 4) != is_v4 {
                return Tri::No;
            }
        }
        let icmp = if self.icmp_match && matches!(ctx.protocol, 1 | 58) {
            Tri::Unknown
        } else {
            Tri::Yes
        };
        icmp.and(|| {
            self.source
                .matches(namespace, &ctx.source, ctx.src_port, ctx)
        })
        .and(|| {
            self.destination
                .matches(namespace, &ctx.destination, ctx.dst_port, ctx)
        })
    }
}

impl EntityRule {
    fn matches(&self, namespace: Option<&str>, e: &EndpointView, port: u16, ctx: &FlowCtx) -> Tri {
        if !self.nets.is_empty() && !self.nets.iter().any(|n| n.contains(&e.addr)) {
            return Tri::No;
        }
        if self.not_nets.iter().any(|n| n.contains(&e.addr)) {
            return Tri::No;
        }
        let port_match = |p: &PortRange| match p {
            PortRange::All => Tri::Yes,
            PortRange::Range { start, end } => Tri::from_bool((*start..=*end).contains(&port)),
            // Named ports name the endpoint's own container ports.
            PortRange::Named(name) => pod_named_port(e, name, port, ctx.protocol),
        };
        let ports = if self.ports.is_empty() {
            Tri::Yes
        } else {
            Tri::any(self.ports.iter(), port_match)
        };
        let not_ports = Tri::any(self.not_ports.iter(), port_match).not();
        let selected = self.selects_endpoint(namespace, e);
        ports.and(|| not_ports).and(|| selected)
    }

    fn has_endpoint_criteria(&self) -> bool {
        self.selector.is_some()
            || self.not_selector.is_some()
            || self.namespace_selector.is_some()
            || !self.service_account_names.is_empty()
            || self.service_account_selector.is_some()
    }

    fn selects_endpoint(&self, namespace: Option<&str>, e: &EndpointView) -> Tri {
        if !self.has_endpoint_criteria() {
            return Tri::Yes;
        }
        let Some(pod) = e.pod else {
            // Host endpoints and network sets are not modelled: a selector
            // matches only workload endpoints (pods).
            return e.unknown_pod();
        };
        let ns_ok = match (&self.namespace_selector, namespace) {
            (Some(sel), _) => sel.eval(false, &|k| namespace_lookup(pod, k)),
            (None, Some(ns)) => Tri::from_bool(ns == &*pod.namespace),
            (None, None) => Tri::Yes,
        };
        ns_ok
            .and(|| match &self.selector {
                None => Tri::Yes,
                Some(s) => s.eval(false, &|k| endpoint_lookup(pod, k)),
            })
            .and(|| match &self.not_selector {
                None => Tri::Yes,
                Some(s) => s.eval(false, &|k| endpoint_lookup(pod, k)).not(),
            })
            .and(|| {
                if self.service_account_names.is_empty() {
                    return Tri::Yes;
                }
                match pod.service_account.as_deref() {
                    Some(sa) => {
                        Tri::from_bool(self.service_account_names.iter().any(|n| **n == *sa))
                    }
                    None => Tri::Unknown,
                }
            })
            .and(|| match &self.service_account_selector {
                None => Tri::Yes,
                Some(s) => s.eval(false, &|k| service_account_lookup(pod, k)),
            })
    }
}

/// Parse a Tier object's spec.
pub(crate) fn parse_tier(ctx: &Ctx, name: &str, v: &Value) -> Result<CalicoTier, PolicyError> {
    ctx.object(v, "", &["apiVersion", "kind", "metadata", "spec", "status"])?;
    let empty = Value::Object(Map::new());
    let spec = v.get("spec").filter(|s| !s.is_null()).unwrap_or(&empty);
    let map = ctx.object(spec, "spec", &["order", "defaultAction"])?;
    let order = parse_order(ctx, map)?;
    let default_action = match ctx.opt_str(map, "defaultAction", "spec")? {
        None | Some("Deny") => PolicyAction::Deny,
        Some("Pass") => PolicyAction::Pass,
        Some(other) => {
            return Err(ctx.err(
                "spec.defaultAction",
                format!("{other:?} is not a tier default action (Deny, Pass)"),
            ));
        }
    };
    Ok(CalicoTier {
        name: Arc::from(name),
        order: order.or((name == DEFAULT_TIER).then_some(DEFAULT_TIER_ORDER)),
        default_action,
    })
}

fn parse_order(ctx: &Ctx, map: &Map<String, Value>) -> Result<Option<f64>, PolicyError> {
    match present(map, "order") {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|f| f.is_finite())
            .map(Some)
            .ok_or_else(|| ctx.err("spec.order", format!("expected a number, found {v}"))),
    }
}

/// The tier a policy names (best effort, for placing an invalid policy).
pub(crate) fn tier_of(spec: &Value) -> Arc<str> {
    Arc::from(
        spec.get("tier")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .unwrap_or(DEFAULT_TIER),
    )
}

/// Parse the spec of a NetworkPolicy, GlobalNetworkPolicy or a staged one.
/// `extra`: fields the staged kinds add (`stagedAction`), read by the
/// caller.
pub(crate) fn parse_calico_spec(
    ctx: &Ctx,
    kind: PolicyKind,
    spec: &Value,
    extra: &[&str],
) -> Result<CalicoPolicySpec, PolicyError> {
    let global = matches!(
        kind,
        PolicyKind::CalicoGlobalNetworkPolicy | PolicyKind::CalicoStagedGlobalNetworkPolicy
    );
    let mut known = vec![
        "order",
        "tier",
        "selector",
        "types",
        "ingress",
        "egress",
        "serviceAccountSelector",
        "performanceHints",
    ];
    if global {
        known.extend_from_slice(&[
            "namespaceSelector",
            "doNotTrack",
            "preDNAT",
            "applyOnForward",
        ]);
    }
    known.extend_from_slice(extra);
    let map = ctx.object(spec, "spec", &known)?;
    let order = parse_order(ctx, map)?;
    let tier = Arc::from(
        ctx.opt_str(map, "tier", "spec")?
            .filter(|t| !t.is_empty())
            .unwrap_or(DEFAULT_TIER),
    );
    let selector =
        selector_field(ctx, map, "selector", "spec")?.unwrap_or_else(CalicoSelector::all);
    let namespace_selector = selector_field(ctx, map, "namespaceSelector", "spec")?;
    let service_account_selector = selector_field(ctx, map, "serviceAccountSelector", "spec")?;
    let mut host_only = false;
    for flag in ["doNotTrack", "preDNAT", "applyOnForward"] {
        match present(map, flag) {
            None => {}
            Some(Value::Bool(b)) => host_only |= *b && flag != "applyOnForward",
            Some(other) => {
                return Err(ctx.err(
                    &join("spec", flag),
                    format!("expected a boolean, found {}", type_of(other)),
                ));
            }
        }
    }
    let ingress = parse_rules(ctx, map, "ingress")?;
    let egress = parse_rules(ctx, map, "egress")?;
    // Calico's defaulting: Egress when there are egress rules; Ingress when
    // there are ingress rules or no egress rules.
    let (governs_ingress, governs_egress) = ctx
        .policy_types(map, "types")?
        .unwrap_or((!ingress.is_empty() || egress.is_empty(), !egress.is_empty()));
    if !governs_ingress && !ingress.is_empty() {
        return Err(ctx.err("spec.ingress", "ingress rules without Ingress in types"));
    }
    if !governs_egress && !egress.is_empty() {
        return Err(ctx.err("spec.egress", "egress rules without Egress in types"));
    }
    Ok(CalicoPolicySpec {
        tier,
        order,
        selector,
        namespace_selector,
        service_account_selector,
        ingress: governs_ingress.then(|| ingress.into()),
        egress: governs_egress.then(|| egress.into()),
        host_only,
    })
}

fn selector_field(
    ctx: &Ctx,
    map: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<CalicoSelector>, PolicyError> {
    match ctx.opt_str(map, key, path)? {
        None => Ok(None),
        Some(text) => CalicoSelector::parse(text)
            .map(Some)
            .map_err(|e| ctx.err(&join(path, key), format!("{e} in {text:?}"))),
    }
}

fn parse_rules(
    ctx: &Ctx,
    map: &Map<String, Value>,
    key: &str,
) -> Result<Vec<CalicoRule>, PolicyError> {
    let list = ctx.opt_list(map, key, "spec")?.unwrap_or_default();
    let mut rules = Vec::with_capacity(list.len());
    for (i, r) in list.iter().enumerate() {
        let rpath = indexed("spec", key, i);
        let rule = ctx.object(
            r,
            &rpath,
            &[
                "action",
                "protocol",
                "notProtocol",
                "icmp",
                "notICMP",
                "ipVersion",
                "source",
                "destination",
                "http",
                "metadata",
            ],
        )?;
        let action_path = || join(&rpath, "action");
        let action = match ctx.opt_str(rule, "action", &rpath)? {
            Some("Allow") => PolicyAction::Allow,
            Some("Deny") => PolicyAction::Deny,
            Some("Pass") => PolicyAction::Pass,
            Some("Log") => PolicyAction::Log,
            Some(other) => {
                return Err(ctx.err(
                    &action_path(),
                    format!("{other:?} is not an action (Allow, Deny, Pass, Log)"),
                ));
            }
            None => return Err(ctx.err(&action_path(), "missing")),
        };
        if present(rule, "http").is_some() {
            // An HTTP match is decided by an L7 proxy on request contents a
            // flow record does not have.
            return Err(ctx.err(
                &join(&rpath, "http"),
                "HTTP (L7) matches cannot be evaluated on flows",
            ));
        }
        let protocol = parse_protocol(ctx, rule, "protocol", &rpath)?;
        let not_protocol = parse_protocol(ctx, rule, "notProtocol", &rpath)?;
        let ip_version = match present(rule, "ipVersion") {
            None => None,
            Some(v) => match v.as_u64() {
                Some(4) => Some(4),
                Some(6) => Some(6),
                _ => {
                    return Err(ctx.err(
                        &join(&rpath, "ipVersion"),
                        format!("expected 4 or 6, found {v}"),
                    ));
                }
            },
        };
        let icmp_match = present(rule, "icmp").is_some() || present(rule, "notICMP").is_some();
        if icmp_match && !matches!(protocol, Some(1 | 58)) {
            return Err(ctx.err(&rpath, "icmp/notICMP require protocol ICMP or ICMPv6"));
        }
        let entity = |side: &str| -> Result<EntityRule, PolicyError> {
            match present(rule, side) {
                None => Ok(EntityRule::default()),
                Some(v) => parse_entity(ctx, v, &join(&rpath, side), protocol),
            }
        };
        let source = entity("source")?;
        let destination = entity("destination")?;
        rules.push(CalicoRule {
            action,
            protocol,
            not_protocol,
            ip_version,
            icmp_match,
            source,
            destination,
        });
    }
    Ok(rules)
}

fn parse_protocol(
    ctx: &Ctx,
    rule: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<u8>, PolicyError> {
    let p = || join(path, key);
    match present(rule, key) {
        None => Ok(None),
        Some(Value::String(s)) => match s.as_str() {
            "TCP" => Ok(Some(6)),
            "UDP" => Ok(Some(17)),
            "ICMP" => Ok(Some(1)),
            "ICMPv6" => Ok(Some(58)),
            "SCTP" => Ok(Some(132)),
            "UDPLite" => Ok(Some(136)),
            other => Err(ctx.err(
                &p(),
                format!(
                    "{other:?} is not a protocol (TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite, or 1-255)"
                ),
            )),
        },
        Some(v) => v
            .as_u64()
            .and_then(|n| u8::try_from(n).ok())
            .filter(|n| *n != 0)
            .map(Some)
            .ok_or_else(|| {
                ctx.err(
                    &p(),
                    format!("expected a protocol name or 1-255, found {v}"),
                )
            }),
    }
}

fn parse_entity(
    ctx: &Ctx,
    v: &Value,
    path: &str,
    protocol: Option<u8>,
) -> Result<EntityRule, PolicyError> {
    let map = ctx.object(
        v,
        path,
        &[
            "nets",
            "notNets",
            "selector",
            "notSelector",
            "namespaceSelector",
            "ports",
            "notPorts",
            "serviceAccounts",
            "services",
        ],
    )?;
    if present(map, "services").is_some() {
        return Err(ctx.err(
            &join(path, "services"),
            "Service matches need the Service's endpoints, which explain does not model",
        ));
    }
    let nets = |key: &str| -> Result<Box<[IpNet]>, PolicyError> {
        let mut out = Vec::new();
        for (i, n) in ctx
            .opt_list(map, key, path)?
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let npath = indexed(path, key, i);
            let s = ctx.str(n, &npath)?;
            // Calico accepts a bare address as a /32 or /128.
            let net = s
                .parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| ctx.err(&npath, format!("{s:?} is not a CIDR")))?;
            out.push(net.trunc());
        }
        Ok(out.into())
    };
    let ports = |key: &str| -> Result<Box<[PortRange]>, PolicyError> {
        let list = ctx.opt_list(map, key, path)?.unwrap_or_default();
        if !list.is_empty() && !matches!(protocol, Some(6 | 17 | 132 | 136)) {
            return Err(ctx.err(
                &join(path, key),
                "ports require protocol TCP, UDP, SCTP or UDPLite",
            ));
        }
        let mut out = Vec::with_capacity(list.len());
        for (i, p) in list.iter().enumerate() {
            out.push(parse_port(ctx, p, &indexed(path, key, i))?);
        }
        Ok(out.into())
    };
    let (service_account_names, service_account_selector) = match present(map, "serviceAccounts") {
        None => (Box::default(), None),
        Some(sa) => {
            let sapath = join(path, "serviceAccounts");
            let m = ctx.object(sa, &sapath, &["names", "selector"])?;
            let mut names = Vec::new();
            for (i, n) in ctx
                .opt_list(m, "names", &sapath)?
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                names.push(Arc::from(ctx.str(n, &indexed(&sapath, "names", i))?));
            }
            (names.into(), selector_field(ctx, m, "selector", &sapath)?)
        }
    };
    Ok(EntityRule {
        nets: nets("nets")?,
        not_nets: nets("notNets")?,
        selector: selector_field(ctx, map, "selector", path)?,
        not_selector: selector_field(ctx, map, "notSelector", path)?,
        namespace_selector: selector_field(ctx, map, "namespaceSelector", path)?,
        ports: ports("ports")?,
        not_ports: ports("notPorts")?,
        service_account_names,
        service_account_selector,
    })
}

/// A port: a number, `"80"`, a range `"8000:9000"`, or a named port.
fn parse_port(ctx: &Ctx, v: &Value, path: &str) -> Result<PortRange, PolicyError> {
    let number = |s: &str| s.parse::<u16>().ok();
    match v {
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .map(|p| PortRange::Range { start: p, end: p })
            .ok_or_else(|| ctx.err(path, format!("expected a port 0-65535, found {n}"))),
        Value::String(s) => {
            if let Some((a, b)) = s.split_once(':') {
                match (number(a), number(b)) {
                    (Some(start), Some(end)) if start <= end => Ok(PortRange::Range { start, end }),
                    _ => Err(ctx.err(path, format!("{s:?} is not a port range (min:max)"))),
                }
            } else if let Some(p) = number(s) {
                Ok(PortRange::Range { start: p, end: p })
            } else if !s.is_empty()
                && s.len() <= 15
                && s.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
            {
                Ok(PortRange::Named(Arc::from(s.as_str())))
            } else {
                Err(ctx.err(path, format!("{s:?} is not a port, a range or a port name")))
            }
        }
        other => Err(ctx.err(path, format!("expected a port, found {}", type_of(other)))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::{Policy, PolicySpec, Stage, StagedAction, parse_policy, parse_tier};

    fn calico(kind: &str, spec: serde_json::Value) -> serde_json::Value {
        json!({"apiVersion": "projectcalico.org/v3", "kind": kind,
               "metadata": {"name": "p", "namespace": "x"}, "spec": spec})
    }

    fn parse(v: &serde_json::Value) -> Result<Policy, crate::InvalidPolicy> {
        parse_policy(v).expect("a policy kind")
    }

    #[test]
    fn invalid_specs_name_the_field() {
        let rule = |r: serde_json::Value| json!({"ingress": [r]});
        let cases = [
            (json!({"order": "first"}), "spec.order"),
            (json!({"selector": "a ==="}), "spec.selector"),
            (json!({"types": ["Sideways"]}), "spec.types[0]"),
            (
                json!({"types": ["Egress"], "ingress": [{"action": "Allow"}]}),
                "spec.ingress",
            ),
            (
                json!({"namespaceSelector": "all()"}),
                "spec.namespaceSelector",
            ),
            (rule(json!({"action": "Reject"})), "spec.ingress[0].action"),
            (rule(json!({})), "spec.ingress[0].action"),
            (
                rule(json!({"action": "Allow", "protocol": "GRE"})),
                "spec.ingress[0].protocol",
            ),
            (
                rule(json!({"action": "Allow", "protocol": 300})),
                "spec.ingress[0].protocol",
            ),
            (
                rule(json!({"action": "Allow", "destination": {"ports": [80]}})),
                "spec.ingress[0].destination.ports",
            ),
            (
                rule(
                    json!({"action": "Allow", "protocol": "TCP", "destination": {"ports": ["90:80"]}}),
                ),
                "spec.ingress[0].destination.ports[0]",
            ),
            (
                rule(
                    json!({"action": "Allow", "protocol": "TCP", "destination": {"ports": [70000]}}),
                ),
                "spec.ingress[0].destination.ports[0]",
            ),
            (
                rule(
                    json!({"action": "Allow", "protocol": "TCP", "destination": {"ports": ["no spaces"]}}),
                ),
                "spec.ingress[0].destination.ports[0]",
            ),
            (
                rule(json!({"action": "Allow", "source": {"nets": ["10.0.0.0/33"]}})),
                "spec.ingress[0].source.nets[0]",
            ),
            (
                rule(json!({"action": "Allow", "source": {"selector": "has(a"}})),
                "spec.ingress[0].source.selector",
            ),
            (
                rule(json!({"action": "Allow", "source": {"services": {"name": "s"}}})),
                "spec.ingress[0].source.services",
            ),
            (
                rule(json!({"action": "Allow", "http": {"methods": ["GET"]}})),
                "spec.ingress[0].http",
            ),
            (
                rule(json!({"action": "Allow", "icmp": {"type": 8}})),
                "spec.ingress[0]",
            ),
            (
                rule(json!({"action": "Allow", "ipVersion": 5})),
                "spec.ingress[0].ipVersion",
            ),
            (
                rule(json!({"action": "Allow", "source": {"serviceAccounts": {"names": [1]}}})),
                "spec.ingress[0].source.serviceAccounts.names[0]",
            ),
        ];
        for (spec, field) in cases {
            let e = parse(&calico("NetworkPolicy", spec.clone())).expect_err("invalid");
            assert_eq!(e.error.field, field, "{spec}: {}", e.error);
        }
        let e = parse(&calico(
            "StagedNetworkPolicy",
            json!({"stagedAction": "Maybe"}),
        ))
        .expect_err("invalid");
        assert_eq!(e.error.field, "spec.stagedAction");
    }

    #[test]
    fn kinds_defaults_and_staged_actions() {
        let p = parse(&calico(
            "NetworkPolicy",
            json!({"egress": [{"action": "Allow"}]}),
        ))
        .expect("valid");
        let PolicySpec::Calico(s) = &p.spec else {
            panic!("calico")
        };
        assert_eq!(
            (s.ingress.is_some(), s.egress.is_some()),
            (false, true),
            "types from rules"
        );
        assert_eq!((&*s.tier, s.order), ("default", None));
        assert_eq!(p.reference.namespace.as_deref(), Some("x"));

        let p = parse(&calico(
            "GlobalNetworkPolicy",
            json!({"tier": "security", "order": 10.5}),
        ))
        .expect("valid");
        let PolicySpec::Calico(s) = &p.spec else {
            panic!("calico")
        };
        assert_eq!(
            (s.ingress.is_some(), s.egress.is_some()),
            (true, false),
            "no rules: Ingress"
        );
        assert_eq!((&*s.tier, s.order), ("security", Some(10.5)));
        assert_eq!(&*p.reference.tier, "security");
        assert_eq!(p.reference.namespace, None, "cluster-scoped");

        let p = parse(&calico(
            "StagedGlobalNetworkPolicy",
            json!({"stagedAction": "Delete"}),
        ))
        .expect("valid");
        assert_eq!(p.stage, Stage::Staged(StagedAction::Delete));
        let p = parse(&calico("StagedNetworkPolicy", json!({}))).expect("valid");
        assert_eq!(p.stage, Stage::Staged(StagedAction::Set));
    }

    #[test]
    fn tiers() {
        let tier = |name: &str, spec: serde_json::Value| {
            parse_tier(
                &json!({"apiVersion": "projectcalico.org/v3", "kind": "Tier",
                               "metadata": {"name": name}, "spec": spec}),
            )
            .expect("a tier")
        };
        let t = tier("security", json!({"order": 100, "defaultAction": "Pass"})).expect("valid");
        assert_eq!(
            (t.order, t.default_action),
            (Some(100.0), flowscribe_model::PolicyAction::Pass)
        );
        let t = tier("default", json!({})).expect("valid");
        assert_eq!(
            (t.order, t.default_action),
            (Some(1_000_000.0), flowscribe_model::PolicyAction::Deny)
        );
        let e = tier("x", json!({"order": 1, "colour": "red"})).expect_err("invalid");
        assert_eq!(e.error.field, "spec.colour");
        assert!(parse_tier(&json!({"apiVersion": "v1", "kind": "Tier"})).is_none());
    }
}
