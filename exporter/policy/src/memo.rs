//! What [`crate::explain`] remembers between flows: pod identities
//! interned by what policy evaluation reads of them, which policies may
//! select each identity, and whole evaluations per identity pair; plus the
//! address classes that let two pods with different addresses share one
//! evaluation.
//!
//! An evaluation reads, of a pod, only its namespace, labels, namespace
//! labels, service account and declared container ports (never its name,
//! uid, node or workload: a node is read only for node addresses, which
//! are not pods). Pods that agree on those five — the replicas of one
//! Deployment — are one [`IdentityId`]. Of an address, rules read only
//! which CIDRs (`ipBlock`, Calico `nets`/`notNets`, admin `networks`)
//! contain it and its IP version: [`AddressClasses`] maps an address to
//! the elementary interval between the CIDR boundaries of the index, so
//! two addresses of one class are inside exactly the same CIDRs.
//!
//! Pure data structures; the index holds them behind a mutex. Nothing here
//! evaluates a policy.

use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use flowscribe_model::PodIdentity;
use ipnet::IpNet;
use rustc_hash::{FxHashMap, FxHasher};

use crate::explain::Evaluated;
use crate::index::Selection;

/// An interned identity: an index into [`Memo`]'s identities, valid while
/// [`Memo::epoch`] is unchanged.
pub(crate) type IdentityId = u32;

/// The key of a memoised pod-to-pod evaluation: everything the evaluation
/// reads of the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct PairKey {
    pub(crate) source: IdentityId,
    pub(crate) destination: IdentityId,
    pub(crate) source_class: u32,
    pub(crate) destination_class: u32,
    pub(crate) protocol: u8,
    pub(crate) dst_port: u16,
    /// Zero unless some Calico rule matches source ports.
    pub(crate) src_port: u16,
    pub(crate) degraded: bool,
    /// The destination was reached through a Service (its backend decides).
    pub(crate) via_service: bool,
}

/// More pods than this and the memo starts over (pods are pinned by the
/// memo, so a long-running daemon must let go of deleted ones).
const POD_CAPACITY: usize = 1 << 19;

/// More identity pairs (with their ports and address classes) than this
/// and the pair memo starts over: roughly 50 MB at the explain_scale
/// bench's policy mix.
const PAIR_CAPACITY: usize = 1 << 17;

#[derive(Debug)]
struct Identity {
    /// The first pod seen with this identity: what later pods compare to.
    representative: Arc<PodIdentity>,
    /// [`Memo::generation`] the selections were computed for.
    generation: u64,
    /// Per view (enforced, pending).
    selections: [Option<Arc<Selection>>; 2],
}

#[derive(Debug)]
struct PodEntry {
    /// Keeps the address from being reused while cached.
    _pod: Arc<PodIdentity>,
    id: IdentityId,
    /// The pod's last address and its class, valid for `class_generation`
    /// (a policy change may add CIDR boundaries): a pod keeps its address,
    /// so this spares the class lookup.
    address: Option<(IpAddr, u32)>,
    class_generation: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Memo {
    /// Bumped whenever ids are reset: an id from an older epoch is stale.
    epoch: u64,
    /// Bumped by every policy change: selections of older generations are
    /// recomputed.
    generation: u64,
    /// Pods by the address of their `Arc`: the entry holds a clone, so the
    /// address cannot be reused by another pod while cached; identities are
    /// immutable, so the same address means the same identity.
    pods: FxHashMap<usize, PodEntry>,
    /// Identities by the hash of what evaluation reads; collisions share a
    /// list.
    by_content: FxHashMap<u64, Vec<IdentityId>>,
    identities: Vec<Identity>,
    pairs: FxHashMap<PairKey, Evaluated>,
}

/// A new pod's identity: an existing one with the same contents, or a new
/// one.
fn intern(
    by_content: &mut FxHashMap<u64, Vec<IdentityId>>,
    identities: &mut Vec<Identity>,
    generation: u64,
    pod: &Arc<PodIdentity>,
) -> IdentityId {
    let ids = by_content.entry(content_hash(pod)).or_default();
    if let Some(id) = ids
        .iter()
        .copied()
        .find(|id| same_content(&identities[*id as usize].representative, pod))
    {
        return id;
    }
    // At most POD_CAPACITY identities, well inside u32.
    let id = identities.len() as IdentityId;
    identities.push(Identity {
        representative: pod.clone(),
        generation,
        selections: [None, None],
    });
    ids.push(id);
    id
}

/// The hash of what evaluation reads of a pod.
fn content_hash(pod: &PodIdentity) -> u64 {
    let mut h = FxHasher::default();
    pod.namespace.hash(&mut h);
    pod.labels.hash(&mut h);
    pod.namespace_labels.hash(&mut h);
    pod.service_account.hash(&mut h);
    pod.ports.hash(&mut h);
    h.finish()
}

/// Whether two pods are the same to policy evaluation.
fn same_content(a: &PodIdentity, b: &PodIdentity) -> bool {
    a.namespace == b.namespace
        && (Arc::ptr_eq(&a.labels, &b.labels) || a.labels == b.labels)
        && (Arc::ptr_eq(&a.namespace_labels, &b.namespace_labels)
            || a.namespace_labels == b.namespace_labels)
        && a.service_account == b.service_account
        && (Arc::ptr_eq(&a.ports, &b.ports) || a.ports == b.ports)
}

impl Memo {
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The identity of a pod, interned on first sight (hashing its
    /// contents once per pod).
    pub(crate) fn identity(&mut self, pod: &Arc<PodIdentity>) -> IdentityId {
        self.entry(pod).id
    }

    /// The identity of a pod and the class of its address.
    pub(crate) fn identity_and_class(
        &mut self,
        pod: &Arc<PodIdentity>,
        addr: IpAddr,
        classes: &AddressClasses,
    ) -> (IdentityId, u32) {
        let generation = self.generation;
        let entry = self.entry(pod);
        match entry.address {
            Some((a, class)) if a == addr && entry.class_generation == generation => {
                (entry.id, class)
            }
            _ => {
                let class = classes.class(addr);
                entry.address = Some((addr, class));
                entry.class_generation = generation;
                (entry.id, class)
            }
        }
    }

    fn entry(&mut self, pod: &Arc<PodIdentity>) -> &mut PodEntry {
        let address = Arc::as_ptr(pod) as usize;
        if self.pods.len() >= POD_CAPACITY && !self.pods.contains_key(&address) {
            self.pods.clear();
            self.by_content.clear();
            self.identities.clear();
            self.pairs.clear();
            self.epoch += 1;
        }
        let Memo {
            pods,
            by_content,
            identities,
            generation,
            ..
        } = self;
        pods.entry(address).or_insert_with(|| PodEntry {
            _pod: pod.clone(),
            id: intern(by_content, identities, *generation, pod),
            address: None,
            class_generation: 0,
        })
    }

    /// How many distinct identities are interned (for tests and benches).
    pub(crate) fn identity_count(&self) -> usize {
        self.identities.len()
    }

    pub(crate) fn selection(&self, id: IdentityId, view: usize) -> Option<Arc<Selection>> {
        let identity = self.identities.get(id as usize)?;
        if identity.generation != self.generation {
            return None;
        }
        identity.selections[view].clone()
    }

    pub(crate) fn set_selection(&mut self, id: IdentityId, view: usize, s: Arc<Selection>) {
        let generation = self.generation;
        if let Some(identity) = self.identities.get_mut(id as usize) {
            if identity.generation != generation {
                identity.generation = generation;
                identity.selections = [None, None];
            }
            identity.selections[view] = Some(s);
        }
    }

    pub(crate) fn pair(&self, key: &PairKey) -> Option<&Evaluated> {
        self.pairs.get(key)
    }

    pub(crate) fn insert_pair(&mut self, epoch: u64, key: PairKey, evaluated: Evaluated) {
        // Ids from before a reset name other identities now.
        if epoch != self.epoch {
            return;
        }
        if self.pairs.len() >= PAIR_CAPACITY {
            self.pairs.clear();
        }
        self.pairs.insert(key, evaluated);
    }

    /// The policies changed: every selection and evaluation is stale; the
    /// identities are not.
    pub(crate) fn policies_changed(&mut self) {
        self.generation += 1;
        self.pairs.clear();
    }
}

/// The elementary intervals between the boundaries of every CIDR a rule of
/// the index names, per IP version. An address's class is the number of
/// boundaries at or below it (IPv6 classes have the top bit set): two
/// addresses of one class lie between the same two boundaries, so every
/// CIDR contains both or neither.
#[derive(Debug, Default, Clone)]
pub(crate) struct AddressClasses {
    /// Network addresses and one-past-the-end addresses, sorted, unique.
    v4: Vec<u64>,
    v6: Vec<u128>,
}

const V6_CLASS: u32 = 1 << 31;

impl AddressClasses {
    /// Add a CIDR's two boundaries. Adding more boundaries than needed only
    /// splits classes, never merges them, so an index that grows by
    /// [`crate::PolicyIndex::upsert`] stays exact.
    pub(crate) fn add(&mut self, net: &IpNet) {
        match net {
            IpNet::V4(n) => {
                let start = u64::from(u32::from(n.network()));
                let end = u64::from(u32::from(n.broadcast())) + 1;
                for b in [start, end] {
                    if let Err(at) = self.v4.binary_search(&b) {
                        self.v4.insert(at, b);
                    }
                }
            }
            IpNet::V6(n) => {
                let start = u128::from(n.network());
                // The end of a net that reaches the top of the space is no
                // boundary: nothing lies above it.
                let end = u128::from(n.broadcast()).checked_add(1);
                for b in std::iter::once(start).chain(end) {
                    if let Err(at) = self.v6.binary_search(&b) {
                        self.v6.insert(at, b);
                    }
                }
            }
        }
    }

    pub(crate) fn class(&self, addr: IpAddr) -> u32 {
        // At most two boundaries per CIDR of the index: far below 2^31.
        match addr {
            IpAddr::V4(a) => {
                let a = u64::from(u32::from(a));
                self.v4.partition_point(|b| *b <= a) as u32
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                V6_CLASS | self.v6.partition_point(|b| *b <= a) as u32
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes(nets: &[&str]) -> AddressClasses {
        let mut c = AddressClasses::default();
        for n in nets {
            c.add(&n.parse().expect("cidr"));
        }
        c
    }

    #[test]
    fn addresses_of_one_class_are_inside_the_same_cidrs() {
        let nets = [
            "10.0.0.0/8",
            "10.255.0.0/16",
            "10.1.2.3/32",
            "0.0.0.0/0",
            "255.255.255.0/24",
            "fd00::/8",
            "::/0",
        ];
        let c = classes(&nets);
        let parsed: Vec<IpNet> = nets.iter().map(|n| n.parse().expect("cidr")).collect();
        let addrs: Vec<IpAddr> = [
            "9.255.255.255",
            "10.0.0.0",
            "10.0.0.1",
            "10.1.2.2",
            "10.1.2.3",
            "10.1.2.4",
            "10.254.255.255",
            "10.255.0.0",
            "10.255.255.255",
            "11.0.0.0",
            "255.255.255.255",
            "255.255.254.255",
            "fd00::1",
            "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "fe00::",
            "::",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ]
        .iter()
        .map(|a| a.parse().expect("addr"))
        .collect();
        let inside = |a: &IpAddr| -> Vec<bool> { parsed.iter().map(|n| n.contains(a)).collect() };
        let mut distinct = std::collections::BTreeSet::new();
        for a in &addrs {
            distinct.insert(c.class(*a));
            for b in &addrs {
                if c.class(*a) == c.class(*b) {
                    assert_eq!(inside(a), inside(b), "{a} and {b} share a class");
                    assert_eq!(a.is_ipv4(), b.is_ipv4(), "{a} and {b}");
                }
            }
        }
        // IPv4 boundaries 0, 10/8, 10.1.2.3, 10.1.2.4, 10.255/16, 11/8,
        // 255.255.255.0 and 2^32 leave 7 classes among these addresses;
        // IPv6 boundaries ::, fd00:: and fe00:: leave 3.
        assert_eq!(distinct.len(), 10, "{distinct:?}");
        let class = |a: &str| c.class(a.parse().expect("addr"));
        assert_eq!(class("10.0.0.1"), class("10.1.2.2"));
        assert_eq!(class("11.0.0.0"), class("255.255.254.255"));
        assert_ne!(class("10.1.2.2"), class("10.1.2.3"));
    }

    #[test]
    fn no_cidrs_one_class_per_version() {
        let c = AddressClasses::default();
        let v4 = c.class("10.0.0.1".parse().expect("addr"));
        assert_eq!(v4, c.class("192.0.2.1".parse().expect("addr")));
        let v6 = c.class("fd00::1".parse().expect("addr"));
        assert_ne!(v4, v6);
    }
}
