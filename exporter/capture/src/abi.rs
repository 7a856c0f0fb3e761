//! Byte-exact Rust mirrors of the structs in `bpf/flowscribe.h`.
//!
//! These are the only types that cross the kernel boundary. Their layout is
//! checked by the tests at the bottom against the offsets written in the C
//! header; change both together.
#![allow(
    unsafe_code,
    reason = "aya::Pod is an unsafe marker trait for plain-old-data"
)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Hook direction values of `flow_key.direction`.
pub const DIR_INGRESS: u8 = 0;
pub const DIR_EGRESS: u8 = 1;
/// Address family values of `flow_key.family`.
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// Mirror of `struct flow_key` (44 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RawFlowKey {
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub ifindex: u32,
    pub proto: u8,
    pub family: u8,
    pub direction: u8,
    pub pad: u8,
}

/// Mirror of `struct flow_val` (40 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RawFlowVal {
    pub packets: u64,
    pub bytes: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    pub tcp_flags: u32,
    /// TCP flags of the entry's first packet: tells a SYN from a SYN-ACK.
    pub first_tcp_flags: u32,
}

/// Mirror of `struct flow_event` (56 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RawFlowEvent {
    pub key: RawFlowKey,
    pub pad: u32,
    pub first_ns: u64,
}

/// Slots per CPU of the flow cache (`FS_CACHE_SLOTS`).
pub const CACHE_SLOTS: u32 = 256;

/// Mirror of `struct flow_cache_slot` (88 bytes), one slot of the per-CPU
/// `FLOW_CACHE`. `first_*` are meaningful only while `packets != 0`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RawCacheSlot {
    /// `key.family == 0`: the slot is empty.
    pub key: RawFlowKey,
    /// Who is changing the slot (`FS_SLOT_*`; 0 = nobody).
    pub busy: u32,
    /// Pending: counted in the slot, not yet in FLOWS.
    pub packets: u64,
    pub bytes: u64,
    /// Tick time of the latest pending packet (boot ns).
    pub last_ns: u64,
    /// OR of the pending packets' TCP flags.
    pub tcp_flags: u32,
    /// TCP flags of the first pending packet.
    pub first_tcp_flags: u32,
    /// Tick time of the first pending packet (boot ns).
    pub first_ns: u64,
}

/// Mirror of `struct drop_val` (40 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RawDropVal {
    pub packets: u64,
    pub bytes: u64,
    pub last_ns: u64,
    pub last_reason: u32,
    pub ifindex: u32,
    pub netns_ino: u32,
    pub pad: u32,
}

/// Mirror of `struct endpoint_key` (20 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RawEndpointKey {
    pub addr: [u8; 16],
    pub port: u16,
    pub proto: u8,
    pub family: u8,
}

/// Mirror of `struct fs_config` (16 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RawConfig {
    pub exclude_count: u32,
    /// ns per jiffy (1e9 / CONFIG_HZ), measured by `tick_clock`; 0 until then.
    pub tick_ns: u32,
    /// Boot ns minus jiffies * tick_ns (wrapping): the programs stamp
    /// existing flows with `jiffies * tick_ns + jiffies_to_boot_ns`.
    pub jiffies_to_boot_ns: u64,
}

/// Mirror of `struct fs_clock_sample` (16 bytes), index 0 of CLOCK_SAMPLE.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RawClockSample {
    pub jiffies: u64,
    pub boot_ns: u64,
}

// SAFETY: each type is #[repr(C)], made only of integers and byte arrays,
// with explicit padding fields, so every bit pattern is valid and there are
// no implicit padding bytes.
unsafe impl aya::Pod for RawFlowKey {}
// SAFETY: as above.
unsafe impl aya::Pod for RawFlowVal {}
// SAFETY: as above.
unsafe impl aya::Pod for RawCacheSlot {}
// SAFETY: as above.
unsafe impl aya::Pod for RawDropVal {}
// SAFETY: as above.
unsafe impl aya::Pod for RawEndpointKey {}
// SAFETY: as above.
unsafe impl aya::Pod for RawConfig {}
// SAFETY: as above.
unsafe impl aya::Pod for RawClockSample {}

/// Indexes of the per-CPU `STATS` array (`enum fs_stat`).
pub mod stat {
    pub const RING_RESERVE_FAILED: u32 = 0;
    pub const FLOW_MAP_FULL: u32 = 1;
    pub const FLOW_LOST_BYTES: u32 = 2;
    pub const PARSE_TRUNCATED: u32 = 3;
    pub const PARSE_EXT_LIMIT: u32 = 4;
    pub const NON_IP: u32 = 5;
    pub const EXCLUDED: u32 = 6;
    pub const DROP_MAP_FULL: u32 = 7;
    pub const DROPS_SEEN: u32 = 8;
    pub const FLOW_UPDATE_FAILED: u32 = 9;
    pub const COUNT: u32 = 16;
}

impl RawFlowKey {
    /// Source address as an `IpAddr`.
    pub fn src(&self) -> IpAddr {
        addr_of(self.family, &self.saddr)
    }

    /// Destination address as an `IpAddr`.
    pub fn dst(&self) -> IpAddr {
        addr_of(self.family, &self.daddr)
    }
}

/// Decode a 16-byte address field for the given family.
pub fn addr_of(family: u8, bytes: &[u8; 16]) -> IpAddr {
    if family == FAMILY_V4 {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*bytes))
    }
}

/// Encode an address into the 16-byte field and its family.
pub fn addr_bytes(addr: IpAddr) -> ([u8; 16], u8) {
    let mut out = [0u8; 16];
    match addr {
        IpAddr::V4(v4) => {
            out[..4].copy_from_slice(&v4.octets());
            (out, FAMILY_V4)
        }
        IpAddr::V6(v6) => (v6.octets(), FAMILY_V6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{align_of, offset_of, size_of};

    #[test]
    fn layouts_match_the_c_header() {
        // (size, align) as documented in bpf/flowscribe.h.
        macro_rules! layout {
            ($t:ty, $size:expr, $align:expr) => {
                assert_eq!(size_of::<$t>(), $size, "size of {}", stringify!($t));
                assert_eq!(align_of::<$t>(), $align, "alignment of {}", stringify!($t));
            };
        }
        layout!(RawFlowKey, 44, 4);
        layout!(RawFlowVal, 40, 8);
        layout!(RawFlowEvent, 56, 8);
        layout!(RawDropVal, 40, 8);
        layout!(RawCacheSlot, 88, 8);
        assert_eq!(offset_of!(RawCacheSlot, busy), 44);
        assert_eq!(offset_of!(RawCacheSlot, packets), 48);
        assert_eq!(offset_of!(RawCacheSlot, last_ns), 64);
        assert_eq!(offset_of!(RawCacheSlot, tcp_flags), 72);
        assert_eq!(offset_of!(RawCacheSlot, first_tcp_flags), 76);
        assert_eq!(offset_of!(RawCacheSlot, first_ns), 80);
        layout!(RawEndpointKey, 20, 2);
        layout!(RawConfig, 16, 8);
        layout!(RawClockSample, 16, 8);
        assert_eq!(offset_of!(RawConfig, tick_ns), 4);
        assert_eq!(offset_of!(RawConfig, jiffies_to_boot_ns), 8);
        assert_eq!(offset_of!(RawFlowKey, sport), 32);
        assert_eq!(offset_of!(RawFlowKey, ifindex), 36);
        assert_eq!(offset_of!(RawFlowKey, proto), 40);
        assert_eq!(offset_of!(RawFlowKey, direction), 42);
        assert_eq!(offset_of!(RawFlowEvent, first_ns), 48);
        assert_eq!(offset_of!(RawDropVal, last_reason), 24);
        assert_eq!(offset_of!(RawDropVal, netns_ino), 32);
        assert_eq!(offset_of!(RawEndpointKey, port), 16);
    }

    #[test]
    fn addresses_round_trip() {
        let cases: [IpAddr; 3] = [
            "10.1.2.3".parse().unwrap(),
            "fd00::1".parse().unwrap(),
            "::ffff:10.0.0.1".parse().unwrap(),
        ];
        for addr in cases {
            let (bytes, family) = addr_bytes(addr);
            assert_eq!(addr_of(family, &bytes), addr);
        }
    }
}
