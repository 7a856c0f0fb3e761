#!/usr/bin/env bash
# Per-packet cost of the capture classifier on its existing-flow path, next
# to an empty classifier, with BPF_PROG_TEST_RUN: no traffic, no network
# namespaces, no other program involved. Interleaves the two programs and
# the packet shapes, R rounds of REPEAT runs each, and prints the median ns
# per run of each, and the difference. Needs root (CAP_BPF), clang-19 and
# libbpf-dev.
#
#   sudo R=9 REPEAT=1000000 bash benches/bpf_cost.sh
#
# This complements benches/capture_overhead.sh (real veth traffic with
# kernel.bpf_stats_enabled): test_run has no softirq, cache or stats-clock
# effects, so its numbers are lower and much steadier.
set -euo pipefail
cd "$(dirname "$0")/.."
R=${R:-9}
REPEAT=${REPEAT:-1000000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gcc -O2 benches/bpf_cost/test_run.c -o "$work/test_run" -lbpf
clang-19 -target bpf -O2 -idirafter /usr/include/x86_64-linux-gnu \
    -c benches/bpf_cost/empty.bpf.c -o "$work/empty.o"
python3 - "$work" <<'PY'
import struct, sys
w = sys.argv[1]
eth4 = bytes.fromhex('020000000002020000000001') + struct.pack('!H', 0x0800)
eth6 = bytes.fromhex('020000000002020000000001') + struct.pack('!H', 0x86dd)
payload = b'x' * 36
udp = struct.pack('!HHHH', 40000, 5201, 8 + len(payload), 0) + payload
ip4 = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                  bytes([10, 250, 1, 2]), bytes([10, 250, 2, 2]))
open(f'{w}/udp4.bin', 'wb').write(eth4 + ip4 + udp)
tcp = struct.pack('!HHIIBBHHH', 40000, 80, 1, 0, 5 << 4, 0x10, 65535, 0, 0) + payload
ip4t = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0,
                   bytes([10, 250, 1, 2]), bytes([10, 250, 2, 2]))
open(f'{w}/tcp4.bin', 'wb').write(eth4 + ip4t + tcp)
ip6 = struct.pack('!IHBB', 0x60000000, len(udp), 17, 64) + bytes(range(16)) + bytes(range(16, 32))
open(f'{w}/udp6.bin', 'wb').write(eth6 + ip6 + udp)
PY
for ((i = 0; i < R; i++)); do
    for pkt in udp4 tcp4 udp6; do
        for prog in empty flow; do
            obj="$work/empty.o"; [ "$prog" = flow ] && obj=bpf/flow.bpf.o
            echo "$prog $pkt $("$work/test_run" "$obj" fs_tc_ingress "$work/$pkt.bin" "$REPEAT" 1 2>/dev/null)"
        done
    done
done > "$work/runs.txt"
python3 - "$work/runs.txt" <<'PY'
import collections, statistics, sys
d = collections.defaultdict(list)
for line in open(sys.argv[1]):
    prog, pkt, ns = line.split()
    d[(prog, pkt)].append(int(ns))
print("| packet | empty ns/run | flowscribe ns/run | difference |")
print("|---|---|---|---|")
for pkt in ["udp4", "tcp4", "udp6"]:
    e, f = statistics.median(d[("empty", pkt)]), statistics.median(d[("flow", pkt)])
    print(f"| {pkt} | {e:.0f} | {f:.0f} | {f - e:.0f} |")
PY
