// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/* The baseline: classifiers that only let the packet go on (TCX_NEXT). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("tc")
int fs_tc_ingress(struct __sk_buff *skb)
{
	return -1;
}

SEC("tc")
int fs_tc_egress(struct __sk_buff *skb)
{
	return -1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
