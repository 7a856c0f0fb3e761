#!/bin/bash
# Alternating before/after runs of `encode_profile` (issue 5), for a
# noisy machine: N pairs of one mode, each pair the two binaries back to
# back, then the medians and the median of the per-pair ratios (after /
# before). Build each binary from its own commit first:
#   cargo build --release -p flowscribe-normalize --example encode_profile
#   cp target/release/examples/encode_profile /tmp/ep-before   (and -after)
# Usage: benches/encode_pairs.sh N MODE BEFORE AFTER   (ROUNDS=4000 by default)
# e.g.   ROUNDS=2400 benches/encode_pairs.sh 8 otlp-cached-many /tmp/ep-before /tmp/ep-after
# CPU time is read in 10 ms ticks: keep a run above ~1 s (ROUNDS x 512
# records) so that one tick is under 1 %.
set -euo pipefail
n=$1 mode=$2 before=$3 after=$4 rounds=${ROUNDS:-4000}
ns() { "$1" "$mode" "$rounds" | tail -1 | grep -o 'cpu_ns/record=[0-9]*' | cut -d= -f2; }
for _ in $(seq "$n"); do
  echo "$(ns "$before") $(ns "$after")"
done | python3 -c '
import sys, statistics as s
p = [tuple(map(int, l.split())) for l in sys.stdin]
print(" ".join(f"{a}/{b}" for a, b in p))
print("median before", s.median(a for a, _ in p), "after", s.median(b for _, b in p),
      "pair ratio", round(s.median(b / a for a, b in p), 3))'
