// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/* The baseline: a classifier that only lets the packet go on. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("tc")
int fs_tc_ingress(struct __sk_buff *skb)
{
	return -1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
