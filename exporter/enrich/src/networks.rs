//! Network classification: which named network an address is in, and what
//! kind of destination that makes it when no cluster object owns it.
//!
//! The most specific (longest prefix) matching network wins. Built-in ranges
//! give every address a kind (loopback, multicast, cloud metadata, link-local,
//! private, public); configured networks and the cluster's own ranges (pod
//! CIDRs from Nodes, service CIDRs from config) give names on top. Pure data,
//! no IO.
//!
//! Every flow end is classified, so IPv4 (almost all cluster traffic) is
//! answered by a [`V4Table`] built once per change of the networks: the
//! answer is painted into a 16-8-8 stride table, so a lookup is one to three
//! indexed loads from small arrays, with no hashing and no pointers to
//! follow. IPv6 uses one hash probe per distinct prefix length.

use std::net::IpAddr;

use flowscribe_model::{EndpointKind, Name};
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
    name: Name,
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
    public: Name,
    /// The IPv4 answers of `entries`, precomputed.
    v4_table: V4Table,
}

/// A leaf of [`V4Table`]: the answer for every address it covers, as an
/// index into [`V4Table::names`] (low 24 bits) and into
/// [`V4Table::kinds`] (the next 7 bits). The top bit marks a reference to a
/// finer table instead.
type Cell = u32;

const SUBTABLE: Cell = 1 << 31;
const NAME_BITS: u32 = 24;
const NAME_MASK: Cell = (1 << NAME_BITS) - 1;

/// IPv4 classification as a multibit trie with leaf pushing: the top 16
/// bits of an address index `root`; a cell that needs finer answers refers
/// to a 256-cell table for the next 8 bits, and that one to another for the
/// last 8. Built by painting the networks in increasing priority over the
/// cells they cover, so every cell holds the final answer (most specific
/// name, kind of the most specific built-in range) and lookups never
/// compare prefixes.
#[derive(Debug, Clone)]
struct V4Table {
    root: Box<[Cell]>,
    tables: Vec<[Cell; 256]>,
    /// Index 0: the public network's name (no named network contains the
    /// address).
    names: Vec<Name>,
    /// Index 0: [`EndpointKind::PublicNetwork`] (no built-in range contains
    /// the address).
    kinds: Vec<EndpointKind>,
}

impl V4Table {
    fn new(public: Name) -> Self {
        V4Table {
            root: vec![0; 1 << 16].into_boxed_slice(),
            tables: Vec::new(),
            names: vec![public],
            kinds: vec![EndpointKind::PublicNetwork],
        }
    }

    /// Paint `entries` (highest priority first, as [`Networks`] keeps
    /// them): lowest priority first, each overwriting what it covers.
    fn build(public: Name, entries: &[Entry]) -> Self {
        let mut t = V4Table::new(public);
        for e in entries.iter().rev() {
            let IpNet::V4(net) = e.net else { continue };
            let name = t.name_index(e.name);
            let kind = e.kind.map(|k| t.kind_index(k));
            let paint = |cell: Cell| {
                let kind = kind.unwrap_or(cell >> NAME_BITS);
                (kind << NAME_BITS) | name
            };
            t.paint(u32::from(net.network()), net.prefix_len(), &paint);
        }
        t
    }

    fn name_index(&mut self, name: Name) -> Cell {
        let i = match self.names.iter().position(|n| *n == name) {
            Some(i) => i,
            None => {
                self.names.push(name);
                self.names.len() - 1
            }
        };
        // More distinct names than 2^24 cannot be configured in practice;
        // saturating keeps the table well formed if it ever happens.
        Cell::try_from(i).unwrap_or(NAME_MASK).min(NAME_MASK)
    }

    fn kind_index(&mut self, kind: EndpointKind) -> Cell {
        let i = match self.kinds.iter().position(|k| *k == kind) {
            Some(i) => i,
            None => {
                self.kinds.push(kind);
                self.kinds.len() - 1
            }
        };
        // EndpointKind has a dozen variants: always fits in 7 bits.
        Cell::try_from(i).unwrap_or(0) & 0x7f
    }

    /// Apply `paint` to every leaf covering `net/len`.
    fn paint(&mut self, net: u32, len: u8, paint: &impl Fn(Cell) -> Cell) {
        let hi = (net >> 16) as usize;
        if len <= 16 {
            let count = 1usize << (16 - len);
            for i in hi..hi + count {
                let cell = self.root[i];
                self.root[i] = self.paint_cell(cell, paint);
            }
            return;
        }
        let t1 = self.subtable_of_root(hi);
        let mid = ((net >> 8) & 0xff) as usize;
        if len <= 24 {
            let count = 1usize << (24 - len);
            for j in mid..mid + count {
                let cell = self.tables[t1][j];
                self.tables[t1][j] = self.paint_cell(cell, paint);
            }
            return;
        }
        let t2 = self.subtable_of(t1, mid);
        let lo = (net & 0xff) as usize;
        let count = 1usize << (32 - len);
        for k in lo..lo + count {
            let cell = self.tables[t2][k];
            self.tables[t2][k] = self.paint_cell(cell, paint);
        }
    }

    /// `cell` painted: a leaf directly, a subtable in every one of its
    /// leaves (the painted network covers all of them).
    fn paint_cell(&mut self, cell: Cell, paint: &impl Fn(Cell) -> Cell) -> Cell {
        if cell & SUBTABLE == 0 {
            return paint(cell);
        }
        let t = (cell & !SUBTABLE) as usize;
        for i in 0..256 {
            let c = self.tables[t][i];
            self.tables[t][i] = self.paint_cell(c, paint);
        }
        cell
    }

    fn subtable_of_root(&mut self, i: usize) -> usize {
        let cell = self.root[i];
        let (t, cell) = self.expand(cell);
        self.root[i] = cell;
        t
    }

    fn subtable_of(&mut self, table: usize, i: usize) -> usize {
        let cell = self.tables[table][i];
        let (t, cell) = self.expand(cell);
        self.tables[table][i] = cell;
        t
    }

    /// The subtable `cell` refers to, made (filled with the leaf's answer)
    /// when `cell` is a leaf; returns it with the cell that refers to it.
    fn expand(&mut self, cell: Cell) -> (usize, Cell) {
        if cell & SUBTABLE != 0 {
            return ((cell & !SUBTABLE) as usize, cell);
        }
        self.tables.push([cell; 256]);
        let t = self.tables.len() - 1;
        // 2^31 subtables would need 2 TiB: the index always fits.
        (t, SUBTABLE | Cell::try_from(t).unwrap_or(0))
    }

    /// The leaf answering for `addr`.
    #[inline]
    fn leaf(&self, addr: u32) -> Cell {
        let mut cell = self.root[(addr >> 16) as usize];
        if cell & SUBTABLE != 0 {
            cell = self.table((cell & !SUBTABLE) as usize)[((addr >> 8) & 0xff) as usize];
            if cell & SUBTABLE != 0 {
                cell = self.table((cell & !SUBTABLE) as usize)[(addr & 0xff) as usize];
            }
        }
        cell
    }

    #[inline]
    fn table(&self, t: usize) -> &[Cell; 256] {
        // Cells only ever refer to tables that exist; an empty table would
        // answer "public" rather than panic if that were ever broken.
        const EMPTY: [Cell; 256] = [0; 256];
        self.tables.get(t).unwrap_or(&EMPTY)
    }

    #[inline]
    fn classify(&self, addr: u32) -> (EndpointKind, Name) {
        let leaf = self.leaf(addr);
        let kind = self
            .kinds
            .get((leaf >> NAME_BITS) as usize & 0x7f)
            .copied()
            .unwrap_or(EndpointKind::PublicNetwork);
        let name = self
            .names
            .get((leaf & NAME_MASK) as usize)
            .unwrap_or(&self.names[0]);
        (kind, *name)
    }
}

fn bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

impl Default for Networks {
    fn default() -> Self {
        let public: Name = Name::new(PUBLIC_NETWORK);
        let mut n = Networks {
            entries: Vec::new(),
            v4: Vec::new(),
            v6: Vec::new(),
            v4_table: V4Table::new(public),
            public,
        };
        for (name, kind, cidrs) in BUILTIN {
            let name: Name = Name::new(name);
            for c in *cidrs {
                // The built-in table is constant and covered by a test.
                if let Ok(net) = c.parse() {
                    n.entries.push(Entry {
                        net,
                        name,
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
            let name: Name = Name::new(nn.name.as_str());
            for net in &nn.cidrs {
                self.entries.push(Entry {
                    net: net.trunc(),
                    name,
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
        self.v4_table = V4Table::build(self.public, &self.entries);
    }

    /// The most specific network's name and the address's kind.
    pub fn classify(&self, addr: IpAddr) -> (EndpointKind, Name) {
        let (kind, name) = self.classify_ref(addr);
        (kind, name)
    }

    /// [`classify`](Self::classify) without taking a reference count.
    #[inline]
    pub fn classify_ref(&self, addr: IpAddr) -> (EndpointKind, Name) {
        match addr {
            IpAddr::V4(a) => self.v4_table.classify(u32::from(a)),
            IpAddr::V6(_) => self.classify_by_levels(addr),
        }
    }

    /// Classification by one hash probe per prefix length: IPv6, and the
    /// reference the IPv4 table is tested against.
    fn classify_by_levels(&self, addr: IpAddr) -> (EndpointKind, Name) {
        let list = match addr {
            IpAddr::V4(_) => &self.v4,
            IpAddr::V6(_) => &self.v6,
        };
        let a = bits(addr);
        let mut name: Option<Name> = None;
        for level in list {
            let Some(ids) = level.by_bits.get(&(a & level.mask)) else {
                continue;
            };
            for &i in ids {
                let e = &self.entries[i];
                let name = name.get_or_insert(e.name);
                if let Some(kind) = e.kind {
                    return (kind, *name);
                }
            }
        }
        (EndpointKind::PublicNetwork, name.unwrap_or(self.public))
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

    /// The IPv4 table answers exactly as the per-level search, at every
    /// boundary of every network and at random addresses, for overlapping
    /// configured and built-in networks of all lengths (/0 to /32, equal
    /// prefixes configured over built-in ones, nets inside /32 cells).
    #[test]
    fn v4_table_answers_as_the_per_level_search() {
        let strings = |cidrs: &[&str]| cidrs.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        let pod_cidrs: Vec<String> = (0..300)
            .map(|i| format!("10.{}.{}.0/24", 244 + i / 256, i % 256))
            .collect();
        let named = [
            ("everything", strings(&["0.0.0.0/0"])),
            (
                "corp",
                strings(&["10.50.0.0/16", "10.0.0.0/8", "192.168.7.128/25"]),
            ),
            (POD_NETWORK, pod_cidrs),
            (SERVICE_NETWORK, strings(&["10.96.0.0/12"])),
            (
                "host",
                strings(&["10.244.3.17/32", "169.254.169.254/32", "10.244.3.16/30"]),
            ),
            (
                "wide",
                strings(&["64.0.0.0/2", "203.0.113.0/26", "224.1.0.0/16"]),
            ),
        ];
        let named: Vec<NamedNetwork> = named
            .iter()
            .map(|(name, cidrs)| NamedNetwork {
                name: name.to_string(),
                cidrs: cidrs.iter().map(|c| net(c)).collect(),
            })
            .collect();
        for n in [Networks::default(), Networks::with(&named)] {
            let mut probes: Vec<u32> = Vec::new();
            for e in &n.entries {
                if let IpNet::V4(v4) = e.net {
                    let lo = u32::from(v4.network());
                    let hi = u32::from(v4.broadcast());
                    probes.extend([
                        lo,
                        hi,
                        lo.wrapping_sub(1),
                        hi.wrapping_add(1),
                        lo + (hi - lo) / 2,
                    ]);
                }
            }
            let mut x: u64 = 1;
            for _ in 0..200_000 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                probes.push((x >> 32) as u32);
            }
            for a in probes {
                let addr = IpAddr::V4(a.into());
                let (k, name) = n.classify_ref(addr);
                let (rk, rname) = n.classify_by_levels(addr);
                assert_eq!((k, &*name), (rk, &*rname), "{addr}");
            }
        }
    }

    #[test]
    fn v4_table_spot_checks() {
        let n = Networks::with(&[
            NamedNetwork {
                name: "host".into(),
                cidrs: vec![net("10.244.3.17/32")],
            },
            NamedNetwork {
                name: POD_NETWORK.into(),
                cidrs: vec![net("10.244.3.0/24")],
            },
        ]);
        let cases = [
            ("10.244.3.17", EndpointKind::PrivateNetwork, "host"),
            ("10.244.3.16", EndpointKind::PrivateNetwork, POD_NETWORK),
            ("10.244.4.1", EndpointKind::PrivateNetwork, PRIVATE_NETWORK),
            (
                "169.254.169.254",
                EndpointKind::CloudMetadata,
                "CLOUD METADATA",
            ),
            ("169.254.169.253", EndpointKind::LinkLocal, "LINK LOCAL"),
            ("11.0.0.1", EndpointKind::PublicNetwork, PUBLIC_NETWORK),
        ];
        for (addr, kind, name) in cases {
            let (k, nm) = n.classify(addr.parse().expect("ip"));
            assert_eq!((k, &*nm), (kind, name), "{addr}");
        }
    }
}
