#!/usr/bin/env bash
# The project's test command (see README): builds the binary the end-to-end
# tests run, then every test of the workspace, and ends with one summary
# line over all test binaries. Needs root: the end-to-end tests load eBPF
# and create network namespaces.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --workspace --locked
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
# cargo prints one "test result" line per test binary (the last is often an
# empty doc-test run); add them up so the closing line tells the whole story.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1); if ($(i) ~ /^ignored;?$/) s += $(i-1) } }
     END { printf "total: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
