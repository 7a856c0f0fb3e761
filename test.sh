#!/usr/bin/env bash
# The project's test command (see README): builds the binary the end-to-end
# tests run, then every test of the workspace. Needs root: the end-to-end
# tests load eBPF and create network namespaces.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --workspace --locked
cargo test --workspace --locked
