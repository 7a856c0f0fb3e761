//! An address-keyed hash map laid out for the per-flow lookup.
//!
//! Open addressing with linear probing; each slot is one 64-byte cache line
//! holding the key and the value inline, so a lookup whose key sits in its
//! home slot touches exactly one line of the map. The hash is a
//! multiply-shift of the address bits (Fibonacci hashing): addresses are
//! cluster addresses, not attacker-chosen keys, and sequential pod
//! addresses spread evenly under it. Lookups can be split in two, [`home`]
//! (hash, then [`touch`] the slot) and [`get_from`] (probe), so a batch can
//! start every cache miss before it waits for the first one.
//!
//! Removal shifts the following entries back (no tombstones), so probe
//! sequences stay as short as if the removed keys had never been inserted.
//!
//! Most addresses a node talks to are not keys (public addresses, for the
//! pod map), and a probe for an absent key would cost a cache miss in the
//! large slot array. A small bitmap in front says which address ranges
//! (IPv4 /16s, hashed IPv6 /64s) hold any key at all, so most absent keys
//! are answered from a 16 KiB array that stays in the cache.
//!
//! [`home`]: AddrMap::home
//! [`touch`]: touch
//! [`get_from`]: AddrMap::get_from

use std::net::IpAddr;

/// The fraction of slots that may be full before the map doubles: 7/8.
const MAX_LOAD_NUM: usize = 7;
const MAX_LOAD_DEN: usize = 8;
const MIN_SLOTS: usize = 16;

const EMPTY: u8 = 0;
const V4: u8 = 4;
const V6: u8 = 6;

/// One entry. Aligned to a cache line so that an entry never straddles two.
#[derive(Debug, Clone)]
#[repr(align(64))]
struct Slot<V> {
    /// The address bits: IPv4 in the low 32 bits.
    bits: u128,
    /// `EMPTY`, `V4` or `V6`: IPv4 `a.b.c.d` and IPv6 `::a.b.c.d` are
    /// different keys.
    family: u8,
    /// `V::default()` in an empty slot. Not an `Option`: a value type
    /// without a spare niche (a pod's history) would grow by a word and
    /// push the slot past one cache line.
    value: V,
}

impl<V: Default> Slot<V> {
    fn empty() -> Self {
        Slot {
            bits: 0,
            family: EMPTY,
            value: V::default(),
        }
    }
}

impl<V> Slot<V> {
    fn key(&self) -> Option<Key> {
        (self.family != EMPTY).then_some(Key {
            bits: self.bits,
            family: self.family,
        })
    }
}

/// Bits of the range filter per address family: IPv4 /16s map one to one.
const RANGE_BITS: usize = 1 << 16;
const RANGE_WORDS: usize = RANGE_BITS / 64;

/// An address split into what the map compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key {
    bits: u128,
    family: u8,
}

impl Key {
    #[inline]
    pub(crate) fn of(addr: IpAddr) -> Key {
        match addr {
            IpAddr::V4(a) => Key {
                bits: u128::from(u32::from(a)),
                family: V4,
            },
            IpAddr::V6(a) => Key {
                bits: u128::from(a),
                family: V6,
            },
        }
    }

    /// The range filter's bit of this key: its /16 (IPv4) or a hash of its
    /// /64 (IPv6), in the family's half of the bitmap.
    #[inline]
    fn range(self) -> usize {
        let bit = if self.family == V4 {
            (self.bits >> 16) as usize & (RANGE_BITS - 1)
        } else {
            (((self.bits >> 64) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 48) as usize
        };
        bit + if self.family == V4 { 0 } else { RANGE_BITS }
    }

    fn addr(self) -> IpAddr {
        if self.family == V4 {
            // The low 32 bits hold the address; truncation is the intent.
            IpAddr::V4((self.bits as u32).into())
        } else {
            IpAddr::V6(self.bits.into())
        }
    }

    /// 64 well-mixed bits: the high bits of a multiply by 2^64/phi.
    #[inline]
    fn hash(self) -> u64 {
        let lo = self.bits as u64;
        let hi = (self.bits >> 64) as u64;
        (lo ^ hi.wrapping_mul(0xff51_afd7_ed55_8ccd) ^ u64::from(self.family))
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct AddrMap<V> {
    /// A power of two long, or empty before the first insert.
    slots: Box<[Slot<V>]>,
    len: usize,
    /// 64 - log2(slots.len()): the hash's top bits pick the home slot.
    /// 63 while the map is empty (any home is then out of range, which
    /// every reader checks), so a shift never overflows.
    shift: u32,
    /// Bit `Key::range` is set while some key lies in that range (empty
    /// before the first insert).
    ranges: Box<[u64]>,
    /// Keys per range, for clearing a bit when its last key goes.
    keys_per_range: rustc_hash::FxHashMap<u32, u32>,
}

impl<V> Default for AddrMap<V> {
    fn default() -> Self {
        AddrMap {
            slots: Box::new([]),
            len: 0,
            shift: 63,
            ranges: Box::new([]),
            keys_per_range: rustc_hash::FxHashMap::default(),
        }
    }
}

impl<V: Default> AddrMap<V> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Slots allocated (for tests and memory accounting).
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Bytes per slot (one cache line when the value fits beside the key).
    #[cfg(test)]
    pub(crate) fn slot_bytes() -> usize {
        std::mem::size_of::<Slot<V>>()
    }

    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    /// The home slot of `key` (meaningless, but harmless, while the map is
    /// empty).
    #[inline]
    pub(crate) fn home(&self, key: Key) -> usize {
        (key.hash() >> self.shift) as usize
    }

    /// False when no key lies in `key`'s range, so `key` is absent; true
    /// means "probe to know".
    #[inline]
    pub(crate) fn may_hold(&self, key: Key) -> bool {
        let bit = key.range();
        self.ranges
            .get(bit / 64)
            .is_some_and(|w| w & (1 << (bit % 64)) != 0)
    }

    fn count_range(&mut self, key: Key, added: bool) {
        if self.ranges.is_empty() {
            self.ranges = vec![0; 2 * RANGE_WORDS].into_boxed_slice();
        }
        let bit = key.range();
        // Fewer than 2^17 ranges: the index fits.
        let range = u32::try_from(bit).unwrap_or(u32::MAX);
        let count = self.keys_per_range.entry(range).or_insert(0);
        if added {
            *count += 1;
        } else {
            *count = count.saturating_sub(1);
        }
        let held = *count > 0;
        if !held {
            self.keys_per_range.remove(&range);
        }
        if let Some(w) = self.ranges.get_mut(bit / 64) {
            if held {
                *w |= 1 << (bit % 64);
            } else {
                *w &= !(1 << (bit % 64));
            }
        }
    }

    /// The first half of a split lookup: `key`'s home slot, or `None` when
    /// the range filter already rules `key` out.
    /// [`slot_tag`](Self::slot_tag) brings a slot into the cache,
    /// [`get_from`](Self::get_from) finishes the lookup.
    #[inline]
    pub(crate) fn start_lookup(&self, key: Key) -> Option<usize> {
        self.may_hold(key).then(|| self.home(key))
    }

    /// A byte of slot `i` (its family tag), for [`touch`]ing it: any load
    /// of the line brings the whole slot into the cache.
    #[inline]
    pub(crate) fn slot_tag(&self, i: usize) -> u8 {
        self.slots.get(i).map_or(EMPTY, |slot| slot.family)
    }

    /// The value of `key`, probing from `home`, which must come from
    /// [`start_lookup`](Self::start_lookup) for `key` (a wrong one makes
    /// the answer wrong, never unsafe).
    #[inline]
    pub(crate) fn get_from(&self, home: usize, key: Key) -> Option<&V> {
        // Nearly every key sits in its home slot: one compare.
        let slot = self.slots.get(home)?;
        if slot.bits == key.bits && slot.family == key.family {
            return Some(&slot.value);
        }
        if slot.family == EMPTY {
            return None;
        }
        self.probe((home + 1) & self.mask(), key)
            .map(|i| &self.slots[i].value)
    }

    #[inline]
    pub(crate) fn get(&self, addr: &IpAddr) -> Option<&V> {
        let key = Key::of(*addr);
        self.find_from(self.home(key), key)
            .map(|i| &self.slots[i].value)
    }

    pub(crate) fn get_mut(&mut self, addr: &IpAddr) -> Option<&mut V> {
        let key = Key::of(*addr);
        let i = self.find_from(self.home(key), key)?;
        Some(&mut self.slots[i].value)
    }

    /// The slot holding `key`, if any.
    #[inline]
    fn find_from(&self, home: usize, key: Key) -> Option<usize> {
        if !self.may_hold(key) {
            return None;
        }
        self.probe(home, key)
    }

    /// The slot holding `key`, probing from `home`.
    #[inline]
    fn probe(&self, home: usize, key: Key) -> Option<usize> {
        let mask = self.mask();
        let mut i = home;
        // At most every slot once; the load limit keeps one slot empty, so
        // the loop ends at an empty slot long before that.
        for _ in 0..self.slots.len() {
            let slot = &self.slots[i];
            if slot.family == EMPTY {
                return None;
            }
            if slot.bits == key.bits && slot.family == key.family {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
        None
    }

    /// Insert or replace the value of `addr`.
    pub(crate) fn insert(&mut self, addr: IpAddr, value: V) {
        let i = self.claim(Key::of(addr));
        self.slots[i].value = value;
    }

    /// The slot of `key`, made for it (keyed, still without a value: the
    /// caller sets one) when absent.
    fn claim(&mut self, key: Key) -> usize {
        if (self.len + 1) * MAX_LOAD_DEN > self.slots.len() * MAX_LOAD_NUM {
            self.grow();
        }
        let mask = self.mask();
        let mut i = self.home(key);
        loop {
            let slot = &mut self.slots[i];
            if slot.family == EMPTY {
                slot.bits = key.bits;
                slot.family = key.family;
                self.len += 1;
                self.count_range(key, true);
                return i;
            }
            if slot.bits == key.bits && slot.family == key.family {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let slots = (self.slots.len() * 2).max(MIN_SLOTS);
        let old = std::mem::replace(
            &mut self.slots,
            std::iter::repeat_with(Slot::empty).take(slots).collect(),
        );
        self.shift = 64 - slots.trailing_zeros();
        self.len = 0;
        for slot in old.into_vec() {
            if let Some(key) = slot.key() {
                self.place(key, slot.value);
            }
        }
    }

    /// Put `key` (known absent) in the first free slot of its probe
    /// sequence.
    fn place(&mut self, key: Key, value: V) {
        let mask = self.mask();
        let mut i = self.home(key);
        while self.slots[i].family != EMPTY {
            i = (i + 1) & mask;
        }
        self.slots[i] = Slot {
            bits: key.bits,
            family: key.family,
            value,
        };
        self.len += 1;
    }

    /// Remove `addr`, returning its value.
    pub(crate) fn remove(&mut self, addr: &IpAddr) -> Option<V> {
        let key = Key::of(*addr);
        let hole = self.find_from(self.home(key), key)?;
        self.remove_at(hole)
    }

    /// Empty slot `hole` and shift back the entries after it that probed
    /// past it, so every remaining key stays reachable from its home.
    fn remove_at(&mut self, mut hole: usize) -> Option<V> {
        let mask = self.mask();
        let removed = std::mem::replace(&mut self.slots[hole], Slot::empty());
        self.len -= 1;
        if let Some(key) = removed.key() {
            self.count_range(key, false);
        }
        let mut i = hole;
        loop {
            i = (i + 1) & mask;
            let Some(key) = self.slots[i].key() else {
                break;
            };
            let home = self.home(key);
            // The entry at `i` may move to `hole` when `hole` lies on its
            // probe path, i.e. cyclically within [home, i).
            if (i.wrapping_sub(home) & mask) >= (i.wrapping_sub(hole) & mask) {
                self.slots.swap(hole, i);
                hole = i;
            }
        }
        removed.key().map(|_| removed.value)
    }

    /// Keep the entries `keep` accepts (it may change the values it sees).
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&mut V) -> bool) {
        let mut gone: Vec<IpAddr> = Vec::new();
        for slot in self.slots.iter_mut() {
            if let Some(key) = slot.key()
                && !keep(&mut slot.value)
            {
                gone.push(key.addr());
            }
        }
        for addr in gone {
            self.remove(&addr);
        }
    }

    pub(crate) fn clear(&mut self) {
        *self = AddrMap::default();
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.slots
            .iter()
            .filter(|s| s.family != EMPTY)
            .map(|s| &s.value)
    }

    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (IpAddr, &V)> {
        self.slots
            .iter()
            .filter_map(|s| s.key().map(|k| (k.addr(), &s.value)))
    }
}

/// Keep `value` (a fold of loaded values) from being optimised away, so
/// the loads that made it happen and their cache lines come in.
///
/// This is how the batch path prefetches without `unsafe` (the crate
/// forbids it; the `_mm_prefetch` intrinsic needs it). A load, unlike a
/// prefetch, holds its place in the core's reorder window until its data
/// arrives, so the loops that touch keep a few instructions per load: then
/// dozens of loads, and their misses, fit in the window at once.
/// `black_box` only keeps the compiler from deleting the unused loads; it
/// never changes a result.
#[inline(always)]
pub(crate) fn touch<T: Copy>(value: &T) {
    std::hint::black_box(*value);
}

#[cfg(test)]
mod tests;
