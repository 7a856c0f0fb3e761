//! The parts of Kubernetes objects that identity needs, parsed from JSON.
//!
//! Both sources (a manifests directory and the API server's list/watch) hand
//! over untyped JSON, and this module is the one place that reads it. A
//! malformed object becomes an [`ObjectError`] naming the field; it never
//! panics and never takes other objects down with it. We parse JSON values
//! rather than typed `k8s-openapi` structs so that one bad field skips one
//! object instead of failing a whole list or watch stream.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::SystemTime;

use serde_json::Value;

/// The kinds the index reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Pod,
    Namespace,
    Node,
    Service,
    EndpointSlice,
    /// Metadata only: owner references, to find a pod's top owner.
    ReplicaSet,
    Job,
}

impl Kind {
    /// Every kind, in the order an index wants them (owners and namespaces
    /// before pods).
    pub const ALL: [Kind; 7] = [
        Kind::Namespace,
        Kind::Node,
        Kind::ReplicaSet,
        Kind::Job,
        Kind::Pod,
        Kind::Service,
        Kind::EndpointSlice,
    ];

    /// API group, version and plural resource name.
    pub fn api(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Kind::Pod => ("", "v1", "pods"),
            Kind::Namespace => ("", "v1", "namespaces"),
            Kind::Node => ("", "v1", "nodes"),
            Kind::Service => ("", "v1", "services"),
            Kind::EndpointSlice => ("discovery.k8s.io", "v1", "endpointslices"),
            Kind::ReplicaSet => ("apps", "v1", "replicasets"),
            Kind::Job => ("batch", "v1", "jobs"),
        }
    }

    /// The kind an object's `apiVersion` and `kind` name, if we read it.
    pub fn from_api(api_version: &str, kind: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| {
            let (group, version, _) = k.api();
            let matches_version = match api_version.split_once('/') {
                Some((g, v)) => g == group && v == version,
                None => group.is_empty() && api_version == version,
            };
            k.as_str() == kind && matches_version
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pod => "Pod",
            Kind::Namespace => "Namespace",
            Kind::Node => "Node",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::ReplicaSet => "ReplicaSet",
            Kind::Job => "Job",
        }
    }
}

/// Identifies an object within its kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRef {
    pub kind: String,
    pub name: String,
    pub controller: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Meta {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    pub owners: Vec<OwnerRef>,
    pub created: Option<SystemTime>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerPort {
    pub name: Option<String>,
    pub port: u16,
    pub protocol: u8,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pod {
    pub meta: Meta,
    pub node: Option<String>,
    pub service_account: Option<String>,
    pub host_network: bool,
    pub ips: Vec<IpAddr>,
    pub ports: Vec<ContainerPort>,
    /// Succeeded or Failed: the pod no longer holds its address.
    pub finished: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub meta: Meta,
    pub addresses: Vec<IpAddr>,
    pub pod_cidrs: Vec<ipnet::IpNet>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServicePort {
    pub name: Option<String>,
    pub port: u16,
    pub protocol: u8,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub meta: Meta,
    pub cluster_ips: Vec<IpAddr>,
    pub ports: Vec<ServicePort>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EndpointSlice {
    pub meta: Meta,
    /// `kubernetes.io/service-name`.
    pub service: Option<String>,
    pub addresses: Vec<IpAddr>,
}

/// One parsed object.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    Pod(Pod),
    Namespace(Meta),
    Node(Node),
    Service(Service),
    EndpointSlice(EndpointSlice),
    /// ReplicaSet or Job: only the metadata matters.
    Owner(Kind, Meta),
}

impl Object {
    pub fn meta(&self) -> &Meta {
        match self {
            Object::Pod(p) => &p.meta,
            Object::Namespace(m) | Object::Owner(_, m) => m,
            Object::Node(n) => &n.meta,
            Object::Service(s) => &s.meta,
            Object::EndpointSlice(e) => &e.meta,
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Object::Pod(_) => Kind::Pod,
            Object::Namespace(_) => Kind::Namespace,
            Object::Node(_) => Kind::Node,
            Object::Service(_) => Kind::Service,
            Object::EndpointSlice(_) => Kind::EndpointSlice,
            Object::Owner(k, _) => *k,
        }
    }

    pub fn key(&self) -> ObjectKey {
        let m = self.meta();
        ObjectKey {
            kind: self.kind(),
            namespace: m.namespace.clone(),
            name: m.name.clone(),
        }
    }
}

/// Why an object was skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {name}: {field}: {problem}")]
pub struct ObjectError {
    pub kind: String,
    /// `namespace/name`, or `?` when the name itself is missing.
    pub name: String,
    pub field: String,
    pub problem: String,
}

struct Ctx<'a> {
    kind: &'a str,
    name: String,
}

impl Ctx<'_> {
    fn err(&self, field: &str, problem: impl Into<String>) -> ObjectError {
        ObjectError {
            kind: self.kind.to_string(),
            name: self.name.clone(),
            field: field.to_string(),
            problem: problem.into(),
        }
    }

    /// An optional string field; present but not a string is an error.
    fn opt_str<'v>(&self, v: &'v Value, path: &str) -> Result<Option<&'v str>, ObjectError> {
        match lookup(v, path) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => {
                Err(self.err(path, format!("expected a string, found {}", type_of(other))))
            }
        }
    }

    fn opt_array<'v>(&self, v: &'v Value, path: &str) -> Result<&'v [Value], ObjectError> {
        match lookup(v, path) {
            None | Some(Value::Null) => Ok(&[]),
            Some(Value::Array(a)) => Ok(a),
            Some(other) => {
                Err(self.err(path, format!("expected a list, found {}", type_of(other))))
            }
        }
    }

    fn ip(&self, s: &str, path: &str) -> Result<IpAddr, ObjectError> {
        s.parse()
            .map_err(|_| self.err(path, format!("{s:?} is not an IP address")))
    }
}

fn lookup<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn protocol(ctx: &Ctx, v: &Value, path: &str) -> Result<u8, ObjectError> {
    match ctx.opt_str(v, "protocol")?.unwrap_or("TCP") {
        "TCP" => Ok(6),
        "UDP" => Ok(17),
        "SCTP" => Ok(132),
        other => Err(ctx.err(path, format!("unknown protocol {other:?}"))),
    }
}

fn port(ctx: &Ctx, v: &Value, field: &str, path: &str) -> Result<u16, ObjectError> {
    v.get(field)
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .ok_or_else(|| ctx.err(path, "expected a port number 1-65535"))
}

fn labels(ctx: &Ctx, v: &Value) -> Result<BTreeMap<String, String>, ObjectError> {
    match lookup(v, "metadata.labels") {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(ctx.err(
                    &format!("metadata.labels.{k}"),
                    format!("expected a string, found {}", type_of(other)),
                )),
            })
            .collect(),
        Some(other) => Err(ctx.err(
            "metadata.labels",
            format!("expected an object, found {}", type_of(other)),
        )),
    }
}

fn meta(ctx: &Ctx, v: &Value, namespaced: bool) -> Result<Meta, ObjectError> {
    let name = ctx
        .opt_str(v, "metadata.name")?
        .ok_or_else(|| ctx.err("metadata.name", "missing"))?
        .to_string();
    let namespace = if namespaced {
        ctx.opt_str(v, "metadata.namespace")?
            .unwrap_or("default")
            .to_string()
    } else {
        String::new()
    };
    let created = match ctx.opt_str(v, "metadata.creationTimestamp")? {
        None => None,
        Some(s) => Some(humantime::parse_rfc3339_weak(s).map_err(|e| {
            ctx.err(
                "metadata.creationTimestamp",
                format!("{s:?} is not an RFC 3339 time: {e}"),
            )
        })?),
    };
    let mut owners = Vec::new();
    for (i, o) in ctx
        .opt_array(v, "metadata.ownerReferences")?
        .iter()
        .enumerate()
    {
        let path = format!("metadata.ownerReferences[{i}]");
        let kind = ctx.opt_str(o, "kind")?;
        let oname = ctx.opt_str(o, "name")?;
        let (Some(kind), Some(oname)) = (kind, oname) else {
            return Err(ctx.err(&path, "kind and name are required"));
        };
        owners.push(OwnerRef {
            kind: kind.to_string(),
            name: oname.to_string(),
            controller: o
                .get("controller")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        });
    }
    Ok(Meta {
        name,
        namespace,
        uid: ctx.opt_str(v, "metadata.uid")?.unwrap_or("").to_string(),
        labels: labels(ctx, v)?,
        owners,
        created,
    })
}

fn pod(ctx: &Ctx, v: &Value) -> Result<Pod, ObjectError> {
    let meta = meta(ctx, v, true)?;
    let mut ips = Vec::new();
    for (i, ip) in ctx.opt_array(v, "status.podIPs")?.iter().enumerate() {
        let path = format!("status.podIPs[{i}].ip");
        let s = ctx
            .opt_str(ip, "ip")?
            .ok_or_else(|| ctx.err(&path, "missing"))?;
        ips.push(ctx.ip(s, &path)?);
    }
    if let Some(s) = ctx.opt_str(v, "status.podIP")? {
        let ip = ctx.ip(s, "status.podIP")?;
        if !ips.contains(&ip) {
            ips.insert(0, ip);
        }
    }
    let mut ports = Vec::new();
    for key in ["spec.initContainers", "spec.containers"] {
        for (ci, c) in ctx.opt_array(v, key)?.iter().enumerate() {
            for (pi, p) in ctx.opt_array(c, "ports")?.iter().enumerate() {
                let path = format!("{key}[{ci}].ports[{pi}]");
                ports.push(ContainerPort {
                    name: ctx.opt_str(p, "name")?.map(str::to_string),
                    port: port(ctx, p, "containerPort", &format!("{path}.containerPort"))?,
                    protocol: protocol(ctx, p, &format!("{path}.protocol"))?,
                });
            }
        }
    }
    let phase = ctx.opt_str(v, "status.phase")?;
    Ok(Pod {
        meta,
        node: ctx.opt_str(v, "spec.nodeName")?.map(str::to_string),
        service_account: ctx
            .opt_str(v, "spec.serviceAccountName")?
            .or(ctx.opt_str(v, "spec.serviceAccount")?)
            .map(str::to_string),
        host_network: lookup(v, "spec.hostNetwork")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        ips,
        ports,
        finished: matches!(phase, Some("Succeeded" | "Failed")),
    })
}

fn node(ctx: &Ctx, v: &Value) -> Result<Node, ObjectError> {
    let meta = meta(ctx, v, false)?;
    let mut addresses = Vec::new();
    for (i, a) in ctx.opt_array(v, "status.addresses")?.iter().enumerate() {
        let ty = ctx.opt_str(a, "type")?;
        if matches!(ty, Some("InternalIP" | "ExternalIP")) {
            let path = format!("status.addresses[{i}].address");
            let s = ctx
                .opt_str(a, "address")?
                .ok_or_else(|| ctx.err(&path, "missing"))?;
            addresses.push(ctx.ip(s, &path)?);
        }
    }
    let mut pod_cidrs = Vec::new();
    let mut cidrs: Vec<&str> = ctx
        .opt_array(v, "spec.podCIDRs")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    if let Some(c) = ctx.opt_str(v, "spec.podCIDR")? {
        cidrs.push(c);
    }
    for c in cidrs {
        let net: ipnet::IpNet = c
            .parse()
            .map_err(|_| ctx.err("spec.podCIDRs", format!("{c:?} is not a CIDR")))?;
        if !pod_cidrs.contains(&net) {
            pod_cidrs.push(net);
        }
    }
    Ok(Node {
        meta,
        addresses,
        pod_cidrs,
    })
}

fn service(ctx: &Ctx, v: &Value) -> Result<Service, ObjectError> {
    let meta = meta(ctx, v, true)?;
    let mut cluster_ips = Vec::new();
    let mut raw: Vec<(String, &str)> = ctx
        .opt_array(v, "spec.clusterIPs")?
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.as_str().map(|s| (format!("spec.clusterIPs[{i}]"), s)))
        .collect();
    if let Some(s) = ctx.opt_str(v, "spec.clusterIP")? {
        raw.push(("spec.clusterIP".to_string(), s));
    }
    for (path, s) in raw {
        // Headless services have no virtual IP: flows go straight to pods.
        if s == "None" || s.is_empty() {
            continue;
        }
        let ip = ctx.ip(s, &path)?;
        if !cluster_ips.contains(&ip) {
            cluster_ips.push(ip);
        }
    }
    let mut ports = Vec::new();
    for (i, p) in ctx.opt_array(v, "spec.ports")?.iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        ports.push(ServicePort {
            name: ctx.opt_str(p, "name")?.map(str::to_string),
            port: port(ctx, p, "port", &format!("{path}.port"))?,
            protocol: protocol(ctx, p, &format!("{path}.protocol"))?,
        });
    }
    Ok(Service {
        meta,
        cluster_ips,
        ports,
    })
}

fn endpoint_slice(ctx: &Ctx, v: &Value) -> Result<EndpointSlice, ObjectError> {
    let meta = meta(ctx, v, true)?;
    let mut addresses = Vec::new();
    let family = ctx.opt_str(v, "addressType")?;
    // FQDN slices carry names, not addresses; nothing for an IP index.
    if family != Some("FQDN") {
        for (i, e) in ctx.opt_array(v, "endpoints")?.iter().enumerate() {
            for (j, a) in ctx.opt_array(e, "addresses")?.iter().enumerate() {
                let path = format!("endpoints[{i}].addresses[{j}]");
                let s = a
                    .as_str()
                    .ok_or_else(|| ctx.err(&path, "expected a string"))?;
                addresses.push(ctx.ip(s, &path)?);
            }
        }
    }
    Ok(EndpointSlice {
        service: meta.labels.get("kubernetes.io/service-name").cloned(),
        meta,
        addresses,
    })
}

/// Parse one object of a known kind. `Ok(None)`: a kind the index ignores.
pub fn parse(v: &Value) -> Result<Option<Object>, ObjectError> {
    let api_version = v.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind_name = v.get("kind").and_then(Value::as_str).unwrap_or("");
    let Some(kind) = Kind::from_api(api_version, kind_name) else {
        return Ok(None);
    };
    parse_as(kind, v).map(Some)
}

/// Parse an object whose kind is known from context (a watch on one resource
/// does not repeat `kind` in every item of a list).
pub fn parse_as(kind: Kind, v: &Value) -> Result<Object, ObjectError> {
    let ns = lookup(v, "metadata.namespace").and_then(Value::as_str);
    let name = lookup(v, "metadata.name").and_then(Value::as_str);
    let ctx = Ctx {
        kind: kind.as_str(),
        name: match (ns, name) {
            (Some(ns), Some(n)) => format!("{ns}/{n}"),
            (None, Some(n)) => n.to_string(),
            _ => "?".to_string(),
        },
    };
    Ok(match kind {
        Kind::Pod => Object::Pod(pod(&ctx, v)?),
        Kind::Namespace => Object::Namespace(meta(&ctx, v, false)?),
        Kind::Node => Object::Node(node(&ctx, v)?),
        Kind::Service => Object::Service(service(&ctx, v)?),
        Kind::EndpointSlice => Object::EndpointSlice(endpoint_slice(&ctx, v)?),
        Kind::ReplicaSet | Kind::Job => Object::Owner(kind, meta(&ctx, v, true)?),
    })
}

#[cfg(test)]
mod tests;
