// SPDX-License-Identifier: Apache-2.0
/*
 * Real-traffic harness for benches/bpf_cost.sh: loads the two classifiers
 * fs_tc_ingress and fs_tc_egress of an object (as SCHED_CLS, maps created by
 * libbpf with their default sizes, CONFIG left zero), attaches them with TCX
 * links (the dispatch path flowscribe uses on kernels >= 6.6) to ingress and
 * egress of every interface named, and then answers each line read on stdin
 * with "RUN_TIME_NS RUN_CNT" summed over its programs (the counters of
 * kernel.bpf_stats_enabled). At EOF it exits; closing the link fds detaches
 * everything, so nothing outlives the process.
 *
 * usage: tcx_attach OBJ IFACE...   (run inside the interfaces' namespace)
 */
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* From linux/bpf.h of kernels >= 6.6 (the installed header may be older). */
#define FS_BPF_TCX_INGRESS 46
#define FS_BPF_TCX_EGRESS 47

static int warnings_only(enum libbpf_print_level level, const char *fmt, va_list args)
{
	return level == LIBBPF_WARN ? vfprintf(stderr, fmt, args) : 0;
}

static int prog_stats(int fd, unsigned long long *ns, unsigned long long *cnt)
{
	struct bpf_prog_info info = {};
	__u32 len = sizeof(info);
	if (bpf_obj_get_info_by_fd(fd, &info, &len))
		return -1;
	*ns += info.run_time_ns;
	*cnt += info.run_cnt;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s OBJ IFACE...\n", argv[0]);
		return 2;
	}
	libbpf_set_print(warnings_only);
	struct bpf_object *obj = bpf_object__open_file(argv[1], NULL);
	if (!obj) {
		perror("open object");
		return 1;
	}
	static const char *names[2] = { "fs_tc_ingress", "fs_tc_egress" };
	struct bpf_program *p;
	bpf_object__for_each_program(p, obj) {
		const char *n = bpf_program__name(p);
		if (strcmp(n, names[0]) && strcmp(n, names[1]))
			bpf_program__set_autoload(p, false);
		else
			bpf_program__set_type(p, BPF_PROG_TYPE_SCHED_CLS);
	}
	if (bpf_object__load(obj)) {
		fprintf(stderr, "loading %s failed\n", argv[1]);
		return 1;
	}
	int fds[2];
	for (int i = 0; i < 2; i++) {
		struct bpf_program *prog = bpf_object__find_program_by_name(obj, names[i]);
		if (!prog) {
			fprintf(stderr, "%s has no program %s\n", argv[1], names[i]);
			return 1;
		}
		fds[i] = bpf_program__fd(prog);
	}
	for (int a = 2; a < argc; a++) {
		unsigned ifindex = if_nametoindex(argv[a]);
		if (!ifindex) {
			fprintf(stderr, "no interface %s\n", argv[a]);
			return 1;
		}
		if (bpf_link_create(fds[0], ifindex, FS_BPF_TCX_INGRESS, NULL) < 0 ||
		    bpf_link_create(fds[1], ifindex, FS_BPF_TCX_EGRESS, NULL) < 0) {
			perror("TCX attach");
			return 1;
		}
	}
	printf("ready\n");
	fflush(stdout);
	char line[64];
	while (fgets(line, sizeof(line), stdin)) {
		unsigned long long ns = 0, cnt = 0;
		if (prog_stats(fds[0], &ns, &cnt) || prog_stats(fds[1], &ns, &cnt)) {
			perror("prog info");
			return 1;
		}
		printf("%llu %llu\n", ns, cnt);
		fflush(stdout);
	}
	return 0;
}
