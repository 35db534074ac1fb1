#!/usr/bin/env bash
# Retrieval evaluation of 10,000 image–text pairs (512-d embeddings), both
# ways, Mosaic vs the NumPy reference, same threads. Needs the reference venv
# (scripts/reference/setup-venv.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
export BENCH_THREADS="${BENCH_THREADS:-2}"
RAYON_NUM_THREADS="$BENCH_THREADS" cargo bench -q -p mosaic-eval --bench retrieval
.venv-ref/bin/python scripts/bench/retrieval.py "$BENCH_THREADS"
