use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;

fn v4(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))
}

/// Every key of `model` is found with its value, and no other key of
/// `universe` is.
fn assert_same(map: &AddrMap<u32>, model: &HashMap<IpAddr, u32>, universe: &[IpAddr]) {
    assert_eq!(map.len(), model.len());
    assert_eq!(map.values().count(), model.len());
    for a in universe {
        assert_eq!(map.get(a), model.get(a), "{a}");
    }
    // A free slot always remains, so a probe for an absent key ends.
    assert!(map.len() * MAX_LOAD_DEN <= map.capacity() * MAX_LOAD_NUM);
}

#[test]
fn a_slot_is_one_cache_line() {
    assert_eq!(std::mem::size_of::<Slot<u32>>(), 64);
    assert_eq!(std::mem::align_of::<Slot<u32>>(), 64);
}

#[test]
fn ipv4_and_ipv4_compatible_ipv6_are_different_keys() {
    let mut m = AddrMap::default();
    let a4 = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let a6 = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_compatible());
    m.insert(a4, 4);
    assert_eq!(m.get(&a6), None);
    m.insert(a6, 6);
    assert_eq!((m.get(&a4), m.get(&a6), m.len()), (Some(&4), Some(&6), 2));
    assert_eq!(m.remove(&a4), Some(4));
    assert_eq!((m.get(&a4), m.get(&a6), m.len()), (None, Some(&6), 1));
}

#[test]
fn grows_and_keeps_every_key() {
    let mut m = AddrMap::default();
    assert_eq!(m.capacity(), 0);
    assert_eq!(m.get(&v4(1)), None);
    let mut model = HashMap::new();
    let universe: Vec<IpAddr> = (0..10_000).map(v4).collect();
    for (i, a) in universe.iter().enumerate().take(5_000) {
        m.insert(*a, i as u32);
        model.insert(*a, i as u32);
    }
    // 5,000 keys at most 7/8 full: 8,192 slots.
    assert_eq!(m.capacity(), 8_192);
    assert_same(&m, &model, &universe);
    // Replacing a value neither adds a key nor grows.
    m.insert(v4(7), 70);
    model.insert(v4(7), 70);
    *m.get_mut(&v4(8)).expect("present") += 1;
    *model.get_mut(&v4(8)).expect("present") += 1;
    assert_eq!(m.get_mut(&v4(9_999)), None);
    assert_eq!(m.capacity(), 8_192);
    assert_same(&m, &model, &universe);
}

/// Keys that share one home slot, chosen so that the probe sequence wraps
/// from the last slot to the first: removing any of them must leave the
/// others reachable (backward shift across the wrap).
#[test]
fn colliding_keys_survive_removals_across_the_wrap() {
    let mut m: AddrMap<u32> = AddrMap::default();
    m.insert(v4(0), 0);
    m.remove(&v4(0));
    let last = m.capacity() - 1;
    let colliding: Vec<IpAddr> = (1..200_000)
        .map(v4)
        .filter(|a| m.home(Key::of(*a)) == last)
        .take(4)
        .collect();
    assert_eq!(colliding.len(), 4);
    // A key homed at slot 0, which the wrapped chain occupies.
    let at_zero = (1..200_000)
        .map(v4)
        .find(|a| m.home(Key::of(*a)) == 0)
        .expect("a key homed at 0");
    for (i, a) in colliding.iter().enumerate() {
        m.insert(*a, i as u32);
    }
    m.insert(at_zero, 99);
    assert_eq!(m.capacity(), 16, "no growth: 5 keys");
    let mut model: HashMap<IpAddr, u32> = m.iter().map(|(a, v)| (a, *v)).collect();
    let mut universe = colliding.clone();
    universe.push(at_zero);
    assert_same(&m, &model, &universe);
    // Remove the head of the chain, then one in the middle, then the one
    // homed at 0.
    for gone in [colliding[0], colliding[2], at_zero] {
        assert_eq!(m.remove(&gone), model.remove(&gone));
        assert_same(&m, &model, &universe);
    }
    assert_eq!(m.remove(&at_zero), None);
}

/// Random inserts, replacements, removals and retains over a small key
/// space (many collisions, IPv4 and IPv6) agree with std's HashMap.
#[test]
fn random_operations_agree_with_a_hash_map() {
    let mut universe: Vec<IpAddr> = (0..300).map(v4).collect();
    universe.extend((0..300).map(|i| IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 1, i))));
    let mut x: u64 = 42;
    let mut next = move || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) as usize
    };
    let mut m = AddrMap::default();
    let mut model = HashMap::new();
    for step in 0..20_000u32 {
        let a = universe[next() % universe.len()];
        match next() % 10 {
            0..=4 => {
                m.insert(a, step);
                model.insert(a, step);
            }
            5..=8 => assert_eq!(m.remove(&a), model.remove(&a)),
            _ => {
                let keep = |v: &u32| !v.is_multiple_of(3);
                m.retain(|v| keep(v));
                model.retain(|_, v| keep(v));
            }
        }
        if step % 500 == 0 {
            assert_same(&m, &model, &universe);
        }
    }
    assert_same(&m, &model, &universe);
    m.clear();
    assert_eq!((m.len(), m.get(&universe[0])), (0, None));
}

#[test]
fn split_lookup_finds_what_get_finds() {
    let mut m = AddrMap::default();
    for i in 0..1_000 {
        m.insert(v4(i), i);
    }
    let elsewhere = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    for a in (0..1_200).map(v4).chain([elsewhere]) {
        let key = Key::of(a);
        let found = m.start_lookup(key).and_then(|home| m.get_from(home, key));
        assert_eq!(found, m.get(&a), "{a}");
    }
    // Ruled out by the range filter without a probe.
    assert_eq!(m.start_lookup(Key::of(elsewhere)), None);
}

/// The range filter: a range's bit is set exactly while it holds a key,
/// for IPv4 /16s and IPv6 /64s, and an absent key in an empty range is
/// answered without a probe.
#[test]
fn the_range_filter_follows_inserts_and_removals() {
    let mut m = AddrMap::default();
    let a: IpAddr = "10.1.0.1".parse().expect("ip");
    let b: IpAddr = "10.1.255.7".parse().expect("ip");
    let other: IpAddr = "10.2.0.1".parse().expect("ip");
    let v6: IpAddr = "fd00:1:2:3::1".parse().expect("ip");
    let v6_same_64: IpAddr = "fd00:1:2:3::ffff".parse().expect("ip");
    let v6_other_64: IpAddr = "fd00:1:2:4::1".parse().expect("ip");
    let may = |m: &AddrMap<u32>, x: IpAddr| m.may_hold(Key::of(x));
    assert!(!may(&m, a));
    m.insert(a, 1);
    m.insert(b, 2);
    m.insert(v6, 3);
    assert!(may(&m, a) && may(&m, b) && may(&m, v6) && may(&m, v6_same_64));
    assert!(!may(&m, other));
    // 10.1/16 stays while one of its two keys is left.
    assert_eq!(m.remove(&a), Some(1));
    assert!(may(&m, b));
    assert_eq!(m.get(&b), Some(&2));
    assert_eq!(m.remove(&b), Some(2));
    assert!(!may(&m, b));
    // Replacing a value does not count the key twice.
    m.insert(v6, 4);
    m.insert(v6, 5);
    assert_eq!(m.remove(&v6), Some(5));
    assert!(!may(&m, v6_same_64));
    assert!(!may(&m, v6_other_64));
    // Growth keeps the filter: many keys in one /16, then all removed.
    for i in 0..1_000 {
        m.insert(v4(i), i);
    }
    assert!(may(&m, v4(5)));
    m.retain(|_| false);
    assert_eq!(m.len(), 0);
    assert!(!may(&m, v4(5)));
}
