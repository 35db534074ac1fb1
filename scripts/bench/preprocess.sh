#!/usr/bin/env bash
# Preprocessing throughput, Mosaic vs transformers/tokenizers, same files,
# one thread each. Needs the reference venv (scripts/reference/setup-venv.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
RAYON_NUM_THREADS=1 cargo bench -q -p mosaic-data --bench preprocess
OMP_NUM_THREADS=1 RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false .venv-ref/bin/python scripts/bench/preprocess.py
