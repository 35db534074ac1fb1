#!/usr/bin/env bash
# Loader throughput, Mosaic vs PyTorch's DataLoader, on the same Fashion-MNIST
# PNGs with the same worker count. Needs the reference venv
# (scripts/reference/setup-venv.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
export BENCH_WORKERS="${BENCH_WORKERS:-2}" BENCH_BATCH="${BENCH_BATCH:-256}"
cargo run --release -q -p mosaic-cli -- data import fashion-mnist 2>/dev/null || true
cargo bench -q -p mosaic-data --bench loader
.venv-ref/bin/python scripts/bench/loader.py
