#!/usr/bin/env bash
# Real pretrained models, Mosaic vs the Python references, same inputs and
# threads. Needs the reference venv (scripts/reference/setup-venv.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
export BENCH_THREADS="${BENCH_THREADS:-2}"
RAYON_NUM_THREADS="$BENCH_THREADS" cargo bench -q -p mosaic-models --bench pretrained
OMP_NUM_THREADS="$BENCH_THREADS" .venv-ref/bin/python scripts/bench/pretrained.py
