// SPDX-License-Identifier: Apache-2.0
/*
 * BPF_PROG_TEST_RUN harness for benches/bpf_cost.sh: loads one classifier
 * of an object (as SCHED_CLS, maps created by libbpf), runs it REPEAT times
 * on the packet in PKT and prints the kernel's mean ns per run, ROUNDS
 * times. The first run creates the flow; every later run takes the
 * existing-flow path, which is what the per-packet goal is about.
 *
 * usage: test_run OBJ PROG PKT REPEAT ROUNDS
 */
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static int noprint(enum libbpf_print_level l, const char *f, va_list a){ if (l==LIBBPF_WARN) return vfprintf(stderr,f,a); return 0; }
int main(int argc, char **argv) {
  libbpf_set_print(noprint);
  struct bpf_object *obj = bpf_object__open_file(argv[1], NULL);
  if (!obj) { perror("open"); return 1; }
  struct bpf_program *p;
  bpf_object__for_each_program(p, obj) {
    if (strcmp(bpf_program__name(p), argv[2])) bpf_program__set_autoload(p, false); else bpf_program__set_type(p, BPF_PROG_TYPE_SCHED_CLS);
  }
  if (bpf_object__load(obj)) { fprintf(stderr, "load failed\n"); return 1; }
  int fd = bpf_program__fd(bpf_object__find_program_by_name(obj, argv[2]));
  FILE *f = fopen(argv[3], "rb"); char pkt[256]; size_t n = fread(pkt,1,sizeof pkt,f); fclose(f);
  int repeat = atoi(argv[4]), rounds = atoi(argv[5]);
  if (argc > 6) { struct bpf_map *m = bpf_object__find_map_by_name(obj, "CONFIG"); unsigned k=0; unsigned v[2]={atoi(argv[6]),0}; bpf_map__update_elem(m,&k,4,v,8,0); }
  for (int r = 0; r < rounds; r++) {
    LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = pkt, .data_size_in = n, .repeat = repeat);
    if (bpf_prog_test_run_opts(fd, &o)) { perror("run"); return 1; }
    printf("%u\n", o.duration);
  }
  return 0;
}
