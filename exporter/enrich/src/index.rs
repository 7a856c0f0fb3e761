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
//! account, workload, labels of one ReplicaSet, owner references, declared
//! ports) are interned, and a pod is kept as a slim record (its identity
//! plus what a rebuild needs) rather than as the parsed object, so the index
//! stays small at 150k pods (`benches/index.rs`).
//!
//! Addresses live in [`AddrMap`]s: one cache line per address, holding the
//! address's history inline, reached by a multiply-shift hash. A pod
//! lookup then touches two cold lines, the slot and the identity's
//! reference count; [`IdentityIndex::resolve_batch`] starts those loads for
//! dozens of queries before it waits for any (see there).

mod addr_map;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flowscribe_model::{Endpoint, EndpointKind, Name, PodIdentity, ServiceRef, Stale, Workload};
use rustc_hash::FxHashMap;

use addr_map::{AddrMap, Key, touch};

use crate::networks::{NamedNetwork, Networks, POD_NETWORK, SERVICE_NETWORK};
use crate::objects::{ContainerPort, Kind, Object, ObjectKey, OwnerRef, Pod, Service};

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

/// A time as nanoseconds since the Unix epoch: what holdings store and
/// compare (an integer compare per holding, and 8 bytes instead of 16, so a
/// pod's address slot fits one cache line). Covers the years 1678 to 2262;
/// times outside are clamped to the ends.
type Nanos = i64;

/// `until` of a holding that has not ended.
const OPEN: Nanos = Nanos::MAX;

fn nanos(t: SystemTime) -> Nanos {
    match t.duration_since(UNIX_EPOCH) {
        // Below OPEN, so that no closing time reads as open.
        Ok(d) => Nanos::try_from(d.as_nanos()).map_or(OPEN - 1, |n| n.min(OPEN - 1)),
        Err(before) => Nanos::try_from(before.duration().as_nanos()).map_or(Nanos::MIN, |n| -n),
    }
}

fn system_time(n: Nanos) -> SystemTime {
    let magnitude = Duration::from_nanos(n.unsigned_abs());
    let t = if n >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    };
    // Every value `nanos` makes is representable.
    t.unwrap_or(UNIX_EPOCH)
}

/// One object's tenure of an address: `[from, until)`.
#[derive(Debug, Clone)]
struct Holding<T> {
    from: Nanos,
    /// [`OPEN`] while the object still holds the address.
    until: Nanos,
    /// The holder also names the object (its uid), which distinguishes two
    /// objects with the same name (a recreated pod).
    holder: T,
}

impl<T> Holding<T> {
    /// A holding picked for time `at` is stale when it ended by then.
    fn stale_at(&self, at: Nanos) -> Option<Stale> {
        (self.until <= at).then(|| Stale {
            deleted_at: system_time(self.until),
        })
    }
}

/// What a holding holds: anything that knows its object's uid.
trait Holder {
    fn uid(&self) -> &str;
}

/// A pod holding an address. The node name is kept beside the identity,
/// in the address table's slot: [`PodIdentity::node`] lies on another cache
/// line than the `Arc`'s reference count, and a per-flow lookup that needs
/// both would otherwise touch two cold lines of the identity.
#[derive(Debug, Clone)]
struct PodHolder {
    identity: Arc<PodIdentity>,
    /// Interned: handing it to a flow end copies a pointer (no reference
    /// count to touch).
    node: Option<Name>,
}

impl PodHolder {
    fn of(identity: &Arc<PodIdentity>) -> Self {
        PodHolder {
            identity: identity.clone(),
            node: identity.node.as_deref().map(Name::new),
        }
    }
}

impl Holder for PodHolder {
    fn uid(&self) -> &str {
        &self.identity.uid
    }
}

impl Holder for Arc<ServiceEntry> {
    fn uid(&self) -> &str {
        &self.uid
    }
}

#[derive(Debug, Clone)]
struct ServiceEntry {
    uid: Arc<str>,
    /// What a flow to the service on an undeclared or unnamed port says.
    unnamed: Arc<ServiceRef>,
    /// (port, protocol, what a flow to that port says) for each named
    /// port: a flow end shares it (a reference count, no allocation).
    named: Vec<(u16, u8, Arc<ServiceRef>)>,
}

/// The holdings of one address, oldest first.
///
/// Almost every address has had exactly one holder within the grace period,
/// so that case lives inline in the hash table slot: the per-flow lookup
/// reaches the holding without following a pointer to a separate vector.
#[derive(Debug, Clone)]
enum History<T> {
    One(Holding<T>),
    Many(Vec<Holding<T>>),
}

/// What an empty slot of the address map holds; never a real history.
impl<T> Default for History<T> {
    fn default() -> Self {
        History::Many(Vec::new())
    }
}

impl<T> History<T> {
    fn as_slice(&self) -> &[Holding<T>] {
        match self {
            History::One(h) => std::slice::from_ref(h),
            History::Many(v) => v,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [Holding<T>] {
        match self {
            History::One(h) => std::slice::from_mut(h),
            History::Many(v) => v,
        }
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn push(&mut self, holding: Holding<T>) {
        match self {
            History::Many(v) => v.push(holding),
            History::One(_) => {
                let History::One(first) =
                    std::mem::replace(self, History::Many(Vec::with_capacity(2)))
                else {
                    return;
                };
                if let History::Many(v) = self {
                    v.push(first);
                    v.push(holding);
                }
            }
        }
    }

    /// Keep the holdings `keep` accepts; false when none is left.
    fn retain(&mut self, keep: impl Fn(&Holding<T>) -> bool) -> bool {
        match self {
            History::One(h) => keep(h),
            History::Many(v) => {
                v.retain(|h| keep(h));
                match v.len() {
                    0 => false,
                    1 => {
                        if let Some(h) = v.pop() {
                            *self = History::One(h);
                        }
                        true
                    }
                    _ => true,
                }
            }
        }
    }
}

/// Record that `holder` holds `ip` from `from` on: refresh its open holding,
/// or open one.
fn hold<T: Holder + Clone>(
    map: &mut AddrMap<History<T>>,
    ip: IpAddr,
    holder: &T,
    from: SystemTime,
) {
    let holding = Holding {
        from: nanos(from),
        until: OPEN,
        holder: holder.clone(),
    };
    let Some(history) = map.get_mut(&ip) else {
        map.insert(ip, History::One(holding));
        return;
    };
    match history
        .as_mut_slice()
        .iter_mut()
        .find(|h| h.until == OPEN && h.holder.uid() == holder.uid())
    {
        Some(open) => open.holder = holding.holder,
        None => history.push(holding),
    }
}

/// Pick the holding of `history` at time `at`: among holdings open at `at`,
/// the one that started last; else the one that ended last before `at`
/// within `grace` (stale: see [`Holding::stale_at`]).
#[inline]
fn pick<T>(history: &[Holding<T>], at: Nanos, grace: Nanos) -> Option<&Holding<T>> {
    // Almost always: one holding, open since before `at`.
    if let [h] = history
        && h.until == OPEN
    {
        return (h.from <= at).then_some(h);
    }
    let mut live: Option<&Holding<T>> = None;
    let mut ended: Option<&Holding<T>> = None;
    for h in history {
        if h.until <= at {
            let within_grace = at.saturating_sub(h.until) <= grace;
            if within_grace && ended.is_none_or(|e| e.until < h.until) {
                ended = Some(h);
            }
        } else if h.from <= at && live.is_none_or(|l| l.from <= h.from) {
            live = Some(h);
        }
    }
    live.or(ended)
}

/// One address to resolve: the address, the (port, protocol) it was
/// reached on when it is the responder, and the time of the flow.
pub type Query = (IpAddr, Option<(u16, u8)>, SystemTime);

/// Queries per round of [`IdentityIndex::resolve_batch`]'s passes: enough
/// cache misses in flight to keep the memory system busy (a core tracks
/// a dozen or two), few enough that the lines they bring stay in the
/// first-level cache until used.
const BATCH_CHUNK: usize = 64;
// Pass 2 marks a chunk's queries in a 64-bit mask.
const _: () = assert!(BATCH_CHUNK <= 64);

/// The last time converted to [`Nanos`]: both ends of a flow share its
/// time, and a conversion costs ~55 instructions (callgrind), against ~300
/// for a whole batched lookup.
#[derive(Debug, Default)]
struct TimeMemo {
    last: Option<(SystemTime, Nanos)>,
}

impl TimeMemo {
    #[inline]
    fn nanos(&mut self, at: SystemTime) -> Nanos {
        match self.last {
            Some((t, n)) if t == at => n,
            _ => {
                let n = nanos(at);
                self.last = Some((at, n));
                n
            }
        }
    }
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

/// An owner reference with interned strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct OwnerLink {
    kind: Arc<str>,
    name: Arc<str>,
    controller: bool,
}

/// Declared container ports as [`PodIdentity::ports`] holds them.
type Ports = Arc<[(Arc<str>, u16, u8)]>;

#[derive(Debug, Default)]
struct Interner {
    strings: HashSet<Arc<str>>,
    labels: HashSet<Arc<BTreeMap<String, String>>>,
    owners: HashSet<Arc<[OwnerLink]>>,
    ports: HashSet<Ports>,
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

    fn owners(&mut self, owners: &[OwnerRef]) -> Arc<[OwnerLink]> {
        let links: Vec<OwnerLink> = owners
            .iter()
            .map(|o| OwnerLink {
                kind: self.str(&o.kind),
                name: self.str(&o.name),
                controller: o.controller,
            })
            .collect();
        if let Some(a) = self.owners.get(links.as_slice()) {
            return a.clone();
        }
        let a: Arc<[OwnerLink]> = links.into();
        self.owners.insert(a.clone());
        a
    }

    fn ports(&mut self, ports: &[ContainerPort]) -> Ports {
        let ports: Vec<(Arc<str>, u16, u8)> = ports
            .iter()
            .map(|p| {
                (
                    self.str(p.name.as_deref().unwrap_or("")),
                    p.port,
                    p.protocol,
                )
            })
            .collect();
        if let Some(a) = self.ports.get(ports.as_slice()) {
            return a.clone();
        }
        let a: Ports = ports.into();
        self.ports.insert(a.clone());
        a
    }

    /// Forget values only the interner still holds. Composite values go
    /// first so that the strings they release are collected too.
    fn collect(&mut self) {
        self.owners.retain(|o| Arc::strong_count(o) > 1);
        self.ports.retain(|p| Arc::strong_count(p) > 1);
        self.labels.retain(|l| Arc::strong_count(l) > 1);
        self.strings.retain(|s| Arc::strong_count(s) > 1);
    }
}

/// A live pod as the index keeps it: the identity flows resolve to, plus
/// what rebuilding that identity needs when its namespace or an owner
/// changes. Every other field of the parsed [`Pod`] is already in the
/// identity (name, uid, namespace, labels, service account, node, ports),
/// so the parsed object itself is not kept: at 150k pods its strings and
/// label maps would cost more than the whole rest of the index.
#[derive(Debug, Clone)]
struct PodRecord {
    identity: Arc<PodIdentity>,
    owners: Arc<[OwnerLink]>,
    ips: Box<[IpAddr]>,
    created: Option<SystemTime>,
    host_network: bool,
    finished: bool,
}

impl PodRecord {
    /// Would `pod` make this same record? A relist or a manifests re-read
    /// repeats unchanged pods; they must not cost any work.
    fn describes(&self, pod: &Pod) -> bool {
        let id = &*self.identity;
        let m = &pod.meta;
        *id.name == *m.name
            && *id.uid == *m.uid
            && *id.namespace == *m.namespace
            && *id.labels == m.labels
            && id.service_account.as_deref() == pod.service_account.as_deref()
            && id.node.as_deref() == pod.node.as_deref()
            && self.created == m.created
            && self.host_network == pod.host_network
            && self.finished == pod.finished
            && *self.ips == *pod.ips
            && self.owners.len() == m.owners.len()
            && self.owners.iter().zip(&m.owners).all(|(a, b)| {
                *a.kind == *b.kind && *a.name == *b.name && a.controller == b.controller
            })
            && id.ports.len() == pod.ports.len()
            && id
                .ports
                .iter()
                .zip(&pod.ports)
                .all(|((name, port, proto), p)| {
                    **name == *p.name.as_deref().unwrap_or("")
                        && *port == p.port
                        && *proto == p.protocol
                })
    }
}

/// The index. See the module documentation.
#[derive(Debug)]
pub struct IdentityIndex {
    config: IndexConfig,
    /// Live pods by interned namespace, then name: the records a namespace
    /// or owner change rebuilds.
    pods: FxHashMap<Arc<str>, FxHashMap<Arc<str>, PodRecord>>,
    /// Live objects of the other kinds as last seen (few next to pods), to
    /// rebuild identities when a namespace or an owner changes after its
    /// pods.
    objects: HashMap<ObjectKey, Object>,
    /// `config.deleted_grace` as [`Nanos`].
    deleted_grace: Nanos,
    // Address-keyed maps hash with a multiply-shift: the keys are cluster
    // addresses, not attacker-chosen, and the per-flow lookup is the hot
    // path.
    pods_by_ip: AddrMap<History<PodHolder>>,
    services_by_ip: AddrMap<History<Arc<ServiceEntry>>>,
    nodes_by_ip: AddrMap<Name>,
    /// Host-network pods by (node address, declared port, protocol).
    host_ports: FxHashMap<(IpAddr, u16, u8), PodHolder>,
    /// Endpoint addresses per (namespace, service name).
    service_backends: HashMap<(String, String), HashSet<IpAddr>>,
    networks: Networks,
    interner: Interner,
}

impl IdentityIndex {
    pub fn new(config: IndexConfig) -> Self {
        let mut index = IdentityIndex {
            networks: Networks::default(),
            deleted_grace: Nanos::try_from(config.deleted_grace.as_nanos()).unwrap_or(Nanos::MAX),
            config,
            pods: FxHashMap::default(),
            objects: HashMap::new(),
            pods_by_ip: AddrMap::default(),
            services_by_ip: AddrMap::default(),
            nodes_by_ip: AddrMap::default(),
            host_ports: FxHashMap::default(),
            service_backends: HashMap::new(),
            interner: Interner::default(),
        };
        index.rebuild_networks();
        index
    }

    pub fn stats(&self) -> IndexStats {
        IndexStats {
            pods: self.pods.values().map(HashMap::len).sum(),
            addresses: self.pods_by_ip.len(),
            holdings: self.pods_by_ip.values().map(History::len).sum(),
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
        let gone: Vec<ObjectKey> = if kind == Kind::Pod {
            self.pods
                .iter()
                .flat_map(|(ns, pods)| {
                    pods.keys().map(|name| ObjectKey {
                        kind: Kind::Pod,
                        namespace: ns.to_string(),
                        name: name.to_string(),
                    })
                })
                .filter(|k| !present.contains(k))
                .collect()
        } else {
            self.objects
                .keys()
                .filter(|k| k.kind == kind && !present.contains(*k))
                .cloned()
                .collect()
        };
        for key in gone {
            self.delete(&key, at);
        }
        for o in objects {
            self.upsert(o, at);
        }
    }

    /// Forget holdings that ended more than the grace period before `now`.
    pub fn expire(&mut self, now: SystemTime) {
        let (grace, now) = (self.deleted_grace, nanos(now));
        let keep = |until: Nanos| until == OPEN || now.saturating_sub(until) <= grace;
        self.pods_by_ip.retain(|h| h.retain(|x| keep(x.until)));
        self.services_by_ip.retain(|h| h.retain(|x| keep(x.until)));
        self.interner.collect();
    }

    fn upsert(&mut self, object: Object, at: SystemTime) {
        if let Object::Pod(pod) = object {
            self.upsert_parsed_pod(&pod, at);
            return;
        }
        let key = object.key();
        // A relist or a manifests re-read repeats unchanged objects; they
        // must not cost a rebuild of their namespace.
        if self.objects.get(&key) == Some(&object) {
            return;
        }
        let previous = self.objects.insert(key.clone(), object.clone());
        match object {
            Object::Service(svc) => {
                let prev = match previous {
                    Some(Object::Service(s)) => Some(s),
                    _ => None,
                };
                self.upsert_service(&svc, prev.as_ref(), at);
            }
            _ => self.rebuild_derived(&key, at),
        }
    }

    /// Namespaces, owners, nodes and endpoint slices only feed state derived
    /// from them; rebuild what depends on the changed one.
    fn rebuild_derived(&mut self, key: &ObjectKey, at: SystemTime) {
        match key.kind {
            Kind::Namespace => self.rebuild_namespace(&key.name, at),
            Kind::ReplicaSet | Kind::Job => self.rebuild_namespace(&key.namespace, at),
            Kind::Node => {
                self.rebuild_nodes();
                self.rebuild_networks();
            }
            Kind::EndpointSlice => self.rebuild_backends(&key.namespace),
            Kind::Pod | Kind::Service => {}
        }
    }

    fn delete(&mut self, key: &ObjectKey, at: SystemTime) {
        if key.kind == Kind::Pod {
            let Some(pods) = self.pods.get_mut(key.namespace.as_str()) else {
                return;
            };
            let Some(previous) = pods.remove(key.name.as_str()) else {
                return;
            };
            if pods.is_empty() {
                self.pods.remove(key.namespace.as_str());
            }
            self.close_pod(&previous, at);
            return;
        }
        let Some(previous) = self.objects.remove(key) else {
            return;
        };
        match previous {
            Object::Service(s) => close(&mut self.services_by_ip, &s.cluster_ips, &s.meta.uid, at),
            _ => self.rebuild_derived(key, at),
        }
    }

    /// The workload at the top of a pod's owner chain.
    fn top_owner(&mut self, namespace: &str, owners: &[OwnerLink]) -> Option<Workload> {
        let first = owners.iter().find(|o| o.controller).or(owners.first())?;
        let (mut kind, mut name) = (first.kind.clone(), first.name.clone());
        // Follow ReplicaSet -> Deployment and Job -> CronJob; other owners
        // (StatefulSet, DaemonSet, custom controllers) are the top.
        for _ in 0..4 {
            let owner_kind = match &*kind {
                "ReplicaSet" => Kind::ReplicaSet,
                "Job" => Kind::Job,
                _ => break,
            };
            let key = ObjectKey {
                kind: owner_kind,
                namespace: namespace.to_string(),
                name: name.to_string(),
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
                Some(next) => {
                    kind = self.interner.str(&next.kind);
                    name = self.interner.str(&next.name);
                }
                None => break,
            }
        }
        Some(Workload { kind, name })
    }

    /// The labels of `namespace`, as pods carry them.
    fn namespace_labels(&mut self, namespace: &str) -> Arc<BTreeMap<String, String>> {
        let ns_key = ObjectKey {
            kind: Kind::Namespace,
            namespace: String::new(),
            name: namespace.to_string(),
        };
        match self.objects.get(&ns_key) {
            Some(Object::Namespace(m)) => {
                let labels = m.labels.clone();
                self.interner.labels(&labels)
            }
            // Namespace not (yet) known: Kubernetes always sets this label.
            _ => self.interner.labels(&BTreeMap::from([(
                "kubernetes.io/metadata.name".to_string(),
                namespace.to_string(),
            )])),
        }
    }

    /// The record of a freshly parsed pod.
    fn record(&mut self, pod: &Pod) -> PodRecord {
        let owners = self.interner.owners(&pod.meta.owners);
        let namespace = self.interner.str(&pod.meta.namespace);
        let identity = Arc::new(PodIdentity {
            name: Arc::from(pod.meta.name.as_str()),
            uid: Arc::from(pod.meta.uid.as_str()),
            workload: self.top_owner(&namespace, &owners),
            namespace_labels: self.namespace_labels(&namespace),
            namespace,
            labels: self.interner.labels(&pod.meta.labels),
            service_account: pod.service_account.as_deref().map(|s| self.interner.str(s)),
            node: pod.node.as_deref().map(|s| self.interner.str(s)),
            ports: self.interner.ports(&pod.ports),
        });
        PodRecord {
            identity,
            owners,
            ips: pod.ips.as_slice().into(),
            created: pod.meta.created,
            host_network: pod.host_network,
            finished: pod.finished,
        }
    }

    /// `rec` with its identity rebuilt from the current namespace and owners.
    fn refreshed(&mut self, rec: &PodRecord) -> PodRecord {
        let old = &rec.identity;
        let workload = self.top_owner(&old.namespace, &rec.owners);
        let namespace_labels = self.namespace_labels(&old.namespace);
        let identity = Arc::new(PodIdentity {
            workload,
            namespace_labels,
            ..PodIdentity::clone(old)
        });
        PodRecord {
            identity,
            ..rec.clone()
        }
    }

    fn upsert_parsed_pod(&mut self, pod: &Pod, at: SystemTime) {
        let prev = self
            .pods
            .get(pod.meta.namespace.as_str())
            .and_then(|pods| pods.get(pod.meta.name.as_str()));
        if prev.is_some_and(|p| p.describes(pod)) {
            return;
        }
        let prev = prev.cloned();
        let rec = self.record(pod);
        self.upsert_pod(&rec, prev.as_ref(), at);
        self.pods
            .entry(rec.identity.namespace.clone())
            .or_default()
            .insert(rec.identity.name.clone(), rec);
    }

    fn upsert_pod(&mut self, pod: &PodRecord, prev: Option<&PodRecord>, at: SystemTime) {
        let uid: &str = &pod.identity.uid;
        if let Some(prev) = prev {
            if *prev.identity.uid != *uid {
                // Same name, new object (a StatefulSet pod recreated).
                self.close_pod(prev, at);
            } else if prev.host_network {
                self.remove_host_ports(&prev.identity.uid);
            }
        }
        if pod.host_network {
            if !pod.finished {
                self.add_host_ports(pod);
            }
            return;
        }
        let held: &[IpAddr] = if pod.finished { &[] } else { &pod.ips };
        // Addresses the pod no longer holds end now.
        if let Some(prev) = prev.filter(|p| *p.identity.uid == *uid) {
            let released: Vec<IpAddr> = prev
                .ips
                .iter()
                .filter(|ip| !held.contains(ip))
                .copied()
                .collect();
            close(&mut self.pods_by_ip, &released, uid, at);
        }
        let from = pod.created.unwrap_or(at).min(at);
        let holder = PodHolder::of(&pod.identity);
        for ip in held {
            hold(&mut self.pods_by_ip, *ip, &holder, from);
        }
    }

    fn close_pod(&mut self, pod: &PodRecord, at: SystemTime) {
        if pod.host_network {
            self.remove_host_ports(&pod.identity.uid);
        } else {
            close(&mut self.pods_by_ip, &pod.ips, &pod.identity.uid, at);
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

    fn add_host_ports(&mut self, pod: &PodRecord) {
        // A host-network pod's podIPs are its node's addresses.
        let mut addrs = pod.ips.to_vec();
        if let Some(node) = &pod.identity.node {
            addrs.extend(self.node_addresses(node));
        }
        for a in addrs {
            for (_, port, protocol) in pod.identity.ports.iter() {
                self.host_ports
                    .insert((a, *port, *protocol), PodHolder::of(&pod.identity));
            }
        }
    }

    fn remove_host_ports(&mut self, uid: &str) {
        self.host_ports.retain(|_, h| &*h.identity.uid != uid);
    }

    /// A namespace's labels or an owner changed: rebuild that namespace's
    /// pod identities so flows see the new values.
    fn rebuild_namespace(&mut self, namespace: &str, at: SystemTime) {
        let pods: Vec<PodRecord> = match self.pods.get(namespace) {
            Some(pods) => pods.values().cloned().collect(),
            None => return,
        };
        for p in pods {
            let rec = self.refreshed(&p);
            self.upsert_pod(&rec, Some(&p), at);
            if let Some(pods) = self.pods.get_mut(namespace) {
                pods.insert(rec.identity.name.clone(), rec);
            }
        }
    }

    fn rebuild_nodes(&mut self) {
        self.nodes_by_ip.clear();
        for o in self.objects.values() {
            if let Object::Node(n) = o {
                let name = Name::new(&n.meta.name);
                for a in &n.addresses {
                    self.nodes_by_ip.insert(*a, name);
                }
            }
        }
        let host_pods: Vec<PodRecord> = self
            .pods
            .values()
            .flat_map(HashMap::values)
            .filter(|p| p.host_network)
            .cloned()
            .collect();
        // Node addresses changed: host-network pods' ports move with them.
        for p in host_pods {
            self.remove_host_ports(&p.identity.uid);
            if !p.finished {
                let rec = self.refreshed(&p);
                self.add_host_ports(&rec);
                if let Some(pods) = self.pods.get_mut(&*rec.identity.namespace) {
                    pods.insert(rec.identity.name.clone(), rec);
                }
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
        let name = self.interner.str(&svc.meta.name);
        let namespace = self.interner.str(&svc.meta.namespace);
        let service_ref = |port_name| {
            Arc::new(ServiceRef {
                name: name.clone(),
                namespace: namespace.clone(),
                port_name,
            })
        };
        let entry = Arc::new(ServiceEntry {
            uid: Arc::from(svc.meta.uid.as_str()),
            unnamed: service_ref(None),
            named: svc
                .ports
                .iter()
                .filter_map(|p| {
                    let port_name = self.interner.str(p.name.as_deref()?);
                    Some((p.port, p.protocol, service_ref(Some(port_name))))
                })
                .collect(),
        });
        let from = svc.meta.created.unwrap_or(at).min(at);
        for ip in &svc.cluster_ips {
            hold(&mut self.services_by_ip, *ip, &entry, from);
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
        let at = nanos(at);
        let history = self.pods_by_ip.get(&addr)?;
        pick(history.as_slice(), at, self.deleted_grace)
            .map(|h| (h.holder.identity.clone(), h.stale_at(at)))
    }

    /// [`resolve`](Self::resolve) for many addresses, with the same answers,
    /// at a fraction of the cost per address when the addresses are cold:
    /// one by one, a pod lookup waits for two cache misses in a row (the
    /// address's slot, then the identity's reference count), and a clone of
    /// the `Arc` is an atomic read-modify-write, which on x86 also waits
    /// for every earlier load. Here each chunk of [`BATCH_CHUNK`] queries
    /// goes in three passes, so the misses of many addresses are in flight
    /// at once:
    ///
    /// 1. hash every address, then touch the pod-table slots (loads whose
    ///    values nothing waits for: see [`addr_map::touch`]);
    /// 2. probe each slot (now in the cache), pick the holding at the
    ///    flow's time, then touch the identities' reference counts;
    /// 3. build the endpoints: the reference counts are in the cache.
    ///
    /// The chunk's working state lives on the stack (no allocation but the
    /// result), and is small enough that what pass 1 and 2 load is still
    /// in the first-level cache when the next pass needs it.
    pub fn resolve_batch(&self, queries: &[Query]) -> Vec<Endpoint> {
        let pods = &self.pods_by_ip;
        let mut out = Vec::with_capacity(queries.len());
        // The batch's earliest flow time, converted once: an address held
        // since before it by one open holding (nearly every pod address)
        // needs no conversion of its own flow's time.
        let floor = queries
            .iter()
            .map(|(_, _, at)| *at)
            .min()
            .map_or(Nanos::MIN, nanos);
        let mut times = TimeMemo::default();
        for chunk in queries.chunks(BATCH_CHUNK) {
            // Pass 1: each address's home slot, loaded right away (nothing
            // waits for the loads: many misses are in flight at once).
            let mut homes = [None; BATCH_CHUNK];
            let mut touched = 0u8;
            for ((addr, _, _), home) in chunk.iter().zip(&mut homes) {
                *home = pods.start_lookup(Key::of(*addr));
                if let Some(i) = *home {
                    touched ^= pods.slot_tag(i);
                }
            }
            touch(&touched);
            // Pass 2: probe (the slots are in the cache now) and pick the
            // holding at the flow's time, touching the picked identities'
            // strong counts: the lines the clones in pass 3 increment.
            // A holding picked at the flow's own time (not one open since
            // before the batch) may be stale then: its bit in `timed`.
            let mut found: [Option<&Holding<PodHolder>>; BATCH_CHUNK] = [None; BATCH_CHUNK];
            let mut timed = 0u64;
            let mut folded = 0usize;
            for (i, ((addr, _, at), home)) in chunk.iter().zip(&homes).enumerate() {
                let Some(history) = home.and_then(|home| pods.get_from(home, Key::of(*addr)))
                else {
                    continue;
                };
                let picked = match history {
                    History::One(h) if h.until == OPEN && h.from <= floor => h,
                    _ => match pick(history.as_slice(), times.nanos(*at), self.deleted_grace) {
                        Some(h) => {
                            timed |= 1 << i;
                            h
                        }
                        None => continue,
                    },
                };
                folded ^= Arc::strong_count(&picked.holder.identity);
                found[i] = Some(picked);
            }
            touch(&folded);
            // Pass 3: the endpoints.
            out.extend(chunk.iter().zip(&found).enumerate().map(
                |(i, (&(addr, listening, at), found))| match *found {
                    // Open since before the flow, so not stale at its time.
                    Some(h) if timed & (1 << i) == 0 => self.pod_endpoint(addr, h, None),
                    Some(h) => self.pod_endpoint(addr, h, h.stale_at(times.nanos(at))),
                    None => self.resolve_not_pod(addr, listening, times.nanos(at)),
                },
            ));
        }
        out
    }

    /// Who held `addr` at `at`. `listening` is the (port, protocol) the
    /// address was reached on, when it is the responder: it names a
    /// host-network pod, and a service's port.
    pub fn resolve(&self, addr: IpAddr, listening: Option<(u16, u8)>, at: SystemTime) -> Endpoint {
        let at_nanos = nanos(at);
        let holding = self
            .pods_by_ip
            .get(&addr)
            .and_then(|h| pick(h.as_slice(), at_nanos, self.deleted_grace));
        match holding {
            Some(h) => self.pod_endpoint(addr, h, h.stale_at(at_nanos)),
            None => self.resolve_not_pod(addr, listening, at_nanos),
        }
    }

    /// The endpoint of a pod address, from the holding picked for `at`.
    /// Inlined: a call would return the 112-byte endpoint through memory
    /// and copy it again into the batch's vector.
    #[inline(always)]
    fn pod_endpoint(
        &self,
        addr: IpAddr,
        holding: &Holding<PodHolder>,
        stale: Option<Stale>,
    ) -> Endpoint {
        let (_, network) = self.networks.classify_ref(addr);
        Endpoint {
            kind: EndpointKind::Pod,
            pod: Some(Arc::clone(&holding.holder.identity)),
            node: holding.holder.node,
            service: None,
            network: Some(network),
            stale,
        }
    }

    /// [`resolve`](Self::resolve) for an address no pod held at `at`.
    fn resolve_not_pod(&self, addr: IpAddr, listening: Option<(u16, u8)>, at: Nanos) -> Endpoint {
        let (kind, network) = self.networks.classify_ref(addr);
        let mut ep = Endpoint::of_kind(kind);
        ep.network = Some(network);
        if let Some(h) = self
            .services_by_ip
            .get(&addr)
            .and_then(|h| pick(h.as_slice(), at, self.deleted_grace))
        {
            let svc = &h.holder;
            ep.kind = EndpointKind::Service;
            ep.stale = h.stale_at(at);
            let named = listening.and_then(|(port, proto)| {
                svc.named
                    .iter()
                    .find(|(p, pr, _)| *p == port && *pr == proto)
            });
            ep.service = Some(Arc::clone(named.map_or(&svc.unnamed, |(_, _, r)| r)));
            return ep;
        }
        if let Some((port, proto)) = listening
            && let Some(pod) = self.host_ports.get(&(addr, port, proto))
        {
            ep.kind = EndpointKind::HostNetworkPod;
            ep.node = pod.node;
            ep.pod = Some(Arc::clone(&pod.identity));
            return ep;
        }
        if let Some(node) = self.nodes_by_ip.get(&addr) {
            ep.kind = EndpointKind::Node;
            ep.node = Some(*node);
        }
        ep
    }
}

/// End the open holdings of `uid` on `ips` at `at`.
fn close<T: Holder>(map: &mut AddrMap<History<T>>, ips: &[IpAddr], uid: &str, at: SystemTime) {
    let at = nanos(at);
    for ip in ips {
        if let Some(history) = map.get_mut(ip) {
            for h in history.as_mut_slice() {
                if h.until == OPEN && h.holder.uid() == uid {
                    h.until = at.max(h.from);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
