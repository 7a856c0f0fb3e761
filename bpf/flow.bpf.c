// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * flowscribe capture programs (stage 1 of the pipeline, kernel side).
 *
 * - fs_tc_ingress / fs_tc_egress: TCX (or legacy clsact) classifiers that
 *   aggregate every IPv4/IPv6 packet into FLOWS, keyed by 5-tuple, interface
 *   and hook direction, and send one FLOW_EVENTS record per new key. They
 *   never change or drop a packet and always return TCX_NEXT (== TC_ACT_UNSPEC)
 *   so programs attached after ours (a CNI's) still see every packet.
 * - fs_kfree_skb: tp_btf/kfree_skb, aggregates kernel drops per 5-tuple with
 *   the drop reason, device and network namespace into DROPS.
 * - fs_cache_flush: never attached; userspace runs it on every online CPU
 *   before each drain (BPF_PROG_TEST_RUN with BPF_F_TEST_RUN_ON_CPU) to move
 *   what the per-CPU FLOW_CACHE holds into FLOWS, so a drain sees every
 *   packet.
 *
 * Nothing here is lost silently: every failure path bumps a STATS counter
 * (see enum fs_stat in flowscribe.h), and packets whose flow could not be
 * stored are counted with their bytes.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "flowscribe.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define ETH_HLEN 14
#define VLAN_HLEN 4

#define IPPROTO_HOPOPTS_ 0
#define IPPROTO_ROUTING_ 43
#define IPPROTO_FRAGMENT_ 44
#define IPPROTO_AH_ 51
#define IPPROTO_DSTOPTS_ 60
#define IPPROTO_MH_ 135
#define IPPROTO_ICMPV6_ 58

/* How many IPv6 extension headers we walk before giving up on L4. */
#define MAX_IPV6_EXT 6

/* Sizes are overridden by the loader (EbpfLoader::set_max_entries). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow_key);
	__type(value, struct flow_val);
} FLOWS SEC(".maps");

/*
 * Per-CPU direct-mapped cache in front of FLOWS. Packets of a flow whose key
 * sits in its slot add to the slot's pending counters without touching
 * FLOWS: no hashing of the key by the kernel, no bucket walk, no atomics,
 * no cache line shared with another CPU. Under TCP the FLOWS lookup missed
 * the CPU caches at almost every skb (the stack between two skbs evicts it),
 * which made it most of the program's cost.
 *
 * Pending counters always reach FLOWS: when another key takes the slot
 * (cache_spill from the classifier), and before every drain (fs_cache_flush,
 * which userspace runs on each online CPU). A slot found with nothing
 * pending at a flush is emptied, so a flow that went quiet leaves the cache
 * within two drains and its next packet takes the FLOWS path again. A slot
 * also keeps the time and TCP flags of its first pending packet: when
 * userspace deleted the FLOWS entry meanwhile (the flow went idle), the
 * spill re-creates it from them, exactly as if that packet had gone to
 * FLOWS itself (a reused 5-tuple then starts with its SYN, not with the OR
 * of everything pending). What no flush can reach (a CPU taken offline, a
 * slot still busy after every retry) userspace reads from the map itself:
 * at each drain it counts what offline CPUs hold, and at shutdown, after
 * detaching, it folds every pending slot into FLOWS.
 *
 * Ownership: one CPU's slots are only touched on that CPU, by the
 * classifiers (softirq, or process context with BH off) and by
 * fs_cache_flush (an IPI, or process context with preemption off). Either
 * can interrupt the other but never the reverse within one run, so a busy
 * mark set before and cleared after each change is enough: a classifier
 * that finds its slot busy takes the FLOWS path, a flush that finds a slot
 * busy skips it and says so (userspace runs it again).
 *
 * This assumes that two runs on one CPU never interleave except by one
 * interrupting the other and finishing before it resumes: the busy check
 * and the mark are separate, unlocked steps, and two runs that take turns
 * in the middle of one change (a preempted run, then another on the same
 * CPU) can both pass the check and lose an update. Attached classifiers
 * and the flush are never preempted, but BPF_PROG_TEST_RUN of a classifier
 * is (it only disables migration): tests that feed packets through it must
 * run one at a time against one set of maps.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FS_CACHE_SLOTS);
	__type(key, __u32);
	__type(value, struct flow_cache_slot);
} FLOW_CACHE SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} FLOW_EVENTS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, struct flow_key);
	__type(value, struct drop_val);
} DROPS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct endpoint_key);
	__type(value, __u8);
} EXCLUDE SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fs_config);
} CONFIG SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fs_clock_sample);
} CLOCK_SAMPLE SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FS_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} STATS SEC(".maps");

static __always_inline void stat_add(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&STATS, &idx);
	if (v)
		*v += n; /* per-CPU slot: no atomics needed */
}

/* Where packet bytes come from: a TC context or a kernel sk_buff. */
#define SRC_TC 0
#define SRC_KERNEL 1

/*
 * Copy len bytes at offset off of the packet into to. In TC programs the
 * linear part is read directly when it is long enough, otherwise through
 * bpf_skb_load_bytes (never bpf_skb_pull_data: it unclones the skb and
 * costs 2-3x on TCP). In the drop tracer, base is skb->head + network_header.
 */
static __always_inline int load(int src, void *ctx, const void *base, __u32 off, void *to, __u32 len)
{
	if (src == SRC_TC) {
		struct __sk_buff *skb = ctx;
		void *data = (void *)(long)skb->data;
		void *data_end = (void *)(long)skb->data_end;
		if (off <= 512 && data + off + len <= data_end) {
			__builtin_memcpy(to, data + off, len);
			return 0;
		}
		return bpf_skb_load_bytes(skb, off, to, len);
	}
	return bpf_probe_read_kernel(to, len, base + off);
}

struct l4_info {
	__u32 l4_hdr_len;   /* length of the L3+L4 headers, for GSO byte accounting */
	__u32 ip_len;       /* IP total length from the header (0 when unknown) */
	__u8 tcp_flags;
	__u8 has_ports;
};

static __always_inline __u16 icmp_echo_pair(__u8 type, __u8 is_v6)
{
	/* Echo request/reply carry an identifier that pairs them. */
	if (!is_v6)
		return type == 8 || type == 0;
	return type == 128 || type == 129;
}

/*
 * Parse the transport header at offset off for protocol proto.
 * Returns 0 on success (ports filled when present), -1 when truncated.
 */
static __always_inline int parse_l4(int src, void *ctx, const void *base, __u32 off, __u8 proto,
				    __u8 is_v6, struct flow_key *key, struct l4_info *info)
{
	switch (proto) {
	case IPPROTO_TCP: {
		__u8 tcp[14];
		if (load(src, ctx, base, off, tcp, sizeof(tcp)))
			return -1;
		key->sport = ((__u16)tcp[0] << 8) | tcp[1];
		key->dport = ((__u16)tcp[2] << 8) | tcp[3];
		info->tcp_flags = tcp[13];
		info->l4_hdr_len += (tcp[12] >> 4) * 4;
		info->has_ports = 1;
		return 0;
	}
	case IPPROTO_UDP:
	case IPPROTO_UDPLITE:
	case IPPROTO_SCTP: {
		__u8 ports[4];
		if (load(src, ctx, base, off, ports, sizeof(ports)))
			return -1;
		key->sport = ((__u16)ports[0] << 8) | ports[1];
		key->dport = ((__u16)ports[2] << 8) | ports[3];
		info->l4_hdr_len += proto == IPPROTO_SCTP ? 12 : 8;
		info->has_ports = 1;
		return 0;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6_: {
		__u8 icmp[6];
		if (load(src, ctx, base, off, icmp, sizeof(icmp)))
			return -1;
		key->sport = ((__u16)icmp[0] << 8) | icmp[1];
		if (icmp_echo_pair(icmp[0], is_v6))
			key->dport = ((__u16)icmp[4] << 8) | icmp[5];
		info->l4_hdr_len += 8;
		info->has_ports = 1;
		return 0;
	}
	default:
		return 0;
	}
}

/*
 * Parse an IP packet whose network header starts at l3 (relative to base or
 * to skb->data). Fills key (addresses, ports, proto, family) and info.
 * Returns 0 on success, -1 when truncated, -2 when the IPv6 extension chain
 * is longer than MAX_IPV6_EXT (the key then has no ports).
 */
static __always_inline int parse_ip(int src, void *ctx, const void *base, __u32 l3, __u16 eth_proto,
				    struct flow_key *key, struct l4_info *info)
{
	if (eth_proto == ETH_P_IP) {
		struct iphdr iph;
		if (load(src, ctx, base, l3, &iph, sizeof(iph)))
			return -1;
		__u32 ihl = iph.ihl * 4;
		if (ihl < 20)
			return -1;
		key->family = FS_FAMILY_V4;
		key->proto = iph.protocol;
		__builtin_memcpy(key->saddr, &iph.saddr, 4);
		__builtin_memcpy(key->daddr, &iph.daddr, 4);
		info->ip_len = bpf_ntohs(iph.tot_len);
		info->l4_hdr_len = ihl;
		/* Non-first fragments carry no transport header. */
		if (bpf_ntohs(iph.frag_off) & 0x1fff)
			return 0;
		return parse_l4(src, ctx, base, l3 + ihl, iph.protocol, 0, key, info);
	}
	if (eth_proto == ETH_P_IPV6) {
		struct ipv6hdr ip6;
		if (load(src, ctx, base, l3, &ip6, sizeof(ip6)))
			return -1;
		key->family = FS_FAMILY_V6;
		__builtin_memcpy(key->saddr, &ip6.saddr, 16);
		__builtin_memcpy(key->daddr, &ip6.daddr, 16);
		info->ip_len = bpf_ntohs(ip6.payload_len) ? bpf_ntohs(ip6.payload_len) + 40 : 0;
		__u8 next = ip6.nexthdr;
		__u32 off = l3 + 40;
		int i;
#pragma unroll
		for (i = 0; i < MAX_IPV6_EXT; i++) {
			__u8 ext[2];
			switch (next) {
			case IPPROTO_HOPOPTS_:
			case IPPROTO_ROUTING_:
			case IPPROTO_DSTOPTS_:
			case IPPROTO_MH_:
				if (load(src, ctx, base, off, ext, sizeof(ext)))
					return -1;
				next = ext[0];
				off += (ext[1] + 1) * 8;
				break;
			case IPPROTO_AH_:
				if (load(src, ctx, base, off, ext, sizeof(ext)))
					return -1;
				next = ext[0];
				off += (ext[1] + 2) * 4;
				break;
			case IPPROTO_FRAGMENT_: {
				__u8 frag[4];
				if (load(src, ctx, base, off, frag, sizeof(frag)))
					return -1;
				next = frag[0];
				off += 8;
				/* Non-first fragment: no transport header follows. */
				if ((((__u16)frag[2] << 8) | frag[3]) & 0xfff8) {
					key->proto = next;
					return 0;
				}
				break;
			}
			default:
				key->proto = next;
				info->l4_hdr_len = off - l3;
				return parse_l4(src, ctx, base, off, next, 1, key, info);
			}
		}
		key->proto = next;
		return -2;
	}
	return -3;
}

/* TCX_NEXT and TC_ACT_UNSPEC are both -1: let the next program decide. */
#define FS_PASS -1

static __always_inline int endpoint_excluded(const struct fs_config *cfg, const struct flow_key *key)
{
	if (cfg->exclude_count == 0)
		return 0;
	struct endpoint_key ep = {};
	ep.proto = key->proto;
	ep.family = key->family;
	__builtin_memcpy(ep.addr, key->daddr, 16);
	ep.port = key->dport;
	if (bpf_map_lookup_elem(&EXCLUDE, &ep))
		return 1;
	__builtin_memcpy(ep.addr, key->saddr, 16);
	ep.port = key->sport;
	return bpf_map_lookup_elem(&EXCLUDE, &ep) != 0;
}

/* What one packet adds to its flow. */
struct pkt_acct {
	__u64 segs;
	__u64 bytes;
	__u32 tcp_flags;
};

static __always_inline void account(struct flow_val *v, const struct pkt_acct *a, __u64 now)
{
	__sync_fetch_and_add(&v->packets, a->segs);
	__sync_fetch_and_add(&v->bytes, a->bytes);
	if (v->last_ns < now)
		v->last_ns = now;
	if (a->tcp_flags && (v->tcp_flags & a->tcp_flags) != a->tcp_flags)
		__sync_fetch_and_or(&v->tcp_flags, a->tcp_flags);
}

/*
 * Everything the fast path in handle_tc does not take: VLAN tags, IPv6
 * extension chains, SCTP, ICMP, IP options, fragments, headers beyond the
 * linear area. A subprogram, so the
 * common path stays small. Returns 0 when key/info/l3 are filled, else
 * FS_PASS after counting why the packet was not accounted.
 */
static __noinline int parse_slow(struct __sk_buff *skb, struct flow_key *key, struct l4_info *info,
				 __u32 *l3_out)
{
	__u16 eth_proto;
	__u32 l3 = ETH_HLEN;
	if (load(SRC_TC, skb, 0, 12, &eth_proto, 2)) {
		stat_add(FS_STAT_PARSE_TRUNCATED, 1);
		return FS_PASS;
	}
	eth_proto = bpf_ntohs(eth_proto);
	if (eth_proto == ETH_P_8021Q || eth_proto == ETH_P_8021AD) {
		if (load(SRC_TC, skb, 0, 16, &eth_proto, 2)) {
			stat_add(FS_STAT_PARSE_TRUNCATED, 1);
			return FS_PASS;
		}
		eth_proto = bpf_ntohs(eth_proto);
		l3 += VLAN_HLEN;
	}
	if (eth_proto != ETH_P_IP && eth_proto != ETH_P_IPV6) {
		stat_add(FS_STAT_NON_IP, 1);
		return FS_PASS;
	}
	int rc = parse_ip(SRC_TC, skb, 0, l3, eth_proto, key, info);
	if (rc == -1) {
		stat_add(FS_STAT_PARSE_TRUNCATED, 1);
		return FS_PASS;
	}
	if (rc == -2)
		stat_add(FS_STAT_PARSE_EXT_LIMIT, 1);
	*l3_out = l3;
	return 0;
}

/*
 * First packet of a key (or a key userspace just deleted): the exclusion
 * check, the precise first-seen time, the insert and the ring event. Only
 * here, so packets of existing flows pay none of it. Returns 1 when FLOWS
 * holds the key with the packet counted, 0 when the packet was not stored
 * (excluded, or counted as lost).
 *
 * pending is NULL for one packet, or the cache slot whose pending packets
 * a is (cache_spill): the entry then gets the first pending packet's time
 * and TCP flags and the last one's time, as if those packets had come here
 * one by one, not the time of the spill and the OR of all their flags.
 */
static __noinline int new_flow(const struct flow_key *key, const struct pkt_acct *a,
			       const struct fs_config *cfg,
			       const struct flow_cache_slot *pending)
{
	if (endpoint_excluded(cfg, key)) {
		stat_add(FS_STAT_EXCLUDED, 1);
		return 0;
	}
	__u64 first_ns, last_ns;
	__u32 first_tcp_flags;
	if (pending) {
		first_ns = pending->first_ns;
		last_ns = pending->last_ns;
		first_tcp_flags = pending->first_tcp_flags;
	} else {
		first_ns = bpf_ktime_get_boot_ns();
		last_ns = first_ns;
		first_tcp_flags = a->tcp_flags;
	}
	struct flow_val nv = {};
	nv.packets = a->segs;
	nv.bytes = a->bytes;
	nv.first_ns = first_ns;
	nv.last_ns = last_ns;
	nv.tcp_flags = a->tcp_flags;
	nv.first_tcp_flags = first_tcp_flags;
	long err = bpf_map_update_elem(&FLOWS, key, &nv, BPF_NOEXIST);
	if (err == 0) {
		struct flow_event *ev = bpf_ringbuf_reserve(&FLOW_EVENTS, sizeof(*ev), 0);
		if (ev) {
			__builtin_memcpy(&ev->key, key, sizeof(*key));
			ev->_pad = 0;
			ev->first_ns = first_ns;
			bpf_ringbuf_submit(ev, 0);
		} else {
			stat_add(FS_STAT_RING_RESERVE_FAILED, 1);
		}
		return 1;
	}
	if (err != -17 /* EEXIST: another CPU created it first */) {
		if (err == -7 /* E2BIG: map full */)
			stat_add(FS_STAT_FLOW_MAP_FULL, a->segs);
		else
			stat_add(FS_STAT_FLOW_UPDATE_FAILED, a->segs);
		stat_add(FS_STAT_FLOW_LOST_BYTES, a->bytes);
		return 0;
	}
	struct flow_val *v = bpf_map_lookup_elem(&FLOWS, key);
	if (!v) {
		/* Deleted by userspace between the two calls: count it as lost. */
		stat_add(FS_STAT_FLOW_UPDATE_FAILED, a->segs);
		stat_add(FS_STAT_FLOW_LOST_BYTES, a->bytes);
		return 0;
	}
	account(v, a, last_ns);
	return 1;
}

/*
 * The packet's time for an existing flow, in boot-clock ns at tick
 * resolution: jiffies scaled by the tick length, moved into boot time by the
 * offset userspace calibrates (see fs_clock_probe). bpf_jiffies64() is
 * inlined by the verifier into one load, so this costs no helper call; the
 * coarse clock it replaces was a call (about 17 ns per packet under real
 * traffic). Before calibration (tick_ns == 0) it is the bare offset, which
 * account() never lets move last_ns backwards.
 */
static __always_inline __u64 tick_time_ns(const struct fs_config *cfg)
{
	return bpf_jiffies64() * cfg->tick_ns + cfg->jiffies_to_boot_ns;
}

/* Keeps the compiler from moving map stores across a busy mark. */
#define barrier() asm volatile("" ::: "memory")

/* Slot of a key: a multiplicative hash of its eleven words, top bits. */
static __always_inline __u32 cache_index(const struct flow_key *key)
{
	const __u32 *w = (const __u32 *)key;
	__u32 h = 0;
	int i;
#pragma unroll
	for (i = 0; i < (int)(sizeof(*key) / 4); i++)
		h = (h ^ w[i]) * 0x9E3779B1u;
	return h >> FS_CACHE_SHIFT;
}

static __always_inline int key_equal(const struct flow_key *x, const struct flow_key *y)
{
	const __u64 *a = (const __u64 *)x, *b = (const __u64 *)y;
	const __u32 *c = (const __u32 *)x, *d = (const __u32 *)y;
	return ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) | (a[4] ^ b[4]) |
		(__u64)(c[10] ^ d[10])) == 0;
}

/*
 * Add a packet to FLOWS directly: the existing entry, or a new one. Returns
 * 1 when FLOWS holds the key with the packet counted.
 */
static __always_inline int flows_account(const struct flow_key *key, const struct pkt_acct *a,
					 const struct fs_config *cfg)
{
	struct flow_val *v = bpf_map_lookup_elem(&FLOWS, key);
	if (!v)
		return new_flow(key, a, cfg, 0);
	account(v, a, tick_time_ns(cfg));
	return 1;
}

/*
 * Move a slot's pending counters into FLOWS. The caller owns the slot (its
 * busy mark is set). When userspace deleted the entry since the slot took
 * the key (it went idle), the pending packets start a new entry, like any
 * first packet: a ring event, and loss counters when it cannot be stored;
 * the entry's first-seen time and first TCP flags are those of the first
 * pending packet, its last-seen time that of the last.
 */
static __noinline void cache_spill(struct flow_cache_slot *s, const struct fs_config *cfg)
{
	if (!s->packets)
		return;
	struct flow_val *v = bpf_map_lookup_elem(&FLOWS, &s->key);
	if (v) {
		__sync_fetch_and_add(&v->packets, s->packets);
		__sync_fetch_and_add(&v->bytes, s->bytes);
		if (v->last_ns < s->last_ns)
			v->last_ns = s->last_ns;
		if (s->tcp_flags && (v->tcp_flags & s->tcp_flags) != s->tcp_flags)
			__sync_fetch_and_or(&v->tcp_flags, s->tcp_flags);
	} else {
		struct pkt_acct a;
		a.segs = s->packets;
		a.bytes = s->bytes;
		a.tcp_flags = s->tcp_flags;
		new_flow(&s->key, &a, cfg, s);
	}
	s->packets = 0;
	s->bytes = 0;
	s->tcp_flags = 0;
}

/*
 * What a packet adds in bytes: the IP length when the header says it, else
 * the skb length from the network header on; a GSO/GRO skb stands for segs
 * wire packets and holds the headers once, while each further segment
 * repeats them on the wire.
 */
static __always_inline __u64 packet_bytes(struct __sk_buff *skb, __u64 segs, __u32 ip_len, __u32 l3,
					  __u32 hdr_len)
{
	if (segs == 1 && ip_len)
		return ip_len;
	__u32 len = skb->len;
	__u64 bytes = len > l3 ? len - l3 : 0;
	return bytes + (segs - 1) * hdr_len;
}

static __always_inline int handle_tc(struct __sk_buff *skb, __u8 direction)
{
	/* 8-aligned: key_equal compares it in 64-bit words. */
	struct flow_key key __attribute__((aligned(8))) = {};
	struct pkt_acct a;
	__u32 gso_segs = skb->gso_segs;
	a.segs = gso_segs ? gso_segs : 1;

	/*
	 * Fast path: untagged IPv4 without options (and not a later fragment)
	 * or IPv6 without extension headers, carrying TCP or UDP, with every
	 * header byte in the linear area: read in place, once, with one bounds
	 * check per family.
	 */
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if (data + ETH_HLEN > data_end)
		goto slow;
	__u32 ip_len, hdr_len;
	__u8 *l4;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph = data + ETH_HLEN;
		l4 = (void *)(iph + 1);
		if ((void *)(l4 + 14) > data_end || *(__u8 *)iph != 0x45 ||
		    (iph->frag_off & bpf_htons(0x1fff)))
			goto slow;
		__u8 proto = iph->protocol;
		if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
			goto slow;
		key.family = FS_FAMILY_V4;
		key.proto = proto;
		__builtin_memcpy(key.saddr, &iph->saddr, 4);
		__builtin_memcpy(key.daddr, &iph->daddr, 4);
		ip_len = bpf_ntohs(iph->tot_len);
		hdr_len = 20;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + ETH_HLEN;
		l4 = (void *)(ip6 + 1);
		if ((void *)(l4 + 14) > data_end)
			goto slow;
		__u8 proto = ip6->nexthdr;
		if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
			goto slow;
		key.family = FS_FAMILY_V6;
		key.proto = proto;
		__builtin_memcpy(key.saddr, &ip6->saddr, 16);
		__builtin_memcpy(key.daddr, &ip6->daddr, 16);
		__u16 payload = bpf_ntohs(ip6->payload_len);
		ip_len = payload ? payload + 40 : 0;
		hdr_len = 40;
	} else {
		goto slow;
	}
	/* TCP and UDP both start with the two ports. */
	struct udphdr *ports = (void *)l4;
	key.sport = bpf_ntohs(ports->source);
	key.dport = bpf_ntohs(ports->dest);
	if (key.proto == IPPROTO_TCP) {
		a.tcp_flags = l4[13];
		hdr_len += (l4[12] >> 4) * 4;
	} else {
		a.tcp_flags = 0;
		hdr_len += 8;
	}
	a.bytes = packet_bytes(skb, a.segs, ip_len, ETH_HLEN, hdr_len);
	goto lookup;

slow:;
	struct l4_info info = {};
	__u32 l3 = ETH_HLEN;
	if (parse_slow(skb, &key, &info, &l3))
		return FS_PASS;
	a.tcp_flags = info.tcp_flags;
	a.bytes = packet_bytes(skb, a.segs, info.ip_len, l3, info.has_ports ? info.l4_hdr_len : 0);

lookup:
	key.ifindex = skb->ifindex;
	key.direction = direction;
	__u32 zero = 0;
	const struct fs_config *cfg = bpf_map_lookup_elem(&CONFIG, &zero);
	if (!cfg)
		return FS_PASS;
	__u32 idx = cache_index(&key);
	struct flow_cache_slot *s = bpf_map_lookup_elem(&FLOW_CACHE, &idx);
	if (!s || s->busy) {
		/* We interrupted a flush of this slot (or nested): FLOWS directly. */
		flows_account(&key, &a, cfg);
		return FS_PASS;
	}
	s->busy = FS_SLOT_CLASSIFIER;
	barrier();
	if (key_equal(&s->key, &key)) {
		__u64 now = tick_time_ns(cfg);
		if (!s->packets) {
			/* The first pending packet: what a re-created entry starts with. */
			s->first_ns = now;
			s->first_tcp_flags = a.tcp_flags;
		}
		s->packets += a.segs;
		s->bytes += a.bytes;
		if (s->last_ns < now)
			s->last_ns = now;
		s->tcp_flags |= a.tcp_flags;
	} else {
		/*
		 * Another key (or none): its pending counters go to FLOWS, this
		 * packet too, and the slot takes this key when FLOWS has it (an
		 * excluded or lost key never enters the cache).
		 */
		cache_spill(s, cfg);
		if (flows_account(&key, &a, cfg)) {
			__builtin_memcpy(&s->key, &key, sizeof(key));
			s->last_ns = 0;
		}
	}
	barrier();
	s->busy = FS_SLOT_FREE;
	return FS_PASS;
}

SEC("classifier/ingress")
int fs_tc_ingress(struct __sk_buff *skb)
{
	return handle_tc(skb, FS_DIR_INGRESS);
}

SEC("classifier/egress")
int fs_tc_egress(struct __sk_buff *skb)
{
	return handle_tc(skb, FS_DIR_EGRESS);
}

/*
 * Not attached anywhere: userspace runs it with BPF_PROG_TEST_RUN to sample
 * jiffies and the boot clock together, which is how it calibrates the
 * tick_ns and jiffies_to_boot_ns of CONFIG (the kernel's HZ is not visible
 * to userspace otherwise). Jiffies are read first, so boot_ns never belongs
 * to an earlier tick than jiffies.
 */
SEC("classifier/clock_probe")
int fs_clock_probe(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct fs_clock_sample *s = bpf_map_lookup_elem(&CLOCK_SAMPLE, &zero);
	if (s) {
		s->jiffies = bpf_jiffies64();
		s->boot_ns = bpf_ktime_get_boot_ns();
	}
	return FS_PASS;
}

struct flush_state {
	const struct fs_config *cfg;
	__u32 skipped; /* slots a classifier was changing: run the flush again */
};

static __noinline int flush_slot(__u32 idx, struct flush_state *st)
{
	struct flow_cache_slot *s = bpf_map_lookup_elem(&FLOW_CACHE, &idx);
	if (!s)
		return 0;
	if (s->busy) {
		st->skipped++;
		return 0;
	}
	s->busy = FS_SLOT_FLUSH;
	barrier();
	if (s->key.family) {
		if (s->packets)
			cache_spill(s, st->cfg);
		else
			s->key.family = 0; /* nothing since the last flush: free it */
	}
	barrier();
	s->busy = FS_SLOT_FREE;
	return 0;
}

/*
 * Not attached anywhere: userspace runs it on each CPU before a drain
 * (BPF_PROG_TEST_RUN, BPF_F_TEST_RUN_ON_CPU), which moves that CPU's pending
 * cache counters into FLOWS. Returns how many slots it had to skip because a
 * classifier it interrupted was changing them (0: the CPU is flushed).
 */
SEC("raw_tp/fs_cache_flush")
int fs_cache_flush(void *ctx)
{
	__u32 zero = 0;
	struct flush_state st = {};
	st.cfg = bpf_map_lookup_elem(&CONFIG, &zero);
	if (!st.cfg)
		return -1;
	/* A bounded loop, not bpf_loop (5.17): the oldest kernel we run on is 5.15. */
	for (__u32 i = 0; i < FS_CACHE_SLOTS; i++)
		flush_slot(i, &st);
	return st.skipped;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(fs_kfree_skb, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	/* Consumed packets are not drops (older kernels route them here too). */
	if (reason == bpf_core_enum_value(enum skb_drop_reason, SKB_CONSUMED))
		return 0;
	__u16 proto = bpf_ntohs(skb->protocol);
	if (proto != ETH_P_IP && proto != ETH_P_IPV6)
		return 0;
	__u16 nh = skb->network_header;
	if (nh == (__u16)~0U)
		return 0;
	const void *base = skb->head;
	if (!base)
		return 0;
	base += nh;

	struct flow_key key = {};
	struct l4_info info = {};
	if (parse_ip(SRC_KERNEL, 0, base, 0, proto, &key, &info) == -1)
		return 0;

	struct net_device *dev = skb->dev;
	__u32 ifindex = 0, netns = 0;
	if (dev) {
		ifindex = dev->ifindex;
		netns = dev->nd_net.net->ns.inum;
	} else {
		struct sock *sk = skb->sk;
		if (sk)
			netns = sk->__sk_common.skc_net.net->ns.inum;
		ifindex = skb->skb_iif;
	}

	__u64 now = bpf_ktime_get_boot_ns();
	__u64 len = info.ip_len ? info.ip_len : skb->len;
	struct drop_val *d = bpf_map_lookup_elem(&DROPS, &key);
	if (!d) {
		struct drop_val nd = {};
		nd.packets = 1;
		nd.bytes = len;
		nd.last_ns = now;
		nd.last_reason = reason;
		nd.ifindex = ifindex;
		nd.netns_ino = netns;
		long err = bpf_map_update_elem(&DROPS, &key, &nd, BPF_NOEXIST);
		if (err == 0) {
			stat_add(FS_STAT_DROPS_SEEN, 1);
			return 0;
		}
		if (err != -17) {
			stat_add(FS_STAT_DROP_MAP_FULL, 1);
			return 0;
		}
		d = bpf_map_lookup_elem(&DROPS, &key);
		if (!d) {
			stat_add(FS_STAT_DROP_MAP_FULL, 1);
			return 0;
		}
	}
	__sync_fetch_and_add(&d->packets, 1);
	__sync_fetch_and_add(&d->bytes, len);
	d->last_ns = now;
	d->last_reason = reason;
	d->ifindex = ifindex;
	d->netns_ino = netns;
	stat_add(FS_STAT_DROPS_SEEN, 1);
	return 0;
}
