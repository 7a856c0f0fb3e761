//! A bounded cache of output fragments keyed by the shared objects a flow
//! record points to, for the cached encoders ([`crate::ecs::EcsEncoder`],
//! [`crate::otlp::OtlpEncoder`]).
//!
//! Most of a record's bytes describe its endpoints (pod name, uid,
//! namespace, labels, workload, service account ...) and the policies that
//! decided it. Enrich and explain hand those out as `Arc`s shared by every
//! flow of the same pod or policy, so the bytes they render to can be made
//! once per schema and copied into every record that points to the same
//! objects. The key is the objects' addresses; every entry keeps clones of
//! the `Arc`s it was made from, so an address cannot be freed and reused
//! by another object while its entry exists (a key match is therefore
//! always the same object, which is immutable behind its `Arc`). Node
//! and network names are interned ([`flowscribe_model::Name`]): their text
//! lives as long as the process, so its address is a key of its own.
//!
//! Stage ④, per encoder instance: no global state, no locks. Bounded: when
//! a map is full and a new key arrives the whole map is cleared (the
//! objects in use come back at once). Pinning means a pod or policy that
//! enrich or explain has dropped stays in memory while its entry lives: at
//! most [`DEFAULT_CAPACITY`] endpoints and as many policies per encoder
//! unless configured, a few MiB with their fragments. When records share
//! too little for the cache to pay, `Admission` turns it off for a while.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;

use flowscribe_model::{Endpoint, EndpointKind, Name, PolicyRef};

/// Entries per map unless configured: a node's pods and their peers, and
/// the policies that select them, fit many times over.
pub const DEFAULT_CAPACITY: usize = 4096;

/// A fast hasher for keys made of addresses and small enums (no
/// attacker-chosen input: addresses are the allocator's).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct AddressHasher(u64);

impl AddressHasher {
    #[inline]
    fn mix(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for AddressHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.mix(u64::from(b));
        }
    }

    #[inline]
    fn write_u8(&mut self, v: u8) {
        self.mix(u64::from(v));
    }

    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.mix(v);
    }

    #[inline]
    fn write_usize(&mut self, v: usize) {
        self.mix(v as u64);
    }

    #[inline]
    fn write_isize(&mut self, v: isize) {
        self.mix(v as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // The low bits pick the bucket: fold the well-mixed high bits in.
        self.0 ^ (self.0 >> 29)
    }
}

/// A map that is cleared when it is full and a new key arrives.
#[derive(Debug)]
pub(crate) struct BoundedMap<K, V> {
    map: HashMap<K, V, BuildHasherDefault<AddressHasher>>,
    capacity: usize,
    clears: u64,
    /// Lookups and misses so far (see [`Admission`]).
    lookups: u64,
    misses: u64,
}

impl<K: Hash + Eq, V> BoundedMap<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        BoundedMap {
            map: HashMap::default(),
            capacity: capacity.max(1),
            clears: 0,
            lookups: 0,
            misses: 0,
        }
    }

    /// The entry of `key`, made by `make` when there is none.
    #[inline]
    pub(crate) fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        self.lookups += 1;
        if self.map.len() >= self.capacity && !self.map.contains_key(&key) {
            self.map.clear();
            self.clears += 1;
        }
        self.map.entry(key).or_insert_with(|| {
            self.misses += 1;
            make()
        })
    }

    /// Lookups and misses so far.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (self.lookups, self.misses)
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn clears(&self) -> u64 {
        self.clears
    }
}

/// Whether a record goes through the cache. A miss costs more than
/// writing the part on the spot (rendering, copying, an allocation and an
/// insertion), so when records share almost nothing the cache would only
/// cost. After every [`Admission::WINDOW`] cached records the misses are
/// counted, and above [`Admission::MAX_MISSES_PER_RECORD`] on average the
/// next [`Admission::BYPASS`] records are written without the cache; then
/// it is tried again. (Measured with `examples/encode_profile.rs`: a
/// record whose parts all hit saves about 4k instructions, one whose
/// parts all miss, about 3.5 misses, costs about 14k more: break-even
/// near one miss per record.)
#[derive(Debug)]
pub(crate) struct Admission {
    /// Records per window.
    window: u32,
    /// Misses in a window above which the cache is bypassed.
    max_misses: u64,
    /// Records written without the cache after such a window.
    bypass_records: u32,
    /// Cached records in the current window.
    records: u32,
    /// Records left to write without the cache.
    bypass: u32,
    /// Lookups and misses at the start of the window.
    start: (u64, u64),
    /// Records written without the cache, in all.
    bypassed: u64,
}

impl Default for Admission {
    /// [`Admission::MAX_MISSES_PER_RECORD`] on average.
    fn default() -> Admission {
        Admission::with_limits(
            Self::WINDOW,
            u64::from(Self::WINDOW) * Self::MAX_MISSES_PER_RECORD,
            Self::BYPASS,
        )
    }
}

impl Admission {
    pub(crate) const WINDOW: u32 = 256;
    pub(crate) const MAX_MISSES_PER_RECORD: u64 = 1;
    pub(crate) const BYPASS: u32 = 8192;

    /// Admission that bypasses the cache for `bypass_records` records
    /// after a window of `window` records with more than `max_misses`
    /// misses.
    pub(crate) fn with_limits(window: u32, max_misses: u64, bypass_records: u32) -> Admission {
        Admission {
            window,
            max_misses,
            bypass_records: bypass_records.max(1),
            records: 0,
            bypass: 0,
            start: (0, 0),
            bypassed: 0,
        }
    }

    /// Whether the next record uses the cache, given the lookups and
    /// misses of the cache's maps so far.
    #[inline]
    pub(crate) fn admit(&mut self, (lookups, misses): (u64, u64)) -> bool {
        if self.bypass > 0 {
            self.bypass -= 1;
            self.bypassed += 1;
            if self.bypass == 0 {
                self.start = (lookups, misses);
            }
            return false;
        }
        if self.records == self.window {
            let m = misses - self.start.1;
            self.records = 0;
            self.start = (lookups, misses);
            if m > self.max_misses {
                self.bypass = self.bypass_records - 1;
                self.bypassed += 1;
                return false;
            }
        }
        self.records += 1;
        true
    }

    pub(crate) fn bypassed(&self) -> u64 {
        self.bypassed
    }
}

/// The address of what an `Arc` points to, as a key part (0 for none:
/// an `Arc` is never null).
#[inline]
fn addr<T: ?Sized>(a: Option<&Arc<T>>) -> usize {
    a.map_or(0, |a| Arc::as_ptr(a).cast::<u8>() as usize)
}

/// What an endpoint's cached fragments depend on: every shared object of
/// it and the two small values beside them. Not the deletion time (per
/// record, written outside the fragments).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct EndpointKey {
    pod: usize,
    node: usize,
    network: usize,
    service_name: usize,
    service_namespace: usize,
    service_port_name: usize,
    kind: EndpointKind,
    stale: bool,
}

impl EndpointKey {
    #[inline]
    pub(crate) fn new(e: &Endpoint) -> EndpointKey {
        let service = e.service.as_ref();
        EndpointKey {
            pod: addr(e.pod.as_ref()),
            node: e.node.map_or(0, Name::addr),
            network: e.network.map_or(0, Name::addr),
            service_name: addr(service.map(|s| &s.name)),
            service_namespace: addr(service.map(|s| &s.namespace)),
            service_port_name: addr(service.and_then(|s| s.port_name.as_ref())),
            kind: e.kind,
            stale: e.stale.is_some(),
        }
    }
}

/// A clone of the endpoint an entry was made from: it holds every `Arc`
/// of the key, so none of those addresses can be reused while the entry
/// lives.
pub(crate) fn pin_endpoint(e: &Endpoint) -> Endpoint {
    e.clone()
}

/// The key of a policy's fragments: the address of its `PolicyRef`.
#[inline]
pub(crate) fn policy_key(p: &Arc<PolicyRef>) -> usize {
    addr(Some(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_map_is_cleared_for_a_new_key_only() {
        let mut m = BoundedMap::new(2);
        *m.get_or_insert_with(1usize, || 10) += 1;
        m.get_or_insert_with(2usize, || 20);
        assert_eq!(m.len(), 2);
        // Present keys are found without clearing.
        assert_eq!(*m.get_or_insert_with(1, || 0), 11);
        assert_eq!(m.clears(), 0);
        // A third key clears the map first.
        assert_eq!(*m.get_or_insert_with(3, || 30), 30);
        assert_eq!((m.len(), m.clears()), (1, 1));
        assert_eq!(*m.get_or_insert_with(1, || 12), 12);
    }

    #[test]
    fn admission_bypasses_a_cache_that_misses() {
        let mut a = Admission::default();
        // Hits only: every record is admitted.
        let mut lookups = 0;
        for _ in 0..10 * Admission::WINDOW {
            lookups += 2;
            assert!(a.admit((lookups, 0)));
        }
        // One miss a record is tolerated.
        let mut misses = 0;
        for _ in 0..10 * Admission::WINDOW {
            lookups += 2;
            misses += 1;
            assert!(a.admit((lookups, misses)));
        }
        // Two are not: the window that sees them is the last admitted
        // until `BYPASS` records have gone by.
        let mut admitted = 0;
        for _ in 0..Admission::WINDOW + Admission::BYPASS {
            if a.admit((lookups, misses)) {
                admitted += 1;
                lookups += 2;
                misses += 2;
            }
        }
        assert_eq!(admitted, Admission::WINDOW);
        assert_eq!(a.bypassed(), u64::from(Admission::BYPASS));
        // Then it tries again.
        assert!(a.admit((lookups, misses)));
    }

    #[test]
    fn endpoint_keys_tell_shared_objects_apart() {
        let a = Endpoint {
            kind: EndpointKind::PublicNetwork,
            pod: None,
            node: Some("n".into()),
            service: None,
            network: None,
            stale: None,
        };
        let same = a.clone();
        let mut other = a.clone();
        other.node = Some("m".into());
        assert_eq!(EndpointKey::new(&a), EndpointKey::new(&same));
        // Names are interned: equal text is one key, other text another.
        let mut renamed = a.clone();
        renamed.node = Some(Name::new(&String::from("n")));
        assert_eq!(EndpointKey::new(&a), EndpointKey::new(&renamed));
        assert_ne!(EndpointKey::new(&a), EndpointKey::new(&other));
        let mut stale = a.clone();
        stale.stale = Some(flowscribe_model::Stale {
            deleted_at: std::time::UNIX_EPOCH,
        });
        assert_ne!(EndpointKey::new(&a), EndpointKey::new(&stale));
    }
}
