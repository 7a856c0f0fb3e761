//! Community ID v1: the direction-free flow hash that Zeek, Suricata,
//! Arkime, Wireshark and most SIEMs compute, so that a flowscribe record can
//! be joined with theirs (ECS `network.community_id`, OCSF
//! `connection_info.community_uid`).
//!
//! The algorithm follows the specification in corelight/community-id-spec
//! (`README.md` and the reference `community-id.py`), and the tests run every
//! published vector from `schemas/community-id/`:
//!
//! ```text
//! input  = seed:u16 . saddr . daddr . proto:u8 . 0x00 . sport:u16 . dport:u16
//! digest = SHA-1(input)          (all integers big-endian; the two ports are
//!                                 left out for protocols without ports)
//! id     = "1:" . base64(digest)  or  "1:" . hex(digest)
//! ```
//!
//! The endpoints are ordered so that `(saddr, sport) < (daddr, dport)`,
//! which makes both directions of a connection hash alike. ICMP and ICMPv6
//! have no ports: the message type stands for the source port and, when the
//! type has a request/reply counterpart, that counterpart for the destination
//! port; other types are one-way, use the code as the destination port, and
//! are never reordered. [`FlowKey`] keeps the ICMP type in `src_port` and the
//! code in `dst_port`, which is exactly the input this mapping needs.
//!
//! Pure function over a [`FlowKey`]: no IO, no clock. It must not read
//! anything but the key; the seed is the caller's configuration.

use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64_STANDARD;
use flowscribe_model::FlowKey;
use sha1::{Digest as _, Sha1};

/// The seed the specification uses when none is configured.
pub const COMMUNITY_ID_DEFAULT_SEED: u16 = 0;

/// Why a Community ID could not be computed for a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommunityIdError {
    /// The specification hashes two addresses of one family; capture never
    /// produces a mixed key, so this is a bug upstream of normalize.
    #[error("source {src} and destination {dst} are not of the same IP family")]
    MixedAddressFamilies { src: IpAddr, dst: IpAddr },
}

/// The Community ID v1 of a flow, `1:` followed by the standard (padded)
/// base64 of the SHA-1 digest: the form ECS, OCSF and Zeek carry.
pub fn community_id_v1(key: &FlowKey, seed: u16) -> Result<String, CommunityIdError> {
    let digest = community_id_v1_digest(key, seed)?;
    Ok(format!("1:{}", BASE64_STANDARD.encode(digest)))
}

/// The Community ID v1 of a flow with the digest in lowercase hex instead of
/// base64 (the specification's "no base64" option).
pub fn community_id_v1_hex(key: &FlowKey, seed: u16) -> Result<String, CommunityIdError> {
    let digest = community_id_v1_digest(key, seed)?;
    Ok(format!("1:{}", crate::hex::lower(&digest)))
}

/// The raw 20-byte SHA-1 digest behind the Community ID v1 of a flow.
pub fn community_id_v1_digest(key: &FlowKey, seed: u16) -> Result<[u8; 20], CommunityIdError> {
    if key.src_addr.is_ipv4() != key.dst_addr.is_ipv4() {
        return Err(CommunityIdError::MixedAddressFamilies {
            src: key.src_addr,
            dst: key.dst_addr,
        });
    }
    // Within one family `IpAddr` orders by the address bytes in network
    // order, which is the comparison the specification asks for.
    let (src, dst, ports) = match port_equivalents(key.protocol, key.src_port, key.dst_port) {
        Ports::None => {
            if key.src_addr < key.dst_addr {
                (key.src_addr, key.dst_addr, None)
            } else {
                (key.dst_addr, key.src_addr, None)
            }
        }
        Ports::OneWay(sport, dport) => (key.src_addr, key.dst_addr, Some((sport, dport))),
        Ports::TwoWay(sport, dport) => {
            if (key.src_addr, sport) < (key.dst_addr, dport) {
                (key.src_addr, key.dst_addr, Some((sport, dport)))
            } else {
                (key.dst_addr, key.src_addr, Some((dport, sport)))
            }
        }
    };

    // At most 2 + 16 + 16 + 2 + 4 bytes: hashed in one call from the stack.
    let mut buf = [0u8; 40];
    let mut len = 0;
    let mut put = |part: &[u8]| {
        buf[len..len + part.len()].copy_from_slice(part);
        len += part.len();
    };
    put(&seed.to_be_bytes());
    for addr in [src, dst] {
        match addr {
            IpAddr::V4(a) => put(&a.octets()),
            IpAddr::V6(a) => put(&a.octets()),
        }
    }
    put(&[key.protocol, 0]);
    if let Some((sport, dport)) = ports {
        put(&sport.to_be_bytes());
        put(&dport.to_be_bytes());
    }
    Ok(Sha1::digest(&buf[..len]).into())
}

/// The ports that enter the hash, and whether the endpoints may be reordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ports {
    /// The protocol has no ports: hash the addresses and protocol only.
    None,
    /// Order the endpoints by (address, port) before hashing.
    TwoWay(u16, u16),
    /// Hash in the order seen (ICMP messages without a reply type).
    OneWay(u16, u16),
}

const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_SCTP: u8 = 132;

fn port_equivalents(protocol: u8, src_port: u16, dst_port: u16) -> Ports {
    match protocol {
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP => Ports::TwoWay(src_port, dst_port),
        IPPROTO_ICMP => icmp_ports(src_port, dst_port, icmp_v4_counterpart),
        IPPROTO_ICMPV6 => icmp_ports(src_port, dst_port, icmp_v6_counterpart),
        _ => Ports::None,
    }
}

fn icmp_ports(icmp_type: u16, icmp_code: u16, counterpart: fn(u16) -> Option<u16>) -> Ports {
    match counterpart(icmp_type) {
        Some(reply) => Ports::TwoWay(icmp_type, reply),
        None => Ports::OneWay(icmp_type, icmp_code),
    }
}

/// ICMPv4 request/reply pairs (Zeek's `ICMP4_counterpart`).
pub(crate) fn icmp_v4_counterpart(icmp_type: u16) -> Option<u16> {
    Some(match icmp_type {
        8 => 0,   // echo request -> echo reply
        0 => 8,   // echo reply -> echo request
        13 => 14, // timestamp
        14 => 13, // timestamp reply
        15 => 16, // information request
        16 => 15, // information reply
        10 => 9,  // router solicitation
        9 => 10,  // router advertisement
        17 => 18, // address mask request
        18 => 17, // address mask reply
        _ => return None,
    })
}

/// ICMPv6 request/reply pairs (Zeek's `ICMP6_counterpart`).
pub(crate) fn icmp_v6_counterpart(icmp_type: u16) -> Option<u16> {
    Some(match icmp_type {
        128 => 129, // echo request
        129 => 128, // echo reply
        133 => 134, // router solicitation
        134 => 133, // router advertisement
        135 => 136, // neighbor solicitation
        136 => 135, // neighbor advertisement
        130 => 131, // multicast listener query
        131 => 130, // multicast listener report
        139 => 140, // node information query ("who are you" request)
        140 => 139, // node information response
        144 => 145, // home agent address discovery request
        145 => 144, // home agent address discovery reply
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_TABLES: &str = include_str!("../../../schemas/community-id/spec_table_vectors.csv");
    const BASELINE_DEFAULT: &str =
        include_str!("../../../schemas/community-id/baseline_deflt.json");
    const BASELINE_SEED1: &str = include_str!("../../../schemas/community-id/baseline_seed1.json");
    const BASELINE_NO_BASE64: &str =
        include_str!("../../../schemas/community-id/baseline_nob64.json");

    /// Every vector shipped in `schemas/community-id/`: 48 table rows and
    /// 3 x 23 pcap-derived rows. Pinned so that a parser that silently skips
    /// rows fails here.
    const PUBLISHED_VECTORS: usize = 117;

    fn compute(key: &FlowKey, seed: u16, base64: bool) -> String {
        let id = if base64 {
            community_id_v1(key, seed)
        } else {
            community_id_v1_hex(key, seed)
        };
        id.unwrap()
    }

    /// The README tables: `seed,base64,proto_name,proto,saddr,daddr,
    /// sport_or_icmp_type,dport_or_icmp_code,community_id,comment`. ICMP rows
    /// hold the raw type and code, as `FlowKey` does; port-less rows hold `-`.
    fn check_spec_tables() -> usize {
        let mut checked = 0;
        for (line_no, line) in SPEC_TABLES.lines().enumerate().skip(1) {
            if line.trim().is_empty() {
                continue;
            }
            // The comment is the last column and the only one with commas.
            let cols: Vec<&str> = line.splitn(10, ',').collect();
            assert_eq!(cols.len(), 10, "line {}: {line}", line_no + 1);
            let port = |s: &str| if s == "-" { 0 } else { s.parse().unwrap() };
            let key = FlowKey {
                src_addr: cols[4].parse().unwrap(),
                dst_addr: cols[5].parse().unwrap(),
                src_port: port(cols[6]),
                dst_port: port(cols[7]),
                protocol: cols[3].parse().unwrap(),
            };
            let seed: u16 = cols[0].parse().unwrap();
            let base64: bool = cols[1].parse().unwrap();
            assert_eq!(
                compute(&key, seed, base64),
                cols[8],
                "spec table line {}: {line}",
                line_no + 1
            );
            checked += 1;
        }
        checked
    }

    /// The `community-id-pcap --json` baselines. Their ICMP rows hold the
    /// already-mapped port equivalents (an echo reply reads `sport: 0,
    /// dport: 8`), so they are turned back into type and code first: a type
    /// with a counterpart must show that counterpart as its destination port
    /// and its code never enters the hash; for any other type the destination
    /// port is the code.
    fn check_baseline(file: &str, text: &str, seed: u16, base64: bool) -> usize {
        let rows: Vec<serde_json::Value> = serde_json::from_str(text).unwrap();
        for (i, row) in rows.iter().enumerate() {
            let protocol = u8::try_from(row["proto"].as_u64().unwrap()).unwrap();
            let port = |v: &serde_json::Value| v.as_u64().map_or(0, |p| u16::try_from(p).unwrap());
            // Port-less rows hold `null`; `FlowKey` holds 0 there.
            let (src_port, mut dst_port) = (port(&row["sport"]), port(&row["dport"]));
            let counterpart = match protocol {
                IPPROTO_ICMP => Some(icmp_v4_counterpart as fn(u16) -> Option<u16>),
                IPPROTO_ICMPV6 => Some(icmp_v6_counterpart as fn(u16) -> Option<u16>),
                _ => None,
            };
            if let Some(reply) = counterpart.and_then(|c| c(src_port)) {
                assert_eq!(dst_port, reply, "{file}[{i}]: mapped ICMP pair");
                dst_port = 0;
            }
            let key = FlowKey {
                src_addr: row["saddr"].as_str().unwrap().parse().unwrap(),
                dst_addr: row["daddr"].as_str().unwrap().parse().unwrap(),
                src_port,
                dst_port,
                protocol,
            };
            assert_eq!(
                compute(&key, seed, base64),
                row["communityid"].as_str().unwrap(),
                "{file}[{i}]: {row}"
            );
        }
        rows.len()
    }

    #[test]
    fn every_published_vector() {
        let tables = check_spec_tables();
        let baselines = check_baseline("baseline_deflt.json", BASELINE_DEFAULT, 0, true)
            + check_baseline("baseline_seed1.json", BASELINE_SEED1, 1, true)
            + check_baseline("baseline_nob64.json", BASELINE_NO_BASE64, 0, false);
        let checked = tables + baselines;
        println!(
            "community-id: {checked} vectors checked ({tables} table rows, {baselines} baseline rows)"
        );
        assert_eq!(tables, 48);
        assert_eq!(checked, PUBLISHED_VECTORS);
    }

    fn key(src: &str, dst: &str, sport: u16, dport: u16, protocol: u8) -> FlowKey {
        FlowKey {
            src_addr: src.parse().unwrap(),
            dst_addr: dst.parse().unwrap(),
            src_port: sport,
            dst_port: dport,
            protocol,
        }
    }

    #[test]
    fn both_directions_hash_alike() {
        // (forward, reverse) keys as capture would orient them.
        let cases = [
            (
                key("10.0.0.1", "10.0.0.2", 40000, 80, 6),
                key("10.0.0.2", "10.0.0.1", 80, 40000, 6),
            ),
            (
                key("10.0.0.9", "10.0.0.1", 53, 53, 17),
                key("10.0.0.1", "10.0.0.9", 53, 53, 17),
            ),
            (
                key("::1", "::1", 2000, 1000, 132),
                key("::1", "::1", 1000, 2000, 132),
            ),
            // Echo request and echo reply: codes differ from the pair and are ignored.
            (
                key("10.0.0.1", "10.0.0.2", 8, 0, 1),
                key("10.0.0.2", "10.0.0.1", 0, 0, 1),
            ),
            (
                key("fd00::1", "fd00::2", 135, 0, 58),
                key("fd00::2", "fd00::1", 136, 0, 58),
            ),
            (
                key("10.0.0.1", "10.0.0.2", 0, 0, 47),
                key("10.0.0.2", "10.0.0.1", 0, 0, 47),
            ),
        ];
        for (forward, reverse) in cases {
            assert_eq!(
                compute(&forward, 0, true),
                compute(&reverse, 0, true),
                "{forward:?}"
            );
        }
    }

    #[test]
    fn one_way_icmp_keeps_its_direction_and_code() {
        // Destination unreachable (3) has no reply type: never reordered.
        let a = key("10.0.0.1", "10.0.0.2", 3, 1, 1);
        let b = key("10.0.0.2", "10.0.0.1", 3, 1, 1);
        assert_ne!(compute(&a, 0, true), compute(&b, 0, true));
        let other_code = key("10.0.0.1", "10.0.0.2", 3, 3, 1);
        assert_ne!(compute(&a, 0, true), compute(&other_code, 0, true));
    }

    #[test]
    fn portless_protocols_ignore_ports() {
        let a = key("10.0.0.1", "10.0.0.2", 0, 0, 46);
        let b = key("10.0.0.1", "10.0.0.2", 7, 9, 46);
        assert_eq!(compute(&a, 0, true), compute(&b, 0, true));
    }

    #[test]
    fn mixed_families_are_an_error() {
        let k = key("10.0.0.1", "::1", 1, 2, 6);
        assert_eq!(
            community_id_v1(&k, 0),
            Err(CommunityIdError::MixedAddressFamilies {
                src: k.src_addr,
                dst: k.dst_addr
            })
        );
    }
}
