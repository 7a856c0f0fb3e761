//! Network classification: which named network an address is in, and what
//! kind of destination that makes it when no cluster object owns it.
//!
//! The most specific (longest prefix) matching network wins. Built-in ranges
//! give every address a kind (loopback, multicast, cloud metadata, link-local,
//! private, public); configured networks and the cluster's own ranges (pod
//! CIDRs from Nodes, service CIDRs from config) give names on top. Pure data,
//! no IO.

use std::net::IpAddr;
use std::sync::Arc;

use flowscribe_model::EndpointKind;
use ipnet::IpNet;
use rustc_hash::FxHashMap;

pub const PRIVATE_NETWORK: &str = "PRIVATE NETWORK";
pub const PUBLIC_NETWORK: &str = "PUBLIC NETWORK";
pub const POD_NETWORK: &str = "pod-network";
pub const SERVICE_NETWORK: &str = "service-network";

/// The built-in ranges: (name, kind, CIDRs).
pub const BUILTIN: &[(&str, EndpointKind, &[&str])] = &[
    (
        "LOOPBACK",
        EndpointKind::Loopback,
        &["127.0.0.0/8", "::1/128"],
    ),
    (
        "MULTICAST",
        EndpointKind::Multicast,
        &["224.0.0.0/4", "255.255.255.255/32", "ff00::/8"],
    ),
    (
        "CLOUD METADATA",
        EndpointKind::CloudMetadata,
        &["169.254.169.254/32", "fd00:ec2::254/128"],
    ),
    (
        "LINK LOCAL",
        EndpointKind::LinkLocal,
        &["169.254.0.0/16", "fe80::/10"],
    ),
    (
        PRIVATE_NETWORK,
        EndpointKind::PrivateNetwork,
        &[
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "100.64.0.0/10",
            "fc00::/7",
        ],
    ),
    (
        "UNSPECIFIED",
        EndpointKind::Unknown,
        &["0.0.0.0/32", "::/128"],
    ),
];

#[derive(Debug, Clone)]
struct Entry {
    net: IpNet,
    name: Arc<str>,
    /// Built-in kind; configured networks take the kind of the built-in
    /// range that contains them.
    kind: Option<EndpointKind>,
}

/// All entries of one prefix length, addresses as u128 (IPv4 in the low
/// bits): one hash probe finds the ones that
/// contain an address, so a lookup costs one probe per distinct length
/// (a handful), not one compare per network (hundreds with a pod CIDR per
/// node).
#[derive(Debug, Clone)]
struct Level {
    mask: u128,
    /// Network bits -> indexes into `entries`, in priority order.
    by_bits: FxHashMap<u128, Vec<usize>>,
}

/// A set of named networks, searched most-specific first.
#[derive(Debug, Clone)]
pub struct Networks {
    /// Sorted by prefix length, longest first.
    entries: Vec<Entry>,
    /// One level per prefix length, longest first.
    v4: Vec<Level>,
    v6: Vec<Level>,
    public: Arc<str>,
}

fn bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

impl Default for Networks {
    fn default() -> Self {
        let mut n = Networks {
            entries: Vec::new(),
            v4: Vec::new(),
            v6: Vec::new(),
            public: Arc::from(PUBLIC_NETWORK),
        };
        for (name, kind, cidrs) in BUILTIN {
            let name: Arc<str> = Arc::from(*name);
            for c in *cidrs {
                // The built-in table is constant and covered by a test.
                if let Ok(net) = c.parse() {
                    n.entries.push(Entry {
                        net,
                        name: name.clone(),
                        kind: Some(*kind),
                    });
                }
            }
        }
        n.sort();
        n
    }
}

/// A configured network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedNetwork {
    pub name: String,
    pub cidrs: Vec<IpNet>,
}

impl Networks {
    /// The built-in ranges plus named networks (configured, or derived from
    /// the cluster: pod CIDRs, service CIDRs).
    pub fn with(named: &[NamedNetwork]) -> Self {
        let mut n = Networks::default();
        n.add(named);
        n
    }

    pub fn add(&mut self, named: &[NamedNetwork]) {
        for nn in named {
            let name: Arc<str> = Arc::from(nn.name.as_str());
            for net in &nn.cidrs {
                self.entries.push(Entry {
                    net: net.trunc(),
                    name: name.clone(),
                    kind: None,
                });
            }
        }
        self.sort();
    }

    fn sort(&mut self) {
        // Stable: on equal prefixes the earlier (built-in, then first
        // configured) entry stays first. Configured entries come after
        // built-ins, so a configured /8 equal to a built-in /8 would lose;
        // put configured ones first among equals instead, since naming a
        // range is the point of configuring it.
        self.entries.sort_by(|a, b| {
            b.net
                .prefix_len()
                .cmp(&a.net.prefix_len())
                .then(a.kind.is_some().cmp(&b.kind.is_some()))
        });
        self.v4.clear();
        self.v6.clear();
        for (i, e) in self.entries.iter().enumerate() {
            let mask = bits(e.net.netmask());
            let levels = match e.net {
                IpNet::V4(_) => &mut self.v4,
                IpNet::V6(_) => &mut self.v6,
            };
            // Entries come longest prefix first, so a new length is a new
            // last level.
            if levels.last().is_none_or(|l| l.mask != mask) {
                levels.push(Level {
                    mask,
                    by_bits: FxHashMap::default(),
                });
            }
            if let Some(level) = levels.last_mut() {
                level
                    .by_bits
                    .entry(bits(e.net.network()))
                    .or_default()
                    .push(i);
            }
        }
    }

    /// The most specific network's name and the address's kind.
    pub fn classify(&self, addr: IpAddr) -> (EndpointKind, Arc<str>) {
        let list = match addr {
            IpAddr::V4(_) => &self.v4,
            IpAddr::V6(_) => &self.v6,
        };
        let a = bits(addr);
        let mut name: Option<&Arc<str>> = None;
        for level in list {
            let Some(ids) = level.by_bits.get(&(a & level.mask)) else {
                continue;
            };
            for &i in ids {
                let e = &self.entries[i];
                let name = name.get_or_insert(&e.name);
                if let Some(kind) = e.kind {
                    return (kind, Arc::clone(name));
                }
            }
        }
        (
            EndpointKind::PublicNetwork,
            Arc::clone(name.unwrap_or(&self.public)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("cidr")
    }

    #[test]
    fn builtin_table_parses() {
        let count: usize = BUILTIN.iter().map(|(_, _, c)| c.len()).sum();
        assert_eq!(Networks::default().entries.len(), count);
    }

    #[test]
    fn classification_table() {
        let n = Networks::with(&[
            NamedNetwork {
                name: "corp-vpn".into(),
                cidrs: vec![net("10.50.0.0/16")],
            },
            NamedNetwork {
                name: "partner".into(),
                cidrs: vec![net("203.0.113.0/24")],
            },
            NamedNetwork {
                name: POD_NETWORK.into(),
                cidrs: vec![net("10.0.0.0/8")],
            },
        ]);
        let cases = [
            ("10.50.3.4", EndpointKind::PrivateNetwork, "corp-vpn"),
            ("10.9.3.4", EndpointKind::PrivateNetwork, POD_NETWORK),
            ("172.20.0.1", EndpointKind::PrivateNetwork, PRIVATE_NETWORK),
            ("192.168.1.1", EndpointKind::PrivateNetwork, PRIVATE_NETWORK),
            ("100.64.0.1", EndpointKind::PrivateNetwork, PRIVATE_NETWORK),
            ("fd12::1", EndpointKind::PrivateNetwork, PRIVATE_NETWORK),
            (
                "169.254.169.254",
                EndpointKind::CloudMetadata,
                "CLOUD METADATA",
            ),
            (
                "fd00:ec2::254",
                EndpointKind::CloudMetadata,
                "CLOUD METADATA",
            ),
            ("169.254.10.1", EndpointKind::LinkLocal, "LINK LOCAL"),
            ("fe80::1", EndpointKind::LinkLocal, "LINK LOCAL"),
            ("127.0.0.53", EndpointKind::Loopback, "LOOPBACK"),
            ("::1", EndpointKind::Loopback, "LOOPBACK"),
            ("239.1.1.1", EndpointKind::Multicast, "MULTICAST"),
            ("ff02::1", EndpointKind::Multicast, "MULTICAST"),
            ("255.255.255.255", EndpointKind::Multicast, "MULTICAST"),
            ("0.0.0.0", EndpointKind::Unknown, "UNSPECIFIED"),
            ("8.8.8.8", EndpointKind::PublicNetwork, PUBLIC_NETWORK),
            ("2001:db8::1", EndpointKind::PublicNetwork, PUBLIC_NETWORK),
            ("203.0.113.9", EndpointKind::PublicNetwork, "partner"),
        ];
        for (addr, kind, name) in cases {
            let (k, nm) = n.classify(addr.parse().expect("ip"));
            assert_eq!((k, &*nm), (kind, name), "{addr}");
        }
    }
}
