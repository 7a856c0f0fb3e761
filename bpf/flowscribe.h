/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Types shared between the eBPF programs and the Rust loader
 * (exporter/capture/src/abi.rs mirrors every struct here byte for byte, and
 * a unit test there checks sizes and offsets against the numbers below).
 *
 * Rules: fixed-width fields only, explicit padding, every stack instance is
 * zero-initialised before use so padding never makes two keys differ.
 */
#ifndef FLOWSCRIBE_H
#define FLOWSCRIBE_H

/* Hook direction relative to the interface the program is attached to. */
#define FS_DIR_INGRESS 0
#define FS_DIR_EGRESS 1

/* Address family as stored in flow_key.family. */
#define FS_FAMILY_V4 4
#define FS_FAMILY_V6 6

/*
 * One direction of one 5-tuple seen at one hook of one interface.
 * IPv4 addresses occupy the first 4 bytes of saddr/daddr, the rest is zero.
 * For ICMP and ICMPv6, sport holds (type << 8 | code) and dport holds the
 * echo identifier for echo request/reply (0 for other messages), so that a
 * request and its reply pair up in userspace.
 * Size 44, alignment 4.
 */
struct flow_key {
	__u8 saddr[16];   /* offset 0 */
	__u8 daddr[16];   /* offset 16 */
	__u16 sport;      /* offset 32, host byte order */
	__u16 dport;      /* offset 34, host byte order */
	__u32 ifindex;    /* offset 36; 0 in drop keys */
	__u8 proto;       /* offset 40, IANA protocol number */
	__u8 family;      /* offset 41, FS_FAMILY_* */
	__u8 direction;   /* offset 42, FS_DIR_*; 0 in drop keys */
	__u8 _pad;        /* offset 43 */
};

/*
 * Cumulative counters of one flow_key since the entry was created.
 * Updated with atomics because the map is shared by all CPUs.
 * Size 40, alignment 8.
 */
struct flow_val {
	__u64 packets;    /* wire packets: gso_segs, minimum 1 */
	__u64 bytes;      /* IP bytes (header + payload) as on the wire */
	__u64 first_ns;   /* bpf_ktime_get_boot_ns() of the first packet */
	__u64 last_ns;    /* ... of the latest packet */
	__u32 tcp_flags;  /* OR of every TCP flags byte seen */
	__u32 first_tcp_flags; /* TCP flags of the entry's first packet (SYN vs SYN-ACK) */
};

/* Ring-buffer record, one per new flow_key. Size 56, alignment 8. */
struct flow_event {
	struct flow_key key; /* offset 0 */
	__u32 _pad;          /* offset 44 */
	__u64 first_ns;      /* offset 48 */
};

/*
 * Per-CPU flow cache (FLOW_CACHE in flow.bpf.c): FS_CACHE_SLOTS slots per
 * CPU, a key's slot being the top bits of a multiplicative hash of its words.
 */
#define FS_CACHE_SLOTS 256 /* a power of two */
#define FS_CACHE_SHIFT 24  /* 32 - log2(FS_CACHE_SLOTS) */

/* Values of flow_cache_slot.busy: who is changing the slot. */
#define FS_SLOT_FREE 0
#define FS_SLOT_CLASSIFIER 1
#define FS_SLOT_FLUSH 2

/*
 * One slot of FLOW_CACHE. The programs own it; userspace reads it to count
 * what offline CPUs hold and, at shutdown after detaching, to fold what is
 * still pending into FLOWS. The first_* fields are set when pending goes
 * from zero to non-zero and are meaningful only while packets != 0.
 * Size 88, alignment 8.
 */
struct flow_cache_slot {
	struct flow_key key;    /* offset 0; family == 0: empty */
	__u32 busy;             /* offset 44, FS_SLOT_* */
	__u64 packets;          /* offset 48; pending: counted here, not yet in FLOWS */
	__u64 bytes;            /* offset 56 */
	__u64 last_ns;          /* offset 64, tick time of the latest pending packet */
	__u32 tcp_flags;        /* offset 72, OR of the pending packets' flags */
	__u32 first_tcp_flags;  /* offset 76, flags of the first pending packet */
	__u64 first_ns;         /* offset 80, tick time of the first pending packet */
};

/*
 * Kernel drops (kfree_skb) aggregated per 5-tuple. The key is a flow_key
 * with ifindex = 0 and direction = 0. Size 40, alignment 8.
 */
struct drop_val {
	__u64 packets;
	__u64 bytes;
	__u64 last_ns;
	__u32 last_reason;  /* enum skb_drop_reason value of the running kernel */
	__u32 ifindex;      /* device of the last drop, 0 when unknown */
	__u32 netns_ino;    /* network namespace inode of the last drop */
	__u32 _pad;
};

/* Key of the exclusion map: one endpoint (address, port, protocol). Size 20. */
struct endpoint_key {
	__u8 addr[16];
	__u16 port;       /* host byte order */
	__u8 proto;
	__u8 family;
};

/* Indexes of the per-CPU STATS array. */
enum fs_stat {
	FS_STAT_RING_RESERVE_FAILED = 0, /* new-flow events not delivered */
	FS_STAT_FLOW_MAP_FULL = 1,       /* packets whose new flow found the map full */
	FS_STAT_FLOW_LOST_BYTES = 2,     /* bytes of packets counted in 1 and 9 */
	FS_STAT_PARSE_TRUNCATED = 3,     /* headers shorter than they claim */
	FS_STAT_PARSE_EXT_LIMIT = 4,     /* IPv6 extension chain longer than we walk */
	FS_STAT_NON_IP = 5,              /* packets that are not IPv4/IPv6 (ARP ...) */
	FS_STAT_EXCLUDED = 6,            /* packets of excluded endpoints (own traffic) */
	FS_STAT_DROP_MAP_FULL = 7,       /* kernel drops that could not be stored */
	FS_STAT_DROPS_SEEN = 8,          /* kernel drops of IP packets recorded */
	FS_STAT_FLOW_UPDATE_FAILED = 9,  /* packets lost to other flow map update errors */
	FS_STAT_MAX = 16,
};

/*
 * Index 0 of the CONFIG array, written by userspace. Size 16, alignment 8.
 * Packets of existing flows are stamped at tick resolution from jiffies:
 * boot ns = jiffies * tick_ns + jiffies_to_boot_ns (mod 2^64), both values
 * calibrated by userspace with fs_clock_probe (tick_ns = 1e9 / CONFIG_HZ).
 */
struct fs_config {
	__u32 exclude_count;      /* entries in EXCLUDE (0 = skip lookups) */
	__u32 tick_ns;            /* ns per jiffy; 0 until calibrated */
	__u64 jiffies_to_boot_ns; /* boot ns minus jiffies * tick_ns, wrapping */
};

/* Index 0 of the CLOCK_SAMPLE array: written by fs_clock_probe. Size 16. */
struct fs_clock_sample {
	__u64 jiffies;  /* bpf_jiffies64(), read first */
	__u64 boot_ns;  /* bpf_ktime_get_boot_ns(), read right after */
};

#endif
