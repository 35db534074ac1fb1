#!/usr/bin/env bash
# Training throughput, Mosaic vs PyTorch, same models, batches and threads.
# Needs the reference venv (scripts/reference/setup-venv.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
export BENCH_THREADS="${BENCH_THREADS:-2}"
RAYON_NUM_THREADS="$BENCH_THREADS" cargo bench -q -p mosaic-train --bench train_step
OMP_NUM_THREADS="$BENCH_THREADS" .venv-ref/bin/python scripts/bench/train_step.py
