//! The identity index: address + time -> who held the address then.
//!
//! One writer (the daemon, applying [`Change`]s from the manifests source or
//! the API watchers) and pure, allocation-free reads ([`IdentityIndex::resolve`]).
//! Every address keeps a short history of holdings `[from, until)`, so a
//! flow resolves to what held its address *at the time of the flow*: an IP
//! reused by a new pod resolves by time, and a flow from a deleted pod
//! resolves to it, marked stale, for `deleted_grace` after the deletion.
//!
//! Strings and label maps that many pods share (namespace, node, service
//! account, workload, labels of one ReplicaSet) are interned so the index
//! stays small at 150k pods.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use flowscribe_model::{Endpoint, EndpointKind, PodIdentity, ServiceRef, Stale, Workload};
use rustc_hash::FxHashMap;

use crate::networks::{NamedNetwork, Networks, POD_NETWORK, SERVICE_NETWORK};
use crate::objects::{Kind, Object, ObjectKey, OwnerRef, Pod, Service};

/// One change from a source.
#[derive(Debug, Clone)]
pub enum Change {
    Upsert(Object),
    Delete(ObjectKey),
}

/// Settings of the index.
#[derive(Debug, Clone)]
pub struct IndexConfig {
    /// How long a deleted object still resolves (as stale).
    pub deleted_grace: Duration,
    /// Configured named networks (most specific wins).
    pub networks: Vec<NamedNetwork>,
    /// The cluster's service CIDRs (not discoverable from the API).
    pub service_cidrs: Vec<ipnet::IpNet>,
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            deleted_grace: Duration::from_secs(600),
            networks: Vec::new(),
            service_cidrs: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
struct Holding<T> {
    from: SystemTime,
    until: Option<SystemTime>,
    /// Distinguishes two objects with the same name (a recreated pod).
    uid: Arc<str>,
    holder: T,
}

#[derive(Debug, Clone)]
struct ServiceEntry {
    name: Arc<str>,
    namespace: Arc<str>,
    /// (port, protocol, name)
    ports: Vec<(u16, u8, Option<Arc<str>>)>,
}

/// Histories of one address, newest last.
type History<T> = Vec<Holding<T>>;

/// Pick the holding of `history` at time `at`: among holdings open at `at`,
/// the one that started last; else the one that ended last before `at`
/// within `grace` (stale).
fn pick<T>(history: &[Holding<T>], at: SystemTime, grace: Duration) -> Option<(&T, Option<Stale>)> {
    let mut live: Option<&Holding<T>> = None;
    let mut ended: Option<&Holding<T>> = None;
    for h in history {
        match h.until {
            Some(until) if until <= at => {
                let within_grace = at.duration_since(until).unwrap_or_default() <= grace;
                if within_grace && ended.is_none_or(|e| e.until < h.until) {
                    ended = Some(h);
                }
            }
            _ if h.from <= at && live.is_none_or(|l| l.from <= h.from) => live = Some(h),
            _ => {}
        }
    }
    if let Some(h) = live {
        return Some((&h.holder, None));
    }
    ended.map(|h| (&h.holder, h.until.map(|deleted_at| Stale { deleted_at })))
}

/// Counters of what the index did with its input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexStats {
    pub pods: usize,
    pub addresses: usize,
    pub holdings: usize,
    pub services: usize,
    pub nodes: usize,
}

#[derive(Debug, Default)]
struct Interner {
    strings: HashSet<Arc<str>>,
    labels: HashSet<Arc<BTreeMap<String, String>>>,
}

impl Interner {
    fn str(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.strings.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.strings.insert(a.clone());
        a
    }

    fn labels(&mut self, l: &BTreeMap<String, String>) -> Arc<BTreeMap<String, String>> {
        if let Some(a) = self.labels.get(l) {
            return a.clone();
        }
        let a = Arc::new(l.clone());
        self.labels.insert(a.clone());
        a
    }

    /// Forget values only the interner still holds.
    fn collect(&mut self) {
        self.strings.retain(|s| Arc::strong_count(s) > 1);
        self.labels.retain(|l| Arc::strong_count(l) > 1);
    }
}

/// The index. See the module documentation.
#[derive(Debug)]
pub struct IdentityIndex {
    config: IndexConfig,
    /// Live objects as last seen, to rebuild identities when a namespace or
    /// an owner changes after its pods.
    objects: HashMap<ObjectKey, Object>,
    // Address-keyed maps use FxHash: the keys are cluster addresses, not
    // attacker-chosen, and the per-flow lookup is the hot path.
    pods_by_ip: FxHashMap<IpAddr, History<Arc<PodIdentity>>>,
    services_by_ip: FxHashMap<IpAddr, History<Arc<ServiceEntry>>>,
    nodes_by_ip: FxHashMap<IpAddr, Arc<str>>,
    /// Host-network pods by (node address, declared port, protocol).
    host_ports: FxHashMap<(IpAddr, u16, u8), Arc<PodIdentity>>,
    /// Endpoint addresses per (namespace, service name).
    service_backends: HashMap<(String, String), HashSet<IpAddr>>,
    networks: Networks,
    interner: Interner,
}

impl IdentityIndex {
    pub fn new(config: IndexConfig) -> Self {
        let mut index = IdentityIndex {
            networks: Networks::default(),
            config,
            objects: HashMap::new(),
            pods_by_ip: FxHashMap::default(),
            services_by_ip: FxHashMap::default(),
            nodes_by_ip: FxHashMap::default(),
            host_ports: FxHashMap::default(),
            service_backends: HashMap::new(),
            interner: Interner::default(),
        };
        index.rebuild_networks();
        index
    }

    pub fn stats(&self) -> IndexStats {
        IndexStats {
            pods: self.objects.keys().filter(|k| k.kind == Kind::Pod).count(),
            addresses: self.pods_by_ip.len(),
            holdings: self.pods_by_ip.values().map(Vec::len).sum(),
            services: self
                .objects
                .keys()
                .filter(|k| k.kind == Kind::Service)
                .count(),
            nodes: self.objects.keys().filter(|k| k.kind == Kind::Node).count(),
        }
    }

    /// Apply one change observed at `at`.
    pub fn apply(&mut self, change: Change, at: SystemTime) {
        match change {
            Change::Upsert(object) => self.upsert(object, at),
            Change::Delete(key) => self.delete(&key, at),
        }
    }

    /// Make the live objects of `kind` exactly `objects` (a relist, or a
    /// re-read of the manifests): objects not in the list are deleted at `at`.
    pub fn replace_kind(&mut self, kind: Kind, objects: Vec<Object>, at: SystemTime) {
        let present: HashSet<ObjectKey> = objects.iter().map(Object::key).collect();
        let gone: Vec<ObjectKey> = self
            .objects
            .keys()
            .filter(|k| k.kind == kind && !present.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            self.delete(&key, at);
        }
        for o in objects {
            self.upsert(o, at);
        }
    }

    /// Forget holdings that ended more than the grace period before `now`.
    pub fn expire(&mut self, now: SystemTime) {
        let grace = self.config.deleted_grace;
        let keep = |until: Option<SystemTime>| {
            until.is_none_or(|u| now.duration_since(u).unwrap_or_default() <= grace)
        };
        self.pods_by_ip.retain(|_, h| {
            h.retain(|x| keep(x.until));
            !h.is_empty()
        });
        self.services_by_ip.retain(|_, h| {
            h.retain(|x| keep(x.until));
            !h.is_empty()
        });
        self.interner.collect();
    }

    fn upsert(&mut self, object: Object, at: SystemTime) {
        let key = object.key();
        // A relist or a manifests re-read repeats unchanged objects; they
        // must not cost a rebuild of their namespace.
        if self.objects.get(&key) == Some(&object) {
            return;
        }
        let previous = self.objects.insert(key.clone(), object.clone());
        match object {
            Object::Pod(pod) => {
                let prev = match previous {
                    Some(Object::Pod(p)) => Some(p),
                    _ => None,
                };
                self.upsert_pod(&pod, prev.as_ref(), at);
            }
            Object::Namespace(_) => self.rebuild_namespace(&key.name, at),
            Object::Owner(..) => self.rebuild_namespace(&key.namespace, at),
            Object::Node(_) => {
                self.rebuild_nodes();
                self.rebuild_networks();
            }
            Object::Service(svc) => {
                let prev = match previous {
                    Some(Object::Service(s)) => Some(s),
                    _ => None,
                };
                self.upsert_service(&svc, prev.as_ref(), at);
            }
            Object::EndpointSlice(_) => self.rebuild_backends(&key.namespace),
        }
    }

    fn delete(&mut self, key: &ObjectKey, at: SystemTime) {
        let Some(previous) = self.objects.remove(key) else {
            return;
        };
        match previous {
            Object::Pod(p) => self.close_pod(&p, at),
            Object::Namespace(_) => self.rebuild_namespace(&key.name, at),
            Object::Owner(..) => self.rebuild_namespace(&key.namespace, at),
            Object::Node(_) => {
                self.rebuild_nodes();
                self.rebuild_networks();
            }
            Object::Service(s) => close(&mut self.services_by_ip, &s.cluster_ips, &s.meta.uid, at),
            Object::EndpointSlice(_) => self.rebuild_backends(&key.namespace),
        }
    }

    fn top_owner(&mut self, namespace: &str, owners: &[OwnerRef]) -> Option<Workload> {
        let mut owner = owners.iter().find(|o| o.controller).or(owners.first())?;
        // Follow ReplicaSet -> Deployment and Job -> CronJob; other owners
        // (StatefulSet, DaemonSet, custom controllers) are the top.
        for _ in 0..4 {
            let kind = match owner.kind.as_str() {
                "ReplicaSet" => Kind::ReplicaSet,
                "Job" => Kind::Job,
                _ => break,
            };
            let key = ObjectKey {
                kind,
                namespace: namespace.to_string(),
                name: owner.name.clone(),
            };
            let Some(Object::Owner(_, meta)) = self.objects.get(&key) else {
                break;
            };
            match meta
                .owners
                .iter()
                .find(|o| o.controller)
                .or(meta.owners.first())
            {
                Some(next) => owner = next,
                None => break,
            }
        }
        let (kind, name) = (owner.kind.clone(), owner.name.clone());
        Some(Workload {
            kind: self.interner.str(&kind),
            name: self.interner.str(&name),
        })
    }

    fn identity(&mut self, pod: &Pod) -> Arc<PodIdentity> {
        let ns_key = ObjectKey {
            kind: Kind::Namespace,
            namespace: String::new(),
            name: pod.meta.namespace.clone(),
        };
        let ns_labels = match self.objects.get(&ns_key) {
            Some(Object::Namespace(m)) => m.labels.clone(),
            // Namespace not (yet) known: Kubernetes always sets this label.
            _ => BTreeMap::from([(
                "kubernetes.io/metadata.name".to_string(),
                pod.meta.namespace.clone(),
            )]),
        };
        let workload = self.top_owner(&pod.meta.namespace, &pod.meta.owners);
        let ports: Vec<(Arc<str>, u16, u8)> = pod
            .ports
            .iter()
            .map(|p| {
                let name = self.interner.str(p.name.as_deref().unwrap_or(""));
                (name, p.port, p.protocol)
            })
            .collect();
        Arc::new(PodIdentity {
            name: Arc::from(pod.meta.name.as_str()),
            uid: Arc::from(pod.meta.uid.as_str()),
            namespace: self.interner.str(&pod.meta.namespace),
            labels: self.interner.labels(&pod.meta.labels),
            service_account: pod.service_account.as_deref().map(|s| self.interner.str(s)),
            node: pod.node.as_deref().map(|s| self.interner.str(s)),
            workload,
            namespace_labels: self.interner.labels(&ns_labels),
            ports: ports.into(),
        })
    }

    fn upsert_pod(&mut self, pod: &Pod, prev: Option<&Pod>, at: SystemTime) {
        if let Some(prev) = prev {
            if prev.meta.uid != pod.meta.uid {
                // Same name, new object (a StatefulSet pod recreated).
                self.close_pod(prev, at);
            } else if prev.host_network {
                self.remove_host_ports(prev);
            }
        }
        let identity = self.identity(pod);
        let uid: Arc<str> = identity.uid.clone();
        if pod.host_network {
            if !pod.finished {
                self.add_host_ports(pod, &identity);
            }
            return;
        }
        let held: &[IpAddr] = if pod.finished { &[] } else { &pod.ips };
        // Addresses the pod no longer holds end now.
        if let Some(prev) = prev.filter(|p| p.meta.uid == pod.meta.uid) {
            let released: Vec<IpAddr> = prev
                .ips
                .iter()
                .filter(|ip| !held.contains(ip))
                .copied()
                .collect();
            close(&mut self.pods_by_ip, &released, &uid, at);
        }
        let from = pod.meta.created.unwrap_or(at).min(at);
        for ip in held {
            let history = self.pods_by_ip.entry(*ip).or_default();
            match history
                .iter_mut()
                .find(|h| h.until.is_none() && h.uid == uid)
            {
                Some(open) => open.holder = identity.clone(),
                None => history.push(Holding {
                    from,
                    until: None,
                    uid: uid.clone(),
                    holder: identity.clone(),
                }),
            }
        }
    }

    fn close_pod(&mut self, pod: &Pod, at: SystemTime) {
        if pod.host_network {
            self.remove_host_ports(pod);
        } else {
            close(&mut self.pods_by_ip, &pod.ips, &pod.meta.uid, at);
        }
    }

    fn node_addresses(&self, node: &str) -> Vec<IpAddr> {
        let key = ObjectKey {
            kind: Kind::Node,
            namespace: String::new(),
            name: node.to_string(),
        };
        match self.objects.get(&key) {
            Some(Object::Node(n)) => n.addresses.clone(),
            _ => Vec::new(),
        }
    }

    fn add_host_ports(&mut self, pod: &Pod, identity: &Arc<PodIdentity>) {
        // A host-network pod's podIPs are its node's addresses.
        let mut addrs = pod.ips.clone();
        if let Some(node) = &pod.node {
            addrs.extend(self.node_addresses(node));
        }
        for a in addrs {
            for p in &pod.ports {
                self.host_ports
                    .insert((a, p.port, p.protocol), identity.clone());
            }
        }
    }

    fn remove_host_ports(&mut self, pod: &Pod) {
        let uid = pod.meta.uid.as_str();
        self.host_ports.retain(|_, id| &*id.uid != uid);
    }

    /// A namespace's labels or an owner changed: rebuild that namespace's
    /// pod identities so flows see the new values.
    fn rebuild_namespace(&mut self, namespace: &str, at: SystemTime) {
        let pods: Vec<Pod> = self
            .objects
            .values()
            .filter_map(|o| match o {
                Object::Pod(p) if p.meta.namespace == namespace => Some(p.clone()),
                _ => None,
            })
            .collect();
        for p in pods {
            self.upsert_pod(&p, Some(&p), at);
        }
    }

    fn rebuild_nodes(&mut self) {
        self.nodes_by_ip.clear();
        let mut host_pods = Vec::new();
        for o in self.objects.values() {
            match o {
                Object::Node(n) => {
                    let name = self.interner.str(&n.meta.name);
                    for a in &n.addresses {
                        self.nodes_by_ip.insert(*a, name.clone());
                    }
                }
                Object::Pod(p) if p.host_network => host_pods.push(p.clone()),
                _ => {}
            }
        }
        // Node addresses changed: host-network pods' ports move with them.
        for p in host_pods {
            self.remove_host_ports(&p);
            if !p.finished {
                let identity = self.identity(&p);
                self.add_host_ports(&p, &identity);
            }
        }
    }

    fn rebuild_networks(&mut self) {
        let pod_cidrs: Vec<ipnet::IpNet> = self
            .objects
            .values()
            .filter_map(|o| match o {
                Object::Node(n) => Some(n.pod_cidrs.iter().copied()),
                _ => None,
            })
            .flatten()
            .collect();
        let mut named = vec![
            NamedNetwork {
                name: POD_NETWORK.to_string(),
                cidrs: pod_cidrs,
            },
            NamedNetwork {
                name: SERVICE_NETWORK.to_string(),
                cidrs: self.config.service_cidrs.clone(),
            },
        ];
        // Configured names win over derived ones on equal prefixes.
        named.splice(0..0, self.config.networks.iter().cloned());
        self.networks = Networks::with(&named);
    }

    fn upsert_service(&mut self, svc: &Service, prev: Option<&Service>, at: SystemTime) {
        if let Some(prev) = prev {
            let released: Vec<IpAddr> = prev
                .cluster_ips
                .iter()
                .filter(|ip| prev.meta.uid != svc.meta.uid || !svc.cluster_ips.contains(ip))
                .copied()
                .collect();
            close(&mut self.services_by_ip, &released, &prev.meta.uid, at);
        }
        let entry = Arc::new(ServiceEntry {
            name: self.interner.str(&svc.meta.name),
            namespace: self.interner.str(&svc.meta.namespace),
            ports: svc
                .ports
                .iter()
                .map(|p| {
                    let name = p.name.as_deref().map(|n| self.interner.str(n));
                    (p.port, p.protocol, name)
                })
                .collect(),
        });
        let uid: Arc<str> = Arc::from(svc.meta.uid.as_str());
        let from = svc.meta.created.unwrap_or(at).min(at);
        for ip in &svc.cluster_ips {
            let history = self.services_by_ip.entry(*ip).or_default();
            match history
                .iter_mut()
                .find(|h| h.until.is_none() && h.uid == uid)
            {
                Some(open) => open.holder = entry.clone(),
                None => history.push(Holding {
                    from,
                    until: None,
                    uid: uid.clone(),
                    holder: entry.clone(),
                }),
            }
        }
    }

    fn rebuild_backends(&mut self, namespace: &str) {
        self.service_backends.retain(|(ns, _), _| ns != namespace);
        for o in self.objects.values() {
            if let Object::EndpointSlice(s) = o
                && s.meta.namespace == namespace
                && let Some(svc) = &s.service
            {
                self.service_backends
                    .entry((namespace.to_string(), svc.clone()))
                    .or_default()
                    .extend(s.addresses.iter().copied());
            }
        }
    }

    /// Is `addr` an endpoint of the service?
    pub fn is_backend(&self, service: &ServiceRef, addr: IpAddr) -> bool {
        self.service_backends
            .get(&(service.namespace.to_string(), service.name.to_string()))
            .is_some_and(|s| s.contains(&addr))
    }

    /// The pod that held `addr` at `at` (live or stale), if any.
    pub fn pod_at(
        &self,
        addr: IpAddr,
        at: SystemTime,
    ) -> Option<(Arc<PodIdentity>, Option<Stale>)> {
        let history = self.pods_by_ip.get(&addr)?;
        pick(history, at, self.config.deleted_grace).map(|(p, s)| (p.clone(), s))
    }

    /// Who held `addr` at `at`. `listening` is the (port, protocol) the
    /// address was reached on, when it is the responder: it names a
    /// host-network pod, and a service's port.
    pub fn resolve(&self, addr: IpAddr, listening: Option<(u16, u8)>, at: SystemTime) -> Endpoint {
        let (kind, network) = self.networks.classify(addr);
        let mut ep = Endpoint::of_kind(kind);
        ep.network = Some(network);
        let grace = self.config.deleted_grace;

        if let Some((pod, stale)) = self.pod_at(addr, at) {
            ep.kind = EndpointKind::Pod;
            ep.node = pod.node.clone();
            ep.pod = Some(pod);
            ep.stale = stale;
            return ep;
        }
        if let Some((svc, stale)) = self
            .services_by_ip
            .get(&addr)
            .and_then(|h| pick(h, at, grace))
        {
            ep.kind = EndpointKind::Service;
            ep.stale = stale;
            ep.service = Some(ServiceRef {
                name: svc.name.clone(),
                namespace: svc.namespace.clone(),
                port_name: listening.and_then(|(port, proto)| {
                    svc.ports
                        .iter()
                        .find(|(p, pr, _)| *p == port && *pr == proto)
                        .and_then(|(_, _, n)| n.clone())
                }),
            });
            return ep;
        }
        if let Some((port, proto)) = listening
            && let Some(pod) = self.host_ports.get(&(addr, port, proto))
        {
            ep.kind = EndpointKind::HostNetworkPod;
            ep.node = pod.node.clone();
            ep.pod = Some(pod.clone());
            return ep;
        }
        if let Some(node) = self.nodes_by_ip.get(&addr) {
            ep.kind = EndpointKind::Node;
            ep.node = Some(node.clone());
        }
        ep
    }
}

fn close<T>(map: &mut FxHashMap<IpAddr, History<T>>, ips: &[IpAddr], uid: &str, at: SystemTime) {
    for ip in ips {
        if let Some(history) = map.get_mut(ip) {
            for h in history.iter_mut() {
                if h.until.is_none() && &*h.uid == uid {
                    h.until = Some(at.max(h.from));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
