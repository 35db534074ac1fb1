#!/usr/bin/env bash
# OCR latency per image (batch 1), mosaic-ocr (tract, one thread) vs
# rapidocr-onnxruntime 1.4.4 on the same images, in one script run. Needs the
# pp-ocrv4 asset and the reference venv (scripts/reference/setup-venv.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
export BENCH_THREADS="${BENCH_THREADS:-1}"
cargo bench -q -p mosaic-ocr --bench ocr
.venv-ref/bin/python scripts/bench/ocr.py
